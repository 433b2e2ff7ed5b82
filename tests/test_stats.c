/*
 * test_stats.c -- the daemon's stats store: ingestion, merging of ranks,
 * counters across worker restarts, bounded memory and downsampling, dead
 * workers, the history file (recovery, torn tail, corrupt record, foreign
 * files), and the Prometheus and JSON renderers.
 */
#include <fcntl.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "sfp/stats.h"
#include "tests/util/testutil.h"

#define SEC 1000000000ull

static char *dir;
static const char *const layers[] = {"conv1", "relu1", "fc"};

static char *path_in(const char *name)
{
	static char p[4096];
	snprintf(p, sizeof p, "%s/%s", dir, name);
	return p;
}

static sfp_stats *open_mem(uint32_t max_points)
{
	sfp_stats_opts o;
	sfp_stats *s = NULL;
	sfp_stats_opts_default(&o);
	o.max_points = max_points;
	CU_ASSERT_EQUAL_FATAL(sfp_stats_open(&s, NULL, &o, NULL), SFP_OK);
	return s;
}

/* A report from `rank` at `step` with widths for every layer. */
static int report(sfp_stats *s, const char *job, uint32_t rank, int64_t step, double loss,
                  uint64_t counter, uint64_t now_ns)
{
	sfp_stats_width w[6];
	for (int i = 0; i < 3; i++)
		for (int k = 0; k < 2; k++) {
			sfp_stats_width *x = &w[2 * i + k];
			x->layer = layers[i];
			x->kind = (sfp_stats_kind)k;
			x->e = (uint32_t)(8 - (step / 100) % 5);
			x->m = (uint32_t)(23 - (step / 10) % 20) - rank;
			x->n_e = (float)x->e + 0.25f;
			x->n_m = (float)x->m + 0.5f;
			x->count = 1000u * (uint64_t)(i + 1);
		}
	sfp_worker_report r = {.job = job,
	                       .rank = rank,
	                       .step = step,
	                       .loss = loss,
	                       .footprint_bits_per_value = 7.5,
	                       .samples = counter,
	                       .raw_bytes = 4 * counter,
	                       .wire_bytes = counter,
	                       .encode_ns = counter,
	                       .decode_ns = counter,
	                       .comm_ns = counter,
	                       .widths = w,
	                       .n_widths = 6};
	return sfp_stats_report(s, &r, now_ns, NULL);
}

static void reg(sfp_stats *s, const char *job, uint32_t rank, uint64_t now_ns)
{
	CU_ASSERT_EQUAL(sfp_stats_register(s, job, rank, rank, 0, 3, layers, now_ns, NULL), SFP_OK);
}

static char *render(sfp_stats *s, int what, const char *arg, int64_t since)
{
	sfp_strbuf b;
	sfp_strbuf_init(&b, 0);
	int rc = what == 0   ? sfp_stats_render_job(s, NULL, since, 5 * SEC, &b, NULL)
	         : what == 1 ? sfp_stats_render_bitlengths(s, NULL, arg, since, &b, NULL)
	         : what == 2 ? sfp_stats_render_workers(s, NULL, 5 * SEC, &b, NULL)
	                     : sfp_stats_render_prometheus(s, 5 * SEC, &b);
	CU_ASSERT_EQUAL(rc, SFP_OK);
	char *p = sfp_strbuf_take(&b, NULL);
	CU_ASSERT_PTR_NOT_NULL_FATAL(p);
	return p;
}

static void test_strbuf(void)
{
	sfp_strbuf b;
	char small[8];
	sfp_strbuf_init(&b, 0);
	for (int i = 0; i < 1000; i++)
		sfp_strbuf_printf(&b, "%04d", i);
	CU_ASSERT_EQUAL(b.len, 4000);
	CU_ASSERT_EQUAL(b.err, 0);
	CU_ASSERT(!memcmp(b.p + 3996, "0999", 5));
	sfp_strbuf_reset(&b);
	sfp_strbuf_json_str(&b, "a\"b\\c\n\x01");
	CU_ASSERT_STRING_EQUAL(b.p, "\"a\\\"b\\\\c\\u000a\\u0001\"");
	sfp_strbuf_reset(&b);
	sfp_strbuf_json_num(&b, NAN);
	sfp_strbuf_json_num(&b, 3);
	sfp_strbuf_json_num(&b, 0.5);
	CU_ASSERT_STRING_EQUAL(b.p, "null30.5");
	sfp_strbuf_release(&b);
	/* a growable buffer stops at its maximum */
	sfp_strbuf_init(&b, 16);
	sfp_strbuf_puts(&b, "0123456789");
	sfp_strbuf_puts(&b, "0123456789");
	CU_ASSERT_EQUAL(b.err, SFP_ENOMEM);
	CU_ASSERT_PTR_NULL(sfp_strbuf_take(&b, NULL));
	sfp_strbuf_release(&b);
	/* a caller buffer never overflows and stays terminated */
	sfp_strbuf_init_fixed(&b, small, sizeof small);
	sfp_strbuf_puts(&b, "abc");
	sfp_strbuf_printf(&b, "%s", "defghijk");
	sfp_strbuf_puts(&b, "x");
	CU_ASSERT_EQUAL(b.err, SFP_ENOSPC);
	CU_ASSERT_STRING_EQUAL(small, "abc");
}

/* printf is the reference for JSON numbers ("%lld" for integers, "%.7g"
 * else); the renderers' own formatting must write the same bytes. */
static void json_num_matches(double v, int *bad)
{
	char ref[64];
	sfp_strbuf b;
	if (!isfinite(v))
		snprintf(ref, sizeof ref, "null");
	else if (v == (double)(long long)v && fabs(v) < 9.007199254740992e15)
		snprintf(ref, sizeof ref, "%lld", (long long)v);
	else
		snprintf(ref, sizeof ref, "%.7g", v);
	sfp_strbuf_init(&b, 0);
	sfp_strbuf_json_num(&b, v);
	if (b.err || strcmp(b.p, ref)) {
		if ((*bad)++ < 5)
			fprintf(stderr, "json_num(%.17g): '%s', printf: '%s'\n", v, b.p ? b.p : "", ref);
	}
	sfp_strbuf_release(&b);
}

static void test_json_num(void)
{
	static const double edge[] = {
	    1e-4,       9.9999995e-5, 9.99999949e-5, 0.99999995, 0.999999949, 9999999.5,
	    9999999.49, 9999994.5,    1e7,          1e6 + 0.5,  1.0078125,   1234567.5,
	    0.1,        0.3,          2.5,          5e-5,       1e-3,        123456.75,
	    -0.0,       4.2e15,       -9.1e15,      1e300,      5e-324,      3.4028234663852886e38};
	sfp_rng r;
	int bad = 0;
	for (size_t i = 0; i < sizeof edge / sizeof edge[0]; i++)
		for (int sign = -1; sign <= 1; sign += 2) {
			const double v = sign * edge[i];
			json_num_matches(v, &bad);
			json_num_matches(nextafter(v, 0.0), &bad);
			json_num_matches(nextafter(v, v < 0 ? -INFINITY : INFINITY), &bad);
		}
	json_num_matches(NAN, &bad);
	json_num_matches(-INFINITY, &bad);
	sfp_rng_seed(&r, 7);
	for (int i = 0; i < 300000; i++) {
		double v;
		uint64_t u = sfp_rng_u64(&r);
		float f;
		switch (i % 4) {
		case 0: /* any magnitude the fixed notation covers, and beyond */
			v = ldexp((double)(u >> 11), -53) * pow(10.0, (double)(i / 4 % 16) - 6.0);
			break;
		case 1: /* widths and losses arrive as float32 */
			memcpy(&f, &u, sizeof f);
			v = f;
			break;
		case 2: /* dyadic values: exact ties at the 7th digit */
			v = (double)(u % 20000000) / (double)(1u << (i / 4 % 31));
			break;
		default: { /* a hair either side of a rounding boundary */
			const double d = 1000000.0 + (double)(u % 9000000) + 0.5;
			v = d * pow(10.0, (double)(i / 4 % 12) - 11.0);
			for (int k = (int)(u >> 60) % 3; k > 0; k--)
				v = nextafter(v, (u >> 59) & 1 ? INFINITY : 0.0);
		}
		}
		json_num_matches((u >> 63) ? -v : v, &bad);
	}
	CU_ASSERT_EQUAL(bad, 0);
}

static void test_ingest_and_merge(void)
{
	sfp_stats *s = open_mem(4096);
	sfp_error e;
	int64_t step;
	reg(s, "j", 0, 0);
	reg(s, "j", 1, 0);
	CU_ASSERT_EQUAL(report(s, "j", 0, 10, 1.0, 100, SEC), SFP_OK);
	CU_ASSERT_EQUAL(report(s, "j", 1, 10, 3.0, 100, SEC), SFP_OK);
	CU_ASSERT_EQUAL(report(s, "j", 0, 20, 0.5, 200, SEC), SFP_OK);
	CU_ASSERT_EQUAL(sfp_stats_job_step(s, "j", &step), SFP_OK);
	CU_ASSERT_EQUAL(step, 20);
	/* two ranks at step 10 make one point: mean loss, widest m */
	CU_ASSERT_EQUAL(sfp_stats_series_len(s, "j", NULL, 0), 2);
	CU_ASSERT_EQUAL(sfp_stats_series_len(s, "j", "fc", SFP_STATS_ACTIVATIONS), 2);
	char *js = render(s, 0, NULL, 0);
	CU_ASSERT_PTR_NOT_NULL(strstr(js, "\"loss\":[2,0.5]"));
	CU_ASSERT_PTR_NOT_NULL(strstr(js, "\"step\":[10,20]"));
	CU_ASSERT_PTR_NOT_NULL(strstr(js, "\"samples_total\":400")); /* per report, summed */
	free(js);
	char *bl = render(s, 1, "conv1", 0);
	CU_ASSERT_PTR_NOT_NULL(strstr(bl, "\"m\":[22,21]"));
	free(bl);
	/* unregistered, malformed and limit rejections are counted by the store */
	CU_ASSERT_EQUAL(report(s, "j", 7, 10, 1.0, 1, SEC), SFP_ENOENT);
	CU_ASSERT_EQUAL(report(s, "other", 0, 10, 1.0, 1, SEC), SFP_ENOENT);
	CU_ASSERT_EQUAL(sfp_stats_drops(s, SFP_STATS_DROP_UNREGISTERED), 2);
	CU_ASSERT_EQUAL(sfp_stats_heartbeat(s, "j", 9, SEC), SFP_ENOENT);
	CU_ASSERT_EQUAL(sfp_stats_drops(s, SFP_STATS_DROP_UNREGISTERED), 3);
	sfp_stats_width bad = {.layer = "conv1", .kind = SFP_STATS_WEIGHTS, .e = 9, .m = 3};
	sfp_worker_report r = {.job = "j", .rank = 0, .step = 30, .widths = &bad, .n_widths = 1};
	CU_ASSERT_EQUAL(sfp_stats_report(s, &r, SEC, &e), SFP_ECORRUPT);
	CU_ASSERT_PTR_NOT_NULL(strstr(e.msg, "conv1"));
	bad.e = 4;
	bad.layer = "has space";
	CU_ASSERT_EQUAL(sfp_stats_report(s, &r, SEC, &e), SFP_ECORRUPT);
	r.job = "";
	CU_ASSERT_EQUAL(sfp_stats_report(s, &r, SEC, &e), SFP_ECORRUPT);
	CU_ASSERT_EQUAL(sfp_stats_register(s, "j", SFP_STATS_MAX_RANK, 0, 0, 0, NULL, 0, &e),
	                SFP_ECORRUPT);
	CU_ASSERT_EQUAL(sfp_stats_drops(s, SFP_STATS_DROP_MALFORMED), 4);
	sfp_stats_count_drop(s, SFP_STATS_DROP_BAD_TOKEN);
	sfp_stats_count_drop(s, SFP_STATS_DROP_BAD_TOKEN);
	CU_ASSERT_EQUAL(sfp_stats_drops(s, SFP_STATS_DROP_BAD_TOKEN), 2);
	CU_ASSERT_EQUAL(sfp_stats_job_step(s, "j", &step), SFP_OK);
	CU_ASSERT_EQUAL(step, 20); /* nothing of the rejected reports was applied */
	sfp_stats_close(s);
	sfp_stats_close(NULL);
}

static void test_counter_restart(void)
{
	sfp_stats *s = open_mem(4096);
	reg(s, "j", 0, 0);
	report(s, "j", 0, 1, 1, 100, SEC);
	report(s, "j", 0, 2, 1, 150, SEC);
	/* the worker restarted: its counters begin again */
	reg(s, "j", 0, 2 * SEC);
	report(s, "j", 0, 3, 1, 30, 2 * SEC);
	char *w = render(s, 2, NULL, 0);
	CU_ASSERT_PTR_NOT_NULL(strstr(w, "\"samples_total\":280")); /* samples: per report */
	CU_ASSERT_PTR_NOT_NULL(strstr(w, "\"raw_bytes_total\":720"));
	free(w);
	/* a register may name a layer once per tensor (weights, activations) */
	const char *per_tensor[] = {"fc", "fc", "conv1", "conv1"};
	CU_ASSERT_EQUAL(sfp_stats_register(s, "j", 1, 0, 0, 4, per_tensor, 0, NULL), SFP_OK);
	char *js = render(s, 0, NULL, 0);
	CU_ASSERT_PTR_NOT_NULL(strstr(js, "\"layers\":[{\"layer\":\"conv1\","));
	CU_ASSERT_PTR_NULL(strstr(strstr(js, "{\"layer\":\"fc\"") + 1, "{\"layer\":\"fc\""));
	free(js);
	sfp_stats_close(s);
}

static int steps_uniform(sfp_stats *s, int64_t last)
{
	sfp_strbuf b;
	sfp_strbuf_init(&b, 0);
	sfp_stats_render_bitlengths(s, "j", "fc", 0, &b, NULL);
	const char *p = strstr(b.p, "\"step\":[");
	int ok = p != NULL;
	long long prev = -1, gap = -1, v = 0, n = 0;
	for (p = p ? p + 8 : NULL; ok && *p != ']'; n++) {
		char *end;
		v = strtoll(p, &end, 10);
		/* evenly spread, except the newest, which is always there */
		if (prev >= 0 && gap < 0)
			gap = v - prev;
		else if (prev >= 0 && v - prev != gap && end[0] != ']')
			ok = 0;
		prev = v;
		p = *end == ',' ? end + 1 : end;
	}
	ok = ok && v == last && n > 1;
	sfp_strbuf_release(&b);
	return ok;
}

static void test_bounded_memory(void)
{
	sfp_stats_opts o;
	sfp_stats *s;
	sfp_stats_opts_default(&o);
	o.max_points = 64;
	o.max_jobs = 2;
	o.max_layers = 4;
	o.max_workers = 3;
	CU_ASSERT_EQUAL_FATAL(sfp_stats_open(&s, NULL, &o, NULL), SFP_OK);
	reg(s, "j", 0, 0);
	reg(s, "j", 1, 0);
	for (int64_t step = 0; step < 100000; step++) {
		report(s, "j", 0, step, 1.0 / (double)(step + 1), (uint64_t)step, SEC);
		report(s, "j", 1, step, 1.0 / (double)(step + 1), (uint64_t)step, SEC);
		CU_ASSERT_FATAL(sfp_stats_series_len(s, "j", "fc", SFP_STATS_WEIGHTS) <= 64);
	}
	CU_ASSERT(sfp_stats_series_len(s, "j", NULL, 0) <= 64);
	CU_ASSERT(sfp_stats_series_len(s, "j", "fc", SFP_STATS_WEIGHTS) >= 32);
	CU_ASSERT(steps_uniform(s, 99999));
	/* limits: a third job, a fourth worker, a fifth layer */
	const char *more[] = {"a", "b", "c", "d"};
	CU_ASSERT_EQUAL(sfp_stats_register(s, "k", 0, 0, 0, 4, more, 0, NULL), SFP_OK);
	CU_ASSERT_EQUAL(sfp_stats_register(s, "l", 0, 0, 0, 0, NULL, 0, NULL), SFP_ERANGE);
	reg(s, "j", 2, 0);
	CU_ASSERT_EQUAL(sfp_stats_register(s, "j", 3, 0, 0, 0, NULL, 0, NULL), SFP_ERANGE);
	CU_ASSERT_EQUAL(sfp_stats_drops(s, SFP_STATS_DROP_LIMIT), 2);
	/* conv1, relu1, fc are beyond k's 4 layers: each report counts once */
	for (int64_t step = 0; step < 5000; step++)
		CU_ASSERT_EQUAL(report(s, "k", 0, step, 1, 1, SEC), SFP_OK);
	CU_ASSERT_EQUAL(sfp_stats_series_len(s, "k", "fc", SFP_STATS_WEIGHTS), 0);
	CU_ASSERT(sfp_stats_series_len(s, "k", NULL, 0) >= 32);
	CU_ASSERT(sfp_stats_series_len(s, "k", NULL, 0) <= 64);
	CU_ASSERT_EQUAL(sfp_stats_drops(s, SFP_STATS_DROP_LIMIT), 5002);
	CU_ASSERT(sfp_stats_memory_bytes(s) <= sfp_stats_memory_bound(&o));
	/* a finished job makes room: k says goodbye, l takes its place, j
	 * (workers up) stays; the eviction is counted */
	uint64_t before = sfp_stats_memory_bytes(s);
	CU_ASSERT_EQUAL(sfp_stats_goodbye(s, "k", 0, SEC), SFP_OK);
	CU_ASSERT_EQUAL(sfp_stats_register(s, "l", 0, 0, 0, 0, NULL, SEC, NULL), SFP_OK);
	int64_t st;
	CU_ASSERT_NOT_EQUAL(sfp_stats_job_step(s, "k", &st), SFP_OK);
	CU_ASSERT_EQUAL(sfp_stats_job_step(s, "j", &st), SFP_OK);
	CU_ASSERT(sfp_stats_memory_bytes(s) < before);
	CU_ASSERT(sfp_stats_memory_bytes(s) <= sfp_stats_memory_bound(&o));
	/* now j and l are both live: a fourth job is refused again */
	CU_ASSERT_EQUAL(sfp_stats_register(s, "m", 0, 0, 0, 0, NULL, SEC, NULL), SFP_ERANGE);
	sfp_strbuf pb;
	sfp_strbuf_init(&pb, 0);
	CU_ASSERT_EQUAL(sfp_stats_render_prometheus(s, SEC, &pb), SFP_OK);
	char *prom = sfp_strbuf_take(&pb, NULL);
	CU_ASSERT_PTR_NOT_NULL(prom && strstr(prom, "sfp_jobs_evicted_total 1\n"));
	free(prom);
	sfp_stats_close(s);
	/* the default bound stays in the hundreds of MiB */
	sfp_stats_opts_default(&o);
	CU_ASSERT(sfp_stats_memory_bound(&o) < (1ull << 30));
	o.max_points = 8;
	CU_ASSERT_EQUAL(sfp_stats_open(&s, NULL, &o, NULL), SFP_EINVAL);
}

static void test_late_and_out_of_order(void)
{
	sfp_stats *s = open_mem(16);
	reg(s, "j", 0, 0);
	reg(s, "j", 1, 0);
	for (int64_t step = 0; step < 1000; step++)
		report(s, "j", 0, step, 1, 1, SEC);
	/* rank 1 lags: its old steps merge where they are held, or are dropped */
	for (int64_t step = 0; step < 1000; step += 7)
		CU_ASSERT_EQUAL(report(s, "j", 1, step, 1, 1, SEC), SFP_OK);
	CU_ASSERT(sfp_stats_series_len(s, "j", NULL, 0) <= 16);
	int64_t step;
	sfp_stats_job_step(s, "j", &step);
	CU_ASSERT_EQUAL(step, 999);
	sfp_stats_close(s);
}

static void test_dead_worker(void)
{
	sfp_stats_opts o;
	sfp_stats *s;
	sfp_stats_state st;
	sfp_stats_opts_default(&o);
	o.dead_after_ns = 30 * SEC;
	CU_ASSERT_EQUAL_FATAL(sfp_stats_open(&s, NULL, &o, NULL), SFP_OK);
	reg(s, "j", 0, 0);
	reg(s, "j", 1, 0);
	CU_ASSERT_EQUAL(sfp_stats_heartbeat(s, "j", 0, 20 * SEC), SFP_OK);
	CU_ASSERT_EQUAL(sfp_stats_tick(s, 29 * SEC), 0);
	CU_ASSERT_EQUAL(sfp_stats_tick(s, 31 * SEC), 1); /* rank 1: silent since 0 */
	sfp_stats_worker_state(s, "j", 1, &st);
	CU_ASSERT_EQUAL(st, SFP_WORKER_DEAD);
	sfp_stats_worker_state(s, "j", 0, &st);
	CU_ASSERT_EQUAL(st, SFP_WORKER_UP);
	CU_ASSERT_EQUAL(sfp_stats_tick(s, 51 * SEC), 1); /* rank 0: silent since 20 */
	/* a dead worker that speaks again is up; one that left stays left */
	CU_ASSERT_EQUAL(report(s, "j", 1, 5, 1, 1, 60 * SEC), SFP_OK);
	sfp_stats_worker_state(s, "j", 1, &st);
	CU_ASSERT_EQUAL(st, SFP_WORKER_UP);
	CU_ASSERT_EQUAL(sfp_stats_goodbye(s, "j", 1, 61 * SEC), SFP_OK);
	CU_ASSERT_EQUAL(sfp_stats_tick(s, 1000 * SEC), 0);
	sfp_stats_worker_state(s, "j", 1, &st);
	CU_ASSERT_EQUAL(st, SFP_WORKER_LEFT);
	CU_ASSERT_EQUAL(sfp_stats_worker_state(s, "j", 2, &st), SFP_ENOENT);
	char *js = render(s, 0, NULL, 0);
	CU_ASSERT_PTR_NOT_NULL(
	    strstr(js, "\"workers\":{\"total\":2,\"up\":0,\"dead\":1,\"left\":1"));
	free(js);
	sfp_stats_close(s);
}

/* ---- the history file --------------------------------------------------- */
static sfp_stats *open_file(const char *path, int want)
{
	sfp_stats_opts o;
	sfp_stats *s = NULL;
	sfp_error e;
	sfp_stats_opts_default(&o);
	o.max_points = 64;
	int rc = sfp_stats_open(&s, path, &o, &e);
	if (rc != want)
		fprintf(stderr, "\n  open '%s': %d %s\n", path, rc, e.msg);
	CU_ASSERT_EQUAL(rc, want);
	return s;
}

static off_t file_size(const char *path)
{
	struct stat st;
	return stat(path, &st) < 0 ? -1 : st.st_size;
}

/* 2 registers, 300 reports, 1 goodbye */
#define HIST_RECORDS 303

static void fill(sfp_stats *s)
{
	reg(s, "j", 0, 0);
	reg(s, "j", 1, 0);
	for (int64_t step = 0; step < 150; step++) {
		report(s, "j", 0, step, 2.0 / (double)(step + 1), (uint64_t)step * 10, SEC);
		report(s, "j", 1, step, 1.0 / (double)(step + 1), (uint64_t)step * 10, SEC);
	}
	sfp_stats_goodbye(s, "j", 1, SEC);
}

static void test_recovery(void)
{
	char *p = strdup(path_in("rec.hist"));
	sfp_stats *s = open_file(p, SFP_OK);
	fill(s);
	char *before[3] = {render(s, 0, NULL, 0), render(s, 1, NULL, 0), render(s, 3, NULL, 0)};
	/* the file is locked while a store has it */
	open_file(p, SFP_EIO);
	sfp_stats_close(s);

	s = open_file(p, SFP_OK);
	const sfp_stats_recovery *rec = sfp_stats_recovery_info(s);
	CU_ASSERT_EQUAL(rec->records, HIST_RECORDS);
	CU_ASSERT_EQUAL(rec->corrupt_records + rec->truncated_bytes + rec->rejected_records, 0);
	CU_ASSERT_EQUAL(rec->file_bytes, (uint64_t)file_size(p));
	char *after[2] = {render(s, 0, NULL, 0), render(s, 1, NULL, 0)};
	/* the same but for the workers' states (up then, stale now) */
	CU_ASSERT_STRING_EQUAL(strstr(before[0], "\"reports\""), strstr(after[0], "\"reports\""));
	CU_ASSERT(
	    !strncmp(before[0], after[0], (size_t)(strstr(before[0], "\"workers\"") - before[0])));
	CU_ASSERT_STRING_EQUAL(before[1], after[1]);
	sfp_stats_state st;
	sfp_stats_worker_state(s, "j", 0, &st);
	CU_ASSERT_EQUAL(st, SFP_WORKER_STALE);
	sfp_stats_worker_state(s, "j", 1, &st);
	CU_ASSERT_EQUAL(st, SFP_WORKER_LEFT);
	/* it goes on where it stopped */
	CU_ASSERT_EQUAL(report(s, "j", 0, 150, 0.1, 1500, SEC), SFP_OK);
	sfp_stats_close(s);
	s = open_file(p, SFP_OK);
	CU_ASSERT_EQUAL(sfp_stats_recovery_info(s)->records, HIST_RECORDS + 1);
	int64_t step;
	sfp_stats_job_step(s, "j", &step);
	CU_ASSERT_EQUAL(step, 150);
	sfp_stats_close(s);
	for (int i = 0; i < 3; i++)
		free(before[i]);
	free(after[0]);
	free(after[1]);
	free(p);
}

static void test_torn_tail(void)
{
	char *p = strdup(path_in("torn.hist"));
	sfp_stats *s = open_file(p, SFP_OK);
	fill(s);
	sfp_stats_close(s);
	off_t full = file_size(p);
	/* a crash in the middle of the goodbye record (the last) */
	CU_ASSERT_EQUAL_FATAL(truncate(p, full - 5), 0);
	s = open_file(p, SFP_OK);
	const sfp_stats_recovery *rec = sfp_stats_recovery_info(s);
	CU_ASSERT_EQUAL(rec->records, HIST_RECORDS - 1);
	CU_ASSERT(rec->truncated_bytes > 0 && rec->truncated_bytes < 64);
	CU_ASSERT_EQUAL(rec->corrupt_records, 0);
	CU_ASSERT_EQUAL((uint64_t)file_size(p), rec->file_bytes);
	sfp_stats_state st;
	sfp_stats_worker_state(s, "j", 1, &st);
	CU_ASSERT_EQUAL(st, SFP_WORKER_STALE); /* its goodbye was lost */
	/* appends follow the last good record: the next open is clean */
	CU_ASSERT_EQUAL(sfp_stats_goodbye(s, "j", 1, SEC), SFP_OK);
	sfp_stats_close(s);
	s = open_file(p, SFP_OK);
	rec = sfp_stats_recovery_info(s);
	CU_ASSERT_EQUAL(rec->records, HIST_RECORDS);
	CU_ASSERT_EQUAL(rec->truncated_bytes, 0);
	sfp_stats_close(s);
	/* a crash while the header was being written: a fresh file */
	int fd = open(p, O_WRONLY | O_TRUNC);
	CU_ASSERT_EQUAL(write(fd, "SFPHI", 5), 5);
	close(fd);
	s = open_file(p, SFP_OK);
	CU_ASSERT_EQUAL(sfp_stats_recovery_info(s)->truncated_bytes, 5);
	sfp_stats_close(s);
	CU_ASSERT_EQUAL(file_size(p), 16);
	free(p);
}

static void test_corrupt_record(void)
{
	char *p = strdup(path_in("corrupt.hist"));
	sfp_stats *s = open_file(p, SFP_OK);
	fill(s);
	sfp_stats_close(s);
	off_t size = file_size(p);
	/* damage a report in the middle (a byte of its body) */
	int fd = open(p, O_RDWR);
	unsigned char c;
	CU_ASSERT_EQUAL(pread(fd, &c, 1, size / 2), 1);
	c ^= 0x5a;
	CU_ASSERT_EQUAL(pwrite(fd, &c, 1, size / 2), 1);
	close(fd);
	s = open_file(p, SFP_OK);
	const sfp_stats_recovery *rec = sfp_stats_recovery_info(s);
	CU_ASSERT_EQUAL(rec->corrupt_records, 1);
	CU_ASSERT_EQUAL(rec->records, HIST_RECORDS - 1);
	CU_ASSERT_EQUAL(rec->truncated_bytes, 0);
	CU_ASSERT(rec->skipped_bytes > 0);
	int64_t step;
	sfp_stats_job_step(s, "j", &step);
	CU_ASSERT_EQUAL(step, 149);
	sfp_stats_close(s);
	/* damage a length field: the next record is still found */
	fd = open(p, O_RDWR);
	unsigned char len[4] = {0xff, 0xff, 0x0f, 0x00};
	CU_ASSERT_EQUAL(pwrite(fd, len, 4, 16 + 4), 4); /* the first record's length */
	close(fd);
	s = open_file(p, SFP_OK);
	rec = sfp_stats_recovery_info(s);
	CU_ASSERT_EQUAL(rec->corrupt_records, 2);
	/* rank 0's register is gone: its reports are refused, not fatal */
	CU_ASSERT(rec->rejected_records >= 149);
	CU_ASSERT_EQUAL(sfp_stats_drops(s, SFP_STATS_DROP_UNREGISTERED), 0);
	sfp_stats_close(s);
	free(p);
}

static void test_foreign_files(void)
{
	char *p = strdup(path_in("notes.txt"));
	FILE *f = fopen(p, "w");
	fputs("my notes, not a history\n", f);
	fclose(f);
	open_file(p, SFP_ECORRUPT);
	CU_ASSERT_EQUAL(file_size(p), 24); /* untouched */
	f = fopen(p, "w");
	fwrite("SFPHIST\n\x02\0\0\0\0\0\0\0", 1, 16, f);
	fclose(f);
	open_file(p, SFP_EVERSION);
	open_file(path_in("no/such/dir.hist"), SFP_ENOENT);
	/* the replay on a store without a file writes nothing and is bounded */
	sfp_stats *s = open_mem(64);
	size_t valid;
	sfp_stats_recovery rec;
	unsigned char junk[300];
	for (size_t i = 0; i < sizeof junk; i++)
		junk[i] = (unsigned char)(i * 37);
	memcpy(junk, "SFPHIST\n\x01\0\0\0\0\0\0\0", 16);
	CU_ASSERT_EQUAL(sfp_stats_replay(s, junk, sizeof junk, &valid, &rec, NULL), SFP_OK);
	CU_ASSERT_EQUAL(valid, 16);
	CU_ASSERT_EQUAL(rec.truncated_bytes, sizeof junk - 16);
	sfp_stats_close(s);
	free(p);
}

/* ---- renderers ---------------------------------------------------------- */
static void test_render_prometheus(void)
{
	sfp_stats *s = open_mem(64);
	reg(s, "job\"x", 0, 0);
	const char *odd[] = {"a\\b"};
	sfp_stats_register(s, "job\"x", 1, 0, 0, 1, odd, 0, NULL);
	report(s, "job\"x", 0, 42, 0.25, 1000, SEC);
	sfp_stats_count_drop(s, SFP_STATS_DROP_VERSION);
	char *t = render(s, 3, NULL, 0);
	const char *want[] = {
	    "# TYPE sfp_step gauge\nsfp_step{job=\"job\\\"x\"} 42\n",
	    "sfp_loss{job=\"job\\\"x\"} 0.25\n",
	    "sfp_footprint_ratio{job=\"job\\\"x\"} 0.234375\n",
	    "# TYPE sfp_raw_bytes_total counter\nsfp_raw_bytes_total{job=\"job\\\"x\"} 4000\n",
	    "sfp_wire_bytes_total{job=\"job\\\"x\"} 1000\n",
	    "sfp_encode_seconds_total{job=\"job\\\"x\"} 1e-06\n",
	    "sfp_workers_up{job=\"job\\\"x\"} 2\n",
	    "sfp_workers{job=\"job\\\"x\",state=\"dead\"} 0\n",
	    "sfp_layer_mantissa_width{job=\"job\\\"x\",layer=\"conv1\",kind=\"weights\"} 19\n",
	    "sfp_layer_exponent_width{job=\"job\\\"x\",layer=\"fc\",kind=\"activations\"} 8\n",
	    "sfp_layer_mantissa_width_learned{job=\"job\\\"x\",layer=\"relu1\",kind=\"weights\"} "
	    "19.5\n",
	    "sfp_layer_values{job=\"job\\\"x\",layer=\"fc\",kind=\"weights\"} 3000\n",
	    "sfp_dropped_messages_total{reason=\"version\"} 1\n",
	    "sfp_dropped_messages_total{reason=\"oversize\"} 0\n",
	};
	for (size_t i = 0; i < sizeof want / sizeof want[0]; i++) {
		if (!strstr(t, want[i]))
			fprintf(stderr, "\n  missing: %s", want[i]);
		CU_ASSERT_PTR_NOT_NULL(strstr(t, want[i]));
	}
	/* a layer that never reported widths has no width samples */
	CU_ASSERT_PTR_NULL(strstr(t, "layer=\"a\\\\b\""));
	/* every line is a comment or "name{...} value" */
	for (char *line = t; *line; line = strchr(line, '\n') + 1) {
		CU_ASSERT(line[0] == '#' || !strncmp(line, "sfp_", 4));
		CU_ASSERT_PTR_NOT_NULL_FATAL(strchr(line, '\n'));
	}
	free(t);
	/* into a caller buffer: too small is an error, not an overflow */
	char small[100];
	sfp_strbuf b;
	sfp_strbuf_init_fixed(&b, small, sizeof small);
	CU_ASSERT_EQUAL(sfp_stats_render_prometheus(s, SEC, &b), SFP_ENOSPC);
	CU_ASSERT(strlen(small) < sizeof small);
	sfp_stats_close(s);
}

static void test_render_json(void)
{
	sfp_stats *s = open_mem(64);
	sfp_strbuf b;
	sfp_error e;
	sfp_strbuf_init(&b, 0);
	/* nothing yet */
	CU_ASSERT_EQUAL(sfp_stats_render_job(s, NULL, 0, 0, &b, NULL), SFP_OK);
	CU_ASSERT_STRING_EQUAL(b.p, "{\"job\":null,\"jobs\":[]}");
	sfp_strbuf_reset(&b);
	CU_ASSERT_EQUAL(sfp_stats_render_workers(s, "", 0, &b, NULL), SFP_OK);
	CU_ASSERT_STRING_EQUAL(b.p, "{\"job\":null,\"workers\":[]}");
	CU_ASSERT_EQUAL(sfp_stats_render_job(s, "nope", 0, 0, &b, &e), SFP_ENOENT);
	CU_ASSERT_PTR_NOT_NULL(strstr(e.msg, "'nope'"));
	reg(s, "a", 0, 0);
	reg(s, "b", 3, 0);
	for (int64_t step = 0; step < 10; step++)
		report(s, "b", 3, step * 10, step == 5 ? NAN : 1.5, (uint64_t)step, SEC);
	/* the default job is the most recently active one */
	char *js = render(s, 0, NULL, 50);
	CU_ASSERT_PTR_NOT_NULL(strstr(js, "{\"job\":\"b\",\"jobs\":[\"a\",\"b\"],\"step\":90,"));
	CU_ASSERT_PTR_NOT_NULL(
	    strstr(js, "\"series\":{\"step\":[50,60,70,80,90],\"loss\":[null,1.5,"));
	CU_ASSERT_PTR_NOT_NULL(
	    strstr(js, "{\"layer\":\"conv1\",\"kinds\":[\"weights\",\"activations\"]}"));
	free(js);
	char *bl = render(s, 1, "fc", 80);
	CU_ASSERT_PTR_NOT_NULL(
	    strstr(bl, "\"layers\":[{\"layer\":\"fc\",\"kind\":\"weights\",\"values\":3000,"));
	CU_ASSERT_PTR_NOT_NULL(strstr(bl, "\"series\":{\"step\":[80,90],\"e\":[8,8],\"m\":[12,11],"
	                                  "\"n_e\":[8.25,8.25],\"n_m\":[12.5,11.5]}"));
	CU_ASSERT_PTR_NOT_NULL(strstr(bl, "\"kind\":\"activations\""));
	free(bl);
	sfp_strbuf_reset(&b);
	CU_ASSERT_EQUAL(sfp_stats_render_bitlengths(s, "b", "nope", 0, &b, &e), SFP_ENOENT);
	CU_ASSERT_PTR_NOT_NULL(strstr(e.msg, "no layer 'nope'"));
	sfp_strbuf_reset(&b);
	CU_ASSERT_EQUAL(sfp_stats_render_workers(s, "b", 3 * SEC, &b, NULL), SFP_OK);
	CU_ASSERT_PTR_NOT_NULL(
	    strstr(b.p, "\"rank\":3,\"replica\":3,\"stage\":0,\"layers\":3,\"state\":\"up\","
	                "\"step\":90,\"loss\":1.5,\"reports\":10,\"last_seen_seconds_ago\":2,"));
	sfp_strbuf_release(&b);
	sfp_stats_close(s);
}

int main(void)
{
	dir = test_tmpdir();
	if (!dir)
		return 2;
	static const test_case cases[] = {
	    {"strbuf", test_strbuf},
	    {"JSON numbers as printf writes them", test_json_num},
	    {"ingest and merge", test_ingest_and_merge},
	    {"counter restart", test_counter_restart},
	    {"bounded memory", test_bounded_memory},
	    {"late and out of order", test_late_and_out_of_order},
	    {"dead worker", test_dead_worker},
	    {"recovery", test_recovery},
	    {"torn tail", test_torn_tail},
	    {"corrupt record", test_corrupt_record},
	    {"foreign files", test_foreign_files},
	    {"render prometheus", test_render_prometheus},
	    {"render json", test_render_json},
	    {NULL, NULL},
	};
	int rc = test_run_suite("stats", cases);
	test_rmdir(dir);
	free(dir);
	return rc;
}
