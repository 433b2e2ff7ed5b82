#!/usr/bin/env python3
# sfpd_plotted.py DOM JOB_JSON BITLENGTHS_JSON -- run by sfpd.sh: the data
# sfpd's page plotted (the JSON its script writes into <script
# id="plotted"> after each redraw, read from Chromium's --dump-dom) against
# what the API returns for the same job (/api/v1/job, /api/v1/bitlengths,
# fetched with curl): the same series, and per series the same number of
# points, the same last (step, value) and the same sum of the values.
# Prints "N series, P points: page == API" or each difference; exit 1 then.
import json
import re
import sys

dom = open(sys.argv[1], encoding="utf-8").read()
m = re.search(r'<script type="application/json" id="plotted">(.*?)</script>', dom, re.S)
if not m:
    print("no <script id=\"plotted\"> in the page")
    sys.exit(1)
plotted = json.loads(m.group(1))
job = json.load(open(sys.argv[2], encoding="utf-8"))
bitlengths = json.load(open(sys.argv[3], encoding="utf-8"))


def summary(steps, values):
    n, total, last = 0, 0.0, None
    for x, y in zip(steps, values):
        if y is not None:
            n, total, last = n + 1, total + y, [x, y]
    return n, total, last


api = {}
for key in ("loss", "footprint_bits_per_value"):
    api[("job", "", "", key)] = summary(job["series"]["step"], job["series"][key])
for t in bitlengths["layers"]:
    for key in ("e", "m", "n_e", "n_m"):
        api[("bitlengths", t["layer"], t["kind"], key)] = summary(t["series"]["step"], t["series"][key])

page = {}
for chart in plotted.get("charts", []):
    for s in chart["series"]:
        page[(s["source"], s.get("layer", ""), s.get("kind", ""), s["key"])] = (s["n"], s["sum"], s["last"])

problems = []
if plotted.get("job") != job["job"]:
    problems.append("page shows job %r, the API %r" % (plotted.get("job"), job["job"]))
for k in sorted(set(api) - set(page)):
    problems.append("not plotted: %s" % "/".join(filter(None, k)))
for k in sorted(set(page) - set(api)):
    problems.append("plotted, not in the API: %s" % "/".join(filter(None, k)))
for k in sorted(set(api) & set(page)):
    (pn, psum, plast), (an, asum, alast) = page[k], api[k]
    # the page sums the same doubles in the same order: equal but for the last bit
    if pn != an or plast != alast or abs(psum - asum) > 1e-9 * max(1.0, abs(asum)):
        problems.append("%s: page %d points, last %s, sum %r; API %d, %s, %r" %
                        ("/".join(filter(None, k)), pn, plast, psum, an, alast, asum))
if problems:
    print("\n".join(problems[:20]))
    sys.exit(1)
print("%d series, %d points: page == API" % (len(api), sum(v[0] for v in api.values())))
