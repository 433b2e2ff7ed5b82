/*
 * codec_internal.h -- what the container's reference code and its SIMD
 * kernels share: the per-tensor quantization plan, the per-element rule
 * (quant_one), bit-stream helpers and the kernel signatures.
 */
#ifndef SFP_CODEC_INTERNAL_H
#define SFP_CODEC_INTERNAL_H

#include <stdint.h>
#include <string.h>

#include "sfp/codec.h"

/* Everything the element rule needs, derived once from sfp_params. */
typedef struct qplan {
	unsigned e, m, k;      /* k = 23 - m dropped mantissa bits */
	unsigned lo, hi;       /* window: biased exponents of codes 1 and max_code */
	unsigned max_code;     /* code of hi: hi - lo + 1 */
	int stochastic;
	uint32_t seed;
	int under_min;         /* underflow policy MIN */
	int saturate;          /* overflow policy SATURATE (FIXED windows) */
	int lossless;          /* e = 8, m = 23: subnormals and -0 are exceptions */
} qplan;

/* Outcome of quant_one. */
enum { Q_OK = 0, Q_EXC = 1, Q_OVERFLOW = 2 };

static inline uint32_t f2u(float f)
{
	uint32_t u;
	memcpy(&u, &f, 4);
	return u;
}

static inline float u2f(uint32_t u)
{
	float f;
	memcpy(&f, &u, 4);
	return f;
}

/* Random bits for stochastic rounding of element i (docs/format.md). */
static inline uint32_t sr_bits(uint32_t seed, uint64_t i)
{
	return sfp_hash32(seed + 0x85ebca6bu * (uint32_t)(i >> 32), (uint32_t)i);
}

/* Is the float32 bit pattern an exception under this plan? */
static inline int is_exception(const qplan *q, uint32_t x)
{
	uint32_t E = (x >> 23) & 0xff;
	if (E == 255)
		return 1;
	return q->lossless && E == 0 && x != 0;
}

/* The 31-bit magnitude rounded to m mantissa bits (may carry into E). */
static inline uint32_t round_mag(const qplan *q, uint32_t a, uint64_t i)
{
	if (q->k == 0)
		return a;
	uint32_t mask = (1u << q->k) - 1;
	if (q->stochastic)
		return (a + (sr_bits(q->seed, i) & mask)) & ~mask;
	return (a + ((1u << (q->k - 1)) - 1) + ((a >> q->k) & 1)) & ~mask;
}

/*
 * The element rule of docs/format.md: code, sign and mantissa field of x.
 * Returns Q_EXC for exceptions (code 0, carried raw) and Q_OVERFLOW when the
 * value cannot be represented under the plan's overflow policy.
 */
static inline int quant_one(const qplan *q, uint32_t x, uint64_t i, unsigned *code,
			    unsigned *sign, uint32_t *mant)
{
	*sign = x >> 31;
	*mant = 0;
	*code = 0;
	if (is_exception(q, x))
		return Q_EXC;
	uint32_t a = round_mag(q, x & 0x7fffffffu, i);
	if (a == 0)
		return Q_OK;
	unsigned E = a >> 23;
	if (E > q->hi) {
		if (!q->saturate)
			return Q_OVERFLOW;
		*code = q->max_code;
		*mant = q->m ? (1u << q->m) - 1 : 0;
		return Q_OK;
	}
	if (E < q->lo) {
		if (q->under_min)
			*code = 1;
		return Q_OK;
	}
	*code = E - q->lo + 1;
	*mant = (a >> q->k) & ((1u << q->m) - 1);
	return Q_OK;
}

/* The float a (code, sign, mantissa) decodes to; code 0 is +0. */
static inline uint32_t assemble(unsigned lo, unsigned k, unsigned code, unsigned sign,
				uint32_t mant)
{
	if (code == 0)
		return 0;
	return (uint32_t)sign << 31 | (uint32_t)(code + lo - 1) << 23 | mant << k;
}

/* ---- LSB-first bit writer / reader over a bounded buffer ------------------ */
typedef struct bitw {
	uint8_t *p, *end;
	uint64_t acc;
	unsigned nb;  /* pending bits in acc, < 8 after each put */
	int overflow; /* set when a byte did not fit */
} bitw;

static inline void bitw_init(bitw *w, uint8_t *p, size_t cap)
{
	w->p = p;
	w->end = p + cap;
	w->acc = 0;
	w->nb = 0;
	w->overflow = 0;
}

/* Append the low `n` (<= 32) bits of v. */
static inline void bitw_put(bitw *w, uint32_t v, unsigned n)
{
	w->acc |= (uint64_t)v << w->nb;
	w->nb += n;
	while (w->nb >= 8) {
		if (w->p < w->end)
			*w->p++ = (uint8_t)w->acc;
		else
			w->overflow = 1;
		w->acc >>= 8;
		w->nb -= 8;
	}
}

/* Write the last partial byte (zero-padded). */
static inline void bitw_flush(bitw *w)
{
	if (w->nb) {
		if (w->p < w->end)
			*w->p++ = (uint8_t)w->acc;
		else
			w->overflow = 1;
		w->acc = 0;
		w->nb = 0;
	}
}

/* Read `n` (<= 32) bits at bit position pos of buf[0..len); the caller has
 * checked pos + n <= 8 * len. */
static inline uint32_t bits_get(const uint8_t *buf, size_t len, uint64_t pos, unsigned n)
{
	if (n == 0)
		return 0;
	size_t byte = (size_t)(pos >> 3);
	uint64_t v = 0;
	if (byte + 8 <= len) {
		v = sfp_load_le64(buf + byte);
	} else {
		for (size_t i = 0; byte + i < len && i < 8; i++)
			v |= (uint64_t)buf[byte + i] << (8 * i);
	}
	return (uint32_t)((v >> (pos & 7)) & ((n == 32) ? 0xffffffffull : ((1ull << n) - 1)));
}

/* ---- the scalar passes, shared by the reference and the SIMD tails --------- */
typedef struct qcounts {
	uint64_t nnz, nneg, nexc;
} qcounts;

/* Largest rounded exponent of x[i0..i1) into *mx (see max_exp_fn). */
static inline int max_exp_range(const qplan *q, const float *x, uint64_t i0, uint64_t i1,
				unsigned *mx, uint64_t *bad)
{
	for (uint64_t i = i0; i < i1; i++) {
		uint32_t u = f2u(x[i]);
		if (is_exception(q, u))
			continue;
		unsigned E = round_mag(q, u & 0x7fffffffu, i) >> 23;
		if (E == 255) {
			if (!q->saturate) {
				*bad = i;
				return Q_OVERFLOW;
			}
			E = 254;
		}
		*mx = E > *mx ? E : *mx;
	}
	return Q_OK;
}

/* The element rule over x[i0..i1) (see quant_pass_fn). */
static inline int quant_range(const qplan *q, const float *x, uint64_t i0, uint64_t i1,
			      uint8_t *codes, bitw *mw, bitw *sw, qcounts *c, uint64_t *bad)
{
	for (uint64_t i = i0; i < i1; i++) {
		unsigned code, sign;
		uint32_t mant;
		int r = quant_one(q, f2u(x[i]), i, &code, &sign, &mant);
		if (r == Q_OVERFLOW) {
			*bad = i;
			return Q_OVERFLOW;
		}
		codes[i] = (uint8_t)code;
		if (r == Q_EXC) {
			c->nexc++;
			continue;
		}
		if (code) {
			bitw_put(mw, mant, q->m);
			bitw_put(sw, sign, 1);
			c->nnz++;
			c->nneg += sign;
		}
	}
	return Q_OK;
}

/* Decode elements i0..i1 from the streams, starting at bit positions *mpos
 * (mantissas) and *spos (signs), which it advances (see assemble_fn). */
static inline void assemble_range(float *dst, const uint8_t *codes, uint64_t i0, uint64_t i1,
				  unsigned lo, unsigned m, const uint8_t *mant, size_t mant_len,
				  const uint8_t *sign, size_t sign_len, int sign_mode,
				  uint64_t *mpos, uint64_t *spos)
{
	for (uint64_t i = i0; i < i1; i++) {
		unsigned code = codes[i], s = 0;
		uint32_t f = 0;
		if (code) {
			f = bits_get(mant, mant_len, *mpos, m);
			*mpos += m;
			if (sign_mode == 0)
				s = bits_get(sign, sign_len, (*spos)++, 1);
			else
				s = sign_mode == 2;
		}
		dst[i] = u2f(assemble(lo, 23 - m, code, s, f));
	}
}

/* ---- kernels ---------------------------------------------------------------- */
/* Largest rounded exponent of the non-exception values (0 if all zero).
 * Returns Q_OVERFLOW with *bad = index when a value rounds to E = 255 and the
 * plan does not saturate. */
typedef int (*max_exp_fn)(const qplan *q, const float *x, uint64_t n, unsigned *emax,
			  uint64_t *bad);

/* Quantize pass: codes[i]; mantissas of nonzero codes appended to *mw, signs
 * to *sw; exceptions get code 0 and are counted (their indices are found
 * again by the caller). Returns Q_OK or Q_OVERFLOW with *bad = index. */
typedef int (*quant_pass_fn)(const qplan *q, const float *x, uint64_t n, uint8_t *codes,
			     bitw *mw, bitw *sw, qcounts *c, uint64_t *bad);

/* Assemble pass: dst[i] from codes, mantissa stream and sign stream (sign_mode
 * 0: stream, 1: all positive, 2: all negative). The caller has validated
 * that the streams hold exactly nnz fields. */
typedef void (*assemble_fn)(float *dst, const uint8_t *codes, uint64_t n, unsigned lo,
			    unsigned m, const uint8_t *mant, size_t mant_len, const uint8_t *sign,
			    size_t sign_len, int sign_mode);

int sfp__max_exp_ref(const qplan *q, const float *x, uint64_t n, unsigned *emax, uint64_t *bad);
int sfp__quant_pass_ref(const qplan *q, const float *x, uint64_t n, uint8_t *codes, bitw *mw,
			bitw *sw, qcounts *c, uint64_t *bad);
void sfp__assemble_ref(float *dst, const uint8_t *codes, uint64_t n, unsigned lo, unsigned m,
		       const uint8_t *mant, size_t mant_len, const uint8_t *sign, size_t sign_len,
		       int sign_mode);

int sfp__max_exp_avx512(const qplan *q, const float *x, uint64_t n, unsigned *emax,
			uint64_t *bad);
int sfp__quant_pass_avx512(const qplan *q, const float *x, uint64_t n, uint8_t *codes, bitw *mw,
			   bitw *sw, qcounts *c, uint64_t *bad);
void sfp__assemble_avx512(float *dst, const uint8_t *codes, uint64_t n, unsigned lo, unsigned m,
			  const uint8_t *mant, size_t mant_len, const uint8_t *sign,
			  size_t sign_len, int sign_mode);

/* Raw e-bit code packing (all n codes). */
typedef void (*pack_codes_fn)(uint8_t *dst, const uint8_t *codes, uint64_t n, unsigned e);
/* Unpack; returns the number of nonzero codes. */
typedef uint64_t (*unpack_codes_fn)(uint8_t *codes, const uint8_t *src, uint64_t n, unsigned e);
void sfp__pack_codes(uint8_t *dst, const uint8_t *codes, uint64_t n, unsigned e);
uint64_t sfp__unpack_codes(uint8_t *codes, const uint8_t *src, uint64_t n, unsigned e);
void sfp__pack_codes_avx2(uint8_t *dst, const uint8_t *codes, uint64_t n, unsigned e);
uint64_t sfp__unpack_codes_avx2(uint8_t *codes, const uint8_t *src, uint64_t n, unsigned e);
uint64_t sfp__count_nonzero_avx2(const uint8_t *codes, uint64_t n);
void sfp__pack_codes_avx512(uint8_t *dst, const uint8_t *codes, uint64_t n, unsigned e);
uint64_t sfp__unpack_codes_avx512(uint8_t *codes, const uint8_t *src, uint64_t n, unsigned e);

/* ---- Gecko's rANS (gecko.c, docs/gecko.md) ---------------------------------- */
#define ANS_SCALE 14                /* frequencies sum to 2^14 */
#define ANS_TOTAL (1u << ANS_SCALE)
#define ANS_L (1u << 16)            /* states live in [2^16, 2^32) */
#define ANS_LANES 32                /* states, each coding one segment */

/* Segment layout of n codes: steps = ceil(n / ANS_LANES); lanes 0..full-1
 * code `steps` codes each, lane `full` (if < ANS_LANES) codes rem < steps. */
typedef struct ans_lanes {
	uint64_t steps, rem;
	unsigned full;
} ans_lanes;

/* Lanes with a code at step t (bit l = lane l). */
uint32_t sfp__ans_active(const ans_lanes *ly, uint64_t t);

/* Encode the step-major codes T[t * ANS_LANES + l] backwards into the
 * states st[] and 16-bit words written downwards from *wpp (room for one
 * word per code). fc[ctx * 256 + sym] = freq | cum << 15; inv[] = 1 / freq
 * (the vector kernel's division). Reference and AVX-512: same words, same
 * states. */
void sfp__ans_enc_ref(const uint8_t *T, const ans_lanes *ly, int nctx, const uint32_t *fc,
		      const double *inv, uint32_t *st, uint16_t **wpp);
void sfp__ans_enc_avx512(const uint8_t *T, const ans_lanes *ly, int nctx, const uint32_t *fc,
			 const double *inv, uint32_t *st, uint16_t **wpp);
/* Decode into T from the states and the words at *wpp .. wend. pk[ctx *
 * ANS_TOTAL + slot] = freq | (slot - cum) << 15, lut[] the symbols (4 bytes
 * of slack after it). SFP_OK or SFP_ECORRUPT (words run out; the reference
 * also when a needed context has nsym 0 -- the AVX-512 kernel is only
 * called when every context has symbols). */
int sfp__ans_dec_ref(uint8_t *T, const ans_lanes *ly, int nctx, const uint32_t *pk,
		     const uint8_t *lut, const unsigned *nsym, uint32_t *st, const uint8_t **wpp,
		     const uint8_t *wend);
int sfp__ans_dec_avx512(uint8_t *T, const ans_lanes *ly, int nctx, const uint32_t *pk,
			const uint8_t *lut, uint32_t *st, const uint8_t **wpp, const uint8_t *wend);

/* Encoder helpers: the OR of all codes; DELTA's bits (groups of 8,
 * previous-code reference) over the first n & ~63 codes. */
/* Codes to step order T[t * ANS_LANES + l] (0 where a lane has no code t)
 * and back; T spans whole blocks of 16 steps (ceil(steps / 16) * 16 *
 * ANS_LANES bytes). */
void sfp__to_steps_avx512(uint8_t *T, const uint8_t *c, const ans_lanes *ly);
void sfp__from_steps_avx512(uint8_t *c, const uint8_t *T, const ans_lanes *ly);
/* h[x][s] for s < 32 (the rest untouched): codes with the previous code
 * nonzero (x = 1) or not; needs every code < 32, `any` their OR. */
void sfp__gecko_hist32_avx512(const uint8_t *c, uint64_t n, unsigned any, uint64_t (*h)[256]);
unsigned sfp__gecko_or_avx512(const uint8_t *c, uint64_t n);
uint64_t sfp__delta_bits_prev8_avx512(const uint8_t *c, uint64_t n);

/* AVX-512 fake quantization for nearest rounding (quantize_avx512.c). */
uint64_t sfp__quantize_nearest_avx512(const qplan *q, float *dst, const float *src, uint64_t n);
/* sfp_quantize_diff_dot's lanes: acc[j] += g_i (Q(x_i, qa) - Q(x_i, qb)) for
 * i % 16 == j (qa NULL: x itself). Returns n, or the start of the
 * 1024-value block holding the first value past a window. */
#define SFP_DOT_LANES 16
uint64_t sfp__diff_dot_ref(const qplan *qa, const qplan *qb, const float *g, const float *x,
			   uint64_t n, double *acc);
uint64_t sfp__diff_dot_avx512(const qplan *qa, const qplan *qb, const float *g, const float *x,
			      uint64_t n, double *acc);

/* Decoder-side refinement (refine.c, docs/refine.md). fit: from the values
 * x and their container values q, the side bytes (at most 1 + groups, into
 * side) and the flags (SFP_FLAG_SHIFT / _BIAS / _BIAS_CHANNEL) of the tools
 * that lower the squared error; returns the side bytes written (0: none
 * pays). want_bias is an enum sfp_bias; groups (>= 1) divides n. apply:
 * refine decoded values in place as the flags and side bytes say. */
size_t sfp__refine_fit(const float *x, const float *q, uint64_t n, uint64_t groups, unsigned m,
		       int want_shift, int want_bias, uint8_t *side, unsigned *flags);
void sfp__refine_apply(float *dst, uint64_t n, uint64_t groups, unsigned m, unsigned flags,
		       const uint8_t *side);

#endif
