/* SPDX-License-Identifier: Apache-2.0 */
/*
 * Which pages of this process's memory were ever populated (internal, not
 * installed). A full memory snapshot uses it to leave never-touched guest
 * pages as holes without reading them: a read would fault in a zero page per
 * 4 KiB (and commit real memory on hugetlbfs), for nothing.
 *
 * Only a private anonymous mapping that userfaultfd does not serve lets
 * "no page table entry" mean "zero": a shared or file mapping keeps its data
 * in the page cache or on disk, and a uffd-missing region gets its content
 * from the fault handler. squib_populated_region_skippable() checks that in
 * /proc/self/smaps; everywhere else the caller must read every page.
 *
 * Thread-safety: reentrant; the answers describe the moment of the call.
 */
#ifndef SQUIB_LINUX_POPULATED_H
#define SQUIB_LINUX_POPULATED_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

enum squib_populated_method {
	SQUIB_POPULATED_SCAN = 1, /* PAGEMAP_SCAN ioctl on /proc/self/pagemap (Linux 6.7+) */
	SQUIB_POPULATED_READ = 2, /* 8-byte /proc/self/pagemap entries, present or swapped bits */
};

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

/*
 * Report the populated pages of [addr, addr + len) (populated = present and
 * not the shared zero page, or swapped out) through fn, using `method` on the
 * open /proc/self/pagemap descriptor. Returns 0, fn's stopping value, or
 * -errno: -ENOTTY / -EINVAL mean the method is not available here.
 */
int squib_populated_walk(int pagemap_fd, enum squib_populated_method method, const void *addr,
			 size_t len, squib_populated_fn fn, void *ctx);

/* 0 when `method` works on this kernel (tried on one page of the stack),
 * else -errno (-ENOTTY or -EINVAL: PAGEMAP_SCAN predates this kernel). */
int squib_populated_probe(int pagemap_fd, enum squib_populated_method method);

#endif /* SQUIB_LINUX_POPULATED_H */
