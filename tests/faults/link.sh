#!/bin/sh
# link.sh -- fault 4: the link between two ranks gets slow, lossy, or is
# cut. Two hosts rehearsed on this machine (deploy/rehearse-cluster.sh:
# network namespaces, 1 Gbit/s links), one rank each, the tensors over TCP
# (MPI's tcp btl, or nng); mid-run, at a random step (seeded, printed):
#  (a) host 1's link falls to a few Mbit/s or drops a share of its packets
#      for a few seconds, then recovers: the job must slow down and then
#      either finish with the bits of an undisturbed run, or stop with a
#      message naming the silent peer, every rank gone within
#      parallel.timeout_s + SLACK of the trouble's end;
#  (b) host 1 is cut off (its switch port forwards nothing; both ends stay
#      up, nothing says so): every rank must exit within parallel.timeout_s
#      + SLACK, each with a message naming its peer (each rank's stderr is
#      kept on its own host, as mpirun cannot forward it over a cut link),
#      and mpirun within LAUNCHER seconds (Open MPI's launcher waits for TCP
#      to give up on the lost host: net.ipv4.tcp_retries2=5 in the hosts
#      for (b); (a) runs with the kernel's default, 15).
# Needs root and network namespaces; else it says why and skips.
set -u
. "$(dirname "$0")/common.inc"
REH=deploy/rehearse-cluster.sh
export SFP_REHEARSE_PREFIX=sfpf$$ SFP_REHEARSE_NET=10.81.0
if ! $REH check >"$T/out" 2>&1; then
	echo "skip faults/link.sh: $(cat "$T/out")"
	exit 0
fi
mpi_init faults/link.sh
at_exit '$REH down >/dev/null 2>&1'
A=$(pwd)
TIMEOUT=3
SLACK=4
LAUNCHER=40
STEPS=80
JOB="--config $A/deploy/examples/fmnist-mlp.yaml --set data.train_limit=2560 --set data.test_limit=1000 --set log.every=1
	--set train.max_steps=$STEPS --set checkpoint.every_steps=10"

expect 0 "link: two hosts at 1gbit" $REH up 2 1gbit
case $W in /*) ;; *) W=$A/$W ;; esac
expect 0 "link: the undisturbed run (one host)" timeout -s KILL 120 $MPI -np 2 "$W" $JOB --set checkpoint.dir="$T/ref" \
	--set checkpoint.keep=100 --set log.metrics="$T/ref.jsonl"
ref=$(final "$T/ref.jsonl")

# start TIMEOUT_S TRANSPORT: the job across the two hosts, in the
# background (JOBPID), each rank's stderr in $d/rank<r>.err
start() {
	$REH run -- sh -c 'exec "$0" "$@" 2>"'"$d"'/rank$OMPI_COMM_WORLD_RANK.err"' "$W" $JOB \
		--set parallel.timeout_s="$1" --set parallel.transport="$2" --set checkpoint.dir="$d/ck" \
		--set log.metrics="$d/m.jsonl" >"$d/out" 2>"$d/err" &
	JOBPID=$!
}
# step_ms LOG FROM TO: the mean step time of steps FROM+1..TO (ms; 64 samples a step)
step_ms() {
	sed -n 's/^{"step":\([0-9]*\),"epoch".*"samples_per_s":\([0-9.]*\)}$/\1 \2/p' "$1" |
		awk -v a="$2" -v b="$3" '$1 > a && $1 <= b && $2 > 0 { t += 64000 / $2; n++ } END { printf "%.0f", n ? t / n : 0 }'
}
# named D RANK: rank RANK's own message names its peer and says why
named() {
	grep -Eq "rank $2: (no message from rank $((1 - $2)) within|a message of [0-9]+ bytes from rank $((1 - $2)) began but did not finish within)" "$1/rank$2.err"
}

# (a) slow or lossy, then recovered
i=1
completed=0
while [ $i -le "$TRIALS" ]; do
	if [ $((i % 2)) -eq 1 ]; then tr=mpi; else tr=nng; fi
	rand 2
	if [ $R -eq 0 ]; then
		rand_in 2 8
		how="rate ${R}mbit"
	else
		rand_in 10 40
		how="loss $R%"
	fi
	rand_in 10 40
	at=$R
	rand_in 2 4
	hold=$R
	d=$T/a$i
	mkdir -p "$d"
	trial link "$i" "transport $tr, timeout_s 5: host 1's link $how for $hold s from step $at"
	start 5 $tr
	job=$JOBPID
	wait_step "$d/m.jsonl" "$at" 60 $job || bad "link: the job did not reach step $at: $(tail -3 "$d/err")"
	s0=$(last_step "$d/m.jsonl")
	# shellcheck disable=SC2086
	$REH impair 1 $how >"$T/imp" 2>&1
	if [ $? -eq 77 ]; then
		echo "skip (this trial's impairment): $(cat "$T/imp"); 2mbit instead"
		how="rate 2mbit"
		$REH impair 1 rate 2mbit >/dev/null
	fi
	t0=$(now_ms)
	sleep "$hold"
	s1=$(last_step "$d/m.jsonl")
	$REH impair 1 off >/dev/null
	t1=$(now_ms)
	wait_gone $job "log.metrics=$d/m.jsonl" 120 || bad "link: the job still ran 120 s after the link recovered"
	before=$(step_ms "$d/m.jsonl" 1 "$s0")
	if [ "$RC" -eq 0 ]; then
		completed=$((completed + 1))
		ok "link: the job finished; a step took $before ms before, and while the link was $how $((s1 - s0)) steps were made in $hold s"
		[ "$before" -gt 0 ] && [ "$((s1 - s0))" -lt "$((hold * 1000 / before / 2))" ] && ok "link: it slowed down" ||
			bad "link: no slower while the link was $how ($((s1 - s0)) steps in $hold s at $before ms a step)"
		cmp -s "$d/ck/ckpt-$STEPS.sfpk" "$T/ref/ckpt-$STEPS.sfpk" && [ "$(final "$d/m.jsonl")" = "$ref" ] &&
			ok "link: its final checkpoint, test accuracy and loss are the undisturbed run's, bit for bit" ||
			bad "link: it ended elsewhere: $(final "$d/m.jsonl") vs $ref"
	else
		worst_ms $((t1 - t0 + JOB_MS))
		ck=$(ckpt_steps "$d/ck" | tail -1)
		worst_lost $(($(last_step "$d/m.jsonl") - ${ck:-0}))
		named "$d" 0 || named "$d" 1 && ok "link: the job stopped (exit $RC): $(sed -n 's/^sfp-worker rank [01]: //p' "$d"/rank*.err | head -1)" ||
			bad "link: exit $RC without a message naming the peer: $(grep -hv '^epoch' "$d"/rank*.err | head -4)"
		[ $((JOB_MS)) -le $(((5 + SLACK) * 1000)) ] && ok "link: every rank gone $(secs "$RANKS_MS") s after the link recovered" ||
			bad "link: ranks gone $(secs "$RANKS_MS") s, the job $(secs "$JOB_MS") s after the link recovered (bound $((5 + SLACK)) s)"
	fi
	trial_end
	i=$((i + 1))
done
if [ $completed -eq "$TRIALS" ]; then
	row "slow or lossy link for a few s" "$TRIALS" "n/a (all finished)" "none: all $completed finished bit-identical"
else
	row "slow or lossy link for a few s" "$TRIALS" "$(secs $MAX_MS) s (trouble to exit)" \
		"$completed finished bit-identical; $((TRIALS - completed)) stopped naming the peer, $MAX_LOST steps since the last checkpoint"
fi

# (b) cut; from now on TCP gives up on a lost host after 5 retransmissions
# (12.6 s) instead of 15 (about 15 min), so that mpirun ends in bounded time
expect 0 "link: net.ipv4.tcp_retries2=5 in both hosts" $REH sysctl net.ipv4.tcp_retries2=5
MAX_JOB=0
i=1
while [ $i -le "$TRIALS" ]; do
	if [ $((i % 2)) -eq 1 ]; then tr=nng; else tr=mpi; fi
	rand_in 10 60
	at=$R
	d=$T/b$i
	mkdir -p "$d"
	trial link "$i" "transport $tr, timeout_s $TIMEOUT: host 1 cut off at step $at"
	start $TIMEOUT $tr
	job=$JOBPID
	wait_step "$d/m.jsonl" "$at" 60 $job || bad "link: the job did not reach step $at: $(tail -3 "$d/err")"
	$REH impair 1 cut >/dev/null
	cut=$(last_step "$d/m.jsonl")
	wait_gone $job "log.metrics=$d/m.jsonl" $LAUNCHER
	gone=$?
	[ -n "$RANKS_MS" ] && [ "$RANKS_MS" -le $(((TIMEOUT + SLACK) * 1000)) ] && ok "link: every rank exited $(secs "$RANKS_MS") s after the cut (bound $((TIMEOUT + SLACK)) s)" ||
		bad "link: ranks gone after ${RANKS_MS:-more than $LAUNCHER s} ms (bound $((TIMEOUT + SLACK)) s)"
	worst_ms "${RANKS_MS:-$((LAUNCHER * 1000))}"
	for r in 0 1; do
		named "$d" $r && ok "link: $(sed -n "s/^sfp-worker rank $r: //p" "$d/rank$r.err" | head -1)" ||
			bad "link: rank $r did not name its peer: $(grep -v '^epoch' "$d/rank$r.err" | head -3)"
	done
	[ $gone -eq 0 ] && [ "$JOB_MS" -gt "$MAX_JOB" ] && MAX_JOB=$JOB_MS
	[ $gone -eq 0 ] && [ "$RC" -ne 0 ] && ok "link: mpirun exited $(secs "$JOB_MS") s after the cut (exit $RC)" ||
		bad "link: mpirun still ran $LAUNCHER s after the cut (killed)"
	ck=$(ckpt_steps "$d/ck" | tail -1)
	worst_lost $((cut - ${ck:-0}))
	cmp -s "$d/ck/ckpt-$ck.sfpk" "$T/ref/ckpt-$ck.sfpk" && ok "link: its newest checkpoint (step $ck) is the undisturbed run's" ||
		bad "link: ckpt-$ck.sfpk differs from the undisturbed run's"
	$REH impair 1 off >/dev/null
	trial_end
	i=$((i + 1))
done
row "link cut (silently) mid-run" "$TRIALS" "$(secs $MAX_MS) s cut to last rank (bound timeout_s $TIMEOUT + $SLACK); mpirun $(secs $MAX_JOB) s" \
	"$MAX_LOST steps since the last checkpoint"
echo "link.sh: $fails failed"
[ "$fails" -eq 0 ]
