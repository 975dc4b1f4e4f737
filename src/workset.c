/* SPDX-License-Identifier: Apache-2.0 */
/* The working-set file (squib/workset.h; docs/FORMAT.md "Working-set file"). */
#include <squib/workset.h>

#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include <squib/atomic.h>
#include <squib/crc64.h>
#include <squib/input.h>
#include <squib/memfile.h>

#include "input_internal.h"
#include "memlayout.h"
#include "util.h"

/* Field offsets (docs/FORMAT.md). */
#define W_MAGIC	    0
#define W_MAJOR	    8
#define W_MINOR	    10
#define W_FLAGS	    12
#define W_PAGE_SIZE 16
#define W_PAGES	    24
#define W_ID	    32
#define W_RUNS	    48
#define W_FIRST_RUN SQUIB_WS_HEADER_SIZE
#define W_MIN_SIZE  (SQUIB_WS_HEADER_SIZE + SQUIB_WS_TRAILER_SIZE)

static uint64_t ws_magic(void)
{
	return squib_get_le64((const uint8_t *)SQUIB_WS_MAGIC_BYTES);
}

static struct squib_version ws_version(void)
{
	return (struct squib_version){SQUIB_WS_VERSION_MAJOR, SQUIB_WS_VERSION_MINOR, 0};
}

/* ---- structure (shared by encode and decode) -------------------------------------- */

static int check_geometry(uint64_t page_size, uint64_t pages, int code,
			  struct squib_error_detail *d)
{
	if (!squib_is_pow2(page_size) || page_size < SQUIB_MEMORY_MIN_PAGE_SIZE ||
	    page_size > SQUIB_MEMORY_MAX_PAGE_SIZE)
		return squib_fail_msg(
		    d, code,
		    "working set: page_size %" PRIu64 " is not a power of two in [%llu, %llu]",
		    page_size, SQUIB_MEMORY_MIN_PAGE_SIZE, SQUIB_MEMORY_MAX_PAGE_SIZE);
	if (!pages || pages > SQUIB_MEMORY_MAX_RAM_SIZE / page_size)
		return squib_fail_msg(d, code,
				      "working set: page_count %" PRIu64
				      " is not 1..%llu pages of %" PRIu64 " bytes",
				      pages, SQUIB_MEMORY_MAX_RAM_SIZE / page_size, page_size);
	return 0;
}

static int check_run(uint64_t i, uint64_t first, uint64_t count, uint64_t pages, int code,
		     struct squib_error_detail *d)
{
	if (!count || first >= pages || count > pages - first)
		return squib_fail_msg(d, code,
				      "working set: run %" PRIu64 " (%" PRIu64 "+%" PRIu64
				      ") is empty or lies outside the %" PRIu64 " pages",
				      i, first, count, pages);
	return 0;
}

/* ---- encode ------------------------------------------------------------------------ */

static int check_set(const struct squib_workset *ws, struct squib_error_detail *d)
{
	int rc;

	if ((rc = check_geometry(ws->page_size, ws->page_count, SQUIB_E_INVALID_ARGUMENT, d)))
		return rc;
	if (ws->run_count > SQUIB_WS_MAX_RUNS)
		return squib_fail_limit(d, SQUIB_WS_SIZE_LIMIT);
	if (ws->run_count && !ws->runs)
		return squib_fail_msg(d, SQUIB_E_INVALID_ARGUMENT, "working set: NULL runs");
	for (uint64_t i = 0; i < ws->run_count; i++)
		if ((rc = check_run(i, ws->runs[i].first_page, ws->runs[i].page_count,
				    ws->page_count, SQUIB_E_INVALID_ARGUMENT, d)))
			return rc;
	return 0;
}

int squib_workset_encode(const struct squib_workset *ws, uint8_t **out, size_t *len,
			 struct squib_error_detail *d)
{
	size_t n;
	uint8_t *b;
	int rc;

	if (!ws || !out || !len)
		return squib_fail_msg(d, SQUIB_E_INVALID_ARGUMENT, "working set: NULL argument");
	*out = NULL;
	*len = 0;
	if ((rc = check_set(ws, d)))
		return rc;
	n = W_MIN_SIZE + (size_t)ws->run_count * SQUIB_WS_RUN_SIZE;
	if (!(b = calloc(1, n)))
		return squib_fail(d, SQUIB_E_NOMEM);
	memcpy(b + W_MAGIC, SQUIB_WS_MAGIC_BYTES, 8);
	squib_put_le16(b + W_MAJOR, SQUIB_WS_VERSION_MAJOR);
	squib_put_le16(b + W_MINOR, SQUIB_WS_VERSION_MINOR);
	squib_put_le64(b + W_PAGE_SIZE, ws->page_size);
	squib_put_le64(b + W_PAGES, ws->page_count);
	memcpy(b + W_ID, ws->memory_id, SQUIB_MEMORY_ID_SIZE);
	squib_put_le64(b + W_RUNS, ws->run_count);
	for (uint64_t i = 0; i < ws->run_count; i++) {
		uint8_t *r = b + W_FIRST_RUN + i * SQUIB_WS_RUN_SIZE;

		squib_put_le64(r, ws->runs[i].first_page);
		squib_put_le64(r + 8, ws->runs[i].page_count);
	}
	squib_put_le64(b + n - SQUIB_WS_TRAILER_SIZE, squib_crc64(0, b, n - SQUIB_WS_TRAILER_SIZE));
	*out = b;
	*len = n;
	return 0;
}

/* ---- decode ------------------------------------------------------------------------ */

/* Size limit, length, CRC, magic, version: what holds before any field is believed. */
static int check_envelope(const uint8_t *buf, size_t len, struct squib_error_detail *d)
{
	struct squib_version v;
	uint64_t magic;

	if (len > SQUIB_WS_SIZE_LIMIT)
		return squib_fail_limit(d, SQUIB_WS_SIZE_LIMIT);
	if (len < W_MIN_SIZE)
		return squib_fail(d, SQUIB_E_TOO_SHORT);
	/* The trailer is the CRC of what precedes it, so the CRC of the whole is 0. */
	if (squib_crc64(0, buf, len) != 0)
		return squib_fail(d, SQUIB_E_CRC_MISMATCH);
	if ((magic = squib_get_le64(buf + W_MAGIC)) != ws_magic())
		return squib_fail_magic(d, magic, ws_magic());
	v = (struct squib_version){squib_get_le16(buf + W_MAJOR), squib_get_le16(buf + W_MINOR), 0};
	if (v.major != SQUIB_WS_VERSION_MAJOR || v.minor > SQUIB_WS_VERSION_MINOR)
		return squib_fail_version(d, v, ws_version());
	return 0;
}

/* Flags, geometry and run_count against the length. */
static int check_header(const uint8_t *buf, size_t len, struct squib_error_detail *d)
{
	uint32_t flags = squib_get_le32(buf + W_FLAGS);
	uint64_t runs = squib_get_le64(buf + W_RUNS), body = len - W_MIN_SIZE;
	int rc;

	if (flags)
		return squib_fail_msg(d, SQUIB_E_ENCODING, "working set: flags 0x%08x (must be 0)",
				      flags);
	if ((rc = check_geometry(squib_get_le64(buf + W_PAGE_SIZE), squib_get_le64(buf + W_PAGES),
				 SQUIB_E_ENCODING, d)))
		return rc;
	if (body % SQUIB_WS_RUN_SIZE || runs != body / SQUIB_WS_RUN_SIZE)
		return squib_fail_msg(d, SQUIB_E_ENCODING,
				      "working set: run_count %" PRIu64
				      " but %zu bytes of runs (16 each)",
				      runs, (size_t)body);
	return 0;
}

static int decode_runs(const uint8_t *buf, struct squib_workset *out, struct squib_error_detail *d)
{
	int rc;

	if (out->run_count && !(out->runs = malloc(out->run_count * sizeof(*out->runs))))
		return squib_fail(d, SQUIB_E_NOMEM);
	for (uint64_t i = 0; i < out->run_count; i++) {
		const uint8_t *r = buf + W_FIRST_RUN + i * SQUIB_WS_RUN_SIZE;

		out->runs[i].first_page = squib_get_le64(r);
		out->runs[i].page_count = squib_get_le64(r + 8);
		if ((rc = check_run(i, out->runs[i].first_page, out->runs[i].page_count,
				    out->page_count, SQUIB_E_ENCODING, d)))
			return rc;
	}
	return 0;
}

int squib_workset_decode(const uint8_t *buf, size_t len, struct squib_workset *out,
			 struct squib_error_detail *d)
{
	int rc;

	if (!out || (!buf && len))
		return squib_fail_msg(d, SQUIB_E_INVALID_ARGUMENT, "working set: NULL argument");
	memset(out, 0, sizeof(*out));
	if ((rc = check_envelope(buf, len, d)) || (rc = check_header(buf, len, d)))
		return rc;
	out->page_size = squib_get_le64(buf + W_PAGE_SIZE);
	out->page_count = squib_get_le64(buf + W_PAGES);
	memcpy(out->memory_id, buf + W_ID, SQUIB_MEMORY_ID_SIZE);
	out->run_count = squib_get_le64(buf + W_RUNS);
	if ((rc = decode_runs(buf, out, d)))
		squib_workset_free(out);
	return rc;
}

/* ---- files ------------------------------------------------------------------------- */

int squib_workset_write(const char *path, const struct squib_workset *ws,
			struct squib_error_detail *d)
{
	uint8_t *buf;
	size_t len;
	int rc;

	if (!path)
		return squib_fail_msg(d, SQUIB_E_INVALID_ARGUMENT, "working set: NULL path");
	if ((rc = squib_workset_encode(ws, &buf, &len, d)))
		return rc;
	rc = squib_atomic_write_file(path, buf, len, NULL, d);
	free(buf);
	return rc;
}

/* Read all of fd, but never more than the size limit + 1 bytes (so an oversized
 * or endless file costs that much at most, and decode names the limit). */
static int read_limited(int fd, uint8_t **out, size_t *len, struct squib_error_detail *d)
{
	const size_t max = (size_t)SQUIB_WS_SIZE_LIMIT + 1;
	size_t cap = 4096, off = 0;
	uint8_t *buf = malloc(cap), *nb;

	if (!buf)
		return squib_fail(d, SQUIB_E_NOMEM);
	while (off < max) {
		ssize_t n;

		if (off == cap) {
			cap = cap > max / 2 ? max : cap * 2;
			if (!(nb = realloc(buf, cap))) {
				free(buf);
				return squib_fail(d, SQUIB_E_NOMEM);
			}
			buf = nb;
		}
		if ((n = read(fd, buf + off, cap - off)) < 0 && errno == EINTR)
			continue;
		if (n < 0) {
			int e = errno;

			free(buf);
			return squib_fail_errno(d, SQUIB_E_IO, e);
		}
		if (!n)
			break;
		off += (size_t)n;
	}
	*out = buf;
	*len = off;
	return 0;
}

int squib_workset_read(const char *path, struct squib_workset *out, struct squib_error_detail *d)
{
	uint8_t *buf = NULL;
	size_t len = 0;
	struct stat st;
	int fd, rc;

	if (!path || !out)
		return squib_fail_msg(d, SQUIB_E_INVALID_ARGUMENT, "working set: NULL argument");
	memset(out, 0, sizeof(*out));
	if ((fd = squib_input_open(path, O_RDONLY, SQUIB_E_IO, &st, d)) < 0)
		return fd;
	rc = squib_input_expect(fd, (uint64_t)st.st_size, path, SQUIB_INPUT_WORKSET, d);
	if (!rc && (rc = read_limited(fd, &buf, &len, d)) == SQUIB_E_IO && d)
		snprintf(d->msg, sizeof(d->msg), "reading %s", path);
	close(fd);
	if (rc)
		return rc;
	rc = squib_workset_decode(buf, len, out, d);
	free(buf);
	return rc;
}

static bool id_is_zero(const uint8_t id[SQUIB_MEMORY_ID_SIZE])
{
	for (int i = 0; i < SQUIB_MEMORY_ID_SIZE; i++)
		if (id[i])
			return false;
	return true;
}

int squib_workset_check_fits(const struct squib_workset *ws, uint64_t page_size,
			     uint64_t page_count, const uint8_t memory_id[SQUIB_MEMORY_ID_SIZE],
			     struct squib_error_detail *d)
{
	char want[2 * SQUIB_MEMORY_ID_SIZE + 1], got[2 * SQUIB_MEMORY_ID_SIZE + 1];

	if (!ws || !memory_id)
		return squib_fail_msg(d, SQUIB_E_INVALID_ARGUMENT, "working set: NULL argument");
	if (ws->page_size != page_size)
		return squib_fail_msg(d, SQUIB_E_PAIR_MISMATCH,
				      "working set has %" PRIu64 "-byte pages, the memory %" PRIu64,
				      ws->page_size, page_size);
	if (ws->page_count != page_count)
		return squib_fail_msg(d, SQUIB_E_PAIR_MISMATCH,
				      "working set is for %" PRIu64
				      " pages, the memory has %" PRIu64,
				      ws->page_count, page_count);
	if (id_is_zero(ws->memory_id) || !memcmp(ws->memory_id, memory_id, SQUIB_MEMORY_ID_SIZE))
		return 0;
	squib_memfile_id_hex(ws->memory_id, got);
	squib_memfile_id_hex(memory_id, want);
	return squib_fail_msg(d, SQUIB_E_PAIR_MISMATCH,
			      "working set was recorded on memory file %s, not %s", got, want);
}

uint64_t squib_workset_pages(const struct squib_workset *ws)
{
	uint64_t n = 0;

	for (uint64_t i = 0; ws && ws->runs && i < ws->run_count; i++)
		n += ws->runs[i].page_count;
	return n;
}

void squib_workset_free(struct squib_workset *ws)
{
	if (!ws)
		return;
	free(ws->runs);
	memset(ws, 0, sizeof(*ws));
}
