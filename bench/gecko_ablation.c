/*
 * gecko_ablation.c -- `sfp bench gecko`: the ablation behind Gecko's defaults
 * (docs/gecko.md). For each tensor, exponent width e (8, and the smallest
 * that holds the tensor) and m, the exponent codes of the container are coded
 * by every variant; bits per exponent are compared with the codes' empirical
 * order-0 entropy.
 */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "bench/bench.h"
#include "bench/tensors.h"
#include "sfp/codec.h"

enum { NCFG = 4 * 3 + 3 };

static void cfg_of(int k, sfp_gecko_opts *o, char *name, size_t cap)
{
	static const unsigned groups[4] = {8, 16, 32, 64};
	static const char *refs[3] = {"min", "fixed", "prev"};
	sfp_gecko_opts_init(o);
	if (k < 12) {
		o->variant = SFP_GECKO_DELTA;
		o->group = groups[k / 3];
		o->reference = k % 3;
		snprintf(name, cap, "delta-%u-%s", o->group, refs[k % 3]);
	} else {
		o->variant = k == 12 ? SFP_GECKO_ANS0 : k == 13 ? SFP_GECKO_ANS1 : SFP_GECKO_AUTO;
		snprintf(name, cap, "%s", k == 12 ? "ans0" : k == 13 ? "ans1" : "auto");
	}
}

static unsigned min_e(const uint8_t *codes_e8, uint64_t n)
{
	unsigned lo = 255, hi = 0;
	for (uint64_t i = 0; i < n; i++)
		if (codes_e8[i]) {
			lo = codes_e8[i] < lo ? codes_e8[i] : lo;
			hi = codes_e8[i] > hi ? codes_e8[i] : hi;
		}
	unsigned e = 1;
	if (hi >= lo)
		while (e < 8 && (1u << e) - 1 < hi - lo + 1)
			e++;
	return e;
}

int sfp_bench_gecko_main(int argc, char **argv)
{
	int quick = 0, nfiles = 0;
	char **files = calloc((size_t)argc + 1, sizeof *files);
	for (int i = 1; i < argc; i++) {
		if (!strcmp(argv[i], "--quick"))
			quick = 1;
		else if (argv[i][0] == '-') {
			fprintf(stderr, "sfp: unknown option '%s' for bench gecko\n", argv[i]);
			free(files);
			return 2;
		} else
			files[nfiles++] = argv[i];
	}
	bench_tensor *t;
	sfp_error err;
	int nt = nfiles ? bench_tensors_from_files(&t, files, nfiles, &err)
			: bench_tensors_standard(&t, quick ? 0.05 : 1.0, &err);
	free(files);
	if (nt < 0) {
		fprintf(stderr, "sfp: %s\n", err.msg);
		return 2;
	}
	static const unsigned ms[3] = {7, 3, 1};
	double sum_bits[NCFG] = {0}, sum_H = 0, sum_n = 0, wins[NCFG] = {0};
	double auto_enc = 0, auto_dec = 0, auto_bytes = 0;
	char name[32];
	sfp_codec *codec = sfp_codec_create();
	int rc = 0;

	printf("sfp bench gecko: bits per exponent code; H = empirical order-0 entropy\n");
	printf("%-18s %2s %2s %8s %8s %8s %8s %8s %8s %8s\n", "tensor", "m", "e", "n", "H",
	       "best-dlt", "dlt16min", "ans0", "ans1", "auto");
	for (int ti = 0; ti < nt; ti++) {
		uint64_t n = t[ti].count;
		size_t cap = sfp_encode_bound(n, t[ti].ndim), wb = sfp_gecko_work_bytes(n);
		uint8_t *buf = malloc(cap), *codes = malloc(n + 1), *back = malloc(n + 1);
		size_t gcap = sfp_gecko_bound(n, 8);
		uint8_t *g = malloc(gcap);
		void *work = malloc(wb);
		for (int mi = 0; mi < 3; mi++) {
			sfp_params p;
			size_t w;
			sfp_params_init(&p, 8, ms[mi]);
			if (sfp_encode(codec, buf, cap, &w, t[ti].data, n, t[ti].shape, t[ti].ndim, &p,
				       &err) < 0 ||
			    sfp_decode_codes(codec, codes, n, buf, w, &err) < 0) {
				fprintf(stderr, "sfp: %s: %s\n", t[ti].name, err.msg);
				rc = 1;
				continue;
			}
			unsigned es[2] = {8, min_e(codes, n)};
			for (int ei = 0; ei < 2; ei++) {
				if (ei == 1 && es[1] == 8)
					continue;
				p.e = es[ei];
				if (ei == 1 && (sfp_encode(codec, buf, cap, &w, t[ti].data, n, t[ti].shape,
							   t[ti].ndim, &p, &err) < 0 ||
						sfp_decode_codes(codec, codes, n, buf, w, &err) < 0)) {
					rc = 1;
					continue;
				}
				double H = sfp_entropy_u8(codes, n), bits[NCFG];
				int best = 0;
				for (int k = 0; k < NCFG; k++) {
					sfp_gecko_opts o;
					size_t gw = 0;
					cfg_of(k, &o, name, sizeof name);
					uint64_t t0 = sfp_clock_ns();
					if (sfp_gecko_encode(g, gcap, &gw, codes, n, p.e, &o, sfp_cpu_isa(), work,
							     wb, &err) < 0) {
						fprintf(stderr, "sfp: %s %s: %s\n", t[ti].name, name, err.msg);
						rc = 1;
						bits[k] = NAN;
						continue;
					}
					uint64_t t1 = sfp_clock_ns();
					if (sfp_gecko_decode(back, n, p.e, g, gw, sfp_cpu_isa(), work, wb, &err) < 0 ||
					    memcmp(back, codes, n) != 0) {
						fprintf(stderr, "sfp: %s %s: round trip FAILED\n", t[ti].name, name);
						rc = 1;
					}
					uint64_t t2 = sfp_clock_ns();
					if (k == NCFG - 1) {
						auto_enc += (double)(t1 - t0);
						auto_dec += (double)(t2 - t1);
						auto_bytes += 4.0 * (double)n;
					}
					bits[k] = n ? 8.0 * (double)gw / (double)n : 0;
					sum_bits[k] += (double)gw * 8.0;
					if (k < 12 && bits[k] < bits[best])
						best = k;
				}
				for (int k = 0; k < 14; k++) {
					int is_min = 1;
					for (int j = 0; j < 14; j++)
						if (bits[j] < bits[k])
							is_min = 0;
					wins[k] += is_min;
				}
				sum_H += H * (double)n;
				sum_n += (double)n;
				cfg_of(best, &(sfp_gecko_opts){0}, name, sizeof name);
				printf("%-18s %2u %2u %8llu %8.3f %8.3f %8.3f %8.3f %8.3f %8.3f  (%s)\n",
				       t[ti].name, ms[mi], p.e, (unsigned long long)n, H, bits[best],
				       bits[3], bits[12], bits[13], bits[14], name);
			}
		}
		free(buf);
		free(codes);
		free(back);
		free(g);
		free(work);
	}
	printf("\nall rows, weighted by size: entropy %.4f bits per exponent\n", sum_H / sum_n);
	printf("%-18s %10s %10s %6s\n", "variant", "bits/exp", "vs H", "wins");
	for (int k = 0; k < NCFG; k++) {
		cfg_of(k, &(sfp_gecko_opts){0}, name, sizeof name);
		printf("%-18s %10.4f %9.1f%% %6.0f\n", name, sum_bits[k] / sum_n,
		       100.0 * (sum_bits[k] / sum_n / (sum_H / sum_n) - 1), k < 14 ? wins[k] : 0);
	}
	if (auto_bytes > 0)
		printf("auto: encode %.2f GB/s, decode %.2f GB/s (float32 bytes per second, one pass "
		       "each)\n",
		       auto_bytes / auto_enc, auto_bytes / auto_dec);
	sfp_codec_free(codec);
	bench_tensors_free(t, nt);
	return rc;
}
