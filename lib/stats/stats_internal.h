/*
 * stats_internal.h -- the store's structures, shared by the ingestion
 * (stats.c), the series (series.c), the history file (history.c) and the
 * renderers (render.c). Nothing here is part of the public interface.
 */
#ifndef SFP_STATS_INTERNAL_H
#define SFP_STATS_INTERNAL_H

#include <stdio.h>

#include "sfp/stats.h"

/* ---- series: bounded, downsampled lists of points by step ----------------- */
/* Every point starts with this header; the rest is the series' own fields. */
typedef struct point_hdr {
	int64_t step;
	uint64_t arrival; /* index of the distinct step that made this point */
} point_hdr;

typedef struct series {
	unsigned char *pts; /* len points of esz bytes, steps increasing */
	uint32_t esz;
	uint32_t len, cap, max;
	uint64_t stride;   /* points kept are arrivals that are multiples of this */
	uint64_t arrivals; /* distinct steps seen */
	uint64_t late;     /* points for a step no longer held (decimated or older) */
} series;

/* Merge src (same step) into dst, both of the series' point type. */
typedef void (*point_merge_fn)(void *dst, const void *src);

void series_init(series *se, uint32_t esz, uint32_t max);
void series_release(series *se, uint64_t *bytes);
/* Add a point for p->step (p's arrival is set here); merges into an
 * existing point of the same step. Grows up to max, then downsamples.
 * SFP_ENOMEM leaves the series as it was. */
int series_add(series *se, void *p, point_merge_fn merge, uint64_t *bytes);
static inline void *series_at(const series *se, uint32_t i)
{
	return se->pts + (size_t)i * se->esz;
}
/* First index with step >= since. */
uint32_t series_lower_bound(const series *se, int64_t since);
/* Bytes a full series of this point size occupies. */
uint64_t series_bytes_max(uint32_t esz, uint32_t max);

/* A job's point: means over the ranks that reported this step, and the
 * job's counter totals when it was last merged. */
typedef struct job_point {
	point_hdr h;
	double loss_sum, fp_sum;
	uint32_t loss_n, fp_n;
	double samples, raw_bytes, wire_bytes;
} job_point;

/* A (layer, kind)'s point: widest packing widths, mean learned widths. */
typedef struct width_point {
	point_hdr h;
	float n_e_sum, n_m_sum;
	uint16_t n_e_n, n_m_n;
	uint8_t e, m;
} width_point;

/* ---- the objects ----------------------------------------------------------- */
enum {
	COUNTER_SAMPLES,
	COUNTER_RAW,
	COUNTER_WIRE,
	COUNTER_ENC,
	COUNTER_DEC,
	COUNTER_COMM,
	COUNTERS
};

typedef struct worker {
	uint32_t rank, replica, stage, n_layers;
	sfp_stats_state state;
	uint64_t registered_ns, last_seen_ns;
	uint64_t reports;
	int64_t step;
	double loss;
	uint64_t last[COUNTERS];  /* the worker's own counters as last reported */
	uint64_t total[COUNTERS]; /* monotonic across the worker's restarts */
} stats_worker;

typedef struct kind_state {
	int present;
	uint32_t e, m;
	float n_e, n_m;
	uint64_t count;
	int64_t step;
	series se; /* of width_point */
} kind_state;

typedef struct layer {
	char name[SFP_STATS_NAME_MAX + 1];
	kind_state k[SFP_STATS_KINDS];
} stats_layer;

typedef struct job {
	char name[SFP_STATS_NAME_MAX + 1];
	stats_worker **workers; /* n_workers, sorted by rank, room for max_workers */
	uint32_t n_workers;
	stats_layer *layers; /* n_layers of cap_layers */
	uint32_t n_layers, cap_layers;
	int64_t step; /* newest step reported, -1 before any */
	double loss, footprint;
	uint64_t reports;
	uint64_t total[COUNTERS];
	uint64_t active_seq; /* store's sequence number at its last report or register */
	series se;           /* of job_point */
} stats_job;

struct sfp_stats {
	sfp_stats_opts o;
	stats_job *jobs;
	uint32_t n_jobs;
	uint64_t seq;
	uint64_t drops[SFP_STATS_DROPS];
	uint64_t jobs_evicted; /* finished jobs dropped to make room for new ones */
	uint64_t bytes; /* memory held (series, objects) */
	/* history file */
	int fd;
	char *path;
	int dirty;     /* appended since the last sync */
	int replaying; /* applying the file: do not append */
	uint64_t write_errors;
	uint64_t file_bytes;
	sfp_stats_recovery rec;
	unsigned char *rbuf; /* record encoding scratch */
	size_t rbuf_cap;
};

/* ---- shared between the files -------------------------------------------- */
stats_job *stats_find_job(const sfp_stats *s, const char *name);
/* Index of the first worker with rank >= rank. */
uint32_t stats_worker_index(const stats_job *j, uint32_t rank);
/* The job for a renderer: name NULL/"" is the most recently active. */
const stats_job *stats_pick_job(const sfp_stats *s, const char *name);
int stats_name_ok(const char *name);

/* history.c */
#define HIST_MAGIC "SFPHIST\n"
#define HIST_VERSION 1u
#define HIST_HEADER_BYTES 16
#define HIST_REC_MAGIC 0x52504653u /* "SFPR" little-endian */
#define HIST_REC_HEADER 12
#define HIST_REC_MAX ((uint32_t)1 << 20)
enum { REC_REGISTER = 1, REC_REPORT = 2, REC_GOODBYE = 3 };

int history_open(sfp_stats *s, const char *path, sfp_error *err);
void history_close(sfp_stats *s);
void history_sync(sfp_stats *s);
int history_append_register(sfp_stats *s, const char *job, uint32_t rank, uint32_t replica,
                            uint32_t stage, uint32_t n_layers, const char *const *names);
int history_append_report(sfp_stats *s, const sfp_worker_report *r);
int history_append_goodbye(sfp_stats *s, const char *job, uint32_t rank);

/* stats.c: the appliers, shared by the public calls and the replay */
int stats_apply_register(sfp_stats *s, const char *job, uint32_t rank, uint32_t replica,
                         uint32_t stage, uint32_t n_layers, const char *const *names,
                         uint64_t now_ns, sfp_error *err);
int stats_apply_report(sfp_stats *s, const sfp_worker_report *r, uint64_t now_ns, sfp_error *err);
int stats_apply_goodbye(sfp_stats *s, const char *job, uint32_t rank, uint64_t now_ns);

#endif
