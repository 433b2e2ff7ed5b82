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
#include "tests/fuzz/fuzz_common.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static sfp_model *model(void)
{
	static sfp_model *m;
	static sfp_config cfg;
	if (!m) {
		sfp_error err;
		if (sfp_config_load_string(&cfg, "tiny.yaml", fuzz_tiny_yaml, strlen(fuzz_tiny_yaml),
					   &err) < 0 ||
		    sfp_model_create(&m, &cfg.model, NULL, 1, &err) < 0)
			abort();
	}
	return m;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	size_t len = 0;
	uint8_t *buf = fuzz_file(data, size, &len, 64, 56, 60);
	if (!buf)
		return 0;
	sfp_model *m = model();
	sfp_error err;
	if (sfp_model_load_pruned(m, "fuzz.sfpq", buf, len, &err) == SFP_OK) {
		static float x[784];
		(void)sfp_model_forward(m, x, 1, 0, 0);
		if (sfp_model_n_pruned(m) != 2)
			abort();
	}
	free(buf);
	return 0;
}
