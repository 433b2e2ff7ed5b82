#!/bin/sh
# dist.sh -- `make bench-dist`: data-parallel training steps on 2 and 4
# ranks (mpirun, oversubscribed on this machine) of the CNN, the ResNet and
# the byte-level GPT (fortunes-gpt.yaml at its batch of 16 windows; its data
# from tools/fortunes.sh, made if missing), the gradient exchange done by
# each peer in turn, side by side in one run:
#   float32   MPI_Allreduce on float32 (parallel.allreduce=native), in
#             buckets behind backward (the DDP-like foil) and, -after, the
#             same buckets after backward (parallel.overlap=false)
#   fp16/bf16 16-bit casts, summed in a ring (what DDP's fp16 hook sends)
#   sfp       containers at e4m2 with error feedback, raw exponents / Gecko
#             (ring, the default; -after without overlap; and the
#             all-gather scheme with Gecko)
#   torch     PyTorch DDP over Gloo, plain and with its fp16 compression hook
#             (bench/torch_ddp.py, when python3-torch is installed; the GPT
#             is bench/torch_gpt.py's model)
# Wire bytes are what every rank sent per step, summed over the ranks
# (sfp counts its messages; MPI_Allreduce and Gloo are counted as the ring
# algorithm sends: 2 (N-1)/N of the tensor per rank). Step time: median
# over the logged intervals after the first. The GPT's final evaluation
# reads only the first 64 windows of val.bin (a copy; token data has no
# data.test_limit), which no timing includes either way.
#
#   bench/dist.sh [STEPS] [MODELS] [RANKS]     (defaults 40 "cnn resnet gpt" "2 4")
set -eu
cd "$(dirname "$0")/.."
. bench/steps.inc
B=${BUILD:-build}
STEPS=${1:-40}
MODELS=${2:-cnn resnet gpt}
RANKS=${3:-2 4}
PY=/usr/bin/python3
OUT=$(mktemp -d)
trap 'rm -rf "$OUT"' EXIT
MPI="mpirun --oversubscribe --bind-to none"
[ "$(id -u)" -eq 0 ] && MPI="$MPI --allow-run-as-root"
EVERY=$((STEPS / 8))
[ "$EVERY" -lt 1 ] && EVERY=1

# run NAME MODEL N ARGS...: one sfp-worker job; prints "NAME MODEL N wire_bytes step_ms"
run() {
	name=$1 model=$2 n=$3
	shift 3
	log="$OUT/$name-$model-$n.jsonl"
	cfg=$(model_config "$model")
	if [ "$model" = gpt ]; then
		set -- --set data.test.x="$OUT/val.bin" "$@"
	else
		set -- --set data.test_limit=64 "$@"
	fi
	$MPI -np "$n" "$B/bin/sfp-worker" --config "$cfg" --quiet \
		--set train.max_steps="$STEPS" --set train.threads=1 --set log.every="$EVERY" \
		--set train.eval_every_epochs=0 --set log.metrics="$log" "$@" >&2
	wire=$(grep '"kind":"gradients"' "$log" | tail -n +2 | sed 's/.*"wire_bytes":\([0-9]*\).*/\1/' | median)
	ms=$(step_ms "$log" "$model")
	echo "$name $model $n $wire $ms"
}

torch_run() {
	name=$1 model=$2 n=$3
	shift 3
	$PY bench/torch_ddp.py --config "$(model_config "$model")" --ranks "$n" --steps "$STEPS" "$@" |
		sed 's/.*"step_ms_median": *\([0-9.]*\).*"wire_bytes_per_step": *\([0-9.]*\).*/\2 \1/' |
		awk -v nm="$name" -v m="$model" -v n="$n" '{ printf "%s %s %s %.0f %s\n", nm, m, n, $1 * n, $2 }'
}

have_torch=0
if [ -f bench/torch_ddp.py ] && $PY -c 'import torch' 2>/dev/null; then have_torch=1; fi
[ $have_torch -eq 1 ] || echo "dist.sh: no PyTorch DDP peer (python3-torch or bench/torch_ddp.py missing)" >&2
case " $MODELS " in
*" gpt "*)
	[ -f build/fortunes/train.bin ] || BUILD=$B tools/fortunes.sh >&2
	# 64 windows of 64 tokens and the one after: the final evaluation's share
	head -c $(((64 * 64 + 1) * 2)) build/fortunes/val.bin >"$OUT/val.bin"
	;;
esac

for model in $MODELS; do
	for n in $RANKS; do
		echo "  $model, $n ranks" >&2
		run float32 "$model" "$n" --set parallel.allreduce=native >>"$OUT/rows"
		run float32-after "$model" "$n" --set parallel.allreduce=native \
			--set parallel.overlap=false >>"$OUT/rows"
		run fp16 "$model" "$n" --set parallel.grad_cast=fp16 >>"$OUT/rows"
		run bf16 "$model" "$n" --set parallel.grad_cast=bf16 >>"$OUT/rows"
		run sfp-e4m2 "$model" "$n" --set parallel.grad_e=4 --set parallel.grad_m=2 >>"$OUT/rows"
		run sfp-e4m2-gecko "$model" "$n" --set parallel.grad_e=4 --set parallel.grad_m=2 \
			--set parallel.grad_gecko=true >>"$OUT/rows"
		run sfp-e4m2-gecko-after "$model" "$n" --set parallel.grad_e=4 --set parallel.grad_m=2 \
			--set parallel.grad_gecko=true --set parallel.overlap=false >>"$OUT/rows"
		run sfp-e4m2-gecko-allgather "$model" "$n" --set parallel.grad_e=4 --set parallel.grad_m=2 \
			--set parallel.grad_gecko=true --set parallel.allreduce=allgather >>"$OUT/rows"
		if [ $have_torch -eq 1 ]; then
			torch_run torch-ddp "$model" "$n" >>"$OUT/rows"
			torch_run torch-ddp-fp16 "$model" "$n" --fp16-hook >>"$OUT/rows"
		fi
	done
done

echo "| model | ranks | gradients | wire bytes/step (all ranks) | fewer than float32 | step ms (median) | step time vs float32 |"
echo "|---|---|---|---|---|---|---|"
awk '
	$1 == "float32" { fw[$2 " " $3] = $4; fs[$2 " " $3] = $5 }
	{ row[NR] = $0 }
	END {
		for (i = 1; i <= NR; i++) {
			split(row[i], f, " ")
			k = f[2] " " f[3]
			printf "| %s | %s | %s | %.2f MB | %.1fx | %.1f | %.2fx |\n", f[2], f[3], f[1], f[4] / 1e6,
				fw[k] / f[4], f[5], f[5] / fs[k]
		}
	}' "$OUT/rows"
