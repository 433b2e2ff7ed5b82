#!/bin/sh
# refine_train.sh -- training with decoder-side refinement (docs/refine.md):
# fmnist-cnn at fixed e4m1 containers (equal footprint: only the side bytes
# differ) and with QM+QE learning its widths from e5m4, each with the tools
# off, the shift, the bias, and both. Prints one row per run: test accuracy,
# final loss and the footprint the trainer reports (side bytes included).
# EPOCHS (default 2) sets the length, SEEDS (default 1) the train.seed values,
# POLICIES and TOOLS narrow the grid; run from the repository root.
set -eu
B=${BUILD:-build}
W=$B/bin/sfp-worker
CFG=deploy/examples/fmnist-cnn.yaml
EPOCHS=${EPOCHS:-2}
SEEDS=${SEEDS:-1}
POLICIES=${POLICIES:-fixed quantum}
TOOLS=${TOOLS:-off shift bias both}
T=$(mktemp -d)
trap 'rm -rf "$T"' EXIT
printf '%-8s %-6s %-12s %9s %9s %12s\n' policy seed tools test_acc loss bits/value
for seed in $SEEDS; do
for policy in $POLICIES; do
	if [ $policy = fixed ]; then
		W0="--set bitlength.e=4 --set bitlength.m=1"
	else
		W0="--set bitlength.e=5 --set bitlength.m=4"
	fi
	for tools in $TOOLS; do
		case $tools in
		off) R="" ;;
		shift) R="--set bitlength.refine_shift=true" ;;
		bias) R="--set bitlength.refine_bias=tensor" ;;
		both) R="--set bitlength.refine_shift=true --set bitlength.refine_bias=tensor" ;;
		esac
		log=$T/$policy-$seed-$tools.jsonl
		"$W" --config $CFG --quiet --set train.epochs="$EPOCHS" --set train.seed="$seed" \
			--set bitlength.policy=$policy \
			$W0 $R --set log.metrics="$log"
		acc=$(grep '"test_acc"' "$log" | tail -1 | sed 's/.*"test_acc":\([0-9.]*\).*/\1/')
		loss=$(grep '"test_loss"' "$log" | tail -1 | sed 's/.*"test_loss":\([0-9.]*\).*/\1/')
		bits=$(grep '"footprint_bits_per_value"' "$log" | tail -1 |
			sed 's/.*"footprint_bits_per_value":\([0-9.]*\).*/\1/')
		printf '%-8s %-6s %-12s %9s %9s %12s\n' $policy "$seed" $tools "$acc" "$loss" "$bits"
	done
done
done
