/*
 * file.c -- whole-file reads; atomic whole-file writes (temporary file in
 * the same directory, fsync, rename), so a failed write never leaves a
 * partial destination or a stray temporary behind; the sealed headers
 * (magic, version, two CRC32Cs) of the checkpoint and integer-model files.
 */
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "sfp/common.h"

int sfp_file_read(const char *path, void **buf, size_t *len, sfp_error *err)
{
	FILE *f = fopen(path, "rb");
	*buf = NULL;
	*len = 0;
	if (!f)
		return sfp_error_set(err, errno == ENOENT ? SFP_ENOENT : SFP_EIO,
				     "cannot open '%s': %s", path, strerror(errno));
	struct stat st;
	if (fstat(fileno(f), &st) < 0 || !S_ISREG(st.st_mode)) {
		fclose(f);
		return sfp_error_set(err, SFP_EIO, "cannot read '%s': not a regular file", path);
	}
	size_t n = (size_t)st.st_size;
	char *p = malloc(n ? n : 1);
	if (!p) {
		fclose(f);
		return sfp_error_set(err, SFP_ENOMEM, "out of memory reading '%s'", path);
	}
	if (fread(p, 1, n, f) != n) {
		int e = errno;
		free(p);
		fclose(f);
		return sfp_error_set(err, SFP_EIO, "cannot read '%s': %s", path,
				     e ? strerror(e) : "short read");
	}
	fclose(f);
	*buf = p;
	*len = n;
	return SFP_OK;
}

/*
 * Make the rename itself durable: fsync the directory holding `path`. Best
 * effort: the file is complete and in place either way, and some file
 * systems refuse fsync on directories.
 */
static void sync_dir(const char *path)
{
	const char *slash = strrchr(path, '/');
	char *d = NULL;
	int fd;
	if (!slash) {
		fd = open(".", O_RDONLY | O_DIRECTORY);
	} else {
		size_t n = slash == path ? 1 : (size_t)(slash - path);
		if (!(d = malloc(n + 1)))
			return;
		memcpy(d, path, n);
		d[n] = '\0';
		fd = open(d, O_RDONLY | O_DIRECTORY);
	}
	if (fd >= 0) {
		(void)fsync(fd);
		close(fd);
	}
	free(d);
}

/* A full disk or quota (at write, or only at fsync/close on some file
 * systems) is SFP_ENOSPC; anything else SFP_EIO. */
static int write_code(int e)
{
	return e == ENOSPC || e == EDQUOT ? SFP_ENOSPC : SFP_EIO;
}

int sfp_file_write_atomic(const char *path, const void *buf, size_t len, sfp_error *err)
{
	size_t pl = strlen(path);
	char *tmp = malloc(pl + 16);
	int fd, rc = SFP_OK;
	if (!tmp)
		return sfp_error_set(err, SFP_ENOMEM, "out of memory");
	snprintf(tmp, pl + 16, "%s.tmpXXXXXX", path);
	fd = mkstemp(tmp);
	if (fd < 0) {
		rc = sfp_error_set(err, write_code(errno), "cannot create '%s': %s", tmp, strerror(errno));
		free(tmp);
		return rc;
	}
	const char *p = buf;
	size_t left = len;
	while (left) {
		ssize_t w = write(fd, p, left);
		if (w < 0) {
			if (errno == EINTR)
				continue;
			rc = sfp_error_set(err, write_code(errno), "cannot write '%s': %s", path,
					   strerror(errno));
			goto fail;
		}
		p += w;
		left -= (size_t)w;
	}
	if (fchmod(fd, 0644) < 0 || fsync(fd) < 0) {
		rc = sfp_error_set(err, write_code(errno), "cannot write '%s': %s", path, strerror(errno));
		goto fail;
	}
	if (close(fd) < 0) {
		fd = -1;
		rc = sfp_error_set(err, write_code(errno), "cannot write '%s': %s", path, strerror(errno));
		goto fail;
	}
	fd = -1;
	if (rename(tmp, path) < 0) {
		rc = sfp_error_set(err, SFP_EIO, "cannot write '%s': %s", path, strerror(errno));
		goto fail;
	}
	sync_dir(path);
	free(tmp);
	return SFP_OK;
fail:
	if (fd >= 0)
		close(fd);
	unlink(tmp);
	free(tmp);
	return rc;
}

/* ---- sealed headers ------------------------------------------------------ */
/* The headers' fields are little-endian. */
static uint32_t u32_at(const void *hdr, size_t at)
{
	return sfp_load_le32((const unsigned char *)hdr + at);
}

static void u32_put(void *hdr, size_t at, uint32_t v)
{
	sfp_store_le32((unsigned char *)hdr + at, v);
}

void sfp_sealed_seal(const sfp_sealed_kind *k, void *buf, size_t len)
{
	unsigned char *b = buf;
	const size_t hb = k->header_bytes;
	memcpy(b, k->magic, 4);
	u32_put(b, 4, k->version);
	u32_put(b, 8, k->header_bytes);
	u32_put(b, k->payload_crc_at, sfp_crc32c(0, b + hb, len - hb));
	u32_put(b, k->header_crc_at, 0);
	u32_put(b, k->header_crc_at, sfp_crc32c(0, b, hb));
}

int sfp_sealed_check_header(const sfp_sealed_kind *k, const char *name, const void *buf,
			    size_t len, void *hdr, sfp_error *err)
{
	const size_t hb = k->header_bytes;
	if (len < hb)
		return sfp_error_set(err, SFP_ETRUNC, "%s '%s' is truncated (%zu bytes)", k->noun,
				     name, len);
	memcpy(hdr, buf, hb);
	if (memcmp(hdr, k->magic, 4) != 0)
		return sfp_error_set(err, SFP_ECORRUPT, "'%s' is not %s", name, k->not_this);
	const uint32_t hc = u32_at(hdr, k->header_crc_at);
	u32_put(hdr, k->header_crc_at, 0);
	const uint32_t want = sfp_crc32c(0, hdr, hb);
	u32_put(hdr, k->header_crc_at, hc);
	if (want != hc)
		return sfp_error_set(err, SFP_ECHECKSUM, "%s '%s': header checksum mismatch", k->noun,
				     name);
	if (u32_at(hdr, 4) != k->version || u32_at(hdr, 8) != hb)
		return sfp_error_set(err, SFP_EVERSION, "%s '%s' has version %u; this sfp reads version %u",
				     k->noun, name, u32_at(hdr, 4), k->version);
	return SFP_OK;
}

int sfp_sealed_check_payload(const sfp_sealed_kind *k, const char *name, const void *buf,
			     size_t len, const void *hdr, sfp_error *err)
{
	const size_t hb = k->header_bytes;
	if (sfp_crc32c(0, (const unsigned char *)buf + hb, len - hb) != u32_at(hdr, k->payload_crc_at))
		return sfp_error_set(err, SFP_ECHECKSUM, "%s '%s': payload checksum mismatch", k->noun,
				     name);
	return SFP_OK;
}
