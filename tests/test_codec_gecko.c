/*
 * test_codec_gecko.c -- Gecko: lossless on every variant, width and distribution;
 * exact bounds; corrupt and truncated streams rejected; near the entropy on
 * lop-sided data.
 */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "sfp/codec.h"
#include "codec/codec_internal.h" /* the AVX-512 encoder helpers, tested directly */
#include "tests/util/testutil.h"

/* ANS0 on a large i.i.d. stream may exceed the entropy by at most this. */
#define ANS_OVERHEAD 0.02

enum { D_EQUAL, D_ZERO, D_MAX, D_UNIFORM, D_GEOM, D_SPARSE, D_ALTERNATE, D_N };

static void gen(uint8_t *c, size_t n, unsigned e, int kind, uint64_t seed)
{
	sfp_rng r;
	unsigned top = (1u << e) - 1;
	sfp_rng_seed(&r, seed);
	for (size_t i = 0; i < n; i++) {
		unsigned v = 0;
		switch (kind) {
		case D_EQUAL: v = top / 2 + 1 > top ? top : top / 2 + 1; break;
		case D_ZERO: v = 0; break;
		case D_MAX: v = top; break;
		case D_UNIFORM: v = (unsigned)sfp_rng_below(&r, top + 1); break;
		case D_GEOM: {
			unsigned k = 0;
			while (k < top - 1 && (sfp_rng_u64(&r) & 1))
				k++;
			v = top - k;
			break;
		}
		case D_SPARSE: /* 90% zero in runs */
			v = ((i / 37) % 10 == 0) ? 1 + (unsigned)sfp_rng_below(&r, top) : 0;
			break;
		default: v = (i & 1) ? top : 0; break;
		}
		c[i] = (uint8_t)v;
	}
}

static void test_roundtrip_all(void)
{
	static const size_t sizes[] = {0, 1, 2, 7, 8, 9, 15, 16, 17, 1000, 100003};
	size_t nmax = 100003, cap = sfp_gecko_bound(nmax, 8), wb = sfp_gecko_work_bytes(nmax);
	uint8_t *c = malloc(nmax), *d = malloc(nmax), *s = malloc(cap), *s2 = malloc(cap);
	void *work = malloc(wb);
	long count = 0;
	for (int v = SFP_GECKO_AUTO; v <= SFP_GECKO_ANS1; v++)
		for (unsigned e = 1; e <= 8; e++)
			for (int kind = 0; kind < D_N; kind++)
				for (size_t si = 0; si < sizeof sizes / sizeof sizes[0]; si++) {
					size_t n = sizes[si];
					sfp_gecko_opts o;
					sfp_gecko_opts_init(&o);
					o.variant = v;
					o.group = 8u << (si % 4);
					o.reference = (int)(si + (size_t)kind) % 3;
					gen(c, n, e, kind, 1000 * e + (uint64_t)kind);
					size_t w = 0, w2 = 0;
					int rc = sfp_gecko_encode(s, cap, &w, c, n, e, &o, sfp_cpu_isa(), work, wb, NULL);
					CU_ASSERT_EQUAL_FATAL(rc, SFP_OK);
					CU_ASSERT_FATAL(w <= cap);
					if (v != SFP_GECKO_AUTO)
						CU_ASSERT_EQUAL(sfp_gecko_variant_of(s, w), v);
					memset(d, 0xee, n);
					rc = sfp_gecko_decode(d, n, e, s, w, sfp_cpu_isa(), work, wb, NULL);
					CU_ASSERT_EQUAL_FATAL(rc, SFP_OK);
					CU_ASSERT_FATAL(memcmp(c, d, n) == 0);
					/* deterministic, same bytes at the scalar level */
					CU_ASSERT_EQUAL(sfp_gecko_encode(s2, cap, &w2, c, n, e, &o, SFP_ISA_SCALAR, work, wb, NULL), SFP_OK);
					CU_ASSERT_FATAL(w == w2 && memcmp(s, s2, w) == 0);
					count++;
				}
	printf(" (%ld streams) ", count);
	free(c);
	free(d);
	free(s);
	free(s2);
	free(work);
}

static void test_short_buffer_and_bad_input(void)
{
	enum { N = 5000 };
	uint8_t c[N], d[N];
	size_t cap = sfp_gecko_bound(N, 6), wb = sfp_gecko_work_bytes(N);
	uint8_t *s = malloc(cap + 32), *t = malloc(cap + 32);
	void *work = malloc(wb);
	sfp_error err;
	for (int v = SFP_GECKO_DELTA; v <= SFP_GECKO_ANS1; v++) {
		sfp_gecko_opts o;
		sfp_gecko_opts_init(&o);
		o.variant = v;
		gen(c, N, 6, D_GEOM, 3);
		size_t w;
		CU_ASSERT_EQUAL_FATAL(sfp_gecko_encode(s, cap, &w, c, N, 6, &o, sfp_cpu_isa(), work, wb, NULL), SFP_OK);
		/* one byte short: ENOSPC, nothing past the capacity */
		memset(t, 0x5a, cap + 32);
		size_t w2;
		CU_ASSERT_EQUAL(sfp_gecko_encode(t, w - 1, &w2, c, N, 6, &o, sfp_cpu_isa(), work, wb, NULL), SFP_ENOSPC);
		for (size_t i = w - 1; i < cap + 32; i++)
			CU_ASSERT_EQUAL_FATAL(t[i], 0x5a);
		/* every truncation is an error; a trailing byte is an error */
		for (size_t l = 0; l < w; l++)
			CU_ASSERT_FATAL(sfp_gecko_decode(d, N, 6, s, l, sfp_cpu_isa(), work, wb, NULL) < 0);
		memcpy(t, s, w);
		t[w] = 0;
		CU_ASSERT_EQUAL(sfp_gecko_decode(d, N, 6, t, w + 1, sfp_cpu_isa(), work, wb, &err), SFP_ECORRUPT);
		/* a narrower e than the codes need is caught */
		CU_ASSERT(sfp_gecko_decode(d, N, 5, s, w, sfp_cpu_isa(), work, wb, NULL) < 0);
		/* random bit flips: an error or valid codes, never a crash */
		sfp_rng r;
		sfp_rng_seed(&r, (uint64_t)v);
		for (int k = 0; k < 2000; k++) {
			memcpy(t, s, w);
			t[sfp_rng_below(&r, w)] ^= (uint8_t)(1u << sfp_rng_below(&r, 8));
			if (sfp_gecko_decode(d, N, 6, t, w, sfp_cpu_isa(), work, wb, NULL) == SFP_OK)
				for (int i = 0; i < N; i++)
					CU_ASSERT_FATAL(d[i] < 64);
		}
	}
	/* forged headers */
	uint8_t f[64] = {0};
	f[0] = 9;
	CU_ASSERT_EQUAL(sfp_gecko_decode(d, 10, 4, f, 8, 0, work, wb, NULL), SFP_ECORRUPT);
	f[0] = SFP_GECKO_DELTA;
	f[1] = 12; /* group size */
	CU_ASSERT_EQUAL(sfp_gecko_decode(d, 10, 4, f, 8, 0, work, wb, NULL), SFP_ECORRUPT);
	f[1] = 8;
	f[2] = 7; /* reference kind */
	CU_ASSERT_EQUAL(sfp_gecko_decode(d, 10, 4, f, 8, 0, work, wb, NULL), SFP_ECORRUPT);
	f[2] = SFP_GECKO_REF_MIN;
	f[3] = 0x0f; /* width 15 > e */
	CU_ASSERT_EQUAL(sfp_gecko_decode(d, 10, 4, f, 8, 0, work, wb, NULL), SFP_ECORRUPT);
	/* ANS table whose frequencies do not sum to the total */
	memset(f, 0, sizeof f);
	f[0] = SFP_GECKO_ANS0;
	f[1] = 2; /* two symbols */
	f[3] = 0; f[4] = 0x00; f[5] = 0x10; /* sym 0, freq 4096 */
	f[6] = 1; f[7] = 0x00; f[8] = 0x10; /* sym 1, freq 4096 */
	CU_ASSERT_EQUAL(sfp_gecko_decode(d, 10, 4, f, 64, 0, work, wb, NULL), SFP_ECORRUPT);
	f[6] = 0; /* symbols not increasing */
	CU_ASSERT_EQUAL(sfp_gecko_decode(d, 10, 4, f, 64, 0, work, wb, NULL), SFP_ECORRUPT);
	/* codes >= 2^e are refused by the encoder */
	c[0] = 16;
	sfp_gecko_opts o;
	sfp_gecko_opts_init(&o);
	size_t w;
	CU_ASSERT_EQUAL(sfp_gecko_encode(s, cap, &w, c, N, 4, &o, 0, work, wb, NULL), SFP_EINVAL);
	free(s);
	free(t);
	free(work);
}

/* On a large lop-sided i.i.d. stream, ANS0 is within ANS_OVERHEAD bits of the
 * entropy; on runs of zeros ANS1 goes below the order-0 entropy. */
static void test_near_entropy(void)
{
	enum { N = 1 << 20 };
	uint8_t *c = malloc(N);
	size_t cap = sfp_gecko_bound(N, 8), wb = sfp_gecko_work_bytes(N), w;
	uint8_t *s = malloc(cap);
	void *work = malloc(wb);
	sfp_gecko_opts o;
	sfp_gecko_opts_init(&o);
	gen(c, N, 5, D_GEOM, 8);
	double H = sfp_entropy_u8(c, N);
	o.variant = SFP_GECKO_ANS0;
	CU_ASSERT_EQUAL_FATAL(sfp_gecko_encode(s, cap, &w, c, N, 5, &o, sfp_cpu_isa(), work, wb, NULL), SFP_OK);
	double bits = 8.0 * (double)w / N;
	printf(" (geometric: H %.4f, ans0 %.4f", H, bits);
	CU_ASSERT(bits < H + ANS_OVERHEAD);
	gen(c, N, 5, D_SPARSE, 9);
	H = sfp_entropy_u8(c, N);
	o.variant = SFP_GECKO_ANS1;
	CU_ASSERT_EQUAL_FATAL(sfp_gecko_encode(s, cap, &w, c, N, 5, &o, sfp_cpu_isa(), work, wb, NULL), SFP_OK);
	bits = 8.0 * (double)w / N;
	printf("; zero runs: H %.4f, ans1 %.4f) ", H, bits);
	CU_ASSERT(bits < H);
	/* entropy helper: uniform over 2^k symbols is k bits */
	for (size_t i = 0; i < N; i++)
		c[i] = (uint8_t)(i & 15);
	CU_ASSERT(fabs(sfp_entropy_u8(c, N) - 4.0) < 1e-12);
	free(c);
	free(s);
	free(work);
}

/* Every capacity below the stream size is SFP_ENOSPC with nothing written
 * at or past the capacity; the exact size succeeds with the same bytes. */
static void test_every_capacity(void)
{
	enum { N = 300, SLACK = 16 };
	static const int kinds[] = {D_GEOM, D_SPARSE, D_UNIFORM};
	uint8_t c[N];
	size_t cap = sfp_gecko_bound(N, 5), wb = sfp_gecko_work_bytes(N);
	uint8_t *s = malloc(cap), *t = malloc(cap + SLACK);
	void *work = malloc(wb);
	/* (variant, reference) pairs: AUTO, DELTA with each reference, ANS0, ANS1 */
	static const int cfg[][2] = {{SFP_GECKO_AUTO, 0},  {SFP_GECKO_DELTA, SFP_GECKO_REF_MIN},
				     {SFP_GECKO_DELTA, SFP_GECKO_REF_FIXED},
				     {SFP_GECKO_DELTA, SFP_GECKO_REF_PREV},
				     {SFP_GECKO_ANS0, 0},  {SFP_GECKO_ANS1, 0}};
	for (size_t k = 0; k < sizeof kinds / sizeof kinds[0]; k++)
		for (size_t j = 0; j < sizeof cfg / sizeof cfg[0]; j++) {
			sfp_gecko_opts o;
			sfp_gecko_opts_init(&o);
			o.variant = cfg[j][0];
			o.reference = cfg[j][1];
			gen(c, N, 5, kinds[k], 77 + k);
			size_t w, w2;
			CU_ASSERT_EQUAL_FATAL(sfp_gecko_encode(s, cap, &w, c, N, 5, &o, sfp_cpu_isa(), work, wb, NULL), SFP_OK);
			for (size_t l = 0; l < w; l++) {
				memset(t, 0x5a, w + SLACK);
				CU_ASSERT_EQUAL_FATAL(sfp_gecko_encode(t, l, &w2, c, N, 5, &o, sfp_cpu_isa(), work, wb, NULL), SFP_ENOSPC);
				for (size_t i = l; i < w + SLACK; i++)
					CU_ASSERT_EQUAL_FATAL(t[i], 0x5a);
			}
			memset(t, 0x5a, w + SLACK);
			CU_ASSERT_EQUAL_FATAL(sfp_gecko_encode(t, w, &w2, c, N, 5, &o, sfp_cpu_isa(), work, wb, NULL), SFP_OK);
			CU_ASSERT_FATAL(w2 == w && memcmp(s, t, w) == 0 && t[w] == 0x5a);
		}
	free(s);
	free(t);
	free(work);
}

/* Decoding writes exactly n codes, refuses a different n, gives the same
 * codes at every ISA level the CPU has, and refuses a short work area. */
static void test_decode_contract(void)
{
	enum { N = 4099, CANARY = 64 };
	uint8_t c[N], d[N + CANARY], d2[N + CANARY];
	size_t cap = sfp_gecko_bound(N + 1, 8), wb = sfp_gecko_work_bytes(N + 1);
	uint8_t *s = malloc(cap), *s2 = malloc(cap);
	void *work = malloc(wb);
	for (int v = SFP_GECKO_DELTA; v <= SFP_GECKO_ANS1; v++)
		for (int kind = 0; kind < D_N; kind++) {
			sfp_gecko_opts o;
			sfp_gecko_opts_init(&o);
			o.variant = v;
			gen(c, N, 8, kind, 500 + (uint64_t)kind);
			size_t w, w2;
			CU_ASSERT_EQUAL_FATAL(sfp_gecko_encode(s, cap, &w, c, N, 8, &o, sfp_cpu_isa(), work, wb, NULL), SFP_OK);
			memset(d, 0xa5, sizeof d);
			CU_ASSERT_EQUAL_FATAL(sfp_gecko_decode(d, N, 8, s, w, sfp_cpu_isa(), work, wb, NULL), SFP_OK);
			CU_ASSERT_FATAL(memcmp(c, d, N) == 0);
			for (int i = 0; i < CANARY; i++)
				CU_ASSERT_EQUAL_FATAL(d[N + i], 0xa5);
			/* one code fewer or more than encoded: usually an error; a
			 * stream may not tell (zero padding bits read as one more
			 * DELTA delta of 0, ANS contexts that carry no
			 * information), but then the codes must agree with the
			 * encoded ones and stay < 2^e (the container stores n
			 * and checks a CRC) */
			memset(d2, 0xa5, sizeof d2);
			int rc = sfp_gecko_decode(d2, N + 1, 8, s, w, sfp_cpu_isa(), work, wb, NULL);
			CU_ASSERT(rc < 0 || memcmp(d2, c, N) == 0);
			CU_ASSERT(d2[N + 1] == 0xa5);
			memset(d2, 0xa5, sizeof d2);
			rc = sfp_gecko_decode(d2, N - 1, 8, s, w, sfp_cpu_isa(), work, wb, NULL);
			CU_ASSERT(rc < 0 || memcmp(d2, c, N - 1) == 0);
			CU_ASSERT(d2[N - 1] == 0xa5);
			if (kind == D_UNIFORM || kind == D_SPARSE)
				CU_ASSERT(rc < 0);
			/* every ISA level up to the CPU's: same bytes, same codes */
			for (int isa = SFP_ISA_SCALAR; isa <= sfp_cpu_isa(); isa++) {
				CU_ASSERT_EQUAL_FATAL(sfp_gecko_encode(s2, cap, &w2, c, N, 8, &o, isa, work, wb, NULL), SFP_OK);
				CU_ASSERT_FATAL(w2 == w && memcmp(s, s2, w) == 0);
				memset(d2, 0xa5, sizeof d2);
				CU_ASSERT_EQUAL_FATAL(sfp_gecko_decode(d2, N, 8, s, w, isa, work, wb, NULL), SFP_OK);
				CU_ASSERT_FATAL(memcmp(d, d2, N + CANARY) == 0);
			}
			/* ANS needs scratch: a too-small work area is an error, not an overrun */
			if (v != SFP_GECKO_DELTA) {
				uint8_t tiny[16];
				CU_ASSERT(sfp_gecko_encode(s2, cap, &w2, c, N, 8, &o, sfp_cpu_isa(), tiny, sizeof tiny, NULL) < 0);
				CU_ASSERT(sfp_gecko_decode(d2, N, 8, s, w, sfp_cpu_isa(), tiny, sizeof tiny, NULL) < 0);
			}
		}
	free(s);
	free(s2);
	free(work);
}

/* The AVX-512 encoder helpers against plain loops on every distribution and
 * e, at lengths around multiples of 64: the OR of the codes, DELTA's size
 * for groups of 8 with the previous code as reference (it decides AUTO's
 * variant, so the stream bytes) and the context histogram of codes < 32. The ANS kernels are covered by the
 * byte-for-byte ISA comparisons above. */
static void test_encoder_helpers(void)
{
	enum { N = 4096 + 63 };
	static uint8_t c[N];
	long checked = 0;
	if (sfp_cpu_isa() < SFP_ISA_AVX512)
		return;
	for (unsigned e = 1; e <= 8; e++)
		for (int kind = 0; kind < D_N; kind++) {
			gen(c, N, e, kind, 900 + 10 * e + (uint64_t)kind);
			for (size_t n = 0; n <= N; n += (n < 200 ? 1 : 61)) {
				unsigned any = 0;
				for (size_t i = 0; i < n; i++)
					any |= c[i];
				CU_ASSERT_EQUAL_FATAL(sfp__gecko_or_avx512(c, n), any);
				uint64_t want = 0;
				for (size_t g = 0; g + 8 <= (n & ~(size_t)63); g += 8) {
					unsigned acc = 0;
					for (size_t i = g; i < g + 8; i++) {
						int d = (int)c[i] - (i ? (int)c[i - 1] : 0);
						acc |= d >= 0 ? 2u * (unsigned)d : 2u * (unsigned)-d - 1;
					}
					unsigned w = 0;
					while (acc >> w)
						w++;
					want += 4 + 8 * w;
				}
				CU_ASSERT_EQUAL_FATAL(sfp__delta_bits_prev8_avx512(c, n), want);
				if (any < 32) {
					static uint64_t h[2][256], hw[2][256];
					memset(h, 0, sizeof h);
					memset(hw, 0, sizeof hw);
					for (size_t i = 0; i < n; i++)
						hw[i > 0 && c[i - 1] != 0][c[i]]++;
					sfp__gecko_hist32_avx512(c, n, any, h);
					CU_ASSERT_FATAL(memcmp(h, hw, sizeof h) == 0);
				}
				checked++;
			}
		}
	printf(" (%ld streams) ", checked);
}

/* Hand-forged streams with a known verdict. */
static void test_forged(void)
{
	uint8_t d[64];
	static uint8_t work[5 * 2 * 16384 + 2048]; /* >= sfp_gecko_work_bytes(33) */
	sfp_error err;
	/* DELTA, G 8, REF_MIN: width 1, base 15 (= 2^4 - 1), delta 1 -> code 16 >= 2^4 */
	uint8_t f1[] = {SFP_GECKO_DELTA, 8, SFP_GECKO_REF_MIN, 0x01 | 0xf0, 0xff};
	/* bits: w=1 (4 bits), base=15 (4 bits), then 8 deltas of 1 -> 0xff */
	CU_ASSERT_EQUAL(sfp_gecko_decode(d, 8, 4, f1, sizeof f1, 0, work, sizeof work, &err), SFP_ECORRUPT);
	f1[4] = 0x00; /* deltas 0: eight codes 15, valid */
	CU_ASSERT_EQUAL_FATAL(sfp_gecko_decode(d, 8, 4, f1, sizeof f1, 0, work, sizeof work, &err), SFP_OK);
	for (int i = 0; i < 8; i++)
		CU_ASSERT_EQUAL(d[i], 15);
	/* DELTA REF_PREV: first delta zigzag 1 = -1 from 0 -> code -1 */
	uint8_t f2[] = {SFP_GECKO_DELTA, 8, SFP_GECKO_REF_PREV, 0x11, 0x00};
	CU_ASSERT_EQUAL(sfp_gecko_decode(d, 8, 4, f2, sizeof f2, 0, work, sizeof work, &err), SFP_ECORRUPT);
	/* e = 3: w = 0 (4 bits), base 3 (3 bits), one code -> 7 bits used; the
	 * eighth (padding) bit must be zero, and no byte may follow */
	uint8_t f3[] = {SFP_GECKO_DELTA, 8, SFP_GECKO_REF_MIN, 0x30, 0x00};
	CU_ASSERT_EQUAL_FATAL(sfp_gecko_decode(d, 1, 3, f3, 4, 0, work, sizeof work, &err), SFP_OK);
	CU_ASSERT_EQUAL(d[0], 3);
	CU_ASSERT_EQUAL(sfp_gecko_decode(d, 1, 3, f3, 5, 0, work, sizeof work, &err), SFP_ECORRUPT);
	f3[3] = 0xb0;
	CU_ASSERT_EQUAL(sfp_gecko_decode(d, 1, 3, f3, 4, 0, work, sizeof work, &err), SFP_ECORRUPT);
	/* ANS0 with a table symbol >= 2^e */
	/* (32 final states of 2^16 follow the table) */
	uint8_t f4[6 + 128] = {SFP_GECKO_ANS0, 1, 0, 9, 0x00, 0x40};
	for (int l = 0; l < 32; l++)
		f4[6 + 4 * l + 2] = 1;
	CU_ASSERT_EQUAL(sfp_gecko_decode(d, 1, 3, f4, sizeof f4, 0, work, sizeof work, &err), SFP_ECORRUPT);
	/* the same stream is valid for e = 4: one symbol of frequency 2^14,
	 * states at 2^16, no words: any n decodes to 9s */
	CU_ASSERT_EQUAL_FATAL(sfp_gecko_decode(d, 5, 4, f4, sizeof f4, 0, work, sizeof work, &err), SFP_OK);
	for (int i = 0; i < 5; i++)
		CU_ASSERT_EQUAL(d[i], 9);
	/* a final state off by one */
	f4[6] = 1;
	CU_ASSERT_EQUAL(sfp_gecko_decode(d, 5, 4, f4, sizeof f4, 0, work, sizeof work, &err), SFP_ECORRUPT);
	/* a state below 2^16 */
	f4[6] = 0;
	f4[8] = 0;
	CU_ASSERT_EQUAL(sfp_gecko_decode(d, 5, 4, f4, sizeof f4, 0, work, sizeof work, &err), SFP_ECORRUPT);
	/* ANS1: context "previous nonzero" has no symbols; reaching it is corrupt */
	uint8_t f5[8 + 128] = {SFP_GECKO_ANS1, 1, 0, 1, 0x00, 0x40, 0, 0};
	for (int l = 0; l < 32; l++)
		f5[8 + 4 * l + 2] = 1;
	CU_ASSERT_EQUAL_FATAL(sfp_gecko_decode(d, 1, 2, f5, sizeof f5, 0, work, sizeof work, &err), SFP_OK);
	CU_ASSERT_EQUAL(d[0], 1);
	/* 32 codes: one per segment, each the first of its segment (context 0) */
	CU_ASSERT_EQUAL(sfp_gecko_decode(d, 32, 2, f5, sizeof f5, 0, work, sizeof work, &err), SFP_OK);
	/* 33: segments of 2, the second code of segment 0 follows a 1 */
	for (int isa = SFP_ISA_SCALAR; isa <= sfp_cpu_isa(); isa++)
		CU_ASSERT_EQUAL(sfp_gecko_decode(d, 33, 2, f5, sizeof f5, isa, work, sizeof work, &err), SFP_ECORRUPT);
	/* variant bytes outside 1..3 (0 = AUTO is never stored) */
	for (int b = 0; b < 256; b++) {
		f4[0] = (uint8_t)b;
		if (b < SFP_GECKO_DELTA || b > SFP_GECKO_ANS1) {
			CU_ASSERT_EQUAL(sfp_gecko_variant_of(f4, sizeof f4), SFP_ECORRUPT);
			CU_ASSERT_EQUAL(sfp_gecko_decode(d, 1, 4, f4, sizeof f4, 0, work, sizeof work, &err), SFP_ECORRUPT);
		}
	}
	CU_ASSERT_EQUAL(sfp_gecko_variant_of(f4, 0), SFP_ECORRUPT);
}

/* Random garbage behind each variant byte: an error or codes < 2^e. */
static void test_garbage(void)
{
	enum { MAXN = 600, MAXLEN = 1200 };
	uint8_t d[MAXN], *g = malloc(MAXLEN);
	size_t wb = sfp_gecko_work_bytes(MAXN);
	void *work = malloc(wb);
	sfp_rng r;
	long ok = 0;
	sfp_rng_seed(&r, 4242);
	for (int k = 0; k < 30000; k++) {
		size_t len = 1 + sfp_rng_below(&r, MAXLEN - 1);
		uint64_t n = sfp_rng_below(&r, MAXN + 1);
		unsigned e = 1 + (unsigned)sfp_rng_below(&r, 8);
		for (size_t i = 0; i < len; i++)
			g[i] = (uint8_t)sfp_rng_u64(&r);
		g[0] = (uint8_t)(1 + k % 3);
		if (g[0] == SFP_GECKO_DELTA && len > 2) { /* plausible header */
			g[1] = (uint8_t)(8u << (k / 3 % 4));
			g[2] = (uint8_t)(k / 12 % 3);
		} else if (len > 2 && (k & 8)) { /* small table */
			g[1] = (uint8_t)(k % 5);
			g[2] = 0;
		}
		int rc = sfp_gecko_decode(d, n, e, g, len, sfp_cpu_isa(), work, wb, NULL);
		CU_ASSERT_FATAL(rc == SFP_OK || rc == SFP_ECORRUPT);
		if (rc == SFP_OK) {
			ok++;
			for (uint64_t i = 0; i < n; i++)
				CU_ASSERT_FATAL(d[i] >> e == 0);
		}
	}
	printf(" (%ld of 30000 decoded) ", ok);
	free(g);
	free(work);
}

int main(void)
{
	static const test_case cases[] = {
		{"lossless on every variant, e and distribution", test_roundtrip_all},
		{"short buffers and bad streams", test_short_buffer_and_bad_input},
		{"close to the entropy", test_near_entropy},
		{"every capacity below the size is ENOSPC", test_every_capacity},
		{"decode contract: exact n, ISA levels, work area", test_decode_contract},
		{"AVX-512 encoder helpers equal plain loops", test_encoder_helpers},
		{"forged streams", test_forged},
		{"random garbage", test_garbage},
		{NULL, NULL},
	};
	return test_run_suite("gecko", cases);
}
