/*
 * test_nn_transformer.c -- the sequence layers of the engine (embedding,
 * position, layernorm, attention, per-token linear, tied head) and the
 * per-token loss: finite-difference gradient checks of every layer and of
 * a tiny one-block GPT, the causal mask (exact), one thread against two,
 * the embedding's guard for bad ids, overfitting a fixed token sequence,
 * learned-width containers (e8 m23 bit-identical to float32, e5 m4 still
 * trains), shape errors, and the example models' unchanged signatures.
 */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "sfp/config.h"
#include "sfp/nn.h"
#include "tests/util/fdcheck.h"
#include "tests/util/testutil.h"

/* Central differences in float32, as test_nn_layers.c: the tolerance covers
 * the float rounding of the loss divided by 2 eps and second-order terms. */
#define FD_EPS 1e-3f
#define FD_ATOL 1.5e-3
#define FD_RTOL 3e-2
#define FD_SAMPLES 24 /* checked coordinates per layer and for the input */
/* one thread against two, as test_nn_layers.c */
#define THREADS_ATOL 1e-5f
#define THREADS_RTOL 1e-4f

static sfp_cfg_layer L(const char *type, const char *name)
{
	sfp_cfg_layer l;
	memset(&l, 0, sizeof l);
	snprintf(l.type, sizeof l.type, "%s", type);
	snprintf(l.name, sizeof l.name, "%s", name ? name : "");
	l.bias = 1;
	l.p = 0.5f;
	l.eps = 1e-5f;
	l.momentum = 0.1f;
	l.causal = 1;
	return l;
}

static void push(sfp_cfg_model *m, sfp_cfg_layer l)
{
	m->layers[m->n_layers++] = l;
}

static sfp_cfg_layer linear(const char *name, int out, int bias)
{
	sfp_cfg_layer l = L("linear", name);
	l.out_features = out;
	l.bias = bias;
	return l;
}

static sfp_cfg_layer add_from(const char *name, const char *from)
{
	sfp_cfg_layer l = L("add", name);
	snprintf(l.from, sizeof l.from, "%s", from);
	return l;
}

/* Input (T) token ids, or (T, 1, D) floats when D > 0. */
static sfp_cfg_model seq_cfg(int T, int D)
{
	sfp_cfg_model m;
	memset(&m, 0, sizeof m);
	m.input_ndim = D > 0 ? 3 : 1;
	m.input[0] = T;
	m.input[1] = 1;
	m.input[2] = D;
	return m;
}

/* The tiny GPT: one pre-norm block (GPT-2 / llm.c) and a tied head. */
static sfp_cfg_model gpt_cfg(int T, int V, int D, int H, int causal)
{
	sfp_cfg_model m = seq_cfg(T, 0);
	sfp_cfg_layer e = L("embedding", "wte");
	e.vocab = V;
	e.dim = D;
	push(&m, e);
	push(&m, L("position", "wpe"));
	push(&m, L("layernorm", "ln1"));
	sfp_cfg_layer a = L("attention", "attn");
	a.heads = H;
	a.causal = causal;
	push(&m, a);
	push(&m, add_from("res1", "wpe"));
	push(&m, L("layernorm", "ln2"));
	push(&m, linear("fc1", 4 * D, 1));
	push(&m, L("gelu", "gelu"));
	push(&m, linear("fc2", D, 1));
	push(&m, add_from("res2", "res1"));
	push(&m, L("layernorm", "lnf"));
	sfp_cfg_layer h = linear("head", V, 0);
	snprintf(h.tie, sizeof h.tie, "wte");
	push(&m, h);
	return m;
}

static sfp_model *build(const sfp_cfg_model *cfg, int B)
{
	sfp_model *m = NULL;
	sfp_error err;
	int rc = sfp_model_create(&m, cfg, NULL, B, &err);
	if (rc < 0)
		fprintf(stderr, "\n%s\n", err.msg);
	CU_ASSERT_EQUAL_FATAL(rc, SFP_OK);
	return m;
}

/* Random inputs: token ids below `vocab` when vocab > 0, else normal
 * floats; targets below the last layer's V. */
static void fill_data(const sfp_model *m, int B, int vocab, float *x, int32_t *y, uint64_t seed)
{
	sfp_rng r;
	sfp_rng_seed(&r, seed);
	const size_t nx = (size_t)B * sfp_shape_numel(sfp_model_input_shape(m));
	sfp_layer_info last;
	sfp_model_layer(m, sfp_model_n_layers(m) - 1, &last);
	for (size_t i = 0; i < nx; i++)
		x[i] = vocab > 0 ? (float)sfp_rng_below(&r, (uint64_t)vocab) : sfp_rng_normal(&r);
	for (int i = 0; i < B * last.out.c; i++)
		y[i] = (int32_t)sfp_rng_below(&r, (uint64_t)last.out.w);
}

/* The per-token loss of a training forward, for the finite differences. */
typedef struct fd_ctx {
	sfp_model *m;
	const float *x;
	const int32_t *y;
	int B;
} fd_ctx;

static float loss_at(void *ctx)
{
	const fd_ctx *c = ctx;
	sfp_model_forward(c->m, c->x, c->B, 1, 7);
	return sfp_model_loss_tokens(c->m, c->y, c->B, NULL, 0);
}

/* Gradients of sfp_model_loss_tokens and the input gradient after one
 * backward at `threads`. */
static void grads_at(sfp_model *m, const float *x, const int32_t *y, int B, int threads,
		     float *g, float *gx)
{
	sfp_error err;
	size_t np;
	CU_ASSERT_EQUAL_FATAL(sfp_model_set_threads(m, threads, &err), SFP_OK);
	sfp_model_forward(m, x, B, 1, 7);
	sfp_model_loss_tokens(m, y, B, NULL, 1);
	sfp_model_zero_grad(m);
	sfp_model_backward(m, x, B);
	const float *grads = sfp_model_grads(m, &np);
	memcpy(g, grads, np * sizeof(float));
	if (gx)
		memcpy(gx, sfp_model_input_grad(m),
		       (size_t)B * sfp_shape_numel(sfp_model_input_shape(m)) * sizeof(float));
}

/*
 * Analytic gradients of the mean per-token cross-entropy against central
 * differences, for parameters of every layer and (float inputs) the input;
 * two threads against one.
 */
static void gradcheck(const char *what, const sfp_cfg_model *cfg, int B, int vocab)
{
	sfp_model *m = build(cfg, B);
	sfp_model_init(m, 42);
	if (vocab <= 0)
		sfp_model_want_input_grad(m, 1);
	const size_t nx = (size_t)B * sfp_shape_numel(sfp_model_input_shape(m));
	size_t np;
	float *p = sfp_model_params(m, &np);
	float *x = malloc(nx * sizeof(float)), *g = malloc(np * sizeof(float));
	float *g2 = malloc(np * sizeof(float)), *gx = malloc(nx * sizeof(float));
	int32_t *y = malloc((size_t)sfp_model_classes(m) * B * sizeof(int32_t));
	fill_data(m, B, vocab, x, y, 3);
	sfp_rng r;
	sfp_rng_seed(&r, 9);
	for (size_t i = 0; i < np; i++) /* biases, gains and shifts away from 0 and 1 */
		p[i] += 0.1f * sfp_rng_normal(&r);

	grads_at(m, x, y, B, 2, g2, NULL);
	grads_at(m, x, y, B, 1, g, vocab <= 0 ? gx : NULL);
	int tbad = 0, same = 1;
	for (size_t i = 0; i < np; i++) {
		tbad += fabsf(g2[i] - g[i]) > THREADS_ATOL + THREADS_RTOL * fabsf(g[i]);
		same &= g2[i] == g[i];
	}
	CU_ASSERT_EQUAL(tbad, 0);

	fd_ctx fc = {m, x, y, B};
	test_fd fd = {FD_EPS, FD_ATOL, FD_RTOL, FD_SAMPLES, loss_at, &fc, 0.0, 0, 0};
	test_fd_params(&fd, what, m, g, &r);
	if (vocab <= 0)
		test_fd_input(&fd, what, x, gx, nx, &r);
	printf("\n    %-26s %3d coordinates, maxdiff %.2e, 2 threads %s ", what, fd.checked, fd.maxdiff,
	       same ? "bit-identical" : "within tolerance");
	CU_ASSERT_EQUAL(fd.bad, 0);
	free(x);
	free(y);
	free(g);
	free(g2);
	free(gx);
	sfp_model_free(m);
}

/* layernorm, per-token linear, gelu on a float (T, 1, D) input */
static void test_grad_layernorm_linear_gelu(void)
{
	sfp_cfg_model m = seq_cfg(5, 6);
	push(&m, L("layernorm", NULL));
	push(&m, linear(NULL, 7, 1));
	push(&m, L("gelu", NULL));
	push(&m, linear(NULL, 4, 0));
	gradcheck("layernorm+linear+gelu", &m, 3, 0);
}

/* position, attention (causal and not), residual add */
static void test_grad_attention(void)
{
	for (int causal = 1; causal >= 0; causal--) {
		sfp_cfg_model m = seq_cfg(6, 8);
		push(&m, L("position", "pos"));
		push(&m, L("layernorm", NULL));
		sfp_cfg_layer a = L("attention", NULL);
		a.heads = 2;
		a.causal = causal;
		push(&m, a);
		push(&m, add_from(NULL, "pos"));
		push(&m, linear(NULL, 5, 1));
		gradcheck(causal ? "attention causal+add" : "attention full+add", &m, 3, 0);
	}
}

/* a pipeline stage's block: the residual reads the model's input
 * (`from: input`), whose gradient then has two terms */
static void test_grad_from_input(void)
{
	sfp_cfg_model m = seq_cfg(5, 6);
	push(&m, L("layernorm", NULL));
	sfp_cfg_layer a = L("attention", NULL);
	a.heads = 2;
	a.causal = 1;
	push(&m, a);
	push(&m, add_from("res", SFP_CFG_FROM_INPUT));
	push(&m, linear(NULL, 4, 1));
	gradcheck("residual from the input", &m, 3, 0);
}

/* embedding and a head tied to it (with a bias) */
static void test_grad_embedding_tied(void)
{
	sfp_cfg_model m = seq_cfg(7, 0);
	sfp_cfg_layer e = L("embedding", "emb");
	e.vocab = 9;
	e.dim = 6;
	push(&m, e);
	push(&m, L("layernorm", NULL));
	sfp_cfg_layer h = linear(NULL, 9, 1);
	snprintf(h.tie, sizeof h.tie, "emb");
	push(&m, h);
	gradcheck("embedding+tied head", &m, 3, 9);
}

static void test_grad_gpt(void)
{
	sfp_cfg_model m = gpt_cfg(8, 11, 8, 2, 1);
	gradcheck("tiny GPT (whole model)", &m, 4, 11); /* 32 rows: GEMMs split by rows */
}

/* Changing token k changes no output before k, bit for bit. */
static void test_causal_mask(void)
{
	enum { T = 8, V = 13, B = 2, K = 5 };
	for (int causal = 1; causal >= 0; causal--) {
		sfp_cfg_model cfg = gpt_cfg(T, V, 8, 2, causal);
		sfp_model *m = build(&cfg, B);
		sfp_model_init(m, 1);
		float x[B * T];
		int32_t y[B * T];
		fill_data(m, B, V, x, y, 4);
		for (int train = 0; train <= 1; train++) {
			float before[B * T * V];
			memcpy(before, sfp_model_forward(m, x, B, train, 3), sizeof before);
			float x2[B * T];
			memcpy(x2, x, sizeof x);
			for (int s = 0; s < B; s++)
				x2[s * T + K] = (float)(((int)x[s * T + K] + 1) % V);
			const float *after = sfp_model_forward(m, x2, B, train, 3);
			int earlier_same = 1, later_differ = 0;
			for (int s = 0; s < B; s++)
				for (int t = 0; t < T; t++)
					for (int v = 0; v < V; v++) {
						const size_t i = ((size_t)s * T + t) * V + v;
						if (t < K)
							earlier_same &= after[i] == before[i];
						else
							later_differ |= after[i] != before[i];
					}
			CU_ASSERT(later_differ);
			CU_ASSERT_EQUAL(earlier_same, causal); /* full attention sees the future */
		}
		sfp_model_free(m);
	}
}

/*
 * A model wide enough that its per-sample layers run in chunks (model.c:
 * SFP_CHUNK_BYTES / (T D 4 bytes) = 2 samples), so the layers' kept
 * tensors are written and read at sample offsets: 4 samples at once give
 * the outputs and (mean) gradients of two batches of 2.
 */
#define CHUNK_RTOL 1e-4f

static void test_chunks(void)
{
	enum { T = 256, D = 256, V = 16 };
	sfp_cfg_model cfg = gpt_cfg(T, V, D, 4, 1);
	sfp_model *a = build(&cfg, 4), *b = build(&cfg, 2);
	sfp_model_init(a, 8);
	sfp_model_init(b, 8);
	static float x[4 * T], ya[4 * T * V];
	static int32_t y[4 * T];
	size_t np;
	sfp_model_params(a, &np);
	float *ga = malloc(np * sizeof(float)), *gb = malloc(np * sizeof(float));
	fill_data(a, 4, V, x, y, 6);
	memcpy(ya, sfp_model_forward(a, x, 4, 1, 1), sizeof ya);
	sfp_model_loss_tokens(a, y, 4, NULL, 1);
	sfp_model_zero_grad(a);
	sfp_model_backward(a, x, 4);
	memcpy(ga, sfp_model_grads(a, NULL), np * sizeof(float));
	int out_bad = 0, grad_bad = 0;
	sfp_model_zero_grad(b);
	for (int h = 0; h < 2; h++) {
		const float *yb = sfp_model_forward(b, x + 2 * T * h, 2, 1, 1);
		for (size_t i = 0; i < 2 * (size_t)T * V; i++)
			out_bad += fabsf(yb[i] - ya[2 * T * V * h + i]) > CHUNK_RTOL * (1.0f + fabsf(yb[i]));
		sfp_model_loss_tokens(b, y + 2 * T * h, 2, NULL, 1);
		sfp_model_backward(b, x + 2 * T * h, 2); /* accumulates */
	}
	memcpy(gb, sfp_model_grads(b, NULL), np * sizeof(float));
	float big = 0.0f;
	for (size_t i = 0; i < np; i++)
		big = fabsf(ga[i]) > big ? fabsf(ga[i]) : big;
	for (size_t i = 0; i < np; i++)
		grad_bad += fabsf(0.5f * gb[i] - ga[i]) > CHUNK_RTOL * big;
	CU_ASSERT_EQUAL(out_bad, 0);
	CU_ASSERT_EQUAL(grad_bad, 0);
	free(ga);
	free(gb);
	sfp_model_free(a);
	sfp_model_free(b);
}

/* An id outside [0, vocab) (or not an integer) gives a zero row and is
 * counted; nothing is read out of bounds (ASan run). */
static void test_embedding_guard(void)
{
	sfp_cfg_model cfg = seq_cfg(6, 0);
	sfp_cfg_layer e = L("embedding", NULL);
	e.vocab = 5;
	e.dim = 4;
	push(&cfg, e);
	push(&cfg, linear(NULL, 3, 1));
	sfp_model *m = build(&cfg, 1);
	sfp_model_init(m, 2);
	const float x[6] = {0, 5, -1, 2.5f, NAN, 4};
	int32_t y[6] = {0, 1, 2, 0, 1, 2};
	sfp_model_forward(m, x, 1, 1, 0);
	const float *emb = sfp_model_activation(m, 0);
	for (int t = 0; t < 6; t++) {
		float sum = 0.0f;
		for (int k = 0; k < 4; k++)
			sum += fabsf(emb[t * 4 + k]);
		CU_ASSERT((t == 0 || t == 5) ? sum > 0.0f : sum == 0.0f);
	}
	CU_ASSERT_EQUAL(sfp_model_embedding_misses(m), 4);
	CU_ASSERT(isfinite(sfp_model_loss_tokens(m, y, 1, NULL, 1)));
	sfp_model_zero_grad(m);
	sfp_model_backward(m, x, 1);
	y[2] = 3; /* a target outside [0, V): NaN, no crash */
	CU_ASSERT(isnan(sfp_model_loss_tokens(m, y, 1, NULL, 1)));
	sfp_model_free(m);
}

/* ---- training the tiny GPT ------------------------------------------------- */
enum { GT = 8, GV = 16, GD = 16, GH = 2, GB = 4 };

typedef struct gpt_run {
	sfp_model *m;
	sfp_optim *o;
	float x[GB * GT];
	int32_t y[GB * GT];
} gpt_run;

/* The GPT with containers under `policy` at (e, mb) on weights and
 * activations (packed stash and packed weights), or without; AdamW. */
static void gpt_open(gpt_run *r, int policy, float e, float mb)
{
	sfp_cfg_model cfg = gpt_cfg(GT, GV, GD, GH, 1);
	sfp_error err;
	r->m = build(&cfg, GB);
	sfp_model_init(r->m, 5);
	if (policy != SFP_QPOLICY_OFF) {
		sfp_model_set_pack_weights(r->m, 1);
		CU_ASSERT_EQUAL_FATAL(sfp_model_set_quant(r->m, policy,
							  SFP_QTARGET_WEIGHTS | SFP_QTARGET_ACTIVATIONS,
							  e, mb, &err),
				      SFP_OK);
	}
	sfp_cfg_optimizer oc;
	memset(&oc, 0, sizeof oc);
	oc.type = SFP_OPTIMIZER_ADAMW;
	oc.lr = 1e-2f;
	oc.beta1 = 0.9f;
	oc.beta2 = 0.99f;
	oc.eps = 1e-8f;
	size_t np;
	sfp_model_params(r->m, &np);
	CU_ASSERT_EQUAL_FATAL(sfp_optim_create(&r->o, &oc, np, &err), SFP_OK);
	/* a fixed sequence per sample; the target of token t is token t + 1 */
	sfp_rng g;
	sfp_rng_seed(&g, 17);
	for (int s = 0; s < GB; s++) {
		int32_t seq[GT + 1];
		for (int t = 0; t <= GT; t++)
			seq[t] = (int32_t)sfp_rng_below(&g, GV);
		for (int t = 0; t < GT; t++) {
			r->x[s * GT + t] = (float)seq[t];
			r->y[s * GT + t] = seq[t + 1];
		}
	}
}

static float gpt_step(gpt_run *r, int64_t t, int *correct)
{
	sfp_model_forward(r->m, r->x, GB, 1, (uint64_t)t);
	float loss = sfp_model_loss_tokens(r->m, r->y, GB, correct, 1);
	sfp_model_zero_grad(r->m);
	sfp_model_backward(r->m, r->x, GB);
	sfp_optim_step(r->o, sfp_model_params(r->m, NULL), sfp_model_grads(r->m, NULL), 1e-2f, t);
	return loss;
}

static void gpt_close(gpt_run *r)
{
	sfp_optim_free(r->o);
	sfp_model_free(r->m);
}

#define OVERFIT_STEPS 200
#define OVERFIT_FRACTION 0.1 /* final loss below this fraction of ln V */

static void test_overfit(void)
{
	gpt_run r;
	gpt_open(&r, SFP_QPOLICY_OFF, 0, 0);
	float first = 0.0f, loss = 0.0f;
	int correct = 0;
	for (int t = 1; t <= OVERFIT_STEPS; t++) {
		loss = gpt_step(&r, t, &correct);
		if (t == 1)
			first = loss;
	}
	printf("\n    loss %.3f -> %.4f (ln V = %.3f), %d of %d tokens right ", first, loss,
	       log(GV), correct, GB * GT);
	CU_ASSERT(fabs(first - log(GV)) < 0.5);
	CU_ASSERT(loss < OVERFIT_FRACTION * log(GV));
	CU_ASSERT(correct >= GB * GT * 9 / 10);
	gpt_close(&r);
}

/* Fixed containers at e8 m23 (float32's own widths) change no bit of
 * training; e5 m4 still trains (and quantum widths run). */
#define CONTAINER_STEPS 25
#define E5M4_STEPS 200
#define E5M4_FRACTION 0.3

static void test_containers(void)
{
	gpt_run f, q;
	gpt_open(&f, SFP_QPOLICY_OFF, 0, 0);
	gpt_open(&q, SFP_QPOLICY_FIXED, 8, 23);
	CU_ASSERT(sfp_model_n_qtensors(q.m) > 0);
	int same_loss = 1;
	for (int t = 1; t <= CONTAINER_STEPS; t++)
		same_loss &= gpt_step(&f, t, NULL) == gpt_step(&q, t, NULL);
	size_t np;
	const float *pf = sfp_model_params(f.m, &np), *pq = sfp_model_params(q.m, NULL);
	CU_ASSERT(same_loss);
	CU_ASSERT(memcmp(pf, pq, np * sizeof(float)) == 0);
	sfp_model_mem mem;
	sfp_model_memory(q.m, &mem);
	CU_ASSERT(mem.stash > 0); /* the packed stash holds the kept outputs */
	int nw = 0, na = 0;
	for (int k = 0; k < sfp_model_n_qtensors(q.m); k++) {
		sfp_qtensor_info inf;
		sfp_model_qtensor(q.m, k, &inf);
		nw += !strcmp(inf.kind, "weights");
		na += !strcmp(inf.kind, "activations");
	}
	/* weights: wte, wpe, attn, fc1, fc2 (head tied); every output but the logits */
	CU_ASSERT_EQUAL(nw, 5);
	CU_ASSERT_EQUAL(na, 11);
	gpt_close(&f);
	gpt_close(&q);

	gpt_open(&q, SFP_QPOLICY_FIXED, 5, 4);
	float first = 0.0f, loss = 0.0f;
	for (int t = 1; t <= E5M4_STEPS; t++) {
		loss = gpt_step(&q, t, NULL);
		if (t == 1)
			first = loss;
	}
	printf("\n    e8 m23: %d steps bit-identical; e5 m4: loss %.3f -> %.4f ", CONTAINER_STEPS,
	       first, loss);
	CU_ASSERT(loss < E5M4_FRACTION * log(GV));
	gpt_close(&q);

	gpt_open(&q, SFP_QPOLICY_QUANTUM, 6, 8);
	for (int t = 1; t <= CONTAINER_STEPS; t++) {
		loss = gpt_step(&q, t, NULL);
		sfp_model_quant_update(q.m, 0.01f, 0.01f);
	}
	CU_ASSERT(isfinite(loss));
	gpt_close(&q);
}

/* BitPruning learns widths for the per-token linears (fc1, fc2; the tied
 * head has no matrix of its own); embedding and attention stay float32. */
static void test_prune(void)
{
	gpt_run r;
	gpt_open(&r, SFP_QPOLICY_OFF, 0, 0);
	sfp_prune_opts o = {SFP_PRUNE_CHANNEL, SFP_PRUNE_MEMORY, SFP_PRUNE_ADAM, 0, 8.0f, 2.0f, 16.0f};
	sfp_error err;
	CU_ASSERT_EQUAL_FATAL(sfp_model_set_prune(r.m, &o, &err), SFP_OK);
	CU_ASSERT_EQUAL(sfp_model_n_pruned(r.m), 2);
	sfp_prune_info inf;
	sfp_model_pruned(r.m, 0, &inf);
	CU_ASSERT_EQUAL(inf.groups, 4 * GD); /* fc1's output features */
	CU_ASSERT_DOUBLE_EQUAL(inf.macs, (double)GT * GD * 4 * GD, 1e-9); /* per token */
	float loss = 0.0f;
	for (int t = 1; t <= 10; t++) {
		loss = gpt_step(&r, t, NULL);
		sfp_model_prune_update(r.m, 0.01f, 0.01f);
	}
	CU_ASSERT(isfinite(loss));
	CU_ASSERT_EQUAL(sfp_model_prune_finalize(r.m, &err), SFP_OK);
	gpt_close(&r);
}

/* ---- errors and compatibility ------------------------------------------------ */
static void expect_error(const sfp_cfg_model *cfg, const char *want)
{
	sfp_model *m = NULL;
	sfp_error err;
	CU_ASSERT(sfp_model_create(&m, cfg, NULL, 2, &err) < 0);
	CU_ASSERT_PTR_NULL(m);
	if (!strstr(err.msg, want)) {
		fprintf(stderr, "\nwanted '%s' in '%s'", want, err.msg);
		CU_FAIL("error message");
	}
}

static void test_shape_errors(void)
{
	sfp_cfg_model m = gpt_cfg(4, 10, 6, 4, 1); /* 4 heads do not divide 6 */
	expect_error(&m, "layer 'attn' (attention): heads (4) must divide the 6 features");
	m = gpt_cfg(4, 10, 8, 2, 1);
	snprintf(m.layers[m.n_layers - 1].tie, SFP_CFG_NAME, "ln1");
	expect_error(&m, "tie 'ln1' names no earlier embedding layer");
	m = gpt_cfg(4, 10, 8, 2, 1);
	m.layers[m.n_layers - 1].out_features = 11;
	expect_error(&m, "is not this layer's (out 11, in 8)");
	m = seq_cfg(4, 8);
	sfp_cfg_layer e = L("embedding", NULL);
	e.vocab = 3;
	e.dim = 4;
	push(&m, e);
	expect_error(&m, "an embedding must be the first layer");
	m = seq_cfg(12, 0);
	sfp_cfg_layer a = L("attention", NULL);
	a.heads = 1;
	push(&m, a);
	expect_error(&m, "input (12) is not a sequence (T, 1, D) with D > 1");
	m = seq_cfg(4, 8);
	push(&m, linear(NULL, 1, 1));
	expect_error(&m, "out_features must be at least 2 on a sequence");
	m = seq_cfg(4, 8); /* per-token scores are a valid output; a (c, h, w) linear input is not */
	m.input[1] = 2;
	push(&m, linear(NULL, 3, 1));
	expect_error(&m, "is not flat; add a flatten layer before it");
}

/* The example models build as before the sequence layers: the same
 * parameter counts and signatures (the values of commit c28b4fd). */
static void test_examples_unchanged(void)
{
	static const struct {
		const char *file;
		size_t params;
		uint32_t sig;
	} ex[] = {
		{"deploy/examples/fmnist-cnn.yaml", 215370, 0xed0a2289u},
		{"deploy/examples/fmnist-mlp.yaml", 235146, 0xdfa88015u},
		{"deploy/examples/fmnist-resnet.yaml", 116602, 0x35f75668u},
	};
	for (size_t i = 0; i < sizeof ex / sizeof ex[0]; i++) {
		static sfp_config cfg;
		sfp_error err;
		int rc = sfp_config_load_all(&cfg, ex[i].file, NULL, 0, &err);
		if (rc < 0)
			fprintf(stderr, "\n%s\n", err.msg);
		CU_ASSERT_EQUAL_FATAL(rc, SFP_OK);
		sfp_model *m = build(&cfg.model, 4);
		size_t np;
		sfp_model_params(m, &np);
		CU_ASSERT_EQUAL(np, ex[i].params);
		CU_ASSERT_EQUAL(sfp_model_signature(m), ex[i].sig);
		sfp_model_free(m);
	}
}

int main(void)
{
	static const test_case cases[] = {
		{"gradient: layernorm + per-token linear + gelu", test_grad_layernorm_linear_gelu},
		{"gradient: position + attention + residual", test_grad_attention},
		{"gradient: residual add from the model's input", test_grad_from_input},
		{"gradient: embedding + tied head", test_grad_embedding_tied},
		{"gradient: tiny GPT, whole model", test_grad_gpt},
		{"causal mask: a later token changes no earlier output", test_causal_mask},
		{"embedding: bad ids give a zero row and are counted", test_embedding_guard},
		{"per-sample layers in chunks: kept tensors at sample offsets", test_chunks},
		{"tiny GPT overfits a fixed sequence", test_overfit},
		{"containers: e8 m23 bit-identical, e5 m4 trains", test_containers},
		{"BitPruning on the per-token linears", test_prune},
		{"shape errors name the layer", test_shape_errors},
		{"example models keep their parameters and signatures", test_examples_unchanged},
		{NULL, NULL},
	};
	return test_run_suite("nn_transformer", cases);
}
