/*
 * tensors.h -- the tensors benchmarks and ablations run on: real Fashion-MNIST
 * images, and the weights, activations and gradients of a CNN trained on them.
 */
#ifndef SFP_BENCH_TENSORS_H
#define SFP_BENCH_TENSORS_H

#include <stdint.h>

#include "sfp/common.h"

typedef struct bench_tensor {
	char name[48];       /* e.g. "fmnist-images", "conv1-act", "fc1-weight" */
	const char *kind;    /* "image", "weight", "activation", "gradient", "file" */
	float *data;         /* owned */
	uint64_t count;
	unsigned ndim;
	uint64_t shape[8];
} bench_tensor;

/*
 * Build the standard set (deterministic): 2000 Fashion-MNIST test images,
 * raw and normalized, then bench_tensors_trained of fmnist-cnn (300 steps,
 * 64 images). `scale` < 1 is a quick run: fewer images, 20 steps, 8 images. Returns the number of tensors (> 0) written to
 * *out (free with bench_tensors_free) or a negative sfp_err with `err` set
 * (e.g. Fashion-MNIST missing).
 */
int bench_tensors_standard(bench_tensor **out, double scale, sfp_error *err);
/*
 * Real tensors of a model trained for `steps` steps from the config at
 * `config` (float32 training, no checkpoints or log): every conv/linear
 * layer's weights (leading dimension = output channels), its output
 * activations for `batch` (<= 64) test images (training-mode forward,
 * leading dimension = samples) and its weight gradients on that batch. Returns the count or
 * a negative sfp_err.
 */
int bench_tensors_trained(bench_tensor **out, const char *config, int steps, int batch,
			  sfp_error *err);
/* Load .npy files as tensors (kind "file"). */
int bench_tensors_from_files(bench_tensor **out, char **paths, int n, sfp_error *err);
void bench_tensors_free(bench_tensor *t, int n);

#endif
