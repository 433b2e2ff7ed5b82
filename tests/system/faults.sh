#!/bin/sh
# faults.sh -- the fault suite (tests/faults/run.sh, docs/reliability.md)
# with one trial of each fault; `make faults` runs it with TRIALS=5.
exec env TRIALS=1 sh "$(dirname "$0")/../faults/run.sh"
