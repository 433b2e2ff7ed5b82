/*
 * test_data_sources.c -- lib/data: the users' sources (npy, idx, cifar10,
 * tokens) from generated files: round trips, every bad input with its
 * message, augmentation, token windows and held-out splits.
 */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <zlib.h>

#include "sfp/data.h"
#include "tests/util/testutil.h"

static char *dir;

static const char *path_of(const char *name)
{
	static char p[2][4096];
	static int k;
	k ^= 1;
	snprintf(p[k], sizeof p[k], "%s/%s", dir, name);
	return p[k];
}

static void write_raw(const char *name, const void *buf, size_t n)
{
	FILE *f = fopen(path_of(name), "wb");
	CU_ASSERT_PTR_NOT_NULL_FATAL(f);
	if (n)
		CU_ASSERT_EQUAL(fwrite(buf, 1, n, f), n);
	fclose(f);
}

/* A .npy file of `descr` and shape, data n bytes; cut bytes off the end. */
static void write_npy(const char *name, const char *descr, const int *shape, int ndim,
		      const void *data, size_t n, size_t cut)
{
	char h[256], dims[128] = "";
	size_t l = 0;
	for (int i = 0; i < ndim; i++)
		l += (size_t)snprintf(dims + l, sizeof dims - l, "%d,", shape[i]);
	int hl = snprintf(h, sizeof h, "{'descr': '%s', 'fortran_order': False, 'shape': (%s), }",
			  descr, dims);
	int pad = (int)((10 + hl + 1 + 63) / 64 * 64 - 10);
	memset(h + hl, ' ', (size_t)(pad - hl - 1));
	h[pad - 1] = '\n';
	unsigned char *b = malloc(10 + (size_t)pad + n);
	memcpy(b, "\x93NUMPY\x01\x00", 8);
	b[8] = (unsigned char)(pad & 255);
	b[9] = (unsigned char)(pad >> 8);
	memcpy(b + 10, h, (size_t)pad);
	memcpy(b + 10 + pad, data, n);
	write_raw(name, b, 10 + (size_t)pad + n - cut);
	free(b);
}

static void npy_cfg(sfp_cfg_data *c, const char *tx, const char *ty, const char *vx,
		    const char *vy)
{
	sfp_config cfg;
	sfp_config_defaults(&cfg);
	*c = cfg.data;
	c->dataset = SFP_DATASET_NPY;
	c->normalize = 0;
	snprintf(c->train_x, sizeof c->train_x, "%s", tx ? path_of(tx) : "");
	snprintf(c->train_y, sizeof c->train_y, "%s", ty ? path_of(ty) : "");
	snprintf(c->test_x, sizeof c->test_x, "%s", vx ? path_of(vx) : "");
	snprintf(c->test_y, sizeof c->test_y, "%s", vy ? path_of(vy) : "");
}

/* Load must fail with `code` and a message holding each of the strings. */
static void expect_fail(const sfp_cfg_data *c, int code, const char *m1, const char *m2)
{
	sfp_dataset tr, te;
	sfp_error e = {0};
	int rc = sfp_dataset_load(&tr, &te, c, &e);
	CU_ASSERT_EQUAL(rc, code);
	if (m1 && !strstr(e.msg, m1))
		fprintf(stderr, "\n  message '%s' lacks '%s'\n", e.msg, m1);
	CU_ASSERT(!m1 || strstr(e.msg, m1) != NULL);
	CU_ASSERT(!m2 || strstr(e.msg, m2) != NULL);
	CU_ASSERT_PTR_NULL(tr.x);
	CU_ASSERT_PTR_NULL(te.x);
}

static void test_npy_round_trip(void)
{
	float x[10 * 6];
	int64_t y[10];
	for (int i = 0; i < 60; i++)
		x[i] = (float)i * 0.25f - 3.0f;
	for (int i = 0; i < 10; i++)
		y[i] = i % 4;
	const int xs[3] = {10, 2, 3}, ys[1] = {10};
	write_npy("x.npy", "<f4", xs, 3, x, sizeof x, 0);
	write_npy("y.npy", "<i8", ys, 1, y, sizeof y, 0);
	uint8_t xb[4 * 6];
	int32_t yb[4] = {0, 1, 2, 3};
	for (int i = 0; i < 24; i++)
		xb[i] = (uint8_t)(i * 10);
	const int xt[3] = {4, 2, 3}, yt[1] = {4};
	write_npy("xt.npy", "|u1", xt, 3, xb, sizeof xb, 0);
	write_npy("yt.npy", "<i4", yt, 1, yb, sizeof yb, 0);

	sfp_cfg_data c;
	npy_cfg(&c, "x.npy", "y.npy", "xt.npy", "yt.npy");
	sfp_dataset tr, te;
	sfp_error e;
	CU_ASSERT_EQUAL_FATAL(sfp_dataset_load(&tr, &te, &c, &e), SFP_OK);
	CU_ASSERT_EQUAL(tr.n, 10);
	CU_ASSERT_EQUAL(te.n, 4);
	CU_ASSERT_EQUAL(tr.classes, 4);
	CU_ASSERT(tr.ndim == 2 && tr.dims[0] == 2 && tr.dims[1] == 3);
	CU_ASSERT(tr.shape.c == 1 && tr.shape.h == 2 && tr.shape.w == 3);
	CU_ASSERT(memcmp(tr.x, x, sizeof x) == 0);
	CU_ASSERT_EQUAL(tr.y[9], 1);
	CU_ASSERT_DOUBLE_EQUAL(te.x[5], 50.0 / 255.0, 1e-7);
	CU_ASSERT_EQUAL(te.y[3], 3);
	CU_ASSERT(strstr(tr.source, "x.npy") != NULL);
	/* shards split the same way as Fashion-MNIST's */
	CU_ASSERT_EQUAL(sfp_dataset_shard(&tr, 1, 3, &e), SFP_OK);
	CU_ASSERT_EQUAL(tr.n, 3);
	CU_ASSERT_EQUAL(tr.x[0], x[6]);
	CU_ASSERT_EQUAL(tr.y[2], y[7]);
	sfp_dataset_release(&tr);
	sfp_dataset_release(&te);

	/* no test files: the last val_fraction is held out, in order */
	npy_cfg(&c, "x.npy", "y.npy", NULL, NULL);
	c.val_fraction = 0.3f;
	c.classes = 6;
	CU_ASSERT_EQUAL_FATAL(sfp_dataset_load(&tr, &te, &c, &e), SFP_OK);
	CU_ASSERT_EQUAL(tr.n, 7);
	CU_ASSERT_EQUAL(te.n, 3);
	CU_ASSERT_EQUAL(tr.classes, 6);
	CU_ASSERT_EQUAL(te.x[0], x[7 * 6]);
	CU_ASSERT_EQUAL(te.y[2], y[9]);
	/* against the model's classes: the label file and its index */
	CU_ASSERT_EQUAL(sfp_dataset_check_classes(&tr, &te, 5, &e), SFP_OK);
	CU_ASSERT_EQUAL(tr.classes, 5);
	CU_ASSERT_EQUAL(sfp_dataset_check_classes(&tr, &te, 3, &e), SFP_EINVAL);
	CU_ASSERT(strstr(e.msg, "y.npy': label 3 at index 3 is outside [0, 3)") != NULL);
	tr.n = 3;
	CU_ASSERT_EQUAL(sfp_dataset_check_classes(&tr, &te, 3, &e), SFP_EINVAL);
	CU_ASSERT(strstr(e.msg, "label 3 at index 7") != NULL); /* held out: index in the file */
	sfp_dataset_release(&tr);
	sfp_dataset_release(&te);

	/* normalisation by the training set's statistics (one channel: global) */
	c.normalize = 1;
	CU_ASSERT_EQUAL_FATAL(sfp_dataset_load(&tr, &te, &c, &e), SFP_OK);
	double s = 0, s2 = 0;
	for (int i = 0; i < tr.n * 6; i++) {
		s += tr.x[i];
		s2 += (double)tr.x[i] * tr.x[i];
	}
	CU_ASSERT_DOUBLE_EQUAL(s / 42, 0.0, 1e-5);
	CU_ASSERT_DOUBLE_EQUAL(s2 / 42, 1.0, 1e-4);
	sfp_dataset_release(&tr);
	sfp_dataset_release(&te);

	/* the samples' shape against model.input */
	npy_cfg(&c, "x.npy", "y.npy", NULL, NULL);
	CU_ASSERT_EQUAL_FATAL(sfp_dataset_load(&tr, &te, &c, &e), SFP_OK);
	const int in1[3] = {1, 2, 3}, in2[2] = {2, 3}, in3[1] = {6};
	CU_ASSERT_EQUAL(sfp_dataset_check_input(&tr, in1, 3, &e), SFP_OK);
	CU_ASSERT_EQUAL(sfp_dataset_check_input(&tr, in2, 2, &e), SFP_OK);
	CU_ASSERT_EQUAL(sfp_dataset_check_input(&tr, in3, 1, &e), SFP_EINVAL);
	CU_ASSERT(strstr(e.msg, "x.npy") && strstr(e.msg, "(2, 3)") && strstr(e.msg, "[6]"));
	sfp_dataset_release(&tr);
	sfp_dataset_release(&te);
}

static void test_npy_rejects(void)
{
	float x[4 * 3] = {0};
	uint8_t y[4] = {0, 1, 2, 1};
	const int xs[2] = {4, 3}, ys[1] = {4}, ys3[1] = {3}, xs1[1] = {12}, ys2[2] = {4, 1};
	write_npy("gx.npy", "<f4", xs, 2, x, sizeof x, 0);
	write_npy("gy.npy", "|u1", ys, 1, y, sizeof y, 0);
	sfp_cfg_data c;

	int32_t xi[12] = {0};
	write_npy("bx.npy", "<i4", xs, 2, xi, sizeof xi, 0);
	npy_cfg(&c, "bx.npy", "gy.npy", NULL, NULL);
	expect_fail(&c, SFP_EUNSUPPORTED, "bx.npy", "int32");

	write_npy("bx.npy", "<f2", xs, 2, xi, 24, 0);
	expect_fail(&c, SFP_EUNSUPPORTED, "bx.npy", "'<f2' is not supported");

	write_npy("by.npy", "<f4", ys, 1, x, 16, 0);
	npy_cfg(&c, "gx.npy", "by.npy", NULL, NULL);
	expect_fail(&c, SFP_EUNSUPPORTED, "by.npy", "labels of dtype float32");

	write_npy("by.npy", "|u1", ys3, 1, y, 3, 0);
	expect_fail(&c, SFP_EINVAL, "has 3 labels for 4 samples", "gx.npy");

	write_npy("by.npy", "|u1", ys2, 2, y, 4, 0);
	expect_fail(&c, SFP_EINVAL, "by.npy", "labels are [N]");

	int64_t neg[4] = {0, 1, -1, 0};
	write_npy("by.npy", "<i8", ys, 1, neg, sizeof neg, 0);
	expect_fail(&c, SFP_ECORRUPT, "label -1 at index 2", "by.npy");

	int32_t big[4] = {0, 300, 1, 0};
	write_npy("by.npy", "<i4", ys, 1, big, sizeof big, 0);
	expect_fail(&c, SFP_ECORRUPT, "label 300 at index 1", "256");

	npy_cfg(&c, "gx.npy", "gy.npy", NULL, NULL);
	c.classes = 2;
	expect_fail(&c, SFP_ECORRUPT, "label 2 at index 2 is outside [0, 2)", "gy.npy");

	write_npy("bx.npy", "<f4", xs, 2, x, sizeof x, 5);
	npy_cfg(&c, "bx.npy", "gy.npy", NULL, NULL);
	expect_fail(&c, SFP_ETRUNC, "bx.npy", "needs 48 bytes");

	write_raw("bx.npy", "NUMPY not really", 16);
	expect_fail(&c, SFP_ECORRUPT, "bx.npy", "bad magic");

	write_npy("bx.npy", "<f4", xs1, 1, x, sizeof x, 0);
	expect_fail(&c, SFP_EINVAL, "bx.npy", "[N, *model.input]");

	float nan[12] = {0};
	nan[7] = NAN;
	write_npy("bx.npy", "<f4", xs, 2, nan, sizeof nan, 0);
	expect_fail(&c, SFP_ECORRUPT, "bx.npy", "index 7 is not a finite");

	npy_cfg(&c, "gx.npy", NULL, NULL, NULL);
	expect_fail(&c, SFP_EINVAL, "data.train.x is given without data.train.y", NULL);
	npy_cfg(&c, "gx.npy", "gy.npy", "gx.npy", NULL);
	expect_fail(&c, SFP_EINVAL, "data.test.x is given without data.test.y", NULL);
	npy_cfg(&c, "gx.npy", "gy.npy", "missing.npy", "gy.npy");
	expect_fail(&c, SFP_ENOENT, "missing.npy", NULL);
	npy_cfg(&c, "gx.npy", "gy.npy", NULL, NULL);
	c.val_fraction = 0;
	expect_fail(&c, SFP_EINVAL, "data.val_fraction", NULL);
	const int xs11[2] = {1, 3}, ys11[1] = {1};
	write_npy("ox.npy", "<f4", xs11, 2, x, 12, 0);
	write_npy("oy.npy", "|u1", ys11, 1, y, 1, 0);
	npy_cfg(&c, "ox.npy", "oy.npy", NULL, NULL);
	c.val_fraction = 0.5f;
	expect_fail(&c, SFP_EINVAL, "leaves none to train on", "ox.npy");

	npy_cfg(&c, "gx.npy", "gy.npy", NULL, NULL);
	c.n_augment = 1;
	c.augment[0] = SFP_AUGMENT_FLIP;
	write_npy("fx.npy", "<f4", xs1, 1, x, 4, 0);
	const int f1[2] = {4, 3};
	write_npy("fx.npy", "<f4", f1, 2, x, sizeof x, 0);
	/* (3,) samples are not images */
	expect_fail(&c, SFP_EINVAL, "data.augment needs image samples", "gx.npy");

	c.dataset = SFP_DATASET_TOKENS;
	expect_fail(&c, SFP_EUNSUPPORTED, "tokens", NULL);
}

static void write_idx(const char *name, const uint8_t *data, const int *dims, int ndim, int gz)
{
	size_t n = 1, hl = 4 + 4 * (size_t)ndim;
	for (int i = 0; i < ndim; i++)
		n *= (size_t)dims[i];
	unsigned char *b = malloc(hl + n);
	b[0] = b[1] = 0;
	b[2] = 8;
	b[3] = (unsigned char)ndim;
	for (int i = 0; i < ndim; i++) {
		b[4 + 4 * i] = (unsigned char)(dims[i] >> 24);
		b[5 + 4 * i] = (unsigned char)(dims[i] >> 16);
		b[6 + 4 * i] = (unsigned char)(dims[i] >> 8);
		b[7 + 4 * i] = (unsigned char)dims[i];
	}
	memcpy(b + hl, data, n);
	if (gz) {
		gzFile f = gzopen(path_of(name), "wb");
		CU_ASSERT_EQUAL(gzwrite(f, b, (unsigned)(hl + n)), (int)(hl + n));
		gzclose(f);
	} else {
		write_raw(name, b, hl + n);
	}
	free(b);
}

static void test_idx_source(void)
{
	uint8_t img[6 * 4 * 4], lab[6] = {3, 1, 4, 1, 5, 9};
	for (size_t i = 0; i < sizeof img; i++)
		img[i] = (uint8_t)(i * 3);
	const int di[3] = {6, 4, 4}, dl[1] = {6}, dl5[1] = {5};
	write_idx("i.idx.gz", img, di, 3, 1);
	write_idx("l.idx", lab, dl, 1, 0);
	sfp_cfg_data c;
	npy_cfg(&c, "i.idx.gz", "l.idx", NULL, NULL);
	c.dataset = SFP_DATASET_IDX;
	c.val_fraction = 0.5f;
	sfp_dataset tr, te;
	sfp_error e;
	CU_ASSERT_EQUAL_FATAL(sfp_dataset_load(&tr, &te, &c, &e), SFP_OK);
	CU_ASSERT_EQUAL(tr.n, 3);
	CU_ASSERT_EQUAL(te.n, 3);
	CU_ASSERT_EQUAL(tr.classes, 10);
	CU_ASSERT(tr.ndim == 2 && tr.shape.h == 4 && tr.shape.w == 4);
	CU_ASSERT_DOUBLE_EQUAL(te.x[1], img[3 * 16 + 1] / 255.0, 1e-7);
	CU_ASSERT_EQUAL(te.y[2], 9);
	sfp_dataset_release(&tr);
	sfp_dataset_release(&te);

	write_idx("l5.idx", lab, dl5, 1, 0);
	npy_cfg(&c, "i.idx.gz", "l5.idx", NULL, NULL);
	c.dataset = SFP_DATASET_IDX;
	expect_fail(&c, SFP_EINVAL, "has 5 labels for 6 samples", "l5.idx");
	npy_cfg(&c, "i.idx.gz", "l.idx", NULL, NULL);
	c.dataset = SFP_DATASET_IDX;
	c.classes = 5;
	expect_fail(&c, SFP_ECORRUPT, "label 5 at index 4", "l.idx");
	unsigned char bad[8] = {1, 2, 8, 1, 0, 0, 0, 0};
	write_raw("b.idx", bad, sizeof bad);
	npy_cfg(&c, "b.idx", "l.idx", NULL, NULL);
	c.dataset = SFP_DATASET_IDX;
	expect_fail(&c, SFP_ECORRUPT, "b.idx", "bad magic");
}

/* A CIFAR batch of n records: label r % 10 (or `bad` at record 1), pixel
 * value (r + c * 7 + i) & 255 in channel c. */
static void write_cifar(const char *name, int n, int bad, size_t cut)
{
	unsigned char *b = malloc((size_t)n * SFP_CIFAR_RECORD);
	for (int r = 0; r < n; r++) {
		unsigned char *rec = b + (size_t)r * SFP_CIFAR_RECORD;
		rec[0] = (unsigned char)(r == 1 && bad ? bad : r % 10);
		for (int c = 0; c < 3; c++)
			for (int i = 0; i < 1024; i++)
				rec[1 + c * 1024 + i] = (unsigned char)((r + c * 7 + i) & 255);
	}
	write_raw(name, b, (size_t)n * SFP_CIFAR_RECORD - cut);
	free(b);
}

static void cifar_dir(void)
{
	char names[6][32];
	for (int i = 0; i < 5; i++) {
		snprintf(names[i], sizeof names[i], "data_batch_%d.bin", i + 1);
		write_cifar(names[i], 2 + i, 0, 0);
	}
	write_cifar("test_batch.bin", 3, 0, 0);
}

static void test_cifar10(void)
{
	const char *d = dir; /* test_rmdir removes one level */
	cifar_dir();
	sfp_config cfg;
	sfp_config_defaults(&cfg);
	sfp_cfg_data c = cfg.data;
	c.dataset = SFP_DATASET_CIFAR10;
	c.normalize = 0;
	snprintf(c.path, sizeof c.path, "%s", d);
	sfp_dataset tr, te;
	sfp_error e;
	CU_ASSERT_EQUAL_FATAL(sfp_dataset_load(&tr, &te, &c, &e), SFP_OK);
	CU_ASSERT_EQUAL(tr.n, 2 + 3 + 4 + 5 + 6);
	CU_ASSERT_EQUAL(te.n, 3);
	CU_ASSERT_EQUAL(tr.classes, 10);
	CU_ASSERT(tr.shape.c == 3 && tr.shape.h == 32 && tr.shape.w == 32 && tr.ndim == 3);
	/* sample 3 is record 1 of data_batch_2: channel 2 (blue) pixel (0, 5) */
	CU_ASSERT_DOUBLE_EQUAL(tr.x[3 * 3072 + 2 * 1024 + 5], ((1 + 14 + 5) & 255) / 255.0, 1e-7);
	CU_ASSERT_EQUAL(tr.y[3], 1);
	CU_ASSERT_EQUAL(te.y[2], 2);
	sfp_dataset_release(&tr);
	sfp_dataset_release(&te);

	/* per-channel normalisation */
	c.normalize = 1;
	CU_ASSERT_EQUAL_FATAL(sfp_dataset_load(&tr, &te, &c, &e), SFP_OK);
	for (int ch = 0; ch < 3; ch++) {
		double s = 0, s2 = 0;
		for (int i = 0; i < tr.n; i++)
			for (int k = 0; k < 1024; k++) {
				double v = tr.x[(size_t)i * 3072 + (size_t)ch * 1024 + k];
				s += v;
				s2 += v * v;
			}
		CU_ASSERT_DOUBLE_EQUAL(s / (tr.n * 1024.0), 0.0, 1e-4);
		CU_ASSERT_DOUBLE_EQUAL(s2 / (tr.n * 1024.0), 1.0, 1e-3);
	}
	sfp_dataset_release(&tr);
	sfp_dataset_release(&te);

	c.normalize = 0;
	write_cifar("data_batch_3.bin", 4, 0, 1);
	expect_fail(&c, SFP_ETRUNC, "data_batch_3.bin", "whole number of 3073-byte records");
	write_cifar("data_batch_3.bin", 4, 10, 0);
	expect_fail(&c, SFP_ECORRUPT, "data_batch_3.bin': record 1 has label 10", NULL);
	write_cifar("data_batch_3.bin", 4, 0, 0);
	c.classes = 7;
	expect_fail(&c, SFP_EINVAL, "cifar10 has 10 classes", NULL);
	c.classes = 0;
	snprintf(c.path, sizeof c.path, "%s", SFP_FMNIST_DIR);
	expect_fail(&c, SFP_EINVAL, "data.path: cifar10 needs the folder of data_batch_1.bin", NULL);
	snprintf(c.path, sizeof c.path, "%s/nowhere", dir);
	expect_fail(&c, SFP_ENOENT, "nowhere/data_batch_1.bin", NULL);

	/* the (dst, cap) reader: one record too many for cap */
	unsigned char rec[2 * SFP_CIFAR_RECORD] = {0};
	float x[SFP_CIFAR_PIXELS];
	uint8_t y[1];
	size_t n;
	CU_ASSERT_EQUAL(sfp_cifar_parse(rec, sizeof rec, "m", x, y, 1, &n, &e), SFP_ENOSPC);
	CU_ASSERT_EQUAL(sfp_cifar_parse(rec, SFP_CIFAR_RECORD, "m", x, y, 1, &n, &e), SFP_OK);
	CU_ASSERT_EQUAL(n, 1);
	CU_ASSERT_EQUAL(sfp_cifar_parse(rec, 0, "m", x, y, 1, &n, &e), SFP_ETRUNC);
}

static void test_augment(void)
{
	enum { C = 2, H = 5, W = 6, N = 16 };
	sfp_dataset d = {0};
	d.n = N;
	d.shape = (sfp_shape){C, H, W};
	d.ndim = 3;
	d.x = malloc(sizeof(float) * N * C * H * W);
	for (int i = 0; i < N * C * H * W; i++)
		d.x[i] = 1.0f + (float)i;
	uint32_t idx[N];
	for (int i = 0; i < N; i++)
		idx[i] = (uint32_t)i;
	const size_t per = C * H * W;
	float *a = malloc(sizeof(float) * N * per), *b = malloc(sizeof(float) * N * per);
	sfp_error e;

	/* nothing asked: nothing changes */
	memcpy(a, d.x, sizeof(float) * N * per);
	CU_ASSERT_EQUAL(sfp_dataset_augment(&d, idx, N, 1, 0, a, &e), SFP_OK);
	CU_ASSERT(memcmp(a, d.x, sizeof(float) * N * per) == 0);

	/* flip: each sample is itself or its mirror; some are mirrored; deterministic */
	d.augment = 1 << SFP_AUGMENT_FLIP;
	memcpy(a, d.x, sizeof(float) * N * per);
	CU_ASSERT_EQUAL(sfp_dataset_augment(&d, idx, N, 7, 3, a, &e), SFP_OK);
	int flipped = 0;
	for (int s = 0; s < N; s++) {
		const float *o = d.x + s * per, *p = a + s * per;
		int same = !memcmp(o, p, per * sizeof *p), mirror = 1;
		for (int c = 0; c < C; c++)
			for (int i = 0; i < H; i++)
				for (int j = 0; j < W; j++)
					mirror &= p[(c * H + i) * W + j] == o[(c * H + i) * W + W - 1 - j];
		CU_ASSERT(same || mirror);
		flipped += mirror;
	}
	CU_ASSERT(flipped > 0 && flipped < N);
	memcpy(b, d.x, sizeof(float) * N * per);
	CU_ASSERT_EQUAL(sfp_dataset_augment(&d, idx, N, 7, 3, b, &e), SFP_OK);
	CU_ASSERT(memcmp(a, b, sizeof(float) * N * per) == 0);
	/* the same sample gets the same choice in any batch position */
	uint32_t one = 5;
	memcpy(b, d.x + 5 * per, per * sizeof(float));
	CU_ASSERT_EQUAL(sfp_dataset_augment(&d, &one, 1, 7, 3, b, &e), SFP_OK);
	CU_ASSERT(memcmp(b, a + 5 * per, per * sizeof(float)) == 0);
	/* another epoch, other choices */
	memcpy(b, d.x, sizeof(float) * N * per);
	CU_ASSERT_EQUAL(sfp_dataset_augment(&d, idx, N, 7, 4, b, &e), SFP_OK);
	CU_ASSERT(memcmp(a, b, sizeof(float) * N * per) != 0);

	/* crop: a shift by (dy, dx) in [-4, 4] with zeros outside */
	d.augment = 1 << SFP_AUGMENT_CROP;
	memcpy(a, d.x, sizeof(float) * N * per);
	CU_ASSERT_EQUAL(sfp_dataset_augment(&d, idx, N, 7, 3, a, &e), SFP_OK);
	int shifted = 0;
	for (int s = 0; s < N; s++) {
		const float *o = d.x + s * per, *p = a + s * per;
		int found = 0;
		for (int dy = -4; dy <= 4 && !found; dy++)
			for (int dx = -4; dx <= 4 && !found; dx++) {
				int ok = 1;
				for (int c = 0; c < C; c++)
					for (int i = 0; i < H; i++)
						for (int j = 0; j < W; j++) {
							int si = i + dy, sj = j + dx;
							float want = si >= 0 && si < H && sj >= 0 && sj < W
									     ? o[(c * H + si) * W + sj]
									     : 0.0f;
							ok &= p[(c * H + i) * W + j] == want;
						}
				if (ok) {
					found = 1;
					shifted += dy || dx;
				}
			}
		CU_ASSERT(found);
	}
	CU_ASSERT(shifted > N / 2);

	/* not images: refused */
	d.shape = (sfp_shape){(int)per, 1, 1};
	d.ndim = 1;
	CU_ASSERT_EQUAL(sfp_dataset_augment(&d, idx, N, 7, 3, a, &e), SFP_EINVAL);
	free(a);
	free(b);
	sfp_dataset_release(&d);
}

static void tokens_cfg(sfp_cfg_data *c, const char *train, const char *test, int tb, int T)
{
	sfp_config cfg;
	sfp_config_defaults(&cfg);
	*c = cfg.data;
	c->dataset = SFP_DATASET_TOKENS;
	c->token_bytes = tb;
	c->seq_len = T;
	snprintf(c->train_x, sizeof c->train_x, "%s", path_of(train));
	snprintf(c->test_x, sizeof c->test_x, "%s", test ? path_of(test) : "");
}

static void test_tokens(void)
{
	enum { N = 1000, T = 16, B = 5 };
	unsigned char buf[2 * N];
	for (int i = 0; i < N; i++) {
		uint16_t v = (uint16_t)(i * 7 % 500);
		buf[2 * i] = (unsigned char)v;
		buf[2 * i + 1] = (unsigned char)(v >> 8);
	}
	write_raw("t.bin", buf, sizeof buf);
	sfp_cfg_data c;
	tokens_cfg(&c, "t.bin", NULL, 2, T);
	sfp_tokens tok;
	sfp_error e;
	CU_ASSERT_EQUAL_FATAL(sfp_tokens_load(&tok, &c, &e), SFP_OK);
	CU_ASSERT_EQUAL(tok.n_train, 900);
	CU_ASSERT_EQUAL(tok.n_val, 100);
	CU_ASSERT_EQUAL(tok.ids[999], 999 * 7 % 500);

	float x[B * T], x2[B * T];
	int32_t y[B * T], y2[B * T];
	CU_ASSERT_EQUAL(sfp_tokens_batch(&tok, B, T, 3, 11, x, y, &e), SFP_OK);
	for (int b = 0; b < B; b++) {
		/* a window of the training part: consecutive ids, targets shifted by one */
		int s = -1;
		for (int k = 0; k + T < 900 && s < 0; k++)
			if (tok.ids[k] == (uint16_t)x[b * T] && tok.ids[k + 1] == (uint16_t)x[b * T + 1] &&
			    tok.ids[k + 2] == (uint16_t)x[b * T + 2])
				s = k;
		CU_ASSERT_FATAL(s >= 0);
		for (int t = 0; t < T; t++) {
			CU_ASSERT_EQUAL(x[b * T + t], (float)tok.ids[s + t]);
			CU_ASSERT_EQUAL(y[b * T + t], tok.ids[s + t + 1]);
			if (t + 1 < T)
				CU_ASSERT_EQUAL(y[b * T + t], (int32_t)x[b * T + t + 1]);
		}
	}
	CU_ASSERT_EQUAL(sfp_tokens_batch(&tok, B, T, 3, 11, x2, y2, &e), SFP_OK);
	CU_ASSERT(!memcmp(x, x2, sizeof x) && !memcmp(y, y2, sizeof y));
	CU_ASSERT_EQUAL(sfp_tokens_batch(&tok, B, T, 3, 12, x2, y2, &e), SFP_OK);
	CU_ASSERT(memcmp(x, x2, sizeof x) != 0);
	CU_ASSERT_EQUAL(sfp_tokens_batch(&tok, B, 900, 3, 12, x2, y2, &e), SFP_EINVAL);

	/* held-out windows: non-overlapping, in order, all of them */
	CU_ASSERT_EQUAL(sfp_tokens_val_windows(&tok, T), (100 - 1) / T);
	int got = sfp_tokens_val_batch(&tok, T, 4, B, x, y);
	CU_ASSERT_EQUAL(got, 2);
	CU_ASSERT_EQUAL(x[0], (float)tok.ids[900 + 4 * T]);
	CU_ASSERT_EQUAL(y[T - 1], tok.ids[900 + 5 * T]);
	CU_ASSERT_EQUAL(sfp_tokens_val_batch(&tok, T, 6, B, x, y), 0);

	/* vocabulary: the file, the position, the id */
	CU_ASSERT_EQUAL(sfp_tokens_check(&tok, 500, &e), SFP_OK);
	CU_ASSERT_EQUAL(sfp_tokens_check(&tok, 499, &e), SFP_ECORRUPT);
	CU_ASSERT(strstr(e.msg, "t.bin") && strstr(e.msg, "token 499 at position 357"));
	sfp_tokens_release(&tok);

	/* a held-out file; one-byte ids; positions in that file */
	unsigned char v[40];
	for (int i = 0; i < 40; i++)
		v[i] = (unsigned char)i;
	v[33] = 250;
	write_raw("v.bin", v, sizeof v);
	unsigned char t1[100];
	for (int i = 0; i < 100; i++)
		t1[i] = (unsigned char)(i % 100);
	write_raw("t1.bin", t1, sizeof t1);
	tokens_cfg(&c, "t1.bin", "v.bin", 1, T);
	CU_ASSERT_EQUAL_FATAL(sfp_tokens_load(&tok, &c, &e), SFP_OK);
	CU_ASSERT_EQUAL(tok.n_train, 100);
	CU_ASSERT_EQUAL(tok.n_val, 40);
	CU_ASSERT_EQUAL(tok.ids[100 + 39], 39);
	CU_ASSERT_EQUAL(sfp_tokens_check(&tok, 256, &e), SFP_OK);
	CU_ASSERT_EQUAL(sfp_tokens_check(&tok, 250, &e), SFP_ECORRUPT);
	CU_ASSERT(strstr(e.msg, "v.bin") && strstr(e.msg, "token 250 at position 33"));
	sfp_tokens_release(&tok);

	/* bad inputs */
	write_raw("odd.bin", buf, 101);
	tokens_cfg(&c, "odd.bin", NULL, 2, T);
	CU_ASSERT_EQUAL(sfp_tokens_load(&tok, &c, &e), SFP_ETRUNC);
	CU_ASSERT(strstr(e.msg, "odd.bin") && strstr(e.msg, "101 bytes"));
	CU_ASSERT_PTR_NULL(tok.ids);
	tokens_cfg(&c, "t1.bin", "v.bin", 1, 40);
	CU_ASSERT_EQUAL(sfp_tokens_load(&tok, &c, &e), SFP_EINVAL);
	CU_ASSERT(strstr(e.msg, "v.bin") && strstr(e.msg, "40 tokens"));
	tokens_cfg(&c, "nope.bin", NULL, 2, T);
	CU_ASSERT_EQUAL(sfp_tokens_load(&tok, &c, &e), SFP_ENOENT);
	CU_ASSERT(strstr(e.msg, "nope.bin") != NULL);
	uint16_t d[4];
	size_t n;
	CU_ASSERT_EQUAL(sfp_tokens_parse(buf, 10, 2, "m", d, 4, &n, &e), SFP_ENOSPC);
	CU_ASSERT_EQUAL(sfp_tokens_parse(buf, 8, 2, "m", d, 4, &n, &e), SFP_OK);
	CU_ASSERT_EQUAL(n, 4);
	CU_ASSERT_EQUAL(d[3], 21);
}

static void test_text_files(void)
{
	write_raw("a.txt", "hello, ", 7);
	write_raw("b.txt", "world! 0123456789abc", 20);
	const char *files[2];
	char a[4096], b[4096], out[4096];
	snprintf(a, sizeof a, "%s/a.txt", dir);
	snprintf(b, sizeof b, "%s/b.txt", dir);
	snprintf(out, sizeof out, "%s", dir); /* exists: fine */
	files[0] = a;
	files[1] = b;
	int64_t nt, nv;
	sfp_error e;
	CU_ASSERT_EQUAL_FATAL(sfp_tokens_write_text(files, 2, out, 0.25f, 2, &nt, &nv, &e), SFP_OK);
	CU_ASSERT_EQUAL(nt, 21);
	CU_ASSERT_EQUAL(nv, 6);
	sfp_cfg_data c;
	tokens_cfg(&c, "train.bin", "val.bin", 2, 4);
	sfp_tokens tok;
	CU_ASSERT_EQUAL_FATAL(sfp_tokens_load(&tok, &c, &e), SFP_OK);
	char all[28];
	for (int i = 0; i < 27; i++)
		all[i] = (char)tok.ids[i];
	all[27] = 0;
	CU_ASSERT_STRING_EQUAL(all, "hello, world! 0123456789abc");
	CU_ASSERT_EQUAL(sfp_tokens_check(&tok, 256, &e), SFP_OK);
	sfp_tokens_release(&tok);
	CU_ASSERT_EQUAL(sfp_tokens_write_text(files, 2, out, 0.0f, 2, &nt, &nv, &e), SFP_EINVAL);
	CU_ASSERT_EQUAL(sfp_tokens_write_text(files, 1, out, 0.9f, 3, &nt, &nv, &e), SFP_EINVAL);
	files[1] = "/nonexistent/x.txt";
	CU_ASSERT_EQUAL(sfp_tokens_write_text(files, 2, out, 0.1f, 1, &nt, &nv, &e), SFP_ENOENT);
	CU_ASSERT(strstr(e.msg, "/nonexistent/x.txt") != NULL);
}

int main(void)
{
	static const test_case cases[] = {
		{"npy: round trip, hold-out, shards, shape check", test_npy_round_trip},
		{"npy: every bad input named", test_npy_rejects},
		{"idx: round trip and bad files", test_idx_source},
		{"cifar10: planes, normalisation, bad batches", test_cifar10},
		{"augment: crop shifts, flip mirrors, seeded", test_augment},
		{"tokens: windows, held-out, vocabulary", test_tokens},
		{"sfp dataset text: byte tokens", test_text_files},
		{NULL, NULL},
	};
	dir = test_tmpdir();
	if (!dir)
		return 2;
	int rc = test_run_suite("data_sources", cases);
	test_rmdir(dir);
	free(dir);
	return rc;
}
