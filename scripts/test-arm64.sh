#!/usr/bin/env bash
# test-arm64.sh [BUILD_DIR] (`make test-arm64`, part of `make test`; default build-arm64).
#
# The portable core on arm64: cross-built with Debian's gcc-aarch64-linux-gnu
# against the arm64 -dev packages of multiarch (cmake/aarch64-linux-gnu.cmake;
# no src/kvm, no CLI), and its test programs run under qemu-user through
# binfmt_misc, so that a test which executes a program it built (the demo pair
# generator, a child re-executing itself) runs it under qemu too. userfaultfd
# and PAGEMAP_SCAN do not exist under qemu-user: those tests skip with one loud
# line each, listed at the end. scripts/install-deps.sh installs the packages.
# Environment: JOBS (parallel builds and tests), ARM64_CTEST_ARGS (below).
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
src=$(cd "$here/.." && pwd)
build=${1:-build-arm64}
jobs=${JOBS:-$(nproc)}
start=$(date +%s)

# binfmt_misc: the kernel hands arm64 ELF files to qemu-aarch64-static (the
# Debian package's own registration, flag F: the interpreter is opened now).
binfmt=/proc/sys/fs/binfmt_misc
if [ ! -e "$binfmt/qemu-aarch64" ]; then
	SUDO=""
	[ "$(id -u)" -ne 0 ] && SUDO=sudo
	[ -e "$binfmt/register" ] || $SUDO mount -t binfmt_misc binfmt_misc "$binfmt" || true
	if [ -e "$binfmt/register" ] && [ -e /usr/lib/binfmt.d/qemu-aarch64.conf ]; then
		$SUDO sh -c "cat /usr/lib/binfmt.d/qemu-aarch64.conf > $binfmt/register" || true
	fi
fi
if ! grep -q '^enabled' "$binfmt/qemu-aarch64" 2>/dev/null; then
	echo "test-arm64: qemu-aarch64 is not registered with binfmt_misc (needs root or a privileged" \
		"container); the tests that run a program they built cannot run" >&2
	exit 1
fi

if [ ! -f "$build/CMakeCache.txt" ]; then
	cmake -S "$src" -B "$build" -DCMAKE_TOOLCHAIN_FILE="$src/cmake/aarch64-linux-gnu.cmake" \
		-DSQUIB_BENCH=OFF >/dev/null
fi
cmake --build "$build" -j"$jobs" >"$build/build.log" 2>&1 || {
	tail -40 "$build/build.log"
	exit 1
}
built=$(date +%s)

log=$build/ctest-arm64.log
status=0
# ARM64_CTEST_ARGS: more ctest arguments, e.g. '-E test_crash' (the crash matrix forks a
# child per I/O step, slow under emulation: most of this run's time).
# shellcheck disable=SC2086
(cd "$build" && ctest -j"$jobs" -V --timeout 900 ${ARM64_CTEST_ARGS:-}) >"$log" 2>&1 || status=$?
if [ $status -ne 0 ]; then
	grep -E '^[0-9]+: \[  (ERROR|FAILED) |\*\*\*Failed|Timeout' "$log" | head -40
	echo "test-arm64: FAILED (full log: $log)"
	exit $status
fi
tests=$(grep -cE 'Test +#[0-9]+: .* Passed' "$log" || true)
cases=$(grep -cE '^[0-9]+: \[       OK \]' "$log" || true)
# The tests' own loud lines (two styles), and the cases cmocka counted as skipped (each
# name is listed twice: when it skips and in the program's summary).
skips=$(grep -E '\*\*\* SKIP|!!!!! SKIPPED' "$log" | sed 's/^[0-9]*: //' | sort | uniq -c || true)
nskip=$(grep -E '^[0-9]+: \[  SKIPPED \] test_' "$log" | sort -u | wc -l)
end=$(date +%s)
echo "test-arm64: $tests test programs passed under qemu-user ($cases cases passed, $nskip skipped);" \
	"build $((built - start)) s, tests $((end - built)) s"
[ -z "$skips" ] || echo "test-arm64: the skip lines (what does not exist under qemu-user or without the KVM backend):"
[ -z "$skips" ] || echo "$skips"
