/*
 * sfp/train.h -- the trainer: the training loop (and the BitPruning
 * fine-tune as a mode of it), evaluation, checkpoints, the JSON-lines
 * metrics log, the distributed trainer (data-parallel replicas and pipeline
 * stages over a transport) and the link to the coordinator daemon.
 *
 * It builds on the engine (sfp/nn.h), the data (sfp/data.h), the
 * transports (sfp/transport.h) and the daemon protocol (sfp/coord.h).
 */
#ifndef SFP_TRAIN_H
#define SFP_TRAIN_H

#include <stddef.h>
#include <stdint.h>

#include "sfp/common.h"
#include "sfp/config.h"
#include "sfp/data.h"
#include "sfp/nn.h"
#include "sfp/transport.h"

#ifdef __cplusplus
extern "C" {
#endif

/* ---- training ---------------------------------------------------------- */
typedef struct sfp_trainer sfp_trainer;

/* What the trainer reports to its caller after every log interval and
 * evaluation (the worker prints it; lib/ never does). */
typedef struct sfp_progress {
	int is_eval;
	int tokens;    /* token data: samples_per_s counts tokens, train_acc is per
			* token, an evaluation's loss is the held-out loss per token */
	int64_t epoch; /* 0-based */
	int64_t step;  /* steps done */
	int64_t total_steps;
	float loss;          /* mean training loss over the interval, or test loss */
	float train_acc;     /* over the interval */
	float test_acc;      /* is_eval */
	float lr;
	float bits_per_value; /* weights + stored activations (32 without containers) */
	double samples_per_s;
	double eta_s;
	/* distributed: bytes the job sent per step (every rank, every kind)
	 * and what float32 would have taken; 0 in one process */
	double wire_bytes_per_step, raw_bytes_per_step;
	/* and per step and rank, the mean time spent encoding + decoding
	 * tensors and waiting on the transport */
	double codec_ms_per_step, comm_ms_per_step;
	/* per step and rank, the time the step waited for the gradient
	 * exchange: what backward did not hide (parallel.overlap) */
	double exposed_comm_ms_per_step;
} sfp_progress;

typedef void (*sfp_progress_fn)(void *user, const sfp_progress *p);

/* Create from a validated config: loads the data, builds and initialises the
 * model and optimizer, opens the metrics log (append). `config_dir` is the
 * config file's folder (for plug-in paths; NULL = current). */
int sfp_trainer_create(sfp_trainer **out, const sfp_config *cfg, const char *config_dir,
		       sfp_error *err);
void sfp_trainer_free(sfp_trainer *t);
void sfp_trainer_on_progress(sfp_trainer *t, sfp_progress_fn fn, void *user);
/* One-line notices worth a user's attention that do not stop training
 * (e.g. "daemon: ... unreachable; training on with the current widths"). */
typedef void (*sfp_notice_fn)(void *user, const char *msg);
void sfp_trainer_on_notice(sfp_trainer *t, sfp_notice_fn fn, void *user);
sfp_model *sfp_trainer_model(sfp_trainer *t);

/*
 * The same, as one rank of a distributed job over `tr` (design.md §3,
 * docs/distributed.md): parallel.pipeline_stages S splits the layers into S
 * stages and the ranks into size/S data-parallel replicas. Every rank calls
 * the same trainer functions in the same order (they communicate); only
 * rank 0 writes the metrics log and checkpoints. `tr` must outlive the
 * trainer; NULL or a transport of one rank is sfp_trainer_create.
 */
int sfp_trainer_create_dist(sfp_trainer **out, const sfp_config *cfg, const char *config_dir,
			    sfp_transport *tr, sfp_error *err);

/* The split of the model's layers into `stages` pipeline stages: stage s is
 * layers [first[s], first[s + 1]) (first has stages + 1 entries). Balances
 * multiply-adds; never cuts a skip connection or right after a flatten;
 * every stage holds parameters. SFP_EINVAL saying why when impossible. */
int sfp_pipeline_plan(const sfp_model *m, int stages, int *first, sfp_error *err);

/* This rank's place: stage, replica and the job's stages and replicas
 * (0, 0, 1, 1 for one process). */
void sfp_trainer_topology(const sfp_trainer *t, int *stage, int *replica, int *stages,
			  int *replicas);
/* A bucket of the replicas' gradient exchange: floats [off, off + n) of
 * the gradient arena, final once backward has reached layer `first`. */
typedef struct sfp_bucket {
	size_t off, n;
	int first;
} sfp_bucket;
/* The buckets of whole layers of about bucket_kb KiB (0: one) cut from the
 * arena's end, in the order they are exchanged; out has room for
 * n_layers + 1. Returns their count (at least 1). */
int sfp_grad_buckets(const sfp_model *m, size_t bucket_kb, sfp_bucket *out);

/* The weight gradients' exchange between replicas: how many buckets, and
 * whether they run behind backward (0, 0 without replicas). */
void sfp_trainer_exchange(const sfp_trainer *t, int *buckets, int *overlapped);

/* Train until train.epochs or train.max_steps, evaluating every
 * eval_every_epochs and checkpointing as configured. */
int sfp_trainer_run(sfp_trainer *t, sfp_error *err);
/*
 * BitPruning fine-tune from the weights the trainer holds (a float
 * checkpoint): turns containers off, (with prune.activations) measures the
 * inputs' clip ranges over 16 training batches, learns integer widths with
 * the config's `prune` section for prune.steps steps, rounds them, trains
 * the weights prune.fix_steps more steps at those widths, and finalizes
 * (sfp_model_prune_finalize). Progress goes to the callback
 * (bits_per_value: the mean width per weight).
 */
int sfp_trainer_prune(sfp_trainer *t, sfp_error *err);
/* Test-set accuracy and mean loss (eval mode). Token data: every held-out
 * window once, the top-1 accuracy per token and the loss in nats per token. */
int sfp_trainer_evaluate(sfp_trainer *t, float *acc, float *loss, sfp_error *err);
/* Token data (data.dataset tokens): the window length T; 0 otherwise. */
int sfp_trainer_token_data(const sfp_trainer *t);

/*
 * Checkpoints: magic "SFPK", version, the model's layer signature, step,
 * parameters, buffers, optimizer state; CRC32C over everything. Written
 * atomically (temporary file, fsync, rename). Loading checks that the
 * checkpoint belongs to this model; resuming continues bit-identically.
 */
int sfp_trainer_save(sfp_trainer *t, const char *path, sfp_error *err);
int sfp_trainer_load(sfp_trainer *t, const char *path, sfp_error *err);
int64_t sfp_trainer_step(const sfp_trainer *t);
/* Load the checkpoint `path` names (sfp_checkpoint_resolve; the path used
 * goes to used[0..cap)). A pipeline stage of a distributed job takes its
 * own file, ckpt-<step>-stage<s>.sfpk, from the folder `path`, at the
 * newest step every stage has (a collective call). */
int sfp_trainer_resume(sfp_trainer *t, const char *path, char *used, size_t cap, sfp_error *err);
/* A one-process trainer: the checkpoint file `path`, or a folder's newest
 * ckpt-<step>.sfpk, or (a pipelined run's folder) the files of every stage
 * at the newest step they all have, merged into the whole model. No
 * fallback to an older file: what is damaged is said. */
int sfp_trainer_load_checkpoint(sfp_trainer *t, const char *path, char *used, size_t cap,
				sfp_error *err);
/* `path` itself when it is a file; for a folder, its newest ckpt-<step>.sfpk.
 * SFP_ENOENT (naming the folder) when there is none. */
int sfp_checkpoint_resolve(const char *path, char *out, size_t cap, sfp_error *err);

#ifdef __cplusplus
}
#endif
#endif
