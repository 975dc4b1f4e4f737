#!/usr/bin/env bash
# ceph-rgw-start.sh - throwaway single-node Ceph cluster (1 mon, 1 osd, optional mgr, radosgw)
# for the snapshot store's tests (`make test-store`). Everything lives under $CEPH_RUN_DIR and
# listens on 127.0.0.1 only. Adapted from ../shared/reference/ceph-rgw/start-ceph.sh, with:
#   - a fresh short run dir (mktemp) and free ports by default, so parallel runs do not collide
#   - daemons' liveness read from /proc/PID/stat (kill -0 calls a zombie alive for ~2 s)
#   - no bc (timing from $EPOCHREALTIME)
#   - the test bucket created and an S3 PUT+GET checked (SigV4, UNSIGNED-PAYLOAD) before "ready"
#   - env.sh exports what the AWS tools and tests read: AWS_ENDPOINT_URL, AWS_REGION, the keys,
#     SQUIB_TEST_S3_URL
#   - memstore sized by CEPH_MEMSTORE_BYTES (default 2 GiB; a full memstore blocks writes)
#
# Environment knobs (all optional):
#   CEPH_RUN_DIR   run dir                       (default /tmp/ceph-run)
#   CEPH_FRESH     1 = wipe + create new cluster; 0 = restart the cluster already in
#                  CEPH_RUN_DIR (created by an earlier run)      (default 1)
#   CEPH_STORE     memstore | bluestore          (default memstore; bluestore uses a
#                  sparse file $CEPH_RUN_DIR/osd.0/block)
#   CEPH_MGR       1 = also start ceph-mgr (needs package ceph-mgr)   (default 0)
#   CEPH_RGW       1 = start radosgw + create S3 user                 (default 1)
#   MON_PORT       msgr v1 port of the mon, v2 port is MON_PORT+1    (default: a free one)
#   RGW_PORT       S3 endpoint port                                   (default: a free one)
#   S3_BUCKET      bucket created for the tests                       (default squib-test)
#   S3_ACCESS_KEY / S3_SECRET_KEY  keys of S3 user "ci"   (default ciaccesskey / cisecretkey)
#   CEPH_START_TIMEOUT  seconds to wait for each step                 (default 90)
#   CEPH_EXTRA_CONF     extra "key = value" lines appended to [global] (fresh clusters)
#
# After success it prints shell exports (CEPH_CONF, S3_ENDPOINT, ...) and writes them
# to $CEPH_RUN_DIR/env.sh.  Stop with stop-ceph.sh (kills exactly the recorded pids).
set -euo pipefail

RUN=${CEPH_RUN_DIR:-$(mktemp -d /tmp/sqrgw.XXXXXX)}
FRESH=${CEPH_FRESH:-1}
STORE=${CEPH_STORE:-memstore}
WITH_MGR=${CEPH_MGR:-0}
WITH_RGW=${CEPH_RGW:-1}
port_busy() { (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null; }
free_port() { # a port p with p and p+1 free (the mon uses two)
  local p
  for _ in $(seq 1 200); do
    p=$((20000 + RANDOM % 40000))
    port_busy "$p" || port_busy $((p + 1)) || { echo "$p"; return; }
  done
  echo 40789
}
MON_PORT=${MON_PORT:-$(free_port)}
MON_PORT2=$((MON_PORT + 1))
RGW_PORT=${RGW_PORT:-$(free_port)}
[ "$RGW_PORT" != "$MON_PORT" ] && [ "$RGW_PORT" != "$MON_PORT2" ] || RGW_PORT=$((MON_PORT + 2))
BUCKET=${S3_BUCKET:-squib-test}
AK=${S3_ACCESS_KEY:-ciaccesskey}
SK=${S3_SECRET_KEY:-cisecretkey}
TMO=${CEPH_START_TIMEOUT:-90}
# a restart reuses the ports/keys/store the cluster was created with
if [ "$FRESH" != 1 ] && [ -f "$RUN/params" ]; then . "$RUN/params"; fi
CONF=$RUN/ceph.conf
T0=${EPOCHREALTIME/[.,]/}

log() { local t=${EPOCHREALTIME/[.,]/}; printf '[ceph-rgw-start %3d.%02ds] %s\n' $(((t - T0) / 1000000)) $(((t - T0) / 10000 % 100)) "$*" >&2; }
alive() { # running and not a zombie
  local st; st=$(awk '{print $3}' "/proc/$1/stat" 2>/dev/null) || return 1
  [ -n "$st" ] && [ "$st" != Z ] && [ "$st" != X ]
}
die() {
  log "ERROR: $*"
  for f in "$RUN"/log/*.log; do [ -f "$f" ] && { echo "== tail $f" >&2; tail -n 20 "$f" >&2; }; done
  # do not leave half a cluster running (stop-ceph.sh only kills pids recorded in $RUN/run)
  if [ -n "${LAUNCHED:-}" ]; then CEPH_RUN_DIR=$RUN CEPH_WIPE=${CEPH_WIPE:-1} "$(dirname "$0")/ceph-rgw-stop.sh" || true; fi
  exit 1
}
need() { command -v "$1" >/dev/null || die "missing $1 (apt-get install ceph-mon ceph-osd radosgw ceph-common)"; }
for b in ceph ceph-mon ceph-osd ceph-authtool monmaptool uuidgen curl; do need $b; done
[ "$WITH_RGW" = 1 ] && need radosgw && need radosgw-admin
[ "$WITH_MGR" = 1 ] && need ceph-mgr

# ceph CLI wrapper: short timeouts so a dead mon cannot hang the script
C() { timeout 30 ceph -c "$CONF" --connect-timeout 20 "$@"; }

# refuse to start over a running cluster in this dir
for p in "$RUN"/run/*.pid; do
  [ -f "$p" ] || continue
  pid=$(cat "$p" 2>/dev/null || true)
  if [ -n "$pid" ] && alive "$pid" && grep -qa -- "$CONF" /proc/$pid/cmdline 2>/dev/null; then
    die "daemon $(basename "$p" .pid) (pid $pid) already running from $RUN; run stop-ceph.sh first"
  fi
done

# unix socket paths are limited to 107 bytes: keep CEPH_RUN_DIR short
[ ${#RUN} -le 70 ] || die "CEPH_RUN_DIR too long (${#RUN} chars, max 70): admin sockets would not bind"
for port in $MON_PORT $MON_PORT2 $([ "$WITH_RGW" = 1 ] && echo $RGW_PORT); do
  port_busy "$port" && die "127.0.0.1:$port already in use (set MON_PORT / RGW_PORT)"
done

# launch one daemon in its own session, record its pid ourselves
launch() { # name, command...
  local name=$1; shift
  setsid "$@" -c "$CONF" -f </dev/null >"$RUN/log/$name.out" 2>&1 &
  echo $! >"$RUN/run/$name.pid"
  LAUNCHED=1
}

wait_for() { # daemon name, description, command...: poll until command succeeds
  local name=$1 what=$2; shift 2
  local end=$(( $(date +%s) + TMO )) pid; pid=$(cat "$RUN/run/$name.pid")
  until "$@" >/dev/null 2>&1; do
    alive "$pid" || die "$name (pid $pid) exited while waiting for $what; see $RUN/log/$name.out"
    [ "$(date +%s)" -lt "$end" ] || die "timeout waiting for $what"
    sleep 0.2
  done
  log "$what: ok"
}

if [ "$FRESH" = 1 ]; then
  rm -rf "$RUN"
  mkdir -p "$RUN"/{run,log,mon.a,osd.0,mgr.x,rgw}
  FSID=$(uuidgen)
  if [ "$STORE" = bluestore ]; then
    STORE_CONF="osd objectstore = bluestore
    bluestore block create = true
    bluestore block size = 10737418240
    bluestore fsck on mount = false
    bluestore fsck on mkfs = false
    osd memory target = 1073741824
    bluestore cache autotune = false
    bluestore cache size = 268435456"
  else
    STORE_CONF="osd objectstore = memstore
    memstore device bytes = ${CEPH_MEMSTORE_BYTES:-2147483648}
    # save memstore contents on a clean stop so CEPH_FRESH=0 restarts keep data
    osd fast shutdown = false"
  fi
  cat >"$CONF" <<EOF
[global]
    fsid = $FSID
    mon host = [v2:127.0.0.1:$MON_PORT2,v1:127.0.0.1:$MON_PORT]
    public addr = 127.0.0.1
    auth cluster required = none
    auth service required = none
    auth client required = none
    run dir = $RUN/run
    admin socket = $RUN/run/\$name.asok
    log file = $RUN/log/\$name.log
    pid file = $RUN/run/\$name.daemon.pid
    log to stderr = false
    err to stderr = false
    crash dir = $RUN/crash
    # single OSD, single replica
    osd pool default size = 1
    osd pool default min size = 1
    mon allow pool size one = true
    mon allow pool delete = true
    osd pool default pg num = 8
    osd pool default pgp num = 8
    osd pool default pg autoscale mode = off
    mon max pg per osd = 1000
    osd crush chooseleaf type = 0
    # keep health quiet
    mon warn on pool no redundancy = false
    mon warn on insecure global id reclaim allowed = false
    mon data avail warn = 2
    mon data avail crit = 1
    # without a mgr, health turns HEALTH_WARN "no active mgr" 120 s after creation
    mon mgr mkfs grace = 31536000
    # small footprint
    ms async op threads = 1
    # auth none only supports crc mode; radosgw defaults ms_mon_client_mode to "secure"
    ms mon client mode = crc
${CEPH_EXTRA_CONF:-}
[mon]
    mon data = $RUN/mon.\$id
    mon cluster log file = $RUN/log/cluster.log
    # commit map changes fast (default 1 s per pool create); as in ceph-helpers.sh
    paxos propose interval = 0.05
[mgr]
    mgr data = $RUN/mgr.\$id
    mgr initial modules =
[osd]
    osd data = $RUN/osd.\$id
    osd op num shards = 1
    osd op num threads per shard = 2
    $STORE_CONF
[client.rgw.ci]
    rgw frontends = beast endpoint=127.0.0.1:$RGW_PORT tcp_nodelay=1
    rgw data = $RUN/rgw
    rgw thread pool size = 32
    rgw dynamic resharding = false
    rgw enable usage log = false
    log file = $RUN/log/rgw.log
EOF
  printf 'STORE=%q MON_PORT=%q MON_PORT2=%q RGW_PORT=%q AK=%q SK=%q BUCKET=%q\n' \
    "$STORE" "$MON_PORT" "$MON_PORT2" "$RGW_PORT" "$AK" "$SK" "$BUCKET" >"$RUN/params"
  log "mkfs mon"
  monmaptool --create --clobber --fsid "$FSID" \
    --addv a "[v2:127.0.0.1:$MON_PORT2,v1:127.0.0.1:$MON_PORT]" "$RUN/monmap" >/dev/null
  ceph-mon -c "$CONF" --mkfs -i a --monmap "$RUN/monmap" >/dev/null 2>"$RUN/log/mkfs-mon.err" \
    || die "ceph-mon --mkfs failed: $(cat "$RUN/log/mkfs-mon.err")"
  log "start mon"
  launch mon.a ceph-mon -i a
  wait_for mon.a "mon quorum" C mon stat
  OSD_UUID=$(uuidgen)
  OSD_ID=$(C osd new "$OSD_UUID") || die "osd new failed"
  [ "$OSD_ID" = 0 ] || die "unexpected osd id $OSD_ID"
  log "mkfs osd.0 ($STORE)"
  ceph-osd -c "$CONF" -i 0 --mkfs --osd-uuid "$OSD_UUID" >"$RUN/log/mkfs-osd.out" 2>&1 \
    || die "ceph-osd --mkfs failed: $(tail -5 "$RUN/log/mkfs-osd.out")"
else
  [ -f "$CONF" ] || die "no cluster in $RUN (use CEPH_FRESH=1)"
  log "restarting existing cluster in $RUN"
  launch mon.a ceph-mon -i a
  wait_for mon.a "mon quorum" C mon stat
fi

if [ "$WITH_MGR" = 1 ]; then
  launch mgr.x ceph-mgr -i x
fi
log "start osd.0"
launch osd.0 ceph-osd -i 0
# ask the osd itself (the osdmap can still say "up" from before an unclean stop)
osd_up() { timeout 10 ceph --admin-daemon "$RUN/run/osd.0.asok" status | grep -q '"state": "active"'; }
wait_for osd.0 "osd.0 up" osd_up

if [ "$WITH_RGW" = 1 ]; then
  if [ "$FRESH" = 1 ]; then
    log "create S3 user (creates rgw pools)"
    timeout 120 radosgw-admin -c "$CONF" user create --uid=ci --display-name=ci \
      --access-key="$AK" --secret-key="$SK" >"$RUN/log/user-create.out" 2>&1 \
      || die "radosgw-admin user create failed: $(tail -5 "$RUN/log/user-create.out")"
  fi
  log "start radosgw"
  launch rgw radosgw -n client.rgw.ci
  rgw_up() { curl -sf -o /dev/null "http://127.0.0.1:$RGW_PORT/"; }
  wait_for rgw "radosgw http" rgw_up
  # The test bucket, and one signed PUT + GET through it (curl 7.88's --aws-sigv4 needs the
  # payload marked unsigned; rgw refuses uploads without a Content-Length).
  S3=(-sS --max-time 30 --aws-sigv4 "aws:amz:us-east-1:s3" --user "$AK:$SK"
      -H 'x-amz-content-sha256: UNSIGNED-PAYLOAD')
  code=$(curl "${S3[@]}" -o /dev/null -w '%{http_code}' -X PUT "http://127.0.0.1:$RGW_PORT/$BUCKET") \
    || die "creating bucket $BUCKET failed"
  case $code in 200|409) ;; *) die "creating bucket $BUCKET: HTTP $code" ;; esac
  S3+=(--fail)
  curl "${S3[@]}" -X PUT --data-binary "ready-$T0" "http://127.0.0.1:$RGW_PORT/$BUCKET/.ready" >/dev/null \
    || die "S3 PUT failed"
  [ "$(curl "${S3[@]}" "http://127.0.0.1:$RGW_PORT/$BUCKET/.ready")" = "ready-$T0" ] || die "S3 GET mismatch"
  curl "${S3[@]}" -X DELETE "http://127.0.0.1:$RGW_PORT/$BUCKET/.ready" >/dev/null || die "S3 DELETE failed"
  log "bucket $BUCKET: PUT+GET ok"
fi

cat >"$RUN/env.sh" <<EOF
export CEPH_CONF=$CONF
export CEPH_ARGS="-c $CONF"
export CEPH_RUN_DIR=$RUN
export S3_ENDPOINT=http://127.0.0.1:$RGW_PORT
export AWS_ENDPOINT_URL=http://127.0.0.1:$RGW_PORT
export AWS_REGION=us-east-1
export SQUIB_TEST_S3_URL=s3://$BUCKET
export S3_HOSTNAME=127.0.0.1:$RGW_PORT
export AWS_ACCESS_KEY_ID=$AK
export AWS_SECRET_ACCESS_KEY=$SK
export S3_ACCESS_KEY_ID=$AK
export S3_SECRET_ACCESS_KEY=$SK
EOF
log "cluster ready ($STORE); source $RUN/env.sh"
cat "$RUN/env.sh"
