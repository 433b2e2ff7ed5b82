/*
 * sfp/data.h -- datasets. IDX files (gzip-compressed or plain), the format of
 * MNIST and Fashion-MNIST, as shipped by Debian's dataset-fashion-mnist.
 */
#ifndef SFP_DATA_H
#define SFP_DATA_H

#include <stddef.h>
#include <stdint.h>

#include "sfp/common.h"

#ifdef __cplusplus
extern "C" {
#endif

#define SFP_FMNIST_DIR "/usr/share/datasets/fashion-mnist"
#define SFP_IDX_MAX_DIMS 4

/* An unsigned-byte IDX array (type 0x08). `data` is owned by the struct. */
typedef struct sfp_idx {
	unsigned ndim;
	uint32_t dims[SFP_IDX_MAX_DIMS];
	uint64_t count;  /* product of dims */
	uint8_t *data;
} sfp_idx;

/* Read an IDX file, transparently gunzipping it. Errors name the file and
 * the problem (missing, bad magic, unsupported type, size mismatch). */
int sfp_idx_read(const char *path, sfp_idx *out, sfp_error *err);
void sfp_idx_release(sfp_idx *x);

/* Fashion-MNIST split "train" or "t10k" from `dir` (NULL: SFP_FMNIST_DIR).
 * images: n x 28 x 28 bytes, labels: n bytes (each < 10). */
int sfp_fmnist_load(const char *dir, const char *split, sfp_idx *images, sfp_idx *labels,
		    sfp_error *err);

#ifdef __cplusplus
}
#endif
#endif
