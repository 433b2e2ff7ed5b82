/*
 * layers.c -- forward/backward kernels of the built-in layers. GEMMs go
 * through sfp_gemm (gemm.c); convolution is im2col per sample + GEMM, which
 * keeps the column buffer of one sample in cache.
 */
#include <float.h>
#include <math.h>
#include <stdint.h>
#include <string.h>

#include "nn/nn_internal.h"

/* Thread `t`'s slices of the context's workspaces. */
static float *gemm_ws_of(const sfp_nn_ctx *ctx, int t)
{
	return ctx->gemm_ws + (size_t)t * SFP_GEMM_WS_FLOATS;
}

/* ---- linear ------------------------------------------------------------- */
/* C split among the context's threads, by column panels when there are
 * enough (each thread then packs only its own part of B), else by rows in
 * MR multiples; each thread packs into its own workspace. The split changes
 * no sum: every C element is computed whole by one thread. */
static void gemm_rows_mt(const sfp_nn_ctx *ctx, int ta, int tb, int M, int N, int K,
			 const float *A, int lda, const float *Bm, int ldb, float beta, float *C,
			 int ldc)
{
	const int T = ctx->threads;
	const int by_cols = N >= 2 * SFP_GEMM_NR * T, by_rows = M >= 2 * SFP_GEMM_MR * T;
	if (T <= 1 || (!by_cols && !by_rows)) {
		sfp_gemm(ctx->isa, ta, tb, M, N, K, 1.0f, A, lda, Bm, ldb, beta, C, ldc,
			 ctx->gemm_ws);
		return;
	}
#pragma omp parallel num_threads(T)
	{
		const int t = sfp_thread_id();
		if (by_cols) {
			int per = ((N + T - 1) / T + SFP_GEMM_NR - 1) / SFP_GEMM_NR * SFP_GEMM_NR;
			int n0 = t * per, n1 = n0 + per < N ? n0 + per : N;
			if (n0 < n1) {
				const float *b = tb ? Bm + (size_t)n0 * ldb : Bm + n0;
				sfp_gemm(ctx->isa, ta, tb, M, n1 - n0, K, 1.0f, A, lda, b, ldb, beta,
					 C + n0, ldc, gemm_ws_of(ctx, t));
			}
		} else {
			int per = ((M + T - 1) / T + SFP_GEMM_MR - 1) / SFP_GEMM_MR * SFP_GEMM_MR;
			int m0 = t * per, m1 = m0 + per < M ? m0 + per : M;
			if (m0 < m1) {
				const float *a = ta ? A + m0 : A + (size_t)m0 * lda;
				sfp_gemm(ctx->isa, ta, tb, m1 - m0, N, K, 1.0f, a, lda, Bm, ldb, beta,
					 C + (size_t)m0 * ldc, ldc, gemm_ws_of(ctx, t));
			}
		}
	}
}

void sfp_linear_forward(const sfp_nn_ctx *ctx, float *out, const float *in, const float *w,
			const float *b, int B, int ni, int no)
{
	/* out (B,O) = in (B,I) . W^T */
	gemm_rows_mt(ctx, 0, 1, B, no, ni, in, ni, w, ni, 0.0f, out, no);
	if (b)
		for (int s = 0; s < B; s++) {
			float *o = out + (size_t)s * no;
			for (int j = 0; j < no; j++)
				o[j] += b[j];
		}
}

void sfp_linear_backward(const sfp_nn_ctx *ctx, float *din, float *dw, float *db,
			 const float *dout, const float *in, const float *w, int B, int ni, int no)
{
	/* dW (O,I) += dout^T (O,B) . in (B,I) */
	gemm_rows_mt(ctx, 1, 0, no, ni, B, dout, no, in, ni, 1.0f, dw, ni);
	if (db)
		for (int s = 0; s < B; s++) {
			const float *g = dout + (size_t)s * no;
			for (int j = 0; j < no; j++)
				db[j] += g[j];
		}
	/* din (B,I) += dout (B,O) . W (O,I) */
	if (din)
		gemm_rows_mt(ctx, 0, 0, B, ni, no, dout, no, w, ni, 1.0f, din, ni);
}

/* ---- conv2d ------------------------------------------------------------- */
static int conv_is_pointwise(const sfp_conv_dims *d)
{
	return d->k == 1 && d->stride == 1 && d->pad == 0;
}

size_t sfp_conv_ws_floats(const sfp_conv_dims *d)
{
	return conv_is_pointwise(d) ? 0 : 2 * (size_t)d->ci * d->k * d->k * d->ho * d->wo;
}

/* col (ci*k*k, ho*wo): row (c, ky, kx), column (oy, ox). */
SFP_VECTOR_CLONES
static void im2col(float *col, const float *in, const sfp_conv_dims *d)
{
	const int hw = d->ho * d->wo;
	for (int c = 0; c < d->ci; c++) {
		const float *plane = in + (size_t)c * d->h * d->w;
		for (int ky = 0; ky < d->k; ky++)
			for (int kx = 0; kx < d->k; kx++) {
				float *row = col + ((size_t)(c * d->k + ky) * d->k + kx) * hw;
				for (int oy = 0; oy < d->ho; oy++) {
					int iy = oy * d->stride - d->pad + ky;
					float *r = row + oy * d->wo;
					if (iy < 0 || iy >= d->h) {
						memset(r, 0, sizeof(float) * d->wo);
						continue;
					}
					const float *src = plane + (size_t)iy * d->w;
					if (d->stride == 1) {
						/* contiguous run with zero edges */
						int ox0 = d->pad - kx, ox1 = d->w + d->pad - kx;
						if (ox0 < 0)
							ox0 = 0;
						if (ox1 > d->wo)
							ox1 = d->wo;
						if (ox1 < ox0)
							ox1 = ox0;
						/* short rows: an inline loop beats a memcpy call */
						const float *sx = src - d->pad + kx;
						for (int ox = 0; ox < ox0; ox++)
							r[ox] = 0.0f;
						for (int ox = ox0; ox < ox1; ox++)
							r[ox] = sx[ox];
						for (int ox = ox1; ox < d->wo; ox++)
							r[ox] = 0.0f;
					} else {
						for (int ox = 0; ox < d->wo; ox++) {
							int ix = ox * d->stride - d->pad + kx;
							r[ox] = (ix >= 0 && ix < d->w) ? src[ix] : 0.0f;
						}
					}
				}
			}
	}
}

/* din += col2im(dcol) */
SFP_VECTOR_CLONES
static void col2im_add(float *din, const float *col, const sfp_conv_dims *d)
{
	const int hw = d->ho * d->wo;
	for (int c = 0; c < d->ci; c++) {
		float *plane = din + (size_t)c * d->h * d->w;
		for (int ky = 0; ky < d->k; ky++)
			for (int kx = 0; kx < d->k; kx++) {
				const float *row = col + ((size_t)(c * d->k + ky) * d->k + kx) * hw;
				/* output columns whose input column is inside the image */
				int ox0 = 0, ox1 = d->wo;
				while (ox0 < ox1 && ox0 * d->stride - d->pad + kx < 0)
					ox0++;
				while (ox1 > ox0 && (ox1 - 1) * d->stride - d->pad + kx >= d->w)
					ox1--;
				for (int oy = 0; oy < d->ho; oy++) {
					int iy = oy * d->stride - d->pad + ky;
					if (iy < 0 || iy >= d->h)
						continue;
					float *dst = plane + (size_t)iy * d->w - d->pad + kx;
					const float *r = row + oy * d->wo;
					if (d->stride == 1)
						for (int ox = ox0; ox < ox1; ox++)
							dst[ox] += r[ox];
					else
						for (int ox = ox0; ox < ox1; ox++)
							dst[ox * d->stride] += r[ox];
				}
			}
	}
}

void sfp_conv2d_forward(const sfp_nn_ctx *ctx, float *out, const float *in, const float *w,
			const float *b, int B, const sfp_conv_dims *d)
{
	const int K = d->ci * d->k * d->k, hw = d->ho * d->wo;
	const size_t in_n = (size_t)d->ci * d->h * d->w, out_n = (size_t)d->co * hw;
#pragma omp parallel for num_threads(ctx->threads) schedule(static) if (ctx->threads > 1)
	for (int s = 0; s < B; s++) {
		const int t = sfp_thread_id();
		float *ws = ctx->conv_ws + (size_t)t * ctx->conv_ws_floats;
		const float *x = in + s * in_n;
		float *y = out + s * out_n;
		const float *col = x;
		if (!conv_is_pointwise(d)) {
			im2col(ws, x, d);
			col = ws;
		}
		/* y (co, hw) = W (co, K) . col (K, hw) */
		sfp_gemm(ctx->isa, 0, 0, d->co, hw, K, 1.0f, w, K, col, hw, 0.0f, y, hw,
			 gemm_ws_of(ctx, t));
		if (b)
			for (int o = 0; o < d->co; o++) {
				float *yo = y + (size_t)o * hw, bo = b[o];
				for (int i = 0; i < hw; i++)
					yo[i] += bo;
			}
	}
}

/* Samples [s0, s1) of the backward pass, accumulating into dw/db. */
static void conv2d_backward_range(const sfp_nn_ctx *ctx, int t, float *din, float *dw, float *db,
				  const float *dout, const float *in, const float *w, int s0,
				  int s1, const sfp_conv_dims *d)
{
	const int K = d->ci * d->k * d->k, hw = d->ho * d->wo;
	const size_t in_n = (size_t)d->ci * d->h * d->w, out_n = (size_t)d->co * hw;
	const int pw = conv_is_pointwise(d);
	float *col = ctx->conv_ws + (size_t)t * ctx->conv_ws_floats, *dcol = col + (size_t)K * hw;
	float *gws = gemm_ws_of(ctx, t);
	for (int s = s0; s < s1; s++) {
		const float *x = in + s * in_n, *g = dout + s * out_n;
		const float *c = x;
		if (!pw) {
			im2col(col, x, d);
			c = col;
		}
		/* dW (co, K) += g (co, hw) . col^T (hw, K) */
		sfp_gemm(ctx->isa, 0, 1, d->co, K, hw, 1.0f, g, hw, c, hw, 1.0f, dw, K, gws);
		if (db)
			for (int o = 0; o < d->co; o++) {
				const float *go = g + (size_t)o * hw;
				float acc = 0.0f;
				for (int i = 0; i < hw; i++)
					acc += go[i];
				db[o] += acc;
			}
		if (!din)
			continue;
		if (pw) {
			/* din (ci, hw) += W^T (ci, co) . g (co, hw) */
			sfp_gemm(ctx->isa, 1, 0, K, hw, d->co, 1.0f, w, K, g, hw, 1.0f, din + s * in_n,
				 hw, gws);
		} else {
			sfp_gemm(ctx->isa, 1, 0, K, hw, d->co, 1.0f, w, K, g, hw, 0.0f, dcol, hw, gws);
			col2im_add(din + s * in_n, dcol, d);
		}
	}
}

/*
 * With several threads each takes a contiguous range of samples and sums
 * its weight gradient into its own buffer; the buffers are then added to
 * dw in thread order, so a given thread count always gives the same bits.
 */
void sfp_conv2d_backward(const sfp_nn_ctx *ctx, float *din, float *dw, float *db,
			 const float *dout, const float *in, const float *w, int B,
			 const sfp_conv_dims *d)
{
	const int T = ctx->threads < B ? ctx->threads : B;
	if (T <= 1) {
		conv2d_backward_range(ctx, 0, din, dw, db, dout, in, w, 0, B, d);
		return;
	}
	const size_t nw = (size_t)d->co * d->ci * d->k * d->k, np = nw + (size_t)d->co;
#pragma omp parallel num_threads(T)
	{
		const int t = sfp_thread_id();
		float *pw = ctx->partial + (size_t)t * ctx->partial_floats;
		memset(pw, 0, np * sizeof(float));
		int s0 = (int)((int64_t)B * t / T), s1 = (int)((int64_t)B * (t + 1) / T);
		conv2d_backward_range(ctx, t, din, pw, db ? pw + nw : NULL, dout, in, w, s0, s1, d);
	}
	for (int t = 0; t < T; t++) {
		const float *pw = ctx->partial + (size_t)t * ctx->partial_floats;
		for (size_t i = 0; i < nw; i++)
			dw[i] += pw[i];
		if (db)
			for (int o = 0; o < d->co; o++)
				db[o] += pw[nw + o];
	}
}

/* ---- pools -------------------------------------------------------------- */
/* The argmax of each window is kept for backward as its position in the
 * window, ky * k + kx: one byte (k <= 16, checked when the model is built). */
SFP_VECTOR_CLONES
void sfp_maxpool_forward(float *out, uint8_t *arg, const float *in, int B,
			 const sfp_pool_dims *d)
{
	const size_t planes = (size_t)B * d->c;
	if (d->k == 2 && d->stride == 2 && d->pad == 0) {
		/* the common 2x2 window, without bounds checks (same first-max rule) */
		for (size_t p = 0; p < planes; p++) {
			const float *x = in + p * d->h * d->w;
			float *y = out + p * d->ho * d->wo;
			uint8_t *ai = arg + p * d->ho * d->wo;
			for (int oy = 0; oy < d->ho; oy++) {
				const float *r0 = x + (size_t)(2 * oy) * d->w, *r1 = r0 + d->w;
				for (int ox = 0; ox < d->wo; ox++) {
					/* selects, not branches: the comparisons are data-random */
					int i0 = 2 * ox, best = 0;
					float m = r0[i0], v;
					int t;
					v = r0[i0 + 1];
					t = v > m;
					m = t ? v : m;
					best = t ? 1 : best;
					v = r1[i0];
					t = v > m;
					m = t ? v : m;
					best = t ? 2 : best;
					v = r1[i0 + 1];
					t = v > m;
					m = t ? v : m;
					best = t ? 3 : best;
					y[oy * d->wo + ox] = m;
					ai[oy * d->wo + ox] = (uint8_t)best;
				}
			}
		}
		return;
	}
	for (size_t p = 0; p < planes; p++) {
		const float *x = in + p * d->h * d->w;
		float *y = out + p * d->ho * d->wo;
		uint8_t *ai = arg + p * d->ho * d->wo;
		for (int oy = 0; oy < d->ho; oy++)
			for (int ox = 0; ox < d->wo; ox++) {
				/* the first maximum of the window; its position feeds backward */
				float m = -INFINITY;
				int best = -1;
				int y0 = oy * d->stride - d->pad, x0 = ox * d->stride - d->pad;
				for (int ky = 0; ky < d->k; ky++) {
					int iy = y0 + ky;
					if (iy < 0 || iy >= d->h)
						continue;
					for (int kx = 0; kx < d->k; kx++) {
						int ix = x0 + kx;
						if (ix >= 0 && ix < d->w &&
						    (best < 0 || x[iy * d->w + ix] > m)) {
							m = x[iy * d->w + ix];
							best = ky * d->k + kx;
						}
					}
				}
				y[oy * d->wo + ox] = m;
				ai[oy * d->wo + ox] = (uint8_t)best;
			}
	}
}

SFP_VECTOR_CLONES
void sfp_maxpool_backward(float *din, const float *dout, const uint8_t *arg, int B,
			  const sfp_pool_dims *d)
{
	if (!din)
		return;
	const size_t planes = (size_t)B * d->c, no = (size_t)d->ho * d->wo;
	for (size_t p = 0; p < planes; p++) {
		float *dx = din + p * d->h * d->w;
		const float *g = dout + p * no;
		const uint8_t *ai = arg + p * no;
		for (int oy = 0; oy < d->ho; oy++)
			for (int ox = 0; ox < d->wo; ox++) {
				const int a = ai[oy * d->wo + ox];
				const int iy = oy * d->stride - d->pad + a / d->k;
				const int ix = ox * d->stride - d->pad + a % d->k;
				dx[iy * d->w + ix] += g[oy * d->wo + ox];
			}
	}
}

/* The window of output (oy, ox), clipped to the input: rows [y0, y1),
 * columns [x0, x1). Average pooling divides by its area (padding is not
 * counted). */
typedef struct pool_win {
	int y0, y1, x0, x1;
} pool_win;

static pool_win pool_window(const sfp_pool_dims *d, int oy, int ox)
{
	pool_win w = {oy * d->stride - d->pad, 0, ox * d->stride - d->pad, 0};
	w.y1 = w.y0 + d->k < d->h ? w.y0 + d->k : d->h;
	w.x1 = w.x0 + d->k < d->w ? w.x0 + d->k : d->w;
	w.y0 = w.y0 < 0 ? 0 : w.y0;
	w.x0 = w.x0 < 0 ? 0 : w.x0;
	return w;
}

SFP_VECTOR_CLONES
void sfp_avgpool_forward(float *out, const float *in, int B, const sfp_pool_dims *d)
{
	const size_t planes = (size_t)B * d->c;
	for (size_t p = 0; p < planes; p++) {
		const float *x = in + p * d->h * d->w;
		float *y = out + p * d->ho * d->wo;
		for (int oy = 0; oy < d->ho; oy++)
			for (int ox = 0; ox < d->wo; ox++) {
				const pool_win w = pool_window(d, oy, ox);
				float acc = 0.0f;
				for (int iy = w.y0; iy < w.y1; iy++)
					for (int ix = w.x0; ix < w.x1; ix++)
						acc += x[iy * d->w + ix];
				y[oy * d->wo + ox] = acc / (float)((w.y1 - w.y0) * (w.x1 - w.x0));
			}
	}
}

SFP_VECTOR_CLONES
void sfp_avgpool_backward(float *din, const float *dout, int B, const sfp_pool_dims *d)
{
	if (!din)
		return;
	const size_t planes = (size_t)B * d->c;
	for (size_t p = 0; p < planes; p++) {
		float *dx = din + p * d->h * d->w;
		const float *g = dout + p * d->ho * d->wo;
		for (int oy = 0; oy < d->ho; oy++)
			for (int ox = 0; ox < d->wo; ox++) {
				const pool_win w = pool_window(d, oy, ox);
				const float v = g[oy * d->wo + ox] / (float)((w.y1 - w.y0) * (w.x1 - w.x0));
				for (int iy = w.y0; iy < w.y1; iy++)
					for (int ix = w.x0; ix < w.x1; ix++)
						dx[iy * d->w + ix] += v;
			}
	}
}

/* ---- elementwise -------------------------------------------------------- */
/* The ReLU loops are written without branches (signs are random, so a
 * branch would be mispredicted half the time) and so that gcc vectorises
 * them; in place (out == in) takes its own loop, as the vectoriser gives up
 * on exactly overlapping arrays. NaN maps to 0, as `x > 0` is false. */
SFP_VECTOR_CLONES
void sfp_relu_forward(float *out, const float *in, size_t n)
{
	if (out == in) {
		for (size_t i = 0; i < n; i++)
			out[i] = out[i] > 0.0f ? out[i] : 0.0f;
		return;
	}
	for (size_t i = 0; i < n; i++)
		out[i] = in[i] > 0.0f ? in[i] : 0.0f;
}

SFP_VECTOR_CLONES
void sfp_relu_backward(float *din, const float *dout, const float *in, size_t n)
{
	if (!din)
		return;
	for (size_t i = 0; i < n; i++)
		din[i] += in[i] > 0.0f ? dout[i] : 0.0f;
}

SFP_VECTOR_CLONES
void sfp_relu_mask_inplace(float *g, const float *out, size_t n)
{
	for (size_t i = 0; i < n; i++)
		g[i] = out[i] > 0.0f ? g[i] : 0.0f;
}

/* GELU, tanh approximation: 0.5 x (1 + tanh(s (x + 0.044715 x^3))), s = sqrt(2/pi) */
#define GELU_S 0.7978845608028654f
#define GELU_C 0.044715f

SFP_VECTOR_CLONES
void sfp_gelu_forward(float *out, const float *in, size_t n)
{
#pragma omp simd
	for (size_t i = 0; i < n; i++) {
		float x = in[i];
		out[i] = 0.5f * x * (1.0f + sfp_tanh_approx(GELU_S * (x + GELU_C * x * x * x)));
	}
}

SFP_VECTOR_CLONES
void sfp_gelu_backward(float *din, const float *dout, const float *in, size_t n)
{
	if (!din)
		return;
#pragma omp simd
	for (size_t i = 0; i < n; i++) {
		float x = in[i];
		float u = GELU_S * (x + GELU_C * x * x * x);
		float t = sfp_tanh_approx(u);
		float du = GELU_S * (1.0f + 3.0f * GELU_C * x * x);
		din[i] += dout[i] * (0.5f * (1.0f + t) + 0.5f * x * (1.0f - t * t) * du);
	}
}

SFP_VECTOR_CLONES
void sfp_tanh_forward(float *out, const float *in, size_t n)
{
#pragma omp simd
	for (size_t i = 0; i < n; i++)
		out[i] = sfp_tanh_approx(in[i]);
}

void sfp_tanh_backward(float *din, const float *dout, const float *out, size_t n)
{
	if (!din)
		return;
	for (size_t i = 0; i < n; i++)
		din[i] += dout[i] * (1.0f - out[i] * out[i]);
}

/* Keep element i when its hash, as a fraction of 2^32, is >= p. */
static inline int dropout_keep(uint32_t seed, size_t i, uint32_t threshold)
{
	return sfp_hash32(seed, (uint32_t)i) >= threshold;
}

static uint32_t dropout_threshold(float p)
{
	double t = (double)p * 4294967296.0;
	return t >= 4294967295.0 ? 4294967295u : (uint32_t)t;
}

SFP_VECTOR_CLONES
void sfp_dropout_forward(float *out, const float *in, size_t first, size_t n, float p,
			 uint32_t seed)
{
	const uint32_t th = dropout_threshold(p);
	const float scale = 1.0f / (1.0f - p);
	for (size_t i = 0; i < n; i++)
		out[i] = dropout_keep(seed, first + i, th) ? in[i] * scale : 0.0f;
}

SFP_VECTOR_CLONES
void sfp_dropout_backward(float *din, const float *dout, size_t first, size_t n, float p,
			  uint32_t seed)
{
	if (!din)
		return;
	const uint32_t th = dropout_threshold(p);
	const float scale = 1.0f / (1.0f - p);
	for (size_t i = 0; i < n; i++)
		if (dropout_keep(seed, first + i, th))
			din[i] += dout[i] * scale;
}

SFP_VECTOR_CLONES
void sfp_add_forward(float *out, const float *a, const float *b, size_t n)
{
	for (size_t i = 0; i < n; i++)
		out[i] = a[i] + b[i];
}

/* ---- batch norm --------------------------------------------------------- */
SFP_VECTOR_CLONES
void sfp_batchnorm_forward(float *out, float *mean, float *invstd, float *run_mean,
			   float *run_var, const float *in, const float *gamma, const float *beta,
			   int B, int c, int hw, float eps, float momentum, int training)
{
	const double cnt = (double)B * hw;
	for (int ch = 0; ch < c; ch++) {
		float mu, is;
		if (training) {
			/* two passes in double: the mean, then the centred variance */
			double s = 0.0;
			for (int b = 0; b < B; b++) {
				const float *x = in + ((size_t)b * c + ch) * hw;
				for (int i = 0; i < hw; i++)
					s += x[i];
			}
			double m = s / cnt, v = 0.0;
			for (int b = 0; b < B; b++) {
				const float *x = in + ((size_t)b * c + ch) * hw;
				for (int i = 0; i < hw; i++) {
					double dx = x[i] - m;
					v += dx * dx;
				}
			}
			v /= cnt;
			mu = (float)m;
			is = (float)(1.0 / sqrt(v + eps));
			mean[ch] = mu;
			invstd[ch] = is;
			double unbiased = cnt > 1 ? v * cnt / (cnt - 1) : v;
			if (training == 1) { /* not when re-computing a forward */
				run_mean[ch] = (1.0f - momentum) * run_mean[ch] + momentum * mu;
				run_var[ch] = (1.0f - momentum) * run_var[ch] + momentum * (float)unbiased;
			}
		} else {
			mu = run_mean[ch];
			is = 1.0f / sqrtf(run_var[ch] + eps);
		}
		const float g = gamma[ch] * is, sh = beta[ch] - mu * g;
		for (int b = 0; b < B; b++) {
			const float *x = in + ((size_t)b * c + ch) * hw;
			float *y = out + ((size_t)b * c + ch) * hw;
			for (int i = 0; i < hw; i++)
				y[i] = x[i] * g + sh;
		}
	}
}

SFP_VECTOR_CLONES
void sfp_batchnorm_backward(float *din, float *dgamma, float *dbeta, const float *dout,
			    const float *in, const float *mean, const float *invstd,
			    const float *gamma, int B, int c, int hw)
{
	const float cnt = (float)B * hw;
	for (int ch = 0; ch < c; ch++) {
		const float mu = mean[ch], is = invstd[ch];
		double sg = 0.0, sgx = 0.0; /* sum dout, sum dout * xhat */
		for (int b = 0; b < B; b++) {
			const float *x = in + ((size_t)b * c + ch) * hw;
			const float *g = dout + ((size_t)b * c + ch) * hw;
			for (int i = 0; i < hw; i++) {
				sg += g[i];
				sgx += g[i] * (x[i] - mu) * is;
			}
		}
		dgamma[ch] += (float)sgx;
		dbeta[ch] += (float)sg;
		if (!din)
			continue;
		/* dx = gamma * invstd / N * (N dy - sum dy - xhat sum dy xhat) */
		const float k = gamma[ch] * is / cnt;
		const float a = (float)sg, bx = (float)sgx;
		for (int b = 0; b < B; b++) {
			const float *x = in + ((size_t)b * c + ch) * hw;
			const float *g = dout + ((size_t)b * c + ch) * hw;
			float *dx = din + ((size_t)b * c + ch) * hw;
			for (int i = 0; i < hw; i++) {
				float xh = (x[i] - mu) * is;
				dx[i] += k * (cnt * g[i] - a - xh * bx);
			}
		}
	}
}

/* ---- loss --------------------------------------------------------------- */
/* One row of K logits z against `label`: its loss, whether the first
 * maximum is the label, and d = (softmax - onehot) / div when d != NULL. */
static double xent_row(float *d, int *hit, const float *z, int label, int K, float div)
{
	int arg = 0;
	float mx = z[0];
	for (int k = 1; k < K; k++)
		if (z[k] > mx) {
			mx = z[k];
			arg = k;
		}
	*hit = arg == label;
	double sum = 0.0;
	for (int k = 0; k < K; k++)
		sum += exp((double)(z[k] - mx));
	double lse = log(sum) + mx;
	if (d)
		for (int k = 0; k < K; k++) {
			float p = (float)exp(z[k] - lse);
			d[k] = (p - (k == label ? 1.0f : 0.0f)) / div;
		}
	return lse - z[label];
}

float sfp_softmax_xent(float *dlogits, int *correct, const float *logits, const uint8_t *labels,
		       int B, int K)
{
	double loss = 0.0;
	int ok = 0;
	for (int s = 0; s < B; s++) {
		int hit;
		loss += xent_row(dlogits ? dlogits + (size_t)s * K : NULL, &hit,
				 logits + (size_t)s * K, labels[s], K, (float)B);
		ok += hit;
	}
	if (correct)
		*correct = ok;
	return (float)(loss / B);
}

float sfp_softmax_xent_tokens(float *dlogits, int *correct, const float *logits,
			      const int32_t *labels, int N, int K)
{
	double loss = 0.0;
	int ok = 0;
	for (int r = 0; r < N; r++) {
		float *d = dlogits ? dlogits + (size_t)r * K : NULL;
		if (labels[r] < 0 || labels[r] >= K) {
			loss = NAN;
			if (d)
				memset(d, 0, (size_t)K * sizeof(float));
			continue;
		}
		int hit;
		loss += xent_row(d, &hit, logits + (size_t)r * K, labels[r], K, (float)N);
		ok += hit;
	}
	if (correct)
		*correct = ok;
	return (float)(loss / N);
}
