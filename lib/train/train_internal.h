/*
 * train_internal.h -- the trainer's state, shared by its set-up
 * (trainer.c), the loop (loop.c), checkpoints (checkpoint.c), the metrics
 * log (metrics.c), the distributed half (dist.c) and the daemon link
 * (coord_link.c).
 */
#ifndef SFP_TRAIN_INTERNAL_H
#define SFP_TRAIN_INTERNAL_H

#include <assert.h>
#include <stdio.h>

#include "sfp/train.h"
#include "sfp/quant.h"
#include "sfp/transport.h"

typedef struct sfp_exchange sfp_exchange;

/* Heads tied across pipeline stages that one stage may take part in. */
#define SFP_DIST_MAX_TIES 8

/* Tensor kinds on the wire, for the accounting. */
enum { WIRE_GRADS = 0, WIRE_ACTS = 1, WIRE_AGRADS = 2, WIRE_KINDS = 3 };

typedef struct sfp_dist {
	sfp_transport *tr;     /* not owned */
	sfp_collective *coll;
	int rank, world;       /* world rank and size */
	int stages, replicas;  /* S and D: world = D x S */
	int stage, replica;    /* rank = replica x S + stage */
	int first, last;       /* this stage's layers [first, last) of the config */
	int micro;             /* micro-batches per replica batch (S > 1) */
	int slots;             /* stage inputs kept: micro, or 1F1B's S - s in flight */
	size_t input_bytes;    /* their buffer (mbx) */
	sfp_group world_g;     /* every rank */
	sfp_group dp_g;        /* the replicas of this stage */
	sfp_wire_cfg gwire;    /* weight gradients between replicas */
	sfp_params agrad;      /* activation gradients between stages */
	float *residual;       /* error feedback of the weight gradients */
	float *mbx;            /* stage input of every micro-batch of a step */
	uint8_t *mby;          /* labels of the replica's batch (last stage) */
	float *tokx;           /* token data: the global batch's windows (B x T ids) */
	int32_t *tokt;         /* and their targets (B x T) */
	sfp_wire_stats ws[WIRE_KINDS];
	sfp_wire_stats ws_mark[WIRE_KINDS]; /* at the last log record */
	/* a head tied to an embedding of another stage: each of the two stages
	 * holds the matrix, and they add each other's gradient every step */
	struct sfp_tie {
		int peer;   /* world rank of the other stage of this replica */
		int layer;  /* this stage's layer (embedding, or the head's copy) */
		size_t n;   /* floats of the matrix (first in the layer's parameters) */
	} ties[SFP_DIST_MAX_TIES];
	int nties;
	float *tie_buf; /* the other stage's gradient, the largest tie */
	sfp_exchange *x;        /* gradient buckets and the thread exchanging them */
	uint64_t exposed_ns;    /* time steps waited for the gradient exchange */
	uint64_t exposed_mark;  /* at the last log record */
} sfp_dist;

typedef struct sfp_coord sfp_coord;

/* The link to the coordinator daemon (coord_link.c). */
typedef struct sfp_coord_link {
	sfp_coord *c;   /* NULL: no daemon configured */
	int registered;
	int failures;   /* in a row */
	int skip;       /* reports to skip before trying again */
	int steers;     /* BitWave widths come from the daemon */
	int closing;    /* in sfp_coord_link_close: failures are not announced */
	/* The newest report step, its loss and samples, and the newest step
	 * the daemon answered: a report skipped or lost at the end is sent
	 * once more when the worker closes. */
	int64_t last_step, answered_step;
	double last_loss;
	uint64_t last_samples;
} sfp_coord_link;

struct sfp_trainer {
	sfp_config cfg;
	sfp_model *model;
	sfp_optim *opt;
	sfp_dataset train, test;
	uint32_t *order;
	int64_t order_epoch;
	float *bx;
	uint8_t *by;
	int64_t step, steps_per_epoch, total_steps;
	FILE *metrics;
	sfp_progress_fn on_progress;
	void *user;
	int policy;          /* enum sfp_qpolicy */
	sfp_bitwave bw;      /* policy BITWAVE */
	float *extra;        /* checkpointed state beyond the arenas: widths, BitWave */
	size_t nextra;
	sfp_dist *dist;      /* NULL: one process */
	sfp_coord_link link; /* to the coordinator daemon (coord_link.c) */
	sfp_notice_fn on_notice;
	void *notice_user;
	/* token data (data.dataset tokens): batches are windows of seq_len ids
	 * drawn per step, the loss is per token (sfp_model_loss_tokens) */
	int tokens;
	int seq_len;         /* T: model.input is [T] */
	sfp_tokens tok;
	int32_t *bt;         /* the batch's targets, B x T */
	int resumed_without_residual; /* said once the run starts (sfp_trainer_run) */
	int qtargets;                 /* SFP_QTARGET_* of the bitlength section */
	char config_dir[SFP_CFG_PATH]; /* where the config's relative paths start */
	uint64_t misses_said;         /* sfp_model_container_misses after the last step */
};

/* BitWave decides (locally or from the daemon) only before
 * bitlength.freeze of the run's steps; then the widths hold. */
static inline int sfp_bitwave_live(const struct sfp_trainer *t)
{
	return (double)t->step < (double)t->cfg.bitlength.freeze * (double)t->total_steps;
}

/* loop.c: training samples idx[0..b) into x and y, augmented as
 * data.augment asks for the epoch of the current order (t->order_epoch). */
int sfp_train_gather(sfp_trainer *t, const uint32_t *idx, int b, float *x, uint8_t *y,
		     sfp_error *err);

/* trainer.c, loop.c: the trainer's own files; these are the others'. */

/* checkpoint.c */
/* Floats of state beyond the arenas a checkpoint carries ("extra"). */
size_t sfp_ckpt_extra_count(const sfp_trainer *t);
/* t->extra into the model's widths and the BitWave state (checked first). */
int sfp_ckpt_extra_scatter(sfp_trainer *t, const char *path, sfp_error *err);

/* The SFPK header (docs/checkpoint.md). */
typedef struct ckpt_header {
	char magic[4];
	uint32_t version;
	uint32_t header_bytes;
	uint32_t model_sig;
	int64_t step;
	uint64_t seed;
	uint64_t n_params;
	uint64_t n_bufs; /* buffers, then the extra state (widths, BitWave) */
	uint64_t n_state;
	uint32_t batch_size;
	uint32_t payload_crc;
	uint32_t reserved;
	uint32_t header_crc;
} ckpt_header;
static_assert(sizeof(ckpt_header) == 72, "checkpoint header layout");

/* A checkpoint file read whole, its header and payload checked against
 * their CRCs and its size against the header; payload: the floats. */
typedef struct sfp_ckpt_file {
	ckpt_header h;
	void *data;
	size_t len;
	const void *payload;
} sfp_ckpt_file;
int sfp_ckpt_read(const char *path, sfp_ckpt_file *f, sfp_error *err);
void sfp_ckpt_release(sfp_ckpt_file *f);

/* The steps of `dir`'s ckpt-<step><suffix> files, newest first (*n of
 * them; NULL with *n = 0 when none or out of memory). */
int64_t *sfp_ckpt_steps(const char *dir, const char *suffix, int *n);
/* Pipelined runs' per-stage files (stage_ckpt.c): the newest step at which
 * every stage of the folder saved (-1: none) and the stage count; the whole
 * model's state (parameters, buffers, widths, BitWave, optimizer) of a
 * one-process trainer from them. */
int64_t sfp_ckpt_staged_newest(const char *dir, int *stages);
int sfp_trainer_load_stages(sfp_trainer *t, const char *dir, int64_t step, int stages,
			    char *used, size_t cap, sfp_error *err);
/* The containers of the bitlength section on a model (the trainer's, or a
 * stage's rebuilt from the config). */
int sfp_train_set_containers(const sfp_trainer *t, sfp_model *m, sfp_error *err);
/* mkdir -p, naming the folder on failure. */
int sfp_ckpt_make_dirs(const char *path, sfp_error *err);
/* Save ckpt-<step>.sfpk (a stage: -stage<s>) into checkpoint.dir (collective
 * in a job: replica 0 of each stage writes), keep the newest
 * checkpoint.keep, log it. */
int sfp_ckpt_now(sfp_trainer *t, sfp_error *err);

/* metrics.c: every record function writes one JSON line, nothing when the
 * log is not open (not configured, or not the writer rank). */
int sfp_metrics_open(sfp_trainer *t, sfp_error *err);
void sfp_metrics_close(sfp_trainer *t);
int sfp_metrics_train(sfp_trainer *t, const sfp_progress *p, sfp_error *err);
int sfp_metrics_prune(sfp_trainer *t, const sfp_progress *p, const sfp_prune_summary *ps,
		      sfp_error *err);
int sfp_metrics_eval(sfp_trainer *t, int64_t epoch, float acc, float loss, sfp_error *err);
int sfp_metrics_checkpoint(sfp_trainer *t, const char *path, sfp_error *err);
int sfp_metrics_stage_memory(sfp_trainer *t, const char *schedule, int stage, int slots,
			     uint64_t inputs, uint64_t activations, sfp_error *err);
/* One record per container, then the footprint. */
int sfp_metrics_widths(sfp_trainer *t, sfp_error *err);
/* One record per tensor kind that moved: per-step means over `steps`. */
int sfp_metrics_traffic(sfp_trainer *t, const sfp_wire_stats *ws, double exposed_ms,
			int64_t steps, sfp_error *err);

/* coord_link.c */
int sfp_coord_link_open(sfp_trainer *t, sfp_error *err);
void sfp_coord_link_close(sfp_trainer *t, int ok);
/* At every daemon.report_every-th step (collective): report, apply. */
int sfp_coord_link_step(sfp_trainer *t, double loss, uint64_t samples, sfp_error *err);
void sfp_coord_link_heartbeat(sfp_trainer *t);

/* dist.c */
int sfp_dist_create(sfp_trainer *t, sfp_transport *tr, const sfp_cfg_model *full,
		    const char *config_dir, sfp_cfg_model *stage_cfg, int *max_batch,
		    sfp_error *err);
int sfp_dist_finish_setup(sfp_trainer *t, const char *config_dir, sfp_error *err);
/* Layer i of the stage whose layers start at `first` of the whole model:
 * the whole model's layer (wl) and, for a head tied to an embedding of an
 * earlier stage, that embedding (copy), whose matrix the stage's layer
 * holds before its own parameters (copy->nparams 0 otherwise). */
void sfp_dist_stage_layer(const sfp_model *whole, int first, int i, sfp_layer_info *wl,
			  sfp_layer_info *copy);
/* Layers [a, b) of the whole model `full` (built as fm) as the config of a
 * stage's model. */
void sfp_dist_stage_config(const sfp_cfg_model *full, const sfp_model *fm, int a, int b,
			   sfp_cfg_model *out);
void sfp_dist_free(sfp_dist *d);
/* One training step over the global batch order[first .. first + b):
 * this rank's share, forward, backward, gradient exchange. Sums over the
 * whole job: loss x samples, correct, samples (out[3]). */
int sfp_dist_step(sfp_trainer *t, int64_t first, int b, double out[3], sfp_error *err);
int sfp_dist_evaluate(sfp_trainer *t, float *acc, float *loss, sfp_error *err);
/* Sum x[0..n) over every rank of the job. */
int sfp_dist_allreduce_world(sfp_trainer *t, double *x, int n, sfp_error *err);
/* The replicas agree on batch-norm running statistics (their mean). */
int sfp_dist_sync_buffers(sfp_trainer *t, sfp_error *err);
/* The replicas agree on the learned widths (their mean). */
int sfp_dist_sync_widths(sfp_trainer *t, sfp_error *err);
/* Traffic since the last call, summed over the job, per kind; and the
 * time the steps waited for the gradient exchange (the part backward did
 * not hide), summed over the ranks. */
int sfp_dist_traffic(sfp_trainer *t, sfp_wire_stats out[WIRE_KINDS], uint64_t *exposed_ns,
		     sfp_error *err);
/* The replicas' gradient sum in buckets (exchange.c): planned from the
 * model's layers, with a thread when parallel.overlap holds and the
 * transport allows it (a single stage). begin before backward; finish
 * after it waits for (or, without the thread, runs) every bucket. */
int sfp_exchange_create(sfp_exchange **out, sfp_dist *d, sfp_model *m,
			const sfp_cfg_parallel *pc, sfp_error *err);
int sfp_exchange_buckets(const sfp_exchange *x);
int sfp_exchange_overlaps(const sfp_exchange *x);
void sfp_exchange_begin(sfp_exchange *x);
int sfp_exchange_finish(sfp_exchange *x, sfp_error *err);
void sfp_exchange_free(sfp_exchange *x);
/* Pipeline stages: each stage's peak activation memory (the inputs it
 * keeps for backward, its layers' activations for one micro-batch), said
 * by rank 0 and logged per stage. Called by every rank. */
int sfp_dist_memory_report(sfp_trainer *t, sfp_error *err);
/* Pipeline stages: rank 0 appends the *n records (`size` bytes each) of
 * every other stage of its replica to its own (at most cap in all); the
 * other ranks send theirs or do nothing. Called by every rank. */
int sfp_dist_gather_stages(sfp_trainer *t, void *recs, size_t size, int *n, int cap,
			   sfp_error *err);

#endif
