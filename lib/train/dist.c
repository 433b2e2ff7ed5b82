/*
 * dist.c -- the trainer as one rank of a distributed job (design.md §3).
 *
 * The N ranks form D data-parallel replicas x S pipeline stages; rank r is
 * stage r % S of replica r / S, so the stages of one replica are neighbours
 * (on a cluster, the same or adjacent hosts). Every rank builds only its
 * stage's layers; the split balances the stages' multiply-adds, never cuts
 * a skip connection, and gives every stage parameters.
 *
 * One step: the global batch (train.batch_size samples in the seeded order,
 * exactly those a single process would take) is split over the replicas;
 * a replica's share is split into micro-batches that flow through the
 * stages. Pipeline schedule: GPipe fill/drain with re-materialisation --
 * every stage runs the forward of all micro-batches, keeping only each
 * micro-batch's stage input; the last stage runs each micro-batch's loss
 * and backward at once; the other stages then run backward micro-batch by
 * micro-batch, newest first, re-computing the forward of all but the newest
 * (whose activations are still in place). Activations cross stages in the
 * container of the stage's output tensor (its learned widths, Gecko as
 * bitlength.gecko); activation gradients in the parallel.grad_* container.
 *
 * Each replica scales its loss gradient by its share of the global batch,
 * so the sum over replicas is the gradient of the global mean; the weight
 * gradients of each stage are summed over its replicas in containers
 * (lib/transport/collective.c). Losses and counts are summed over the job,
 * so every rank sees the same loss and takes the same BitWave decisions,
 * and a diverging run stops on every rank at the same step.
 */
#include <inttypes.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "train/train_internal.h"

#define TAG_EVAL 0xfff0
#define TAG_TIE 0xffe0 /* + the tie's index */

/* ---- the stage split ------------------------------------------------------ */
int sfp_pipeline_plan(const sfp_model *m, int stages, int *first, sfp_error *err)
{
	const int n = sfp_model_n_layers(m);
	if (stages < 1 || stages > n)
		return sfp_error_set(err, SFP_EINVAL,
				     "parallel.pipeline_stages: %d stages for a model of %d layers "
				     "(at most one stage per layer)",
				     stages, n);
	double *cost = calloc((size_t)n + 1, sizeof(double)); /* prefix sums */
	double *par = calloc((size_t)n + 1, sizeof(double));
	char *valid = calloc((size_t)n + 1, 1);
	double *best = malloc((size_t)(stages + 1) * (n + 1) * sizeof(double));
	int *from = malloc((size_t)(stages + 1) * (n + 1) * sizeof(int));
	int rc = SFP_OK;
	if (!cost || !par || !valid || !best || !from) {
		rc = sfp_error_set(err, SFP_ENOMEM, "out of memory");
		goto out;
	}
	for (int i = 0; i < n; i++) {
		sfp_layer_info li;
		sfp_model_layer(m, i, &li);
		double c = li.macs > 0.0 ? li.macs : (double)sfp_shape_numel(li.out);
		cost[i + 1] = cost[i] + c;
		par[i + 1] = par[i] + (double)li.nparams;
	}
	/* a cut before layer j: the previous layer is not a flatten (cut before
	 * it instead: its output is an alias), and no layer from j on reads an
	 * output from before j other than layer j - 1's, the stage's input (a
	 * residual stream crosses; what a later add reads of it is the stage
	 * input). A head tied to an embedding in an earlier stage gets a copy
	 * of the matrix that the two stages keep equal (sfp_dist_sync_ties). */
	valid[0] = valid[n] = 1;
	for (int j = 1; j < n; j++) {
		sfp_layer_info li;
		sfp_model_layer(m, j - 1, &li);
		valid[j] = strcmp(li.type, "flatten") != 0;
		for (int i = j; i < n && valid[j]; i++) {
			sfp_model_layer(m, i, &li);
			if (li.from == SFP_FROM_INPUT || (li.from >= 0 && li.from < j - 1))
				valid[j] = 0;
		}
	}
	/* best[s][j]: the smallest largest-stage cost of layers [0, j) in s stages */
#define B(s, j) best[(size_t)(s) * (n + 1) + (j)]
#define F(s, j) from[(size_t)(s) * (n + 1) + (j)]
	for (int s = 0; s <= stages; s++)
		for (int j = 0; j <= n; j++)
			B(s, j) = INFINITY, F(s, j) = -1;
	B(0, 0) = 0.0;
	for (int s = 1; s <= stages; s++)
		for (int j = 1; j <= n; j++) {
			if (!valid[j])
				continue;
			for (int i = s - 1; i < j; i++) {
				if (!valid[i] || B(s - 1, i) == INFINITY || par[j] - par[i] <= 0.0)
					continue;
				double v = fmax(B(s - 1, i), cost[j] - cost[i]);
				if (v < B(s, j))
					B(s, j) = v, F(s, j) = i;
			}
		}
	if (B(stages, n) == INFINITY) {
		rc = sfp_error_set(err, SFP_EINVAL,
				   "parallel.pipeline_stages: the %d layers cannot form %d stages that "
				   "each hold parameters without cutting a skip connection (a cut "
				   "may pass one tensor only); use fewer stages",
				   n, stages);
		goto out;
	}
	first[stages] = n;
	for (int s = stages, j = n; s > 0; s--) {
		j = F(s, j);
		first[s - 1] = j;
	}
#undef B
#undef F
out:
	free(cost);
	free(par);
	free(valid);
	free(best);
	free(from);
	return rc;
}

void sfp_dist_stage_layer(const sfp_model *whole, int first, int i, sfp_layer_info *wl,
			  sfp_layer_info *copy)
{
	sfp_model_layer(whole, first + i, wl);
	*copy = (sfp_layer_info){.nparams = 0};
	if (wl->tie >= 0 && wl->tie < first)
		sfp_model_layer(whole, wl->tie, copy);
}

/* The config of layers [a, b) of `full` as a model of its own: names made
 * explicit (so `add` references and logs keep the whole model's names), an
 * add that reads layer a - 1 reads the stage's input, a head tied to an
 * embedding of an earlier stage holds its own copy of the matrix, and the
 * input shape is what layer a receives. */
void sfp_dist_stage_config(const sfp_cfg_model *full, const sfp_model *fm, int a, int b,
			   sfp_cfg_model *out)
{
	out->n_layers = b - a;
	for (int i = a; i < b; i++) {
		sfp_layer_info li;
		sfp_model_layer(fm, i, &li);
		sfp_cfg_layer *c = &out->layers[i - a];
		*c = full->layers[i];
		snprintf(c->name, SFP_CFG_NAME, "%s", li.name);
		if (a > 0 && li.from == a - 1)
			snprintf(c->from, SFP_CFG_NAME, "%s", SFP_CFG_FROM_INPUT);
		if (li.tie >= 0 && li.tie < a)
			c->tie[0] = 0;
	}
	if (a == 0) {
		out->input_ndim = full->input_ndim;
		memcpy(out->input, full->input, sizeof out->input);
	} else {
		sfp_layer_info li;
		sfp_model_layer(fm, a, &li);
		out->input_ndim = 3;
		out->input[0] = li.in.c;
		out->input[1] = li.in.h;
		out->input[2] = li.in.w;
	}
}

static int stage_of(const int *first, int stages, int layer)
{
	int s = 0;
	while (s + 1 < stages && first[s + 1] <= layer)
		s++;
	return s;
}

/* The heads of the whole model fm tied to an embedding in another stage,
 * as this stage takes part in them: in the whole model's layer order, so
 * the two stages of a pair meet them in the same order. */
static int plan_ties(sfp_dist *d, const sfp_model *fm, const int *first, sfp_error *err)
{
	size_t big = 0;
	for (int h = 0; h < sfp_model_n_layers(fm); h++) {
		sfp_layer_info li, ei;
		sfp_model_layer(fm, h, &li);
		if (li.tie < 0)
			continue;
		const int sh = stage_of(first, d->stages, h), se = stage_of(first, d->stages, li.tie);
		if (sh == se || (d->stage != sh && d->stage != se))
			continue;
		if (d->nties == SFP_DIST_MAX_TIES)
			return sfp_error_set(err, SFP_EINVAL,
					     "parallel.pipeline_stages: more than %d heads tied to an "
					     "embedding of another stage",
					     SFP_DIST_MAX_TIES);
		sfp_model_layer(fm, li.tie, &ei);
		const int other = d->stage == sh ? se : sh;
		d->ties[d->nties++] = (struct sfp_tie){
			.peer = d->rank + other - d->stage,
			.layer = (d->stage == sh ? h : li.tie) - d->first,
			.n = ei.nparams,
		};
		if (ei.nparams > big)
			big = ei.nparams;
	}
	if (big && !(d->tie_buf = malloc(big * sizeof(float))))
		return sfp_error_set(err, SFP_ENOMEM, "out of memory");
	return SFP_OK;
}

/* Both stages of each tie add the other's gradient of the matrix (after the
 * replicas' sum): own + other on one side, other + own on the other, the
 * same float sum, so the two copies take the same optimizer step. Sent
 * lossless: the copies must stay equal to the bit. */
static int sync_ties(sfp_trainer *t, sfp_error *err)
{
	sfp_dist *d = t->dist;
	sfp_params lossless;
	sfp_params_init(&lossless, 8, 23);
	for (int k = 0; k < d->nties; k++) {
		const struct sfp_tie *ti = &d->ties[k];
		sfp_layer_info li;
		sfp_model_layer(t->model, ti->layer, &li);
		size_t np;
		float *g = sfp_model_grads(t->model, &np) + li.param_offset;
		const int tag = TAG_TIE + k;
		if (d->rank < ti->peer) {
			SFP_TRY(sfp_send_tensor(d->coll, ti->peer, tag, g, ti->n, &lossless,
						&d->ws[WIRE_GRADS], err));
			SFP_TRY(sfp_recv_tensor(d->coll, ti->peer, tag, d->tie_buf, ti->n,
						&d->ws[WIRE_GRADS], err));
		} else {
			SFP_TRY(sfp_recv_tensor(d->coll, ti->peer, tag, d->tie_buf, ti->n,
						&d->ws[WIRE_GRADS], err));
			SFP_TRY(sfp_send_tensor(d->coll, ti->peer, tag, g, ti->n, &lossless,
						&d->ws[WIRE_GRADS], err));
		}
		for (size_t i = 0; i < ti->n; i++)
			g[i] += d->tie_buf[i];
	}
	return SFP_OK;
}

static sfp_group make_group(int n, int me, int stride, int base)
{
	sfp_group g = {.n = n, .me = me};
	for (int k = 0; k < n; k++)
		g.ranks[k] = base + k * stride;
	return g;
}

void sfp_dist_free(sfp_dist *d)
{
	if (!d)
		return;
	sfp_exchange_free(d->x); /* its thread first: it uses the collective */
	sfp_collective_free(d->coll);
	free(d->residual);
	free(d->mbx);
	free(d->mby);
	free(d->tokx);
	free(d->tokt);
	free(d->tie_buf);
	free(d);
}

int sfp_dist_create(sfp_trainer *t, sfp_transport *tr, const sfp_cfg_model *full,
		    const char *config_dir, sfp_cfg_model *stage_cfg, int *max_batch,
		    sfp_error *err)
{
	const sfp_cfg_parallel *pc = &t->cfg.parallel;
	sfp_dist *d = calloc(1, sizeof *d);
	if (!d)
		return sfp_error_set(err, SFP_ENOMEM, "out of memory");
	t->dist = d;
	d->tr = tr;
	d->rank = sfp_transport_rank(tr);
	d->world = sfp_transport_size(tr);
	d->stages = pc->pipeline_stages;
	if (d->world % d->stages != 0)
		return sfp_error_set(err, SFP_EINVAL,
				     "parallel.pipeline_stages: %d ranks cannot form replicas of %d "
				     "stages (the rank count must be a multiple of the stages)",
				     d->world, d->stages);
	d->replicas = d->world / d->stages;
	d->stage = d->rank % d->stages;
	d->replica = d->rank / d->stages;
	const int B = t->cfg.train.batch_size;
	if (B < d->replicas)
		return sfp_error_set(err, SFP_EINVAL,
				     "train.batch_size %d is smaller than the %d data-parallel replicas",
				     B, d->replicas);
	d->world_g = make_group(d->world, d->rank, 1, 0);
	d->dp_g = make_group(d->replicas, d->replica, d->stages, d->stage);
	SFP_TRY(sfp_collective_create(&d->coll, tr, err));
	sfp_transport_set_timeout(tr, pc->timeout_s);

	sfp_params_init(&d->gwire.params, (unsigned)pc->grad_e, (unsigned)pc->grad_m);
	d->gwire.params.gecko = pc->grad_gecko;
	d->gwire.params.shift = pc->grad_refine_shift;
	d->gwire.params.bias = pc->grad_refine_bias == SFP_REFINE_BIAS_TENSOR ? SFP_BIAS_TENSOR : SFP_BIAS_OFF;
	if ((d->gwire.params.shift || d->gwire.params.bias) && pc->grad_m > SFP_REFINE_MAX_M)
		return sfp_error_set(err, SFP_EINVAL,
				     "parallel.grad_refine_*: refinement needs parallel.grad_m <= %d "
				     "(it is %d)",
				     SFP_REFINE_MAX_M, pc->grad_m);
	/* auto = ring: it sends least (2 (D-1)/D of the tensor against the
	 * all-gather's D-1), and error feedback at each of its rounding points
	 * makes it as accurate (docs/distributed.md measures both) */
	d->gwire.cast = pc->grad_cast == SFP_GRAD_CAST_FP16   ? SFP_CAST_FP16
			: pc->grad_cast == SFP_GRAD_CAST_BF16 ? SFP_CAST_BF16
							      : SFP_CAST_NONE;
	if (pc->allreduce == SFP_CFG_ALLREDUCE_NATIVE)
		d->gwire.algo = SFP_ALLREDUCE_NATIVE;
	else if (pc->allreduce == SFP_CFG_ALLREDUCE_ALLGATHER)
		d->gwire.algo = SFP_ALLREDUCE_ALLGATHER;
	else
		d->gwire.algo = SFP_ALLREDUCE_RING;
	d->gwire.error_feedback = pc->error_feedback;
	d->agrad = d->gwire.params;

	const int per_replica = (B + d->replicas - 1) / d->replicas;
	d->micro = 1;
	if (d->stages > 1) {
		d->micro = pc->micro_batches > 0 ? pc->micro_batches : 2 * d->stages;
		if (d->micro > per_replica)
			d->micro = per_replica;
	}
	*max_batch = (per_replica + d->micro - 1) / d->micro;

	if (d->stages == 1) {
		*stage_cfg = *full;
		d->first = 0;
		d->last = full->n_layers;
		return SFP_OK;
	}
	/* the whole model once, at batch 1: shapes for the split */
	sfp_model *fm = NULL;
	int rc = sfp_model_create(&fm, full, config_dir, 1, err);
	if (rc < 0)
		return rc;
	int first[SFP_CFG_MAX_LAYERS + 1];
	rc = sfp_pipeline_plan(fm, d->stages, first, err);
	if (rc == SFP_OK) {
		d->first = first[d->stage];
		d->last = first[d->stage + 1];
		sfp_dist_stage_config(full, fm, d->first, d->last, stage_cfg);
		rc = plan_ties(d, fm, first, err);
	}
	sfp_model_free(fm);
	return rc;
}

/* The stage's parameters start as the whole model's would (sfp_model_init
 * draws layer after layer from one stream), so a pipelined run starts where
 * a single process does. */
static int init_stage_params(sfp_trainer *t, const char *config_dir, sfp_error *err)
{
	sfp_dist *d = t->dist;
	sfp_model *fm = NULL;
	SFP_TRY(sfp_model_create(&fm, &t->cfg.model, config_dir, 1, err));
	sfp_model_init(fm, t->cfg.train.seed);
	size_t np, fnp;
	float *p = sfp_model_params(t->model, &np);
	const float *fp = sfp_model_params(fm, &fnp);
	size_t end = 0; /* past the last parameter copied */
	int same = 1;
	for (int i = d->first; i < d->last && same; i++) {
		sfp_layer_info fl, sl, el; /* el: the head's copy of the matrix, first */
		sfp_dist_stage_layer(fm, d->first, i - d->first, &fl, &el);
		sfp_model_layer(t->model, i - d->first, &sl);
		const size_t at = sl.param_offset;
		same = sl.nparams == el.nparams + fl.nparams && at + sl.nparams <= np;
		if (same) {
			memcpy(p + at, fp + el.param_offset, el.nparams * sizeof(float));
			memcpy(p + at + el.nparams, fp + fl.param_offset, fl.nparams * sizeof(float));
		}
		end = at + sl.nparams;
	}
	int rc = SFP_OK;
	if (!same || end != np)
		rc = sfp_error_set(err, SFP_EINVAL,
				   "stage %d: its parameters are not those of the model's layers %d..%d",
				   d->stage, d->first, d->last - 1);
	sfp_model_free(fm);
	return rc;
}

int sfp_dist_finish_setup(sfp_trainer *t, const char *config_dir, sfp_error *err)
{
	sfp_dist *d = t->dist;
	if (d->stages > 1)
		SFP_TRY(init_stage_params(t, config_dir, err));
	size_t np;
	sfp_model_params(t->model, &np);
	if (d->replicas > 1 && d->gwire.error_feedback && !d->gwire.cast &&
	    d->gwire.algo != SFP_ALLREDUCE_NATIVE &&
	    !(d->gwire.params.e >= 8 && d->gwire.params.m >= 23)) {
		d->residual = calloc(np ? np : 1, sizeof(float));
		if (!d->residual)
			return sfp_error_set(err, SFP_ENOMEM, "out of memory");
	}
	if (d->replicas > 1)
		SFP_TRY(sfp_exchange_create(&d->x, d, t->model, &t->cfg.parallel, err));
	const int B = t->cfg.train.batch_size;
	const size_t per_replica = ((size_t)B + d->replicas - 1) / d->replicas;
	const size_t in_n = sfp_shape_numel(sfp_model_input_shape(t->model));
	/* the stage inputs kept for backward: every micro-batch's (GPipe, and
	 * the first stage, whose inputs are the batch), or 1F1B's in flight */
	const size_t mb_max = (per_replica + (size_t)d->micro - 1) / (size_t)d->micro;
	d->slots = d->micro;
	if (d->stages > 1 && d->stage > 0 && t->cfg.parallel.schedule == SFP_PIPE_1F1B &&
	    d->stages - d->stage < d->micro)
		d->slots = d->stages - d->stage;
	d->input_bytes = (d->slots == d->micro ? per_replica : (size_t)d->slots * mb_max) * in_n *
			 sizeof(float);
	d->mbx = malloc(d->input_bytes);
	d->mby = malloc(per_replica);
	if (!d->mbx || !d->mby)
		return sfp_error_set(err, SFP_ENOMEM, "out of memory");
	if (t->tokens) {
		const size_t n = (size_t)B * (size_t)t->seq_len;
		d->tokx = malloc(n * sizeof *d->tokx);
		d->tokt = malloc(n * sizeof *d->tokt);
		if (!d->tokx || !d->tokt)
			return sfp_error_set(err, SFP_ENOMEM, "out of memory");
	}
	return SFP_OK;
}

/* The container of the stage's output on the wire: its learned widths when
 * it has a container, else lossless. */
static void act_params(sfp_trainer *t, sfp_params *p)
{
	sfp_model *m = t->model;
	sfp_layer_info li;
	sfp_model_layer(m, sfp_model_n_layers(m) - 1, &li);
	sfp_params_init(p, 8, 23);
	for (int k = 0; k < sfp_model_n_qtensors(m); k++) {
		sfp_qtensor_info qi;
		sfp_model_qtensor(m, k, &qi);
		if (!strcmp(qi.layer, li.name) && !strcmp(qi.kind, "activations"))
			sfp_params_init(p, qi.e, qi.m);
	}
	p->gecko = t->cfg.bitlength.gecko;
}

static uint64_t noise_seed(const sfp_trainer *t, int k)
{
	return t->cfg.train.seed * 0x100000001b3ull + (uint64_t)t->step +
	       (uint64_t)t->dist->replica * 0x9e3779b97f4a7c15ull +
	       (uint64_t)k * 0xd1b54a32d192ed03ull;
}

/* Scale the loss gradient of `b` samples by b / total: the replicas' sum is
 * then the gradient of the global mean. */
static void scale_output_grad(sfp_model *m, int b, int total)
{
	if (b == total)
		return;
	float *g = sfp_model_output_grad(m), s = (float)b / (float)total;
	const size_t n = (size_t)b * sfp_model_classes(m);
	for (size_t i = 0; i < n; i++)
		g[i] *= s;
}

/* The loss of mb samples whose labels (or, for token data, targets) start
 * at sample `off` of the replica's batch; its gradient for backward. */
static float stage_loss(sfp_trainer *t, const uint8_t *y, const int32_t *tg, size_t off, int mb,
			int *c)
{
	if (tg)
		return sfp_model_loss_tokens(t->model, tg + off * (size_t)t->seq_len, mb, c, 1);
	return sfp_model_loss(t->model, y + off, mb, c, 1);
}

/* One replica batch through this stage: its micro-batches' forward and
 * backward in the schedule's order (pipe_fwd, pipe_bwd). */
typedef struct pipe {
	sfp_trainer *t;
	const int32_t *tg; /* token data's targets of the replica's batch, or NULL */
	sfp_params ap;     /* the stage output's container on the wire */
	size_t in_n, out_n;
	int bd, total;     /* the replica's samples, the global batch */
	int newest;        /* micro-batch whose activations are in place (-1: none) */
	double lsum, ok;
} pipe;

/* Micro-batch k's stage input: where the batch is (GPipe, the first
 * stage), or its slot among those in flight (1F1B). */
static float *stage_input(const sfp_dist *d, const pipe *p, int k, size_t off)
{
	if (d->slots == d->micro)
		return d->mbx + off * p->in_n;
	const size_t mb_max = ((size_t)p->bd + (size_t)d->micro - 1) / (size_t)d->micro;
	return d->mbx + (size_t)(k % d->slots) * mb_max * p->in_n;
}

/* Forward of micro-batch k: receive its input (not the first stage), send
 * the output on; the last stage takes the loss and runs backward at once. */
static int pipe_fwd(pipe *p, int k, sfp_error *err)
{
	sfp_trainer *t = p->t;
	sfp_dist *d = t->dist;
	sfp_model *m = t->model;
	const int is_first = d->stage == 0, is_last = d->stage == d->stages - 1;
	size_t off, mb;
	sfp_split((size_t)p->bd, d->micro, k, &off, &mb);
	if (!mb)
		return SFP_OK;
	float *x = stage_input(d, p, k, off);
	if (!is_first)
		SFP_TRY(sfp_recv_tensor(d->coll, d->rank - 1, 2 * k, x, mb * p->in_n, &d->ws[WIRE_ACTS],
					err));
	sfp_model_forward(m, x, (int)mb, SFP_FORWARD_TRAIN, noise_seed(t, k));
	p->newest = k;
	if (!is_last)
		return sfp_send_tensor(d->coll, d->rank + 1, 2 * k,
				       sfp_model_activation(m, sfp_model_n_layers(m) - 1), mb * p->out_n,
				       &p->ap, &d->ws[WIRE_ACTS], err);
	int c = 0;
	float l = stage_loss(t, d->mby, p->tg, off, (int)mb, &c);
	p->lsum += (double)l * (double)mb;
	p->ok += c;
	scale_output_grad(m, (int)mb, p->total);
	sfp_model_backward(m, x, (int)mb);
	if (!is_first)
		SFP_TRY(sfp_send_tensor(d->coll, d->rank - 1, 2 * k + 1, sfp_model_input_grad(m),
					mb * p->in_n, &d->agrad, &d->ws[WIRE_AGRADS], err));
	return SFP_OK;
}

/* Backward of micro-batch k on a stage before the last: its forward again
 * from the kept input unless its activations are the ones in place, the
 * output's gradient from the next stage, the input's to the previous. */
static int pipe_bwd(pipe *p, int k, sfp_error *err)
{
	sfp_trainer *t = p->t;
	sfp_dist *d = t->dist;
	sfp_model *m = t->model;
	size_t off, mb;
	sfp_split((size_t)p->bd, d->micro, k, &off, &mb);
	if (!mb)
		return SFP_OK;
	float *x = stage_input(d, p, k, off);
	if (k != p->newest)
		sfp_model_forward(m, x, (int)mb, SFP_FORWARD_RECOMPUTE, noise_seed(t, k));
	p->newest = -1;
	SFP_TRY(sfp_recv_tensor(d->coll, d->rank + 1, 2 * k + 1, sfp_model_output_grad(m),
				mb * p->out_n, &d->ws[WIRE_AGRADS], err));
	sfp_model_backward(m, x, (int)mb);
	if (d->stage > 0)
		SFP_TRY(sfp_send_tensor(d->coll, d->rank - 1, 2 * k + 1, sfp_model_input_grad(m),
					mb * p->in_n, &d->agrad, &d->ws[WIRE_AGRADS], err));
	return SFP_OK;
}

/* tx, tg: token data's inputs and targets of the replica's batch (else
 * NULL, and idx gives its samples).
 *   GPipe: every forward, then the backwards newest first.
 *   1F1B: stage s runs S - s - 1 forwards ahead, then one forward and one
 *   backward in turn, then the backwards left; it keeps at most S - s
 *   inputs (the last stage runs each backward with its forward). */
static int pipeline_step(sfp_trainer *t, const uint32_t *idx, const float *tx, const int32_t *tg,
			 int bd, int total, double *lsum, double *ok, sfp_error *err)
{
	sfp_dist *d = t->dist;
	sfp_model *m = t->model;
	const int S = d->stages, M = d->micro;
	const int is_first = d->stage == 0, is_last = d->stage == S - 1;
	pipe p = {.t = t,
		  .tg = tg,
		  .in_n = sfp_shape_numel(sfp_model_input_shape(m)),
		  .out_n = (size_t)sfp_model_classes(m),
		  .bd = bd,
		  .total = total,
		  .newest = -1};
	act_params(t, &p.ap);
	if (tx && is_first)
		memcpy(d->mbx, tx, (size_t)bd * p.in_n * sizeof(float));
	else if (is_first)
		SFP_TRY(sfp_train_gather(t, idx, bd, d->mbx, d->mby, err));
	else if (is_last && !tg)
		for (int i = 0; i < bd; i++)
			d->mby[i] = t->train.y[idx[i]];
	if (t->cfg.parallel.schedule == SFP_PIPE_1F1B) {
		const int ahead = S - d->stage - 1 < M ? S - d->stage - 1 : M;
		for (int k = 0; k < ahead; k++)
			SFP_TRY(pipe_fwd(&p, k, err));
		for (int k = ahead; k < M; k++) {
			SFP_TRY(pipe_fwd(&p, k, err));
			if (!is_last)
				SFP_TRY(pipe_bwd(&p, k - ahead, err));
		}
		for (int k = M - ahead; k < M && !is_last; k++)
			SFP_TRY(pipe_bwd(&p, k, err));
	} else {
		for (int k = 0; k < M; k++)
			SFP_TRY(pipe_fwd(&p, k, err));
		for (int k = M - 1; k >= 0 && !is_last; k--)
			SFP_TRY(pipe_bwd(&p, k, err));
	}
	*lsum = p.lsum;
	*ok = p.ok;
	return SFP_OK;
}

int sfp_dist_step(sfp_trainer *t, int64_t first, int b, double out[3], sfp_error *err)
{
	sfp_dist *d = t->dist;
	sfp_model *m = t->model;
	size_t off, bd;
	sfp_split((size_t)b, d->replicas, d->replica, &off, &bd);
	const uint32_t *idx = t->order + first + off;
	/* token data: every rank draws the step's global windows (as one
	 * process does) and takes its replica's share */
	const float *tx = NULL;
	const int32_t *tg = NULL;
	if (t->tokens) {
		const size_t T = (size_t)t->seq_len;
		SFP_TRY(sfp_tokens_batch(&t->tok, b, t->seq_len, t->cfg.train.seed, t->step, d->tokx,
					 d->tokt, err));
		tx = d->tokx + off * T;
		tg = d->tokt + off * T;
	}
	double lsum = 0.0, ok = 0.0;
	sfp_model_zero_grad(m);
	if (d->x)
		sfp_exchange_begin(d->x);
	if (d->stages > 1) {
		SFP_TRY(pipeline_step(t, idx, tx, tg, (int)bd, b, &lsum, &ok, err));
	} else if (bd > 0) {
		int c = 0;
		const float *x = tx;
		if (!tx) {
			SFP_TRY(sfp_train_gather(t, idx, (int)bd, t->bx, t->by, err));
			x = t->bx;
		}
		sfp_model_forward(m, x, (int)bd, SFP_FORWARD_TRAIN, noise_seed(t, 0));
		float l = stage_loss(t, t->by, tg, 0, (int)bd, &c);
		lsum = (double)l * (double)bd;
		ok = c;
		scale_output_grad(m, (int)bd, b);
		sfp_model_backward(m, x, (int)bd);
	}
	if (d->x)
		SFP_TRY(sfp_exchange_finish(d->x, err));
	SFP_TRY(sync_ties(t, err));
	const int is_last = d->stage == d->stages - 1;
	out[0] = lsum;
	out[1] = ok;
	out[2] = is_last ? (double)bd : 0.0;
	return sfp_allreduce_f64(d->coll, &d->world_g, out, 3, err);
}

int sfp_dist_evaluate(sfp_trainer *t, float *acc, float *loss, sfp_error *err)
{
	sfp_dist *d = t->dist;
	sfp_model *m = t->model;
	const int is_first = d->stage == 0, is_last = d->stage == d->stages - 1;
	const size_t in_n = sfp_shape_numel(sfp_model_input_shape(m));
	const size_t out_n = (size_t)sfp_model_classes(m);
	const int bs = sfp_model_max_batch(m);
	/* token data: the held-out windows, split among the replicas */
	const size_t T = t->tokens ? (size_t)t->seq_len : 1;
	const size_t n = t->tokens ? (size_t)sfp_tokens_val_windows(&t->tok, t->seq_len)
				   : (size_t)t->test.n;
	size_t off, len;
	sfp_split(n, d->replicas, d->replica, &off, &len);
	sfp_params ap;
	act_params(t, &ap);
	sfp_wire_stats ev = {0}; /* not training traffic: kept out of the per-step records */
	double s[3] = {0.0, 0.0, 0.0};
	for (size_t i = 0; i < len; i += (size_t)bs) {
		int b = (int)(len - i < (size_t)bs ? len - i : (size_t)bs);
		const float *x = NULL; /* a later stage's comes from the stage before it */
		if (!t->tokens) {
			x = t->test.x + (off + i) * in_n;
		} else if (is_first || is_last) { /* inputs for the first stage, targets for the last */
			sfp_tokens_val_batch(&t->tok, t->seq_len, (int64_t)(off + i), b, t->bx, t->bt);
			x = t->bx;
		}
		if (!is_first) {
			SFP_TRY(sfp_recv_tensor(d->coll, d->rank - 1, TAG_EVAL, d->mbx, (size_t)b * in_n,
						&ev, err));
			x = d->mbx;
		}
		sfp_model_forward(m, x, b, SFP_FORWARD_EVAL, 0);
		if (!is_last) {
			SFP_TRY(sfp_send_tensor(d->coll, d->rank + 1, TAG_EVAL,
						sfp_model_activation(m, sfp_model_n_layers(m) - 1),
						(size_t)b * out_n, &ap, &ev, err));
			continue;
		}
		int c = 0;
		const float l = t->tokens ? sfp_model_loss_tokens(m, t->bt, b, &c, 0)
					  : sfp_model_loss(m, t->test.y + off + i, b, &c, 0);
		s[0] += (double)l * (double)b * (double)T; /* per token for token data */
		s[1] += c;
		s[2] += (double)b * (double)T;
	}
	SFP_TRY(sfp_allreduce_f64(d->coll, &d->world_g, s, 3, err));
	*acc = s[2] > 0 ? (float)(s[1] / s[2]) : 0.0f;
	*loss = s[2] > 0 ? (float)(s[0] / s[2]) : 0.0f;
	return SFP_OK;
}

/* x[0..n) := the mean over this stage's replicas */
static int replica_mean(sfp_dist *d, float *x, size_t n, sfp_error *err)
{
	if (d->replicas == 1 || n == 0)
		return SFP_OK;
	double *v = malloc(n * sizeof(double));
	if (!v)
		return sfp_error_set(err, SFP_ENOMEM, "out of memory");
	for (size_t i = 0; i < n; i++)
		v[i] = x[i];
	int rc = sfp_allreduce_f64(d->coll, &d->dp_g, v, (int)n, err);
	if (rc == SFP_OK)
		for (size_t i = 0; i < n; i++)
			x[i] = (float)(v[i] / d->replicas);
	free(v);
	return rc;
}

int sfp_dist_allreduce_world(sfp_trainer *t, double *x, int n, sfp_error *err)
{
	return sfp_allreduce_f64(t->dist->coll, &t->dist->world_g, x, n, err);
}

int sfp_dist_sync_buffers(sfp_trainer *t, sfp_error *err)
{
	size_t nb;
	float *b = sfp_model_buffers(t->model, &nb);
	return replica_mean(t->dist, b, nb, err);
}

int sfp_dist_sync_widths(sfp_trainer *t, sfp_error *err)
{
	int n = 2 * sfp_model_n_qtensors(t->model);
	if (!n || t->dist->replicas == 1)
		return SFP_OK;
	float *w = malloc((size_t)n * sizeof(float));
	if (!w)
		return sfp_error_set(err, SFP_ENOMEM, "out of memory");
	sfp_model_widths_save(t->model, w, n);
	int rc = replica_mean(t->dist, w, (size_t)n, err);
	if (rc == SFP_OK)
		sfp_model_widths_load(t->model, w, n);
	free(w);
	return rc;
}

int sfp_dist_traffic(sfp_trainer *t, sfp_wire_stats out[WIRE_KINDS], uint64_t *exposed_ns,
		     sfp_error *err)
{
	sfp_dist *d = t->dist;
	enum { F = 6 };
	double v[WIRE_KINDS * F + 1];
	v[WIRE_KINDS * F] = (double)(d->exposed_ns - d->exposed_mark);
	d->exposed_mark = d->exposed_ns;
	for (int k = 0; k < WIRE_KINDS; k++) {
		const sfp_wire_stats *a = &d->ws[k], *b = &d->ws_mark[k];
		double *o = v + k * F;
		o[0] = (double)(a->raw_bytes - b->raw_bytes);
		o[1] = (double)(a->wire_bytes - b->wire_bytes);
		o[2] = (double)(a->messages - b->messages);
		o[3] = (double)(a->encode_ns - b->encode_ns);
		o[4] = (double)(a->decode_ns - b->decode_ns);
		o[5] = (double)(a->comm_ns - b->comm_ns);
		d->ws_mark[k] = d->ws[k];
	}
	SFP_TRY(sfp_allreduce_f64(d->coll, &d->world_g, v, WIRE_KINDS * F + 1, err));
	*exposed_ns = (uint64_t)v[WIRE_KINDS * F];
	for (int k = 0; k < WIRE_KINDS; k++) {
		const double *o = v + k * F;
		out[k] = (sfp_wire_stats){(uint64_t)o[0], (uint64_t)o[1], (uint64_t)o[2],
					  (uint64_t)o[3], (uint64_t)o[4], (uint64_t)o[5]};
	}
	return SFP_OK;
}

int sfp_dist_gather_stages(sfp_trainer *t, void *recs, size_t size, int *n, int cap,
			   sfp_error *err)
{
	sfp_dist *d = t->dist;
	if (d->stages == 1 || d->replica != 0)
		return SFP_OK;
	for (int s = 1; s < d->stages; s++) {
		if (d->stage != 0 && d->stage != s)
			continue;
		/* rank 0 and rank s; s sends (member 1 is the root) */
		const sfp_group g = make_group(2, d->stage ? 1 : 0, s, 0);
		int32_t k = d->stage ? *n : 0;
		SFP_TRY(sfp_broadcast(d->coll, &g, 1, &k, sizeof k, err));
		if (k < 0 || k > cap - *n * (d->stage == 0))
			return sfp_error_set(err, SFP_ECORRUPT,
					     "stage %d sends %d records; at most %d fit", s, (int)k,
					     cap - *n);
		void *at = d->stage ? recs : (char *)recs + (size_t)*n * size;
		SFP_TRY(sfp_broadcast(d->coll, &g, 1, at, (size_t)k * size, err));
		if (d->stage == 0)
			*n += k;
	}
	return SFP_OK;
}

/* A stage's activation memory, as the stages send it to rank 0. */
typedef struct stage_mem {
	int32_t stage, slots;
	uint64_t inputs, activations;
} stage_mem;

int sfp_dist_memory_report(sfp_trainer *t, sfp_error *err)
{
	sfp_dist *d = t->dist;
	if (d->stages == 1)
		return SFP_OK;
	stage_mem *r = calloc((size_t)d->stages, sizeof *r);
	if (!r)
		return sfp_error_set(err, SFP_ENOMEM, "out of memory");
	sfp_model_mem mem;
	sfp_model_memory(t->model, &mem);
	r[0] = (stage_mem){.stage = d->stage,
			   .slots = d->slots,
			   .inputs = d->input_bytes,
			   .activations = mem.activations + mem.stash + mem.act_grads + mem.buffers};
	int n = 1;
	int rc = sfp_dist_gather_stages(t, r, sizeof *r, &n, d->stages, err);
	if (rc == SFP_OK && d->rank == 0) {
		const char *sched = t->cfg.parallel.schedule == SFP_PIPE_1F1B ? "1f1b" : "gpipe";
		char line[1024];
		int len = snprintf(line, sizeof line,
				   "pipeline %s, %d micro-batches; peak activation memory per stage "
				   "(inputs kept + layers):",
				   sched, d->micro);
		for (int k = 0; k < n && rc == SFP_OK; k++) {
			const double in = (double)r[k].inputs / 1048576.0,
				     act = (double)r[k].activations / 1048576.0;
			if (len > 0 && (size_t)len < sizeof line)
				len += snprintf(line + len, sizeof line - (size_t)len,
						" %d: %.2f + %.2f = %.2f MiB;", (int)r[k].stage, in, act,
						in + act);
			rc = sfp_metrics_stage_memory(t, sched, (int)r[k].stage, r[k].slots, r[k].inputs,
						      r[k].activations, err);
		}
		if (t->on_notice)
			t->on_notice(t->notice_user, line);
	}
	free(r);
	return rc;
}
