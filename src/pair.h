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


/* Two ids as hex for messages. */
struct squib_id_hex {
	char s[2 * SQUIB_MEMORY_ID_SIZE + 1];
};
struct squib_id_hex squib_id_hex(const uint8_t id[SQUIB_MEMORY_ID_SIZE]);

#endif /* SQUIB_PAIR_H */
