/*
 * train_bench.c -- `sfp bench train`: how many samples per second the
 * engine trains for one model from a config, on random Fashion-MNIST-shaped
 * batches (speed does not depend on the values), with the same step as the
 * trainer: forward, loss, backward, optimizer. Prints one JSON line:
 *   {"peer": "sfp", "model": ..., "threads": T, "batch": B,
 *    "samples_per_s": [...], "cpu_samples_per_s": [...], "gflop_per_sample": F,
 *    "sgemm_peak_gflops": P,
 *    "peak_rss_kb": K, "model_bytes": M, "activation_bytes": A,
 *    "stash_bytes": S, "act_grad_bytes": G, "policy": ...,
 *    "stash": "packed" | "float" | "none"}
 * (model_bytes: what the model reports holding, sfp_model_memory; A: its
 * float32 activation memory; S: the packed stash after the last step; G:
 * the activation-gradient arena, max-pool indices, loss and input
 * gradients -- A + S + G is the activation part of the model's memory;
 * cpu_samples_per_s: samples per second of the process's CPU time, which
 * a busy machine disturbs less at one thread; at several it counts the
 * threads' waiting too).
 * The FLOP count is the multiply-adds of the linear and convolution layers
 * (x2), forward and backward (no input gradient before the first layer
 * that learns). `--set bitlength.policy=quantum` runs with Quantum Mantissa
 * / Exponent containers on weights and activations (the width updates
 * included), for the on/off comparison; `bitlength.pack` and
 * `bitlength.gecko` choose how the stored activations are kept.
 * `--steps N` times N steps per repeat instead of S seconds, after N/4
 * warm-up steps (a fixed amount of work, to compare profiles).
 * `--variant NAME:K=V,K=V` (up to 3) trains more configurations in the
 * same process -- the base's --set, then these -- repeat by repeat in
 * turn, so a busy machine's moods fall on all alike: one JSON line each
 * ("variants": how many shared the process; peak_rss_kb is then the
 * process's, for all of them).
 * bench/train.sh runs this beside PyTorch and prints the ratio table.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>

#include "bench/bench.h"
#include "nn/nn_internal.h"
#include "sfp/config.h"
#include "sfp/nn.h"

static double gemm_flops_per_sample(sfp_model *m)
{
	double f = 0.0;
	int learned_before = 0;
	for (int i = 0; i < sfp_model_n_layers(m); i++) {
		sfp_layer_info li;
		sfp_model_layer(m, i, &li);
		double macs = 0.0;
		if (!strcmp(li.type, "linear"))
			macs = (double)sfp_shape_numel(li.in) * li.out.c;
		else if (!strcmp(li.type, "conv2d"))
			macs = (double)li.nparams / li.out.c * li.out.c * li.out.h * li.out.w;
		/* forward + weight gradient, + input gradient when a layer before
		 * this one learns (the engine skips it otherwise) */
		f += 2.0 * macs * (learned_before ? 3.0 : 2.0);
		learned_before |= li.nparams > 0;
	}
	return f;
}

/* CPU time of the process (user + system, every thread). */
static double cpu_seconds(void)
{
	struct rusage ru;
	getrusage(RUSAGE_SELF, &ru);
	return (double)ru.ru_utime.tv_sec + 1e-6 * (double)ru.ru_utime.tv_usec +
	       (double)ru.ru_stime.tv_sec + 1e-6 * (double)ru.ru_stime.tv_usec;
}

/* Single-core GEMM peak of the engine's own kernel, 512^3, best of 5. */
static double sgemm_peak(void)
{
	const int n = 512;
	float *a = calloc((size_t)n * n, 4), *b = calloc((size_t)n * n, 4),
	      *c = calloc((size_t)n * n, 4), *ws = malloc(SFP_GEMM_WS_FLOATS * 4);
	double best = 0.0;
	if (a && b && c && ws)
		for (int r = 0; r < 5; r++) {
			uint64_t t0 = sfp_clock_ns();
			sfp_gemm(sfp_cpu_isa(), 0, 0, n, n, n, 1.0f, a, n, b, n, 0.0f, c, n, ws);
			double g = 2.0 * n * n * n / (double)(sfp_clock_ns() - t0);
			if (g > best)
				best = g;
		}
	free(a);
	free(b);
	free(c);
	free(ws);
	return best;
}

/* One configuration under test: its model, optimizer and measurements. */
typedef struct variant {
	const char *name;
	const char *sets[24];
	int nsets;
	char buf[512]; /* --variant's k=v list, split in place */
	sfp_config cfg;
	sfp_model *m;
	sfp_optim *o;
	int quantum;
	int64_t step;
	double rates[100], cpu_rates[100];
} variant;

static int variant_open(variant *v, const char *config, int threads, sfp_error *err)
{
	SFP_TRY(sfp_config_load_all(&v->cfg, config, v->sets, v->nsets, err));
	SFP_TRY(sfp_model_create(&v->m, &v->cfg.model, NULL, v->cfg.train.batch_size, err));
	SFP_TRY(sfp_model_set_threads(v->m, threads, err));
	v->quantum = v->cfg.bitlength.policy == SFP_POLICY_QUANTUM;
	SFP_TRY(sfp_model_set_stash(v->m, v->cfg.bitlength.pack, v->cfg.bitlength.gecko, err));
	sfp_model_set_pack_weights(v->m, v->cfg.bitlength.pack_weights);
	if (v->quantum)
		SFP_TRY(sfp_model_set_quant(v->m, SFP_QPOLICY_QUANTUM,
					    SFP_QTARGET_WEIGHTS | SFP_QTARGET_ACTIVATIONS,
					    v->cfg.bitlength.e, v->cfg.bitlength.m, err));
	sfp_model_init(v->m, 1);
	size_t np = 0;
	sfp_model_params(v->m, &np);
	return sfp_optim_create(&v->o, &v->cfg.train.optimizer, np, err);
}

int sfp_bench_train_main(int argc, char **argv)
{
	const char *config = NULL;
	static variant vs[4];
	int nv = 1, threads = 1, repeats = 5, steps = 0;
	double seconds = 2.0;
	memset(vs, 0, sizeof vs);
	for (int i = 1; i < argc; i++) {
		const char *v = i + 1 < argc ? argv[i + 1] : NULL;
		if (!strcmp(argv[i], "--config") && v)
			config = v, i++;
		else if (!strcmp(argv[i], "--name") && v)
			vs[0].name = v, i++;
		else if (!strcmp(argv[i], "--threads") && v)
			threads = atoi(v), i++;
		else if (!strcmp(argv[i], "--repeats") && v)
			repeats = atoi(v), i++;
		else if (!strcmp(argv[i], "--seconds") && v)
			seconds = atof(v), i++;
		else if (!strcmp(argv[i], "--steps") && v)
			steps = atoi(v), i++;
		else if (!strcmp(argv[i], "--set") && v && vs[0].nsets < 16)
			vs[0].sets[vs[0].nsets++] = v, i++;
		else if (!strcmp(argv[i], "--variant") && v && nv < 4 && strchr(v, ':')) {
			/* NAME:K=V,K=V -- the base's --set, then these */
			variant *w = &vs[nv++];
			snprintf(w->buf, sizeof w->buf, "%s", v);
			char *c = strchr(w->buf, ':');
			*c++ = 0;
			w->name = w->buf;
			for (char *t = strtok(c, ","); t && w->nsets < 8; t = strtok(NULL, ","))
				w->sets[w->nsets++] = t;
			i++;
		} else {
			fprintf(stderr, "usage: sfp bench train --config FILE [--name N] [--threads T] "
					"[--seconds S | --steps N] [--repeats R] [--set K=V ...] "
					"[--variant NAME:K=V,K=V ...]\n");
			return 2;
		}
	}
	if (!config || threads < 1 || repeats < 1 || repeats > 100 || !(seconds > 0) || steps < 0) {
		fprintf(stderr, "sfp bench train: --config FILE is required; threads, repeats and "
				"seconds must be positive\n");
		return 2;
	}
	for (int k = 1; k < nv; k++) { /* variants start from the base's overrides */
		variant *w = &vs[k];
		memmove(w->sets + vs[0].nsets, w->sets, (size_t)w->nsets * sizeof w->sets[0]);
		memcpy(w->sets, vs[0].sets, (size_t)vs[0].nsets * sizeof w->sets[0]);
		w->nsets += vs[0].nsets;
	}
	sfp_error err;
	float *x = NULL;
	uint8_t *y = NULL;
	int rc = SFP_OK;
	for (int k = 0; k < nv && rc == SFP_OK; k++)
		rc = variant_open(&vs[k], config, threads, &err);
	const int B = vs[0].cfg.train.batch_size;
	const size_t per = rc == SFP_OK ? sfp_shape_numel(sfp_model_input_shape(vs[0].m)) : 0;
	for (int k = 1; k < nv && rc == SFP_OK; k++)
		if (vs[k].cfg.train.batch_size != B ||
		    sfp_shape_numel(sfp_model_input_shape(vs[k].m)) != per)
			rc = sfp_error_set(&err, SFP_EINVAL, "variant '%s' changes the batch or the input",
					   vs[k].name);
	if (rc < 0) {
		fprintf(stderr, "sfp bench train: %s\n", err.msg);
		goto out;
	}
	const int nb = 16; /* distinct random batches */
	x = malloc((size_t)nb * B * per * sizeof(float));
	y = malloc((size_t)nb * B);
	if (!x || !y) {
		fprintf(stderr, "sfp bench train: out of memory\n");
		rc = SFP_ENOMEM;
		goto out;
	}
	sfp_rng r;
	sfp_rng_seed(&r, 1);
	for (size_t i = 0; i < (size_t)nb * B * per; i++)
		x[i] = sfp_rng_normal(&r);
	for (int i = 0; i < nb * B; i++)
		y[i] = (uint8_t)sfp_rng_below(&r, (uint64_t)sfp_model_classes(vs[0].m));
	/* repeat by repeat, each configuration in turn: the machine's moods
	 * fall on all of them alike */
	for (int rep = -1; rep < repeats; rep++) /* rep -1 warms up */
		for (int k = 0; k < nv; k++) {
			variant *v = &vs[k];
			float *p = sfp_model_params(v->m, NULL);
			const double c0 = cpu_seconds();
			uint64_t t0 = sfp_clock_ns(), t;
			int64_t n = 0;
			do {
				const float *bx = x + (size_t)(v->step % nb) * B * per;
				sfp_model_forward(v->m, bx, B, 1, (uint64_t)v->step);
				sfp_model_loss(v->m, y + (v->step % nb) * B, B, NULL, 1);
				sfp_model_zero_grad(v->m);
				sfp_model_backward(v->m, bx, B);
				sfp_optim_step(v->o, p, sfp_model_grads(v->m, NULL), 0.01f, v->step + 1);
				if (v->quantum)
					sfp_model_quant_update(v->m, v->cfg.bitlength.lr,
							       v->cfg.bitlength.gamma);
				v->step++;
				n++;
				t = sfp_clock_ns();
			} while (steps ? n < (rep < 0 ? (steps + 3) / 4 : steps)
				       : (double)(t - t0) * 1e-9 < (rep < 0 ? 0.5 : seconds));
			if (rep >= 0) {
				v->rates[rep] = (double)n * B / ((double)(t - t0) * 1e-9);
				v->cpu_rates[rep] = (double)n * B / (cpu_seconds() - c0);
			}
		}
	struct rusage ru;
	getrusage(RUSAGE_SELF, &ru);
	const double peak = sgemm_peak();
	for (int k = 0; k < nv; k++) {
		variant *v = &vs[k];
		sfp_model_mem mem;
		sfp_model_memory(v->m, &mem);
		printf("{\"peer\": \"sfp\", \"model\": \"%s\", \"threads\": %d, \"batch\": %d, "
		       "\"samples_per_s\": [",
		       v->name ? v->name : config, threads, B);
		for (int i = 0; i < repeats; i++)
			printf("%s%.1f", i ? ", " : "", v->rates[i]);
		printf("], \"cpu_samples_per_s\": [");
		for (int i = 0; i < repeats; i++)
			printf("%s%.1f", i ? ", " : "", v->cpu_rates[i]);
		printf("], \"gflop_per_sample\": %.5f, \"sgemm_peak_gflops\": %.1f, \"peak_rss_kb\": %ld, "
		       "\"model_bytes\": %zu, \"activation_bytes\": %zu, \"stash_bytes\": %zu, "
		       "\"act_grad_bytes\": %zu, \"policy\": \"%s\", \"stash\": \"%s\", "
		       "\"variants\": %d, \"isa\": \"%s\"}\n",
		       gemm_flops_per_sample(v->m) * 1e-9, peak, ru.ru_maxrss, mem.total,
		       mem.activations, mem.stash, mem.act_grads, v->quantum ? "quantum" : "off",
		       !v->quantum ? "none" : v->cfg.bitlength.pack ? "packed" : "float", nv,
		       sfp_isa_name(sfp_cpu_isa()));
	}
out:
	free(x);
	free(y);
	for (int k = 0; k < nv; k++) {
		sfp_optim_free(vs[k].o);
		sfp_model_free(vs[k].m);
	}
	return rc == SFP_OK ? 0 : rc == SFP_EINVAL || rc == SFP_ENOENT ? 2 : 1;
}
