/*
 * site.c -- sfpd's endpoints: one request in, one complete response out.
 *
 * Every endpoint is read-only (GET and HEAD), so none needs the job token;
 * other methods on a known path get 405 with Allow. Query parameters are
 * validated here (a bad `since` is 400, an unknown job or layer 404), and a
 * response that would exceed the renderers' size limit is 500, never a
 * partial body.
 */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "sfp/http.h"

static const int counted_codes[SFP_HTTP_CODES] = {200, 400, 404, 405, 408, 413,
                                                  414, 431, 500, 503, 505, 0};

void sfp_http_site_count(sfp_http_site *site, int status)
{
	int i = 0;
	while (i < SFP_HTTP_CODES - 1 && counted_codes[i] != status)
		i++;
	site->responses[i]++;
}

/* What an endpoint produced: a status, a body, its type. */
typedef struct reply {
	int status;
	const char *type;
	sfp_strbuf body;
	const void *static_body; /* an embedded asset instead of body */
	size_t static_len;
	char error[256]; /* when status is not 200 */
} reply;

typedef struct query {
	char job[SFP_STATS_NAME_MAX + 2];
	char layer[SFP_STATS_NAME_MAX + 2];
	int64_t since;
} query;

static int bad_request(reply *r, const char *msg)
{
	r->status = 400;
	snprintf(r->error, sizeof r->error, "%s", msg);
	return -1;
}

/* job, layer and since, each optional. */
static int parse_query(const sfp_http_request *req, query *q, reply *r)
{
	char since[32];
	memset(q, 0, sizeof *q);
	if (sfp_http_query_get(req->query, "job", q->job, sizeof q->job) < 0 ||
	    strlen(q->job) > SFP_STATS_NAME_MAX)
		return bad_request(r, "job: not a job name");
	if (sfp_http_query_get(req->query, "layer", q->layer, sizeof q->layer) < 0 ||
	    strlen(q->layer) > SFP_STATS_NAME_MAX)
		return bad_request(r, "layer: not a layer name");
	int rc = sfp_http_query_get(req->query, "since", since, sizeof since);
	if (rc < 0)
		return bad_request(r, "since: not a step number");
	if (rc == 1 && since[0]) {
		char *end;
		errno = 0;
		long long v = strtoll(since, &end, 10);
		if (errno || *end || v < 0 || since[0] < '0' || since[0] > '9')
			return bad_request(r, "since: not a step number");
		q->since = v;
	}
	return 0;
}

/* A renderer's result as a reply: not found is 404, too large is 500. */
static void rendered(reply *r, int rc, const sfp_error *e)
{
	if (rc == SFP_OK) {
		r->status = 200;
		return;
	}
	r->status = rc == SFP_ENOENT ? 404 : 500;
	snprintf(r->error, sizeof r->error, "%s",
	         rc == SFP_ENOENT ? e->msg : "response too large or out of memory");
}

static void ep_healthz(sfp_http_site *site, const sfp_http_request *req, uint64_t now, reply *r)
{
	r->status = 200;
	r->type = "text/plain; charset=utf-8";
	sfp_strbuf_puts(&r->body, "ok\n");
}

static void ep_readyz(sfp_http_site *site, const sfp_http_request *req, uint64_t now, reply *r)
{
	r->status = site->ready ? 200 : 503;
	r->type = "text/plain; charset=utf-8";
	sfp_strbuf_puts(&r->body, site->ready ? "ready\n" : "not ready\n");
}

static void site_metrics(const sfp_http_site *site, sfp_strbuf *b)
{
	sfp_strbuf_puts(b, "# HELP sfp_build_info sfpd version (the value is always 1).\n"
	                   "# TYPE sfp_build_info gauge\nsfp_build_info{version=\"");
	for (const char *c = site->version ? site->version : "unknown"; *c; c++)
		if (*c != '"' && *c != '\\' && *c != '\n')
			sfp_strbuf_append(b, c, 1);
	sfp_strbuf_puts(b, "\"} 1\n");
	sfp_strbuf_printf(b,
	                  "# HELP sfp_ready Whether sfpd is ready (history recovered, listening).\n"
	                  "# TYPE sfp_ready gauge\nsfp_ready %d\n",
	                  site->ready ? 1 : 0);
	sfp_strbuf_puts(b, "# HELP sfp_http_responses_total HTTP responses sent, by status code.\n"
	                   "# TYPE sfp_http_responses_total counter\n");
	for (int i = 0; i < SFP_HTTP_CODES; i++) {
		if (counted_codes[i])
			sfp_strbuf_printf(b, "sfp_http_responses_total{code=\"%d\"} %llu\n",
			                  counted_codes[i], (unsigned long long)site->responses[i]);
		else
			sfp_strbuf_printf(b, "sfp_http_responses_total{code=\"other\"} %llu\n",
			                  (unsigned long long)site->responses[i]);
	}
	sfp_strbuf_printf(b,
	                  "# HELP sfp_http_connections Open HTTP connections.\n"
	                  "# TYPE sfp_http_connections gauge\nsfp_http_connections %u\n"
	                  "# HELP sfp_http_connections_accepted_total HTTP connections accepted.\n"
	                  "# TYPE sfp_http_connections_accepted_total counter\n"
	                  "sfp_http_connections_accepted_total %llu\n"
	                  "# HELP sfp_http_connections_rejected_total HTTP connections refused "
	                  "(over the connection limit).\n"
	                  "# TYPE sfp_http_connections_rejected_total counter\n"
	                  "sfp_http_connections_rejected_total %llu\n",
	                  site->connections_open, (unsigned long long)site->connections_accepted,
	                  (unsigned long long)site->connections_rejected);
}

static void ep_metrics(sfp_http_site *site, const sfp_http_request *req, uint64_t now, reply *r)
{
	r->type = "text/plain; version=0.0.4; charset=utf-8";
	site_metrics(site, &r->body);
	rendered(
	    r, site->stats ? sfp_stats_render_prometheus(site->stats, now, &r->body) : r->body.err,
	    NULL);
}

static void ep_job(sfp_http_site *site, const sfp_http_request *req, uint64_t now, reply *r)
{
	query q;
	sfp_error e;
	r->type = "application/json";
	if (parse_query(req, &q, r) == 0)
		rendered(r, sfp_stats_render_job(site->stats, q.job, q.since, now, &r->body, &e),
		         &e);
}

static void ep_workers(sfp_http_site *site, const sfp_http_request *req, uint64_t now, reply *r)
{
	query q;
	sfp_error e;
	r->type = "application/json";
	if (parse_query(req, &q, r) == 0)
		rendered(r, sfp_stats_render_workers(site->stats, q.job, now, &r->body, &e), &e);
}

static void ep_bitlengths(sfp_http_site *site, const sfp_http_request *req, uint64_t now, reply *r)
{
	query q;
	sfp_error e;
	r->type = "application/json";
	if (parse_query(req, &q, r) == 0)
		rendered(
		    r,
		    sfp_stats_render_bitlengths(site->stats, q.job, q.layer, q.since, &r->body, &e),
		    &e);
}

typedef void (*endpoint_fn)(sfp_http_site *site, const sfp_http_request *req, uint64_t now,
                            reply *r);

static const struct {
	const char *path;
	endpoint_fn fn;
	int needs_stats;
} endpoints[] = {
    {"/healthz", ep_healthz, 0},        {"/readyz", ep_readyz, 0},
    {"/metrics", ep_metrics, 0},        {"/api/v1/job", ep_job, 1},
    {"/api/v1/workers", ep_workers, 1}, {"/api/v1/bitlengths", ep_bitlengths, 1},
};

static int route(sfp_http_site *site, const sfp_http_request *req, uint64_t now, reply *r)
{
	for (size_t i = 0; i < sizeof endpoints / sizeof endpoints[0]; i++)
		if (!strcmp(req->path, endpoints[i].path)) {
			if (endpoints[i].needs_stats && !site->stats) {
				r->status = 503;
				snprintf(r->error, sizeof r->error, "no stats store");
			} else {
				endpoints[i].fn(site, req, now, r);
			}
			return 1;
		}
	for (size_t i = 0; i < site->n_assets; i++)
		if (!strcmp(req->path, site->assets[i].path)) {
			r->status = 200;
			r->type = site->assets[i].content_type;
			r->static_body = site->assets[i].data;
			r->static_len = site->assets[i].len;
			return 1;
		}
	return 0;
}

/* The page's scripts and styles come from this server only. */
#define PAGE_HEADERS                                                                               \
	"Content-Security-Policy: default-src 'self'; style-src 'self' 'unsafe-inline'; "          \
	"img-src 'self' data:\r\n"

int sfp_http_site_handle(sfp_http_site *site, const sfp_http_request *req, uint64_t now_ns,
                         sfp_strbuf *out)
{
	reply r;
	int head = !strcmp(req->method, "HEAD");
	int get = head || !strcmp(req->method, "GET");
	int keep = req->keep_alive && !req->upgrade;
	memset(&r, 0, sizeof r);
	sfp_strbuf_init(&r.body, 0);
	r.type = "application/json";
	if (!get) {
		/* known or not, nothing here takes another method */
		r.status = 405;
		snprintf(r.error, sizeof r.error, "method '%.16s' not allowed (GET, HEAD)",
		         req->method);
	} else if (!route(site, req, now_ns, &r)) {
		r.status = 404;
		snprintf(r.error, sizeof r.error, "no such page");
	}
	if (r.status == 200 && r.static_body)
		sfp_http_respond(out, 200, r.type, PAGE_HEADERS, r.static_body, r.static_len, head,
		                 keep);
	else if (r.status == 200 || (r.status == 503 && !r.error[0]))
		sfp_http_respond(out, r.status, r.type, NULL, r.body.p, r.body.len, head, keep);
	else
		sfp_http_respond_error(out, r.status, r.error,
		                       r.status == 405 ? "Allow: GET, HEAD\r\n" : NULL, head, keep);
	sfp_strbuf_release(&r.body);
	sfp_http_site_count(site, r.status);
	return keep && !out->err;
}
