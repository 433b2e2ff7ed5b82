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
#include "sfp/nn.h"
#include "sfp/npy.h"

#define FMNIST_MEAN 0.2860f
#define FMNIST_STD 0.3530f

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

static void kaiming(float *w, uint64_t n, unsigned fan_in, sfp_rng *r)
{
	float sd = sqrtf(2.0f / (float)fan_in);
	for (uint64_t i = 0; i < n; i++)
		w[i] = sd * sfp_rng_normal(r);
}

static int cmp_float(const void *a, const void *b)
{
	float x = *(const float *)a, y = *(const float *)b;
	return (x > y) - (x < y);
}

/* Shift channel c of x[b][c][hw] so that a fraction `zero_frac` is <= 0. */
static void bias_for_sparsity(float *x, unsigned B, unsigned C, unsigned HW, float zero_frac,
			      float *scratch)
{
	for (unsigned c = 0; c < C; c++) {
		unsigned k = 0;
		for (unsigned b = 0; b < B; b++)
			for (unsigned i = 0; i < HW; i++)
				scratch[k++] = x[((size_t)b * C + c) * HW + i];
		qsort(scratch, k, sizeof(float), cmp_float);
		float q = scratch[(size_t)(zero_frac * (float)(k - 1))];
		for (unsigned b = 0; b < B; b++)
			for (unsigned i = 0; i < HW; i++)
				x[((size_t)b * C + c) * HW + i] -= q;
	}
}

/* y[b][co][oh][ow] = sum w[co][ci][kh][kw] * x[b][ci][oh+kh][ow+kw] (valid). */
static void conv2d(float *y, const float *x, const float *w, unsigned B, unsigned Ci, unsigned H,
		   unsigned W, unsigned Co, unsigned K)
{
	unsigned OH = H - K + 1, OW = W - K + 1;
	for (unsigned b = 0; b < B; b++)
		for (unsigned co = 0; co < Co; co++) {
			float *yo = y + ((size_t)b * Co + co) * OH * OW;
			memset(yo, 0, sizeof(float) * OH * OW);
			for (unsigned ci = 0; ci < Ci; ci++) {
				const float *xi = x + ((size_t)b * Ci + ci) * H * W;
				const float *wk = w + ((size_t)co * Ci + ci) * K * K;
				for (unsigned kh = 0; kh < K; kh++)
					for (unsigned kw = 0; kw < K; kw++) {
						float wv = wk[kh * K + kw];
						for (unsigned oh = 0; oh < OH; oh++) {
							const float *xr = xi + (oh + kh) * W + kw;
							float *yr = yo + oh * OW;
							for (unsigned ow = 0; ow < OW; ow++)
								yr[ow] += wv * xr[ow];
						}
					}
			}
		}
}

static void relu(float *x, uint64_t n)
{
	for (uint64_t i = 0; i < n; i++)
		x[i] = x[i] > 0.0f ? x[i] : 0.0f;
}

static void maxpool2(float *y, const float *x, unsigned BC, unsigned H, unsigned W)
{
	for (unsigned p = 0; p < BC; p++)
		for (unsigned i = 0; i < H / 2; i++)
			for (unsigned j = 0; j < W / 2; j++) {
				const float *s = x + (size_t)p * H * W + 2 * i * W + 2 * j;
				float m = fmaxf(fmaxf(s[0], s[1]), fmaxf(s[W], s[W + 1]));
				y[(size_t)p * (H / 2) * (W / 2) + i * (W / 2) + j] = m;
			}
}

enum { MAX_TENSORS = 12 };

int bench_tensors_standard(bench_tensor **out, double scale, sfp_error *err)
{
	sfp_idx img, lab;
	sfp_rng rng;
	bench_tensor *t = NULL;
	float *scratch = NULL, *z1 = NULL, *p1 = NULL, *z2 = NULL;
	int n = 0, rc;

	*out = NULL;
	if (!(scale > 0.0 && scale <= 1.0))
		return sfp_error_set(err, SFP_EINVAL, "scale %g is not in (0, 1]", scale);
	rc = sfp_fmnist_load(NULL, "t10k", &img, &lab, err);
	if (rc < 0)
		return rc;
	sfp_rng_seed(&rng, 20261128);

	unsigned n_img = (unsigned)(2000 * scale), B = (unsigned)(64 * scale);
	if (n_img < 16)
		n_img = 16;
	if (B < 4)
		B = 4;
	t = calloc(MAX_TENSORS, sizeof *t);
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

	/* Weights, Kaiming normal. */
	uint64_t s_w1[4] = {16, 1, 5, 5}, s_w2[4] = {32, 16, 5, 5}, s_fc[2] = {128, 512},
		 s_mlp[2] = {256, 784};
	bench_tensor *w1 = add(t, &n, "conv1-weight", "weight", 4, s_w1);
	bench_tensor *w2 = add(t, &n, "conv2-weight", "weight", 4, s_w2);
	bench_tensor *wf = add(t, &n, "fc1-weight", "weight", 2, s_fc);
	bench_tensor *wm = add(t, &n, "mlp-fc1-weight", "weight", 2, s_mlp);
	if (!w1 || !w2 || !wf || !wm)
		goto nomem;
	kaiming(w1->data, w1->count, 25, &rng);
	kaiming(w2->data, w2->count, 16 * 25, &rng);
	kaiming(wf->data, wf->count, 512, &rng);
	kaiming(wm->data, wm->count, 784, &rng);

	/* Forward through the CNN on the first B normalized images. */
	size_t n_z1 = (size_t)B * 16 * 24 * 24, n_p1 = (size_t)B * 16 * 12 * 12,
	       n_z2 = (size_t)B * 32 * 8 * 8;
	z1 = malloc(n_z1 * sizeof(float));
	p1 = malloc(n_p1 * sizeof(float));
	z2 = malloc(n_z2 * sizeof(float));
	scratch = malloc((size_t)B * 24 * 24 * sizeof(float));
	if (!z1 || !p1 || !z2 || !scratch)
		goto nomem;
	conv2d(z1, nrm->data, w1->data, B, 1, 28, 28, 16, 5);
	bias_for_sparsity(z1, B, 16, 24 * 24, 0.71f, scratch);
	uint64_t s_a1[4] = {B, 16, 24, 24}, s_a2[4] = {B, 32, 8, 8}, s_gf[2] = {128, 512};
	bench_tensor *a1 = add(t, &n, "conv1-act", "activation", 4, s_a1);
	if (!a1)
		goto nomem;
	memcpy(a1->data, z1, n_z1 * sizeof(float));
	relu(a1->data, a1->count);
	maxpool2(p1, a1->data, B * 16, 24, 24);
	conv2d(z2, p1, w2->data, B, 16, 12, 12, 32, 5);
	bias_for_sparsity(z2, B, 32, 8 * 8, 0.90f, scratch);
	bench_tensor *a2 = add(t, &n, "conv2-act", "activation", 4, s_a2);
	if (!a2)
		goto nomem;
	memcpy(a2->data, z2, n_z2 * sizeof(float));
	relu(a2->data, a2->count);

	/* Gradients: the loss gradient reaching conv1's output (upstream error
	 * times ReLU's derivative, so zero where the unit was off), and fc1's
	 * weight gradient dW = delta^T x / B for pooled conv2 features x. */
	bench_tensor *g1 = add(t, &n, "conv1-act-grad", "gradient", 4, s_a1);
	if (!g1)
		goto nomem;
	for (size_t i = 0; i < n_z1; i++)
		g1->data[i] = z1[i] > 0.0f ? 1e-3f * sfp_rng_normal(&rng) : 0.0f;
	bench_tensor *gf = add(t, &n, "fc1-weight-grad", "gradient", 2, s_gf);
	if (!gf)
		goto nomem;
	{
		/* x: B x 512 features = maxpool of conv2-act (B x 32 x 4 x 4). */
		float *x = malloc((size_t)B * 512 * sizeof(float));
		float *d = malloc((size_t)B * 128 * sizeof(float));
		if (!x || !d) {
			free(x);
			free(d);
			goto nomem;
		}
		maxpool2(x, a2->data, B * 32, 8, 8);
		for (size_t i = 0; i < (size_t)B * 128; i++)
			d[i] = 1e-2f * sfp_rng_normal(&rng);
		for (unsigned o = 0; o < 128; o++)
			for (unsigned k = 0; k < 512; k++) {
				float s = 0.0f;
				for (unsigned b = 0; b < B; b++)
					s += d[(size_t)b * 128 + o] * x[(size_t)b * 512 + k];
				gf->data[(size_t)o * 512 + k] = s / (float)B;
			}
		free(x);
		free(d);
	}

	*out = t;
	rc = n;
	t = NULL;
	goto out;
nomem:
	rc = sfp_error_set(err, SFP_ENOMEM, "out of memory building the benchmark tensors");
out:
	free(scratch);
	free(z1);
	free(p1);
	free(z2);
	sfp_idx_release(&img);
	sfp_idx_release(&lab);
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

int bench_tensors_trained(bench_tensor **out, const char *config, int steps, sfp_error *err)
{
	enum { B = 64 };
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
