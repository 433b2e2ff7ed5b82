/*
 * transport_nng.c -- the nng backend: every rank listens on one URL, dials
 * every peer, and sends each message with a small envelope that says who
 * sent it and with which tag.
 *
 * Socket pattern. Rank i has one PULL socket listening on urls[i] and, for
 * every peer j, one PUSH socket dialing urls[j]; bytes from i to j travel on
 * i's PUSH(j) -> j's PULL connection and nowhere else. Why this one:
 *  - we are given one URL per rank, and an address is bound by one socket,
 *    so per-pair PAIR sockets would need a port per pair; pair1's
 *    polyamorous mode would fit one URL but is deprecated and discards a
 *    message when the pipe's queue is full;
 *  - a PUSH socket with a single pipe never discards: a send that the pipe
 *    cannot take yet waits in a FIFO list, so messages from i to j arrive in
 *    the order i sent them, whatever the tag;
 *  - one PULL fans in every peer, so one always-pending receive aio drains
 *    all connections into our per-source queues. That is what lets a sender
 *    go on without waiting for its receiver to call recv (the bytes leave
 *    the sender at network speed instead of backing up in TCP buffers), and
 *    it keeps the PULL socket from holding messages we have not taken: nng
 *    1.5's pull0 frees a message parked on a pipe when the pipe closes;
 *  - a PUSH socket that dials one URL names its peer, so its pipe events say
 *    which rank we reached or lost without a lookup.
 * The price is a full mesh: 2 * (size - 1) connections per rank.
 *
 * Envelope (NTP_ENV_BYTES, little-endian) in front of every payload:
 *   0 u32 magic "SFPN"     4 u8 version (1)   5 u8 kind (enum ntp_kind)
 *   6 u16 reserved (0)     8 u32 source rank 12 u32 ranks in the job
 *  16 u32 tag (DATA only) 20 u32 reserved (0) 24 u64 payload bytes
 * docs/transport.md has the same table and the handshakes. Anything that
 * does not parse (short, wrong magic, version, size or length, a source
 * out of range or on another connection than its HELLO) is dropped and
 * counted; the count shows up in timeout messages.
 *
 * Handshakes. Open queues a HELLO as the first message to every peer and
 * returns once every PUSH socket has a pipe and a HELLO came from every
 * peer; the HELLO also tells which PULL pipe belongs to which rank. Close
 * sends BYE and waits (at most NTP_LINGER_S) until every peer has answered
 * with BYE_ACK, which its receive callback sends once everything before our
 * BYE is queued, and has sent its own BYE (or its connection closed): nng
 * has no linger, so without the first the last messages of a rank that
 * sends and closes would be lost, and without the second nng 1.5.2 can
 * hang in nng_close (see say_bye). Close is thus a barrier, like
 * MPI_Finalize.
 *
 * Peer failure. A BYE makes a receive from that peer fail with SFP_EPEER
 * as soon as its queued messages are taken. A closed pipe to or from a
 * peer (process died, connection reset) does the same NTP_GRACE_NS later:
 * the pipe-removal callback can run just before the receive callback that
 * delivers the last messages read from that pipe, and a short grace lets
 * those arrive first. Both are sticky: a rank whose connection dropped has
 * lost state, and the dialer reconnecting later does not make it whole.
 *
 * Threads: the API is called from one thread; nng calls on_recv, on_sent
 * and the pipe callbacks from its own threads. `mu` guards every field that
 * both touch; nng functions are called with `mu` released.
 *
 * Memory: received messages wait in per-source queues and unsent ones in
 * per-peer outboxes, both unbounded; the collectives keep only a few
 * messages in flight per peer, so neither grows in practice.
 */
#include <assert.h>
#include <inttypes.h>
#include <limits.h>
#include <pthread.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include <nng/nng.h>
#include <nng/protocol/pipeline0/pull.h>
#include <nng/protocol/pipeline0/push.h>

#include "sfp/transport.h"

#define NTP_ENV_BYTES 32
#define NTP_VERSION 1
/* Same bound as the MPI backend, whose counts are ints. */
#define NTP_MAX_MSG ((size_t)INT_MAX)
/* How long close waits for peers to acknowledge our last messages. */
#define NTP_LINGER_S 10.0
#define NTP_GRACE_NS 50000000ull
/* Dial retry: fast at first (peers start in any order), then every 250 ms. */
#define NTP_RECONN_MIN_MS 10
#define NTP_RECONN_MAX_MS 250

static const uint8_t ntp_magic[4] = {'S', 'F', 'P', 'N'};

enum ntp_kind { NTP_DATA = 0, NTP_HELLO = 1, NTP_BYE = 2, NTP_BYE_ACK = 3 };

/* The decoded envelope. */
typedef struct ntp_env {
	uint8_t magic[4];
	uint8_t version, kind;
	uint16_t reserved0;
	uint32_t src, size, tag, reserved1;
	uint64_t len;
} ntp_env;
static_assert(sizeof(ntp_env) == NTP_ENV_BYTES, "envelope layout");

/* A message in a queue; owns msg (for DATA the envelope is trimmed off). */
typedef struct ntp_qmsg {
	struct ntp_qmsg *next;
	nng_msg *msg;
	uint32_t tag;
} ntp_qmsg;

typedef struct ntp_fifo {
	ntp_qmsg *head, *tail;
} ntp_fifo;

struct ntp;

typedef struct ntp_peer {
	struct ntp *t;
	int rank;
	nng_socket push;
	bool push_open;
	nng_aio *saio;      /* the one send in flight to this peer */
	/* guarded by t->mu */
	ntp_fifo out;       /* waiting for saio, in send order */
	bool sending;       /* saio is in use */
	ntp_fifo in;        /* received DATA, in arrival order */
	uint32_t pull_pipe; /* our PULL pipe its HELLO came on; 0: none yet */
	bool push_up;       /* our PUSH socket has a pipe to it */
	bool push_seen;     /* ... or had one */
	bool bye, acked, bye_sent;
	bool pull_gone;     /* its connection to our PULL socket closed */
	bool oom;           /* a message from it was dropped for want of memory */
	uint64_t lost_ns;   /* when a connection with it closed; 0: never */
} ntp_peer;

typedef struct ntp {
	int rank, size;
	nng_socket pull;
	bool pull_open;
	nng_aio *raio;
	pthread_mutex_t mu;
	pthread_cond_t cv; /* broadcast on every change below */
	/* guarded by mu */
	bool closing;
	uint64_t malformed;
	ntp_peer *peers; /* [size]; peers[rank] unused */
} ntp;

/* ---- envelope ---------------------------------------------------------- */

static void env_put(uint8_t *p, const ntp_env *e)
{
	memcpy(p, e->magic, 4);
	p[4] = e->version;
	p[5] = e->kind;
	sfp_store_le16(p + 6, e->reserved0);
	sfp_store_le32(p + 8, e->src);
	sfp_store_le32(p + 12, e->size);
	sfp_store_le32(p + 16, e->tag);
	sfp_store_le32(p + 20, e->reserved1);
	sfp_store_le64(p + 24, e->len);
}

static void env_get(ntp_env *e, const uint8_t *p)
{
	memcpy(e->magic, p, 4);
	e->version = p[4];
	e->kind = p[5];
	e->reserved0 = sfp_load_le16(p + 6);
	e->src = sfp_load_le32(p + 8);
	e->size = sfp_load_le32(p + 12);
	e->tag = sfp_load_le32(p + 16);
	e->reserved1 = sfp_load_le32(p + 20);
	e->len = sfp_load_le64(p + 24);
}

/* A new message: envelope of `kind` from this rank, then len bytes of buf. */
static int msg_new(nng_msg **out, const ntp *t, int kind, int tag, const void *buf, size_t len)
{
	nng_msg *m;
	if (nng_msg_alloc(&m, NTP_ENV_BYTES + len) != 0)
		return SFP_ENOMEM;
	ntp_env e = {.version = NTP_VERSION,
		     .kind = (uint8_t)kind,
		     .src = (uint32_t)t->rank,
		     .size = (uint32_t)t->size,
		     .tag = (uint32_t)tag,
		     .len = len};
	memcpy(e.magic, ntp_magic, 4);
	uint8_t *body = nng_msg_body(m);
	env_put(body, &e);
	if (len)
		memcpy(body + NTP_ENV_BYTES, buf, len);
	*out = m;
	return SFP_OK;
}

/* nng's codes, mapped once. */
static int from_nng(int rv)
{
	switch (rv) {
	case 0: return SFP_OK;
	case NNG_ENOMEM: return SFP_ENOMEM;
	case NNG_EINVAL:
	case NNG_EADDRINVAL:
	case NNG_ENOTSUP: return SFP_EINVAL;
	case NNG_ETIMEDOUT: return SFP_ETIMEDOUT;
	case NNG_ECLOSED:
	case NNG_ECONNREFUSED:
	case NNG_ECONNRESET:
	case NNG_ECONNSHUT:
	case NNG_ECONNABORTED: return SFP_EPEER;
	default: return SFP_EIO;
	}
}

/* ---- queues ------------------------------------------------------------ */

static void fifo_push(ntp_fifo *f, ntp_qmsg *q)
{
	q->next = NULL;
	if (f->tail)
		f->tail->next = q;
	else
		f->head = q;
	f->tail = q;
}

static ntp_qmsg *fifo_pop(ntp_fifo *f)
{
	ntp_qmsg *q = f->head;
	if (q) {
		f->head = q->next;
		if (!f->head)
			f->tail = NULL;
	}
	return q;
}

/* The oldest message with this tag; order among other tags is kept. */
static ntp_qmsg *fifo_take_tag(ntp_fifo *f, uint32_t tag)
{
	ntp_qmsg *prev = NULL;
	for (ntp_qmsg *q = f->head; q; prev = q, q = q->next) {
		if (q->tag != tag)
			continue;
		if (prev)
			prev->next = q->next;
		else
			f->head = q->next;
		if (f->tail == q)
			f->tail = prev;
		return q;
	}
	return NULL;
}

static void fifo_free(ntp_fifo *f)
{
	ntp_qmsg *q;
	while ((q = fifo_pop(f))) {
		nng_msg_free(q->msg);
		free(q);
	}
}

/* ---- sending ----------------------------------------------------------- */

/* With t->mu held: the next message to hand to nng if the peer's aio is
 * free, which the caller then passes to start_send after unlocking. */
static nng_msg *next_send(ntp_peer *p)
{
	if (p->sending || p->t->closing || !p->out.head)
		return NULL;
	ntp_qmsg *q = fifo_pop(&p->out);
	nng_msg *m = q->msg;
	free(q);
	p->sending = true;
	return m;
}

static void start_send(ntp_peer *p, nng_msg *m)
{
	if (!m)
		return;
	nng_aio_set_msg(p->saio, m);
	nng_send_aio(p->push, p->saio);
}

/* Queue m for peer p (takes m, frees it on failure). */
static int post(ntp *t, ntp_peer *p, nng_msg *m)
{
	ntp_qmsg *q = malloc(sizeof *q);
	if (!q) {
		nng_msg_free(m);
		return SFP_ENOMEM;
	}
	q->msg = m;
	q->tag = 0;
	pthread_mutex_lock(&t->mu);
	fifo_push(&p->out, q);
	m = next_send(p);
	pthread_mutex_unlock(&t->mu);
	start_send(p, m);
	return SFP_OK;
}

/* The push socket took the message (it owns it now) or, when closing,
 * gave it back. */
static void on_sent(void *arg)
{
	ntp_peer *p = arg;
	ntp *t = p->t;
	int rv = nng_aio_result(p->saio);
	if (rv != 0) {
		nng_msg_free(nng_aio_get_msg(p->saio));
		nng_aio_set_msg(p->saio, NULL);
	}
	pthread_mutex_lock(&t->mu);
	p->sending = false;
	nng_msg *m = rv == 0 ? next_send(p) : NULL;
	pthread_mutex_unlock(&t->mu);
	start_send(p, m);
}

/* ---- receiving --------------------------------------------------------- */

/* With t->mu held: file one message from the network (takes m). Returns a
 * peer to answer a BYE with BYE_ACK, or NULL. */
static ntp_peer *file_msg(ntp *t, nng_msg *m)
{
	size_t n = nng_msg_len(m);
	ntp_env e;
	if (n < NTP_ENV_BYTES)
		goto bad;
	env_get(&e, nng_msg_body(m));
	if (memcmp(e.magic, ntp_magic, 4) || e.version != NTP_VERSION || e.reserved0 ||
	    e.reserved1 || e.size != (uint32_t)t->size || e.src >= (uint32_t)t->size ||
	    e.src == (uint32_t)t->rank || e.len != n - NTP_ENV_BYTES)
		goto bad;
	ntp_peer *p = &t->peers[e.src];
	uint32_t pipe = (uint32_t)nng_pipe_id(nng_msg_get_pipe(m));
	if (e.kind == NTP_HELLO) {
		if (e.tag || e.len || p->pull_pipe || p->lost_ns)
			goto bad;
		p->pull_pipe = pipe;
		nng_msg_free(m);
		return NULL;
	}
	/* Everything else must come on the connection that said HELLO: it
	 * is the one whose order we promise. After its BYE a peer sends at
	 * most the BYE_ACK for ours. */
	if (!p->pull_pipe || pipe != p->pull_pipe || (p->bye && e.kind != NTP_BYE_ACK))
		goto bad;
	switch (e.kind) {
	case NTP_DATA: {
		if (e.tag > INT_MAX)
			goto bad;
		ntp_qmsg *q = p->oom ? NULL : malloc(sizeof *q);
		if (!q) {
			/* Not malformed, and not to be lost in silence: receives
			 * take what came before, then fail. Later messages are
			 * dropped too, or they would arrive out of order. */
			p->oom = true;
			nng_msg_free(m);
			return NULL;
		}
		nng_msg_trim(m, NTP_ENV_BYTES);
		q->msg = m;
		q->tag = e.tag;
		fifo_push(&p->in, q);
		return NULL;
	}
	case NTP_BYE:
		if (e.tag || e.len)
			goto bad;
		p->bye = true;
		nng_msg_free(m);
		return t->closing ? NULL : p;
	case NTP_BYE_ACK:
		if (e.tag || e.len)
			goto bad;
		p->acked = true;
		nng_msg_free(m);
		return NULL;
	default:
		goto bad;
	}
bad:
	t->malformed++;
	nng_msg_free(m);
	return NULL;
}

static void on_recv(void *arg)
{
	ntp *t = arg;
	int rv = nng_aio_result(t->raio);
	if (rv == NNG_ECLOSED || rv == NNG_ECANCELED)
		return;
	ntp_peer *ack = NULL;
	pthread_mutex_lock(&t->mu);
	if (rv == 0) {
		ack = file_msg(t, nng_aio_get_msg(t->raio));
		nng_aio_set_msg(t->raio, NULL);
		pthread_cond_broadcast(&t->cv);
	}
	bool closing = t->closing;
	pthread_mutex_unlock(&t->mu);
	if (ack) {
		/* Everything this peer sent before its BYE is queued now. A
		 * failed allocation costs the peer its linger time, no more. */
		nng_msg *m;
		if (msg_new(&m, t, NTP_BYE_ACK, 0, NULL, 0) == SFP_OK)
			post(t, ack, m);
	}
	if (!closing)
		nng_recv_aio(t->pull, t->raio);
}

/* ---- connection events ------------------------------------------------- */

static void lost(ntp *t, ntp_peer *p)
{
	if (!p->lost_ns)
		p->lost_ns = sfp_clock_ns();
	pthread_cond_broadcast(&t->cv);
}

/* Our PUSH socket to one peer connected or disconnected. */
static void on_push_pipe(nng_pipe pipe, nng_pipe_ev ev, void *arg)
{
	ntp_peer *p = arg;
	ntp *t = p->t;
	pthread_mutex_lock(&t->mu);
	if (ev == NNG_PIPE_EV_ADD_POST) {
		p->push_up = p->push_seen = true;
		pthread_cond_broadcast(&t->cv);
	} else if (ev == NNG_PIPE_EV_REM_POST && p->push_up) {
		p->push_up = false;
		lost(t, p);
	}
	pthread_mutex_unlock(&t->mu);
}

/* A peer's connection to our PULL socket closed. */
static void on_pull_pipe(nng_pipe pipe, nng_pipe_ev ev, void *arg)
{
	ntp *t = arg;
	uint32_t id = (uint32_t)nng_pipe_id(pipe);
	pthread_mutex_lock(&t->mu);
	for (int j = 0; j < t->size; j++) {
		if (j != t->rank && t->peers[j].pull_pipe == id) {
			t->peers[j].pull_gone = true;
			lost(t, &t->peers[j]);
		}
	}
	pthread_mutex_unlock(&t->mu);
}

/* ---- the ops ----------------------------------------------------------- */

static uint64_t deadline_ns(double timeout_s)
{
	if (timeout_s <= 0 || timeout_s > 1e9) /* over 30 years: forever */
		return UINT64_MAX;
	return sfp_clock_ns() + (uint64_t)(timeout_s * 1e9);
}

/* With t->mu held: wait for a broadcast or until `when` (monotonic ns). */
static void wait_until(ntp *t, uint64_t when)
{
	if (when == UINT64_MAX) {
		pthread_cond_wait(&t->cv, &t->mu);
		return;
	}
	struct timespec ts = {(time_t)(when / 1000000000u), (long)(when % 1000000000u)};
	pthread_cond_timedwait(&t->cv, &t->mu, &ts);
}

/* With t->mu held: why the peer cannot be talked to any more, or SFP_OK. */
static int peer_gone(const ntp *t, const ntp_peer *p, uint64_t now, sfp_error *err)
{
	if (p->oom)
		return sfp_error_set(err, SFP_ENOMEM,
				     "rank %d: out of memory queueing a message from rank %d",
				     t->rank, p->rank);
	if (p->bye)
		return sfp_error_set(err, SFP_EPEER, "rank %d: rank %d closed its transport",
				     t->rank, p->rank);
	if (p->lost_ns && now >= p->lost_ns + NTP_GRACE_NS)
		return sfp_error_set(err, SFP_EPEER,
				     "rank %d: connection with rank %d closed (rank %d died or the "
				     "network failed)",
				     t->rank, p->rank, p->rank);
	return SFP_OK;
}

/* With t->mu held. Malformed messages are named here because a sender that
 * speaks another version (or a stray client) looks like silence. */
static int timed_out(const ntp *t, int peer, double timeout_s, sfp_error *err)
{
	if (t->malformed)
		return sfp_error_set(err, SFP_ETIMEDOUT,
				     "rank %d: no message from rank %d within %g s (rank %d died, "
				     "hangs or is far behind; %" PRIu64
				     " malformed messages were dropped)",
				     t->rank, peer, timeout_s, peer, t->malformed);
	return sfp_error_set(err, SFP_ETIMEDOUT,
			     "rank %d: no message from rank %d within %g s (rank %d died, hangs or "
			     "is far behind)",
			     t->rank, peer, timeout_s, peer);
}

static int ntp_send(void *impl, int peer, int tag, const void *buf, size_t len, sfp_error *err)
{
	ntp *t = impl;
	ntp_peer *p = &t->peers[peer];
	if (len > NTP_MAX_MSG)
		return sfp_error_set(err, SFP_EINVAL, "nng: message of %zu bytes is over 2 GiB",
				     len);
	pthread_mutex_lock(&t->mu);
	int rc = peer_gone(t, p, sfp_clock_ns(), err);
	pthread_mutex_unlock(&t->mu);
	if (rc < 0)
		return rc;
	nng_msg *m;
	if (msg_new(&m, t, NTP_DATA, tag, buf, len) < 0 || post(t, p, m) < 0)
		return sfp_error_set(err, SFP_ENOMEM, "out of memory");
	return SFP_OK;
}

static int ntp_recv(void *impl, int peer, int tag, void *buf, size_t cap, size_t *len,
		    double timeout_s, sfp_error *err)
{
	ntp *t = impl;
	ntp_peer *p = &t->peers[peer];
	const uint64_t deadline = deadline_ns(timeout_s);
	ntp_qmsg *q;
	int rc = SFP_OK;
	pthread_mutex_lock(&t->mu);
	for (;;) {
		/* Queued messages first: a peer's last words before it closed
		 * or died still count. */
		if ((q = fifo_take_tag(&p->in, (uint32_t)tag)))
			break;
		uint64_t now = sfp_clock_ns();
		if ((rc = peer_gone(t, p, now, err)) < 0)
			break;
		if (now >= deadline) {
			rc = timed_out(t, peer, timeout_s, err);
			break;
		}
		uint64_t when = deadline;
		if (p->lost_ns && p->lost_ns + NTP_GRACE_NS < when)
			when = p->lost_ns + NTP_GRACE_NS;
		wait_until(t, when);
	}
	pthread_mutex_unlock(&t->mu);
	if (rc < 0)
		return rc;
	size_t n = nng_msg_len(q->msg);
	if (n > cap)
		rc = sfp_error_set(err, SFP_ENOSPC,
				   "nng: message of %zu bytes from rank %d is over the %zu expected",
				   n, peer, cap);
	else if (n)
		memcpy(buf, nng_msg_body(q->msg), n);
	if (rc == SFP_OK)
		*len = n;
	nng_msg_free(q->msg);
	free(q);
	return rc;
}

/* The send is queued and never waits for the receiver, so a ring of
 * sendrecv calls cannot deadlock. */
static int ntp_sendrecv(void *impl, int to, const void *sbuf, size_t slen, int from, void *rbuf,
			size_t cap, size_t *rlen, int tag, double timeout_s, sfp_error *err)
{
	SFP_TRY(ntp_send(impl, to, tag, sbuf, slen, err));
	return ntp_recv(impl, from, tag, rbuf, cap, rlen, timeout_s, err);
}

/* With t->mu held: whether peer p can send us nothing more. */
static bool peer_quiet(const ntp_peer *p)
{
	return !p->pull_pipe || p->pull_gone || (p->bye && (p->acked || !p->bye_sent));
}

/*
 * Tell every peer we are leaving and wait (at most NTP_LINGER_S) until each
 * one is quiet: it sent BYE after answering ours with BYE_ACK, or its
 * connection to us closed. Two reasons, both about nng having no linger:
 *  - BYE_ACK says that the peer has queued everything we sent before BYE,
 *    which closing our sockets any earlier could discard;
 *  - nng 1.5.2 can hang in nng_close when a socket is closed while one of
 *    its pipes is between the header and the body of a message (the
 *    transport resubmits the body read on an aio that close has stopped,
 *    and the protocol's pipe aio never completes). Once a peer has sent
 *    its BYE and our ACK, nothing more is coming from it, so the PULL
 *    socket is closed with no message in flight.
 * So close waits for the other ranks to close too, like MPI_Finalize.
 */
static void say_bye(ntp *t)
{
	const uint64_t deadline = deadline_ns(NTP_LINGER_S);
	for (int j = 0; j < t->size; j++) {
		ntp_peer *p = &t->peers[j];
		nng_msg *m;
		if (j == t->rank)
			continue;
		pthread_mutex_lock(&t->mu);
		bool up = p->push_up;
		pthread_mutex_unlock(&t->mu);
		if (!up || msg_new(&m, t, NTP_BYE, 0, NULL, 0) < 0 || post(t, p, m) < 0)
			continue;
		pthread_mutex_lock(&t->mu);
		p->bye_sent = true;
		pthread_mutex_unlock(&t->mu);
	}
	pthread_mutex_lock(&t->mu);
	for (;;) {
		int waiting = 0;
		for (int j = 0; j < t->size; j++)
			waiting += j != t->rank && !peer_quiet(&t->peers[j]);
		if (!waiting || sfp_clock_ns() >= deadline)
			break;
		wait_until(t, deadline);
	}
	pthread_mutex_unlock(&t->mu);
}

static void teardown(ntp *t)
{
	pthread_mutex_lock(&t->mu);
	t->closing = true;
	pthread_mutex_unlock(&t->mu);
	/* Stop the callbacks before closing the sockets they use: after
	 * these, nothing re-arms an aio. */
	if (t->raio)
		nng_aio_stop(t->raio);
	for (int j = 0; j < t->size; j++)
		if (t->peers[j].saio)
			nng_aio_stop(t->peers[j].saio);
	for (int j = 0; j < t->size; j++)
		if (t->peers[j].push_open)
			nng_close(t->peers[j].push);
	if (t->pull_open)
		nng_close(t->pull);
	/* on_sent can hand a message to an aio that nng_aio_stop had already
	 * stopped; nng then leaves it there, and it is still ours. */
	for (int j = 0; j < t->size; j++)
		if (t->peers[j].saio)
			nng_msg_free(nng_aio_get_msg(t->peers[j].saio));
	/* nng_close returned after the last pipe callback: nothing else
	 * touches t now. */
	nng_aio_free(t->raio);
	for (int j = 0; j < t->size; j++) {
		nng_aio_free(t->peers[j].saio);
		fifo_free(&t->peers[j].out);
		fifo_free(&t->peers[j].in);
	}
	pthread_cond_destroy(&t->cv);
	pthread_mutex_destroy(&t->mu);
	free(t->peers);
	free(t);
}

static void ntp_close(void *impl)
{
	ntp *t = impl;
	say_bye(t);
	teardown(t);
}

/* nng's sockets may be used from any thread */
static int ntp_handoff(void *impl)
{
	(void)impl;
	return 1;
}

static const sfp_transport_ops ntp_ops = {.name = "nng",
					  .send = ntp_send,
					  .recv = ntp_recv,
					  .sendrecv = ntp_sendrecv,
					  .handoff = ntp_handoff,
					  .close = ntp_close};

/* ---- open -------------------------------------------------------------- */

static int ntp_alloc(ntp **out, int rank, int size)
{
	ntp *t = calloc(1, sizeof *t);
	if (!t)
		return SFP_ENOMEM;
	t->peers = calloc((size_t)size, sizeof *t->peers);
	if (!t->peers) {
		free(t);
		return SFP_ENOMEM;
	}
	pthread_condattr_t ca;
	pthread_condattr_init(&ca);
	pthread_condattr_setclock(&ca, CLOCK_MONOTONIC); /* sfp_clock_ns's clock */
	pthread_cond_init(&t->cv, &ca);
	pthread_condattr_destroy(&ca);
	pthread_mutex_init(&t->mu, NULL);
	t->rank = rank;
	t->size = size;
	for (int j = 0; j < size; j++) {
		t->peers[j].t = t;
		t->peers[j].rank = j;
	}
	*out = t;
	return SFP_OK;
}

static int listen_on(ntp *t, const char *url, sfp_error *err)
{
	nng_listener l;
	int rv = nng_pull0_open(&t->pull);
	if (rv)
		goto fail;
	t->pull_open = true;
	if ((rv = nng_pipe_notify(t->pull, NNG_PIPE_EV_REM_POST, on_pull_pipe, t)) ||
	    (rv = nng_aio_alloc(&t->raio, on_recv, t)) ||
	    (rv = nng_listener_create(&l, t->pull, url)) ||
	    /* nng 1.5 has no limit by default, nng 2 a build-time one (1 GiB
	     * unless changed): say what we accept, whichever links */
	    (rv = nng_listener_set_size(l, NNG_OPT_RECVMAXSZ, NTP_ENV_BYTES + NTP_MAX_MSG)) ||
	    (rv = nng_listener_start(l, 0)))
		goto fail;
	nng_recv_aio(t->pull, t->raio);
	return SFP_OK;
fail:
	return sfp_error_set(err, from_nng(rv), "nng: rank %d cannot listen on '%s': %s",
			     t->rank, url, nng_strerror(rv));
}

static int dial(ntp *t, ntp_peer *p, const char *url, sfp_error *err)
{
	nng_dialer d;
	int rv = nng_push0_open(&p->push);
	if (rv)
		goto fail;
	p->push_open = true;
	if ((rv = nng_pipe_notify(p->push, NNG_PIPE_EV_ADD_POST, on_push_pipe, p)) ||
	    (rv = nng_pipe_notify(p->push, NNG_PIPE_EV_REM_POST, on_push_pipe, p)) ||
	    (rv = nng_aio_alloc(&p->saio, on_sent, p)) ||
	    (rv = nng_dialer_create(&d, p->push, url)) ||
	    (rv = nng_dialer_set_ms(d, NNG_OPT_RECONNMINT, NTP_RECONN_MIN_MS)) ||
	    (rv = nng_dialer_set_ms(d, NNG_OPT_RECONNMAXT, NTP_RECONN_MAX_MS)) ||
	    /* NONBLOCK: a refused first attempt is retried in the background */
	    (rv = nng_dialer_start(d, NNG_FLAG_NONBLOCK)))
		goto fail;
	nng_msg *m;
	if (msg_new(&m, t, NTP_HELLO, 0, NULL, 0) < 0 || post(t, p, m) < 0)
		return sfp_error_set(err, SFP_ENOMEM, "out of memory");
	return SFP_OK;
fail:
	return sfp_error_set(err, from_nng(rv), "nng: rank %d cannot dial rank %d at '%s': %s",
			     t->rank, p->rank, url, nng_strerror(rv));
}

/* With t->mu held: peers not connected both ways yet, listed into buf.
 * A peer that connected and left again does not count here (it would be
 * named as missing although it came), see wait_connected. */
static int missing(const ntp *t, char *buf, size_t cap, int *first)
{
	int n = 0;
	size_t off = 0;
	buf[0] = '\0';
	for (int j = 0; j < t->size; j++) {
		const ntp_peer *p = &t->peers[j];
		if (j == t->rank || (p->push_seen && p->pull_pipe))
			continue;
		if (!n++)
			*first = j;
		if (n <= 8 && off < cap)
			off += (size_t)snprintf(buf + off, cap - off, "%s%d", n > 1 ? ", " : "", j);
		else if (n == 9 && off < cap)
			off += (size_t)snprintf(buf + off, cap - off, ", ...");
	}
	return n;
}

static int wait_connected(ntp *t, const char *const *urls, double timeout_s, sfp_error *err)
{
	const uint64_t deadline = deadline_ns(timeout_s);
	char list[64];
	int first = -1, gone = -1, n;
	pthread_mutex_lock(&t->mu);
	while ((n = missing(t, list, sizeof list, &first)) && sfp_clock_ns() < deadline)
		wait_until(t, deadline);
	for (int j = 0; j < t->size && gone < 0; j++)
		if (j != t->rank && t->peers[j].lost_ns)
			gone = j;
	pthread_mutex_unlock(&t->mu);
	if (n)
		return sfp_error_set(err, SFP_ETIMEDOUT,
				     "rank %d: no connection with rank%s %s within %g s (is rank %d "
				     "running and listening on '%s'?)",
				     t->rank, n > 1 ? "s" : "", list, timeout_s, first, urls[first]);
	/* e.g. it gave up waiting for a third rank just before it came */
	if (gone >= 0)
		return sfp_error_set(err, SFP_EPEER,
				     "rank %d: rank %d connected, then its connection closed", t->rank,
				     gone);
	return SFP_OK;
}

int sfp_transport_open_nng(sfp_transport **out, int rank, int size, const char *const *urls,
			   double timeout_s, sfp_error *err)
{
	*out = NULL;
	if (size < 1 || size > SFP_MAX_RANKS || rank < 0 || rank >= size)
		return sfp_error_set(err, SFP_EINVAL,
				     "nng: rank %d of %d is out of range (1..%d ranks)", rank, size,
				     SFP_MAX_RANKS);
	if (!urls)
		return sfp_error_set(err, SFP_EINVAL, "nng: no urls");
	for (int j = 0; j < size; j++)
		if (!urls[j] || !*urls[j])
			return sfp_error_set(err, SFP_EINVAL, "nng: no url for rank %d", j);
	ntp *t;
	if (ntp_alloc(&t, rank, size) < 0)
		return sfp_error_set(err, SFP_ENOMEM, "out of memory");
	/* Dial first: once the listener runs, on_recv may answer a BYE on
	 * any peer's socket, so every one must exist by then. */
	int rc = SFP_OK;
	for (int j = 0; j < size && rc == SFP_OK; j++)
		if (j != rank)
			rc = dial(t, &t->peers[j], urls[j], err);
	if (rc == SFP_OK)
		rc = listen_on(t, urls[rank], err);
	if (rc == SFP_OK)
		rc = wait_connected(t, urls, timeout_s, err);
	if (rc == SFP_OK)
		rc = sfp_transport_wrap(out, &ntp_ops, t, rank, size, err);
	if (rc < 0)
		teardown(t); /* no BYE: the peers see our connections close */
	return rc;
}
