/*
 * test_train_loop.c -- the trainer end to end on slices of Fashion-MNIST: the loss
 * falls, the metrics log holds the documented records, checkpoints round-trip
 * and reject corruption, and a resumed run is bit-identical to one that never
 * stopped.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include <stdint.h>

#include "sfp/config.h"
#include "sfp/train.h"
#include "tests/util/testutil.h"

static char *dir;

/* A small CNN with every kind of state a checkpoint must carry: batch-norm
 * running statistics, dropout (seeded by step), momentum. */
static const char *cfg_text = "model:\n"
			      "  input: [1, 28, 28]\n"
			      "  layers:\n"
			      "    - {type: conv2d, out_channels: 4, kernel: 3, padding: 1}\n"
			      "    - {type: batchnorm}\n"
			      "    - {type: relu}\n"
			      "    - {type: maxpool, kernel: 2}\n"
			      "    - {type: flatten}\n"
			      "    - {type: dropout, p: 0.1}\n"
			      "    - {type: linear, out_features: 32}\n"
			      "    - {type: relu}\n"
			      "    - {type: linear, out_features: 10}\n"
			      "data:\n"
			      "  train_limit: 1200\n"
			      "  test_limit: 500\n"
			      "train:\n"
			      "  epochs: 2\n"
			      "  batch_size: 32\n"
			      "  seed: 5\n"
			      "  optimizer: {type: sgd, lr: 0.05, momentum: 0.9}\n"
			      "  schedule: {type: cosine, warmup_steps: 5}\n"
			      "log:\n"
			      "  every: 10\n";

/* Checkpoints into DIR/sub every `every` steps, keeping 5; returns the folder. */
static const char *with_checkpoints(sfp_config *c, const char *sub, int every)
{
	snprintf(c->checkpoint.dir, sizeof c->checkpoint.dir, "%s/%s", dir, sub);
	c->checkpoint.every_steps = every;
	c->checkpoint.keep = 5;
	return c->checkpoint.dir;
}

static void load_cfg(sfp_config *c, const char *extra)
{
	char text[4096];
	snprintf(text, sizeof text, "%s%s", cfg_text, extra ? extra : "");
	sfp_error err;
	int rc = sfp_config_load_string(c, "test.yaml", text, strlen(text), &err);
	if (rc < 0)
		fprintf(stderr, "\nconfig: %s\n", err.msg);
	CU_ASSERT_EQUAL_FATAL(rc, SFP_OK);
	CU_ASSERT_EQUAL_FATAL(sfp_config_validate(c, &err), SFP_OK);
}

typedef struct losses {
	int n;
	float first, last, test_acc;
} losses;

static void record(void *user, const sfp_progress *p)
{
	losses *l = user;
	if (p->is_eval) {
		l->test_acc = p->test_acc;
		return;
	}
	if (l->n++ == 0)
		l->first = p->loss;
	l->last = p->loss;
}

static void test_loss_falls_and_log(void)
{
	static sfp_config c;
	load_cfg(&c, NULL);
	snprintf(c.log.metrics, sizeof c.log.metrics, "%s/metrics.jsonl", dir);
	sfp_trainer *t = NULL;
	sfp_error err;
	int rc = sfp_trainer_create(&t, &c, NULL, &err);
	if (rc < 0)
		fprintf(stderr, "\n%s\n", err.msg);
	CU_ASSERT_EQUAL_FATAL(rc, SFP_OK);
	losses l = {0};
	sfp_trainer_on_progress(t, record, &l);
	CU_ASSERT_EQUAL_FATAL(sfp_trainer_run(t, &err), SFP_OK);
	printf("\n    loss %.3f -> %.3f, test_acc %.3f ", (double)l.first, (double)l.last,
	       (double)l.test_acc);
	CU_ASSERT(l.n >= 5);
	CU_ASSERT(l.last < 0.7f * l.first);
	CU_ASSERT(l.test_acc > 0.6f);
	CU_ASSERT_EQUAL(sfp_trainer_step(t), 2 * ((1200 + 31) / 32));
	sfp_trainer_free(t);

	/* every record has "step"; training records "loss", evaluations "test_acc" */
	FILE *f = fopen(c.log.metrics, "r");
	CU_ASSERT_PTR_NOT_NULL_FATAL(f);
	char line[512];
	int train = 0, eval = 0, bad = 0;
	while (fgets(line, sizeof line, f)) {
		bad += line[0] != '{' || !strstr(line, "\"step\":");
		train += strstr(line, "\"loss\":") != NULL;
		eval += strstr(line, "\"test_acc\":") != NULL;
	}
	fclose(f);
	CU_ASSERT_EQUAL(bad, 0);
	CU_ASSERT(train >= 8);
	CU_ASSERT_EQUAL(eval, 2);
}

static int files_equal_floats(const float *a, const float *b, size_t n)
{
	return memcmp(a, b, n * sizeof(float)) == 0;
}

/* Run A trains 60 steps straight, writing a checkpoint every 20. Run B
 * loads A's step-20 checkpoint and trains to 60: every parameter, buffer
 * and moment must be bit-identical. */
static void test_resume_bit_identical(void)
{
	static sfp_config c;
	load_cfg(&c, NULL);
	c.train.max_steps = 60;
	char ck[600];
	snprintf(ck, sizeof ck, "%s", with_checkpoints(&c, "ck", 20)); /* the trainer creates it */
	sfp_error err;
	sfp_trainer *a = NULL, *b = NULL;
	CU_ASSERT_EQUAL_FATAL(sfp_trainer_create(&a, &c, NULL, &err), SFP_OK);
	CU_ASSERT_EQUAL_FATAL(sfp_trainer_run(a, &err), SFP_OK);

	c.checkpoint.dir[0] = 0; /* run B writes none */
	CU_ASSERT_EQUAL_FATAL(sfp_trainer_create(&b, &c, NULL, &err), SFP_OK);
	char path[700];
	snprintf(path, sizeof path, "%s/ckpt-20.sfpk", ck);
	CU_ASSERT_EQUAL_FATAL(sfp_trainer_load(b, path, &err), SFP_OK);
	CU_ASSERT_EQUAL(sfp_trainer_step(b), 20);
	CU_ASSERT_EQUAL_FATAL(sfp_trainer_run(b, &err), SFP_OK);
	size_t na, nb;
	float *pa = sfp_model_params(sfp_trainer_model(a), &na);
	float *pb = sfp_model_params(sfp_trainer_model(b), &nb);
	CU_ASSERT_EQUAL(na, nb);
	CU_ASSERT(files_equal_floats(pa, pb, na));
	pa = sfp_model_buffers(sfp_trainer_model(a), &na);
	pb = sfp_model_buffers(sfp_trainer_model(b), &nb);
	CU_ASSERT(na > 0 && files_equal_floats(pa, pb, na));

	/* the folder form picks the newest checkpoint */
	char latest[700];
	CU_ASSERT_EQUAL(sfp_checkpoint_resolve(ck, latest, sizeof latest, &err), SFP_OK);
	CU_ASSERT_PTR_NOT_NULL(strstr(latest, "ckpt-60.sfpk"));
	sfp_trainer_free(a);
	sfp_trainer_free(b);
}

/* Save, then damage the file in every way a disk or a user can. */
static void test_checkpoint_corruption(void)
{
	static sfp_config c;
	load_cfg(&c, NULL);
	c.train.max_steps = 3;
	sfp_error err;
	sfp_trainer *t = NULL;
	CU_ASSERT_EQUAL_FATAL(sfp_trainer_create(&t, &c, NULL, &err), SFP_OK);
	CU_ASSERT_EQUAL_FATAL(sfp_trainer_run(t, &err), SFP_OK);
	char path[600], bad[600];
	snprintf(path, sizeof path, "%s/one.sfpk", dir);
	snprintf(bad, sizeof bad, "%s/bad.sfpk", dir);
	CU_ASSERT_EQUAL_FATAL(sfp_trainer_save(t, path, &err), SFP_OK);
	CU_ASSERT_EQUAL(sfp_trainer_load(t, path, &err), SFP_OK);

	void *buf;
	size_t len;
	CU_ASSERT_EQUAL_FATAL(sfp_file_read(path, &buf, &len, &err), SFP_OK);
	unsigned char *b = buf;
	struct {
		size_t off;
		int code;
	} flips[] = {{0, SFP_ECORRUPT}, {20, SFP_ECHECKSUM}, {len / 2, SFP_ECHECKSUM},
		     {len - 1, SFP_ECHECKSUM}};
	for (size_t i = 0; i < sizeof flips / sizeof flips[0]; i++) {
		b[flips[i].off] ^= 0x10;
		CU_ASSERT_EQUAL(sfp_file_write_atomic(bad, b, len, &err), SFP_OK);
		b[flips[i].off] ^= 0x10;
		int rc = sfp_trainer_load(t, bad, &err);
		CU_ASSERT_EQUAL(rc, flips[i].code);
		CU_ASSERT_PTR_NOT_NULL(strstr(err.msg, "bad.sfpk"));
	}
	CU_ASSERT_EQUAL(sfp_file_write_atomic(bad, b, len - 4, &err), SFP_OK);
	CU_ASSERT_EQUAL(sfp_trainer_load(t, bad, &err), SFP_ETRUNC);
	CU_ASSERT_EQUAL(sfp_file_write_atomic(bad, b, 10, &err), SFP_OK);
	CU_ASSERT_EQUAL(sfp_trainer_load(t, bad, &err), SFP_ETRUNC);
	free(buf);
	sfp_trainer_free(t);

	/* a checkpoint of another model is refused, naming the reason */
	static sfp_config c2;
	load_cfg(&c2, NULL);
	c2.model.layers[6].out_features = 16;
	CU_ASSERT_EQUAL_FATAL(sfp_trainer_create(&t, &c2, NULL, &err), SFP_OK);
	CU_ASSERT_EQUAL(sfp_trainer_load(t, path, &err), SFP_EINVAL);
	CU_ASSERT_PTR_NOT_NULL(strstr(err.msg, "different model"));
	CU_ASSERT_EQUAL(sfp_trainer_load(t, "/nonexistent/x.sfpk", &err), SFP_ENOENT);
	sfp_trainer_free(t);
}

/* Quantum policy on a slice: the loss falls, the widths move down from
 * where they started, the footprint shrinks, width records are logged, and
 * a resumed run (widths in the checkpoint) is bit-identical. */
static void test_quantum_run(void)
{
	static sfp_config c;
	load_cfg(&c, "bitlength: {policy: quantum, e: 6, m: 6, gamma: 0.5, lr: 0.2}\n");
	c.train.max_steps = 40;
	snprintf(c.log.metrics, sizeof c.log.metrics, "%s/q.jsonl", dir);
	char ck[600];
	snprintf(ck, sizeof ck, "%s", with_checkpoints(&c, "qck", 20));
	sfp_error err;
	sfp_trainer *a = NULL, *b = NULL;
	int rc = sfp_trainer_create(&a, &c, NULL, &err);
	if (rc)
		fprintf(stderr, "\n%s\n", err.msg);
	CU_ASSERT_EQUAL_FATAL(rc, SFP_OK);
	losses l = {0};
	sfp_trainer_on_progress(a, record, &l);
	CU_ASSERT_EQUAL_FATAL(sfp_trainer_run(a, &err), SFP_OK);
	CU_ASSERT(l.last < 0.8f * l.first);
	sfp_model *m = sfp_trainer_model(a);
	int nt = sfp_model_n_qtensors(m), moved = 0;
	CU_ASSERT(nt >= 6); /* conv, fc1, fc2 weights; bn, relu/pool, dropout, ... outputs */
	for (int k = 0; k < nt; k++) {
		sfp_qtensor_info qi;
		sfp_model_qtensor(m, k, &qi);
		moved += qi.n_m < 6.0f - 0.5f && qi.n_e < 6.0f - 0.5f;
		CU_ASSERT(qi.n_m <= 6.0f && qi.n_e <= 6.0f);
	}
	CU_ASSERT(moved >= 2); /* the penalty weighs by size: the big tensors move first */
	double bw, ba, cw, ca;
	sfp_model_footprint(m, &bw, &ba, &cw, &ca);
	CU_ASSERT((bw + ba) / (cw + ca) < 13.0);
	printf("\n    quantum: loss %.3f -> %.3f, %.2f bits/value ", (double)l.first, (double)l.last,
	       (bw + ba) / (cw + ca));
	FILE *f = fopen(c.log.metrics, "r");
	CU_ASSERT_PTR_NOT_NULL_FATAL(f);
	char line[512];
	int widths = 0, foot = 0;
	while (fgets(line, sizeof line, f)) {
		widths += strstr(line, "\"layer\":") && strstr(line, "\"kind\":") &&
			  strstr(line, "\"e\":") && strstr(line, "\"m\":");
		foot += strstr(line, "\"footprint_bits_per_value\":") != NULL;
	}
	fclose(f);
	CU_ASSERT(widths >= nt);
	CU_ASSERT(foot >= 1);

	c.checkpoint.dir[0] = 0;
	c.log.metrics[0] = 0;
	CU_ASSERT_EQUAL_FATAL(sfp_trainer_create(&b, &c, NULL, &err), SFP_OK);
	char path[700];
	snprintf(path, sizeof path, "%s/ckpt-20.sfpk", ck);
	CU_ASSERT_EQUAL_FATAL(sfp_trainer_load(b, path, &err), SFP_OK);
	CU_ASSERT_EQUAL_FATAL(sfp_trainer_run(b, &err), SFP_OK);
	size_t na, nb2;
	float *pa = sfp_model_params(sfp_trainer_model(a), &na);
	float *pb = sfp_model_params(sfp_trainer_model(b), &nb2);
	CU_ASSERT(na == nb2 && memcmp(pa, pb, na * sizeof(float)) == 0);
	for (int k = 0; k < nt; k++) {
		sfp_qtensor_info x, y;
		sfp_model_qtensor(sfp_trainer_model(a), k, &x);
		sfp_model_qtensor(sfp_trainer_model(b), k, &y);
		CU_ASSERT(x.n_m == y.n_m && x.n_e == y.n_e);
	}
	/* a float32 config cannot load a quantum checkpoint */
	sfp_trainer_free(b);
	load_cfg(&c, NULL);
	c.train.max_steps = 40;
	CU_ASSERT_EQUAL_FATAL(sfp_trainer_create(&b, &c, NULL, &err), SFP_OK);
	CU_ASSERT_EQUAL(sfp_trainer_load(b, path, &err), SFP_EINVAL);
	sfp_trainer_free(a);
	sfp_trainer_free(b);
	test_rmdir(ck);
}

/* BitWave on a slice: while the loss falls, the controller removes bits
 * from every tensor at once; a resumed run carries its state. */
static void test_bitwave_run(void)
{
	static sfp_config c;
	load_cfg(&c, "bitlength: {policy: bitwave, e: 8, m: 7, period: 5, ema: 0.5, threshold: 0.01}\n");
	c.train.max_steps = 40;
	sfp_error err;
	sfp_trainer *a = NULL;
	CU_ASSERT_EQUAL_FATAL(sfp_trainer_create(&a, &c, NULL, &err), SFP_OK);
	CU_ASSERT_EQUAL_FATAL(sfp_trainer_run(a, &err), SFP_OK);
	sfp_model *m = sfp_trainer_model(a);
	sfp_qtensor_info first, qi;
	sfp_model_qtensor(m, 0, &first);
	CU_ASSERT(first.m < 7);
	for (int k = 1; k < sfp_model_n_qtensors(m); k++) {
		sfp_model_qtensor(m, k, &qi);
		CU_ASSERT(qi.m == first.m && qi.e == first.e); /* one width pair for all */
	}
	printf("\n    bitwave: e %u m %u after 40 steps ", first.e, first.m);
	sfp_trainer_free(a);
}

/* Footprint by hand: flatten, linear 4->3, relu, linear 3->2, batch 5.
 * Stored activations: linear1+relu (in place, one tensor of 5 x 3); the
 * logits are not stored, nor is the input the first flatten copies. At
 * fixed e = 4, m = 3: 8 bits per stored value and weight. */
static void test_footprint_by_hand(void)
{
	static sfp_cfg_model mc;
	memset(&mc, 0, sizeof mc);
	mc.input_ndim = 1;
	mc.input[0] = 4;
	const char *types[] = {"flatten", "linear", "relu", "linear"};
	int outs[] = {0, 3, 0, 2};
	for (int i = 0; i < 4; i++) {
		snprintf(mc.layers[i].type, sizeof mc.layers[i].type, "%s", types[i]);
		mc.layers[i].out_features = outs[i];
		mc.layers[i].bias = 1;
	}
	mc.n_layers = 4;
	sfp_model *m = NULL;
	sfp_error err;
	CU_ASSERT_EQUAL_FATAL(sfp_model_create(&m, &mc, NULL, 5, &err), SFP_OK);
	double bw, ba, cw, ca;
	sfp_model_footprint(m, &bw, &ba, &cw, &ca);
	CU_ASSERT_DOUBLE_EQUAL(cw, 12 + 6, 0);      /* weights, no biases */
	CU_ASSERT_DOUBLE_EQUAL(ca, 5 * 3, 0); /* relu1 */
	CU_ASSERT_DOUBLE_EQUAL(bw, 32 * cw, 0);
	CU_ASSERT_EQUAL_FATAL(sfp_model_set_quant(m, SFP_QPOLICY_FIXED,
						  SFP_QTARGET_WEIGHTS | SFP_QTARGET_ACTIVATIONS, 4, 3,
						  &err),
			      SFP_OK);
	sfp_model_footprint(m, &bw, &ba, &cw, &ca);
	CU_ASSERT_DOUBLE_EQUAL(bw, 8 * 18, 0);
	CU_ASSERT_DOUBLE_EQUAL(ba, 8 * 15, 0);
	CU_ASSERT_EQUAL(sfp_model_n_qtensors(m), 3);
	/* the stored activation is exactly the codec's container of the output */
	sfp_model_init(m, 3);
	float x[20];
	for (int i = 0; i < 20; i++)
		x[i] = 0.37f * (float)(i - 9);
	sfp_model_forward(m, x, 5, 1, 1);
	float h[15];
	int B = 0;
	CU_ASSERT_EQUAL_FATAL(sfp_model_saved_activation(m, 2, h, 15, &B, &err), SFP_OK);
	CU_ASSERT_EQUAL(B, 5);
	CU_ASSERT_PTR_NULL(sfp_model_activation(m, 2)); /* packed: no float copy kept */
	for (int i = 0; i < 15; i++) {
		uint32_t u;
		memcpy(&u, &h[i], 4);
		CU_ASSERT(h[i] >= 0.0f);
		CU_ASSERT((u & ((1u << 20) - 1)) == 0); /* 3 mantissa bits */
	}
	sfp_model_free(m);
}

/* Names and paths from the config are escaped in the metrics log: a layer
 * named with a quote and a backslash, a checkpoint folder with a quote. */
static void test_metrics_escaped(void)
{
	static sfp_config c;
	static const char *text = "model:\n"
				  "  input: [1, 28, 28]\n"
				  "  layers:\n"
				  "    - {type: flatten}\n"
				  "    - {type: linear, out_features: 16, name: 'odd\"na\\me'}\n"
				  "    - {type: relu}\n"
				  "    - {type: linear, out_features: 10}\n"
				  "data: {train_limit: 128, test_limit: 64}\n"
				  "train: {epochs: 1, max_steps: 4, batch_size: 16}\n"
				  "bitlength: {policy: fixed, e: 5, m: 4}\n"
				  "log: {every: 2}\n";
	sfp_error err;
	int rc = sfp_config_load_string(&c, "test.yaml", text, strlen(text), &err);
	if (rc < 0)
		fprintf(stderr, "\nconfig: %s\n", err.msg);
	CU_ASSERT_EQUAL_FATAL(rc, SFP_OK);
	CU_ASSERT_EQUAL_FATAL(sfp_config_validate(&c, &err), SFP_OK);
	snprintf(c.log.metrics, sizeof c.log.metrics, "%s/esc.jsonl", dir);
	char ck[600];
	snprintf(ck, sizeof ck, "%s", with_checkpoints(&c, "q\"ck", 2));
	sfp_trainer *t = NULL;
	CU_ASSERT_EQUAL_FATAL(sfp_trainer_create(&t, &c, NULL, &err), SFP_OK);
	CU_ASSERT_EQUAL_FATAL(sfp_trainer_run(t, &err), SFP_OK);
	sfp_trainer_free(t);
	FILE *f = fopen(c.log.metrics, "r");
	CU_ASSERT_PTR_NOT_NULL_FATAL(f);
	char line[1024];
	int layer = 0, ckpt = 0, raw = 0;
	while (fgets(line, sizeof line, f)) {
		layer += strstr(line, "\"layer\":\"odd\\\"na\\\\me\"") != NULL;
		ckpt += strstr(line, "q\\\"ck/ckpt-") != NULL;
		raw += strstr(line, "odd\"na") != NULL || strstr(line, "q\"ck") != NULL;
	}
	fclose(f);
	CU_ASSERT(layer >= 2); /* weights and activations of the named layer */
	CU_ASSERT(ckpt >= 2);
	CU_ASSERT_EQUAL(raw, 0);
	test_rmdir(ck);
}

int main(void)
{
	dir = test_tmpdir();
	static const test_case cases[] = {
		{"a short run: loss falls, metrics log records", test_loss_falls_and_log},
		{"resume is bit-identical", test_resume_bit_identical},
		{"checkpoint corruption is rejected", test_checkpoint_corruption},
		{"quantum policy: loss falls, widths move, resume", test_quantum_run},
		{"bitwave policy: widths fall with the loss", test_bitwave_run},
		{"footprint by hand, stored activations are containers", test_footprint_by_hand},
		{"metrics log escapes layer names and paths", test_metrics_escaped},
		{NULL, NULL},
	};
	int rc = test_run_suite("train", cases);
	char ck[600];
	snprintf(ck, sizeof ck, "%s/ck", dir);
	test_rmdir(ck);
	test_rmdir(dir);
	free(dir);
	return rc;
}
