/* SPDX-License-Identifier: Apache-2.0 */
/*
 * Atomic writer: upstream atomic.rs tests, then the fixes (directory fsync, bare
 * file names), fault injection at every step, and an strace check that the
 * directory fsync really reaches the kernel after the rename.
 */
#include "testutil.h"

#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include <squib/atomic.h>

#define MAX_CALLS 32
#define NO_STEP SQUIB_IO_STEP_COUNT

struct fixture {
	char *dir;
	char *dest;
	char *temp;
	int saved_cwd; /* restored by teardown when a test chdir-ed; -1 otherwise */
};

/* Hook that records every step and fails the one named in fail_at. */
struct recorder {
	int n;
	enum squib_io_step steps[MAX_CALLS];
	char *paths[MAX_CALLS];
	enum squib_io_step fail_at;
	int fail_errno;
};

static int record(void *ctx, enum squib_io_step step, const char *path)
{
	struct recorder *r = ctx;

	if (r->n < MAX_CALLS) {
		r->steps[r->n] = step;
		r->paths[r->n] = strdup(path);
		r->n++;
	}
	return step == r->fail_at ? -r->fail_errno : 0;
}

static struct squib_io_hooks recorder_hooks(struct recorder *r, enum squib_io_step fail_at, int err)
{
	*r = (struct recorder){.fail_at = fail_at, .fail_errno = err};
	return (struct squib_io_hooks){.ctx = r, .before = record};
}

static void recorder_free(struct recorder *r)
{
	for (int i = 0; i < r->n; i++)
		free(r->paths[i]);
	r->n = 0;
}

static int setup(void **state)
{
	struct fixture *f = calloc(1, sizeof(*f));

	assert_non_null(f);
	f->dir = squib_test_tmpdir();
	f->dest = squib_test_path(f->dir, "x.snap");
	f->temp = squib_test_path(f->dir, "x.snap.tmp");
	f->saved_cwd = -1;
	*state = f;
	return 0;
}

static int teardown(void **state)
{
	struct fixture *f = *state;

	if (f->saved_cwd >= 0) {
		assert_int_equal(fchdir(f->saved_cwd), 0);
		close(f->saved_cwd);
	}
	squib_test_rmtree(f->dir);
	free(f->dir);
	free(f->dest);
	free(f->temp);
	free(f);
	return 0;
}

static void assert_file_is(const char *path, const void *want, size_t want_len)
{
	uint8_t *buf = NULL;
	size_t len = 0;

	assert_int_equal(squib_test_read_file(path, &buf, &len), 0);
	assert_int_equal(len, want_len);
	assert_memory_equal(buf, want, want_len);
	free(buf);
}

/* ---- upstream atomic.rs ------------------------------------------------------------------ */

static void test_should_derive_temp_path_with_tmp_suffix(void **state)
{
	char buf[64];

	(void)state;
	assert_int_equal(squib_atomic_derive_temp_path("/tmp/x.snap", buf, sizeof(buf)), 0);
	assert_string_equal(buf, "/tmp/x.snap.tmp");
	/* Exactly enough room for the suffix and the NUL, then one byte short. */
	assert_int_equal(squib_atomic_derive_temp_path("/tmp/x.snap", buf, 16), 0);
	assert_int_equal(squib_atomic_derive_temp_path("/tmp/x.snap", buf, 15),
			 SQUIB_E_INVALID_PATH);
	assert_int_equal(squib_atomic_derive_temp_path("", buf, sizeof(buf)),
			 SQUIB_E_INVALID_PATH);
	assert_int_equal(squib_atomic_derive_temp_path(NULL, buf, sizeof(buf)),
			 SQUIB_E_INVALID_PATH);
}

static void test_should_commit_temp_file_onto_destination(void **state)
{
	struct fixture *f = *state;
	struct squib_atomic_writer w;
	struct squib_error_detail d;

	assert_int_equal(squib_atomic_open(&w, f->dest, NULL, &d), 0);
	assert_int_equal(w.phase, SQUIB_ATOMIC_OPEN);
	assert_string_equal(w.temp, f->temp);
	assert_string_equal(w.dir, f->dir);
	assert_true(squib_test_exists(f->temp));
	assert_int_equal(squib_atomic_write(&w, "hello ", 6, &d), 0);
	assert_int_equal(squib_atomic_write(&w, "world", 5, &d), 0);
	assert_int_equal(squib_atomic_commit(&w, &d), 0);
	assert_int_equal(w.phase, SQUIB_ATOMIC_CLOSED);
	assert_null(w.dest);
	assert_file_is(f->dest, "hello world", 11);
	assert_false(squib_test_exists(f->temp));
}

static void test_should_unlink_temp_when_writer_dropped_without_commit(void **state)
{
	struct fixture *f = *state;
	struct squib_atomic_writer w;

	assert_int_equal(squib_atomic_open(&w, f->dest, NULL, NULL), 0);
	assert_int_equal(squib_atomic_write(&w, "partial", 7, NULL), 0);
	squib_atomic_abort(&w);
	assert_int_equal(w.phase, SQUIB_ATOMIC_CLOSED);
	assert_false(squib_test_exists(f->dest));
	assert_false(squib_test_exists(f->temp));
}

static void test_should_leave_existing_destination_alone_when_writer_dropped(void **state)
{
	struct fixture *f = *state;
	struct squib_atomic_writer w;

	assert_int_equal(squib_test_write_file(f->dest, "prior", 5), 0);
	assert_int_equal(squib_atomic_open(&w, f->dest, NULL, NULL), 0);
	assert_int_equal(squib_atomic_write(&w, "replacement", 11, NULL), 0);
	squib_atomic_abort(&w);
	assert_file_is(f->dest, "prior", 5);
	assert_false(squib_test_exists(f->temp));
}

static void test_should_handle_back_to_back_atomic_writes(void **state)
{
	struct fixture *f = *state;
	static const char *contents[] = {"first", "second, longer", "3"};

	for (int i = 0; i < 3; i++) {
		size_t n = strlen(contents[i]);
		assert_int_equal(squib_atomic_write_file(f->dest, contents[i], n, NULL, NULL), 0);
		assert_file_is(f->dest, contents[i], n);
		assert_false(squib_test_exists(f->temp));
	}
}

/* Upstream test_should_reject_cross_filesystem_path: in practice it tests a missing parent. */
static void test_should_fail_open_with_io_error_when_parent_dir_missing(void **state)
{
	struct fixture *f = *state;
	char *dest = squib_test_path(f->dir, "no/such/dir/x.snap");
	struct squib_atomic_writer w;
	struct squib_error_detail d;

	assert_int_equal(squib_atomic_open(&w, dest, NULL, &d), SQUIB_E_IO);
	assert_int_equal(d.code, SQUIB_E_IO);
	assert_int_equal(d.os_errno, ENOENT);
	assert_int_equal(w.phase, SQUIB_ATOMIC_CLOSED);
	assert_null(w.temp);
	squib_atomic_abort(&w); /* harmless on a CLOSED writer */
	free(dest);
}

/* Upstream test_should_disarm_guard_to_avoid_post_commit_unlink. */
static void test_should_not_unlink_anything_when_aborted_after_commit(void **state)
{
	struct fixture *f = *state;
	struct squib_atomic_writer w;

	assert_int_equal(squib_atomic_open(&w, f->dest, NULL, NULL), 0);
	assert_int_equal(squib_atomic_write(&w, "kept", 4, NULL), 0);
	assert_int_equal(squib_atomic_commit(&w, NULL), 0);
	/* Someone else's new temp must survive our late abort, as must dest. */
	assert_int_equal(squib_test_write_file(f->temp, "other", 5), 0);
	squib_atomic_abort(&w);
	squib_atomic_abort(&w);
	assert_file_is(f->dest, "kept", 4);
	assert_file_is(f->temp, "other", 5);
}

/* ---- fixes over upstream ----------------------------------------------------------------- */

static void test_should_commit_bare_relative_file_name_against_cwd(void **state)
{
	struct fixture *f = *state;
	struct recorder r;
	struct squib_io_hooks h = recorder_hooks(&r, NO_STEP, 0);
	struct squib_error_detail d;

	f->saved_cwd = open(".", O_RDONLY | O_DIRECTORY | O_CLOEXEC);
	assert_true(f->saved_cwd >= 0);
	assert_int_equal(chdir(f->dir), 0);
	assert_int_equal(squib_atomic_check_same_fs("x.snap", "x.snap.tmp", &d), 0);
	assert_int_equal(squib_atomic_write_file("x.snap", "bare", 4, &h, &d), 0);
	assert_file_is(f->dest, "bare", 4);
	assert_false(squib_test_exists(f->temp));
	assert_int_equal(r.steps[r.n - 1], SQUIB_IO_FSYNC_DIR);
	assert_string_equal(r.paths[r.n - 1], ".");
	recorder_free(&r);
}

/* Two mount points with different st_dev; the first candidate pair that differs. */
static const char *other_filesystem(const char *dir)
{
	static const char *const candidates[] = {"/dev/shm", "/proc", "/sys", "/run", "/dev"};
	struct stat a, b;

	assert_int_equal(stat(dir, &a), 0);
	for (size_t i = 0; i < sizeof(candidates) / sizeof(candidates[0]); i++)
		if (stat(candidates[i], &b) == 0 && b.st_dev != a.st_dev)
			return candidates[i];
	return NULL;
}

static void test_should_report_cross_fs_with_both_paths(void **state)
{
	struct fixture *f = *state;
	const char *other = other_filesystem(f->dir);
	char *temp, msg[2 * SQUIB_DETAIL_PATH_MAX + 256];
	struct squib_error_detail d;

	if (!other) {
		printf("SKIP: no mount point with a st_dev different from %s\n", f->dir);
		skip();
	}
	temp = squib_test_path(other, "x.snap.tmp");
	assert_int_equal(squib_atomic_check_same_fs(f->dest, temp, &d),
			 SQUIB_E_ATOMIC_COMMIT_CROSS_FS);
	assert_string_equal(d.path_a, f->dest);
	assert_string_equal(d.path_b, other);
	squib_error_message(d.code, &d, msg, sizeof(msg));
	assert_non_null(strstr(msg, f->dest));
	assert_non_null(strstr(msg, other));
	/* Same directory on both sides is fine. */
	assert_int_equal(squib_atomic_check_same_fs(f->dest, f->temp, &d), 0);
	free(temp);
}

static void test_should_fail_same_fs_check_with_io_when_dir_cannot_be_stat_ed(void **state)
{
	struct fixture *f = *state;
	char *temp = squib_test_path(f->dir, "missing/x.snap.tmp");
	struct squib_error_detail d;

	assert_int_equal(squib_atomic_check_same_fs(f->dest, temp, &d), SQUIB_E_IO);
	assert_int_equal(d.os_errno, ENOENT);
	free(temp);
}

static void test_should_fsync_parent_dir_once_after_rename(void **state)
{
	struct fixture *f = *state;
	struct recorder r;
	struct squib_io_hooks h = recorder_hooks(&r, NO_STEP, 0);
	int rename_at = -1, dir_syncs = 0;

	assert_int_equal(squib_atomic_write_file(f->dest, "durable", 7, &h, NULL), 0);
	for (int i = 0; i < r.n; i++) {
		if (r.steps[i] == SQUIB_IO_RENAME)
			rename_at = i;
		if (r.steps[i] == SQUIB_IO_FSYNC_DIR) {
			dir_syncs++;
			assert_true(rename_at >= 0 && i > rename_at);
			assert_string_equal(r.paths[i], f->dir);
		}
	}
	assert_int_equal(dir_syncs, 1);
	recorder_free(&r);
}

static void test_should_call_hooks_in_commit_order(void **state)
{
	static const enum squib_io_step want[] = {
		SQUIB_IO_OPEN,  SQUIB_IO_WRITE, SQUIB_IO_WRITE,  SQUIB_IO_WRITE,
		SQUIB_IO_FSYNC, SQUIB_IO_CLOSE, SQUIB_IO_RENAME, SQUIB_IO_FSYNC_DIR,
	};
	struct fixture *f = *state;
	struct recorder r;
	struct squib_io_hooks h = recorder_hooks(&r, NO_STEP, 0);
	struct squib_atomic_writer w;

	assert_int_equal(squib_atomic_open(&w, f->dest, &h, NULL), 0);
	assert_int_equal(squib_atomic_write(&w, "a", 1, NULL), 0);
	assert_int_equal(squib_atomic_pwrite(&w, "b", 1, 1, NULL), 0);
	assert_int_equal(squib_atomic_write(&w, "", 0, NULL), 0); /* still one WRITE step */
	assert_int_equal(squib_atomic_commit(&w, NULL), 0);
	assert_int_equal(r.n, (int)(sizeof(want) / sizeof(want[0])));
	for (int i = 0; i < r.n; i++) {
		const char *path = want[i] == SQUIB_IO_RENAME	 ? f->dest
				   : want[i] == SQUIB_IO_FSYNC_DIR ? f->dir
								   : f->temp;
		assert_string_equal(squib_io_step_name(r.steps[i]), squib_io_step_name(want[i]));
		assert_string_equal(r.paths[i], path);
	}
	recorder_free(&r);
}

static void test_should_keep_previous_destination_when_any_step_fails(void **state)
{
	static const struct {
		enum squib_io_step step;
		int err;
		int code;
	} cases[] = {
		{SQUIB_IO_OPEN, EACCES, SQUIB_E_IO},
		{SQUIB_IO_WRITE, ENOSPC, SQUIB_E_IO},
		{SQUIB_IO_FSYNC, EIO, SQUIB_E_IO},
		{SQUIB_IO_CLOSE, EDQUOT, SQUIB_E_IO},
		{SQUIB_IO_RENAME, EXDEV, SQUIB_E_ATOMIC_COMMIT_FAILED},
	};
	struct fixture *f = *state;

	for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
		struct recorder r;
		struct squib_io_hooks h = recorder_hooks(&r, cases[i].step, cases[i].err);
		struct squib_error_detail d;

		assert_int_equal(squib_test_write_file(f->dest, "previous", 8), 0);
		assert_int_equal(squib_atomic_write_file(f->dest, "next!", 5, &h, &d),
				 cases[i].code);
		assert_int_equal(d.code, cases[i].code);
		assert_int_equal(d.os_errno, cases[i].err);
		assert_file_is(f->dest, "previous", 8);
		assert_false(squib_test_exists(f->temp));
		/* Nothing runs after the failed step. */
		assert_int_equal(r.steps[r.n - 1], cases[i].step);
		recorder_free(&r);
	}
}

static void test_should_keep_writer_open_after_failed_write(void **state)
{
	struct fixture *f = *state;
	struct recorder r;
	struct squib_io_hooks h = recorder_hooks(&r, SQUIB_IO_WRITE, EFBIG);
	struct squib_atomic_writer w;
	struct squib_error_detail d;

	assert_int_equal(squib_atomic_open(&w, f->dest, &h, NULL), 0);
	assert_int_equal(squib_atomic_write(&w, "x", 1, &d), SQUIB_E_IO);
	assert_int_equal(d.os_errno, EFBIG);
	assert_int_equal(w.phase, SQUIB_ATOMIC_OPEN);
	assert_true(squib_test_exists(f->temp));
	squib_atomic_abort(&w);
	assert_false(squib_test_exists(f->temp));
	recorder_free(&r);
}

static void test_should_return_io_with_new_content_when_dir_fsync_fails(void **state)
{
	struct fixture *f = *state;
	struct recorder r;
	struct squib_io_hooks h = recorder_hooks(&r, SQUIB_IO_FSYNC_DIR, EIO);
	struct squib_error_detail d;

	assert_int_equal(squib_test_write_file(f->dest, "previous", 8), 0);
	assert_int_equal(squib_atomic_write_file(f->dest, "next!", 5, &h, &d), SQUIB_E_IO);
	assert_int_equal(d.os_errno, EIO);
	assert_file_is(f->dest, "next!", 5);
	assert_false(squib_test_exists(f->temp));
	recorder_free(&r);
}

static void test_should_publish_only_after_prepare(void **state)
{
	struct fixture *f = *state;
	struct squib_atomic_writer w;

	assert_int_equal(squib_test_write_file(f->dest, "old", 3), 0);
	assert_int_equal(squib_atomic_open(&w, f->dest, NULL, NULL), 0);
	assert_int_equal(squib_atomic_write(&w, "new", 3, NULL), 0);
	assert_int_equal(squib_atomic_publish(&w, NULL), SQUIB_E_INVALID_ARGUMENT);
	assert_int_equal(squib_atomic_prepare(&w, NULL), 0);
	assert_int_equal(w.phase, SQUIB_ATOMIC_PREPARED);
	assert_int_equal(w.fd, -1);
	/* Durable temp, untouched destination until publish. */
	assert_file_is(f->temp, "new", 3);
	assert_file_is(f->dest, "old", 3);
	assert_int_equal(squib_atomic_publish(&w, NULL), 0);
	assert_file_is(f->dest, "new", 3);
	assert_false(squib_test_exists(f->temp));
}

static void test_should_unlink_prepared_temp_on_abort(void **state)
{
	struct fixture *f = *state;
	struct squib_atomic_writer w;

	assert_int_equal(squib_atomic_open(&w, f->dest, NULL, NULL), 0);
	assert_int_equal(squib_atomic_prepare(&w, NULL), 0);
	squib_atomic_abort(&w);
	assert_false(squib_test_exists(f->temp));
	assert_false(squib_test_exists(f->dest));
}

static void test_should_write_sparse_content_with_pwrite(void **state)
{
	struct fixture *f = *state;
	struct squib_atomic_writer w;
	uint8_t want[8192 + 3] = {0};

	assert_int_equal(squib_atomic_open(&w, f->dest, NULL, NULL), 0);
	assert_int_equal(squib_atomic_pwrite(&w, "end", 3, 8192, NULL), 0);
	assert_int_equal(squib_atomic_pwrite(&w, "mid", 3, 4096, NULL), 0);
	assert_int_equal(squib_atomic_pwrite(&w, "AB", 2, 0, NULL), 0);
	assert_int_equal(squib_atomic_pwrite(&w, "x", 1, -1, NULL), SQUIB_E_INVALID_ARGUMENT);
	assert_int_equal(squib_atomic_commit(&w, NULL), 0);
	memcpy(want, "AB", 2);
	memcpy(want + 4096, "mid", 3);
	memcpy(want + 8192, "end", 3);
	assert_file_is(f->dest, want, sizeof(want));
}

static void test_should_truncate_and_reuse_stale_temp(void **state)
{
	struct fixture *f = *state;
	char stale[10000];

	memset(stale, 'S', sizeof(stale));
	assert_int_equal(squib_test_write_file(f->temp, stale, sizeof(stale)), 0);
	assert_int_equal(squib_atomic_write_file(f->dest, "fresh", 5, NULL, NULL), 0);
	assert_file_is(f->dest, "fresh", 5);
	assert_false(squib_test_exists(f->temp));
}

static void test_should_create_temp_with_0666_masked_by_umask(void **state)
{
	struct fixture *f = *state;
	mode_t old = umask(027);
	struct stat st;
	int rc = squib_atomic_write_file(f->dest, "m", 1, NULL, NULL);

	umask(old);
	assert_int_equal(rc, 0);
	assert_int_equal(stat(f->dest, &st), 0);
	assert_int_equal(st.st_mode & 0777, 0640);
}

static void test_should_reject_misuse_without_side_effects(void **state)
{
	struct fixture *f = *state;
	struct squib_atomic_writer w = {.fd = -1};
	char *dir_dest = squib_test_path(f->dir, "sub/");
	struct squib_error_detail d;

	assert_int_equal(squib_atomic_write(&w, "x", 1, &d), SQUIB_E_INVALID_ARGUMENT);
	assert_int_equal(squib_atomic_prepare(&w, &d), SQUIB_E_INVALID_ARGUMENT);
	assert_int_equal(squib_atomic_publish(NULL, &d), SQUIB_E_INVALID_ARGUMENT);
	assert_int_equal(squib_atomic_open(NULL, f->dest, NULL, &d), SQUIB_E_INVALID_ARGUMENT);
	assert_int_equal(squib_atomic_open(&w, NULL, NULL, &d), SQUIB_E_INVALID_ARGUMENT);
	assert_int_equal(squib_atomic_open(&w, "", NULL, &d), SQUIB_E_INVALID_PATH);
	assert_int_equal(squib_atomic_open(&w, dir_dest, NULL, &d), SQUIB_E_INVALID_PATH);
	assert_int_equal(squib_atomic_check_same_fs(NULL, f->temp, &d), SQUIB_E_INVALID_ARGUMENT);
	assert_int_equal(squib_fsync_dir(NULL, &d), SQUIB_E_INVALID_ARGUMENT);
	squib_atomic_abort(NULL);
	squib_atomic_abort(&w);
	assert_int_equal(w.phase, SQUIB_ATOMIC_CLOSED);
	assert_false(squib_test_exists(f->temp));
	free(dir_dest);
}

/* For a pair's recovery: a rename that fails keeps the durable temp, and forget leaves it. */
static void test_should_keep_the_prepared_temp_when_asked(void **state)
{
	struct fixture *f = *state;
	struct recorder r;
	struct squib_io_hooks h = recorder_hooks(&r, SQUIB_IO_RENAME, EIO);
	struct squib_atomic_writer w;
	struct squib_error_detail d;

	assert_int_equal(squib_test_write_file(f->dest, "old", 3), 0);
	assert_int_equal(squib_atomic_open(&w, f->dest, &h, &d), 0);
	assert_int_equal(squib_atomic_write(&w, "new", 3, &d), 0);
	assert_int_equal(squib_atomic_prepare(&w, &d), 0);
	assert_int_equal(squib_atomic_publish_keep(&w, &d), SQUIB_E_ATOMIC_COMMIT_FAILED);
	assert_int_equal(d.os_errno, EIO);
	assert_int_equal(w.phase, SQUIB_ATOMIC_CLOSED);
	assert_file_is(f->dest, "old", 3);
	assert_file_is(f->temp, "new", 3); /* kept for a recovery */
	recorder_free(&r);

	/* Without a failure it is publish. */
	assert_int_equal(squib_atomic_open(&w, f->dest, NULL, &d), 0);
	assert_int_equal(squib_atomic_write(&w, "newer", 5, &d), 0);
	assert_int_equal(squib_atomic_prepare(&w, &d), 0);
	assert_int_equal(squib_atomic_publish_keep(&w, &d), 0);
	assert_file_is(f->dest, "newer", 5);
	assert_false(squib_test_exists(f->temp));

	/* forget: a prepared temp stays; an open one is aborted. */
	assert_int_equal(squib_atomic_open(&w, f->dest, NULL, &d), 0);
	assert_int_equal(squib_atomic_write(&w, "p", 1, &d), 0);
	assert_int_equal(squib_atomic_prepare(&w, &d), 0);
	squib_atomic_forget(&w);
	assert_int_equal(w.phase, SQUIB_ATOMIC_CLOSED);
	assert_file_is(f->temp, "p", 1);
	assert_int_equal(squib_atomic_open(&w, f->dest, NULL, &d), 0);
	squib_atomic_forget(&w);
	assert_false(squib_test_exists(f->temp));
	squib_atomic_forget(NULL);
	assert_file_is(f->dest, "newer", 5);
}

static void test_should_fsync_a_directory_by_path(void **state)
{
	struct fixture *f = *state;
	char *missing = squib_test_path(f->dir, "missing");
	struct squib_error_detail d;

	assert_int_equal(squib_fsync_dir(f->dir, &d), 0);
	assert_int_equal(squib_fsync_dir(missing, &d), SQUIB_E_IO);
	assert_int_equal(d.os_errno, ENOENT);
	assert_int_equal(squib_fsync_dir(f->dest, &d), SQUIB_E_IO); /* not there yet */
	assert_int_equal(squib_test_write_file(f->dest, "f", 1), 0);
	assert_int_equal(squib_fsync_dir(f->dest, &d), SQUIB_E_IO);
	assert_int_equal(d.os_errno, ENOTDIR);
	free(missing);
}

static void test_should_name_every_step(void **state)
{
	static const char *const names[] = {"open",   "write",	   "fsync", "close",
					    "rename", "fsync_dir", "unlink"};

	(void)state;
	assert_int_equal(SQUIB_IO_STEP_COUNT, 7);
	for (int s = 0; s < SQUIB_IO_STEP_COUNT; s++)
		assert_string_equal(squib_io_step_name((enum squib_io_step)s), names[s]);
	assert_string_equal(squib_io_step_name(SQUIB_IO_STEP_COUNT), "unknown");
}

/* ---- the directory fsync, observed with strace ------------------------------------------- */

/* Runs in the child re-executed under strace: one plain commit, no hooks. */
static int atomic_child(const char *dest)
{
	struct squib_error_detail d;

	return squib_atomic_write_file(dest, "traced", 6, NULL, &d) == 0 ? 0 : 1;
}

/* fork + execvp; returns the exit status, or 127 when the program is not found. */
static int run(char *const argv[])
{
	int status;
	pid_t pid = fork();

	assert_true(pid >= 0);
	if (pid == 0) {
		int null = open("/dev/null", O_WRONLY);
		if (null >= 0)
			dup2(null, STDOUT_FILENO);
		/* LeakSanitizer cannot stop the world under ptrace; leaks are checked elsewhere. */
		setenv("ASAN_OPTIONS", "detect_leaks=0", 1);
		execvp(argv[0], argv);
		_exit(127);
	}
	assert_int_equal(waitpid(pid, &status, 0), pid);
	return WIFEXITED(status) ? WEXITSTATUS(status) : 128;
}

/* Index of the first line at or after `from` containing all of a, b and c. */
static int find_line(char **lines, int n, int from, const char *a, const char *b, const char *c)
{
	for (int i = from; i < n; i++)
		if (strstr(lines[i], a) && strstr(lines[i], b) && strstr(lines[i], c))
			return i;
	return -1;
}

static int syscall_result(const char *line)
{
	const char *eq = strrchr(line, '=');

	assert_non_null(eq);
	return atoi(eq + 1);
}

static int split_lines(char *text, char **lines, int max)
{
	int n = 0;

	for (char *save = NULL, *l = strtok_r(text, "\n", &save); l && n < max;
	     l = strtok_r(NULL, "\n", &save))
		lines[n++] = l;
	return n;
}

static void test_should_fsync_parent_dir_after_rename_under_strace(void **state)
{
	struct fixture *f = *state;
	char exe[PATH_MAX], quoted_dir[PATH_MAX + 2], quoted_temp[PATH_MAX + 2], fsync_call[32];
	char *log = squib_test_path(f->dir, "strace.log"), *text, *lines[4096];
	char *version[] = {"strace", "-V", NULL};
	uint8_t *buf;
	size_t len;
	ssize_t exe_len = readlink("/proc/self/exe", exe, sizeof(exe) - 1);
	int n, renamed, opened, synced, temp_open, dir_fd, temp_fd;

	if (run(version) == 127) {
		printf("SKIP: strace not installed\n");
		free(log);
		skip();
	}
	/* strace execs the path itself, where /proc/self/exe would be strace: resolve it here. */
	assert_true(exe_len > 0);
	exe[exe_len] = '\0';
	{
		char *argv[] = {"strace", "-f", "-s", "4096", "-e",
				"trace=fsync,rename,renameat,renameat2,openat", "-o", log, exe,
				"--atomic-child", f->dest, NULL};
		assert_int_equal(run(argv), 0);
	}
	assert_file_is(f->dest, "traced", 6);
	assert_int_equal(squib_test_read_file(log, &buf, &len), 0);
	buf[len] = '\0';
	text = (char *)buf;
	n = split_lines(text, lines, 4096);
	snprintf(quoted_dir, sizeof(quoted_dir), "\"%s\"", f->dir);
	snprintf(quoted_temp, sizeof(quoted_temp), "\"%s\"", f->temp);

	temp_open = find_line(lines, n, 0, "openat(", quoted_temp, "O_CREAT");
	assert_true(temp_open >= 0);
	temp_fd = syscall_result(lines[temp_open]);
	renamed = find_line(lines, n, temp_open, "rename", quoted_temp, "= 0");
	assert_true(renamed > temp_open);
	/* The file's data is durable before its name moves... */
	snprintf(fsync_call, sizeof(fsync_call), "fsync(%d)", temp_fd);
	synced = find_line(lines, n, temp_open, fsync_call, "= 0", "");
	assert_true(synced > temp_open && synced < renamed);
	/* ...and the directory entry is made durable after it. */
	opened = find_line(lines, n, renamed, "openat(", quoted_dir, "O_DIRECTORY");
	assert_true(opened > renamed);
	dir_fd = syscall_result(lines[opened]);
	assert_true(dir_fd >= 0);
	snprintf(fsync_call, sizeof(fsync_call), "fsync(%d)", dir_fd);
	synced = find_line(lines, n, opened, fsync_call, "= 0", "");
	if (synced < 0)
		fail_msg("no fsync(%d) of %s after the rename in %s", dir_fd, f->dir, log);
	free(buf);
	free(log);
}

int main(int argc, char **argv)
{
#define T(fn) cmocka_unit_test_setup_teardown(fn, setup, teardown)
	const struct CMUnitTest tests[] = {
		T(test_should_derive_temp_path_with_tmp_suffix),
		T(test_should_commit_temp_file_onto_destination),
		T(test_should_unlink_temp_when_writer_dropped_without_commit),
		T(test_should_leave_existing_destination_alone_when_writer_dropped),
		T(test_should_handle_back_to_back_atomic_writes),
		T(test_should_fail_open_with_io_error_when_parent_dir_missing),
		T(test_should_not_unlink_anything_when_aborted_after_commit),
		T(test_should_commit_bare_relative_file_name_against_cwd),
		T(test_should_report_cross_fs_with_both_paths),
		T(test_should_fail_same_fs_check_with_io_when_dir_cannot_be_stat_ed),
		T(test_should_fsync_parent_dir_once_after_rename),
		T(test_should_call_hooks_in_commit_order),
		T(test_should_keep_previous_destination_when_any_step_fails),
		T(test_should_keep_writer_open_after_failed_write),
		T(test_should_return_io_with_new_content_when_dir_fsync_fails),
		T(test_should_publish_only_after_prepare),
		T(test_should_unlink_prepared_temp_on_abort),
		T(test_should_write_sparse_content_with_pwrite),
		T(test_should_truncate_and_reuse_stale_temp),
		T(test_should_create_temp_with_0666_masked_by_umask),
		T(test_should_reject_misuse_without_side_effects),
		T(test_should_keep_the_prepared_temp_when_asked),
		T(test_should_fsync_a_directory_by_path),
		T(test_should_name_every_step),
		T(test_should_fsync_parent_dir_after_rename_under_strace),
	};
#undef T

	if (argc == 3 && strcmp(argv[1], "--atomic-child") == 0)
		return atomic_child(argv[2]);
	return cmocka_run_group_tests(tests, NULL, NULL);
}
