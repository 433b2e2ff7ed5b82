/*
 * test_data.c -- lib/data: IDX files and Fashion-MNIST.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <zlib.h>

#include "sfp/data.h"
#include "tests/util/testutil.h"

static char *dir;

static void write_file(const char *name, const void *buf, size_t n, int gz)
{
	char p[4096];
	snprintf(p, sizeof p, "%s/%s", dir, name);
	if (gz) {
		gzFile f = gzopen(p, "wb");
		CU_ASSERT_PTR_NOT_NULL_FATAL(f);
		if (n)
			CU_ASSERT_EQUAL(gzwrite(f, buf, (unsigned)n), (int)n);
		gzclose(f);
	} else {
		FILE *f = fopen(p, "wb");
		CU_ASSERT_PTR_NOT_NULL_FATAL(f);
		CU_ASSERT_EQUAL(fwrite(buf, 1, n, f), n);
		fclose(f);
	}
}

static int read_named(const char *name, sfp_idx *x, sfp_error *e)
{
	char p[4096];
	snprintf(p, sizeof p, "%s/%s", dir, name);
	return sfp_idx_read(p, x, e);
}

static void test_fmnist_real(void)
{
	sfp_idx img, lab;
	sfp_error e;
	int rc = sfp_fmnist_load(NULL, "t10k", &img, &lab, &e);
	if (rc < 0)
		fprintf(stderr, "\n  %s\n", e.msg);
	CU_ASSERT_EQUAL_FATAL(rc, SFP_OK);
	CU_ASSERT_EQUAL(img.ndim, 3);
	CU_ASSERT_EQUAL(img.dims[0], 10000);
	CU_ASSERT_EQUAL(img.count, 10000u * 28 * 28);
	CU_ASSERT_EQUAL(lab.count, 10000);
	unsigned per_class[10] = {0};
	for (uint64_t i = 0; i < lab.count; i++)
		per_class[lab.data[i]]++;
	for (int k = 0; k < 10; k++)
		CU_ASSERT_EQUAL(per_class[k], 1000); /* the test split is balanced */
	sfp_idx_release(&img);
	sfp_idx_release(&lab);
	CU_ASSERT_EQUAL(sfp_fmnist_load(NULL, "valid", &img, &lab, &e), SFP_EINVAL);
}

static void test_idx_plain_and_gz(void)
{
	unsigned char f[4 + 8 + 6] = {0, 0, 8, 2, 0, 0, 0, 2, 0, 0, 0, 3, 1, 2, 3, 4, 5, 6};
	sfp_idx x;
	sfp_error e;
	for (int gz = 0; gz <= 1; gz++) {
		write_file("a.idx", f, sizeof f, gz);
		CU_ASSERT_EQUAL_FATAL(read_named("a.idx", &x, &e), SFP_OK);
		CU_ASSERT_EQUAL(x.ndim, 2);
		CU_ASSERT_EQUAL(x.dims[0], 2);
		CU_ASSERT_EQUAL(x.dims[1], 3);
		CU_ASSERT_EQUAL(x.count, 6);
		CU_ASSERT_EQUAL(memcmp(x.data, f + 12, 6), 0);
		sfp_idx_release(&x);
	}
}

static void test_idx_rejects(void)
{
	unsigned char good[4 + 4 + 3] = {0, 0, 8, 1, 0, 0, 0, 3, 7, 8, 9};
	unsigned char buf[32];
	sfp_idx x;
	sfp_error e;

	CU_ASSERT_EQUAL(read_named("missing.gz", &x, &e), SFP_ENOENT);
	CU_ASSERT_PTR_NOT_NULL(strstr(e.msg, "missing.gz"));

	memcpy(buf, good, sizeof good);
	buf[0] = 1; /* bad magic */
	write_file("b", buf, sizeof good, 1);
	CU_ASSERT_EQUAL(read_named("b", &x, &e), SFP_ECORRUPT);
	CU_ASSERT_PTR_NOT_NULL(strstr(e.msg, "magic"));

	memcpy(buf, good, sizeof good);
	buf[2] = 0x0d; /* float type */
	write_file("b", buf, sizeof good, 0);
	CU_ASSERT_EQUAL(read_named("b", &x, &e), SFP_EUNSUPPORTED);

	memcpy(buf, good, sizeof good);
	buf[3] = 0; /* no dimensions */
	write_file("b", buf, sizeof good, 0);
	CU_ASSERT_EQUAL(read_named("b", &x, &e), SFP_ECORRUPT);

	write_file("b", good, sizeof good - 1, 1); /* one data byte short */
	CU_ASSERT_EQUAL(read_named("b", &x, &e), SFP_ETRUNC);

	memcpy(buf, good, sizeof good);
	buf[sizeof good] = 0;
	write_file("b", buf, sizeof good + 1, 0); /* trailing byte */
	CU_ASSERT_EQUAL(read_named("b", &x, &e), SFP_ECORRUPT);

	write_file("b", good, 6, 0); /* header cut inside the dims */
	CU_ASSERT_EQUAL(read_named("b", &x, &e), SFP_ETRUNC);

	/* A gzip stream cut in the middle is an error, not a short read. */
	{
		unsigned char big[4 + 4 + 4000] = {0, 0, 8, 1, 0, 0, 0x0f, 0xa0};
		for (int i = 0; i < 4000; i++)
			big[8 + i] = (unsigned char)(i * 7919 >> 3);
		write_file("c.gz", big, sizeof big, 1);
		char p[4096];
		snprintf(p, sizeof p, "%s/c.gz", dir);
		FILE *f = fopen(p, "rb");
		unsigned char z[8192];
		size_t zn = fread(z, 1, sizeof z, f);
		fclose(f);
		write_file("d.gz", z, zn / 2, 0);
		CU_ASSERT(read_named("d.gz", &x, &e) < 0);
	}
	CU_ASSERT_PTR_NULL(x.data);
}

int main(void)
{
	static const test_case cases[] = {
		{"fashion-mnist t10k loads", test_fmnist_real},
		{"idx plain and gzip", test_idx_plain_and_gz},
		{"idx rejects bad files", test_idx_rejects},
		{NULL, NULL},
	};
	dir = test_tmpdir();
	if (!dir)
		return 2;
	int rc = test_run_suite("data", cases);
	test_rmdir(dir);
	free(dir);
	return rc;
}
