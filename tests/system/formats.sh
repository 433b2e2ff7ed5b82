#!/bin/sh
# formats.sh -- files written by an earlier sfp still load and mean the same:
# tests/system/formats/ holds checkpoints and an integer model written by
# the sfp of before the layout step (commit 0473305) for tiny.yaml there.
#  - a BitWave run resumed from its checkpoint of step 10 writes, at step
#    20, the very bytes the earlier sfp wrote (weights, buffers, optimizer,
#    widths and the controller's state carried through);
#  - `sfp export` of the float checkpoint writes the very .sfpq the earlier
#    sfp wrote, and `sfp eval --model` of that file gives its accuracy.
# The files were written on an AVX-512 machine (AMD EPYC Zen 4); the layer
# kernels pick their ISA at run time and a narrower one sums in another
# order, so elsewhere only loading and running are checked.
set -u
. "$(dirname "$0")/common.inc"
# same BYTES WANT DESCRIPTION: the file BYTES equals WANT
same() {
	if ! grep -q avx512f /proc/cpuinfo 2>/dev/null; then
		echo "skip $3: no AVX-512 here (the files come from an AVX-512 machine)"
	elif cmp -s "$1" "$2"; then
		ok "$3"
	else
		bad "$3: $1 differs from $2"
	fi
}
W=${BUILD:-build}/bin/sfp-worker
F=tests/system/formats
CFG=$F/tiny.yaml
FLOAT="--set bitlength.policy=fixed --set bitlength.e=8 --set bitlength.m=23"

mkdir -p "$T/old"
cp "$F/bitwave-ckpt-10.sfpk" "$T/old/ckpt-10.sfpk"
expect 0 "resume an earlier version's BitWave checkpoint" "$W" --config $CFG --resume "$T/old" \
	--set checkpoint.dir="$T/new" --set checkpoint.every_steps=10 --set checkpoint.keep=5 --quiet
same "$T/new/ckpt-20.sfpk" "$F/bitwave-ckpt-20.sfpk" "step 20 is byte for byte the earlier version's"

expect 0 "export the earlier version's float checkpoint" "$SFP" export --config $CFG $FLOAT \
	--checkpoint "$F/float-ckpt-20.sfpk" --steps 10 --set prune.fix_steps=5 --activations \
	--out "$T/tiny.sfpq" --quiet
same "$T/tiny.sfpq" "$F/tiny.sfpq" "the .sfpq is byte for byte the earlier version's"
expect 0 "eval the earlier version's .sfpq" "$SFP" eval --config $CFG $FLOAT --model "$F/tiny.sfpq"
want="^test_acc 0.7031  test_loss 0.7737 "
grep -q avx512f /proc/cpuinfo 2>/dev/null || want="^test_acc 0\.[0-9]*  test_loss"
grep -q "$want" "$T/out" && ok "its accuracy as at export (0.7031 on AVX-512)" || bad "eval: $(cat "$T/out")"
# and an earlier checkpoint of another run is refused, naming the difference
expect 2 "a BitWave checkpoint under a float config is refused" "$W" --config $CFG $FLOAT \
	--resume "$F/bitwave-ckpt-10.sfpk" --quiet
grep -q "belongs to a different model" "$T/err" && ok "the mismatch is named" || bad "message: $(cat "$T/err")"

echo "formats.sh: $fails failed"
[ "$fails" -eq 0 ]
