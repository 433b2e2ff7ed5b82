#!/bin/sh
# dist.sh -- distributed training under real mpirun (2 and 4 ranks,
# oversubscribed on this machine): the collectives program, data parallel
# with lossless widths against a single process, pipeline and DP x PP
# runs, compressed gradients converging, impossible layouts refused once,
# and a rank killed mid-run ending the job in bounded time, named.
set -u
. "$(dirname "$0")/common.inc"
B=${BUILD:-build}
W=$B/bin/sfp-worker
mpi_init dist.sh
MLP="--config deploy/examples/fmnist-mlp.yaml --set data.train_limit=2560 --set data.test_limit=1000 --set log.every=5"
CNN="--config deploy/examples/fmnist-cnn.yaml --set data.train_limit=640 --set data.test_limit=256 --set log.every=5"

for n in 2 4; do
	$MPI -np $n "$B/tests/system/mpi_collective" >"$T/out" 2>"$T/err"
	[ $? -eq 0 ] && ok "collectives on $n ranks" || bad "collectives on $n ranks: $(grep FAIL "$T/out") $(tail -5 "$T/err")"
done

# the training losses of a log, one per line
losses() { grep '"loss"' "$1" | grep -v test_loss | sed 's/.*"loss":\([0-9.e+-]*\).*/\1/'; }
# two loss columns agree to a relative 1e-4 (summation order differs)
close() { paste "$1" "$2" | awk '{ d = $1 - $2; if (d < 0) d = -d; if (NF != 2 || d > 1e-4 * ($1 > 0 ? $1 : -$1) + 1e-6) bad = 1; n++ } END { exit (bad || n < 3) }'; }

# data parallel, lossless widths: the same training as one process on the same global batch
expect 0 "one process, 30 steps" "$W" $MLP --set train.max_steps=30 --set log.metrics="$T/one.jsonl"
losses "$T/one.jsonl" >"$T/one.loss"
for n in 2 4; do
	expect 0 "mpirun -np $n data parallel" $MPI -np $n "$W" $MLP --set train.max_steps=30 --set log.metrics="$T/dp$n.jsonl"
	grep -q "job: $n ranks = $n data-parallel replicas x 1 pipeline stages" "$T/err" && ok "DP $n: topology printed" || bad "DP $n topology: $(head -3 "$T/err")"
	losses "$T/dp$n.jsonl" >"$T/dp$n.loss"
	close "$T/one.loss" "$T/dp$n.loss" && ok "DP $n ranks, lossless: losses equal one process's" || bad "DP $n losses differ: $(paste "$T/one.loss" "$T/dp$n.loss" | tr '\n' ' ')"
	grep -q '"kind":"gradients","raw_bytes":[0-9]*,"wire_bytes":[0-9]*' "$T/dp$n.jsonl" && ok "DP $n: gradient traffic records" || bad "DP $n: no traffic record"
	[ "$(grep -c '"test_acc"' "$T/dp$n.jsonl")" -eq 1 ] && ok "DP $n: rank 0 alone writes the log" || bad "DP $n: $(grep -c test_acc "$T/dp$n.jsonl") eval records"
done

# the nng transport: the same bits as MPI (same schemes, same bytes), over tcp and ipc
expect 0 "DP 2 over nng (tcp)" $MPI -np 2 "$W" $MLP --set train.max_steps=30 --set parallel.transport=nng --set log.metrics="$T/nng.jsonl"
grep -q "transport nng" "$T/err" && ok "nng transport in use" || bad "nng: $(head -3 "$T/err")"
losses "$T/nng.jsonl" >"$T/nng.loss"
head -n "$(wc -l <"$T/nng.loss")" "$T/dp2.loss" | cmp -s - "$T/nng.loss" && ok "nng gives the MPI run's losses, to the last digit" || bad "nng losses differ: $(paste "$T/dp2.loss" "$T/nng.loss" | tr '\n' ' ')"
expect 0 "DP x PP over nng (ipc)" $MPI -np 4 "$W" $MLP --set train.max_steps=20 --set parallel.transport=nng \
	--set parallel.nng_endpoint=ipc --set parallel.pipeline_stages=2

# gradient buckets exchanged behind backward (parallel.overlap, the
# default): the same bits as the exchange after backward (the same buckets
# in the same order), lossy gradients with error feedback, 2 ranks over MPI
# and 4 over nng; the wait that backward did not hide is logged
BK="--set train.max_steps=12 --set parallel.grad_e=4 --set parallel.grad_m=2 --set parallel.grad_gecko=true
	--set parallel.bucket_kb=16 --set checkpoint.every_steps=12"
for run in "2 mpi" "4 nng"; do
	set -- $run
	for ov in true false; do
		expect 0 "$1 ranks over $2, overlap $ov" $MPI -np "$1" "$W" $CNN $BK --set parallel.transport="$2" \
			--set parallel.overlap=$ov --set checkpoint.dir="$T/bk$1$ov" --set log.metrics="$T/bk$1$ov.jsonl"
		cp "$T/err" "$T/bk$1$ov.err"
	done
	grep -q "gradients in [2-9][0-9]* buckets behind backward" "$T/bk${1}true.err" &&
		grep -q "gradients in [2-9][0-9]* buckets after backward" "$T/bk${1}false.err" &&
		ok "$1 ranks: several buckets, behind and after backward" || bad "job line: $(grep job: "$T/bk${1}true.err")"
	cmp -s "$T/bk${1}true/ckpt-12.sfpk" "$T/bk${1}false/ckpt-12.sfpk" &&
		ok "$1 ranks: both train the same bits (checkpoints equal)" || bad "$1 ranks: overlapped run differs"
	grep -q '"kind":"gradients",.*"exposed_comm_ms":[0-9.]*}' "$T/bk${1}true.jsonl" &&
		ok "$1 ranks: exposed exchange time in the log" || bad "no exposed_comm_ms: $(grep -m1 gradients "$T/bk${1}true.jsonl")"
done

# checkpoint from a DP run resumes in one process (the same file format)
expect 0 "DP 2 with checkpoints" $MPI -np 2 "$W" $MLP --set train.max_steps=10 --set checkpoint.dir="$T/ck" --set checkpoint.every_steps=10
expect 0 "DP checkpoint resumes in one process" "$W" $MLP --set train.max_steps=20 --resume "$T/ck"
grep -q "resumed from '$T/ck/ckpt-10.sfpk' at step 10" "$T/err" && ok "resume names the DP checkpoint" || bad "resume: $(cat "$T/err")"

# compressed gradients (e4m2 + Gecko, error feedback) converge on a slice
expect 0 "DP 2, e4m2 gradients" $MPI -np 2 "$W" $MLP --set train.max_steps=80 --set parallel.grad_e=4 --set parallel.grad_m=2 \
	--set parallel.grad_gecko=true --set log.metrics="$T/lossy.jsonl"
expect 0 "DP 2, lossless gradients" $MPI -np 2 "$W" $MLP --set train.max_steps=80 --set log.metrics="$T/exact.jsonl"
acc=$(grep '"test_acc"' "$T/lossy.jsonl" | tail -1 | sed 's/.*"test_acc":\([0-9.]*\).*/\1/')
ref=$(grep '"test_acc"' "$T/exact.jsonl" | tail -1 | sed 's/.*"test_acc":\([0-9.]*\).*/\1/')
ratio=$(grep '"kind":"gradients"' "$T/lossy.jsonl" | tail -1 | sed 's/.*"raw_bytes":\([0-9]*\),"wire_bytes":\([0-9]*\).*/\1 \2/' | awk '{ printf "%.1f", $1 / $2 }')
awk "BEGIN { exit !($acc > 0.7 && $acc > $ref - 0.02) }" && ok "e4m2 gradients: test accuracy $acc after 80 steps (lossless $ref)" || bad "e4m2 accuracy $acc, lossless $ref"
awk "BEGIN { exit !($ratio > 5) }" && ok "e4m2 gradients: ${ratio}x fewer gradient bytes" || bad "e4m2 wire ratio $ratio"
# decoder-side refinement of the gradient containers (docs/refine.md)
expect 0 "DP 2, e4m1 gradients with shift and bias" $MPI -np 2 "$W" $MLP --set train.max_steps=80 --set parallel.grad_e=4 \
	--set parallel.grad_m=1 --set parallel.grad_refine_shift=true --set parallel.grad_refine_bias=tensor --set log.metrics="$T/refine.jsonl"
acc=$(grep '"test_acc"' "$T/refine.jsonl" | tail -1 | sed 's/.*"test_acc":\([0-9.]*\).*/\1/')
awk "BEGIN { exit !($acc > 0.7 && $acc > $ref - 0.03) }" && ok "refined e4m1 gradients: test accuracy $acc (lossless $ref)" || bad "refined accuracy $acc, lossless $ref"
expect 2 "refinement of lossless gradients refused" $MPI -np 2 "$W" $MLP --set train.max_steps=4 --set parallel.grad_refine_shift=true
grep -q "needs parallel.grad_m <= 20" "$T/err" && ok "says why" || bad "refine refusal: $(tail -3 "$T/err")"

# error feedback's residuals are not in checkpoints: a resumed lossy run says it is not the same run
LOSSY="--set parallel.grad_e=4 --set parallel.grad_m=2 --set checkpoint.dir=$T/lck --set checkpoint.every_steps=10"
expect 0 "DP 2, e4m2 gradients, a checkpoint at step 10" $MPI -np 2 "$W" $MLP $LOSSY --set train.max_steps=10
expect 0 "DP 2, e4m2 gradients, resumed to step 20" $MPI -np 2 "$W" $MLP $LOSSY --set train.max_steps=20 --resume "$T/lck"
grep -q "checkpoints do not hold the feedback residuals" "$T/err" && ok "a resumed lossy run says its residuals start from zero" || bad "no residual note: $(grep -v '^epoch' "$T/err")"

# pipeline stages, and replicas of pipelines (micro-batches, re-computation)
expect 0 "PP: 2 stages of the MLP" $MPI -np 2 "$W" $MLP --set train.max_steps=40 --set parallel.pipeline_stages=2 --set log.metrics="$T/pp.jsonl"
acc=$(grep '"test_acc"' "$T/pp.jsonl" | tail -1 | sed 's/.*"test_acc":\([0-9.]*\).*/\1/')
awk "BEGIN { exit !($acc > 0.6) }" && ok "PP 2 trains (test accuracy $acc)" || bad "PP accuracy $acc"
grep -q '"kind":"activations"' "$T/pp.jsonl" && grep -q '"kind":"activation_gradients"' "$T/pp.jsonl" && ok "PP: activation traffic records" || bad "PP: no activation records"
expect 0 "DP x PP: 2 replicas x 2 stages of the CNN, quantum widths" $MPI -np 4 "$W" $CNN --set train.max_steps=10 \
	--set parallel.pipeline_stages=2 --set bitlength.policy=quantum --set bitlength.e=6 --set bitlength.m=6 --set log.metrics="$T/dpp.jsonl"
grep -q "2 data-parallel replicas x 2 pipeline stages" "$T/err" && grep -q "test_acc" "$T/err" && ok "DP x PP trains and evaluates" || bad "DP x PP: $(tail -3 "$T/err")"
first=$(losses "$T/dpp.jsonl" | head -1) last=$(losses "$T/dpp.jsonl" | tail -1)
awk "BEGIN { exit !($last < $first) }" && ok "DP x PP: loss falls ($first -> $last)" || bad "DP x PP loss $first -> $last"
expect 0 "PP: 4 stages of the ResNet" $MPI -np 4 "$W" --config deploy/examples/fmnist-resnet.yaml --set data.train_limit=256 \
	--set data.test_limit=64 --set train.max_steps=2 --set parallel.pipeline_stages=4

# the 1F1B schedule: the GPipe run's training (the same micro-batches, their
# gradients summed in another order), with fewer stage inputs kept: at most
# S - s on stage s, said and logged with each stage's peak activation memory
for sc in gpipe 1f1b; do
	expect 0 "PP: 4 stages of the CNN, $sc, 8 micro-batches" $MPI -np 4 "$W" $CNN --set train.max_steps=15 \
		--set parallel.pipeline_stages=4 --set parallel.micro_batches=8 --set parallel.schedule=$sc \
		--set log.metrics="$T/$sc.jsonl"
	grep -q "pipeline $sc, 8 micro-batches; peak activation memory per stage" "$T/err" &&
		ok "$sc: each stage's peak activation memory said" || bad "$sc: $(grep pipeline "$T/err")"
	losses "$T/$sc.jsonl" >"$T/$sc.loss"
done
close "$T/gpipe.loss" "$T/1f1b.loss" && ok "1F1B: the losses of GPipe" ||
	bad "1F1B losses: $(paste "$T/gpipe.loss" "$T/1f1b.loss" | tr '\n' ' ')"
kept() { sed -n "s/.*\"stage\":$2,\"schedule\":\"[a-z0-9]*\",\"micro_batches\":8,\"inputs_kept\":\([0-9]*\).*/\1/p" "$T/$1.jsonl"; }
[ "$(kept gpipe 1) $(kept gpipe 3)" = "8 8" ] && [ "$(kept 1f1b 1) $(kept 1f1b 2) $(kept 1f1b 3)" = "3 2 1" ] &&
	ok "stage inputs kept: GPipe 8, 1F1B 3 2 1 on stages 1..3" ||
	bad "inputs kept: gpipe $(kept gpipe 1) $(kept gpipe 3), 1f1b $(kept 1f1b 1) $(kept 1f1b 2) $(kept 1f1b 3)"
expect 0 "DP x PP, 1F1B over nng" $MPI -np 4 "$W" $MLP --set train.max_steps=30 --set parallel.pipeline_stages=2 \
	--set parallel.schedule=1f1b --set parallel.transport=nng --set log.metrics="$T/dpp1.jsonl"
losses "$T/dpp1.jsonl" >"$T/dpp1.loss"
close "$T/one.loss" "$T/dpp1.loss" && ok "DP x PP 1F1B: the losses of one process" || bad "DP x PP 1F1B: $(cat "$T/dpp1.loss" | tr '\n' ' ')"

# pipeline checkpoints: one file per stage; a resumed DP x PP run continues as an uninterrupted one
PCK="--set parallel.pipeline_stages=2 --set checkpoint.dir=$T/pck --set checkpoint.every_steps=10"
expect 0 "DP x PP with checkpoints, 20 steps" $MPI -np 4 "$W" $MLP $PCK --set train.max_steps=20
[ -f "$T/pck/ckpt-20-stage0.sfpk" ] && [ -f "$T/pck/ckpt-20-stage1.sfpk" ] && ok "one checkpoint per stage" || bad "stage checkpoints: $(ls "$T/pck")"
expect 0 "DP x PP resumed to 40 steps" $MPI -np 4 "$W" $MLP $PCK --set train.max_steps=40 --resume "$T/pck" --set log.metrics="$T/res.jsonl"
grep -q "resumed from '$T/pck/ckpt-20-stage0.sfpk' at step 20" "$T/err" && ok "stages resume from step 20" || bad "stage resume: $(head -3 "$T/err")"
expect 0 "DP x PP uninterrupted, 40 steps" $MPI -np 4 "$W" $MLP --set parallel.pipeline_stages=2 --set train.max_steps=40 --set log.metrics="$T/unint.jsonl"
[ "$(losses "$T/res.jsonl" | tail -1)" = "$(losses "$T/unint.jsonl" | tail -1)" ] && ok "resumed stages end where an uninterrupted run ends" || bad "resume differs: $(losses "$T/res.jsonl" | tail -1) vs $(losses "$T/unint.jsonl" | tail -1)"

# impossible layouts: refused once, on every rank, exit 2
expect 2 "3 ranks, 2 stages" $MPI -np 3 "$W" $MLP --set parallel.pipeline_stages=2
[ "$(grep -c 'cannot form replicas of 2 stages' "$T/err")" -eq 1 ] && ok "layout error printed once" || bad "layout error: $(cat "$T/err")"
expect 2 "7 stages of a 6-layer MLP" $MPI -np 7 "$W" $MLP --set parallel.pipeline_stages=7
grep -q "7 stages for a model of 6 layers" "$T/err" && ok "stage count error names the layers" || bad "stages: $(cat "$T/err")"

# a rank killed mid-run: every rank ends, non-zero, within a bounded time,
# and the rank is named (tests/faults/kill.sh kills at random steps, then
# resumes)
kill_test() {
	tr=$1
	$MPI -np 2 "$W" $MLP --set train.max_steps=100000 --set log.every=1 --set parallel.transport="$tr" \
		--set log.metrics="$T/kill-$tr.jsonl" >"$T/kout" 2>"$T/kerr" &
	job=$!
	if ! wait_step "$T/kill-$tr.jsonl" 20 30 $job; then
		kill $job 2>/dev/null
		wait_gone $job "log.metrics=$T/kill-$tr.jsonl" 10
		bad "$tr: the job did not reach step 20: $(tail -3 "$T/kerr")"
		return
	fi
	kill_rank $job "log.metrics=$T/kill-$tr.jsonl" 1 60
	case $? in
	2) bad "$tr: could not find rank 1 to kill" ;;
	1) bad "$tr: the job still runs 60 s after rank 1 was killed" ;;
	*)
		[ $RC -ne 0 ] && ok "$tr, killed rank: the job exits non-zero ($RC) after $(secs $JOB_MS) s" || bad "$tr, killed rank: exit $RC"
		grep -q "rank 1" "$T/kerr" && ok "$tr, killed rank: rank 1 is named" || bad "$tr: killed rank not named: $(cat "$T/kerr")"
		;;
	esac
}
kill_test mpi
kill_test nng

echo "dist.sh: $fails failed"
[ "$fails" -eq 0 ]
