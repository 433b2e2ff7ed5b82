/*
 * npy.c -- NumPy .npy files of float32 (little-endian, C order).
 *
 * Format: magic "\x93NUMPY", major, minor, header length (u16 for 1.x,
 * u32 for 2.x/3.x), then an ASCII Python dict literal
 * {'descr': '<f4', 'fortran_order': False, 'shape': (d0, d1, ), } padded
 * with spaces and a final '\n' so the data starts on a 64-byte boundary.
 * The parser accepts exactly that grammar (keys in any order, either quote,
 * optional trailing commas) and rejects everything else with a message.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "sfp/npy.h"

#define NPY_MAX_HEADER 65536

typedef struct cursor {
	const char *p, *end;
} cursor;

static void skip_ws(cursor *c)
{
	while (c->p < c->end && (*c->p == ' ' || *c->p == '\t'))
		c->p++;
}

static int eat(cursor *c, char ch)
{
	skip_ws(c);
	if (c->p < c->end && *c->p == ch) {
		c->p++;
		return 1;
	}
	return 0;
}

/* A quoted string into buf; returns 0 on malformed input. */
static int parse_str(cursor *c, char *buf, size_t cap)
{
	skip_ws(c);
	if (c->p >= c->end || (*c->p != '\'' && *c->p != '"'))
		return 0;
	char q = *c->p++;
	size_t n = 0;
	while (c->p < c->end && *c->p != q) {
		if (n + 1 >= cap || *c->p == '\\')
			return 0;
		buf[n++] = *c->p++;
	}
	if (c->p >= c->end)
		return 0;
	c->p++;
	buf[n] = '\0';
	return 1;
}

/* A header's fields: the shape and the element type. */
typedef struct header {
	unsigned ndim;
	uint64_t shape[SFP_NPY_MAX_DIMS];
	int dtype; /* enum sfp_npy_dtype */
} header;

static int parse_shape(cursor *c, header *out, sfp_error *err)
{
	if (!eat(c, '('))
		return sfp_error_set(err, SFP_ECORRUPT, "shape is not a tuple");
	out->ndim = 0;
	for (;;) {
		if (eat(c, ')'))
			return SFP_OK;
		skip_ws(c);
		if (c->p >= c->end || *c->p < '0' || *c->p > '9')
			return sfp_error_set(err, SFP_ECORRUPT, "shape holds a non-integer");
		uint64_t v = 0;
		while (c->p < c->end && *c->p >= '0' && *c->p <= '9') {
			uint64_t d = (uint64_t)(*c->p - '0');
			if (v > (UINT64_MAX - d) / 10)
				return sfp_error_set(err, SFP_ECORRUPT, "shape dimension too large");
			v = v * 10 + d;
			c->p++;
		}
		if (c->p < c->end && *c->p == 'L')
			c->p++; /* Python 2 long suffix */
		if (out->ndim == SFP_NPY_MAX_DIMS)
			return sfp_error_set(err, SFP_EUNSUPPORTED, "more than %d dimensions",
					     SFP_NPY_MAX_DIMS);
		out->shape[out->ndim++] = v;
		if (eat(c, ','))
			continue;
		if (eat(c, ')')) {
			if (out->ndim == 1)
				return sfp_error_set(err, SFP_ECORRUPT,
						     "one-element shape tuple needs a comma");
			return SFP_OK;
		}
		return sfp_error_set(err, SFP_ECORRUPT, "malformed shape tuple");
	}
}

/* The descr strings of enum sfp_npy_dtype, in its order; numpy writes
 * one-byte types with '|', some writers with '<'. */
static const char *const descrs[][2] = {
	{"<f4", "<f4"}, {"<f8", "<f8"}, {"|u1", "<u1"}, {"<i4", "<i4"}, {"<i8", "<i8"}};

static int descr_dtype(const char *v)
{
	for (int i = 0; i < (int)(sizeof descrs / sizeof descrs[0]); i++)
		if (!strcmp(v, descrs[i][0]) || !strcmp(v, descrs[i][1]))
			return i;
	return -1;
}

size_t sfp_npy_dtype_size(int dtype)
{
	static const size_t size[] = {4, 8, 1, 4, 8};
	return dtype >= 0 && dtype < (int)(sizeof size / sizeof size[0]) ? size[dtype] : 0;
}

/* `any`: accept every enum sfp_npy_dtype, else float32 only. */
static int parse_dict(const char *h, size_t len, header *out, int any, sfp_error *err)
{
	cursor c = {h, h + len};
	int have_descr = 0, have_fortran = 0, have_shape = 0;
	if (!eat(&c, '{'))
		return sfp_error_set(err, SFP_ECORRUPT, "header is not a dict");
	for (;;) {
		char key[32], val[32];
		if (eat(&c, '}'))
			break;
		if (!parse_str(&c, key, sizeof key) || !eat(&c, ':'))
			return sfp_error_set(err, SFP_ECORRUPT, "malformed header dict");
		if (!strcmp(key, "descr") && !have_descr) {
			if (!parse_str(&c, val, sizeof val))
				return sfp_error_set(err, SFP_ECORRUPT, "descr is not a string");
			out->dtype = descr_dtype(val);
			if (!any && out->dtype != SFP_NPY_F32)
				return sfp_error_set(err, SFP_EUNSUPPORTED,
						     "dtype '%s' is not float32 (convert with "
						     "x.astype('<f4'))",
						     val);
			if (out->dtype < 0)
				return sfp_error_set(err, SFP_EUNSUPPORTED,
						     "dtype '%s' is not supported (float32 '<f4', "
						     "float64 '<f8', uint8 '|u1', int32 '<i4', "
						     "int64 '<i8')",
						     val);
			have_descr = 1;
		} else if (!strcmp(key, "fortran_order") && !have_fortran) {
			skip_ws(&c);
			if ((size_t)(c.end - c.p) >= 5 && !memcmp(c.p, "False", 5)) {
				c.p += 5;
			} else if ((size_t)(c.end - c.p) >= 4 && !memcmp(c.p, "True", 4)) {
				return sfp_error_set(err, SFP_EUNSUPPORTED,
						     "fortran_order arrays are not supported (save "
						     "with np.ascontiguousarray)");
			} else {
				return sfp_error_set(err, SFP_ECORRUPT,
						     "fortran_order is not True or False");
			}
			have_fortran = 1;
		} else if (!strcmp(key, "shape") && !have_shape) {
			int rc = parse_shape(&c, out, err);
			if (rc < 0)
				return rc;
			have_shape = 1;
		} else {
			return sfp_error_set(err, SFP_ECORRUPT, "unexpected or repeated key '%s'", key);
		}
		if (eat(&c, ','))
			continue;
		if (eat(&c, '}'))
			break;
		return sfp_error_set(err, SFP_ECORRUPT, "malformed header dict");
	}
	if (!have_descr || !have_fortran || !have_shape)
		return sfp_error_set(err, SFP_ECORRUPT, "header lacks '%s'",
				     !have_descr ? "descr" : !have_fortran ? "fortran_order" : "shape");
	/* Only padding may follow: spaces, then one newline at the very end. */
	skip_ws(&c);
	if (c.p < c.end && *c.p == '\n')
		c.p++;
	if (c.p != c.end)
		return sfp_error_set(err, SFP_ECORRUPT, "junk after the header dict");
	return SFP_OK;
}

/* Check the image's header; on success *h, and the data (*count elements)
 * at buf + *data_off, exactly filling the rest of the image. */
static int parse_image(const unsigned char *b, size_t len, int any, header *h, size_t *data_off,
		       uint64_t *count, sfp_error *err)
{
	memset(h, 0, sizeof *h);
	if (len < 10 || memcmp(b, "\x93NUMPY", 6) != 0)
		return sfp_error_set(err, SFP_ECORRUPT, "not a .npy file (bad magic)");
	unsigned major = b[6], minor = b[7];
	size_t hl, off;
	if (minor != 0 || major < 1 || major > 3)
		return sfp_error_set(err, SFP_EUNSUPPORTED,
				     "format version %u.%u is not supported (1.0, 2.0 or 3.0)", major,
				     minor);
	if (major == 1) {
		hl = sfp_load_le16(b + 8);
		off = 10;
	} else {
		if (len < 12)
			return sfp_error_set(err, SFP_ETRUNC, "header truncated");
		hl = sfp_load_le32(b + 8);
		off = 12;
	}
	if (hl > NPY_MAX_HEADER || hl > len - off)
		return sfp_error_set(err, SFP_ETRUNC, "header of %zu bytes does not fit the file",
				     hl);
	SFP_TRY(parse_dict((const char *)b + off, hl, h, any, err));
	const size_t item = sfp_npy_dtype_size(h->dtype);
	uint64_t n = 1;
	for (unsigned i = 0; i < h->ndim; i++) {
		if (h->shape[i] && n > (UINT64_MAX / 8) / h->shape[i])
			return sfp_error_set(err, SFP_ECORRUPT, "shape too large");
		n *= h->shape[i];
	}
	size_t data = off + hl, have = len - data;
	if (have / item != n || have % item)
		return sfp_error_set(err, have / item < n ? SFP_ETRUNC : SFP_ECORRUPT,
				     "shape needs %llu bytes of data, file has %zu",
				     (unsigned long long)(n * item), have);
	*data_off = data;
	*count = n;
	return SFP_OK;
}

/* Parse the image and copy its data out (malloc'd into *data). */
static int parse_copy(const void *buf, size_t len, int any, header *h, void **data,
		      uint64_t *count, sfp_error *err)
{
	size_t off = 0;
	SFP_TRY(parse_image(buf, len, any, h, &off, count, err));
	const size_t bytes = *count * sfp_npy_dtype_size(h->dtype);
	if (!(*data = malloc(bytes ? bytes : 1)))
		return sfp_error_set(err, SFP_ENOMEM, "out of memory for %llu values",
				     (unsigned long long)*count);
	memcpy(*data, (const unsigned char *)buf + off, bytes);
	return SFP_OK;
}

int sfp_npy_parse(const void *buf, size_t len, sfp_npy *out, sfp_error *err)
{
	header h;
	void *data;
	uint64_t count;
	memset(out, 0, sizeof *out);
	SFP_TRY(parse_copy(buf, len, 0, &h, &data, &count, err));
	out->data = data;
	out->count = count;
	out->ndim = h.ndim;
	memcpy(out->shape, h.shape, sizeof out->shape);
	return SFP_OK;
}

int sfp_npy_parse_raw(const void *buf, size_t len, sfp_npy_raw *out, sfp_error *err)
{
	header h;
	void *data;
	uint64_t count;
	memset(out, 0, sizeof *out);
	SFP_TRY(parse_copy(buf, len, 1, &h, &data, &count, err));
	out->data = data;
	out->count = count;
	out->ndim = h.ndim;
	memcpy(out->shape, h.shape, sizeof out->shape);
	out->dtype = h.dtype;
	return SFP_OK;
}

/* Read `path` whole and parse it with `parse`, naming the file in errors. */
static int read_with(const char *path, void *out, size_t out_size,
		     int (*parse)(const void *, size_t, void *, sfp_error *), sfp_error *err)
{
	void *buf;
	size_t len;
	memset(out, 0, out_size);
	int rc = sfp_file_read(path, &buf, &len, err);
	if (rc < 0)
		return rc;
	rc = parse(buf, len, out, err);
	free(buf);
	if (rc < 0 && err) {
		char detail[sizeof err->msg];
		memcpy(detail, err->msg, sizeof detail);
		snprintf(err->msg, sizeof err->msg, "cannot read '%.80s': %.150s", path, detail);
	}
	return rc;
}

static int parse_f32(const void *buf, size_t len, void *out, sfp_error *err)
{
	return sfp_npy_parse(buf, len, out, err);
}

static int parse_raw(const void *buf, size_t len, void *out, sfp_error *err)
{
	return sfp_npy_parse_raw(buf, len, out, err);
}

int sfp_npy_read(const char *path, sfp_npy *out, sfp_error *err)
{
	return read_with(path, out, sizeof *out, parse_f32, err);
}

int sfp_npy_read_raw(const char *path, sfp_npy_raw *out, sfp_error *err)
{
	return read_with(path, out, sizeof *out, parse_raw, err);
}

void sfp_npy_raw_release(sfp_npy_raw *a)
{
	if (a) {
		free(a->data);
		memset(a, 0, sizeof *a);
	}
}

void sfp_npy_release(sfp_npy *a)
{
	if (a) {
		free(a->data);
		memset(a, 0, sizeof *a);
	}
}

/*
 * The header dict padded so that 10 + len is a multiple of 64. Like numpy's
 * np.save, it leaves 21 - digits(shape[0]) spare spaces after the dict (room
 * to grow the first axis in place), so for the same array both write the
 * same bytes.
 */
static size_t header_text(char *h, size_t cap, const uint64_t *shape, unsigned ndim)
{
	int n = snprintf(h, cap, "{'descr': '<f4', 'fortran_order': False, 'shape': (");
	/* Python's tuple repr, as numpy writes it: (), (3,), (2, 3). */
	for (unsigned i = 0; i < ndim; i++)
		n += snprintf(h + n, cap - (size_t)n, "%s%llu", i ? ", " : "",
			      (unsigned long long)shape[i]);
	n += snprintf(h + n, cap - (size_t)n, "%s), }", ndim == 1 ? "," : "");
	size_t spare = 0;
	if (ndim > 0) {
		char d0[24];
		spare = 21 - (size_t)snprintf(d0, sizeof d0, "%llu", (unsigned long long)shape[0]);
	}
	size_t total = 10 + (size_t)n + spare + 1;
	size_t padded = (total + 63) / 64 * 64;
	memset(h + n, ' ', padded - 10 - 1 - (size_t)n);
	h[padded - 10 - 1] = '\n';
	return padded - 10;
}

/* Header text capacity: the dict with 8 twenty-digit dims, spare and padding. */
#define NPY_HEADER_CAP (128 + 24 * SFP_NPY_MAX_DIMS + 64)

/* Element count of a shape; 0 with *ok = 0 when count * 4 overflows size_t. */
static uint64_t shape_count(const uint64_t *shape, unsigned ndim, int *ok)
{
	uint64_t count = 1;
	*ok = 1;
	for (unsigned i = 0; i < ndim; i++) {
		if (shape[i] && count > (SIZE_MAX / 4 - NPY_HEADER_CAP - 10) / shape[i])
			*ok = 0;
		count *= shape[i];
	}
	return *ok ? count : 0;
}

/* SFP_EINVAL unless the shape can be written: ndim and byte size in range. */
static int check_shape(const uint64_t *shape, unsigned ndim, uint64_t *count, sfp_error *err)
{
	int ok;
	if (ndim > SFP_NPY_MAX_DIMS)
		return sfp_error_set(err, SFP_EINVAL, "%u dimensions (at most %d)", ndim,
				     SFP_NPY_MAX_DIMS);
	*count = shape_count(shape, ndim, &ok);
	if (!ok)
		return sfp_error_set(err, SFP_EINVAL, "shape has too many elements for memory");
	return SFP_OK;
}

size_t sfp_npy_bound(const uint64_t *shape, unsigned ndim)
{
	int ok;
	if (ndim > SFP_NPY_MAX_DIMS)
		return SIZE_MAX; /* sfp_npy_format refuses it */
	uint64_t count = shape_count(shape, ndim, &ok);
	if (!ok)
		return SIZE_MAX; /* no buffer can hold it; sfp_npy_format refuses it */
	return 10 + NPY_HEADER_CAP + 4 * (size_t)count;
}

int sfp_npy_format(void *dst, size_t cap, size_t *written, const float *data,
		   const uint64_t *shape, unsigned ndim, sfp_error *err)
{
	char h[NPY_HEADER_CAP];
	uint64_t count;
	SFP_TRY(check_shape(shape, ndim, &count, err));
	size_t hl = header_text(h, sizeof h, shape, ndim);
	if (cap < 10 + hl + 4 * count)
		return sfp_error_set(err, SFP_ENOSPC, "buffer too small for the .npy file");
	unsigned char *o = dst;
	memcpy(o, "\x93NUMPY\x01\x00", 8);
	sfp_store_le16(o + 8, (uint16_t)hl);
	memcpy(o + 10, h, hl);
	if (count)
		memcpy(o + 10 + hl, data, 4 * count);
	*written = 10 + hl + 4 * count;
	return SFP_OK;
}

int sfp_npy_write(const char *path, const float *data, const uint64_t *shape, unsigned ndim,
		  sfp_error *err)
{
	uint64_t count;
	SFP_TRY(check_shape(shape, ndim, &count, err));
	size_t cap = sfp_npy_bound(shape, ndim), w;
	void *buf = malloc(cap);
	if (!buf)
		return sfp_error_set(err, SFP_ENOMEM, "out of memory");
	int rc = sfp_npy_format(buf, cap, &w, data, shape, ndim, err);
	if (rc == SFP_OK)
		rc = sfp_file_write_atomic(path, buf, w, err);
	free(buf);
	return rc;
}
