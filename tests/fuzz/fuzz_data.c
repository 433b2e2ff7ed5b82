/*
 * fuzz_data.c -- libFuzzer target: the readers of users' data on arbitrary
 * bytes. The first byte picks the reader: 0 a CIFAR-10 batch, 1 a token
 * file (then windows, held-out windows and the vocabulary check), 2 a .npy
 * file of any supported dtype. A parse either fails with a code or gives
 * exactly what the bytes say.
 */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "sfp/data.h"
#include "sfp/npy.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static void cifar(const uint8_t *b, size_t len)
{
	size_t cap = sfp_cifar_count(len), n = 0;
	float *x = malloc((cap ? cap : 1) * SFP_CIFAR_PIXELS * sizeof *x);
	uint8_t *y = malloc(cap ? cap : 1);
	if (!x || !y)
		abort();
	if (sfp_cifar_parse(b, len, "fuzz", x, y, cap, &n, NULL) == SFP_OK) {
		if (n != cap || len != n * SFP_CIFAR_RECORD)
			abort();
		for (size_t r = 0; r < n; r++)
			if (y[r] > 9 || y[r] != b[r * SFP_CIFAR_RECORD] ||
			    x[r * SFP_CIFAR_PIXELS] != (float)b[r * SFP_CIFAR_RECORD + 1] / 255.0f)
				abort();
		/* one record short of room is refused */
		if (n && sfp_cifar_parse(b, len, "fuzz", x, y, n - 1, &n, NULL) != SFP_ENOSPC)
			abort();
	}
	free(x);
	free(y);
}

static void tokens(const uint8_t *b, size_t len)
{
	if (len < 3)
		return;
	const int tb = (b[0] & 1) + 1, T = b[1] % 16 + 1, B = b[2] % 4 + 1;
	const uint64_t seed = b[0] ^ (uint64_t)b[1] << 8;
	b += 3;
	len -= 3;
	size_t cap = len / (size_t)tb, n = 0;
	sfp_tokens tok = {0};
	tok.ids = malloc((cap + 1) * sizeof *tok.ids);
	if (!tok.ids)
		abort();
	if (sfp_tokens_parse(b, len, tb, "fuzz", tok.ids, cap, &n, NULL) == SFP_OK) {
		if (n != cap)
			abort();
		tok.n_val = (int64_t)n / 4;
		tok.n_train = (int64_t)n - tok.n_val;
		float x[4 * 16];
		int32_t t[4 * 16];
		int rc = sfp_tokens_batch(&tok, B, T, seed, (int64_t)len, x, t, NULL);
		if ((rc == SFP_OK) != (tok.n_train >= T + 1))
			abort();
		for (int i = 0; rc == SFP_OK && i < B * T; i++)
			if (i % T + 1 < T && t[i] != (int32_t)x[i + 1])
				abort();
		int64_t w = sfp_tokens_val_windows(&tok, T), seen = 0;
		for (int k; (k = sfp_tokens_val_batch(&tok, T, seen, B, x, t)) > 0;)
			seen += k;
		if (seen != w)
			abort();
		uint16_t mx = 0;
		for (size_t i = 0; i < n; i++)
			mx = tok.ids[i] > mx ? tok.ids[i] : mx;
		if (sfp_tokens_check(&tok, mx + 1, NULL) != SFP_OK ||
		    (n && sfp_tokens_check(&tok, mx, NULL) != SFP_ECORRUPT))
			abort();
	}
	sfp_tokens_release(&tok);
}

static void npy(const uint8_t *b, size_t len)
{
	sfp_npy_raw a;
	if (sfp_npy_parse_raw(b, len, &a, NULL) < 0)
		return;
	uint64_t count = 1;
	for (unsigned i = 0; i < a.ndim; i++)
		count *= a.shape[i];
	size_t item = sfp_npy_dtype_size(a.dtype);
	if (!item || count != a.count || len < count * item ||
	    (count && memcmp(a.data, b + len - count * item, count * item) != 0))
		abort();
	sfp_npy_raw_release(&a);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	if (size < 1)
		return 0;
	switch (data[0] % 3) {
	case 0:
		cifar(data + 1, size - 1);
		break;
	case 1:
		tokens(data + 1, size - 1);
		break;
	default:
		npy(data + 1, size - 1);
	}
	return 0;
}
