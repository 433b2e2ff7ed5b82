/*
 * sfp/plot.h -- a small RGB canvas and a PNG writer (zlib), for the plots
 * of `sfp report`. Our own rather than a plotting library: a width-per-step
 * line chart needs lines and rectangles, and a PNG is a zlib stream with
 * CRCs, which zlib already gives us; no new dependency.
 */
#ifndef SFP_PLOT_H
#define SFP_PLOT_H

#include <stdint.h>

#include "sfp/common.h"

#ifdef __cplusplus
extern "C" {
#endif

typedef struct sfp_canvas {
	int w, h;
	uint8_t *rgb; /* w * h * 3, row-major, owned */
} sfp_canvas;

int sfp_canvas_init(sfp_canvas *c, int w, int h, uint32_t rgb, sfp_error *err);
void sfp_canvas_release(sfp_canvas *c);
/* Clipped to the canvas. Colours are 0xRRGGBB. */
void sfp_canvas_rect(sfp_canvas *c, int x0, int y0, int x1, int y1, uint32_t rgb);
void sfp_canvas_line(sfp_canvas *c, int x0, int y0, int x1, int y1, uint32_t rgb, int width);
/* Digits, '.', '-', ' ' and upper-case letters in a 5x7 font, `scale`x. */
void sfp_canvas_text(sfp_canvas *c, int x, int y, const char *s, uint32_t rgb, int scale);

/* Write the canvas as an 8-bit RGB PNG, atomically. */
int sfp_png_write(const char *path, const sfp_canvas *c, sfp_error *err);
/* The PNG bytes in memory (malloc'd; the caller frees *out). */
int sfp_png_encode(const sfp_canvas *c, uint8_t **out, size_t *len, sfp_error *err);

#ifdef __cplusplus
}
#endif
#endif
