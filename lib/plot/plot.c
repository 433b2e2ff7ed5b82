/*
 * plot.c -- RGB canvas, 5x7 bitmap text and a PNG encoder over zlib
 * (PNG: signature, IHDR, one IDAT holding the zlib stream of the filtered
 * scanlines -- filter 0 -- and IEND; every chunk with its CRC-32).
 */
#include <stdlib.h>
#include <string.h>
#include <zlib.h>

#include "sfp/plot.h"

int sfp_canvas_init(sfp_canvas *c, int w, int h, uint32_t rgb, sfp_error *err)
{
	if (w <= 0 || h <= 0 || w > 16384 || h > 16384)
		return sfp_error_set(err, SFP_EINVAL, "canvas size %dx%d is not in 1..16384", w, h);
	c->w = w;
	c->h = h;
	c->rgb = malloc((size_t)w * h * 3);
	if (!c->rgb)
		return sfp_error_set(err, SFP_ENOMEM, "out of memory for a %dx%d canvas", w, h);
	sfp_canvas_rect(c, 0, 0, w - 1, h - 1, rgb);
	return SFP_OK;
}

void sfp_canvas_release(sfp_canvas *c)
{
	free(c->rgb);
	c->rgb = NULL;
}

static void put(sfp_canvas *c, int x, int y, uint32_t rgb)
{
	if (x < 0 || y < 0 || x >= c->w || y >= c->h)
		return;
	uint8_t *p = c->rgb + ((size_t)y * c->w + x) * 3;
	p[0] = (uint8_t)(rgb >> 16);
	p[1] = (uint8_t)(rgb >> 8);
	p[2] = (uint8_t)rgb;
}

void sfp_canvas_rect(sfp_canvas *c, int x0, int y0, int x1, int y1, uint32_t rgb)
{
	for (int y = y0 < 0 ? 0 : y0; y <= y1 && y < c->h; y++)
		for (int x = x0 < 0 ? 0 : x0; x <= x1 && x < c->w; x++)
			put(c, x, y, rgb);
}

void sfp_canvas_line(sfp_canvas *c, int x0, int y0, int x1, int y1, uint32_t rgb, int width)
{
	/* Bresenham, each point drawn as a width x width square */
	int dx = abs(x1 - x0), dy = -abs(y1 - y0), sx = x0 < x1 ? 1 : -1, sy = y0 < y1 ? 1 : -1;
	int e = dx + dy, r = width / 2;
	for (;;) {
		sfp_canvas_rect(c, x0 - r, y0 - r, x0 - r + width - 1, y0 - r + width - 1, rgb);
		if (x0 == x1 && y0 == y1)
			break;
		int e2 = 2 * e;
		if (e2 >= dy) {
			e += dy;
			x0 += sx;
		}
		if (e2 <= dx) {
			e += dx;
			y0 += sy;
		}
	}
}

/* 5x7 glyphs, one byte per row (low 5 bits, MSB of those = left column). */
static const struct {
	char ch;
	uint8_t rows[7];
} font[] = {
	{'0', {14, 17, 19, 21, 25, 17, 14}}, {'1', {4, 12, 4, 4, 4, 4, 14}},
	{'2', {14, 17, 1, 2, 4, 8, 31}},     {'3', {31, 2, 4, 2, 1, 17, 14}},
	{'4', {2, 6, 10, 18, 31, 2, 2}},     {'5', {31, 16, 30, 1, 1, 17, 14}},
	{'6', {6, 8, 16, 30, 17, 17, 14}},   {'7', {31, 1, 2, 4, 8, 8, 8}},
	{'8', {14, 17, 17, 14, 17, 17, 14}}, {'9', {14, 17, 17, 15, 1, 2, 12}},
	{'.', {0, 0, 0, 0, 0, 12, 12}},      {'-', {0, 0, 0, 31, 0, 0, 0}},
	{'A', {14, 17, 17, 31, 17, 17, 17}}, {'B', {30, 17, 17, 30, 17, 17, 30}},
	{'C', {14, 17, 16, 16, 16, 17, 14}}, {'D', {28, 18, 17, 17, 17, 18, 28}},
	{'E', {31, 16, 16, 30, 16, 16, 31}}, {'F', {31, 16, 16, 30, 16, 16, 16}},
	{'G', {14, 17, 16, 23, 17, 17, 15}}, {'H', {17, 17, 17, 31, 17, 17, 17}},
	{'I', {14, 4, 4, 4, 4, 4, 14}},      {'K', {17, 18, 20, 24, 20, 18, 17}},
	{'L', {16, 16, 16, 16, 16, 16, 31}}, {'M', {17, 27, 21, 21, 17, 17, 17}},
	{'N', {17, 17, 25, 21, 19, 17, 17}}, {'O', {14, 17, 17, 17, 17, 17, 14}},
	{'P', {30, 17, 17, 30, 16, 16, 16}}, {'R', {30, 17, 17, 30, 20, 18, 17}},
	{'S', {15, 16, 16, 14, 1, 1, 30}},   {'T', {31, 4, 4, 4, 4, 4, 4}},
	{'U', {17, 17, 17, 17, 17, 17, 14}}, {'V', {17, 17, 17, 17, 17, 10, 4}},
	{'W', {17, 17, 17, 21, 21, 21, 10}}, {'X', {17, 17, 10, 4, 10, 17, 17}},
	{'Y', {17, 17, 10, 4, 4, 4, 4}},     {'/', {1, 1, 2, 4, 8, 16, 16}},
};

void sfp_canvas_text(sfp_canvas *c, int x, int y, const char *s, uint32_t rgb, int scale)
{
	for (; *s; s++, x += 6 * scale) {
		for (size_t g = 0; g < sizeof font / sizeof font[0]; g++) {
			if (font[g].ch != *s)
				continue;
			for (int r = 0; r < 7; r++)
				for (int b = 0; b < 5; b++)
					if (font[g].rows[r] & (16 >> b))
						sfp_canvas_rect(c, x + b * scale, y + r * scale,
								x + b * scale + scale - 1,
								y + r * scale + scale - 1, rgb);
		}
	}
}

static void be32(uint8_t *p, uint32_t v)
{
	p[0] = (uint8_t)(v >> 24);
	p[1] = (uint8_t)(v >> 16);
	p[2] = (uint8_t)(v >> 8);
	p[3] = (uint8_t)v;
}

/* Append a chunk (length, type, data, CRC over type and data). */
static uint8_t *chunk(uint8_t *p, const char *type, const uint8_t *data, uint32_t len)
{
	be32(p, len);
	memcpy(p + 4, type, 4);
	if (len)
		memcpy(p + 8, data, len);
	uLong crc = crc32(0L, p + 4, 4 + len);
	be32(p + 8 + len, (uint32_t)crc);
	return p + 12 + len;
}

int sfp_png_encode(const sfp_canvas *c, uint8_t **out, size_t *len, sfp_error *err)
{
	const size_t row = (size_t)c->w * 3 + 1, raw_len = row * c->h;
	uint8_t *raw = malloc(raw_len);
	uLongf zcap = compressBound((uLong)raw_len);
	uint8_t *z = malloc(zcap);
	uint8_t *png = NULL;
	int rc = SFP_OK;
	if (!raw || !z) {
		rc = sfp_error_set(err, SFP_ENOMEM, "out of memory for the PNG");
		goto done;
	}
	for (int y = 0; y < c->h; y++) {
		raw[y * row] = 0; /* filter: none */
		memcpy(raw + y * row + 1, c->rgb + (size_t)y * c->w * 3, (size_t)c->w * 3);
	}
	if (compress2(z, &zcap, raw, (uLong)raw_len, 6) != Z_OK) {
		rc = sfp_error_set(err, SFP_EIO, "zlib could not compress the PNG data");
		goto done;
	}
	png = malloc(8 + 25 + 12 + zcap + 12);
	if (!png) {
		rc = sfp_error_set(err, SFP_ENOMEM, "out of memory for the PNG");
		goto done;
	}
	static const uint8_t sig[8] = {0x89, 'P', 'N', 'G', '\r', '\n', 0x1a, '\n'};
	uint8_t ihdr[13];
	be32(ihdr, (uint32_t)c->w);
	be32(ihdr + 4, (uint32_t)c->h);
	ihdr[8] = 8;  /* bit depth */
	ihdr[9] = 2;  /* colour type: RGB */
	ihdr[10] = 0; /* deflate */
	ihdr[11] = 0; /* filter method */
	ihdr[12] = 0; /* no interlace */
	memcpy(png, sig, 8);
	uint8_t *p = chunk(png + 8, "IHDR", ihdr, 13);
	p = chunk(p, "IDAT", z, (uint32_t)zcap);
	p = chunk(p, "IEND", NULL, 0);
	*out = png;
	*len = (size_t)(p - png);
	png = NULL;
done:
	free(raw);
	free(z);
	free(png);
	return rc;
}

int sfp_png_write(const char *path, const sfp_canvas *c, sfp_error *err)
{
	uint8_t *buf;
	size_t len;
	SFP_TRY(sfp_png_encode(c, &buf, &len, err));
	int rc = sfp_file_write_atomic(path, buf, len, err);
	free(buf);
	return rc;
}
