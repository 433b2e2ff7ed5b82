#!/bin/sh
# rehearse.sh -- data-parallel training across a rehearsed cluster
# (deploy/rehearse-cluster.sh: one network namespace per host, links
# rate-limited with tc), at each link speed and host count, side by side:
#   float32-after    MPI_Allreduce on float32, all gradients after backward
#   float32-overlap  the same in buckets behind backward (DDP's way: the foil)
#   sfp-after        containers at e4m2 + Gecko, error feedback, after backward
#   sfp-overlap      the same in buckets behind backward (sfp's default)
#   compute-only     the limit: every host's share of the batch computed by as
#                    many processes at once, alone (no job, no exchange), so
#                    they share the cores as the ranks do
# Median step time and wire bytes per step (every rank's), the step against
# compute-only and the speed-up over float32-overlap. Root only; says why and
# exits 77 where the machine cannot do it.
#
#   bench/rehearse.sh [STEPS] [MODELS] [RATES] [HOSTS]
#       defaults: 60 "cnn" "1gbit 10gbit" 2 (models: mlp cnn resnet gpt)
#   BATCH=N: every run at train.batch_size=N (the global batch; the
#   table's model column says so) and the learning rate scaled with it
#   (the config's lr x N / its batch: unscaled, a small batch diverges and
#   its vanishing gradients would flatter the compression), e.g. a small
#   per-rank batch, where the exchange rather than the compute sets the
#   step time
#   EXTRA="--set K=V ...": added to every sfp run (e.g. parallel.bucket_kb)
#   ROUNDS=N (default 1): every run N times in turn, the table's step time
#   the median of the rounds' medians (a shared machine's load moves)
set -eu
cd "$(dirname "$0")/.."
. bench/steps.inc
B=$(pwd)/${BUILD:-build}
STEPS=${1:-60}
MODELS=${2:-cnn}
RATES=${3:-1gbit 10gbit}
HOSTS=${4:-2}
R=deploy/rehearse-cluster.sh
$R check >&2 || exit $?
OUT=$(mktemp -d)
trap '$R down >/dev/null 2>&1 || true; rm -rf "$OUT"' EXIT
EVERY=$((STEPS / 6))
[ "$EVERY" -lt 1 ] && EVERY=1
case " $MODELS " in
*" gpt "*)
	[ -f build/fortunes/train.bin ] || BUILD=$B tools/fortunes.sh >&2
	# the final evaluation reads 64 windows (token data has no test_limit)
	head -c $(((64 * 64 + 1) * 2)) build/fortunes/val.bin >"$OUT/val.bin"
	;;
esac

# args MODEL: the set-up every run of MODEL shares (paths absolute: the
# ranks start in the namespaces)
args() {
	cfg=$(model_config "$1")
	echo "--config $(pwd)/$cfg --quiet --set train.max_steps=$STEPS --set train.threads=1"
	echo "--set log.every=$EVERY --set train.eval_every_epochs=0"
	if [ "$1" = gpt ]; then
		echo "--set data.train.x=$(pwd)/build/fortunes/train.bin --set data.test.x=$OUT/val.bin"
	else
		echo "--set data.test_limit=64"
	fi
	if [ -n "${BATCH:-}" ]; then
		b0=$(sed -n 's/^ *batch_size: *\([0-9]*\).*/\1/p' "$cfg" | head -1)
		lr0=$(grep -m1 -o 'lr: [0-9.e-]*' "$cfg" | cut -d' ' -f2)
		echo "--set train.batch_size=$BATCH --set train.optimizer.lr=$(awk -v l="$lr0" -v b="$BATCH" \
			-v b0="$b0" 'BEGIN { printf "%g", l * b / b0 }')"
	fi
}

# run NAME MODEL RATE HOSTS ARGS...: prints "HOSTS RATE MODEL NAME step_ms wire_bytes"
run() {
	name=$1 model=$2 rate=$3 hosts=$4
	shift 4
	log="$OUT/$name-$model-$rate-$hosts.jsonl"
	# shellcheck disable=SC2046
	$R run -- "$B/bin/sfp-worker" $(args "$model") --set log.metrics="$log" ${EXTRA:-} "$@" >&2
	ms=$(step_ms "$log" "$model" "${BATCH:-}")
	wire=$(grep '"kind":"gradients"' "$log" | tail -1 | sed 's/.*"wire_bytes":\([0-9]*\).*/\1/')
	echo "$hosts $rate $model${BATCH:+-batch$BATCH} $name $ms $wire"
}

# compute_only MODEL HOSTS: HOSTS lone processes at once, each at its share
# of the batch; prints "HOSTS - MODEL compute-only step_ms 0" (their median)
compute_only() {
	model=$1 hosts=$2
	cfg=$(model_config "$model")
	b=${BATCH:-$(sed -n 's/^ *batch_size: *\([0-9]*\).*/\1/p' "$cfg" | head -1)}
	share=$(((b + hosts - 1) / hosts))
	i=0
	while [ $i -lt "$hosts" ]; do
		# shellcheck disable=SC2046
		env -u OMPI_COMM_WORLD_SIZE -u PMI_SIZE -u PMIX_RANK "$B/bin/sfp-worker" $(args "$model") \
			--set train.batch_size=$share --set log.metrics="$OUT/co-$model-$hosts-$i.jsonl" >&2 &
		i=$((i + 1))
	done
	wait
	ms=$(for f in "$OUT"/co-"$model"-"$hosts"-*.jsonl; do step_ms "$f" "$model" "$share"; done | median)
	echo "$hosts - $model${BATCH:+-batch$BATCH} compute-only $ms 0"
}

for hosts in $HOSTS; do
	for model in $MODELS; do
		compute_only "$model" "$hosts" >>"$OUT/rows"
	done
	for rate in $RATES; do
		$R up "$hosts" "$rate" >&2
		for model in $MODELS; do
			echo "  $hosts hosts, $rate, $model" >&2
			r=0
			while [ $r -lt "${ROUNDS:-1}" ]; do
				run float32-after "$model" "$rate" "$hosts" --set parallel.allreduce=native \
					--set parallel.overlap=false >>"$OUT/rounds"
				run float32-overlap "$model" "$rate" "$hosts" \
					--set parallel.allreduce=native >>"$OUT/rounds"
				run sfp-after "$model" "$rate" "$hosts" --set parallel.grad_e=4 \
					--set parallel.grad_m=2 --set parallel.grad_gecko=true \
					--set parallel.overlap=false >>"$OUT/rounds"
				run sfp-overlap "$model" "$rate" "$hosts" --set parallel.grad_e=4 \
					--set parallel.grad_m=2 --set parallel.grad_gecko=true >>"$OUT/rounds"
				r=$((r + 1))
			done
		done
		$R down >&2
	done
done
# one row per run: the median step time of its rounds
for key in $(awk '{ print $1 "/" $2 "/" $3 "/" $4 }' "$OUT/rounds" | sort -u); do
	ms=$(awk -v k="$key" '$1 "/" $2 "/" $3 "/" $4 == k { print $5 }' "$OUT/rounds" | median)
	awk -v k="$key" -v ms="$ms" '$1 "/" $2 "/" $3 "/" $4 == k { $5 = ms; print; exit }' \
		"$OUT/rounds" >>"$OUT/rows"
done
echo "CPU: $(sed -n 's/^model name[[:space:]]*: //p' /proc/cpuinfo | head -1), $(nproc) cores; $STEPS steps a run, ${ROUNDS:-1} round(s)${EXTRA:+; $EXTRA}"
echo
echo "| hosts | link | model | gradients | wire bytes/step (all ranks) | step ms (median) | vs compute-only | speed-up vs float32-overlap |"
echo "|---|---|---|---|---|---|---|---|"
awk '
	$4 == "compute-only" { c[$1 " " $3] = $5; next }
	$4 == "float32-overlap" { f[$1 " " $2 " " $3] = $5 }
	{ row[++n] = $0 }
	END {
		for (i = 1; i <= n; i++) {
			split(row[i], x, " ")
			printf "| %s | %s | %s | %s | %.2f MB | %.1f | %.2fx | %.2fx |\n", x[1], x[2], x[3], x[4],
				x[6] / 1e6, x[5], x[5] / c[x[1] " " x[3]], f[x[1] " " x[2] " " x[3]] / x[5]
		}
		for (k in c)
			printf "| %s | - | %s | compute-only | - | %.1f | 1.00x | - |\n", substr(k, 1, index(k, " ") - 1),
				substr(k, index(k, " ") + 1), c[k]
	}' "$OUT/rows"
