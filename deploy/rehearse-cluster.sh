#!/bin/sh
# rehearse-cluster.sh -- a small cluster on one machine, for running sfp-worker
# (or any MPI program) as if on N hosts joined by a switch with links of a
# chosen bandwidth (design.md §7). Needs root.
#
# Each "host" is a network namespace (sfpns0 .. sfpns<N-1>) with one address,
# 10.77.0.<i+1>/24, on its own veth link to a bridge that lives in one more
# namespace (sfpnsbr), so nothing is added to the machine's own network. Every
# link is rate-limited in both directions with a token bucket
# (tc qdisc ... tbf rate RATE), like a full-duplex NIC of that speed.
# `run` starts Open MPI's mpirun inside sfpns0 with a hostfile of one slot per
# host and a launch agent that starts each host's daemon inside that host's
# namespace (ip netns exec), and with TCP only, on the test subnet
# (btl tcp,self; pml ob1; oob/btl_tcp_if_include 10.77.0.0/24): every rank
# runs in its own namespace and all its MPI traffic crosses the limited links.
#
#   deploy/rehearse-cluster.sh check          exit 0 if this machine can do it,
#                                             else say why and exit 77 (skip)
#   deploy/rehearse-cluster.sh up N RATE      N hosts, links of RATE (tc units:
#                                             1gbit, 10gbit, 500mbit ...)
#   deploy/rehearse-cluster.sh run [MPIRUN-OPTIONS] -- PROGRAM [ARGS...]
#                                             mpirun in sfpns0, -np N unless
#                                             the options give -np/-n
#   deploy/rehearse-cluster.sh speed [FROM TO [MB]]
#                                             time MB megabytes from host FROM
#                                             to host TO over TCP (nc); default
#                                             0 -> 1, two seconds' worth at RATE
#   deploy/rehearse-cluster.sh stats          bytes each host sent and received
#                                             over its link since `up` (tc)
#   deploy/rehearse-cluster.sh impair HOST rate RATE | loss PCT | delay MS | cut | off
#                                             host HOST's link, both directions:
#                                             slower (tbf), lossy (netem, or nft
#                                             where the kernel has no netem),
#                                             delayed (netem), cut off silently
#                                             (its switch port detached), or
#                                             back to RATE; exit 77 when the
#                                             machine cannot (says why)
#   deploy/rehearse-cluster.sh sysctl KEY=VALUE
#                                             set a kernel setting in every
#                                             host (per network namespace, e.g.
#                                             net.ipv4.tcp_retries2=5)
#   deploy/rehearse-cluster.sh down           delete all of it (idempotent)
#
# Example:
#   deploy/rehearse-cluster.sh up 2 1gbit
#   deploy/rehearse-cluster.sh run -- sh -c 'echo "rank $OMPI_COMM_WORLD_RANK: $(ip -br -4 addr show eth0)"'
#   deploy/rehearse-cluster.sh run -- build/bin/sfp-worker --config deploy/examples/fmnist-cnn.yaml
#   deploy/rehearse-cluster.sh speed
#   deploy/rehearse-cluster.sh down
#
# Each host's name (sfpns<i>) resolves to its address in every host: `up`
# writes /etc/netns/sfpns<i>/hosts, which `ip netns exec` mounts over
# /etc/hosts (nng's tcp endpoints are host names).
#
# Environment: SFP_REHEARSE_PREFIX (namespace prefix, default sfpns) and
# SFP_REHEARSE_NET (first three octets of the /24, default 10.77.0) let two
# rehearsals coexist. State (hostfile, agent, N, RATE) is kept in
# /run/sfp-rehearse-<prefix>/. `up` undoes what it did if any step fails.
# See docs/rehearsal.md.
set -eu

P=${SFP_REHEARSE_PREFIX:-sfpns}
NET=${SFP_REHEARSE_NET:-10.77.0}
STATE=${SFP_REHEARSE_DIR:-/run/sfp-rehearse-$P}
BR=${P}br
ME=rehearse-cluster

die() {
	echo "$ME: $*" >&2
	exit 1
}

# rate_bytes RATE: bytes per second of a tc rate (kbit, mbit, gbit, bit,
# kbps/mbps/gbps = bytes), or nothing if it does not parse
rate_bytes() {
	echo "$1" | awk '
	match($0, /^[0-9]+(\.[0-9]+)?/) {
		v = substr($0, 1, RLENGTH); u = tolower(substr($0, RLENGTH + 1))
		m["bit"] = 1/8; m["kbit"] = 1e3/8; m["mbit"] = 1e6/8; m["gbit"] = 1e9/8
		m["bps"] = 1; m["kbps"] = 1e3; m["mbps"] = 1e6; m["gbps"] = 1e9
		if ((u in m) && v > 0) printf "%.0f\n", v * m[u]
	}'
}

# our_namespaces: the namespaces this prefix owns that exist now
our_namespaces() {
	ip netns list 2>/dev/null | awk -v p="$P" '$1 ~ ("^" p "([0-9]+|br)$") { print $1 }'
}

do_down() {
	for ns in $(our_namespaces); do
		# processes left inside (a run that was interrupted) would keep the
		# namespace alive after its name is gone; they can only be ours
		pids=$(ip netns pids "$ns" 2>/dev/null || true)
		if [ -n "$pids" ]; then
			# shellcheck disable=SC2086
			echo "$ME: stopping processes left in $ns:" $pids >&2
			# shellcheck disable=SC2086
			kill $pids 2>/dev/null || true
		fi
		ip netns del "$ns" 2>/dev/null || true
	done
	for d in /etc/netns/"$P"*; do
		case ${d##*/} in "$P"[0-9]*) rm -rf "$d" ;; esac
	done
	rm -rf "$STATE"
}

cmd_check() {
	if [ "$(id -u)" -ne 0 ]; then
		echo "$ME: needs root (network namespaces, veth, tc)" >&2
		exit 77
	fi
	for t in ip tc mpirun; do
		if ! command -v "$t" >/dev/null 2>&1; then
			echo "$ME: '$t' not found (packages iproute2, openmpi-bin)" >&2
			exit 77
		fi
	done
	probe=${P}probe$$
	# shellcheck disable=SC2064
	trap "ip netns del '$probe' 2>/dev/null || true" EXIT
	why=""
	if ! ip netns add "$probe" 2>/dev/null; then
		why="cannot create a network namespace (ip netns add)"
	elif ! ip -n "$probe" link add pa type veth peer name pb 2>/dev/null; then
		why="cannot create a veth pair (kernel module veth?)"
	elif ! ip -n "$probe" link add br0 type bridge 2>/dev/null; then
		why="cannot create a bridge (kernel module bridge?)"
	elif ! tc -n "$probe" qdisc add dev pa root tbf rate 1gbit burst 128kb latency 20ms \
		2>/dev/null; then
		why="cannot add a tbf qdisc (kernel module sch_tbf?)"
	elif ! mkdir -p /etc/netns 2>/dev/null || [ ! -w /etc/netns ]; then
		why="cannot write /etc/netns (each host's /etc/hosts)"
	fi
	ip netns del "$probe" 2>/dev/null || true
	trap - EXIT
	if [ -n "$why" ]; then
		echo "$ME: $why" >&2
		exit 77
	fi
	echo "$ME: ok (root, ip netns, veth, bridge, tc tbf, mpirun)"
}

# burst_of BYTES_PER_S: the token bucket of a link of that rate.
# The bucket holds 1 ms at line rate, and at least 128 KiB: veth hands
# tbf GSO packets of up to 64 KiB, and a bucket smaller than two of them
# runs well under the rate (measured at 500mbit: 45 MB/s with 32 KiB,
# 59 MB/s with 128 KiB, of 62.5). Little more, so that bursts do not beat
# the rate by much. The queue holds 20 ms, a switch port's order of size.
burst_of() {
	b=$(($1 / 1000))
	[ "$b" -ge 131072 ] || b=131072
	echo "$b"
}

cmd_up() {
	[ $# -eq 2 ] || die "usage: up N RATE (e.g. up 2 1gbit)"
	n=$1
	rate=$2
	case $n in '' | *[!0-9]*) die "N must be a number of hosts, got '$n'" ;; esac
	if [ "$n" -lt 1 ] || [ "$n" -gt 253 ]; then die "N must be 1..253, got $n"; fi
	bps=$(rate_bytes "$rate")
	[ -n "$bps" ] || die "cannot read rate '$rate' (e.g. 1gbit, 10gbit, 500mbit)"
	if [ -n "$(our_namespaces)" ] || [ -e "$STATE" ]; then
		die "a rehearsal with prefix '$P' is up; run '$0 down' first"
	fi
	burst=$(burst_of "$bps")
	# shellcheck disable=SC2154
	trap 'rc=$?; if [ $rc -ne 0 ]; then echo "$ME: up failed; removing what it made" >&2; do_down; fi' EXIT
	trap 'exit 130' INT TERM
	mkdir -p "$STATE"
	ip netns add "$BR"
	ip -n "$BR" link set lo up
	ip -n "$BR" link add br0 type bridge
	ip -n "$BR" link set br0 up
	: >"$STATE/hostfile"
	i=0
	while [ "$i" -lt "$n" ]; do
		ns=$P$i
		ip netns add "$ns"
		ip -n "$ns" link set lo up
		# p<i> on the bridge side, eth0 inside the host
		ip -n "$BR" link add "p$i" type veth peer name eth0 netns "$ns"
		ip -n "$BR" link set "p$i" master br0 up
		ip -n "$ns" addr add "$NET.$((i + 1))/24" dev eth0
		ip -n "$ns" link set eth0 up
		# egress of eth0 is what the host sends, egress of p<i> what it receives
		tc -n "$ns" qdisc add dev eth0 root tbf rate "$rate" burst "$burst" latency 20ms
		tc -n "$BR" qdisc add dev "p$i" root tbf rate "$rate" burst "$burst" latency 20ms
		echo "$NET.$((i + 1)) slots=1" >>"$STATE/hostfile"
		i=$((i + 1))
	done
	# every host knows every host's name
	i=0
	while [ "$i" -lt "$n" ]; do
		mkdir -p "/etc/netns/$P$i"
		{
			echo "127.0.0.1 localhost"
			k=0
			while [ "$k" -lt "$n" ]; do
				echo "$NET.$((k + 1)) $P$k"
				k=$((k + 1))
			done
		} >"/etc/netns/$P$i/hosts"
		i=$((i + 1))
	done
	# The launch agent mpirun calls as `agent [options] HOST COMMAND...`:
	# it runs COMMAND inside the namespace that owns HOST.
	cat >"$STATE/agent" <<EOF
#!/bin/sh
# written by rehearse-cluster.sh up: host address -> its namespace
while [ \$# -gt 0 ]; do case \$1 in -*) shift ;; *) break ;; esac; done
host=\$1
shift
case \$host in
$NET.*) i=\$((\${host##*.} - 1)) ;;
*) echo "rehearse-cluster agent: unknown host '\$host'" >&2; exit 255 ;;
esac
if [ "\$i" -lt 0 ] || [ "\$i" -ge $n ]; then
	echo "rehearse-cluster agent: no host '\$host' (up $n)" >&2
	exit 255
fi
# its own host name too (a UTS namespace), as on separate machines
exec ip netns exec "$P\$i" unshare --uts /bin/sh -c "hostname $P\$i && \$*"
EOF
	chmod +x "$STATE/agent"
	echo "$n" >"$STATE/n"
	echo "$rate" >"$STATE/rate"
	# wait for the links to come up (bridge ports forward at once: no STP)
	i=0
	while [ "$i" -lt "$n" ]; do
		k=0
		until ip -n "$P$i" link show eth0 | grep -q 'state UP' &&
			ip -n "$BR" link show "p$i" | grep -q 'state UP'; do
			k=$((k + 1))
			[ "$k" -lt 50 ] || die "link of host $NET.$((i + 1)) did not come up"
			sleep 0.1
		done
		i=$((i + 1))
	done
	trap - EXIT INT TERM
	echo "$ME: up: $n hosts $NET.1..$NET.$n (namespaces ${P}0..$P$((n - 1))), links $rate each way"
}

need_up() {
	[ -f "$STATE/n" ] || die "no rehearsal is up (prefix '$P'); run '$0 up N RATE' first"
	n=$(cat "$STATE/n")
	rate=$(cat "$STATE/rate")
}

cmd_run() {
	need_up
	# mpirun options up to `--`, then the program
	opts=""
	np_given=0
	while [ $# -gt 0 ] && [ "$1" != "--" ]; do
		case $1 in -np | -n | --np | -c | --n) np_given=1 ;; esac
		opts="$opts $(quote "$1")"
		shift
	done
	[ $# -gt 0 ] || die "usage: run [MPIRUN-OPTIONS] -- PROGRAM [ARGS...]"
	shift
	[ $# -gt 0 ] || die "run: no program after '--'"
	[ "$np_given" -eq 1 ] || opts="$opts -np $n"
	root=""
	[ "$(id -u)" -ne 0 ] || root="--allow-run-as-root"
	eval "set -- $opts \"\$@\""
	# $root unquoted: empty or one word
	# shellcheck disable=SC2086,SC2016
	exec ip netns exec "${P}0" unshare --uts /bin/sh -c 'hostname "$0" && exec "$@"' "${P}0" \
		mpirun $root --oversubscribe \
		--hostfile "$STATE/hostfile" \
		--mca plm_rsh_agent "$STATE/agent" \
		--mca oob_tcp_if_include "$NET.0/24" \
		--mca btl_tcp_if_include "$NET.0/24" \
		--mca btl tcp,self --mca pml ob1 \
		"$@"
}

# impair HOST WHAT: host HOST's link (both directions) gets worse, or back
# to the plain RATE shaper with `off`
cmd_impair() {
	need_up
	[ $# -ge 2 ] || die "usage: impair HOST rate RATE | loss PCT | delay MS | cut | off"
	h=$1
	what=$2
	shift 2
	case $h in '' | *[!0-9]*) die "impair: no host '$h'" ;; esac
	[ "$h" -lt "$n" ] || die "impair: no host $h (up $n)"
	ns=$P$h
	case $what in
	rate)
		[ $# -eq 1 ] || die "usage: impair HOST rate RATE"
		bps=$(rate_bytes "$1")
		[ -n "$bps" ] || die "impair: cannot read rate '$1'"
		# a queue of 10 s at that rate: a slow link, not a lossy one
		b=$(burst_of "$bps")
		tc -n "$ns" qdisc replace dev eth0 root tbf rate "$1" burst "$b" latency 10s
		tc -n "$BR" qdisc replace dev "p$h" root tbf rate "$1" burst "$b" latency 10s
		echo "$ME: host $NET.$((h + 1)): link at $1"
		;;
	loss | delay)
		[ $# -eq 1 ] || die "usage: impair HOST $what PCT|MS"
		v=${1%%%}
		v=${v%ms}
		case $v in '' | *[!0-9]*) die "impair: $what wants a whole number, got '$1'" ;; esac
		if [ "$what" = loss ]; then arg=$v%; else arg=${v}ms; fi
		if tc -n "$ns" qdisc replace dev eth0 root netem "$what" "$arg" 2>/dev/null; then
			tc -n "$BR" qdisc replace dev "p$h" root netem "$what" "$arg"
			echo "$ME: host $NET.$((h + 1)): link through netem $what $arg"
		elif [ "$what" = loss ] && command -v nft >/dev/null 2>&1; then
			# no netem in this kernel: drop at random in the host's own firewall
			printf '%s\n' "table inet rehearse_impair {" \
				"chain out { type filter hook output priority 0; policy accept; numgen random mod 100 < $v drop; }" \
				"chain in { type filter hook input priority 0; policy accept; numgen random mod 100 < $v drop; }" \
				"}" | ip netns exec "$ns" nft -f - || die "impair: nft refused the loss rule"
			echo "$ME: host $NET.$((h + 1)): $v% of packets dropped each way (nft)"
		else
			if [ "$what" = loss ]; then need="tc netem (kernel CONFIG_NET_SCH_NETEM) or nft (package nftables)"; else need="tc netem (kernel CONFIG_NET_SCH_NETEM)"; fi
			echo "$ME: impair $what needs $need" >&2
			exit 77
		fi
		;;
	cut)
		# the host's port leaves the switch: both ends stay up, nothing arrives
		ip -n "$BR" link set "p$h" nomaster
		echo "$ME: host $NET.$((h + 1)): cut off (its link is up, its switch port forwards nothing)"
		;;
	off)
		ip netns exec "$ns" nft delete table inet rehearse_impair 2>/dev/null || true
		ip -n "$BR" link set "p$h" master br0
		b=$(burst_of "$(rate_bytes "$rate")")
		tc -n "$ns" qdisc replace dev eth0 root tbf rate "$rate" burst "$b" latency 20ms
		tc -n "$BR" qdisc replace dev "p$h" root tbf rate "$rate" burst "$b" latency 20ms
		echo "$ME: host $NET.$((h + 1)): link restored ($rate)"
		;;
	*) die "impair: unknown '$what' (rate, loss, delay, cut, off)" ;;
	esac
}

# sysctl KEY=VALUE: in every host's namespace
cmd_sysctl() {
	need_up
	[ $# -eq 1 ] || die "usage: sysctl KEY=VALUE (e.g. sysctl net.ipv4.tcp_retries2=5)"
	i=0
	while [ "$i" -lt "$n" ]; do
		ip netns exec "$P$i" sysctl -qw "$1" || die "sysctl: cannot set '$1' in $P$i"
		i=$((i + 1))
	done
	echo "$ME: $1 in hosts $NET.1..$NET.$n"
}

# quote WORD: WORD in single quotes, for eval
quote() {
	printf "'%s'" "$(printf '%s' "$1" | sed "s/'/'\\\\''/g")"
}

now_ns() { date +%s%N; }

cmd_speed() {
	need_up
	from=${1:-0}
	to=${2:-1}
	bps=$(rate_bytes "$rate")
	mb=${3:-$((2 * bps / 1000000))}
	[ "$mb" -ge 50 ] || mb=50
	for h in "$from" "$to"; do
		case $h in '' | *[!0-9]*) die "speed: no host '$h'" ;; esac
		[ "$h" -lt "$n" ] || die "speed: no host $h (up $n)"
	done
	[ "$from" != "$to" ] || die "speed: FROM and TO are the same host"
	command -v nc >/dev/null 2>&1 || die "speed: needs nc (package netcat-openbsd)"
	port=5201
	ip netns exec "$P$to" nc -l "$port" >/dev/null &
	lpid=$!
	trap 'kill $lpid 2>/dev/null || true' EXIT
	# wait until it listens
	k=0
	until ip netns exec "$P$to" ss -Hltn "sport = :$port" | grep -q .; do
		k=$((k + 1))
		[ "$k" -lt 50 ] || die "speed: nc did not start listening in $P$to"
		sleep 0.1
	done
	t0=$(now_ns)
	dd if=/dev/zero bs=1M count="$mb" 2>/dev/null |
		ip netns exec "$P$from" nc -N "$NET.$((to + 1))" "$port"
	wait "$lpid"
	t1=$(now_ns)
	trap - EXIT
	awk -v mb="$mb" -v ns=$((t1 - t0)) -v r="$rate" -v b="$bps" -v f="$from" -v t="$to" 'BEGIN {
		s = ns / 1e9; rate = mb * 1048576 / s
		printf "%s: %d MiB from host %d to host %d in %.2f s: %.1f MB/s (%.2f Gbit/s; link %s = %.1f MB/s)\n",
			"'"$ME"'", mb, f, t, s, rate / 1e6, rate * 8 / 1e9, r, b / 1e6 }'
}

cmd_stats() {
	need_up
	echo "host        sent_bytes   received_bytes  (since up, Ethernet frames incl. headers)"
	i=0
	while [ "$i" -lt "$n" ]; do
		s=$(tc -n "$P$i" -s qdisc show dev eth0 | awk '/Sent/ { print $2; exit }')
		r=$(tc -n "$BR" -s qdisc show dev "p$i" | awk '/Sent/ { print $2; exit }')
		printf "%-11s %12s %16s\n" "$NET.$((i + 1))" "$s" "$r"
		i=$((i + 1))
	done
}

[ $# -ge 1 ] || die "usage: $0 check | up N RATE | run [OPTS] -- PROGRAM... | speed [FROM TO [MB]] | stats | impair HOST WHAT... | sysctl KEY=VALUE | down"
sub=$1
shift
case $sub in
check) cmd_check "$@" ;;
up) cmd_up "$@" ;;
run) cmd_run "$@" ;;
speed) cmd_speed "$@" ;;
stats) cmd_stats ;;
impair) cmd_impair "$@" ;;
sysctl) cmd_sysctl "$@" ;;
down)
	do_down
	echo "$ME: down (prefix '$P')"
	;;
*) die "unknown command '$sub' (check, up, run, speed, stats, impair, sysctl, down)" ;;
esac
