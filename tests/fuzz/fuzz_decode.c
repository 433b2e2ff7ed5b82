/*
 * fuzz_decode.c -- libFuzzer target: any bytes given to the container decoder.
 * The fast decoder and the scalar reference must agree: both fail, or both
 * succeed with bit-identical floats; sfp_inspect must agree on the sizes.
 */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "sfp/codec.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	static sfp_codec *codec;
	sfp_info info;
	if (!codec && !(codec = sfp_codec_create()))
		abort();
	if (sfp_inspect(data, size, &info, NULL) < 0)
		return 0;
	if (info.count > ((uint64_t)1 << 22))
		return 0; /* a valid header for a huge tensor: fine, but not worth the memory */
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
	return 0;
}
