/*
 * workers.c -- the worker listener: the place where the nng protocol
 * (proto/sfp.proto, worker <-> daemon) attaches to sfpd's loop.
 *
 * This build does not speak the protocol yet. --listen is accepted and kept
 * in d->o.listen_url, and the token in d->o.token; sfpd_workers_start says
 * that nothing listens there. The store and everything HTTP work without it
 * (--simulate feeds them).
 *
 * How the protocol plugs in, without a second thread:
 *  1. sfpd_workers_start: open the socket (nng_rep0_open or whichever
 *     pattern the protocol uses), nng_listen(sock, d->o.listen_url, ...),
 *     and keep it in struct sfpd_workers (d->workers).
 *  2. nng_socket_get_int(sock, NNG_OPT_RECVFD, &fd): a descriptor that is
 *     readable whenever nng_recvmsg would not block (a notification only:
 *     never read it).
 *  3. uv_poll_init(&d->loop, &w->poll, fd); w->poll.data = d;
 *     uv_poll_start(&w->poll, UV_READABLE, on_worker_ready).
 *  4. on_worker_ready: loop nng_recvmsg(sock, &msg, NNG_FLAG_NONBLOCK)
 *     until NNG_EAGAIN. Per message: too large ->
 *     sfp_stats_count_drop(d->stats, SFP_STATS_DROP_OVERSIZE); protobuf
 *     unpack fails -> ..._MALFORMED; unknown version -> ..._VERSION; token
 *     differs from d->o.token -> ..._BAD_TOKEN; otherwise
 *     sfp_stats_register / sfp_stats_report / sfp_stats_heartbeat /
 *     sfp_stats_goodbye with now = sfp_clock_ns() (those count their own
 *     rejections; see include/sfp/stats.h). Answers go back with
 *     nng_sendmsg(..., NNG_FLAG_NONBLOCK) (NNG_OPT_SENDFD and a second
 *     uv_poll if the send side can fill up).
 *  5. Periodic work (BitWave's period, the widths answer) is a uv_timer on
 *     d->loop, like sfpd.c's tick.
 *  6. sfpd_workers_stop: uv_poll_stop, then uv_close(&w->poll, cb) and
 *     nng_close(sock) in that close callback (the descriptor belongs to
 *     the socket, so the poll handle must be gone first), free w there.
 *     The loop keeps running until that callback has run.
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
		         "--listen '%s': this build has no worker protocol yet; nothing listens "
		         "there",
		         d->o.listen_url);
	return SFP_OK;
}

void sfpd_workers_stop(sfpd *d)
{
	(void)d->workers; /* nothing to close until the listener exists */
}
