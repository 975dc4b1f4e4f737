#!/usr/bin/env bash
# demo.sh BUILD_DIR (`make demo`).
#
# With /dev/kvm (without one: inside a TCG VM that has one, scripts/kvm-vm.sh): boot the counter guest (tests/guests/counter.S) on KVM, take a
# FULL snapshot while it runs, let it run, take a DIFF, SIGKILL the process,
# describe and verify the files, restore from the chain and watch the counters
# continue, then print the timings.
#
# Always (the part that needs no hypervisor): make a snapshot pair with the
# library, describe it for people and for tools, verify it, then damage a copy
# and show describe catching it; the time each step took is printed.
#
# KEEP=1 keeps the work directory (its path is printed at the end). The last
# line says what was skipped, if anything.
set -euo pipefail
build=$(cd "${1:-build}" && pwd)
cli="$build/squib-snapshot"
guest="$build/tests/guests/counter.bin"
for prog in "$cli" "$build/produce_demo_pair"; do
	[ -x "$prog" ] || [ "${SQUIB_DEMO_KVM_ONLY:-0}" = 1 ] ||
		{ echo "demo: $prog is missing; run 'make build' first" >&2; exit 1; }
done
work=$(mktemp -d "${TMPDIR:-/tmp}/squib-demo-XXXXXX")
run_pid=
skipped=()
cleanup() {
	if [ -n "$run_pid" ] && kill -0 "$run_pid" 2>/dev/null; then
		kill -KILL "$run_pid" 2>/dev/null || true
	fi
	[ "${KEEP:-0}" = 1 ] || rm -rf "$work"
}
trap cleanup EXIT
n=0
step() {
	n=$((n + 1))
	printf '\n== %d) %s\n' "$n" "$*"
}
die() {
	echo "demo: $*" >&2
	exit 1
}
now_us() { echo "${EPOCHREALTIME/./}"; } # bash 5; also where date has no %N (busybox)
# Run a command, then record "- LABEL: N.N ms" for the summary.
timings=()
timed() {
	local label=$1 t0 t1 rc=0
	shift
	t0=$(now_us)
	"$@" || rc=$?
	t1=$(now_us)
	timings+=("- $label: $(((t1 - t0) / 1000)).$((((t1 - t0) % 1000) / 100)) ms")
	return $rc
}
# The last line: OK, and what did not run.
finish() {
	[ "${KEEP:-0}" = 1 ] && echo "demo: KEEP=1: the files are kept in $work"
	if [ ${#skipped[@]} -eq 0 ]; then
		echo "demo: OK (nothing skipped)"
	else
		local IFS=';'
		echo "demo: OK; skipped:${skipped[*]/#/ }"
	fi
}
# The number after "vCPU I: <what> " in a block of output.
counter_of() { awk -v k="vCPU $2: $3 " 'index($0, k) == 1 { v = substr($0, length(k) + 1); sub(/[^0-9].*/, "", v); print v; exit }' <<<"$1"; }

kvm_demo() {
	local out="$work/run.out" t0 t1 i status full_part diff_part restored after
	local -a full_c diff_c

	cd "$work"
	step "boot the counter guest on KVM (2 vCPUs, 4 MiB) and save a FULL snapshot while it runs"
	echo "\$ squib-snapshot run $guest full.snap --diff diff.snap --reports 3 --hold &"
	echo "  (each vCPU counts in its own page and reports to an I/O port; the save pauses"
	echo "   the guest, writes full.snap + full.mem, and resumes it)"
	t0=$(now_us)
	"$cli" run "$guest" full.snap --diff diff.snap --reports 3 --hold >"$out" 2>"$work/run.err" &
	run_pid=$!
	for i in $(seq 300); do
		grep -q '^holding:' "$out" && break
		if ! kill -0 "$run_pid" 2>/dev/null; then
			cat "$out" "$work/run.err" >&2
			die "squib-snapshot run exited early"
		fi
		sleep 0.1
	done
	grep -q '^holding:' "$out" || die "squib-snapshot run did not save within 30 s"
	t1=$(now_us)
	full_part=$(sed -n '/^saved full.snap/,/^saved diff.snap/p' "$out" | grep -v '^saved diff.snap')
	diff_part=$(sed -n '/^saved diff.snap/,/^holding:/p' "$out" | grep -v '^holding:')
	echo "$full_part"

	step "let it run (3 more reports per vCPU), then save a DIFF: only the dirtied pages"
	echo "$diff_part"
	grep '^holding:' "$out"

	step "kill the VMM process with SIGKILL: no shutdown, no flush, nothing left running"
	echo "\$ kill -KILL $run_pid"
	kill -KILL "$run_pid"
	status=0
	wait "$run_pid" 2>/dev/null || status=$?
	run_pid=
	echo "the process is gone (exit status $status = 128 + SIGKILL); the files stay:"
	ls -l full.snap full.mem diff.snap diff.mem | awk '{ printf "  %10s  %s\n", $5, $NF }'
	echo "  (the .mem files are sparse: full.mem holds every page, diff.mem only the dirty ones)"

	step "describe both state files: the DIFF names the FULL's memory id as its parent"
	echo "\$ squib-snapshot describe full.snap"
	"$cli" describe full.snap | grep -E '^snapshot|vcpu_count|track_dirty|memory (kind|id)|present pages|crc_ok'
	echo "\$ squib-snapshot describe diff.snap"
	"$cli" describe diff.snap | grep -E '^snapshot|vcpu_count|track_dirty|memory (kind|id|parent id)|present pages|crc_ok'

	step "verify both pairs (CRCs, footers, manifests, state <-> memory binding)"
	echo "\$ squib-snapshot verify full.snap"
	"$cli" verify full.snap
	echo "\$ squib-snapshot verify diff.snap"
	"$cli" verify diff.snap
	echo "a DIFF alone is not a whole memory image: merge the chain into one FULL file"
	echo "and point a copy of its state at it, then verify that pair"
	cp diff.snap rebased.snap
	echo "\$ squib-snapshot rebase --base full.mem --diff diff.mem --out rebased.mem --state rebased.snap"
	"$cli" rebase --base full.mem --diff diff.mem --out rebased.mem --state rebased.snap
	echo "\$ squib-snapshot verify rebased.snap"
	"$cli" verify rebased.snap

	step "restore from the chain (full.mem, then diff.mem) into a fresh VM and let it run"
	echo "\$ squib-snapshot restore diff.snap --chain full.mem"
	restored=$("$cli" restore diff.snap --chain full.mem)
	echo "$restored"
	for i in 0 1; do
		full_c[i]=$(counter_of "$full_part" "$i" "saved counter")
		diff_c[i]=$(counter_of "$diff_part" "$i" "saved counter")
		[ "$(counter_of "$restored" "$i" counter)" = "${diff_c[i]}" ] ||
			die "vCPU $i restored with another counter than the DIFF saved (${diff_c[i]})"
		after=$(awk '/^resumed;/ { on = 1 } on' <<<"$restored")
		[ "$(counter_of "$after" "$i" counter)" -gt "${diff_c[i]}" ] ||
			die "vCPU $i did not count on after the restore"
		echo "vCPU $i: FULL ${full_c[i]} -> DIFF ${diff_c[i]} -> restored ${diff_c[i]} -> running again $(counter_of "$after" "$i" counter)"
	done
	echo "the same state from the rebased FULL file, mapped copy-on-write, not resumed:"
	echo "\$ squib-snapshot restore rebased.snap --mem-backend file --paused"
	"$cli" restore rebased.snap --mem-backend file --paused

	lazy_demo

	step "timings"
	[ "${SQUIB_DEMO_KVM_ONLY:-0}" = 1 ] &&
		echo "(nested-TCG figures, from inside kvm-vm.sh's VM: far slower than on hardware)"
	awk '/^saved / { sub(/^saved /, ""); print "- save " $0 }' "$out"
	echo "- restore from the chain (copy backend): $(grep -o 'in [0-9]* us' <<<"$restored" | head -1)"
	echo "- boot + FULL + run + DIFF, wall clock as the script saw it: $(((t1 - t0) / 1000)) ms"
	cd - >/dev/null
}

# Lazy restore: pages on first touch, from an external page-fault handler (squib-snapshot
# serve, Firecracker's Uffd handshake) reading the chain (full.mem under diff.mem), then
# the rebased pair from the in-process pager with a recorded working set prefetched.
# Fails the demo unless the guest counts on.
lazy_demo() {
	local served serve_pid faults1 faults2 out i

	step "lazy restore: guest pages on first touch, served by an external handler over Firecracker's Uffd protocol"
	echo "  (serve reads the chain itself: diff.mem over full.mem, each page from the newest layer holding it)"
	echo "\$ squib-snapshot serve --socket uffd.sock --state diff.snap --chain full.mem &"
	"$cli" serve --socket uffd.sock --state diff.snap --chain full.mem >serve.out 2>&1 &
	serve_pid=$!
	for i in $(seq 1 100); do grep -q "listening on" serve.out 2>/dev/null && break; sleep 0.05; done
	echo "\$ squib-snapshot restore diff.snap --uffd-sock uffd.sock"
	out=$("$cli" restore diff.snap --uffd-sock uffd.sock) || die "restore through serve failed"
	echo "$out"
	wait "$serve_pid" || die "serve failed: $(cat serve.out)"
	sed 's/^/  serve: /' serve.out
	grep -q "^resumed;" <<<"$out" || die "the guest restored through serve did not run"

	step "record the pages the guest faults in, then prefetch that working set on the next restore"
	echo "\$ squib-snapshot restore rebased.snap --mem-backend uffd --no-prewarm --record-ws ws.bin"
	out=$("$cli" restore rebased.snap --mem-backend uffd --no-prewarm --record-ws ws.bin) ||
		die "restore --record-ws failed"
	grep -E "^(restored|pager|recorded)" <<<"$out"
	faults1=$(sed -n 's/^pager: \([0-9]*\) faults.*/\1/p' <<<"$out")
	echo "\$ squib-snapshot restore rebased.snap --mem-backend uffd --no-prewarm --prefetch-ws ws.bin"
	out=$("$cli" restore rebased.snap --mem-backend uffd --no-prewarm --prefetch-ws ws.bin) ||
		die "restore --prefetch-ws failed"
	grep -E "^(restored|before|pager)" <<<"$out"
	faults2=$(sed -n 's/^pager: \([0-9]*\) faults.*/\1/p' <<<"$out")
	[ "$faults2" -lt "$faults1" ] || die "prefetching the working set did not cut the faults"
	echo "faults taken by the guest: $faults1 on demand -> $faults2 with the working set prefetched"
}

# Without /dev/kvm the KVM part runs inside a TCG VM that has one (scripts/kvm-vm.sh):
# this script again, with SQUIB_DEMO_KVM_ONLY=1, on Debian's own kernel and kvm_amd.
kvm_demo_in_vm() {
	local here
	here=$(cd "$(dirname "$0")" && pwd)
	echo "!!! NO USABLE $kvm ON THIS MACHINE: the KVM demo runs inside a QEMU TCG VM that emulates"
	echo "!!! AMD SVM, where Debian's own kernel and kvm_amd give a real /dev/kvm (scripts/kvm-vm.sh)."
	echo "!!! Slower than on hardware: each guest exit costs ~100 us there instead of ~1 us."
	"$here/kvm-vm.sh" --kernel 6.1 --env SQUIB_DEMO_KVM_ONLY=1 --add "$cli" --add "$build/tests/guests" \
		--add /bin/bash --add "$here/demo.sh" --timeout 600 "bash '$here/demo.sh' '$build'" ||
		die "the KVM demo inside the VM failed (exit $?)"
}

kvm=${SQUIB_DEMO_KVM_DEVICE:-/dev/kvm} # another path only to try the fallback
if [ "${SQUIB_DEMO_KVM_ONLY:-0}" = 1 ]; then # inside kvm-vm.sh's VM
	kvm_demo
	echo "demo: the KVM part passed (the library part runs outside this VM)"
	exit 0
elif [ ! -f "$guest" ]; then
	echo "!!! NO GUEST BINARY ($guest; it is built with the tests, SQUIB_TESTS=ON, and needs an assembler): skipping the KVM demo; running only the library demo !!!"
	skipped+=("the KVM demo (no guest binary: build with SQUIB_TESTS=ON and an assembler)")
elif [ ! -e "$kvm" ] || [ ! -r "$kvm" ] || [ ! -w "$kvm" ]; then
	echo "== the KVM demo: a real guest, snapshotted while it runs, killed and restored"
	kvm_demo_in_vm
	printf '\n== the library demo (no hypervisor needed)\n'
else
	echo "== the KVM demo: a real guest, snapshotted while it runs, killed and restored"
	kvm_demo
	printf '\n== the library demo (no hypervisor needed)\n'
fi

step "produce a demo snapshot pair with the library (examples/produce_demo_pair)"
timed "write the pair (produce_demo_pair)" "$build/produce_demo_pair" "$work/demo"

step "describe it: squib-snapshot describe $work/demo.snap"
timed "describe" "$cli" describe "$work/demo.snap" >"$work/describe.txt"
human=$(cat "$work/describe.txt")
echo "$human"

step "the same for tools: squib-snapshot describe --json"
timed "describe --json" "$cli" describe --json "$work/demo.snap"

step "verify it: squib-snapshot verify $work/demo.snap"
timed "verify" "$cli" verify "$work/demo.snap"

step "flip one byte in a copy and describe that"
cp "$work/demo.snap" "$work/damaged.snap"
cp "$work/demo.mem" "$work/damaged.mem"
offset=$(($(stat -c %s "$work/damaged.snap") / 2))
byte=$(od -An -tu1 -j "$offset" -N1 "$work/damaged.snap")
printf "$(printf '\\x%02x' $((byte ^ 0xff)))" | dd of="$work/damaged.snap" bs=1 seek="$offset" conv=notrunc status=none
echo "inverted byte $offset of damaged.snap"
status=0
timed "describe the damaged copy" "$cli" describe "$work/damaged.snap" || status=$?
echo "exit code: $status"
if [ "$status" -ne 2 ]; then
	echo "demo: expected exit code 2 for a damaged file, got $status" >&2
	exit 1
fi

step "summary"
echo "- the library wrote a $(stat -c %s "$work/demo.snap")-byte state file and a $(stat -c %s "$work/demo.mem")-byte memory file"
field() { awk -v k="  $1:" 'index($0, k) == 1 { print $2 }' <<<"$human"; }
echo "- describe reads it back: $(field vcpu_count) vCPUs, $(field mem_size_mib) MiB, $(field devices) devices, MMDS $(field mmds_present), CRC ok: $(field crc_ok) (exit 0)"
echo "- a single damaged byte is caught: crc_ok NO, exit code 2"
echo "timings of the library part (one process each, wall clock):"
printf '%s\n' "${timings[@]}"
finish
