#!/usr/bin/env bash
# run-bench.sh BUILD_DIR: runs every benchmark binary; each prints its own figures.
set -euo pipefail
build=$1
shopt -s nullglob
for b in "$build"/bench_*; do
	[ -x "$b" ] || continue
	echo "== $(basename "$b")"
	"$b"
done
