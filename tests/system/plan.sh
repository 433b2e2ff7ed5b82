#!/bin/sh
# plan.sh -- `sfp plan`, the scaling model (docs/scaling.md): it measures
# one host of the MLP and predicts the step on 2 and 64 hosts; the
# predictions keep the model's orders (behind backward never slower than
# after it, a slower link never faster, compressed gradients win on a slow
# link); bad options are named.
set -u
. "$(dirname "$0")/common.inc"
MLP="--config deploy/examples/fmnist-mlp.yaml --set data.train_limit=2560 --set data.test_limit=256"

expect 0 "sfp plan of the MLP" "$SFP" plan $MLP --hosts 2,64 --links 0.1,1,100 --compute-ms 5
grep -q "^one host (.*batch 64 per host.*step [0-9.]* ms (the model uses --compute-ms), backward [0-9.]* ms" "$T/out" &&
	ok "one host's step and backward measured" || bad "host line: $(head -1 "$T/out")"
grep -q "^gradients at e4 m2 + Gecko: [0-9.]* bits/value" "$T/out" && ok "the containers measured" ||
	bad "codec line: $(sed -n 2p "$T/out")"
# rows: | hosts | link | scheme | f32 after | f32 behind | sfp after | sfp behind | ...
rows=$(grep -c '^| [0-9]* | [0-9.]* | [a-z]* |' "$T/out")
[ "$rows" -eq 18 ] && ok "18 rows: 2 host counts x 3 links x 3 schemes" || bad "$rows rows: $(cat "$T/out")"
awk -F'|' '/^\| [0-9]+ \| [0-9.]+ \| [a-z]+ \|/ {
		if ($6 + 0 > $5 + 0.05 || $8 + 0 > $7 + 0.05 || $6 + 0 < 5 || $8 + 0 < 5) bad = 1
	} END { exit bad }' "$T/out" && ok "behind backward never slower than after it, never below the compute" ||
	bad "order: $(grep '^| ' "$T/out")"
slow=$(awk -F'|' '$2 + 0 == 64 && $3 + 0 == 0.1 && $4 ~ /ring/ { print $6 / $8 }' "$T/out")
fast=$(awk -F'|' '$2 + 0 == 64 && $3 + 0 == 100 && $4 ~ /ring/ { print $6 / $8 }' "$T/out")
awk -v s="$slow" -v f="$fast" 'BEGIN { exit !(s > 2 && s > f) }' &&
	ok "64 hosts at 100 Mbit/s: sfp ${slow}x faster than float32, more than at 100 Gbit/s (${fast}x)" ||
	bad "speed-ups: 0.1 Gbit/s $slow, 100 Gbit/s $fast"
grep -q "^link rate below which sfp's step is faster (ring, both behind backward): 2 hosts: .*; 64 hosts: " "$T/out" &&
	ok "the crossover link rate per host count" || bad "crossover: $(tail -1 "$T/out")"

expect 2 "plan without --config" "$SFP" plan --hosts 2
expect 2 "a host count of 1" "$SFP" plan $MLP --hosts 1,2
grep -q "hosts: a list like 2,4,64" "$T/err" && ok "says what --hosts takes" || bad "message: $(cat "$T/err")"
expect 2 "a host count of 2.5" "$SFP" plan $MLP --hosts 2.5
grep -q "whole host counts, not 2.5" "$T/err" && ok "is refused, not rounded" || bad "message: $(cat "$T/err")"
expect 2 "a link efficiency above 1" "$SFP" plan $MLP --link-efficiency 1.5

echo "plan.sh: $fails failed"
[ "$fails" -eq 0 ]
