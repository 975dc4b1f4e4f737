/* SPDX-License-Identifier: Apache-2.0 */
/*
 * What every command of the CLI promises alike: the exit-code table (0 ok;
 * 1 usage, unreadable, wrong kind; 2 integrity), --version and help CMD, the
 * JSON forms of verify and of a failure, an explicit --mem never ignored, and
 * man pages that render without a warning. The program runs as a child
 * process on real files (tests/support/spawn.h).
 */
#include "pair.h"
#include "spawn.h"
#include "testutil.h"

#include <jansson.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <unistd.h>

#include <squib/snapshot.h>

#define PAGES	 16
#define MAX_ARGS 16

/*
 * In a temp dir: base.snap + base.mem (a Full pair with digests, an x86_64 state); d1.mem, a
 * Diff over it with digests, and d1.snap; other.snap + other.mem, a pair of
 * the same RAM that is not base's; plain.snap, a state without a memory
 * section; bad.snap, base.snap with a flipped byte; bad.mem, base.mem with a
 * flipped page byte (its digest fails); bad-d1.mem likewise.
 */
struct fx {
	char *dir;
	uint8_t *ram;
	uint64_t ps;
};

static char *p(const struct fx *f, const char *name)
{
	return squib_test_path(f->dir, name);
}

static void copy_file(const char *from, const char *to)
{
	uint8_t *buf;
	size_t len;

	assert_int_equal(squib_test_read_file(from, &buf, &len), 0);
	assert_int_equal(squib_test_write_file(to, buf, len), 0);
	free(buf);
}

static void make_pairs(struct fx *f, char *const *paths)
{
	static const uint64_t dirty[] = {1, 3};
	struct squib_memfile_manifest m0, m1;

	squib_test_save_full(paths[0], f->ram, PAGES * f->ps, true, &m0);
	squib_test_save_x86_state(paths[1], &m0.layout); /* restore takes x86_64 */
	for (size_t i = 0; i < 2; i++)
		squib_test_fill_page(f->ram, dirty[i], 41);
	squib_test_save_diff(paths[2], f->ram, PAGES * f->ps, m0.layout.id, dirty, 2, true, &m1);
	squib_test_save_state(paths[3], &m1.layout);
	squib_memfile_manifest_release(&m0);
	squib_memfile_manifest_release(&m1);
}

static int setup(void **state)
{
	struct fx *f = calloc(1, sizeof(*f));
	char *paths[4], *other, *other_mem, *plain, *bad, *bad_mem, *bad_d1;

	assert_non_null(f);
	f->dir = squib_test_tmpdir();
	f->ps = squib_test_page_size();
	f->ram = squib_test_guest_ram(PAGES * f->ps, 31);
	paths[0] = p(f, "base.mem");
	paths[1] = p(f, "base.snap");
	paths[2] = p(f, "d1.mem");
	paths[3] = p(f, "d1.snap");
	make_pairs(f, paths);
	squib_test_save_pair(f->dir, "other", f->ram, PAGES * f->ps, false, &other, &other_mem,
			     NULL);
	plain = p(f, "plain.snap");
	squib_test_save_state(plain, NULL);
	bad = p(f, "bad.snap");
	copy_file(paths[1], bad);
	squib_test_xor_byte(bad, 40, 0x01);
	bad_mem = p(f, "bad.mem");
	copy_file(paths[0], bad_mem);
	squib_test_xor_byte(bad_mem, (int64_t)(2 * f->ps + 7), 0x10);
	bad_d1 = p(f, "bad-d1.mem");
	copy_file(paths[2], bad_d1);
	squib_test_xor_byte(bad_d1, (int64_t)(f->ps + 5), 0x10); /* page 1 (at its RAM offset) */
	for (size_t i = 0; i < 4; i++)
		free(paths[i]);
	free(other);
	free(other_mem);
	free(plain);
	free(bad);
	free(bad_mem);
	free(bad_d1);
	*state = f;
	return 0;
}

static int teardown(void **state)
{
	struct fx *f = *state;

	munmap(f->ram, PAGES * f->ps);
	squib_test_rmtree(f->dir);
	free(f->dir);
	free(f);
	return 0;
}

/* Run the CLI in the fixture's dir with the NULL-terminated arguments. */
static void cli(const struct fx *f, struct squib_test_proc *r, ...)
{
	char *argv[MAX_ARGS + 2] = {squib_test_cli_path()};
	size_t n = 1;
	const char *a;
	va_list ap;

	va_start(ap, r);
	while ((a = va_arg(ap, const char *)) && n <= MAX_ARGS)
		argv[n++] = (char *)a;
	va_end(ap);
	argv[n] = NULL;
	squib_test_spawn(f ? f->dir : NULL, argv, r);
}

static void assert_contains(const char *hay, const char *needle)
{
	if (!strstr(hay, needle))
		fail_msg("expected \"%s\" in:\n%s", needle, hay);
}

/* ---- the exit-code table ---- */

struct row {
	int status;
	const char *args[MAX_ARGS];
};

/* Each command in each class of the table; files are relative to the fixture's dir. */
static const struct row rows[] = {
    /* 0: done */
    {0, {"describe", "base.snap"}},
    {0, {"verify", "base.snap"}},
    {0, {"verify", "d1.snap", "--no-digests"}},
    {0, {"rebase", "--base", "base.mem", "--diff", "d1.mem", "--out", "merged.mem"}},
    {0, {"version"}},
    {0, {"help", "serve"}},
    {0, {"push", "base.snap", "--to", "store"}},
    {0, {"store", "ls", "store"}},
    /* 1: bad usage */
    {1, {"describe", "--bogus", "base.snap"}},
    {1, {"verify", "base.snap", "--bogus"}},
    {1, {"rebase", "--base", "base.mem"}},
    {1, {"run", "--vcpus", "99", "g.bin", "x.snap"}},
    {1, {"restore", "base.snap", "--mem-backend", "floppy"}},
    {1, {"serve", "--socket", "s.sock"}},
    {1, {"version", "extra"}},
    {1, {"push", "base.snap"}},
    {1, {"pull", "store/not-an-id", "out"}},
    {1, {"store", "frob", "store"}},
    {1, {"no-such-command"}},
    {1, {}},
    /* 1: unreadable */
    {1, {"describe", "missing.snap"}},
    {1, {"verify", "missing.snap"}},
    {1, {"rebase", "--base", "missing.mem", "--diff", "d1.mem", "--out", "m2.mem"}},
    {1, {"run", "missing.bin", "x.snap"}},
    {1, {"restore", "missing.snap"}},
    {1, {"serve", "--socket", "s.sock", "--mem", "missing.mem"}},
    {1, {"push", "missing.snap", "--to", "store"}},
    {1, {"pull", "store/0123456789abcdef0123456789abcdef", "out"}},
    /* 1: not of the kind expected */
    {1, {"describe", "base.mem"}},
    {1, {"verify", "base.mem", "--mem", "base.mem"}},
    {1, {"rebase", "--base", "base.snap", "--diff", "d1.mem", "--out", "m3.mem"}},
    {1, {"restore", "base.mem", "--mem", "base.mem"}},
    {1, {"serve", "--socket", "s.sock", "--mem", "base.snap"}},
    {1, {"serve", "--socket", "s.sock", "--mem", "d1.mem"}}, /* a Diff alone */
    /* 2: integrity */
    {2, {"describe", "bad.snap"}},
    {2, {"verify", "bad.snap"}},
    {2, {"verify", "base.snap", "--mem", "bad.mem"}},
    {2, {"verify", "base.snap", "--mem", "other.mem"}},
    {2, {"rebase", "--base", "base.mem", "--diff", "bad-d1.mem", "--out", "m4.mem"}},
    {2, {"rebase", "--base", "other.mem", "--diff", "d1.mem", "--out", "m5.mem"}},
    {2, {"restore", "bad.snap", "--mem", "base.mem"}},
    {2, {"restore", "base.snap", "--mem", "other.mem"}},
    {2, {"serve", "--socket", "s.sock", "--mem", "base.mem", "--state", "other.snap"}},
    {2, {"serve", "--socket", "s.sock", "--mem", "d1.mem", "--chain", "other.mem"}},
    {2, {"push", "bad.snap", "--mem", "base.mem", "--to", "store"}},
    {2, {"push", "base.snap", "--mem", "other.mem", "--to", "store"}},
};

static void test_should_follow_one_exit_code_table_in_every_command(void **state)
{
	struct fx *f = *state;
	char *argv[MAX_ARGS + 2];

	for (size_t i = 0; i < sizeof(rows) / sizeof(rows[0]); i++) {
		struct squib_test_proc r;
		size_t n = 1;

		argv[0] = squib_test_cli_path();
		for (size_t k = 0; k < MAX_ARGS && rows[i].args[k]; k++)
			argv[n++] = (char *)rows[i].args[k];
		argv[n] = NULL;
		squib_test_spawn(f->dir, argv, &r);
		if (r.status != rows[i].status)
			fail_msg("squib-snapshot %s %s ...: exit %d, expected %d; stderr:\n%s",
				 rows[i].args[0] ? rows[i].args[0] : "",
				 rows[i].args[1] ? rows[i].args[1] : "", r.status, rows[i].status,
				 r.err);
		/* A failure says why (verify: in its report on stdout). */
		if (r.status && !r.err[0] && !r.out[0])
			fail_msg("squib-snapshot %s: exit %d and nothing said",
				 rows[i].args[0] ? rows[i].args[0] : "", r.status);
		squib_test_proc_free(&r);
	}
}

/* ---- --version, help ---- */

static void test_should_print_the_version_with_the_option(void **state)
{
	struct squib_version v = squib_format_version();
	struct squib_test_proc r;
	char want[128];

	(void)state;
	snprintf(want, sizeof(want), "squib-snapshot %s (snapshot format " SQUIB_SEMVER_FMT ")\n",
		 squib_library_version(), v.major, v.minor, v.patch);
	cli(NULL, &r, "--version", NULL);
	assert_int_equal(r.status, 0);
	assert_string_equal(r.out, want);
	assert_string_equal(r.err, "");
	squib_test_proc_free(&r);
	cli(NULL, &r, "-V", NULL);
	assert_string_equal(r.out, want);
	squib_test_proc_free(&r);
	snprintf(want, sizeof(want), SQUIB_SEMVER_FMT "\nlibrary %s\n", v.major, v.minor, v.patch,
		 squib_library_version());
	cli(NULL, &r, "version", NULL);
	assert_string_equal(r.out, want);
	squib_test_proc_free(&r);
}

static void test_should_print_one_commands_usage_with_help(void **state)
{
	static const char *const cmds[] = {"describe", "verify",  "rebase", "run",  "restore",
					   "serve",    "version", "push",   "pull", "store"};
	struct squib_test_proc a, b;
	char usage[64];

	(void)state;
	for (size_t i = 0; i < sizeof(cmds) / sizeof(cmds[0]); i++) {
		cli(NULL, &a, "help", cmds[i], NULL);
		cli(NULL, &b, cmds[i], "--help", NULL);
		assert_int_equal(a.status, 0);
		snprintf(usage, sizeof(usage), "usage: squib-snapshot %s", cmds[i]);
		assert_int_equal(strncmp(a.out, usage, strlen(usage)), 0);
		assert_string_equal(a.out, b.out);
		squib_test_proc_free(&a);
		squib_test_proc_free(&b);
	}
	cli(NULL, &a, "help", NULL);
	assert_int_equal(a.status, 0);
	assert_contains(a.out, "exit status (every command): 0 done; 1 bad usage");
	for (size_t i = 0; i < sizeof(cmds) / sizeof(cmds[0]); i++)
		assert_contains(a.out, cmds[i]);
	squib_test_proc_free(&a);
	cli(NULL, &a, "help", "nope", NULL);
	assert_int_equal(a.status, 1);
	assert_contains(a.err, "unknown command 'nope'");
	assert_string_equal(a.out, "");
	squib_test_proc_free(&a);
}

/* ---- JSON ---- */

static json_t *parse(const char *text)
{
	json_error_t e;
	json_t *j = json_loads(text, 0, &e);

	if (!j)
		fail_msg("not JSON (%s): %s", e.text, text);
	return j;
}

static const char *check_status(json_t *report, const char *name)
{
	json_t *checks = json_object_get(report, "checks"), *c;
	size_t i;

	json_array_foreach(checks, i, c)
	{
		if (!strcmp(json_string_value(json_object_get(c, "name")), name))
			return json_string_value(json_object_get(c, "status"));
	}
	fail_msg("no check \"%s\"", name);
	return NULL;
}

static void test_should_print_the_verify_report_as_json(void **state)
{
	struct fx *f = *state;
	struct squib_test_proc r;
	json_t *j;

	cli(f, &r, "verify", "--json", "base.snap", NULL);
	assert_int_equal(r.status, 0);
	j = parse(r.out);
	assert_string_equal(json_string_value(json_object_get(j, "result")), "ok");
	assert_string_equal(json_string_value(json_object_get(j, "state_path")), "base.snap");
	assert_string_equal(json_string_value(json_object_get(j, "memory_path")), "base.mem");
	assert_int_equal(json_array_size(json_object_get(j, "checks")), SQUIB_CHECK_COUNT);
	assert_string_equal(check_status(j, "extent digests"), "ok");
	json_decref(j);
	squib_test_proc_free(&r);
	/* A digest that fails: corrupt, exit 2, the code named. */
	cli(f, &r, "verify", "base.snap", "--mem", "bad.mem", "--json", NULL);
	assert_int_equal(r.status, 2);
	j = parse(r.out);
	assert_string_equal(json_string_value(json_object_get(j, "result")), "corrupt");
	assert_string_equal(check_status(j, "extent digests"), "corrupt");
	json_decref(j);
	squib_test_proc_free(&r);
}

static void test_should_print_a_json_error_object_when_describe_fails(void **state)
{
	struct fx *f = *state;
	struct squib_test_proc r;
	json_t *j, *e;

	cli(f, &r, "describe", "--json", "missing.snap", NULL);
	assert_int_equal(r.status, 1);
	j = parse(r.out);
	e = json_object_get(j, "error");
	assert_non_null(e);
	assert_string_equal(json_string_value(json_object_get(e, "code")), "SQUIB_E_IO");
	assert_int_equal(json_integer_value(json_object_get(e, "value")), SQUIB_E_IO);
	assert_int_equal(json_integer_value(json_object_get(e, "os_errno")), 2);
	assert_string_equal(json_string_value(json_object_get(e, "path")), "missing.snap");
	assert_string_equal(json_string_value(json_object_get(e, "message")),
			    "snapshot I/O error: No such file or directory (os error 2)");
	assert_contains(json_string_value(json_object_get(e, "text")), "(opening missing.snap)");
	/* The same failure, once, on stderr. */
	assert_int_equal(squib_test_count_lines(r.err), 1);
	assert_contains(r.err, "squib-snapshot: describe: missing.snap: snapshot I/O error");
	json_decref(j);
	squib_test_proc_free(&r);
	/* Without --json nothing goes to stdout. */
	cli(f, &r, "describe", "missing.snap", NULL);
	assert_int_equal(r.status, 1);
	assert_string_equal(r.out, "");
	squib_test_proc_free(&r);
}

/* ---- the memory path ---- */

static void test_should_never_ignore_an_explicit_mem(void **state)
{
	struct fx *f = *state;
	struct squib_test_proc r;
	char *noext = p(f, "noext"), *base = p(f, "base.snap");

	/* Before: "skipped: the state has no memory section", exit 0, --mem unread. */
	cli(f, &r, "verify", "plain.snap", "--mem", "base.mem", NULL);
	assert_int_equal(r.status, 1);
	assert_contains(r.out, "memory file:      FAIL: the state has no memory section: base.mem "
			       "cannot be checked against it\n");
	squib_test_proc_free(&r);
	cli(f, &r, "verify", "plain.snap", NULL);
	assert_int_equal(r.status, 0);
	squib_test_proc_free(&r);
	/* One rule: an extensionless STATE has no default memory file, in restore as in verify. */
	copy_file(base, noext);
	cli(f, &r, "restore", "noext", NULL);
	assert_int_equal(r.status, 1);
	assert_contains(r.err, "squib-snapshot: restore: noext: invalid snapshot path: no memory "
			       "file path for noext");
	squib_test_proc_free(&r);
	cli(f, &r, "verify", "noext", NULL);
	assert_int_equal(r.status, 1);
	assert_contains(r.out, "no memory file path for noext");
	squib_test_proc_free(&r);
	cli(f, &r, "verify", "noext", "--mem", "base.mem", NULL);
	assert_int_equal(r.status, 0);
	squib_test_proc_free(&r);
	free(noext);
	free(base);
}

/* ---- man pages ---- */

static void man_page(const char *name, const char *const *must)
{
	const char *src = getenv("SQUIB_SOURCE_DIR");
	char path[4096];
	char *argv[] = {"/usr/bin/man", "--warnings", "-l", path, NULL};
	struct squib_test_proc r;

	if (!src)
		fail_msg("SQUIB_SOURCE_DIR is not set (run through ctest)");
	snprintf(path, sizeof(path), "%s/docs/man/%s", src, name);
	if (access(argv[0], X_OK))
		fail_msg("%s is missing: scripts/install-deps.sh installs man-db", argv[0]);
	setenv("MANWIDTH", "80", 1);
	squib_test_spawn(NULL, argv, &r);
	assert_int_equal(r.status, 0);
	if (r.err[0])
		fail_msg("man --warnings on %s:\n%s", name, r.err);
	for (; *must; must++)
		assert_contains(r.out, *must);
	squib_test_proc_free(&r);
}

static void test_should_render_the_man_pages_without_a_warning(void **state)
{
	static const char *const cli_page[] = {
	    "SQUIB-SNAPSHOT(1)", "EXIT STATUS", "\n   describe ", "\n   verify ",
	    "\n   rebase ",	 "\n   run ",	"\n   restore ",  "\n   serve ",
	    "\n   version",	 "--chain MEM", "--json",	  NULL};
	static const char *const lib_page[] = {"LIBSQUIB-SNAPSHOT(3)", "squib_error_format",
					       "squib_mem_path_for_state", "SQUIB_E_IO", NULL};

	(void)state;
	man_page("squib-snapshot.1", cli_page);
	man_page("libsquib-snapshot.3", lib_page);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
	    cmocka_unit_test_setup_teardown(test_should_follow_one_exit_code_table_in_every_command,
					    setup, teardown),
	    cmocka_unit_test(test_should_print_the_version_with_the_option),
	    cmocka_unit_test(test_should_print_one_commands_usage_with_help),
	    cmocka_unit_test_setup_teardown(test_should_print_the_verify_report_as_json, setup,
					    teardown),
	    cmocka_unit_test_setup_teardown(
		test_should_print_a_json_error_object_when_describe_fails, setup, teardown),
	    cmocka_unit_test_setup_teardown(test_should_never_ignore_an_explicit_mem, setup,
					    teardown),
	    cmocka_unit_test(test_should_render_the_man_pages_without_a_warning),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
