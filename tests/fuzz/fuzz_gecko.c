/*
 * fuzz_gecko.c -- libFuzzer target: the Gecko decoder on arbitrary bytes.
 * The first two bytes give e (1..8) and a count (0..65535); the rest is the
 * stream. A successful decode must yield codes < 2^e, and re-encoding those
 * codes with the stream's variant must decode to the same codes.
 */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "sfp/codec.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	if (size < 3)
		return 0;
	unsigned e = 1 + data[0] % 8;
	uint64_t n = (uint64_t)data[1] << 8 | data[2];
	const uint8_t *s = data + 3;
	size_t len = size - 3;
	size_t wb = sfp_gecko_work_bytes(n);
	void *work = malloc(wb ? wb : 1);
	uint8_t *codes = malloc(n ? n : 1), *again = malloc(n ? n : 1);
	size_t cap = sfp_gecko_bound(n, e);
	uint8_t *enc = malloc(cap ? cap : 1);
	if (!work || !codes || !again || !enc)
		abort();
	int rc = sfp_gecko_decode(codes, n, e, s, len, sfp_cpu_isa(), work, wb, NULL);
	int rref = sfp_gecko_decode(again, n, e, s, len, SFP_ISA_SCALAR, work, wb, NULL);
	if ((rc < 0) != (rref < 0))
		abort();
	if (rc >= 0) {
		if (memcmp(codes, again, n) != 0)
			abort();
		for (uint64_t i = 0; i < n; i++)
			if (codes[i] >> e)
				abort();
		sfp_gecko_opts o;
		sfp_gecko_opts_init(&o);
		o.variant = sfp_gecko_variant_of(s, len);
		size_t w = 0;
		if (sfp_gecko_encode(enc, cap, &w, codes, n, e, &o, sfp_cpu_isa(), work, wb, NULL) < 0)
			abort();
		if (sfp_gecko_decode(again, n, e, enc, w, sfp_cpu_isa(), work, wb, NULL) < 0 ||
		    memcmp(codes, again, n) != 0)
			abort();
	}
	free(work);
	free(codes);
	free(again);
	free(enc);
	return 0;
}
