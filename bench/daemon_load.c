/*
 * daemon_load.c -- `sfp bench daemon`: simulated workers put a real sfpd
 * under load over the worker protocol, through the client the trainer uses
 * (lib/coord: sfp_coord_connect, _register, _send_report, _goodbye). Each
 * simulated worker is its own nng REQ socket and its own registered rank.
 * bench/daemon.sh (`make bench-daemon`) runs it beside HTTP load and
 * tests/system/daemon_load.sh runs a short one.
 *
 * The job looks like a real one: the model of --config (the fmnist-cnn by
 * default) with Quantum widths on weights and activations, split into
 * --stages pipeline stages by sfp_pipeline_plan as the trainer splits it;
 * rank r is stage r % S and replica r / S (lib/train/dist.c's layout) and
 * registers its stage's tensors with the names, kinds and value counts that
 * lib/train/coord_link.c reads from the model. Every worker reports every
 * LOAD_STEPS_PER_REPORT steps, --hz times a second, starting at a random
 * moment of its first period and then on a fixed schedule (a late report
 * does not push the next one back): learned widths that shrink towards a
 * few bits per tensor (a little different on each rank, so the daemon's
 * replica means have work to do), the job's loss, the footprint, samples
 * and traffic counters that grow. At the end every worker says goodbye.
 *
 * The client is blocking (one request in flight per socket, as in the
 * trainer), so --threads threads share the workers: worker i belongs to
 * thread i % T, which sleeps until the next of its workers is due. The
 * latency of a report is its round trip, the time sfp_coord_send_report
 * took; its lag is how late its thread started it against the schedule
 * (client-side queueing: two of a thread's workers due at once, or a client
 * that cannot keep up). A report is answered when the call returned SFP_OK,
 * failed otherwise (timed out after --timeout-s, or refused).
 *
 * Output on stdout, one "key value" line per figure (the scripts read it):
 * the job's shape, reports sent / answered / failed / timed out, reports
 * answered per second, latency and lag percentiles in ms, and the CPU the
 * client took during the run (all its threads, nng's included) as seconds
 * and as a percentage of one core. Errors go to stderr (the first failure
 * of each kind is shown). Exit 0 when the run was made (failures are part of
 * the result), 2 for bad usage, 1 when it could not run.
 */
#include <errno.h>
#include <math.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <time.h>
#include <unistd.h>

#include "bench/bench.h"
#include "sfp/config.h"
#include "sfp/coord.h"
#include "sfp/train.h"

#define LOAD_STEPS_PER_REPORT 10
#define LOAD_MAX_WORKERS 1024
#define LOAD_MAX_THREADS 256
#define LOAD_MAX_TENSORS 128
#define LOAD_START_E 6.0  /* learned widths start here ... */
#define LOAD_START_M 7.0
#define LOAD_TAU_STEPS 1500.0 /* ... and approach their end values at this pace */

typedef struct load_opts {
	const char *daemon, *config, *job, *token;
	int workers, stages, threads, goodbye;
	double hz, seconds, timeout_s;
} load_opts;

/* The job's tensors, each with its pipeline stage and where its learned
 * widths settle. */
typedef struct load_table {
	int n;
	sfp_coord_tensor t[LOAD_MAX_TENSORS];
	int stage[LOAD_MAX_TENSORS];
	float e_end[LOAD_MAX_TENSORS], m_end[LOAD_MAX_TENSORS];
	int batch;
} load_table;

typedef struct sim_worker {
	sfp_coord *c;
	int rank, stage, replica, replicas;
	int nt; /* its stage's tensors: */
	sfp_coord_tensor tensors[LOAD_MAX_TENSORS];
	float e_end[LOAD_MAX_TENSORS], m_end[LOAD_MAX_TENSORS];
	sfp_coord_width widths[LOAD_MAX_TENSORS], update[LOAD_MAX_TENSORS];
	uint64_t weight_values, boundary_values; /* for the traffic counters */
	uint64_t due_ns;
	int64_t reports;
	uint64_t raw[2], wire[2], enc_ns, dec_ns, comm_ns;
	sfp_rng rng;
} sim_worker;

/* What one client thread saw. */
typedef struct load_thread {
	pthread_t th;
	const load_opts *o;
	sim_worker **w;
	int nw;
	int batch;
	uint64_t end_ns, period_ns;
	uint64_t *lat_ns, *lag_ns; /* per answered report; per sent report */
	size_t n_lat, n_lag, cap;
	uint64_t sent, answered, failed, timed_out;
	char first_error[320];
} load_thread;

static uint64_t now_ns(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (uint64_t)ts.tv_sec * 1000000000ull + (uint64_t)ts.tv_nsec;
}

static void sleep_until(uint64_t t_ns)
{
	struct timespec ts = {(time_t)(t_ns / 1000000000ull), (long)(t_ns % 1000000000ull)};
	while (clock_nanosleep(CLOCK_MONOTONIC, TIMER_ABSTIME, &ts, NULL) == EINTR)
		;
}

static double cpu_seconds(void)
{
	struct rusage ru;
	getrusage(RUSAGE_SELF, &ru);
	return (double)ru.ru_utime.tv_sec + 1e-6 * (double)ru.ru_utime.tv_usec +
	       (double)ru.ru_stime.tv_sec + 1e-6 * (double)ru.ru_stime.tv_usec;
}

/* The model's tensors as the trainer registers them, and their stages. */
static int table_build(load_table *tb, const char *config, int stages, sfp_error *err)
{
	sfp_config *cfg = calloc(1, sizeof *cfg);
	sfp_model *m = NULL;
	char dir[1024];
	int first[SFP_CFG_MAX_LAYERS + 1];
	int rc;
	memset(tb, 0, sizeof *tb);
	if (!cfg)
		return sfp_error_set(err, SFP_ENOMEM, "out of memory");
	snprintf(dir, sizeof dir, "%s", config);
	char *slash = strrchr(dir, '/');
	if (slash)
		*slash = '\0';
	else
		snprintf(dir, sizeof dir, ".");
	if ((rc = sfp_config_load_all(cfg, config, NULL, 0, err)) < 0 ||
	    (rc = sfp_model_create(&m, &cfg->model, dir, cfg->train.batch_size, err)) < 0 ||
	    (rc = sfp_model_set_quant(m, SFP_QPOLICY_QUANTUM,
				      SFP_QTARGET_WEIGHTS | SFP_QTARGET_ACTIVATIONS, 8.0f, 23.0f,
				      err)) < 0 ||
	    (rc = sfp_pipeline_plan(m, stages, first, err)) < 0)
		goto out;
	tb->batch = cfg->train.batch_size;
	tb->n = sfp_model_n_qtensors(m);
	if (tb->n > LOAD_MAX_TENSORS) {
		rc = sfp_error_set(err, SFP_ERANGE, "'%s': %d tensors, at most %d here", config,
				   tb->n, LOAD_MAX_TENSORS);
		goto out;
	}
	for (int k = 0; k < tb->n; k++) {
		sfp_qtensor_info qi;
		sfp_model_qtensor(m, k, &qi);
		snprintf(tb->t[k].layer, sizeof tb->t[k].layer, "%s", qi.layer);
		snprintf(tb->t[k].kind, sizeof tb->t[k].kind, "%s", qi.kind);
		tb->t[k].count = qi.count;
		int layer = 0;
		for (int i = 0; i < sfp_model_n_layers(m); i++) {
			sfp_layer_info li;
			sfp_model_layer(m, i, &li);
			if (!strcmp(li.name, qi.layer))
				layer = i;
		}
		for (int s = 0; s < stages; s++)
			if (layer >= first[s] && layer < first[s + 1])
				tb->stage[k] = s;
		/* a spread of end widths like the learned ones (docs/bitlength.md) */
		tb->e_end[k] = 3.0f + (float)((k * 7) % 5) * 0.3f;
		tb->m_end[k] = 1.0f + (float)((k * 5) % 7) * 0.4f;
	}
out:
	sfp_model_free(m);
	free(cfg);
	return rc;
}

static void worker_setup(sim_worker *w, const load_table *tb, int rank, int stages)
{
	w->rank = rank;
	w->stage = rank % stages;
	w->replica = rank / stages;
	for (int k = 0; k < tb->n; k++) {
		if (tb->stage[k] != w->stage)
			continue;
		w->tensors[w->nt] = tb->t[k];
		w->e_end[w->nt] = tb->e_end[k];
		w->m_end[w->nt] = tb->m_end[k];
		if (!strcmp(tb->t[k].kind, "weights"))
			w->weight_values += tb->t[k].count;
		else
			w->boundary_values = tb->t[k].count; /* the stage's last activation */
		w->nt++;
	}
	sfp_rng_seed(&w->rng, 0x5fd10adull + (uint64_t)rank);
}

static float clampf(float v, float lo, float hi)
{
	return v < lo ? lo : v > hi ? hi : v;
}

/* The report of w's next step. */
static void report_fill(sim_worker *w, const load_opts *o, int batch, sfp_coord_report *r,
			sfp_coord_traffic *tr)
{
	const int64_t step = (w->reports + 1) * LOAD_STEPS_PER_REPORT;
	const double f = exp(-(double)step / LOAD_TAU_STEPS);
	double bits = 0.0, values = 0.0;
	for (int k = 0; k < w->nt; k++) {
		sfp_coord_width *x = &w->widths[k];
		x->n_e = clampf((float)(w->e_end[k] + (LOAD_START_E - w->e_end[k]) * f) +
				    0.1f * (sfp_rng_uniform(&w->rng) - 0.5f),
				1.0f, 8.0f);
		x->n_m = clampf((float)(w->m_end[k] + (LOAD_START_M - w->m_end[k]) * f) +
				    0.2f * (sfp_rng_uniform(&w->rng) - 0.5f),
				0.0f, 23.0f);
		x->e = (unsigned)ceilf(x->n_e);
		x->m = (unsigned)ceilf(x->n_m);
		x->g_e = 0.01f * (sfp_rng_uniform(&w->rng) - 0.5f);
		x->g_m = 0.01f * (sfp_rng_uniform(&w->rng) - 0.5f);
		bits += (double)w->tensors[k].count * (1.0 + x->e + x->m);
		values += (double)w->tensors[k].count;
	}
	const double fp = values > 0 ? bits / values : 32.0;
	/* per step: the ring all-reduce sends 2 (R-1)/R of the stage's weight
	 * gradients; a pipeline stage passes its boundary activation on */
	const int R = w->replicas;
	const uint64_t grad = R > 1 ? 2 * (uint64_t)(R - 1) * w->weight_values * 4 / (uint64_t)R : 0;
	const uint64_t act = w->stage < o->stages - 1 ? w->boundary_values * 4 : 0;
	w->raw[0] += grad * LOAD_STEPS_PER_REPORT;
	w->wire[0] += (uint64_t)((double)grad * LOAD_STEPS_PER_REPORT * fp / 32.0);
	w->raw[1] += act * LOAD_STEPS_PER_REPORT;
	w->wire[1] += (uint64_t)((double)act * LOAD_STEPS_PER_REPORT * fp / 32.0);
	w->enc_ns += 2000000 + sfp_rng_below(&w->rng, 400000);
	w->dec_ns += 1200000 + sfp_rng_below(&w->rng, 200000);
	w->comm_ns += 4000000 + sfp_rng_below(&w->rng, 2000000);
	int ntr = 0;
	tr[ntr++] = (sfp_coord_traffic){"gradients", w->raw[0], w->wire[0], w->enc_ns, w->dec_ns,
					w->comm_ns};
	if (act)
		tr[ntr++] = (sfp_coord_traffic){"activations", w->raw[1], w->wire[1], 0, 0, 0};
	memset(r, 0, sizeof *r);
	snprintf(r->job, sizeof r->job, "%s", o->job);
	r->rank = w->rank;
	r->step = step;
	/* the job's loss: the trainer sums it over the ranks, so all send the same */
	r->loss = 0.3 + 2.0 * exp(-(double)step / 1500.0) + 0.02 * sin((double)step * 0.05);
	r->samples = (uint64_t)LOAD_STEPS_PER_REPORT * (uint64_t)batch;
	r->n_widths = w->nt;
	r->widths = w->widths;
	r->footprint_bits = fp;
	r->n_traffic = ntr;
	r->traffic = tr;
}

static sim_worker *next_due(load_thread *t)
{
	sim_worker *best = t->w[0];
	for (int i = 1; i < t->nw; i++)
		if (t->w[i]->due_ns < best->due_ns)
			best = t->w[i];
	return best;
}

static void *thread_main(void *arg)
{
	load_thread *t = arg;
	for (;;) {
		sim_worker *w = next_due(t);
		if (w->due_ns >= t->end_ns)
			break;
		sleep_until(w->due_ns);
		sfp_coord_report r;
		sfp_coord_traffic tr[2];
		sfp_coord_update u = {.widths = w->update, .cap = LOAD_MAX_TENSORS};
		sfp_error err;
		report_fill(w, t->o, t->batch, &r, tr);
		const uint64_t t0 = now_ns();
		int rc = sfp_coord_send_report(w->c, &r, &u, &err);
		const uint64_t t1 = now_ns();
		t->sent++;
		if (t->n_lag < t->cap)
			t->lag_ns[t->n_lag++] = t0 > w->due_ns ? t0 - w->due_ns : 0;
		if (rc == SFP_OK) {
			t->answered++;
			if (t->n_lat < t->cap)
				t->lat_ns[t->n_lat++] = t1 - t0;
		} else {
			t->failed++;
			t->timed_out += rc == SFP_ETIMEDOUT;
			if (!t->first_error[0])
				snprintf(t->first_error, sizeof t->first_error, "rank %d: %s", w->rank,
					 err.msg);
		}
		w->reports++;
		w->due_ns += t->period_ns;
	}
	return NULL;
}

static int cmp_u64(const void *a, const void *b)
{
	const uint64_t x = *(const uint64_t *)a, y = *(const uint64_t *)b;
	return x < y ? -1 : x > y;
}

/* Nearest-rank percentile of sorted v[0..n), in ms (0 for none). */
static double pct_ms(const uint64_t *v, size_t n, double p)
{
	if (!n)
		return 0.0;
	size_t i = (size_t)ceil(p / 100.0 * (double)n);
	return 1e-6 * (double)v[i ? i - 1 : 0];
}

static const char *usage_text =
    "usage: sfp bench daemon --daemon URL [--workers N] [--hz F] [--seconds S]\n"
    "         [--stages S] [--threads T] [--config FILE] [--job NAME] [--token T]\n"
    "         [--timeout-s S] [--no-goodbye]\n";

static int parse(load_opts *o, int argc, char **argv)
{
	*o = (load_opts){.config = "deploy/examples/fmnist-cnn.yaml",
			 .job = "load",
			 .token = getenv("SFP_TOKEN"),
			 .workers = 256,
			 .stages = 4,
			 .threads = 16,
			 .goodbye = 1,
			 .hz = 10.0,
			 .seconds = 30.0,
			 .timeout_s = 1.0};
	for (int i = 1; i < argc; i++) {
		const char *a = argv[i], *v = i + 1 < argc ? argv[i + 1] : NULL;
		if (!strcmp(a, "--no-goodbye")) {
			o->goodbye = 0;
			continue;
		}
		if (!v) {
			fprintf(stderr, "sfp bench daemon: '%s' needs a value\n%s", a, usage_text);
			return -1;
		}
		i++;
		if (!strcmp(a, "--daemon"))
			o->daemon = v;
		else if (!strcmp(a, "--config"))
			o->config = v;
		else if (!strcmp(a, "--job"))
			o->job = v;
		else if (!strcmp(a, "--token"))
			o->token = v;
		else if (!strcmp(a, "--workers"))
			o->workers = atoi(v);
		else if (!strcmp(a, "--stages"))
			o->stages = atoi(v);
		else if (!strcmp(a, "--threads"))
			o->threads = atoi(v);
		else if (!strcmp(a, "--hz"))
			o->hz = atof(v);
		else if (!strcmp(a, "--seconds"))
			o->seconds = atof(v);
		else if (!strcmp(a, "--timeout-s"))
			o->timeout_s = atof(v);
		else {
			fprintf(stderr, "sfp bench daemon: unknown option '%s'\n%s", a, usage_text);
			return -1;
		}
	}
	if (!o->daemon || o->workers < 1 || o->workers > LOAD_MAX_WORKERS || o->stages < 1 ||
	    o->workers % o->stages || o->threads < 1 || o->threads > LOAD_MAX_THREADS ||
	    !(o->hz > 0 && o->hz <= 1000) || !(o->seconds > 0 && o->seconds <= 86400) ||
	    !(o->timeout_s > 0) || strlen(o->job) >= SFP_COORD_NAME) {
		fprintf(stderr,
			"sfp bench daemon: --daemon URL is required; 1..%d workers, a multiple of "
			"--stages; 1..%d threads; 0 < hz <= 1000; seconds and timeout positive\n%s",
			LOAD_MAX_WORKERS, LOAD_MAX_THREADS, usage_text);
		return -1;
	}
	if (o->threads > o->workers)
		o->threads = o->workers;
	return 0;
}

int sfp_bench_daemon_main(int argc, char **argv)
{
	load_opts o;
	load_table tb;
	sfp_error err;
	sim_worker *ws = NULL;
	load_thread *th = NULL;
	uint64_t *lat = NULL, *lag = NULL;
	int rc = 1;
	char hostname[SFP_COORD_NAME] = "";
	if (parse(&o, argc, argv) < 0)
		return 2;
	if (table_build(&tb, o.config, o.stages, &err) < 0) {
		fprintf(stderr, "sfp bench daemon: %s\n", err.msg);
		return sfp_exit_code(err.code);
	}
	const int replicas = o.workers / o.stages;
	ws = calloc((size_t)o.workers, sizeof *ws);
	th = calloc((size_t)o.threads, sizeof *th);
	if (!ws || !th)
		goto oom;
	gethostname(hostname, sizeof hostname - 1);

	/* connect and register every worker, as a trainer's ranks do at start */
	uint64_t reg_failed = 0;
	for (int i = 0; i < o.workers; i++) {
		sim_worker *w = &ws[i];
		worker_setup(w, &tb, i, o.stages);
		w->replicas = replicas;
		if (sfp_coord_connect(&w->c, o.daemon, o.token ? o.token : "", o.timeout_s, &err) <
		    0) {
			fprintf(stderr, "sfp bench daemon: %s\n", err.msg);
			rc = sfp_exit_code(err.code);
			goto out;
		}
		sfp_coord_hello h = {.rank = i,
				     .world = o.workers,
				     .replica = w->replica,
				     .stage = w->stage,
				     .n_tensors = w->nt,
				     .tensors = w->tensors,
				     .pid = (int)getpid(),
				     .report_every = LOAD_STEPS_PER_REPORT};
		snprintf(h.job, sizeof h.job, "%s", o.job);
		snprintf(h.policy, sizeof h.policy, "quantum");
		snprintf(h.host, sizeof h.host, "%s", hostname);
		if (sfp_coord_register(w->c, &h, &err) < 0 && reg_failed++ == 0)
			fprintf(stderr, "sfp bench daemon: register of rank %d: %s\n", i, err.msg);
	}

	/* the run: every worker starts at a random moment of its first period */
	const uint64_t period = (uint64_t)(1e9 / o.hz);
	const uint64_t start = now_ns() + 100000000ull;
	const uint64_t end = start + (uint64_t)(o.seconds * 1e9);
	const size_t per_thread = (size_t)(o.workers / o.threads + 1);
	const size_t cap = per_thread * (size_t)(o.seconds * o.hz + 2);
	sim_worker **slots = calloc((size_t)o.threads * per_thread, sizeof *slots);
	if (!slots)
		goto oom;
	for (int t = 0; t < o.threads; t++) {
		load_thread *x = &th[t];
		x->o = &o;
		x->w = slots + (size_t)t * per_thread;
		x->batch = tb.batch;
		x->end_ns = end;
		x->period_ns = period;
		x->cap = cap;
		x->lat_ns = malloc(cap * sizeof *x->lat_ns);
		x->lag_ns = malloc(cap * sizeof *x->lag_ns);
		if (!x->lat_ns || !x->lag_ns) {
			free(slots);
			goto oom;
		}
	}
	/* threads own disjoint workers; slots holds per_thread entries per thread */
	for (int i = 0; i < o.workers; i++) {
		load_thread *x = &th[i % o.threads];
		x->w[x->nw++] = &ws[i];
		ws[i].due_ns = start + sfp_rng_below(&ws[i].rng, period);
	}
	const double cpu0 = cpu_seconds();
	for (int t = 0; t < o.threads; t++) {
		if (pthread_create(&th[t].th, NULL, thread_main, &th[t]) != 0) {
			fprintf(stderr, "sfp bench daemon: cannot start a thread\n");
			for (int k = 0; k < t; k++)
				pthread_join(th[k].th, NULL);
			free(slots);
			goto out;
		}
	}
	for (int t = 0; t < o.threads; t++)
		pthread_join(th[t].th, NULL);
	/* from the schedule's start to the last answer */
	const double wall = 1e-9 * (double)(now_ns() - start);
	const double cpu = cpu_seconds() - cpu0;
	free(slots);

	uint64_t bye_failed = 0;
	for (int i = 0; i < o.workers && o.goodbye; i++)
		if (sfp_coord_goodbye(ws[i].c, o.job, i, ws[i].reports * LOAD_STEPS_PER_REPORT, 1,
				      &err) < 0 &&
		    bye_failed++ == 0)
			fprintf(stderr, "sfp bench daemon: goodbye of rank %d: %s\n", i, err.msg);

	uint64_t sent = 0, answered = 0, failed = 0, timed_out = 0;
	size_t n_lat = 0, n_lag = 0;
	for (int t = 0; t < o.threads; t++) {
		sent += th[t].sent;
		answered += th[t].answered;
		failed += th[t].failed;
		timed_out += th[t].timed_out;
		n_lat += th[t].n_lat;
		n_lag += th[t].n_lag;
		if (th[t].first_error[0])
			fprintf(stderr, "sfp bench daemon: a report failed: %s\n", th[t].first_error);
	}
	lat = malloc((n_lat + 1) * sizeof *lat);
	lag = malloc((n_lag + 1) * sizeof *lag);
	if (!lat || !lag)
		goto oom;
	n_lat = n_lag = 0;
	for (int t = 0; t < o.threads; t++) {
		memcpy(lat + n_lat, th[t].lat_ns, th[t].n_lat * sizeof *lat);
		memcpy(lag + n_lag, th[t].lag_ns, th[t].n_lag * sizeof *lag);
		n_lat += th[t].n_lat;
		n_lag += th[t].n_lag;
	}
	qsort(lat, n_lat, sizeof *lat, cmp_u64);
	qsort(lag, n_lag, sizeof *lag, cmp_u64);

	printf("job %s\n", o.job);
	printf("workers %d\n", o.workers);
	printf("stages %d\n", o.stages);
	printf("replicas %d\n", replicas);
	printf("tensors %d\n", tb.n);
	printf("hz %g\n", o.hz);
	printf("seconds %.1f\n", wall);
	printf("client_threads %d\n", o.threads);
	printf("registers_failed %llu\n", (unsigned long long)reg_failed);
	printf("reports_sent %llu\n", (unsigned long long)sent);
	printf("reports_answered %llu\n", (unsigned long long)answered);
	printf("reports_failed %llu\n", (unsigned long long)failed);
	printf("reports_timed_out %llu\n", (unsigned long long)timed_out);
	printf("goodbyes_failed %llu\n", (unsigned long long)bye_failed);
	printf("reports_per_s %.1f\n", wall > 0 ? (double)answered / wall : 0.0);
	printf("latency_ms_p50 %.3f\n", pct_ms(lat, n_lat, 50));
	printf("latency_ms_p90 %.3f\n", pct_ms(lat, n_lat, 90));
	printf("latency_ms_p99 %.3f\n", pct_ms(lat, n_lat, 99));
	printf("latency_ms_p999 %.3f\n", pct_ms(lat, n_lat, 99.9));
	printf("latency_ms_max %.3f\n", n_lat ? 1e-6 * (double)lat[n_lat - 1] : 0.0);
	printf("lag_ms_p50 %.3f\n", pct_ms(lag, n_lag, 50));
	printf("lag_ms_p99 %.3f\n", pct_ms(lag, n_lag, 99));
	printf("lag_ms_max %.3f\n", n_lag ? 1e-6 * (double)lag[n_lag - 1] : 0.0);
	printf("client_cpu_s %.2f\n", cpu);
	printf("client_cpu_pct %.1f\n", wall > 0 ? 100.0 * cpu / wall : 0.0);
	rc = 0;
	goto out;
oom:
	fprintf(stderr, "sfp bench daemon: out of memory\n");
	rc = 1;
out:
	for (int i = 0; ws && i < o.workers; i++)
		sfp_coord_close(ws[i].c);
	for (int t = 0; th && t < o.threads; t++) {
		free(th[t].lat_ns);
		free(th[t].lag_ns);
	}
	free(ws);
	free(th);
	free(lat);
	free(lag);
	return rc;
}
