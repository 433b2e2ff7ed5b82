/*
 * refine.c -- decoder-side refinement of a lossy container's values
 * (design.md §1.7, docs/refine.md). The decoder of a container is a
 * dequantizer: it puts every value at the point its bits name. Two tools move
 * that point inside the value's quantization bin, guided by a few bytes the
 * encoder signals:
 *
 *  - entropy-gradient shift (after Latent-Shift): the decoder knows the
 *    distribution of the exponents (it decoded them); from their histogram it
 *    builds a density of |x| (constant within a binade, its log interpolated
 *    linearly between binade centres) and moves each value along the slope
 *    of that log-density by rho * 2^-m * A ulps, where A is the slope in
 *    binade units. For a bin of width u and a locally linear density the
 *    conditional mean sits u^2/12 * dlnp/dx from the centre, i.e. rho = 1/12;
 *    the encoder picks rho (a byte, rho = code / 512) by least squares.
 *  - bias correction (after the overfitted decoder bias): one offset per
 *    tensor or per slice of the leading dimension, in ulps of each value
 *    (a signed byte, delta = b / 256), fitted by least squares.
 *
 * Both act on magnitudes (the sign is kept) and only on nonzero finite
 * values; the total offset is clipped to the inside of the value's rounding
 * bin, so a refined value rounds back to the same container value (hence
 * m <= 20: finer containers leave no room inside a bin). The encoder keeps
 * a tool only where it lowers the squared error of the values it is fitted
 * to (each choice is checked against "off" exactly), so refinement never
 * increases that error. Side bytes: [rho if SHIFT][one byte per group if
 * BIAS], at the end of the payload.
 */
#include <math.h>

#include "codec/codec_internal.h"

#define RHO_SCALE 512.0
#define BIAS_SCALE 256.0

typedef struct slopes {
	/* per biased exponent: the shift in ulps per unit rho below / above the
	 * binade centre (the slope A times 2^-m), and the ulp 2^(E-127-m) */
	double lo[256], hi[256], ulp[256];
	double margin; /* 2^(m-22): two float32 ulps in ulps of the container */
} slopes;

/* A value's biased exponent, or 0 when refinement leaves it alone (zero,
 * subnormal, Inf, NaN). */
static inline unsigned refinable(uint32_t u)
{
	unsigned E = (u >> 23) & 0xff;
	return E >= 1 && E <= 254 ? E : 0;
}

/* The tables for values q at m mantissa bits; the slopes only with_shift. */
static void slopes_build(slopes *s, const float *q, uint64_t n, unsigned m, int with_shift)
{
	s->margin = ldexp(1.0, (int)m - 22);
	for (int E = 0; E < 256; E++) {
		s->ulp[E] = ldexp(1.0, E - 127 - (int)m);
		s->lo[E] = s->hi[E] = 0.0;
	}
	if (!with_shift)
		return;
	uint64_t h[256] = {0};
	for (uint64_t i = 0; i < n; i++)
		h[refinable(f2u(q[i]))]++;
	h[0] = 0;
	/* ln of the density of |x| in binade E: count / width, width 2^(E-127). */
	double lp[256];
	for (int E = 1; E <= 254; E++)
		lp[E] = h[E] ? log((double)h[E]) - (double)(E - 127) * M_LN2 : 0.0;
	for (int E = 1; E <= 254; E++) {
		/* centres: 1.5 * 2^(E-127); to the next one 1.5 * 2^(E-127), to the
		 * previous one 0.75 * 2^(E-127) -- slopes in units of 2^(E-127). */
		int up = h[E] && E < 254 && h[E + 1], dn = h[E] && E > 1 && h[E - 1];
		double a_up = up ? (lp[E + 1] - lp[E]) / 1.5 : 0.0;
		double a_dn = dn ? (lp[E] - lp[E - 1]) / 0.75 : 0.0;
		s->hi[E] = ldexp(up ? a_up : a_dn, -(int)m);
		s->lo[E] = ldexp(dn ? a_dn : a_up, -(int)m);
	}
}

/*
 * The shift of one value in ulps: to the centre of its bin, then rho times
 * the slope times the bin's width squared (w^2/12 dlnp/dx is where a locally
 * linear density puts the conditional mean). A value with a zero mantissa
 * field sits low in its bin [q - u/4, q + u/2) (the binade below has half
 * the ulp): centre + u/8, width 3u/4; the others sit at the centre of
 * [q - u/2, q + u/2).
 */
static inline double shift_of(const slopes *s, uint32_t u, unsigned E, unsigned m, double rho)
{
	int upper = m == 0 || (u & 0x400000u); /* mantissa >= 0.5: above the centre */
	double a = upper ? s->hi[E] : s->lo[E];
	return (u & 0x7fffffu) ? rho * a : 0.125 + rho * (9.0 / 16.0) * a;
}

/* The refined value of q (finite nonzero, exponent E) for a total offset of
 * t ulps, clipped to the inside of q's rounding bin, (-u/2, u/2), or
 * (-u/4, u/2) when the mantissa is zero (the binade below has half the
 * ulp), with a margin of two float32 ulps (s->margin, in ulps of q) so the
 * refined value still rounds to q. */
static inline float refine_one(const slopes *s, float q, uint32_t u, unsigned E, double t)
{
	double hi = 0.5 - s->margin, lo = (u & 0x7fffffu) ? -hi : -(0.25 - s->margin);
	t = t < lo ? lo : t > hi ? hi : t;
	double a = fabs((double)q) + t * s->ulp[E];
	return (float)((u >> 31) ? -a : a);
}

static double sq(double d)
{
	return d * d;
}

void sfp__refine_apply(float *dst, uint64_t n, uint64_t groups, unsigned m, unsigned flags,
		       const uint8_t *side)
{
	slopes sl, *s = &sl; /* 6 KiB */
	double rho = 0.0;
	const uint8_t *bias = side;
	if (flags & SFP_FLAG_SHIFT) {
		rho = side[0] / RHO_SCALE;
		bias = side + 1;
	}
	slopes_build(s, dst, n, m, rho > 0.0);
	if (!(flags & SFP_FLAG_BIAS))
		groups = 0;
	uint64_t glen = groups ? n / groups : n;
	for (uint64_t i = 0; i < n; i++) {
		uint32_t u = f2u(dst[i]);
		unsigned E = refinable(u);
		if (!E)
			continue;
		double t = 0.0;
		if (rho > 0.0)
			t += shift_of(s, u, E, m, rho);
		if (groups)
			t += (int8_t)bias[i / glen] / BIAS_SCALE;
		dst[i] = refine_one(s, dst[i], u, E, t);
	}
}

/* Squared errors over [i0, i1) of k settings (step rho[j], bias b[j]) in
 * one pass. */
enum { MAXSET = 5 };
static void sse_multi(const float *x, const float *q, uint64_t i0, uint64_t i1, const slopes *s,
		      unsigned m, const double *rho, const double *b, int k, double *out)
{
	double e[MAXSET] = {0};
	for (uint64_t i = i0; i < i1; i++) {
		uint32_t u = f2u(q[i]);
		unsigned E = refinable(u);
		if (!E)
			continue;
		for (int j = 0; j < k; j++) {
			double t = b[j];
			if (rho[j] > 0.0)
				t += shift_of(s, u, E, m, rho[j]);
			e[j] += sq((double)x[i] - (double)refine_one(s, q[i], u, E, t));
		}
	}
	for (int j = 0; j < k; j++)
		out[j] = e[j];
}

size_t sfp__refine_fit(const float *x, const float *q, uint64_t n, uint64_t groups, unsigned m,
		       int want_shift, int want_bias, uint8_t *side, unsigned *flags)
{
	*flags = 0;
	slopes sl, *s = &sl;
	slopes_build(s, q, n, m, want_shift);
	unsigned rho_code = 0;
	if (want_shift) {
		/* least squares for rho (the shift is affine in it), then the best
		 * of a few codes near it and the smallest */
		double num = 0.0, den = 0.0;
		for (uint64_t i = 0; i < n; i++) {
			uint32_t u = f2u(q[i]);
			unsigned E = refinable(u);
			if (!E)
				continue;
			double c = shift_of(s, u, E, m, 0.0) * s->ulp[E];
			double g = shift_of(s, u, E, m, 1.0) * s->ulp[E] - c;
			double r = (u >> 31) ? (double)q[i] - (double)x[i] : (double)x[i] - (double)q[i];
			num += (r - c) * g;
			den += g * g;
		}
		/* off, then the candidates, all in one pass */
		const double c0 = den > 0.0 ? num / den * RHO_SCALE : 1.0;
		const double cand[MAXSET] = {0.0, c0, c0 * 0.75, c0 * 0.5, 1.0};
		double rho[MAXSET] = {0.0}, zero[MAXSET] = {0.0}, e[MAXSET];
		for (int k = 1; k < MAXSET; k++) {
			double c = floor(cand[k] + 0.5);
			rho[k] = (c < 1.0 ? 1.0 : c > 255.0 ? 255.0 : c) / RHO_SCALE;
		}
		sse_multi(x, q, 0, n, s, m, rho, zero, MAXSET, e);
		double best = e[0];
		for (int k = 1; k < MAXSET; k++)
			if (e[k] < best) {
				best = e[k];
				rho_code = (unsigned)(rho[k] * RHO_SCALE);
			}
	}
	size_t w = 0;
	if (rho_code) {
		side[w++] = (uint8_t)rho_code;
		*flags |= SFP_FLAG_SHIFT;
	}
	if (want_bias && groups && n) {
		const double rho = rho_code / RHO_SCALE;
		uint64_t glen = n / groups;
		int any = 0;
		for (uint64_t g = 0; g < groups; g++) {
			uint64_t i0 = g * glen, i1 = i0 + glen;
			double num = 0.0, den = 0.0;
			for (uint64_t i = i0; i < i1; i++) {
				uint32_t u = f2u(q[i]);
				unsigned E = refinable(u);
				if (!E)
					continue;
				double ulp = s->ulp[E];
				double t = rho > 0.0 ? shift_of(s, u, E, m, rho) : 0.0;
				double r = (u >> 31) ? (double)q[i] - (double)x[i]
						     : (double)x[i] - (double)q[i];
				num += (r - t * ulp) * ulp;
				den += ulp * ulp;
			}
			int8_t b = 0;
			if (den > 0.0) {
				double c = floor(num / den * BIAS_SCALE + 0.5);
				c = c < -128.0 ? -128.0 : c > 127.0 ? 127.0 : c;
				double rr[2] = {rho, rho}, bb[2] = {0.0, c / BIAS_SCALE}, e[2];
				if (c != 0.0) {
					sse_multi(x, q, i0, i1, s, m, rr, bb, 2, e);
					if (e[1] < e[0])
						b = (int8_t)c;
				}
			}
			side[w + g] = (uint8_t)b;
			any |= b != 0;
		}
		if (any) {
			w += (size_t)groups;
			*flags |= SFP_FLAG_BIAS |
				  (want_bias == SFP_BIAS_CHANNEL ? SFP_FLAG_BIAS_CHANNEL : 0);
		}
	}
	return w;
}
