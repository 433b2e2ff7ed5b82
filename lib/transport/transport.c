/*
 * transport.c -- the backend-independent half of a transport: argument
 * checks, the receive deadline, rank/size bookkeeping, and the bit-flip
 * fault injection of the fault tests.
 */
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "sfp/transport.h"

struct sfp_transport {
	const sfp_transport_ops *ops;
	void *impl;
	int rank, size;
	double timeout_s;
	/* fault injection: flip a bit of send number flip_at (0: off) */
	uint64_t sent, flip_at, flip_bit;
	sfp_transport_notify_fn notify;
	void *notify_user;
	uint8_t *fbuf; /* the flipped copy */
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
	free(t->fbuf);
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

int sfp_transport_handoff(const sfp_transport *t)
{
	return t->ops->handoff ? t->ops->handoff(t->impl) : 0;
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

void sfp_transport_inject_flip(sfp_transport *t, uint64_t nth, uint64_t bit,
			       sfp_transport_notify_fn notify, void *user)
{
	t->flip_at = nth ? t->sent + nth : 0;
	t->flip_bit = bit;
	t->notify = notify;
	t->notify_user = user;
}

/* Count a send; if it is the one to corrupt, return a flipped copy of buf
 * (or NULL when the copy cannot be made: then it goes out intact, said). */
static const void *count_send(sfp_transport *t, int peer, int tag, const void *buf, size_t len)
{
	t->sent++;
	if (!t->flip_at || t->sent != t->flip_at)
		return buf;
	t->flip_at = 0;
	char msg[200];
	free(t->fbuf);
	t->fbuf = len ? malloc(len) : NULL;
	if (!t->fbuf) {
		snprintf(msg, sizeof msg, "fault injection: message %" PRIu64 " to rank %d is empty "
			 "or cannot be copied; sent intact", t->sent, peer);
	} else {
		memcpy(t->fbuf, buf, len);
		const uint64_t b = t->flip_bit == UINT64_MAX ? (uint64_t)len * 4 : t->flip_bit % ((uint64_t)len * 8);
		t->fbuf[b / 8] ^= (uint8_t)(1u << (b % 8));
		buf = t->fbuf;
		snprintf(msg, sizeof msg, "fault injection: flipped bit %" PRIu64 " of message %" PRIu64
			 " (tag %d, %zu bytes) to rank %d", b, t->sent, tag, len, peer);
	}
	if (t->notify)
		t->notify(t->notify_user, msg);
	return buf;
}

int sfp_transport_send(sfp_transport *t, int peer, int tag, const void *buf, size_t len,
		       sfp_error *err)
{
	SFP_TRY(check_peer(t, peer, tag, err));
	buf = count_send(t, peer, tag, buf, len);
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
	sbuf = count_send(t, to, tag, sbuf, slen);
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
