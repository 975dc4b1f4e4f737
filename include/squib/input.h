/* SPDX-License-Identifier: Apache-2.0 */
/*
 * squib/input.h - opening the files squib reads.
 *
 * Every file squib takes as input (state, memory, diffs, working sets, the
 * guest binary of `run`) is opened here, so that no input can hang a command
 * or be something other than a regular file:
 *
 *   - open(2) with O_NONBLOCK | O_NOCTTY | O_CLOEXEC: a FIFO at the path
 *     opens at once instead of waiting for a writer, and no terminal becomes
 *     the controlling one;
 *   - fstat(2) of the opened fd (not of the path, so nothing can be swapped
 *     in between): anything but a regular file (directory, FIFO, socket,
 *     device) is refused with a message naming what it is;
 *   - O_NONBLOCK is then cleared, so reads of the regular file mean what they
 *     say.
 *
 * Thread-safety: reentrant.
 */
#ifndef SQUIB_INPUT_H
#define SQUIB_INPUT_H

#include <squib/api.h>
#include <sys/stat.h>

#include <squib/error.h>

#ifdef __cplusplus
extern "C" {
#endif

/*
 * Open `path` for reading (access O_RDONLY) or reading and writing (O_RDWR,
 * e.g. an in-place rebase). Returns the fd (>= 0), with *st (may be NULL)
 * its fstat; or `code` (SQUIB_E_IO, SQUIB_E_MEMORY_IO, ...) with d's
 * os_errno the cause and d->msg naming the path: "opening PATH", or "PATH is
 * a FIFO, not a regular file" (os_errno EINVAL; EISDIR for a directory).
 */
SQUIB_API int squib_input_open(const char *path, int access, int code, struct stat *st,
			       struct squib_error_detail *d);

#ifdef __cplusplus
}
#endif
#endif /* SQUIB_INPUT_H */
