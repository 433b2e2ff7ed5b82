/*
 * sfp/codec.h -- variable-width floating-point containers and Gecko exponent
 * coding. The wire format is specified in docs/format.md; this header is the
 * contract of the functions that read and write it.
 *
 * A container keeps, for each float32 value, its sign, an e-bit exponent code
 * (1 <= e <= 8) and the top m mantissa bits (0 <= m <= 23). Exponent code 0
 * means "zero"; codes 1 .. 2^e-1 stand for the biased exponents
 * exp_lo .. exp_lo + 2^e - 2 (the tensor's exponent window). Zeros cost only
 * their exponent code: the sign and mantissa streams skip them. e = 8, m = 23
 * is bit-exact for every float32 bit pattern.
 *
 * All functions write into the caller's buffer and capacity and never
 * overrun it; all decoders validate their whole input and return an error
 * (never crash, never read out of bounds) on corrupt, truncated or forged data.
 */
#ifndef SFP_CODEC_H
#define SFP_CODEC_H

#include <stddef.h>
#include <stdint.h>

#include "sfp/common.h"

#ifdef __cplusplus
extern "C" {
#endif

#define SFP_FORMAT_VERSION 2
#define SFP_MAX_DIMS 8
#define SFP_HEADER_FIXED_BYTES 64
#define SFP_HEADER_BYTES(ndim) (SFP_HEADER_FIXED_BYTES + 8u * (size_t)(ndim))
/* Largest element count a container may hold (2^40). */
#define SFP_MAX_COUNT ((uint64_t)1 << 40)

/* ---- options ------------------------------------------------------------ */
enum sfp_rounding { SFP_ROUND_NEAREST = 0, SFP_ROUND_STOCHASTIC = 1 };
/* AUTO puts the window's top at the largest exponent of the rounded tensor,
 * so nothing overflows; FIXED puts it at params.exp_hi. */
enum sfp_window { SFP_WINDOW_AUTO = 0, SFP_WINDOW_FIXED = 1 };
/* Nonzero values below the window: flushed to +0 (ZERO) or set to the
 * smallest magnitude of the window, 2^(exp_lo-127), keeping the sign (MIN). */
enum sfp_underflow { SFP_UNDERFLOW_ZERO = 0, SFP_UNDERFLOW_MIN = 1 };
/* Values above a FIXED window: encode fails (ERROR) or they become the
 * largest magnitude of the window, keeping the sign (SATURATE). */
enum sfp_overflow { SFP_OVERFLOW_ERROR = 0, SFP_OVERFLOW_SATURATE = 1 };

/* Gecko variants (docs/gecko.md has the ablation behind the default). */
enum sfp_gecko_variant {
	SFP_GECKO_AUTO = 0,  /* the encoder picks the smallest variant per tensor */
	SFP_GECKO_DELTA = 1, /* the paper's grouped delta coding */
	SFP_GECKO_ANS0 = 2,  /* static order-0 rANS over the exponent codes */
	SFP_GECKO_ANS1 = 3   /* rANS with the previous code as context */
};
enum sfp_gecko_ref {
	SFP_GECKO_REF_MIN = 0,   /* group reference = the group's minimum */
	SFP_GECKO_REF_FIXED = 1, /* one reference for the whole tensor */
	SFP_GECKO_REF_PREV = 2   /* reference = the previous code (signed deltas) */
};

typedef struct sfp_gecko_opts {
	int variant;        /* enum sfp_gecko_variant */
	unsigned group;     /* DELTA: codes per group, 8, 16, 32 or 64 */
	int reference;      /* DELTA: enum sfp_gecko_ref */
} sfp_gecko_opts;

/* Defaults: the variant, group size and reference chosen in docs/gecko.md. */
void sfp_gecko_opts_init(sfp_gecko_opts *o);

typedef struct sfp_params {
	unsigned e;          /* exponent bits, 1..8 */
	unsigned m;          /* mantissa bits, 0..23 */
	int rounding;        /* enum sfp_rounding; default NEAREST (ties to even) */
	uint32_t seed;       /* STOCHASTIC: random bits of element i are sfp_hash32(seed', i) */
	int window;          /* enum sfp_window; default AUTO */
	unsigned exp_hi;     /* FIXED: biased exponent (1..254) at the window's top */
	int underflow;       /* enum sfp_underflow; default ZERO */
	int overflow;        /* enum sfp_overflow; default ERROR (only FIXED windows overflow) */
	int gecko;           /* 0: exponent codes packed raw (e bits each); 1: Gecko */
	sfp_gecko_opts gecko_opts;
	/* Decoder-side refinement (docs/refine.md; m <= SFP_REFINE_MAX_M):
	 * the encoder fits a correction of the reconstruction and signals it
	 * in a few side bytes, the decoder applies it. Off by default. */
	int bias;            /* enum sfp_bias: signaled offset per tensor or channel */
	int shift;           /* 1: entropy-gradient shift with a signaled step rho */
	uint64_t channels;   /* sfp_quantize with SFP_BIAS_CHANNEL: the leading dimension
			      * (n a multiple of it); sfp_encode takes shape[0] */
} sfp_params;

/* Refinement keeps a value inside its bin with a margin: m at most 20. */
#define SFP_REFINE_MAX_M 20
/* Bias correction granularity: one offset per tensor, or one per slice of
 * the leading dimension (output channels of a weight, batch rows). */
enum sfp_bias { SFP_BIAS_OFF = 0, SFP_BIAS_TENSOR = 1, SFP_BIAS_CHANNEL = 2 };

/* Fill `p` with the defaults for an (e, m) container. */
void sfp_params_init(sfp_params *p, unsigned e, unsigned m);
/* SFP_OK or SFP_EINVAL with a message naming the bad field. */
int sfp_params_check(const sfp_params *p, sfp_error *err);

/* ---- header -------------------------------------------------------------- */
/* Header flags. Unknown bits are rejected by decoders. */
#define SFP_FLAG_SIGN_POS 0x0001u     /* no sign stream: every nonzero value is positive */
#define SFP_FLAG_SIGN_NEG 0x0002u     /* no sign stream: every nonzero value is negative */
#define SFP_FLAG_STOCHASTIC 0x0004u   /* informational: stochastic rounding */
#define SFP_FLAG_UNDER_MIN 0x0008u    /* informational: underflow policy MIN */
#define SFP_FLAG_SATURATE 0x0010u     /* informational: overflow policy SATURATE */
#define SFP_FLAG_FIXED_WINDOW 0x0020u /* informational: window set by the caller */
#define SFP_FLAG_SHIFT 0x0040u        /* side byte: entropy-gradient shift step rho */
#define SFP_FLAG_BIAS 0x0080u         /* side bytes: bias offsets (one, or per channel) */
#define SFP_FLAG_BIAS_CHANNEL 0x0100u /* with BIAS: one offset per shape[0] slice */
#define SFP_FLAGS_KNOWN 0x01ffu

/* How the exponent codes are stored. */
enum sfp_exp_coder {
	SFP_EXP_RAW = 0,    /* e bits per code, LSB-first */
	SFP_EXP_GECKO = 1,  /* a Gecko stream (its first byte names the variant) */
	SFP_EXP_STORED = 2  /* no streams: payload is the n quantized values as raw u32 */
};

typedef struct sfp_info {
	unsigned version, e, m;
	unsigned exp_lo, exp_hi;  /* window: biased exponents of codes 1 and 2^e-1 */
	unsigned flags;           /* SFP_FLAG_* */
	unsigned exp_coder;       /* enum sfp_exp_coder */
	unsigned gecko_variant;   /* with SFP_EXP_GECKO: enum sfp_gecko_variant used */
	unsigned ndim;
	uint64_t shape[SFP_MAX_DIMS];
	uint64_t count;           /* elements */
	uint64_t nnz;             /* elements with a nonzero exponent code */
	uint64_t n_exceptions;    /* values carried raw (NaN, Inf, subnormals, -0 when lossless) */
	size_t header_bytes, payload_bytes, total_bytes;
	size_t sign_bytes, mant_bytes, exc_bytes, exp_bytes; /* the payload's regions */
	size_t side_bytes;        /* refinement side information (payload's last bytes) */
	unsigned rho;             /* SHIFT: step code 1..255 (rho = code / 64), else 0 */
	uint64_t bias_groups;     /* BIAS: number of offsets, else 0 */
} sfp_info;

/* Parse and validate the header of `src` (magic, version, fields, header
 * CRC, region sizes against len). Does not read the payload. */
int sfp_inspect(const void *src, size_t len, sfp_info *info, sfp_error *err);

/* ---- containers -------------------------------------------------------- */
/* Reusable, opaque codec context; holds scratch memory and the ISA choice. */
typedef struct sfp_codec sfp_codec;

/* Returns NULL when out of memory. The ISA defaults to sfp_cpu_isa(). */
sfp_codec *sfp_codec_create(void);
/* Frees the context and its scratch; NULL is fine. */
void sfp_codec_free(sfp_codec *c);
/* Cap the SIMD level used (tests and benchmarks); SFP_EINVAL if the CPU
 * cannot run it. */
int sfp_codec_set_isa(sfp_codec *c, int isa);
int sfp_codec_isa(const sfp_codec *c);

/* Bytes that always suffice for sfp_encode of n elements; cannot fail.
 * This covers every parameter set except per-channel bias (SFP_BIAS_CHANNEL),
 * whose side bytes (one per shape[0] slice) sfp_encode_bound_params adds. */
#define SFP_ENCODE_BOUND(n, ndim) (SFP_HEADER_BYTES(ndim) + 4u * (size_t)(n) + 16u)
size_t sfp_encode_bound(uint64_t n, unsigned ndim);
/* The bound for these params and shape (per-channel bias included). */
size_t sfp_encode_bound_params(uint64_t n, const uint64_t *shape, unsigned ndim,
			       const sfp_params *p);

/*
 * Encode `n` floats with shape shape[0..ndim) (the product must be n;
 * ndim 0 is a scalar, n == 1) into dst[0..cap). On success *written is the
 * container's size. Errors: SFP_EINVAL (params, shape), SFP_ENOSPC (cap),
 * SFP_ERANGE (a value overflows float32 when rounded, or overflows a FIXED
 * window with overflow = ERROR; the message names the index).
 * The output is a deterministic function of (src, shape, params).
 */
int sfp_encode(sfp_codec *c, void *dst, size_t cap, size_t *written, const float *src,
	       uint64_t n, const uint64_t *shape, unsigned ndim, const sfp_params *p,
	       sfp_error *err);

/*
 * Decode the container src[0..len) into dst[0..cap_count). len must be the
 * container's exact size (sfp_inspect tells it). Fills *info if non-NULL.
 * Errors: SFP_ENOSPC (cap_count < count), SFP_ETRUNC, SFP_ECORRUPT,
 * SFP_ECHECKSUM, SFP_EVERSION.
 */
int sfp_decode(sfp_codec *c, float *dst, uint64_t cap_count, const void *src, size_t len,
	       sfp_info *info, sfp_error *err);

/* Decode only the exponent codes (count of them) into codes[0..cap). */
int sfp_decode_codes(sfp_codec *c, uint8_t *codes, uint64_t cap, const void *src, size_t len,
		     sfp_error *err);

/*
 * Fake quantization: dst[i] is exactly what encode + decode of src would
 * give (dst may equal src). Same errors as sfp_encode; on SFP_ERANGE the
 * values before the one reported are quantized and dst is untouched from
 * it on (in place: the value that does not fit is still there, never an
 * Inf made by rounding).
 */
int sfp_quantize(sfp_codec *c, float *dst, const float *src, uint64_t n, const sfp_params *p,
		 sfp_error *err);

/*
 * The top of the exponent window (a biased exponent, 1..254) that
 * sfp_encode and sfp_quantize pick for src under p: with an AUTO window from
 * the data (one max pass), with a FIXED one p->exp_hi. Quantizing pieces of
 * src with p.window = FIXED at this top gives exactly sfp_quantize's values
 * for the whole of src (blocked or parallel passes over one tensor).
 * Same errors as sfp_quantize. This and sfp_quantize only read the
 * context: threads may share one.
 */
int sfp_quantize_window(sfp_codec *c, const float *src, uint64_t n, const sfp_params *p,
			unsigned *exp_hi, sfp_error *err);

/*
 * *sum = sum_i g[i] (Q(x[i], pa) - Q(x[i], pb)) without storing either
 * quantization (pa NULL: x[i] itself) -- the inner sum of a learned width's
 * gradient. Both params must have FIXED windows (from sfp_quantize_window
 * for the values of sfp_quantize), nearest rounding and overflow ERROR,
 * else SFP_EINVAL; a value past a window is SFP_ERANGE as in sfp_quantize.
 * The sum is formed in 16 double lanes, element i in lane i % 16 adding
 * g * (a - b) (a product, then a sum: no fused multiply-add), the lanes
 * then added pairwise (lane j + lane j + 8, then + 4, + 2, + 1): the same
 * bits on every ISA. Only reads the context.
 */
int sfp_quantize_diff_dot(sfp_codec *c, const float *g, const float *x, uint64_t n,
			  const sfp_params *pa, const sfp_params *pb, double *sum,
			  sfp_error *err);

/* Scalar reference versions of encode and decode: same bytes, same values. */
int sfp_encode_ref(void *dst, size_t cap, size_t *written, const float *src, uint64_t n,
		   const uint64_t *shape, unsigned ndim, const sfp_params *p, sfp_error *err);
int sfp_decode_ref(float *dst, uint64_t cap_count, const void *src, size_t len,
		   sfp_info *info, sfp_error *err);

/* ---- Gecko: lossless coding of a stream of e-bit exponent codes --------- */
/* Bytes that always suffice for a Gecko stream of n codes. */
size_t sfp_gecko_bound(uint64_t n, unsigned e);
/* Scratch bytes sfp_gecko_encode / _decode need for n codes. */
size_t sfp_gecko_work_bytes(uint64_t n);

/*
 * Encode codes[0..n) (each < 2^e) into dst[0..cap). `isa` caps the SIMD
 * level (pass sfp_cpu_isa() for the best; AVX-512 has kernels for the rANS
 * variants, every level gives the same bytes). SFP_ENOSPC if it does not
 * fit: callers that pass cap = the raw size use that to fall back to raw.
 */
int sfp_gecko_encode(void *dst, size_t cap, size_t *written, const uint8_t *codes, uint64_t n,
		     unsigned e, const sfp_gecko_opts *o, int isa, void *work, size_t work_bytes,
		     sfp_error *err);
/* Decode exactly n codes from src[0..len); the stream must end exactly at
 * len and every code must be < 2^e. */
int sfp_gecko_decode(uint8_t *codes, uint64_t n, unsigned e, const void *src, size_t len,
		     int isa, void *work, size_t work_bytes, sfp_error *err);
/* Variant stored in a Gecko stream (its first byte), or SFP_ECORRUPT. */
int sfp_gecko_variant_of(const void *src, size_t len);

/* ---- 16-bit casts --------------------------------------------------------- */
/* IEEE binary16 and bfloat16 conversions, round to nearest even; NaN stays
 * NaN, out-of-range values become infinities (as a cast does). Computed on
 * the bits: the same values on every CPU. */
uint16_t sfp_f32_to_f16(float f);
float sfp_f16_to_f32(uint16_t h);
uint16_t sfp_f32_to_bf16(float f);
float sfp_bf16_to_f32(uint16_t h);

/* ---- statistics --------------------------------------------------------- */
/* Empirical order-0 entropy of a byte stream, in bits per symbol. */
double sfp_entropy_u8(const uint8_t *sym, uint64_t n);

#ifdef __cplusplus
}
#endif
#endif
