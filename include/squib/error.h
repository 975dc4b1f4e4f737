/* SPDX-License-Identifier: Apache-2.0 */
/*
 * squib/error.h - error codes and their wire-stable messages.
 *
 * Every squib_* function that can fail returns 0 on success or one of the
 * negative SQUIB_E_* codes below. Codes are disjoint from -errno values: an OS
 * failure is reported as SQUIB_E_IO (or SQUIB_E_MEMORY_IO, ...) with the errno
 * kept in the detail struct.
 *
 * A failing call that takes a `struct squib_error_detail *` (which may be NULL)
 * fills it with the parameters of the message, so squib_error_message() can
 * render the exact text the upstream crate's SnapshotError Display produced.
 * Those strings are part of the wire contract: do not change them.
 * squib_error_format() renders that text with the detail's msg (what failed,
 * on which path) added: what a program shows a person.
 *
 * Backends (the ops structs of squib/vm.h, squib/vcpu.h, squib/track.h,
 * squib/pager.h) follow one rule, applied in one place (squib_backend_rc):
 * an op returns 0, a SQUIB_E_* code (with d filled, or not: then the library
 * names the op), or -errno (errno 1..1000), which becomes SQUIB_E_IO with the
 * errno kept in os_errno. Anything else is a backend bug, reported as
 * SQUIB_E_CAPTURE.
 *
 * Thread-safety: all functions here are reentrant; a detail struct belongs to
 * the caller and must not be shared between concurrent calls.
 */
#ifndef SQUIB_ERROR_H
#define SQUIB_ERROR_H

#include <squib/api.h>
#include <stddef.h>
#include <stdint.h>

#ifdef __cplusplus
extern "C" {
#endif

enum squib_error {
	SQUIB_OK = 0,
	/* One per upstream SnapshotError variant, in upstream order. */
	SQUIB_E_QUIESCE_TIMEOUT = -1001,
	SQUIB_E_MAGIC_MISMATCH = -1002,
	SQUIB_E_VERSION_MISMATCH = -1003,
	SQUIB_E_CRC_MISMATCH = -1004,
	SQUIB_E_TOO_SHORT = -1005,
	SQUIB_E_INCOMPATIBLE = -1006,
	SQUIB_E_ATOMIC_COMMIT_FAILED = -1007,
	SQUIB_E_ATOMIC_COMMIT_CROSS_FS = -1008,
	SQUIB_E_INVALID_PATH = -1009, /* also any rejected configuration */
	SQUIB_E_ENCODING = -1010,     /* upstream "Bitcode" */
	SQUIB_E_SIZE_LIMIT_EXCEEDED = -1011,
	SQUIB_E_MEMORY_IO = -1012,
	SQUIB_E_IO = -1013,
	SQUIB_E_CAPTURE = -1014,
	/* Ours. */
	SQUIB_E_NOMEM = -1015,         /* an allocation failed */
	SQUIB_E_INVALID_ARGUMENT = -1016, /* API misuse (NULL pointer, bad flag) */
	SQUIB_E_PAIR_MISMATCH = -1017, /* state and memory file do not belong together */
	SQUIB_E_BUSY = -1018,          /* another writer holds the destination (msg names it) */
};

#define SQUIB_SEMVER_FMT "%u.%u.%u"

/* A format version; printed as "M.m.p". */
struct squib_version {
	uint16_t major;
	uint16_t minor;
	uint16_t patch;
};

/*
 * Longest path or message text kept in a detail (with the NUL). A longer path
 * keeps its head and tail around "..." (both ends name a file best); a longer
 * message is cut. The detail stays small (about 1 KiB) so it can live on the
 * stack of a page-fault handler.
 */
#define SQUIB_DETAIL_PATH_MAX 256
#define SQUIB_DETAIL_MSG_MAX 512

/* A buffer this large holds any squib_error_format() text whole. */
#define SQUIB_ERROR_TEXT_MAX 4096

/*
 * Parameters of the last error. Only the fields the code's message uses are
 * meaningful:
 *   MAGIC_MISMATCH        magic_found, magic_expected
 *   VERSION_MISMATCH      version_found, version_expected
 *   SIZE_LIMIT_EXCEEDED   limit
 *   ATOMIC_COMMIT_CROSS_FS path_a (dest), path_b (temp dir)
 *   ATOMIC_COMMIT_FAILED, MEMORY_IO, IO   os_errno (the io error text)
 *   INVALID_PATH, ENCODING, CAPTURE, PAIR_MISMATCH, INVALID_ARGUMENT, BUSY   msg
 */
struct squib_error_detail {
	int code;
	int os_errno;
	uint64_t magic_found;
	uint64_t magic_expected;
	struct squib_version version_found;
	struct squib_version version_expected;
	uint64_t limit;
	char path_a[SQUIB_DETAIL_PATH_MAX];
	char path_b[SQUIB_DETAIL_PATH_MAX];
	char msg[SQUIB_DETAIL_MSG_MAX];
};

/*
 * Render the wire-stable message for `code` into buf (always NUL-terminated
 * when len > 0). `d` may be NULL; parameters then print as unknown. Returns
 * the length the full message needs, like snprintf.
 */
SQUIB_API int squib_error_message(int code, const struct squib_error_detail *d, char *buf,
				  size_t len);

/*
 * The message of squib_error_message(), then " (d->msg)" when the detail has
 * a msg the message does not already contain: e.g. "snapshot I/O error: No
 * such file or directory (os error 2) (opening /x/vm.snap)". Same contract as
 * squib_error_message (NUL-terminated, returns the full length). Control
 * characters are passed through: escape them before showing the text on a
 * terminal.
 */
SQUIB_API int squib_error_format(int code, const struct squib_error_detail *d, char *buf,
				 size_t len);

/* Static name of the code, e.g. "SQUIB_E_CRC_MISMATCH"; "SQUIB_E_UNKNOWN" if none. */
SQUIB_API const char *squib_error_name(int code);

/* Forget the last error in d (code, errno, msg) without zeroing it all; d may be NULL. */
SQUIB_API void squib_error_clear(struct squib_error_detail *d);

/*
 * The backend rule (see the top of this file), for a caller of an op: call
 * squib_error_clear(d) before the op, then pass its return code here with
 * what the op was ("kvm: capture"). Returns 0, the backend's SQUIB_E_* (d
 * filled with "<what> failed" when the backend left it empty), SQUIB_E_IO
 * for -errno (os_errno kept, msg = what), or SQUIB_E_CAPTURE for any other
 * value (msg says which).
 */
SQUIB_API int squib_backend_rc(int rc, struct squib_error_detail *d, const char *what_fmt, ...)
	__attribute__((format(printf, 3, 4)));

/*
 * Helpers for implementers: reset `d` and record one error, returning `code`
 * so a failing path can `return squib_fail_*(...)`. All accept d == NULL.
 */
SQUIB_API int squib_fail(struct squib_error_detail *d, int code);
SQUIB_API int squib_fail_errno(struct squib_error_detail *d, int code, int os_errno);
SQUIB_API int squib_fail_msg(struct squib_error_detail *d, int code, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));
/* An OS error (os_errno) with msg saying what failed, e.g. "opening /dev/kvm":
 * the code's fixed text stays as upstream has it, the detail names the path. */
SQUIB_API int squib_fail_errno_msg(struct squib_error_detail *d, int code, int os_errno,
				   const char *fmt, ...) __attribute__((format(printf, 4, 5)));
SQUIB_API int squib_fail_magic(struct squib_error_detail *d, uint64_t found, uint64_t expected);
SQUIB_API int squib_fail_version(struct squib_error_detail *d, struct squib_version found,
				 struct squib_version expected);
SQUIB_API int squib_fail_limit(struct squib_error_detail *d, uint64_t limit);
SQUIB_API int squib_fail_cross_fs(struct squib_error_detail *d, const char *dest,
				  const char *temp_dir);

#ifdef __cplusplus
}
#endif
#endif /* SQUIB_ERROR_H */
