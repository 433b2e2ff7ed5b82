/*
 * gemm_avx512.c -- the AVX-512 GEMM micro-kernel: an 8 x 32 tile of C held
 * in 16 zmm accumulators; per k, two vectors of the packed B panel and eight
 * broadcasts of the packed A panel. Edges are handled by the zero-padded
 * panels plus a masked store. Called only after a run-time CPU check.
 */
#include <immintrin.h>

#include "nn/nn_internal.h"

void sfp_gemm_kernel_avx512(int kc, const float *ap, const float *bp, float *c, int ldc, int m,
			    int n, float alpha, float beta)
{
	__m512 acc[8][2];
	for (int i = 0; i < 8; i++)
		acc[i][0] = acc[i][1] = _mm512_setzero_ps();
	for (int k = 0; k < kc; k++) {
		__m512 b0 = _mm512_loadu_ps(bp + (size_t)k * 32);
		__m512 b1 = _mm512_loadu_ps(bp + (size_t)k * 32 + 16);
		const float *a = ap + (size_t)k * 8;
#define ROW(i)                                                      \
	do {                                                        \
		__m512 ai = _mm512_set1_ps(a[i]);                   \
		acc[i][0] = _mm512_fmadd_ps(ai, b0, acc[i][0]);     \
		acc[i][1] = _mm512_fmadd_ps(ai, b1, acc[i][1]);     \
	} while (0)
		ROW(0);
		ROW(1);
		ROW(2);
		ROW(3);
		ROW(4);
		ROW(5);
		ROW(6);
		ROW(7);
#undef ROW
	}
	const __mmask16 m0 = n >= 16 ? 0xffff : (__mmask16)((1u << n) - 1);
	const __mmask16 m1 = n >= 32 ? 0xffff : n <= 16 ? 0 : (__mmask16)((1u << (n - 16)) - 1);
	const __m512 va = _mm512_set1_ps(alpha), vb = _mm512_set1_ps(beta);
	for (int i = 0; i < m; i++) {
		float *ci = c + (size_t)i * ldc;
		__m512 r0 = _mm512_mul_ps(va, acc[i][0]), r1 = _mm512_mul_ps(va, acc[i][1]);
		if (beta != 0.0f) {
			r0 = _mm512_fmadd_ps(vb, _mm512_maskz_loadu_ps(m0, ci), r0);
			r1 = _mm512_fmadd_ps(vb, _mm512_maskz_loadu_ps(m1, ci + 16), r1);
		}
		_mm512_mask_storeu_ps(ci, m0, r0);
		_mm512_mask_storeu_ps(ci + 16, m1, r1);
	}
}

/* Transpose the 8 x 8 block held in r[0..7] (rows) in registers. */
static inline void transpose8(__m256 r[8])
{
	__m256 t[8], u[8];
	for (int i = 0; i < 8; i += 2) {
		t[i] = _mm256_unpacklo_ps(r[i], r[i + 1]);
		t[i + 1] = _mm256_unpackhi_ps(r[i], r[i + 1]);
	}
	for (int i = 0; i < 8; i += 4) {
		u[i] = _mm256_shuffle_ps(t[i], t[i + 2], _MM_SHUFFLE(1, 0, 1, 0));
		u[i + 1] = _mm256_shuffle_ps(t[i], t[i + 2], _MM_SHUFFLE(3, 2, 3, 2));
		u[i + 2] = _mm256_shuffle_ps(t[i + 1], t[i + 3], _MM_SHUFFLE(1, 0, 1, 0));
		u[i + 3] = _mm256_shuffle_ps(t[i + 1], t[i + 3], _MM_SHUFFLE(3, 2, 3, 2));
	}
	for (int i = 0; i < 4; i++) {
		r[i] = _mm256_permute2f128_ps(u[i], u[i + 4], 0x20);
		r[i + 4] = _mm256_permute2f128_ps(u[i], u[i + 4], 0x31);
	}
}

/*
 * Transposing copy: dst[k * dst_stride + r] = src[r * lda + k] for r < 8 and
 * k < kc (8 source rows of kc values -> kc destination rows of 8 values).
 * Full 8 x 8 blocks go through registers, the tail element by element.
 */
void sfp_gemm_transpose8_avx512(float *dst, size_t dst_stride, const float *src, size_t lda,
				int kc)
{
	int k = 0;
	for (; k + 8 <= kc; k += 8) {
		__m256 r[8];
		for (int i = 0; i < 8; i++)
			r[i] = _mm256_loadu_ps(src + (size_t)i * lda + k);
		transpose8(r);
		for (int i = 0; i < 8; i++)
			_mm256_storeu_ps(dst + (size_t)(k + i) * dst_stride, r[i]);
	}
	for (; k < kc; k++)
		for (int i = 0; i < 8; i++)
			dst[(size_t)k * dst_stride + i] = src[(size_t)i * lda + k];
}
