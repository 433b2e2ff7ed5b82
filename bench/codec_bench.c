/*
 * codec_bench.c -- `sfp bench codec`: the container against named peers, run
 * side by side in one process on the same data (docs/bench.md).
 *
 * For each tensor and m, every codec sees the tensor rounded to m mantissa
 * bits (nearest-even, the values sfp represents), so lossless peers compress
 * exactly what sfp stores. Speed is float32 bytes per second on one core:
 * each repeat times a loop of at least --min-ms, the median of --repeats is
 * printed. Lossless codecs are checked bit for bit after every run.
 */
#include <blosc.h>
#include <fpzip.h>
#include <immintrin.h>
#include <lz4.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <zfp.h>
#include <zstd.h>

#include "bench/bench.h"
#include "bench/tensors.h"
#include "sfp/codec.h"

typedef struct bctx {
	unsigned e, m;
	int gecko;
	double zfp_rate;
	sfp_codec *codec;
	const uint64_t *shape;
	unsigned ndim;
} bctx;

typedef struct peer {
	const char *name;
	int lossy;
	/* Returns compressed bytes, 0 on failure. */
	size_t (*enc)(bctx *c, const float *x, size_t n, uint8_t *out, size_t cap);
	int (*dec)(bctx *c, const uint8_t *in, size_t len, float *y, size_t n);
} peer;

/* ---- peers ----------------------------------------------------------------- */

static size_t memcpy_enc(bctx *c, const float *x, size_t n, uint8_t *out, size_t cap)
{
	(void)c;
	if (cap < 4 * n)
		return 0;
	memcpy(out, x, 4 * n);
	return 4 * n;
}
static int memcpy_dec(bctx *c, const uint8_t *in, size_t len, float *y, size_t n)
{
	(void)c;
	memcpy(y, in, len < 4 * n ? len : 4 * n);
	return 0;
}

static size_t sfp_enc(bctx *c, const float *x, size_t n, uint8_t *out, size_t cap)
{
	sfp_params p;
	size_t w;
	sfp_params_init(&p, c->e, c->m);
	p.gecko = c->gecko;
	return sfp_encode(c->codec, out, cap, &w, x, n, c->shape, c->ndim, &p, NULL) == SFP_OK ? w : 0;
}
static int sfp_dec(bctx *c, const uint8_t *in, size_t len, float *y, size_t n)
{
	return sfp_decode(c->codec, y, n, in, len, NULL, NULL);
}

static size_t zstd_enc(bctx *c, const float *x, size_t n, uint8_t *out, size_t cap)
{
	(void)c;
	size_t r = ZSTD_compress(out, cap, x, 4 * n, 1);
	return ZSTD_isError(r) ? 0 : r;
}
static int zstd_dec(bctx *c, const uint8_t *in, size_t len, float *y, size_t n)
{
	(void)c;
	size_t r = ZSTD_decompress(y, 4 * n, in, len);
	return ZSTD_isError(r) || r != 4 * n;
}

static size_t lz4_enc(bctx *c, const float *x, size_t n, uint8_t *out, size_t cap)
{
	(void)c;
	int r = LZ4_compress_default((const char *)x, (char *)out, (int)(4 * n), (int)cap);
	return r > 0 ? (size_t)r : 0;
}
static int lz4_dec(bctx *c, const uint8_t *in, size_t len, float *y, size_t n)
{
	(void)c;
	return LZ4_decompress_safe((const char *)in, (char *)y, (int)len, (int)(4 * n)) != (int)(4 * n);
}

static size_t blosc_enc(int shuffle, const char *comp, const float *x, size_t n, uint8_t *out,
			size_t cap)
{
	int r = blosc_compress_ctx(5, shuffle, 4, 4 * n, x, out, cap, comp, 0, 1);
	return r > 0 ? (size_t)r : 0;
}
static int blosc_dec(bctx *c, const uint8_t *in, size_t len, float *y, size_t n)
{
	(void)c;
	(void)len;
	return blosc_decompress_ctx(in, y, 4 * n, 1) != (int)(4 * n);
}
static size_t bs_lz4(bctx *c, const float *x, size_t n, uint8_t *o, size_t cap)
{
	(void)c;
	return blosc_enc(BLOSC_SHUFFLE, "lz4", x, n, o, cap);
}
static size_t bs_zstd(bctx *c, const float *x, size_t n, uint8_t *o, size_t cap)
{
	(void)c;
	return blosc_enc(BLOSC_SHUFFLE, "zstd", x, n, o, cap);
}
static size_t bb_lz4(bctx *c, const float *x, size_t n, uint8_t *o, size_t cap)
{
	(void)c;
	return blosc_enc(BLOSC_BITSHUFFLE, "lz4", x, n, o, cap);
}
static size_t bb_zstd(bctx *c, const float *x, size_t n, uint8_t *o, size_t cap)
{
	(void)c;
	return blosc_enc(BLOSC_BITSHUFFLE, "zstd", x, n, o, cap);
}

static size_t zfp_enc(bctx *c, const float *x, size_t n, uint8_t *out, size_t cap)
{
	zfp_field *f = zfp_field_1d((void *)x, zfp_type_float, n);
	zfp_stream *z = zfp_stream_open(NULL);
	zfp_stream_set_rate(z, c->zfp_rate, zfp_type_float, 1, zfp_false);
	if (zfp_stream_maximum_size(z, f) > cap) {
		zfp_field_free(f);
		zfp_stream_close(z);
		return 0;
	}
	bitstream *b = stream_open(out, cap);
	zfp_stream_set_bit_stream(z, b);
	zfp_stream_rewind(z);
	size_t r = zfp_compress(z, f);
	stream_close(b);
	zfp_field_free(f);
	zfp_stream_close(z);
	return r;
}
static int zfp_dec(bctx *c, const uint8_t *in, size_t len, float *y, size_t n)
{
	zfp_field *f = zfp_field_1d(y, zfp_type_float, n);
	zfp_stream *z = zfp_stream_open(NULL);
	zfp_stream_set_rate(z, c->zfp_rate, zfp_type_float, 1, zfp_false);
	bitstream *b = stream_open((void *)in, len);
	zfp_stream_set_bit_stream(z, b);
	zfp_stream_rewind(z);
	size_t r = zfp_decompress(z, f);
	stream_close(b);
	zfp_field_free(f);
	zfp_stream_close(z);
	return r == 0;
}

static size_t fpzip_enc(bctx *c, const float *x, size_t n, uint8_t *out, size_t cap)
{
	FPZ *f = fpzip_write_to_buffer(out, cap);
	f->type = FPZIP_TYPE_FLOAT;
	f->prec = c->m == 23 ? 0 : (int)(9 + c->m);
	f->nx = (int)n;
	f->ny = f->nz = f->nf = 1;
	size_t r = fpzip_write_header(f) ? fpzip_write(f, x) : 0;
	fpzip_write_close(f);
	return r;
}
static int fpzip_dec(bctx *c, const uint8_t *in, size_t len, float *y, size_t n)
{
	(void)c;
	(void)len;
	FPZ *f = fpzip_read_from_buffer(in);
	int ok = fpzip_read_header(f) && (size_t)f->nx * f->ny * f->nz * f->nf == n &&
		 fpzip_read(f, y) != 0;
	fpzip_read_close(f);
	return !ok;
}

__attribute__((target("avx2,f16c"))) static size_t fp16_enc(bctx *c, const float *x, size_t n, uint8_t *out, size_t cap)
{
	(void)c;
	if (cap < 2 * n)
		return 0;
	size_t i = 0;
	for (; i + 8 <= n; i += 8)
		_mm_storeu_si128((__m128i *)(out + 2 * i),
				 _mm256_cvtps_ph(_mm256_loadu_ps(x + i), _MM_FROUND_TO_NEAREST_INT));
	for (; i < n; i++) {
		uint16_t h = _cvtss_sh(x[i], _MM_FROUND_TO_NEAREST_INT);
		memcpy(out + 2 * i, &h, 2);
	}
	return 2 * n;
}
__attribute__((target("avx2,f16c"))) static int fp16_dec(bctx *c, const uint8_t *in, size_t len, float *y, size_t n)
{
	(void)c;
	(void)len;
	size_t i = 0;
	for (; i + 8 <= n; i += 8)
		_mm256_storeu_ps(y + i, _mm256_cvtph_ps(_mm_loadu_si128((const __m128i *)(in + 2 * i))));
	for (; i < n; i++) {
		uint16_t h;
		memcpy(&h, in + 2 * i, 2);
		y[i] = _cvtsh_ss(h);
	}
	return 0;
}

static size_t bf16_enc(bctx *c, const float *x, size_t n, uint8_t *out, size_t cap)
{
	(void)c;
	if (cap < 2 * n)
		return 0;
	const uint32_t *u = (const uint32_t *)x;
	uint16_t *o = (uint16_t *)out;
	for (size_t i = 0; i < n; i++)
		o[i] = (uint16_t)((u[i] + 0x7fffu + ((u[i] >> 16) & 1)) >> 16);
	return 2 * n;
}
static int bf16_dec(bctx *c, const uint8_t *in, size_t len, float *y, size_t n)
{
	(void)c;
	(void)len;
	const uint16_t *h = (const uint16_t *)in;
	uint32_t *o = (uint32_t *)y;
	for (size_t i = 0; i < n; i++)
		o[i] = (uint32_t)h[i] << 16;
	return 0;
}

static const peer peers[] = {
	{"memcpy", 0, memcpy_enc, memcpy_dec},
	{"sfp", 0, sfp_enc, sfp_dec},
	{"sfp+gecko", 0, sfp_enc, sfp_dec},
	{"zstd-1", 0, zstd_enc, zstd_dec},
	{"lz4", 0, lz4_enc, lz4_dec},
	{"blosc-shuf-lz4", 0, bs_lz4, blosc_dec},
	{"blosc-shuf-zstd", 0, bs_zstd, blosc_dec},
	{"blosc-bshuf-lz4", 0, bb_lz4, blosc_dec},
	{"blosc-bshuf-zstd", 0, bb_zstd, blosc_dec},
	{"fpzip", 0, fpzip_enc, fpzip_dec},
	{"zfp-rate", 1, zfp_enc, zfp_dec},
	{"fp16", 1, fp16_enc, fp16_dec},
	{"bf16", 1, bf16_enc, bf16_dec},
};
enum { NPEERS = sizeof peers / sizeof peers[0] };

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
static double time_op(const peer *p, bctx *c, int which, const float *x, size_t n, uint8_t *buf,
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
	printf("sfp bench codec: one core, CPU ISA %s; zstd %s, lz4 %s, blosc %s, zfp %s, fpzip %d.%d\n",
	       sfp_isa_name(sfp_cpu_isa()), ZSTD_versionString(), LZ4_versionString(),
	       BLOSC_VERSION_STRING, ZFP_VERSION_STRING, FPZIP_VERSION_MAJOR, FPZIP_VERSION_MINOR);
	printf("GB/s = float32 bytes per second, median of %d repeats of >= %.0f ms; data rounded to m "
	       "bits (nearest-even) for every codec\n\n",
	       o->repeats, o->min_ms);
	if (!__builtin_cpu_supports("f16c") || !__builtin_cpu_supports("avx2")) {
		fprintf(stderr, "sfp bench: this CPU lacks AVX2/F16C, needed by the fp16 peer\n");
		return 1;
	}
	for (int mi = 0; mi < nm; mi++) {
		unsigned m = ms[mi];
		total tot[NPEERS];
		double gecko_bits = 0, ent_bits = 0, nvals = 0, g_enc = 0, g_dec = 0, g_bytes = 0;
		memset(tot, 0, sizeof tot);
		printf("== m = %u\n", m);
		printf("%-18s %-17s %9s %9s %9s %11s %10s\n", "tensor", "codec", "bits/val", "enc GB/s",
		       "dec GB/s", "max rel err", "rmse");
		for (int ti = 0; ti < nt; ti++) {
			size_t n = t[ti].count;
			float *x = malloc(n * 4 + 64), *y = malloc(n * 4 + 64);
			size_t cap = sfp_encode_bound(n, t[ti].ndim) + 4 * n + 65536;
			if (ZSTD_compressBound(4 * n) > cap)
				cap = ZSTD_compressBound(4 * n);
			uint8_t *buf = malloc(cap);
			sfp_params q;
			sfp_params_init(&q, 8, m);
			if (!x || !y || !buf || sfp_quantize(codec, x, t[ti].data, n, &q, NULL) < 0) {
				fprintf(stderr, "sfp bench: cannot prepare '%s'\n", t[ti].name);
				return 1;
			}
			bctx c = {min_e(x, n), m, 0, 8.0, codec, t[ti].shape, t[ti].ndim};
			double sfp_gecko_bits = 16;
			for (int pi = 0; pi < NPEERS; pi++) {
				const peer *p = &peers[pi];
				c.gecko = !strcmp(p->name, "sfp+gecko");
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
				if (c.gecko)
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
					if (c.gecko) {
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
		for (int pi = 0; pi < NPEERS; pi++) {
			if (tot[pi].failed || tot[pi].bytes == 0)
				continue;
			printf("   %-17s %9.3f %9.2f %9.2f %11.3g %10.3g\n", peers[pi].name,
			       tot[pi].bits / nvals, tot[pi].bytes / tot[pi].enc_s / 1e9,
			       tot[pi].bytes / tot[pi].dec_s / 1e9, tot[pi].max_rel,
			       sqrt(tot[pi].sq_err / nvals));
			/* Only lossless codecs compete on size: fp16/bf16/zfp change the values. */
			if (strncmp(peers[pi].name, "sfp", 3) && strcmp(peers[pi].name, "memcpy") &&
			    !peers[pi].lossy && (best < 0 || tot[pi].bits < tot[best].bits))
				best = pi;
		}
		const total *sg = &tot[2], *sp = &tot[1];
		if (best >= 0 && !sg->failed)
			printf("   sfp+gecko %.3f bits/val vs best other lossless codec (%s) %.3f: %s (%.2fx)\n",
			       sg->bits / nvals, peers[best].name, tot[best].bits / nvals,
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
	blosc_init();
	int rc = run(t, nt, ms, nm, &o);
	blosc_destroy();
	bench_tensors_free(t, nt);
	return rc;
}
