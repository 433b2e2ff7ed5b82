/*
 * testutil.h -- shared helpers for the CUnit suites: running a suite table,
 * temporary directories, and reading whole files.
 */
#ifndef SFP_TESTUTIL_H
#define SFP_TESTUTIL_H

#include <CUnit/CUnit.h>
#include <stddef.h>

typedef struct test_case {
	const char *name;
	void (*fn)(void);
} test_case;

/* Register one suite with the cases (terminated by {NULL, NULL}), run it
 * verbosely, and return the process exit code (0 when every test passed). */
int test_run_suite(const char *suite, const test_case *cases);

/* A fresh temporary directory under $TMPDIR (or /tmp); the caller frees the
 * string. test_rmdir removes it and its files (one level). */
char *test_tmpdir(void);
void test_rmdir(const char *dir);

#endif
