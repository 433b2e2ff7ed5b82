/*
 * fuzz_decode.c -- libFuzzer target: any bytes given to the container decoder.
 * The fast decoder and the scalar reference must agree: both fail, or both
 * succeed with bit-identical floats. Each input is tried twice: as is (the
 * CRCs reject almost every mutation) and with both CRCs recomputed, so the
 * structural checks behind them are fuzzed too.
 */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "sfp/codec.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static void check(sfp_codec *codec, const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	static sfp_codec *codec;
	if (!codec && !(codec = sfp_codec_create()))
		abort();
	check(codec, data, size);
	if (size >= SFP_HEADER_FIXED_BYTES && data[11] <= SFP_MAX_DIMS) {
		size_t hb = SFP_HEADER_BYTES(data[11]);
		uint64_t pay = size >= hb ? sfp_load_le64(data + 48) : 0;
		if (size >= hb && pay <= size - hb) {
			uint8_t *c = malloc(size);
			if (!c)
				abort();
			memcpy(c, data, size);
			uint32_t pc = sfp_crc32c(0, c + hb, (size_t)pay);
			memcpy(c + 56, &pc, 4);
			uint32_t hc = sfp_crc32c(sfp_crc32c(0, c, 60), c + 64, hb - 64);
			memcpy(c + 60, &hc, 4);
			check(codec, c, size);
			free(c);
		}
	}
	return 0;
}

static void check(sfp_codec *codec, const uint8_t *data, size_t size)
{
	sfp_info info;
	if (sfp_inspect(data, size, &info, NULL) < 0)
		return;
	if (info.count > ((uint64_t)1 << 22))
		return; /* a valid header for a huge tensor: fine, but not worth the memory */
	size_t n = info.count ? (size_t)info.count : 1;
	float *a = malloc(n * sizeof(float)), *b = malloc(n * sizeof(float));
	uint8_t *codes = malloc(n);
	if (!a || !b || !codes)
		abort();
	int ra = sfp_decode(codec, a, info.count, data, size, NULL, NULL);
	int rb = sfp_decode_ref(b, info.count, data, size, NULL, NULL);
	if ((ra < 0) != (rb < 0))
		abort();
	if (ra >= 0 && memcmp(a, b, info.count * sizeof(float)) != 0)
		abort();
	if (ra >= 0 && sfp_decode_codes(codec, codes, info.count, data, size, NULL) < 0)
		abort();
	free(a);
	free(b);
	free(codes);
}
