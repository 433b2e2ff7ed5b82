/*
 * rng.c -- xoshiro256** (Blackman & Vigna), seeded through splitmix64 so that
 * any 64-bit seed, including 0, gives a well-mixed state.
 */
#include <math.h>

#include "sfp/common.h"

static uint64_t splitmix64(uint64_t *x)
{
	uint64_t z = (*x += 0x9e3779b97f4a7c15ull);
	z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ull;
	z = (z ^ (z >> 27)) * 0x94d049bb133111ebull;
	return z ^ (z >> 31);
}

static inline uint64_t rotl(uint64_t x, int k) { return (x << k) | (x >> (64 - k)); }

void sfp_rng_seed(sfp_rng *r, uint64_t seed)
{
	for (int i = 0; i < 4; i++)
		r->s[i] = splitmix64(&seed);
}

uint64_t sfp_rng_u64(sfp_rng *r)
{
	uint64_t *s = r->s;
	uint64_t out = rotl(s[1] * 5, 7) * 9;
	uint64_t t = s[1] << 17;
	s[2] ^= s[0];
	s[3] ^= s[1];
	s[1] ^= s[2];
	s[0] ^= s[3];
	s[2] ^= t;
	s[3] = rotl(s[3], 45);
	return out;
}

float sfp_rng_uniform(sfp_rng *r)
{
	return (float)(sfp_rng_u64(r) >> 40) * (1.0f / 16777216.0f);
}

float sfp_rng_normal(sfp_rng *r)
{
	/* Box-Muller on (0, 1]: u1 is never 0, so log is finite. */
	double u1 = ((double)(sfp_rng_u64(r) >> 11) + 1.0) * (1.0 / 9007199254740992.0);
	double u2 = (double)(sfp_rng_u64(r) >> 11) * (1.0 / 9007199254740992.0);
	return (float)(sqrt(-2.0 * log(u1)) * cos(6.283185307179586 * u2));
}

uint64_t sfp_rng_below(sfp_rng *r, uint64_t n)
{
	/* Reject the top partial range so every residue is equally likely. */
	uint64_t limit = UINT64_MAX - UINT64_MAX % n;
	uint64_t x;
	do
		x = sfp_rng_u64(r);
	while (x >= limit);
	return x % n;
}
