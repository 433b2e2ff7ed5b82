/*
 * export.c -- `sfp export` (BitPruning fine-tune of a float checkpoint into
 * an integer model file) and `sfp eval --model` (evaluate such a file).
 *
 *   sfp export --config FILE --checkpoint CKPT|DIR --out MODEL.sfpq
 *              [--granularity layer|channel] [--penalty memory|ops]
 *              [--activations] [--gamma G] [--steps N] [--set K=V ...] [--quiet]
 *   sfp eval --config FILE --model MODEL.sfpq [--set K=V ...]
 *
 * The flags are shorthands for `--set prune.KEY=VALUE` (docs/config.md),
 * applied after the other overrides. Exit codes as in sfp.c.
 */
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "sfp/config.h"
#include "sfp/train.h"
#include "tools/tools.h"

#define MAX_SETS 256

static const char *export_usage =
	"usage: sfp export --config FILE --checkpoint CKPT|DIR --out MODEL.sfpq\n"
	"                  [--granularity layer|channel] [--penalty memory|ops] [--activations]\n"
	"                  [--gamma G] [--steps N] [--set section.key=value ...] [--quiet]";

void sfp_tool_config_dir(char *dir, size_t cap, const char *config)
{
	snprintf(dir, cap, "%s", config);
	char *slash = strrchr(dir, '/');
	if (slash)
		*slash = 0;
	else
		snprintf(dir, cap, ".");
}

int sfp_tool_load_checkpoint(sfp_trainer **t, const sfp_config *cfg, const char *config,
			     const char *ckpt, char *path, size_t cap, sfp_error *err)
{
	char dir[SFP_CFG_PATH];
	sfp_tool_config_dir(dir, sizeof dir, config);
	SFP_TRY(sfp_trainer_create(t, cfg, dir, err));
	return sfp_trainer_load_checkpoint(*t, ckpt, path, cap, err);
}

int sfp_tool_eval_checkpoint(sfp_trainer **t, const sfp_config *cfg, const char *config,
			     const char *ckpt, char *path, size_t cap, float *acc, float *loss,
			     sfp_error *err)
{
	SFP_TRY(sfp_tool_load_checkpoint(t, cfg, config, ckpt, path, cap, err));
	return sfp_trainer_evaluate(*t, acc, loss, err);
}

#define usage(...) sfp_tool_usage("export", __VA_ARGS__)

/* The per-layer widths and the averages of a pruned model. */
static void print_widths(const sfp_model *m, size_t file_bytes)
{
	printf("%-12s %6s %9s %14s %22s %11s\n", "layer", "groups", "weights", "bits (min-max)",
	       "input bits (grid, r)", "MACs/sample");
	for (int k = 0; k < sfp_model_n_pruned(m); k++) {
		sfp_prune_info in;
		sfp_model_pruned(m, k, &in);
		char wb[32], ab[48] = "float32";
		snprintf(wb, sizeof wb, "%.2f (%u-%u)", in.bits, in.min_bits, in.max_bits);
		if (in.act_bits > 0)
			snprintf(ab, sizeof ab, "%.2f (%s, %.3g)", in.act_bits,
				 in.act_signed ? "signed" : "unsigned", (double)in.act_range);
		printf("%-12s %6d %9" PRIu64 " %14s %22s %11.0f\n", in.layer, in.groups, in.count, wb,
		       ab, in.macs);
	}
	sfp_prune_summary s;
	sfp_model_prune_summary(m, &s);
	size_t np, nb;
	sfp_model_params((sfp_model *)m, &np);
	sfp_model_buffers((sfp_model *)m, &nb);
	const double f32 = 4.0 * (double)(np + nb);
	printf("average bits: %.3f per weight, %.3f per layer, %.3f per MAC\n", s.w_per_weight,
	       s.w_per_layer, s.w_per_mac);
	if (s.a_per_layer < 32.0)
		printf("input bits: %.3f per value, %.3f per layer; bit operations per MAC %.2f "
		       "(float32: 1024)\n",
		       s.a_per_value, s.a_per_layer, s.bit_ops_per_mac);
	printf("file %zu bytes, %.2fx smaller than float32 (%.0f bytes of parameters and "
	       "buffers)\n",
	       file_bytes, f32 / (double)file_bytes, f32);
}

static void on_progress(void *user, const sfp_progress *p)
{
	if (*(const int *)user)
		return;
	fprintf(stderr,
		"prune step %" PRId64 "/%" PRId64 "  loss %.4f  acc %.3f  lr %.3g  %.3f bits/weight"
		"  %.0f samples/s\n",
		p->step, p->total_steps, (double)p->loss, (double)p->train_acc, (double)p->lr,
		(double)p->bits_per_value, p->samples_per_s);
}

/* `--flag value` shorthands -> "prune.key=value" in `store`, checked here so
 * the message names the flag. */
static int shorthand(const char *flag, const char *val, char *store, size_t cap)
{
	static const struct {
		const char *flag, *key, *const choices[3];
	} map[] = {
		{"--granularity", "granularity", {"layer", "channel", NULL}},
		{"--penalty", "penalty", {"memory", "ops", NULL}},
		{"--gamma", "gamma", {NULL}},
		{"--steps", "steps", {NULL}},
	};
	for (size_t i = 0; i < sizeof map / sizeof map[0]; i++) {
		if (strcmp(flag, map[i].flag) != 0)
			continue;
		if (map[i].choices[0]) {
			if (strcmp(val, map[i].choices[0]) && strcmp(val, map[i].choices[1]))
				return -1;
		} else {
			char *end;
			double v = strtod(val, &end);
			if (!*val || *end || !(v >= 0.0) || (!strcmp(flag, "--steps") && v != (int)v))
				return -1;
		}
		snprintf(store, cap, "prune.%s=%s", map[i].key, val);
		return 1;
	}
	return 0;
}

int sfp_export_main(int argc, char **argv)
{
	const char *config = NULL, *ckpt = NULL, *out = NULL, *sets[MAX_SETS];
	enum { MAX_FLAGS = 8 };
	static char flags[MAX_FLAGS][96];
	int nsets = 0, nflags = 0, quiet = 0;
	for (int i = 1; i < argc; i++) {
		const char *a = argv[i];
		static const char *const with_value[] = {"--config", "--checkpoint", "--out", "--set",
							 "--granularity", "--penalty", "--gamma",
							 "--steps", NULL};
		if (!strcmp(a, "--quiet")) {
			quiet = 1;
			continue;
		}
		if (nflags == MAX_FLAGS)
			return usage("too many options ('%s')", a);
		if (!strcmp(a, "--activations")) {
			snprintf(flags[nflags++], sizeof flags[0], "prune.activations=true");
			continue;
		}
		int known = 0;
		for (int j = 0; with_value[j]; j++)
			known |= !strcmp(a, with_value[j]);
		if (!known)
			return usage("unexpected argument '%s'", a);
		if (i + 1 >= argc)
			return usage("option '%s' needs a value", a);
		const char *val = argv[++i];
		int sh = shorthand(a, val, flags[nflags], sizeof flags[0]);
		if (sh < 0)
			return usage("%s: bad value '%s'", a, val);
		if (sh > 0)
			nflags++;
		else if (!strcmp(a, "--config"))
			config = val;
		else if (!strcmp(a, "--checkpoint"))
			ckpt = val;
		else if (!strcmp(a, "--out"))
			out = val;
		else if (!strcmp(a, "--set") && nsets < MAX_SETS - MAX_FLAGS)
			sets[nsets++] = val;
		else
			return usage("too many options ('%s')", a);
	}
	if (!config || !ckpt || !out)
		return usage("%s", export_usage);
	for (int i = 0; i < nflags; i++)
		sets[nsets++] = flags[i];

	static sfp_config cfg;
	sfp_error err;
	sfp_trainer *t = NULL;
	char path[SFP_CFG_PATH + 64];
	float acc0 = 0, acc = 0, loss = 0;
	int rc = sfp_config_load_all(&cfg, config, sets, nsets, &err);
	if (rc == SFP_OK)
		rc = sfp_tool_eval_checkpoint(&t, &cfg, config, ckpt, path, sizeof path, &acc0,
					      &loss, &err);
	if (rc == SFP_OK) {
		if (!quiet)
			fprintf(stderr, "float32 checkpoint '%s': test_acc %.4f\n", path,
				(double)acc0);
		sfp_trainer_on_progress(t, on_progress, &quiet);
		rc = sfp_trainer_prune(t, &err);
	}
	if (rc == SFP_OK)
		rc = sfp_trainer_evaluate(t, &acc, &loss, &err);
	if (rc == SFP_OK)
		rc = sfp_model_save_pruned(sfp_trainer_model(t), out, &err);
	if (rc == SFP_OK) {
		printf("test_acc %.4f  test_loss %.4f  (float32 %.4f, %+.2f points; model '%s')\n",
		       (double)acc, (double)loss, (double)acc0, 100.0 * (double)(acc - acc0), out);
		print_widths(sfp_trainer_model(t), sfp_model_pruned_bytes(sfp_trainer_model(t)));
	} else {
		fprintf(stderr, "sfp: %s\n", err.msg);
	}
	sfp_trainer_free(t);
	return rc == SFP_OK ? SFP_EXIT_OK : sfp_exit_code(rc);
}

int sfp_eval_model(const char *config, const char *model, const char *const *sets, int nsets)
{
	static sfp_config cfg;
	sfp_error err;
	sfp_trainer *t = NULL;
	char dir[SFP_CFG_PATH];
	void *buf = NULL;
	size_t len = 0;
	float acc = 0, loss = 0;
	int rc = sfp_config_load_all(&cfg, config, sets, nsets, &err);
	sfp_tool_config_dir(dir, sizeof dir, config);
	cfg.log.metrics[0] = 0; /* evaluation writes no training log */
	if (rc == SFP_OK)
		rc = sfp_file_read(model, &buf, &len, &err);
	if (rc == SFP_OK)
		rc = sfp_trainer_create(&t, &cfg, dir, &err);
	/* the integer model is evaluated as stored, whatever bitlength says */
	if (rc == SFP_OK)
		rc = sfp_model_set_quant(sfp_trainer_model(t), SFP_QPOLICY_OFF, 0, 8.0f, 23.0f, &err);
	if (rc == SFP_OK)
		rc = sfp_model_load_pruned(sfp_trainer_model(t), model, buf, len, &err);
	if (rc == SFP_OK)
		rc = sfp_trainer_evaluate(t, &acc, &loss, &err);
	if (rc == SFP_OK) {
		printf("test_acc %.4f  test_loss %.4f  (model '%s')\n", (double)acc, (double)loss,
		       model);
		print_widths(sfp_trainer_model(t), len);
	} else {
		fprintf(stderr, "sfp: %s\n", err.msg);
	}
	free(buf);
	sfp_trainer_free(t);
	return rc == SFP_OK ? SFP_EXIT_OK : sfp_exit_code(rc);
}
