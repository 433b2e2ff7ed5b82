/*
 * containers.c -- a model's weights and activations in learned-width containers
 * (Quantum Mantissa / Quantum Exponent, or widths set by BitWave).
 *
 * Which tensors: the weights of every linear and conv2d layer (not biases,
 * not batch-norm scales), an embedding's and a position table, attention's
 * Wqkv and Wo as one tensor (sfp_layer_container_weights; a linear tied to
 * an embedding reads the embedding's container), and the stored output of
 * every layer except the logits. Attention's internal tensors (qkv, the
 * probabilities, the heads' outputs) and layer norm's statistics stay
 * float32 in the aux arena (docs/transformer.md). A ReLU that runs in place over its producer's output stores one
 * tensor for the pair (the ReLU's), and a flatten stores nothing (it aliases).
 *
 * How (design.md §1.3): each tensor has real widths (n_e, n_m). At each
 * training step every tensor picks floor or ceil of each width at random
 * (probability = the fractional part; the draw is a hash of the step seed
 * and the tensor, so a resumed run draws the same). Weights: the forward
 * and backward passes read a copy quantized at the picked widths; gradients
 * reach the float32 masters straight through. Activations: the stored copy
 * is quantized at the packing widths (ceil n_e, ceil n_m) -- what a packed
 * stash holds -- and whoever reads it gets it re-quantized at the picked
 * widths, so the width gradient sum g (Q(x, ceil) - Q(x, floor)) can be
 * formed in backward from the stored copy. Eval mode uses the packing
 * widths. Q is the codec's own quantizer (sfp_quantize), window per call.
 *
 * Packed weights (bitlength.pack_weights): what forward and
 * backward read of each weight tensor is held only as containers, one per
 * SFP_QBLOCK values, encoded from the float32 masters at the step's widths
 * at the start of each forward (Gecko exponents with bitlength.gecko), with
 * the window and refinement sfp_containers_quantize uses, so they decode to exactly
 * its values. A layer's weights are decoded into one scratch buffer when it
 * runs (layers run one at a time; the buffer keeps the last layer's), so
 * the memory is the containers plus the largest layer's weights in float32,
 * against a float32 copy of all parameters without packing.
 */
#include <assert.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "nn/model_internal.h"
#include "sfp/codec.h"

typedef struct sfp_containers {
	int policy; /* SFP_QPOLICY_* */
	sfp_codec *codec;
	int nt;              /* tensors */
	sfp_qtensor *t;
	int *layer_of;       /* tensor -> layer */
	int *is_weight;      /* tensor -> 1 weights, 0 activations */
	int *wq, *aq;        /* layer -> tensor index or -1 */
	float *qparams;      /* parameters as forward reads them */
	float *tmp[2];       /* re-quantized inputs (the largest a layer reads at once) */
	size_t tmp_floats;
	double *sums;        /* width-gradient block sums (2 per block of the largest output) */
	size_t nsums;
	uint64_t warned;     /* quantizations that failed (a value beyond its container) */
	uint8_t *enc;        /* scratch for measuring packed sizes */
	size_t enc_cap;
	/* packed weights (qparams is NULL then) */
	int wpack, wgecko;
	uint8_t *wbytes;     /* every weight tensor's containers, in order */
	size_t wused, wcap;
	size_t *wblk;        /* per block: offset into wbytes and size */
	size_t *wblk0;       /* tensor -> its first block (weights only) */
	size_t nwblk;
	int *wraw;           /* tensor -> 1: not packed this step (no memory): read
			      * by quantizing the masters */
	float *wdec;         /* the weights (and bias) of layer wdec_layer */
	size_t wdec_floats;
	int wdec_layer;
	/* gradient containers (SFP_QTARGET_GRADIENTS) */
	int grad_on;
	unsigned grad_e, grad_m;
} sfp_containers;

void sfp_containers_free(sfp_containers *q)
{
	if (!q)
		return;
	sfp_codec_free(q->codec);
	free(q->t);
	free(q->layer_of);
	free(q->is_weight);
	free(q->wq);
	free(q->aq);
	free(q->qparams);
	free(q->wbytes);
	free(q->wblk);
	free(q->wblk0);
	free(q->wraw);
	free(q->wdec);
	free(q->tmp[0]);
	free(q->tmp[1]);
	free(q->sums);
	free(q->enc);
	free(q);
}

/* Does layer i's output count as a stored activation? Not the logits, not
 * a flatten (an alias), not a producer whose next layer is a ReLU in place
 * over it (the pair stores one tensor: the ReLU's). The last output of a
 * pipeline stage is an activation (it crosses to the next stage in its
 * container), even when it is a flatten. */
static int stores_activation(const sfp_model *m, int i)
{
	const layer *l = &m->layers[i];
	if (i == m->n - 1)
		return m->output_stored;
	return l->kind != L_FLATTEN && !(m->layers[i + 1].inplace && m->layers[i + 1].input == i);
}

/* The layer that last writes the slice layer i's output lives in. */
static int owner(const sfp_model *m, int i)
{
	while (i >= 0 && m->layers[i].kind == L_FLATTEN && m->layers[i].input >= 0)
		i = m->layers[i].input;
	return i;
}

int sfp_model_set_quant(sfp_model *m, int policy, int targets, float e, float mbits,
			sfp_error *err)
{
	if (m->intweights && policy != SFP_QPOLICY_OFF)
		return sfp_error_set(err, SFP_EINVAL,
				     "containers and BitPruning widths cannot be on together");
	sfp_containers_free(m->containers);
	m->containers = NULL;
	if (policy == SFP_QPOLICY_OFF)
		return sfp_stash_setup(m, 0, 0, err);
	if (policy != SFP_QPOLICY_FIXED && policy != SFP_QPOLICY_QUANTUM &&
	    policy != SFP_QPOLICY_BITWAVE)
		return sfp_error_set(err, SFP_EINVAL, "unknown bitlength policy %d", policy);
	sfp_containers *q = calloc(1, sizeof *q);
	if (!q)
		return sfp_error_set(err, SFP_ENOMEM, "out of memory");
	q->policy = policy;
	q->codec = sfp_codec_create();
	q->t = calloc((size_t)2 * m->n, sizeof *q->t);
	q->layer_of = calloc((size_t)2 * m->n, sizeof(int));
	q->is_weight = calloc((size_t)2 * m->n, sizeof(int));
	q->wq = malloc((size_t)m->n * sizeof(int));
	q->aq = malloc((size_t)m->n * sizeof(int));
	q->wpack = m->pack_weights && (targets & SFP_QTARGET_WEIGHTS);
	q->wgecko = m->stash_gecko;
	q->grad_on = (targets & SFP_QTARGET_GRADIENTS) != 0;
	q->grad_e = 5;
	q->grad_m = 2;
	q->wdec_layer = -1;
	if (q->wpack) {
		q->wblk0 = calloc((size_t)2 * m->n + 1, sizeof *q->wblk0);
		q->wraw = calloc((size_t)2 * m->n + 1, sizeof *q->wraw);
	} else {
		q->qparams = malloc((m->nparams ? m->nparams : 1) * sizeof(float));
	}
	if (!q->codec || !q->t || !q->layer_of || !q->is_weight || !q->wq || !q->aq ||
	    (q->wpack ? !q->wblk0 || !q->wraw : !q->qparams))
		goto nomem;
	size_t big_in = 1, big_out = 1;
	for (int i = 0; i < m->n; i++) {
		const layer *l = &m->layers[i];
		q->wq[i] = q->aq[i] = -1;
		size_t nw = targets & SFP_QTARGET_WEIGHTS ? sfp_layer_container_weights(l) : 0;
		if (nw) {
			q->wq[i] = q->nt;
			q->layer_of[q->nt] = i;
			q->is_weight[q->nt] = 1;
			if (q->wpack) {
				q->wblk0[q->nt] = q->nwblk;
				q->nwblk += (nw + SFP_QBLOCK - 1) / SFP_QBLOCK;
				if (l->nparams > q->wdec_floats)
					q->wdec_floats = l->nparams;
			}
			sfp_qtensor_init(&q->t[q->nt++], e, mbits, nw);
			if (nw > big_out)
				big_out = nw;
		}
		const int stores = (targets & SFP_QTARGET_ACTIVATIONS) && stores_activation(m, i);
		if (stores) {
			size_t na = (size_t)m->max_batch * sfp_shape_numel(l->out);
			q->aq[i] = q->nt;
			q->layer_of[q->nt] = i;
			sfp_qtensor_init(&q->t[q->nt++], e, mbits, na);
		}
		/* a layer reads its input one chunk at a time in a run of
		 * per-sample layers, else the whole batch */
		int a = i, b = i + 1;
		while (per_sample(l) && a > 0 && per_sample(&m->layers[a - 1]))
			a--;
		while (per_sample(l) && b < m->n && per_sample(&m->layers[b]))
			b++;
		const size_t rows = (size_t)(per_sample(l) ? chunk_samples(m, a, b) : m->max_batch);
		if (rows * sfp_shape_numel(l->in) > big_in)
			big_in = rows * sfp_shape_numel(l->in);
		if (rows * sfp_shape_numel(l->out) > big_out)
			big_out = rows * sfp_shape_numel(l->out);
	}
	q->nsums = 2 * ((big_out + SFP_QGRAD_BLOCK - 1) / SFP_QGRAD_BLOCK);
	q->tmp_floats = big_in;
	q->tmp[0] = malloc(big_in * sizeof(float));
	q->tmp[1] = malloc(big_in * sizeof(float));
	q->sums = malloc(q->nsums * sizeof(double));
	if (!q->tmp[0] || !q->tmp[1] || !q->sums)
		goto nomem;
	if (q->wpack) {
		q->wblk = malloc((2 * q->nwblk + 1) * sizeof *q->wblk);
		q->wdec = malloc((q->wdec_floats + 1) * sizeof(float));
		if (!q->wblk || !q->wdec)
			goto nomem;
		for (int k = 0; k < q->nt; k++)
			q->wraw[k] = 1; /* until the first forward packs them */
	} else {
		memcpy(q->qparams, m->params, m->nparams * sizeof(float));
	}
	m->containers = q;
	int rc = sfp_stash_setup(m, m->stash_packed, m->stash_gecko, err);
	if (rc < 0) {
		sfp_containers_free(q);
		m->containers = NULL;
		(void)sfp_stash_setup(m, 0, 0, NULL);
		return rc;
	}
	return SFP_OK;
nomem:
	sfp_containers_free(q);
	return sfp_error_set(err, SFP_ENOMEM, "out of memory for the model's containers");
}

int sfp_model_n_qtensors(const sfp_model *m)
{
	return m->containers ? m->containers->nt : 0;
}

uint64_t sfp_model_container_misses(const sfp_model *m)
{
	return m->containers ? m->containers->warned : 0;
}

void sfp_model_set_pack_weights(sfp_model *m, int on)
{
	m->pack_weights = on != 0;
}

/* Bytes of weight tensor k's containers (0 when not packed). */
static size_t weight_bytes(const sfp_containers *q, int k)
{
	if (!q->wpack || q->wraw[k])
		return 0;
	size_t bytes = 0;
	const size_t nb = (q->t[k].size + SFP_QBLOCK - 1) / SFP_QBLOCK;
	for (size_t b = 0; b < nb; b++)
		bytes += q->wblk[2 * (q->wblk0[k] + b) + 1];
	return bytes;
}

void sfp_model_qtensor(const sfp_model *m, int k, sfp_qtensor_info *info)
{
	const sfp_containers *q = m->containers;
	const sfp_qtensor *t = &q->t[k];
	info->layer = m->layers[q->layer_of[k]].name;
	info->kind = q->is_weight[k] ? "weights" : "activations";
	info->n_e = t->e.n;
	info->n_m = t->m.n;
	info->e = sfp_qwidth_pack_bits(&t->e);
	info->m = sfp_qwidth_pack_bits(&t->m);
	info->count = t->size;
	info->stash_bytes = q->is_weight[k] ? weight_bytes(q, k) : sfp_stash_packed_bytes(m, q->layer_of[k]);
}

void sfp_model_set_floors(sfp_model *m, float e_min, float m_min)
{
	if (!m->containers)
		return;
	for (int k = 0; k < m->containers->nt; k++) {
		sfp_qtensor *t = &m->containers->t[k];
		t->e.lo = e_min < 1.0f ? 1.0f : e_min > t->e.hi ? t->e.hi : e_min;
		t->m.lo = m_min < 0.0f ? 0.0f : m_min > t->m.hi ? t->m.hi : m_min;
		t->e.n = t->e.n < t->e.lo ? t->e.lo : t->e.n;
		t->m.n = t->m.n < t->m.lo ? t->m.lo : t->m.n;
	}
}

void sfp_model_set_widths(sfp_model *m, unsigned e, unsigned mbits)
{
	if (!m->containers)
		return;
	for (int k = 0; k < m->containers->nt; k++) {
		m->containers->t[k].e.n = (float)e;
		m->containers->t[k].m.n = (float)mbits;
	}
}

/* The encode scratch q->enc holds at least `need` bytes. */
static int enc_room(sfp_containers *q, size_t need)
{
	return sfp_bytes_reserve(&q->enc, &q->enc_cap, 0, need);
}

/* Room for `need` more bytes of weight containers. */
static int wreserve(sfp_containers *q, size_t need)
{
	return sfp_bytes_reserve(&q->wbytes, &q->wcap, q->wused, need);
}

/*
 * Encode weight tensor k from its masters w at its widths this step: the
 * window sfp_containers_quantize takes (the largest over the blocks), then each
 * block with that FIXED window. Where memory runs out the tensor is read by
 * quantizing the masters instead (the same values).
 */
static void pack_weights(sfp_model *m, int k, const float *w)
{
	sfp_containers *q = m->containers;
	const sfp_qtensor *t = &q->t[k];
	const size_t n = t->size, nb = (n + SFP_QBLOCK - 1) / SFP_QBLOCK;
	sfp_params p;
	sfp_params_init(&p, t->use_e, t->use_m);
	sfp_model_refine_params(m, &p);
	p.gecko = q->wgecko;
	unsigned top = p.e == 8 ? 254 : 1;
	int rc = SFP_OK;
	for (size_t b = 0; b < nb && p.e < 8 && rc == SFP_OK; b++) {
		const size_t v0 = b * SFP_QBLOCK, len = n - v0 < SFP_QBLOCK ? n - v0 : SFP_QBLOCK;
		unsigned tb = 0;
		rc = sfp_quantize_window(q->codec, w + v0, len, &p, &tb, NULL);
		if (tb > top)
			top = tb;
	}
	p.window = SFP_WINDOW_FIXED;
	p.exp_hi = top;
	const size_t used0 = q->wused;
	for (size_t b = 0; b < nb && rc == SFP_OK; b++) {
		const size_t v0 = b * SFP_QBLOCK, len = n - v0 < SFP_QBLOCK ? n - v0 : SFP_QBLOCK;
		const uint64_t shape = len;
		size_t bytes = 0;
		/* into the scratch (room for the worst case), then exactly its
		 * size into the arena */
		rc = enc_room(q, sfp_encode_bound_params(len, &shape, 1, &p));
		if (rc == SFP_OK)
			rc = sfp_encode(q->codec, q->enc, q->enc_cap, &bytes, w + v0, len, &shape, 1,
					&p, NULL);
		if (rc == SFP_OK)
			rc = wreserve(q, bytes);
		if (rc == SFP_OK)
			memcpy(q->wbytes + q->wused, q->enc, bytes);
		size_t *blk = q->wblk + 2 * (q->wblk0[k] + b);
		blk[0] = q->wused;
		blk[1] = bytes;
		q->wused += bytes;
	}
	q->wraw[k] = rc != SFP_OK;
	if (rc != SFP_OK)
		q->wused = used0;
}

/* Pick this step's widths and quantize the weights (training), or use the
 * packing widths (eval). */
void sfp_containers_begin_forward(sfp_model *m)
{
	sfp_containers *q = m->containers;
	for (int k = 0; k < q->nt; k++) {
		sfp_qtensor *t = &q->t[k];
		if (m->training && q->policy == SFP_QPOLICY_QUANTUM) {
			sfp_rng r;
			sfp_rng_seed(&r, m->noise_seed * 0x9e3779b97f4a7c15ull + (uint64_t)k);
			sfp_qtensor_pick(t, &r);
		} else {
			t->use_e = sfp_qwidth_pack_bits(&t->e);
			t->use_m = sfp_qwidth_pack_bits(&t->m);
		}
	}
	if (q->wpack) {
		q->wused = 0;
		q->wdec_layer = -1;
		for (int i = 0; i < m->n; i++)
			if (q->wq[i] >= 0)
				pack_weights(m, q->wq[i], m->params + m->layers[i].param_off);
		return;
	}
	memcpy(q->qparams, m->params, m->nparams * sizeof(float));
	for (int i = 0; i < m->n; i++) {
		int k = q->wq[i];
		if (k < 0)
			continue;
		const layer *l = &m->layers[i];
		/* finite weights fit an automatic window; one that rounds past
		 * float32 is counted (sfp_model_container_misses) */
		if (sfp_containers_quantize(m, q->qparams + l->param_off, m->params + l->param_off,
				    q->t[k].size, q->t[k].use_e, q->t[k].use_m) < 0)
			q->warned++;
	}
}

const float *sfp_containers_weights(sfp_model *m, int i)
{
	sfp_containers *q = m->containers;
	if (!q)
		return (m->intweights ? sfp_intweights_weights(m) : m->params) + m->layers[i].param_off;
	if (!q->wpack)
		return q->qparams + m->layers[i].param_off;
	const layer *l = &m->layers[i];
	const int k = q->wq[i];
	if (k < 0)
		return m->params + l->param_off;
	if (q->wdec_layer != i) {
		const sfp_qtensor *t = &q->t[k];
		if (q->wraw[k]) {
			if (sfp_containers_quantize(m, q->wdec, m->params + l->param_off, t->size, t->use_e,
					    t->use_m) < 0)
				q->warned++;
		} else {
			const size_t nb = (t->size + SFP_QBLOCK - 1) / SFP_QBLOCK;
			for (size_t b = 0; b < nb; b++) {
				const size_t *blk = q->wblk + 2 * (q->wblk0[k] + b);
				const size_t v0 = b * SFP_QBLOCK;
				const size_t len = t->size - v0 < SFP_QBLOCK ? t->size - v0 : SFP_QBLOCK;
				const int rc = sfp_decode(q->codec, q->wdec + v0, len, q->wbytes + blk[0],
							  blk[1], NULL, NULL);
				assert(rc == SFP_OK); /* our own containers: anything else is a bug */
				(void)rc;
			}
		}
		/* the bias reads the master */
		memcpy(q->wdec + t->size, m->params + l->param_off + t->size,
		       (l->nparams - t->size) * sizeof(float));
		q->wdec_layer = i;
	}
	return q->wdec;
}

static int nthreads(const sfp_model *m, size_t n)
{
	const size_t nb = (n + SFP_QBLOCK - 1) / SFP_QBLOCK;
	return nb < 2 ? 1 : nb < (size_t)m->ctx.threads ? (int)nb : m->ctx.threads;
}

int sfp_containers_quantize(sfp_model *m, float *dst, const float *src, size_t n, unsigned e,
		    unsigned mbits)
{
	sfp_codec *c = m->containers->codec;
	const int T = nthreads(m, n);
	sfp_params p;
	sfp_params_init(&p, e, mbits);
	sfp_model_refine_params(m, &p);
	if (T == 1 && !p.bias && !p.shift)
		return sfp_quant_apply(c, dst, src, n, e, mbits, NULL);
	const int64_t nb = (int64_t)((n + SFP_QBLOCK - 1) / SFP_QBLOCK);
	unsigned top = e == 8 ? 254 : 1;
	int bad = 0, wbad = 0;
	/* one region: the window (a max per block; the for ends in a
	 * barrier), then the blocks at that FIXED window */
#pragma omp parallel num_threads(T) reduction(| : bad)
	{
		if (e < 8) {
#pragma omp for schedule(static) reduction(max : top)
			for (int64_t k = 0; k < nb; k++) {
				const size_t b0 = (size_t)k * SFP_QBLOCK;
				unsigned tk = 0;
				if (sfp_quantize_window(c, src + b0, n - b0 < SFP_QBLOCK ? n - b0 : SFP_QBLOCK,
							&p, &tk, NULL) < 0) {
#pragma omp atomic write
					wbad = 1;
				} else if (tk > top) {
					top = tk;
				}
			}
		}
		sfp_params pt = p;
		pt.window = SFP_WINDOW_FIXED;
		pt.exp_hi = top;
#pragma omp for schedule(static)
		for (int64_t k = 0; k < nb; k++) {
			const size_t b0 = (size_t)k * SFP_QBLOCK;
			const size_t len = n - b0 < SFP_QBLOCK ? n - b0 : SFP_QBLOCK;
			if (!wbad)
				bad |= sfp_quantize(c, dst + b0, src + b0, len, &pt, NULL) < 0;
		}
	}
	if (wbad) /* the serial pass reports it, as the one-thread path does */
		return sfp_quant_apply(c, dst, src, n, e, mbits, NULL);
	return bad ? SFP_ERANGE : SFP_OK;
}

const float *sfp_containers_input(sfp_model *m, int j, int which, const float *src, size_t n)
{
	sfp_containers *q = m->containers;
	int k = q->aq[owner(m, j)];
	if (k < 0)
		return src;
	const sfp_qtensor *t = &q->t[k];
	if (t->use_e == sfp_qwidth_pack_bits(&t->e) && t->use_m == sfp_qwidth_pack_bits(&t->m))
		return src;
	float *dst = q->tmp[which];
	(void)sfp_containers_quantize(m, dst, src, n, t->use_e, t->use_m);
	return dst;
}

int sfp_containers_pack_widths(const sfp_model *m, int i, unsigned *e, unsigned *mbits)
{
	const sfp_containers *q = m->containers;
	if (!q || q->aq[i] < 0)
		return 0;
	*e = sfp_qwidth_pack_bits(&q->t[q->aq[i]].e);
	*mbits = sfp_qwidth_pack_bits(&q->t[q->aq[i]].m);
	return 1;
}

int sfp_containers_reads_outputs(const sfp_model *m)
{
	return m->containers && m->containers->policy == SFP_QPOLICY_QUANTUM;
}

size_t sfp_containers_bytes(const sfp_model *m)
{
	const sfp_containers *q = m->containers;
	if (!q)
		return 0;
	const size_t weights = q->wpack ? q->wcap + (q->wdec_floats + 1) * sizeof(float) +
						  (2 * q->nwblk + 1) * sizeof(size_t)
					: m->nparams * sizeof(float);
	return q->enc_cap + weights + 2 * q->tmp_floats * sizeof(float) + q->nsums * sizeof(double);
}

void sfp_containers_after_forward(sfp_model *m, int i, int s0, int b)
{
	sfp_containers *q = m->containers;
	int k = q->aq[i];
	if (k < 0)
		return;
	const size_t no = sfp_shape_numel(m->layers[i].out);
	float *y = sfp_act_out(m, i, s0);
	const sfp_qtensor *t = &q->t[k];
	const unsigned e = sfp_qwidth_pack_bits(&t->e), mb = sfp_qwidth_pack_bits(&t->m);
	/* quantized in place; the packed copy is encoded from the values the
	 * layer produced and decodes to exactly those */
	const int rc = sfp_stash_wants(m, i) ? sfp_stash_put(m, i, s0, b, e, mb)
					     : sfp_containers_quantize(m, y, y, (size_t)b * no, e, mb);
	if (rc < 0)
		q->warned++; /* a NaN/Inf activation: left as is, the loss check stops the run */
}

/* The width gradients of tensor t from its values x and their gradient g
 * (x on the (grid_e, grid_m) grid; grid_e = 0: on none): blocks over the
 * threads, summed in block order, so the bits do not depend on the thread
 * count. */
static void width_grad(sfp_model *m, sfp_qtensor *t, const float *g, const float *x, size_t n,
		       unsigned grid_e, unsigned grid_m)
{
	sfp_containers *q = m->containers;
	sfp_qgrad p;
	sfp_qgrad_setup(&p, t, grid_e, grid_m);
	const int64_t nb = (int64_t)((n + SFP_QGRAD_BLOCK - 1) / SFP_QGRAD_BLOCK);
	double *sums = q->sums, total[2] = {0, 0};
	unsigned top0 = 1, top1 = 1;
	int bad = 0;
	/* one region: the window tops (a max per block), then the block sums */
#pragma omp parallel num_threads(m->ctx.threads) reduction(| : bad) \
	if (m->ctx.threads > 1 && nb > 1)
	{
		if (p.nneed) {
#pragma omp for schedule(static) reduction(max : top0, top1)
			for (int64_t k = 0; k < nb; k++) {
				const size_t b0 = (size_t)k * SFP_QGRAD_BLOCK;
				unsigned tk[2] = {1, 1};
				bad |= sfp_qgrad_tops(q->codec, &p, x + b0,
						      n - b0 < SFP_QGRAD_BLOCK ? n - b0 : SFP_QGRAD_BLOCK,
						      tk, NULL) < 0;
				top0 = tk[0] > top0 ? tk[0] : top0;
				top1 = tk[1] > top1 ? tk[1] : top1;
			}
		}
		sfp_qgrad pt = p;
		const unsigned tops[2] = {top0, top1};
		sfp_qgrad_set_tops(&pt, tops);
#pragma omp for schedule(static)
		for (int64_t k = 0; k < nb; k++) {
			const size_t b0 = (size_t)k * SFP_QGRAD_BLOCK;
			const size_t len = n - b0 < SFP_QGRAD_BLOCK ? n - b0 : SFP_QGRAD_BLOCK;
			bad |= sfp_qgrad_block(q->codec, &pt, g + b0, x + b0, len, sums + 2 * k, NULL) < 0;
		}
	}
	for (int64_t k = 0; k < nb && !bad; k++) {
		total[0] += sums[2 * k];
		total[1] += sums[2 * k + 1];
	}
	if (!bad)
		sfp_qgrad_apply(t, &p, total);
}

int sfp_model_set_grad_widths(sfp_model *m, unsigned e, unsigned mbits, sfp_error *err)
{
	if (e < 1 || e > 8 || mbits > 23)
		return sfp_error_set(err, SFP_EINVAL,
				     "gradient widths must satisfy 1 <= e <= 8 and m <= 23 (got e%u m%u)",
				     e, mbits);
	if (m->containers) {
		m->containers->grad_e = e;
		m->containers->grad_m = mbits;
	}
	return SFP_OK;
}

void sfp_containers_before_backward(sfp_model *m, int i, int s0, int b)
{
	sfp_containers *q = m->containers;
	if (q->grad_on && i < m->n - 1) {
		/* the output gradient is complete: round it to its container */
		const size_t no = sfp_shape_numel(m->layers[i].out);
		float *g = sfp_dact(m, i, s0);
		if (sfp_containers_quantize(m, g, g, (size_t)b * no, q->grad_e, q->grad_m) < 0)
			q->warned++; /* a NaN/Inf gradient: the loss check stops the run */
	}
	int k = q->aq[i];
	if (k < 0 || q->policy != SFP_QPOLICY_QUANTUM)
		return;
	const size_t no = sfp_shape_numel(m->layers[i].out);
	const sfp_qtensor *t = &q->t[k];
	width_grad(m, &q->t[k], sfp_dact(m, i, s0), sfp_act_saved(m, i, s0, b), (size_t)b * no,
		   sfp_qwidth_pack_bits(&t->e), sfp_qwidth_pack_bits(&t->m));
}

float sfp_model_quant_update(sfp_model *m, float lr, float gamma)
{
	sfp_containers *q = m->containers;
	if (!q || q->policy != SFP_QPOLICY_QUANTUM)
		return 0.0f;
	for (int i = 0; i < m->n; i++) {
		int k = q->wq[i];
		if (k < 0)
			continue;
		const layer *l = &m->layers[i];
		width_grad(m, &q->t[k], m->grads + l->param_off, m->params + l->param_off,
			   q->t[k].size, 0, 0);
	}
	sfp_qtensor **list = malloc((size_t)q->nt * sizeof *list);
	float pen = 0.0f;
	if (list) {
		for (int k = 0; k < q->nt; k++)
			list[k] = &q->t[k];
		pen = sfp_quant_penalty(list, q->nt, gamma);
		free(list);
	}
	for (int k = 0; k < q->nt; k++) {
		sfp_qwidth_step(&q->t[k].m, lr);
		sfp_qwidth_step(&q->t[k].e, lr);
	}
	return pen;
}

/* Refinement side information of a tensor of n values: at most its bytes
 * per block of SFP_QBLOCK values (the encoder drops a tool that does not
 * pay, so this is an upper bound). */
static double side_bits(const sfp_model *m, double n)
{
	return 8.0 * sfp_model_refine_bytes(m) * ceil(n / SFP_QBLOCK);
}

void sfp_model_footprint(const sfp_model *m, double *bits_weights, double *bits_acts,
			 double *count_weights, double *count_acts)
{
	double bw = 0, ba = 0, cw = 0, ca = 0;
	const sfp_containers *q = m->containers;
	for (int i = 0; i < m->n; i++) {
		const layer *l = &m->layers[i];
		double nw = (double)sfp_layer_container_weights(l);
		double na = (double)m->max_batch * (double)sfp_shape_numel(l->out);
		const int stores = stores_activation(m, i);
		if (nw > 0) {
			const sfp_qtensor *t = q && q->wq[i] >= 0 ? &q->t[q->wq[i]] : NULL;
			bw += nw * (t ? 1 + sfp_qwidth_pack_bits(&t->e) + sfp_qwidth_pack_bits(&t->m) : 32);
			if (t)
				bw += side_bits(m, nw);
			cw += nw;
		}
		if (stores) {
			const sfp_qtensor *t = q && q->aq[i] >= 0 ? &q->t[q->aq[i]] : NULL;
			ba += na * (t ? 1 + sfp_qwidth_pack_bits(&t->e) + sfp_qwidth_pack_bits(&t->m) : 32);
			if (t)
				ba += side_bits(m, na);
			ca += na;
		}
	}
	*bits_weights = bw;
	*bits_acts = ba;
	*count_weights = cw;
	*count_acts = ca;
}

int sfp_model_widths_save(const sfp_model *m, float *dst, int cap)
{
	if (!m->containers)
		return 0;
	for (int k = 0; k < m->containers->nt && 2 * k + 1 < cap; k++) {
		dst[2 * k] = m->containers->t[k].e.n;
		dst[2 * k + 1] = m->containers->t[k].m.n;
	}
	return 2 * m->containers->nt;
}

int sfp_model_widths_load(sfp_model *m, const float *src, int n)
{
	if (!m->containers || n != 2 * m->containers->nt)
		return SFP_EINVAL;
	for (int k = 0; k < m->containers->nt; k++) {
		m->containers->t[k].e.n = src[2 * k];
		m->containers->t[k].m.n = src[2 * k + 1];
	}
	return SFP_OK;
}

int sfp_model_packed_bits(sfp_model *m, int gecko, double *bits_weights, double *bits_acts,
			  sfp_error *err)
{
	sfp_containers *q = m->containers;
	*bits_weights = *bits_acts = 0.0;
	if (!q)
		return SFP_OK;
	const int B = m->last_batch > 0 ? m->last_batch : m->max_batch;
	for (int k = 0; k < q->nt; k++) {
		const int i = q->layer_of[k];
		const layer *l = &m->layers[i];
		const sfp_qtensor *t = &q->t[k];
		if (!q->is_weight[k] && m->stash) {
			/* the packed stash: the bytes it holds (nothing for an output
			 * backward never reads), or re-encoded the other way */
			size_t w = 0;
			int Bs = B;
			SFP_TRY(sfp_stash_measure(m, i, gecko, &w, &Bs, err));
			*bits_acts += 8.0 * (double)w * ((double)m->max_batch / (Bs ? Bs : 1));
			continue;
		}
		const float *src = q->is_weight[k] ? m->params + l->param_off : sfp_act_out(m, i, 0);
		const uint64_t n = q->is_weight[k] ? t->size : (uint64_t)B * sfp_shape_numel(l->out);
		if (enc_room(q, sfp_encode_bound(n, 1)) < 0)
			return sfp_error_set(err, SFP_ENOMEM, "out of memory for packing");
		sfp_params p;
		sfp_params_init(&p, sfp_qwidth_pack_bits(&t->e), sfp_qwidth_pack_bits(&t->m));
		p.gecko = gecko;
		size_t w = 0;
		uint64_t shape = n;
		SFP_TRY(sfp_encode(q->codec, q->enc, q->enc_cap, &w, src, n, &shape, 1, &p, err));
		/* activations are scaled to the largest batch, like the footprint */
		double bits = 8.0 * (double)w * (q->is_weight[k] ? 1.0 : (double)m->max_batch / B);
		if (q->is_weight[k])
			*bits_weights += bits;
		else
			*bits_acts += bits;
	}
	return SFP_OK;
}
