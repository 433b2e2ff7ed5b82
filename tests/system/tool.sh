#!/bin/sh
# tool.sh -- the sfp command line: every command, exit codes, shapes kept,
# lossless round trip, no partial output on failure, JSON output.
set -u
. "$(dirname "$0")/common.inc"

expect 0 "version" "$SFP" --version
expect 0 "help" "$SFP" help
expect 2 "no command" "$SFP"
expect 2 "unknown command" "$SFP" frobnicate
expect 0 "dataset export" "$SFP" dataset fmnist --count 64 "$T/img.npy"
expect 2 "dataset: bad split" "$SFP" dataset fmnist --split nope "$T/x.npy"
[ ! -e "$T/x.npy" ] && ok "no output after a failed export" || bad "partial export left"

# lossless round trip, shape restored, byte-identical .npy
expect 0 "encode e8 m23" "$SFP" encode -e 8 -m 23 "$T/img.npy" "$T/l.sfpt"
expect 0 "decode" "$SFP" decode "$T/l.sfpt" "$T/l.npy"
cmp -s "$T/img.npy" "$T/l.npy" && ok "e=8 m=23 round trip is byte-identical" || bad "lossless round trip differs"
for isa in scalar avx2 avx512; do
	if "$SFP" encode --isa $isa -e 8 -m 23 --gecko "$T/img.npy" "$T/i.sfpt" 2>/dev/null; then
		"$SFP" decode --isa $isa "$T/i.sfpt" "$T/i.npy" && cmp -s "$T/img.npy" "$T/i.npy" &&
			ok "isa $isa lossless" || bad "isa $isa lossless"
	fi
done

# lossy with every option
expect 0 "encode gecko stochastic" "$SFP" encode -e 4 -m 2 --gecko --rounding stochastic --seed 7 "$T/img.npy" "$T/q.sfpt"
expect 0 "encode fixed window" "$SFP" encode -e 3 -m 1 --window-top 126 --underflow min --overflow saturate "$T/img.npy" "$T/w.sfpt"
expect 2 "fixed window overflow is an error" "$SFP" encode -e 3 -m 1 --window-top 120 "$T/img.npy" "$T/o.sfpt"
[ ! -e "$T/o.sfpt" ] && ok "no output after a failed encode" || bad "partial encode output"
# decoder-side refinement (docs/refine.md)
expect 0 "encode with --shift --bias channel" "$SFP" encode -e 4 -m 1 --shift --bias channel "$T/img.npy" "$T/r.sfpt"
expect 0 "inspect a refined container" "$SFP" inspect "$T/r.sfpt"
grep -q "^refinement  .*64 bias offsets" "$T/out" && grep -q "bias-channel" "$T/out" && ok "inspect shows the refinement" || bad "refinement: $(cat "$T/out")"
expect 0 "decode a refined container" "$SFP" decode "$T/r.sfpt" "$T/r.npy"
expect 2 "refinement on m = 23 refused" "$SFP" encode -e 8 -m 23 --shift "$T/img.npy" "$T/o.sfpt"
grep -q "needs m <= 20" "$T/err" && ok "says why" || bad "m 23 refinement: $(cat "$T/err")"
expect 2 "unknown --bias" "$SFP" encode -e 4 -m 1 --bias row "$T/img.npy" "$T/o.sfpt"
expect 0 "decode lossy" "$SFP" decode "$T/q.sfpt" "$T/q.npy"
expect 0 "inspect" "$SFP" inspect "$T/q.sfpt"
grep -q "e = 4, m = 2" "$T/out" && ok "inspect shows e and m" || bad "inspect output"
grep -q "(64, 28, 28)" "$T/out" && ok "inspect shows the shape" || bad "inspect shape"
expect 0 "inspect --json" "$SFP" inspect --json "$T/q.sfpt"
if command -v python3 >/dev/null; then
	python3 - "$T/out" "$T/q.sfpt" <<'PY' && ok "json parses and is consistent" || bad "json"
import json, os, sys
d = json.load(open(sys.argv[1]))
assert d["count"] == 64 * 28 * 28 and d["shape"] == [64, 28, 28]
assert d["e"] == 4 and d["m"] == 2
assert d["total_bytes"] == os.path.getsize(sys.argv[2])
assert abs(d["bits_per_value"] - 8 * d["total_bytes"] / d["count"]) < 1e-6
assert d["total_bytes"] == d["header_bytes"] + d["mant_bytes"] + d["sign_bytes"] + d["exc_bytes"] + d["exp_bytes"]
PY
fi

# usage errors
expect 2 "missing -m" "$SFP" encode -e 4 "$T/img.npy" "$T/z.sfpt"
expect 2 "e out of range" "$SFP" encode -e 0 -m 3 "$T/img.npy" "$T/z.sfpt"
expect 2 "m out of range" "$SFP" encode -e 4 -m 24 "$T/img.npy" "$T/z.sfpt"
expect 2 "bad rounding" "$SFP" encode -e 4 -m 3 --rounding up "$T/img.npy" "$T/z.sfpt"
expect 2 "unknown option" "$SFP" encode -e 4 -m 3 --fast "$T/img.npy" "$T/z.sfpt"
expect 2 "bad isa" "$SFP" decode --isa sse9 "$T/q.sfpt" "$T/z.npy"

# bad input files: clear errors naming the file, exit 2, no output
expect 2 "missing input" "$SFP" decode "$T/none.sfpt" "$T/z.npy"
printf 'garbage' >"$T/g.npy"
expect 2 "malformed npy" "$SFP" encode -e 4 -m 3 "$T/g.npy" "$T/z.sfpt"
grep -q "g.npy" "$T/err" && ok "error names the file" || bad "error lacks the file name"
cp "$T/q.sfpt" "$T/c.sfpt"
printf '\377' | dd of="$T/c.sfpt" bs=1 seek=200 conv=notrunc 2>/dev/null
expect 2 "corrupt container" "$SFP" decode "$T/c.sfpt" "$T/z.npy"
grep -q "checksum" "$T/err" && ok "corruption reported as a checksum error" || bad "corrupt message: $(cat "$T/err")"
head -c 100 "$T/q.sfpt" >"$T/t.sfpt"
expect 2 "truncated container" "$SFP" decode "$T/t.sfpt" "$T/z.npy"
expect 2 "inspect truncated" "$SFP" inspect "$T/t.sfpt"
[ ! -e "$T/z.npy" ] && [ ! -e "$T/z.sfpt" ] && ok "no partial outputs" || bad "partial output left"
ls "$T" | grep -q tmp && bad "temporary file left" || ok "no temporaries left"

# a numpy-written file, if numpy is here
if python3 -c 'import numpy' 2>/dev/null; then
	python3 -c "import numpy as np; np.save('$T/np.npy', (np.arange(24, dtype=np.float32) - 5).reshape(2, 3, 4))"
	expect 0 "numpy file encodes" "$SFP" encode -e 8 -m 23 "$T/np.npy" "$T/np.sfpt"
	"$SFP" decode "$T/np.sfpt" "$T/np2.npy"
	python3 -c "import numpy as np; a=np.load('$T/np.npy'); b=np.load('$T/np2.npy'); assert a.shape==b.shape and (a==b).all()" &&
		ok "numpy reads our output" || bad "numpy compat"
else
	echo "skip numpy compatibility (python3-numpy not installed)"
fi

echo "tool.sh: $fails failed"
[ "$fails" -eq 0 ]
