/* SPDX-License-Identifier: Apache-2.0 */
/* Helpers shared by save, load and pair recovery (internal, not installed). */
#ifndef SQUIB_PAIR_H
#define SQUIB_PAIR_H

#include <stdbool.h>
#include <stdint.h>

#include <squib/atomic.h>
#include <squib/error.h>
#include <squib/state.h>

/* CLOCK_MONOTONIC in nanoseconds. */
uint64_t squib_now_ns(void);

/* path + ".tmp" as a heap string; NULL when out of memory. */
char *squib_temp_path_of(const char *path);


/* Run the hook of a step (0, or the negative errno it asks the step to fail with). */
int squib_hook(const struct squib_io_hooks *hooks, enum squib_io_step step, const char *path);

/* fsync a directory, after the hook; SQUIB_E_IO on failure. */
int squib_hooked_fsync_dir(const struct squib_io_hooks *hooks, const char *dir,
			   struct squib_error_detail *d);

/* Does the path exist (lstat)? */
bool squib_path_exists(const char *path);

/* Two ids as hex for messages. */
struct squib_id_hex {
	char s[2 * SQUIB_MEMORY_ID_SIZE + 1];
};
struct squib_id_hex squib_id_hex(const uint8_t id[SQUIB_MEMORY_ID_SIZE]);

#endif /* SQUIB_PAIR_H */
