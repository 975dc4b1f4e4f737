#!/usr/bin/env bash
# gen-fixtures.sh [BUILD_DIR]: regenerate the golden files in tests/fixtures/ (and the
# fuzz seeds copied from them) with a built tree (default: build). Run it after a
# deliberate format change, review `git diff --stat tests/fixtures fuzz/corpus`, commit.
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
build=$(cd "${1:-build}" && pwd)
fx="$root/tests/fixtures"
for prog in produce_demo_pair tests/squib-gen-fixtures squib-snapshot; do
	[ -x "$build/$prog" ] || { echo "gen-fixtures: $build/$prog is missing; build first" >&2; exit 1; }
done

"$build/produce_demo_pair" "$fx/demo"
"$build/tests/squib-gen-fixtures" "$fx"
# The expected `describe` text of demo.snap, with the path as given from that directory.
(cd "$fx" && "$build/squib-snapshot" describe demo.snap >demo.describe.txt)
echo "wrote $fx/demo.describe.txt"

# Fuzz seeds: the small fixtures as they are now, and a few damaged variants of demo.snap.
flip_byte() { # FILE OFFSET: invert every bit of one byte in place
	local v
	v=$(od -An -tu1 -j "$2" -N1 "$1")
	printf "$(printf '\\x%02x' $((v ^ 0xff)))" | dd of="$1" bs=1 seek="$2" conv=notrunc status=none
}
for target in fuzz_state_decode fuzz_describe; do
	c="$root/fuzz/corpus/$target"
	mkdir -p "$c"
	for f in demo.snap minimal.snap x86.snap; do
		cp "$fx/$f" "$c/fixture-$f"
	done
	head -c 32 "$fx/demo.snap" >"$c/demo-header-only"
	head -c 100 "$fx/demo.snap" >"$c/demo-truncated-100"
	cp "$fx/demo.snap" "$c/demo-crc-flipped" && flip_byte "$c/demo-crc-flipped" $(($(stat -c %s "$fx/demo.snap") - 1))
	cp "$fx/demo.snap" "$c/demo-magic-flipped" && flip_byte "$c/demo-magic-flipped" 0
	cp "$fx/demo.snap" "$c/demo-section-len" && flip_byte "$c/demo-section-len" 28
done
# The golden memory files seed the memory-file reader (1.0 full, 1.0 and 1.1 packed diffs).
for f in mem-full.mem mem-diff.mem mem-diff-packed.mem; do
	cp "$fx/$f" "$root/fuzz/corpus/fuzz_memfile_reader/fixture-$f"
	cp "$fx/$f" "$root/fuzz/corpus/fuzz_memfile_footer/fixture-$f"
done
echo "gen-fixtures: done; review with: git -C $root diff --stat tests/fixtures fuzz/corpus"
