#!/usr/bin/env bash
# run-bench.sh BUILD_DIR: runs every benchmark binary; each prints its own figures.
# Then bench/vs-qemu.sh (against QEMU's migration to a file; installs QEMU when
# missing), unless SQUIB_BENCH_SKIP_QEMU=1.
set -euo pipefail
build=$1
shopt -s nullglob
for b in "$build"/bench_*; do
	[ -x "$b" ] || continue
	echo "== $(basename "$b")"
	"$b"
done
if [ "${SQUIB_BENCH_SKIP_QEMU:-0}" = 1 ]; then
	echo "== vs-qemu.sh skipped (SQUIB_BENCH_SKIP_QEMU=1)"
else
	echo "== vs-qemu.sh"
	"$(dirname "$0")/../bench/vs-qemu.sh" "$build"
fi
