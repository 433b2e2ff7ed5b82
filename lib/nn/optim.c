/*
 * optim.c -- SGD with momentum (optionally Nesterov) and weight decay, AdamW
 * with decoupled weight decay, and the learning-rate schedules. One loop over
 * the whole parameter arena; the moments are one arena too.
 */
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "nn/nn_internal.h"
#include "sfp/nn.h"

enum { OPT_SGD, OPT_ADAMW };

struct sfp_optim {
	int kind;
	sfp_cfg_optimizer cfg;
	size_t n;
	float *state; /* sgd: momentum (n); adamw: m (n) then v (n) */
	size_t nstate;
};

int sfp_optim_create(sfp_optim **out, const sfp_cfg_optimizer *cfg, size_t n, sfp_error *err)
{
	*out = NULL;
	int kind;
	if (cfg->type == SFP_OPTIMIZER_SGD)
		kind = OPT_SGD;
	else if (cfg->type == SFP_OPTIMIZER_ADAMW)
		kind = OPT_ADAMW;
	else
		return sfp_error_set(err, SFP_EINVAL, "train.optimizer.type: unknown optimizer %d",
				     cfg->type);
	sfp_optim *o = calloc(1, sizeof *o);
	if (!o)
		return sfp_error_set(err, SFP_ENOMEM, "out of memory");
	o->kind = kind;
	o->cfg = *cfg;
	o->n = n;
	o->nstate = kind == OPT_ADAMW ? 2 * n : (cfg->momentum != 0.0f ? n : 0);
	o->state = calloc(o->nstate ? o->nstate : 1, sizeof(float));
	if (!o->state) {
		free(o);
		return sfp_error_set(err, SFP_ENOMEM, "out of memory for optimizer state");
	}
	*out = o;
	return SFP_OK;
}

void sfp_optim_free(sfp_optim *o)
{
	if (!o)
		return;
	free(o->state);
	free(o);
}

float *sfp_optim_state(sfp_optim *o, size_t *n)
{
	if (n)
		*n = o->nstate;
	return o->state;
}

SFP_VECTOR_CLONES
void sfp_optim_step(sfp_optim *o, float *params, const float *grads, float lr, int64_t t)
{
	const sfp_cfg_optimizer *c = &o->cfg;
	const size_t n = o->n;
	if (o->kind == OPT_SGD) {
		/* PyTorch's convention: g += wd p; buf = mu buf + g; step = g + mu buf
		 * (Nesterov) or buf */
		const float mu = c->momentum, wd = c->weight_decay;
		float *buf = o->state;
		for (size_t i = 0; i < n; i++) {
			float g = grads[i] + wd * params[i];
			if (mu != 0.0f) {
				buf[i] = mu * buf[i] + g;
				g = c->nesterov ? g + mu * buf[i] : buf[i];
			}
			params[i] -= lr * g;
		}
		return;
	}
	const float b1 = c->beta1, b2 = c->beta2, eps = c->eps, wd = c->weight_decay;
	const float c1 = 1.0f - powf(b1, (float)t), c2 = 1.0f - powf(b2, (float)t);
	const float step = lr / c1, rc2 = 1.0f / sqrtf(c2);
	float *mm = o->state, *vv = o->state + n;
	for (size_t i = 0; i < n; i++) {
		float g = grads[i];
		params[i] -= lr * wd * params[i];
		mm[i] = b1 * mm[i] + (1.0f - b1) * g;
		vv[i] = b2 * vv[i] + (1.0f - b2) * g * g;
		params[i] -= step * mm[i] / (sqrtf(vv[i]) * rc2 + eps);
	}
}

float sfp_lr_at(const sfp_cfg_optimizer *opt, const sfp_cfg_schedule *s, int64_t step,
		int64_t total_steps)
{
	const float base = opt->lr;
	if (s->warmup_steps > 0 && step < s->warmup_steps)
		return base * (float)(step + 1) / (float)s->warmup_steps;
	if (s->type == SFP_SCHEDULE_STEP) {
		if (s->step_every <= 0)
			return base;
		int64_t k = (step - s->warmup_steps) / s->step_every;
		return base * powf(s->gamma, (float)k);
	}
	if (s->type == SFP_SCHEDULE_COSINE) {
		int64_t span = total_steps - s->warmup_steps;
		if (span <= 0)
			return base;
		double f = (double)(step - s->warmup_steps) / (double)span;
		if (f > 1.0)
			f = 1.0;
		return s->min_lr + (base - s->min_lr) * 0.5f * (float)(1.0 + cos(M_PI * f));
	}
	return base;
}
