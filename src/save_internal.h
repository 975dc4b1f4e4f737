/* SPDX-License-Identifier: Apache-2.0 */
/*
 * The save orchestrator with another destination than a file pair (not
 * installed): the snapshot store's save (src/store/store_save.c) runs the
 * same quiesce, capture, harvest, resume and tracker protocol as squib_save
 * and hands the guest's memory and the encoded state to a sink.
 */
#ifndef SQUIB_SAVE_INTERNAL_H
#define SQUIB_SAVE_INTERNAL_H

#include <stddef.h>
#include <stdint.h>

#include <squib/dirty.h>
#include <squib/memfile.h>
#include <squib/save.h>

struct squib_save_sink_memory {
	const struct squib_memfile_source *src;
	enum squib_snapshot_kind kind;
	const uint8_t *parent_id;			 /* Diff: the parent's id */
	const struct squib_dirty_bitmap *const *bitmaps; /* Diff: one per region, else NULL */
	const uint8_t *id;				 /* the new memory id */
	bool digests;
};

struct squib_save_sink {
	/*
	 * With every vCPU paused: take the guest's memory (the sink must not
	 * touch src once it returns: the vCPUs run again) and fill *out with the
	 * memory file's manifest as a file save would have written it, completed
	 * (squib_memfile_encode_tail), and *pages with the pages it holds.
	 */
	int (*memory)(void *ctx, const struct squib_save_sink_memory *m,
		      struct squib_memfile_manifest *out, uint64_t *pages,
		      struct squib_error_detail *d);
	/* After the resume: make memory and state (its encoded bytes) durable. */
	int (*commit)(void *ctx, const uint8_t *state, size_t len, struct squib_error_detail *d);
	void *ctx;
};

/*
 * squib_save with `sink` as the destination: req's paths are not used (nor
 * parent_state_path: the sink checks the parent's geometry); no file is
 * created, locked or recovered. A failure gives the harvested pages back; a
 * commit that succeeded resets the trackers, and the report says
 * state_published.
 */
int squib_save_to_sink(const struct squib_vm *vm, const struct squib_save_request *req,
		       const struct squib_save_sink *sink, struct squib_save_report *report,
		       struct squib_error_detail *d);

#endif /* SQUIB_SAVE_INTERNAL_H */
