/* SPDX-License-Identifier: Apache-2.0 */
/*
 * The tracker kit (src/track_kit.c), shared by the generic tracker layer
 * (track.c), the trackers in src/linux/ and the KVM dirty-log tracker (not
 * installed; libsquib-kvm carries its own copy, see track_kit.c).
 */
#ifndef SQUIB_TRACK_INTERNAL_H
#define SQUIB_TRACK_INTERNAL_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include <squib/track.h>

/* The ops a tracker was built with: how an implementation recognises its own trackers. */
const struct squib_tracker_ops *track_ops(const struct squib_tracker *t);

/* A validated copy of a memory map, regions in ascending gpa order. */
struct track_map {
	size_t count;
	uint64_t host_page;
	struct squib_guest_region r[SQUIB_TRACK_MAX_REGIONS];
};

/*
 * Validate and copy: 1..SQUIB_TRACK_MAX_REGIONS regions of non-zero size,
 * gpa and size host-page multiples, no gpa overflow or overlap; with
 * need_hva also a non-NULL, page-aligned hva per region and no host overlap.
 * SQUIB_E_INVALID_ARGUMENT naming the first fault.
 */
int track_map_init(struct track_map *m, const struct squib_memory_map *map, bool need_hva,
		   struct squib_error_detail *d);

enum track_overlap {
	TRACK_OUTSIDE = 0,
	TRACK_INSIDE,
	TRACK_STRADDLES,
};

/* Where region r sits relative to bm's guest-physical range. */
enum track_overlap track_region_overlap(const struct squib_guest_region *r,
					const struct squib_dirty_bitmap *bm);

/*
 * Drain src (any range and page size) into dst: every dirty src page marks
 * the dst pages it overlaps; a page set in src while this runs either
 * arrives in dst or stays in src. Same range: squib_dirty_bitmap_drain_merge.
 */
void track_drain_into(struct squib_dirty_bitmap *dst, struct squib_dirty_bitmap *src);

/* OR the dirty pages of src that overlap dst's range into dst; src unchanged. */
void track_or_overlap(struct squib_dirty_bitmap *dst, const struct squib_dirty_bitmap *src);

/*
 * One host-page bitmap per region: the VMM-marks tracker's store, and where
 * trackers that cannot re-dirty a page in their source (uffd-wp, KVM) keep
 * what give_back returned until the next harvest.
 */
struct track_bits {
	size_t count;
	struct squib_dirty_bitmap *bm[SQUIB_TRACK_MAX_REGIONS];
};

int track_bits_init(struct track_bits *b, const struct track_map *m, struct squib_error_detail *d);
void track_bits_destroy(struct track_bits *b);
/* set_range on every region's bitmap; pages newly marked. */
uint64_t track_bits_mark(struct track_bits *b, uint64_t gpa, uint64_t len);
/* Drain the bitmaps of the regions inside dst into dst. */
void track_bits_drain(struct track_bits *b, struct squib_dirty_bitmap *dst);
/* OR src into the bitmaps of the regions inside src. */
void track_bits_give_back(struct track_bits *b, const struct squib_dirty_bitmap *src);
void track_bits_clear(struct track_bits *b);

/* squib_dirty_bitmap_or_words (squib/track.h) without its name in the ABI. */
uint64_t track_or_words(struct squib_dirty_bitmap *dst, uint64_t gpa, uint64_t page_size,
			const uint64_t *words, uint64_t nbits);

#endif /* SQUIB_TRACK_INTERNAL_H */
