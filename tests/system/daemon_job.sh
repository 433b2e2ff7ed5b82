#!/bin/sh
# daemon_job.sh -- a real sfpd with real mpirun workers: the workers
# register and report over nng, the widths reach the JSON API and
# /metrics; the token is enforced; sfpd killed with SIGKILL mid-run costs
# the job nothing, and a restarted sfpd recovers its history and the workers
# report to it again; a job without a reachable daemon trains on; a job
# whose sfpd is paused through its last reports ends with sfpd at its last
# step.
set -u
. "$(dirname "$0")/common.inc"
B=${BUILD:-build}
W=$B/bin/sfp-worker
if ! command -v curl >/dev/null 2>&1; then
	echo "skip daemon_job.sh: curl missing (deploy/install-deps.sh installs it)"
	exit 0
fi
mpi_init daemon_job.sh
CNN="--config deploy/examples/fmnist-cnn.yaml --set data.train_limit=1280 --set data.test_limit=128 --set log.every=10"
# the workers' listener, below the ephemeral range (the nng ports of the jobs are 20000..29999)
WPORT=$(free_port 30000 32768)
SFPD_PID=""
at_exit '[ -n "$SFPD_PID" ] && kill -9 $SFPD_PID 2>/dev/null'
sfpd_up() { [ -n "$URL" ] && ok "sfpd up at $URL" || bad "sfpd did not start: $(cat "$1")"; }

start_sfpd "$T/d1.log" --token s3cret
sfpd_up "$T/d1.log"
expect 0 "2 workers, quantum, reporting" $MPI -np 2 "$W" $CNN --set train.max_steps=30 --set bitlength.policy=quantum \
	--set bitlength.m=7 --set daemon.token=s3cret --daemon "tcp://127.0.0.1:$WPORT" --set daemon.job=e2e
grep -q "registered at tcp://127.0.0.1:$WPORT as job 'e2e'" "$T/err" && ok "worker registered" || bad "register: $(head -5 "$T/err")"
curl -s "$URL/api/v1/workers?job=e2e" >"$T/w.json"
grep -q '"rank":0' "$T/w.json" && grep -q '"rank":1' "$T/w.json" && grep -q '"step":30' "$T/w.json" && ok "both ranks known, at step 30" || bad "workers: $(cat "$T/w.json")"
curl -s "$URL/api/v1/bitlengths?layer=conv1" >"$T/b.json"
grep -q '"layer":"conv1","kind":"weights"' "$T/b.json" && grep -q '"step":\[10,20,30\]' "$T/b.json" && ok "conv1 widths over steps in the API" || bad "bitlengths: $(cat "$T/b.json")"
curl -s "$URL/metrics" >"$T/m.txt"
grep -q 'sfp_layer_mantissa_width{job="e2e",layer="conv1",kind="weights"}' "$T/m.txt" && ok "per-layer width gauge in /metrics" || bad "metrics: $(grep layer "$T/m.txt" | head -3)"
grep -q "left (finished)" "$T/d1.log" && ok "workers said goodbye" || bad "goodbye: $(cat "$T/d1.log")"

# the token: a worker without it is refused, counted, and trains on
expect 0 "a worker with the wrong token still trains" "$W" $CNN --set train.max_steps=10 \
	--daemon "tcp://127.0.0.1:$WPORT" --set daemon.token=wrong --set daemon.job=intruder
grep -q "refused the request: missing or wrong job token" "$T/err" && ok "wrong token: refused, said once" || bad "token: $(cat "$T/err")"
curl -s "$URL/metrics" | grep -q 'sfp_dropped_messages_total{reason="bad_token"} [1-9]' && ok "refusal counted in /metrics" || bad "bad_token not counted"

# sfpd paused while the last reports come due: the worker backs off and skips
# them, and at the end reports its last step once more and says goodbye
"$W" $CNN --set train.max_steps=100 --set log.every=1 --set daemon.report_every=5 --set daemon.timeout_s=2 \
	--set daemon.token=s3cret --set daemon.job=paused --daemon "tcp://127.0.0.1:$WPORT" --set log.metrics="$T/p.jsonl" \
	>"$T/pout" 2>"$T/perr" &
job=$!
wait_step "$T/p.jsonl" 10 30 $job || bad "the paused job did not reach step 10: $(tail -3 "$T/perr")"
kill -STOP $SFPD_PID
wait_step "$T/p.jsonl" 90 120 $job || bad "the paused job did not reach step 90: $(tail -3 "$T/perr")"
kill -CONT $SFPD_PID
wait $job
rc=$?
[ $rc -eq 0 ] && ok "a job whose sfpd was paused finished" || bad "paused job exit $rc: $(tail -5 "$T/perr")"
grep -q "training on with the current widths" "$T/perr" && ok "the pause was noticed" || bad "pause not noticed: $(grep daemon "$T/perr")"
curl -s "$URL/api/v1/workers?job=paused" >"$T/w.json"
python3 -c "import json,sys; w=json.load(open(sys.argv[1]))['workers']; sys.exit(not (len(w) == 1 and w[0]['state'] == 'left' and w[0]['step'] == 100))" "$T/w.json" &&
	ok "after the pause sfpd has the last step (100) and the goodbye" || bad "paused job in sfpd: $(cat "$T/w.json")"

# sfpd killed mid-run: the job goes on; a restarted sfpd recovers the history and hears from the workers again
$MPI -np 2 "$W" $CNN --set train.max_steps=400 --set daemon.report_every=5 --set daemon.token=s3cret \
	--set daemon.job=e2e --daemon "tcp://127.0.0.1:$WPORT" --set log.metrics="$T/run.jsonl" >"$T/jout" 2>"$T/jerr" &
job=$!
wait_step "$T/run.jsonl" 40 30 $job || bad "the job did not reach step 40: $(tail -3 "$T/jerr")"
sfpd_outage "$T/d2.log" "$T/jerr" --token s3cret || bad "the workers did not notice the outage within 30 s"
sfpd_up "$T/d2.log"
grep -q "records recovered" "$T/d2.log" && ! grep -q " 0 records recovered" "$T/d2.log" && ok "restarted sfpd recovered its history" || bad "recovery: $(head -3 "$T/d2.log")"
wait $job
rc=$?
[ $rc -eq 0 ] && ok "the job finished although sfpd was killed" || bad "job exit $rc: $(tail -5 "$T/jerr")"
curl -s "$URL/api/v1/workers?job=e2e" >"$T/w2.json"
grep -q '"step":400' "$T/w2.json" && ok "workers reported to the restarted sfpd (step 400)" || bad "after restart: $(cat "$T/w2.json")"
grep -q "training on with the current widths" "$T/jerr" && grep -q "reachable again" "$T/jerr" && ok "the outage was noticed and said" || bad "no outage notice: $(grep daemon "$T/jerr")"

kill $SFPD_PID 2>/dev/null
wait $SFPD_PID 2>/dev/null
SFPD_PID=""
echo "daemon_job.sh: $fails failed"
[ "$fails" -eq 0 ]
