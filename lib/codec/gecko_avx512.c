/*
 * gecko_avx512.c -- AVX-512 (F/BW/VBMI/VBMI2) kernels of Gecko's rANS: the
 * 16 states of a stream are the 16 lanes of a vector (each codes its own
 * chunk of the codes, docs/gecko.md), so one step codes 16 symbols. They
 * must give the same bytes and codes as the scalar loops in gecko.c, which
 * tests/test_gecko.c checks.
 *
 * Decode: the slot tables are gathered, the renormalization words of the
 * lanes that need one are expand-loaded in lane order; four steps of symbols
 * are transposed with one vpermb and scattered as a dword per lane.
 * Encode: the current and previous code of each lane are gathered with one
 * dword gather, the (frequency, start) entry with another; the words of the
 * renormalizing lanes are compressed into lane order; x / f is an exact
 * double division (x < 2^32, f <= 2^14: the rounded quotient cannot reach the
 * next integer, so truncating it gives floor(x / f)).
 */
#include <immintrin.h>

#include "codec/codec_internal.h"

uint64_t sfp__ans_decode_avx512(uint8_t *c, const uint64_t *b, uint64_t L, uint32_t *st,
				uint32_t *prev, const uint8_t **wpp, const uint8_t *wend,
				const uint32_t *pk, const uint8_t *lut, int nctx)
{
	const __m512i mask = _mm512_set1_epi32((int)(GECKO_TOTAL - 1));
	const __m512i lo15 = _mm512_set1_epi32(0x7fff), rl = _mm512_set1_epi32((int)GECKO_RANS_L);
	const __m512i ctx1 = _mm512_set1_epi32(nctx == 2 ? (int)GECKO_TOTAL : 0);
	const __m512i ff = _mm512_set1_epi32(0xff), zero = _mm512_setzero_si512();
	__m512i x = _mm512_loadu_si512(st), pv = _mm512_loadu_si512(prev);
	const __m512i blo = _mm512_loadu_si512(b), bhi = _mm512_loadu_si512(b + 8);
	/* byte k * 16 + l (step k, lane l) to byte l * 4 + k */
	uint8_t trb[64];
	for (int l = 0; l < 16; l++)
		for (int k = 0; k < 4; k++)
			trb[l * 4 + k] = (uint8_t)(k * 16 + l);
	const __m512i tr = _mm512_loadu_si512(trb);
	const uint8_t *wp = *wpp;
	uint64_t t = 0;

#define DEC_STEP(K)                                                                          \
	do {                                                                                 \
		__m512i slot = _mm512_and_si512(x, mask);                                    \
		__m512i idx = _mm512_or_si512(                                               \
			slot, _mm512_maskz_mov_epi32(_mm512_test_epi32_mask(pv, pv), ctx1)); \
		__m512i e = _mm512_i32gather_epi32(idx, pk, 4);                              \
		pv = _mm512_and_si512(_mm512_i32gather_epi32(idx, lut, 1), ff);             \
		__m512i v = _mm512_add_epi32(                                                \
			_mm512_mullo_epi32(_mm512_and_si512(e, lo15), _mm512_srli_epi32(x, GECKO_SCALE)), \
			_mm512_srli_epi32(e, 15));                                           \
		__mmask16 r = _mm512_cmplt_epu32_mask(v, rl);                                \
		__m512i w = _mm512_cvtepu16_epi32(_mm256_maskz_expandloadu_epi16(r, wp));   \
		x = _mm512_mask_or_epi32(v, r, _mm512_slli_epi32(v, 16), w);                \
		wp += 2 * (unsigned)__builtin_popcount(r);                                   \
		syms = _mm512_inserti32x4(syms, _mm512_cvtepi32_epi8(pv), K);                \
	} while (0)

	for (; t + 4 <= L && wend - wp >= 4 * 32; t += 4) {
		__m512i syms = zero;
		DEC_STEP(0);
		DEC_STEP(1);
		DEC_STEP(2);
		DEC_STEP(3);
		syms = _mm512_permutexvar_epi8(tr, syms);
		_mm512_i64scatter_epi32(c + t, blo, _mm512_castsi512_si256(syms), 1);
		_mm512_i64scatter_epi32(c + t, bhi, _mm512_extracti64x4_epi64(syms, 1), 1);
	}
#undef DEC_STEP
	_mm512_storeu_si512(st, x);
	_mm512_storeu_si512(prev, pv);
	*wpp = wp;
	return t;
}

void sfp__ans_encode_avx512(const uint8_t *c, const uint64_t *b, uint64_t t_hi, uint64_t t_lo,
			    uint32_t *st, uint16_t **wpp, const uint32_t *enc, int nctx)
{
	const __m512i ff = _mm512_set1_epi32(0xff), lo15 = _mm512_set1_epi32(0x7fff);
	const __m512i total = _mm512_set1_epi32((int)GECKO_TOTAL);
	const __m512i ctx1 = _mm512_set1_epi32(nctx == 2 ? 256 : 0);
	const __m512i blo = _mm512_loadu_si512(b), bhi = _mm512_loadu_si512(b + 8);
	__m512i x = _mm512_loadu_si512(st);
	uint16_t *wp = *wpp;

	for (uint64_t t = t_hi; t-- > t_lo;) {
		/* bytes 0, 1 of lane l: codes b[l] + t - 1 (context) and b[l] + t */
		__m256i g0 = _mm512_i64gather_epi32(blo, c + t - 1, 1);
		__m256i g1 = _mm512_i64gather_epi32(bhi, c + t - 1, 1);
		__m512i g = _mm512_inserti64x4(_mm512_castsi256_si512(g0), g1, 1);
		__m512i sym = _mm512_and_si512(_mm512_srli_epi32(g, 8), ff);
		__mmask16 nzp = _mm512_test_epi32_mask(g, ff);
		__m512i idx = _mm512_mask_or_epi32(sym, nzp, sym, ctx1);
		__m512i e = _mm512_i32gather_epi32(idx, enc, 4);
		__m512i f = _mm512_and_si512(e, lo15), cum = _mm512_srli_epi32(e, 15);
		/* x >= f << 18 (written so that f = 2^14 does not overflow) */
		__mmask16 r = _mm512_cmpge_epu32_mask(_mm512_srli_epi32(x, 32 - GECKO_SCALE), f);
		unsigned cnt = (unsigned)__builtin_popcount(r);
		__m256i words = _mm512_cvtepi32_epi16(_mm512_maskz_compress_epi32(r, x));
		wp -= cnt;
		_mm256_mask_storeu_epi16(wp, (__mmask16)((1u << cnt) - 1), words);
		x = _mm512_mask_srli_epi32(x, r, x, 16);
		__m512d n0 = _mm512_cvtepu32_pd(_mm512_castsi512_si256(x));
		__m512d n1 = _mm512_cvtepu32_pd(_mm512_extracti64x4_epi64(x, 1));
		__m512d d0 = _mm512_cvtepu32_pd(_mm512_castsi512_si256(f));
		__m512d d1 = _mm512_cvtepu32_pd(_mm512_extracti64x4_epi64(f, 1));
		__m256i q0 = _mm512_cvttpd_epu32(_mm512_div_pd(n0, d0));
		__m256i q1 = _mm512_cvttpd_epu32(_mm512_div_pd(n1, d1));
		__m512i q = _mm512_inserti64x4(_mm512_castsi256_si512(q0), q1, 1);
		/* q * 2^14 + (x - q * f) + cum = x + cum + q * (2^14 - f) */
		x = _mm512_add_epi32(_mm512_add_epi32(x, cum),
				     _mm512_mullo_epi32(q, _mm512_sub_epi32(total, f)));
	}
	_mm512_storeu_si512(st, x);
	*wpp = wp;
}
