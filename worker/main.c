/*
 * main.c -- sfp-worker: argv -> config -> lib/nn trainer; progress on
 * stderr. One process trains alone, or one rank under mpirun.
 *
 *   sfp-worker --config FILE [--set section.key=value ...] [--resume CKPT|DIR]
 *
 * Exit codes: 0 trained, 2 usage or bad config/input, 1 other failure
 * (including a full disk while writing a checkpoint or the metrics log).
 */
#include <inttypes.h>
#include <libgen.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "sfp/config.h"
#include "sfp/nn.h"

#define SFP_VERSION "0.1.0"
#define MAX_SETS 256

enum { EXIT_OK = 0, EXIT_FAIL = 1, EXIT_USAGE = 2 };

static const char *usage_text =
	"usage: sfp-worker --config FILE [--set section.key=value ...] [--resume CKPT|DIR]\n"
	"\n"
	"  --config FILE        the job's YAML config (docs/config.md)\n"
	"  --set K=V            override one config key, e.g. --set train.epochs=3\n"
	"  --resume CKPT|DIR    continue from a checkpoint (a folder: its newest)\n"
	"  --quiet              no progress lines (errors still go to stderr)\n"
	"  --help, --version\n";

static void fmt_duration(char *buf, size_t cap, double s)
{
	long t = (long)(s + 0.5);
	if (t >= 3600)
		snprintf(buf, cap, "%ldh%02ldm", t / 3600, t / 60 % 60);
	else if (t >= 60)
		snprintf(buf, cap, "%ldm%02lds", t / 60, t % 60);
	else
		snprintf(buf, cap, "%lds", t);
}

typedef struct progress_ctx {
	int epochs, quiet;
	int64_t steps_per_epoch;
} progress_ctx;

static void on_progress(void *user, const sfp_progress *p)
{
	const progress_ctx *c = user;
	if (c->quiet)
		return;
	if (p->is_eval) {
		fprintf(stderr, "epoch %" PRId64 "/%d  step %" PRId64 "  test_acc %.4f  test_loss %.4f\n",
			p->epoch + 1, c->epochs, p->step, (double)p->test_acc, (double)p->loss);
		return;
	}
	char eta[32];
	fmt_duration(eta, sizeof eta, p->eta_s);
	char bits[48] = "";
	if (p->bits_per_value < 32.0f)
		snprintf(bits, sizeof bits, "  %.2f bits/value (%.2fx)", (double)p->bits_per_value,
			 32.0 / (double)p->bits_per_value);
	fprintf(stderr,
		"epoch %" PRId64 "/%d  step %" PRId64 "/%" PRId64
		"  loss %.4f  acc %.3f  lr %.3g%s  %.0f samples/s  ETA %s\n",
		p->epoch + 1, c->epochs, p->step, p->total_steps, (double)p->loss,
		(double)p->train_acc, (double)p->lr, bits, p->samples_per_s, eta);
}

/* Under mpirun with more than one rank, this worker would silently train N
 * copies: refuse until the distributed worker exists. */
static int mpi_world_size(void)
{
	const char *v = getenv("OMPI_COMM_WORLD_SIZE");
	if (!v)
		v = getenv("PMI_SIZE");
	return v ? atoi(v) : 1;
}

int main(int argc, char **argv)
{
	const char *config = NULL, *resume = NULL;
	const char *sets[MAX_SETS];
	int nsets = 0, quiet = 0;
	for (int i = 1; i < argc; i++) {
		const char *a = argv[i];
		if (!strcmp(a, "--help") || !strcmp(a, "-h")) {
			fputs(usage_text, stdout);
			return EXIT_OK;
		} else if (!strcmp(a, "--version")) {
			printf("sfp-worker %s\n", SFP_VERSION);
			return EXIT_OK;
		} else if (!strcmp(a, "--quiet")) {
			quiet = 1;
		} else if (!strcmp(a, "--config") || !strcmp(a, "--set") || !strcmp(a, "--resume")) {
			if (i + 1 >= argc) {
				fprintf(stderr, "sfp-worker: %s needs a value\n%s", a, usage_text);
				return EXIT_USAGE;
			}
			const char *v = argv[++i];
			if (!strcmp(a, "--config"))
				config = v;
			else if (!strcmp(a, "--resume"))
				resume = v;
			else if (nsets == MAX_SETS) {
				fprintf(stderr, "sfp-worker: more than %d --set options\n", MAX_SETS);
				return EXIT_USAGE;
			} else
				sets[nsets++] = v;
		} else {
			fprintf(stderr, "sfp-worker: unexpected argument '%s'\n%s", a, usage_text);
			return EXIT_USAGE;
		}
	}
	if (!config) {
		fprintf(stderr, "sfp-worker: --config FILE is required\n%s", usage_text);
		return EXIT_USAGE;
	}
	if (mpi_world_size() > 1) {
		fprintf(stderr, "sfp-worker: started as one of %d ranks, but this build trains in one "
				"process only (use mpirun -np 1)\n",
			mpi_world_size());
		return EXIT_USAGE;
	}

	static sfp_config cfg;
	sfp_error err;
	sfp_trainer *t = NULL;
	int rc = sfp_config_load_all(&cfg, config, sets, nsets, &err);
	if (rc < 0) {
		fprintf(stderr, "sfp-worker: %s\n", err.msg);
		return sfp_exit_code(rc);
	}
	char dirbuf[SFP_CFG_PATH];
	snprintf(dirbuf, sizeof dirbuf, "%s", config);
	const char *config_dir = dirname(dirbuf);

	if ((rc = sfp_trainer_create(&t, &cfg, config_dir, &err)) < 0)
		goto out;
	if (resume) {
		char path[SFP_CFG_PATH + 64];
		if ((rc = sfp_checkpoint_resolve(resume, path, sizeof path, &err)) < 0 ||
		    (rc = sfp_trainer_load(t, path, &err)) < 0)
			goto out;
		if (!quiet)
			fprintf(stderr, "resumed from '%s' at step %" PRId64 "\n", path,
				sfp_trainer_step(t));
	}
	sfp_model *m = sfp_trainer_model(t);
	size_t np;
	sfp_model_params(m, &np);
	if (!quiet)
		fprintf(stderr, "model: %d layers, %zu parameters, %.1f MiB of arenas\n",
			sfp_model_n_layers(m), np, (double)sfp_model_bytes(m) / 1048576.0);
	progress_ctx pc = {cfg.train.epochs, quiet, 0};
	sfp_trainer_on_progress(t, on_progress, &pc);
	rc = sfp_trainer_run(t, &err);
out:
	if (rc < 0)
		fprintf(stderr, "sfp-worker: %s\n", err.msg);
	sfp_trainer_free(t);
	return rc < 0 ? sfp_exit_code(rc) : EXIT_OK;
}
