/*
 * plan.c -- `sfp plan`: the step time of a data-parallel job on N hosts,
 * from what this machine measures of one host's work and an alpha-beta
 * model of the links (docs/scaling.md has the model and its validation).
 *
 * Measured here, one process at the per-host batch: the training step
 * (forward, backward, optimizer: a few real steps of the config), when
 * backward finishes each gradient bucket (sfp_model_on_grads_ready), the
 * gradient's size, and the containers of the gradient exchange on a real
 * gradient: bits per value, encode and decode GB/s.
 *
 * Modelled, for a tensor of R float32 bytes (R / c on the wire for sfp,
 * c its compression), N hosts, links of B bytes/s and a latency of a:
 *   ring          2 (N-1) a + 2 (N-1)/N R / B          (reduce-scatter + all-gather)
 *   tree          2 ceil(log2 N) a + 2 R / B           (pipelined double binary tree)
 *   hierarchical  a ring of g = ceil(sqrt N) hosts, then rings of N / g
 *                 across the groups on R / g, then the group's all-gather
 * plus, for sfp, the containers' coding (the ring: (R/N) (N/E + (2N-2)/D)
 * for encode and decode rates E, D; tree and hierarchical alike per hop).
 * The buckets run one after another on the exchange's thread from the time
 * backward finishes each; a step waits for what ends after backward
 * (behind backward), or for all of them (after backward).
 */
#include <math.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "sfp/codec.h"
#include "sfp/common.h"
#include "sfp/config.h"
#include "sfp/nn.h"
#include "sfp/train.h"
#include "tools.h"

#define MAX_SETS 64
#define MAX_LIST 16
#define usage(...) sfp_tool_usage("plan", __VA_ARGS__)

typedef struct plan_opts {
	const char *config;
	const char *sets[MAX_SETS];
	int nsets;
	int batch;                 /* per host (0: the config's) */
	int hosts[MAX_LIST], nhosts;
	double links[MAX_LIST];    /* Gbit/s */
	int nlinks;
	double alpha_us;           /* latency of a message */
	double link_eff;           /* share of the link rate a transfer gets */
	double compute_ms;         /* instead of measuring the step (0: measure) */
	int grad_e, grad_m, gecko;
} plan_opts;

/* What one host's work measures. */
typedef struct host_cost {
	double step_ms, bwd_ms;   /* a training step; its backward */
	size_t np;                /* parameters */
	int nb;                   /* buckets */
	sfp_bucket *b;
	double *ready_ms;         /* bucket k final, ms after backward starts */
	double bits;              /* sfp containers: bits per value on the wire */
	double enc_gbs, dec_gbs;  /* their coding, float32 GB/s */
} host_cost;

static int parse_list(const char *v, double *out, int *n, double lo, double hi)
{
	*n = 0;
	for (const char *p = v; *p;) {
		char *end;
		double x = strtod(p, &end);
		if (end == p || !(x >= lo && x <= hi) || *n == MAX_LIST)
			return -1;
		out[(*n)++] = x;
		p = *end == ',' ? end + 1 : end;
		if (*end && *end != ',')
			return -1;
	}
	return *n ? 0 : -1;
}

static int parse(plan_opts *o, int argc, char **argv)
{
	*o = (plan_opts){.alpha_us = 20.0, .link_eff = 0.9, .grad_e = 4, .grad_m = 2, .gecko = 1};
	double h[MAX_LIST];
	int nh = 0;
	parse_list("2,4,8,16,64,256,1024", h, &nh, 2, 1 << 20);
	parse_list("1,10,100", o->links, &o->nlinks, 1e-3, 1e5);
	for (int i = 1; i < argc; i++) {
		const char *a = argv[i], *v = i + 1 < argc ? argv[i + 1] : NULL;
		if (!strcmp(a, "--no-gecko")) {
			o->gecko = 0;
			continue;
		}
		if (!v)
			return usage("'%s' needs a value", a);
		i++;
		char *end;
		uint64_t u;
		if (!strcmp(a, "--config")) {
			o->config = v;
		} else if (!strcmp(a, "--set")) {
			if (o->nsets == MAX_SETS)
				return usage("more than %d --set options", MAX_SETS);
			o->sets[o->nsets++] = v;
		} else if (!strcmp(a, "--batch")) {
			if (sfp_parse_u64(v, 1, 1 << 20, &u) < 0)
				return usage("--batch must be 1..1048576, not '%s'", v);
			o->batch = (int)u;
		} else if (!strcmp(a, "--hosts")) {
			if (parse_list(v, h, &nh, 2, 1 << 20) < 0)
				return usage("--hosts: a list like 2,4,64 of counts >= 2, not '%s'", v);
		} else if (!strcmp(a, "--links")) {
			if (parse_list(v, o->links, &o->nlinks, 1e-3, 1e5) < 0)
				return usage("--links: Gbit/s like 1,10,100, not '%s'", v);
		} else if (!strcmp(a, "--alpha-us") || !strcmp(a, "--link-efficiency") ||
			   !strcmp(a, "--compute-ms")) {
			double x = strtod(v, &end);
			const int eff = !strcmp(a, "--link-efficiency");
			if (*end || end == v || !(x >= 0.0 && x <= (eff ? 1.0 : 1e9)) || (eff && x == 0.0))
				return usage("%s: %s, not '%s'", a,
					     eff ? "a share in (0, 1]" : "a number >= 0", v);
			if (!strcmp(a, "--alpha-us"))
				o->alpha_us = x;
			else if (eff)
				o->link_eff = x;
			else
				o->compute_ms = x;
		} else if (!strcmp(a, "--grad-e") || !strcmp(a, "--grad-m")) {
			const int is_e = !strcmp(a, "--grad-e");
			if (sfp_parse_u64(v, is_e ? 1 : 0, is_e ? 8 : 23, &u) < 0)
				return usage("%s must be %s, not '%s'", a, is_e ? "1..8" : "0..23", v);
			*(is_e ? &o->grad_e : &o->grad_m) = (int)u;
		} else {
			return usage("unknown option '%s'", a);
		}
	}
	if (!o->config)
		return usage("plan needs --config FILE");
	for (int k = 0; k < nh; k++) {
		if (h[k] != floor(h[k]))
			return usage("--hosts: whole host counts, not %g", h[k]);
		o->hosts[k] = (int)h[k];
	}
	o->nhosts = nh;
	return SFP_EXIT_OK;
}

/* ---- measuring one host ---------------------------------------------------- */
typedef struct step_probe {
	double samples_per_s[8];
	int n;
} step_probe;

static void on_progress(void *user, const sfp_progress *p)
{
	step_probe *s = user;
	if (!p->is_eval && s->n < 8)
		s->samples_per_s[s->n++] = p->samples_per_s;
}

typedef struct ready_probe {
	uint64_t t0;
	const sfp_bucket *b;
	int nb;
	double *ms;
} ready_probe;

static void on_ready(void *user, int first)
{
	ready_probe *r = user;
	const double ms = (double)(sfp_clock_ns() - r->t0) * 1e-6;
	for (int k = 0; k < r->nb; k++)
		if (r->b[k].first >= first && r->ms[k] < 0)
			r->ms[k] = ms;
}

static int cmp_double(const void *a, const void *b)
{
	const double x = *(const double *)a, y = *(const double *)b;
	return x < y ? -1 : x > y;
}

static double median(double *v, int n)
{
	qsort(v, (size_t)n, sizeof *v, cmp_double);
	return n % 2 ? v[n / 2] : 0.5 * (v[n / 2 - 1] + v[n / 2]);
}

/* Backward's timeline on a batch of random inputs and labels: when each
 * bucket is final; the median of 5 backwards. */
static int time_backward(sfp_model *m, int B, int token_T, host_cost *hc, sfp_error *err)
{
	const size_t in_n = sfp_shape_numel(sfp_model_input_shape(m));
	const int V = sfp_model_classes(m);
	float *x = malloc((size_t)B * in_n * sizeof *x);
	uint8_t *y = malloc((size_t)B);
	int32_t *tg = malloc((size_t)B * (size_t)(token_T ? token_T : 1) * sizeof *tg);
	double *all = malloc((size_t)5 * (size_t)(hc->nb + 1) * sizeof *all);
	if (!x || !y || !tg || !all) {
		free(x), free(y), free(tg), free(all);
		return sfp_error_set(err, SFP_ENOMEM, "out of memory");
	}
	sfp_rng r;
	sfp_rng_seed(&r, 7);
	sfp_layer_info first;
	sfp_model_layer(m, 0, &first);
	const int vocab = token_T ? (int)(first.nparams / (size_t)first.out.w) : 0;
	const int tok_v = token_T ? V / token_T : 0; /* scores per token */
	for (size_t i = 0; i < (size_t)B * in_n; i++)
		x[i] = token_T ? (float)sfp_rng_below(&r, (uint64_t)vocab) : sfp_rng_normal(&r);
	for (int i = 0; i < B; i++)
		y[i] = (uint8_t)sfp_rng_below(&r, (uint64_t)(V < 256 ? V : 256));
	for (int i = 0; i < B * token_T; i++)
		tg[i] = (int32_t)sfp_rng_below(&r, (uint64_t)(vocab < tok_v ? vocab : tok_v));
	ready_probe rp = {.b = hc->b, .nb = hc->nb};
	sfp_model_on_grads_ready(m, on_ready, &rp);
	for (int rep = 0; rep < 5; rep++) {
		double *ms = all + (size_t)rep * (size_t)(hc->nb + 1);
		for (int k = 0; k < hc->nb; k++)
			ms[k] = -1.0;
		rp.ms = ms;
		sfp_model_forward(m, x, B, SFP_FORWARD_TRAIN, (uint64_t)rep);
		if (token_T)
			sfp_model_loss_tokens(m, tg, B, NULL, 1);
		else
			sfp_model_loss(m, y, B, NULL, 1);
		sfp_model_zero_grad(m);
		rp.t0 = sfp_clock_ns();
		sfp_model_backward(m, x, B);
		ms[hc->nb] = (double)(sfp_clock_ns() - rp.t0) * 1e-6;
	}
	sfp_model_on_grads_ready(m, NULL, NULL);
	double v[5];
	for (int k = 0; k <= hc->nb; k++) {
		for (int rep = 0; rep < 5; rep++)
			v[rep] = all[(size_t)rep * (size_t)(hc->nb + 1) + (size_t)k];
		const double med = median(v, 5);
		if (k < hc->nb)
			hc->ready_ms[k] = med;
		else
			hc->bwd_ms = med;
	}
	free(x), free(y), free(tg), free(all);
	return SFP_OK;
}

/* The gradient exchange's containers on the gradient of the last step:
 * bits per value, encode and decode GB/s (medians of 5). */
static int time_codec(const float *g, size_t n, const plan_opts *o, host_cost *hc,
		      sfp_error *err)
{
	sfp_params p;
	sfp_params_init(&p, (unsigned)o->grad_e, (unsigned)o->grad_m);
	p.gecko = o->gecko;
	const size_t cap = sfp_encode_bound(n, 1);
	void *buf = malloc(cap);
	float *back = malloc((n ? n : 1) * sizeof *back);
	sfp_codec *c = sfp_codec_create();
	int rc = !buf || !back || !c ? sfp_error_set(err, SFP_ENOMEM, "out of memory") : SFP_OK;
	double te[5], td[5];
	size_t written = 0;
	const uint64_t shape[1] = {n};
	for (int rep = 0; rep < 5 && rc == SFP_OK; rep++) {
		uint64_t t0 = sfp_clock_ns();
		rc = sfp_encode(c, buf, cap, &written, g, n, shape, 1, &p, err);
		te[rep] = (double)(sfp_clock_ns() - t0) * 1e-9;
		t0 = sfp_clock_ns();
		if (rc == SFP_OK)
			rc = sfp_decode(c, back, n, buf, written, NULL, err);
		td[rep] = (double)(sfp_clock_ns() - t0) * 1e-9;
	}
	if (rc == SFP_OK) {
		const double bytes = 4.0 * (double)n;
		hc->bits = 8.0 * (double)written / (double)n;
		hc->enc_gbs = bytes / median(te, 5) * 1e-9;
		hc->dec_gbs = bytes / median(td, 5) * 1e-9;
	}
	sfp_codec_free(c);
	free(buf);
	free(back);
	return rc;
}

static int measure(const plan_opts *o, sfp_config *cfg, host_cost *hc, sfp_error *err)
{
	char dir[SFP_CFG_PATH];
	sfp_tool_config_dir(dir, sizeof dir, o->config);
	SFP_TRY(sfp_config_load_all(cfg, o->config, o->sets, o->nsets, err));
	if (o->batch)
		cfg->train.batch_size = o->batch;
	cfg->log.metrics[0] = 0;
	cfg->checkpoint.dir[0] = 0;
	cfg->daemon.address[0] = 0;
	cfg->train.max_steps = 16;
	cfg->train.eval_every_epochs = 0;
	cfg->log.every = 4;
	sfp_trainer *t = NULL;
	step_probe sp = {.n = 0};
	int rc = sfp_trainer_create(&t, cfg, dir, err);
	if (rc == SFP_OK) {
		sfp_trainer_on_progress(t, on_progress, &sp);
		rc = sfp_trainer_run(t, err);
	}
	if (rc == SFP_OK && sp.n < 2)
		rc = sfp_error_set(err, SFP_EINVAL, "the run logged %d intervals; plan needs 2", sp.n);
	if (rc == SFP_OK) {
		sfp_model *m = sfp_trainer_model(t);
		const int T = sfp_trainer_token_data(t);
		const double items = (double)cfg->train.batch_size * (T ? T : 1);
		hc->step_ms = 1000.0 * items / median(sp.samples_per_s + 1, sp.n - 1);
		const float *g = sfp_model_grads(m, &hc->np); /* the last step's */
		float *gcopy = malloc((hc->np ? hc->np : 1) * sizeof *gcopy);
		hc->b = calloc((size_t)sfp_model_n_layers(m) + 1, sizeof *hc->b);
		hc->ready_ms = calloc((size_t)sfp_model_n_layers(m) + 1, sizeof *hc->ready_ms);
		if (!gcopy || !hc->b || !hc->ready_ms)
			rc = sfp_error_set(err, SFP_ENOMEM, "out of memory");
		if (rc == SFP_OK) {
			memcpy(gcopy, g, hc->np * sizeof *gcopy);
			hc->nb = sfp_grad_buckets(m, (size_t)cfg->parallel.bucket_kb, hc->b);
			rc = time_codec(gcopy, hc->np, o, hc, err);
		}
		if (rc == SFP_OK)
			rc = time_backward(m, cfg->train.batch_size, T, hc, err);
		free(gcopy);
	}
	sfp_trainer_free(t);
	return rc;
}

/* ---- the model ------------------------------------------------------------ */
enum { RING, TREE, HIER, SCHEMES };
static const char *const scheme_name[SCHEMES] = {"ring", "tree", "hierarchical"};

/* Seconds to sum R float32 bytes over N hosts: wire bytes R / c, links of
 * `bw` bytes/s, latency a; coding at E, D bytes/s (0: none). */
static double allreduce_s(int scheme, double R, double c, int N, double bw, double a, double E,
			  double D)
{
	const double W = R / c;
	const double enc = E > 0 ? 1.0 / E : 0.0, dec = D > 0 ? 1.0 / D : 0.0;
	if (scheme == RING)
		return 2.0 * (N - 1) * a + 2.0 * (N - 1) / N * W / bw +
		       R / N * (N * enc + (2.0 * N - 2.0) * dec);
	if (scheme == TREE) {
		const double lg = ceil(log2((double)N));
		return 2.0 * lg * a + 2.0 * W / bw + R * (enc + 3.0 * dec);
	}
	/* groups of g hosts (g divides N, near sqrt N): a ring in each group,
	 * whose reduce-scatter leaves each host a 1/g share, summed by a ring
	 * across the N / g groups before the group's all-gather */
	int g = (int)ceil(sqrt((double)N));
	while (N % g)
		g++;
	const int h = N / g;
	return allreduce_s(RING, R, c, g, bw, a, E, D) +
	       (h > 1 ? allreduce_s(RING, R / g, c, h, bw, a, E, D) : 0.0);
}

/* Step ms on N hosts: the buckets one after another from the time each is
 * final (behind = 1), or all after backward. */
static double step_ms(const host_cost *hc, double compute_ms, int scheme, int sfp, int behind,
		      int N, double gbit, const plan_opts *o)
{
	const double bw = gbit * 1e9 / 8.0 * o->link_eff, a = o->alpha_us * 1e-6;
	const double c = sfp ? 32.0 / hc->bits : 1.0;
	const double E = sfp ? hc->enc_gbs * 1e9 : 0.0, D = sfp ? hc->dec_gbs * 1e9 : 0.0;
	double end = 0.0; /* ms after backward starts */
	for (int k = 0; k < hc->nb; k++) {
		const double t = 1e3 * allreduce_s(scheme, 4.0 * (double)hc->b[k].n, c, N, bw, a, E, D);
		const double start = behind ? fmax(hc->ready_ms[k], end) : fmax(hc->bwd_ms, end);
		end = start + t;
	}
	return compute_ms + fmax(0.0, end - hc->bwd_ms);
}

/* The link rate (Gbit/s) below which sfp's step is faster than float32's
 * (both behind backward) on N hosts; 0 when never, < 0 when always in the
 * range scanned (0.01 .. 10000 Gbit/s). */
static double crossover(const host_cost *hc, double compute_ms, int scheme, int N,
			const plan_opts *o)
{
	double last_win = 0.0;
	int always = 1;
	for (double g = 0.01; g <= 10000.0; g *= 1.05) {
		const double f = step_ms(hc, compute_ms, scheme, 0, 1, N, g, o),
			     s = step_ms(hc, compute_ms, scheme, 1, 1, N, g, o);
		if (s < f * 0.99)
			last_win = g;
		else
			always = 0;
	}
	return always ? -1.0 : last_win;
}

int sfp_plan_main(int argc, char **argv)
{
	plan_opts o;
	int rc = parse(&o, argc, argv);
	if (rc != SFP_EXIT_OK)
		return rc;
	static sfp_config cfg;
	sfp_error err;
	host_cost hc = {0};
	rc = measure(&o, &cfg, &hc, &err);
	if (rc != SFP_OK) {
		fprintf(stderr, "sfp: %s\n", err.msg);
		free(hc.b);
		free(hc.ready_ms);
		return sfp_exit_code(rc);
	}
	const double compute = o.compute_ms > 0 ? o.compute_ms : hc.step_ms;
	printf("one host (%s, batch %d per host, %d thread(s)): step %.2f ms%s, backward %.2f ms; "
	       "%zu parameters in %d bucket(s) of ~%d KiB\n",
	       o.config, cfg.train.batch_size, cfg.train.threads > 0 ? cfg.train.threads : 1,
	       hc.step_ms, o.compute_ms > 0 ? " (the model uses --compute-ms)" : "", hc.bwd_ms,
	       hc.np, hc.nb, cfg.parallel.bucket_kb);
	printf("gradients at e%d m%d%s: %.2f bits/value (%.1fx), encode %.2f GB/s, decode %.2f GB/s; "
	       "links at %.0f%% of their rate, latency %.0f us\n",
	       o.grad_e, o.grad_m, o.gecko ? " + Gecko" : "", hc.bits, 32.0 / hc.bits, hc.enc_gbs,
	       hc.dec_gbs, 100.0 * o.link_eff, o.alpha_us);
	printf("\n| hosts | link Gbit/s | scheme | float32 after | float32 behind | sfp after | "
	       "sfp behind | sfp behind vs float32 behind | efficiency float32 / sfp |\n");
	printf("|---:|---:|---|---:|---:|---:|---:|---:|---:|\n");
	for (int hi = 0; hi < o.nhosts; hi++)
		for (int li = 0; li < o.nlinks; li++)
			for (int s = 0; s < SCHEMES; s++) {
				const int N = o.hosts[hi];
				const double g = o.links[li];
				double v[4];
				for (int k = 0; k < 4; k++)
					v[k] = step_ms(&hc, compute, s, k >= 2, k % 2, N, g, &o);
				printf("| %d | %g | %s | %.1f | %.1f | %.1f | %.1f | %.2fx | %.0f%% / %.0f%% |\n",
				       N, g, scheme_name[s], v[0], v[1], v[2], v[3], v[1] / v[3],
				       100.0 * compute / v[1], 100.0 * compute / v[3]);
			}
	printf("\nlink rate below which sfp's step is faster (ring, both behind backward):");
	for (int hi = 0; hi < o.nhosts; hi++) {
		const double x = crossover(&hc, compute, RING, o.hosts[hi], &o);
		if (x < 0)
			printf(" %d hosts: any rate;", o.hosts[hi]);
		else if (x == 0)
			printf(" %d hosts: none;", o.hosts[hi]);
		else
			printf(" %d hosts: %.3g Gbit/s;", o.hosts[hi], x);
	}
	printf("\n");
	free(hc.b);
	free(hc.ready_ms);
	return SFP_EXIT_OK;
}
