/*
 * test_nn_layers.c -- the training engine: finite-difference gradient checks of
 * every layer (parameters and inputs) and of the plug-in ABI, shape errors
 * that name the layer, optimizers and schedules against hand computations.
 */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "nn/nn_internal.h"
#include "sfp/data.h"
#include "sfp/nn.h"
#include "tests/util/fdcheck.h"
#include "tests/util/testutil.h"

/* Central differences in float32: the tolerance covers the float rounding
 * of the loss (~1e-7 relative, divided by 2 eps) and second-order terms.
 * Max pooling and ReLU have kinks: a step that crosses one (two window
 * values closer than ~eps) gives a wrong numeric slope, so the data and
 * eps are chosen so that none is crossed. */
#define FD_EPS 1e-3f
#define FD_ATOL 1.5e-3
#define FD_RTOL 3e-2
#define FD_SAMPLES 24 /* checked coordinates per layer and for the input */

static sfp_cfg_layer L(const char *type)
{
	sfp_cfg_layer l;
	memset(&l, 0, sizeof l);
	snprintf(l.type, sizeof l.type, "%s", type);
	l.bias = 1;
	l.p = 0.5f;
	l.eps = 1e-5f;
	l.momentum = 0.1f;
	return l;
}

static sfp_cfg_model model_cfg(int c, int h, int w)
{
	sfp_cfg_model m;
	memset(&m, 0, sizeof m);
	m.input_ndim = 3;
	m.input[0] = c;
	m.input[1] = h;
	m.input[2] = w;
	return m;
}

static void push(sfp_cfg_model *m, sfp_cfg_layer l)
{
	m->layers[m->n_layers++] = l;
}

/* The loss of a training forward, for the finite differences. */
typedef struct fd_ctx {
	sfp_model *m;
	const float *x;
	const uint8_t *y;
	int B;
} fd_ctx;

static float loss_at(void *ctx)
{
	const fd_ctx *c = ctx;
	sfp_model_forward(c->m, c->x, c->B, 1, 7);
	return sfp_model_loss(c->m, c->y, c->B, NULL, 0);
}

/* Compare analytic gradients of the mean cross-entropy with central
 * differences for parameters of every layer and for the input. */
static void gradcheck(const char *what, const sfp_cfg_model *cfg, int B)
{
	sfp_model *m = NULL;
	sfp_error err;
	int rc = sfp_model_create(&m, cfg, getenv("SFP_PLUGIN_BASE"), B, &err);
	if (rc < 0)
		fprintf(stderr, "\n%s: %s\n", what, err.msg);
	CU_ASSERT_EQUAL_FATAL(rc, SFP_OK);
	sfp_model_init(m, 42);
	sfp_model_want_input_grad(m, 1);
	sfp_shape is = sfp_model_input_shape(m);
	size_t nx = (size_t)B * sfp_shape_numel(is), np;
	float *x = malloc(nx * sizeof(float));
	uint8_t *y = malloc((size_t)B);
	sfp_rng r;
	sfp_rng_seed(&r, 3);
	for (size_t i = 0; i < nx; i++)
		x[i] = sfp_rng_normal(&r);
	for (int i = 0; i < B; i++)
		y[i] = (uint8_t)sfp_rng_below(&r, (uint64_t)sfp_model_classes(m));
	float *p = sfp_model_params(m, &np);
	/* perturb the initial parameters so biases and batch-norm shifts are not 0 */
	for (size_t i = 0; i < np; i++)
		p[i] += 0.1f * sfp_rng_normal(&r);

	sfp_model_forward(m, x, B, 1, 7);
	sfp_model_loss(m, y, B, NULL, 1);
	sfp_model_zero_grad(m);
	sfp_model_backward(m, x, B);
	float *g = malloc(np * sizeof(float)), *gx = malloc(nx * sizeof(float));
	memcpy(g, sfp_model_grads(m, NULL), np * sizeof(float));
	memcpy(gx, sfp_model_input_grad(m), nx * sizeof(float));

	/* two threads split samples and rows; the gradients agree to rounding */
	CU_ASSERT_EQUAL_FATAL(sfp_model_set_threads(m, 2, &err), SFP_OK);
	sfp_model_forward(m, x, B, 1, 7);
	sfp_model_loss(m, y, B, NULL, 1);
	sfp_model_zero_grad(m);
	sfp_model_backward(m, x, B);
	const float *g2 = sfp_model_grads(m, NULL);
	int tbad = 0;
	for (size_t i = 0; i < np; i++)
		tbad += fabsf(g2[i] - g[i]) > 1e-5f + 1e-4f * fabsf(g[i]);
	CU_ASSERT_EQUAL(tbad, 0);
	CU_ASSERT_EQUAL_FATAL(sfp_model_set_threads(m, 1, &err), SFP_OK);

	fd_ctx fc = {m, x, y, B};
	test_fd fd = {FD_EPS, FD_ATOL, FD_RTOL, FD_SAMPLES, loss_at, &fc, 0.0, 0, 0};
	test_fd_params(&fd, what, m, g, &r);
	test_fd_input(&fd, what, x, gx, nx, &r);
	printf("\n    %-22s %3d coordinates, maxdiff %.2e ", what, fd.checked, fd.maxdiff);
	CU_ASSERT_EQUAL(fd.bad, 0);
	free(g);
	free(gx);
	free(x);
	free(y);
	sfp_model_free(m);
}

static void test_grad_linear_act(void)
{
	const char *acts[] = {"relu", "gelu", "tanh"};
	for (int a = 0; a < 3; a++) {
		sfp_cfg_model m = model_cfg(12, 1, 1);
		sfp_cfg_layer l = L("linear");
		l.out_features = 9;
		push(&m, l);
		push(&m, L(acts[a]));
		l.out_features = 5;
		l.bias = a != 1; /* once without bias */
		push(&m, l);
		char name[32];
		snprintf(name, sizeof name, "linear+%s", acts[a]);
		gradcheck(name, &m, 4);
	}
}

/* Wide enough that two threads split GEMMs by column panels. */
static void test_grad_wide_linear(void)
{
	sfp_cfg_model m = model_cfg(200, 1, 1);
	sfp_cfg_layer l = L("linear");
	l.out_features = 150;
	push(&m, l);
	push(&m, L("relu"));
	l.out_features = 10;
	push(&m, l);
	gradcheck("wide linear", &m, 3);
}

static void test_grad_conv_pool(void)
{
	/* conv with padding and stride, both pools, flatten, linear */
	sfp_cfg_model m = model_cfg(2, 11, 11);
	sfp_cfg_layer c = L("conv2d");
	c.out_channels = 3;
	c.kernel = 3;
	c.stride = 1;
	c.padding = 1;
	push(&m, c);
	sfp_cfg_layer p = L("maxpool");
	p.kernel = 2;
	p.stride = 2;
	push(&m, p);
	c.out_channels = 4;
	c.stride = 2;
	c.padding = 0;
	push(&m, c);
	sfp_cfg_layer a = L("avgpool");
	a.kernel = 2;
	a.stride = 1;
	push(&m, a);
	push(&m, L("flatten"));
	sfp_cfg_layer f = L("linear");
	f.out_features = 3;
	push(&m, f);
	gradcheck("conv2d+pools", &m, 3);

	/* pointwise conv (no im2col path) and padded average pooling */
	sfp_cfg_model m2 = model_cfg(3, 5, 5);
	c = L("conv2d");
	c.out_channels = 4;
	c.kernel = 1;
	c.stride = 1;
	push(&m2, c);
	sfp_cfg_layer mp = L("maxpool"); /* the general (not 2x2) path */
	mp.kernel = 3;
	mp.stride = 2;
	mp.padding = 1;
	push(&m2, mp);
	a.kernel = 2;
	a.stride = 1;
	a.padding = 1;
	push(&m2, a);
	push(&m2, L("flatten"));
	push(&m2, f);
	gradcheck("conv1x1+pools pad", &m2, 3);
}

static void test_grad_batchnorm_residual_dropout(void)
{
	sfp_cfg_model m = model_cfg(2, 4, 4);
	sfp_cfg_layer c = L("conv2d");
	c.out_channels = 3;
	c.kernel = 3;
	c.stride = 1;
	c.padding = 1;
	snprintf(c.name, sizeof c.name, "stem");
	push(&m, c);
	c.name[0] = 0;
	push(&m, L("batchnorm"));
	sfp_cfg_layer r = L("relu");
	snprintf(r.name, sizeof r.name, "b0");
	push(&m, r);
	push(&m, c);
	push(&m, L("batchnorm"));
	sfp_cfg_layer add = L("add");
	snprintf(add.from, sizeof add.from, "b0");
	push(&m, add);
	push(&m, L("tanh"));
	push(&m, L("flatten"));
	sfp_cfg_layer d = L("dropout");
	d.p = 0.25f;
	push(&m, d);
	sfp_cfg_layer f = L("linear");
	f.out_features = 4;
	push(&m, f);
	push(&m, L("batchnorm")); /* batch norm over flat features too */
	gradcheck("bn+residual+dropout", &m, 5);
}

static void test_grad_plugin(void)
{
	sfp_cfg_model m = model_cfg(3, 2, 2);
	sfp_cfg_layer p = L("plugin");
	snprintf(p.library, sizeof p.library, "plugins/swish.so");
	p.n_args = 1;
	snprintf(p.args[0].key, sizeof p.args[0].key, "beta");
	snprintf(p.args[0].value, sizeof p.args[0].value, "0.7");
	push(&m, p);
	push(&m, L("flatten"));
	sfp_cfg_layer f = L("linear");
	f.out_features = 4;
	push(&m, f);
	gradcheck("plugin swish", &m, 3);
}

/* sfp_gemm at every ISA level against the double-accumulating reference,
 * for all transposes, edge sizes around the tile and block sizes, alpha and
 * beta. Tolerance: float accumulation over K terms of O(1) products. */
static void test_gemm(void)
{
	static const int dims[][3] = {{1, 1, 1},    {7, 31, 5},    {8, 32, 256}, {9, 33, 257},
				      {64, 256, 784}, {130, 70, 600}, {16, 1100, 25}, {3, 2, 0}};
	float *ws = malloc(SFP_GEMM_WS_FLOATS * sizeof(float));
	sfp_rng r;
	sfp_rng_seed(&r, 11);
	double maxdiff = 0.0;
	for (size_t d = 0; d < sizeof dims / sizeof dims[0]; d++) {
		int M = dims[d][0], N = dims[d][1], K = dims[d][2];
		size_t na = (size_t)M * (K ? K : 1), nb = (size_t)(K ? K : 1) * N, nc = (size_t)M * N;
		float *a = malloc(na * 4), *b = malloc(nb * 4), *c0 = malloc(nc * 4),
		      *c1 = malloc(nc * 4), *c2 = malloc(nc * 4);
		for (size_t i = 0; i < na; i++)
			a[i] = sfp_rng_normal(&r);
		for (size_t i = 0; i < nb; i++)
			b[i] = sfp_rng_normal(&r);
		for (size_t i = 0; i < nc; i++)
			c0[i] = sfp_rng_normal(&r);
		for (int t = 0; t < 4; t++) {
			int ta = t & 1, tb = t >> 1;
			int lda = ta ? M : K, ldb = tb ? K : N;
			float alpha = t == 3 ? -0.5f : 1.0f, beta = (float)(t % 3) * 0.5f;
			memcpy(c1, c0, nc * 4);
			sfp_gemm_ref(ta, tb, M, N, K, alpha, a, lda ? lda : 1, b, ldb ? ldb : 1, beta,
				     c1, N);
			for (int isa = SFP_ISA_SCALAR; isa <= sfp_cpu_isa(); isa++) {
				memcpy(c2, c0, nc * 4);
				sfp_gemm(isa, ta, tb, M, N, K, alpha, a, lda ? lda : 1, b, ldb ? ldb : 1,
					 beta, c2, N, ws);
				int bad = 0;
				for (size_t i = 0; i < nc; i++) {
					double e = fabs((double)c1[i] - c2[i]);
					if (e > maxdiff)
						maxdiff = e;
					bad += e > 1e-5 * (K + 1) * 4;
				}
				if (bad)
					fprintf(stderr, "\ngemm %dx%dx%d t%d isa %d: %d bad", M, N, K, t,
						isa, bad);
				CU_ASSERT_EQUAL(bad, 0);
			}
		}
		free(a);
		free(b);
		free(c0);
		free(c1);
		free(c2);
	}
	printf("\n    gemm maxdiff %.2e ", maxdiff);
	free(ws);
}

/* Shape errors name the layer and its line. */
static void test_shape_errors(void)
{
	sfp_error err;
	sfp_model *mm = NULL;
	sfp_cfg_model m = model_cfg(1, 28, 28);
	sfp_cfg_layer f = L("linear");
	f.out_features = 10;
	f.line = 7;
	snprintf(f.name, sizeof f.name, "fc1");
	push(&m, f);
	CU_ASSERT_EQUAL(sfp_model_create(&mm, &m, NULL, 8, &err), SFP_EINVAL);
	CU_ASSERT_PTR_NOT_NULL(strstr(err.msg, "'fc1'"));
	CU_ASSERT_PTR_NOT_NULL(strstr(err.msg, "line 7"));
	CU_ASSERT_PTR_NOT_NULL(strstr(err.msg, "flatten"));
	CU_ASSERT_PTR_NULL(mm);

	sfp_cfg_model m2 = model_cfg(1, 4, 4);
	sfp_cfg_layer c = L("conv2d");
	c.out_channels = 2;
	c.kernel = 5;
	c.line = 3;
	push(&m2, c);
	CU_ASSERT_EQUAL(sfp_model_create(&mm, &m2, NULL, 8, &err), SFP_EINVAL);
	CU_ASSERT_PTR_NOT_NULL(strstr(err.msg, "kernel 5 does not fit input (1, 4, 4)"));

	/* max pooling keeps its argmax in a byte: windows up to 16 x 16 */
	sfp_cfg_model m2b = model_cfg(1, 20, 20);
	sfp_cfg_layer mp = L("maxpool");
	mp.kernel = 17;
	push(&m2b, mp);
	CU_ASSERT_EQUAL(sfp_model_create(&mm, &m2b, NULL, 8, &err), SFP_EINVAL);
	CU_ASSERT_PTR_NOT_NULL(strstr(err.msg, "kernel must be at most 16"));

	sfp_cfg_model m3 = model_cfg(4, 1, 1);
	sfp_cfg_layer a = L("add");
	snprintf(a.from, sizeof a.from, "nothere");
	push(&m3, a);
	CU_ASSERT_EQUAL(sfp_model_create(&mm, &m3, NULL, 8, &err), SFP_EINVAL);
	CU_ASSERT_PTR_NOT_NULL(strstr(err.msg, "'nothere'"));

	/* output must be flat class scores */
	sfp_cfg_model m4 = model_cfg(2, 3, 3);
	push(&m4, L("relu"));
	CU_ASSERT_EQUAL(sfp_model_create(&mm, &m4, NULL, 8, &err), SFP_EINVAL);
	CU_ASSERT_PTR_NOT_NULL(strstr(err.msg, "class scores"));

	/* a plug-in library that does not exist, and a wrong symbol */
	sfp_cfg_model m5 = model_cfg(4, 1, 1);
	sfp_cfg_layer p = L("plugin");
	snprintf(p.library, sizeof p.library, "/nonexistent/x.so");
	push(&m5, p);
	CU_ASSERT_EQUAL(sfp_model_create(&mm, &m5, NULL, 8, &err), SFP_ENOENT);
	CU_ASSERT_PTR_NOT_NULL(strstr(err.msg, "/nonexistent/x.so"));
	snprintf(m5.layers[0].library, sizeof p.library, "plugins/swish.so");
	snprintf(m5.layers[0].symbol, sizeof p.symbol, "no_such_entry");
	CU_ASSERT_EQUAL(sfp_model_create(&mm, &m5, getenv("SFP_PLUGIN_BASE"), 8, &err), SFP_EINVAL);
	CU_ASSERT_PTR_NOT_NULL(strstr(err.msg, "no_such_entry"));
	/* a plug-in that rejects its arguments */
	m5.layers[0].symbol[0] = 0;
	m5.layers[0].n_args = 1;
	snprintf(m5.layers[0].args[0].key, sizeof p.args[0].key, "gamma");
	snprintf(m5.layers[0].args[0].value, sizeof p.args[0].value, "1");
	CU_ASSERT_EQUAL(sfp_model_create(&mm, &m5, getenv("SFP_PLUGIN_BASE"), 8, &err), SFP_EINVAL);
	CU_ASSERT_PTR_NOT_NULL(strstr(err.msg, "unknown argument 'gamma'"));
}

/* One SGD and one AdamW step against values computed by hand. */
static void test_optimizers(void)
{
	sfp_error err;
	sfp_cfg_optimizer c;
	memset(&c, 0, sizeof c);
	c.type = SFP_OPTIMIZER_SGD;
	c.lr = 0.1f;
	c.momentum = 0.9f;
	c.weight_decay = 0.01f;
	sfp_optim *o = NULL;
	CU_ASSERT_EQUAL_FATAL(sfp_optim_create(&o, &c, 2, &err), SFP_OK);
	float p[2] = {1.0f, -2.0f}, g[2] = {0.5f, 0.25f};
	sfp_optim_step(o, p, g, 0.1f, 1);
	/* buf = g + wd p = 0.51, p = 1 - 0.1 * 0.51 */
	CU_ASSERT_DOUBLE_EQUAL(p[0], 1.0 - 0.051, 1e-6);
	sfp_optim_step(o, p, g, 0.1f, 2);
	/* buf = 0.9 * 0.51 + 0.5 + 0.01 * 0.949 */
	CU_ASSERT_DOUBLE_EQUAL(p[0], 0.949 - 0.1 * (0.459 + 0.5 + 0.00949), 1e-6);
	sfp_optim_free(o);

	c.type = SFP_OPTIMIZER_ADAMW;
	c.lr = 0.01f;
	c.beta1 = 0.9f;
	c.beta2 = 0.999f;
	c.eps = 1e-8f;
	c.weight_decay = 0.1f;
	CU_ASSERT_EQUAL_FATAL(sfp_optim_create(&o, &c, 2, &err), SFP_OK);
	p[0] = 1.0f;
	sfp_optim_step(o, p, g, 0.01f, 1);
	/* decay: 1 - 0.01 * 0.1 = 0.999; bias-corrected m/sqrt(v) = sign(g) = 1 */
	CU_ASSERT_DOUBLE_EQUAL(p[0], 0.999 - 0.01, 1e-5);
	size_t ns;
	sfp_optim_state(o, &ns);
	CU_ASSERT_EQUAL(ns, 4);
	sfp_optim_free(o);

	c.type = SFP_OPTIMIZER_ADAMW + 1; /* no such optimizer */
	CU_ASSERT_EQUAL(sfp_optim_create(&o, &c, 2, &err), SFP_EINVAL);
	CU_ASSERT_PTR_NOT_NULL(strstr(err.msg, "train.optimizer.type"));
}

static void test_schedules(void)
{
	sfp_cfg_optimizer o;
	memset(&o, 0, sizeof o);
	o.lr = 1.0f;
	sfp_cfg_schedule s;
	memset(&s, 0, sizeof s);
	s.type = SFP_SCHEDULE_CONSTANT;
	s.warmup_steps = 4;
	CU_ASSERT_DOUBLE_EQUAL(sfp_lr_at(&o, &s, 0, 100), 0.25, 1e-7);
	CU_ASSERT_DOUBLE_EQUAL(sfp_lr_at(&o, &s, 3, 100), 1.0, 1e-7);
	CU_ASSERT_DOUBLE_EQUAL(sfp_lr_at(&o, &s, 50, 100), 1.0, 1e-7);
	s.type = SFP_SCHEDULE_STEP;
	s.step_every = 10;
	s.gamma = 0.5f;
	CU_ASSERT_DOUBLE_EQUAL(sfp_lr_at(&o, &s, 13, 100), 1.0, 1e-7);
	CU_ASSERT_DOUBLE_EQUAL(sfp_lr_at(&o, &s, 14, 100), 0.5, 1e-7);
	CU_ASSERT_DOUBLE_EQUAL(sfp_lr_at(&o, &s, 34, 100), 0.125, 1e-7);
	s.type = SFP_SCHEDULE_COSINE;
	s.min_lr = 0.1f;
	CU_ASSERT_DOUBLE_EQUAL(sfp_lr_at(&o, &s, 4, 104), 1.0, 1e-6);
	CU_ASSERT_DOUBLE_EQUAL(sfp_lr_at(&o, &s, 54, 104), 0.55, 1e-6);
	CU_ASSERT_DOUBLE_EQUAL(sfp_lr_at(&o, &s, 104, 104), 0.1, 1e-6);
}

/* Epoch orders are permutations, reproducible, and differ between epochs. */
static void test_order(void)
{
	uint32_t a[1000], b[1000], c[1000];
	sfp_dataset_order(a, 1000, 5, 0, 1);
	sfp_dataset_order(b, 1000, 5, 0, 1);
	sfp_dataset_order(c, 1000, 5, 1, 1);
	CU_ASSERT(memcmp(a, b, sizeof a) == 0);
	CU_ASSERT(memcmp(a, c, sizeof a) != 0);
	char seen[1000] = {0};
	for (int i = 0; i < 1000; i++)
		seen[a[i]]++;
	for (int i = 0; i < 1000; i++)
		CU_ASSERT_EQUAL(seen[i], 1);
	sfp_dataset_order(a, 1000, 5, 0, 0);
	CU_ASSERT_EQUAL(a[999], 999);
}

/* Shards of 10 samples over 3 ranks: 4, 3, 3, disjoint, covering all. */
static void test_shard(void)
{
	sfp_error err;
	int seen[10] = {0};
	for (int r = 0; r < 3; r++) {
		sfp_dataset d = {.n = 10, .shape = {1, 1, 2}, .classes = 10};
		d.x = malloc(20 * sizeof(float));
		d.y = malloc(10);
		for (int i = 0; i < 10; i++) {
			d.x[2 * i] = d.x[2 * i + 1] = (float)i;
			d.y[i] = (uint8_t)i;
		}
		CU_ASSERT_EQUAL_FATAL(sfp_dataset_shard(&d, r, 3, &err), SFP_OK);
		CU_ASSERT_EQUAL(d.n, r == 0 ? 4 : 3);
		for (int i = 0; i < d.n; i++) {
			CU_ASSERT_EQUAL(d.y[i] % 3, r);
			CU_ASSERT_EQUAL(d.x[2 * i + 1], (float)d.y[i]);
			seen[d.y[i]]++;
		}
		CU_ASSERT_EQUAL(sfp_dataset_shard(&d, 3, 3, &err), SFP_EINVAL);
		sfp_dataset_release(&d);
	}
	for (int i = 0; i < 10; i++)
		CU_ASSERT_EQUAL(seen[i], 1);
}

/* Batch norm in eval mode is (x - running mean) / sqrt(running var + eps)
 * * gamma + beta, with the running statistics training left behind. */
static void test_batchnorm_eval(void)
{
	sfp_cfg_model m = model_cfg(3, 1, 1);
	push(&m, L("batchnorm"));
	sfp_model *mm = NULL;
	sfp_error err;
	CU_ASSERT_EQUAL_FATAL(sfp_model_create(&mm, &m, NULL, 4, &err), SFP_OK);
	sfp_model_init(mm, 1);
	float x[12], *p = sfp_model_params(mm, NULL), *b = sfp_model_buffers(mm, NULL);
	for (int i = 0; i < 12; i++)
		x[i] = (float)(i * i % 7) - 2.0f;
	p[0] = 1.5f;
	p[3] = 0.25f;
	for (int s = 0; s < 3; s++)
		sfp_model_forward(mm, x, 4, 1, 0); /* training: running stats move */
	CU_ASSERT(b[0] != 0.0f && b[3] != 1.0f);
	const float *y = sfp_model_forward(mm, x, 4, 0, 0);
	for (int s = 0; s < 4; s++) {
		float want = (x[s * 3] - b[0]) / sqrtf(b[3] + 1e-5f) * 1.5f + 0.25f;
		CU_ASSERT_DOUBLE_EQUAL(y[s * 3], want, 1e-5);
	}
	sfp_model_free(mm);
}

/* Floats in the order of their values, for distances in ulps. */
static int64_t float_order(float f)
{
	int32_t i;
	memcpy(&i, &f, sizeof i);
	return i < 0 ? (int64_t)INT32_MIN - i : i;
}

/* The libm-free tanh of GELU and the tanh layer against tanhf, over a
 * sweep of the float bit patterns with |u| < 30 (every 61st), at most
 * TANH_ULPS apart; 0, -0 and NaN kept, saturation at +-1. */
#define TANH_ULPS 4
static void test_tanh_approx(void)
{
	int64_t worst = 0;
	float at = 0.0f;
	for (uint64_t b = 0; b <= 0xffffffffull; b += 61) {
		const uint32_t w = (uint32_t)b;
		float u;
		memcpy(&u, &w, sizeof u);
		if (!(fabsf(u) < 30.0f))
			continue;
		const int64_t d = llabs(float_order(sfp_tanh_approx(u)) - float_order(tanhf(u)));
		if (d > worst)
			worst = d, at = u;
	}
	printf("\n    max %lld ulps from tanhf (at %g) ", (long long)worst, (double)at);
	CU_ASSERT(worst <= TANH_ULPS);
	CU_ASSERT(sfp_tanh_approx(0.0f) == 0.0f && !signbit(sfp_tanh_approx(0.0f)));
	CU_ASSERT(signbit(sfp_tanh_approx(-0.0f)));
	CU_ASSERT(sfp_tanh_approx(100.0f) == 1.0f && sfp_tanh_approx(-1e30f) == -1.0f);
	CU_ASSERT(isnan(sfp_tanh_approx(NAN)));
}

int main(void)
{
	/* plug-in paths in this suite are relative to the build folder */
	static char base[512];
	const char *build = getenv("BUILD");
	snprintf(base, sizeof base, "%s", build && build[0] ? build : "build");
	setenv("SFP_PLUGIN_BASE", base, 1);
	static const test_case cases[] = {
		{"gradient: linear + activations", test_grad_linear_act},
		{"gradient: wide linear (threads split columns)", test_grad_wide_linear},
		{"gradient: conv2d + pools", test_grad_conv_pool},
		{"gradient: batchnorm + residual + dropout", test_grad_batchnorm_residual_dropout},
		{"gradient: plug-in ABI (swish)", test_grad_plugin},
		{"gemm against the reference, every ISA level", test_gemm},
		{"shape and plug-in errors name the layer", test_shape_errors},
		{"optimizers", test_optimizers},
		{"schedules", test_schedules},
		{"epoch order", test_order},
		{"data shards by rank", test_shard},
		{"batch norm in eval mode", test_batchnorm_eval},
		{"tanh without libm: within 4 ulps of tanhf", test_tanh_approx},
		{NULL, NULL},
	};
	return test_run_suite("nn", cases);
}
