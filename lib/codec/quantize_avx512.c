/*
 * quantize_avx512.c -- fake quantization (sfp_quantize) for nearest
 * rounding without saturation, 16 values per step: the same branch-free
 * element rule as quantize_nearest() in container.c, tested bit for bit
 * against the reference loop on every (e, m) (tests/test_codec.c).
 * Returns n, or the start of the 1024-value block holding the first value
 * past the window (the caller's reference loop reports it).
 */
#include <immintrin.h>

#include "codec/codec_internal.h"

uint64_t sfp__quantize_nearest_avx512(const qplan *q, float *dst, const float *src, uint64_t n)
{
	const uint32_t k = q->k, mask = k ? (1u << k) - 1 : 0, half = k ? (1u << (k - 1)) - 1 : 0;
	const __m512i vnotmask = _mm512_set1_epi32((int)~mask), vhalf = _mm512_set1_epi32((int)half);
	const __m512i vabs = _mm512_set1_epi32(0x7fffffff), vsign = _mm512_set1_epi32((int)0x80000000u);
	const __m512i one = _mm512_set1_epi32(1), v255 = _mm512_set1_epi32(255);
	const __m512i vlo = _mm512_set1_epi32((int)q->lo), vhi = _mm512_set1_epi32((int)q->hi);
	const __m512i vmin = _mm512_set1_epi32(q->under_min ? (int)(q->lo << 23) : 0);
	const __m128i vk = _mm_cvtsi32_si128((int)k);
	const __m512i zero = _mm512_setzero_si512();
	const int lossless = q->lossless, under_min = q->under_min;
	for (uint64_t b0 = 0; b0 < n; b0 += 1024) {
		const uint64_t b1 = b0 + 1024 < n ? b0 + 1024 : n;
		__mmask16 over = 0;
		for (uint64_t i = b0; i < b1; i += 16) {
			const uint64_t left = b1 - i;
			const __mmask16 lm = left >= 16 ? 0xffff : (__mmask16)((1u << left) - 1);
			const __m512i x = _mm512_maskz_loadu_epi32(lm, src + i);
			const __m512i a = _mm512_and_si512(x, vabs);
			const __m512i E = _mm512_srli_epi32(a, 23);
			__mmask16 exc = _mm512_cmpeq_epi32_mask(E, v255);
			if (lossless)
				exc |= _mm512_cmpeq_epi32_mask(E, zero) & _mm512_cmpneq_epi32_mask(x, zero);
			__m512i lsb = k ? _mm512_and_si512(_mm512_srl_epi32(a, vk), one) : zero;
			const __m512i ar =
				_mm512_and_si512(_mm512_add_epi32(_mm512_add_epi32(a, vhalf), lsb), vnotmask);
			const __m512i Er = _mm512_srli_epi32(ar, 23);
			const __m512i sign = _mm512_and_si512(x, vsign);
			__m512i r = _mm512_or_si512(sign, ar);
			const __mmask16 isz = _mm512_cmpeq_epi32_mask(ar, zero);
			const __mmask16 below = _mm512_cmplt_epu32_mask(Er, vlo) & ~isz;
			r = _mm512_mask_mov_epi32(r, isz, zero);
			r = _mm512_mask_mov_epi32(r, below, under_min ? _mm512_or_si512(sign, vmin) : zero);
			r = _mm512_mask_mov_epi32(r, exc, x);
			over |= _mm512_cmpgt_epu32_mask(Er, vhi) & ~exc & lm;
			_mm512_mask_storeu_epi32(dst + i, lm, r);
		}
		if (over)
			return b0;
	}
	return n;
}
