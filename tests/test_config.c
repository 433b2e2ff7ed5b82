/*
 * test_config.c -- the YAML config loader: defaults, a full file read back,
 * every class of error with its file, line and key, --set overrides, and
 * the example configs under deploy/examples.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "sfp/config.h"
#include "tests/util/testutil.h"

static sfp_config cfg;

static int load(const char *text, sfp_error *err)
{
	return sfp_config_load_string(&cfg, "t.yaml", text, strlen(text), err);
}

/* Loading `text` fails with SFP_EINVAL and a message containing `want`. */
static void expect_error(const char *text, const char *want)
{
	sfp_error err;
	int rc = load(text, &err);
	if (rc == SFP_OK)
		rc = sfp_config_validate(&cfg, &err);
	CU_ASSERT_EQUAL(rc, SFP_EINVAL);
	if (rc != SFP_EINVAL || !strstr(err.msg, want))
		fprintf(stderr, "\nwanted '%s', got (%d) '%s'", want, rc, rc ? err.msg : "");
	CU_ASSERT_PTR_NOT_NULL(strstr(err.msg, want));
}

static void test_defaults(void)
{
	sfp_config_defaults(&cfg);
	CU_ASSERT_EQUAL(cfg.train.batch_size, 64);
	CU_ASSERT_EQUAL(cfg.train.epochs, 1);
	CU_ASSERT_EQUAL(cfg.train.optimizer.type, SFP_OPTIMIZER_SGD);
	CU_ASSERT_EQUAL(cfg.data.dataset, SFP_DATASET_FASHION_MNIST);
	CU_ASSERT_EQUAL(cfg.bitlength.policy, SFP_POLICY_FIXED);
	CU_ASSERT_EQUAL(cfg.bitlength.n_targets, 2);
	CU_ASSERT_EQUAL(cfg.bitlength.targets[0], SFP_TARGET_WEIGHTS);
	CU_ASSERT_EQUAL(cfg.bitlength.targets[1], SFP_TARGET_ACTIVATIONS);
	CU_ASSERT_EQUAL(cfg.prune.granularity, SFP_PRUNE_CHANNEL);
	CU_ASSERT_EQUAL(cfg.prune.optimizer, SFP_PRUNE_ADAM);
	CU_ASSERT_EQUAL(cfg.parallel.allreduce, SFP_CFG_ALLREDUCE_AUTO);
	CU_ASSERT_EQUAL(cfg.parallel.nng_port, 23700);
	CU_ASSERT_EQUAL(cfg.train.optimizer.eps, 1e-8f);
	CU_ASSERT_EQUAL(cfg.prune.weight_lr, 0.005f);
	CU_ASSERT_STRING_EQUAL(cfg.data.path, "/usr/share/datasets/fashion-mnist");
	CU_ASSERT_DOUBLE_EQUAL(cfg.data.val_fraction, 0.1, 1e-7);
	CU_ASSERT_EQUAL(cfg.data.token_bytes, 2);
	CU_ASSERT_EQUAL(cfg.data.seq_len, 256);
	CU_ASSERT_EQUAL(cfg.data.classes, 0);
	CU_ASSERT_EQUAL(cfg.data.n_augment, 0);
	CU_ASSERT_STRING_EQUAL(cfg.data.train_x, "");
	CU_ASSERT_EQUAL(cfg.bitlength.pack, 1);
	CU_ASSERT_EQUAL(cfg.parallel.pipeline_stages, 1);
	CU_ASSERT_EQUAL(cfg.model.n_layers, 0);
	sfp_error err;
	CU_ASSERT_EQUAL(sfp_config_validate(&cfg, &err), SFP_EINVAL);
	CU_ASSERT_PTR_NOT_NULL(strstr(err.msg, "model.input"));
}

static const char *full = "# every section\n"
			  "model:\n"
			  "  input: [1, 28, 28]\n"
			  "  layers:\n"
			  "    - {type: conv2d, name: c1, out_channels: 8, kernel: 3, padding: 1, bias: false}\n"
			  "    - {type: batchnorm, eps: 0.001, momentum: 0.2}\n"
			  "    - {type: relu}\n"
			  "    - {type: add, from: c1}\n"
			  "    - {type: maxpool, kernel: 3, stride: 2}\n"
			  "    - {type: flatten}\n"
			  "    - {type: dropout, p: 0.25}\n"
			  "    - type: plugin\n"
			  "      library: x.so\n"
			  "      args: {beta: 2, mode: fast}\n"
			  "    - {type: linear, out_features: 10}\n"
			  "data: {dataset: fashion-mnist, path: /tmp/d, normalize: false, shuffle: no,\n"
			  "       train_limit: 100, test_limit: 50}\n"
			  "train:\n"
			  "  epochs: 3\n"
			  "  max_steps: 1000\n"
			  "  batch_size: 32\n"
			  "  seed: 18446744073709551615\n"
			  "  threads: 2\n"
			  "  eval_every_epochs: 0\n"
			  "  optimizer: {type: adamw, lr: 0.001, weight_decay: 0.01, beta1: 0.8, beta2: 0.99, eps: 1e-7}\n"
			  "  schedule: {type: step, warmup_steps: 10, step_every: 100, gamma: 0.5}\n"
			  "bitlength: {policy: quantum, targets: [weights], e: 5, m: 7.5, gamma: 0.1, gecko: true, pack: false}\n"
			  "parallel: {pipeline_stages: 2, transport: nng}\n"
			  "daemon: {address: 'tcp://127.0.0.1:7070', token: s3cret}\n"
			  "log: {metrics: /tmp/m.jsonl, every: 10}\n"
			  "checkpoint: {dir: /tmp/ck, every_steps: 500, keep: 3}\n";

static void test_full_file(void)
{
	sfp_error err;
	int rc = load(full, &err);
	if (rc)
		fprintf(stderr, "\n%s\n", err.msg);
	CU_ASSERT_EQUAL_FATAL(rc, SFP_OK);
	CU_ASSERT_EQUAL(sfp_config_validate(&cfg, &err), SFP_OK);
	CU_ASSERT_EQUAL(cfg.model.input_ndim, 3);
	CU_ASSERT_EQUAL(cfg.model.input[2], 28);
	CU_ASSERT_EQUAL(cfg.model.n_layers, 9);
	sfp_cfg_layer *l = cfg.model.layers;
	CU_ASSERT_STRING_EQUAL(l[0].name, "c1");
	CU_ASSERT_EQUAL(l[0].line, 5);
	CU_ASSERT_EQUAL(l[0].bias, 0);
	CU_ASSERT_EQUAL(l[0].padding, 1);
	CU_ASSERT_DOUBLE_EQUAL(l[1].eps, 0.001, 1e-9);
	CU_ASSERT_DOUBLE_EQUAL(l[1].momentum, 0.2, 1e-7);
	CU_ASSERT_STRING_EQUAL(l[3].from, "c1");
	CU_ASSERT_EQUAL(l[4].stride, 2);
	CU_ASSERT_DOUBLE_EQUAL(l[6].p, 0.25, 1e-7);
	CU_ASSERT_STRING_EQUAL(l[7].library, "x.so");
	CU_ASSERT_EQUAL(l[7].n_args, 2);
	CU_ASSERT_STRING_EQUAL(l[7].args[1].key, "mode");
	CU_ASSERT_STRING_EQUAL(l[7].args[1].value, "fast");
	CU_ASSERT_EQUAL(l[7].line, 12);
	CU_ASSERT_EQUAL(l[8].bias, 1);
	CU_ASSERT_STRING_EQUAL(cfg.data.path, "/tmp/d");
	CU_ASSERT_EQUAL(cfg.data.normalize, 0);
	CU_ASSERT_EQUAL(cfg.data.shuffle, 0);
	CU_ASSERT_EQUAL(cfg.data.test_limit, 50);
	CU_ASSERT_EQUAL(cfg.train.max_steps, 1000);
	CU_ASSERT(cfg.train.seed == 18446744073709551615ull);
	CU_ASSERT_EQUAL(cfg.train.threads, 2);
	CU_ASSERT_EQUAL(cfg.train.eval_every_epochs, 0);
	CU_ASSERT_EQUAL(cfg.train.optimizer.type, SFP_OPTIMIZER_ADAMW);
	CU_ASSERT_DOUBLE_EQUAL(cfg.train.optimizer.beta2, 0.99, 1e-7);
	CU_ASSERT_EQUAL(cfg.train.schedule.type, SFP_SCHEDULE_STEP);
	CU_ASSERT_EQUAL(cfg.train.schedule.step_every, 100);
	CU_ASSERT_EQUAL(cfg.bitlength.n_targets, 1);
	CU_ASSERT_EQUAL(cfg.bitlength.targets[0], SFP_TARGET_WEIGHTS);
	CU_ASSERT_DOUBLE_EQUAL(cfg.bitlength.m, 7.5, 1e-7);
	CU_ASSERT_EQUAL(cfg.bitlength.gecko, 1);
	CU_ASSERT_EQUAL(cfg.bitlength.pack, 0);
	CU_ASSERT_EQUAL(cfg.parallel.transport, SFP_TRANSPORT_NNG);
	CU_ASSERT_STRING_EQUAL(cfg.daemon.address, "tcp://127.0.0.1:7070");
	CU_ASSERT_EQUAL(cfg.checkpoint.keep, 3);
	CU_ASSERT_STRING_EQUAL(cfg.file, "t.yaml");
}

static void test_errors(void)
{
	const char *head = "model:\n  input: [4]\n  layers:\n    - {type: linear, out_features: 2}\n";
	char buf[1024];
#define WITH(tail) (snprintf(buf, sizeof buf, "%s%s", head, tail), buf)
	expect_error(WITH("train:\n  batch_size: many\n"),
		     "t.yaml:6: train.batch_size: expected an integer, got 'many'");
	expect_error(WITH("train:\n  batch_size: -4\n"), "t.yaml:6: train.batch_size: -4 is out of range");
	expect_error(WITH("train:\n  batch_size: 12abc\n"), "expected an integer, got '12abc'");
	expect_error(WITH("train:\n  epochs: 99999999999999999999\n"), "train.epochs: expected an integer");
	expect_error(WITH("train:\n  optimizer: {type: adam}\n"),
		     "t.yaml:6: train.optimizer.type: 'adam' is not one of: sgd, adamw");
	expect_error(WITH("train:\n  optimizer: 3\n"), "train.optimizer: expected a mapping, got a scalar");
	expect_error(WITH("train:\n  bogus: 1\n"), "t.yaml:6: train: unknown key 'bogus'");
	expect_error(WITH("trian:\n  epochs: 1\n"), "t.yaml:5: unknown section 'trian'");
	expect_error(WITH("train:\n  epochs: 1\n  epochs: 2\n"), "t.yaml:7: train.epochs: given twice");
	expect_error(WITH("data:\n  shuffle: maybe\n"), "data.shuffle: expected true or false, got 'maybe'");
	expect_error(WITH("data:\n  dataset: mnist\n"),
		     "data.dataset: 'mnist' is not one of: fashion-mnist, npy, idx, cifar10, tokens");
	expect_error(WITH("data:\n  augment: [crop, rotate]\n"), "data.augment: 'rotate' is not one of: crop, flip");
	expect_error(WITH("data:\n  token_bytes: 4\n"), "data.token_bytes: 4 is out of range [1, 2]");
	expect_error(WITH("data:\n  classes: 300\n"), "data.classes: 300 is out of range [0, 256]");
	expect_error(WITH("data:\n  train: {x: a.npy, z: b.npy}\n"), "data.train: unknown key 'z'");
	expect_error(WITH("bitlength:\n  m: 24\n"), "bitlength.m: 24 is out of range [0, 23]");
	expect_error(WITH("bitlength:\n  targets: [weights, biases]\n"), "'biases' is not one of");
	expect_error(WITH("train:\n  schedule: {type: step}\n"), "step_every is required");
	expect_error(WITH("train:\n  epochs: [1, 2]\n"), "train.epochs: expected a value, got a list");
	expect_error(WITH("train: {epochs: 1\n"), "t.yaml:");
	expect_error(WITH("log:\n  metrics: x\n    y: 1\n"), "t.yaml:");
	memset(buf, 'a', sizeof buf);
	snprintf(buf, sizeof buf, "%sdaemon:\n  token: ", head);
	size_t l = strlen(buf);
	memset(buf + l, 'x', 100);
	buf[l + 100] = '\n';
	buf[l + 101] = 0;
	expect_error(buf, "daemon.token: longer than 63 characters");
#undef WITH
	/* layers */
	expect_error("model:\n  input: [4]\n  layers:\n    - {type: relu, kernel: 3}\n",
		     "t.yaml:4: model.layers[0] (relu): unknown key 'kernel'");
	expect_error("model:\n  input: [4]\n  layers:\n    - {type: lineer}\n",
		     "t.yaml:4: model.layers[0].type: unknown layer type 'lineer'");
	expect_error("model:\n  input: [4]\n  layers:\n    - {out_features: 3}\n",
		     "model.layers[0]: a layer needs a 'type'");
	expect_error("model:\n  input: [4]\n  layers:\n    - {type: linear}\n",
		     "t.yaml:4: model.layers[0] (linear): 'out_features' is required");
	expect_error("model:\n  input: [1, 4, 4]\n  layers:\n    - {type: conv2d, out_channels: 2}\n",
		     "'kernel' is required");
	expect_error("model:\n  input: [4]\n  layers:\n    - {type: dropout, p: 1}\n",
		     "model.layers[0].p: 1 is out of range");
	expect_error("model:\n  input: [4]\n  layers:\n    - {type: linear, out_features: 4, name: a}\n"
		     "    - {type: relu, name: a}\n",
		     "t.yaml:5: model.layers[1]: name 'a' is already used on line 4");
	expect_error("model:\n  input: [4]\n  layers:\n    - {type: add, from: later}\n"
		     "    - {type: linear, out_features: 2, name: later}\n",
		     "model.layers[0].from: 'later' names no earlier layer");
	expect_error("model:\n  input: [4]\n  layers:\n    - {type: linear, out_features: 4, name: input}\n",
		     "t.yaml:4: model.layers[0]: the name 'input' is reserved (an add's `from: input` "
		     "reads the model's input)");
	expect_error("model:\n  input: [4]\n  layers:\n    - {type: linear, out_features: 2, out_features: 3}\n",
		     "key 'out_features' given twice");
	expect_error("model:\n  input: []\n  layers:\n    - {type: relu}\n", "model.input: expected 1 to 3 items");
	expect_error("model:\n  input: [1, 0]\n  layers:\n    - {type: relu}\n", "model.input: 0 is out of range");
	expect_error("model:\n  layers: {type: relu}\n", "model.layers: expected a list of layers");

	/* deep nesting is refused quickly, before the document is built */
	static char deep[200002];
	memset(deep, '[', 200000);
	deep[200000] = '\n';
	deep[200001] = 0;
	CU_ASSERT_EQUAL(sfp_config_load_string(&cfg, "deep.yaml", deep, strlen(deep), NULL), SFP_EINVAL);
	expect_error("a: [[[[[[[[[[[[[[[[[[1]]]]]]]]]]]]]]]]]]\n", "t.yaml:1: nested more than 16 levels deep");

	/* a missing file names the file */
	sfp_error err;
	CU_ASSERT_EQUAL(sfp_config_load(&cfg, "/nonexistent/x.yaml", &err), SFP_ENOENT);
	CU_ASSERT_PTR_NOT_NULL(strstr(err.msg, "/nonexistent/x.yaml"));
	/* empty and NUL-containing texts */
	CU_ASSERT_EQUAL(load("", &err), SFP_EINVAL);
	CU_ASSERT_EQUAL(sfp_config_load_string(&cfg, "n.yaml", "a\0b", 3, &err), SFP_EINVAL);
}

/* The sequence layers' keys and their defaults (docs/transformer.md). */
static void test_transformer_keys(void)
{
	static const char *gpt = "model:\n"
				 "  input: [8]\n"
				 "  layers:\n"
				 "    - {type: embedding, name: wte, vocab: 256, dim: 32}\n"
				 "    - {type: position}\n"
				 "    - {type: layernorm}\n"
				 "    - {type: attention, heads: 4}\n"
				 "    - {type: attention, heads: 2, causal: false}\n"
				 "    - {type: layernorm, eps: 0.001}\n"
				 "    - {type: linear, out_features: 256, tie: wte, bias: false}\n";
	sfp_error err;
	CU_ASSERT_EQUAL_FATAL(load(gpt, &err), SFP_OK);
	CU_ASSERT_EQUAL(sfp_config_validate(&cfg, &err), SFP_OK);
	const sfp_cfg_layer *l = cfg.model.layers;
	CU_ASSERT_EQUAL(l[0].vocab, 256);
	CU_ASSERT_EQUAL(l[0].dim, 32);
	CU_ASSERT_DOUBLE_EQUAL(l[2].eps, 1e-5, 1e-12); /* default */
	CU_ASSERT_EQUAL(l[3].heads, 4);
	CU_ASSERT_EQUAL(l[3].causal, 1); /* default */
	CU_ASSERT_EQUAL(l[4].causal, 0);
	CU_ASSERT_DOUBLE_EQUAL(l[5].eps, 1e-3, 1e-9);
	CU_ASSERT_STRING_EQUAL(l[6].tie, "wte");
	CU_ASSERT_STRING_EQUAL(l[3].tie, "");
	expect_error("model:\n  input: [4]\n  layers:\n    - {type: embedding, vocab: 9}\n",
		     "model.layers[0] (embedding): 'dim' is required");
	expect_error("model:\n  input: [4, 1, 8]\n  layers:\n    - {type: attention}\n",
		     "model.layers[0] (attention): 'heads' is required");
	expect_error("model:\n  input: [4, 1, 8]\n  layers:\n    - {type: position, heads: 2}\n",
		     "model.layers[0] (position): unknown key 'heads'");
	expect_error("model:\n  input: [4, 1, 8]\n  layers:\n"
		     "    - {type: linear, out_features: 3, tie: later}\n",
		     "model.layers[0].tie: 'later' names no earlier layer");
}

/* Enum keys store an index; the names table gives the strings back. */
static void test_enum_names(void)
{
	sfp_error err;
	sfp_config_defaults(&cfg);
	CU_ASSERT_EQUAL(sfp_config_set(&cfg, "parallel.grad_cast=bf16", &err), SFP_OK);
	CU_ASSERT_EQUAL(cfg.parallel.grad_cast, SFP_GRAD_CAST_BF16);
	CU_ASSERT_EQUAL(sfp_config_set(&cfg, "bitlength.targets=[gradients]", &err), SFP_OK);
	CU_ASSERT_EQUAL(cfg.bitlength.n_targets, 1);
	CU_ASSERT_EQUAL(cfg.bitlength.targets[0], SFP_TARGET_GRADIENTS);
	CU_ASSERT_EQUAL(sfp_config_set(&cfg, "parallel.allreduce=ring", &err), SFP_OK);
	CU_ASSERT_EQUAL(cfg.parallel.allreduce, SFP_CFG_ALLREDUCE_RING);
	CU_ASSERT_EQUAL(sfp_config_set(&cfg, "parallel.allreduce=fast", &err), SFP_EINVAL);
	CU_ASSERT_STRING_EQUAL(err.msg, "--set parallel.allreduce=fast: 'fast' is not one of: "
					"auto, ring, allgather, native");
	CU_ASSERT_EQUAL(cfg.parallel.allreduce, SFP_CFG_ALLREDUCE_RING);
	CU_ASSERT_STRING_EQUAL(sfp_config_enum_name("parallel.grad_cast", cfg.parallel.grad_cast), "bf16");
	CU_ASSERT_STRING_EQUAL(sfp_config_enum_name("bitlength.policy", SFP_POLICY_BITWAVE), "bitwave");
	CU_ASSERT_STRING_EQUAL(sfp_config_enum_name("bitlength.targets", SFP_TARGET_ACTIVATIONS),
			       "activations");
	CU_ASSERT_STRING_EQUAL(sfp_config_enum_name("prune.granularity", SFP_PRUNE_LAYER), "layer");
	CU_ASSERT_STRING_EQUAL(sfp_config_enum_name("parallel.nng_endpoint", SFP_NNG_IPC), "ipc");
	CU_ASSERT_STRING_EQUAL(sfp_config_enum_name("parallel.transport", 2), "?");
	CU_ASSERT_STRING_EQUAL(sfp_config_enum_name("parallel.transport", -1), "?");
	CU_ASSERT_STRING_EQUAL(sfp_config_enum_name("train.epochs", 0), "?");
	CU_ASSERT_STRING_EQUAL(sfp_config_enum_name("no.such", 0), "?");
}

static void test_set(void)
{
	sfp_error err;
	CU_ASSERT_EQUAL_FATAL(load(full, &err), SFP_OK);
	CU_ASSERT_EQUAL(sfp_config_set(&cfg, "train.batch_size=128", &err), SFP_OK);
	CU_ASSERT_EQUAL(cfg.train.batch_size, 128);
	CU_ASSERT_EQUAL(sfp_config_set(&cfg, "train.optimizer.lr=0.5", &err), SFP_OK);
	CU_ASSERT_DOUBLE_EQUAL(cfg.train.optimizer.lr, 0.5, 1e-7);
	CU_ASSERT_EQUAL(sfp_config_set(&cfg, "model.input=[784]", &err), SFP_OK);
	CU_ASSERT_EQUAL(cfg.model.input_ndim, 1);
	CU_ASSERT_EQUAL(cfg.model.input[0], 784);
	CU_ASSERT_EQUAL(sfp_config_set(&cfg, "model.layers.8.out_features=7", &err), SFP_OK);
	CU_ASSERT_EQUAL(cfg.model.layers[8].out_features, 7);
	CU_ASSERT_EQUAL(sfp_config_set(&cfg, "model.layers.c1.kernel=5", &err), SFP_OK);
	CU_ASSERT_EQUAL(cfg.model.layers[0].kernel, 5);
	CU_ASSERT_EQUAL(sfp_config_set(&cfg, "model.layers.dropout6.p=0.1", &err), SFP_OK);
	CU_ASSERT_DOUBLE_EQUAL(cfg.model.layers[6].p, 0.1, 1e-7);
	CU_ASSERT_EQUAL(sfp_config_set(&cfg, "log.metrics=", &err), SFP_OK);
	CU_ASSERT_STRING_EQUAL(cfg.log.metrics, "");
	CU_ASSERT_EQUAL(sfp_config_set(&cfg, "data.shuffle=true", &err), SFP_OK);
	CU_ASSERT_EQUAL(cfg.data.shuffle, 1);
	CU_ASSERT_EQUAL(sfp_config_set(&cfg, "data.dataset=cifar10", &err), SFP_OK);
	CU_ASSERT_EQUAL(cfg.data.dataset, SFP_DATASET_CIFAR10);
	CU_ASSERT_STRING_EQUAL(sfp_config_enum_name("data.dataset", SFP_DATASET_TOKENS), "tokens");
	const int n_targets = cfg.bitlength.n_targets;
	CU_ASSERT_EQUAL(sfp_config_set(&cfg, "data.augment=[flip, crop]", &err), SFP_OK);
	CU_ASSERT(cfg.data.n_augment == 2 && cfg.data.augment[0] == SFP_AUGMENT_FLIP &&
		  cfg.data.augment[1] == SFP_AUGMENT_CROP);
	CU_ASSERT_EQUAL(cfg.bitlength.n_targets, n_targets); /* a list of its own */
	CU_ASSERT_EQUAL(sfp_config_set(&cfg, "data.train.x=tok/train.bin", &err), SFP_OK);
	CU_ASSERT_STRING_EQUAL(cfg.data.train_x, "tok/train.bin");
	CU_ASSERT_EQUAL(sfp_config_set(&cfg, "data.seq_len=64", &err), SFP_OK);
	CU_ASSERT_EQUAL(cfg.data.seq_len, 64);

	CU_ASSERT_EQUAL(sfp_config_set(&cfg, "train.batch_size=x", &err), SFP_EINVAL);
	CU_ASSERT_STRING_EQUAL(err.msg, "--set train.batch_size=x: expected an integer, got 'x'");
	CU_ASSERT_EQUAL(sfp_config_set(&cfg, "train.nope=1", &err), SFP_EINVAL);
	CU_ASSERT_PTR_NOT_NULL(strstr(err.msg, "unknown key 'train.nope'"));
	CU_ASSERT_EQUAL(sfp_config_set(&cfg, "train.epochs", &err), SFP_EINVAL);
	CU_ASSERT_PTR_NOT_NULL(strstr(err.msg, "expected section.key=value"));
	CU_ASSERT_EQUAL(sfp_config_set(&cfg, "model.layers.99.p=0.1", &err), SFP_EINVAL);
	CU_ASSERT_PTR_NOT_NULL(strstr(err.msg, "no layer '99'"));
	CU_ASSERT_EQUAL(sfp_config_set(&cfg, "model.layers.c1.p=0.1", &err), SFP_EINVAL);
	CU_ASSERT_PTR_NOT_NULL(strstr(err.msg, "unknown key 'p'"));
	CU_ASSERT_EQUAL(sfp_config_set(&cfg, "model.layers.c1.type=relu", &err), SFP_EINVAL);
	CU_ASSERT_EQUAL(sfp_config_set(&cfg, "train.epochs=[1", &err), SFP_EINVAL);
	CU_ASSERT_EQUAL(sfp_config_set(&cfg, "model.input=[2, x]", &err), SFP_EINVAL);
	CU_ASSERT_EQUAL(cfg.model.input[0], 784); /* failed overrides change nothing */
	CU_ASSERT_EQUAL(cfg.train.batch_size, 128);
}

static void test_examples(void)
{
	static const char *const names[] = {"fmnist-mlp", "fmnist-cnn", "fmnist-resnet",
					    "fmnist-plugin"};
	for (size_t i = 0; i < sizeof names / sizeof names[0]; i++) {
		char path[128];
		snprintf(path, sizeof path, "deploy/examples/%s.yaml", names[i]);
		sfp_error err;
		int rc = sfp_config_load(&cfg, path, &err);
		if (rc == SFP_OK)
			rc = sfp_config_validate(&cfg, &err);
		if (rc)
			fprintf(stderr, "\n%s\n", err.msg);
		CU_ASSERT_EQUAL(rc, SFP_OK);
		CU_ASSERT(cfg.model.n_layers > 3);
	}
}

int main(void)
{
	static const test_case cases[] = {
		{"defaults", test_defaults},
		{"a full file, read back", test_full_file},
		{"errors name file, line and key", test_errors},
		{"--set overrides", test_set},
		{"enum keys: index stored, name given back", test_enum_names},
		{"the example configs load", test_examples},
		{"sequence layers: keys and defaults", test_transformer_keys},
		{NULL, NULL},
	};
	return test_run_suite("config", cases);
}
