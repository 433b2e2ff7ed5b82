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

#include "sfp/nn.h"
#include "sfp/quant.h"

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

struct sfp_trainer {
	sfp_config cfg;
	sfp_model *model;
	sfp_optim *opt;
	sfp_dataset train, test;
	uint32_t *order;
	int64_t order_epoch;
	float *bx;
	uint8_t *by;
	int64_t step, steps_per_epoch, total_steps;
	FILE *metrics;
	sfp_progress_fn on_progress;
	void *user;
	int policy;          /* enum sfp_qpolicy */
	sfp_bitwave bw;      /* policy BITWAVE */
	float *extra;        /* checkpointed state beyond the arenas: widths, BitWave */
	size_t nextra;
};

/* Widths (n_e, n_m per tensor), then for BitWave its averages (as raw
 * double bits), step count and widths: all in one float array so a
 * checkpoint carries them beside the buffers. */
static size_t extra_count(const sfp_trainer *t)
{
	return (size_t)2 * sfp_model_n_qtensors(t->model) +
	       (t->policy == SFP_QPOLICY_BITWAVE ? 8 : 0);
}

static void extra_gather(sfp_trainer *t)
{
	int nw = sfp_model_widths_save(t->model, t->extra, (int)t->nextra);
	if (t->policy == SFP_QPOLICY_BITWAVE) {
		float *e = t->extra + nw;
		double d[3] = {t->bw.avg, t->bw.ref, (double)t->bw.seen};
		memcpy(e, d, sizeof d);
		e[6] = (float)t->bw.m;
		e[7] = (float)t->bw.e;
	}
}

static void extra_scatter(sfp_trainer *t)
{
	int nw = 2 * sfp_model_n_qtensors(t->model);
	if (nw)
		sfp_model_widths_load(t->model, t->extra, nw);
	if (t->policy == SFP_QPOLICY_BITWAVE) {
		const float *e = t->extra + nw;
		double d[3];
		memcpy(d, e, sizeof d);
		t->bw.avg = d[0];
		t->bw.ref = d[1];
		t->bw.seen = (int64_t)d[2];
		t->bw.m = (unsigned)e[6];
		t->bw.e = (unsigned)e[7];
	}
}

/* bitlength section -> containers on the model (and the BitWave state) */
static int setup_bitlength(sfp_trainer *t, const sfp_cfg_bitlength *b, sfp_error *err)
{
	int targets = 0;
	for (int i = 0; i < b->n_targets; i++) {
		if (!strcmp(b->targets[i], "weights"))
			targets |= SFP_QTARGET_WEIGHTS;
		else if (!strcmp(b->targets[i], "activations"))
			targets |= SFP_QTARGET_ACTIVATIONS;
		else
			return sfp_error_set(err, SFP_EUNSUPPORTED,
					     "bitlength.targets: '%s' is not supported yet (weights, "
					     "activations)",
					     b->targets[i]);
	}
	if (!strcmp(b->policy, "quantum"))
		t->policy = SFP_QPOLICY_QUANTUM;
	else if (!strcmp(b->policy, "bitwave"))
		t->policy = SFP_QPOLICY_BITWAVE;
	else
		t->policy = b->e >= 8.0f && b->m >= 23.0f ? SFP_QPOLICY_OFF : SFP_QPOLICY_FIXED;
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
				     .e_max = (unsigned)ceilf(b->e)};
		SFP_TRY(sfp_bitwave_init(&t->bw, &c, c.e_max, c.m_max, err));
	}
	SFP_TRY(sfp_model_set_stash(t->model, b->pack, b->gecko, err));
	SFP_TRY(sfp_model_set_quant(t->model, t->policy, targets, b->e, b->m, err));
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

static uint32_t model_signature(sfp_model *m)
{
	uint32_t h = sfp_crc32c(0, "sfp-model", 9);
	for (int i = 0; i < sfp_model_n_layers(m); i++) {
		sfp_layer_info li;
		sfp_model_layer(m, i, &li);
		int v[8] = {li.in.c, li.in.h, li.in.w, li.out.c, li.out.h, li.out.w, li.input,
			    li.from};
		uint64_t np = li.nparams;
		h = sfp_crc32c(h, li.type, strlen(li.type));
		h = sfp_crc32c(h, v, sizeof v);
		h = sfp_crc32c(h, &np, sizeof np);
	}
	return h;
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
	free(t->order);
	free(t->extra);
	free(t->bx);
	free(t->by);
	if (t->metrics)
		fclose(t->metrics);
	free(t);
}

int sfp_trainer_create(sfp_trainer **out, const sfp_config *cfg, const char *config_dir,
		       sfp_error *err)
{
	*out = NULL;
	int rc;
	sfp_trainer *t = calloc(1, sizeof *t);
	if (!t)
		return sfp_error_set(err, SFP_ENOMEM, "out of memory");
	t->cfg = *cfg;
	const int B = cfg->train.batch_size;
	if (B <= 0) {
		rc = sfp_error_set(err, SFP_EINVAL, "train.batch_size must be positive");
		goto out;
	}
	if ((rc = sfp_model_create(&t->model, &cfg->model, config_dir, B, err)) < 0 ||
	    (rc = sfp_model_set_threads(t->model, cfg->train.threads > 0 ? cfg->train.threads : 1,
					err)) < 0)
		goto out;
	if ((rc = sfp_dataset_load(&t->train, &t->test, &cfg->data, err)) < 0)
		goto out;
	sfp_shape in = sfp_model_input_shape(t->model);
	if (sfp_shape_numel(in) != sfp_shape_numel(t->train.shape)) {
		rc = sfp_error_set(err, SFP_EINVAL,
				   "model.input has %zu values per sample but the data has %zu",
				   sfp_shape_numel(in), sfp_shape_numel(t->train.shape));
		goto out;
	}
	if (sfp_model_classes(t->model) != t->train.classes) {
		rc = sfp_error_set(err, SFP_EINVAL,
				   "the model outputs %d classes but the data has %d",
				   sfp_model_classes(t->model), t->train.classes);
		goto out;
	}
	sfp_model_init(t->model, cfg->train.seed);
	if ((rc = setup_bitlength(t, &cfg->bitlength, err)) < 0)
		goto out;
	size_t np;
	sfp_model_params(t->model, &np);
	if ((rc = sfp_optim_create(&t->opt, &cfg->train.optimizer, np, err)) < 0)
		goto out;
	t->order = malloc((size_t)t->train.n * sizeof *t->order);
	t->bx = malloc((size_t)B * sfp_shape_numel(in) * sizeof(float));
	t->by = malloc((size_t)B);
	if (!t->order || !t->bx || !t->by) {
		rc = sfp_error_set(err, SFP_ENOMEM, "out of memory");
		goto out;
	}
	t->order_epoch = -1;
	t->steps_per_epoch = (t->train.n + B - 1) / B;
	t->total_steps = (int64_t)cfg->train.epochs * t->steps_per_epoch;
	if (cfg->train.max_steps > 0 && cfg->train.max_steps < t->total_steps)
		t->total_steps = cfg->train.max_steps;
	if (cfg->checkpoint.dir[0] && (rc = make_dirs(cfg->checkpoint.dir, err)) < 0)
		goto out;
	if (cfg->log.metrics[0]) {
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
	sfp_trainer_free(t);
	return rc;
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

/* Append one JSON line; a failed write (e.g. a full disk) is an error. */
__attribute__((format(printf, 3, 4))) static int metrics_write(sfp_trainer *t, sfp_error *err,
							      const char *fmt, ...)
{
	if (!t->metrics)
		return SFP_OK;
	va_list ap;
	va_start(ap, fmt);
	int w = vfprintf(t->metrics, fmt, ap);
	va_end(ap);
	if (w < 0 || fputc('\n', t->metrics) == EOF || fflush(t->metrics) != 0)
		return sfp_error_set(err, errno == ENOSPC ? SFP_ENOSPC : SFP_EIO,
				     "cannot write metrics log '%s': %s", t->cfg.log.metrics,
				     strerror(errno));
	return SFP_OK;
}

int sfp_trainer_evaluate(sfp_trainer *t, float *acc, float *loss, sfp_error *err)
{
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
	h.model_sig = model_signature(t->model);
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
	if (h.model_sig != model_signature(t->model) || h.n_params != np || h.n_bufs != nb + nx) {
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
	int64_t best = -1;
	struct dirent *e;
	while ((e = readdir(d))) {
		int64_t s;
		char tail[8];
		if (sscanf(e->d_name, "ckpt-%" SCNd64 ".%7s", &s, tail) == 2 && !strcmp(tail, "sfpk") &&
		    s > best)
			best = s;
	}
	closedir(d);
	if (best < 0)
		return sfp_error_set(err, SFP_ENOENT, "no checkpoint (ckpt-<step>.sfpk) in '%s'", path);
	if ((size_t)snprintf(out, cap, "%s/ckpt-%" PRId64 ".sfpk", path, best) >= cap)
		return sfp_error_set(err, SFP_EINVAL, "checkpoint path in '%s' is too long", path);
	return SFP_OK;
}

/* Delete all but the newest `keep` ckpt-<step>.sfpk files of `dir`. */
static void prune_checkpoints(const char *dir, int keep)
{
	DIR *d = opendir(dir);
	if (!d)
		return;
	int64_t steps[256];
	int n = 0;
	struct dirent *e;
	while ((e = readdir(d)) && n < 256) {
		int64_t s;
		char tail[8];
		if (sscanf(e->d_name, "ckpt-%" SCNd64 ".%7s", &s, tail) == 2 && !strcmp(tail, "sfpk"))
			steps[n++] = s;
	}
	closedir(d);
	for (int i = 0; i < n; i++) {
		int newer = 0;
		for (int j = 0; j < n; j++)
			newer += steps[j] > steps[i];
		if (newer >= keep) {
			char path[SFP_CFG_PATH + 64];
			snprintf(path, sizeof path, "%s/ckpt-%" PRId64 ".sfpk", dir, steps[i]);
			remove(path);
		}
	}
}

static int checkpoint_now(sfp_trainer *t, sfp_error *err)
{
	char path[SFP_CFG_PATH + 64];
	snprintf(path, sizeof path, "%s/ckpt-%" PRId64 ".sfpk", t->cfg.checkpoint.dir, t->step);
	SFP_TRY(sfp_trainer_save(t, path, err));
	prune_checkpoints(t->cfg.checkpoint.dir, t->cfg.checkpoint.keep > 0 ? t->cfg.checkpoint.keep : 1);
	return metrics_write(t, err, "{\"step\":%" PRId64 ",\"checkpoint\":\"%s\"}", t->step, path);
}

/* One record per container: layer, kind, packing widths and the learned
 * real widths; then the footprint. */
static int log_widths(sfp_trainer *t, sfp_error *err)
{
	int k, n = sfp_model_n_qtensors(t->model);
	if (!n)
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

/* ---- the loop ----------------------------------------------------------- */
static int evaluate_and_log(sfp_trainer *t, int64_t epoch, sfp_error *err)
{
	float acc, loss;
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

int sfp_trainer_run(sfp_trainer *t, sfp_error *err)
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
		sfp_dataset_gather(&t->train, t->order + first, b, t->bx, t->by);

		int ok = 0;
		sfp_model_forward(t->model, t->bx, b, 1, c->train.seed * 0x100000001b3ull + (uint64_t)t->step);
		float loss = sfp_model_loss(t->model, t->by, b, &ok, 1);
		if (!(loss == loss) || loss > 1e30f)
			return sfp_error_set(err, SFP_ERANGE,
					     "loss is %g at step %" PRId64
					     "; lower train.optimizer.lr",
					     (double)loss, t->step);
		sfp_model_zero_grad(t->model);
		sfp_model_backward(t->model, t->bx, b);
		float lr = sfp_lr_at(&c->train.optimizer, &c->train.schedule, t->step, t->total_steps);
		size_t np;
		float *p = sfp_model_params(t->model, &np);
		sfp_optim_step(t->opt, p, sfp_model_grads(t->model, NULL), lr, t->step + 1);
		if (t->policy == SFP_QPOLICY_QUANTUM)
			sfp_model_quant_update(t->model, c->bitlength.lr, c->bitlength.gamma);
		else if (t->policy == SFP_QPOLICY_BITWAVE && sfp_bitwave_observe(&t->bw, loss) != 0)
			sfp_model_set_widths(t->model, t->bw.e, t->bw.m);
		t->step++;
		done_here++;
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
			if (t->on_progress)
				t->on_progress(t->user, &pr);
			SFP_TRY(metrics_write(t, err,
					      "{\"step\":%" PRId64 ",\"epoch\":%" PRId64
					      ",\"loss\":%.6f,\"train_acc\":%.6f,\"lr\":%.6g,"
					      "\"samples_per_s\":%.1f}",
					      t->step, epoch, pr.loss, pr.train_acc, lr, rate));
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
