/*
 * stats.c -- the store: jobs, workers, layers, and the ingestion calls the
 * daemon's protocol code makes. Each public call validates its input
 * completely, then appends it to the history file, then applies it, so the
 * file never holds anything the store would refuse on replay.
 */
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "lib/stats/stats_internal.h"

/* Ceilings on the options, so that the bound and a report's history record
 * (at most 2 * max_layers widths) stay small. */
#define MAX_POINTS_CEIL (1u << 24)
#define MAX_JOBS_CEIL 1024u
#define MAX_LAYERS_CEIL 4096u

static const char *const kind_names[SFP_STATS_KINDS] = {"weights", "activations"};
static const char *const drop_names[SFP_STATS_DROPS] = {"oversize",  "malformed", "unregistered",
                                                        "bad_token", "version",   "limit"};
static const char *const state_names[SFP_WORKER_STATES] = {"up", "dead", "left", "stale"};

const char *sfp_stats_kind_name(sfp_stats_kind k)
{
	return (unsigned)k < SFP_STATS_KINDS ? kind_names[k] : "unknown";
}

int sfp_stats_kind_parse(const char *name)
{
	for (int k = 0; k < SFP_STATS_KINDS; k++)
		if (name && !strcmp(name, kind_names[k]))
			return k;
	return SFP_EINVAL;
}

const char *sfp_stats_drop_name(sfp_stats_drop reason)
{
	return (unsigned)reason < SFP_STATS_DROPS ? drop_names[reason] : "unknown";
}

const char *sfp_stats_state_name(sfp_stats_state st)
{
	return (unsigned)st < SFP_WORKER_STATES ? state_names[st] : "unknown";
}

void sfp_stats_opts_default(sfp_stats_opts *o)
{
	memset(o, 0, sizeof *o);
	o->max_points = 4096;
	o->max_jobs = 8;
	o->max_workers = 1024;
	o->max_layers = 256;
	o->dead_after_ns = 30ull * 1000000000ull;
}

uint64_t sfp_stats_memory_bound(const sfp_stats_opts *o)
{
	uint64_t per_job = sizeof(stats_job) + (uint64_t)o->max_workers * sizeof(stats_worker *) +
	                   (uint64_t)o->max_workers * sizeof(stats_worker) +
	                   (uint64_t)o->max_layers * sizeof(stats_layer) +
	                   series_bytes_max(sizeof(job_point), o->max_points) +
	                   (uint64_t)o->max_layers * SFP_STATS_KINDS *
	                       series_bytes_max(sizeof(width_point), o->max_points);
	return sizeof(sfp_stats) + (uint64_t)o->max_jobs * per_job + HIST_REC_MAX;
}

static int opts_check(const sfp_stats_opts *o, sfp_error *err)
{
	if (o->max_points < 16 || o->max_points > MAX_POINTS_CEIL)
		return sfp_error_set(err, SFP_EINVAL, "max points per series %u is not in 16..%u",
		                     o->max_points, MAX_POINTS_CEIL);
	if (o->max_jobs < 1 || o->max_jobs > MAX_JOBS_CEIL)
		return sfp_error_set(err, SFP_EINVAL, "max jobs %u is not in 1..%u", o->max_jobs,
		                     MAX_JOBS_CEIL);
	if (o->max_workers < 1 || o->max_workers > SFP_STATS_MAX_RANK)
		return sfp_error_set(err, SFP_EINVAL, "max workers %u is not in 1..%u",
		                     o->max_workers, SFP_STATS_MAX_RANK);
	if (o->max_layers < 1 || o->max_layers > MAX_LAYERS_CEIL)
		return sfp_error_set(err, SFP_EINVAL, "max layers %u is not in 1..%u",
		                     o->max_layers, MAX_LAYERS_CEIL);
	if (!o->dead_after_ns)
		return sfp_error_set(err, SFP_EINVAL, "dead-worker timeout must be positive");
	return SFP_OK;
}

int sfp_stats_open(sfp_stats **out, const char *history_path, const sfp_stats_opts *opts,
                   sfp_error *err)
{
	sfp_stats_opts d;
	*out = NULL;
	if (!opts) {
		sfp_stats_opts_default(&d);
		opts = &d;
	}
	SFP_TRY(opts_check(opts, err));
	sfp_stats *s = calloc(1, sizeof *s);
	if (!s)
		return sfp_error_set(err, SFP_ENOMEM, "out of memory");
	s->o = *opts;
	s->fd = -1;
	s->jobs = calloc(opts->max_jobs, sizeof *s->jobs);
	if (!s->jobs) {
		free(s);
		return sfp_error_set(err, SFP_ENOMEM, "out of memory");
	}
	s->bytes = sizeof *s + (uint64_t)opts->max_jobs * sizeof *s->jobs;
	if (history_path) {
		int rc = history_open(s, history_path, err);
		if (rc < 0) {
			sfp_stats_close(s);
			return rc;
		}
	}
	*out = s;
	return SFP_OK;
}

static void job_release(sfp_stats *s, stats_job *j)
{
	for (uint32_t i = 0; i < j->n_workers; i++)
		free(j->workers[i]);
	free(j->workers);
	for (uint32_t i = 0; i < j->n_layers; i++)
		for (int k = 0; k < SFP_STATS_KINDS; k++)
			series_release(&j->layers[i].k[k].se, &s->bytes);
	free(j->layers);
	series_release(&j->se, &s->bytes);
}

void sfp_stats_close(sfp_stats *s)
{
	if (!s)
		return;
	history_close(s);
	for (uint32_t i = 0; i < s->n_jobs; i++)
		job_release(s, &s->jobs[i]);
	free(s->jobs);
	free(s->rbuf);
	free(s->path);
	free(s);
}

/* ---- lookups ----------------------------------------------------------- */
int stats_name_ok(const char *name)
{
	size_t n = 0;
	if (!name)
		return 0;
	for (; name[n]; n++)
		if ((unsigned char)name[n] < 0x21 || (unsigned char)name[n] > 0x7e)
			return 0;
	return n >= 1 && n <= SFP_STATS_NAME_MAX;
}

stats_job *stats_find_job(const sfp_stats *s, const char *name)
{
	for (uint32_t i = 0; i < s->n_jobs; i++)
		if (!strcmp(s->jobs[i].name, name))
			return &s->jobs[i];
	return NULL;
}

const stats_job *stats_pick_job(const sfp_stats *s, const char *name)
{
	if (name && *name)
		return stats_find_job(s, name);
	const stats_job *best = NULL;
	for (uint32_t i = 0; i < s->n_jobs; i++)
		if (!best || s->jobs[i].active_seq > best->active_seq)
			best = &s->jobs[i];
	return best;
}

/* A job with a worker up (reporting, not yet dead or gone). */
static int job_live(const stats_job *j)
{
	for (uint32_t i = 0; i < j->n_workers; i++)
		if (j->workers[i]->state == SFP_WORKER_UP)
			return 1;
	return 0;
}

static int job_get(sfp_stats *s, const char *name, stats_job **out, sfp_error *err)
{
	stats_job *j = stats_find_job(s, name);
	if (j) {
		*out = j;
		return SFP_OK;
	}
	if (s->n_jobs == s->o.max_jobs) {
		/* full: the least recently active job with no worker up makes
		 * room (finished runs, e.g. one per Slurm job, must not lock a
		 * long-lived sfpd out); a full house of live jobs refuses */
		stats_job *old = NULL;
		for (uint32_t i = 0; i < s->n_jobs; i++)
			if (!job_live(&s->jobs[i]) &&
			    (!old || s->jobs[i].active_seq < old->active_seq))
				old = &s->jobs[i];
		if (!old) {
			s->drops[SFP_STATS_DROP_LIMIT]++;
			return sfp_error_set(err, SFP_ERANGE,
			                     "job '%s' would be beyond the limit of %u jobs with "
			                     "workers up",
			                     name, s->o.max_jobs);
		}
		s->bytes -= (uint64_t)s->o.max_workers * sizeof *old->workers +
		            (uint64_t)old->n_workers * sizeof **old->workers +
		            (uint64_t)old->cap_layers * sizeof *old->layers;
		job_release(s, old);
		s->jobs_evicted++;
		j = old;
	} else {
		j = &s->jobs[s->n_jobs++];
	}
	memset(j, 0, sizeof *j);
	j->workers = calloc(s->o.max_workers, sizeof *j->workers);
	if (!j->workers)
		return sfp_error_set(err, SFP_ENOMEM, "out of memory");
	s->bytes += (uint64_t)s->o.max_workers * sizeof *j->workers;
	snprintf(j->name, sizeof j->name, "%s", name);
	j->step = -1;
	j->loss = j->footprint = NAN;
	series_init(&j->se, sizeof(job_point), s->o.max_points);
	*out = j;
	return SFP_OK;
}

uint32_t stats_worker_index(const stats_job *j, uint32_t rank)
{
	uint32_t lo = 0, hi = j->n_workers;
	while (lo < hi) {
		uint32_t mid = lo + (hi - lo) / 2;
		if (j->workers[mid]->rank < rank)
			lo = mid + 1;
		else
			hi = mid;
	}
	return lo;
}

static int worker_get(sfp_stats *s, stats_job *j, uint32_t rank, stats_worker **out, sfp_error *err)
{
	uint32_t i = stats_worker_index(j, rank);
	if (i < j->n_workers && j->workers[i]->rank == rank) {
		*out = j->workers[i];
		return SFP_OK;
	}
	if (j->n_workers == s->o.max_workers) {
		s->drops[SFP_STATS_DROP_LIMIT]++;
		return sfp_error_set(err, SFP_ERANGE,
		                     "rank %u of job '%s' would be beyond the limit of %u workers",
		                     rank, j->name, s->o.max_workers);
	}
	stats_worker *w = calloc(1, sizeof *w);
	if (!w)
		return sfp_error_set(err, SFP_ENOMEM, "out of memory");
	w->rank = rank;
	w->step = -1;
	w->loss = NAN;
	memmove(j->workers + i + 1, j->workers + i, (j->n_workers - i) * sizeof *j->workers);
	j->workers[i] = w;
	j->n_workers++;
	s->bytes += sizeof *w;
	*out = w;
	return SFP_OK;
}

static stats_layer *layer_find(const stats_job *j, const char *name)
{
	for (uint32_t i = 0; i < j->n_layers; i++)
		if (!strcmp(j->layers[i].name, name))
			return &j->layers[i];
	return NULL;
}

/* NULL when the job is at its layer limit (counted by the caller) or out of
 * memory. */
static stats_layer *layer_get(sfp_stats *s, stats_job *j, const char *name)
{
	stats_layer *l = layer_find(j, name);
	if (l || j->n_layers == s->o.max_layers)
		return l;
	if (j->n_layers == j->cap_layers) {
		uint32_t cap = j->cap_layers ? j->cap_layers * 2 : 16;
		if (cap > s->o.max_layers)
			cap = s->o.max_layers;
		stats_layer *p = realloc(j->layers, (size_t)cap * sizeof *p);
		if (!p)
			return NULL;
		s->bytes += (uint64_t)(cap - j->cap_layers) * sizeof *p;
		j->layers = p;
		j->cap_layers = cap;
	}
	l = &j->layers[j->n_layers++];
	memset(l, 0, sizeof *l);
	snprintf(l->name, sizeof l->name, "%s", name);
	for (int k = 0; k < SFP_STATS_KINDS; k++) {
		series_init(&l->k[k].se, sizeof(width_point), s->o.max_points);
		l->k[k].n_e = l->k[k].n_m = NAN;
	}
	return l;
}

static stats_worker *worker_find(const sfp_stats *s, const char *jname, uint32_t rank)
{
	if (!jname || rank >= SFP_STATS_MAX_RANK)
		return NULL;
	stats_job *j = stats_find_job(s, jname);
	if (!j)
		return NULL;
	uint32_t i = stats_worker_index(j, rank);
	return i < j->n_workers && j->workers[i]->rank == rank ? j->workers[i] : NULL;
}

/* ---- register ------------------------------------------------------------ */
static int malformed(sfp_stats *s, sfp_error *err, const char *what, const char *name)
{
	s->drops[SFP_STATS_DROP_MALFORMED]++;
	return sfp_error_set(err, SFP_ECORRUPT,
	                     "%s '%.*s' is not a name of 1..%d printable characters", what,
	                     SFP_STATS_NAME_MAX, name ? name : "(null)", SFP_STATS_NAME_MAX);
}

int stats_apply_register(sfp_stats *s, const char *jname, uint32_t rank, uint32_t replica,
                         uint32_t stage, uint32_t n_layers, const char *const *names,
                         uint64_t now_ns, sfp_error *err)
{
	stats_job *j = NULL;
	stats_worker *w = NULL;
	if (!stats_name_ok(jname))
		return malformed(s, err, "job", jname);
	if (rank >= SFP_STATS_MAX_RANK) {
		s->drops[SFP_STATS_DROP_MALFORMED]++;
		return sfp_error_set(err, SFP_ECORRUPT, "rank %u is not below %u", rank,
		                     SFP_STATS_MAX_RANK);
	}
	if (n_layers > 2 * s->o.max_layers) { /* two tensor kinds per layer at most */
		s->drops[SFP_STATS_DROP_LIMIT]++;
		return sfp_error_set(err, SFP_ERANGE, "%u layer names are beyond the limit of %u",
		                     n_layers, 2 * s->o.max_layers);
	}
	for (uint32_t i = 0; i < n_layers; i++)
		if (!stats_name_ok(names[i]))
			return malformed(s, err, "layer", names[i]);
	SFP_TRY(job_get(s, jname, &j, err));
	SFP_TRY(worker_get(s, j, rank, &w, err));
	if (!s->replaying)
		history_append_register(s, jname, rank, replica, stage, n_layers, names);
	w->replica = replica;
	w->stage = stage;
	w->n_layers = n_layers;
	w->state = SFP_WORKER_UP;
	w->registered_ns = w->last_seen_ns = now_ns;
	j->active_seq = ++s->seq;
	int full = 0;
	for (uint32_t i = 0; i < n_layers; i++)
		full |= !layer_get(s, j, names[i]);
	if (full)
		s->drops[SFP_STATS_DROP_LIMIT]++;
	return SFP_OK;
}

int sfp_stats_register(sfp_stats *s, const char *job, uint32_t rank, uint32_t replica,
                       uint32_t stage, uint32_t n_layers, const char *const *layer_names,
                       uint64_t now_ns, sfp_error *err)
{
	return stats_apply_register(s, job, rank, replica, stage, n_layers, layer_names, now_ns,
	                            err);
}

/* ---- report -------------------------------------------------------------- */
static void job_point_merge(void *dst, const void *src)
{
	job_point *d = dst;
	const job_point *p = src;
	d->loss_sum += p->loss_sum;
	d->loss_n += p->loss_n;
	d->fp_sum += p->fp_sum;
	d->fp_n += p->fp_n;
	/* totals: the newest wins */
	d->samples = p->samples;
	d->raw_bytes = p->raw_bytes;
	d->wire_bytes = p->wire_bytes;
}

static void width_point_merge(void *dst, const void *src)
{
	width_point *d = dst;
	const width_point *p = src;
	/* the counts saturate: a mean over 65535 reports is as good as any */
	if (d->n_e_n < UINT16_MAX - p->n_e_n) {
		d->n_e_sum += p->n_e_sum;
		d->n_e_n = (uint16_t)(d->n_e_n + p->n_e_n);
	}
	if (d->n_m_n < UINT16_MAX - p->n_m_n) {
		d->n_m_sum += p->n_m_sum;
		d->n_m_n = (uint16_t)(d->n_m_n + p->n_m_n);
	}
	if (p->e > d->e)
		d->e = p->e;
	if (p->m > d->m)
		d->m = p->m;
}

static int report_check(sfp_stats *s, const sfp_worker_report *r, sfp_error *err)
{
	if (!stats_name_ok(r->job))
		return malformed(s, err, "job", r->job);
	if (r->step < 0 || r->rank >= SFP_STATS_MAX_RANK) {
		s->drops[SFP_STATS_DROP_MALFORMED]++;
		return sfp_error_set(err, SFP_ECORRUPT, "step %lld or rank %u out of range",
		                     (long long)r->step, r->rank);
	}
	if (r->n_widths > 2 * s->o.max_layers) {
		s->drops[SFP_STATS_DROP_LIMIT]++;
		return sfp_error_set(err, SFP_ERANGE, "%u widths are beyond the limit of %u",
		                     r->n_widths, 2 * s->o.max_layers);
	}
	for (uint32_t i = 0; i < r->n_widths; i++) {
		const sfp_stats_width *w = &r->widths[i];
		if (!stats_name_ok(w->layer))
			return malformed(s, err, "layer", w->layer);
		if ((unsigned)w->kind >= SFP_STATS_KINDS || w->e < 1 || w->e > 8 || w->m > 23) {
			s->drops[SFP_STATS_DROP_MALFORMED]++;
			return sfp_error_set(err, SFP_ECORRUPT,
			                     "layer '%s': kind %d, e %u, m %u out of range",
			                     w->layer, (int)w->kind, w->e, w->m);
		}
	}
	return SFP_OK;
}

/* Advance the worker's and the job's counters; a value below the last one
 * is a restarted worker counting from zero again. */
static void count(stats_job *j, stats_worker *w, int c, uint64_t v)
{
	uint64_t d = v >= w->last[c] ? v - w->last[c] : v;
	w->last[c] = v;
	w->total[c] += d;
	j->total[c] += d;
}

static void apply_widths(sfp_stats *s, stats_job *j, const sfp_worker_report *r)
{
	int full = 0;
	for (uint32_t i = 0; i < r->n_widths; i++) {
		const sfp_stats_width *wd = &r->widths[i];
		stats_layer *l = layer_get(s, j, wd->layer);
		if (!l) {
			full = 1;
			continue;
		}
		kind_state *k = &l->k[wd->kind];
		width_point p = {.h.step = r->step, .e = (uint8_t)wd->e, .m = (uint8_t)wd->m};
		if (isfinite(wd->n_e)) {
			p.n_e_sum = wd->n_e;
			p.n_e_n = 1;
		}
		if (isfinite(wd->n_m)) {
			p.n_m_sum = wd->n_m;
			p.n_m_n = 1;
		}
		if (series_add(&k->se, &p, width_point_merge, &s->bytes) < 0)
			continue; /* out of memory: the point is lost, the store stays valid */
		if (r->step >= k->step || !k->present) {
			k->present = 1;
			k->e = wd->e;
			k->m = wd->m;
			k->n_e = wd->n_e;
			k->n_m = wd->n_m;
			k->count = wd->count;
			k->step = r->step;
		}
	}
	if (full)
		s->drops[SFP_STATS_DROP_LIMIT]++;
}

int stats_apply_report(sfp_stats *s, const sfp_worker_report *r, uint64_t now_ns, sfp_error *err)
{
	SFP_TRY(report_check(s, r, err));
	stats_worker *w = worker_find(s, r->job, r->rank);
	if (!w) {
		s->drops[SFP_STATS_DROP_UNREGISTERED]++;
		return sfp_error_set(err, SFP_ENOENT, "rank %u of job '%s' is not registered",
		                     r->rank, r->job);
	}
	stats_job *j = stats_find_job(s, r->job);
	if (!s->replaying)
		history_append_report(s, r);
	w->state = SFP_WORKER_UP;
	w->last_seen_ns = now_ns;
	w->reports++;
	if (r->step >= w->step) {
		w->step = r->step;
		if (!isnan(r->loss))
			w->loss = r->loss;
	}
	/* samples arrive per report, the other counters as totals */
	w->total[COUNTER_SAMPLES] += r->samples;
	j->total[COUNTER_SAMPLES] += r->samples;
	count(j, w, COUNTER_RAW, r->raw_bytes);
	count(j, w, COUNTER_WIRE, r->wire_bytes);
	count(j, w, COUNTER_ENC, r->encode_ns);
	count(j, w, COUNTER_DEC, r->decode_ns);
	count(j, w, COUNTER_COMM, r->comm_ns);
	j->reports++;
	j->active_seq = ++s->seq;
	if (r->step >= j->step) {
		if (r->step > j->step) {
			j->loss = NAN;
			j->footprint = NAN;
		}
		j->step = r->step;
		if (!isnan(r->loss))
			j->loss = r->loss;
		if (!isnan(r->footprint_bits_per_value))
			j->footprint = r->footprint_bits_per_value;
	}
	job_point p = {.h.step = r->step,
	               .samples = (double)j->total[COUNTER_SAMPLES],
	               .raw_bytes = (double)j->total[COUNTER_RAW],
	               .wire_bytes = (double)j->total[COUNTER_WIRE]};
	if (!isnan(r->loss)) {
		p.loss_sum = r->loss;
		p.loss_n = 1;
	}
	if (!isnan(r->footprint_bits_per_value)) {
		p.fp_sum = r->footprint_bits_per_value;
		p.fp_n = 1;
	}
	(void)series_add(&j->se, &p, job_point_merge, &s->bytes);
	apply_widths(s, j, r);
	return SFP_OK;
}

int sfp_stats_report(sfp_stats *s, const sfp_worker_report *r, uint64_t now_ns, sfp_error *err)
{
	return stats_apply_report(s, r, now_ns, err);
}

/* ---- heartbeat, goodbye, tick, drops ------------------------------------- */
int sfp_stats_heartbeat(sfp_stats *s, const char *job, uint32_t rank, uint64_t now_ns)
{
	stats_worker *w = worker_find(s, job, rank);
	if (!w) {
		s->drops[SFP_STATS_DROP_UNREGISTERED]++;
		return SFP_ENOENT;
	}
	w->state = SFP_WORKER_UP;
	w->last_seen_ns = now_ns;
	return SFP_OK;
}

int stats_apply_goodbye(sfp_stats *s, const char *job, uint32_t rank, uint64_t now_ns)
{
	stats_worker *w = worker_find(s, job, rank);
	if (!w) {
		s->drops[SFP_STATS_DROP_UNREGISTERED]++;
		return SFP_ENOENT;
	}
	if (!s->replaying)
		history_append_goodbye(s, job, rank);
	w->state = SFP_WORKER_LEFT;
	w->last_seen_ns = now_ns;
	return SFP_OK;
}

int sfp_stats_goodbye(sfp_stats *s, const char *job, uint32_t rank, uint64_t now_ns)
{
	return stats_apply_goodbye(s, job, rank, now_ns);
}

int sfp_stats_tick(sfp_stats *s, uint64_t now_ns)
{
	int died = 0;
	for (uint32_t i = 0; i < s->n_jobs; i++) {
		stats_job *j = &s->jobs[i];
		for (uint32_t r = 0; r < j->n_workers; r++) {
			stats_worker *w = j->workers[r];
			if (w->state == SFP_WORKER_UP && now_ns > w->last_seen_ns &&
			    now_ns - w->last_seen_ns > s->o.dead_after_ns) {
				w->state = SFP_WORKER_DEAD;
				died++;
			}
		}
	}
	history_sync(s);
	return died;
}

void sfp_stats_count_drop(sfp_stats *s, sfp_stats_drop reason)
{
	if ((unsigned)reason < SFP_STATS_DROPS)
		s->drops[reason]++;
}

/* ---- looking inside ------------------------------------------------------ */
uint64_t sfp_stats_drops(const sfp_stats *s, sfp_stats_drop reason)
{
	return (unsigned)reason < SFP_STATS_DROPS ? s->drops[reason] : 0;
}

uint64_t sfp_stats_memory_bytes(const sfp_stats *s)
{
	return s->bytes;
}

const sfp_stats_recovery *sfp_stats_recovery_info(const sfp_stats *s)
{
	return &s->rec;
}

int sfp_stats_worker_state(const sfp_stats *s, const char *job, uint32_t rank,
                           sfp_stats_state *state)
{
	const stats_worker *w = worker_find(s, job, rank);
	if (!w)
		return SFP_ENOENT;
	*state = w->state;
	return SFP_OK;
}

int sfp_stats_job_step(const sfp_stats *s, const char *job, int64_t *step)
{
	const stats_job *j = stats_find_job(s, job);
	if (!j)
		return SFP_ENOENT;
	*step = j->step;
	return SFP_OK;
}

uint32_t sfp_stats_series_len(const sfp_stats *s, const char *job, const char *layer_name,
                              sfp_stats_kind kind)
{
	const stats_job *j = stats_find_job(s, job);
	if (!j)
		return 0;
	if (!layer_name)
		return j->se.len;
	const stats_layer *l = layer_find(j, layer_name);
	return l && (unsigned)kind < SFP_STATS_KINDS ? l->k[kind].se.len : 0;
}
