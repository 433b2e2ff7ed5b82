#!/bin/sh
# install-deps.sh -- install the Debian 12 packages sfp needs to build, test,
# run its demo and benchmark. Idempotent: it runs `apt-get update` once (only
# when something is missing), installs only what is missing and says what.
# As root it installs; as another user it prints the sudo line to run.
set -eu

PKGS="
build-essential
make
pkg-config
clang
libclang-rt-14-dev
zlib1g-dev
libcunit1-dev
dataset-fashion-mnist
libzstd-dev
liblz4-dev
libblosc-dev
libzfp-dev
libfpzip-dev
python3
python3-dev
python3-numpy
python3-pytest
python3-torch
libyaml-dev
openmpi-bin
libopenmpi-dev
libnng-dev
protobuf-c-compiler
libprotobuf-c-dev
libuv1-dev
libhttp-parser-dev
xxd
netcat-openbsd
curl
prometheus
chromium
slurmctld
slurmd
slurm-client
munge
fortunes
iproute2
nftables
"
# python3-dev, -numpy, -pytest, -torch: the Python module (python/, its C
# extension built against python3-dev) and its tests in `make check`, the DDP
# hook's among them (torch is also the PyTorch peer of `make bench`).
# fortunes: the English text the byte-level GPT example trains on
# (deploy/examples/fortunes-gpt.yaml, tools/fortunes.sh).
# iproute2 and nftables: the fault suite's rehearsed links (tests/faults/link.sh;
# nftables drops packets where the kernel has no netem).
# slurmctld, slurmd, slurm-client and munge: tests/system/slurm.sh runs the sbatch
# templates of deploy/slurm/ on a one-node cluster of its own
# (deploy/slurm/local-cluster.sh: own munged, config, ports, in a scratch
# folder); the packages' system services are not used. On a machine with
# systemd that does not run Slurm: systemctl disable --now slurmctld slurmd munge

# sfpd's live page embeds uPlot from npm at build time. Any npm will do: a
# machine with Node.js from elsewhere already has one (and Debian's npm
# package would conflict with it); otherwise Debian's.
if ! command -v npm >/dev/null 2>&1; then
	PKGS="$PKGS npm"
fi

# `--bench` adds what only the benchmarks run: PyTorch (large) for `make
# bench` and `make bench-dist`, wrk and GNU time for `make bench-daemon`.
if [ "${1:-}" = "--bench" ]; then
	PKGS="$PKGS python3-torch wrk time"
fi

missing=""
for p in $PKGS; do
	if ! dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q 'install ok installed'; then
		missing="$missing $p"
	fi
done

if [ -z "$missing" ]; then
	echo "install-deps: all $(echo $PKGS | wc -w) packages present"
	exit 0
fi

echo "install-deps: missing:$missing"
if [ "$(id -u)" -ne 0 ]; then
	echo "install-deps: not root; run:"
	echo "  sudo apt-get update && sudo apt-get install -y$missing"
	exit 1
fi
export DEBIAN_FRONTEND=noninteractive
apt-get update -q
# shellcheck disable=SC2086
apt-get install -y -q --no-install-recommends $missing
echo "install-deps: installed:$missing"
