/*
 * exchange.c -- the replicas' sum of the weight gradients, in buckets that
 * start while backward still runs (docs/distributed.md, "Buckets").
 *
 * The gradient arena holds the layers' gradients in layer order, so the
 * layers backward finishes first (the last ones) sit at its end. The
 * buckets cut it from the end into slices of whole layers of about
 * parallel.bucket_kb each; bucket k is final once backward has passed its
 * first layer (sfp_model_on_grads_ready). With parallel.overlap, a thread
 * of the exchange sums bucket after bucket over the replicas (encode, ring
 * steps, decode, error feedback: sfp_allreduce on the slice) as they become
 * final, while the trainer's threads go on with backward; the step waits
 * only for what is left when backward ends, and that wait is the exposed
 * exchange time. Without overlap the same buckets are summed in the same
 * order after backward: the result is the same bits either way.
 *
 * The transport is then used by that thread alone until the step has
 * waited for it, so calls never overlap (MPI_THREAD_SERIALIZED is enough).
 * A pipelined run (several stages) exchanges after its schedule, without
 * the thread: its stages send activations from the trainer's thread.
 */
#include <pthread.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "train/train_internal.h"

typedef sfp_bucket bucket;

struct sfp_exchange {
	sfp_dist *d; /* not owned */
	float *grads;
	bucket *b;
	int nb;
	int threaded;
	pthread_t th;
	pthread_mutex_t mu;
	pthread_cond_t cv;
	int queued, done, stop; /* buckets handed over and finished this step */
	int rc;                 /* the thread's first failure, with err */
	sfp_error err;
	sfp_wire_stats ws; /* the thread's traffic, added to the step's after it */
};

int sfp_grad_buckets(const sfp_model *m, size_t bucket_kb, sfp_bucket *out)
{
	size_t np;
	sfp_model_grads((sfp_model *)m, &np);
	const int n = sfp_model_n_layers(m);
	const size_t cap = bucket_kb ? bucket_kb * 1024 / sizeof(float) : SIZE_MAX;
	int nb = 0;
	bucket cur = {.off = np, .n = 0, .first = 0};
	for (int i = n - 1; i >= 0; i--) {
		sfp_layer_info li;
		sfp_model_layer(m, i, &li);
		if (!li.nparams)
			continue;
		if (li.param_offset + li.nparams != cur.off)
			goto whole;
		cur.off = li.param_offset;
		cur.n += li.nparams;
		cur.first = i;
		if (cur.n >= cap) {
			out[nb++] = cur;
			cur.n = 0;
		}
	}
	if (cur.off != 0)
		goto whole;
	if (cur.n)
		out[nb++] = cur;
	if (nb)
		return nb;
whole: /* the layers do not tile the arena: one bucket of all of it */
	out[0] = (bucket){.off = 0, .n = np, .first = 0};
	return 1;
}

static int plan_buckets(sfp_exchange *x, sfp_model *m, size_t kb, sfp_error *err)
{
	size_t np;
	x->grads = sfp_model_grads(m, &np);
	if (!(x->b = calloc((size_t)sfp_model_n_layers(m) + 1, sizeof *x->b)))
		return sfp_error_set(err, SFP_ENOMEM, "out of memory");
	x->nb = sfp_grad_buckets(m, kb, x->b);
	return SFP_OK;
}

static int run_bucket(sfp_exchange *x, int k, sfp_wire_stats *ws, sfp_error *err)
{
	sfp_dist *d = x->d;
	const bucket *b = &x->b[k];
	return sfp_allreduce(d->coll, &d->dp_g, x->grads + b->off, b->n, &d->gwire,
			     d->residual ? d->residual + b->off : NULL, ws, err);
}

static void *exchange_thread(void *arg)
{
	sfp_exchange *x = arg;
	pthread_mutex_lock(&x->mu);
	for (;;) {
		while (!x->stop && x->done == x->queued)
			pthread_cond_wait(&x->cv, &x->mu);
		if (x->stop)
			break;
		const int k = x->done;
		pthread_mutex_unlock(&x->mu);
		sfp_error e;
		const int rc = run_bucket(x, k, &x->ws, &e);
		pthread_mutex_lock(&x->mu);
		if (rc != SFP_OK) { /* nothing more this step; the step says why */
			x->rc = rc;
			x->err = e;
			x->done = x->queued = x->nb;
		} else {
			x->done++;
		}
		pthread_cond_broadcast(&x->cv);
	}
	pthread_mutex_unlock(&x->mu);
	return NULL;
}

/* sfp_model_on_grads_ready: hand over the buckets now final */
static void grads_ready(void *user, int first)
{
	sfp_exchange *x = user;
	pthread_mutex_lock(&x->mu);
	const int before = x->queued;
	while (x->queued < x->nb && x->b[x->queued].first >= first)
		x->queued++;
	if (x->queued != before)
		pthread_cond_broadcast(&x->cv);
	pthread_mutex_unlock(&x->mu);
}

int sfp_exchange_create(sfp_exchange **out, sfp_dist *d, sfp_model *m,
			const sfp_cfg_parallel *pc, sfp_error *err)
{
	sfp_exchange *x = calloc(1, sizeof *x);
	if (!x)
		return sfp_error_set(err, SFP_ENOMEM, "out of memory");
	*out = x;
	x->d = d;
	SFP_TRY(plan_buckets(x, m, (size_t)pc->bucket_kb, err));
	if (!pc->overlap || d->stages > 1 || !sfp_transport_handoff(d->tr))
		return SFP_OK;
	if (pthread_mutex_init(&x->mu, NULL) != 0)
		return sfp_error_set(err, SFP_ENOMEM, "cannot create the exchange's lock");
	if (pthread_cond_init(&x->cv, NULL) != 0) {
		pthread_mutex_destroy(&x->mu);
		return sfp_error_set(err, SFP_ENOMEM, "cannot create the exchange's condition");
	}
	if (pthread_create(&x->th, NULL, exchange_thread, x) != 0) {
		pthread_cond_destroy(&x->cv);
		pthread_mutex_destroy(&x->mu);
		return sfp_error_set(err, SFP_ENOMEM, "cannot start the exchange's thread");
	}
	x->threaded = 1;
	sfp_model_on_grads_ready(m, grads_ready, x);
	return SFP_OK;
}

int sfp_exchange_buckets(const sfp_exchange *x)
{
	return x->nb;
}

int sfp_exchange_overlaps(const sfp_exchange *x)
{
	return x->threaded;
}

void sfp_exchange_begin(sfp_exchange *x)
{
	if (!x->threaded)
		return;
	pthread_mutex_lock(&x->mu);
	x->queued = x->done = 0;
	x->rc = SFP_OK;
	pthread_mutex_unlock(&x->mu);
}

static void add_stats(sfp_wire_stats *a, const sfp_wire_stats *b)
{
	a->raw_bytes += b->raw_bytes;
	a->wire_bytes += b->wire_bytes;
	a->messages += b->messages;
	a->encode_ns += b->encode_ns;
	a->decode_ns += b->decode_ns;
	a->comm_ns += b->comm_ns;
}

int sfp_exchange_finish(sfp_exchange *x, sfp_error *err)
{
	sfp_dist *d = x->d;
	const uint64_t t0 = sfp_clock_ns();
	int rc = SFP_OK;
	if (!x->threaded) {
		for (int k = 0; k < x->nb && rc == SFP_OK; k++)
			rc = run_bucket(x, k, &d->ws[WIRE_GRADS], err);
	} else {
		pthread_mutex_lock(&x->mu);
		x->queued = x->nb; /* backward is over: everything is final */
		pthread_cond_broadcast(&x->cv);
		while (x->done < x->nb)
			pthread_cond_wait(&x->cv, &x->mu);
		rc = x->rc;
		if (rc != SFP_OK)
			*err = x->err;
		add_stats(&d->ws[WIRE_GRADS], &x->ws);
		memset(&x->ws, 0, sizeof x->ws);
		pthread_mutex_unlock(&x->mu);
	}
	d->exposed_ns += sfp_clock_ns() - t0;
	return rc;
}

void sfp_exchange_free(sfp_exchange *x)
{
	if (!x)
		return;
	if (x->threaded) {
		pthread_mutex_lock(&x->mu);
		x->stop = 1;
		pthread_cond_broadcast(&x->cv);
		pthread_mutex_unlock(&x->mu);
		pthread_join(x->th, NULL);
		pthread_cond_destroy(&x->cv);
		pthread_mutex_destroy(&x->mu);
	}
	free(x->b);
	free(x);
}
