#!/bin/sh
# daemon_load.sh -- `make bench-daemon`'s load generator in a short run, so
# it is exercised and cannot rot: a real sfpd, 64 simulated workers of one
# job (4 pipeline stages x 16 replicas, each its own nng socket and rank)
# reporting 10 times a second for 5 s over the worker protocol while curl
# asks for /metrics, /api/v1/bitlengths and /api/v1/workers. Every report
# must be answered and counted by sfpd, none dropped; the store must hold
# what was sent (workers, steps, samples, every tensor's series) and the
# history file every record. Latency is printed by the bench, not asserted
# here (timing on a shared machine is noise).
set -u
. "$(dirname "$0")/common.inc"
B=${BUILD:-build}
D=$B/bin/sfpd
WORKERS=64 HZ=10 SECS=5 STAGES=4
REPORTS=$((WORKERS * HZ * SECS))
PID=""
HTTP=""
trap '[ -n "$PID" ] && kill -9 $PID 2>/dev/null; [ -n "$HTTP" ] && kill $HTTP 2>/dev/null; rm -rf "$T"' EXIT
if ! command -v curl >/dev/null 2>&1 || ! command -v python3 >/dev/null 2>&1; then
	echo "skip daemon_load.sh: curl and python3 are needed (deploy/install-deps.sh installs them)"
	exit 0
fi

# start_sfpd LOG ARGS...: sfpd on free ports; sets PID, URL, WURL
start_sfpd() {
	log=$1
	shift
	"$D" --http 127.0.0.1:0 --listen tcp://127.0.0.1:0 --history "$T/hist" "$@" 2>"$log" &
	PID=$!
	i=0
	while [ $i -lt 100 ] && ! grep -q "workers: listening" "$log"; do sleep 0.1; i=$((i + 1)); done
	URL=http://127.0.0.1:$(sed -n 's|^sfpd: http on http://127.0.0.1:\([0-9]*\)/$|\1|p' "$log")
	WURL=$(sed -n 's|^sfpd: workers: listening on \(tcp://[^ ]*\).*|\1|p' "$log")
	[ -n "$WURL" ] && ok "sfpd up, workers at $WURL" || bad "sfpd did not start: $(cat "$log")"
}
# kv KEY: a value of the load generator's output
kv() { awk -v k="$1" '$1 == k { print $2 }' "$T/load"; }
# json URL EXPR: a python expression over the JSON at URL (as j)
json() { curl -sf "$1" | python3 -c "import json,sys; j=json.load(sys.stdin); print($2)" 2>/dev/null; }

start_sfpd "$T/d1.log"
[ -n "$WURL" ] || exit 1

# HTTP beside the reports, as the page and Prometheus would ask
(
	while :; do
		for p in metrics api/v1/bitlengths api/v1/workers; do
			curl -s -o /dev/null -w '%{http_code}\n' "$URL/$p"
		done
		sleep 0.05
	done
) >"$T/http" &
HTTP=$!
expect 0 "sfp bench daemon: $WORKERS workers x $HZ Hz for $SECS s" \
	"$SFP" bench daemon --daemon "$WURL" --workers $WORKERS --hz $HZ --seconds $SECS \
	--stages $STAGES --threads 8
cp "$T/out" "$T/load"
kill $HTTP
wait $HTTP 2>/dev/null
HTTP=""
sed 's/^/    /' "$T/load"

[ "$(kv reports_sent)" = $REPORTS ] && ok "every worker sent $((HZ * SECS)) reports ($REPORTS)" || bad "reports sent: $(kv reports_sent)"
[ "$(kv reports_answered)" = $REPORTS ] && [ "$(kv reports_failed)" = 0 ] &&
	ok "all $REPORTS answered, none failed" || bad "answered $(kv reports_answered), failed $(kv reports_failed): $(cat "$T/err")"
[ "$(kv registers_failed)" = 0 ] && [ "$(kv goodbyes_failed)" = 0 ] && ok "registers and goodbyes answered" || bad "register/goodbye failures: $(cat "$T/err")"
for k in latency_ms_p50 latency_ms_p99 latency_ms_max lag_ms_p99 reports_per_s client_cpu_pct; do
	[ -n "$(kv $k)" ] || bad "no $k in the output"
done
n=$(grep -c . "$T/http")
[ "$n" -gt 0 ] && [ "$(grep -vc '^200$' "$T/http")" = 0 ] && ok "$n HTTP requests during the run, all 200" || bad "HTTP during the load: $(sort "$T/http" | uniq -c)"

curl -s "$URL/metrics" >"$T/m"
grep -q "^sfp_reports_total{job=\"load\"} $REPORTS\$" "$T/m" && ok "sfpd counted $REPORTS reports" || bad "sfpd counted: $(grep '^sfp_reports_total' "$T/m")"
[ "$(awk '/^sfp_dropped_messages_total/ { d += $2 } END { print d + 0 }' "$T/m")" = 0 ] && ok "sfpd dropped none" || bad "drops: $(grep '^sfp_dropped' "$T/m")"
grep -q "^sfp_workers{job=\"load\",state=\"left\"} $WORKERS\$" "$T/m" && ok "all $WORKERS said goodbye" || bad "workers: $(grep '^sfp_workers{' "$T/m")"
# the store: ranks laid out like the trainer's (stage = rank % S), every report's steps and samples
[ "$(json "$URL/api/v1/workers?job=load" "len(j['workers']), all(w['reports'] == $HZ * $SECS and w['step'] == $HZ * $SECS * 10 and w['stage'] == w['rank'] % $STAGES and w['replica'] == w['rank'] // $STAGES for w in j['workers'])")" = "$WORKERS True" ] &&
	ok "/api/v1/workers: $WORKERS ranks, stage = rank % $STAGES, $((HZ * SECS)) reports each" || bad "workers: $(curl -s "$URL/api/v1/workers?job=load" | head -c 300)"
[ "$(json "$URL/api/v1/job?job=load" "len(j['series']['step']), j['series']['samples_total'][-1]")" = "$((HZ * SECS)) $((REPORTS * 640))" ] &&
	ok "job series: one point per step, samples summed over the ranks" || bad "job: $(json "$URL/api/v1/job?job=load" "len(j['series']['step']), j['series']['samples_total'][-1]")"
[ "$(json "$URL/api/v1/bitlengths?job=load" "len(j['layers']) >= 8 and all(len(t['series']['step']) == $HZ * $SECS for t in j['layers'])")" = True ] &&
	ok "/api/v1/bitlengths: every tensor's series complete" || bad "bitlengths: $(curl -s "$URL/api/v1/bitlengths?job=load" | head -c 300)"
kill -TERM $PID
wait $PID
[ $? -eq 0 ] && ok "SIGTERM after the load: clean stop" || bad "stop: $(tail -3 "$T/d1.log")"
PID=""

# the history holds every register, report and goodbye
start_sfpd "$T/d2.log"
records=$((WORKERS + REPORTS + WORKERS))
grep -q "$records records recovered, 0 corrupt skipped, 0 refused" "$T/d2.log" && ok "history: all $records records recovered" || bad "recovery: $(grep history "$T/d2.log")"
kill -TERM $PID
wait $PID
PID=""

# bad usage is refused with a message, not run
expect 2 "bench daemon without --daemon" "$SFP" bench daemon --workers 4
expect 2 "workers not a multiple of the stages" "$SFP" bench daemon --daemon tcp://127.0.0.1:1 --workers 6 --stages 4
echo "daemon_load.sh: $fails failed"
[ "$fails" -eq 0 ]
