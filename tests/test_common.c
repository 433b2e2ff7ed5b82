/*
 * test_common.c -- lib/common: errors, log hook, RNG, CRC32C, CPU level.
 */
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "sfp/common.h"
#include "tests/util/testutil.h"

static void test_strerror(void)
{
	for (int e = SFP_EPEER; e <= SFP_OK; e++) {
		const char *s = sfp_strerror(e);
		CU_ASSERT_PTR_NOT_NULL_FATAL(s);
		CU_ASSERT(strcmp(s, "unknown error") != 0);
	}
	CU_ASSERT_STRING_EQUAL(sfp_strerror(-1000), "unknown error");
}

static void test_error_set(void)
{
	sfp_error e;
	CU_ASSERT_EQUAL(sfp_error_set(&e, SFP_ECORRUPT, "bad '%s' at %d", "x", 3), SFP_ECORRUPT);
	CU_ASSERT_EQUAL(e.code, SFP_ECORRUPT);
	CU_ASSERT_STRING_EQUAL(e.msg, "bad 'x' at 3");
	CU_ASSERT_EQUAL(sfp_error_set(NULL, SFP_EIO, "ignored"), SFP_EIO);
	sfp_error_clear(&e);
	CU_ASSERT_EQUAL(e.code, SFP_OK);
	CU_ASSERT_STRING_EQUAL(e.msg, "");
}

struct log_capture {
	int calls, level;
	char msg[64];
};

static void capture(void *user, int level, const char *msg)
{
	struct log_capture *c = user;
	c->calls++;
	c->level = level;
	strncpy(c->msg, msg, sizeof c->msg - 1);
}

static void test_log_hook(void)
{
	struct log_capture c = {0};
	sfp_log log = {capture, &c, SFP_LOG_INFO};
	sfp_logf(&log, SFP_LOG_DEBUG, "dropped");
	CU_ASSERT_EQUAL(c.calls, 0);
	sfp_logf(&log, SFP_LOG_WARN, "step %d", 7);
	CU_ASSERT_EQUAL(c.calls, 1);
	CU_ASSERT_EQUAL(c.level, SFP_LOG_WARN);
	CU_ASSERT_STRING_EQUAL(c.msg, "step 7");
	sfp_logf(NULL, SFP_LOG_ERROR, "no hook, no crash");
}

static void test_rng_determinism(void)
{
	sfp_rng a, b;
	sfp_rng_seed(&a, 42);
	sfp_rng_seed(&b, 42);
	for (int i = 0; i < 1000; i++)
		CU_ASSERT_EQUAL(sfp_rng_u64(&a), sfp_rng_u64(&b));
	sfp_rng_seed(&b, 43);
	int same = 0;
	for (int i = 0; i < 100; i++)
		same += sfp_rng_u64(&a) == sfp_rng_u64(&b);
	CU_ASSERT(same < 2);
}

/* Moments of the uniform and normal generators within 5 standard errors. */
static void test_rng_moments(void)
{
	enum { N = 200000 };
	sfp_rng r;
	double su = 0, sn = 0, sn2 = 0;
	sfp_rng_seed(&r, 7);
	for (int i = 0; i < N; i++) {
		float u = sfp_rng_uniform(&r);
		CU_ASSERT_FATAL(u >= 0.0f && u < 1.0f);
		su += u;
		double z = sfp_rng_normal(&r);
		sn += z;
		sn2 += z * z;
	}
	const double tol_u = 5 * sqrt(1.0 / 12 / N), tol_n = 5 * sqrt(1.0 / N);
	CU_ASSERT(fabs(su / N - 0.5) < tol_u);
	CU_ASSERT(fabs(sn / N) < tol_n);
	CU_ASSERT(fabs(sn2 / N - 1.0) < 5 * sqrt(2.0 / N));
	unsigned hist[7] = {0};
	for (int i = 0; i < 70000; i++)
		hist[sfp_rng_below(&r, 7)]++;
	for (int k = 0; k < 7; k++)
		CU_ASSERT(abs((int)hist[k] - 10000) < 500);
}

static void test_hash32(void)
{
	/* Different seeds and neighbouring indices give unrelated bits: about
	 * half of the 32 bits differ on average. */
	double flips = 0;
	for (uint32_t i = 0; i < 10000; i++)
		flips += __builtin_popcount(sfp_hash32(1, i) ^ sfp_hash32(1, i + 1));
	CU_ASSERT(fabs(flips / 10000 - 16.0) < 0.5);
	CU_ASSERT_EQUAL(sfp_hash32(5, 9), sfp_hash32(5, 9));
	CU_ASSERT_NOT_EQUAL(sfp_hash32(5, 9), sfp_hash32(6, 9));
}

static void test_crc32c_vectors(void)
{
	/* Check values from RFC 3720 (iSCSI), appendix B.4. */
	unsigned char zeros[32] = {0}, ones[32], inc[32], dec[32];
	memset(ones, 0xff, sizeof ones);
	for (int i = 0; i < 32; i++) {
		inc[i] = (unsigned char)i;
		dec[i] = (unsigned char)(31 - i);
	}
	CU_ASSERT_EQUAL(sfp_crc32c(0, "123456789", 9), 0xe3069283u);
	CU_ASSERT_EQUAL(sfp_crc32c(0, zeros, 32), 0x8a9136aau);
	CU_ASSERT_EQUAL(sfp_crc32c(0, ones, 32), 0x62a8ab43u);
	CU_ASSERT_EQUAL(sfp_crc32c(0, inc, 32), 0x46dd794eu);
	CU_ASSERT_EQUAL(sfp_crc32c(0, dec, 32), 0x113fdb5cu);
	CU_ASSERT_EQUAL(sfp_crc32c_ref(0, "123456789", 9), 0xe3069283u);
}

/* The hardware kernel (three streams merged by GF(2) shifts) equals the
 * table version at every length around its block size, and CRCs chain. */
static void test_crc32c_fast_vs_ref(void)
{
	enum { N = 3 * 8192 * 3 + 77 };
	unsigned char *buf = malloc(N);
	sfp_rng r;
	CU_ASSERT_PTR_NOT_NULL_FATAL(buf);
	sfp_rng_seed(&r, 1);
	for (int i = 0; i < N; i++)
		buf[i] = (unsigned char)sfp_rng_u64(&r);
	size_t lens[] = {0, 1, 7, 8, 9, 63, 64, 24575, 24576, 24577, 49152, 60000, N};
	for (size_t i = 0; i < sizeof lens / sizeof lens[0]; i++)
		CU_ASSERT_EQUAL(sfp_crc32c(0x1234, buf, lens[i]), sfp_crc32c_ref(0x1234, buf, lens[i]));
	uint32_t whole = sfp_crc32c(0, buf, N);
	uint32_t part = sfp_crc32c(sfp_crc32c(0, buf, 30000), buf + 30000, N - 30000);
	CU_ASSERT_EQUAL(whole, part);
	free(buf);
}

/* The byte helpers put the least significant byte first at any address and
 * read back what they wrote. */
static void test_le_bytes(void)
{
	uint8_t b[1 + 8];
	uint8_t *p = b + 1; /* unaligned */
	sfp_store_le16(p, 0x0102u);
	CU_ASSERT(p[0] == 0x02 && p[1] == 0x01);
	CU_ASSERT_EQUAL(sfp_load_le16(p), 0x0102u);
	sfp_store_le32(p, 0x01020304u);
	CU_ASSERT(p[0] == 0x04 && p[1] == 0x03 && p[2] == 0x02 && p[3] == 0x01);
	CU_ASSERT_EQUAL(sfp_load_le32(p), 0x01020304u);
	sfp_store_le64(p, 0x0102030405060708ull);
	for (int i = 0; i < 8; i++)
		CU_ASSERT_EQUAL(p[i], 8 - i);
	CU_ASSERT_EQUAL(sfp_load_le64(p), 0x0102030405060708ull);
	CU_ASSERT_EQUAL(sfp_load_le32(p + 4), 0x01020304u);
}

static void test_isa_names(void)
{
	int best = sfp_cpu_isa();
	CU_ASSERT(best >= SFP_ISA_SCALAR && best <= SFP_ISA_AVX512);
	for (int i = SFP_ISA_SCALAR; i <= SFP_ISA_AVX512; i++)
		CU_ASSERT_EQUAL(sfp_isa_parse(sfp_isa_name(i)), i);
	CU_ASSERT_EQUAL(sfp_isa_parse("sse9"), SFP_EINVAL);
}

static void test_clock(void)
{
	uint64_t a = sfp_clock_ns(), b = sfp_clock_ns();
	CU_ASSERT(b >= a);
}

/* The command-line integer parser: strict, no clamping. */
static void test_parse_u64(void)
{
	uint64_t v = 7;
	CU_ASSERT_EQUAL(sfp_parse_u64("42", 0, 100, &v), SFP_OK);
	CU_ASSERT_EQUAL(v, 42);
	CU_ASSERT_EQUAL(sfp_parse_u64("0", 0, 0, &v), SFP_OK);
	CU_ASSERT_EQUAL(v, 0);
	CU_ASSERT_EQUAL(sfp_parse_u64("18446744073709551615", 0, UINT64_MAX, &v), SFP_OK);
	CU_ASSERT(v == UINT64_MAX);
	v = 7;
	static const char *const junk[] = {"", "-1", "+1", " 5", "5 ", "12x", "0x10", "1e3", "x"};
	for (size_t i = 0; i < sizeof junk / sizeof junk[0]; i++)
		CU_ASSERT_EQUAL(sfp_parse_u64(junk[i], 0, 100, &v), SFP_EINVAL);
	CU_ASSERT_EQUAL(sfp_parse_u64(NULL, 0, 100, &v), SFP_EINVAL);
	CU_ASSERT_EQUAL(sfp_parse_u64("18446744073709551616", 0, UINT64_MAX, &v), SFP_ERANGE);
	CU_ASSERT_EQUAL(sfp_parse_u64("99999999999999999999999", 0, UINT64_MAX, &v), SFP_ERANGE);
	CU_ASSERT_EQUAL(sfp_parse_u64("101", 0, 100, &v), SFP_ERANGE);
	CU_ASSERT_EQUAL(sfp_parse_u64("0", 1, 100, &v), SFP_ERANGE);
	CU_ASSERT_EQUAL(v, 7); /* untouched by every failure */
	CU_ASSERT_EQUAL(sfp_exit_code(SFP_OK), SFP_EXIT_OK);
	CU_ASSERT_EQUAL(sfp_exit_code(SFP_EINVAL), SFP_EXIT_USAGE);
	CU_ASSERT_EQUAL(sfp_exit_code(SFP_ENOMEM), SFP_EXIT_FAIL);
}

int main(void)
{
	static const test_case cases[] = {
		{"strerror covers every code", test_strerror},
		{"error details", test_error_set},
		{"log hook filters by level", test_log_hook},
		{"rng is deterministic per seed", test_rng_determinism},
		{"rng moments", test_rng_moments},
		{"hash32 mixes", test_hash32},
		{"crc32c check values", test_crc32c_vectors},
		{"crc32c fast equals reference", test_crc32c_fast_vs_ref},
		{"little-endian loads and stores", test_le_bytes},
		{"isa names round trip", test_isa_names},
		{"clock is monotonic", test_clock},
		{"integer parser: strict, no clamp", test_parse_u64},
		{NULL, NULL},
	};
	return test_run_suite("common", cases);
}
