/*
 * http_server.c -- HTTP connections on the libuv loop. This file only
 * moves bytes: lib/http parses each request and builds each response, and
 * this file enforces the limits that need a socket or a clock
 * (include/sfp/http.h): the number of connections, the time a request may
 * take, and the output queued for a client that does not read.
 *
 * A connection's life: accepted -> requests answered in order (pipelined
 * input is parsed one request at a time; input that arrives while too much
 * output is queued waits in the connection's stash and reading pauses) ->
 * finishing (the last response written, then FIN, then what the client
 * still sends is drained for SFP_HTTP_LINGER_MS so it reads the response
 * rather than a reset) -> closed. Each connection owns two handles (socket,
 * timer); its memory is freed when both close callbacks have run.
 */
#include <stdlib.h>
#include <string.h>

#include "daemon/sfpd.h"

typedef struct conn conn;

struct sfpd_http {
	uv_tcp_t listener;
	uv_loop_t *loop;
	sfp_http_site *site;
	const sfp_log *log;
	void (*before_request)(void *user);
	void *before_user;
	conn *conns;      /* open connections, a list */
	unsigned n_conns; /* in the list, counted or not */
	int stopping;
	char rbuf[65536]; /* reads are handled at once, so one buffer serves all */
};

struct conn {
	uv_tcp_t tcp; /* first: libuv hands back &tcp */
	uv_timer_t timer;
	sfpd_http *srv;
	sfp_http_parser *parser;
	conn *prev, *next;
	char *stash; /* input not parsed yet (while output is backed up) */
	size_t stash_len;
	size_t pending; /* response bytes queued and not yet written */
	int reading;
	int finishing; /* no more requests: write what is queued, then close */
	int closed;    /* uv_close called */
	int handles;   /* handles not yet closed */
	int counted;   /* part of connections_open */
};

typedef struct wreq {
	uv_write_t req; /* first */
	conn *c;
	char *data;
	size_t len;
} wreq;

static void conn_close(conn *c);
static void conn_process(conn *c, const char *data, size_t len);

static void on_handle_closed(uv_handle_t *h)
{
	conn *c = h->data;
	if (--c->handles)
		return;
	sfpd_http *srv = c->srv;
	if (c->prev)
		c->prev->next = c->next;
	else
		srv->conns = c->next;
	if (c->next)
		c->next->prev = c->prev;
	if (c->counted)
		srv->site->connections_open--;
	srv->n_conns--;
	sfp_http_parser_free(c->parser);
	free(c->stash);
	free(c);
	/* the server itself goes once its listener and last connection have */
	if (srv->stopping && !srv->conns && !srv->listener.data)
		free(srv);
}

static void conn_close(conn *c)
{
	if (c->closed)
		return;
	c->closed = 1;
	uv_close((uv_handle_t *)&c->tcp, on_handle_closed);
	uv_close((uv_handle_t *)&c->timer, on_handle_closed);
}

static void on_timeout(uv_timer_t *t)
{
	conn_close(t->data);
}

static void arm_timer(conn *c, uint64_t ms)
{
	uv_timer_start(&c->timer, on_timeout, ms, 0);
}

static void on_alloc(uv_handle_t *h, size_t hint, uv_buf_t *buf)
{
	conn *c = h->data;
	buf->base = c->srv->rbuf;
	buf->len = sizeof c->srv->rbuf;
}

/* Reading after a finished connection's FIN: drain until EOF or linger. */
static void on_drain(uv_stream_t *s, ssize_t n, const uv_buf_t *buf)
{
	if (n < 0)
		conn_close(s->data);
}

static void on_shutdown(uv_shutdown_t *req, int status)
{
	conn *c = req->data;
	free(req);
	if (status < 0 || c->closed) {
		conn_close(c);
		return;
	}
	arm_timer(c, SFP_HTTP_LINGER_MS);
	if (uv_read_start((uv_stream_t *)&c->tcp, on_alloc, on_drain) < 0)
		conn_close(c);
}

/* Everything queued is written: send FIN, then linger. */
static void conn_finish_now(conn *c)
{
	uv_shutdown_t *req = malloc(sizeof *req);
	uv_read_stop((uv_stream_t *)&c->tcp);
	c->reading = 0;
	if (!req) {
		conn_close(c);
		return;
	}
	req->data = c;
	if (uv_shutdown(req, (uv_stream_t *)&c->tcp, on_shutdown) < 0) {
		free(req);
		conn_close(c);
	}
}

static void on_read(uv_stream_t *s, ssize_t n, const uv_buf_t *buf);

static void resume(conn *c)
{
	if (c->closed || c->finishing)
		return;
	if (c->stash && c->pending <= SFP_HTTP_MAX_PENDING_BYTES / 2) {
		char *p = c->stash;
		size_t len = c->stash_len;
		c->stash = NULL;
		c->stash_len = 0;
		conn_process(c, p, len);
		free(p);
	}
	if (!c->stash && !c->reading && !c->closed && !c->finishing &&
	    c->pending <= SFP_HTTP_MAX_PENDING_BYTES / 2) {
		c->reading = uv_read_start((uv_stream_t *)&c->tcp, on_alloc, on_read) == 0;
		if (!c->reading)
			conn_close(c);
	}
}

static void on_written(uv_write_t *req, int status)
{
	wreq *w = (wreq *)req;
	conn *c = w->c;
	c->pending -= w->len;
	free(w->data);
	free(w);
	if (c->closed)
		return;
	if (status < 0) {
		conn_close(c);
		return;
	}
	if (c->finishing) {
		if (!c->pending)
			conn_finish_now(c);
		return;
	}
	resume(c);
}

/* Queue a response; out is emptied (its memory moves to the write). */
static void send_response(conn *c, sfp_strbuf *out)
{
	size_t len;
	char *data = sfp_strbuf_take(out, &len);
	wreq *w = malloc(sizeof *w);
	if (!data || !w) {
		free(data);
		free(w);
		conn_close(c);
		return;
	}
	w->c = c;
	w->data = data;
	w->len = len;
	uv_buf_t b = uv_buf_init(data, (unsigned)len);
	if (uv_write(&w->req, (uv_stream_t *)&c->tcp, &b, 1, on_written) < 0) {
		free(data);
		free(w);
		conn_close(c);
		return;
	}
	c->pending += len;
}

static void finish(conn *c)
{
	c->finishing = 1;
	if (c->reading) {
		uv_read_stop((uv_stream_t *)&c->tcp);
		c->reading = 0;
	}
	if (!c->pending)
		conn_finish_now(c);
}

/* Parse and answer the requests in data, in order. */
static void conn_process(conn *c, const char *data, size_t len)
{
	size_t off = 0;
	while (off < len && !c->finishing && !c->closed) {
		if (c->pending > SFP_HTTP_MAX_PENDING_BYTES) {
			/* the client is not reading: keep the rest until it does */
			if (c->reading) {
				uv_read_stop((uv_stream_t *)&c->tcp);
				c->reading = 0;
			}
			c->stash = malloc(len - off);
			if (!c->stash) {
				conn_close(c);
				return;
			}
			memcpy(c->stash, data + off, len - off);
			c->stash_len = len - off;
			return;
		}
		size_t used;
		int status, keep;
		sfp_strbuf out;
		sfp_strbuf_init(&out, 0);
		int ev = sfp_http_parser_feed(c->parser, data + off, len - off, &used, &status);
		off += used;
		if (ev == SFP_HTTP_MORE) {
			sfp_strbuf_release(&out);
			break;
		}
		if (ev == SFP_HTTP_REQUEST) {
			if (c->srv->before_request)
				c->srv->before_request(c->srv->before_user);
			keep = sfp_http_site_handle(
			    c->srv->site, sfp_http_parser_request(c->parser), sfp_clock_ns(), &out);
			arm_timer(c, SFP_HTTP_TIMEOUT_MS);
		} else {
			sfp_http_respond_error(&out, status, sfp_http_status_text(status), NULL, 0,
			                       0);
			sfp_http_site_count(c->srv->site, status);
			keep = 0;
		}
		send_response(c, &out);
		sfp_strbuf_release(&out);
		if (!keep && !c->closed)
			finish(c);
	}
}

static void on_read(uv_stream_t *s, ssize_t n, const uv_buf_t *buf)
{
	conn *c = s->data;
	if (n < 0) { /* EOF or error: nothing more will be asked */
		if (c->pending && n == UV_EOF)
			finish(c);
		else
			conn_close(c);
		return;
	}
	conn_process(c, buf->base, (size_t)n);
}

/* Over the connection limit: a short 503, then close. */
static const char busy[] = "HTTP/1.1 503 Service Unavailable\r\nContent-Type: application/json\r\n"
                           "Content-Length: 36\r\nConnection: close\r\n\r\n"
                           "{\"error\":\"too many connections\"}\n\n\n";

static void on_connection(uv_stream_t *l, int status)
{
	sfpd_http *srv = l->data;
	if (status < 0)
		return;
	conn *c = calloc(1, sizeof *c);
	if (!c)
		return; /* the connection stays in the backlog; the next accept tries again */
	c->srv = srv;
	uv_tcp_init(srv->loop, &c->tcp);
	uv_timer_init(srv->loop, &c->timer);
	c->tcp.data = c->timer.data = c;
	c->handles = 2;
	c->next = srv->conns;
	if (srv->conns)
		srv->conns->prev = c;
	srv->conns = c;
	srv->n_conns++;
	if (uv_accept(l, (uv_stream_t *)&c->tcp) < 0) {
		conn_close(c);
		return;
	}
	uv_tcp_nodelay(&c->tcp, 1);
	arm_timer(c, SFP_HTTP_TIMEOUT_MS);
	if (srv->site->connections_open >= SFP_HTTP_MAX_CONNECTIONS) {
		sfp_strbuf out;
		if (srv->n_conns > 2 * SFP_HTTP_MAX_CONNECTIONS) {
			/* a flood: not even the 503 */
			srv->site->connections_rejected++;
			conn_close(c);
			return;
		}
		srv->site->connections_rejected++;
		sfp_http_site_count(srv->site, 503);
		sfp_strbuf_init(&out, 0);
		sfp_strbuf_append(&out, busy, sizeof busy - 1);
		send_response(c, &out);
		sfp_strbuf_release(&out);
		if (!c->closed)
			finish(c);
		return;
	}
	if (sfp_http_parser_create(&c->parser) < 0) {
		conn_close(c);
		return;
	}
	c->counted = 1;
	srv->site->connections_open++;
	srv->site->connections_accepted++;
	c->reading = uv_read_start((uv_stream_t *)&c->tcp, on_alloc, on_read) == 0;
	if (!c->reading)
		conn_close(c);
}

/* HOST:PORT, [V6]:PORT */
static int parse_addr(const char *addr, struct sockaddr_storage *ss, sfp_error *err)
{
	char host[256];
	const char *colon = strrchr(addr, ':');
	if (!colon || colon == addr || (size_t)(colon - addr) >= sizeof host)
		return sfp_error_set(err, SFP_EINVAL, "--http '%s': expected HOST:PORT", addr);
	char *end;
	long port = strtol(colon + 1, &end, 10);
	if (!colon[1] || *end || port < 0 || port > 65535)
		return sfp_error_set(err, SFP_EINVAL, "--http '%s': port must be 0..65535", addr);
	memcpy(host, addr, (size_t)(colon - addr));
	host[colon - addr] = '\0';
	if (host[0] == '[') {
		size_t n = strlen(host);
		if (n < 3 || host[n - 1] != ']')
			return sfp_error_set(err, SFP_EINVAL, "--http '%s': unclosed '['", addr);
		host[n - 1] = '\0';
		if (uv_ip6_addr(host + 1, (int)port, (struct sockaddr_in6 *)ss) == 0)
			return SFP_OK;
	} else if (uv_ip4_addr(host, (int)port, (struct sockaddr_in *)ss) == 0) {
		return SFP_OK;
	}
	return sfp_error_set(err, SFP_EINVAL, "--http '%s': '%s' is not an IP address", addr, host);
}

static void on_listener_closed(uv_handle_t *h)
{
	sfpd_http *srv = h->data;
	srv->listener.data = NULL;
	if (!srv->conns)
		free(srv);
}

int sfpd_http_start(sfpd_http **out, uv_loop_t *loop, const char *addr, sfp_http_site *site,
                    const sfp_log *log, int *port, sfp_error *err)
{
	struct sockaddr_storage ss;
	int rc;
	*out = NULL;
	memset(&ss, 0, sizeof ss);
	SFP_TRY(parse_addr(addr, &ss, err));
	sfpd_http *srv = calloc(1, sizeof *srv);
	if (!srv)
		return sfp_error_set(err, SFP_ENOMEM, "out of memory");
	srv->loop = loop;
	srv->site = site;
	srv->log = log;
	uv_tcp_init(loop, &srv->listener);
	srv->listener.data = srv;
	if ((rc = uv_tcp_bind(&srv->listener, (const struct sockaddr *)&ss, 0)) < 0 ||
	    (rc = uv_listen((uv_stream_t *)&srv->listener, 128, on_connection)) < 0) {
		srv->stopping = 1;
		uv_close((uv_handle_t *)&srv->listener, on_listener_closed);
		char what[300];
		snprintf(what, sizeof what, "cannot listen on '%s'", addr);
		return sfpd_uv_error(err, rc, what);
	}
	struct sockaddr_storage bound;
	int len = sizeof bound;
	uv_tcp_getsockname(&srv->listener, (struct sockaddr *)&bound, &len);
	*port = ntohs(bound.ss_family == AF_INET6 ? ((struct sockaddr_in6 *)&bound)->sin6_port
	                                          : ((struct sockaddr_in *)&bound)->sin_port);
	*out = srv;
	return SFP_OK;
}

void sfpd_http_before_request(sfpd_http *srv, void (*fn)(void *user), void *user)
{
	srv->before_request = fn;
	srv->before_user = user;
}

void sfpd_http_stop(sfpd_http *srv)
{
	if (!srv || srv->stopping)
		return;
	srv->stopping = 1;
	for (conn *c = srv->conns; c; c = c->next)
		conn_close(c);
	uv_close((uv_handle_t *)&srv->listener, on_listener_closed);
}
