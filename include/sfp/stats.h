/*
 * sfp/stats.h -- the daemon's store of jobs, workers and per-step history,
 * its append-only history file, and its renderers (Prometheus text, JSON).
 *
 * Model. A job (named by the workers) has workers (one per MPI rank) and
 * layers; each layer has up to two tensor kinds (weights, activations). The
 * store keeps, per job, one series of job points (loss, footprint, byte
 * counters by step) and, per (layer, kind), one series of width points
 * (packing widths e, m and learned real widths n_e, n_m by step). Reports
 * from several ranks for the same step merge into one point: loss,
 * footprint, n_e and n_m are averaged, e and m take the widest, counters
 * are the job's totals when the point was last updated.
 *
 * Bounded memory. Every series holds at most `max_points` points. When a
 * series is full it is downsampled, never truncated: every other point is
 * dropped and the series' stride doubles, so the series always spans the
 * whole run at uniform resolution, plus the newest point (which is kept
 * even between strides so live views are never stale). The number of jobs,
 * workers per job and layers per job is bounded too (opts), so
 * sfp_stats_memory_bound() is a hard upper limit of what the store holds.
 *
 * History file. With a path, every register, report and goodbye is
 * appended as one length-prefixed record with a CRC32C (format in
 * docs/sfpd.md) before it is applied, and sfp_stats_open() replays the
 * file, so a restarted daemon has its history back. A torn tail (a crash
 * mid-write) is truncated, a corrupt record in the middle is skipped and
 * counted; neither is fatal. A file that is not a history file is refused
 * and left untouched. Heartbeats are not written (they carry no history).
 *
 * Ownership: the store copies every string and array it is given; nothing
 * passed in is kept. One thread uses a store at a time (the daemon's loop).
 *
 * Who counts rejections: the ingestion calls count their own rejections
 * (unregistered sender, malformed content, a limit reached) in the drop
 * counters; the caller counts only what it rejects before calling
 * (sfp_stats_count_drop: oversize, malformed encoding, bad token, version).
 */
#ifndef SFP_STATS_H
#define SFP_STATS_H

#include <stddef.h>
#include <stdint.h>

#include "sfp/common.h"

#ifdef __cplusplus
extern "C" {
#endif

/* Longest job or layer name, in bytes (names are printable ASCII). */
#define SFP_STATS_NAME_MAX 63
/* Ranks are 0..SFP_STATS_MAX_RANK-1. */
#define SFP_STATS_MAX_RANK 4096

/* ---- growable strings (and caller buffers) ------------------------------ */
/*
 * Output of the renderers. A growable string (sfp_strbuf_init) allocates
 * as it goes, up to `max` bytes; a fixed one (sfp_strbuf_init_fixed) writes
 * into the caller's buffer and never allocates. Either way an append that
 * does not fit sets `err` (SFP_ENOMEM or SFP_ENOSPC) and later appends do
 * nothing, so a renderer checks once at the end. The text is always
 * NUL-terminated (when cap > 0).
 */
typedef struct sfp_strbuf {
	char *p;
	size_t len, cap;
	size_t max; /* growable: largest size it may reach */
	int fixed;  /* 1: p is the caller's and never reallocated */
	int err;    /* first failure, 0 while every append fitted */
} sfp_strbuf;

/* Growable, empty, at most max bytes (0: 64 MiB). Release with _release. */
void sfp_strbuf_init(sfp_strbuf *b, size_t max);
/* Over the caller's buf[0..cap); nothing to release. */
void sfp_strbuf_init_fixed(sfp_strbuf *b, char *buf, size_t cap);
void sfp_strbuf_release(sfp_strbuf *b);
void sfp_strbuf_reset(sfp_strbuf *b);
void sfp_strbuf_append(sfp_strbuf *b, const void *data, size_t n);
void sfp_strbuf_puts(sfp_strbuf *b, const char *s);
void sfp_strbuf_printf(sfp_strbuf *b, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
/* s as a JSON string, quotes included. */
void sfp_strbuf_json_str(sfp_strbuf *b, const char *s);
/* A JSON number, or null for NaN and infinities (JSON has neither). */
void sfp_strbuf_json_num(sfp_strbuf *b, double v);
/* Hand the text over: returns p (the caller frees it) and empties b.
 * Growable buffers only; NULL when b->err is set. */
char *sfp_strbuf_take(sfp_strbuf *b, size_t *len);

/* ---- the store ----------------------------------------------------------- */
typedef struct sfp_stats sfp_stats;

typedef enum sfp_stats_kind {
	SFP_STATS_WEIGHTS = 0,
	SFP_STATS_ACTIVATIONS = 1,
	SFP_STATS_KINDS = 2
} sfp_stats_kind;

/* "weights" / "activations"; parse returns the kind or SFP_EINVAL. */
const char *sfp_stats_kind_name(sfp_stats_kind k);
int sfp_stats_kind_parse(const char *name);

/* Why a message from a worker was dropped. */
typedef enum sfp_stats_drop {
	SFP_STATS_DROP_OVERSIZE = 0,     /* larger than the listener accepts */
	SFP_STATS_DROP_MALFORMED = 1,    /* undecodable, or content out of range */
	SFP_STATS_DROP_UNREGISTERED = 2, /* from a (job, rank) that never registered */
	SFP_STATS_DROP_BAD_TOKEN = 3,    /* wrong or missing job token */
	SFP_STATS_DROP_VERSION = 4,      /* protocol version not understood */
	SFP_STATS_DROP_LIMIT = 5,        /* a job, worker or layer beyond the store's limits */
	SFP_STATS_DROPS = 6
} sfp_stats_drop;

/* "oversize", "malformed", "unregistered", "bad_token", "version", "limit". */
const char *sfp_stats_drop_name(sfp_stats_drop reason);

typedef struct sfp_stats_opts {
	uint32_t max_points;    /* per series (>= 16); default 4096 */
	uint32_t max_jobs;      /* default 8 */
	uint32_t max_workers;   /* per job; default 1024 (<= SFP_STATS_MAX_RANK) */
	uint32_t max_layers;    /* per job; default 256 */
	uint64_t dead_after_ns; /* silence after which a worker is dead; default 30 s */
	const sfp_log *log;     /* recovery and history-write messages; may be NULL */
} sfp_stats_opts;

void sfp_stats_opts_default(sfp_stats_opts *o);

/* Largest number of bytes a store with these options ever holds in its
 * jobs, workers, layers and series (sfp_stats_memory_bytes never exceeds it). */
uint64_t sfp_stats_memory_bound(const sfp_stats_opts *o);

/* What opening the history file found (see sfp_stats_recovery_info()). */
typedef struct sfp_stats_recovery {
	uint64_t records;          /* records replayed */
	uint64_t corrupt_records;  /* damaged stretches in the middle, skipped */
	uint64_t skipped_bytes;    /* bytes in those stretches */
	uint64_t rejected_records; /* intact, but the store refused them (e.g. a report
	                              whose worker's register record was lost) */
	uint64_t truncated_bytes;  /* torn or damaged tail, cut off */
	uint64_t file_bytes;       /* size after recovery */
} sfp_stats_recovery;

/*
 * Open a store. history_path NULL: memory only. Otherwise the file is
 * created if missing, replayed if present (see the top of this file), and
 * then appended to. opts NULL: defaults. Errors: SFP_EINVAL (bad options),
 * SFP_ECORRUPT (not a history file), SFP_EVERSION, SFP_EIO, SFP_ENOMEM. On
 * success *out is the caller's; free it with sfp_stats_close.
 */
int sfp_stats_open(sfp_stats **out, const char *history_path, const sfp_stats_opts *opts,
                   sfp_error *err);
/* Flush and close the history file and free the store. NULL is fine. */
void sfp_stats_close(sfp_stats *s);

/*
 * A worker announces itself: (job, rank) with its place in the grid and the
 * names of the layers it holds (n_layers entries, copied; a name may repeat,
 * so the layer of every tensor can be passed as it is). Registering again
 * updates the worker and marks it up (a restarted worker does this; its
 * counters restart from zero, which the store notices). Errors: SFP_ECORRUPT
 * for a bad name or rank (counted as malformed), SFP_ERANGE for a limit
 * (counted as limit).
 */
int sfp_stats_register(sfp_stats *s, const char *job, uint32_t rank, uint32_t replica,
                       uint32_t stage, uint32_t n_layers, const char *const *layer_names,
                       uint64_t now_ns, sfp_error *err);

/* The widths of one tensor (layer, kind) in a report. */
typedef struct sfp_stats_width {
	const char *layer; /* a layer name (need not have been registered) */
	sfp_stats_kind kind;
	uint32_t e, m;  /* packing widths: e in 1..8, m in 0..23 */
	float n_e, n_m; /* learned real widths (NaN when the policy has none) */
	uint64_t count; /* values in the tensor */
} sfp_stats_width;

/*
 * What a worker sends every report_every steps (the fields of the
 * protocol's Report, proto/sfp.proto). `samples` counts the samples trained
 * since this worker's previous report. The byte and time counters are
 * totals since the worker started (the sum of a Report's Traffic entries);
 * a value lower than the last one means the worker restarted, and the store
 * keeps the job's totals monotonic across that.
 */
typedef struct sfp_worker_report {
	const char *job;
	uint32_t rank;
	int64_t step;                    /* >= 0 */
	double loss;                     /* NaN: this rank computes no loss (a pipeline stage) */
	double footprint_bits_per_value; /* stored bits per value of its tensors; NaN: unknown */
	uint64_t samples;                /* samples trained since the previous report */
	uint64_t raw_bytes, wire_bytes;  /* tensor bytes sent: as float32, and as encoded */
	uint64_t encode_ns, decode_ns, comm_ns;
	const sfp_stats_width *widths; /* n_widths entries (copied) */
	uint32_t n_widths;
} sfp_worker_report;

/* Apply one report and mark the worker up. Errors: SFP_ENOENT for an
 * unregistered sender (counted as unregistered), SFP_ECORRUPT for content
 * out of range (counted as malformed). A width for a layer beyond
 * max_layers is left out (counted as limit) and the rest applied. */
int sfp_stats_report(sfp_stats *s, const sfp_worker_report *r, uint64_t now_ns, sfp_error *err);

/* The worker is alive. SFP_ENOENT (counted) when it never registered. */
int sfp_stats_heartbeat(sfp_stats *s, const char *job, uint32_t rank, uint64_t now_ns);

/* The worker left on purpose (state "left", never "dead"). SFP_ENOENT
 * (counted) when it never registered. */
int sfp_stats_goodbye(sfp_stats *s, const char *job, uint32_t rank, uint64_t now_ns);

/* Time passes: workers silent for dead_after_ns become dead; a pending
 * history write is synced to disk. Returns how many workers died now. */
int sfp_stats_tick(sfp_stats *s, uint64_t now_ns);

/* A message the caller rejected before it reached the store. */
void sfp_stats_count_drop(sfp_stats *s, sfp_stats_drop reason);

/* ---- looking inside (tests, the daemon) ---------------------------------- */
typedef enum sfp_stats_state {
	SFP_WORKER_UP = 0,
	SFP_WORKER_DEAD = 1,  /* silent for longer than dead_after_ns */
	SFP_WORKER_LEFT = 2,  /* said goodbye */
	SFP_WORKER_STALE = 3, /* known from the history file, not heard from since */
	SFP_WORKER_STATES = 4
} sfp_stats_state;

const char *sfp_stats_state_name(sfp_stats_state st);

uint64_t sfp_stats_drops(const sfp_stats *s, sfp_stats_drop reason);
uint64_t sfp_stats_memory_bytes(const sfp_stats *s);
const sfp_stats_recovery *sfp_stats_recovery_info(const sfp_stats *s);
/* SFP_OK with *state set, SFP_ENOENT when unknown. */
int sfp_stats_worker_state(const sfp_stats *s, const char *job, uint32_t rank,
                           sfp_stats_state *state);
/* Newest step of a job (-1 when it has none); SFP_ENOENT when unknown. */
int sfp_stats_job_step(const sfp_stats *s, const char *job, int64_t *step);
/* Points held in the job's series, or in (layer, kind)'s (layer non-NULL);
 * 0 when unknown. */
uint32_t sfp_stats_series_len(const sfp_stats *s, const char *job, const char *layer,
                              sfp_stats_kind kind);

/*
 * Replay a history image (the bytes of a history file) into s, as opening
 * that file would, without writing anything: for tests and fuzzing. *valid
 * is where the file would be cut (the end of the last good record).
 */
int sfp_stats_replay(sfp_stats *s, const void *buf, size_t len, size_t *valid,
                     sfp_stats_recovery *rec, sfp_error *err);

/* ---- renderers ------------------------------------------------------------ */
/*
 * Every renderer appends to `out` and returns SFP_OK, or an error that
 * out->err caused or a lookup failure (SFP_ENOENT: no such job or layer,
 * the message names it). `job` NULL or "" means the most recently active
 * job. `since`: only points with step >= since (0: all).
 */

/* Prometheus text exposition format 0.0.4 (docs/sfpd.md lists the names). */
int sfp_stats_render_prometheus(const sfp_stats *s, uint64_t now_ns, sfp_strbuf *out);
/* /api/v1/job: the job's latest values, its layers and job series. With no
 * job at all: {"job":null,"jobs":[]}. */
int sfp_stats_render_job(const sfp_stats *s, const char *job, int64_t since, uint64_t now_ns,
                         sfp_strbuf *out, sfp_error *err);
/* /api/v1/workers: every worker of the job with its state and counters. */
int sfp_stats_render_workers(const sfp_stats *s, const char *job, uint64_t now_ns, sfp_strbuf *out,
                             sfp_error *err);
/* /api/v1/bitlengths: width series of one layer (both kinds) or of every
 * layer (layer NULL or ""). */
int sfp_stats_render_bitlengths(const sfp_stats *s, const char *job, const char *layer,
                                int64_t since, sfp_strbuf *out, sfp_error *err);

#ifdef __cplusplus
}
#endif
#endif
