/*
 * refine_bench.c -- `sfp bench refine`: what decoder-side refinement
 * (docs/refine.md) buys on real tensors. A model is trained briefly from a
 * config (deploy/examples/fmnist-cnn.yaml by default) and its weights, output
 * activations and weight gradients are encoded at m = 1, 2, 3, 7 (e = the
 * smallest width that holds the tensor's exponents) with each tool off and
 * on. Per tensor kind, m and tool it prints the median over tensors of:
 * MSE and max relative error relative to the plain container, the side
 * bytes, the rate saving at equal MSE (see rate_saving), and encode / decode
 * time relative to the plain container (each the median of R timings, the
 * variants timed side by side).
 */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "bench/bench.h"
#include "bench/tensors.h"
#include "sfp/codec.h"

enum { NTOOL = 5, NM = 4, MAXT = 64 };
static const char *const tool_names[NTOOL] = {"plain", "bias-tensor", "bias-channel", "shift",
					      "shift+bias-ch"};
static const unsigned ms[NM] = {1, 2, 3, 7};

static void tool_params(sfp_params *p, int tool)
{
	p->bias = tool == 1 ? SFP_BIAS_TENSOR : (tool == 2 || tool == 4) ? SFP_BIAS_CHANNEL : 0;
	p->shift = tool >= 3;
}

typedef struct result {
	double mse, maxrel, bits, side, enc_ns, dec_ns;
	uint64_t nnz;
} result;

static int cmp_double(const void *a, const void *b)
{
	double x = *(const double *)a, y = *(const double *)b;
	return x < y ? -1 : x > y;
}

static double median(double *v, int n)
{
	qsort(v, (size_t)n, sizeof *v, cmp_double);
	return n ? (n & 1 ? v[n / 2] : 0.5 * (v[n / 2 - 1] + v[n / 2])) : NAN;
}

/* The smallest e whose window holds every nonzero exponent of x. */
static unsigned min_e(const float *x, uint64_t n)
{
	int lo = 255, hi = 0;
	for (uint64_t i = 0; i < n; i++) {
		uint32_t u;
		memcpy(&u, &x[i], 4);
		int E = (int)((u >> 23) & 0xff);
		if (E == 0 || E == 255)
			continue;
		lo = E < lo ? E : lo;
		hi = E + 1 > hi ? E + 1 : hi; /* rounding may carry into the next binade */
	}
	unsigned e = 1;
	while (e < 8 && hi >= lo && (1 << e) - 1 < hi - lo + 1)
		e++;
	return e;
}

static int run_one(sfp_codec *c, const bench_tensor *t, const sfp_params *p, int repeats,
		   uint8_t *buf, size_t cap, float *back, result *r, sfp_error *err)
{
	size_t w = 0;
	double enc[16], dec[16];
	for (int k = 0; k < repeats; k++) {
		uint64_t t0 = sfp_clock_ns();
		if (sfp_encode(c, buf, cap, &w, t->data, t->count, t->shape, t->ndim, p, err) < 0)
			return -1;
		uint64_t t1 = sfp_clock_ns();
		sfp_info in;
		if (sfp_decode(c, back, t->count, buf, w, &in, err) < 0)
			return -1;
		uint64_t t2 = sfp_clock_ns();
		enc[k] = (double)(t1 - t0);
		dec[k] = (double)(t2 - t1);
		r->side = (double)in.side_bytes;
		r->nnz = in.nnz;
	}
	double se = 0.0, mr = 0.0;
	for (uint64_t i = 0; i < t->count; i++) {
		double d = (double)t->data[i] - (double)back[i];
		se += d * d;
		if (t->data[i] != 0.0f && back[i] != 0.0f)
			mr = fmax(mr, fabs(d / (double)t->data[i]));
	}
	r->mse = t->count ? se / (double)t->count : 0.0;
	r->maxrel = mr;
	r->bits = 8.0 * (double)w / (double)t->count;
	r->enc_ns = median(enc, repeats);
	r->dec_ns = median(dec, repeats);
	return 0;
}

/*
 * Rate saving at equal MSE, in % of the plain container's bits: one more
 * mantissa bit divides the error of fine quantization by 4, so an MSE ratio
 * r is worth 0.5 log2(1/r) bits per nonzero value; the side bytes are
 * charged in full. (At m = 1 the bins are coarse and the rule is only an
 * approximation; the MSE ratio itself is the measurement.)
 */
static double rate_saving(const result *plain, const result *tool, uint64_t count)
{
	if (!(plain->mse > 0.0) || !(tool->mse > 0.0))
		return 0.0;
	double saved = 0.5 * log2(plain->mse / tool->mse) * (double)tool->nnz - 8.0 * tool->side;
	return 100.0 * saved / (plain->bits * (double)count);
}

int sfp_bench_refine_main(int argc, char **argv)
{
	const char *config = "deploy/examples/fmnist-cnn.yaml";
	int steps = 300, repeats = 5, verbose = 0;
	for (int i = 1; i < argc; i++) {
		if (!strcmp(argv[i], "--quick")) {
			steps = 20;
			repeats = 2;
		} else if (!strcmp(argv[i], "--verbose")) {
			verbose = 1;
		} else if (!strcmp(argv[i], "--config") && i + 1 < argc) {
			config = argv[++i];
		} else if (!strcmp(argv[i], "--steps") && i + 1 < argc) {
			steps = atoi(argv[++i]);
			if (steps < 1) {
				fprintf(stderr, "sfp: --steps must be a positive integer\n");
				return 2;
			}
		} else {
			fprintf(stderr, "sfp: unknown option '%s' for bench refine\n", argv[i]);
			return 2;
		}
	}
	bench_tensor *t;
	sfp_error err;
	int nt = bench_tensors_trained(&t, config, steps, 64, &err);
	if (nt < 0) {
		fprintf(stderr, "sfp: %s\n", err.msg);
		return 1;
	}
	const int nall = nt;
	if (nt > MAXT)
		nt = MAXT;
	static const char *const kinds[3] = {"weight", "activation", "gradient"};
	/* per kind, m, tool: one value per tensor */
	static double mse_r[3][NM][NTOOL][MAXT], rel_r[3][NM][NTOOL][MAXT], save[3][NM][NTOOL][MAXT],
		enc_r[3][NM][NTOOL][MAXT], dec_r[3][NM][NTOOL][MAXT], side[3][NM][NTOOL][MAXT];
	int cnt[3] = {0};
	sfp_codec *c = sfp_codec_create();
	int rc = 0;
	printf("sfp bench refine: %s trained %d steps; %d tensors (weights, activations of 64 "
	       "test images, weight gradients)\n",
	       config, steps, nt);
	for (int ti = 0; ti < nt && c; ti++) {
		int kind = !strcmp(t[ti].kind, "weight") ? 0 : !strcmp(t[ti].kind, "activation") ? 1 : 2;
		sfp_params pb;
		sfp_params_init(&pb, 8, 1);
		pb.bias = SFP_BIAS_CHANNEL;
		size_t cap = sfp_encode_bound_params(t[ti].count, t[ti].shape, t[ti].ndim, &pb);
		uint8_t *buf = malloc(cap);
		float *back = malloc((size_t)t[ti].count * sizeof *back);
		if (!buf || !back) {
			fprintf(stderr, "sfp: out of memory\n");
			free(buf);
			free(back);
			rc = 1;
			break;
		}
		unsigned e = min_e(t[ti].data, t[ti].count);
		int k = cnt[kind]++;
		for (int mi = 0; mi < NM; mi++) {
			result r[NTOOL];
			for (int tool = 0; tool < NTOOL; tool++) {
				sfp_params p;
				sfp_params_init(&p, e, ms[mi]);
				tool_params(&p, tool);
				if (run_one(c, &t[ti], &p, repeats, buf, cap, back, &r[tool], &err) < 0) {
					fprintf(stderr, "sfp: %s m=%u %s: %s\n", t[ti].name, ms[mi],
						tool_names[tool], err.msg);
					rc = 1;
					r[tool] = r[0];
				}
				if (r[tool].mse > r[0].mse) {
					fprintf(stderr, "sfp: %s m=%u %s: error grew (%.6g > %.6g)\n",
						t[ti].name, ms[mi], tool_names[tool], r[tool].mse,
						r[0].mse);
					rc = 1;
				}
				mse_r[kind][mi][tool][k] = r[0].mse > 0 ? r[tool].mse / r[0].mse : 1.0;
				rel_r[kind][mi][tool][k] = r[0].maxrel > 0 ? r[tool].maxrel / r[0].maxrel : 1.0;
				save[kind][mi][tool][k] = rate_saving(&r[0], &r[tool], t[ti].count);
				enc_r[kind][mi][tool][k] = r[tool].enc_ns / r[0].enc_ns;
				dec_r[kind][mi][tool][k] = r[tool].dec_ns / r[0].dec_ns;
				side[kind][mi][tool][k] = r[tool].side;
				if (verbose)
					printf("  %-16s e=%u m=%u %-14s mse %.4e maxrel %.4f bits %.4f "
					       "side %.0f\n",
					       t[ti].name, e, ms[mi], tool_names[tool], r[tool].mse,
					       r[tool].maxrel, r[tool].bits, r[tool].side);
			}
		}
		free(buf);
		free(back);
	}
	printf("medians over tensors, relative to the plain container of the same (e, m):\n");
	printf("%-10s %2s %-14s %9s %9s %7s %9s %7s %7s\n", "kind", "m", "tool", "mse", "max-rel",
	       "side B", "rate-sav%", "enc x", "dec x");
	for (int kind = 0; kind < 3; kind++)
		for (int mi = 0; mi < NM; mi++)
			for (int tool = 1; tool < NTOOL; tool++) {
				int n = cnt[kind];
				if (!n)
					continue;
				printf("%-10s %2u %-14s %9.4f %9.4f %7.1f %9.3f %7.2f %7.2f\n",
				       kinds[kind], ms[mi], tool_names[tool],
				       median(mse_r[kind][mi][tool], n), median(rel_r[kind][mi][tool], n),
				       median(side[kind][mi][tool], n), median(save[kind][mi][tool], n),
				       median(enc_r[kind][mi][tool], n), median(dec_r[kind][mi][tool], n));
			}
	printf("mse, max-rel: tool / plain (< 1 is better); rate-sav%%: bits saved at equal MSE "
	       "(0.5 log2 of the MSE ratio per nonzero value, side bytes charged) in %% of the "
	       "plain container's bits; enc x, dec x: time / plain time\n");
	sfp_codec_free(c);
	bench_tensors_free(t, nall);
	return rc;
}
