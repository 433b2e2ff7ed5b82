/*
 * quantize_avx512.c -- fake quantization (sfp_quantize) for nearest
 * rounding without saturation, 16 values per step: the same branch-free
 * element rule as quantize_nearest() in container.c, tested bit for bit
 * against the reference loop on every (e, m) (tests/test_codec_container.c).
 * Returns n, or the start of the 16-value group holding the first value
 * past the window, which is not written (the caller's reference loop
 * reports it; with dst == src the values are still there).
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
			if (over)
				return i;
			_mm512_mask_storeu_epi32(dst + i, lm, r);
		}
	}
	return n;
}

/* The element rule above, in registers: the quantized values of x (16). */
typedef struct qvec {
	__m512i vnotmask, vhalf, vlo, vhi, vmin;
	__m128i vk;
	uint32_t k;
	int lossless, under_min;
} qvec;

static void qvec_init(qvec *v, const qplan *q)
{
	const uint32_t k = q->k, mask = k ? (1u << k) - 1 : 0, half = k ? (1u << (k - 1)) - 1 : 0;
	v->vnotmask = _mm512_set1_epi32((int)~mask);
	v->vhalf = _mm512_set1_epi32((int)half);
	v->vlo = _mm512_set1_epi32((int)q->lo);
	v->vhi = _mm512_set1_epi32((int)q->hi);
	v->vmin = _mm512_set1_epi32(q->under_min ? (int)(q->lo << 23) : 0);
	v->vk = _mm_cvtsi32_si128((int)k);
	v->k = k;
	v->lossless = q->lossless;
	v->under_min = q->under_min;
}

/* The rounding half of the rule, shared by two plans with the same k. */
typedef struct qround {
	__m512i a, ar, Er, sign;
	__mmask16 exc;
} qround;

static inline void qvec_round(const qvec *v, __m512i x, qround *r)
{
	const __m512i vabs = _mm512_set1_epi32(0x7fffffff), vsign = _mm512_set1_epi32((int)0x80000000u);
	const __m512i one = _mm512_set1_epi32(1), v255 = _mm512_set1_epi32(255);
	const __m512i zero = _mm512_setzero_si512();
	r->a = _mm512_and_si512(x, vabs);
	const __m512i E = _mm512_srli_epi32(r->a, 23);
	r->exc = _mm512_cmpeq_epi32_mask(E, v255);
	if (v->lossless)
		r->exc |= _mm512_cmpeq_epi32_mask(E, zero) & _mm512_cmpneq_epi32_mask(x, zero);
	__m512i lsb = v->k ? _mm512_and_si512(_mm512_srl_epi32(r->a, v->vk), one) : zero;
	r->ar = _mm512_and_si512(_mm512_add_epi32(_mm512_add_epi32(r->a, v->vhalf), lsb),
				 v->vnotmask);
	r->Er = _mm512_srli_epi32(r->ar, 23);
	r->sign = _mm512_and_si512(x, vsign);
}

/* The window half: the value for plan v from a rounding with its k. */
static inline __m512 qvec_window(const qvec *v, const qround *q, __m512i x, __mmask16 lm,
				 __mmask16 *over)
{
	const __m512i zero = _mm512_setzero_si512();
	__m512i r = _mm512_or_si512(q->sign, q->ar);
	const __mmask16 isz = _mm512_cmpeq_epi32_mask(q->ar, zero);
	const __mmask16 below = _mm512_cmplt_epu32_mask(q->Er, v->vlo) & ~isz;
	r = _mm512_mask_mov_epi32(r, isz, zero);
	r = _mm512_mask_mov_epi32(r, below, v->under_min ? _mm512_or_si512(q->sign, v->vmin) : zero);
	r = _mm512_mask_mov_epi32(r, q->exc, x);
	*over |= _mm512_cmpgt_epu32_mask(q->Er, v->vhi) & ~q->exc & lm;
	return _mm512_castsi512_ps(r);
}

/*
 * acc lanes 0..7 in one register, 8..15 in the other: element i adds to
 * lane i % 16, a product then a sum, as the reference. The difference is
 * taken in float: a and b are two roundings of the same x (or x itself),
 * so each is zero or within a factor 2 of the other and a - b is exact
 * (Sterbenz) -- the same double as (double)a - (double)b; NaN and Inf
 * give NaN either way. Plans with the same mantissa width share the
 * rounding. Sixteen values whose differences are all zero, with finite
 * gradients, add only zeros: they are skipped (a lane that starts at +0
 * never becomes -0 by adding exact values, so adding +-0 changes no lane)
 * -- after ReLU most values are zero, and the exponent pair differs only
 * where the narrower window flushes.
 */
uint64_t sfp__diff_dot_avx512(const qplan *qa, const qplan *qb, const float *g, const float *x,
			      uint64_t n, double *acc)
{
	qvec va, vb;
	if (qa)
		qvec_init(&va, qa);
	qvec_init(&vb, qb);
	const int shared = qa && qa->k == qb->k && qa->lossless == qb->lossless;
	__m512d a0 = _mm512_loadu_pd(acc), a1 = _mm512_loadu_pd(acc + 8);
	uint64_t ret = n;
	for (uint64_t b0 = 0; b0 < n && ret == n; b0 += 1024) {
		const uint64_t b1 = b0 + 1024 < n ? b0 + 1024 : n;
		__mmask16 over = 0;
		__m512d s0 = a0, s1 = a1;
		for (uint64_t i = b0; i < b1; i += 16) {
			const uint64_t left = b1 - i;
			const __mmask16 lm = left >= 16 ? 0xffff : (__mmask16)((1u << left) - 1);
			const __m512i xi = _mm512_maskz_loadu_epi32(lm, x + i);
			const __m512 gv = _mm512_maskz_loadu_ps(lm, g + i);
			qround rb, ra;
			qvec_round(&vb, xi, &rb);
			const __m512 qbv = qvec_window(&vb, &rb, xi, lm, &over);
			__m512 qav = _mm512_castsi512_ps(xi);
			if (shared) {
				qav = qvec_window(&va, &rb, xi, lm, &over);
			} else if (qa) {
				qvec_round(&va, xi, &ra);
				qav = qvec_window(&va, &ra, xi, lm, &over);
			}
			const __m512 d = _mm512_sub_ps(qav, qbv);
			const __mmask16 nz = _mm512_cmpneq_ps_mask(d, _mm512_setzero_ps()) & lm;
			const __mmask16 gbad =
				_mm512_cmpeq_epi32_mask(_mm512_and_si512(_mm512_castps_si512(gv),
									 _mm512_set1_epi32(0x7f800000)),
							_mm512_set1_epi32(0x7f800000)) & lm;
			if (!(nz | gbad))
				continue;
			const __m512d g0 = _mm512_cvtps_pd(_mm512_castps512_ps256(gv));
			const __m512d g1 = _mm512_cvtps_pd(_mm512_extractf32x8_ps(gv, 1));
			const __m512d d0 = _mm512_cvtps_pd(_mm512_castps512_ps256(d));
			const __m512d d1 = _mm512_cvtps_pd(_mm512_extractf32x8_ps(d, 1));
			const __m512d p0 = _mm512_mul_pd(g0, d0), p1 = _mm512_mul_pd(g1, d1);
			/* the tail adds nothing to lanes past n (not even +0 to a -0) */
			s0 = _mm512_mask_add_pd(s0, (__mmask8)lm, s0, p0);
			s1 = _mm512_mask_add_pd(s1, (__mmask8)(lm >> 8), s1, p1);
		}
		if (over)
			ret = b0; /* this block is not added: the caller reports the error */
		else
			a0 = s0, a1 = s1;
	}
	_mm512_storeu_pd(acc, a0);
	_mm512_storeu_pd(acc + 8, a1);
	return ret;
}
