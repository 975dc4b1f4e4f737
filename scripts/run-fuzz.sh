#!/usr/bin/env bash
# run-fuzz.sh BUILD_DIR SECONDS: runs every fuzz target for SECONDS over a copy of
# its committed corpus (fuzz/corpus/<target>/), so new inputs never dirty the tree.
set -euo pipefail
build=$1 secs=$2
root=$(cd "$(dirname "$0")/.." && pwd)
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
shopt -s nullglob
targets=("$build"/fuzz_*)
if [ ${#targets[@]} -eq 0 ]; then echo "run-fuzz: no fuzz targets built in $build" >&2; exit 1; fi
for t in "${targets[@]}"; do
	[ -x "$t" ] || continue
	name=$(basename "$t")
	mkdir -p "$work/$name" "$work/artifacts"
	[ -d "$root/fuzz/corpus/$name" ] && cp -r "$root/fuzz/corpus/$name/." "$work/$name/"
	echo "== fuzz $name for ${secs}s ($(ls "$work/$name" | wc -l) seed inputs)"
	if ! "$t" -max_total_time="$secs" -timeout=10 -rss_limit_mb=2048 -print_final_stats=1 \
		-artifact_prefix="$work/artifacts/" "$work/$name" >"$work/$name.log" 2>&1; then
		tail -n 60 "$work/$name.log"
		mkdir -p "$root/fuzz/artifacts" && cp "$work/artifacts/"* "$root/fuzz/artifacts/" 2>/dev/null || true
		echo "run-fuzz: $name FAILED (crash inputs copied to fuzz/artifacts/)" >&2
		exit 1
	fi
	grep -E '^stat::number_of_executed_units|^Done' "$work/$name.log" | tr '\n' ' '; echo
done
echo "run-fuzz: ${#targets[@]} targets clean"
