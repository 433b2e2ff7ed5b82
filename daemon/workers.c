/*
 * workers.c -- the worker listener: the place where the worker <-> daemon
 * protocol (proto/sfp.proto, docs/protocol.md, include/sfp/coord.h)
 * attaches to sfpd's loop.
 *
 * Not wired yet. --listen is accepted and kept in d->o.listen_url, the
 * token in d->o.token; sfpd_workers_start says that nothing listens there.
 * The store and everything HTTP work without it (--simulate feeds them).
 *
 * How it plugs in, on the loop's one thread:
 *  1. sfpd_workers_start: sfp_coord_server_create(&w->server, d->o.token,
 *     &hooks, err) with the hooks of step 5 (user = d); nng_rep0_open, then
 *     nng_listen(sock, d->o.listen_url, ...); keep both in struct
 *     sfpd_workers (d->workers).
 *  2. nng_socket_get_int(sock, NNG_OPT_RECVFD, &fd): a descriptor that is
 *     readable whenever nng_recvmsg would not block (a notification only:
 *     never read it).
 *  3. uv_poll_init(&d->loop, &w->poll, fd); w->poll.data = d;
 *     uv_poll_start(&w->poll, UV_READABLE, on_worker_ready).
 *  4. on_worker_ready: loop nng_recvmsg(sock, &msg, NNG_FLAG_NONBLOCK)
 *     until NNG_EAGAIN; per message sfp_coord_server_handle(w->server,
 *     body, len, &reply, &reply_len, sfp_clock_ns()), then send the reply
 *     (nng_sendmsg, NNG_FLAG_NONBLOCK; REP answers before the next receive).
 *  5. The hooks hand what the server accepted to the store:
 *       on_register -> sfp_stats_register(d->stats, h->job, rank, replica,
 *         stage, h->n_tensors, the layer of every tensor, now, NULL)
 *         (a layer may repeat, once per kind);
 *       on_report -> sfp_stats_report with one sfp_stats_width per tensor:
 *         layer and count from h->tensors[i], kind from
 *         sfp_stats_kind_parse(h->tensors[i].kind), e, m, n_e, n_m from
 *         r->widths[i]; loss, step, samples, footprint_bits as they are;
 *         raw/wire bytes and encode/decode/comm ns summed over r->traffic;
 *       on_heartbeat -> sfp_stats_heartbeat; on_goodbye -> sfp_stats_goodbye;
 *       on_drop(reason) -> sfp_stats_count_drop(d->stats, reason) (the
 *         coord and stats drop enums have the same order: oversize,
 *         malformed, unregistered, bad_token, version).
 *     The store counts its own refusals; see include/sfp/stats.h.
 *  6. Periodic work is a uv_timer on d->loop, like sfpd.c's tick.
 *  7. sfpd_workers_stop: uv_poll_stop, then uv_close(&w->poll, cb); in that
 *     callback nng_close(sock) (the descriptor belongs to the socket, so
 *     the poll handle goes first), sfp_coord_server_free, free(w). The
 *     loop runs until that callback has.
 * sfpd_run calls start after the store and HTTP are up and stop on
 * SIGTERM/SIGINT; /readyz turns ready only after start returned SFP_OK.
 */
#include "daemon/sfpd.h"

struct sfpd_workers {
	uv_poll_t poll; /* on the socket's NNG_OPT_RECVFD, once the protocol exists */
};

int sfpd_workers_start(sfpd *d, sfp_error *err)
{
	if (d->o.listen_url)
		sfp_logf(&d->log, SFP_LOG_WARN,
		         "--listen '%s': the worker listener is not wired into sfpd yet; "
		         "nothing listens there",
		         d->o.listen_url);
	return SFP_OK;
}

void sfpd_workers_stop(sfpd *d)
{
	(void)d->workers; /* nothing to close until the listener exists */
}
