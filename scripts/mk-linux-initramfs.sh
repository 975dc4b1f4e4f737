#!/bin/sh
# usage: mk-linux-initramfs.sh INIT OUT.cpio.gz
# The initramfs of the Linux test guest: a static busybox and INIT as /init,
# as a gzip'd newc cpio archive (no device nodes: INIT mounts devtmpfs). Needs
# busybox-static and cpio (scripts/install-deps.sh installs both); no network.
set -eu
INIT=${1:?INIT}
OUT=${2:?OUT}
BUSYBOX=${BUSYBOX:-/bin/busybox}
if [ ! -x "$BUSYBOX" ] || readelf -l "$BUSYBOX" 2>/dev/null | grep -q INTERP; then
	echo "mk-linux-initramfs: $BUSYBOX is not a static busybox (install busybox-static)" >&2
	exit 1
fi
ROOT=$(mktemp -d "${TMPDIR:-/tmp}/squib-initramfs.XXXXXX")
trap 'rm -rf "$ROOT"' EXIT
mkdir -p "$ROOT/bin" "$ROOT/dev" "$ROOT/proc" "$ROOT/sys" "$ROOT/tmp"
cp "$BUSYBOX" "$ROOT/bin/busybox"
cp "$INIT" "$ROOT/init"
chmod 755 "$ROOT/init" "$ROOT/bin/busybox"
(cd "$ROOT" && find . | LC_ALL=C sort | cpio -o -H newc --quiet -R 0:0) | gzip -9n >"$OUT.tmp"
mv "$OUT.tmp" "$OUT"
