/*
 * sfp/nn.h -- the training engine: a model built from the config's layer
 * list, its forward/backward pass, optimizers and learning-rate schedules,
 * the Fashion-MNIST dataset, checkpoints and the training loop.
 *
 * Memory is one arena per role (llm.c style): parameters, their gradients,
 * non-trained buffers (batch-norm running statistics), optimizer moments and
 * activations each live in one contiguous float block, so zeroing gradients
 * is one memset, the optimizer one loop, a checkpoint one write per block and
 * a gradient exchange one call over one buffer. Layers never allocate. With
 * activations in containers and a packed stash (sfp_model_set_stash), the
 * activations kept for backward live packed and float activation memory is
 * one planned scratch pool instead.
 *
 * Tensors are float32, batch-major, C order. A layer's per-sample shape is
 * (c, h, w); a flat vector of n features is (n, 1, 1).
 */
#ifndef SFP_NN_H
#define SFP_NN_H

#include <stddef.h>
#include <stdint.h>

#include "sfp/common.h"
#include "sfp/config.h"

#ifdef __cplusplus
extern "C" {
#endif

typedef struct sfp_shape {
	int c, h, w;
} sfp_shape;

static inline size_t sfp_shape_numel(sfp_shape s)
{
	return (size_t)s.c * (size_t)s.h * (size_t)s.w;
}

/* ---- model ------------------------------------------------------------- */
typedef struct sfp_model sfp_model;

/* What a layer is, for logs, reports and tests. Strings are owned by the model. */
typedef struct sfp_layer_info {
	const char *name;
	const char *type;
	sfp_shape in, out;
	size_t param_offset, nparams; /* slice of the parameter arena */
	int input;                    /* index of the layer feeding it (-1 = model input) */
	int from;                     /* add: the other operand's layer index (else -1) */
	int line;                     /* config line */
} sfp_layer_info;

/*
 * Build a model for batches of up to `max_batch` samples: shapes are inferred
 * layer by layer (an error names the layer, its config line and the shapes
 * that do not fit), plug-ins are loaded (relative library paths are resolved
 * against `base_dir`, the config file's folder; NULL = current folder), and
 * all arenas are allocated. Parameters are zero until sfp_model_init.
 * The last layer's output is the logits; its c*h*w is the class count.
 */
int sfp_model_create(sfp_model **out, const sfp_cfg_model *cfg, const char *base_dir,
		     int max_batch, sfp_error *err);
void sfp_model_free(sfp_model *m);

/* Threads for the layers' kernels (default 1). A given count always gives
 * the same bits; different counts may differ in the last bits of sums. */
int sfp_model_set_threads(sfp_model *m, int threads, sfp_error *err);

int sfp_model_n_layers(const sfp_model *m);
void sfp_model_layer(const sfp_model *m, int i, sfp_layer_info *info);
sfp_shape sfp_model_input_shape(const sfp_model *m);
int sfp_model_classes(const sfp_model *m);
int sfp_model_max_batch(const sfp_model *m);

/* The arenas (owned by the model). */
float *sfp_model_params(sfp_model *m, size_t *n);
float *sfp_model_grads(sfp_model *m, size_t *n);
float *sfp_model_buffers(sfp_model *m, size_t *n);
/* The memory a model holds, in bytes, by role. */
typedef struct sfp_model_mem {
	size_t params;      /* float32 parameters and their gradients */
	size_t buffers;     /* batch-norm running and batch statistics */
	size_t activations; /* float32 layer outputs: the whole arena; with a packed
			     * stash the liveness-planned scratch pool, which also holds
			     * the output gradients and the decoded stash */
	size_t stash;       /* packed stash: bytes allocated for the containers of the
			     * activations backward reads (0 without one) */
	size_t act_grads;   /* activation-gradient arena (none with a packed stash),
			     * max-pool indices, loss and input gradients */
	size_t workspace;   /* the kernels' per-thread workspaces */
	size_t containers;  /* weights as forward reads them, re-quantization scratch */
	size_t total;
} sfp_model_mem;
void sfp_model_memory(const sfp_model *m, sfp_model_mem *mem);
/* sfp_model_memory's total. */
size_t sfp_model_bytes(const sfp_model *m);

/* Seeded initialisation: He-uniform weights, zero biases, batch-norm scale 1
 * and shift 0, running mean 0 and variance 1; plug-ins through their init. */
void sfp_model_init(sfp_model *m, uint64_t seed);

/*
 * Forward B <= max_batch samples `x` (B x input shape). `training` selects
 * batch statistics and dropout; `noise_seed` seeds dropout masks (use a
 * value that differs per step). Returns the logits (B x classes), owned by
 * the model and valid until the next forward.
 */
const float *sfp_model_forward(sfp_model *m, const float *x, int B, int training,
			       uint64_t noise_seed);
/* Output activation of layer i from the last forward (B x out shape), as
 * float32 memory; NULL for a layer whose output is packed (sfp_model_set_stash:
 * then only the logits and outputs kept whole stay float). */
const float *sfp_model_activation(const sfp_model *m, int i);
/* Layer i's output as the last training forward kept it for backward,
 * decoded from the packed stash or copied from float memory, into
 * dst[0..cap); *B = its samples. SFP_ENOENT when it was not kept (nothing
 * reads it back), SFP_ENOSPC when cap is short. */
int sfp_model_saved_activation(sfp_model *m, int i, float *dst, size_t cap, int *B,
			       sfp_error *err);

/*
 * Softmax cross-entropy of the last forward's logits against `labels`
 * (each < classes): returns the mean loss, counts correct top-1 predictions
 * into *correct (if non-NULL) and, when `want_grad`, stores d(mean loss)/d
 * logits for sfp_model_backward.
 */
float sfp_model_loss(sfp_model *m, const uint8_t *labels, int B, int *correct, int want_grad);

/* Zero the gradient arena. */
void sfp_model_zero_grad(sfp_model *m);
/* Backward through every layer after sfp_model_loss(..., want_grad = 1);
 * gradients accumulate into the gradient arena. */
void sfp_model_backward(sfp_model *m, const float *x, int B);

/* Gradient of the loss with respect to the input of the last backward
 * (B x input shape), when requested at creation through
 * sfp_model_want_input_grad (tests use it); else NULL. */
void sfp_model_want_input_grad(sfp_model *m, int on);
const float *sfp_model_input_grad(const sfp_model *m);

/* ---- learned containers (lib/nn/qmodel.c, widths from lib/quant) ------- */
enum sfp_qpolicy {
	SFP_QPOLICY_OFF = 0,     /* float32 everywhere */
	SFP_QPOLICY_FIXED = 1,   /* every tensor at the given (e, m) */
	SFP_QPOLICY_QUANTUM = 2, /* QM + QE: per-tensor widths learned with the weights */
	SFP_QPOLICY_BITWAVE = 3  /* one width pair for all, set by sfp_model_set_widths */
};

#define SFP_QTARGET_WEIGHTS 1
#define SFP_QTARGET_ACTIVATIONS 2
/* Put the weights of linear/conv layers and/or every stored activation (all
 * but the logits), as `targets` says, in containers starting at (e, m)
 * bits under `policy`. */
int sfp_model_set_quant(sfp_model *m, int policy, int targets, float e, float mbits,
			sfp_error *err);
/*
 * How stored activations in containers are kept between forward and
 * backward. packed = 1 (the default): each layer output backward reads is
 * encoded right after its forward at the packing widths (lib/codec; Gecko
 * exponent coding if `gecko`), one container per chunk of samples, and
 * decoded into scratch when backward needs it; float32 outputs become
 * scratch laid out by a liveness plan (lib/nn/stash.c), so the memory is
 * really saved. packed = 0: float32 values on the container grid (the
 * fake-quantized stash): the same training bits, no memory saved. No effect
 * on a model without activation containers. Call before training; the
 * setting survives sfp_model_set_quant.
 */
int sfp_model_set_stash(sfp_model *m, int packed, int gecko, sfp_error *err);

typedef struct sfp_qtensor_info {
	const char *layer; /* owned by the model */
	const char *kind;  /* "weights" or "activations" */
	float n_e, n_m;    /* learned real widths */
	unsigned e, m;     /* packing widths (ceil) */
	uint64_t count;    /* values (activations: at the largest batch) */
	uint64_t stash_bytes; /* activations: packed bytes the last training forward kept */
} sfp_qtensor_info;

int sfp_model_n_qtensors(const sfp_model *m);
void sfp_model_qtensor(const sfp_model *m, int k, sfp_qtensor_info *info);
/* The smallest widths learning may reach (quantum policy clamps there). */
void sfp_model_set_floors(sfp_model *m, float e_min, float m_min);
/* Every tensor to (e, m) (BitWave). */
void sfp_model_set_widths(sfp_model *m, unsigned e, unsigned mbits);
/* After backward (quantum policy): the weights' width gradients, the
 * footprint penalty gamma, one step of size lr on every width. Returns the
 * penalty term. */
float sfp_model_quant_update(sfp_model *m, float lr, float gamma);
/* Bits held by weights and stored activations at the current packing
 * widths (32 per value without containers), and their value counts. */
void sfp_model_footprint(const sfp_model *m, double *bits_weights, double *bits_acts,
			 double *count_weights, double *count_acts);
/* Bits the containers of those tensors take when encoded (lib/codec, headers
 * included; `gecko` codes the exponents), weights encoded now at their
 * packing widths. Activations: with a packed stash, the bytes it holds
 * after the last training forward (re-encoded when `gecko` differs from
 * the stash's; an output backward never reads is not kept and counts 0);
 * with a float stash, each tensor encoded as left by the last forward. */
int sfp_model_packed_bits(sfp_model *m, int gecko, double *bits_weights, double *bits_acts,
			  sfp_error *err);
/* The widths (n_e, n_m per tensor) for checkpoints: save returns the count. */
int sfp_model_widths_save(const sfp_model *m, float *dst, int cap);
int sfp_model_widths_load(sfp_model *m, const float *src, int n);

/* ---- optimizers and schedules ------------------------------------------ */
typedef struct sfp_optim sfp_optim;

/* SGD (momentum, Nesterov, weight decay) or AdamW (decoupled weight decay)
 * over n parameters. */
int sfp_optim_create(sfp_optim **out, const sfp_cfg_optimizer *cfg, size_t n, sfp_error *err);
void sfp_optim_free(sfp_optim *o);
/* One update with learning rate lr; `t` is the 1-based step (AdamW bias
 * correction). */
void sfp_optim_step(sfp_optim *o, float *params, const float *grads, float lr, int64_t t);
/* The moment arena (momentum for SGD, m then v for AdamW), for checkpoints. */
float *sfp_optim_state(sfp_optim *o, size_t *n);

/* Learning rate at 0-based `step` of `total_steps`: linear warm-up, then
 * constant, step decay or cosine to min_lr. */
float sfp_lr_at(const sfp_cfg_optimizer *opt, const sfp_cfg_schedule *s, int64_t step,
		int64_t total_steps);

/* ---- data -------------------------------------------------------------- */
typedef struct sfp_dataset {
	int n;          /* samples */
	sfp_shape shape; /* per sample */
	int classes;
	float *x;       /* n x shape, owned */
	uint8_t *y;     /* n labels, owned */
} sfp_dataset;

/* Load the config's dataset (Fashion-MNIST train and t10k), scaled to [0,1]
 * and, with data.normalize, standardised by the training set's mean and
 * standard deviation; train_limit/test_limit take the first N. Errors name
 * the file. */
int sfp_dataset_load(sfp_dataset *train, sfp_dataset *test, const sfp_cfg_data *cfg,
		     sfp_error *err);
void sfp_dataset_release(sfp_dataset *d);
/* The order of epoch `epoch`: identity without shuffling, else a seeded
 * Fisher-Yates permutation that depends only on (seed, epoch). */
void sfp_dataset_order(uint32_t *perm, int n, uint64_t seed, int64_t epoch, int shuffle);
/* Keep this rank's shard: samples i with i % nranks == rank, in order
 * (every rank gets n / nranks or one more). For data-parallel workers. */
int sfp_dataset_shard(sfp_dataset *d, int rank, int nranks, sfp_error *err);
/* Copy samples idx[0..B) into x (B x shape) and y. */
void sfp_dataset_gather(const sfp_dataset *d, const uint32_t *idx, int B, float *x, uint8_t *y);

/* ---- training ---------------------------------------------------------- */
typedef struct sfp_trainer sfp_trainer;

/* What the trainer reports to its caller after every log interval and
 * evaluation (the worker prints it; lib/ never does). */
typedef struct sfp_progress {
	int is_eval;
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
} sfp_progress;

typedef void (*sfp_progress_fn)(void *user, const sfp_progress *p);

/* Create from a validated config: loads the data, builds and initialises the
 * model and optimizer, opens the metrics log (append). `config_dir` is the
 * config file's folder (for plug-in paths; NULL = current). */
int sfp_trainer_create(sfp_trainer **out, const sfp_config *cfg, const char *config_dir,
		       sfp_error *err);
void sfp_trainer_free(sfp_trainer *t);
void sfp_trainer_on_progress(sfp_trainer *t, sfp_progress_fn fn, void *user);
sfp_model *sfp_trainer_model(sfp_trainer *t);

/* Train until train.epochs or train.max_steps, evaluating every
 * eval_every_epochs and checkpointing as configured. */
int sfp_trainer_run(sfp_trainer *t, sfp_error *err);
/* Test-set accuracy and mean loss (eval mode). */
int sfp_trainer_evaluate(sfp_trainer *t, float *acc, float *loss, sfp_error *err);

/*
 * Checkpoints: magic "SFPK", version, the model's layer signature, step,
 * parameters, buffers, optimizer state; CRC32C over everything. Written
 * atomically (temporary file, fsync, rename). Loading checks that the
 * checkpoint belongs to this model; resuming continues bit-identically.
 */
int sfp_trainer_save(sfp_trainer *t, const char *path, sfp_error *err);
int sfp_trainer_load(sfp_trainer *t, const char *path, sfp_error *err);
int64_t sfp_trainer_step(const sfp_trainer *t);
/* `path` itself when it is a file; for a folder, its newest ckpt-<step>.sfpk.
 * SFP_ENOENT (naming the folder) when there is none. */
int sfp_checkpoint_resolve(const char *path, char *out, size_t cap, sfp_error *err);

#ifdef __cplusplus
}
#endif
#endif
