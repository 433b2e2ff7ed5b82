#!/bin/sh
# rehearse.sh -- a data-parallel job across a rehearsed two-host cluster
# (deploy/rehearse-cluster.sh: network namespaces, 1 Gbit/s links): each
# rank in its own namespace, the gradient traffic over the limited link.
# Needs root and network namespaces; where the machine cannot, it says why
# and passes as skipped.
set -u
. "$(dirname "$0")/common.inc"
B=$(pwd)/${BUILD:-build}
R=deploy/rehearse-cluster.sh
export SFP_REHEARSE_PREFIX=sfpt$$ SFP_REHEARSE_NET=10.78.0
if ! $R check >"$T/out" 2>&1; then
	echo "skip rehearse.sh: $(cat "$T/out")"
	exit 0
fi
trap '$R down >/dev/null 2>&1; rm -rf "$T"' EXIT
export ASAN_OPTIONS="${ASAN_OPTIONS:+$ASAN_OPTIONS:}detect_leaks=0" # Open MPI's allocations (dist.sh)
expect 0 "two hosts at 1gbit" $R up 2 1gbit
expect 0 "DP job across the hosts" $R run -- "$B/bin/sfp-worker" --config "$(pwd)/deploy/examples/fmnist-mlp.yaml" \
	--set data.train_limit=1280 --set data.test_limit=128 --set train.max_steps=20 --set log.every=10 \
	--set parallel.grad_e=4 --set parallel.grad_m=2 --set parallel.grad_gecko=true --set log.metrics="$T/m.jsonl"
grep -q "job: 2 ranks = 2 data-parallel replicas" "$T/err" && grep -q "test_acc" "$T/err" && ok "trains across the namespaces" || bad "rehearsal run: $(tail -5 "$T/err")"
$R stats >"$T/stats" 2>&1
sent=$(awk '$1 ~ /^10\.78\.0\./ && $2 > m { m = $2 } END { print m + 0 }' "$T/stats")
wire=$(grep '"kind":"gradients"' "$T/m.jsonl" | tail -1 | sed 's/.*"wire_bytes":\([0-9]*\).*/\1/')
[ "${sent:-0}" -gt "$((wire * 5))" ] && ok "the gradient traffic crossed the links ($sent bytes on a link)" || bad "link counters: $(cat "$T/stats")"
expect 0 "down" $R down
echo "rehearse.sh: $fails failed"
[ "$fails" -eq 0 ]
