#!/bin/sh
# tool_edge.sh -- the sfp command line beyond the basics of tool.sh: per-command
# help, every bad option value, .npy versions 2.0/3.0, scalars and empty
# arrays, ISA-independent output, seeded determinism, I/O failures (exit 1),
# and inspect's numbers checked against the data they describe.
set -u
. "$(dirname "$0")/common.inc"
# npy MAJOR SHAPE_TEXT DATA_OCTAL_ESCAPES > file: a hand-built .npy (padded to 64)
npy() {
	d="{'descr': '<f4', 'fortran_order': False, 'shape': $2, }"
	pre=10
	[ "$1" -ne 1 ] && pre=12
	len=$((${#d} + 1))
	pad=$(( (64 - (pre + len) % 64) % 64 ))
	hl=$((len + pad))
	printf '\223NUMPY'
	printf "\\$(printf %o "$1")\\000"
	printf "\\$(printf %o $((hl % 256)))\\$(printf %o $((hl / 256)))"
	[ "$1" -ne 1 ] && printf '\000\000'
	printf '%s%*s\n' "$d" "$pad" ""
	printf "$3"
}
ONE_TWO='\000\000\200\077\000\000\000\300\000\000\000\000\000\000\100\100' # 1, -2, 0, 3

# help
expect 0 "help encode" "$SFP" help encode
grep -q -- "--window-top" "$T/out" && ok "help encode lists options" || bad "help encode text"
expect 0 "encode --help" "$SFP" encode --help
grep -q "usage: sfp encode" "$T/out" && ok "encode --help is the encode usage" || bad "encode --help text"
for c in decode inspect dataset bench; do expect 0 "help $c" "$SFP" help $c; done
expect 2 "help of an unknown command" "$SFP" help frobnicate

# bad option values: exit 2, the value quoted
npy 1 '(2, 2)' "$ONE_TWO" >"$T/a.npy"
for args in "-e x -m 3" "-e 9 -m 3" "-e 4 -m -1" "-e 4 -m 3 --seed -1" "-e 4 -m 3 --seed 4294967296" \
	"-e 4 -m 3 --window-top 0" "-e 4 -m 3 --window-top 255" "-e 4 -m 3 --underflow none" \
	"-e 4 -m 3 --overflow clamp" "-e 4 -m 3 --isa mmx"; do
	# shellcheck disable=SC2086
	expect 2 "encode $args" "$SFP" encode $args "$T/a.npy" "$T/z.sfpt"
done
expect 2 "option without its value" "$SFP" encode -e 4 -m 3 "$T/a.npy" "$T/z.sfpt" --seed
expect 2 "extra positional" "$SFP" encode -e 4 -m 3 "$T/a.npy" "$T/z.sfpt" extra
expect 2 "inspect without a file" "$SFP" inspect --json
expect 2 "dataset count 0" "$SFP" dataset fmnist --count 0 "$T/z.npy"
expect 2 "dataset count beyond the split" "$SFP" dataset fmnist --split t10k --count 10001 "$T/z.npy"
grep -q "10000 images" "$T/err" && ok "count message says the split size" || bad "count message: $(cat "$T/err")"
expect 2 "unknown dataset" "$SFP" dataset cifar "$T/z.npy"
expect 2 "bench without a name" "$SFP" bench
[ ! -e "$T/z.sfpt" ] && [ ! -e "$T/z.npy" ] && ok "no output after usage errors" || bad "output after a usage error"

# .npy versions 1.0, 2.0, 3.0 read the same; output is 1.0 with the same data
for v in 1 2 3; do
	npy $v '(2, 2)' "$ONE_TWO" >"$T/v$v.npy"
	expect 0 "encode .npy version $v.0" "$SFP" encode -e 8 -m 23 "$T/v$v.npy" "$T/v$v.sfpt"
	expect 0 "decode .npy version $v.0" "$SFP" decode "$T/v$v.sfpt" "$T/v$v.out.npy"
	cmp -s "$T/v1.npy" "$T/v$v.out.npy" && ok "version $v.0 round trip" || bad "version $v.0 round trip"
done
# scalar and empty arrays keep their shape
npy 1 '()' '\000\000\300\077' >"$T/s.npy"
npy 1 '(0, 5)' '' >"$T/e.npy"
for f in s e; do
	expect 0 "encode $f" "$SFP" encode -e 5 -m 4 --gecko "$T/$f.npy" "$T/$f.sfpt"
	expect 0 "decode $f" "$SFP" decode "$T/$f.sfpt" "$T/$f.out.npy"
	cmp -s "$T/$f.npy" "$T/$f.out.npy" && ok "$f: shape and value kept" || bad "$f round trip"
done
expect 0 "inspect empty --json" "$SFP" inspect --json "$T/e.sfpt"
grep -q '"shape": \[0, 5\]' "$T/out" && ok "empty shape in json" || bad "empty json: $(cat "$T/out")"

# rejected .npy files: exit 2, file and reason named
printf "\\377" | cat "$T/a.npy" - >"$T/trail.npy"
expect 2 "trailing byte in .npy" "$SFP" encode -e 4 -m 3 "$T/trail.npy" "$T/z.sfpt"
grep -q "trail.npy" "$T/err" && ok "trailing byte error names the file" || bad "trailing message"
sed "s/<f4/<f8/" "$T/a.npy" >"$T/f8.npy"
expect 2 "float64 .npy" "$SFP" encode -e 4 -m 3 "$T/f8.npy" "$T/z.sfpt"
grep -q "cannot read '.*f8.npy': dtype '<f8' is not float32 (convert with x.astype('<f4'))" "$T/err" &&
	ok "dtype message" || bad "dtype message: $(cat "$T/err")"

# I/O failures are exit 1 and leave nothing behind
expect 0 "encode for I/O tests" "$SFP" encode -e 8 -m 23 "$T/a.npy" "$T/a.sfpt"
expect 1 "decode into a missing directory" "$SFP" decode "$T/a.sfpt" "$T/nodir/x.npy"
expect 1 "encode into a missing directory" "$SFP" encode -e 4 -m 3 "$T/a.npy" "$T/nodir/x.sfpt"
mkdir "$T/isdir.npy"
expect 1 "decode onto a directory" "$SFP" decode "$T/a.sfpt" "$T/isdir.npy"
ls "$T" | grep -q tmp && bad "temporary left" || ok "no temporaries left"

# real images: output independent of the ISA, seeded stochastic rounding deterministic
expect 0 "dataset" "$SFP" dataset fmnist --split t10k --count 32 "$T/img.npy"
expect 0 "train split" "$SFP" dataset fmnist --split train --count 2 "$T/tr.npy"
[ "$(wc -c <"$T/tr.npy")" -eq $((128 + 2 * 784 * 4)) ] && ok "--count sizes the export" || bad "train export size"
"$SFP" encode -e 5 -m 3 --gecko "$T/img.npy" "$T/best.sfpt"
for isa in scalar avx2 avx512; do
	if "$SFP" encode --isa $isa -e 5 -m 3 --gecko "$T/img.npy" "$T/$isa.sfpt" 2>/dev/null; then
		cmp -s "$T/best.sfpt" "$T/$isa.sfpt" && ok "isa $isa: same bytes" || bad "isa $isa output differs"
	else
		echo "skip isa $isa (not supported here)"
	fi
done
"$SFP" encode -e 3 -m 1 --rounding stochastic --seed 5 "$T/img.npy" "$T/r1.sfpt"
"$SFP" encode -e 3 -m 1 --rounding stochastic --seed 5 "$T/img.npy" "$T/r2.sfpt"
"$SFP" encode -e 3 -m 1 --rounding stochastic --seed 6 "$T/img.npy" "$T/r3.sfpt"
cmp -s "$T/r1.sfpt" "$T/r2.sfpt" && ok "same seed, same bytes" || bad "stochastic not deterministic"
cmp -s "$T/r1.sfpt" "$T/r3.sfpt" && bad "seed ignored" || ok "another seed, other bytes"
# a window whose bottom is above the smallest values: underflow min keeps them
"$SFP" encode -e 2 -m 2 --window-top 127 --underflow zero "$T/img.npy" "$T/uz.sfpt"
"$SFP" encode -e 2 -m 2 --window-top 127 --underflow min "$T/img.npy" "$T/um.sfpt"
expect 0 "inspect a fixed window" "$SFP" inspect "$T/um.sfpt"
grep -q "underflow-min.*fixed-window" "$T/out" && ok "inspect names the flags" || bad "flags: $(grep flags "$T/out")"
"$SFP" inspect --json "$T/uz.sfpt" >"$T/uz.json"
"$SFP" inspect --json "$T/um.sfpt" >"$T/um.json"

if command -v python3 >/dev/null; then
	python3 -m json.tool "$T/uz.json" >/dev/null && ok "json.tool parses inspect --json" || bad "json.tool"
	"$SFP" encode -e 8 -m 23 "$T/img.npy" "$T/l.sfpt"
	"$SFP" encode -e 4 -m 2 --gecko "$T/img.npy" "$T/g.sfpt"
	"$SFP" inspect --json "$T/l.sfpt" >"$T/l.json"
	"$SFP" inspect --json "$T/g.sfpt" >"$T/g.json"
	python3 - "$T" <<'PY' && ok "inspect numbers match the data" || bad "inspect numbers"
import json, math, struct, sys
T = sys.argv[1]
b = open(T + "/img.npy", "rb").read()
hl = b[8] | b[9] << 8
x = struct.unpack("<%df" % ((len(b) - 10 - hl) // 4), b[10 + hl:])
l, g = json.load(open(T + "/l.json")), json.load(open(T + "/g.json"))
uz, um = json.load(open(T + "/uz.json")), json.load(open(T + "/um.json"))
zeros = sum(1 for v in x if v == 0)
assert l["count"] == len(x) == 32 * 784, l
assert l["nnz"] == len(x) - zeros, (l["nnz"], zeros)
assert abs(l["zero_fraction"] - zeros / len(x)) < 1e-6
# order-0 entropy of the biased exponents (zero -> code 0) when e = 8, the window being 1..254
hist = {}
for v in x:
    k = 0 if v == 0 else (struct.unpack("<I", struct.pack("<f", v))[0] >> 23) & 255
    hist[k] = hist.get(k, 0) + 1
H = -sum(c / len(x) * math.log2(c / len(x)) for c in hist.values())
assert abs(l["exp_entropy_bits"] - H) < 1e-4, (l["exp_entropy_bits"], H)
for d in (l, g, uz, um):
    # codes 1 .. 2^e-1 name exp_lo .. exp_lo + 2^e - 2, clipped to the finite 1..254
    assert 1 <= d["exp_lo"] <= d["exp_hi"] <= 254, d
    assert d["exp_hi"] - d["exp_lo"] == min(2 ** d["e"] - 2, d["exp_hi"] - 1), d
    assert d["window_hi_pow2"] == d["exp_hi"] - 127
    assert 0 <= d["exp_entropy_bits"] <= d["e"] + 1e-9
    assert d["total_bytes"] == d["header_bytes"] + d["mant_bytes"] + d["sign_bytes"] + d["exc_bytes"] + d["exp_bytes"]
    assert abs(d["ratio_vs_fp32"] * d["bits_per_value"] - 32) < 1e-3
assert g["exp_coder"] == "gecko" and g["gecko_variant"] != "none"
assert abs(g["gecko_bits_per_exp"] - 8 * g["exp_bytes"] / g["count"]) < 1e-6
assert l["exp_coder"] == "raw" and l["gecko_bits_per_exp"] > 0
assert uz["exp_hi"] == 127 and um["exp_hi"] == 127
assert um["nnz"] > uz["nnz"], (um["nnz"], uz["nnz"])  # MIN keeps the small values
PY
else
	echo "skip inspect consistency (no python3)"
fi

echo "tool_edge.sh: $fails failed"
[ "$fails" -eq 0 ]
