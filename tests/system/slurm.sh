#!/bin/sh
# slurm.sh -- the sbatch templates of deploy/slurm/ on a real one-node Slurm
# cluster (deploy/slurm/local-cluster.sh: munged, slurmctld and slurmd in a
# scratch folder, free ports): the mpirun template trains a Fashion-MNIST
# slice and reports to a real sfpd with a token read from a file (the token
# on no command line while it runs), the srun --mpi=pmix template trains the
# same slice, and a job requeued mid-run (scontrol requeue) starts again and
# resumes from its newest checkpoint to the last step. The cluster is taken
# down (jobs cancelled, daemons stopped, files removed) on any exit. Skips,
# saying why, where Slurm is not installed or we are not root.
set -u
. "$(dirname "$0")/common.inc"
B=${BUILD:-build}
LC=deploy/slurm/local-cluster.sh
if ! why=$($LC check 2>&1); then
	echo "skip slurm.sh: $why"
	exit 0
fi
for t in mpirun curl; do
	if ! command -v $t >/dev/null 2>&1; then
		echo "skip slurm.sh: $t is not installed (deploy/install-deps.sh installs it)"
		exit 0
	fi
done
W=$(cd "$B/bin" && pwd)/sfp-worker
D=$(cd "$B/bin" && pwd)/sfpd
# not under $T: munged wants every folder above its socket searchable by all
C=$(mktemp -d "${TMPDIR:-/tmp}/sfp-slurm.XXXXXX")
SFPD=""
cleanup() {
	[ -n "$SFPD" ] && kill -9 "$SFPD" 2>/dev/null
	$LC down "$C" >/dev/null 2>&1
	rm -rf "$T"
}
trap cleanup EXIT
trap 'exit 1' INT TERM HUP # the EXIT trap then takes the cluster down
started=$(date +%s)

# ---- the templates themselves ----
for f in deploy/slurm/sfp-train.sbatch deploy/slurm/sfp-train-srun.sbatch; do
	sed -n '/^# ---- common part/,/^# ---- end of the common part/p' "$f" >"$T/$(basename "$f").common"
	grep -q -- '--requeue' "$f" && grep -q -- '--open-mode=append' "$f" && ok "$(basename "$f"): --requeue, appended output" ||
		bad "$(basename "$f"): #SBATCH --requeue / --open-mode=append missing"
done
[ -s "$T/sfp-train.sbatch.common" ] && cmp -s "$T/sfp-train.sbatch.common" "$T/sfp-train-srun.sbatch.common" &&
	ok "both templates share the same common part" || bad "the templates' common parts differ"
! grep -n -- '--token\|daemon.token' deploy/slurm/*.sbatch | grep -v '^[^:]*:[0-9]*:#' >"$T/tok" &&
	ok "no template passes a token on a command line" || bad "token on a command line: $(cat "$T/tok")"

if ! $LC up "$C" >"$T/up" 2>&1; then
	bad "one-node cluster: $(cat "$T/up")"
	echo "slurm.sh: $fails failed"
	exit 1
fi
ok "one-node Slurm cluster up ($(head -1 "$T/up" | sed 's/^local-cluster: //'))"
export SLURM_CONF="$C/slurm.conf"
srun --mpi=list >"$T/mpi" 2>&1
grep -q pmix "$T/mpi" && ok "srun --mpi=list offers pmix" || bad "srun --mpi=list: $(cat "$T/mpi")"

# what every job gets: the sbatch environment (sbatch's default --export=ALL)
export OMPI_ALLOW_RUN_AS_ROOT=1 OMPI_ALLOW_RUN_AS_ROOT_CONFIRM=1
export ASAN_OPTIONS="${ASAN_OPTIONS:+$ASAN_OPTIONS:}detect_leaks=0" # Open MPI's allocations (dist.sh)
export SFP_WORKER="$W" SFP_CONFIG=deploy/examples/fmnist-mlp.yaml
SLICE="data.train_limit=640 data.test_limit=256 log.every=5 train.max_steps=20"
SB="sbatch --parsable -N 1 --ntasks-per-node=2"

# state JOB: JobState and ExitCode of a job, "COMPLETED 0:0"
state() { scontrol show job "$1" 2>/dev/null | tr ' ' '\n' | sed -n 's/^JobState=//p; s/^ExitCode=//p' | tr '\n' ' ' | sed 's/ $//'; }
field() { scontrol show job "$1" 2>/dev/null | tr ' ' '\n' | sed -n "s/^$2=//p"; }
# wait_job JOB SECONDS: until the job has ended; its state in $st
wait_job() {
	i=0
	while [ $i -lt $(($2 * 5)) ]; do
		st=$(state "$1")
		case "$st" in PENDING* | RUNNING* | CONFIGURING* | COMPLETING* | REQUEUE* | "") ;; *) return 0 ;; esac
		sleep 0.2
		i=$((i + 1))
	done
	scancel "$1" 2>/dev/null
	return 1
}
losses() { grep '"loss"' "$1" | grep -v test_loss | sed 's/.*"loss":\([0-9.e+-]*\).*/\1/'; }
# trained LOG: the loss fell and a test accuracy was logged
trained() {
	first=$(losses "$1" | head -1) last=$(losses "$1" | tail -1)
	[ -n "$first" ] && awk "BEGIN { exit !($last < $first) }" && grep -q '"test_acc"' "$1"
}

# ---- the mpirun template, reporting to sfpd with a token from a file ----
TOKEN=tok-$$-$(od -An -N8 -tx8 /dev/urandom | tr -d ' ')
printf '%s\n' "$TOKEN" >"$T/token"
chmod 600 "$T/token"
WPORT=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')
: >"$T/sfpd.log"
SFP_TOKEN=$TOKEN "$D" --http 127.0.0.1:0 --listen "tcp://127.0.0.1:$WPORT" >"$T/sfpd.log" 2>&1 &
SFPD=$!
i=0
URL=""
while [ $i -lt 100 ] && [ -z "$URL" ]; do
	port=$(sed -n 's|^sfpd: http on http://127.0.0.1:\([0-9]*\)/$|\1|p' "$T/sfpd.log")
	[ -n "$port" ] && grep -q "workers: listening" "$T/sfpd.log" && URL=http://127.0.0.1:$port
	[ -z "$URL" ] && sleep 0.1
	i=$((i + 1))
done
[ -n "$URL" ] || bad "sfpd did not start: $(cat "$T/sfpd.log")"

j=$(SFP_CKPT_DIR=$T/ck-mpirun SFP_DAEMON=tcp://127.0.0.1:$WPORT SFP_TOKEN_FILE=$T/token \
	SFP_SET="$SLICE log.metrics=$T/mpirun.jsonl" $SB --output="$T/mpirun-%j.out" deploy/slurm/sfp-train.sbatch)
# while it runs, look at every command line on the machine for the token
: >"$T/ps-token"
i=0
while [ $i -lt 600 ]; do
	case "$(state "$j")" in PENDING* | RUNNING* | CONFIGURING* | COMPLETING* | "") ;; *) break ;; esac
	ps -eo args 2>/dev/null | grep -F -- "$TOKEN" | grep -v grep >>"$T/ps-token"
	sleep 0.1
	i=$((i + 1))
done
if wait_job "$j" 120 && [ "$st" = "COMPLETED 0:0" ]; then ok "mpirun template: job $j completed, exit 0"; else bad "mpirun template: job $j: $st: $(tail -5 "$T"/mpirun-*.out)"; fi
grep -q "job: 2 ranks = 2 data-parallel replicas" "$T"/mpirun-*.out && ok "mpirun template: 2 ranks" || bad "mpirun template ranks: $(head -5 "$T"/mpirun-*.out)"
trained "$T/mpirun.jsonl" && ok "mpirun template: trained (loss $first -> $last, test accuracy logged)" || bad "mpirun template did not train: $(tail -3 "$T/mpirun.jsonl" 2>/dev/null)"
[ -f "$T/ck-mpirun/ckpt-20.sfpk" ] && ok "mpirun template: checkpoint in SFP_CKPT_DIR" || bad "no checkpoint: $(ls "$T/ck-mpirun")"
[ ! -s "$T/ps-token" ] && ok "the token was on no command line while the job ran" || bad "token seen in ps: $(head -3 "$T/ps-token")"
curl -s "$URL/api/v1/workers?job=sfp-train-$j" >"$T/w.json"
python3 -c "import json,sys; w=json.load(open(sys.argv[1]))['workers']; sys.exit(not (sorted(x['rank'] for x in w) == [0, 1] and all(x['state'] == 'left' and x['step'] == 20 for x in w)))" "$T/w.json" &&
	ok "sfpd knew job sfp-train-$j: ranks 0 and 1 reported to step 20 and left" || bad "sfpd workers: $(head -c 400 "$T/w.json")"
curl -s "$URL/metrics" | grep -q '^sfp_dropped_messages_total{reason="bad_token"} 0$' && ok "sfpd refused no report (token accepted)" ||
	bad "sfpd drops: $(curl -s "$URL/metrics" | grep dropped)"
kill "$SFPD" 2>/dev/null
wait "$SFPD" 2>/dev/null
SFPD=""

# ---- the srun --mpi=pmix template ----
j=$(SFP_CKPT_DIR=$T/ck-srun SFP_SET="$SLICE log.metrics=$T/srun.jsonl" $SB --output="$T/srun-%j.out" deploy/slurm/sfp-train-srun.sbatch)
if wait_job "$j" 120 && [ "$st" = "COMPLETED 0:0" ]; then ok "srun template: job $j completed, exit 0"; else bad "srun template: job $j: $st: $(tail -5 "$T"/srun-*.out)"; fi
grep -q "job: 2 ranks = 2 data-parallel replicas" "$T"/srun-*.out && ok "srun template: 2 ranks (PMIx)" || bad "srun template ranks: $(head -5 "$T"/srun-*.out)"
trained "$T/srun.jsonl" && ok "srun template: trained (loss $first -> $last, test accuracy logged)" || bad "srun template did not train: $(tail -3 "$T/srun.jsonl" 2>/dev/null)"
# the same global batches: the same losses as the mpirun job
[ "$(losses "$T/srun.jsonl")" = "$(losses "$T/mpirun.jsonl")" ] && ok "srun and mpirun jobs log the same losses" || bad "losses differ between launchers"

# ---- requeued mid-run: resumes from the newest checkpoint ----
STEPS=800
j=$(SFP_CKPT_DIR=$T/ck-rq SFP_CKPT_EVERY=50 \
	SFP_SET="data.train_limit=2560 data.test_limit=256 log.every=50 train.epochs=100 train.max_steps=$STEPS train.eval_every_epochs=0 log.metrics=$T/rq.jsonl" \
	$SB --output="$T/rq.out" deploy/slurm/sfp-train-srun.sbatch)
i=0
while ! ls "$T"/ck-rq/ckpt-*.sfpk >/dev/null 2>&1 && [ $i -lt 600 ]; do
	sleep 0.1
	i=$((i + 1))
done
scontrol requeue "$j" 2>"$T/rq.err" && ok "job $j requeued after its first checkpoint" || bad "scontrol requeue: $(cat "$T/rq.err")"
if wait_job "$j" 180 && [ "$st" = "COMPLETED 0:0" ]; then ok "requeued job completed, exit 0"; else bad "requeued job: $st: $(tail -5 "$T/rq.out")"; fi
[ "$(field "$j" Restarts)" = 1 ] && ok "Slurm restarted it once" || bad "restarts: $(field "$j" Restarts)"
grep -q "CANCELLED AT .* DUE TO JOB REQUEUE" "$T/rq.out" && grep -q "restart 1: resuming from the newest checkpoint" "$T/rq.out" &&
	ok "the output of both runs is kept (appended)" || bad "requeue output: $(head -20 "$T/rq.out")"
at=$(sed -n "s|^resumed from '$T/ck-rq/ckpt-\([0-9]*\).sfpk' at step \([0-9]*\)$|\2|p" "$T/rq.out")
[ -n "$at" ] && [ "$at" -gt 0 ] && [ "$at" -lt $STEPS ] && ok "the second run resumed at step $at" || bad "resume line: $(grep -i resum "$T/rq.out")"
grep -q "\"step\":$STEPS,\"epoch\":[0-9]*,\"test_acc\"" "$T/rq.jsonl" && ok "and trained on to step $STEPS" || bad "final step: $(tail -2 "$T/rq.jsonl")"

$LC down "$C" >"$T/down" 2>&1 && [ ! -e "$C" ] && ok "cluster down, folder removed" || bad "down: $(cat "$T/down")"
echo "slurm.sh: $(($(date +%s) - started)) s"
echo "slurm.sh: $fails failed"
[ "$fails" -eq 0 ]
