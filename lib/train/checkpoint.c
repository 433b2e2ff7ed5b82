/*
 * checkpoint.c -- the trainer's checkpoints (docs/checkpoint.md): the
 * SFPK file, the ckpt-<step>[-stage<s>].sfpk files of a folder, resuming
 * from the newest intact one, and keeping the newest checkpoint.keep.
 *
 * Layout (little-endian):
 *   ckpt_header (72 bytes) | params | buffers | extra | optimizer state
 * all float32. "extra" is the state beyond the model's arenas: the learned
 * widths (n_e, n_m per container) and, under BitWave, the controller's
 * state (sfp_bitwave_save); it is counted in the header's n_bufs. The
 * header carries counts, the model signature, the step and two CRC32Cs
 * (payload, then header with its own CRC field zero).
 */
#include <assert.h>
#include <dirent.h>
#include <errno.h>
#include <inttypes.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include "train/train_internal.h"

static const sfp_sealed_kind ckpt_kind = {
	.magic = {'S', 'F', 'P', 'K'},
	.version = 1,
	.header_bytes = sizeof(ckpt_header),
	.payload_crc_at = offsetof(ckpt_header, payload_crc),
	.header_crc_at = offsetof(ckpt_header, header_crc),
	.noun = "checkpoint",
	.not_this = "an sfp checkpoint (bad magic)",
};

size_t sfp_ckpt_extra_count(const sfp_trainer *t)
{
	return (size_t)2 * sfp_model_n_qtensors(t->model) +
	       (t->policy == SFP_QPOLICY_BITWAVE ? SFP_BITWAVE_STATE_FLOATS : 0);
}

static void extra_gather(sfp_trainer *t)
{
	int nw = sfp_model_widths_save(t->model, t->extra, (int)t->nextra);
	if (t->policy == SFP_QPOLICY_BITWAVE)
		sfp_bitwave_save(&t->bw, t->extra + nw);
}

/* The BitWave state is checked before anything changes. */
int sfp_ckpt_extra_scatter(sfp_trainer *t, const char *path, sfp_error *err)
{
	const int nw = 2 * sfp_model_n_qtensors(t->model);
	sfp_bitwave bw = t->bw;
	if (t->policy == SFP_QPOLICY_BITWAVE && sfp_bitwave_load(&bw, t->extra + nw, err) < 0)
		return sfp_error_set(err, SFP_ECORRUPT, "checkpoint '%s': %s", path, err->msg);
	if (nw)
		sfp_model_widths_load(t->model, t->extra, nw);
	t->bw = bw;
	return SFP_OK;
}

/* mkdir -p, naming the folder on failure */

/* mkdir -p, naming the folder on failure */
int sfp_ckpt_make_dirs(const char *path, sfp_error *err)
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
	h.model_sig = sfp_model_signature(t->model);
	h.step = t->step;
	h.seed = t->cfg.train.seed;
	h.n_params = np;
	h.n_bufs = nb + nx;
	h.n_state = ns;
	h.batch_size = (uint32_t)t->cfg.train.batch_size;
	memcpy(buf, &h, sizeof h);
	unsigned char *q = buf + sizeof h;
	memcpy(q, p, np * sizeof(float));
	memcpy(q + np * sizeof(float), b, nb * sizeof(float));
	if (nx)
		memcpy(q + (np + nb) * sizeof(float), t->extra, nx * sizeof(float));
	memcpy(q + (np + nb + nx) * sizeof(float), s, ns * sizeof(float));
	sfp_sealed_seal(&ckpt_kind, buf, len);
	int rc = sfp_file_write_atomic(path, buf, len, err);
	free(buf);
	return rc;
}

/* The header against this trainer's model, optimizer and run. */
static int check_ckpt(const sfp_trainer *t, const char *path, const ckpt_header *h, size_t len,
		      sfp_error *err)
{
	size_t np, nb, ns;
	sfp_model_params(t->model, &np);
	sfp_model_buffers(t->model, &nb);
	sfp_optim_state(t->opt, &ns);
	const size_t nx = t->nextra;
	if (h->model_sig != sfp_model_signature(t->model) || h->n_params != np ||
	    h->n_bufs != nb + nx)
		return sfp_error_set(err, SFP_EINVAL,
				     "checkpoint '%s' belongs to a different model (layers, shapes or "
				     "bitlength policy differ from the config)",
				     path);
	if (h->n_state != ns)
		return sfp_error_set(err, SFP_EINVAL,
				     "checkpoint '%s' holds state of a different optimizer", path);
	if (h->step < 0 || h->step > t->total_steps)
		return sfp_error_set(err, SFP_ECORRUPT,
				     "checkpoint '%s': step %" PRId64 " is outside this run's %" PRId64
				     " steps",
				     path, h->step, t->total_steps);
	if (h->batch_size != (uint32_t)t->cfg.train.batch_size || h->seed != t->cfg.train.seed)
		return sfp_error_set(err, SFP_EINVAL,
				     "checkpoint '%s' was trained with batch_size %u and seed %" PRIu64
				     "; the config says %d and %" PRIu64,
				     path, h->batch_size, h->seed, t->cfg.train.batch_size,
				     t->cfg.train.seed);
	const size_t want = sizeof *h + (np + nb + nx + ns) * sizeof(float);
	if (len != want)
		return sfp_error_set(err, len < want ? SFP_ETRUNC : SFP_ECORRUPT,
				     "checkpoint '%s' has %zu bytes, its header says %zu", path, len,
				     want);
	return SFP_OK;
}

int sfp_ckpt_read(const char *path, sfp_ckpt_file *f, sfp_error *err)
{
	memset(f, 0, sizeof *f);
	SFP_TRY(sfp_file_read(path, &f->data, &f->len, err));
	int rc;
	if ((rc = sfp_sealed_check_header(&ckpt_kind, path, f->data, f->len, &f->h, err)) < 0 ||
	    (rc = sfp_sealed_check_payload(&ckpt_kind, path, f->data, f->len, &f->h, err)) < 0) {
		sfp_ckpt_release(f);
		return rc;
	}
	const size_t want = sizeof f->h + (f->h.n_params + f->h.n_bufs + f->h.n_state) * sizeof(float);
	if (f->len != want) {
		sfp_ckpt_release(f);
		return sfp_error_set(err, f->len < want ? SFP_ETRUNC : SFP_ECORRUPT,
				     "checkpoint '%s' has %zu bytes, its header says %zu", path,
				     f->len, want);
	}
	f->payload = (const unsigned char *)f->data + sizeof f->h;
	return SFP_OK;
}

void sfp_ckpt_release(sfp_ckpt_file *f)
{
	free(f->data);
	f->data = NULL;
	f->payload = NULL;
}

int sfp_trainer_load(sfp_trainer *t, const char *path, sfp_error *err)
{
	void *data = NULL;
	size_t len = 0;
	int rc = sfp_file_read(path, &data, &len, err);
	if (rc < 0)
		return rc;
	ckpt_header h;
	if ((rc = sfp_sealed_check_header(&ckpt_kind, path, data, len, &h, err)) < 0 ||
	    (rc = check_ckpt(t, path, &h, len, err)) < 0 ||
	    (rc = sfp_sealed_check_payload(&ckpt_kind, path, data, len, &h, err)) < 0)
		goto out;
	size_t np, nb, ns;
	float *p = sfp_model_params(t->model, &np), *b = sfp_model_buffers(t->model, &nb);
	float *s = sfp_optim_state(t->opt, &ns);
	const size_t nx = t->nextra;
	const unsigned char *q = (const unsigned char *)data + sizeof h;
	if (nx) {
		memcpy(t->extra, q + (np + nb) * sizeof(float), nx * sizeof(float));
		if ((rc = sfp_ckpt_extra_scatter(t, path, err)) < 0)
			goto out;
	}
	memcpy(p, q, np * sizeof(float));
	memcpy(b, q + np * sizeof(float), nb * sizeof(float));
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
int64_t *sfp_ckpt_steps(const char *dir, const char *suffix, int *n)
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
	int64_t *steps = sfp_ckpt_steps(dir, suffix, &n);
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

int sfp_trainer_load_checkpoint(sfp_trainer *t, const char *path, char *used, size_t cap,
				sfp_error *err)
{
	struct stat st;
	if (stat(path, &st) == 0 && S_ISDIR(st.st_mode) && newest_ckpt(path, ".sfpk") < 0) {
		int stages = 0;
		const int64_t step = sfp_ckpt_staged_newest(path, &stages);
		if (step >= 0)
			return sfp_trainer_load_stages(t, path, step, stages, used, cap, err);
	}
	SFP_TRY(sfp_checkpoint_resolve(path, used, cap, err));
	return sfp_trainer_load(t, used, err);
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
	int64_t *steps = sfp_ckpt_steps(path, ".sfpk", &n);
	if (!n) { /* a pipelined run's: the files of its stages at one step */
		free(steps);
		int stages = 0;
		const int64_t step = sfp_ckpt_staged_newest(path, &stages);
		if (step >= 0)
			return sfp_trainer_load_stages(t, path, step, stages, used, cap, err);
		return sfp_error_set(err, SFP_ENOENT,
				     "no checkpoint (ckpt-<step>.sfpk, or ckpt-<step>-stage<s>.sfpk "
				     "of every stage of a pipeline at one step) in '%s'",
				     path);
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

int sfp_ckpt_now(sfp_trainer *t, sfp_error *err)
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
	return sfp_metrics_checkpoint(t, path, err);
}
