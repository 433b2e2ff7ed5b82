/*
 * stage_ckpt.c -- a pipelined run's checkpoints (one file per stage,
 * ckpt-<step>-stage<s>.sfpk) read into a one-process trainer of the whole
 * model: `sfp eval`, `sfp generate`, `sfp export` and a resume without
 * pipeline stages take them as they take a whole-model checkpoint.
 *
 * Each stage's model is rebuilt as the job built it (the same split of the
 * same config, the same containers), its file checked against it, and its
 * state put where the whole model keeps it, layer by layer: parameters,
 * buffers, every array of the optimizer state, the learned widths by
 * (layer, kind). A head tied to an embedding of an earlier stage held a
 * copy of the matrix, equal to the embedding's (dist.c); the whole model
 * reads the embedding's, so the copy and its container are left out.
 * BitWave's state is the same on every stage (its decisions are the job's):
 * stage 0's is taken.
 */
#include <dirent.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include "train/train_internal.h"

static int stage_file(char *buf, size_t cap, const char *dir, int64_t step, int s)
{
	return (size_t)snprintf(buf, cap, "%s/ckpt-%" PRId64 "-stage%d.sfpk", dir, step, s) < cap;
}

/* The stage count of the folder's per-stage files: the highest stage
 * number in a file name, plus one (0: none). */
static int stage_count(const char *dir)
{
	DIR *d = opendir(dir);
	if (!d)
		return 0;
	int n = 0;
	struct dirent *e;
	while ((e = readdir(d))) {
		int64_t step;
		int s, used = 0;
		if (sscanf(e->d_name, "ckpt-%" SCNd64 "-stage%d%n", &step, &s, &used) == 2 &&
		    step >= 0 && s >= 0 && s < SFP_CFG_MAX_LAYERS && !strcmp(e->d_name + used, ".sfpk") &&
		    s + 1 > n)
			n = s + 1;
	}
	closedir(d);
	return n;
}

int64_t sfp_ckpt_staged_newest(const char *dir, int *stages)
{
	*stages = stage_count(dir);
	int n = 0;
	int64_t *steps = sfp_ckpt_steps(dir, "-stage0.sfpk", &n), best = -1;
	char path[SFP_CFG_PATH + 64];
	for (int k = 0; k < n && best < 0 && *stages > 0; k++) {
		int s = 1;
		struct stat st;
		while (s < *stages && stage_file(path, sizeof path, dir, steps[k], s) &&
		       stat(path, &st) == 0)
			s++;
		if (s == *stages)
			best = steps[k];
	}
	free(steps);
	return best;
}

/* Stage s of S (layers [first[s], first[s + 1])) as the job built it. */
static int build_stage(const sfp_trainer *t, const int *first, int S, int s, sfp_model **out,
		       sfp_error *err)
{
	sfp_cfg_model *c = malloc(sizeof *c);
	if (!c)
		return sfp_error_set(err, SFP_ENOMEM, "out of memory");
	sfp_dist_stage_config(&t->cfg.model, t->model, first[s], first[s + 1], c);
	const int last = s == S - 1;
	int rc = sfp_model_create_ex(out, c, t->config_dir, 1, last ? 0 : SFP_MODEL_STAGE, err);
	if (rc == SFP_OK && !last)
		sfp_model_set_output_stored(*out, 1);
	if (rc == SFP_OK)
		rc = sfp_train_set_containers(t, *out, err);
	free(c);
	return rc;
}

/* Where the whole model's state goes, and which of its containers the
 * stages have filled. */
typedef struct whole_state {
	float *p, *b, *s, *x; /* parameters, buffers, optimizer state, extra */
	size_t np, nb, ns;
	int nq;
	char *covered; /* per container of the whole model */
} whole_state;

/* The file f of stage s (model sm, its layers from `first` on) into w. */
static int scatter_stage(const sfp_trainer *t, whole_state *w, const sfp_model *sm, int first,
			 const sfp_ckpt_file *f, int s, const char *path, sfp_error *err)
{
	size_t np, nb;
	sfp_model_params((sfp_model *)sm, &np);
	sfp_model_buffers((sfp_model *)sm, &nb);
	const int nq = sfp_model_n_qtensors(sm);
	const size_t nx = (size_t)2 * nq + (t->policy == SFP_QPOLICY_BITWAVE ? SFP_BITWAVE_STATE_FLOATS : 0);
	const size_t k_state = np ? f->h.n_state / np : 0;
	if (f->h.model_sig != sfp_model_signature(sm) || f->h.n_params != np ||
	    f->h.n_bufs != nb + nx || !np || f->h.n_state != k_state * np ||
	    k_state * w->np != w->ns)
		return sfp_error_set(err, SFP_EINVAL,
				     "checkpoint '%s' is not stage %d of this config's model as a "
				     "pipeline cuts it (layers, shapes, bitlength policy or optimizer "
				     "differ)",
				     path, s);
	if (f->h.step != t->step)
		return sfp_error_set(err, SFP_ECORRUPT, "checkpoint '%s' says step %" PRId64,
				     path, f->h.step);
	if (f->h.batch_size != (uint32_t)t->cfg.train.batch_size || f->h.seed != t->cfg.train.seed)
		return sfp_error_set(err, SFP_EINVAL,
				     "checkpoint '%s' was trained with batch_size %u and seed %" PRIu64
				     "; the config says %d and %" PRIu64,
				     path, f->h.batch_size, f->h.seed, t->cfg.train.batch_size,
				     t->cfg.train.seed);
	const float *P = f->payload, *B = P + np, *X = B + nb, *S = X + nx;
	for (int i = 0; i < sfp_model_n_layers(sm); i++) {
		sfp_layer_info fl, sl, el; /* el: the head's copy of the matrix, left out */
		sfp_dist_stage_layer(t->model, first, i, &fl, &el);
		sfp_model_layer(sm, i, &sl);
		if (sl.nparams != el.nparams + fl.nparams || sl.nbufs != fl.nbufs)
			return sfp_error_set(err, SFP_EINVAL, "checkpoint '%s': layer '%s' differs",
					     path, fl.name);
		const size_t from = sl.param_offset + el.nparams;
		memcpy(w->p + fl.param_offset, P + from, fl.nparams * sizeof(float));
		for (size_t k = 0; k < k_state; k++)
			memcpy(w->s + k * w->np + fl.param_offset, S + k * np + from,
			       fl.nparams * sizeof(float));
		memcpy(w->b + fl.buf_offset, B + sl.buf_offset, fl.nbufs * sizeof(float));
	}
	for (int k = 0; k < nq; k++) {
		sfp_qtensor_info qs;
		sfp_model_qtensor(sm, k, &qs);
		int j = 0;
		for (; j < w->nq; j++) {
			sfp_qtensor_info qw;
			sfp_model_qtensor(t->model, j, &qw);
			if (!strcmp(qw.layer, qs.layer) && !strcmp(qw.kind, qs.kind))
				break;
		}
		if (j == w->nq)
			continue; /* the head copy's weights */
		memcpy(w->x + 2 * j, X + 2 * k, 2 * sizeof(float));
		w->covered[j] = 1;
	}
	if (s == 0 && nx > (size_t)2 * nq) /* BitWave's state */
		memcpy(w->x + 2 * w->nq, X + 2 * nq, (nx - 2 * (size_t)nq) * sizeof(float));
	return SFP_OK;
}

int sfp_trainer_load_stages(sfp_trainer *t, const char *dir, int64_t step, int stages,
			    char *used, size_t cap, sfp_error *err)
{
	int first[SFP_CFG_MAX_LAYERS + 1];
	if (step > t->total_steps)
		return sfp_error_set(err, SFP_ECORRUPT,
				     "checkpoint of step %" PRId64 " in '%s' is outside this run's %" PRId64
				     " steps",
				     step, dir, t->total_steps);
	SFP_TRY(sfp_pipeline_plan(t->model, stages, first, err));
	const int64_t was = t->step;
	t->step = step; /* what the files must say */
	whole_state w = {.nq = sfp_model_n_qtensors(t->model)};
	w.p = sfp_model_params(t->model, &w.np);
	w.b = sfp_model_buffers(t->model, &w.nb);
	w.s = sfp_optim_state(t->opt, &w.ns);
	w.x = t->extra;
	w.covered = calloc((size_t)w.nq + 1, 1);
	if (!w.covered)
		return sfp_error_set(err, SFP_ENOMEM, "out of memory");
	int rc = SFP_OK;
	char path[SFP_CFG_PATH + 64];
	for (int s = 0; s < stages && rc == SFP_OK; s++) {
		sfp_model *sm = NULL;
		sfp_ckpt_file f;
		if (!stage_file(path, sizeof path, dir, step, s)) {
			rc = sfp_error_set(err, SFP_EINVAL, "checkpoint path in '%s' is too long", dir);
			break;
		}
		if ((rc = build_stage(t, first, stages, s, &sm, err)) == SFP_OK &&
		    (rc = sfp_ckpt_read(path, &f, err)) == SFP_OK) {
			rc = scatter_stage(t, &w, sm, first[s], &f, s, path, err);
			sfp_ckpt_release(&f);
		}
		sfp_model_free(sm);
	}
	for (int j = 0; rc == SFP_OK && j < w.nq; j++)
		if (!w.covered[j]) {
			sfp_qtensor_info q;
			sfp_model_qtensor(t->model, j, &q);
			rc = sfp_error_set(err, SFP_EINVAL,
					   "the stage checkpoints in '%s' hold no widths of '%s' %s", dir,
					   q.layer, q.kind);
		}
	free(w.covered);
	if (rc == SFP_OK && t->nextra)
		rc = sfp_ckpt_extra_scatter(t, dir, err);
	if (rc != SFP_OK) {
		t->step = was;
		return rc;
	}
	if ((size_t)snprintf(used, cap, "%s/ckpt-%" PRId64 "-stage0..%d.sfpk", dir, step,
			     stages - 1) >= cap)
		used[0] = 0;
	return SFP_OK;
}
