/*
 * container_avx512.c -- AVX-512 (F/BW/VBMI/VBMI2) + BMI2 kernels of the
 * container, 16 values per step. They must match the scalar reference in
 * container.c bit for bit; tests/test_codec.c checks every (e, m).
 *
 * Encode: round the magnitudes in-vector (nearest-even, or stochastic with
 * sfp_hash32 computed in-vector), derive codes, compress the mantissas of the
 * nonzero lanes (vpcompressd), fold them into one bit string in-vector and
 * store it with one 64-byte store (see pack16); signs of the nonzero lanes
 * are gathered with pext. Blocks holding an exception take the scalar rule.
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
	/* Per-lane shift counts: the uniform-count (xmm) forms cost a shuffle uop. */
	__m512i lsb = _mm512_and_si512(_mm512_srlv_epi32(a, _mm512_set1_epi32((int)q->k)),
				       _mm512_set1_epi32(1));
	__m512i bias = _mm512_add_epi32(_mm512_set1_epi32((int)((1u << (q->k - 1)) - 1)), lsb);
	return _mm512_and_si512(_mm512_add_epi32(a, bias), keep);
}

/* Lanes holding exceptions. */
static inline __mmask16 exc16(const qplan *q, __m512i u)
{
	/* E = 255 <=> |u| >= 0x7f800000; E = 0 <=> |u| < 0x00800000. */
	__m512i a = _mm512_and_si512(u, _mm512_set1_epi32(0x7fffffff));
	__mmask16 m = _mm512_cmpge_epu32_mask(a, _mm512_set1_epi32(0x7f800000));
	if (q->lossless)
		m |= _mm512_mask_cmplt_epu32_mask(_mm512_test_epi32_mask(u, u), a,
						  _mm512_set1_epi32(0x00800000));
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

/*
 * Mantissa packing, one block of 16 values per step without scalar bit
 * loops. The nonzero lanes' m-bit fields are compressed to the front, then
 * folded in-vector: pairs inside each qword (2m bits), then pairs of those
 * while the result still fits a qword. Each group is then placed at its bit
 * offset in the output block, which starts at the writer's bit phase
 * (0..7), with per-lane shifts and at most three two-source qword permutes.
 * The plan for that depends only on (m, phase), so all eight are built once
 * per call. The pending partial byte is ORed in and 64 bytes are stored at
 * the writer's byte position; bits past the block are zero, so the next
 * pending byte is just the byte of this block at the new position.
 */
typedef struct packplan {
	__m512i shl, shr;     /* per source lane: left shift into its qword, right shift of the spill
			       * (64, giving 0, for lanes that are not sources) */
	__m512i idx[3];       /* per pass: destination qword <- lane of lo (0..7) or hi (8..15) */
	__mmask8 mask[3];     /* per pass: destinations with a contributor */
} packplan;

typedef struct packplans {
	unsigned levels;      /* in-qword folds: 1 (pairs) .. 4 (all 16 in one qword) */
	unsigned passes;      /* permutes needed by the worst phase, 1..3 */
	packplan ph[8];
} packplans;

static void packplans_init(packplans *pp, unsigned m)
{
	memset(pp, 0, sizeof *pp);
	pp->levels = 1;
	while (pp->levels < 4 && (2u * m << pp->levels) <= 64)
		pp->levels++;
	unsigned groups = 8u >> (pp->levels - 1), width = 16 * m / groups, stride = 8 / groups;
	for (unsigned s = 0; s < 8; s++) {
		uint64_t shl[8], shr[8], idx[3][8] = {{0}};
		unsigned cnt[8] = {0};
		packplan *pl = &pp->ph[s];
		for (unsigned l = 0; l < 8; l++)
			shl[l] = shr[l] = 64;
		for (unsigned j = 0; j < groups; j++) {
			unsigned lane = j * stride, off = s + j * width, d = off >> 6, r = off & 63;
			shl[lane] = r;
			shr[lane] = 64 - r;
			idx[cnt[d]][d] = lane;
			pl->mask[cnt[d]++] |= (__mmask8)(1u << d);
			if (r + width > 64) {
				idx[cnt[d + 1]][d + 1] = 8 + lane;
				pl->mask[cnt[d + 1]++] |= (__mmask8)(1u << (d + 1));
			}
		}
		for (unsigned d = 0; d < 8; d++)
			pp->passes = cnt[d] > pp->passes ? cnt[d] : pp->passes;
		pl->shl = _mm512_loadu_si512(shl);
		pl->shr = _mm512_loadu_si512(shr);
		for (unsigned p = 0; p < 3; p++)
			pl->idx[p] = _mm512_loadu_si512(idx[p]);
	}
}

/* The 16 m-bit fields of cm (zero past the nonzero count) as one bit string
 * starting at bit `phase` of the result. */
static inline __m512i pack16(const packplans *pp, unsigned levels, unsigned passes, __m512i cm,
			     unsigned m, unsigned phase)
{
	const __m512i lo32 = _mm512_set1_epi64(0xffffffff);
	const packplan *pl = &pp->ph[phase];
	__m512i v = _mm512_or_si512(_mm512_and_si512(cm, lo32),
				    _mm512_sllv_epi64(_mm512_srli_epi64(cm, 32),
						     _mm512_set1_epi64((long long)m)));
	if (levels >= 2)
		v = _mm512_or_si512(v, _mm512_sllv_epi64(_mm512_bsrli_epi128(v, 8),
							_mm512_set1_epi64((long long)(2 * m))));
	if (levels >= 3)
		v = _mm512_or_si512(v, _mm512_sllv_epi64(_mm512_permutexvar_epi64(
								_mm512_setr_epi64(2, 3, 4, 5, 6, 7, 7, 7), v),
							_mm512_set1_epi64((long long)(4 * m))));
	if (levels >= 4)
		v = _mm512_or_si512(v, _mm512_sllv_epi64(_mm512_permutexvar_epi64(
								_mm512_set1_epi64(4), v),
							_mm512_set1_epi64((long long)(8 * m))));
	__m512i lo = _mm512_sllv_epi64(v, pl->shl), hi = _mm512_srlv_epi64(v, pl->shr);
	__m512i r = _mm512_maskz_permutex2var_epi64(pl->mask[0], lo, pl->idx[0], hi);
	if (passes >= 2)
		r = _mm512_or_si512(r, _mm512_maskz_permutex2var_epi64(pl->mask[1], lo, pl->idx[1], hi));
	if (passes >= 3)
		r = _mm512_or_si512(r, _mm512_maskz_permutex2var_epi64(pl->mask[2], lo, pl->idx[2], hi));
	return r;
}

/* Quantize pass, AVX-512. Blocks go through the vector writer while 64
 * bytes of room remain at the mantissa position (and 8 at the sign
 * position); exception blocks and the last blocks use the scalar rule on
 * the bit writers. All writer state lives in locals (the byte stores would
 * otherwise force it through memory on every block). */
static inline __attribute__((always_inline)) int
quant_loop(const qplan *q, const float *x, uint64_t n, uint8_t *codes, bitw *mw, bitw *sw,
	   qcounts *cnts, uint64_t *bad, const packplans *pp, const unsigned levels)
{
	const qplan ql = *q;
	const __m512i abs = _mm512_set1_epi32(0x7fffffff);
	const __m512i lo = _mm512_set1_epi32((int)ql.lo), hi = _mm512_set1_epi32((int)ql.hi);
	const __m512i lo_m1 = _mm512_set1_epi32((int)ql.lo - 1);
	const __m512i mmask = _mm512_set1_epi32((int)((1u << ql.m) - 1));
	const __m512i maxc = _mm512_set1_epi32((int)ql.max_code);
	const __m512i one = _mm512_set1_epi32(1);
	const __m512i kk = _mm512_set1_epi32((int)ql.k);
	const unsigned m = ql.m;
	const int saturate = ql.saturate, under_min = ql.under_min;
	const unsigned passes = m ? pp->passes : 0;
	uint8_t *const mend = mw->end, *const send = sw->end;
	uint8_t *mp = mw->p;            /* mantissa bytes before mp are final */
	uint64_t pos = mw->nb;          /* bit position relative to mp */
	__m512i pend = _mm512_zextsi128_si512(_mm_cvtsi32_si128((int)(mw->acc & 0xff)));
	uint8_t *sp = sw->p;            /* the sign writer: 8-byte stores */
	uint64_t sacc = sw->acc;
	unsigned snb = sw->nb;
	uint64_t nnz = cnts->nnz, nneg = cnts->nneg, nexc = cnts->nexc;
	int movf = mw->overflow, sovf = sw->overflow;
	uint64_t i = 0;
	int r = Q_OK;
	bitw lm, ls;
	qcounts c;

	for (; i + 16 <= n; i += 16) {
		if (mend - (mp + (pos >> 3)) < 64 || send - sp < 8)
			break;
		__m512i u = _mm512_loadu_si512(x + i);
		if (exc16(&ql, u)) {
			lm = (bitw){mp + (pos >> 3), mend,
				    (uint64_t)(_mm_cvtsi128_si32(_mm512_castsi512_si128(pend)) & 0xff),
				    (unsigned)(pos & 7), movf};
			ls = (bitw){sp, send, sacc, snb, sovf};
			c = (qcounts){nnz, nneg, nexc};
			r = quant_range(q, x, i, i + 16, codes, &lm, &ls, &c, bad);
			if (r != Q_OK)
				goto out;
			mp = lm.p;
			pos = lm.nb;
			pend = _mm512_zextsi128_si512(_mm_cvtsi32_si128((int)(lm.acc & 0xff)));
			movf = lm.overflow;
			sp = ls.p;
			sacc = ls.acc;
			snb = ls.nb;
			sovf = ls.overflow;
			nnz = c.nnz;
			nneg = c.nneg;
			nexc = c.nexc;
			continue;
		}
		__m512i a = round16(&ql, _mm512_and_si512(u, abs), i);
		__m512i E = _mm512_srli_epi32(a, 23);
		__mmask16 nzv = _mm512_test_epi32_mask(a, a);
		__mmask16 over = _mm512_mask_cmpgt_epu32_mask(nzv, E, hi);
		if (over && !saturate) {
			*bad = i + (uint64_t)__builtin_ctz(over);
			return Q_OVERFLOW;
		}
		__mmask16 under = _mm512_mask_cmplt_epu32_mask(nzv, E, lo);
		__mmask16 inwin = nzv & (__mmask16)~over & (__mmask16)~under;
		__m512i code = _mm512_maskz_sub_epi32(inwin, E, lo_m1);
		code = _mm512_mask_mov_epi32(code, over, maxc);
		__mmask16 nz = inwin | over;
		if (under_min) {
			code = _mm512_mask_mov_epi32(code, under, one);
			nz |= under;
		}
		_mm_storeu_si128((__m128i *)(codes + i), _mm512_cvtepi32_epi8(code));
		unsigned cnt = (unsigned)__builtin_popcount(nz);
		if (m) {
			__m512i mant = _mm512_maskz_and_epi32(inwin, _mm512_srlv_epi32(a, kk), mmask);
			mant = _mm512_mask_mov_epi32(mant, over, mmask);
			__m512i bits = pack16(pp, levels, passes, _mm512_maskz_compress_epi32(nz, mant),
					      m, (unsigned)(pos & 7));
			bits = _mm512_or_si512(bits, pend);
			_mm512_storeu_si512(mp + (pos >> 3), bits);
			uint64_t np = pos + (uint64_t)cnt * m;
			pend = _mm512_maskz_permutexvar_epi8(
				1, _mm512_set1_epi8((char)((np >> 3) - (pos >> 3))), bits);
			pos = np;
		}
		uint64_t sbits = _pext_u32((unsigned)_mm512_movepi32_mask(u), nz);
		sacc |= sbits << snb;
		snb += cnt;
		memcpy(sp, &sacc, 8);
		sp += snb >> 3;
		sacc >>= 8 * (snb >> 3); /* snb < 24: at most 2 bytes done */
		snb &= 7;
		nnz += cnt;
		nneg += (unsigned)__builtin_popcountll(sbits);
	}
	lm = (bitw){mp + (pos >> 3), mend,
		    (uint64_t)(_mm_cvtsi128_si32(_mm512_castsi512_si128(pend)) & 0xff),
		    (unsigned)(pos & 7), movf};
	ls = (bitw){sp, send, sacc, snb, sovf};
	c = (qcounts){nnz, nneg, nexc};
	if (i < n)
		r = quant_range(q, x, i, n, codes, &lm, &ls, &c, bad);
	*mw = lm;
	*sw = ls;
	*cnts = c;
out:
	return r;
}

/* The loop compiled once per fold depth, so its shifts and branches are fixed. */
int sfp__quant_pass_avx512(const qplan *q, const float *x, uint64_t n, uint8_t *codes, bitw *mw,
			   bitw *sw, qcounts *cnts, uint64_t *bad)
{
	packplans pp;
	if (!q->m) {
		memset(&pp, 0, sizeof pp);
		return quant_loop(q, x, n, codes, mw, sw, cnts, bad, &pp, 0);
	}
	packplans_init(&pp, q->m);
	switch (pp.levels) {
	case 1: return quant_loop(q, x, n, codes, mw, sw, cnts, bad, &pp, 1);
	case 2: return quant_loop(q, x, n, codes, mw, sw, cnts, bad, &pp, 2);
	case 3: return quant_loop(q, x, n, codes, mw, sw, cnts, bad, &pp, 3);
	default: return quant_loop(q, x, n, codes, mw, sw, cnts, bad, &pp, 4);
	}
}

/* Decode, 16 values per step. Lane j's mantissa field starts at bit
 * phase + j*m of the 64-byte window at the block's first byte, where phase =
 * mpos & 7; the bytes each lane needs and the shift that drops the phase
 * bits depend only on (m, phase), so the eight byte-gather and shift vectors
 * are built once per call. The window is a masked load, so it never reads
 * past the stream and needs no scalar tail; signs come through bits_get. */
void sfp__assemble_avx512(float *dst, const uint8_t *codes, uint64_t n, unsigned lo, unsigned m,
			  const uint8_t *mant, size_t mant_len, const uint8_t *sign,
			  size_t sign_len, int sign_mode)
{
	const unsigned k = 23 - m;
	uint32_t gidx[8][16], gsh[8][16];
	for (unsigned p = 0; p < 8; p++)
		for (unsigned j = 0; j < 16; j++) {
			unsigned off = p + j * m, b = off >> 3; /* b <= 44: b + 3 < 64 */
			gidx[p][j] = b | (b + 1) << 8 | (b + 2) << 16 | (b + 3) << 24;
			gsh[p][j] = off & 7;
		}
	const __m512i mmask = _mm512_set1_epi32((int)((1u << m) - 1));
	const __m512i base = _mm512_set1_epi32((int)((lo - 1) << 23));
	const __m512i kv = _mm512_set1_epi32((int)k), zero = _mm512_setzero_si512();
	const __m512i signbit = _mm512_set1_epi32((int)0x80000000u);
	uint64_t mpos = 0, spos = 0, i = 0;

	for (; i + 16 <= n; i += 16) {
		__m128i c8 = _mm_loadu_si128((const __m128i *)(codes + i));
		__mmask16 nz = _mm_test_epi8_mask(c8, c8);
		unsigned cnt = (unsigned)__builtin_popcount(nz);
		__m512i code = _mm512_cvtepu8_epi32(c8);
		__m512i r = _mm512_add_epi32(_mm512_slli_epi32(code, 23), base);
		if (m) {
			size_t mb = (size_t)(mpos >> 3), left = mant_len - mb;
			__mmask64 lm = left >= 64 ? ~(__mmask64)0 : _bzhi_u64(~0ull, (unsigned)left);
			unsigned p = (unsigned)(mpos & 7);
			__m512i data = _mm512_maskz_loadu_epi8(lm, mant + mb);
			__m512i v = _mm512_permutexvar_epi8(_mm512_loadu_si512(gidx[p]), data);
			v = _mm512_and_si512(_mm512_srlv_epi32(v, _mm512_loadu_si512(gsh[p])), mmask);
			r = _mm512_or_si512(r, _mm512_sllv_epi32(_mm512_maskz_expand_epi32(nz, v), kv));
			mpos += (uint64_t)cnt * m;
		}
		__mmask16 neg = 0;
		if (sign_mode == 2) {
			neg = nz;
		} else if (sign_mode == 0) {
			neg = (__mmask16)_pdep_u32(bits_get(sign, sign_len, spos, 16), nz);
			spos += cnt;
		}
		r = _mm512_mask_or_epi32(r, neg, r, signbit);
		_mm512_storeu_si512(dst + i, _mm512_mask_mov_epi32(zero, nz, r));
	}
	assemble_range(dst, codes, i, n, lo, m, mant, mant_len, sign, sign_len, sign_mode, &mpos,
		       &spos);
}

/*
 * Raw exponent codes, 64 per step: 64 e-bit codes are 8e bytes; vpermb puts
 * the e bytes of each group of 8 codes into its qword, vpmultishiftqb pulls
 * each code's e bits (at bit j*e of the qword) into its byte, and the
 * nonzero count comes from the byte-test mask. Loads and the last store are
 * masked, so nothing outside src[0 .. ceil(n*e/8)) or codes[0..n) is touched.
 */
uint64_t sfp__unpack_codes_avx512(uint8_t *codes, const uint8_t *src, uint64_t n, unsigned e)
{
	uint64_t idx[8], sel[8];
	for (unsigned l = 0; l < 8; l++) {
		idx[l] = sel[l] = 0;
		for (unsigned b = 0; b < 8; b++) {
			idx[l] |= (uint64_t)((l * e + b) & 63) << (8 * b);
			sel[l] |= (uint64_t)(b * e) << (8 * b);
		}
	}
	const __m512i vidx = _mm512_loadu_si512(idx), vsel = _mm512_loadu_si512(sel);
	const __m512i mask = _mm512_set1_epi8((char)((1u << e) - 1));
	const size_t len = (size_t)((n * e + 7) >> 3);
	uint64_t nz = 0, i = 0;
	size_t off = 0;
	for (; i + 64 <= n; i += 64, off += 8 * e) {
		size_t left = len - off;
		__mmask64 lm = left >= 64 ? ~(__mmask64)0 : (((__mmask64)1 << left) - 1);
		__m512i raw = _mm512_maskz_loadu_epi8(lm, src + off);
		__m512i v = _mm512_and_si512(
			_mm512_multishift_epi64_epi8(vsel, _mm512_permutexvar_epi8(vidx, raw)), mask);
		_mm512_storeu_si512(codes + i, v);
		nz += (uint64_t)__builtin_popcountll(_mm512_test_epi8_mask(v, v));
	}
	if (i < n) {
		/* Fewer than 64 codes: fewer than 64 bytes left. */
		__mmask64 lm = ((__mmask64)1 << (len - off)) - 1;
		__mmask64 sm = ((__mmask64)1 << (n - i)) - 1;
		__m512i raw = _mm512_maskz_loadu_epi8(lm, src + off);
		__m512i v = _mm512_and_si512(
			_mm512_multishift_epi64_epi8(vsel, _mm512_permutexvar_epi8(vidx, raw)), mask);
		_mm512_mask_storeu_epi8(codes + i, sm, v);
		nz += (uint64_t)__builtin_popcountll(_mm512_mask_test_epi8_mask(sm, v, v));
	}
	return nz;
}
