/*
 * model.c -- a model built from the config's layer list: shape inference,
 * plug-in loading, the arenas, and the forward/backward passes that walk the
 * layers and call the kernels of layers.c.
 *
 * Every layer owns one output slice of the activation arena (B x out) and
 * the same slice of the activation-gradient arena; `flatten` aliases its
 * input's slice (it moves no data). Backward walks the layers in reverse and
 * each layer adds its input gradient into the producer's slice, so a tensor
 * read by two layers (a residual branch) sums both gradients. With a packed
 * stash (stash.c) those slices are planned scratch instead and what
 * backward reads comes from the containers: layers reach outputs and
 * gradients only through sfp_act_out, sfp_act_saved and sfp_dact.
 */
#include <dlfcn.h>
#include <limits.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "nn/model_internal.h"
#include "nn/nn_internal.h"
#include "sfp/plugin.h"

static const char *const kind_names[] = {"linear",    "conv2d",   "maxpool",   "avgpool",
					 "relu",      "gelu",     "tanh",      "flatten",
					 "dropout",   "batchnorm", "add",      "plugin",
					 "embedding", "position", "layernorm", "attention"};

static const char *kind_name(int k)
{
	return k >= 0 && k < (int)(sizeof kind_names / sizeof kind_names[0]) ? kind_names[k] : "?";
}

static int kind_parse(const char *s)
{
	for (size_t i = 0; i < sizeof kind_names / sizeof kind_names[0]; i++)
		if (!strcmp(s, kind_names[i]))
			return (int)i;
	return -1;
}

/* Where a layer is named in errors: "layer 'conv2' (conv2d, line 9)". */
static int layer_error(sfp_error *err, int code, const layer *l, const char *what)
{
	if (l->line > 0)
		return sfp_error_set(err, code, "layer '%s' (%s, line %d): %s", l->name,
				     kind_name(l->kind), l->line, what);
	return sfp_error_set(err, code, "layer '%s' (%s): %s", l->name, kind_name(l->kind), what);
}

static char *shape_str(char *buf, size_t cap, sfp_shape s)
{
	if (s.h == 1 && s.w == 1)
		snprintf(buf, cap, "(%d)", s.c);
	else
		snprintf(buf, cap, "(%d, %d, %d)", s.c, s.h, s.w);
	return buf;
}

static int load_plugin(layer *l, const sfp_cfg_layer *c, const char *base_dir, sfp_error *err)
{
	char path[2 * SFP_CFG_PATH + 2], msg[2 * SFP_CFG_PATH + 256];
	if (c->library[0] != '/' && base_dir && base_dir[0])
		snprintf(path, sizeof path, "%s/%s", base_dir, c->library);
	else
		snprintf(path, sizeof path, "%s", c->library);
	l->dl = dlopen(path, RTLD_NOW | RTLD_LOCAL);
	if (!l->dl) {
		snprintf(msg, sizeof msg, "cannot load plug-in library '%s': %s", path, dlerror());
		return layer_error(err, SFP_ENOENT, l, msg);
	}
	const char *sym = c->symbol[0] ? c->symbol : SFP_PLUGIN_DEFAULT_SYMBOL;
	sfp_plugin_entry_fn entry;
	*(void **)&entry = dlsym(l->dl, sym);
	if (!entry) {
		snprintf(msg, sizeof msg, "plug-in library '%s' has no symbol '%s'", path, sym);
		return layer_error(err, SFP_EINVAL, l, msg);
	}
	const sfp_plugin_layer *p = entry();
	if (!p) {
		snprintf(msg, sizeof msg, "plug-in '%s' returned no layer table", sym);
		return layer_error(err, SFP_EINVAL, l, msg);
	}
	if (p->abi_version != SFP_PLUGIN_ABI_VERSION) {
		snprintf(msg, sizeof msg, "plug-in '%s' speaks ABI version %u, sfp speaks %u", sym,
			 p->abi_version, SFP_PLUGIN_ABI_VERSION);
		return layer_error(err, SFP_EVERSION, l, msg);
	}
	if (!p->shape || !p->nparams || !p->forward || !p->backward) {
		snprintf(msg, sizeof msg, "plug-in '%s' lacks shape, nparams, forward or backward",
			 sym);
		return layer_error(err, SFP_EINVAL, l, msg);
	}
	l->plugin = p;
	if (p->create) {
		const char *keys[SFP_CFG_MAX_PLUGIN_ARGS], *vals[SFP_CFG_MAX_PLUGIN_ARGS];
		for (int i = 0; i < c->n_args; i++) {
			keys[i] = c->args[i].key;
			vals[i] = c->args[i].value;
		}
		char pmsg[200] = "";
		if (p->create(&l->pstate, c->n_args, keys, vals, pmsg, sizeof pmsg) < 0) {
			snprintf(msg, sizeof msg, "plug-in '%s': %s", p->name ? p->name : sym,
				 pmsg[0] ? pmsg : "create failed");
			return layer_error(err, SFP_EINVAL, l, msg);
		}
	}
	return SFP_OK;
}

/* The per-token rule (docs/transformer.md): a shape (T, 1, D) with D > 1 is
 * a sequence of T tokens of D features, row-major [T, D]; a flat vector is
 * (n, 1, 1). */
static int is_seq(sfp_shape s)
{
	return s.h == 1 && s.w > 1;
}

/* Rows and features per row of a sample for the per-row layers (layer
 * norm): a sequence's tokens, else one row of all values. */
static void seq_rows(sfp_shape s, int *rows, int *feat)
{
	*rows = is_seq(s) ? s.c : 1;
	*feat = is_seq(s) ? s.w : (int)sfp_shape_numel(s);
}

static int need_seq(layer *l, sfp_error *err)
{
	char a[64], msg[256];
	if (is_seq(l->in))
		return SFP_OK;
	snprintf(msg, sizeof msg, "input %s is not a sequence (T, 1, D) with D > 1",
		 shape_str(a, sizeof a, l->in));
	return layer_error(err, SFP_EINVAL, l, msg);
}

/* Infer l->out from l->in and the options; count parameters and buffers. */
static int layer_shape(layer *l, const sfp_cfg_layer *c, sfp_error *err)
{
	char a[64], msg[256];
	sfp_shape in = l->in;
	l->out = in;
	switch (l->kind) {
	case L_LINEAR:
		if (!is_seq(in) && (in.h != 1 || in.w != 1)) {
			snprintf(msg, sizeof msg, "input %s is not flat; add a flatten layer before it",
				 shape_str(a, sizeof a, in));
			return layer_error(err, SFP_EINVAL, l, msg);
		}
		if (c->out_features <= 0)
			return layer_error(err, SFP_EINVAL, l, "out_features must be positive");
		l->tok = is_seq(in) ? in.c : 1;
		l->ni = is_seq(in) ? in.w : in.c;
		l->no = c->out_features;
		if (is_seq(in) && l->no < 2)
			return layer_error(err, SFP_EINVAL, l,
					   "out_features must be at least 2 on a sequence: (T, 1, 1) "
					   "would read as a flat vector");
		l->out = is_seq(in) ? (sfp_shape){l->tok, 1, l->no} : (sfp_shape){l->no, 1, 1};
		l->bias = c->bias;
		l->nparams = (size_t)l->ni * l->no + (l->bias ? l->no : 0);
		return SFP_OK;
	case L_EMBEDDING:
		if (l->input >= 0 || in.h != 1 || in.w != 1) {
			snprintf(msg, sizeof msg,
				 "input %s: an embedding must be the first layer, reading (T) token ids",
				 shape_str(a, sizeof a, in));
			return layer_error(err, SFP_EINVAL, l, msg);
		}
		if (c->vocab <= 0 || c->dim < 2)
			return layer_error(err, SFP_EINVAL, l, "vocab must be positive and dim >= 2");
		l->vocab = c->vocab;
		l->out = (sfp_shape){in.c, 1, c->dim};
		l->nparams = (size_t)c->vocab * c->dim;
		return SFP_OK;
	case L_POSITION:
		SFP_TRY(need_seq(l, err));
		l->nparams = sfp_shape_numel(in);
		return SFP_OK;
	case L_LAYERNORM: {
		if (!(c->eps > 0.0f))
			return layer_error(err, SFP_EINVAL, l, "eps must be positive");
		int rows, feat;
		seq_rows(in, &rows, &feat);
		l->eps = c->eps;
		l->nparams = 2 * (size_t)feat;
		return SFP_OK;
	}
	case L_ATTENTION:
		SFP_TRY(need_seq(l, err));
		if (c->heads <= 0 || in.w % c->heads != 0) {
			snprintf(msg, sizeof msg, "heads (%d) must divide the %d features", c->heads,
				 in.w);
			return layer_error(err, SFP_EINVAL, l, msg);
		}
		l->attn = (sfp_attn_dims){in.c, in.w, c->heads, c->causal != 0};
		l->nparams = 4 * (size_t)in.w * in.w + 4 * (size_t)in.w;
		return SFP_OK;
	case L_CONV2D: {
		int k = c->kernel, s = c->stride > 0 ? c->stride : 1, pad = c->padding;
		if (k <= 0 || c->out_channels <= 0 || pad < 0)
			return layer_error(err, SFP_EINVAL, l,
					   "kernel and out_channels must be positive, padding >= 0");
		int ho = (in.h + 2 * pad - k) / s + 1, wo = (in.w + 2 * pad - k) / s + 1;
		if (in.h + 2 * pad < k || in.w + 2 * pad < k || ho <= 0 || wo <= 0) {
			snprintf(msg, sizeof msg, "kernel %d does not fit input %s with padding %d",
				 k, shape_str(a, sizeof a, in), pad);
			return layer_error(err, SFP_EINVAL, l, msg);
		}
		l->conv = (sfp_conv_dims){in.c, in.h, in.w, c->out_channels, ho, wo, k, s, pad};
		l->out = (sfp_shape){c->out_channels, ho, wo};
		l->bias = c->bias;
		l->nparams = (size_t)c->out_channels * in.c * k * k + (l->bias ? c->out_channels : 0);
		return SFP_OK;
	}
	case L_MAXPOOL:
	case L_AVGPOOL: {
		int k = c->kernel > 0 ? c->kernel : 2, s = c->stride > 0 ? c->stride : k;
		int pad = c->padding;
		if (pad < 0 || 2 * pad > k)
			return layer_error(err, SFP_EINVAL, l,
					   "padding must be between 0 and half the kernel");
		if (l->kind == L_MAXPOOL && k > 16) /* the argmax is kept in a byte */
			return layer_error(err, SFP_EINVAL, l, "kernel must be at most 16");
		if (in.h + 2 * pad < k || in.w + 2 * pad < k) {
			snprintf(msg, sizeof msg, "kernel %d does not fit input %s", k,
				 shape_str(a, sizeof a, in));
			return layer_error(err, SFP_EINVAL, l, msg);
		}
		int ho = (in.h + 2 * pad - k) / s + 1, wo = (in.w + 2 * pad - k) / s + 1;
		l->pool = (sfp_pool_dims){in.c, in.h, in.w, ho, wo, k, s, pad};
		l->out = (sfp_shape){in.c, ho, wo};
		return SFP_OK;
	}
	case L_RELU:
	case L_GELU:
	case L_TANH:
		return SFP_OK;
	case L_FLATTEN:
		l->out = (sfp_shape){(int)sfp_shape_numel(in), 1, 1};
		return SFP_OK;
	case L_DROPOUT:
		if (!(c->p >= 0.0f && c->p < 1.0f))
			return layer_error(err, SFP_EINVAL, l, "p must be in [0, 1)");
		l->p = c->p;
		return SFP_OK;
	case L_BATCHNORM:
		if (!(c->eps > 0.0f) || !(c->momentum >= 0.0f && c->momentum <= 1.0f))
			return layer_error(err, SFP_EINVAL, l,
					   "eps must be positive and momentum in [0, 1]");
		l->eps = c->eps;
		l->momentum = c->momentum;
		l->nparams = 2 * (size_t)in.c;
		l->nbufs = 2 * (size_t)in.c;
		return SFP_OK;
	case L_ADD:
		return SFP_OK; /* checked against `from` by the caller */
	case L_PLUGIN: {
		int i3[3] = {in.c, in.h, in.w}, o3[3] = {0, 0, 0};
		char pmsg[200] = "";
		if (l->plugin->shape(l->pstate, i3, o3, pmsg, sizeof pmsg) < 0) {
			snprintf(msg, sizeof msg, "input %s: %s", shape_str(a, sizeof a, in),
				 pmsg[0] ? pmsg : "shape refused");
			return layer_error(err, SFP_EINVAL, l, msg);
		}
		if (o3[0] <= 0 || o3[1] <= 0 || o3[2] <= 0)
			return layer_error(err, SFP_EINVAL, l, "plug-in returned an empty shape");
		l->out = (sfp_shape){o3[0], o3[1], o3[2]};
		l->nparams = l->plugin->nparams(l->pstate, i3);
		return SFP_OK;
	}
	}
	return layer_error(err, SFP_EINVAL, l, "unknown layer type");
}

/*
 * A ReLU may overwrite its producer's output (and share its gradient slice)
 * when nothing else reads that output: the producer is a layer whose
 * backward does not read its own output, and no `add` names it. This saves
 * a tensor of memory and a pass over it in both directions.
 */
static int relu_can_be_inplace(const sfp_model *m, const sfp_cfg_model *cfg, int i)
{
	if (i == 0)
		return 0;
	const layer *p = &m->layers[i - 1];
	if (p->kind == L_TANH || p->kind == L_PLUGIN || p->kind == L_FLATTEN || p->inplace)
		return 0;
	for (int j = 0; j < cfg->n_layers; j++)
		if (!strcmp(cfg->layers[j].type, "add") && !strcmp(cfg->layers[j].from, p->name))
			return 0;
	return 1;
}

void sfp_model_free(sfp_model *m)
{
	if (!m)
		return;
	for (int i = 0; i < m->n; i++) {
		layer *l = &m->layers[i];
		if (l->plugin && l->plugin->destroy)
			l->plugin->destroy(l->pstate);
		if (l->dl)
			dlclose(l->dl);
	}
	sfp_containers_free(m->containers);
	sfp_intweights_free(m->intweights);
	sfp_stash_free(m->stash);
	free(m->layers);
	free(m->params);
	free(m->grads);
	free(m->bufs);
	free(m->acts);
	free(m->dacts);
	free(m->dlogits);
	free(m->dinput);
	free(m->aux);
	free(m->seqws);
	free(m->ctx.gemm_ws);
	free(m->ctx.conv_ws);
	free(m->ctx.partial);
	free(m->idx);
	free(m);
}

static float *alloc_floats(size_t n)
{
	return calloc(n ? n : 1, sizeof(float));
}

int sfp_model_create(sfp_model **out, const sfp_cfg_model *cfg, const char *base_dir,
		     int max_batch, sfp_error *err)
{
	return sfp_model_create_ex(out, cfg, base_dir, max_batch, 0, err);
}

/* model.input as a shape: 1 to 3 positive dimensions. */
static int model_input(sfp_model *m, const sfp_cfg_model *cfg, sfp_error *err)
{
	if (cfg->input_ndim < 1 || cfg->input_ndim > 3)
		return sfp_error_set(err, SFP_EINVAL, "model.input must have 1 to 3 dimensions");
	int d[3] = {1, 1, 1};
	for (int i = 0; i < cfg->input_ndim; i++) {
		if (cfg->input[i] <= 0)
			return sfp_error_set(err, SFP_EINVAL, "model.input dimensions must be positive");
		d[i] = cfg->input[i];
	}
	m->input = (sfp_shape){d[0], d[1], d[2]};
	return SFP_OK;
}

/* An add layer's other operand: an earlier layer of the same shape. */
static int wire_add(sfp_model *m, layer *l, const sfp_cfg_layer *c, int i, sfp_error *err)
{
	if (!strcmp(c->from, SFP_CFG_FROM_INPUT))
		l->from = SFP_FROM_INPUT;
	for (int j = 0; j < i; j++)
		if (!strcmp(m->layers[j].name, c->from))
			l->from = j;
	if (l->from == -1) {
		char msg[128];
		snprintf(msg, sizeof msg, "from '%s' names no earlier layer", c->from);
		return layer_error(err, SFP_EINVAL, l, msg);
	}
	const sfp_shape f = l->from >= 0 ? m->layers[l->from].out : m->input, cur = l->in;
	if (f.c != cur.c || f.h != cur.h || f.w != cur.w) {
		char a[64], b[64], msg[256];
		snprintf(msg, sizeof msg, "input %s and '%s' output %s differ",
			 shape_str(a, sizeof a, cur), c->from, shape_str(b, sizeof b, f));
		return layer_error(err, SFP_EINVAL, l, msg);
	}
	return SFP_OK;
}

/* A linear tied to an embedding: the embedding's (vocab, dim) matrix is its
 * (out, in) weight; it keeps only its bias. */
static int wire_tie(sfp_model *m, layer *l, const sfp_cfg_layer *c, int i, sfp_error *err)
{
	char msg[200];
	const layer *e = NULL;
	for (int j = 0; j < i; j++)
		if (!strcmp(m->layers[j].name, c->tie)) {
			l->tie = j;
			e = &m->layers[j];
		}
	if (!e || e->kind != L_EMBEDDING) {
		snprintf(msg, sizeof msg, "tie '%s' names no earlier embedding layer", c->tie);
		return layer_error(err, SFP_EINVAL, l, msg);
	}
	if (e->vocab != l->no || e->out.w != l->ni) {
		snprintf(msg, sizeof msg,
			 "tie '%s': its (%d, %d) matrix is not this layer's (out %d, in %d)", c->tie,
			 e->vocab, e->out.w, l->no, l->ni);
		return layer_error(err, SFP_EINVAL, l, msg);
	}
	l->nparams = l->bias ? (size_t)l->no : 0;
	return SFP_OK;
}

/* Layer i from its config entry: kind, name, shapes, plug-in, wiring. */
static int layer_build(sfp_model *m, const sfp_cfg_layer *c, int i, sfp_shape in,
		       const char *base_dir, sfp_error *err)
{
	layer *l = &m->layers[i];
	l->kind = kind_parse(c->type);
	l->line = c->line;
	l->input = i - 1;
	l->from = -1;
	l->tie = -1;
	if (c->name[0])
		snprintf(l->name, sizeof l->name, "%s", c->name);
	else
		snprintf(l->name, sizeof l->name, "%s%d", c->type, i);
	if (l->kind < 0)
		return sfp_error_set(err, SFP_EINVAL, "layer %d (line %d): unknown type '%s'", i,
				     c->line, c->type);
	l->in = in;
	if (l->kind == L_PLUGIN)
		SFP_TRY(load_plugin(l, c, base_dir, err));
	SFP_TRY(layer_shape(l, c, err));
	if (l->kind == L_ADD)
		SFP_TRY(wire_add(m, l, c, i, err));
	if (l->kind == L_LINEAR && c->tie[0])
		SFP_TRY(wire_tie(m, l, c, i, err));
	return SFP_OK;
}

/* Running totals of the arenas while layers are placed. */
typedef struct arena_offsets {
	size_t params, bufs, acts, aux;
} arena_offsets;

/* Layer i's slices of the arenas (flatten and an in-place relu alias their
 * input's activations), max-pool indices, the kernels' workspace. */
static void layer_place(sfp_model *m, const sfp_cfg_model *cfg, int i, arena_offsets *o)
{
	layer *l = &m->layers[i];
	l->param_off = o->params;
	o->params += l->nparams;
	l->buf_off = o->bufs;
	o->bufs += l->nbufs;
	if (l->kind == L_FLATTEN && i > 0) {
		l->act_off = m->layers[i - 1].act_off; /* an alias: no data moves */
		l->slot = m->layers[i - 1].slot;
	} else if (l->kind == L_RELU && relu_can_be_inplace(m, cfg, i)) {
		l->inplace = 1;
		l->act_off = m->layers[i - 1].act_off;
		l->slot = m->layers[i - 1].slot;
	} else {
		l->act_off = o->acts;
		l->slot = i;
		o->acts += (size_t)m->max_batch * sfp_shape_numel(l->out);
	}
	if (l->kind == L_MAXPOOL) {
		l->idx_off = m->nidx;
		m->nidx += (size_t)m->max_batch * sfp_shape_numel(l->out);
	}
	if (l->kind == L_BATCHNORM) {
		l->aux_off = o->aux;
		o->aux += 2 * (size_t)l->in.c;
	}
	if (l->kind == L_LAYERNORM) {
		int rows, feat;
		seq_rows(l->in, &rows, &feat);
		l->aux_off = o->aux;
		o->aux += 2 * (size_t)m->max_batch * rows;
	}
	if (l->kind == L_ATTENTION) {
		const size_t T = (size_t)l->attn.T, D = (size_t)l->attn.D, H = (size_t)l->attn.H;
		l->aux_off = o->aux;
		o->aux += (size_t)m->max_batch * (4 * T * D + H * T * T);
		if (T * T > m->nws) /* per thread: the (T, T) probability gradient */
			m->nws = T * T;
		if ((size_t)m->max_batch * 4 * T * D > m->nseqws)
			m->nseqws = (size_t)m->max_batch * 4 * T * D;
	}
	if (l->kind == L_CONV2D) {
		size_t w = sfp_conv_ws_floats(&l->conv);
		if (w > m->nws)
			m->nws = w;
		if (l->nparams + (l->bias ? 0 : (size_t)l->conv.co) > m->npartial)
			m->npartial = l->nparams + (l->bias ? 0 : (size_t)l->conv.co);
	}
}

/* The last layer's output: class scores, unless the model is a stage. */
static int check_output(const sfp_model *m, unsigned flags, sfp_error *err)
{
	const layer *last = &m->layers[m->n - 1];
	const sfp_shape cur = last->out;
	if (last->kind == L_FLATTEN && m->n == 1)
		return sfp_error_set(err, SFP_EINVAL, "model is a single flatten layer");
	const int flat = cur.h == 1 && cur.w == 1 && cur.c >= 2;
	if (!(flags & SFP_MODEL_STAGE) && !flat && !is_seq(cur)) {
		char a[64], msg[160];
		snprintf(msg, sizeof msg,
			 "output %s is not a flat vector of class scores nor per-token scores (T, 1, V)",
			 shape_str(a, sizeof a, cur));
		return layer_error(err, SFP_EINVAL, last, msg);
	}
	return SFP_OK;
}

static int alloc_arenas(sfp_model *m, const arena_offsets *o, sfp_error *err)
{
	m->nparams = o->params;
	m->nbufs = o->bufs;
	m->nacts = o->acts;
	m->naux = o->aux;
	m->params = alloc_floats(o->params);
	m->grads = alloc_floats(o->params);
	m->bufs = alloc_floats(o->bufs);
	m->acts = alloc_floats(o->acts);
	m->dacts = alloc_floats(o->acts);
	m->aux = alloc_floats(o->aux);
	m->seqws = alloc_floats(m->nseqws);
	m->dlogits = alloc_floats((size_t)m->max_batch * m->classes);
	m->idx = calloc(m->nidx ? m->nidx : 1, 1);
	m->ctx.isa = sfp_cpu_isa();
	if (!m->params || !m->grads || !m->bufs || !m->acts || !m->dacts || !m->aux ||
	    !m->dlogits || !m->idx || !m->seqws || sfp_model_set_threads(m, 1, err) < 0)
		return sfp_error_set(err, SFP_ENOMEM, "out of memory for the model's arenas");
	return SFP_OK;
}

int sfp_model_create_ex(sfp_model **out, const sfp_cfg_model *cfg, const char *base_dir,
			int max_batch, unsigned flags, sfp_error *err)
{
	*out = NULL;
	if (max_batch <= 0)
		return sfp_error_set(err, SFP_EINVAL, "batch size must be positive");
	if (cfg->n_layers <= 0)
		return sfp_error_set(err, SFP_EINVAL, "model has no layers");
	int rc = SFP_OK;
	sfp_model *m = calloc(1, sizeof *m);
	if (!m)
		return sfp_error_set(err, SFP_ENOMEM, "out of memory");
	m->layers = calloc((size_t)cfg->n_layers, sizeof *m->layers);
	if (!m->layers) {
		rc = sfp_error_set(err, SFP_ENOMEM, "out of memory");
		goto out;
	}
	m->max_batch = max_batch;
	m->stash_packed = 1;
	if ((rc = model_input(m, cfg, err)) < 0)
		goto out;
	arena_offsets o = {0, 0, 0, 0};
	sfp_shape cur = m->input;
	for (int i = 0; i < cfg->n_layers; i++) {
		m->n = i + 1;
		if ((rc = layer_build(m, &cfg->layers[i], i, cur, base_dir, err)) < 0)
			goto out;
		layer_place(m, cfg, i, &o);
		cur = m->layers[i].out;
	}
	if ((rc = check_output(m, flags, err)) < 0)
		goto out;
	m->classes = (int)sfp_shape_numel(cur);
	if ((rc = alloc_arenas(m, &o, err)) < 0)
		goto out;
	*out = m;
	m = NULL;
out:
	sfp_model_free(m);
	return rc;
}

int sfp_model_set_threads(sfp_model *m, int threads, sfp_error *err)
{
	if (threads < 1 || threads > 256)
		return sfp_error_set(err, SFP_EINVAL, "thread count %d is not in 1..256", threads);
	const size_t T = (size_t)threads;
	float *g = alloc_floats(T * SFP_GEMM_WS_FLOATS), *c = alloc_floats(T * m->nws);
	float *p = threads > 1 ? alloc_floats(T * m->npartial) : NULL;
	if (!g || !c || (threads > 1 && !p)) {
		free(g);
		free(c);
		free(p);
		return sfp_error_set(err, SFP_ENOMEM, "out of memory for %d threads' workspaces",
				     threads);
	}
	free(m->ctx.gemm_ws);
	free(m->ctx.conv_ws);
	free(m->ctx.partial);
	m->ctx.threads = threads;
	m->ctx.gemm_ws = g;
	m->ctx.conv_ws = c;
	m->ctx.conv_ws_floats = m->nws;
	m->ctx.partial = p;
	m->ctx.partial_floats = m->npartial;
	return SFP_OK;
}

int sfp_model_n_layers(const sfp_model *m)
{
	return m->n;
}

/* Forward multiply-adds per sample: a linear's (tied too) matrix once per
 * row, a conv's weights at every output position, attention's projections
 * per token and its scores and weighted sum over (T, T) per head. */
static double layer_macs(const layer *l)
{
	switch (l->kind) {
	case L_LINEAR:
		return (double)l->tok * l->ni * l->no;
	case L_CONV2D:
		return (double)l->conv.ci * l->conv.k * l->conv.k * l->conv.co * l->conv.ho * l->conv.wo;
	case L_ATTENTION: {
		const double T = l->attn.T, D = l->attn.D;
		return 4.0 * T * D * D + 2.0 * T * T * D;
	}
	default:
		return 0.0;
	}
}

void sfp_model_layer(const sfp_model *m, int i, sfp_layer_info *info)
{
	const layer *l = &m->layers[i];
	info->name = l->name;
	info->type = kind_name(l->kind);
	info->in = l->in;
	info->out = l->out;
	info->param_offset = l->param_off;
	info->nparams = l->nparams;
	info->buf_offset = l->buf_off;
	info->nbufs = l->nbufs;
	info->input = l->input;
	info->from = l->from;
	info->tie = l->kind == L_LINEAR ? l->tie : -1;
	info->line = l->line;
	info->macs = layer_macs(l);
}

uint32_t sfp_model_signature(const sfp_model *m)
{
	uint32_t h = sfp_crc32c(0, "sfp-model", 9);
	for (int i = 0; i < m->n; i++) {
		sfp_layer_info li;
		sfp_model_layer(m, i, &li);
		int v[8] = {li.in.c, li.in.h, li.in.w, li.out.c, li.out.h, li.out.w, li.input,
			    li.from};
		uint64_t np = li.nparams;
		h = sfp_crc32c(h, li.type, strlen(li.type));
		h = sfp_crc32c(h, v, sizeof v);
		h = sfp_crc32c(h, &np, sizeof np);
		/* options that change the function but no shape (only for the
		 * layers that have them: older models keep their signature) */
		const layer *l = &m->layers[i];
		if (l->kind == L_ATTENTION)
			h = sfp_crc32c(h, &l->attn, sizeof l->attn);
		if (l->tie >= 0)
			h = sfp_crc32c(h, &l->tie, sizeof l->tie);
	}
	return h;
}

sfp_shape sfp_model_input_shape(const sfp_model *m)
{
	return m->input;
}

int sfp_model_classes(const sfp_model *m)
{
	return m->classes;
}

int sfp_model_max_batch(const sfp_model *m)
{
	return m->max_batch;
}

float *sfp_model_params(sfp_model *m, size_t *n)
{
	if (n)
		*n = m->nparams;
	return m->params;
}

float *sfp_model_grads(sfp_model *m, size_t *n)
{
	if (n)
		*n = m->nparams;
	return m->grads;
}

float *sfp_model_buffers(sfp_model *m, size_t *n)
{
	if (n)
		*n = m->nbufs;
	return m->bufs;
}

size_t sfp_model_bytes(const sfp_model *m)
{
	sfp_model_mem mem;
	sfp_model_memory(m, &mem);
	return mem.total;
}

void sfp_model_memory(const sfp_model *m, sfp_model_mem *mem)
{
	const size_t T = (size_t)m->ctx.threads, F = sizeof(float);
	memset(mem, 0, sizeof *mem);
	mem->params = 2 * m->nparams * F;
	mem->buffers = (m->nbufs + m->naux) * F;
	mem->activations = sfp_stash_float_bytes(m);
	mem->stash = sfp_stash_packed_bytes(m, -1);
	mem->act_grads = ((m->dacts ? m->nacts : 0) + (size_t)m->max_batch * m->classes) * F +
			 m->nidx +
			 (m->dinput ? (size_t)m->max_batch * sfp_shape_numel(m->input) * F : 0);
	mem->workspace = (T * (m->nws + SFP_GEMM_WS_FLOATS) + (T > 1 ? T * m->npartial : 0) +
			  m->nseqws) * F;
	mem->containers = sfp_containers_bytes(m);
	mem->total = mem->params + mem->buffers + mem->activations + mem->stash + mem->act_grads +
		     mem->workspace + mem->containers;
}

void sfp_model_init(sfp_model *m, uint64_t seed)
{
	sfp_rng rng;
	sfp_rng_seed(&rng, seed);
	memset(m->params, 0, m->nparams * sizeof(float));
	for (int i = 0; i < m->n; i++) {
		layer *l = &m->layers[i];
		float *p = m->params + l->param_off;
		size_t nw = 0, fan_in = 1;
		switch (l->kind) {
		case L_LINEAR:
			fan_in = (size_t)l->ni;
			nw = l->tie >= 0 ? 0 : fan_in * l->no; /* tied: the embedding's */
			break;
		case L_EMBEDDING:
		case L_POSITION: /* U(-b, b) of standard deviation 0.02, as GPT-2's N(0, 0.02) */
			for (size_t j = 0; j < l->nparams; j++)
				p[j] = (2.0f * sfp_rng_uniform(&rng) - 1.0f) * 0.02f * sqrtf(3.0f);
			break;
		case L_LAYERNORM:
			for (size_t j = 0; j < l->nparams / 2; j++)
				p[j] = 1.0f; /* gain */
			break;
		case L_ATTENTION: /* Wqkv and Wo, each of fan-in D */
			fan_in = (size_t)l->attn.D;
			nw = 4 * fan_in * fan_in;
			break;
		case L_CONV2D:
			fan_in = (size_t)l->conv.ci * l->conv.k * l->conv.k;
			nw = fan_in * l->conv.co;
			break;
		case L_BATCHNORM:
			for (int c = 0; c < l->in.c; c++) {
				p[c] = 1.0f;                              /* gamma */
				m->bufs[l->buf_off + l->in.c + c] = 1.0f; /* running var */
			}
			break;
		case L_PLUGIN:
			if (l->plugin->init) {
				int i3[3] = {l->in.c, l->in.h, l->in.w};
				l->plugin->init(l->pstate, p, i3, sfp_rng_u64(&rng));
			}
			break;
		default:
			break;
		}
		/* He uniform: U(-b, b), b = sqrt(6 / fan_in) */
		float bound = sqrtf(6.0f / (float)fan_in);
		for (size_t j = 0; j < nw; j++)
			p[j] = (2.0f * sfp_rng_uniform(&rng) - 1.0f) * bound;
	}
}

const float *sfp_model_activation(const sfp_model *m, int i)
{
	if (m->stash && !sfp_stash_holds_float(m, i))
		return NULL;
	return sfp_act_out((sfp_model *)m, i, 0);
}

/* Layer i's input (which = 0) or an add's second operand (1) for samples
 * [s0, s0 + b), as the layer consumes it; `saved`: in backward, from what
 * forward kept. */
static const float *layer_input(sfp_model *m, int i, int which, const float *x, int s0, int b,
				int saved)
{
	const layer *l = &m->layers[i];
	const int j = which ? l->from : l->input;
	const size_t n1 = sfp_shape_numel(!which ? l->in : j >= 0 ? m->layers[j].out : m->input);
	if (j < 0)
		return m->intweights && !which ? sfp_intweights_input(m, i, x + (size_t)s0 * n1, b) : x + (size_t)s0 * n1;
	const float *src = saved ? sfp_act_saved(m, j, s0, b) : sfp_act_out(m, j, s0);
	if (m->containers)
		return sfp_containers_input(m, j, which, src, (size_t)b * n1);
	return m->intweights && !which ? sfp_intweights_input(m, i, src, b) : src;
}

/* Attention's kept tensors for samples from s0, in the aux arena. */
typedef struct attn_bufs {
	float *qkv, *att, *prob;
} attn_bufs;

static attn_bufs attn_aux(sfp_model *m, const layer *l, int s0)
{
	const size_t T = (size_t)l->attn.T, D = (size_t)l->attn.D, H = (size_t)l->attn.H;
	const size_t Bm = (size_t)m->max_batch, s = (size_t)s0;
	float *a = m->aux + l->aux_off;
	return (attn_bufs){a + s * T * 3 * D, a + Bm * T * 3 * D + s * T * D,
			   a + Bm * 4 * T * D + s * H * T * T};
}

/* Forward of layer i for samples [s0, s0 + b). */
static void layer_forward(sfp_model *m, int i, const float *x, int s0, int b)
{
	layer *l = &m->layers[i];
	const size_t no = sfp_shape_numel(l->out);
	const float *in = layer_input(m, i, 0, x, s0, b, 0);
	float *y = sfp_act_out(m, i, s0);
	const float *w = sfp_containers_weights(m, i);
	const size_t n = (size_t)b * no;
	switch (l->kind) {
	case L_LINEAR: {
		/* tied: the embedding's matrix (its container), then our bias */
		const float *wm = l->tie >= 0 ? sfp_containers_weights(m, l->tie) : w;
		const float *bias = l->tie >= 0 ? w : w + (size_t)l->ni * l->no;
		sfp_linear_forward(&m->ctx, y, in, wm, l->bias ? bias : NULL, b * l->tok, l->ni,
				   l->no);
		break;
	}
	case L_EMBEDDING:
		m->embed_misses += sfp_embedding_forward(y, in, w, b * l->in.c, l->vocab, l->out.w);
		break;
	case L_POSITION:
		sfp_position_forward(y, in, w, b, l->in.c, l->in.w);
		break;
	case L_LAYERNORM: {
		int rows, feat;
		seq_rows(l->in, &rows, &feat);
		float *mean = m->aux + l->aux_off + (size_t)s0 * rows;
		sfp_layernorm_forward(y, mean, mean + (size_t)m->max_batch * rows, in, w, w + feat,
				      b * rows, feat, l->eps);
		break;
	}
	case L_ATTENTION: {
		attn_bufs a = attn_aux(m, l, s0);
		sfp_attention_forward(&m->ctx, y, a.qkv, a.att, a.prob, in, w, b, &l->attn);
		break;
	}
	case L_CONV2D:
		sfp_conv2d_forward(&m->ctx, y, in, w,
				   l->bias ? w + (size_t)l->conv.co * l->conv.ci * l->conv.k * l->conv.k
					   : NULL,
				   b, &l->conv);
		break;
	case L_MAXPOOL:
		sfp_maxpool_forward(y, m->idx + l->idx_off + (size_t)s0 * no, in, b, &l->pool);
		break;
	case L_AVGPOOL:
		sfp_avgpool_forward(y, in, b, &l->pool);
		break;
	case L_RELU:
		sfp_relu_forward(y, in, n); /* in == y when in place */
		break;
	case L_GELU:
		sfp_gelu_forward(y, in, n);
		break;
	case L_TANH:
		sfp_tanh_forward(y, in, n);
		break;
	case L_FLATTEN:
		if (l->input < 0) /* first layer: copy the caller's batch */
			memcpy(y, in, n * sizeof(float));
		break; /* else it aliases its input */
	case L_DROPOUT:
		if (m->training && l->p > 0.0f)
			sfp_dropout_forward(y, in, (size_t)s0 * no, n, l->p,
					    sfp_hash32((uint32_t)m->noise_seed, (uint32_t)i));
		else if (y != in)
			memcpy(y, in, n * sizeof(float));
		break;
	case L_BATCHNORM: {
		float *aux = m->aux + l->aux_off, *buf = m->bufs + l->buf_off;
		sfp_batchnorm_forward(y, aux, aux + l->in.c, buf, buf + l->in.c, in, w, w + l->in.c, b,
				      l->in.c, l->in.h * l->in.w, l->eps, l->momentum, m->training);
		break;
	}
	case L_ADD:
		sfp_add_forward(y, in, layer_input(m, i, 1, x, s0, b, 0), n);
		break;
	case L_PLUGIN: {
		int i3[3] = {l->in.c, l->in.h, l->in.w};
		l->plugin->forward(l->pstate, y, in, w, b, i3, m->training != 0);
		break;
	}
	}
	if (m->containers)
		sfp_containers_after_forward(m, i, s0, b);
	else if (m->intweights)
		sfp_intweights_after_forward(m, i, x, s0, b);
}

const float *sfp_model_forward(sfp_model *m, const float *x, int B, int training,
			       uint64_t noise_seed)
{
	m->training = training;
	m->noise_seed = noise_seed;
	m->last_batch = B;
	if (m->containers)
		sfp_containers_begin_forward(m);
	else if (m->intweights)
		sfp_intweights_begin_forward(m);
	if (m->stash)
		sfp_stash_begin_forward(m);
	for (int i = 0; i < m->n;) {
		if (!per_sample(&m->layers[i])) {
			layer_forward(m, i, x, 0, B);
			i++;
			continue;
		}
		int j = i;
		while (j < m->n && per_sample(&m->layers[j]))
			j++;
		const int ch = chunk_samples(m, i, j);
		for (int s0 = 0; s0 < B; s0 += ch)
			for (int k = i; k < j; k++)
				layer_forward(m, k, x, s0, B - s0 < ch ? B - s0 : ch);
		i = j;
	}
	return sfp_act_out(m, m->n - 1, 0);
}

float sfp_model_loss(sfp_model *m, const uint8_t *labels, int B, int *correct, int want_grad)
{
	return sfp_softmax_xent(want_grad ? m->dlogits : NULL, correct, sfp_act_out(m, m->n - 1, 0),
				labels, B, m->classes);
}

float sfp_model_loss_tokens(sfp_model *m, const int32_t *targets, int B, int *correct,
			    int want_grad)
{
	const sfp_shape o = m->layers[m->n - 1].out;
	if (!is_seq(o))
		return NAN;
	return sfp_softmax_xent_tokens(want_grad ? m->dlogits : NULL, correct,
				       sfp_act_out(m, m->n - 1, 0), targets, B * o.c, o.w);
}

uint64_t sfp_model_embedding_misses(const sfp_model *m)
{
	return m->embed_misses;
}

void sfp_model_set_output_stored(sfp_model *m, int on)
{
	m->output_stored = on;
}

float *sfp_model_output_grad(sfp_model *m)
{
	return m->dlogits;
}

void sfp_model_zero_grad(sfp_model *m)
{
	memset(m->grads, 0, m->nparams * sizeof(float));
}

void sfp_model_want_input_grad(sfp_model *m, int on)
{
	if (on && !m->dinput)
		m->dinput = alloc_floats((size_t)m->max_batch * sfp_shape_numel(m->input));
	m->want_dinput = on && m->dinput;
}

const float *sfp_model_input_grad(const sfp_model *m)
{
	return m->want_dinput ? m->dinput : NULL;
}

/* grad_out[i]: layer i, or something it reads from, has parameters (or the
 * caller wants the input gradient). */
static void mark_grad_out(sfp_model *m)
{
	for (int i = 0; i < m->n; i++) {
		layer *l = &m->layers[i];
		int g = l->nparams > 0;
		g |= l->input < 0 ? m->want_dinput : m->layers[l->input].grad_out;
		if (l->from >= 0)
			g |= m->layers[l->from].grad_out;
		else if (l->from == SFP_FROM_INPUT)
			g |= m->want_dinput;
		l->grad_out = g;
	}
}

/* Backward of layer i for samples [s0, s0 + b). */
static void layer_backward(sfp_model *m, int i, const float *x, int s0, int b)
{
	layer *l = &m->layers[i];
	const size_t ni = sfp_shape_numel(l->in), no = sfp_shape_numel(l->out);
	if (m->containers)
		sfp_containers_before_backward(m, i, s0, b);
	/* no input gradient where nothing upstream learns (e.g. a first
	 * linear layer after a flatten of the data) */
	float *din = l->input < 0 ? (m->want_dinput ? m->dinput : NULL)
		     : m->layers[l->input].grad_out ? sfp_dact(m, l->input, s0) : NULL;
	if (din && l->input < 0)
		din += (size_t)s0 * ni;
	if (m->intweights)
		din = sfp_intweights_before_backward(m, i, din, s0, b);
	/* what this layer reads of forward's tensors, fetched (decoded from a
	 * packed stash) only when used: element-wise layers need nothing
	 * without an input gradient to form */
	const int elementwise = l->kind == L_RELU || l->kind == L_GELU || l->kind == L_TANH;
	const int need = !elementwise || din || l->inplace;
	const float *in = need && bwd_reads_input(l) ? layer_input(m, i, 0, x, s0, b, 1) : NULL;
	const float *y = need && bwd_reads_output(l) ? sfp_act_saved(m, i, s0, b) : NULL;
	float *g = sfp_dact(m, i, s0);
	const float *w = sfp_containers_weights(m, i);
	float *dw = m->grads + l->param_off;
	const size_t n = (size_t)b * no;
	switch (l->kind) {
	case L_LINEAR: {
		/* tied: the weight gradient goes to the embedding's */
		const float *wm = l->tie >= 0 ? sfp_containers_weights(m, l->tie) : w;
		float *dwm = l->tie >= 0 ? m->grads + m->layers[l->tie].param_off : dw;
		float *db = l->tie >= 0 ? dw : dw + (size_t)l->ni * l->no;
		sfp_linear_backward(&m->ctx, din, dwm, l->bias ? db : NULL, g, in, wm, b * l->tok,
				    l->ni, l->no);
		break;
	}
	case L_EMBEDDING: /* token ids have no gradient: din stays as it is */
		sfp_embedding_backward(dw, g, in, b * l->in.c, l->vocab, l->out.w);
		break;
	case L_POSITION:
		sfp_position_backward(din, dw, g, b, l->in.c, l->in.w);
		break;
	case L_LAYERNORM: {
		int rows, feat;
		seq_rows(l->in, &rows, &feat);
		const float *mean = m->aux + l->aux_off + (size_t)s0 * rows;
		sfp_layernorm_backward(din, dw, dw + feat, g, in, mean,
				       mean + (size_t)m->max_batch * rows, w, b * rows, feat);
		break;
	}
	case L_ATTENTION: {
		const attn_bufs a = attn_aux(m, l, s0);
		const size_t n3 = (size_t)b * l->attn.T * 3 * l->attn.D;
		sfp_attention_backward(&m->ctx, din, dw, m->seqws, m->seqws + n3, g, in, a.qkv,
				       a.att, a.prob, w, b, &l->attn);
		break;
	}
	case L_CONV2D:
		sfp_conv2d_backward(&m->ctx, din, dw,
				    l->bias ? dw + (size_t)l->conv.co * l->conv.ci * l->conv.k * l->conv.k
					    : NULL,
				    g, in, w, b, &l->conv);
		break;
	case L_MAXPOOL:
		sfp_maxpool_backward(din, g, m->idx + l->idx_off + (size_t)s0 * no, b, &l->pool);
		break;
	case L_AVGPOOL:
		sfp_avgpool_backward(din, g, b, &l->pool);
		break;
	case L_RELU:
		if (l->inplace) /* g is also the producer's slice, holding only dy */
			sfp_relu_mask_inplace(g, y, n);
		else
			sfp_relu_backward(din, g, in, n);
		break;
	case L_GELU:
		sfp_gelu_backward(din, g, in, n);
		break;
	case L_TANH:
		sfp_tanh_backward(din, g, y, n);
		break;
	case L_FLATTEN:
		if (l->input < 0 && din) /* else its gradient slice is its input's */
			for (size_t j = 0; j < n; j++)
				din[j] += g[j];
		break;
	case L_DROPOUT:
		if (m->training && l->p > 0.0f)
			sfp_dropout_backward(din, g, (size_t)s0 * no, n, l->p,
					     sfp_hash32((uint32_t)m->noise_seed, (uint32_t)i));
		else if (din)
			for (size_t j = 0; j < n; j++)
				din[j] += g[j];
		break;
	case L_BATCHNORM: {
		const float *aux = m->aux + l->aux_off;
		sfp_batchnorm_backward(din, dw, dw + l->in.c, g, in, aux, aux + l->in.c, w, b, l->in.c,
				       l->in.h * l->in.w);
		break;
	}
	case L_ADD: {
		/* `from: input`: the model input's gradient, when it is wanted */
		float *df = l->from >= 0	? sfp_dact(m, l->from, s0)
			    : m->want_dinput ? m->dinput + (size_t)s0 * sfp_shape_numel(m->input)
					     : NULL;
		if (din)
			for (size_t j = 0; j < n; j++)
				din[j] += g[j];
		if (df)
			for (size_t j = 0; j < n; j++)
				df[j] += g[j];
		break;
	}
	case L_PLUGIN: {
		int i3[3] = {l->in.c, l->in.h, l->in.w};
		l->plugin->backward(l->pstate, din, dw, g, in, y, w, b, i3);
		break;
	}
	}
	if (m->intweights)
		sfp_intweights_after_backward(m, i, x, din, s0, b);
}

void sfp_model_on_grads_ready(sfp_model *m, sfp_grads_ready_fn fn, void *user)
{
	m->grads_ready = fn;
	m->grads_ready_user = user;
}

void sfp_model_backward(sfp_model *m, const float *x, int B)
{
	mark_grad_out(m);
	sfp_stash_begin_backward(m, B);
	if (m->want_dinput)
		memset(m->dinput, 0, (size_t)B * sfp_shape_numel(m->input) * sizeof(float));

	for (int j = m->n; j > 0;) {
		if (!per_sample(&m->layers[j - 1])) {
			if (m->stash)
				sfp_stash_unit_begin(m, j - 1, B);
			layer_backward(m, j - 1, x, 0, B);
			j--;
			if (m->grads_ready)
				m->grads_ready(m->grads_ready_user, j);
			continue;
		}
		int i = j - 1;
		while (i > 0 && per_sample(&m->layers[i - 1]))
			i--;
		const int ch = chunk_samples(m, i, j);
		if (m->stash)
			sfp_stash_unit_begin(m, i, B);
		for (int s0 = 0; s0 < B; s0 += ch) {
			const int b = B - s0 < ch ? B - s0 : ch;
			if (m->stash)
				sfp_stash_chunk_begin(m, i, b);
			for (int k = j - 1; k >= i; k--)
				layer_backward(m, k, x, s0, b);
		}
		j = i;
		if (m->grads_ready)
			m->grads_ready(m->grads_ready_user, j);
	}
}
