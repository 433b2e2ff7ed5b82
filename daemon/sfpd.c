/*
 * sfpd.c -- the daemon's loop: open the stats store (recovering its
 * history), start the HTTP server, the worker listener and (if asked) the
 * simulation, tick once a second, and stop cleanly on SIGTERM or SIGINT:
 * every handle closed, the history synced and closed.
 */
#include <inttypes.h>
#include <stdio.h>
#include <string.h>

#include "daemon/sfpd.h"

int sfpd_uv_error(sfp_error *err, int uv_rc, const char *what)
{
	/* the boundary where libuv's codes become ours */
	int code = uv_rc == UV_ENOMEM                                ? SFP_ENOMEM
	           : uv_rc == UV_EINVAL || uv_rc == UV_EADDRNOTAVAIL ? SFP_EINVAL
	                                                             : SFP_EIO;
	return sfp_error_set(err, code, "%s: %s", what, uv_strerror(uv_rc));
}

static void on_tick(uv_timer_t *t)
{
	sfpd *d = t->data;
	int died = sfp_stats_tick(d->stats, sfp_clock_ns());
	if (died)
		sfp_logf(&d->log, SFP_LOG_WARN, "%d worker%s silent for %.0f s: marked dead", died,
		         died == 1 ? "" : "s", (double)d->o.stats.dead_after_ns * 1e-9);
}

static void on_signal(uv_signal_t *h, int signum)
{
	sfpd *d = h->data;
	sfp_logf(&d->log, SFP_LOG_INFO, "%s: stopping", signum == SIGTERM ? "SIGTERM" : "SIGINT");
	sfpd_stop(d);
}

void sfpd_stop(sfpd *d)
{
	if (d->stopping)
		return;
	d->stopping = 1;
	d->site.ready = 0;
	sfpd_sim_stop(d);
	sfpd_workers_stop(d);
	sfpd_http_stop(d->http);
	d->http = NULL;
	uv_close((uv_handle_t *)&d->tick, NULL);
	uv_close((uv_handle_t *)&d->sigterm, NULL);
	uv_close((uv_handle_t *)&d->sigint, NULL);
}

static void serve_workers(void *user)
{
	sfpd_workers_serve(user);
}

static void log_recovery(sfpd *d)
{
	const sfp_stats_recovery *r = sfp_stats_recovery_info(d->stats);
	if (!d->o.history)
		return;
	sfp_logf(&d->log, SFP_LOG_INFO,
	         "history '%s': %" PRIu64 " records recovered, %" PRIu64
	         " corrupt skipped, %" PRIu64 " refused, %" PRIu64 " bytes of torn tail cut",
	         d->o.history, r->records, r->corrupt_records, r->rejected_records,
	         r->truncated_bytes);
}

static int start(sfpd *d, sfp_error *err)
{
	int port = 0, rc;
	d->o.stats.log = &d->log;
	SFP_TRY(sfp_stats_open(&d->stats, d->o.history, &d->o.stats, err));
	log_recovery(d);
	d->site.stats = d->stats;
	d->site.version = SFP_VERSION;
	d->site.assets = sfpd_assets;
	d->site.n_assets = sfpd_n_assets;
	uv_timer_init(&d->loop, &d->tick);
	uv_signal_init(&d->loop, &d->sigterm);
	uv_signal_init(&d->loop, &d->sigint);
	d->tick.data = d->sigterm.data = d->sigint.data = d;
	if ((rc = uv_signal_start(&d->sigterm, on_signal, SIGTERM)) < 0 ||
	    (rc = uv_signal_start(&d->sigint, on_signal, SIGINT)) < 0 ||
	    (rc = uv_timer_start(&d->tick, on_tick, SFPD_TICK_MS, SFPD_TICK_MS)) < 0)
		return sfpd_uv_error(err, rc, "cannot start the loop");
	SFP_TRY(sfpd_http_start(&d->http, &d->loop, d->o.http_addr, &d->site, &d->log, &port, err));
	/* the test scripts read the port from this line (with --http HOST:0) */
	char host[256];
	const char *colon = strrchr(d->o.http_addr, ':');
	snprintf(host, sizeof host, "%.*s", (int)(colon - d->o.http_addr), d->o.http_addr);
	sfp_logf(&d->log, SFP_LOG_INFO, "http on http://%s:%d/", host, port);
	SFP_TRY(sfpd_workers_start(d, err));
	if (d->workers)
		sfpd_http_before_request(d->http, serve_workers, d);
	if (d->o.simulate)
		SFP_TRY(sfpd_sim_start(d, err));
	d->site.ready = 1;
	return SFP_OK;
}

static void log_stderr(void *user, int level, const char *msg)
{
	static const char *const names[] = {"debug", "info", "warning", "error"};
	fprintf(stderr, "sfpd: %s%s%s\n", level >= SFP_LOG_WARN ? names[level] : "",
	        level >= SFP_LOG_WARN ? ": " : "", msg);
	fflush(stderr);
}

int sfpd_run(const sfpd_opts *o, sfp_error *err)
{
	sfpd d;
	memset(&d, 0, sizeof d);
	d.o = *o;
	d.log.fn = log_stderr;
	d.log.min_level = SFP_LOG_INFO;
	int rc = uv_loop_init(&d.loop);
	if (rc < 0)
		return sfpd_uv_error(err, rc, "cannot create the event loop");
	rc = start(&d, err);
	if (rc < 0 && d.tick.loop) /* close what did start */
		sfpd_stop(&d);
	uv_run(&d.loop, UV_RUN_DEFAULT);
	uv_loop_close(&d.loop);
	sfp_stats_close(d.stats);
	if (rc == SFP_OK)
		sfp_logf(&d.log, SFP_LOG_INFO, "stopped");
	return rc;
}
