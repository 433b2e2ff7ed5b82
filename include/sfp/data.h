/*
 * sfp/data.h -- datasets. IDX files (gzip-compressed or plain), the format of
 * MNIST and Fashion-MNIST, as shipped by Debian's dataset-fashion-mnist;
 * users' own data (data.dataset npy, idx, cifar10: classification samples;
 * tokens: flat files of token ids for language models). docs/config.md
 * describes the files each source reads and the errors.
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
	int ndim;       /* the per-sample shape as the files give it: dims[0..ndim) */
	int dims[3];
	char source[SFP_CFG_PATH]; /* the file (or folder) of the samples, for messages */
	char labels[SFP_CFG_PATH]; /* the file of the labels ("": as source) */
	int label_base; /* index of y[0] in that file */
	int augment;    /* bits 1 << enum sfp_cfg_augment, for sfp_dataset_augment */
} sfp_dataset;

/* Load the config's classification dataset, data.dataset:
 *   fashion-mnist  train and t10k from data.path;
 *   npy            data.train.x/.y, data.test.x/.y: x float32, float64 or
 *                  uint8 (scaled by 1/255), [N, dims...] with 1 to 3 dims;
 *                  y uint8, int32 or int64, [N];
 *   idx            the same four keys, uint8 IDX files (gzip or plain);
 *   cifar10        data_batch_1..5.bin and test_batch.bin from data.path.
 * Without data.test.x (npy, idx) the last data.val_fraction of the training
 * samples is the test set. Labels lie in [0, classes): classes is
 * data.classes, or 0 = max label + 1 (cifar10: 10, fashion-mnist: 10), at
 * most 256. Pixels scale to [0, 1]; with data.normalize standardised by the
 * training set's mean and standard deviation (per channel for 3-dim
 * samples). train_limit/test_limit take the first N; `augment` is copied
 * from data.augment into the training set. Errors name the file and what
 * was expected (bad magic, sizes, truncation, dtype, a label out of range,
 * N of x != N of y); data.dataset tokens is SFP_EUNSUPPORTED (sfp_tokens_load
 * reads it). On error both sets are released. */
int sfp_dataset_load(sfp_dataset *train, sfp_dataset *test, const sfp_cfg_data *cfg,
		     sfp_error *err);
void sfp_dataset_release(sfp_dataset *d);
/* The order of epoch `epoch`: identity without shuffling, else a seeded
 * Fisher-Yates permutation that depends only on (seed, epoch). */
void sfp_dataset_order(uint32_t *perm, int n, uint64_t seed, int64_t epoch, int shuffle);
/* Keep this rank's shard: samples i with i % nranks == rank, in order
 * (every rank gets n / nranks or one more). For data-parallel workers. */
int sfp_dataset_shard(sfp_dataset *d, int rank, int nranks, sfp_error *err);
/* Labels from data.classes 0 (max label + 1) against the model's
 * `classes`: SFP_OK, and both sets' classes set to it, when every label is
 * below it; else SFP_EINVAL naming the label file, the index and the label. */
int sfp_dataset_check_classes(sfp_dataset *train, sfp_dataset *test, int classes,
			      sfp_error *err);

/* Copy samples idx[0..B) into x (B x shape) and y. */
void sfp_dataset_gather(const sfp_dataset *d, const uint32_t *idx, int B, float *x, uint8_t *y);

/* SFP_OK when the samples' shape is model.input `input[0..ndim)`, up to
 * leading dimensions of 1 ((28, 28) fits [1, 28, 28], not [784]); else
 * SFP_EINVAL naming d->source, its shape and model.input. */
int sfp_dataset_check_input(const sfp_dataset *d, const int *input, int ndim, sfp_error *err);

/*
 * Augment B gathered samples x (B x d->shape, in place) by d->augment:
 * crop: pad 4 pixels of 0 on every side and take a random shape.h x shape.w
 * window; flip: mirror left-right with probability 1/2. Sample s's choices
 * depend only on (seed, epoch, idx[s]), so every split of a batch over
 * ranks and a resumed run see the same pixels. Nothing for augment 0. For
 * training batches only. SFP_EINVAL when d->augment is set and the samples
 * are not images (ndim 3 or 2, width > 1).
 */
int sfp_dataset_augment(const sfp_dataset *d, const uint32_t *idx, int B, uint64_t seed,
			int64_t epoch, float *x, sfp_error *err);

/* ---- CIFAR-10 binary batches -------------------------------------------- */
#define SFP_CIFAR_RECORD 3073 /* 1 label byte, then 1024 R, 1024 G, 1024 B bytes */
#define SFP_CIFAR_PIXELS 3072

/* Records in a batch file of `len` bytes (a bound for sfp_cifar_parse). */
static inline size_t sfp_cifar_count(size_t len)
{
	return len / SFP_CIFAR_RECORD;
}

/* Decode a CIFAR-10 batch `buf` (len bytes, named `name` in messages) into
 * x (*n x 3 x 32 x 32 floats, pixel / 255) and y (*n labels), at most `cap`
 * records. SFP_ETRUNC when len is not a whole number of records (or 0),
 * SFP_ENOSPC when more than cap, SFP_ECORRUPT for a label > 9 (naming the
 * record). */
int sfp_cifar_parse(const void *buf, size_t len, const char *name, float *x, uint8_t *y,
		    size_t cap, size_t *n, sfp_error *err);

/* ---- token data (data.dataset: tokens) ------------------------------------------ */
/*
 * A flat file of token ids: uint16 little-endian (data.token_bytes 2, as
 * nanoGPT's and llm.c's .bin files) or uint8 (1). The training part is
 * ids[0, n_train), the held-out part ids[n_train, n_train + n_val): from
 * data.test.x, or else the last data.val_fraction of data.train.x.
 */
typedef struct sfp_tokens {
	uint16_t *ids;                /* owned */
	int64_t n_train, n_val;
	char train_file[SFP_CFG_PATH], val_file[SFP_CFG_PATH]; /* for messages */
	int64_t val_base;             /* file position of the held-out part's first id */
} sfp_tokens;

/* Decode `len` bytes of ids (`token_bytes` 1 or 2) into dst, at most cap
 * ids; *n the count. SFP_ETRUNC for an odd length at 2 bytes, SFP_ENOSPC
 * over cap, SFP_EINVAL for another token_bytes; messages name `name`. */
int sfp_tokens_parse(const void *buf, size_t len, int token_bytes, const char *name,
		     uint16_t *dst, size_t cap, size_t *n, sfp_error *err);

/* Read data.train.x (and data.test.x) as above. Each part must hold at
 * least data.seq_len + 1 ids (one window), else SFP_EINVAL naming the file
 * and the counts. On error *tok is released. */
int sfp_tokens_load(sfp_tokens *tok, const sfp_cfg_data *cfg, sfp_error *err);
void sfp_tokens_release(sfp_tokens *tok);

/* SFP_OK when every id is < vocab; else SFP_ECORRUPT naming the file, the
 * position in it and the id (the trainer passes the embedding's vocab). */
int sfp_tokens_check(const sfp_tokens *tok, int vocab, sfp_error *err);

/*
 * A training batch: B windows of T + 1 consecutive training ids at start
 * positions drawn from (seed, step) alone; x[b*T + t] = ids[s_b + t] as a
 * float (exact), targets[b*T + t] = ids[s_b + t + 1]. x, targets: B x T.
 * SFP_EINVAL when n_train < T + 1 or B, T < 1.
 */
int sfp_tokens_batch(const sfp_tokens *tok, int B, int T, uint64_t seed, int64_t step, float *x,
		     int32_t *targets, sfp_error *err);

/*
 * `sfp dataset text`: concatenate `files` in order as bytes (byte-level
 * tokens, vocabulary 256) and write dir/train.bin and dir/val.bin (the last
 * val_fraction, 0 < val_fraction <= 0.9, of the ids) as ids of token_bytes
 * (1: uint8; 2: uint16 little-endian), atomically; `dir` is created if
 * missing (its parent must exist). *n_train and *n_val the counts. Errors
 * name the file.
 */
int sfp_tokens_write_text(const char *const *files, int nfiles, const char *dir,
			  float val_fraction, int token_bytes, int64_t *n_train, int64_t *n_val,
			  sfp_error *err);

/* Held-out windows: all non-overlapping windows of the held-out part,
 * window w inputs ids[n_train + w*T .. + T) and targets one further. */
int64_t sfp_tokens_val_windows(const sfp_tokens *tok, int T);
/* Windows first .. first + B (fewer at the end) into x and targets as
 * sfp_tokens_batch; returns how many (0 past the end). */
int sfp_tokens_val_batch(const sfp_tokens *tok, int T, int64_t first, int B, float *x,
			 int32_t *targets);

#ifdef __cplusplus
}
#endif
#endif
