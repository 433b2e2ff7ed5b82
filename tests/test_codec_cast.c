/*
 * test_codec_cast.c -- the 16-bit casts the gradient containers are
 * measured against (codec.h; the collectives send them): every binary16
 * value survives f16 -> f32 -> f16, and float32 -> binary16 / bfloat16
 * round to nearest even, checked against a reference computed in double.
 */
#include <CUnit/CUnit.h>
#include <math.h>
#include <string.h>

#include "sfp/codec.h"
#include "tests/util/testutil.h"

static void test_f16_roundtrip(void)
{
	int bad = 0;
	for (uint32_t h = 0; h < 65536; h++) {
		float f = sfp_f16_to_f32((uint16_t)h);
		uint16_t back = sfp_f32_to_f16(f);
		if (isnan(f) ? (back & 0x7c00u) != 0x7c00u || !(back & 0x3ffu) : back != h)
			bad++;
	}
	CU_ASSERT_EQUAL(bad, 0);
	CU_ASSERT_EQUAL(sfp_f16_to_f32(0x3c00), 1.0f);
	CU_ASSERT_EQUAL(sfp_f16_to_f32(0x7bff), 65504.0f);
	CU_ASSERT_EQUAL(sfp_f16_to_f32(0x0001), 0x1p-24f);
}

/* the nearest binary16 by brute force over the two neighbours of a double */
static double nearest_f16(double v)
{
	double a = fabs(v), best = 0.0;
	if (a >= 65520.0)
		return copysign(INFINITY, v);
	int e = a > 0 ? ilogb(a) : -30;
	if (e < -14)
		e = -14;
	double ulp = ldexp(1.0, e - 10), lo = floor(a / ulp) * ulp, hi = lo + ulp;
	if (a - lo < hi - a)
		best = lo;
	else if (a - lo > hi - a)
		best = hi;
	else
		best = fmod(lo / ulp, 2.0) == 0.0 ? lo : hi;
	return copysign(best, v);
}

static void test_f16_rounding(void)
{
	sfp_rng r;
	sfp_rng_seed(&r, 42);
	int bad = 0;
	for (int i = 0; i < 200000; i++) {
		uint32_t bits = (uint32_t)sfp_rng_u64(&r);
		/* exponents around binary16's range, including its subnormals */
		bits = (bits & 0x807fffffu) | ((100u + bits % 50u) << 23);
		float f;
		memcpy(&f, &bits, 4);
		float got = sfp_f16_to_f32(sfp_f32_to_f16(f));
		if ((double)got != nearest_f16(f))
			bad++;
	}
	CU_ASSERT_EQUAL(bad, 0);
	CU_ASSERT(isinf(sfp_f16_to_f32(sfp_f32_to_f16(1e6f))));
	CU_ASSERT(isnan(sfp_f16_to_f32(sfp_f32_to_f16(NAN))));
	CU_ASSERT_EQUAL(sfp_f16_to_f32(sfp_f32_to_f16(-0.0f)), 0.0f);
}

static void test_bf16(void)
{
	sfp_rng r;
	sfp_rng_seed(&r, 7);
	int bad = 0;
	for (int i = 0; i < 200000; i++) {
		uint32_t bits = (uint32_t)sfp_rng_u64(&r) & 0xfeffffffu; /* finite, no overflow */
		float f;
		memcpy(&f, &bits, 4);
		float got = sfp_bf16_to_f32(sfp_f32_to_bf16(f));
		uint32_t lo = bits & 0xffff0000u, hi = lo + 0x10000u, g;
		memcpy(&g, &got, 4);
		uint32_t rem = bits & 0xffffu;
		uint32_t want = rem > 0x8000u || (rem == 0x8000u && (lo & 0x10000u)) ? hi : lo;
		if (g != want)
			bad++;
	}
	CU_ASSERT_EQUAL(bad, 0);
	CU_ASSERT(isnan(sfp_bf16_to_f32(sfp_f32_to_bf16(NAN))));
}

int main(void)
{
	static const test_case cases[] = {
		{"f16 round trip of every value", test_f16_roundtrip},
		{"f16 nearest-even rounding", test_f16_rounding},
		{"bf16 nearest-even rounding", test_bf16},
		{NULL, NULL},
	};
	return test_run_suite("cast", cases);
}
