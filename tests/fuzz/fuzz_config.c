/*
 * fuzz_config.c -- libFuzzer target: the YAML config loader on arbitrary
 * bytes. Whatever it accepts must also validate or fail cleanly, and an
 * override built from the input must never crash either.
 */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "sfp/config.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	static sfp_config cfg;
	sfp_error err;
	if (sfp_config_load_string(&cfg, "fuzz.yaml", (const char *)data, size, &err) == SFP_OK)
		(void)sfp_config_validate(&cfg, &err);
	/* the first line, as a --set assignment */
	char line[256];
	size_t n = 0;
	while (n < size && n < sizeof line - 1 && data[n] != '\n' && data[n] != 0) {
		line[n] = (char)data[n];
		n++;
	}
	line[n] = 0;
	(void)sfp_config_set(&cfg, line, &err);
	return 0;
}
