#!/bin/sh
# bench_quick.sh -- `sfp bench codec --quick`, `sfp bench gecko --quick` and
# `sfp bench refine --quick` run, every peer appears, and lossless peers
# round-trip (the bench fails loudly otherwise).
set -u
SFP=${BUILD:-build}/bin/sfp
out=$(mktemp)
trap 'rm -f "$out"' EXIT
"$SFP" bench codec --quick --m 7 >"$out" 2>&1 || { cat "$out"; echo "bench codec failed"; exit 1; }
for p in memcpy sfp sfp+gecko zstd-1 lz4 blosc-shuf-lz4 blosc-shuf-zstd blosc-bshuf-lz4 blosc-bshuf-zstd fpzip zfp-rate fp16 bf16; do
	grep -q " $p " "$out" || { echo "peer $p missing"; exit 1; }
done
grep -q "FAILED" "$out" && { grep FAILED "$out"; exit 1; }
"$SFP" bench gecko --quick >"$out" 2>&1 || { cat "$out"; echo "bench gecko failed"; exit 1; }
grep -q "delta-16-min" "$out" || { echo "gecko ablation incomplete"; exit 1; }
# refinement: the bench itself fails when a tool raises the error it was fitted to
"$SFP" bench refine --quick >"$out" 2>&1 || { cat "$out"; echo "bench refine failed"; exit 1; }
grep -q "^gradient    7 shift+bias-ch" "$out" || { echo "refine table incomplete"; exit 1; }
echo "bench_quick.sh: ok"
