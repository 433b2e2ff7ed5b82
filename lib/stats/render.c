/*
 * render.c -- the store as Prometheus text (exposition format 0.0.4) and as
 * the JSON of /api/v1/job, /api/v1/workers and /api/v1/bitlengths.
 *
 * Prometheus: names carry the sfp_ prefix and base units (seconds, bytes),
 * and counters end in _total. A container's widths are numbers of bits in
 * a number format, not amounts of data, so they are _width (in bits, as
 * the HELP says) rather than a byte quantity; the footprint is a ratio to
 * float32 (bits per value / 32). Labels are bounded: job (max_jobs), layer
 * (max_layers per job), kind (2), state (4), reason (6); never rank or step.
 * Every family is written whole (HELP, TYPE, then its samples), as the
 * format requires.
 *
 * JSON series are column-oriented ({"step":[...],"loss":[...]}), the shape
 * plotting libraries take directly; NaN and infinities become null.
 */
#include <math.h>
#include <string.h>

#include "lib/stats/stats_internal.h"

/* ---- Prometheus ----------------------------------------------------------- */
static void prom_family(sfp_strbuf *b, const char *name, const char *type, const char *help)
{
	sfp_strbuf_printf(b, "# HELP %s %s\n# TYPE %s %s\n", name, help, name, type);
}

/* Label values escape backslash, double quote and newline. Names reaching
 * here are printable ASCII (checked at ingestion). */
static void prom_label(sfp_strbuf *b, const char *key, const char *v, int first)
{
	sfp_strbuf_printf(b, "%s%s=\"", first ? "" : ",", key);
	for (const char *c = v; *c; c++) {
		if (*c == '\\' || *c == '"')
			sfp_strbuf_append(b, "\\", 1);
		if (*c == '\n')
			sfp_strbuf_append(b, "\\n", 2);
		else
			sfp_strbuf_append(b, c, 1);
	}
	sfp_strbuf_append(b, "\"", 1);
}

static void prom_value(sfp_strbuf *b, double v)
{
	if (isnan(v))
		sfp_strbuf_puts(b, " NaN\n");
	else if (isinf(v))
		sfp_strbuf_puts(b, v > 0 ? " +Inf\n" : " -Inf\n");
	else if (v == (double)(int64_t)v && fabs(v) < 9.007199254740992e15)
		sfp_strbuf_printf(b, " %lld\n", (long long)v);
	else
		sfp_strbuf_printf(b, " %.9g\n", v);
}

static void prom_job_sample(sfp_strbuf *b, const char *name, const stats_job *j, double v)
{
	sfp_strbuf_puts(b, name);
	sfp_strbuf_append(b, "{", 1);
	prom_label(b, "job", j->name, 1);
	sfp_strbuf_append(b, "}", 1);
	prom_value(b, v);
}

static uint32_t workers_in(const stats_job *j, sfp_stats_state st)
{
	uint32_t n = 0;
	for (uint32_t i = 0; i < j->n_workers; i++)
		n += j->workers[i]->state == st;
	return n;
}

/* One value per job. */
enum job_value {
	JV_STEP,
	JV_LOSS,
	JV_FP,
	JV_UP,
	JV_REPORTS,
	JV_SAMPLES,
	JV_RAW,
	JV_WIRE,
	JV_ENC,
	JV_DEC,
	JV_COMM
};

static double job_value(const stats_job *j, enum job_value v)
{
	switch (v) {
	case JV_STEP: return (double)j->step;
	case JV_LOSS: return j->loss;
	case JV_FP: return j->footprint / 32.0;
	case JV_UP: return workers_in(j, SFP_WORKER_UP);
	case JV_REPORTS: return (double)j->reports;
	case JV_SAMPLES: return (double)j->total[COUNTER_SAMPLES];
	case JV_RAW: return (double)j->total[COUNTER_RAW];
	case JV_WIRE: return (double)j->total[COUNTER_WIRE];
	case JV_ENC: return (double)j->total[COUNTER_ENC] * 1e-9;
	case JV_DEC: return (double)j->total[COUNTER_DEC] * 1e-9;
	case JV_COMM: return (double)j->total[COUNTER_COMM] * 1e-9;
	}
	return NAN;
}

static const struct {
	const char *name, *type, *help;
	enum job_value v;
	int skip_nan;
} job_families[] = {
    {"sfp_step", "gauge", "Newest training step reported by the job's workers.", JV_STEP, 1},
    {"sfp_loss", "gauge", "Training loss at the newest step (mean over the reporting ranks).",
     JV_LOSS, 1},
    {"sfp_footprint_ratio", "gauge",
     "Stored size of weights and activations relative to float32 (bits per value / 32).", JV_FP, 1},
    {"sfp_workers_up", "gauge", "Workers of the job that are up.", JV_UP, 0},
    {"sfp_reports_total", "counter", "Reports received from the job's workers.", JV_REPORTS, 0},
    {"sfp_samples_total", "counter", "Training samples processed by the job's workers.", JV_SAMPLES,
     0},
    {"sfp_raw_bytes_total", "counter", "Tensor bytes sent by the workers, counted as float32.",
     JV_RAW, 0},
    {"sfp_wire_bytes_total", "counter", "Tensor bytes sent by the workers, as encoded on the wire.",
     JV_WIRE, 0},
    {"sfp_encode_seconds_total", "counter", "Time the workers spent encoding tensors.", JV_ENC, 0},
    {"sfp_decode_seconds_total", "counter", "Time the workers spent decoding tensors.", JV_DEC, 0},
    {"sfp_comm_seconds_total", "counter", "Time the workers spent communicating.", JV_COMM, 0},
};

/* One value per (job, layer, kind) that has been reported. */
enum width_value { WV_E, WV_M, WV_NE, WV_NM, WV_COUNT };

static double width_value(const kind_state *k, enum width_value v)
{
	switch (v) {
	case WV_E: return k->e;
	case WV_M: return k->m;
	case WV_NE: return k->n_e;
	case WV_NM: return k->n_m;
	case WV_COUNT: return (double)k->count;
	}
	return NAN;
}

static const struct {
	const char *name, *help;
	enum width_value v;
} width_families[] = {
    {"sfp_layer_exponent_width", "Exponent bits of the tensor's container (packing width e).",
     WV_E},
    {"sfp_layer_mantissa_width", "Mantissa bits of the tensor's container (packing width m).",
     WV_M},
    {"sfp_layer_exponent_width_learned", "Learned real-valued exponent width n_e, in bits.", WV_NE},
    {"sfp_layer_mantissa_width_learned", "Learned real-valued mantissa width n_m, in bits.", WV_NM},
    {"sfp_layer_values", "Values in the tensor.", WV_COUNT},
};

static void prom_widths(const sfp_stats *s, sfp_strbuf *b)
{
	for (size_t f = 0; f < sizeof width_families / sizeof width_families[0]; f++) {
		prom_family(b, width_families[f].name, "gauge", width_families[f].help);
		for (uint32_t i = 0; i < s->n_jobs; i++) {
			const stats_job *j = &s->jobs[i];
			for (uint32_t l = 0; l < j->n_layers; l++)
				for (int k = 0; k < SFP_STATS_KINDS; k++) {
					const kind_state *ks = &j->layers[l].k[k];
					double v = ks->present
					               ? width_value(ks, width_families[f].v)
					               : NAN;
					if (isnan(v))
						continue;
					sfp_strbuf_puts(b, width_families[f].name);
					sfp_strbuf_append(b, "{", 1);
					prom_label(b, "job", j->name, 1);
					prom_label(b, "layer", j->layers[l].name, 0);
					prom_label(b, "kind",
					           sfp_stats_kind_name((sfp_stats_kind)k), 0);
					sfp_strbuf_append(b, "}", 1);
					prom_value(b, v);
				}
		}
	}
}

static void prom_store(const sfp_stats *s, sfp_strbuf *b)
{
	prom_family(b, "sfp_dropped_messages_total", "counter",
	            "Worker messages dropped, by reason.");
	for (int r = 0; r < SFP_STATS_DROPS; r++)
		sfp_strbuf_printf(b, "sfp_dropped_messages_total{reason=\"%s\"} %llu\n",
		                  sfp_stats_drop_name((sfp_stats_drop)r),
		                  (unsigned long long)s->drops[r]);
	/* the store's own scalars, one family each */
	const struct {
		const char *name, *type, *help;
		unsigned long long v;
	} sc[] = {
		{"sfp_jobs", "gauge", "Jobs the daemon knows.", s->n_jobs},
		{"sfp_jobs_evicted_total", "counter",
		 "Finished jobs dropped from the store to make room for new ones.", s->jobs_evicted},
		{"sfp_stats_memory_bytes", "gauge", "Memory held by the stats store.", s->bytes},
		{"sfp_history_bytes", "gauge", "Size of the history file (0: none).", s->file_bytes},
		{"sfp_history_recovered_records", "gauge",
		 "Records replayed from the history file at start.", s->rec.records},
		{"sfp_history_corrupt_records", "gauge",
		 "Corrupt records skipped in the history file at start.", s->rec.corrupt_records},
		{"sfp_history_truncated_bytes", "gauge",
		 "Bytes of torn tail cut from the history file at start.", s->rec.truncated_bytes},
		{"sfp_history_write_errors_total", "counter",
		 "Records that could not be appended to the history file.", s->write_errors},
	};
	for (size_t i = 0; i < sizeof sc / sizeof sc[0]; i++) {
		prom_family(b, sc[i].name, sc[i].type, sc[i].help);
		sfp_strbuf_printf(b, "%s %llu\n", sc[i].name, sc[i].v);
	}
}

int sfp_stats_render_prometheus(const sfp_stats *s, uint64_t now_ns, sfp_strbuf *b)
{
	for (size_t f = 0; f < sizeof job_families / sizeof job_families[0]; f++) {
		prom_family(b, job_families[f].name, job_families[f].type, job_families[f].help);
		for (uint32_t i = 0; i < s->n_jobs; i++) {
			double v = job_value(&s->jobs[i], job_families[f].v);
			if (!(job_families[f].skip_nan && (isnan(v) || v < 0)))
				prom_job_sample(b, job_families[f].name, &s->jobs[i], v);
		}
	}
	prom_family(b, "sfp_workers", "gauge", "Workers of the job, by state.");
	for (uint32_t i = 0; i < s->n_jobs; i++)
		for (int st = 0; st < SFP_WORKER_STATES; st++) {
			sfp_strbuf_puts(b, "sfp_workers{");
			prom_label(b, "job", s->jobs[i].name, 1);
			prom_label(b, "state", sfp_stats_state_name((sfp_stats_state)st), 0);
			sfp_strbuf_append(b, "}", 1);
			prom_value(b, workers_in(&s->jobs[i], (sfp_stats_state)st));
		}
	prom_widths(s, b);
	prom_store(s, b);
	return b->err;
}

/* ---- JSON ------------------------------------------------------------------- */
static void json_key(sfp_strbuf *b, const char *key, int first)
{
	sfp_strbuf_puts(b, first ? "\"" : ",\"");
	sfp_strbuf_puts(b, key);
	sfp_strbuf_puts(b, "\":");
}

static void json_kv_num(sfp_strbuf *b, const char *key, double v)
{
	json_key(b, key, 0);
	sfp_strbuf_json_num(b, v);
}

static int no_job(const char *name, sfp_strbuf *b, const char *empty, sfp_error *err)
{
	if (name && *name)
		return sfp_error_set(err, SFP_ENOENT, "no job '%s'", name);
	sfp_strbuf_puts(b, empty);
	return b->err;
}

/* A column of a series' point, by index. */
typedef double (*column_fn)(const void *point, int c);

/* ,"series":{"<name>":[v, ...], ...} over the points from `since` on, one
 * array per column; NaN is null. */
static void json_series(const series *se, int64_t since, const char *const *names, int ncol,
			column_fn column, sfp_strbuf *b)
{
	const uint32_t from = series_lower_bound(se, since);
	sfp_strbuf_puts(b, ",\"series\":{");
	for (int c = 0; c < ncol; c++) {
		sfp_strbuf_printf(b, "%s\"%s\":[", c ? "," : "", names[c]);
		for (uint32_t i = from; i < se->len; i++) {
			if (i > from)
				sfp_strbuf_append(b, ",", 1);
			sfp_strbuf_json_num(b, column(series_at(se, i), c));
		}
		sfp_strbuf_append(b, "]", 1);
	}
	sfp_strbuf_append(b, "}", 1);
}

static double job_column(const void *point, int c)
{
	const job_point *p = point;
	switch (c) {
	case 0: return (double)p->h.step;
	case 1: return p->loss_n ? p->loss_sum / p->loss_n : NAN;
	case 2: return p->fp_n ? p->fp_sum / p->fp_n : NAN;
	case 3: return p->samples;
	case 4: return p->raw_bytes;
	default: return p->wire_bytes;
	}
}

static const char *const job_columns[] = {"step",
                                          "loss",
                                          "footprint_bits_per_value",
                                          "samples_total",
                                          "raw_bytes_total",
                                          "wire_bytes_total"};

static void json_job_series(const stats_job *j, int64_t since, sfp_strbuf *b)
{
	json_series(&j->se, since, job_columns, (int)(sizeof job_columns / sizeof job_columns[0]),
		    job_column, b);
}

int sfp_stats_render_job(const sfp_stats *s, const char *name, int64_t since, uint64_t now_ns,
                         sfp_strbuf *b, sfp_error *err)
{
	const stats_job *j = stats_pick_job(s, name);
	if (!j)
		return no_job(name, b, "{\"job\":null,\"jobs\":[]}", err);
	sfp_strbuf_puts(b, "{\"job\":");
	sfp_strbuf_json_str(b, j->name);
	json_key(b, "jobs", 0);
	sfp_strbuf_append(b, "[", 1);
	for (uint32_t i = 0; i < s->n_jobs; i++) {
		if (i)
			sfp_strbuf_append(b, ",", 1);
		sfp_strbuf_json_str(b, s->jobs[i].name);
	}
	sfp_strbuf_append(b, "]", 1);
	json_kv_num(b, "step", j->step < 0 ? NAN : (double)j->step);
	json_kv_num(b, "loss", j->loss);
	json_kv_num(b, "footprint_bits_per_value", j->footprint);
	json_key(b, "workers", 0);
	sfp_strbuf_printf(b, "{\"total\":%u", j->n_workers);
	for (int st = 0; st < SFP_WORKER_STATES; st++)
		json_kv_num(b, sfp_stats_state_name((sfp_stats_state)st),
		            workers_in(j, (sfp_stats_state)st));
	sfp_strbuf_append(b, "}", 1);
	json_kv_num(b, "reports", (double)j->reports);
	json_kv_num(b, "samples_total", job_value(j, JV_SAMPLES));
	json_kv_num(b, "raw_bytes_total", job_value(j, JV_RAW));
	json_kv_num(b, "wire_bytes_total", job_value(j, JV_WIRE));
	json_kv_num(b, "encode_seconds_total", job_value(j, JV_ENC));
	json_kv_num(b, "decode_seconds_total", job_value(j, JV_DEC));
	json_kv_num(b, "comm_seconds_total", job_value(j, JV_COMM));
	json_key(b, "layers", 0);
	sfp_strbuf_append(b, "[", 1);
	for (uint32_t l = 0; l < j->n_layers; l++) {
		sfp_strbuf_puts(b, l ? ",{\"layer\":" : "{\"layer\":");
		sfp_strbuf_json_str(b, j->layers[l].name);
		sfp_strbuf_puts(b, ",\"kinds\":[");
		int n = 0;
		for (int k = 0; k < SFP_STATS_KINDS; k++)
			if (j->layers[l].k[k].present) {
				sfp_strbuf_puts(b, n++ ? "," : "");
				sfp_strbuf_json_str(b, sfp_stats_kind_name((sfp_stats_kind)k));
			}
		sfp_strbuf_puts(b, "]}");
	}
	sfp_strbuf_append(b, "]", 1);
	json_key(b, "drops", 0);
	for (int r = 0; r < SFP_STATS_DROPS; r++)
		sfp_strbuf_printf(b, "%s\"%s\":%llu", r ? "," : "{",
		                  sfp_stats_drop_name((sfp_stats_drop)r),
		                  (unsigned long long)s->drops[r]);
	sfp_strbuf_append(b, "}", 1);
	json_kv_num(b, "max_points", s->o.max_points);
	json_kv_num(b, "stride", (double)j->se.stride);
	json_kv_num(b, "since", (double)since);
	json_job_series(j, since, b);
	sfp_strbuf_append(b, "}", 1);
	return b->err;
}

int sfp_stats_render_workers(const sfp_stats *s, const char *name, uint64_t now_ns, sfp_strbuf *b,
                             sfp_error *err)
{
	const stats_job *j = stats_pick_job(s, name);
	if (!j)
		return no_job(name, b, "{\"job\":null,\"workers\":[]}", err);
	sfp_strbuf_puts(b, "{\"job\":");
	sfp_strbuf_json_str(b, j->name);
	sfp_strbuf_puts(b, ",\"workers\":[");
	int n = 0;
	for (uint32_t i = 0; i < j->n_workers; i++) {
		const stats_worker *w = j->workers[i];
		sfp_strbuf_printf(b, "%s{\"rank\":%u,\"replica\":%u,\"stage\":%u,\"layers\":%u,",
		                  n++ ? "," : "", w->rank, w->replica, w->stage, w->n_layers);
		sfp_strbuf_puts(b, "\"state\":");
		sfp_strbuf_json_str(b, sfp_stats_state_name(w->state));
		json_kv_num(b, "step", w->step < 0 ? NAN : (double)w->step);
		json_kv_num(b, "loss", w->loss);
		json_kv_num(b, "reports", (double)w->reports);
		/* a worker known only from the history file has no time here */
		json_kv_num(b, "last_seen_seconds_ago",
		            w->state == SFP_WORKER_STALE || now_ns < w->last_seen_ns
		                ? NAN
		                : (double)(now_ns - w->last_seen_ns) * 1e-9);
		json_kv_num(b, "samples_total", (double)w->total[COUNTER_SAMPLES]);
		json_kv_num(b, "raw_bytes_total", (double)w->total[COUNTER_RAW]);
		json_kv_num(b, "wire_bytes_total", (double)w->total[COUNTER_WIRE]);
		json_kv_num(b, "encode_seconds_total", (double)w->total[COUNTER_ENC] * 1e-9);
		json_kv_num(b, "decode_seconds_total", (double)w->total[COUNTER_DEC] * 1e-9);
		json_kv_num(b, "comm_seconds_total", (double)w->total[COUNTER_COMM] * 1e-9);
		sfp_strbuf_append(b, "}", 1);
	}
	sfp_strbuf_puts(b, "]}");
	return b->err;
}

static double width_column(const void *point, int c)
{
	const width_point *p = point;
	switch (c) {
	case 0: return (double)p->h.step;
	case 1: return p->e;
	case 2: return p->m;
	case 3: return p->n_e_n ? p->n_e_sum / p->n_e_n : NAN;
	default: return p->n_m_n ? p->n_m_sum / p->n_m_n : NAN;
	}
}

static const char *const width_columns[] = {"step", "e", "m", "n_e", "n_m"};

static void json_width(const stats_layer *l, int k, int64_t since, sfp_strbuf *b)
{
	const kind_state *ks = &l->k[k];
	sfp_strbuf_puts(b, "{\"layer\":");
	sfp_strbuf_json_str(b, l->name);
	sfp_strbuf_puts(b, ",\"kind\":");
	sfp_strbuf_json_str(b, sfp_stats_kind_name((sfp_stats_kind)k));
	json_kv_num(b, "values", (double)ks->count);
	json_kv_num(b, "e", ks->e);
	json_kv_num(b, "m", ks->m);
	json_kv_num(b, "n_e", ks->n_e);
	json_kv_num(b, "n_m", ks->n_m);
	json_kv_num(b, "stride", (double)ks->se.stride);
	json_series(&ks->se, since, width_columns,
		    (int)(sizeof width_columns / sizeof width_columns[0]), width_column, b);
	sfp_strbuf_append(b, "}", 1);
}

int sfp_stats_render_bitlengths(const sfp_stats *s, const char *name, const char *layer_name,
                                int64_t since, sfp_strbuf *b, sfp_error *err)
{
	const stats_job *j = stats_pick_job(s, name);
	if (!j)
		return no_job(name, b, "{\"job\":null,\"layers\":[]}", err);
	int one = layer_name && *layer_name, found = 0, n = 0;
	sfp_strbuf_puts(b, "{\"job\":");
	sfp_strbuf_json_str(b, j->name);
	sfp_strbuf_printf(b, ",\"since\":%lld,\"layers\":[", (long long)since);
	for (uint32_t l = 0; l < j->n_layers; l++) {
		if (one && strcmp(j->layers[l].name, layer_name))
			continue;
		found = 1;
		for (int k = 0; k < SFP_STATS_KINDS; k++) {
			if (!j->layers[l].k[k].present)
				continue;
			if (n++)
				sfp_strbuf_append(b, ",", 1);
			json_width(&j->layers[l], k, since, b);
		}
	}
	sfp_strbuf_puts(b, "]}");
	if (one && !found)
		return sfp_error_set(err, SFP_ENOENT, "job '%s' has no layer '%s'", j->name,
		                     layer_name);
	return b->err;
}
