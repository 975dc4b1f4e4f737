/* SPDX-License-Identifier: Apache-2.0 */
/* The memory-file description: validation, copy, equality (squib/state.h). */
#include "memlayout.h"

#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <squib/state.h>

int squib_mem_check_page_size(uint64_t page_size, int code, struct squib_error_detail *d)
{
	if (!squib_is_pow2(page_size))
		return squib_fail_msg(d, code, "page_size must be a power of two: %" PRIu64,
				      page_size);
	if (page_size < SQUIB_MEMORY_MIN_PAGE_SIZE || page_size > SQUIB_MEMORY_MAX_PAGE_SIZE)
		return squib_fail_msg(d, code, "page_size %" PRIu64 " is outside [%llu, %llu]",
				      page_size, SQUIB_MEMORY_MIN_PAGE_SIZE,
				      SQUIB_MEMORY_MAX_PAGE_SIZE);
	return 0;
}

static int check_one_region(const struct squib_mem_region *r, uint64_t i, uint64_t page_size,
			    int code, struct squib_error_detail *d)
{
	if (!r->size)
		return squib_fail_msg(d, code, "region %" PRIu64 " is empty", i);
	if ((r->guest_addr | r->size) & (page_size - 1))
		return squib_fail_msg(d, code,
				      "region %" PRIu64 " (guest 0x%" PRIx64 ", size 0x%" PRIx64
				      ") is not aligned to the page size 0x%" PRIx64,
				      i, r->guest_addr, r->size, page_size);
	/* The end must be representable: a region may not wrap past 2^64. */
	if (r->size > UINT64_MAX - r->guest_addr)
		return squib_fail_msg(
		    d, code, "region %" PRIu64 " overflows: start=0x%" PRIx64 ", size=0x%" PRIx64,
		    i, r->guest_addr, r->size);
	return 0;
}

/* Region i against region i - 1: ascending, not overlapping. */
static int check_region_order(const struct squib_mem_region *r, uint64_t i, int code,
			      struct squib_error_detail *d)
{
	const struct squib_mem_region *p = &r[i - 1], *c = &r[i];
	uint64_t pend = p->guest_addr + p->size, cend = c->guest_addr + c->size;

	if (c->guest_addr >= pend)
		return 0;
	if (cend > p->guest_addr)
		return squib_fail_msg(d, code,
				      "region %" PRIu64 " [0x%" PRIx64 ", 0x%" PRIx64
				      ") overlaps region %" PRIu64 " [0x%" PRIx64 ", 0x%" PRIx64
				      ")",
				      i, c->guest_addr, cend, i - 1, p->guest_addr, pend);
	return squib_fail_msg(d, code,
			      "regions must ascend by guest address: region %" PRIu64
			      " at 0x%" PRIx64 " follows 0x%" PRIx64,
			      i, c->guest_addr, p->guest_addr);
}

int squib_mem_check_regions(const struct squib_mem_region *r, uint64_t n, uint64_t page_size,
			    uint64_t *ram_size, int code, struct squib_error_detail *d)
{
	uint64_t total = 0;
	int rc;

	if (n == 0 || !r)
		return squib_fail_msg(d, code, "memory layout has no regions");
	if (n > SQUIB_MEMORY_MAX_REGIONS)
		return squib_fail_msg(d, code, "%" PRIu64 " memory regions (at most %u)", n,
				      SQUIB_MEMORY_MAX_REGIONS);
	for (uint64_t i = 0; i < n; i++) {
		if ((rc = check_one_region(&r[i], i, page_size, code, d)) ||
		    (i && (rc = check_region_order(r, i, code, d))))
			return rc;
		/* Cannot wrap: ascending disjoint ranges below 2^64 sum below 2^64. */
		total += r[i].size;
	}
	if (total > SQUIB_MEMORY_MAX_RAM_SIZE)
		return squib_fail_msg(d, code, "RAM size 0x%" PRIx64 " exceeds 0x%llx", total,
				      SQUIB_MEMORY_MAX_RAM_SIZE);
	if (ram_size)
		*ram_size = total;
	return 0;
}

static int check_one_extent(const struct squib_page_extent *e, uint64_t i, uint64_t prev_end,
			    uint64_t total_pages, int code, struct squib_error_detail *d)
{
	if (!e->page_count)
		return squib_fail_msg(d, code, "extent %" PRIu64 " is empty", i);
	if (e->first_page > total_pages || e->page_count > total_pages - e->first_page)
		return squib_fail_msg(d, code,
				      "extent %" PRIu64 " (pages %" PRIu64 " +%" PRIu64
				      ") runs past the %" PRIu64 " pages of RAM",
				      i, e->first_page, e->page_count, total_pages);
	if (i && e->first_page < prev_end)
		return squib_fail_msg(
		    d, code,
		    "extent %" PRIu64 " at page %" PRIu64
		    " overlaps or precedes the previous one (ending at page %" PRIu64 ")",
		    i, e->first_page, prev_end);
	/* Touching extents have a shorter encoding (one extent): canonical form. */
	if (i && e->first_page == prev_end)
		return squib_fail_msg(d, code,
				      "extent %" PRIu64 " at page %" PRIu64
				      " touches the previous one (extents must be coalesced)",
				      i, e->first_page);
	return 0;
}

int squib_mem_check_extents(const struct squib_page_extent *e, uint64_t n, uint64_t total_pages,
			    uint64_t *present, int code, struct squib_error_detail *d)
{
	uint64_t sum = 0, prev_end = 0;
	int rc;

	if (n > SQUIB_MEMORY_MAX_EXTENTS)
		return squib_fail_msg(d, code, "%" PRIu64 " extents (at most %llu)", n,
				      SQUIB_MEMORY_MAX_EXTENTS);
	if (n && !e)
		return squib_fail_msg(d, code, "extent array is NULL");
	for (uint64_t i = 0; i < n; i++) {
		if ((rc = check_one_extent(&e[i], i, prev_end, total_pages, code, d)))
			return rc;
		prev_end = e[i].first_page + e[i].page_count;
		sum += e[i].page_count; /* disjoint and in bounds: no wrap */
	}
	if (present)
		*present = sum;
	return 0;
}

uint64_t squib_memfile_manifest_bytes(uint64_t regions, uint64_t extents, bool digests)
{
	uint64_t per_extent =
	    SQUIB_MEMFILE_EXTENT_BYTES + (digests ? SQUIB_MEMFILE_DIGEST_BYTES : 0);

	/* Callers bound both counts first (1024 regions, 2^24 extents): no wrap. */
	return regions * SQUIB_MEMFILE_REGION_BYTES + extents * per_extent;
}

uint64_t squib_memfile_size_for(uint64_t ram_size, uint64_t manifest_bytes)
{
	uint64_t area = (manifest_bytes + SQUIB_MEMFILE_AREA_ALIGN - 1) &
			~(uint64_t)(SQUIB_MEMFILE_AREA_ALIGN - 1);

	return ram_size + area + SQUIB_MEMFILE_FOOTER_BYTES;
}

void squib_mem_id_hex(const uint8_t id[SQUIB_MEMORY_ID_SIZE],
		      char out[2 * SQUIB_MEMORY_ID_SIZE + 1])
{
	static const char hex[] = "0123456789abcdef";

	for (int i = 0; i < SQUIB_MEMORY_ID_SIZE; i++) {
		out[2 * i] = hex[id[i] >> 4];
		out[2 * i + 1] = hex[id[i] & 15];
	}
	out[2 * SQUIB_MEMORY_ID_SIZE] = '\0';
}

bool squib_mem_id_is_zero(const uint8_t id[SQUIB_MEMORY_ID_SIZE])
{
	uint8_t acc = 0;

	for (int i = 0; i < SQUIB_MEMORY_ID_SIZE; i++)
		acc |= id[i];
	return acc == 0;
}

/* ---- the layout as a whole --------------------------------------------- */

static int check_ids(const struct squib_memory_layout *l, int code, struct squib_error_detail *d)
{
	bool parent_zero = squib_mem_id_is_zero(l->parent_id);

	if (l->kind != SQUIB_MEMORY_FULL && l->kind != SQUIB_MEMORY_DIFF)
		return squib_fail_msg(d, code, "memory kind %d is neither full (1) nor diff (2)",
				      (int)l->kind);
	if (squib_mem_id_is_zero(l->id))
		return squib_fail_msg(d, code, "memory file id is zero");
	if (l->kind == SQUIB_MEMORY_FULL && !parent_zero)
		return squib_fail_msg(d, code, "a full memory file has a parent id");
	if (l->kind == SQUIB_MEMORY_DIFF && parent_zero)
		return squib_fail_msg(d, code, "a diff memory file has no parent id");
	if (l->kind == SQUIB_MEMORY_DIFF && !memcmp(l->id, l->parent_id, SQUIB_MEMORY_ID_SIZE))
		return squib_fail_msg(d, code, "a diff memory file is its own parent");
	return 0;
}

/* The file sizes a layout may have: the fixed-offset layout without and with
 * digests, and for a diff also the packed one (data = the present pages only). */
static int check_file_size(const struct squib_memory_layout *l, uint64_t ram, uint64_t present,
			   int code, struct squib_error_detail *d)
{
	uint64_t plain = squib_memfile_size_for(
	    ram, squib_memfile_manifest_bytes(l->region_count, l->extent_count, false));
	uint64_t digested = squib_memfile_size_for(
	    ram, squib_memfile_manifest_bytes(l->region_count, l->extent_count, true));
	uint64_t shift = ram - present * l->page_size; /* packed files are this much shorter */

	if (l->file_size == plain || l->file_size == digested)
		return 0;
	if (l->kind == SQUIB_MEMORY_DIFF &&
	    (l->file_size == plain - shift || l->file_size == digested - shift))
		return 0;
	if (plain == digested)
		return squib_fail_msg(d, code,
				      "file_size %" PRIu64 " but the layout needs %" PRIu64,
				      l->file_size, plain);
	return squib_fail_msg(d, code,
			      "file_size %" PRIu64 " is neither %" PRIu64 " nor %" PRIu64
			      " (without, with digests)",
			      l->file_size, plain, digested);
}

static int check_totals(const struct squib_memory_layout *l, uint64_t ram, uint64_t present,
			int code, struct squib_error_detail *d)
{
	if (present != l->present_pages)
		return squib_fail_msg(d, code,
				      "present_pages %" PRIu64 " but the extents hold %" PRIu64,
				      l->present_pages, present);
	return check_file_size(l, ram, present, code, d);
}

int squib_memory_layout_validate(const struct squib_memory_layout *l, int code,
				 struct squib_error_detail *d)
{
	uint64_t ram = 0, present = 0;
	int rc;

	if (!l)
		return squib_fail_msg(d, code, "NULL memory layout");
	if ((rc = check_ids(l, code, d)) ||
	    (rc = squib_mem_check_page_size(l->page_size, code, d)) ||
	    (rc =
		 squib_mem_check_regions(l->regions, l->region_count, l->page_size, &ram, code, d)))
		return rc;
	if (ram != l->ram_size)
		return squib_fail_msg(d, code,
				      "ram_size 0x%" PRIx64 " but the regions add up to 0x%" PRIx64,
				      l->ram_size, ram);
	if ((rc = squib_mem_check_extents(l->extents, l->extent_count, ram / l->page_size, &present,
					  code, d)))
		return rc;
	return check_totals(l, ram, present, code, d);
}

void squib_memory_layout_release(struct squib_memory_layout *l)
{
	if (!l)
		return;
	free(l->regions);
	free(l->extents);
	memset(l, 0, sizeof(*l));
}

static void *dup_array(const void *src, uint64_t n, size_t size)
{
	void *p;

	if (!n || !src || n > SIZE_MAX / size)
		return NULL;
	p = malloc((size_t)n * size);
	if (p)
		memcpy(p, src, (size_t)n * size);
	return p;
}

int squib_memory_layout_copy(struct squib_memory_layout *dst, const struct squib_memory_layout *src)
{
	if (!dst || !src)
		return SQUIB_E_INVALID_ARGUMENT;
	*dst = *src;
	dst->regions = dup_array(src->regions, src->region_count, sizeof(*src->regions));
	dst->extents = dup_array(src->extents, src->extent_count, sizeof(*src->extents));
	if ((src->region_count && src->regions && !dst->regions) ||
	    (src->extent_count && src->extents && !dst->extents)) {
		squib_memory_layout_release(dst);
		return SQUIB_E_NOMEM;
	}
	return 0;
}

static bool arrays_equal(const void *a, const void *b, uint64_t n, size_t size)
{
	return n == 0 || (a && b && memcmp(a, b, (size_t)n * size) == 0);
}

bool squib_memory_layout_equal(const struct squib_memory_layout *a,
			       const struct squib_memory_layout *b)
{
	if (!a || !b)
		return a == b;
	return a->kind == b->kind && !memcmp(a->id, b->id, sizeof(a->id)) &&
	       !memcmp(a->parent_id, b->parent_id, sizeof(a->parent_id)) &&
	       a->page_size == b->page_size && a->ram_size == b->ram_size &&
	       a->file_size == b->file_size && a->present_pages == b->present_pages &&
	       a->region_count == b->region_count && a->extent_count == b->extent_count &&
	       arrays_equal(a->regions, b->regions, a->region_count, sizeof(*a->regions)) &&
	       arrays_equal(a->extents, b->extents, a->extent_count, sizeof(*a->extents));
}
