/* SPDX-License-Identifier: Apache-2.0 */
/* Memory file footer and manifest: encoding and strict parsing (docs/FORMAT.md, "Memory file"). */
#include "memfile_internal.h"

#include <errno.h>
#include <inttypes.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/random.h>
#include <unistd.h>

#include <squib/crc64.h>

#include "util.h"

/* Footer field offsets (FORMAT.md §M.3). */
#define F_MAGIC 0
#define F_MAJOR 8
#define F_MINOR 10
#define F_PATCH 12
#define F_RESERVED0 14
#define F_FOOTER_SIZE 16
#define F_FLAGS 20
#define F_ID 24
#define F_PARENT 40
#define F_KIND 56
#define F_REGION_COUNT 60
#define F_PAGE_SIZE 64
#define F_RAM_SIZE 72
#define F_PRESENT 80
#define F_MANIFEST_OFFSET 88
#define F_MANIFEST_LENGTH 96
#define F_EXTENT_COUNT 104
#define F_MANIFEST_CRC 112
#define F_FILE_SIZE 120
#define F_RESERVED_START 128
#define F_CRC (SQUIB_MEMFILE_FOOTER_SIZE - 8)

/* ---- small helpers ------------------------------------------------------- */

void squib_memfile_id_hex(const uint8_t id[SQUIB_MEMORY_ID_SIZE],
			  char out[2 * SQUIB_MEMORY_ID_SIZE + 1])
{
	squib_mem_id_hex(id, out);
}

void squib_memfile_manifest_release(struct squib_memfile_manifest *m)
{
	if (!m)
		return;
	squib_memory_layout_release(&m->layout);
	free(m->digests);
	memset(m, 0, sizeof(*m));
}

int squib_memfile_io_error(struct squib_error_detail *d, int e, const char *fmt, ...)
{
	squib_fail_errno(d, SQUIB_E_MEMORY_IO, e);
	if (d) {
		va_list ap;

		va_start(ap, fmt);
		vsnprintf(d->msg, sizeof(d->msg), fmt, ap);
		va_end(ap);
	}
	return SQUIB_E_MEMORY_IO;
}

int squib_pread_all(int fd, void *buf, size_t len, uint64_t off)
{
	uint8_t *p = buf;

	while (len) {
		ssize_t n = pread(fd, p, len, (off_t)off);

		if (n < 0 && errno == EINTR)
			continue;
		if (n < 0)
			return -errno;
		if (n == 0)
			return -EIO; /* the file is shorter than its footer said */
		p += n;
		len -= (size_t)n;
		off += (uint64_t)n;
	}
	return 0;
}

int squib_memfile_new_id(uint8_t id[SQUIB_MEMORY_ID_SIZE], struct squib_error_detail *d)
{
	size_t got = 0;

	/* An all-zero id means "no parent"; 2^-128 odds, but never emit one. */
	while (got < SQUIB_MEMORY_ID_SIZE || squib_mem_id_is_zero(id)) {
		ssize_t n;

		if (got == SQUIB_MEMORY_ID_SIZE)
			got = 0;
		n = getrandom(id + got, SQUIB_MEMORY_ID_SIZE - got, 0);
		if (n < 0 && errno == EINTR)
			continue;
		if (n < 0)
			return squib_memfile_io_error(d, errno, "getrandom for the memory file id");
		got += (size_t)n;
	}
	return 0;
}

int squib_memfile_crc_range_run(int fd, uint64_t off, uint64_t len, uint64_t *crc,
				struct squib_progress_run *run, struct squib_error_detail *d)
{
	size_t chunk = len < (1u << 20) ? (size_t)len : (1u << 20);
	uint8_t *buf = chunk ? malloc(chunk) : NULL;
	uint64_t c = 0;
	int e = 0;

	if (chunk && !buf)
		return squib_fail(d, SQUIB_E_NOMEM);
	while (len && !e) {
		size_t n = len < chunk ? (size_t)len : chunk;

		if (!(e = squib_pread_all(fd, buf, n, off))) {
			c = squib_crc64(c, buf, n);
			off += n;
			len -= n;
			squib_progress_advance(run, n);
		}
	}
	free(buf);
	if (e)
		return squib_memfile_io_error(d, -e, "reading pages at offset %" PRIu64, off);
	*crc = c;
	return 0;
}

int squib_memfile_crc_range(int fd, uint64_t off, uint64_t len, uint64_t *crc,
			    struct squib_error_detail *d)
{
	return squib_memfile_crc_range_run(fd, off, len, crc, NULL, d);
}

/* ---- extent list --------------------------------------------------------- */

static int extent_list_grow(struct squib_extent_list *l)
{
	uint64_t cap = l->cap ? l->cap * 2 : 256;
	struct squib_page_extent *v;

	if (cap > SQUIB_MEMORY_MAX_EXTENTS)
		cap = SQUIB_MEMORY_MAX_EXTENTS;
	if (!(v = realloc(l->v, (size_t)cap * sizeof(*v))))
		return SQUIB_E_NOMEM;
	l->v = v;
	if (l->with_digests) {
		uint64_t *dg = realloc(l->digests, (size_t)cap * sizeof(*dg));

		if (!dg)
			return SQUIB_E_NOMEM;
		l->digests = dg;
	}
	l->cap = cap;
	return 0;
}

int squib_extent_list_add(struct squib_extent_list *l, uint64_t first, uint64_t count,
			  const void *data, size_t len)
{
	struct squib_page_extent *last = l->n ? &l->v[l->n - 1] : NULL;
	int rc;

	if (last && last->first_page + last->page_count == first) {
		last->page_count += count;
		if (l->with_digests)
			l->digests[l->n - 1] = squib_crc64(l->digests[l->n - 1], data, len);
		return 0;
	}
	if (l->n == SQUIB_MEMORY_MAX_EXTENTS)
		return SQUIB_E_SIZE_LIMIT_EXCEEDED;
	if (l->n == l->cap && (rc = extent_list_grow(l)))
		return rc;
	l->v[l->n] = (struct squib_page_extent){first, count};
	if (l->with_digests)
		l->digests[l->n] = squib_crc64(0, data, len);
	l->n++;
	return 0;
}

void squib_extent_list_free(struct squib_extent_list *l)
{
	free(l->v);
	free(l->digests);
	memset(l, 0, sizeof(*l));
}

/* ---- encoding ------------------------------------------------------------- */

static bool has_digests(uint32_t flags)
{
	return flags & SQUIB_MEMFILE_FLAG_DIGESTS;
}

static bool is_packed(uint32_t flags)
{
	return flags & SQUIB_MEMFILE_FLAG_PACKED;
}

#define KNOWN_FLAGS (SQUIB_MEMFILE_FLAG_DIGESTS | SQUIB_MEMFILE_FLAG_PACKED)

uint64_t squib_memfile_data_bytes(const struct squib_memfile_manifest *m)
{
	const struct squib_memory_layout *l = &m->layout;

	return is_packed(m->flags) ? l->present_pages * l->page_size : l->ram_size;
}

/* The oldest minor that reads a file with these flags: what a writer records. */
static uint16_t minor_for(uint32_t flags)
{
	return is_packed(flags) ? 1 : 0;
}

void squib_memfile_encode_footer(const struct squib_memfile_manifest *m, uint64_t magic,
				 uint8_t foot[SQUIB_MEMFILE_FOOTER_SIZE])
{
	const struct squib_memory_layout *l = &m->layout;

	memset(foot, 0, SQUIB_MEMFILE_FOOTER_SIZE);
	squib_put_le64(foot + F_MAGIC, magic);
	squib_put_le16(foot + F_MAJOR, SQUIB_MEMFILE_VERSION_MAJOR);
	squib_put_le16(foot + F_MINOR, minor_for(m->flags));
	squib_put_le16(foot + F_PATCH, SQUIB_MEMFILE_VERSION_PATCH);
	squib_put_le32(foot + F_FOOTER_SIZE, SQUIB_MEMFILE_FOOTER_SIZE);
	squib_put_le32(foot + F_FLAGS, m->flags);
	memcpy(foot + F_ID, l->id, SQUIB_MEMORY_ID_SIZE);
	memcpy(foot + F_PARENT, l->parent_id, SQUIB_MEMORY_ID_SIZE);
	squib_put_le32(foot + F_KIND, (uint32_t)l->kind);
	squib_put_le32(foot + F_REGION_COUNT, l->region_count);
	squib_put_le64(foot + F_PAGE_SIZE, l->page_size);
	squib_put_le64(foot + F_RAM_SIZE, l->ram_size);
	squib_put_le64(foot + F_PRESENT, l->present_pages);
	squib_put_le64(foot + F_MANIFEST_OFFSET, squib_memfile_data_bytes(m));
	squib_put_le64(
	    foot + F_MANIFEST_LENGTH,
	    squib_memfile_manifest_bytes(l->region_count, l->extent_count, has_digests(m->flags)));
	squib_put_le64(foot + F_EXTENT_COUNT, l->extent_count);
	squib_put_le64(foot + F_MANIFEST_CRC, m->manifest_crc);
	squib_put_le64(foot + F_FILE_SIZE, l->file_size);
	squib_put_le64(foot + F_CRC, squib_crc64(0, foot, F_CRC));
}

bool squib_memfile_footer_id(const uint8_t foot[SQUIB_MEMFILE_FOOTER_SIZE],
			     uint8_t id[SQUIB_MEMORY_ID_SIZE])
{
	uint64_t magic = squib_get_le64(foot + F_MAGIC);

	if (squib_crc64(0, foot, F_CRC) != squib_get_le64(foot + F_CRC) ||
	    (magic != SQUIB_MEMFILE_MAGIC && magic != SQUIB_MEMFILE_MAGIC_REBASING))
		return false;
	memcpy(id, foot + F_ID, SQUIB_MEMORY_ID_SIZE);
	return true;
}

static void put_manifest(const struct squib_memfile_manifest *m, uint8_t *p)
{
	const struct squib_memory_layout *l = &m->layout;

	for (uint32_t i = 0; i < l->region_count; i++, p += 16) {
		squib_put_le64(p, l->regions[i].guest_addr);
		squib_put_le64(p + 8, l->regions[i].size);
	}
	for (uint64_t i = 0; i < l->extent_count; i++, p += 16) {
		squib_put_le64(p, l->extents[i].first_page);
		squib_put_le64(p + 8, l->extents[i].page_count);
	}
	for (uint64_t i = 0; has_digests(m->flags) && i < l->extent_count; i++, p += 8)
		squib_put_le64(p, m->digests[i]);
}

/* Derive the totals from the arrays, so a writer cannot record wrong ones. */
static void complete_layout(struct squib_memfile_manifest *m)
{
	struct squib_memory_layout *l = &m->layout;
	uint64_t ram = 0, present = 0;

	for (uint32_t i = 0; i < l->region_count; i++)
		ram += l->regions[i].size;
	for (uint64_t i = 0; i < l->extent_count; i++)
		present += l->extents[i].page_count;
	l->ram_size = ram;
	l->present_pages = present;
	l->file_size = squib_memfile_size_for(
	    squib_memfile_data_bytes(m),
	    squib_memfile_manifest_bytes(l->region_count, l->extent_count, has_digests(m->flags)));
	m->version = (struct squib_version){SQUIB_MEMFILE_VERSION_MAJOR, minor_for(m->flags),
					    SQUIB_MEMFILE_VERSION_PATCH};
}

int squib_memfile_encode_tail(struct squib_memfile_manifest *m, uint64_t magic, uint8_t **buf,
			      size_t *len, struct squib_error_detail *d)
{
	struct squib_memory_layout *l = &m->layout;
	uint64_t mlen, area;
	uint8_t *b;
	int rc;

	if (has_digests(m->flags) && l->extent_count && !m->digests)
		return squib_fail_msg(d, SQUIB_E_INVALID_ARGUMENT, "digests flagged but missing");
	if ((m->flags & ~KNOWN_FLAGS) || (is_packed(m->flags) && l->kind != SQUIB_MEMORY_DIFF))
		return squib_fail_msg(d, SQUIB_E_INVALID_ARGUMENT,
				      "memory file flags 0x%x: only a diff may be packed",
				      m->flags);
	/* Bound the counts before the size arithmetic trusts them. */
	if (l->region_count > SQUIB_MEMORY_MAX_REGIONS ||
	    l->extent_count > SQUIB_MEMORY_MAX_EXTENTS)
		return squib_memory_layout_validate(l, SQUIB_E_INVALID_ARGUMENT, d);
	complete_layout(m);
	if ((rc = squib_memory_layout_validate(l, SQUIB_E_INVALID_ARGUMENT, d)))
		return rc;
	mlen =
	    squib_memfile_manifest_bytes(l->region_count, l->extent_count, has_digests(m->flags));
	area = l->file_size - squib_memfile_data_bytes(m) - SQUIB_MEMFILE_FOOTER_SIZE;
	if (!(b = calloc(1, (size_t)area + SQUIB_MEMFILE_FOOTER_SIZE)))
		return squib_fail(d, SQUIB_E_NOMEM);
	put_manifest(m, b);
	m->manifest_crc = squib_crc64(0, b, (size_t)mlen);
	squib_memfile_encode_footer(m, magic, b + area);
	*buf = b;
	*len = (size_t)area + SQUIB_MEMFILE_FOOTER_SIZE;
	return 0;
}

/* ---- footer parsing ------------------------------------------------------- */

static int bad_footer(struct squib_error_detail *d, const char *fmt, ...)
	__attribute__((format(printf, 2, 3)));

static int bad_footer(struct squib_error_detail *d, const char *fmt, ...)
{
	char msg[SQUIB_DETAIL_MSG_MAX - 32];
	va_list ap;

	va_start(ap, fmt);
	vsnprintf(msg, sizeof(msg), fmt, ap);
	va_end(ap);
	return squib_fail_msg(d, SQUIB_E_ENCODING, "memory file footer: %s", msg);
}

static void read_footer(const uint8_t *p, struct squib_memfile_footer *f)
{
	f->magic = squib_get_le64(p + F_MAGIC);
	f->version.major = squib_get_le16(p + F_MAJOR);
	f->version.minor = squib_get_le16(p + F_MINOR);
	f->version.patch = squib_get_le16(p + F_PATCH);
	f->flags = squib_get_le32(p + F_FLAGS);
	memcpy(f->id, p + F_ID, SQUIB_MEMORY_ID_SIZE);
	memcpy(f->parent_id, p + F_PARENT, SQUIB_MEMORY_ID_SIZE);
	f->kind = squib_get_le32(p + F_KIND);
	f->region_count = squib_get_le32(p + F_REGION_COUNT);
	f->page_size = squib_get_le64(p + F_PAGE_SIZE);
	f->ram_size = squib_get_le64(p + F_RAM_SIZE);
	f->present_pages = squib_get_le64(p + F_PRESENT);
	f->manifest_offset = squib_get_le64(p + F_MANIFEST_OFFSET);
	f->manifest_length = squib_get_le64(p + F_MANIFEST_LENGTH);
	f->extent_count = squib_get_le64(p + F_EXTENT_COUNT);
	f->manifest_crc = squib_get_le64(p + F_MANIFEST_CRC);
	f->file_size = squib_get_le64(p + F_FILE_SIZE);
}

/* The fixed fields that do not depend on each other. */
static int check_footer_fixed(const uint8_t *p, const struct squib_memfile_footer *f,
			      uint64_t file_size, struct squib_error_detail *d)
{
	uint16_t reserved = squib_get_le16(p + F_RESERVED0);
	uint32_t size = squib_get_le32(p + F_FOOTER_SIZE);

	if (reserved)
		return bad_footer(d, "reserved field at offset %d is 0x%04x (must be 0)",
				  F_RESERVED0, reserved);
	if (size != SQUIB_MEMFILE_FOOTER_SIZE)
		return bad_footer(d, "footer_size %u (must be %u)", size,
				  SQUIB_MEMFILE_FOOTER_SIZE);
	if (f->flags & ~KNOWN_FLAGS)
		return bad_footer(d, "undefined flag bits 0x%08x", f->flags & ~KNOWN_FLAGS);
	if (is_packed(f->flags) && f->version.minor < 1)
		return bad_footer(d, "flag PACKED in a version 1.%u file (it needs 1.1)",
				  f->version.minor);
	for (unsigned i = F_RESERVED_START; i < F_CRC; i++)
		if (p[i])
			return bad_footer(d, "reserved byte at offset %u is 0x%02x (must be 0)", i,
					  p[i]);
	if (f->file_size != file_size)
		return bad_footer(
		    d, "records a file size of %" PRIu64 " bytes but the file has %" PRIu64,
		    f->file_size, file_size);
	if (f->kind != SQUIB_MEMORY_FULL && f->kind != SQUIB_MEMORY_DIFF)
		return bad_footer(d, "kind %u is neither full (1) nor diff (2)", f->kind);
	if (is_packed(f->flags) && f->kind != SQUIB_MEMORY_DIFF)
		return bad_footer(d, "a full file is packed (only a diff may be)");
	return 0;
}

static int check_footer_counts(const struct squib_memfile_footer *f, struct squib_error_detail *d)
{
	uint64_t pages;

	if (!squib_is_pow2(f->page_size) || f->page_size < SQUIB_MEMORY_MIN_PAGE_SIZE ||
	    f->page_size > SQUIB_MEMORY_MAX_PAGE_SIZE)
		return bad_footer(d, "page_size %" PRIu64 " is not a power of two in [%llu, %llu]",
				  f->page_size, SQUIB_MEMORY_MIN_PAGE_SIZE,
				  SQUIB_MEMORY_MAX_PAGE_SIZE);
	if (!f->region_count || f->region_count > SQUIB_MEMORY_MAX_REGIONS)
		return bad_footer(d, "region_count %u (must be 1..%u)", f->region_count,
				  SQUIB_MEMORY_MAX_REGIONS);
	if (f->ram_size % f->page_size || !f->ram_size || f->ram_size > SQUIB_MEMORY_MAX_RAM_SIZE)
		return bad_footer(d,
				  "ram_size 0x%" PRIx64 " is not a non-zero multiple of the "
				  "page size at most 0x%llx",
				  f->ram_size, SQUIB_MEMORY_MAX_RAM_SIZE);
	pages = f->ram_size / f->page_size;
	if (f->present_pages > pages)
		return bad_footer(d,
				  "present_pages %" PRIu64 " exceeds the %" PRIu64 " pages of RAM",
				  f->present_pages, pages);
	/* Coalesced extents are separated by gaps: at most ceil(pages / 2) of them. */
	if (f->extent_count > SQUIB_MEMORY_MAX_EXTENTS || f->extent_count > f->present_pages ||
	    f->extent_count > pages / 2 + 1)
		return bad_footer(d,
				  "extent_count %" PRIu64 " is impossible for %" PRIu64
				  " present pages of %" PRIu64,
				  f->extent_count, f->present_pages, pages);
	return 0;
}

static int check_footer_geometry(const struct squib_memfile_footer *f, struct squib_error_detail *d)
{
	uint64_t mlen =
	    squib_memfile_manifest_bytes(f->region_count, f->extent_count, has_digests(f->flags));
	/* Packed: the present pages, back to back (present_pages <= pages: no wrap). */
	uint64_t data = is_packed(f->flags) ? f->present_pages * f->page_size : f->ram_size;
	uint64_t size = squib_memfile_size_for(data, mlen);

	if (f->manifest_offset != data)
		return bad_footer(
		    d, "manifest_offset %" PRIu64 " is not %s %" PRIu64, f->manifest_offset,
		    is_packed(f->flags) ? "present_pages * page_size" : "ram_size", data);
	if (f->manifest_length != mlen)
		return bad_footer(d,
				  "manifest_length %" PRIu64 " but %u regions and %" PRIu64
				  " extents take %" PRIu64,
				  f->manifest_length, f->region_count, f->extent_count, mlen);
	if (f->file_size != size)
		return bad_footer(d, "file size %" PRIu64 " but this manifest makes it %" PRIu64,
				  f->file_size, size);
	return 0;
}

static int check_magic_version(const struct squib_memfile_footer *f, struct squib_error_detail *d)
{
	struct squib_version ours = {SQUIB_MEMFILE_VERSION_MAJOR, SQUIB_MEMFILE_VERSION_MINOR,
				     SQUIB_MEMFILE_VERSION_PATCH};

	if (f->magic == SQUIB_MEMFILE_MAGIC_REBASING)
		return squib_fail_msg(d, SQUIB_E_ENCODING,
				      "memory file footer: an in-place rebase was interrupted; "
				      "the pages are incomplete (a load or an in-place rebase of "
				      "the file rolls it back from its .undo log)");
	if (f->magic != SQUIB_MEMFILE_MAGIC) {
		squib_fail_magic(d, f->magic, SQUIB_MEMFILE_MAGIC);
		if (d)
			snprintf(d->msg, sizeof(d->msg), "memory file footer magic");
		return SQUIB_E_MAGIC_MISMATCH;
	}
	if (f->version.major != ours.major || f->version.minor > ours.minor)
		return squib_fail_version(d, f->version, ours);
	return 0;
}

int squib_memfile_too_short(uint64_t size, struct squib_error_detail *d)
{
	squib_fail(d, SQUIB_E_TOO_SHORT);
	if (d)
		snprintf(d->msg, sizeof(d->msg),
			 "memory file of %" PRIu64 " bytes is shorter than its 4096-byte footer",
			 size);
	return SQUIB_E_TOO_SHORT;
}

int squib_memfile_footer_parse(const uint8_t foot[SQUIB_MEMFILE_FOOTER_SIZE], uint64_t file_size,
			       struct squib_memfile_footer *f, struct squib_error_detail *d)
{
	uint64_t stored, crc;
	int rc;

	if (file_size < SQUIB_MEMFILE_FOOTER_SIZE)
		return squib_memfile_too_short(file_size, d);
	/* CRC first: nothing else in a damaged footer means anything. */
	stored = squib_get_le64(foot + F_CRC);
	crc = squib_crc64(0, foot, F_CRC);
	if (crc != stored)
		return squib_fail_msg(d, SQUIB_E_CRC_MISMATCH,
				      "memory file footer CRC 0x%016" PRIx64
				      " but stored 0x%016" PRIx64,
				      crc, stored);
	read_footer(foot, f);
	if ((rc = check_magic_version(f, d)) || (rc = check_footer_fixed(foot, f, file_size, d)) ||
	    (rc = check_footer_counts(f, d)))
		return rc;
	return check_footer_geometry(f, d);
}

uint64_t squib_memfile_area_bytes(const struct squib_memfile_footer *f)
{
	return f->file_size - f->manifest_offset - SQUIB_MEMFILE_FOOTER_SIZE;
}

/* ---- manifest parsing ------------------------------------------------------ */

static int alloc_manifest(const struct squib_memfile_footer *f, struct squib_memfile_manifest *m,
			  struct squib_error_detail *d)
{
	struct squib_memory_layout *l = &m->layout;

	l->regions = calloc(f->region_count, sizeof(*l->regions));
	if (f->extent_count)
		l->extents = calloc((size_t)f->extent_count, sizeof(*l->extents));
	if (f->extent_count && has_digests(f->flags))
		m->digests = calloc((size_t)f->extent_count, sizeof(*m->digests));
	if (!l->regions || (f->extent_count && !l->extents) ||
	    (f->extent_count && has_digests(f->flags) && !m->digests))
		return squib_fail(d, SQUIB_E_NOMEM);
	return 0;
}

static void read_manifest(const uint8_t *p, const struct squib_memfile_footer *f,
			  struct squib_memfile_manifest *m)
{
	struct squib_memory_layout *l = &m->layout;

	for (uint32_t i = 0; i < f->region_count; i++, p += 16)
		l->regions[i] = (struct squib_mem_region){squib_get_le64(p), squib_get_le64(p + 8)};
	for (uint64_t i = 0; i < f->extent_count; i++, p += 16)
		l->extents[i] =
		    (struct squib_page_extent){squib_get_le64(p), squib_get_le64(p + 8)};
	for (uint64_t i = 0; has_digests(f->flags) && i < f->extent_count; i++, p += 8)
		m->digests[i] = squib_get_le64(p);
}

static void fill_from_footer(const struct squib_memfile_footer *f, struct squib_memfile_manifest *m)
{
	struct squib_memory_layout *l = &m->layout;

	l->kind = (enum squib_memory_kind)f->kind;
	memcpy(l->id, f->id, SQUIB_MEMORY_ID_SIZE);
	memcpy(l->parent_id, f->parent_id, SQUIB_MEMORY_ID_SIZE);
	l->page_size = f->page_size;
	l->ram_size = f->ram_size;
	l->file_size = f->file_size;
	l->present_pages = f->present_pages;
	l->region_count = f->region_count;
	l->extent_count = f->extent_count;
	m->flags = f->flags;
	m->manifest_crc = f->manifest_crc;
	m->version = f->version;
}

static int check_area(const uint8_t *area, size_t len, const struct squib_memfile_footer *f,
		      struct squib_error_detail *d)
{
	uint64_t crc;

	if (len != squib_memfile_area_bytes(f) || len < f->manifest_length)
		return squib_fail_msg(
		    d, SQUIB_E_ENCODING,
		    "memory file manifest area of %zu bytes (footer implies %" PRIu64 ")", len,
		    squib_memfile_area_bytes(f));
	crc = squib_crc64(0, area, (size_t)f->manifest_length);
	if (crc != f->manifest_crc)
		return squib_fail_msg(d, SQUIB_E_CRC_MISMATCH,
				      "memory file manifest CRC 0x%016" PRIx64
				      " but the footer records 0x%016" PRIx64,
				      crc, f->manifest_crc);
	for (size_t i = (size_t)f->manifest_length; i < len; i++)
		if (area[i])
			return squib_fail_msg(d, SQUIB_E_ENCODING,
					      "memory file manifest padding byte at offset %" PRIu64
					      " is 0x%02x (must be 0)",
					      f->manifest_offset + i, area[i]);
	return 0;
}

int squib_memfile_manifest_parse(const uint8_t *area, size_t len,
				 const struct squib_memfile_footer *f,
				 struct squib_memfile_manifest *out, struct squib_error_detail *d)
{
	char msg[SQUIB_DETAIL_MSG_MAX - 32];
	int rc;

	memset(out, 0, sizeof(*out));
	if ((rc = check_area(area, len, f, d)) || (rc = alloc_manifest(f, out, d)))
		goto fail;
	read_manifest(area, f, out);
	fill_from_footer(f, out);
	if ((rc = squib_memory_layout_validate(&out->layout, SQUIB_E_ENCODING, d))) {
		if (d) { /* say which file part the rule failed in */
			squib_strlcpy(msg, d->msg, sizeof(msg));
			squib_fail_msg(d, rc, "memory file manifest: %s", msg);
		}
		goto fail;
	}
	return 0;
fail:
	squib_memfile_manifest_release(out);
	return rc;
}

int squib_memfile_parse(const uint8_t *file, size_t len, struct squib_memfile_manifest *out,
			struct squib_error_detail *d)
{
	struct squib_memfile_footer f;
	int rc;

	if (!out || (!file && len))
		return squib_fail_msg(d, SQUIB_E_INVALID_ARGUMENT,
				      "NULL argument to memfile_parse");
	memset(out, 0, sizeof(*out));
	if (len < SQUIB_MEMFILE_FOOTER_SIZE)
		return squib_memfile_too_short(len, d);
	if ((rc = squib_memfile_footer_parse(file + len - SQUIB_MEMFILE_FOOTER_SIZE, len, &f, d)))
		return rc;
	return squib_memfile_manifest_parse(file + f.manifest_offset,
					    (size_t)squib_memfile_area_bytes(&f), &f, out, d);
}
