#!/bin/sh
# local-cluster.sh -- a one-node Slurm cluster on this machine, in one folder,
# to try the sbatch templates of deploy/slurm/ (and to test them:
# tests/system/slurm.sh). Needs root and Debian's slurmctld, slurmd,
# slurm-client and munge (deploy/install-deps.sh --deploy installs them).
#
# Everything lives under DIR: its own munge key and munged socket, slurm.conf
# (one node with this machine's CPU count, ports picked free), the state and
# spool folders, pid files and logs. Nothing in /etc is read or changed and no
# system service is started; the machine's own Slurm or munge, if any, is left
# alone.
#
#   deploy/slurm/local-cluster.sh check        exit 0 if this machine can run
#                                              it, else say why and exit 77
#   deploy/slurm/local-cluster.sh up DIR       start munged, slurmctld, slurmd;
#                                              wait until the node is idle
#   deploy/slurm/local-cluster.sh down DIR     cancel its jobs, stop its
#                                              daemons, remove DIR (idempotent)
#
#   deploy/slurm/local-cluster.sh up /tmp/slurm
#   export SLURM_CONF=/tmp/slurm/slurm.conf
#   SFP_CONFIG=deploy/examples/fmnist-mlp.yaml sbatch -N 1 --ntasks-per-node=2 \
#       deploy/slurm/sfp-train-srun.sbatch
#   deploy/slurm/local-cluster.sh down /tmp/slurm
#
# The configuration is the one a container allows (docs/operations.md):
# proctrack/linuxproc and task/none (no cgroups), no accounting database,
# cred_expire=5 so that a requeued job starts again after ~6 s rather than
# Slurm's default 121 s, a scheduler pass every second.
set -eu

ME=local-cluster
NODE=sfpnode
PART=sfp

die() {
	echo "$ME: $*" >&2
	exit 1
}

cmd_check() {
	if [ "$(id -u)" -ne 0 ]; then
		echo "$ME: needs root (slurmd starts jobs as their user)" >&2
		exit 77
	fi
	for t in munged slurmctld slurmd sbatch python3; do
		if ! command -v "$t" >/dev/null 2>&1; then
			echo "$ME: '$t' not found (deploy/install-deps.sh --deploy installs" \
				"slurmctld, slurmd, slurm-client, munge)" >&2
			exit 77
		fi
	done
}

# free_ports N: N TCP ports on 127.0.0.1 that are free now, one a line
free_ports() {
	python3 - "$1" <<'EOF'
import socket, sys
socks = []
for _ in range(int(sys.argv[1])):
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    socks.append(s)
for s in socks:
    print(s.getsockname()[1])
EOF
}

# wait_until SECONDS COMMAND...: run COMMAND every 0.2 s until it succeeds
wait_until() {
	n=$(($1 * 5))
	shift
	while ! "$@" >/dev/null 2>&1; do
		n=$((n - 1))
		[ $n -gt 0 ] || return 1
		sleep 0.2
	done
}

node_idle() { [ "$(sinfo -h -n "$NODE" -o %T 2>/dev/null)" = idle ]; }

cmd_up() {
	D=$1
	cmd_check
	[ ! -e "$D/slurm.conf" ] || die "'$D' already holds a cluster (down it first)"
	mkdir -p "$D"
	D=$(cd "$D" && pwd)
	# munged insists that every folder above its socket be searchable by all
	up=$(dirname "$D")
	while [ "$up" != / ]; do
		case "$(stat -c %A "$up")" in
		*x | *t) ;;
		*) die "'$up' is not searchable by all (o+x), which munged requires of its socket's folders: pick another DIR" ;;
		esac
		up=$(dirname "$up")
	done
	# and that its key be readable by root alone
	chmod 755 "$D"
	mkdir -p "$D/munge" "$D/state" "$D/spool/$NODE" "$D/log" "$D/tmp"
	chmod 755 "$D/munge"
	chmod 700 "$D/state" "$D/spool"
	dd if=/dev/urandom of="$D/munge/munge.key" bs=1024 count=1 2>/dev/null
	chmod 400 "$D/munge/munge.key"
	munged --key-file="$D/munge/munge.key" --socket="$D/munge/munge.sock" \
		--pid-file="$D/munge/munged.pid" --log-file="$D/log/munged.log" \
		--seed-file="$D/munge/munged.seed" ||
		{ cmd_down "$D"; die "munged did not start: $(tail -3 "$D/log/munged.log" 2>/dev/null)"; }

	# shellcheck disable=SC2046 # two numbers, split on purpose
	set -- $(free_ports 2)
	ctld_port=$1 slurmd_port=$2
	# srun listens on a port of this range for its tasks' I/O
	srun_lo=$((30000 + $(od -An -N2 -tu2 /dev/urandom | tr -d ' ') % 20000))
	cpus=$(nproc)
	host=$(hostname -s)
	cat >"$D/slurm.conf" <<EOF
# written by deploy/slurm/local-cluster.sh: a one-node cluster in $D
ClusterName=sfplocal
SlurmctldHost=$host(127.0.0.1)
SlurmctldPort=$ctld_port
SlurmdPort=$slurmd_port
SrunPortRange=$srun_lo-$((srun_lo + 199))
SlurmUser=root
SlurmdUser=root
AuthType=auth/munge
CredType=cred/munge
AuthInfo=socket=$D/munge/munge.sock,cred_expire=5
StateSaveLocation=$D/state
SlurmdSpoolDir=$D/spool/%n
TmpFS=$D/tmp
SlurmctldPidFile=$D/slurmctld.pid
SlurmdPidFile=$D/slurmd.pid
SlurmctldLogFile=$D/log/slurmctld.log
SlurmdLogFile=$D/log/slurmd.log
MailProg=/bin/true
ProctrackType=proctrack/linuxproc
TaskPlugin=task/none
JobAcctGatherType=jobacct_gather/none
AccountingStorageType=accounting_storage/none
JobCompType=jobcomp/none
SelectType=select/cons_tres
SelectTypeParameters=CR_Core
SchedulerType=sched/backfill
SchedulerParameters=sched_interval=1,bf_interval=1
MpiDefault=none
ReturnToService=2
MinJobAge=600
NodeName=$NODE NodeAddr=127.0.0.1 NodeHostname=$(hostname) CPUs=$cpus State=UNKNOWN
PartitionName=$PART Nodes=$NODE Default=YES MaxTime=INFINITE State=UP
EOF
	export SLURM_CONF="$D/slurm.conf"
	slurmctld -f "$SLURM_CONF" -i >"$D/log/slurmctld.out" 2>&1 ||
		{ cmd_down "$D"; die "slurmctld did not start: $(tail -3 "$D/log/slurmctld.out")"; }
	if ! wait_until 20 scontrol ping; then
		msg=$(tail -3 "$D/log/slurmctld.log" 2>/dev/null)
		cmd_down "$D"
		die "slurmctld does not answer: $msg"
	fi
	slurmd -f "$SLURM_CONF" -N "$NODE" >"$D/log/slurmd.out" 2>&1 ||
		{ cmd_down "$D"; die "slurmd did not start: $(tail -3 "$D/log/slurmd.out")"; }
	if ! wait_until 20 node_idle; then
		msg="$(sinfo -h -N -o '%N %T %E' 2>&1); $(tail -3 "$D/log/slurmd.log" 2>/dev/null)"
		cmd_down "$D"
		die "node $NODE not idle: $msg"
	fi
	echo "$ME: node $NODE ($cpus CPUs) idle in partition $PART; slurmctld on port $ctld_port"
	echo "export SLURM_CONF=$SLURM_CONF"
}

# alive PID: the process runs (a zombie whose parent does not reap it, as
# under some containers' init, counts as gone)
alive() {
	st=$(ps -o stat= -p "$1" 2>/dev/null) || return 1
	case "$st" in Z*) return 1 ;; esac
}

# kill_pidfile FILE: stop the daemon whose pid FILE names (ours: we wrote
# the file's path into its configuration), SIGKILL after 5 s
kill_pidfile() {
	[ -s "$1" ] || return 0
	pid=$(cat "$1")
	kill "$pid" 2>/dev/null || return 0
	n=25
	while alive "$pid" && [ $n -gt 0 ]; do
		sleep 0.2
		n=$((n - 1))
	done
	kill -9 "$pid" 2>/dev/null || true
}

cmd_down() {
	D=$1
	[ -d "$D" ] || return 0
	if [ -f "$D/slurm.conf" ] && [ -s "$D/slurmctld.pid" ]; then
		export SLURM_CONF="$D/slurm.conf"
		# cancel every job of this cluster and give their steps a moment
		# to end, so no slurmstepd outlives its slurmd
		scancel --full --quiet --partition "$PART" 2>/dev/null || true
		n=50
		while [ -n "$(squeue -h -o %i 2>/dev/null)" ] && [ $n -gt 0 ]; do
			sleep 0.2
			n=$((n - 1))
		done
	fi
	kill_pidfile "$D/slurmd.pid"
	kill_pidfile "$D/slurmctld.pid"
	kill_pidfile "$D/munge/munged.pid"
	rm -rf "$D"
}

case "${1:-}" in
check) cmd_check ;;
up)
	[ $# -eq 2 ] || die "usage: $0 up DIR"
	cmd_up "$2"
	;;
down)
	[ $# -eq 2 ] || die "usage: $0 down DIR"
	cmd_down "$2"
	;;
*)
	echo "usage: $0 check | up DIR | down DIR" >&2
	exit 2
	;;
esac
