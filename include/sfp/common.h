/*
 * sfp/common.h -- errors, error details, the log hook, a seeded RNG, CRC32C,
 * little-endian byte loads and stores, the monotonic clock and CPU feature
 * detection.
 *
 * Everything here is reentrant: there is no mutable global state in lib/.
 * A caller that wants log output passes an sfp_log to the objects that log.
 */
#ifndef SFP_COMMON_H
#define SFP_COMMON_H

#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <string.h>

#ifdef __cplusplus
extern "C" {
#endif

/* One error enum for the whole library: 0 is success, errors are negative. */
typedef enum sfp_err {
	SFP_OK = 0,
	SFP_EINVAL = -1,       /* invalid argument (a caller's bug or bad option) */
	SFP_ENOMEM = -2,       /* allocation failed */
	SFP_ENOSPC = -3,       /* destination buffer (or disk) too small */
	SFP_ECORRUPT = -4,     /* malformed or inconsistent input */
	SFP_ETRUNC = -5,       /* input ends early */
	SFP_EVERSION = -6,     /* format version not understood */
	SFP_ECHECKSUM = -7,    /* CRC mismatch */
	SFP_ERANGE = -8,       /* value cannot be represented as asked */
	SFP_EIO = -9,          /* read/write failed (see the message for errno) */
	SFP_ENOENT = -10,      /* file not found */
	SFP_EUNSUPPORTED = -11, /* valid input that this build does not handle */
	SFP_ETIMEDOUT = -12,    /* a peer did not answer in time */
	SFP_EPEER = -13         /* a peer failed or closed the connection */
} sfp_err;

/* Static, lowercase description of an error code; never NULL. */
const char *sfp_strerror(int err);

/*
 * Error detail. Functions that can fail for reasons worth explaining take an
 * `sfp_error *` (which may be NULL) and fill it with the code and a message
 * such as "header says 12 elements but shape has 10". The message never
 * contains the error string itself; callers print "%s: %s".
 */
typedef struct sfp_error {
	int code;
	char msg[256];
} sfp_error;

/* Record `code` and a printf-style message in `err` (if non-NULL); returns code. */
int sfp_error_set(sfp_error *err, int code, const char *fmt, ...)
	__attribute__((format(printf, 3, 4)));
/* Reset to SFP_OK with an empty message. */
void sfp_error_clear(sfp_error *err);

/* ---- the command-line programs (sfp, sfp-bench, sfp-worker, sfpd) ------ */
/* Their release, printed by --version. */
#define SFP_VERSION "0.1.0"

/* Their exit codes. */
enum sfp_exit {
	SFP_EXIT_OK = 0,    /* done */
	SFP_EXIT_FAIL = 1,  /* I/O, memory, a full disk, a port in use, ... */
	SFP_EXIT_USAGE = 2  /* bad usage, or bad input: config, malformed or unreadable data */
};

/* The exit code for library result `err`: SFP_EXIT_OK for SFP_OK,
 * SFP_EXIT_USAGE for errors about the input (SFP_EINVAL, SFP_ECORRUPT,
 * SFP_ETRUNC, SFP_EVERSION, SFP_ECHECKSUM, SFP_ERANGE, SFP_EUNSUPPORTED,
 * SFP_ENOENT), SFP_EXIT_FAIL for the rest. */
int sfp_exit_code(int err);

/* A whole decimal number in [lo, hi], strictly: digits only (no sign, no
 * space, no base prefix), nothing after them. SFP_OK and *out set;
 * SFP_EINVAL for anything that is not such a number (NULL, "", "12x",
 * "-1", " 5"), SFP_ERANGE for one that overflows or lies outside [lo, hi];
 * *out is then left alone. Never clamps. */
int sfp_parse_u64(const char *s, uint64_t lo, uint64_t hi, uint64_t *out);

/* Propagate a negative return code. */
#define SFP_TRY(expr)                     \
	do {                              \
		int sfp_try_rc_ = (expr); \
		if (sfp_try_rc_ < 0)      \
			return sfp_try_rc_; \
	} while (0)

/* ---- log hook ---------------------------------------------------------- */
enum sfp_log_level { SFP_LOG_DEBUG = 0, SFP_LOG_INFO = 1, SFP_LOG_WARN = 2, SFP_LOG_ERROR = 3 };

typedef void (*sfp_log_fn)(void *user, int level, const char *msg);

/* Owned by the caller; a NULL sfp_log or a NULL fn drops messages. */
typedef struct sfp_log {
	sfp_log_fn fn;
	void *user;
	int min_level;
} sfp_log;

void sfp_logf(const sfp_log *log, int level, const char *fmt, ...)
	__attribute__((format(printf, 3, 4)));

/* ---- RNG: xoshiro256** seeded through splitmix64 ------------------------ */
typedef struct sfp_rng {
	uint64_t s[4];
} sfp_rng;

void sfp_rng_seed(sfp_rng *r, uint64_t seed);
uint64_t sfp_rng_u64(sfp_rng *r);
/* Uniform in [0, 1) with 24 random bits. */
float sfp_rng_uniform(sfp_rng *r);
/* Standard normal (Box-Muller). */
float sfp_rng_normal(sfp_rng *r);
/* Uniform in [0, n); n > 0. Unbiased (rejection). */
uint64_t sfp_rng_below(sfp_rng *r, uint64_t n);

/*
 * Stateless counter-based hash: 32 well-mixed bits from (seed, index). Used
 * for stochastic rounding so that any implementation (scalar or SIMD) and
 * any split of a tensor produce the same random bits for element `index`.
 */
static inline uint32_t sfp_hash32(uint32_t seed, uint32_t index)
{
	uint32_t x = index * 0x9e3779b9u + seed;
	x ^= x >> 16;
	x *= 0x7feb352du;
	x ^= x >> 15;
	x *= 0x846ca68bu;
	x ^= x >> 16;
	return x;
}

/* ---- little-endian bytes ------------------------------------------------ */
/*
 * Every integer sfp puts in a file or on the wire is little-endian. These
 * read and write one at p (any alignment) whatever the host's byte order;
 * on a little-endian host each is a single load or store, so they are fine
 * in inner loops. The caller has checked that the bytes are there.
 */
#if defined(__BYTE_ORDER__) && __BYTE_ORDER__ == __ORDER_BIG_ENDIAN__
#define SFP_HOST_LE_16(v) __builtin_bswap16(v)
#define SFP_HOST_LE_32(v) __builtin_bswap32(v)
#define SFP_HOST_LE_64(v) __builtin_bswap64(v)
#else
#define SFP_HOST_LE_16(v) (v)
#define SFP_HOST_LE_32(v) (v)
#define SFP_HOST_LE_64(v) (v)
#endif

static inline uint16_t sfp_load_le16(const void *p)
{
	uint16_t v;
	memcpy(&v, p, sizeof v);
	return SFP_HOST_LE_16(v);
}

static inline uint32_t sfp_load_le32(const void *p)
{
	uint32_t v;
	memcpy(&v, p, sizeof v);
	return SFP_HOST_LE_32(v);
}

static inline uint64_t sfp_load_le64(const void *p)
{
	uint64_t v;
	memcpy(&v, p, sizeof v);
	return SFP_HOST_LE_64(v);
}

static inline void sfp_store_le16(void *p, uint16_t v)
{
	v = SFP_HOST_LE_16(v);
	memcpy(p, &v, sizeof v);
}

static inline void sfp_store_le32(void *p, uint32_t v)
{
	v = SFP_HOST_LE_32(v);
	memcpy(p, &v, sizeof v);
}

static inline void sfp_store_le64(void *p, uint64_t v)
{
	v = SFP_HOST_LE_64(v);
	memcpy(p, &v, sizeof v);
}

/* ---- CRC32C (Castagnoli), hardware where available ---------------------- */
/* Continue a CRC: crc = sfp_crc32c(0, a, n); crc = sfp_crc32c(crc, b, m). */
uint32_t sfp_crc32c(uint32_t crc, const void *data, size_t n);
/* The table-driven portable version (kept for tests). */
uint32_t sfp_crc32c_ref(uint32_t crc, const void *data, size_t n);

/* ---- tensor shapes ----------------------------------------------------- */
/* A per-sample shape (c, h, w); a flat vector of n features is (n, 1, 1). */
typedef struct sfp_shape {
	int c, h, w;
} sfp_shape;

static inline size_t sfp_shape_numel(sfp_shape s)
{
	return (size_t)s.c * (size_t)s.h * (size_t)s.w;
}

/* ---- files ------------------------------------------------------------- */
/* Read a whole regular file; on success *buf (malloc'd, the caller frees it)
 * holds *len bytes. Errors name the file. */
int sfp_file_read(const char *path, void **buf, size_t *len, sfp_error *err);
/* Write buf as the whole of `path` atomically: temporary file in the same
 * directory, fsync, rename. On error the destination is untouched and the
 * temporary removed. */
int sfp_file_write_atomic(const char *path, const void *buf, size_t len, sfp_error *err);

/* ---- sealed file headers (checkpoints, .sfpq models) -------------------
 * A file that starts with a fixed header struct: magic[4], then uint32
 * version and header_bytes (offsets 0, 4, 8), and somewhere in it two
 * uint32 CRC32Cs: one over the payload after the header, one over the
 * header with its own CRC field zero. Little-endian, like the machines sfp
 * runs on. */
typedef struct sfp_sealed_kind {
	char magic[4];
	uint32_t version;
	uint32_t header_bytes;
	size_t payload_crc_at, header_crc_at; /* byte offsets in the header */
	const char *noun;     /* errors: "<noun> 'name' is truncated" */
	const char *not_this; /* "'name' is not <not_this>" (bad magic) */
} sfp_sealed_kind;
/* buf[0..len) holds the header (its other fields set, the CRC fields
 * anything) and the payload: stamp magic, version and header_bytes, then
 * both CRCs. len >= k->header_bytes. */
void sfp_sealed_seal(const sfp_sealed_kind *k, void *buf, size_t len);
/* The header's own checks, in this order: long enough (SFP_ETRUNC), magic
 * (SFP_ECORRUPT), header CRC (SFP_ECHECKSUM), version and header size
 * (SFP_EVERSION, naming both versions). On success the header is copied to
 * hdr (k->header_bytes). Errors name `name`. */
int sfp_sealed_check_header(const sfp_sealed_kind *k, const char *name, const void *buf,
			    size_t len, void *hdr, sfp_error *err);
/* The payload buf[header_bytes..len) against the CRC in hdr (SFP_ECHECKSUM). */
int sfp_sealed_check_payload(const sfp_sealed_kind *k, const char *name, const void *buf,
			     size_t len, const void *hdr, sfp_error *err);

/* ---- clock ------------------------------------------------------------- */
/* Monotonic nanoseconds. */
uint64_t sfp_clock_ns(void);

/* ---- CPU features ------------------------------------------------------ */
enum sfp_isa {
	SFP_ISA_SCALAR = 0,
	SFP_ISA_AVX2 = 1,   /* AVX2 + BMI2 */
	SFP_ISA_AVX512 = 2  /* AVX-512 F/BW/VL/VBMI/VBMI2 + BMI2 */
};
/* Best ISA level this CPU (and OS) supports. */
int sfp_cpu_isa(void);
/* Name of a level: "scalar", "avx2", "avx512". */
const char *sfp_isa_name(int isa);
/* Parse a level name; returns the level or SFP_EINVAL. */
int sfp_isa_parse(const char *name);

#ifdef __cplusplus
}
#endif
#endif
