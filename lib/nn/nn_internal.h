/*
 * nn_internal.h -- the layer kernels of lib/nn. Each layer is a forward /
 * backward pair; arguments are ordered outputs, inputs, weights, dimensions;
 * backward accumulates (+=) into din and the parameter gradients, and skips
 * din when it is NULL. None of them allocates: scratch comes from `ws`.
 */
#ifndef SFP_NN_INTERNAL_H
#define SFP_NN_INTERNAL_H

#include <stddef.h>
#include <stdint.h>

#include "sfp/nn.h"

#ifdef _OPENMP
#include <omp.h>
#endif

/* The calling thread's number in the current OpenMP team (0 outside one). */
static inline int sfp_thread_id(void)
{
#ifdef _OPENMP
	return omp_get_thread_num();
#else
	return 0;
#endif
}

/*
 * tanh(u) without libm, in straight-line arithmetic the vectoriser turns
 * into SIMD (libm's tanhf is a scalar call: it took 57% of the GPT's
 * training time inside GELU). tanh is odd: with a = |u| clamped to 9 (tanh
 * is 1.0f beyond) and v = 2a = k ln2 + r, |r| <= ln2/2, q = e^r - 1 by its
 * Taylor series to r^7 (error below 6e-9 relative on that interval),
 * e^v - 1 = 2^k q + (2^k - 1), which is q itself when k = 0 (no
 * cancellation near 0), and tanh a = (e^v - 1) / (e^v - 1 + 2); then u's
 * sign. The selects are on the bits (NaN is given back as it came, -0 stays
 * -0), so nothing traps and nothing branches. Within 4 float ulps of tanhf
 * (tests/test_nn_layers.c sweeps the floats); the same bits on every ISA
 * level (no contraction under -std=c11).
 */
static inline float sfp_tanh_approx(float u)
{
	uint32_t ub;
	__builtin_memcpy(&ub, &u, sizeof ub);
	const uint32_t mag = ub & 0x7fffffffu, sign = ub & 0x80000000u;
	const uint32_t nan = 0u - (uint32_t)(mag > 0x7f800000u); /* all ones for NaN */
	const uint32_t cm = mag < 0x41100000u ? mag : 0x41100000u; /* |u| <= 9.0f, NaN too */
	float a;
	__builtin_memcpy(&a, &cm, sizeof a);
	const float v = 2.0f * a;
	const float kf = (float)(int32_t)(v * 1.44269504088896341f + 0.5f); /* v >= 0 */
	const float r = (v - kf * 0.693145751953125f) - kf * 1.42860682030941723212e-6f;
	const float q = r * (1.0f + r * (0.5f + r * (1.0f / 6 + r * (1.0f / 24 + r * (1.0f / 120 +
			  r * (1.0f / 720 + r * (1.0f / 5040)))))));
	const uint32_t sbits = ((uint32_t)(int32_t)kf + 127u) << 23;
	float s;
	__builtin_memcpy(&s, &sbits, sizeof s);
	const float em1 = s * q + (s - 1.0f);
	const float t = em1 / (em1 + 2.0f);
	uint32_t tb;
	__builtin_memcpy(&tb, &t, sizeof tb);
	tb = ((tb | sign) & ~nan) | (ub & nan);
	float out;
	__builtin_memcpy(&out, &tb, sizeof out);
	return out;
}

/* Element-wise loops are compiled for AVX-512, AVX2 and the baseline, and
 * the loader picks one for this CPU (gcc/clang function multi-versioning). */
#if defined(__x86_64__) && !defined(SFP_NO_CLONES)
#define SFP_VECTOR_CLONES __attribute__((target_clones("avx512f", "avx2", "default")))
#else
#define SFP_VECTOR_CLONES
#endif

/* ---- GEMM: C (M x N) = alpha op(A) (M x K) op(B) (K x N) + beta C ------------
 * Row-major; ta/tb select A^T / B^T as stored. `ws` holds SFP_GEMM_WS_FLOATS
 * floats of packing space; `isa` is the level to use (sfp_cpu_isa()). */
#define SFP_GEMM_MR 8
#define SFP_GEMM_NR 32
#define SFP_GEMM_MC 128
#define SFP_GEMM_KC 256
#define SFP_GEMM_NC 1024
#define SFP_GEMM_WS_FLOATS (SFP_GEMM_MC * SFP_GEMM_KC + SFP_GEMM_KC * SFP_GEMM_NC)
void sfp_gemm(int isa, int ta, int tb, int M, int N, int K, float alpha, const float *A, int lda,
	      const float *B, int ldb, float beta, float *C, int ldc, float *ws);
/* The obviously right version (double accumulation), for tests. */
void sfp_gemm_ref(int ta, int tb, int M, int N, int K, float alpha, const float *A, int lda,
		  const float *B, int ldb, float beta, float *C, int ldc);
void sfp_gemm_transpose8_avx512(float *dst, size_t dst_stride, const float *src, size_t lda,
				int kc);
void sfp_gemm_kernel_avx512(int kc, const float *ap, const float *bp, float *c, int ldc, int m,
			    int n, float alpha, float beta);

/* What the GEMM-based kernels need: the ISA level, the thread count and,
 * per thread, packing space, a convolution column buffer and a partial
 * weight-gradient buffer. */
typedef struct sfp_nn_ctx {
	int isa;
	int threads;
	float *gemm_ws;           /* threads x SFP_GEMM_WS_FLOATS */
	float *conv_ws;           /* threads x conv_ws_floats */
	size_t conv_ws_floats;
	float *partial;           /* threads x partial_floats (only when threads > 1) */
	size_t partial_floats;
} sfp_nn_ctx;

/* linear: out (B,O) = in (B,I) W^T (O,I) + b (O) */
void sfp_linear_forward(const sfp_nn_ctx *ctx, float *out, const float *in, const float *w, const float *b, int B, int ni,
			int no);
void sfp_linear_backward(const sfp_nn_ctx *ctx, float *din, float *dw, float *db, const float *dout, const float *in,
			 const float *w, int B, int ni, int no);

/* conv2d, NCHW: w (Co, Ci, k, k), b (Co); per-thread column space of
 * sfp_conv_ws_floats, and with threads > 1 partial gradients of Co*(Ci*k*k+1) */
typedef struct sfp_conv_dims {
	int ci, h, w;   /* input */
	int co, ho, wo; /* output */
	int k, stride, pad;
} sfp_conv_dims;
size_t sfp_conv_ws_floats(const sfp_conv_dims *d);
void sfp_conv2d_forward(const sfp_nn_ctx *ctx, float *out, const float *in, const float *w,
			const float *b, int B, const sfp_conv_dims *d);
void sfp_conv2d_backward(const sfp_nn_ctx *ctx, float *din, float *dw, float *db,
			 const float *dout, const float *in, const float *w, int B,
			 const sfp_conv_dims *d);

/* pools over (c, h, w) -> (c, ho, wo); padding cells are ignored (max) or
 * not counted (average). */
typedef struct sfp_pool_dims {
	int c, h, w, ho, wo, k, stride, pad;
} sfp_pool_dims;
/* maxpool keeps the input index of each output's maximum in `arg` (one per
 * output value) for backward */
void sfp_maxpool_forward(float *out, uint8_t *arg, const float *in, int B,
			 const sfp_pool_dims *d);
void sfp_maxpool_backward(float *din, const float *dout, const uint8_t *arg, int B,
			  const sfp_pool_dims *d);
void sfp_avgpool_forward(float *out, const float *in, int B, const sfp_pool_dims *d);
void sfp_avgpool_backward(float *din, const float *dout, int B, const sfp_pool_dims *d);

/* elementwise over n values */
void sfp_relu_forward(float *out, const float *in, size_t n);
void sfp_relu_backward(float *din, const float *dout, const float *in, size_t n);
/* in-place ReLU backward: g = dy where out > 0, else 0 */
void sfp_relu_mask_inplace(float *g, const float *out, size_t n);
void sfp_gelu_forward(float *out, const float *in, size_t n);
void sfp_gelu_backward(float *din, const float *dout, const float *in, size_t n);
void sfp_tanh_forward(float *out, const float *in, size_t n);
void sfp_tanh_backward(float *din, const float *dout, const float *out, size_t n);
/* inverted dropout over elements [first, first + n) of a tensor; the mask
 * is a pure function of (seed, element index) */
void sfp_dropout_forward(float *out, const float *in, size_t first, size_t n, float p,
			 uint32_t seed);
void sfp_dropout_backward(float *din, const float *dout, size_t first, size_t n, float p,
			  uint32_t seed);
void sfp_add_forward(float *out, const float *a, const float *b, size_t n);

/* batch norm over channels c of (B, c, hw): train mode uses batch statistics,
 * saves mean/invstd (c each) and updates the running stats; eval mode uses
 * the running stats. */
void sfp_batchnorm_forward(float *out, float *mean, float *invstd, float *run_mean,
			   float *run_var, const float *in, const float *gamma, const float *beta,
			   int B, int c, int hw, float eps, float momentum, int training);
void sfp_batchnorm_backward(float *din, float *dgamma, float *dbeta, const float *dout,
			    const float *in, const float *mean, const float *invstd,
			    const float *gamma, int B, int c, int hw);

/* softmax cross-entropy; dlogits (if non-NULL) = (softmax - onehot) / B */
float sfp_softmax_xent(float *dlogits, int *correct, const float *logits, const uint8_t *labels,
		       int B, int K);
/* The same over N rows (tokens) with int32 labels; a label outside [0, K)
 * gets no gradient and makes the returned loss NaN. */
float sfp_softmax_xent_tokens(float *dlogits, int *correct, const float *logits,
			      const int32_t *labels, int N, int K);

/* ---- sequence layers (transformer.c): per sample a [T, D] row-major tensor ---- */
/* embedding: out (n, dim) = rows of w (vocab, dim) picked by the ids (n
 * float32 values); an id that is not an exact integer in [0, vocab) gives
 * a zero row (and no gradient). Returns how many ids were such. */
size_t sfp_embedding_forward(float *out, const float *ids, const float *w, int n, int vocab,
			     int dim);
void sfp_embedding_backward(float *dw, const float *dout, const float *ids, int n, int vocab,
			    int dim);
/* learned positions: out (B, T, D) = in + pos (T, D) */
void sfp_position_forward(float *out, const float *in, const float *pos, int B, int T, int D);
void sfp_position_backward(float *din, float *dpos, const float *dout, int B, int T, int D);
/* layer norm over D features of each of N rows; keeps mean and 1/std per
 * row (N each) for backward */
void sfp_layernorm_forward(float *out, float *mean, float *rstd, const float *in,
			   const float *gamma, const float *beta, int N, int D, float eps);
void sfp_layernorm_backward(float *din, float *dgamma, float *dbeta, const float *dout,
			    const float *in, const float *mean, const float *rstd,
			    const float *gamma, int N, int D);
/* multi-head self-attention over (B, T, D). w: Wqkv (3D, D), Wo (D, D),
 * bqkv (3D), bo (D). Forward keeps for backward qkv (B, T, 3D), att (the
 * heads' outputs before the projection, (B, T, D)) and prob (B, H, T, T).
 * Backward's scratch: dqkv (B, T, 3D), datt (B, T, D), and (T, T) floats
 * per thread of the context's conv_ws. */
typedef struct sfp_attn_dims {
	int T, D, H, causal;
} sfp_attn_dims;
void sfp_attention_forward(const sfp_nn_ctx *ctx, float *out, float *qkv, float *att, float *prob,
			   const float *in, const float *w, int B, const sfp_attn_dims *d);
void sfp_attention_backward(const sfp_nn_ctx *ctx, float *din, float *dw, float *dqkv,
			    float *datt, const float *dout, const float *in, const float *qkv,
			    const float *att, const float *prob, const float *w, int B,
			    const sfp_attn_dims *d);

#endif
