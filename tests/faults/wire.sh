#!/bin/sh
# wire.sh -- fault 5: one bit flipped on the wire. The transport's fault
# injection (SFP_FAULT_FLIP=RANK:N:BIT, sfp_transport_inject_flip) flips a
# bit of the Nth message a rank sends; the message, the bit and the rank
# are drawn at random (seeded, printed) and every trial runs over both
# transports, MPI and nng. Asserted: the receiver refuses the message with
# a checksum error naming the sender, the job stops (every rank, within
# BOUND seconds of that message), and nothing of it was trained on: every
# loss the job logged and its newest checkpoint are the bits of a run
# without the fault.
set -u
. "$(dirname "$0")/common.inc"
mpi_init faults/wire.sh
STEPS=30
EVERY=3
BOUND=10
JOB="$MLP --set train.max_steps=$STEPS --set checkpoint.every_steps=$EVERY"
# about 4 messages a rank and step: the two ring hops of the gradients, the
# float64 sums of loss and counts, and of the traffic counters (log.every=1)
MSGS=$((4 * STEPS - 10))

# losses LOG: "step loss train_acc" of every training record
losses() { sed -n 's/^{"step":\([0-9]*\),"epoch":[0-9]*,"loss":\([0-9.]*\),"train_acc":\([0-9.]*\).*/\1 \2 \3/p' "$1"; }

expect 0 "wire: the run without a fault, $STEPS steps" timeout -s KILL 120 $MPI -np 2 "$W" $JOB \
	--set checkpoint.dir="$T/ref" --set checkpoint.keep=100 --set log.metrics="$T/ref.jsonl"
losses "$T/ref.jsonl" >"$T/ref.loss"

i=1
while [ $i -le "$TRIALS" ]; do
	rand 2
	from=$R
	to=$((1 - from))
	rand_in 1 $MSGS
	nth=$R
	rand 2147483647
	bit=$R
	for tr in mpi nng; do
		d=$T/w$i-$tr
		mkdir -p "$d"
		trial wire "$i" "transport $tr, rank $from flips bit $bit (modulo its length) of its message $nth"
		SFP_FAULT_FLIP=$from:$nth:$bit $MPI -x SFP_FAULT_FLIP -np 2 "$W" $JOB --set parallel.transport=$tr \
			--set checkpoint.dir="$d/ck" --set log.metrics="$d/m.jsonl" >"$d/out" 2>"$d/err" &
		job=$!
		if wait_msg "$d/err" "rank $to: bad [a-z]+ message from rank $from: [a-z 0-9!=]+" 120 $job; then
			t0=$(now_ms)
			grep -q "sfp-worker rank $from: fault injection: flipped bit" "$d/err" &&
				ok "wire: $(sed -n "s/^sfp-worker rank $from: fault injection: //p" "$d/err")" ||
				bad "wire: no fault injection notice from rank $from"
			ok "wire: $(grep -Eo "rank $to: bad [a-z]+ message from rank $from: [a-z 0-9!=]+" "$d/err" | head -1)"
			if wait_gone $job "log.metrics=$d/m.jsonl" $BOUND; then
				worst_ms $(($(now_ms) - t0))
				[ "$RC" -ne 0 ] && ok "wire: every rank stopped $(secs $(($(now_ms) - t0))) s after it (exit $RC)" || bad "wire: exit $RC"
			else
				bad "wire: a rank still ran $BOUND s after the checksum error"
			fi
		else
			wait_gone $job "log.metrics=$d/m.jsonl" $BOUND
			bad "wire: no checksum error naming rank $from (exit $RC): $(grep -v '^epoch' "$d/err" | grep -v '^ *$' | head -8)"
		fi
		reached=$(last_step "$d/m.jsonl")
		losses "$d/m.jsonl" >"$d/loss"
		n=$(grep -c . "$d/loss")
		[ "$reached" -lt $STEPS ] && head -n "$n" "$T/ref.loss" | cmp -s - "$d/loss" &&
			ok "wire: stopped at step $reached; its $n losses are the fault-free run's, bit for bit" ||
			bad "wire: losses up to step $reached differ from the fault-free run's"
		ck=$(ckpt_steps "$d/ck" | tail -1)
		if [ -n "$ck" ]; then
			worst_lost $((reached - ck))
			cmp -s "$d/ck/ckpt-$ck.sfpk" "$T/ref/ckpt-$ck.sfpk" && ok "wire: its newest checkpoint (step $ck) is the fault-free run's, byte for byte" ||
				bad "wire: ckpt-$ck.sfpk differs from the fault-free run's"
		else
			worst_lost "$reached"
		fi
		trial_end
	done
	i=$((i + 1))
done
row "a bit flipped on the wire (MPI and nng)" "$((2 * TRIALS))" "$(secs $MAX_MS) s (checksum error to exit)" "nothing trained on; $MAX_LOST steps since the last checkpoint"
echo "wire.sh: $fails failed"
[ "$fails" -eq 0 ]
