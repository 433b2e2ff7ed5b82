#!/bin/sh
# gpt.sh -- token data and the transformer from the command line, on text the
# test writes: `sfp dataset text`, a one-block byte-level GPT trained by
# sfp-worker (the loss falls, tokens/s, held-out loss records), a resume
# that writes the uninterrupted run's bytes, `sfp eval` (held-out loss and
# perplexity, as the log says), `sfp generate` (seeded, the prompt first),
# learned widths on the GPT's tensors with `sfp report`, and bad input named
# (a token past the vocabulary, an input that is not [seq_len], a model that
# does not end in per-token scores).
set -u
. "$(dirname "$0")/common.inc"
W=${BUILD:-build}/bin/sfp-worker

# text: a few sentences over and over, in a shuffled order (learnable, not trivial)
awk 'BEGIN { srand(7); split("the quick brown fox jumps over the lazy dog.|a stitch in time saves nine.|all that glitters is not gold.|fortune favours the bold.|many hands make light work.", s, "|");
	for (i = 0; i < 1500; i++) print s[int(rand() * 5) + 1] }' >"$T/text.txt"
expect 0 "sfp dataset text" "$SFP" dataset text "$T/text.txt" --out "$T/tok" --val-fraction 0.1
grep -q "train.bin: [0-9]* tokens" "$T/out" && ok "it counts the tokens" || bad "dataset text: $(cat "$T/out")"

cat >"$T/gpt.yaml" <<YAML
model:
  input: [16]
  layers:
    - {type: embedding, name: wte, vocab: 256, dim: 32}
    - {type: position, name: wpe}
    - {type: layernorm, name: ln1}
    - {type: attention, name: attn, heads: 2}
    - {type: add, name: res1, from: wpe}
    - {type: layernorm, name: ln2}
    - {type: linear, name: fc, out_features: 64}
    - {type: gelu}
    - {type: linear, name: proj, out_features: 32}
    - {type: add, name: res2, from: res1}
    - {type: layernorm, name: lnf}
    - {type: linear, name: head, out_features: 256, tie: wte, bias: false}
data:
  dataset: tokens
  train: {x: $T/tok/train.bin}
  test: {x: $T/tok/val.bin}
  seq_len: 16
train:
  epochs: 10
  max_steps: 160
  batch_size: 8
  seed: 2
  optimizer: {type: adamw, lr: 0.005}
log:
  every: 20
YAML

expect 0 "a GPT trains on the tokens" "$W" --config "$T/gpt.yaml" --set log.metrics="$T/m.jsonl" \
	--set checkpoint.dir="$T/ck" --set checkpoint.every_steps=80 --set checkpoint.keep=5
grep -q "tokens/s" "$T/err" && ok "progress in tokens/s" || bad "progress: $(head -3 "$T/err")"
first=$(sed -n 's/.*"loss":\([0-9.]*\).*/\1/p' "$T/m.jsonl" | head -1)
last=$(sed -n 's/.*"loss":\([0-9.]*\).*/\1/p' "$T/m.jsonl" | tail -1)
awk -v a="$first" -v b="$last" 'BEGIN { exit !(b < 0.6 * a) }' &&
	ok "the loss falls ($first -> $last nats a token)" || bad "loss $first -> $last"
val=$(sed -n 's/.*"val_loss":\([0-9.]*\).*/\1/p' "$T/m.jsonl" | tail -1)
[ -n "$val" ] && grep -q '"val_ppl":' "$T/m.jsonl" && ok "held-out loss records ($val)" ||
	bad "no val_loss record: $(tail -2 "$T/m.jsonl")"
grep -q "val_loss .*perplexity" "$T/err" && ok "the evaluation line says held-out loss and perplexity" ||
	bad "eval line: $(tail -2 "$T/err")"

mkdir -p "$T/ck2" && cp "$T/ck/ckpt-80.sfpk" "$T/ck2/"
expect 0 "resume from step 80" "$W" --config "$T/gpt.yaml" --resume "$T/ck2" \
	--set checkpoint.dir="$T/ck2" --set checkpoint.every_steps=80 --set checkpoint.keep=5 --quiet
cmp -s "$T/ck/ckpt-160.sfpk" "$T/ck2/ckpt-160.sfpk" && ok "the resumed run writes the same step 160" ||
	bad "resumed step 160 differs"

expect 0 "sfp eval of the checkpoint" "$SFP" eval --config "$T/gpt.yaml" --checkpoint "$T/ck"
v=$(awk -v x="$val" 'BEGIN { printf "%.4f", x }')
grep -q "^val_loss $v  perplexity [0-9.]*  token_acc" "$T/out" && ok "eval: held-out loss $v as the log" ||
	bad "eval: $(cat "$T/out") (log $v)"

expect 0 "sfp generate" "$SFP" generate --config "$T/gpt.yaml" --checkpoint "$T/ck" --prompt "the " \
	--tokens 40 --temperature 0.5 --seed 3
cp "$T/out" "$T/g1"
grep -q "^the " "$T/g1" && ok "the text starts with the prompt" || bad "generate: $(cat "$T/g1")"
[ "$(wc -c <"$T/g1")" -ge 44 ] && ok "and goes on ($(head -c 60 "$T/g1" | tr '\n' ' '))" || bad "short: $(cat "$T/g1")"
"$SFP" generate --config "$T/gpt.yaml" --checkpoint "$T/ck" --prompt "the " --tokens 40 \
	--temperature 0.5 --seed 3 >"$T/g2" 2>&1
cmp -s "$T/g1" "$T/g2" && ok "the same seed gives the same text" || bad "seed 3 twice differs"
expect 2 "generate with a bad temperature" "$SFP" generate --config "$T/gpt.yaml" --checkpoint "$T/ck" \
	--temperature hot
expect 2 "generate without a checkpoint" "$SFP" generate --config "$T/gpt.yaml"

# learned widths on the GPT's weights and activations, read by sfp report
expect 0 "QM+QE on the GPT" "$W" --config "$T/gpt.yaml" --set bitlength.policy=quantum \
	--set bitlength.e=6 --set bitlength.m=6 --set train.max_steps=20 --set log.every=10 \
	--set log.metrics="$T/q.jsonl" --quiet
grep -q '"layer":"attn","kind":"weights"' "$T/q.jsonl" && grep -q '"layer":"fc","kind":"activations"' "$T/q.jsonl" &&
	ok "width records for attention's weights and the MLP's activations" || bad "widths: $(grep -m2 layer "$T/q.jsonl")"
expect 0 "sfp report of the GPT's log" "$SFP" report "$T/q.jsonl" --png "$T/q.png"
grep -q "^wte " "$T/out" && ok "the embedding's widths in the table" || bad "report: $(head -5 "$T/out")"

# bad input: named, never trained on
printf '\001\000\054\001\002\000' >"$T/bad.bin" # ids 1, 300, 2
i=0
while [ $i -lt 8 ]; do cat "$T/bad.bin"; i=$((i + 1)); done >"$T/bad8.bin"
expect 2 "a token id past the vocabulary" "$W" --config "$T/gpt.yaml" --set data.train.x="$T/bad8.bin" \
	--set data.test.x="$T/bad8.bin" --set data.seq_len=4 --set 'model.input=[4]' --quiet
grep -q "bad8.bin" "$T/err" && grep -q "300" "$T/err" && ok "the file and the id are named" ||
	bad "message: $(cat "$T/err")"
expect 2 "model.input not [seq_len]" "$W" --config "$T/gpt.yaml" --set data.seq_len=8 --quiet
grep -q "model.input: \[8\]" "$T/err" && ok "the input the data needs is named" || bad "message: $(cat "$T/err")"
sed 's/out_features: 256, tie: wte, bias: false/out_features: 100/' "$T/gpt.yaml" >"$T/few.yaml"
expect 2 "a model without per-token scores" "$W" --config "$T/few.yaml" --quiet
grep -q "scores per token" "$T/err" && ok "the last layer is named" || bad "message: $(cat "$T/err")"

# data parallel: 2 ranks see the step's global windows, each its share; with
# lossless gradients the losses are the single process's (the same records
# to the digits printed), compressed gradients train on, over MPI and nng;
# pipeline stages likewise
if command -v mpirun >/dev/null 2>&1; then
	mpi_init gpt.sh
	STEPS="--set train.max_steps=40 --set log.every=20"
	expect 0 "one process, 40 steps" "$W" --config "$T/gpt.yaml" $STEPS --set log.metrics="$T/one.jsonl" --quiet
	expect 0 "2 data-parallel ranks, lossless gradients" $MPI -np 2 "$W" --config "$T/gpt.yaml" $STEPS \
		--set log.metrics="$T/two.jsonl" --quiet
	losses() { grep -o '"loss":[0-9.]*\|"val_loss":[0-9.]*' "$1" | tr '\n' ' '; }
	[ -n "$(losses "$T/one.jsonl")" ] && [ "$(losses "$T/one.jsonl")" = "$(losses "$T/two.jsonl")" ] &&
		ok "2 ranks log the single process's losses ($(losses "$T/two.jsonl"))" ||
		bad "losses: one $(losses "$T/one.jsonl") / two $(losses "$T/two.jsonl")"
	for run in "2 mpi" "2 nng" "4 mpi" "4 nng"; do
		set -- $run
		tr=$2
		expect 0 "$1 ranks over $tr, gradients at e5 m2" $MPI -np "$1" "$W" --config "$T/gpt.yaml" \
			$STEPS --set parallel.transport=$tr --set parallel.grad_e=5 --set parallel.grad_m=2 \
			--set log.metrics="$T/c-$1$tr.jsonl" --quiet
		v1=$(sed -n 's/.*"val_loss":\([0-9.]*\).*/\1/p' "$T/one.jsonl")
		v2=$(sed -n 's/.*"val_loss":\([0-9.]*\).*/\1/p' "$T/c-$1$tr.jsonl")
		awk -v a="$v1" -v b="$v2" 'BEGIN { exit !(b > 0 && b < 1.02 * a) }' &&
			ok "$1 $tr: held-out loss $v2 within 2% of one process's $v1" ||
			bad "$1 $tr: held-out loss $v2 vs $v1"
		w=$(sed -n 's/.*"kind":"gradients","raw_bytes":\([0-9]*\),"wire_bytes":\([0-9]*\).*/\1 \2/p' \
			"$T/c-$1$tr.jsonl" | tail -1)
		awk -v w="$w" 'BEGIN { split(w, a, " "); exit !(a[2] > 0 && a[1] > 3 * a[2]) }' &&
			ok "$1 $tr: gradients cross in fewer than a third of their bytes ($w)" ||
			bad "$1 $tr: traffic record: $w"
	done
	# pipeline stages, cut where only the residual stream crosses (an add
	# in a later stage reads the stage's input); the last stage's copy of
	# the tied head matrix and the embedding add each other's gradient: with
	# lossless widths the losses are the single process's, over MPI and nng,
	# 2 and 4 stages, and 2 replicas of 2 stages
	for run in "2 2 mpi" "4 4 nng" "4 2 mpi"; do
		set -- $run
		expect 0 "$1 ranks, $2 pipeline stages over $3" $MPI -np "$1" "$W" --config "$T/gpt.yaml" \
			$STEPS --set parallel.pipeline_stages="$2" --set parallel.transport="$3" \
			--set log.metrics="$T/pp$1$2.jsonl" --set checkpoint.dir="$T/pp$1$2ck" \
			--set checkpoint.every_steps=20
		grep -q "job: $1 ranks = $(($1 / $2)) data-parallel replicas x $2 pipeline stages" "$T/err" &&
			[ "$(losses "$T/one.jsonl")" = "$(losses "$T/pp$1$2.jsonl")" ] &&
			ok "$1 ranks in $2 stages log the single process's losses" ||
			bad "$1 ranks, $2 stages: $(losses "$T/pp$1$2.jsonl") against $(losses "$T/one.jsonl")"
	done
	expect 0 "2 stages with learned widths (QM+QE)" $MPI -np 2 "$W" --config "$T/gpt.yaml" $STEPS \
		--set parallel.pipeline_stages=2 --set bitlength.policy=quantum --set bitlength.e=6 \
		--set bitlength.m=6 --set log.metrics="$T/ppq.jsonl" --set checkpoint.dir="$T/pck" \
		--set checkpoint.every_steps=40 --quiet
	grep -q '"kind":"activations","raw_bytes":[0-9]*,"wire_bytes"' "$T/ppq.jsonl" &&
		grep -q '"layer":"head","kind":"weights"' "$T/ppq.jsonl" &&
		grep -q '"layer":"wte","kind":"weights"' "$T/ppq.jsonl" &&
		ok "activations cross in containers; every stage's widths in the log (the head's copy too)" ||
		bad "QM+QE stages: $(grep -m1 kind "$T/ppq.jsonl")"
	# a pipelined run's checkpoints (a file per stage) read as the whole
	# model: sfp eval gives the run's held-out loss, one process resumes
	# from them and logs what the uninterrupted run logged; a damaged stage
	# file is named
	for ck in pp22ck pp44ck; do
		expect 0 "sfp eval of the stage files in $ck" "$SFP" eval --config "$T/gpt.yaml" \
			--checkpoint "$T/$ck"
		v=$(sed -n 's/.*"val_loss":\([0-9.]*\).*/\1/p' "$T/one.jsonl" | awk '{ printf "%.4f", $1 }')
		grep -q "^val_loss $v .*-stage0\.\.[13]\.sfpk', step 40)" "$T/out" &&
			ok "$ck: the whole model's held-out loss $v" || bad "eval: $(cat "$T/out" "$T/err")"
	done
	mkdir -p "$T/pr" && cp "$T/pp44ck/ckpt-20-stage"* "$T/pr/"
	expect 0 "one process resumes from 4 stages' step 20" "$W" --config "$T/gpt.yaml" $STEPS \
		--resume "$T/pr" --set log.metrics="$T/pr.jsonl" --quiet
	[ "$(losses "$T/pr.jsonl")" = "$(losses "$T/one.jsonl" | cut -d' ' -f2-)" ] &&
		ok "and logs the uninterrupted run's losses" ||
		bad "resumed: $(losses "$T/pr.jsonl") against $(losses "$T/one.jsonl")"
	printf 'xx' | dd of="$T/pck/ckpt-40-stage1.sfpk" bs=1 seek=600 conv=notrunc 2>/dev/null
	expect 2 "a damaged stage file" "$SFP" eval --config "$T/gpt.yaml" --checkpoint "$T/pck" \
		--set bitlength.policy=quantum --set bitlength.e=6 --set bitlength.m=6
	grep -q "ckpt-40-stage1.sfpk': payload checksum mismatch" "$T/err" && ok "is named" ||
		bad "message: $(cat "$T/err")"
else
	echo "skip gpt.sh distributed: mpirun is not installed"
fi

echo "gpt.sh: $fails failed"
[ "$fails" -eq 0 ]
