/*
 * sources.c -- users' own classification data: .npy arrays, IDX files and
 * CIFAR-10's binary batches, turned into sfp_dataset tensors with checked
 * labels. Every check names the file and what was expected; nothing is
 * clamped, so a bad file is never trained on.
 */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "data/data_internal.h"
#include "sfp/npy.h"

/* Largest per-sample dimension and sample count accepted (int arithmetic
 * in the trainer). */
#define MAX_DIM (1 << 24)
#define MAX_SAMPLE ((size_t)1 << 28)

static const char *const dtype_names[] = {"float32", "float64", "uint8", "int32", "int64"};

/* "(3, 32, 32)" */
static void dims_text(char *buf, size_t cap, const uint64_t *dims, unsigned ndim)
{
	size_t l = (size_t)snprintf(buf, cap, "(");
	for (unsigned i = 0; i < ndim && l < cap; i++)
		l += (size_t)snprintf(buf + l, cap - l, "%s%llu", i ? ", " : "",
				      (unsigned long long)dims[i]);
	if (l < cap)
		snprintf(buf + l, cap - l, "%s)", ndim == 1 ? "," : "");
}

/* A set of n samples of per-sample dims[1..ndim) from `file`: shape,
 * allocation. dims[0] is n. */
static int alloc_set(sfp_dataset *d, const char *file, const uint64_t *dims, unsigned ndim,
		     sfp_error *err)
{
	char txt[160];
	dims_text(txt, sizeof txt, dims, ndim);
	if (ndim < 2 || ndim > 4)
		return sfp_error_set(err, SFP_EINVAL,
				     "'%s' has shape %s; expected [N, *model.input] (1 to 3 dims "
				     "per sample)",
				     file, txt);
	size_t per = 1;
	for (unsigned i = 1; i < ndim; i++) {
		if (dims[i] < 1 || dims[i] > MAX_DIM || (per *= dims[i]) > MAX_SAMPLE)
			return sfp_error_set(err, SFP_EINVAL, "'%s': shape %s is too large or empty",
					     file, txt);
	}
	if (dims[0] < 1 || dims[0] > (uint64_t)INT32_MAX / 2)
		return sfp_error_set(err, SFP_EINVAL, "'%s' has shape %s: %llu samples", file, txt,
				     (unsigned long long)dims[0]);
	d->n = (int)dims[0];
	d->ndim = (int)ndim - 1;
	for (int i = 0; i < d->ndim; i++)
		d->dims[i] = (int)dims[i + 1];
	d->shape = d->ndim == 1 ? (sfp_shape){d->dims[0], 1, 1}
		   : d->ndim == 2 ? (sfp_shape){1, d->dims[0], d->dims[1]}
				  : (sfp_shape){d->dims[0], d->dims[1], d->dims[2]};
	snprintf(d->source, sizeof d->source, "%s", file);
	d->x = malloc((size_t)d->n * per * sizeof(float));
	d->y = malloc((size_t)d->n);
	if (!d->x || !d->y)
		return sfp_error_set(err, SFP_ENOMEM, "out of memory for '%s' (%d samples)", file,
				     d->n);
	return SFP_OK;
}

/* Labels: integers in [0, classes) (classes 0: below 256), into d->y. */
static int take_labels(sfp_dataset *d, const char *file, const void *data, int dtype,
		       uint64_t count, int classes, sfp_error *err)
{
	if (count != (uint64_t)d->n)
		return sfp_error_set(err, SFP_EINVAL, "'%s' has %llu labels for %d samples in '%s'",
				     file, (unsigned long long)count, d->n, d->source);
	const int64_t hi = classes ? classes : 256;
	snprintf(d->labels, sizeof d->labels, "%s", file);
	for (int i = 0; i < d->n; i++) {
		const unsigned char *p = (const unsigned char *)data;
		int64_t v = dtype == SFP_NPY_U8    ? p[i]
			    : dtype == SFP_NPY_I32 ? (int32_t)sfp_load_le32(p + 4 * (size_t)i)
						   : (int64_t)sfp_load_le64(p + 8 * (size_t)i);
		if (v < 0 || v >= hi) {
			if (classes)
				return sfp_error_set(err, SFP_ECORRUPT,
						     "'%s': label %lld at index %d is outside [0, %d) "
						     "(data.classes)",
						     file, (long long)v, i, classes);
			return sfp_error_set(err, SFP_ECORRUPT,
					     "'%s': label %lld at index %d is outside [0, 256) (labels "
					     "are class indices; at most 256 classes)",
					     file, (long long)v, i);
		}
		d->y[i] = (uint8_t)v;
	}
	return SFP_OK;
}

/* classes = data.classes, or max label + 1 over both sets */
static void set_classes(sfp_dataset *train, sfp_dataset *test, int classes)
{
	if (!classes) {
		for (int i = 0; i < train->n; i++)
			classes = train->y[i] + 1 > classes ? train->y[i] + 1 : classes;
		for (int i = 0; i < test->n; i++)
			classes = test->y[i] + 1 > classes ? test->y[i] + 1 : classes;
	}
	train->classes = test->classes = classes;
}

int sfp_data_val_count(int64_t n, float fraction, const char *file, int64_t *n_val,
		       sfp_error *err)
{
	if (!(fraction > 0.0f))
		return sfp_error_set(err, SFP_EINVAL,
				     "no held-out data: give data.test.x or a data.val_fraction > 0");
	int64_t v = (int64_t)floor((double)n * (double)fraction);
	if (v < 1)
		v = 1;
	if (v >= n)
		return sfp_error_set(err, SFP_EINVAL,
				     "'%s' holds %lld items; data.val_fraction %g leaves none to "
				     "train on",
				     file, (long long)n, (double)fraction);
	*n_val = v;
	return SFP_OK;
}

/* Move the last val_fraction of train into test. */
static int split_tail(sfp_dataset *train, sfp_dataset *test, float fraction, sfp_error *err)
{
	int64_t nv;
	SFP_TRY(sfp_data_val_count(train->n, fraction, train->source, &nv, err));
	const size_t per = sfp_shape_numel(train->shape);
	const int nt = train->n - (int)nv;
	*test = *train;
	test->n = (int)nv;
	test->x = malloc((size_t)nv * per * sizeof(float));
	test->y = malloc((size_t)nv);
	if (!test->x || !test->y)
		return sfp_error_set(err, SFP_ENOMEM, "out of memory");
	memcpy(test->x, train->x + (size_t)nt * per, (size_t)nv * per * sizeof(float));
	memcpy(test->y, train->y + nt, (size_t)nv);
	test->label_base = nt;
	train->n = nt;
	return SFP_OK;
}

/* ---- npy ------------------------------------------------------------------ */
static int npy_samples(sfp_dataset *d, const char *file, sfp_error *err)
{
	sfp_npy_raw a;
	int rc = sfp_npy_read_raw(file, &a, err);
	if (rc < 0)
		return rc;
	if (a.dtype != SFP_NPY_F32 && a.dtype != SFP_NPY_F64 && a.dtype != SFP_NPY_U8) {
		rc = sfp_error_set(err, SFP_EUNSUPPORTED,
				   "'%s': samples of dtype %s are not supported (float32, float64 or "
				   "uint8)",
				   file, dtype_names[a.dtype]);
		goto out;
	}
	if ((rc = alloc_set(d, file, a.shape, a.ndim, err)) < 0)
		goto out;
	const unsigned char *p = a.data;
	for (uint64_t i = 0; i < a.count; i++) {
		float v;
		if (a.dtype == SFP_NPY_U8) {
			v = (float)p[i] / 255.0f;
		} else {
			uint32_t u = sfp_load_le32(p + 4 * i);
			double dv;
			if (a.dtype == SFP_NPY_F32) {
				memcpy(&v, &u, 4);
				dv = v;
			} else {
				uint64_t u8 = sfp_load_le64(p + 8 * i);
				memcpy(&dv, &u8, 8);
				v = (float)dv;
			}
			if (!isfinite(v)) {
				rc = sfp_error_set(err, SFP_ECORRUPT,
						   "'%s': value %g at index %llu is not a finite float32",
						   file, dv, (unsigned long long)i);
				goto out;
			}
		}
		d->x[i] = v;
	}
out:
	sfp_npy_raw_release(&a);
	return rc;
}

static int npy_labels(sfp_dataset *d, const char *file, int classes, sfp_error *err)
{
	sfp_npy_raw a;
	int rc = sfp_npy_read_raw(file, &a, err);
	if (rc < 0)
		return rc;
	if (a.dtype != SFP_NPY_U8 && a.dtype != SFP_NPY_I32 && a.dtype != SFP_NPY_I64)
		rc = sfp_error_set(err, SFP_EUNSUPPORTED,
				   "'%s': labels of dtype %s are not supported (uint8, int32 or int64 "
				   "class indices)",
				   file, dtype_names[a.dtype]);
	else if (a.ndim != 1)
		rc = sfp_error_set(err, SFP_EINVAL, "'%s' has %u dims; labels are [N]", file, a.ndim);
	else
		rc = take_labels(d, file, a.data, a.dtype, a.count, classes, err);
	sfp_npy_raw_release(&a);
	return rc;
}

/* Both of x, y named, or neither ("" for no test set). */
static int need_pair(const char *x, const char *y, const char *which, sfp_error *err)
{
	if (!x[0] && !y[0] && strcmp(which, "test"))
		return sfp_error_set(err, SFP_EINVAL, "data.train.x and data.train.y are required");
	if (!x[0] != !y[0])
		return sfp_error_set(err, SFP_EINVAL, "data.%s.%s is given without data.%s.%s",
				     which, x[0] ? "x" : "y", which, x[0] ? "y" : "x");
	return SFP_OK;
}

/* The two readers differ in how one file pair is read. */
typedef int (*pair_reader)(sfp_dataset *d, const char *x, const char *y, int classes,
			   sfp_error *err);

static int npy_pair(sfp_dataset *d, const char *x, const char *y, int classes, sfp_error *err)
{
	SFP_TRY(npy_samples(d, x, err));
	return npy_labels(d, y, classes, err);
}

static int idx_pair(sfp_dataset *d, const char *x, const char *y, int classes, sfp_error *err)
{
	sfp_idx img = {0}, lab = {0};
	uint64_t dims[SFP_IDX_MAX_DIMS];
	int rc = sfp_idx_read(x, &img, err);
	if (rc < 0)
		goto out;
	for (unsigned i = 0; i < img.ndim; i++)
		dims[i] = img.dims[i];
	if ((rc = alloc_set(d, x, dims, img.ndim, err)) < 0)
		goto out;
	for (uint64_t i = 0; i < img.count; i++)
		d->x[i] = (float)img.data[i] / 255.0f;
	if ((rc = sfp_idx_read(y, &lab, err)) < 0)
		goto out;
	if (lab.ndim != 1)
		rc = sfp_error_set(err, SFP_EINVAL, "'%s' has %u dims; labels are [N]", y, lab.ndim);
	else
		rc = take_labels(d, y, lab.data, SFP_NPY_U8, lab.count, classes, err);
out:
	sfp_idx_release(&img);
	sfp_idx_release(&lab);
	return rc;
}

static int load_pairs(sfp_dataset *train, sfp_dataset *test, const sfp_cfg_data *cfg,
		      pair_reader read, sfp_error *err)
{
	SFP_TRY(need_pair(cfg->train_x, cfg->train_y, "train", err));
	SFP_TRY(need_pair(cfg->test_x, cfg->test_y, "test", err));
	SFP_TRY(read(train, cfg->train_x, cfg->train_y, cfg->classes, err));
	if (cfg->test_x[0]) {
		SFP_TRY(read(test, cfg->test_x, cfg->test_y, cfg->classes, err));
		if (test->ndim != train->ndim ||
		    memcmp(test->dims, train->dims, sizeof test->dims) != 0)
			return sfp_error_set(err, SFP_EINVAL,
					     "'%s': samples are not the shape of those in '%s'",
					     test->source, train->source);
	} else {
		SFP_TRY(split_tail(train, test, cfg->val_fraction, err));
	}
	set_classes(train, test, cfg->classes);
	return SFP_OK;
}

int sfp_data_load_npy(sfp_dataset *train, sfp_dataset *test, const sfp_cfg_data *cfg,
		      sfp_error *err)
{
	return load_pairs(train, test, cfg, npy_pair, err);
}

int sfp_data_load_idx(sfp_dataset *train, sfp_dataset *test, const sfp_cfg_data *cfg,
		      sfp_error *err)
{
	return load_pairs(train, test, cfg, idx_pair, err);
}

/* ---- CIFAR-10 --------------------------------------------------------------- */
int sfp_cifar_parse(const void *buf, size_t len, const char *name, float *x, uint8_t *y,
		    size_t cap, size_t *n, sfp_error *err)
{
	const unsigned char *b = buf;
	*n = 0;
	if (len == 0 || len % SFP_CIFAR_RECORD)
		return sfp_error_set(err, SFP_ETRUNC,
				     "'%s': %zu bytes is not a whole number of %d-byte records (a "
				     "label byte and 3072 pixels)",
				     name, len, SFP_CIFAR_RECORD);
	const size_t count = sfp_cifar_count(len);
	if (count > cap)
		return sfp_error_set(err, SFP_ENOSPC, "'%s': %zu records, room for %zu", name,
				     count, cap);
	for (size_t r = 0; r < count; r++) {
		const unsigned char *rec = b + r * SFP_CIFAR_RECORD;
		if (rec[0] > 9)
			return sfp_error_set(err, SFP_ECORRUPT,
					     "'%s': record %zu has label %u (expected 0..9)", name, r,
					     rec[0]);
		y[r] = rec[0];
		for (size_t i = 0; i < SFP_CIFAR_PIXELS; i++)
			x[r * SFP_CIFAR_PIXELS + i] = (float)rec[1 + i] / 255.0f;
	}
	*n = count;
	return SFP_OK;
}

/* Read the batch files `names` from `dir` into d. */
static int cifar_files(sfp_dataset *d, const char *dir, const char *const *names, int nfiles,
		       sfp_error *err)
{
	char path[SFP_CFG_PATH + 32];
	void *buf[6] = {0};
	size_t len[6], total = 0;
	int rc = SFP_OK;
	for (int i = 0; i < nfiles; i++) {
		snprintf(path, sizeof path, "%s/%s", dir, names[i]);
		if ((rc = sfp_file_read(path, &buf[i], &len[i], err)) < 0)
			goto out;
		total += sfp_cifar_count(len[i]);
	}
	uint64_t dims[4] = {total ? total : 1, 3, 32, 32};
	if ((rc = alloc_set(d, dir, dims, 4, err)) < 0)
		goto out;
	size_t at = 0;
	for (int i = 0; i < nfiles; i++) {
		size_t got;
		snprintf(path, sizeof path, "%s/%s", dir, names[i]);
		if ((rc = sfp_cifar_parse(buf[i], len[i], path, d->x + at * SFP_CIFAR_PIXELS,
					  d->y + at, total - at, &got, err)) < 0)
			goto out;
		at += got;
	}
	d->classes = 10;
out:
	for (int i = 0; i < nfiles; i++)
		free(buf[i]);
	return rc;
}

int sfp_data_load_cifar10(sfp_dataset *train, sfp_dataset *test, const sfp_cfg_data *cfg,
			  sfp_error *err)
{
	static const char *const tr[] = {"data_batch_1.bin", "data_batch_2.bin",
					 "data_batch_3.bin", "data_batch_4.bin",
					 "data_batch_5.bin"};
	static const char *const te[] = {"test_batch.bin"};
	if (cfg->classes && cfg->classes != 10)
		return sfp_error_set(err, SFP_EINVAL, "data.classes is %d; cifar10 has 10 classes",
				     cfg->classes);
	if (!cfg->path[0] || !strcmp(cfg->path, SFP_FMNIST_DIR))
		return sfp_error_set(err, SFP_EINVAL,
				     "data.path: cifar10 needs the folder of data_batch_1.bin .. "
				     "data_batch_5.bin and test_batch.bin (it is '%s')",
				     cfg->path);
	SFP_TRY(cifar_files(train, cfg->path, tr, 5, err));
	return cifar_files(test, cfg->path, te, 1, err);
}
