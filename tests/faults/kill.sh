#!/bin/sh
# kill.sh -- fault 1: SIGKILL one rank of a 2-rank data-parallel job at a
# random step (seeded; the step, the rank and the transport are printed).
# Every rank must exit within BOUND seconds of the kill, non-zero, with the
# killed rank named; the newest checkpoint must load (CRCs) and be the very
# bytes an uninterrupted run wrote at that step; --resume from it must end
# on the uninterrupted run's final checkpoint, bit for bit (parameters,
# buffers, optimizer state), and its final test accuracy and loss.
set -u
. "$(dirname "$0")/common.inc"
mpi_init faults/kill.sh
# the kill lands at least 100 steps before the end: with the exchange's
# faster polling the MLP's 80 steps could end before the rank was found
STEPS=200
EVERY=10
BOUND=10
JOB="$MLP --set train.max_steps=$STEPS --set checkpoint.every_steps=$EVERY"

expect 0 "kill: the uninterrupted run, $STEPS steps" timeout -s KILL 120 $MPI -np 2 "$W" $JOB \
	--set checkpoint.dir="$T/ref" --set checkpoint.keep=100 --set log.metrics="$T/ref.jsonl"
ref=$(final "$T/ref.jsonl")

i=1
while [ $i -le "$TRIALS" ]; do
	if [ $((i % 2)) -eq 1 ]; then tr=mpi; else tr=nng; fi
	rand_in 12 60
	at=$R
	rand 2
	victim=$R
	d=$T/k$i
	mkdir -p "$d"
	trial kill "$i" "transport $tr, SIGKILL rank $victim at step $at"
	$MPI -np 2 "$W" $JOB --set parallel.transport=$tr --set checkpoint.dir="$d/ck" \
		--set log.metrics="$d/m.jsonl" >"$d/out" 2>"$d/err" &
	job=$!
	if ! wait_step "$d/m.jsonl" "$at" 60 $job; then
		kill $job 2>/dev/null
		wait_gone $job "log.metrics=$d/m.jsonl" 10
		bad "kill: the job did not reach step $at: $(tail -3 "$d/err")"
		trial_end
		i=$((i + 1))
		continue
	fi
	kill_rank $job "log.metrics=$d/m.jsonl" $victim $BOUND
	k=$?
	reached=$(last_step "$d/m.jsonl")
	if [ $k -eq 2 ]; then
		bad "kill: rank $victim not found (the job had ended at step $reached)"
	elif [ $k -eq 1 ]; then
		bad "kill: a rank or mpirun still ran $BOUND s after the kill"
	else
		worst_ms "$JOB_MS"
		[ $RC -ne 0 ] && ok "kill: every rank exited $(secs "$RANKS_MS") s after the kill, mpirun $(secs "$JOB_MS") s (exit $RC)" ||
			bad "kill: the job exited $RC"
		grep -q "process rank $victim with PID" "$d/err" && ok "kill: rank $victim is named" ||
			bad "kill: rank $victim not named: $(grep -v '^epoch' "$d/err" | head -5)"
	fi
	ck=$(ckpt_steps "$d/ck" | tail -1)
	tmps=$(ls "$d/ck" 2>/dev/null | grep -c '\.tmp')
	if [ -z "$ck" ]; then
		bad "kill: no checkpoint after step $reached"
	else
		worst_lost $((reached - ck))
		expect 0 "kill: ckpt-$ck.sfpk loads (sfp eval checks its CRCs)" timeout -s KILL 60 "$SFP" eval $JOB --checkpoint "$d/ck"
		cmp -s "$d/ck/ckpt-$ck.sfpk" "$T/ref/ckpt-$ck.sfpk" && ok "kill: ckpt-$ck.sfpk is the uninterrupted run's, byte for byte (killed at step $reached; $tmps unfinished writes left)" ||
			bad "kill: ckpt-$ck.sfpk differs from the uninterrupted run's"
		expect 0 "kill: --resume to step $STEPS" timeout -s KILL 120 $MPI -np 2 "$W" $JOB --set parallel.transport=$tr \
			--set checkpoint.dir="$d/ck" --set log.metrics="$d/r.jsonl" --resume "$d/ck"
		grep -q "resumed from '$d/ck/ckpt-$ck.sfpk' at step $ck" "$T/err" && ok "kill: resumed at step $ck" || bad "kill: resume: $(grep -v '^epoch' "$T/err" | head -3)"
		cmp -s "$d/ck/ckpt-$STEPS.sfpk" "$T/ref/ckpt-$STEPS.sfpk" && ok "kill: the resumed run ends on the uninterrupted run's checkpoint, bit for bit" ||
			bad "kill: final checkpoints differ"
		[ "$(final "$d/r.jsonl")" = "$ref" ] && ok "kill: and on its test accuracy and loss ($(echo "$ref" | sed 's/.*"test_acc":\([0-9.]*\),"test_loss":\([0-9.]*\).*/\1, \2/'))" ||
			bad "kill: final $(final "$d/r.jsonl") vs $ref"
		ls "$d/ck" | grep -q '\.tmp' && bad "kill: temporary files left: $(ls "$d/ck")" || ok "kill: no temporary file left after the resumed run"
	fi
	trial_end
	i=$((i + 1))
done
row "SIGKILL a worker at a random step" "$TRIALS" "$(secs $MAX_MS) s" "$MAX_LOST steps of work redone after --resume; no checkpoint lost; end bit-identical"
echo "kill.sh: $fails failed"
[ "$fails" -eq 0 ]
