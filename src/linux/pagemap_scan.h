/* SPDX-License-Identifier: Apache-2.0 */
/*
 * The PAGEMAP_SCAN ioctl (Linux 6.7, linux/fs.h) for builds against older
 * headers: the installed 6.1 headers lack it, the running kernel has it.
 * Values from include/uapi/linux/fs.h; one copy for every user.
 */
#ifndef SQUIB_LINUX_PAGEMAP_SCAN_H
#define SQUIB_LINUX_PAGEMAP_SCAN_H

#include <linux/fs.h>
#include <linux/types.h>
#include <sys/ioctl.h>

#ifndef PAGEMAP_SCAN
#define PAGE_IS_WPALLOWED  (1 << 0)
#define PAGE_IS_WRITTEN	   (1 << 1)
#define PAGE_IS_FILE	   (1 << 2)
#define PAGE_IS_PRESENT	   (1 << 3)
#define PAGE_IS_SWAPPED	   (1 << 4)
#define PAGE_IS_PFNZERO	   (1 << 5)
#define PAGE_IS_HUGE	   (1 << 6)
#define PAGE_IS_SOFT_DIRTY (1 << 7)

struct page_region {
	__u64 start;
	__u64 end;
	__u64 categories;
};

#define PM_SCAN_WP_MATCHING   (1 << 0)
#define PM_SCAN_CHECK_WPASYNC (1 << 1)

struct pm_scan_arg {
	__u64 size;
	__u64 flags;
	__u64 start;
	__u64 end;
	__u64 walk_end;
	__u64 vec;
	__u64 vec_len;
	__u64 max_pages;
	__u64 category_inverted;
	__u64 category_mask;
	__u64 category_anyof_mask;
	__u64 return_mask;
};

#define PAGEMAP_SCAN _IOWR('f', 16, struct pm_scan_arg)
#endif

_Static_assert(sizeof(struct pm_scan_arg) == 96, "pm_scan_arg is twelve u64s");
_Static_assert(sizeof(struct page_region) == 24, "page_region is three u64s");

#endif /* SQUIB_LINUX_PAGEMAP_SCAN_H */
