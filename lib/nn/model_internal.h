/*
 * model_internal.h -- the model's layer table and arenas, shared by
 * model.c (building, forward, backward) and containers.c (learned containers
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
	L_PLUGIN,
	L_EMBEDDING,
	L_POSITION,
	L_LAYERNORM,
	L_ATTENTION
};

typedef struct layer {
	int kind;
	char name[SFP_CFG_NAME];
	int line;
	sfp_shape in, out;
	int input; /* producer of the input (-1 = model input) */
	int inplace; /* relu writing over its producer's output (see relu_can_be_inplace) */
	int slot;  /* layer whose output memory this layer's output is (itself, or its
		    * input's for an in-place relu and a flatten alias) */
	int grad_out; /* does anything need the gradient of this layer's output? */
	int from;  /* add: second operand */
	int tie;   /* linear: the embedding whose matrix is the weight (-1: own) */
	/* options */
	int tok, ni, no; /* linear: rows per sample (T of a sequence, else 1),
			  * features in and out of each row */
	int vocab;       /* embedding (its dim is out.w) */
	sfp_attn_dims attn;
	int bias;
	float p, eps, momentum;
	sfp_conv_dims conv;
	sfp_pool_dims pool;
	/* arena slices (float offsets) */
	size_t param_off, nparams; /* weights first, then bias / gamma then beta */
	size_t buf_off, nbufs;     /* batch norm: running mean, running var */
	size_t act_off;            /* output, max_batch x out (activation and gradient arenas) */
	size_t aux_off;            /* in the aux arena: batch norm's mean, invstd; layer
				    * norm's mean, rstd per row; attention's qkv, att,
				    * prob (sfp_attention_forward), each max_batch rows */
	size_t idx_off;            /* maxpool: argmax per output, in the index arena (bytes) */
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
	float *params, *grads, *bufs, *acts, *dacts, *dlogits, *dinput, *aux;
	float *seqws; /* attention backward's dqkv and datt, the largest layer's */
	size_t nseqws;
	uint64_t embed_misses; /* token ids outside an embedding's vocabulary */
	uint8_t *idx; /* max-pool argmax: position in the window, per output */
	size_t nparams, nbufs, nacts, naux, nws, nidx, npartial;
	int want_dinput;
	sfp_grads_ready_fn grads_ready; /* sfp_model_on_grads_ready */
	void *grads_ready_user;
	sfp_nn_ctx ctx; /* owns its workspaces */
	uint64_t noise_seed;
	int training;
	int last_batch; /* B of the last forward */
	int output_stored; /* a pipeline stage: the last output is an activation, not logits */
	struct sfp_containers *containers; /* learned-width containers (containers.c);
					    * NULL = float32 */
	struct sfp_intweights *intweights; /* BitPruning integer weights (intweights.c);
					    * NULL = none */
	struct sfp_stash *stash; /* the packed activation stash and its scratch plan
				  * (stash.c); NULL = the float32 activation arena `acts` */
	int stash_packed, stash_gecko; /* sfp_model_set_stash */
	int pack_weights;              /* sfp_model_set_pack_weights */
	int refine_bias, refine_shift;  /* sfp_model_set_refine */
};

/*
 * Layers that treat each sample on its own (convolution, pooling,
 * element-wise, residual add, flatten, dropout) run in chunks of a few
 * samples through a whole run of such layers, so a chunk's activations stay
 * in cache from one layer to the next instead of streaming the whole batch
 * through memory once per layer. Linear, batch norm (batch statistics) and
 * plug-ins run on the whole batch. Chunking changes no result: every
 * per-sample layer computes each sample the same way whatever the chunk.
 */
#define SFP_CHUNK_BYTES (512u * 1024u)

/* The model's refinement (sfp_model_set_refine) into container params of
 * widths already set; containers finer than SFP_REFINE_MAX_M have none. */
static inline void sfp_model_refine_params(const sfp_model *m, sfp_params *p)
{
	const int on = p->m <= SFP_REFINE_MAX_M;
	p->bias = on ? m->refine_bias : SFP_BIAS_OFF;
	p->shift = on && m->refine_shift;
}

/* Side bytes refinement may add per block of SFP_QBLOCK values. */
static inline unsigned sfp_model_refine_bytes(const sfp_model *m)
{
	return (m->refine_bias ? 1u : 0u) + (m->refine_shift ? 1u : 0u);
}

static inline int per_sample(const layer *l)
{
	return l->kind != L_LINEAR && l->kind != L_BATCHNORM && l->kind != L_PLUGIN;
}

/* Samples per chunk for the run of layers [i, j): the largest output of the
 * run in SFP_CHUNK_BYTES, at least 1. */
static inline int chunk_samples(const sfp_model *m, int i, int j)
{
	size_t big = 1;
	for (int k = i; k < j; k++) {
		size_t b = sfp_shape_numel(m->layers[k].out) * sizeof(float);
		if (b > big)
			big = b;
	}
	size_t c = SFP_CHUNK_BYTES / big;
	return c < 1 ? 1 : c > (size_t)m->max_batch ? m->max_batch : (int)c;
}

/* What a layer's backward reads besides gradients and weights: its input
 * (the producer's output, as the layer consumed it) and/or its own output.
 * The width gradient of a stored activation (quantum policy) reads the
 * output too; stash.c adds that. */
static inline int bwd_reads_input(const layer *l)
{
	switch (l->kind) {
	case L_LINEAR:
	case L_CONV2D:
	case L_GELU:
	case L_BATCHNORM:
	case L_PLUGIN:
	case L_EMBEDDING:
	case L_LAYERNORM:
	case L_ATTENTION:
		return 1;
	case L_RELU:
		return !l->inplace;
	default:
		return 0;
	}
}

static inline int bwd_reads_output(const layer *l)
{
	return l->kind == L_TANH || l->kind == L_PLUGIN || (l->kind == L_RELU && l->inplace);
}

/* ---- stash.c: where layer outputs live ---------------------------------- */
/* Layer i's output rows from sample s0 during forward (writable; with a
 * packed stash only the current chunk or batch is there). */
float *sfp_act_out(sfp_model *m, int i, int s0);
/* Layer i's output for samples [s0, s0 + b) as kept for backward: the float
 * arena, or the packed stash decoded into scratch. */
const float *sfp_act_saved(sfp_model *m, int i, int s0, int b);
/* The gradient of layer i's output, rows from s0 (backward; with a packed
 * stash only the current chunk or batch is there). */
float *sfp_dact(sfp_model *m, int i, int s0);
/* Is layer i's output kept packed (encode it after forward)? */
int sfp_stash_wants(const sfp_model *m, int i);
/* Quantize layer i's output rows [s0, s0 + b) in place at (e, mbits) and
 * keep them in the stash, encoded from the values the layer produced. A
 * value the container cannot hold (one that rounds to infinity: a
 * diverging run, which the loss check stops) fails it; the rows are then
 * kept as float32 after the float stash's in-place quantization. */
int sfp_stash_put(sfp_model *m, int i, int s0, int b, unsigned e, unsigned mbits);
/* Does the model hold layer i's output as float32 after forward? (always
 * without a packed stash; with one, only the logits and tensors kept whole) */
int sfp_stash_holds_float(const sfp_model *m, int i);
/* Decode layer i's kept output into dst (cap floats); *B = samples. */
int sfp_stash_decode(sfp_model *m, int i, float *dst, size_t cap, int *B);
/* Bytes layer i's kept output takes packed with or without Gecko: what the
 * stash holds, or its segments re-encoded the other way; *B = samples. */
int sfp_stash_measure(sfp_model *m, int i, int gecko, size_t *bytes, int *B, sfp_error *err);
void sfp_stash_begin_forward(sfp_model *m);
/* Backward of B samples starts: zero (or seed with the loss gradient) the
 * output gradients; with a packed stash zeroing happens per unit and chunk
 * (sfp_stash_unit_begin before the layer(s) of a unit -- one layer, or a
 * run of per-sample layers starting at layer i -- sfp_stash_chunk_begin
 * before each chunk of a run). */
void sfp_stash_begin_backward(sfp_model *m, int B);
void sfp_stash_unit_begin(sfp_model *m, int i, int B);
void sfp_stash_chunk_begin(sfp_model *m, int i, int b);
/* Lay out activation memory: the float32 arena (packed = 0) or the packed
 * stash with its liveness-planned scratch pool. */
int sfp_stash_setup(sfp_model *m, int packed, int gecko, sfp_error *err);
void sfp_stash_free(struct sfp_stash *st);
/* Bytes of float activation memory; bytes of packed segments layer i
 * holds (i < 0: the stash's whole allocation). */
size_t sfp_stash_float_bytes(const sfp_model *m);
size_t sfp_stash_packed_bytes(const sfp_model *m, int i);


/* ---- containers.c: hooks the forward and backward passes call ---------------- */
/* Pick widths and quantize the weights before a forward pass. */
void sfp_containers_begin_forward(sfp_model *m);
/* The weights forward and backward use (quantized copy, or the masters). */
const float *sfp_containers_weights(sfp_model *m, int i);
/* Layer i's input `src` (n values of producer j's output) as the layer
 * consumes it: re-quantized at this step's picked widths into scratch
 * `which` (0: its input, 1: an add's second operand), or src itself. */
const float *sfp_containers_input(sfp_model *m, int j, int which, const float *src, size_t n);
/*
 * Container work on a tensor is spread over the model's threads in blocks
 * of SFP_QBLOCK values. The exponent window is the whole tensor's (a max
 * pass per block, then the largest top), each block is quantized or
 * encoded with that FIXED window: exactly sfp_quantize's values for the
 * whole tensor, whatever the thread count.
 */
#define SFP_QBLOCK 16384
/* dst = Q(src, e, mbits) (dst may be src), blocks over the threads. */
int sfp_containers_quantize(sfp_model *m, float *dst, const float *src, size_t n, unsigned e,
		    unsigned mbits);
/* The packing widths of layer i's stored output; 0 when it has none. */
int sfp_containers_pack_widths(const sfp_model *m, int i, unsigned *e, unsigned *mbits);
/* Does backward read stored outputs for their width gradients (quantum)? */
int sfp_containers_reads_outputs(const sfp_model *m);
/* Bytes the containers' own buffers hold (quantized weights, scratch). */
size_t sfp_containers_bytes(const sfp_model *m);
/* After layer i's forward on [s0, s0 + b): quantize the stored output. */
void sfp_containers_after_forward(sfp_model *m, int i, int s0, int b);
/* Before layer i's backward on [s0, s0 + b): its output's width gradients. */
void sfp_containers_before_backward(sfp_model *m, int i, int s0, int b);
/* stash.c: *buf (capacity *cap, `used` of it filled) has room for `need`
 * more bytes, growing by an eighth more than asked; SFP_ENOMEM leaves it. */
int sfp_bytes_reserve(uint8_t **buf, size_t *cap, size_t used, size_t need);
void sfp_containers_free(struct sfp_containers *q);

/* ---- intweights.c: BitPruning hooks (m->intweights set) -------------------------------- */
/* Before a forward pass: the weights through the interpolated quantizer. */
void sfp_intweights_begin_forward(sfp_model *m);
/* The parameter arena forward and backward read (quantized copy, or the
 * finalized masters). */
const float *sfp_intweights_weights(const sfp_model *m);
/* Layer i's input for b samples (src) as the layer consumes it: quantized
 * when activations are on and i is linear/conv, else src. */
const float *sfp_intweights_input(sfp_model *m, int i, const float *src, int b);
/* After layer i's forward on [s0, s0 + b): note its input's range. */
void sfp_intweights_after_forward(sfp_model *m, int i, const float *x, int s0, int b);
/* Around layer i's backward on [s0, s0 + b): the input gradient slice to
 * give the kernel (a scratch one when din is NULL), then the activation
 * width's gradient and the clamp's mask. */
float *sfp_intweights_before_backward(sfp_model *m, int i, float *din, int s0, int b);
void sfp_intweights_after_backward(sfp_model *m, int i, const float *x, float *din, int s0, int b);
/* Tensor k's activation width (NULL without activations), for tests. */
sfp_qwidth *sfp_intweights_act_width(sfp_model *m, int k);
void sfp_intweights_free(struct sfp_intweights *p);

/* Values in the weight matrix of a linear or conv2d layer (not its bias);
 * 0 for other layers and for a linear tied to an embedding (its matrix is
 * the embedding's). BitPruning's tensors. */
static inline size_t sfp_layer_weight_count(const layer *l)
{
	if (l->kind == L_LINEAR)
		return l->tie >= 0 ? 0 : (size_t)l->ni * l->no;
	if (l->kind == L_CONV2D)
		return (size_t)l->conv.co * l->conv.ci * l->conv.k * l->conv.k;
	return 0;
}

/* Weights that get a container (containers.c), first in the layer's
 * parameter slice: those of sfp_layer_weight_count, an embedding's and a
 * position table, and attention's Wqkv and Wo (not biases or norm gains). */
static inline size_t sfp_layer_container_weights(const layer *l)
{
	switch (l->kind) {
	case L_EMBEDDING:
		return (size_t)l->vocab * l->out.w;
	case L_POSITION:
		return sfp_shape_numel(l->out);
	case L_ATTENTION:
		return 4 * (size_t)l->attn.D * l->attn.D;
	default:
		return sfp_layer_weight_count(l);
	}
}

#endif
