#!/bin/sh
# fortunes.sh -- the English text of Debian's `fortunes` package as byte-level
# tokens for deploy/examples/fortunes-gpt.yaml: every text file of its folder
# (regular files, not the strfile *.dat indexes nor the *.u8 links) in sorted
# name order, concatenated by `sfp dataset text`, the last 10% held out.
#
#   tools/fortunes.sh [OUT_DIR]     (default build/fortunes; BUILD as make's)
set -eu
cd "$(dirname "$0")/.."
OUT=${1:-build/fortunes}
DIR=/usr/share/games/fortunes
SFP=${BUILD:-build}/bin/sfp
if [ ! -d "$DIR" ]; then
	echo "fortunes.sh: $DIR is missing: install Debian's fortunes package (deploy/install-deps.sh does)" >&2
	exit 1
fi
files=$(find "$DIR" -maxdepth 1 -type f ! -name '*.dat' | LC_ALL=C sort)
# shellcheck disable=SC2086 # one file name a word: the package's names have no spaces
"$SFP" dataset text $files --out "$OUT" --val-fraction 0.1
