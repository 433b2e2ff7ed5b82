/*
 * transport.c -- the backend-independent half of a transport: argument
 * checks, the receive deadline, and rank/size bookkeeping.
 */
#include <stdlib.h>

#include "sfp/transport.h"

struct sfp_transport {
	const sfp_transport_ops *ops;
	void *impl;
	int rank, size;
	double timeout_s;
};

int sfp_transport_wrap(sfp_transport **out, const sfp_transport_ops *ops, void *impl, int rank,
		       int size, sfp_error *err)
{
	*out = NULL;
	if (size < 1 || size > SFP_MAX_RANKS || rank < 0 || rank >= size)
		return sfp_error_set(err, SFP_EINVAL, "transport: rank %d of %d is out of range (1..%d ranks)",
				     rank, size, SFP_MAX_RANKS);
	sfp_transport *t = calloc(1, sizeof *t);
	if (!t)
		return sfp_error_set(err, SFP_ENOMEM, "out of memory");
	t->ops = ops;
	t->impl = impl;
	t->rank = rank;
	t->size = size;
	t->timeout_s = 60.0;
	*out = t;
	return SFP_OK;
}

void sfp_transport_close(sfp_transport *t)
{
	if (!t)
		return;
	if (t->ops->close)
		t->ops->close(t->impl);
	free(t);
}

int sfp_transport_rank(const sfp_transport *t)
{
	return t->rank;
}

int sfp_transport_size(const sfp_transport *t)
{
	return t->size;
}

const char *sfp_transport_name(const sfp_transport *t)
{
	return t->ops->name;
}

void sfp_transport_set_timeout(sfp_transport *t, double seconds)
{
	t->timeout_s = seconds;
}

double sfp_transport_timeout(const sfp_transport *t)
{
	return t->timeout_s;
}

static int check_peer(const sfp_transport *t, int peer, int tag, sfp_error *err)
{
	if (peer < 0 || peer >= t->size || peer == t->rank)
		return sfp_error_set(err, SFP_EINVAL, "transport: rank %d cannot talk to rank %d of %d",
				     t->rank, peer, t->size);
	if (tag < 0)
		return sfp_error_set(err, SFP_EINVAL, "transport: negative tag %d", tag);
	return SFP_OK;
}

int sfp_transport_send(sfp_transport *t, int peer, int tag, const void *buf, size_t len,
		       sfp_error *err)
{
	SFP_TRY(check_peer(t, peer, tag, err));
	return t->ops->send(t->impl, peer, tag, buf, len, err);
}

int sfp_transport_recv(sfp_transport *t, int peer, int tag, void *buf, size_t cap, size_t *len,
		       sfp_error *err)
{
	SFP_TRY(check_peer(t, peer, tag, err));
	return t->ops->recv(t->impl, peer, tag, buf, cap, len, t->timeout_s, err);
}

int sfp_transport_sendrecv(sfp_transport *t, int to, const void *sbuf, size_t slen, int from,
			   void *rbuf, size_t cap, size_t *rlen, int tag, sfp_error *err)
{
	SFP_TRY(check_peer(t, to, tag, err));
	SFP_TRY(check_peer(t, from, tag, err));
	return t->ops->sendrecv(t->impl, to, sbuf, slen, from, rbuf, cap, rlen, tag, t->timeout_s,
				err);
}

int sfp_transport_allreduce_f32(sfp_transport *t, float *x, size_t n, sfp_error *err)
{
	if (!t->ops->allreduce_f32)
		return sfp_error_set(err, SFP_EUNSUPPORTED,
				     "the %s transport has no native all-reduce", t->ops->name);
	return t->ops->allreduce_f32(t->impl, x, n, err);
}
