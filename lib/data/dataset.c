/*
 * dataset.c -- Fashion-MNIST as float tensors for training: scaled to [0, 1],
 * optionally standardised by the training set's statistics; seeded epoch
 * orders that depend only on (seed, epoch), so a resumed run sees the same
 * batches as an uninterrupted one.
 */
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "sfp/data.h"

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

int sfp_dataset_load(sfp_dataset *train, sfp_dataset *test, const sfp_cfg_data *cfg,
		     sfp_error *err)
{
	memset(train, 0, sizeof *train);
	memset(test, 0, sizeof *test);
	if (cfg->dataset != SFP_DATASET_FASHION_MNIST)
		return sfp_error_set(err, SFP_EINVAL, "data.dataset: unknown dataset %d",
				     cfg->dataset);
	sfp_idx img = {0}, lab = {0};
	const char *dir = cfg->path[0] ? cfg->path : NULL;
	int rc = sfp_fmnist_load(dir, "train", &img, &lab, err);
	if (rc < 0)
		goto out;
	if ((rc = to_dataset(train, &img, &lab, cfg->train_limit, err)) < 0)
		goto out;
	sfp_idx_release(&img);
	sfp_idx_release(&lab);
	if ((rc = sfp_fmnist_load(dir, "t10k", &img, &lab, err)) < 0)
		goto out;
	if ((rc = to_dataset(test, &img, &lab, cfg->test_limit, err)) < 0)
		goto out;
	if (cfg->normalize) {
		/* statistics of the (possibly limited) training set, applied to both */
		size_t n = (size_t)train->n * sfp_shape_numel(train->shape);
		double s = 0.0, s2 = 0.0;
		for (size_t i = 0; i < n; i++) {
			s += train->x[i];
			s2 += (double)train->x[i] * train->x[i];
		}
		double mean = s / (double)n, var = s2 / (double)n - mean * mean;
		float m = (float)mean, inv = (float)(1.0 / sqrt(var > 1e-12 ? var : 1e-12));
		for (size_t i = 0; i < n; i++)
			train->x[i] = (train->x[i] - m) * inv;
		size_t nt = (size_t)test->n * sfp_shape_numel(test->shape);
		for (size_t i = 0; i < nt; i++)
			test->x[i] = (test->x[i] - m) * inv;
	}
out:
	sfp_idx_release(&img);
	sfp_idx_release(&lab);
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
