/*
 * container_avx512.c -- AVX-512 (F/BW/VBMI/VBMI2) + BMI2 kernels of the
 * container, 16 values per step. They must match the scalar reference in
 * container.c bit for bit; tests/test_codec_container.c checks every (e, m).
 *
 * Encode: the max pass rounds only the largest magnitude (nearest-even is
 * monotonic); the quantize pass rounds the magnitudes in-vector
 * (nearest-even, or stochastic with sfp_hash32 computed in-vector), derives
 * codes, compresses the mantissas of the nonzero lanes (vpcompressd), places
 * their bits with two byte permutes and stores the block with one 64-byte
 * store (see pack16); signs of the nonzero lanes are gathered with pext.
 * Blocks holding an exception take the scalar rule.
 * Decode: gather each lane's 4 bytes of the mantissa stream with vpermb
 * (per-phase index tables), shift and mask, expand them into the nonzero
 * lanes (vpexpandd), place the sign bits with pdep, assemble and store.
 * Raw exponent codes are packed and unpacked 64 per step (vpermb,
 * vpmultishiftqb).
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
	if (!q->stochastic) {
		/* Nearest-even rounding is monotonic, so the largest rounded
		 * exponent is that of the rounded largest magnitude: one max per
		 * block, one rounding at the end. An overflow there means some
		 * value overflows; the scalar rule then finds the first one. */
		for (; i + 16 <= n; i += 16) {
			__m512i u = _mm512_loadu_si512(x + i);
			mx = _mm512_mask_max_epu32(mx, (__mmask16)~exc16(q, u), mx,
						   _mm512_and_si512(u, abs));
		}
		uint32_t amax = _mm512_reduce_max_epu32(mx);
		for (; i < n; i++) {
			uint32_t u = f2u(x[i]);
			if (!is_exception(q, u) && (u & 0x7fffffffu) > amax)
				amax = u & 0x7fffffffu;
		}
		unsigned E = round_mag(q, amax, 0) >> 23;
		if (E == 255) {
			if (!q->saturate)
				return max_exp_range(q, x, 0, n, &tail_max, bad);
			E = 254;
		}
		*emax = E;
		return Q_OK;
	}
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
 * loops. The nonzero lanes' m-bit fields are compressed to the front; for
 * m < 7 they are first folded in-vector into groups of W = m << folds >= 7
 * bits (pairs in each qword, then pairs of those). Group g belongs at bit
 * phase + g*W of the block, where phase (0..7) is the writer's bit position
 * mod 8: a per-lane shift by that offset mod 8 lines its bits up with the
 * output bytes, and because W >= 7 groups g and g+2 never share an output
 * byte, so two byte permutes (even groups, odd groups) move every byte into
 * place and an OR merges them. The shifts, byte indices and masks depend
 * only on (m, phase): all eight plans are built once per call. The pending
 * partial byte is ORed in and 64 bytes are stored at the writer's byte
 * position; bits past the block are zero, so the next pending byte is just
 * the byte of this block at the new position.
 */
typedef struct packplan {
	__m512i shift;        /* per source lane (dword if folds = 0, else qword) */
	__m512i idx[2];       /* output byte <- source byte, even and odd groups */
	__mmask64 mask[2];    /* output bytes each class fills */
} packplan;

typedef struct packplans {
	unsigned folds;       /* 0 (m >= 7) .. 3 (m = 1) */
	packplan ph[8];
} packplans;

static void packplans_init(packplans *pp, unsigned m)
{
	memset(pp, 0, sizeof *pp);
	while ((m << pp->folds) < 7)
		pp->folds++;
	const unsigned f = pp->folds, groups = 16u >> f, width = m << f;
	for (unsigned s = 0; s < 8; s++) {
		uint8_t idx[2][64];
		uint32_t sh32[16] = {0};
		uint64_t sh64[8] = {0};
		packplan *pl = &pp->ph[s];
		memset(idx, 0, sizeof idx);
		for (unsigned g = 0; g < groups; g++) {
			unsigned off = s + g * width, sb = off & 7, b0 = off >> 3;
			unsigned nb = (sb + width + 7) / 8;  /* <= 4 (dwords), <= 3 (qwords) */
			unsigned src = (4u << f) * g;         /* first byte of the group's lane */
			if (f == 0)
				sh32[g] = sb;
			else
				sh64[g << (f - 1)] = sb;
			for (unsigned t = 0; t < nb; t++) { /* b0 + t <= 46 */
				idx[g & 1][b0 + t] = (uint8_t)(src + t);
				pl->mask[g & 1] |= (__mmask64)1 << (b0 + t);
			}
		}
		pl->shift = f == 0 ? _mm512_loadu_si512(sh32) : _mm512_loadu_si512(sh64);
		pl->idx[0] = _mm512_loadu_si512(idx[0]);
		pl->idx[1] = _mm512_loadu_si512(idx[1]);
	}
}

/* The 16 m-bit fields of cm (zero past the nonzero count) as one bit string
 * starting at bit `phase` of the result, ORed with pend. */
static inline __m512i pack16(const packplans *pp, const unsigned folds, __m512i cm, unsigned m,
			     unsigned phase, __m512i pend)
{
	const packplan *pl = &pp->ph[phase];
	__m512i v = cm;
	if (folds >= 1)
		v = _mm512_or_si512(_mm512_and_si512(v, _mm512_set1_epi64(0xffffffff)),
				    _mm512_sllv_epi64(_mm512_srli_epi64(v, 32),
						      _mm512_set1_epi64((long long)m)));
	if (folds >= 2)
		v = _mm512_or_si512(v, _mm512_sllv_epi64(_mm512_bsrli_epi128(v, 8),
							 _mm512_set1_epi64((long long)(2 * m))));
	if (folds >= 3)
		v = _mm512_or_si512(v, _mm512_sllv_epi64(_mm512_permutexvar_epi64(
								 _mm512_setr_epi64(2, 3, 4, 5, 6, 7, 7, 7), v),
							 _mm512_set1_epi64((long long)(4 * m))));
	v = folds == 0 ? _mm512_sllv_epi32(v, pl->shift) : _mm512_sllv_epi64(v, pl->shift);
	__m512i even = _mm512_maskz_permutexvar_epi8(pl->mask[0], pl->idx[0], v);
	__m512i odd = _mm512_maskz_permutexvar_epi8(pl->mask[1], pl->idx[1], v);
	return _mm512_ternarylogic_epi32(even, odd, pend, 0xfe); /* a | b | c */
}

/* Quantize pass, AVX-512. Blocks go through the vector writer while 64
 * bytes of room remain at the mantissa position (and 8 at the sign
 * position); exception blocks and the last blocks use the scalar rule on
 * the bit writers. All writer state lives in locals (the byte stores would
 * otherwise force it through memory on every block). */
static inline __attribute__((always_inline)) int
quant_loop(const qplan *q, const float *x, uint64_t n, uint8_t *codes, bitw *mw, bitw *sw,
	   qcounts *cnts, uint64_t *bad, const packplans *pp, const unsigned folds)
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
			__m512i bits = pack16(pp, folds, _mm512_maskz_compress_epi32(nz, mant), m,
					      (unsigned)(pos & 7), pend);
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
	switch (pp.folds) {
	case 1: return quant_loop(q, x, n, codes, mw, sw, cnts, bad, &pp, 1);
	case 2: return quant_loop(q, x, n, codes, mw, sw, cnts, bad, &pp, 2);
	case 3: return quant_loop(q, x, n, codes, mw, sw, cnts, bad, &pp, 3);
	default: return quant_loop(q, x, n, codes, mw, sw, cnts, bad, &pp, 0);
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

/*
 * Raw exponent codes packed 64 per step: three in-register folds (byte pairs
 * into 2e bits per word, word pairs into 4e bits per dword, dword pairs into
 * 8e bits per qword) leave each group of 8 codes in the low e bytes of its
 * qword; one byte permute closes the gaps and a masked store writes the 8e
 * bytes. The last partial step is a masked load and store, so nothing
 * outside codes[0..n) or dst[0 .. ceil(n*e/8)) is touched.
 */
void sfp__pack_codes_avx512(uint8_t *dst, const uint8_t *codes, uint64_t n, unsigned e)
{
	if (e == 8) {
		memcpy(dst, codes, n);
		return;
	}
	uint8_t idx[64];
	for (unsigned b = 0; b < 64; b++)
		idx[b] = (uint8_t)(b < 8 * e ? 8 * (b / e) + b % e : 0);
	const __m512i vidx = _mm512_loadu_si512(idx);
	const __m512i e1 = _mm512_set1_epi16((short)e), e2 = _mm512_set1_epi32((int)(2 * e));
	const __m512i e4 = _mm512_set1_epi64((long long)(4 * e));
	const size_t total = (size_t)((n * e + 7) >> 3);
	uint64_t i = 0;
	size_t off = 0;
	while (i < n) {
		uint64_t left = n - i < 64 ? n - i : 64;
		__mmask64 lm = left == 64 ? ~(__mmask64)0 : ((__mmask64)1 << left) - 1;
		size_t ob = left == 64 ? 8 * e : total - off;
		__mmask64 sm = ob == 64 ? ~(__mmask64)0 : ((__mmask64)1 << ob) - 1;
		__m512i v = _mm512_maskz_loadu_epi8(lm, codes + i);
		v = _mm512_or_si512(_mm512_and_si512(v, _mm512_set1_epi16(0xff)),
				    _mm512_sllv_epi16(_mm512_srli_epi16(v, 8), e1));
		v = _mm512_or_si512(_mm512_and_si512(v, _mm512_set1_epi32(0xffff)),
				    _mm512_sllv_epi32(_mm512_srli_epi32(v, 16), e2));
		v = _mm512_or_si512(_mm512_and_si512(v, _mm512_set1_epi64(0xffffffff)),
				    _mm512_sllv_epi64(_mm512_srli_epi64(v, 32), e4));
		_mm512_mask_storeu_epi8(dst + off, sm, _mm512_permutexvar_epi8(vidx, v));
		i += left;
		off += 8 * e;
	}
}
