/*
 * coord_link.c -- the trainer's side of the coordinator daemon (design.md
 * §3 step 6): register at start, report every daemon.report_every steps,
 * apply the widths the daemon answers, say goodbye at the end.
 *
 * The daemon is for monitoring and for the job-wide width decisions; the
 * training never depends on it. A daemon that is not there, dies or hangs
 * costs at most daemon.timeout_s per attempt, and attempts back off (after
 * k failures in a row the next k reports are skipped, up to 64) while nng
 * keeps redialling in the background; the job trains on with the widths it
 * has. Widths from the daemon are applied so that every replica stays equal:
 *  - quantum: each rank takes the mean the daemon sent for its stage, then
 *    the replicas average what they took (sfp_dist_sync_widths);
 *  - bitwave: rank 0's answer is summed over the job (only rank 0 puts a
 *    value in) and applied by every rank at the same step; from the first
 *    such answer on, the local BitWave controller stops deciding.
 * Both are collective: every rank runs them at every report step, whether
 * or not its own exchange with the daemon worked.
 */
#include <inttypes.h>
#include <math.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "train/train_internal.h"
#include "sfp/coord.h"

static void notice(sfp_trainer *t, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
static void notice(sfp_trainer *t, const char *fmt, ...)
{
	if (!t->on_notice)
		return;
	char msg[320];
	va_list ap;
	va_start(ap, fmt);
	vsnprintf(msg, sizeof msg, fmt, ap);
	va_end(ap);
	t->on_notice(t->notice_user, msg);
}

static int rank_of(const sfp_trainer *t)
{
	return t->dist ? t->dist->rank : 0;
}

/* A failed exchange: say so once per outage, back off. */
static void failed(sfp_trainer *t, const sfp_error *err)
{
	sfp_coord_link *l = &t->link;
	if (!l->failures && !l->closing)
		notice(t, "%s; training on with the current widths", err->msg);
	l->failures++;
	l->skip = l->failures < 64 ? l->failures : 64;
}

static void succeeded(sfp_trainer *t)
{
	sfp_coord_link *l = &t->link;
	if (l->failures)
		notice(t, "daemon: reachable again at %s", t->cfg.daemon.address);
	l->failures = 0;
	l->skip = 0;
}

static int do_register(sfp_trainer *t, sfp_error *err)
{
	sfp_coord_link *l = &t->link;
	sfp_model *m = t->model;
	const int nt = sfp_model_n_qtensors(m);
	sfp_coord_tensor *ts = calloc((size_t)nt + 1, sizeof *ts);
	if (!ts)
		return sfp_error_set(err, SFP_ENOMEM, "out of memory");
	for (int k = 0; k < nt; k++) {
		sfp_qtensor_info qi;
		sfp_model_qtensor(m, k, &qi);
		snprintf(ts[k].layer, sizeof ts[k].layer, "%s", qi.layer);
		snprintf(ts[k].kind, sizeof ts[k].kind, "%s", qi.kind);
		ts[k].count = qi.count;
	}
	const sfp_dist *d = t->dist;
	sfp_coord_hello h = {.rank = rank_of(t),
			     .world = d ? d->world : 1,
			     .replica = d ? d->replica : 0,
			     .stage = d ? d->stage : 0,
			     .n_tensors = nt,
			     .tensors = ts,
			     .pid = (int)getpid(),
			     .bitwave = t->bw.cfg,
			     .report_every = t->cfg.daemon.report_every};
	snprintf(h.job, sizeof h.job, "%s", t->cfg.daemon.job[0] ? t->cfg.daemon.job : "sfp");
	snprintf(h.policy, sizeof h.policy, "%s",
		 t->policy == SFP_QPOLICY_QUANTUM   ? "quantum"
		 : t->policy == SFP_QPOLICY_BITWAVE ? "bitwave"
		 : t->policy == SFP_QPOLICY_FIXED   ? "fixed"
						    : "off");
	gethostname(h.host, sizeof h.host - 1);
	int rc = sfp_coord_register(l->c, &h, err);
	free(ts);
	l->registered = rc == SFP_OK;
	return rc;
}

int sfp_coord_link_open(sfp_trainer *t, sfp_error *err)
{
	const sfp_cfg_daemon *dc = &t->cfg.daemon;
	if (!dc->address[0])
		return SFP_OK;
	const char *token = dc->token[0] ? dc->token : getenv("SFP_TOKEN");
	SFP_TRY(sfp_coord_connect(&t->link.c, dc->address, token ? token : "", dc->timeout_s,
				  err));
	sfp_error e2;
	if (do_register(t, &e2) < 0)
		failed(t, &e2);
	else
		notice(t, "daemon: registered at %s as job '%s'", dc->address,
		       dc->job[0] ? dc->job : "sfp");
	return SFP_OK;
}

/* Report the step, loss and samples kept in l->last_* to the daemon; *upd
 * gets its answer (valid = 0 if none). */
static void exchange(sfp_trainer *t, sfp_coord_update *upd, sfp_coord_width *widths)
{
	sfp_coord_link *l = &t->link;
	upd->valid = 0;
	if (!l->c)
		return;
	if (l->skip > 0) {
		l->skip--;
		return;
	}
	sfp_error err;
	if (!l->registered && do_register(t, &err) < 0) {
		failed(t, &err);
		return;
	}
	sfp_model *m = t->model;
	const int nt = sfp_model_n_qtensors(m);
	for (int k = 0; k < nt; k++) {
		sfp_qtensor_info qi;
		sfp_model_qtensor(m, k, &qi);
		widths[k] = (sfp_coord_width){qi.n_e, qi.n_m, qi.e, qi.m, 0.0f, 0.0f};
	}
	double bw, ba, cw, ca;
	sfp_model_footprint(m, &bw, &ba, &cw, &ca);
	sfp_coord_traffic tr[WIRE_KINDS];
	int ntr = 0;
	if (t->dist) {
		static const char *const kinds[WIRE_KINDS] = {"gradients", "activations",
							      "activation_gradients"};
		for (int k = 0; k < WIRE_KINDS; k++) {
			const sfp_wire_stats *w = &t->dist->ws[k];
			if (w->messages)
				tr[ntr++] = (sfp_coord_traffic){kinds[k], w->raw_bytes, w->wire_bytes,
								w->encode_ns, w->decode_ns, w->comm_ns};
		}
	}
	sfp_coord_report r = {.rank = rank_of(t),
			      .step = l->last_step,
			      .loss = l->last_loss,
			      .samples = l->last_samples,
			      .n_widths = nt,
			      .widths = widths,
			      .footprint_bits = cw + ca > 0 ? (bw + ba) / (cw + ca) : 32.0,
			      .n_traffic = ntr,
			      .traffic = tr};
	snprintf(r.job, sizeof r.job, "%s", t->cfg.daemon.job[0] ? t->cfg.daemon.job : "sfp");
	upd->widths = widths;
	upd->cap = nt;
	if (sfp_coord_send_report(l->c, &r, upd, &err) < 0) {
		failed(t, &err);
		upd->valid = 0;
		return;
	}
	succeeded(t);
	l->answered_step = l->last_step;
	if (upd->valid && !upd->set_all && upd->n_widths != nt)
		upd->valid = 0; /* not for this model: ignore */
}

int sfp_coord_link_step(sfp_trainer *t, double loss, uint64_t samples, sfp_error *err)
{
	const int every = t->cfg.daemon.report_every > 0 ? t->cfg.daemon.report_every : 10;
	if (!t->cfg.daemon.address[0] || t->step % every != 0)
		return SFP_OK;
	sfp_model *m = t->model;
	const int nt = sfp_model_n_qtensors(m);
	sfp_coord_width *widths = calloc((size_t)nt + 1, sizeof *widths);
	if (!widths)
		return sfp_error_set(err, SFP_ENOMEM, "out of memory");
	sfp_coord_update u = {0};
	t->link.last_step = t->step;
	t->link.last_loss = loss;
	t->link.last_samples = samples;
	exchange(t, &u, widths);
	int rc = SFP_OK;
	if (t->policy == SFP_QPOLICY_QUANTUM) {
		if (u.valid && !u.set_all) {
			float *w = malloc((size_t)2 * nt * sizeof *w);
			if (w) {
				for (int k = 0; k < nt; k++) {
					w[2 * k] = widths[k].n_e;
					w[2 * k + 1] = widths[k].n_m;
				}
				sfp_model_widths_load(m, w, 2 * nt);
				free(w);
			}
		}
		if (t->dist)
			rc = sfp_dist_sync_widths(t, err);
	} else if (t->policy == SFP_QPOLICY_BITWAVE) {
		double v[3] = {0.0, 0.0, 0.0};
		if (rank_of(t) == 0 && u.valid && u.set_all)
			v[0] = 1.0, v[1] = u.e, v[2] = u.m;
		if (t->dist)
			rc = sfp_dist_allreduce_world(t, v, 3, err);
		if (rc == SFP_OK && v[0] > 0.5 && sfp_bitwave_live(t)) {
			t->bw.e = (unsigned)v[1];
			t->bw.m = (unsigned)v[2];
			sfp_model_set_widths(m, t->bw.e, t->bw.m);
			t->link.steers = 1;
		}
	}
	free(widths);
	return rc;
}

/*
 * At the end: the newest report again if the daemon never answered it (a
 * timeout under load, or skipped while backing off), so the daemon ends
 * with the job's last step; then the goodbye. Both are tried even after
 * failures (each costs at most daemon.timeout_s); the answer's widths are
 * not applied, training is over.
 */
void sfp_coord_link_close(sfp_trainer *t, int ok)
{
	sfp_coord_link *l = &t->link;
	if (!l->c)
		return;
	int reachable = 1;
	if (l->registered && l->last_step > l->answered_step) {
		const int nt = sfp_model_n_qtensors(t->model);
		sfp_coord_width *widths = calloc((size_t)nt + 1, sizeof *widths);
		if (widths) {
			sfp_coord_update u = {0};
			l->skip = 0;
			l->closing = 1;
			exchange(t, &u, widths);
			reachable = l->failures == 0;
			free(widths);
		}
	}
	if (l->registered && reachable)
		(void)sfp_coord_goodbye(l->c, t->cfg.daemon.job[0] ? t->cfg.daemon.job : "sfp",
					rank_of(t), t->step, ok, NULL);
	sfp_coord_close(l->c);
	l->c = NULL;
}

void sfp_coord_link_heartbeat(sfp_trainer *t)
{
	sfp_coord_link *l = &t->link;
	if (!l->c || !l->registered || l->skip > 0)
		return;
	sfp_error err;
	if (sfp_coord_heartbeat(l->c, t->cfg.daemon.job[0] ? t->cfg.daemon.job : "sfp", rank_of(t),
				t->step, &err) < 0)
		failed(t, &err);
}
