#!/usr/bin/env bash
# SPDX-License-Identifier: Apache-2.0
#
# vs-qemu.sh [BUILD_DIR]: our full snapshot against QEMU's migration to a file,
# the same 1 GiB of guest RAM on both sides, every figure ending with the data
# durable on disk. BUILD_DIR (default build-release, what `make bench` builds)
# must hold bench_vs_qemu (bench/bench_vs_qemu.c). Installs qemu-system-x86
# (and python3) with apt-get when missing. Takes well under a minute once
# QEMU is installed.
#
# Content: a 1 GiB file, 256 MiB of non-zero data in 128 scattered 2 MiB runs
# (bench_memfile's pattern, made by `bench_vs_qemu gen`), the rest a hole.
#
# QEMU: qemu-system-x86_64 -machine q35 (KVM when it starts, else TCG;
# SQUIB_VS_QEMU_ACCEL=tcg forces TCG), -m 1G,
# RAM = memory-backend-file,share=on on that file, -S (paused from the start:
# no guest code ever runs). Over QMP: max-bandwidth 1e12 B/s (not throttled),
# then `migrate` to a file: "exec:cat > OUT" (QEMU < 8.2 has no file: URI), or
# "file:OUT" from 8.2 on; when the QEMU has the mapped-ram capability (9.0+)
# that is run too, as a second QEMU figure. Timed: from sending `migrate` to
# query-migrate "completed" (polled every ms), cat exited, fdatasync(OUT) and
# fsync of its directory done. One new QEMU process per run, started before
# the timing; QEMU's own total-time is printed beside.
#
# Ours: `bench_vs_qemu ours`, squib_memfile_save_full() of the same content
# (writes, fsync, rename, directory fsync: all timed). The headline holds the
# RAM as anonymous private memory with only the pages holding data written,
# which is how our VMM holds the RAM of a guest that touched 256 MiB; also
# shown: every page populated (anon-full), and the file itself mapped shared as
# QEMU maps it (shared); those two make the writer read all 1 GiB.
#
# Each side: one untimed warm-up run (on a virtual disk the first write to
# blocks it never held costs several times a rewrite; QEMU's first run also
# fills the page cache for the RAM file's hole), then RUNS runs
# (SQUIB_VS_QEMU_RUNS, default 3), median reported; every run first deletes
# the previous output and sync()s, so none pays for another's writeback. Files live in a fresh directory under $SQUIB_BENCH_DIR (default
# /var/tmp), removed on exit with QEMU killed.
#
# Caveats: the two outputs differ in kind. QEMU's stream holds the data pages
# plus a header per zero page and its device state (sizes are printed); ours
# is a sparse file whose RAM range can be mapped directly. The RAM file sits in
# the page cache for both sides (no cold reads). QEMU 7.2's classic stream goes
# through a pipe to cat; file: and mapped-ram only run on a QEMU that has them
# (Debian 12 ships 7.2, which has neither). Disk flush times on this class of
# machine vary a lot from run to run; look at the per-run lines.
set -euo pipefail

build=${1:-build-release}
runs=${SQUIB_VS_QEMU_RUNS:-3}
base=${SQUIB_BENCH_DIR:-/var/tmp}
helper=$build/bench_vs_qemu
modes=(anon anon-full shared)

die() {
	echo "vs-qemu: $*" >&2
	exit 1
}

[ -x "$helper" ] || die "$helper not found: build first (make bench, or cmake --build $build)"

# ---- tools ------------------------------------------------------------------
missing=()
command -v qemu-system-x86_64 >/dev/null || missing+=(qemu-system-x86)
command -v python3 >/dev/null || missing+=(python3)
if [ ${#missing[@]} -gt 0 ]; then
	echo "vs-qemu: installing ${missing[*]}"
	SUDO=""
	[ "$(id -u)" -ne 0 ] && SUDO=sudo
	export DEBIAN_FRONTEND=noninteractive
	$SUDO apt-get update -qq
	$SUDO apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
fi

# ---- work directory, cleanup --------------------------------------------------
work=$(mktemp -d "$base/squib-vs-qemu.XXXXXX")
qpid=""
hpid=""
shm_ram=""
cleanup() {
	trap '' INT TERM # a second ^C must not cut the cleanup short (rm inherits this)
	[ -z "$shm_ram" ] || rm -f "$shm_ram"
	if [ -n "$hpid" ]; then
		kill "$hpid" 2>/dev/null || true
		wait "$hpid" 2>/dev/null || true
	fi
	if [ -n "$qpid" ] && kill -0 "$qpid" 2>/dev/null; then
		kill "$qpid" 2>/dev/null || true
		wait "$qpid" 2>/dev/null || true
	fi
	rm -rf "$work"
}
trap cleanup EXIT
trap 'exit 130' INT TERM

ram=$work/guest-ram
sock=$work/qmp.sock

# ---- QMP client ---------------------------------------------------------------
cat >"$work/qmp.py" <<'EOF'
# QMP client for vs-qemu.sh (stdlib only).
#   probe SOCK PID            -> KEY=VALUE lines: version, kvm, uri, mapped_ram
#   migrate SOCK PID OUT VARIANT (classic | mapped-ram)
#                             -> "RESULT ms qemu_total_ms"
#   quit SOCK PID
import json, os, shlex, socket, sys, time

def alive(pid):
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    # a zombie is dead for us: its parent, the shell, has not reaped it yet
    with open(f"/proc/{pid}/stat") as f:
        return f.read().rsplit(")", 1)[1].split()[0] != "Z"

class QMP:
    def __init__(self, path, pid):
        deadline = time.monotonic() + 20
        while True:
            if not alive(pid):
                sys.exit("qmp: QEMU exited before its QMP socket answered")
            try:
                self.s = socket.socket(socket.AF_UNIX)
                self.s.connect(path)
                break
            except OSError:
                self.s.close()
                if time.monotonic() > deadline:
                    sys.exit("qmp: no QMP socket after 20 s")
                time.sleep(0.01)
        self.f = self.s.makefile("rwb", buffering=0)
        self.read()  # greeting
        self.cmd("qmp_capabilities")

    def read(self):
        while True:
            line = self.f.readline()
            if not line:
                sys.exit("qmp: QEMU closed the connection")
            msg = json.loads(line)
            if "event" not in msg:
                return msg

    def cmd(self, name, **args):
        req = {"execute": name}
        if args:
            req["arguments"] = args
        self.f.write(json.dumps(req).encode() + b"\n")
        msg = self.read()
        if "error" in msg:
            sys.exit(f"qmp: {name}: {msg['error'].get('desc')}")
        return msg["return"]

def version(q):
    v = q.cmd("query-version")["qemu"]
    return (v["major"], v["minor"], v["micro"])

def probe(q):
    v = version(q)
    kvm = q.cmd("query-kvm")
    caps = {c["capability"] for c in q.cmd("query-migrate-capabilities")}
    print("version=%d.%d.%d" % v)
    print("kvm=%s" % ("on" if kvm["enabled"] else "off"))
    print("uri=%s" % ("file" if v >= (8, 2, 0) else "exec"))
    print("mapped_ram=%s" % ("yes" if "mapped-ram" in caps else "no"))

def migrate(q, out, variant):
    v = version(q)
    q.cmd("migrate-set-parameters", **{"max-bandwidth": 10**12})
    bw = q.cmd("query-migrate-parameters")["max-bandwidth"]
    if bw != 10**12:
        sys.exit(f"qmp: max-bandwidth is {bw}, not 1e12")
    done = out + ".cat-exit"
    if variant == "background":
        # QEMU 7.2 aborts a background snapshot of a VM never started (-S:
        # "invalid runstate transition: 'prelaunch' -> 'paused'"): run it first.
        q.cmd("cont")
        q.cmd("migrate-set-capabilities",
              capabilities=[{"capability": "background-snapshot", "state": True}])
    if variant == "mapped-ram":
        q.cmd("migrate-set-capabilities",
              capabilities=[{"capability": "mapped-ram", "state": True}])
        uri = "file:" + out
    elif v >= (8, 2, 0):
        uri = "file:" + out
    else:
        uri = "exec:cat > %s; echo $? > %s" % (shlex.quote(out), shlex.quote(done))
    os.sync()  # start from a quiet disk, as our side does
    t0 = time.monotonic()
    q.cmd("migrate", uri=uri)
    while True:
        st = q.cmd("query-migrate")
        status = st.get("status")
        if status == "completed":
            break
        if status in ("failed", "cancelled"):
            sys.exit(f"qmp: migration {status}: {st.get('error-desc', '')}")
        time.sleep(0.001)
    if uri.startswith("exec:"):
        # QEMU closed its end of the pipe; wait for cat to drain it and exit
        while True:
            try:
                with open(done) as f:
                    rc = f.read().strip()
                if rc:
                    break
            except FileNotFoundError:
                pass
            time.sleep(0.001)
        if rc != "0":
            sys.exit(f"qmp: cat exited {rc}")
    fd = os.open(out, os.O_RDONLY)
    os.fdatasync(fd)
    os.close(fd)
    dfd = os.open(os.path.dirname(out), os.O_RDONLY | os.O_DIRECTORY)
    os.fsync(dfd)
    os.close(dfd)
    ms = (time.monotonic() - t0) * 1000
    if os.path.exists(done):
        os.unlink(done)
    print("RESULT %.2f %d %s %d" % (ms, st.get("total-time", -1), uri.split(":")[0],
                                    st.get("downtime", -1)))

def main():
    what, path, pid = sys.argv[1], sys.argv[2], int(sys.argv[3])
    q = QMP(path, pid)
    if what == "probe":
        probe(q)
    elif what == "migrate":
        migrate(q, sys.argv[4], sys.argv[5])
    elif what == "quit":
        q.cmd("quit")

main()
EOF

# ---- QEMU ---------------------------------------------------------------------
start_qemu() { # ACCEL [RAMFILE]: sets qpid
	rm -f "$sock"
	qemu-system-x86_64 -machine "q35,accel=$1" -m 1G \
		-object "memory-backend-file,id=ram,size=1G,mem-path=${2:-$ram},share=on" \
		-machine memory-backend=ram -S -nographic -nodefaults -display none \
		-qmp "unix:$sock,server,nowait" </dev/null >"$work/qemu.log" 2>&1 &
	qpid=$!
}

stop_qemu() {
	python3 "$work/qmp.py" quit "$sock" "$qpid" || kill "$qpid" 2>/dev/null || true
	wait "$qpid" 2>/dev/null || true
	qpid=""
}

median() { # numbers on stdin
	sort -g | awk '{ v[NR] = $1 } END { print v[int((NR + 1) / 2)] }'
}

sizes() { # FILE -> "apparent A MiB, allocated B MiB"
	stat -c '%s %b %B' "$1" |
		awk '{ printf "apparent %8.1f MiB, allocated %7.1f MiB", $1 / 1048576, $2 * $3 / 1048576 }'
}

"$helper" gen "$ram"

accel=${SQUIB_VS_QEMU_ACCEL:-kvm} # tcg forces TCG; kvm falls back to TCG
[ "$accel" = kvm ] || [ "$accel" = tcg ] || die "SQUIB_VS_QEMU_ACCEL must be kvm or tcg"
if [ "$accel" = kvm ] && [ -r /dev/kvm ] && [ -w /dev/kvm ]; then
	start_qemu kvm
	if ! probe=$(python3 "$work/qmp.py" probe "$sock" "$qpid" 2>/dev/null); then
		wait "$qpid" 2>/dev/null || true
		qpid=""
		accel=tcg
	fi
else
	accel=tcg
fi
if [ "$accel" = tcg ]; then
	start_qemu tcg
	probe=$(python3 "$work/qmp.py" probe "$sock" "$qpid") ||
		die "QEMU did not start: $(cat "$work/qemu.log")"
fi
stop_qemu
version="" kvm="" uri="" mapped_ram=""
eval "$probe" # sets those four
variants=(classic)
[ "$mapped_ram" = yes ] && variants+=(mapped-ram)

echo "vs-qemu: QEMU $version, accel $accel (kvm $kvm), $runs runs each, files in $work"
echo "vs-qemu: guest RAM 1 GiB, $(sizes "$ram")"
if [ "$mapped_ram" = yes ]; then
	echo "vs-qemu: QEMU streams: classic ($uri:) and mapped-ram (file:)"
else
	echo "vs-qemu: QEMU stream: classic only, to $uri: (mapped-ram needs QEMU >= 9.0, file: >= 8.2)"
fi

declare -A qemu_ms qemu_out
for v in "${variants[@]}"; do
	out=$work/qemu-$v.mig
	times=()
	for ((i = 0; i <= runs; i++)); do # run 0: untimed warm-up, as on our side
		rm -f "$out"
		start_qemu "$accel"
		res=$(python3 "$work/qmp.py" migrate "$sock" "$qpid" "$out" "$v") ||
			die "migration failed: $(cat "$work/qemu.log")"
		stop_qemu
		read -r _ ms total scheme _ <<<"$res"
		if [ "$i" -eq 0 ]; then
			printf 'qemu %-10s warm-up: %9.2f ms (not counted; QEMU total-time %d ms)\n' \
				"$v" "$ms" "$total"
			continue
		fi
		printf 'qemu %-10s run %d:   %9.2f ms (QEMU total-time %d ms, %s:)\n' \
			"$v" "$i" "$ms" "$total" "$scheme"
		times+=("$ms")
	done
	qemu_ms[$v]=$(printf '%s\n' "${times[@]}" | median)
	qemu_out[$v]=$out
done

# ---- ours ---------------------------------------------------------------------
# also checks that the RAM file still holds the pattern after QEMU mapped it.
# In the background with `wait`, so a signal reaches the trap at once and
# cleanup can stop it before removing its directory.
"$helper" ours "$ram" "$work" "$runs" "${modes[@]}" >"$work/ours.log" 2>&1 &
hpid=$!
wait "$hpid" || die "bench_vs_qemu ours failed: $(cat "$work/ours.log")"
hpid=""
declare -A ours_ms ours_out
while read -r line; do
	case $line in
	"RESULT ours "*)
		read -r _ _ mode ms out <<<"$line"
		ours_ms[$mode]=$ms
		ours_out[$mode]=$out
		;;
	*) echo "$line" ;;
	esac
done <"$work/ours.log"
[ ${#ours_ms[@]} -eq ${#modes[@]} ] || die "bench_vs_qemu ours failed"

# ---- summary ------------------------------------------------------------------
echo "-- medians of $runs runs, each until the data is durable"
for v in "${variants[@]}"; do
	printf 'qemu %-10s %9.2f ms   output %s\n' "$v" "${qemu_ms[$v]}" "$(sizes "${qemu_out[$v]}")"
done
for m in "${modes[@]}"; do
	printf 'ours %-10s %9.2f ms   output %s\n' "$m" "${ours_ms[$m]}" "$(sizes "${ours_out[$m]}")"
done
for v in "${variants[@]}"; do
	for m in "${modes[@]}"; do
		awk -v q="${qemu_ms[$v]}" -v o="${ours_ms[$m]}" -v v="$v" -v m="$m" \
			'BEGIN { printf "ratio qemu %s / ours %s: %.2fx\n", v, m, q / o }'
	done
done
# ---- the disk's own limit ------------------------------------------------------
# The goal is no longer a multiple of QEMU (both are bound by the disk) but the
# disk itself: our writers against dd of the same bytes + fdatasync, measured
# by bench_disk in one run on the same directory (its header has the method).
echo "-- ours against the disk's own limit (bench_disk, $runs runs, medians)"
"$build/bench_disk" --runs "$runs" | grep -E '^(paired|ratio|  without)' ||
	die "bench_disk failed"

# ---- live: QEMU's background snapshot against our live save ------------------
# QEMU 7.2's migration capability background-snapshot write-protects guest RAM
# with userfaultfd and streams it while the guest runs (the image is the RAM of
# the snapshot's start). Its RAM must be memory uffd-wp can protect (anonymous,
# shmem, hugetlbfs; not a file on disk), so each run maps a fresh copy of the
# RAM file on /dev/shm (tmpfs is shmem), made outside the timing. The VM runs
# (cont; SeaBIOS finds nothing to boot and idles): QEMU 7.2 aborts a background
# snapshot of a VM never started. Guest downtime is QEMU's own "downtime" from
# query-migrate. Ours: bench_vs_qemu_live, Full pairs of a VM holding the same
# content while a writer thread runs, stop-the-world and live.
live_helper=$build/bench_vs_qemu_live
if [ ! -x "$live_helper" ]; then
	echo "vs-qemu: $live_helper not built: the background-snapshot comparison is skipped"
elif [ ! -w /dev/shm ]; then
	echo "vs-qemu: no writable /dev/shm for shmem guest RAM: the background-snapshot comparison is skipped"
else
	shm_ram=$(mktemp /dev/shm/squib-vs-qemu-ram.XXXXXX)
	out=$work/qemu-background.mig
	times=()
	downs=()
	for ((i = 0; i <= runs; i++)); do
		cp --sparse=always "$ram" "$shm_ram"
		rm -f "$out"
		start_qemu "$accel" "$shm_ram"
		res=$(python3 "$work/qmp.py" migrate "$sock" "$qpid" "$out" background) ||
			die "background snapshot failed: $(cat "$work/qemu.log")"
		stop_qemu
		read -r _ ms total scheme down <<<"$res"
		if [ "$i" -eq 0 ]; then
			printf 'qemu background warm-up: %9.2f ms, guest downtime %d ms (not counted)\n' "$ms" "$down"
			continue
		fi
		printf 'qemu background run %d:   %9.2f ms, guest downtime %d ms (QEMU total-time %d ms, %s:)\n' \
			"$i" "$ms" "$down" "$total" "$scheme"
		times+=("$ms")
		downs+=("$down")
	done
	rm -f "$shm_ram"
	shm_ram=""
	bg_ms=$(printf '%s\n' "${times[@]}" | median)
	bg_down=$(printf '%s\n' "${downs[@]}" | median)
	"$live_helper" "$ram" "$work" "$runs" >"$work/live.log" 2>&1 &
	hpid=$!
	wait "$hpid" || die "bench_vs_qemu_live failed: $(cat "$work/live.log")"
	hpid=""
	declare -A vm_ms vm_down
	while read -r line; do
		case $line in
		"RESULT vm "*)
			read -r _ _ mode ms down _ <<<"$line"
			vm_ms[$mode]=$ms
			vm_down[$mode]=$down
			;;
		*) echo "$line" ;;
		esac
	done <"$work/live.log"
	[ -n "${vm_ms[live]:-}" ] && [ -n "${vm_ms[stw]:-}" ] || die "bench_vs_qemu_live printed no result"
	echo "-- the guest running during the snapshot: medians of $runs runs, each until the data is durable"
	printf 'qemu background-snapshot %9.2f ms   guest downtime %8.2f ms   output %s\n' \
		"$bg_ms" "$bg_down" "$(sizes "$out")"
	printf 'ours live                %9.2f ms   guest downtime %8.2f ms\n' "${vm_ms[live]}" "${vm_down[live]}"
	printf 'ours stop-the-world      %9.2f ms   guest downtime %8.2f ms\n' "${vm_ms[stw]}" "${vm_down[stw]}"
	awk -v q="$bg_ms" -v o="${vm_ms[live]}" -v s="${vm_ms[stw]}" -v qd="$bg_down" -v od="${vm_down[live]}" 'BEGIN {
		printf "ratio qemu background / ours live: total %.2fx, downtime %.1fx\n", q / o, (od > 0 ? qd / od : 0)
		printf "ratio ours live / ours stop-the-world, total: %.2f (goal <= 1.3)\n", o / s
	}'
fi
