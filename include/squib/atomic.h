/* SPDX-License-Identifier: Apache-2.0 */
/*
 * squib/atomic.h - crash-safe, race-safe publication of one file (the
 * file-safety layer every squib writer goes through; docs/DESIGN.md §4).
 *
 * A writer works inside the destination's directory, through a directory fd
 * opened once (every later step is *at() relative to it):
 *
 *   1. The destination, if it exists, must be a regular file: a directory,
 *      device node, FIFO, socket or symbolic link there is refused
 *      (SQUIB_E_INVALID_PATH naming what it is) before anything is created.
 *   2. A per-destination lock: flock(LOCK_EX|LOCK_NB) on ".NAME.squib-lock"
 *      beside it (opened O_NOFOLLOW, a regular file). A second writer to the
 *      same destination fails at once with SQUIB_E_BUSY naming the path;
 *      writers to other names in the directory do not wait for each other.
 *      Holding the lock proves no other writer of NAME is alive, so temps of
 *      NAME left by dead writers are removed here. The lock file is removed
 *      when the lock is released.
 *   3. The temp: "NAME.<16 hex digits>.tmp", a fresh random name created
 *      O_CREAT|O_EXCL|O_NOFOLLOW (never an existing file, never through a
 *      link), mode 0600. A pair's state temp is named after the memory id it
 *      describes, "NAME.<32 hex digits>.tmp", so that pair recovery finds it by
 *      name (squib/load.h).
 *   4. Commit: fsync, close, renameat onto NAME, fsync of the directory fd;
 *      then the lock is released. Any failure before the rename unlinks the
 *      temp and leaves an existing destination byte-identical.
 *
 * Modes: a new file is created 0600 (or squib_atomic_options.mode, which the
 * umask still narrows); a replaced file keeps its mode, narrowed by an
 * explicit mode, never widened (group bits only if the new file can keep the
 * old group). The umask alone never widens anything.
 *
 * Commit is split in two so a caller can publish several files in an order of
 * its choosing: squib_atomic_prepare() makes the temp durable and closes it;
 * squib_atomic_publish() renames and syncs the directory. A caller publishing
 * several files as one (the state/memory pair) holds their locks itself
 * (squib_dest_lock) across all the publications and passes them in the options.
 *
 * Fault injection: every step first calls hooks->before(ctx, step, path) when
 * hooks are given. A negative errno return makes the step fail with that errno
 * as if the system call had; tests also use the hook to observe or to kill the
 * process at a step. Production passes NULL.
 *
 * Thread-safety: a writer or lock is owned by one thread at a time; distinct
 * ones are independent (flock excludes open file descriptions, so two writers
 * in one process exclude each other too).
 */
#ifndef SQUIB_ATOMIC_H
#define SQUIB_ATOMIC_H

#include <squib/api.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/types.h>

#include <squib/error.h>

#ifdef __cplusplus
extern "C" {
#endif

/* Mode of a new file when the options give none. */
#define SQUIB_FILE_MODE_PRIVATE 0600

enum squib_io_step {
	SQUIB_IO_OPEN = 0,  /* path = temp */
	SQUIB_IO_WRITE,     /* path = temp; once per write/pwrite call */
	SQUIB_IO_FSYNC,     /* path = temp */
	SQUIB_IO_CLOSE,     /* path = temp */
	SQUIB_IO_RENAME,    /* path = dest */
	SQUIB_IO_FSYNC_DIR, /* path = parent directory */
	SQUIB_IO_LOCK,	    /* path = the lock file; once per lock taken */
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

/* A held lock on one destination (step 2 above). */
struct squib_dest_lock {
	int dir_fd; /* the destination's directory; -1 when not held */
	int fd;	    /* the lock file, flock-ed; -1 when not held */
	char *dest; /* the destination as given */
	char *dir;  /* its parent directory ("." if none) */
	char *name; /* its name in dir */
	char *lock_name;
	const struct squib_io_hooks *hooks;
};

struct squib_atomic_options {
	const struct squib_io_hooks *hooks; /* NULL in production */
	mode_t mode;			    /* 0: SQUIB_FILE_MODE_PRIVATE; see "Modes" above */
	/* A lock on the destination the caller holds (and releases after the
	 * writer); NULL: the writer takes its own and releases it when done. */
	struct squib_dest_lock *lock;
	/* A pair's state temp: name it after this memory id (16 bytes). */
	const uint8_t *pair_id;
};

struct squib_atomic_writer {
	int fd; /* the temp, open O_RDWR */
	enum squib_atomic_phase phase;
	char *dest;
	char *temp; /* the temp's path, for hooks and messages */
	char *dir;  /* parent directory of dest ("." if none) */
	const struct squib_io_hooks *hooks;
	char *temp_name;	      /* the temp's name in dir */
	struct squib_dest_lock own;   /* the writer's own lock ... */
	struct squib_dest_lock *held; /* ... or the caller's (NULL: own) */
};

SQUIB_API const char *squib_io_step_name(enum squib_io_step step);

/*
 * Steps 1 and 2 for dest: SQUIB_E_INVALID_PATH (not a file name, a name too
 * long for a temp beside it, or not a regular file), SQUIB_E_BUSY (another
 * writer holds it), SQUIB_E_IO (the directory or lock file cannot be opened;
 * a symbolic link at the lock name is ELOOP). On failure *l holds nothing.
 */
SQUIB_API int squib_dest_lock(struct squib_dest_lock *l, const char *dest,
			      const struct squib_io_hooks *hooks, struct squib_error_detail *d);

/* Remove the lock file, release the lock, close. Safe on a released lock. */
SQUIB_API void squib_dest_unlock(struct squib_dest_lock *l);

/* SQUIB_E_ATOMIC_COMMIT_CROSS_FS when the parents of dest and temp are on different
 * filesystems; SQUIB_E_IO when either cannot be stat-ed. (The writer's temp is
 * always in dest's directory; this is for callers that place files themselves.) */
SQUIB_API int squib_atomic_check_same_fs(const char *dest, const char *temp,
					 struct squib_error_detail *d);

/* Steps 1-3 with default options and `hooks` (may be NULL; must outlive the
 * writer). On failure the writer is left CLOSED. */
SQUIB_API int squib_atomic_open(struct squib_atomic_writer *w, const char *dest,
				const struct squib_io_hooks *hooks, struct squib_error_detail *d);

/* squib_atomic_open with options (NULL: defaults). A given lock must be held
 * on this very dest (SQUIB_E_INVALID_ARGUMENT otherwise). */
SQUIB_API int squib_atomic_open_ex(struct squib_atomic_writer *w, const char *dest,
				   const struct squib_atomic_options *opts,
				   struct squib_error_detail *d);

/* Append len bytes (retrying short writes and EINTR). Failure: SQUIB_E_IO, and
 * the writer stays open (abort it). */
SQUIB_API int squib_atomic_write(struct squib_atomic_writer *w, const void *buf, size_t len,
				 struct squib_error_detail *d);

/* Write len bytes at offset (retrying short writes and EINTR). */
SQUIB_API int squib_atomic_pwrite(struct squib_atomic_writer *w, const void *buf, size_t len,
				  off_t off, struct squib_error_detail *d);

/* fsync + close the temp. Failure (SQUIB_E_IO) unlinks the temp and releases the writer. */
SQUIB_API int squib_atomic_prepare(struct squib_atomic_writer *w, struct squib_error_detail *d);

/* rename temp -> dest, then fsync the directory. A rename failure is
 * SQUIB_E_ATOMIC_COMMIT_FAILED (temp unlinked); a directory fsync failure is
 * SQUIB_E_IO (dest is already replaced but may not be durable). The writer is
 * released either way, with its own lock (a caller's lock stays held). */
SQUIB_API int squib_atomic_publish(struct squib_atomic_writer *w, struct squib_error_detail *d);

/*
 * publish for a caller with a recovery path (a state/memory pair, see
 * squib/save.h): like squib_atomic_publish, except that a failed rename
 * keeps the durable temp file (the writer is released without unlinking
 * it), so a later recovery can still complete the rename.
 */
SQUIB_API int squib_atomic_publish_keep(struct squib_atomic_writer *w,
					struct squib_error_detail *d);

/* Release a PREPARED writer without renaming or unlinking its durable temp
 * (for the same recovery); on a writer in another phase it is abort. */
SQUIB_API void squib_atomic_forget(struct squib_atomic_writer *w);

/* prepare + publish. */
SQUIB_API int squib_atomic_commit(struct squib_atomic_writer *w, struct squib_error_detail *d);

/* Drop without committing: close and unlink the temp if still present; release
 * (the writer's own lock too). Safe on a CLOSED or zero-initialised writer and
 * after commit. Never fails. */
SQUIB_API void squib_atomic_abort(struct squib_atomic_writer *w);

/* Whole-file convenience: open, write, commit. */
SQUIB_API int squib_atomic_write_file(const char *dest, const void *buf, size_t len,
				      const struct squib_io_hooks *hooks,
				      struct squib_error_detail *d);

/* fsync a directory by path (O_RDONLY|O_DIRECTORY). SQUIB_E_IO on failure. */
SQUIB_API int squib_fsync_dir(const char *dir, struct squib_error_detail *d);

#ifdef __cplusplus
}
#endif
#endif /* SQUIB_ATOMIC_H */
