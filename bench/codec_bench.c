/*
 * codec_bench.c -- `sfp bench codec`: the container against named peers, run
 * side by side in one process on the same data (docs/bench.md).
 *
 * For each tensor and m, every codec sees the tensor rounded to m mantissa
 * bits (nearest-even, the values sfp represents), so lossless peers compress
 * exactly what sfp stores. Speed is float32 bytes per second on one core:
 * each repeat times a loop of at least 50 ms (2 ms with --quick), the median
 * of --repeats is printed. Lossless codecs are checked bit for bit after
 * every run. The rows themselves live in peers.c.
 */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "bench/bench.h"
#include "bench/peers.h"
#include "bench/tensors.h"
#include "sfp/codec.h"

/* ---- harness ------------------------------------------------------------- */

static int cmp_double(const void *a, const void *b)
{
	double x = *(const double *)a, y = *(const double *)b;
	return (x > y) - (x < y);
}

typedef struct opts {
	int repeats;
	double min_ms;
	int quick;
} opts;

/* Median seconds per call of enc (which = 0) or dec (which = 1). */
static double time_op(const bench_peer *p, bench_peer_ctx *c, int which, const float *x, size_t n, uint8_t *buf,
		      size_t cap, size_t len, float *y, const opts *o)
{
	double t[64];
	int reps = o->repeats < 64 ? o->repeats : 64;
	for (int r = 0; r < reps; r++) {
		uint64_t t0 = sfp_clock_ns(), t1;
		long calls = 0;
		do {
			if (which == 0)
				p->enc(c, x, n, buf, cap);
			else
				p->dec(c, buf, len, y, n);
			calls++;
			t1 = sfp_clock_ns();
		} while ((double)(t1 - t0) < o->min_ms * 1e6);
		t[r] = (double)(t1 - t0) / 1e9 / (double)calls;
	}
	qsort(t, (size_t)reps, sizeof t[0], cmp_double);
	return t[reps / 2];
}

/* One speed target's line: measured GB/s, PASS or MISS with the shortfall. */
static void verdict(const char *what, double gbs, double target)
{
	if (gbs >= target)
		printf("   %-19s %6.2f GB/s (target %g): PASS\n", what, gbs, target);
	else
		printf("   %-19s %6.2f GB/s (target %g): MISS, short by %.2f GB/s (%.0f%% of target)\n",
		       what, gbs, target, target - gbs, 100.0 * gbs / target);
}

/* Smallest e whose window holds every nonzero exponent of x. */
static unsigned min_e(const float *x, size_t n)
{
	unsigned lo = 255, hi = 0;
	for (size_t i = 0; i < n; i++) {
		uint32_t u;
		memcpy(&u, x + i, 4);
		unsigned E = (u >> 23) & 0xff;
		if (E == 0 || E == 255)
			continue;
		lo = E < lo ? E : lo;
		hi = E > hi ? E : hi;
	}
	unsigned e = 1;
	if (hi >= lo)
		while (e < 8 && (1u << e) - 1 < hi - lo + 1)
			e++;
	return e;
}

typedef struct total {
	double bits, enc_s, dec_s, bytes;
	double max_rel;
	double sq_err; /* sum of squared errors, for the set's RMSE */
	int failed;
} total;

static int run(bench_tensor *t, int nt, const unsigned *ms, int nm, const opts *o)
{
	sfp_codec *codec = sfp_codec_create();
	int fails = 0;
	char versions[160];
	bench_peers_versions(versions, sizeof versions);
	printf("sfp bench codec: one core, CPU ISA %s; %s\n", sfp_isa_name(sfp_codec_isa(codec)),
	       versions);
	printf("GB/s = float32 bytes per second, median of %d repeats of >= %.0f ms; data rounded to m "
	       "bits (nearest-even) for every codec\n\n",
	       o->repeats, o->min_ms);
	for (int mi = 0; mi < nm; mi++) {
		unsigned m = ms[mi];
		total tot[BENCH_NPEERS];
		double gecko_bits = 0, ent_bits = 0, nvals = 0, g_enc = 0, g_dec = 0, g_bytes = 0;
		memset(tot, 0, sizeof tot);
		printf("== m = %u\n", m);
		printf("%-18s %-17s %9s %9s %9s %11s %10s\n", "tensor", "codec", "bits/val", "enc GB/s",
		       "dec GB/s", "max rel err", "rmse");
		for (int ti = 0; ti < nt; ti++) {
			size_t n = t[ti].count;
			float *x = malloc(n * 4 + 64), *y = malloc(n * 4 + 64);
			size_t cap = bench_peers_bound(n, t[ti].ndim);
			uint8_t *buf = malloc(cap);
			sfp_params q;
			sfp_params_init(&q, 8, m);
			if (!x || !y || !buf || sfp_quantize(codec, x, t[ti].data, n, &q, NULL) < 0) {
				fprintf(stderr, "sfp bench: cannot prepare '%s'\n", t[ti].name);
				return 1;
			}
			bench_peer_ctx c = {min_e(x, n), m, 0, 8.0, codec, t[ti].shape, t[ti].ndim};
			double sfp_gecko_bits = 16;
			for (int pi = 0; pi < BENCH_NPEERS; pi++) {
				const bench_peer *p = &bench_peers[pi];
				int is_gecko = !strcmp(p->name, "sfp+gecko");
				if (!strcmp(p->name, "zfp-rate"))
					c.zfp_rate = sfp_gecko_bits < 1 ? 1 : round(4 * sfp_gecko_bits) / 4;
				size_t len = p->enc(&c, x, n, buf, cap);
				if (len == 0 || p->dec(&c, buf, len, y, n) != 0) {
					printf("%-18s %-17s FAILED to %s\n", t[ti].name, p->name,
					       len ? "decode" : "encode");
					tot[pi].failed = 1;
					fails++;
					continue;
				}
				double maxrel = 0, sq = 0;
				for (size_t i = 0; i < n; i++) {
					double d = (double)y[i] - x[i];
					sq += d * d;
					if (x[i] != 0.0f) {
						double r = fabs((double)y[i] - x[i]) / fabs(x[i]);
						if (!(r <= maxrel))
							maxrel = r;
					} else if (y[i] != 0.0f && maxrel < INFINITY) {
						maxrel = maxrel > 1 ? maxrel : 1;
					}
				}
				if (!p->lossy && memcmp(x, y, 4 * n) != 0) {
					printf("%-18s %-17s FAILED: lossless round trip differs\n", t[ti].name,
					       p->name);
					tot[pi].failed = 1;
					fails++;
					continue;
				}
				double bits = 8.0 * (double)len / (double)n;
				if (is_gecko)
					sfp_gecko_bits = bits;
				double te = time_op(p, &c, 0, x, n, buf, cap, len, y, o);
				len = p->enc(&c, x, n, buf, cap);
				double td = time_op(p, &c, 1, x, n, buf, cap, len, y, o);
				printf("%-18s %-17s %9.3f %9.2f %9.2f %11.3g %10.3g", t[ti].name, p->name, bits,
				       4.0 * n / te / 1e9, 4.0 * n / td / 1e9, maxrel,
				       n ? sqrt(sq / (double)n) : 0.0);
				if (!strncmp(p->name, "sfp", 3)) {
					sfp_info in;
					uint8_t *codes = malloc(n ? n : 1);
					sfp_inspect(buf, len, &in, NULL);
					sfp_decode_codes(codec, codes, n, buf, len, NULL);
					double H = sfp_entropy_u8(codes, n);
					printf("  e=%u", c.e);
					if (is_gecko) {
						double gb = 8.0 * (double)in.exp_bytes / (double)n;
						printf(" exp: %.3f bits vs entropy %.3f (%s)", gb, H,
						       in.exp_coder == SFP_EXP_GECKO ? "gecko" : "raw");
						gecko_bits += gb * (double)n;
						ent_bits += H * (double)n;
						/* Gecko alone, on these codes. */
						sfp_gecko_opts go;
						sfp_gecko_opts_init(&go);
						size_t gcap = sfp_gecko_bound(n, c.e), wb = sfp_gecko_work_bytes(n), gw = 0;
						uint8_t *gbuf = malloc(gcap), *back = malloc(n ? n : 1);
						void *work = malloc(wb);
						double tg[64], td2[64];
						int reps = o->repeats < 64 ? o->repeats : 64;
						int isa = sfp_cpu_isa();
						for (int r = 0; r < reps; r++) {
							long k = 0;
							uint64_t t0 = sfp_clock_ns(), t1;
							do {
								sfp_gecko_encode(gbuf, gcap, &gw, codes, n, c.e, &go, isa, work, wb, NULL);
								k++;
								t1 = sfp_clock_ns();
							} while ((double)(t1 - t0) < o->min_ms * 1e6);
							tg[r] = (double)(t1 - t0) / 1e9 / (double)k;
							k = 0;
							t0 = sfp_clock_ns();
							do {
								sfp_gecko_decode(back, n, c.e, gbuf, gw, isa, work, wb, NULL);
								k++;
								t1 = sfp_clock_ns();
							} while ((double)(t1 - t0) < o->min_ms * 1e6);
							td2[r] = (double)(t1 - t0) / 1e9 / (double)k;
						}
						if (memcmp(back, codes, n) != 0) {
							printf("\n%-18s gecko alone FAILED: round trip differs", t[ti].name);
							fails++;
						}
						qsort(tg, (size_t)reps, sizeof(double), cmp_double);
						qsort(td2, (size_t)reps, sizeof(double), cmp_double);
						g_enc += tg[reps / 2];
						g_dec += td2[reps / 2];
						g_bytes += 4.0 * (double)n;
						free(gbuf);
						free(back);
						free(work);
					}
					free(codes);
				}
				printf("\n");
				tot[pi].bits += bits * (double)n;
				tot[pi].enc_s += te;
				tot[pi].dec_s += td;
				tot[pi].bytes += 4.0 * (double)n;
				tot[pi].max_rel = maxrel > tot[pi].max_rel ? maxrel : tot[pi].max_rel;
				tot[pi].sq_err += sq;
			}
			nvals += (double)n;
			free(x);
			free(y);
			free(buf);
		}
		printf("-- m = %u, all tensors (%.0f values): bits/val weighted by size, GB/s = total bytes "
		       "/ total time\n",
		       m, nvals);
		int best = -1;
		for (int pi = 0; pi < BENCH_NPEERS; pi++) {
			if (tot[pi].failed || tot[pi].bytes == 0)
				continue;
			printf("   %-17s %9.3f %9.2f %9.2f %11.3g %10.3g\n", bench_peers[pi].name,
			       tot[pi].bits / nvals, tot[pi].bytes / tot[pi].enc_s / 1e9,
			       tot[pi].bytes / tot[pi].dec_s / 1e9, tot[pi].max_rel,
			       sqrt(tot[pi].sq_err / nvals));
			/* Only lossless codecs compete on size: fp16/bf16/zfp change the values. */
			if (strncmp(bench_peers[pi].name, "sfp", 3) && strcmp(bench_peers[pi].name, "memcpy") &&
			    !bench_peers[pi].lossy && (best < 0 || tot[pi].bits < tot[best].bits))
				best = pi;
		}
		const total *sg = &tot[2], *sp = &tot[1];
		if (best >= 0 && !sg->failed)
			printf("   sfp+gecko %.3f bits/val vs best other lossless codec (%s) %.3f: %s (%.2fx)\n",
			       sg->bits / nvals, bench_peers[best].name, tot[best].bits / nvals,
			       sg->bits < tot[best].bits ? "PASS" : "MISS", tot[best].bits / sg->bits);
		if (ent_bits > 0)
			printf("   gecko %.3f bits/exponent vs entropy %.3f: %s (%.1f%% %s)\n",
			       gecko_bits / nvals, ent_bits / nvals,
			       gecko_bits <= 1.10 * ent_bits ? "PASS" : "MISS",
			       100.0 * fabs(gecko_bits / ent_bits - 1), gecko_bits > ent_bits ? "above" : "below");
		if (!sp->failed) {
			verdict("packing encode", sp->bytes / sp->enc_s / 1e9, 5);
			verdict("packing decode", sp->bytes / sp->dec_s / 1e9, 8);
		}
		if (!sg->failed) {
			verdict("sfp+gecko encode", sg->bytes / sg->enc_s / 1e9, 2);
			verdict("sfp+gecko decode", sg->bytes / sg->dec_s / 1e9, 2);
		}
		if (g_bytes > 0) {
			verdict("gecko alone encode", g_bytes / g_enc / 1e9, 2);
			verdict("gecko alone decode", g_bytes / g_dec / 1e9, 2);
		}
		printf("\n");
	}
	sfp_codec_free(codec);
	return fails ? 1 : 0;
}

int sfp_bench_codec_main(int argc, char **argv)
{
	opts o = {7, 50.0, 0};
	unsigned ms[4] = {23, 7, 3, 1};
	int nm = 4, nfiles = 0;
	char **files = calloc((size_t)argc + 1, sizeof *files);
	for (int i = 1; i < argc; i++) {
		if (!strcmp(argv[i], "--quick")) {
			o.quick = 1;
			o.repeats = 2;
			o.min_ms = 2;
		} else if (!strcmp(argv[i], "--repeats") && i + 1 < argc) {
			o.repeats = atoi(argv[++i]);
			if (o.repeats < 1 || o.repeats > 64) {
				fprintf(stderr, "sfp: --repeats must be in 1..64\n");
				return 2;
			}
		} else if (!strcmp(argv[i], "--m") && i + 1 < argc) {
			char *s = argv[++i], *end;
			nm = 0;
			while (*s && nm < 4) {
				long v = strtol(s, &end, 10);
				if (end == s || v < 0 || v > 23) {
					fprintf(stderr, "sfp: --m takes a list like 23,7,3,1\n");
					return 2;
				}
				ms[nm++] = (unsigned)v;
				s = *end == ',' ? end + 1 : end;
				if (*end && *end != ',') {
					fprintf(stderr, "sfp: --m takes a list like 23,7,3,1\n");
					return 2;
				}
			}
		} else if (argv[i][0] == '-') {
			fprintf(stderr, "sfp: unknown option '%s' for bench codec\n", argv[i]);
			return 2;
		} else {
			files[nfiles++] = argv[i];
		}
	}
	bench_tensor *t;
	sfp_error err;
	int nt = nfiles ? bench_tensors_from_files(&t, files, nfiles, &err)
			: bench_tensors_standard(&t, o.quick ? 0.05 : 1.0, &err);
	free(files);
	if (nt < 0) {
		fprintf(stderr, "sfp: %s\n", err.msg);
		return 2;
	}
	if (bench_peers_init() < 0) {
		fprintf(stderr, "sfp: this CPU lacks AVX2/F16C, needed by the fp16 peer\n");
		bench_tensors_free(t, nt);
		return 1;
	}
	int rc = run(t, nt, ms, nm, &o);
	bench_peers_release();
	bench_tensors_free(t, nt);
	return rc;
}
