/*
 * test_codec_container.c -- the container codec: round trips over the whole (e, m)
 * grid, error bounds, rounding, determinism, bounds, corrupt input, specials,
 * policies, and every SIMD level against the scalar reference.
 */
#include <float.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "sfp/codec.h"
#include "tests/util/testutil.h"

/* Tolerance of the stochastic-rounding bias test, in standard errors. */
#define BIAS_SIGMAS 5.0

static sfp_codec *codec;

static uint32_t f2u(float f)
{
	uint32_t u;
	memcpy(&u, &f, 4);
	return u;
}
static float u2f(uint32_t u)
{
	float f;
	memcpy(&f, &u, 4);
	return f;
}

enum { D_GAUSS, D_SPARSE_POS, D_WIDE, D_TINY, D_MIXED, D_NKINDS };

/* Test data of a few shapes that matter: dense Gaussian, ReLU-like sparse
 * positive, very wide exponent range, values near the bottom of float32, and
 * a mix with exact zeros of both signs. */
static void fill(float *x, size_t n, int kind, uint64_t seed)
{
	sfp_rng r;
	sfp_rng_seed(&r, seed);
	for (size_t i = 0; i < n; i++) {
		float g = sfp_rng_normal(&r);
		switch (kind) {
		case D_GAUSS: x[i] = 0.05f * g; break;
		case D_SPARSE_POS: x[i] = g > 0.3f ? g : 0.0f; break;
		case D_WIDE: x[i] = (g < 0 ? -1.0f : 1.0f) * powf(2.0f, 60.0f * sfp_rng_uniform(&r) - 30.0f); break;
		case D_TINY: x[i] = g * 1e-36f; break;
		default: x[i] = (i % 7 == 0) ? 0.0f : (i % 11 == 0) ? -0.0f : g * 3.0f; break;
		}
	}
}

/* Encode with the context, decode, check against sfp_quantize; return bytes. */
static size_t roundtrip(const float *x, size_t n, const sfp_params *p, float *y)
{
	size_t cap = sfp_encode_bound(n, 1), w = 0;
	uint8_t *buf = malloc(cap);
	float *q = malloc((n ? n : 1) * sizeof(float));
	uint64_t shape = n;
	sfp_error err;
	CU_ASSERT_PTR_NOT_NULL_FATAL(buf);
	int rc = sfp_encode(codec, buf, cap, &w, x, n, &shape, 1, p, &err);
	if (rc != SFP_OK)
		fprintf(stderr, "\n  encode e=%u m=%u: %s\n", p->e, p->m, err.msg);
	CU_ASSERT_EQUAL_FATAL(rc, SFP_OK);
	CU_ASSERT(w <= cap);
	rc = sfp_decode(codec, y, n, buf, w, NULL, &err);
	if (rc != SFP_OK)
		fprintf(stderr, "\n  decode e=%u m=%u: %s\n", p->e, p->m, err.msg);
	CU_ASSERT_EQUAL_FATAL(rc, SFP_OK);
	CU_ASSERT_EQUAL(sfp_quantize(codec, q, x, n, p, NULL), SFP_OK);
	CU_ASSERT(memcmp(q, y, n * sizeof(float)) == 0);
	free(q);
	free(buf);
	return w;
}

/* Every (e, m), both exponent coders: decode(encode(x)) == quantize(x), and
 * in-window normal values are within 2^-(m+1) relative error. */
static void test_grid(void)
{
	enum { N = 3001 };
	float *x = malloc(N * sizeof(float)), *y = malloc(N * sizeof(float));
	double worst_ratio = 0;
	for (int kind = 0; kind < D_NKINDS; kind++) {
		fill(x, N, kind, 100 + (uint64_t)kind);
		for (unsigned e = 1; e <= 8; e++)
			for (unsigned m = 0; m <= 23; m++)
				for (int g = 0; g <= 1; g++) {
					sfp_params p;
					sfp_info info;
					sfp_params_init(&p, e, m);
					p.gecko = g;
					size_t cap = sfp_encode_bound(N, 1), w;
					uint8_t *buf = malloc(cap);
					uint64_t shape = N;
					CU_ASSERT_EQUAL_FATAL(sfp_encode(codec, buf, cap, &w, x, N, &shape, 1, &p, NULL), SFP_OK);
					CU_ASSERT_EQUAL_FATAL(sfp_decode(codec, y, N, buf, w, &info, NULL), SFP_OK);
					free(buf);
					const double tol = ldexp(1.0, -(int)(m + 1));
					for (size_t i = 0; i < N; i++) {
						uint32_t E = (f2u(x[i]) >> 23) & 0xff;
						if (x[i] == 0.0f || E < info.exp_lo || E > info.exp_hi)
							continue;
						if (y[i] == 0.0f)
							continue; /* rounded below the window */
						double rel = fabs((double)y[i] - x[i]) / fabs(x[i]);
						if (rel / tol > worst_ratio)
							worst_ratio = rel / tol;
						if (rel > tol) {
							fprintf(stderr, "\n  e=%u m=%u x=%a y=%a rel=%g\n", e, m, (double)x[i], (double)y[i], rel);
							CU_FAIL("relative error above 2^-(m+1)");
							goto done;
						}
					}
					if (g == 0)
						roundtrip(x, N, &p, y);
				}
	}
done:
	printf(" (max rel err / 2^-(m+1) = %.4f) ", worst_ratio);
	free(x);
	free(y);
}

/* e = 8, m = 23 keeps every bit pattern, specials included. */
static void test_lossless(void)
{
	static const uint32_t special[] = {
		0x00000000, 0x80000000, 0x00000001, 0x807fffff, 0x00400000, 0x7f800000,
		0xff800000, 0x7fc00000, 0xffc00001, 0x7f800001, 0x7fbfffff, 0x7f7fffff,
		0xff7fffff, 0x00800000, 0x80800000, 0x3f800000, 0xbf800001};
	enum { N = 1 << 20 };
	uint32_t *u = malloc(N * 4);
	float *y = malloc(N * 4);
	sfp_rng r;
	sfp_rng_seed(&r, 9);
	for (size_t i = 0; i < N; i++)
		u[i] = (i < sizeof special / 4) ? special[i] : (uint32_t)sfp_rng_u64(&r);
	for (int g = 0; g <= 1; g++) {
		sfp_params p;
		sfp_params_init(&p, 8, 23);
		p.gecko = g;
		roundtrip((const float *)u, N, &p, y);
		CU_ASSERT(memcmp(u, y, N * 4) == 0);
		/* Mostly-special data goes to stored mode and still round trips. */
		roundtrip((const float *)special, sizeof special / 4, &p, y);
		CU_ASSERT(memcmp(special, y, sizeof special) == 0);
	}
	free(u);
	free(y);
}

/* NaN and Inf survive every lossy container too. */
static void test_specials_lossy(void)
{
	float x[64], y[64];
	fill(x, 64, D_GAUSS, 3);
	x[3] = u2f(0x7fc12345);
	x[40] = INFINITY;
	x[41] = -INFINITY;
	x[63] = u2f(0xff800001);
	for (unsigned e = 1; e <= 8; e++) {
		sfp_params p;
		sfp_params_init(&p, e, 2);
		roundtrip(x, 64, &p, y);
		CU_ASSERT_EQUAL(f2u(y[3]), 0x7fc12345);
		CU_ASSERT_EQUAL(f2u(y[40]), 0x7f800000);
		CU_ASSERT_EQUAL(f2u(y[41]), 0xff800000);
		CU_ASSERT_EQUAL(f2u(y[63]), 0xff800001);
	}
}

/* Mean of stochastically rounded values over seeds approaches x. */
static void test_stochastic_unbiased(void)
{
	enum { N = 256, SEEDS = 400 };
	float x[N], y[N];
	double sum[N] = {0};
	fill(x, N, D_GAUSS, 5);
	for (unsigned s = 0; s < SEEDS; s++) {
		sfp_params p;
		sfp_params_init(&p, 8, 2);
		p.rounding = SFP_ROUND_STOCHASTIC;
		p.seed = s;
		roundtrip(x, N, &p, y);
		for (int i = 0; i < N; i++)
			sum[i] += y[i];
	}
	double worst = 0;
	for (int i = 0; i < N; i++) {
		/* One rounding step is the spacing ulp at m = 2; a Bernoulli
		 * rounding has standard deviation <= ulp / 2. */
		int E = (int)((f2u(x[i]) >> 23) & 0xff) - 127;
		double ulp = ldexp(1.0, E - 2);
		double se = ulp / 2 / sqrt((double)SEEDS);
		double z = fabs(sum[i] / SEEDS - x[i]) / se;
		worst = z > worst ? z : worst;
	}
	printf(" (worst bias %.2f standard errors) ", worst);
	CU_ASSERT(worst < BIAS_SIGMAS);
	/* Different seeds give different roundings, same seed the same. */
	sfp_params p;
	float a[N], b[N];
	sfp_params_init(&p, 8, 2);
	p.rounding = SFP_ROUND_STOCHASTIC;
	p.seed = 1;
	sfp_quantize(codec, a, x, N, &p, NULL);
	sfp_quantize(codec, b, x, N, &p, NULL);
	CU_ASSERT(memcmp(a, b, sizeof a) == 0);
	p.seed = 2;
	sfp_quantize(codec, b, x, N, &p, NULL);
	CU_ASSERT(memcmp(a, b, sizeof a) != 0);
}

static void test_nearest_even_ties(void)
{
	/* 1 + 2^-3 sits halfway between 1 and 1.25 at m = 2: ties go to the
	 * even mantissa (1.0); 1 + 3 * 2^-3 goes up to 1.5. */
	float x[4] = {1.125f, 1.375f, -1.125f, 1.9375f}, y[4];
	sfp_params p;
	sfp_params_init(&p, 8, 2);
	roundtrip(x, 4, &p, y);
	CU_ASSERT_EQUAL(y[0], 1.0f);
	CU_ASSERT_EQUAL(y[1], 1.5f);
	CU_ASSERT_EQUAL(y[2], -1.0f);
	CU_ASSERT_EQUAL(y[3], 2.0f); /* carry into the exponent */
}

static void test_determinism_and_bound(void)
{
	enum { N = 10007 };
	float *x = malloc(N * 4);
	fill(x, N, D_MIXED, 11);
	uint64_t shape[2] = {1, N};
	for (int g = 0; g <= 1; g++) {
		sfp_params p;
		sfp_params_init(&p, 5, 7);
		p.gecko = g;
		size_t cap = sfp_encode_bound(N, 2), w1, w2;
		CU_ASSERT_EQUAL(cap, SFP_ENCODE_BOUND(N, 2));
		uint8_t *a = malloc(cap + 16), *b = malloc(cap + 16);
		CU_ASSERT_EQUAL(sfp_encode(codec, a, cap, &w1, x, N, shape, 2, &p, NULL), SFP_OK);
		CU_ASSERT_EQUAL(sfp_encode(codec, b, cap, &w2, x, N, shape, 2, &p, NULL), SFP_OK);
		CU_ASSERT_EQUAL(w1, w2);
		CU_ASSERT(memcmp(a, b, w1) == 0);
		/* One byte short: ENOSPC, nothing written past the capacity. */
		memset(b, 0xa5, cap + 16);
		size_t w3 = 123;
		CU_ASSERT_EQUAL(sfp_encode(codec, b, w1 - 1, &w3, x, N, shape, 2, &p, NULL), SFP_ENOSPC);
		for (size_t i = w1 - 1; i < cap + 16; i++)
			CU_ASSERT_EQUAL_FATAL(b[i], 0xa5);
		CU_ASSERT_EQUAL(w3, 0);
		free(a);
		free(b);
	}
	free(x);
}

/* The bound holds for the worst cases: all exceptions, lossless noise. */
static void test_bound_worst(void)
{
	enum { N = 4096 };
	uint32_t *u = malloc(N * 4);
	sfp_rng r;
	sfp_rng_seed(&r, 2);
	for (int t = 0; t < 3; t++) {
		for (size_t i = 0; i < N; i++)
			u[i] = t == 0 ? 0x7fc00000u + (uint32_t)i : t == 1 ? (uint32_t)sfp_rng_u64(&r) : (i & 1 ? 0x7f800000u : 0x00000001u);
		sfp_params p;
		sfp_params_init(&p, 8, 23);
		p.gecko = t & 1;
		float *y = malloc(N * 4);
		size_t w = roundtrip((const float *)u, N, &p, y);
		CU_ASSERT(w <= SFP_ENCODE_BOUND(N, 1));
		CU_ASSERT(memcmp(u, y, N * 4) == 0);
		free(y);
	}
	free(u);
}

static uint8_t *encode_sample(size_t *len, sfp_params *p, float *x, size_t n)
{
	size_t cap = sfp_encode_bound(n, 2);
	uint8_t *buf = malloc(cap);
	uint64_t shape[2] = {n / 8, 8};
	CU_ASSERT_EQUAL_FATAL(sfp_encode(codec, buf, cap, len, x, n, shape, 2, p, NULL), SFP_OK);
	return buf;
}

/* Rewrite the header CRC after forging a field, so the field check runs. */
static void refresh_crc(uint8_t *b)
{
	unsigned ndim = b[11] <= 8 ? b[11] : 0;
	uint32_t c = sfp_crc32c(sfp_crc32c(0, b, 60), b + 64, 8u * ndim);
	memcpy(b + 60, &c, 4);
}

static void refresh_payload_crc(uint8_t *b, size_t len)
{
	unsigned ndim = b[11];
	size_t hb = 64 + 8 * ndim;
	uint32_t c = sfp_crc32c(0, b + hb, len - hb);
	memcpy(b + 56, &c, 4);
	refresh_crc(b); /* the header CRC covers the payload CRC */
}

static int try_decode(const uint8_t *b, size_t len, size_t n)
{
	float *y = malloc(n * 4 + 4);
	int r1 = sfp_decode(codec, y, n, b, len, NULL, NULL);
	int r2 = sfp_decode_ref(y, n, b, len, NULL, NULL);
	CU_ASSERT_EQUAL(r1, r2);
	free(y);
	return r1;
}

static void test_corrupt(void)
{
	enum { N = 800 };
	float x[N];
	fill(x, N, D_MIXED, 17);
	x[5] = NAN; /* one exception */
	for (int g = 0; g <= 1; g++) {
		sfp_params p;
		sfp_params_init(&p, 4, 3);
		p.gecko = g;
		size_t len;
		uint8_t *b = encode_sample(&len, &p, x, N);
		uint8_t *c = malloc(len + 1);
		CU_ASSERT_EQUAL(try_decode(b, len, N), SFP_OK);
		/* Truncated at every length. */
		for (size_t l = 0; l < len; l++)
			CU_ASSERT_FATAL(try_decode(b, l, N) < 0);
		/* Trailing byte. */
		memcpy(c, b, len);
		c[len] = 0;
		CU_ASSERT_EQUAL(try_decode(c, len + 1, N), SFP_ECORRUPT);
		/* Every single bit flip is detected. */
		for (size_t i = 0; i < len; i++)
			for (int bit = 0; bit < 8; bit++) {
				memcpy(c, b, len);
				c[i] ^= (uint8_t)(1u << bit);
				CU_ASSERT_FATAL(try_decode(c, len, N) < 0);
			}
		/* Too small a destination. */
		float y[N];
		CU_ASSERT_EQUAL(sfp_decode(codec, y, N - 1, b, len, NULL, NULL), SFP_ENOSPC);

		/* Forged fields with a valid header CRC: offset, xor mask. */
		static const struct { int off; uint8_t x; } forge[] = {
			{0, 1}, {4, 3}, {5, 0x0f}, {6, 0x18}, {9, 0x80}, {8, 0x03},
			{10, 0x03}, {11, 0x0f}, {12, 1}, {16, 0x21}, {24, 0xff}, {32, 7},
			{40, 0x7f}, {48, 0x01}, {64, 99}, {71, 0x80},
		};
		for (size_t f = 0; f < sizeof forge / sizeof forge[0]; f++) {
			memcpy(c, b, len);
			c[forge[f].off] ^= forge[f].x;
			refresh_crc(c);
			int rc = try_decode(c, len, N);
			if (rc >= 0)
				fprintf(stderr, "\n  forged byte %d accepted\n", forge[f].off);
			CU_ASSERT(rc < 0);
			if (forge[f].off == 4)
				CU_ASSERT_EQUAL(rc, SFP_EVERSION);
		}
		/* A window bottom of 0, or one whose top passes 254 at e = 4. */
		static const uint8_t bad_lo[] = {0, 242, 255};
		for (size_t f = 0; f < sizeof bad_lo; f++) {
			memcpy(c, b, len);
			c[7] = bad_lo[f];
			refresh_crc(c);
			CU_ASSERT_EQUAL(try_decode(c, len, N), SFP_ECORRUPT);
		}
		/* Payload forgeries with both CRCs valid: the structural checks. */
		sfp_info in;
		CU_ASSERT_EQUAL_FATAL(sfp_inspect(b, len, &in, NULL), SFP_OK);
		size_t pay = in.header_bytes;
		/* nonzero padding at the end of the mantissa region */
		memcpy(c, b, len);
		if ((in.nnz * in.m) & 7) {
			c[pay + in.mant_bytes - 1] |= 0x80;
			refresh_payload_crc(c, len);
			CU_ASSERT_EQUAL(try_decode(c, len, N), SFP_ECORRUPT);
		}
		/* exception index out of range */
		memcpy(c, b, len);
		size_t ex = pay + in.mant_bytes + in.sign_bytes;
		c[ex] = 0x7f;
		refresh_payload_crc(c, len);
		CU_ASSERT_EQUAL(try_decode(c, len, N), SFP_ECORRUPT);
		/* exception holding an ordinary value */
		memcpy(c, b, len);
		c[ex + 1 + 3] = 0x3f;
		c[ex + 1 + 2] = 0x80;
		refresh_payload_crc(c, len);
		CU_ASSERT_EQUAL(try_decode(c, len, N), SFP_ECORRUPT);
		free(b);
		free(c);
	}
}

/* Stored mode rejects values the container cannot hold. */
static void test_stored_forgery(void)
{
	uint32_t u[8] = {0x7fc00000, 0x7fc00001, 0x7f800000, 0xff800000, 0x7fc00002, 0x7fc00003, 0, 0x3f800000};
	sfp_params p;
	sfp_info in;
	sfp_params_init(&p, 3, 1);
	size_t len;
	uint8_t *b = encode_sample(&len, &p, (float *)u, 8);
	CU_ASSERT_EQUAL_FATAL(sfp_inspect(b, len, &in, NULL), SFP_OK);
	CU_ASSERT_EQUAL(in.exp_coder, SFP_EXP_STORED);
	CU_ASSERT_EQUAL(try_decode(b, len, 8), SFP_OK);
	/* 1.0 with a mantissa bit below m = 1 */
	uint32_t bad = 0x3f800001;
	memcpy(b + in.header_bytes + 4 * 7, &bad, 4);
	refresh_payload_crc(b, len);
	CU_ASSERT_EQUAL(try_decode(b, len, 8), SFP_ECORRUPT);
	free(b);
}

static void test_windows_and_policies(void)
{
	float x[6] = {1000.0f, 3.0f, -0.75f, 1e-5f, -1e-5f, 0.0f}, y[6];
	sfp_params p;
	size_t cap = sfp_encode_bound(6, 1), w;
	uint8_t buf[256];
	uint64_t shape = 6;
	sfp_error err;
	CU_ASSERT_FATAL(cap <= sizeof buf);

	/* AUTO, e = 2: window = 3 exponents topped at 1000's (2^9). */
	sfp_params_init(&p, 2, 4);
	roundtrip(x, 6, &p, y);
	CU_ASSERT_EQUAL(y[0], 992.0f); /* 1000 = 2^9 * 1.953.. -> 2^9 * 1.9375 at m = 4 */
	CU_ASSERT_EQUAL(y[1], 0.0f);    /* below the window: flushed */
	CU_ASSERT_EQUAL(y[3], 0.0f);
	/* underflow MIN keeps the sign at the window's bottom */
	p.underflow = SFP_UNDERFLOW_MIN;
	roundtrip(x, 6, &p, y);
	CU_ASSERT_EQUAL(y[1], 128.0f); /* window 2^7..2^9 */
	CU_ASSERT_EQUAL(y[4], -128.0f);
	CU_ASSERT_EQUAL(y[5], 0.0f);

	/* FIXED window at 2^1..2^2 (e = 2): 1000 overflows. */
	sfp_params_init(&p, 2, 4);
	p.window = SFP_WINDOW_FIXED;
	p.exp_hi = 128;
	CU_ASSERT_EQUAL(sfp_encode(codec, buf, cap, &w, x, 6, &shape, 1, &p, &err), SFP_ERANGE);
	CU_ASSERT_PTR_NOT_NULL(strstr(err.msg, "index 0"));
	CU_ASSERT_EQUAL(sfp_quantize(codec, y, x, 6, &p, NULL), SFP_ERANGE);
	p.overflow = SFP_OVERFLOW_SATURATE;
	roundtrip(x, 6, &p, y);
	CU_ASSERT_EQUAL(y[0], 3.875f); /* largest of the window: 2^1 * 1.9375 */
	CU_ASSERT_EQUAL(y[1], 3.0f);
	CU_ASSERT_EQUAL(y[2], -0.75f); /* window 2^-1..2^1 */
	CU_ASSERT_EQUAL(y[3], 0.0f);

	/* A value that rounds to infinity is an error, not an Inf. */
	float big[2] = {FLT_MAX, 1.0f};
	sfp_params_init(&p, 8, 3);
	shape = 2;
	CU_ASSERT_EQUAL(sfp_encode(codec, buf, cap, &w, big, 2, &shape, 1, &p, &err), SFP_ERANGE);
	CU_ASSERT_EQUAL(sfp_encode(codec, buf, cap, &w, big, 2, &shape, 1, &p, &err), SFP_ERANGE);
	p.overflow = SFP_OVERFLOW_SATURATE;
	roundtrip(big, 2, &p, y);
	CU_ASSERT_EQUAL(y[0], 0x1.ep127f);

	/* Bad parameters and shapes. */
	sfp_params_init(&p, 9, 3);
	shape = 6;
	CU_ASSERT_EQUAL(sfp_encode(codec, buf, cap, &w, x, 6, &shape, 1, &p, &err), SFP_EINVAL);
	sfp_params_init(&p, 4, 24);
	CU_ASSERT_EQUAL(sfp_encode(codec, buf, cap, &w, x, 6, &shape, 1, &p, &err), SFP_EINVAL);
	sfp_params_init(&p, 4, 3);
	shape = 5;
	CU_ASSERT_EQUAL(sfp_encode(codec, buf, cap, &w, x, 6, &shape, 1, &p, &err), SFP_EINVAL);
}

/* A value that rounds past float32 in place: an error naming it, the
 * values before it quantized, it and the rest untouched -- never an Inf
 * made by rounding -- at every ISA level, wherever it sits in a block. */
static void test_quantize_overflow_in_place(void)
{
	enum { N = 3000 };
	static float x[N], y[N], want[N];
	const int where[] = {0, 5, 17, 1023, 1024, 2999};
	for (size_t w = 0; w < sizeof where / sizeof where[0]; w++)
		for (int isa = SFP_ISA_SCALAR; isa <= sfp_cpu_isa(); isa++) {
			if (sfp_codec_set_isa(codec, isa) < 0)
				continue;
			for (int i = 0; i < N; i++)
				x[i] = (float)(i % 11) * 0.37f - 1.5f;
			x[where[w]] = 3.4e38f; /* rounds to infinity at m = 1 */
			sfp_params p;
			sfp_params_init(&p, 8, 1);
			memcpy(want, x, sizeof x);
			CU_ASSERT_EQUAL(sfp_quantize(codec, want, x, where[w], &p, NULL), SFP_OK);
			memcpy(y, x, sizeof x);
			sfp_error err;
			CU_ASSERT_EQUAL(sfp_quantize(codec, y, y, N, &p, &err), SFP_ERANGE);
			char idx[32];
			snprintf(idx, sizeof idx, "index %d ", where[w]);
			CU_ASSERT_PTR_NOT_NULL(strstr(err.msg, idx));
			CU_ASSERT_EQUAL(memcmp(y, want, sizeof y), 0);
		}
	sfp_codec_set_isa(codec, sfp_cpu_isa());
}

/* sfp_quantize_window: blocks quantized at the tensor's window top (FIXED)
 * give exactly the whole tensor's values, for every e and a few m, data
 * with zeros, NaN/Inf, tiny values and one large outlier. */
static void test_window_blocks(void)
{
	enum { N = 3000, BL = 512 };
	static float x[N], whole[N], blocked[N];
	sfp_rng r;
	sfp_rng_seed(&r, 21);
	for (int i = 0; i < N; i++)
		x[i] = i % 7 == 0 ? 0.0f : sfp_rng_normal(&r) * expf(3.0f * sfp_rng_normal(&r));
	x[5] = NAN;
	x[17] = -INFINITY;
	x[2500] = 3e30f; /* the window top lives in one block only */
	const unsigned ms[] = {0, 1, 3, 7, 23};
	for (unsigned e = 1; e <= 8; e++)
		for (size_t k = 0; k < sizeof ms / sizeof ms[0]; k++) {
			sfp_params p;
			sfp_params_init(&p, e, ms[k]);
			unsigned top = 0;
			CU_ASSERT_EQUAL_FATAL(sfp_quantize_window(codec, x, N, &p, &top, NULL), SFP_OK);
			CU_ASSERT(top >= 1 && top <= 254);
			CU_ASSERT_EQUAL_FATAL(sfp_quantize(codec, whole, x, N, &p, NULL), SFP_OK);
			sfp_params f = p;
			f.window = SFP_WINDOW_FIXED;
			f.exp_hi = top;
			for (int b0 = 0; b0 < N; b0 += BL)
				CU_ASSERT_EQUAL_FATAL(sfp_quantize(codec, blocked + b0, x + b0,
								   N - b0 < BL ? N - b0 : BL, &f, NULL),
						      SFP_OK);
			CU_ASSERT_EQUAL(memcmp(whole, blocked, sizeof whole), 0);
		}
	/* all zeros: the window a decoder of an empty tensor would see */
	static const float z[4] = {0};
	sfp_params p;
	sfp_params_init(&p, 3, 2);
	unsigned top = 0;
	CU_ASSERT_EQUAL(sfp_quantize_window(codec, z, 4, &p, &top, NULL), SFP_OK);
	CU_ASSERT_EQUAL(top, 1u);
	/* FIXED windows report their own top; errors as sfp_quantize */
	p.window = SFP_WINDOW_FIXED;
	p.exp_hi = 130;
	CU_ASSERT_EQUAL(sfp_quantize_window(codec, x, N, &p, &top, NULL), SFP_OK);
	CU_ASSERT_EQUAL(top, 130u);
	float big[2] = {FLT_MAX, 1.0f};
	sfp_params_init(&p, 4, 3);
	CU_ASSERT_EQUAL(sfp_quantize_window(codec, big, 2, &p, &top, NULL), SFP_ERANGE);
}

/* sfp_quantize_diff_dot: the same bits at every ISA level, equal to
 * quantizing both ways and summing in the documented lane order; x itself
 * when pa is NULL; errors for AUTO windows and values past a window. */
static void test_diff_dot(void)
{
	enum { N = 5000 };
	static float x[N], g[N], qa[N], qb[N];
	sfp_rng r;
	sfp_rng_seed(&r, 33);
	for (int i = 0; i < N; i++) {
		x[i] = i % 6 == 0 ? 0.0f : sfp_rng_normal(&r) * expf(2.0f * sfp_rng_normal(&r));
		g[i] = sfp_rng_normal(&r);
	}
	x[3] = -0.0f;
	x[9] = 1e-40f; /* subnormal */
	const unsigned es[] = {2, 4, 8}, ms[] = {0, 2, 7, 23};
	const uint64_t ns[] = {N, 1, 15, 17, 1023, 1025, 2049};
	/* the second quantization: other e and m; other e, same m (shared
	 * rounding, differences only where a window flushes: mostly skipped
	 * zeros); the same e and m (all differences zero) */
	for (size_t a = 0; a < 3; a++)
		for (size_t b = 0; b < 4; b++)
			for (size_t k = 0; k < 3 * sizeof ns / sizeof ns[0]; k++) {
				const uint64_t n = ns[k % (sizeof ns / sizeof ns[0])];
				const size_t kind = k / (sizeof ns / sizeof ns[0]);
				sfp_params pa, pb;
				sfp_params_init(&pa, es[a], ms[b]);
				sfp_params_init(&pb, kind == 2 ? es[a] : es[(a + 1) % 3],
						kind ? ms[b] : ms[(b + 1) % 4]);
				CU_ASSERT_EQUAL_FATAL(sfp_quantize_window(codec, x, n, &pa, &pa.exp_hi, NULL),
						      SFP_OK);
				CU_ASSERT_EQUAL_FATAL(sfp_quantize_window(codec, x, n, &pb, &pb.exp_hi, NULL),
						      SFP_OK);
				pa.window = pb.window = SFP_WINDOW_FIXED;
				sfp_quantize(codec, qa, x, n, &pa, NULL);
				sfp_quantize(codec, qb, x, n, &pb, NULL);
				for (int same = 0; same < 2; same++) {
					double lanes[16] = {0};
					for (uint64_t i = 0; i < n; i++)
						lanes[i % 16] += (double)g[i] *
								 ((double)(same ? x[i] : qa[i]) - (double)qb[i]);
					for (int w = 8; w > 0; w /= 2)
						for (int j = 0; j < w; j++)
							lanes[j] += lanes[j + w];
					for (int isa = SFP_ISA_SCALAR; isa <= sfp_cpu_isa(); isa++) {
						if (sfp_codec_set_isa(codec, isa) < 0)
							continue;
						double s = 1.0;
						CU_ASSERT_EQUAL(sfp_quantize_diff_dot(codec, g, x, n,
										      same ? NULL : &pa, &pb,
										      &s, NULL),
								SFP_OK);
						CU_ASSERT_EQUAL(memcmp(&s, &lanes[0], sizeof s), 0);
					}
					sfp_codec_set_isa(codec, sfp_cpu_isa());
				}
			}
	sfp_params pa, pb;
	/* NaN and Inf (carried as they are) make the sum NaN, the same NaN on
	 * every ISA; so does an infinite gradient where both quantizations
	 * agree (0 * Inf), and in the third case only that */
	static float y[40], y2[40], g2[40];
	memcpy(y, x, sizeof y);
	memcpy(y2, x, sizeof y2);
	memcpy(g2, g, sizeof g2);
	y[5] = NAN;
	y[13] = -INFINITY;
	g2[20] = INFINITY;
	y2[20] = 0.0f;
	for (int same = 0; same < 3; same++) {
		double want = 0.0;
		for (int isa = SFP_ISA_SCALAR; isa <= sfp_cpu_isa(); isa++) {
			if (sfp_codec_set_isa(codec, isa) < 0)
				continue;
			sfp_params_init(&pa, 5, 4);
			sfp_params_init(&pb, 5, 1);
			const float *gg = same == 2 ? g2 : g, *yy = same == 2 ? y2 : y;
			sfp_quantize_window(codec, yy, 40, &pa, &pa.exp_hi, NULL);
			sfp_quantize_window(codec, yy, 40, &pb, &pb.exp_hi, NULL);
			pa.window = pb.window = SFP_WINDOW_FIXED;
			double s = 0.0;
			CU_ASSERT_EQUAL(sfp_quantize_diff_dot(codec, gg, yy, 40, same == 1 ? NULL : &pa,
							      &pb, &s, NULL),
					SFP_OK);
			CU_ASSERT(isnan(s));
			if (isa == SFP_ISA_SCALAR)
				want = s;
			CU_ASSERT_EQUAL(memcmp(&s, &want, sizeof s), 0);
		}
		sfp_codec_set_isa(codec, sfp_cpu_isa());
	}
	sfp_params_init(&pa, 4, 3);
	sfp_params_init(&pb, 4, 2);
	double s;
	CU_ASSERT_EQUAL(sfp_quantize_diff_dot(codec, g, x, N, &pa, &pb, &s, NULL), SFP_EINVAL);
	pa.window = pb.window = SFP_WINDOW_FIXED;
	pa.exp_hi = pb.exp_hi = 100; /* most values are past it */
	sfp_error err;
	for (int isa = SFP_ISA_SCALAR; isa <= sfp_cpu_isa(); isa++) {
		if (sfp_codec_set_isa(codec, isa) < 0)
			continue;
		CU_ASSERT_EQUAL(sfp_quantize_diff_dot(codec, g, x, N, &pa, &pb, &s, &err), SFP_ERANGE);
		CU_ASSERT_PTR_NOT_NULL(strstr(err.msg, "index 1 ")); /* x[0] is 0 */
	}
	sfp_codec_set_isa(codec, sfp_cpu_isa());
}

static void test_signs_and_shapes(void)
{
	enum { N = 1000 };
	float x[N], y[N];
	sfp_info in;
	fill(x, N, D_SPARSE_POS, 21);
	sfp_params p;
	sfp_params_init(&p, 4, 2);
	size_t len;
	uint8_t *b = encode_sample(&len, &p, x, N);
	CU_ASSERT_EQUAL_FATAL(sfp_decode(codec, y, N, b, len, &in, NULL), SFP_OK);
	CU_ASSERT(in.flags & SFP_FLAG_SIGN_POS);
	CU_ASSERT_EQUAL(in.sign_bytes, 0);
	CU_ASSERT_EQUAL(in.ndim, 2);
	CU_ASSERT_EQUAL(in.shape[0], N / 8);
	CU_ASSERT_EQUAL(in.shape[1], 8);
	free(b);
	for (int i = 0; i < N; i++)
		x[i] = -x[i];
	b = encode_sample(&len, &p, x, N);
	CU_ASSERT_EQUAL_FATAL(sfp_decode(codec, y, N, b, len, &in, NULL), SFP_OK);
	CU_ASSERT(in.flags & SFP_FLAG_SIGN_NEG);
	for (int i = 0; i < N; i++)
		CU_ASSERT_FATAL(y[i] <= 0.0f);
	free(b);
	/* Scalar (ndim 0) and empty tensors. */
	float one = 2.5f, out = 0;
	uint8_t buf[128];
	size_t w;
	CU_ASSERT_EQUAL(sfp_encode(codec, buf, sizeof buf, &w, &one, 1, NULL, 0, &p, NULL), SFP_OK);
	CU_ASSERT_EQUAL(sfp_decode(codec, &out, 1, buf, w, &in, NULL), SFP_OK);
	CU_ASSERT_EQUAL(out, 2.5f);
	CU_ASSERT_EQUAL(in.ndim, 0);
	uint64_t zero = 0;
	CU_ASSERT_EQUAL(sfp_encode(codec, buf, sizeof buf, &w, NULL, 0, &zero, 1, &p, NULL), SFP_OK);
	CU_ASSERT_EQUAL(sfp_decode(codec, &out, 0, buf, w, &in, NULL), SFP_OK);
	CU_ASSERT_EQUAL(in.count, 0);
}

/* Every SIMD level the CPU has matches the scalar reference byte for byte
 * (encode) and bit for bit (decode), on every (e, m) and odd sizes. */
static void test_isa_vs_ref(void)
{
	static const size_t sizes[] = {0, 1, 15, 16, 17, 63, 64, 65, 1000, 100003};
	size_t nmax = 100003, cap = sfp_encode_bound(nmax, 1);
	float *x = malloc(nmax * 4), *y1 = malloc(nmax * 4), *y2 = malloc(nmax * 4);
	uint8_t *a = malloc(cap), *b = malloc(cap);
	long checked = 0;
	for (int isa = SFP_ISA_SCALAR; isa <= sfp_cpu_isa(); isa++) {
		CU_ASSERT_EQUAL_FATAL(sfp_codec_set_isa(codec, isa), SFP_OK);
		for (int kind = 0; kind < D_NKINDS; kind++) {
			fill(x, nmax, kind, 7 + (uint64_t)kind);
			if (kind == D_MIXED)
				x[70] = NAN, x[99999] = -INFINITY;
			for (unsigned e = 1; e <= 8; e++)
				for (unsigned m = 0; m <= 23; m++) {
					size_t n = sizes[(e * 24 + m + (unsigned)kind) % 10];
					if (e == 8 && m == 23)
						n = nmax;
					uint64_t shape = n;
					size_t w1, w2;
					sfp_params p;
					sfp_params_init(&p, e, m);
					p.rounding = (e + m) % 3 == 0 ? SFP_ROUND_STOCHASTIC : SFP_ROUND_NEAREST;
					p.seed = e * 100 + m;
					p.gecko = (m & 1);
					p.underflow = (e & 1) ? SFP_UNDERFLOW_MIN : SFP_UNDERFLOW_ZERO;
					CU_ASSERT_EQUAL_FATAL(sfp_encode(codec, a, cap, &w1, x, n, &shape, 1, &p, NULL), SFP_OK);
					CU_ASSERT_EQUAL_FATAL(sfp_encode_ref(b, cap, &w2, x, n, &shape, 1, &p, NULL), SFP_OK);
					CU_ASSERT_EQUAL_FATAL(w1, w2);
					if (memcmp(a, b, w1) != 0) {
						fprintf(stderr, "\n  isa %s e=%u m=%u n=%zu kind %d: bytes differ\n", sfp_isa_name(isa), e, m, n, kind);
						CU_FAIL_FATAL("encode differs from reference");
					}
					CU_ASSERT_EQUAL_FATAL(sfp_decode(codec, y1, n, a, w1, NULL, NULL), SFP_OK);
					CU_ASSERT_EQUAL_FATAL(sfp_decode_ref(y2, n, a, w1, NULL, NULL), SFP_OK);
					if (memcmp(y1, y2, n * 4) != 0) {
						fprintf(stderr, "\n  isa %s e=%u m=%u n=%zu kind %d: values differ\n", sfp_isa_name(isa), e, m, n, kind);
						CU_FAIL_FATAL("decode differs from reference");
					}
					/* fake quantization at this level = the reference's round trip */
					CU_ASSERT_EQUAL_FATAL(sfp_quantize(codec, y1, x, n, &p, NULL), SFP_OK);
					if (memcmp(y1, y2, n * 4) != 0) {
						fprintf(stderr, "\n  isa %s e=%u m=%u n=%zu kind %d: quantize differs\n", sfp_isa_name(isa), e, m, n, kind);
						CU_FAIL_FATAL("quantize differs from the reference round trip");
					}
					checked++;
				}
		}
	}
	CU_ASSERT_EQUAL(sfp_codec_set_isa(codec, sfp_cpu_isa()), SFP_OK);
	CU_ASSERT_EQUAL(sfp_codec_set_isa(codec, 99), SFP_EINVAL);
	printf(" (%ld configurations) ", checked);
	free(x);
	free(y1);
	free(y2);
	free(a);
	free(b);
}

/* The best SIMD level on long streams for every (e, m): the AVX-512 kernels
 * (in-vector mantissa packing at all eight bit phases, the 64-code raw
 * exponent unpacker with its masked tail, the assemble pass's masked
 * windows) against the scalar reference, byte for byte and bit for bit.
 * Sizes vary with (e, m) so every residue of n mod 16 and mod 64 occurs. */
static void test_kernels_every_m(void)
{
	static const int kinds[] = {D_GAUSS, D_SPARSE_POS, D_MIXED};
	size_t nmax = 6000, cap = sfp_encode_bound(nmax, 1);
	float *x = malloc(nmax * 4), *y1 = malloc(nmax * 4), *y2 = malloc(nmax * 4);
	uint8_t *a = malloc(cap), *b = malloc(cap);
	long checked = 0;
	CU_ASSERT_EQUAL_FATAL(sfp_codec_set_isa(codec, sfp_cpu_isa()), SFP_OK);
	for (size_t ki = 0; ki < sizeof kinds / sizeof kinds[0]; ki++) {
		fill(x, nmax, kinds[ki], 101 + ki);
		for (unsigned e = 1; e <= 8; e++)
			for (unsigned m = 0; m <= 23; m++) {
				size_t n = 4096 + 7 * e + 3 * m + 64 * ki, w1, w2;
				uint64_t shape = n;
				sfp_params p;
				sfp_params_init(&p, e, m);
				p.rounding = (e + m + ki) % 4 == 0 ? SFP_ROUND_STOCHASTIC : SFP_ROUND_NEAREST;
				p.seed = 17 * e + m;
				p.underflow = (m & 2) ? SFP_UNDERFLOW_MIN : SFP_UNDERFLOW_ZERO;
				CU_ASSERT_EQUAL_FATAL(sfp_encode(codec, a, cap, &w1, x, n, &shape, 1, &p, NULL), SFP_OK);
				CU_ASSERT_EQUAL_FATAL(sfp_encode_ref(b, cap, &w2, x, n, &shape, 1, &p, NULL), SFP_OK);
				CU_ASSERT_EQUAL_FATAL(w1, w2);
				if (memcmp(a, b, w1) != 0) {
					fprintf(stderr, "\n  e=%u m=%u n=%zu kind %d: bytes differ\n", e, m, n, kinds[ki]);
					CU_FAIL_FATAL("encode differs from reference");
				}
				CU_ASSERT_EQUAL_FATAL(sfp_decode(codec, y1, n, a, w1, NULL, NULL), SFP_OK);
				CU_ASSERT_EQUAL_FATAL(sfp_decode_ref(y2, n, a, w1, NULL, NULL), SFP_OK);
				if (memcmp(y1, y2, n * 4) != 0) {
					fprintf(stderr, "\n  e=%u m=%u n=%zu kind %d: values differ\n", e, m, n, kinds[ki]);
					CU_FAIL_FATAL("decode differs from reference");
				}
				checked++;
			}
	}
	/* The max pass finds the first value that rounds to infinity (the fast
	 * one rounds only the largest magnitude, then rescans), and saturates
	 * like the reference. */
	{
		size_t n = 1000, w1, w2;
		uint64_t shape = n;
		sfp_params p;
		sfp_error e1, e2;
		fill(x, n, D_GAUSS, 5);
		x[37] = -FLT_MAX;
		x[500] = FLT_MAX;
		sfp_params_init(&p, 5, 3);
		CU_ASSERT_EQUAL(sfp_encode(codec, a, cap, &w1, x, n, &shape, 1, &p, &e1), SFP_ERANGE);
		CU_ASSERT_EQUAL(sfp_encode_ref(b, cap, &w2, x, n, &shape, 1, &p, &e2), SFP_ERANGE);
		CU_ASSERT_STRING_EQUAL(e1.msg, e2.msg);
		CU_ASSERT_PTR_NOT_NULL(strstr(e1.msg, "index 37 "));
		p.overflow = SFP_OVERFLOW_SATURATE;
		CU_ASSERT_EQUAL_FATAL(sfp_encode(codec, a, cap, &w1, x, n, &shape, 1, &p, NULL), SFP_OK);
		CU_ASSERT_EQUAL_FATAL(sfp_encode_ref(b, cap, &w2, x, n, &shape, 1, &p, NULL), SFP_OK);
		CU_ASSERT(w1 == w2 && memcmp(a, b, w1) == 0);
	}
	printf(" (%ld configurations, ISA %s) ", checked, sfp_isa_name(sfp_cpu_isa()));
	free(x);
	free(y1);
	free(y2);
	free(a);
	free(b);
}

/* Dense data with long zero runs: the fast decoder's 64-byte windows near the
 * end of the mantissa stream, for every m. */
/* Buffer edges on every ISA: encoding into exactly the container's size
 * succeeds with the same bytes, one byte less is ENOSPC with nothing written
 * past the capacity, and decoding from an exact-size heap copy into an
 * exact-size destination leaves the guard words after it untouched (ASan
 * builds also catch reads past either end). */
static void test_edges_every_isa(void)
{
	enum { NMAX = 1000, GUARD = 64 };
	static const size_t sizes[] = {1, 15, 17, 64, 65, 333, NMAX};
	static const unsigned es[] = {1, 3, 5, 8}, ms[] = {0, 1, 7, 12, 23};
	float *x = malloc(NMAX * 4), *y = malloc((NMAX + GUARD) * 4);
	size_t cap = sfp_encode_bound(NMAX, 1);
	uint8_t *ref = malloc(cap), *dst = malloc(cap + GUARD);
	for (int isa = SFP_ISA_SCALAR; isa <= sfp_cpu_isa(); isa++) {
		CU_ASSERT_EQUAL_FATAL(sfp_codec_set_isa(codec, isa), SFP_OK);
		for (int kind = 0; kind < D_NKINDS; kind++)
			for (size_t si = 0; si < sizeof sizes / sizeof sizes[0]; si++)
				for (size_t ei = 0; ei < sizeof es / sizeof es[0]; ei++)
					for (size_t mi = 0; mi < sizeof ms / sizeof ms[0]; mi++) {
			size_t n = sizes[si], w = 0, w2 = 0;
			uint64_t shape = n;
			sfp_params p;
			fill(x, n, kind, 31 + si);
			sfp_params_init(&p, es[ei], ms[mi]);
			p.gecko = (int)(si & 1);
			CU_ASSERT_EQUAL_FATAL(sfp_encode_ref(ref, cap, &w, x, n, &shape, 1, &p, NULL), SFP_OK);
			memset(dst, 0xa5, w + GUARD);
			CU_ASSERT_EQUAL_FATAL(sfp_encode(codec, dst, w, &w2, x, n, &shape, 1, &p, NULL), SFP_OK);
			CU_ASSERT_EQUAL(w2, w);
			CU_ASSERT(memcmp(dst, ref, w) == 0);
			memset(dst, 0xa5, w + GUARD);
			w2 = 99;
			CU_ASSERT_EQUAL(sfp_encode(codec, dst, w - 1, &w2, x, n, &shape, 1, &p, NULL), SFP_ENOSPC);
			CU_ASSERT_EQUAL(w2, 0);
			for (size_t i = w - 1; i < w + GUARD; i++)
				if (dst[i] != 0xa5) {
					fprintf(stderr, "\n  isa %s e=%u m=%u n=%zu: byte %zu written past cap %zu\n",
						sfp_isa_name(isa), es[ei], ms[mi], n, i, w - 1);
					CU_FAIL_FATAL("write past capacity");
				}
			uint8_t *exact = malloc(w);
			CU_ASSERT_PTR_NOT_NULL_FATAL(exact);
			memcpy(exact, ref, w);
			memset(y, 0xa5, (n + GUARD) * 4);
			CU_ASSERT_EQUAL(sfp_decode(codec, y, n, exact, w, NULL, NULL), SFP_OK);
			for (size_t i = n * 4; i < (n + GUARD) * 4; i++)
				CU_ASSERT_EQUAL_FATAL(((uint8_t *)y)[i], 0xa5);
			free(exact);
		}
	}
	CU_ASSERT_EQUAL(sfp_codec_set_isa(codec, sfp_cpu_isa()), SFP_OK);
	free(x);
	free(y);
	free(ref);
	free(dst);
}

static void test_stream_ends(void)
{
	enum { N = 4096 };
	float *x = calloc(N, 4), *y = malloc(N * 4), *z = malloc(N * 4);
	sfp_rng r;
	sfp_rng_seed(&r, 4);
	for (unsigned m = 0; m <= 23; m++) {
		memset(x, 0, N * 4);
		for (int i = N - 200; i < N; i++)
			x[i] = sfp_rng_normal(&r);
		for (int i = 0; i < 300; i++)
			x[sfp_rng_below(&r, N)] = sfp_rng_normal(&r);
		sfp_params p;
		sfp_params_init(&p, 6, m);
		roundtrip(x, N, &p, y);
		sfp_quantize(codec, z, x, N, &p, NULL);
		CU_ASSERT(memcmp(y, z, N * 4) == 0);
	}
	free(x);
	free(y);
	free(z);
}

static void test_decode_codes(void)
{
	enum { N = 496 };
	float x[N];
	uint8_t codes[N];
	fill(x, N, D_SPARSE_POS, 2);
	sfp_params p;
	sfp_params_init(&p, 3, 2);
	size_t len;
	uint8_t *b = encode_sample(&len, &p, x, N);
	CU_ASSERT_EQUAL(sfp_decode_codes(codec, codes, N, b, len, NULL), SFP_OK);
	for (int i = 0; i < N; i++)
		CU_ASSERT_EQUAL((codes[i] == 0), (x[i] == 0.0f || ((f2u(x[i]) >> 23) & 0xff) < 1));
	CU_ASSERT_EQUAL(sfp_decode_codes(codec, codes, N - 1, b, len, NULL), SFP_ENOSPC);
	free(b);
}

int main(void)
{
	static const test_case cases[] = {
		{"round trip over the (e, m) grid", test_grid},
		{"e=8 m=23 is bit-exact", test_lossless},
		{"NaN and Inf are carried", test_specials_lossy},
		{"stochastic rounding is unbiased", test_stochastic_unbiased},
		{"nearest-even ties and carries", test_nearest_even_ties},
		{"determinism and one-byte-short buffer", test_determinism_and_bound},
		{"bound holds for the worst cases", test_bound_worst},
		{"corrupt input is rejected", test_corrupt},
		{"stored mode validates values", test_stored_forgery},
		{"windows and policies", test_windows_and_policies},
		{"window top: blocks equal the whole tensor", test_window_blocks},
		{"a value past float32 in place: error, nothing rounded to Inf", test_quantize_overflow_in_place},
		{"fused quantize-difference dot product, every ISA", test_diff_dot},
		{"sign flags and shapes", test_signs_and_shapes},
		{"every ISA equals the reference", test_isa_vs_ref},
		{"buffer edges on every ISA", test_edges_every_isa},
		{"SIMD kernels on long streams, every (e, m)", test_kernels_every_m},
		{"stream ends", test_stream_ends},
		{"decode codes", test_decode_codes},
		{NULL, NULL},
	};
	codec = sfp_codec_create();
	if (!codec)
		return 2;
	int rc = test_run_suite("codec", cases);
	sfp_codec_free(codec);
	return rc;
}
