/*
 * test_quant_widths.c -- learned widths: the interpolation gradient against finite
 * differences of the interpolated quantizer, the penalty driving widths down
 * on a toy problem while its loss holds, BitWave on synthetic loss curves,
 * and footprint accounting by hand.
 */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "sfp/quant.h"
#include "tests/util/testutil.h"

static sfp_codec *codec;

/* L(n) = sum_i g_i Q_n(x_i), Q_n the linear interpolation between the
 * containers at floor(n) and ceil(n) bits of the mantissa (or exponent). */
static double interp_loss(const float *g, const float *x, int n, double width, int exponent,
			  unsigned other)
{
	float *a = malloc(n * sizeof(float)), *b = malloc(n * sizeof(float));
	unsigned f = (unsigned)floor(width), c = (unsigned)ceil(width);
	double al = width - f, s = 0.0;
	if (exponent) {
		sfp_quant_apply(codec, a, x, n, f, other, NULL);
		sfp_quant_apply(codec, b, x, n, c, other, NULL);
	} else {
		sfp_quant_apply(codec, a, x, n, other, f, NULL);
		sfp_quant_apply(codec, b, x, n, other, c, NULL);
	}
	for (int i = 0; i < n; i++)
		s += g[i] * ((1.0 - al) * a[i] + al * b[i]);
	free(a);
	free(b);
	return s;
}

static void test_interp_gradient(void)
{
	enum { N = 4096 };
	static float x[N], g[N];
	sfp_rng r;
	sfp_rng_seed(&r, 9);
	for (int i = 0; i < N; i++) {
		x[i] = sfp_rng_normal(&r) * expf(2.0f * sfp_rng_normal(&r));
		g[i] = sfp_rng_normal(&r);
	}
	const float ms[] = {0.4f, 2.5f, 3.3f, 6.9f, 22.2f}, es[] = {1.5f, 3.25f, 4.5f, 7.75f};
	for (size_t k = 0; k < sizeof ms / sizeof ms[0]; k++) {
		sfp_qtensor t;
		sfp_qtensor_init(&t, 8.0f, ms[k], N);
		t.use_e = 8;
		CU_ASSERT_EQUAL_FATAL(sfp_qtensor_grad(codec, &t, g, x, N, NULL), SFP_OK);
		const double h = 0.05;
		double fd = (interp_loss(g, x, N, ms[k] + h, 0, 8) - interp_loss(g, x, N, ms[k] - h, 0, 8)) /
			    (2 * h);
		CU_ASSERT_DOUBLE_EQUAL(t.m.grad, fd, 1e-4 * (1.0 + fabs(fd)));
		CU_ASSERT(fd != 0.0);
		CU_ASSERT_EQUAL(t.e.grad, 0.0f); /* 7 and 8 exponent bits both hold every x */
	}
	for (size_t k = 0; k < sizeof es / sizeof es[0]; k++) {
		sfp_qtensor t;
		sfp_qtensor_init(&t, es[k], 5.0f, N);
		t.use_m = 5;
		t.m.lo = t.m.n = 5.0f; /* mantissa held at its floor: no mantissa gradient */
		CU_ASSERT_EQUAL_FATAL(sfp_qtensor_grad(codec, &t, g, x, N, NULL), SFP_OK);
		const double h = 0.05;
		double fd = (interp_loss(g, x, N, es[k] + h, 1, 5) - interp_loss(g, x, N, es[k] - h, 1, 5)) /
			    (2 * h);
		CU_ASSERT_DOUBLE_EQUAL(t.e.grad, fd, 1e-4 * (1.0 + fabs(fd)));
		CU_ASSERT_EQUAL(t.m.grad, 0.0f);
	}
	/* at an integer width the one-sided difference to the width below */
	sfp_qtensor t;
	sfp_qtensor_init(&t, 8.0f, 4.0f, N);
	t.use_e = 8;
	CU_ASSERT_EQUAL(sfp_qtensor_grad(codec, &t, g, x, N, NULL), SFP_OK);
	double want = interp_loss(g, x, N, 3.99999, 0, 8) - interp_loss(g, x, N, 3.0, 0, 8);
	CU_ASSERT_DOUBLE_EQUAL(t.m.grad, want / 0.99999, 1e-3 * (1.0 + fabs(want)));
}

/* Forward choices follow the fractional part. */
/* Values already in a container: the gradient that skips the quantization
 * at the grid's own widths (Q is idempotent) is the same bits as the full
 * one, for widths above, at and between the grid's, every pick. */
static void test_grad_on_grid(void)
{
	enum { N = 5000 };
	static float y[N], x[N], g[N];
	sfp_rng r;
	sfp_rng_seed(&r, 12);
	for (int i = 0; i < N; i++) {
		y[i] = i % 5 == 0 ? 0.0f : sfp_rng_normal(&r) * expf(2.0f * sfp_rng_normal(&r));
		g[i] = sfp_rng_normal(&r);
	}
	y[7] = NAN;
	y[11] = -INFINITY;
	int checked = 0;
	for (unsigned ge = 2; ge <= 8; ge += 3)
		for (unsigned gm = 0; gm <= 7; gm += 7) {
			CU_ASSERT_EQUAL_FATAL(sfp_quant_apply(codec, x, y, N, ge, gm, NULL), SFP_OK);
			/* idempotent: quantizing again changes nothing */
			static float z[N];
			CU_ASSERT_EQUAL_FATAL(sfp_quant_apply(codec, z, x, N, ge, gm, NULL), SFP_OK);
			CU_ASSERT_EQUAL(memcmp(x, z, sizeof x), 0);
			const float ns[] = {-1.5f, -0.5f, 0.0f};
			for (size_t a = 0; a < 3; a++)
				for (size_t b = 0; b < 3; b++) {
					sfp_qtensor t1, t2;
					sfp_qtensor_init(&t1, (float)ge + ns[a], (float)gm + ns[b], N);
					if ((float)gm + ns[b] < 0.0f || (float)ge + ns[a] < 1.0f)
						continue;
					for (int pick = 0; pick < 4; pick++) {
						t1.use_e = sfp_qwidth_pack_bits(&t1.e) - (pick & 1 && ns[a] != 0.0f);
						t1.use_m = sfp_qwidth_pack_bits(&t1.m) - (pick & 2 && ns[b] != 0.0f);
						t1.m.grad = t1.e.grad = 0.0f;
						t2 = t1;
						CU_ASSERT_EQUAL_FATAL(
							sfp_qtensor_grad(codec, &t1, g, x, N, NULL), SFP_OK);
						CU_ASSERT_EQUAL_FATAL(sfp_qtensor_grad_grid(codec, &t2, g, x, N,
											     ge, gm, NULL),
								      SFP_OK);
						CU_ASSERT_EQUAL(memcmp(&t1.m.grad, &t2.m.grad, 4), 0);
						CU_ASSERT_EQUAL(memcmp(&t1.e.grad, &t2.e.grad, 4), 0);
						checked++;
					}
				}
		}
	CU_ASSERT(checked > 50);
}

/* The gradient in pieces: window tops found per block and maxed, block
 * sums added in order -- the same bits as sfp_qtensor_grad_grid. */
static void test_grad_pieces(void)
{
	enum { N = 3 * SFP_QGRAD_BLOCK + 123 };
	static float x[N], g[N];
	sfp_rng r;
	sfp_rng_seed(&r, 77);
	for (int i = 0; i < N; i++) {
		x[i] = i % 4 == 0 ? 0.0f : sfp_rng_normal(&r) * expf(2.0f * sfp_rng_normal(&r));
		g[i] = sfp_rng_normal(&r);
	}
	x[2 * SFP_QGRAD_BLOCK + 5] = 4e6f; /* the top lives in the third block */
	const float es[] = {3.4f, 5.0f, 8.0f}, ms[] = {1.5f, 4.0f, 6.7f};
	for (int a = 0; a < 3; a++)
		for (int b = 0; b < 3; b++) {
			sfp_qtensor t1, t2;
			sfp_qtensor_init(&t1, es[a], ms[b], N);
			t1.use_e = (unsigned)floorf(es[a]);
			t1.use_m = sfp_qwidth_pack_bits(&t1.m);
			t2 = t1;
			CU_ASSERT_EQUAL_FATAL(sfp_qtensor_grad_grid(codec, &t1, g, x, N, 0, 0, NULL), SFP_OK);
			sfp_qgrad p;
			sfp_qgrad_setup(&p, &t2, 0, 0);
			unsigned top[2] = {1, 1};
			for (int k = 0; k * SFP_QGRAD_BLOCK < N; k++) {
				const int b0 = k * SFP_QGRAD_BLOCK, len = N - b0 < SFP_QGRAD_BLOCK ? N - b0 : SFP_QGRAD_BLOCK;
				unsigned tk[2] = {1, 1};
				CU_ASSERT_EQUAL_FATAL(sfp_qgrad_tops(codec, &p, x + b0, len, tk, NULL), SFP_OK);
				top[0] = tk[0] > top[0] ? tk[0] : top[0];
				top[1] = tk[1] > top[1] ? tk[1] : top[1];
			}
			sfp_qgrad_set_tops(&p, top);
			double total[2] = {0, 0}, d[2];
			for (int k = 0; k * SFP_QGRAD_BLOCK < N; k++) {
				const int b0 = k * SFP_QGRAD_BLOCK, len = N - b0 < SFP_QGRAD_BLOCK ? N - b0 : SFP_QGRAD_BLOCK;
				CU_ASSERT_EQUAL_FATAL(sfp_qgrad_block(codec, &p, g + b0, x + b0, len, d, NULL), SFP_OK);
				total[0] += d[0];
				total[1] += d[1];
			}
			sfp_qgrad_apply(&t2, &p, total);
			CU_ASSERT_EQUAL(memcmp(&t1.m.grad, &t2.m.grad, 4), 0);
			CU_ASSERT_EQUAL(memcmp(&t1.e.grad, &t2.e.grad, 4), 0);
		}
}

static void test_pick(void)
{
	sfp_rng r;
	sfp_rng_seed(&r, 1);
	sfp_qtensor t;
	sfp_qtensor_init(&t, 3.25f, 2.75f, 10);
	int up_m = 0, up_e = 0;
	for (int i = 0; i < 20000; i++) {
		sfp_qtensor_pick(&t, &r);
		CU_ASSERT(t.use_m == 2 || t.use_m == 3);
		CU_ASSERT(t.use_e == 3 || t.use_e == 4);
		up_m += t.use_m == 3;
		up_e += t.use_e == 4;
	}
	CU_ASSERT_DOUBLE_EQUAL(up_m / 20000.0, 0.75, 0.015);
	CU_ASSERT_DOUBLE_EQUAL(up_e / 20000.0, 0.25, 0.015);
	CU_ASSERT_EQUAL(sfp_qwidth_pack_bits(&t.m), 3);
	CU_ASSERT_EQUAL(sfp_qwidth_pack_bits(&t.e), 4);
}

/*
 * Toy problem: learn w so that Q(w) matches a target whose values need only
 * 2 mantissa bits and a 6-exponent window. From 10 mantissa and 8 exponent
 * bits, the penalty pushes the widths down until the task loss pushes back:
 * the widths must fall a long way while the task loss stays small.
 */
static void test_penalty_drives_widths(void)
{
	enum { N = 512 };
	static float t[N], w[N], q[N], g[N];
	sfp_rng r;
	sfp_rng_seed(&r, 4);
	for (int i = 0; i < N; i++) {
		float mant = 1.0f + 0.25f * (float)sfp_rng_below(&r, 4); /* 2 mantissa bits */
		t[i] = (sfp_rng_below(&r, 2) ? -1.0f : 1.0f) * ldexpf(mant, -(int)sfp_rng_below(&r, 6));
		w[i] = t[i];
	}
	sfp_qtensor qt;
	sfp_qtensor_init(&qt, 8.0f, 10.0f, N);
	sfp_qtensor *list[1] = {&qt};
	double task = 0.0;
	for (int step = 0; step < 600; step++) {
		sfp_qtensor_pick(&qt, &r);
		CU_ASSERT_EQUAL_FATAL(sfp_quant_apply(codec, q, w, N, qt.use_e, qt.use_m, NULL), SFP_OK);
		task = 0.0;
		for (int i = 0; i < N; i++) {
			double d = q[i] - t[i];
			task += d * d / N;
			g[i] = (float)(2.0 * d / N);
		}
		CU_ASSERT_EQUAL_FATAL(sfp_qtensor_grad(codec, &qt, g, w, N, NULL), SFP_OK);
		sfp_quant_penalty(list, 1, 0.002f);
		sfp_qwidth_step(&qt.m, 20.0f);
		sfp_qwidth_step(&qt.e, 20.0f);
	}
	/* the loss at the packing widths */
	sfp_quant_apply(codec, q, w, N, sfp_qwidth_pack_bits(&qt.e), sfp_qwidth_pack_bits(&qt.m), NULL);
	double packed = 0.0;
	for (int i = 0; i < N; i++)
		packed += (double)(q[i] - t[i]) * (q[i] - t[i]) / N;
	printf("\n    widths m %.2f e %.2f, task loss %.2e at packing widths ", (double)qt.m.n,
	       (double)qt.e.n, packed);
	CU_ASSERT(qt.m.n < 4.0f);
	CU_ASSERT(qt.e.n < 5.0f);
	CU_ASSERT(sfp_qwidth_pack_bits(&qt.m) >= 2); /* not below what the data needs */
	CU_ASSERT(packed < 1e-3);
}

static void test_bitwave(void)
{
	sfp_bitwave_cfg c = {.ema = 0.5f, .threshold = 0.02f, .period = 10, .m_min = 1, .m_max = 7,
			     .e_min = 3, .e_max = 8};
	sfp_bitwave b;
	sfp_error err;
	CU_ASSERT_EQUAL_FATAL(sfp_bitwave_init(&b, &c, 8, 7, &err), SFP_OK);
	/* a steadily falling loss removes bits: mantissa to its floor, then exponent */
	int removed = 0;
	for (int s = 0; s < 200; s++)
		removed += sfp_bitwave_observe(&b, 2.0 * exp(-0.02 * s)) < 0;
	CU_ASSERT_EQUAL(b.m, 1);
	CU_ASSERT(b.e < 8);
	CU_ASSERT_EQUAL(removed, 6 + (8 - (int)b.e));
	/* a flat loss holds */
	unsigned m0 = b.m, e0 = b.e;
	for (int s = 0; s < 100; s++)
		CU_ASSERT_EQUAL(sfp_bitwave_observe(&b, b.avg), 0);
	CU_ASSERT(b.m == m0 && b.e == e0);
	/* a rising loss adds bits back, exponent first */
	for (int s = 0; s < 30; s++)
		sfp_bitwave_observe(&b, b.avg * 1.1);
	CU_ASSERT(b.e > e0);
	CU_ASSERT_EQUAL(b.m, m0);
	for (int s = 0; s < 400; s++)
		sfp_bitwave_observe(&b, b.avg * 1.1);
	CU_ASSERT_EQUAL(b.e, 8);
	CU_ASSERT_EQUAL(b.m, 7); /* clamped at the ceiling */
	/* a width the loss keeps asking for settles: below 3 mantissa bits the
	 * loss is 20% higher, on a falling trend. Each return of the mantissa
	 * bit holds it twice as long as the last, so it is taken away only a
	 * logarithmic number of times and the exponent goes instead. Without
	 * the hold the bit comes and goes every other decision, the jumps
	 * widen the noise band until nothing counts, and the run ends below 3
	 * bits, 20% worse */
	for (int backoff = 2; backoff >= 0; backoff -= 2) {
		c.backoff = backoff;
		CU_ASSERT_EQUAL_FATAL(sfp_bitwave_init(&b, &c, 8, 7, &err), SFP_OK);
		int narrow = 0, at3 = 0; /* mantissa removals to 2; decisions left at 3 */
		for (int s = 0; s < 10000; s++) {
			int d = sfp_bitwave_observe(&b, 2.0 * exp(-0.003 * s) * (b.m < 3 ? 1.2 : 1.0));
			narrow += d < 0 && b.m == 2;
			if ((s + 1) % c.period == 0) /* a decision step */
				at3 += b.m == 3;
		}
		printf("\n  bitwave hold %d: m taken to 2 %d times, at 3 after %d of 1000 decisions, "
		       "ends e%u m%u ",
		       backoff, narrow, at3, b.e, b.m);
		if (backoff) {
			CU_ASSERT(narrow >= 3 && narrow <= 11);
			CU_ASSERT(at3 > 950);
			CU_ASSERT_EQUAL(b.m, 3);
			CU_ASSERT_EQUAL(b.e, c.e_min);
		} else {
			CU_ASSERT(narrow > 15);
			CU_ASSERT(at3 < 500);
			CU_ASSERT(b.m < 3);
		}
	}
	/* a flat loss with batch-to-batch noise (uniform, +-50%): a 2% threshold
	 * alone would decide at nearly every period; the noise band lets
	 * through only the rare average that strays 2 sigma */
	c.backoff = 0;
	c.ema = 0.9f;
	CU_ASSERT_EQUAL_FATAL(sfp_bitwave_init(&b, &c, 8, 7, &err), SFP_OK);
	uint64_t r = 12345;
	int moves = 0;
	for (int s = 0; s < 10000; s++) {
		r = r * 6364136223846793005ull + 1442695040888963407ull;
		moves += sfp_bitwave_observe(&b, 1.0 + ((double)(r >> 11) / 9007199254740992.0 - 0.5)) != 0;
	}
	printf("\n  bitwave on noise: %d moves in 1000 decisions ", moves);
	CU_ASSERT(moves < 100);
	/* bad constants are refused */
	c.ema = 0.5f;
	c.backoff = -1;
	CU_ASSERT_EQUAL(sfp_bitwave_init(&b, &c, 8, 7, &err), SFP_EINVAL);
	CU_ASSERT_PTR_NOT_NULL(strstr(err.msg, "backoff"));
	c.backoff = 2;
	c.ema = 1.0f;
	CU_ASSERT_EQUAL(sfp_bitwave_init(&b, &c, 8, 7, &err), SFP_EINVAL);
	CU_ASSERT_PTR_NOT_NULL(strstr(err.msg, "ema"));
	c.ema = 0.5f;
	c.e_min = 0;
	CU_ASSERT_EQUAL(sfp_bitwave_init(&b, &c, 8, 7, &err), SFP_EINVAL);
}

/* Footprint by hand: (100 (1 + 3 + 4) + 300 (1 + 1 + 3)) / 400 = 5.75 bits;
 * penalty gradient gamma * size / total to each width. */
static void test_footprint(void)
{
	sfp_qtensor a, b;
	sfp_qtensor_init(&a, 3.5f, 2.3f, 100);
	sfp_qtensor_init(&b, 3.0f, 1.0f, 300);
	sfp_qtensor *l[2] = {&a, &b};
	CU_ASSERT_DOUBLE_EQUAL(sfp_quant_bits_per_value(l, 2), 5.75, 1e-12);
	float p = sfp_quant_penalty(l, 2, 0.5f);
	CU_ASSERT_DOUBLE_EQUAL(p, 0.5 * (0.25 * (2.3 + 3.5 + 1) + 0.75 * (1 + 3 + 1)), 1e-6);
	CU_ASSERT_DOUBLE_EQUAL(a.m.grad, 0.125, 1e-7);
	CU_ASSERT_DOUBLE_EQUAL(b.e.grad, 0.375, 1e-7);
	a.m.grad = 100.0f;
	sfp_qwidth_step(&a.m, 1.0f);
	CU_ASSERT_EQUAL(a.m.n, 0.0f); /* clamped */
	CU_ASSERT_EQUAL(a.m.grad, 0.0f);
}

/* The state a checkpoint carries: a controller restored from it decides
 * exactly as the one saved; a state no controller reaches is refused. */
static void test_bitwave_state(void)
{
	sfp_bitwave_cfg c = {.ema = 0.9f, .threshold = 0.01f, .period = 5, .m_min = 1, .m_max = 7,
			     .e_min = 3, .e_max = 8, .backoff = 2};
	sfp_bitwave a, b;
	sfp_error err;
	CU_ASSERT_EQUAL_FATAL(sfp_bitwave_init(&a, &c, 8, 7, &err), SFP_OK);
	for (int s = 0; s < 300; s++)
		sfp_bitwave_observe(&a, 2.0 * exp(-0.01 * s) * (a.m < 4 ? 1.3 : 1.0));
	float st[SFP_BITWAVE_STATE_FLOATS];
	sfp_bitwave_save(&a, st);
	CU_ASSERT_EQUAL_FATAL(sfp_bitwave_init(&b, &c, 8, 7, &err), SFP_OK);
	CU_ASSERT_EQUAL_FATAL(sfp_bitwave_load(&b, st, &err), SFP_OK);
	CU_ASSERT(a.avg == b.avg && a.ref == b.ref && a.var == b.var && a.seen == b.seen);
	CU_ASSERT(a.m == b.m && a.e == b.e && a.removed == b.removed);
	CU_ASSERT(a.hold_m == b.hold_m && a.hold_e == b.hold_e && a.len_m == b.len_m &&
		  a.len_e == b.len_e);
	int same = 1;
	for (int s = 300; s < 600; s++) {
		const double loss = 2.0 * exp(-0.01 * s) * (a.m < 4 ? 1.3 : 1.0);
		same &= sfp_bitwave_observe(&a, loss) == sfp_bitwave_observe(&b, loss);
	}
	CU_ASSERT(same && a.m == b.m && a.e == b.e);
	/* widths out of range, a fraction, a removal that is no kind */
	const int field[] = {8, 9, 10, 11};
	const float bad[] = {24.0f, 9.0f, 'x', 2.5f};
	for (int k = 0; k < 4; k++) {
		sfp_bitwave_save(&a, st);
		st[field[k]] = bad[k];
		CU_ASSERT_EQUAL(sfp_bitwave_load(&b, st, &err), SFP_ECORRUPT);
	}
}

int main(void)
{
	codec = sfp_codec_create();
	static const test_case cases[] = {
		{"interpolation gradient = finite differences", test_interp_gradient},
		{"gradient of values on a grid skips the identity", test_grad_on_grid},
		{"gradient in pieces equals the whole", test_grad_pieces},
		{"forward picks floor/ceil by the fraction", test_pick},
		{"the penalty drives widths down, the task loss holds", test_penalty_drives_widths},
		{"BitWave on synthetic loss curves", test_bitwave},
		{"BitWave state saves and loads exactly", test_bitwave_state},
		{"footprint and penalty by hand", test_footprint},
		{NULL, NULL},
	};
	int rc = test_run_suite("quant", cases);
	sfp_codec_free(codec);
	return rc;
}
