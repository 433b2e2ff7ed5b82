#!/bin/sh
# run.sh -- the fault suite (docs/reliability.md): every fault script of
# tests/faults/ with TRIALS trials each (default 5; `make check` runs 1
# through tests/system/faults.sh), each under a time limit (a script that
# overruns it fails), then the table of results: fault, trials, trials
# passed, the worst time measured, data lost.
#
#   TRIALS=5 FAULT_SEED=N tests/faults/run.sh [FAULT...]   (FAULT: kill, daemon, disk, link, wire)
#
# FAULT_SEED (printed; default from the clock) seeds every random draw:
# the same seed replays the same steps, ranks, sizes and bits.
set -u
cd "$(dirname "$0")/../.." || exit 1
TRIALS=${TRIALS:-5}
FAULT_SEED=${FAULT_SEED:-$(($(date +%s) % 100000))}
BUILD=${BUILD:-build}
FAULTS_TABLE=$(mktemp)
export TRIALS FAULT_SEED BUILD FAULTS_TABLE
trap 'rm -f "$FAULTS_TABLE"' EXIT
list=${*:-wire kill disk daemon link}
echo "faults: TRIALS=$TRIALS FAULT_SEED=$FAULT_SEED ($list)"
t0=$(date +%s)
pass=0
fail=0
failed=""
for f in $list; do
	limit=$((120 + 120 * TRIALS))
	echo "=== faults/$f.sh (at most $limit s)"
	timeout -k 10 $limit sh "tests/faults/$f.sh"
	rc=$?
	if [ $rc -eq 0 ]; then
		pass=$((pass + 1))
	else
		[ $rc -eq 124 ] && echo "FAIL faults/$f.sh ran over its $limit s"
		fail=$((fail + 1))
		failed="$failed $f"
	fi
done
echo
echo "| fault | trials | passed | worst time | data lost |"
echo "|---|---|---|---|---|"
awk -F'|' '{ printf "| %s | %s | %s | %s | %s |\n", $1, $2, $3, $4, $5 }' "$FAULTS_TABLE"
echo
echo "(TRIALS=$TRIALS FAULT_SEED=$FAULT_SEED, $(($(date +%s) - t0)) s)"
[ -n "$failed" ] && echo "failed:$failed"
echo "faults: $pass passed, $fail failed"
[ "$fail" -eq 0 ]
