/* SPDX-License-Identifier: Apache-2.0 */
/* The file-safety layer's names and helpers shared with pair recovery (internal). */
#ifndef SQUIB_ATOMIC_INTERNAL_H
#define SQUIB_ATOMIC_INTERNAL_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include <squib/atomic.h>

/* Kinds of temp name of a destination NAME (a bit mask for squib_temps). */
enum squib_temp_kind {
	SQUIB_TEMP_NONE = 0,
	SQUIB_TEMP_ORDINARY = 1, /* NAME.<16 hex>.tmp: any writer's */
	SQUIB_TEMP_PAIR = 2,	 /* NAME.<32 hex>.tmp: a pair's state temp, named by a memory id */
};

/* Longest destination name that still leaves room for a pair temp name beside it. */
#define SQUIB_DEST_NAME_MAX (255 - 1 - 32 - 4)

/* Which kind of temp of `name` `entry` is (SQUIB_TEMP_NONE: not one). */
enum squib_temp_kind squib_temp_kind_of(const char *entry, const char *name);

/* NAME.<hex of id>.tmp into buf (id_len 8 or 16 bytes); SQUIB_E_INVALID_PATH if it does not fit. */
int squib_temp_name(const char *name, const uint8_t *id, size_t id_len, char *buf, size_t len,
		    struct squib_error_detail *d);

/*
 * The temps of `name` in the directory dir_fd whose kind is in the mask
 * `kinds`: how many there are; with
 * `remove`, each is unlinked (unlinkat never follows a link, so a planted one
 * is only removed). Only under the destination's lock may anything be removed.
 */
int squib_temps(int dir_fd, const char *name, unsigned int kinds, bool remove);

/* Open NAME in dir_fd for reading only if it is a regular file that this
 * process's user owns, with one link (a temp we made, not one planted): the
 * fd, or -1 with errno (ELOOP symlink, EPERM other owner or links, EINVAL
 * not a regular file). */
int squib_open_own_file(int dir_fd, const char *name);

/* Run the hook of a step (0, or the negative errno it asks the step to fail with). */
int squib_hook(const struct squib_io_hooks *hooks, enum squib_io_step step, const char *path);

/* fsync a directory fd after the FSYNC_DIR hook (path names it); 0 or a negative errno. */
int squib_hooked_fsync_dir_fd(const struct squib_io_hooks *hooks, int dir_fd, const char *path);

#endif /* SQUIB_ATOMIC_INTERNAL_H */
