/* SPDX-License-Identifier: Apache-2.0 */
/*
 * Atomic writer: upstream atomic.rs tests, then the fixes (directory fsync, bare
 * file names), fault injection at every step, and an strace check that the
 * directory fsync really reaches the kernel after the rename.
 */
#include "testutil.h"

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <grp.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <signal.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/sysmacros.h>
#include <sys/un.h>
#include <sys/wait.h>
#include <unistd.h>

#include <squib/atomic.h>

#define MAX_CALLS 32
#define NO_STEP	  SQUIB_IO_STEP_COUNT

struct fixture {
	char *dir;
	char *dest;
	char *lock;    /* the destination's lock file */
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
	f->lock = squib_test_path(f->dir, ".x.snap.squib-lock");
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
	free(f->lock);
	free(f);
	return 0;
}

/* Temps and lock files of the destination left beside it. */
static int strays(const struct fixture *f)
{
	return squib_test_layer_files(f->dest, NULL);
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

/* NAME.<16 hex>.tmp beside NAME, fresh for every writer; the lock beside it while open. */
static void test_should_name_a_fresh_temp_beside_the_destination(void **state)
{
	struct fixture *f = *state;
	struct squib_atomic_writer w, v;
	char *other = squib_test_path(f->dir, "y.snap");
	size_t n = strlen(f->dest);

	assert_int_equal(squib_atomic_open(&w, f->dest, NULL, NULL), 0);
	assert_int_equal(strlen(w.temp), n + 1 + 16 + 4);
	assert_memory_equal(w.temp, f->dest, n);
	assert_int_equal(w.temp[n], '.');
	assert_string_equal(w.temp + n + 17, ".tmp");
	assert_true(squib_test_exists(f->lock));
	/* Another destination in the same directory: its own lock, its own temp. */
	assert_int_equal(squib_atomic_open(&v, other, NULL, NULL), 0);
	assert_string_not_equal(strrchr(w.temp, '/'), strrchr(v.temp, '/'));
	squib_atomic_abort(&v);
	squib_atomic_abort(&w);
	assert_int_equal(strays(f), 0);
	/* Two writers in a row never draw the same name. */
	assert_int_equal(squib_atomic_open(&w, f->dest, NULL, NULL), 0);
	{
		char *first = strdup(w.temp);

		squib_atomic_abort(&w);
		assert_int_equal(squib_atomic_open(&w, f->dest, NULL, NULL), 0);
		assert_string_not_equal(first, w.temp);
		free(first);
	}
	squib_atomic_abort(&w);
	free(other);
}

static void test_should_commit_temp_file_onto_destination(void **state)
{
	struct fixture *f = *state;
	struct squib_atomic_writer w;
	struct squib_error_detail d;

	assert_int_equal(squib_atomic_open(&w, f->dest, NULL, &d), 0);
	assert_int_equal(w.phase, SQUIB_ATOMIC_OPEN);
	assert_string_equal(w.dir, f->dir);
	assert_true(squib_test_exists(w.temp));
	assert_int_equal(squib_atomic_write(&w, "hello ", 6, &d), 0);
	assert_int_equal(squib_atomic_write(&w, "world", 5, &d), 0);
	assert_int_equal(squib_atomic_commit(&w, &d), 0);
	assert_int_equal(w.phase, SQUIB_ATOMIC_CLOSED);
	assert_null(w.dest);
	assert_file_is(f->dest, "hello world", 11);
	assert_int_equal(strays(f), 0);
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
	assert_int_equal(strays(f), 0);
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
	assert_int_equal(strays(f), 0);
}

static void test_should_handle_back_to_back_atomic_writes(void **state)
{
	struct fixture *f = *state;
	static const char *contents[] = {"first", "second, longer", "3"};

	for (int i = 0; i < 3; i++) {
		size_t n = strlen(contents[i]);
		assert_int_equal(squib_atomic_write_file(f->dest, contents[i], n, NULL, NULL), 0);
		assert_file_is(f->dest, contents[i], n);
		assert_int_equal(strays(f), 0);
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
	{
		char *other = squib_test_path(f->dir, "x.snap.0123456789abcdef.tmp");

		assert_int_equal(squib_test_write_file(other, "other", 5), 0);
		squib_atomic_abort(&w);
		squib_atomic_abort(&w);
		assert_file_is(f->dest, "kept", 4);
		assert_file_is(other, "other", 5);
		free(other);
	}
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
	assert_int_equal(strays(f), 0);
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
	temp = squib_test_path(other, "x.snap.0123456789abcdef.tmp");
	assert_int_equal(squib_atomic_check_same_fs(f->dest, temp, &d),
			 SQUIB_E_ATOMIC_COMMIT_CROSS_FS);
	assert_string_equal(d.path_a, f->dest);
	assert_string_equal(d.path_b, other);
	squib_error_message(d.code, &d, msg, sizeof(msg));
	assert_non_null(strstr(msg, f->dest));
	assert_non_null(strstr(msg, other));
	/* Same directory on both sides is fine. */
	free(temp);
	temp = squib_test_path(f->dir, "x.snap.0123456789abcdef.tmp");
	assert_int_equal(squib_atomic_check_same_fs(f->dest, temp, &d), 0);
	free(temp);
}

static void test_should_fail_same_fs_check_with_io_when_dir_cannot_be_stat_ed(void **state)
{
	struct fixture *f = *state;
	char *temp = squib_test_path(f->dir, "missing/x.snap.0123456789abcdef.tmp");
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
	    SQUIB_IO_LOCK,  SQUIB_IO_OPEN,  SQUIB_IO_WRITE,  SQUIB_IO_WRITE,	 SQUIB_IO_WRITE,
	    SQUIB_IO_FSYNC, SQUIB_IO_CLOSE, SQUIB_IO_RENAME, SQUIB_IO_FSYNC_DIR,
	};
	struct fixture *f = *state;
	struct recorder r;
	struct squib_io_hooks h = recorder_hooks(&r, NO_STEP, 0);
	struct squib_atomic_writer w;

	char *temp;

	assert_int_equal(squib_atomic_open(&w, f->dest, &h, NULL), 0);
	temp = strdup(w.temp);
	assert_int_equal(squib_atomic_write(&w, "a", 1, NULL), 0);
	assert_int_equal(squib_atomic_pwrite(&w, "b", 1, 1, NULL), 0);
	assert_int_equal(squib_atomic_write(&w, "", 0, NULL), 0); /* still one WRITE step */
	assert_int_equal(squib_atomic_commit(&w, NULL), 0);
	assert_int_equal(r.n, (int)(sizeof(want) / sizeof(want[0])));
	for (int i = 0; i < r.n; i++) {
		const char *path = want[i] == SQUIB_IO_RENAME	   ? f->dest
				   : want[i] == SQUIB_IO_FSYNC_DIR ? f->dir
				   : want[i] == SQUIB_IO_LOCK	   ? f->lock
								   : temp;
		assert_string_equal(squib_io_step_name(r.steps[i]), squib_io_step_name(want[i]));
		assert_string_equal(r.paths[i], path);
	}
	free(temp);
	recorder_free(&r);
}

static void test_should_keep_previous_destination_when_any_step_fails(void **state)
{
	static const struct {
		enum squib_io_step step;
		int err;
		int code;
	} cases[] = {
	    {SQUIB_IO_LOCK, EIO, SQUIB_E_IO},
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
		assert_int_equal(strays(f), 0);
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
	assert_true(squib_test_exists(w.temp));
	squib_atomic_abort(&w);
	assert_int_equal(strays(f), 0);
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
	assert_int_equal(strays(f), 0);
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
	assert_file_is(w.temp, "new", 3);
	assert_file_is(f->dest, "old", 3);
	assert_int_equal(squib_atomic_publish(&w, NULL), 0);
	assert_file_is(f->dest, "new", 3);
	assert_int_equal(strays(f), 0);
}

static void test_should_unlink_prepared_temp_on_abort(void **state)
{
	struct fixture *f = *state;
	struct squib_atomic_writer w;

	assert_int_equal(squib_atomic_open(&w, f->dest, NULL, NULL), 0);
	assert_int_equal(squib_atomic_prepare(&w, NULL), 0);
	squib_atomic_abort(&w);
	assert_int_equal(strays(f), 0);
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

/* A writer that holds the lock knows no other writer of the name is alive: its
 * ordinary temps are garbage and go. A pair's state temp (recovery's), other
 * names' temps and names that only look alike stay. */
static void test_should_remove_stale_temps_of_dead_writers_only(void **state)
{
	static const char *const gone[] = {"x.snap.00000000deadbeef.tmp"};
	static const char *const stay[] = {
	    "x.snap.0123456789abcdef0123456789abcdef.tmp", "y.snap.00000000deadbeef.tmp",
	    "x.snap.00000000DEADBEEF.tmp", "x.snap.tmp", "xx.snap.00000000deadbeef.tmp"};
	struct fixture *f = *state;
	char stale[10000];

	memset(stale, 'S', sizeof(stale));
	for (size_t i = 0; i < 1; i++) {
		char *p = squib_test_path(f->dir, gone[i]);
		assert_int_equal(squib_test_write_file(p, stale, sizeof(stale)), 0);
		free(p);
	}
	for (size_t i = 0; i < sizeof(stay) / sizeof(stay[0]); i++) {
		char *p = squib_test_path(f->dir, stay[i]);
		assert_int_equal(squib_test_write_file(p, "keep", 4), 0);
		free(p);
	}
	assert_int_equal(squib_atomic_write_file(f->dest, "fresh", 5, NULL, NULL), 0);
	assert_file_is(f->dest, "fresh", 5);
	{
		char *p = squib_test_path(f->dir, gone[0]);
		assert_false(squib_test_exists(p));
		free(p);
	}
	for (size_t i = 0; i < sizeof(stay) / sizeof(stay[0]); i++) {
		char *p = squib_test_path(f->dir, stay[i]);
		assert_file_is(p, "keep", 4);
		free(p);
	}
}

static mode_t mode_of(const char *path)
{
	struct stat st;

	assert_int_equal(lstat(path, &st), 0);
	return st.st_mode & 07777;
}

/* Write dest under umask `mask` with options mode `mode`; the published file's mode. */
static mode_t write_with(struct fixture *f, mode_t mask, mode_t mode)
{
	const struct squib_atomic_options o = {.mode = mode};
	struct squib_atomic_writer w;
	mode_t old = umask(mask);
	int rc = squib_atomic_open_ex(&w, f->dest, &o, NULL);

	umask(old);
	assert_int_equal(rc, 0);
	assert_int_equal(squib_atomic_write(&w, "m", 1, NULL), 0);
	assert_int_equal(squib_atomic_commit(&w, NULL), 0);
	return mode_of(f->dest);
}

/* New files are private whatever the umask; an explicit mode is still narrowed by it. */
static void test_should_create_files_0600_under_any_umask(void **state)
{
	static const mode_t masks[] = {000, 022, 077};
	struct fixture *f = *state;

	for (size_t i = 0; i < sizeof(masks) / sizeof(masks[0]); i++) {
		unlink(f->dest);
		assert_int_equal(write_with(f, masks[i], 0), 0600);
		unlink(f->dest);
		assert_int_equal(write_with(f, masks[i], 0644), 0644 & ~masks[i]);
	}
	/* The whole-file helper every other writer uses, too. */
	{
		mode_t old = umask(0);
		int rc;

		unlink(f->dest);
		rc = squib_atomic_write_file(f->dest, "m", 1, NULL, NULL);
		umask(old);
		assert_int_equal(rc, 0);
		assert_int_equal(mode_of(f->dest), 0600);
	}
}

/* Replacing keeps the old mode, narrowed by an explicit mode, never widened. */
static void test_should_never_widen_the_mode_of_a_replaced_file(void **state)
{
	struct fixture *f = *state;

	assert_int_equal(squib_test_write_file(f->dest, "old", 3), 0);
	assert_int_equal(chmod(f->dest, 0600), 0);
	assert_int_equal(write_with(f, 000, 0), 0600);
	assert_int_equal(write_with(f, 000, 0666), 0600);
	assert_int_equal(chmod(f->dest, 0640), 0);
	assert_int_equal(write_with(f, 077, 0), 0640); /* kept, whatever the umask */
	assert_int_equal(write_with(f, 000, 0600), 0600);
	assert_int_equal(chmod(f->dest, 04755), 0);
	assert_int_equal(write_with(f, 000, 0), 0755); /* never the set-id bits */
	assert_int_equal(chmod(f->dest, 0400), 0);
	assert_int_equal(write_with(f, 022, 0), 0400);
	/* Group bits carry over with the group, or not at all. */
	if (chown(f->dest, (uid_t)-1, 65534) == 0) {
		struct stat st;

		assert_int_equal(chmod(f->dest, 0640), 0);
		assert_int_equal(write_with(f, 000, 0), 0640);
		assert_int_equal(stat(f->dest, &st), 0);
		assert_int_equal(st.st_gid, 65534); /* fchown kept it (root, or a member) */
	} else {
		printf("SKIP: cannot chown to group 65534 (%s): group carry-over untested\n",
		       strerror(errno));
	}
	assert_int_equal(strays(f), 0);
}

/* A writer that cannot give the new file the old group drops the group bits: another
 * group must not gain what the old one had. Run as user and group 65534 (needs root to
 * set up; skipped loudly otherwise). */
static void test_should_drop_group_bits_when_the_group_cannot_be_kept(void **state)
{
	struct fixture *f = *state;
	char *sub = squib_test_path(f->dir, "nobody"), *dest = squib_test_path(sub, "x.snap");
	int status;
	pid_t pid;

	if (geteuid() != 0) {
		printf("SKIP: not root: cannot run a writer as another user\n");
		free(sub);
		free(dest);
		skip();
	}
	assert_int_equal(chmod(f->dir, 0711), 0); /* mkdtemp's 0700: let 65534 through */
	assert_int_equal(mkdir(sub, 0700), 0);
	assert_int_equal(chown(sub, 65534, 65534), 0);
	assert_int_equal(squib_test_write_file(dest, "old", 3), 0);
	assert_int_equal(chown(dest, 65534, 0), 0); /* group 0: 65534 is no member */
	assert_int_equal(chmod(dest, 0640), 0);
	pid = fork();
	assert_true(pid >= 0);
	if (pid == 0) {
		struct stat st;

		if (setgroups(0, NULL) || setgid(65534) || setuid(65534) ||
		    squib_atomic_write_file(dest, "new", 3, NULL, NULL) || stat(dest, &st))
			_exit(255);
		_exit((int)(st.st_mode & 0777) == 0600 && st.st_gid == 65534 ? 0 : 1);
	}
	assert_int_equal(waitpid(pid, &status, 0), pid);
	assert_true(WIFEXITED(status));
	assert_int_equal(WEXITSTATUS(status), 0);
	assert_file_is(dest, "new", 3);
	assert_int_equal(squib_test_layer_files(dest, NULL), 0);
	free(sub);
	free(dest);
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
	assert_int_equal(squib_atomic_check_same_fs(NULL, f->dest, &d), SQUIB_E_INVALID_ARGUMENT);
	assert_int_equal(squib_fsync_dir(NULL, &d), SQUIB_E_INVALID_ARGUMENT);
	squib_atomic_abort(NULL);
	squib_atomic_abort(&w);
	assert_int_equal(w.phase, SQUIB_ATOMIC_CLOSED);
	assert_int_equal(strays(f), 0);
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
	char *temp;

	assert_int_equal(squib_atomic_open(&w, f->dest, &h, &d), 0);
	temp = strdup(w.temp);
	assert_int_equal(squib_atomic_write(&w, "new", 3, &d), 0);
	assert_int_equal(squib_atomic_prepare(&w, &d), 0);
	assert_int_equal(squib_atomic_publish_keep(&w, &d), SQUIB_E_ATOMIC_COMMIT_FAILED);
	assert_int_equal(d.os_errno, EIO);
	assert_int_equal(w.phase, SQUIB_ATOMIC_CLOSED);
	assert_file_is(f->dest, "old", 3);
	assert_file_is(temp, "new", 3);		  /* kept for a recovery */
	assert_false(squib_test_exists(f->lock)); /* but the lock is released */
	unlink(temp);
	free(temp);
	recorder_free(&r);

	/* Without a failure it is publish. */
	assert_int_equal(squib_atomic_open(&w, f->dest, NULL, &d), 0);
	assert_int_equal(squib_atomic_write(&w, "newer", 5, &d), 0);
	assert_int_equal(squib_atomic_prepare(&w, &d), 0);
	assert_int_equal(squib_atomic_publish_keep(&w, &d), 0);
	assert_file_is(f->dest, "newer", 5);
	assert_int_equal(strays(f), 0);

	/* forget: a prepared temp stays; an open one is aborted. */
	assert_int_equal(squib_atomic_open(&w, f->dest, NULL, &d), 0);
	temp = strdup(w.temp);
	assert_int_equal(squib_atomic_write(&w, "p", 1, &d), 0);
	assert_int_equal(squib_atomic_prepare(&w, &d), 0);
	squib_atomic_forget(&w);
	assert_int_equal(w.phase, SQUIB_ATOMIC_CLOSED);
	assert_file_is(temp, "p", 1);
	unlink(temp);
	free(temp);
	assert_int_equal(squib_atomic_open(&w, f->dest, NULL, &d), 0);
	squib_atomic_forget(&w);
	assert_int_equal(strays(f), 0);
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
					    "rename", "fsync_dir", "lock",  "unlink"};

	(void)state;
	assert_int_equal(SQUIB_IO_STEP_COUNT, 8);
	for (int s = 0; s < SQUIB_IO_STEP_COUNT; s++)
		assert_string_equal(squib_io_step_name((enum squib_io_step)s), names[s]);
	assert_string_equal(squib_io_step_name(SQUIB_IO_STEP_COUNT), "unknown");
}

/* ---- hostile paths ------------------------------------------------------------------------ */

/* Entries in the fixture's directory (to see that a refusal created nothing). */
static int entries(const struct fixture *f)
{
	DIR *d = opendir(f->dir);
	struct dirent *e;
	int n = 0;

	assert_non_null(d);
	while ((e = readdir(d)))
		n += strcmp(e->d_name, ".") && strcmp(e->d_name, "..");
	closedir(d);
	return n;
}

/* A refused destination: INVALID_PATH naming it and what it is; nothing created
 * beside it, the node itself untouched. */
static void assert_refused(struct fixture *f, const char *dest, const char *what)
{
	struct stat before, after;
	struct squib_error_detail d;
	struct squib_atomic_writer w;
	int n = entries(f);
	char msg[1024];

	assert_int_equal(lstat(dest, &before), 0);
	assert_int_equal(squib_atomic_write_file(dest, "x", 1, NULL, &d), SQUIB_E_INVALID_PATH);
	squib_error_message(d.code, &d, msg, sizeof(msg));
	if (!strstr(msg, dest) || !strstr(msg, what))
		fail_msg("%s: message \"%s\" does not name it as %s", dest, msg, what);
	assert_int_equal(squib_atomic_open(&w, dest, NULL, &d), SQUIB_E_INVALID_PATH);
	assert_int_equal(w.phase, SQUIB_ATOMIC_CLOSED);
	assert_int_equal(lstat(dest, &after), 0);
	assert_true(before.st_ino == after.st_ino && before.st_mode == after.st_mode &&
		    before.st_rdev == after.st_rdev && before.st_size == after.st_size);
	assert_int_equal(entries(f), n);
}

static void test_should_refuse_a_destination_that_is_not_a_regular_file(void **state)
{
	struct fixture *f = *state;
	char *sub = squib_test_path(f->dir, "sub"), *fifo = squib_test_path(f->dir, "fifo"),
	     *sock = squib_test_path(f->dir, "sock"), *link = squib_test_path(f->dir, "link"),
	     *victim = squib_test_path(f->dir, "victim"), *node = squib_test_path(f->dir, "null");
	struct sockaddr_un sa = {.sun_family = AF_UNIX};
	int sfd = socket(AF_UNIX, SOCK_STREAM, 0);

	assert_int_equal(mkdir(sub, 0700), 0);
	assert_int_equal(mkfifo(fifo, 0600), 0);
	assert_true(sfd >= 0 && strlen(sock) < sizeof(sa.sun_path));
	memcpy(sa.sun_path, sock, strlen(sock) + 1);
	assert_int_equal(bind(sfd, (struct sockaddr *)&sa, sizeof(sa)), 0);
	assert_int_equal(squib_test_write_file(victim, "secret", 6), 0);
	assert_int_equal(symlink(victim, link), 0);
	assert_refused(f, sub, "directory");
	assert_refused(f, fifo, "FIFO"); /* and it did not hang waiting for a reader */
	assert_refused(f, sock, "socket");
	assert_refused(f, link, "symbolic link");
	assert_file_is(victim, "secret", 6);
	/* A node like /dev/null of our own: as root, a regression here would replace the
	 * real one for the whole machine. Without root, /dev/null itself is safe to aim at. */
	if (mknod(node, S_IFCHR | 0666, makedev(1, 3)) == 0) {
		assert_refused(f, node, "character device");
	} else if (geteuid() != 0) {
		struct squib_error_detail d;
		struct stat st;

		assert_int_equal(squib_atomic_write_file("/dev/null", "x", 1, NULL, &d),
				 SQUIB_E_INVALID_PATH);
		assert_int_equal(stat("/dev/null", &st), 0);
		assert_true(S_ISCHR(st.st_mode));
	} else {
		printf("SKIP: root but mknod failed (%s): no device node destination tested\n",
		       strerror(errno));
	}
	close(sfd);
	free(sub);
	free(fifo);
	free(sock);
	free(link);
	free(victim);
	free(node);
}

/* What the planting hook does at the temp's open: a link at exactly the name the writer is
 * about to create, as an attacker racing it would. */
struct planter {
	const char *victim;
	bool hard;
	int planted;
	char at[PATH_MAX];
};

static int plant(void *ctx, enum squib_io_step step, const char *path)
{
	struct planter *p = ctx;

	if (step != SQUIB_IO_OPEN || p->planted)
		return 0;
	assert_int_equal(p->hard ? link(p->victim, path) : symlink(p->victim, path), 0);
	snprintf(p->at, sizeof(p->at), "%s", path);
	p->planted++;
	return 0;
}

static void test_should_never_write_through_a_link_planted_at_the_temp_name(void **state)
{
	struct fixture *f = *state;
	char *victim = squib_test_path(f->dir, "victim");

	assert_int_equal(squib_test_write_file(victim, "secret", 6), 0);
	for (int hard = 0; hard < 2; hard++) {
		struct planter p = {.victim = victim, .hard = hard};
		struct squib_io_hooks h = {&p, plant};
		const uint8_t id[16] = {1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15, 16};
		const struct squib_atomic_options pair = {.hooks = &h, .pair_id = id};
		struct squib_atomic_writer w;
		struct squib_error_detail d;
		struct stat st;

		/* An ordinary temp: the planted name is taken, so another fresh one is drawn. */
		assert_int_equal(squib_atomic_write_file(f->dest, "published", 9, &h, &d), 0);
		assert_int_equal(p.planted, 1);
		assert_file_is(victim, "secret", 6);
		assert_int_equal(lstat(f->dest, &st), 0);
		assert_true(S_ISREG(st.st_mode));
		assert_file_is(f->dest, "published", 9);
		/* The plant is left for the next writer under the lock to remove: only the name. */
		assert_int_equal(squib_atomic_write_file(f->dest, "again", 5, NULL, &d), 0);
		assert_false(squib_test_exists(p.at));
		assert_file_is(victim, "secret", 6);
		/* A pair's state temp is named by a fresh memory id: a plant there is refused. */
		p.planted = 0;
		assert_int_equal(squib_atomic_open_ex(&w, f->dest, &pair, &d), SQUIB_E_IO);
		assert_int_equal(d.os_errno, EEXIST);
		assert_file_is(victim, "secret", 6);
		assert_file_is(f->dest, "again", 5);
		assert_int_equal(unlink(p.at), 0);
	}
	assert_int_equal(strays(f), 0);
	free(victim);
}

static void test_should_never_follow_a_link_planted_at_the_lock_or_old_temp_name(void **state)
{
	struct fixture *f = *state;
	char *victim = squib_test_path(f->dir, "victim"),
	     *old = squib_test_path(f->dir, "x.snap.tmp");
	struct squib_error_detail d;

	assert_int_equal(squib_test_write_file(victim, "secret", 6), 0);
	/* The temp name every earlier version used: now just another file. */
	assert_int_equal(symlink(victim, old), 0);
	assert_int_equal(squib_atomic_write_file(f->dest, "one", 3, NULL, &d), 0);
	assert_file_is(victim, "secret", 6);
	/* A symbolic link at the lock name: refused (ELOOP), nothing written. */
	assert_int_equal(symlink(victim, f->lock), 0);
	assert_int_equal(squib_atomic_write_file(f->dest, "two", 3, NULL, &d), SQUIB_E_IO);
	assert_int_equal(d.os_errno, ELOOP);
	assert_file_is(victim, "secret", 6);
	assert_file_is(f->dest, "one", 3);
	assert_int_equal(unlink(f->lock), 0);
	/* A hard link there: only locked, never written; its name goes with the lock. */
	assert_int_equal(link(victim, f->lock), 0);
	assert_int_equal(squib_atomic_write_file(f->dest, "three", 5, NULL, &d), 0);
	assert_file_is(victim, "secret", 6);
	assert_file_is(f->dest, "three", 5);
	assert_false(squib_test_exists(f->lock));
	/* A FIFO there: refused without waiting for a writer. */
	assert_int_equal(mkfifo(f->lock, 0600), 0);
	assert_int_equal(squib_atomic_write_file(f->dest, "four", 4, NULL, &d),
			 SQUIB_E_INVALID_PATH);
	assert_non_null(strstr(d.msg, "FIFO"));
	assert_int_equal(unlink(f->lock), 0);
	free(victim);
	free(old);
}

/* ---- writers that race ------------------------------------------------------------------ */

static void assert_busy(const struct squib_error_detail *d, const char *dest)
{
	char msg[1024];

	assert_int_equal(d->code, SQUIB_E_BUSY);
	squib_error_message(d->code, d, msg, sizeof(msg));
	if (!strstr(msg, dest) || !strstr(msg, "busy") || !strstr(msg, ".x.snap.squib-lock"))
		fail_msg("busy message \"%s\" does not name %s and its lock", msg, dest);
}

/* A writer in another process holds the destination: busy, at once; once that writer is
 * killed, its temp and lock are garbage the next writer clears. */
static void test_should_fail_busy_while_another_writer_holds_it(void **state)
{
	struct fixture *f = *state;
	struct squib_atomic_writer w;
	struct squib_error_detail d;
	int ready[2], status;
	pid_t pid;
	char c;

	/* In one process too: flock excludes open file descriptions, not processes. */
	assert_int_equal(squib_atomic_open(&w, f->dest, NULL, &d), 0);
	assert_int_equal(squib_atomic_write_file(f->dest, "x", 1, NULL, &d), SQUIB_E_BUSY);
	assert_busy(&d, f->dest);
	squib_atomic_abort(&w);

	assert_int_equal(pipe(ready), 0);
	pid = fork();
	assert_true(pid >= 0);
	if (pid == 0) {
		if (squib_atomic_open(&w, f->dest, NULL, NULL) ||
		    squib_atomic_write(&w, "child", 5, NULL) || write(ready[1], "r", 1) != 1)
			_exit(1);
		pause(); /* killed while writing */
		_exit(2);
	}
	close(ready[1]);
	assert_int_equal(read(ready[0], &c, 1), 1);
	close(ready[0]);
	assert_int_equal(squib_atomic_write_file(f->dest, "parent", 6, NULL, &d), SQUIB_E_BUSY);
	assert_busy(&d, f->dest);
	assert_false(squib_test_exists(f->dest));
	kill(pid, SIGKILL);
	assert_int_equal(waitpid(pid, &status, 0), pid);
	assert_int_equal(squib_test_temps(f->dest, NULL), 1); /* the dead writer's */
	assert_int_equal(squib_atomic_write_file(f->dest, "parent", 6, NULL, &d), 0);
	assert_file_is(f->dest, "parent", 6);
	assert_int_equal(strays(f), 0);
}

#define RACE_CHUNK  65536
#define RACE_CHUNKS 16

/* Writer `id`'s content: every byte says which writer wrote it (0 for all when same). */
static uint8_t race_byte(int id, int chunk)
{
	return (uint8_t)(id * 16 + chunk + 1);
}

static void race_child(const char *dest, int id, int go)
{
	static uint8_t buf[RACE_CHUNK];
	struct squib_atomic_writer w;
	struct squib_error_detail d;
	char c;
	int rc;

	if (read(go, &c, 1) != 0) /* the start line: EOF for every writer at once */
		_exit(3);
	rc = squib_atomic_open(&w, dest, NULL, &d);
	for (int i = 0; !rc && i < RACE_CHUNKS; i++) {
		memset(buf, race_byte(id, i), sizeof(buf));
		rc = squib_atomic_write(&w, buf, sizeof(buf), &d);
	}
	if (!rc)
		rc = squib_atomic_commit(&w, &d);
	if (rc == SQUIB_E_BUSY && strstr(d.msg, dest))
		_exit(1);
	_exit(rc ? 2 : 0);
}

/* Which writer's whole result the file is; fails if it is a mixture. */
static int race_winner(const char *path, int writers)
{
	uint8_t *buf;
	size_t len;
	int id;

	assert_int_equal(squib_test_read_file(path, &buf, &len), 0);
	assert_int_equal(len, (size_t)RACE_CHUNK * RACE_CHUNKS);
	id = (buf[0] - 1) / 16;
	assert_true(id >= 0 && id < writers);
	for (size_t i = 0; i < len; i++)
		if (buf[i] != race_byte(id, (int)(i / RACE_CHUNK)))
			fail_msg("byte %zu is 0x%02x: not writer %d's result alone", i, buf[i], id);
	free(buf);
	return id;
}

/* `writers` processes released at once onto one destination, `trials` times; `same`: one input. */
static void race(struct fixture *f, int writers, int trials, bool same)
{
	int won = 0, busy = 0;

	for (int t = 0; t < trials; t++) {
		int go[2], ok[16] = {0}, winner;
		pid_t pids[16];

		unlink(f->dest);
		assert_int_equal(pipe(go), 0);
		for (int i = 0; i < writers; i++) {
			pids[i] = fork();
			assert_true(pids[i] >= 0);
			if (pids[i] == 0) {
				close(go[1]);
				race_child(f->dest, same ? 0 : i, go[0]);
			}
		}
		close(go[0]);
		close(go[1]); /* go */
		for (int i = 0, status; i < writers; i++) {
			assert_int_equal(waitpid(pids[i], &status, 0), pids[i]);
			assert_true(WIFEXITED(status));
			if (WEXITSTATUS(status) > 1)
				fail_msg("trial %d: writer %d failed other than busy", t, i);
			ok[i] = WEXITSTATUS(status) == 0;
			won += ok[i];
			busy += !ok[i];
		}
		winner = race_winner(f->dest, same ? 1 : writers);
		/* The published file is a writer's that succeeded: */
		assert_true(same ? won > 0 : ok[winner]);
		assert_int_equal(strays(f), 0);
	}
	printf("race: %d writers x %d trials (%s inputs): %d published, %d busy, 0 mixed\n",
	       writers, trials, same ? "same" : "different", won, busy);
}

static void test_should_publish_one_whole_result_when_two_writers_race(void **state)
{
	race(*state, 2, 40, false);
	race(*state, 2, 20, true);
}

static void test_should_publish_one_whole_result_when_eight_writers_race(void **state)
{
	race(*state, 8, 15, false);
	race(*state, 8, 10, true);
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

/* Under strace: the directory is opened once and everything after is relative to
 * it; the lock is taken before the temp is created O_EXCL|O_NOFOLLOW; the temp is
 * fsync-ed before its rename, and the directory after it. */
static void test_should_fsync_parent_dir_after_rename_under_strace(void **state)
{
	struct fixture *f = *state;
	char exe[PATH_MAX], quoted_dir[PATH_MAX + 2], call[64];
	char *log = squib_test_path(f->dir, "strace.log"), *text, *lines[4096];
	char *version[] = {"strace", "-V", NULL};
	uint8_t *buf;
	size_t len;
	ssize_t exe_len = readlink("/proc/self/exe", exe, sizeof(exe) - 1);
	int n, renamed, opened, synced, temp_open, locked, dir_fd, temp_fd;

	if (run(version) == 127) {
		printf("SKIP: strace not installed\n");
		free(log);
		skip();
	}
	/* strace execs the path itself, where /proc/self/exe would be strace: resolve it here. */
	assert_true(exe_len > 0);
	exe[exe_len] = '\0';
	{
		char *argv[] = {"strace", "-f",
				"-s",	  "4096",
				"-e",	  "trace=fsync,rename,renameat,renameat2,openat,flock",
				"-o",	  log,
				exe,	  "--atomic-child",
				f->dest,  NULL};
		assert_int_equal(run(argv), 0);
	}
	assert_file_is(f->dest, "traced", 6);
	assert_int_equal(squib_test_read_file(log, &buf, &len), 0);
	buf[len] = '\0';
	text = (char *)buf;
	n = split_lines(text, lines, 4096);
	snprintf(quoted_dir, sizeof(quoted_dir), "\"%s\"", f->dir);

	opened = find_line(lines, n, 0, "openat(", quoted_dir, "O_DIRECTORY");
	assert_true(opened >= 0);
	dir_fd = syscall_result(lines[opened]);
	snprintf(call, sizeof(call), "openat(%d, \".x.snap.squib-lock\"", dir_fd);
	assert_true(find_line(lines, n, opened, call, "O_NOFOLLOW", "") > opened);
	locked = find_line(lines, n, opened, "flock(", "LOCK_EX|LOCK_NB", "= 0");
	assert_true(locked > opened);
	snprintf(call, sizeof(call), "openat(%d, \"x.snap.", dir_fd);
	temp_open = find_line(lines, n, locked, call, "O_CREAT|O_EXCL|O_NOFOLLOW", ".tmp\"");
	assert_true(temp_open > locked);
	temp_fd = syscall_result(lines[temp_open]);
	snprintf(call, sizeof(call), "renameat(%d, \"x.snap.", dir_fd);
	renamed = find_line(lines, n, temp_open, call, "\"x.snap\")", "= 0");
	assert_true(renamed > temp_open);
	/* The file's data is durable before its name moves... */
	snprintf(call, sizeof(call), "fsync(%d)", temp_fd);
	synced = find_line(lines, n, temp_open, call, "= 0", "");
	assert_true(synced > temp_open && synced < renamed);
	/* ...and the directory entry is made durable after it. */
	snprintf(call, sizeof(call), "fsync(%d)", dir_fd);
	synced = find_line(lines, n, renamed, call, "= 0", "");
	if (synced < 0)
		fail_msg("no fsync(%d) of %s after the rename in %s", dir_fd, f->dir, log);
	free(buf);
	free(log);
}

int main(int argc, char **argv)
{
#define T(fn) cmocka_unit_test_setup_teardown(fn, setup, teardown)
	const struct CMUnitTest tests[] = {
	    T(test_should_name_a_fresh_temp_beside_the_destination),
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
	    T(test_should_remove_stale_temps_of_dead_writers_only),
	    T(test_should_create_files_0600_under_any_umask),
	    T(test_should_never_widen_the_mode_of_a_replaced_file),
	    T(test_should_drop_group_bits_when_the_group_cannot_be_kept),
	    T(test_should_reject_misuse_without_side_effects),
	    T(test_should_keep_the_prepared_temp_when_asked),
	    T(test_should_fsync_a_directory_by_path),
	    T(test_should_name_every_step),
	    T(test_should_fsync_parent_dir_after_rename_under_strace),
	    T(test_should_refuse_a_destination_that_is_not_a_regular_file),
	    T(test_should_never_write_through_a_link_planted_at_the_temp_name),
	    T(test_should_never_follow_a_link_planted_at_the_lock_or_old_temp_name),
	    T(test_should_fail_busy_while_another_writer_holds_it),
	    T(test_should_publish_one_whole_result_when_two_writers_race),
	    T(test_should_publish_one_whole_result_when_eight_writers_race),
	};
#undef T

	if (argc == 3 && strcmp(argv[1], "--atomic-child") == 0)
		return atomic_child(argv[2]);
	return cmocka_run_group_tests(tests, NULL, NULL);
}
