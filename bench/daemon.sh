#!/bin/sh
# daemon.sh -- `make bench-daemon`: a real sfpd under load. `sfp bench
# daemon` (bench/daemon_load.c) runs 256 simulated workers of one job, each
# its own nng socket and registered rank, reporting 10 times a second over
# the worker protocol with the trainer's client (lib/coord), while wrk
# (bench/daemon_http.lua) asks for /metrics, /api/v1/bitlengths and
# /api/v1/workers on 4 connections. Two phases, each with a fresh sfpd and
# history file:
#   paced     every HTTP connection pauses DAEMON_BENCH_HTTP_PAUSE_MS (50)
#             between two requests: many open pages and scrapers at once
#   flat out  no pause: HTTP takes whatever the loop has left
# Printed per phase: reports sent / answered / failed (client side), what
# sfpd counted and dropped (/metrics), reports answered per second, each
# report's round trip (p50 / p99 / max) and how late the client started it
# (its lag), HTTP requests per second and latency, sfpd's peak RSS (VmHWM),
# its history file's size, the CPU of sfpd, the load generator and wrk, and
# the machine's load average; then the issue's targets (none dropped,
# p99 < 10 ms) met or missed, per phase.
#
#   DAEMON_BENCH_SECONDS=30 DAEMON_BENCH_WORKERS=256 DAEMON_BENCH_HZ=10 \
#   DAEMON_BENCH_STAGES=4 DAEMON_BENCH_THREADS=16 DAEMON_BENCH_HTTP_CONNECTIONS=4 \
#   DAEMON_BENCH_HTTP_PAUSE_MS=50 bench/daemon.sh
set -eu
cd "$(dirname "$0")/.."
B=${BUILD:-build}
SECS=${DAEMON_BENCH_SECONDS:-30}
WORKERS=${DAEMON_BENCH_WORKERS:-256}
HZ=${DAEMON_BENCH_HZ:-10}
STAGES=${DAEMON_BENCH_STAGES:-4}
THREADS=${DAEMON_BENCH_THREADS:-16}
CONNS=${DAEMON_BENCH_HTTP_CONNECTIONS:-4}
PAUSE=${DAEMON_BENCH_HTTP_PAUSE_MS:-50}
TARGET_P99_MS=10
OUT=$(mktemp -d)
PID=""
trap '[ -n "$PID" ] && kill -9 "$PID" 2>/dev/null; rm -rf "$OUT"' EXIT

for tool in wrk curl /usr/bin/time; do
	command -v "$tool" >/dev/null 2>&1 || {
		echo "daemon.sh: '$tool' not found; deploy/install-deps.sh --bench installs it" >&2
		exit 1
	}
done

# kv FILE KEY: the value of a "key value" line
kv() { awk -v k="$2" '$1 == k { print $2; exit }' "$1"; }
# cpu_ticks PID: user + system clock ticks so far
cpu_ticks() { awk '{ print $14 + $15 }' "/proc/$1/stat"; }
TICKS=$(getconf CLK_TCK)

# phase NAME PAUSE_MS: one run; leaves "key value" lines in $OUT/NAME
phase() {
	name=$1 pause=$2 r="$OUT/$1"
	log="$OUT/$name.sfpd.log"
	"$B/bin/sfpd" --http 127.0.0.1:0 --listen tcp://127.0.0.1:0 --history "$OUT/$name.hist" 2>"$log" &
	PID=$!
	i=0
	while [ $i -lt 100 ] && ! grep -q "workers: listening" "$log"; do sleep 0.1; i=$((i + 1)); done
	port=$(sed -n 's|^sfpd: http on http://127.0.0.1:\([0-9]*\)/$|\1|p' "$log")
	wurl=$(sed -n 's|^sfpd: workers: listening on \(tcp://[^ ]*\).*|\1|p' "$log")
	[ -n "$port" ] && [ -n "$wurl" ] || { echo "daemon.sh: sfpd did not start: $(cat "$log")" >&2; exit 1; }
	ticks0=$(cpu_ticks "$PID") t0=$(date +%s.%N)
	echo "machine_load $(cut -d' ' -f1 /proc/loadavg)" >"$r"
	# HTTP covers the whole report window (registration takes well under 2 s)
	DAEMON_BENCH_HTTP_PAUSE_MS=$pause /usr/bin/time -f "wrk_cpu_s %U %S" -o "$OUT/$name.time" \
		wrk -t1 -c"$CONNS" -d"$((SECS + 2))s" --timeout 5s -s bench/daemon_http.lua \
		"http://127.0.0.1:$port/" >"$OUT/$name.wrk" 2>&1 &
	wrk=$!
	echo "  $name: $WORKERS workers x $HZ Hz for $SECS s, HTTP on $CONNS connections" >&2
	"$B/bin/sfp" bench daemon --daemon "$wurl" --workers "$WORKERS" --hz "$HZ" --seconds "$SECS" \
		--stages "$STAGES" --threads "$THREADS" >>"$r" 2>"$OUT/$name.err" ||
		{ echo "daemon.sh: the load generator failed: $(cat "$OUT/$name.err")" >&2; exit 1; }
	wait "$wrk" || { echo "daemon.sh: wrk failed: $(cat "$OUT/$name.wrk")" >&2; exit 1; }
	cat "$OUT/$name.wrk" >>"$r"
	awk '{ printf "wrk_cpu_s %.2f\n", $2 + $3 }' "$OUT/$name.time" >>"$r"
	curl -sf "http://127.0.0.1:$port/metrics" >"$OUT/$name.metrics"
	awk '/^sfp_reports_total\{job="load"\}/ { print "sfpd_reports", $2 }
		/^sfp_dropped_messages_total/ { d += $2 } END { print "sfpd_dropped", d + 0 }' \
		"$OUT/$name.metrics" >>"$r"
	awk '/^VmHWM:/ { printf "sfpd_rss_mib %.1f\n", $2 / 1024 }' "/proc/$PID/status" >>"$r"
	echo "$(cpu_ticks "$PID") $ticks0 $TICKS $(date +%s.%N) $t0" |
		awk '{ printf "sfpd_cpu_pct %.1f\n", 100 * ($1 - $2) / $3 / ($4 - $5) }' >>"$r"
	kill -TERM "$PID"
	wait "$PID" || { echo "daemon.sh: sfpd did not stop cleanly: $(tail -3 "$log")" >&2; exit 1; }
	PID=""
	echo "history_bytes $(stat -c %s "$OUT/$name.hist")" >>"$r"
	sed 's/^/    /' "$OUT/$name.err" >&2
}

phase paced "$PAUSE"
phase flat 0

P=$OUT/paced F=$OUT/flat
row() { printf '| %s | %s | %s |\n' "$1" "$2" "$3"; }
# both phases through one awk expression over their key-value files
both() {
	label=$1 expr=$2
	a=$(awk "{ v[\$1] = \$2 } END { $expr }" "$P")
	b=$(awk "{ v[\$1] = \$2 } END { $expr }" "$F")
	row "$label" "$a" "$b"
}
echo
echo "sfpd under load: $(kv "$P" workers) workers of one job ($(kv "$P" stages) pipeline stages x" \
	"$(kv "$P" replicas) replicas, the $(kv "$P" tensors) tensors of fmnist-cnn), $HZ reports/s each," \
	"$SECS s per phase; HTTP: wrk on $CONNS connections over /metrics, /api/v1/bitlengths, /api/v1/workers"
echo
row "" "paced HTTP (${PAUSE} ms pauses)" "HTTP flat out"
row "---" "---:" "---:"
both "reports sent / answered / failed" 'printf "%d / %d / %d", v["reports_sent"], v["reports_answered"], v["reports_failed"]'
both "sfpd: reports counted / dropped" 'printf "%d / %d", v["sfpd_reports"], v["sfpd_dropped"]'
both "reports answered per second" 'printf "%.0f", v["reports_per_s"]'
both "report round trip p50 / p99 / max (ms)" 'printf "%.2f / %.2f / %.1f", v["latency_ms_p50"], v["latency_ms_p99"], v["latency_ms_max"]'
both "client lag p99 / max (ms)" 'printf "%.2f / %.1f", v["lag_ms_p99"], v["lag_ms_max"]'
both "HTTP requests per second" 'printf "%.0f", v["http_requests_per_s"]'
both "HTTP latency p50 / p99 (ms)" 'printf "%.2f / %.2f", v["http_latency_ms_p50"], v["http_latency_ms_p99"]'
both "HTTP errors / non-2xx" 'printf "%d / %d", v["http_errors"], v["http_non_2xx"]'
both "sfpd peak RSS (VmHWM)" 'printf "%.1f MiB", v["sfpd_rss_mib"]'
both "history file: size, bytes per report" 'printf "%.1f MiB, %.0f", v["history_bytes"] / 1048576, v["history_bytes"] / v["reports_answered"]'
both "CPU: sfpd / load generator / wrk (% of one core)" 'printf "%.0f / %.0f / %.0f", v["sfpd_cpu_pct"], v["client_cpu_pct"], 100 * v["wrk_cpu_s"] / (v["http_seconds"] + 0.001)'
both "machine load average (1 min) at the start" 'printf "%s", v["machine_load"]'
echo
echo "machine: $(nproc) CPUs, shared with other users (the load average includes their jobs)"
echo

# verdict FILE LABEL: the issue's targets, met or missed by how much
verdict() {
	awk -v label="$2" -v target="$TARGET_P99_MS" '{ v[$1] = $2 } END {
		lost = v["reports_failed"] + v["sfpd_dropped"] + (v["reports_sent"] - v["reports_answered"])
		if (lost == 0 && v["sfpd_reports"] == v["reports_answered"])
			printf "target none dropped (%s): met (%d of %d answered and counted)\n", label, v["reports_answered"], v["reports_sent"]
		else
			printf "target none dropped (%s): MISSED: %d failed, %d dropped by sfpd, %d counted of %d sent\n", label, v["reports_failed"], v["sfpd_dropped"], v["sfpd_reports"], v["reports_sent"]
		p = v["latency_ms_p99"]
		if (p < target)
			printf "target p99 < %d ms (%s): met (%.2f ms)\n", target, label, p
		else
			printf "target p99 < %d ms (%s): MISSED by %.2f ms (%.2f ms)\n", target, label, p - target, p
	}' "$1"
}
verdict "$P" "paced HTTP"
verdict "$F" "HTTP flat out"
