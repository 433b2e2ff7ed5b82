/*
 * sfp/nn.h -- the training engine: a model built from the config's layer
 * list, its forward/backward pass, optimizers and learning-rate schedules,
 * and the BitPruning integer weights. The training loop, checkpoints and the
 * distributed trainer are sfp/train.h; datasets are sfp/data.h.
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
 * (c, h, w); a flat vector of n features is (n, 1, 1). A sequence of T
 * tokens of D > 1 features is (T, 1, D), laid out [T, D] row-major; token
 * data comes in as (T, 1, 1): the ids as float32 values (exact integers).
 * The per-token rule: a linear layer whose input is (T, 1, D) with D > 1
 * maps every token (weights shared over tokens) to (T, 1, out_features);
 * a flat input is one row as before (docs/transformer.md).
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

/* ---- model ------------------------------------------------------------- */
typedef struct sfp_model sfp_model;

/* sfp_layer_info.from of an add that reads the model's input */
#define SFP_FROM_INPUT (-2)

/* What a layer is, for logs, reports and tests. Strings are owned by the model. */
typedef struct sfp_layer_info {
	const char *name;
	const char *type;
	sfp_shape in, out;
	size_t param_offset, nparams; /* slice of the parameter arena */
	size_t buf_offset, nbufs;     /* and of the buffers (batch norm's running statistics) */
	int input;                    /* index of the layer feeding it (-1 = model input) */
	int from;                     /* add: the other operand's layer index, SFP_FROM_INPUT
				       * for the model input (`from: input`), else -1 */
	int tie;                      /* linear: the embedding whose matrix it reads (else -1) */
	int line;                     /* config line */
	double macs;                  /* forward multiply-adds per sample (linear, conv,
				       * attention; 0 for the others) */
} sfp_layer_info;

/*
 * Build a model for batches of up to `max_batch` samples: shapes are inferred
 * layer by layer (an error names the layer, its config line and the shapes
 * that do not fit), plug-ins are loaded (relative library paths are resolved
 * against `base_dir`, the config file's folder; NULL = current folder), and
 * all arenas are allocated. Parameters are zero until sfp_model_init.
 * The last layer's output is the logits; its c*h*w is the class count
 * (for per-token scores (T, 1, V): T*V, see sfp_model_loss_tokens).
 */
int sfp_model_create(sfp_model **out, const sfp_cfg_model *cfg, const char *base_dir,
		     int max_batch, sfp_error *err);
/* Flags of sfp_model_create_ex. SFP_MODEL_STAGE: a pipeline stage, whose
 * output is any tensor (the next stage's input), not class scores; its
 * "classes" is then the output's values per sample. */
#define SFP_MODEL_STAGE 1u
int sfp_model_create_ex(sfp_model **out, const sfp_cfg_model *cfg, const char *base_dir,
			int max_batch, unsigned flags, sfp_error *err);
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
	size_t buffers;     /* batch-norm running and batch statistics; layer-norm
			     * statistics and attention's kept q/k/v, head outputs
			     * and probabilities (float32, max batch) */
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
 * batch statistics and dropout; `noise_seed` seeds dropout masks and width
 * choices (use a value that differs per step). Returns the logits (B x
 * classes), owned by the model and valid until the next forward.
 * SFP_FORWARD_RECOMPUTE repeats a training forward with the same seed
 * (pipeline re-materialisation): the same outputs, but batch norm's running
 * statistics are not updated a second time.
 */
enum { SFP_FORWARD_EVAL = 0, SFP_FORWARD_TRAIN = 1, SFP_FORWARD_RECOMPUTE = 2 };
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

/*
 * Per-token softmax cross-entropy, for a last layer of shape (T, 1, V):
 * `targets` holds B*T int32 ids in [0, V) (sample-major, then token), the
 * mean loss over the B*T positions is returned, *correct (if non-NULL)
 * counts top-1 hits over positions and, when `want_grad`, d(mean loss)/d
 * logits goes to sfp_model_output_grad for sfp_model_backward. A target
 * outside [0, V) gets no gradient and makes the loss NaN (the data reader
 * refuses such data first); NaN for a last layer that is not (T, 1, V).
 */
float sfp_model_loss_tokens(sfp_model *m, const int32_t *targets, int B, int *correct,
			    int want_grad);

/* Token ids seen by an embedding layer's forward passes since the model was
 * created that were not exact integers in [0, vocab): each gave a zero row
 * and no gradient. A guard only: the data reader refuses such data before
 * training, so this stays 0 in a sane run. */
uint64_t sfp_model_embedding_misses(const sfp_model *m);

/* The gradient of the loss with respect to the last layer's output (B x
 * its c*h*w), which sfp_model_backward starts from: sfp_model_loss fills
 * it; a pipeline stage writes the gradient its next stage sent, and a
 * data-parallel replica scales it by its share of the global batch. */
float *sfp_model_output_grad(sfp_model *m);

/* Zero the gradient arena. */
void sfp_model_zero_grad(sfp_model *m);
/* Backward through every layer after sfp_model_loss(..., want_grad = 1);
 * gradients accumulate into the gradient arena. */
void sfp_model_backward(sfp_model *m, const float *x, int B);
/* Called during sfp_model_backward each time the gradients of the
 * parameters of layers [first, n) are final (no later work adds to them),
 * first falling to 0; a data-parallel trainer starts exchanging them then.
 * NULL: none. A linear tied to an embedding adds to the embedding's
 * gradient, which is final only at first <= the embedding's index. */
typedef void (*sfp_grads_ready_fn)(void *user, int first);
void sfp_model_on_grads_ready(sfp_model *m, sfp_grads_ready_fn fn, void *user);

/* Gradient of the loss with respect to the input of the last backward
 * (B x input shape), when requested at creation through
 * sfp_model_want_input_grad (tests use it); else NULL. */
void sfp_model_want_input_grad(sfp_model *m, int on);
const float *sfp_model_input_grad(const sfp_model *m);

/* ---- learned containers (lib/nn/containers.c, widths from lib/quant) ------- */
enum sfp_qpolicy {
	SFP_QPOLICY_OFF = 0,     /* float32 everywhere */
	SFP_QPOLICY_FIXED = 1,   /* every tensor at the given (e, m) */
	SFP_QPOLICY_QUANTUM = 2, /* QM + QE: per-tensor widths learned with the weights */
	SFP_QPOLICY_BITWAVE = 3  /* one width pair for all, set by sfp_model_set_widths */
};

#define SFP_QTARGET_WEIGHTS 1
#define SFP_QTARGET_ACTIVATIONS 2
/* Opt-in, our extension (design.md §1.6): every layer's output gradient
 * (not the loss gradient) is rounded to a container at fixed widths
 * (sfp_model_set_grad_widths; default e5 m2) before that layer's backward
 * reads it. Values on the grid only: the gradient buffers are transient
 * scratch, so no memory is saved; it measures what training tolerates
 * (gradients save bytes on the wire: parallel.grad_e / grad_m). */
#define SFP_QTARGET_GRADIENTS 4
/* Put the weights of linear/conv layers (and embedding, position and
 * attention matrices; a tied linear reads its embedding's) and/or every
 * stored activation (all but the logits), as `targets` says, in containers
 * starting at (e, m) bits under `policy`. */
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
/* Weights in containers (lib/nn/containers.c) held packed: each forward encodes
 * them from the float32 masters at the step's widths (Gecko as
 * sfp_model_set_stash says) and a layer decodes its own into one scratch
 * buffer when it runs; the same training bits. Off (the default): a float32
 * copy on the container grid. Takes effect at sfp_model_set_quant. */
void sfp_model_set_pack_weights(sfp_model *m, int on);
/* How many times a tensor had a value its container cannot hold (NaN/Inf,
 * or one that rounds past float32) since the model was set up: those
 * values stay as they are (a diverging run is stopped by the loss check). */
uint64_t sfp_model_container_misses(const sfp_model *m);
/* Widths of the gradient containers (SFP_QTARGET_GRADIENTS); after
 * sfp_model_set_quant. SFP_EINVAL outside 1 <= e <= 8, m <= 23. */
int sfp_model_set_grad_widths(sfp_model *m, unsigned e, unsigned mbits, sfp_error *err);
/* Decoder-side refinement (docs/refine.md) for every container the model
 * quantizes weights and activations into: bias SFP_BIAS_OFF or
 * SFP_BIAS_TENSOR (one offset per block of 16384 values), shift 0/1;
 * containers with m > SFP_REFINE_MAX_M are not refined.
 * The width gradients use the unrefined quantizers. SFP_EINVAL otherwise. */
int sfp_model_set_refine(sfp_model *m, int bias, int shift, sfp_error *err);

/* A pipeline stage that is not the last: its output is an activation that
 * gets a container like the others. Call before sfp_model_set_quant. */
void sfp_model_set_output_stored(sfp_model *m, int on);

typedef struct sfp_qtensor_info {
	const char *layer; /* owned by the model */
	const char *kind;  /* "weights" or "activations" */
	float n_e, n_m;    /* learned real widths */
	unsigned e, m;     /* packing widths (ceil) */
	uint64_t count;    /* values (activations: at the largest batch) */
	uint64_t stash_bytes; /* bytes of containers the last forward kept: activations
			       * in the packed stash, weights packed (0 when not packed) */
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

/* ---- BitPruning: integer weights for inference (lib/nn/intweights.c) -------
 * The weights of every linear and conv2d layer as b-bit integer codes with
 * one scale per layer or per output channel ("group"), b learned per group
 * (design.md §1.5, the quantizer in sfp/quant.h). Biases, batch-norm
 * parameters and buffers stay float32. Exclusive with learned containers:
 * sfp_model_set_prune refuses a model with a bitlength policy on. */
/* enum sfp_prune_granularity, _penalty, _optim: sfp/config.h (config keys) */

typedef struct sfp_prune_opts {
	int granularity;          /* enum sfp_prune_granularity */
	int penalty;              /* enum sfp_prune_penalty */
	int optim;                /* enum sfp_prune_optim */
	int activations;          /* quantize the inputs of linear/conv layers too */
	float bits;               /* starting width */
	float min_bits, max_bits; /* clamp, within [SFP_PRUNE_MIN_BITS, SFP_PRUNE_MAX_BITS] */
} sfp_prune_opts;

/* Start learning widths: from now on the forward and backward passes read
 * the weights through the interpolated quantizer (gradients reach the
 * float32 masters straight through). SFP_EINVAL for bad options or when
 * containers are on. With activations, the inputs of linear/conv layers
 * (one width per layer) go through it as well, against clip ranges that
 * must be measured first: sfp_model_prune_observe(m, 1), a few training
 * forward passes, sfp_model_prune_observe(m, 0). */
int sfp_model_set_prune(sfp_model *m, const sfp_prune_opts *o, sfp_error *err);
/* on = 1: forward passes record each quantized input's max |x| and sign,
 * quantizing nothing; on = 0: the clip ranges become the mean of the
 * recorded batch maxima, and inputs never negative get the unsigned grid. */
void sfp_model_prune_observe(sfp_model *m, int on);
/* After backward: every width's interpolation gradient from the weight
 * gradients (activation widths got theirs in backward), the penalty
 * gamma * (cost-weighted mean width; cost = weights per group and input
 * values per sample for memory, multiply-adds for ops), one Adam or SGD
 * step of size lr, clamped; and the clip ranges follow this step's batch
 * maxima. Call once per training step (also after rounding, for the
 * ranges), before the optimizer moves the weights. Returns the penalty. */
float sfp_model_prune_update(sfp_model *m, float lr, float gamma);
/* Round every width to the nearest integer (ties up) and stop learning
 * them: the forward pass uses exactly Q(w, b). */
void sfp_model_prune_round(sfp_model *m);
/*
 * Fix the integer model: codes and scales from the current weights, and the
 * weights replaced by their dequantized values, which the forward pass then
 * reads as they are (so what is evaluated now is what the file holds).
 * Rounds first if needed. SFP_ERANGE naming the layer for non-finite weights.
 */
int sfp_model_prune_finalize(sfp_model *m, sfp_error *err);

/* Per quantized tensor (one per linear/conv layer), for reports. */
typedef struct sfp_prune_info {
	const char *layer;         /* owned by the model */
	int groups;                /* 1, or the output channels */
	uint64_t count;            /* weights */
	double macs;               /* multiply-adds per sample */
	double bits;               /* mean width over the groups, weighted by size
				    * (real while learning, integer once rounded) */
	unsigned min_bits, max_bits; /* over the groups, rounded to the nearest */
	double act_bits;           /* the input's width (0: float input) */
	int act_signed;            /* symmetric grid (else unsigned) */
	float act_range;           /* clip range */
	uint64_t act_count;        /* input values per sample */
} sfp_prune_info;
int sfp_model_n_pruned(const sfp_model *m);
void sfp_model_pruned(const sfp_model *m, int k, sfp_prune_info *info);

/* Averages over the pruned tensors (0 without pruning). Weights: per weight
 * (memory), per layer (each layer once: the paper's "average bits per
 * layer"), per multiply-add. Activations (32 where float): per input value
 * of one sample, per layer. bit_ops_per_mac: the mean of weight bits x
 * activation bits over the multiply-adds (1024 in float32). */
typedef struct sfp_prune_summary {
	double w_per_weight, w_per_layer, w_per_mac;
	double a_per_value, a_per_layer;
	double bit_ops_per_mac;
} sfp_prune_summary;
void sfp_model_prune_summary(const sfp_model *m, sfp_prune_summary *s);

/*
 * The integer model file (.sfpq, docs/bitpruning.md): magic "SFPQ", version,
 * the model signature, per-tensor and per-group widths and scales, the codes
 * bit-packed, the float parameters and buffers, CRC32C. Save needs a
 * finalized model and writes atomically. Load checks every field against
 * the model built from the config before changing anything, then sets the
 * dequantized weights and the floats and leaves the model finalized (its
 * widths reported by sfp_model_pruned). `name` labels errors.
 */
int sfp_model_save_pruned(const sfp_model *m, const char *path, sfp_error *err);
int sfp_model_load_pruned(sfp_model *m, const char *name, const void *buf, size_t len,
			  sfp_error *err);
/* Bytes the file of this (finalized) model takes. */
size_t sfp_model_pruned_bytes(const sfp_model *m);
/* CRC32C signature of the layer types, shapes, wiring and parameter counts
 * (checkpoints and .sfpq files carry it). */
uint32_t sfp_model_signature(const sfp_model *m);

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

#ifdef __cplusplus
}
#endif
#endif
