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

/* sum_i g_i (a_i - b_i) in double */
static double dot_diff(const float *g, const float *a, const float *b, uint64_t n)
{
	double s = 0.0;
	for (uint64_t i = 0; i < n; i++)
		s += (double)g[i] * ((double)a[i] - (double)b[i]);
	return s;
}

int sfp_qtensor_grad(sfp_codec *c, sfp_qtensor *t, const float *g, const float *x, uint64_t n,
		     float *scratch, sfp_error *err)
{
	float *qa = scratch, *qb = scratch + n;
	unsigned lo, hi;
	bracket(&t->m, &lo, &hi);
	if (lo != hi) {
		SFP_TRY(sfp_quant_apply(c, qa, x, n, t->use_e, hi, err));
		SFP_TRY(sfp_quant_apply(c, qb, x, n, t->use_e, lo, err));
		t->m.grad += (float)dot_diff(g, qa, qb, n);
	}
	bracket(&t->e, &lo, &hi);
	if (lo != hi) {
		SFP_TRY(sfp_quant_apply(c, qa, x, n, hi, t->use_m, err));
		SFP_TRY(sfp_quant_apply(c, qb, x, n, lo, t->use_m, err));
		t->e.grad += (float)dot_diff(g, qa, qb, n);
	}
	return SFP_OK;
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
