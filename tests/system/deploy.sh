#!/bin/sh
# deploy.sh -- the deploy kit's files against the real tools (the Slurm
# templates have their own test, slurm.sh):
# - deploy/hostfile.example: mpirun's placement of 8 ranks on it
#   (--display-map --do-not-launch), stages of a replica on one host;
# - deploy/systemd/sfpd.service: `systemd-analyze verify` says nothing (and
#   does complain about a misspelt key), `systemd-analyze security` rates it
#   OK, and sfpd runs with its ExecStart line as systemd would expand it
#   with sfpd.env.example (token required, history in the state folder);
# - deploy/prometheus/: promtool check config / check rules / test rules;
# - deploy/grafana/sfp-dashboard.json: valid JSON, a Grafana dashboard with
#   a ${DS_PROMETHEUS} input and the panels it promises, every metric in its
#   queries and in the alert rules exported by a real sfpd (--simulate);
# - a real Prometheus with deploy/prometheus/prometheus.yml and alerts.yml
#   scraping that sfpd: every dashboard query returns series, every rule
#   evaluates without error.
set -u
. "$(dirname "$0")/common.inc"
B=${BUILD:-build}
D=$(cd "$B/bin" && pwd)/sfpd
PIDS=""
cleanup() {
	for p in $PIDS; do kill -9 "$p" 2>/dev/null; done
	rm -rf "$T"
}
trap cleanup EXIT
if ! command -v curl >/dev/null 2>&1 || ! command -v python3 >/dev/null 2>&1; then
	echo "skip deploy.sh: curl and python3 are needed (deploy/install-deps.sh installs them)"
	exit 0
fi
free_port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])'; }

# start_sfpd LOG ARGS...: sfpd in the background; sets PID and URL (the
# port comes from its "http on" line)
start_sfpd() {
	log=$1
	shift
	: >"$log"
	"$@" >"$log" 2>&1 &
	PID=$!
	PIDS="$PIDS $PID"
	URL=""
	i=0
	while [ $i -lt 100 ] && [ -z "$URL" ]; do
		port=$(sed -n 's|^sfpd: http on http://127.0.0.1:\([0-9]*\)/$|\1|p' "$log")
		[ -n "$port" ] && URL=http://127.0.0.1:$port
		[ -z "$URL" ] && sleep 0.1
		i=$((i + 1))
	done
	[ -n "$URL" ]
}

# ---- hostfile.example: where mpirun puts 8 ranks ----
if command -v mpirun >/dev/null 2>&1; then
	RR=""
	[ "$(id -u)" -eq 0 ] && RR=--allow-run-as-root
	# shellcheck disable=SC2086
	timeout 30 mpirun $RR --hostfile deploy/hostfile.example -np 8 --map-by slot --bind-to none \
		--display-map --do-not-launch true >"$T/map" 2>&1
	awk '/Data for node:/ { node = $4 } /Process rank:/ { for (i = 1; i < NF; i++) if ($i == "rank:") print $(i + 1), node }' "$T/map" |
		sort -n | awk '{ printf "%s%s", (NR > 1 ? " " : ""), $2 } END { print "" }' >"$T/placed"
	[ "$(cat "$T/placed")" = "node01 node01 node01 node01 node02 node02 node02 node02" ] &&
		ok "hostfile.example: ranks 0-3 on node01, 4-7 on node02 (--map-by slot)" || bad "hostfile placement: $(cat "$T/placed") $(head -5 "$T/map")"
else
	echo "skip hostfile placement: mpirun is not installed"
fi

# ---- the systemd unit ----
U=deploy/systemd/sfpd.service
ENVF=deploy/systemd/sfpd.env.example
for k in DynamicUser=yes ProtectSystem=strict ProtectHome=yes PrivateTmp=yes NoNewPrivileges=yes \
	StateDirectory=sfpd RestrictAddressFamilies= SystemCallFilter=@system-service MemoryMax= \
	Restart=on-failure EnvironmentFile=/etc/sfpd/sfpd.env; do
	grep -q "^$k" "$U" || echo "$k" >>"$T/missing"
done
[ ! -s "$T/missing" ] && ok "sfpd.service has the hardening settings" || bad "sfpd.service lacks $(cat "$T/missing")"
grep -- '--token\|SFP_TOKEN' "$U" | grep -v '^#' | grep -q . && bad "sfpd.service names the token" || ok "the token is not in the unit"
if command -v systemd-analyze >/dev/null 2>&1; then
	# the unit as installed, with ExecStart pointing at this build
	sed "s|^ExecStart=/usr/local/bin/sfpd |ExecStart=$D |" "$U" >"$T/sfpd.service"
	systemd-analyze verify "$T/sfpd.service" >"$T/verify" 2>&1
	rc=$?
	# a container without systemd's own units says so; that is not the unit's fault
	grep -v 'Unit [a-z.-]*\.target not found' "$T/verify" >"$T/verify2"
	[ $rc -eq 0 ] && [ ! -s "$T/verify2" ] && ok "systemd-analyze verify: no complaint" || bad "systemd-analyze verify ($rc): $(cat "$T/verify")"
	sed 's/^ProtectHome=yes/ProtectHome=yes\nProtectSystm=strict/' "$T/sfpd.service" >"$T/typo.service"
	systemd-analyze verify "$T/typo.service" 2>&1 | grep -q "Unknown key 'ProtectSystm'" &&
		ok "systemd-analyze verify does catch a misspelt key" || bad "verify missed a misspelt key"
	systemd-analyze security --offline=true "$T/sfpd.service" >"$T/sec" 2>&1
	level=$(sed -n 's/.*Overall exposure level for sfpd.service: \([0-9.]*\) \([A-Z]*\).*/\1 \2/p' "$T/sec")
	case "$level" in
	[01].*" OK" | 2.*" OK") ok "systemd-analyze security: exposure $level" ;;
	*) bad "systemd-analyze security: '$level' $(tail -3 "$T/sec")" ;;
	esac
else
	echo "skip systemd-analyze: not installed (package systemd)"
fi

# ExecStart as systemd expands it: ${VAR} from EnvironmentFile (the example)
# over Environment=, %S the state root; the ports made free ones
exec_line=$(sed -n 's/^ExecStart=//p' "$U")
defaults=$(sed -n 's/^Environment=//p' "$U")
python3 - "$exec_line" "$defaults" "$ENVF" "$T/state" "$(free_port)" >"$T/argv" <<'EOF' || bad "cannot expand ExecStart: $(cat "$T/argv")"
import re, shlex, sys
line, defaults, envfile, state, wport = sys.argv[1:]
env = dict(kv.split("=", 1) for kv in shlex.split(defaults))
for l in open(envfile):
    l = l.strip()
    if l and not l.startswith("#"):
        k, v = l.split("=", 1)
        env[k] = v
def var(m):
    if m.group(1) not in env:
        sys.exit("ExecStart uses ${%s}, set neither by Environment= nor the env file" % m.group(1))
    return env[m.group(1)]
argv = [re.sub(r"\$\{(\w+)\}", var, a).replace("%S", state) for a in shlex.split(line)]
# the test's own ports: HTTP on any free port, workers on a free one
for i, a in enumerate(argv[:-1]):
    if a == "--http":
        argv[i + 1] = "127.0.0.1:0"
    if a == "--listen":
        argv[i + 1] = re.sub(r"://[^:/]*:\d+", "://127.0.0.1:" + wport, argv[i + 1])
print("\n".join(argv[1:]))
EOF
mkdir -p "$T/state/sfpd"
# argv one per line (no value holds a newline); the token from the env file
# in the environment, as systemd passes it
set --
while IFS= read -r a; do set -- "$@" "$a"; done <"$T/argv"
tok=$(sed -n 's/^SFP_TOKEN=//p' "$ENVF")
[ -n "$tok" ] && ok "sfpd.env.example sets SFP_TOKEN" || bad "sfpd.env.example: no SFP_TOKEN"
if start_sfpd "$T/unit.log" env -i PATH=/usr/bin:/bin SFP_TOKEN="$tok" "$D" "$@"; then
	ok "sfpd starts with the unit's options: $*"
	i=0
	while [ $i -lt 50 ] && ! grep -q "workers: listening" "$T/unit.log"; do sleep 0.1; i=$((i + 1)); done
	grep -q "workers: listening on tcp://127.0.0.1:[0-9]* (job token required)" "$T/unit.log" &&
		ok "the worker listener requires the token from the env file" || bad "listener: $(cat "$T/unit.log")"
	[ "$(curl -s -o /dev/null -w '%{http_code}' "$URL/readyz")" = 200 ] && ok "/readyz 200" || bad "/readyz"
	[ -f "$T/state/sfpd/history" ] && ok "history in the StateDirectory (%S/sfpd/history)" || bad "no history file: $(ls -R "$T/state")"
	kill -TERM "$PID"
	wait "$PID"
	[ $? -eq 0 ] && ok "SIGTERM (systemctl stop): exit 0" || bad "stop: $(tail -3 "$T/unit.log")"
else
	bad "sfpd with the unit's options: $(cat "$T/unit.log")"
fi

# ---- Prometheus files ----
P=deploy/prometheus
if command -v promtool >/dev/null 2>&1; then
	promtool check config "$P/prometheus.yml" >"$T/pc" 2>&1 && ok "promtool check config prometheus.yml" || bad "promtool check config: $(cat "$T/pc")"
	promtool check rules "$P/alerts.yml" >"$T/pr" 2>&1 && ok "promtool check rules alerts.yml ($(grep -o '[0-9]* rules found' "$T/pr" | head -1))" || bad "promtool check rules: $(cat "$T/pr")"
	(cd "$P" && promtool test rules alerts.test.yml) >"$T/pt" 2>&1 && ok "promtool test rules: every alert fires on its scenario only" || bad "promtool test rules: $(cat "$T/pt")"
else
	echo "skip promtool: not installed (deploy/install-deps.sh installs prometheus)"
fi

# ---- a real sfpd's metric names against the dashboard and the rules ----
if ! start_sfpd "$T/sim.log" "$D" --http 127.0.0.1:0 --simulate 4 --simulate-interval-ms 50; then
	bad "sfpd --simulate did not start: $(cat "$T/sim.log")"
	echo "deploy.sh: $fails failed"
	exit 1
fi
SIM=$URL
sleep 1
curl -s "$SIM/metrics" >"$T/metrics"
G=deploy/grafana/sfp-dashboard.json
python3 -m json.tool "$G" >/dev/null 2>"$T/json" && ok "sfp-dashboard.json parses" || bad "dashboard JSON: $(cat "$T/json")"
python3 - "$G" "$T/metrics" "$P/alerts.yml" "$T/exprs" >"$T/dash" 2>&1 <<'EOF'
import json, re, sys
dash_file, metrics_file, alerts_file, exprs_out = sys.argv[1:]
d = json.load(open(dash_file))
have = {l.split("{")[0].split(" ")[0] for l in open(metrics_file) if l.strip() and not l.startswith("#")}
bad = []
def need(cond, what):
    if not cond:
        bad.append(what)
need(d.get("schemaVersion", 0) >= 36, "schemaVersion %s < 36" % d.get("schemaVersion"))
need(any(i.get("name") == "DS_PROMETHEUS" and i.get("type") == "datasource" and i.get("pluginId") == "prometheus"
         for i in d.get("__inputs", [])), "no DS_PROMETHEUS datasource input")
panels = [p for p in d["panels"] if p["type"] != "row"]
ids = [p["id"] for p in d["panels"]]
need(len(ids) == len(set(ids)), "panel ids not unique")
exprs = []
for p in panels:
    need(p.get("datasource", {}).get("uid") == "${DS_PROMETHEUS}", "panel '%s': datasource" % p["title"])
    need(all(k in p.get("gridPos", {}) for k in "hwxy"), "panel '%s': gridPos" % p["title"])
    need(p.get("targets"), "panel '%s': no query" % p["title"])
    for t in p.get("targets", []):
        need(t.get("datasource", {}).get("uid") == "${DS_PROMETHEUS}", "panel '%s' %s: datasource" % (p["title"], t["refId"]))
        exprs.append((p["title"], t["expr"]))
for v in d["templating"]["list"]:
    need(v.get("datasource", {}).get("uid") == "${DS_PROMETHEUS}", "variable '%s': datasource" % v["name"])
    exprs.append(("variable " + v["name"], v["query"]["query"] if isinstance(v["query"], dict) else v["query"]))
# the panels the dashboard promises
text = " ".join(e for _, e in exprs)
for m in ["sfp_layer_mantissa_width", "sfp_layer_exponent_width", "sfp_footprint_ratio", "sfp_loss",
          "sfp_wire_bytes_total", "sfp_raw_bytes_total", "sfp_workers_up", "sfp_dropped_messages_total"]:
    need(re.search(r"\b%s\b" % m, text), "no panel shows " + m)
# every metric a query names exists in a real sfpd's /metrics
alerts = [("alert", e) for e in re.findall(r"expr: (.*(?:\n {10}.*)*)", open(alerts_file).read())]
for where, e in exprs + alerts:
    for m in set(re.findall(r"\bsfp_[a-z0-9_]+", e)):
        need(m in have, "%s: %s is not in sfpd's /metrics" % (where, m))
with open(exprs_out, "w") as f:
    for _, e in exprs[:len(exprs) - len(d["templating"]["list"])]:
        f.write(e.replace("\n", " ") + "\n")
print("%d panels, %d queries, %d alert expressions, %d metric names checked" % (
    len(panels), len(exprs), len(alerts), len(set(re.findall(r"\bsfp_[a-z0-9_]+", text + " ".join(e for _, e in alerts))))))
if bad:
    print("\n".join(bad))
    sys.exit(1)
EOF
[ $? -eq 0 ] && ok "dashboard: $(cat "$T/dash")" || bad "dashboard: $(cat "$T/dash")"

# ---- a real Prometheus with these files, scraping that sfpd ----
if command -v prometheus >/dev/null 2>&1; then
	pp=$(free_port)
	mkdir -p "$T/prom"
	cp "$P/alerts.yml" "$T/prom/"
	sed -e "s|'127.0.0.1:9464'|'127.0.0.1:${SIM##*:}'|" -e 's/^\(  [a-z_]*_interval:\) 15s/\1 1s/' "$P/prometheus.yml" >"$T/prom/prometheus.yml"
	grep -q "scrape_interval: 1s" "$T/prom/prometheus.yml" && grep -q "127.0.0.1:${SIM##*:}" "$T/prom/prometheus.yml" || bad "could not point prometheus.yml at the test's sfpd"
	prometheus --config.file="$T/prom/prometheus.yml" --storage.tsdb.path="$T/prom/data" \
		--web.listen-address="127.0.0.1:$pp" >"$T/prom.log" 2>&1 &
	PIDS="$PIDS $!"
	# one python for the waits and queries: a curl + python per query is slow here
	python3 - "http://127.0.0.1:$pp" "$T/exprs" >"$T/promq" 2>&1 <<'EOF2'
import json, sys, time, urllib.parse, urllib.request
prom, exprs_file = sys.argv[1:]
def get(path, **params):
    url = prom + path + ("?" + urllib.parse.urlencode(params) if params else "")
    try:
        with urllib.request.urlopen(url, timeout=5) as r:
            return json.load(r)
    except Exception as e:
        return {"status": "error", "error": str(e), "data": {}}
def q(e):
    return get("/api/v1/query", query=e)
def until(seconds, cond):
    end = time.time() + seconds
    while time.time() < end:
        if cond():
            return True
        time.sleep(0.25)
    return False
def say(good, what):
    print(("ok   " if good else "FAIL ") + what)
say(until(60, lambda: len(q('sfp_step{job="simulation"}').get("data", {}).get("result", [])) == 1),
    "Prometheus (prometheus.yml) scrapes sfpd; sfp's job label kept (honor_labels)")
r = q('up{job="sfpd"}').get("data", {}).get("result", [])
say(len(r) == 1 and r[0]["value"][1] == "1", 'up{job="sfpd"} is 1 (the scrape job\'s label)')
say("simulation" in get("/api/v1/label/job/values", **{"match[]": "sfp_step"}).get("data", []),
    "the dashboard's job variable finds job 'simulation'")
# a few scrapes, for rate(), increase() and changes()
until(20, lambda: float((q('count_over_time(sfp_step{job="simulation"}[1m])')["data"]["result"] or [{"value": [0, "0"]}])[0]["value"][1]) >= 5)
subst = {"$job": "simulation", "$layer": ".*", "$kind": ".*", "$__rate_interval": "5s", "$__range": "1m"}
empty = []
exprs = [l.rstrip("\n") for l in open(exprs_file) if l.strip()]
for e in exprs:
    for k in sorted(subst, key=len, reverse=True):
        e = e.replace(k, subst[k])
    j = q(e)
    if j.get("status") != "success" or not j["data"]["result"]:
        empty.append("%s: %s" % (e, json.dumps(j)[:200]))
say(not empty, "all %d dashboard queries return series%s" % (len(exprs), "".join("\n  " + x for x in empty)))
def rules():
    r = [x for g in get("/api/v1/rules").get("data", {}).get("groups", []) for x in g["rules"]]
    return len(r) == 6 and all(x["health"] == "ok" for x in r)
say(until(15, rules), "Prometheus loaded alerts.yml: 6 rules evaluate without error")
firing = q('ALERTS{alertstate="firing"}').get("data", {}).get("result", None)
say(firing == [], "no alert fires on a healthy (simulated) job" + ("" if firing == [] else ": %s" % firing))
EOF2
	cat "$T/promq"
	n=$(grep -c '^FAIL' "$T/promq")
	fails=$((fails + n))
	[ -s "$T/promq" ] || bad "the Prometheus checks printed nothing"
else
	echo "skip Prometheus: not installed (deploy/install-deps.sh installs prometheus)"
fi

echo "deploy.sh: $fails failed"
[ "$fails" -eq 0 ]
