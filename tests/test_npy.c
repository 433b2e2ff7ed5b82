/*
 * test_npy.c -- .npy parsing and writing: round trips, every rejection, and
 * atomic writes.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "sfp/npy.h"
#include "tests/util/testutil.h"

static char *dir;

/* A .npy image with the given header dict text (padded) and data bytes. */
static size_t make(uint8_t *buf, int major, const char *dict, size_t data_bytes)
{
	size_t dl = strlen(dict), off = major == 1 ? 10 : 12;
	size_t hl = ((off + dl + 1 + 63) / 64) * 64 - off;
	memcpy(buf, "\x93NUMPY", 6);
	buf[6] = (uint8_t)major;
	buf[7] = 0;
	buf[8] = (uint8_t)hl;
	buf[9] = (uint8_t)(hl >> 8);
	if (major != 1)
		buf[10] = buf[11] = 0;
	memcpy(buf + off, dict, dl);
	memset(buf + off + dl, ' ', hl - dl - 1);
	buf[off + hl - 1] = '\n';
	for (size_t i = 0; i < data_bytes; i++)
		buf[off + hl + i] = (uint8_t)i;
	return off + hl + data_bytes;
}

static void test_roundtrip(void)
{
	uint64_t shapes[][3] = {{3, 4, 5}, {1, 1, 1}, {0, 7, 1}};
	unsigned ndims[] = {3, 1, 2};
	for (int s = 0; s < 3; s++) {
		uint64_t n = 1;
		for (unsigned i = 0; i < ndims[s]; i++)
			n *= shapes[s][i];
		float *x = malloc(n * 4 + 4);
		for (uint64_t i = 0; i < n; i++)
			x[i] = (float)i * 0.5f - 3.0f;
		size_t cap = sfp_npy_bound(shapes[s], ndims[s]), w;
		uint8_t *buf = malloc(cap);
		CU_ASSERT_EQUAL_FATAL(sfp_npy_format(buf, cap, &w, x, shapes[s], ndims[s], NULL), SFP_OK);
		CU_ASSERT_EQUAL((w - 4 * n) % 64, 0);
		sfp_npy a;
		CU_ASSERT_EQUAL_FATAL(sfp_npy_parse(buf, w, &a, NULL), SFP_OK);
		CU_ASSERT_EQUAL(a.ndim, ndims[s]);
		CU_ASSERT_EQUAL(a.count, n);
		CU_ASSERT(memcmp(a.shape, shapes[s], ndims[s] * 8) == 0);
		CU_ASSERT(n == 0 || memcmp(a.data, x, n * 4) == 0);
		sfp_npy_release(&a);
		free(buf);
		free(x);
	}
	/* scalar: ndim 0, one value */
	uint8_t buf[256];
	float v = 1.5f;
	size_t w;
	sfp_npy a;
	CU_ASSERT_EQUAL(sfp_npy_format(buf, sizeof buf, &w, &v, NULL, 0, NULL), SFP_OK);
	CU_ASSERT_EQUAL(sfp_npy_parse(buf, w, &a, NULL), SFP_OK);
	CU_ASSERT_EQUAL(a.ndim, 0);
	CU_ASSERT_EQUAL(a.count, 1);
	CU_ASSERT_EQUAL(a.data[0], 1.5f);
	sfp_npy_release(&a);
}

static void test_accepts_numpy_variants(void)
{
	uint8_t buf[512];
	sfp_npy a;
	const char *ok[] = {
		"{'descr': '<f4', 'fortran_order': False, 'shape': (2, 3), }",
		"{\"shape\": (6,), \"fortran_order\": False, \"descr\": \"<f4\"}",
		"{'descr':'<f4','fortran_order':False,'shape':(2,3,)}",
	};
	for (int i = 0; i < 3; i++)
		for (int major = 1; major <= 3; major++) {
			size_t len = make(buf, major, ok[i], 24);
			int rc = sfp_npy_parse(buf, len, &a, NULL);
			CU_ASSERT_EQUAL(rc, SFP_OK);
			CU_ASSERT_EQUAL(a.count, 6);
			sfp_npy_release(&a);
		}
}

static void test_rejects(void)
{
	uint8_t buf[512];
	sfp_npy a;
	sfp_error e;
	struct { const char *dict; size_t data; int want; const char *says; } bad[] = {
		{"{'descr': '<f8', 'fortran_order': False, 'shape': (3,), }", 24, SFP_EUNSUPPORTED, "float32"},
		{"{'descr': '>f4', 'fortran_order': False, 'shape': (3,), }", 12, SFP_EUNSUPPORTED, "float32"},
		{"{'descr': '<f4', 'fortran_order': True, 'shape': (3,), }", 12, SFP_EUNSUPPORTED, "fortran"},
		{"{'descr': '<f4', 'fortran_order': False, 'shape': (4,), }", 12, SFP_ETRUNC, "needs"},
		{"{'descr': '<f4', 'fortran_order': False, 'shape': (2,), }", 12, SFP_ECORRUPT, "needs"},
		{"{'descr': '<f4', 'fortran_order': False, }", 12, SFP_ECORRUPT, "shape"},
		{"{'descr': '<f4', 'fortran_order': False, 'shape': (3), }", 12, SFP_ECORRUPT, "comma"},
		{"{'descr': '<f4', 'fortran_order': False, 'shape': (-3,), }", 12, SFP_ECORRUPT, "integer"},
		{"{'descr': '<f4', 'fortran_order': False, 'shape': (3,), 'x': 1}", 12, SFP_ECORRUPT, "key"},
		{"{'descr': '<f4', 'descr': '<f4', 'fortran_order': False, 'shape': (3,)}", 12, SFP_ECORRUPT, "key"},
		{"{'descr': '<f4', 'fortran_order': False, 'shape': (99999999999, 99999999999, 99999999999,), }", 12, SFP_ECORRUPT, "large"},
		{"{'descr': '<f4', 'fortran_order': False, 'shape': (1,1,1,1,1,1,1,1,1,), }", 4, SFP_EUNSUPPORTED, "dimensions"},
		{"['descr']", 12, SFP_ECORRUPT, "dict"},
		{"{'descr': '<f4', 'fortran_order': False, 'shape': (3,), } junk", 12, SFP_ECORRUPT, "junk"},
	};
	for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
		size_t len = make(buf, 1, bad[i].dict, bad[i].data);
		int rc = sfp_npy_parse(buf, len, &a, &e);
		if (rc != bad[i].want)
			fprintf(stderr, "\n  case %zu: rc %d (%s)\n", i, rc, e.msg);
		CU_ASSERT_EQUAL(rc, bad[i].want);
		CU_ASSERT_PTR_NOT_NULL(strstr(e.msg, bad[i].says));
		CU_ASSERT_PTR_NULL(a.data);
	}
	size_t len = make(buf, 1, "{'descr': '<f4', 'fortran_order': False, 'shape': (3,), }", 12);
	buf[0] = 'X';
	CU_ASSERT_EQUAL(sfp_npy_parse(buf, len, &a, &e), SFP_ECORRUPT);
	buf[0] = 0x93;
	buf[6] = 4;
	CU_ASSERT_EQUAL(sfp_npy_parse(buf, len, &a, &e), SFP_EUNSUPPORTED);
	buf[6] = 1;
	buf[7] = 1; /* 1.1 does not exist */
	CU_ASSERT_EQUAL(sfp_npy_parse(buf, len, &a, &e), SFP_EUNSUPPORTED);
	CU_ASSERT_PTR_NOT_NULL(strstr(e.msg, "1.1"));
	buf[7] = 0;
	buf[9] = 0x7f; /* header length beyond the file */
	CU_ASSERT_EQUAL(sfp_npy_parse(buf, len, &a, &e), SFP_ETRUNC);
	for (size_t l = 0; l < 70; l++)
		CU_ASSERT(sfp_npy_parse(buf, l, &a, &e) < 0);
}

static void test_file_io(void)
{
	char path[4096], bad[4096];
	float x[6] = {1, 2, 3, 4, 5, 6};
	uint64_t shape[2] = {2, 3};
	sfp_npy a;
	sfp_error e;
	snprintf(path, sizeof path, "%s/x.npy", dir);
	CU_ASSERT_EQUAL_FATAL(sfp_npy_write(path, x, shape, 2, &e), SFP_OK);
	CU_ASSERT_EQUAL_FATAL(sfp_npy_read(path, &a, &e), SFP_OK);
	CU_ASSERT_EQUAL(a.count, 6);
	CU_ASSERT(memcmp(a.data, x, sizeof x) == 0);
	sfp_npy_release(&a);
	/* A missing file names itself; a failed write leaves nothing behind. */
	snprintf(bad, sizeof bad, "%s/none.npy", dir);
	CU_ASSERT_EQUAL(sfp_npy_read(bad, &a, &e), SFP_ENOENT);
	CU_ASSERT_PTR_NOT_NULL(strstr(e.msg, "none.npy"));
	snprintf(bad, sizeof bad, "%s/no/such/dir/y.npy", dir);
	CU_ASSERT(sfp_npy_write(bad, x, shape, 2, &e) < 0);
	/* Overwriting keeps the old file until the new one is complete. */
	float z[6] = {0};
	CU_ASSERT_EQUAL(sfp_npy_write(path, z, shape, 2, &e), SFP_OK);
	CU_ASSERT_EQUAL_FATAL(sfp_npy_read(path, &a, &e), SFP_OK);
	CU_ASSERT_EQUAL(a.data[5], 0.0f);
	sfp_npy_release(&a);
	/* A corrupt file's message carries the file name. */
	FILE *f = fopen(path, "wb");
	fputs("not numpy", f);
	fclose(f);
	CU_ASSERT_EQUAL(sfp_npy_read(path, &a, &e), SFP_ECORRUPT);
	CU_ASSERT_PTR_NOT_NULL(strstr(e.msg, "x.npy"));
}

int main(void)
{
	static const test_case cases[] = {
		{"format/parse round trip", test_roundtrip},
		{"numpy header variants", test_accepts_numpy_variants},
		{"malformed files rejected", test_rejects},
		{"file read/write", test_file_io},
		{NULL, NULL},
	};
	dir = test_tmpdir();
	if (!dir)
		return 2;
	int rc = test_run_suite("npy", cases);
	test_rmdir(dir);
	free(dir);
	return rc;
}
