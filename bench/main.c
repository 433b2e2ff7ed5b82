/*
 * main.c -- sfp-bench: the benchmarks behind `sfp bench VERB ...`, in their
 * own binary so that sfp itself does not link the peer codecs (zstd, lz4,
 * blosc, zfp, fpzip). sfp execs this program, found beside it, with
 * argv = {sfp-bench, VERB, ...}; it can be run directly the same way.
 * Messages keep the "sfp: " prefix of the command users type.
 */
#include <stdio.h>
#include <string.h>

#include "bench/bench.h"
#include "sfp/common.h"

static const struct {
	const char *verb;
	int (*main)(int argc, char **argv);
} verbs[] = {
	{"codec", sfp_bench_codec_main}, {"gecko", sfp_bench_gecko_main},
	{"refine", sfp_bench_refine_main}, {"train", sfp_bench_train_main},
	{"daemon", sfp_bench_daemon_main},
};

int main(int argc, char **argv)
{
	for (size_t i = 0; argc >= 2 && i < sizeof verbs / sizeof verbs[0]; i++)
		if (!strcmp(argv[1], verbs[i].verb))
			return verbs[i].main(argc - 1, argv + 1);
	fprintf(stderr, "sfp: usage: sfp bench codec|gecko|refine|train|daemon [...]\n"
			"(run 'sfp help' for usage)\n");
	return SFP_EXIT_USAGE;
}
