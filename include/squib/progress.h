/* SPDX-License-Identifier: Apache-2.0 */
/*
 * squib/progress.h - progress reports from long operations (digest checks,
 * rebase), for a progress bar or a log.
 *
 * A function that accepts a `const struct squib_progress *` (NULL: no
 * reports) calls fn(ctx, done, total) from the calling thread as the work
 * advances: `total` is fixed for the whole operation (bytes, unless the
 * function says otherwise), `done` never decreases and ends at `total` when
 * the operation succeeds. Calls are frequent (about one per MiB); the
 * callback should be cheap and throttle whatever it draws. It must not call
 * back into the operation that reports.
 */
#ifndef SQUIB_PROGRESS_H
#define SQUIB_PROGRESS_H

#include <stdint.h>

#ifdef __cplusplus
extern "C" {
#endif

struct squib_progress {
	void *ctx;
	void (*fn)(void *ctx, uint64_t done, uint64_t total);
};

#ifdef __cplusplus
}
#endif
#endif /* SQUIB_PROGRESS_H */
