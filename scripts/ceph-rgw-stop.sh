#!/usr/bin/env bash
# ceph-rgw-stop.sh - stop the daemons ceph-rgw-start.sh started, by their recorded pids only
# (adapted from ../shared/reference/ceph-rgw/stop-ceph.sh).
#   CEPH_RUN_DIR   run dir (required: the start script prints it in env.sh)
#   CEPH_WIPE=1    throwaway mode: SIGKILL the daemons (instant) and delete the run dir.
#                  Default: graceful SIGTERM (memstore then saves its data so that
#                  CEPH_FRESH=0 start-ceph.sh brings the same cluster back).
set -u
RUN=${CEPH_RUN_DIR:?set CEPH_RUN_DIR to the run dir ceph-rgw-start.sh used}
[ -f "$RUN/ceph.conf" ] || { echo "ceph-rgw-stop: no cluster in $RUN" >&2; exit 0; }
CONF=$RUN/ceph.conf
WIPE=${CEPH_WIPE:-0}

alive() { # running and not a zombie (PID 1 here reaps orphans only every ~2 s)
  local st; st=$(awk '{print $3}' "/proc/$1/stat" 2>/dev/null) || return 1
  [ -n "$st" ] && [ "$st" != Z ] && [ "$st" != X ]
}
ours() { # pid is alive and is still the daemon we launched (its cmdline names our conf)
  [ -n "$1" ] && alive "$1" && grep -qa -- "$CONF" "/proc/$1/cmdline" 2>/dev/null
}
stop_group() { # names...: signal them all, then wait (max 15 s) and SIGKILL leftovers
  local sig=TERM; [ "$WIPE" = 1 ] && sig=KILL
  local pids=() names=() n pid
  for n in "$@"; do
    [ -f "$RUN/run/$n.pid" ] || continue
    pid=$(cat "$RUN/run/$n.pid")
    if ours "$pid"; then kill -$sig "$pid"; pids+=("$pid"); names+=("$n"); fi
    rm -f "$RUN/run/$n.pid"
  done
  for i in "${!pids[@]}"; do
    pid=${pids[$i]}
    for _ in $(seq 1 150); do alive "$pid" || break; sleep 0.1; done
    if alive "$pid"; then
      echo "stop-ceph: ${names[$i]} ($pid) still alive after 15s, SIGKILL" >&2
      kill -KILL "$pid"
    fi
    echo "stop-ceph: stopped ${names[$i]} ($pid)" >&2
  done
}
# one at a time: radosgw blocks in shutdown (>15 s) if the osd is already gone, and the
# osd tells the mon it is going down (memstore also saves its data then)
stop_group rgw
stop_group osd.0
stop_group mgr.x
stop_group mon.a
if [ "$WIPE" = 1 ]; then rm -rf "$RUN"; fi
exit 0
