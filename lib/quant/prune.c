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

/* One code. Every path to a quantized value goes through here and through
 * `code * s`, so Q, codes and dequantization agree to the bit. A zero or
 * NaN scale gives 0; the clamp also catches NaN inputs (as -L). */
static inline int32_t code_of(float x, float s, int32_t L)
{
	if (!(s > 0.0f))
		return 0;
	float q = rintf(x / s);
	if (q >= (float)L)
		return L;
	if (!(q > (float)-L))
		return -L;
	return (int32_t)q;
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

void sfp_prune_interp(float *dst, const float *x, uint64_t n, float amax, float width)
{
	const float f = floorf(width), a = width - f;
	const unsigned lo = (unsigned)f;
	if (a == 0.0f) {
		sfp_prune_quant(dst, x, n, amax, lo);
		return;
	}
	const int32_t La = levels(lo), Lb = levels(lo + 1);
	const float sa = sfp_prune_scale(amax, lo), sb = sfp_prune_scale(amax, lo + 1);
	for (uint64_t i = 0; i < n; i++) {
		float qa = (float)code_of(x[i], sa, La) * sa, qb = (float)code_of(x[i], sb, Lb) * sb;
		dst[i] = (1.0f - a) * qa + a * qb;
	}
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

double sfp_prune_grad(const float *g, const float *x, uint64_t n, float amax, const sfp_qwidth *w)
{
	unsigned lo, hi;
	if (!bracket(w, &lo, &hi))
		return 0.0;
	const int32_t La = levels(lo), Lb = levels(hi);
	const float sa = sfp_prune_scale(amax, lo), sb = sfp_prune_scale(amax, hi);
	double s = 0.0;
	for (uint64_t i = 0; i < n; i++) {
		float qa = (float)code_of(x[i], sa, La) * sa, qb = (float)code_of(x[i], sb, Lb) * sb;
		s += (double)g[i] * ((double)qb - (double)qa);
	}
	return s;
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
