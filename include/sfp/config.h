/*
 * sfp/config.h -- the job configuration: YAML file + `--set section.key=value`
 * overrides -> one plain struct (design.md §4 names the sections and keys).
 *
 * The loader is strict: unknown keys, wrong types, out-of-range values and
 * malformed YAML are errors whose message names the file, the line and the
 * key ("cnn.yaml:12: train.batch_size: expected a positive integer, got
 * 'many'"). Defaults are filled first (sfp_config_defaults), so a file only
 * names what it changes.
 *
 * Everything is stored inline (fixed-size arrays), so a config is a value:
 * copy it, compare it, free nothing.
 */
#ifndef SFP_CONFIG_H
#define SFP_CONFIG_H

#include <stdint.h>

#include "sfp/common.h"

#ifdef __cplusplus
extern "C" {
#endif

#define SFP_CFG_MAX_LAYERS 128
#define SFP_CFG_MAX_DIMS 4
#define SFP_CFG_NAME 64
/* an add's `from` naming the model's input instead of a layer (a reserved name) */
#define SFP_CFG_FROM_INPUT "input"
#define SFP_CFG_PATH 512
#define SFP_CFG_MAX_PLUGIN_ARGS 16
#define SFP_CFG_MAX_TARGETS 4

/*
 * Enum-valued keys are stored as the index of their value in the key's
 * names table (lib/config/config.c), one C enum per key below, in the same
 * order as the names; sfp_config_enum_name turns an index back into the
 * string a file or `--set` gives. Where a library enum below config is the
 * same set it is the one stored (the prune keys).
 */
enum sfp_cfg_dataset {
	SFP_DATASET_FASHION_MNIST = 0,
	SFP_DATASET_NPY = 1,
	SFP_DATASET_IDX = 2,
	SFP_DATASET_CIFAR10 = 3,
	SFP_DATASET_TOKENS = 4
};
/* data.augment items; as bits, 1 << item (sfp_dataset.augment, sfp/data.h) */
enum sfp_cfg_augment { SFP_AUGMENT_CROP = 0, SFP_AUGMENT_FLIP = 1 };
enum sfp_cfg_optimizer_type { SFP_OPTIMIZER_SGD = 0, SFP_OPTIMIZER_ADAMW = 1 };
enum sfp_cfg_schedule_type { SFP_SCHEDULE_CONSTANT = 0, SFP_SCHEDULE_STEP = 1, SFP_SCHEDULE_COSINE = 2 };
/* bitlength.policy; the trainer maps it onto enum sfp_qpolicy (sfp/nn.h),
 * which also has "off" (fixed at e8 m23 on weights and activations). */
enum sfp_cfg_policy { SFP_POLICY_FIXED = 0, SFP_POLICY_QUANTUM = 1, SFP_POLICY_BITWAVE = 2 };
/* bitlength.targets items; as bits, 1 << target is SFP_QTARGET_* (sfp/nn.h). */
enum sfp_cfg_target { SFP_TARGET_WEIGHTS = 0, SFP_TARGET_ACTIVATIONS = 1, SFP_TARGET_GRADIENTS = 2 };
/* bitlength.refine_bias, parallel.grad_refine_bias: the per-tensor subset of
 * enum sfp_bias (sfp/codec.h), same values. */
enum sfp_cfg_refine_bias { SFP_REFINE_BIAS_OFF = 0, SFP_REFINE_BIAS_TENSOR = 1 };
/* prune.granularity, prune.penalty, prune.optimizer (sfp_prune_opts, sfp/nn.h) */
enum sfp_prune_granularity { SFP_PRUNE_LAYER = 0, SFP_PRUNE_CHANNEL = 1 };
enum sfp_prune_penalty { SFP_PRUNE_MEMORY = 0, SFP_PRUNE_OPS = 1 };
enum sfp_prune_optim { SFP_PRUNE_ADAM = 0, SFP_PRUNE_SGD = 1 }; /* of the widths */
enum sfp_cfg_transport { SFP_TRANSPORT_MPI = 0, SFP_TRANSPORT_NNG = 1 };
/* parallel.allreduce; "auto" is ring (enum sfp_allreduce_algo, sfp/transport.h) */
enum sfp_cfg_allreduce {
	SFP_CFG_ALLREDUCE_AUTO = 0,
	SFP_CFG_ALLREDUCE_RING = 1,
	SFP_CFG_ALLREDUCE_ALLGATHER = 2,
	SFP_CFG_ALLREDUCE_NATIVE = 3
};
/* parallel.grad_cast: plain 16-bit casts instead of containers on the wire
 * (enum sfp_wire_cast in sfp/transport.h, which config may not include) */
enum sfp_cfg_grad_cast { SFP_GRAD_CAST_NONE = 0, SFP_GRAD_CAST_FP16 = 1, SFP_GRAD_CAST_BF16 = 2 };
enum sfp_cfg_nng_endpoint { SFP_NNG_TCP = 0, SFP_NNG_IPC = 1 };
/* parallel.schedule: the order of a pipeline stage's micro-batches */
enum sfp_cfg_pipe_schedule { SFP_PIPE_GPIPE = 0, SFP_PIPE_1F1B = 1 };

/* One `key: value` pair handed to a plug-in layer unparsed. */
typedef struct sfp_cfg_kv {
	char key[SFP_CFG_NAME];
	char value[SFP_CFG_NAME];
} sfp_cfg_kv;

/*
 * One entry of model.layers. `type` is one of: linear, conv2d, maxpool,
 * avgpool, relu, gelu, tanh, flatten, dropout, batchnorm, add, plugin,
 * embedding, position, layernorm, attention (docs/transformer.md).
 * Keys that a type does not use are rejected by the loader (a `kernel` on a
 * relu is an error), so an option left at its default here was not given.
 */
typedef struct sfp_cfg_layer {
	char type[SFP_CFG_NAME];
	char name[SFP_CFG_NAME]; /* optional; default "<type><index>", e.g. "linear3" */
	int line;                /* line of the entry in the file (0: from defaults) */

	int out_features;        /* linear (required) */
	int out_channels;        /* conv2d (required) */
	int kernel;              /* conv2d (required), pools (default 2) */
	int stride;              /* conv2d (default 1), pools (default = kernel) */
	int padding;             /* conv2d, pools (default 0) */
	int bias;                /* linear, conv2d: 1 (default) or 0 */
	float p;                 /* dropout probability, 0 <= p < 1 (default 0.5) */
	float eps;               /* batchnorm, layernorm (default 1e-5) */
	float momentum;          /* batchnorm running-stat momentum (default 0.1) */
	char from[SFP_CFG_NAME]; /* add: an earlier layer's name, or "input" (required) */
	char tie[SFP_CFG_NAME];  /* linear: an earlier embedding whose matrix is the
				  * weight (optional; none by default) */
	int vocab;               /* embedding: token ids 0..vocab-1 (required) */
	int dim;                 /* embedding: features per token (required) */
	int heads;               /* attention: heads, dividing the features (required) */
	int causal;              /* attention: mask later tokens (default 1) */

	/* plugin */
	char library[SFP_CFG_PATH]; /* path of the shared library (required) */
	char symbol[SFP_CFG_NAME];  /* its entry point (default "sfp_plugin_entry") */
	int n_args;
	sfp_cfg_kv args[SFP_CFG_MAX_PLUGIN_ARGS]; /* the `args:` mapping, in file order */
} sfp_cfg_layer;

typedef struct sfp_cfg_model {
	int input_ndim;                  /* 1..3 */
	int input[SFP_CFG_MAX_DIMS];     /* per-sample shape, e.g. [1, 28, 28] or [784] */
	int n_layers;
	sfp_cfg_layer layers[SFP_CFG_MAX_LAYERS];
} sfp_cfg_model;

#define SFP_CFG_MAX_AUGMENT 2

typedef struct sfp_cfg_data {
	int dataset;                /* enum sfp_cfg_dataset: "fashion-mnist" (default), "npy",
				       "idx", "cifar10", "tokens" */
	char path[SFP_CFG_PATH];    /* fashion-mnist, cifar10: the folder (default SFP_FMNIST_DIR) */
	/* npy, idx: samples and labels; tokens: train_x and test_x only */
	char train_x[SFP_CFG_PATH], train_y[SFP_CFG_PATH];
	char test_x[SFP_CFG_PATH], test_y[SFP_CFG_PATH]; /* "": hold out val_fraction of train */
	float val_fraction;         /* last fraction of train held out without test files (0.1) */
	int classes;                /* npy, idx: 0 (default) = max label + 1 */
	int n_augment;
	int augment[SFP_CFG_MAX_AUGMENT]; /* enum sfp_cfg_augment: training batches only */
	int token_bytes;            /* tokens: 2 (default, uint16 LE) or 1 (uint8) */
	int seq_len;                /* tokens: T, the window (default 256) */
	int normalize;              /* 1 (default): (x/255 - mean) / std of the train set */
	int shuffle;                /* 1 (default): reshuffle every epoch, seeded */
	int train_limit;            /* use the first N training samples (0 = all) */
	int test_limit;             /* use the first N test samples (0 = all) */
} sfp_cfg_data;

typedef struct sfp_cfg_optimizer {
	int type;                /* enum sfp_cfg_optimizer_type: "sgd" (default) or "adamw" */
	float lr;                /* default 0.01 */
	float momentum;          /* sgd (default 0.9) */
	int nesterov;            /* sgd (default 0) */
	float weight_decay;      /* default 0 (decoupled for adamw) */
	float beta1, beta2, eps; /* adamw (defaults 0.9, 0.999, 1e-8) */
} sfp_cfg_optimizer;

typedef struct sfp_cfg_schedule {
	int type;                /* enum sfp_cfg_schedule_type: "constant" (default), "step", "cosine" */
	int warmup_steps;        /* linear warm-up from 0 over N steps (default 0) */
	int step_every;          /* step: multiply by gamma every N steps (required for step) */
	float gamma;             /* step (default 0.1) */
	float min_lr;            /* cosine floor (default 0) */
} sfp_cfg_schedule;

typedef struct sfp_cfg_train {
	int epochs;              /* default 1 */
	int64_t max_steps;       /* stop after N steps (0 = no limit) */
	int batch_size;          /* default 64 */
	uint64_t seed;           /* default 1 */
	int threads;             /* GEMM threads (default 1) */
	int eval_every_epochs;   /* test accuracy every N epochs (default 1; 0 = only at the end) */
	sfp_cfg_optimizer optimizer;
	sfp_cfg_schedule schedule;
} sfp_cfg_train;

/* Parsed now so the key names are fixed; the learned-bitlength issue uses them. */
typedef struct sfp_cfg_bitlength {
	int policy;                 /* enum sfp_cfg_policy: "fixed" (default), "quantum", "bitwave" */
	int n_targets;
	int targets[SFP_CFG_MAX_TARGETS]; /* enum sfp_cfg_target (default weights, activations) */
	float e;                    /* initial exponent width (default 8) */
	float m;                    /* initial mantissa width (default 23) */
	float gamma;                /* footprint penalty weight (default 0.05) */
	int gecko;                  /* default 0 */
	int pack;                   /* stored activations packed between forward and backward (default 1) */
	int pack_weights;           /* weights held as containers, decoded per layer (default 0) */
	int grad_e, grad_m;         /* widths of the gradient containers (target gradients; e5 m2) */
	float lr;                   /* quantum: learning rate of the widths (default 0.05) */
	float ema;                  /* bitwave: loss smoothing (default 0.9) */
	float threshold;            /* bitwave: relative loss change that counts (default 0.02) */
	int period;                 /* bitwave: steps between decisions (default 100) */
	int backoff;                /* bitwave: decisions a kind is held once added back */
	float freeze;               /* bitwave: fraction of the run after which widths hold */
	int m_min;                  /* quantum and bitwave: mantissa floor (default 1) */
	int e_min;                  /* quantum and bitwave: exponent floor (default 3) */
	int refine_bias;            /* enum sfp_cfg_refine_bias: decoder bias correction, "off" (default) */
	int refine_shift;           /* entropy-gradient shift (default 0); docs/refine.md */
} sfp_cfg_bitlength;

/* BitPruning fine-tune (`sfp export`, docs/bitpruning.md): learned integer
 * widths for the weights of linear/conv layers, from a float checkpoint. */
typedef struct sfp_cfg_prune {
	int granularity;                /* enum sfp_prune_granularity: "channel" (default) or "layer" */
	int penalty;                    /* enum sfp_prune_penalty: "memory" (default: bits per weight) or "ops" (per MAC) */
	int activations;                /* quantize the inputs of linear/conv layers too */
	float gamma;                    /* penalty weight */
	int steps;                      /* fine-tune steps learning the widths */
	int fix_steps;                  /* then steps at the rounded widths (weights only) */
	float bits;                     /* starting width (default 8) */
	int min_bits, max_bits;         /* range of the widths (default 2, 8), in 2..16 */
	int optimizer;                  /* enum sfp_prune_optim, of the widths: "adam" (default) or "sgd" */
	float lr;                       /* learning rate of the widths */
	float weight_lr;                /* weights' learning rate, cosine to 0 over the fine-tune */
} sfp_cfg_prune;

typedef struct sfp_cfg_parallel {
	int pipeline_stages;          /* default 1 */
	int transport;                /* enum sfp_cfg_transport: "mpi" (default) or "nng" */
	int micro_batches;            /* per replica batch with stages > 1 (0: 2 x stages) */
	int schedule;                 /* enum sfp_cfg_pipe_schedule: "gpipe" (default) or "1f1b" */
	int grad_e, grad_m;           /* gradient containers on the wire (default 8, 23: lossless) */
	int grad_gecko;               /* Gecko on gradient exponents (default off) */
	int grad_refine_bias;         /* enum sfp_cfg_refine_bias: "off" (default); docs/refine.md */
	int grad_refine_shift;        /* entropy-gradient shift on gradient containers (default 0) */
	int error_feedback;           /* carry gradient rounding into the next step (default on) */
	int allreduce;                /* enum sfp_cfg_allreduce: "auto" (= ring), "ring",
					 "allgather", "native" (MPI_Allreduce, float32: the baseline) */
	int grad_cast;                /* enum sfp_cfg_grad_cast: "none" (containers), "fp16", "bf16" */
	float timeout_s;              /* a peer silent this long has failed (default 60) */
	int nng_endpoint;             /* enum sfp_cfg_nng_endpoint: "tcp" (default, host + port) or "ipc" */
	int nng_port;                 /* nng tcp: base port, + local rank (default 23700) */
	int bucket_kb;                /* gradient buckets of about this many KiB (0: one) */
	int overlap;                  /* exchange a bucket while backward goes on (default on) */
} sfp_cfg_parallel;

typedef struct sfp_cfg_daemon {
	char address[SFP_CFG_PATH]; /* "" = no daemon */
	char token[SFP_CFG_NAME];   /* the job token ("": none; env SFP_TOKEN) */
	char job[SFP_CFG_NAME];     /* the job's name at the daemon ("": the config's file name) */
	int report_every;           /* steps between reports (default 10) */
	float timeout_s;            /* wait for a reply at most this long (default 1) */
} sfp_cfg_daemon;

typedef struct sfp_cfg_log {
	char metrics[SFP_CFG_PATH]; /* JSON-lines metrics log ("" = none) */
	int every;                  /* training record every N steps (default 50) */
} sfp_cfg_log;

typedef struct sfp_cfg_checkpoint {
	char dir[SFP_CFG_PATH]; /* "" = no checkpoints */
	int every_steps;        /* default 0 = only at the end of each epoch */
	int keep;               /* newest checkpoints kept (default 2) */
} sfp_cfg_checkpoint;

typedef struct sfp_config {
	char file[SFP_CFG_PATH]; /* where it was loaded from ("" = defaults only) */
	sfp_cfg_model model;
	sfp_cfg_data data;
	sfp_cfg_train train;
	sfp_cfg_bitlength bitlength;
	sfp_cfg_prune prune;
	sfp_cfg_parallel parallel;
	sfp_cfg_daemon daemon;
	sfp_cfg_log log;
	sfp_cfg_checkpoint checkpoint;
} sfp_config;

/* Every default (an empty model). */
void sfp_config_defaults(sfp_config *cfg);

/* The name of value `value` of the enum-valued key `key` ("bitlength.policy",
 * "bitlength.targets", ...), as a file gives it: sfp_config_enum_name(
 * "parallel.grad_cast", SFP_CAST_BF16) is "bf16". "?" for a key that is not
 * enum-valued or a value out of range; never NULL. */
const char *sfp_config_enum_name(const char *key, int value);

/* Defaults, then the YAML file `path`. Errors name file, line and key. */
int sfp_config_load(sfp_config *cfg, const char *path, sfp_error *err);
/* Same, from a buffer; `name` is used in messages in place of the file name. */
int sfp_config_load_string(sfp_config *cfg, const char *name, const char *text, size_t len,
			   sfp_error *err);

/*
 * Apply one override "section.key=value" (value in YAML scalar syntax; for
 * list-valued keys a flow list "[1, 28, 28]"). Layer keys are addressed by
 * index or name: "model.layers.2.out_features=64", "model.layers.fc1.p=0.2".
 * Errors name the override.
 */
int sfp_config_set(sfp_config *cfg, const char *assignment, sfp_error *err);

/* Cross-field checks after loading and overriding (e.g. step schedule needs
 * step_every, batch_size > 0, an empty layer list). */
int sfp_config_validate(const sfp_config *cfg, sfp_error *err);

/* What a command line does: load `path`, apply the `nsets` overrides in
 * order, validate. */
int sfp_config_load_all(sfp_config *cfg, const char *path, const char *const *sets, int nsets,
			sfp_error *err);

#ifdef __cplusplus
}
#endif
#endif
