/*
 * cast.c -- IEEE binary16 and bfloat16 conversions of float32, round to
 * nearest even. They are the peers the containers are measured against:
 * the collectives send them on the wire (transport's SFP_CAST_FP16/BF16).
 * Done on the bits, not with F16C, so every build and CPU gives the same
 * values.
 */
#include <string.h>

#include "sfp/codec.h"

uint16_t sfp_f32_to_f16(float f)
{
	uint32_t x;
	memcpy(&x, &f, 4);
	const uint16_t sign = (uint16_t)((x >> 16) & 0x8000u);
	const uint32_t ax = x & 0x7fffffffu;
	if (ax > 0x7f800000u)
		return sign | 0x7e00u; /* NaN */
	if (ax >= 0x477ff000u)
		return sign | 0x7c00u; /* >= 65520 rounds to infinity */
	if (ax >= 0x38800000u)         /* normal: re-bias, round 13 bits away */
		return sign | (uint16_t)((ax - (112u << 23) + 0xfffu + ((ax >> 13) & 1u)) >> 13);
	if (ax < 0x33000000u)          /* below half the smallest subnormal */
		return sign;
	const uint32_t mant = (ax & 0x7fffffu) | 0x800000u, shift = 126u - (ax >> 23);
	uint32_t q = mant >> shift;
	const uint32_t rem = mant & ((1u << shift) - 1u), half = 1u << (shift - 1u);
	if (rem > half || (rem == half && (q & 1u)))
		q++;
	return sign | (uint16_t)q;
}

float sfp_f16_to_f32(uint16_t h)
{
	const uint32_t sign = (uint32_t)(h & 0x8000u) << 16, e = (h >> 10) & 0x1fu, m = h & 0x3ffu;
	uint32_t x;
	if (e == 0) {
		float v = (float)m * 0x1p-24f;
		return sign ? -v : v;
	}
	x = sign | (e == 31 ? 0x7f800000u : (e + 112u) << 23) | (m << 13);
	float f;
	memcpy(&f, &x, 4);
	return f;
}

uint16_t sfp_f32_to_bf16(float f)
{
	uint32_t x;
	memcpy(&x, &f, 4);
	if ((x & 0x7fffffffu) > 0x7f800000u)
		return (uint16_t)((x >> 16) | 0x40u); /* NaN stays NaN */
	return (uint16_t)((x + 0x7fffu + ((x >> 16) & 1u)) >> 16);
}

float sfp_bf16_to_f32(uint16_t h)
{
	uint32_t x = (uint32_t)h << 16;
	float f;
	memcpy(&f, &x, 4);
	return f;
}
