/*
 * test_npy.c -- .npy parsing and writing: round trips, every rejection, and
 * atomic writes.
 */
#include <dirent.h>
#include <stdint.h>
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

/*
 * The exact bytes numpy's np.save writes for a float32 array: version 1.0,
 * the dict with Python's tuple repr, 21 - digits(shape[0]) spare spaces,
 * space padding to a multiple of 64 and a final newline.
 */
static void test_format_exact(void)
{
	static const struct {
		uint64_t shape[4];
		unsigned ndim;
		const char *dict;
		size_t header; /* bytes before the data */
	} cases[] = {
		{{2, 3}, 2, "{'descr': '<f4', 'fortran_order': False, 'shape': (2, 3), }", 128},
		{{3}, 1, "{'descr': '<f4', 'fortran_order': False, 'shape': (3,), }", 128},
		{{0}, 0, "{'descr': '<f4', 'fortran_order': False, 'shape': (), }", 128},
		{{1000, 0, 28}, 3,
		 "{'descr': '<f4', 'fortran_order': False, 'shape': (1000, 0, 28), }", 128},
		/* 10 + 98 + 1 = 109 fits 128, but with numpy's 20 spare spaces it
		 * takes 129: the header grows to 192 */
		{{1, 0, 1234567890123456789ull, 1234567890123456ull}, 4,
		 "{'descr': '<f4', 'fortran_order': False, "
		 "'shape': (1, 0, 1234567890123456789, 1234567890123456), }",
		 192},
	};
	uint8_t buf[512];
	float x[6] = {1, 2, 3, 4, 5, 6};
	for (size_t c = 0; c < sizeof cases / sizeof cases[0]; c++) {
		size_t w = 0, dl = strlen(cases[c].dict);
		uint64_t n = 1;
		for (unsigned i = 0; i < cases[c].ndim; i++)
			n *= cases[c].shape[i];
		CU_ASSERT_EQUAL_FATAL(sfp_npy_format(buf, sizeof buf, &w, x, cases[c].shape,
						     cases[c].ndim, NULL), SFP_OK);
		CU_ASSERT_EQUAL(w, cases[c].header + 4 * n);
		CU_ASSERT(memcmp(buf, "\x93NUMPY\x01\x00", 8) == 0);
		CU_ASSERT_EQUAL((size_t)buf[8] | (size_t)buf[9] << 8, cases[c].header - 10);
		CU_ASSERT(memcmp(buf + 10, cases[c].dict, dl) == 0);
		for (size_t i = 10 + dl; i + 1 < cases[c].header; i++)
			CU_ASSERT_EQUAL(buf[i], ' ');
		CU_ASSERT_EQUAL(buf[cases[c].header - 1], '\n');
		CU_ASSERT(memcmp(buf + cases[c].header, x, 4 * n) == 0);
	}
	/* One byte short of the needed size: ENOSPC, nothing claimed written. */
	uint64_t shape[2] = {2, 3};
	size_t w = 0;
	CU_ASSERT_EQUAL(sfp_npy_format(buf, 128 + 24 - 1, &w, x, shape, 2, NULL), SFP_ENOSPC);
	CU_ASSERT_EQUAL(sfp_npy_format(buf, 128 + 24, &w, x, shape, 2, NULL), SFP_OK);
	CU_ASSERT(sfp_npy_bound(shape, 2) >= w);
	/* The largest header: 8 dims of 20 digits still fits the bound. */
	uint64_t wide[8] = {0, UINT64_MAX, UINT64_MAX, UINT64_MAX, UINT64_MAX, UINT64_MAX,
			    UINT64_MAX, UINT64_MAX};
	size_t cap = sfp_npy_bound(wide, 8);
	uint8_t *big = malloc(cap);
	CU_ASSERT_FATAL(big != NULL);
	CU_ASSERT_EQUAL(sfp_npy_format(big, cap, &w, NULL, wide, 8, NULL), SFP_OK);
	sfp_npy a;
	CU_ASSERT_EQUAL(sfp_npy_parse(big, w, &a, NULL), SFP_OK);
	CU_ASSERT_EQUAL(a.ndim, 8);
	CU_ASSERT_EQUAL(a.shape[7], UINT64_MAX);
	CU_ASSERT_EQUAL(a.count, 0);
	sfp_npy_release(&a);
	free(big);
	/* A shape whose byte size overflows: no bound, and format refuses it. */
	uint64_t huge[2] = {(uint64_t)1 << 62, (uint64_t)1 << 62};
	sfp_error e;
	CU_ASSERT_EQUAL(sfp_npy_bound(huge, 2), SIZE_MAX);
	CU_ASSERT_EQUAL(sfp_npy_format(buf, sizeof buf, &w, x, huge, 2, &e), SFP_EINVAL);
	uint64_t nine[9] = {1, 1, 1, 1, 1, 1, 1, 1, 1};
	CU_ASSERT_EQUAL(sfp_npy_bound(nine, 9), SIZE_MAX);
	CU_ASSERT_EQUAL(sfp_npy_format(buf, sizeof buf, &w, x, nine, 9, &e), SFP_EINVAL);
}

/* Files in the test directory whose name contains `part`. */
static int count_files(const char *part)
{
	DIR *d = opendir(dir);
	struct dirent *de;
	int n = 0;
	if (!d)
		return -1;
	while ((de = readdir(d)))
		if (strstr(de->d_name, part))
			n++;
	closedir(d);
	return n;
}

static void write_bytes(const char *path, const void *p, size_t n)
{
	FILE *f = fopen(path, "wb");
	CU_ASSERT_FATAL(f != NULL);
	CU_ASSERT_EQUAL(fwrite(p, 1, n, f), n);
	fclose(f);
}

static void test_atomic_and_messages(void)
{
	char path[4096], sub[4096];
	float x[3] = {1, 2, 3};
	uint64_t shape[1] = {3}, nine[9] = {3, 1, 1, 1, 1, 1, 1, 1, 1};
	sfp_npy a;
	sfp_error e;
	/* A destination that cannot be replaced (a non-empty directory): the
	 * write fails, the directory and its file are untouched, no temporary. */
	snprintf(sub, sizeof sub, "%s/dest.npy", dir);
	CU_ASSERT_EQUAL_FATAL(mkdir(sub, 0755), 0);
	snprintf(path, sizeof path, "%s/dest.npy/keep", dir);
	write_bytes(path, "k", 1);
	CU_ASSERT(sfp_npy_write(sub, x, shape, 1, &e) < 0);
	CU_ASSERT_PTR_NOT_NULL(strstr(e.msg, "dest.npy"));
	struct stat st;
	CU_ASSERT(stat(path, &st) == 0 && st.st_size == 1);
	CU_ASSERT_EQUAL(count_files("tmp"), 0);
	unlink(path);
	rmdir(sub);
	/* Into a missing directory: nothing is created anywhere. */
	snprintf(path, sizeof path, "%s/missing/y.npy", dir);
	CU_ASSERT(sfp_npy_write(path, x, shape, 1, &e) < 0);
	CU_ASSERT_EQUAL(count_files("y.npy"), 0);
	CU_ASSERT_EQUAL(count_files("missing"), 0);
	/* A refused format (bad ndim) leaves no file either. */
	snprintf(path, sizeof path, "%s/z.npy", dir);
	CU_ASSERT_EQUAL(sfp_npy_write(path, x, nine, 9, &e), SFP_EINVAL);
	CU_ASSERT_EQUAL(count_files("z.npy"), 0);
	/* The message of a wrong dtype names the file and says how to fix it. */
	uint8_t buf[256];
	size_t len = make(buf, 1, "{'descr': '<f8', 'fortran_order': False, 'shape': (3,), }", 24);
	snprintf(path, sizeof path, "%s/f8.npy", dir);
	write_bytes(path, buf, len);
	CU_ASSERT_EQUAL(sfp_npy_read(path, &a, &e), SFP_EUNSUPPORTED);
	char want[4200];
	snprintf(want, sizeof want,
		 "cannot read '%s': dtype '<f8' is not float32 (convert with x.astype('<f4'))",
		 path);
	CU_ASSERT_STRING_EQUAL(e.msg, want);
	CU_ASSERT_PTR_NULL(a.data);
	/* Trailing bytes after the data are an error naming the file. */
	len = make(buf, 2, "{'descr': '<f4', 'fortran_order': False, 'shape': (3,), }", 13);
	snprintf(path, sizeof path, "%s/trail.npy", dir);
	write_bytes(path, buf, len);
	CU_ASSERT_EQUAL(sfp_npy_read(path, &a, &e), SFP_ECORRUPT);
	CU_ASSERT_PTR_NOT_NULL(strstr(e.msg, "trail.npy"));
	CU_ASSERT_PTR_NOT_NULL(strstr(e.msg, "12 bytes"));
	unlink(path);
	snprintf(path, sizeof path, "%s/f8.npy", dir);
	unlink(path);
}

int main(void)
{
	static const test_case cases[] = {
		{"format/parse round trip", test_roundtrip},
		{"numpy header variants", test_accepts_numpy_variants},
		{"malformed files rejected", test_rejects},
		{"file read/write", test_file_io},
		{"exact numpy bytes, bounds", test_format_exact},
		{"atomic writes, messages", test_atomic_and_messages},
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
