/*
 * test_coord.c -- the worker <-> daemon protocol over real nng sockets
 * (inproc://): registration, Quantum width aggregation across replicas,
 * BitWave on the reported loss, the job token, version and malformed
 * requests refused and counted, a restarted daemon re-learning a worker, and
 * a daemon that is not there costing a bounded wait.
 */
#include <CUnit/CUnit.h>
#include <math.h>
#include <nng/nng.h>
#include <nng/protocol/reqrep0/rep.h>
#include <pthread.h>
#include <stdatomic.h>
#include <string.h>

#include "proto/sfp.pb-c.h"
#include "sfp/coord.h"
#include "tests/util/testutil.h"

typedef struct daemon_sim {
	const char *url;
	const char *token;
	nng_socket sock;
	pthread_t th;
	atomic_int stop, restart;
	sfp_coord_server *srv;
	int drops[SFP_DROP_REASONS];
	int registers, reports;
} daemon_sim;

static void on_drop(void *u, int reason)
{
	((daemon_sim *)u)->drops[reason]++;
}
static void on_register(void *u, const sfp_coord_hello *h, uint64_t now)
{
	(void)h, (void)now;
	((daemon_sim *)u)->registers++;
}
static void on_report(void *u, const sfp_coord_report *r, const sfp_coord_hello *h, uint64_t now)
{
	(void)r, (void)h, (void)now;
	((daemon_sim *)u)->reports++;
}

static void *serve(void *arg)
{
	daemon_sim *d = arg;
	while (!atomic_load(&d->stop)) {
		void *buf = NULL;
		size_t n = 0;
		if (nng_recv(d->sock, &buf, &n, NNG_FLAG_ALLOC) != 0)
			continue; /* the 50 ms receive timeout: check the flags */
		if (atomic_exchange(&d->restart, 0)) { /* a daemon that lost its state */
			sfp_coord_hooks hk = {d, on_register, on_report, NULL, NULL, on_drop};
			sfp_coord_server_free(d->srv);
			sfp_coord_server_create(&d->srv, d->token, &hk, NULL);
		}
		const void *reply;
		size_t rlen;
		sfp_coord_server_handle(d->srv, buf, n, &reply, &rlen, 0);
		nng_free(buf, n);
		nng_send(d->sock, (void *)reply, rlen, 0);
	}
	return NULL;
}

static void start(daemon_sim *d, const char *url, const char *token)
{
	memset(d, 0, sizeof *d);
	d->url = url;
	d->token = token;
	sfp_coord_hooks hk = {d, on_register, on_report, NULL, NULL, on_drop};
	CU_ASSERT_EQUAL_FATAL(sfp_coord_server_create(&d->srv, token, &hk, NULL), SFP_OK);
	CU_ASSERT_EQUAL_FATAL(nng_rep0_open(&d->sock), 0);
	nng_socket_set_ms(d->sock, NNG_OPT_RECVTIMEO, 50);
	CU_ASSERT_EQUAL_FATAL(nng_listen(d->sock, url, NULL, 0), 0);
	pthread_create(&d->th, NULL, serve, d);
}

static void stop(daemon_sim *d)
{
	atomic_store(&d->stop, 1);
	pthread_join(d->th, NULL);
	nng_close(d->sock);
	sfp_coord_server_free(d->srv);
}

static const sfp_coord_tensor tensors[2] = {{"conv1", "weights", 400}, {"relu1", "activations", 1000}};

static sfp_coord_hello hello(int rank, int replica, const char *policy)
{
	sfp_coord_hello h = {.rank = rank, .world = 2, .replica = replica, .stage = 0,
			     .n_tensors = 2, .tensors = tensors, .pid = 1, .report_every = 10};
	snprintf(h.job, sizeof h.job, "job1");
	snprintf(h.policy, sizeof h.policy, "%s", policy);
	h.bitwave = (sfp_bitwave_cfg){0.5f, 0.02f, 10, 1, 7, 3, 6, 2};
	return h;
}

static void test_quantum_mean(void)
{
	daemon_sim d;
	start(&d, "inproc://coord-q", "");
	sfp_coord *a = NULL, *b = NULL;
	sfp_error err;
	CU_ASSERT_EQUAL_FATAL(sfp_coord_connect(&a, d.url, "", 2.0, &err), SFP_OK);
	CU_ASSERT_EQUAL_FATAL(sfp_coord_connect(&b, d.url, "", 2.0, &err), SFP_OK);
	sfp_coord_hello h0 = hello(0, 0, "quantum"), h1 = hello(1, 1, "quantum");
	CU_ASSERT_EQUAL(sfp_coord_register(a, &h0, &err), SFP_OK);
	CU_ASSERT_EQUAL(sfp_coord_register(b, &h1, &err), SFP_OK);
	sfp_coord_width w0[2] = {{4.0f, 2.0f, 4, 2, 0, 0}, {5.0f, 3.0f, 5, 3, 0, 0}};
	sfp_coord_width w1[2] = {{6.0f, 4.0f, 6, 4, 0, 0}, {3.0f, 1.5f, 3, 2, 0, 0}};
	sfp_coord_report r = {.rank = 0, .step = 10, .loss = 1.0, .samples = 30, .n_widths = 2, .widths = w0};
	snprintf(r.job, sizeof r.job, "job1");
	sfp_coord_width got[2];
	sfp_coord_update u = {.widths = got, .cap = 2};
	CU_ASSERT_EQUAL(sfp_coord_send_report(a, &r, &u, &err), SFP_OK);
	CU_ASSERT(u.valid && !u.set_all && u.n_widths == 2 && got[0].n_e == 4.0f); /* alone so far */
	r.rank = 1;
	r.samples = 10;
	r.widths = w1;
	CU_ASSERT_EQUAL(sfp_coord_send_report(b, &r, &u, &err), SFP_OK);
	/* sample-weighted: (30 x 4 + 10 x 6) / 40 = 4.5; (30 x 1.5... */
	CU_ASSERT(u.valid && u.n_widths == 2);
	CU_ASSERT_DOUBLE_EQUAL(got[0].n_e, 4.5, 1e-6);
	CU_ASSERT_DOUBLE_EQUAL(got[0].n_m, 2.5, 1e-6);
	CU_ASSERT_DOUBLE_EQUAL(got[1].n_m, (30 * 3.0 + 10 * 1.5) / 40.0, 1e-6);
	CU_ASSERT_EQUAL(got[0].e, 5u);
	CU_ASSERT_EQUAL(d.registers, 2);
	CU_ASSERT_EQUAL(d.reports, 2);
	/* a report that does not match the registration is refused */
	r.n_widths = 1;
	CU_ASSERT_EQUAL(sfp_coord_send_report(b, &r, &u, &err), SFP_ECORRUPT);
	CU_ASSERT_EQUAL(d.drops[SFP_DROP_MALFORMED], 1);
	r.n_widths = 2;
	sfp_coord_width bad[2] = {{40.0f, 2.0f, 4, 2, 0, 0}, w1[1]};
	r.widths = bad;
	CU_ASSERT_EQUAL(sfp_coord_send_report(b, &r, &u, &err), SFP_ECORRUPT);
	CU_ASSERT(strstr(err.msg, "width") != NULL);
	/* goodbye: its widths no longer count */
	CU_ASSERT_EQUAL(sfp_coord_goodbye(b, "job1", 1, 20, 1, &err), SFP_OK);
	r.rank = 0;
	r.widths = w0;
	r.samples = 30;
	CU_ASSERT_EQUAL(sfp_coord_send_report(a, &r, &u, &err), SFP_OK);
	CU_ASSERT_DOUBLE_EQUAL(got[0].n_e, 4.0, 1e-6);
	sfp_coord_close(a);
	sfp_coord_close(b);
	stop(&d);
}

static void test_bitwave(void)
{
	daemon_sim d;
	start(&d, "inproc://coord-bw", "");
	sfp_coord *a = NULL;
	sfp_error err;
	CU_ASSERT_EQUAL_FATAL(sfp_coord_connect(&a, d.url, "", 2.0, &err), SFP_OK);
	sfp_coord_hello h = hello(0, 0, "bitwave");
	CU_ASSERT_EQUAL_FATAL(sfp_coord_register(a, &h, &err), SFP_OK);
	sfp_coord_width w[2] = {{6, 7, 6, 7, 0, 0}, {6, 7, 6, 7, 0, 0}};
	sfp_coord_report r = {.rank = 0, .loss = 2.0, .samples = 64, .n_widths = 2, .widths = w};
	snprintf(r.job, sizeof r.job, "job1");
	sfp_coord_update u = {0};
	unsigned m0 = 0, m_last = 0;
	/* period 10 steps at one report per 10 steps: a decision per report */
	for (int k = 1; k <= 6; k++) {
		r.step = 10 * k;
		r.loss = 2.0 * pow(0.7, k); /* steadily improving */
		CU_ASSERT_EQUAL_FATAL(sfp_coord_send_report(a, &r, &u, &err), SFP_OK);
		CU_ASSERT(u.valid && u.set_all);
		if (k == 1)
			m0 = u.m;
		m_last = u.m;
		/* a second report of the same step (another rank) is not a new observation */
		CU_ASSERT_EQUAL_FATAL(sfp_coord_send_report(a, &r, &u, &err), SFP_OK);
		CU_ASSERT_EQUAL(u.m, m_last);
	}
	CU_ASSERT(m0 == 7 && m_last < m0); /* improving loss removes mantissa bits */
	sfp_coord_close(a);
	stop(&d);
}

static void test_refusals(void)
{
	daemon_sim d;
	start(&d, "inproc://coord-tok", "s3cret");
	sfp_coord *a = NULL, *b = NULL;
	sfp_error err;
	CU_ASSERT_EQUAL_FATAL(sfp_coord_connect(&a, d.url, "wrong", 2.0, &err), SFP_OK);
	sfp_coord_hello h = hello(0, 0, "quantum");
	CU_ASSERT_EQUAL(sfp_coord_register(a, &h, &err), SFP_EINVAL);
	CU_ASSERT(strstr(err.msg, "token") != NULL);
	CU_ASSERT_EQUAL(d.drops[SFP_DROP_BAD_TOKEN], 1);
	CU_ASSERT_EQUAL(d.registers, 0);
	/* the right token, but a report before registering */
	CU_ASSERT_EQUAL_FATAL(sfp_coord_connect(&b, d.url, "s3cret", 2.0, &err), SFP_OK);
	sfp_coord_width w[2] = {{6, 7, 6, 7, 0, 0}, {6, 7, 6, 7, 0, 0}};
	sfp_coord_report r = {.rank = 0, .step = 1, .loss = 1.0, .n_widths = 2, .widths = w};
	snprintf(r.job, sizeof r.job, "job1");
	CU_ASSERT_EQUAL(sfp_coord_send_report(b, &r, NULL, &err), SFP_ENOENT);
	CU_ASSERT_EQUAL(d.drops[SFP_DROP_UNREGISTERED], 1);
	/* a daemon that restarted (state lost) is taught the worker again */
	CU_ASSERT_EQUAL(sfp_coord_register(b, &h, &err), SFP_OK);
	atomic_store(&d.restart, 1);
	CU_ASSERT_EQUAL(sfp_coord_send_report(b, &r, NULL, &err), SFP_OK);
	CU_ASSERT_EQUAL(d.reports, 1);
	sfp_coord_close(a);
	sfp_coord_close(b);
	stop(&d);

	/* bytes straight into the server: version, malformed, oversize */
	sfp_coord_server *s = NULL;
	int drops[SFP_DROP_REASONS] = {0};
	sfp_coord_hooks hk = {.user = drops, .on_drop = NULL};
	CU_ASSERT_EQUAL_FATAL(sfp_coord_server_create(&s, "", &hk, NULL), SFP_OK);
	Sfp__Request q;
	sfp__request__init(&q);
	q.version = 2;
	uint8_t buf[64];
	size_t n = sfp__request__pack(&q, buf);
	const void *reply;
	size_t rlen;
	sfp_coord_server_handle(s, buf, n, &reply, &rlen, 0);
	Sfp__Reply *rp = sfp__reply__unpack(NULL, rlen, reply);
	CU_ASSERT_FATAL(rp != NULL);
	CU_ASSERT(rp->body_case == SFP__REPLY__BODY_ERROR && rp->error->code == SFP__ERROR__CODE__VERSION &&
		  rp->error->version == SFP_COORD_VERSION && strstr(rp->error->message, "version 2"));
	sfp__reply__free_unpacked(rp, NULL);
	static const uint8_t junk[] = {0xff, 0xff, 0xff, 0xff, 0x0f, 0x12};
	sfp_coord_server_handle(s, junk, sizeof junk, &reply, &rlen, 0);
	rp = sfp__reply__unpack(NULL, rlen, reply);
	CU_ASSERT(rp && rp->body_case == SFP__REPLY__BODY_ERROR &&
		  rp->error->code == SFP__ERROR__CODE__MALFORMED);
	if (rp)
		sfp__reply__free_unpacked(rp, NULL);
	sfp_coord_server_handle(s, junk, SFP_COORD_MAX_MSG + 1, &reply, &rlen, 0); /* only len is read */
	rp = sfp__reply__unpack(NULL, rlen, reply);
	CU_ASSERT(rp && rp->error && rp->error->code == SFP__ERROR__CODE__TOO_LARGE);
	if (rp)
		sfp__reply__free_unpacked(rp, NULL);
	sfp_coord_server_free(s);
}

static void test_no_daemon(void)
{
	sfp_coord *a = NULL;
	sfp_error err;
	CU_ASSERT_EQUAL_FATAL(sfp_coord_connect(&a, "inproc://nobody-home", "", 0.2, &err), SFP_OK);
	sfp_coord_hello h = hello(0, 0, "fixed");
	uint64_t t0 = sfp_clock_ns();
	CU_ASSERT_EQUAL(sfp_coord_register(a, &h, &err), SFP_ETIMEDOUT);
	double took = (double)(sfp_clock_ns() - t0) * 1e-9;
	CU_ASSERT(took >= 0.15 && took < 2.0);
	CU_ASSERT(strstr(err.msg, "inproc://nobody-home") != NULL);
	sfp_coord_close(a);
	CU_ASSERT_EQUAL(sfp_coord_connect(&a, "bogus://x", "", 0.2, &err), SFP_EINVAL);
}

int main(void)
{
	static const test_case cases[] = {
		{"quantum widths: sample-weighted mean of the replicas", test_quantum_mean},
		{"bitwave on the reported loss, once per step", test_bitwave},
		{"token, unregistered, restart, version, malformed, oversize", test_refusals},
		{"no daemon: a bounded wait", test_no_daemon},
		{NULL, NULL},
	};
	return test_run_suite("coord", cases);
}
