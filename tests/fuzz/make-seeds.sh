#!/bin/sh
# make-seeds.sh -- regenerate the committed seed corpora under
# tests/fuzz/corpus/ with the sfp tool (run from the repository root after
# `make`). Seeds are small valid inputs; libFuzzer mutates from them.
set -eu
S=${BUILD:-build}/bin/sfp
C=tests/fuzz/corpus
T=$(mktemp -d)
trap 'rm -rf "$T"' EXIT
mkdir -p $C/decode $C/npy $C/gecko $C/roundtrip
python3 - "$T" <<'PY'
import random, struct, sys
t = sys.argv[1]
random.seed(1)
vals = [random.gauss(0, 1) if random.random() < 0.6 else 0.0 for _ in range(40)]
vals += [float("nan"), float("inf"), -0.0, 1e-40]
def npy(path, v, shape):
    d = "{'descr': '<f4', 'fortran_order': False, 'shape': (%s), }" % "".join("%d," % s for s in shape)
    hl = ((10 + len(d) + 1 + 63) // 64) * 64 - 10
    h = d + " " * (hl - len(d) - 1) + "\n"
    open(path, "wb").write(b"\x93NUMPY\x01\x00" + struct.pack("<H", hl) + h.encode() + struct.pack("<%df" % len(v), *v))
npy(t + "/a.npy", vals, (44,))
npy(t + "/b.npy", vals[:40], (5, 8))
npy("tests/fuzz/corpus/npy/small.npy", vals[:12], (3, 4))
npy("tests/fuzz/corpus/npy/scalar.npy", vals[:1], ())
for i, (ep, m) in enumerate([(0, 23), (3, 2), (7, 22), (1, 0)]):
    open("tests/fuzz/corpus/roundtrip/seed%d" % i, "wb").write(bytes([ep, m, i * 5, i, 120, i, 2, 0]) + struct.pack("<44f", *vals))
PY
for cfg in "8 23" "4 3" "2 1" "8 7" "5 0"; do
	set -- $cfg
	for g in "" --gecko; do
		n=$(echo "$1_$2$g" | tr -d -)
		$S encode -e "$1" -m "$2" $g "$T/a.npy" "$C/decode/a_$n.sfpt"
		$S encode -e "$1" -m "$2" $g "$T/b.npy" "$C/decode/b_$n.sfpt"
	done
done
$S dataset fmnist --count 2 "$T/img.npy"
$S encode -e 4 -m 2 --gecko "$T/img.npy" "$C/decode/img_ans.sfpt"
# Gecko seeds: the exponent region of each Gecko container, after the
# fuzz target's 3-byte prefix (e - 1, count as big-endian u16).
python3 - <<'PY'
import glob, struct
for p in glob.glob("tests/fuzz/corpus/decode/*.sfpt"):
    b = open(p, "rb").read()
    e, coder, ndim = b[5], b[10], b[11]
    n, = struct.unpack("<Q", b[16:24])
    expb, = struct.unpack("<Q", b[40:48])
    pay, = struct.unpack("<Q", b[48:56])
    if coder != 1 or n > 65535:
        continue
    hb = 64 + 8 * ndim
    name = p.split("/")[-1].replace(".sfpt", "")
    open("tests/fuzz/corpus/gecko/" + name, "wb").write(bytes([e - 1, n >> 8, n & 255]) + b[hb + pay - expb:hb + pay])
PY
# .sfpq seeds: the tiny model of fuzz_sfpq.c trained 2 steps and exported at
# layer and channel granularity (and with its inputs quantized), behind the target's 1-byte prefix (odd:
# the target recomputes the CRCs after mutation).
mkdir -p $C/sfpq
cat >"$T/tiny.yaml" <<'YAML'
model:
  input: [1, 28, 28]
  layers:
    - {type: conv2d, out_channels: 3, kernel: 3, padding: 1}
    - {type: batchnorm}
    - {type: relu}
    - {type: maxpool, kernel: 4}
    - {type: flatten}
    - {type: linear, out_features: 10}
YAML
TINY="--set data.train_limit=64 --set data.test_limit=32 --set train.max_steps=2"
${BUILD:-build}/bin/sfp-worker --config "$T/tiny.yaml" $TINY --set checkpoint.dir="$T/ck" --quiet
for g in layer channel channel_act; do
	act=""
	[ $g = channel_act ] && act=--activations
	$S export --config "$T/tiny.yaml" $TINY --checkpoint "$T/ck" --granularity ${g%_act} $act \
		--steps 2 --gamma 1 --set prune.lr=1 --out "$T/$g.sfpq" --quiet >/dev/null
	printf '\001' | cat - "$T/$g.sfpq" >"$C/sfpq/$g"
	printf '\000' | cat - "$T/$g.sfpq" >"$C/sfpq/${g}_crc"
done
