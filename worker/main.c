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
#include <limits.h>
#include <libgen.h>
#include <mpi.h>
#include <signal.h>
#include <unistd.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "sfp/config.h"
#include "sfp/nn.h"
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
		snprintf(wire, sizeof wire, "  wire %.2f MB/step (%.1fx, codec %.1f ms, comm %.1f ms)",
			 p->wire_bytes_per_step * 1e-6, p->raw_bytes_per_step / p->wire_bytes_per_step,
			 p->codec_ms_per_step, p->comm_ms_per_step);
	fprintf(stderr,
		"epoch %" PRId64 "/%d  step %" PRId64 "/%" PRId64
		"  loss %.4f  acc %.3f  lr %.3g%s%s  %.0f samples/s  ETA %s\n",
		p->epoch + 1, c->epochs, p->step, p->total_steps, (double)p->loss,
		(double)p->train_acc, (double)p->lr, bits, wire, p->samples_per_s, eta);
}

static void on_notice(void *user, const char *msg)
{
	const progress_ctx *c = user;
	if (!c->quiet)
		fprintf(stderr, "sfp-worker: %s\n", msg);
}

/* Started by an MPI launcher (mpirun, srun)? Then this process is one rank. */
static int under_mpi_launcher(void)
{
	return getenv("OMPI_COMM_WORLD_SIZE") || getenv("PMI_SIZE") || getenv("PMIX_RANK");
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

/* SFP_FAULT_FLIP=RANK:N[:BIT]: arm the transport's bit flip on that rank. */
static int arm_fault(sfp_transport *tr, sfp_error *err)
{
	const char *v = getenv("SFP_FAULT_FLIP"), *p;
	if (!v || !*v)
		return SFP_OK;
	char *end;
	unsigned long long rank = strtoull(v, &end, 10), nth = 0, bit = UINT64_MAX;
	int ok = end != v && *end == ':';
	if (ok) {
		nth = strtoull(p = end + 1, &end, 10);
		ok = end != p && nth > 0;
	}
	if (ok && *end == ':') {
		bit = strtoull(p = end + 1, &end, 10);
		ok = end != p;
	}
	if (!ok || *end)
		return sfp_error_set(err, SFP_EINVAL,
				     "SFP_FAULT_FLIP='%s': expected RANK:N[:BIT] with N >= 1", v);
	if (rank == (unsigned long long)g_rank)
		sfp_transport_inject_flip(tr, nth, bit, on_fault, NULL);
	return SFP_OK;
}

#define URL_MAX 256

/* This rank's nng endpoint: tcp://<host name>:<nng_port + local rank>, or
 * ipc://<TMPDIR>/sfp-<job>-<rank>.ipc (one host). */
static void nng_url(const sfp_cfg_parallel *pc, int rank, char *url)
{
	if (pc->nng_endpoint == SFP_NNG_IPC) {
		const char *tmp = getenv("TMPDIR"), *job = getenv("OMPI_COMM_WORLD_JOBID");
		if (!job)
			job = getenv("SLURM_JOB_ID");
		snprintf(url, URL_MAX, "ipc://%s/sfp-%s-%ld-%d.ipc", tmp && *tmp ? tmp : "/tmp",
			 job ? job : "job", (long)getppid(), rank);
		return;
	}
	char host[128] = "localhost";
	gethostname(host, sizeof host - 1);
	const char *lr = getenv("OMPI_COMM_WORLD_LOCAL_RANK");
	if (!lr)
		lr = getenv("SLURM_LOCALID");
	snprintf(url, URL_MAX, "tcp://%s:%d", host, pc->nng_port + (lr ? atoi(lr) : rank));
}

/* An MPI job's transport: MPI itself, or nng with the endpoints exchanged
 * over MPI (every rank listens on its own and dials the others). */
static int open_transport(const sfp_config *cfg, sfp_transport **tr, sfp_error *err)
{
	if (cfg->parallel.transport != SFP_TRANSPORT_NNG)
		return sfp_transport_open_mpi(tr, err);
	int rank, size;
	MPI_Comm_rank(MPI_COMM_WORLD, &rank);
	MPI_Comm_size(MPI_COMM_WORLD, &size);
	char mine[URL_MAX] = "", *all = calloc((size_t)size, URL_MAX);
	const char **urls = calloc((size_t)size, sizeof *urls);
	if (!all || !urls) {
		free(all);
		free(urls);
		return sfp_error_set(err, SFP_ENOMEM, "out of memory");
	}
	nng_url(&cfg->parallel, rank, mine);
	MPI_Allgather(mine, URL_MAX, MPI_CHAR, all, URL_MAX, MPI_CHAR, MPI_COMM_WORLD);
	for (int r = 0; r < size; r++)
		urls[r] = all + (size_t)r * URL_MAX;
	int rc = sfp_transport_open_nng(tr, rank, size, urls, cfg->parallel.timeout_s, err);
	free(urls);
	free(all);
	return rc;
}

/* Set-up fails the same way on every rank (a config or layout error) or on
 * a few (a missing file on one host): either way the ranks agree, the
 * first failing rank prints why, and all exit with its code -- one message,
 * no rank left waiting for the others. */
static int agree_on_setup(int rc, const sfp_error *err)
{
	int world, mine[2] = {rc < 0 ? g_rank : INT_MAX, rc}, first[2];
	MPI_Comm_size(MPI_COMM_WORLD, &world);
	MPI_Allreduce(mine, first, 1, MPI_2INT, MPI_MINLOC, MPI_COMM_WORLD);
	if (first[0] == INT_MAX)
		return SFP_OK;
	if (first[0] == g_rank)
		fprintf(stderr, "sfp-worker: %s%s\n", err->msg,
			world > 1 ? " (every rank stops)" : "");
	return first[1] < 0 ? first[1] : SFP_EINVAL; /* MINLOC carries the failing rank's code */
}

int main(int argc, char **argv)
{
	const char *config = NULL, *resume = NULL, *daemon = NULL;
	const char *sets[MAX_SETS];
	int nsets = 0, quiet = 0;
	for (int i = 1; i < argc; i++) {
		const char *a = argv[i];
		if (!strcmp(a, "--help") || !strcmp(a, "-h")) {
			fputs(usage_text, stdout);
			return SFP_EXIT_OK;
		} else if (!strcmp(a, "--version")) {
			printf("sfp-worker %s\n", SFP_VERSION);
			return SFP_EXIT_OK;
		} else if (!strcmp(a, "--quiet")) {
			quiet = 1;
		} else if (!strcmp(a, "--config") || !strcmp(a, "--set") || !strcmp(a, "--resume") ||
			   !strcmp(a, "--daemon")) {
			if (i + 1 >= argc) {
				fprintf(stderr, "sfp-worker: %s needs a value\n%s", a, usage_text);
				return SFP_EXIT_USAGE;
			}
			const char *v = argv[++i];
			if (!strcmp(a, "--config"))
				config = v;
			else if (!strcmp(a, "--daemon"))
				daemon = v;
			else if (!strcmp(a, "--resume"))
				resume = v;
			else if (nsets == MAX_SETS) {
				fprintf(stderr, "sfp-worker: more than %d --set options\n", MAX_SETS);
				return SFP_EXIT_USAGE;
			} else
				sets[nsets++] = v;
		} else {
			fprintf(stderr, "sfp-worker: unexpected argument '%s'\n%s", a, usage_text);
			return SFP_EXIT_USAGE;
		}
	}
	if (!config) {
		fprintf(stderr, "sfp-worker: --config FILE is required\n%s", usage_text);
		return SFP_EXIT_USAGE;
	}

	static sfp_config cfg;
	sfp_error err;
	sfp_trainer *t = NULL;
	sfp_transport *tr = NULL;
	int rc = sfp_config_load_all(&cfg, config, sets, nsets, &err);
	if (rc < 0) {
		fprintf(stderr, "sfp-worker: %s\n", err.msg);
		return sfp_exit_code(rc);
	}
	char dirbuf[SFP_CFG_PATH];
	snprintf(dirbuf, sizeof dirbuf, "%s", config);
	const char *config_dir = dirname(dirbuf);
	if (daemon && (size_t)snprintf(cfg.daemon.address, sizeof cfg.daemon.address, "%s", daemon) >=
			      sizeof cfg.daemon.address) {
		fprintf(stderr, "sfp-worker: --daemon: address too long\n");
		return SFP_EXIT_USAGE;
	}
	if (!cfg.daemon.job[0]) { /* the job's name at the daemon: the config's file name */
		char base[SFP_CFG_PATH];
		snprintf(base, sizeof base, "%s", config);
		char *b = basename(base), *dot = strrchr(b, '.');
		if (dot && dot != b)
			*dot = 0;
		snprintf(cfg.daemon.job, sizeof cfg.daemon.job, "%s", b);
	}

	int mpi = under_mpi_launcher(), world = 1;
	if (mpi) {
		MPI_Init(&argc, &argv);
		MPI_Comm_rank(MPI_COMM_WORLD, &g_rank);
		MPI_Comm_size(MPI_COMM_WORLD, &world);
		signal(SIGTERM, on_term);
		if (g_rank != 0)
			quiet = 1;
		if ((rc = open_transport(&cfg, &tr, &err)) < 0 || (rc = arm_fault(tr, &err)) < 0)
			goto out;
	}
	/* set-up, then resuming (collective for pipeline stages): the ranks
	 * agree after each, so none waits on a rank that already failed */
	char path[SFP_CFG_PATH + 64];
	progress_ctx pc = {cfg.train.epochs, quiet, 0};
	for (int phase = 0; phase < 2; phase++) {
		if (phase == 0) {
			rc = sfp_trainer_create_dist(&t, &cfg, config_dir, tr, &err);
			if (rc == SFP_OK) /* resuming may have things to say */
				sfp_trainer_on_notice(t, on_notice, &pc);
		} else if (resume && (rc = sfp_trainer_resume(t, resume, path, sizeof path, &err)) == SFP_OK &&
			   !quiet) {
			fprintf(stderr, "resumed from '%s' at step %" PRId64 "\n", path,
				sfp_trainer_step(t));
		}
		if (world > 1 && (rc = agree_on_setup(rc, &err)) < 0) {
			/* every rank stops; the first that failed has said why (and the
			 * launcher's SIGTERM to the others needs no second message) */
			signal(SIGTERM, SIG_DFL);
			sfp_trainer_free(t);
			sfp_transport_close(tr);
			MPI_Finalize();
			return sfp_exit_code(rc);
		}
		if (rc < 0)
			goto out;
	}
	sfp_model *m = sfp_trainer_model(t);
	size_t np;
	sfp_model_params(m, &np);
	if (!quiet) {
		int stage, replica, stages, replicas;
		sfp_trainer_topology(t, &stage, &replica, &stages, &replicas);
		if (world > 1)
			fprintf(stderr, "job: %d ranks = %d data-parallel replicas x %d pipeline "
					"stages, transport %s\n",
				world, replicas, stages, sfp_transport_name(tr));
		fprintf(stderr, "model%s: %d layers, %zu parameters, %.1f MiB of arenas\n",
			stages > 1 ? " (stage 0)" : "", sfp_model_n_layers(m), np,
			(double)sfp_model_bytes(m) / 1048576.0);
	}
	sfp_trainer_on_progress(t, on_progress, &pc);
	rc = sfp_trainer_run(t, &err);
out:
	if (rc < 0) {
		if (world > 1)
			fprintf(stderr, "sfp-worker rank %d: %s\n", g_rank, err.msg);
		else
			fprintf(stderr, "sfp-worker: %s\n", err.msg);
	}
	sfp_trainer_free(t);
	if (rc < 0 && world > 1) {
		/* the other ranks may be waiting on this one: end the job now */
		MPI_Abort(MPI_COMM_WORLD, sfp_exit_code(rc));
	}
	sfp_transport_close(tr);
	if (mpi)
		MPI_Finalize();
	return rc < 0 ? sfp_exit_code(rc) : SFP_EXIT_OK;
}
