#!/bin/sh
# daemon.sh -- fault 2: SIGKILL sfpd while a 2-rank job reports to it, at a
# random step (seeded, printed), and start it again once the workers have
# noticed. The job must finish as if nothing happened (its final test
# accuracy and loss those of a run without a daemon), the restarted sfpd
# must recover the history from its file and hear from the workers again;
# the table counts the reports lost in the outage and the time from the
# restart until the workers reported again.
set -u
. "$(dirname "$0")/common.inc"
if ! command -v curl >/dev/null 2>&1; then
	echo "skip faults/daemon.sh: curl missing (deploy/install-deps.sh installs it)"
	exit 0
fi
mpi_init faults/daemon.sh
STEPS=400
REPORT=5
JOB="$MLP --set train.max_steps=$STEPS --set daemon.report_every=$REPORT"
WPORT=$(free_port 30000 32768) # below the ephemeral range, above the jobs' nng ports
SFPD_PID=""
at_exit '[ -n "$SFPD_PID" ] && kill -9 $SFPD_PID 2>/dev/null'

expect 0 "daemon: the same job without a daemon" timeout -s KILL 120 $MPI -np 2 "$W" $JOB --set log.metrics="$T/ref.jsonl"
ref=$(final "$T/ref.jsonl")
# worker_step JOB: the step sfpd has from rank 0 of JOB (empty: none)
worker_step() {
	curl -s "$URL/api/v1/workers?job=$1" | tr '{' '\n' | sed -n 's/.*"rank":0,.*"step":\([0-9]*\).*/\1/p' | head -1
}

i=1
while [ $i -le "$TRIALS" ]; do
	rand_in 20 150
	at=$R
	d=$T/d$i
	mkdir -p "$d"
	trial daemon "$i" "SIGKILL sfpd at step $at of $STEPS"
	SFPD_HISTORY=$d/hist
	start_sfpd "$d/d1.log" --token s3cret
	[ -n "$URL" ] || bad "daemon: sfpd did not start: $(cat "$d/d1.log")"
	$MPI -np 2 "$W" $JOB --daemon "tcp://127.0.0.1:$WPORT" --set daemon.token=s3cret --set daemon.job=f$i \
		--set log.metrics="$d/m.jsonl" >"$d/out" 2>"$d/err" &
	job=$!
	wait_step "$d/m.jsonl" "$at" 60 $job || bad "daemon: the job did not reach step $at: $(tail -3 "$d/err")"
	killed=$(last_step "$d/m.jsonl")
	sfpd_outage "$d/d2.log" "$d/err" --token s3cret &&
		ok "daemon: sfpd killed at step $killed; the workers noticed ($(sed -n 's/^sfp-worker: daemon at [^ ]*: \(.*\); training on.*/\1/p' "$d/err" | head -1)); restarted" ||
		bad "daemon: the workers did not notice the outage within 30 s"
	restarted=$(last_step "$d/m.jsonl")
	t0=$(now_ms)
	if [ -z "$URL" ]; then
		bad "daemon: the restarted sfpd did not come up: $(cat "$d/d2.log")"
	else
		grep -q "records recovered" "$d/d2.log" && ! grep -q " 0 records recovered" "$d/d2.log" &&
			ok "daemon: history recovered ($(grep -o '[0-9]* records recovered' "$d/d2.log"))" ||
			bad "daemon: recovery: $(head -3 "$d/d2.log")"
		# what it knows: at least the reports up to the kill (one may have
		# been in flight), from the history; the workers may already have
		# reported newer steps to it, never beyond the job's own
		before=$(worker_step f$i)
		now=$(last_step "$d/m.jsonl")
		[ -n "$before" ] && [ "$before" -ge $((killed / REPORT * REPORT - REPORT)) ] && [ "$before" -le "$((now + REPORT))" ] &&
			ok "daemon: it knows rank 0 up to step $before (history up to the kill at about $killed, job at $now)" ||
			bad "daemon: after restart it knows step '$before' (killed at about step $killed, restarted at $restarted, job at $now)"
		back=""
		while [ -z "$back" ] && [ $(($(now_ms) - t0)) -lt 60000 ]; do
			s=$(worker_step f$i)
			[ -n "$s" ] && [ "$s" -gt "${before:-0}" ] && back=$(($(now_ms) - t0))
			[ -n "$back" ] || sleep 0.1
		done
		if [ -n "$back" ]; then
			worst_ms "$back"
			ok "daemon: the workers report to the new sfpd $(secs "$back") s after its restart"
		else
			bad "daemon: no report reached the new sfpd within 60 s"
		fi
	fi
	wait_gone $job "log.metrics=$d/m.jsonl" 120
	[ "$RC" -eq 0 ] && ok "daemon: the job finished" || bad "daemon: the job exited $RC: $(tail -3 "$d/err")"
	[ "$(final "$d/m.jsonl")" = "$ref" ] && ok "daemon: its final test accuracy and loss are the run's without a daemon" ||
		bad "daemon: final $(final "$d/m.jsonl") vs $ref"
	grep -q "reachable again" "$d/err" && ok "daemon: the workers said the daemon is reachable again" || bad "daemon: no 'reachable again'"
	# the reports the daemon holds: one point per report step; the outage's are lost
	got=$(curl -s "$URL/api/v1/job?job=f$i" | sed -n 's/.*"series":{"step":\[\([0-9,]*\)\].*/\1/p' | tr ',' '\n' | grep -c .)
	lost=$((STEPS / REPORT - got))
	worst_lost $lost
	[ "$got" -gt 0 ] && [ "$(worker_step f$i)" = "$STEPS" ] && ok "daemon: it holds $got of $((STEPS / REPORT)) report steps, up to step $STEPS ($lost lost in the outage)" ||
		bad "daemon: the new sfpd holds $got report steps, rank 0 at '$(worker_step f$i)'"
	kill $SFPD_PID 2>/dev/null
	wait $SFPD_PID 2>/dev/null
	SFPD_PID=""
	trial_end
	i=$((i + 1))
done
row "SIGKILL sfpd mid-run, restart it" "$TRIALS" "$(secs $MAX_MS) s (restart to first report)" "$MAX_LOST reports (of $((STEPS / REPORT))) that fell in the outage; training none"
echo "daemon.sh: $fails failed"
[ "$fails" -eq 0 ]
