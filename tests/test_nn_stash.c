/*
 * test_nn_stash.c -- the packed activation stash (lib/nn/stash.c): what it
 * keeps decodes to exactly the fake-quantized values; training with it is
 * bit-identical to training with the float stash; lossless containers
 * through it give float32's results bit for bit (every layer's backward
 * reads through it); and the memory it reports is what the containers
 * should take.
 */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "sfp/nn.h"
#include "tests/util/testutil.h"

static sfp_cfg_layer L(const char *type)
{
	sfp_cfg_layer l;
	memset(&l, 0, sizeof l);
	snprintf(l.type, sizeof l.type, "%s", type);
	l.bias = 1;
	l.eps = 1e-5f;
	l.momentum = 0.1f;
	return l;
}

static sfp_cfg_layer conv(int co, int k, int pad)
{
	sfp_cfg_layer c = L("conv2d");
	c.out_channels = co;
	c.kernel = k;
	c.stride = 1;
	c.padding = pad;
	return c;
}

static sfp_cfg_layer pool(const char *type, int k, int s, int pad)
{
	sfp_cfg_layer p = L(type);
	p.kernel = k;
	p.stride = s;
	p.padding = pad;
	return p;
}

static sfp_cfg_layer linear(int n)
{
	sfp_cfg_layer f = L("linear");
	f.out_features = n;
	return f;
}

/* The Fashion-MNIST CNN (deploy/examples/fmnist-cnn.yaml), narrower fc1. */
static sfp_cfg_model cnn_cfg(void)
{
	sfp_cfg_model m;
	memset(&m, 0, sizeof m);
	m.input_ndim = 3;
	m.input[0] = 1;
	m.input[1] = m.input[2] = 28;
	sfp_cfg_layer *l = m.layers;
	l[m.n_layers++] = conv(16, 5, 2);
	l[m.n_layers++] = L("relu");
	l[m.n_layers++] = pool("maxpool", 2, 2, 0);
	l[m.n_layers++] = conv(32, 5, 2);
	l[m.n_layers++] = L("relu");
	l[m.n_layers++] = pool("maxpool", 2, 2, 0);
	l[m.n_layers++] = L("flatten");
	l[m.n_layers++] = linear(32);
	l[m.n_layers++] = L("relu");
	sfp_cfg_layer d = L("dropout");
	d.p = 0.3f;
	l[m.n_layers++] = d;
	l[m.n_layers++] = linear(10);
	return m;
}

/* Every other kind of layer, with chunks smaller than the batch: batch norm
 * (reads its input), a relu in place over it named by a residual add, gelu
 * (input), tanh (output), both pools, a plug-in (input and output, whole
 * batch) and batch norm over flat features. */
static sfp_cfg_model mixed_cfg(void)
{
	sfp_cfg_model m;
	memset(&m, 0, sizeof m);
	m.input_ndim = 3;
	m.input[0] = 3;
	m.input[1] = m.input[2] = 32;
	sfp_cfg_layer *l = m.layers;
	l[m.n_layers++] = conv(8, 3, 1);
	l[m.n_layers++] = L("batchnorm");
	sfp_cfg_layer r = L("relu");
	snprintf(r.name, sizeof r.name, "b0");
	l[m.n_layers++] = r;
	l[m.n_layers++] = conv(8, 3, 1);
	l[m.n_layers++] = L("batchnorm");
	sfp_cfg_layer add = L("add");
	snprintf(add.from, sizeof add.from, "b0");
	l[m.n_layers++] = add;
	l[m.n_layers++] = L("gelu");
	l[m.n_layers++] = pool("avgpool", 2, 2, 0);
	l[m.n_layers++] = conv(6, 3, 1);
	l[m.n_layers++] = L("tanh");
	l[m.n_layers++] = pool("maxpool", 3, 2, 1);
	l[m.n_layers++] = L("flatten");
	sfp_cfg_layer p = L("plugin");
	snprintf(p.library, sizeof p.library, "plugins/swish.so");
	l[m.n_layers++] = p;
	l[m.n_layers++] = linear(12);
	l[m.n_layers++] = L("batchnorm");
	l[m.n_layers++] = L("relu");
	l[m.n_layers++] = linear(5);
	return m;
}

typedef struct run {
	sfp_model *m;
	sfp_optim *o;
	float *x;
	uint8_t *y;
	int B;
} run;

/* packed: 0 the float stash, 1 packed, 2 packed with Gecko exponents */
static void run_open(run *r, const sfp_cfg_model *cfg, int B, int policy, float e, float mb,
		     int packed)
{
	sfp_error err;
	memset(r, 0, sizeof *r);
	r->B = B;
	int rc = sfp_model_create(&r->m, cfg, getenv("SFP_PLUGIN_BASE"), B, &err);
	if (rc < 0)
		fprintf(stderr, "\n%s\n", err.msg);
	CU_ASSERT_EQUAL_FATAL(rc, SFP_OK);
	sfp_model_init(r->m, 5);
	sfp_model_want_input_grad(r->m, 1);
	if (policy != SFP_QPOLICY_OFF) {
		CU_ASSERT_EQUAL_FATAL(sfp_model_set_stash(r->m, packed != 0, packed == 2, &err), SFP_OK);
		sfp_model_set_pack_weights(r->m, packed != 0);
		CU_ASSERT_EQUAL_FATAL(sfp_model_set_quant(r->m, policy,
							  policy == SFP_QPOLICY_FIXED
								  ? SFP_QTARGET_ACTIVATIONS
								  : SFP_QTARGET_WEIGHTS |
									    SFP_QTARGET_ACTIVATIONS,
							  e, mb, &err),
				      SFP_OK);
	}
	sfp_cfg_optimizer oc;
	memset(&oc, 0, sizeof oc);
	oc.type = SFP_OPTIMIZER_SGD;
	oc.lr = 0.05f;
	oc.momentum = 0.9f;
	size_t np;
	sfp_model_params(r->m, &np);
	CU_ASSERT_EQUAL_FATAL(sfp_optim_create(&r->o, &oc, np, &err), SFP_OK);
	const size_t nx = (size_t)B * sfp_shape_numel(sfp_model_input_shape(r->m));
	r->x = malloc(nx * sizeof(float));
	r->y = malloc((size_t)B);
	sfp_rng g;
	sfp_rng_seed(&g, 11);
	for (size_t i = 0; i < nx; i++)
		r->x[i] = sfp_rng_normal(&g);
	for (int i = 0; i < B; i++)
		r->y[i] = (uint8_t)sfp_rng_below(&g, (uint64_t)sfp_model_classes(r->m));
}

static void run_close(run *r)
{
	sfp_optim_free(r->o);
	sfp_model_free(r->m);
	free(r->x);
	free(r->y);
}

/* One training step; returns the loss. The input moves a little each step. */
static float run_step(run *r, int step, int quantum)
{
	const size_t nx = (size_t)r->B * sfp_shape_numel(sfp_model_input_shape(r->m));
	for (size_t i = 0; i < nx; i++)
		r->x[i] = r->x[i] * 0.9f + 0.05f * (float)((i * 7 + (size_t)step) % 13) - 0.3f;
	sfp_model_forward(r->m, r->x, r->B, 1, (uint64_t)step + 1);
	float loss = sfp_model_loss(r->m, r->y, r->B, NULL, 1);
	sfp_model_zero_grad(r->m);
	sfp_model_backward(r->m, r->x, r->B);
	sfp_optim_step(r->o, sfp_model_params(r->m, NULL), sfp_model_grads(r->m, NULL), 0.05f,
		       step + 1);
	if (quantum)
		sfp_model_quant_update(r->m, 0.05f, 0.05f);
	return loss;
}

static int same_bits(const float *a, const float *b, size_t n)
{
	return memcmp(a, b, n * sizeof(float)) == 0;
}

/* Compare loss, parameter gradients and input gradient of two models after
 * the same step, bit for bit. */
static void expect_same_step(run *a, run *b, int step, int quantum, const char *what)
{
	float la = run_step(a, step, quantum), lb = run_step(b, step, quantum);
	size_t np, nx = (size_t)a->B * sfp_shape_numel(sfp_model_input_shape(a->m));
	const float *ga = sfp_model_grads(a->m, &np), *gb = sfp_model_grads(b->m, NULL);
	int ok = same_bits(&la, &lb, 1) && same_bits(ga, gb, np) &&
		 same_bits(sfp_model_input_grad(a->m), sfp_model_input_grad(b->m), nx) &&
		 same_bits(sfp_model_params(a->m, NULL), sfp_model_params(b->m, NULL), np);
	if (!ok) {
		double maxdiff = 0;
		for (size_t i = 0; i < np; i++)
			maxdiff = fmax(maxdiff, fabs((double)ga[i] - gb[i]));
		fprintf(stderr, "\n%s step %d: loss %.9g vs %.9g, grad maxdiff %g\n", what, step,
			(double)la, (double)lb, maxdiff);
	}
	CU_ASSERT(ok);
}

/* e = 8, m = 23 containers are lossless: training through the packed
 * stash (every output backward reads is encoded, freed and decoded) gives
 * float32's bits exactly. */
static void test_lossless_equals_fp32(void)
{
	const sfp_cfg_model cfgs[2] = {cnn_cfg(), mixed_cfg()};
	const int Bs[2] = {24, 40};
	const char *names[2] = {"cnn", "mixed"};
	for (int c = 0; c < 2; c++) {
		run f, p;
		run_open(&f, &cfgs[c], Bs[c], SFP_QPOLICY_OFF, 8, 23, 0);
		run_open(&p, &cfgs[c], Bs[c], SFP_QPOLICY_FIXED, 8, 23, 1);
		CU_ASSERT_PTR_NULL(sfp_model_activation(p.m, 0)); /* no float copy */
		for (int s = 0; s < 3; s++)
			expect_same_step(&f, &p, s, 0, names[c]);
		/* a batch smaller than the largest (fewer segments) */
		f.B = p.B = Bs[c] - 7;
		expect_same_step(&f, &p, 3, 0, names[c]);
		run_close(&f);
		run_close(&p);
	}
}

/* The packed stash unpacks to exactly the fake-quantized values the float
 * stash holds, and training with it is bit-identical (QM + QE on weights
 * and activations: fractional widths, so every step picks floor or ceil,
 * and the width gradients read the stash). */
static void test_packed_equals_fake_quant(void)
{
	const sfp_cfg_model cfgs[3] = {cnn_cfg(), mixed_cfg(), cnn_cfg()};
	const int Bs[3] = {24, 40, 24};
	const char *names[3] = {"cnn", "mixed", "cnn, gecko"};
	for (int c = 0; c < 3; c++) {
		run f, p;
		run_open(&f, &cfgs[c], Bs[c], SFP_QPOLICY_QUANTUM, 4.5f, 2.5f, 0);
		run_open(&p, &cfgs[c], Bs[c], SFP_QPOLICY_QUANTUM, 4.5f, 2.5f, c == 2 ? 2 : 1);
		for (int s = 0; s < 5; s++) {
			expect_same_step(&f, &p, s, 1, names[c]);
			/* what each kept: decoded containers == float values on the grid */
			int n = sfp_model_n_layers(p.m), kept = 0, bad = 0;
			size_t cap = 0;
			for (int i = 0; i < n; i++) {
				sfp_layer_info li;
				sfp_model_layer(p.m, i, &li);
				size_t k = (size_t)Bs[c] * sfp_shape_numel(li.out);
				cap = k > cap ? k : cap;
			}
			float *a = malloc(cap * sizeof(float)), *b = malloc(cap * sizeof(float));
			for (int i = 0; i < n - 1; i++) {
				int Ba = 0, Bb = 0;
				sfp_layer_info li;
				sfp_model_layer(p.m, i, &li);
				if (sfp_model_saved_activation(p.m, i, b, cap, &Bb, NULL) != SFP_OK)
					continue;
				CU_ASSERT_EQUAL_FATAL(
					sfp_model_saved_activation(f.m, i, a, cap, &Ba, NULL), SFP_OK);
				CU_ASSERT_EQUAL(Ba, Bb);
				bad += !same_bits(a, b, (size_t)Bb * sfp_shape_numel(li.out));
				kept++;
			}
			CU_ASSERT(kept >= (c == 1 ? 10 : 5));
			CU_ASSERT_EQUAL(bad, 0);
			free(a);
			free(b);
		}
		for (int k = 0; k < sfp_model_n_qtensors(p.m); k++) {
			sfp_qtensor_info qa, qb;
			sfp_model_qtensor(f.m, k, &qa);
			sfp_model_qtensor(p.m, k, &qb);
			CU_ASSERT(same_bits(&qa.n_e, &qb.n_e, 1) && same_bits(&qa.n_m, &qb.n_m, 1));
			CU_ASSERT_EQUAL(qa.stash_bytes, 0);
			if (!strcmp(qb.kind, "activations"))
				CU_ASSERT(qb.stash_bytes > 0);
			/* weights are held packed: at most 1 + 5 + 3 bits a value,
			 * plus a header per block of 16384 */
			if (!strcmp(qb.kind, "weights"))
				CU_ASSERT(qb.stash_bytes > 0 &&
					  qb.stash_bytes <= qb.count * 9 / 8 + 128 * (qb.count / 16384 + 1));
		}
		run_close(&f);
		run_close(&p);
	}
}

/* Two threads spread the container work over blocks (one window per chunk,
 * FIXED per block): the packed stash still trains exactly like the float
 * stash, and what it keeps is the same bits as with one thread. */
static void test_threads(void)
{
	const sfp_cfg_model cfgs[2] = {cnn_cfg(), mixed_cfg()};
	const int Bs[2] = {48, 40};
	for (int c = 0; c < 2; c++) {
		run f, p, p1;
		sfp_error err;
		run_open(&f, &cfgs[c], Bs[c], SFP_QPOLICY_QUANTUM, 4.5f, 2.5f, 0);
		run_open(&p, &cfgs[c], Bs[c], SFP_QPOLICY_QUANTUM, 4.5f, 2.5f, 1);
		run_open(&p1, &cfgs[c], Bs[c], SFP_QPOLICY_QUANTUM, 4.5f, 2.5f, 1);
		CU_ASSERT_EQUAL_FATAL(sfp_model_set_threads(f.m, 2, &err), SFP_OK);
		CU_ASSERT_EQUAL_FATAL(sfp_model_set_threads(p.m, 2, &err), SFP_OK);
		for (int s = 0; s < 3; s++)
			expect_same_step(&f, &p, s, 1, c ? "mixed, 2 threads" : "cnn, 2 threads");
		/* one forward at 1 and at 2 threads from the same parameters */
		size_t np;
		float *to = sfp_model_params(p1.m, &np);
		memcpy(to, sfp_model_params(p.m, NULL), np * sizeof(float));
		float *wid = malloc(256 * sizeof(float));
		int nw = sfp_model_widths_save(p.m, wid, 256);
		CU_ASSERT_EQUAL(sfp_model_widths_load(p1.m, wid, nw), SFP_OK);
		free(wid);
		sfp_model_forward(p.m, p.x, p.B, 1, 99);
		sfp_model_forward(p1.m, p.x, p.B, 1, 99);
		size_t cap = (size_t)Bs[c] * 16 * 32 * 32;
		float *a = malloc(cap * sizeof(float)), *b = malloc(cap * sizeof(float));
		int kept = 0;
		for (int i = 0; i < sfp_model_n_layers(p.m) - 1; i++) {
			int Ba = 0, Bb = 0;
			sfp_layer_info li;
			sfp_model_layer(p.m, i, &li);
			if (sfp_model_saved_activation(p.m, i, a, cap, &Ba, NULL) != SFP_OK)
				continue;
			CU_ASSERT_EQUAL_FATAL(sfp_model_saved_activation(p1.m, i, b, cap, &Bb, NULL),
					      SFP_OK);
			CU_ASSERT(same_bits(a, b, (size_t)Ba * sfp_shape_numel(li.out)));
			kept++;
		}
		CU_ASSERT(kept >= 5);
		free(a);
		free(b);
		run_close(&f);
		run_close(&p);
		run_close(&p1);
	}
}

/* A value the container cannot hold (FLT_MAX rounds to infinity at one
 * mantissa bit: a diverging run): the packed stash keeps the rows as the
 * float stash leaves them, at one and two threads. */
static void test_overflow_kept_raw(void)
{
	sfp_cfg_model cfg;
	memset(&cfg, 0, sizeof cfg);
	cfg.input_ndim = 1;
	cfg.input[0] = 20000; /* 40000 values at batch 2: three blocks */
	cfg.layers[cfg.n_layers++] = L("relu");
	cfg.layers[cfg.n_layers++] = linear(2);
	for (int T = 1; T <= 2; T++) {
		run f, p;
		sfp_error err;
		run_open(&f, &cfg, 2, SFP_QPOLICY_FIXED, 8, 1, 0);
		run_open(&p, &cfg, 2, SFP_QPOLICY_FIXED, 8, 1, 1);
		CU_ASSERT_EQUAL_FATAL(sfp_model_set_threads(f.m, T, &err), SFP_OK);
		CU_ASSERT_EQUAL_FATAL(sfp_model_set_threads(p.m, T, &err), SFP_OK);
		for (int i = 0; i < 40000; i++)
			p.x[i] = f.x[i] = i == 30000 ? 3.4e38f : (float)(i % 7) - 3.0f;
		sfp_model_forward(f.m, f.x, 2, 1, 1);
		sfp_model_forward(p.m, p.x, 2, 1, 1);
		static float a[40000], b[40000];
		int Ba = 0, Bb = 0;
		CU_ASSERT_EQUAL_FATAL(sfp_model_saved_activation(f.m, 0, a, 40000, &Ba, NULL), SFP_OK);
		CU_ASSERT_EQUAL_FATAL(sfp_model_saved_activation(p.m, 0, b, 40000, &Bb, NULL), SFP_OK);
		CU_ASSERT(same_bits(a, b, 40000));
		CU_ASSERT(a[30000] == 3.4e38f); /* left as it was */
		/* counted, for the trainer to say */
		CU_ASSERT_EQUAL(sfp_model_container_misses(f.m), 1);
		CU_ASSERT_EQUAL(sfp_model_container_misses(p.m), 1);
		run_close(&f);
		run_close(&p);
	}
}

/*
 * At e = 4, m = 1 (6 bits a value) the stash holds at most 6 bits per kept
 * value plus a header per container (zeros cost only their 4-bit exponent
 * code): 32/6 = 5.3x less than float32 for what backward keeps. Float
 * outputs and their gradients shrink to scratch: a chunk of each per-sample
 * layer's tensors (the working set the float engine keeps in cache anyway)
 * and the whole-batch tensors of linear layers. At batch 64 the activation
 * part of the report (outputs, their gradients, max-pool indices; scratch +
 * stash against the float32 arenas) falls by more than 2.5x; the scratch
 * hardly grows with the batch, the stash does.
 */
static void test_memory(void)
{
	const sfp_cfg_model cfg = cnn_cfg();
	const int B = 64;
	run f, p, g;
	run_open(&f, &cfg, B, SFP_QPOLICY_OFF, 8, 23, 0);
	run_open(&p, &cfg, B, SFP_QPOLICY_FIXED, 4, 1, 1);
	run_open(&g, &cfg, B, SFP_QPOLICY_FIXED, 4, 1, 0);
	run_step(&f, 0, 0);
	run_step(&p, 0, 0);
	run_step(&g, 0, 0);
	sfp_model_mem mf, mp, mg;
	sfp_model_memory(f.m, &mf);
	sfp_model_memory(p.m, &mp);
	sfp_model_memory(g.m, &mg);
	CU_ASSERT_EQUAL(mf.stash, 0);
	CU_ASSERT_EQUAL(mg.stash, 0);
	CU_ASSERT_EQUAL(mg.activations, mf.activations); /* float stash: the same arena */
	/* the kept values and their containers, layer by layer */
	double values = 0, bytes = 0, headers = 0;
	for (int i = 0; i < sfp_model_n_layers(p.m) - 1; i++) {
		sfp_layer_info li;
		sfp_model_layer(p.m, i, &li);
		static float buf[64 * 16 * 28 * 28];
		int Bk = 0;
		if (sfp_model_saved_activation(p.m, i, buf, sizeof buf / sizeof buf[0], &Bk, NULL) ==
		    SFP_OK && strcmp(li.type, "conv2d") && strcmp(li.type, "linear") &&
		    strcmp(li.type, "flatten")) {
			/* counted once per tensor: at the layer that writes it last */
			values += (double)Bk * sfp_shape_numel(li.out);
		}
	}
	for (int k = 0; k < sfp_model_n_qtensors(p.m); k++) {
		sfp_qtensor_info qi;
		sfp_model_qtensor(p.m, k, &qi);
		bytes += (double)qi.stash_bytes;
		headers += qi.stash_bytes ? 8 : 0; /* at most 7 chunks of 64 samples + 1 */
	}
	const double hdr = 72;
	const double part_f = (double)(mf.activations + mf.act_grads),
		     part_p = (double)(mp.activations + mp.stash + mp.act_grads);
	printf("\n    kept %.0f values in %.0f bytes (%.2f bits/value); activations and their "
	       "gradients %.2f MiB -> %.2f MiB scratch + %.2f MiB stash + %.2f MiB other\n",
	       values, bytes, 8 * bytes / values, part_f / 1048576.0, mp.activations / 1048576.0,
	       mp.stash / 1048576.0, mp.act_grads / 1048576.0);
	CU_ASSERT(values > 0);
	CU_ASSERT(bytes <= values * 6.0 / 8.0 + headers * hdr);
	CU_ASSERT(bytes >= values * 4.0 / 8.0); /* every value has its 4-bit exponent code */
	CU_ASSERT(bytes * 32.0 / 6.0 <= values * 4.0 + headers * hdr * 32.0 / 6.0);
	CU_ASSERT(part_p * 2.5 < part_f);
	CU_ASSERT(mp.total < mf.total);
	run_close(&f);
	run_close(&p);
	run_close(&g);
}

/* Gradient containers (opt-in target): at e8 m23 they change no bit; at
 * narrower mantissas the weight gradients move away from float32's, more
 * at 1 mantissa bit than at 7, and e5 m2 still trains. */
static void grads_open(run *r, const sfp_cfg_model *cfg, int B, unsigned e, unsigned mb)
{
	sfp_error err;
	run_open(r, cfg, B, SFP_QPOLICY_OFF, 8, 23, 0);
	CU_ASSERT_EQUAL_FATAL(sfp_model_set_quant(r->m, SFP_QPOLICY_FIXED, SFP_QTARGET_GRADIENTS,
						  8, 23, &err),
			      SFP_OK);
	CU_ASSERT_EQUAL_FATAL(sfp_model_set_grad_widths(r->m, e, mb, &err), SFP_OK);
}

static double grad_error(run *a, run *f)
{
	size_t np;
	const float *ga = sfp_model_grads(a->m, &np), *gf = sfp_model_grads(f->m, NULL);
	double num = 0, den = 0;
	for (size_t i = 0; i < np; i++) {
		num += ((double)ga[i] - gf[i]) * ((double)ga[i] - gf[i]);
		den += (double)gf[i] * gf[i];
	}
	return sqrt(num / den);
}

static void test_gradient_containers(void)
{
	const sfp_cfg_model cfg = cnn_cfg();
	const int B = 24;
	run f, l, g7, g1, g2;
	sfp_error err;
	run_open(&f, &cfg, B, SFP_QPOLICY_OFF, 8, 23, 0);
	grads_open(&l, &cfg, B, 8, 23);
	grads_open(&g7, &cfg, B, 5, 7);
	grads_open(&g1, &cfg, B, 5, 1);
	grads_open(&g2, &cfg, B, 5, 2);
	CU_ASSERT_EQUAL(sfp_model_set_grad_widths(g2.m, 9, 2, &err), SFP_EINVAL);
	for (int s = 0; s < 2; s++)
		expect_same_step(&f, &l, s, 0, "lossless gradient containers");
	/* one step from the same parameters */
	run_step(&g7, 0, 0);
	run_step(&g1, 0, 0);
	run_close(&f);
	run_open(&f, &cfg, B, SFP_QPOLICY_OFF, 8, 23, 0);
	run_step(&f, 0, 0);
	const double e7 = grad_error(&g7, &f), e1 = grad_error(&g1, &f);
	printf("\n    weight-gradient error against float32: e5 m7 %.2g, e5 m1 %.2g ", e7, e1);
	CU_ASSERT(e7 > 0.0);
	CU_ASSERT(e1 > 4.0 * e7);
	CU_ASSERT(e1 < 0.5);
	/* e5 m2 trains like float32 on the same data */
	run_close(&f);
	run_open(&f, &cfg, B, SFP_QPOLICY_OFF, 8, 23, 0);
	float f0 = 0, f1 = 0, q0 = 0, q1 = 0;
	for (int s = 0; s < 40; s++) {
		float lf = run_step(&f, s, 0), lq = run_step(&g2, s, 0);
		if (s == 0)
			f0 = lf, q0 = lq;
		f1 = lf, q1 = lq;
	}
	printf("loss 40 steps: float32 %.3f -> %.3f, e5 m2 gradients %.3f -> %.3f ", f0, f1, q0, q1);
	CU_ASSERT(q1 < 0.6f * q0);
	CU_ASSERT(q1 < 2.0f * f1 + 0.05f);
	run_close(&f);
	run_close(&l);
	run_close(&g7);
	run_close(&g1);
	run_close(&g2);
}

int main(void)
{
	/* plug-in paths in this suite are relative to the build folder */
	static char base[512];
	const char *build = getenv("BUILD");
	snprintf(base, sizeof base, "%s", build && build[0] ? build : "build");
	setenv("SFP_PLUGIN_BASE", base, 1);
	static const test_case cases[] = {
		{"lossless containers through the packed stash equal float32", test_lossless_equals_fp32},
		{"packed stash unpacks to the fake-quantized values, trains the same",
		 test_packed_equals_fake_quant},
		{"two threads: the same training bits, the same stash", test_threads},
		{"a value past the container is kept as the float stash has it", test_overflow_kept_raw},
		{"memory: 6-bit containers shrink the activation part", test_memory},
		{"gradient containers: lossless at e8 m23, error grows as m shrinks, e5 m2 trains",
		 test_gradient_containers},
		{NULL, NULL},
	};
	return test_run_suite("stash", cases);
}
