/*
 * test_transport.c -- lib/transport's nng backend. Threads of this process
 * play the ranks of one job over ipc:// (paths in a temporary directory)
 * and tcp://127.0.0.1 (free ports), and raw nng sockets play a rank that
 * crashes or a stranger that sends garbage.
 *
 * CUnit's asserts are not thread-safe, so rank threads record their first
 * failed check and the main thread asserts on it.
 */
#include <arpa/inet.h>
#include <netinet/in.h>
#include <pthread.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#include <nng/nng.h>
#include <nng/protocol/pipeline0/pull.h>
#include <nng/protocol/pipeline0/push.h>

#include "sfp/transport.h"
#include "tests/util/testutil.h"

#define MAX_RANKS 4
#define OPEN_TIMEOUT_S 5.0
/* What every receive that should succeed gets; the failures we expect
 * must come much sooner than this. */
#define RECV_TIMEOUT_S 5.0
#define SHORT_TIMEOUT_S 0.3
/* A failure "detected quickly" came within this (vs RECV_TIMEOUT_S). */
#define QUICK_S 2.0
#define BIG_BYTES (32u << 20)

static double now_s(void)
{
	return (double)sfp_clock_ns() * 1e-9;
}

/* ---- a job: n rank URLs ------------------------------------------------- */

typedef struct job {
	int n;
	char *urls[MAX_RANKS];
	char *dir;
} job;

/*
 * A free port below the kernel's ephemeral range. Not the kernel's pick for
 * port 0: that comes from the ephemeral range, and a dialer that tries such
 * a port before its listener is up can be given the same port as its own
 * source and connect to itself (TCP simultaneous open), which then keeps
 * the listener from binding it.
 */
static int free_port(void)
{
	static unsigned seed;
	int lo = 32768;
	FILE *f = fopen("/proc/sys/net/ipv4/ip_local_port_range", "r");
	if (f) {
		if (fscanf(f, "%d", &lo) != 1)
			lo = 32768;
		fclose(f);
	}
	if (lo <= 10000)
		lo = 65536; /* odd setup: take ports above 10000 and hope */
	if (!seed)
		seed = (unsigned)getpid() ^ (unsigned)sfp_clock_ns();
	for (int tries = 0; tries < 100; tries++) {
		seed = seed * 1103515245u + 12345u;
		int port = 10000 + (int)((seed >> 8) % (unsigned)(lo - 10000));
		struct sockaddr_in a = {.sin_family = AF_INET,
					.sin_port = htons((uint16_t)port),
					.sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
		int fd = socket(AF_INET, SOCK_STREAM, 0);
		if (fd < 0)
			return -1;
		int ok = !bind(fd, (struct sockaddr *)&a, sizeof a);
		close(fd);
		if (ok)
			return port;
	}
	return -1;
}

static int job_init(job *j, int n, int tcp)
{
	int ports[MAX_RANKS] = {0};
	memset(j, 0, sizeof *j);
	j->n = n;
	if (!tcp && !(j->dir = test_tmpdir()))
		return -1;
	for (int r = 0; r < n; r++) {
		char u[256];
		if (tcp) {
			int dup;
			do { /* distinct within the job */
				if ((ports[r] = free_port()) < 0)
					return -1;
				dup = 0;
				for (int k = 0; k < r; k++)
					dup |= ports[k] == ports[r];
			} while (dup);
			snprintf(u, sizeof u, "tcp://127.0.0.1:%d", ports[r]);
		} else {
			snprintf(u, sizeof u, "ipc://%s/r%d", j->dir, r);
		}
		if (!(j->urls[r] = strdup(u)))
			return -1;
	}
	return 0;
}

static void job_release(job *j)
{
	for (int r = 0; r < j->n; r++)
		free(j->urls[r]);
	if (j->dir) {
		test_rmdir(j->dir);
		free(j->dir);
	}
}

/* ---- one-shot flags between threads ------------------------------------ */

typedef struct flag {
	pthread_mutex_t mu;
	pthread_cond_t cv;
	int set;
} flag;

static void flag_init(flag *f)
{
	pthread_mutex_init(&f->mu, NULL);
	pthread_cond_init(&f->cv, NULL);
	f->set = 0;
}

static void flag_destroy(flag *f)
{
	pthread_cond_destroy(&f->cv);
	pthread_mutex_destroy(&f->mu);
}

static void flag_raise(flag *f)
{
	pthread_mutex_lock(&f->mu);
	f->set = 1;
	pthread_cond_broadcast(&f->cv);
	pthread_mutex_unlock(&f->mu);
}

/* 1 when raised within `seconds`, 0 otherwise: a test that waits on a
 * thread that is stuck fails instead of hanging. */
static int flag_wait(flag *f, double seconds)
{
	struct timespec ts;
	clock_gettime(CLOCK_REALTIME, &ts);
	long long ns = ts.tv_nsec + (long long)(seconds * 1e9);
	ts.tv_sec += (time_t)(ns / 1000000000);
	ts.tv_nsec = (long)(ns % 1000000000);
	pthread_mutex_lock(&f->mu);
	int rc = 0;
	while (!f->set && rc == 0)
		rc = pthread_cond_timedwait(&f->cv, &f->mu, &ts);
	int set = f->set;
	pthread_mutex_unlock(&f->mu);
	return set;
}

/* ---- rank threads ------------------------------------------------------- */

typedef struct rank_ctx rank_ctx;
typedef int (*rank_fn)(rank_ctx *c, sfp_transport *t);

struct rank_ctx {
	const job *j;
	int rank;
	rank_fn body;
	void *arg;
	double open_timeout_s;
	pthread_t thread;
	int started;
	int open_rc;
	sfp_error open_err;
	double open_s; /* how long open took */
	char fail[512]; /* first failed check, "" when none */
};

static int fail_at(rank_ctx *c, int line, const char *what, const sfp_error *e)
{
	if (!c->fail[0])
		snprintf(c->fail, sizeof c->fail, "rank %d, line %d: %s%s%s", c->rank, line, what,
			 e ? " -- " : "", e ? e->msg : "");
	return -1;
}

#define CHECK(c, cond)                                                \
	do {                                                          \
		if (!(cond))                                          \
			return fail_at((c), __LINE__, #cond, NULL);   \
	} while (0)
/* The same, with the transport's error message in the report. */
#define CHECK_E(c, cond, e)                                           \
	do {                                                          \
		if (!(cond))                                          \
			return fail_at((c), __LINE__, #cond, (e));    \
	} while (0)

static void *rank_main(void *arg)
{
	rank_ctx *c = arg;
	sfp_transport *t;
	double t0 = now_s();
	c->open_rc = sfp_transport_open_nng(&t, c->rank, c->j->n, (const char *const *)c->j->urls,
					    c->open_timeout_s, &c->open_err);
	c->open_s = now_s() - t0;
	if (c->open_rc < 0)
		return NULL;
	sfp_transport_set_timeout(t, RECV_TIMEOUT_S);
	if (c->body)
		c->body(c, t);
	sfp_transport_close(t);
	return NULL;
}

/* Start the ranks whose bit is set in `mask`. */
static void ranks_start(rank_ctx *c, const job *j, unsigned mask, rank_fn body, void *arg,
			double open_timeout_s)
{
	for (int r = 0; r < j->n; r++) {
		memset(&c[r], 0, sizeof c[r]);
		c[r].j = j;
		c[r].rank = r;
		c[r].body = body;
		c[r].arg = arg;
		c[r].open_timeout_s = open_timeout_s;
		if (mask >> r & 1)
			c[r].started = !pthread_create(&c[r].thread, NULL, rank_main, &c[r]);
	}
}

/* Join them and assert that each opened and passed its checks. */
static void ranks_join(rank_ctx *c, const job *j, unsigned mask, int expect_open)
{
	for (int r = 0; r < j->n; r++) {
		if (!(mask >> r & 1))
			continue;
		CU_ASSERT_FATAL(c[r].started);
		pthread_join(c[r].thread, NULL);
		if (expect_open && c[r].open_rc < 0)
			fprintf(stderr, "\n    rank %d: open: %s\n", r, c[r].open_err.msg);
		if (c[r].fail[0])
			fprintf(stderr, "\n    %s\n", c[r].fail);
		if (expect_open)
			CU_ASSERT_EQUAL(c[r].open_rc, SFP_OK);
		CU_ASSERT_STRING_EQUAL(c[r].fail, "");
	}
}

/* Run body on every rank of a new job. */
static void run_all(int n, int tcp, rank_fn body, void *arg)
{
	job j;
	rank_ctx c[MAX_RANKS];
	CU_ASSERT_EQUAL_FATAL(job_init(&j, n, tcp), 0);
	ranks_start(c, &j, (1u << n) - 1, body, arg, OPEN_TIMEOUT_S);
	ranks_join(c, &j, (1u << n) - 1, 1);
	job_release(&j);
}

/* ---- helpers for bodies ------------------------------------------------- */

static void fill(uint8_t *p, size_t n, uint32_t seed)
{
	for (size_t i = 0; i < n; i++)
		p[i] = (uint8_t)(sfp_hash32(seed, (uint32_t)i) >> 24);
}

static int same(const uint8_t *p, size_t n, uint32_t seed)
{
	for (size_t i = 0; i < n; i++)
		if (p[i] != (uint8_t)(sfp_hash32(seed, (uint32_t)i) >> 24))
			return 0;
	return 1;
}

/* ---- ping-pong ----------------------------------------------------------- */

enum { PINGS = 200, PING_MAX = 4096 };

static int ping_pong(rank_ctx *c, sfp_transport *t)
{
	uint8_t buf[PING_MAX];
	sfp_error e = {0};
	size_t len;
	for (int i = 0; i < PINGS; i++) {
		size_t n = (size_t)(i * 37) % PING_MAX;
		if (c->rank == 0) {
			fill(buf, n, (uint32_t)i);
			CHECK_E(c, sfp_transport_send(t, 1, 7, buf, n, &e) == SFP_OK, &e);
			CHECK_E(c, sfp_transport_recv(t, 1, 7, buf, sizeof buf, &len, &e) == SFP_OK, &e);
			CHECK(c, len == n && same(buf, n, (uint32_t)i + 1000));
		} else {
			CHECK_E(c, sfp_transport_recv(t, 0, 7, buf, sizeof buf, &len, &e) == SFP_OK, &e);
			CHECK(c, len == n && same(buf, n, (uint32_t)i));
			fill(buf, n, (uint32_t)i + 1000);
			CHECK_E(c, sfp_transport_send(t, 0, 7, buf, n, &e) == SFP_OK, &e);
		}
	}
	return 0;
}

static void test_ping_pong_ipc(void)
{
	run_all(2, 0, ping_pong, NULL);
}

static void test_ping_pong_tcp(void)
{
	run_all(2, 1, ping_pong, NULL);
}

/* ---- many messages, mixed tags ------------------------------------------- */

enum { MIXED = 2000, MIXED_TAGS = 5 };
static const int mixed_tags[MIXED_TAGS] = {0, 1, 42, SFP_TAG_USER_MAX, SFP_TAG_USER_MAX + 7};

/* Which of mixed_tags message i carries: interleaved, uneven. */
static int mixed_class(int i)
{
	return (i * 7 + i / 3) % MIXED_TAGS;
}

/* Rank 0 sends everything and closes; rank 1 starts receiving only after
 * that, tag by tag in reverse, so sends must not wait for receives, every
 * message must be queued by tag, and close must flush. */
static int mixed(rank_ctx *c, sfp_transport *t)
{
	flag *sent = c->arg;
	sfp_error e = {0};
	uint8_t buf[64];
	size_t len;
	if (c->rank == 0) {
		uint32_t seq[MIXED_TAGS] = {0};
		for (int i = 0; i < MIXED; i++) {
			int k = mixed_class(i);
			size_t n = 4 + (size_t)i % 40;
			memset(buf, 0, sizeof buf);
			memcpy(buf, &seq[k], 4);
			seq[k]++;
			CHECK_E(c, sfp_transport_send(t, 1, mixed_tags[k], buf, n, &e) == SFP_OK,
				&e);
		}
		flag_raise(sent);
		return 0;
	}
	CHECK(c, flag_wait(sent, RECV_TIMEOUT_S));
	int total = 0;
	for (int k = MIXED_TAGS - 1; k >= 0; k--) {
		int expect = 0;
		for (int i = 0; i < MIXED; i++)
			expect += mixed_class(i) == k;
		for (uint32_t s = 0; s < (uint32_t)expect; s++) {
			uint32_t got;
			CHECK_E(c,
				sfp_transport_recv(t, 0, mixed_tags[k], buf, sizeof buf, &len, &e) ==
					SFP_OK,
				&e);
			memcpy(&got, buf, 4);
			CHECK(c, got == s && len >= 4 && len < 44);
			total++;
		}
	}
	CHECK(c, total == MIXED);
	return 0;
}

static void test_mixed_tags(void)
{
	flag sent;
	flag_init(&sent);
	run_all(2, 1, mixed, &sent);
	flag_destroy(&sent);
}

/* ---- 32 MiB --------------------------------------------------------------- */

static int big(rank_ctx *c, sfp_transport *t)
{
	sfp_error e = {0};
	uint8_t *buf = malloc(BIG_BYTES);
	size_t len = 1;
	CHECK(c, buf);
	int rc = 0;
	if (c->rank == 0) {
		fill(buf, BIG_BYTES, 32);
		if (sfp_transport_send(t, 1, 3, buf, BIG_BYTES, &e) ||
		    sfp_transport_send(t, 1, 3, buf, 0, &e))
			rc = fail_at(c, __LINE__, "send 32 MiB, then 0 bytes", &e);
		/* wait for the receiver's word, so this is not only a close test */
		else if (sfp_transport_recv(t, 1, 4, buf, 1, &len, &e) || len != 1)
			rc = fail_at(c, __LINE__, "ack", &e);
	} else {
		if (sfp_transport_recv(t, 0, 3, buf, BIG_BYTES, &len, &e))
			rc = fail_at(c, __LINE__, "receive 32 MiB", &e);
		else if (len != BIG_BYTES || !same(buf, BIG_BYTES, 32))
			rc = fail_at(c, __LINE__, "32 MiB arrive intact", NULL);
		else if (sfp_transport_recv(t, 0, 3, buf, BIG_BYTES, &len, &e) || len != 0)
			rc = fail_at(c, __LINE__, "empty message after it", &e);
		else if (sfp_transport_send(t, 0, 4, "!", 1, &e))
			rc = fail_at(c, __LINE__, "ack", &e);
	}
	free(buf);
	return rc;
}

static void test_big_tcp(void)
{
	run_all(2, 1, big, NULL);
}

static void test_big_ipc(void)
{
	run_all(2, 0, big, NULL);
}

/* ---- ring sendrecv --------------------------------------------------------- */

enum { RING = 4, ROUNDS = 20, RING_BYTES = 64 << 10 };

/* Every rank sends to its successor and receives from its predecessor at
 * once, with messages larger than any socket buffer. */
static int ring(rank_ctx *c, sfp_transport *t)
{
	sfp_error e = {0};
	uint8_t *s = malloc(RING_BYTES), *r = malloc(RING_BYTES);
	int rc = 0;
	const int to = (c->rank + 1) % RING, from = (c->rank + RING - 1) % RING;
	if (!s || !r)
		rc = fail_at(c, __LINE__, "malloc", NULL);
	for (int k = 0; k < ROUNDS && !rc; k++) {
		size_t len = 0, n = RING_BYTES - (size_t)k;
		fill(s, n, (uint32_t)(c->rank * 100 + k));
		if (sfp_transport_sendrecv(t, to, s, n, from, r, RING_BYTES, &len, k, &e))
			rc = fail_at(c, __LINE__, "sendrecv", &e);
		else if (len != n || !same(r, n, (uint32_t)(from * 100 + k)))
			rc = fail_at(c, __LINE__, "message from the predecessor", NULL);
	}
	free(s);
	free(r);
	return rc;
}

static void test_ring(void)
{
	run_all(RING, 1, ring, NULL);
}

/* ---- recv timeout ------------------------------------------------------------ */

/* Rank 1 is connected but never sends: rank 0's receive times out. */
static int silent_peer(rank_ctx *c, sfp_transport *t)
{
	flag *done = c->arg;
	if (c->rank == 1) {
		CHECK(c, flag_wait(done, RECV_TIMEOUT_S));
		return 0;
	}
	sfp_error e = {0};
	uint8_t buf[8];
	size_t len;
	sfp_transport_set_timeout(t, SHORT_TIMEOUT_S);
	double t0 = now_s();
	int rc = sfp_transport_recv(t, 1, 0, buf, sizeof buf, &len, &e);
	double dt = now_s() - t0;
	flag_raise(done);
	CHECK_E(c, rc == SFP_ETIMEDOUT && e.code == SFP_ETIMEDOUT, &e);
	CHECK_E(c, strstr(e.msg, "no message from rank 1 within 0.3 s"), &e);
	CHECK_E(c, !strstr(e.msg, "malformed"), &e);
	CHECK(c, dt >= SHORT_TIMEOUT_S - 0.01 && dt < QUICK_S);
	return 0;
}

static void test_recv_timeout(void)
{
	flag done;
	flag_init(&done);
	run_all(2, 0, silent_peer, &done);
	flag_destroy(&done);
}

/* ---- a peer that closes --------------------------------------------------------- */

/* Rank 1 sends three messages, waits a little and closes; rank 0 gets the
 * three, then SFP_EPEER for the fourth as soon as the BYE arrives. */
static int closing_peer(rank_ctx *c, sfp_transport *t)
{
	sfp_error e = {0};
	size_t len;
	uint8_t buf[8];
	if (c->rank == 1) {
		for (uint8_t i = 0; i < 3; i++)
			CHECK_E(c, sfp_transport_send(t, 0, 5, &i, 1, &e) == SFP_OK, &e);
		struct timespec ts = {0, 200000000};
		nanosleep(&ts, NULL);
		return 0;
	}
	for (uint8_t i = 0; i < 3; i++) {
		CHECK_E(c, sfp_transport_recv(t, 1, 5, buf, sizeof buf, &len, &e) == SFP_OK, &e);
		CHECK(c, len == 1 && buf[0] == i);
	}
	double t0 = now_s();
	int rc = sfp_transport_recv(t, 1, 5, buf, sizeof buf, &len, &e);
	CHECK_E(c, rc == SFP_EPEER, &e);
	CHECK(c, now_s() - t0 < QUICK_S);
	CHECK_E(c, strstr(e.msg, "rank 1 closed its transport"), &e);
	CHECK_E(c, sfp_transport_send(t, 1, 5, buf, 1, &e) == SFP_EPEER, &e);
	return 0;
}

static void test_peer_closes(void)
{
	run_all(2, 0, closing_peer, NULL);
}

/* ---- a peer that crashes (raw sockets, no BYE) ------------------------------------- */

enum { K_DATA = 0, K_HELLO = 1 };

/* The envelope as docs/transport.md describes it, written independently
 * of the library's encoder. */
static void envelope(uint8_t *p, int kind, uint32_t src, uint32_t size, uint32_t tag, uint64_t len)
{
	memset(p, 0, 32);
	memcpy(p, "SFPN", 4);
	p[4] = 1;
	p[5] = (uint8_t)kind;
	for (int i = 0; i < 4; i++) {
		p[8 + i] = (uint8_t)(src >> 8 * i);
		p[12 + i] = (uint8_t)(size >> 8 * i);
		p[16 + i] = (uint8_t)(tag >> 8 * i);
	}
	for (int i = 0; i < 8; i++)
		p[24 + i] = (uint8_t)(len >> 8 * i);
}

typedef struct crash_arg {
	flag opened, crashed, checked;
} crash_arg;

static int crash_checks(rank_ctx *c, sfp_transport *t)
{
	crash_arg *a = c->arg;
	sfp_error e = {0};
	uint8_t buf[16];
	size_t len;
	CHECK(c, flag_wait(&a->crashed, RECV_TIMEOUT_S));
	CHECK_E(c, sfp_transport_recv(t, 1, 9, buf, sizeof buf, &len, &e) == SFP_OK, &e);
	CHECK(c, len == 10 && !memcmp(buf, "last words", 10));
	double t0 = now_s();
	CHECK_E(c, sfp_transport_recv(t, 1, 9, buf, sizeof buf, &len, &e) == SFP_EPEER, &e);
	CHECK(c, now_s() - t0 < QUICK_S);
	CHECK_E(c, strstr(e.msg, "connection with rank 1 closed"), &e);
	CHECK_E(c, sfp_transport_send(t, 1, 9, buf, 1, &e) == SFP_EPEER, &e);
	return 0;
}

static int crash_victim(rank_ctx *c, sfp_transport *t)
{
	crash_arg *a = c->arg;
	flag_raise(&a->opened);
	int rc = crash_checks(c, t);
	flag_raise(&a->checked);
	return rc;
}

/* Rank 1 is played by hand: a listener for rank 0 to reach, and a dialer
 * that says HELLO and sends one message. Then it "dies" by closing one of
 * them without a BYE: `which` 0 closes the dialer (rank 0 sees its PULL
 * pipe close), 1 the listener (rank 0 sees its PUSH pipe close). */
static void peer_crashes(int which)
{
	job j;
	rank_ctx c[2];
	crash_arg a;
	nng_socket raw[2];
	uint8_t m[32 + 10];
	CU_ASSERT_EQUAL_FATAL(job_init(&j, 2, 0), 0);
	flag_init(&a.opened);
	flag_init(&a.crashed);
	flag_init(&a.checked);
	CU_ASSERT_EQUAL_FATAL(nng_push0_open(&raw[0]), 0);
	CU_ASSERT_EQUAL_FATAL(nng_pull0_open(&raw[1]), 0);
	CU_ASSERT_EQUAL_FATAL(nng_listen(raw[1], j.urls[1], NULL, 0), 0);
	CU_ASSERT_EQUAL(nng_socket_set_ms(raw[0], NNG_OPT_SENDTIMEO, 5000), 0);
	CU_ASSERT_EQUAL(nng_dial(raw[0], j.urls[0], NULL, NNG_FLAG_NONBLOCK), 0);
	ranks_start(c, &j, 1u, crash_victim, &a, OPEN_TIMEOUT_S);
	envelope(m, K_HELLO, 1, 2, 0, 0);
	CU_ASSERT_EQUAL(nng_send(raw[0], m, 32, 0), 0);
	envelope(m, K_DATA, 1, 2, 9, 10);
	memcpy(m + 32, "last words", 10);
	CU_ASSERT_EQUAL(nng_send(raw[0], m, sizeof m, 0), 0);
	CU_ASSERT(flag_wait(&a.opened, OPEN_TIMEOUT_S));
	/* nng has no linger: give the message time to cross before closing */
	struct timespec ts = {0, 100000000};
	nanosleep(&ts, NULL);
	nng_close(raw[which]);
	flag_raise(&a.crashed);
	/* then the rest of it, or rank 0's close would wait for it to go quiet */
	CU_ASSERT(flag_wait(&a.checked, RECV_TIMEOUT_S));
	nng_close(raw[!which]);
	ranks_join(c, &j, 1u, 1);
	flag_destroy(&a.opened);
	flag_destroy(&a.crashed);
	flag_destroy(&a.checked);
	job_release(&j);
}

static void test_peer_crashes_pull(void)
{
	peer_crashes(0);
}

static void test_peer_crashes_push(void)
{
	peer_crashes(1);
}

/* ---- a message over cap ------------------------------------------------------------- */

static int oversize(rank_ctx *c, sfp_transport *t)
{
	sfp_error e = {0};
	uint8_t buf[1000];
	size_t len = 12345;
	if (c->rank == 1) {
		fill(buf, sizeof buf, 1);
		CHECK_E(c, sfp_transport_send(t, 0, 3, buf, sizeof buf, &e) == SFP_OK, &e);
		fill(buf, 10, 2);
		CHECK_E(c, sfp_transport_send(t, 0, 3, buf, 10, &e) == SFP_OK, &e);
		CHECK_E(c, sfp_transport_recv(t, 0, 4, buf, 1, &len, &e) == SFP_OK, &e);
		return 0;
	}
	CHECK_E(c, sfp_transport_recv(t, 1, 3, buf, 100, &len, &e) == SFP_ENOSPC, &e);
	CHECK_E(c, strstr(e.msg, "1000 bytes from rank 1"), &e);
	CHECK(c, len == 12345); /* untouched on error */
	CHECK_E(c, sfp_transport_recv(t, 1, 3, buf, 100, &len, &e) == SFP_OK, &e);
	CHECK(c, len == 10 && same(buf, 10, 2));
	CHECK_E(c, sfp_transport_send(t, 1, 4, "!", 1, &e) == SFP_OK, &e);
	return 0;
}

static void test_oversize(void)
{
	run_all(2, 1, oversize, NULL);
}

/* ---- garbage from the network ----------------------------------------------------------- */

typedef struct junk_arg {
	flag opened, junk_sent, checked, junk_closed;
} junk_arg;

static int junk_target(rank_ctx *c, sfp_transport *t)
{
	junk_arg *a = c->arg;
	sfp_error e = {0};
	uint8_t buf[16];
	size_t len;
	if (c->rank == 1) {
		CHECK(c, flag_wait(&a->junk_sent, RECV_TIMEOUT_S));
		CHECK_E(c, sfp_transport_send(t, 0, 1, "ok", 2, &e) == SFP_OK, &e);
		CHECK(c, flag_wait(&a->junk_closed, RECV_TIMEOUT_S));
		CHECK_E(c, sfp_transport_send(t, 0, 3, "still", 5, &e) == SFP_OK, &e);
		CHECK_E(c, sfp_transport_recv(t, 0, 4, buf, 1, &len, &e) == SFP_OK, &e);
		return 0;
	}
	flag_raise(&a->opened);
	CHECK_E(c, sfp_transport_recv(t, 1, 1, buf, sizeof buf, &len, &e) == SFP_OK, &e);
	CHECK(c, len == 2 && !memcmp(buf, "ok", 2));
	sfp_transport_set_timeout(t, SHORT_TIMEOUT_S);
	int rc = sfp_transport_recv(t, 1, 2, buf, sizeof buf, &len, &e);
	flag_raise(&a->checked);
	CHECK_E(c, rc == SFP_ETIMEDOUT, &e);
	CHECK_E(c, strstr(e.msg, "7 malformed messages were dropped"), &e);
	/* the stranger hanging up is not rank 1 failing */
	sfp_transport_set_timeout(t, RECV_TIMEOUT_S);
	CHECK_E(c, sfp_transport_recv(t, 1, 3, buf, sizeof buf, &len, &e) == SFP_OK, &e);
	CHECK(c, len == 5 && !memcmp(buf, "still", 5));
	CHECK_E(c, sfp_transport_send(t, 1, 4, "!", 1, &e) == SFP_OK, &e);
	return 0;
}

static void test_malformed(void)
{
	job j;
	rank_ctx c[2];
	junk_arg a;
	nng_socket s;
	uint8_t m[32 + 8];
	CU_ASSERT_EQUAL_FATAL(job_init(&j, 2, 0), 0);
	flag_init(&a.opened);
	flag_init(&a.junk_sent);
	flag_init(&a.checked);
	flag_init(&a.junk_closed);
	ranks_start(c, &j, 3u, junk_target, &a, OPEN_TIMEOUT_S);
	CU_ASSERT(flag_wait(&a.opened, OPEN_TIMEOUT_S));
	CU_ASSERT_EQUAL_FATAL(nng_push0_open(&s), 0);
	CU_ASSERT_EQUAL(nng_socket_set_ms(s, NNG_OPT_SENDTIMEO, 5000), 0);
	CU_ASSERT_EQUAL(nng_dial(s, j.urls[0], NULL, 0), 0);
	/* JUNK messages rank 0 must drop and count */
	CU_ASSERT_EQUAL(nng_send(s, "abc", 3, 0), 0); /* shorter than an envelope */
	envelope(m, K_DATA, 1, 2, 1, 8);
	m[0] = 'X'; /* bad magic */
	CU_ASSERT_EQUAL(nng_send(s, m, sizeof m, 0), 0);
	envelope(m, K_DATA, 1, 2, 1, 9); /* length says 9, 8 follow */
	CU_ASSERT_EQUAL(nng_send(s, m, sizeof m, 0), 0);
	envelope(m, K_DATA, 7, 2, 1, 8); /* rank 7 of 2 */
	CU_ASSERT_EQUAL(nng_send(s, m, sizeof m, 0), 0);
	envelope(m, K_DATA, 1, 3, 1, 8); /* a job of 3 */
	CU_ASSERT_EQUAL(nng_send(s, m, sizeof m, 0), 0);
	envelope(m, K_DATA, 1, 2, 1, 8); /* well formed, but rank 1 said HELLO elsewhere */
	CU_ASSERT_EQUAL(nng_send(s, m, sizeof m, 0), 0);
	envelope(m, K_HELLO, 1, 2, 0, 0); /* a second HELLO for rank 1 */
	CU_ASSERT_EQUAL(nng_send(s, m, 32, 0), 0);
	flag_raise(&a.junk_sent);
	CU_ASSERT(flag_wait(&a.checked, RECV_TIMEOUT_S));
	nng_close(s);
	flag_raise(&a.junk_closed);
	ranks_join(c, &j, 3u, 1);
	flag_destroy(&a.opened);
	flag_destroy(&a.junk_sent);
	flag_destroy(&a.checked);
	flag_destroy(&a.junk_closed);
	job_release(&j);
}

/* ---- open without every peer ------------------------------------------------------------- */

/* Start the ranks in `mask` of an n-rank job with a short open timeout;
 * each must fail with SFP_ETIMEDOUT and `names` in its message. */
static void open_missing(int n, unsigned mask, const char *names)
{
	job j;
	rank_ctx c[MAX_RANKS];
	CU_ASSERT_EQUAL_FATAL(job_init(&j, n, 1), 0);
	ranks_start(c, &j, mask, NULL, NULL, SHORT_TIMEOUT_S);
	ranks_join(c, &j, mask, 0);
	for (int r = 0; r < n; r++) {
		if (!(mask >> r & 1))
			continue;
		CU_ASSERT_EQUAL(c[r].open_rc, SFP_ETIMEDOUT);
		CU_ASSERT_EQUAL(c[r].open_err.code, SFP_ETIMEDOUT);
		if (!strstr(c[r].open_err.msg, names))
			fprintf(stderr, "\n    rank %d: '%s' lacks '%s'\n", r, c[r].open_err.msg, names);
		CU_ASSERT_PTR_NOT_NULL(strstr(c[r].open_err.msg, names));
		CU_ASSERT(c[r].open_s >= SHORT_TIMEOUT_S - 0.01 && c[r].open_s < QUICK_S);
	}
	job_release(&j);
}

static void test_open_missing_peer(void)
{
	open_missing(3, 0x3u, "with rank 2 within 0.3 s");
	open_missing(4, 0x5u, "with ranks 1, 3 within 0.3 s");
}

/* ---- arguments ------------------------------------------------------------------------------ */

static void test_open_errors(void)
{
	sfp_transport *t = NULL, *t2 = NULL;
	sfp_error e = {0};
	job j;
	CU_ASSERT_EQUAL_FATAL(job_init(&j, 1, 0), 0);
	const char *bogus[2] = {"bogus://nowhere", "tcp://127.0.0.1:1"};
	const char *none[2] = {j.urls[0], NULL};
	CU_ASSERT_EQUAL(sfp_transport_open_nng(&t, 0, 2, bogus, 0.1, &e), SFP_EINVAL);
	CU_ASSERT_PTR_NOT_NULL(strstr(e.msg, "'bogus://nowhere'"));
	CU_ASSERT_EQUAL(sfp_transport_open_nng(&t, 0, 2, none, 0.1, &e), SFP_EINVAL);
	CU_ASSERT_EQUAL(sfp_transport_open_nng(&t, 2, 2, bogus, 0.1, &e), SFP_EINVAL);
	CU_ASSERT_EQUAL(sfp_transport_open_nng(&t, 0, 1, NULL, 0.1, &e), SFP_EINVAL);
	CU_ASSERT_PTR_NULL(t);
	/* a job of one needs no peer; a second listener on its address fails */
	CU_ASSERT_EQUAL_FATAL(sfp_transport_open_nng(&t, 0, 1, (const char *const *)j.urls, 0.1, &e),
			      SFP_OK);
	CU_ASSERT_STRING_EQUAL(sfp_transport_name(t), "nng");
	CU_ASSERT_EQUAL(sfp_transport_size(t), 1);
	int rc = sfp_transport_open_nng(&t2, 0, 1, (const char *const *)j.urls, 0.1, &e);
	CU_ASSERT(rc < 0);
	CU_ASSERT_PTR_NOT_NULL(strstr(e.msg, "cannot listen"));
	CU_ASSERT_PTR_NULL(t2);
	sfp_transport_close(t);
	sfp_transport_close(t2);
	job_release(&j);
}

int main(void)
{
	static const test_case cases[] = {
		{"ping-pong over ipc", test_ping_pong_ipc},
		{"ping-pong over tcp", test_ping_pong_tcp},
		{"mixed tags arrive in order per tag, sent before any recv", test_mixed_tags},
		{"32 MiB over tcp", test_big_tcp},
		{"32 MiB over ipc", test_big_ipc},
		{"ring sendrecv with 4 ranks", test_ring},
		{"recv from a silent peer times out naming it", test_recv_timeout},
		{"a peer that closes: its last messages, then EPEER", test_peer_closes},
		{"a crashed peer's connection to us closes: EPEER", test_peer_crashes_pull},
		{"our connection to a crashed peer closes: EPEER", test_peer_crashes_push},
		{"a message over cap: ENOSPC, the next one arrives", test_oversize},
		{"malformed messages are dropped and counted", test_malformed},
		{"open times out naming the missing ranks", test_open_missing_peer},
		{"open checks its arguments", test_open_errors},
		{NULL, NULL},
	};
	return test_run_suite("transport", cases);
}
