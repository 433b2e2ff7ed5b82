/*
 * swish.c -- an example sfp plug-in layer: Swish with a learned slope per
 * channel, y = x * sigmoid(beta_c * x) (Ramachandran et al., 2017).
 *
 * Build: cc -O2 -fPIC -shared -Iinclude examples/plugins/swish.c -o swish.so
 * (`make` does this into build/plugins/swish.so). Config:
 *
 *   - type: plugin
 *     library: ../../build/plugins/swish.so
 *     args: {beta: 1.0}        # initial slope, default 1
 *
 * It follows include/sfp/plugin.h: shape, parameters (one beta per channel),
 * forward, and a backward that accumulates into din and dparams.
 */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "sfp/plugin.h"

typedef struct swish {
	float beta0;
} swish;

static int swish_create(void **state, int nargs, const char *const *keys,
			const char *const *values, char *errmsg, size_t errcap)
{
	swish *s = malloc(sizeof *s);
	if (!s) {
		snprintf(errmsg, errcap, "out of memory");
		return -1;
	}
	s->beta0 = 1.0f;
	for (int i = 0; i < nargs; i++) {
		char *end;
		if (strcmp(keys[i], "beta") != 0) {
			snprintf(errmsg, errcap, "unknown argument '%s' (swish takes beta)", keys[i]);
			free(s);
			return -1;
		}
		s->beta0 = strtof(values[i], &end);
		if (end == values[i] || *end || !isfinite(s->beta0)) {
			snprintf(errmsg, errcap, "beta must be a number, not '%s'", values[i]);
			free(s);
			return -1;
		}
	}
	*state = s;
	return 0;
}

static void swish_destroy(void *state)
{
	free(state);
}

static int swish_shape(void *state, const int in[3], int out[3], char *errmsg, size_t errcap)
{
	(void)state;
	(void)errmsg;
	(void)errcap;
	memcpy(out, in, 3 * sizeof(int));
	return 0;
}

static size_t swish_nparams(void *state, const int in[3])
{
	(void)state;
	return (size_t)in[0];
}

static void swish_init(void *state, float *params, const int in[3], uint64_t seed)
{
	const swish *s = state;
	(void)seed;
	for (int c = 0; c < in[0]; c++)
		params[c] = s->beta0;
}

static float sigmoid(float x)
{
	return 1.0f / (1.0f + expf(-x));
}

static void swish_forward(void *state, float *out, const float *in, const float *params, int B,
			  const int shape[3], int training)
{
	(void)state;
	(void)training;
	const size_t hw = (size_t)shape[1] * shape[2];
	for (int b = 0; b < B; b++)
		for (int c = 0; c < shape[0]; c++) {
			const size_t o = ((size_t)b * shape[0] + c) * hw;
			for (size_t i = 0; i < hw; i++)
				out[o + i] = in[o + i] * sigmoid(params[c] * in[o + i]);
		}
}

/* dy/dx = s + beta x s (1 - s), dy/dbeta = x^2 s (1 - s), s = sigmoid(beta x) */
static void swish_backward(void *state, float *din, float *dparams, const float *dout,
			   const float *in, const float *out, const float *params, int B,
			   const int shape[3])
{
	(void)state;
	(void)out;
	const size_t hw = (size_t)shape[1] * shape[2];
	for (int b = 0; b < B; b++)
		for (int c = 0; c < shape[0]; c++) {
			const size_t o = ((size_t)b * shape[0] + c) * hw;
			float db = 0.0f;
			for (size_t i = 0; i < hw; i++) {
				float x = in[o + i], s = sigmoid(params[c] * x), ds = s * (1.0f - s);
				if (din)
					din[o + i] += dout[o + i] * (s + params[c] * x * ds);
				db += dout[o + i] * x * x * ds;
			}
			dparams[c] += db;
		}
}

static const sfp_plugin_layer swish_layer = {
	.abi_version = SFP_PLUGIN_ABI_VERSION,
	.name = "swish",
	.create = swish_create,
	.destroy = swish_destroy,
	.shape = swish_shape,
	.nparams = swish_nparams,
	.init = swish_init,
	.forward = swish_forward,
	.backward = swish_backward,
};

const sfp_plugin_layer *sfp_plugin_entry(void);
const sfp_plugin_layer *sfp_plugin_entry(void)
{
	return &swish_layer;
}
