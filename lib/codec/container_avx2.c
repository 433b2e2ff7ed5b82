/*
 * container_avx2.c -- AVX2 + BMI2 kernels for raw exponent codes: e-bit
 * codes are byte-aligned per 8 codes (8 codes = e bytes), so pext packs 8
 * codes into e bytes and pdep spreads them back; the nonzero count runs on
 * 32 bytes at a time. Same bytes and values as the scalar versions.
 */
#include <immintrin.h>

#include "codec/codec_internal.h"

/* Low e bits of each of the 8 bytes. */
static inline uint64_t lane_mask(unsigned e)
{
	return 0x0101010101010101ull * ((1u << e) - 1);
}

void sfp__pack_codes_avx2(uint8_t *dst, const uint8_t *codes, uint64_t n, unsigned e)
{
	if (e == 8) {
		memcpy(dst, codes, n);
		return;
	}
	const uint64_t mask = lane_mask(e);
	uint64_t i = 0;
	uint8_t *o = dst;
	size_t total = (size_t)((n * e + 7) >> 3);
	/* 8-byte stores: stay 8 bytes clear of the end of dst. */
	for (; i + 8 <= n && (size_t)(o - dst) + 8 <= total; i += 8) {
		uint64_t v;
		memcpy(&v, codes + i, 8);
		v = _pext_u64(v, mask);
		memcpy(o, &v, 8);
		o += e;
	}
	bitw w;
	bitw_init(&w, o, total - (size_t)(o - dst));
	for (; i < n; i++)
		bitw_put(&w, codes[i], e);
	bitw_flush(&w);
}

uint64_t sfp__count_nonzero_avx2(const uint8_t *codes, uint64_t n)
{
	uint64_t nz = 0, i = 0;
	const __m256i zero = _mm256_setzero_si256();
	for (; i + 32 <= n; i += 32) {
		__m256i v = _mm256_loadu_si256((const __m256i *)(codes + i));
		unsigned z = (unsigned)_mm256_movemask_epi8(_mm256_cmpeq_epi8(v, zero));
		nz += 32 - (unsigned)__builtin_popcount(z);
	}
	for (; i < n; i++)
		nz += codes[i] != 0;
	return nz;
}

uint64_t sfp__unpack_codes_avx2(uint8_t *codes, const uint8_t *src, uint64_t n, unsigned e)
{
	if (e == 8) {
		memcpy(codes, src, n);
		return sfp__count_nonzero_avx2(codes, n);
	}
	const uint64_t mask = lane_mask(e);
	size_t len = (size_t)((n * e + 7) >> 3);
	uint64_t i = 0;
	const uint8_t *p = src;
	for (; i + 8 <= n && (size_t)(p - src) + 8 <= len; i += 8) {
		uint64_t v;
		memcpy(&v, p, 8);
		v = _pdep_u64(v, mask);
		memcpy(codes + i, &v, 8);
		p += e;
	}
	for (; i < n; i++)
		codes[i] = (uint8_t)bits_get(src, len, i * e, e);
	return sfp__count_nonzero_avx2(codes, n);
}
