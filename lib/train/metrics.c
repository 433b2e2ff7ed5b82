/*
 * metrics.c -- the JSON-lines metrics log (design.md §4, docs/metrics.md):
 * one record a line, every record with "step"; training, evaluation,
 * fine-tune, width, footprint, communication and checkpoint records. Only
 * the writer rank (rank 0) has the log open; the others' calls write
 * nothing. Strings from the config or the file system (layer names, paths)
 * are escaped as JSON strings.
 */
#include <errno.h>
#include <inttypes.h>
#include <math.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "sfp/stats.h"
#include "train/train_internal.h"

int sfp_metrics_open(sfp_trainer *t, sfp_error *err)
{
	const char *path = t->cfg.log.metrics;
	if (!path[0])
		return SFP_OK;
	if (!(t->metrics = fopen(path, "a")))
		return sfp_error_set(err, SFP_EIO, "cannot open metrics log '%s': %s", path,
				     strerror(errno));
	return SFP_OK;
}

void sfp_metrics_close(sfp_trainer *t)
{
	if (t->metrics)
		fclose(t->metrics);
	t->metrics = NULL;
}

/* Append one JSON line; a failed write (e.g. a full disk) is an error, and
 * the log is cut back to its last whole record and closed, so what is left
 * parses and nothing half-written is flushed later. */
__attribute__((format(printf, 3, 4))) static int metrics_write(sfp_trainer *t, sfp_error *err,
							      const char *fmt, ...)
{
	if (!t->metrics)
		return SFP_OK;
	struct stat st; /* flushed after every record: the file's size is where this one starts */
	const off_t start = fstat(fileno(t->metrics), &st) == 0 ? st.st_size : -1;
	va_list ap;
	va_start(ap, fmt);
	int w = vfprintf(t->metrics, fmt, ap);
	va_end(ap);
	if (w >= 0 && fputc('\n', t->metrics) != EOF && fflush(t->metrics) == 0)
		return SFP_OK;
	const int e = errno;
	fclose(t->metrics); /* may write part of the record again: cut after it */
	t->metrics = NULL;
	if (start >= 0)
		(void)truncate(t->cfg.log.metrics, start);
	return sfp_error_set(err, e == ENOSPC ? SFP_ENOSPC : SFP_EIO,
			     "cannot write metrics log '%s': %s", t->cfg.log.metrics, strerror(e));
}

/* The bytes a JSON literal of a string of n bytes may take: every byte
 * escaped (\u00XX), two quotes, the NUL. */
#define JSON_STR_CAP(n) (6 * (size_t)(n) + 3)

/* `s` as a JSON string literal, quotes included, into buf; with cap >=
 * JSON_STR_CAP(strlen(s)) it always fits (else it is written as ""). */
static const char *json_str(char *buf, size_t cap, const char *s)
{
	sfp_strbuf b;
	sfp_strbuf_init_fixed(&b, buf, cap);
	sfp_strbuf_json_str(&b, s);
	if (b.err) {
		sfp_strbuf_init_fixed(&b, buf, cap);
		sfp_strbuf_puts(&b, "\"\"");
	}
	return buf;
}

int sfp_metrics_train(sfp_trainer *t, const sfp_progress *p, sfp_error *err)
{
	return metrics_write(t, err,
			     "{\"step\":%" PRId64 ",\"epoch\":%" PRId64
			     ",\"loss\":%.6f,\"train_acc\":%.6f,\"lr\":%.6g,\"samples_per_s\":%.1f}",
			     p->step, p->epoch, p->loss, p->train_acc, p->lr, p->samples_per_s);
}

int sfp_metrics_prune(sfp_trainer *t, const sfp_progress *p, const sfp_prune_summary *ps,
		      sfp_error *err)
{
	return metrics_write(t, err,
			     "{\"step\":%" PRId64 ",\"prune_loss\":%.6f,\"train_acc\":%.6f,"
			     "\"bits_per_weight\":%.4f,\"bits_per_layer\":%.4f,"
			     "\"bits_per_mac\":%.4f,\"act_bits_per_value\":%.4f,"
			     "\"bit_ops_per_mac\":%.3f}",
			     p->step, p->loss, p->train_acc, ps->w_per_weight, ps->w_per_layer,
			     ps->w_per_mac, ps->a_per_value, ps->bit_ops_per_mac);
}

int sfp_metrics_eval(sfp_trainer *t, int64_t epoch, float acc, float loss, sfp_error *err)
{
	if (t->tokens) /* held-out loss in nats per token, its perplexity, top-1 per token */
		return metrics_write(t, err,
				     "{\"step\":%" PRId64 ",\"epoch\":%" PRId64
				     ",\"val_loss\":%.6f,\"val_ppl\":%.4f,\"test_acc\":%.6f}",
				     t->step, epoch, loss, exp((double)loss), acc);
	return metrics_write(t, err,
			     "{\"step\":%" PRId64 ",\"epoch\":%" PRId64
			     ",\"test_acc\":%.6f,\"test_loss\":%.6f}",
			     t->step, epoch, acc, loss);
}

int sfp_metrics_checkpoint(sfp_trainer *t, const char *path, sfp_error *err)
{
	char q[JSON_STR_CAP(SFP_CFG_PATH + 64)];
	return metrics_write(t, err, "{\"step\":%" PRId64 ",\"checkpoint\":%s}", t->step,
			     json_str(q, sizeof q, path));
}

/* A pipeline stage's activation memory (once, at the start of a run). */
int sfp_metrics_stage_memory(sfp_trainer *t, const char *schedule, int stage, int slots,
			     uint64_t inputs, uint64_t activations, sfp_error *err)
{
	return metrics_write(t, err,
			     "{\"step\":%" PRId64 ",\"stage\":%d,\"schedule\":\"%s\","
			     "\"micro_batches\":%d,\"inputs_kept\":%d,\"stage_input_bytes\":%" PRIu64
			     ",\"activation_bytes\":%" PRIu64 ",\"peak_activation_bytes\":%" PRIu64 "}",
			     t->step, stage, schedule, t->dist->micro, slots, inputs, activations,
			     inputs + activations);
}

/* A container's width record, as pipeline stages send them to the writer. */
typedef struct width_rec {
	char layer[SFP_CFG_NAME];
	char kind[16];
	uint32_t e, m;
	float n_e, n_m;
	uint64_t count, stash_bytes;
} width_rec;

enum { FOOT_N = 12 }; /* bits and values of weights and activations, memory, tensors */

/* This process's records and footprint terms (foot[11]: its containers). */
static int local_widths(sfp_trainer *t, width_rec *r, int *n, double foot[FOOT_N], sfp_error *err)
{
	*n = sfp_model_n_qtensors(t->model);
	memset(foot, 0, FOOT_N * sizeof(double));
	if (!*n)
		return SFP_OK;
	for (int k = 0; k < *n; k++) {
		sfp_qtensor_info qi;
		sfp_model_qtensor(t->model, k, &qi);
		r[k] = (width_rec){.e = qi.e, .m = qi.m, .n_e = qi.n_e, .n_m = qi.n_m,
				   .count = qi.count, .stash_bytes = qi.stash_bytes};
		snprintf(r[k].layer, sizeof r[k].layer, "%s", qi.layer);
		snprintf(r[k].kind, sizeof r[k].kind, "%s", qi.kind);
	}
	sfp_model_footprint(t->model, &foot[0], &foot[1], &foot[2], &foot[3]);
	SFP_TRY(sfp_model_packed_bits(t->model, 0, &foot[4], &foot[5], err));
	SFP_TRY(sfp_model_packed_bits(t->model, 1, &foot[6], &foot[7], err));
	sfp_model_mem mem;
	sfp_model_memory(t->model, &mem);
	foot[8] = (double)mem.total;
	foot[9] = (double)mem.activations;
	foot[10] = (double)mem.stash;
	foot[11] = *n;
	return SFP_OK;
}

/* One record per container: layer, kind, packing widths and the learned
 * real widths; then the footprint. Pipeline stages: every stage's
 * containers, and the footprint of the whole model (the stages' sums; the
 * packed stash and memory as the replicas' mean). */
int sfp_metrics_widths(sfp_trainer *t, sfp_error *err)
{
	enum { CAP = 2 * SFP_CFG_MAX_LAYERS };
	const int staged = t->dist && t->dist->stages > 1;
	if (!staged && (!t->metrics || !sfp_model_n_qtensors(t->model)))
		return SFP_OK;
	width_rec *r = malloc(CAP * sizeof *r);
	if (!r)
		return sfp_error_set(err, SFP_ENOMEM, "out of memory");
	double f[FOOT_N];
	int n = 0, rc = local_widths(t, r, &n, f, err);
	if (rc == SFP_OK && staged) {
		rc = sfp_dist_allreduce_world(t, f, FOOT_N, err);
		for (int i = 0; i < FOOT_N; i++)
			f[i] /= t->dist->replicas;
		if (rc == SFP_OK && f[11] > 0)
			rc = sfp_dist_gather_stages(t, r, sizeof *r, &n, CAP, err);
	}
	for (int k = 0; rc == SFP_OK && t->metrics && f[11] > 0 && k < n; k++) {
		char name[JSON_STR_CAP(SFP_CFG_NAME)], kind[JSON_STR_CAP(16)];
		r[k].layer[SFP_CFG_NAME - 1] = r[k].kind[sizeof r[k].kind - 1] = 0;
		rc = metrics_write(t, err,
				   "{\"step\":%" PRId64 ",\"layer\":%s,\"kind\":%s,\"e\":%u,"
				   "\"m\":%u,\"n_e\":%.4f,\"n_m\":%.4f,\"count\":%" PRIu64
				   ",\"stash_bytes\":%" PRIu64 "}",
				   t->step, json_str(name, sizeof name, r[k].layer),
				   json_str(kind, sizeof kind, r[k].kind),
				   r[k].e, r[k].m, (double)r[k].n_e, (double)r[k].n_m, r[k].count,
				   r[k].stash_bytes);
	}
	free(r);
	if (rc != SFP_OK || !t->metrics || f[11] <= 0)
		return rc;
	const double bw = f[0], ba = f[1], cw = f[2], ca = f[3], pw = f[4], pa = f[5], gw = f[6],
		     ga = f[7], nv = cw + ca;
	return metrics_write(t, err,
			     "{\"step\":%" PRId64 ",\"footprint_bits_per_value\":%.4f,"
			     "\"weights_bits_per_value\":%.4f,\"activations_bits_per_value\":%.4f,"
			     "\"reduction_vs_fp32\":%.4f,\"packed_bits_per_value\":%.4f,"
			     "\"packed_reduction_vs_fp32\":%.4f,\"gecko_bits_per_value\":%.4f,"
			     "\"gecko_reduction_vs_fp32\":%.4f,\"model_bytes\":%.0f,"
			     "\"activation_bytes\":%.0f,\"stash_alloc_bytes\":%.0f}",
			     t->step, (bw + ba) / nv, cw ? bw / cw : 0.0, ca ? ba / ca : 0.0,
			     32.0 * nv / (bw + ba), (pw + pa) / nv, 32.0 * nv / (pw + pa),
			     (gw + ga) / nv, 32.0 * nv / (gw + ga), f[8], f[9], f[10]);
}

/* One communication record per tensor kind that moved: per-step means over
 * the interval, summed over every rank; the gradients' record adds the
 * time a step waited for their exchange (per rank). */
int sfp_metrics_traffic(sfp_trainer *t, const sfp_wire_stats *ws, double exposed_ms,
			int64_t steps, sfp_error *err)
{
	static const char *const kinds[WIRE_KINDS] = {"gradients", "activations",
						      "activation_gradients"};
	char ex[48];
	snprintf(ex, sizeof ex, ",\"exposed_comm_ms\":%.3f", exposed_ms);
	for (int k = 0; k < WIRE_KINDS; k++) {
		const sfp_wire_stats *w = &ws[k];
		if (!w->messages)
			continue;
		const double s = (double)steps;
		SFP_TRY(metrics_write(t, err,
				      "{\"step\":%" PRId64 ",\"kind\":\"%s\",\"raw_bytes\":%.0f,"
				      "\"wire_bytes\":%.0f,\"messages\":%.1f,\"encode_ms\":%.3f,"
				      "\"decode_ms\":%.3f,\"comm_ms\":%.3f%s}",
				      t->step, kinds[k], (double)w->raw_bytes / s,
				      (double)w->wire_bytes / s, (double)w->messages / s,
				      (double)w->encode_ns * 1e-6 / s, (double)w->decode_ns * 1e-6 / s,
				      (double)w->comm_ns * 1e-6 / s, k == WIRE_GRADS ? ex : ""));
	}
	return SFP_OK;
}
