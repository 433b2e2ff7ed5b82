/*
 * container_avx512.c -- AVX-512 (F/BW/VBMI/VBMI2) + BMI2 kernels of the
 * container, 16 values per step. They must match the scalar reference in
 * container.c bit for bit; tests/test_codec.c checks every (e, m).
 *
 * Encode: round the magnitudes in-vector (nearest-even, or stochastic with
 * sfp_hash32 computed in-vector), derive codes, compress the mantissas of the
 * nonzero lanes (vpcompressd), pair them into 2m-bit words and append those
 * to the bit writer with 8-byte stores; signs of the nonzero lanes are
 * gathered with pext. Blocks holding an exception take the scalar rule.
 * Decode: gather each lane's 4 bytes of the mantissa stream with vpermb,
 * shift and mask, expand them into the nonzero lanes (vpexpandd), place the
 * sign bits with pdep, assemble and store.
 */
#include <immintrin.h>

#include "codec/codec_internal.h"

/* Rounded magnitudes of the 16 lanes (docs/format.md rule 2). */
static inline __m512i round16(const qplan *q, __m512i a, uint64_t i)
{
	if (q->k == 0)
		return a;
	const __m512i keep = _mm512_set1_epi32((int)~((1u << q->k) - 1));
	if (q->stochastic) {
		uint32_t seed = q->seed + 0x85ebca6bu * (uint32_t)(i >> 32);
		__m512i idx = _mm512_add_epi32(
			_mm512_set1_epi32((int)(uint32_t)i),
			_mm512_setr_epi32(0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15));
		__m512i x = _mm512_add_epi32(_mm512_mullo_epi32(idx, _mm512_set1_epi32((int)0x9e3779b9u)),
					     _mm512_set1_epi32((int)seed));
		x = _mm512_xor_si512(x, _mm512_srli_epi32(x, 16));
		x = _mm512_mullo_epi32(x, _mm512_set1_epi32(0x7feb352d));
		x = _mm512_xor_si512(x, _mm512_srli_epi32(x, 15));
		x = _mm512_mullo_epi32(x, _mm512_set1_epi32((int)0x846ca68bu));
		x = _mm512_xor_si512(x, _mm512_srli_epi32(x, 16));
		x = _mm512_andnot_si512(keep, x);
		return _mm512_and_si512(_mm512_add_epi32(a, x), keep);
	}
	__m512i lsb = _mm512_and_si512(_mm512_srli_epi32(a, q->k), _mm512_set1_epi32(1));
	__m512i bias = _mm512_add_epi32(_mm512_set1_epi32((int)((1u << (q->k - 1)) - 1)), lsb);
	return _mm512_and_si512(_mm512_add_epi32(a, bias), keep);
}

/* Lanes holding exceptions. */
static inline __mmask16 exc16(const qplan *q, __m512i u)
{
	__m512i E = _mm512_and_si512(_mm512_srli_epi32(u, 23), _mm512_set1_epi32(0xff));
	__mmask16 m = _mm512_cmpeq_epi32_mask(E, _mm512_set1_epi32(255));
	if (q->lossless)
		m |= _mm512_mask_cmpeq_epi32_mask(_mm512_test_epi32_mask(u, u), E,
						  _mm512_setzero_si512());
	return m;
}

int sfp__max_exp_avx512(const qplan *q, const float *x, uint64_t n, unsigned *emax,
			uint64_t *bad)
{
	__m512i mx = _mm512_setzero_si512();
	const __m512i abs = _mm512_set1_epi32(0x7fffffff), e255 = _mm512_set1_epi32(255);
	uint64_t i = 0;
	unsigned tail_max = 0;
	for (; i + 16 <= n; i += 16) {
		__m512i u = _mm512_loadu_si512(x + i);
		__mmask16 ok = (__mmask16)~exc16(q, u);
		__m512i E = _mm512_srli_epi32(round16(q, _mm512_and_si512(u, abs), i), 23);
		__mmask16 ovf = _mm512_mask_cmpeq_epi32_mask(ok, E, e255);
		if (ovf) {
			if (!q->saturate) {
				*bad = i + (uint64_t)__builtin_ctz(ovf);
				return Q_OVERFLOW;
			}
			E = _mm512_mask_mov_epi32(E, ovf, _mm512_set1_epi32(254));
		}
		mx = _mm512_mask_max_epu32(mx, ok, mx, E);
	}
	if (max_exp_range(q, x, i, n, &tail_max, bad) != Q_OK)
		return Q_OVERFLOW;
	unsigned m = _mm512_reduce_max_epu32(mx);
	*emax = m > tail_max ? m : tail_max;
	return Q_OK;
}

/* Append the low n (<= 49) bits of v with one 8-byte store when there
 * is room; the byte-wise writer otherwise. */
static inline void put_fast(bitw *w, uint64_t v, unsigned n)
{
	if (w->end - w->p >= 8) {
		uint64_t acc = w->acc | v << w->nb;
		unsigned nb = w->nb + n;
		memcpy(w->p, &acc, 8);
		w->p += nb >> 3;
		w->acc = acc >> ((nb >> 3) * 8);
		w->nb = nb & 7;
	} else {
		while (n > 32) {
			bitw_put(w, (uint32_t)v, 32);
			v >>= 32;
			n -= 32;
		}
		bitw_put(w, (uint32_t)v, n);
	}
}

/* The bit writers are copied into locals for the loop, so their state stays
 * in registers instead of bouncing through memory on every append. */
static inline __attribute__((always_inline)) int
quant_pass(const qplan *q, const float *x, uint64_t n, uint8_t *codes, bitw *mw, bitw *sw,
	   qcounts *c, uint64_t *bad);

int sfp__quant_pass_avx512(const qplan *q, const float *x, uint64_t n, uint8_t *codes, bitw *mw,
			   bitw *sw, qcounts *c, uint64_t *bad)
{
	bitw lm = *mw, ls = *sw;
	qcounts lc = *c;
	int r = quant_pass(q, x, n, codes, &lm, &ls, &lc, bad);
	*mw = lm;
	*sw = ls;
	*c = lc;
	return r;
}

static inline __attribute__((always_inline)) int
quant_pass(const qplan *q, const float *x, uint64_t n, uint8_t *codes, bitw *mw, bitw *sw,
	   qcounts *c, uint64_t *bad)
{
	const __m512i abs = _mm512_set1_epi32(0x7fffffff);
	const __m512i lo = _mm512_set1_epi32((int)q->lo), hi = _mm512_set1_epi32((int)q->hi);
	const __m512i lo_m1 = _mm512_set1_epi32((int)q->lo - 1);
	const __m512i mmask = _mm512_set1_epi32((int)((1u << q->m) - 1));
	const __m512i maxc = _mm512_set1_epi32((int)q->max_code);
	const __m512i zero = _mm512_setzero_si512(), one = _mm512_set1_epi32(1);
	const __m512i lo32 = _mm512_set1_epi64(0xffffffff);
	const __m128i kk = _mm_cvtsi32_si128((int)q->k);
	const __m128i mm = _mm_cvtsi32_si128((int)q->m);
	const __m128i mm2 = _mm_cvtsi32_si128((int)(2 * q->m)), mm4 = _mm_cvtsi32_si128((int)(4 * q->m));
	const __m512i up2 = _mm512_setr_epi64(2, 3, 4, 5, 6, 7, 7, 7);
	const unsigned m = q->m;
	uint64_t i = 0;

	for (; i + 16 <= n; i += 16) {
		__m512i u = _mm512_loadu_si512(x + i);
		if (exc16(q, u)) {
			if (quant_range(q, x, i, i + 16, codes, mw, sw, c, bad) != Q_OK)
				return Q_OVERFLOW;
			continue;
		}
		__m512i a = round16(q, _mm512_and_si512(u, abs), i);
		__m512i E = _mm512_srli_epi32(a, 23);
		__mmask16 nzv = _mm512_test_epi32_mask(a, a);
		__mmask16 over = _mm512_mask_cmpgt_epu32_mask(nzv, E, hi);
		if (over && !q->saturate) {
			*bad = i + (uint64_t)__builtin_ctz(over);
			return Q_OVERFLOW;
		}
		__mmask16 under = _mm512_mask_cmplt_epu32_mask(nzv, E, lo);
		__mmask16 inwin = nzv & (__mmask16)~over & (__mmask16)~under;
		__m512i code = _mm512_maskz_sub_epi32(inwin, E, lo_m1);
		__m512i mant = _mm512_maskz_and_epi32(inwin, _mm512_srl_epi32(a, kk), mmask);
		code = _mm512_mask_mov_epi32(code, over, maxc);
		mant = _mm512_mask_mov_epi32(mant, over, mmask);
		if (q->under_min)
			code = _mm512_mask_mov_epi32(code, under, one);
		_mm_storeu_si128((__m128i *)(codes + i), _mm512_cvtepi32_epi8(code));
		__mmask16 nz = _mm512_cmpneq_epi32_mask(code, zero);
		if (!nz)
			continue;
		unsigned cnt = (unsigned)__builtin_popcount(nz);
		if (m) {
			__m512i cm = _mm512_maskz_compress_epi32(nz, mant);
			/* Pairs: lane 2j | lane 2j+1 << m, as 8 qwords of 2m bits;
			 * then quads (4m bits) and octets (8m bits) while they fit
			 * the 49 bits put_fast takes, so fewer scalar appends. */
			__m512i pr = _mm512_or_si512(_mm512_and_si512(cm, lo32),
						     _mm512_sll_epi64(_mm512_srli_epi64(cm, 32), mm));
			unsigned per = 2, step = 1;
			if (4 * m <= 49) {
				pr = _mm512_or_si512(pr, _mm512_sll_epi64(_mm512_bsrli_epi128(pr, 8), mm2));
				per = 4;
				step = 2;
				if (8 * m <= 49) {
					pr = _mm512_or_si512(pr, _mm512_sll_epi64(_mm512_permutexvar_epi64(up2, pr), mm4));
					per = 8;
					step = 4;
				}
			}
			uint64_t qw[8];
			_mm512_storeu_si512(qw, pr);
			for (unsigned j = 0, left = cnt; left; j += step) {
				unsigned take = left < per ? left : per;
				put_fast(mw, qw[j], take * m);
				left -= take;
			}
		}
		unsigned sg = (unsigned)_mm512_movepi32_mask(u);
		unsigned sbits = _pext_u32(sg, nz);
		put_fast(sw, sbits, cnt);
		c->nnz += cnt;
		c->nneg += (unsigned)__builtin_popcount(sbits);
	}
	if (i < n)
		return quant_range(q, x, i, n, codes, mw, sw, c, bad);
	return Q_OK;
}

void sfp__assemble_avx512(float *dst, const uint8_t *codes, uint64_t n, unsigned lo, unsigned m,
			  const uint8_t *mant, size_t mant_len, const uint8_t *sign,
			  size_t sign_len, int sign_mode)
{
	const unsigned k = 23 - m;
	const __m512i iota_m = _mm512_mullo_epi32(
		_mm512_setr_epi32(0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15),
		_mm512_set1_epi32((int)m));
	const __m512i bytes4 = _mm512_set1_epi32(0x03020100), rep = _mm512_set1_epi32(0x01010101);
	const __m512i mmask = _mm512_set1_epi32((int)((1u << m) - 1)), seven = _mm512_set1_epi32(7);
	const __m512i lo_m1 = _mm512_set1_epi32((int)lo - 1), zero = _mm512_setzero_si512();
	const __m512i signbit = _mm512_set1_epi32((int)0x80000000u);
	const __m128i kk = _mm_cvtsi32_si128((int)k);
	uint64_t mpos = 0, spos = 0, i = 0;

	for (; i + 16 <= n; i += 16) {
		__m512i code = _mm512_cvtepu8_epi32(_mm_loadu_si128((const __m128i *)(codes + i)));
		__mmask16 nz = _mm512_cmpneq_epi32_mask(code, zero);
		unsigned cnt = (unsigned)__builtin_popcount(nz);
		size_t mb = (size_t)(mpos >> 3);
		if (nz && (mb + 64 > mant_len && m)) {
			break; /* near the end of the mantissa stream: scalar tail */
		}
		if (sign_mode == 0 && nz && (spos >> 3) + 4 > sign_len)
			break;
		__m512i mv = zero;
		if (m && nz) {
			__m512i data = _mm512_loadu_si512(mant + mb);
			__m512i offs = _mm512_add_epi32(iota_m, _mm512_set1_epi32((int)(mpos & 7)));
			__m512i idx = _mm512_add_epi32(_mm512_mullo_epi32(_mm512_srli_epi32(offs, 3), rep),
						       bytes4);
			__m512i v = _mm512_permutexvar_epi8(idx, data);
			v = _mm512_and_si512(_mm512_srlv_epi32(v, _mm512_and_si512(offs, seven)), mmask);
			mv = _mm512_maskz_expand_epi32(nz, v);
		}
		__m512i r = _mm512_or_si512(_mm512_slli_epi32(_mm512_add_epi32(code, lo_m1), 23),
					    _mm512_sll_epi32(mv, kk));
		__mmask16 neg = 0;
		if (sign_mode == 2) {
			neg = nz;
		} else if (sign_mode == 0 && nz) {
			uint32_t sw;
			memcpy(&sw, sign + (spos >> 3), 4);
			neg = (__mmask16)_pdep_u32((sw >> (spos & 7)) & 0xffff, nz);
		}
		r = _mm512_mask_or_epi32(r, neg, r, signbit);
		_mm512_storeu_si512(dst + i, _mm512_maskz_mov_epi32(nz, r));
		mpos += (uint64_t)cnt * m;
		spos += sign_mode == 0 ? cnt : 0;
	}
	assemble_range(dst, codes, i, n, lo, m, mant, mant_len, sign, sign_len, sign_mode, &mpos,
		       &spos);
}
