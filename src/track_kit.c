/* SPDX-License-Identifier: Apache-2.0 */
/*
 * The tracker kit (track_internal.h): memory-map validation, moving dirty bits
 * between ranges and page sizes, per-region bitmaps. Pure functions over the
 * caller's structs, compiled into libsquib-snapshot and, as a private copy,
 * into libsquib-kvm, whose dirty-log tracker is built from them (docs/DESIGN.md
 * §15: the kit is not part of the ABI).
 */
#include <squib/track.h>

#include <inttypes.h>
#include <string.h>
#include <unistd.h>

#include "track_internal.h"

/* ==== memory map ========================================================== */

static uint64_t host_page(void)
{
	long ps = sysconf(_SC_PAGESIZE);

	return ps > 0 ? (uint64_t)ps : 4096;
}

static int check_region(const struct squib_guest_region *r, size_t i, uint64_t page, bool need_hva,
			struct squib_error_detail *d)
{
	if (r->size == 0 || r->size % page || r->gpa % page)
		return squib_fail_msg(d, SQUIB_E_INVALID_ARGUMENT,
				      "region %zu: gpa 0x%" PRIx64 " size 0x%" PRIx64
				      " must be non-empty multiples of the host page (%" PRIu64 ")",
				      i, r->gpa, r->size, page);
	if (r->size > UINT64_MAX - r->gpa)
		return squib_fail_msg(d, SQUIB_E_INVALID_ARGUMENT,
				      "region %zu: gpa range overflows", i);
	if (need_hva && (!r->hva || (uintptr_t)r->hva % page))
		return squib_fail_msg(
		    d, SQUIB_E_INVALID_ARGUMENT,
		    "region %zu: hva must be a non-NULL host-page-aligned address", i);
	if (need_hva && r->size > UINTPTR_MAX - (uintptr_t)r->hva)
		return squib_fail_msg(d, SQUIB_E_INVALID_ARGUMENT,
				      "region %zu: host range overflows", i);
	return 0;
}

/* Insertion sort by gpa: at most SQUIB_TRACK_MAX_REGIONS entries. */
static void sort_by_gpa(struct squib_guest_region *r, size_t n)
{
	for (size_t i = 1; i < n; i++) {
		struct squib_guest_region x = r[i];
		size_t j = i;

		for (; j > 0 && r[j - 1].gpa > x.gpa; j--)
			r[j] = r[j - 1];
		r[j] = x;
	}
}

static bool host_overlap(const struct squib_guest_region *a, const struct squib_guest_region *b)
{
	uintptr_t a0 = (uintptr_t)a->hva, b0 = (uintptr_t)b->hva;

	return a0 < b0 + b->size && b0 < a0 + a->size;
}

static int check_overlaps(const struct track_map *m, bool need_hva, struct squib_error_detail *d)
{
	for (size_t i = 1; i < m->count; i++)
		if (m->r[i].gpa < m->r[i - 1].gpa + m->r[i - 1].size)
			return squib_fail_msg(d, SQUIB_E_INVALID_ARGUMENT,
					      "regions at gpa 0x%" PRIx64 " and 0x%" PRIx64
					      " overlap",
					      m->r[i - 1].gpa, m->r[i].gpa);
	for (size_t i = 0; need_hva && i < m->count; i++)
		for (size_t j = i + 1; j < m->count; j++)
			if (host_overlap(&m->r[i], &m->r[j]))
				return squib_fail_msg(d, SQUIB_E_INVALID_ARGUMENT,
						      "regions at gpa 0x%" PRIx64 " and 0x%" PRIx64
						      " overlap in host memory",
						      m->r[i].gpa, m->r[j].gpa);
	return 0;
}

int track_map_init(struct track_map *m, const struct squib_memory_map *map, bool need_hva,
		   struct squib_error_detail *d)
{
	int rc;

	if (!m || !map || !map->regions)
		return squib_fail_msg(d, SQUIB_E_INVALID_ARGUMENT, "NULL memory map");
	if (map->count == 0 || map->count > SQUIB_TRACK_MAX_REGIONS)
		return squib_fail_msg(d, SQUIB_E_INVALID_ARGUMENT,
				      "memory map needs 1..%u regions, has %zu",
				      SQUIB_TRACK_MAX_REGIONS, map->count);
	m->host_page = host_page();
	m->count = map->count;
	for (size_t i = 0; i < map->count; i++) {
		rc = check_region(&map->regions[i], i, m->host_page, need_hva, d);
		if (rc)
			return rc;
		m->r[i] = map->regions[i];
	}
	sort_by_gpa(m->r, m->count);
	return check_overlaps(m, need_hva, d);
}

enum track_overlap track_region_overlap(const struct squib_guest_region *r,
					const struct squib_dirty_bitmap *bm)
{
	uint64_t b0 = squib_dirty_bitmap_ram_start(bm);
	uint64_t b1 =
	    b0 + squib_dirty_bitmap_ram_size(bm); /* cannot overflow: checked at creation */
	uint64_t r1 = r->gpa + r->size;

	if (r1 <= b0 || r->gpa >= b1)
		return TRACK_OUTSIDE;
	if (r->gpa >= b0 && r1 <= b1)
		return TRACK_INSIDE;
	return TRACK_STRADDLES;
}

/* ==== moving bits between ranges =========================================== */

/*
 * Consecutive source pages, marked in dst with one set_range per run rather
 * than one per page (a KVM log or a 2 MiB coarse page is mostly runs).
 */
struct run {
	struct squib_dirty_bitmap *dst;
	uint64_t base;	/* guest-physical address of source page 0 */
	uint64_t page;	/* source page size */
	uint64_t limit; /* bytes from base the source covers: a trailing partial page is clipped */
	uint64_t first; /* first page of the pending run */
	uint64_t len;	/* its length in pages; 0: none pending */
	uint64_t newly;
};

static void run_flush(struct run *r)
{
	uint64_t off = r->first * r->page, bytes = r->len * r->page;

	if (!r->len)
		return;
	if (bytes > r->limit - off)
		bytes = r->limit - off;
	r->newly += squib_dirty_bitmap_set_range(r->dst, r->base + off, bytes);
	r->len = 0;
}

static void run_add(struct run *r, uint64_t page)
{
	if (r->len && page == r->first + r->len) {
		r->len++;
		return;
	}
	run_flush(r);
	r->first = page;
	r->len = 1;
}

static int run_add_cb(void *ctx, uint64_t page)
{
	run_add(ctx, page);
	return 0;
}

static struct run run_of(struct squib_dirty_bitmap *dst, const struct squib_dirty_bitmap *src)
{
	return (struct run){.dst = dst,
			    .base = squib_dirty_bitmap_ram_start(src),
			    .page = squib_dirty_bitmap_page_size(src),
			    .limit = squib_dirty_bitmap_ram_size(src)};
}

static bool same_range(const struct squib_dirty_bitmap *a, const struct squib_dirty_bitmap *b)
{
	return squib_dirty_bitmap_ram_start(a) == squib_dirty_bitmap_ram_start(b) &&
	       squib_dirty_bitmap_ram_size(a) == squib_dirty_bitmap_ram_size(b);
}

void track_drain_into(struct squib_dirty_bitmap *dst, struct squib_dirty_bitmap *src)
{
	struct run r;

	if (same_range(dst, src)) {
		squib_dirty_bitmap_drain_merge(dst, src, NULL);
		return;
	}
	r = run_of(dst, src);
	squib_dirty_bitmap_drain_into(src, run_add_cb, &r, NULL);
	run_flush(&r);
}

/* The src pages [*first, *last] that overlap dst's range; false when none do. */
static bool overlap_pages(const struct squib_dirty_bitmap *dst,
			  const struct squib_dirty_bitmap *src, uint64_t *first, uint64_t *last)
{
	uint64_t s0 = squib_dirty_bitmap_ram_start(src), s1 = s0 + squib_dirty_bitmap_ram_size(src);
	uint64_t d0 = squib_dirty_bitmap_ram_start(dst), d1 = d0 + squib_dirty_bitmap_ram_size(dst);
	uint64_t lo = s0 > d0 ? s0 : d0, hi = s1 < d1 ? s1 : d1;

	if (lo >= hi)
		return false;
	*first = (lo - s0) >> squib_dirty_bitmap_page_shift(src);
	*last = (hi - 1 - s0) >> squib_dirty_bitmap_page_shift(src);
	return true;
}

void track_or_overlap(struct squib_dirty_bitmap *dst, const struct squib_dirty_bitmap *src)
{
	uint64_t first, last;
	struct run r;

	if (same_range(dst, src)) {
		squib_dirty_bitmap_merge(dst, src, NULL);
		return;
	}
	if (!overlap_pages(dst, src, &first, &last))
		return;
	/* Give-back runs once per failed Diff: a test per page is cheap enough. */
	r = run_of(dst, src);
	for (uint64_t p = first; p <= last; p++)
		if (squib_dirty_bitmap_test_by_index(src, p))
			run_add(&r, p);
	run_flush(&r);
}

uint64_t track_or_words(struct squib_dirty_bitmap *dst, uint64_t gpa, uint64_t page_size,
			const uint64_t *words, uint64_t nbits)
{
	struct run r = {dst, gpa, page_size, 0, 0, 0, 0};

	if (!dst || !words || !page_size || (page_size & (page_size - 1)))
		return 0;
	/* Bits past 2^64 stand for no address. */
	if (nbits > (UINT64_MAX - gpa) / page_size)
		nbits = (UINT64_MAX - gpa) / page_size;
	r.limit = nbits * page_size;
	for (uint64_t w = 0; w < (nbits + 63) / 64; w++) {
		uint64_t bits = words[w];

		if (w == nbits / 64)
			bits &= (1ull << (nbits % 64)) - 1; /* the tail of the last word */
		for (; bits; bits &= bits - 1)
			run_add(&r, w * 64 + (uint64_t)__builtin_ctzll(bits));
	}
	run_flush(&r);
	return r.newly;
}

/* ==== per-region bitmaps =================================================== */

int track_bits_init(struct track_bits *b, const struct track_map *m, struct squib_error_detail *d)
{
	memset(b, 0, sizeof(*b));
	for (size_t i = 0; i < m->count; i++) {
		int rc =
		    squib_dirty_bitmap_new(m->r[i].gpa, m->r[i].size, m->host_page, &b->bm[i], d);

		if (rc) {
			track_bits_destroy(b);
			return rc;
		}
		b->count = i + 1;
	}
	return 0;
}

void track_bits_destroy(struct track_bits *b)
{
	for (size_t i = 0; i < b->count; i++)
		squib_dirty_bitmap_free(b->bm[i]);
	b->count = 0;
}

uint64_t track_bits_mark(struct track_bits *b, uint64_t gpa, uint64_t len)
{
	uint64_t newly = 0;

	for (size_t i = 0; i < b->count; i++)
		newly += squib_dirty_bitmap_set_range(b->bm[i], gpa, len);
	return newly;
}

static bool region_inside(const struct squib_dirty_bitmap *region_bm,
			  const struct squib_dirty_bitmap *outer)
{
	struct squib_guest_region r = {squib_dirty_bitmap_ram_start(region_bm),
				       squib_dirty_bitmap_ram_size(region_bm), NULL, 0};

	return track_region_overlap(&r, outer) == TRACK_INSIDE;
}

void track_bits_drain(struct track_bits *b, struct squib_dirty_bitmap *dst)
{
	for (size_t i = 0; i < b->count; i++)
		if (region_inside(b->bm[i], dst))
			track_drain_into(dst, b->bm[i]);
}

void track_bits_give_back(struct track_bits *b, const struct squib_dirty_bitmap *src)
{
	for (size_t i = 0; i < b->count; i++)
		if (region_inside(b->bm[i], src))
			track_or_overlap(b->bm[i], src);
}

void track_bits_clear(struct track_bits *b)
{
	for (size_t i = 0; i < b->count; i++)
		squib_dirty_bitmap_clear(b->bm[i]);
}
