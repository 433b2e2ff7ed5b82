/*
 * stash.c -- where layer outputs live between a layer's forward and the
 * backward passes that read them.
 *
 * Float32 (no activation containers, or a float stash): every layer owns a
 * slice of the activation arena `acts` for the whole step, as model.c lays
 * it out.
 *
 * Packed stash (activations in containers, the default then): what backward
 * reads of a layer's output is kept only as containers (lib/codec at the
 * packing widths, Gecko exponents if asked), encoded right after the
 * layer's forward on a chunk of samples (or the batch) from the values it
 * produced: one window for the chunk, one container per block of
 * SFP_QBLOCK values, blocks spread over the threads. Each decodes to
 * exactly the fake-quantized values the float stash would hold
 * (sfp_decode(sfp_encode(x)) == sfp_quantize(x)). Float32 outputs, the
 * stash decoded for backward and the outputs' gradients are then scratch,
 * placed in one pool by a liveness plan made once for the largest batch:
 *  - forward: a layer's output buffer lives from its producer to its last
 *    consumer; inside a run of per-sample layers (model_internal.h) whose
 *    consumers all sit in the same run it holds one chunk, reused chunk
 *    after chunk; else the whole batch;
 *  - backward: a stored output is decoded into scratch just before its
 *    first reader and lives until its last one; one chunk at a time when
 *    every reader runs in the chunks the stash was written in, else whole;
 *    an output's gradient lives from its first writer to its last reader,
 *    one chunk when only its run touches it, zeroed when its life starts;
 *  - outputs read in backward that have no container (the logits, a
 *    flatten of the input) are kept whole for the step.
 * Buffers whose lifetimes (in units of forward/backward layer runs) do not
 * overlap share memory: first fit, largest first.
 */
#include <assert.h>
#include <stdlib.h>
#include <string.h>

#include "nn/model_internal.h"
#include "sfp/codec.h"

/* One container: values [v0, v0 + n) of the chunk of samples [s0, s0 + b). */
typedef struct seg {
	size_t off, bytes; /* in the stash's byte arena */
	int s0, b;
	size_t v0, n;
	int raw; /* float32 copy of the whole chunk (the codec refused a value) */
} seg;

typedef struct slot {
	int stash;      /* layer whose forward writes the kept container, or -1 */
	int whole;      /* kept as float32 for the whole step (not in the stash) */
	int fwd_chunk;  /* forward buffer holds one chunk (else the batch) */
	int bwd_chunk;  /* backward buffer holds one chunk */
	int bwd;        /* backward reads it */
	int dact_chunk; /* its gradient buffer holds one chunk */
	int fwd_t0, fwd_t1, bwd_t0, bwd_t1, dact_t0, dact_t1; /* lifetimes in plan units */
	size_t fwd_off, bwd_off, dact_off; /* floats into the pool */
	size_t fwd_n, bwd_n, dact_n;       /* floats */
	int nseg, maxseg;
	seg *segs;
	int cur; /* backward: first segment decoded in a chunk buffer, -2 all (whole
		  * buffer), -1 none yet */
} slot;

typedef struct sfp_stash {
	int n; /* layers */
	int gecko;
	slot *s; /* by layer index; used where layers[i].slot == i */
	float *pool;
	size_t pool_floats;
	uint8_t *bytes; /* packed segments of the last training forward */
	size_t used, cap;
	sfp_codec **codec; /* one per thread (encode and decode keep scratch) */
	int ncodec;
	uint8_t *spill;    /* threads' encoded blocks before they are appended */
	size_t spill_cap;  /* bytes per thread */
	int spill_threads;
	size_t *blk, *blk_bytes; /* per block of a chunk: offset in its spill area, bytes */
	size_t nblk;
	int nunits;
	int *unit; /* layer -> plan unit (a run of per-sample layers, or one layer) */
} sfp_stash;

void sfp_stash_free(sfp_stash *st)
{
	if (!st)
		return;
	if (st->s)
		for (int i = 0; i < st->n; i++)
			free(st->s[i].segs);
	free(st->s);
	free(st->pool);
	free(st->bytes);
	free(st->unit);
	for (int t = 0; t < st->ncodec; t++)
		sfp_codec_free(st->codec[t]);
	free(st->codec);
	free(st->spill);
	free(st->blk);
	free(st->blk_bytes);
	free(st);
}

static size_t slot_numel(const sfp_model *m, int s)
{
	return sfp_shape_numel(m->layers[s].out);
}

/* Samples per forward segment of layer i: its run's chunk, or the batch. */
static int seg_samples(const sfp_model *m, const sfp_stash *st, int i)
{
	if (!per_sample(&m->layers[i]))
		return m->max_batch;
	int a = i, b = i + 1;
	while (a > 0 && st->unit[a - 1] == st->unit[i])
		a--;
	while (b < m->n && st->unit[b] == st->unit[i])
		b++;
	return chunk_samples(m, a, b);
}

float *sfp_dact(sfp_model *m, int i, int s0)
{
	const int s = m->layers[i].slot;
	const size_t no = slot_numel(m, s);
	if (!m->stash)
		return m->dacts + m->layers[s].act_off + (size_t)s0 * no;
	const slot *sl = &m->stash->s[s];
	return m->stash->pool + sl->dact_off + (sl->dact_chunk ? 0 : (size_t)s0 * no);
}

float *sfp_act_out(sfp_model *m, int i, int s0)
{
	const int s = m->layers[i].slot;
	const size_t no = slot_numel(m, s);
	if (!m->stash)
		return m->acts + m->layers[s].act_off + (size_t)s0 * no;
	const slot *sl = &m->stash->s[s];
	return m->stash->pool + sl->fwd_off + (sl->fwd_chunk ? 0 : (size_t)s0 * no);
}

int sfp_stash_holds_float(const sfp_model *m, int i)
{
	return !m->stash || m->stash->s[m->layers[i].slot].whole;
}

int sfp_stash_wants(const sfp_model *m, int i)
{
	if (!m->stash || !m->training)
		return 0;
	const slot *sl = &m->stash->s[m->layers[i].slot];
	return sl->stash == i;
}

int sfp_bytes_reserve(uint8_t **buf, size_t *cap, size_t used, size_t need)
{
	if (*cap - used >= need)
		return SFP_OK;
	const size_t c = used + need + *cap / 8;
	uint8_t *p = realloc(*buf, c);
	if (!p)
		return SFP_ENOMEM;
	*buf = p;
	*cap = c;
	return SFP_OK;
}

/* Room for `need` more bytes in the byte arena. */
static int reserve(sfp_stash *st, size_t need)
{
	return sfp_bytes_reserve(&st->bytes, &st->cap, st->used, need);
}

/* Threads for n values in SFP_QBLOCK blocks, with a codec each (fewer
 * when the blocks are fewer, or memory cannot be had); for encoding at
 * `bits` a value (0: decoding), each thread's spill area and the block
 * table too. */
static int team(sfp_model *m, size_t n, unsigned bits)
{
	sfp_stash *st = m->stash;
	const size_t nb = (n + SFP_QBLOCK - 1) / SFP_QBLOCK;
	int T = nb < (size_t)m->ctx.threads ? (int)(nb ? nb : 1) : m->ctx.threads;
	if (T <= 1)
		return 1;
	if (T > st->ncodec) {
		sfp_codec **c = realloc(st->codec, (size_t)T * sizeof *c);
		if (c) {
			st->codec = c;
			while (st->ncodec < T && (c[st->ncodec] = sfp_codec_create()))
				st->ncodec++;
		}
		if (T > st->ncodec)
			T = st->ncodec;
	}
	if (!bits || T <= 1)
		return T;
	/* a thread's run of blocks at `bits` a value, headers included (a
	 * block with exceptions may not fit: it is redone serially) */
	const size_t per = (nb + (size_t)T - 1) / (size_t)T;
	const size_t cap = per * (SFP_HEADER_BYTES(1) + 80 + (SFP_QBLOCK * (size_t)bits + 7) / 8);
	if (st->spill_cap < cap || st->spill_threads < T) {
		const size_t c = cap > st->spill_cap ? cap : st->spill_cap;
		const int t = T > st->spill_threads ? T : st->spill_threads;
		free(st->spill);
		st->spill = malloc((size_t)t * c);
		st->spill_cap = st->spill ? c : 0;
		st->spill_threads = st->spill ? t : 0;
	}
	if (st->nblk < nb) {
		size_t *a = realloc(st->blk, nb * sizeof *a), *w = a ? realloc(st->blk_bytes, nb * sizeof *w) : NULL;
		if (a)
			st->blk = a;
		if (w) {
			st->blk_bytes = w;
			st->nblk = nb;
		}
	}
	return st->spill_threads >= T && st->nblk >= nb ? T : 1;
}

/* Encode block k of y (values [v0, v0 + len)) into dst[0..cap). */
static int encode_block(sfp_stash *st, int t, uint8_t *dst, size_t cap, size_t *w, const float *y,
			size_t len, const sfp_params *p)
{
	uint64_t shape = len;
	return sfp_encode(st->codec[t], dst, cap, w, y, len, &shape, 1, p, NULL);
}

/* Append a segment record. */
static seg *add_seg(slot *sl, int s0, int b, size_t v0, size_t n, size_t off, size_t bytes)
{
	assert(sl->nseg < sl->maxseg);
	seg *g = &sl->segs[sl->nseg++];
	*g = (seg){off, bytes, s0, b, v0, n, 0};
	return g;
}

/*
 * Keep layer i's output rows [s0, s0 + b) packed and quantize them in
 * place: one window for the chunk (the float stash quantizes each chunk
 * with its own window), then per block of SFP_QBLOCK values, over the
 * threads, encode the layer's values with that FIXED window and quantize
 * them. The containers decode to exactly the quantized rows.
 */
/* Values [v0, v0 + len) of y into the arena at p (its free room first,
 * then room for the bound), quantized in place, as one more segment. */
static int put_block(sfp_stash *st, slot *sl, int s0, int b, float *y, size_t v0, size_t len,
		     const sfp_params *p)
{
	size_t w = 0;
	int rc = SFP_ENOSPC;
	if (st->cap - st->used > SFP_HEADER_BYTES(1))
		rc = encode_block(st, 0, st->bytes + st->used, st->cap - st->used, &w, y + v0, len, p);
	if (rc == SFP_ENOSPC && reserve(st, sfp_encode_bound(len, 1)) == SFP_OK)
		rc = encode_block(st, 0, st->bytes + st->used, st->cap - st->used, &w, y + v0, len, p);
	if (rc == SFP_OK)
		rc = sfp_quantize(st->codec[0], y + v0, y + v0, len, p, NULL);
	if (rc == SFP_OK) {
		add_seg(sl, s0, b, v0, len, st->used, w);
		st->used += w;
	}
	return rc;
}

/* The threads' path of sfp_stash_put: over T threads, the window (a max
 * per block, the largest top), then each thread encodes its run of blocks
 * into its own spill area and quantizes them; the blocks are appended in
 * order afterwards. A block that does not fit its area (exceptions) is
 * redone here by one thread. */
static int put_threads(sfp_model *m, slot *sl, int s0, int b, float *y, size_t n, sfp_params p,
		       int T)
{
	sfp_stash *st = m->stash;
	const size_t nb = (n + SFP_QBLOCK - 1) / SFP_QBLOCK;
	int rc;
	const size_t per = (nb + (size_t)T - 1) / (size_t)T;
	unsigned top = p.e == 8 ? 254 : 1;
	int bad = 0, wbad = 0;
#pragma omp parallel num_threads(T) reduction(| : bad)
	{
		if (p.e < 8) {
			/* the window: a max per block (the for ends in a barrier) */
#pragma omp for schedule(static) reduction(max : top)
			for (int64_t k = 0; k < (int64_t)nb; k++) {
				const size_t v0 = (size_t)k * SFP_QBLOCK;
				unsigned tk = 0;
				if (sfp_quantize_window(st->codec[sfp_thread_id()], y + v0,
							n - v0 < SFP_QBLOCK ? n - v0 : SFP_QBLOCK, &p,
							&tk, NULL) < 0) {
#pragma omp atomic write
					wbad = 1;
				} else if (tk > top) {
					top = tk;
				}
			}
		}
		bad = wbad; /* nothing is touched when the window fails */
		const int t = sfp_thread_id();
		sfp_params pt = p;
		pt.window = SFP_WINDOW_FIXED;
		pt.exp_hi = top;
		uint8_t *area = st->spill + (size_t)t * st->spill_cap;
		size_t pos = 0;
		for (size_t k = (size_t)t * per; k < nb && k < (size_t)(t + 1) * per && !bad; k++) {
			const size_t v0 = k * SFP_QBLOCK, len = n - v0 < SFP_QBLOCK ? n - v0 : SFP_QBLOCK;
			size_t w = 0;
			int r = encode_block(st, t, area + pos, st->spill_cap - pos, &w, y + v0, len, &pt);
			st->blk[k] = r == SFP_OK ? pos : SIZE_MAX;
			st->blk_bytes[k] = w;
			if (r == SFP_OK) {
				pos += w;
				r = sfp_quantize(st->codec[t], y + v0, y + v0, len, &pt, NULL);
			} else if (r == SFP_ENOSPC) {
				r = SFP_OK; /* redone below */
			}
			bad |= r < 0;
		}
	}
	rc = bad ? SFP_ERANGE : SFP_OK;
	p.window = SFP_WINDOW_FIXED;
	p.exp_hi = top;
	for (size_t k = 0; k < nb && rc == SFP_OK; k++) {
		const size_t v0 = k * SFP_QBLOCK, len = n - v0 < SFP_QBLOCK ? n - v0 : SFP_QBLOCK;
		const size_t t = k / per;
		const size_t w = st->blk_bytes[k];
		if (st->blk[k] != SIZE_MAX && reserve(st, w) == SFP_OK) {
			memcpy(st->bytes + st->used, st->spill + t * st->spill_cap + st->blk[k], w);
			add_seg(sl, s0, b, v0, len, st->used, w);
			st->used += w;
		} else {
			rc = put_block(st, sl, s0, b, y, v0, len, &p);
		}
	}
	return rc;
}

/* One thread: straight into the arena (the room there is first, then the
 * bound), at the chunk's window. */
static int put_serial(sfp_model *m, slot *sl, int s0, int b, float *y, size_t n, sfp_params p)
{
	sfp_stash *st = m->stash;
	const size_t nb = (n + SFP_QBLOCK - 1) / SFP_QBLOCK;
	int rc = sfp_quantize_window(st->codec[0], y, n, &p, &p.exp_hi, NULL);
	p.window = SFP_WINDOW_FIXED;
	for (size_t k = 0; k < nb && rc == SFP_OK; k++) {
		const size_t v0 = k * SFP_QBLOCK, len = n - v0 < SFP_QBLOCK ? n - v0 : SFP_QBLOCK;
		rc = put_block(st, sl, s0, b, y, v0, len, &p);
	}
	return rc;
}

/* A value the container cannot hold (one that rounds to infinity: a
 * diverging run, which the loss check stops): drop this chunk's
 * containers, quantize as the float stash does (which reports the error)
 * and keep the rows as they are then. */
static int put_raw(sfp_model *m, slot *sl, int s0, int b, float *y, size_t n, unsigned e,
		   unsigned mbits)
{
	sfp_stash *st = m->stash;
	while (sl->nseg > 0 && sl->segs[sl->nseg - 1].s0 == s0)
		st->used = sl->segs[--sl->nseg].off;
	int rc = sfp_quant_apply(st->codec[0], y, y, n, e, mbits, NULL);
	seg *g = add_seg(sl, s0, b, 0, n, st->used, 0);
	g->raw = 1;
	if (reserve(st, n * sizeof(float)) == SFP_OK) {
		memcpy(st->bytes + st->used, y, n * sizeof(float));
		g->bytes = n * sizeof(float);
		st->used += g->bytes;
	} else {
		g->raw = 2; /* lost: backward reads zeros (the run is diverging anyway) */
	}
	return rc < 0 ? rc : SFP_ERANGE;
}

int sfp_stash_put(sfp_model *m, int i, int s0, int b, unsigned e, unsigned mbits)
{
	sfp_stash *st = m->stash;
	slot *sl = &st->s[m->layers[i].slot];
	const size_t n = (size_t)b * slot_numel(m, m->layers[i].slot);
	float *y = sfp_act_out(m, i, s0);
	sfp_params p;
	sfp_params_init(&p, e, mbits);
	p.gecko = st->gecko;
	sfp_model_refine_params(m, &p);
	const int T = team(m, n, e + mbits + 1);
	const int rc = T > 1 ? put_threads(m, sl, s0, b, y, n, p, T) : put_serial(m, sl, s0, b, y, n, p);
	return rc == SFP_OK ? SFP_OK : put_raw(m, sl, s0, b, y, n, e, mbits);
}

/* Decode segments [k0, k1) into dst: at their rows (s0 * no) when
 * `whole`, else into one chunk's buffer. */
static void decode_segs(sfp_model *m, const slot *sl, int k0, int k1, float *dst, size_t no,
			int whole)
{
	sfp_stash *st = m->stash;
	size_t total = 0;
	for (int k = k0; k < k1; k++)
		total += sl->segs[k].n;
	const int T = team(m, total, 0);
	int bad = 0;
#pragma omp parallel for num_threads(T) schedule(static) reduction(| : bad) if (T > 1)
	for (int k = k0; k < k1; k++) {
		const seg *g = &sl->segs[k];
		const int t = T > 1 ? sfp_thread_id() : 0;
		float *d = dst + (whole ? (size_t)g->s0 * no : 0) + g->v0;
		if (g->raw == 1)
			memcpy(d, st->bytes + g->off, g->n * sizeof(float));
		else if (g->raw == 2)
			memset(d, 0, g->n * sizeof(float));
		else
			bad |= sfp_decode(st->codec[t], d, g->n, st->bytes + g->off, g->bytes, NULL,
					  NULL) < 0;
	}
	assert(!bad); /* our own containers: anything else is a bug */
	(void)bad;
}

const float *sfp_act_saved(sfp_model *m, int i, int s0, int b)
{
	const int s = m->layers[i].slot;
	const size_t no = slot_numel(m, s);
	if (!m->stash)
		return m->acts + m->layers[s].act_off + (size_t)s0 * no;
	sfp_stash *st = m->stash;
	slot *sl = &st->s[s];
	if (sl->whole)
		return st->pool + sl->fwd_off + (size_t)s0 * no;
	assert(sl->bwd && sl->stash >= 0);
	float *buf = st->pool + sl->bwd_off;
	if (sl->bwd_chunk) {
		int k = 0;
		while (k < sl->nseg && sl->segs[k].s0 != s0)
			k++;
		assert(k < sl->nseg && sl->segs[k].b == b);
		if (sl->cur != k) {
			int k1 = k;
			while (k1 < sl->nseg && sl->segs[k1].s0 == s0)
				k1++;
			decode_segs(m, sl, k, k1, buf, no, 0);
			sl->cur = k;
		}
		return buf;
	}
	if (sl->cur != -2) {
		decode_segs(m, sl, 0, sl->nseg, buf, no, 1);
		sl->cur = -2;
	}
	(void)b;
	return buf + (size_t)s0 * no;
}

void sfp_stash_begin_forward(sfp_model *m)
{
	sfp_stash *st = m->stash;
	if (!m->training)
		return; /* evaluation keeps nothing: the last training stash stays */
	st->used = 0;
	for (int i = 0; i < m->n; i++)
		st->s[i].nseg = 0;
}

void sfp_stash_begin_backward(sfp_model *m, int B)
{
	if (!m->stash) {
		/* the float arena: zero every gradient this batch uses */
		for (int i = 0; i < m->n; i++)
			if (m->layers[i].slot == i)
				memset(sfp_dact(m, i, 0), 0,
				       (size_t)B * slot_numel(m, i) * sizeof(float));
	} else {
		for (int i = 0; i < m->n; i++)
			m->stash->s[i].cur = -1;
	}
	/* seed the logits' gradient (kept whole, alive from here) */
	memcpy(sfp_dact(m, m->n - 1, 0), m->dlogits, (size_t)B * m->classes * sizeof(float));
}

/* Zero the whole-batch gradients whose lifetime starts with the unit of
 * layer i (their first writer is in it). */
void sfp_stash_unit_begin(sfp_model *m, int i, int B)
{
	sfp_stash *st = m->stash;
	const int t = 2 * st->nunits - 1 - st->unit[i], logits = m->layers[m->n - 1].slot;
	for (int s = 0; s < m->n; s++) {
		const slot *sl = &st->s[s];
		if (m->layers[s].slot == s && !sl->dact_chunk && sl->dact_t0 == t && s != logits)
			memset(st->pool + sl->dact_off, 0, (size_t)B * slot_numel(m, s) * sizeof(float));
	}
}

/* Zero the chunk gradients of the run starting at layer i. */
void sfp_stash_chunk_begin(sfp_model *m, int i, int b)
{
	sfp_stash *st = m->stash;
	for (int s = i; s < m->n && st->unit[s] == st->unit[i]; s++) {
		const slot *sl = &st->s[s];
		if (m->layers[s].slot == s && sl->dact_chunk)
			memset(st->pool + sl->dact_off, 0, (size_t)b * slot_numel(m, s) * sizeof(float));
	}
}

size_t sfp_stash_float_bytes(const sfp_model *m)
{
	return (m->stash ? m->stash->pool_floats : m->nacts) * sizeof(float);
}

size_t sfp_stash_packed_bytes(const sfp_model *m, int i)
{
	const sfp_stash *st = m->stash;
	if (!st)
		return 0;
	if (i < 0)
		return st->cap + (size_t)st->spill_threads * st->spill_cap +
		       2 * st->nblk * sizeof(size_t);
	const slot *sl = &st->s[m->layers[i].slot];
	if (sl->stash != i)
		return 0;
	size_t b = 0;
	for (int k = 0; k < sl->nseg; k++)
		b += sl->segs[k].bytes;
	return b;
}

int sfp_stash_decode(sfp_model *m, int i, float *dst, size_t cap, int *B)
{
	const int s = m->layers[i].slot;
	const size_t no = slot_numel(m, s);
	if (!m->stash)
		return SFP_ENOENT;
	const slot *sl = &m->stash->s[s];
	if (sl->stash < 0 || !sl->nseg)
		return SFP_ENOENT;
	const seg *last = &sl->segs[sl->nseg - 1];
	*B = last->s0 + last->b;
	if (cap < (size_t)*B * no)
		return SFP_ENOSPC;
	decode_segs(m, sl, 0, sl->nseg, dst, no, 1);
	return SFP_OK;
}

int sfp_stash_measure(sfp_model *m, int i, int gecko, size_t *bytes, int *B, sfp_error *err)
{
	sfp_stash *st = m->stash;
	const slot *sl = &st->s[m->layers[i].slot];
	*bytes = 0;
	*B = 0;
	if (sl->stash != i || !sl->nseg)
		return SFP_OK;
	*B = sl->segs[sl->nseg - 1].s0 + sl->segs[sl->nseg - 1].b;
	if (gecko == st->gecko) {
		*bytes = sfp_stash_packed_bytes(m, i);
		return SFP_OK;
	}
	size_t most = 1;
	for (int k = 0; k < sl->nseg; k++)
		most = sl->segs[k].n > most ? sl->segs[k].n : most;
	float *x = malloc(most * sizeof(float));
	uint8_t *enc = malloc(sfp_encode_bound(most, 1));
	int rc = x && enc ? SFP_OK : sfp_error_set(err, SFP_ENOMEM, "out of memory for packing");
	for (int k = 0; k < sl->nseg && rc == SFP_OK; k++) {
		const seg *g = &sl->segs[k];
		sfp_info in;
		if (g->raw) {
			*bytes += g->bytes;
			continue;
		}
		rc = sfp_decode(st->codec[0], x, g->n, st->bytes + g->off, g->bytes, &in, err);
		if (rc < 0)
			break;
		sfp_params p;
		sfp_params_init(&p, in.e, in.m);
		p.gecko = gecko;
		p.window = SFP_WINDOW_FIXED;
		p.exp_hi = in.exp_hi;
		size_t w = 0;
		uint64_t shape = g->n;
		rc = sfp_encode(st->codec[0], enc, sfp_encode_bound(most, 1), &w, x, g->n, &shape, 1,
				&p, err);
		/* refined values stay in their bins, so they re-encode to the same
		 * container values; the refinement's side bytes come on top */
		*bytes += w + in.side_bytes;
	}
	free(x);
	free(enc);
	return rc;
}

int sfp_model_set_refine(sfp_model *m, int bias, int shift, sfp_error *err)
{
	if (bias != SFP_BIAS_OFF && bias != SFP_BIAS_TENSOR)
		return sfp_error_set(err, SFP_EINVAL, "refinement bias must be off or tensor");
	if (shift != 0 && shift != 1)
		return sfp_error_set(err, SFP_EINVAL, "refinement shift must be 0 or 1");
	m->refine_bias = bias;
	m->refine_shift = shift;
	return SFP_OK;
}

int sfp_model_set_stash(sfp_model *m, int packed, int gecko, sfp_error *err)
{
	m->stash_packed = packed != 0;
	m->stash_gecko = gecko != 0;
	return sfp_stash_setup(m, m->stash_packed, m->stash_gecko, err);
}

int sfp_model_saved_activation(sfp_model *m, int i, float *dst, size_t cap, int *B,
			       sfp_error *err)
{
	if (i < 0 || i >= m->n)
		return sfp_error_set(err, SFP_EINVAL, "no layer %d", i);
	const size_t no = sfp_shape_numel(m->layers[i].out);
	if (m->stash && !m->stash->s[m->layers[i].slot].whole) {
		int rc = sfp_stash_decode(m, i, dst, cap, B);
		if (rc == SFP_ENOENT)
			return sfp_error_set(err, rc, "layer '%s': its output is not kept for backward",
					     m->layers[i].name);
		if (rc == SFP_ENOSPC)
			return sfp_error_set(err, rc, "room for %zu values, layer '%s' kept %zu", cap,
					     m->layers[i].name, (size_t)*B * no);
		return rc;
	}
	*B = m->last_batch;
	if (cap < (size_t)*B * no)
		return sfp_error_set(err, SFP_ENOSPC, "room for %zu values, layer '%s' kept %zu", cap,
				     m->layers[i].name, (size_t)*B * no);
	memcpy(dst, sfp_act_out(m, i, 0), (size_t)*B * no * sizeof(float));
	return SFP_OK;
}

/* ---- the plan ------------------------------------------------------------- */
static void touch(int *t0, int *t1, int t)
{
	if (t < *t0)
		*t0 = t;
	if (t > *t1)
		*t1 = t;
}

typedef struct item {
	size_t n;
	int t0, t1;
	size_t *off;
} item;

/* First fit, largest first: each buffer goes at the lowest offset where it
 * overlaps no placed buffer that is alive at the same time. Returns the
 * pool size. Offsets are rounded to 64 bytes. */
static size_t place(item *it, int k)
{
	for (int a = 1; a < k; a++) /* insertion sort, largest first */
		for (int b = a; b > 0 && it[b].n > it[b - 1].n; b--) {
			item t = it[b];
			it[b] = it[b - 1];
			it[b - 1] = t;
		}
	size_t top = 0;
	for (int a = 0; a < k; a++) {
		size_t off = 0;
		for (int again = 1; again;) {
			again = 0;
			for (int b = 0; b < a; b++) {
				if (it[b].t1 < it[a].t0 || it[a].t1 < it[b].t0)
					continue;
				if (off < *it[b].off + it[b].n && *it[b].off < off + it[a].n) {
					off = (*it[b].off + it[b].n + 15) & ~(size_t)15;
					again = 1;
				}
			}
		}
		*it[a].off = off;
		if (off + it[a].n > top)
			top = off + it[a].n;
	}
	return top;
}

/* Without a packed stash: the float32 activation and gradient arenas. */
static int float_arenas(sfp_model *m, sfp_error *err)
{
	if (!m->acts)
		m->acts = calloc(m->nacts ? m->nacts : 1, sizeof(float));
	if (!m->dacts)
		m->dacts = calloc(m->nacts ? m->nacts : 1, sizeof(float));
	if (!m->acts || !m->dacts)
		return sfp_error_set(err, SFP_ENOMEM, "out of memory for the activations");
	return SFP_OK;
}

static sfp_stash *stash_alloc(int n, int gecko)
{
	sfp_stash *st = calloc(1, sizeof *st);
	if (!st || !(st->s = calloc((size_t)n, sizeof *st->s)) ||
	    !(st->unit = calloc((size_t)n, sizeof(int))) ||
	    !(st->codec = calloc(1, sizeof *st->codec)) || !(st->codec[0] = sfp_codec_create())) {
		sfp_stash_free(st);
		return NULL;
	}
	st->n = n;
	st->ncodec = 1;
	st->gecko = gecko;
	return st;
}

/* Units: each run of per-sample layers is one, every other layer one;
 * every slot starts empty (no time alive, nothing kept). */
static void plan_units(const sfp_model *m, sfp_stash *st)
{
	const int n = m->n;
	int U = 0;
	for (int i = 0; i < n; i++) {
		if (i > 0 && per_sample(&m->layers[i]) && per_sample(&m->layers[i - 1]))
			st->unit[i] = st->unit[i - 1];
		else
			st->unit[i] = U++;
	}
	st->nunits = U;
	for (int s = 0; s < n; s++) {
		slot *sl = &st->s[s];
		sl->stash = -1;
		sl->fwd_t0 = sl->bwd_t0 = sl->dact_t0 = 2 * U;
		sl->fwd_t1 = sl->bwd_t1 = sl->dact_t1 = -1;
		sl->cur = -1;
	}
}

/* When each slot's output, saved copy and gradient are alive: forward runs
 * units 0..U-1, backward U..2U-1 in reverse; which outputs are kept. */
static void plan_liveness(sfp_model *m, sfp_stash *st)
{
	const int n = m->n, U = st->nunits;
	const int quantum_reads = sfp_containers_reads_outputs(m);
	unsigned e, mb;
	for (int k = 0; k < n; k++) {
		const layer *l = &m->layers[k];
		const int u = st->unit[k], bt = 2 * U - 1 - u;
		slot *own = &st->s[l->slot];
		touch(&own->fwd_t0, &own->fwd_t1, u);
		touch(&own->dact_t0, &own->dact_t1, bt); /* reads (and may write) its gradient */
		if (l->input >= 0) {
			slot *in = &st->s[m->layers[l->input].slot];
			touch(&in->fwd_t0, &in->fwd_t1, u);
			touch(&in->dact_t0, &in->dact_t1, bt); /* adds the input gradient */
			if (bwd_reads_input(l)) {
				touch(&in->bwd_t0, &in->bwd_t1, bt);
				in->bwd = 1;
			}
		}
		if (l->from >= 0) {
			slot *f = &st->s[m->layers[l->from].slot];
			touch(&f->fwd_t0, &f->fwd_t1, u);
			touch(&f->dact_t0, &f->dact_t1, bt);
		}
		const int has = sfp_containers_pack_widths(m, k, &e, &mb);
		if (has)
			own->stash = k;
		if (bwd_reads_output(l) || (has && quantum_reads)) {
			touch(&own->bwd_t0, &own->bwd_t1, bt);
			own->bwd = 1;
		}
	}
	st->s[m->layers[n - 1].slot].stash = -1; /* the logits stay float */
}

/* Every slot's buffers as items for place(): its gradient, its output
 * (a chunk when one unit uses it, else whole), and for a kept output the
 * container segments and the decoded copy backward reads. *ni items. */
static int plan_buffers(sfp_model *m, sfp_stash *st, item *it, int *ni, sfp_error *err)
{
	const int n = m->n, U = st->nunits;
	*ni = 0;
	for (int s = 0; s < n; s++) {
		slot *sl = &st->s[s];
		if (m->layers[s].slot != s)
			continue;
		const size_t no = slot_numel(m, s);
		/* the gradient: one chunk when only its run touches it; the
		 * logits' is seeded before backward starts */
		if (s == m->layers[n - 1].slot)
			sl->dact_t0 = U;
		sl->dact_chunk = s != m->layers[n - 1].slot && sl->dact_t0 == sl->dact_t1 &&
				 per_sample(&m->layers[s]);
		sl->dact_n = (size_t)(sl->dact_chunk ? seg_samples(m, st, s) : m->max_batch) * no;
		it[(*ni)++] = (item){sl->dact_n, sl->dact_t0, sl->dact_t1, &sl->dact_off};
		if (!sl->bwd)
			sl->stash = -1; /* nothing reads it back: nothing to keep */
		sl->whole = s == m->layers[n - 1].slot || (sl->bwd && sl->stash < 0);
		if (sl->whole) {
			sl->fwd_t0 = 0;
			sl->fwd_t1 = 2 * U - 1;
			sl->fwd_n = (size_t)m->max_batch * no;
			it[(*ni)++] = (item){sl->fwd_n, sl->fwd_t0, sl->fwd_t1, &sl->fwd_off};
			continue;
		}
		/* one unit, a run: a chunk buffer */
		sl->fwd_chunk = sl->fwd_t0 == sl->fwd_t1 && per_sample(&m->layers[s]);
		sl->fwd_n = (size_t)(sl->fwd_chunk ? seg_samples(m, st, s) : m->max_batch) * no;
		it[(*ni)++] = (item){sl->fwd_n, sl->fwd_t0, sl->fwd_t1, &sl->fwd_off};
		if (sl->stash < 0)
			continue;
		const int w = sl->stash, wt = 2 * U - 1 - st->unit[w];
		const int ch = seg_samples(m, st, w);
		/* containers: a chunk's blocks, for every chunk */
		sl->maxseg = (m->max_batch + ch - 1) / ch *
			     (int)(((size_t)ch * no + SFP_QBLOCK - 1) / SFP_QBLOCK);
		if (!(sl->segs = calloc((size_t)sl->maxseg, sizeof *sl->segs)))
			return sfp_error_set(err, SFP_ENOMEM, "out of memory for the activation stash");
		sl->bwd_chunk = per_sample(&m->layers[w]) && sl->bwd_t0 == wt && sl->bwd_t1 == wt;
		sl->bwd_n = (size_t)(sl->bwd_chunk ? ch : m->max_batch) * no;
		it[(*ni)++] = (item){sl->bwd_n, sl->bwd_t0, sl->bwd_t1, &sl->bwd_off};
	}
	return SFP_OK;
}

int sfp_stash_setup(sfp_model *m, int packed, int gecko, sfp_error *err)
{
	sfp_stash_free(m->stash);
	m->stash = NULL;
	unsigned e, mb;
	int any = 0;
	for (int i = 0; i < m->n && packed; i++)
		any |= sfp_containers_pack_widths(m, i, &e, &mb);
	if (!any)
		return float_arenas(m, err);
	sfp_stash *st = stash_alloc(m->n, gecko);
	item *it = calloc(3 * (size_t)m->n, sizeof *it);
	int ni = 0, rc = SFP_OK;
	if (!st || !it) {
		rc = sfp_error_set(err, SFP_ENOMEM, "out of memory for the activation stash");
		goto out;
	}
	plan_units(m, st);
	plan_liveness(m, st);
	if ((rc = plan_buffers(m, st, it, &ni, err)) < 0)
		goto out;
	st->pool_floats = place(it, ni);
	if (!(st->pool = calloc(st->pool_floats ? st->pool_floats : 1, sizeof(float)))) {
		rc = sfp_error_set(err, SFP_ENOMEM, "out of memory for the activation scratch");
		goto out;
	}
	free(m->acts);
	free(m->dacts);
	m->acts = m->dacts = NULL;
	m->stash = st;
	st = NULL;
out:
	free(it);
	sfp_stash_free(st);
	return rc;
}
