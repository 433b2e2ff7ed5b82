#!/bin/sh
# demo.sh -- `make demo`: the main job. First starts sfpd and DEMO_RANKS
# (default 4) local sfp-worker ranks under mpirun that train the example CNN
# on Fashion-MNIST for DEMO_EPOCHS epochs (default 2) with learned widths
# (quantum policy), reporting to sfpd (its page's URL is printed), with a
# metrics log and checkpoints; evaluates the last checkpoint with `sfp eval`
# and prints the accuracy and the footprint. Then the codec on real Fashion-MNIST tensors: exports
# 1000 test images as float32, encodes them at several (e, m) with and
# without Gecko, inspects, decodes, and prints for each: size, bits per value,
# ratio to float32, max abs error and the median wall time of 3 runs of the
# encode and decode commands (whole processes: file I/O included). Prints
# every command it runs; exits nonzero if any step fails or e=8 m=23 is not
# bit-exact.
set -eu
BUILD=${1:-build}
SFP=$BUILD/bin/sfp
D=$BUILD/demo
REPEATS=3
mkdir -p "$D"
LOG=$D/commands.txt
: >"$LOG"
run() { echo "\$ $*"; "$@"; }
# logged CMD...: run quietly, remember the command line for the listing below
logged() { echo "$*" >>"$LOG"; "$@"; }
now_us() { t=$(date +%s%N); echo $((t / 1000)); }
# median_ms CMD...: median wall time of REPEATS runs, in milliseconds
median_ms() {
	i=0
	: >"$D/times"
	while [ $i -lt $REPEATS ]; do
		t0=$(now_us)
		"$@"
		t1=$(now_us)
		echo $((t1 - t0)) >>"$D/times"
		i=$((i + 1))
	done
	sort -n "$D/times" | sed -n "$(((REPEATS + 1) / 2))p" | awk '{ printf "%.1f", $1 / 1000 }'
}

echo "== sfp demo 1/2: a distributed job on Fashion-MNIST, watched by sfpd"
run "$SFP" --version
EPOCHS=${DEMO_EPOCHS:-2}
RANKS=${DEMO_RANKS:-4}
STEPS=${DEMO_STEPS:+--set train.max_steps=$DEMO_STEPS} # a shorter try
PORT=${DEMO_PORT:-9464}
WPORT=${DEMO_WORKER_PORT:-9465}
rm -rf "$D/ck" "$D/metrics.jsonl" "$D/sfpd.hist"
# the coordinator: the page at http://127.0.0.1:PORT/, workers report on WPORT
"$BUILD/bin/sfpd" --http "127.0.0.1:$PORT" --listen "tcp://127.0.0.1:$WPORT" \
	--history "$D/sfpd.hist" >"$D/sfpd.log" 2>&1 &
SFPD=$!
trap 'kill $SFPD 2>/dev/null' EXIT
i=0
while [ $i -lt 50 ] && ! grep -q "workers: listening" "$D/sfpd.log"; do sleep 0.1; i=$((i + 1)); done
if ! grep -q "workers: listening" "$D/sfpd.log"; then
	cat "$D/sfpd.log" >&2
	echo "demo: sfpd did not start (DEMO_PORT / DEMO_WORKER_PORT choose other ports)" >&2
	exit 1
fi
echo "sfpd is up: watch the learned widths at http://127.0.0.1:$PORT/ while the job trains"
MPI="mpirun --oversubscribe --bind-to none -np $RANKS"
[ "$(id -u)" -eq 0 ] && MPI="$MPI --allow-run-as-root"
run $MPI "$BUILD/bin/sfp-worker" --config deploy/examples/fmnist-cnn.yaml --set train.epochs="$EPOCHS" \
	--set bitlength.policy=quantum --set bitlength.m=7 --set log.every=100 \
	--set log.metrics="$D/metrics.jsonl" --set checkpoint.dir="$D/ck" --daemon "tcp://127.0.0.1:$WPORT" $STEPS
run "$SFP" eval --config deploy/examples/fmnist-cnn.yaml --set train.epochs="$EPOCHS" \
	--set bitlength.policy=quantum --set bitlength.m=7 $STEPS --checkpoint "$D/ck"
echo "(metrics log: $D/metrics.jsonl, $(wc -l <"$D/metrics.jsonl") records; checkpoints: $D/ck)"
acc=$(grep '"test_acc"' "$D/metrics.jsonl" | tail -1 | sed 's/.*"test_acc":\([0-9.]*\).*/\1/')
fp=$(grep '"footprint_bits_per_value"' "$D/metrics.jsonl" | tail -1 |
	sed 's/.*"footprint_bits_per_value":\([0-9.]*\).*"reduction_vs_fp32":\([0-9.]*\).*/\1 \2/')
echo "result: test accuracy $acc; weights + stored activations at $(echo "$fp" | awk '{ printf "%.2f bits per value, %.2fx smaller than float32", $1, $2 }')"
echo "sfpd saw: $(curl -s "http://127.0.0.1:$PORT/api/v1/workers?job=fmnist-cnn" | grep -o '"rank":[0-9]*' | wc -l) workers (its log: $D/sfpd.log)"
kill $SFPD 2>/dev/null
trap - EXIT
echo
echo "== sfp demo 2/2: variable-width float containers on Fashion-MNIST"
run "$SFP" dataset fmnist --split t10k --count 1000 "$D/images.npy"
echo
printf '%-3s %-3s %-5s %9s %8s %7s %11s %8s %8s\n' e m gecko bytes bits/val ratio "max abs err" "enc ms" "dec ms"
for em in "8 23" "8 7" "5 3" "4 2" "4 1"; do
	set -- $em
	for g in "" "--gecko"; do
		out=$D/e$1m$2${g:+g}
		logged "$SFP" encode -e "$1" -m "$2" $g "$D/images.npy" "$out.sfpt"
		logged "$SFP" decode "$out.sfpt" "$out.npy"
		logged "$SFP" inspect --json "$out.sfpt" >"$out.json"
		enc=$(median_ms "$SFP" encode -e "$1" -m "$2" $g "$D/images.npy" "$out.sfpt")
		dec=$(median_ms "$SFP" decode "$out.sfpt" "$out.npy")
		if [ "$1/$2" = "8/23" ] && ! cmp -s "$D/images.npy" "$out.npy"; then
			echo "demo: e=8 m=23 round trip is not bit-exact" >&2
			exit 1
		fi
		python3 - "$D/images.npy" "$out.npy" "$out.json" "$1" "$2" "${g:-no}" "$enc" "$dec" <<'PY'
import json, struct, sys
def load(p):
    b = open(p, "rb").read()
    hl = b[8] | b[9] << 8
    data = b[10 + hl:]
    return struct.unpack("<%df" % (len(data) // 4), data)
a, q, info = load(sys.argv[1]), load(sys.argv[2]), json.load(open(sys.argv[3]))
assert len(a) == len(q) == info["count"]
err = max(abs(x - y) for x, y in zip(a, q))
print("%-3s %-3s %-5s %9d %8.3f %6.2fx %11.3g %8s %8s" % (sys.argv[4], sys.argv[5],
      "yes" if sys.argv[6] != "no" else "no", info["total_bytes"], info["bits_per_value"],
      info["ratio_vs_fp32"], err, sys.argv[7], sys.argv[8]))
PY
	done
done
echo "(float32: 32 bits per value, $(wc -c <"$D/images.npy") bytes as .npy; times are whole"
echo " sfp processes, median of $REPEATS, on a shared machine)"
echo
echo "Commands run for the table (timed runs repeat the encode and decode lines):"
sed 's/^/$ /' "$LOG"
echo
echo "Details of the last container:"
run "$SFP" inspect "$D/e4m1g.sfpt"
echo
echo "demo: ok"
