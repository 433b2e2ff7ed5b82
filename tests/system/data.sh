#!/bin/sh
# data.sh -- users' own data through sfp-worker: small generated .npy,
# IDX and CIFAR-10 files train a tiny model a few steps each (progress,
# metrics, test accuracy); a CIFAR-10 run with crop/flip augmentation is
# reproducible, resumes to the same losses, and gives one process's losses
# on 2 data-parallel ranks and on a 2-stage pipeline; bad inputs
# exit 2 naming the file; `sfp dataset text` writes byte-level token files.
set -u
. "$(dirname "$0")/common.inc"
W=${BUILD:-build}/bin/sfp-worker

# ---- the files (python3 without numpy: the bytes by hand) ---------------------
python3 - "$T" <<'PY'
import gzip, random, struct, sys
t = sys.argv[1]
random.seed(3)
def npy(path, descr, shape, payload):
    d = "{'descr': '%s', 'fortran_order': False, 'shape': (%s), }" % (descr, "".join("%d," % s for s in shape))
    hl = ((10 + len(d) + 1 + 63) // 64) * 64 - 10
    open(path, "wb").write(b"\x93NUMPY\x01\x00" + struct.pack("<H", hl) + (d + " " * (hl - len(d) - 1) + "\n").encode() + payload)
# 4 classes of 8x8 images: a bright quadrant per class, noise elsewhere
def sample(c):
    img = [random.random() * 0.3 for _ in range(64)]
    for i in range(4):
        for j in range(4):
            img[(i + 4 * (c // 2)) * 8 + j + 4 * (c % 2)] += 0.7
    return img
for name, n in (("train", 240), ("test", 60)):
    ys = [random.randrange(4) for _ in range(n)]
    xs = [v for y in ys for v in sample(y)]
    npy("%s/%s_x.npy" % (t, name), "<f4", (n, 8, 8), struct.pack("<%df" % len(xs), *xs))
    npy("%s/%s_y.npy" % (t, name), "<i8", (n,), struct.pack("<%dq" % n, *ys))
    npy("%s/%s_xu8.npy" % (t, name), "|u1", (n, 8, 8), bytes(min(255, int(v * 255)) for v in xs))
    if name == "train":
        bad = list(ys); bad[17] = 7
        npy("%s/bad_y.npy" % t, "<i8", (n,), struct.pack("<%dq" % n, *bad))
        npy("%s/short_y.npy" % t, "<i8", (n - 1,), struct.pack("<%dq" % (n - 1), *ys[:-1]))
        npy("%s/x_i32.npy" % t, "<i4", (n, 8, 8), struct.pack("<%di" % len(xs), *[int(v) for v in xs]))
    # IDX: big-endian dims, uint8
    img = bytes(min(255, int(v * 255)) for v in xs)
    open("%s/%s-images.idx" % (t, name), "wb").write(struct.pack(">BBBBIII", 0, 0, 8, 3, n, 8, 8) + img)
    with gzip.open("%s/%s-labels.idx.gz" % (t, name), "wb") as f:
        f.write(struct.pack(">BBBBI", 0, 0, 8, 1, n) + bytes(ys))
# CIFAR-10: label byte, then R, G, B planes of 32x32; the class tints a channel
import os
os.mkdir(t + "/cifar")
def batch(path, n):
    out = bytearray()
    for _ in range(n):
        c = random.randrange(10)
        out.append(c)
        for ch in range(3):
            base = 40 + 20 * c if ch == c % 3 else 60
            out += bytes(min(255, base + random.randrange(40)) for _ in range(1024))
    open(path, "wb").write(out)
for i in range(1, 6):
    batch("%s/cifar/data_batch_%d.bin" % (t, i), 16)
batch(t + "/cifar/test_batch.bin", 32)
PY
[ -f "$T/cifar/test_batch.bin" ] && ok "generated npy, idx and cifar10 files" || bad "file generation"

MLP="$T/mlp.yaml"
cat >"$MLP" <<EOF
model:
  input: [1, 8, 8]
  layers:
    - {type: flatten}
    - {type: linear, out_features: 32}
    - {type: relu}
    - {type: linear, out_features: 4}
data:
  dataset: npy
  train: {x: $T/train_x.npy, y: $T/train_y.npy}
  test: {x: $T/test_x.npy, y: $T/test_y.npy}
train:
  epochs: 3
  batch_size: 16
  optimizer: {type: sgd, lr: 0.1, momentum: 0.9}
log:
  every: 5
EOF

# test accuracy of a metrics log's last evaluation record
acc() { sed -n 's/.*"test_acc":\([0-9.]*\).*/\1/p' "$1" | tail -1; }

expect 0 "npy float32 + int64 labels: 3 epochs" "$W" --config "$MLP" --set log.metrics="$T/npy.jsonl"
grep -q "step 45/45" "$T/err" && ok "npy: progress to step 45" || bad "npy progress: $(tail -3 "$T/err")"
grep -q '"loss":' "$T/npy.jsonl" && a=$(acc "$T/npy.jsonl") && awk -v a="$a" 'BEGIN { exit !(a > 0.6) }' &&
	ok "npy: learns (test_acc $a)" || bad "npy: test_acc '$(acc "$T/npy.jsonl")'"
expect 0 "npy uint8 samples, val_fraction hold-out" "$W" --config "$MLP" --set data.train.x="$T/train_xu8.npy" \
	--set data.test.x= --set data.test.y= --set data.val_fraction=0.25 --set train.epochs=1 --set log.metrics="$T/u8.jsonl"
grep -q "step 12/12" "$T/err" && grep -q '"test_acc":' "$T/u8.jsonl" && ok "npy u8: 180 train samples, evaluated on 60" ||
	bad "npy u8: $(tail -3 "$T/err")"
expect 0 "idx files (plain images, gzip labels)" "$W" --config "$MLP" --set data.dataset=idx \
	--set data.train.x="$T/train-images.idx" --set data.train.y="$T/train-labels.idx.gz" \
	--set data.test.x="$T/test-images.idx" --set data.test.y="$T/test-labels.idx.gz" --set train.epochs=1 --set log.metrics="$T/idx.jsonl"
grep -q '"test_acc":' "$T/idx.jsonl" && ok "idx: trained and evaluated" || bad "idx: $(tail -3 "$T/err")"

CIFAR="$T/cifar.yaml"
cat >"$CIFAR" <<EOF
model:
  input: [3, 32, 32]
  layers:
    - {type: conv2d, out_channels: 4, kernel: 3, stride: 2}
    - {type: relu}
    - {type: maxpool}
    - {type: flatten}
    - {type: linear, out_features: 10}
data:
  dataset: cifar10
  path: $T/cifar
  augment: [crop, flip]
train:
  epochs: 2
  batch_size: 16
  optimizer: {type: sgd, lr: 0.05, momentum: 0.9}
log:
  every: 2
EOF
expect 0 "cifar10 with crop + flip, 10 steps" "$W" --config "$CIFAR" --set log.metrics="$T/c1.jsonl"
grep -q "step 10/10" "$T/err" && grep -q '"test_acc":' "$T/c1.jsonl" && ok "cifar10: progress and test accuracy" ||
	bad "cifar10: $(tail -3 "$T/err")"
losses() { grep '"loss"' "$1" | grep -v test_loss | sed 's/.*"loss":\([0-9.e+-]*\).*/\1/'; }
losses "$T/c1.jsonl" >"$T/c1.loss"
expect 0 "cifar10 again" "$W" --config "$CIFAR" --set log.metrics="$T/c1b.jsonl"
losses "$T/c1b.jsonl" | cmp -s - "$T/c1.loss" && ok "augmented runs are reproducible" || bad "two runs differ"
expect 0 "cifar10 with checkpoints" "$W" --config "$CIFAR" --set checkpoint.dir="$T/cck" --set checkpoint.every_steps=4 --set checkpoint.keep=3
expect 0 "cifar10 resumed from step 4" "$W" --config "$CIFAR" --resume "$T/cck/ckpt-4.sfpk" --set log.metrics="$T/cr.jsonl"
grep '"step":\(5\|6\|8\|10\),' "$T/c1.jsonl" | grep -v test_loss | sed 's/.*"loss":\([0-9.e+-]*\).*/\1/' >"$T/c1.tail"
losses "$T/cr.jsonl" >"$T/cr.loss"
[ -s "$T/c1.tail" ] && cmp -s "$T/c1.tail" "$T/cr.loss" && ok "a resumed augmented run sees the same batches (same losses)" ||
	bad "resume: $(paste "$T/c1.tail" "$T/cr.loss" | tr '\n' ' ')"
expect 0 "cifar10 without augmentation" "$W" --config "$CIFAR" --set data.augment=[] --set log.metrics="$T/c0.jsonl"
losses "$T/c0.jsonl" | cmp -s - "$T/c1.loss" && bad "augmentation changed nothing" || ok "augmentation changes the batches"
if command -v mpirun >/dev/null 2>&1; then
	mpi_init data
	expect 0 "cifar10 with augmentation on 2 data-parallel ranks" $MPI -np 2 "$W" --config "$CIFAR" --set log.metrics="$T/c2.jsonl"
	losses "$T/c2.jsonl" >"$T/c2.loss"
	paste "$T/c1.loss" "$T/c2.loss" | awk '{ d = $1 - $2; if (d < 0) d = -d; if (NF != 2 || d > 1e-4 * $1 + 1e-6) bad = 1; n++ } END { exit (bad || n < 3) }' &&
		ok "2 ranks see the same augmented batches (losses equal one process's)" ||
		bad "2 ranks: $(paste "$T/c1.loss" "$T/c2.loss" | tr '\n' ' ')"
	expect 0 "cifar10 with augmentation on 2 pipeline stages" $MPI -np 2 "$W" --config "$CIFAR" \
		--set parallel.pipeline_stages=2 --set log.metrics="$T/cp.jsonl"
	losses "$T/cp.jsonl" >"$T/cp.loss"
	paste "$T/c1.loss" "$T/cp.loss" | awk '{ d = $1 - $2; if (d < 0) d = -d; if (NF != 2 || d > 1e-4 * $1 + 1e-6) bad = 1; n++ } END { exit (bad || n < 3) }' &&
		ok "a 2-stage pipeline sees the same augmented batches" ||
		bad "pipeline: $(paste "$T/c1.loss" "$T/cp.loss" | tr '\n' ' ')"
else
	echo "skip data-parallel and pipeline cifar10: no mpirun"
fi

# ---- bad inputs: exit 2, the file named --------------------------------------
expect 2 "a label outside [0, classes)" "$W" --config "$MLP" --set data.train.y="$T/bad_y.npy"
grep -q "bad_y.npy': label 7 at index 17 is outside \[0, 4) (the model's classes)" "$T/err" && ok "label error names file and index" || bad "label: $(cat "$T/err")"
expect 2 "a label outside data.classes" "$W" --config "$MLP" --set data.train.y="$T/bad_y.npy" --set data.classes=4
grep -q "bad_y.npy': label 7 at index 17 is outside \[0, 4) (data.classes)" "$T/err" && ok "data.classes error names file and index" || bad "label: $(cat "$T/err")"
expect 2 "N of x != N of y" "$W" --config "$MLP" --set data.train.y="$T/short_y.npy"
grep -q "short_y.npy' has 239 labels for 240 samples" "$T/err" && ok "count mismatch named" || bad "count: $(cat "$T/err")"
expect 2 "unsupported sample dtype" "$W" --config "$MLP" --set data.train.x="$T/x_i32.npy"
grep -q "x_i32.npy': samples of dtype int32" "$T/err" && ok "dtype named" || bad "dtype: $(cat "$T/err")"
expect 2 "samples that do not fit model.input" "$W" --config "$MLP" --set model.input=[64]
grep -q "train_x.npy': samples have shape (8, 8) but model.input is \[64\]" "$T/err" && ok "shape mismatch named" || bad "shape: $(cat "$T/err")"
head -c 40000 "$T/cifar/data_batch_2.bin" >"$T/cut.bin" && mv "$T/cut.bin" "$T/cifar/data_batch_2.bin"
expect 2 "a truncated cifar10 batch" "$W" --config "$CIFAR"
grep -q "data_batch_2.bin': 40000 bytes is not a whole number of 3073-byte records" "$T/err" && ok "truncation named" || bad "cifar: $(cat "$T/err")"
printf 'x' >"$T/garbage.npy"
expect 2 "not a .npy file" "$W" --config "$MLP" --set data.test.x="$T/garbage.npy"
grep -q "garbage.npy'.*bad magic" "$T/err" && ok "bad magic named" || bad "magic: $(cat "$T/err")"

expect 2 "deploy/examples/npy-mlp.yaml loads up to its (missing) data" "$W" --config deploy/examples/npy-mlp.yaml \
	--set data.train.x="$T/nowhere_x.npy" --set data.train.y="$T/train_y.npy"
grep -q "nowhere_x.npy" "$T/err" && ok "missing data file named" || bad "example: $(cat "$T/err")"

# ---- token data ----------------------------------------------------------------
printf 'To be, or not to be, that is the question:\n' >"$T/a.txt"
for i in 1 2 3 4 5 6; do cat "$T/a.txt"; done >"$T/b.txt"
expect 0 "sfp dataset text" "$SFP" dataset text "$T/a.txt" "$T/b.txt" --out "$T/tok" --val-fraction 0.2
grep -q "train.bin: 241 tokens" "$T/out" && grep -q "val.bin: 60 tokens" "$T/out" && ok "token counts printed" || bad "text: $(cat "$T/out")"
[ "$(wc -c <"$T/tok/train.bin")" -eq 482 ] && ok "uint16 ids written" || bad "train.bin size $(wc -c <"$T/tok/train.bin")"
expect 0 "sfp dataset text, one byte a token" "$SFP" dataset text "$T/a.txt" --out "$T/tok1" --token-bytes 1
[ "$(cat "$T/tok1/train.bin" "$T/tok1/val.bin")" = "$(cat "$T/a.txt")" ] && ok "byte tokens are the text" || bad "tok1 differs"
expect 2 "sfp dataset text --token-bytes 4" "$SFP" dataset text "$T/a.txt" --out "$T/tok1" --token-bytes 4
expect 2 "sfp dataset text of a missing file" "$SFP" dataset text "$T/none.txt" --out "$T/tok1"
grep -q "none.txt" "$T/err" && ok "missing text file named" || bad "text: $(cat "$T/err")"
# an image model cannot take token data (tests/system/gpt.sh trains a GPT on it)
expect 2 "token data for an image model" "$W" --config "$MLP" --set data.dataset=tokens \
	--set data.train.x="$T/tok/train.bin" --set data.seq_len=8
grep -q "token data needs model.input: \[8\] (data.seq_len)" "$T/err" && ok "the input tokens need is named" ||
	bad "tokens: $(cat "$T/err")"

echo "data.sh: $fails failed"
[ "$fails" -eq 0 ]
