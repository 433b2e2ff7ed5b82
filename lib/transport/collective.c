/*
 * collective.c -- reductions and tensor messages over a transport, with the
 * tensors encoded as containers on the wire.
 *
 * Two all-reduce schemes (docs/distributed.md compares them):
 *
 *   RING       reduce-scatter then all-gather over D chunks. In the
 *              reduce-scatter each hop encodes a partial sum, the next rank
 *              decodes it and adds its own chunk; the rank that finishes a
 *              chunk encodes it once and the all-gather forwards those bytes
 *              unchanged. Each rank sends 2 (D-1)/D of the tensor. With lossy
 *              widths every hop rounds again (D quantizations of a sum).
 *   ALLGATHER  every rank encodes its whole tensor once; the encodings go
 *              round the ring and every rank decodes and sums them in rank
 *              order. Each rank sends (D-1) tensors, but every contribution
 *              is rounded exactly once, which is what error feedback needs.
 *
 * Either way every member ends with the same bits: the final values are
 * decoded from the same bytes (RING) or summed in the same order
 * (ALLGATHER). Error feedback adds the residual of the previous call before
 * encoding and keeps what this encoding dropped (exact for ALLGATHER; for
 * RING it covers the first rounding only).
 *
 * A received container is validated like any input (sfp_decode checks the
 * header, its CRC32C and the payload's); a bad one is an error naming the
 * sender, and nothing of it is used. The messages that are not containers
 * (the float64 sums, broadcasts, 16-bit casts) end with a CRC32C of their
 * bytes, checked the same way: without it a flipped bit in the sums of the
 * batch-norm statistics or the learned widths went into the model unseen
 * (found by tests/faults/wire.sh).
 */
#include <inttypes.h>
#include <stdlib.h>
#include <string.h>

#include "sfp/transport.h"

enum {
	TAG_RING = SFP_TAG_USER_MAX + 1,
	TAG_GATHER = SFP_TAG_USER_MAX + 2,
	TAG_F64 = SFP_TAG_USER_MAX + 3,
	TAG_BCAST = SFP_TAG_USER_MAX + 4
};

struct sfp_collective {
	sfp_transport *t;
	sfp_codec *codec;
	uint8_t *sbuf, *rbuf; /* one encoded message each */
	size_t scap, rcap;
	uint8_t **gather;     /* ALLGATHER: every member's encoded chunks */
	size_t *gcap;
	int ngather;
	size_t *clen;         /* ALLGATHER: each chunk's encoded size */
	size_t clen_cap;
	float *tmp;           /* decoded values */
	size_t tmp_cap;
};

/* The CRC32C trailer of a raw message. */
#define CRC_BYTES 4

static void seal(uint8_t *msg, size_t n)
{
	sfp_store_le32(msg + n, sfp_crc32c(0, msg, n));
}

static int sealed(const uint8_t *msg, size_t n)
{
	return sfp_load_le32(msg + n) == sfp_crc32c(0, msg, n);
}

static int grow(void *pp, size_t *cap, size_t need, size_t elem, sfp_error *err)
{
	void **p = pp;
	if (*cap >= need)
		return SFP_OK;
	size_t n = need + need / 4;
	void *q = realloc(*p, n * elem);
	if (!q)
		return sfp_error_set(err, SFP_ENOMEM, "out of memory (%zu bytes for a message)", n * elem);
	*p = q;
	*cap = n;
	return SFP_OK;
}

int sfp_collective_create(sfp_collective **out, sfp_transport *t, sfp_error *err)
{
	*out = NULL;
	sfp_collective *c = calloc(1, sizeof *c);
	if (!c || !(c->codec = sfp_codec_create())) {
		free(c);
		return sfp_error_set(err, SFP_ENOMEM, "out of memory");
	}
	c->t = t;
	*out = c;
	return SFP_OK;
}

void sfp_collective_free(sfp_collective *c)
{
	if (!c)
		return;
	sfp_codec_free(c->codec);
	free(c->sbuf);
	free(c->rbuf);
	for (int i = 0; i < c->ngather; i++)
		free(c->gather[i]);
	free(c->gather);
	free(c->gcap);
	free(c->clen);
	free(c->tmp);
	free(c);
}

static int check_group(const sfp_collective *c, const sfp_group *g, sfp_error *err)
{
	if (g->n < 1 || g->n > SFP_MAX_RANKS || g->me < 0 || g->me >= g->n ||
	    g->ranks[g->me] != sfp_transport_rank(c->t))
		return sfp_error_set(err, SFP_EINVAL, "collective: rank %d is not member %d of its group",
				     sfp_transport_rank(c->t), g->me);
	return SFP_OK;
}

/* Encode x[0..n) into *buf (grown as needed): a container, or with a cast
 * the raw 16-bit values; *len is the message size. */
static int encode(sfp_collective *c, uint8_t **buf, size_t *cap, size_t *len, const float *x,
		  size_t n, const sfp_params *p, int cast, sfp_wire_stats *st, sfp_error *err)
{
	const size_t bound = sfp_encode_bound(n, 1);
	SFP_TRY(grow(buf, cap, bound > 2 * n + CRC_BYTES ? bound : 2 * n + CRC_BYTES, 1, err));
	uint64_t shape = n, t0 = sfp_clock_ns();
	int rc = SFP_OK;
	if (cast) {
		uint8_t *o = *buf;
		for (size_t i = 0; i < n; i++) {
			sfp_store_le16(o + 2 * i, cast == SFP_CAST_FP16 ? sfp_f32_to_f16(x[i])
									: sfp_f32_to_bf16(x[i]));
		}
		seal(o, 2 * n);
		*len = 2 * n + CRC_BYTES;
	} else {
		rc = sfp_encode(c->codec, *buf, *cap, len, x, n, &shape, 1, p, err);
	}
	st->encode_ns += sfp_clock_ns() - t0;
	return rc;
}

/* Decode a message from world rank `from` that must hold exactly n values. */
static int decode(sfp_collective *c, float *x, size_t n, const uint8_t *buf, size_t len,
		  int cast, int from, sfp_wire_stats *st, sfp_error *err)
{
	uint64_t t0 = sfp_clock_ns();
	sfp_info info;
	sfp_error e2;
	int rc = SFP_OK;
	if (cast) {
		if (len != 2 * n + CRC_BYTES)
			rc = sfp_error_set(&e2, SFP_ECORRUPT, "%zu bytes where %zu 16-bit values were expected",
					   len, n);
		else if (!sealed(buf, 2 * n))
			rc = sfp_error_set(&e2, SFP_ECHECKSUM, "checksum mismatch");
		for (size_t i = 0; rc == SFP_OK && i < n; i++) {
			uint16_t h = sfp_load_le16(buf + 2 * i);
			x[i] = cast == SFP_CAST_FP16 ? sfp_f16_to_f32(h) : sfp_bf16_to_f32(h);
		}
	} else {
		rc = sfp_decode(c->codec, x, n, buf, len, &info, &e2);
		if (rc == SFP_OK && info.count != n)
			rc = sfp_error_set(&e2, SFP_ECORRUPT, "%" PRIu64 " values where %zu were expected",
					   info.count, n);
	}
	st->decode_ns += sfp_clock_ns() - t0;
	if (rc < 0)
		return sfp_error_set(err, rc, "rank %d: bad tensor message from rank %d: %s",
				     sfp_transport_rank(c->t), from, e2.msg);
	return SFP_OK;
}

static int send_msg(sfp_collective *c, int to, int tag, const void *buf, size_t len, size_t raw,
		    sfp_wire_stats *st, sfp_error *err)
{
	uint64_t t0 = sfp_clock_ns();
	int rc = sfp_transport_send(c->t, to, tag, buf, len, err);
	st->comm_ns += sfp_clock_ns() - t0;
	st->wire_bytes += len;
	st->raw_bytes += raw;
	st->messages++;
	return rc;
}

static int xchg(sfp_collective *c, int to, const void *s, size_t slen, int from, void *r,
		size_t rcap, size_t *rlen, int tag, size_t raw, sfp_wire_stats *st, sfp_error *err)
{
	uint64_t t0 = sfp_clock_ns();
	int rc = sfp_transport_sendrecv(c->t, to, s, slen, from, r, rcap, rlen, tag, err);
	st->comm_ns += sfp_clock_ns() - t0;
	st->wire_bytes += slen;
	st->raw_bytes += raw;
	st->messages++;
	return rc;
}

/* Error feedback at one rounding point: y = x + r in place, r = y - Q(y)
 * (Q is what encode + decode of y give). */
static int feed_back(sfp_collective *c, float *x, float *r, size_t n, const sfp_params *p,
		     sfp_wire_stats *st, sfp_error *err)
{
	for (size_t i = 0; i < n; i++)
		x[i] += r[i];
	uint64_t t0 = sfp_clock_ns();
	int rc = sfp_quantize(c->codec, c->tmp, x, n, p, err);
	st->encode_ns += sfp_clock_ns() - t0;
	SFP_TRY(rc);
	for (size_t i = 0; i < n; i++)
		r[i] = x[i] - c->tmp[i];
	return SFP_OK;
}

/* With error feedback (`residual` non-NULL), every rounding point gets its
 * own: this rank encodes chunk me - s at hop s of the reduce-scatter and
 * chunk me + 1 in the all-gather, every chunk index exactly once per call,
 * so one residual of n values holds each point's error for next time. */
static int ring(sfp_collective *c, const sfp_group *g, float *x, size_t n, const sfp_wire_cfg *w,
		float *residual, sfp_wire_stats *st, sfp_error *err)
{
	const sfp_params *p = &w->params;
	const int cast = w->cast;
	const int d = g->n, me = g->me;
	const int next = g->ranks[(me + 1) % d], prev = g->ranks[(me + d - 1) % d];
	size_t maxlen = n / (size_t)d + 1, slen, rlen, off, len;
	SFP_TRY(grow(&c->rbuf, &c->rcap, sfp_encode_bound(maxlen, 1), 1, err));
	SFP_TRY(grow(&c->tmp, &c->tmp_cap, maxlen, sizeof(float), err));
	/* reduce-scatter: after step s, chunk (me - s - 1) holds s + 2 terms */
	for (int s = 0; s < d - 1; s++) {
		int ks = ((me - s) % d + d) % d, kr = ((me - s - 1) % d + d) % d;
		sfp_split(n, d, ks, &off, &len);
		if (residual)
			SFP_TRY(feed_back(c, x + off, residual + off, len, p, st, err));
		SFP_TRY(encode(c, &c->sbuf, &c->scap, &slen, x + off, len, p, cast, st, err));
		SFP_TRY(xchg(c, next, c->sbuf, slen, prev, c->rbuf, c->rcap, &rlen, TAG_RING,
			     len * sizeof(float), st, err));
		sfp_split(n, d, kr, &off, &len);
		SFP_TRY(decode(c, c->tmp, len, c->rbuf, rlen, cast, prev, st, err));
		for (size_t i = 0; i < len; i++)
			x[off + i] += c->tmp[i];
	}
	/* all-gather: this rank finished chunk me + 1; its bytes travel unchanged */
	int own = (me + 1) % d;
	sfp_split(n, d, own, &off, &len);
	if (residual)
		SFP_TRY(feed_back(c, x + off, residual + off, len, p, st, err));
	SFP_TRY(encode(c, &c->sbuf, &c->scap, &slen, x + off, len, p, cast, st, err));
	SFP_TRY(decode(c, x + off, len, c->sbuf, slen, cast, sfp_transport_rank(c->t), st, err));
	for (int s = 0; s < d - 1; s++) {
		int ks = ((own - s) % d + d) % d, kr = ((own - s - 1) % d + d) % d;
		sfp_split(n, d, ks, &off, &len);
		size_t raw = len * sizeof(float);
		sfp_split(n, d, kr, &off, &len);
		SFP_TRY(xchg(c, next, c->sbuf, slen, prev, c->rbuf, c->rcap, &rlen, TAG_RING, raw,
			     st, err));
		SFP_TRY(decode(c, x + off, len, c->rbuf, rlen, cast, prev, st, err));
		/* forward what arrived: swap the buffers */
		uint8_t *b = c->sbuf;
		size_t cap = c->scap;
		c->sbuf = c->rbuf;
		c->scap = c->rcap;
		c->rbuf = b;
		c->rcap = cap;
		slen = rlen;
	}
	return SFP_OK;
}

static int ensure_gather(sfp_collective *c, int d, sfp_error *err)
{
	if (c->ngather >= d)
		return SFP_OK;
	uint8_t **g = realloc(c->gather, (size_t)d * sizeof *g);
	if (!g)
		return sfp_error_set(err, SFP_ENOMEM, "out of memory");
	c->gather = g;
	size_t *k = realloc(c->gcap, (size_t)d * sizeof *k);
	if (!k)
		return sfp_error_set(err, SFP_ENOMEM, "out of memory");
	c->gcap = k;
	for (int i = c->ngather; i < d; i++) {
		c->gather[i] = NULL;
		c->gcap[i] = 0;
	}
	c->ngather = d;
	return SFP_OK;
}

/* ALLGATHER moves each block as containers of at most ALLGATHER_CHUNK
 * values: a chunk goes out (asynchronously) as soon as it is encoded, so
 * encoding overlaps the transfer, and each message stays under the
 * transports' eager-send size. */
#define ALLGATHER_CHUNK 16384

static int allgather(sfp_collective *c, const sfp_group *g, float *x, size_t n,
		     const sfp_wire_cfg *w, sfp_wire_stats *st, sfp_error *err)
{
	const sfp_params *p = &w->params;
	const int cast = w->cast;
	const int d = g->n, me = g->me;
	const int next = g->ranks[(me + 1) % d], prev = g->ranks[(me + d - 1) % d];
	const size_t nc = (n + ALLGATHER_CHUNK - 1) / ALLGATHER_CHUNK;
	const size_t slot = sfp_encode_bound(ALLGATHER_CHUNK, 1);
	SFP_TRY(ensure_gather(c, d, err));
	for (int k = 0; k < d; k++)
		SFP_TRY(grow(&c->gather[k], &c->gcap[k], nc * slot, 1, err));
	SFP_TRY(grow(&c->clen, &c->clen_cap, (size_t)d * nc, sizeof(size_t), err));
	/* chunk j of block k: values [j * CHUNK, ...), bytes at slot j of gather[k] */
#define CHUNK_LEN(j) (n - (j) * ALLGATHER_CHUNK < ALLGATHER_CHUNK ? n - (j) * ALLGATHER_CHUNK : ALLGATHER_CHUNK)
	for (size_t j = 0; j < nc; j++) {
		uint8_t *dst = c->gather[me] + j * slot;
		size_t cap = slot, *len = &c->clen[(size_t)me * nc + j];
		SFP_TRY(encode(c, &dst, &cap, len, x + j * ALLGATHER_CHUNK, CHUNK_LEN(j), p, cast, st,
			       err));
		if (d > 1)
			SFP_TRY(send_msg(c, next, TAG_GATHER, dst, *len, CHUNK_LEN(j) * sizeof(float), st,
					 err));
	}
	for (int s = 0; s < d - 1; s++) {
		int ks = ((me - s) % d + d) % d, kr = ((me - s - 1) % d + d) % d;
		for (size_t j = 0; s > 0 && j < nc; j++) /* forward what arrived last step */
			SFP_TRY(send_msg(c, next, TAG_GATHER, c->gather[ks] + j * slot,
					 c->clen[(size_t)ks * nc + j], CHUNK_LEN(j) * sizeof(float), st, err));
		for (size_t j = 0; j < nc; j++) {
			uint64_t t0 = sfp_clock_ns();
			int rc = sfp_transport_recv(c->t, prev, TAG_GATHER, c->gather[kr] + j * slot, slot,
						    &c->clen[(size_t)kr * nc + j], err);
			st->comm_ns += sfp_clock_ns() - t0;
			SFP_TRY(rc);
		}
	}
	/* every member sums the decoded contributions in rank order */
	SFP_TRY(grow(&c->tmp, &c->tmp_cap, ALLGATHER_CHUNK, sizeof(float), err));
	for (int k = 0; k < d; k++)
		for (size_t j = 0; j < nc; j++) {
			float *xs = x + j * ALLGATHER_CHUNK, *dst = k == 0 ? xs : c->tmp;
			const size_t len = CHUNK_LEN(j);
			SFP_TRY(decode(c, dst, len, c->gather[k] + j * slot, c->clen[(size_t)k * nc + j],
				       cast, g->ranks[k], st, err));
			if (k > 0)
				for (size_t i = 0; i < len; i++)
					xs[i] += c->tmp[i];
		}
#undef CHUNK_LEN
	return SFP_OK;
}

int sfp_allreduce(sfp_collective *c, const sfp_group *g, float *x, size_t n,
		  const sfp_wire_cfg *w, float *residual, sfp_wire_stats *st, sfp_error *err)
{
	SFP_TRY(check_group(c, g, err));
	SFP_TRY(sfp_params_check(&w->params, err));
	if (g->n == 1 || n == 0)
		return SFP_OK;
	if (w->algo == SFP_ALLREDUCE_NATIVE) {
		if (g->n != sfp_transport_size(c->t))
			return sfp_error_set(err, SFP_EUNSUPPORTED,
					     "the native all-reduce spans every rank (no pipeline stages)");
		uint64_t t0 = sfp_clock_ns();
		int rc = sfp_transport_allreduce_f32(c->t, x, n, err);
		st->comm_ns += sfp_clock_ns() - t0;
		/* what a ring sends; MPI may choose another algorithm */
		uint64_t b = (uint64_t)(2.0 * (g->n - 1) / g->n * (double)n * sizeof(float));
		st->wire_bytes += b;
		st->raw_bytes += b;
		st->messages += 2 * (uint64_t)(g->n - 1);
		return rc;
	}
	const int lossless = !w->cast && w->params.e >= 8 && w->params.m >= 23;
	const int feedback = w->error_feedback && residual && !lossless && !w->cast;
	if (w->algo == SFP_ALLREDUCE_RING)
		return ring(c, g, x, n, w, feedback ? residual : NULL, st, err);
	if (feedback) {
		/* y = x + r; x = Q(y); r = y - Q(y) */
		SFP_TRY(grow(&c->tmp, &c->tmp_cap, n, sizeof(float), err));
		for (size_t i = 0; i < n; i++)
			x[i] += residual[i];
		uint64_t t0 = sfp_clock_ns();
		int rc = sfp_quantize(c->codec, c->tmp, x, n, &w->params, err);
		st->encode_ns += sfp_clock_ns() - t0;
		SFP_TRY(rc);
		for (size_t i = 0; i < n; i++) {
			residual[i] = x[i] - c->tmp[i];
			x[i] = c->tmp[i];
		}
	}
	return allgather(c, g, x, n, w, st, err);
}

int sfp_allreduce_f64(sfp_collective *c, const sfp_group *g, double *x, int n, sfp_error *err)
{
	SFP_TRY(check_group(c, g, err));
	const int d = g->n, me = g->me;
	if (d == 1 || n <= 0)
		return SFP_OK;
	const int next = g->ranks[(me + 1) % d], prev = g->ranks[(me + d - 1) % d];
	const size_t bytes = (size_t)n * sizeof(double), msg = bytes + CRC_BYTES;
	double *all = malloc((size_t)d * bytes);
	uint8_t *sb = malloc(2 * msg), *rb = sb + msg;
	if (!all || !sb) {
		free(all);
		free(sb);
		return sfp_error_set(err, SFP_ENOMEM, "out of memory");
	}
	memcpy(all + (size_t)me * n, x, bytes);
	int rc = SFP_OK;
	for (int s = 0; s < d - 1 && rc == SFP_OK; s++) {
		int ks = ((me - s) % d + d) % d, kr = ((me - s - 1) % d + d) % d;
		size_t len = 0;
		memcpy(sb, all + (size_t)ks * n, bytes);
		seal(sb, bytes);
		rc = sfp_transport_sendrecv(c->t, next, sb, msg, prev, rb, msg, &len, TAG_F64, err);
		if (rc == SFP_OK && len != msg)
			rc = sfp_error_set(err, SFP_ECORRUPT, "rank %d: %zu bytes of sums from rank %d, expected %zu",
					   sfp_transport_rank(c->t), len, prev, msg);
		else if (rc == SFP_OK && !sealed(rb, bytes))
			rc = sfp_error_set(err, SFP_ECHECKSUM,
					   "rank %d: bad sums message from rank %d: checksum mismatch",
					   sfp_transport_rank(c->t), prev);
		if (rc == SFP_OK)
			memcpy(all + (size_t)kr * n, rb, bytes);
	}
	if (rc == SFP_OK)
		for (int i = 0; i < n; i++) {
			double s = 0.0;
			for (int k = 0; k < d; k++)
				s += all[(size_t)k * n + i];
			x[i] = s;
		}
	free(sb);
	free(all);
	return rc;
}

int sfp_broadcast(sfp_collective *c, const sfp_group *g, int root, void *x, size_t n,
		  sfp_error *err)
{
	SFP_TRY(check_group(c, g, err));
	const int d = g->n, me = g->me;
	if (root < 0 || root >= d)
		return sfp_error_set(err, SFP_EINVAL, "broadcast: root %d of %d", root, d);
	if (d == 1)
		return SFP_OK;
	const int next = (me + 1) % d, prev = (me + d - 1) % d;
	uint8_t *m = malloc(n + CRC_BYTES);
	if (!m)
		return sfp_error_set(err, SFP_ENOMEM, "out of memory");
	int rc = SFP_OK;
	if (me != root) {
		size_t len = 0;
		rc = sfp_transport_recv(c->t, g->ranks[prev], TAG_BCAST, m, n + CRC_BYTES, &len, err);
		if (rc == SFP_OK && len != n + CRC_BYTES)
			rc = sfp_error_set(err, SFP_ECORRUPT, "rank %d: broadcast of %zu bytes, expected %zu",
					   sfp_transport_rank(c->t), len, n + CRC_BYTES);
		else if (rc == SFP_OK && !sealed(m, n))
			rc = sfp_error_set(err, SFP_ECHECKSUM,
					   "rank %d: bad broadcast message from rank %d: checksum mismatch",
					   sfp_transport_rank(c->t), g->ranks[prev]);
		if (rc == SFP_OK)
			memcpy(x, m, n);
	} else {
		memcpy(m, x, n);
		seal(m, n);
	}
	if (rc == SFP_OK && next != root)
		rc = sfp_transport_send(c->t, g->ranks[next], TAG_BCAST, m, n + CRC_BYTES, err);
	free(m);
	return rc;
}

int sfp_send_tensor(sfp_collective *c, int peer, int tag, const float *x, size_t n,
		    const sfp_params *p, sfp_wire_stats *st, sfp_error *err)
{
	size_t len;
	SFP_TRY(encode(c, &c->sbuf, &c->scap, &len, x, n, p, SFP_CAST_NONE, st, err));
	uint64_t t0 = sfp_clock_ns();
	int rc = sfp_transport_send(c->t, peer, tag, c->sbuf, len, err);
	st->comm_ns += sfp_clock_ns() - t0;
	st->wire_bytes += len;
	st->raw_bytes += n * sizeof(float);
	st->messages++;
	return rc;
}

int sfp_recv_tensor(sfp_collective *c, int peer, int tag, float *x, size_t n,
		    sfp_wire_stats *st, sfp_error *err)
{
	size_t len = 0;
	SFP_TRY(grow(&c->rbuf, &c->rcap, sfp_encode_bound(n, 1), 1, err));
	uint64_t t0 = sfp_clock_ns();
	int rc = sfp_transport_recv(c->t, peer, tag, c->rbuf, c->rcap, &len, err);
	st->comm_ns += sfp_clock_ns() - t0;
	SFP_TRY(rc);
	return decode(c, x, n, c->rbuf, len, SFP_CAST_NONE, peer, st, err);
}
