/*
 * sfp/data.h -- datasets. IDX files (gzip-compressed or plain), the format of
 * MNIST and Fashion-MNIST, as shipped by Debian's dataset-fashion-mnist.
 */
#ifndef SFP_DATA_H
#define SFP_DATA_H

#include <stddef.h>
#include <stdint.h>

#include "sfp/common.h"
#include "sfp/config.h"

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

/* ---- dataset tensors -------------------------------------------------------------- */
typedef struct sfp_dataset {
	int n;          /* samples */
	sfp_shape shape; /* per sample */
	int classes;
	float *x;       /* n x shape, owned */
	uint8_t *y;     /* n labels, owned */
} sfp_dataset;

/* Load the config's dataset (Fashion-MNIST train and t10k), scaled to [0,1]
 * and, with data.normalize, standardised by the training set's mean and
 * standard deviation; train_limit/test_limit take the first N. Errors name
 * the file. */
int sfp_dataset_load(sfp_dataset *train, sfp_dataset *test, const sfp_cfg_data *cfg,
		     sfp_error *err);
void sfp_dataset_release(sfp_dataset *d);
/* The order of epoch `epoch`: identity without shuffling, else a seeded
 * Fisher-Yates permutation that depends only on (seed, epoch). */
void sfp_dataset_order(uint32_t *perm, int n, uint64_t seed, int64_t epoch, int shuffle);
/* Keep this rank's shard: samples i with i % nranks == rank, in order
 * (every rank gets n / nranks or one more). For data-parallel workers. */
int sfp_dataset_shard(sfp_dataset *d, int rank, int nranks, sfp_error *err);
/* Copy samples idx[0..B) into x (B x shape) and y. */
void sfp_dataset_gather(const sfp_dataset *d, const uint32_t *idx, int B, float *x, uint8_t *y);

#ifdef __cplusplus
}
#endif
#endif
