#!/bin/sh
# gpt_widths.sh -- learned widths on the byte-level GPT of
# deploy/examples/fortunes-gpt.yaml (3000 steps, one thread): float32,
# QM+QE (Quantum Mantissa / Quantum Exponent) and BitWave, one full run a
# row, run one after the other.
#
#   bench/gpt_widths.sh                     float32, quantum, bitwave: seed 1
#   bench/gpt_widths.sh quantum             only the QM+QE row
#   SEEDS="1 2 3" bench/gpt_widths.sh quantum
#
# Rows: float32, quantum, bitwave, bitwave-m3 and bitwave-m2 (BitWave with
# a mantissa floor of 3, of 2), fixed-e3m3 (every tensor at e3 m3 from
# the start), and two QM+QE settings tried and not chosen, quantum-cnn
# and quantum-g03 (the overrides are below). STEPS
# (3000) changes the run length, OUT (build/gpt_widths) where the metrics logs
# stay (OUT/ROW-SEED.jsonl; `build/bin/sfp report` reads them); RUN=0 only
# prints the table from the logs already there.
# Columns: the held-out loss at the end (nats per byte), the footprint of
# the weights and stored activations at the packing widths (1 + ceil n_e +
# ceil n_m bits a value) and its reduction against float32, the encoded
# containers with Gecko (the bytes the packed stash holds), and the widths
# each kind of tensor ends at (count x widths). Needs build/fortunes
# (tools/fortunes.sh makes it).
set -eu
cd "$(dirname "$0")/.."
B=${BUILD:-build}
W=$B/bin/sfp-worker
CFG=deploy/examples/fortunes-gpt.yaml
STEPS=${STEPS:-3000}
SEEDS=${SEEDS:-1}
OUT=${OUT:-build/gpt_widths}
mkdir -p "$OUT"
[ -f build/fortunes/train.bin ] || tools/fortunes.sh >&2
cpu=$(sed -n 's/^model name[[:space:]]*: //p' /proc/cpuinfo | head -1)

# the overrides of each row
row_set() {
	case $1 in
	float32) echo "" ;;
	quantum) echo "bitlength.policy=quantum bitlength.e=8 bitlength.m=7 bitlength.lr=1
		bitlength.gamma=0.15 bitlength.gecko=true" ;;
	bitwave) echo "bitlength.policy=bitwave bitlength.m=7 bitlength.gecko=true" ;;
	# BitWave with a mantissa floor of 3 bits, of 2 bits
	bitwave-m3) echo "bitlength.policy=bitwave bitlength.m=7 bitlength.m_min=3
		bitlength.gecko=true" ;;
	bitwave-m2) echo "bitlength.policy=bitwave bitlength.m=7 bitlength.m_min=2
		bitlength.gecko=true" ;;
	# every tensor at e3 m3 from the first step (where bitwave-m3 ends)
	fixed-e3m3) echo "bitlength.policy=fixed bitlength.e=3 bitlength.m=3 bitlength.gecko=true" ;;
	# tried, not chosen: the CNN's settings, and a penalty twice the chosen
	quantum-cnn) echo "bitlength.policy=quantum bitlength.m=7 bitlength.gamma=0.05
		bitlength.gecko=true" ;;
	quantum-g03) echo "bitlength.policy=quantum bitlength.e=8 bitlength.m=7 bitlength.lr=1
		bitlength.gamma=0.3 bitlength.gecko=true" ;;
	*) echo "gpt_widths.sh: unknown row '$1' (float32, quantum, bitwave, bitwave-m3," \
		"bitwave-m2, fixed-e3m3, quantum-cnn, quantum-g03)" >&2; exit 2 ;;
	esac
}

rows=${*:-float32 quantum bitwave}
for r in $rows; do
	sets=""
	for kv in $(row_set "$r"); do
		sets="$sets --set $kv"
	done
	for s in $SEEDS; do
		[ "${RUN:-1}" = 0 ] && continue
		echo "  $r, seed $s ($STEPS steps):$sets" >&2
		# shellcheck disable=SC2086 # the overrides are words
		nice "$W" --config $CFG --quiet --set train.max_steps="$STEPS" --set train.seed="$s" \
			--set train.threads=1 --set log.metrics="$OUT/$r-$s.jsonl" $sets
	done
done

echo "byte-level GPT on fortunes, $STEPS steps, learned widths; CPU: $cpu"
echo
echo "| row | seed | held-out loss | bits/value | reduction | packed | with Gecko | widths at the end |"
echo "|---|---:|---:|---:|---:|---:|---:|---|"
for r in $rows; do
	for s in $SEEDS; do
		awk -v row="$r" -v seed="$s" '
		function num(key,   v) {
			if (!match($0, "\"" key "\":[-0-9.e+]+"))
				return ""
			v = substr($0, RSTART, RLENGTH)
			sub(/.*:/, "", v)
			return v + 0
		}
		/"val_loss"/ { loss = num("val_loss") }
		/"footprint_bits_per_value"/ {
			bits = num("footprint_bits_per_value"); red = num("reduction_vs_fp32")
			pk = num("packed_reduction_vs_fp32"); gk = num("gecko_reduction_vs_fp32")
			last = num("step")
		}
		/"kind":/ {
			st = num("step")
			if (st != wstep) { delete hist; delete seen; delete kinds; nk = 0; wstep = st }
			match($0, /"kind":"[a-z]+"/)
			k = substr($0, RSTART + 8, RLENGTH - 9)
			w = "e" num("e") " m" num("m")
			if (!((k, w) in hist)) { order[k, ++seen[k]] = w }
			hist[k, w]++
			if (!(k in kinds)) { kinds[k] = 1; kl[++nk] = k }
		}
		END {
			if (bits == "") { bits = 32; red = 1; pk = ""; gk = "" }
			ws = ""
			for (i = 1; i <= nk; i++) {
				k = kl[i]; ws = ws (ws == "" ? "" : "; ") k ":"
				for (j = 1; j <= seen[k]; j++)
					ws = ws " " hist[k, order[k, j]] "x " order[k, j]
			}
			if (ws == "") ws = "e8 m23"
			printf "| %s | %s | %.4f | %.2f | %.2fx | %s | %s | %s |\n", row, seed, loss, bits, red,
				pk == "" ? "-" : sprintf("%.2fx", pk), gk == "" ? "-" : sprintf("%.2fx", gk), ws
		}' "$OUT/$r-$s.jsonl"
	done
done
