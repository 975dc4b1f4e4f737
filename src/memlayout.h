/* SPDX-License-Identifier: Apache-2.0 */
/*
 * Geometry and manifest rules shared by the state codec (section MEMORY) and
 * the memory file (internal, not installed). Every check takes the error code
 * to report, because the same broken value is a caller's mistake in one place
 * (SQUIB_E_INVALID_PATH, SQUIB_E_INVALID_ARGUMENT) and a malformed file in
 * another (SQUIB_E_ENCODING).
 */
#ifndef SQUIB_MEMLAYOUT_H
#define SQUIB_MEMLAYOUT_H

#include <stdbool.h>
#include <stdint.h>

#include <squib/error.h>
#include <squib/state.h>

/* Footer and manifest geometry (docs/FORMAT.md, "Memory file"). */
#define SQUIB_MEMFILE_FOOTER_BYTES 4096u
#define SQUIB_MEMFILE_AREA_ALIGN 4096u
#define SQUIB_MEMFILE_REGION_BYTES 16u
#define SQUIB_MEMFILE_EXTENT_BYTES 16u
#define SQUIB_MEMFILE_DIGEST_BYTES 8u

static inline bool squib_is_pow2(uint64_t v)
{
	return v && !(v & (v - 1));
}

/* Page size in [MIN, MAX] and a power of two. */
int squib_mem_check_page_size(uint64_t page_size, int code, struct squib_error_detail *d);

/* Regions: count, emptiness, alignment, overflow, order, overlap; *ram_size
 * (may be NULL) receives the total. */
int squib_mem_check_regions(const struct squib_mem_region *r, uint64_t n, uint64_t page_size,
			    uint64_t *ram_size, int code, struct squib_error_detail *d);

/* Extents: non-empty, in bounds, strictly ascending and coalesced; *present
 * (may be NULL) receives the page total. */
int squib_mem_check_extents(const struct squib_page_extent *e, uint64_t n, uint64_t total_pages,
			    uint64_t *present, int code, struct squib_error_detail *d);

/* Bytes of the manifest itself and of the whole file, for a geometry. */
uint64_t squib_memfile_manifest_bytes(uint64_t regions, uint64_t extents, bool digests);
uint64_t squib_memfile_size_for(uint64_t ram_size, uint64_t manifest_bytes);

/* 32 lowercase hex digits and a NUL. */
void squib_mem_id_hex(const uint8_t id[SQUIB_MEMORY_ID_SIZE], char out[2 * SQUIB_MEMORY_ID_SIZE + 1]);
bool squib_mem_id_is_zero(const uint8_t id[SQUIB_MEMORY_ID_SIZE]);

#endif /* SQUIB_MEMLAYOUT_H */
