/* SPDX-License-Identifier: Apache-2.0 */
/*
 * The CLI end to end: `verify` and `rebase` on snapshot pairs built with the
 * library, `describe` of a state with a memory section, and --help for every
 * subcommand. The program runs as a child process (tests/support/spawn.h).
 */
#include "pair.h"
#include "spawn.h"
#include "testutil.h"

#include <errno.h>
#include <jansson.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <signal.h>
#include <string.h>
#include <time.h>
#include <unistd.h>
#include <sys/mman.h>
#include <sys/mount.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/sysmacros.h>
#include <sys/un.h>
#include <unistd.h>

#include <squib/snapshot.h>

#define PAGES 48
#define MAX_ARGS 16
/* Offset in a verify line where the result starts ("state structure:  ok"). */
#define VALUE_COLUMN 18

/*
 * A chain built in a temp dir from one piece of guest RAM:
 *   base.mem (full, digests) + base.snap;
 *   d1.mem (pages 1, 2, 5 rewritten, page 5 was zero) + d1.snap;
 *   d2.mem (pages 2, 30, 31 rewritten, digests) + d2.snap;
 *   final.mem: a direct full snapshot (digests) of the RAM after d2.
 */
struct fx {
	char *dir;
	uint64_t ps, ram;
	uint8_t *mem;
	char *base, *base_snap, *d1, *d1_snap, *d2, *d2_snap, *final;
	struct squib_memfile_manifest m0, m1, m2;
};

static int setup(void **state)
{
	static const uint64_t a[] = {1, 2, 5}, b[] = {2, 30, 31};
	struct fx *f = calloc(1, sizeof(*f));

	assert_non_null(f);
	f->dir = squib_test_tmpdir();
	f->ps = squib_test_page_size();
	f->ram = PAGES * f->ps;
	f->mem = squib_test_guest_ram(f->ram, 21);
	memset(f->mem + 4 * f->ps, 0, 4 * f->ps); /* pages 4..7 are holes in the base */
	f->base = squib_test_path(f->dir, "base.mem");
	f->base_snap = squib_test_path(f->dir, "base.snap");
	f->d1 = squib_test_path(f->dir, "d1.mem");
	f->d1_snap = squib_test_path(f->dir, "d1.snap");
	f->d2 = squib_test_path(f->dir, "d2.mem");
	f->d2_snap = squib_test_path(f->dir, "d2.snap");
	f->final = squib_test_path(f->dir, "final.mem");
	squib_test_save_full(f->base, f->mem, f->ram, true, &f->m0);
	squib_test_save_state(f->base_snap, &f->m0.layout);
	for (size_t i = 0; i < 3; i++)
		squib_test_fill_page(f->mem, a[i], 22);
	squib_test_save_diff(f->d1, f->mem, f->ram, f->m0.layout.id, a, 3, false, &f->m1);
	squib_test_save_state(f->d1_snap, &f->m1.layout);
	for (size_t i = 0; i < 3; i++)
		squib_test_fill_page(f->mem, b[i], 23);
	squib_test_save_diff(f->d2, f->mem, f->ram, f->m1.layout.id, b, 3, true, &f->m2);
	squib_test_save_state(f->d2_snap, &f->m2.layout);
	squib_test_save_full(f->final, f->mem, f->ram, true, NULL);
	*state = f;
	return 0;
}

static int teardown(void **state)
{
	struct fx *f = *state;

	squib_memfile_manifest_release(&f->m0);
	squib_memfile_manifest_release(&f->m1);
	squib_memfile_manifest_release(&f->m2);
	munmap(f->mem, f->ram);
	squib_test_rmtree(f->dir);
	free(f->base);
	free(f->base_snap);
	free(f->d1);
	free(f->d1_snap);
	free(f->d2);
	free(f->d2_snap);
	free(f->final);
	free(f->dir);
	free(f);
	return 0;
}

/* ---- helpers ---- */

/* Run the CLI in cwd (NULL: here) with the NULL-terminated arguments. */
static void cli(struct squib_test_proc *p, const char *cwd, ...)
{
	char *argv[MAX_ARGS + 2] = {squib_test_cli_path()};
	size_t n = 1;
	va_list ap;
	const char *a;

	va_start(ap, cwd);
	while ((a = va_arg(ap, const char *)) && n <= MAX_ARGS)
		argv[n++] = (char *)a;
	va_end(ap);
	argv[n] = NULL;
	squib_test_spawn(cwd, argv, p);
}

static void assert_contains(const char *hay, const char *needle)
{
	if (!strstr(hay, needle))
		fail_msg("expected to find \"%s\" in:\n%s", needle, hay);
}

/* The verify line of check `name` (heap copy without the newline). */
static char *line_of(const char *out, const char *name)
{
	size_t n = strlen(name);

	for (const char *l = out; *l;) {
		const char *end = strchr(l, '\n');
		size_t len = end ? (size_t)(end - l) : strlen(l);

		if (len > n && !strncmp(l, name, n) && l[n] == ':') {
			char *s = strndup(l, len);

			assert_non_null(s);
			return s;
		}
		l += len + (end ? 1 : 0);
	}
	fail_msg("no \"%s:\" line in:\n%s", name, out);
	return NULL;
}

/* Check `name`'s result starts with `value` ("ok", "FAIL: ", "skipped: ...") at the column. */
static void expect_line(const char *out, const char *name, const char *value)
{
	char *l = line_of(out, name);

	if (strlen(l) <= VALUE_COLUMN || strncmp(l + VALUE_COLUMN, value, strlen(value)) ||
	    l[VALUE_COLUMN - 1] != ' ')
		fail_msg("line \"%s\": expected \"%s\" at column %d", l, value, VALUE_COLUMN + 1);
	free(l);
}

static const char *const check_names[] = {
	"state file",	   "state crc",	      "state magic",	 "state version",
	"state structure", "compatibility",   "memory file",	 "memory footer",
	"memory manifest", "manifest bounds", "pair binding",	 "extent digests",
};
#define N_CHECKS (sizeof(check_names) / sizeof(check_names[0]))

static void expect_all(const char *out, const char *value)
{
	assert_int_equal(squib_test_count_lines(out), N_CHECKS);
	for (size_t i = 0; i < N_CHECKS; i++)
		expect_line(out, check_names[i], value);
}

static uint8_t *slurp(const char *path, size_t *len)
{
	uint8_t *buf;

	assert_int_equal(squib_test_read_file(path, &buf, len), 0);
	return buf;
}

/* ---- verify ---- */

static void test_should_verify_a_good_pair_with_every_line_ok(void **state)
{
	struct fx *f = *state;
	struct squib_test_proc p;
	char id[33];

	cli(&p, NULL, "verify", f->base_snap, NULL);
	assert_int_equal(p.status, 0);
	expect_all(p.out, "ok");
	squib_memfile_id_hex(f->m0.layout.id, id);
	assert_contains(p.out, id);
	assert_contains(p.out, f->base); /* the inferred memory path, shown */
	assert_string_equal(p.err, "");
	squib_test_proc_free(&p);
}

static void test_should_verify_a_diff_pair(void **state)
{
	struct fx *f = *state;
	struct squib_test_proc p;

	cli(&p, NULL, "verify", f->d1_snap, NULL);
	assert_int_equal(p.status, 0);
	expect_line(p.out, "memory footer", "ok (diff");
	expect_line(p.out, "extent digests", "skipped: the memory file records no digests");
	squib_test_proc_free(&p);
}

static void test_should_skip_memory_checks_for_a_state_without_memory_section(void **state)
{
	char *dir = squib_test_fixture("");
	struct squib_test_proc p;

	(void)state;
	cli(&p, dir, "verify", "demo.snap", NULL);
	assert_int_equal(p.status, 0);
	for (size_t i = 0; i < N_CHECKS; i++)
		expect_line(p.out, check_names[i],
			    i < 6 ? "ok" : "skipped: the state has no memory section");
	squib_test_proc_free(&p);
	free(dir);
}

static void test_should_exit_2_for_a_flipped_state_bit(void **state)
{
	struct fx *f = *state;
	struct squib_test_proc p;

	squib_test_xor_byte(f->base_snap, (int64_t)squib_test_file_size(f->base_snap) / 2, 0x08);
	cli(&p, NULL, "verify", f->base_snap, NULL);
	assert_int_equal(p.status, 2);
	expect_line(p.out, "state crc", "FAIL: snapshot CRC64 mismatch");
	squib_test_proc_free(&p);
}

static void test_should_exit_2_for_another_snapshots_memory_file_naming_both_ids(void **state)
{
	struct fx *f = *state;
	struct squib_memfile_manifest other;
	struct squib_test_proc p;
	char want[33], have[33];

	assert_int_equal(squib_memfile_verify(f->final, false, &other, NULL), 0);
	squib_memfile_id_hex(f->m0.layout.id, want);
	squib_memfile_id_hex(other.layout.id, have);
	squib_memfile_manifest_release(&other);
	cli(&p, NULL, "verify", f->base_snap, "--mem", f->final, NULL);
	assert_int_equal(p.status, 2);
	expect_line(p.out, "pair binding", "FAIL: snapshot pair mismatch: ");
	assert_contains(p.out, want);
	assert_contains(p.out, have);
	expect_line(p.out, "extent digests", "ok");
	squib_test_proc_free(&p);
}

static void test_should_exit_2_for_a_corrupt_memory_footer(void **state)
{
	struct fx *f = *state;
	struct squib_test_proc p;

	squib_test_xor_byte(f->base, -200, 0x20);
	cli(&p, NULL, "verify", f->base_snap, NULL);
	assert_int_equal(p.status, 2);
	expect_line(p.out, "memory footer",
		    "FAIL: snapshot CRC64 mismatch (memory file footer CRC");
	expect_line(p.out, "pair binding", "skipped: the memory footer is not valid");
	squib_test_proc_free(&p);
}

static void test_should_report_a_missing_memory_file(void **state)
{
	struct fx *f = *state;
	struct squib_test_proc p;

	assert_int_equal(remove(f->base), 0);
	cli(&p, NULL, "verify", f->base_snap, NULL);
	assert_int_equal(p.status, 1);
	expect_line(p.out, "memory file", "FAIL: memory file I/O error: No such file or directory");
	assert_contains(p.out, f->base);
	expect_line(p.out, "pair binding", "skipped: no memory file to check");
	squib_test_proc_free(&p);
}

static void test_should_exit_2_for_digest_corruption_in_the_ram_range(void **state)
{
	struct fx *f = *state;
	struct squib_test_proc p;

	squib_test_xor_byte(f->base, (int64_t)(40 * f->ps + 123), 0x01);
	cli(&p, NULL, "verify", f->base_snap, NULL);
	assert_int_equal(p.status, 2);
	expect_line(p.out, "pair binding", "ok");
	expect_line(p.out, "extent digests", "FAIL: snapshot CRC64 mismatch (/");
	squib_test_proc_free(&p);
	/* --no-digests does not read the pages. */
	cli(&p, NULL, "verify", "--no-digests", f->base_snap, NULL);
	assert_int_equal(p.status, 0);
	expect_line(p.out, "extent digests", "skipped: not requested");
	squib_test_proc_free(&p);
}

static void test_should_draw_progress_into_a_file_only_when_asked(void **state)
{
	struct fx *f = *state;
	struct squib_test_proc p;

	cli(&p, NULL, "verify", f->base_snap, NULL); /* stderr is a file: silent */
	assert_int_equal(p.status, 0);
	assert_string_equal(p.err, "");
	squib_test_proc_free(&p);
	cli(&p, NULL, "verify", f->base_snap, "--progress", NULL);
	assert_int_equal(p.status, 0);
	assert_contains(p.err, "\rdigests [");
	assert_contains(p.err, "] 100%");
	assert_null(strstr(p.err, "\033[K")); /* no terminal escapes into a file */
	assert_int_equal(p.err[p.err_len - 1], '\n');
	expect_all(p.out, "ok");
	squib_test_proc_free(&p);
	cli(&p, NULL, "verify", f->base_snap, "--progress", "--no-progress", NULL);
	assert_string_equal(p.err, "");
	squib_test_proc_free(&p);
}

/* On a terminal the bar appears by itself, but only for 64 MiB of work or more. */
static void test_should_draw_progress_on_a_terminal_only_for_large_files(void **state)
{
	struct fx *f = *state;
	uint64_t big = 64ull << 20;
	char *snap = squib_test_path(f->dir, "big.snap"), *mem = squib_test_path(f->dir, "big.mem");
	struct squib_memfile_manifest m;
	struct squib_test_proc p;
	uint8_t *ram = mmap(NULL, big, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);

	assert_true(ram != MAP_FAILED);
	squib_test_spawn_tty_stderr(
	    NULL, (char *[]){squib_test_cli_path(), "verify", f->base_snap, NULL}, &p);
	assert_int_equal(p.status, 0);
	assert_string_equal(p.err, ""); /* small: nothing drawn */
	squib_test_proc_free(&p);
	memset(ram, 0xa5, big);
	squib_test_save_full(mem, ram, big, true, &m);
	munmap(ram, big);
	squib_test_save_state(snap, &m.layout);
	squib_memfile_manifest_release(&m);
	squib_test_spawn_tty_stderr(NULL, (char *[]){squib_test_cli_path(), "verify", snap, NULL},
				    &p);
	assert_int_equal(p.status, 0);
	assert_contains(p.err, "\rdigests [");
	assert_contains(p.err, "] 100%  64.0 MiB / 64.0 MiB\033[K");
	expect_all(p.out, "ok");
	squib_test_proc_free(&p);
	squib_test_spawn_tty_stderr(
	    NULL, (char *[]){squib_test_cli_path(), "verify", "--no-progress", snap, NULL}, &p);
	assert_int_equal(p.status, 0);
	assert_string_equal(p.err, "");
	squib_test_proc_free(&p);
	free(snap);
	free(mem);
}

static void test_should_exit_1_on_verify_usage_errors(void **state)
{
	struct squib_test_proc p;

	(void)state;
	cli(&p, NULL, "verify", NULL);
	assert_int_equal(p.status, 1);
	assert_contains(p.err, "missing STATE");
	assert_contains(p.err, "usage: squib-snapshot verify");
	squib_test_proc_free(&p);
	cli(&p, NULL, "verify", "a.snap", "--mem", NULL);
	assert_int_equal(p.status, 1);
	assert_contains(p.err, "--mem needs a PATH");
	squib_test_proc_free(&p);
	cli(&p, NULL, "verify", "a.snap", "--bogus", NULL);
	assert_int_equal(p.status, 1);
	assert_contains(p.err, "unknown option '--bogus'");
	squib_test_proc_free(&p);
	cli(&p, NULL, "verify", "a.snap", "b.snap", NULL);
	assert_int_equal(p.status, 1);
	assert_contains(p.err, "more than one STATE");
	squib_test_proc_free(&p);
}

static void test_should_report_an_unreadable_state_file(void **state)
{
	struct squib_test_proc p;

	(void)state;
	cli(&p, NULL, "verify", "/nonexistent/squib/x.snap", NULL);
	assert_int_equal(p.status, 1);
	expect_line(p.out, "state file", "FAIL: snapshot I/O error: No such file or directory");
	expect_line(p.out, "state crc", "skipped: the state file is unreadable");
	squib_test_proc_free(&p);
}

/* ---- rebase ---- */

/* The two memory files hold the same pages and manifest byte for byte; only
 * the footer's id (a fresh one for every full snapshot) and so the footer's
 * CRC may differ. */
static void assert_same_image(const char *a, const char *b)
{
	size_t al, bl, foot;
	uint8_t *x = slurp(a, &al), *y = slurp(b, &bl);

	assert_int_equal(al, bl);
	foot = al - SQUIB_MEMFILE_FOOTER_SIZE;
	assert_memory_equal(x, y, foot); /* RAM range and manifest area */
	assert_memory_equal(x + foot, y + foot, 24);
	assert_memory_equal(x + foot + 40, y + foot + 40, SQUIB_MEMFILE_FOOTER_SIZE - 40 - 8);
	free(x);
	free(y);
}

static void test_should_rebase_a_chain_into_the_same_image_as_a_full_snapshot(void **state)
{
	struct fx *f = *state;
	char *out = squib_test_path(f->dir, "merged.mem");
	struct squib_memfile_manifest m;
	struct squib_test_proc p;
	size_t before_len, after_len;
	uint8_t *before = slurp(f->base, &before_len), *after;

	cli(&p, NULL, "rebase", "--base", f->base, "--diff", f->d1, "--diff", f->d2, "--out", out,
	    "--digests", NULL);
	assert_int_equal(p.status, 0);
	assert_string_equal(p.err, "");
	assert_contains(p.out, "merged.mem: full, id ");
	squib_test_proc_free(&p);
	assert_same_image(out, f->final);
	/* The result keeps the newest diff's id, so d2.snap pairs with it. */
	assert_int_equal(squib_memfile_verify(out, true, &m, NULL), 0);
	assert_int_equal(m.layout.kind, SQUIB_MEMORY_FULL);
	assert_memory_equal(m.layout.id, f->m2.layout.id, SQUIB_MEMORY_ID_SIZE);
	squib_memfile_manifest_release(&m);
	/* The inputs are untouched. */
	after = slurp(f->base, &after_len);
	assert_int_equal(before_len, after_len);
	assert_memory_equal(before, after, before_len);
	free(before);
	free(after);
	free(out);
}

static void test_should_rewrite_the_state_so_that_the_rebased_pair_verifies(void **state)
{
	struct fx *f = *state;
	char *out = squib_test_path(f->dir, "d2.merged");
	struct squib_microvm_state st;
	struct squib_test_proc p;

	cli(&p, NULL, "rebase", "--base", f->base, "--diff", f->d1, "--diff", f->d2, "--out", out,
	    "--state", f->d2_snap, "--digests", NULL);
	assert_int_equal(p.status, 0);
	assert_contains(p.out, "d2.snap: memory section updated\n");
	squib_test_proc_free(&p);
	assert_int_equal(squib_state_load_file(f->d2_snap, SQUIB_ARCH_ANY, &st, NULL, NULL), 0);
	assert_non_null(st.memory);
	assert_int_equal(st.memory->kind, SQUIB_MEMORY_FULL);
	assert_memory_equal(st.memory->id, f->m2.layout.id, SQUIB_MEMORY_ID_SIZE);
	for (size_t i = 0; i < SQUIB_MEMORY_ID_SIZE; i++)
		assert_int_equal(st.memory->parent_id[i], 0);
	assert_int_equal(st.memory->file_size, squib_test_file_size(out));
	assert_int_equal(st.vcpu_count, 1); /* the rest of the state is kept */
	squib_state_free(&st);
	cli(&p, NULL, "verify", f->d2_snap, "--mem", out, NULL);
	assert_int_equal(p.status, 0);
	expect_all(p.out, "ok");
	squib_test_proc_free(&p);
	free(out);
}

static void test_should_rebase_in_place_when_asked(void **state)
{
	struct fx *f = *state;
	struct squib_test_proc p;

	cli(&p, NULL, "rebase", "--base", f->base, "--diff", f->d1, "--diff", f->d2, "--digests",
	    "--in-place", NULL);
	assert_int_equal(p.status, 0);
	assert_contains(p.out, "base.mem: full, id ");
	squib_test_proc_free(&p);
	assert_same_image(f->base, f->final);
}

/* --in-place --state: the base becomes the full file and the state describes it; no undo log stays.
 */
static void test_should_publish_the_state_with_an_in_place_rebase(void **state)
{
	struct fx *f = *state;
	struct squib_test_proc p;
	char *undo = squib_memfile_undo_path(f->base);

	cli(&p, NULL, "rebase", "--base", f->base, "--diff", f->d1, "--diff", f->d2, "--in-place",
	    "--state", f->d2_snap, "--digests", NULL);
	assert_int_equal(p.status, 0);
	assert_contains(p.out, "d2.snap: memory section updated\n");
	squib_test_proc_free(&p);
	assert_same_image(f->base, f->final);
	assert_false(squib_test_exists(undo));
	cli(&p, NULL, "verify", f->d2_snap, "--mem", f->base, NULL);
	assert_int_equal(p.status, 0);
	expect_all(p.out, "ok");
	squib_test_proc_free(&p);
	free(undo);
}

/* --out naming an input (itself, a hard link, a symlink) is refused before anything is written. */
static void test_should_refuse_an_out_that_is_one_of_the_inputs(void **state)
{
	struct fx *f = *state;
	char *hard = squib_test_path(f->dir, "hard.mem"),
	     *soft = squib_test_path(f->dir, "soft.mem");
	const char *outs[3] = {f->base, hard, soft};
	struct squib_test_proc p;
	size_t before_len, after_len;
	uint8_t *before = slurp(f->base, &before_len), *after;

	assert_int_equal(link(f->d1, hard), 0);
	assert_int_equal(symlink(f->d2, soft), 0);
	for (int i = 0; i < 3; i++) {
		cli(&p, NULL, "rebase", "--base", f->base, "--diff", f->d1, "--diff", f->d2,
		    "--out", outs[i], NULL);
		assert_int_equal(p.status, 1);
		/* A symlink is refused as an output whatever it points to. */
		assert_contains(p.err, i == 2 ? "is a symbolic link" : "(the same file)");
		assert_string_equal(p.out, "");
		squib_test_proc_free(&p);
	}
	after = slurp(f->base, &after_len);
	assert_int_equal(before_len, after_len);
	assert_memory_equal(before, after, before_len);
	assert_int_equal(squib_memfile_verify(f->d1, false, NULL, NULL), 0);
	assert_int_equal(squib_memfile_verify(f->d2, false, NULL, NULL), 0);
	free(before);
	free(after);
	free(hard);
	free(soft);
}

#define KILL_PAGES  4096 /* 16 MiB of RAM at 4 KiB pages */
#define KILL_DIFF   1024
#define KILL_TRIALS 20

static uint64_t mono_us(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (uint64_t)ts.tv_sec * 1000000u + (uint64_t)ts.tv_nsec / 1000u;
}

/* One `rebase --in-place` started; SIGKILL after `after_us` (0: let it finish).
 * Returns its exit status (128 + 9 when the kill came first). */
static int run_in_place(const struct fx *f, char *base, char *diff, uint64_t after_us)
{
	char *argv[] = {squib_test_cli_path(), "rebase", "--base", base, "--diff", diff,
			"--in-place",	       NULL};
	struct squib_test_bg b;

	squib_test_bg_start(f->dir, argv, &b);
	if (after_us) {
		usleep((useconds_t)after_us);
		kill(b.pid, SIGKILL);
	}
	return squib_test_bg_finish(&b, 120000);
}

static uint64_t next_rand(uint64_t *seed)
{
	*seed = *seed * 6364136223846793005ull + 1442695040888963407ull;
	return *seed >> 33;
}

/* Which of the two files path holds now: 0 old, 1 new; fails the test on anything else. */
static int old_or_new(const char *path, const uint8_t *const v[2], const size_t len[2], int t)
{
	uint8_t *now;
	size_t n;
	int which = -1;

	assert_int_equal(squib_test_read_file(path, &now, &n), 0);
	for (int i = 0; i < 2; i++)
		if (n == len[i] && !memcmp(now, v[i], n))
			which = i;
	free(now);
	if (which < 0)
		fail_msg("kill %d: the base is neither the old file nor the rebased one", t);
	return which;
}

/*
 * The reproduction, with a real process and a real signal (no hooks):
 * `rebase --in-place` killed at random moments of its run. After the recovery
 * a load runs, the base is the old file or the rebased one, byte for byte.
 */
static void test_should_keep_the_base_whole_when_an_in_place_rebase_is_killed(void **state)
{
	struct fx *f = *state;
	uint64_t ram = KILL_PAGES * f->ps, pages[KILL_DIFF], seed = 7, t0, took;
	uint8_t *mem = squib_test_guest_ram(ram, 5), *v[2];
	char *base = squib_test_path(f->dir, "big.mem"),
	     *diff = squib_test_path(f->dir, "big.d.mem");
	struct squib_memfile_manifest m;
	size_t len[2];
	int outcome[2] = {0, 0}, rolled_back = 0;

	squib_test_save_full(base, mem, ram, false, &m);
	for (int i = 0; i < KILL_DIFF; i++) {
		pages[i] = next_rand(&seed) % KILL_PAGES;
		squib_test_fill_page(mem, pages[i], 99);
	}
	squib_test_save_diff(diff, mem, ram, m.layout.id, pages, KILL_DIFF, false, NULL);
	assert_int_equal(squib_test_read_file(base, &v[0], &len[0]), 0);
	t0 = mono_us();
	assert_int_equal(run_in_place(f, base, diff, 0), 0);
	took = mono_us() - t0;
	assert_int_equal(squib_test_read_file(base, &v[1], &len[1]), 0);
	assert_false(len[0] == len[1] && !memcmp(v[0], v[1], len[0]));
	for (int t = 0; t < KILL_TRIALS; t++) {
		bool rolled = false;

		assert_int_equal(squib_test_write_file(base, v[0], len[0]), 0);
		run_in_place(f, base, diff, 1 + next_rand(&seed) % (took * 3 / 2 + 1));
		/* what a load (or the next rebase of it) runs first */
		assert_int_equal(squib_memfile_rebase_recover(base, NULL, &rolled, NULL), 0);
		rolled_back += rolled;
		outcome[old_or_new(base, (const uint8_t *const *)v, len, t)]++;
	}
	printf("rebase --in-place (%llu ms) SIGKILLed at random %d times: %d old (%d of them rolled "
	       "back from the undo log), %d rebased\n",
	       (unsigned long long)(took / 1000), KILL_TRIALS, outcome[0], rolled_back, outcome[1]);
	squib_memfile_manifest_release(&m);
	munmap(mem, ram);
	free(v[0]);
	free(v[1]);
	free(base);
	free(diff);
}

static void test_should_exit_2_with_the_message_for_a_wrong_parent(void **state)
{
	struct fx *f = *state;
	char *out = squib_test_path(f->dir, "never.mem");
	struct squib_test_proc p;
	char parent[33], base_id[33];

	squib_memfile_id_hex(f->m1.layout.id, parent);
	squib_memfile_id_hex(f->m0.layout.id, base_id);
	cli(&p, NULL, "rebase", "--base", f->base, "--diff", f->d2, "--out", out, NULL);
	assert_int_equal(p.status, 2);
	assert_string_equal(p.out, "");
	assert_int_equal(squib_test_count_lines(p.err), 1);
	assert_contains(p.err, "squib-snapshot: rebase: snapshot pair mismatch: diff ");
	assert_contains(p.err, " has parent id ");
	assert_contains(p.err, parent);
	assert_contains(p.err, base_id);
	assert_false(squib_test_exists(out));
	squib_test_proc_free(&p);
	/* Oldest first: the diffs in the wrong order are a wrong parent too. */
	cli(&p, NULL, "rebase", "--base", f->base, "--diff", f->d2, "--diff", f->d1, "--in-place",
	    NULL);
	assert_int_equal(p.status, 2);
	assert_contains(p.err, "has parent id");
	squib_test_proc_free(&p);
	free(out);
}

static void test_should_exit_2_with_the_message_for_another_geometry(void **state)
{
	static const uint64_t page[] = {0};
	struct fx *f = *state;
	char *odd = squib_test_path(f->dir, "odd.mem");
	struct squib_test_proc p;

	/* Half the RAM, but claiming the base as its parent. */
	squib_test_save_diff(odd, f->mem, f->ram / 2, f->m0.layout.id, page, 1, false, NULL);
	cli(&p, NULL, "rebase", "--base", f->base, "--diff", odd, "--in-place", NULL);
	assert_int_equal(p.status, 2);
	assert_contains(p.err, "snapshot pair mismatch: ");
	assert_contains(p.err, "another geometry");
	squib_test_proc_free(&p);
	free(odd);
}

static void test_should_refuse_a_state_that_does_not_describe_the_newest_diff(void **state)
{
	struct fx *f = *state;
	char *out = squib_test_path(f->dir, "never.mem");
	struct squib_test_proc p;
	size_t len_before, len_after;
	uint8_t *before = slurp(f->d1_snap, &len_before), *after;

	cli(&p, NULL, "rebase", "--base", f->base, "--diff", f->d1, "--diff", f->d2, "--out", out,
	    "--state", f->d1_snap, NULL);
	assert_int_equal(p.status, 2);
	assert_contains(p.err, "d1.snap describes memory file ");
	assert_contains(p.err, ", not the newest diff ");
	assert_false(squib_test_exists(out)); /* refused before anything was written */
	after = slurp(f->d1_snap, &len_after);
	assert_int_equal(len_before, len_after);
	assert_memory_equal(before, after, len_before);
	squib_test_proc_free(&p);
	free(before);
	free(after);
	free(out);
}

static void test_should_exit_2_when_a_diff_fails_its_digests(void **state)
{
	struct fx *f = *state;
	struct squib_test_proc p;

	squib_test_xor_byte(f->d2, (int64_t)(30 * f->ps + 1), 0x02);
	cli(&p, NULL, "rebase", "--base", f->base, "--diff", f->d1, "--diff", f->d2, "--in-place",
	    NULL);
	assert_int_equal(p.status, 2);
	assert_contains(p.err, "snapshot CRC64 mismatch");
	squib_test_proc_free(&p);
}

static void test_should_draw_rebase_progress_when_asked(void **state)
{
	struct fx *f = *state;
	char *out = squib_test_path(f->dir, "p.mem");
	struct squib_test_proc p;

	cli(&p, NULL, "rebase", "--base", f->base, "--diff", f->d1, "--diff", f->d2, "--out", out,
	    "--progress", NULL);
	assert_int_equal(p.status, 0);
	assert_contains(p.err, "\rrebase [");
	assert_contains(p.err, "] 100%");
	squib_test_proc_free(&p);
	free(out);
}

static void test_should_exit_1_on_rebase_usage_errors(void **state)
{
	struct squib_test_proc p;

	(void)state;
	cli(&p, NULL, "rebase", "--diff", "d.mem", NULL);
	assert_int_equal(p.status, 1);
	assert_contains(p.err, "missing --base");
	assert_contains(p.err, "usage: squib-snapshot rebase");
	squib_test_proc_free(&p);
	cli(&p, NULL, "rebase", "--base", "b.mem", NULL);
	assert_int_equal(p.status, 1);
	assert_contains(p.err, "missing --diff");
	squib_test_proc_free(&p);
	cli(&p, NULL, "rebase", "--base", "b.mem", "--diff", NULL);
	assert_int_equal(p.status, 1);
	assert_contains(p.err, "missing value for '--diff'");
	squib_test_proc_free(&p);
	cli(&p, NULL, "rebase", "--base", "b.mem", "--base", "c.mem", "--diff", "d.mem", NULL);
	assert_int_equal(p.status, 1);
	assert_contains(p.err, "more than one '--base'");
	squib_test_proc_free(&p);
	cli(&p, NULL, "rebase", "--base", "b.mem", "--diff", "d.mem", "--frobnicate", "--in-place",
	    NULL);
	assert_int_equal(p.status, 1);
	assert_contains(p.err, "unknown option '--frobnicate'");
	squib_test_proc_free(&p);
	cli(&p, NULL, "rebase", "--base=/nonexistent/b.mem", "--diff=d.mem", "--in-place", NULL);
	assert_int_equal(p.status, 1);
	assert_contains(p.err, "memory file I/O error: No such file or directory");
	squib_test_proc_free(&p);
	/* In place only when asked: no --out is no longer an in-place rebase. */
	cli(&p, NULL, "rebase", "--base", "b.mem", "--diff", "d.mem", NULL);
	assert_int_equal(p.status, 1);
	assert_contains(p.err, "missing --out PATH or --in-place");
	assert_contains(p.err, "usage: squib-snapshot rebase");
	squib_test_proc_free(&p);
	cli(&p, NULL, "rebase", "--base", "b.mem", "--diff", "d.mem", "--out", "o.mem",
	    "--in-place", NULL);
	assert_int_equal(p.status, 1);
	assert_contains(p.err, "--out and --in-place exclude each other");
	squib_test_proc_free(&p);
}

/* ---- rebase --out onto hostile paths, and racing rebases ---- */

/* `rebase --out X` onto what is not a regular file: exit 1 naming X and what it is,
 * before any work, and X stays what it was (no hang on a FIFO). */
static void assert_out_refused(struct fx *f, const char *out, const char *what)
{
	struct squib_test_proc p;
	struct stat before, after;

	assert_int_equal(lstat(out, &before), 0);
	cli(&p, NULL, "rebase", "--base", f->base, "--diff", f->d1, "--out", out, NULL);
	assert_int_equal(p.status, 1);
	assert_contains(p.err, out);
	assert_contains(p.err, what);
	assert_contains(p.err, "not a regular file");
	assert_string_equal(p.out, "");
	squib_test_proc_free(&p);
	assert_int_equal(lstat(out, &after), 0);
	assert_true(before.st_ino == after.st_ino && before.st_mode == after.st_mode &&
		    before.st_rdev == after.st_rdev && before.st_size == after.st_size);
}

/* rebase --out into a directory on mnt (a tmpfs of `size`, read-only if asked): the error names
 * the file and the operation that failed, after upstream's fixed text. */
static void rebase_out_fails(struct fx *f, const char *mnt, const char *size, bool ro,
			     const char *want_path, const char *want_text)
{
	char *out = squib_test_path(mnt, "merged.mem");
	struct squib_test_proc p;

	assert_int_equal(mount("squib-test", mnt, "tmpfs", MS_NOSUID | MS_NODEV, size), 0);
	if (ro)
		assert_int_equal(mount(NULL, mnt, NULL, MS_REMOUNT | MS_RDONLY, NULL), 0);
	cli(&p, NULL, "rebase", "--base", f->base, "--diff", f->d1, "--out", out, NULL);
	printf("rebase --out %s tmpfs: %s", ro ? "read-only" : "full", p.err);
	assert_int_not_equal(p.status, 0);
	assert_contains(p.err, want_text);
	assert_contains(p.err, want_path);
	assert_false(squib_test_exists(out));
	squib_test_proc_free(&p);
	assert_int_equal(umount2(mnt, MNT_DETACH), 0);
	free(out);
}

static void test_should_name_the_path_when_rebase_out_cannot_write(void **state)
{
	struct fx *f = *state;
	char *mnt = squib_test_path(f->dir, "mnt"), *lock = squib_test_path(mnt, ".merged.mem");

	assert_int_equal(mkdir(mnt, 0700), 0);
	if (mount("squib-test", mnt, "tmpfs", MS_NOSUID | MS_NODEV, "size=16k") < 0) {
		printf("SKIP: cannot mount a tmpfs (%s): rebase --out into a full or read-only "
		       "filesystem untested\n",
		       strerror(errno));
		free(mnt);
		free(lock);
		skip();
	}
	assert_int_equal(umount2(mnt, MNT_DETACH), 0);
	/* The lock file's creation is the first write there. */
	rebase_out_fails(f, mnt, "size=16k", true, lock,
			 "snapshot I/O error: Read-only file system");
	rebase_out_fails(f, mnt, "size=16k", false, mnt, "No space left on device");
	free(mnt);
	free(lock);
}

static void test_should_refuse_to_rebase_onto_a_device_fifo_socket_directory_or_link(void **state)
{
	struct fx *f = *state;
	char *full = squib_test_path(f->dir, "full"), *fifo = squib_test_path(f->dir, "out.fifo"),
	     *sub = squib_test_path(f->dir, "out.d"), *link = squib_test_path(f->dir, "out.link"),
	     *sock = squib_test_path(f->dir, "out.sock");
	struct sockaddr_un sa = {.sun_family = AF_UNIX};
	int sfd = socket(AF_UNIX, SOCK_STREAM, 0);

	/* `--out /dev/full`: as root, on a node like it of our own (c 1 7), since a
	 * regression would otherwise replace the machine's /dev/full (main did). Without
	 * root /dev/full itself cannot be replaced, so it is the target. */
	if (mknod(full, S_IFCHR | 0666, makedev(1, 7)) == 0) {
		assert_out_refused(f, full, "character device");
	} else if (geteuid() != 0) {
		assert_out_refused(f, "/dev/full", "character device");
		assert_false(squib_test_exists("/dev/.full.squib-lock"));
	} else {
		printf("SKIP: root but mknod failed (%s): rebase --out onto a device untested\n",
		       strerror(errno));
	}
	assert_int_equal(mkfifo(fifo, 0600), 0);
	assert_out_refused(f, fifo, "FIFO");
	assert_int_equal(mkdir(sub, 0700), 0);
	assert_out_refused(f, sub, "directory");
	assert_int_equal(symlink(f->final, link), 0);
	assert_out_refused(f, link, "symbolic link");
	assert_true(sfd >= 0 && strlen(sock) < sizeof(sa.sun_path));
	memcpy(sa.sun_path, sock, strlen(sock) + 1);
	assert_int_equal(bind(sfd, (struct sockaddr *)&sa, sizeof(sa)), 0);
	assert_out_refused(f, sock, "socket");
	close(sfd);
	free(full);
	free(fifo);
	free(sub);
	free(link);
	free(sock);
}

#define RACE_PAGES 1024

struct race_chain {
	char *base, *d1, *d2, *out, *ref[2];
};

/* base (RACE_PAGES), d1 (the even pages), d2 (the odd ones) in dir. */
static void race_chain_make(const char *dir, struct race_chain *c)
{
	uint64_t ps = squib_test_page_size(), ram = RACE_PAGES * ps;
	uint8_t *mem = squib_test_guest_ram(ram, 31);
	uint64_t p1[RACE_PAGES / 2], p2[RACE_PAGES / 2];
	struct squib_memfile_manifest m0, m1, m2;

	c->base = squib_test_path(dir, "rbase.mem");
	c->d1 = squib_test_path(dir, "rd1.mem");
	c->d2 = squib_test_path(dir, "rd2.mem");
	c->out = squib_test_path(dir, "raced.mem");
	c->ref[0] = squib_test_path(dir, "ref-a.mem");
	c->ref[1] = squib_test_path(dir, "ref-b.mem");
	for (uint64_t i = 0; i < RACE_PAGES / 2; i++) {
		p1[i] = 2 * i;
		p2[i] = 2 * i + 1;
	}
	squib_test_save_full(c->base, mem, ram, false, &m0);
	for (uint64_t i = 0; i < RACE_PAGES / 2; i++)
		squib_test_fill_page(mem, p1[i], 32);
	squib_test_save_diff(c->d1, mem, ram, m0.layout.id, p1, RACE_PAGES / 2, false, &m1);
	for (uint64_t i = 0; i < RACE_PAGES / 2; i++)
		squib_test_fill_page(mem, p2[i], 33);
	squib_test_save_diff(c->d2, mem, ram, m1.layout.id, p2, RACE_PAGES / 2, false, &m2);
	squib_memfile_manifest_release(&m0);
	squib_memfile_manifest_release(&m1);
	squib_memfile_manifest_release(&m2);
	munmap(mem, ram);
}

static void race_chain_free(struct race_chain *c)
{
	free(c->base);
	free(c->d1);
	free(c->d2);
	free(c->out);
	free(c->ref[0]);
	free(c->ref[1]);
}

/* Is the file byte for byte one of the two possible results? */
static bool is_a_result(const struct race_chain *c)
{
	size_t gl, wl;
	uint8_t *got = slurp(c->out, &gl);
	bool eq = false;

	for (int k = 0; k < 2 && !eq; k++) {
		uint8_t *want = slurp(c->ref[k], &wl);

		eq = gl == wl && !memcmp(got, want, gl);
		free(want);
	}
	free(got);
	return eq;
}

/* `n` rebases onto one --out started together, `trials` times; odd ones add the second diff. */
static void rebase_race(const struct race_chain *c, int n, int trials, int *won, int *busy)
{
	char *a[] = {squib_test_cli_path(),
		     "rebase",
		     "--base",
		     c->base,
		     "--diff",
		     c->d1,
		     "--out",
		     c->out,
		     NULL};
	char *b[] = {squib_test_cli_path(),
		     "rebase",
		     "--base",
		     c->base,
		     "--diff",
		     c->d1,
		     "--diff",
		     c->d2,
		     "--out",
		     c->out,
		     NULL};
	struct squib_test_bg bg[8];

	for (int t = 0; t < trials; t++) {
		unlink(c->out);
		for (int i = 0; i < n; i++)
			squib_test_bg_start(NULL, i % 2 ? b : a, &bg[i]);
		for (int i = 0; i < n; i++) {
			int st = squib_test_bg_finish(&bg[i], 60000);

			bg[i].ebuf[sizeof(bg[i].ebuf) - 1] = '\0';
			if (st &&
			    !(st == 1 && strstr(bg[i].ebuf, "busy") && strstr(bg[i].ebuf, c->out)))
				fail_msg("rebase %d exited %d: %s", i, st, bg[i].ebuf);
			*won += st == 0;
			*busy += st == 1;
		}
		assert_true(is_a_result(c));
		assert_int_equal(squib_test_layer_files(c->out, NULL), 0);
	}
}

/* The reproduction: rebases with different inputs onto one --out published a
 * mixture that verified. Now the file is one whole result and the others say busy. */
static void test_should_publish_one_whole_image_when_rebases_race(void **state)
{
	struct fx *f = *state;
	struct race_chain c;
	struct squib_test_proc p;
	int won = 0, busy = 0;

	race_chain_make(f->dir, &c);
	/* The two possible results, one at a time. */
	cli(&p, NULL, "rebase", "--base", c.base, "--diff", c.d1, "--out", c.ref[0], NULL);
	assert_int_equal(p.status, 0);
	squib_test_proc_free(&p);
	cli(&p, NULL, "rebase", "--base", c.base, "--diff", c.d1, "--diff", c.d2, "--out", c.ref[1],
	    NULL);
	assert_int_equal(p.status, 0);
	squib_test_proc_free(&p);
	rebase_race(&c, 2, 8, &won, &busy);
	printf("rebase race: 2 processes x 8 trials: %d published, %d busy, 0 mixed\n", won, busy);
	won = busy = 0;
	rebase_race(&c, 8, 3, &won, &busy);
	printf("rebase race: 8 processes x 3 trials: %d published, %d busy, 0 mixed\n", won, busy);
	race_chain_free(&c);
}

/* ---- describe ---- */

static void test_should_describe_the_memory_section_from_the_cli(void **state)
{
	struct fx *f = *state;
	struct squib_test_proc p;
	char id[33], parent[33], want[128];
	json_error_t err;
	json_t *j, *m;

	squib_memfile_id_hex(f->m2.layout.id, id);
	squib_memfile_id_hex(f->m1.layout.id, parent);
	cli(&p, NULL, "describe", f->d2_snap, NULL);
	assert_int_equal(p.status, 0);
	assert_contains(p.out, "d2.mem (");
	assert_contains(p.out, "\n  memory kind:         diff\n");
	snprintf(want, sizeof(want), "\n  memory id:           %s\n", id);
	assert_contains(p.out, want);
	snprintf(want, sizeof(want), "\n  memory parent id:    %s\n", parent);
	assert_contains(p.out, want);
	snprintf(want, sizeof(want), "\n  memory page size:    %llu\n", (unsigned long long)f->ps);
	assert_contains(p.out, want);
	snprintf(want, sizeof(want), "\n  memory ram size:     %llu\n", (unsigned long long)f->ram);
	assert_contains(p.out, want);
	assert_contains(p.out, "\n  present pages:       3\n");
	snprintf(want, sizeof(want), "\n  present bytes:       %llu\n",
		 (unsigned long long)(3 * f->ps));
	assert_contains(p.out, want);
	assert_contains(p.out, "\n  memory file match:   yes\n  crc_ok:              yes\n");
	squib_test_proc_free(&p);
	cli(&p, NULL, "describe", "--json", f->d2_snap, NULL);
	assert_int_equal(p.status, 0);
	j = json_loads(p.out, 0, &err);
	if (!j)
		fail_msg("CLI JSON does not parse: %s\n%s", err.text, p.out);
	m = json_object_get(j, "memory");
	assert_true(json_is_object(m));
	assert_string_equal(json_string_value(json_object_get(m, "kind")), "diff");
	assert_string_equal(json_string_value(json_object_get(m, "id")), id);
	assert_string_equal(json_string_value(json_object_get(m, "parent_id")), parent);
	assert_int_equal(json_integer_value(json_object_get(m, "present_pages")), 3);
	assert_string_equal(json_string_value(json_object_get(m, "file_match")), "yes");
	json_decref(j);
	squib_test_proc_free(&p);
}

static void test_should_say_in_describe_that_the_memory_file_is_another_snapshots(void **state)
{
	struct fx *f = *state;
	struct squib_test_proc p;

	assert_int_equal(rename(f->final, f->d2), 0);
	cli(&p, NULL, "describe", f->d2_snap, NULL);
	assert_int_equal(p.status, 0); /* describe's status is about the state file's CRC */
	assert_contains(p.out, "\n  memory file match:   NO (memory file has id ");
	squib_test_proc_free(&p);
}

static void test_should_describe_demo_exactly_as_before(void **state)
{
	char *dir = squib_test_fixture(""), *path = squib_test_fixture("demo.describe.txt");
	struct squib_test_proc p;
	uint8_t *expected;
	size_t len;
	json_t *j;

	(void)state;
	assert_int_equal(squib_test_read_file(path, &expected, &len), 0);
	cli(&p, dir, "describe", "demo.snap", NULL);
	assert_int_equal(p.status, 0);
	assert_int_equal(p.out_len, len);
	assert_memory_equal(p.out, expected, len);
	squib_test_proc_free(&p);
	cli(&p, dir, "describe", "--json", "demo.snap", NULL);
	assert_int_equal(p.status, 0);
	j = json_loads(p.out, 0, NULL);
	assert_non_null(j);
	assert_true(json_is_null(json_object_get(j, "memory")));
	json_decref(j);
	squib_test_proc_free(&p);
	free(expected);
	free(path);
	free(dir);
}

/* ---- help ---- */

static void test_should_print_help_for_every_subcommand(void **state)
{
	static const char *const cmds[] = {"describe", "verify", "rebase", "version"};
	struct squib_test_proc p;

	(void)state;
	for (size_t i = 0; i < sizeof(cmds) / sizeof(cmds[0]); i++) {
		char want[64];

		snprintf(want, sizeof(want), "usage: squib-snapshot %s", cmds[i]);
		cli(&p, NULL, cmds[i], "--help", NULL);
		assert_int_equal(p.status, 0);
		assert_true(strncmp(p.out, want, strlen(want)) == 0);
		assert_string_equal(p.err, "");
		squib_test_proc_free(&p);
		cli(&p, NULL, cmds[i], "-h", NULL);
		assert_int_equal(p.status, 0);
		assert_true(strncmp(p.out, want, strlen(want)) == 0);
		squib_test_proc_free(&p);
	}
	cli(&p, NULL, "--help", NULL);
	assert_int_equal(p.status, 0);
	assert_contains(p.out, "\n  verify ");
	assert_contains(p.out, "\n  rebase ");
	squib_test_proc_free(&p);
}

int main(void)
{
#define T(t) cmocka_unit_test_setup_teardown(t, setup, teardown)
	const struct CMUnitTest tests[] = {
	    T(test_should_verify_a_good_pair_with_every_line_ok),
	    T(test_should_verify_a_diff_pair),
	    cmocka_unit_test(test_should_skip_memory_checks_for_a_state_without_memory_section),
	    T(test_should_exit_2_for_a_flipped_state_bit),
	    T(test_should_exit_2_for_another_snapshots_memory_file_naming_both_ids),
	    T(test_should_exit_2_for_a_corrupt_memory_footer),
	    T(test_should_report_a_missing_memory_file),
	    T(test_should_exit_2_for_digest_corruption_in_the_ram_range),
	    T(test_should_draw_progress_into_a_file_only_when_asked),
	    T(test_should_draw_progress_on_a_terminal_only_for_large_files),
	    cmocka_unit_test(test_should_exit_1_on_verify_usage_errors),
	    cmocka_unit_test(test_should_report_an_unreadable_state_file),
	    T(test_should_rebase_a_chain_into_the_same_image_as_a_full_snapshot),
	    T(test_should_rewrite_the_state_so_that_the_rebased_pair_verifies),
	    T(test_should_rebase_in_place_when_asked),
	    T(test_should_publish_the_state_with_an_in_place_rebase),
	    T(test_should_refuse_an_out_that_is_one_of_the_inputs),
	    T(test_should_keep_the_base_whole_when_an_in_place_rebase_is_killed),
	    T(test_should_exit_2_with_the_message_for_a_wrong_parent),
	    T(test_should_exit_2_with_the_message_for_another_geometry),
	    T(test_should_refuse_a_state_that_does_not_describe_the_newest_diff),
	    T(test_should_exit_2_when_a_diff_fails_its_digests),
	    T(test_should_draw_rebase_progress_when_asked),
	    T(test_should_refuse_to_rebase_onto_a_device_fifo_socket_directory_or_link),
	    T(test_should_name_the_path_when_rebase_out_cannot_write),
	    T(test_should_publish_one_whole_image_when_rebases_race),
	    cmocka_unit_test(test_should_exit_1_on_rebase_usage_errors),
	    T(test_should_describe_the_memory_section_from_the_cli),
	    T(test_should_say_in_describe_that_the_memory_file_is_another_snapshots),
	    cmocka_unit_test(test_should_describe_demo_exactly_as_before),
	    cmocka_unit_test(test_should_print_help_for_every_subcommand),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
