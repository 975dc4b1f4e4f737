#!/bin/sh
# install-consumer.sh BUILD_DIR SOURCE_DIR CC LIBDIR KVM(0|1) STATE
#
# `cmake --install` the build into a temporary DESTDIR, then build
# tests/abi/consumer/consumer.c against what was installed, the way a VMM
# author would: with pkg-config (squib-snapshot.pc, or squib-kvm.pc where the
# KVM backend exists) and with find_package(squib-snapshot) (the shared and
# the static imported targets). Each program must run and describe STATE; the
# shared ones must need the installed SONAMEs, the static ones none. The examples
# (examples/*.c but produce_demo_pair.c, a fixture generator) are built with
# pkg-config too and must run.
# CONSUMER_CFLAGS (environment): extra compiler and linker flags, the
# sanitizers of a sanitized build (whose libraries need their runtime).
set -eu
cflags=${CONSUMER_CFLAGS:-}
build=$1 src=$2 cc=$3 libdir=$4 kvm=$5 state=$6
# the ABI major (CMakeLists.txt SQUIB_ABI_VERSION) is the SONAME
so=$(sed -n 's/^set(SQUIB_ABI_VERSION \([0-9]*\)\..*/\1/p' "$src/CMakeLists.txt")
[ -n "$so" ] || { echo "install-consumer: no SQUIB_ABI_VERSION in $src/CMakeLists.txt" >&2; exit 1; }
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
root=$tmp/root
prefix=$root/usr/local
consumer=$src/tests/abi/consumer

fail() {
	echo "install-consumer: $*" >&2
	exit 1
}

DESTDIR=$root cmake --install "$build" --prefix /usr/local >"$tmp/install.log" ||
	fail "cmake --install failed: $(cat "$tmp/install.log")"

pc=squib-snapshot
[ "$kvm" = 1 ] && pc=squib-kvm
for f in include/squib/snapshot.h include/squib/api.h "$libdir/libsquib-snapshot.so.$so" \
	"$libdir/libsquib-snapshot.a" "$libdir/pkgconfig/$pc.pc" \
	"$libdir/cmake/squib-snapshot/squib-snapshotConfig.cmake" \
	"$libdir/cmake/squib-snapshot/squib-snapshotConfigVersion.cmake"; do
	[ -e "$prefix/$f" ] || fail "not installed: $f"
done
if [ "$kvm" = 1 ]; then
	for f in include/squib/kvm.h "$libdir/libsquib-kvm.so.$so" "$libdir/libsquib-kvm.a"; do
		[ -e "$prefix/$f" ] || fail "not installed: $f"
	done
else
	[ ! -e "$prefix/include/squib/kvm.h" ] || fail "squib/kvm.h installed without libsquib-kvm"
fi

# Run one consumer; $2: the SONAMEs it must need (none for a static one).
check() {
	out=$(LD_LIBRARY_PATH=$prefix/$libdir "$1" "$state") || fail "$1 failed: $out"
	echo "$out" | grep -q '^squib [0-9]' || fail "$1 printed no version: $out"
	echo "$out" | grep -q '"vcpu_count": 2' || fail "$1 printed no description: $out"
	needed=$(readelf -d "$1" | sed -n 's/.*Shared library: \[\(libsquib-[a-z]*\.so\.[0-9]*\)\].*/\1/p' |
		sort | tr '\n' ' ')
	[ "$needed" = "$2" ] || fail "$1 needs '$needed', expected '$2'"
	echo "install-consumer: $(basename "$1") ran (needs: ${needed:-no libsquib})"
}

expect="libsquib-snapshot.so.$so "
[ "$kvm" = 1 ] && expect="libsquib-kvm.so.$so libsquib-snapshot.so.$so "
defs=""
[ "$kvm" = 1 ] && defs=-DCONSUMER_KVM
# shellcheck disable=SC2046,SC2086 # pkg-config's output and cflags are lists of words
"$cc" -std=gnu11 -Wall -Werror $defs $cflags -o "$tmp/consumer_pc" "$consumer/consumer.c" \
	$(PKG_CONFIG_PATH=$prefix/$libdir/pkgconfig pkg-config --cflags --libs "$pc") ||
	fail "building with pkg-config $pc failed"
check "$tmp/consumer_pc" "$expect"

# The examples of docs/EMBEDDING.md, built the same way from their sources, must run.
examples="print_state toy_vmm track_writes uffd_handler errors"
for ex in $examples; do
	# shellcheck disable=SC2046,SC2086 # pkg-config's output and cflags are lists of words
	"$cc" -std=gnu11 -Wall -Werror $cflags -o "$tmp/$ex" "$src/examples/$ex.c" \
		$(PKG_CONFIG_PATH=$prefix/$libdir/pkgconfig pkg-config --cflags --libs "$pc") ||
		fail "building examples/$ex.c with pkg-config $pc failed"
done
out=$(LD_LIBRARY_PATH=$prefix/$libdir "$tmp/print_state" "$state") || fail "print_state failed: $out"
echo "$out" | grep -q 'vcpu_count: *2$' || fail "print_state printed no description: $out"
mkdir "$tmp/toy"
out=$(LD_LIBRARY_PATH=$prefix/$libdir "$tmp/toy_vmm" "$tmp/toy" 2>&1) || fail "toy_vmm failed: $out"
for ex in track_writes uffd_handler; do
	out=$(LD_LIBRARY_PATH=$prefix/$libdir "$tmp/$ex" 2>&1) || fail "$ex failed: $out"
done
out=$(LD_LIBRARY_PATH=$prefix/$libdir "$tmp/errors" "$state" 2>&1) || fail "errors failed: $out"
echo "install-consumer: examples $examples ran"

cmake -S "$consumer" -B "$tmp/cmake" -DCMAKE_C_COMPILER="$cc" -DCMAKE_PREFIX_PATH="$prefix" \
	-DCMAKE_C_FLAGS="$cflags" -DCMAKE_EXE_LINKER_FLAGS="$cflags" \
	>"$tmp/cmake.log" 2>&1 || fail "find_package: $(cat "$tmp/cmake.log")"
cmake --build "$tmp/cmake" >"$tmp/build.log" 2>&1 || fail "building: $(cat "$tmp/build.log")"
check "$tmp/cmake/consumer_shared" "$expect"
check "$tmp/cmake/consumer_static" ""
