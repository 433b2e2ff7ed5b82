/*
 * fuzz_stages.c -- libFuzzer target: the reader of a pipelined run's
 * per-stage checkpoints as the whole model (sfp_trainer_load_checkpoint on a
 * folder of ckpt-1-stage0.sfpk and ckpt-1-stage1.sfpk; lib/train/stage_ckpt.c)
 * against the tiny model of fuzz_ckpt.c, which a 2-stage pipeline cuts
 * before its flatten. Input: the prefix byte of fuzz_file (odd: both files'
 * CRCs recomputed after mutation, so the checks behind them get fuzzed),
 * a 4-byte little-endian length of the stage-0 file, then its bytes, then
 * the stage-1 file's. The seeds (make-seeds.sh) are the two files a 2-rank
 * run wrote at its end, step 1. Whatever is accepted must leave the trainer at a
 * step inside its run.
 */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "sfp/common.h"
#include "sfp/config.h"
#include "sfp/train.h"
#include "tests/fuzz/fuzz_common.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

/* Keep in step with make-seeds.sh ($TINY). */
static const char *const sets[] = {"data.train_limit=64", "data.test_limit=32",
				   "train.max_steps=2"};

enum { HDR = 72, PAYLOAD_CRC = 60, HEADER_CRC = 68 }; /* ckpt_header in lib/train */

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
			fprintf(stderr, "fuzz_stages: %s\n", err.msg);
			abort();
		}
	}
	return t;
}

/* The stage file s of the scratch folder from part[0..n), behind the prefix */
static void write_stage(const char *dir, int s, uint8_t prefix, const uint8_t *part, size_t n)
{
	uint8_t *in = malloc(n + 1);
	if (!in)
		abort();
	in[0] = prefix;
	memcpy(in + 1, part, n);
	size_t len = 0;
	uint8_t *buf = fuzz_file(in, n + 1, &len, HDR, PAYLOAD_CRC, HEADER_CRC);
	free(in);
	char path[128];
	snprintf(path, sizeof path, "%s/ckpt-1-stage%d.sfpk", dir, s);
	FILE *f = fopen(path, "wb");
	if (!buf || !f || fwrite(buf, 1, len, f) != len || fclose(f) != 0)
		abort();
	free(buf);
}

static char dir[64]; /* the scratch folder, removed at exit */

static void remove_scratch(void)
{
	char path[128];
	for (int s = 0; s < 2; s++) {
		snprintf(path, sizeof path, "%s/ckpt-1-stage%d.sfpk", dir, s);
		unlink(path);
	}
	rmdir(dir);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	if (size < 5)
		return 0;
	uint32_t l0;
	memcpy(&l0, data + 1, 4);
	const size_t rest = size - 5;
	if (l0 > rest)
		l0 = (uint32_t)rest;
	if (!dir[0]) {
		snprintf(dir, sizeof dir, "/tmp/fuzz_stages.%d", (int)getpid());
		if (mkdir(dir, 0700) != 0)
			abort();
		atexit(remove_scratch);
	}
	write_stage(dir, 0, data[0], data + 5, l0);
	write_stage(dir, 1, data[0], data + 5 + l0, rest - l0);
	sfp_trainer *t = trainer();
	sfp_error err;
	char used[256];
	if (sfp_trainer_load_checkpoint(t, dir, used, sizeof used, &err) == SFP_OK &&
	    (sfp_trainer_step(t) < 0 || sfp_trainer_step(t) > 2))
		abort();
	return 0;
}
