#!/bin/sh
# train.sh -- training speed of sfp beside PyTorch (Debian's python3-torch,
# CPU), same models (deploy/examples/fmnist-{mlp,cnn}.yaml and the same
# layers in bench/torch_train.py), batch 64, SGD with momentum, random
# batches, at 1 and 2 threads. Runs alternate between the peers in rounds
# (the machine is shared and noisy); the table shows medians over every
# timed window of every round.
#
# Then learned containers on versus off: the CNN in float32, with QM+QE on
# weights and activations and the packed stash (the default: stored
# activations kept in containers), and with the float stash
# (bitlength.pack=false: float32 values on the container grid), at 1 and 2
# threads. The three train in one process, half-second windows in turn
# (sfp bench train --variant), so the machine's moods fall on all alike;
# peak RSS comes from a separate short run of each.
#
# PyTorch runs twice: as the machine has it, and with OPENBLAS_CORETYPE=
# SkylakeX set in that one command. Debian's OpenBLAS 0.3.21 does not know
# this CPU generation and falls back to its SSE3 ("Prescott") kernels; that
# setting forces its AVX-512 kernels (PyTorch's linear layers run on
# OpenBLAS; its convolutions run on oneDNN, which does not read it).
#
#   bench/train.sh [ROUNDS] [SECONDS]     (defaults 2 rounds of 3 x 1.5 s)
set -eu
cd "$(dirname "$0")/.."
SFP=${BUILD:-build}/bin/sfp
PY=/usr/bin/python3
ROUNDS=${1:-2}
SECS=${2:-1.5}
OUT=$(mktemp)
trap 'rm -f "$OUT"' EXIT
if ! $PY -c 'import torch' 2>/dev/null; then
	echo "train.sh: python3-torch is not installed (deploy/install-deps.sh --bench)" >&2
	exit 2
fi
echo "training speed: batch 64, $ROUNDS rounds x 3 windows of ${SECS}s per peer (medians)" >&2
for r in $(seq "$ROUNDS"); do
	for m in mlp cnn; do
		for t in 1 2; do
			echo "  round $r: $m, $t thread(s)" >&2
			"$SFP" bench train --config "deploy/examples/fmnist-$m.yaml" --name "$m" \
				--threads "$t" --seconds "$SECS" --repeats 3 >>"$OUT"
			$PY bench/torch_train.py --model "$m" --threads "$t" --seconds "$SECS" \
				--repeats 3 >>"$OUT"
			OPENBLAS_CORETYPE=SkylakeX $PY bench/torch_train.py --model "$m" --threads "$t" \
				--seconds "$SECS" --repeats 3 --tag "OPENBLAS_CORETYPE=SkylakeX" >>"$OUT"
		done
	done
	# learned containers on versus off, same model, same process
	Q=bitlength.policy=quantum,bitlength.m=7,bitlength.gamma=0.05
	for t in 1 2; do
		echo "  round $r: cnn, float32 / QM+QE packed / QM+QE float stash, $t thread(s)" >&2
		"$SFP" bench train --config deploy/examples/fmnist-cnn.yaml --name cnn-f32-ab \
			--threads "$t" --seconds 0.5 --repeats 9 --variant "cnn-quantum-packed:$Q" \
			--variant "cnn-quantum-float:$Q,bitlength.pack=false" >>"$OUT"
	done
done
for t in 1 2; do
	"$SFP" bench train --config deploy/examples/fmnist-cnn.yaml --name cnn-f32-rss --threads "$t" \
		--steps 20 --repeats 1 >>"$OUT"
	for pack in true false; do
		"$SFP" bench train --config deploy/examples/fmnist-cnn.yaml --name "cnn-quantum-$pack-rss" \
			--threads "$t" --steps 20 --repeats 1 --set bitlength.policy=quantum \
			--set bitlength.m=7 --set bitlength.pack=$pack >>"$OUT"
	done
done
$PY - "$OUT" <<'PYEOF'
import json, statistics, sys
rows = [json.loads(l) for l in open(sys.argv[1]) if l.strip()]
def pick(peer, m, t):
    xs = [x for x in rows if x["peer"].startswith(peer) and x["model"] == m and x["threads"] == t]
    rates = [r for x in xs for r in x["samples_per_s"]]
    return xs, (statistics.median(rates) if rates else float("nan"))
print("| model | threads | sfp samples/s | PyTorch samples/s | sfp / PyTorch | PyTorch, OpenBLAS SkylakeX | sfp / that | sfp GFLOP/s (% of SGEMM peak) | peak RSS sfp / PyTorch |")
print("|---|---:|---:|---:|---:|---:|---:|---:|---:|")
for m in ("mlp", "cnn"):
    for t in (1, 2):
        sx, s = pick("sfp", m, t)
        px, p = pick("pytorch ", m, t)
        kx, k = pick("pytorch-skx", m, t)
        gf = s * sx[0]["gflop_per_sample"]
        peak = statistics.median(x["sgemm_peak_gflops"] for x in sx)
        rss_s = max(x["peak_rss_kb"] for x in sx) / 1024
        rss_p = max(x["peak_rss_kb"] for x in px) / 1024
        print(f"| {m} | {t} | {s:,.0f} | {p:,.0f} | {s/p:.2f}x | {k:,.0f} | {s/k:.2f}x | "
              f"{gf:.1f} ({100*gf/peak:.0f}% of {peak:.0f}) | {rss_s:.0f} / {rss_p:.0f} MiB |")
print()
print("Learned containers (QM+QE on weights and activations, e8 m7 at the start, width updates included),")
print("CNN, the three in one process, windows in turn. Packed: stored activations kept in containers")
print("(the default); float stash: float32 values on the container grid (bitlength.pack=false). Peak RSS:")
print("the whole process, a separate 20-step run of each; model: the bytes sfp_model_memory reports.")
print()
print("| threads | float32 samples/s | QM+QE packed | vs float32 | QM+QE float stash | vs float32 | peak RSS float32 / packed / float stash | model MiB float32 / packed / float stash |")
print("|---:|---:|---:|---:|---:|---:|---:|---:|")
for t in (1, 2):
    _, f = pick("sfp", "cnn-f32-ab", t)
    _, p = pick("sfp", "cnn-quantum-packed", t)
    _, s = pick("sfp", "cnn-quantum-float", t)
    xs3 = [pick("sfp", n, t)[0] for n in ("cnn-f32-rss", "cnn-quantum-true-rss", "cnn-quantum-false-rss")]
    rss = [max(x["peak_rss_kb"] for x in xs) / 1024 for xs in xs3]
    mb = [xs[0]["model_bytes"] / 1048576 for xs in xs3]
    print(f"| {t} | {f:,.0f} | {p:,.0f} | {100 * (p / f - 1):+.0f}% | {s:,.0f} | {100 * (s / f - 1):+.0f}% | "
          f"{rss[0]:.1f} / {rss[1]:.1f} / {rss[2]:.1f} MiB | {mb[0]:.1f} / {mb[1]:.1f} / {mb[2]:.1f} |")
print()
print("PyTorch:", sorted({x["peer"] for x in rows if x["peer"].startswith("pytorch ")})[0],
      "| SGEMM peak: sfp's own kernel, 512^3, one core | GFLOP/s counts linear and conv multiply-adds x2")
PYEOF
