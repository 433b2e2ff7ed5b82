/*
 * trainer.c -- the trainer's set-up and teardown: the model (this rank's
 * stage of it in a distributed job), its containers from the bitlength
 * section, the data, the optimizer, the checkpoint folder and the metrics
 * log; evaluation on the test set.
 */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "train/train_internal.h"

/* bitlength section -> containers on the model (and the BitWave state) */
static int setup_bitlength(sfp_trainer *t, const sfp_cfg_bitlength *b, sfp_error *err)
{
	int targets = 0;
	for (int i = 0; i < b->n_targets; i++) {
		if (b->targets[i] == SFP_TARGET_WEIGHTS)
			targets |= SFP_QTARGET_WEIGHTS;
		else if (b->targets[i] == SFP_TARGET_ACTIVATIONS)
			targets |= SFP_QTARGET_ACTIVATIONS;
		else if (b->targets[i] == SFP_TARGET_GRADIENTS)
			targets |= SFP_QTARGET_GRADIENTS;
		else
			return sfp_error_set(err, SFP_EUNSUPPORTED,
					     "bitlength.targets: %d is not supported (weights, "
					     "activations, gradients)",
					     b->targets[i]);
	}
	if (b->policy == SFP_POLICY_QUANTUM)
		t->policy = SFP_QPOLICY_QUANTUM;
	else if (b->policy == SFP_POLICY_BITWAVE)
		t->policy = SFP_QPOLICY_BITWAVE;
	else
		t->policy = b->e >= 8.0f && b->m >= 23.0f && !(targets & SFP_QTARGET_GRADIENTS)
				    ? SFP_QPOLICY_OFF
				    : SFP_QPOLICY_FIXED;
	if (!targets)
		t->policy = SFP_QPOLICY_OFF;
	if (t->policy == SFP_QPOLICY_FIXED && (b->e != floorf(b->e) || b->m != floorf(b->m)))
		return sfp_error_set(err, SFP_EINVAL,
				     "bitlength: the fixed policy needs integer e and m (got %g, %g)",
				     (double)b->e, (double)b->m);
	if (t->policy == SFP_QPOLICY_BITWAVE) {
		sfp_bitwave_cfg c = {.ema = b->ema,
				     .threshold = b->threshold,
				     .period = b->period,
				     .m_min = (unsigned)b->m_min,
				     .m_max = (unsigned)ceilf(b->m),
				     .e_min = (unsigned)b->e_min,
				     .e_max = (unsigned)ceilf(b->e),
				     .backoff = b->backoff};
		SFP_TRY(sfp_bitwave_init(&t->bw, &c, c.e_max, c.m_max, err));
	}
	t->qtargets = targets;
	SFP_TRY(sfp_train_set_containers(t, t->model, err));
	t->nextra = sfp_ckpt_extra_count(t);
	if (t->nextra && !(t->extra = calloc(t->nextra, sizeof(float))))
		return sfp_error_set(err, SFP_ENOMEM, "out of memory");
	return SFP_OK;
}

int sfp_train_set_containers(const sfp_trainer *t, sfp_model *m, sfp_error *err)
{
	const sfp_cfg_bitlength *b = &t->cfg.bitlength;
	SFP_TRY(sfp_model_set_stash(m, b->pack, b->gecko, err));
	sfp_model_set_pack_weights(m, b->pack_weights);
	SFP_TRY(sfp_model_set_quant(m, t->policy, t->qtargets, b->e, b->m, err));
	SFP_TRY(sfp_model_set_grad_widths(m, (unsigned)b->grad_e, (unsigned)b->grad_m, err));
	SFP_TRY(sfp_model_set_refine(m,
				     b->refine_bias == SFP_REFINE_BIAS_TENSOR ? SFP_BIAS_TENSOR : SFP_BIAS_OFF,
				     b->refine_shift, err));
	if (t->policy == SFP_QPOLICY_QUANTUM)
		sfp_model_set_floors(m, (float)b->e_min, (float)b->m_min);
	return SFP_OK;
}

void sfp_trainer_free(sfp_trainer *t)
{
	if (!t)
		return;
	sfp_model_free(t->model);
	sfp_optim_free(t->opt);
	sfp_dataset_release(&t->train);
	sfp_dataset_release(&t->test);
	sfp_coord_link_close(t, 0);
	sfp_dist_free(t->dist);
	free(t->order);
	free(t->extra);
	free(t->bt);
	sfp_tokens_release(&t->tok);
	free(t->bx);
	free(t->by);
	sfp_metrics_close(t);
	free(t);
}

static int cfg_input_numel(const sfp_cfg_model *c)
{
	int n = 1;
	for (int i = 0; i < c->input_ndim; i++)
		n *= c->input[i];
	return n;
}

/* Token data (data.dataset tokens): model.input is [seq_len], the first
 * layer an embedding, the last one's output (T,1,V) with V at least the
 * embedding's vocabulary (the last pipeline stage's); every id of both
 * parts is below it. Every rank reads the whole files: the windows of a
 * step are drawn from (seed, step), and each replica takes its share. */
static int setup_tokens(sfp_trainer *t, const sfp_config *cfg, sfp_error *err)
{
	const sfp_cfg_model *mc = &cfg->model;
	const int T = cfg->data.seq_len;
	if (mc->input_ndim != 1 || mc->input[0] != T)
		return sfp_error_set(err, SFP_EINVAL,
				     "token data needs model.input: [%d] (data.seq_len), not a "
				     "%d-dimensional input of %d values",
				     T, mc->input_ndim, cfg_input_numel(mc));
	if (strcmp(mc->layers[0].type, "embedding") != 0)
		return sfp_error_set(err, SFP_EINVAL,
				     "token data needs an embedding as the first layer (line %d is "
				     "a %s)",
				     mc->layers[0].line, mc->layers[0].type);
	const int vocab = mc->layers[0].vocab;
	const int is_last = !t->dist || t->dist->stage == t->dist->stages - 1;
	sfp_layer_info li;
	sfp_model_layer(t->model, sfp_model_n_layers(t->model) - 1, &li);
	if (is_last && (li.out.c != T || li.out.h != 1 || li.out.w < vocab))
		return sfp_error_set(err, SFP_EINVAL,
				     "token data needs the last layer '%s' (line %d) to give %d "
				     "scores per token (the vocabulary) for each of %d tokens, not "
				     "(%d, %d, %d)",
				     li.name, li.line, vocab, T, li.out.c, li.out.h, li.out.w);
	SFP_TRY(sfp_tokens_load(&t->tok, &cfg->data, err));
	SFP_TRY(sfp_tokens_check(&t->tok, vocab, err));
	t->tokens = 1;
	t->seq_len = T;
	return SFP_OK;
}

int sfp_trainer_create(sfp_trainer **out, const sfp_config *cfg, const char *config_dir,
		       sfp_error *err)
{
	return sfp_trainer_create_dist(out, cfg, config_dir, NULL, err);
}

int sfp_trainer_create_dist(sfp_trainer **out, const sfp_config *cfg, const char *config_dir,
			    sfp_transport *tr, sfp_error *err)
{
	*out = NULL;
	int rc;
	sfp_cfg_model *stage_cfg = NULL;
	sfp_trainer *t = calloc(1, sizeof *t);
	if (!t)
		return sfp_error_set(err, SFP_ENOMEM, "out of memory");
	t->cfg = *cfg;
	snprintf(t->config_dir, sizeof t->config_dir, "%s", config_dir ? config_dir : ".");
	const int B = cfg->train.batch_size;
	if (B <= 0) {
		rc = sfp_error_set(err, SFP_EINVAL, "train.batch_size must be positive");
		goto out;
	}
	/* a distributed rank builds its stage only, for its share of a batch */
	const sfp_cfg_model *mcfg = &cfg->model;
	int max_batch = B;
	if (tr && sfp_transport_size(tr) > 1) {
		if (!(stage_cfg = malloc(sizeof *stage_cfg))) {
			rc = sfp_error_set(err, SFP_ENOMEM, "out of memory");
			goto out;
		}
		if ((rc = sfp_dist_create(t, tr, &cfg->model, config_dir, stage_cfg, &max_batch,
					  err)) < 0)
			goto out;
		mcfg = stage_cfg;
	}
	const sfp_dist *d = t->dist;
	const int is_last = !d || d->stage == d->stages - 1;
	if ((rc = sfp_model_create_ex(&t->model, mcfg, config_dir, max_batch,
				      is_last ? 0 : SFP_MODEL_STAGE, err)) < 0 ||
	    (rc = sfp_model_set_threads(t->model, cfg->train.threads > 0 ? cfg->train.threads : 1,
					err)) < 0)
		goto out;
	if (d && d->stage > 0)
		sfp_model_want_input_grad(t->model, 1);
	if (!is_last)
		sfp_model_set_output_stored(t->model, 1);
	if (cfg->data.dataset == SFP_DATASET_TOKENS) {
		if ((rc = setup_tokens(t, cfg, err)) < 0)
			goto out;
		goto data_done;
	}
	if ((rc = sfp_dataset_load(&t->train, &t->test, &cfg->data, err)) < 0)
		goto out;
	/* Fashion-MNIST keeps its old rule (only the value count must match) */
	if (cfg->data.dataset != SFP_DATASET_FASHION_MNIST &&
	    (rc = sfp_dataset_check_input(&t->train, cfg->model.input, cfg->model.input_ndim,
					  err)) < 0)
		goto out;
	if ((size_t)cfg_input_numel(&cfg->model) != sfp_shape_numel(t->train.shape)) {
		rc = sfp_error_set(err, SFP_EINVAL,
				   "model.input has %d values per sample but the data has %zu",
				   cfg_input_numel(&cfg->model), sfp_shape_numel(t->train.shape));
		goto out;
	}
	/* data.classes 0 (npy, idx): the labels need only fit the model's classes */
	if (is_last && !cfg->data.classes &&
	    (cfg->data.dataset == SFP_DATASET_NPY || cfg->data.dataset == SFP_DATASET_IDX) &&
	    (rc = sfp_dataset_check_classes(&t->train, &t->test, sfp_model_classes(t->model),
					    err)) < 0)
		goto out;
	if (is_last && sfp_model_classes(t->model) != t->train.classes) {
		rc = sfp_error_set(err, SFP_EINVAL,
				   "the model outputs %d classes but the data has %d",
				   sfp_model_classes(t->model), t->train.classes);
		goto out;
	}
data_done:
	sfp_model_init(t->model, cfg->train.seed);
	if (d && (rc = sfp_dist_finish_setup(t, config_dir, err)) < 0)
		goto out;
	if ((rc = setup_bitlength(t, &cfg->bitlength, err)) < 0)
		goto out;
	size_t np;
	sfp_model_params(t->model, &np);
	if ((rc = sfp_optim_create(&t->opt, &cfg->train.optimizer, np, err)) < 0)
		goto out;
	t->order = malloc(((size_t)t->train.n + 1) * sizeof *t->order);
	t->bx = malloc((size_t)max_batch * sfp_shape_numel(sfp_model_input_shape(t->model)) *
		       sizeof(float));
	t->by = malloc((size_t)max_batch);
	if (t->tokens)
		t->bt = malloc((size_t)max_batch * (size_t)t->seq_len * sizeof *t->bt);
	if (!t->order || !t->bx || !t->by || (t->tokens && !t->bt)) {
		rc = sfp_error_set(err, SFP_ENOMEM, "out of memory");
		goto out;
	}
	t->order_epoch = -1;
	/* token data: an epoch is as many windows as the training ids hold */
	const int64_t per_epoch = t->tokens ? (t->tok.n_train + t->seq_len - 1) / t->seq_len
					    : t->train.n;
	t->steps_per_epoch = (per_epoch + B - 1) / B;
	t->total_steps = (int64_t)cfg->train.epochs * t->steps_per_epoch;
	if (cfg->train.max_steps > 0 && cfg->train.max_steps < t->total_steps)
		t->total_steps = cfg->train.max_steps;
	const int writer = !d || d->rank == 0;
	if ((!d || d->replica == 0) && cfg->checkpoint.dir[0] &&
	    (rc = sfp_ckpt_make_dirs(cfg->checkpoint.dir, err)) < 0)
		goto out;
	if (writer && (rc = sfp_metrics_open(t, err)) < 0)
		goto out;
	*out = t;
	t = NULL;
	rc = SFP_OK;
out:
	free(stage_cfg);
	sfp_trainer_free(t);
	return rc;
}

void sfp_trainer_topology(const sfp_trainer *t, int *stage, int *replica, int *stages,
			  int *replicas)
{
	const sfp_dist *d = t->dist;
	*stage = d ? d->stage : 0;
	*replica = d ? d->replica : 0;
	*stages = d ? d->stages : 1;
	*replicas = d ? d->replicas : 1;
}

void sfp_trainer_exchange(const sfp_trainer *t, int *buckets, int *overlapped)
{
	const sfp_exchange *x = t->dist ? t->dist->x : NULL;
	*buckets = x ? sfp_exchange_buckets(x) : 0;
	*overlapped = x ? sfp_exchange_overlaps(x) : 0;
}

void sfp_trainer_on_notice(sfp_trainer *t, sfp_notice_fn fn, void *user)
{
	t->on_notice = fn;
	t->notice_user = user;
}

void sfp_trainer_on_progress(sfp_trainer *t, sfp_progress_fn fn, void *user)
{
	t->on_progress = fn;
	t->user = user;
}

sfp_model *sfp_trainer_model(sfp_trainer *t)
{
	return t->model;
}

int64_t sfp_trainer_step(const sfp_trainer *t)
{
	return t->step;
}

/* Every held-out window once, in order: top-1 accuracy and mean loss per
 * token. */
static void evaluate_tokens(sfp_trainer *t, float *acc, float *loss)
{
	const int B = t->cfg.train.batch_size, T = t->seq_len;
	const int64_t nw = sfp_tokens_val_windows(&t->tok, T);
	double lsum = 0.0;
	int64_t ok = 0;
	for (int64_t w = 0; w < nw; w += B) {
		const int b = sfp_tokens_val_batch(&t->tok, T, w, B, t->bx, t->bt);
		int c = 0;
		sfp_model_forward(t->model, t->bx, b, SFP_FORWARD_EVAL, 0);
		lsum += (double)sfp_model_loss_tokens(t->model, t->bt, b, &c, 0) * b * T;
		ok += c;
	}
	const double n = (double)nw * T;
	*acc = nw ? (float)((double)ok / n) : 0.0f;
	*loss = nw ? (float)(lsum / n) : 0.0f;
}

int sfp_trainer_token_data(const sfp_trainer *t)
{
	return t->tokens ? t->seq_len : 0;
}

int sfp_trainer_evaluate(sfp_trainer *t, float *acc, float *loss, sfp_error *err)
{
	if (t->tokens && !t->dist) {
		evaluate_tokens(t, acc, loss);
		return SFP_OK;
	}
	if (t->dist) {
		SFP_TRY(sfp_dist_sync_buffers(t, err));
		return sfp_dist_evaluate(t, acc, loss, err);
	}
	const int B = t->cfg.train.batch_size;
	const size_t per = sfp_shape_numel(t->test.shape);
	double lsum = 0.0;
	int64_t ok = 0;
	for (int s = 0; s < t->test.n; s += B) {
		int b = t->test.n - s < B ? t->test.n - s : B;
		int c = 0;
		sfp_model_forward(t->model, t->test.x + (size_t)s * per, b, 0, 0);
		lsum += (double)sfp_model_loss(t->model, t->test.y + s, b, &c, 0) * b;
		ok += c;
	}
	*acc = t->test.n ? (float)ok / (float)t->test.n : 0.0f;
	*loss = t->test.n ? (float)(lsum / t->test.n) : 0.0f;
	(void)err;
	return SFP_OK;
}
