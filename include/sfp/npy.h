/*
 * sfp/npy.h -- NumPy .npy files holding float32, little-endian, C-order
 * arrays: the tensors that go in and out of the sfp tool.
 *
 * Readers accept format versions 1.0, 2.0 and 3.0 with descr '<f4' (the
 * raw reader also float64, uint8, int32, int64),
 * fortran_order False, and any shape of up to SFP_NPY_MAX_DIMS dims.
 * Anything else is an error whose message says what is wrong.
 */
#ifndef SFP_NPY_H
#define SFP_NPY_H

#include <stddef.h>
#include <stdint.h>

#include "sfp/common.h"

#ifdef __cplusplus
extern "C" {
#endif

#define SFP_NPY_MAX_DIMS 8

/* An array read from a .npy file. `data` is owned by the struct: release it
 * with sfp_npy_release. */
typedef struct sfp_npy {
	float *data;
	uint64_t count;
	unsigned ndim;
	uint64_t shape[SFP_NPY_MAX_DIMS];
} sfp_npy;

/* Parse a whole .npy image in memory. On success `out` owns a copy of the
 * data. SFP_ECORRUPT / SFP_ETRUNC / SFP_EUNSUPPORTED with a message. */
int sfp_npy_parse(const void *buf, size_t len, sfp_npy *out, sfp_error *err);

/* Read `path`. Errors name the file: "cannot open 'x.npy': No such file...". */
int sfp_npy_read(const char *path, sfp_npy *out, sfp_error *err);

/* Free the data; the struct may be reused. NULL data is fine. */
void sfp_npy_release(sfp_npy *a);

/*
 * Element types of sfp_npy_parse_raw, as numpy's descr: '<f4', '<f8',
 * '|u1' (or '<u1'), '<i4', '<i8'. The loaders of user data (lib/data)
 * read labels and uint8 images this way.
 */
enum sfp_npy_dtype { SFP_NPY_F32 = 0, SFP_NPY_F64, SFP_NPY_U8, SFP_NPY_I32, SFP_NPY_I64 };

/* Bytes of one element of `dtype`; 0 for a value not in the enum. */
size_t sfp_npy_dtype_size(int dtype);

/* An array of any enum sfp_npy_dtype: `data` holds `count` elements
 * little-endian as in the file, owned by the struct (sfp_npy_raw_release). */
typedef struct sfp_npy_raw {
	void *data;
	uint64_t count;
	unsigned ndim;
	uint64_t shape[SFP_NPY_MAX_DIMS];
	int dtype; /* enum sfp_npy_dtype */
} sfp_npy_raw;

/* As sfp_npy_parse / sfp_npy_read, for any enum sfp_npy_dtype; another
 * descr is SFP_EUNSUPPORTED naming the accepted ones. */
int sfp_npy_parse_raw(const void *buf, size_t len, sfp_npy_raw *out, sfp_error *err);
int sfp_npy_read_raw(const char *path, sfp_npy_raw *out, sfp_error *err);
void sfp_npy_raw_release(sfp_npy_raw *a);

/* Serialize to memory: bytes needed for a header + data of this shape. */
size_t sfp_npy_bound(const uint64_t *shape, unsigned ndim);
int sfp_npy_format(void *dst, size_t cap, size_t *written, const float *data,
		   const uint64_t *shape, unsigned ndim, sfp_error *err);

/*
 * Write atomically: a temporary file in the same directory, fsync, rename.
 * On any error the destination is untouched and no temporary is left.
 */
int sfp_npy_write(const char *path, const float *data, const uint64_t *shape, unsigned ndim,
		  sfp_error *err);

#ifdef __cplusplus
}
#endif
#endif
