/*
 * fuzz_ckpt.c -- libFuzzer target: the checkpoint reader (sfp_trainer_load)
 * on arbitrary bytes, against the tiny model of fuzz_sfpq.c and make-seeds.sh
 * (the seeds are that model's checkpoint after 2 steps). The reader takes a
 * path, so each input goes through one scratch file. A random edit almost
 * never passes the CRCs, so when the first byte is odd the target recomputes
 * both before loading: the structural checks behind them get fuzzed too.
 * Whatever is accepted must leave the trainer at a step inside its run.
 */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "sfp/common.h"
#include "sfp/config.h"
#include "sfp/train.h"
#include "tests/fuzz/fuzz_common.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

/* Keep in step with make-seeds.sh ($TINY). */
static const char *const sets[] = {"data.train_limit=64", "data.test_limit=32",
				   "train.max_steps=2"};

enum { HDR = 72, PAYLOAD_CRC = 60, HEADER_CRC = 68 }; /* ckpt_header in lib/train/checkpoint.c */

static sfp_trainer *trainer(void)
{
	static sfp_trainer *t;
	static sfp_config cfg;
	if (!t) {
		sfp_error err;
		if (sfp_config_load_string(&cfg, "tiny.yaml", fuzz_tiny_yaml, strlen(fuzz_tiny_yaml),
					   &err) < 0)
			abort();
		for (size_t i = 0; i < sizeof sets / sizeof sets[0]; i++)
			if (sfp_config_set(&cfg, sets[i], &err) < 0)
				abort();
		cfg.log.metrics[0] = '\0';
		if (sfp_config_validate(&cfg, &err) < 0 ||
		    sfp_trainer_create(&t, &cfg, NULL, &err) < 0) {
			fprintf(stderr, "fuzz_ckpt: %s\n", err.msg);
			abort();
		}
	}
	return t;
}

static const char *scratch(void)
{
	static char path[64];
	if (!path[0])
		snprintf(path, sizeof path, "/tmp/fuzz_ckpt.%d.sfpk", (int)getpid());
	return path;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	size_t len = 0;
	uint8_t *buf = fuzz_file(data, size, &len, HDR, PAYLOAD_CRC, HEADER_CRC);
	if (!buf)
		return 0;
	FILE *f = fopen(scratch(), "wb");
	if (!f || fwrite(buf, 1, len, f) != len || fclose(f) != 0)
		abort();
	free(buf);
	sfp_trainer *t = trainer();
	sfp_error err;
	if (sfp_trainer_load(t, scratch(), &err) == SFP_OK &&
	    (sfp_trainer_step(t) < 0 || sfp_trainer_step(t) > 2))
		abort();
	unlink(scratch());
	return 0;
}
