#!/bin/sh
# rehearse.sh -- data-parallel training across a rehearsed cluster
# (deploy/rehearse-cluster.sh: one network namespace per host, links
# rate-limited with tc), float32 MPI_Allreduce against sfp's compressed
# gradients, at each link speed: median step time and the speed-up.
# Root only; says why and exits 77 where the machine cannot do it.
#
#   bench/rehearse.sh [STEPS] [MODELS] [RATES] [HOSTS]
#       defaults: 60 "mlp cnn" "1gbit 10gbit" 2
#   BATCH=N: every run at train.batch_size=N (the global batch; the
#   table's model column says so) and the learning rate scaled with it
#   (the config's lr x N / its batch: unscaled, a small batch diverges and
#   its vanishing gradients would flatter the compression), e.g. a small
#   per-rank batch, where the exchange rather than the compute sets the
#   step time
set -eu
cd "$(dirname "$0")/.."
. bench/steps.inc
B=$(pwd)/${BUILD:-build}
STEPS=${1:-60}
MODELS=${2:-mlp cnn}
RATES=${3:-1gbit 10gbit}
HOSTS=${4:-2}
R=deploy/rehearse-cluster.sh
$R check >&2 || exit $?
OUT=$(mktemp -d)
trap '$R down >/dev/null 2>&1 || true; rm -rf "$OUT"' EXIT
EVERY=$((STEPS / 6))
[ "$EVERY" -lt 1 ] && EVERY=1
# run NAME MODEL RATE ARGS...: prints "RATE MODEL NAME step_ms wire_bytes"
run() {
	name=$1 model=$2 rate=$3
	shift 3
	log="$OUT/$name-$model-$rate.jsonl"
	cfg=deploy/examples/fmnist-$model.yaml
	lr=""
	if [ -n "${BATCH:-}" ]; then
		b0=$(grep -m1 'batch_size' "$cfg" | sed 's/[^0-9]//g')
		lr0=$(grep -m1 -o 'lr: [0-9.e-]*' "$cfg" | cut -d' ' -f2)
		lr=$(awk -v l="$lr0" -v b="$BATCH" -v b0="$b0" 'BEGIN { printf "%g", l * b / b0 }')
	fi
	$R run -- "$B/bin/sfp-worker" --config "$(pwd)/deploy/examples/fmnist-$model.yaml" --quiet \
		--set train.max_steps="$STEPS" --set train.threads=1 --set log.every="$EVERY" \
		--set train.eval_every_epochs=0 --set data.test_limit=64 --set log.metrics="$log" \
		${BATCH:+--set train.batch_size=$BATCH --set train.optimizer.lr=$lr} "$@" >&2
	ms=$(step_ms "$log" "$model" "${BATCH:-}")
	wire=$(grep '"kind":"gradients"' "$log" | tail -1 | sed 's/.*"wire_bytes":\([0-9]*\).*/\1/')
	echo "$rate $model${BATCH:+-batch$BATCH} $name $ms $wire"
}

for rate in $RATES; do
	$R up "$HOSTS" "$rate" >&2
	for model in $MODELS; do
		echo "  $rate, $model, $HOSTS hosts" >&2
		run float32 "$model" "$rate" --set parallel.allreduce=native >>"$OUT/rows"
		run sfp-e4m2-gecko "$model" "$rate" --set parallel.grad_e=4 --set parallel.grad_m=2 \
			--set parallel.grad_gecko=true >>"$OUT/rows"
	done
	$R down >&2
done
echo "| link | model | gradients | wire bytes/step (all ranks) | step ms (median) | speed-up vs float32 |"
echo "|---|---|---|---|---|---|"
awk '
	$3 == "float32" { f[$1 " " $2] = $4 }
	{ row[NR] = $0 }
	END {
		for (i = 1; i <= NR; i++) {
			split(row[i], x, " ")
			printf "| %s | %s | %s | %.2f MB | %.1f | %.2fx |\n", x[1], x[2], x[3], x[5] / 1e6, x[4],
				f[x[1] " " x[2]] / x[4]
		}
	}' "$OUT/rows"
