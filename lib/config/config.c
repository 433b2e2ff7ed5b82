/*
 * config.c -- YAML job configuration -> sfp_config, strictly.
 *
 * libyaml builds a node tree with line numbers; one table of key descriptors
 * (path, type, field offset, range) drives both the file walk and `--set`,
 * so a key accepted in a file is accepted on the command line with the same
 * checks and the same messages. Layers have their own table, where each key
 * lists the layer types that take it.
 *
 * Errors: "FILE:LINE: section.key: what is wrong", or for an override
 * "--set section.key=value: what is wrong".
 */
#include <errno.h>
#include <limits.h>
#include <math.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <assert.h>
#include <string.h>
#include <yaml.h>

#include "sfp/config.h"

enum kind { K_INT, K_I64, K_U64, K_FLOAT, K_BOOL, K_STR, K_ENUM, K_INTLIST, K_ENUMLIST };

/*
 * One row per key: where it goes, its checks, and its default in the
 * syntax a file would give it (NULL: zero / empty), which
 * sfp_config_defaults stores through the same setter as a file's value.
 * An enum key stores the index of its value in `choices`, so each names
 * table is in the order of its enum in sfp/config.h.
 */
typedef struct key_desc {
	const char *path;
	int kind;
	size_t off;
	double lo, hi;         /* numeric range (inclusive) */
	size_t cap;            /* K_STR: field size; lists: max items */
	const char *const *choices; /* K_ENUM / K_ENUMLIST: value names, NULL-terminated */
	const char *def;       /* default value; a list's items separated by ", " */
} key_desc;

static const char *const datasets[] = {"fashion-mnist", "npy", "idx", "cifar10", "tokens", NULL};
static const char *const augments[] = {"crop", "flip", NULL};
static const char *const optimizers[] = {"sgd", "adamw", NULL};
static const char *const schedules[] = {"constant", "step", "cosine", NULL};
static const char *const policies[] = {"fixed", "quantum", "bitwave", NULL};
static const char *const refine_biases[] = {"off", "tensor", NULL};
static const char *const targets[] = {"weights", "activations", "gradients", NULL};
static const char *const granularities[] = {"layer", "channel", NULL};
static const char *const penalties[] = {"memory", "ops", NULL};
static const char *const width_optims[] = {"adam", "sgd", NULL};
static const char *const transports[] = {"mpi", "nng", NULL};
static const char *const allreduces[] = {"auto", "ring", "allgather", "native", NULL};
static const char *const casts[] = {"none", "fp16", "bf16", NULL};
static const char *const nng_schemes[] = {"tcp", "ipc", NULL};
static const char *const pipe_schedules[] = {"gpipe", "1f1b", NULL};

/* each table ends with its enum's last value (then the NULL) */
#define LAST_IS(tab, last) static_assert(sizeof tab / sizeof tab[0] == (last) + 2, #tab)
LAST_IS(datasets, SFP_DATASET_TOKENS);
LAST_IS(augments, SFP_AUGMENT_FLIP);
LAST_IS(optimizers, SFP_OPTIMIZER_ADAMW);
LAST_IS(schedules, SFP_SCHEDULE_COSINE);
LAST_IS(policies, SFP_POLICY_BITWAVE);
LAST_IS(refine_biases, SFP_REFINE_BIAS_TENSOR);
LAST_IS(targets, SFP_TARGET_GRADIENTS);
LAST_IS(granularities, SFP_PRUNE_CHANNEL);
LAST_IS(penalties, SFP_PRUNE_OPS);
LAST_IS(width_optims, SFP_PRUNE_SGD);
LAST_IS(transports, SFP_TRANSPORT_NNG);
LAST_IS(allreduces, SFP_CFG_ALLREDUCE_NATIVE);
LAST_IS(casts, SFP_GRAD_CAST_BF16);
LAST_IS(nng_schemes, SFP_NNG_IPC);
LAST_IS(pipe_schedules, SFP_PIPE_1F1B);

#define F(field) offsetof(sfp_config, field)
#define STR(path, field, def) {path, K_STR, F(field), 0, 0, sizeof(((sfp_config *)0)->field), NULL, def}
#define ENUM(path, field, ch, def) {path, K_ENUM, F(field), 0, 0, 0, ch, def}

static const key_desc keys[] = {
	{"model.input", K_INTLIST, F(model.input), 1, 1 << 20, SFP_CFG_MAX_DIMS - 1, NULL, NULL},
	ENUM("data.dataset", data.dataset, datasets, "fashion-mnist"),
	STR("data.path", data.path, "/usr/share/datasets/fashion-mnist"),
	{"data.normalize", K_BOOL, F(data.normalize), 0, 1, 0, NULL, "true"},
	{"data.shuffle", K_BOOL, F(data.shuffle), 0, 1, 0, NULL, "true"},
	{"data.train_limit", K_INT, F(data.train_limit), 0, INT_MAX, 0, NULL, NULL},
	{"data.test_limit", K_INT, F(data.test_limit), 0, INT_MAX, 0, NULL, NULL},
	STR("data.train.x", data.train_x, NULL),
	STR("data.train.y", data.train_y, NULL),
	STR("data.test.x", data.test_x, NULL),
	STR("data.test.y", data.test_y, NULL),
	{"data.val_fraction", K_FLOAT, F(data.val_fraction), 0, 0.9, 0, NULL, "0.1"},
	{"data.classes", K_INT, F(data.classes), 0, 256, 0, NULL, NULL},
	{"data.augment", K_ENUMLIST, F(data.augment), 0, 0, SFP_CFG_MAX_AUGMENT, augments, NULL},
	{"data.token_bytes", K_INT, F(data.token_bytes), 1, 2, 0, NULL, "2"},
	{"data.seq_len", K_INT, F(data.seq_len), 1, 1 << 20, 0, NULL, "256"},
	{"train.epochs", K_INT, F(train.epochs), 1, 1000000, 0, NULL, "1"},
	{"train.max_steps", K_I64, F(train.max_steps), 0, 1e15, 0, NULL, NULL},
	{"train.batch_size", K_INT, F(train.batch_size), 1, 1 << 20, 0, NULL, "64"},
	{"train.seed", K_U64, F(train.seed), 0, 1.8e19, 0, NULL, "1"},
	{"train.threads", K_INT, F(train.threads), 1, 256, 0, NULL, "1"},
	{"train.eval_every_epochs", K_INT, F(train.eval_every_epochs), 0, 1000000, 0, NULL, "1"},
	ENUM("train.optimizer.type", train.optimizer.type, optimizers, "sgd"),
	{"train.optimizer.lr", K_FLOAT, F(train.optimizer.lr), 0, 1e6, 0, NULL, "0.01"},
	{"train.optimizer.momentum", K_FLOAT, F(train.optimizer.momentum), 0, 1, 0, NULL, "0.9"},
	{"train.optimizer.nesterov", K_BOOL, F(train.optimizer.nesterov), 0, 1, 0, NULL, NULL},
	{"train.optimizer.weight_decay", K_FLOAT, F(train.optimizer.weight_decay), 0, 1e3, 0, NULL, NULL},
	{"train.optimizer.beta1", K_FLOAT, F(train.optimizer.beta1), 0, 0.999999, 0, NULL, "0.9"},
	{"train.optimizer.beta2", K_FLOAT, F(train.optimizer.beta2), 0, 0.999999999, 0, NULL, "0.999"},
	{"train.optimizer.eps", K_FLOAT, F(train.optimizer.eps), 1e-30, 1, 0, NULL, "1e-8"},
	ENUM("train.schedule.type", train.schedule.type, schedules, "constant"),
	{"train.schedule.warmup_steps", K_INT, F(train.schedule.warmup_steps), 0, INT_MAX, 0, NULL, NULL},
	{"train.schedule.step_every", K_INT, F(train.schedule.step_every), 1, INT_MAX, 0, NULL, NULL},
	{"train.schedule.gamma", K_FLOAT, F(train.schedule.gamma), 0, 1, 0, NULL, "0.1"},
	{"train.schedule.min_lr", K_FLOAT, F(train.schedule.min_lr), 0, 1e6, 0, NULL, NULL},
	ENUM("bitlength.policy", bitlength.policy, policies, "fixed"),
	{"bitlength.targets", K_ENUMLIST, F(bitlength.targets), 0, 0, SFP_CFG_MAX_TARGETS, targets, "weights, activations"},
	{"bitlength.e", K_FLOAT, F(bitlength.e), 1, 8, 0, NULL, "8"},
	{"bitlength.m", K_FLOAT, F(bitlength.m), 0, 23, 0, NULL, "23"},
	{"bitlength.gamma", K_FLOAT, F(bitlength.gamma), 0, 1e6, 0, NULL, "0.05"},
	{"bitlength.gecko", K_BOOL, F(bitlength.gecko), 0, 1, 0, NULL, NULL},
	{"bitlength.pack", K_BOOL, F(bitlength.pack), 0, 1, 0, NULL, "true"},
	{"bitlength.pack_weights", K_BOOL, F(bitlength.pack_weights), 0, 1, 0, NULL, NULL},
	{"bitlength.grad_e", K_INT, F(bitlength.grad_e), 1, 8, 0, NULL, "5"},
	{"bitlength.grad_m", K_INT, F(bitlength.grad_m), 0, 23, 0, NULL, "2"},
	{"bitlength.lr", K_FLOAT, F(bitlength.lr), 0, 1e6, 0, NULL, "0.05"},
	{"bitlength.ema", K_FLOAT, F(bitlength.ema), 0.001, 0.999999, 0, NULL, "0.9"},
	{"bitlength.threshold", K_FLOAT, F(bitlength.threshold), 0, 1, 0, NULL, "0.02"},
	{"bitlength.period", K_INT, F(bitlength.period), 1, INT_MAX, 0, NULL, "100"},
	{"bitlength.backoff", K_INT, F(bitlength.backoff), 0, 1024, 0, NULL, "2"},
	{"bitlength.freeze", K_FLOAT, F(bitlength.freeze), 0, 1, 0, NULL, "1"},
	{"bitlength.m_min", K_INT, F(bitlength.m_min), 0, 23, 0, NULL, "1"},
	{"bitlength.e_min", K_INT, F(bitlength.e_min), 1, 8, 0, NULL, "3"},
	ENUM("bitlength.refine_bias", bitlength.refine_bias, refine_biases, "off"),
	{"bitlength.refine_shift", K_BOOL, F(bitlength.refine_shift), 0, 1, 0, NULL, NULL},
	ENUM("prune.granularity", prune.granularity, granularities, "channel"),
	ENUM("prune.penalty", prune.penalty, penalties, "memory"),
	{"prune.activations", K_BOOL, F(prune.activations), 0, 1, 0, NULL, NULL},
	{"prune.gamma", K_FLOAT, F(prune.gamma), 0, 1e6, 0, NULL, "0.01"},
	{"prune.steps", K_INT, F(prune.steps), 0, INT_MAX, 0, NULL, "1000"},
	{"prune.fix_steps", K_INT, F(prune.fix_steps), 0, INT_MAX, 0, NULL, "200"},
	{"prune.bits", K_FLOAT, F(prune.bits), 2, 16, 0, NULL, "8"},
	{"prune.min_bits", K_INT, F(prune.min_bits), 2, 16, 0, NULL, "2"},
	{"prune.max_bits", K_INT, F(prune.max_bits), 2, 16, 0, NULL, "8"},
	ENUM("prune.optimizer", prune.optimizer, width_optims, "adam"),
	{"prune.lr", K_FLOAT, F(prune.lr), 0, 1e6, 0, NULL, "0.01"},
	{"prune.weight_lr", K_FLOAT, F(prune.weight_lr), 0, 1e6, 0, NULL, "0.005"},
	{"parallel.pipeline_stages", K_INT, F(parallel.pipeline_stages), 1, 4096, 0, NULL, "1"},
	ENUM("parallel.transport", parallel.transport, transports, "mpi"),
	{"parallel.micro_batches", K_INT, F(parallel.micro_batches), 0, 65536, 0, NULL, NULL},
	ENUM("parallel.schedule", parallel.schedule, pipe_schedules, "gpipe"),
	{"parallel.grad_e", K_INT, F(parallel.grad_e), 1, 8, 0, NULL, "8"},
	{"parallel.grad_m", K_INT, F(parallel.grad_m), 0, 23, 0, NULL, "23"},
	{"parallel.grad_gecko", K_BOOL, F(parallel.grad_gecko), 0, 1, 0, NULL, NULL},
	ENUM("parallel.grad_refine_bias", parallel.grad_refine_bias, refine_biases, "off"),
	{"parallel.grad_refine_shift", K_BOOL, F(parallel.grad_refine_shift), 0, 1, 0, NULL, NULL},
	{"parallel.error_feedback", K_BOOL, F(parallel.error_feedback), 0, 1, 0, NULL, "true"},
	ENUM("parallel.allreduce", parallel.allreduce, allreduces, "auto"),
	ENUM("parallel.grad_cast", parallel.grad_cast, casts, "none"),
	{"parallel.timeout_s", K_FLOAT, F(parallel.timeout_s), 0, 1e6, 0, NULL, "60"},
	ENUM("parallel.nng_endpoint", parallel.nng_endpoint, nng_schemes, "tcp"),
	{"parallel.nng_port", K_INT, F(parallel.nng_port), 1, 65535, 0, NULL, "23700"},
	{"parallel.bucket_kb", K_INT, F(parallel.bucket_kb), 0, 1 << 20, 0, NULL, "256"},
	{"parallel.overlap", K_BOOL, F(parallel.overlap), 0, 1, 0, NULL, "true"},
	STR("daemon.address", daemon.address, NULL),
	STR("daemon.token", daemon.token, NULL),
	STR("daemon.job", daemon.job, NULL),
	{"daemon.report_every", K_INT, F(daemon.report_every), 1, INT_MAX, 0, NULL, "10"},
	{"daemon.timeout_s", K_FLOAT, F(daemon.timeout_s), 0.001, 3600, 0, NULL, "1"},
	STR("log.metrics", log.metrics, NULL),
	{"log.every", K_INT, F(log.every), 1, INT_MAX, 0, NULL, "50"},
	STR("checkpoint.dir", checkpoint.dir, NULL),
	{"checkpoint.every_steps", K_INT, F(checkpoint.every_steps), 0, INT_MAX, 0, NULL, NULL},
	{"checkpoint.keep", K_INT, F(checkpoint.keep), 1, 1000, 0, NULL, "2"},
};

/* ---- layers ------------------------------------------------------------ */
enum {
	T_LINEAR = 1 << 0,
	T_CONV = 1 << 1,
	T_MAXPOOL = 1 << 2,
	T_AVGPOOL = 1 << 3,
	T_RELU = 1 << 4,
	T_GELU = 1 << 5,
	T_TANH = 1 << 6,
	T_FLATTEN = 1 << 7,
	T_DROPOUT = 1 << 8,
	T_BN = 1 << 9,
	T_ADD = 1 << 10,
	T_PLUGIN = 1 << 11,
	T_EMBEDDING = 1 << 12,
	T_POSITION = 1 << 13,
	T_LAYERNORM = 1 << 14,
	T_ATTENTION = 1 << 15,
	T_POOL = T_MAXPOOL | T_AVGPOOL
};

static const char *const layer_types[] = {"linear",  "conv2d",    "maxpool", "avgpool",
					  "relu",    "gelu",      "tanh",    "flatten",
					  "dropout", "batchnorm", "add",     "plugin",
					  "embedding", "position", "layernorm", "attention"};
#define N_LAYER_TYPES (int)(sizeof layer_types / sizeof layer_types[0])

#define LF(field) offsetof(sfp_cfg_layer, field)
typedef struct layer_key {
	const char *name;
	int kind;
	size_t off;
	double lo, hi;
	size_t cap;
	int types;    /* layer types that take this key */
	int required; /* types that must give it */
} layer_key;

static const layer_key lkeys[] = {
	{"name", K_STR, LF(name), 0, 0, SFP_CFG_NAME, ~0, 0},
	{"out_features", K_INT, LF(out_features), 1, 1 << 24, 0, T_LINEAR, T_LINEAR},
	{"out_channels", K_INT, LF(out_channels), 1, 1 << 16, 0, T_CONV, T_CONV},
	{"kernel", K_INT, LF(kernel), 1, 1024, 0, T_CONV | T_POOL, T_CONV},
	{"stride", K_INT, LF(stride), 1, 1024, 0, T_CONV | T_POOL, 0},
	{"padding", K_INT, LF(padding), 0, 1024, 0, T_CONV | T_POOL, 0},
	{"bias", K_BOOL, LF(bias), 0, 1, 0, T_LINEAR | T_CONV, 0},
	{"p", K_FLOAT, LF(p), 0, 0.999999, 0, T_DROPOUT, 0},
	{"eps", K_FLOAT, LF(eps), 1e-30, 1, 0, T_BN | T_LAYERNORM, 0},
	{"momentum", K_FLOAT, LF(momentum), 0, 1, 0, T_BN, 0},
	{"from", K_STR, LF(from), 0, 0, SFP_CFG_NAME, T_ADD, T_ADD},
	{"tie", K_STR, LF(tie), 0, 0, SFP_CFG_NAME, T_LINEAR, 0},
	{"vocab", K_INT, LF(vocab), 1, 1 << 24, 0, T_EMBEDDING, T_EMBEDDING},
	{"dim", K_INT, LF(dim), 1, 1 << 16, 0, T_EMBEDDING, T_EMBEDDING},
	{"heads", K_INT, LF(heads), 1, 1 << 12, 0, T_ATTENTION, T_ATTENTION},
	{"causal", K_BOOL, LF(causal), 0, 1, 0, T_ATTENTION, 0},
	{"library", K_STR, LF(library), 0, 0, SFP_CFG_PATH, T_PLUGIN, T_PLUGIN},
	{"symbol", K_STR, LF(symbol), 0, 0, SFP_CFG_NAME, T_PLUGIN, 0},
};

/* ---- the walk ---------------------------------------------------------- */
typedef struct walker {
	const char *file;  /* for messages; NULL for --set */
	const char *assign; /* the override text, for --set messages */
	yaml_document_t *doc;
	sfp_config *cfg;
	sfp_error *err;
} walker;

/* "FILE:LINE: path: message" or "--set ASSIGN: message" */
__attribute__((format(printf, 4, 5))) static int fail(walker *w, const yaml_node_t *n,
						      const char *path, const char *fmt, ...)
{
	char msg[200];
	va_list ap;
	va_start(ap, fmt);
	vsnprintf(msg, sizeof msg, fmt, ap);
	va_end(ap);
	if (w->assign)
		return sfp_error_set(w->err, SFP_EINVAL, "--set %s: %s", w->assign, msg);
	int line = n ? (int)n->start_mark.line + 1 : 0;
	if (path && path[0])
		return sfp_error_set(w->err, SFP_EINVAL, "%s:%d: %s: %s", w->file, line, path, msg);
	return sfp_error_set(w->err, SFP_EINVAL, "%s:%d: %s", w->file, line, msg);
}

static yaml_node_t *node(walker *w, int id)
{
	return yaml_document_get_node(w->doc, id);
}

static const char *scalar(const yaml_node_t *n)
{
	return n && n->type == YAML_SCALAR_NODE ? (const char *)n->data.scalar.value : NULL;
}

static const char *node_kind(const yaml_node_t *n)
{
	if (!n)
		return "nothing";
	return n->type == YAML_MAPPING_NODE ? "a mapping" : n->type == YAML_SEQUENCE_NODE ? "a list" : "a scalar";
}

static int parse_i64(const char *s, long long *v)
{
	char *end;
	errno = 0;
	long long x = strtoll(s, &end, 10);
	if (!s[0] || *end || errno)
		return -1;
	*v = x;
	return 0;
}

static int parse_u64(const char *s, unsigned long long *v)
{
	char *end;
	errno = 0;
	if (!s[0] || s[0] == '-')
		return -1;
	unsigned long long x = strtoull(s, &end, 10);
	if (*end || errno)
		return -1;
	*v = x;
	return 0;
}

static int parse_float(const char *s, double *v)
{
	char *end;
	errno = 0;
	double x = strtod(s, &end);
	if (!s[0] || *end || errno || !isfinite(x))
		return -1;
	*v = x;
	return 0;
}

static int parse_bool(const char *s, int *v)
{
	static const char *const t[] = {"true", "yes", "on", "1"}, *const f[] = {"false", "no", "off", "0"};
	for (int i = 0; i < 4; i++) {
		if (!strcmp(s, t[i])) {
			*v = 1;
			return 0;
		}
		if (!strcmp(s, f[i])) {
			*v = 0;
			return 0;
		}
	}
	return -1;
}

/* Index of `s` in `ch`, or -1. */
static int choice_index(const char *s, const char *const *ch)
{
	for (int i = 0; ch[i]; i++)
		if (!strcmp(s, ch[i]))
			return i;
	return -1;
}

static void list_choices(char *buf, size_t cap, const char *const *ch)
{
	buf[0] = 0;
	for (int i = 0; ch[i]; i++) {
		size_t l = strlen(buf);
		snprintf(buf + l, cap - l, "%s%s", i ? ", " : "", ch[i]);
	}
}

/* Store value `s` of `kind` into `dst`; `n` (may be NULL) places messages. */
static int set_text(walker *w, const yaml_node_t *n, const char *s, const char *path, int kind,
		    void *dst, double lo, double hi, size_t cap, const char *const *choices)
{
	char buf[160];
	switch (kind) {
	case K_INT:
	case K_I64: {
		long long v;
		if (parse_i64(s, &v) < 0)
			return fail(w, n, path, "expected an integer, got '%s'", s);
		if ((double)v < lo || (double)v > hi)
			return fail(w, n, path, "%lld is out of range [%.0f, %.0f]", v, lo, hi);
		if (kind == K_INT)
			*(int *)dst = (int)v;
		else
			*(int64_t *)dst = v;
		return SFP_OK;
	}
	case K_U64: {
		unsigned long long v;
		if (parse_u64(s, &v) < 0)
			return fail(w, n, path, "expected a non-negative integer, got '%s'", s);
		*(uint64_t *)dst = v;
		return SFP_OK;
	}
	case K_FLOAT: {
		double v;
		if (parse_float(s, &v) < 0)
			return fail(w, n, path, "expected a number, got '%s'", s);
		if (v < lo || v > hi)
			return fail(w, n, path, "%g is out of range [%g, %g]", v, lo, hi);
		*(float *)dst = (float)v;
		return SFP_OK;
	}
	case K_BOOL:
		if (parse_bool(s, (int *)dst) < 0)
			return fail(w, n, path, "expected true or false, got '%s'", s);
		return SFP_OK;
	case K_ENUM: {
		int i = choice_index(s, choices);
		if (i < 0) {
			list_choices(buf, sizeof buf, choices);
			return fail(w, n, path, "'%s' is not one of: %s", s, buf);
		}
		*(int *)dst = i;
		return SFP_OK;
	}
	case K_STR:
		if (strlen(s) >= cap)
			return fail(w, n, path, "longer than %zu characters", cap - 1);
		memcpy(dst, s, strlen(s) + 1);
		return SFP_OK;
	}
	return fail(w, n, path, "internal: unknown key kind");
}

/* Store one scalar node of `kind` into `dst`. */
static int set_scalar(walker *w, const yaml_node_t *n, const char *path, int kind, void *dst,
		      double lo, double hi, size_t cap, const char *const *choices)
{
	const char *s = scalar(n);
	if (!s)
		return fail(w, n, path, "expected a value, got %s", node_kind(n));
	return set_text(w, n, s, path, kind, dst, lo, hi, cap, choices);
}

/* Item `i` of list key `k`: an int (model.input) or an enum index. */
static int set_item(walker *w, const key_desc *k, const yaml_node_t *n, const char *s, int i)
{
	int kind = k->kind == K_INTLIST ? K_INT : K_ENUM;
	return set_text(w, n, s, k->path, kind, (int *)((char *)w->cfg + k->off) + i, k->lo, k->hi,
			0, k->choices);
}

static void set_count(walker *w, const key_desc *k, int count)
{
	if (k->kind == K_INTLIST)
		w->cfg->model.input_ndim = count;
	else if (k->off == F(data.augment))
		w->cfg->data.n_augment = count;
	else
		w->cfg->bitlength.n_targets = count;
}

static int set_key(walker *w, const key_desc *k, const yaml_node_t *n)
{
	if (k->kind == K_INTLIST || k->kind == K_ENUMLIST) {
		if (!n || n->type != YAML_SEQUENCE_NODE)
			return fail(w, n, k->path, "expected a list, got %s", node_kind(n));
		int count = (int)(n->data.sequence.items.top - n->data.sequence.items.start);
		if (count > (int)k->cap || (k->kind == K_INTLIST && count < 1))
			return fail(w, n, k->path, "expected 1 to %zu items, got %d", k->cap, count);
		for (int i = 0; i < count; i++) {
			yaml_node_t *it = node(w, n->data.sequence.items.start[i]);
			const char *s = scalar(it);
			if (!s)
				return fail(w, it, k->path, "expected a value, got %s", node_kind(it));
			SFP_TRY(set_item(w, k, it, s, i));
		}
		set_count(w, k, count);
		return SFP_OK;
	}
	return set_scalar(w, n, k->path, k->kind, (char *)w->cfg + k->off, k->lo, k->hi, k->cap,
			  k->choices);
}

/* Store key `k`'s default; a default that its own checks refuse is a bug. */
static void set_default(walker *w, const key_desc *k)
{
	int rc = SFP_OK;
	if (k->kind == K_INTLIST || k->kind == K_ENUMLIST) {
		char item[SFP_CFG_NAME];
		const char *p = k->def;
		int count = 0;
		while (rc == SFP_OK && *p) {
			size_t l = strcspn(p, ",");
			assert(l < sizeof item && count < (int)k->cap);
			memcpy(item, p, l);
			item[l] = 0;
			rc = set_item(w, k, NULL, item, count++);
			p += l + strspn(p + l, ", ");
		}
		set_count(w, k, count);
	} else {
		rc = set_text(w, NULL, k->def, k->path, k->kind, (char *)w->cfg + k->off, k->lo, k->hi,
			      k->cap, k->choices);
	}
	assert(rc == SFP_OK);
	(void)rc;
}

static const key_desc *find_key(const char *path)
{
	for (size_t i = 0; i < sizeof keys / sizeof keys[0]; i++)
		if (!strcmp(keys[i].path, path))
			return &keys[i];
	return NULL;
}

/* Is `path` a section or sub-section (a prefix of some key)? */
static int is_section(const char *path)
{
	size_t l = strlen(path);
	if (!strcmp(path, "model"))
		return 1;
	for (size_t i = 0; i < sizeof keys / sizeof keys[0]; i++)
		if (!strncmp(keys[i].path, path, l) && keys[i].path[l] == '.')
			return 1;
	return 0;
}

static int type_bit(const char *type)
{
	for (int i = 0; i < N_LAYER_TYPES; i++)
		if (!strcmp(type, layer_types[i]))
			return 1 << i;
	return 0;
}

static void layer_defaults(sfp_cfg_layer *l)
{
	memset(l, 0, sizeof *l);
	l->bias = 1;
	l->p = 0.5f;
	l->eps = 1e-5f;
	l->momentum = 0.1f;
	l->causal = 1;
}

/* One key of a layer: `name` with value node v into layer l (index i). */
static int set_layer_key(walker *w, sfp_cfg_layer *l, int i, const char *name,
			 const yaml_node_t *v)
{
	char path[160];
	snprintf(path, sizeof path, "model.layers[%d].%s", i, name);
	int tb = type_bit(l->type);
	if (!strcmp(name, "args") && tb == T_PLUGIN) {
		if (!v || v->type != YAML_MAPPING_NODE)
			return fail(w, v, path, "expected a mapping of plug-in arguments, got %s",
				    node_kind(v));
		l->n_args = 0;
		for (yaml_node_pair_t *p = v->data.mapping.pairs.start; p < v->data.mapping.pairs.top;
		     p++) {
			const char *ks = scalar(node(w, p->key)), *vs = scalar(node(w, p->value));
			if (!ks || !vs)
				return fail(w, node(w, p->key), path, "arguments must be scalars");
			if (l->n_args == SFP_CFG_MAX_PLUGIN_ARGS)
				return fail(w, node(w, p->key), path, "more than %d arguments",
					    SFP_CFG_MAX_PLUGIN_ARGS);
			if (strlen(ks) >= SFP_CFG_NAME || strlen(vs) >= SFP_CFG_NAME)
				return fail(w, node(w, p->key), path,
					    "argument '%.40s' is longer than %d characters", ks,
					    SFP_CFG_NAME - 1);
			snprintf(l->args[l->n_args].key, SFP_CFG_NAME, "%s", ks);
			snprintf(l->args[l->n_args].value, SFP_CFG_NAME, "%s", vs);
			l->n_args++;
		}
		return SFP_OK;
	}
	for (size_t k = 0; k < sizeof lkeys / sizeof lkeys[0]; k++) {
		if (strcmp(lkeys[k].name, name) != 0)
			continue;
		if (!(lkeys[k].types & tb))
			break;
		return set_scalar(w, v, path, lkeys[k].kind, (char *)l + lkeys[k].off, lkeys[k].lo,
				  lkeys[k].hi, lkeys[k].cap, NULL);
	}
	char p2[SFP_CFG_NAME + 40];
	snprintf(p2, sizeof p2, "model.layers[%d] (%s)", i, l->type);
	return fail(w, v, p2, "unknown key '%s'", name);
}

static int dup_key(walker *w, const yaml_node_t *map, yaml_node_pair_t *upto, const char *k)
{
	for (yaml_node_pair_t *p = map->data.mapping.pairs.start; p < upto; p++) {
		const char *ks = scalar(node(w, p->key));
		if (ks && !strcmp(ks, k))
			return 1;
	}
	return 0;
}

static int walk_layers(walker *w, const yaml_node_t *seq)
{
	if (seq->type != YAML_SEQUENCE_NODE)
		return fail(w, seq, "model.layers", "expected a list of layers, got %s",
			    node_kind(seq));
	int count = (int)(seq->data.sequence.items.top - seq->data.sequence.items.start);
	if (count > SFP_CFG_MAX_LAYERS)
		return fail(w, seq, "model.layers", "more than %d layers", SFP_CFG_MAX_LAYERS);
	sfp_cfg_model *m = &w->cfg->model;
	m->n_layers = 0;
	for (int i = 0; i < count; i++) {
		yaml_node_t *ln = node(w, seq->data.sequence.items.start[i]);
		char path[64];
		snprintf(path, sizeof path, "model.layers[%d]", i);
		if (!ln || ln->type != YAML_MAPPING_NODE)
			return fail(w, ln, path, "expected a mapping with a 'type', got %s",
				    node_kind(ln));
		sfp_cfg_layer *l = &m->layers[i];
		layer_defaults(l);
		l->line = (int)ln->start_mark.line + 1;
		const yaml_node_t *tn = NULL;
		for (yaml_node_pair_t *p = ln->data.mapping.pairs.start; p < ln->data.mapping.pairs.top; p++) {
			const char *ks = scalar(node(w, p->key));
			if (ks && !strcmp(ks, "type"))
				tn = node(w, p->value);
		}
		if (!tn)
			return fail(w, ln, path, "a layer needs a 'type'");
		const char *ts = scalar(tn);
		if (!ts || !type_bit(ts)) {
			char buf[200];
			buf[0] = 0;
			for (int t = 0; t < N_LAYER_TYPES; t++) {
				size_t bl = strlen(buf);
				snprintf(buf + bl, sizeof buf - bl, "%s%s", t ? ", " : "", layer_types[t]);
			}
			char p2[80];
			snprintf(p2, sizeof p2, "%s.type", path);
			return fail(w, tn, p2, "unknown layer type '%s' (one of: %s)", ts ? ts : "?", buf);
		}
		snprintf(l->type, sizeof l->type, "%s", ts);
		for (yaml_node_pair_t *p = ln->data.mapping.pairs.start; p < ln->data.mapping.pairs.top; p++) {
			yaml_node_t *kn = node(w, p->key);
			const char *ks = scalar(kn);
			if (!ks)
				return fail(w, kn, path, "keys must be plain names");
			if (dup_key(w, ln, p, ks))
				return fail(w, kn, path, "key '%s' given twice", ks);
			if (!strcmp(ks, "type"))
				continue;
			int rc = set_layer_key(w, l, i, ks, node(w, p->value));
			if (rc < 0)
				return rc;
		}
		m->n_layers = i + 1;
	}
	return SFP_OK;
}

/* Walk mapping `map` whose keys extend `prefix` ("" at the top). */
static int walk_map(walker *w, const yaml_node_t *map, const char *prefix)
{
	if (!map || map->type != YAML_MAPPING_NODE)
		return fail(w, map, prefix, "expected a mapping, got %s", node_kind(map));
	for (yaml_node_pair_t *p = map->data.mapping.pairs.start; p < map->data.mapping.pairs.top; p++) {
		yaml_node_t *kn = node(w, p->key), *vn = node(w, p->value);
		const char *ks = scalar(kn);
		if (!ks)
			return fail(w, kn, prefix, "keys must be plain names");
		char path[160];
		snprintf(path, sizeof path, "%s%s%s", prefix, prefix[0] ? "." : "", ks);
		if (dup_key(w, map, p, ks))
			return fail(w, kn, path, "given twice");
		const key_desc *k = find_key(path);
		int rc;
		if (k)
			rc = set_key(w, k, vn);
		else if (!strcmp(path, "model.layers"))
			rc = walk_layers(w, vn);
		else if (is_section(path))
			rc = walk_map(w, vn, path);
		else if (prefix[0])
			rc = fail(w, kn, prefix, "unknown key '%s'", ks);
		else
			rc = fail(w, kn, NULL,
				  "unknown section '%s' (sections: model, data, train, bitlength, "
				  "prune, parallel, daemon, log, checkpoint)",
				  ks);
		if (rc < 0)
			return rc;
	}
	return SFP_OK;
}

void sfp_config_defaults(sfp_config *c)
{
	memset(c, 0, sizeof *c);
	sfp_error err;
	walker w = {"defaults", NULL, NULL, c, &err};
	for (size_t i = 0; i < sizeof keys / sizeof keys[0]; i++)
		if (keys[i].def)
			set_default(&w, &keys[i]);
}

const char *sfp_config_enum_name(const char *key, int value)
{
	const key_desc *k = find_key(key);
	if (!k || !k->choices || value < 0)
		return "?";
	for (int i = 0; k->choices[i]; i++)
		if (i == value)
			return k->choices[i];
	return "?";
}

/*
 * Refuse nesting deeper than any config needs before building the document:
 * libyaml's loader slows down quadratically with depth (a file of 200,000
 * '[' takes minutes), and a config is at most 5 levels deep.
 */
#define MAX_DEPTH 16

static int check_depth(const char *name, const char *text, size_t len, sfp_error *err)
{
	yaml_parser_t parser;
	yaml_event_t ev;
	int depth = 0, rc = SFP_OK;
	if (!yaml_parser_initialize(&parser))
		return sfp_error_set(err, SFP_ENOMEM, "out of memory");
	yaml_parser_set_input_string(&parser, (const unsigned char *)text, len);
	for (;;) {
		if (!yaml_parser_parse(&parser, &ev))
			break; /* the loader reports syntax errors with their line */
		int type = ev.type;
		int line = (int)ev.start_mark.line + 1;
		yaml_event_delete(&ev);
		if (type == YAML_MAPPING_START_EVENT || type == YAML_SEQUENCE_START_EVENT) {
			if (++depth > MAX_DEPTH) {
				rc = sfp_error_set(err, SFP_EINVAL,
						   "%s:%d: nested more than %d levels deep", name, line,
						   MAX_DEPTH);
				break;
			}
		} else if (type == YAML_MAPPING_END_EVENT || type == YAML_SEQUENCE_END_EVENT) {
			depth--;
		} else if (type == YAML_STREAM_END_EVENT) {
			break;
		}
	}
	yaml_parser_delete(&parser);
	return rc;
}

/* Parse `text` into `doc`; a syntax error becomes "NAME:LINE: problem". */
static int parse_doc(yaml_document_t *doc, const char *name, const char *text, size_t len,
		     sfp_error *err)
{
	SFP_TRY(check_depth(name, text, len, err));
	yaml_parser_t parser;
	if (!yaml_parser_initialize(&parser))
		return sfp_error_set(err, SFP_ENOMEM, "out of memory");
	yaml_parser_set_input_string(&parser, (const unsigned char *)text, len);
	int ok = yaml_parser_load(&parser, doc);
	int rc = SFP_OK;
	if (!ok)
		rc = sfp_error_set(err, SFP_EINVAL, "%s:%d: %s %s", name,
				   (int)parser.problem_mark.line + 1,
				   parser.problem ? parser.problem : "malformed YAML",
				   parser.context ? parser.context : "");
	yaml_parser_delete(&parser);
	return rc;
}

int sfp_config_load_string(sfp_config *cfg, const char *name, const char *text, size_t len,
			   sfp_error *err)
{
	sfp_config_defaults(cfg);
	snprintf(cfg->file, sizeof cfg->file, "%s", name);
	if (memchr(text, 0, len))
		return sfp_error_set(err, SFP_EINVAL, "%s: contains a NUL byte; not a YAML text", name);
	yaml_document_t doc;
	SFP_TRY(parse_doc(&doc, name, text, len, err));
	walker w = {name, NULL, &doc, cfg, err};
	yaml_node_t *root = yaml_document_get_root_node(&doc);
	int rc = SFP_OK;
	if (!root)
		rc = sfp_error_set(err, SFP_EINVAL, "%s: empty config", name);
	else
		rc = walk_map(&w, root, "");
	yaml_document_delete(&doc);
	return rc;
}

int sfp_config_load(sfp_config *cfg, const char *path, sfp_error *err)
{
	void *buf = NULL;
	size_t len = 0;
	sfp_config_defaults(cfg);
	int rc = sfp_file_read(path, &buf, &len, err);
	if (rc < 0)
		return rc;
	rc = sfp_config_load_string(cfg, path, buf, len, err);
	free(buf);
	return rc;
}

static int find_layer(const sfp_config *cfg, const char *sel)
{
	char *end;
	long i = strtol(sel, &end, 10);
	if (sel[0] && !*end)
		return i >= 0 && i < cfg->model.n_layers ? (int)i : -1;
	for (int j = 0; j < cfg->model.n_layers; j++) {
		char def[SFP_CFG_NAME + 16];
		snprintf(def, sizeof def, "%s%d", cfg->model.layers[j].type, j);
		if (!strcmp(cfg->model.layers[j].name, sel) ||
		    (!cfg->model.layers[j].name[0] && !strcmp(def, sel)))
			return j;
	}
	return -1;
}

int sfp_config_set(sfp_config *cfg, const char *assignment, sfp_error *err)
{
	const char *eq = strchr(assignment, '=');
	if (!eq || eq == assignment)
		return sfp_error_set(err, SFP_EINVAL, "--set %s: expected section.key=value",
				     assignment);
	char path[200];
	size_t pl = (size_t)(eq - assignment);
	if (pl >= sizeof path)
		return sfp_error_set(err, SFP_EINVAL, "--set %s: key too long", assignment);
	memcpy(path, assignment, pl);
	path[pl] = 0;
	const char *val = eq + 1;
	yaml_document_t doc;
	/* the value is YAML too ("[1, 28, 28]", "true", "'a b'"); empty means "" */
	const char *text = val[0] ? val : "''";
	int rc = parse_doc(&doc, "--set", text, strlen(text), err);
	if (rc < 0)
		return sfp_error_set(err, SFP_EINVAL, "--set %s: value is not valid YAML", assignment);
	/* a failed override leaves the config as it was (a list may fail midway) */
	sfp_config *saved = malloc(sizeof *saved);
	if (!saved) {
		yaml_document_delete(&doc);
		return sfp_error_set(err, SFP_ENOMEM, "out of memory");
	}
	*saved = *cfg;
	walker w = {NULL, assignment, &doc, cfg, err};
	yaml_node_t *v = yaml_document_get_root_node(&doc);
	const key_desc *k = find_key(path);
	if (k) {
		rc = set_key(&w, k, v);
	} else if (!strncmp(path, "model.layers.", 13)) {
		char *sel = path + 13, *dot = strchr(sel, '.');
		if (!dot) {
			rc = fail(&w, NULL, NULL, "expected model.layers.INDEX_OR_NAME.KEY");
		} else {
			*dot = 0;
			int i = find_layer(cfg, sel);
			if (i < 0)
				rc = fail(&w, NULL, NULL, "no layer '%s'", sel);
			else if (!strcmp(dot + 1, "type"))
				rc = fail(&w, NULL, NULL, "a layer's type cannot be overridden");
			else
				rc = set_layer_key(&w, &cfg->model.layers[i], i, dot + 1, v);
		}
	} else {
		rc = fail(&w, NULL, NULL, "unknown key '%s'", path);
	}
	if (rc < 0)
		*cfg = *saved;
	free(saved);
	yaml_document_delete(&doc);
	return rc;
}

/* Does `name` name one of layers [0, i) (by name, or "<type><index>")? */
static int names_earlier(const sfp_cfg_model *m, int i, const char *name)
{
	for (int j = 0; j < i; j++) {
		char def[SFP_CFG_NAME + 16];
		const char *nm = m->layers[j].name;
		if (!nm[0]) {
			snprintf(def, sizeof def, "%s%d", m->layers[j].type, j);
			nm = def;
		}
		if (!strcmp(nm, name))
			return 1;
	}
	return 0;
}

int sfp_config_validate(const sfp_config *c, sfp_error *err)
{
	const char *f = c->file[0] ? c->file : "config";
	const sfp_cfg_model *m = &c->model;
	if (m->input_ndim < 1)
		return sfp_error_set(err, SFP_EINVAL, "%s: model.input is missing (e.g. [1, 28, 28])", f);
	if (m->n_layers < 1)
		return sfp_error_set(err, SFP_EINVAL, "%s: model.layers is missing or empty", f);
	if (c->train.schedule.type == SFP_SCHEDULE_STEP && c->train.schedule.step_every <= 0)
		return sfp_error_set(err, SFP_EINVAL,
				     "%s: train.schedule.step_every is required by the step schedule", f);
	const sfp_cfg_prune *pr = &c->prune;
	if (pr->min_bits > pr->max_bits || pr->bits < (float)pr->min_bits ||
	    pr->bits > (float)pr->max_bits)
		return sfp_error_set(err, SFP_EINVAL,
				     "%s: prune: need min_bits <= bits <= max_bits (got %d, %g, %d)", f,
				     pr->min_bits, (double)pr->bits, pr->max_bits);
	for (int i = 0; i < m->n_layers; i++) {
		const sfp_cfg_layer *l = &m->layers[i];
		int tb = type_bit(l->type);
		for (size_t k = 0; k < sizeof lkeys / sizeof lkeys[0]; k++) {
			if (!(lkeys[k].required & tb))
				continue;
			const char *fld = (const char *)l + lkeys[k].off;
			int missing = lkeys[k].kind == K_STR ? fld[0] == 0 : *(const int *)fld == 0;
			if (missing)
				return sfp_error_set(err, SFP_EINVAL,
						     "%s:%d: model.layers[%d] (%s): '%s' is required",
						     f, l->line, i, l->type, lkeys[k].name);
		}
		if (l->name[0])
			for (int j = 0; j < i; j++)
				if (!strcmp(m->layers[j].name, l->name))
					return sfp_error_set(err, SFP_EINVAL,
							     "%s:%d: model.layers[%d]: name '%s' is "
							     "already used on line %d",
							     f, l->line, i, l->name, m->layers[j].line);
		if (!strcmp(l->name, SFP_CFG_FROM_INPUT))
			return sfp_error_set(err, SFP_EINVAL,
					     "%s:%d: model.layers[%d]: the name '%s' is reserved "
					     "(an add's `from: %s` reads the model's input)",
					     f, l->line, i, l->name, SFP_CFG_FROM_INPUT);
		if (tb == T_ADD && strcmp(l->from, SFP_CFG_FROM_INPUT) && !names_earlier(m, i, l->from))
			return sfp_error_set(err, SFP_EINVAL,
					     "%s:%d: model.layers[%d].from: '%s' names no "
					     "earlier layer (nor `%s`, the model's input)",
					     f, l->line, i, l->from, SFP_CFG_FROM_INPUT);
		if (l->tie[0] && !names_earlier(m, i, l->tie))
			return sfp_error_set(err, SFP_EINVAL,
					     "%s:%d: model.layers[%d].tie: '%s' names no "
					     "earlier layer",
					     f, l->line, i, l->tie);
	}
	return SFP_OK;
}

int sfp_config_load_all(sfp_config *cfg, const char *path, const char *const *sets, int nsets,
			sfp_error *err)
{
	SFP_TRY(sfp_config_load(cfg, path, err));
	for (int i = 0; i < nsets; i++)
		SFP_TRY(sfp_config_set(cfg, sets[i], err));
	return sfp_config_validate(cfg, err);
}
