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

int sfp_bench_train_main(int argc, char **argv)
{
	const char *config = NULL, *name = NULL, *sets[16];
	int threads = 1, repeats = 5, nsets = 0, steps = 0;
	double seconds = 2.0;
	for (int i = 1; i < argc; i++) {
		const char *v = i + 1 < argc ? argv[i + 1] : NULL;
		if (!strcmp(argv[i], "--config") && v)
			config = v, i++;
		else if (!strcmp(argv[i], "--name") && v)
			name = v, i++;
		else if (!strcmp(argv[i], "--threads") && v)
			threads = atoi(v), i++;
		else if (!strcmp(argv[i], "--repeats") && v)
			repeats = atoi(v), i++;
		else if (!strcmp(argv[i], "--seconds") && v)
			seconds = atof(v), i++;
		else if (!strcmp(argv[i], "--steps") && v)
			steps = atoi(v), i++;
		else if (!strcmp(argv[i], "--set") && v && nsets < 16)
			sets[nsets++] = v, i++;
		else {
			fprintf(stderr, "usage: sfp bench train --config FILE [--name N] [--threads T] "
					"[--seconds S | --steps N] [--repeats R] [--set K=V ...]\n");
			return 2;
		}
	}
	if (!config || threads < 1 || repeats < 1 || repeats > 100 || !(seconds > 0) || steps < 0) {
		fprintf(stderr, "sfp bench train: --config FILE is required; threads, repeats and "
				"seconds must be positive\n");
		return 2;
	}
	static sfp_config cfg;
	sfp_error err;
	sfp_model *m = NULL;
	sfp_optim *o = NULL;
	float *x = NULL;
	uint8_t *y = NULL;
	int rc = sfp_config_load_all(&cfg, config, sets, nsets, &err);
	const int B = cfg.train.batch_size;
	if (rc == SFP_OK)
		rc = sfp_model_create(&m, &cfg.model, NULL, B, &err);
	if (rc == SFP_OK)
		rc = sfp_model_set_threads(m, threads, &err);
	const int quantum = !strcmp(cfg.bitlength.policy, "quantum");
	if (rc == SFP_OK)
		rc = sfp_model_set_stash(m, cfg.bitlength.pack, cfg.bitlength.gecko, &err);
	if (rc == SFP_OK && quantum)
		rc = sfp_model_set_quant(m, SFP_QPOLICY_QUANTUM,
					 SFP_QTARGET_WEIGHTS | SFP_QTARGET_ACTIVATIONS, cfg.bitlength.e,
					 cfg.bitlength.m, &err);
	size_t np = 0;
	if (rc == SFP_OK) {
		sfp_model_init(m, 1);
		sfp_model_params(m, &np);
		rc = sfp_optim_create(&o, &cfg.train.optimizer, np, &err);
	}
	if (rc < 0) {
		fprintf(stderr, "sfp bench train: %s\n", err.msg);
		goto out;
	}
	const int nb = 16; /* distinct random batches */
	const size_t per = sfp_shape_numel(sfp_model_input_shape(m));
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
		y[i] = (uint8_t)sfp_rng_below(&r, (uint64_t)sfp_model_classes(m));
	float *p = sfp_model_params(m, NULL);
	int64_t step = 0;
	double rates[100], cpu_rates[100];
	for (int rep = -1; rep < repeats; rep++) { /* rep -1 warms up */
		const double c0 = cpu_seconds();
		uint64_t t0 = sfp_clock_ns(), t;
		int64_t n = 0;
		do {
			const float *bx = x + (size_t)(step % nb) * B * per;
			sfp_model_forward(m, bx, B, 1, (uint64_t)step);
			sfp_model_loss(m, y + (step % nb) * B, B, NULL, 1);
			sfp_model_zero_grad(m);
			sfp_model_backward(m, bx, B);
			sfp_optim_step(o, p, sfp_model_grads(m, NULL), 0.01f, step + 1);
			if (quantum)
				sfp_model_quant_update(m, cfg.bitlength.lr, cfg.bitlength.gamma);
			step++;
			n++;
			t = sfp_clock_ns();
		} while (steps ? n < (rep < 0 ? (steps + 3) / 4 : steps)
			       : (double)(t - t0) * 1e-9 < (rep < 0 ? 0.5 : seconds));
		if (rep >= 0) {
			rates[rep] = (double)n * B / ((double)(t - t0) * 1e-9);
			cpu_rates[rep] = (double)n * B / (cpu_seconds() - c0);
		}
	}
	struct rusage ru;
	getrusage(RUSAGE_SELF, &ru);
	sfp_model_mem mem;
	sfp_model_memory(m, &mem);
	printf("{\"peer\": \"sfp\", \"model\": \"%s\", \"threads\": %d, \"batch\": %d, "
	       "\"samples_per_s\": [",
	       name ? name : config, threads, B);
	for (int i = 0; i < repeats; i++)
		printf("%s%.1f", i ? ", " : "", rates[i]);
	printf("], \"cpu_samples_per_s\": [");
	for (int i = 0; i < repeats; i++)
		printf("%s%.1f", i ? ", " : "", cpu_rates[i]);
	printf("], \"gflop_per_sample\": %.5f, \"sgemm_peak_gflops\": %.1f, \"peak_rss_kb\": %ld, "
	       "\"model_bytes\": %zu, \"activation_bytes\": %zu, \"stash_bytes\": %zu, "
	       "\"act_grad_bytes\": %zu, "
	       "\"policy\": \"%s\", \"stash\": \"%s\", \"isa\": \"%s\"}\n",
	       gemm_flops_per_sample(m) * 1e-9, sgemm_peak(), ru.ru_maxrss, mem.total,
	       mem.activations, mem.stash, mem.act_grads, quantum ? "quantum" : "off",
	       !quantum ? "none" : cfg.bitlength.pack ? "packed" : "float",
	       sfp_isa_name(sfp_cpu_isa()));
out:
	free(x);
	free(y);
	sfp_optim_free(o);
	sfp_model_free(m);
	return rc == SFP_OK ? 0 : rc == SFP_EINVAL || rc == SFP_ENOENT ? 2 : 1;
}
