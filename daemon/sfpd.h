/*
 * sfpd.h -- the daemon's parts and how they share one libuv loop:
 *
 *   sfpd.c         the loop: stats store, tick timer, signals, start/stop
 *   http_server.c  HTTP connections (bytes only; lib/http decides)
 *   workers.c      the nng listener for workers (the protocol's place)
 *   simulate.c     --simulate: fake workers, for trying the page and metrics
 *   main.c         argv -> sfpd_opts -> sfpd_run -> exit code
 *
 * Everything runs on the loop's thread; the stats store is used from
 * there only. libuv types stay in daemon/ (never in include/sfp/).
 */
#ifndef SFPD_H
#define SFPD_H

#include <uv.h>

#include "sfp/http.h"
#include "sfp/stats.h"

#define SFPD_DEFAULT_HTTP "127.0.0.1:9464"
/* How often workers are checked for silence and the history is synced. */
#define SFPD_TICK_MS 1000

typedef struct sfpd_opts {
	const char *http_addr;  /* HOST:PORT or [V6]:PORT; port 0 picks a free one */
	const char *history;    /* history file, or NULL */
	const char *token;      /* the job token workers must present, or NULL */
	const char *listen_url; /* nng URL for workers (tcp://HOST:PORT), or NULL */
	unsigned simulate;      /* fake workers (0: none) */
	unsigned simulate_ms;   /* between two reports of one fake worker */
	sfp_stats_opts stats;
} sfpd_opts;

typedef struct sfpd_http sfpd_http;
typedef struct sfpd_workers sfpd_workers;
typedef struct sfpd_sim sfpd_sim;

typedef struct sfpd {
	uv_loop_t loop;
	sfpd_opts o;
	sfp_log log;
	sfp_stats *stats;
	sfp_http_site site;
	sfpd_http *http;
	sfpd_workers *workers;
	sfpd_sim *sim;
	uv_timer_t tick;
	uv_signal_t sigterm, sigint;
	int stopping;
} sfpd;

/* Run until SIGTERM or SIGINT. Errors at start-up come back in err. */
int sfpd_run(const sfpd_opts *o, sfp_error *err);
/* Begin a clean stop (what the signals do); the loop ends when every
 * handle has closed. */
void sfpd_stop(sfpd *d);
/* A libuv error as an sfp error with a message ("what: libuv's words"). */
int sfpd_uv_error(sfp_error *err, int uv_rc, const char *what);

/* ---- http_server.c ---- */
/* Listen on addr and serve site; *port is the port bound (for port 0). */
int sfpd_http_start(sfpd_http **out, uv_loop_t *loop, const char *addr, sfp_http_site *site,
                    const sfp_log *log, int *port, sfp_error *err);
/* Close the listener and every connection; memory goes in the close
 * callbacks, so the loop must run afterwards. NULL is fine. */
void sfpd_http_stop(sfpd_http *h);
/* fn(user) runs before each request is answered (sfpd answers the workers
 * there: see sfpd_workers_serve). */
void sfpd_http_before_request(sfpd_http *h, void (*fn)(void *user), void *user);

/* ---- workers.c: the worker protocol's listener ---- */
int sfpd_workers_start(sfpd *d, sfp_error *err);
void sfpd_workers_stop(sfpd *d);
/* Answer every worker request waiting now, without blocking. The loop does
 * it when the socket is readable, and the HTTP server before each request:
 * a training step waits on its report's answer, a page does not, so a
 * report never queues behind more than the one response being rendered. */
void sfpd_workers_serve(sfpd *d);

/* ---- simulate.c ---- */
int sfpd_sim_start(sfpd *d, sfp_error *err);
void sfpd_sim_stop(sfpd *d);

/* ---- the embedded page (generated: build/gen/assets.c) ---- */
extern const sfp_http_asset sfpd_assets[];
extern const size_t sfpd_n_assets;

#endif
