/*
 * model_internal.h -- the model's layer table and arenas, shared by
 * model.c (building, forward, backward) and qmodel.c (learned containers
 * for weights and activations).
 */
#ifndef SFP_MODEL_INTERNAL_H
#define SFP_MODEL_INTERNAL_H

#include "nn/nn_internal.h"
#include "sfp/nn.h"
#include "sfp/plugin.h"
#include "sfp/quant.h"

enum layer_kind {
	L_LINEAR,
	L_CONV2D,
	L_MAXPOOL,
	L_AVGPOOL,
	L_RELU,
	L_GELU,
	L_TANH,
	L_FLATTEN,
	L_DROPOUT,
	L_BATCHNORM,
	L_ADD,
	L_PLUGIN
};

typedef struct layer {
	int kind;
	char name[SFP_CFG_NAME];
	int line;
	sfp_shape in, out;
	int input; /* producer of the input (-1 = model input) */
	int inplace; /* relu writing over its producer's output (see relu_can_be_inplace) */
	int grad_out; /* does anything need the gradient of this layer's output? */
	int from;  /* add: second operand */
	/* options */
	int bias;
	float p, eps, momentum;
	sfp_conv_dims conv;
	sfp_pool_dims pool;
	/* arena slices (float offsets) */
	size_t param_off, nparams; /* weights first, then bias / gamma then beta */
	size_t buf_off, nbufs;     /* batch norm: running mean, running var */
	size_t act_off;            /* output, max_batch x out */
	size_t aux_off;            /* batch norm: mean, invstd */
	size_t idx_off;            /* maxpool: argmax per output, in the index arena */
	/* plug-in */
	void *dl;
	const sfp_plugin_layer *plugin;
	void *pstate;
} layer;

struct sfp_model {
	int n;
	layer *layers;
	sfp_shape input;
	int classes, max_batch;
	float *params, *grads, *bufs, *acts, *dacts, *dlogits, *dinput;
	int32_t *idx;
	size_t nparams, nbufs, nacts, nws, nidx, npartial;
	int want_dinput;
	sfp_nn_ctx ctx; /* owns its workspaces */
	uint64_t noise_seed;
	int training;
	int last_batch; /* B of the last forward */
	int output_stored; /* a pipeline stage: the last output is an activation, not logits */
	struct sfp_qmodel *q; /* learned containers (qmodel.c); NULL = float32 */
	struct sfp_pmodel *p; /* BitPruning integer weights (pmodel.c); NULL = none */
};

static inline float *act(sfp_model *m, int i)
{
	return m->acts + m->layers[i].act_off;
}

static inline float *dact(sfp_model *m, int i)
{
	return m->dacts + m->layers[i].act_off;
}


/* ---- qmodel.c: hooks the forward and backward passes call ---------------- */
/* Pick widths and quantize the weights before a forward pass. */
void sfp_qm_begin_forward(sfp_model *m);
/* The weights forward and backward use (quantized copy, or the masters). */
const float *sfp_qm_weights(sfp_model *m, int i);
/* Layer i's input for samples [s0, s0 + b) as the layer consumed it
 * (`which` 0: its input, 1: an add's second operand). */
const float *sfp_qm_input(sfp_model *m, int i, int which, const float *x, int s0, int b);
/* After layer i's forward on [s0, s0 + b): quantize the stored output. */
void sfp_qm_after_forward(sfp_model *m, int i, int s0, int b);
/* Before layer i's backward on [s0, s0 + b): its output's width gradients. */
void sfp_qm_before_backward(sfp_model *m, int i, int s0, int b);
void sfp_qm_free(struct sfp_qmodel *q);

/* ---- pmodel.c: BitPruning hooks (m->p set) -------------------------------- */
/* Before a forward pass: the weights through the interpolated quantizer. */
void sfp_pm_begin_forward(sfp_model *m);
/* The parameter arena forward and backward read (quantized copy, or the
 * finalized masters). */
const float *sfp_pm_weights(const sfp_model *m);
/* Layer i's input for b samples (src) as the layer consumes it: quantized
 * when activations are on and i is linear/conv, else src. */
const float *sfp_pm_input(sfp_model *m, int i, const float *src, int b);
/* After layer i's forward on [s0, s0 + b): note its input's range. */
void sfp_pm_after_forward(sfp_model *m, int i, const float *x, int s0, int b);
/* Around layer i's backward on [s0, s0 + b): the input gradient slice to
 * give the kernel (a scratch one when din is NULL), then the activation
 * width's gradient and the clamp's mask. */
float *sfp_pm_before_backward(sfp_model *m, int i, float *din, int s0, int b);
void sfp_pm_after_backward(sfp_model *m, int i, const float *x, float *din, int s0, int b);
/* Tensor k's activation width (NULL without activations), for tests. */
sfp_qwidth *sfp_pm_act_width(sfp_model *m, int k);
void sfp_pm_free(struct sfp_pmodel *p);

#endif
