/*
 * transport_mpi.c -- the MPI backend: MPI_COMM_WORLD, one message per
 * send, matched by (source, tag).
 *
 * Sends copy the bytes and go out with MPI_Isend, so a sender never waits
 * for its receiver (a pipeline stage can start its next micro-batch while
 * the previous one is in flight); completed sends are reaped on every call
 * and the rest at close. Receives poll MPI_Improbe until the deadline, with
 * a backoff from spinning to 1 ms sleeps so oversubscribed ranks leave the
 * cores to the ranks that compute, then MPI_Imrecv into the transport's own
 * buffer, polled against a second deadline, and copy out.
 *
 * Why not MPI_Mrecv into the caller's buffer: the probe matches a message
 * once its first fragment has arrived, and a large one (ob1's rendezvous)
 * still needs the rest. If the link fails between the two, a blocking
 * MPI_Mrecv never returns (measured across a cut link: rank 1 spun in it
 * forever while rank 0 had timed out). A matched receive cannot be
 * cancelled either, so one that misses its deadline keeps writing into its
 * buffer for as long as MPI likes: that buffer must be ours, not the
 * caller's. It is set aside (`stuck`) and never freed.
 */
#include <limits.h>
#include <mpi.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "sfp/transport.h"

typedef struct pending {
	MPI_Request req;
	void *buf;
	struct pending *next;
} pending;

typedef struct mpi_impl {
	int rank;
	pending *sends;
	pending *stuck;  /* receives that missed their deadline; MPI may still write into them */
	void *rbuf;      /* where receives land before the copy out */
	size_t rcap;
} mpi_impl;

/* Free the sends that completed; `give_up` cancels the rest (at close,
 * once their receivers had their time). */
static void reap(mpi_impl *m, int give_up)
{
	pending **pp = &m->sends;
	while (*pp) {
		pending *p = *pp;
		int done = 0;
		MPI_Test(&p->req, &done, MPI_STATUS_IGNORE);
		if (!done && give_up) {
			MPI_Cancel(&p->req);
			MPI_Request_free(&p->req);
			done = 1;
		}
		if (done) {
			*pp = p->next;
			free(p->buf);
			free(p);
		} else {
			pp = &p->next;
		}
	}
}

static int mpi_send(void *impl, int peer, int tag, const void *buf, size_t len, sfp_error *err)
{
	mpi_impl *m = impl;
	reap(m, 0);
	if (len > INT_MAX)
		return sfp_error_set(err, SFP_EINVAL, "mpi: message of %zu bytes is over 2 GiB", len);
	pending *p = malloc(sizeof *p);
	void *copy = malloc(len ? len : 1);
	if (!p || !copy) {
		free(p);
		free(copy);
		return sfp_error_set(err, SFP_ENOMEM, "out of memory");
	}
	memcpy(copy, buf, len);
	int rc = MPI_Isend(copy, (int)len, MPI_BYTE, peer, tag, MPI_COMM_WORLD, &p->req);
	if (rc != MPI_SUCCESS) {
		free(p);
		free(copy);
		return sfp_error_set(err, SFP_EPEER, "mpi: send to rank %d failed (MPI error %d)", peer, rc);
	}
	p->buf = copy;
	p->next = m->sends;
	m->sends = p;
	return SFP_OK;
}

static double now_s(void)
{
	return (double)sfp_clock_ns() * 1e-9;
}

/* One wait of a polling loop: spin 200 times, then sleep from 1 us up to
 * 64 us, doubling. The cap bounds how late a message is seen (each hop of
 * a ring pays it) while a rank waiting on a peer still leaves the core to
 * backward's threads. */
static void backoff(long *spins, long *sleep_ns)
{
	if (++*spins <= 200)
		return;
	struct timespec ts = {0, *sleep_ns};
	nanosleep(&ts, NULL);
	if (*sleep_ns < 64000)
		*sleep_ns *= 2;
}

static int mpi_recv(void *impl, int peer, int tag, void *buf, size_t cap, size_t *len,
		    double timeout_s, sfp_error *err)
{
	mpi_impl *m = impl;
	double t0 = now_s();
	long spins = 0, sleep_ns = 1000;
	MPI_Message msg;
	MPI_Status st;
	for (;;) {
		int found = 0;
		if (MPI_Improbe(peer, tag, MPI_COMM_WORLD, &found, &msg, &st) != MPI_SUCCESS)
			return sfp_error_set(err, SFP_EPEER, "mpi: probing rank %d failed", peer);
		if (found)
			break;
		reap(m, 0);
		if (timeout_s > 0 && now_s() - t0 > timeout_s)
			return sfp_error_set(err, SFP_ETIMEDOUT,
					     "rank %d: no message from rank %d within %.0f s (rank %d "
					     "died, hangs or is far behind)",
					     m->rank, peer, timeout_s, peer);
		backoff(&spins, &sleep_ns);
	}
	int count = 0;
	MPI_Get_count(&st, MPI_BYTE, &count);
	if ((size_t)count > m->rcap) {
		void *nb = realloc(m->rbuf, (size_t)count);
		if (!nb) {
			/* the message stays matched and unreceived: the job cannot go on */
			return sfp_error_set(err, SFP_ENOMEM, "out of memory for a message of %d bytes",
					     count);
		}
		m->rbuf = nb;
		m->rcap = (size_t)count;
	}
	MPI_Request req;
	if (MPI_Imrecv(m->rbuf, count, MPI_BYTE, &msg, &req) != MPI_SUCCESS)
		return sfp_error_set(err, SFP_EPEER, "mpi: receive from rank %d failed", peer);
	/* the body gets its own deadline: the wait for the message is over */
	t0 = now_s();
	spins = 0;
	sleep_ns = 1000;
	for (;;) {
		int done = 0;
		if (MPI_Test(&req, &done, MPI_STATUS_IGNORE) != MPI_SUCCESS)
			return sfp_error_set(err, SFP_EPEER, "mpi: receive from rank %d failed", peer);
		if (done)
			break;
		reap(m, 0);
		if (timeout_s > 0 && now_s() - t0 > timeout_s) {
			pending *p = malloc(sizeof *p);
			if (p) { /* else lose track of it: the buffer must not be freed either way */
				p->req = req;
				p->buf = m->rbuf;
				p->next = m->stuck;
				m->stuck = p;
			}
			m->rbuf = NULL;
			m->rcap = 0;
			return sfp_error_set(err, SFP_ETIMEDOUT,
					     "rank %d: a message of %d bytes from rank %d began but did "
					     "not finish within %.0f s (the link to rank %d failed or "
					     "stalls)",
					     m->rank, count, peer, timeout_s, peer);
		}
		backoff(&spins, &sleep_ns);
	}
	if ((size_t)count > cap)
		return sfp_error_set(err, SFP_ENOSPC,
				     "mpi: message of %d bytes from rank %d is over the %zu expected",
				     count, peer, cap);
	if (count > 0)
		memcpy(buf, m->rbuf, (size_t)count);
	*len = (size_t)count;
	return SFP_OK;
}

static int mpi_sendrecv(void *impl, int to, const void *sbuf, size_t slen, int from, void *rbuf,
			size_t cap, size_t *rlen, int tag, double timeout_s, sfp_error *err)
{
	SFP_TRY(mpi_send(impl, to, tag, sbuf, slen, err));
	return mpi_recv(impl, from, tag, rbuf, cap, rlen, timeout_s, err);
}

static int mpi_allreduce_f32(void *impl, float *x, size_t n, sfp_error *err)
{
	(void)impl;
	if (n > INT_MAX)
		return sfp_error_set(err, SFP_EINVAL, "mpi: %zu floats in one all-reduce", n);
	/* started, then polled with the receives' backoff: a blocking
	 * MPI_Allreduce spins on a core, which a gradient exchange running
	 * behind backward would take from backward (the ranks of a rehearsed
	 * cluster share the cores) */
	MPI_Request req;
	if (MPI_Iallreduce(MPI_IN_PLACE, x, (int)n, MPI_FLOAT, MPI_SUM, MPI_COMM_WORLD, &req) !=
	    MPI_SUCCESS)
		return sfp_error_set(err, SFP_EPEER, "mpi: MPI_Iallreduce failed");
	long spins = 0, sleep_ns = 1000;
	for (;;) {
		int done = 0;
		if (MPI_Test(&req, &done, MPI_STATUS_IGNORE) != MPI_SUCCESS)
			return sfp_error_set(err, SFP_EPEER, "mpi: MPI_Iallreduce failed");
		if (done)
			return SFP_OK;
		backoff(&spins, &sleep_ns);
	}
}

static void mpi_close(void *impl)
{
	mpi_impl *m = impl;
	const double t0 = now_s();
	while (m->sends && now_s() - t0 < 10.0) {
		reap(m, 0);
		if (m->sends) {
			struct timespec ts = {0, 1000000};
			nanosleep(&ts, NULL);
		}
	}
	reap(m, 1);
	/* receives that missed their deadline: let MPI drop the requests; the
	 * buffers stay allocated, as MPI may still write into them */
	for (pending *p = m->stuck, *next; p; p = next) {
		next = p->next;
		MPI_Request_free(&p->req);
		free(p);
	}
	free(m->rbuf);
	free(m);
}

static int mpi_handoff(void *impl)
{
	(void)impl;
	int level = MPI_THREAD_SINGLE;
	MPI_Query_thread(&level);
	return level >= MPI_THREAD_SERIALIZED;
}

static const sfp_transport_ops mpi_ops = {
	.name = "mpi",
	.send = mpi_send,
	.recv = mpi_recv,
	.sendrecv = mpi_sendrecv,
	.allreduce_f32 = mpi_allreduce_f32,
	.handoff = mpi_handoff,
	.close = mpi_close};

int sfp_transport_open_mpi(sfp_transport **out, sfp_error *err)
{
	*out = NULL;
	int init = 0, rank = 0, size = 1;
	MPI_Initialized(&init);
	if (!init)
		return sfp_error_set(err, SFP_EINVAL, "mpi: MPI_Init has not been called");
	MPI_Comm_rank(MPI_COMM_WORLD, &rank);
	MPI_Comm_size(MPI_COMM_WORLD, &size);
	mpi_impl *m = calloc(1, sizeof *m);
	if (!m)
		return sfp_error_set(err, SFP_ENOMEM, "out of memory");
	m->rank = rank;
	int rc = sfp_transport_wrap(out, &mpi_ops, m, rank, size, err);
	if (rc < 0)
		free(m);
	return rc;
}
