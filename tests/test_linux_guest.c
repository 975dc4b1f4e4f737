/* SPDX-License-Identifier: Apache-2.0 */
/*
 * A real Linux guest on real /dev/kvm, snapshotted while it runs, through the
 * CLI as a user would drive it.
 *
 * The group setup boots Debian's kernel (SQUIB_LINUX_KERNEL, else
 * /boot/vmlinuz-*-cloud-amd64, else any /boot/vmlinuz-*) with the initramfs
 * of tests/guests/linux/init (SQUIB_LINUX_INITRD, built by the squib_guests
 * step) under `squib-snapshot run --kernel ... --diff ... --hold`: the guest's
 * /init prints "squib-count N irqs I date D uptime U" four times a second and
 * complains ("squib-error: ...") when the interrupt count or the date stop
 * moving. run saves a Full pair while the guest runs, then a Diff, keeps the
 * guest running, and is SIGKILLed. Every test then restores in a fresh
 * process and checks what the guest prints: its console output before the
 * snapshot (the run's console file cut at the byte count the saved UART
 * holds) followed by the restored guest's output must count on without a
 * gap or a repeat, the uptime must not go back, and no kernel panic, oops,
 * soft lockup or squib-error may appear; the kernel logs at loglevel 5, so
 * warnings reach the console, and a clocksource watchdog complaint (the
 * guest TSC and kvm-clock apart across the restore) is printed as a note.
 *
 * Under nested TCG (no /dev/kvm on the host, KVM inside a QEMU VM) the boot
 * takes 15-60 s; each step prints how long it took. Skipped (exit 77, one
 * line) only when /dev/kvm does not exist.
 */
#include "testutil.h"

#include <glob.h>
#include <stdbool.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include <squib/kvm.h>

#include "spawn.h"

#define RAM_MIB "256"
#define REPORTS "4" /* console lines before each save */
/* Console lines after each restore: 3+ counter lines even when the kernel prints a
 * 4-line clocksource warning among them. */
#define RESTORE_REPORTS "9"
#define BOOT_WAIT_MS	(5 * 60 * 1000) /* a nested boot + saves take 10-60 s: 5 min is a hang */
/* run's own limit, below BOOT_WAIT_MS: a hung boot ends with run's dump of the guest state. */
#define RUN_BOOT_TIMEOUT "240"
#define LINE_WAIT_S	 120 /* the same for a guest that stopped printing */
#define CMDLINE                                                                                    \
	"console=ttyS0 acpi=off pci=off nokaslr 8250.nr_uarts=1 i8042.noaux i8042.nokbd "          \
	"i8042.nomux panic=0 initcall_blacklist=cmos_init loglevel=5"

struct linux_pairs {
	char *dir;
	char *run_console; /* everything the guest printed under `run`, to the kill */
	uint64_t full_bytes, diff_bytes;
};

static double now_s(void)
{
	struct timespec t;

	clock_gettime(CLOCK_MONOTONIC, &t);
	return (double)t.tv_sec + (double)t.tv_nsec / 1e9;
}

static char *kernel_path(void)
{
	static const char *const patterns[] = {"/boot/vmlinuz-*-cloud-amd64", "/boot/vmlinuz-*"};
	const char *env = getenv("SQUIB_LINUX_KERNEL");
	char *path = NULL;

	if (env)
		return strdup(env);
	for (size_t i = 0; !path && i < 2; i++) {
		glob_t g;

		if (glob(patterns[i], 0, NULL, &g) == 0 && g.gl_pathc)
			path = strdup(g.gl_pathv[0]);
		globfree(&g);
	}
	if (!path)
		fail_msg("no kernel: set SQUIB_LINUX_KERNEL or install linux-image-cloud-amd64");
	return path;
}

static char *initrd_path(void)
{
	const char *env = getenv("SQUIB_LINUX_INITRD");
	const char *build = getenv("SQUIB_BUILD_DIR");
	char buf[4096];

	if (env)
		return strdup(env);
	snprintf(buf, sizeof(buf), "%s/tests/guests/linux-initramfs.cpio.gz", build ? build : ".");
	return strdup(buf);
}

static char *read_text(const char *dir, const char *name)
{
	char *path = squib_test_path(dir, name);
	uint8_t *buf = NULL;
	size_t len = 0;
	int r = squib_test_read_file(path, &buf, &len);
	char *s;

	if (r)
		fail_msg("%s: %s", path, strerror(-r));
	s = malloc(len + 1);
	assert_non_null(s);
	memcpy(s, buf, len);
	s[len] = '\0';
	free(buf);
	free(path);
	return s;
}

static void cli(const char *dir, char *const *args, struct squib_test_proc *p)
{
	char *argv[24];
	const char *path = squib_test_cli_path();
	size_t n = 0;
	double t0 = now_s();

	argv[n++] = (char *)path;
	while (*args && n < 23)
		argv[n++] = *args++;
	argv[n] = NULL;
	squib_test_spawn(dir, argv, p);
	printf("[linux] squib-snapshot %s ... took %.1f s\n", argv[1], now_s() - t0);
}

/* The number after `key` in text (e.g. "saved console: 12 lines, 345 bytes"). */
static uint64_t number_after(const char *text, const char *key)
{
	const char *at = strstr(text, key);

	if (!at)
		fail_msg("no '%s' in '%s'", key, text);
	return strtoull(at + strlen(key), NULL, 10);
}

/* No sign of a guest in trouble. */
static void assert_guest_healthy(const char *console)
{
	static const char *const bad[] = {"squib-error", "Kernel panic", "soft lockup", "Oops",
					  "BUG:",	 "Call Trace",	 "hung_task"};
	const char *skew = strstr(console, "Marking clocksource");

	for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++)
		if (strstr(console, bad[i]))
			fail_msg("the guest printed '%s':\n%s", bad[i], console);
	/* Reported, not failed: see DESIGN.md §13, "A Linux guest" (a sub-ms TSC skew
	 * remains under nested TCG; kvm-clock stays the clocksource, time never goes back). */
	if (skew)
		printf("[linux] note: the guest's clocksource watchdog complained: %.*s\n",
		       (int)strcspn(skew, "\n"), skew);
}

/*
 * before[0, cut) is what the guest had printed when it was saved; after is
 * what the restored guest printed. Together they must count 1, 2, 3, ... on
 * with the uptime never going back, and the restored guest must have counted
 * at least min_new times. Returns the first count printed after the cut.
 */
static uint64_t assert_counts_on(const char *before, uint64_t cut, const char *after,
				 uint64_t min_new)
{
	size_t blen = strlen(before), alen = strlen(after);
	char *all = malloc(cut + alen + 1);
	uint64_t expect = 1, first_new = 0, fresh = 0;
	double last_up = 0;
	const char *p;

	assert_non_null(all);
	if (cut > blen)
		fail_msg("the saved console has %llu bytes, the run printed %zu",
			 (unsigned long long)cut, blen);
	memcpy(all, before, cut);
	memcpy(all + cut, after, alen + 1);
	for (p = strstr(all, "squib-count "); p; p = strstr(p + 1, "squib-count ")) {
		char *end;
		uint64_t n;
		const char *up;

		if (!strchr(p, '\n'))
			break; /* the last line, cut short by the SIGKILL (or not yet ended) */
		n = strtoull(p + 12, &end, 10);
		up = strstr(end, " uptime ");
		if (n != expect)
			fail_msg("count %llu where %llu was due, at byte %zu (cut at %llu):\n%s",
				 (unsigned long long)n, (unsigned long long)expect,
				 (size_t)(p - all), (unsigned long long)cut, all + cut);
		if (up && strchr(end, '\n') > up) {
			double u = strtod(up + 8, NULL);

			if (u < last_up)
				fail_msg("uptime went back: %.2f -> %.2f", last_up, u);
			last_up = u;
		}
		if ((uint64_t)(p - all) >= cut && !fresh++)
			first_new = n;
		expect++;
	}
	free(all);
	if (fresh < min_new)
		fail_msg("the restored guest counted %llu times (at least %llu due):\n%s",
			 (unsigned long long)fresh, (unsigned long long)min_new, after);
	return first_new;
}

/* ---- the group: one boot, a Full and a Diff saved while it runs, SIGKILL -------------- */

static void print_run_output(const char *out)
{
	const char *line = out;

	while (line && *line) {
		const char *nl = strchr(line, '\n');
		int len = nl ? (int)(nl - line) : (int)strlen(line);

		printf("[linux] run: %.*s\n", len, line);
		line = nl ? nl + 1 : NULL;
	}
}

/* The saved guest goes on: its console grows past what the Diff holds. */
static void wait_console_beyond(const char *dir, uint64_t bytes)
{
	char *path = squib_test_path(dir, "run-console.txt");
	double end = now_s() + LINE_WAIT_S;
	struct stat st;

	while (stat(path, &st) == 0 && (uint64_t)st.st_size <= bytes + 64) {
		if (now_s() > end)
			fail_msg("the guest printed nothing for %d s after the saves", LINE_WAIT_S);
		usleep(20000);
	}
	free(path);
}

/*
 * Until run has booted and saved. A hang fails with what the guest printed last and, when
 * run gave up by itself (--boot-timeout), run's dump of the vCPU and interrupt state.
 */
static void wait_for_saves(const char *dir, struct squib_test_bg *b)
{
	double end = now_s() + BOOT_WAIT_MS / 1000.0;
	bool exited = false;
	char *console;
	size_t n;

	while (!strstr(b->obuf, "holding:") && !exited && now_s() < end) {
		squib_test_bg_pump(b);
		exited = b->out < 0 && b->err < 0; /* both pipes at EOF: run is gone */
		usleep(20000);
	}
	if (strstr(b->obuf, "holding:"))
		return;
	console = read_text(dir, "run-console.txt");
	n = strlen(console);
	printf("[linux] no saves (%s); run's stdout '%s', stderr:\n%s\nthe console's last 2000 "
	       "bytes:\n%s\n",
	       exited ? "run gave up" : "the test's own limit", b->obuf, b->ebuf,
	       console + (n > 2000 ? n - 2000 : 0));
	free(console);
	kill(b->pid, SIGKILL);
	fail_msg("run did not boot and save the Linux guest");
}

static void boot_and_save(struct linux_pairs *lp)
{
	char *kernel = kernel_path(), *initrd = initrd_path();
	char *argv[] = {squib_test_cli_path(),
			"run",
			"--kernel",
			kernel,
			"--initrd",
			initrd,
			"--cmdline",
			CMDLINE,
			"--ram",
			RAM_MIB,
			"--reports",
			REPORTS,
			"--diff",
			"vm2.snap",
			"--console",
			"run-console.txt",
			"--boot-timeout",
			RUN_BOOT_TIMEOUT,
			"--hold",
			"vm.snap",
			NULL};
	struct squib_test_bg b;
	double t0 = now_s();

	if (!squib_test_exists(initrd))
		fail_msg("%s is missing: build the squib_linux_initramfs target (needs "
			 "busybox-static and cpio)",
			 initrd);
	printf("[linux] booting %s with %s (%s MiB); a nested TCG boot takes a while\n", kernel,
	       initrd, RAM_MIB);
	squib_test_bg_start(lp->dir, argv, &b);
	wait_for_saves(lp->dir, &b);
	printf("[linux] boot, Full and Diff saves took %.1f s\n", now_s() - t0);
	print_run_output(b.obuf);
	lp->full_bytes = number_after(b.obuf, "lines, ");
	lp->diff_bytes = number_after(strstr(b.obuf, "diff over"), "lines, ");
	wait_console_beyond(lp->dir, lp->diff_bytes);
	kill(b.pid, SIGKILL);
	assert_int_equal(squib_test_bg_finish(&b, 10000), 128 + SIGKILL);
	lp->run_console = read_text(lp->dir, "run-console.txt");
	free(kernel);
	free(initrd);
}

static int group_setup(void **state)
{
	struct linux_pairs *lp = calloc(1, sizeof(*lp));

	assert_non_null(lp);
	lp->dir = squib_test_tmpdir();
	boot_and_save(lp);
	*state = lp;
	return 0;
}

static int group_teardown(void **state)
{
	struct linux_pairs *lp = *state;

	if (lp) {
		squib_test_rmtree(lp->dir);
		free(lp->dir);
		free(lp->run_console);
		free(lp);
	}
	return 0;
}

/* ---- tests ------------------------------------------------------------------------------- */

static void test_should_boot_linux_and_save_it_while_it_runs(void **state)
{
	struct linux_pairs *lp = *state;
	char *mem = squib_test_path(lp->dir, "vm.mem");
	struct stat st;
	const char *init = strstr(lp->run_console, "squib-init: up"), *warn;

	assert_non_null(init);
	/*
	 * From /init on. Before it, nested TCG's CPU model makes the kernel warn once
	 * (with a call trace) that the XSAVE size CPUID reports is not the sum of the
	 * enabled components (TCG has no AVX); printed, not failed.
	 */
	if ((warn = strstr(lp->run_console, "WARNING:")) && warn < init)
		printf("[linux] note: the kernel warned during boot: %.*s\n",
		       (int)strcspn(warn, "\n"), warn);
	assert_guest_healthy(init);
	/* It kept counting after both saves (the run was killed, not the guest stopped). */
	assert_true(lp->full_bytes < lp->diff_bytes);
	assert_true(lp->diff_bytes < strlen(lp->run_console));
	assert_counts_on(lp->run_console, strlen(lp->run_console), "", 0);
	/* A sparse Full file: RAM-sized, but only the pages the guest touched are data. */
	assert_int_equal(stat(mem, &st), 0);
	assert_true((uint64_t)st.st_size >= (uint64_t)atoi(RAM_MIB) << 20);
	assert_true((uint64_t)st.st_blocks * 512 < (uint64_t)st.st_size);
	printf("[linux] vm.mem: %lld bytes for %s MiB of RAM, %lld KiB allocated\n",
	       (long long)st.st_size, RAM_MIB, (long long)st.st_blocks / 2);
	free(mem);
}

/* restore, then the counter from where the pair left it. */
static void restore_and_check(struct linux_pairs *lp, char *const *args, uint64_t cut,
			      const char *console)
{
	struct squib_test_proc p;
	uint64_t first;
	char *after;

	cli(lp->dir, args, &p);
	if (p.status)
		fail_msg("restore: exit %d: %s%s", p.status, p.out, p.err);
	printf("[linux] %s", p.out);
	assert_int_equal(number_after(p.out, "lines, "), cut);
	assert_non_null(strstr(p.out, "first console line "));
	after = read_text(lp->dir, console);
	assert_guest_healthy(after);
	first = assert_counts_on(lp->run_console, cut, after, 3);
	printf("[linux] the restored guest counted on from %llu\n", (unsigned long long)first);
	free(after);
	squib_test_proc_free(&p);
}

static void test_should_continue_the_counter_after_sigkill_and_restore(void **state)
{
	struct linux_pairs *lp = *state;

	restore_and_check(lp,
			  (char *[]){"restore", "vm.snap", "--reports", RESTORE_REPORTS,
				     "--console", "r1.txt", NULL},
			  lp->full_bytes, "r1.txt");
}

static void test_should_continue_from_the_diff_chain_and_from_its_rebase(void **state)
{
	struct linux_pairs *lp = *state;
	struct squib_test_proc p;
	char *src = squib_test_path(lp->dir, "vm2.snap"),
	     *dst = squib_test_path(lp->dir, "rb.snap");
	uint8_t *buf;
	size_t len;

	restore_and_check(lp,
			  (char *[]){"restore", "vm2.snap", "--chain", "vm.mem", "--reports",
				     RESTORE_REPORTS, "--console", "r2.txt", NULL},
			  lp->diff_bytes, "r2.txt");
	assert_int_equal(squib_test_read_file(src, &buf, &len), 0);
	assert_int_equal(squib_test_write_file(dst, buf, len), 0);
	free(buf);
	cli(lp->dir,
	    (char *[]){"rebase", "--base", "vm.mem", "--diff", "vm2.mem", "--out", "rb.mem",
		       "--state", "rb.snap", NULL},
	    &p);
	if (p.status)
		fail_msg("rebase: %s%s", p.out, p.err);
	squib_test_proc_free(&p);
	restore_and_check(lp,
			  (char *[]){"restore", "rb.snap", "--mem-backend", "file", "--reports",
				     RESTORE_REPORTS, "--console", "r3.txt", NULL},
			  lp->diff_bytes, "r3.txt");
	free(src);
	free(dst);
}

static void test_should_continue_when_restored_lazily_through_serve(void **state)
{
	struct linux_pairs *lp = *state;
	char *argv[] = {squib_test_cli_path(), "serve", "--socket", "h.sock", "--mem", "vm.mem",
			"--state", "vm.snap", NULL};
	struct squib_test_bg h;

	if (squib_test_uffd_missing("lazy restore of the Linux guest"))
		skip();
	squib_test_bg_start(lp->dir, argv, &h);
	squib_test_bg_wait_for(&h, "listening on h.sock", 10000);
	restore_and_check(lp,
			  (char *[]){"restore", "vm.snap", "--uffd-sock", "h.sock", "--reports",
				     RESTORE_REPORTS, "--console", "r4.txt", NULL},
			  lp->full_bytes, "r4.txt");
	assert_int_equal(squib_test_bg_finish(&h, 10000), 0);
	printf("[linux] serve: %s", h.obuf);
	assert_null(strstr(h.obuf, "pages copied 0,")); /* it served the guest's pages */
}

static void test_should_describe_and_verify_the_linux_pairs(void **state)
{
	struct linux_pairs *lp = *state;
	struct squib_test_proc p;

	cli(lp->dir, (char *[]){"describe", "vm.snap", NULL}, &p);
	assert_int_equal(p.status, 0);
	assert_non_null(strstr(p.out, "uart-16550: serial0"));
	assert_non_null(strstr(p.out, "memory kind:         full"));
	printf("[linux] describe vm.snap: present bytes %llu of %s MiB\n",
	       (unsigned long long)number_after(p.out, "present bytes:"), RAM_MIB);
	squib_test_proc_free(&p);
	cli(lp->dir, (char *[]){"describe", "vm2.snap", NULL}, &p);
	assert_int_equal(p.status, 0);
	assert_non_null(strstr(p.out, "memory kind:         diff"));
	squib_test_proc_free(&p);
	for (int i = 0; i < 3; i++) {
		char *state_file = (char *[]){"vm.snap", "vm2.snap", "rb.snap"}[i];
		char *path = squib_test_path(lp->dir, state_file);
		bool there = squib_test_exists(path);

		free(path);
		if (!there)
			continue; /* rb.snap: the rebase test did not run first */
		cli(lp->dir, (char *[]){"verify", state_file, NULL}, &p);
		if (p.status)
			fail_msg("verify %s: %s%s", state_file, p.out, p.err);
		assert_non_null(strstr(p.out, "pair binding:     ok"));
		squib_test_proc_free(&p);
	}
}

/*
 * A boot that does not reach the ready line in --boot-timeout: run fails and prints what
 * the vCPU and the interrupt controllers hold, so a hang can be diagnosed after the fact
 * (RIP and RFLAGS, the LAPIC's and PICs' pending and in-service vectors, the PIT).
 */
static void test_should_print_the_guest_state_when_the_boot_times_out(void **state)
{
	struct linux_pairs *lp = *state;
	char *kernel = kernel_path(), *initrd = initrd_path();
	static const char *const expected[] = {"guest state, sample 1 of 3",
					       "vcpu 0: exits ",
					       " rip 0x",
					       "mp_state ",
					       "lapic: id ",
					       "pic master: irr ",
					       "pit: ",
					       "guest state, sample 3 of 3",
					       "no console line with 'squib-never-printed' in 1 s"};
	struct squib_test_proc p;

	cli(lp->dir,
	    (char *[]){"run", "--kernel", kernel, "--initrd", initrd, "--cmdline", CMDLINE, "--ram",
		       RAM_MIB, "--ready", "squib-never-printed", "--boot-timeout", "1",
		       "--console", "timeout-console.txt", "timeout.snap", NULL},
	    &p);
	assert_int_equal(p.status, 1);
	for (size_t i = 0; i < sizeof(expected) / sizeof(expected[0]); i++)
		if (!strstr(p.err, expected[i]))
			fail_msg("no '%s' in run's stderr:\n%s", expected[i], p.err);
	printf("[linux] run's dump of a guest stopped 1 s into its boot:\n%.*s", 1500, p.err);
	squib_test_proc_free(&p);
	free(kernel);
	free(initrd);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
	    cmocka_unit_test(test_should_boot_linux_and_save_it_while_it_runs),
	    cmocka_unit_test(test_should_continue_the_counter_after_sigkill_and_restore),
	    cmocka_unit_test(test_should_continue_from_the_diff_chain_and_from_its_rebase),
	    cmocka_unit_test(test_should_continue_when_restored_lazily_through_serve),
	    cmocka_unit_test(test_should_describe_and_verify_the_linux_pairs),
	    cmocka_unit_test(test_should_print_the_guest_state_when_the_boot_times_out),
	};

	if (!squib_kvm_available(NULL)) {
		fprintf(
		    stderr,
		    "*** SKIPPED test_linux_guest: /dev/kvm does not exist on this machine ***\n");
		return 77;
	}
	if (squib_test_kvm_pvm_skips("test_linux_guest"))
		return 77;
	setvbuf(stdout, NULL, _IOLBF, 0);
	return cmocka_run_group_tests(tests, group_setup, group_teardown);
}
