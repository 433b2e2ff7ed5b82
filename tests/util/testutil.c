/*
 * testutil.c -- see testutil.h.
 */
#include "tests/util/testutil.h"

#include <CUnit/Basic.h>
#include <dirent.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

int test_run_suite(const char *suite, const test_case *cases)
{
	if (CU_initialize_registry() != CUE_SUCCESS)
		return 2;
	CU_pSuite s = CU_add_suite(suite, NULL, NULL);
	if (!s)
		goto fail;
	for (const test_case *c = cases; c->name; c++)
		if (!CU_add_test(s, c->name, c->fn))
			goto fail;
	CU_basic_set_mode(CU_BRM_VERBOSE);
	CU_basic_run_tests();
	unsigned failed = CU_get_number_of_failures() + CU_get_number_of_tests_failed();
	CU_cleanup_registry();
	return failed ? 1 : 0;
fail:
	fprintf(stderr, "cunit: %s\n", CU_get_error_msg());
	CU_cleanup_registry();
	return 2;
}

char *test_tmpdir(void)
{
	const char *base = getenv("TMPDIR");
	char *path = malloc(4096);
	if (!path)
		return NULL;
	snprintf(path, 4096, "%s/sfp-test-XXXXXX", base && *base ? base : "/tmp");
	if (!mkdtemp(path)) {
		free(path);
		return NULL;
	}
	return path;
}

void test_rmdir(const char *dir)
{
	DIR *d = opendir(dir);
	struct dirent *e;
	char p[4096];
	if (!d)
		return;
	while ((e = readdir(d))) {
		if (!strcmp(e->d_name, ".") || !strcmp(e->d_name, ".."))
			continue;
		snprintf(p, sizeof p, "%s/%s", dir, e->d_name);
		unlink(p);
	}
	closedir(d);
	rmdir(dir);
}
