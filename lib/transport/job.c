/*
 * job.c -- an MPI job's set-up, for sfp-worker: is this process a rank,
 * MPI start and end, the transport the job asks for (nng endpoints are
 * made from the host name, the launcher's environment and the base port,
 * then exchanged over MPI), the ranks agreeing on a set-up failure, and
 * the fault tests' SFP_FAULT_FLIP.
 *
 * Why the endpoints go over MPI: nng needs every rank's URL before it can
 * dial, and the launcher has already connected the ranks once; one
 * MPI_Allgather of fixed-size strings is the whole exchange.
 */
#include <limits.h>
#include <mpi.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "sfp/transport.h"

#define URL_MAX 256

int sfp_job_launched(void)
{
	return getenv("OMPI_COMM_WORLD_SIZE") || getenv("PMI_SIZE") || getenv("PMIX_RANK");
}

void sfp_job_start(int *argc, char ***argv, int *rank, int *world)
{
	/* serialized: the gradient exchange may run on a thread of its own
	 * behind backward (never two threads in MPI at once) */
	int provided = MPI_THREAD_SINGLE;
	MPI_Init_thread(argc, argv, MPI_THREAD_SERIALIZED, &provided);
	MPI_Comm_rank(MPI_COMM_WORLD, rank);
	MPI_Comm_size(MPI_COMM_WORLD, world);
}

void sfp_job_abort(int exit_code)
{
	MPI_Abort(MPI_COMM_WORLD, exit_code);
}

void sfp_job_end(void)
{
	MPI_Finalize();
}

int sfp_job_agree(int rc, int rank, int *first_rank)
{
	int mine[2] = {rc < 0 ? rank : INT_MAX, rc}, first[2];
	MPI_Allreduce(mine, first, 1, MPI_2INT, MPI_MINLOC, MPI_COMM_WORLD);
	*first_rank = first[0] == INT_MAX ? -1 : first[0];
	if (first[0] == INT_MAX)
		return SFP_OK;
	return first[1] < 0 ? first[1] : SFP_EINVAL; /* MINLOC carries the failing rank's code */
}

/* This rank's nng endpoint: tcp://<host name>:<nng_port + local rank>, or
 * ipc://<TMPDIR>/sfp-<job>-<launcher pid>-<rank>.ipc (one host). */
static void nng_url(const sfp_job_transport *o, int rank, char *url)
{
	if (o->ipc) {
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
	snprintf(url, URL_MAX, "tcp://%s:%d", host, o->nng_port + (lr ? atoi(lr) : rank));
}

int sfp_transport_open_job(const sfp_job_transport *o, sfp_transport **tr, sfp_error *err)
{
	*tr = NULL;
	if (!o->nng)
		return sfp_transport_open_mpi(tr, err);
	int rank, size, rc;
	MPI_Comm_rank(MPI_COMM_WORLD, &rank);
	MPI_Comm_size(MPI_COMM_WORLD, &size);
	char mine[URL_MAX] = "", *all = calloc((size_t)size, URL_MAX);
	const char **urls = calloc((size_t)size, sizeof *urls);
	if (!all || !urls) {
		rc = sfp_error_set(err, SFP_ENOMEM, "out of memory");
		goto out;
	}
	nng_url(o, rank, mine);
	MPI_Allgather(mine, URL_MAX, MPI_CHAR, all, URL_MAX, MPI_CHAR, MPI_COMM_WORLD);
	for (int r = 0; r < size; r++)
		urls[r] = all + (size_t)r * URL_MAX;
	rc = sfp_transport_open_nng(tr, rank, size, urls, o->timeout_s, err);
out:
	free(urls);
	free(all);
	return rc;
}

int sfp_transport_fault_from_env(sfp_transport *t, sfp_transport_notify_fn notify, void *user,
				 sfp_error *err)
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
	if (rank == (unsigned long long)sfp_transport_rank(t))
		sfp_transport_inject_flip(t, nth, bit, notify, user);
	return SFP_OK;
}
