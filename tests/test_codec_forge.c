/*
 * test_codec_forge.c -- the container decoder's checks, one forged field at a
 * time, each with its CRCs recomputed so the field check (not the CRC) must
 * catch it, and each expecting its specific error code; plus every SIMD level
 * against the scalar reference on every (e, m) at every odd size.
 * Complements test_codec_container.c (which asserts only "some error" for most forgeries
 * and one size per (e, m)).
 */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "sfp/codec.h"
#include "tests/util/testutil.h"

static sfp_codec *codec;

/* Recompute the payload CRC (when the header is sane enough to find the
 * payload) and then the header CRC over bytes 0..59 and the shape. */
static void fix_crcs(uint8_t *b, size_t len, int payload)
{
	unsigned ndim = b[11] <= 8 ? b[11] : 0;
	size_t hb = 64 + 8u * ndim;
	if (payload && len >= hb) {
		uint32_t c = sfp_crc32c(0, b + hb, len - hb);
		memcpy(b + 56, &c, 4);
	}
	uint32_t h = sfp_crc32c(sfp_crc32c(0, b, 60), b + 64, 8u * ndim);
	memcpy(b + 60, &h, 4);
}

/* Decode with the context and the reference; both must agree. */
static int dec(const uint8_t *b, size_t len, size_t n)
{
	float *y = malloc(n * 4 + 4);
	int r1 = sfp_decode(codec, y, n, b, len, NULL, NULL);
	int r2 = sfp_decode_ref(y, n, b, len, NULL, NULL);
	if (r1 != r2)
		fprintf(stderr, "\n  fast %d vs reference %d\n", r1, r2);
	CU_ASSERT_EQUAL(r1, r2);
	free(y);
	return r1;
}

static uint8_t *enc(size_t *len, const sfp_params *p, const float *x, size_t n, const uint64_t *shape,
		    unsigned ndim)
{
	size_t cap = sfp_encode_bound(n, ndim);
	uint8_t *b = malloc(cap + 8);
	CU_ASSERT_EQUAL_FATAL(sfp_encode(codec, b, cap, len, x, n, shape, ndim, p, NULL), SFP_OK);
	return b;
}

/* Sample: 960 values, shape {120, 8}, e = 4, m = 3, two exceptions. */
enum { N = 960 };
static void sample(float *x)
{
	sfp_rng r;
	sfp_rng_seed(&r, 5);
	for (size_t i = 0; i < N; i++)
		x[i] = (i % 5 == 0) ? 0.0f : sfp_rng_normal(&r);
	x[10] = NAN;
	x[700] = INFINITY;
}

#define EXPECT(c, len, want, what)                                                          \
	do {                                                                                \
		int rc_ = dec(c, len, N);                                                   \
		if (rc_ != (want))                                                          \
			fprintf(stderr, "\n  %s: got %d, want %d\n", what, rc_, (int)(want)); \
		CU_ASSERT_EQUAL(rc_, want);                                                 \
	} while (0)

static void test_header_fields(void)
{
	float x[N];
	sample(x);
	uint64_t shape[2] = {N / 8, 8};
	for (int g = 0; g <= 1; g++) {
		sfp_params p;
		sfp_params_init(&p, 4, 3);
		p.gecko = g;
		size_t len;
		uint8_t *b = enc(&len, &p, x, N, shape, 2);
		uint8_t *c = malloc(len + 64);
		CU_ASSERT_EQUAL_FATAL(dec(b, len, N), SFP_OK);
		sfp_info in;
		CU_ASSERT_EQUAL_FATAL(sfp_inspect(b, len, &in, NULL), SFP_OK);
		CU_ASSERT_EQUAL(in.n_exceptions, 2);

#define FORGE(stmt, want, what)          \
	do {                             \
		memcpy(c, b, len);       \
		stmt;                    \
		fix_crcs(c, len, 0);     \
		EXPECT(c, len, want, what); \
	} while (0)
		FORGE(c[0] = 'X', SFP_ECORRUPT, "magic");
		FORGE(c[4] = 1, SFP_EVERSION, "version 1 (before the 32-state Gecko rANS)");
		FORGE(c[4] = 3, SFP_EVERSION, "version 3");
		FORGE(c[4] = 0, SFP_EVERSION, "version 0");
		FORGE(c[5] = 0, SFP_ECORRUPT, "e = 0");
		FORGE(c[5] = 9, SFP_ECORRUPT, "e = 9");
		FORGE(c[6] = 24, SFP_ECORRUPT, "m = 24");
		FORGE(c[7] = 0, SFP_ECORRUPT, "exp_lo = 0");
		FORGE(c[7] = 255, SFP_ECORRUPT, "exp_lo = 255");
		FORGE(c[7] = 241, SFP_ECORRUPT, "exp_lo + 14 > 254");
		FORGE(c[8] |= 0x40, SFP_ECORRUPT, "unknown flag");
		FORGE(c[9] |= 0x80, SFP_ECORRUPT, "unknown high flag");
		FORGE(c[8] |= 0x03, SFP_ECORRUPT, "SIGN_POS | SIGN_NEG");
		FORGE(c[10] = 3, SFP_ECORRUPT, "exp_coder 3");
		FORGE(c[12] = 1, SFP_ECORRUPT, "reserved");
		FORGE(c[15] = 0x80, SFP_ECORRUPT, "reserved high");
		FORGE(sfp_store_le64(c + 16, N + 8), SFP_ECORRUPT, "count vs shape");
		FORGE(sfp_store_le64(c + 16, N - 8), SFP_ECORRUPT, "count vs shape (smaller)");
		FORGE(sfp_store_le64(c + 16, (1ull << 40) + 1), SFP_ECORRUPT, "count > 2^40");
		FORGE(sfp_store_le64(c + 24, sfp_load_le64(b + 24) + 1), SFP_ECORRUPT, "nnz + 1");
		FORGE(sfp_store_le64(c + 24, sfp_load_le64(b + 24) - 1), SFP_ECORRUPT, "nnz - 1");
		FORGE(sfp_store_le64(c + 24, N + 1), SFP_ECORRUPT, "nnz > count");
		FORGE(sfp_store_le64(c + 32, 3), SFP_ECORRUPT, "n_exc + 1");
		FORGE(sfp_store_le64(c + 32, 1), SFP_ECORRUPT, "n_exc - 1");
		FORGE(sfp_store_le64(c + 40, sfp_load_le64(b + 40) + 1), SFP_ECORRUPT, "exp_bytes + 1");
		FORGE(sfp_store_le64(c + 40, sfp_load_le64(b + 40) - 1), SFP_ECORRUPT, "exp_bytes - 1");
		FORGE(sfp_store_le64(c + 48, sfp_load_le64(b + 48) - 1), SFP_ECORRUPT, "payload_bytes - 1");
		FORGE(sfp_store_le64(c + 48, ~0ull), SFP_ECORRUPT, "payload_bytes huge");
		/* the shape itself: a dimension changed, count no longer matches */
		FORGE(sfp_store_le64(c + 64, N / 8 + 1), SFP_ECORRUPT, "shape[0]");
#undef FORGE
		/* ndim 9: the header is unreadable as such; any error will do, but
		 * never OK and fast == reference. */
		memcpy(c, b, len);
		c[11] = 9;
		fix_crcs(c, len, 0);
		CU_ASSERT(dec(c, len, N) < 0);

		/* CRC mismatches: a payload byte, a header byte, the CRC fields. */
		memcpy(c, b, len);
		c[len - 1] ^= 0x10;
		EXPECT(c, len, SFP_ECHECKSUM, "payload flip");
		memcpy(c, b, len);
		c[25] ^= 0x01;
		EXPECT(c, len, SFP_ECHECKSUM, "nnz flip without header CRC");
		memcpy(c, b, len);
		c[56] ^= 0x01;
		fix_crcs(c, len, 0);
		EXPECT(c, len, SFP_ECHECKSUM, "payload CRC forged");
		memcpy(c, b, len);
		c[63] ^= 0x01;
		EXPECT(c, len, SFP_ECHECKSUM, "header CRC");

		/* Truncation and destination size. */
		for (size_t l = 0; l < len; l++) {
			int rc = dec(b, l, N);
			CU_ASSERT_FATAL(rc == SFP_ETRUNC || rc == SFP_ECORRUPT);
		}
		float *y = malloc(N * 4);
		CU_ASSERT_EQUAL(sfp_decode(codec, y, N - 1, b, len, NULL, NULL), SFP_ENOSPC);
		CU_ASSERT_EQUAL(sfp_decode_ref(y, N - 1, b, len, NULL, NULL), SFP_ENOSPC);
		free(y);

		/* Exception list: the second index delta 0 (not increasing). The
		 * first exception is index 10 (one varint byte, then 4 raw bytes). */
		size_t ex = in.header_bytes + in.mant_bytes + in.sign_bytes;
		CU_ASSERT_EQUAL_FATAL(b[ex], 10);
		memcpy(c, b, len);
		CU_ASSERT_EQUAL_FATAL(c[ex + 5] & 0x80, 0x80); /* 690 takes 2 bytes */
		c[ex + 5] = 0x80;
		c[ex + 6] = 0x00; /* overlong zero: a gap of 0 */
		fix_crcs(c, len, 1);
		CU_ASSERT(dec(c, len, N) == SFP_ECORRUPT);
		/* index past count */
		memcpy(c, b, len);
		c[ex + 5] = 0xff;
		c[ex + 6] = 0x7f;
		fix_crcs(c, len, 1);
		EXPECT(c, len, SFP_ECORRUPT, "exception index >= count");
		/* exception on a position whose code is nonzero (index 11) */
		memcpy(c, b, len);
		c[ex] = 11;
		fix_crcs(c, len, 1);
		EXPECT(c, len, SFP_ECORRUPT, "exception over a nonzero code");
		/* exception holding an ordinary normal value (1.0f) */
		memcpy(c, b, len);
		uint32_t one = 0x3f800000u;
		memcpy(c + ex + 1, &one, 4);
		fix_crcs(c, len, 1);
		EXPECT(c, len, SFP_ECORRUPT, "exception holding 1.0");
		/* a trailing byte after the payload */
		memcpy(c, b, len);
		c[len] = 0;
		EXPECT(c, len + 1, SFP_ECORRUPT, "trailing byte");
		free(c);
		free(b);
	}
}

/* Sign flags: SIGN_POS on data with a negative value would need a sign stream;
 * SIGN_POS with nnz = 0 is rejected. */
static void test_sign_flags(void)
{
	float z[64] = {0};
	uint64_t shape = 64;
	sfp_params p;
	sfp_params_init(&p, 3, 2);
	size_t len;
	uint8_t *b = enc(&len, &p, z, 64, &shape, 1);
	sfp_info in;
	CU_ASSERT_EQUAL_FATAL(sfp_inspect(b, len, &in, NULL), SFP_OK);
	CU_ASSERT_EQUAL(in.nnz, 0);
	CU_ASSERT_EQUAL(b[8] & 3, 0);
	float y[64];
	CU_ASSERT_EQUAL(sfp_decode(codec, y, 64, b, len, NULL, NULL), SFP_OK);
	for (unsigned f = 1; f <= 2; f++) {
		uint8_t c[512];
		memcpy(c, b, len);
		c[8] |= (uint8_t)f;
		fix_crcs(c, len, 0);
		CU_ASSERT_EQUAL(sfp_decode(codec, y, 64, c, len, NULL, NULL), SFP_ECORRUPT);
		CU_ASSERT_EQUAL(sfp_decode_ref(y, 64, c, len, NULL, NULL), SFP_ECORRUPT);
	}
	free(b);

	/* all positive: SIGN_POS, no sign region; clearing the flag makes the
	 * region sizes disagree with payload_bytes */
	float x[64];
	for (int i = 0; i < 64; i++)
		x[i] = 1.0f + (float)i;
	b = enc(&len, &p, x, 64, &shape, 1);
	CU_ASSERT_EQUAL(b[8] & 3, 1);
	uint8_t c[512];
	memcpy(c, b, len);
	c[8] &= (uint8_t)~1u;
	fix_crcs(c, len, 0);
	CU_ASSERT_EQUAL(sfp_decode(codec, y, 64, c, len, NULL, NULL), SFP_ECORRUPT);
	CU_ASSERT_EQUAL(sfp_decode_ref(y, 64, c, len, NULL, NULL), SFP_ECORRUPT);
	free(b);
}

/* e = 8 requires exp_lo = 1. */
static void test_e8_window(void)
{
	float x[32];
	for (int i = 0; i < 32; i++)
		x[i] = (float)(i - 16) * 0.25f;
	uint64_t shape = 32;
	sfp_params p;
	sfp_params_init(&p, 8, 7);
	size_t len;
	uint8_t *b = enc(&len, &p, x, 32, &shape, 1);
	CU_ASSERT_EQUAL(b[7], 1);
	uint8_t c[512];
	memcpy(c, b, len);
	c[7] = 2;
	fix_crcs(c, len, 0);
	float y[32];
	CU_ASSERT_EQUAL(sfp_decode(codec, y, 32, c, len, NULL, NULL), SFP_ECORRUPT);
	CU_ASSERT_EQUAL(sfp_decode_ref(y, 32, c, len, NULL, NULL), SFP_ECORRUPT);
	free(b);
}

/* Stored mode: values outside the window, nnz / n_exc disagreeing. */
static void test_stored(void)
{
	uint32_t u[8] = {0x7fc00000, 0x7fc00001, 0x7f800000, 0xff800000, 0x7fc00002, 0x7fc00003, 0, 0x3f800000};
	uint64_t shape = 8;
	sfp_params p;
	sfp_params_init(&p, 3, 1);
	size_t len;
	uint8_t *b = enc(&len, &p, (const float *)u, 8, &shape, 1);
	sfp_info in;
	CU_ASSERT_EQUAL_FATAL(sfp_inspect(b, len, &in, NULL), SFP_OK);
	CU_ASSERT_EQUAL_FATAL(in.exp_coder, SFP_EXP_STORED);
	CU_ASSERT_EQUAL(in.nnz, 1);
	CU_ASSERT_EQUAL(in.n_exceptions, 6);
	uint8_t c[512];
	float y[8];
	static const uint32_t bad[] = {
		0x4f800000u, /* 2^32: above the 3-bit window around 1.0 */
		0x00000001u, /* a subnormal in a lossy container */
		0x80000000u, /* -0 in a lossy container */
		0x3fc00001u, /* mantissa bits below m */
	};
	for (size_t k = 0; k < sizeof bad / sizeof bad[0]; k++) {
		memcpy(c, b, len);
		memcpy(c + in.header_bytes + 4 * 7, &bad[k], 4);
		fix_crcs(c, len, 1);
		CU_ASSERT_EQUAL(sfp_decode(codec, y, 8, c, len, NULL, NULL), SFP_ECORRUPT);
		CU_ASSERT_EQUAL(sfp_decode_ref(y, 8, c, len, NULL, NULL), SFP_ECORRUPT);
	}
	/* nnz and n_exc must match the stored values */
	memcpy(c, b, len);
	sfp_store_le64(c + 24, 2);
	fix_crcs(c, len, 0);
	CU_ASSERT_EQUAL(sfp_decode(codec, y, 8, c, len, NULL, NULL), SFP_ECORRUPT);
	memcpy(c, b, len);
	sfp_store_le64(c + 32, 5);
	fix_crcs(c, len, 0);
	CU_ASSERT_EQUAL(sfp_decode(codec, y, 8, c, len, NULL, NULL), SFP_ECORRUPT);
	free(b);
}

/* Every ISA the CPU has equals the reference on every (e, m) at every size. */
static void test_isa_all_sizes(void)
{
	static const size_t sizes[] = {0, 1, 15, 16, 17, 63, 64, 65, 1000, 100003};
	size_t nmax = 100003, cap = sfp_encode_bound(nmax, 1);
	float *x = malloc(nmax * 4), *y1 = malloc(nmax * 4), *y2 = malloc(nmax * 4);
	uint8_t *a = malloc(cap), *r = malloc(cap);
	sfp_rng rng;
	sfp_rng_seed(&rng, 99);
	for (size_t i = 0; i < nmax; i++) {
		float g = sfp_rng_normal(&rng);
		x[i] = (i % 3 == 0) ? 0.0f : g * 0.1f; /* ReLU-like zeros plus Gaussian */
	}
	x[17] = NAN;
	x[64] = -INFINITY;
	long checked = 0;
	for (unsigned e = 1; e <= 8; e++)
		for (unsigned m = 0; m <= 23; m++)
			for (size_t s = 0; s < sizeof sizes / sizeof sizes[0]; s++) {
				size_t n = sizes[s], wr;
				uint64_t shape = n;
				sfp_params p;
				sfp_params_init(&p, e, m);
				p.rounding = (s & 1) ? SFP_ROUND_STOCHASTIC : SFP_ROUND_NEAREST;
				p.seed = (uint32_t)(e * 1000 + m * 10 + s);
				CU_ASSERT_EQUAL_FATAL(sfp_encode_ref(r, cap, &wr, x, n, &shape, 1, &p, NULL), SFP_OK);
				CU_ASSERT_EQUAL_FATAL(sfp_decode_ref(y2, n, r, wr, NULL, NULL), SFP_OK);
				for (int isa = SFP_ISA_SCALAR; isa <= sfp_cpu_isa(); isa++) {
					size_t wa;
					CU_ASSERT_EQUAL_FATAL(sfp_codec_set_isa(codec, isa), SFP_OK);
					CU_ASSERT_EQUAL_FATAL(sfp_encode(codec, a, cap, &wa, x, n, &shape, 1, &p, NULL), SFP_OK);
					if (wa != wr || memcmp(a, r, wr) != 0) {
						fprintf(stderr, "\n  isa %s e=%u m=%u n=%zu: bytes differ\n", sfp_isa_name(isa), e, m, n);
						CU_FAIL_FATAL("encode differs from reference");
					}
					CU_ASSERT_EQUAL_FATAL(sfp_decode(codec, y1, n, r, wr, NULL, NULL), SFP_OK);
					if (memcmp(y1, y2, n * 4) != 0) {
						fprintf(stderr, "\n  isa %s e=%u m=%u n=%zu: values differ\n", sfp_isa_name(isa), e, m, n);
						CU_FAIL_FATAL("decode differs from reference");
					}
					checked++;
				}
			}
	CU_ASSERT_EQUAL(sfp_codec_set_isa(codec, sfp_cpu_isa()), SFP_OK);
	printf(" (%ld configurations) ", checked);
	free(x);
	free(y1);
	free(y2);
	free(a);
	free(r);
}

/* Gecko falls back to raw codes when it cannot beat ceil(n*e/8) bytes
 * (incompressible 1-bit codes), and is used when it can (constant codes). */
static void test_gecko_fallback(void)
{
	enum { NG = 50000 };
	float *x = malloc(NG * 4), *y = malloc(NG * 4);
	uint64_t shape = NG;
	sfp_rng r;
	sfp_rng_seed(&r, 3);
	for (int t = 0; t < 2; t++) {
		for (size_t i = 0; i < NG; i++)
			x[i] = t == 0 ? ((sfp_rng_u64(&r) & 1) ? 1.5f : 0.0f) : 1.25f;
		sfp_params p;
		sfp_params_init(&p, 1, 2);
		p.gecko = 1;
		size_t len;
		uint8_t *b = enc(&len, &p, x, NG, &shape, 1);
		sfp_info in;
		CU_ASSERT_EQUAL_FATAL(sfp_inspect(b, len, &in, NULL), SFP_OK);
		CU_ASSERT_EQUAL(in.exp_coder, t == 0 ? SFP_EXP_RAW : SFP_EXP_GECKO);
		if (t == 0) {
			CU_ASSERT_EQUAL(in.exp_bytes, (NG + 7) / 8);
		} else {
			CU_ASSERT(in.exp_bytes < (NG + 7) / 8);
		}
		CU_ASSERT_EQUAL(sfp_decode(codec, y, NG, b, len, NULL, NULL), SFP_OK);
		CU_ASSERT(memcmp(x, y, NG * 4) == 0);
		free(b);
	}
	free(x);
	free(y);
}

int main(void)
{
	codec = sfp_codec_create();
	if (!codec)
		return 1;
	static const test_case cases[] = {
		{"forged header fields give their specific errors", test_header_fields},
		{"sign flags", test_sign_flags},
		{"e=8 window bottom", test_e8_window},
		{"stored mode forgeries", test_stored},
		{"Gecko falls back to raw codes", test_gecko_fallback},
		{"every ISA equals the reference at every size", test_isa_all_sizes},
		{NULL, NULL},
	};
	int rc = test_run_suite("codec forgeries", cases);
	sfp_codec_free(codec);
	return rc;
}
