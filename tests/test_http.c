/*
 * test_http.c -- sfpd's HTTP without sockets: the bounded request parser
 * (split reads, pipelining, keep-alive rules, every limit and malformed
 * input), query decoding, response framing and the endpoints.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "sfp/http.h"
#include "tests/util/testutil.h"

/* Feed the whole of `in` (in pieces of `step` bytes); the first event
 * other than MORE is returned, with its status. */
static int feed(sfp_http_parser *p, const char *in, size_t len, size_t step, int *status,
                size_t *consumed)
{
	size_t off = 0, used;
	int ev = SFP_HTTP_MORE;
	*status = 0;
	while (off < len) {
		size_t n = len - off < step ? len - off : step;
		ev = sfp_http_parser_feed(p, in + off, n, &used, status);
		off += used;
		if (ev != SFP_HTTP_MORE)
			break;
	}
	if (consumed)
		*consumed = off;
	return ev;
}

static int parse_one(const char *in, int *status)
{
	sfp_http_parser *p;
	CU_ASSERT_EQUAL_FATAL(sfp_http_parser_create(&p), SFP_OK);
	int ev = feed(p, in, strlen(in), 1 << 20, status, NULL);
	sfp_http_parser_free(p);
	return ev;
}

static void test_parse_request(void)
{
	static const char in[] = "GET /api/v1/bitlengths?layer=conv%31&since=10 HTTP/1.1\r\n"
	                         "Host: localhost\r\n"
	                         "X-Empty:\r\n"
	                         "Accept: */*\r\n\r\n";
	for (size_t step = 1; step <= sizeof in; step = step * 2 + 1) {
		sfp_http_parser *p;
		int status;
		size_t used;
		sfp_http_parser_create(&p);
		CU_ASSERT_EQUAL(feed(p, in, strlen(in), step, &status, &used), SFP_HTTP_REQUEST);
		CU_ASSERT_EQUAL(used, strlen(in));
		const sfp_http_request *r = sfp_http_parser_request(p);
		CU_ASSERT_STRING_EQUAL(r->method, "GET");
		CU_ASSERT_STRING_EQUAL(r->path, "/api/v1/bitlengths");
		CU_ASSERT_STRING_EQUAL(r->query, "layer=conv%31&since=10");
		CU_ASSERT_STRING_EQUAL(r->target, "/api/v1/bitlengths?layer=conv%31&since=10");
		CU_ASSERT_EQUAL(r->n_headers, 3);
		CU_ASSERT_STRING_EQUAL(sfp_http_header_get(r, "host"), "localhost");
		CU_ASSERT_STRING_EQUAL(sfp_http_header_get(r, "X-EMPTY"), "");
		CU_ASSERT_STRING_EQUAL(sfp_http_header_get(r, "Accept"), "*/*");
		CU_ASSERT_PTR_NULL(sfp_http_header_get(r, "Cookie"));
		CU_ASSERT(r->keep_alive);
		CU_ASSERT_EQUAL(r->http_minor, 1);
		sfp_http_parser_free(p);
	}
}

static void test_pipelining_and_keep_alive(void)
{
	static const char in[] =
	    "GET /a HTTP/1.1\r\nHost: x\r\n\r\n"
	    "HEAD /b?x=1 HTTP/1.1\r\nConnection: close\r\n\r\n"
	    "GET /c HTTP/1.0\r\n\r\n"
	    "GET /d HTTP/1.0\r\nConnection: keep-alive\r\n\r\n"
	    "POST /e HTTP/1.1\r\nContent-Length: 5\r\n\r\nhello"
	    "GET /f HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\n3\r\nabc\r\n0\r\n\r\n";
	const char *paths[] = {"/a", "/b", "/c", "/d", "/e", "/f"};
	const int keep[] = {1, 0, 0, 1, 1, 1};
	const size_t body[] = {0, 0, 0, 0, 5, 3};
	sfp_http_parser *p;
	sfp_http_parser_create(&p);
	size_t off = 0, used;
	int status;
	for (int i = 0; i < 6; i++) {
		CU_ASSERT_EQUAL_FATAL(
		    sfp_http_parser_feed(p, in + off, strlen(in) - off, &used, &status),
		    SFP_HTTP_REQUEST);
		off += used;
		const sfp_http_request *r = sfp_http_parser_request(p);
		CU_ASSERT_STRING_EQUAL(r->path, paths[i]);
		CU_ASSERT_EQUAL(r->keep_alive, keep[i]);
		CU_ASSERT_EQUAL(r->body_bytes, body[i]);
	}
	CU_ASSERT_EQUAL(off, strlen(in));
	CU_ASSERT_EQUAL(sfp_http_parser_feed(p, "", 0, &used, &status), SFP_HTTP_MORE);
	sfp_http_parser_free(p);
}

static void test_malformed_and_limits(void)
{
	char *big = malloc(64 * 1024);
	int status;
	struct {
		const char *in;
		int status;
	} bad[] = {
	    {"GARBAGE\r\n\r\n", 400},
	    {"GET / HTTP/1.1\r\nHost x\r\n\r\n", 400},
	    {"GET / HTTP/2.0\r\n\r\n", 505},
	    {"GET / HTTP/1.1\r\nContent-Length: 1\r\nContent-Length: 2\r\n\r\nab", 400},
	    {"GET / HTTP/1.1\r\nContent-Length: -1\r\n\r\n", 400},
	    {"GET http://[::1 HTTP/1.1\r\n\r\n", 400},
	    {"\x16\x03\x01\x02\x00\x01\x00\x01\xfc\x03\x03", 400}, /* TLS on the HTTP port */
	};
	for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
		int ev = parse_one(bad[i].in, &status);
		if (ev != SFP_HTTP_BAD || status != bad[i].status)
			fprintf(stderr, "\n  case %zu: event %d status %d\n", i, ev, status);
		CU_ASSERT_EQUAL(ev, SFP_HTTP_BAD);
		CU_ASSERT_EQUAL(status, bad[i].status);
	}
	/* target too long: 414 */
	int n = sprintf(big, "GET /");
	memset(big + n, 'a', 3000);
	strcpy(big + n + 3000, " HTTP/1.1\r\n\r\n");
	CU_ASSERT_EQUAL(parse_one(big, &status), SFP_HTTP_BAD);
	CU_ASSERT_EQUAL(status, 414);
	/* too many headers, and too many header bytes: 431 */
	n = sprintf(big, "GET / HTTP/1.1\r\n");
	for (int i = 0; i < SFP_HTTP_MAX_HEADERS + 1; i++)
		n += sprintf(big + n, "X-%d: %d\r\n", i, i);
	strcpy(big + n, "\r\n");
	CU_ASSERT_EQUAL(parse_one(big, &status), SFP_HTTP_BAD);
	CU_ASSERT_EQUAL(status, 431);
	n = sprintf(big, "GET / HTTP/1.1\r\nCookie: ");
	memset(big + n, 'c', SFP_HTTP_MAX_HEADER_BYTES);
	strcpy(big + n + SFP_HTTP_MAX_HEADER_BYTES, "\r\n\r\n");
	CU_ASSERT_EQUAL(parse_one(big, &status), SFP_HTTP_BAD);
	CU_ASSERT_EQUAL(status, 431);
	/* body too large, by length and chunked: 413 */
	n = sprintf(big, "POST / HTTP/1.1\r\nContent-Length: 5000\r\n\r\n");
	memset(big + n, 'b', 5000);
	big[n + 5000] = 0;
	CU_ASSERT_EQUAL(parse_one(big, &status), SFP_HTTP_BAD);
	CU_ASSERT_EQUAL(status, 413);
	n = sprintf(big, "POST / HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\n");
	for (int i = 0; i < 30; i++) {
		n += sprintf(big + n, "100\r\n");
		memset(big + n, 'z', 256);
		n += 256;
		n += sprintf(big + n, "\r\n");
	}
	CU_ASSERT_EQUAL(parse_one(big, &status), SFP_HTTP_BAD);
	CU_ASSERT_EQUAL(status, 413);
	/* endless whitespace before the first request is bounded too */
	memset(big, '\n', 40000);
	big[40000] = 0;
	sfp_http_parser *p;
	sfp_http_parser_create(&p);
	size_t used;
	int ev = feed(p, big, 40000, 1000, &status, &used);
	CU_ASSERT(ev == SFP_HTTP_MORE || ev == SFP_HTTP_BAD);
	/* after BAD the parser keeps saying so */
	CU_ASSERT_EQUAL(feed(p, "\x01\x02", 2, 2, &status, NULL), SFP_HTTP_BAD);
	CU_ASSERT_EQUAL(sfp_http_parser_feed(p, "GET / HTTP/1.1\r\n\r\n", 18, &used, &status),
	                SFP_HTTP_BAD);
	CU_ASSERT_EQUAL(status, 400);
	sfp_http_parser_free(p);
	sfp_http_parser_free(NULL);
	free(big);
}

static void test_query(void)
{
	char v[16];
	const char *q =
	    "a=1&layer=conv%201&b=x+y&empty=&flag&pct=%zz&nul=%00&long=0123456789abcdefg";
	CU_ASSERT_EQUAL(sfp_http_query_get(q, "a", v, sizeof v), 1);
	CU_ASSERT_STRING_EQUAL(v, "1");
	CU_ASSERT_EQUAL(sfp_http_query_get(q, "layer", v, sizeof v), 1);
	CU_ASSERT_STRING_EQUAL(v, "conv 1");
	CU_ASSERT_EQUAL(sfp_http_query_get(q, "b", v, sizeof v), 1);
	CU_ASSERT_STRING_EQUAL(v, "x y");
	CU_ASSERT_EQUAL(sfp_http_query_get(q, "empty", v, sizeof v), 1);
	CU_ASSERT_STRING_EQUAL(v, "");
	CU_ASSERT_EQUAL(sfp_http_query_get(q, "flag", v, sizeof v), 1);
	CU_ASSERT_STRING_EQUAL(v, "");
	CU_ASSERT_EQUAL(sfp_http_query_get(q, "missing", v, sizeof v), 0);
	CU_ASSERT_EQUAL(sfp_http_query_get(q, "pct", v, sizeof v), SFP_ECORRUPT);
	CU_ASSERT_EQUAL(sfp_http_query_get(q, "nul", v, sizeof v), SFP_ECORRUPT);
	CU_ASSERT_EQUAL(sfp_http_query_get(q, "long", v, sizeof v), SFP_ECORRUPT);
	CU_ASSERT_EQUAL(sfp_http_query_get("x=%4", "x", v, sizeof v), SFP_ECORRUPT);
	CU_ASSERT_EQUAL(sfp_http_query_get("", "x", v, sizeof v), 0);
}

/* ---- the site ------------------------------------------------------------- */
static sfp_stats *stats;
static sfp_http_site site;
static const unsigned char page[] = "<!doctype html><title>sfpd</title>";
static const sfp_http_asset assets[] = {{"/", "text/html; charset=utf-8", page, sizeof page - 1}};

/* Parse `in` and answer it; the response text (caller frees) and *keep. */
static char *ask(const char *in, int *keep)
{
	sfp_http_parser *p;
	int status;
	size_t used;
	sfp_strbuf out;
	sfp_strbuf_init(&out, 0);
	sfp_http_parser_create(&p);
	CU_ASSERT_EQUAL_FATAL(sfp_http_parser_feed(p, in, strlen(in), &used, &status),
	                      SFP_HTTP_REQUEST);
	*keep = sfp_http_site_handle(&site, sfp_http_parser_request(p), 0, &out);
	sfp_http_parser_free(p);
	return sfp_strbuf_take(&out, NULL);
}

static int starts(const char *s, const char *prefix)
{
	return s && !strncmp(s, prefix, strlen(prefix));
}

static void test_site(void)
{
	int keep;
	char *r;
	const char *layers[] = {"conv1"};
	sfp_stats_width w = {.layer = "conv1",
	                     .kind = SFP_STATS_WEIGHTS,
	                     .e = 5,
	                     .m = 3,
	                     .n_e = 5.2f,
	                     .n_m = 3.4f,
	                     .count = 100};
	sfp_worker_report rep = {.job = "j", .step = 7, .loss = 0.5, .widths = &w, .n_widths = 1};
	sfp_stats_open(&stats, NULL, NULL, NULL);
	sfp_stats_register(stats, "j", 0, 0, 0, 1, layers, 0, NULL);
	sfp_stats_report(stats, &rep, 0, NULL);
	site.stats = stats;
	site.version = "9.9.9";
	site.assets = assets;
	site.n_assets = 1;

	r = ask("GET /healthz HTTP/1.1\r\n\r\n", &keep);
	CU_ASSERT(starts(r, "HTTP/1.1 200 OK\r\n"));
	CU_ASSERT_PTR_NOT_NULL(strstr(r, "Content-Length: 3\r\n"));
	CU_ASSERT_PTR_NOT_NULL(strstr(r, "\r\n\r\nok\n"));
	CU_ASSERT(keep);
	free(r);
	r = ask("GET /readyz HTTP/1.1\r\n\r\n", &keep);
	CU_ASSERT(starts(r, "HTTP/1.1 503 Service Unavailable\r\n"));
	free(r);
	site.ready = 1;
	r = ask("GET /readyz HTTP/1.1\r\n\r\n", &keep);
	CU_ASSERT(starts(r, "HTTP/1.1 200 OK\r\n"));
	free(r);
	r = ask("GET /metrics HTTP/1.1\r\nConnection: close\r\n\r\n", &keep);
	CU_ASSERT(starts(r, "HTTP/1.1 200 OK\r\nContent-Type: text/plain; version=0.0.4"));
	CU_ASSERT_PTR_NOT_NULL(strstr(r, "Connection: close\r\n"));
	CU_ASSERT_PTR_NOT_NULL(strstr(r, "sfp_build_info{version=\"9.9.9\"} 1\n"));
	CU_ASSERT_PTR_NOT_NULL(strstr(r, "sfp_http_responses_total{code=\"503\"} 1\n"));
	CU_ASSERT_PTR_NOT_NULL(
	    strstr(r, "sfp_layer_mantissa_width{job=\"j\",layer=\"conv1\",kind=\"weights\"} 3\n"));
	CU_ASSERT(!keep);
	free(r);
	r = ask("GET /api/v1/job HTTP/1.1\r\n\r\n", &keep);
	CU_ASSERT(starts(r, "HTTP/1.1 200 OK\r\nContent-Type: application/json\r\n"));
	CU_ASSERT_PTR_NOT_NULL(strstr(r, "\r\n\r\n{\"job\":\"j\",\"jobs\":[\"j\"],\"step\":7,"));
	free(r);
	r = ask("GET /api/v1/bitlengths?layer=conv1&since=7 HTTP/1.1\r\n\r\n", &keep);
	CU_ASSERT_PTR_NOT_NULL(strstr(r, "\"series\":{\"step\":[7],\"e\":[5],\"m\":[3],"));
	free(r);
	r = ask("GET /api/v1/workers?job=j HTTP/1.1\r\n\r\n", &keep);
	CU_ASSERT_PTR_NOT_NULL(strstr(r, "\"workers\":[{\"rank\":0,"));
	free(r);
	/* HEAD: the same headers, no body */
	r = ask("HEAD /healthz HTTP/1.1\r\n\r\n", &keep);
	CU_ASSERT_PTR_NOT_NULL(strstr(r, "Content-Length: 3\r\n"));
	CU_ASSERT(strlen(strstr(r, "\r\n\r\n")) == 4);
	free(r);
	/* the page, with its content security policy */
	r = ask("GET / HTTP/1.1\r\n\r\n", &keep);
	CU_ASSERT(starts(r, "HTTP/1.1 200 OK\r\nContent-Type: text/html"));
	CU_ASSERT_PTR_NOT_NULL(strstr(r, "Content-Security-Policy: default-src 'self'"));
	CU_ASSERT_PTR_NOT_NULL(strstr(r, "<title>sfpd</title>"));
	free(r);
	/* errors: the request was fine HTTP, so the connection stays */
	struct {
		const char *in;
		const char *status;
		const char *says;
	} errs[] = {
	    {"GET /nope HTTP/1.1\r\n\r\n", "404 Not Found", "no such page"},
	    {"GET /api/v1/job?job=other HTTP/1.1\r\n\r\n", "404 Not Found", "no job 'other'"},
	    {"GET /api/v1/bitlengths?layer=fc HTTP/1.1\r\n\r\n", "404 Not Found", "no layer 'fc'"},
	    {"GET /api/v1/job?since=-1 HTTP/1.1\r\n\r\n", "400 Bad Request", "since"},
	    {"GET /api/v1/job?since=12x HTTP/1.1\r\n\r\n", "400 Bad Request", "since"},
	    {"GET /api/v1/job?since=%zz HTTP/1.1\r\n\r\n", "400 Bad Request", "since"},
	    {"GET /api/v1/job?job=%00 HTTP/1.1\r\n\r\n", "400 Bad Request", "job"},
	    {"POST /metrics HTTP/1.1\r\nContent-Length: 0\r\n\r\n", "405 Method Not Allowed",
	     "not allowed"},
	    {"DELETE /api/v1/job HTTP/1.1\r\n\r\n", "405 Method Not Allowed", "not allowed"},
	};
	for (size_t i = 0; i < sizeof errs / sizeof errs[0]; i++) {
		r = ask(errs[i].in, &keep);
		char want[64];
		snprintf(want, sizeof want, "HTTP/1.1 %s\r\n", errs[i].status);
		if (!starts(r, want) || !strstr(r, errs[i].says))
			fprintf(stderr, "\n  case %zu: %s\n", i, r ? r : "(none)");
		CU_ASSERT(starts(r, want));
		CU_ASSERT_PTR_NOT_NULL(strstr(r, errs[i].says));
		CU_ASSERT(keep);
		if (strstr(errs[i].status, "405"))
			CU_ASSERT_PTR_NOT_NULL(strstr(r, "Allow: GET, HEAD\r\n"));
		free(r);
	}
	/* an Upgrade request gets its answer, then the connection closes */
	r = ask("GET /healthz HTTP/1.1\r\nConnection: Upgrade\r\nUpgrade: websocket\r\n\r\n",
	        &keep);
	CU_ASSERT(starts(r, "HTTP/1.1 200 OK\r\n"));
	CU_ASSERT(!keep);
	free(r);
	CU_ASSERT_EQUAL(site.responses[0], 9); /* the 200s so far */
	sfp_stats_close(stats);
}

static void test_error_response(void)
{
	sfp_strbuf out;
	sfp_strbuf_init(&out, 0);
	sfp_http_respond_error(&out, 431, "too \"many\" headers", NULL, 0, 0);
	CU_ASSERT(starts(out.p, "HTTP/1.1 431 Request Header Fields Too Large\r\n"));
	CU_ASSERT_PTR_NOT_NULL(strstr(out.p, "Connection: close\r\n"));
	CU_ASSERT_PTR_NOT_NULL(strstr(out.p, "\r\n\r\n{\"error\":\"too \\\"many\\\" headers\"}\n"));
	sfp_strbuf_release(&out);
}

int main(void)
{
	static const test_case cases[] = {
	    {"parse a request", test_parse_request},
	    {"pipelining and keep-alive", test_pipelining_and_keep_alive},
	    {"malformed and limits", test_malformed_and_limits},
	    {"query", test_query},
	    {"site", test_site},
	    {"error response", test_error_response},
	    {NULL, NULL},
	};
	return test_run_suite("http", cases);
}
