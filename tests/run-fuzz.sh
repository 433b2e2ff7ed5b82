#!/bin/sh
# run-fuzz.sh -- run each libFuzzer binary for FUZZ_SECONDS on its corpus
# (tests/fuzz/corpus/<target>, committed seeds) plus a scratch copy, so the
# committed corpus only changes when someone adds seeds on purpose.
set -eu
secs=${FUZZ_SECONDS:-60}
for bin in "$@"; do
	name=$(basename "$bin")
	seeds=tests/fuzz/corpus/${name#fuzz_}
	work=build/fuzz/corpus/${name#fuzz_}
	mkdir -p "$work"
	[ -d "$seeds" ] || seeds=""
	echo "fuzz: $name for ${secs}s (seeds: $seeds)"
	"$bin" -max_total_time="$secs" -timeout=10 -rss_limit_mb=2048 -print_final_stats=1 \
		"$work" $seeds 2>build/fuzz/"$name".log || {
		tail -40 build/fuzz/"$name".log
		echo "fuzz: $name FAILED (log: build/fuzz/$name.log)"
		exit 1
	}
	grep -E '^stat::number_of_executed_units' build/fuzz/"$name".log || true
done
