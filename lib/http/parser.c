/*
 * parser.c -- HTTP/1.1 requests from a byte stream, on http-parser 2.9,
 * with sfpd's limits (include/sfp/http.h).
 *
 * http-parser does the grammar (request line, header folding, chunked
 * bodies, keep-alive rules); this file keeps what its callbacks hand over in
 * one fixed buffer per connection, so a request can never make the daemon
 * allocate, and stops the parser at each complete request (pause in
 * on_message_complete) so pipelined requests come out one at a time.
 */
#include <http_parser.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "sfp/http.h"

struct sfp_http_parser {
	http_parser hp;
	http_parser_settings cb;
	sfp_http_request req;
	/* target, then header names and values, each NUL-terminated */
	char buf[SFP_HTTP_MAX_HEADER_BYTES];
	size_t used;
	size_t target_len;
	char pq[SFP_HTTP_MAX_URL_BYTES + 4]; /* path and query, split */
	int target_done;                     /* the target is terminated in buf */
	int in_value;                        /* the last header callback was a value */
	int in_message;                      /* a request has begun and not ended */
	int headers_done;
	int complete;      /* a request is complete and the parser paused */
	int status;        /* the limit that stopped the parser, 0 when none */
	int dead;          /* a BAD was returned: the stream cannot be resynchronised */
	size_t head_bytes; /* bytes fed to the current request before its body */
	size_t msg_bytes;  /* bytes fed to the current request */
};

static sfp_http_parser *of(http_parser *hp)
{
	return hp->data;
}

/* Fail the parser with an HTTP status (returned by a callback). */
static int fail(sfp_http_parser *p, int status)
{
	if (!p->status)
		p->status = status;
	return -1;
}

static int put(sfp_http_parser *p, const char *at, size_t n)
{
	/* one byte stays free for the terminator of the string being built */
	if (n >= sizeof p->buf - p->used)
		return fail(p, 431);
	memcpy(p->buf + p->used, at, n);
	p->used += n;
	return 0;
}

static int terminate(sfp_http_parser *p)
{
	return put(p, "", 1);
}

static int on_message_begin(http_parser *hp)
{
	sfp_http_parser *p = of(hp);
	memset(&p->req, 0, sizeof p->req);
	p->used = p->target_len = 0;
	p->in_value = p->headers_done = p->target_done = 0;
	p->in_message = 1;
	return 0;
}

static int on_url(http_parser *hp, const char *at, size_t n)
{
	sfp_http_parser *p = of(hp);
	if (n > SFP_HTTP_MAX_URL_BYTES - p->target_len)
		return fail(p, 414);
	p->target_len += n;
	return put(p, at, n);
}

/* The target ends where the first header (or the end of the head) begins. */
static int end_target(sfp_http_parser *p)
{
	if (p->target_done)
		return 0;
	p->target_done = 1;
	p->req.target = p->buf;
	return terminate(p);
}

/* A field or value may come in several pieces (split reads); a field piece
 * after a value piece starts the next header. */
static int on_header_field(http_parser *hp, const char *at, size_t n)
{
	sfp_http_parser *p = of(hp);
	sfp_http_request *r = &p->req;
	if (end_target(p))
		return -1;
	if (p->in_value || r->n_headers == 0) {
		if (p->in_value && terminate(p)) /* end the previous value */
			return -1;
		if (r->n_headers == SFP_HTTP_MAX_HEADERS)
			return fail(p, 431);
		r->headers[r->n_headers].name = p->buf + p->used;
		r->headers[r->n_headers].value = "";
		r->n_headers++;
		p->in_value = 0;
	}
	return put(p, at, n);
}

static int on_header_value(http_parser *hp, const char *at, size_t n)
{
	sfp_http_parser *p = of(hp);
	if (!p->in_value) {
		if (terminate(p)) /* end the name */
			return -1;
		p->req.headers[p->req.n_headers - 1].value = p->buf + p->used;
		p->in_value = 1;
	}
	return put(p, at, n);
}

/* Split the target into path and query with http-parser's URL parser. */
static int split_target(sfp_http_parser *p)
{
	struct http_parser_url u;
	sfp_http_request *r = &p->req;
	http_parser_url_init(&u);
	if (http_parser_parse_url(r->target, p->target_len,
	                          r->upgrade && p->hp.method == HTTP_CONNECT, &u))
		return fail(p, 400);
	char *w = p->pq;
	r->path = w;
	if (u.field_set & (1u << UF_PATH)) {
		memcpy(w, r->target + u.field_data[UF_PATH].off, u.field_data[UF_PATH].len);
		w += u.field_data[UF_PATH].len;
	} else {
		*w++ = '/'; /* "http://host" and CONNECT's "host:port" */
	}
	*w++ = '\0';
	r->query = w;
	if (u.field_set & (1u << UF_QUERY)) {
		memcpy(w, r->target + u.field_data[UF_QUERY].off, u.field_data[UF_QUERY].len);
		w += u.field_data[UF_QUERY].len;
	}
	*w = '\0';
	return 0;
}

static int on_headers_complete(http_parser *hp)
{
	sfp_http_parser *p = of(hp);
	sfp_http_request *r = &p->req;
	if (end_target(p))
		return -1;
	if (r->n_headers && !p->in_value) {
		/* a field without even an empty value: http-parser never does this */
		return fail(p, 400);
	}
	if (r->n_headers && terminate(p))
		return -1;
	p->headers_done = 1;
	r->method = http_method_str((enum http_method)hp->method);
	r->http_major = hp->http_major;
	r->http_minor = hp->http_minor;
	r->upgrade = hp->upgrade || hp->method == HTTP_CONNECT;
	if (hp->http_major != 1)
		return fail(p, 505);
	if (p->target_len == 0)
		return fail(p, 400);
	return split_target(p);
}

static int on_body(http_parser *hp, const char *at, size_t n)
{
	sfp_http_parser *p = of(hp);
	if (n > SFP_HTTP_MAX_BODY_BYTES - p->req.body_bytes)
		return fail(p, 413);
	p->req.body_bytes += n;
	return 0;
}

static int on_message_complete(http_parser *hp)
{
	sfp_http_parser *p = of(hp);
	p->req.keep_alive = http_should_keep_alive(hp) && !p->req.upgrade;
	p->complete = 1;
	p->in_message = 0;
	http_parser_pause(hp, 1);
	return 0;
}

int sfp_http_parser_create(sfp_http_parser **out)
{
	sfp_http_parser *p = calloc(1, sizeof *p);
	*out = p;
	if (!p)
		return SFP_ENOMEM;
	http_parser_init(&p->hp, HTTP_REQUEST);
	p->hp.data = p;
	http_parser_settings_init(&p->cb);
	p->cb.on_message_begin = on_message_begin;
	p->cb.on_url = on_url;
	p->cb.on_header_field = on_header_field;
	p->cb.on_header_value = on_header_value;
	p->cb.on_headers_complete = on_headers_complete;
	p->cb.on_body = on_body;
	p->cb.on_message_complete = on_message_complete;
	return SFP_OK;
}

void sfp_http_parser_free(sfp_http_parser *p)
{
	free(p);
}

/* http-parser's own errors, as statuses. */
static int status_of(enum http_errno e)
{
	switch (e) {
	case HPE_HEADER_OVERFLOW: return 431;
	case HPE_INVALID_VERSION: return 505;
	default: return 400;
	}
}

static int bad(sfp_http_parser *p, int status, int *out)
{
	p->dead = 1;
	p->status = status;
	*out = status;
	return SFP_HTTP_BAD;
}

/*
 * Besides the per-field limits, the bytes of one request are bounded as a
 * whole: whitespace, folded header lines and chunk framing are not handed
 * to any callback but still arrive.
 */
static int over_budget(const sfp_http_parser *p)
{
	if (!p->headers_done)
		return p->msg_bytes > 2 * SFP_HTTP_MAX_HEADER_BYTES ? 431 : 0;
	return p->msg_bytes - p->head_bytes > 2 * SFP_HTTP_MAX_BODY_BYTES + 1024 ? 413 : 0;
}

int sfp_http_parser_feed(sfp_http_parser *p, const char *data, size_t len, size_t *used,
                         int *status)
{
	*used = 0;
	*status = 0;
	if (p->dead)
		return bad(p, p->status, status);
	if (p->complete) {
		p->complete = 0;
		p->msg_bytes = 0;
		http_parser_pause(&p->hp, 0);
	}
	if (!len)
		return SFP_HTTP_MORE;
	int had_headers = p->headers_done;
	size_t n = http_parser_execute(&p->hp, &p->cb, data, len);
	enum http_errno e = HTTP_PARSER_ERRNO(&p->hp);
	*used = n;
	if (p->complete)
		return SFP_HTTP_REQUEST;
	if (e != HPE_OK)
		return bad(p, p->status ? p->status : status_of(e), status);
	if (p->in_message) {
		p->msg_bytes += n;
		if (!had_headers && p->headers_done)
			p->head_bytes = p->msg_bytes; /* approximate: the body began in this feed */
		int over = over_budget(p);
		if (over)
			return bad(p, over, status);
	}
	return SFP_HTTP_MORE;
}

const sfp_http_request *sfp_http_parser_request(const sfp_http_parser *p)
{
	return &p->req;
}

const char *sfp_http_header_get(const sfp_http_request *r, const char *name)
{
	for (unsigned i = 0; i < r->n_headers; i++)
		if (!strcasecmp(r->headers[i].name, name))
			return r->headers[i].value;
	return NULL;
}

static int hexval(char c)
{
	if (c >= '0' && c <= '9')
		return c - '0';
	if (c >= 'a' && c <= 'f')
		return c - 'a' + 10;
	if (c >= 'A' && c <= 'F')
		return c - 'A' + 10;
	return -1;
}

/* Decode s[0..n) into out[0..cap) with a terminator. */
static int decode(const char *s, size_t n, char *out, size_t cap)
{
	size_t w = 0;
	for (size_t i = 0; i < n; i++) {
		int c = (unsigned char)s[i];
		if (c == '+') {
			c = ' ';
		} else if (c == '%') {
			int hi = i + 2 < n ? hexval(s[i + 1]) : -1;
			int lo = i + 2 < n ? hexval(s[i + 2]) : -1;
			if (hi < 0 || lo < 0 || (hi | lo) == 0)
				return SFP_ECORRUPT; /* a bad escape, or a NUL */
			c = hi << 4 | lo;
			i += 2;
		}
		if (w + 1 >= cap)
			return SFP_ECORRUPT;
		out[w++] = (char)c;
	}
	if (!cap)
		return SFP_ECORRUPT;
	out[w] = '\0';
	return SFP_OK;
}

int sfp_http_query_get(const char *query, const char *key, char *out, size_t cap)
{
	char k[64];
	const char *q = query;
	while (q && *q) {
		const char *amp = strchr(q, '&');
		size_t n = amp ? (size_t)(amp - q) : strlen(q);
		const char *eq = memchr(q, '=', n);
		size_t kn = eq ? (size_t)(eq - q) : n;
		int rc = decode(q, kn, k, sizeof k);
		if (rc == SFP_OK && !strcmp(k, key))
			return eq ? (decode(eq + 1, n - kn - 1, out, cap) < 0 ? SFP_ECORRUPT : 1)
			          : (decode("", 0, out, cap) < 0 ? SFP_ECORRUPT : 1);
		q = amp ? amp + 1 : NULL;
	}
	return 0;
}
