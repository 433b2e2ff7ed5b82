/*
 * test_gecko.c -- Gecko: lossless on every variant, width and distribution;
 * exact bounds; corrupt and truncated streams rejected; near the entropy on
 * lop-sided data.
 */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "sfp/codec.h"
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

int main(void)
{
	static const test_case cases[] = {
		{"lossless on every variant, e and distribution", test_roundtrip_all},
		{"short buffers and bad streams", test_short_buffer_and_bad_input},
		{"close to the entropy", test_near_entropy},
		{NULL, NULL},
	};
	return test_run_suite("gecko", cases);
}
