/*
 * sfp/transport.h -- byte messages between the ranks of one job, behind
 * one interface with two backends (MPI, nng), and the compressed
 * collectives built on it (lib/transport/collective.c).
 *
 * A transport connects `size` ranks numbered 0..size-1. Messages are byte
 * strings addressed by (peer, tag); between one pair of ranks, messages
 * with the same tag arrive in the order they were sent. Every receive has a
 * deadline (the transport's timeout): a peer that died or hangs turns into
 * SFP_ETIMEDOUT or SFP_EPEER with a message naming the rank, never a hang.
 *
 * The backends do not look inside messages. What travels is encoded
 * containers (lib/codec: header + payload, CRC32C), and the receiver
 * validates them like any decoder; see collective.c.
 */
#ifndef SFP_TRANSPORT_H
#define SFP_TRANSPORT_H

#include <stddef.h>
#include <stdint.h>

#include "sfp/codec.h"
#include "sfp/common.h"

#ifdef __cplusplus
extern "C" {
#endif

#define SFP_MAX_RANKS 1024
/* Tags at or above this value are reserved for the collectives. */
#define SFP_TAG_USER_MAX 0x10000

typedef struct sfp_transport sfp_transport;

/* Part k of n items split into `parts` near-equal parts (the first n % parts
 * get one more): how batches split over replicas and micro-batches, and
 * tensors over the members of a ring. */
static inline void sfp_split(size_t n, int parts, int k, size_t *off, size_t *len)
{
	size_t base = n / (size_t)parts, extra = n % (size_t)parts, kk = (size_t)k;
	*off = kk * base + (kk < extra ? kk : extra);
	*len = base + (kk < extra ? 1 : 0);
}

/* What a backend implements. Calls are made one at a time; they may come
 * from different threads (one after the other) when handoff says so. */
typedef struct sfp_transport_ops {
	const char *name;
	/* Send len bytes. May return before the peer has received them; the
	 * caller may reuse buf on return. */
	int (*send)(void *impl, int peer, int tag, const void *buf, size_t len, sfp_error *err);
	/* Receive the next message from (peer, tag) into buf[0..cap); *len is
	 * its size. A message longer than cap is consumed and reported as
	 * SFP_ENOSPC. Waits at most timeout_s (<= 0: forever). */
	int (*recv)(void *impl, int peer, int tag, void *buf, size_t cap, size_t *len,
		    double timeout_s, sfp_error *err);
	/* Send to `to` and receive from `from` at once; never deadlocks when
	 * every rank of a ring calls it together. */
	int (*sendrecv)(void *impl, int to, const void *sbuf, size_t slen, int from, void *rbuf,
			size_t cap, size_t *rlen, int tag, double timeout_s, sfp_error *err);
	/* Optional: the backend's own float32 sum over every rank, in place
	 * (MPI_Allreduce): the uncompressed baseline. NULL when it has none. */
	int (*allreduce_f32)(void *impl, float *x, size_t n, sfp_error *err);
	/* Optional: nonzero when a thread other than the opener may make the
	 * calls (never two at once); NULL: only the opener's thread. */
	int (*handoff)(void *impl);
	void (*close)(void *impl);
} sfp_transport_ops;

/* Wrap a backend (used by the backends' open functions). */
int sfp_transport_wrap(sfp_transport **out, const sfp_transport_ops *ops, void *impl, int rank,
		       int size, sfp_error *err);

/* MPI backend: MPI must be initialised; with MPI_THREAD_SERIALIZED or more
 * another thread may make the calls (sfp_transport_handoff). Rank and size
 * are MPI_COMM_WORLD's. */
int sfp_transport_open_mpi(sfp_transport **out, sfp_error *err);

/*
 * nng backend: rank `rank` of `size` listens on urls[rank] and reaches rank
 * j at urls[j] (tcp://HOST:PORT or ipc:///path). Returns when every peer is
 * connected or the timeout passes (SFP_ETIMEDOUT naming the missing ranks).
 */
int sfp_transport_open_nng(sfp_transport **out, int rank, int size, const char *const *urls,
			   double timeout_s, sfp_error *err);

void sfp_transport_close(sfp_transport *t);
int sfp_transport_rank(const sfp_transport *t);
int sfp_transport_size(const sfp_transport *t);
const char *sfp_transport_name(const sfp_transport *t);
/* Deadline of every receive, in seconds (default 60; <= 0 waits forever). */
void sfp_transport_set_timeout(sfp_transport *t, double seconds);
double sfp_transport_timeout(const sfp_transport *t);
/* May a thread other than the opener's make the calls, one at a time (a
 * gradient exchange running behind backward)? */
int sfp_transport_handoff(const sfp_transport *t);

int sfp_transport_send(sfp_transport *t, int peer, int tag, const void *buf, size_t len,
		       sfp_error *err);
int sfp_transport_recv(sfp_transport *t, int peer, int tag, void *buf, size_t cap, size_t *len,
		       sfp_error *err);
int sfp_transport_sendrecv(sfp_transport *t, int to, const void *sbuf, size_t slen, int from,
			   void *rbuf, size_t cap, size_t *rlen, int tag, sfp_error *err);
/* The backend's float32 sum over every rank (SFP_EUNSUPPORTED without one). */
int sfp_transport_allreduce_f32(sfp_transport *t, float *x, size_t n, sfp_error *err);

/*
 * Fault injection, for the fault tests (tests/faults/, docs/reliability.md):
 * the `nth` message this rank sends from now on (1: the next) leaves with
 * bit `bit % (8 * its length)` flipped (UINT64_MAX: its middle bit); the
 * caller's buffer is untouched.
 * Once. `notify`, if not NULL, gets one line saying which message it was
 * (number, tag, peer, length, bit), when it is sent. nth = 0 disarms.
 */
typedef void (*sfp_transport_notify_fn)(void *user, const char *msg);
void sfp_transport_inject_flip(sfp_transport *t, uint64_t nth, uint64_t bit,
			       sfp_transport_notify_fn notify, void *user);

/* ---- an MPI job's set-up (lib/transport/job.c) -------------------------- */
/* Started by an MPI launcher (mpirun, srun)? Then this process is one rank. */
int sfp_job_launched(void);
/* MPI_Init, then this rank and the world's size. */
void sfp_job_start(int *argc, char ***argv, int *rank, int *world);
/* End the whole job now with `exit_code` (MPI_Abort): the other ranks may be
 * waiting on this one. */
void sfp_job_abort(int exit_code);
/* MPI_Finalize. */
void sfp_job_end(void);

/*
 * Collective: every rank passes its own set-up result `rc`. SFP_OK when all
 * succeeded; else the code of the lowest failing rank, whose number goes to
 * *first_rank (-1 when none failed), so one rank reports and all stop.
 */
int sfp_job_agree(int rc, int rank, int *first_rank);

/* Which transport an MPI job uses (the config's parallel.* keys). */
typedef struct sfp_job_transport {
	int nng;          /* 0: MPI itself; 1: nng, endpoints exchanged over MPI */
	int ipc;          /* nng: ipc endpoints (one host) instead of tcp */
	int nng_port;     /* nng tcp: base port, + local rank */
	double timeout_s; /* nng: connecting to every peer may take this long */
} sfp_job_transport;

/*
 * Collective, after sfp_job_start: the transport `o` asks for. MPI:
 * MPI_COMM_WORLD. nng: each rank listens on its own endpoint --
 * tcp://HOST:(nng_port + local rank) with the local rank from
 * OMPI_COMM_WORLD_LOCAL_RANK or SLURM_LOCALID, or ipc://$TMPDIR/
 * sfp-JOB-PPID-RANK.ipc -- the endpoints are exchanged over MPI and every
 * rank dials the others within timeout_s. *tr is the caller's to
 * sfp_transport_close.
 */
int sfp_transport_open_job(const sfp_job_transport *o, sfp_transport **tr, sfp_error *err);

/*
 * The fault tests' SFP_FAULT_FLIP=RANK:N[:BIT] (docs/reliability.md): on
 * rank RANK, sfp_transport_inject_flip(t, N, BIT, notify, user). Unset or
 * empty: nothing. SFP_EINVAL for a malformed value.
 */
int sfp_transport_fault_from_env(sfp_transport *t, sfp_transport_notify_fn notify, void *user,
				 sfp_error *err);

/* ---- collectives over a group of ranks ---------------------------------- */
/* A group: the world ranks taking part, in ring order, and this rank's
 * position in it (-1 when not a member). */
typedef struct sfp_group {
	int n;
	int me;
	int ranks[SFP_MAX_RANKS];
} sfp_group;

/* Counters, accumulated by every call that moves tensors. */
typedef struct sfp_wire_stats {
	uint64_t raw_bytes;  /* float32 bytes the tensors would take on the wire */
	uint64_t wire_bytes; /* bytes this rank really sent */
	uint64_t messages;
	uint64_t encode_ns, decode_ns, comm_ns;
} sfp_wire_stats;

enum sfp_allreduce_algo {
	SFP_ALLREDUCE_RING = 0,      /* reduce-scatter + all-gather on encoded chunks */
	SFP_ALLREDUCE_ALLGATHER = 1, /* every rank's tensor encoded once, gathered, summed in rank order */
	SFP_ALLREDUCE_NATIVE = 2     /* the backend's float32 sum (MPI_Allreduce), whole world only:
					the uncompressed baseline */
};

/* Plain 16-bit casts instead of containers: the peers the containers are
 * measured against (what DDP's fp16 compression hook sends); the conversions
 * are sfp_f32_to_f16 and friends in codec.h. */
enum sfp_wire_cast { SFP_CAST_NONE = 0, SFP_CAST_FP16 = 1, SFP_CAST_BF16 = 2 };

/* How tensors are encoded on the wire. Lossless when e = 8 and m = 23. */
typedef struct sfp_wire_cfg {
	sfp_params params;   /* container widths, rounding, Gecko */
	int algo;            /* enum sfp_allreduce_algo */
	int error_feedback;  /* keep what quantization dropped and add it next time */
	int cast;            /* enum sfp_wire_cast: raw 16-bit values, no container */
} sfp_wire_cfg;

typedef struct sfp_collective sfp_collective;

/* Scratch for up to `max_count` floats per call (grows if needed). */
int sfp_collective_create(sfp_collective **out, sfp_transport *t, sfp_error *err);
void sfp_collective_free(sfp_collective *c);

/*
 * Sum x[0..n) over the group in place; every member ends with the same bits.
 * Tensors travel as containers encoded with w->params; with error feedback,
 * `residual` (n floats, zero at first, owned by the caller, one per tensor)
 * carries this rank's quantization error into its next call.
 */
int sfp_allreduce(sfp_collective *c, const sfp_group *g, float *x, size_t n,
		  const sfp_wire_cfg *w, float *residual, sfp_wire_stats *st, sfp_error *err);

/* Sum small double vectors exactly as sent (no compression): loss, counts. */
int sfp_allreduce_f64(sfp_collective *c, const sfp_group *g, double *x, int n, sfp_error *err);
/* Copy x[0..n) bytes from group member `root` to every member. */
int sfp_broadcast(sfp_collective *c, const sfp_group *g, int root, void *x, size_t n,
		  sfp_error *err);

/* One tensor to one peer (pipeline activations and their gradients): encode
 * with p, send; receive, validate, decode into x (count must match). */
int sfp_send_tensor(sfp_collective *c, int peer, int tag, const float *x, size_t n,
		    const sfp_params *p, sfp_wire_stats *st, sfp_error *err);
int sfp_recv_tensor(sfp_collective *c, int peer, int tag, float *x, size_t n,
		    sfp_wire_stats *st, sfp_error *err);

#ifdef __cplusplus
}
#endif
#endif
