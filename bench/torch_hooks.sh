#!/bin/sh
# torch_hooks.sh -- DDP's default all-reduce, its fp16 hook, PowerSGD (rank 2)
# and sfp.torch's hook (e4 m2 + Gecko) training the Fashion-MNIST CNN over
# Gloo on this machine, RANKS processes each (default "2 4"), EPOCHS epochs
# (default 2), one thread per rank: bench/torch_hooks.py once per (ranks,
# hook); the JSON lines go to $BUILD/artifacts/torch_hooks.jsonl, then a table.
#   make python && nice sh bench/torch_hooks.sh
#   EPOCHS=1 RANKS=2 sh bench/torch_hooks.sh
set -eu
B=${BUILD:-build}
PY=${PYTHON:-/usr/bin/python3}
EPOCHS=${EPOCHS:-2}
RANKS=${RANKS:-2 4}
CONFIG=${CONFIG:-deploy/examples/fmnist-cnn.yaml}
OUT=$B/artifacts/torch_hooks.jsonl
mkdir -p "$B/artifacts"
: >"$OUT"
export PYTHONPATH=$B/python
for n in $RANKS; do
	for hook in none fp16 powersgd sfp; do
		"$PY" bench/torch_hooks.py --config "$CONFIG" --ranks "$n" --epochs "$EPOCHS" \
			--hook "$hook" | tee -a "$OUT"
	done
done
"$PY" - "$OUT" <<'PYEOF'
import json, sys
rows = [json.loads(l) for l in open(sys.argv[1]) if l.strip()]
names = {"none": "DDP default (float32)", "fp16": "DDP fp16 hook",
         "powersgd": "PowerSGD rank 2", "sfp": "sfp e4 m2 + Gecko"}
print("| ranks | hook | wire bytes/step | vs default | step ms (median) | test accuracy | vs default |")
print("|---:|---|---:|---:|---:|---:|---:|")
for r in rows:
    base = next(b for b in rows if b["ranks"] == r["ranks"] and b["hook"] == "none")
    print("| %d | %s | %d | %.2fx | %.1f | %.2f%% | %+.2f |" % (
        r["ranks"], names[r["hook"]], r["wire_bytes_per_step"],
        base["wire_bytes_per_step"] / r["wire_bytes_per_step"], r["step_ms_median"],
        r["test_acc"], r["test_acc"] - base["test_acc"]))
PYEOF
