/*
 * loop.c -- the training loop, and the BitPruning fine-tune as a mode of
 * it: batches in a seeded order, forward, loss, the divergence check,
 * backward, the mode's updates, interval accounting (progress, ETA, the
 * metrics record), and for training the daemon link, evaluation and
 * checkpoints.
 *
 * Everything a step computes is a function of (config, step, checkpointed
 * state): the batch order depends on (seed, epoch), dropout masks on (seed,
 * step), the learning rate on step. So a run resumed from the checkpoint of
 * step k continues bit-identically to one that never stopped. The
 * fine-tune has its own seed (PRUNE_SEED), so its batches are not the
 * training run's.
 */
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "train/train_internal.h"

/* The fine-tune's own seeded batch order, apart from the training run's. */
#define PRUNE_SEED 0x5052554e45ull
/* Training batches whose input maxima set the first clip ranges. */
#define CALIBRATION_BATCHES 16
/* Noise seeds (dropout, width choices): seed * NOISE_MUL + step. */
#define NOISE_MUL 0x100000001b3ull

/* What differs between training and the fine-tune. */
typedef struct loop_mode {
	int prune;                  /* the BitPruning fine-tune */
	uint64_t seed;              /* batch order and noise */
	int64_t *step;              /* steps done (t->step when training) */
	int64_t total;
	sfp_optim *opt;             /* the weights' optimizer and schedule */
	const sfp_cfg_optimizer *oc;
	const sfp_cfg_schedule *sc;
	const char *step_word;      /* named when the loss diverges */
	const char *lr_key;
} loop_mode;

/* One log interval's sums. */
typedef struct interval {
	double loss;
	int64_t ok, n, steps;
	uint64_t t0_ns;
} interval;

/* The batch of step s in the mode's order: its size, its first position
 * in the epoch's order in *first. */
static int loop_batch(sfp_trainer *t, const loop_mode *md, int64_t s, int64_t *first)
{
	const int B = t->cfg.train.batch_size;
	if (t->tokens) { /* windows drawn per step: no order */
		*first = 0;
		return B;
	}
	const int64_t epoch = s / t->steps_per_epoch;
	if (t->order_epoch != epoch) {
		sfp_dataset_order(t->order, t->train.n, md->seed, epoch, t->cfg.data.shuffle);
		t->order_epoch = epoch;
	}
	*first = s % t->steps_per_epoch * B;
	return (int)(t->train.n - *first < B ? t->train.n - *first : B);
}

int sfp_train_gather(sfp_trainer *t, const uint32_t *idx, int b, float *x, uint8_t *y,
		     sfp_error *err)
{
	sfp_dataset_gather(&t->train, idx, b, x, y);
	return sfp_dataset_augment(&t->train, idx, b, t->cfg.train.seed, t->order_epoch, x, err);
}

/* Bits per value of weights + stored activations at the packing widths. */
static float footprint_bits(const sfp_trainer *t)
{
	double bw, ba, cw, ca;
	sfp_model_footprint(t->model, &bw, &ba, &cw, &ca);
	return cw + ca > 0 ? (float)((bw + ba) / (cw + ca)) : 32.0f;
}

/* After backward: training moves the weights, then the widths (learned,
 * or BitWave's unless the daemon steers); the fine-tune moves the widths
 * first, since their gradient needs this forward pass's weights (after
 * rounding only the clip ranges move), then the weights. */
static int loop_update(sfp_trainer *t, const loop_mode *md, int64_t s, float loss, float lr,
		       sfp_error *err)
{
	const sfp_config *c = &t->cfg;
	float *p = sfp_model_params(t->model, NULL), *g = sfp_model_grads(t->model, NULL);
	if (md->prune) {
		sfp_model_prune_update(t->model, c->prune.lr, c->prune.gamma);
		sfp_optim_step(md->opt, p, g, lr, s + 1);
		return SFP_OK;
	}
	sfp_optim_step(md->opt, p, g, lr, s + 1);
	if (t->policy == SFP_QPOLICY_QUANTUM) {
		sfp_model_quant_update(t->model, c->bitlength.lr, c->bitlength.gamma);
		if (t->dist)
			SFP_TRY(sfp_dist_sync_widths(t, err));
	} else if (t->policy == SFP_QPOLICY_BITWAVE && !t->link.steers && sfp_bitwave_live(t) &&
		   sfp_bitwave_observe(&t->bw, loss) != 0) {
		sfp_model_set_widths(t->model, t->bw.e, t->bw.m);
	}
	return SFP_OK;
}

/* The inputs (t->bx) and labels (t->by, or t->bt for tokens) of step s's
 * batch of b: gathered from the epoch's order and augmented, or B token
 * windows drawn from (seed, s). */
static int load_batch(sfp_trainer *t, const loop_mode *md, int64_t s, int64_t first, int b,
		      sfp_error *err)
{
	if (t->tokens)
		return sfp_tokens_batch(&t->tok, b, t->seq_len, md->seed, s, t->bx, t->bt, err);
	return sfp_train_gather(t, t->order + first, b, t->bx, t->by, err);
}

/* One step: batch, forward, loss, the divergence check, backward, the
 * mode's updates. *b the batch, *ok its correct predictions (summed over
 * the job for a distributed trainer). */
static int loop_step(sfp_trainer *t, const loop_mode *md, float *loss, int *ok, int *b, float *lr,
		     sfp_error *err)
{
	const int64_t s = *md->step;
	int64_t first;
	*b = loop_batch(t, md, s, &first);
	*ok = 0;
	if (t->dist) {
		double sums[3];
		SFP_TRY(sfp_dist_step(t, first, *b, sums, err));
		*loss = (float)(sums[0] / sums[2]);
		*ok = (int)sums[1];
	} else {
		SFP_TRY(load_batch(t, md, s, first, *b, err));
		sfp_model_forward(t->model, t->bx, *b, SFP_FORWARD_TRAIN, md->seed * NOISE_MUL + (uint64_t)s);
		*loss = t->tokens ? sfp_model_loss_tokens(t->model, t->bt, *b, ok, 1)
				  : sfp_model_loss(t->model, t->by, *b, ok, 1);
	}
	if (!(*loss == *loss) || *loss > 1e30f)
		return sfp_error_set(err, SFP_ERANGE, "loss is %g at %s %" PRId64 "; lower %s",
				     (double)*loss, md->step_word, s, md->lr_key);
	if (!t->dist) {
		sfp_model_zero_grad(t->model);
		sfp_model_backward(t->model, t->bx, *b);
	}
	*lr = sfp_lr_at(md->oc, md->sc, s, md->total);
	return loop_update(t, md, s, *loss, *lr, err);
}

/* Once a run: a tensor held values its container cannot. */
static void say_misses(sfp_trainer *t)
{
	const uint64_t misses = sfp_model_container_misses(t->model);
	if (misses && !t->misses_said && t->on_notice) {
		char msg[200];
		snprintf(msg, sizeof msg,
			 "step %" PRId64 ": %" PRIu64 " tensor(s) held values their container "
			 "cannot (NaN, Inf or beyond float32), kept as they are",
			 t->step, misses);
		t->on_notice(t->notice_user, msg);
	}
	t->misses_said = misses;
}

/* The interval's progress report and metrics records; then a new interval.
 * `done` is the steps this call of the loop has run (for the ETA). */
static int loop_report(sfp_trainer *t, const loop_mode *md, interval *iv, int64_t epoch,
		       float lr, int64_t done, uint64_t t0_ns, sfp_error *err)
{
	const int64_t step = *md->step;
	const uint64_t now = sfp_clock_ns();
	const double dt = (double)(now - iv->t0_ns) * 1e-9, all = (double)(now - t0_ns) * 1e-9;
	sfp_progress pr = {.tokens = t->tokens,
			   .epoch = epoch,
			   .step = step,
			   .total_steps = md->total,
			   .loss = (float)(iv->loss / (double)iv->steps),
			   .train_acc = (float)iv->ok / (float)iv->n,
			   .lr = lr,
			   .samples_per_s = dt > 0 ? (double)iv->n / dt : 0.0,
			   .eta_s = (double)(md->total - step) * all / (double)done};
	sfp_prune_summary ps;
	sfp_wire_stats ws[WIRE_KINDS];
	if (md->prune) {
		sfp_model_prune_summary(t->model, &ps);
		pr.bits_per_value = (float)ps.w_per_weight;
	} else {
		pr.bits_per_value = footprint_bits(t);
	}
	if (t->dist) {
		uint64_t exposed = 0;
		SFP_TRY(sfp_dist_traffic(t, ws, &exposed, err));
		pr.exposed_comm_ms_per_step = (double)exposed * 1e-6 / (double)iv->steps / t->dist->world;
		for (int k = 0; k < WIRE_KINDS; k++) {
			pr.wire_bytes_per_step += (double)ws[k].wire_bytes / (double)iv->steps;
			pr.raw_bytes_per_step += (double)ws[k].raw_bytes / (double)iv->steps;
			const double per = 1e-6 / (double)iv->steps / t->dist->world;
			pr.codec_ms_per_step += (double)(ws[k].encode_ns + ws[k].decode_ns) * per;
			pr.comm_ms_per_step += (double)ws[k].comm_ns * per;
		}
	}
	if (t->on_progress)
		t->on_progress(t->user, &pr);
	if (md->prune) {
		SFP_TRY(sfp_metrics_prune(t, &pr, &ps, err));
	} else {
		SFP_TRY(sfp_metrics_train(t, &pr, err));
		if (t->dist)
			SFP_TRY(sfp_metrics_traffic(t, ws, pr.exposed_comm_ms_per_step, iv->steps, err));
		SFP_TRY(sfp_metrics_widths(t, err));
	}
	memset(iv, 0, sizeof *iv);
	iv->t0_ns = sfp_clock_ns();
	return SFP_OK;
}

static int evaluate_and_log(sfp_trainer *t, int64_t epoch, sfp_error *err)
{
	float acc, loss;
	sfp_coord_link_heartbeat(t); /* evaluation can take a while: still alive */
	SFP_TRY(sfp_trainer_evaluate(t, &acc, &loss, err));
	if (t->on_progress) {
		sfp_progress p = {.is_eval = 1,
				  .tokens = t->tokens,
				  .epoch = epoch,
				  .step = t->step,
				  .total_steps = t->total_steps,
				  .loss = loss,
				  .test_acc = acc};
		t->on_progress(t->user, &p);
	}
	return sfp_metrics_eval(t, epoch, acc, loss, err);
}

/* Training's end of a step: checkpoints as configured, evaluation at the
 * configured epoch ends and at the last step. */
static int train_step_end(sfp_trainer *t, int64_t epoch, int epoch_end, int last,
			  int *evaluated_at_end, sfp_error *err)
{
	const sfp_config *c = &t->cfg;
	if (c->checkpoint.dir[0] && c->checkpoint.every_steps > 0 &&
	    t->step % c->checkpoint.every_steps == 0)
		SFP_TRY(sfp_ckpt_now(t, err));
	if (!epoch_end && !last)
		return SFP_OK;
	const int ev = c->train.eval_every_epochs;
	if (last || (ev > 0 && (epoch + 1) % ev == 0)) {
		SFP_TRY(evaluate_and_log(t, epoch, err));
		*evaluated_at_end = last;
	}
	if (c->checkpoint.dir[0] && c->checkpoint.every_steps <= 0)
		SFP_TRY(sfp_ckpt_now(t, err));
	return SFP_OK;
}

/* The loop: from *md->step to md->total. Training reports at every
 * log.every steps and at epoch ends; the fine-tune at log.every steps. */
static int run_loop(sfp_trainer *t, const loop_mode *md, sfp_error *err)
{
	const sfp_config *c = &t->cfg;
	const int every = c->log.every > 0 ? c->log.every : 50;
	const uint64_t t0 = sfp_clock_ns();
	interval iv = {.t0_ns = t0};
	int64_t done = 0;
	int evaluated_at_end = 0;
	while (*md->step < md->total) {
		const int64_t epoch = *md->step / t->steps_per_epoch;
		float loss = 0.0f, lr = 0.0f;
		int ok, b;
		SFP_TRY(loop_step(t, md, &loss, &ok, &b, &lr, err));
		const int64_t s = ++*md->step;
		done++;
		/* what the interval counts: samples, or tokens of token data */
		const int64_t items = t->tokens ? (int64_t)b * t->seq_len : b;
		if (md->prune) {
			if (s == c->prune.steps)
				sfp_model_prune_round(t->model);
		} else {
			say_misses(t);
			/* the daemon adds up its workers' reports: each reports what
			 * its replica trained (proto/sfp.proto), not the global batch */
			int64_t mine = items;
			if (t->dist && t->dist->replicas > 1) {
				size_t off, bd;
				sfp_split((size_t)b, t->dist->replicas, t->dist->replica, &off, &bd);
				mine = t->tokens ? (int64_t)bd * t->seq_len : (int64_t)bd;
			}
			SFP_TRY(sfp_coord_link_step(t, loss,
						    (uint64_t)mine * (uint64_t)c->daemon.report_every, err));
		}
		iv.loss += loss;
		iv.ok += ok;
		iv.n += items;
		iv.steps++;
		const int epoch_end = !md->prune && s % t->steps_per_epoch == 0;
		const int last = s == md->total;
		if (s % every == 0 || epoch_end || last)
			SFP_TRY(loop_report(t, md, &iv, epoch, lr, done, t0, err));
		if (!md->prune)
			SFP_TRY(train_step_end(t, epoch, epoch_end, last, &evaluated_at_end, err));
	}
	/* resumed at the end: nothing to train, the evaluation of the last step
	 * done, in that step's epoch (as the run that never stopped logged it) */
	if (!md->prune && !evaluated_at_end && done == 0)
		SFP_TRY(evaluate_and_log(t, t->step > 0 ? (t->step - 1) / t->steps_per_epoch : 0, err));
	return SFP_OK;
}

int sfp_trainer_run(sfp_trainer *t, sfp_error *err)
{
	const sfp_config *c = &t->cfg;
	if (t->resumed_without_residual && t->on_notice)
		t->on_notice(t->notice_user,
			     "resumed with lossy gradient widths and error feedback: checkpoints do not "
			     "hold the feedback residuals, which start again from zero (the run is not "
			     "bit-identical to one that never stopped)");
	t->resumed_without_residual = 0;
	const loop_mode md = {.seed = c->train.seed,
			      .step = &t->step,
			      .total = t->total_steps,
			      .opt = t->opt,
			      .oc = &c->train.optimizer,
			      .sc = &c->train.schedule,
			      .step_word = "step",
			      .lr_key = "train.optimizer.lr"};
	int rc = t->link.c ? SFP_OK : sfp_coord_link_open(t, err);
	if (rc == SFP_OK && t->dist)
		rc = sfp_dist_memory_report(t, err);
	if (rc == SFP_OK)
		rc = run_loop(t, &md, err);
	sfp_coord_link_close(t, rc == SFP_OK);
	return rc;
}

/* ---- the BitPruning fine-tune ------------------------------------------- */
static void prune_opts_of(const sfp_cfg_prune *pc, sfp_prune_opts *o)
{
	o->granularity = pc->granularity;
	o->penalty = pc->penalty;
	o->optim = pc->optimizer;
	o->activations = pc->activations;
	o->bits = pc->bits;
	o->min_bits = (float)pc->min_bits;
	o->max_bits = (float)pc->max_bits;
}

/* Clip ranges of the quantized inputs from a few training forward passes
 * over the fine-tune's first batches. */
static void prune_calibrate(sfp_trainer *t, const loop_mode *md)
{
	sfp_model_prune_observe(t->model, 1);
	for (int64_t s = 0; s < CALIBRATION_BATCHES; s++) {
		int64_t first;
		const int b = loop_batch(t, md, s, &first);
		if (load_batch(t, md, s, first, b, NULL) < 0)
			break; /* out of memory: fewer calibration batches */
		sfp_model_forward(t->model, t->bx, b, SFP_FORWARD_TRAIN, md->seed * NOISE_MUL + (uint64_t)s);
	}
	sfp_model_prune_observe(t->model, 0);
}

int sfp_trainer_prune(sfp_trainer *t, sfp_error *err)
{
	const sfp_config *c = &t->cfg;
	const sfp_cfg_prune *pc = &c->prune;
	sfp_prune_opts o;
	prune_opts_of(pc, &o);
	if (t->dist)
		return sfp_error_set(err, SFP_EUNSUPPORTED,
				     "BitPruning fine-tunes in one process, not as a rank of a job");
	SFP_TRY(sfp_model_set_quant(t->model, SFP_QPOLICY_OFF, 0, 8.0f, 23.0f, err));
	t->policy = SFP_QPOLICY_OFF;
	SFP_TRY(sfp_model_set_prune(t->model, &o, err));
	/* the weights' own schedule: cosine from weight_lr to 0, fresh momentum */
	sfp_cfg_optimizer oc = c->train.optimizer;
	oc.lr = pc->weight_lr;
	sfp_cfg_schedule sc;
	memset(&sc, 0, sizeof sc);
	sc.type = SFP_SCHEDULE_COSINE;
	size_t np;
	sfp_model_params(t->model, &np);
	int64_t step = 0;
	loop_mode md = {.prune = 1,
			.seed = c->train.seed ^ PRUNE_SEED,
			.step = &step,
			.total = (int64_t)pc->steps + pc->fix_steps,
			.oc = &oc,
			.sc = &sc,
			.step_word = "fine-tune step",
			.lr_key = "prune.weight_lr"};
	SFP_TRY(sfp_optim_create(&md.opt, &oc, np, err));
	t->order_epoch = -1;
	if (pc->activations)
		prune_calibrate(t, &md);
	if (pc->steps == 0)
		sfp_model_prune_round(t->model);
	int rc = run_loop(t, &md, err);
	t->order_epoch = -1;
	sfp_optim_free(md.opt);
	if (rc == SFP_OK)
		rc = sfp_model_prune_finalize(t->model, err);
	return rc;
}
