/*
 * sfp/http.h -- the HTTP side of sfpd without the sockets: a bounded
 * HTTP/1.1 request parser (on http-parser), response framing, and the
 * daemon's endpoints as one function from a request to a response. The
 * event loop (daemon/http_server.c) only moves bytes; everything a client
 * can influence is decided here, where the fuzzer reaches it.
 *
 * Limits. A request whose target is longer than SFP_HTTP_MAX_URL_BYTES is
 * answered 414; more than SFP_HTTP_MAX_HEADERS header fields, or more than
 * SFP_HTTP_MAX_HEADER_BYTES of request line and headers, 431; a body longer
 * than SFP_HTTP_MAX_BODY_BYTES, 413; anything else malformed, 400; an HTTP
 * major version other than 1, 505. Each of these closes the connection.
 * The server's own limits (connections, time, queued output) are here too
 * so that one page documents them all.
 */
#ifndef SFP_HTTP_H
#define SFP_HTTP_H

#include <stddef.h>
#include <stdint.h>

#include "sfp/common.h"
#include "sfp/stats.h"

#ifdef __cplusplus
extern "C" {
#endif

#define SFP_HTTP_MAX_URL_BYTES 2048
#define SFP_HTTP_MAX_HEADERS 32
#define SFP_HTTP_MAX_HEADER_BYTES 8192
#define SFP_HTTP_MAX_BODY_BYTES 4096
/* Open connections; one more is answered 503 and closed. */
#define SFP_HTTP_MAX_CONNECTIONS 64
/* A connection must complete each request within this time of accepting
 * it or of its previous request (bounds idle keep-alive and slow senders). */
#define SFP_HTTP_TIMEOUT_MS 15000
/* A client that does not read its responses: reading from it pauses while
 * more than this is queued for it. */
#define SFP_HTTP_MAX_PENDING_BYTES ((size_t)8 << 20)
/* After an error response, how long the server drains what the client still
 * sends before closing (so the client sees the response, not a reset). */
#define SFP_HTTP_LINGER_MS 2000

typedef struct sfp_http_header {
	const char *name, *value;
} sfp_http_header;

/* A parsed request. Strings are NUL-terminated and owned by the parser. */
typedef struct sfp_http_request {
	const char *method; /* "GET", "HEAD", "POST", ... */
	const char *target; /* as sent: "/api/v1/job?since=3" */
	const char *path;   /* "/api/v1/job" (not percent-decoded) */
	const char *query;  /* "since=3", "" when none */
	unsigned http_major, http_minor;
	int keep_alive; /* the client allows another request on this connection */
	int upgrade;    /* Upgrade or CONNECT: the connection cannot carry more HTTP */
	sfp_http_header headers[SFP_HTTP_MAX_HEADERS];
	unsigned n_headers;
	size_t body_bytes; /* the body is counted, not kept: no endpoint takes one */
} sfp_http_request;

typedef struct sfp_http_parser sfp_http_parser;

enum sfp_http_event {
	SFP_HTTP_MORE = 0,    /* everything consumed, no complete request yet */
	SFP_HTTP_REQUEST = 1, /* a request is complete */
	SFP_HTTP_BAD = 2      /* the bytes are not acceptable HTTP: answer *status, close */
};

/* One parser per connection; free with sfp_http_parser_free (NULL is fine). */
int sfp_http_parser_create(sfp_http_parser **out);
void sfp_http_parser_free(sfp_http_parser *p);

/*
 * Feed bytes from the connection. Returns an sfp_http_event and sets *used
 * to the bytes consumed. On SFP_HTTP_REQUEST the request is
 * sfp_http_parser_request(p), valid until the next feed; the caller answers
 * it and feeds data + *used onwards (pipelined requests). On SFP_HTTP_BAD
 * *status is the status to answer with (400, 413, 414, 431, 505) and every
 * later feed says the same.
 */
int sfp_http_parser_feed(sfp_http_parser *p, const char *data, size_t len, size_t *used,
                         int *status);
const sfp_http_request *sfp_http_parser_request(const sfp_http_parser *p);

/* Case-insensitive header lookup; NULL when absent. */
const char *sfp_http_header_get(const sfp_http_request *r, const char *name);

/*
 * Query parameter `key` of a query string, percent- and '+'-decoded into
 * out[0..cap). Returns 1 when found, 0 when absent, SFP_ECORRUPT for a bad
 * escape, a decoded NUL or a value that does not fit.
 */
int sfp_http_query_get(const char *query, const char *key, char *out, size_t cap);

/* "OK", "Not Found", ...; "Unknown" for codes this server never sends. */
const char *sfp_http_status_text(int status);

/* Append a whole response (status line, headers, body unless head_only). */
void sfp_http_respond(sfp_strbuf *out, int status, const char *content_type,
                      const char *extra_headers, const void *body, size_t len, int head_only,
                      int keep_alive);
/* An error response: a JSON body {"error": message}. extra_headers: NULL
 * or lines each ending in CRLF. */
void sfp_http_respond_error(sfp_strbuf *out, int status, const char *message,
                            const char *extra_headers, int head_only, int keep_alive);

/* ---- the sfpd site ---------------------------------------------------------- */
/* A file of the live page, embedded in the binary. */
typedef struct sfp_http_asset {
	const char *path; /* "/", "/uplot.min.js", ... */
	const char *content_type;
	const unsigned char *data;
	size_t len;
} sfp_http_asset;

/* Response codes counted by sfp_http_requests_total. */
#define SFP_HTTP_CODES 12

/* What the endpoints need; owned by the daemon, which fills it. */
typedef struct sfp_http_site {
	sfp_stats *stats;
	const char *version;          /* for sfp_build_info */
	int ready;                    /* /readyz: history recovered, listeners up */
	const sfp_http_asset *assets; /* the live page */
	size_t n_assets;
	/* counters rendered on /metrics */
	uint64_t responses[SFP_HTTP_CODES];
	uint64_t connections_accepted, connections_rejected;
	uint32_t connections_open;
} sfp_http_site;

/* Count one response with this status (the handler does it for its own;
 * the server calls it for the parse errors it answers). */
void sfp_http_site_count(sfp_http_site *site, int status);

/*
 * Answer one request: appends a complete response to out and returns 1
 * when the connection may carry another request, 0 when it must close.
 * Endpoints: GET/HEAD /healthz, /readyz, /metrics, /api/v1/job,
 * /api/v1/workers, /api/v1/bitlengths, the page's assets (docs/sfpd.md).
 * Nothing changes state, so no endpoint needs the job token.
 */
int sfp_http_site_handle(sfp_http_site *site, const sfp_http_request *req, uint64_t now_ns,
                         sfp_strbuf *out);

#ifdef __cplusplus
}
#endif
#endif
