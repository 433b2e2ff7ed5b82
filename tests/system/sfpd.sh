#!/bin/sh
# sfpd.sh -- the daemon end to end, on free loopback ports: usage errors,
# a real sfpd fed by --simulate, every endpoint with curl (status codes,
# JSON fields, keep-alive, pipelining), malformed and oversize requests
# (400, 413, 414, 431), the connection limit and a client that does not
# read (sfpd_load.py), `promtool check metrics`, kill -9 and a restart
# with the same --history (history recovered, then continued), a torn
# history tail, SIGTERM; then, where installed, a real Prometheus server
# scraping sfpd and the page in headless Chromium: on the recovered (static)
# history, the data the page plotted equals what the API returns
# (sfpd_plotted.py); live, every chart drawn (screenshot saved as
# $BUILD/artifacts/sfpd-page.png).
set -u
. "$(dirname "$0")/common.inc"
B=${BUILD:-build}
D=$B/bin/sfpd
ART=$B/artifacts
mkdir -p "$ART"
PIDS=""
# only the processes this script started
cleanup() {
	for p in $PIDS; do kill -9 "$p" 2>/dev/null; done
	rm -rf "$T"
}
trap cleanup EXIT

# start LOG ARGS...: sfpd on a free port (--http 127.0.0.1:0); sets PID, URL
start() {
	log=$1
	shift
	: >"$log"
	"$D" --http 127.0.0.1:0 "$@" 2>"$log" &
	PID=$!
	PIDS="$PIDS $PID"
	URL=""
	i=0
	while [ $i -lt 200 ]; do
		port=$(sed -n 's|^sfpd: http on http://127.0.0.1:\([0-9]*\)/$|\1|p' "$log")
		if [ -n "$port" ]; then
			URL=http://127.0.0.1:$port
			return 0
		fi
		kill -0 "$PID" 2>/dev/null || break
		sleep 0.05
		i=$((i + 1))
	done
	bad "sfpd did not start: $(cat "$log")"
	return 1
}

# json URL EXPR: evaluate a python expression over the JSON at URL (as j)
json() {
	curl -sf "$1" | python3 -c "import json,sys; j=json.load(sys.stdin); print($2)" 2>/dev/null
}

# status ARGS...: the HTTP status curl gets
status() { curl -s -o /dev/null -w '%{http_code}' "$@"; }

# wait_for URL EXPR: until the python expression is True (10 s at most)
wait_for() {
	i=0
	while [ $i -lt 200 ]; do
		[ "$(json "$1" "$2")" = "True" ] && return 0
		sleep 0.05
		i=$((i + 1))
	done
	return 1
}

if ! command -v curl >/dev/null 2>&1 || ! command -v python3 >/dev/null 2>&1; then
	echo "skip sfpd.sh: curl and python3 are needed (deploy/install-deps.sh installs them)"
	exit 0
fi

# ---- usage ----
expect 0 "sfpd --help" "$D" --help
grep -q -- "--simulate N" "$T/out" && grep -q "SIMULATION" "$T/out" && ok "help names the simulation" || bad "help text"
expect 0 "sfpd --version" "$D" --version
grep -q "^sfpd [0-9]" "$T/out" && ok "version line" || bad "version: $(cat "$T/out")"
expect 2 "unknown option" "$D" --frobnicate 1
expect 2 "option without its value" "$D" --history
expect 2 "bad --simulate" "$D" --simulate 0
expect 2 "bad --max-points" "$D" --max-points 8
expect 2 "bad --listen" "$D" --listen localhost:1
expect 2 "bad --http" "$D" --http nohost
grep -q "expected HOST:PORT" "$T/err" && ok "bad --http says why" || bad "--http message: $(cat "$T/err")"
printf 'my notes\n' >"$T/notes.txt"
expect 2 "a file that is not a history" "$D" --http 127.0.0.1:0 --history "$T/notes.txt"
grep -q "notes.txt': not an sfpd history file" "$T/err" && ok "foreign history named" || bad "foreign history: $(cat "$T/err")"
[ "$(cat "$T/notes.txt")" = "my notes" ] && ok "foreign file untouched" || bad "foreign file changed"

# ---- a simulated job ----
H=$T/sfpd.hist
start "$T/d1.log" --history "$H" --simulate 3 --simulate-interval-ms 20 --token secret || exit 1
grep -q "SIMULATION: 3 fake workers" "$T/d1.log" && ok "simulation announced" || bad "no simulation line: $(cat "$T/d1.log")"
wait_for "$URL/api/v1/job" "j['step'] is not None and j['step'] >= 200" && ok "reports arrive" || bad "no reports: $(curl -s "$URL/api/v1/job")"

[ "$(status "$URL/healthz")" = 200 ] && [ "$(curl -s "$URL/healthz")" = ok ] && ok "GET /healthz" || bad "/healthz"
[ "$(status "$URL/readyz")" = 200 ] && ok "GET /readyz" || bad "/readyz"
curl -s -D "$T/h" -o "$T/metrics" "$URL/metrics"
grep -qi "^content-type: text/plain; version=0.0.4" "$T/h" && ok "metrics content type" || bad "metrics headers: $(cat "$T/h")"
for m in 'sfp_build_info{version="' 'sfp_step{job="simulation"}' 'sfp_loss{job="simulation"}' \
	'sfp_workers_up{job="simulation"} 3' 'sfp_wire_bytes_total{job="simulation"}' \
	'sfp_raw_bytes_total{job="simulation"}' 'sfp_footprint_ratio{job="simulation"}' \
	'sfp_layer_mantissa_width{job="simulation",layer="conv1",kind="weights"}' \
	'sfp_layer_exponent_width{job="simulation",layer="fc1",kind="activations"}' \
	'sfp_dropped_messages_total{reason="bad_token"} 0' '# TYPE sfp_samples_total counter'; do
	grep -qF "$m" "$T/metrics" && ok "metrics has $m" || bad "metrics lacks $m"
done
if command -v promtool >/dev/null 2>&1; then
	promtool check metrics <"$T/metrics" >"$T/pt" 2>&1 && ok "promtool check metrics" || bad "promtool: $(cat "$T/pt")"
else
	echo "skip promtool: not installed (deploy/install-deps.sh installs prometheus)"
fi

[ "$(json "$URL/api/v1/job" "j['job'], j['workers']['up'], len(j['layers']), j['layers'][0]['layer']")" = "simulation 3 6 conv1" ] &&
	ok "/api/v1/job fields" || bad "/api/v1/job: $(curl -s "$URL/api/v1/job" | head -c 400)"
[ "$(json "$URL/api/v1/job" "all(isinstance(j[k], (int, float)) for k in ('step', 'loss', 'footprint_bits_per_value', 'wire_bytes_total')) and len(j['series']['step']) == len(j['series']['loss']) > 10")" = True ] &&
	ok "/api/v1/job values and series" || bad "/api/v1/job values"
[ "$(json "$URL/api/v1/workers" "[(w['rank'], w['state']) for w in j['workers']]")" = "[(0, 'up'), (1, 'up'), (2, 'up')]" ] &&
	ok "/api/v1/workers" || bad "/api/v1/workers: $(curl -s "$URL/api/v1/workers" | head -c 300)"
[ "$(json "$URL/api/v1/bitlengths?layer=conv1&since=100" "[(l['layer'], l['kind']) for l in j['layers']], min(j['layers'][0]['series']['step']) >= 100, set(j['layers'][0]['series']) == {'step', 'e', 'm', 'n_e', 'n_m'}")" = "[('conv1', 'weights')] True True" ] &&
	ok "/api/v1/bitlengths?layer=&since=" || bad "/api/v1/bitlengths: $(curl -s "$URL/api/v1/bitlengths?layer=conv1&since=100" | head -c 300)"
[ "$(json "$URL/api/v1/bitlengths" "len(j['layers'])")" = 7 ] && ok "/api/v1/bitlengths: every tensor" || bad "bitlengths count"
[ "$(status "$URL/api/v1/bitlengths?layer=nope")" = 404 ] && ok "unknown layer: 404" || bad "unknown layer"
[ "$(status "$URL/api/v1/job?job=nope")" = 404 ] && ok "unknown job: 404" || bad "unknown job"
[ "$(status "$URL/nope")" = 404 ] && ok "unknown page: 404" || bad "unknown page"
[ "$(status -X POST --data x "$URL/api/v1/job")" = 405 ] && ok "POST: 405" || bad "POST"
[ "$(status -I "$URL/healthz")" = 200 ] && ok "HEAD /healthz" || bad "HEAD"
curl -s "$URL/" | grep -q '<script src="/uplot.min.js">' && ok "the page" || bad "the page"
curl -s "$URL/uplot.min.js" | grep -q "uPlot" && ok "uPlot is served (embedded)" || bad "uplot.min.js"
[ "$(status "$URL/uplot.min.css")" = 200 ] && ok "uPlot css" || bad "uplot.min.css"

# keep-alive: three requests in one curl run use one connection
acc() { grep '^sfp_http_connections_accepted_total ' "$1" | cut -d' ' -f2; }
curl -s "$URL/metrics" >"$T/m1"
curl -s "$URL/healthz" "$URL/readyz" "$URL/metrics" >"$T/m2"
[ $(($(acc "$T/m2") - $(acc "$T/m1"))) -eq 1 ] && ok "keep-alive: one connection for three requests" || bad "keep-alive: $(acc "$T/m1") -> $(acc "$T/m2")"

# ---- malformed and oversize requests ----
if command -v nc >/dev/null 2>&1; then
	printf 'GARBAGE\r\n\r\n' | nc -q 3 127.0.0.1 "$port" >"$T/nc" 2>&1
	head -1 "$T/nc" | grep -q "^HTTP/1.1 400 " && ok "garbage: 400" || bad "garbage: $(head -3 "$T/nc")"
	printf 'GET /healthz HTTP/1.1\r\n\r\nGET /readyz HTTP/1.1\r\nConnection: close\r\n\r\n' | nc -q 3 127.0.0.1 "$port" >"$T/nc"
	[ "$(grep -c '^HTTP/1.1 200 OK' "$T/nc")" = 2 ] && grep -q '^ready$' "$T/nc" && ok "pipelined requests" || bad "pipelining: $(cat "$T/nc")"
	printf 'GET / HTTP/2.0\r\n\r\n' | nc -q 3 127.0.0.1 "$port" >"$T/nc"
	head -1 "$T/nc" | grep -q "^HTTP/1.1 505 " && ok "HTTP/2.0 request line: 505" || bad "version: $(head -1 "$T/nc")"
	head -c 3000 /dev/urandom | nc -q 3 127.0.0.1 "$port" >"$T/nc" 2>&1
	head -1 "$T/nc" | grep -q "^HTTP/1.1 4" && ok "random bytes: 4xx" || bad "random bytes: $(head -c 100 "$T/nc")"
else
	echo "skip nc checks: netcat is not installed"
fi
[ "$(status --request-target '/api/v1/job?since=-3' "$URL/")" = 400 ] && ok "bad since: 400" || bad "bad since"
[ "$(status --request-target '/api/v1/job?job=%zz' "$URL/")" = 400 ] && ok "bad escape: 400" || bad "bad escape"
[ "$(status --request-target 'nonsense' "$URL/")" = 400 ] && ok "bad request target: 400" || bad "bad target"
big=$(head -c 9000 /dev/zero | tr '\0' a)
[ "$(status -H "X-Big: $big" "$URL/healthz")" = 431 ] && ok "header too large: 431" || bad "big header"
hdrs=""
for i in $(seq 1 40); do hdrs="$hdrs -H X-$i:$i"; done
# shellcheck disable=SC2086
[ "$(status $hdrs "$URL/healthz")" = 431 ] && ok "too many headers: 431" || bad "many headers"
[ "$(status "$URL/$(head -c 3000 /dev/zero | tr '\0' a)")" = 414 ] && ok "target too long: 414" || bad "long target"
head -c 6000 /dev/zero >"$T/body"
[ "$(status -H 'Expect:' --data-binary @"$T/body" "$URL/api/v1/job")" = 413 ] && ok "body too large: 413" || bad "big body"
[ "$(status "$URL/healthz")" = 200 ] && kill -0 "$PID" && ok "still serving after all that" || bad "sfpd died"
curl -s "$URL/metrics" | grep -q '^sfp_http_responses_total{code="431"} 2$' && ok "responses counted by code" || bad "response counters"

# ---- the connection limit and a client that does not read (sfpd_load.py) ----
timeout 90 python3 "$(dirname "$0")/sfpd_load.py" "$port" >"$T/load" 2>&1
[ "$(cat "$T/load")" = "6 True 2000" ] && ok "connection limit (503) and 2000 unread pipelined responses" || bad "load: $(cat "$T/load")"
[ "$(status "$URL/healthz")" = 200 ] && ok "serving after the load" || bad "not serving after the load"

# ---- kill -9 and restart with the same history ----
step=$(json "$URL/api/v1/job" "j['step']")
kill -9 "$PID"
wait "$PID" 2>/dev/null
start "$T/d2.log" --history "$H" || exit 1
grep -q "history '$H': [1-9][0-9]* records recovered, 0 corrupt skipped" "$T/d2.log" && ok "history replayed" || bad "recovery line: $(cat "$T/d2.log")"
[ "$(json "$URL/api/v1/job" "j['step'] >= $step and j['workers']['stale'] == 3 and len(j['series']['step']) > 10")" = True ] &&
	ok "history recovered after kill -9 (step >= $step, workers stale)" || bad "after restart: $(curl -s "$URL/api/v1/job" | head -c 300)"
curl -s "$URL/api/v1/bitlengths?layer=fc2" | grep -q '"kind":"weights"' && ok "widths recovered" || bad "widths after restart"

# the page's plotted points against the API, on data that no longer changes
# (the recovered history; nothing reports): the page writes what each chart
# holds into <script id="plotted">, Chromium's DOM dump carries it out
CH="chromium --headless --no-sandbox --disable-gpu --hide-scrollbars --window-size=1400,1800 --virtual-time-budget=5000"
if command -v chromium >/dev/null 2>&1; then
	timeout 120 $CH --dump-dom "$URL/" >"$T/dom-static" 2>"$T/chromium-static.log"
	curl -s "$URL/api/v1/job" >"$T/api-job.json"
	curl -s "$URL/api/v1/bitlengths" >"$T/api-bitlengths.json"
	python3 "$(dirname "$0")/sfpd_plotted.py" "$T/dom-static" "$T/api-job.json" "$T/api-bitlengths.json" >"$T/plotted" 2>&1 &&
		ok "page in Chromium plotted what the API returns ($(cat "$T/plotted"))" || bad "page against the API: $(cat "$T/plotted"); $(tail -3 "$T/chromium-static.log")"
else
	echo "skip the page against the API: chromium not installed (deploy/install-deps.sh installs it)"
fi
kill -TERM "$PID"
wait "$PID"
[ $? -eq 0 ] && grep -q "sfpd: stopped" "$T/d2.log" && ok "SIGTERM: clean stop, exit 0" || bad "SIGTERM: $(tail -3 "$T/d2.log")"

# a torn tail (a crash mid-write) is cut, never fatal; the simulation goes on
printf 'SFPR\377\377' >>"$H"
start "$T/d3.log" --history "$H" --simulate 1 --simulate-interval-ms 20 || exit 1
grep -q "6 bytes of torn tail cut" "$T/d3.log" && ok "torn tail cut" || bad "torn tail: $(cat "$T/d3.log")"
wait_for "$URL/api/v1/job" "j['step'] > $step + 100" && ok "simulation continues the recovered job" || bad "no progress after restart"

# ---- a real Prometheus scraping sfpd ----
free_port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])'; }
if command -v prometheus >/dev/null 2>&1; then
	pp=$(free_port)
	cat >"$T/prom.yml" <<EOF
global:
  scrape_interval: 1s
scrape_configs:
  - job_name: sfpd
    honor_labels: true
    static_configs:
      - targets: ['127.0.0.1:$port']
EOF
	prometheus --config.file="$T/prom.yml" --storage.tsdb.path="$T/prom" \
		--web.listen-address="127.0.0.1:$pp" >"$T/prom.log" 2>&1 &
	PP=$!
	PIDS="$PIDS $PP"
	q="http://127.0.0.1:$pp/api/v1/query?query=sfp_layer_mantissa_width"
	i=0
	while [ $i -lt 60 ]; do
		n=$(json "$q" "len([r for r in j['data']['result'] if r['metric'].get('job') == 'simulation' and r['metric']['layer'] == 'conv1'])")
		[ "$n" = 1 ] && break
		sleep 0.5
		i=$((i + 1))
	done
	[ "${n:-}" = 1 ] && ok "Prometheus scraped sfpd: width series queryable" || bad "Prometheus: $(curl -s "$q" | head -c 300) $(tail -3 "$T/prom.log")"
	[ "$(json "http://127.0.0.1:$pp/api/v1/query?query=up" "j['data']['result'][0]['value'][1]")" = 1 ] && ok "Prometheus: target up" || bad "Prometheus target"
	kill "$PP" 2>/dev/null
	wait "$PP" 2>/dev/null
else
	echo "skip Prometheus: not installed (deploy/install-deps.sh installs prometheus)"
fi

# ---- the page in headless Chromium ----
if command -v chromium >/dev/null 2>&1; then
	timeout 120 $CH --dump-dom "$URL/" >"$T/dom" 2>"$T/chromium.log"
	[ "$(grep -o 'class="uplot' "$T/dom" | wc -l)" -ge 8 ] && grep -q 'conv1 (weights)' "$T/dom" && grep -q 'fc1 (weights, activations)' "$T/dom" &&
		ok "page in Chromium: loss, footprint and every layer plotted" || bad "page DOM: $(grep -o 'class="uplot' "$T/dom" | wc -l) charts; $(tail -3 "$T/chromium.log")"
	grep -q 'id="status" class="status">live' "$T/dom" && ok "page says live" || bad "page status: $(grep -o 'id="status"[^<]*' "$T/dom")"
	timeout 120 $CH --screenshot="$ART/sfpd-page.png" "$URL/" >/dev/null 2>&1
	[ -s "$ART/sfpd-page.png" ] && ok "screenshot: $ART/sfpd-page.png" || bad "no screenshot"
else
	echo "skip Chromium: not installed (deploy/install-deps.sh installs chromium)"
fi

kill -TERM "$PID"
wait "$PID"
[ $? -eq 0 ] && ok "stopped" || bad "stop: $(tail -3 "$T/d3.log")"
echo "sfpd.sh: $fails failed"
[ "$fails" -eq 0 ]
