/*
 * fuzz_npy.c -- libFuzzer target: the .npy parser on arbitrary bytes. A
 * parsed array must format back to a file that parses to the same array.
 */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "sfp/npy.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	sfp_npy a, b;
	if (sfp_npy_parse(data, size, &a, NULL) < 0)
		return 0;
	size_t cap = sfp_npy_bound(a.shape, a.ndim), w = 0;
	uint8_t *buf = malloc(cap ? cap : 1);
	if (!buf)
		abort();
	if (sfp_npy_format(buf, cap, &w, a.data, a.shape, a.ndim, NULL) < 0)
		abort();
	if (sfp_npy_parse(buf, w, &b, NULL) < 0)
		abort();
	if (b.count != a.count || b.ndim != a.ndim ||
	    memcmp(a.shape, b.shape, sizeof a.shape) != 0 ||
	    (a.count && memcmp(a.data, b.data, a.count * sizeof(float)) != 0))
		abort();
	sfp_npy_release(&a);
	sfp_npy_release(&b);
	free(buf);
	return 0;
}
