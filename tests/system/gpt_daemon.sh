#!/bin/sh
# gpt_daemon.sh -- a language model's widths in sfpd: a one-block byte-level
# GPT (its config and text written by the test, as gpt.sh) with the quantum
# policy, reporting to a real sfpd over nng. Two mpirun ranks: both
# registered, every tensor in the API, the tokens trained counted once (each
# rank reports its replica's share). One rank, with widths that move apart
# within the run: the JSON API holds every tensor the worker's metrics log
# holds (the embedding and position tables, attention's and the MLP's
# weights, every stored activation; no head weights: the head is tied to the
# embedding) with the log's widths at every reported step, and /metrics each
# tensor's gauges at the last step (promtool accepts it, where installed);
# the live page in headless Chromium (where installed) draws one chart per
# layer and plots what the API returns (sfpd_plotted.py, as sfpd.sh).
set -u
. "$(dirname "$0")/common.inc"
B=${BUILD:-build}
W=$B/bin/sfp-worker
if ! command -v curl >/dev/null 2>&1; then
	echo "skip gpt_daemon.sh: curl missing (deploy/install-deps.sh installs it)"
	exit 0
fi
mpi_init gpt_daemon.sh
WPORT=$(free_port 30000 32768)
SFPD_PID=""
at_exit '[ -n "$SFPD_PID" ] && kill -9 $SFPD_PID 2>/dev/null'

awk 'BEGIN { srand(7); split("the quick brown fox jumps over the lazy dog.|a stitch in time saves nine.|all that glitters is not gold.|fortune favours the bold.|many hands make light work.", s, "|");
	for (i = 0; i < 1500; i++) print s[int(rand() * 5) + 1] }' >"$T/text.txt"
"$SFP" dataset text "$T/text.txt" --out "$T/tok" --val-fraction 0.1 >"$T/out" 2>&1 || { bad "sfp dataset text: $(cat "$T/out")"; exit 1; }
STEPS=40 BATCH=8 SEQ=16
cat >"$T/gpt.yaml" <<YAML
model:
  input: [$SEQ]
  layers:
    - {type: embedding, name: wte, vocab: 256, dim: 32}
    - {type: position, name: wpe}
    - {type: layernorm, name: ln1}
    - {type: attention, name: attn, heads: 2}
    - {type: add, name: res1, from: wpe}
    - {type: layernorm, name: ln2}
    - {type: linear, name: fc, out_features: 64}
    - {type: gelu}
    - {type: linear, name: proj, out_features: 32}
    - {type: add, name: res2, from: res1}
    - {type: layernorm, name: lnf}
    - {type: linear, name: head, out_features: 256, tie: wte, bias: false}
data:
  dataset: tokens
  train: {x: $T/tok/train.bin}
  test: {x: $T/tok/val.bin}
  seq_len: $SEQ
train:
  epochs: 10
  max_steps: $STEPS
  batch_size: $BATCH
  seed: 2
  optimizer: {type: adamw, lr: 0.005}
log:
  every: 10
YAML

start_sfpd "$T/d.log"
[ -n "$URL" ] && ok "sfpd up at $URL" || { bad "sfpd did not start: $(cat "$T/d.log")"; exit 1; }
# bitlength.m=7: from e8m7, so that widths move within the run; lr 5: fast
# enough that the tensors' widths differ by the end (a mix-up would show)
Q="--set bitlength.policy=quantum --set bitlength.m=7 --set bitlength.lr=5 --set daemon.report_every=10"

# ---- 2 ranks ----
expect 0 "a GPT on 2 ranks reporting to sfpd" $MPI -np 2 "$W" --config "$T/gpt.yaml" $Q \
	--set daemon.job=gpt2 --daemon "tcp://127.0.0.1:$WPORT" --set log.metrics="$T/m2.jsonl"
grep -q "registered at tcp://127.0.0.1:$WPORT as job 'gpt2'" "$T/err" && ok "the GPT's ranks registered" ||
	bad "register: $(head -5 "$T/err")"
grep -q "worker gpt2 rank 0 left (finished)" "$T/d.log" && grep -q "worker gpt2 rank 1 left (finished)" "$T/d.log" &&
	ok "and said goodbye" || bad "goodbye: $(cat "$T/d.log")"
curl -s "$URL/api/v1/job?job=gpt2" >"$T/job2.json"
curl -s "$URL/api/v1/bitlengths?job=gpt2" >"$T/bl2.json"
cat >"$T/ranks.py" <<'PY'
import json, sys
logf, jobf, blf, steps, tokens = sys.argv[1:4] + [int(sys.argv[4]), int(sys.argv[5])]
log = {(r["layer"], r["kind"]) for r in map(json.loads, open(logf)) if "layer" in r}
job, bl = json.load(open(jobf)), json.load(open(blf))
api = {(t["layer"], t["kind"]) for t in bl["layers"]}
problems = []
if api != log:
    problems.append("API tensors %s != the log's %s" % (sorted(api), sorted(log)))
if job["workers"]["left"] != 2 or job["step"] != steps:
    problems.append("workers %s, step %s" % (job["workers"], job["step"]))
if job["samples_total"] != tokens:
    problems.append("%s tokens counted, %d trained" % (job["samples_total"], tokens))
if problems:
    print("\n".join(problems[:20]))
    sys.exit(1)
print("%d tensors, %d tokens" % (len(api), tokens))
PY
python3 "$T/ranks.py" "$T/m2.jsonl" "$T/job2.json" "$T/bl2.json" $STEPS $((STEPS * BATCH * SEQ)) >"$T/cmp2" 2>&1 &&
	ok "2 ranks: every tensor in the API, the tokens counted once ($(cat "$T/cmp2"))" || bad "2 ranks in sfpd: $(cat "$T/cmp2")"

# ---- 1 rank: the API and /metrics against the worker's own log ----
expect 0 "a GPT on 1 rank reporting to sfpd" "$W" --config "$T/gpt.yaml" $Q \
	--set daemon.job=gpt --daemon "tcp://127.0.0.1:$WPORT" --set log.metrics="$T/m.jsonl"
curl -s "$URL/api/v1/job?job=gpt" >"$T/job.json"
curl -s "$URL/api/v1/bitlengths?job=gpt" >"$T/bl.json"
curl -s "$URL/metrics" >"$T/metrics.txt"
cat >"$T/widths.py" <<'PY'
import json, re, sys
logf, jobf, blf, mf, steps, tokens = sys.argv[1:5] + [int(sys.argv[5]), int(sys.argv[6])]
log = {}
for line in open(logf):
    r = json.loads(line)
    if "layer" in r:
        log.setdefault((r["layer"], r["kind"]), {})[r["step"]] = r
job, bl = json.load(open(jobf)), json.load(open(blf))
problems = []
api = {(t["layer"], t["kind"]): t for t in bl["layers"]}
if set(api) != set(log):
    problems.append("API tensors %s != the log's %s" % (sorted(api), sorted(log)))
want = {("wte", "weights"), ("wte", "activations"), ("wpe", "weights"), ("attn", "weights"),
        ("attn", "activations"), ("ln1", "activations"), ("fc", "weights"), ("gelu7", "activations"),
        ("proj", "weights"), ("res2", "activations"), ("lnf", "activations")}
if want - set(api):
    problems.append("missing from the API: %s" % sorted(want - set(api)))
if ("head", "weights") in api:
    problems.append("the tied head has weights of its own in the API")
layers = [l["layer"] for l in job["layers"]]
if sorted(set(layers)) != sorted({k[0] for k in log}):
    problems.append("job layers %s" % layers)
for k, t in sorted(api.items()):
    s, lg = t["series"], log.get(k, {})
    if s["step"] != sorted(lg):
        problems.append("%s/%s: API steps %s, log steps %s" % (k + (s["step"], sorted(lg))))
        continue
    for i, st in enumerate(s["step"]):
        r = lg[st]
        # the log has 4 decimals
        if s["e"][i] != r["e"] or s["m"][i] != r["m"] or \
           abs(s["n_e"][i] - r["n_e"]) > 1e-4 or abs(s["n_m"][i] - r["n_m"]) > 1e-4:
            problems.append("%s/%s step %d: API e%s m%s (%s, %s), log e%s m%s (%s, %s)" %
                            (k + (st, s["e"][i], s["m"][i], s["n_e"][i], s["n_m"][i],
                                  r["e"], r["m"], r["n_e"], r["n_m"])))
    if t["values"] != lg[steps]["count"]:
        problems.append("%s/%s: %d values, log count %d" % (k + (t["values"], lg[steps]["count"])))
if len({(lg[steps]["e"], lg[steps]["m"], lg[steps]["n_m"]) for lg in log.values()}) < 3:
    problems.append("the widths did not move apart: the comparison could not tell tensors apart")
gauges = {}
for line in open(mf):
    m = re.match(r'(sfp_layer_(?:exponent|mantissa)_width)\{job="gpt",layer="([^"]*)",kind="([^"]*)"\} (\S+)$', line)
    if m:
        gauges[(m.group(1), m.group(2), m.group(3))] = float(m.group(4))
for k, lg in sorted(log.items()):
    r = lg[steps]
    for name, key in (("sfp_layer_exponent_width", "e"), ("sfp_layer_mantissa_width", "m")):
        if gauges.get((name,) + k) != r[key]:
            problems.append("/metrics %s%s = %s, log %s" % (name, k, gauges.get((name,) + k), r[key]))
if len(gauges) != 2 * len(log):
    problems.append("/metrics: %d width gauges for %d tensors" % (len(gauges), len(log)))
if job["step"] != steps or job["samples_total"] != tokens:
    problems.append("job at step %s with %s tokens, wanted %d and %d" %
                    (job["step"], job["samples_total"], steps, tokens))
if problems:
    print("\n".join(problems[:20]))
    sys.exit(1)
print("%d tensors of %d layers, %d reported steps" % (len(log), len(layers), len(job["series"]["step"])))
PY
python3 "$T/widths.py" "$T/m.jsonl" "$T/job.json" "$T/bl.json" "$T/metrics.txt" $STEPS $((STEPS * BATCH * SEQ)) >"$T/cmp" 2>&1 &&
	ok "API and /metrics hold the log's widths: $(cat "$T/cmp")" || bad "widths in sfpd: $(cat "$T/cmp")"
grep -q 'sfp_layer_mantissa_width_learned{job="gpt",layer="attn",kind="weights"}' "$T/metrics.txt" &&
	ok "learned widths of attention's weights in /metrics" || bad "no learned attn widths: $(grep attn "$T/metrics.txt" | head -3)"
if command -v promtool >/dev/null 2>&1; then
	promtool check metrics <"$T/metrics.txt" >"$T/prom" 2>&1 && ok "promtool accepts /metrics" || bad "promtool: $(head -5 "$T/prom")"
else
	echo "skip promtool: not installed (deploy/install-deps.sh installs prometheus)"
fi

# ---- the page, on data that no longer changes (both jobs have finished;
# it shows the newest, the 1-rank job) ----
CH="chromium --headless --no-sandbox --disable-gpu --hide-scrollbars --window-size=1400,1800 --virtual-time-budget=5000"
if command -v chromium >/dev/null 2>&1; then
	timeout 120 $CH --dump-dom "$URL/" >"$T/dom" 2>"$T/chromium.log"
	n=$(python3 -c 'import json,sys; print(len(json.load(open(sys.argv[1]))["layers"]))' "$T/job.json")
	c=$(grep -o 'class="uplot' "$T/dom" | wc -l)
	[ "$c" -eq $((n + 2)) ] && grep -q 'wte (weights, activations)' "$T/dom" &&
		grep -q 'attn (weights, activations)' "$T/dom" && grep -q 'gelu7 (activations)' "$T/dom" &&
		ok "page in Chromium: loss, footprint and $n layer charts" || bad "page: $c charts for $n layers; $(tail -3 "$T/chromium.log")"
	python3 "$(dirname "$0")/sfpd_plotted.py" "$T/dom" "$T/job.json" "$T/bl.json" >"$T/plotted" 2>&1 &&
		ok "page plotted what the API returns ($(cat "$T/plotted"))" || bad "page against the API: $(cat "$T/plotted")"
else
	echo "skip the page: chromium not installed (deploy/install-deps.sh installs it)"
fi

kill $SFPD_PID 2>/dev/null
wait $SFPD_PID 2>/dev/null
SFPD_PID=""
echo "gpt_daemon.sh: $fails failed"
[ "$fails" -eq 0 ]
