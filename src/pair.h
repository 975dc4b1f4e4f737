/* SPDX-License-Identifier: Apache-2.0 */
/* Helpers shared by save, load and pair recovery (internal, not installed). */
#ifndef SQUIB_PAIR_H
#define SQUIB_PAIR_H

#include <stdbool.h>
#include <stdint.h>

#include <squib/atomic.h>
#include <squib/error.h>
#include <squib/load.h>
#include <squib/state.h>

/* CLOCK_MONOTONIC in nanoseconds. */
uint64_t squib_now_ns(void);

/* squib_pair_recover with both destinations' locks already held (a save holds them
 * from before its recovery until its last rename). */
int squib_pair_recover_locked(struct squib_dest_lock *state_lock,
			      struct squib_dest_lock *memory_lock,
			      const struct squib_io_hooks *hooks,
			      enum squib_recovery_action *action, struct squib_error_detail *d);


/*
 * How a pair's memory file is published: 0 published and durable;
 * SQUIB_E_IO published but not known durable (its directory did not sync);
 * any other error: not published, nothing visible changed.
 */
typedef int (*squib_publish_fn)(void *ctx, struct squib_error_detail *d);

/* squib_publish_fn for a PREPARED atomic writer (ctx): squib_atomic_publish. */
int squib_publish_writer(void *writer, struct squib_error_detail *d);

struct squib_pair_outcome {
	bool memory_published, state_published;
};

/*
 * The pair protocol (docs/DESIGN.md §10, P3-P6), for save and rebase alike:
 * publish the memory; once it is durable, publish the PREPARED state writer
 * and keep its temp if the rename fails; if the memory is visible but not
 * durable, keep the state temp without renaming. Whatever fails after the
 * memory is visible, squib_pair_recover completes the pair. If the memory
 * is not published, the state writer is aborted (its temp unlinked).
 */
int squib_pair_publish(squib_publish_fn publish_memory, void *ctx,
		       struct squib_atomic_writer *state, struct squib_pair_outcome *out,
		       struct squib_error_detail *d);

/* Two ids as hex for messages. */
struct squib_id_hex {
	char s[2 * SQUIB_MEMORY_ID_SIZE + 1];
};
struct squib_id_hex squib_id_hex(const uint8_t id[SQUIB_MEMORY_ID_SIZE]);

#endif /* SQUIB_PAIR_H */
