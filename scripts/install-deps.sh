#!/usr/bin/env bash
# Installs the Debian packages the build, tests, fuzzing and benchmarks need,
# only when one is missing (so a warm machine pays nothing).
set -euo pipefail
pkgs=(build-essential cmake pkg-config clang libclang-rt-14-dev libcmocka-dev libjansson-dev
      strace e2fsprogs busybox-static cpio linux-image-cloud-amd64 man-db groff-base
      libcurl4-openssl-dev libzstd-dev libssl-dev
      ceph-mon ceph-osd radosgw ceph-common uuid-runtime curl)
# The arm64 cross build of the core (make test-arm64): the cross compiler, qemu-user and the
# arm64 -dev packages through multiarch.
arm64=(gcc-aarch64-linux-gnu libc6-dev-arm64-cross qemu-user-static libcmocka-dev:arm64
       libjansson-dev:arm64 libcurl4-openssl-dev:arm64 libzstd-dev:arm64 libssl-dev:arm64)
add_arch=false
if [ "$(dpkg --print-architecture)" = amd64 ]; then
	pkgs+=("${arm64[@]}")
	dpkg --print-foreign-architectures | grep -qx arm64 || add_arch=true
fi
# One dpkg-query for the common case, everything present; per package only when not.
ok=$(dpkg-query -W -f='${Status}\n' "${pkgs[@]}" 2>/dev/null | grep -c 'install ok installed' || true)
[ "$ok" -eq ${#pkgs[@]} ] && ! $add_arch && exit 0
missing=()
for p in "${pkgs[@]}"; do
	dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q 'install ok installed' || missing+=("$p")
done
[ ${#missing[@]} -eq 0 ] && exit 0
echo "install-deps: installing ${missing[*]}"
SUDO=""
[ "$(id -u)" -ne 0 ] && SUDO=sudo
export DEBIAN_FRONTEND=noninteractive
if $add_arch; then
	$SUDO dpkg --add-architecture arm64
fi
$SUDO apt-get update -qq
$SUDO apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
