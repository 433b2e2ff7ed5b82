/*
 * prune.c -- BitPruning (design.md §1.5): the symmetric fixed-point
 * quantizer, its interpolation between integer widths and the gradient of
 * the width, the bits/operations regularizer, and bit packing of the codes
 * (include/sfp/quant.h states the formulas and the bit order).
 */
#include <math.h>
#include <string.h>

#include "sfp/quant.h"

static int32_t levels(unsigned bits)
{
	return (int32_t)((1u << (bits - 1)) - 1u);
}

float sfp_prune_amax(const float *x, uint64_t n)
{
	float m = 0.0f;
	for (uint64_t i = 0; i < n; i++) {
		float a = fabsf(x[i]);
		/* written so that a NaN wins: it must reach the caller's check */
		if (!(a <= m))
			m = a;
	}
	return m;
}

float sfp_prune_scale(float amax, unsigned bits)
{
	return amax / (float)levels(bits);
}

/* The grid at `bits` over [-range, range] (symmetric) or [0, range]
 * (unsigned): step s and the code range [lo, hi]. */
typedef struct grid {
	float s;
	int32_t lo, hi;
} grid;

static grid grid_of(float range, unsigned bits, int is_unsigned)
{
	if (is_unsigned) {
		const int32_t U = (int32_t)((1u << bits) - 1u);
		return (grid){range / (float)U, 0, U};
	}
	const int32_t L = levels(bits);
	return (grid){range / (float)L, -L, L};
}

/* One code. Every path to a quantized value goes through here and through
 * `code * s`, so Q, codes and dequantization agree to the bit. A zero or
 * NaN step gives 0; values beyond the range clip to the end codes, and the
 * clamp also catches NaN inputs (as the lowest code). */
static inline int32_t code_in(float x, grid g)
{
	if (!(g.s > 0.0f))
		return 0;
	float q = rintf(x / g.s);
	if (q >= (float)g.hi)
		return g.hi;
	if (!(q > (float)g.lo))
		return g.lo;
	return (int32_t)q;
}

static inline int32_t code_of(float x, float s, int32_t L)
{
	return code_in(x, (grid){s, -L, L});
}

void sfp_prune_codes(int32_t *codes, const float *x, uint64_t n, float amax, unsigned bits)
{
	const int32_t L = levels(bits);
	const float s = sfp_prune_scale(amax, bits);
	for (uint64_t i = 0; i < n; i++)
		codes[i] = code_of(x[i], s, L);
}

void sfp_prune_dequant(float *dst, const int32_t *codes, uint64_t n, float scale)
{
	for (uint64_t i = 0; i < n; i++)
		dst[i] = (float)codes[i] * scale;
}

void sfp_prune_quant(float *dst, const float *x, uint64_t n, float amax, unsigned bits)
{
	const int32_t L = levels(bits);
	const float s = sfp_prune_scale(amax, bits);
	for (uint64_t i = 0; i < n; i++)
		dst[i] = (float)code_of(x[i], s, L) * s;
}

/* The interpolated forward over a grid family (weights: symmetric with
 * range = amax; activations: a fixed range, maybe unsigned). */
static void interp(float *dst, const float *x, uint64_t n, float range, int is_unsigned,
		   float width)
{
	const float f = floorf(width), a = width - f;
	const grid ga = grid_of(range, (unsigned)f, is_unsigned);
	if (a == 0.0f) {
		for (uint64_t i = 0; i < n; i++)
			dst[i] = (float)code_in(x[i], ga) * ga.s;
		return;
	}
	const grid gb = grid_of(range, (unsigned)f + 1u, is_unsigned);
	for (uint64_t i = 0; i < n; i++) {
		float qa = (float)code_in(x[i], ga) * ga.s, qb = (float)code_in(x[i], gb) * gb.s;
		dst[i] = (1.0f - a) * qa + a * qb;
	}
}

void sfp_prune_interp(float *dst, const float *x, uint64_t n, float amax, float width)
{
	interp(dst, x, n, amax, 0, width);
}

void sfp_prune_interp_act(float *dst, const float *x, uint64_t n, float range, int is_unsigned,
			  float width)
{
	interp(dst, x, n, range, is_unsigned, width);
}

/* The pair of integer widths whose difference is the width's gradient:
 * (floor, ceil); at an integer, (n - 1, n), or (n, n + 1) at the floor.
 * Returns 0 when there is no pair (lo = hi). */
static int bracket(const sfp_qwidth *w, unsigned *lo, unsigned *hi)
{
	const float f = floorf(w->n);
	*lo = (unsigned)f;
	*hi = (unsigned)ceilf(w->n);
	if (*lo != *hi)
		return 1;
	if (f - 1.0f >= w->lo && f - 1.0f >= (float)SFP_PRUNE_MIN_BITS) {
		*lo = *hi - 1;
		return 1;
	}
	if (f + 1.0f <= w->hi && f + 1.0f <= (float)SFP_PRUNE_MAX_BITS) {
		*hi = *lo + 1;
		return 1;
	}
	return 0;
}

static double grad(const float *g, const float *x, uint64_t n, float range, int is_unsigned,
		   const sfp_qwidth *w)
{
	unsigned lo, hi;
	if (!bracket(w, &lo, &hi))
		return 0.0;
	const grid ga = grid_of(range, lo, is_unsigned), gb = grid_of(range, hi, is_unsigned);
	double s = 0.0;
	for (uint64_t i = 0; i < n; i++) {
		float qa = (float)code_in(x[i], ga) * ga.s, qb = (float)code_in(x[i], gb) * gb.s;
		s += (double)g[i] * ((double)qb - (double)qa);
	}
	return s;
}

double sfp_prune_grad(const float *g, const float *x, uint64_t n, float amax, const sfp_qwidth *w)
{
	return grad(g, x, n, amax, 0, w);
}

double sfp_prune_grad_act(const float *g, const float *x, uint64_t n, float range,
			  int is_unsigned, const sfp_qwidth *w)
{
	return grad(g, x, n, range, is_unsigned, w);
}

float sfp_prune_penalty(sfp_qwidth *w, const double *cost, int k, float gamma)
{
	double total = 0.0, avg = 0.0;
	for (int j = 0; j < k; j++)
		total += cost[j];
	if (!(total > 0.0))
		return 0.0f;
	for (int j = 0; j < k; j++) {
		const double f = cost[j] / total;
		avg += f * w[j].n;
		w[j].grad += (float)(gamma * f);
	}
	return (float)(gamma * avg);
}

void sfp_qwidth_adam_step(sfp_qwidth *w, float *m, float *v, float lr, int64_t t)
{
	const double b1 = 0.9, b2 = 0.999, eps = 1e-12;
	const double g = w->grad;
	*m = (float)(b1 * *m + (1.0 - b1) * g);
	*v = (float)(b2 * *v + (1.0 - b2) * g * g);
	const double mh = *m / (1.0 - pow(b1, (double)t)), vh = *v / (1.0 - pow(b2, (double)t));
	const float n = w->n - (float)(lr * mh / (sqrt(vh) + eps));
	w->n = n < w->lo ? w->lo : n > w->hi ? w->hi : n;
	w->grad = 0.0f;
}

/* ---- bit packing --------------------------------------------------------- */
size_t sfp_prune_pack_bound(uint64_t n, unsigned bits)
{
	return (size_t)SFP_PRUNE_PACKED_BYTES(n, bits);
}

static int bits_ok(unsigned bits)
{
	return bits >= SFP_PRUNE_MIN_BITS && bits <= SFP_PRUNE_MAX_BITS;
}

int sfp_prune_pack(uint8_t *dst, size_t cap, size_t *written, const int32_t *codes, uint64_t n,
		   unsigned bits, sfp_error *err)
{
	*written = 0;
	if (!bits_ok(bits))
		return sfp_error_set(err, SFP_EINVAL, "code width %u is not in %d..%d", bits,
				     SFP_PRUNE_MIN_BITS, SFP_PRUNE_MAX_BITS);
	const size_t need = sfp_prune_pack_bound(n, bits);
	if (cap < need)
		return sfp_error_set(err, SFP_ENOSPC, "destination has %zu bytes, the codes need %zu",
				     cap, need);
	const int32_t L = levels(bits);
	const uint64_t mask = (1ull << bits) - 1u;
	uint64_t acc = 0;
	unsigned have = 0;
	size_t o = 0;
	for (uint64_t i = 0; i < n; i++) {
		if (codes[i] < -L || codes[i] > L)
			return sfp_error_set(err, SFP_EINVAL, "code %d at %llu is outside +-%d", codes[i],
					     (unsigned long long)i, L);
		acc |= ((uint64_t)(uint32_t)codes[i] & mask) << have;
		have += bits;
		while (have >= 8) {
			dst[o++] = (uint8_t)acc;
			acc >>= 8;
			have -= 8;
		}
	}
	if (have)
		dst[o++] = (uint8_t)acc;
	*written = o;
	return SFP_OK;
}

int sfp_prune_unpack(int32_t *codes, uint64_t n, const uint8_t *src, size_t len, unsigned bits,
		     sfp_error *err)
{
	if (!bits_ok(bits))
		return sfp_error_set(err, SFP_ECORRUPT, "code width %u is not in %d..%d", bits,
				     SFP_PRUNE_MIN_BITS, SFP_PRUNE_MAX_BITS);
	const size_t need = sfp_prune_pack_bound(n, bits);
	if (len < need)
		return sfp_error_set(err, SFP_ETRUNC, "%zu bytes of codes, %zu needed", len, need);
	const uint64_t mask = (1ull << bits) - 1u, sign = 1ull << (bits - 1);
	uint64_t acc = 0;
	unsigned have = 0;
	size_t o = 0;
	for (uint64_t i = 0; i < n; i++) {
		while (have < bits) {
			acc |= (uint64_t)src[o++] << have;
			have += 8;
		}
		uint64_t v = acc & mask;
		acc >>= bits;
		have -= bits;
		if (v == sign)
			return sfp_error_set(err, SFP_ECORRUPT, "code %llu is -2^%u, never written",
					     (unsigned long long)i, bits - 1);
		/* sign-extend the low `bits` bits */
		codes[i] = (int32_t)(v & sign ? (int64_t)v - (int64_t)(mask + 1u) : (int64_t)v);
	}
	if (acc != 0)
		return sfp_error_set(err, SFP_ECORRUPT, "nonzero padding bits after the last code");
	return SFP_OK;
}
