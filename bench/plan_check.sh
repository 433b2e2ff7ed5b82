#!/bin/sh
# plan_check.sh -- the scaling model (`sfp plan`, docs/scaling.md) against
# the rehearsed cluster (bench/rehearse.sh), side by side in one run: for
# each host count, link rate and model, the measured median step of
# float32 and sfp (after and behind backward) and the model's prediction
# from the compute-only step the rehearsal measured at each host's share of
# the batch, the link efficiency TCP reaches through the rehearsal's links
# (deploy/rehearse-cluster.sh speed) and the ring all-reduce. Root only
# (exits 77 where the machine cannot rehearse).
#
#   bench/plan_check.sh [STEPS] [MODELS] [RATES] [HOSTS]
#       defaults: 60 "cnn" "100mbit 1gbit 10gbit" "2 4"; ROUNDS as rehearse.sh
set -eu
cd "$(dirname "$0")/.."
. bench/steps.inc
B=${BUILD:-build}
STEPS=${1:-60}
MODELS=${2:-cnn}
RATES=${3:-100mbit 1gbit 10gbit}
HOSTS=${4:-2 4}
R=deploy/rehearse-cluster.sh
$R check >&2 || exit $?
OUT=$(mktemp -d)
trap '$R down >/dev/null 2>&1 || true; rm -rf "$OUT"' EXIT

# gbit RATE: a tc rate (100mbit, 1gbit, 10gbit) in Gbit/s
gbit() { echo "$1" | awk '/gbit$/ { print $0 + 0; next } /mbit$/ { print ($0 + 0) / 1000; next } { print "nan" }'; }

# the share of each rate a TCP transfer gets through the rehearsal's links
for rate in $RATES; do
	$R up 2 "$rate" >/dev/null
	eff=$($R speed | sed -n 's/.*(\([0-9.]*\) Gbit\/s; link.*/\1/p' | awk -v g="$(gbit "$rate")" '{ printf "%.3f", $1 / g }')
	$R down >/dev/null
	[ "$(awk -v e="$eff" 'BEGIN { print (e > 1 ? 1 : e) }')" = "$eff" ] || eff=1
	echo "$rate $eff" >>"$OUT/eff"
	echo "  $rate: TCP gets $eff of the link" >&2
done

sh bench/rehearse.sh "$STEPS" "$MODELS" "$RATES" "$HOSTS" >"$OUT/measured" 2>"$OUT/rehearse.err" ||
	{ cat "$OUT/rehearse.err" >&2; exit 1; }
head -1 "$OUT/measured"
echo
echo "| hosts | link | model | gradients | measured step ms | predicted ms | error |"
echo "|---|---|---|---|---:|---:|---:|"
for hosts in $HOSTS; do
	for model in $MODELS; do
		co=$(awk -F'|' -v h="$hosts" -v m="$model" '$2 + 0 == h && $4 ~ " "m" " && $5 ~ /compute-only/ { print $7 + 0 }' "$OUT/measured")
		cfg=$(model_config "$model")
		b=$(sed -n 's/^ *batch_size: *\([0-9]*\).*/\1/p' "$cfg" | head -1)
		share=$(((b + hosts - 1) / hosts))
		for rate in $RATES; do
			eff=$(awk -v r="$rate" '$1 == r { print $2 }' "$OUT/eff")
			"$B/bin/sfp" plan --config "$cfg" --batch "$share" --hosts "$hosts" --links "$(gbit "$rate")" \
				--compute-ms "$co" --link-efficiency "$eff" --set train.threads=1 >"$OUT/plan" 2>>"$OUT/plan.err" ||
				{ cat "$OUT/plan.err" >&2; exit 1; }
			# the ring row: | N | g | ring | f32 after | f32 behind | sfp after | sfp behind | ...
			pred=$(awk -F'|' '$4 ~ /ring/ { print $5 + 0, $6 + 0, $7 + 0, $8 + 0 }' "$OUT/plan")
			for k in 1 2 3 4; do
				name=$(echo "float32-after float32-overlap sfp-after sfp-overlap" | cut -d' ' -f$k)
				p=$(echo "$pred" | cut -d' ' -f$k)
				meas=$(awk -F'|' -v h="$hosts" -v r="$rate" -v m="$model" -v n="$name" \
					'$2 + 0 == h && $3 ~ " "r" " && $4 ~ " "m" " && $5 ~ " "n" " { print $7 + 0 }' "$OUT/measured")
				awk -v h="$hosts" -v r="$rate" -v m="$model" -v n="$name" -v x="$meas" -v p="$p" 'BEGIN {
					printf "| %s | %s | %s | %s | %.1f | %.1f | %+.0f%% |\n", h, r, m, n, x, p, 100 * (p - x) / x }'
			done
		done
	done
done
echo
echo "the rehearsal's own table:"
tail -n +2 "$OUT/measured"
