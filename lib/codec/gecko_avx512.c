/*
 * gecko_avx512.c -- AVX-512 kernels of Gecko's rANS: the 32 states of the
 * segment layout (docs/gecko.md) in two vectors, one step (one code per
 * lane) per iteration. Same words and states as sfp__ans_enc_ref /
 * sfp__ans_dec_ref in gecko.c; tests/test_codec_gecko.c compares them.
 *
 * Decode: table entries and symbols by gathers; the renormalizing lanes
 * take the next words of the stream in lane order (a masked load of just
 * those words, then vpexpandw). Encode: frequency and start by gather; the
 * renormalizing lanes' low words are compressed (vpcompressw) and stored
 * with a masked store below the previous step's; the division x / f is floor(x * (1/f) + 2^-20)
 * in double precision, exact here (below).
 */
#include <immintrin.h>

#include "codec/codec_internal.h"

/* One half (16 lanes) of a decoder step up to the renormalization: the
 * state before it (returned), the symbols, the lanes needing a word. */
static inline __attribute__((always_inline)) __m512i
dec_half(__m512i s, __m512i ctx, __mmask16 act, const uint32_t *pk, const uint8_t *lut,
	 __m512i *y, __mmask16 *r)
{
	const __m512i slotm = _mm512_set1_epi32((int)(ANS_TOTAL - 1));
	const __m512i zero = _mm512_setzero_si512();
	__m512i idx = _mm512_add_epi32(_mm512_and_si512(s, slotm), ctx);
	__m512i p = _mm512_mask_i32gather_epi32(zero, act, idx, pk, 4);
	*y = _mm512_and_si512(_mm512_mask_i32gather_epi32(zero, act, idx, lut, 1),
			      _mm512_set1_epi32(0xff));
	__m512i v = _mm512_add_epi32(_mm512_mullo_epi32(_mm512_and_si512(p, _mm512_set1_epi32(0x7fff)),
							_mm512_srli_epi32(s, ANS_SCALE)),
				     _mm512_srli_epi32(p, 15));
	*r = _mm512_mask_cmplt_epu32_mask(act, v, _mm512_set1_epi32((int)ANS_L));
	return v;
}

/* The renormalization of one half: its cnt words (a masked load of just
 * those, expanded in-register into the lanes that take them). */
static inline __attribute__((always_inline)) __m512i
dec_words(__m512i s, __m512i v, __mmask16 act, __mmask16 r, const uint8_t *wp, unsigned cnt)
{
	__m256i wl = _mm256_maskz_loadu_epi16((__mmask16)((1u << cnt) - 1), wp);
	__m512i w = _mm512_cvtepu16_epi32(_mm256_maskz_expand_epi16(r, wl));
	s = _mm512_mask_mov_epi32(s, act, v);
	return _mm512_mask_or_epi32(s, r, _mm512_slli_epi32(v, 16), w);
}

static inline __attribute__((always_inline)) __m512i next_ctx(__m512i ctx, __mmask16 act,
							      __m512i y)
{
	return _mm512_mask_mov_epi32(ctx, act,
				     _mm512_maskz_mov_epi32(_mm512_test_epi32_mask(y, y),
							    _mm512_set1_epi32((int)ANS_TOTAL)));
}

/* Two vectors of 16 states (lanes 0..15, 16..31): independent chains, so
 * one's gathers overlap the other's. */
int sfp__ans_dec_avx512(uint8_t *T, const ans_lanes *ly, int nctx, const uint32_t *pk,
			const uint8_t *lut, uint32_t *st, const uint8_t **wpp, const uint8_t *wend)
{
	const uint8_t *wp = *wpp;
	__m512i sa = _mm512_loadu_si512(st), sb = _mm512_loadu_si512(st + 16);
	__m512i ca = _mm512_setzero_si512(), cb = ca;
	for (uint64_t t = 0; t < ly->steps; t++) {
		uint32_t act = sfp__ans_active(ly, t);
		__mmask16 aa = (__mmask16)act, ab = (__mmask16)(act >> 16), ra, rb;
		__m512i ya, yb;
		__m512i va = dec_half(sa, ca, aa, pk, lut, &ya, &ra);
		__m512i vb = dec_half(sb, cb, ab, pk, lut, &yb, &rb);
		unsigned na = (unsigned)__builtin_popcount(ra), nb = (unsigned)__builtin_popcount(rb);
		if ((size_t)(wend - wp) < 2 * (size_t)(na + nb))
			return SFP_ECORRUPT;
		sa = dec_words(sa, va, aa, ra, wp, na);
		sb = dec_words(sb, vb, ab, rb, wp + 2 * na, nb);
		wp += 2 * (na + nb);
		if (nctx == 2) {
			ca = next_ctx(ca, aa, ya);
			cb = next_ctx(cb, ab, yb);
		}
		_mm_storeu_si128((__m128i *)(T + t * ANS_LANES), _mm512_cvtepi32_epi8(ya));
		_mm_storeu_si128((__m128i *)(T + t * ANS_LANES + 16), _mm512_cvtepi32_epi8(yb));
	}
	_mm512_storeu_si512(st, sa);
	_mm512_storeu_si512(st + 16, sb);
	*wpp = wp;
	return SFP_OK;
}

/* One half of an encoder step: the table entry of each lane's (context,
 * symbol), the lanes that shed a word, the state after the symbol. */
typedef struct enc_half {
	__m512i f, cum, idx;
	__mmask16 r;
} enc_half;

static inline __attribute__((always_inline)) enc_half
enc_lookup(__m512i s, const uint8_t *row, const uint8_t *prev_row, __mmask16 act,
	   const uint32_t *fc)
{
	enc_half h;
	h.idx = _mm512_cvtepu8_epi32(_mm_loadu_si128((const __m128i *)row));
	if (prev_row) {
		__m128i prev = _mm_loadu_si128((const __m128i *)prev_row);
		h.idx = _mm512_mask_add_epi32(h.idx, _mm_test_epi8_mask(prev, prev), h.idx,
					      _mm512_set1_epi32(256));
	}
	__m512i fcv = _mm512_mask_i32gather_epi32(_mm512_setzero_si512(), act, h.idx, fc, 4);
	h.f = _mm512_and_si512(fcv, _mm512_set1_epi32(0x7fff));
	h.cum = _mm512_srli_epi32(fcv, 15);
	h.r = _mm512_mask_cmpge_epu32_mask(act, _mm512_srli_epi32(s, 32 - ANS_SCALE), h.f);
	return h;
}

/* Store the half's shed words (compressed in-register, then a masked store
 * of cnt words: with the memory form of vpcompressw the clang fuzz build,
 * -O1 with sanitizers, wrote words out of place; not investigated). */
static inline __attribute__((always_inline)) void enc_words(uint16_t *wp, __m512i s, __mmask16 r,
							    unsigned cnt)
{
	_mm256_mask_storeu_epi16(wp, (__mmask16)((1u << cnt) - 1),
				 _mm256_maskz_compress_epi16(r, _mm512_cvtepi32_epi16(s)));
}

static inline __attribute__((always_inline)) __m512i enc_state(__m512i s, const enc_half *h,
							       __mmask16 act, const double *inv)
{
	const __m512d eps = _mm512_set1_pd(0x1p-20);
	__m512i x = _mm512_mask_srli_epi32(s, h->r, s, 16);
	__m512d i0 = _mm512_mask_i32gather_pd(_mm512_setzero_pd(), (__mmask8)act,
					      _mm512_castsi512_si256(h->idx), inv, 8);
	__m512d i1 = _mm512_mask_i32gather_pd(_mm512_setzero_pd(), (__mmask8)(act >> 8),
					      _mm512_extracti64x4_epi64(h->idx, 1), inv, 8);
	__m256i q0 = _mm512_cvttpd_epu32(
		_mm512_fmadd_pd(_mm512_cvtepu32_pd(_mm512_castsi512_si256(x)), i0, eps));
	__m256i q1 = _mm512_cvttpd_epu32(
		_mm512_fmadd_pd(_mm512_cvtepu32_pd(_mm512_extracti64x4_epi64(x, 1)), i1, eps));
	__m512i q = _mm512_inserti64x4(_mm512_castsi256_si512(q0), q1, 1);
	__m512i nx = _mm512_add_epi32(
		_mm512_add_epi32(x, _mm512_mullo_epi32(q, _mm512_sub_epi32(
								  _mm512_set1_epi32((int)ANS_TOTAL), h->f))),
		h->cum);
	return _mm512_mask_mov_epi32(s, act, nx);
}

/*
 * Why floor(x * inv + 2^-20) is x / f: after renormalization x < f * 2^18,
 * so q = x / f < 2^18. inv = 1/f rounded has relative error <= 2^-53 and
 * the fused multiply-add rounds once more, so the computed value is within
 * 2^18 * 2^-52 = 2^-34 of x/f + 2^-20. The fraction of x/f is 0 or in
 * [1/f, 1 - 1/f] with f <= 2^14, so adding 2^-20 +- 2^-34 never crosses an
 * integer the wrong way.
 */
void sfp__ans_enc_avx512(const uint8_t *T, const ans_lanes *ly, int nctx, const uint32_t *fc,
			 const double *inv, uint32_t *st, uint16_t **wpp)
{
	uint16_t *wp = *wpp;
	__m512i sa = _mm512_loadu_si512(st), sb = _mm512_loadu_si512(st + 16);
	for (uint64_t t = ly->steps; t-- > 0;) {
		uint32_t act = sfp__ans_active(ly, t);
		__mmask16 aa = (__mmask16)act, ab = (__mmask16)(act >> 16);
		const uint8_t *row = T + t * ANS_LANES;
		const uint8_t *prev = nctx == 2 && t > 0 ? row - ANS_LANES : NULL;
		enc_half ha = enc_lookup(sa, row, prev, aa, fc);
		enc_half hb = enc_lookup(sb, row + 16, prev ? prev + 16 : NULL, ab, fc);
		/* Lanes 16..31's words above lanes 0..15's: read forward, in lane order. */
		unsigned na = (unsigned)__builtin_popcount(ha.r), nb = (unsigned)__builtin_popcount(hb.r);
		wp -= nb;
		enc_words(wp, sb, hb.r, nb);
		wp -= na;
		enc_words(wp, sa, ha.r, na);
		sa = enc_state(sa, &ha, aa, inv);
		sb = enc_state(sb, &hb, ab, inv);
	}
	_mm512_storeu_si512(st, sa);
	_mm512_storeu_si512(st + 16, sb);
	*wpp = wp;
}

/* OR of all codes (the encoder's range check), 64 per step. */
unsigned sfp__gecko_or_avx512(const uint8_t *c, uint64_t n)
{
	__m512i acc = _mm512_setzero_si512();
	uint64_t i = 0;
	for (; i + 64 <= n; i += 64)
		acc = _mm512_or_si512(acc, _mm512_loadu_si512(c + i));
	if (i < n)
		acc = _mm512_or_si512(acc, _mm512_maskz_loadu_epi8(_bzhi_u64(~0ull, (unsigned)(n - i)),
								 c + i));
	uint64_t v = (uint64_t)_mm512_reduce_or_epi64(acc);
	v |= v >> 32;
	v |= v >> 16;
	v |= v >> 8;
	return (unsigned)(v & 0xff);
}

/*
 * DELTA's size with groups of 8 and the previous code as reference, over
 * the first n & ~63 codes (the caller adds the rest): per group 4 header
 * bits and 8 deltas of the bit width of the largest zigzag delta. The width
 * of the largest equals the width of the OR of the zigzags, so each group
 * is OR-reduced inside its 128-bit lane (16-bit lanes: zigzags reach 511).
 */
uint64_t sfp__delta_bits_prev8_avx512(const uint8_t *c, uint64_t n)
{
	const __m512i down1 = _mm512_set_epi8(
		62, 61, 60, 59, 58, 57, 56, 55, 54, 53, 52, 51, 50, 49, 48, 47, 46, 45, 44, 43, 42,
		41, 40, 39, 38, 37, 36, 35, 34, 33, 32, 31, 30, 29, 28, 27, 26, 25, 24, 23, 22, 21,
		20, 19, 18, 17, 16, 15, 14, 13, 12, 11, 10, 9, 8, 7, 6, 5, 4, 3, 2, 1, 0, 63);
	uint64_t bits = 0;
	unsigned carry = 0;
	for (uint64_t i = 0; i + 64 <= n; i += 64) {
		__m512i cur = _mm512_loadu_si512(c + i);
		__m512i prev = _mm512_mask_mov_epi8(_mm512_permutexvar_epi8(down1, cur), 1,
						    _mm512_set1_epi8((char)carry));
		carry = c[i + 63];
		uint16_t w[64];
		for (int h = 0; h < 2; h++) {
			__m256i c8 = h ? _mm512_extracti64x4_epi64(cur, 1) : _mm512_castsi512_si256(cur);
			__m256i p8 = h ? _mm512_extracti64x4_epi64(prev, 1) : _mm512_castsi512_si256(prev);
			__m512i d = _mm512_sub_epi16(_mm512_cvtepu8_epi16(c8), _mm512_cvtepu8_epi16(p8));
			__m512i z = _mm512_xor_si512(_mm512_slli_epi16(d, 1), _mm512_srai_epi16(d, 15));
			z = _mm512_or_si512(z, _mm512_bsrli_epi128(z, 8));
			z = _mm512_or_si512(z, _mm512_bsrli_epi128(z, 4));
			z = _mm512_or_si512(z, _mm512_bsrli_epi128(z, 2));
			_mm512_storeu_si512(w + 32 * h, z); /* word 0 of each 128-bit lane */
		}
		for (int g = 0; g < 8; g++) {
			unsigned v = w[8 * g];
			bits += 4 + 8 * (v ? 32u - (unsigned)__builtin_clz(v) : 0);
		}
	}
	return bits;
}

/*
 * Segment order <-> step order in blocks of 16 steps of 16 lanes (256
 * codes): a 16 x 16 byte transpose in four vectors by twelve two-source
 * byte permutes. Rows (one lane's 16 codes) are masked loads and stores cut at
 * the lane's length, so nothing past c[0..n) is touched; the step-order
 * buffer is read and written in whole blocks (ceil(steps / 16) * 16 steps).
 */
typedef struct tr16 {
	__m512i a[4], c;
} tr16;

/* Index vectors of the transpose: out row c = column c, so out[k] byte
 * j*16 + r = in row r, byte 4k + j, which sits in z[r / 4] at byte
 * (r % 4) * 16 + 4k + j. First rows 0..7 and 8..15 separately (a[k]), then
 * the two halves merged (c). */
static void tr16_init(tr16 *t)
{
	uint8_t ia[64], ic[64];
	for (unsigned k = 0; k < 4; k++) {
		for (unsigned p = 0; p < 64; p++) {
			unsigned j = p / 16, r = p % 16 % 8;
			ia[p] = (uint8_t)((r / 4) * 64 + (r % 4) * 16 + 4 * k + j);
		}
		t->a[k] = _mm512_loadu_si512(ia);
	}
	for (unsigned p = 0; p < 64; p++)
		ic[p] = (uint8_t)(p % 16 < 8 ? p : 64 + p - 8);
	t->c = _mm512_loadu_si512(ic);
}

static inline void transpose16(const tr16 *t, __m512i z[4])
{
	__m512i out[4];
	for (unsigned k = 0; k < 4; k++) {
		__m512i lo = _mm512_permutex2var_epi8(z[0], t->a[k], z[1]);
		__m512i hi = _mm512_permutex2var_epi8(z[2], t->a[k], z[3]);
		out[k] = _mm512_permutex2var_epi8(lo, t->c, hi);
	}
	for (unsigned k = 0; k < 4; k++)
		z[k] = out[k];
}

static inline __mmask16 row_mask(const ans_lanes *ly, unsigned l, uint64_t t0)
{
	uint64_t len = l < ly->full ? ly->steps : l == ly->full ? ly->rem : 0;
	if (len <= t0)
		return 0;
	return len - t0 >= 16 ? 0xffff : (__mmask16)((1u << (len - t0)) - 1);
}

static inline __m128i row_load(const uint8_t *c, const ans_lanes *ly, unsigned l, uint64_t t0)
{
	return _mm_maskz_loadu_epi8(row_mask(ly, l, t0), c + (uint64_t)l * ly->steps + t0);
}

static inline void row_store(uint8_t *c, const ans_lanes *ly, unsigned l, uint64_t t0,
			     __m128i row)
{
	_mm_mask_storeu_epi8(c + (uint64_t)l * ly->steps + t0, row_mask(ly, l, t0), row);
}

/* Each block: lanes 16h .. 16h+15 by steps t0 .. t0+15, i.e. 16-byte pieces
 * of 16 rows of T (ANS_LANES bytes per step). */
void sfp__to_steps_avx512(uint8_t *T, const uint8_t *c, const ans_lanes *ly)
{
	tr16 tr;
	tr16_init(&tr);
	for (uint64_t t0 = 0; t0 < ly->steps; t0 += 16)
		for (unsigned h = 0; h < ANS_LANES / 16; h++) {
			__m512i z[4];
			for (unsigned q = 0; q < 4; q++) {
				unsigned l = 16 * h + 4 * q;
				__m512i v = _mm512_castsi128_si512(row_load(c, ly, l, t0));
				v = _mm512_inserti32x4(v, row_load(c, ly, l + 1, t0), 1);
				v = _mm512_inserti32x4(v, row_load(c, ly, l + 2, t0), 2);
				z[q] = _mm512_inserti32x4(v, row_load(c, ly, l + 3, t0), 3);
			}
			transpose16(&tr, z);
			uint8_t *o = T + t0 * ANS_LANES + 16 * h;
			for (unsigned q = 0; q < 4; q++) {
				_mm_storeu_si128((__m128i *)(o + (4 * q) * ANS_LANES),
						 _mm512_castsi512_si128(z[q]));
				_mm_storeu_si128((__m128i *)(o + (4 * q + 1) * ANS_LANES),
						 _mm512_extracti32x4_epi32(z[q], 1));
				_mm_storeu_si128((__m128i *)(o + (4 * q + 2) * ANS_LANES),
						 _mm512_extracti32x4_epi32(z[q], 2));
				_mm_storeu_si128((__m128i *)(o + (4 * q + 3) * ANS_LANES),
						 _mm512_extracti32x4_epi32(z[q], 3));
			}
		}
}

void sfp__from_steps_avx512(uint8_t *c, const uint8_t *T, const ans_lanes *ly)
{
	tr16 tr;
	tr16_init(&tr);
	for (uint64_t t0 = 0; t0 < ly->steps; t0 += 16)
		for (unsigned h = 0; h < ANS_LANES / 16; h++) {
			const uint8_t *in = T + t0 * ANS_LANES + 16 * h;
			__m512i z[4];
			for (unsigned q = 0; q < 4; q++) {
				const uint8_t *r = in + 4 * q * ANS_LANES;
				__m512i v = _mm512_castsi128_si512(_mm_loadu_si128((const __m128i *)r));
				v = _mm512_inserti32x4(
					v, _mm_loadu_si128((const __m128i *)(r + ANS_LANES)), 1);
				v = _mm512_inserti32x4(
					v, _mm_loadu_si128((const __m128i *)(r + 2 * ANS_LANES)), 2);
				z[q] = _mm512_inserti32x4(
					v, _mm_loadu_si128((const __m128i *)(r + 3 * ANS_LANES)), 3);
			}
			transpose16(&tr, z);
			for (unsigned q = 0; q < 4; q++) {
				unsigned l = 16 * h + 4 * q;
				row_store(c, ly, l, t0, _mm512_castsi512_si128(z[q]));
				row_store(c, ly, l + 1, t0, _mm512_extracti32x4_epi32(z[q], 1));
				row_store(c, ly, l + 2, t0, _mm512_extracti32x4_epi32(z[q], 2));
				row_store(c, ly, l + 3, t0, _mm512_extracti32x4_epi32(z[q], 3));
			}
		}
}

/*
 * The (previous code nonzero, code) histogram for codes < 32, 64 codes per
 * step: each code becomes a key code | (previous nonzero) << 5 and every
 * possible key (2 * (max + 1) of them, max = the OR of the codes, < 32) is
 * counted with a byte compare and a popcount. h[x][s] is set for s < 32.
 * The previous code of element 0 counts as zero.
 */
void sfp__gecko_hist32_avx512(const uint8_t *c, uint64_t n, unsigned any, uint64_t (*h)[256])
{
	const __m512i down1 = _mm512_set_epi8(
		62, 61, 60, 59, 58, 57, 56, 55, 54, 53, 52, 51, 50, 49, 48, 47, 46, 45, 44, 43, 42,
		41, 40, 39, 38, 37, 36, 35, 34, 33, 32, 31, 30, 29, 28, 27, 26, 25, 24, 23, 22, 21,
		20, 19, 18, 17, 16, 15, 14, 13, 12, 11, 10, 9, 8, 7, 6, 5, 4, 3, 2, 1, 0, 63);
	const unsigned top = any | (any >> 1) | (any >> 2) | (any >> 3) | (any >> 4); /* 2^k - 1 >= max */
	uint64_t cnt[64] = {0};
	unsigned carry = 0;
	for (uint64_t i = 0; i < n; i += 64) {
		__mmask64 lm = n - i >= 64 ? ~(__mmask64)0 : _bzhi_u64(~0ull, (unsigned)(n - i));
		__m512i cur = _mm512_maskz_loadu_epi8(lm, c + i);
		__m512i prev = _mm512_mask_mov_epi8(_mm512_permutexvar_epi8(down1, cur), 1,
						    _mm512_set1_epi8((char)carry));
		carry = n - i >= 64 ? c[i + 63] : 0;
		__mmask64 pnz = _mm512_test_epi8_mask(prev, prev);
		__m512i key = _mm512_mask_add_epi8(cur, pnz, cur, _mm512_set1_epi8(32));
		for (unsigned x = 0; x < 2; x++)
			for (unsigned s = 0; s <= top; s++) {
				__mmask64 eq = _mm512_mask_cmpeq_epi8_mask(
					lm, key, _mm512_set1_epi8((char)(x << 5 | s)));
				cnt[x << 5 | s] += (uint64_t)__builtin_popcountll(eq);
			}
	}
	for (unsigned x = 0; x < 2; x++)
		for (unsigned s = 0; s < 32; s++)
			h[x][s] = cnt[x << 5 | s];
}
