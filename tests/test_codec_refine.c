/*
 * test_codec_refine.c -- decoder-side refinement (lib/codec/refine.c,
 * docs/refine.md): round trips with each flag, decode equal to sfp_quantize
 * and to the scalar reference, the error never above the plain container's
 * and really below it where the papers' effect exists, refined values inside
 * their bins, the side information validated like any header field, and
 * determinism.
 */
#include <CUnit/CUnit.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "sfp/codec.h"
#include "tests/util/testutil.h"

enum { ROWS = 16, COLS = 512, N = ROWS * COLS };
static const uint64_t shape[2] = {ROWS, COLS};

/* Laplace-distributed values with a per-row scale (weights-like). */
static void fill(float *x, uint64_t seed)
{
	sfp_rng r;
	sfp_rng_seed(&r, seed);
	for (int i = 0; i < N; i++) {
		double u = ((double)(sfp_rng_u64(&r) >> 11) + 0.5) * 0x1p-53 - 0.5;
		double v = -copysign(log(1.0 - 2.0 * fabs(u)), u);
		x[i] = (float)(v * 0.05 * (1 + i / COLS));
	}
}

static double sse(const float *a, const float *b, int n)
{
	double s = 0.0;
	for (int i = 0; i < n; i++)
		s += ((double)a[i] - b[i]) * ((double)a[i] - b[i]);
	return s;
}

static void set_tool(sfp_params *p, int tool)
{
	p->bias = tool == 1 ? SFP_BIAS_TENSOR : tool == 2 || tool == 4 ? SFP_BIAS_CHANNEL : 0;
	p->shift = tool >= 3;
	p->channels = ROWS;
}

/* Every tool at m = 0, 1, 2, 3, 7 with raw and Gecko exponents: decode equals
 * sfp_quantize and the reference codec, the error is at most the plain
 * container's, and each value rounds back to its plain container value. */
static void test_round_trip(void)
{
	static const unsigned ms[5] = {0, 1, 2, 3, 7};
	float *x = malloc(N * sizeof *x), *plain = malloc(N * sizeof *plain),
	      *dec = malloc(N * sizeof *dec), *ref = malloc(N * sizeof *ref),
	      *fq = malloc(N * sizeof *fq), *back = malloc(N * sizeof *back);
	size_t cap = sfp_encode_bound(N, 2) + ROWS;
	uint8_t *buf = malloc(cap), *buf2 = malloc(cap);
	sfp_codec *c = sfp_codec_create();
	sfp_error err;
	fill(x, 3);
	int bad_dec = 0, bad_ref = 0, bad_fq = 0, bad_err = 0, bad_bin = 0, bad_bytes = 0;
	for (int mi = 0; mi < 5; mi++)
		for (int gecko = 0; gecko < 2; gecko++)
			for (int tool = 1; tool < 5; tool++) {
				sfp_params p0, p;
				sfp_params_init(&p0, 5, ms[mi]);
				p0.gecko = gecko;
				p = p0;
				set_tool(&p, tool);
				size_t w = 0, w2 = 0;
				CU_ASSERT_EQUAL_FATAL(sfp_quantize(c, plain, x, N, &p0, &err), SFP_OK);
				CU_ASSERT_EQUAL_FATAL(sfp_encode(c, buf, cap, &w, x, N, shape, 2, &p, &err),
						      SFP_OK);
				CU_ASSERT_EQUAL_FATAL(sfp_encode_ref(buf2, cap, &w2, x, N, shape, 2, &p, &err),
						      SFP_OK);
				bad_bytes += w != w2 || memcmp(buf, buf2, w) != 0;
				CU_ASSERT_EQUAL_FATAL(sfp_decode(c, dec, N, buf, w, NULL, &err), SFP_OK);
				CU_ASSERT_EQUAL_FATAL(sfp_decode_ref(ref, N, buf, w, NULL, &err), SFP_OK);
				CU_ASSERT_EQUAL_FATAL(sfp_quantize(c, fq, x, N, &p, &err), SFP_OK);
				bad_ref += memcmp(dec, ref, N * sizeof *dec) != 0;
				bad_fq += memcmp(dec, fq, N * sizeof *dec) != 0;
				bad_err += sse(x, dec, N) > sse(x, plain, N);
				/* in place gives the same values */
				memcpy(back, x, N * sizeof *x);
				CU_ASSERT_EQUAL_FATAL(sfp_quantize(c, back, back, N, &p, &err), SFP_OK);
				bad_dec += memcmp(back, fq, N * sizeof *fq) != 0;
				/* refined values stay in their bins */
				CU_ASSERT_EQUAL_FATAL(sfp_quantize(c, back, dec, N, &p0, &err), SFP_OK);
				bad_bin += memcmp(back, plain, N * sizeof *back) != 0;
			}
	CU_ASSERT_EQUAL(bad_bytes, 0);
	CU_ASSERT_EQUAL(bad_ref, 0);
	CU_ASSERT_EQUAL(bad_fq, 0);
	CU_ASSERT_EQUAL(bad_dec, 0);
	CU_ASSERT_EQUAL(bad_err, 0);
	CU_ASSERT_EQUAL(bad_bin, 0);
	sfp_codec_free(c);
	free(x), free(plain), free(dec), free(ref), free(fq), free(back), free(buf), free(buf2);
}

/* Where the density falls across a bin (Laplace values, one mantissa bit)
 * the shift and the per-row bias both lower the error for real, and the
 * container says which tools it carries. */
static void test_gain(void)
{
	float *x = malloc(N * sizeof *x), *plain = malloc(N * sizeof *plain),
	      *dec = malloc(N * sizeof *dec);
	size_t cap = sfp_encode_bound(N, 2), w;
	uint8_t *buf = malloc(cap);
	sfp_codec *c = sfp_codec_create();
	sfp_error err;
	fill(x, 5);
	sfp_params p;
	sfp_params_init(&p, 6, 1);
	CU_ASSERT_EQUAL_FATAL(sfp_quantize(c, plain, x, N, &p, &err), SFP_OK);
	for (int tool = 2; tool <= 3; tool++) {
		set_tool(&p, tool);
		sfp_info in;
		CU_ASSERT_EQUAL_FATAL(sfp_encode(c, buf, cap, &w, x, N, shape, 2, &p, &err), SFP_OK);
		CU_ASSERT_EQUAL_FATAL(sfp_decode(c, dec, N, buf, w, &in, &err), SFP_OK);
		double gain = 1.0 - sse(x, dec, N) / sse(x, plain, N);
		CU_ASSERT(gain > 0.005);
		if (tool == 2) {
			CU_ASSERT_EQUAL(in.flags & (SFP_FLAG_BIAS | SFP_FLAG_BIAS_CHANNEL),
					SFP_FLAG_BIAS | SFP_FLAG_BIAS_CHANNEL);
			CU_ASSERT_EQUAL(in.bias_groups, ROWS);
			CU_ASSERT_EQUAL(in.side_bytes, ROWS);
		} else {
			CU_ASSERT(in.flags & SFP_FLAG_SHIFT);
			CU_ASSERT(in.rho >= 1);
			CU_ASSERT_EQUAL(in.side_bytes, 1);
		}
	}
	sfp_codec_free(c);
	free(x), free(plain), free(dec), free(buf);
}

/* Recompute the payload and header CRCs after an edit (docs/format.md). */
static void reseal(uint8_t *b, size_t len)
{
	unsigned ndim = b[11];
	size_t hb = SFP_HEADER_BYTES(ndim);
	uint32_t c = sfp_crc32c(0, b + hb, len - hb);
	memcpy(b + 56, &c, 4);
	c = sfp_crc32c(0, b, 60);
	c = sfp_crc32c(c, b + 64, 8u * ndim);
	memcpy(b + 60, &c, 4);
}

static void test_corrupt(void)
{
	float *x = malloc(N * sizeof *x), *dec = malloc(N * sizeof *dec);
	size_t cap = sfp_encode_bound(N, 2), w;
	uint8_t *buf = malloc(cap), *b = malloc(cap);
	sfp_codec *c = sfp_codec_create();
	sfp_error err;
	fill(x, 7);
	sfp_params p;
	sfp_params_init(&p, 6, 1);
	set_tool(&p, 4);
	CU_ASSERT_EQUAL_FATAL(sfp_encode(c, buf, cap, &w, x, N, shape, 2, &p, &err), SFP_OK);
	sfp_info in;
	CU_ASSERT_EQUAL_FATAL(sfp_inspect(buf, w, &in, &err), SFP_OK);
	CU_ASSERT_EQUAL_FATAL(in.flags & (SFP_FLAG_SHIFT | SFP_FLAG_BIAS),
			      SFP_FLAG_SHIFT | SFP_FLAG_BIAS);
	const size_t side = w - in.side_bytes;
	uint16_t flags;
	memcpy(&flags, buf + 8, 2);

	/* a flipped side byte: the checksum */
	memcpy(b, buf, w);
	b[side + 3] ^= 0x10;
	CU_ASSERT_EQUAL(sfp_decode(c, dec, N, b, w, NULL, &err), SFP_ECHECKSUM);
	/* a zero shift step, resealed */
	memcpy(b, buf, w);
	b[side] = 0;
	reseal(b, w);
	CU_ASSERT_EQUAL(sfp_decode(c, dec, N, b, w, NULL, &err), SFP_ECORRUPT);
	CU_ASSERT_PTR_NOT_NULL(strstr(err.msg, "zero step"));
	/* per-channel without the bias flag */
	memcpy(b, buf, w);
	uint16_t f2 = (uint16_t)(flags & ~SFP_FLAG_BIAS);
	memcpy(b + 8, &f2, 2);
	reseal(b, w);
	CU_ASSERT_EQUAL(sfp_decode(c, dec, N, b, w, NULL, &err), SFP_ECORRUPT);
	/* the bias flag dropped: the side bytes no longer add up */
	memcpy(b, buf, w);
	f2 = (uint16_t)(flags & ~(SFP_FLAG_BIAS | SFP_FLAG_BIAS_CHANNEL));
	memcpy(b + 8, &f2, 2);
	reseal(b, w);
	CU_ASSERT_EQUAL(sfp_decode(c, dec, N, b, w, NULL, &err), SFP_ECORRUPT);
	/* refinement claimed by a container too fine for it */
	memcpy(b, buf, w);
	b[6] = 21;
	reseal(b, w);
	CU_ASSERT_NOT_EQUAL(sfp_decode(c, dec, N, b, w, NULL, &err), SFP_OK);
	/* one byte short */
	CU_ASSERT_NOT_EQUAL(sfp_decode(c, dec, N, buf, w - 1, NULL, &err), SFP_OK);
	/* the untouched container still decodes */
	CU_ASSERT_EQUAL(sfp_decode(c, dec, N, buf, w, NULL, &err), SFP_OK);
	sfp_codec_free(c);
	free(x), free(dec), free(buf), free(b);
}

static void test_params_and_determinism(void)
{
	float *x = malloc(N * sizeof *x), *q = malloc(N * sizeof *q);
	size_t cap = sfp_encode_bound(N, 2), w1, w2;
	uint8_t *b1 = malloc(cap), *b2 = malloc(cap);
	sfp_codec *c = sfp_codec_create();
	sfp_error err;
	fill(x, 9);
	sfp_params p;
	sfp_params_init(&p, 5, 21);
	p.shift = 1;
	CU_ASSERT_EQUAL(sfp_encode(c, b1, cap, &w1, x, N, shape, 2, &p, &err), SFP_EINVAL);
	sfp_params_init(&p, 5, 2);
	p.bias = 3;
	CU_ASSERT_EQUAL(sfp_params_check(&p, &err), SFP_EINVAL);
	p.bias = SFP_BIAS_CHANNEL;
	p.channels = 3; /* 3 does not divide N */
	CU_ASSERT_EQUAL(sfp_quantize(c, q, x, N, &p, &err), SFP_EINVAL);
	/* same input, same bytes: nearest and stochastic rounding */
	for (int r = 0; r < 2; r++) {
		sfp_params_init(&p, 5, 2);
		p.rounding = r;
		p.seed = 11;
		p.shift = 1;
		p.bias = SFP_BIAS_CHANNEL;
		CU_ASSERT_EQUAL_FATAL(sfp_encode(c, b1, cap, &w1, x, N, shape, 2, &p, &err), SFP_OK);
		CU_ASSERT_EQUAL_FATAL(sfp_encode(c, b2, cap, &w2, x, N, shape, 2, &p, &err), SFP_OK);
		CU_ASSERT(w1 == w2 && memcmp(b1, b2, w1) == 0);
	}
	/* mostly NaN (stored values) with per-value bias groups: the params'
	 * bound holds the side bytes */
	for (int i = 0; i < N; i++)
		x[i] = i % 7 ? NAN : 1.1f + (float)i / N;
	const uint64_t flat = N;
	sfp_params_init(&p, 3, 1);
	p.bias = SFP_BIAS_CHANNEL;
	p.shift = 1;
	size_t bound = sfp_encode_bound_params(N, &flat, 1, &p);
	CU_ASSERT(bound > sfp_encode_bound(N, 1));
	uint8_t *big = malloc(bound);
	CU_ASSERT_EQUAL(sfp_encode(c, big, bound, &w1, x, N, &flat, 1, &p, &err), SFP_OK);
	sfp_info si;
	CU_ASSERT_EQUAL(sfp_inspect(big, w1, &si, &err), SFP_OK);
	CU_ASSERT_EQUAL(si.exp_coder, SFP_EXP_STORED);
	free(big);
	/* a scalar asked for per-channel bias gets a tensor offset (or none) */
	float one = 0.3f;
	sfp_params_init(&p, 4, 1);
	p.bias = SFP_BIAS_CHANNEL;
	CU_ASSERT_EQUAL(sfp_encode(c, b1, cap, &w1, &one, 1, NULL, 0, &p, &err), SFP_OK);
	sfp_info in;
	CU_ASSERT_EQUAL(sfp_decode(c, q, 1, b1, w1, &in, &err), SFP_OK);
	CU_ASSERT_FALSE(in.flags & SFP_FLAG_BIAS_CHANNEL);
	CU_ASSERT(fabsf(q[0] - one) <= fabsf(0.25f - one));
	sfp_codec_free(c);
	free(x), free(q), free(b1), free(b2);
}

int main(void)
{
	static const test_case cases[] = {
		{"round trip with each tool", test_round_trip},
		{"shift and per-row bias lower the error", test_gain},
		{"side information validated", test_corrupt},
		{"parameters and determinism", test_params_and_determinism},
		{NULL, NULL},
	};
	return test_run_suite("refine", cases);
}
