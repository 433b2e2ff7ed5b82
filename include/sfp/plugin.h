/*
 * sfp/plugin.h -- the C ABI of a custom layer, loaded from a shared library.
 *
 * A config names the library and an entry symbol:
 *
 *   - type: plugin
 *     library: build/plugins/swish.so   # relative: to the config file's folder
 *     symbol: sfp_plugin_entry           # the default
 *     args: {beta: 1.0}                  # strings handed to create()
 *
 * The symbol is a function `const sfp_plugin_layer *symbol(void)` returning a
 * static table. sfp refuses a table whose `abi_version` differs from the one
 * it was built with. Shapes are per sample, (c, h, w); a flat vector of n
 * features is (n, 1, 1). Tensors are float32, batch-major, C order:
 * `in` is B x in_c x in_h x in_w, `out` is B x out_c x out_h x out_w.
 *
 * The rules every sfp layer follows hold for plug-ins too:
 *  - forward and backward do not allocate and do not keep pointers;
 *  - backward ACCUMULATES: `din += ...`, `dparams += ...` (sfp zeroes them);
 *    `din` is NULL when the layer's input needs no gradient;
 *  - parameters live in sfp's arena (`params`, `nparams` floats), so the
 *    optimizer, checkpoints and gradient exchange see them; per-instance
 *    state made by create() must not change during training;
 *  - errors are returned as a negative int with a message written into
 *    (errmsg, errcap); nothing is printed, nothing exits.
 */
#ifndef SFP_PLUGIN_H
#define SFP_PLUGIN_H

#include <stddef.h>
#include <stdint.h>

#ifdef __cplusplus
extern "C" {
#endif

#define SFP_PLUGIN_ABI_VERSION 1u
#define SFP_PLUGIN_DEFAULT_SYMBOL "sfp_plugin_entry"

typedef struct sfp_plugin_layer {
	uint32_t abi_version; /* SFP_PLUGIN_ABI_VERSION */
	const char *name;     /* shown in logs and errors */

	/* Make per-instance state from the config's args (keys[i] = values[i]).
	 * Reject unknown keys and bad values with a message. *state may stay NULL. */
	int (*create)(void **state, int nargs, const char *const *keys, const char *const *values,
		      char *errmsg, size_t errcap);
	/* Free what create() made; state may be NULL. */
	void (*destroy)(void *state);
	/* Output shape for input shape `in`; an error if the input cannot fit. */
	int (*shape)(void *state, const int in[3], int out[3], char *errmsg, size_t errcap);
	/* Number of float parameters for input shape `in` (may be 0). */
	size_t (*nparams)(void *state, const int in[3]);
	/* Initialise params (nparams floats); `seed` is per layer. May be NULL (zeros). */
	void (*init)(void *state, float *params, const int in[3], uint64_t seed);
	/* out = f(in; params) for B samples; `training` is 1 in training mode. */
	void (*forward)(void *state, float *out, const float *in, const float *params, int B,
			const int in_shape[3], int training);
	/* din += df/din^T dout (if din), dparams += df/dparams^T dout. */
	void (*backward)(void *state, float *din, float *dparams, const float *dout, const float *in,
			 const float *out, const float *params, int B, const int in_shape[3]);
} sfp_plugin_layer;

typedef const sfp_plugin_layer *(*sfp_plugin_entry_fn)(void);

#ifdef __cplusplus
}
#endif
#endif
