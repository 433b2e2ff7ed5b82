#!/bin/sh
# layout.sh -- the library's dependency direction, read from the #include
# lines: common <- codec <- quant <- nn <- train, where train also uses
# transport, coord, data and stats, and data uses npy (users' .npy datasets). A module may include its own internal
# headers and the public headers (include/sfp/) of the modules below it,
# directly or through another public header; nothing else. In particular no
# file of lib/nn includes transport.h, the daemon protocol (coord.h, the
# protobuf code) or the trainer: the engine does not know the network. And
# sfp, sfp-worker and sfpd link none of the benchmark peers.
set -u
. "$(dirname "$0")/common.inc"
cd "$(dirname "$0")/../.." || exit 1

# headers FILE...: the sfp/ and module headers the files include, one a line
headers() { sed -n 's/^#include "\([^"]*\)".*/\1/p' "$@" 2>/dev/null | sort -u; }

# closure FILE...: the public headers the files reach through include/sfp/
closure() {
	todo=$(headers "$@" | grep '^sfp/')
	seen=""
	while [ -n "$todo" ]; do
		next=""
		for h in $todo; do
			case " $seen " in *" $h "*) continue ;; esac
			seen="$seen $h"
			[ -f "include/$h" ] && next="$next $(headers "include/$h" | grep '^sfp/' | tr '\n' ' ')"
		done
		todo=$next
	done
	echo "$seen" | tr ' ' '\n' | sed '/^$/d' | sort -u
}

# allowed MODULE: the public headers its files may reach
allowed() {
	case $1 in
	common) echo "common" ;;
	codec) echo "common codec" ;;
	quant) echo "common codec quant" ;;
	nn) echo "common codec quant config nn plugin" ;;
	data) echo "common config npy data" ;;
	config | npy | plot) echo "common $1" ;;
	transport) echo "common codec transport" ;;
	stats) echo "common stats" ;;
	coord) echo "common codec quant stats coord" ;;
	http) echo "common stats http" ;;
	train) echo "common codec quant config nn plugin data transport coord stats train" ;;
	*) echo "" ;;
	esac
}

for d in lib/*/; do
	mod=$(basename "$d")
	ok_set=$(allowed "$mod")
	if [ -z "$ok_set" ]; then
		bad "lib/$mod: a module this test does not know (add its place in the order)"
		continue
	fi
	files=$(ls "$d"*.c "$d"*.h 2>/dev/null)
	wrong=""
	for h in $(closure $files); do
		name=$(basename "$h" .h)
		case " $ok_set " in *" $name "*) ;; *) wrong="$wrong $h" ;; esac
	done
	# internal headers: only the module's own (lib/<mod>/...); the
	# protobuf code is the daemon protocol's
	for h in $(headers $files | grep -v '^sfp/'); do
		case $h in "$mod"/* | lib/"$mod"/*) ;;
		proto/*) [ "$mod" = coord ] || wrong="$wrong $h" ;;
		*) wrong="$wrong $h" ;;
		esac
	done
	if [ -z "$wrong" ]; then
		ok "lib/$mod reaches only: $ok_set"
	else
		bad "lib/$mod reaches$wrong (allowed: $ok_set)"
	fi
done

# the engine does not know the network, by name as the issue put it
if grep -n '^#include.*\(transport\.h\|coord\.h\|pb-c\.h\|train\.h\|train_internal\.h\)' \
	lib/nn/*.c lib/nn/*.h include/sfp/nn.h; then
	bad "lib/nn includes the transport, the daemon protocol or the trainer (above)"
else
	ok "no file of lib/nn includes transport.h, coord.h, protobuf or train.h"
fi

# the peers of the benchmarks (bench/ is its own binary, sfp-bench) are
# linked by no program a user runs
for b in sfp sfp-worker sfpd; do
	f=${BUILD:-build}/bin/$b
	if [ ! -x "$f" ]; then
		bad "$f is not built"
	elif ldd "$f" | grep -E 'lib(zstd|lz4|blosc|zfp|fpzip)\.'; then
		bad "$b links a benchmark peer (above)"
	else
		ok "$b links no benchmark peer (zstd, lz4, blosc, zfp, fpzip)"
	fi
done
exit $((fails > 0))
