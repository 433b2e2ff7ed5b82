/*
 * train.c -- the training loop: batches in a seeded order, forward, loss,
 * backward, optimizer step, the JSON-lines metrics log, evaluation and
 * checkpoints.
 *
 * Everything a step computes is a function of (config, step, checkpointed
 * state): the batch order depends on (seed, epoch), dropout masks on (seed,
 * step), the learning rate on step. So a run resumed from the checkpoint of
 * step k continues bit-identically to one that never stopped.
 *
 * Checkpoint layout (little-endian), docs/checkpoint.md:
 *   ckpt_header (64 bytes) | params | buffers | optimizer state (float32)
 * The header carries counts, the model signature, the step and two CRC32Cs
 * (payload, then header with its own CRC field zero).
 */
#include <assert.h>
#include <dirent.h>
#include <errno.h>
#include <inttypes.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <math.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "nn/train_internal.h"

#define CKPT_MAGIC "SFPK"
#define CKPT_VERSION 1u

typedef struct ckpt_header {
	char magic[4];
	uint32_t version;
	uint32_t header_bytes;
	uint32_t model_sig;
	int64_t step;
	uint64_t seed;
	uint64_t n_params;
	uint64_t n_bufs;
	uint64_t n_state;
	uint32_t batch_size;
	uint32_t payload_crc;
	uint32_t reserved;
	uint32_t header_crc;
} ckpt_header;
static_assert(sizeof(ckpt_header) == 72, "checkpoint header layout");

/* Widths (n_e, n_m per tensor), then for BitWave its averages and step
 * count (as raw double bits) and its widths and holds: all in one float
 * array so a checkpoint carries them beside the buffers. */
enum { BW_DOUBLES = 4, BW_INTS = 7, BW_FLOATS = 2 * BW_DOUBLES + BW_INTS };

static size_t extra_count(const sfp_trainer *t)
{
	return (size_t)2 * sfp_model_n_qtensors(t->model) +
	       (t->policy == SFP_QPOLICY_BITWAVE ? BW_FLOATS : 0);
}

static void extra_gather(sfp_trainer *t)
{
	int nw = sfp_model_widths_save(t->model, t->extra, (int)t->nextra);
	if (t->policy == SFP_QPOLICY_BITWAVE) {
		const sfp_bitwave *b = &t->bw;
		const double d[BW_DOUBLES] = {b->avg, b->ref, (double)b->seen, b->var};
		const int i[BW_INTS] = {(int)b->m, (int)b->e, b->removed, b->hold_m,
					b->hold_e, b->len_m, b->len_e};
		float *e = t->extra + nw;
		memcpy(e, d, sizeof d);
		for (int k = 0; k < BW_INTS; k++)
			e[2 * BW_DOUBLES + k] = (float)i[k];
	}
}

static void extra_scatter(sfp_trainer *t)
{
	int nw = 2 * sfp_model_n_qtensors(t->model);
	if (nw)
		sfp_model_widths_load(t->model, t->extra, nw);
	if (t->policy == SFP_QPOLICY_BITWAVE) {
		sfp_bitwave *b = &t->bw;
		const float *e = t->extra + nw;
		double d[BW_DOUBLES];
		memcpy(d, e, sizeof d);
		int i[BW_INTS];
		for (int k = 0; k < BW_INTS; k++)
			i[k] = (int)e[2 * BW_DOUBLES + k];
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
	}
}

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
	SFP_TRY(sfp_model_set_stash(t->model, b->pack, b->gecko, err));
	sfp_model_set_pack_weights(t->model, b->pack_weights);
	SFP_TRY(sfp_model_set_quant(t->model, t->policy, targets, b->e, b->m, err));
	SFP_TRY(sfp_model_set_grad_widths(t->model, (unsigned)b->grad_e, (unsigned)b->grad_m, err));
	SFP_TRY(sfp_model_set_refine(t->model,
				     b->refine_bias == SFP_REFINE_BIAS_TENSOR ? SFP_BIAS_TENSOR : SFP_BIAS_OFF,
				     b->refine_shift, err));
	if (t->policy == SFP_QPOLICY_QUANTUM)
		sfp_model_set_floors(t->model, (float)b->e_min, (float)b->m_min);
	t->nextra = extra_count(t);
	if (t->nextra && !(t->extra = calloc(t->nextra, sizeof(float))))
		return sfp_error_set(err, SFP_ENOMEM, "out of memory");
	return SFP_OK;
}

/* Bits per value of weights + stored activations at the packing widths. */
static float footprint_bits(const sfp_trainer *t)
{
	double bw, ba, cw, ca;
	sfp_model_footprint(t->model, &bw, &ba, &cw, &ca);
	return cw + ca > 0 ? (float)((bw + ba) / (cw + ca)) : 32.0f;
}

/* mkdir -p, naming the folder on failure */
static int make_dirs(const char *path, sfp_error *err)
{
	char buf[SFP_CFG_PATH];
	snprintf(buf, sizeof buf, "%s", path);
	for (char *p = buf + 1;; p++) {
		if (*p != '/' && *p)
			continue;
		char c = *p;
		*p = 0;
		if (mkdir(buf, 0755) < 0 && errno != EEXIST)
			return sfp_error_set(err, SFP_EIO, "cannot create checkpoint folder '%s': %s",
					     buf, strerror(errno));
		*p = c;
		if (!c)
			break;
	}
	struct stat st;
	if (stat(path, &st) < 0 || !S_ISDIR(st.st_mode))
		return sfp_error_set(err, SFP_EIO, "checkpoint folder '%s' is not a folder", path);
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
	sfp_daemon_close(t, 0);
	sfp_dist_free(t->dist);
	free(t->order);
	free(t->extra);
	free(t->bx);
	free(t->by);
	if (t->metrics)
		fclose(t->metrics);
	free(t);
}

static int cfg_input_numel(const sfp_cfg_model *c)
{
	int n = 1;
	for (int i = 0; i < c->input_ndim; i++)
		n *= c->input[i];
	return n;
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
	if ((rc = sfp_dataset_load(&t->train, &t->test, &cfg->data, err)) < 0)
		goto out;
	if ((size_t)cfg_input_numel(&cfg->model) != sfp_shape_numel(t->train.shape)) {
		rc = sfp_error_set(err, SFP_EINVAL,
				   "model.input has %d values per sample but the data has %zu",
				   cfg_input_numel(&cfg->model), sfp_shape_numel(t->train.shape));
		goto out;
	}
	if (is_last && sfp_model_classes(t->model) != t->train.classes) {
		rc = sfp_error_set(err, SFP_EINVAL,
				   "the model outputs %d classes but the data has %d",
				   sfp_model_classes(t->model), t->train.classes);
		goto out;
	}
	sfp_model_init(t->model, cfg->train.seed);
	if (d && (rc = sfp_dist_finish_setup(t, config_dir, err)) < 0)
		goto out;
	if ((rc = setup_bitlength(t, &cfg->bitlength, err)) < 0)
		goto out;
	size_t np;
	sfp_model_params(t->model, &np);
	if ((rc = sfp_optim_create(&t->opt, &cfg->train.optimizer, np, err)) < 0)
		goto out;
	t->order = malloc((size_t)t->train.n * sizeof *t->order);
	t->bx = malloc((size_t)max_batch * sfp_shape_numel(sfp_model_input_shape(t->model)) *
		       sizeof(float));
	t->by = malloc((size_t)max_batch);
	if (!t->order || !t->bx || !t->by) {
		rc = sfp_error_set(err, SFP_ENOMEM, "out of memory");
		goto out;
	}
	t->order_epoch = -1;
	t->steps_per_epoch = (t->train.n + B - 1) / B;
	t->total_steps = (int64_t)cfg->train.epochs * t->steps_per_epoch;
	if (cfg->train.max_steps > 0 && cfg->train.max_steps < t->total_steps)
		t->total_steps = cfg->train.max_steps;
	const int writer = !d || d->rank == 0;
	if ((!d || d->replica == 0) && cfg->checkpoint.dir[0] &&
	    (rc = make_dirs(cfg->checkpoint.dir, err)) < 0)
		goto out;
	if (writer && cfg->log.metrics[0]) {
		t->metrics = fopen(cfg->log.metrics, "a");
		if (!t->metrics) {
			rc = sfp_error_set(err, SFP_EIO, "cannot open metrics log '%s': %s",
					   cfg->log.metrics, strerror(errno));
			goto out;
		}
	}
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

/* Append one JSON line; a failed write (e.g. a full disk) is an error, and
 * the log is cut back to its last whole record and closed, so what is left
 * parses and nothing half-written is flushed later. */
__attribute__((format(printf, 3, 4))) static int metrics_write(sfp_trainer *t, sfp_error *err,
							      const char *fmt, ...)
{
	if (!t->metrics)
		return SFP_OK;
	struct stat st; /* flushed after every record: the file's size is where this one starts */
	const off_t start = fstat(fileno(t->metrics), &st) == 0 ? st.st_size : -1;
	va_list ap;
	va_start(ap, fmt);
	int w = vfprintf(t->metrics, fmt, ap);
	va_end(ap);
	if (w >= 0 && fputc('\n', t->metrics) != EOF && fflush(t->metrics) == 0)
		return SFP_OK;
	const int e = errno;
	fclose(t->metrics); /* may write part of the record again: cut after it */
	t->metrics = NULL;
	if (start >= 0)
		(void)truncate(t->cfg.log.metrics, start);
	return sfp_error_set(err, e == ENOSPC ? SFP_ENOSPC : SFP_EIO,
			     "cannot write metrics log '%s': %s", t->cfg.log.metrics, strerror(e));
}

int sfp_trainer_evaluate(sfp_trainer *t, float *acc, float *loss, sfp_error *err)
{
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

/* ---- BitPruning fine-tune ------------------------------------------------- */
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

/* The fine-tune's own seeded batch order, apart from the training run's. */
#define PRUNE_SEED 0x5052554e45ull
/* Training batches whose input maxima set the first clip ranges. */
#define CALIBRATION_BATCHES 16

/* Gather batch s of the fine-tune into t->bx, t->by; returns its size. */
static int prune_batch(sfp_trainer *t, int64_t s)
{
	const sfp_config *c = &t->cfg;
	const int B = c->train.batch_size;
	const int64_t epoch = s / t->steps_per_epoch, first = s % t->steps_per_epoch * B;
	if (t->order_epoch != epoch) {
		sfp_dataset_order(t->order, t->train.n, c->train.seed ^ PRUNE_SEED, epoch,
				  c->data.shuffle);
		t->order_epoch = epoch;
	}
	const int b = (int)(t->train.n - first < B ? t->train.n - first : B);
	sfp_dataset_gather(&t->train, t->order + first, b, t->bx, t->by);
	return b;
}

/* Clip ranges of the quantized inputs from a few training forward passes. */
static void prune_calibrate(sfp_trainer *t)
{
	const uint64_t seed = (t->cfg.train.seed ^ PRUNE_SEED) * 0x100000001b3ull;
	sfp_model_prune_observe(t->model, 1);
	for (int64_t s = 0; s < CALIBRATION_BATCHES; s++) {
		const int b = prune_batch(t, s);
		sfp_model_forward(t->model, t->bx, b, 1, seed + (uint64_t)s);
	}
	sfp_model_prune_observe(t->model, 0);
}

/* One fine-tune step s of `total`: batch, forward, backward, widths (while
 * s < steps) and clip ranges, weights. Returns the batch loss in *loss. */
static int prune_step(sfp_trainer *t, sfp_optim *opt, const sfp_cfg_optimizer *oc,
		      const sfp_cfg_schedule *sc, int64_t s, int64_t total, float *loss, int *ok,
		      int *b_out, sfp_error *err)
{
	const sfp_config *c = &t->cfg;
	const uint64_t seed = c->train.seed ^ PRUNE_SEED;
	const int b = prune_batch(t, s);
	sfp_model_forward(t->model, t->bx, b, 1, seed * 0x100000001b3ull + (uint64_t)s);
	*loss = sfp_model_loss(t->model, t->by, b, ok, 1);
	if (!(*loss == *loss) || *loss > 1e30f)
		return sfp_error_set(err, SFP_ERANGE,
				     "loss is %g at fine-tune step %" PRId64 "; lower prune.weight_lr",
				     (double)*loss, s);
	sfp_model_zero_grad(t->model);
	sfp_model_backward(t->model, t->bx, b);
	/* widths first: their gradient needs the weights of this forward pass
	 * (after rounding, only the clip ranges move) */
	sfp_model_prune_update(t->model, c->prune.lr, c->prune.gamma);
	sfp_optim_step(opt, sfp_model_params(t->model, NULL), sfp_model_grads(t->model, NULL),
		       sfp_lr_at(oc, sc, s, total), s + 1);
	*b_out = b;
	return SFP_OK;
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
	sfp_optim *opt = NULL;
	size_t np;
	sfp_model_params(t->model, &np);
	SFP_TRY(sfp_optim_create(&opt, &oc, np, err));
	const int64_t total = (int64_t)pc->steps + pc->fix_steps;
	const int every = c->log.every > 0 ? c->log.every : 50;
	double iv_loss = 0.0;
	int64_t iv_ok = 0, iv_n = 0, iv_steps = 0;
	uint64_t t0 = sfp_clock_ns(), iv_t0 = t0;
	int rc = SFP_OK;
	t->order_epoch = -1;
	if (pc->activations)
		prune_calibrate(t);
	if (pc->steps == 0)
		sfp_model_prune_round(t->model);
	for (int64_t s = 0; s < total && rc == SFP_OK; s++) {
		float loss;
		int ok = 0, b = 0;
		if ((rc = prune_step(t, opt, &oc, &sc, s, total, &loss, &ok, &b, err)) < 0)
			break;
		if (s + 1 == pc->steps)
			sfp_model_prune_round(t->model);
		iv_loss += loss;
		iv_ok += ok;
		iv_n += b;
		iv_steps++;
		if ((s + 1) % every != 0 && s + 1 != total)
			continue;
		uint64_t now = sfp_clock_ns();
		double dt = (double)(now - iv_t0) * 1e-9, all = (double)(now - t0) * 1e-9;
		sfp_prune_summary ps;
		sfp_model_prune_summary(t->model, &ps);
		sfp_progress pr = {.epoch = s / t->steps_per_epoch,
				   .step = s + 1,
				   .total_steps = total,
				   .loss = (float)(iv_loss / iv_steps),
				   .train_acc = (float)iv_ok / (float)iv_n,
				   .lr = sfp_lr_at(&oc, &sc, s, total),
				   .bits_per_value = (float)ps.w_per_weight,
				   .samples_per_s = dt > 0 ? (double)iv_n / dt : 0.0,
				   .eta_s = (double)(total - s - 1) * all / (double)(s + 1)};
		if (t->on_progress)
			t->on_progress(t->user, &pr);
		rc = metrics_write(t, err,
				   "{\"step\":%" PRId64 ",\"prune_loss\":%.6f,\"train_acc\":%.6f,"
				   "\"bits_per_weight\":%.4f,\"bits_per_layer\":%.4f,"
				   "\"bits_per_mac\":%.4f,\"act_bits_per_value\":%.4f,"
				   "\"bit_ops_per_mac\":%.3f}",
				   s + 1, pr.loss, pr.train_acc, ps.w_per_weight, ps.w_per_layer,
				   ps.w_per_mac, ps.a_per_value, ps.bit_ops_per_mac);
		iv_loss = 0.0;
		iv_ok = iv_n = iv_steps = 0;
		iv_t0 = sfp_clock_ns();
	}
	t->order_epoch = -1;
	sfp_optim_free(opt);
	if (rc == SFP_OK)
		rc = sfp_model_prune_finalize(t->model, err);
	return rc;
}

/* ---- checkpoints -------------------------------------------------------- */
int sfp_trainer_save(sfp_trainer *t, const char *path, sfp_error *err)
{
	size_t np, nb, ns;
	float *p = sfp_model_params(t->model, &np), *b = sfp_model_buffers(t->model, &nb);
	float *s = sfp_optim_state(t->opt, &ns);
	const size_t nx = t->nextra;
	extra_gather(t);
	size_t len = sizeof(ckpt_header) + (np + nb + nx + ns) * sizeof(float);
	unsigned char *buf = malloc(len);
	if (!buf)
		return sfp_error_set(err, SFP_ENOMEM, "out of memory for checkpoint '%s'", path);
	ckpt_header h;
	memset(&h, 0, sizeof h);
	memcpy(h.magic, CKPT_MAGIC, 4);
	h.version = CKPT_VERSION;
	h.header_bytes = sizeof h;
	h.model_sig = sfp_model_signature(t->model);
	h.step = t->step;
	h.seed = t->cfg.train.seed;
	h.n_params = np;
	h.n_bufs = nb + nx;
	h.n_state = ns;
	h.batch_size = (uint32_t)t->cfg.train.batch_size;
	unsigned char *q = buf + sizeof h;
	memcpy(q, p, np * sizeof(float));
	memcpy(q + np * sizeof(float), b, nb * sizeof(float));
	if (nx)
		memcpy(q + (np + nb) * sizeof(float), t->extra, nx * sizeof(float));
	memcpy(q + (np + nb + nx) * sizeof(float), s, ns * sizeof(float));
	h.payload_crc = sfp_crc32c(0, q, len - sizeof h);
	h.header_crc = sfp_crc32c(0, &h, sizeof h);
	memcpy(buf, &h, sizeof h);
	int rc = sfp_file_write_atomic(path, buf, len, err);
	free(buf);
	return rc;
}

int sfp_trainer_load(sfp_trainer *t, const char *path, sfp_error *err)
{
	void *data = NULL;
	size_t len = 0;
	int rc = sfp_file_read(path, &data, &len, err);
	if (rc < 0)
		return rc;
	ckpt_header h;
	size_t np, nb, ns;
	float *p = sfp_model_params(t->model, &np), *b = sfp_model_buffers(t->model, &nb);
	float *s = sfp_optim_state(t->opt, &ns);
	if (len < sizeof h) {
		rc = sfp_error_set(err, SFP_ETRUNC, "checkpoint '%s' is truncated (%zu bytes)", path,
				   len);
		goto out;
	}
	memcpy(&h, data, sizeof h);
	if (memcmp(h.magic, CKPT_MAGIC, 4) != 0) {
		rc = sfp_error_set(err, SFP_ECORRUPT, "'%s' is not an sfp checkpoint (bad magic)",
				   path);
		goto out;
	}
	uint32_t hc = h.header_crc;
	h.header_crc = 0;
	if (sfp_crc32c(0, &h, sizeof h) != hc) {
		rc = sfp_error_set(err, SFP_ECHECKSUM, "checkpoint '%s': header checksum mismatch",
				   path);
		goto out;
	}
	if (h.version != CKPT_VERSION || h.header_bytes != sizeof h) {
		rc = sfp_error_set(err, SFP_EVERSION,
				   "checkpoint '%s' has version %u; this sfp reads version %u", path,
				   h.version, CKPT_VERSION);
		goto out;
	}
	const size_t nx = t->nextra;
	if (h.model_sig != sfp_model_signature(t->model) || h.n_params != np || h.n_bufs != nb + nx) {
		rc = sfp_error_set(err, SFP_EINVAL,
				   "checkpoint '%s' belongs to a different model (layers, shapes or "
				   "bitlength policy differ from the config)",
				   path);
		goto out;
	}
	if (h.n_state != ns) {
		rc = sfp_error_set(err, SFP_EINVAL,
				   "checkpoint '%s' holds state of a different optimizer", path);
		goto out;
	}
	if (h.step < 0 || h.step > t->total_steps) {
		rc = sfp_error_set(err, SFP_ECORRUPT, "checkpoint '%s': step %" PRId64
				   " is outside this run's %" PRId64 " steps",
				   path, h.step, t->total_steps);
		goto out;
	}
	if (h.batch_size != (uint32_t)t->cfg.train.batch_size || h.seed != t->cfg.train.seed) {
		rc = sfp_error_set(err, SFP_EINVAL,
				   "checkpoint '%s' was trained with batch_size %u and seed %" PRIu64
				   "; the config says %d and %" PRIu64,
				   path, h.batch_size, h.seed, t->cfg.train.batch_size,
				   t->cfg.train.seed);
		goto out;
	}
	size_t want = sizeof h + (np + nb + nx + ns) * sizeof(float);
	if (len != want) {
		rc = sfp_error_set(err, len < want ? SFP_ETRUNC : SFP_ECORRUPT,
				   "checkpoint '%s' has %zu bytes, its header says %zu", path, len,
				   want);
		goto out;
	}
	const unsigned char *q = (const unsigned char *)data + sizeof h;
	if (sfp_crc32c(0, q, len - sizeof h) != h.payload_crc) {
		rc = sfp_error_set(err, SFP_ECHECKSUM, "checkpoint '%s': payload checksum mismatch",
				   path);
		goto out;
	}
	memcpy(p, q, np * sizeof(float));
	memcpy(b, q + np * sizeof(float), nb * sizeof(float));
	if (nx) {
		memcpy(t->extra, q + (np + nb) * sizeof(float), nx * sizeof(float));
		extra_scatter(t);
	}
	memcpy(s, q + (np + nb + nx) * sizeof(float), ns * sizeof(float));
	t->step = h.step;
out:
	free(data);
	return rc;
}

/* The step of a checkpoint file name ckpt-<step><suffix>, or -1. */
static int64_t ckpt_step(const char *name, const char *suffix)
{
	int64_t s;
	int used = 0;
	if (sscanf(name, "ckpt-%" SCNd64 "%n", &s, &used) != 1 || s < 0 || strcmp(name + used, suffix))
		return -1;
	return s;
}

static int cmp_desc(const void *a, const void *b)
{
	const int64_t x = *(const int64_t *)a, y = *(const int64_t *)b;
	return x < y ? 1 : x > y ? -1 : 0;
}

/* The steps of `dir`'s ckpt-<step><suffix> files, newest first (*n of
 * them; NULL with *n = 0 when none or out of memory). */
static int64_t *ckpt_steps(const char *dir, const char *suffix, int *n)
{
	*n = 0;
	DIR *d = opendir(dir);
	if (!d)
		return NULL;
	int64_t *v = NULL;
	int cap = 0;
	struct dirent *e;
	while ((e = readdir(d))) {
		const int64_t st = ckpt_step(e->d_name, suffix);
		if (st < 0)
			continue;
		if (*n == cap) {
			int64_t *g = realloc(v, (size_t)(cap = cap ? 2 * cap : 16) * sizeof *v);
			if (!g)
				break;
			v = g;
		}
		v[(*n)++] = st;
	}
	closedir(d);
	if (v)
		qsort(v, (size_t)*n, sizeof *v, cmp_desc);
	return v;
}

/* The newest step of `dir`'s ckpt-<step><suffix> files (-1: none). */
static int64_t newest_ckpt(const char *dir, const char *suffix)
{
	int n = 0;
	int64_t *steps = ckpt_steps(dir, suffix, &n);
	const int64_t best = n ? steps[0] : -1;
	free(steps);
	return best;
}

int sfp_checkpoint_resolve(const char *path, char *out, size_t cap, sfp_error *err)
{
	DIR *d = opendir(path);
	if (!d) {
		if (errno != ENOTDIR && errno != ENOENT)
			return sfp_error_set(err, SFP_EIO, "cannot read '%s': %s", path,
					     strerror(errno));
		if (errno == ENOENT)
			return sfp_error_set(err, SFP_ENOENT, "checkpoint '%s' does not exist", path);
		if ((size_t)snprintf(out, cap, "%s", path) >= cap)
			return sfp_error_set(err, SFP_EINVAL, "checkpoint path '%s' is too long", path);
		return SFP_OK;
	}
	closedir(d);
	int64_t best = newest_ckpt(path, ".sfpk");
	if (best < 0)
		return sfp_error_set(err, SFP_ENOENT, "no checkpoint (ckpt-<step>.sfpk) in '%s'", path);
	if ((size_t)snprintf(out, cap, "%s/ckpt-%" PRId64 ".sfpk", path, best) >= cap)
		return sfp_error_set(err, SFP_EINVAL, "checkpoint path in '%s' is too long", path);
	return SFP_OK;
}

/* What this rank's checkpoint files end with: ".sfpk", or for a pipeline
 * stage "-stage<s>.sfpk" (each stage saves its own layers). */
static void ckpt_suffix(const sfp_trainer *t, char *buf, size_t cap)
{
	if (t->dist && t->dist->stages > 1)
		snprintf(buf, cap, "-stage%d.sfpk", t->dist->stage);
	else
		snprintf(buf, cap, ".sfpk");
}

static int resume(sfp_trainer *t, const char *path, char *used, size_t cap, sfp_error *err);

/* Error feedback's residuals are per rank and not in the checkpoint: a
 * resumed run starts them at zero, so it is close to, not the same as, the
 * run that never stopped (docs/checkpoint.md). Said when the run starts. */
int sfp_trainer_resume(sfp_trainer *t, const char *path, char *used, size_t cap, sfp_error *err)
{
	SFP_TRY(resume(t, path, used, cap, err));
	t->resumed_without_residual = t->dist && t->dist->residual && t->step > 0;
	return SFP_OK;
}

/*
 * A folder: its newest checkpoint; one that is damaged (truncated, corrupt,
 * checksum mismatch) is said and skipped for the one before it, so a crash
 * that damaged the newest file loses only the steps since the previous one.
 * A checkpoint that belongs to another model or run stops the search.
 */
static int resume_folder(sfp_trainer *t, const char *path, char *used, size_t cap,
			 sfp_error *err)
{
	int n = 0;
	int64_t *steps = ckpt_steps(path, ".sfpk", &n);
	if (!n) {
		free(steps);
		return sfp_error_set(err, SFP_ENOENT, "no checkpoint (ckpt-<step>.sfpk) in '%s'", path);
	}
	int rc = SFP_OK;
	sfp_error first;
	for (int k = 0; k < n; k++) {
		if ((size_t)snprintf(used, cap, "%s/ckpt-%" PRId64 ".sfpk", path, steps[k]) >= cap) {
			rc = sfp_error_set(err, SFP_EINVAL, "checkpoint path in '%s' is too long", path);
			break;
		}
		rc = sfp_trainer_load(t, used, err);
		if (rc != SFP_ETRUNC && rc != SFP_ECORRUPT && rc != SFP_ECHECKSUM)
			break;
		if (k == 0)
			first = *err;
		if (t->on_notice) {
			char msg[sizeof err->msg + 64];
			snprintf(msg, sizeof msg, "%s; %s", err->msg,
				 k + 1 < n ? "trying the checkpoint before it" : "no older checkpoint");
			t->on_notice(t->notice_user, msg);
		}
	}
	if (rc == SFP_ETRUNC || rc == SFP_ECORRUPT || rc == SFP_ECHECKSUM)
		rc = sfp_error_set(err, rc, "no intact checkpoint in '%s' (the newest: %s)", path,
				   first.msg);
	free(steps);
	return rc;
}

static int resume(sfp_trainer *t, const char *path, char *used, size_t cap, sfp_error *err)
{
	if (!t->dist || t->dist->stages == 1) {
		struct stat st;
		if (stat(path, &st) == 0 && S_ISDIR(st.st_mode))
			return resume_folder(t, path, used, cap, err);
		SFP_TRY(sfp_checkpoint_resolve(path, used, cap, err));
		return sfp_trainer_load(t, used, err);
	}
	/* stages: the newest step that every stage has saved */
	char suffix[32];
	ckpt_suffix(t, suffix, sizeof suffix);
	double *v = calloc((size_t)t->dist->world, sizeof *v);
	if (!v)
		return sfp_error_set(err, SFP_ENOMEM, "out of memory");
	v[t->dist->rank] = (double)newest_ckpt(path, suffix);
	int rc = sfp_dist_allreduce_world(t, v, t->dist->world, err);
	double step = rc == SFP_OK ? v[0] : -1.0;
	for (int r = 1; rc == SFP_OK && r < t->dist->world; r++)
		step = v[r] < step ? v[r] : step;
	free(v);
	SFP_TRY(rc);
	if (step < 0)
		return sfp_error_set(err, SFP_ENOENT,
				     "no checkpoint of every pipeline stage (ckpt-<step>-stage<s>.sfpk) "
				     "in folder '%s'",
				     path);
	if ((size_t)snprintf(used, cap, "%s/ckpt-%" PRId64 "%s", path, (int64_t)step, suffix) >= cap)
		return sfp_error_set(err, SFP_EINVAL, "checkpoint path in '%s' is too long", path);
	return sfp_trainer_load(t, used, err);
}

/* A temporary file of sfp_file_write_atomic for ckpt-<step><suffix>
 * (ckpt-<step><suffix>.tmpXXXXXX)? */
static int ckpt_tmp(const char *name, const char *suffix)
{
	int64_t s;
	int used = 0;
	const size_t n = strlen(suffix);
	if (sscanf(name, "ckpt-%" SCNd64 "%n", &s, &used) != 1 || s < 0)
		return 0;
	name += used;
	return !strncmp(name, suffix, n) && !strncmp(name + n, ".tmp", 4) && strlen(name + n) == 10;
}

/* Delete all but the newest `keep` ckpt-<step><suffix> files of `dir`, and
 * the temporary files of writes that never finished (a rank killed while
 * it wrote): this rank is the only writer of this suffix, and its own
 * write has just finished. */
static void prune_checkpoints(const char *dir, const char *suffix, int keep)
{
	DIR *d = opendir(dir);
	if (!d)
		return;
	int64_t steps[256];
	int n = 0;
	struct dirent *e;
	char path[SFP_CFG_PATH + 320]; /* dir, '/', a d_name of up to 255 */
	while ((e = readdir(d))) {
		int64_t s = ckpt_step(e->d_name, suffix);
		if (s >= 0 && n < 256) {
			steps[n++] = s;
		} else if (ckpt_tmp(e->d_name, suffix)) {
			snprintf(path, sizeof path, "%s/%s", dir, e->d_name);
			remove(path);
		}
	}
	closedir(d);
	for (int i = 0; i < n; i++) {
		int newer = 0;
		for (int j = 0; j < n; j++)
			newer += steps[j] > steps[i];
		if (newer >= keep) {
			snprintf(path, sizeof path, "%s/ckpt-%" PRId64 "%s", dir, steps[i], suffix);
			remove(path);
		}
	}
}

static int checkpoint_now(sfp_trainer *t, sfp_error *err)
{
	if (t->dist) {
		/* the replicas are equal but for batch-norm statistics; replica 0
		 * of each stage writes */
		SFP_TRY(sfp_dist_sync_buffers(t, err));
		if (t->dist->replica != 0)
			return SFP_OK;
	}
	char path[SFP_CFG_PATH + 64], suffix[32];
	ckpt_suffix(t, suffix, sizeof suffix);
	snprintf(path, sizeof path, "%s/ckpt-%" PRId64 "%s", t->cfg.checkpoint.dir, t->step, suffix);
	SFP_TRY(sfp_trainer_save(t, path, err));
	prune_checkpoints(t->cfg.checkpoint.dir, suffix,
			  t->cfg.checkpoint.keep > 0 ? t->cfg.checkpoint.keep : 1);
	return metrics_write(t, err, "{\"step\":%" PRId64 ",\"checkpoint\":\"%s\"}", t->step, path);
}

/* One record per container: layer, kind, packing widths and the learned
 * real widths; then the footprint. */
static int log_widths(sfp_trainer *t, sfp_error *err)
{
	int k, n = sfp_model_n_qtensors(t->model);
	if (!n || !t->metrics)
		return SFP_OK;
	for (k = 0; k < n; k++) {
		sfp_qtensor_info qi;
		sfp_model_qtensor(t->model, k, &qi);
		SFP_TRY(metrics_write(t, err,
				      "{\"step\":%" PRId64 ",\"layer\":\"%s\",\"kind\":\"%s\",\"e\":%u,"
				      "\"m\":%u,\"n_e\":%.4f,\"n_m\":%.4f,\"count\":%" PRIu64
				      ",\"stash_bytes\":%" PRIu64 "}",
				      t->step, qi.layer, qi.kind, qi.e, qi.m, (double)qi.n_e,
				      (double)qi.n_m, qi.count, qi.stash_bytes));
	}
	double bw, ba, cw, ca, pw, pa, gw, ga;
	sfp_model_footprint(t->model, &bw, &ba, &cw, &ca);
	SFP_TRY(sfp_model_packed_bits(t->model, 0, &pw, &pa, err));
	SFP_TRY(sfp_model_packed_bits(t->model, 1, &gw, &ga, err));
	const double nv = cw + ca;
	sfp_model_mem mem;
	sfp_model_memory(t->model, &mem);
	return metrics_write(t, err,
			     "{\"step\":%" PRId64 ",\"footprint_bits_per_value\":%.4f,"
			     "\"weights_bits_per_value\":%.4f,\"activations_bits_per_value\":%.4f,"
			     "\"reduction_vs_fp32\":%.4f,\"packed_bits_per_value\":%.4f,"
			     "\"packed_reduction_vs_fp32\":%.4f,\"gecko_bits_per_value\":%.4f,"
			     "\"gecko_reduction_vs_fp32\":%.4f,\"model_bytes\":%zu,"
			     "\"activation_bytes\":%zu,\"stash_alloc_bytes\":%zu}",
			     t->step, (bw + ba) / nv, cw ? bw / cw : 0.0, ca ? ba / ca : 0.0,
			     32.0 * nv / (bw + ba), (pw + pa) / nv, 32.0 * nv / (pw + pa),
			     (gw + ga) / nv, 32.0 * nv / (gw + ga), mem.total, mem.activations,
			     mem.stash);
}

/* One communication record per tensor kind that moved: per-step means over
 * the interval, summed over every rank. */
static int log_traffic(sfp_trainer *t, const sfp_wire_stats *ws, int64_t steps, sfp_error *err)
{
	static const char *const kinds[WIRE_KINDS] = {"gradients", "activations",
						      "activation_gradients"};
	for (int k = 0; k < WIRE_KINDS; k++) {
		const sfp_wire_stats *w = &ws[k];
		if (!w->messages)
			continue;
		const double s = (double)steps;
		SFP_TRY(metrics_write(t, err,
				      "{\"step\":%" PRId64 ",\"kind\":\"%s\",\"raw_bytes\":%.0f,"
				      "\"wire_bytes\":%.0f,\"messages\":%.1f,\"encode_ms\":%.3f,"
				      "\"decode_ms\":%.3f,\"comm_ms\":%.3f}",
				      t->step, kinds[k], (double)w->raw_bytes / s,
				      (double)w->wire_bytes / s, (double)w->messages / s,
				      (double)w->encode_ns * 1e-6 / s, (double)w->decode_ns * 1e-6 / s,
				      (double)w->comm_ns * 1e-6 / s));
	}
	return SFP_OK;
}

/* ---- the loop ----------------------------------------------------------- */
static int evaluate_and_log(sfp_trainer *t, int64_t epoch, sfp_error *err)
{
	float acc, loss;
	sfp_daemon_heartbeat(t); /* evaluation can take a while: still alive */
	SFP_TRY(sfp_trainer_evaluate(t, &acc, &loss, err));
	if (t->on_progress) {
		sfp_progress p = {.is_eval = 1,
				  .epoch = epoch,
				  .step = t->step,
				  .total_steps = t->total_steps,
				  .loss = loss,
				  .test_acc = acc};
		t->on_progress(t->user, &p);
	}
	return metrics_write(t, err,
			     "{\"step\":%" PRId64 ",\"epoch\":%" PRId64
			     ",\"test_acc\":%.6f,\"test_loss\":%.6f}",
			     t->step, epoch, acc, loss);
}

static int run_loop(sfp_trainer *t, sfp_error *err);

int sfp_trainer_run(sfp_trainer *t, sfp_error *err)
{
	if (t->resumed_without_residual && t->on_notice)
		t->on_notice(t->notice_user,
			     "resumed with lossy gradient widths and error feedback: checkpoints do not "
			     "hold the feedback residuals, which start again from zero (the run is not "
			     "bit-identical to one that never stopped)");
	t->resumed_without_residual = 0;
	int rc = t->daemon.c ? SFP_OK : sfp_daemon_open(t, err);
	if (rc == SFP_OK)
		rc = run_loop(t, err);
	sfp_daemon_close(t, rc == SFP_OK);
	return rc;
}

static int run_loop(sfp_trainer *t, sfp_error *err)
{
	const sfp_config *c = &t->cfg;
	const int B = c->train.batch_size;
	const int every = c->log.every > 0 ? c->log.every : 50;
	double iv_loss = 0.0;
	int64_t iv_ok = 0, iv_n = 0, iv_steps = 0, done_here = 0;
	uint64_t t0 = sfp_clock_ns(), iv_t0 = t0;
	int evaluated_at_end = 0;

	while (t->step < t->total_steps) {
		const int64_t epoch = t->step / t->steps_per_epoch;
		const int64_t pos = t->step % t->steps_per_epoch;
		if (t->order_epoch != epoch) {
			sfp_dataset_order(t->order, t->train.n, c->train.seed, epoch, c->data.shuffle);
			t->order_epoch = epoch;
		}
		const int64_t first = pos * B;
		const int b = (int)(t->train.n - first < B ? t->train.n - first : B);

		int ok = 0;
		float loss;
		if (t->dist) {
			double sums[3];
			SFP_TRY(sfp_dist_step(t, first, b, sums, err));
			loss = (float)(sums[0] / sums[2]);
			ok = (int)sums[1];
		} else {
			sfp_dataset_gather(&t->train, t->order + first, b, t->bx, t->by);
			sfp_model_forward(t->model, t->bx, b, SFP_FORWARD_TRAIN,
					  c->train.seed * 0x100000001b3ull + (uint64_t)t->step);
			loss = sfp_model_loss(t->model, t->by, b, &ok, 1);
		}
		if (!(loss == loss) || loss > 1e30f)
			return sfp_error_set(err, SFP_ERANGE,
					     "loss is %g at step %" PRId64
					     "; lower train.optimizer.lr",
					     (double)loss, t->step);
		if (!t->dist) {
			sfp_model_zero_grad(t->model);
			sfp_model_backward(t->model, t->bx, b);
		}
		float lr = sfp_lr_at(&c->train.optimizer, &c->train.schedule, t->step, t->total_steps);
		size_t np;
		float *p = sfp_model_params(t->model, &np);
		sfp_optim_step(t->opt, p, sfp_model_grads(t->model, NULL), lr, t->step + 1);
		if (t->policy == SFP_QPOLICY_QUANTUM) {
			sfp_model_quant_update(t->model, c->bitlength.lr, c->bitlength.gamma);
			if (t->dist)
				SFP_TRY(sfp_dist_sync_widths(t, err));
		} else if (t->policy == SFP_QPOLICY_BITWAVE && !t->daemon.steers && sfp_bitwave_live(t) &&
			   sfp_bitwave_observe(&t->bw, loss) != 0)
			sfp_model_set_widths(t->model, t->bw.e, t->bw.m);
		t->step++;
		done_here++;
		/* said once a run: a tensor held values its container cannot */
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
		SFP_TRY(sfp_daemon_step(t, loss, (uint64_t)b * (uint64_t)c->daemon.report_every, err));
		iv_loss += loss;
		iv_ok += ok;
		iv_n += b;
		iv_steps++;

		const int epoch_end = t->step % t->steps_per_epoch == 0;
		const int last = t->step == t->total_steps;
		if (t->step % every == 0 || epoch_end || last) {
			uint64_t now = sfp_clock_ns();
			double dt = (double)(now - iv_t0) * 1e-9, all = (double)(now - t0) * 1e-9;
			double rate = dt > 0 ? (double)iv_n / dt : 0.0;
			double eta = (double)(t->total_steps - t->step) * all / (double)done_here;
			sfp_progress pr = {.epoch = epoch,
					   .step = t->step,
					   .total_steps = t->total_steps,
					   .loss = (float)(iv_loss / iv_steps),
					   .train_acc = (float)iv_ok / (float)iv_n,
					   .lr = lr,
					   .bits_per_value = footprint_bits(t),
					   .samples_per_s = rate,
					   .eta_s = eta};
			sfp_wire_stats ws[WIRE_KINDS];
			if (t->dist) {
				SFP_TRY(sfp_dist_traffic(t, ws, err));
				for (int k = 0; k < WIRE_KINDS; k++) {
					pr.wire_bytes_per_step += (double)ws[k].wire_bytes / iv_steps;
					pr.raw_bytes_per_step += (double)ws[k].raw_bytes / iv_steps;
					const double per = 1e-6 / (double)iv_steps / t->dist->world;
					pr.codec_ms_per_step += (double)(ws[k].encode_ns + ws[k].decode_ns) * per;
					pr.comm_ms_per_step += (double)ws[k].comm_ns * per;
				}
			}
			if (t->on_progress)
				t->on_progress(t->user, &pr);
			SFP_TRY(metrics_write(t, err,
					      "{\"step\":%" PRId64 ",\"epoch\":%" PRId64
					      ",\"loss\":%.6f,\"train_acc\":%.6f,\"lr\":%.6g,"
					      "\"samples_per_s\":%.1f}",
					      t->step, epoch, pr.loss, pr.train_acc, lr, rate));
			if (t->dist)
				SFP_TRY(log_traffic(t, ws, iv_steps, err));
			SFP_TRY(log_widths(t, err));
			iv_loss = 0.0;
			iv_ok = iv_n = iv_steps = 0;
			iv_t0 = sfp_clock_ns();
		}
		if (c->checkpoint.dir[0] && c->checkpoint.every_steps > 0 &&
		    t->step % c->checkpoint.every_steps == 0)
			SFP_TRY(checkpoint_now(t, err));
		if (epoch_end || last) {
			int ev = c->train.eval_every_epochs;
			if (last || (ev > 0 && (epoch + 1) % ev == 0)) {
				SFP_TRY(evaluate_and_log(t, epoch, err));
				evaluated_at_end = last;
			}
			if (c->checkpoint.dir[0] && c->checkpoint.every_steps <= 0)
				SFP_TRY(checkpoint_now(t, err));
		}
	}
	if (!evaluated_at_end && done_here == 0)
		SFP_TRY(evaluate_and_log(t, t->step / t->steps_per_epoch, err));
	return SFP_OK;
}
