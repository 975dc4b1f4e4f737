/* SPDX-License-Identifier: Apache-2.0 */
/* Wire-stable error messages (upstream SnapshotError Display). */
#include <squib/error.h>
#include <squib/snapshot.h>

#include <inttypes.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stdio.h>
#include <string.h>

#include "util.h"

/*
 * Rust's io::Error Display for an OS error: "<strerror text> (os error N)".
 * Rust takes the text from strerror_r, so glibc's wording matches.
 */
static void io_error_text(int os_errno, char *buf, size_t len)
{
	char tmp[256];
	const char *text = strerror_r(os_errno, tmp, sizeof(tmp));

	snprintf(buf, len, "%s (os error %d)", text, os_errno);
}

/*
 * Rust's Debug form of a path: double-quoted, with \" \\ \t \r \n \0 escaped
 * and other control characters as \u{XX}. Non-ASCII bytes are passed through.
 */
static void rust_debug_path(const char *path, char *buf, size_t len)
{
	size_t o = 0;

#define PUT(c)                                                                                     \
	do {                                                                                       \
		if (o + 1 < len)                                                                   \
			buf[o++] = (c);                                                            \
	} while (0)
	PUT('"');
	for (const unsigned char *p = (const unsigned char *)path; *p; p++) {
		char esc = 0;
		switch (*p) {
		case '"': esc = '"'; break;
		case '\\': esc = '\\'; break;
		case '\t': esc = 't'; break;
		case '\r': esc = 'r'; break;
		case '\n': esc = 'n'; break;
		default: break;
		}
		if (esc) {
			PUT('\\');
			PUT(esc);
		} else if (*p < 0x20 || *p == 0x7f) {
			char hex[12];
			snprintf(hex, sizeof(hex), "\\u{%x}", *p);
			for (const char *h = hex; *h; h++)
				PUT(*h);
		} else {
			PUT((char)*p);
		}
	}
	PUT('"');
#undef PUT
	if (len)
		buf[o < len ? o : len - 1] = '\0';
}

/* The codes upstream does not have: their texts are ours. */
static int own_message(int code, const struct squib_error_detail *d, char *buf, size_t len)
{
	switch (code) {
	case SQUIB_E_NOMEM:
		return snprintf(buf, len, "out of memory");
	case SQUIB_E_INVALID_ARGUMENT:
		return snprintf(buf, len, "invalid argument: %s", d->msg);
	case SQUIB_E_PAIR_MISMATCH:
		return snprintf(buf, len, "snapshot pair mismatch: %s", d->msg);
	case SQUIB_E_BUSY:
		return snprintf(buf, len, "snapshot file busy: %s", d->msg);
	default:
		return snprintf(buf, len, "unknown squib error %d", code);
	}
}

int squib_error_message(int code, const struct squib_error_detail *d, char *buf, size_t len)
{
	static const struct squib_error_detail none;
	/* A path's debug form: each byte at most 6 ("\\u{1f}"), quotes and NUL. */
	char a[SQUIB_DETAIL_PATH_MAX * 6 + 3], b[SQUIB_DETAIL_PATH_MAX * 6 + 3];

	if (!d)
		d = &none;
	switch (code) {
	case SQUIB_OK:
		return snprintf(buf, len, "success");
	case SQUIB_E_QUIESCE_TIMEOUT:
		return snprintf(buf, len, "a vCPU did not ack quiesce within the timeout");
	case SQUIB_E_MAGIC_MISMATCH:
		return snprintf(buf, len, "snapshot magic mismatch (file: 0x%" PRIx64 ", expected: 0x%" PRIx64 ")",
				d->magic_found, d->magic_expected);
	case SQUIB_E_VERSION_MISMATCH:
		return snprintf(buf, len,
				"snapshot version " SQUIB_SEMVER_FMT
				" is incompatible with squib's " SQUIB_SEMVER_FMT,
				d->version_found.major, d->version_found.minor, d->version_found.patch,
				d->version_expected.major, d->version_expected.minor,
				d->version_expected.patch);
	case SQUIB_E_CRC_MISMATCH:
		return snprintf(buf, len, "snapshot CRC64 mismatch");
	case SQUIB_E_TOO_SHORT:
		return snprintf(buf, len, "snapshot file is too short to contain a CRC trailer");
	case SQUIB_E_INCOMPATIBLE:
		return snprintf(buf, len,
				"snapshot is from a different VMM (sysreg or GIC blob shape mismatch)");
	case SQUIB_E_ATOMIC_COMMIT_FAILED:
		io_error_text(d->os_errno, a, sizeof(a));
		return snprintf(buf, len, "atomic commit (rename) failed: %s", a);
	case SQUIB_E_ATOMIC_COMMIT_CROSS_FS:
		rust_debug_path(d->path_a, a, sizeof(a));
		rust_debug_path(d->path_b, b, sizeof(b));
		return snprintf(buf, len,
				"snapshot temp-file path is on a different filesystem from the "
				"destination (dest=%s, temp_dir=%s); rename(2) cannot be atomic "
				"across mounts",
				a, b);
	case SQUIB_E_INVALID_PATH:
		return snprintf(buf, len, "invalid snapshot path: %s", d->msg);
	case SQUIB_E_ENCODING:
		return snprintf(buf, len, "snapshot encoding error: %s", d->msg);
	case SQUIB_E_SIZE_LIMIT_EXCEEDED:
		return snprintf(buf, len, "snapshot exceeds %" PRIu64 " byte deserialization limit",
				d->limit);
	case SQUIB_E_MEMORY_IO:
		io_error_text(d->os_errno, a, sizeof(a));
		return snprintf(buf, len, "memory file I/O error: %s", a);
	case SQUIB_E_IO:
		io_error_text(d->os_errno, a, sizeof(a));
		return snprintf(buf, len, "snapshot I/O error: %s", a);
	case SQUIB_E_CAPTURE:
		return snprintf(buf, len, "snapshot capture/restore failure: %s", d->msg);
	default:
		return own_message(code, d, buf, len);
	}
}

int squib_error_format(int code, const struct squib_error_detail *d, char *buf, size_t len)
{
	char m[SQUIB_ERROR_TEXT_MAX];
	int n = squib_error_message(code, d, m, sizeof(m));

	if (n < 0)
		return n;
	if (!d || !d->msg[0] || strstr(m, d->msg))
		return snprintf(buf, len, "%s", m);
	return snprintf(buf, len, "%s (%s)", m, d->msg);
}

static const char unknown_name[] = "SQUIB_E_UNKNOWN";

const char *squib_error_name(int code)
{
	switch (code) {
#define N(c)                                                                                       \
	case c: return #c
		N(SQUIB_OK);
		N(SQUIB_E_QUIESCE_TIMEOUT);
		N(SQUIB_E_MAGIC_MISMATCH);
		N(SQUIB_E_VERSION_MISMATCH);
		N(SQUIB_E_CRC_MISMATCH);
		N(SQUIB_E_TOO_SHORT);
		N(SQUIB_E_INCOMPATIBLE);
		N(SQUIB_E_ATOMIC_COMMIT_FAILED);
		N(SQUIB_E_ATOMIC_COMMIT_CROSS_FS);
		N(SQUIB_E_INVALID_PATH);
		N(SQUIB_E_ENCODING);
		N(SQUIB_E_SIZE_LIMIT_EXCEEDED);
		N(SQUIB_E_MEMORY_IO);
		N(SQUIB_E_IO);
		N(SQUIB_E_CAPTURE);
		N(SQUIB_E_NOMEM);
		N(SQUIB_E_INVALID_ARGUMENT);
		N(SQUIB_E_PAIR_MISMATCH);
		N(SQUIB_E_BUSY);
#undef N
	default:
		return unknown_name;
	}
}

static bool is_squib_code(int code)
{
	return code < 0 && squib_error_name(code) != unknown_name;
}

static void reset(struct squib_error_detail *d, int code)
{
	d->code = code;
	d->os_errno = 0;
	d->magic_found = d->magic_expected = 0;
	memset(&d->version_found, 0, sizeof(d->version_found));
	memset(&d->version_expected, 0, sizeof(d->version_expected));
	d->limit = 0;
	d->path_a[0] = d->path_b[0] = d->msg[0] = '\0';
}

void squib_error_clear(struct squib_error_detail *d)
{
	if (d) {
		d->code = 0;
		d->os_errno = 0;
		d->msg[0] = '\0';
	}
}

/* errno values are small (Linux's end below 200); SQUIB_E_* start at 1001. */
#define BACKEND_ERRNO_MAX 1000

int squib_backend_rc(int rc, struct squib_error_detail *d, const char *what_fmt, ...)
{
	char what[SQUIB_DETAIL_MSG_MAX];
	va_list ap;

	if (rc == 0 || (is_squib_code(rc) && d && d->code == rc))
		return rc;
	va_start(ap, what_fmt);
	vsnprintf(what, sizeof(what), what_fmt, ap);
	va_end(ap);
	if (is_squib_code(rc))
		return squib_fail_msg(d, rc, "%s failed", what);
	if (rc < 0 && rc >= -BACKEND_ERRNO_MAX)
		return squib_fail_errno_msg(d, SQUIB_E_IO, -rc, "%s", what);
	return squib_fail_msg(d, SQUIB_E_CAPTURE,
			      "%s returned %d, neither a SQUIB_E_* code nor -errno", what, rc);
}

int squib_fail(struct squib_error_detail *d, int code)
{
	if (d)
		reset(d, code);
	return code;
}

int squib_fail_errno(struct squib_error_detail *d, int code, int os_errno)
{
	if (d) {
		reset(d, code);
		d->os_errno = os_errno;
	}
	return code;
}

int squib_fail_msg(struct squib_error_detail *d, int code, const char *fmt, ...)
{
	if (d) {
		va_list ap;
		reset(d, code);
		va_start(ap, fmt);
		vsnprintf(d->msg, sizeof(d->msg), fmt, ap);
		va_end(ap);
	}
	return code;
}

int squib_fail_errno_msg(struct squib_error_detail *d, int code, int os_errno, const char *fmt,
			 ...)
{
	if (d) {
		va_list ap;
		reset(d, code);
		d->os_errno = os_errno;
		va_start(ap, fmt);
		vsnprintf(d->msg, sizeof(d->msg), fmt, ap);
		va_end(ap);
	}
	return code;
}

int squib_fail_magic(struct squib_error_detail *d, uint64_t found, uint64_t expected)
{
	if (d) {
		reset(d, SQUIB_E_MAGIC_MISMATCH);
		d->magic_found = found;
		d->magic_expected = expected;
	}
	return SQUIB_E_MAGIC_MISMATCH;
}

int squib_fail_version(struct squib_error_detail *d, struct squib_version found,
		       struct squib_version expected)
{
	if (d) {
		reset(d, SQUIB_E_VERSION_MISMATCH);
		d->version_found = found;
		d->version_expected = expected;
	}
	return SQUIB_E_VERSION_MISMATCH;
}

int squib_fail_limit(struct squib_error_detail *d, uint64_t limit)
{
	if (d) {
		reset(d, SQUIB_E_SIZE_LIMIT_EXCEEDED);
		d->limit = limit;
	}
	return SQUIB_E_SIZE_LIMIT_EXCEEDED;
}

/* Is byte c inside a UTF-8 sequence (not its first byte)? A cut never lands there. */
static bool utf8_continuation(unsigned char c)
{
	return (c & 0xc0) == 0x80;
}

/* A path that does not fit keeps its head and tail around "...". */
static void keep_path(char dst[SQUIB_DETAIL_PATH_MAX], const char *src)
{
	static const char dots[] = "...";
	size_t n = strlen(src), keep = (SQUIB_DETAIL_PATH_MAX - sizeof(dots)) / 2, head, tail;

	if (n < SQUIB_DETAIL_PATH_MAX) {
		memcpy(dst, src, n + 1);
		return;
	}
	for (head = keep; head && utf8_continuation((unsigned char)src[head]); head--)
		;
	for (tail = n - keep; tail < n && utf8_continuation((unsigned char)src[tail]); tail++)
		;
	memcpy(dst, src, head);
	memcpy(dst + head, dots, sizeof(dots) - 1);
	memcpy(dst + head + sizeof(dots) - 1, src + tail, n - tail + 1);
}

int squib_fail_cross_fs(struct squib_error_detail *d, const char *dest, const char *temp_dir)
{
	if (d) {
		reset(d, SQUIB_E_ATOMIC_COMMIT_CROSS_FS);
		keep_path(d->path_a, dest ? dest : "");
		keep_path(d->path_b, temp_dir ? temp_dir : "");
	}
	return SQUIB_E_ATOMIC_COMMIT_CROSS_FS;
}

const char *squib_library_version(void)
{
	return SQUIB_LIB_VERSION;
}
