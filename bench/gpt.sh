#!/bin/sh
# gpt.sh -- the byte-level GPT of deploy/examples/fortunes-gpt.yaml beside
# PyTorch (Debian's python3-torch, CPU; bench/torch_gpt.py: the same model,
# initialisation, data files, batch 16, context 64, AdamW 1e-3, warm-up 100
# then cosine), run in turn in one script.
#
#   bench/gpt.sh                    speed: training tokens/s at 1 and 2 threads,
#                                   STEPS (300) steps a run, ROUNDS (2) rounds
#   MODE=quality bench/gpt.sh       held-out loss (nats per token) after STEPS
#                                   (3000) steps, SEEDS (3) seeds a side, 1 thread,
#                                   the two sides side by side
#
# sfp's tokens/s are its progress intervals' rates (log.every 50, the first
# interval left out); PyTorch's are over its steps after 10 warm-up steps.
# PyTorch runs as the machine has it and with OPENBLAS_CORETYPE=SkylakeX
# (Debian's OpenBLAS 0.3.21 does not know the newest CPUs and may fall back
# to old kernels; bench/train.sh says more): the table takes its better one.
# At 2 threads PyTorch runs in its two thread layouts (below): left to
# itself OpenBLAS's pthread build starts one thread per core under each of
# PyTorch's intra-op threads, oversubscribing the cores.
# Needs build/fortunes (tools/fortunes.sh makes it).
set -eu
cd "$(dirname "$0")/.."
B=${BUILD:-build}
W=$B/bin/sfp-worker
PY=/usr/bin/python3
CFG=deploy/examples/fortunes-gpt.yaml
MODE=${MODE:-speed}
OUT=$(mktemp -d)
trap 'rm -rf "$OUT"' EXIT
if ! $PY -c 'import torch' 2>/dev/null; then
	echo "gpt.sh: python3-torch is not installed (deploy/install-deps.sh --bench)" >&2
	exit 2
fi
[ -f build/fortunes/train.bin ] || tools/fortunes.sh >&2
cpu=$(sed -n 's/^model name[[:space:]]*: //p' /proc/cpuinfo | head -1)

# median of the numbers on stdin
median() { sort -g | awk '{ v[NR] = $1 } END { if (NR % 2) print v[(NR + 1) / 2]; else print (v[NR / 2] + v[NR / 2 + 1]) / 2 }'; }
# sfp_run TAG ARGS...: sfp-worker on the GPT, its metrics log in $OUT/TAG.jsonl
sfp_run() {
	tag=$1
	shift
	"$W" --config $CFG --set log.metrics="$OUT/$tag.jsonl" --quiet "$@"
}

if [ "$MODE" = speed ]; then
	STEPS=${STEPS:-300}
	ROUNDS=${ROUNDS:-2}
	# PyTorch's thread layouts at T threads: T intra-op threads over
	# single-threaded OpenBLAS calls, or one intra-op thread over T-threaded
	# OpenBLAS ("intra:blas"; both at T oversubscribes the cores, slower
	# than one thread here), each with the machine's and the SkylakeX
	# kernels; the table takes the best median
	layouts() { if [ "$1" -eq 1 ]; then echo "1:1"; else echo "$1:1 1:$1"; fi; }
	for r in $(seq "$ROUNDS"); do
		for t in 1 2; do
			echo "  round $r, $t thread(s)" >&2
			sfp_run "sfp-$t-$r" --set train.max_steps="$STEPS" --set log.every=50 \
				--set train.threads="$t"
			sed -n 's/.*"step":\([0-9]*\),.*"samples_per_s":\([0-9.]*\).*/\1 \2/p' \
				"$OUT/sfp-$t-$r.jsonl" | awk '$1 > 50 { print $2 }' >>"$OUT/sfp-$t"
			for lay in $(layouts "$t"); do
				intra=${lay%:*} blas=${lay#*:}
				for core in default SkylakeX; do
					if [ $core = default ]; then
						OPENBLAS_NUM_THREADS=$blas $PY bench/torch_gpt.py --steps "$STEPS" \
							--threads "$intra" >"$OUT/pt.json"
					else
						OPENBLAS_NUM_THREADS=$blas OPENBLAS_CORETYPE=$core $PY bench/torch_gpt.py \
							--steps "$STEPS" --threads "$intra" >"$OUT/pt.json"
					fi
					sed -n 's/.*"tokens_per_s": \([0-9.]*\).*/\1/p' "$OUT/pt.json" \
						>>"$OUT/pt-$t-$lay-$core"
				done
			done
		done
	done
	echo "byte-level GPT (4 blocks, width 128, context 64, batch 16), training tokens/s, medians;"
	echo "CPU: $cpu; PyTorch $($PY -c 'import torch; print(torch.__version__)') on OpenBLAS;"
	echo "PyTorch's layouts: intra-op threads : OpenBLAS threads, kernels (default or SkylakeX)"
	echo
	echo "| threads | sfp | PyTorch, each layout | best PyTorch | sfp / best PyTorch |"
	echo "|---:|---:|---|---:|---:|"
	for t in 1 2; do
		s=$(median <"$OUT/sfp-$t")
		all="" best=0
		for f in "$OUT"/pt-"$t"-*; do
			v=$(median <"$f")
			name=${f##*/pt-"$t"-}
			all="$all$name $(printf '%.0f' "$v"); "
			best=$(awk -v a="$best" -v b="$v" 'BEGIN { print (b > a ? b : a) }')
		done
		awk -v t="$t" -v s="$s" -v a="$all" -v b="$best" 'BEGIN {
			printf "| %d | %.0f | %s | %.0f | %.2fx |\n", t, s, a, b, s / b }'
	done
	exit 0
fi

STEPS=${STEPS:-3000}
SEEDS=${SEEDS:-3}
# the two sides run at once (one thread each, one core each on a 2-core
# machine); their held-out losses do not depend on the timing
for s in $(seq "$SEEDS"); do
	echo "  seed $s: sfp and PyTorch side by side ($STEPS steps each)" >&2
	sfp_run "q-$s" --set train.max_steps="$STEPS" --set train.seed="$s" &
	sp=$!
	$PY bench/torch_gpt.py --steps "$STEPS" --seed "$s" >"$OUT/pt-$s.json"
	wait $sp
	sed -n 's/.*"val_loss":\([0-9.]*\).*/\1/p' "$OUT/q-$s.jsonl" | tail -1 >>"$OUT/sfp-q"
	sed -n 's/.*"val_loss": \([0-9.]*\).*/\1/p' "$OUT/pt-$s.json" >>"$OUT/pt-q"
done
echo "byte-level GPT on fortunes, held-out loss (nats per token) after $STEPS steps, $SEEDS seeds;"
echo "CPU: $cpu"
echo
echo "| | sfp | PyTorch |"
echo "|---|---:|---:|"
paste "$OUT/sfp-q" "$OUT/pt-q" | awk '{ printf "| seed %d | %.4f | %.4f |\n", NR, $1, $2; a += $1; b += $2 }
	END { printf "| **mean** | **%.4f** | **%.4f** |\n\nsfp / PyTorch: %.3f (%+.1f%%)\n", a / NR, b / NR, a / b, 100 * (a / b - 1) }'
