/*
 * container.c -- the sfp tensor container (docs/format.md): parameters, the
 * header, encode and decode, with the scalar reference kernels and run-time
 * dispatch to the SIMD ones. The reference path (sfp_encode_ref /
 * sfp_decode_ref) runs the same driver with the scalar kernels, so the two
 * differ only in the kernels, which tests/test_codec_container.c compares bit for bit.
 */
#include <assert.h>
#include <stddef.h>
#include <stdlib.h>
#include <string.h>

#include "codec/codec_internal.h"

/* ---- parameters ----------------------------------------------------------- */

void sfp_params_init(sfp_params *p, unsigned e, unsigned m)
{
	memset(p, 0, sizeof *p);
	p->e = e;
	p->m = m;
	p->rounding = SFP_ROUND_NEAREST;
	p->window = SFP_WINDOW_AUTO;
	p->underflow = SFP_UNDERFLOW_ZERO;
	p->overflow = SFP_OVERFLOW_ERROR;
	p->gecko = 0;
	sfp_gecko_opts_init(&p->gecko_opts);
}

int sfp_params_check(const sfp_params *p, sfp_error *err)
{
	if (p->e < 1 || p->e > 8)
		return sfp_error_set(err, SFP_EINVAL, "exponent bits e = %u is not in 1..8", p->e);
	if (p->m > 23)
		return sfp_error_set(err, SFP_EINVAL, "mantissa bits m = %u is not in 0..23", p->m);
	if (p->rounding != SFP_ROUND_NEAREST && p->rounding != SFP_ROUND_STOCHASTIC)
		return sfp_error_set(err, SFP_EINVAL, "unknown rounding mode %d", p->rounding);
	if (p->window != SFP_WINDOW_AUTO && p->window != SFP_WINDOW_FIXED)
		return sfp_error_set(err, SFP_EINVAL, "unknown window mode %d", p->window);
	if (p->window == SFP_WINDOW_FIXED && (p->exp_hi < 1 || p->exp_hi > 254))
		return sfp_error_set(err, SFP_EINVAL,
				     "window top exp_hi = %u is not a normal exponent (1..254)",
				     p->exp_hi);
	if (p->underflow != SFP_UNDERFLOW_ZERO && p->underflow != SFP_UNDERFLOW_MIN)
		return sfp_error_set(err, SFP_EINVAL, "unknown underflow policy %d", p->underflow);
	if (p->overflow != SFP_OVERFLOW_ERROR && p->overflow != SFP_OVERFLOW_SATURATE)
		return sfp_error_set(err, SFP_EINVAL, "unknown overflow policy %d", p->overflow);
	if (p->gecko != 0 && p->gecko != 1)
		return sfp_error_set(err, SFP_EINVAL, "gecko must be 0 or 1, not %d", p->gecko);
	if (p->gecko_opts.variant < SFP_GECKO_AUTO || p->gecko_opts.variant > SFP_GECKO_ANS1)
		return sfp_error_set(err, SFP_EINVAL, "unknown gecko variant %d",
				     p->gecko_opts.variant);
	if (p->bias < SFP_BIAS_OFF || p->bias > SFP_BIAS_CHANNEL)
		return sfp_error_set(err, SFP_EINVAL, "unknown bias mode %d", p->bias);
	if (p->shift != 0 && p->shift != 1)
		return sfp_error_set(err, SFP_EINVAL, "shift must be 0 or 1, not %d", p->shift);
	if ((p->bias || p->shift) && p->m > SFP_REFINE_MAX_M)
		return sfp_error_set(err, SFP_EINVAL,
				     "refinement (bias, shift) needs m <= %d, not %u", SFP_REFINE_MAX_M,
				     p->m);
	return SFP_OK;
}

/* Window bottom for a top exponent: the lowest of 2^e - 1 exponents. */
static unsigned window_lo(unsigned e, unsigned hi)
{
	unsigned span = (1u << e) - 2;
	return hi > span + 1 ? hi - span : 1;
}

/* Top of the window a decoder sees for (e, lo). */
static unsigned window_hi(unsigned e, unsigned lo)
{
	unsigned hi = lo + (1u << e) - 2;
	return hi > 254 ? 254 : hi;
}

static void plan_init(qplan *q, const sfp_params *p)
{
	memset(q, 0, sizeof *q);
	q->e = p->e;
	q->m = p->m;
	q->k = 23 - p->m;
	q->stochastic = p->rounding == SFP_ROUND_STOCHASTIC;
	q->seed = p->seed;
	q->under_min = p->underflow == SFP_UNDERFLOW_MIN;
	q->saturate = p->overflow == SFP_OVERFLOW_SATURATE;
	q->lossless = p->e == 8 && p->m == 23;
	/* The max pass runs with the widest window; the real one is set later. */
	q->lo = 1;
	q->hi = 254;
	q->max_code = 254;
}

static void plan_window(qplan *q, unsigned hi)
{
	q->hi = hi;
	q->lo = window_lo(q->e, hi);
	q->max_code = hi - q->lo + 1;
}

/* ---- header ---------------------------------------------------------------- */

/*
 * The fixed part of the header (docs/format.md), in its on-disk order; the
 * shape, ndim little-endian u64s, follows it. Every field is naturally
 * aligned, so the struct has no padding and offsetof gives each field's
 * byte offset. The bytes are little-endian whatever the host: hdr_load and
 * hdr_store convert field by field and never copy the struct whole.
 */
typedef struct hdr {
	uint8_t magic[4];      /* "SFPT" */
	uint8_t version;       /* SFP_FORMAT_VERSION */
	uint8_t e, m;          /* exponent and mantissa bits */
	uint8_t exp_lo;        /* biased exponent of code 1 */
	uint16_t flags;        /* SFP_FLAG_* */
	uint8_t exp_coder;     /* enum sfp_exp_coder */
	uint8_t ndim;          /* 0..SFP_MAX_DIMS */
	uint32_t reserved;     /* zero */
	uint64_t count, nnz, n_exceptions;
	uint64_t exp_bytes, payload_bytes;
	uint32_t payload_crc;  /* CRC32C of the payload */
	uint32_t header_crc;   /* CRC32C of the bytes before this field, then the shape */
} hdr;
static_assert(sizeof(hdr) == SFP_HEADER_FIXED_BYTES, "container header layout");
static_assert(offsetof(hdr, header_crc) + sizeof(uint32_t) == SFP_HEADER_FIXED_BYTES,
	      "the header CRC ends the fixed header");

#define HDR_AT(field) offsetof(hdr, field)
static const uint8_t hdr_magic[4] = {'S', 'F', 'P', 'T'};

/* The fixed header fields of b[0..SFP_HEADER_FIXED_BYTES). */
static void hdr_load(hdr *h, const uint8_t *b)
{
	memcpy(h->magic, b + HDR_AT(magic), sizeof h->magic);
	h->version = b[HDR_AT(version)];
	h->e = b[HDR_AT(e)];
	h->m = b[HDR_AT(m)];
	h->exp_lo = b[HDR_AT(exp_lo)];
	h->flags = sfp_load_le16(b + HDR_AT(flags));
	h->exp_coder = b[HDR_AT(exp_coder)];
	h->ndim = b[HDR_AT(ndim)];
	h->reserved = sfp_load_le32(b + HDR_AT(reserved));
	h->count = sfp_load_le64(b + HDR_AT(count));
	h->nnz = sfp_load_le64(b + HDR_AT(nnz));
	h->n_exceptions = sfp_load_le64(b + HDR_AT(n_exceptions));
	h->exp_bytes = sfp_load_le64(b + HDR_AT(exp_bytes));
	h->payload_bytes = sfp_load_le64(b + HDR_AT(payload_bytes));
	h->payload_crc = sfp_load_le32(b + HDR_AT(payload_crc));
	h->header_crc = sfp_load_le32(b + HDR_AT(header_crc));
}

/* CRC32C of the header b (fixed part up to the CRC field, then the shape). */
static uint32_t header_crc(const uint8_t *b, unsigned ndim)
{
	uint32_t c = sfp_crc32c(0, b, HDR_AT(header_crc));
	return sfp_crc32c(c, b + SFP_HEADER_FIXED_BYTES, 8u * ndim);
}

/* Write h and shape[0..h->ndim) as the header at b; h's header_crc is
 * ignored, the stored one is computed over the bytes written. */
static void hdr_store(uint8_t *b, const hdr *h, const uint64_t *shape)
{
	memcpy(b + HDR_AT(magic), h->magic, sizeof h->magic);
	b[HDR_AT(version)] = h->version;
	b[HDR_AT(e)] = h->e;
	b[HDR_AT(m)] = h->m;
	b[HDR_AT(exp_lo)] = h->exp_lo;
	sfp_store_le16(b + HDR_AT(flags), h->flags);
	b[HDR_AT(exp_coder)] = h->exp_coder;
	b[HDR_AT(ndim)] = h->ndim;
	sfp_store_le32(b + HDR_AT(reserved), h->reserved);
	sfp_store_le64(b + HDR_AT(count), h->count);
	sfp_store_le64(b + HDR_AT(nnz), h->nnz);
	sfp_store_le64(b + HDR_AT(n_exceptions), h->n_exceptions);
	sfp_store_le64(b + HDR_AT(exp_bytes), h->exp_bytes);
	sfp_store_le64(b + HDR_AT(payload_bytes), h->payload_bytes);
	for (unsigned i = 0; i < h->ndim; i++)
		sfp_store_le64(b + SFP_HEADER_FIXED_BYTES + 8 * i, shape[i]);
	sfp_store_le32(b + HDR_AT(payload_crc), h->payload_crc);
	sfp_store_le32(b + HDR_AT(header_crc), header_crc(b, h->ndim));
}

static uint64_t div_ceil8(uint64_t bits) { return (bits + 7) >> 3; }

/* Size of the sign region given nnz and flags. */
static uint64_t sign_region(uint64_t nnz, unsigned flags)
{
	return (flags & (SFP_FLAG_SIGN_POS | SFP_FLAG_SIGN_NEG)) ? 0 : div_ceil8(nnz);
}

/* The frame of a header: length, magic, version, ndim and the header CRC.
 * Fills *h from b[0..len) and *hb with the header's size. */
static int hdr_frame(hdr *h, size_t *hb, const uint8_t *b, size_t len, sfp_error *err)
{
	if (len < SFP_HEADER_FIXED_BYTES)
		return sfp_error_set(err, SFP_ETRUNC, "%zu bytes is shorter than the %d-byte header",
				     len, SFP_HEADER_FIXED_BYTES);
	hdr_load(h, b);
	if (memcmp(h->magic, hdr_magic, sizeof hdr_magic) != 0)
		return sfp_error_set(err, SFP_ECORRUPT,
				     "bad magic: not an sfp tensor container (expected 'SFPT')");
	if (h->version != SFP_FORMAT_VERSION)
		return sfp_error_set(err, SFP_EVERSION,
				     "format version %u (this build reads version %d)", h->version,
				     SFP_FORMAT_VERSION);
	if (h->ndim > SFP_MAX_DIMS)
		return sfp_error_set(err, SFP_ECORRUPT, "ndim %u exceeds %d", h->ndim, SFP_MAX_DIMS);
	*hb = SFP_HEADER_BYTES(h->ndim);
	if (len < *hb)
		return sfp_error_set(err, SFP_ETRUNC, "%zu bytes is shorter than the %zu-byte header",
				     len, *hb);
	uint32_t want = h->header_crc, got = header_crc(b, h->ndim);
	if (want != got)
		return sfp_error_set(err, SFP_ECHECKSUM, "header crc %08x != stored %08x", got, want);
	return SFP_OK;
}

/* The header's scalar fields into *info, each checked on its own and
 * against the others (widths, window, flags, coder, reserved bytes). */
static int hdr_fields(sfp_info *info, const hdr *h, sfp_error *err)
{
	info->version = h->version;
	info->e = h->e;
	info->m = h->m;
	info->exp_lo = h->exp_lo;
	info->flags = h->flags;
	info->exp_coder = h->exp_coder;
	info->ndim = h->ndim;
	info->count = h->count;
	info->nnz = h->nnz;
	info->n_exceptions = h->n_exceptions;

	if (info->e < 1 || info->e > 8)
		return sfp_error_set(err, SFP_ECORRUPT, "exponent bits e = %u is not in 1..8", info->e);
	if (info->m > 23)
		return sfp_error_set(err, SFP_ECORRUPT, "mantissa bits m = %u is not in 0..23",
				     info->m);
	if (info->exp_lo < 1 || info->exp_lo > 254 ||
	    (info->e == 8 && info->exp_lo != 1) ||
	    (info->e < 8 && info->exp_lo + (1u << info->e) - 2 > 254))
		return sfp_error_set(err, SFP_ECORRUPT, "exponent window bottom %u invalid for e = %u",
				     info->exp_lo, info->e);
	info->exp_hi = window_hi(info->e, info->exp_lo);
	if (info->flags & ~SFP_FLAGS_KNOWN)
		return sfp_error_set(err, SFP_ECORRUPT, "unknown flag bits 0x%04x", info->flags);
	if ((info->flags & SFP_FLAG_SIGN_POS) && (info->flags & SFP_FLAG_SIGN_NEG))
		return sfp_error_set(err, SFP_ECORRUPT, "both sign flags set");
	if ((info->flags & (SFP_FLAG_SIGN_POS | SFP_FLAG_SIGN_NEG)) && info->nnz == 0)
		return sfp_error_set(err, SFP_ECORRUPT, "sign flag set but no nonzero values");
	if (info->exp_coder > SFP_EXP_STORED)
		return sfp_error_set(err, SFP_ECORRUPT, "unknown exponent coder %u", info->exp_coder);
	const unsigned refine = info->flags & (SFP_FLAG_SHIFT | SFP_FLAG_BIAS);
	if ((info->flags & SFP_FLAG_BIAS_CHANNEL) && !(info->flags & SFP_FLAG_BIAS))
		return sfp_error_set(err, SFP_ECORRUPT, "per-channel bias flag without the bias flag");
	if (refine && (info->m > SFP_REFINE_MAX_M || info->nnz == 0))
		return sfp_error_set(err, SFP_ECORRUPT, "refinement flags on a container with %s",
				     info->nnz ? "m > 20" : "no nonzero values");
	if (h->reserved != 0)
		return sfp_error_set(err, SFP_ECORRUPT, "reserved header bytes are not zero");
	return SFP_OK;
}

/* The shape that follows the fixed header at b into info->shape; its
 * product must be the count. */
static int hdr_shape(sfp_info *info, const uint8_t *b, sfp_error *err)
{
	uint64_t prod = 1;
	for (unsigned i = 0; i < info->ndim; i++) {
		info->shape[i] = sfp_load_le64(b + SFP_HEADER_FIXED_BYTES + 8 * i);
		if (info->shape[i] > SFP_MAX_COUNT ||
		    (info->shape[i] && prod > SFP_MAX_COUNT / info->shape[i]))
			return sfp_error_set(err, SFP_ECORRUPT, "shape exceeds %llu elements",
					     (unsigned long long)SFP_MAX_COUNT);
		prod *= info->shape[i];
	}
	if (prod != info->count)
		return sfp_error_set(err, SFP_ECORRUPT, "header says %llu elements, shape has %llu",
				     (unsigned long long)info->count, (unsigned long long)prod);
	if ((info->flags & SFP_FLAG_BIAS_CHANNEL) && info->ndim == 0)
		return sfp_error_set(err, SFP_ECORRUPT, "per-channel bias on a scalar");
	return SFP_OK;
}

/* The payload's regions (mantissas, signs, exceptions, exponent codes,
 * side bytes) from the counts, flags and the header's two sizes: each must
 * be what the counts imply, and together exactly the payload. */
static int hdr_regions(sfp_info *info, uint64_t exp_bytes, uint64_t payload, sfp_error *err)
{
	uint64_t side = (info->flags & SFP_FLAG_SHIFT) ? 1 : 0;
	if (info->flags & SFP_FLAG_BIAS) {
		info->bias_groups = (info->flags & SFP_FLAG_BIAS_CHANNEL) ? info->shape[0] : 1;
		side += info->bias_groups;
	}
	if (side > payload)
		return sfp_error_set(err, SFP_ECORRUPT,
				     "payload of %llu bytes cannot hold %llu bytes of refinement",
				     (unsigned long long)payload, (unsigned long long)side);
	info->side_bytes = (size_t)side;
	if (info->nnz > info->count || info->n_exceptions > info->count - info->nnz)
		return sfp_error_set(err, SFP_ECORRUPT,
				     "counts inconsistent: %llu nonzero + %llu exceptions > %llu",
				     (unsigned long long)info->nnz,
				     (unsigned long long)info->n_exceptions,
				     (unsigned long long)info->count);

	if (info->exp_coder == SFP_EXP_STORED) {
		if (payload != 4 * info->count + side || exp_bytes != 0)
			return sfp_error_set(err, SFP_ECORRUPT,
					     "stored payload must be 4 x %llu bytes",
					     (unsigned long long)info->count);
		return SFP_OK;
	}
	uint64_t mant = div_ceil8(info->nnz * info->m);
	uint64_t sign = sign_region(info->nnz, info->flags);
	if (info->exp_coder == SFP_EXP_RAW && exp_bytes != div_ceil8(info->count * info->e))
		return sfp_error_set(err, SFP_ECORRUPT,
				     "raw exponent region is %llu bytes, expected %llu",
				     (unsigned long long)exp_bytes,
				     (unsigned long long)div_ceil8(info->count * info->e));
	if (exp_bytes > payload || payload - side < mant + sign + exp_bytes)
		return sfp_error_set(err, SFP_ECORRUPT,
				     "payload of %llu bytes cannot hold its regions",
				     (unsigned long long)payload);
	uint64_t exc = payload - side - mant - sign - exp_bytes;
	/* Each exception takes 5 to 10 bytes. */
	if (exc < 5 * info->n_exceptions || exc > 10 * info->n_exceptions)
		return sfp_error_set(err, SFP_ECORRUPT,
				     "exception region of %llu bytes for %llu exceptions",
				     (unsigned long long)exc,
				     (unsigned long long)info->n_exceptions);
	info->mant_bytes = (size_t)mant;
	info->sign_bytes = (size_t)sign;
	info->exc_bytes = (size_t)exc;
	info->exp_bytes = (size_t)exp_bytes;
	return SFP_OK;
}

int sfp_inspect(const void *src, size_t len, sfp_info *info, sfp_error *err)
{
	const uint8_t *b = src;
	hdr h;
	size_t hb = 0;
	memset(info, 0, sizeof *info);
	SFP_TRY(hdr_frame(&h, &hb, b, len, err));
	SFP_TRY(hdr_fields(info, &h, err));
	SFP_TRY(hdr_shape(info, b, err));
	const uint64_t payload = h.payload_bytes;
	SFP_TRY(hdr_regions(info, h.exp_bytes, payload, err));
	if (payload > len - hb)
		return sfp_error_set(err, SFP_ETRUNC, "payload needs %llu bytes, %zu present",
				     (unsigned long long)payload, len - hb);
	info->header_bytes = hb;
	info->payload_bytes = (size_t)payload;
	info->total_bytes = hb + (size_t)payload;
	if (info->exp_coder == SFP_EXP_GECKO) {
		int v = sfp_gecko_variant_of(b + hb + info->mant_bytes + info->sign_bytes +
						     info->exc_bytes,
					     info->exp_bytes);
		info->gecko_variant = v > 0 ? (unsigned)v : 0;
	}
	if (info->flags & SFP_FLAG_SHIFT)
		info->rho = b[hb + payload - info->side_bytes];
	return SFP_OK;
}

/* ---- the codec context ---------------------------------------------------- */

struct sfp_codec {
	int isa;
	uint8_t *codes;
	size_t codes_cap;
	uint8_t *sign;
	size_t sign_cap;
	void *work;
	size_t work_cap;
};

/* A context with no scratch yet, for `isa`. The reference entry points keep
 * one on the stack; sfp_codec_create puts one on the heap. */
static void codec_init(sfp_codec *c, int isa)
{
	memset(c, 0, sizeof *c);
	c->isa = isa;
}

/* Free the scratch of a context from codec_init. */
static void codec_release(sfp_codec *c)
{
	free(c->codes);
	free(c->sign);
	free(c->work);
	codec_init(c, c->isa);
}

sfp_codec *sfp_codec_create(void)
{
	sfp_codec *c = malloc(sizeof *c);
	if (c)
		codec_init(c, sfp_cpu_isa());
	return c;
}

void sfp_codec_free(sfp_codec *c)
{
	if (!c)
		return;
	codec_release(c);
	free(c);
}

int sfp_codec_set_isa(sfp_codec *c, int isa)
{
	if (isa < SFP_ISA_SCALAR || isa > sfp_cpu_isa())
		return SFP_EINVAL;
	c->isa = isa;
	return SFP_OK;
}

int sfp_codec_isa(const sfp_codec *c) { return c->isa; }

/* Grow a scratch buffer to at least n bytes (+64 so SIMD loads may overrun). */
static int grow(void **buf, size_t *cap, size_t n)
{
	n += 64;
	if (*cap >= n)
		return SFP_OK;
	void *p = malloc(n);
	if (!p)
		return SFP_ENOMEM;
	free(*buf);
	*buf = p;
	*cap = n;
	return SFP_OK;
}

/* Kernels for an ISA level. AVX2 brings the raw exponent-code kernels;
 * AVX-512 its own versions of those (64 codes per step) and the max,
 * quantize and assemble passes. */
typedef struct kernels {
	max_exp_fn max_exp;
	quant_pass_fn quant_pass;
	assemble_fn assemble;
	pack_codes_fn pack_codes;
	unpack_codes_fn unpack_codes;
	uint64_t (*count_nonzero)(const uint8_t *codes, uint64_t n);
} kernels;

static uint64_t count_nonzero_ref(const uint8_t *codes, uint64_t n)
{
	uint64_t nz = 0;
	for (uint64_t i = 0; i < n; i++)
		nz += codes[i] != 0;
	return nz;
}

static kernels pick(int isa)
{
	kernels k = {sfp__max_exp_ref, sfp__quant_pass_ref, sfp__assemble_ref,
		     sfp__pack_codes, sfp__unpack_codes, count_nonzero_ref};
#if defined(__x86_64__)
	if (isa >= SFP_ISA_AVX2) {
		k.pack_codes = sfp__pack_codes_avx2;
		k.unpack_codes = sfp__unpack_codes_avx2;
		k.count_nonzero = sfp__count_nonzero_avx2;
	}
	if (isa >= SFP_ISA_AVX512) {
		k.max_exp = sfp__max_exp_avx512;
		k.quant_pass = sfp__quant_pass_avx512;
		k.assemble = sfp__assemble_avx512;
		k.pack_codes = sfp__pack_codes_avx512;
		k.unpack_codes = sfp__unpack_codes_avx512;
	}
#endif
	return k;
}

/* ---- scalar reference kernels ------------------------------------------------- */

int sfp__max_exp_ref(const qplan *q, const float *x, uint64_t n, unsigned *emax, uint64_t *bad)
{
	*emax = 0;
	return max_exp_range(q, x, 0, n, emax, bad);
}

int sfp__quant_pass_ref(const qplan *q, const float *x, uint64_t n, uint8_t *codes, bitw *mw,
			bitw *sw, qcounts *c, uint64_t *bad)
{
	return quant_range(q, x, 0, n, codes, mw, sw, c, bad);
}

void sfp__assemble_ref(float *dst, const uint8_t *codes, uint64_t n, unsigned lo, unsigned m,
		       const uint8_t *mant, size_t mant_len, const uint8_t *sign, size_t sign_len,
		       int sign_mode)
{
	uint64_t mpos = 0, spos = 0;
	assemble_range(dst, codes, 0, n, lo, m, mant, mant_len, sign, sign_len, sign_mode, &mpos,
		       &spos);
}

/* ---- raw exponent codes ------------------------------------------------------ */

void sfp__pack_codes(uint8_t *dst, const uint8_t *codes, uint64_t n, unsigned e)
{
	bitw w;
	bitw_init(&w, dst, (size_t)div_ceil8(n * e));
	if (e == 8) {
		memcpy(dst, codes, n);
		return;
	}
	for (uint64_t i = 0; i < n; i++)
		bitw_put(&w, codes[i], e);
	bitw_flush(&w);
}

uint64_t sfp__unpack_codes(uint8_t *codes, const uint8_t *src, uint64_t n, unsigned e)
{
	uint64_t nz = 0;
	size_t len = (size_t)div_ceil8(n * e);
	if (e == 8) {
		memcpy(codes, src, n);
	} else {
		for (uint64_t i = 0; i < n; i++)
			codes[i] = (uint8_t)bits_get(src, len, i * e, e);
	}
	for (uint64_t i = 0; i < n; i++)
		nz += codes[i] != 0;
	return nz;
}

/* ---- exceptions ------------------------------------------------------------- */

static size_t put_varint(uint8_t *p, uint64_t v)
{
	size_t n = 0;
	while (v >= 0x80) {
		p[n++] = (uint8_t)(v | 0x80);
		v >>= 7;
	}
	p[n++] = (uint8_t)v;
	return n;
}

/* Exception indices are < 2^40, so a varint has at most 6 bytes. */
static int get_varint(const uint8_t *p, size_t len, size_t *pos, uint64_t *v)
{
	uint64_t r = 0;
	for (unsigned i = 0; i < 6; i++) {
		if (*pos >= len)
			return SFP_ECORRUPT;
		uint8_t b = p[(*pos)++];
		r |= (uint64_t)(b & 0x7f) << (7 * i);
		if (!(b & 0x80)) {
			if (i > 0 && b == 0)
				return SFP_ECORRUPT; /* not minimal */
			*v = r;
			return SFP_OK;
		}
	}
	return SFP_ECORRUPT;
}

/* ---- encode ------------------------------------------------------------------- */

size_t sfp_encode_bound(uint64_t n, unsigned ndim) { return SFP_ENCODE_BOUND(n, ndim); }

size_t sfp_encode_bound_params(uint64_t n, const uint64_t *shape, unsigned ndim,
			       const sfp_params *p)
{
	size_t b = SFP_ENCODE_BOUND(n, ndim);
	/* the 16 spare bytes hold a shift step and one offset */
	if (p->bias == SFP_BIAS_CHANNEL && ndim > 0)
		b += (size_t)shape[0];
	return b;
}

static int overflow_error(sfp_error *err, const float *src, uint64_t i, const sfp_params *p)
{
	return sfp_error_set(err, SFP_ERANGE,
			     "value %g at index %llu does not fit the container (e = %u, m = %u%s)",
			     (double)src[i], (unsigned long long)i, p->e, p->m,
			     p->window == SFP_WINDOW_FIXED ? ", fixed window" : ", rounds to infinity");
}

static int check_shape(uint64_t n, const uint64_t *shape, unsigned ndim, sfp_error *err)
{
	if (ndim > SFP_MAX_DIMS)
		return sfp_error_set(err, SFP_EINVAL, "%u dimensions (at most %d)", ndim,
				     SFP_MAX_DIMS);
	if (n > SFP_MAX_COUNT)
		return sfp_error_set(err, SFP_EINVAL, "%llu elements (at most 2^40)",
				     (unsigned long long)n);
	uint64_t prod = 1;
	for (unsigned i = 0; i < ndim; i++) {
		if (shape[i] && prod > SFP_MAX_COUNT / shape[i])
			return sfp_error_set(err, SFP_EINVAL, "shape too large");
		prod *= shape[i];
	}
	if (prod != n)
		return sfp_error_set(err, SFP_EINVAL, "shape holds %llu elements, not %llu",
				     (unsigned long long)prod, (unsigned long long)n);
	return SFP_OK;
}

/* Quantization plan for (src, params): the window from the max pass. */
static int make_plan(qplan *q, kernels *k, const float *src, uint64_t n, const sfp_params *p,
		     sfp_error *err)
{
	plan_init(q, p);
	if (p->window == SFP_WINDOW_FIXED) {
		plan_window(q, p->exp_hi);
		return SFP_OK;
	}
	if (p->e == 8) {
		/* The window is every normal exponent whatever the data; a value
		 * rounding past 254 is caught by the element rule (E > hi). */
		plan_window(q, 254);
		return SFP_OK;
	}
	unsigned emax = 0;
	uint64_t bad = 0;
	if (k->max_exp(q, src, n, &emax, &bad) != Q_OK)
		return overflow_error(err, src, bad, p);
	plan_window(q, emax ? emax : 1);
	return SFP_OK;
}

/* The refinement side bytes for src under plan q (docs/refine.md), written
 * to out[0..room): the container values are recomputed by the reference
 * rule, the tools fitted, and only those that pay are kept. */
static int refine_encode(const qplan *q, const float *src, uint64_t n, uint64_t lead,
			 const sfp_params *p, uint8_t *out, size_t room, size_t *side,
			 unsigned *flags, sfp_error *err)
{
	/* a scalar has no channels: its one offset is the tensor's */
	int bias = p->bias == SFP_BIAS_CHANNEL && !lead ? SFP_BIAS_TENSOR : p->bias;
	uint64_t groups = bias == SFP_BIAS_CHANNEL ? lead : 1;
	float *qv = malloc((size_t)n * sizeof *qv);
	uint8_t *sb = malloc((size_t)groups + 1);
	int rc = SFP_OK;
	if (!qv || !sb) {
		rc = sfp_error_set(err, SFP_ENOMEM, "out of memory for refinement");
		goto out;
	}
	for (uint64_t i = 0; i < n; i++) {
		uint32_t u = f2u(src[i]);
		unsigned code, sign;
		uint32_t mant;
		int r = quant_one(q, u, i, &code, &sign, &mant);
		qv[i] = u2f(r == Q_EXC ? u : assemble(q->lo, q->k, code, sign, mant));
	}
	*side = sfp__refine_fit(src, qv, n, groups, q->m, p->shift, bias, sb, flags);
	if (*side > room) {
		rc = sfp_error_set(err, SFP_ENOSPC, "no room for %zu bytes of refinement", *side);
		goto out;
	}
	memcpy(out, sb, *side);
out:
	free(qv);
	free(sb);
	return rc;
}

static int no_room(sfp_error *err, size_t cap)
{
	return sfp_error_set(err, SFP_ENOSPC, "%zu bytes cannot hold the container", cap);
}

/* The header flags of a quantized tensor: no sign stream when every nonzero
 * value has the same sign, and the informational policy bits. */
static unsigned encode_flags(const qplan *q, const qcounts *cnt, const sfp_params *p)
{
	unsigned flags = 0;
	if (cnt->nnz && cnt->nneg == 0)
		flags |= SFP_FLAG_SIGN_POS;
	else if (cnt->nnz && cnt->nneg == cnt->nnz)
		flags |= SFP_FLAG_SIGN_NEG;
	if (q->stochastic)
		flags |= SFP_FLAG_STOCHASTIC;
	if (q->under_min)
		flags |= SFP_FLAG_UNDER_MIN;
	if (q->saturate)
		flags |= SFP_FLAG_SATURATE;
	if (p->window == SFP_WINDOW_FIXED)
		flags |= SFP_FLAG_FIXED_WINDOW;
	return flags;
}

/* The exact size of src's exception region under q (see encode_exceptions). */
static uint64_t exceptions_size(const qplan *q, const float *src, uint64_t n)
{
	uint64_t last = 0, first = 1, eb = 0;
	uint8_t tmp[10];
	for (uint64_t i = 0; i < n; i++)
		if (is_exception(q, f2u(src[i]))) {
			eb += put_varint(tmp, first ? i : i - last) + 4;
			last = i;
			first = 0;
		}
	return eb;
}

/* Stored mode: the n quantized values as raw u32 at pay[0..4n), rebuilt
 * from c->codes, the mantissas (mant_b bytes) the quantization pass wrote
 * at pay, and the signs in c->sign. */
static int encode_stored(sfp_codec *c, const qplan *q, uint64_t nnz, const float *src,
			 uint64_t n, uint8_t *pay, uint64_t mant_b, sfp_error *err)
{
	const unsigned m = q->m, k = q->k, lo = q->lo;
	const uint8_t *codes = c->codes, *sign = c->sign;
	uint64_t mpos = 0, spos = 0;
	size_t slen = (size_t)div_ceil8(nnz);
	/* the values overwrite the mantissas: copy them aside first */
	uint8_t *mcopy = malloc((size_t)mant_b + 8);
	if (!mcopy)
		return sfp_error_set(err, SFP_ENOMEM, "out of memory");
	memcpy(mcopy, pay, (size_t)mant_b);
	for (uint64_t i = 0; i < n; i++) {
		uint32_t u = f2u(src[i]), v = 0;
		unsigned code = codes[i];
		if (code) {
			uint32_t f = bits_get(mcopy, (size_t)mant_b, mpos, m);
			unsigned s = bits_get(sign, slen, spos++, 1);
			mpos += m;
			v = assemble(lo, k, code, s, f);
		} else if (is_exception(q, u)) {
			v = u;
		}
		sfp_store_le32(pay + 4 * i, v);
	}
	free(mcopy);
	return SFP_OK;
}

/* The exception region at e0 (room until eend): for each of the nexc
 * exceptions of src a LEB128 gap from the previous one (the first: its
 * index), then its raw bits. *bytes is the region's size. */
static int encode_exceptions(const qplan *q, const float *src, uint64_t n, uint64_t nexc,
			     uint8_t *e0, const uint8_t *eend, size_t *bytes, size_t cap,
			     sfp_error *err)
{
	uint8_t *ep = e0;
	uint64_t last = 0;
	int first = 1;
	for (uint64_t i = 0, left = nexc; left && i < n; i++) {
		uint32_t u = f2u(src[i]);
		if (!is_exception(q, u))
			continue;
		if (eend - ep < 10)
			return no_room(err, cap);
		ep += put_varint(ep, first ? i : i - last);
		sfp_store_le32(ep, u);
		ep += 4;
		last = i;
		first = 0;
		left--;
	}
	*bytes = (size_t)(ep - e0);
	return SFP_OK;
}

/* The n exponent codes of c->codes at xp[0..room): a Gecko stream when
 * p asks for one and it is smaller than the raw packing (exp_raw bytes),
 * else packed raw. Sets *coder and *bytes. */
static int encode_exponents(sfp_codec *c, const kernels *k, int isa, const sfp_params *p,
			    unsigned e, uint64_t n, uint8_t *xp, size_t room, uint64_t exp_raw,
			    unsigned *coder, size_t *bytes, size_t cap, sfp_error *err)
{
	if (p->gecko && n > 0) {
		size_t wb = sfp_gecko_work_bytes(n);
		if (grow(&c->work, &c->work_cap, wb) < 0)
			return sfp_error_set(err, SFP_ENOMEM, "out of memory");
		size_t gcap = (size_t)exp_raw < room ? (size_t)exp_raw : room, gw = 0;
		int rc = sfp_gecko_encode(xp, gcap, &gw, c->codes, n, e, &p->gecko_opts, isa,
					  c->work, c->work_cap, err);
		if (rc == SFP_OK && gw < exp_raw) {
			*coder = SFP_EXP_GECKO;
			*bytes = gw;
			return SFP_OK;
		}
		if (rc < 0 && rc != SFP_ENOSPC)
			return rc;
	}
	if (room < exp_raw)
		return no_room(err, cap);
	k->pack_codes(xp, c->codes, n, e);
	*coder = SFP_EXP_RAW;
	*bytes = (size_t)exp_raw;
	return SFP_OK;
}

/* Write the header of the finished payload pay[0..payload) at out. */
static void encode_header(uint8_t *out, const qplan *q, unsigned flags, unsigned coder,
			  uint64_t n, const qcounts *cnt, size_t exp_b, const uint8_t *pay,
			  size_t payload, const uint64_t *shape, unsigned ndim)
{
	hdr h = {.version = SFP_FORMAT_VERSION,
		 .e = (uint8_t)q->e,
		 .m = (uint8_t)q->m,
		 .exp_lo = (uint8_t)q->lo,
		 .flags = (uint16_t)flags,
		 .exp_coder = (uint8_t)coder,
		 .ndim = (uint8_t)ndim,
		 .count = n,
		 .nnz = cnt->nnz,
		 .n_exceptions = cnt->nexc,
		 .exp_bytes = exp_b,
		 .payload_bytes = payload,
		 .payload_crc = sfp_crc32c(0, pay, payload)};
	memcpy(h.magic, hdr_magic, sizeof h.magic);
	hdr_store(out, &h, shape);
}

static int encode_impl(sfp_codec *c, int isa, void *dst, size_t cap, size_t *written,
		       const float *src, uint64_t n, const uint64_t *shape, unsigned ndim,
		       const sfp_params *p, sfp_error *err)
{
	uint8_t *out = dst;
	kernels k = pick(isa);
	qplan q;

	*written = 0;
	SFP_TRY(sfp_params_check(p, err));
	SFP_TRY(check_shape(n, shape, ndim, err));
	size_t hb = SFP_HEADER_BYTES(ndim);
	if (cap < hb)
		return sfp_error_set(err, SFP_ENOSPC, "%zu bytes cannot hold the header", cap);
	SFP_TRY(make_plan(&q, &k, src, n, p, err));

	if (grow((void **)&c->codes, &c->codes_cap, (size_t)n) < 0 ||
	    grow((void **)&c->sign, &c->sign_cap, (size_t)div_ceil8(n)) < 0)
		return sfp_error_set(err, SFP_ENOMEM, "out of memory for %llu elements",
				     (unsigned long long)n);

	/* Mantissas stream straight into the payload; signs into scratch. */
	bitw mw, sw;
	qcounts cnt = {0, 0, 0};
	uint64_t bad = 0;
	uint8_t *pay = out + hb;
	size_t pcap = cap - hb;
	bitw_init(&mw, pay, pcap);
	bitw_init(&sw, c->sign, c->sign_cap);
	if (k.quant_pass(&q, src, n, c->codes, &mw, &sw, &cnt, &bad) != Q_OK)
		return overflow_error(err, src, bad, p);
	bitw_flush(&mw);
	bitw_flush(&sw);

	unsigned flags = encode_flags(&q, &cnt, p);
	uint64_t mant_b = div_ceil8(cnt.nnz * q.m), sign_b = sign_region(cnt.nnz, flags);
	uint64_t exp_raw = div_ceil8(n * q.e);
	/* Exceptions cost at most 10 bytes each; stored mode caps the total. */
	uint64_t streams_max = mant_b + sign_b + 10 * cnt.nexc + exp_raw;
	if (streams_max > 4 * n && cnt.nexc) /* measure them exactly before giving up on streams */
		streams_max = mant_b + sign_b + exceptions_size(&q, src, n) + exp_raw;
	unsigned coder = SFP_EXP_RAW;
	size_t exc_b = 0, exp_b = 0, payload;

	if (streams_max > 4 * n) {
		/* Stored: the quantized values as raw u32. */
		coder = SFP_EXP_STORED;
		if (pcap < 4 * n)
			return no_room(err, cap);
		SFP_TRY(encode_stored(c, &q, cnt.nnz, src, n, pay, mant_b, err));
		flags &= ~(SFP_FLAG_SIGN_POS | SFP_FLAG_SIGN_NEG);
		payload = (size_t)(4 * n);
	} else {
		/* Streams: mantissas (already in place), signs, exceptions, codes. */
		if (mw.overflow || pcap < mant_b + sign_b)
			return no_room(err, cap);
		if (sign_b)
			memcpy(pay + mant_b, c->sign, (size_t)sign_b);
		uint8_t *e0 = pay + mant_b + sign_b;
		SFP_TRY(encode_exceptions(&q, src, n, cnt.nexc, e0, pay + pcap, &exc_b, cap, err));
		SFP_TRY(encode_exponents(c, &k, isa, p, q.e, n, e0 + exc_b,
					 pcap - (size_t)(mant_b + sign_b) - exc_b, exp_raw, &coder,
					 &exp_b, cap, err));
		payload = (size_t)(mant_b + sign_b) + exc_b + exp_b;
	}

	if ((p->bias || p->shift) && cnt.nnz) {
		size_t side = 0;
		unsigned rf = 0;
		SFP_TRY(refine_encode(&q, src, n, ndim ? shape[0] : 0, p, pay + payload,
				      pcap - payload, &side, &rf, err));
		flags |= rf;
		payload += side;
	}
	encode_header(out, &q, flags, coder, n, &cnt, exp_b, pay, payload, shape, ndim);
	*written = hb + payload;
	return SFP_OK;
}

int sfp_encode(sfp_codec *c, void *dst, size_t cap, size_t *written, const float *src,
	       uint64_t n, const uint64_t *shape, unsigned ndim, const sfp_params *p,
	       sfp_error *err)
{
	return encode_impl(c, c->isa, dst, cap, written, src, n, shape, ndim, p, err);
}

int sfp_encode_ref(void *dst, size_t cap, size_t *written, const float *src, uint64_t n,
		   const uint64_t *shape, unsigned ndim, const sfp_params *p, sfp_error *err)
{
	sfp_codec c;
	codec_init(&c, SFP_ISA_SCALAR);
	int rc = encode_impl(&c, SFP_ISA_SCALAR, dst, cap, written, src, n, shape, ndim, p, err);
	codec_release(&c);
	return rc;
}

/* ---- decode -------------------------------------------------------------------- */

/* Zero padding bits after `bits` bits of a region of `len` bytes. */
static int padding_ok(const uint8_t *r, size_t len, uint64_t bits)
{
	if (bits & 7)
		return (r[len - 1] >> (bits & 7)) == 0;
	return 1;
}

/* Is u a value the container (e, m, window) can hold? (stored mode) */
static int representable(const sfp_info *in, uint32_t u, int *is_exc, int *nonzero)
{
	unsigned E = (u >> 23) & 0xff;
	uint32_t M = u & 0x7fffff;
	int lossless = in->e == 8 && in->m == 23;
	*is_exc = E == 255 || (lossless && E == 0 && u != 0);
	*nonzero = 0;
	if (*is_exc)
		return 1;
	if (u == 0)
		return 1;
	if (E == 0)
		return 0; /* -0 or subnormal in a lossy container */
	if (E < in->exp_lo || E > in->exp_hi)
		return 0;
	if (in->m < 23 && (M & ((1u << (23 - in->m)) - 1)))
		return 0;
	*nonzero = 1;
	return 1;
}

/* Apply the container's refinement (if any) to its decoded values; the
 * side bytes are the payload's last. dst NULL: validate only. */
static int refine_decode(const sfp_info *in, const uint8_t *pay, float *dst, sfp_error *err)
{
	if (!in->side_bytes)
		return SFP_OK;
	const uint8_t *side = pay + in->payload_bytes - in->side_bytes;
	if ((in->flags & SFP_FLAG_SHIFT) && side[0] == 0)
		return sfp_error_set(err, SFP_ECORRUPT, "shift flag with a zero step");
	if (dst)
		sfp__refine_apply(dst, in->count, in->bias_groups, in->m, in->flags, side);
	return SFP_OK;
}

/* Stored mode: every raw value must be one the container can hold and,
 * together, match the header's counts. Writes the values to dst and/or
 * their exponent codes to codes_out (either may be NULL). */
static int decode_stored(const sfp_info *in, const uint8_t *pay, float *dst, uint8_t *codes_out,
			 sfp_error *err)
{
	const uint64_t n = in->count;
	const unsigned lo = in->exp_lo;
	uint64_t nz = 0, ne = 0;
	for (uint64_t i = 0; i < n; i++) {
		uint32_t u = sfp_load_le32(pay + 4 * i);
		int exc, nonzero;
		if (!representable(in, u, &exc, &nonzero))
			return sfp_error_set(err, SFP_ECORRUPT,
					     "stored value 0x%08x at index %llu is not "
					     "representable",
					     u, (unsigned long long)i);
		nz += nonzero;
		ne += exc;
		if (dst)
			dst[i] = u2f(u);
		if (codes_out)
			codes_out[i] = nonzero ? (uint8_t)(((u >> 23) & 0xff) - lo + 1) : 0;
	}
	if (nz != in->nnz || ne != in->n_exceptions)
		return sfp_error_set(err, SFP_ECORRUPT,
				     "stored values have %llu nonzero / %llu exceptions, "
				     "header says %llu / %llu",
				     (unsigned long long)nz, (unsigned long long)ne,
				     (unsigned long long)in->nnz,
				     (unsigned long long)in->n_exceptions);
	return refine_decode(in, pay, dst, err);
}

/* The exponent codes of the region expr into codes[0..count): each inside
 * the window, and as many nonzero ones as the header says. */
static int decode_exponents(sfp_codec *c, const kernels *k, int isa, const sfp_info *in,
			    const uint8_t *expr, uint8_t *codes, sfp_error *err)
{
	const uint64_t n = in->count;
	uint64_t nz = 0;
	if (in->exp_coder == SFP_EXP_RAW) {
		if (!padding_ok(expr, in->exp_bytes, n * in->e))
			return sfp_error_set(err, SFP_ECORRUPT, "nonzero padding in exponent region");
		nz = k->unpack_codes(codes, expr, n, in->e);
	} else {
		size_t wb = sfp_gecko_work_bytes(n);
		if (grow(&c->work, &c->work_cap, wb) < 0)
			return sfp_error_set(err, SFP_ENOMEM, "out of memory");
		SFP_TRY(sfp_gecko_decode(codes, n, in->e, expr, in->exp_bytes, isa, c->work,
					 c->work_cap, err));
		nz = k->count_nonzero(codes, n);
	}
	unsigned max_code = in->exp_hi - in->exp_lo + 1;
	if (in->e == 8 && memchr(codes, 255, (size_t)n)) {
		for (uint64_t i = 0; i < n; i++)
			if (codes[i] > max_code)
				return sfp_error_set(err, SFP_ECORRUPT,
						     "exponent code %u at index %llu is outside the "
						     "window",
						     codes[i], (unsigned long long)i);
	}
	if (nz != in->nnz)
		return sfp_error_set(err, SFP_ECORRUPT,
				     "%llu nonzero exponent codes, header says %llu",
				     (unsigned long long)nz, (unsigned long long)in->nnz);
	return SFP_OK;
}

/* Validate the whole exception region exc before any value is written:
 * increasing in-range indices at zero codes, each holding a value that
 * only an exception can carry, and no bytes left over. */
static int check_exceptions(const sfp_info *in, const uint8_t *exc, const uint8_t *codes,
			    sfp_error *err)
{
	const uint64_t n = in->count;
	qplan q;
	memset(&q, 0, sizeof q);
	q.lossless = in->e == 8 && in->m == 23;
	size_t pos = 0;
	uint64_t idx = 0;
	for (uint64_t j = 0; j < in->n_exceptions; j++) {
		uint64_t d;
		if (get_varint(exc, in->exc_bytes, &pos, &d) < 0 || in->exc_bytes - pos < 4)
			return sfp_error_set(err, SFP_ECORRUPT, "exception %llu is malformed",
					     (unsigned long long)j);
		if (j > 0 && d == 0)
			return sfp_error_set(err, SFP_ECORRUPT, "exception indices do not increase");
		idx = j ? idx + d : d;
		if (idx >= n || (j && idx < d))
			return sfp_error_set(err, SFP_ECORRUPT, "exception index %llu out of range",
					     (unsigned long long)idx);
		if (codes[idx] != 0)
			return sfp_error_set(err, SFP_ECORRUPT,
					     "exception at index %llu has a nonzero code",
					     (unsigned long long)idx);
		uint32_t u = sfp_load_le32(exc + pos);
		pos += 4;
		if (!is_exception(&q, u))
			return sfp_error_set(err, SFP_ECORRUPT,
					     "exception at index %llu holds an ordinary value "
					     "0x%08x",
					     (unsigned long long)idx, u);
	}
	if (pos != in->exc_bytes)
		return sfp_error_set(err, SFP_ECORRUPT, "%zu unused bytes in the exception region",
				     in->exc_bytes - pos);
	return SFP_OK;
}

/* Put the raw values of the (checked) exception region exc into dst. */
static void patch_exceptions(const sfp_info *in, const uint8_t *exc, float *dst)
{
	size_t pos = 0;
	uint64_t idx = 0;
	for (uint64_t j = 0; j < in->n_exceptions; j++) {
		uint64_t d = 0;
		get_varint(exc, in->exc_bytes, &pos, &d);
		idx = j ? idx + d : d;
		dst[idx] = u2f(sfp_load_le32(exc + pos));
		pos += 4;
	}
}

static int decode_impl(sfp_codec *c, int isa, float *dst, uint64_t cap_count, uint8_t *codes_out,
		       const void *src, size_t len, sfp_info *info_out, sfp_error *err)
{
	sfp_info in;
	const uint8_t *s = src;
	kernels k = pick(isa);

	SFP_TRY(sfp_inspect(src, len, &in, err));
	if (info_out)
		*info_out = in;
	if (len != in.total_bytes)
		return sfp_error_set(err, SFP_ECORRUPT, "%zu trailing bytes after the container",
				     len - in.total_bytes);
	if (cap_count < in.count)
		return sfp_error_set(err, SFP_ENOSPC, "room for %llu values, container has %llu",
				     (unsigned long long)cap_count,
				     (unsigned long long)in.count);
	const uint8_t *pay = s + in.header_bytes;
	uint32_t crc = sfp_crc32c(0, pay, in.payload_bytes);
	const uint32_t stored = sfp_load_le32(s + HDR_AT(payload_crc));
	if (crc != stored)
		return sfp_error_set(err, SFP_ECHECKSUM, "payload crc %08x != stored %08x", crc,
				     stored);
	if (in.exp_coder == SFP_EXP_STORED)
		return decode_stored(&in, pay, dst, codes_out, err);

	const uint8_t *mant = pay, *sign = mant + in.mant_bytes, *exc = sign + in.sign_bytes,
		      *expr = exc + in.exc_bytes;
	uint8_t *codes = codes_out;
	if (!codes) {
		if (grow((void **)&c->codes, &c->codes_cap, (size_t)in.count) < 0)
			return sfp_error_set(err, SFP_ENOMEM, "out of memory");
		codes = c->codes;
	}
	SFP_TRY(decode_exponents(c, &k, isa, &in, expr, codes, err));
	if (in.mant_bytes && !padding_ok(mant, in.mant_bytes, in.nnz * in.m))
		return sfp_error_set(err, SFP_ECORRUPT, "nonzero padding in mantissa region");
	if (in.sign_bytes && !padding_ok(sign, in.sign_bytes, in.nnz))
		return sfp_error_set(err, SFP_ECORRUPT, "nonzero padding in sign region");
	SFP_TRY(check_exceptions(&in, exc, codes, err));
	if (!dst)
		return refine_decode(&in, pay, NULL, err);

	int sign_mode = (in.flags & SFP_FLAG_SIGN_POS) ? 1 : (in.flags & SFP_FLAG_SIGN_NEG) ? 2 : 0;
	k.assemble(dst, codes, in.count, in.exp_lo, in.m, mant, in.mant_bytes, sign, in.sign_bytes,
		   sign_mode);
	patch_exceptions(&in, exc, dst);
	return refine_decode(&in, pay, dst, err);
}

int sfp_decode(sfp_codec *c, float *dst, uint64_t cap_count, const void *src, size_t len,
	       sfp_info *info, sfp_error *err)
{
	if (!dst)
		return sfp_error_set(err, SFP_EINVAL, "no destination");
	return decode_impl(c, c->isa, dst, cap_count, NULL, src, len, info, err);
}

int sfp_decode_ref(float *dst, uint64_t cap_count, const void *src, size_t len, sfp_info *info,
		   sfp_error *err)
{
	sfp_codec c;
	codec_init(&c, SFP_ISA_SCALAR);
	int rc = dst ? decode_impl(&c, SFP_ISA_SCALAR, dst, cap_count, NULL, src, len, info, err)
		     : sfp_error_set(err, SFP_EINVAL, "no destination");
	codec_release(&c);
	return rc;
}

int sfp_decode_codes(sfp_codec *c, uint8_t *codes, uint64_t cap, const void *src, size_t len,
		     sfp_error *err)
{
	sfp_info in;
	SFP_TRY(sfp_inspect(src, len, &in, err));
	if (cap < in.count)
		return sfp_error_set(err, SFP_ENOSPC, "room for %llu codes, container has %llu",
				     (unsigned long long)cap, (unsigned long long)in.count);
	return decode_impl(c, c->isa, NULL, in.count, codes, src, len, NULL, err);
}

/* ---- fake quantization ------------------------------------------------------- */

/*
 * The element rule for nearest rounding without saturation, written without
 * branches so the compiler vectorises it (AVX-512/AVX2 clones): the result
 * is x itself for exceptions, 0 (or the window's smallest value under MIN)
 * for zeros and values below the window, else sign | rounded magnitude
 * (code + lo - 1 and the kept mantissa bits are exactly those bits). Returns
 * n, or the start of the block holding the first value past the window;
 * that block is not written (each block goes through a local buffer), so
 * the caller's reference loop reports the value even in place. Tested bit
 * for bit against that loop.
 */
#if defined(__x86_64__) && !defined(SFP_NO_CLONES)
__attribute__((target_clones("avx512f", "avx2", "default")))
#endif
static uint64_t quantize_nearest(const qplan *q, float *dst, const float *src, uint64_t n)
{
	const uint32_t k = q->k, mask = k ? (1u << k) - 1 : 0, half = k ? (1u << (k - 1)) - 1 : 0;
	const uint32_t lo = q->lo, hi = q->hi, lossless = (uint32_t)q->lossless;
	const uint32_t minv = q->under_min ? lo << 23 : 0;
	uint32_t over = 0;
	enum { BLOCK = 1024 };
	uint32_t out[BLOCK];
	for (uint64_t b0 = 0; b0 < n; b0 += BLOCK) {
		const uint64_t b1 = b0 + BLOCK < n ? b0 + BLOCK : n;
		for (uint64_t i = b0; i < b1; i++) {
			uint32_t x, r;
			memcpy(&x, &src[i], 4);
			const uint32_t a = x & 0x7fffffffu, E = a >> 23;
			const uint32_t exc = (E == 255) | (lossless & (E == 0) & (x != 0));
			const uint32_t ar = (a + half + ((a >> k) & 1u & (k != 0))) & ~mask;
			const uint32_t Er = ar >> 23;
			const uint32_t sign = x & 0x80000000u;
			r = ar == 0 ? 0 : Er < lo ? (minv ? sign | minv : 0) : sign | ar;
			r = exc ? x : r;
			over |= (uint32_t)(!exc & (Er > hi));
			out[i - b0] = r;
		}
		if (over)
			return b0;
		memcpy(dst + b0, out, (size_t)(b1 - b0) * 4);
	}
	return n;
}

/* One value through the nearest, non-saturating element rule: the
 * quantized float, *over = 1 past the window. */
static float quantize_one(const qplan *q, float xf, uint64_t i, int *over)
{
	unsigned code, sign;
	uint32_t mant, u = f2u(xf);
	int r = quant_one(q, u, i, &code, &sign, &mant);
	*over |= r == Q_OVERFLOW;
	return u2f(r == Q_EXC ? u : assemble(q->lo, q->k, code, sign, mant));
}

uint64_t sfp__diff_dot_ref(const qplan *qa, const qplan *qb, const float *g, const float *x,
			   uint64_t n, double *acc)
{
	for (uint64_t b0 = 0; b0 < n; b0 += 1024) {
		const uint64_t b1 = b0 + 1024 < n ? b0 + 1024 : n;
		int over = 0;
		for (uint64_t i = b0; i < b1; i++) {
			const float a = qa ? quantize_one(qa, x[i], i, &over) : x[i];
			const float b = quantize_one(qb, x[i], i, &over);
			acc[i % SFP_DOT_LANES] += (double)g[i] * ((double)a - (double)b);
		}
		if (over)
			return b0;
	}
	return n;
}

static int dot_plan(qplan *q, const sfp_params *p, sfp_error *err)
{
	SFP_TRY(sfp_params_check(p, err));
	if (p->window != SFP_WINDOW_FIXED || p->rounding != SFP_ROUND_NEAREST ||
	    p->overflow != SFP_OVERFLOW_ERROR)
		return sfp_error_set(err, SFP_EINVAL,
				     "diff-dot needs FIXED windows, nearest rounding, overflow ERROR");
	plan_init(q, p);
	plan_window(q, p->exp_hi);
	return SFP_OK;
}

int sfp_quantize_diff_dot(sfp_codec *c, const float *g, const float *x, uint64_t n,
			  const sfp_params *pa, const sfp_params *pb, double *sum, sfp_error *err)
{
	qplan qa, qb;
	if (pa)
		SFP_TRY(dot_plan(&qa, pa, err));
	SFP_TRY(dot_plan(&qb, pb, err));
	double acc[SFP_DOT_LANES] = {0};
	uint64_t done = c->isa >= SFP_ISA_AVX512
				? sfp__diff_dot_avx512(pa ? &qa : NULL, &qb, g, x, n, acc)
				: sfp__diff_dot_ref(pa ? &qa : NULL, &qb, g, x, n, acc);
	if (done < n) {
		/* report the first value past a window */
		for (uint64_t i = done; i < n; i++) {
			int over = 0;
			if (pa)
				(void)quantize_one(&qa, x[i], i, &over);
			if (over)
				return overflow_error(err, x, i, pa);
			(void)quantize_one(&qb, x[i], i, &over);
			if (over)
				return overflow_error(err, x, i, pb);
		}
	}
	for (int w = SFP_DOT_LANES / 2; w > 0; w /= 2) /* pairwise, in a fixed order */
		for (int j = 0; j < w; j++)
			acc[j] += acc[j + w];
	*sum = acc[0];
	return SFP_OK;
}

int sfp_quantize_window(sfp_codec *c, const float *src, uint64_t n, const sfp_params *p,
			unsigned *exp_hi, sfp_error *err)
{
	kernels k = pick(c->isa);
	qplan q;
	SFP_TRY(sfp_params_check(p, err));
	SFP_TRY(make_plan(&q, &k, src, n, p, err));
	*exp_hi = q.hi;
	return SFP_OK;
}

/* sfp_quantize's refinement: fit on (src, dst) as the encoder does, apply
 * as the decoder does. src is gone when dst == src, so the values are
 * requantized from a copy taken first -- see sfp_quantize. */
static int refine_quantized(float *dst, const float *x, uint64_t n, const sfp_params *p,
			    unsigned m, sfp_error *err)
{
	uint64_t groups = p->bias == SFP_BIAS_CHANNEL ? p->channels : 1;
	uint8_t *side = malloc((size_t)groups + 1);
	if (!side)
		return sfp_error_set(err, SFP_ENOMEM, "out of memory for refinement");
	unsigned flags = 0;
	int any = 0;
	for (uint64_t i = 0; i < n && !any; i++)
		any = dst[i] != 0.0f;
	if (any) {
		sfp__refine_fit(x, dst, n, groups, m, p->shift, p->bias, side, &flags);
		sfp__refine_apply(dst, n, groups, m, flags, side);
	}
	free(side);
	return SFP_OK;
}

int sfp_quantize(sfp_codec *c, float *dst, const float *src, uint64_t n, const sfp_params *p,
		 sfp_error *err)
{
	if (p->bias == SFP_BIAS_CHANNEL && (!p->channels || n % p->channels))
		return sfp_error_set(err, SFP_EINVAL,
				     "per-channel bias: %llu values are not %llu channels",
				     (unsigned long long)n, (unsigned long long)p->channels);
	if ((p->bias || p->shift) && dst == src) {
		/* in place: quantize from a copy, which the fit needs */
		float *x = malloc((size_t)n * sizeof *x + 1);
		if (!x)
			return sfp_error_set(err, SFP_ENOMEM, "out of memory for refinement");
		memcpy(x, src, (size_t)n * sizeof *x);
		int rc = sfp_quantize(c, dst, x, n, p, err);
		free(x);
		return rc;
	}
	kernels k = pick(c->isa);
	qplan q;
	SFP_TRY(sfp_params_check(p, err));
	SFP_TRY(make_plan(&q, &k, src, n, p, err));
	uint64_t start = 0;
	if (!q.stochastic && !q.saturate && c->isa >= SFP_ISA_AVX512)
		start = sfp__quantize_nearest_avx512(&q, dst, src, n);
	else if (!q.stochastic && !q.saturate && c->isa > SFP_ISA_SCALAR)
		start = quantize_nearest(&q, dst, src, n);
	for (uint64_t i = start; i < n; i++) {
		uint32_t u = f2u(src[i]);
		unsigned code, sign;
		uint32_t mant;
		int r = quant_one(&q, u, i, &code, &sign, &mant);
		if (r == Q_OVERFLOW)
			return overflow_error(err, src, i, p);
		dst[i] = u2f(r == Q_EXC ? u : assemble(q.lo, q.k, code, sign, mant));
	}
	return (p->bias || p->shift) && n ? refine_quantized(dst, src, n, p, q.m, err) : SFP_OK;
}
