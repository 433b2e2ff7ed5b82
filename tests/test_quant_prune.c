/*
 * test_quant_prune.c -- BitPruning: the fixed-point quantizer and its codes, the
 * width gradient against finite differences of the interpolated quantizer,
 * the penalty driving widths down on a toy problem while the loss holds,
 * bit packing (round trip, short buffers, corrupt codes), the model's
 * forward pass at integer widths, the .sfpq file (round trip bit for bit,
 * every corrupted byte refused, forged fields refused) and a short
 * fine-tune on a slice of Fashion-MNIST.
 */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "nn/model_internal.h"
#include "sfp/config.h"
#include "sfp/train.h"
#include "sfp/quant.h"
#include "tests/util/testutil.h"

/* Relative tolerance of a gradient against its central difference: the
 * interpolated loss is linear in n between integers, so the two agree up
 * to float rounding of the quantized values. */
#define GRAD_RTOL 1e-4

static char *dir;

static void random_values(float *x, int n, uint64_t seed)
{
	sfp_rng r;
	sfp_rng_seed(&r, seed);
	for (int i = 0; i < n; i++)
		x[i] = sfp_rng_normal(&r) * expf(0.5f * sfp_rng_normal(&r));
}

/* Codes in range, the largest value on the top code, error at most half a
 * step, Q = dequant(codes) and the interpolation at an integer = Q, bit for
 * bit; an all-zero group quantizes to zeros. */
static void test_quantizer(void)
{
	enum { N = 1000 };
	static float x[N], q[N], d[N], ip[N];
	static int32_t c[N];
	random_values(x, N, 3);
	const float amax = sfp_prune_amax(x, N);
	int top = 0;
	for (int i = 0; i < N; i++)
		top = fabsf(x[i]) == amax ? i : top;
	for (unsigned b = SFP_PRUNE_MIN_BITS; b <= SFP_PRUNE_MAX_BITS; b++) {
		const int32_t L = (1 << (b - 1)) - 1;
		const float s = sfp_prune_scale(amax, b);
		sfp_prune_codes(c, x, N, amax, b);
		sfp_prune_dequant(d, c, N, s);
		sfp_prune_quant(q, x, N, amax, b);
		sfp_prune_interp(ip, x, N, amax, (float)b);
		int in_range = 1;
		double worst = 0.0;
		for (int i = 0; i < N; i++) {
			in_range &= c[i] >= -L && c[i] <= L;
			worst = fmax(worst, fabs((double)q[i] - x[i]) / s);
		}
		CU_ASSERT(in_range);
		CU_ASSERT_EQUAL(abs(c[top]), L);
		CU_ASSERT(worst <= 0.5 + 1e-5);
		CU_ASSERT(memcmp(q, d, sizeof q) == 0);
		CU_ASSERT(memcmp(q, ip, sizeof q) == 0);
	}
	/* 2 bits is ternary */
	sfp_prune_codes(c, x, N, amax, 2);
	int ternary = 1;
	for (int i = 0; i < N; i++)
		ternary &= c[i] >= -1 && c[i] <= 1;
	CU_ASSERT(ternary);
	/* zeros */
	memset(x, 0, sizeof x);
	sfp_prune_quant(q, x, N, sfp_prune_amax(x, N), 4);
	sfp_prune_codes(c, x, N, 0.0f, 4);
	CU_ASSERT_EQUAL(sfp_prune_amax(x, N), 0.0f);
	CU_ASSERT_EQUAL(q[0], 0.0f);
	CU_ASSERT_EQUAL(c[N - 1], 0);
}

/* L(n) = sum_i g_i Q_n(x_i), from sfp_prune_interp. */
static double interp_loss(const float *g, const float *x, int n, float amax, double width)
{
	float *q = malloc((size_t)n * sizeof(float));
	sfp_prune_interp(q, x, (uint64_t)n, amax, (float)width);
	double s = 0.0;
	for (int i = 0; i < n; i++)
		s += (double)g[i] * q[i];
	free(q);
	return s;
}

static void test_interp_gradient(void)
{
	enum { N = 4096 };
	static float x[N], g[N];
	random_values(x, N, 11);
	random_values(g, N, 12);
	const float amax = sfp_prune_amax(x, N);
	const float widths[] = {2.5f, 3.3f, 4.7f, 6.25f, 7.9f, 12.4f};
	const double h = 0.05;
	double maxdiff = 0.0;
	for (size_t k = 0; k < sizeof widths / sizeof widths[0]; k++) {
		sfp_qwidth w = {widths[k], 0.0f, 2.0f, 16.0f};
		double an = sfp_prune_grad(g, x, N, amax, &w);
		double fd = (interp_loss(g, x, N, amax, widths[k] + h) -
			     interp_loss(g, x, N, amax, widths[k] - h)) /
			    (2 * h);
		maxdiff = fmax(maxdiff, fabs(an - fd));
		CU_ASSERT_DOUBLE_EQUAL(an, fd, GRAD_RTOL * (1.0 + fabs(fd)));
		CU_ASSERT(fd != 0.0);
	}
	printf("\n    maxdiff %.2e ", maxdiff);
	/* at an integer: the difference to the width below */
	sfp_qwidth w = {5.0f, 0.0f, 2.0f, 8.0f};
	double left = interp_loss(g, x, N, amax, 5.0) - interp_loss(g, x, N, amax, 4.0);
	CU_ASSERT_DOUBLE_EQUAL(sfp_prune_grad(g, x, N, amax, &w), left, GRAD_RTOL * (1 + fabs(left)));
	/* at the floor: the difference to the width above, so it can climb back */
	w = (sfp_qwidth){2.0f, 0.0f, 2.0f, 8.0f};
	double right = interp_loss(g, x, N, amax, 3.0) - interp_loss(g, x, N, amax, 2.0);
	CU_ASSERT_DOUBLE_EQUAL(sfp_prune_grad(g, x, N, amax, &w), right,
			       GRAD_RTOL * (1 + fabs(right)));
	/* a width pinned (lo = hi) has none */
	w = (sfp_qwidth){4.0f, 0.0f, 4.0f, 4.0f};
	CU_ASSERT_EQUAL(sfp_prune_grad(g, x, N, amax, &w), 0.0);
}

/* Activations: a fixed range clips, the unsigned grid spends every code on
 * [0, r], and the width gradient matches finite differences on both grids
 * (values beyond the range included). */
static void test_act_quantizer(void)
{
	enum { N = 4096 };
	static float x[N], g[N], q[N], a[N], b[N];
	random_values(x, N, 31);
	random_values(g, N, 32);
	const float r = 0.6f * sfp_prune_amax(x, N); /* some values clip */
	/* unsigned, 3 bits: 8 levels 0, r/7, ..., r */
	sfp_prune_interp_act(q, x, N, r, 1, 3.0f);
	int on_grid = 1, clipped = 0;
	for (int i = 0; i < N; i++) {
		const float c = q[i] / (r / 7.0f);
		on_grid &= q[i] >= 0.0f && q[i] <= r * (1 + 1e-6f) && fabsf(c - rintf(c)) < 1e-4f;
		clipped += x[i] > r && q[i] == 7.0f * (r / 7.0f);
	}
	CU_ASSERT(on_grid);
	CU_ASSERT(clipped > 0);
	/* signed at an integer width = the weights' Q with amax = r, inside the range */
	sfp_prune_interp_act(a, x, N, r, 0, 5.0f);
	sfp_prune_quant(b, x, N, r, 5);
	CU_ASSERT(memcmp(a, b, sizeof a) == 0);
	double maxdiff = 0.0;
	for (int uns = 0; uns <= 1; uns++)
		for (int j = 0; j < 4; j++) {
			const float n = (const float[]){2.3f, 3.6f, 5.7f, 7.4f}[j];
			sfp_qwidth w = {n, 0.0f, 2.0f, 16.0f};
			const double h = 0.05, an = sfp_prune_grad_act(g, x, N, r, uns, &w);
			double lp = 0.0, lm = 0.0;
			sfp_prune_interp_act(a, x, N, r, uns, n + (float)h);
			sfp_prune_interp_act(b, x, N, r, uns, n - (float)h);
			for (int i = 0; i < N; i++) {
				lp += (double)g[i] * a[i];
				lm += (double)g[i] * b[i];
			}
			const double fd = (lp - lm) / (2 * h);
			maxdiff = fmax(maxdiff, fabs(an - fd));
			CU_ASSERT_DOUBLE_EQUAL(an, fd, GRAD_RTOL * (1.0 + fabs(fd)));
		}
	printf("\n    maxdiff %.2e ", maxdiff);
}

/* By hand: costs 100 and 300 -> weights 1/4, 3/4. */
static void test_penalty(void)
{
	sfp_qwidth w[2] = {{6.0f, 0.0f, 2.0f, 8.0f}, {2.5f, 1.0f, 2.0f, 8.0f}};
	const double cost[2] = {100.0, 300.0};
	float p = sfp_prune_penalty(w, cost, 2, 0.2f);
	CU_ASSERT_DOUBLE_EQUAL(p, 0.2 * (0.25 * 6.0 + 0.75 * 2.5), 1e-6);
	CU_ASSERT_DOUBLE_EQUAL(w[0].grad, 0.05, 1e-7);
	CU_ASSERT_DOUBLE_EQUAL(w[1].grad, 1.15, 1e-6);
	const double none[2] = {0.0, 0.0};
	CU_ASSERT_EQUAL(sfp_prune_penalty(w, none, 2, 0.2f), 0.0f);
}

/*
 * Toy problem: learn w (straight through) so that Q_n(w) matches a target
 * t, L = mean (Q_n(w) - t)^2 + gamma n. Each bit less roughly quadruples
 * the error, so the penalty pushes n down from 8 until the task pushes back:
 * the width must fall a long way while the task loss stays small.
 */
static void test_penalty_drives_widths(void)
{
	enum { N = 512 };
	static float t[N], w[N], q[N], g[N];
	sfp_rng r;
	sfp_rng_seed(&r, 21);
	for (int i = 0; i < N; i++)
		t[i] = w[i] = sfp_rng_normal(&r);
	sfp_qwidth n = {8.0f, 0.0f, 2.0f, 8.0f};
	const double cost = N;
	for (int step = 0; step < 400; step++) {
		const float amax = sfp_prune_amax(w, N);
		sfp_prune_interp(q, w, N, amax, n.n);
		for (int i = 0; i < N; i++)
			g[i] = 2.0f * (q[i] - t[i]) / N;
		n.grad += (float)sfp_prune_grad(g, w, N, amax, &n);
		sfp_prune_penalty(&n, &cost, 1, 0.005f);
		sfp_qwidth_step(&n, 5.0f);
		for (int i = 0; i < N; i++)
			w[i] -= 0.1f * g[i] * N; /* the weights learn too */
	}
	const unsigned b = (unsigned)floorf(n.n + 0.5f);
	sfp_prune_quant(q, w, N, sfp_prune_amax(w, N), b);
	double task = 0.0, var = 0.0;
	for (int i = 0; i < N; i++) {
		task += (double)(q[i] - t[i]) * (q[i] - t[i]) / N;
		var += (double)t[i] * t[i] / N;
	}
	printf("\n    width %.2f -> %u bits, task loss %.2e (target variance %.2f) ", (double)n.n,
	       b, task, var);
	CU_ASSERT(n.n < 6.5f);
	CU_ASSERT(b >= 4); /* not below what the task needs */
	CU_ASSERT(task < 0.01 * var);
}

static void test_pack(void)
{
	enum { N = 1000 };
	static int32_t c[N], back[N];
	static uint8_t buf[N * 2 + 8];
	sfp_rng r;
	sfp_rng_seed(&r, 5);
	sfp_error err;
	const uint64_t sizes[] = {0, 1, 7, 13, N};
	for (unsigned b = SFP_PRUNE_MIN_BITS; b <= SFP_PRUNE_MAX_BITS; b++) {
		const int32_t L = (1 << (b - 1)) - 1;
		for (size_t k = 0; k < sizeof sizes / sizeof sizes[0]; k++) {
			const uint64_t n = sizes[k];
			for (uint64_t i = 0; i < n; i++)
				c[i] = (int32_t)sfp_rng_below(&r, 2u * (unsigned)L + 1) - L;
			if (n > 2) {
				c[0] = L;
				c[1] = -L;
			}
			size_t w = 99;
			const size_t bound = sfp_prune_pack_bound(n, b);
			CU_ASSERT_EQUAL(bound, SFP_PRUNE_PACKED_BYTES(n, b));
			CU_ASSERT_EQUAL_FATAL(sfp_prune_pack(buf, bound, &w, c, n, b, &err), SFP_OK);
			CU_ASSERT_EQUAL(w, bound);
			CU_ASSERT_EQUAL_FATAL(sfp_prune_unpack(back, n, buf, w, b, &err), SFP_OK);
			CU_ASSERT(memcmp(c, back, n * sizeof(int32_t)) == 0);
			if (n) {
				CU_ASSERT_EQUAL(sfp_prune_pack(buf, bound - 1, &w, c, n, b, &err),
						SFP_ENOSPC);
				CU_ASSERT_EQUAL(sfp_prune_unpack(back, n, buf, bound - 1, b, &err),
						SFP_ETRUNC);
			}
		}
		/* -2^(b-1) is never written: a reader meeting it has corrupt input */
		size_t w;
		c[0] = 0;
		CU_ASSERT_EQUAL(sfp_prune_pack(buf, sizeof buf, &w, c, 1, b, &err), SFP_OK);
		buf[(b - 1) / 8] |= (uint8_t)(1u << ((b - 1) % 8));
		CU_ASSERT_EQUAL(sfp_prune_unpack(back, 1, buf, w, b, &err), SFP_ECORRUPT);
		c[0] = -L - 1;
		CU_ASSERT_EQUAL(sfp_prune_pack(buf, sizeof buf, &w, c, 1, b, &err), SFP_EINVAL);
	}
	/* nonzero padding after 3 codes of 3 bits */
	size_t w;
	const int32_t three[3] = {1, -2, 3};
	CU_ASSERT_EQUAL(sfp_prune_pack(buf, sizeof buf, &w, three, 3, 3, &err), SFP_OK);
	CU_ASSERT_EQUAL(w, 2);
	CU_ASSERT_EQUAL(sfp_prune_unpack(back, 3, buf, w, 3, &err), SFP_OK);
	buf[1] |= 0x80;
	CU_ASSERT_EQUAL(sfp_prune_unpack(back, 3, buf, w, 3, &err), SFP_ECORRUPT);
	CU_ASSERT_EQUAL(sfp_prune_unpack(back, 3, buf, w, 17, &err), SFP_ECORRUPT);
}

/* ---- the model ----------------------------------------------------------- */
static const char *small_cfg = "model:\n"
			       "  input: [1, 12, 12]\n"
			       "  layers:\n"
			       "    - {type: conv2d, name: c1, out_channels: 4, kernel: 3, padding: 1}\n"
			       "    - {type: batchnorm}\n"
			       "    - {type: relu}\n"
			       "    - {type: maxpool, kernel: 2}\n"
			       "    - {type: flatten}\n"
			       "    - {type: linear, name: f1, out_features: 16}\n"
			       "    - {type: relu}\n"
			       "    - {type: linear, name: f2, out_features: 10}\n";

static sfp_model *small_model(const char *text, uint64_t seed, int B)
{
	static sfp_config c;
	sfp_error err;
	CU_ASSERT_EQUAL_FATAL(sfp_config_load_string(&c, "small.yaml", text, strlen(text), &err),
			      SFP_OK);
	sfp_model *m = NULL;
	CU_ASSERT_EQUAL_FATAL(sfp_model_create(&m, &c.model, NULL, B, &err), SFP_OK);
	sfp_model_init(m, seed);
	return m;
}

enum { SB = 8 };

static void small_batch(float *x, uint8_t *y, uint64_t seed)
{
	random_values(x, SB * 144, seed);
	for (int i = 0; i < SB; i++)
		y[i] = (uint8_t)(i * 3 % 10);
}

/* A few fine-tune steps with a strong penalty on random data, so widths
 * differ between groups; then finalize. */
static void prune_small(sfp_model *m, int granularity, int acts)
{
	static float x[SB * 144];
	static uint8_t y[SB];
	sfp_error err;
	sfp_prune_opts o = {.granularity = granularity,
			    .penalty = SFP_PRUNE_MEMORY,
			    .optim = SFP_PRUNE_ADAM,
			    .activations = acts,
			    .bits = 6.5f,
			    .min_bits = 2.0f,
			    .max_bits = 8.0f};
	CU_ASSERT_EQUAL_FATAL(sfp_model_set_prune(m, &o, &err), SFP_OK);
	sfp_model_prune_observe(m, 1);
	for (int s = 0; s < 3; s++) {
		small_batch(x, y, 50 + (uint64_t)s);
		sfp_model_forward(m, x, SB, 1, (uint64_t)s);
	}
	sfp_model_prune_observe(m, 0);
	for (int s = 0; s < 20; s++) {
		small_batch(x, y, 100 + (uint64_t)s);
		sfp_model_forward(m, x, SB, 1, (uint64_t)s);
		sfp_model_loss(m, y, SB, NULL, 1);
		sfp_model_zero_grad(m);
		sfp_model_backward(m, x, SB);
		sfp_model_prune_update(m, 0.2f, 0.05f);
	}
	CU_ASSERT_EQUAL_FATAL(sfp_model_prune_finalize(m, &err), SFP_OK);
}

/* At integer widths the forward pass reads exactly Q(w, b): the same logits
 * as a float model holding Q(w, b). Containers and pruning exclude each
 * other. */
static void test_model_forward_is_q(void)
{
	static float x[SB * 144];
	static uint8_t y[SB];
	small_batch(x, y, 1);
	sfp_model *a = small_model(small_cfg, 7, SB), *b = small_model(small_cfg, 7, SB);
	sfp_error err;
	sfp_prune_opts o = {.granularity = SFP_PRUNE_CHANNEL,
			    .penalty = SFP_PRUNE_MEMORY,
			    .optim = SFP_PRUNE_ADAM,
			    .bits = 5.0f,
			    .min_bits = 2.0f,
			    .max_bits = 8.0f};
	CU_ASSERT_EQUAL_FATAL(sfp_model_set_prune(a, &o, &err), SFP_OK);
	CU_ASSERT_EQUAL(sfp_model_set_quant(a, SFP_QPOLICY_FIXED, SFP_QTARGET_WEIGHTS, 4, 3, &err),
			SFP_EINVAL);
	CU_ASSERT_EQUAL(sfp_model_n_pruned(a), 3);
	/* b: the masters replaced by Q(w, 5) per output channel, by hand */
	size_t np;
	float *pb = sfp_model_params(b, &np);
	for (int i = 0; i < sfp_model_n_layers(b); i++) {
		sfp_layer_info li;
		sfp_model_layer(b, i, &li);
		if (strcmp(li.type, "linear") && strcmp(li.type, "conv2d"))
			continue;
		const size_t nw = li.nparams - (size_t)li.out.c, per = nw / (size_t)li.out.c;
		for (int j = 0; j < li.out.c; j++) {
			float *w = pb + li.param_offset + (size_t)j * per;
			sfp_prune_quant(w, w, per, sfp_prune_amax(w, per), 5);
		}
	}
	const float *la = sfp_model_forward(a, x, SB, 0, 0);
	float logits[SB * 10];
	memcpy(logits, la, sizeof logits);
	const float *lb = sfp_model_forward(b, x, SB, 0, 0);
	CU_ASSERT(memcmp(logits, lb, sizeof logits) == 0);
	/* the learning step moves widths; containers refuse to join */
	sfp_model_forward(a, x, SB, 1, 1);
	sfp_model_loss(a, y, SB, NULL, 1);
	sfp_model_zero_grad(a);
	sfp_model_backward(a, x, SB);
	sfp_model_prune_update(a, 0.5f, 0.5f);
	sfp_prune_summary ps;
	sfp_model_prune_summary(a, &ps);
	CU_ASSERT(ps.w_per_weight < 5.0);
	CU_ASSERT_EQUAL(ps.a_per_value, 32.0); /* inputs stay float */
	sfp_prune_info in;
	sfp_model_pruned(a, 0, &in);
	CU_ASSERT_STRING_EQUAL(in.layer, "c1");
	CU_ASSERT_EQUAL(in.groups, 4);
	CU_ASSERT_EQUAL(in.count, 36);
	CU_ASSERT_DOUBLE_EQUAL(in.macs, 36.0 * 144, 0);
	CU_ASSERT_EQUAL_FATAL(sfp_model_set_quant(b, SFP_QPOLICY_FIXED, SFP_QTARGET_WEIGHTS, 4, 3,
						  &err),
			      SFP_OK);
	CU_ASSERT_EQUAL(sfp_model_set_prune(b, &o, &err), SFP_EINVAL);
	o.bits = 9.0f; /* above max_bits */
	CU_ASSERT_EQUAL(sfp_model_set_prune(a, &o, &err), SFP_EINVAL);
	sfp_model_free(a);
	sfp_model_free(b);
}

/* Tolerance of the in-model check: central differences of a float32 loss
 * through ReLUs and max pooling (as in test_nn_layers.c), and through the other
 * inputs' quantizers held at 16 bits, whose steps (1e-4 of the range) add
 * a little noise. */
#define MODEL_FD_H 0.05f
#define MODEL_FD_ATOL 2e-4
#define MODEL_FD_RTOL 3e-2

/* The activation widths' gradients, formed in backward by the model's
 * hooks, against central differences of the loss in each width: a conv on
 * the data (no producer needs its input gradient: the scratch path), a
 * linear after a flattened max-pool and one after an in-place ReLU (the
 * snapshot path). Backward passes straight through the quantizers, so the
 * other inputs are held at a fine grid while one width is checked (at a
 * coarse one the loss is a staircase in the upstream widths). */
static void test_model_act_gradient(void)
{
	const char *text = "model:\n  input: [1, 12, 12]\n  layers:\n"
			   "    - {type: conv2d, out_channels: 4, kernel: 3, padding: 1}\n"
			   "    - {type: relu}\n"
			   "    - {type: maxpool, kernel: 2}\n"
			   "    - {type: flatten}\n"
			   "    - {type: linear, out_features: 16}\n"
			   "    - {type: relu}\n"
			   "    - {type: linear, out_features: 10}\n";
	static float x[SB * 144];
	static uint8_t y[SB];
	sfp_model *m = small_model(text, 5, SB);
	small_batch(x, y, 9);
	sfp_error err;
	sfp_prune_opts o = {.granularity = SFP_PRUNE_LAYER,
			    .penalty = SFP_PRUNE_MEMORY,
			    .optim = SFP_PRUNE_SGD,
			    .activations = 1,
			    .bits = 3.4f,
			    .min_bits = 2.0f,
			    .max_bits = 16.0f};
	CU_ASSERT_EQUAL_FATAL(sfp_model_set_prune(m, &o, &err), SFP_OK);
	sfp_model_prune_observe(m, 1);
	sfp_model_forward(m, x, SB, 1, 1);
	sfp_model_prune_observe(m, 0);
	sfp_prune_info in;
	sfp_model_pruned(m, 0, &in);
	CU_ASSERT(in.act_signed); /* the standardised data */
	sfp_model_pruned(m, 1, &in);
	CU_ASSERT(!in.act_signed); /* after a ReLU */
	double maxdiff = 0.0;
	for (int k = 0; k < 3; k++) {
		for (int j = 0; j < 3; j++) {
			sfp_intweights_act_width(m, j)->n = j == k ? 3.4f : 16.0f;
			sfp_intweights_act_width(m, j)->grad = 0.0f;
		}
		sfp_qwidth *w = sfp_intweights_act_width(m, k);
		sfp_model_forward(m, x, SB, 1, 1);
		sfp_model_loss(m, y, SB, NULL, 1);
		sfp_model_zero_grad(m);
		sfp_model_backward(m, x, SB);
		const float n0 = w->n;
		w->n = n0 + MODEL_FD_H;
		sfp_model_forward(m, x, SB, 1, 1);
		const double lp = sfp_model_loss(m, y, SB, NULL, 0);
		w->n = n0 - MODEL_FD_H;
		sfp_model_forward(m, x, SB, 1, 1);
		const double lm = sfp_model_loss(m, y, SB, NULL, 0);
		w->n = n0;
		const double fd = (lp - lm) / (2.0 * MODEL_FD_H);
		maxdiff = fmax(maxdiff, fabs(w->grad - fd));
		if (fabs(w->grad - fd) > MODEL_FD_ATOL + MODEL_FD_RTOL * fabs(fd))
			fprintf(stderr, "\n    input %d: backward %.6g, differences %.6g\n", k,
				(double)w->grad, fd);
		CU_ASSERT(fabs(w->grad - fd) <= MODEL_FD_ATOL + MODEL_FD_RTOL * fabs(fd));
		CU_ASSERT(fd != 0.0);
	}
	printf("\n    maxdiff %.2e ", maxdiff);
	sfp_model_free(m);
}

static void *read_all(const char *path, size_t *len)
{
	void *buf = NULL;
	sfp_error err;
	CU_ASSERT_EQUAL_FATAL(sfp_file_read(path, &buf, len, &err), SFP_OK);
	return buf;
}

/* Save, load into a model with other weights: parameters, buffers, logits
 * and widths are the same, bit for bit; the size is as announced. */
static void test_file_round_trip(void)
{
	for (int run = 0; run < 4; run++) {
		const int gran = run & 1, acts = run >> 1;
		static float x[SB * 144], la[SB * 10];
		static uint8_t y[SB];
		sfp_model *a = small_model(small_cfg, 7, SB), *b = small_model(small_cfg, 99, SB);
		prune_small(a, gran, acts);
		char path[600];
		snprintf(path, sizeof path, "%s/m%d.sfpq", dir, run);
		sfp_error err;
		CU_ASSERT_EQUAL_FATAL(sfp_model_save_pruned(a, path, &err), SFP_OK);
		size_t len;
		void *buf = read_all(path, &len);
		CU_ASSERT_EQUAL(len, sfp_model_pruned_bytes(a));
		int rc = sfp_model_load_pruned(b, path, buf, len, &err);
		if (rc < 0)
			fprintf(stderr, "\n%s\n", err.msg);
		CU_ASSERT_EQUAL_FATAL(rc, SFP_OK);
		size_t np, nb;
		float *pa = sfp_model_params(a, &np), *pb = sfp_model_params(b, NULL);
		float *ba = sfp_model_buffers(a, &nb), *bb = sfp_model_buffers(b, NULL);
		CU_ASSERT(memcmp(pa, pb, np * sizeof(float)) == 0);
		CU_ASSERT(memcmp(ba, bb, nb * sizeof(float)) == 0);
		small_batch(x, y, 3);
		memcpy(la, sfp_model_forward(a, x, SB, 0, 0), sizeof la);
		CU_ASSERT(memcmp(la, sfp_model_forward(b, x, SB, 0, 0), sizeof la) == 0);
		unsigned lo = 99, hi = 0;
		sfp_prune_summary ps;
		sfp_model_prune_summary(a, &ps);
		const double bw = ps.w_per_weight;
		for (int k = 0; k < sfp_model_n_pruned(a); k++) {
			sfp_prune_info ia, ib;
			sfp_model_pruned(a, k, &ia);
			sfp_model_pruned(b, k, &ib);
			CU_ASSERT_EQUAL(ia.bits, ib.bits);
			CU_ASSERT_EQUAL(ia.groups, ib.groups);
			CU_ASSERT_EQUAL(ia.min_bits, ib.min_bits);
			CU_ASSERT_EQUAL(ia.act_bits, ib.act_bits);
			CU_ASSERT_EQUAL(ia.act_range, ib.act_range);
			CU_ASSERT_EQUAL(ia.act_signed, ib.act_signed);
			CU_ASSERT_EQUAL(ia.act_bits > 0, acts);
			lo = ia.min_bits < lo ? ia.min_bits : lo;
			hi = ia.max_bits > hi ? ia.max_bits : hi;
		}
		printf("\n    %s%s: %zu bytes, widths %u..%u, %.2f bits per weight, inputs %.2f ",
		       gran ? "channel" : "layer", acts ? " + inputs" : "", len, lo, hi, bw,
		       ps.a_per_layer);
		CU_ASSERT(bw < 6.0); /* the penalty moved them */
		free(buf);
		sfp_model_free(a);
		sfp_model_free(b);
	}
}

/* Recompute both CRCs of an .sfpq after a deliberate edit (header layout as
 * in docs/bitpruning.md: payload CRC at 56, header CRC at 60). */
static void reseal(uint8_t *buf, size_t len)
{
	uint32_t c = sfp_crc32c(0, buf + 64, len - 64);
	memcpy(buf + 56, &c, 4);
	memset(buf + 60, 0, 4);
	c = sfp_crc32c(0, buf, 64);
	memcpy(buf + 60, &c, 4);
}

static int load_copy(sfp_model *m, const uint8_t *src, size_t len, sfp_error *err)
{
	uint8_t *c = malloc(len ? len : 1);
	memcpy(c, src, len);
	int rc = sfp_model_load_pruned(m, "t.sfpq", c, len, err);
	free(c);
	return rc;
}

/* Every flipped byte and every truncation is refused and changes nothing;
 * forged fields with valid CRCs are refused by the structural checks. */
static void test_file_corruption(void)
{
	sfp_model *a = small_model(small_cfg, 7, SB), *b = small_model(small_cfg, 99, SB);
	prune_small(a, SFP_PRUNE_CHANNEL, 1);
	char path[600];
	snprintf(path, sizeof path, "%s/c.sfpq", dir);
	sfp_error err;
	CU_ASSERT_EQUAL_FATAL(sfp_model_save_pruned(a, path, &err), SFP_OK);
	size_t len, np;
	uint8_t *good = read_all(path, &len), *bad = malloc(len + 1);
	float *pb = sfp_model_params(b, &np), *before = malloc(np * sizeof(float));
	memcpy(before, pb, np * sizeof(float));
	int refused = 0;
	for (size_t i = 0; i < len; i++) {
		memcpy(bad, good, len);
		bad[i] ^= 0x10;
		refused += load_copy(b, bad, len, &err) < 0;
	}
	CU_ASSERT_EQUAL(refused, (int)len);
	int trunc = 1;
	for (size_t n = 0; n < len; n += 1 + n / 8)
		trunc &= load_copy(b, good, n, &err) == SFP_ETRUNC;
	CU_ASSERT(trunc);
	CU_ASSERT_EQUAL(load_copy(b, good, len - 1, &err), SFP_ETRUNC);
	memcpy(bad, good, len);
	bad[len] = 0;
	CU_ASSERT_EQUAL(load_copy(b, bad, len + 1, &err), SFP_ECORRUPT);
	CU_ASSERT(memcmp(before, pb, np * sizeof(float)) == 0);
	CU_ASSERT_EQUAL(sfp_model_n_pruned(b), 0);

	/* forged fields, CRCs made valid again */
	uint32_t nt, ng;
	memcpy(&nt, good + 20, 4);
	memcpy(&ng, good + 24, 4);
	const size_t groups = 64 + (size_t)nt * 40, codes = groups + (size_t)ng * 8;
	struct {
		size_t off;
		uint32_t val;
		int code;
		const char *msg;
	} forge[] = {
		{4, 2, SFP_EVERSION, "version 2"},
		{12, 0x12345678, SFP_EINVAL, "different model"},
		{16, 7, SFP_ECORRUPT, "granularity"},
		{20, 2, SFP_ECORRUPT, "tensors"},
		{28, 6, SFP_ECORRUPT, "flags"},
		{28, 0, SFP_ECORRUPT, "input width"},            /* activations off, widths given */
		{64 + 8, 3, SFP_ECORRUPT, "does not describe"},  /* tensor 0's param offset */
		{64 + 24, 17, SFP_ECORRUPT, "input width"},      /* tensor 0's input bits */
		{64 + 28, 2, SFP_ECORRUPT, "input width"},       /* its grid */
		{64 + 32, 0xff800000, SFP_ECORRUPT, "range"},    /* -inf range */
		{64 + 36, 1, SFP_ECORRUPT, "input width"},       /* reserved */
		{groups, 17, SFP_ECORRUPT, "width 17"},          /* group 0's bits */
		{groups, 1, SFP_ECORRUPT, "width 1"},
		{groups + 4, 0x7fc00000, SFP_ECORRUPT, "scale"}, /* a NaN scale */
		{groups + 4, 0xbf800000, SFP_ECORRUPT, "scale"}, /* -1 */
		{groups, 8, SFP_ECORRUPT, "payload of"},         /* wider codes than stored */
	};
	for (size_t k = 0; k < sizeof forge / sizeof forge[0]; k++) {
		memcpy(bad, good, len);
		uint32_t old;
		memcpy(&old, bad + forge[k].off, 4);
		if (forge[k].val == 8 && old == 8)
			forge[k].val = 2; /* needs a different width */
		memcpy(bad + forge[k].off, &forge[k].val, 4);
		reseal(bad, len);
		int rc = load_copy(b, bad, len, &err);
		CU_ASSERT_EQUAL(rc, forge[k].code);
		if (!strstr(err.msg, forge[k].msg))
			fprintf(stderr, "\n    forged field %zu: '%s'\n", k, err.msg);
		CU_ASSERT_PTR_NOT_NULL(strstr(err.msg, forge[k].msg));
	}
	/* the code -2^(b-1) in group 0, and a non-finite float parameter */
	uint32_t bits;
	memcpy(&bits, good + groups, 4);
	memcpy(bad, good, len);
	for (unsigned i = 0; i < bits; i++)
		bad[codes + i / 8] = (uint8_t)((bad[codes + i / 8] & ~(1u << (i % 8))) |
					       (i == bits - 1 ? 1u << (i % 8) : 0u));
	reseal(bad, len);
	CU_ASSERT_EQUAL(load_copy(b, bad, len, &err), SFP_ECORRUPT);
	CU_ASSERT_PTR_NOT_NULL(strstr(err.msg, "never written"));
	memcpy(bad, good, len);
	const uint32_t inf = 0x7f800000;
	memcpy(bad + len - 4, &inf, 4);
	reseal(bad, len);
	CU_ASSERT_EQUAL(load_copy(b, bad, len, &err), SFP_ECORRUPT);
	CU_ASSERT_PTR_NOT_NULL(strstr(err.msg, "not finite"));
	memcpy(bad, good, len);
	memcpy(bad, "SFPK", 4);
	CU_ASSERT_EQUAL(load_copy(b, bad, len, &err), SFP_ECORRUPT);
	CU_ASSERT_PTR_NOT_NULL(strstr(err.msg, "bad magic"));
	CU_ASSERT(memcmp(before, pb, np * sizeof(float)) == 0);

	/* a model of another shape */
	sfp_model *o = small_model("model:\n  input: [1, 12, 12]\n  layers:\n"
				   "    - {type: flatten}\n    - {type: linear, out_features: 10}\n",
				   1, SB);
	CU_ASSERT_EQUAL(load_copy(o, good, len, &err), SFP_EINVAL);
	CU_ASSERT_PTR_NOT_NULL(strstr(err.msg, "different model"));
	/* and a model with containers on */
	CU_ASSERT_EQUAL_FATAL(sfp_model_set_quant(b, SFP_QPOLICY_FIXED, SFP_QTARGET_WEIGHTS, 4, 3,
						  &err),
			      SFP_OK);
	CU_ASSERT_EQUAL(load_copy(b, good, len, &err), SFP_EINVAL);
	sfp_model_free(o);
	free(before);
	free(good);
	free(bad);
	sfp_model_free(a);
	sfp_model_free(b);
}

/* A short fine-tune on a slice of Fashion-MNIST: widths fall from 8 under
 * the penalty, accuracy stays near the float model's, and the file
 * evaluates to the same accuracy in a fresh trainer. */
static void test_trainer_prune(void)
{
	const char *text = "model:\n"
			   "  input: [1, 28, 28]\n"
			   "  layers:\n"
			   "    - {type: conv2d, out_channels: 4, kernel: 3, padding: 1}\n"
			   "    - {type: relu}\n"
			   "    - {type: maxpool, kernel: 2}\n"
			   "    - {type: flatten}\n"
			   "    - {type: linear, out_features: 32}\n"
			   "    - {type: relu}\n"
			   "    - {type: linear, out_features: 10}\n"
			   "data: {train_limit: 1200, test_limit: 500}\n"
			   "train:\n"
			   "  epochs: 2\n"
			   "  batch_size: 32\n"
			   "  optimizer: {type: sgd, lr: 0.05, momentum: 0.9}\n"
			   "prune: {granularity: channel, activations: true, gamma: 0.05, steps: 60,"
			   " fix_steps: 20, lr: 0.1, weight_lr: 0.005}\n";
	static sfp_config c;
	sfp_error err;
	CU_ASSERT_EQUAL_FATAL(sfp_config_load_string(&c, "p.yaml", text, strlen(text), &err), SFP_OK);
	CU_ASSERT_EQUAL_FATAL(sfp_config_validate(&c, &err), SFP_OK);
	sfp_trainer *t = NULL, *u = NULL;
	int rc = sfp_trainer_create(&t, &c, NULL, &err);
	if (rc < 0)
		fprintf(stderr, "\n%s\n", err.msg);
	CU_ASSERT_EQUAL_FATAL(rc, SFP_OK);
	CU_ASSERT_EQUAL_FATAL(sfp_trainer_run(t, &err), SFP_OK);
	float acc0, acc, acc2, loss;
	CU_ASSERT_EQUAL_FATAL(sfp_trainer_evaluate(t, &acc0, &loss, &err), SFP_OK);
	CU_ASSERT_EQUAL_FATAL(sfp_trainer_prune(t, &err), SFP_OK);
	CU_ASSERT_EQUAL_FATAL(sfp_trainer_evaluate(t, &acc, &loss, &err), SFP_OK);
	sfp_prune_summary ps;
	sfp_model_prune_summary(sfp_trainer_model(t), &ps);
	printf("\n    float %.3f -> pruned %.3f at %.2f bits per weight (%.2f per layer), "
	       "inputs %.2f bits per layer ",
	       (double)acc0, (double)acc, ps.w_per_weight, ps.w_per_layer, ps.a_per_layer);
	CU_ASSERT(ps.w_per_weight < 7.0);
	CU_ASSERT(ps.a_per_layer < 8.0);
	CU_ASSERT(acc > acc0 - 0.05f);
	char path[600];
	snprintf(path, sizeof path, "%s/t.sfpq", dir);
	CU_ASSERT_EQUAL_FATAL(sfp_model_save_pruned(sfp_trainer_model(t), path, &err), SFP_OK);
	CU_ASSERT_EQUAL_FATAL(sfp_trainer_create(&u, &c, NULL, &err), SFP_OK);
	size_t len;
	void *buf = read_all(path, &len);
	CU_ASSERT_EQUAL_FATAL(sfp_model_load_pruned(sfp_trainer_model(u), path, buf, len, &err),
			      SFP_OK);
	CU_ASSERT_EQUAL_FATAL(sfp_trainer_evaluate(u, &acc2, &loss, &err), SFP_OK);
	CU_ASSERT_EQUAL(acc, acc2);
	free(buf);
	sfp_trainer_free(t);
	sfp_trainer_free(u);
}

int main(void)
{
	dir = test_tmpdir();
	static const test_case cases[] = {
		{"quantizer: codes, error bound, Q = dequant = interp at integers", test_quantizer},
		{"width gradient = finite differences", test_interp_gradient},
		{"activations: clip range, unsigned grid, gradient", test_act_quantizer},
		{"penalty by hand", test_penalty},
		{"the penalty drives widths down, the task loss holds", test_penalty_drives_widths},
		{"bit packing: round trip, short buffers, corrupt codes", test_pack},
		{"model forward at integer widths is Q(w)", test_model_forward_is_q},
		{"model: input width gradients = finite differences", test_model_act_gradient},
		{".sfpq round trip, bit for bit", test_file_round_trip},
		{".sfpq corruption is refused", test_file_corruption},
		{"fine-tune on Fashion-MNIST, file evaluates the same", test_trainer_prune},
		{NULL, NULL},
	};
	int rc = test_run_suite("prune", cases);
	test_rmdir(dir);
	free(dir);
	return rc;
}
