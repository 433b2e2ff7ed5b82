/*
 * crc32c_sse42.c -- CRC32C with the SSE4.2 crc32 instruction. Three
 * independent streams over three thirds of each large block hide the
 * instruction's 3-cycle latency; they are merged with a zero-shift of the
 * first two CRCs over the length of the later thirds (multiplication by
 * x^(8n) modulo the polynomial, in GF(2)).
 */
#include <immintrin.h>
#include <string.h>

#include "common/crc32c_internal.h"

/* Multiply two polynomials modulo the CRC32C polynomial (reflected). */
static uint32_t gf2_mulmod(uint32_t a, uint32_t b)
{
	uint32_t prod = 0;
	for (int i = 0; i < 32; i++) {
		if (b & 0x80000000u)
			prod ^= a;
		b <<= 1;
		a = (a & 1) ? (a >> 1) ^ 0x82f63b78u : a >> 1;
	}
	return prod;
}

/* x^(8n) mod P in the reflected domain: the operator that appends n zero bytes. */
static uint32_t shift_op(size_t nbytes)
{
	uint32_t result = 0x80000000u; /* x^0 */
	uint32_t sq = 0x00800000u;     /* x^8 */
	while (nbytes) {
		if (nbytes & 1)
			result = gf2_mulmod(result, sq);
		sq = gf2_mulmod(sq, sq);
		nbytes >>= 1;
	}
	return result;
}

static uint32_t crc_bytes(uint32_t c, const unsigned char *p, size_t n)
{
	while (n >= 8) {
		uint64_t v;
		memcpy(&v, p, 8);
		c = (uint32_t)_mm_crc32_u64(c, v);
		p += 8;
		n -= 8;
	}
	while (n--)
		c = _mm_crc32_u8(c, *p++);
	return c;
}

int sfp_cpu_has_sse42(void)
{
	return __builtin_cpu_supports("sse4.2");
}

uint32_t sfp_crc32c_sse42(uint32_t crc, const void *data, size_t n)
{
	enum { BLOCK = 3 * 8192 };
	const unsigned char *p = data;
	uint32_t c = ~crc;
	if (n >= BLOCK) {
		const uint32_t op = shift_op(BLOCK / 3);
		while (n >= BLOCK) {
			uint32_t c0 = c, c1 = 0, c2 = 0;
			const unsigned char *p1 = p + BLOCK / 3, *p2 = p + 2 * (BLOCK / 3);
			for (size_t i = 0; i < BLOCK / 3; i += 8) {
				uint64_t v0, v1, v2;
				memcpy(&v0, p + i, 8);
				memcpy(&v1, p1 + i, 8);
				memcpy(&v2, p2 + i, 8);
				c0 = (uint32_t)_mm_crc32_u64(c0, v0);
				c1 = (uint32_t)_mm_crc32_u64(c1, v1);
				c2 = (uint32_t)_mm_crc32_u64(c2, v2);
			}
			/* crc(A|B|C) = shift(shift(cA) ^ cB) ^ cC, with cB, cC from 0. */
			c = gf2_mulmod(gf2_mulmod(c0, op) ^ c1, op) ^ c2;
			p += BLOCK;
			n -= BLOCK;
		}
	}
	return ~crc_bytes(c, p, n);
}
