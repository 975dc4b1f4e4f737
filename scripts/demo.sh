#!/usr/bin/env bash
# demo.sh BUILD_DIR (`make demo`): make a snapshot pair with the library, describe it
# for people and for tools, then damage a copy and show describe catching it.
set -euo pipefail
build=$(cd "${1:-build}" && pwd)
cli="$build/squib-snapshot"
for prog in "$cli" "$build/produce_demo_pair"; do
	[ -x "$prog" ] || { echo "demo: $prog is missing; run 'make build' first" >&2; exit 1; }
done
work=$(mktemp -d "${TMPDIR:-/tmp}/squib-demo-XXXXXX")
trap 'rm -rf "$work"' EXIT
step() { printf '\n== %s\n' "$*"; }

step "1) produce a demo snapshot pair with the library (examples/produce_demo_pair)"
"$build/produce_demo_pair" "$work/demo"

step "2) describe it: squib-snapshot describe $work/demo.snap"
human=$("$cli" describe "$work/demo.snap")
echo "$human"

step "3) the same for tools: squib-snapshot describe --json"
"$cli" describe --json "$work/demo.snap"

step "4) flip one byte in a copy and describe that"
cp "$work/demo.snap" "$work/damaged.snap"
cp "$work/demo.mem" "$work/damaged.mem"
offset=$(($(stat -c %s "$work/damaged.snap") / 2))
byte=$(od -An -tu1 -j "$offset" -N1 "$work/damaged.snap")
printf "$(printf '\\x%02x' $((byte ^ 0xff)))" | dd of="$work/damaged.snap" bs=1 seek="$offset" conv=notrunc status=none
echo "inverted byte $offset of damaged.snap"
status=0
"$cli" describe "$work/damaged.snap" || status=$?
echo "exit code: $status"
if [ "$status" -ne 2 ]; then
	echo "demo: expected exit code 2 for a damaged file, got $status" >&2
	exit 1
fi

step "5) summary"
echo "- the library wrote a $(stat -c %s "$work/demo.snap")-byte state file and a $(stat -c %s "$work/demo.mem")-byte memory file"
field() { awk -v k="  $1:" 'index($0, k) == 1 { print $2 }' <<<"$human"; }
echo "- describe reads it back: $(field vcpu_count) vCPUs, $(field mem_size_mib) MiB, $(field devices) devices, MMDS $(field mmds_present), CRC ok: $(field crc_ok) (exit 0)"
echo "- a single damaged byte is caught: crc_ok NO, exit code 2"
echo "demo: OK"
