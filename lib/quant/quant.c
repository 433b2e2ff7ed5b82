/*
 * quant.c -- Quantum Mantissa / Quantum Exponent widths, the footprint
 * penalty and the BitWave controller (include/sfp/quant.h).
 */
#include <assert.h>
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
 * The width gradient sums g_i (Q(x_i, a) - Q(x_i, b)) for the mantissa pair
 * and the exponent pair. sfp_qgrad_plan fixes the four quantizations once
 * per tensor: their window tops come from the whole tensor
 * (sfp_quantize_window), then pieces are quantized with FIXED windows at
 * those tops -- exactly sfp_quantize's values for the whole tensor.
 * sfp_qgrad_block sums one block of SFP_QGRAD_BLOCK values with
 * sfp_quantize_diff_dot (both quantizations in registers, 16 double lanes
 * reduced in a fixed order); the tensor's sum is the block sums added in
 * block order. The result depends only on the data: not on the ISA, nor
 * on how blocks are spread over threads.
 */
void sfp_qgrad_setup(sfp_qgrad *p, const sfp_qtensor *t, unsigned grid_e, unsigned grid_m)
{
	unsigned lo, hi, ea[2], ma[2], eb[2], mb[2];
	memset(p, 0, sizeof *p);
	bracket(&t->m, &lo, &hi);
	p->on[0] = lo != hi;
	ea[0] = eb[0] = t->use_e;
	ma[0] = hi;
	mb[0] = lo;
	bracket(&t->e, &lo, &hi);
	p->on[1] = lo != hi;
	ea[1] = hi;
	eb[1] = lo;
	ma[1] = mb[1] = t->use_m;
	for (int k = 0; k < 2; k++) {
		if (!p->on[k])
			continue;
		p->same_a[k] = grid_e && ea[k] == grid_e && ma[k] == grid_m;
		sfp_params_init(&p->a[k], ea[k], ma[k]);
		sfp_params_init(&p->b[k], eb[k], mb[k]);
		sfp_params *q[2] = {&p->a[k], &p->b[k]};
		for (int j = p->same_a[k]; j < 2; j++) {
			/* window tops: for e < 8 they depend on m only (e = 8:
			 * always 254), so at most two max passes */
			q[j]->window = SFP_WINDOW_FIXED;
			q[j]->exp_hi = 254;
			if (q[j]->e == 8)
				continue;
			int seen = 0;
			for (int i = 0; i < p->nneed; i++)
				seen |= p->need_m[i] == q[j]->m;
			if (!seen)
				p->need_m[p->nneed++] = q[j]->m;
		}
	}
}

int sfp_qgrad_tops(sfp_codec *c, const sfp_qgrad *p, const float *x, uint64_t n, unsigned tops[2],
		   sfp_error *err)
{
	for (int i = 0; i < p->nneed; i++) {
		sfp_params q;
		sfp_params_init(&q, 1, p->need_m[i]);
		SFP_TRY(sfp_quantize_window(c, x, n, &q, &tops[i], err));
	}
	return SFP_OK;
}

void sfp_qgrad_set_tops(sfp_qgrad *p, const unsigned tops[2])
{
	for (int k = 0; k < 2; k++) {
		sfp_params *q[2] = {&p->a[k], &p->b[k]};
		for (int j = 0; j < 2 && p->on[k]; j++)
			for (int i = 0; i < p->nneed; i++)
				if (q[j]->e < 8 && q[j]->m == p->need_m[i])
					q[j]->exp_hi = tops[i];
	}
}

int sfp_qgrad_plan(sfp_codec *c, sfp_qgrad *p, const sfp_qtensor *t, const float *x, uint64_t n,
		   unsigned grid_e, unsigned grid_m, sfp_error *err)
{
	unsigned tops[2] = {1, 1};
	sfp_qgrad_setup(p, t, grid_e, grid_m);
	SFP_TRY(sfp_qgrad_tops(c, p, x, n, tops, err));
	sfp_qgrad_set_tops(p, tops);
	return SFP_OK;
}

int sfp_qgrad_block(sfp_codec *c, const sfp_qgrad *p, const float *g, const float *x, uint64_t n,
		    double sum[2], sfp_error *err)
{
	for (int k = 0; k < 2; k++) {
		sum[k] = 0.0;
		if (p->on[k])
			SFP_TRY(sfp_quantize_diff_dot(c, g, x, n, p->same_a[k] ? NULL : &p->a[k],
						      &p->b[k], &sum[k], err));
	}
	return SFP_OK;
}

void sfp_qgrad_apply(sfp_qtensor *t, const sfp_qgrad *p, const double sum[2])
{
	if (p->on[0])
		t->m.grad += (float)sum[0];
	if (p->on[1])
		t->e.grad += (float)sum[1];
}

int sfp_qtensor_grad_grid(sfp_codec *c, sfp_qtensor *t, const float *g, const float *x,
			  uint64_t n, unsigned grid_e, unsigned grid_m, sfp_error *err)
{
	sfp_qgrad p;
	double total[2] = {0, 0}, d[2];
	SFP_TRY(sfp_qgrad_plan(c, &p, t, x, n, grid_e, grid_m, err));
	for (uint64_t b0 = 0; b0 < n; b0 += SFP_QGRAD_BLOCK) {
		const uint64_t len = n - b0 < SFP_QGRAD_BLOCK ? n - b0 : SFP_QGRAD_BLOCK;
		SFP_TRY(sfp_qgrad_block(c, &p, g + b0, x + b0, len, d, err));
		total[0] += d[0];
		total[1] += d[1];
	}
	sfp_qgrad_apply(t, &p, total);
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
	if (!(cfg->threshold >= 0.0f) || cfg->period < 1 || cfg->backoff < 0)
		return sfp_error_set(err, SFP_EINVAL,
				     "bitwave threshold must be >= 0, period >= 1 and backoff >= 0");
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

/* The next hold of a kind added back: backoff, then twice the last (at most
 * 1024 decisions). */
static int next_hold(const sfp_bitwave_cfg *c, int *len)
{
	if (c->backoff <= 0)
		return 0;
	*len = *len == 0 ? c->backoff : *len < 512 ? 2 * *len : 1024;
	return *len;
}

int sfp_bitwave_observe(sfp_bitwave *b, double loss)
{
	const sfp_bitwave_cfg *c = &b->cfg;
	if (b->seen == 0) {
		b->avg = loss;
	} else {
		const double dev = loss - b->avg;
		b->avg += (1.0 - c->ema) * dev;
		/* the noise over at least ~100 steps, whatever the average's span */
		const double k = c->ema > 0.99 ? c->ema : 0.99;
		b->var = k * b->var + (1.0 - k) * dev * dev;
	}
	b->seen++;
	if (b->seen == 1) {
		b->ref = b->avg;
		return 0;
	}
	if (b->seen % c->period != 0)
		return 0;
	/* the change that counts: the threshold, or 2 sigma of the noise */
	const double noise = 2.0 * sqrt(2.0 * b->var * (1.0 - c->ema) / (1.0 + c->ema));
	const double band = fmax(c->threshold * b->ref, noise);
	const int free_m = b->hold_m == 0, free_e = b->hold_e == 0;
	b->hold_m -= !free_m;
	b->hold_e -= !free_e;
	int d = 0;
	if (b->avg < b->ref - band) {
		/* improving: remove a bit, mantissa first */
		if (b->m > c->m_min && free_m) {
			b->m--;
			b->removed = 'm';
			d = -1;
		} else if (b->e > c->e_min && free_e) {
			b->e--;
			b->removed = 'e';
			d = -1;
		}
	} else if (b->avg > b->ref + band) {
		/* worse: undo the last removal, else widen the exponent first */
		int kind = b->removed;
		if (kind == 'e' && b->e >= c->e_max)
			kind = 0;
		if (kind == 'm' && b->m >= c->m_max)
			kind = 0;
		if (!kind)
			kind = b->e < c->e_max ? 'e' : b->m < c->m_max ? 'm' : 0;
		if (kind == 'e') {
			b->e++;
			b->hold_e = next_hold(c, &b->len_e);
			d = 1;
		} else if (kind == 'm') {
			b->m++;
			b->hold_m = next_hold(c, &b->len_m);
			d = 1;
		}
		b->removed = 0;
	}
	b->ref = b->avg;
	b->last = d;
	return d;
}

/* The state's layout: doubles first (two floats of raw bits each), then
 * integers; the order is the checkpoint format's (docs/checkpoint.md). */
enum { BW_DOUBLES = 4, BW_INTS = 7 };
static_assert(2 * BW_DOUBLES + BW_INTS == SFP_BITWAVE_STATE_FLOATS, "BitWave state layout");

void sfp_bitwave_save(const sfp_bitwave *b, float *dst)
{
	const double d[BW_DOUBLES] = {b->avg, b->ref, (double)b->seen, b->var};
	const int i[BW_INTS] = {(int)b->m, (int)b->e, b->removed, b->hold_m,
				b->hold_e, b->len_m, b->len_e};
	memcpy(dst, d, sizeof d);
	for (int k = 0; k < BW_INTS; k++)
		dst[2 * BW_DOUBLES + k] = (float)i[k];
}

int sfp_bitwave_load(sfp_bitwave *b, const float *src, sfp_error *err)
{
	double d[BW_DOUBLES];
	memcpy(d, src, sizeof d);
	int i[BW_INTS];
	for (int k = 0; k < BW_INTS; k++) {
		const float v = src[2 * BW_DOUBLES + k];
		if (!(v >= 0.0f && v <= 1024.0f) || v != floorf(v))
			return sfp_error_set(err, SFP_ECORRUPT, "bitwave state: field %d is %g", k,
					     (double)v);
		i[k] = (int)v;
	}
	if (i[0] > 23 || i[1] < 1 || i[1] > 8 || (i[2] != 0 && i[2] != 'm' && i[2] != 'e') ||
	    !(d[2] >= 0.0))
		return sfp_error_set(err, SFP_ECORRUPT,
				     "bitwave state: widths e%d m%d, removal %d, %g steps", i[1], i[0],
				     i[2], d[2]);
	b->avg = d[0];
	b->ref = d[1];
	b->seen = (int64_t)d[2];
	b->var = d[3];
	b->m = (unsigned)i[0];
	b->e = (unsigned)i[1];
	b->removed = i[2];
	b->hold_m = i[3];
	b->hold_e = i[4];
	b->len_m = i[5];
	b->len_e = i[6];
	return SFP_OK;
}
