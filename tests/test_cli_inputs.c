/* SPDX-License-Identifier: Apache-2.0 */
/*
 * The CLI's inputs (docs/DESIGN.md "Inputs"): a FIFO or a directory at any
 * input path, a squib file of the wrong kind, a tiny sparse memory file that
 * claims a huge RAM, and errors that name the file that failed (/dev/kvm
 * included). Every command runs as a child process with a generous liveness
 * bound, so a command that hangs fails the test instead of hanging it.
 */
#include "pair.h"
#include "sparse.h"
#include "spawn.h"
#include "testutil.h"

#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

#include <squib/snapshot.h>

#define PAGES	 16
#define MAX_ARGS 16
#define LIVE_MS	 60000 /* liveness bound: a hang, not a slow machine */

/* base.mem/.snap (full; x86.snap: an x86_64 state of it, for restore), d1.mem (a diff of it), ws (a
 * working set), a FIFO and a directory. */
struct fx {
	char *dir, *base, *base_snap, *x86_snap, *d1, *ws, *fifo, *sub, *out, *sock;
	uint8_t *mem;
	uint64_t ram;
};

static int setup(void **state)
{
	static const uint64_t dirty[] = {1, 3};
	struct squib_memfile_manifest m0;
	struct squib_ws_run run = {0, 4};
	struct squib_workset ws = {0};
	struct squib_error_detail d;
	struct fx *f = calloc(1, sizeof(*f));

	assert_non_null(f);
	f->dir = squib_test_tmpdir();
	f->ram = PAGES * squib_test_page_size();
	f->mem = squib_test_guest_ram(f->ram, 7);
	squib_test_save_pair(f->dir, "base", f->mem, f->ram, true, &f->base_snap, &f->base, &m0);
	f->x86_snap = squib_test_path(f->dir, "x86.snap");
	squib_test_save_x86_state(f->x86_snap, &m0.layout);
	f->d1 = squib_test_path(f->dir, "d1.mem");
	squib_test_save_diff(f->d1, f->mem, f->ram, m0.layout.id, dirty, 2, false, NULL);
	f->ws = squib_test_path(f->dir, "boot.ws");
	ws.page_size = m0.layout.page_size;
	ws.page_count = PAGES;
	ws.run_count = 1;
	ws.runs = &run;
	assert_int_equal(squib_workset_write(f->ws, &ws, &d), 0);
	f->fifo = squib_test_path(f->dir, "fifo");
	assert_int_equal(mkfifo(f->fifo, 0600), 0);
	f->sub = squib_test_path(f->dir, "subdir");
	assert_int_equal(mkdir(f->sub, 0700), 0);
	f->out = squib_test_path(f->dir, "out.mem");
	f->sock = squib_test_path(f->dir, "serve.sock");
	squib_memfile_manifest_release(&m0);
	*state = f;
	return 0;
}

static int teardown(void **state)
{
	struct fx *f = *state;

	munmap(f->mem, f->ram);
	squib_test_rmtree(f->dir);
	free(f->base);
	free(f->base_snap);
	free(f->x86_snap);
	free(f->d1);
	free(f->ws);
	free(f->fifo);
	free(f->sub);
	free(f->out);
	free(f->sock);
	free(f->dir);
	free(f);
	return 0;
}

struct run {
	int status;
	char out[32768]; /* stdout then stderr */
};

/* Run the CLI with the NULL-terminated arguments; it must exit within LIVE_MS. */
static void cli(struct run *r, ...)
{
	char *argv[MAX_ARGS + 2] = {squib_test_cli_path()};
	struct squib_test_bg b;
	size_t n = 1;
	va_list ap;
	const char *a;

	va_start(ap, r);
	while ((a = va_arg(ap, const char *)) && n <= MAX_ARGS)
		argv[n++] = (char *)a;
	va_end(ap);
	argv[n] = NULL;
	squib_test_bg_start(NULL, argv, &b);
	r->status = squib_test_bg_finish(&b, LIVE_MS);
	snprintf(r->out, sizeof(r->out), "%.*s%.*s", (int)b.olen, b.obuf, (int)b.elen, b.ebuf);
}

static void expect(const struct run *r, int status, const char *text)
{
	if (r->status != status || !strstr(r->out, text))
		fail_msg("expected exit %d and \"%s\", got exit %d:\n%s", status, text, r->status,
			 r->out);
}

static void expect_not(const struct run *r, const char *text)
{
	if (strstr(r->out, text))
		fail_msg("did not expect \"%s\" in:\n%s", text, r->out);
}

/* ---- FIFOs and directories ---- */

/* No writer ever opens the FIFO: before, every one of these commands blocked in open(2). */
static void test_should_refuse_a_fifo_at_every_input_path_without_hanging(void **state)
{
	struct fx *f = *state;
	char want[4200];
	struct run r;

	(void)state;
	snprintf(want, sizeof(want), "%s is a FIFO, not a regular file", f->fifo);
	cli(&r, "describe", f->fifo, NULL);
	expect(&r, 1, want);
	cli(&r, "verify", f->fifo, NULL);
	expect(&r, 1, want);
	cli(&r, "verify", f->base_snap, "--mem", f->fifo, NULL);
	expect(&r, 1, want);
	cli(&r, "rebase", "--base", f->fifo, "--diff", f->d1, "--out", f->out, NULL);
	expect(&r, 1, want);
	cli(&r, "rebase", "--base", f->base, "--diff", f->fifo, "--out", f->out, NULL);
	expect(&r, 1, want);
	cli(&r, "rebase", "--base", f->base, "--diff", f->d1, "--out", f->out, "--state", f->fifo,
	    NULL);
	expect(&r, 1, want);
	cli(&r, "restore", f->fifo, "--mem", f->base, NULL);
	expect(&r, 1, want);
	cli(&r, "restore", f->x86_snap, "--mem", f->fifo, NULL);
	expect(&r, 1, want);
	cli(&r, "run", f->fifo, f->base_snap, NULL);
	expect(&r, 1, want);
	cli(&r, "serve", "--socket", f->sock, "--mem", f->fifo, NULL);
	expect(&r, 1, want);
	cli(&r, "serve", "--socket", f->sock, "--mem", f->base, "--prefetch-ws", f->fifo, NULL);
	expect(&r, 1, want);
	cli(&r, "serve", "--socket", f->sock, "--mem", f->base, "--state", f->fifo, NULL);
	expect(&r, 1, want);
	assert_false(squib_test_exists(f->out));
	assert_false(squib_test_exists(f->sock));
}

static void test_should_refuse_a_directory_or_device_input_naming_it(void **state)
{
	struct fx *f = *state;
	char want[4200];
	struct run r;

	/* A device is not read either: /dev/zero used to be read up to the 10 MB limit. */
	cli(&r, "verify", "/dev/zero", NULL);
	expect(&r, 1, "/dev/zero is a character device, not a regular file");
	cli(&r, "verify", f->base_snap, "--mem", "/dev/null", NULL);
	expect(&r, 1, "/dev/null is a character device, not a regular file");

	snprintf(want, sizeof(want), "%s is a directory, not a regular file", f->sub);
	cli(&r, "verify", f->sub, NULL);
	expect(&r, 1, want);
	cli(&r, "rebase", "--base", f->sub, "--diff", f->d1, "--out", f->out, NULL);
	expect(&r, 1, want);
	cli(&r, "serve", "--socket", f->sock, "--mem", f->base, "--prefetch-ws", f->sub, NULL);
	expect(&r, 1, want);
}

/* ---- files of the wrong kind ---- */

/* Before: a memory file as the state was a CRC/magic failure (verify exit 2). */
static void test_should_name_a_memory_file_passed_as_a_state_file_with_exit_1(void **state)
{
	struct fx *f = *state;
	char want[4200];
	struct run r;

	snprintf(want, sizeof(want), "%s is a squib memory file, not a state file", f->base);
	cli(&r, "verify", f->base, NULL);
	expect(&r, 1, want);
	cli(&r, "describe", f->base, NULL);
	expect(&r, 1, want);
	cli(&r, "restore", f->base, "--mem", f->base, NULL);
	expect(&r, 1, want);
	expect_not(&r, "/dev/kvm");
	cli(&r, "rebase", "--base", f->base, "--diff", f->d1, "--out", f->out, "--state", f->d1,
	    NULL);
	expect(&r, 1, "is a squib memory file, not a state file");
}

static void test_should_name_a_state_file_passed_as_a_memory_file_with_exit_1(void **state)
{
	struct fx *f = *state;
	char want[4200];
	struct run r;

	snprintf(want, sizeof(want), "%s is a squib state file, not a memory file", f->base_snap);
	cli(&r, "verify", f->base_snap, "--mem", f->base_snap, NULL);
	expect(&r, 1, want);
	cli(&r, "rebase", "--base", f->base_snap, "--diff", f->d1, "--out", f->out, NULL);
	expect(&r, 1, want);
	cli(&r, "restore", f->x86_snap, "--mem", f->base_snap, NULL);
	expect(&r, 1, want);
	/* Not served as a raw Firecracker memory file either. */
	cli(&r, "serve", "--socket", f->sock, "--mem", f->base_snap, NULL);
	expect(&r, 1, want);
}

static void test_should_name_a_working_set_passed_elsewhere(void **state)
{
	struct fx *f = *state;
	char want[4200];
	struct run r;

	snprintf(want, sizeof(want), "%s is a squib working-set file, not a state file", f->ws);
	cli(&r, "verify", f->ws, NULL);
	expect(&r, 1, want);
	snprintf(want, sizeof(want), "%s is a squib working-set file, not a memory file", f->ws);
	cli(&r, "rebase", "--base", f->ws, "--diff", f->d1, "--out", f->out, NULL);
	expect(&r, 1, want);
	snprintf(want, sizeof(want), "%s is a squib memory file, not a working-set file", f->base);
	cli(&r, "serve", "--socket", f->sock, "--mem", f->base, "--prefetch-ws", f->base, NULL);
	expect(&r, 1, want);
	cli(&r, "restore", f->x86_snap, "--mem", f->base, "--mem-backend", "uffd", "--prefetch-ws",
	    f->base, NULL);
	expect(&r, 1, want);
}

/* ---- restore --handler-uid ---- */

/* The uids trusted besides restore's own are checked as arguments, before any file or /dev/kvm
 * is opened (the refusal of a foreign handler itself runs the guest: test_kvm_e2e). */
static void test_should_check_restore_handler_uids_as_arguments(void **state)
{
	struct fx *f = *state;
	struct run r;

	cli(&r, "restore", f->x86_snap, "--handler-uid", "65534", NULL);
	expect(&r, 1, "--handler-uid needs --uffd-sock");
	cli(&r, "restore", f->x86_snap, "--uffd-sock", f->sock, "--handler-uid", "-1", NULL);
	expect(&r, 1, "--handler-uid needs a uid (0 to 4294967294)");
	cli(&r, "restore", f->x86_snap, "--uffd-sock", f->sock, "--handler-uid", "4294967295",
	    NULL);
	expect(&r, 1, "--handler-uid needs a uid (0 to 4294967294)");
	cli(&r, "restore", f->x86_snap, "--uffd-sock", f->sock, "--handler-uid", NULL);
	expect(&r, 1, "--handler-uid needs a uid");
	cli(&r, "restore", "--help", NULL);
	expect(&r, 0, "--handler-uid UID");
}

/* ---- a sparse file that claims a huge RAM ---- */

/* 8 KiB of data, 1 TiB claimed present: before, verify read zeros for about two hours
 * and rebase wrote them until the disk filled. Each must now refuse within the bound. */
static void test_should_refuse_a_sparse_memory_file_claiming_a_tib_quickly(void **state)
{
	struct fx *f = *state;
	char *mem = squib_test_path(f->dir, "huge.mem"),
	     *snap = squib_test_path(f->dir, "huge.snap");
	struct squib_memfile_manifest m;
	struct run r;

	squib_test_write_sparse_memfile(mem, 1ull << 40, 8192, &m);
	squib_test_save_x86_state(snap, &m.layout);
	cli(&r, "verify", snap, NULL);
	expect(&r, 1, "holes in the file");
	cli(&r, "rebase", "--base", mem, "--diff", f->d1, "--out", f->out, NULL);
	expect(&r, 1, "holes in the file");
	assert_false(squib_test_exists(f->out));
	cli(&r, "serve", "--socket", f->sock, "--mem", mem, NULL);
	expect(&r, 1, "holes in the file");
	cli(&r, "restore", snap, "--mem", mem, NULL);
	expect(&r, 1, "holes in the file");
	squib_memfile_manifest_release(&m);
	free(mem);
	free(snap);
}

/* ---- /dev/kvm, and the order of restore's checks ---- */

static int kvm_present(void)
{
	if (access("/dev/kvm", F_OK) == 0) {
		printf("SKIP: /dev/kvm exists, so its absence cannot be reported here\n");
		return 1;
	}
	return 0;
}

/* Before: "STATE: snapshot I/O error: No such file or directory" for a missing /dev/kvm. */
static void test_should_name_dev_kvm_when_it_is_missing(void **state)
{
	struct fx *f = *state;
	char *snap = f->x86_snap, *guest;
	struct run r;

	if (kvm_present())
		skip(); /* before allocating: skip() does not return */
	guest = squib_test_path(f->dir, "g.bin");
	cli(&r, "restore", snap, "--mem", f->base, NULL);
	expect(&r, 1, "(opening /dev/kvm)");
	expect_not(&r, "x86.snap:");
	assert_int_equal(squib_test_write_file(guest, "\xf4", 1), 0);
	cli(&r, "run", guest, snap, NULL);
	expect(&r, 1, "(opening /dev/kvm)");
	expect_not(&r, "x86.snap:");
	free(guest);
}

/* Before: restore opened KVM first, so every bad file got the /dev/kvm message. */
static void test_should_check_the_pair_before_opening_kvm(void **state)
{
	struct fx *f = *state;
	char *snap = f->x86_snap;
	struct run r;

	if (kvm_present())
		skip();
	squib_test_xor_byte(snap, 40, 0x01);
	cli(&r, "restore", snap, "--mem", f->base, NULL);
	expect(&r, 2, "snapshot CRC64 mismatch"); /* integrity: exit 2, as verify's */
	expect_not(&r, "/dev/kvm");
	squib_test_xor_byte(snap, 40, 0x01);
	cli(&r, "restore", snap, "--mem", f->d1, NULL);
	expect(&r, 2, "snapshot pair mismatch");
	expect_not(&r, "/dev/kvm");
	cli(&r, "restore", "/nonexistent/squib/x.snap", NULL);
	expect(&r, 1, "(opening /nonexistent/squib/x.snap)");
}

int main(void)
{
#define T(t) cmocka_unit_test_setup_teardown(t, setup, teardown)
	const struct CMUnitTest tests[] = {
	    T(test_should_refuse_a_fifo_at_every_input_path_without_hanging),
	    T(test_should_refuse_a_directory_or_device_input_naming_it),
	    T(test_should_name_a_memory_file_passed_as_a_state_file_with_exit_1),
	    T(test_should_name_a_state_file_passed_as_a_memory_file_with_exit_1),
	    T(test_should_name_a_working_set_passed_elsewhere),
	    T(test_should_refuse_a_sparse_memory_file_claiming_a_tib_quickly),
	    T(test_should_name_dev_kvm_when_it_is_missing),
	    T(test_should_check_the_pair_before_opening_kvm),
	    T(test_should_check_restore_handler_uids_as_arguments),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
