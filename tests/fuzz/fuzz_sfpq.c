/*
 * fuzz_sfpq.c -- libFuzzer target: the .sfpq integer-model reader
 * (sfp_model_load_pruned) on arbitrary bytes, against a small fixed model
 * (seeds: make-seeds.sh exports that model). A random edit almost never passes the
 * CRCs, so when the first byte is odd the target recomputes both before
 * loading: the structural checks behind them get fuzzed too. Whatever is
 * accepted must leave a finalized model whose forward pass runs.
 */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "sfp/config.h"
#include "sfp/nn.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

/* Keep in step with the tiny model of make-seeds.sh (the seeds). */
static const char *tiny = "model:\n"
			  "  input: [1, 28, 28]\n"
			  "  layers:\n"
			  "    - {type: conv2d, out_channels: 3, kernel: 3, padding: 1}\n"
			  "    - {type: batchnorm}\n"
			  "    - {type: relu}\n"
			  "    - {type: maxpool, kernel: 4}\n"
			  "    - {type: flatten}\n"
			  "    - {type: linear, out_features: 10}\n";

static sfp_model *model(void)
{
	static sfp_model *m;
	static sfp_config cfg;
	if (!m) {
		sfp_error err;
		if (sfp_config_load_string(&cfg, "tiny.yaml", tiny, strlen(tiny), &err) < 0 ||
		    sfp_model_create(&m, &cfg.model, NULL, 1, &err) < 0)
			abort();
	}
	return m;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	if (size < 1)
		return 0;
	const int reseal = data[0] & 1;
	data++;
	size--;
	uint8_t *buf = malloc(size ? size : 1);
	if (!buf)
		return 0;
	memcpy(buf, data, size);
	if (reseal && size >= 64) {
		uint32_t c = sfp_crc32c(0, buf + 64, size - 64);
		memcpy(buf + 56, &c, 4);
		memset(buf + 60, 0, 4);
		c = sfp_crc32c(0, buf, 64);
		memcpy(buf + 60, &c, 4);
	}
	sfp_model *m = model();
	sfp_error err;
	if (sfp_model_load_pruned(m, "fuzz.sfpq", buf, size, &err) == SFP_OK) {
		static float x[784];
		(void)sfp_model_forward(m, x, 1, 0, 0);
		if (sfp_model_n_pruned(m) != 2)
			abort();
	}
	free(buf);
	return 0;
}
