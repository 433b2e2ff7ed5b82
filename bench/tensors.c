/*
 * tensors.c -- the standard tensor set for benchmarks and ablations.
 *
 * Real data: Fashion-MNIST test images, raw ([0, 1]) and normalized as a
 * network sees them. Until the training engine can dump trained tensors, the
 * weights, activations and gradients are computed from those images through
 * a small CNN with seeded Kaiming-normal weights (conv 5x5x16 -> ReLU ->
 * maxpool 2 -> conv 5x5x32 -> ReLU -> maxpool 2 -> fc 512x128). The biases
 * of the two convolutions are set per channel so that 71% and 90% of the
 * activations are zero, the sparsity measured on a trained Fashion-MNIST CNN
 * (design.md 1.1); with zero biases a random network gives only ~50%.
 */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "bench/tensors.h"
#include "sfp/config.h"
#include "sfp/data.h"
#include "sfp/train.h"
#include "sfp/npy.h"

#define FMNIST_MEAN 0.2860f
#define FMNIST_STD 0.3530f
/* The model whose trained tensors the standard set holds (run from the
 * repository root, as make bench does). */
#define BENCH_MODEL "deploy/examples/fmnist-cnn.yaml"

static bench_tensor *add(bench_tensor *t, int *n, const char *name, const char *kind,
			 unsigned ndim, const uint64_t *shape)
{
	bench_tensor *x = &t[(*n)++];
	uint64_t count = 1;
	memset(x, 0, sizeof *x);
	snprintf(x->name, sizeof x->name, "%s", name);
	x->kind = kind;
	x->ndim = ndim;
	for (unsigned i = 0; i < ndim; i++) {
		x->shape[i] = shape[i];
		count *= shape[i];
	}
	x->count = count;
	x->data = calloc(count ? count : 1, sizeof(float));
	return x->data ? x : NULL;
}

/* The standard set: real images, then the tensors of fmnist-cnn trained
 * briefly (bench_tensors_trained). */
int bench_tensors_standard(bench_tensor **out, double scale, sfp_error *err)
{
	sfp_idx img, lab;
	bench_tensor *t = NULL, *tr = NULL;
	int n = 0, ntr = 0, rc;

	*out = NULL;
	if (!(scale > 0.0 && scale <= 1.0))
		return sfp_error_set(err, SFP_EINVAL, "scale %g is not in (0, 1]", scale);
	rc = sfp_fmnist_load(NULL, "t10k", &img, &lab, err);
	if (rc < 0)
		return rc;
	const int full = scale >= 1.0;
	ntr = bench_tensors_trained(&tr, BENCH_MODEL, full ? 300 : 20, full ? 64 : 8, err);
	if (ntr < 0) {
		rc = ntr;
		ntr = 0;
		goto out;
	}
	unsigned n_img = (unsigned)(2000 * scale);
	if (n_img < 16)
		n_img = 16;
	t = calloc(2 + (size_t)ntr, sizeof *t);
	if (!t)
		goto nomem;

	/* Real images: raw pixels / 255, and normalized (x - mean) / std. */
	uint64_t s_img[3] = {n_img, 28, 28};
	bench_tensor *raw = add(t, &n, "fmnist-images", "image", 3, s_img);
	if (!raw)
		goto nomem;
	for (uint64_t i = 0; i < raw->count; i++)
		raw->data[i] = (float)img.data[i] / 255.0f;
	bench_tensor *nrm = add(t, &n, "fmnist-normalized", "image", 3, s_img);
	if (!nrm)
		goto nomem;
	for (uint64_t i = 0; i < nrm->count; i++)
		nrm->data[i] = (raw->data[i] - FMNIST_MEAN) / FMNIST_STD;
	/* the trained model's tensors move over (their data with them) */
	memcpy(t + n, tr, (size_t)ntr * sizeof *tr);
	n += ntr;
	free(tr);
	tr = NULL;
	ntr = 0;

	*out = t;
	rc = n;
	t = NULL;
	goto out;
nomem:
	rc = sfp_error_set(err, SFP_ENOMEM, "out of memory building the benchmark tensors");
out:
	sfp_idx_release(&img);
	sfp_idx_release(&lab);
	bench_tensors_free(tr, ntr);
	bench_tensors_free(t, n); /* NULL after success */
	return rc;
}

int bench_tensors_from_files(bench_tensor **out, char **paths, int n, sfp_error *err)
{
	bench_tensor *t = calloc(n > 0 ? (size_t)n : 1, sizeof *t);
	*out = NULL;
	if (!t)
		return sfp_error_set(err, SFP_ENOMEM, "out of memory");
	for (int i = 0; i < n; i++) {
		sfp_npy a;
		int rc = sfp_npy_read(paths[i], &a, err);
		if (rc < 0) {
			bench_tensors_free(t, i);
			return rc;
		}
		const char *base = strrchr(paths[i], '/');
		snprintf(t[i].name, sizeof t[i].name, "%s", base ? base + 1 : paths[i]);
		t[i].kind = "file";
		t[i].data = a.data;
		t[i].count = a.count;
		t[i].ndim = a.ndim;
		memcpy(t[i].shape, a.shape, sizeof t[i].shape);
	}
	*out = t;
	return n;
}

void bench_tensors_free(bench_tensor *t, int n)
{
	if (!t)
		return;
	for (int i = 0; i < n; i++)
		free(t[i].data);
	free(t);
}

/* ---- tensors of a trained model ------------------------------------------- */

static int add_copy(bench_tensor *t, int *n, const char *layer, const char *what,
		    const char *kind, const float *src, uint64_t lead, uint64_t count)
{
	bench_tensor *b = &t[*n];
	b->data = malloc((size_t)count * sizeof(float));
	if (!b->data)
		return -1;
	memcpy(b->data, src, (size_t)count * sizeof(float));
	snprintf(b->name, sizeof b->name, "%s-%s", layer, what);
	b->kind = kind;
	b->count = count;
	b->ndim = 2;
	b->shape[0] = lead;
	b->shape[1] = count / lead;
	(*n)++;
	return 0;
}

/* The weights of a conv/linear layer's parameter slice: [co][per] weights,
 * then (if the layer has a bias) co biases. A conv row holds ci * k * k
 * weights (ci k^2 + 1 with a bias is never ci times a square), a linear row
 * all input features (+ 1 with a bias). */
static uint64_t weights_in_slice(const sfp_layer_info *li)
{
	uint64_t co = li->out.c, per = li->nparams / co, ci = li->in.c;
	int bias;
	if (!strcmp(li->type, "linear")) {
		bias = per == (uint64_t)li->in.c * li->in.h * li->in.w + 1;
	} else {
		uint64_t k = per % ci ? 0 : (uint64_t)(sqrt((double)(per / ci)) + 0.5);
		bias = !(per % ci == 0 && k * k == per / ci);
	}
	return bias ? li->nparams - co : li->nparams;
}

int bench_tensors_trained(bench_tensor **out, const char *config, int steps, int B,
			  sfp_error *err)
{
	char s_steps[48];
	snprintf(s_steps, sizeof s_steps, "train.max_steps=%d", steps);
	const char *sets[] = {s_steps, "log.metrics=", "checkpoint.dir=", "data.test_limit=64"};
	sfp_config cfg;
	sfp_trainer *tr = NULL;
	sfp_dataset train = {0}, test = {0};
	bench_tensor *t = NULL;
	float *x = NULL;
	int n = 0, rc;
	*out = NULL;
	if ((rc = sfp_config_load_all(&cfg, config, sets, 4, err)) < 0 ||
	    (rc = sfp_trainer_create(&tr, &cfg, NULL, err)) < 0 ||
	    (rc = sfp_trainer_run(tr, err)) < 0 ||
	    (rc = sfp_dataset_load(&train, &test, &cfg.data, err)) < 0)
		goto out;
	sfp_model *m = sfp_trainer_model(tr);
	const int L = sfp_model_n_layers(m);
	t = calloc(3 * (size_t)L + 1, sizeof *t);
	const size_t per = (size_t)test.shape.c * test.shape.h * test.shape.w;
	x = malloc(B * per * sizeof *x);
	if (!t || !x || test.n < B)
		goto nomem;
	memcpy(x, test.x, B * per * sizeof *x);
	sfp_model_forward(m, x, B, SFP_FORWARD_TRAIN, 1);
	sfp_model_loss(m, test.y, B, NULL, 1);
	sfp_model_zero_grad(m);
	sfp_model_backward(m, x, B);
	size_t np;
	const float *p = sfp_model_params(m, &np), *g = sfp_model_grads(m, &np);
	for (int i = 0; i < L; i++) {
		sfp_layer_info li;
		sfp_model_layer(m, i, &li);
		if (strcmp(li.type, "conv2d") && strcmp(li.type, "linear"))
			continue;
		uint64_t co = li.out.c, nw = weights_in_slice(&li);
		const float *a = sfp_model_activation(m, i);
		uint64_t na = (uint64_t)B * li.out.c * li.out.h * li.out.w;
		if (add_copy(t, &n, li.name, "weight", "weight", p + li.param_offset, co, nw) < 0 ||
		    (a && add_copy(t, &n, li.name, "act", "activation", a, B, na) < 0) ||
		    add_copy(t, &n, li.name, "grad", "gradient", g + li.param_offset, co, nw) < 0)
			goto nomem;
	}
	*out = t;
	rc = n;
	t = NULL;
	goto out;
nomem:
	rc = sfp_error_set(err, SFP_ENOMEM, "out of memory collecting the trained tensors");
out:
	free(x);
	bench_tensors_free(t, n);
	sfp_dataset_release(&train);
	sfp_dataset_release(&test);
	sfp_trainer_free(tr);
	return rc;
}
