/*
 * workers.c -- the worker listener: the worker <-> daemon protocol
 * (proto/sfp.proto, docs/protocol.md, include/sfp/coord.h) on sfpd's loop.
 *
 * An nng REP socket listens on --listen. nng works on its own threads; the
 * loop learns that a request is waiting from the socket's receive
 * descriptor (NNG_OPT_RECVFD: readable whenever a receive would not block;
 * a notification only, never read), polled with uv_poll; the HTTP server
 * also answers what is waiting before each request of its own, so a report
 * (which a training step waits on) queues behind at most one response.
 * Each request goes through lib/coord's handler, whose hooks hand what it
 * accepted to the stats store, and the reply goes straight back (REP
 * answers each request before taking the next). Everything runs on the
 * loop's thread, like the rest of sfpd, so the store needs no lock.
 */
#include <arpa/inet.h>
#include <math.h>
#include <nng/nng.h>
#include <nng/protocol/reqrep0/rep.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "daemon/sfpd.h"
#include "sfp/coord.h"

struct sfpd_workers {
	uv_poll_t poll;
	nng_socket sock;
	sfp_coord_server *server;
	int polling;
};

static void on_register(void *user, const sfp_coord_hello *h, uint64_t now)
{
	sfpd *d = user;
	const char **names = calloc((size_t)h->n_tensors + 1, sizeof *names);
	if (!names)
		return;
	for (int i = 0; i < h->n_tensors; i++)
		names[i] = h->tensors[i].layer;
	sfp_error err;
	if (sfp_stats_register(d->stats, h->job, (uint32_t)h->rank, (uint32_t)h->replica,
			       (uint32_t)h->stage, (uint32_t)h->n_tensors, names, now, &err) < 0)
		sfp_logf(&d->log, SFP_LOG_WARN, "register of %s rank %d: %s", h->job, h->rank, err.msg);
	else
		sfp_logf(&d->log, SFP_LOG_INFO, "worker %s rank %d (stage %d, replica %d) on %s pid %d",
			 h->job, h->rank, h->stage, h->replica, h->host, h->pid);
	free(names);
}

static void on_report(void *user, const sfp_coord_report *r, const sfp_coord_hello *h,
		      uint64_t now)
{
	sfpd *d = user;
	sfp_stats_width *w = calloc((size_t)r->n_widths + 1, sizeof *w);
	if (!w)
		return;
	for (int i = 0; i < r->n_widths; i++) {
		int kind = sfp_stats_kind_parse(h->tensors[i].kind);
		w[i] = (sfp_stats_width){h->tensors[i].layer,
					 kind < 0 ? SFP_STATS_WEIGHTS : (sfp_stats_kind)kind,
					 r->widths[i].e,
					 r->widths[i].m,
					 r->widths[i].n_e,
					 r->widths[i].n_m,
					 h->tensors[i].count};
	}
	sfp_worker_report rep = {.job = r->job,
				 .rank = (uint32_t)r->rank,
				 .step = r->step,
				 .loss = r->loss,
				 .footprint_bits_per_value = r->footprint_bits,
				 .samples = r->samples,
				 .widths = w,
				 .n_widths = (uint32_t)r->n_widths};
	for (int i = 0; i < r->n_traffic; i++) {
		rep.raw_bytes += r->traffic[i].raw_bytes;
		rep.wire_bytes += r->traffic[i].wire_bytes;
		rep.encode_ns += r->traffic[i].encode_ns;
		rep.decode_ns += r->traffic[i].decode_ns;
		rep.comm_ns += r->traffic[i].comm_ns;
	}
	sfp_error err;
	if (sfp_stats_report(d->stats, &rep, now, &err) < 0)
		sfp_logf(&d->log, SFP_LOG_WARN, "report of %s rank %d: %s", r->job, r->rank, err.msg);
	free(w);
}

static void on_heartbeat(void *user, const char *job, int rank, int64_t step, uint64_t now)
{
	sfpd *d = user;
	(void)step;
	(void)sfp_stats_heartbeat(d->stats, job, (uint32_t)rank, now);
}

static void on_goodbye(void *user, const char *job, int rank, int ok, uint64_t now)
{
	sfpd *d = user;
	sfp_logf(&d->log, SFP_LOG_INFO, "worker %s rank %d left (%s)", job, rank,
		 ok ? "finished" : "stopped on an error");
	(void)sfp_stats_goodbye(d->stats, job, (uint32_t)rank, now);
}

static void on_drop(void *user, int reason)
{
	sfpd *d = user;
	/* the two enums list the same reasons in the same order */
	sfp_stats_count_drop(d->stats, (sfp_stats_drop)reason);
}

void sfpd_workers_serve(sfpd *d)
{
	sfpd_workers *w = d->workers;
	if (!w || !w->polling)
		return;
	for (;;) {
		nng_msg *msg = NULL;
		if (nng_recvmsg(w->sock, &msg, NNG_FLAG_NONBLOCK) != 0)
			break; /* NNG_EAGAIN: nothing more now */
		const void *reply;
		size_t len;
		sfp_coord_server_handle(w->server, nng_msg_body(msg), nng_msg_len(msg), &reply, &len,
					sfp_clock_ns());
		nng_msg_clear(msg);
		if (nng_msg_append(msg, reply, len) != 0 ||
		    nng_sendmsg(w->sock, msg, NNG_FLAG_NONBLOCK) != 0)
			nng_msg_free(msg); /* the worker times out and tries again */
	}
}

static void on_worker_ready(uv_poll_t *p, int status, int events)
{
	(void)events;
	if (status >= 0)
		sfpd_workers_serve(p->data);
}

/* The URL workers dial: a tcp:// one with the port actually bound (port 0
 * picks a free one, which the log line then names), others as given. */
static void bound_url(nng_listener l, const char *url, char *out, size_t cap)
{
	nng_sockaddr sa;
	char host[INET6_ADDRSTRLEN];
	snprintf(out, cap, "%s", url);
	if (strncmp(url, "tcp", 3) || nng_listener_get_addr(l, NNG_OPT_LOCADDR, &sa) != 0)
		return;
	if (sa.s_family == NNG_AF_INET &&
	    inet_ntop(AF_INET, &sa.s_in.sa_addr, host, sizeof host))
		snprintf(out, cap, "tcp://%s:%u", host, (unsigned)ntohs(sa.s_in.sa_port));
	else if (sa.s_family == NNG_AF_INET6 &&
		 inet_ntop(AF_INET6, sa.s_in6.sa_addr, host, sizeof host))
		snprintf(out, cap, "tcp://[%s]:%u", host, (unsigned)ntohs(sa.s_in6.sa_port));
}

int sfpd_workers_start(sfpd *d, sfp_error *err)
{
	if (!d->o.listen_url)
		return SFP_OK;
	sfpd_workers *w = calloc(1, sizeof *w);
	if (!w)
		return sfp_error_set(err, SFP_ENOMEM, "out of memory");
	sfp_coord_hooks hooks = {d, on_register, on_report, on_heartbeat, on_goodbye, on_drop};
	int rc = sfp_coord_server_create(&w->server, d->o.token ? d->o.token : "", &hooks, err);
	if (rc < 0) {
		free(w);
		return rc;
	}
	int rv = nng_rep0_open(&w->sock), fd = -1;
	nng_listener l = NNG_LISTENER_INITIALIZER;
	char url[300];
	if (!rv) {
		/* a request over the protocol's limit is dropped by nng before we see it */
		nng_socket_set_size(w->sock, NNG_OPT_RECVMAXSZ, SFP_COORD_MAX_MSG + 1024);
		rv = nng_listen(w->sock, d->o.listen_url, &l, 0);
		if (rv)
			nng_close(w->sock);
	}
	if (!rv && (rv = nng_socket_get_int(w->sock, NNG_OPT_RECVFD, &fd)) != 0)
		nng_close(w->sock);
	if (rv) {
		sfp_coord_server_free(w->server);
		free(w);
		return sfp_error_set(err, SFP_EIO, "--listen '%s': %s", d->o.listen_url, nng_strerror(rv));
	}
	uv_poll_init(&d->loop, &w->poll, fd);
	w->poll.data = d;
	uv_poll_start(&w->poll, UV_READABLE, on_worker_ready);
	w->polling = 1;
	d->workers = w;
	bound_url(l, d->o.listen_url, url, sizeof url);
	/* the test scripts read the port from this line (with --listen tcp://HOST:0) */
	sfp_logf(&d->log, SFP_LOG_INFO, "workers: listening on %s%s", url,
		 d->o.token ? " (job token required)" : "");
	return SFP_OK;
}

static void on_poll_closed(uv_handle_t *h)
{
	sfpd *d = h->data;
	sfpd_workers *w = d->workers;
	nng_close(w->sock); /* the descriptor is the socket's: the poll handle went first */
	sfp_coord_server_free(w->server);
	free(w);
	d->workers = NULL;
}

void sfpd_workers_stop(sfpd *d)
{
	sfpd_workers *w = d->workers;
	if (!w || !w->polling)
		return;
	w->polling = 0;
	uv_poll_stop(&w->poll);
	uv_close((uv_handle_t *)&w->poll, on_poll_closed);
}
