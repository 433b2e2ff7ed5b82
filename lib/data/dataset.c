/*
 * dataset.c -- datasets as float tensors for training: Fashion-MNIST here,
 * the users' sources through sources.c; all scaled to [0, 1], optionally
 * standardised by the training set's statistics; seeded epoch orders and
 * augmentations that depend only on (seed, epoch, sample), so a resumed run
 * sees the same batches as an uninterrupted one.
 */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "data/data_internal.h"

void sfp_dataset_release(sfp_dataset *d)
{
	if (!d)
		return;
	free(d->x);
	free(d->y);
	memset(d, 0, sizeof *d);
}

static int to_dataset(sfp_dataset *d, sfp_idx *img, sfp_idx *lab, int limit, sfp_error *err)
{
	int n = (int)img->dims[0];
	if (limit > 0 && limit < n)
		n = limit;
	size_t per = (size_t)img->dims[1] * img->dims[2];
	d->n = n;
	d->shape = (sfp_shape){1, (int)img->dims[1], (int)img->dims[2]};
	d->ndim = 2;
	d->dims[0] = d->shape.h;
	d->dims[1] = d->shape.w;
	d->classes = 10;
	d->x = malloc((size_t)n * per * sizeof(float));
	d->y = malloc((size_t)n);
	if (!d->x || !d->y) {
		sfp_dataset_release(d);
		return sfp_error_set(err, SFP_ENOMEM, "out of memory for %d samples", n);
	}
	for (size_t i = 0; i < (size_t)n * per; i++)
		d->x[i] = (float)img->data[i] / 255.0f;
	memcpy(d->y, lab->data, (size_t)n);
	return SFP_OK;
}

static int load_fmnist(sfp_dataset *train, sfp_dataset *test, const sfp_cfg_data *cfg,
		       sfp_error *err)
{
	sfp_idx img = {0}, lab = {0};
	const char *dir = cfg->path[0] ? cfg->path : NULL;
	int rc = sfp_fmnist_load(dir, "train", &img, &lab, err);
	if (rc < 0)
		goto out;
	if ((rc = to_dataset(train, &img, &lab, cfg->train_limit, err)) < 0)
		goto out;
	snprintf(train->source, sizeof train->source, "%s", dir ? dir : SFP_FMNIST_DIR);
	sfp_idx_release(&img);
	sfp_idx_release(&lab);
	if ((rc = sfp_fmnist_load(dir, "t10k", &img, &lab, err)) < 0)
		goto out;
	if ((rc = to_dataset(test, &img, &lab, cfg->test_limit, err)) < 0)
		goto out;
	snprintf(test->source, sizeof test->source, "%s", train->source);
out:
	sfp_idx_release(&img);
	sfp_idx_release(&lab);
	return rc;
}

/* Standardise both sets by the training set's mean and standard deviation:
 * per channel for images of several channels, else over all values. */
static void normalize(sfp_dataset *train, sfp_dataset *test)
{
	const int C = train->ndim == 3 ? train->shape.c : 1;
	const size_t per = sfp_shape_numel(train->shape), plane = per / (size_t)C;
	for (int c = 0; c < C; c++) {
		double s = 0.0, s2 = 0.0;
		for (int i = 0; i < train->n; i++) {
			const float *p = train->x + (size_t)i * per + (size_t)c * plane;
			for (size_t k = 0; k < plane; k++) {
				s += p[k];
				s2 += (double)p[k] * p[k];
			}
		}
		double n = (double)train->n * (double)plane;
		double mean = s / n, var = s2 / n - mean * mean;
		float m = (float)mean, inv = (float)(1.0 / sqrt(var > 1e-12 ? var : 1e-12));
		sfp_dataset *sets[2] = {train, test};
		for (int j = 0; j < 2; j++)
			for (int i = 0; i < sets[j]->n; i++) {
				float *p = sets[j]->x + (size_t)i * per + (size_t)c * plane;
				for (size_t k = 0; k < plane; k++)
					p[k] = (p[k] - m) * inv;
			}
	}
}

int sfp_dataset_load(sfp_dataset *train, sfp_dataset *test, const sfp_cfg_data *cfg,
		     sfp_error *err)
{
	memset(train, 0, sizeof *train);
	memset(test, 0, sizeof *test);
	int rc;
	switch (cfg->dataset) {
	case SFP_DATASET_FASHION_MNIST:
		rc = load_fmnist(train, test, cfg, err);
		break;
	case SFP_DATASET_NPY:
		rc = sfp_data_load_npy(train, test, cfg, err);
		break;
	case SFP_DATASET_IDX:
		rc = sfp_data_load_idx(train, test, cfg, err);
		break;
	case SFP_DATASET_CIFAR10:
		rc = sfp_data_load_cifar10(train, test, cfg, err);
		break;
	case SFP_DATASET_TOKENS:
		rc = sfp_error_set(err, SFP_EUNSUPPORTED,
				   "data.dataset tokens holds no samples and labels (sfp_tokens_load)");
		break;
	default:
		rc = sfp_error_set(err, SFP_EINVAL, "data.dataset: unknown dataset %d", cfg->dataset);
	}
	if (rc < 0)
		goto out;
	if (cfg->train_limit > 0 && cfg->train_limit < train->n)
		train->n = cfg->train_limit;
	if (cfg->test_limit > 0 && cfg->test_limit < test->n)
		test->n = cfg->test_limit;
	for (int i = 0; i < cfg->n_augment; i++)
		train->augment |= 1 << cfg->augment[i];
	if (train->augment && (train->ndim < 2 || train->shape.w < 2)) {
		rc = sfp_error_set(err, SFP_EINVAL,
				   "data.augment needs image samples ([C, H, W] or [H, W]); '%s' has "
				   "%d values per sample",
				   train->source, (int)sfp_shape_numel(train->shape));
		goto out;
	}
	if (cfg->normalize)
		normalize(train, test);
out:
	if (rc < 0) {
		sfp_dataset_release(train);
		sfp_dataset_release(test);
	}
	return rc;
}

void sfp_dataset_order(uint32_t *perm, int n, uint64_t seed, int64_t epoch, int shuffle)
{
	for (int i = 0; i < n; i++)
		perm[i] = (uint32_t)i;
	if (!shuffle)
		return;
	sfp_rng r;
	sfp_rng_seed(&r, seed ^ (0x9e3779b97f4a7c15ull * (uint64_t)(epoch + 1)));
	for (int i = n - 1; i > 0; i--) {
		uint32_t j = (uint32_t)sfp_rng_below(&r, (uint64_t)i + 1);
		uint32_t t = perm[i];
		perm[i] = perm[j];
		perm[j] = t;
	}
}

int sfp_dataset_shard(sfp_dataset *d, int rank, int nranks, sfp_error *err)
{
	if (nranks < 1 || rank < 0 || rank >= nranks)
		return sfp_error_set(err, SFP_EINVAL, "rank %d is not in 0..%d", rank, nranks - 1);
	if (d->n < nranks)
		return sfp_error_set(err, SFP_EINVAL, "%d samples cannot be shared by %d ranks", d->n,
				     nranks);
	const size_t per = sfp_shape_numel(d->shape);
	int k = 0;
	for (int i = rank; i < d->n; i += nranks, k++) {
		memmove(d->x + (size_t)k * per, d->x + (size_t)i * per, per * sizeof(float));
		d->y[k] = d->y[i];
	}
	d->n = k;
	return SFP_OK;
}

void sfp_dataset_gather(const sfp_dataset *d, const uint32_t *idx, int B, float *x, uint8_t *y)
{
	const size_t per = sfp_shape_numel(d->shape);
	for (int s = 0; s < B; s++) {
		memcpy(x + (size_t)s * per, d->x + (size_t)idx[s] * per, per * sizeof(float));
		y[s] = d->y[idx[s]];
	}
}

int sfp_dataset_check_classes(sfp_dataset *train, sfp_dataset *test, int classes,
			      sfp_error *err)
{
	sfp_dataset *sets[2] = {train, test};
	for (int j = 0; j < 2; j++)
		for (int i = 0; i < sets[j]->n; i++)
			if (sets[j]->y[i] >= classes)
				return sfp_error_set(err, SFP_EINVAL,
						     "'%s': label %d at index %d is outside [0, %d) "
						     "(the model's classes)",
						     sets[j]->labels[0] ? sets[j]->labels : sets[j]->source,
						     sets[j]->y[i], sets[j]->label_base + i, classes);
	train->classes = test->classes = classes;
	return SFP_OK;
}

int sfp_dataset_check_input(const sfp_dataset *d, const int *input, int ndim, sfp_error *err)
{
	int a = 0, b = 0;
	while (a < d->ndim - 1 && d->dims[a] == 1)
		a++;
	while (b < ndim - 1 && input[b] == 1)
		b++;
	int same = d->ndim - a == ndim - b;
	for (int i = 0; same && i < ndim - b; i++)
		same = d->dims[a + i] == input[b + i];
	if (same)
		return SFP_OK;
	char have[64], want[64];
	size_t l = 0, m = 0;
	for (int i = 0; i < d->ndim; i++)
		l += (size_t)snprintf(have + l, sizeof have - l, "%s%d", i ? ", " : "", d->dims[i]);
	for (int i = 0; i < ndim; i++)
		m += (size_t)snprintf(want + m, sizeof want - m, "%s%d", i ? ", " : "", input[i]);
	return sfp_error_set(err, SFP_EINVAL,
			     "'%s': samples have shape (%s%s) but model.input is [%s]", d->source,
			     have, d->ndim == 1 ? "," : "", want);
}

/* Per-sample random stream of the augmentations. */
static void augment_rng(sfp_rng *r, uint64_t seed, int64_t epoch, uint32_t sample)
{
	sfp_rng_seed(r, seed ^ 0x41554755u ^ (0x9e3779b97f4a7c15ull * (uint64_t)(epoch + 1)) ^
			       (0xc2b2ae3d27d4eb4full * ((uint64_t)sample + 1)));
}

#define CROP_PAD 4

int sfp_dataset_augment(const sfp_dataset *d, const uint32_t *idx, int B, uint64_t seed,
			int64_t epoch, float *x, sfp_error *err)
{
	if (!d->augment)
		return SFP_OK;
	const int C = d->shape.c, H = d->shape.h, W = d->shape.w;
	if (d->ndim < 2 || W < 2)
		return sfp_error_set(err, SFP_EINVAL, "data.augment needs image samples; '%s' has none",
				     d->source);
	const size_t per = sfp_shape_numel(d->shape);
	float *tmp = malloc(per * sizeof *tmp);
	if (!tmp)
		return sfp_error_set(err, SFP_ENOMEM, "out of memory");
	const int crop = d->augment & (1 << SFP_AUGMENT_CROP);
	const int flip = d->augment & (1 << SFP_AUGMENT_FLIP);
	for (int s = 0; s < B; s++) {
		sfp_rng r;
		augment_rng(&r, seed, epoch, idx[s]);
		/* both draws always, so a sample's crop does not depend on flip */
		int dy = (int)sfp_rng_below(&r, 2 * CROP_PAD + 1) - CROP_PAD;
		int dx = (int)sfp_rng_below(&r, 2 * CROP_PAD + 1) - CROP_PAD;
		int mirror = (int)(sfp_rng_u64(&r) >> 63);
		if (!crop)
			dy = dx = 0;
		if (!flip)
			mirror = 0;
		if (!dy && !dx && !mirror)
			continue;
		float *p = x + (size_t)s * per;
		memcpy(tmp, p, per * sizeof *tmp);
		/* out(i, j) = crop(i, mirror ? W-1-j : j); crop(i, j) = in(i+dy, j+dx), 0 outside */
		for (int c = 0; c < C; c++)
			for (int i = 0; i < H; i++)
				for (int j = 0; j < W; j++) {
					int si = i + dy, sj = (mirror ? W - 1 - j : j) + dx;
					p[((size_t)c * H + i) * W + j] =
						si >= 0 && si < H && sj >= 0 && sj < W
							? tmp[((size_t)c * H + si) * W + sj]
							: 0.0f;
				}
	}
	free(tmp);
	return SFP_OK;
}
