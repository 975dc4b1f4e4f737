#!/bin/sh
# check-exports.sh CC NM INCLUDE_DIR LIBRARY HEADER...
#
# The library (a .so: its dynamic symbol table; a .a: its global definitions)
# must define exactly the functions the given public headers declare: nothing
# undeclared (an internal function leaking into the ABI, or into a static
# link's namespace) and nothing declared missing (a prototype without
# SQUIB_API). The declarations come from the compiler itself: GCC's -aux-info
# lists every prototype of a translation unit with the file and line it came
# from, so macros, line breaks and comments need no parser of ours.
set -eu
cc=$1 nm=$2 inc=$3 lib=$4
shift 4
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT

for h in "$@"; do
	printf '#include <squib/%s>\n' "$h"
done >"$tmp/all.c"
"$cc" -std=gnu11 -D_GNU_SOURCE -I"$inc" -fsyntax-only -aux-info "$tmp/aux" "$tmp/all.c"
for h in "$@"; do
	# /* .../include/squib/state.h:123:NC */ extern int squib_state_init (struct ...);
	grep -F "/squib/$h:" "$tmp/aux" | sed -n 's/^.*\*\/ extern [^(]*[ *]\([A-Za-z_][A-Za-z0-9_]*\) (.*$/\1/p'
done | sort -u >"$tmp/declared"

case $lib in
*.a) "$nm" -g --defined-only "$lib" 2>/dev/null | awk 'NF == 3 { print $3 }' ;;
*) "$nm" -D --defined-only "$lib" | awk 'NF == 3 && $2 != "A" { sub(/@.*/, "", $3); print $3 }' ;;
esac | sort -u >"$tmp/defined"

status=0
if [ ! -s "$tmp/declared" ]; then
	echo "check-exports: no declarations found in $*" >&2
	exit 1
fi
comm -13 "$tmp/declared" "$tmp/defined" >"$tmp/extra"
comm -23 "$tmp/declared" "$tmp/defined" >"$tmp/missing"
if [ -s "$tmp/extra" ]; then
	echo "check-exports: $lib defines $(wc -l <"$tmp/extra") symbol(s) no public header declares:" >&2
	sed 's/^/  /' "$tmp/extra" >&2
	status=1
fi
if [ -s "$tmp/missing" ]; then
	echo "check-exports: $lib lacks $(wc -l <"$tmp/missing") declared function(s) (SQUIB_API missing?):" >&2
	sed 's/^/  /' "$tmp/missing" >&2
	status=1
fi
[ $status -eq 0 ] && echo "check-exports: $(basename "$lib"): $(wc -l <"$tmp/defined") symbols, each declared in $*"
exit $status
