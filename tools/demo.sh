#!/bin/sh
# demo.sh -- `make demo`: the codec on real Fashion-MNIST tensors. Exports
# 1000 test images as float32, encodes them at several (e, m) with and
# without Gecko, decodes, and prints size, ratio and error for each.
set -eu
BUILD=${1:-build}
SFP=$BUILD/bin/sfp
D=$BUILD/demo
mkdir -p "$D"
run() { echo "\$ $*"; "$@"; }

echo "== sfp demo: variable-width float containers on Fashion-MNIST"
run "$SFP" dataset fmnist --split t10k --count 1000 "$D/images.npy"
echo
printf '%-6s %-6s %-6s %10s %9s %8s %12s\n' e m gecko bytes bits/val ratio "max abs err"
for em in "8 23" "8 7" "5 3" "4 2" "4 1"; do
	set -- $em
	for g in "" "--gecko"; do
		"$SFP" encode -e "$1" -m "$2" $g "$D/images.npy" "$D/x.sfpt"
		"$SFP" decode "$D/x.sfpt" "$D/x.npy"
		"$SFP" inspect --json "$D/x.sfpt" >"$D/x.json"
		python3 - "$D/images.npy" "$D/x.npy" "$D/x.json" "$1" "$2" "${g:-no}" <<'PY'
import json, struct, sys
def load(p):
    b = open(p, "rb").read()
    hl = b[8] | b[9] << 8
    data = b[10 + hl:]
    return struct.unpack("<%df" % (len(data) // 4), data)
a, q, info = load(sys.argv[1]), load(sys.argv[2]), json.load(open(sys.argv[3]))
err = max(abs(x - y) for x, y in zip(a, q))
print("%-6s %-6s %-6s %10d %9.3f %7.2fx %12.3g" % (sys.argv[4], sys.argv[5], "yes" if sys.argv[6] != "no" else "no",
      info["total_bytes"], info["bits_per_value"], info["ratio_vs_fp32"], err))
PY
	done
done
echo
echo "Details of the last container:"
run "$SFP" inspect "$D/x.sfpt"
echo
echo "demo: ok (the training job joins this demo when the engine lands)"
