/*
 * transport_mpi.c -- the MPI backend: MPI_COMM_WORLD, one message per
 * send, matched by (source, tag).
 *
 * Sends copy the bytes and go out with MPI_Isend, so a sender never waits
 * for its receiver (a pipeline stage can start its next micro-batch while
 * the previous one is in flight); completed sends are reaped on every call
 * and the rest at close. Receives poll MPI_Improbe until the deadline, with
 * a backoff from spinning to 1 ms sleeps so oversubscribed ranks leave the
 * cores to the ranks that compute, then MPI_Mrecv into the caller's buffer.
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

static int mpi_recv(void *impl, int peer, int tag, void *buf, size_t cap, size_t *len,
		    double timeout_s, sfp_error *err)
{
	mpi_impl *m = impl;
	const double t0 = now_s();
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
		if (++spins > 200) {
			struct timespec ts = {0, sleep_ns};
			nanosleep(&ts, NULL);
			if (sleep_ns < 1000000)
				sleep_ns *= 2;
		}
	}
	int count = 0;
	MPI_Get_count(&st, MPI_BYTE, &count);
	if ((size_t)count > cap) {
		void *sink = malloc((size_t)count);
		MPI_Mrecv(sink, count, MPI_BYTE, &msg, MPI_STATUS_IGNORE);
		free(sink);
		return sfp_error_set(err, SFP_ENOSPC,
				     "mpi: message of %d bytes from rank %d is over the %zu expected",
				     count, peer, cap);
	}
	if (MPI_Mrecv(buf, count, MPI_BYTE, &msg, MPI_STATUS_IGNORE) != MPI_SUCCESS)
		return sfp_error_set(err, SFP_EPEER, "mpi: receive from rank %d failed", peer);
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
	if (MPI_Allreduce(MPI_IN_PLACE, x, (int)n, MPI_FLOAT, MPI_SUM, MPI_COMM_WORLD) != MPI_SUCCESS)
		return sfp_error_set(err, SFP_EPEER, "mpi: MPI_Allreduce failed");
	return SFP_OK;
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
	free(m);
}

static const sfp_transport_ops mpi_ops = {
	.name = "mpi",
	.send = mpi_send,
	.recv = mpi_recv,
	.sendrecv = mpi_sendrecv,
	.allreduce_f32 = mpi_allreduce_f32,
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
