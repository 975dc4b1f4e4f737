#!/usr/bin/env bash
# kvm-vm.sh: run commands where a real /dev/kvm exists, on a machine without one.
#
# Boots a QEMU TCG VM that emulates AMD SVM with nested paging, with one of
# Debian 12's cloud kernels (6.1, installed as a package, or 6.12, fetched from
# the security updates into a cache), loads that kernel's own kvm_amd and runs
# the given commands inside it; their output comes back over the serial console.
# See docs/DESIGN.md, "KVM inside a TCG VM".
#
# usage: kvm-vm.sh [options] [COMMAND...] [-- COMMAND...]   (options may follow commands)
#   COMMAND            a shell command line run inside the VM (busybox sh), in order
#   --kernel 6.1|6.12  which Debian cloud kernel and KVM (default 6.1)
#   --add PATH         put PATH (file or directory, recursively) into the VM at the
#                      same absolute path; ELF files bring the libraries ldd names
#   --env NAME=VALUE   exported to every command
#   --cwd DIR          working directory of the COMMANDs (created if not added)
#   --ctest BUILD LABEL  also run every ctest test of BUILD labelled LABEL with ctest's
#                      command, environment and working directory (files they name
#                      are added; a directory holding a CMakeLists.txt/CMakeCache.txt
#                      is only created, not copied); each is killed after twice its
#                      ctest TIMEOUT (300 s when unset), a failure of that test
#   --mem MIB          VM memory (default 2048)
#   --smp N            vCPUs (default 1: with more, QEMU's TCG delivers some interrupts that
#                      KVM injects into its guests twice, see docs/DESIGN.md)
#   --timeout SEC      hard limit for the whole VM (default 1800)
#   --stall SEC        a VM whose console is silent while its QEMU uses under 5 % of one
#                      CPU gets an NMI after SEC/3 seconds (it wakes a vCPU QEMU forgot to
#                      interrupt), up to three; then it is stalled (default 180; 0: never):
#                      its CPU state is dumped through QEMU's monitor and it is killed (125)
#   --cpu MODEL        QEMU CPU model (default EPYC,+svm,+npt)
#   --log FILE         keep the raw console log there
#   --prepare          only install the packages and fetch the kernel, then exit
#   --tcg-thread single|multi  QEMU's TCG threading (default single: see DESIGN.md)
# Exit status: the first non-zero exit status of the COMMANDs (0 when all pass);
# 125 the VM did not finish within --timeout or stalled; 126 the VM itself failed (no
# /dev/kvm inside it, kernel panic or oops, QEMU error).
# Inside the VM, SQUIB_KVM_NESTED_TCG=1 is exported (tests may shrink their sizes).
# Environment: SQUIB_KVM_VM_CACHE (default ~/.cache/squib-kvm-vm) holds the 6.12 kernel.
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
cache=${SQUIB_KVM_VM_CACHE:-${XDG_CACHE_HOME:-$HOME/.cache}/squib-kvm-vm}
prepare=0 kernel=6.1 tcg_thread=single mem=2048 smp=1 timeout_s=1800 stall_s=180 cpu=EPYC,+svm,+npt cwd=/ log=
adds=() envs=() cmds=() names=() ctests=() user_cmds=()
M=@@KVMVM@@

say() { echo "kvm-vm: $*"; }
die() {
	echo "kvm-vm: ERROR: $*" >&2
	exit 126
}

parse_args() {
	local -a pos=()
	while [ $# -gt 0 ]; do
		case "$1" in
		--kernel) kernel=$2 && shift ;;
		--add) adds+=("$(realpath -s "$2")") && shift ;;
		--env) envs+=("$2") && shift ;;
		--cwd) cwd=$2 && shift ;;
		--ctest) ctests+=("$(cd "$2" && pwd)" "$3") && shift 2 ;;
		--mem) mem=$2 && shift ;;
		--smp) smp=$2 && shift ;;
		--timeout) timeout_s=$2 && shift ;;
		--stall) stall_s=$2 && shift ;;
		--cpu) cpu=$2 && shift ;;
		--tcg-thread) tcg_thread=$2 && shift ;;
		--log) log=$2 && shift ;;
		--prepare) prepare=1 ;;
		--) shift && pos+=("$@") && break ;;
		-*) die "unknown option $1 (see the comment at the top of $0)" ;;
		*) pos+=("$1") ;;
		esac
		shift
	done
	user_cmds=("${pos[@]}")
}

# Debian packages, installed only when missing; apt-get update only when an install fails.
ensure_packages() {
	local p missing=() sudo=
	for p in qemu-system-x86 linux-image-cloud-amd64 busybox-static cpio xz-utils jq; do
		dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q 'install ok installed' || missing+=("$p")
	done
	[ ${#missing[@]} -eq 0 ] && return 0
	[ "$(id -u)" -ne 0 ] && sudo=sudo
	say "installing ${missing[*]}"
	export DEBIAN_FRONTEND=noninteractive
	$sudo apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null ||
		{ $sudo apt-get update -qq && $sudo apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null; } ||
		die "could not install ${missing[*]}"
}

# Copies the three modules KVM needs (kvm_amd -> kvm -> irqbypass) out of a
# modules tree into $2, decompressing .ko.xz (busybox insmod takes plain .ko).
copy_modules() {
	local tree=$1 dst=$2 rel f
	mkdir -p "$dst"
	for rel in virt/lib/irqbypass arch/x86/kvm/kvm arch/x86/kvm/kvm-amd; do
		f=$tree/kernel/$rel
		if [ -f "$f.ko" ]; then
			cp "$f.ko" "$dst/"
		elif [ -f "$f.ko.xz" ]; then
			xz -dc "$f.ko.xz" >"$dst/${rel##*/}.ko"
		else
			die "no $rel.ko in $tree"
		fi
	done
}

# Sets vmlinuz and moddir for Debian 12's own cloud kernel (the installed 6.1).
kernel_61() {
	vmlinuz=$(find /boot -maxdepth 1 -name 'vmlinuz-6.1.*-cloud-amd64' 2>/dev/null | sort -V | tail -1)
	[ -n "$vmlinuz" ] || die "no /boot/vmlinuz-6.1.*-cloud-amd64 (package linux-image-cloud-amd64)"
	local kver=${vmlinuz#/boot/vmlinuz-}
	moddir=$work/modules
	copy_modules "/lib/modules/$kver" "$moddir"
}

# Sets vmlinuz and moddir for the newest 6.12 cloud kernel of Debian 12's security
# updates, fetched once with apt-get download and unpacked into the cache.
kernel_612() {
	local pkg dir tmp sudo=
	[ "$(id -u)" -ne 0 ] && sudo=sudo
	pick() { apt-cache search --names-only '^linux-image-6\.12\.[0-9.]+\+deb12-cloud-amd64-unsigned$' |
		awk '{ print $1 }' | sort -V | tail -1; }
	pkg=$(pick)
	if [ -z "$pkg" ]; then
		say "no linux-image-6.12.*-cloud-amd64-unsigned in the package lists: apt-get update"
		$sudo apt-get update -qq || true
		pkg=$(pick)
	fi
	if [ -z "$pkg" ]; then # offline: whatever the cache holds
		pkg=$(find "$cache" -maxdepth 1 -name 'linux-image-6.12*' -printf '%f\n' 2>/dev/null | sort -V | tail -1)
	fi
	[ -n "$pkg" ] || die "no 6.12 cloud kernel package found (apt-cache search linux-image-6.12 | grep cloud)"
	dir=$cache/$pkg
	if [ ! -f "$dir/ok" ]; then
		say "fetching $pkg into $dir"
		tmp=$(mktemp -d "$work/k612-XXXXXX")
		chmod a+x "$work" && chmod a+rwx "$tmp" # apt's _apt user downloads into it
		(cd "$tmp" && apt-get download -qq "$pkg") ||
			{ $sudo apt-get update -qq && (cd "$tmp" && apt-get download -qq "$pkg"); } ||
			die "apt-get download $pkg failed (stale package lists fixed by apt-get update did not help)"
		dpkg-deb -x "$tmp"/*.deb "$tmp/x"
		rm -rf "$dir" && mkdir -p "$dir"
		cp "$tmp"/x/boot/vmlinuz-* "$dir/vmlinuz"
		copy_modules "$(echo "$tmp"/x/lib/modules/*)" "$dir/modules"
		rm -rf "$tmp"
		touch "$dir/ok"
	fi
	vmlinuz=$dir/vmlinuz
	moddir=$dir/modules
}

# add_file PATH: PATH (dereferenced) into the staging root at the same path,
# with the libraries it links when it is an ELF file.
add_file() {
	local src=$1 dst=$root$1 lib magic=
	[ -e "$dst" ] && return 0
	mkdir -p "${dst%/*}"
	cp -L --preserve=mode "$src" "$dst"
	IFS= read -r -N 4 magic <"$src" 2>/dev/null || true
	if [ "$magic" = $'\x7fELF' ]; then
		for lib in $(ldd "$src" 2>/dev/null | grep -o '/[^ ]*'); do
			[ -e "$lib" ] && add_file "$lib"
		done
	fi
}

add_path() {
	local p=$1 f
	[ -e "$p" ] || die "--add $p: no such file or directory"
	if [ -d "$p" ]; then
		mkdir -p "$root$p"
		while IFS= read -r -d '' f; do add_file "$f"; done < <(find -L "$p" -type f -print0)
	else
		add_file "$p"
	fi
}

# One ctest test as a command script: ctest's cwd, environment and command; a
# skip inside the VM (its SKIP_RETURN_CODE, or a cmocka "[  SKIPPED ]" line) fails it.
ctest_command() {
	local name=$1 dir=$2 skip_rc=$3 run=$4
	cat <<-EOS
		cd '$dir' || exit 1
		{ $run; echo \$? >/tmp/.kvm-vm-rc; } 2>&1 | tee /tmp/.kvm-vm-out
		rc=\$(cat /tmp/.kvm-vm-rc)
		if [ "\$rc" = "$skip_rc" ] || grep -q '^\[  SKIPPED \]' /tmp/.kvm-vm-out; then
			echo "kvm-vm: !!! $name SKIPPED tests inside the VM, where /dev/kvm exists: a failure here"
			exit 1
		fi
		exit \$rc
	EOS
}

# The tests labelled $2 in build tree $1, as commands with ctest's environment and cwd.
add_ctest() {
	local build=$1 label=$2 json n i t name dir run kv v skip_rc tmo
	json=$(ctest --test-dir "$build" -N -L "^$label\$" --show-only=json-v1) || die "ctest -N failed in $build"
	n=$(jq '.tests | length' <<<"$json")
	[ "$n" -gt 0 ] || die "no ctest test labelled $label in $build (is the build configured with tests?)"
	for ((i = 0; i < n; i++)); do
		t=$(jq ".tests[$i]" <<<"$json")
		name=$(jq -r .name <<<"$t")
		dir=$(jq -r '.properties[] | select(.name == "WORKING_DIRECTORY") | .value' <<<"$t")
		skip_rc=$(jq -r '(.properties[] | select(.name == "SKIP_RETURN_CODE") | .value) // "none"' <<<"$t")
		# ctest's TIMEOUT, doubled for nested TCG: a hang fails its test, not the whole VM
		tmo=$(jq -r '(.properties[] | select(.name == "TIMEOUT") | .value) // 300' <<<"$t")
		run="timeout -s KILL $((tmo * 2)) env"
		while IFS= read -r kv; do
			[ -n "$kv" ] || continue
			run+=" '$kv'"
			v=${kv#*=}
			case "$v" in /*) ;; *) continue ;; esac
			if [ -d "$v" ] && { [ -e "$v/CMakeLists.txt" ] || [ -e "$v/CMakeCache.txt" ]; }; then
				mkdir -p "$root$v"
			elif [ -e "$v" ]; then
				add_path "$v"
			fi
		done < <(jq -r '.properties[] | select(.name == "ENVIRONMENT") | .value[]' <<<"$t")
		while IFS= read -r v; do run+=" '$v'"; done < <(jq -r '.command[]' <<<"$t")
		add_path "$(jq -r '.command[0]' <<<"$t")"
		mkdir -p "$root$dir"
		cmds+=("$(ctest_command "$name" "$dir" "$skip_rc" "$run")")
		names+=("$name")
	done
}

build_initramfs() {
	local i first
	mkdir -p "$root"/{bin,sbin,proc,sys,dev,tmp,kvm-vm/cmd,kvm-vm/name,kvm-vm/modules}
	cp /bin/busybox "$root/bin/busybox"
	cp "$here/kvm-vm/init" "$root/init"
	cp "$moddir"/*.ko "$root/kvm-vm/modules/"
	for i in "${!ctests[@]}"; do
		[ $((i % 2)) -eq 0 ] && add_ctest "${ctests[i]}" "${ctests[i + 1]}"
	done
	for i in "${adds[@]}"; do add_path "$i"; done
	for i in "${user_cmds[@]}"; do
		first=${i%% *} # an absolute program path comes along by itself
		case "$first" in /*) [ -f "$first" ] && add_path "$first" ;; esac
		cmds+=("cd '$cwd' && $i")
		names+=("$i")
	done
	mkdir -p "$root$cwd"
	{
		echo "SQUIB_KVM_NESTED_TCG=1"
		for i in "${envs[@]}"; do printf '%s=%q\n' "${i%%=*}" "${i#*=}"; done
	} >"$root/kvm-vm/env"
	for i in "${!cmds[@]}"; do
		printf '%s\n' "${cmds[i]}" >"$root/kvm-vm/cmd/$(printf %03d "$i")"
		printf '%s\n' "${names[i]}" >"$root/kvm-vm/name/$(printf %03d "$i")"
	done
	(cd "$root" && find . | cpio -o -H newc --quiet) >"$work/initramfs.cpio"
}

# QEMU's user+system CPU time in clock ticks (0 once it is gone).
qemu_ticks() {
	local pid
	pid=$(cat "$work/qemu.pid" 2>/dev/null) || { echo 0; return; }
	awk '{ print $14 + $15 }' "/proc/$pid/stat" 2>/dev/null || echo 0
}

# One HMP command through the monitor's pipe; its output lands in $work/monitor.log.
monitor() {
	echo "$*" >"$work/mon.in"
	sleep 2
}

# Watches a running VM (background). A stall (docs/DESIGN.md §11) looks like this: the VM's
# vCPU halted with IF=1 and its LAPIC timer's vector pending in IRR, never woken - QEMU lost
# the interrupt request - and every layer inside waits for that tick. So after 60 s of a
# silent console with QEMU idle it sends an NMI: the kernel's "unknown NMI" message raises a
# self-IPI, which makes QEMU look at the APIC again. After three such kicks with no work in
# between, the VM is stalled for good: the vCPUs' registers and local APICs are dumped and it
# is killed rather than waiting out --timeout.
watch_stall() {
	local size last_size=-1 quiet_since ticks ticks_at_quiet=0 hz pid kicks=0 kick_size=0
	local kick_s=$((stall_s / 3))
	hz=$(getconf CLK_TCK)
	quiet_since=$(date +%s)
	while sleep 10; do
		[ -s "$work/qemu.pid" ] || continue
		pid=$(cat "$work/qemu.pid")
		kill -0 "$pid" 2>/dev/null || return 0
		size=$(stat -c %s "$clog" 2>/dev/null || echo 0)
		ticks=$(qemu_ticks)
		# output besides the kernel's NMI lines since the last kick: the VM works again
		if [ "$kicks" -gt 0 ] && tail -c +$((kick_size + 1)) "$clog" 2>/dev/null |
			grep -av -e 'NMI received for unknown reason' -e 'Dazed and confused' | grep -aq .; then
			kicks=0
		fi
		if [ "$size" != "$last_size" ]; then
			last_size=$size quiet_since=$(date +%s) ticks_at_quiet=$ticks
			continue
		fi
		local quiet=$(($(date +%s) - quiet_since)) used=$((ticks - ticks_at_quiet))
		# under 5 % of one CPU: a guest doing work keeps QEMU busy however loaded the host
		[ "$quiet" -ge "$kick_s" ] && [ $((used * 20)) -lt $((quiet * hz)) ] || continue
		if [ "$kicks" -lt 3 ]; then
			kicks=$((kicks + 1)) kick_size=$size
			echo "$(date +%T) silent for ${quiet}s with QEMU idle: NMI $kicks" >>"$work/kicks"
			monitor nmi
			quiet_since=$(date +%s) ticks_at_quiet=$(qemu_ticks)
			continue
		fi
		echo "silent with QEMU idle after 3 NMIs, ${quiet}s since the last" >"$work/stalled"
		for c in "info status" "info cpus" "info registers -a" "info lapic" "info pic"; do monitor "$c"; done
		kill "$pid" 2>/dev/null || true
		return 0
	done
}

# Boots the VM; the console goes to stdout and $clog. Sets qemu_rc.
boot() {
	local append="console=ttyS0 quiet panic=-1 oops=panic softlockup_panic=1 rdinit=/init"
	local monitor_opt=(-monitor none) watcher=
	say "booting $(basename "$vmlinuz") ($kernel) in QEMU TCG, -cpu $cpu -smp $smp -m $mem," \
		"initramfs $(($(stat -c %s "$work/initramfs.cpio") / 1048576)) MiB, ${#cmds[@]} command(s), timeout ${timeout_s}s"
	: >"$clog"
	if [ "$stall_s" -gt 0 ]; then
		# a pipe monitor (QEMU opens mon.in/mon.out read-write, so nothing blocks), drained always
		mkfifo "$work/mon.in" "$work/mon.out"
		cat "$work/mon.out" >"$work/monitor.log" &
		monitor_opt=(-monitor "pipe:$work/mon")
		watch_stall &
		watcher=$!
	fi
	t_start=$(date +%s.%N)
	set +e
	timeout -k 10 "$timeout_s" qemu-system-x86_64 -accel "tcg,thread=$tcg_thread" -cpu "$cpu" -m "$mem" -smp "$smp" \
		-display none "${monitor_opt[@]}" -serial stdio -no-reboot -nodefaults -pidfile "$work/qemu.pid" \
		-kernel "$vmlinuz" -initrd "$work/initramfs.cpio" -append "$append" </dev/null 2>"$work/qemu.err" |
		sed -u 's/\r//g' | tee "$clog" # unbuffered: a hang shows its last line
	qemu_rc=${PIPESTATUS[0]}
	set -e
	t_end=$(date +%s.%N)
	[ -z "$watcher" ] || { kill "$watcher" 2>/dev/null; wait "$watcher" 2>/dev/null; } || true
	grep -v "TCG doesn't support requested feature" "$work/qemu.err" >&2 || true
}

# Reads the markers off the console log, prints the summary, exits.
report() {
	local kvm_line init_at done_rc wall
	kvm_line=$(grep -a "^$M KVM " "$clog" | head -1 | cut -d' ' -f3- || true)
	init_at=$(grep -a "^$M INIT " "$clog" | head -1 | cut -d' ' -f3 || true)
	done_rc=$(grep -a "^$M DONE " "$clog" | tail -1 | cut -d' ' -f3 || true)
	wall=$(awk -v a="$t_start" -v b="$t_end" 'BEGIN { printf "%.1f", b - a }')
	echo
	kvm_line=$(tr ' ' '\n' <<<"${kvm_line:-?}" | grep -vE '^(pause_filter|dump_|force_|intercept_)' | xargs)
	say "==== summary: Linux $kvm_line (QEMU TCG, -cpu $cpu, -smp $smp)"
	say "host preparation (packages, kernel, initramfs): $prep s; boot to /init: ${init_at:-?} s" \
		"(guest uptime); whole VM: $wall s wall"
	grep -a "^$M EXIT " "$clog" | while read -r _ _ rc secs name; do
		printf 'kvm-vm:   %-4s %-40s exit %-3s %7.1f s\n' "$([ "$rc" = 0 ] && echo ok || echo FAIL)" "$name" "$rc" "$secs"
	done || true
	[ ! -e "$work/kicks" ] || sed 's/^/kvm-vm:   stall kick: /' "$work/kicks"
	# Kernel lines only ("[ seconds] ..."), so a test's own output cannot match.
	local klog='^\[ *[0-9]+\.[0-9]+\] '
	if [ -e "$work/stalled" ]; then
		say "!!! STALLED: the console $(cat "$work/stalled"); killed. QEMU's monitor said:"
		tr -d '\r' <"$work/monitor.log" | grep -av -e '^QEMU .*monitor' -e $'\e' -e '^[XY]MM' -e '^FPR' |
			grep -a . | head -150 |
			sed 's/^/kvm-vm:   monitor: /' || true
		grep -a "^$M RUN " "$clog" | tail -1 | sed 's/^.*RUN /kvm-vm:   the command running: /' || true
		exit 125
	fi
	if grep -aqE "$klog(Kernel panic|BUG: |Oops|general protection fault|watchdog: BUG)" "$clog"; then
		say "!!! THE VM'S KERNEL PANICKED OR OOPSED (see above):"
		grep -aE "$klog(Kernel panic|BUG: |Oops|general protection fault|watchdog: BUG|RIP: )" "$clog" |
			head -10 | sed 's/^/kvm-vm:   /'
		exit 126
	fi
	if [ "$qemu_rc" = 124 ] || [ "$qemu_rc" = 137 ]; then
		say "!!! TIMEOUT: the VM did not finish within ${timeout_s}s (killed)"
		grep -aE "$klog(INFO: task .* blocked for more than|rcu: INFO)" "$clog" | head -5 |
			sed 's/^/kvm-vm:   the kernel saw: /' || true
		grep -a "^$M RUN " "$clog" | tail -1 | sed 's/^.*RUN /kvm-vm:   the command running: /' || true
		exit 125
	fi
	grep -aq "^$M NOKVM" "$clog" && { say "!!! NO /dev/kvm INSIDE THE VM (see above)"; exit 126; }
	[ -n "$done_rc" ] || { say "!!! the VM stopped before its commands finished (QEMU exit $qemu_rc)"; exit 126; }
	say "result: exit $done_rc"
	exit "$done_rc"
}

main() {
	t_main=$(date +%s.%N)
	parse_args "$@"
	ensure_packages
	work=$(mktemp -d "${TMPDIR:-/tmp}/kvm-vm-XXXXXX")
	trap 'rm -rf "$work"' EXIT
	root=$work/root
	clog=${log:-$work/console.log}
	case "$kernel" in
	6.1) kernel_61 ;;
	6.12) kernel_612 ;;
	*) die "--kernel $kernel: use 6.1 or 6.12" ;;
	esac
	[ "$prepare" = 1 ] && { say "ready: $vmlinuz"; exit 0; }
	build_initramfs
	prep=$(awk -v a="$t_main" -v b="$(date +%s.%N)" 'BEGIN { printf "%.1f", b - a }')
	[ ${#cmds[@]} -gt 0 ] || say "no commands: only checking that /dev/kvm comes up"
	boot
	report
}

main "$@"
