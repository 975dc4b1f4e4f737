#!/usr/bin/env bash
# test-kvm-vm.sh BUILD_DIR [KERNEL...] (`make test-kvm-vm`, part of `make test`).
#
# The KVM test programs of BUILD_DIR (ctest labels kvm and linux) inside a QEMU TCG VM
# with a real KVM (scripts/kvm-vm.sh), once per kernel (default: Debian 12's
# 6.1 and 6.12 with nested paging, and 6.12-shadow: the same KVM without the
# CPU's npt, so kvm_amd uses shadow paging), side by side (each VM is one host
# thread). Runs whether or not this machine has /dev/kvm: the host's own KVM,
# when there is one, runs the same programs in `make test-normal`. Fails if
# any run fails.
set -euo pipefail
build=$(cd "${1:?usage: test-kvm-vm.sh BUILD_DIR [KERNEL...]}" && pwd)
shift
kernels=("$@")
[ ${#kernels[@]} -gt 0 ] || kernels=(6.1 6.12 6.12-shadow)
# KERNEL[-shadow]: kvm-vm.sh's options for one run.
vm_args() {
	case "$1" in
	*-shadow) echo "--kernel ${1%-shadow} --cpu EPYC,+svm,-npt" ;;
	*) echo "--kernel $1" ;;
	esac
}
here=$(cd "$(dirname "$0")" && pwd)
logs=$(mktemp -d "${TMPDIR:-/tmp}/test-kvm-vm-XXXXXX")
trap 'rm -rf "$logs"' EXIT
if [ -e /dev/kvm ]; then
	echo "test-kvm-vm: this machine has /dev/kvm (make test-normal used it); the VM runs add Debian's kvm_amd ${kernels[*]}"
else
	echo "test-kvm-vm: no /dev/kvm here: the KVM tests run inside a TCG VM with emulated AMD SVM, under Linux ${kernels[*]}"
fi
for k in "${kernels[@]}"; do # packages and kernels fetched before the parallel runs
	# shellcheck disable=SC2046 # vm_args gives words
	"$here/kvm-vm.sh" $(vm_args "$k") --prepare
done
# A healthy VM takes 2-3 minutes; a nested-TCG VM now and then stalls for good (its QEMU
# idle, no guest timer firing; cause unknown, docs/DESIGN.md §11): kvm-vm.sh sees it after
# 180 s of silence (or the VM hits this limit), prints what it found, and it runs once more.
vm_timeout=${SQUIB_KVM_VM_TIMEOUT:-480}
pids=()
for k in "${kernels[@]}"; do
	# The Linux guest (label linux) in the same VM, after the kvm label (one VM boot per kernel);
	# SQUIB_KVM_VM_LINUX=0 leaves it out.
	linux=(--ctest "$build" linux)
	[ "${SQUIB_KVM_VM_LINUX:-1}" = 1 ] || linux=()
	# shellcheck disable=SC2046
	"$here/kvm-vm.sh" $(vm_args "$k") --timeout "$vm_timeout" --ctest "$build" kvm "${linux[@]}" >"$logs/$k.log" 2>&1 </dev/null &
	pids+=($!)
done
status=0
for i in "${!kernels[@]}"; do
	rc=0
	wait "${pids[i]}" || rc=$?
	if [ "$rc" -eq 125 ]; then # stalled or at its time limit: see docs/DESIGN.md §11
		echo "==== test-kvm-vm: kernel ${kernels[i]}: !!! THE VM STALLED (or hit its ${vm_timeout}s limit); its log:"
		cat "$logs/${kernels[i]}.log"
		echo "==== test-kvm-vm: kernel ${kernels[i]}: !!! RUNNING IT ONCE MORE"
		rc=0
		# shellcheck disable=SC2046
		"$here/kvm-vm.sh" $(vm_args "${kernels[i]}") --timeout "$vm_timeout" --ctest "$build" kvm "${linux[@]}" \
			>"$logs/${kernels[i]}.log" 2>&1 </dev/null || rc=$?
	fi
	echo "==== test-kvm-vm: kernel ${kernels[i]}: exit $rc"
	cat "$logs/${kernels[i]}.log"
	[ "$rc" -eq 0 ] || status=1
done
for k in "${kernels[@]}"; do grep -E '^kvm-vm: (====|host preparation|  (ok|FAIL)|result)' "$logs/$k.log" || true; done
[ "$status" -eq 0 ] && echo "test-kvm-vm: all passed under ${kernels[*]}" || echo "test-kvm-vm: FAILED"
exit "$status"
