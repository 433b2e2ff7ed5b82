#!/bin/sh
# make-seeds.sh -- regenerate the committed seed corpora under
# tests/fuzz/corpus/ with the sfp tool (run from the repository root after
# `make`). Seeds are small valid inputs; libFuzzer mutates from them.
set -eu
S=${BUILD:-build}/bin/sfp
C=tests/fuzz/corpus
T=$(mktemp -d)
trap 'rm -rf "$T"' EXIT
mkdir -p $C/decode $C/npy $C/gecko $C/roundtrip $C/data
python3 - "$T" <<'PY'
import random, struct, sys
t = sys.argv[1]
random.seed(1)
vals = [random.gauss(0, 1) if random.random() < 0.6 else 0.0 for _ in range(40)]
vals += [float("nan"), float("inf"), -0.0, 1e-40]
def npy_bytes(descr, shape, payload):
    d = "{'descr': '%s', 'fortran_order': False, 'shape': (%s), }" % (descr, "".join("%d," % s for s in shape))
    hl = ((10 + len(d) + 1 + 63) // 64) * 64 - 10
    h = d + " " * (hl - len(d) - 1) + "\n"
    return b"\x93NUMPY\x01\x00" + struct.pack("<H", hl) + h.encode() + payload
def npy(path, v, shape):
    open(path, "wb").write(npy_bytes("<f4", shape, struct.pack("<%df" % len(v), *v)))
npy(t + "/a.npy", vals, (44,))
npy(t + "/b.npy", vals[:40], (5, 8))
npy("tests/fuzz/corpus/npy/small.npy", vals[:12], (3, 4))
npy("tests/fuzz/corpus/npy/scalar.npy", vals[:1], ())
# fuzz_data: the first byte picks the reader (0 CIFAR-10 batch, 1 token file
# after 3 parameter bytes, 2 .npy of any dtype)
random.seed(2)
c = "tests/fuzz/corpus/data/"
rec = bytes([3]) + bytes(random.randrange(256) for _ in range(3072))
open(c + "cifar1", "wb").write(b"\x00" + rec)
open(c + "cifar2", "wb").write(b"\x00" + rec + bytes([9]) + rec[1:])
ids = [random.randrange(300) for _ in range(40)]
open(c + "tokens16", "wb").write(b"\x01" + bytes([1, 7, 2]) + struct.pack("<40H", *ids))
open(c + "tokens8", "wb").write(b"\x01" + bytes([0, 3, 1]) + b"hello, world, hello")
for name, descr, shape, payload in (("npy_u8", "|u1", (2, 3), bytes(range(6))),
                                    ("npy_i8", "<i8", (3,), struct.pack("<3q", 1, -2, 3)),
                                    ("npy_i4", "<i4", (2, 2), struct.pack("<4i", 1, 2, 3, 4)),
                                    ("npy_f8", "<f8", (2,), struct.pack("<2d", 0.5, -1.25))):
    open(c + name, "wb").write(b"\x02" + npy_bytes(descr, shape, payload))
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
# refinement seeds: shift and per-row bias side bytes (docs/refine.md)
for m in 1 3; do
	$S encode -e 5 -m $m --shift --bias channel "$T/b.npy" "$C/decode/b_refine_$m.sfpt"
	$S encode -e 5 -m $m --bias tensor --gecko "$T/a.npy" "$C/decode/a_bias_$m.sfpt"
done
$S dataset fmnist --count 2 "$T/img.npy"
$S encode -e 4 -m 1 --shift "$T/img.npy" "$C/decode/img_shift.sfpt"
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
# checkpoint seeds (fuzz_ckpt.c): that run's checkpoint, behind the same prefix
mkdir -p $C/ckpt
printf '\001' | cat - "$T"/ck/ckpt-*.sfpk >"$C/ckpt/tiny"
printf '\000' | cat - "$T"/ck/ckpt-*.sfpk >"$C/ckpt/tiny_crc"
# per-stage checkpoint seeds (fuzz_stages.c): the two files a 2-stage run of
# the tiny model wrote at its end (step 1), the first one's length before them
if command -v mpirun >/dev/null 2>&1; then
	mkdir -p $C/stages
	MPI="mpirun --oversubscribe --bind-to none"
	[ "$(id -u)" -eq 0 ] && MPI="$MPI --allow-run-as-root"
	$MPI -np 2 ${BUILD:-build}/bin/sfp-worker --config "$T/tiny.yaml" $TINY \
		--set parallel.pipeline_stages=2 --set checkpoint.dir="$T/pck" --quiet
	python3 - "$T/pck" "$C/stages" <<'PY'
import struct, sys
a = open(sys.argv[1] + "/ckpt-1-stage0.sfpk", "rb").read()
b = open(sys.argv[1] + "/ckpt-1-stage1.sfpk", "rb").read()
for name, prefix in (("tiny", b"\x01"), ("tiny_crc", b"\x00")):
    open(sys.argv[2] + "/" + name, "wb").write(prefix + struct.pack("<I", len(a)) + a + b)
PY
fi
for g in layer channel channel_act; do
	act=""
	[ $g = channel_act ] && act=--activations
	$S export --config "$T/tiny.yaml" $TINY --checkpoint "$T/ck" --granularity ${g%_act} $act \
		--steps 2 --gamma 1 --set prune.lr=1 --out "$T/$g.sfpq" --quiet >/dev/null
	printf '\001' | cat - "$T/$g.sfpq" >"$C/sfpq/$g"
	printf '\000' | cat - "$T/$g.sfpq" >"$C/sfpq/${g}_crc"
done
# sfpd history seeds: the fuzz target's first byte picks the mode (even: a
# whole file; odd: bodies with 2-byte lengths that the target frames).
mkdir -p $C/history
python3 - <<'PY'
import struct, zlib
def crc32c(data, crc=0):
    crc ^= 0xffffffff
    for b in data:
        crc ^= b
        for _ in range(8):
            crc = (crc >> 1) ^ (0x82f63b78 if crc & 1 else 0)
    return crc ^ 0xffffffff
s = lambda t: bytes([len(t)]) + t.encode()
def register(job, rank, names):
    return b"\x01" + s(job) + struct.pack("<IIII", rank, rank, 0, len(names)) + b"".join(s(n) for n in names)
def report(job, rank, step, widths):
    b = b"\x02" + s(job) + struct.pack("<Iqdd", rank, step, 1.0 / (step + 1), 7.5)
    b += struct.pack("<6Q", step * 32, step * 128, step * 40, step, step, step)
    b += struct.pack("<I", len(widths))
    for name, kind, e, m in widths:
        b += s(name) + bytes([kind, e, m]) + struct.pack("<ffQ", e + 0.5, m + 0.5, 1000)
    return b
def goodbye(job, rank):
    return b"\x03" + s(job) + struct.pack("<I", rank)
bodies = [register("job", 0, ["conv1", "fc"]), register("job", 1, ["conv1", "fc"])]
for step in range(4):
    for rank in (0, 1):
        bodies.append(report("job", rank, step * 10, [("conv1", 0, 5, 3 - rank), ("fc", 1, 4, 2)]))
bodies.append(goodbye("job", 1))
framed = b"".join(struct.pack("<H", len(b)) + b for b in bodies)
open("tests/fuzz/corpus/history/framed", "wb").write(b"\x01" + framed)
img = b"SFPHIST\n" + struct.pack("<II", 1, 0)
for b in bodies:
    ln = struct.pack("<I", len(b))
    img += struct.pack("<I", 0x52504653) + ln + struct.pack("<I", crc32c(ln + b)) + b
open("tests/fuzz/corpus/history/file", "wb").write(b"\x00" + img)
open("tests/fuzz/corpus/history/torn", "wb").write(b"\x00" + img[:-7])
mid = bytearray(img); mid[len(img) // 2] ^= 0x40
open("tests/fuzz/corpus/history/corrupt", "wb").write(b"\x00" + bytes(mid))
PY
