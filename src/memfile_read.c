/* SPDX-License-Identifier: Apache-2.0 */
/* Memory file reader, digest and pair checks (chains: chain.c). */
#include "memfile_internal.h"

#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include <squib/input.h>

#include "input_internal.h"
#include "util.h"

/* ---- opening ------------------------------------------------------------- */

static int read_tail(int fd, const char *path, uint64_t size, struct squib_memfile_manifest *m,
		     struct squib_error_detail *d)
{
	uint8_t foot[SQUIB_MEMFILE_FOOTER_SIZE];
	struct squib_memfile_footer f;
	uint8_t *area;
	uint64_t n;
	int rc, e;

	if (size < SQUIB_MEMFILE_FOOTER_SIZE)
		return squib_memfile_too_short(size, d);
	if ((e = squib_pread_all(fd, foot, sizeof(foot), size - sizeof(foot))))
		return squib_memfile_io_error(d, -e, "reading the footer of %s", path);
	if ((rc = squib_memfile_footer_parse(foot, size, &f, d)))
		return rc;
	/* The footer's counts are bounded, so this is too (< 400 MiB). */
	n = squib_memfile_area_bytes(&f);
	if (!(area = malloc((size_t)n)))
		return squib_fail(d, SQUIB_E_NOMEM);
	e = squib_pread_all(fd, area, (size_t)n, f.manifest_offset);
	rc = e ? squib_memfile_io_error(d, -e, "reading the manifest of %s", path)
	       : squib_memfile_manifest_parse(area, (size_t)n, &f, m, d);
	free(area);
	return rc;
}

/*
 * Holes the present extents may hold beyond their data. squib writes every
 * present page, so its own files have none; a filesystem that stores zero
 * blocks as holes (ZFS with compression) may make some.
 */
#define HOLE_SLACK (64ull << 20)

/* Bytes of [off, off + len) that are holes, counting stops past `limit`. One
 * SEEK_HOLE/SEEK_DATA pair per hole: the walk costs what the file holds. */
static int count_holes(int fd, uint64_t off, uint64_t len, uint64_t limit, uint64_t *holes)
{
	uint64_t end = off + len;

	while (off < end && *holes <= limit) {
		off_t h = lseek(fd, (off_t)off, SEEK_HOLE), n;

		if (h < 0)
			return errno == ENXIO ? 0 : -errno;
		if ((uint64_t)h >= end)
			return 0;
		n = lseek(fd, h, SEEK_DATA);
		if (n < 0 && errno != ENXIO)
			return -errno;
		off = n < 0 || (uint64_t)n > end ? end : (uint64_t)n;
		*holes += off - (uint64_t)h;
	}
	return 0;
}

/*
 * The work a memory file can ask for (verify's digests, a copy load, a
 * rebase) is its present bytes. Those must be backed by the file's real
 * blocks, or an 8 KiB sparse file claiming 1 TiB present would buy hours of
 * reading zeros or a disk filled by a rebase. Refused: present extents that
 * are more holes than data, beyond HOLE_SLACK.
 */
static int check_backed(const struct squib_memfile *mf, const struct stat *st,
			struct squib_error_detail *d)
{
	const struct squib_memory_layout *l = &mf->m.layout;
	uint64_t present = l->present_pages * l->page_size, holes = 0, limit;
	int e = 0;

	if ((uint64_t)st->st_blocks * 512 >= present)
		return 0; /* enough blocks for every present byte: no walk needed */
	limit = present / 2 + HOLE_SLACK / 2;
	for (uint64_t i = 0; !e && i < l->extent_count && holes <= limit; i++)
		e = count_holes(mf->fd, squib_memfile_extent_offset(mf, i),
				l->extents[i].page_count * l->page_size, limit, &holes);
	if (e)
		return squib_memfile_io_error(d, -e, "looking for holes in %s", mf->path);
	if (holes <= limit)
		return 0;
	return squib_memfile_io_error(
	    d, EINVAL,
	    "%s: the manifest lists %" PRIu64 " bytes of present pages, but "
	    "more than %" PRIu64 " of them are holes in the file (%" PRIu64
	    " bytes allocated): a sparse file cannot stand for its pages",
	    mf->path, present, limit, (uint64_t)st->st_blocks * 512);
}

/*
 * A packed file's index: the file offset of each extent's first page, the
 * running sum of the page counts before it. The manifest was validated
 * (sorted, disjoint, counts adding up to present_pages), so every offset
 * lies inside the data bytes; the array is bounded like the manifest.
 */
static int index_packed(struct squib_memfile *mf, struct squib_error_detail *d)
{
	const struct squib_memory_layout *l = &mf->m.layout;
	uint64_t at = 0;

	if (!(mf->m.flags & SQUIB_MEMFILE_FLAG_PACKED) || !l->extent_count)
		return 0;
	if (!(mf->packed_at = malloc((size_t)l->extent_count * sizeof(*mf->packed_at))))
		return squib_fail(d, SQUIB_E_NOMEM);
	for (uint64_t i = 0; i < l->extent_count; i++) {
		mf->packed_at[i] = at;
		at += l->extents[i].page_count * l->page_size;
	}
	return 0;
}

static int load(struct squib_memfile *mf, const struct stat *st, struct squib_error_detail *d)
{
	const struct squib_memory_layout *l;
	int rc;

	if ((rc = squib_input_expect(mf->fd, (uint64_t)st->st_size, mf->path, SQUIB_INPUT_MEMORY,
				     d)) ||
	    (rc = read_tail(mf->fd, mf->path, (uint64_t)st->st_size, &mf->m, d)) ||
	    (rc = index_packed(mf, d)) || (rc = check_backed(mf, st, d)))
		return rc;
	l = &mf->m.layout;
	if (!(mf->region_off = calloc(l->region_count, sizeof(*mf->region_off))))
		return squib_fail(d, SQUIB_E_NOMEM);
	for (uint32_t i = 1; i < l->region_count; i++)
		mf->region_off[i] = mf->region_off[i - 1] + l->regions[i - 1].size;
	return 0;
}

int squib_memfile_open_flags(const char *path, int flags, struct squib_memfile **out,
			     struct squib_error_detail *d)
{
	struct squib_memfile *mf;
	struct stat st;
	int rc;

	if (!path || !out)
		return squib_fail_msg(d, SQUIB_E_INVALID_ARGUMENT, "NULL argument to memfile_open");
	*out = NULL;
	if (!(mf = calloc(1, sizeof(*mf))) || !(mf->path = strdup(path))) {
		free(mf);
		return squib_fail(d, SQUIB_E_NOMEM);
	}
	mf->fd = squib_input_open(path, flags, SQUIB_E_MEMORY_IO, &st, d);
	rc = mf->fd < 0 ? mf->fd : load(mf, &st, d);
	if (rc) {
		squib_memfile_close(mf);
		return rc;
	}
	*out = mf;
	return 0;
}

int squib_memfile_open(const char *path, struct squib_memfile **out, struct squib_error_detail *d)
{
	return squib_memfile_open_flags(path, O_RDONLY, out, d);
}

void squib_memfile_close(struct squib_memfile *m)
{
	if (!m)
		return;
	if (m->fd >= 0)
		close(m->fd);
	squib_memfile_manifest_release(&m->m);
	free(m->region_off);
	free(m->packed_at);
	free(m->path);
	free(m);
}

const struct squib_memfile_manifest *squib_memfile_manifest(const struct squib_memfile *m)
{
	return m ? &m->m : NULL;
}

/* ---- lookups --------------------------------------------------------------- */

int64_t squib_memfile_find_extent(const struct squib_memory_layout *l, uint64_t page)
{
	uint64_t lo = 0, hi = l->extent_count;

	/* Last extent starting at or before page. */
	while (lo < hi) {
		uint64_t mid = lo + (hi - lo) / 2;

		if (l->extents[mid].first_page <= page)
			lo = mid + 1;
		else
			hi = mid;
	}
	if (!lo)
		return -1;
	lo--;
	return page - l->extents[lo].first_page < l->extents[lo].page_count ? (int64_t)lo : -1;
}

bool squib_memfile_page_present(const struct squib_memfile *m, uint64_t page)
{
	return m && squib_memfile_find_extent(&m->m.layout, page) >= 0;
}

int squib_memfile_guest_page(const struct squib_memory_layout *l, const uint64_t *region_off,
			     uint64_t addr, uint64_t *page, struct squib_error_detail *d)
{
	uint32_t lo = 0, hi = l->region_count;

	if (addr % l->page_size)
		return squib_fail_msg(d, SQUIB_E_INVALID_ARGUMENT,
				      "guest address 0x%" PRIx64
				      " is not aligned to the page size 0x%" PRIx64,
				      addr, l->page_size);
	while (lo < hi) { /* last region starting at or before addr */
		uint32_t mid = lo + (hi - lo) / 2;

		if (l->regions[mid].guest_addr <= addr)
			lo = mid + 1;
		else
			hi = mid;
	}
	if (!lo || addr - l->regions[lo - 1].guest_addr >= l->regions[lo - 1].size)
		return squib_fail_msg(d, SQUIB_E_INVALID_ARGUMENT,
				      "guest address 0x%" PRIx64 " is outside every memory region",
				      addr);
	lo--;
	*page = (region_off[lo] + (addr - l->regions[lo].guest_addr)) / l->page_size;
	return 0;
}

uint64_t squib_memfile_extent_offset(const struct squib_memfile *m, uint64_t i)
{
	const struct squib_memory_layout *l = &m->m.layout;

	return m->packed_at ? m->packed_at[i] : l->extents[i].first_page * l->page_size;
}

static int read_at(const struct squib_memfile *m, void *buf, uint64_t len, uint64_t off,
		   struct squib_error_detail *d)
{
	int e = squib_pread_all(m->fd, buf, (size_t)len, off);

	if (e)
		return squib_memfile_io_error(d, -e, "reading %s at %" PRIu64, m->path, off);
	return 0;
}

int squib_memfile_read_pages(const struct squib_memfile *m, uint64_t first, uint64_t count,
			     void *buf, struct squib_error_detail *d)
{
	const struct squib_memory_layout *l = &m->m.layout;
	uint64_t ps = l->page_size;
	uint8_t *out = buf;
	int rc;

	/* Fixed offsets: one read (a full file's absent pages are holes, zeros). */
	if (!(m->m.flags & SQUIB_MEMFILE_FLAG_PACKED))
		return read_at(m, buf, count * ps, first * ps, d);
	while (count) { /* packed: one read per extent the pages cross */
		int64_t i = squib_memfile_find_extent(l, first);
		uint64_t in, n;

		if (i < 0)
			return squib_memfile_io_error(d, ENODATA,
						      "page %" PRIu64 " is not in packed diff %s",
						      first, m->path);
		in = first - l->extents[i].first_page;
		n = l->extents[i].page_count - in;
		n = n < count ? n : count;
		if ((rc = read_at(m, out, n * ps, m->packed_at[i] + in * ps, d)))
			return rc;
		out += n * ps;
		first += n;
		count -= n;
	}
	return 0;
}

int squib_memfile_read_page(const struct squib_memfile *m, uint64_t guest_addr, void *buf,
			    struct squib_error_detail *d)
{
	uint64_t page;
	int rc;

	if (!m || !buf)
		return squib_fail_msg(d, SQUIB_E_INVALID_ARGUMENT, "NULL argument to read_page");
	if ((rc = squib_memfile_guest_page(&m->m.layout, m->region_off, guest_addr, &page, d)))
		return rc;
	if (squib_memfile_find_extent(&m->m.layout, page) >= 0)
		return squib_memfile_read_pages(m, page, 1, buf, d);
	if (m->m.layout.kind == SQUIB_MEMORY_FULL) {
		memset(buf, 0, (size_t)m->m.layout.page_size);
		return 0;
	}
	/* A diff does not know this page: its content lives in an older layer. */
	return squib_memfile_io_error(d, ENODATA,
				      "page at guest 0x%" PRIx64
				      " is not in diff %s (read it through "
				      "its chain)",
				      guest_addr, m->path);
}

/* ---- checks ------------------------------------------------------------------ */

int squib_memfile_verify_digests_run(const struct squib_memfile *m, struct squib_progress_run *run,
				     struct squib_error_detail *d)
{
	const struct squib_memory_layout *l;
	int rc;

	if (!m)
		return squib_fail_msg(d, SQUIB_E_INVALID_ARGUMENT, "NULL memory file");
	l = &m->m.layout;
	if (!(m->m.flags & SQUIB_MEMFILE_FLAG_DIGESTS))
		return squib_fail_msg(d, SQUIB_E_INVALID_ARGUMENT, "%s has no digests", m->path);
	for (uint64_t i = 0; i < l->extent_count; i++) {
		const struct squib_page_extent *e = &l->extents[i];
		uint64_t crc;

		if ((rc =
			 squib_memfile_crc_range_run(m->fd, squib_memfile_extent_offset(m, i),
						     e->page_count * l->page_size, &crc, run, d))) {
			if (rc == SQUIB_E_MEMORY_IO && d) /* the range reader knows no path */
				snprintf(d->msg + strlen(d->msg), sizeof(d->msg) - strlen(d->msg),
					 " of %s", m->path);
			return rc;
		}
		if (crc != m->m.digests[i])
			return squib_fail_msg(
			    d, SQUIB_E_CRC_MISMATCH,
			    "%s: extent %" PRIu64 " (pages %" PRIu64 " +%" PRIu64
			    ") digest 0x%016" PRIx64 " but its pages give 0x%016" PRIx64,
			    m->path, i, e->first_page, e->page_count, m->m.digests[i], crc);
	}
	return 0;
}

int squib_memfile_verify_digests_ex(const struct squib_memfile *m,
				    const struct squib_progress *progress,
				    struct squib_error_detail *d)
{
	struct squib_progress_run run = {.p = progress};

	if (m)
		run.total = m->m.layout.present_pages * m->m.layout.page_size;
	return squib_memfile_verify_digests_run(m, &run, d);
}

int squib_memfile_verify_digests(const struct squib_memfile *m, struct squib_error_detail *d)
{
	return squib_memfile_verify_digests_run(m, NULL, d);
}

static int copy_manifest(struct squib_memfile_manifest *dst,
			 const struct squib_memfile_manifest *src, struct squib_error_detail *d)
{
	uint64_t n = src->layout.extent_count;

	*dst = *src;
	dst->digests = NULL;
	if (squib_memory_layout_copy(&dst->layout, &src->layout))
		goto nomem;
	if (src->digests && n) {
		if (!(dst->digests = malloc((size_t)n * sizeof(*dst->digests))))
			goto nomem;
		memcpy(dst->digests, src->digests, (size_t)n * sizeof(*dst->digests));
	}
	return 0;
nomem:
	squib_memfile_manifest_release(dst);
	return squib_fail(d, SQUIB_E_NOMEM);
}

int squib_memfile_verify(const char *path, bool check_digests, struct squib_memfile_manifest *out,
			 struct squib_error_detail *d)
{
	struct squib_memfile *m;
	int rc;

	if (out)
		memset(out, 0, sizeof(*out));
	if ((rc = squib_memfile_open(path, &m, d)))
		return rc;
	if (check_digests && (m->m.flags & SQUIB_MEMFILE_FLAG_DIGESTS))
		rc = squib_memfile_verify_digests(m, d);
	if (!rc && out)
		rc = copy_manifest(out, &m->m, d);
	squib_memfile_close(m);
	return rc;
}

int squib_memfile_check_layout(const struct squib_memfile *m, const struct squib_memory_layout *l,
			       struct squib_error_detail *d)
{
	char want[33], have[33];

	if (!m || !l)
		return squib_fail_msg(d, SQUIB_E_INVALID_ARGUMENT, "NULL argument to check_layout");
	squib_mem_id_hex(l->id, want);
	squib_mem_id_hex(m->m.layout.id, have);
	if (memcmp(l->id, m->m.layout.id, SQUIB_MEMORY_ID_SIZE))
		return squib_fail_msg(d, SQUIB_E_PAIR_MISMATCH,
				      "state file expects memory file %s, %s is %s", want, m->path,
				      have);
	if (!squib_memory_layout_equal(l, &m->m.layout))
		return squib_fail_msg(
		    d, SQUIB_E_PAIR_MISMATCH,
		    "memory file %s (%s) differs from the state file's description "
		    "of %s",
		    have, m->path, want);
	return 0;
}
