#!/bin/sh
# run-all.sh -- run every test of `make check`: the CUnit binaries given as
# arguments, then the shell tests tests/system/*.sh, then each fuzz target
# briefly. Prints one closing line "check: N passed, N failed".
set -u
BUILD=${BUILD:-build}
export BUILD
pass=0
fail=0
failed=""

run() {
	name=$1
	shift
	echo "=== $name"
	if "$@"; then
		pass=$((pass + 1))
	else
		fail=$((fail + 1))
		failed="$failed $name"
		echo "=== FAILED: $name"
	fi
}

for t in "$@"; do
	run "$(basename "$t")" "$t"
done
for s in tests/system/*.sh; do
	[ -e "$s" ] || continue
	run "$(basename "$s")" sh "$s"
done
if [ -z "${SFP_SKIP_FUZZ:-}" ]; then
	for f in build/fuzz/fuzz_*; do
		[ -x "$f" ] || continue
		run "$(basename "$f")" env FUZZ_SECONDS="${FUZZ_CHECK_SECONDS:-20}" tests/run-fuzz.sh "$f"
	done
fi

[ -n "$failed" ] && echo "failed:$failed"
echo "check: $pass passed, $fail failed"
[ "$fail" -eq 0 ]
