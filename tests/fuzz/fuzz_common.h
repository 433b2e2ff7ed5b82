/*
 * fuzz_common.h -- shared by the fuzz targets of model files (fuzz_sfpq.c,
 * fuzz_ckpt.c): the tiny model their seeds come from (keep in step with
 * make-seeds.sh's tiny.yaml), and the input convention: the first byte
 * picks whether the CRCs are recomputed after mutation (odd: yes, so the
 * structural checks behind them get fuzzed too), the rest is the file.
 */
#ifndef SFP_FUZZ_COMMON_H
#define SFP_FUZZ_COMMON_H

#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "sfp/common.h"

static const char *const fuzz_tiny_yaml =
	"model:\n"
	"  input: [1, 28, 28]\n"
	"  layers:\n"
	"    - {type: conv2d, out_channels: 3, kernel: 3, padding: 1}\n"
	"    - {type: batchnorm}\n"
	"    - {type: relu}\n"
	"    - {type: maxpool, kernel: 4}\n"
	"    - {type: flatten}\n"
	"    - {type: linear, out_features: 10}\n";

/* A malloc'd copy of the file in data[1..size) (*len bytes; NULL when there
 * is none), its CRCs recomputed when data[0] is odd: the payload CRC over
 * the bytes after the hdr-byte header, stored at payload_crc; the header
 * CRC over the header with its own field zeroed, stored at header_crc. */
static uint8_t *fuzz_file(const uint8_t *data, size_t size, size_t *len, size_t hdr,
			  size_t payload_crc, size_t header_crc)
{
	if (size < 1)
		return NULL;
	const int reseal = data[0] & 1;
	*len = size - 1;
	uint8_t *buf = malloc(*len ? *len : 1);
	if (!buf)
		return NULL;
	memcpy(buf, data + 1, *len);
	if (reseal && *len >= hdr) {
		uint32_t c = sfp_crc32c(0, buf + hdr, *len - hdr);
		memcpy(buf + payload_crc, &c, 4);
		memset(buf + header_crc, 0, 4);
		c = sfp_crc32c(0, buf, hdr);
		memcpy(buf + header_crc, &c, 4);
	}
	return buf;
}

#endif
