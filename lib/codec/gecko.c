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

#define SCALE ANS_SCALE
#define TOTAL ANS_TOTAL
#define RANS_L ANS_L
#define LANES ANS_LANES
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
	/* ANS encoder: the codes in step order (whole blocks of 16 steps, at
	 * most n + 16 * LANES bytes, + 64 slack) and the words (at most one
	 * per code, + 32, aligned to 64): below 4n + 1024. ANS decoder: 64 bytes of
	 * alignment, per context a symbol byte and a packed u32 entry per slot
	 * (+ 4 bytes of gather slack), then the codes in step order. */
	return (size_t)(4 * n + 1024) + MAX_CTX * TOTAL * 5 + 4;
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
static uint64_t delta_bits(const uint8_t *c, uint64_t g0, uint64_t n, unsigned e, unsigned G,
			   int ref, unsigned fixed)
{
	uint64_t bits = 0;
	for (uint64_t g = g0; g < n; g += G) {
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

/* ANS1's context: was the previous code of the same segment zero? Each
 * of the LANES states codes one contiguous segment of the stream (see
 * ans_layout), so the previous code is the true neighbour everywhere but
 * at the first code of a segment, whose context is 0. */
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

/* Segment layout: S = ceil(n / LANES) steps; lane l codes elements
 * l*S .. l*S + len_l - 1, where the first `full` lanes have len S, lane
 * `full` (if < LANES) has `rem` < S, and the rest none. */
static void ans_layout(uint64_t n, ans_lanes *ly)
{
	ly->steps = (n + LANES - 1) / LANES;
	ly->full = ly->steps ? (unsigned)(n / ly->steps) : 0;
	ly->rem = ly->steps ? n - (uint64_t)ly->full * ly->steps : 0;
}

/* Codes into step-major order: T[t*LANES + l] = code t of lane l (0 when
 * the lane has no code t), and back. */
static void to_steps(uint8_t *T, const uint8_t *c, uint64_t n, const ans_lanes *ly)
{
	memset(T, 0, (size_t)(ly->steps * LANES));
	for (unsigned l = 0; l < LANES; l++) {
		uint64_t b = (uint64_t)l * ly->steps, len = b < n ? n - b : 0;
		len = len < ly->steps ? len : ly->steps;
		for (uint64_t t = 0; t < len; t++)
			T[t * LANES + l] = c[b + t];
	}
}

static void from_steps(uint8_t *c, const uint8_t *T, uint64_t n, const ans_lanes *ly)
{
	for (unsigned l = 0; l < LANES; l++) {
		uint64_t b = (uint64_t)l * ly->steps, len = b < n ? n - b : 0;
		len = len < ly->steps ? len : ly->steps;
		for (uint64_t t = 0; t < len; t++)
			c[b + t] = T[t * LANES + l];
	}
}

uint32_t sfp__ans_active(const ans_lanes *ly, uint64_t t)
{
	uint32_t m = ly->full >= LANES ? 0xffffffffu : (1u << ly->full) - 1;
	if (t < ly->rem)
		m |= 1u << ly->full;
	return m;
}

/* The reference encoder over the steps, last to first; in each step the
 * lanes go from LANES-1 down to 0, so a decoder reading forward meets a
 * step's words in lane order. A state x >= f * 2^18 first sheds its low 16
 * bits (at most once: 16-bit words, states in [2^16, 2^32)), then
 * x' = (x / f) * 2^SCALE + x % f + cum. */
void sfp__ans_enc_ref(const uint8_t *T, const ans_lanes *ly, int nctx, const uint32_t *fc,
		      const double *inv, uint32_t *st, uint16_t **wpp)
{
	uint16_t *wp = *wpp;
	(void)inv;
	for (uint64_t t = ly->steps; t-- > 0;) {
		uint32_t act = sfp__ans_active(ly, t);
		for (int l = LANES - 1; l >= 0; l--) {
			if (!(act >> l & 1))
				continue;
			unsigned sym = T[t * LANES + (unsigned)l];
			unsigned x = nctx == 2 && t > 0 && T[(t - 1) * LANES + (unsigned)l] != 0;
			uint32_t f = fc[x * 256 + sym] & 0x7fffu, cum = fc[x * 256 + sym] >> 15;
			uint32_t v = st[l];
			if ((v >> (32 - SCALE)) >= f) {
				*--wp = (uint16_t)v;
				v >>= 16;
			}
			st[l] = (v / f) * TOTAL + v % f + cum;
		}
	}
	*wpp = wp;
}

/* The reference decoder over the steps, first to last (lanes in order),
 * into T. Returns SFP_OK or SFP_ECORRUPT (a context without symbols, the
 * words run out). */
int sfp__ans_dec_ref(uint8_t *T, const ans_lanes *ly, int nctx, const uint32_t *pk,
		     const uint8_t *lut, const unsigned *nsym, uint32_t *st, const uint8_t **wpp,
		     const uint8_t *wend)
{
	const uint8_t *wp = *wpp;
	for (uint64_t t = 0; t < ly->steps; t++) {
		uint32_t act = sfp__ans_active(ly, t);
		for (unsigned l = 0; l < LANES; l++) {
			if (!(act >> l & 1))
				continue;
			unsigned x = nctx == 2 && t > 0 && T[(t - 1) * LANES + l] != 0;
			if (!nsym[x])
				return SFP_ECORRUPT;
			uint32_t slot = st[l] & (TOTAL - 1), p = pk[x * TOTAL + slot];
			uint32_t v = (p & 0x7fffu) * (st[l] >> SCALE) + (p >> 15);
			if (v < RANS_L) {
				if (wend - wp < 2)
					return SFP_ECORRUPT;
				v = v << 16 | sfp_load_le16(wp);
				wp += 2;
			}
			st[l] = v;
			T[t * LANES + l] = lut[x * TOTAL + slot];
		}
	}
	*wpp = wp;
	return SFP_OK;
}

static int ans_encode(uint8_t *dst, size_t cap, size_t *written, const uint8_t *c, uint64_t n,
		      int nctx, const uint64_t (*cnt)[256], int isa, void *work,
		      size_t work_bytes)
{
	ans_table tab[MAX_CTX];
	size_t pos = 0;
	ans_lanes ly;
	ans_layout(n, &ly);
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
		sfp_store_le16(dst + pos, (uint16_t)tab[x].nsym);
		pos += 2;
		for (int s = 0; s < 256; s++)
			if (tab[x].freq[s]) {
				dst[pos++] = (uint8_t)s;
				sfp_store_le16(dst + pos, tab[x].freq[s]);
				pos += 2;
			}
	}
	/* Work: the codes in step order, then the words (at most one per
	 * code), written backwards from the end. */
	size_t tbytes = (size_t)((ly.steps + 15) / 16 * 16 * LANES + 64); /* whole blocks */
	size_t maxw = (size_t)n + 32;
	if (work_bytes < tbytes + 2 * maxw + 64)
		return SFP_EINVAL;
	uint8_t *T = work;
	uint16_t *wend = (uint16_t *)(((uintptr_t)(T + tbytes) + 63) & ~(uintptr_t)63) + maxw;
	uint16_t *wp = wend;
#if defined(__x86_64__)
	if (isa >= SFP_ISA_AVX512)
		sfp__to_steps_avx512(T, c, &ly);
	else
#endif
		to_steps(T, c, n, &ly);
	/* Per (context, symbol): frequency | start << 15, and 1/frequency for
	 * the vector encoder's division. */
	uint32_t fc[MAX_CTX * 256];
	double inv[MAX_CTX * 256];
	memset(fc, 0, sizeof fc);
	memset(inv, 0, sizeof inv);
	for (int x = 0; x < nctx; x++)
		for (int s = 0; s < 256; s++)
			if (tab[x].freq[s]) {
				fc[x * 256 + s] = tab[x].freq[s] | (uint32_t)tab[x].cum[s] << 15;
				inv[x * 256 + s] = 1.0 / tab[x].freq[s];
			}
	uint32_t st[LANES];
	for (int l = 0; l < LANES; l++)
		st[l] = RANS_L;
#if defined(__x86_64__)
	if (isa >= SFP_ISA_AVX512)
		sfp__ans_enc_avx512(T, &ly, nctx, fc, inv, st, &wp);
	else
#endif
		sfp__ans_enc_ref(T, &ly, nctx, fc, inv, st, &wp);
	(void)isa;
	size_t nw = (size_t)(wend - wp);
	if (cap - pos < LANES * 4 + nw * 2)
		return SFP_ENOSPC;
	for (int l = 0; l < LANES; l++) {
		sfp_store_le32(dst + pos, st[l]);
		pos += 4;
	}
	for (size_t j = 0; j < nw; j++) {
		sfp_store_le16(dst + pos, wp[j]);
		pos += 2;
	}
	*written = pos;
	return SFP_OK;
}

static int ans_decode(uint8_t *c, uint64_t n, unsigned e, const uint8_t *s, size_t len,
		      int nctx, int isa, void *work, size_t work_bytes, sfp_error *err)
{
	ans_table tab[MAX_CTX];
	size_t pos = 1;
	ans_lanes ly;
	ans_layout(n, &ly);
	/* Work: per slot of each context a packed u32 entry (frequency in
	 * bits 0..14, slot - cum in bits 15..28) and the symbol (lut, with 4
	 * bytes of slack for 4-byte gathers), then the codes in step order. */
	uintptr_t wa = ((uintptr_t)work + 63) & ~(uintptr_t)63;
	size_t skip = (size_t)(wa - (uintptr_t)work);
	size_t tabbytes = (size_t)nctx * TOTAL * 5 + 4;
	size_t tbytes = (size_t)((ly.steps + 15) / 16 * 16 * LANES); /* whole blocks */
	if (!work || work_bytes < skip || work_bytes - skip < tabbytes + tbytes)
		return sfp_error_set(err, SFP_EINVAL, "gecko work area too small");
	uint32_t *pk = (uint32_t *)wa;
	uint8_t *lut = (uint8_t *)(pk + (size_t)nctx * TOTAL);
	uint8_t *T = lut + (size_t)nctx * TOTAL + 4;
	memset(lut + (size_t)nctx * TOTAL, 0, 4);
	unsigned nsym[MAX_CTX] = {0, 0};
	for (int x = 0; x < nctx; x++) {
		memset(&tab[x], 0, sizeof tab[x]);
		if (len - pos < 2)
			return sfp_error_set(err, SFP_ECORRUPT, "gecko table truncated");
		unsigned ns = sfp_load_le16(s + pos);
		pos += 2;
		if (ns > 256 || len - pos < 3 * (size_t)ns)
			return sfp_error_set(err, SFP_ECORRUPT, "gecko table truncated or too large");
		unsigned sum = 0;
		int last = -1;
		for (unsigned j = 0; j < ns; j++) {
			int sym = s[pos];
			unsigned f = sfp_load_le16(s + pos + 1);
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
		nsym[x] = ns;
	}
	if (len - pos < LANES * 4)
		return sfp_error_set(err, SFP_ECORRUPT, "gecko states truncated");
	uint32_t st[LANES];
	for (int l = 0; l < LANES; l++) {
		st[l] = sfp_load_le32(s + pos);
		pos += 4;
		if (st[l] < RANS_L)
			return sfp_error_set(err, SFP_ECORRUPT, "gecko state out of range");
	}
	if ((len - pos) & 1)
		return sfp_error_set(err, SFP_ECORRUPT, "gecko word stream has odd length");
	const uint8_t *wp = s + pos, *wend = s + len;
	int rc;
	/* The vector decoder needs every context to have symbols; the
	 * reference one finds out which context is missing. */
#if defined(__x86_64__)
	if (isa >= SFP_ISA_AVX512 && nsym[0] && (nctx == 1 || nsym[1]))
		rc = sfp__ans_dec_avx512(T, &ly, nctx, pk, lut, st, &wp, wend);
	else
#endif
		rc = sfp__ans_dec_ref(T, &ly, nctx, pk, lut, nsym, st, &wp, wend);
	(void)isa;
	if (rc < 0)
		return sfp_error_set(err, SFP_ECORRUPT,
				     "gecko stream ends early or uses a context without symbols");
	if (wp != wend)
		return sfp_error_set(err, SFP_ECORRUPT, "gecko stream has %zu unused bytes",
				     (size_t)(wend - wp));
	for (int l = 0; l < LANES; l++)
		if (st[l] != RANS_L)
			return sfp_error_set(err, SFP_ECORRUPT, "gecko final state mismatch");
#if defined(__x86_64__)
	if (isa >= SFP_ISA_AVX512)
		sfp__from_steps_avx512(c, T, &ly);
	else
#endif
		from_steps(c, T, n, &ly);
	return SFP_OK;
}

/* ---- entry points ------------------------------------------------------------------ */

/* The (previous code nonzero, code) histogram, scalar. */
static void histograms_ref(const uint8_t *c, uint64_t n, uint64_t (*h)[256])
{
	/* Eight partial tables indexed by (previous code nonzero) * 256 + code,
	 * so that runs of one code do not serialize on one counter; their u32
	 * counters are added into h every 2^28 codes. */
	enum { PARTS = 8 };
	const uint64_t chunk = (uint64_t)1 << 28;
	uint32_t part[PARTS][MAX_CTX * 256];
	unsigned p = 0;
	for (uint64_t i0 = 0; i0 < n; i0 += chunk) {
		uint64_t i1 = n - i0 > chunk ? i0 + chunk : n, i = i0;
		memset(part, 0, sizeof part);
		for (; i + PARTS <= i1; i += PARTS) {
			unsigned a[PARTS];
			for (int k = 0; k < PARTS; k++)
				a[k] = c[i + (unsigned)k];
			part[0][(p != 0) << 8 | a[0]]++;
			for (int k = 1; k < PARTS; k++)
				part[k][(a[k - 1] != 0) << 8 | a[k]]++;
			p = a[PARTS - 1];
		}
		for (; i < i1; i++) {
			part[0][(p != 0) << 8 | c[i]]++;
			p = c[i];
		}
		for (int x = 0; x < MAX_CTX; x++)
			for (int s = 0; s < 256; s++)
				for (int k = 0; k < PARTS; k++)
					h[x][s] += part[k][x * 256 + s];
	}
}

/* The histogram of the codes ANS1 codes: h[x][s], x = previous code of the
 * same segment nonzero. `any` is the OR of the codes. */
static void histograms(const uint8_t *c, uint64_t n, unsigned any, int isa, uint64_t (*h)[256])
{
	memset(h, 0, sizeof(uint64_t) * MAX_CTX * 256);
#if defined(__x86_64__)
	if (isa >= SFP_ISA_AVX512 && any < 32)
		sfp__gecko_hist32_avx512(c, n, any, h);
	else
#endif
		histograms_ref(c, n, h);
	(void)any;
	(void)isa;
	/* The first code of each segment (ans_layout) has context 0. */
	ans_lanes ly;
	ans_layout(n, &ly);
	for (unsigned l = 1; l < LANES; l++) {
		uint64_t i0 = (uint64_t)l * ly.steps;
		if (i0 >= n)
			break;
		if (c[i0 - 1] != 0) {
			h[1][c[i0]]--;
			h[0][c[i0]]++;
		}
	}
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
	/* One OR over all codes; the slow search only on error. */
	unsigned any = 0;
#if defined(__x86_64__)
	if (isa >= SFP_ISA_AVX512)
		any = sfp__gecko_or_avx512(codes, n);
	else
#endif
		for (uint64_t i = 0; i < n; i++)
			any |= codes[i];
	for (uint64_t i = 0; (any >> e) && i < n; i++)
		if (codes[i] >> e)
			return sfp_error_set(err, SFP_EINVAL, "code %u at %llu exceeds e = %u",
					     codes[i], (unsigned long long)i, e);
	if (v < SFP_GECKO_AUTO || v > SFP_GECKO_ANS1)
		return sfp_error_set(err, SFP_EINVAL, "unknown gecko variant %d", v);

	if (v != SFP_GECKO_DELTA) {
		histograms(codes, n, any, isa, h2);
		for (int s = 0; s < 256; s++)
			h1[0][s] = h2[0][s] + h2[1][s];
	}
	if (v == SFP_GECKO_AUTO) {
		/* DELTA sized exactly; the AVX-512 kernel covers the default
		 * setting (groups of 8, previous-code reference) up to a
		 * multiple of 64 codes, the scalar loop the rest. */
		uint64_t db = 0, g0 = 0;
#if defined(__x86_64__)
		if (isa >= SFP_ISA_AVX512 && G == 8 && ref == SFP_GECKO_REF_PREV) {
			g0 = n & ~(uint64_t)63;
			db = sfp__delta_bits_prev8_avx512(codes, n);
		}
#endif
		db += delta_bits(codes, g0, n, e, G, ref,
				 ref == SFP_GECKO_REF_FIXED ? min_code(codes, n) : 0);
		double d = delta_header_bytes(ref) + (double)((db + 7) / 8);
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
		rc = ans_encode(dst, cap, written, codes, n, 1, (const uint64_t(*)[256])h1, isa,
				work, work_bytes);
	else
		rc = ans_encode(dst, cap, written, codes, n, 2, (const uint64_t(*)[256])h2, isa,
				work, work_bytes);
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
	return ans_decode(codes, n, e, s, len, v == SFP_GECKO_ANS0 ? 1 : 2, isa, work, work_bytes,
			  err);
}
