/*
 * intweights.c -- BitPruning on a model: the weights of every linear and conv2d
 * layer as integer codes at learned widths, one scale and one width per
 * layer or per output channel (a "group"), and the .sfpq file that holds
 * the result (docs/bitpruning.md).
 *
 * While the widths are learned, each forward pass reads a copy of the
 * weights put through the interpolated quantizer of lib/quant/prune.c at
 * each group's real width (scale from the group's max |w| at that pass);
 * backward's weight gradients reach the float32 masters straight through,
 * and sfp_model_prune_update turns them into width gradients. Once the
 * widths are rounded the same copy holds exactly Q(w, b). Finalizing
 * replaces the masters by their dequantized values, so evaluation, the file
 * and a model loaded from the file all see the same floats, bit for bit.
 *
 * Groups are contiguous in the parameter arena: a linear layer's weights
 * are (out, in) and a conv's (co, ci, k, k), so output channel j is the
 * slice [j * in, (j + 1) * in) of the layer's weights.
 *
 * With activations on, each linear/conv layer's input is quantized too, at
 * a learned width per layer against a clip range: first measured over a
 * few batches (sfp_model_prune_observe: the mean of the batches' max
 * |input|), then followed as a moving average of the batch maxima while
 * fine-tuning, frozen when finalized. Inputs never negative while observed
 * use the unsigned grid. Backward gives the kernel the input gradient slice
 * (or a scratch one where no producer needs it), takes this layer's share
 * of it as dL/dx^ for the width gradient, and zeroes it for clipped inputs
 * (the derivative of the clamp). Activation widths are entries ng..ng+nt-1
 * of the width array, so the penalty, the width steps and rounding treat
 * them like the weights' groups.
 */
#include <assert.h>
#include <math.h>
#include <stddef.h>
#include <stdlib.h>
#include <string.h>

#include "nn/model_internal.h"

typedef struct sfp_intweights {
	int granularity, penalty, optim;
	int learning;      /* widths are real: the forward pass interpolates */
	int finalized;     /* masters hold the dequantized weights: read as they are */
	int nt, ng;        /* tensors (layers), groups */
	int na;            /* activation widths: nt with activations on, else 0 */
	int observing;     /* measuring input ranges: nothing is quantized */
	int *layer_of;     /* tensor -> layer */
	int *tensor_of;    /* layer -> tensor or -1 */
	int *first;        /* tensor -> its first group; first[nt] = ng */
	uint64_t *gsize;   /* tensor -> weights per group */
	double *macs;      /* tensor -> multiply-adds per weight and sample */
	sfp_qwidth *w;     /* group -> width, then tensor -> activation width */
	double *cost;      /* the same -> penalty weight */
	float *m1, *m2;    /* the same -> Adam moments of the width */
	int64_t t;         /* width steps taken */
	float *amax;       /* group -> max |w| at the last forward */
	float *scale;      /* group -> scale (finalized) */
	int32_t *codes;    /* all tensors' codes in order (finalized) */
	uint64_t ncodes;
	float *qparams;    /* the parameters as the forward pass reads them */
	/* activations (na > 0), per tensor */
	float *arange;     /* clip range */
	int *asigned;      /* 1: symmetric grid, 0: unsigned (inputs never < 0) */
	float *abatch;     /* max |input| of this step's forward */
	double *asum;      /* observing: sum of the batch maxima, and their count */
	int *aobs;
	float *abuf;       /* a layer's quantized input (max batch x largest input) */
	float *snap;       /* its input gradient before the layer's backward */
	int din_null;      /* the layer had no input gradient: snap is it */
} sfp_intweights;

void sfp_intweights_free(sfp_intweights *p)
{
	if (!p)
		return;
	free(p->layer_of);
	free(p->tensor_of);
	free(p->first);
	free(p->gsize);
	free(p->macs);
	free(p->w);
	free(p->cost);
	free(p->m1);
	free(p->m2);
	free(p->amax);
	free(p->scale);
	free(p->codes);
	free(p->qparams);
	free(p->arange);
	free(p->asigned);
	free(p->abatch);
	free(p->asum);
	free(p->aobs);
	free(p->abuf);
	free(p->snap);
	free(p);
}

static int out_channels(const layer *l)
{
	return l->kind == L_LINEAR ? l->no : l->conv.co;
}

/* Multiply-adds per weight and sample: each conv weight is used at every
 * output position, each linear weight once per row (token). */
static double macs_per_weight(const layer *l)
{
	return l->kind == L_CONV2D ? (double)l->conv.ho * l->conv.wo : (double)l->tok;
}

static int pm_alloc(sfp_intweights *p, const sfp_model *m)
{
	const size_t nt = (size_t)p->nt ? (size_t)p->nt : 1;
	const size_t nw = (size_t)(p->ng + p->na) ? (size_t)(p->ng + p->na) : 1;
	size_t big = 1;
	for (int i = 0; i < m->n && p->na; i++)
		if (sfp_layer_weight_count(&m->layers[i]) &&
		    (size_t)m->max_batch * sfp_shape_numel(m->layers[i].in) > big)
			big = (size_t)m->max_batch * sfp_shape_numel(m->layers[i].in);
	p->layer_of = malloc(nt * sizeof(int));
	p->tensor_of = malloc((size_t)m->n * sizeof(int));
	p->first = malloc((nt + 1) * sizeof(int));
	p->gsize = malloc(nt * sizeof(uint64_t));
	p->macs = malloc(nt * sizeof(double));
	p->w = calloc(nw, sizeof *p->w);
	p->cost = calloc(nw, sizeof(double));
	p->m1 = calloc(nw, sizeof(float));
	p->m2 = calloc(nw, sizeof(float));
	p->amax = calloc(nw, sizeof(float));
	p->scale = calloc(nw, sizeof(float));
	p->codes = calloc(p->ncodes ? p->ncodes : 1, sizeof(int32_t));
	p->qparams = malloc((m->nparams ? m->nparams : 1) * sizeof(float));
	p->arange = calloc(nt, sizeof(float));
	p->asigned = calloc(nt, sizeof(int));
	p->abatch = calloc(nt, sizeof(float));
	p->asum = calloc(nt, sizeof(double));
	p->aobs = calloc(nt, sizeof(int));
	p->abuf = p->na ? malloc(big * sizeof(float)) : NULL;
	p->snap = p->na ? malloc(big * sizeof(float)) : NULL;
	return p->layer_of && p->tensor_of && p->first && p->gsize && p->macs && p->w && p->cost &&
	       p->m1 && p->m2 && p->amax && p->scale && p->codes && p->qparams && p->arange &&
	       p->asigned && p->abatch && p->asum && p->aobs && (!p->na || (p->abuf && p->snap));
}

/* The tensor and group tables for `granularity` (and the activations when
 * `acts`), widths at `bits` in [lo, hi]; NULL when out of memory. */
static sfp_intweights *pm_create(const sfp_model *m, int granularity, int penalty, int acts, float bits,
			     float lo, float hi)
{
	sfp_intweights *p = calloc(1, sizeof *p);
	if (!p)
		return NULL;
	p->granularity = granularity;
	p->penalty = penalty;
	for (int i = 0; i < m->n; i++)
		if (sfp_layer_weight_count(&m->layers[i])) {
			p->nt++;
			p->ng += granularity == SFP_PRUNE_CHANNEL ? out_channels(&m->layers[i]) : 1;
			p->ncodes += sfp_layer_weight_count(&m->layers[i]);
		}
	p->na = acts ? p->nt : 0;
	if (!pm_alloc(p, m)) {
		sfp_intweights_free(p);
		return NULL;
	}
	int k = 0, g = 0;
	for (int i = 0; i < m->n; i++) {
		const layer *l = &m->layers[i];
		const size_t nw = sfp_layer_weight_count(l);
		p->tensor_of[i] = nw ? k : -1;
		if (!nw)
			continue;
		const int groups = granularity == SFP_PRUNE_CHANNEL ? out_channels(l) : 1;
		p->layer_of[k] = i;
		p->first[k] = g;
		p->gsize[k] = nw / (size_t)groups;
		p->macs[k] = macs_per_weight(l);
		for (int j = 0; j < groups; j++, g++) {
			p->w[g] = (sfp_qwidth){bits, 0.0f, lo, hi};
			p->cost[g] = (double)p->gsize[k] * (penalty == SFP_PRUNE_OPS ? p->macs[k] : 1.0);
		}
		if (p->na) {
			/* memory: the input's values per sample; ops: one operand per MAC */
			p->w[p->ng + k] = (sfp_qwidth){bits, 0.0f, lo, hi};
			p->cost[p->ng + k] = penalty == SFP_PRUNE_OPS ? (double)nw * p->macs[k]
								      : (double)sfp_shape_numel(l->in);
			p->asigned[k] = 1;
		}
		k++;
	}
	p->first[k] = g;
	memcpy(p->qparams, m->params, m->nparams * sizeof(float));
	return p;
}

/* Offset in the parameter arena of group j of tensor k. */
static size_t group_off(const sfp_model *m, const sfp_intweights *p, int k, int j)
{
	return m->layers[p->layer_of[k]].param_off + (size_t)j * p->gsize[k];
}

int sfp_model_set_prune(sfp_model *m, const sfp_prune_opts *o, sfp_error *err)
{
	if (m->containers)
		return sfp_error_set(err, SFP_EINVAL,
				     "BitPruning needs a float model: turn the bitlength containers off");
	if (o->granularity != SFP_PRUNE_LAYER && o->granularity != SFP_PRUNE_CHANNEL)
		return sfp_error_set(err, SFP_EINVAL, "unknown pruning granularity %d", o->granularity);
	if (o->penalty != SFP_PRUNE_MEMORY && o->penalty != SFP_PRUNE_OPS)
		return sfp_error_set(err, SFP_EINVAL, "unknown pruning penalty %d", o->penalty);
	if (o->optim != SFP_PRUNE_ADAM && o->optim != SFP_PRUNE_SGD)
		return sfp_error_set(err, SFP_EINVAL, "unknown width optimizer %d", o->optim);
	if (!(o->min_bits >= SFP_PRUNE_MIN_BITS && o->min_bits <= o->bits && o->bits <= o->max_bits &&
	      o->max_bits <= SFP_PRUNE_MAX_BITS))
		return sfp_error_set(err, SFP_EINVAL,
				     "pruning widths need %d <= min_bits <= bits <= max_bits <= %d "
				     "(got %g, %g, %g)",
				     SFP_PRUNE_MIN_BITS, SFP_PRUNE_MAX_BITS, (double)o->min_bits,
				     (double)o->bits, (double)o->max_bits);
	sfp_intweights *p = pm_create(m, o->granularity, o->penalty, o->activations, o->bits, o->min_bits,
				  o->max_bits);
	if (!p)
		return sfp_error_set(err, SFP_ENOMEM, "out of memory for the pruning tables");
	p->optim = o->optim;
	p->learning = 1;
	sfp_intweights_free(m->intweights);
	m->intweights = p;
	return SFP_OK;
}

void sfp_intweights_begin_forward(sfp_model *m)
{
	sfp_intweights *p = m->intweights;
	if (p->finalized)
		return;
	if (p->observing)
		for (int k = 0; k < p->na; k++)
			if (p->abatch[k] > 0.0f) {
				p->asum[k] += p->abatch[k];
				p->aobs[k]++;
				p->abatch[k] = 0.0f;
			}
	memcpy(p->qparams, m->params, m->nparams * sizeof(float));
	for (int k = 0; k < p->nt; k++)
		for (int g = p->first[k]; g < p->first[k + 1]; g++) {
			const size_t off = group_off(m, p, k, g - p->first[k]);
			p->amax[g] = sfp_prune_amax(m->params + off, p->gsize[k]);
			sfp_prune_interp(p->qparams + off, m->params + off, p->gsize[k], p->amax[g],
					 p->w[g].n);
		}
}

const float *sfp_intweights_weights(const sfp_model *m)
{
	return m->intweights->finalized ? m->params : m->intweights->qparams;
}

/* Layer i's input slice as it was produced (before quantization). */
static const float *raw_input(sfp_model *m, int i, const float *x, int s0)
{
	const layer *l = &m->layers[i];
	const size_t n1 = sfp_shape_numel(l->in);
	/* BitPruning runs without a packed stash: outputs stay in the arena */
	return l->input < 0 ? x + (size_t)s0 * n1 : sfp_act_out(m, l->input, s0);
}

/* Tensor k's activation width is quantizing: activations on, k a tensor. */
static int acts_on(const sfp_intweights *p, int k)
{
	return p->na && k >= 0 && !p->observing;
}

const float *sfp_intweights_input(sfp_model *m, int i, const float *src, int b)
{
	sfp_intweights *p = m->intweights;
	const int k = p->tensor_of[i];
	if (!acts_on(p, k))
		return src;
	const uint64_t n = (uint64_t)b * sfp_shape_numel(m->layers[i].in);
	sfp_prune_interp_act(p->abuf, src, n, p->arange[k], !p->asigned[k], p->w[p->ng + k].n);
	return p->abuf;
}

void sfp_intweights_after_forward(sfp_model *m, int i, const float *x, int s0, int b)
{
	sfp_intweights *p = m->intweights;
	const int k = p->tensor_of[i];
	if (!p->na || k < 0 || p->finalized || !(m->training || p->observing))
		return;
	const float *in = raw_input(m, i, x, s0);
	const uint64_t n = (uint64_t)b * sfp_shape_numel(m->layers[i].in);
	const float a = sfp_prune_amax(in, n);
	if (a > p->abatch[k]) /* a NaN input is left to the loss check */
		p->abatch[k] = a;
	if (p->observing)
		for (uint64_t j = 0; j < n && !p->asigned[k]; j++)
			p->asigned[k] = in[j] < 0.0f;
}

float *sfp_intweights_before_backward(sfp_model *m, int i, float *din, int s0, int b)
{
	sfp_intweights *p = m->intweights;
	const int k = p->tensor_of[i];
	if (!acts_on(p, k) || p->finalized)
		return din;
	const size_t n = (size_t)b * sfp_shape_numel(m->layers[i].in);
	p->din_null = din == NULL;
	if (din)
		memcpy(p->snap, din, n * sizeof(float));
	else
		memset(p->snap, 0, n * sizeof(float));
	(void)s0;
	return din ? din : p->snap;
}

void sfp_intweights_after_backward(sfp_model *m, int i, const float *x, float *din, int s0, int b)
{
	sfp_intweights *p = m->intweights;
	const int k = p->tensor_of[i];
	if (!acts_on(p, k) || p->finalized)
		return;
	const size_t n = (size_t)b * sfp_shape_numel(m->layers[i].in);
	const float *in = raw_input(m, i, x, s0);
	float *g = p->snap; /* this layer's dL/dx^ */
	if (!p->din_null)
		for (size_t j = 0; j < n; j++)
			g[j] = din[j] - g[j];
	const int sgn = p->asigned[k];
	const float r = p->arange[k];
	if (p->learning)
		p->w[p->ng + k].grad += (float)sfp_prune_grad_act(g, in, n, r, !sgn, &p->w[p->ng + k]);
	if (!p->din_null)
		for (size_t j = 0; j < n; j++)
			if (in[j] > r || in[j] < (sgn ? -r : 0.0f))
				din[j] -= g[j]; /* clipped: no gradient through the clamp */
}

sfp_qwidth *sfp_intweights_act_width(sfp_model *m, int k)
{
	return m->intweights && m->intweights->na && k >= 0 && k < m->intweights->nt ? &m->intweights->w[m->intweights->ng + k] : NULL;
}

void sfp_model_prune_observe(sfp_model *m, int on)
{
	sfp_intweights *p = m->intweights;
	if (!p || !p->na || p->finalized)
		return;
	if (on) {
		p->observing = 1;
		for (int k = 0; k < p->na; k++) {
			p->asum[k] = 0.0;
			p->aobs[k] = 0;
			p->abatch[k] = 0.0f;
			p->asigned[k] = 0;
		}
		return;
	}
	for (int k = 0; k < p->na; k++) {
		if (p->abatch[k] > 0.0f) {
			p->asum[k] += p->abatch[k];
			p->aobs[k]++;
		}
		p->arange[k] = p->aobs[k] ? (float)(p->asum[k] / p->aobs[k]) : 0.0f;
		p->abatch[k] = 0.0f;
	}
	p->observing = 0;
}

/* Clip ranges follow the batch maxima (moving average, about 100 steps). */
#define RANGE_EMA 0.99f

float sfp_model_prune_update(sfp_model *m, float lr, float gamma)
{
	sfp_intweights *p = m->intweights;
	if (!p || p->finalized)
		return 0.0f;
	for (int k = 0; k < p->na; k++) {
		if (p->abatch[k] > 0.0f)
			p->arange[k] = RANGE_EMA * p->arange[k] + (1.0f - RANGE_EMA) * p->abatch[k];
		p->abatch[k] = 0.0f;
	}
	if (!p->learning)
		return 0.0f;
	for (int k = 0; k < p->nt; k++)
		for (int g = p->first[k]; g < p->first[k + 1]; g++) {
			const size_t off = group_off(m, p, k, g - p->first[k]);
			p->w[g].grad += (float)sfp_prune_grad(m->grads + off, m->params + off,
							      p->gsize[k], p->amax[g], &p->w[g]);
		}
	const int nw = p->ng + p->na;
	const float pen = sfp_prune_penalty(p->w, p->cost, nw, gamma);
	p->t++;
	for (int g = 0; g < nw; g++)
		if (p->optim == SFP_PRUNE_ADAM)
			sfp_qwidth_adam_step(&p->w[g], &p->m1[g], &p->m2[g], lr, p->t);
		else
			sfp_qwidth_step(&p->w[g], lr);
	return pen;
}

void sfp_model_prune_round(sfp_model *m)
{
	sfp_intweights *p = m->intweights;
	if (!p)
		return;
	for (int g = 0; g < p->ng + p->na; g++) {
		float r = floorf(p->w[g].n + 0.5f);
		p->w[g].n = r < p->w[g].lo ? ceilf(p->w[g].lo) : r > p->w[g].hi ? floorf(p->w[g].hi) : r;
		p->w[g].grad = 0.0f;
	}
	p->learning = 0;
}

int sfp_model_prune_finalize(sfp_model *m, sfp_error *err)
{
	sfp_intweights *p = m->intweights;
	if (!p)
		return sfp_error_set(err, SFP_EINVAL, "the model has no pruning widths");
	if (p->finalized)
		return SFP_OK;
	if (p->learning)
		sfp_model_prune_round(m);
	uint64_t c = 0;
	for (int k = 0; k < p->nt; k++)
		for (int g = p->first[k]; g < p->first[k + 1]; g++) {
			const size_t off = group_off(m, p, k, g - p->first[k]);
			const float a = sfp_prune_amax(m->params + off, p->gsize[k]);
			if (!isfinite(a))
				return sfp_error_set(err, SFP_ERANGE, "layer '%s' has non-finite weights",
						     m->layers[p->layer_of[k]].name);
			const unsigned b = (unsigned)p->w[g].n;
			p->amax[g] = a;
			p->scale[g] = sfp_prune_scale(a, b);
			sfp_prune_codes(p->codes + c, m->params + off, p->gsize[k], a, b);
			c += p->gsize[k];
		}
	/* only now that nothing can fail: the masters become the dequantized weights */
	c = 0;
	for (int k = 0; k < p->nt; k++)
		for (int g = p->first[k]; g < p->first[k + 1]; g++) {
			const size_t off = group_off(m, p, k, g - p->first[k]);
			sfp_prune_dequant(m->params + off, p->codes + c, p->gsize[k], p->scale[g]);
			c += p->gsize[k];
		}
	p->finalized = 1;
	return SFP_OK;
}

int sfp_model_n_pruned(const sfp_model *m)
{
	return m->intweights ? m->intweights->nt : 0;
}

void sfp_model_pruned(const sfp_model *m, int k, sfp_prune_info *info)
{
	const sfp_intweights *p = m->intweights;
	const int g0 = p->first[k], g1 = p->first[k + 1];
	double sum = 0.0;
	unsigned lo = SFP_PRUNE_MAX_BITS, hi = 0;
	for (int g = g0; g < g1; g++) {
		const unsigned b = (unsigned)floorf(p->w[g].n + 0.5f);
		sum += p->w[g].n;
		lo = b < lo ? b : lo;
		hi = b > hi ? b : hi;
	}
	info->layer = m->layers[p->layer_of[k]].name;
	info->groups = g1 - g0;
	info->count = p->gsize[k] * (uint64_t)(g1 - g0);
	info->macs = (double)info->count * p->macs[k];
	info->bits = sum / (g1 - g0); /* groups of a tensor are equal in size */
	info->min_bits = lo;
	info->max_bits = hi;
	info->act_bits = p->na ? p->w[p->ng + k].n : 0.0;
	info->act_signed = p->na ? p->asigned[k] : 1;
	info->act_range = p->na ? p->arange[k] : 0.0f;
	info->act_count = sfp_shape_numel(m->layers[p->layer_of[k]].in);
}

void sfp_model_prune_summary(const sfp_model *m, sfp_prune_summary *s)
{
	double bw = 0, nw = 0, bl = 0, bm = 0, nm = 0, ba = 0, na = 0, bal = 0, bops = 0;
	const int nt = sfp_model_n_pruned(m);
	for (int k = 0; k < nt; k++) {
		sfp_prune_info in;
		sfp_model_pruned(m, k, &in);
		const double a = in.act_bits > 0 ? in.act_bits : 32.0;
		bw += in.bits * (double)in.count;
		nw += (double)in.count;
		bl += in.bits;
		bm += in.bits * in.macs;
		nm += in.macs;
		ba += a * (double)in.act_count;
		na += (double)in.act_count;
		bal += a;
		bops += in.bits * a * in.macs;
	}
	s->w_per_weight = nw > 0 ? bw / nw : 0.0;
	s->w_per_layer = nt > 0 ? bl / nt : 0.0;
	s->w_per_mac = nm > 0 ? bm / nm : 0.0;
	s->a_per_value = na > 0 ? ba / na : 0.0;
	s->a_per_layer = nt > 0 ? bal / nt : 0.0;
	s->bit_ops_per_mac = nm > 0 ? bops / nm : 0.0;
}

/* ---- the .sfpq file ------------------------------------------------------
 * Little-endian, like checkpoints (docs/bitpruning.md has the table):
 *   header (64) | tensors (40 each) | groups (8 each) | codes | floats
 * The codes of each group are packed on their own (sfp_prune_pack), so a
 * group starts on a byte. The floats are the parameters no tensor covers,
 * in arena order, then the buffers. */
#define PQ_FLAG_ACTIVATIONS 1u /* the layers' inputs are quantized too */

typedef struct pq_header {
	char magic[4];
	uint32_t version;
	uint32_t header_bytes;
	uint32_t model_sig;
	uint32_t granularity;
	uint32_t n_tensors;
	uint32_t n_groups;
	uint32_t flags;      /* PQ_FLAG_* */
	uint64_t n_params;
	uint64_t n_bufs;
	uint64_t payload_bytes;
	uint32_t payload_crc;
	uint32_t header_crc;
} pq_header;
static_assert(sizeof(pq_header) == 64, ".sfpq header layout");

static const sfp_sealed_kind pq_kind = {
	.magic = {'S', 'F', 'P', 'Q'},
	.version = 1,
	.header_bytes = sizeof(pq_header),
	.payload_crc_at = offsetof(pq_header, payload_crc),
	.header_crc_at = offsetof(pq_header, header_crc),
	.noun = "model",
	.not_this = "an sfp integer model (bad magic; `sfp export` writes them)",
};

typedef struct pq_tensor {
	uint32_t layer;
	uint32_t groups;
	uint64_t param_offset;
	uint64_t count;
	uint32_t act_bits;   /* 0: the input stays float32 */
	uint32_t act_signed; /* 1: symmetric grid, 0: unsigned */
	float act_range;
	uint32_t reserved;
} pq_tensor;
static_assert(sizeof(pq_tensor) == 40, ".sfpq tensor record layout");

typedef struct pq_group {
	uint32_t bits;
	float scale;
} pq_group;
static_assert(sizeof(pq_group) == 8, ".sfpq group record layout");

/* Bytes of the codes of every group at its width. */
static uint64_t codes_bytes(const sfp_intweights *p)
{
	uint64_t b = 0;
	for (int k = 0; k < p->nt; k++)
		for (int g = p->first[k]; g < p->first[k + 1]; g++)
			b += SFP_PRUNE_PACKED_BYTES(p->gsize[k], (unsigned)p->w[g].n);
	return b;
}

/* Parameters outside every quantized tensor, plus the buffers. */
static uint64_t float_count(const sfp_model *m, const sfp_intweights *p)
{
	return m->nparams - p->ncodes + m->nbufs;
}

size_t sfp_model_pruned_bytes(const sfp_model *m)
{
	const sfp_intweights *p = m->intweights;
	if (!p)
		return 0;
	return sizeof(pq_header) + (size_t)p->nt * sizeof(pq_tensor) +
	       (size_t)p->ng * sizeof(pq_group) + codes_bytes(p) + float_count(m, p) * sizeof(float);
}

/* Copy the uncovered parameters (to_file = 1: into dst) or back (0: from
 * src into the model's arena). */
static void floats_copy(float *params, float *flat, const sfp_model *m, const sfp_intweights *p,
			int to_file)
{
	size_t at = 0, o = 0;
	for (int k = 0; k <= p->nt; k++) {
		const size_t end = k < p->nt ? m->layers[p->layer_of[k]].param_off : m->nparams;
		const size_t n = end - at;
		if (to_file)
			memcpy(flat + o, params + at, n * sizeof(float));
		else
			memcpy(params + at, flat + o, n * sizeof(float));
		o += n;
		if (k < p->nt)
			at = end + p->gsize[k] * (size_t)(p->first[k + 1] - p->first[k]);
	}
}

int sfp_model_save_pruned(const sfp_model *m, const char *path, sfp_error *err)
{
	const sfp_intweights *p = m->intweights;
	if (!p || !p->finalized)
		return sfp_error_set(err, SFP_EINVAL, "cannot write '%s': the model is not finalized",
				     path);
	const size_t len = sfp_model_pruned_bytes(m);
	unsigned char *buf = calloc(1, len);
	if (!buf)
		return sfp_error_set(err, SFP_ENOMEM, "out of memory for '%s'", path);
	pq_header h;
	memset(&h, 0, sizeof h);
	h.model_sig = sfp_model_signature(m);
	h.granularity = (uint32_t)p->granularity;
	h.n_tensors = (uint32_t)p->nt;
	h.n_groups = (uint32_t)p->ng;
	h.flags = p->na ? PQ_FLAG_ACTIVATIONS : 0u;
	h.n_params = m->nparams;
	h.n_bufs = m->nbufs;
	h.payload_bytes = len - sizeof h;
	unsigned char *o = buf + sizeof h;
	for (int k = 0; k < p->nt; k++) {
		const layer *l = &m->layers[p->layer_of[k]];
		pq_tensor t = {(uint32_t)p->layer_of[k],
			       (uint32_t)(p->first[k + 1] - p->first[k]),
			       l->param_off,
			       sfp_layer_weight_count(l),
			       p->na ? (uint32_t)p->w[p->ng + k].n : 0u,
			       p->na ? (uint32_t)p->asigned[k] : 1u,
			       p->na ? p->arange[k] : 0.0f,
			       0u};
		memcpy(o, &t, sizeof t);
		o += sizeof t;
	}
	for (int g = 0; g < p->ng; g++) {
		pq_group r = {(uint32_t)p->w[g].n, p->scale[g]};
		memcpy(o, &r, sizeof r);
		o += sizeof r;
	}
	const unsigned char *end = buf + len;
	uint64_t c = 0;
	int rc = SFP_OK;
	for (int k = 0; k < p->nt && rc == SFP_OK; k++)
		for (int g = p->first[k]; g < p->first[k + 1] && rc == SFP_OK; g++) {
			size_t w = 0;
			rc = sfp_prune_pack(o, (size_t)(end - o), &w, p->codes + c, p->gsize[k],
					    (unsigned)p->w[g].n, err);
			o += w;
			c += p->gsize[k];
		}
	if (rc == SFP_OK) {
		/* the floats may sit at any byte offset: stage them aligned */
		const uint64_t nf = float_count(m, p);
		float *flat = malloc((nf ? nf : 1) * sizeof(float));
		if (!flat) {
			rc = sfp_error_set(err, SFP_ENOMEM, "out of memory for '%s'", path);
		} else {
			floats_copy(m->params, flat, m, p, 1);
			memcpy(flat + (m->nparams - p->ncodes), m->bufs, m->nbufs * sizeof(float));
			memcpy(o, flat, nf * sizeof(float));
			free(flat);
			memcpy(buf, &h, sizeof h);
			sfp_sealed_seal(&pq_kind, buf, len);
			rc = sfp_file_write_atomic(path, buf, len, err);
		}
	}
	free(buf);
	return rc;
}

/* The header's own checks, in the order docs/bitpruning.md lists them. */
static int check_header(const sfp_model *m, const char *name, const unsigned char *buf,
			size_t len, pq_header *h, sfp_error *err)
{
	SFP_TRY(sfp_sealed_check_header(&pq_kind, name, buf, len, h, err));
	if (h->payload_bytes != len - sizeof *h)
		return sfp_error_set(err, h->payload_bytes > len - sizeof *h ? SFP_ETRUNC : SFP_ECORRUPT,
				     "model '%s' has %zu bytes, its header says %llu", name, len,
				     (unsigned long long)(h->payload_bytes + sizeof *h));
	SFP_TRY(sfp_sealed_check_payload(&pq_kind, name, buf, len, h, err));
	if (h->model_sig != sfp_model_signature(m) || h->n_params != m->nparams ||
	    h->n_bufs != m->nbufs)
		return sfp_error_set(err, SFP_EINVAL,
				     "model '%s' belongs to a different model (layers or shapes "
				     "differ from the config)",
				     name);
	if (h->granularity != SFP_PRUNE_LAYER && h->granularity != SFP_PRUNE_CHANNEL)
		return sfp_error_set(err, SFP_ECORRUPT, "model '%s': unknown granularity %u", name,
				     h->granularity);
	if (h->flags & ~(uint32_t)PQ_FLAG_ACTIVATIONS)
		return sfp_error_set(err, SFP_ECORRUPT, "model '%s': unknown flags 0x%x", name,
				     h->flags);
	return SFP_OK;
}

/* Tensor and group tables against the model's layers (p was built from the
 * model for the file's granularity); widths and scales go into p. */
static int check_tables(const sfp_model *m, sfp_intweights *p, const char *name,
			const unsigned char *pay, uint64_t plen, const pq_header *h,
			sfp_error *err)
{
	if (h->n_tensors != (uint32_t)p->nt || h->n_groups != (uint32_t)p->ng)
		return sfp_error_set(err, SFP_ECORRUPT,
				     "model '%s' has %u tensors in %u groups; the model has %d in %d",
				     name, h->n_tensors, h->n_groups, p->nt, p->ng);
	const uint64_t tables = (uint64_t)p->nt * sizeof(pq_tensor) + (uint64_t)p->ng * sizeof(pq_group);
	if (tables > plen)
		return sfp_error_set(err, SFP_ECORRUPT, "model '%s': tables overrun the file", name);
	for (int k = 0; k < p->nt; k++) {
		pq_tensor t;
		memcpy(&t, pay + (size_t)k * sizeof t, sizeof t);
		const layer *l = &m->layers[p->layer_of[k]];
		if (t.layer != (uint32_t)p->layer_of[k] || t.param_offset != l->param_off ||
		    t.count != sfp_layer_weight_count(l) || t.groups != (uint32_t)(p->first[k + 1] - p->first[k]))
			return sfp_error_set(err, SFP_ECORRUPT,
					     "model '%s': tensor %d does not describe layer '%s'", name,
					     k, l->name);
		const int bad_bits = p->na ? t.act_bits < SFP_PRUNE_MIN_BITS ||
						     t.act_bits > SFP_PRUNE_MAX_BITS
					   : t.act_bits != 0;
		if (bad_bits || t.act_signed > 1 || !(t.act_range >= 0.0f) || !isfinite(t.act_range) ||
		    t.reserved != 0)
			return sfp_error_set(err, SFP_ECORRUPT,
					     "model '%s': tensor %d has input width %u, sign %u, range "
					     "%g (want %s, 0 or 1, a finite range >= 0)",
					     name, k, t.act_bits, t.act_signed, (double)t.act_range,
					     p->na ? "2..16 bits for every layer" : "0 for every layer");
		if (p->na) {
			p->w[p->ng + k].n = (float)t.act_bits;
			p->asigned[k] = (int)t.act_signed;
			p->arange[k] = t.act_range;
		}
	}
	const unsigned char *gr = pay + (size_t)p->nt * sizeof(pq_tensor);
	for (int g = 0; g < p->ng; g++) {
		pq_group r;
		memcpy(&r, gr + (size_t)g * sizeof r, sizeof r);
		if (r.bits < SFP_PRUNE_MIN_BITS || r.bits > SFP_PRUNE_MAX_BITS ||
		    !(r.scale >= 0.0f) || !isfinite(r.scale))
			return sfp_error_set(err, SFP_ECORRUPT,
					     "model '%s': group %d has width %u and scale %g (want "
					     "%d..%d bits and a finite scale >= 0)",
					     name, g, r.bits, (double)r.scale, SFP_PRUNE_MIN_BITS,
					     SFP_PRUNE_MAX_BITS);
		p->w[g].n = (float)r.bits;
		p->scale[g] = r.scale;
	}
	const uint64_t want = tables + codes_bytes(p) + float_count(m, p) * sizeof(float);
	if (want != plen)
		return sfp_error_set(err, SFP_ECORRUPT,
				     "model '%s': its widths need a payload of %llu bytes, it has %llu",
				     name, (unsigned long long)want, (unsigned long long)plen);
	return SFP_OK;
}

/* Codes -> p->codes and the dequantized weights, floats -> `flat`; checked. */
static int read_values(sfp_intweights *p, const char *name, const unsigned char *src,
		       const unsigned char *end, float *weights, float *flat, uint64_t nf,
		       sfp_error *err)
{
	uint64_t c = 0;
	for (int k = 0; k < p->nt; k++)
		for (int g = p->first[k]; g < p->first[k + 1]; g++) {
			const unsigned b = (unsigned)p->w[g].n;
			const size_t nb = sfp_prune_pack_bound(p->gsize[k], b);
			sfp_error e;
			if (sfp_prune_unpack(p->codes + c, p->gsize[k], src, (size_t)(end - src), b, &e) < 0)
				return sfp_error_set(err, SFP_ECORRUPT, "model '%s': group %d: %s",
						     name, g, e.msg);
			sfp_prune_dequant(weights + c, p->codes + c, p->gsize[k], p->scale[g]);
			src += nb;
			c += p->gsize[k];
		}
	memcpy(flat, src, nf * sizeof(float));
	for (uint64_t i = 0; i < nf; i++)
		if (!isfinite(flat[i]))
			return sfp_error_set(err, SFP_ECORRUPT,
					     "model '%s': float parameter %llu is not finite", name,
					     (unsigned long long)i);
	return SFP_OK;
}

int sfp_model_load_pruned(sfp_model *m, const char *name, const void *data, size_t len,
			  sfp_error *err)
{
	if (m->containers)
		return sfp_error_set(err, SFP_EINVAL,
				     "an integer model needs a float model: turn the bitlength "
				     "containers off");
	const unsigned char *buf = data;
	pq_header h;
	SFP_TRY(check_header(m, name, buf, len, &h, err));
	sfp_intweights *p = pm_create(m, (int)h.granularity, SFP_PRUNE_MEMORY,
				  (h.flags & PQ_FLAG_ACTIVATIONS) != 0, SFP_PRUNE_MAX_BITS,
				  SFP_PRUNE_MIN_BITS, SFP_PRUNE_MAX_BITS);
	if (!p)
		return sfp_error_set(err, SFP_ENOMEM, "out of memory reading '%s'", name);
	const uint64_t nf = float_count(m, p);
	float *weights = malloc((p->ncodes ? p->ncodes : 1) * sizeof(float));
	float *flat = malloc((nf ? nf : 1) * sizeof(float));
	int rc = SFP_OK;
	if (!weights || !flat) {
		rc = sfp_error_set(err, SFP_ENOMEM, "out of memory reading '%s'", name);
		goto out;
	}
	const unsigned char *pay = buf + sizeof h;
	if ((rc = check_tables(m, p, name, pay, h.payload_bytes, &h, err)) < 0)
		goto out;
	const size_t tables = (size_t)p->nt * sizeof(pq_tensor) + (size_t)p->ng * sizeof(pq_group);
	if ((rc = read_values(p, name, pay + tables, buf + len, weights, flat, nf, err)) < 0)
		goto out;
	/* every check passed: now the model changes */
	uint64_t c = 0;
	for (int k = 0; k < p->nt; k++) {
		const size_t n = p->gsize[k] * (size_t)(p->first[k + 1] - p->first[k]);
		memcpy(m->params + m->layers[p->layer_of[k]].param_off, weights + c, n * sizeof(float));
		c += n;
	}
	floats_copy(m->params, flat, m, p, 0);
	memcpy(m->bufs, flat + (m->nparams - p->ncodes), m->nbufs * sizeof(float));
	for (int g = 0; g < p->ng + p->na; g++)
		p->w[g].lo = p->w[g].hi = p->w[g].n;
	p->finalized = 1;
	sfp_intweights_free(m->intweights);
	m->intweights = p;
	p = NULL;
out:
	sfp_intweights_free(p);
	free(weights);
	free(flat);
	return rc;
}
