/*
 * test_plot.c -- the PNG writer: signature, chunk CRCs, IHDR fields, and the
 * inflated scanlines equal to the canvas (what any PNG reader would see).
 */
#include <stdlib.h>
#include <string.h>
#include <zlib.h>

#include "sfp/plot.h"
#include "tests/util/testutil.h"

static uint32_t rd32(const uint8_t *p)
{
	return (uint32_t)p[0] << 24 | (uint32_t)p[1] << 16 | (uint32_t)p[2] << 8 | p[3];
}

static void test_png(void)
{
	sfp_canvas c;
	sfp_error err;
	CU_ASSERT_EQUAL_FATAL(sfp_canvas_init(&c, 37, 21, 0x102030, &err), SFP_OK);
	sfp_canvas_line(&c, 0, 0, 36, 20, 0xff0000, 1);
	sfp_canvas_rect(&c, 30, 2, 40, 5, 0x00ff00); /* clipped */
	sfp_canvas_text(&c, 2, 10, "A1.", 0xffffff, 1);
	CU_ASSERT_EQUAL(c.rgb[0], 0xff); /* the line starts at (0, 0) */
	CU_ASSERT_EQUAL(c.rgb[(20 * 37 + 36) * 3], 0xff); /* and ends at (36, 20) */
	uint8_t *png;
	size_t len;
	CU_ASSERT_EQUAL_FATAL(sfp_png_encode(&c, &png, &len, &err), SFP_OK);
	CU_ASSERT(memcmp(png, "\x89PNG\r\n\x1a\n", 8) == 0);
	size_t off = 8;
	int chunks = 0, saw_end = 0;
	uint8_t *idat = NULL;
	size_t idat_len = 0;
	while (off + 12 <= len) {
		uint32_t l = rd32(png + off);
		CU_ASSERT_FATAL(off + 12 + l <= len);
		CU_ASSERT_EQUAL(rd32(png + off + 8 + l), (uint32_t)crc32(0, png + off + 4, 4 + l));
		if (!memcmp(png + off + 4, "IHDR", 4)) {
			CU_ASSERT_EQUAL(rd32(png + off + 8), 37);
			CU_ASSERT_EQUAL(rd32(png + off + 12), 21);
			CU_ASSERT_EQUAL(png[off + 16], 8);
			CU_ASSERT_EQUAL(png[off + 17], 2);
		} else if (!memcmp(png + off + 4, "IDAT", 4)) {
			idat = png + off + 8;
			idat_len = l;
		} else if (!memcmp(png + off + 4, "IEND", 4)) {
			saw_end = 1;
		}
		off += 12 + l;
		chunks++;
	}
	CU_ASSERT_EQUAL(off, len);
	CU_ASSERT_EQUAL(chunks, 3);
	CU_ASSERT(saw_end);
	CU_ASSERT_PTR_NOT_NULL_FATAL(idat);
	uLongf raw_len = 21 * (37 * 3 + 1);
	uint8_t *raw = malloc(raw_len);
	CU_ASSERT_EQUAL_FATAL(uncompress(raw, &raw_len, idat, idat_len), Z_OK);
	CU_ASSERT_EQUAL(raw_len, 21 * (37 * 3 + 1));
	for (int y = 0; y < 21; y++) {
		CU_ASSERT_EQUAL(raw[y * (37 * 3 + 1)], 0);
		CU_ASSERT(memcmp(raw + y * (37 * 3 + 1) + 1, c.rgb + y * 37 * 3, 37 * 3) == 0);
	}
	free(raw);
	free(png);
	sfp_canvas_release(&c);
	CU_ASSERT_EQUAL(sfp_canvas_init(&c, 0, 5, 0, &err), SFP_EINVAL);
}

int main(void)
{
	static const test_case cases[] = {
		{"PNG chunks, CRCs and pixels", test_png},
		{NULL, NULL},
	};
	return test_run_suite("plot", cases);
}
