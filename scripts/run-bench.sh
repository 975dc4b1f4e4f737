#!/usr/bin/env bash
# run-bench.sh BUILD_DIR: runs every benchmark binary; each prints its own figures.
# Without /dev/kvm the KVM benchmarks (bench_kvm, bench_restore, bench_lazy, bench_live_kvm) run
# inside a QEMU TCG VM with emulated AMD SVM, where Debian's kvm_amd gives a real
# /dev/kvm (scripts/kvm-vm.sh): nested-TCG figures, labelled so.
# Then bench/vs-qemu.sh (against QEMU's migration to a file; installs QEMU when
# missing), unless SQUIB_BENCH_SKIP_QEMU=1.
set -euo pipefail
build=$(cd "$1" && pwd)
here=$(cd "$(dirname "$0")" && pwd)
kvm_benches=(bench_kvm bench_restore bench_lazy bench_live_kvm)
# Run "$@" against a throwaway Ceph RGW (as make test-store does); without Ceph, as it is.
run_with_rgw() {
	local run rc=0
	run=$(mktemp -d /tmp/sqrgw-bench.XXXXXX)
	if CEPH_RUN_DIR=$run "$here/ceph-rgw-start.sh" >/dev/null 2>&1; then
		# shellcheck disable=SC1091
		(. "$run/env.sh" && "$@") || rc=$?
	else
		echo "   (Ceph RGW did not start: from a directory store)"
		"$@" || rc=$?
	fi
	CEPH_RUN_DIR=$run CEPH_WIPE=1 "$here/ceph-rgw-stop.sh" >/dev/null 2>&1 || true
	rm -rf "$run"
	return "$rc"
}
in_vm=()
shopt -s nullglob
for b in "$build"/bench_*; do
	[ -x "$b" ] || continue
	name=$(basename "$b")
	if [ ! -e /dev/kvm ] && [[ " ${kvm_benches[*]} " == *" $name "* ]]; then
		in_vm+=("$b")
		continue
	fi
	echo "== $name"
	if [ "$name" = bench_store ] || [ "$name" = bench_store_lazy ]; then
		if [ -n "${SQUIB_TEST_S3_URL:-}" ]; then "$b"; else run_with_rgw "$b"; fi
	else
		"$b"
	fi
done
if [ ${#in_vm[@]} -gt 0 ]; then
	echo "== ${in_vm[*]##*/}: NO /dev/kvm HERE, so inside a QEMU TCG VM with emulated AMD SVM"
	echo "   (Debian 12's 6.1 kernel and kvm_amd). NESTED-TCG FIGURES: every guest exit costs"
	echo "   ~50-120 us there (~1-2 us on hardware) and the VMM's own code runs at TCG speed;"
	echo "   compare them with each other, never with hardware figures. Takes ~10 minutes."
	"$here/kvm-vm.sh" --kernel 6.1 --mem 4096 --timeout 3000 --add "$build/tests/guests" \
		--env SQUIB_BENCH_DIR=/var/tmp --env "SQUIB_GUESTS=$build/tests/guests" \
		"mkdir -p /var/tmp" "${in_vm[@]}"
fi
if [ "${SQUIB_BENCH_SKIP_QEMU:-0}" = 1 ]; then
	echo "== vs-qemu.sh skipped (SQUIB_BENCH_SKIP_QEMU=1)"
else
	echo "== vs-qemu.sh"
	"$here/../bench/vs-qemu.sh" "$build"
fi
