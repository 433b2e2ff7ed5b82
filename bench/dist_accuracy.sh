#!/bin/sh
# dist_accuracy.sh -- does compressing the gradients cost accuracy? Full
# data-parallel training runs of one model on N ranks (default fmnist-cnn,
# 2 ranks), one per gradient encoding, then each run's final test accuracy
# and gradient wire bytes against float32. Slow (one full training per
# encoding); docs/distributed.md quotes its output.
#
#   bench/dist_accuracy.sh [MODEL] [RANKS] [-- extra sfp-worker args]
set -eu
cd "$(dirname "$0")/.."
B=${BUILD:-build}
MODEL=${1:-cnn}
N=${2:-2}
[ $# -ge 2 ] && shift 2 || shift $#
[ "${1:-}" = "--" ] && shift
OUT=${OUT:-$(mktemp -d)}
mkdir -p "$OUT"
MPI="mpirun --oversubscribe --bind-to none"
[ "$(id -u)" -eq 0 ] && MPI="$MPI --allow-run-as-root"
run() {
	name=$1
	shift
	echo "  $name ..." >&2
	$MPI -np "$N" "$B/bin/sfp-worker" --config "deploy/examples/fmnist-$MODEL.yaml" --quiet \
		--set log.metrics="$OUT/$name.jsonl" "$@" >&2
	acc=$(grep '"test_acc"' "$OUT/$name.jsonl" | tail -1 | sed 's/.*"test_acc":\([0-9.]*\).*/\1/')
	ratio=$(grep '"kind":"gradients"' "$OUT/$name.jsonl" | awk -F'[:,]' '{ for (i = 1; i < NF; i++) { if ($i == "\"raw_bytes\"") r += $(i + 1); if ($i == "\"wire_bytes\"") w += $(i + 1) } } END { printf "%.2f", r / w }')
	printf '| %s | %d | %s | %.2f%% | %sx |\n' "$MODEL" "$N" "$name" "$(echo "$acc" | awk '{ print $1 * 100 }')" "$ratio"
}
echo "| model | ranks | gradients | test accuracy | fewer gradient bytes than float32 |"
echo "|---|---|---|---|---|"
run float32 --set parallel.allreduce=native "$@"
run sfp-e4m2-gecko --set parallel.grad_e=4 --set parallel.grad_m=2 --set parallel.grad_gecko=true "$@"
echo "logs in $OUT" >&2
