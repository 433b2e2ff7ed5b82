/*
 * strbuf.c -- growable strings and caller buffers for the renderers. A
 * failed append latches an error and turns later appends into no-ops, so a
 * renderer is a straight list of appends with one check at the end.
 */
#include <math.h>
#include <stdarg.h>
#include <stdint.h>
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

/* The digits of u, written backwards ending before `end`; returns the first. */
static char *digits_back(char *end, uint64_t u)
{
	do {
		*--end = (char)('0' + u % 10);
		u /= 10;
	} while (u);
	return end;
}

/*
 * What printf's "%.7g" writes for v, when that is fixed notation (the
 * rounded decimal exponent X in -4..6), without printf: the renderers
 * print series of thousands of numbers, and glibc's exact multi-precision
 * conversion was most of an endpoint's time. v * 10^k (k = 6 - X, an exact
 * power of ten) is rounded half-even to a 7-digit integer from its exact
 * value, recovered with fma (p + e = |v| * 10^k exactly), so the digits are
 * printf's. Returns the length written to out, or 0 when v is not in that
 * range (the caller uses printf).
 */
static size_t format_g7(char out[32], double v)
{
	static const double pow10[] = {1e0, 1e1, 1e2, 1e3, 1e4, 1e5, 1e6, 1e7, 1e8, 1e9, 1e10};
	const double a = fabs(v);
	if (!(a >= 1e-4 && a < 1e7))
		return 0;
	int x = (int)floor(log10(a)); /* an estimate: off by one near powers of ten */
	for (int tries = 0; tries < 3; tries++) {
		if (x < -4 || x > 6)
			return 0;
		const double t = pow10[6 - x];
		const double p = a * t, e = fma(a, t, -p);
		const double n = floor(p), f = p - n; /* f exact; |e| <= half an ulp of p */
		uint64_t d = (uint64_t)n;
		if (f > 0.5 || (f == 0.5 && (e > 0.0 || (e == 0.0 && (d & 1)))))
			d++;
		if (d < 1000000u) {
			x--;
			continue;
		}
		if (d >= 10000000u) { /* the estimate was low, or rounding carried */
			x++;
			continue;
		}
		char dig[8];
		digits_back(dig + 7, d);
		int last = 6; /* trailing zeros go, and the point if nothing follows */
		while (last > (x > 0 ? x : 0) && dig[last] == '0')
			last--;
		size_t len = 0;
		if (v < 0)
			out[len++] = '-';
		if (x >= 0) {
			memcpy(out + len, dig, (size_t)x + 1);
			len += (size_t)x + 1;
			if (last > x) {
				out[len++] = '.';
				memcpy(out + len, dig + x + 1, (size_t)(last - x));
				len += (size_t)(last - x);
			}
		} else {
			out[len++] = '0';
			out[len++] = '.';
			for (int z = 0; z < -x - 1; z++)
				out[len++] = '0';
			memcpy(out + len, dig, (size_t)last + 1);
			len += (size_t)last + 1;
		}
		return len;
	}
	return 0;
}

void sfp_strbuf_json_num(sfp_strbuf *b, double v)
{
	char buf[32];
	size_t n;
	if (!isfinite(v)) {
		sfp_strbuf_append(b, "null", 4);
	} else if (v == (double)(int64_t)v && fabs(v) < 9.007199254740992e15) {
		/* what "%lld" writes */
		const int64_t i = (int64_t)v;
		char *p = digits_back(buf + sizeof buf, i < 0 ? 0 - (uint64_t)i : (uint64_t)i);
		if (i < 0)
			*--p = '-';
		sfp_strbuf_append(b, p, (size_t)(buf + sizeof buf - p));
	} else if ((n = format_g7(buf, v)) > 0) {
		sfp_strbuf_append(b, buf, n);
	} else {
		sfp_strbuf_printf(b, "%.7g", v);
	}
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
