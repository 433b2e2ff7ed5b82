/*
 * strbuf.c -- growable strings and caller buffers for the renderers. A
 * failed append latches an error and turns later appends into no-ops, so a
 * renderer is a straight list of appends with one check at the end.
 */
#include <math.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "sfp/stats.h"

#define STRBUF_DEFAULT_MAX ((size_t)64 << 20)

void sfp_strbuf_init(sfp_strbuf *b, size_t max)
{
	memset(b, 0, sizeof *b);
	b->max = max ? max : STRBUF_DEFAULT_MAX;
}

void sfp_strbuf_init_fixed(sfp_strbuf *b, char *buf, size_t cap)
{
	memset(b, 0, sizeof *b);
	b->p = buf;
	b->cap = cap;
	b->max = cap;
	b->fixed = 1;
	if (cap)
		buf[0] = '\0';
	else
		b->err = SFP_ENOSPC;
}

void sfp_strbuf_release(sfp_strbuf *b)
{
	if (!b->fixed)
		free(b->p);
	b->p = NULL;
	b->len = b->cap = 0;
}

void sfp_strbuf_reset(sfp_strbuf *b)
{
	b->len = 0;
	b->err = b->fixed && !b->cap ? SFP_ENOSPC : 0;
	if (b->cap)
		b->p[0] = '\0';
}

/* Room for n more bytes plus the terminator. */
static int reserve(sfp_strbuf *b, size_t n)
{
	if (b->err)
		return 0;
	if (n < b->cap - b->len)
		return 1;
	if (b->fixed || n >= b->max - b->len) {
		b->err = b->fixed ? SFP_ENOSPC : SFP_ENOMEM;
		return 0;
	}
	size_t want = b->len + n + 1, cap = b->cap ? b->cap : b->max < 256 ? b->max : 256;
	while (cap < want)
		cap = cap > b->max / 2 ? b->max : cap * 2;
	char *p = realloc(b->p, cap);
	if (!p) {
		b->err = SFP_ENOMEM;
		return 0;
	}
	b->p = p;
	b->cap = cap;
	return 1;
}

void sfp_strbuf_append(sfp_strbuf *b, const void *data, size_t n)
{
	if (!reserve(b, n))
		return;
	memcpy(b->p + b->len, data, n);
	b->len += n;
	b->p[b->len] = '\0';
}

void sfp_strbuf_puts(sfp_strbuf *b, const char *s)
{
	sfp_strbuf_append(b, s, strlen(s));
}

void sfp_strbuf_printf(sfp_strbuf *b, const char *fmt, ...)
{
	va_list ap;
	char small[256];
	va_start(ap, fmt);
	int n = vsnprintf(small, sizeof small, fmt, ap);
	va_end(ap);
	if (n < 0) {
		if (!b->err)
			b->err = SFP_EINVAL;
		return;
	}
	if ((size_t)n < sizeof small) {
		sfp_strbuf_append(b, small, (size_t)n);
		return;
	}
	/* longer than the scratch: format in place */
	if (!reserve(b, (size_t)n))
		return;
	va_start(ap, fmt);
	vsnprintf(b->p + b->len, (size_t)n + 1, fmt, ap);
	va_end(ap);
	b->len += (size_t)n;
}

void sfp_strbuf_json_str(sfp_strbuf *b, const char *s)
{
	static const char hex[] = "0123456789abcdef";
	sfp_strbuf_append(b, "\"", 1);
	for (const unsigned char *c = (const unsigned char *)s; *c; c++) {
		if (*c == '"' || *c == '\\') {
			char e[2] = {'\\', (char)*c};
			sfp_strbuf_append(b, e, 2);
		} else if (*c < 0x20 || *c == 0x7f) {
			char e[6] = {'\\', 'u', '0', '0', hex[*c >> 4], hex[*c & 15]};
			sfp_strbuf_append(b, e, 6);
		} else {
			sfp_strbuf_append(b, c, 1);
		}
	}
	sfp_strbuf_append(b, "\"", 1);
}

void sfp_strbuf_json_num(sfp_strbuf *b, double v)
{
	if (!isfinite(v))
		sfp_strbuf_append(b, "null", 4);
	else if (v == (double)(int64_t)v && fabs(v) < 9.007199254740992e15)
		sfp_strbuf_printf(b, "%lld", (long long)v);
	else
		sfp_strbuf_printf(b, "%.7g", v);
}

char *sfp_strbuf_take(sfp_strbuf *b, size_t *len)
{
	if (b->fixed || b->err)
		return NULL;
	if (!b->p && !reserve(b, 0))
		return NULL;
	char *p = b->p;
	if (len)
		*len = b->len;
	b->p = NULL;
	b->len = b->cap = 0;
	return p;
}
