/*
 * fuzz_roundtrip.c -- libFuzzer target: the first 8 bytes choose the
 * container parameters (byte 7: the refinement tools, where m allows them),
 * the rest are float32 values (any bit patterns).
 * Checks: encode succeeds or fails with SFP_ERANGE only; decode(encode(x))
 * equals sfp_quantize(x) bit for bit and equals the scalar reference; encode
 * is deterministic; a buffer one byte short gives SFP_ENOSPC.
 */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "sfp/codec.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	static sfp_codec *codec;
	sfp_params p;
	if (size < 8)
		return 0;
	if (!codec && !(codec = sfp_codec_create()))
		abort();
	sfp_params_init(&p, 1 + data[0] % 8, data[1] % 24);
	p.rounding = data[2] & 1;
	p.seed = data[3];
	p.gecko = (data[2] >> 1) & 1;
	p.underflow = (data[2] >> 2) & 1;
	p.overflow = (data[2] >> 3) & 1;
	if ((data[2] >> 4) & 1) {
		p.window = SFP_WINDOW_FIXED;
		p.exp_hi = 1 + data[4] % 254;
	}
	p.gecko_opts.variant = data[5] % 4;
	int isa = data[6] % 3;
	if (isa > sfp_cpu_isa())
		isa = sfp_cpu_isa();
	if (sfp_codec_set_isa(codec, isa) < 0)
		abort();

	size_t n = (size - 8) / 4;
	if (p.m <= SFP_REFINE_MAX_M) {
		p.shift = data[7] & 1;
		p.bias = (data[7] >> 1) % 3;
		if (p.bias == SFP_BIAS_CHANNEL && !n)
			p.bias = SFP_BIAS_TENSOR;
		p.channels = n; /* shape {n}: one group per value */
	}
	float *x = malloc((n ? n : 1) * sizeof(float));
	float *q = malloc((n ? n : 1) * sizeof(float));
	float *y = malloc((n ? n : 1) * sizeof(float));
	uint64_t shape = n;
	size_t cap = sfp_encode_bound_params(n, &shape, 1, &p);
	uint8_t *enc = malloc(cap), *enc2 = malloc(cap), *ref = malloc(cap);
	if (!x || !q || !y || !enc || !enc2 || !ref)
		abort();
	memcpy(x, data + 8, n * 4);
	size_t w = 0, w2 = 0, wr = 0;
	int rc = sfp_encode(codec, enc, cap, &w, x, n, &shape, 1, &p, NULL);
	int rq = sfp_quantize(codec, q, x, n, &p, NULL);
	int rr = sfp_encode_ref(ref, cap, &wr, x, n, &shape, 1, &p, NULL);
	if (rc != rq || rc != rr)
		abort();
	if (rc < 0) {
		if (rc != SFP_ERANGE)
			abort();
		goto out;
	}
	if (w != wr || memcmp(enc, ref, w) != 0)
		abort();
	if (sfp_encode(codec, enc2, cap, &w2, x, n, &shape, 1, &p, NULL) != SFP_OK || w2 != w ||
	    memcmp(enc, enc2, w) != 0)
		abort();
	if (sfp_encode(codec, enc2, w - 1, &w2, x, n, &shape, 1, &p, NULL) != SFP_ENOSPC)
		abort();
	if (sfp_decode(codec, y, n, enc, w, NULL, NULL) != SFP_OK)
		abort();
	if (memcmp(y, q, n * 4) != 0)
		abort();
out:
	free(x);
	free(q);
	free(y);
	free(enc);
	free(enc2);
	free(ref);
	return 0;
}
