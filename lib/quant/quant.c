/*
 * quant.c -- Quantum Mantissa / Quantum Exponent widths, the footprint
 * penalty and the BitWave controller (include/sfp/quant.h).
 */
#include <math.h>
#include <string.h>

#include "sfp/quant.h"

static float clampf(float v, float lo, float hi)
{
	return v < lo ? lo : v > hi ? hi : v;
}

void sfp_qtensor_init(sfp_qtensor *t, float e, float m, uint64_t size)
{
	memset(t, 0, sizeof *t);
	t->m = (sfp_qwidth){clampf(m, 0.0f, 23.0f), 0.0f, 0.0f, 23.0f};
	t->e = (sfp_qwidth){clampf(e, 1.0f, 8.0f), 0.0f, 1.0f, 8.0f};
	t->size = size;
	t->use_m = sfp_qwidth_pack_bits(&t->m);
	t->use_e = sfp_qwidth_pack_bits(&t->e);
}

unsigned sfp_qwidth_pack_bits(const sfp_qwidth *w)
{
	return (unsigned)ceilf(w->n);
}

static unsigned pick(const sfp_qwidth *w, sfp_rng *rng)
{
	float f = floorf(w->n), a = w->n - f;
	return (unsigned)f + (a > 0.0f && sfp_rng_uniform(rng) < a ? 1u : 0u);
}

void sfp_qtensor_pick(sfp_qtensor *t, sfp_rng *rng)
{
	t->use_m = pick(&t->m, rng);
	t->use_e = pick(&t->e, rng);
}

int sfp_quant_apply(sfp_codec *c, float *dst, const float *src, uint64_t n, unsigned e,
		    unsigned m, sfp_error *err)
{
	sfp_params p;
	sfp_params_init(&p, e, m);
	return sfp_quantize(c, dst, src, n, &p, err);
}

/* The two integer widths that bracket w: (floor, ceil), or (n - 1, n) at an
 * integer n (n - 1 clamped to lo: then the pair is empty). */
static void bracket(const sfp_qwidth *w, unsigned *lo, unsigned *hi)
{
	float f = floorf(w->n);
	unsigned c = (unsigned)ceilf(w->n);
	*lo = (unsigned)f;
	*hi = c;
	if (*lo == *hi && (float)*lo > w->lo)
		*lo = *hi - 1;
}

/*
 * sum_i g_i (Q(x_i, ea, ma) - Q(x_i, eb, mb)) in one pass over blocks that
 * stay in L1: each block is quantized at both widths with the whole
 * tensor's window tops (sfp_quantize_window, then FIXED windows), so the
 * values are exactly sfp_quantize's of the whole tensor. The sum runs in
 * DOT_LANES double accumulators (element i in lane i % DOT_LANES, summed
 * in a fixed tree at the end): the vectoriser keeps every lane in a
 * register and the result depends only on the data, not on the ISA.
 */
#define DOT_BLOCK 2048
#define DOT_LANES 16

#if defined(__x86_64__) && !defined(SFP_NO_CLONES)
__attribute__((target_clones("avx512f", "avx2", "default")))
#endif
static void dot_diff_lanes(double *acc, const float *restrict g, const float *restrict a,
			   const float *restrict b, uint64_t n)
{
	double s[DOT_LANES];
	memcpy(s, acc, sizeof s);
	uint64_t i = 0;
	for (; i + DOT_LANES <= n; i += DOT_LANES)
		for (int j = 0; j < DOT_LANES; j++)
			s[j] += (double)g[i + j] * ((double)a[i + j] - (double)b[i + j]);
	for (int j = 0; i < n; i++, j++)
		s[j] += (double)g[i] * ((double)a[i] - (double)b[i]);
	memcpy(acc, s, sizeof s);
}

/* `same_a`: Q(x, ea, ma) is x itself (x is on that grid), skip it. */
static int quant_diff_dot(sfp_codec *c, double *out, const float *g, const float *x, uint64_t n,
			  unsigned ea, unsigned ma, unsigned eb, unsigned mb, int same_a,
			  sfp_error *err)
{
	sfp_params pa, pb;
	sfp_params_init(&pa, ea, ma);
	sfp_params_init(&pb, eb, mb);
	if (!same_a)
		SFP_TRY(sfp_quantize_window(c, x, n, &pa, &pa.exp_hi, err));
	if (!same_a && mb == ma && (eb == 8) == (ea == 8))
		pb.exp_hi = pa.exp_hi; /* the top depends on m only (e = 8: always 254) */
	else
		SFP_TRY(sfp_quantize_window(c, x, n, &pb, &pb.exp_hi, err));
	pa.window = pb.window = SFP_WINDOW_FIXED;
	float qa[DOT_BLOCK], qb[DOT_BLOCK];
	double acc[DOT_LANES] = {0};
	for (uint64_t b0 = 0; b0 < n; b0 += DOT_BLOCK) {
		const uint64_t len = n - b0 < DOT_BLOCK ? n - b0 : DOT_BLOCK;
		if (!same_a)
			SFP_TRY(sfp_quantize(c, qa, x + b0, len, &pa, err));
		SFP_TRY(sfp_quantize(c, qb, x + b0, len, &pb, err));
		dot_diff_lanes(acc, g + b0, same_a ? x + b0 : qa, qb, len);
	}
	for (int w = DOT_LANES / 2; w > 0; w /= 2) /* pairwise, in a fixed order */
		for (int j = 0; j < w; j++)
			acc[j] += acc[j + w];
	*out = acc[0];
	return SFP_OK;
}

int sfp_qtensor_grad_grid(sfp_codec *c, sfp_qtensor *t, const float *g, const float *x,
			  uint64_t n, unsigned grid_e, unsigned grid_m, sfp_error *err)
{
	unsigned lo, hi;
	double d;
	bracket(&t->m, &lo, &hi);
	if (lo != hi) {
		const int same = grid_e && t->use_e == grid_e && hi == grid_m;
		SFP_TRY(quant_diff_dot(c, &d, g, x, n, t->use_e, hi, t->use_e, lo, same, err));
		t->m.grad += (float)d;
	}
	bracket(&t->e, &lo, &hi);
	if (lo != hi) {
		const int same = grid_e && hi == grid_e && t->use_m == grid_m;
		SFP_TRY(quant_diff_dot(c, &d, g, x, n, hi, t->use_m, lo, t->use_m, same, err));
		t->e.grad += (float)d;
	}
	return SFP_OK;
}

int sfp_qtensor_grad(sfp_codec *c, sfp_qtensor *t, const float *g, const float *x, uint64_t n,
		     sfp_error *err)
{
	return sfp_qtensor_grad_grid(c, t, g, x, n, 0, 0, err);
}

float sfp_quant_penalty(sfp_qtensor *const *t, int k, float gamma)
{
	double total = 0.0, bits = 0.0;
	for (int i = 0; i < k; i++)
		total += (double)t[i]->size;
	if (total <= 0.0)
		return 0.0f;
	for (int i = 0; i < k; i++) {
		double w = (double)t[i]->size / total;
		bits += w * (t[i]->m.n + t[i]->e.n + 1.0);
		t[i]->m.grad += (float)(gamma * w);
		t[i]->e.grad += (float)(gamma * w);
	}
	return (float)(gamma * bits);
}

void sfp_qwidth_step(sfp_qwidth *w, float lr)
{
	w->n = clampf(w->n - lr * w->grad, w->lo, w->hi);
	w->grad = 0.0f;
}

double sfp_quant_bits_per_value(sfp_qtensor *const *t, int k)
{
	double total = 0.0, bits = 0.0;
	for (int i = 0; i < k; i++) {
		total += (double)t[i]->size;
		bits += (double)t[i]->size *
			(1.0 + sfp_qwidth_pack_bits(&t[i]->m) + sfp_qwidth_pack_bits(&t[i]->e));
	}
	return total > 0.0 ? bits / total : 0.0;
}

/* ---- BitWave ------------------------------------------------------------- */
int sfp_bitwave_init(sfp_bitwave *b, const sfp_bitwave_cfg *cfg, unsigned e, unsigned m,
		     sfp_error *err)
{
	if (!(cfg->ema > 0.0f && cfg->ema < 1.0f))
		return sfp_error_set(err, SFP_EINVAL, "bitwave ema must be in (0, 1), not %g",
				     (double)cfg->ema);
	if (!(cfg->threshold >= 0.0f) || cfg->period < 1)
		return sfp_error_set(err, SFP_EINVAL,
				     "bitwave threshold must be >= 0 and period >= 1");
	if (cfg->m_min > cfg->m_max || cfg->m_max > 23 || cfg->e_min < 1 ||
	    cfg->e_min > cfg->e_max || cfg->e_max > 8)
		return sfp_error_set(err, SFP_EINVAL,
				     "bitwave ranges must satisfy 0 <= m_min <= m_max <= 23 and "
				     "1 <= e_min <= e_max <= 8");
	memset(b, 0, sizeof *b);
	b->cfg = *cfg;
	b->m = m < cfg->m_min ? cfg->m_min : m > cfg->m_max ? cfg->m_max : m;
	b->e = e < cfg->e_min ? cfg->e_min : e > cfg->e_max ? cfg->e_max : e;
	return SFP_OK;
}

int sfp_bitwave_observe(sfp_bitwave *b, double loss)
{
	const sfp_bitwave_cfg *c = &b->cfg;
	b->avg = b->seen == 0 ? loss : c->ema * b->avg + (1.0 - c->ema) * loss;
	b->seen++;
	if (b->seen == 1) {
		b->ref = b->avg;
		return 0;
	}
	if (b->seen % c->period != 0)
		return 0;
	int d = 0;
	if (b->avg < b->ref * (1.0 - c->threshold)) {
		/* improving: remove a bit, mantissa first */
		if (b->m > c->m_min) {
			b->m--;
			d = -1;
		} else if (b->e > c->e_min) {
			b->e--;
			d = -1;
		}
	} else if (b->avg > b->ref * (1.0 + c->threshold)) {
		/* worse: add a bit back, the exponent first if it was narrowed */
		if (b->e < c->e_max) {
			b->e++;
			d = 1;
		} else if (b->m < c->m_max) {
			b->m++;
			d = 1;
		}
	}
	b->ref = b->avg;
	b->last = d;
	return d;
}
