/*
 * sfp/quant.h -- learned bitlengths: Quantum Mantissa / Quantum Exponent
 * widths (design.md §1.3), the footprint penalty, and the BitWave
 * controller (§1.4).
 *
 * A tensor's container width is a pair of real parameters (n_m, n_e). In a
 * forward pass the tensor is quantized at floor(n) or ceil(n) bits, picked at
 * random with probability given by the fractional part; backward passes
 * dL/dx straight through and gives each width the gradient of the linearly
 * interpolated quantizer
 *     Q_n(x) = (1 - a) Q(x, floor n) + a Q(x, ceil n),  a = n - floor n,
 *     dL/dn  = sum_i dL/dx^_i (Q(x_i, ceil n) - Q(x_i, floor n)),
 * plus the penalty gamma * size_l / sum(size). Q is exactly the container
 * of lib/codec (sfp_quantize: nearest-even rounding, the exponent window's
 * top at the tensor's largest exponent, values below it flushed to zero), so
 * what training sees is what packing stores.
 *
 * BitPruning (§1.5), at the end, learns integer fixed-point widths for
 * inference with the same interpolated-width idea.
 */
#ifndef SFP_QUANT_H
#define SFP_QUANT_H

#include <stdint.h>

#include "sfp/codec.h"
#include "sfp/common.h"

#ifdef __cplusplus
extern "C" {
#endif

/* A learned width n in [lo, hi] and its gradient. */
typedef struct sfp_qwidth {
	float n;
	float grad;
	float lo, hi;
} sfp_qwidth;

/* The learned container of one tensor (one layer's weights or activations). */
typedef struct sfp_qtensor {
	sfp_qwidth m;     /* mantissa bits, in [0, 23] */
	sfp_qwidth e;     /* exponent bits, in [1, 8] */
	uint64_t size;    /* elements: the footprint weight of the penalty */
	unsigned use_m;   /* widths of the last forward (floor or ceil) */
	unsigned use_e;
} sfp_qtensor;

/* Start at (e, m) bits, clamped to [1, 8] x [0, 23]. */
void sfp_qtensor_init(sfp_qtensor *t, float e, float m, uint64_t size);

/* Integer widths the tensor is packed with: ceil(n) (so both forward
 * choices can be recovered from the packed copy). */
unsigned sfp_qwidth_pack_bits(const sfp_qwidth *w);

/* Pick this step's widths: ceil(n) with probability n - floor(n). */
void sfp_qtensor_pick(sfp_qtensor *t, sfp_rng *rng);

/* dst = Q(src, e, m) for n values (dst may equal src). */
int sfp_quant_apply(sfp_codec *c, float *dst, const float *src, uint64_t n, unsigned e,
		    unsigned m, sfp_error *err);

/*
 * Accumulate into t->m.grad and t->e.grad the interpolation gradients
 *   sum_i g_i (Q(x_i, use_e, ceil m) - Q(x_i, use_e, floor m))  and
 *   sum_i g_i (Q(x_i, ceil e, use_m) - Q(x_i, floor e, use_m)),
 * given the upstream gradient g of the quantized tensor and its
 * unquantized values x. A width already at an integer (floor = ceil) gets
 * the one-sided difference toward the next width down, so an integer width
 * can still move. One pass over x and g per width (no scratch, no
 * allocation); the sums are in double over 16 interleaved lanes, so the
 * result is the same on every ISA.
 */
int sfp_qtensor_grad(sfp_codec *c, sfp_qtensor *t, const float *g, const float *x, uint64_t n,
		     sfp_error *err);
/* The same when x already holds container values: x == Q(x, grid_e,
 * grid_m) (a stored activation at its packing widths). The quantization at
 * exactly those widths is then x itself (Q is idempotent) and is skipped;
 * the result is the same bits as sfp_qtensor_grad's. */
int sfp_qtensor_grad_grid(sfp_codec *c, sfp_qtensor *t, const float *g, const float *x,
			  uint64_t n, unsigned grid_e, unsigned grid_m, sfp_error *err);

/*
 * The same gradient in pieces, for callers that spread a tensor over
 * threads. sfp_qgrad_plan fixes the quantizations once for the whole
 * tensor x[0..n) (their exponent windows come from all of it; grid_e = 0:
 * x is on no grid); then sfp_qgrad_block gives the two sums (mantissa,
 * exponent) of each block of SFP_QGRAD_BLOCK values (the last may be
 * shorter), in any order or thread -- the codec context is only read, so
 * one may be shared; adding the block sums in block order and
 * sfp_qgrad_apply give exactly sfp_qtensor_grad_grid's result.
 */
#define SFP_QGRAD_BLOCK 16384
typedef struct sfp_qgrad {
	int on[2];             /* [0] mantissa pair, [1] exponent pair: has a gradient */
	int same_a[2];         /* the pair's first quantization is x itself */
	sfp_params a[2], b[2]; /* the quantizations compared, FIXED windows */
	unsigned need_m[2];    /* mantissa widths whose window top needs a max pass */
	int nneed;
} sfp_qgrad;
int sfp_qgrad_plan(sfp_codec *c, sfp_qgrad *p, const sfp_qtensor *t, const float *x, uint64_t n,
		   unsigned grid_e, unsigned grid_m, sfp_error *err);
/* sfp_qgrad_plan in three steps, for callers that spread the max passes
 * over threads too: setup fixes the pairs and lists the window tops to
 * find (need_m); sfp_qgrad_tops gives them for a piece of x (the whole's
 * are the largest over the pieces; an all-zero piece says 1);
 * sfp_qgrad_set_tops puts them in. */
void sfp_qgrad_setup(sfp_qgrad *p, const sfp_qtensor *t, unsigned grid_e, unsigned grid_m);
int sfp_qgrad_tops(sfp_codec *c, const sfp_qgrad *p, const float *x, uint64_t n, unsigned tops[2],
		   sfp_error *err);
void sfp_qgrad_set_tops(sfp_qgrad *p, const unsigned tops[2]);
int sfp_qgrad_block(sfp_codec *c, const sfp_qgrad *p, const float *g, const float *x, uint64_t n,
		    double sum[2], sfp_error *err);
void sfp_qgrad_apply(sfp_qtensor *t, const sfp_qgrad *p, const double sum[2]);

/*
 * Footprint penalty over k tensors: returns gamma * sum_l(size_l * (n_m,l +
 * n_e,l + 1)) / sum_l(size_l) (bits per value, sign included, weighted by
 * size) and adds its gradient gamma * size_l / sum(size) to every width.
 */
float sfp_quant_penalty(sfp_qtensor *const *t, int k, float gamma);

/* n -= lr * grad, clamped to [lo, hi]; grad reset to 0. */
void sfp_qwidth_step(sfp_qwidth *w, float lr);

/* Average bits per value of k tensors at their packing widths (sign +
 * ceil(n_e) + ceil(n_m)), weighted by size. */
double sfp_quant_bits_per_value(sfp_qtensor *const *t, int k);

/* ---- BitWave: one network-wide width pair driven by the loss ----------- */
typedef struct sfp_bitwave_cfg {
	float ema;        /* smoothing of the loss average, 0 < ema < 1 (e.g. 0.9) */
	float threshold;  /* relative change that counts, e.g. 0.02 */
	int period;       /* steps between decisions */
	unsigned m_min, m_max, e_min, e_max;
	int backoff;      /* decisions a kind of bit is held after it was added
			   * back the first time; doubles each time (0: never) */
} sfp_bitwave_cfg;

typedef struct sfp_bitwave {
	sfp_bitwave_cfg cfg;
	double avg;       /* EMA of the loss (0 before the first observation) */
	double ref;       /* the average at the last decision */
	double var;       /* EMA of (loss - avg)^2: the loss's own noise */
	int64_t seen;
	unsigned m, e;    /* current widths */
	int last;         /* last decision: -1 removed a bit, +1 added, 0 held */
	int removed;      /* kind of the newest removal not yet undone: 0, 'm', 'e' */
	int hold_m, hold_e; /* decisions left before that kind may be removed again */
	int len_m, len_e;   /* the next hold's length */
} sfp_bitwave;

/* Start at (e, m); SFP_EINVAL naming the bad constant. */
int sfp_bitwave_init(sfp_bitwave *b, const sfp_bitwave_cfg *cfg, unsigned e, unsigned m,
		     sfp_error *err);
/*
 * Observe one step's loss. Every `period` steps compare the loss average to
 * the one at the previous decision. A change counts when it is larger than
 * `threshold` (relative) and than twice the standard deviation that the
 * difference of two averages has from the loss's batch-to-batch noise alone
 * (sqrt(2 var (1 - ema) / (1 + ema))), so noise alone rarely decides:
 *  - improved: remove a bit, mantissa
 *    first, exponent once the mantissa is at its floor or held;
 *  - worse: add a bit back: the kind removed last
 *    (if that removal is not undone yet), else the exponent when it was
 *    narrowed (a narrow window flushes values to zero), else the mantissa.
 *    The kind added back is then held: not removed again for `backoff`
 *    decisions, twice as long each time it comes back, so a width the
 *    loss keeps asking for settles instead of oscillating;
 *  - else hold.
 * Returns -1, 0 or +1 (the decision this step; 0 between decisions).
 */
int sfp_bitwave_observe(sfp_bitwave *b, double loss);

/* BitWave's state as SFP_BITWAVE_STATE_FLOATS floats, so a checkpoint
 * carries it beside the model's buffers: the loss averages, their variance
 * and the step count as raw double bits (two floats each), then the widths,
 * the newest removal and the holds as float-valued integers. The constants
 * (cfg) are not part of it. Load refuses (SFP_ECORRUPT) a state whose
 * widths or holds are outside the ranges the controller can reach. */
#define SFP_BITWAVE_STATE_FLOATS 15
void sfp_bitwave_save(const sfp_bitwave *b, float *dst);
int sfp_bitwave_load(sfp_bitwave *b, const float *src, sfp_error *err);

/* ---- BitPruning: learned integer widths for inference (design.md §1.5) ---
 *
 * A tensor (or each output channel of it: a "group") is stored as b-bit
 * two's-complement integer codes and one float32 scale. The quantizer is
 * symmetric and has no clipping:
 *     L = 2^(b-1) - 1,  s = amax / L  (amax = max |x| of the group),
 *     code(x) = round_half_even(x / s) in [-L, L],  Q(x, b) = code(x) * s,
 * so an all-zero group has s = 0 and codes 0. b counts the sign and is in
 * [SFP_PRUNE_MIN_BITS, SFP_PRUNE_MAX_BITS]; -2^(b-1) is never a code.
 *
 * The width is a real n (an sfp_qwidth) while it is learned; the forward
 * pass interpolates deterministically between the neighbouring integers,
 *     Q_n(x) = (1 - a) Q(x, floor n) + a Q(x, ceil n),  a = n - floor n,
 * the gradient passes straight through to x, and n gets
 *     dL/dn = sum_i dL/dQ_n(x_i) (Q(x_i, ceil n) - Q(x_i, floor n)).
 * At an integer n, Q_n is exactly Q(x, n). */
#define SFP_PRUNE_MIN_BITS 2
#define SFP_PRUNE_MAX_BITS 16

/* max |x_i| of n values (0 for n = 0; NaN if any x_i is NaN). */
float sfp_prune_amax(const float *x, uint64_t n);
/* The scale of a group with that amax at `bits`: amax / (2^(bits-1) - 1). */
float sfp_prune_scale(float amax, unsigned bits);
/* codes[i] = code(x_i) at `bits` with the scale of amax (see above). */
void sfp_prune_codes(int32_t *codes, const float *x, uint64_t n, float amax, unsigned bits);
/* dst[i] = codes[i] * scale: exactly the values Q gives (dst may not alias). */
void sfp_prune_dequant(float *dst, const int32_t *codes, uint64_t n, float scale);
/* dst = Q(x, bits) with the scale of amax (dst may equal x). */
void sfp_prune_quant(float *dst, const float *x, uint64_t n, float amax, unsigned bits);
/* dst = Q_width(x), the interpolation above (dst may equal x). */
void sfp_prune_interp(float *dst, const float *x, uint64_t n, float amax, float width);

/*
 * The interpolation gradient of width w, sum_i g_i (Q(x_i, hi) - Q(x_i, lo)),
 * where (lo, hi) = (floor n, ceil n). At an integer n it is the one-sided
 * difference toward the next width down, (n - 1, n), so an integer width can
 * still move; at the floor w->lo it is (n, n + 1), so a width that reached
 * its floor can climb back (0 when lo = hi). Returned, not accumulated.
 */
double sfp_prune_grad(const float *g, const float *x, uint64_t n, float amax, const sfp_qwidth *w);

/*
 * Activations (the inputs of linear/conv layers) are quantized against a
 * fixed clip range r, measured before and during the fine-tune, in place of
 * each tensor's own max: the symmetric grid over [-r, r] as above, or, for
 * inputs that are never negative (after a ReLU), the unsigned grid
 *     U = 2^b - 1,  s = r / U,  code(x) = round(x / s) in [0, U],
 * which spends no bit on a sign. Values beyond the range clip to the end
 * codes. Interpolation and width gradient as for weights.
 */
void sfp_prune_interp_act(float *dst, const float *x, uint64_t n, float range, int is_unsigned,
			  float width);
double sfp_prune_grad_act(const float *g, const float *x, uint64_t n, float range,
			  int is_unsigned, const sfp_qwidth *w);

/*
 * The regularizer over k widths: gamma * sum_j cost_j n_j / sum_j cost_j,
 * a cost-weighted average of the widths. cost_j = values in group j gives
 * average bits per value (memory); values x multiply-adds per value gives
 * bits per operation. Adds gamma * cost_j / sum(cost) to w[j].grad and
 * returns the penalty (0 if every cost is 0).
 */
float sfp_prune_penalty(sfp_qwidth *w, const double *cost, int k, float gamma);

/*
 * One Adam step on a width (beta1 0.9, beta2 0.999, eps 1e-12): with m and v
 * its moments and t the 1-based step, n -= lr * m^ / (sqrt(v^) + eps),
 * clamped to [lo, hi]; grad reset to 0. Unlike plain SGD (sfp_qwidth_step)
 * the step does not scale with the gradient, so a width moves at up to lr
 * bits per step whatever the size of its group, and stops where the task's
 * gradient balances the penalty's on average.
 */
void sfp_qwidth_adam_step(sfp_qwidth *w, float *m, float *v, float lr, int64_t t);

/*
 * Bit packing of codes: code i occupies stream bits [i*bits, (i+1)*bits) as
 * its low `bits` bits (two's complement); stream bit k is bit (k mod 8) of
 * byte k / 8 (LSB first). The last byte's unused high bits are zero.
 */
#define SFP_PRUNE_PACKED_BYTES(n, bits) (((uint64_t)(n) * (uint64_t)(bits) + 7u) / 8u)
size_t sfp_prune_pack_bound(uint64_t n, unsigned bits);
/* Write n codes (each in [-L, L]) into dst (cap bytes); *written gets the
 * byte count. SFP_ENOSPC if cap is short, SFP_EINVAL for bad bits or a code
 * out of range. */
int sfp_prune_pack(uint8_t *dst, size_t cap, size_t *written, const int32_t *codes, uint64_t n,
		   unsigned bits, sfp_error *err);
/* Read n codes from exactly SFP_PRUNE_PACKED_BYTES(n, bits) bytes of src.
 * SFP_ETRUNC if len is shorter, SFP_ECORRUPT for a code of -2^(bits-1) or
 * nonzero padding bits. */
int sfp_prune_unpack(int32_t *codes, uint64_t n, const uint8_t *src, size_t len, unsigned bits,
		     sfp_error *err);

#ifdef __cplusplus
}
#endif
#endif
