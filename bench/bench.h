/*
 * bench.h -- benchmarks run by `sfp bench ...`: sfp execs sfp-bench, whose
 * main (bench/main.c) dispatches here.
 * Each returns a process exit code (0 ok, 2 usage, 1 failure).
 */
#ifndef SFP_BENCH_H
#define SFP_BENCH_H

/* `sfp bench codec [--quick] [--repeats N] [FILE.npy ...]`: the codec table. */
int sfp_bench_codec_main(int argc, char **argv);
/* `sfp bench gecko [FILE.npy ...]`: the Gecko ablation of docs/gecko.md. */
int sfp_bench_gecko_main(int argc, char **argv);
/* `sfp bench refine [--quick] [--config F] [--steps N] [--verbose]`: decoder-side
 * refinement on a briefly trained model's tensors (docs/refine.md). */
int sfp_bench_refine_main(int argc, char **argv);

/* `sfp bench train --config FILE [--threads N] [--seconds S] [--repeats R]`:
 * training steps per second of one model on random batches, one JSON line
 * (bench/train.sh runs it beside PyTorch). */
int sfp_bench_train_main(int argc, char **argv);

/* `sfp bench daemon --daemon URL [--workers N] [--hz F] [--seconds S] ...`:
 * simulated workers report to a real sfpd over the worker protocol; prints
 * "key value" lines (bench/daemon.sh runs it beside HTTP load). */
int sfp_bench_daemon_main(int argc, char **argv);

#endif
