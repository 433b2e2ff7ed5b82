/*
 * transformer.c -- forward/backward kernels of the sequence layers: token
 * embedding, learned positional embedding, layer norm over features and
 * multi-head self-attention (fused QKV projection, per-head softmax(q k^T /
 * sqrt(d_h) + causal mask) v, output projection), as GPT-2 and llm.c.
 *
 * A sequence tensor is [T, D] row-major per sample (docs/transformer.md).
 * The projections are sfp_linear_* over B*T rows (one GEMM each); the
 * per-head products q k^T, p v and their gradients are sfp_gemm calls on
 * strided views of qkv, one (sample, head) pair per OpenMP iteration, each
 * pair computed whole by one thread: the bits do not depend on the thread
 * count.
 */
#include <math.h>
#include <string.h>

#include "nn/nn_internal.h"

/* ---- embedding ------------------------------------------------------------ */
/* A token id is valid when it is an exact integer in [0, vocab). */
static int token_id(float x, int vocab)
{
	if (!(x >= 0.0f && x < (float)vocab) || x != floorf(x))
		return -1;
	return (int)x;
}

size_t sfp_embedding_forward(float *out, const float *ids, const float *w, int n, int vocab,
			     int dim)
{
	size_t bad = 0;
	for (int t = 0; t < n; t++) {
		const int id = token_id(ids[t], vocab);
		float *o = out + (size_t)t * dim; /* (dim) */
		if (id < 0) {
			memset(o, 0, (size_t)dim * sizeof(float));
			bad++;
			continue;
		}
		memcpy(o, w + (size_t)id * dim, (size_t)dim * sizeof(float));
	}
	return bad;
}

void sfp_embedding_backward(float *dw, const float *dout, const float *ids, int n, int vocab,
			    int dim)
{
	for (int t = 0; t < n; t++) {
		const int id = token_id(ids[t], vocab);
		if (id < 0)
			continue; /* a zero row in forward: no gradient */
		float *d = dw + (size_t)id * dim;
		const float *g = dout + (size_t)t * dim;
		for (int k = 0; k < dim; k++)
			d[k] += g[k];
	}
}

/* ---- learned positions ------------------------------------------------------ */
SFP_VECTOR_CLONES
void sfp_position_forward(float *out, const float *in, const float *pos, int B, int T, int D)
{
	const size_t n = (size_t)T * D;
	for (int s = 0; s < B; s++)
		for (size_t i = 0; i < n; i++)
			out[s * n + i] = in[s * n + i] + pos[i];
}

SFP_VECTOR_CLONES
void sfp_position_backward(float *din, float *dpos, const float *dout, int B, int T, int D)
{
	const size_t n = (size_t)T * D;
	for (int s = 0; s < B; s++)
		for (size_t i = 0; i < n; i++) {
			const float g = dout[s * n + i];
			dpos[i] += g;
			if (din)
				din[s * n + i] += g;
		}
}

/* ---- layer norm ------------------------------------------------------------- */
void sfp_layernorm_forward(float *out, float *mean, float *rstd, const float *in,
			   const float *gamma, const float *beta, int N, int D, float eps)
{
	for (int r = 0; r < N; r++) {
		const float *x = in + (size_t)r * D; /* (D) */
		float *y = out + (size_t)r * D;
		/* two passes in double, as batch norm: the mean, the centred variance */
		double s = 0.0, v = 0.0;
		for (int i = 0; i < D; i++)
			s += x[i];
		const double mu = s / D;
		for (int i = 0; i < D; i++)
			v += (x[i] - mu) * (x[i] - mu);
		const float m = (float)mu, rs = (float)(1.0 / sqrt(v / D + eps));
		for (int i = 0; i < D; i++)
			y[i] = (x[i] - m) * rs * gamma[i] + beta[i];
		mean[r] = m;
		rstd[r] = rs;
	}
}

void sfp_layernorm_backward(float *din, float *dgamma, float *dbeta, const float *dout,
			    const float *in, const float *mean, const float *rstd,
			    const float *gamma, int N, int D)
{
	for (int r = 0; r < N; r++) {
		const float *x = in + (size_t)r * D, *g = dout + (size_t)r * D;
		const float m = mean[r], rs = rstd[r];
		/* dx = rstd (dy gamma - mean(dy gamma) - xhat mean(dy gamma xhat)) */
		float sg = 0.0f, sgx = 0.0f;
		for (int i = 0; i < D; i++) {
			const float xh = (x[i] - m) * rs, gg = g[i] * gamma[i];
			sg += gg;
			sgx += gg * xh;
			dgamma[i] += g[i] * xh;
			dbeta[i] += g[i];
		}
		if (!din)
			continue;
		sg /= (float)D;
		sgx /= (float)D;
		float *dx = din + (size_t)r * D;
		for (int i = 0; i < D; i++) {
			const float xh = (x[i] - m) * rs;
			dx[i] += rs * (g[i] * gamma[i] - sg - xh * sgx);
		}
	}
}

/* ---- attention ---------------------------------------------------------------- */
/* The weights as one block: Wqkv (3D, D), Wo (D, D), then bqkv (3D), bo (D). */
typedef struct attn_w {
	const float *wqkv, *wo, *bqkv, *bo;
} attn_w;

static attn_w attn_split(const float *w, int D)
{
	const size_t dd = (size_t)D * D;
	return (attn_w){w, w + 3 * dd, w + 4 * dd, w + 4 * dd + 3 * (size_t)D};
}

static float *gemm_ws(const sfp_nn_ctx *ctx, int t)
{
	return ctx->gemm_ws + (size_t)t * SFP_GEMM_WS_FLOATS;
}

/* Row i of the scores s (T) to probabilities: softmax over the columns a
 * causal mask keeps (j <= i), zero beyond. */
static void softmax_row(float *p, const float *s, int n_keep, int T)
{
	float mx = s[0];
	for (int j = 1; j < n_keep; j++)
		mx = s[j] > mx ? s[j] : mx;
	float sum = 0.0f;
	for (int j = 0; j < n_keep; j++) {
		p[j] = expf(s[j] - mx);
		sum += p[j];
	}
	const float inv = 1.0f / sum;
	for (int j = 0; j < n_keep; j++)
		p[j] *= inv;
	for (int j = n_keep; j < T; j++)
		p[j] = 0.0f;
}

void sfp_attention_forward(const sfp_nn_ctx *ctx, float *out, float *qkv, float *att, float *prob,
			   const float *in, const float *w, int B, const sfp_attn_dims *d)
{
	const int T = d->T, D = d->D, H = d->H, dh = D / H;
	const attn_w aw = attn_split(w, D);
	const float scale = 1.0f / sqrtf((float)dh);
	/* qkv (B*T, 3D) = in (B*T, D) Wqkv^T + bqkv */
	sfp_linear_forward(ctx, qkv, in, aw.wqkv, aw.bqkv, B * T, D, 3 * D);
#pragma omp parallel for num_threads(ctx->threads) schedule(static) if (ctx->threads > 1)
	for (int sh = 0; sh < B * H; sh++) {
		const int s = sh / H, h = sh % H, t = sfp_thread_id();
		const float *q = qkv + (size_t)s * T * 3 * D + (size_t)h * dh; /* (T, dh), ld 3D */
		const float *k = q + D, *v = q + 2 * D;
		float *p = prob + (size_t)sh * T * T; /* (T, T) */
		float *a = att + (size_t)s * T * D + (size_t)h * dh; /* (T, dh), ld D */
		/* p = softmax(scale q k^T + mask) row by row, in place */
		sfp_gemm(ctx->isa, 0, 1, T, T, dh, scale, q, 3 * D, k, 3 * D, 0.0f, p, T,
			 gemm_ws(ctx, t));
		for (int i = 0; i < T; i++)
			softmax_row(p + (size_t)i * T, p + (size_t)i * T, d->causal ? i + 1 : T, T);
		/* a = p v */
		sfp_gemm(ctx->isa, 0, 0, T, dh, T, 1.0f, p, T, v, 3 * D, 0.0f, a, D, gemm_ws(ctx, t));
	}
	/* out (B*T, D) = att Wo^T + bo */
	sfp_linear_forward(ctx, out, att, aw.wo, aw.bo, B * T, D, D);
}

void sfp_attention_backward(const sfp_nn_ctx *ctx, float *din, float *dw, float *dqkv,
			    float *datt, const float *dout, const float *in, const float *qkv,
			    const float *att, const float *prob, const float *w, int B,
			    const sfp_attn_dims *d)
{
	const int T = d->T, D = d->D, H = d->H, dh = D / H;
	const size_t dd = (size_t)D * D;
	const attn_w aw = attn_split(w, D);
	float *dwqkv = dw, *dwo = dw + 3 * dd, *dbqkv = dw + 4 * dd, *dbo = dbqkv + 3 * D;
	const float scale = 1.0f / sqrtf((float)dh);
	/* through the output projection: datt (B*T, D) = dout Wo */
	memset(datt, 0, (size_t)B * T * D * sizeof(float));
	sfp_linear_backward(ctx, datt, dwo, dbo, dout, att, aw.wo, B * T, D, D);
#pragma omp parallel for num_threads(ctx->threads) schedule(static) if (ctx->threads > 1)
	for (int sh = 0; sh < B * H; sh++) {
		const int s = sh / H, h = sh % H, t = sfp_thread_id();
		const size_t row0 = (size_t)s * T;
		const float *q = qkv + row0 * 3 * D + (size_t)h * dh, *k = q + D, *v = q + 2 * D;
		float *dq = dqkv + row0 * 3 * D + (size_t)h * dh, *dk = dq + D, *dv = dq + 2 * D;
		const float *p = prob + (size_t)sh * T * T;
		const float *da = datt + row0 * D + (size_t)h * dh; /* (T, dh), ld D */
		float *ds = ctx->conv_ws + (size_t)t * ctx->conv_ws_floats; /* (T, T) */
		float *gws = gemm_ws(ctx, t);
		/* dv = p^T da; dp = da v^T */
		sfp_gemm(ctx->isa, 1, 0, T, dh, T, 1.0f, p, T, da, D, 0.0f, dv, 3 * D, gws);
		sfp_gemm(ctx->isa, 0, 1, T, T, dh, 1.0f, da, D, v, 3 * D, 0.0f, ds, T, gws);
		/* softmax backward: ds_ij = scale p_ij (dp_ij - sum_k p_ik dp_ik);
		 * masked entries have p = 0, so they get none */
		for (int i = 0; i < T; i++) {
			const float *pi = p + (size_t)i * T;
			float *di = ds + (size_t)i * T, dot = 0.0f;
			for (int j = 0; j < T; j++)
				dot += pi[j] * di[j];
			for (int j = 0; j < T; j++)
				di[j] = scale * pi[j] * (di[j] - dot);
		}
		/* dq = ds k; dk = ds^T q */
		sfp_gemm(ctx->isa, 0, 0, T, dh, T, 1.0f, ds, T, k, 3 * D, 0.0f, dq, 3 * D, gws);
		sfp_gemm(ctx->isa, 1, 0, T, dh, T, 1.0f, ds, T, q, 3 * D, 0.0f, dk, 3 * D, gws);
	}
	/* through the QKV projection */
	sfp_linear_backward(ctx, din, dwqkv, dbqkv, dqkv, in, aw.wqkv, B * T, D, 3 * D);
}
