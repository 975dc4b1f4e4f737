/* SPDX-License-Identifier: Apache-2.0 */
/*
 * Which pages of this process's memory were ever populated: a platform hook
 * (internal, not installed). The portable core (the full memory-file writer,
 * src/memfile_write.c) calls it through this header only; the platform
 * implements it (Linux: src/linux/populated.c, /proc/self/smaps and
 * /proc/self/pagemap). A platform without one makes squib_populated_open
 * return -ENOSYS, and SQUIB_DETECT_AUTO then reads every page. A full memory
 * snapshot uses it to leave never-touched guest
 * pages as holes without reading them: a read would fault in a zero page per
 * 4 KiB (and commit real memory on hugetlbfs), for nothing.
 *
 * Only a private anonymous mapping that userfaultfd does not serve lets
 * "no page table entry" mean "zero": a shared or file mapping keeps its data
 * in the page cache or on disk, and a uffd-missing region gets its content
 * from the fault handler. squib_populated_region_skippable() checks that (on
 * Linux in /proc/self/smaps); everywhere else the caller must read every page.
 *
 * Thread-safety: reentrant; the answers describe the moment of the call.
 */
#ifndef SQUIB_POPULATED_H
#define SQUIB_POPULATED_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include <squib/memfile.h> /* enum squib_memfile_detect: the methods */

/* Called with each populated range [start, end) (absolute addresses, host-page
 * aligned) in ascending order; a non-zero return stops the walk with it. */
typedef int (*squib_populated_fn)(void *ctx, uint64_t start, uint64_t end);

/*
 * *ok = true when every page of [addr, addr + len) lies in mappings that are
 * private, anonymous (or anonymous hugetlb) and not registered for userfaultfd
 * missing or minor faults. *ok = false when any part is not, or the range is
 * not fully mapped. Returns 0, or -errno when smaps cannot be read.
 */
int squib_populated_region_skippable(const void *addr, size_t len, bool *ok);

/* The platform's handle (Linux: an open /proc/self/pagemap). */
struct squib_populated;

/* 0 and *out, or -errno (-ENOSYS: this platform has no way to tell). */
int squib_populated_open(struct squib_populated **out);

/* NULL: no-op. */
void squib_populated_close(struct squib_populated *p);

/*
 * Report the populated pages of [addr, addr + len) (populated = present and
 * not the shared zero page, or swapped out) through fn, using `method`
 * (SQUIB_DETECT_PAGEMAP_SCAN or _READ). Returns 0, fn's stopping value, or
 * -errno: -ENOTTY / -EINVAL mean the method is not available here.
 */
int squib_populated_walk(struct squib_populated *p, enum squib_memfile_detect method,
			 const void *addr, size_t len, squib_populated_fn fn, void *ctx);

/* 0 when `method` works here (tried on one page of the stack), else -errno
 * (-ENOTTY or -EINVAL: PAGEMAP_SCAN predates this kernel). */
int squib_populated_probe(struct squib_populated *p, enum squib_memfile_detect method);

#endif /* SQUIB_POPULATED_H */
