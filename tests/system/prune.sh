#!/bin/sh
# prune.sh -- BitPruning from the command line: `sfp export` fine-tunes a
# short float checkpoint into an integer model (weights, and with
# --activations the layers' inputs), `sfp eval --model` gives the same
# accuracy and the widths; usage errors, a model of another config, a
# corrupted or truncated .sfpq are refused (exit 2, file named), and a
# failed export leaves no file.
set -u
. "$(dirname "$0")/common.inc"
W=${BUILD:-build}/bin/sfp-worker
CFG=deploy/examples/fmnist-cnn.yaml
SLICE="--set data.train_limit=640 --set data.test_limit=256 --set log.every=5 --set train.max_steps=10"

expect 0 "a float checkpoint to start from" "$W" --config $CFG $SLICE --set checkpoint.dir="$T/ck" --quiet
expect 0 "export --help" "$SFP" export --help
expect 2 "export without --out" "$SFP" export --config $CFG --checkpoint "$T/ck"
expect 2 "export with a bad --granularity" "$SFP" export --config $CFG --checkpoint "$T/ck" --granularity row --out "$T/x.sfpq"
grep -q -- "--granularity: bad value 'row'" "$T/err" && ok "bad flag value named" || bad "flag message: $(cat "$T/err")"
expect 2 "export with a bad prune key" "$SFP" export --config $CFG $SLICE --checkpoint "$T/ck" --set prune.bits=20 --out "$T/x.sfpq"
expect 2 "export with widths out of order" "$SFP" export --config $CFG $SLICE --checkpoint "$T/ck" --set prune.min_bits=6 --set prune.bits=4 --out "$T/x.sfpq"
grep -q "min_bits <= bits <= max_bits" "$T/err" && ok "width range explained" || bad "range message: $(cat "$T/err")"
expect 2 "export from a missing checkpoint" "$SFP" export --config $CFG $SLICE --checkpoint "$T/none" --out "$T/x.sfpq"
[ ! -e "$T/x.sfpq" ] && ok "no output after a failed export" || bad "partial export left"

# layer and channel granularity, memory and ops penalties
for g in layer channel; do
	expect 0 "export --granularity $g" "$SFP" export --config $CFG $SLICE --checkpoint "$T/ck" \
		--granularity $g --penalty ops --gamma 0.05 --steps 20 --set prune.fix_steps=5 \
		--set prune.lr=0.1 --out "$T/$g.sfpq" --quiet
	grep -q "^test_acc 0\.[0-9]*  test_loss" "$T/out" && ok "$g: export prints accuracy" || bad "$g export: $(cat "$T/out")"
	acc=$(sed -n 's/^test_acc \([0-9.]*\).*/\1/p' "$T/out")
	grep -q "^average bits: [0-9.]* per weight" "$T/out" && ok "$g: average bits" || bad "$g bits: $(cat "$T/out")"
	expect 0 "eval --model ($g)" "$SFP" eval --config $CFG $SLICE --model "$T/$g.sfpq"
	grep -q "^test_acc $acc  test_loss" "$T/out" && ok "$g: eval of the file = accuracy at export ($acc)" || bad "$g eval: $(cat "$T/out")"
	grep -q "^fc1 " "$T/out" && grep -q "^conv1 " "$T/out" && ok "$g: per-layer table" || bad "$g table: $(cat "$T/out")"
done
grep -q "^conv2  *32 " "$T/out" && ok "channel: one width per output channel" || bad "channel groups: $(cat "$T/out")"
size=$(wc -c <"$T/channel.sfpq")
grep -q "^file $size bytes" "$T/out" && ok "reported size is the file's" || bad "size $size: $(cat "$T/out")"

# the inputs of linear/conv layers quantized too
expect 0 "export --activations" "$SFP" export --config $CFG $SLICE --checkpoint "$T/ck" --activations \
	--gamma 0.05 --steps 20 --set prune.fix_steps=5 --set prune.lr=0.1 --out "$T/act.sfpq" --quiet
acc=$(sed -n 's/^test_acc \([0-9.]*\).*/\1/p' "$T/out")
grep -q "^input bits: [0-9.]* per value" "$T/out" && ok "activations: input bits reported" || bad "input bits: $(cat "$T/out")"
expect 0 "eval --model (activations)" "$SFP" eval --config $CFG $SLICE --model "$T/act.sfpq"
grep -q "^test_acc $acc  test_loss" "$T/out" && ok "activations: eval of the file = accuracy at export ($acc)" || bad "act eval: $(cat "$T/out")"
grep -q "^conv1 .*(signed, " "$T/out" && grep -q "^fc1 .*(unsigned, " "$T/out" && ok "signed data, unsigned after ReLU" || bad "grids: $(cat "$T/out")"

# refused: another model, corruption, truncation, not a model at all
expect 2 "eval --model with another config" "$SFP" eval --config deploy/examples/fmnist-mlp.yaml $SLICE --model "$T/layer.sfpq"
grep -q "different model" "$T/err" && ok "model mismatch explained" || bad "mismatch: $(cat "$T/err")"
cp "$T/layer.sfpq" "$T/bad.sfpq"
printf '\377' | dd of="$T/bad.sfpq" bs=1 seek=5000 conv=notrunc 2>/dev/null
expect 2 "corrupted .sfpq" "$SFP" eval --config $CFG $SLICE --model "$T/bad.sfpq"
grep -q "bad.sfpq': payload checksum mismatch" "$T/err" && ok "corruption named" || bad "corrupt: $(cat "$T/err")"
head -c 3000 "$T/layer.sfpq" >"$T/short.sfpq"
expect 2 "truncated .sfpq" "$SFP" eval --config $CFG $SLICE --model "$T/short.sfpq"
grep -q "short.sfpq' has 3000 bytes" "$T/err" && ok "truncation named" || bad "truncated: $(cat "$T/err")"
expect 2 "a checkpoint is not an integer model" "$SFP" eval --config $CFG $SLICE --model "$T/ck/ckpt-10.sfpk"
grep -q "bad magic" "$T/err" && ok "bad magic explained" || bad "magic: $(cat "$T/err")"
expect 2 "missing .sfpq" "$SFP" eval --config $CFG $SLICE --model "$T/none.sfpq"
expect 2 "eval with both --model and --checkpoint" "$SFP" eval --config $CFG --model "$T/layer.sfpq" --checkpoint "$T/ck"
ls "$T" | grep -q tmp && bad "temporary file left" || ok "no temporaries left"

echo "prune.sh: $fails failed"
[ "$fails" -eq 0 ]
