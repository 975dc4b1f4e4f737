#!/usr/bin/env bash
# test-store.sh BUILD_DIR: the snapshot store's tests against a real S3 server - a throwaway
# Ceph RADOS Gateway (scripts/ceph-rgw-start.sh: 1 mon, 1 memstore OSD, radosgw on 127.0.0.1),
# stopped and wiped by a trap however the tests end.
set -euo pipefail
build=$(cd "${1:-build}" && pwd)
root=$(cd "$(dirname "$0")/.." && pwd)
run=$(mktemp -d /tmp/sqrgw.XXXXXX)
t0=${EPOCHREALTIME/[.,]/}
stop() { CEPH_RUN_DIR=$run CEPH_WIPE=1 "$root/scripts/ceph-rgw-stop.sh" 2>/dev/null || true; rm -rf "$run"; }
trap stop EXIT
CEPH_RUN_DIR=$run "$root/scripts/ceph-rgw-start.sh" >/dev/null
# shellcheck disable=SC1091
. "$run/env.sh"
t1=${EPOCHREALTIME/[.,]/}
for t in test_store test_store_save test_store_source; do
	SQUIB_CLI=$build/squib-snapshot SQUIB_FIXTURES=$root/tests/fixtures SQUIB_SOURCE_DIR=$root \
		SQUIB_BUILD_DIR=$build "$build/tests/$t"
done
t2=${EPOCHREALTIME/[.,]/}
stop
trap - EXIT
t3=${EPOCHREALTIME/[.,]/}
printf 'test-store: Ceph RGW ready in %d.%01d s, tests %d.%01d s, stop %d.%01d s\n' \
	$(((t1 - t0) / 1000000)) $(((t1 - t0) / 100000 % 10)) $(((t2 - t1) / 1000000)) \
	$(((t2 - t1) / 100000 % 10)) $(((t3 - t2) / 1000000)) $(((t3 - t2) / 100000 % 10))
