#!/bin/sh
# python.sh -- the Python module (python/, built into $BUILD/python by make):
# pytest over python/tests with Debian's /usr/bin/python3 -- the codec (bit-exact
# round trips of every float32 pattern, error bounds, the sfp tool's bytes and
# values, exceptions), mutated containers fed to decode (test_fuzz.py), the
# DDP hook in 2-process Gloo jobs (lossless = DDP's all-reduce, bit for bit) and
# a hooked job on a real sfpd. Skips, saying why, where python3-pytest,
# python3-numpy or the built module are missing; the torch tests skip without
# python3-torch.
set -u
B=${BUILD:-build}
PY=${PYTHON:-/usr/bin/python3}
export BUILD=$B PYTHONPATH=$B/python SFP_BIN=$B/bin/sfp SFPD_BIN=$B/bin/sfpd
if ! "$PY" -c 'import pytest, numpy' 2>/dev/null; then
	echo "skip python.sh: $PY lacks pytest or numpy (deploy/install-deps.sh installs python3-pytest, python3-numpy)"
	exit 0
fi
if ! ls "$B"/python/sfp/_sfp*.so >/dev/null 2>&1; then
	echo "skip python.sh: no $B/python/sfp/_sfp*.so (make python; needs python3-dev)"
	exit 0
fi
# the sanitizer build's extension would need libasan loaded before the
# interpreter (and then checks all of torch): the suites there are the C ones
case $B in
*/san | */san/) echo "skip python.sh: not under the sanitizers ($B)"; exit 0 ;;
esac
# a hung Gloo rank must not hang make check
exec timeout -k 10 900 "$PY" -m pytest -q -p no:cacheprovider python/tests
