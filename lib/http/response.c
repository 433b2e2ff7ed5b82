/*
 * response.c -- HTTP/1.1 response framing. Every response says its length
 * and whether the connection stays open, so keep-alive clients never have
 * to guess where a response ends.
 */
#include <string.h>

#include "sfp/http.h"

const char *sfp_http_status_text(int status)
{
	switch (status) {
	case 200: return "OK";
	case 400: return "Bad Request";
	case 404: return "Not Found";
	case 405: return "Method Not Allowed";
	case 408: return "Request Timeout";
	case 413: return "Content Too Large";
	case 414: return "URI Too Long";
	case 431: return "Request Header Fields Too Large";
	case 500: return "Internal Server Error";
	case 503: return "Service Unavailable";
	case 505: return "HTTP Version Not Supported";
	default: return "Unknown";
	}
}

void sfp_http_respond(sfp_strbuf *out, int status, const char *content_type,
                      const char *extra_headers, const void *body, size_t len, int head_only,
                      int keep_alive)
{
	sfp_strbuf_printf(out,
	                  "HTTP/1.1 %d %s\r\n"
	                  "Content-Type: %s\r\n"
	                  "Content-Length: %zu\r\n"
	                  "Cache-Control: no-store\r\n"
	                  "X-Content-Type-Options: nosniff\r\n"
	                  "Connection: %s\r\n",
	                  status, sfp_http_status_text(status), content_type, len,
	                  keep_alive ? "keep-alive" : "close");
	if (extra_headers)
		sfp_strbuf_puts(out, extra_headers);
	sfp_strbuf_append(out, "\r\n", 2);
	if (!head_only)
		sfp_strbuf_append(out, body, len);
}

void sfp_http_respond_error(sfp_strbuf *out, int status, const char *message,
                            const char *extra_headers, int head_only, int keep_alive)
{
	char buf[512];
	sfp_strbuf b;
	sfp_strbuf_init_fixed(&b, buf, sizeof buf);
	sfp_strbuf_puts(&b, "{\"error\":");
	sfp_strbuf_json_str(&b, message);
	sfp_strbuf_puts(&b, "}\n");
	if (b.err) { /* a message too long for the buffer: its status says enough */
		sfp_strbuf_reset(&b);
		sfp_strbuf_printf(&b, "{\"error\":\"%s\"}\n", sfp_http_status_text(status));
	}
	sfp_http_respond(out, status, "application/json", extra_headers, b.p, b.len, head_only,
	                 keep_alive);
}
