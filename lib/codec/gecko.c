/*
 * gecko.c -- Gecko, lossless coding of exponent codes (docs/gecko.md).
 *
 * Three variants, chosen per tensor by AUTO:
 *  - DELTA, the paper's scheme: groups of G codes, each with a reference and
 *    a bit width, then every code as a delta of that width. A group of equal
 *    codes costs only its header.
 *  - ANS0: a static order-0 range-ANS coder. Exponents of trained networks
 *    sit in a narrow, lop-sided band; ANS codes each at its information
 *    content, which grouped deltas cannot (a band of 6 exponents costs 3 bits
 *    per delta whatever its entropy).
 *  - ANS1: the same with two contexts, "previous code was zero" or not,
 *    which captures runs of zeros after ReLU and in image backgrounds.
 *
 * rANS here: 32-bit states in [2^16, 2^32), 16-bit renormalization, four
 * interleaved states (element i uses state i & 3), frequencies quantized to
 * a total of 2^SCALE. The encoder runs backwards and writes 16-bit words
 * from the end of a scratch area; the stream stores them in decode order.
 */
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "codec/codec_internal.h"

#define SCALE 14
#define TOTAL (1u << SCALE)
#define RANS_L (1u << 16)
#define LANES 4
#define MAX_CTX 2

void sfp_gecko_opts_init(sfp_gecko_opts *o)
{
	/* docs/gecko.md: AUTO (in practice ANS0 or ANS1) is within 0.1% of the
	 * entropy or below it; among the paper's DELTA settings groups of 8 with
	 * the previous code as reference do best, so AUTO sizes DELTA that way. */
	o->variant = SFP_GECKO_AUTO;
	o->group = 8;
	o->reference = SFP_GECKO_REF_PREV;
}

/* Streams never exceed: variant + DELTA/ANS headers + the raw codes with
 * 4-bit group headers per 8 codes and a reference per group. */
size_t sfp_gecko_bound(uint64_t n, unsigned e)
{
	uint64_t groups = (n + 7) / 8;
	uint64_t delta = 4 + (groups * (4 + 8) + n * 9 + 7) / 8;
	uint64_t ans = 1 + 1 + MAX_CTX * (2 + 256 * 3) + LANES * 4 + 2 * n * 2 + 16;
	(void)e;
	return (size_t)(delta > ans ? delta : ans);
}

size_t sfp_gecko_work_bytes(uint64_t n)
{
	/* ANS encoder: the word stream (at most 2 words per code + flush). */
	/* ANS decoder: per context a symbol byte and a packed u32 entry per slot
	 * (+ 4 bytes to align the u32 table). */
	return (size_t)(4 * n + 64) + MAX_CTX * TOTAL * 5 + 4;
}

int sfp_gecko_variant_of(const void *src, size_t len)
{
	const uint8_t *s = src;
	if (len < 1 || s[0] < SFP_GECKO_DELTA || s[0] > SFP_GECKO_ANS1)
		return SFP_ECORRUPT;
	return s[0];
}

double sfp_entropy_u8(const uint8_t *sym, uint64_t n)
{
	uint64_t h[256] = {0};
	double bits = 0;
	if (n == 0)
		return 0.0;
	for (uint64_t i = 0; i < n; i++)
		h[sym[i]]++;
	for (int s = 0; s < 256; s++)
		if (h[s])
			bits -= (double)h[s] * log2((double)h[s] / (double)n);
	return bits / (double)n;
}

static unsigned bit_width(unsigned v)
{
	return v ? 32u - (unsigned)__builtin_clz(v) : 0;
}

/* Branch-free: 2d for d >= 0, -2d - 1 below (|d| < 2^8, no overflow). */
static unsigned zigzag(int d) { return (unsigned)(d * 2) ^ (unsigned)(d >> 31); }
static int unzigzag(unsigned z) { return (z & 1) ? -(int)((z + 1) >> 1) : (int)(z >> 1); }

/* ---- DELTA ------------------------------------------------------------------------ */
/* Stream: variant, G, ref kind, fixed ref (REF_FIXED only), then LSB-first
 * bits: per group a 4-bit width w, the reference (REF_MIN: e bits), and each
 * code's delta in w bits (REF_PREV: zigzag of code - previous code). */

static int delta_header_bytes(int ref) { return ref == SFP_GECKO_REF_FIXED ? 4 : 3; }

/* Bits of the DELTA body (without the byte header). The loops are split by
 * reference kind and read the previous code from memory, so each group's
 * reduction is data-parallel (the compiler vectorizes it). */
static uint64_t delta_bits(const uint8_t *c, uint64_t n, unsigned e, unsigned G, int ref,
			   unsigned fixed)
{
	uint64_t bits = 0;
	for (uint64_t g = 0; g < n; g += G) {
		uint64_t end = g + G < n ? g + G : n;
		unsigned w;
		if (ref == SFP_GECKO_REF_PREV) {
			unsigned zmax = zigzag((int)c[g] - (g ? (int)c[g - 1] : 0));
			for (uint64_t i = g + 1; i < end; i++) {
				unsigned z = zigzag((int)c[i] - (int)c[i - 1]);
				zmax = z > zmax ? z : zmax;
			}
			w = bit_width(zmax);
		} else {
			unsigned lo = 255, hi = 0;
			for (uint64_t i = g; i < end; i++) {
				lo = c[i] < lo ? c[i] : lo;
				hi = c[i] > hi ? c[i] : hi;
			}
			w = bit_width(hi - (ref == SFP_GECKO_REF_MIN ? lo : fixed));
		}
		bits += 4 + (ref == SFP_GECKO_REF_MIN ? e : 0) + (end - g) * w;
	}
	return bits;
}

static unsigned min_code(const uint8_t *c, uint64_t n)
{
	unsigned m = 255;
	for (uint64_t i = 0; i < n; i++)
		m = c[i] < m ? c[i] : m;
	return n ? m : 0;
}

static int delta_encode(uint8_t *dst, size_t cap, size_t *written, const uint8_t *c, uint64_t n,
			unsigned e, unsigned G, int ref)
{
	unsigned fixed = ref == SFP_GECKO_REF_FIXED ? min_code(c, n) : 0;
	size_t hb = (size_t)delta_header_bytes(ref);
	if (cap < hb)
		return SFP_ENOSPC;
	dst[0] = SFP_GECKO_DELTA;
	dst[1] = (uint8_t)G;
	dst[2] = (uint8_t)ref;
	if (ref == SFP_GECKO_REF_FIXED)
		dst[3] = (uint8_t)fixed;
	bitw w;
	bitw_init(&w, dst + hb, cap - hb);
	unsigned prev = 0;
	for (uint64_t g = 0; g < n; g += G) {
		uint64_t end = g + G < n ? g + G : n;
		unsigned lo = 255, hi = 0, zmax = 0, p = prev;
		for (uint64_t i = g; i < end; i++) {
			lo = c[i] < lo ? c[i] : lo;
			hi = c[i] > hi ? c[i] : hi;
			unsigned z = zigzag((int)c[i] - (int)p);
			zmax = z > zmax ? z : zmax;
			p = c[i];
		}
		unsigned base = ref == SFP_GECKO_REF_MIN ? lo : fixed;
		unsigned wd = ref == SFP_GECKO_REF_PREV ? bit_width(zmax) : bit_width(hi - base);
		bitw_put(&w, wd, 4);
		if (ref == SFP_GECKO_REF_MIN)
			bitw_put(&w, lo, e);
		for (uint64_t i = g; i < end; i++) {
			unsigned v = ref == SFP_GECKO_REF_PREV ? zigzag((int)c[i] - (int)prev)
							       : c[i] - base;
			bitw_put(&w, v, wd);
			prev = c[i];
		}
		if (w.overflow)
			return SFP_ENOSPC;
	}
	bitw_flush(&w);
	if (w.overflow)
		return SFP_ENOSPC;
	*written = hb + (size_t)(w.p - (dst + hb));
	return SFP_OK;
}

static int delta_decode(uint8_t *c, uint64_t n, unsigned e, const uint8_t *s, size_t len,
			sfp_error *err)
{
	if (len < 3)
		return sfp_error_set(err, SFP_ECORRUPT, "gecko delta header truncated");
	unsigned G = s[1];
	int ref = s[2];
	if (G != 8 && G != 16 && G != 32 && G != 64)
		return sfp_error_set(err, SFP_ECORRUPT, "gecko group size %u invalid", G);
	if (ref < SFP_GECKO_REF_MIN || ref > SFP_GECKO_REF_PREV)
		return sfp_error_set(err, SFP_ECORRUPT, "gecko reference kind %d invalid", ref);
	size_t hb = (size_t)delta_header_bytes(ref);
	if (len < hb)
		return sfp_error_set(err, SFP_ECORRUPT, "gecko delta header truncated");
	unsigned fixed = ref == SFP_GECKO_REF_FIXED ? s[3] : 0;
	if (fixed >> e)
		return sfp_error_set(err, SFP_ECORRUPT, "gecko fixed reference %u exceeds e = %u",
				     fixed, e);
	const uint8_t *b = s + hb;
	size_t blen = len - hb;
	uint64_t pos = 0, total = 8 * (uint64_t)blen;
	unsigned prev = 0, limit = (1u << e) - 1;
	for (uint64_t g = 0; g < n; g += G) {
		uint64_t end = g + G < n ? g + G : n;
		if (pos + 4 > total)
			return sfp_error_set(err, SFP_ECORRUPT, "gecko stream ends early");
		unsigned wd = bits_get(b, blen, pos, 4);
		pos += 4;
		unsigned base = fixed;
		if (wd > (ref == SFP_GECKO_REF_PREV ? 9u : e))
			return sfp_error_set(err, SFP_ECORRUPT, "gecko group width %u invalid", wd);
		if (ref == SFP_GECKO_REF_MIN) {
			if (pos + e > total)
				return sfp_error_set(err, SFP_ECORRUPT, "gecko stream ends early");
			base = bits_get(b, blen, pos, e);
			pos += e;
		}
		if (pos + (end - g) * wd > total)
			return sfp_error_set(err, SFP_ECORRUPT, "gecko stream ends early");
		for (uint64_t i = g; i < end; i++) {
			unsigned v = bits_get(b, blen, pos, wd);
			int code = ref == SFP_GECKO_REF_PREV ? (int)prev + unzigzag(v)
							     : (int)(base + v);
			pos += wd;
			if (code < 0 || code > (int)limit)
				return sfp_error_set(err, SFP_ECORRUPT,
						     "gecko code %d at %llu exceeds e = %u", code,
						     (unsigned long long)i, e);
			c[i] = (uint8_t)code;
			prev = (unsigned)code;
		}
	}
	if ((pos + 7) / 8 != blen)
		return sfp_error_set(err, SFP_ECORRUPT, "gecko stream has %zu trailing bytes",
				     blen - (size_t)((pos + 7) / 8));
	if ((pos & 7) && (b[blen - 1] >> (pos & 7)))
		return sfp_error_set(err, SFP_ECORRUPT, "gecko stream has nonzero padding");
	return SFP_OK;
}

/* ---- rANS --------------------------------------------------------------------------- */

typedef struct ans_table {
	uint16_t freq[256], cum[256];
	unsigned nsym;
} ans_table;

/* ANS1's context: was the previous code zero? (The previous code of the
 * same interleaved state, i - LANES, would let the states decode
 * independently, but it costs 18% more bits on images: measured in
 * docs/gecko.md.) */
static unsigned ctx_of(int nctx, const uint8_t *c, uint64_t i)
{
	return nctx == 2 && i > 0 && c[i - 1] != 0;
}

/* Quantize counts to frequencies summing to TOTAL, every used symbol >= 1. */
static void normalize(ans_table *t, const uint64_t *cnt, uint64_t n)
{
	memset(t, 0, sizeof *t);
	if (n == 0)
		return;
	int64_t sum = 0;
	int best = -1;
	for (int s = 0; s < 256; s++) {
		if (!cnt[s])
			continue;
		uint64_t f = (cnt[s] * TOTAL + n / 2) / n;
		if (f == 0)
			f = 1;
		t->freq[s] = (uint16_t)(f > TOTAL ? TOTAL : f);
		sum += t->freq[s];
		t->nsym++;
		if (best < 0 || cnt[s] > cnt[best])
			best = s;
	}
	/* Fix the total: take from (or give to) the largest symbols. */
	while (sum != TOTAL) {
		int64_t diff = (int64_t)TOTAL - sum;
		int big = -1;
		for (int s = 0; s < 256; s++)
			if (t->freq[s] > 1 && (big < 0 || t->freq[s] > t->freq[big]))
				big = s;
		if (diff > 0 || big < 0)
			big = best;
		int64_t room = (int64_t)t->freq[big] - 1;
		int64_t step = diff > 0 ? diff : (-diff < room ? -diff : room);
		if (diff > 0)
			t->freq[big] = (uint16_t)(t->freq[big] + step);
		else
			t->freq[big] = (uint16_t)(t->freq[big] - step);
		sum += diff > 0 ? step : -step;
	}
	unsigned c = 0;
	for (int s = 0; s < 256; s++) {
		t->cum[s] = (uint16_t)c;
		c += t->freq[s];
	}
}

/* Estimated bytes of an ANS stream from histograms. */
static double ans_estimate(const uint64_t (*cnt)[256], int nctx, uint64_t n)
{
	double bits = 8.0 * (2 + LANES * 4);
	for (int x = 0; x < nctx; x++) {
		uint64_t tot = 0;
		for (int s = 0; s < 256; s++)
			tot += cnt[x][s];
		bits += 16;
		for (int s = 0; s < 256; s++)
			if (cnt[x][s]) {
				bits += 24;
				bits -= (double)cnt[x][s] * log2((double)cnt[x][s] / (double)tot);
			}
	}
	(void)n;
	return bits / 8.0 + 4;
}

static void put_u16(uint8_t *p, unsigned v) { p[0] = (uint8_t)v; p[1] = (uint8_t)(v >> 8); }
static unsigned get_u16(const uint8_t *p) { return (unsigned)p[0] | (unsigned)p[1] << 8; }
static uint64_t get_u64(const uint8_t *p)
{
	uint64_t v = 0;
	for (int b = 7; b >= 0; b--)
		v = v << 8 | p[b];
	return v;
}

/* One rANS encoder step: push symbol s of context x onto state v. */
static inline uint32_t ans_put(uint32_t v, unsigned s, unsigned x, const ans_table *tab,
			       const uint64_t (*rcp)[256], uint16_t **wpp)
{
	uint32_t f = tab[x].freq[s];
	/* Branch-free renormalization: the word is always stored, and kept
	 * only when the state is too large. */
	uint32_t r = v >= ((uint64_t)f << (32 - SCALE));
	uint16_t *wp = *wpp;
	wp[-1] = (uint16_t)v;
	*wpp = wp - r;
	v >>= 16 * r;
	uint32_t q = f > 1 ? (uint32_t)(((unsigned __int128)v * rcp[x][s]) >> 64) : v;
	return (q << SCALE) + (v - q * f) + tab[x].cum[s];
}

static int ans_encode(uint8_t *dst, size_t cap, size_t *written, const uint8_t *c, uint64_t n,
		      int nctx, const uint64_t (*cnt)[256], void *work, size_t work_bytes)
{
	ans_table tab[MAX_CTX];
	size_t pos = 0;
	for (int x = 0; x < nctx; x++) {
		uint64_t tot = 0;
		for (int s = 0; s < 256; s++)
			tot += cnt[x][s];
		normalize(&tab[x], cnt[x], tot);
	}
	/* Header: variant, then per context: nsym (u16), (sym, freq u16)*. */
	if (cap < 1)
		return SFP_ENOSPC;
	dst[pos++] = (uint8_t)(nctx == 1 ? SFP_GECKO_ANS0 : SFP_GECKO_ANS1);
	for (int x = 0; x < nctx; x++) {
		if (cap - pos < 2 + 3 * (size_t)tab[x].nsym)
			return SFP_ENOSPC;
		put_u16(dst + pos, tab[x].nsym);
		pos += 2;
		for (int s = 0; s < 256; s++)
			if (tab[x].freq[s]) {
				dst[pos++] = (uint8_t)s;
				put_u16(dst + pos, tab[x].freq[s]);
				pos += 2;
			}
	}
	/* Encode backwards into the work area, words growing downwards. */
	size_t maxw = (size_t)(2 * n + 8);
	if (work_bytes < maxw * 2)
		return SFP_EINVAL;
	uint16_t *wend = (uint16_t *)work + maxw, *wp = wend;
	/* x / f as a multiply: with r = ceil(2^64 / f), floor(x * r / 2^64) is
	 * exactly floor(x / f) for x < 2^32 (the rounding error of r adds less
	 * than 2^-32, and x / f is at least 1/f < 1 - 2^-32 below the next
	 * integer). f = 1 is kept apart: its r does not fit 64 bits. */
	uint64_t rcp[MAX_CTX][256];
	for (int x = 0; x < nctx; x++)
		for (int s = 0; s < 256; s++) {
			uint32_t f = tab[x].freq[s];
			rcp[x][s] = f > 1 ? UINT64_MAX / f + 1 : 0;
		}
	uint32_t st[LANES];
	for (int l = 0; l < LANES; l++)
		st[l] = RANS_L;
	/* Backwards: first the last n mod LANES codes, then LANES at a time
	 * with the states in registers (same order, same bytes). */
	uint64_t i = n;
	while (i & (LANES - 1)) {
		i--;
		st[i & (LANES - 1)] = ans_put(st[i & (LANES - 1)], c[i], ctx_of(nctx, c, i), tab,
					      rcp, &wp);
	}
	uint32_t s0 = st[0], s1 = st[1], s2 = st[2], s3 = st[3];
	unsigned cm = nctx == 2;
	while (i) {
		i -= LANES;
		unsigned c0 = c[i], c1 = c[i + 1], c2 = c[i + 2], c3 = c[i + 3];
		unsigned x0 = cm & (i > 0 && c[i - 1] != 0);
		s3 = ans_put(s3, c3, cm & (c2 != 0), tab, rcp, &wp);
		s2 = ans_put(s2, c2, cm & (c1 != 0), tab, rcp, &wp);
		s1 = ans_put(s1, c1, cm & (c0 != 0), tab, rcp, &wp);
		s0 = ans_put(s0, c0, x0, tab, rcp, &wp);
	}
	st[0] = s0;
	st[1] = s1;
	st[2] = s2;
	st[3] = s3;
	size_t nw = (size_t)(wend - wp);
	if (cap - pos < LANES * 4 + nw * 2)
		return SFP_ENOSPC;
	for (int l = 0; l < LANES; l++) {
		for (int b = 0; b < 4; b++)
			dst[pos + b] = (uint8_t)(st[l] >> (8 * b));
		pos += 4;
	}
	for (size_t j = 0; j < nw; j++) {
		put_u16(dst + pos, wp[j]);
		pos += 2;
	}
	*written = pos;
	return SFP_OK;
}

/* Decoder step of one state (order 0): its symbol into *out, the state
 * before renormalization returned. */
static inline __attribute__((always_inline)) uint32_t
dec_step(uint32_t s, const uint32_t *pk, const uint8_t *lut, uint8_t *out)
{
	uint32_t slot = s & (TOTAL - 1), p = pk[slot];
	*out = lut[slot];
	return (p & 0x7fffu) * (s >> SCALE) + (p >> 15);
}

/* The same with two contexts: both entries are looked up from the slot
 * alone and the previous symbol only selects one (a conditional move), so
 * the states do not wait on each other's table loads. */
static inline __attribute__((always_inline)) uint32_t
dec_step2(uint32_t s, const uint32_t *pk, const uint8_t *lut, unsigned *prev, uint8_t *out)
{
	uint32_t slot = s & (TOTAL - 1);
	uint32_t p0 = pk[slot], p1 = pk[TOTAL + slot];
	unsigned y0 = lut[slot], y1 = lut[TOTAL + slot];
	uint32_t p = *prev ? p1 : p0;
	unsigned sym = *prev ? y1 : y0;
	*out = (uint8_t)sym;
	*prev = sym;
	return (p & 0x7fffu) * (s >> SCALE) + (p >> 15);
}

/* Branch-free renormalization from `words`, the next LANES words of the
 * stream read at once: a state that needs a word takes word number *used,
 * so the states do not wait on each other's pointer updates. */
static inline __attribute__((always_inline)) uint32_t renorm(uint32_t v, uint64_t words,
							     unsigned *used)
{
	uint32_t r = v < RANS_L;
	uint32_t w = (uint32_t)(words >> (16 * *used)) & 0xffffu;
	*used += r;
	return r ? (v << 16) | w : v;
}

static int ans_decode(uint8_t *c, uint64_t n, unsigned e, const uint8_t *s, size_t len,
		      int nctx, void *work, size_t work_bytes, sfp_error *err)
{
	ans_table tab[MAX_CTX];
	size_t pos = 1;
	/* Per slot of each context: the symbol (lut) and a packed entry
	 * (frequency in bits 0..14, slot - cum in bits 15..28) so one state
	 * update needs two loads that both depend only on the slot. */
	uintptr_t wa = ((uintptr_t)work + 3) & ~(uintptr_t)3;
	size_t skip = (size_t)(wa - (uintptr_t)work);
	if (!work || work_bytes < skip + (size_t)nctx * TOTAL * 5)
		return sfp_error_set(err, SFP_EINVAL, "gecko work area too small");
	uint32_t *pk = (uint32_t *)wa;
	uint8_t *lut = (uint8_t *)(pk + (size_t)nctx * TOTAL);
	for (int x = 0; x < nctx; x++) {
		memset(&tab[x], 0, sizeof tab[x]);
		if (len - pos < 2)
			return sfp_error_set(err, SFP_ECORRUPT, "gecko table truncated");
		unsigned ns = get_u16(s + pos);
		pos += 2;
		if (ns > 256 || len - pos < 3 * (size_t)ns)
			return sfp_error_set(err, SFP_ECORRUPT, "gecko table truncated or too large");
		unsigned sum = 0;
		int last = -1;
		for (unsigned j = 0; j < ns; j++) {
			int sym = s[pos];
			unsigned f = get_u16(s + pos + 1);
			pos += 3;
			if (f == 0 || f > TOTAL)
				return sfp_error_set(err, SFP_ECORRUPT,
						     "gecko frequency %u invalid", f);
			if (sym <= last || (unsigned)sym >> e)
				return sfp_error_set(err, SFP_ECORRUPT,
						     "gecko table symbol %d invalid", sym);
			last = sym;
			tab[x].freq[sym] = (uint16_t)f;
			tab[x].cum[sym] = (uint16_t)sum;
			sum += f;
			if (sum > TOTAL)
				return sfp_error_set(err, SFP_ECORRUPT,
						     "gecko frequencies exceed the total");
			memset(lut + (size_t)x * TOTAL + tab[x].cum[sym], sym, f);
			for (unsigned k = 0; k < f; k++)
				pk[(size_t)x * TOTAL + tab[x].cum[sym] + k] = f | k << 15;
		}
		if (ns && sum != TOTAL)
			return sfp_error_set(err, SFP_ECORRUPT,
					     "gecko frequencies sum to %u, not %u", sum, TOTAL);
		tab[x].nsym = ns;
	}
	if (len - pos < LANES * 4)
		return sfp_error_set(err, SFP_ECORRUPT, "gecko states truncated");
	uint32_t st[LANES];
	for (int l = 0; l < LANES; l++) {
		st[l] = (uint32_t)s[pos] | (uint32_t)s[pos + 1] << 8 | (uint32_t)s[pos + 2] << 16 |
			(uint32_t)s[pos + 3] << 24;
		pos += 4;
		if (st[l] < RANS_L)
			return sfp_error_set(err, SFP_ECORRUPT, "gecko state out of range");
	}
	if ((len - pos) & 1)
		return sfp_error_set(err, SFP_ECORRUPT, "gecko word stream has odd length");
	const uint8_t *wp = s + pos, *wend = s + len;
	const uint32_t mask = TOTAL - 1;
	uint64_t i = 0;
	int ctx_ok = tab[0].nsym && (nctx == 1 || tab[1].nsym);
	/* Fast loop: all contexts have symbols and LANES words are left, so no
	 * check can fail inside; the four states live in registers. */
	uint32_t s0 = st[0], s1 = st[1], s2 = st[2], s3 = st[3];
	if (nctx == 1) {
		for (; ctx_ok && i + LANES <= n && wend - wp >= 2 * LANES; i += LANES) {
			uint32_t v0 = dec_step(s0, pk, lut, &c[i]), v1 = dec_step(s1, pk, lut, &c[i + 1]);
			uint32_t v2 = dec_step(s2, pk, lut, &c[i + 2]), v3 = dec_step(s3, pk, lut, &c[i + 3]);
			uint64_t words = get_u64(wp);
			unsigned used = 0;
			s0 = renorm(v0, words, &used);
			s1 = renorm(v1, words, &used);
			s2 = renorm(v2, words, &used);
			s3 = renorm(v3, words, &used);
			wp += 2 * used;
		}
	} else {
		unsigned prev = i > 0 ? c[i - 1] : 0;
		for (; ctx_ok && i + LANES <= n && wend - wp >= 2 * LANES; i += LANES) {
			uint32_t v0 = dec_step2(s0, pk, lut, &prev, &c[i]);
			uint32_t v1 = dec_step2(s1, pk, lut, &prev, &c[i + 1]);
			uint32_t v2 = dec_step2(s2, pk, lut, &prev, &c[i + 2]);
			uint32_t v3 = dec_step2(s3, pk, lut, &prev, &c[i + 3]);
			uint64_t words = get_u64(wp);
			unsigned used = 0;
			s0 = renorm(v0, words, &used);
			s1 = renorm(v1, words, &used);
			s2 = renorm(v2, words, &used);
			s3 = renorm(v3, words, &used);
			wp += 2 * used;
		}
	}
	st[0] = s0;
	st[1] = s1;
	st[2] = s2;
	st[3] = s3;
	for (; i < n; i++) {
		unsigned x = ctx_of(nctx, c, i);
		if (!tab[x].nsym)
			return sfp_error_set(err, SFP_ECORRUPT, "gecko context %u has no symbols", x);
		uint32_t *sp = &st[i & (LANES - 1)];
		uint32_t slot = *sp & mask;
		unsigned sym = lut[(size_t)x * TOTAL + slot];
		uint32_t f = tab[x].freq[sym];
		*sp = f * (*sp >> SCALE) + slot - tab[x].cum[sym];
		if (*sp < RANS_L) {
			if (wend - wp < 2)
				return sfp_error_set(err, SFP_ECORRUPT, "gecko stream ends early");
			*sp = (*sp << 16) | get_u16(wp);
			wp += 2;
		}
		c[i] = (uint8_t)sym;
	}
	if (wp != wend)
		return sfp_error_set(err, SFP_ECORRUPT, "gecko stream has %zu unused bytes",
				     (size_t)(wend - wp));
	for (int l = 0; l < LANES; l++)
		if (st[l] != RANS_L)
			return sfp_error_set(err, SFP_ECORRUPT, "gecko final state mismatch");
	return SFP_OK;
}

/* ---- entry points ------------------------------------------------------------------ */

static void histograms(const uint8_t *c, uint64_t n, uint64_t (*h)[256])
{
	/* Four partial tables indexed by (previous code nonzero) * 256 + code,
	 * so that repeated codes do not serialize on one counter. */
	uint64_t part[4][MAX_CTX * 256];
	uint64_t i = 0;
	unsigned p = 0;
	memset(part, 0, sizeof part);
	for (; i + 4 <= n; i += 4) {
		unsigned a = c[i], b = c[i + 1], d = c[i + 2], f = c[i + 3];
		part[0][(p != 0) << 8 | a]++;
		part[1][(a != 0) << 8 | b]++;
		part[2][(b != 0) << 8 | d]++;
		part[3][(d != 0) << 8 | f]++;
		p = f;
	}
	for (; i < n; i++) {
		part[0][(p != 0) << 8 | c[i]]++;
		p = c[i];
	}
	for (int x = 0; x < MAX_CTX; x++)
		for (int s = 0; s < 256; s++)
			h[x][s] = part[0][x * 256 + s] + part[1][x * 256 + s] +
				  part[2][x * 256 + s] + part[3][x * 256 + s];
}

int sfp_gecko_encode(void *dst, size_t cap, size_t *written, const uint8_t *codes, uint64_t n,
		     unsigned e, const sfp_gecko_opts *o, int isa, void *work, size_t work_bytes,
		     sfp_error *err)
{
	uint64_t h2[MAX_CTX][256], h1[1][256];
	int v = o->variant;
	unsigned G = o->group;
	int ref = o->reference;
	(void)isa;
	*written = 0;
	if (e < 1 || e > 8)
		return sfp_error_set(err, SFP_EINVAL, "exponent bits e = %u is not in 1..8", e);
	if (G != 8 && G != 16 && G != 32 && G != 64)
		return sfp_error_set(err, SFP_EINVAL, "gecko group size %u (8, 16, 32 or 64)", G);
	if (ref < SFP_GECKO_REF_MIN || ref > SFP_GECKO_REF_PREV)
		return sfp_error_set(err, SFP_EINVAL, "unknown gecko reference %d", ref);
	/* One OR over all codes (vectorizes); the slow search only on error. */
	unsigned any = 0;
	for (uint64_t i = 0; i < n; i++)
		any |= codes[i];
	for (uint64_t i = 0; (any >> e) && i < n; i++)
		if (codes[i] >> e)
			return sfp_error_set(err, SFP_EINVAL, "code %u at %llu exceeds e = %u",
					     codes[i], (unsigned long long)i, e);
	if (v < SFP_GECKO_AUTO || v > SFP_GECKO_ANS1)
		return sfp_error_set(err, SFP_EINVAL, "unknown gecko variant %d", v);

	if (v != SFP_GECKO_DELTA) {
		histograms(codes, n, h2);
		for (int s = 0; s < 256; s++)
			h1[0][s] = h2[0][s] + h2[1][s];
	}
	if (v == SFP_GECKO_AUTO) {
		double d = delta_header_bytes(ref) +
			   (double)((delta_bits(codes, n, e, G, ref,
						       ref == SFP_GECKO_REF_FIXED ? min_code(codes, n) : 0) +
				    7) / 8);
		double a0 = ans_estimate((const uint64_t(*)[256])h1, 1, n);
		double a1 = ans_estimate((const uint64_t(*)[256])h2, 2, n);
		v = SFP_GECKO_DELTA;
		if (a0 < d)
			v = SFP_GECKO_ANS0;
		if (a1 < (v == SFP_GECKO_ANS0 ? a0 : d))
			v = SFP_GECKO_ANS1;
	}
	int rc;
	if (v == SFP_GECKO_DELTA)
		rc = delta_encode(dst, cap, written, codes, n, e, G, ref);
	else if (v == SFP_GECKO_ANS0)
		rc = ans_encode(dst, cap, written, codes, n, 1, (const uint64_t(*)[256])h1, work,
				work_bytes);
	else
		rc = ans_encode(dst, cap, written, codes, n, 2, (const uint64_t(*)[256])h2, work,
				work_bytes);
	if (rc == SFP_ENOSPC)
		return sfp_error_set(err, SFP_ENOSPC, "gecko stream does not fit in %zu bytes", cap);
	if (rc == SFP_EINVAL)
		return sfp_error_set(err, SFP_EINVAL, "gecko work area of %zu bytes is too small",
				     work_bytes);
	return rc;
}

int sfp_gecko_decode(uint8_t *codes, uint64_t n, unsigned e, const void *src, size_t len,
		     int isa, void *work, size_t work_bytes, sfp_error *err)
{
	const uint8_t *s = src;
	(void)isa;
	if (e < 1 || e > 8)
		return sfp_error_set(err, SFP_EINVAL, "exponent bits e = %u is not in 1..8", e);
	int v = sfp_gecko_variant_of(src, len);
	if (v < 0)
		return sfp_error_set(err, SFP_ECORRUPT, "gecko stream has no valid variant byte");
	if (v == SFP_GECKO_DELTA)
		return delta_decode(codes, n, e, s, len, err);
	return ans_decode(codes, n, e, s, len, v == SFP_GECKO_ANS0 ? 1 : 2, work, work_bytes,
			  err);
}
