/*
 * fuzz_http.c -- libFuzzer target: sfpd's HTTP path without the socket.
 * The first byte is the size of the reads the bytes arrive in (1..255, so
 * split requests are covered); the rest is what a client sends. Every
 * request the parser accepts is answered by the real endpoints over a small
 * store, and every answer must be well-framed HTTP/1.1 whose Content-Length
 * is the length of its body; every rejection must carry one of the statuses
 * the parser documents. Nothing a client sends may change the store.
 */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "sfp/http.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static sfp_stats *store(void)
{
	static sfp_stats *s;
	if (s)
		return s;
	static const char *const layers[] = {"conv1", "fc"};
	sfp_stats_width w[2] = {
	    {.layer = "conv1", .kind = SFP_STATS_WEIGHTS, .e = 4, .m = 3, .n_e = 4.5f, .count = 9},
	    {.layer = "fc", .kind = SFP_STATS_ACTIVATIONS, .e = 5, .m = 2, .n_m = 2.5f, .count = 7},
	};
	if (sfp_stats_open(&s, NULL, NULL, NULL) < 0 ||
	    sfp_stats_register(s, "job", 0, 0, 0, 2, layers, 0, NULL) < 0)
		abort();
	for (int64_t step = 0; step < 40; step++) {
		sfp_worker_report r = {.job = "job",
		                       .step = step,
		                       .loss = 1.0 / (double)(step + 1),
		                       .widths = w,
		                       .n_widths = 2,
		                       .samples = (uint64_t)step};
		if (sfp_stats_report(s, &r, 1, NULL) < 0)
			abort();
	}
	return s;
}

/* A response must be "HTTP/1.1 NNN ...", headers, blank line, and exactly
 * Content-Length bytes of body (none for HEAD). */
static void check_response(const char *p, size_t len, int head)
{
	if (len < 12 || memcmp(p, "HTTP/1.1 ", 9))
		abort();
	const char *end = NULL;
	for (size_t i = 0; i + 4 <= len; i++)
		if (!memcmp(p + i, "\r\n\r\n", 4)) {
			end = p + i + 4;
			break;
		}
	const char *cl = end ? strstr(p, "Content-Length: ") : NULL;
	if (!cl || cl > end)
		abort();
	size_t n = (size_t)strtoull(cl + 16, NULL, 10);
	if ((size_t)(p + len - end) != (head ? 0 : n))
		abort();
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	static sfp_http_site site;
	static const unsigned char page[] = "<html></html>";
	static const sfp_http_asset assets[] = {{"/", "text/html", page, sizeof page - 1}};
	if (size < 1)
		return 0;
	site.stats = store();
	site.version = "fuzz";
	site.ready = 1;
	site.assets = assets;
	site.n_assets = 1;
	size_t step = data[0] ? data[0] : 1, off = 1, pos = 1;
	sfp_http_parser *p;
	sfp_strbuf out;
	if (sfp_http_parser_create(&p) < 0)
		abort();
	sfp_strbuf_init(&out, 0);
	/* the bytes arrive in reads of `step`; each read is fed until used up */
	for (int open = 1; open && off < size;) {
		size_t chunk_end = off + step < size ? off + step : size;
		while (open && pos < chunk_end) {
			size_t used;
			int status;
			int ev = sfp_http_parser_feed(p, (const char *)data + pos, chunk_end - pos,
			                              &used, &status);
			if (used > chunk_end - pos)
				abort();
			pos += used;
			sfp_strbuf_reset(&out);
			if (ev == SFP_HTTP_REQUEST) {
				const sfp_http_request *r = sfp_http_parser_request(p);
				open = sfp_http_site_handle(&site, r, 2, &out);
				check_response(out.p, out.len, !strcmp(r->method, "HEAD"));
			} else if (ev == SFP_HTTP_BAD) {
				if (status != 400 && status != 413 && status != 414 &&
				    status != 431 && status != 505)
					abort();
				sfp_http_respond_error(&out, status, "bad request", NULL, 0, 0);
				check_response(out.p, out.len, 0);
				open = 0;
			} else if (pos != chunk_end) {
				abort(); /* MORE means everything was used */
			}
		}
		off = chunk_end;
	}
	int64_t last;
	if (sfp_stats_job_step(site.stats, "job", &last) < 0 || last != 39)
		abort();
	sfp_strbuf_release(&out);
	sfp_http_parser_free(p);
	return 0;
}
