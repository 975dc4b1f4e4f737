/* SPDX-License-Identifier: Apache-2.0 */
/*
 * The store's image object (docs/FORMAT.md §S.2): a memory file's manifest
 * and the chunk map of the memory it reads as. One encoder, one strict decoder.
 */
#include <inttypes.h>
#include <stdlib.h>
#include <string.h>

#include <squib/crc64.h>
#include <squib/store.h>

#include "../memlayout.h"
#include "../util.h"
#include "store_internal.h"

#define HEADER_BYTES	  128u
#define TRAILER_BYTES	  8u
#define COMPRESSION_ZSTD  1u
#define DELTA_ENTRY_BYTES (8u + SQUIB_STORE_HASH_SIZE) /* u64 window, base name */

void squib_store_image_release(struct squib_store_image *im)
{
	if (!im)
		return;
	squib_memfile_manifest_release(&im->manifest);
	free(im->chunks);
	free(im->bases);
	memset(im, 0, sizeof(*im));
}

static uint64_t region_windows(const struct squib_mem_region *r, uint32_t shift)
{
	return ((r->guest_addr + r->size - 1) >> shift) - (r->guest_addr >> shift) + 1;
}

uint64_t squib_store_chunk_count(const struct squib_memory_layout *l, uint32_t chunk_shift)
{
	uint64_t n = 0;

	if (chunk_shift < SQUIB_STORE_MIN_CHUNK_SHIFT ||
	    chunk_shift > SQUIB_STORE_MAX_CHUNK_SHIFT || (1ull << chunk_shift) < l->page_size)
		return 0;
	for (uint32_t i = 0; i < l->region_count; i++) {
		if (!l->regions[i].size)
			return 0;
		n += region_windows(&l->regions[i], chunk_shift);
		if (n > SQUIB_STORE_MAX_CHUNKS)
			return 0;
	}
	return n;
}

int squib_store_chunk_window(const struct squib_memory_layout *l, uint32_t chunk_shift, uint64_t k,
			     uint32_t *region, uint64_t *guest_addr, uint64_t *file_off,
			     uint64_t *len)
{
	uint64_t off = 0;

	for (uint32_t i = 0; i < l->region_count; i++) {
		const struct squib_mem_region *r = &l->regions[i];
		uint64_t n = region_windows(r, chunk_shift);

		if (k < n) {
			uint64_t w = ((r->guest_addr >> chunk_shift) + k) << chunk_shift;
			uint64_t lo = w > r->guest_addr ? w : r->guest_addr;
			uint64_t end = r->guest_addr + r->size;
			uint64_t hi = w + (1ull << chunk_shift);

			if (hi > end || hi < w) /* the last window of a region ending at 2^64 */
				hi = end;
			*region = i;
			*guest_addr = lo;
			*file_off = off + (lo - r->guest_addr);
			*len = hi - lo;
			return 0;
		}
		k -= n;
		off += r->size;
	}
	return squib_fail_msg(NULL, SQUIB_E_INVALID_ARGUMENT, "no such chunk window");
}

static size_t image_bytes(uint64_t regions, uint64_t extents, bool digests, uint64_t chunks,
			  uint64_t deltas)
{
	return HEADER_BYTES + regions * 16 + extents * (digests ? 24 : 16) +
	       chunks * SQUIB_STORE_HASH_SIZE + deltas * DELTA_ENTRY_BYTES + TRAILER_BYTES;
}

/* The windows that are deltas: a 1.1 image lists them (window, base) after
 * its chunk map; one without any is a 1.0 image. */
static uint64_t delta_count(const struct squib_store_image *im)
{
	uint64_t n = 0;

	for (uint64_t k = 0; im->bases && k < im->chunk_count; k++)
		n += !squib_store_hash_is_zero(&im->bases[k]);
	return n;
}

static void put_header(uint8_t *p, const struct squib_store_image *im, uint64_t deltas)
{
	const struct squib_memory_layout *l = &im->manifest.layout;

	squib_put_le64(p, SQUIB_STORE_IMAGE_MAGIC);
	squib_put_le16(p + 8, SQUIB_STORE_IMAGE_VERSION_MAJOR);
	squib_put_le16(p + 10, deltas ? 1 : 0);
	squib_put_le32(p + 16, im->manifest.flags);
	squib_put_le32(p + 20, (uint32_t)l->kind);
	memcpy(p + 24, l->id, SQUIB_MEMORY_ID_SIZE);
	memcpy(p + 40, l->parent_id, SQUIB_MEMORY_ID_SIZE);
	squib_put_le32(p + 56, l->region_count);
	squib_put_le32(p + 60, im->chunk_shift);
	squib_put_le64(p + 64, l->page_size);
	squib_put_le64(p + 72, l->ram_size);
	squib_put_le64(p + 80, l->present_pages);
	squib_put_le64(p + 88, l->file_size);
	squib_put_le64(p + 96, l->extent_count);
	squib_put_le64(p + 104, im->chunk_count);
	squib_put_le32(p + 112, COMPRESSION_ZSTD);
	squib_put_le64(p + 120, deltas);
}

/* The rules an image obeys beyond its layout's (also what the decoder checks). */
static int check_image(const struct squib_store_image *im, int code, struct squib_error_detail *d)
{
	const struct squib_memfile_manifest *m = &im->manifest;
	const struct squib_memory_layout *l = &m->layout;
	bool dig = m->flags & SQUIB_MEMFILE_FLAG_DIGESTS;
	int r;

	if (m->flags & ~SQUIB_MEMFILE_FLAG_DIGESTS)
		return squib_fail_msg(d, code, "image: undefined flags 0x%" PRIx32, m->flags);
	if ((r = squib_memory_layout_validate(l, code, d)))
		return r;
	if (l->file_size !=
	    squib_memfile_size_for(
		l->ram_size, squib_memfile_manifest_bytes(l->region_count, l->extent_count, dig)))
		return squib_fail_msg(d, code, "image: file_size does not match the DIGESTS flag");
	if (dig && !m->digests)
		return squib_fail_msg(d, code, "image: DIGESTS without digests");
	if (im->chunk_count != squib_store_chunk_count(l, im->chunk_shift))
		return squib_fail_msg(
		    d, code,
		    "image: %" PRIu64 " chunks, the regions need %" PRIu64
		    " at chunk shift %" PRIu32 " (shift %u..%u, at least the page)",
		    im->chunk_count, squib_store_chunk_count(l, im->chunk_shift), im->chunk_shift,
		    SQUIB_STORE_MIN_CHUNK_SHIFT, SQUIB_STORE_MAX_CHUNK_SHIFT);
	if (im->chunk_count && !im->chunks)
		return squib_fail_msg(d, code, "image: no chunk map");
	/* A delta's window has content and a base other than itself (§S.2). */
	for (uint64_t k = 0; im->bases && k < im->chunk_count; k++)
		if (!squib_store_hash_is_zero(&im->bases[k]) &&
		    (squib_store_hash_is_zero(&im->chunks[k]) ||
		     !memcmp(im->bases[k].b, im->chunks[k].b, sizeof(im->chunks[k].b))))
			return squib_fail_msg(
			    d, code, "image: window %" PRIu64 " has a base but %s", k,
			    squib_store_hash_is_zero(&im->chunks[k]) ? "is zero"
								     : "is its own base");
	return 0;
}

int squib_store_image_encode(const struct squib_store_image *im, uint8_t **out, size_t *len,
			     struct squib_error_detail *d)
{
	const struct squib_memory_layout *l = &im->manifest.layout;
	bool dig = im->manifest.flags & SQUIB_MEMFILE_FLAG_DIGESTS;
	uint8_t *buf, *p;
	size_t n;
	int r;

	*out = NULL;
	*len = 0;
	if ((r = check_image(im, SQUIB_E_INVALID_ARGUMENT, d)))
		return r;
	uint64_t deltas = delta_count(im);

	n = image_bytes(l->region_count, l->extent_count, dig, im->chunk_count, deltas);
	if (!(buf = calloc(1, n)))
		return squib_fail(d, SQUIB_E_NOMEM);
	put_header(buf, im, deltas);
	p = buf + HEADER_BYTES;
	for (uint32_t i = 0; i < l->region_count; i++, p += 16) {
		squib_put_le64(p, l->regions[i].guest_addr);
		squib_put_le64(p + 8, l->regions[i].size);
	}
	for (uint64_t i = 0; i < l->extent_count; i++, p += 16) {
		squib_put_le64(p, l->extents[i].first_page);
		squib_put_le64(p + 8, l->extents[i].page_count);
	}
	for (uint64_t i = 0; dig && i < l->extent_count; i++, p += 8)
		squib_put_le64(p, im->manifest.digests[i]);
	if (im->chunk_count)
		memcpy(p, im->chunks, im->chunk_count * SQUIB_STORE_HASH_SIZE);
	p += im->chunk_count * SQUIB_STORE_HASH_SIZE;
	for (uint64_t k = 0; deltas && k < im->chunk_count; k++)
		if (!squib_store_hash_is_zero(&im->bases[k])) {
			squib_put_le64(p, k);
			memcpy(p + 8, im->bases[k].b, SQUIB_STORE_HASH_SIZE);
			p += DELTA_ENTRY_BYTES;
		}
	squib_put_le64(p, squib_crc64(0, buf, n - TRAILER_BYTES));
	*out = buf;
	*len = n;
	return 0;
}

/* Header fields that bound the arrays, before anything is allocated. */
static int check_header(const uint8_t *p, size_t len, uint16_t minor, struct squib_error_detail *d)
{
	uint32_t flags = squib_get_le32(p + 16), kind = squib_get_le32(p + 20);
	uint32_t regions = squib_get_le32(p + 56), shift = squib_get_le32(p + 60);
	uint64_t extents = squib_get_le64(p + 96), chunks = squib_get_le64(p + 104);
	uint64_t deltas = squib_get_le64(p + 120);

	if (squib_get_le16(p + 14) || squib_get_le32(p + 116))
		return squib_fail_msg(d, SQUIB_E_ENCODING, "image: reserved header bytes not zero");
	/* Canonical: a 1.1 image is one with deltas, a 1.0 image has none. */
	if (minor ? !deltas || deltas > chunks : deltas != 0)
		return squib_fail_msg(d, SQUIB_E_ENCODING,
				      "image: delta_count %" PRIu64 " in a 1.%u image of %" PRIu64
				      " chunks",
				      deltas, (unsigned)minor, chunks);
	if (flags & ~SQUIB_MEMFILE_FLAG_DIGESTS)
		return squib_fail_msg(d, SQUIB_E_ENCODING, "image: undefined flags 0x%" PRIx32,
				      flags);
	if (kind != SQUIB_MEMORY_FULL && kind != SQUIB_MEMORY_DIFF)
		return squib_fail_msg(d, SQUIB_E_ENCODING, "image: kind %" PRIu32, kind);
	if (!regions || regions > SQUIB_MEMORY_MAX_REGIONS)
		return squib_fail_msg(d, SQUIB_E_ENCODING, "image: region_count %" PRIu32, regions);
	if (shift < SQUIB_STORE_MIN_CHUNK_SHIFT || shift > SQUIB_STORE_MAX_CHUNK_SHIFT)
		return squib_fail_msg(d, SQUIB_E_ENCODING, "image: chunk_shift %" PRIu32, shift);
	if (extents > SQUIB_MEMORY_MAX_EXTENTS || chunks > SQUIB_STORE_MAX_CHUNKS)
		return squib_fail_msg(d, SQUIB_E_ENCODING,
				      "image: %" PRIu64 " extents, %" PRIu64 " chunks", extents,
				      chunks);
	if (squib_get_le32(p + 112) != COMPRESSION_ZSTD)
		return squib_fail_msg(d, SQUIB_E_ENCODING, "image: compression %" PRIu32,
				      squib_get_le32(p + 112));
	if (len !=
	    image_bytes(regions, extents, flags & SQUIB_MEMFILE_FLAG_DIGESTS, chunks, deltas))
		return squib_fail_msg(
		    d, SQUIB_E_ENCODING, "image: %zu bytes, its header needs %zu", len,
		    image_bytes(regions, extents, flags & SQUIB_MEMFILE_FLAG_DIGESTS, chunks,
				deltas));
	return 0;
}

static int alloc_arrays(struct squib_store_image *im, bool dig, bool bases)
{
	struct squib_memory_layout *l = &im->manifest.layout;

	l->regions = calloc(l->region_count, sizeof(*l->regions));
	l->extents = l->extent_count ? calloc(l->extent_count, sizeof(*l->extents)) : NULL;
	im->manifest.digests =
	    dig && l->extent_count ? calloc(l->extent_count, sizeof(uint64_t)) : NULL;
	im->chunks = im->chunk_count ? calloc(im->chunk_count, sizeof(*im->chunks)) : NULL;
	im->bases = bases && im->chunk_count ? calloc(im->chunk_count, sizeof(*im->bases)) : NULL;
	if (!l->regions || (l->extent_count && !l->extents) ||
	    (dig && l->extent_count && !im->manifest.digests) || (im->chunk_count && !im->chunks) ||
	    (bases && im->chunk_count && !im->bases))
		return squib_fail(NULL, SQUIB_E_NOMEM);
	return 0;
}

static int parse_body(const uint8_t *buf, struct squib_store_image *im,
		      struct squib_error_detail *d)
{
	struct squib_memory_layout *l = &im->manifest.layout;
	bool dig = im->manifest.flags & SQUIB_MEMFILE_FLAG_DIGESTS;
	uint64_t deltas = squib_get_le64(buf + 120);
	const uint8_t *p = buf + HEADER_BYTES;

	if (alloc_arrays(im, dig, deltas != 0))
		return squib_fail(d, SQUIB_E_NOMEM);
	for (uint32_t i = 0; i < l->region_count; i++, p += 16) {
		l->regions[i].guest_addr = squib_get_le64(p);
		l->regions[i].size = squib_get_le64(p + 8);
	}
	for (uint64_t i = 0; i < l->extent_count; i++, p += 16) {
		l->extents[i].first_page = squib_get_le64(p);
		l->extents[i].page_count = squib_get_le64(p + 8);
	}
	for (uint64_t i = 0; dig && i < l->extent_count; i++, p += 8)
		im->manifest.digests[i] = squib_get_le64(p);
	if (im->chunk_count)
		memcpy(im->chunks, p, im->chunk_count * SQUIB_STORE_HASH_SIZE);
	p += im->chunk_count * SQUIB_STORE_HASH_SIZE;
	/* The list is canonical: windows strictly ascending, each a real base. */
	for (uint64_t i = 0, last = 0; i < deltas; i++, p += DELTA_ENTRY_BYTES) {
		uint64_t k = squib_get_le64(p);

		if (k >= im->chunk_count || (i && k <= last))
			return squib_fail_msg(d, SQUIB_E_ENCODING,
					      "image: delta %" PRIu64 " names window %" PRIu64
					      " (windows ascending, below %" PRIu64 ")",
					      i, k, im->chunk_count);
		memcpy(im->bases[k].b, p + 8, SQUIB_STORE_HASH_SIZE);
		if (squib_store_hash_is_zero(&im->bases[k]))
			return squib_fail_msg(d, SQUIB_E_ENCODING,
					      "image: delta %" PRIu64 " has a zero base", i);
		last = k;
	}
	return 0;
}

static void read_header(const uint8_t *p, struct squib_store_image *im)
{
	struct squib_memory_layout *l = &im->manifest.layout;

	im->manifest.flags = squib_get_le32(p + 16);
	l->kind = (enum squib_memory_kind)squib_get_le32(p + 20);
	memcpy(l->id, p + 24, SQUIB_MEMORY_ID_SIZE);
	memcpy(l->parent_id, p + 40, SQUIB_MEMORY_ID_SIZE);
	l->region_count = squib_get_le32(p + 56);
	im->chunk_shift = squib_get_le32(p + 60);
	l->page_size = squib_get_le64(p + 64);
	l->ram_size = squib_get_le64(p + 72);
	l->present_pages = squib_get_le64(p + 80);
	l->file_size = squib_get_le64(p + 88);
	l->extent_count = squib_get_le64(p + 96);
	im->chunk_count = squib_get_le64(p + 104);
	im->manifest.version = (struct squib_version){
	    SQUIB_MEMFILE_VERSION_MAJOR, SQUIB_MEMFILE_VERSION_MINOR, SQUIB_MEMFILE_VERSION_PATCH};
}

int squib_store_image_decode(const uint8_t *buf, size_t len, struct squib_store_image *out,
			     struct squib_error_detail *d)
{
	struct squib_version found,
	    want = {SQUIB_STORE_IMAGE_VERSION_MAJOR, SQUIB_STORE_IMAGE_VERSION_MINOR, 0};
	int r;

	memset(out, 0, sizeof(*out));
	if (len < HEADER_BYTES + TRAILER_BYTES)
		return squib_fail(d, SQUIB_E_TOO_SHORT);
	if (squib_crc64(0, buf, len - TRAILER_BYTES) != squib_get_le64(buf + len - TRAILER_BYTES))
		return squib_fail_msg(d, SQUIB_E_CRC_MISMATCH, "image CRC does not match");
	if (squib_get_le64(buf) != SQUIB_STORE_IMAGE_MAGIC)
		return squib_fail_magic(d, squib_get_le64(buf), SQUIB_STORE_IMAGE_MAGIC);
	found = (struct squib_version){squib_get_le16(buf + 8), squib_get_le16(buf + 10),
				       squib_get_le16(buf + 12)};
	if (found.major != want.major || found.minor > want.minor)
		return squib_fail_version(d, found, want);
	if ((r = check_header(buf, len, found.minor, d)))
		return r;
	read_header(buf, out);
	if ((r = parse_body(buf, out, d)) || (r = check_image(out, SQUIB_E_ENCODING, d))) {
		squib_store_image_release(out);
		return r;
	}
	out->manifest.manifest_crc = 0;
	return 0;
}
