/* SPDX-License-Identifier: Apache-2.0 */
/*
 * squib/atomic.h - crash-safe publication of one file.
 *
 * The temp file is the destination path + ".tmp", in the same directory. Open
 * checks that both parent directories are on one filesystem (st_dev; "." when
 * the name has no directory part), then creates/truncates the temp. Commit is
 * fsync, close, rename, and fsync of the parent directory, so the new name is
 * durable when commit returns 0. Any failure before the rename unlinks the temp
 * and leaves an existing destination byte-identical.
 *
 * Commit is split in two so a caller can publish several files in an order of
 * its choosing: squib_atomic_prepare() makes the temp durable and closes it;
 * squib_atomic_publish() renames and syncs the directory.
 *
 * Fault injection: every step first calls hooks->before(ctx, step, path) when
 * hooks are given. A negative errno return makes the step fail with that errno
 * as if the system call had; tests also use the hook to observe or to kill the
 * process at a step. Production passes NULL.
 *
 * Thread-safety: a writer is owned by one thread at a time; distinct writers
 * are independent.
 */
#ifndef SQUIB_ATOMIC_H
#define SQUIB_ATOMIC_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/types.h>

#include <squib/error.h>

#ifdef __cplusplus
extern "C" {
#endif

#define SQUIB_TEMP_SUFFIX ".tmp"

enum squib_io_step {
	SQUIB_IO_OPEN = 0,  /* path = temp */
	SQUIB_IO_WRITE,     /* path = temp; once per write/pwrite call */
	SQUIB_IO_FSYNC,     /* path = temp */
	SQUIB_IO_CLOSE,     /* path = temp */
	SQUIB_IO_RENAME,    /* path = dest */
	SQUIB_IO_FSYNC_DIR, /* path = parent directory */
	SQUIB_IO_UNLINK,    /* path = the file removed (an in-place rebase's undo log) */
	SQUIB_IO_STEP_COUNT
};

struct squib_io_hooks {
	void *ctx;
	/* 0 to let the step run; a negative errno to fail it with that error. */
	int (*before)(void *ctx, enum squib_io_step step, const char *path);
};

enum squib_atomic_phase {
	SQUIB_ATOMIC_CLOSED = 0, /* not open, or released */
	SQUIB_ATOMIC_OPEN,       /* temp open for writing */
	SQUIB_ATOMIC_PREPARED,   /* temp durable and closed, not yet renamed */
};

struct squib_atomic_writer {
	int fd;
	enum squib_atomic_phase phase;
	char *dest;
	char *temp;
	char *dir; /* parent directory of dest ("." if none) */
	const struct squib_io_hooks *hooks;
};

const char *squib_io_step_name(enum squib_io_step step);

/* dest + ".tmp" into buf. SQUIB_E_INVALID_PATH if it does not fit or dest is empty. */
int squib_atomic_derive_temp_path(const char *dest, char *buf, size_t len);

/* SQUIB_E_ATOMIC_COMMIT_CROSS_FS when the parents of dest and temp are on different
 * filesystems; SQUIB_E_IO when either cannot be stat-ed. */
int squib_atomic_check_same_fs(const char *dest, const char *temp, struct squib_error_detail *d);

/* Open the temp (create, truncate, 0666 & ~umask). `hooks` may be NULL and must
 * outlive the writer. On failure the writer is left CLOSED. */
int squib_atomic_open(struct squib_atomic_writer *w, const char *dest,
		      const struct squib_io_hooks *hooks, struct squib_error_detail *d);

/* Append len bytes (retrying short writes and EINTR). Failure: SQUIB_E_IO, and
 * the writer stays open (abort it). */
int squib_atomic_write(struct squib_atomic_writer *w, const void *buf, size_t len,
		       struct squib_error_detail *d);

/* Write len bytes at offset (retrying short writes and EINTR). */
int squib_atomic_pwrite(struct squib_atomic_writer *w, const void *buf, size_t len, off_t off,
			struct squib_error_detail *d);

/* fsync + close the temp. Failure (SQUIB_E_IO) unlinks the temp and releases the writer. */
int squib_atomic_prepare(struct squib_atomic_writer *w, struct squib_error_detail *d);

/* rename temp -> dest, then fsync the directory. A rename failure is
 * SQUIB_E_ATOMIC_COMMIT_FAILED (temp unlinked); a directory fsync failure is
 * SQUIB_E_IO (dest is already replaced but may not be durable). The writer is
 * released either way. */
int squib_atomic_publish(struct squib_atomic_writer *w, struct squib_error_detail *d);

/*
 * publish for a caller with a recovery path (a state/memory pair, see
 * squib/save.h): like squib_atomic_publish, except that a failed rename
 * keeps the durable temp file (the writer is released without unlinking
 * it), so a later recovery can still complete the rename.
 */
int squib_atomic_publish_keep(struct squib_atomic_writer *w, struct squib_error_detail *d);

/* Release a PREPARED writer without renaming or unlinking its durable temp
 * (for the same recovery); on a writer in another phase it is abort. */
void squib_atomic_forget(struct squib_atomic_writer *w);

/* prepare + publish. */
int squib_atomic_commit(struct squib_atomic_writer *w, struct squib_error_detail *d);

/* Drop without committing: close and unlink the temp if still present; release.
 * Safe on a CLOSED writer and after commit. Never fails. */
void squib_atomic_abort(struct squib_atomic_writer *w);

/* Whole-file convenience: open, write, commit. */
int squib_atomic_write_file(const char *dest, const void *buf, size_t len,
			    const struct squib_io_hooks *hooks, struct squib_error_detail *d);

/* fsync a directory by path (O_RDONLY|O_DIRECTORY). SQUIB_E_IO on failure. */
int squib_fsync_dir(const char *dir, struct squib_error_detail *d);

#ifdef __cplusplus
}
#endif
#endif /* SQUIB_ATOMIC_H */
