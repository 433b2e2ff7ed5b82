/*
 * simulate.c -- SIMULATION ONLY. `sfpd --simulate N` starts N fake workers
 * of a job named "simulation" that report made-up, plausible numbers: a
 * loss that decays, learned widths that shrink from float32 towards a few
 * bits per layer, byte counters that grow. Nothing is trained or measured.
 *
 * The fake workers go through sfp_stats_register and sfp_stats_report
 * exactly as the protocol's workers will, so the page, /metrics, the JSON
 * API and the history file can be tried and tested without the worker
 * protocol or a training run. A restarted daemon with the same history
 * continues the simulation from the step it had recovered.
 */
#include <math.h>
#include <stdlib.h>

#include "daemon/sfpd.h"

#define SIM_JOB "simulation"
#define SIM_STEPS_PER_REPORT 10
#define SIM_MAX_WORKERS 64

/* A small CNN's tensors: which layer, which kind, how many values, and the
 * widths its learned bitlengths settle at. */
static const struct {
	const char *layer;
	sfp_stats_kind kind;
	uint64_t count;
	double e_end, m_end, tau_steps;
} tensors[] = {
    {"conv1", SFP_STATS_WEIGHTS, 800, 4.6, 3.4, 3000},
    {"relu1", SFP_STATS_ACTIVATIONS, 147456, 3.4, 1.3, 2000},
    {"conv2", SFP_STATS_WEIGHTS, 51200, 4.2, 2.2, 4000},
    {"relu2", SFP_STATS_ACTIVATIONS, 36864, 3.6, 1.6, 2500},
    {"fc1", SFP_STATS_WEIGHTS, 401408, 3.8, 1.7, 5000},
    {"fc1", SFP_STATS_ACTIVATIONS, 8192, 4.4, 2.6, 3500},
    {"fc2", SFP_STATS_WEIGHTS, 1280, 4.9, 3.8, 6000},
};
#define SIM_TENSORS (sizeof tensors / sizeof tensors[0])
static const char *const layer_names[] = {"conv1", "relu1", "conv2", "relu2", "fc1", "fc2"};

struct sfpd_sim {
	uv_timer_t timer;
	sfpd *d;
	unsigned n;
	int64_t step;
	sfp_rng rng;
	uint64_t raw, wire, enc, dec, comm; /* each fake worker's counters */
	sfp_stats_width w[SIM_TENSORS];
};

static double jitter(sfp_rng *r, double scale)
{
	return scale * ((double)sfp_rng_uniform(r) - 0.5);
}

/* From float32's 8 and 23 bits towards the tensor's end widths. */
static void widths_at(sfpd_sim *sim, unsigned rank)
{
	double t = (double)sim->step;
	for (size_t i = 0; i < SIM_TENSORS; i++) {
		double f = exp(-t / tensors[i].tau_steps);
		double ne =
		    tensors[i].e_end + (8.0 - tensors[i].e_end) * f + jitter(&sim->rng, 0.1);
		double nm =
		    tensors[i].m_end + (23.0 - tensors[i].m_end) * f + jitter(&sim->rng, 0.2);
		sfp_stats_width *w = &sim->w[i];
		w->layer = tensors[i].layer;
		w->kind = tensors[i].kind;
		w->n_e = (float)fmin(8.0, fmax(1.0, ne));
		w->n_m = (float)fmin(23.0, fmax(0.0, nm));
		w->e = (uint32_t)ceil(w->n_e);
		w->m = (uint32_t)ceil(w->n_m);
		w->count = tensors[i].count;
	}
	(void)rank;
}

static double footprint(const sfpd_sim *sim)
{
	double bits = 0, n = 0;
	for (size_t i = 0; i < SIM_TENSORS; i++) {
		bits += (double)sim->w[i].count * (1.0 + sim->w[i].e + sim->w[i].m);
		n += (double)sim->w[i].count;
	}
	return bits / n;
}

static void on_sim_tick(uv_timer_t *t)
{
	sfpd_sim *sim = t->data;
	sfpd *d = sim->d;
	sfp_error err;
	sim->step += SIM_STEPS_PER_REPORT;
	/* per worker and report: 10 steps of 64 samples, 2.4 MB of gradients */
	uint64_t raw = 10ull * 60000 * 4;
	sim->raw += raw;
	for (unsigned rank = 0; rank < sim->n; rank++) {
		widths_at(sim, rank);
		double fp = footprint(sim);
		if (rank == 0) {
			sim->wire += (uint64_t)((double)raw * fp / 32.0);
			sim->enc += 1800000 + (uint64_t)(sfp_rng_uniform(&sim->rng) * 4e5f);
			sim->dec += 1200000;
			sim->comm += 4000000 + (uint64_t)(sfp_rng_uniform(&sim->rng) * 2e6f);
		}
		sfp_worker_report r = {
		    .job = SIM_JOB,
		    .rank = rank,
		    .step = sim->step,
		    .loss = 0.28 + 2.0 * exp(-(double)sim->step / 4000.0) + jitter(&sim->rng, 0.06),
		    .footprint_bits_per_value = fp,
		    .samples = SIM_STEPS_PER_REPORT * 64,
		    .raw_bytes = sim->raw,
		    .wire_bytes = sim->wire,
		    .encode_ns = sim->enc,
		    .decode_ns = sim->dec,
		    .comm_ns = sim->comm,
		    .widths = sim->w,
		    .n_widths = SIM_TENSORS,
		};
		if (sfp_stats_report(d->stats, &r, sfp_clock_ns(), &err) < 0)
			sfp_logf(&d->log, SFP_LOG_WARN, "simulation: report refused: %s", err.msg);
	}
}

static void on_sim_closed(uv_handle_t *h)
{
	free(h->data);
}

int sfpd_sim_start(sfpd *d, sfp_error *err)
{
	if (d->o.simulate > SIM_MAX_WORKERS)
		return sfp_error_set(err, SFP_EINVAL, "--simulate %u: at most %d fake workers",
		                     d->o.simulate, SIM_MAX_WORKERS);
	for (unsigned rank = 0; rank < d->o.simulate; rank++)
		SFP_TRY(sfp_stats_register(d->stats, SIM_JOB, rank, rank, 0, 6, layer_names,
		                           sfp_clock_ns(), err));
	sfpd_sim *sim = calloc(1, sizeof *sim);
	if (!sim)
		return sfp_error_set(err, SFP_ENOMEM, "out of memory");
	sim->d = d;
	sim->n = d->o.simulate;
	sfp_rng_seed(&sim->rng, 20240601);
	/* a restarted daemon continues where its history stopped */
	if (sfp_stats_job_step(d->stats, SIM_JOB, &sim->step) < 0 || sim->step < 0)
		sim->step = 0;
	sim->step -= sim->step % SIM_STEPS_PER_REPORT;
	uv_timer_init(&d->loop, &sim->timer);
	sim->timer.data = sim;
	uv_timer_start(&sim->timer, on_sim_tick, d->o.simulate_ms, d->o.simulate_ms);
	d->sim = sim;
	sfp_logf(&d->log, SFP_LOG_INFO,
	         "SIMULATION: %u fake workers report made-up numbers into job '%s' every %u ms "
	         "(nothing is trained)",
	         sim->n, SIM_JOB, d->o.simulate_ms);
	return SFP_OK;
}

void sfpd_sim_stop(sfpd *d)
{
	if (!d->sim)
		return;
	uv_close((uv_handle_t *)&d->sim->timer, on_sim_closed);
	d->sim = NULL;
}
