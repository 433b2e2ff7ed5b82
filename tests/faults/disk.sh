#!/bin/sh
# disk.sh -- fault 3: the disk fills up. Checkpoints go to a tmpfs sized so
# that `checkpoint.keep` checkpoints fit and the next does not (a new
# checkpoint is written in full before the oldest goes); keep and
# checkpoint.every_steps are drawn at random (seeded, printed); one process
# and 2-rank jobs alternate. Asserted: the run stops at that checkpoint with
# exit 1 and "cannot write '<file>': No space left on device", the earlier
# checkpoints all load (CRCs), nothing is left under the new name and no
# temporary file stays. Then the metrics log on a tmpfs of a page or three:
# exit 1 with "cannot write metrics log '<file>': No space left on device",
# and every line left in it is a whole JSON record. Needs root (mount).
set -u
. "$(dirname "$0")/common.inc"
if [ "$(id -u)" -ne 0 ]; then
	echo "skip faults/disk.sh: mounting a small tmpfs needs root"
	exit 0
fi
probe=$T/probe
mkdir -p "$probe"
if ! mount -t tmpfs -o size=4k tmpfs "$probe" 2>"$T/merr"; then
	echo "skip faults/disk.sh: cannot mount a tmpfs: $(cat "$T/merr")"
	exit 0
fi
umount "$probe"
mpi_init faults/disk.sh
PAGE=4096
BOUND=30

# mnt DIR SIZE: a tmpfs of SIZE bytes at DIR, unmounted at exit
mnt() {
	mkdir -p "$1"
	mount -t tmpfs -o size="$2" tmpfs "$1" || return 1
	at_exit "umount '$1' 2>/dev/null || umount -l '$1'"
}
# run_job NAME RANKS ARGS...: the job in the background, as one process or
# RANKS ranks; output in $d/NAME.out/.err; JOBPID
run_job() {
	_n=$1 _r=$2
	shift 2
	if [ "$_r" -eq 1 ]; then
		"$W" "$@" >"$d/$_n.out" 2>"$d/$_n.err" &
	else
		$MPI -np "$_r" "$W" "$@" >"$d/$_n.out" 2>"$d/$_n.err" &
	fi
	JOBPID=$!
}
# stopped NAME PATTERN: the job JOBPID says PATTERN, then ends with exit 1
# within BOUND seconds (the time is kept as the fault's worst)
stopped() {
	if ! wait_msg "$d/$1.err" "$2" 120 $JOBPID; then
		bad "disk: no message like \"$2\": $(grep -v '^epoch' "$d/$1.err" | head -5)"
		kill $JOBPID 2>/dev/null
		wait $JOBPID
		return
	fi
	t0=$(now_ms)
	ok "disk: \"$(grep -Eo -- "$2" "$d/$1.err" | head -1)\""
	if wait_gone $JOBPID "$d/$1" $BOUND; then
		worst_ms $(($(now_ms) - t0))
		[ "$RC" -eq 1 ] && ok "disk: the run stopped, exit 1, $(secs $(($(now_ms) - t0))) s after the message" ||
			bad "disk: exit $RC"
	else
		bad "disk: still running $BOUND s after the message"
	fi
}

# the checkpoint's size: one step, one checkpoint
d=$T
expect 0 "disk: a checkpoint to measure" "$W" $MLP --set train.max_steps=1 --set checkpoint.dir="$T/one" --set checkpoint.every_steps=1
bytes=$(wc -c <"$T/one/ckpt-1.sfpk")
pages=$(((bytes + PAGE - 1) / PAGE))
echo "disk: a checkpoint is $bytes bytes ($pages pages)"

i=1
while [ $i -le "$TRIALS" ]; do
	if [ $((i % 2)) -eq 1 ]; then ranks=1; else ranks=2; fi
	rand_in 1 3
	keep=$R
	rand_in 5 15
	every=$R
	fail=$(((keep + 1) * every))
	size=$(((keep * pages + pages / 2) * PAGE))
	d=$T/c$i
	mkdir -p "$d"
	trial disk "$i" "$ranks process(es), checkpoint.keep=$keep, every $every steps, a tmpfs of $size bytes: ckpt-$fail.sfpk cannot fit"
	if ! mnt "$d/mnt" "$size"; then
		bad "disk: cannot mount a tmpfs at $d/mnt"
	else
		ck=$d/mnt/ck
		run_job ckpt $ranks $MLP --set train.max_steps=$((fail + 20)) --set checkpoint.dir="$ck" \
			--set checkpoint.every_steps=$every --set checkpoint.keep=$keep --set log.metrics="$d/m.jsonl" \
			--set parallel.transport=mpi
		stopped ckpt "cannot write '$ck/ckpt-$fail.sfpk': No space left on device"
		[ "$(last_step "$d/m.jsonl")" -eq $fail ] && ok "disk: no step after $fail was trained" ||
			bad "disk: the log ends at step $(last_step "$d/m.jsonl")"
		worst_lost $((fail - keep * every))
		have=$(ckpt_steps "$ck" | tr '\n' ' ' | sed 's/ $//')
		want=$every
		k=2
		while [ $k -le $keep ]; do
			want="$want $((k * every))"
			k=$((k + 1))
		done
		[ "$have" = "$want" ] && ok "disk: the $keep earlier checkpoint(s) are there (steps $have)" || bad "disk: checkpoints at '$have', wanted '$want'"
		for s in $have; do
			expect 0 "disk: ckpt-$s.sfpk loads (sfp eval checks its CRCs)" timeout -s KILL 60 "$SFP" eval $MLP --checkpoint "$ck/ckpt-$s.sfpk"
		done
		[ "$(ls "$ck" | grep -cv '^ckpt-[0-9]*\.sfpk$')" -eq 0 ] && ok "disk: no partial ckpt-$fail.sfpk, no temporary file" ||
			bad "disk: left behind: $(ls "$ck")"
	fi
	trial_end
	i=$((i + 1))
done
row "disk full while checkpointing" "$TRIALS" "$(secs $MAX_MS) s (message to exit)" "$MAX_LOST steps since the last checkpoint; earlier checkpoints intact"

i=1
while [ $i -le "$TRIALS" ]; do
	if [ $((i % 2)) -eq 1 ]; then ranks=1; else ranks=2; fi
	rand_in 1 3
	mp=$R
	d=$T/l$i
	trial disk "$i" "$ranks process(es), the metrics log on a tmpfs of $mp page(s)"
	if ! mnt "$d/mlog" $((mp * PAGE)); then
		bad "disk: cannot mount a tmpfs at $d/mlog"
	else
		run_job mlog $ranks $MLP --set train.max_steps=1000 --set log.metrics="$d/mlog/m.jsonl" --set parallel.transport=mpi
		stopped mlog "cannot write metrics log '$d/mlog/m.jsonl': No space left on device"
		n=$(grep -c . "$d/mlog/m.jsonl")
		[ "$n" -gt 0 ] && [ "$(grep -cv '^{.*}$' "$d/mlog/m.jsonl")" -eq 0 ] && [ "$(tail -c 1 "$d/mlog/m.jsonl" | od -An -c | tr -d ' ')" = '\n' ] &&
			ok "disk: the $n records left in the log are all whole (up to step $(last_step "$d/mlog/m.jsonl"))" ||
			bad "disk: the log ends in a partial record: $(tail -c 80 "$d/mlog/m.jsonl")"
	fi
	trial_end
	i=$((i + 1))
done
row "disk full while writing the metrics log" "$TRIALS" "$(secs $MAX_MS) s (message to exit)" "the records after the disk filled; none half-written"
echo "disk.sh: $fails failed"
[ "$fails" -eq 0 ]
