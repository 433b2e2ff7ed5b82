/*
 * gemm.c -- single-precision GEMM for the layers: C = alpha op(A) op(B) +
 * beta C, row-major. Our own kernel rather than a BLAS call because the
 * Debian OpenBLAS build (0.3.21) does not recognise this CPU generation and
 * falls back to SSE3 kernels (~19 GFLOP/s here), and its core type can only
 * be forced through the environment.
 *
 * Blocking (Goto style): K in blocks of KC, N in blocks of NC, M in blocks
 * of MC; A is packed into MR-row panels and B into NR-column panels, zero
 * padded at the edges, so the micro-kernel always runs a full MR x NR tile
 * and only its store is masked. The AVX-512 micro-kernel lives in
 * gemm_avx512.c; the portable one here is the reference and the fallback.
 */
#include <string.h>

#include "nn/nn_internal.h"

/* C tile (m x n valid of MR x NR) = alpha * Ap Bp + beta * C */
static void kernel_ref(int kc, const float *ap, const float *bp, float *c, int ldc, int m, int n,
		       float alpha, float beta)
{
	float acc[SFP_GEMM_MR][SFP_GEMM_NR];
	memset(acc, 0, sizeof acc);
	for (int k = 0; k < kc; k++)
		for (int i = 0; i < SFP_GEMM_MR; i++) {
			float a = ap[k * SFP_GEMM_MR + i];
			for (int j = 0; j < SFP_GEMM_NR; j++)
				acc[i][j] += a * bp[k * SFP_GEMM_NR + j];
		}
	for (int i = 0; i < m; i++)
		for (int j = 0; j < n; j++) {
			float *cij = c + (size_t)i * ldc + j;
			*cij = alpha * acc[i][j] + (beta == 0.0f ? 0.0f : beta * *cij);
		}
}

/* Pack rows [i0, i0+mc) x cols [k0, k0+kc) of op(A) into MR-row panels:
 * panel p holds, for each k, MR consecutive values. */
static void pack_a(int isa, float *dst, int trans, const float *a, int lda, int i0, int mc, int k0,
		   int kc)
{
	for (int p = 0; p < mc; p += SFP_GEMM_MR) {
		int rows = mc - p < SFP_GEMM_MR ? mc - p : SFP_GEMM_MR;
		float *panel = dst + (size_t)p * kc;
		if (trans) {
			/* op(A) = A^T: row k of A holds MR consecutive values of the panel */
			for (int k = 0; k < kc; k++) {
				const float *src = a + (size_t)(k0 + k) * lda + i0 + p;
				float *d = panel + (size_t)k * SFP_GEMM_MR;
				for (int r = 0; r < rows; r++)
					d[r] = src[r];
				for (int r = rows; r < SFP_GEMM_MR; r++)
					d[r] = 0.0f;
			}
			continue;
		}
		/* read each row of A contiguously */
		if (isa >= SFP_ISA_AVX512 && rows == SFP_GEMM_MR) {
			sfp_gemm_transpose8_avx512(panel, SFP_GEMM_MR,
						   a + (size_t)(i0 + p) * lda + k0, (size_t)lda, kc);
			continue;
		}
		for (int r = 0; r < rows; r++) {
			const float *src = a + (size_t)(i0 + p + r) * lda + k0;
			for (int k = 0; k < kc; k++)
				panel[(size_t)k * SFP_GEMM_MR + r] = src[k];
		}
		for (int r = rows; r < SFP_GEMM_MR; r++)
			for (int k = 0; k < kc; k++)
				panel[(size_t)k * SFP_GEMM_MR + r] = 0.0f;
	}
}

/* Pack rows [k0, k0+kc) x cols [j0, j0+nc) of op(B) into NR-column panels. */
static void pack_b(int isa, float *dst, int trans, const float *b, int ldb, int k0, int kc, int j0,
		   int nc)
{
	for (int p = 0; p < nc; p += SFP_GEMM_NR) {
		int cols = nc - p < SFP_GEMM_NR ? nc - p : SFP_GEMM_NR;
		float *panel = dst + (size_t)p * kc;
		if (trans) {
			/* op(B) = B^T: read each row of B contiguously */
			int c0 = 0;
			if (isa >= SFP_ISA_AVX512)
				for (; c0 + 8 <= cols; c0 += 8)
					sfp_gemm_transpose8_avx512(
						panel + c0, SFP_GEMM_NR,
						b + (size_t)(j0 + p + c0) * ldb + k0, (size_t)ldb, kc);
			for (int c = c0; c < cols; c++) {
				const float *src = b + (size_t)(j0 + p + c) * ldb + k0;
				for (int k = 0; k < kc; k++)
					panel[(size_t)k * SFP_GEMM_NR + c] = src[k];
			}
			for (int c = cols; c < SFP_GEMM_NR; c++)
				for (int k = 0; k < kc; k++)
					panel[(size_t)k * SFP_GEMM_NR + c] = 0.0f;
			continue;
		}
		for (int k = 0; k < kc; k++) {
			float *d = panel + (size_t)k * SFP_GEMM_NR;
			memcpy(d, b + (size_t)(k0 + k) * ldb + j0 + p, sizeof(float) * (size_t)cols);
			for (int c = cols; c < SFP_GEMM_NR; c++)
				d[c] = 0.0f;
		}
	}
}

static void gemm_blocked(int isa, int ta, int tb, int M, int N, int K, float alpha,
			 const float *A, int lda, const float *B, int ldb, float beta, float *C,
			 int ldc, float *ws)
{
	float *pa = ws, *pb = ws + SFP_GEMM_MC * SFP_GEMM_KC;
	if (K == 0) {
		for (int i = 0; i < M; i++)
			for (int j = 0; j < N; j++) {
				float *c = C + (size_t)i * ldc + j;
				*c = beta == 0.0f ? 0.0f : beta * *c;
			}
		return;
	}
	for (int j0 = 0; j0 < N; j0 += SFP_GEMM_NC) {
		int nc = N - j0 < SFP_GEMM_NC ? N - j0 : SFP_GEMM_NC;
		for (int k0 = 0; k0 < K; k0 += SFP_GEMM_KC) {
			int kc = K - k0 < SFP_GEMM_KC ? K - k0 : SFP_GEMM_KC;
			float bk = k0 == 0 ? beta : 1.0f;
			pack_b(isa, pb, tb, B, ldb, k0, kc, j0, nc);
			for (int i0 = 0; i0 < M; i0 += SFP_GEMM_MC) {
				int mc = M - i0 < SFP_GEMM_MC ? M - i0 : SFP_GEMM_MC;
				pack_a(isa, pa, ta, A, lda, i0, mc, k0, kc);
				for (int jr = 0; jr < nc; jr += SFP_GEMM_NR) {
					int n = nc - jr < SFP_GEMM_NR ? nc - jr : SFP_GEMM_NR;
					const float *bp = pb + (size_t)jr * kc;
					for (int ir = 0; ir < mc; ir += SFP_GEMM_MR) {
						int m = mc - ir < SFP_GEMM_MR ? mc - ir : SFP_GEMM_MR;
						float *c = C + (size_t)(i0 + ir) * ldc + j0 + jr;
						const float *ap = pa + (size_t)ir * kc;
						if (isa >= SFP_ISA_AVX512)
							sfp_gemm_kernel_avx512(kc, ap, bp, c, ldc, m, n,
									       alpha, bk);
						else
							kernel_ref(kc, ap, bp, c, ldc, m, n, alpha, bk);
					}
				}
			}
		}
	}
}

void sfp_gemm(int isa, int ta, int tb, int M, int N, int K, float alpha, const float *A, int lda,
	      const float *B, int ldb, float beta, float *C, int ldc, float *ws)
{
	gemm_blocked(isa, ta, tb, M, N, K, alpha, A, lda, B, ldb, beta, C, ldc, ws);
}

void sfp_gemm_ref(int ta, int tb, int M, int N, int K, float alpha, const float *A, int lda,
		  const float *B, int ldb, float beta, float *C, int ldc)
{
	for (int i = 0; i < M; i++)
		for (int j = 0; j < N; j++) {
			double acc = 0.0;
			for (int k = 0; k < K; k++) {
				float a = ta ? A[(size_t)k * lda + i] : A[(size_t)i * lda + k];
				float b = tb ? B[(size_t)j * ldb + k] : B[(size_t)k * ldb + j];
				acc += (double)a * b;
			}
			float *c = C + (size_t)i * ldc + j;
			*c = alpha * (float)acc + (beta == 0.0f ? 0.0f : beta * *c);
		}
}
