#!/bin/sh
# worker.sh -- sfp-worker and `sfp eval` from the command line: usage and
# config errors (exit 2, file:line:key), a short real run on a slice of
# Fashion-MNIST with metrics log and checkpoints, --resume, a corrupted
# checkpoint, evaluation, a plug-in layer, and one rank under real mpirun
# (tests/system/dist.sh runs the distributed jobs).
set -u
. "$(dirname "$0")/common.inc"
W=${BUILD:-build}/bin/sfp-worker
SLICE="--set data.train_limit=640 --set data.test_limit=256 --set log.every=5"

expect 0 "worker --help" "$W" --help
expect 2 "worker without --config" "$W"
expect 2 "worker with an unknown option" "$W" --config x.yaml --frobnicate
expect 2 "worker with a missing config" "$W" --config "$T/none.yaml"
grep -q "none.yaml" "$T/err" && ok "missing config is named" || bad "missing config message: $(cat "$T/err")"

printf 'model:\n  input: [1, 28, 28]\n  layers:\n    - {type: linear, out_features: 10}\ntrain:\n  batch_size: many\n' >"$T/bad.yaml"
expect 2 "wrong type in config" "$W" --config "$T/bad.yaml"
grep -q "bad.yaml:6: train.batch_size: expected an integer, got 'many'" "$T/err" && ok "error names file, line, key" || bad "config error message: $(cat "$T/err")"
printf 'model:\n  input: [1, 28, 28]\n  layers:\n    - {type: linear, name: fc, out_features: 10}\n' >"$T/shape.yaml"
expect 2 "layer that does not fit" "$W" --config "$T/shape.yaml"
grep -q "layer 'fc' (linear, line 4)" "$T/err" && ok "shape error names the layer and line" || bad "shape message: $(cat "$T/err")"
expect 2 "bad --set" "$W" --config deploy/examples/fmnist-mlp.yaml --set train.epochs=zero
grep -q -- "--set train.epochs=zero" "$T/err" && ok "--set error names the override" || bad "--set message: $(cat "$T/err")"

# a real run: 10 steps, checkpoint every 5, metrics log
expect 0 "train 10 steps" "$W" --config deploy/examples/fmnist-cnn.yaml $SLICE --set train.max_steps=10 \
	--set checkpoint.dir="$T/ck" --set checkpoint.every_steps=5 --set log.metrics="$T/m.jsonl"
grep -q "step 10/10" "$T/err" && grep -q "samples/s" "$T/err" && grep -q "ETA" "$T/err" && ok "progress line" || bad "progress: $(cat "$T/err")"
grep -q "test_acc" "$T/err" && ok "test accuracy printed" || bad "no test accuracy"
[ -f "$T/ck/ckpt-10.sfpk" ] && [ -f "$T/ck/ckpt-5.sfpk" ] && ok "checkpoints written" || bad "checkpoints: $(ls "$T/ck")"
grep -q '"step":10,.*"loss":' "$T/m.jsonl" && grep -q '"test_acc":' "$T/m.jsonl" && ok "metrics log records" || bad "metrics log: $(cat "$T/m.jsonl")"
grep -v '^{"step":' "$T/m.jsonl" | grep -q . && bad "a metrics record without step first" || ok "every record has step"

# resume from the folder (newest checkpoint) and train to 20
expect 0 "resume to 20 steps" "$W" --config deploy/examples/fmnist-cnn.yaml $SLICE --set train.max_steps=20 --resume "$T/ck"
grep -q "resumed from '$T/ck/ckpt-10.sfpk' at step 10" "$T/err" && ok "resume names the checkpoint" || bad "resume: $(cat "$T/err")"

# resumed at its last step: nothing to train; the final evaluation is the
# one the run logged (the same epoch, the same numbers)
mkdir -p "$T/ckend" && cp "$T/ck/ckpt-10.sfpk" "$T/ckend/"
expect 0 "resume at the last step" "$W" --config deploy/examples/fmnist-cnn.yaml $SLICE --set train.max_steps=10 \
	--resume "$T/ckend" --set log.metrics="$T/end.jsonl"
[ "$(grep test_acc "$T/end.jsonl")" = "$(grep test_acc "$T/m.jsonl")" ] && ok "its evaluation record is the run's" ||
	bad "evaluation: $(grep test_acc "$T/end.jsonl") vs $(grep test_acc "$T/m.jsonl")"

# evaluation of a checkpoint
expect 0 "sfp eval" "$SFP" eval --config deploy/examples/fmnist-cnn.yaml $SLICE --set train.max_steps=10 --checkpoint "$T/ck/ckpt-10.sfpk"
grep -q "^test_acc 0\.[0-9]*  test_loss" "$T/out" && ok "eval prints accuracy" || bad "eval output: $(cat "$T/out")"
expect 2 "sfp eval with a model that does not match" "$SFP" eval --config deploy/examples/fmnist-mlp.yaml $SLICE --checkpoint "$T/ck/ckpt-10.sfpk"
grep -q "different model" "$T/err" && ok "mismatched checkpoint refused" || bad "eval mismatch: $(cat "$T/err")"

# a corrupted checkpoint is refused, naming the file
cp "$T/ck/ckpt-10.sfpk" "$T/broken.sfpk"
printf '\377' | dd of="$T/broken.sfpk" bs=1 seek=200 conv=notrunc 2>/dev/null
expect 2 "corrupted checkpoint" "$W" --config deploy/examples/fmnist-cnn.yaml $SLICE --set train.max_steps=20 --resume "$T/broken.sfpk"
grep -q "broken.sfpk': payload checksum mismatch" "$T/err" && ok "corruption detected" || bad "corrupt: $(cat "$T/err")"
# a folder whose newest checkpoint is damaged resumes from the one before, saying so
mkdir -p "$T/ck2"
cp "$T/ck/ckpt-5.sfpk" "$T/ck2/" && cp "$T/broken.sfpk" "$T/ck2/ckpt-10.sfpk"
expect 0 "resume past a damaged newest checkpoint" "$W" --config deploy/examples/fmnist-cnn.yaml $SLICE --set train.max_steps=20 --resume "$T/ck2"
grep -q "ck2/ckpt-10.sfpk': payload checksum mismatch; trying the checkpoint before it" "$T/err" &&
	grep -q "resumed from '$T/ck2/ckpt-5.sfpk' at step 5" "$T/err" && ok "damaged newest skipped, named; resumed from step 5" ||
	bad "fallback: $(cat "$T/err")"
head -c 100 "$T/ck/ckpt-5.sfpk" >"$T/ck2/ckpt-5.sfpk"
expect 2 "a folder with no intact checkpoint" "$W" --config deploy/examples/fmnist-cnn.yaml $SLICE --set train.max_steps=20 --resume "$T/ck2"
grep -q "no intact checkpoint in '$T/ck2' (the newest: checkpoint '$T/ck2/ckpt-10.sfpk': payload checksum mismatch)" "$T/err" &&
	ok "no intact checkpoint: refused, naming the newest's damage" || bad "all damaged: $(cat "$T/err")"

# learned widths: a short quantum run, then sfp report (table + PNG)
expect 0 "quantum policy trains" "$W" --config deploy/examples/fmnist-cnn.yaml $SLICE --set train.max_steps=10 \
	--set bitlength.policy=quantum --set bitlength.m=6 --set bitlength.e=6 --set log.metrics="$T/q.jsonl"
grep -q "bits/value" "$T/err" && ok "progress shows bits per value" || bad "quantum progress: $(cat "$T/err")"
grep -q '"layer":"conv1","kind":"weights","e":6,"m":[67],"n_e":' "$T/q.jsonl" && ok "width records logged" || bad "width records: $(head -3 "$T/q.jsonl")"
expect 0 "sfp report" "$SFP" report "$T/q.jsonl" --png "$T/q.png"
grep -q "relu1 *activations" "$T/out" && grep -q "smaller than float32" "$T/out" && ok "report table" || bad "report: $(cat "$T/out")"
head -c 8 "$T/q.png" | od -An -c | grep -q "P   N   G" && ok "report writes a PNG" || bad "no PNG"
expect 2 "sfp report on a log without widths" "$SFP" report "$T/m.jsonl"

# BitWave decides until bitlength.freeze of the run, then holds
for fz in 1 0.5 0; do
	expect 0 "bitwave, freeze $fz" "$W" --config deploy/examples/fmnist-cnn.yaml $SLICE --set train.max_steps=40 \
		--set log.every=20 --set bitlength.policy=bitwave --set bitlength.m=7 --set bitlength.period=5 \
		--set bitlength.freeze=$fz --set log.metrics="$T/fz$fz.jsonl"
done
# conv1's weight widths at STEP in the freeze run FZ, as eXmY
conv1_at() { grep "\"step\":$2,\"layer\":\"conv1\",\"kind\":\"weights\"" "$T/fz$1.jsonl" | sed 's/.*"e":\([0-9]*\),"m":\([0-9]*\).*/e\1m\2/'; }
w1_20=$(conv1_at 1 20) w1=$(conv1_at 1 40) w20=$(conv1_at 0.5 20) w40=$(conv1_at 0.5 40) w0=$(conv1_at 0 40)
# the same run up to the freeze point (step 20 of 40), then it holds while the unfrozen one moves on
[ "$w0" = e8m7 ] && [ -n "$w20" ] && [ "$w1_20" = "$w20" ] && [ "$w20" = "$w40" ] && [ "$w1" != "$w40" ] &&
	ok "bitwave: at freeze 0.5 the widths hold from step 20 ($w20) while the unfrozen run moves on ($w1); at 0 never move" ||
	bad "bitwave freeze: 1 -> $w1_20/$w1, 0.5 -> $w20/$w40, 0 -> $w0"

# the plug-in example trains
expect 0 "plug-in layer trains" "$W" --config deploy/examples/fmnist-plugin.yaml $SLICE --set train.max_steps=5

# under real mpirun, one rank trains
if command -v mpirun >/dev/null 2>&1; then
	MPI="mpirun --oversubscribe -x ASAN_OPTIONS=detect_leaks=0" # Open MPI's own allocations (see dist.sh)
	[ "$(id -u)" -eq 0 ] && MPI="$MPI --allow-run-as-root"
	expect 0 "mpirun -np 1" $MPI -np 1 "$W" --config deploy/examples/fmnist-mlp.yaml $SLICE --set train.max_steps=5
	grep -q "test_acc" "$T/err" && ok "mpirun -np 1 trains" || bad "mpirun -np 1: $(cat "$T/err")"
else
	echo "skip mpirun (not installed)"
fi

echo "worker.sh: $fails failed"
[ "$fails" -eq 0 ]
