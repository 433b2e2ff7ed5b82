/*
 * main.c -- sfp-worker: argv -> config -> lib/nn trainer; progress on
 * stderr. One process trains alone, or one rank under mpirun.
 *
 *   sfp-worker --config FILE [--set section.key=value ...] [--resume CKPT|DIR]
 *
 * Exit codes: 0 trained, 2 usage or bad config/input, 1 other failure
 * (including a full disk while writing a checkpoint or the metrics log).
 *
 * SFP_FAULT_FLIP=RANK:N[:BIT] (fault tests, docs/reliability.md): rank RANK
 * flips one bit (BIT modulo the message's bits; default its middle) of the
 * Nth message it sends to another rank.
 */
#include <inttypes.h>
#include <math.h>
#include <libgen.h>
#include <signal.h>
#include <unistd.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "sfp/config.h"
#include "sfp/train.h"
#include "sfp/transport.h"

#define MAX_SETS 256


static const char *usage_text =
	"usage: sfp-worker --config FILE [--set section.key=value ...] [--resume CKPT|DIR]\n"
	"                  [--daemon URL]\n"
	"\n"
	"  --config FILE        the job's YAML config (docs/config.md)\n"
	"  --set K=V            override one config key, e.g. --set train.epochs=3\n"
	"  --resume CKPT|DIR    continue from a checkpoint (a folder: its newest)\n"
	"  --daemon URL         report to sfpd at URL (tcp://HOST:PORT), as daemon.address\n"
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
	if (p->is_eval && p->tokens) {
		fprintf(stderr,
			"epoch %" PRId64 "/%d  step %" PRId64 "  val_loss %.4f  perplexity %.2f  "
			"token_acc %.4f\n",
			p->epoch + 1, c->epochs, p->step, (double)p->loss, exp((double)p->loss),
			(double)p->test_acc);
		return;
	}
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
	char wire[128] = "";
	if (p->wire_bytes_per_step > 0)
		snprintf(wire, sizeof wire,
			 "  wire %.2f MB/step (%.1fx, codec %.1f ms, comm %.1f ms, exposed %.1f ms)",
			 p->wire_bytes_per_step * 1e-6, p->raw_bytes_per_step / p->wire_bytes_per_step,
			 p->codec_ms_per_step, p->comm_ms_per_step, p->exposed_comm_ms_per_step);
	fprintf(stderr,
		"epoch %" PRId64 "/%d  step %" PRId64 "/%" PRId64
		"  loss %.4f  acc %.3f  lr %.3g%s%s  %.0f %s/s  ETA %s\n",
		p->epoch + 1, c->epochs, p->step, p->total_steps, (double)p->loss,
		(double)p->train_acc, (double)p->lr, bits, wire, p->samples_per_s,
		p->tokens ? "tokens" : "samples", eta);
}

static void on_notice(void *user, const char *msg)
{
	const progress_ctx *c = user;
	if (!c->quiet)
		fprintf(stderr, "sfp-worker: %s\n", msg);
}

static int g_rank = -1;

/* mpirun stops the other ranks with SIGTERM when one fails: say so. */
static void on_term(int sig)
{
	char msg[160];
	int n = snprintf(msg, sizeof msg,
			 "sfp-worker rank %d: stopped by signal %d (the launcher ends the job when "
			 "a rank fails or is killed)\n",
			 g_rank, sig);
	if (n > 0)
		(void)!write(2, msg, (size_t)n);
	_exit(1);
}

/* Fault injection notices go to stderr on every rank, quiet or not. */
static void on_fault(void *user, const char *msg)
{
	(void)user;
	fprintf(stderr, "sfp-worker rank %d: %s\n", g_rank, msg);
}

/* What the command line asks for. */
typedef struct worker_opts {
	const char *config, *resume, *daemon;
	const char *sets[MAX_SETS];
	int nsets, quiet;
} worker_opts;

/* argv -> opts: -1 to go on, else the exit code (--help, --version, bad usage). */
static int parse_args(int argc, char **argv, worker_opts *o)
{
	memset(o, 0, sizeof *o);
	for (int i = 1; i < argc; i++) {
		const char *a = argv[i];
		if (!strcmp(a, "--help") || !strcmp(a, "-h")) {
			fputs(usage_text, stdout);
			return SFP_EXIT_OK;
		} else if (!strcmp(a, "--version")) {
			printf("sfp-worker %s\n", SFP_VERSION);
			return SFP_EXIT_OK;
		} else if (!strcmp(a, "--quiet")) {
			o->quiet = 1;
		} else if (!strcmp(a, "--config") || !strcmp(a, "--set") || !strcmp(a, "--resume") ||
			   !strcmp(a, "--daemon")) {
			if (i + 1 >= argc) {
				fprintf(stderr, "sfp-worker: %s needs a value\n%s", a, usage_text);
				return SFP_EXIT_USAGE;
			}
			const char *v = argv[++i];
			if (!strcmp(a, "--config"))
				o->config = v;
			else if (!strcmp(a, "--daemon"))
				o->daemon = v;
			else if (!strcmp(a, "--resume"))
				o->resume = v;
			else if (o->nsets == MAX_SETS) {
				fprintf(stderr, "sfp-worker: more than %d --set options\n", MAX_SETS);
				return SFP_EXIT_USAGE;
			} else
				o->sets[o->nsets++] = v;
		} else {
			fprintf(stderr, "sfp-worker: unexpected argument '%s'\n%s", a, usage_text);
			return SFP_EXIT_USAGE;
		}
	}
	if (!o->config) {
		fprintf(stderr, "sfp-worker: --config FILE is required\n%s", usage_text);
		return SFP_EXIT_USAGE;
	}
	return -1;
}

/* opts -> config: the file, the overrides, --daemon, and the job's name at
 * the daemon (default: the config's file name). -1 to go on, else the exit
 * code, said. */
static int make_config(const worker_opts *o, sfp_config *cfg)
{
	sfp_error err;
	int rc = sfp_config_load_all(cfg, o->config, o->sets, o->nsets, &err);
	if (rc < 0) {
		fprintf(stderr, "sfp-worker: %s\n", err.msg);
		return sfp_exit_code(rc);
	}
	if (o->daemon && (size_t)snprintf(cfg->daemon.address, sizeof cfg->daemon.address, "%s",
					  o->daemon) >= sizeof cfg->daemon.address) {
		fprintf(stderr, "sfp-worker: --daemon: address too long\n");
		return SFP_EXIT_USAGE;
	}
	if (!cfg->daemon.job[0]) {
		char base[SFP_CFG_PATH];
		snprintf(base, sizeof base, "%s", o->config);
		char *b = basename(base), *dot = strrchr(b, '.');
		if (dot && dot != b)
			*dot = 0;
		snprintf(cfg->daemon.job, sizeof cfg->daemon.job, "%s", b);
	}
	return -1;
}

/*
 * The trainer, then resuming (collective for pipeline stages). Set-up fails
 * the same way on every rank (a config or layout error) or on a few (a
 * missing file on one host): after each phase the ranks agree, the first
 * failing rank says why, and all stop with its code -- one message, no rank
 * left waiting for the others. *agreed is set when they stopped that way.
 */
static int set_up(const worker_opts *o, const sfp_config *cfg, sfp_transport *tr, int world,
		  progress_ctx *pc, sfp_trainer **t, int *agreed, sfp_error *err)
{
	char dirbuf[SFP_CFG_PATH], path[SFP_CFG_PATH + 64];
	snprintf(dirbuf, sizeof dirbuf, "%s", o->config);
	const char *config_dir = dirname(dirbuf);
	*agreed = 0;
	for (int phase = 0; phase < 2; phase++) {
		int rc = SFP_OK;
		if (phase == 0) {
			rc = sfp_trainer_create_dist(t, cfg, config_dir, tr, err);
			if (rc == SFP_OK) /* resuming may have things to say */
				sfp_trainer_on_notice(*t, on_notice, pc);
		} else if (o->resume &&
			   (rc = sfp_trainer_resume(*t, o->resume, path, sizeof path, err)) == SFP_OK &&
			   !pc->quiet) {
			fprintf(stderr, "resumed from '%s' at step %" PRId64 "\n", path,
				sfp_trainer_step(*t));
		}
		if (world > 1) {
			int first;
			if ((rc = sfp_job_agree(rc, g_rank, &first)) < 0) {
				if (first == g_rank)
					fprintf(stderr, "sfp-worker: %s (every rank stops)\n", err->msg);
				*agreed = 1;
				return rc;
			}
		}
		if (rc < 0)
			return rc;
	}
	return SFP_OK;
}

static void say_layout(sfp_trainer *t, sfp_transport *tr, int world)
{
	sfp_model *m = sfp_trainer_model(t);
	size_t np;
	sfp_model_params(m, &np);
	int stage, replica, stages, replicas;
	sfp_trainer_topology(t, &stage, &replica, &stages, &replicas);
	int buckets, overlapped;
	sfp_trainer_exchange(t, &buckets, &overlapped);
	char grads[96] = "";
	if (buckets)
		snprintf(grads, sizeof grads, ", gradients in %d bucket%s%s", buckets,
			 buckets > 1 ? "s" : "", overlapped ? " behind backward" : " after backward");
	if (world > 1)
		fprintf(stderr, "job: %d ranks = %d data-parallel replicas x %d pipeline "
				"stages, transport %s%s\n",
			world, replicas, stages, sfp_transport_name(tr), grads);
	fprintf(stderr, "model%s: %d layers, %zu parameters, %.1f MiB of arenas\n",
		stages > 1 ? " (stage 0)" : "", sfp_model_n_layers(m), np,
		(double)sfp_model_bytes(m) / 1048576.0);
}

/* opts -> a trained model: alone, or as one rank of an MPI job. */
static int run(const worker_opts *o, int *argc, char ***argv)
{
	static sfp_config cfg;
	int code = make_config(o, &cfg);
	if (code >= 0)
		return code;
	sfp_error err;
	sfp_trainer *t = NULL;
	sfp_transport *tr = NULL;
	int rc = SFP_OK, mpi = sfp_job_launched(), world = 1, agreed = 0;
	progress_ctx pc = {cfg.train.epochs, o->quiet, 0};
	if (mpi) {
		sfp_job_start(argc, argv, &g_rank, &world);
		signal(SIGTERM, on_term);
		if (g_rank != 0)
			pc.quiet = 1;
		sfp_job_transport jt = {.nng = cfg.parallel.transport == SFP_TRANSPORT_NNG,
					.ipc = cfg.parallel.nng_endpoint == SFP_NNG_IPC,
					.nng_port = cfg.parallel.nng_port,
					.timeout_s = cfg.parallel.timeout_s};
		if ((rc = sfp_transport_open_job(&jt, &tr, &err)) < 0 ||
		    (rc = sfp_transport_fault_from_env(tr, on_fault, NULL, &err)) < 0)
			goto out;
	}
	if ((rc = set_up(o, &cfg, tr, world, &pc, &t, &agreed, &err)) < 0)
		goto out;
	if (!pc.quiet)
		say_layout(t, tr, world);
	sfp_trainer_on_progress(t, on_progress, &pc);
	rc = sfp_trainer_run(t, &err);
out:
	if (agreed) {
		/* every rank stops; the first that failed has said why (and the
		 * launcher's SIGTERM to the others needs no second message) */
		signal(SIGTERM, SIG_DFL);
	} else if (rc < 0) {
		if (world > 1)
			fprintf(stderr, "sfp-worker rank %d: %s\n", g_rank, err.msg);
		else
			fprintf(stderr, "sfp-worker: %s\n", err.msg);
	}
	sfp_trainer_free(t);
	if (rc < 0 && world > 1 && !agreed) /* the other ranks may be waiting on this one */
		sfp_job_abort(sfp_exit_code(rc));
	sfp_transport_close(tr);
	if (mpi)
		sfp_job_end();
	return rc < 0 ? sfp_exit_code(rc) : SFP_EXIT_OK;
}

int main(int argc, char **argv)
{
	worker_opts o;
	int code = parse_args(argc, argv, &o);
	return code >= 0 ? code : run(&o, &argc, &argv);
}
