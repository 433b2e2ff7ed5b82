/*
 * idx.c -- IDX files (the MNIST family's format), read through zlib so that
 * .gz and plain files both work. Only unsigned-byte arrays (type 0x08) are
 * needed by the datasets sfp uses; other types are refused with a message.
 *
 * Layout: bytes 0,1 = 0; byte 2 = type; byte 3 = ndim; then ndim big-endian
 * u32 dimensions; then the data in C order.
 */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <zlib.h>

#include "sfp/data.h"

/* Largest decompressed file we accept: guards against gzip bombs. */
#define IDX_MAX_BYTES ((size_t)1 << 31)

static int read_all(const char *path, unsigned char **out, size_t *len, sfp_error *err)
{
	gzFile f = gzopen(path, "rb");
	unsigned char *buf = NULL;
	size_t cap = 0, n = 0;
	int rc = SFP_OK;

	if (!f) {
		int e = errno;
		return sfp_error_set(err, e == ENOENT ? SFP_ENOENT : SFP_EIO, "cannot open '%s': %s",
				     path, e ? strerror(e) : "out of memory");
	}
	for (;;) {
		if (n == cap) {
			size_t ncap = cap ? cap * 2 : (size_t)1 << 20;
			unsigned char *nb;
			if (ncap > IDX_MAX_BYTES + 1)
				ncap = IDX_MAX_BYTES + 1;
			if (ncap == cap) {
				rc = sfp_error_set(err, SFP_ECORRUPT,
						   "'%s' is larger than %zu bytes uncompressed", path,
						   IDX_MAX_BYTES);
				goto out;
			}
			nb = realloc(buf, ncap);
			if (!nb) {
				rc = sfp_error_set(err, SFP_ENOMEM, "out of memory reading '%s'", path);
				goto out;
			}
			buf = nb;
			cap = ncap;
		}
		size_t want = cap - n;
		if (want > (1u << 30))
			want = 1u << 30;
		int got = gzread(f, buf + n, (unsigned)want);
		if (got < 0) {
			int zerr;
			const char *msg = gzerror(f, &zerr);
			rc = sfp_error_set(err, zerr == Z_ERRNO ? SFP_EIO : SFP_ECORRUPT,
					   "cannot read '%s': %s", path,
					   zerr == Z_ERRNO ? strerror(errno) : msg);
			goto out;
		}
		if (got == 0)
			break;
		n += (size_t)got;
	}
out:
	gzclose(f);
	if (rc < 0) {
		free(buf);
		return rc;
	}
	*out = buf;
	*len = n;
	return SFP_OK;
}

int sfp_idx_read(const char *path, sfp_idx *out, sfp_error *err)
{
	unsigned char *buf = NULL;
	size_t len = 0;
	int rc;

	memset(out, 0, sizeof *out);
	rc = read_all(path, &buf, &len, err);
	if (rc < 0)
		return rc;
	if (len < 4 || buf[0] != 0 || buf[1] != 0) {
		rc = sfp_error_set(err, SFP_ECORRUPT, "'%s' is not an IDX file (bad magic)", path);
		goto out;
	}
	if (buf[2] != 0x08) {
		rc = sfp_error_set(err, SFP_EUNSUPPORTED,
				   "'%s': IDX type 0x%02x is not supported (only unsigned bytes, 0x08)",
				   path, buf[2]);
		goto out;
	}
	unsigned ndim = buf[3];
	if (ndim < 1 || ndim > SFP_IDX_MAX_DIMS) {
		rc = sfp_error_set(err, SFP_ECORRUPT, "'%s': %u dimensions (expected 1..%d)", path,
				   ndim, SFP_IDX_MAX_DIMS);
		goto out;
	}
	size_t hdr = 4 + 4 * (size_t)ndim;
	if (len < hdr) {
		rc = sfp_error_set(err, SFP_ETRUNC, "'%s': header ends after %zu bytes", path, len);
		goto out;
	}
	uint64_t count = 1;
	for (unsigned i = 0; i < ndim; i++) {
		const unsigned char *d = buf + 4 + 4 * i;
		out->dims[i] = (uint32_t)d[0] << 24 | (uint32_t)d[1] << 16 | (uint32_t)d[2] << 8 | d[3];
		count *= out->dims[i];
		if (count > IDX_MAX_BYTES) {
			rc = sfp_error_set(err, SFP_ECORRUPT, "'%s': dimensions too large", path);
			goto out;
		}
	}
	if (len - hdr != count) {
		rc = sfp_error_set(err, len - hdr < count ? SFP_ETRUNC : SFP_ECORRUPT,
				   "'%s': header says %llu bytes of data, file has %zu", path,
				   (unsigned long long)count, len - hdr);
		goto out;
	}
	out->ndim = ndim;
	out->count = count;
	memmove(buf, buf + hdr, count);
	out->data = buf;
	buf = NULL;
out:
	free(buf);
	if (rc < 0)
		memset(out, 0, sizeof *out);
	return rc;
}

void sfp_idx_release(sfp_idx *x)
{
	if (x) {
		free(x->data);
		memset(x, 0, sizeof *x);
	}
}

int sfp_fmnist_load(const char *dir, const char *split, sfp_idx *images, sfp_idx *labels,
		    sfp_error *err)
{
	char path[4096];
	int rc;

	memset(images, 0, sizeof *images);
	memset(labels, 0, sizeof *labels);
	if (!dir)
		dir = SFP_FMNIST_DIR;
	if (strcmp(split, "train") != 0 && strcmp(split, "t10k") != 0)
		return sfp_error_set(err, SFP_EINVAL, "unknown split '%s' (train or t10k)", split);

	snprintf(path, sizeof path, "%s/%s-images-idx3-ubyte.gz", dir, split);
	rc = sfp_idx_read(path, images, err);
	if (rc < 0)
		return rc;
	if (images->ndim != 3 || images->dims[1] != 28 || images->dims[2] != 28) {
		rc = sfp_error_set(err, SFP_ECORRUPT, "'%s' does not hold n x 28 x 28 images", path);
		goto fail;
	}
	snprintf(path, sizeof path, "%s/%s-labels-idx1-ubyte.gz", dir, split);
	rc = sfp_idx_read(path, labels, err);
	if (rc < 0)
		goto fail;
	if (labels->ndim != 1 || labels->dims[0] != images->dims[0]) {
		rc = sfp_error_set(err, SFP_ECORRUPT, "'%s' has %u labels for %u images", path,
				   labels->dims[0], images->dims[0]);
		goto fail;
	}
	for (uint64_t i = 0; i < labels->count; i++) {
		if (labels->data[i] > 9) {
			rc = sfp_error_set(err, SFP_ECORRUPT, "'%s': label %u at index %llu is not 0..9",
					   path, labels->data[i], (unsigned long long)i);
			goto fail;
		}
	}
	return SFP_OK;
fail:
	sfp_idx_release(images);
	sfp_idx_release(labels);
	return rc;
}
