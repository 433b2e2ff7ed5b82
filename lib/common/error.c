/*
 * error.c -- the error enum's strings, error details, the log hook, and the
 * command-line programs' exit codes and integer parser.
 */
#include <stdio.h>
#include <string.h>

#include "sfp/common.h"

const char *sfp_strerror(int err)
{
	switch (err) {
	case SFP_OK: return "success";
	case SFP_EINVAL: return "invalid argument";
	case SFP_ENOMEM: return "out of memory";
	case SFP_ENOSPC: return "no space left in the destination";
	case SFP_ECORRUPT: return "corrupt or malformed input";
	case SFP_ETRUNC: return "truncated input";
	case SFP_EVERSION: return "unsupported format version";
	case SFP_ECHECKSUM: return "checksum mismatch";
	case SFP_ERANGE: return "value out of range";
	case SFP_EIO: return "input/output error";
	case SFP_ENOENT: return "no such file";
	case SFP_EUNSUPPORTED: return "not supported";
	case SFP_ETIMEDOUT: return "timed out";
	case SFP_EPEER: return "peer failed";
	default: return "unknown error";
	}
}

int sfp_error_set(sfp_error *err, int code, const char *fmt, ...)
{
	if (err) {
		va_list ap;
		err->code = code;
		va_start(ap, fmt);
		vsnprintf(err->msg, sizeof err->msg, fmt, ap);
		va_end(ap);
	}
	return code;
}

void sfp_error_clear(sfp_error *err)
{
	if (err) {
		err->code = SFP_OK;
		err->msg[0] = '\0';
	}
}

void sfp_logf(const sfp_log *log, int level, const char *fmt, ...)
{
	char buf[1024];
	va_list ap;

	if (!log || !log->fn || level < log->min_level)
		return;
	va_start(ap, fmt);
	vsnprintf(buf, sizeof buf, fmt, ap);
	va_end(ap);
	log->fn(log->user, level, buf);
}

int sfp_exit_code(int err)
{
	switch (err) {
	case SFP_OK:
		return SFP_EXIT_OK;
	case SFP_EINVAL:
	case SFP_ECORRUPT:
	case SFP_ETRUNC:
	case SFP_EVERSION:
	case SFP_ECHECKSUM:
	case SFP_ERANGE:
	case SFP_EUNSUPPORTED:
	case SFP_ENOENT:
		return SFP_EXIT_USAGE;
	default:
		return SFP_EXIT_FAIL;
	}
}

int sfp_parse_u64(const char *s, uint64_t lo, uint64_t hi, uint64_t *out)
{
	if (!s || *s < '0' || *s > '9')
		return SFP_EINVAL;
	uint64_t v = 0;
	int overflow = 0;
	for (; *s >= '0' && *s <= '9'; s++) {
		unsigned d = (unsigned)(*s - '0');
		overflow |= v > (UINT64_MAX - d) / 10;
		v = v * 10 + d; /* wraps once overflowed; only the flag counts then */
	}
	if (*s)
		return SFP_EINVAL; /* junk beats range: "99999999999999999999x" is not a number */
	if (overflow || v < lo || v > hi)
		return SFP_ERANGE;
	*out = v;
	return SFP_OK;
}
