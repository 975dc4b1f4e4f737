/* SPDX-License-Identifier: Apache-2.0 */
/* Populated-page detection through /proc/self/smaps and /proc/self/pagemap: the
 * Linux implementation of the platform hook src/populated.h. */
#include "../populated.h"

#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>
#include <unistd.h>

#include "pagemap_scan.h"

/* /proc/pid/pagemap entry bits (Documentation/admin-guide/mm/pagemap.rst). */
#define PM_PRESENT (1ull << 63)
#define PM_SWAPPED (1ull << 62)

/* Ranges per PAGEMAP_SCAN call, entries per pagemap read: bounded stack use. */
#define SCAN_VEC 128
#define READ_ENTRIES 512

static uint64_t host_page(void)
{
	long p = sysconf(_SC_PAGESIZE);

	return p > 0 ? (uint64_t)p : 4096;
}

/* ---- smaps ---------------------------------------------------------------- */

struct vma {
	uint64_t start, end;
	bool private_anon;
	bool uffd; /* registered for missing or minor faults */
};

/* "start-end perms offset dev inode [path]"; false for a field line. */
static bool parse_vma_header(const char *line, struct vma *v)
{
	unsigned long long start, end, off, inode;
	char perms[8], path[32] = "";
	unsigned maj, min;
	int n = sscanf(line, "%llx-%llx %7s %llx %x:%x %llu %31s", &start, &end, perms, &off, &maj,
		       &min, &inode, path);

	if (n < 7)
		return false;
	v->start = start;
	v->end = end;
	/* MAP_PRIVATE|MAP_ANONYMOUS|MAP_HUGETLB shows as this pseudo file. */
	v->private_anon = perms[3] == 'p' && (inode == 0 || !strcmp(path, "/anon_hugepage"));
	v->uffd = false;
	return true;
}

/* "VmFlags: rd wr mr mw me ac um" -> uffd missing ("um") or minor ("ui"). */
static bool vmflags_uffd(const char *line)
{
	return strstr(line, " um") || strstr(line, " ui");
}

struct coverage {
	uint64_t start, end, next; /* next: first byte not yet covered */
	bool ok;
};

/* Fold one finished VMA into the coverage of [start, end). */
static void cover(struct coverage *c, const struct vma *v)
{
	if (v->end <= c->start || v->start >= c->end || !c->ok)
		return;
	if (v->start > c->next || !v->private_anon || v->uffd)
		c->ok = false; /* a gap, or a mapping whose holes are not zeros */
	else if (v->end > c->next)
		c->next = v->end;
}

int squib_populated_region_skippable(const void *addr, size_t len, bool *ok)
{
	struct coverage c = {(uintptr_t)addr, (uintptr_t)addr + len, (uintptr_t)addr, true};
	FILE *f = fopen("/proc/self/smaps", "re");
	struct vma v = {0}, cur;
	bool have = false;
	char *line = NULL;
	size_t cap = 0;

	*ok = false;
	if (!f)
		return -errno;
	while (getline(&line, &cap, f) > 0) {
		if (parse_vma_header(line, &cur)) {
			if (have)
				cover(&c, &v);
			v = cur;
			have = true;
			if (v.start >= c.end)
				break; /* VMAs are listed by address: nothing further overlaps */
		} else if (have && !strncmp(line, "VmFlags:", 8)) {
			v.uffd = vmflags_uffd(line);
		}
	}
	if (have && v.start < c.end)
		cover(&c, &v);
	free(line);
	fclose(f);
	*ok = c.ok && c.next >= c.end;
	return 0;
}

/* ---- PAGEMAP_SCAN ---------------------------------------------------------- */

static int scan_walk(int fd, uint64_t start, uint64_t end, squib_populated_fn fn, void *ctx)
{
	struct page_region vec[SCAN_VEC];
	struct pm_scan_arg arg = {
		.size = sizeof(arg),
		.start = start,
		.end = end,
		.vec = (uintptr_t)vec,
		.vec_len = SCAN_VEC,
		/* Present or swapped, and not the shared zero page. */
		.category_inverted = PAGE_IS_PFNZERO,
		.category_mask = PAGE_IS_PFNZERO,
		.category_anyof_mask = PAGE_IS_PRESENT | PAGE_IS_SWAPPED,
		.return_mask = PAGE_IS_PRESENT | PAGE_IS_SWAPPED,
	};

	while (arg.start < end) {
		int n = ioctl(fd, PAGEMAP_SCAN, &arg), rc;

		if (n < 0 && errno == EINTR)
			continue;
		if (n < 0)
			return -errno;
		for (int i = 0; i < n; i++)
			if ((rc = fn(ctx, vec[i].start, vec[i].end)))
				return rc;
		/* walk_end is where the kernel stopped: end, or where vec filled up. */
		if (arg.walk_end <= arg.start)
			return -EIO; /* no progress: never spin */
		arg.start = arg.walk_end;
	}
	return 0;
}

/* ---- pagemap entries ----------------------------------------------------- */

struct run {
	uint64_t start, end; /* pending populated run; empty when start == end */
};

static int run_add(struct run *r, uint64_t addr, uint64_t hp, squib_populated_fn fn, void *ctx)
{
	int rc;

	if (r->end == addr && r->start != r->end) {
		r->end += hp;
		return 0;
	}
	if (r->start != r->end && (rc = fn(ctx, r->start, r->end)))
		return rc;
	r->start = addr;
	r->end = addr + hp;
	return 0;
}

static int read_walk(int fd, uint64_t start, uint64_t end, squib_populated_fn fn, void *ctx)
{
	uint64_t entries[READ_ENTRIES], hp = host_page(), addr = start;
	struct run r = {0, 0};
	int rc;

	while (addr < end) {
		uint64_t n = (end - addr) / hp;
		ssize_t got;

		if (n > READ_ENTRIES)
			n = READ_ENTRIES;
		got = pread(fd, entries, n * 8, (off_t)(addr / hp * 8));
		if (got < 0 && errno == EINTR)
			continue;
		if (got < 0)
			return -errno;
		if (got < 8)
			return -EIO;
		for (uint64_t i = 0; i < (uint64_t)got / 8; i++, addr += hp)
			if ((entries[i] & (PM_PRESENT | PM_SWAPPED)) &&
			    (rc = run_add(&r, addr, hp, fn, ctx)))
				return rc;
	}
	return r.start != r.end ? fn(ctx, r.start, r.end) : 0;
}

struct squib_populated {
	int pagemap_fd;
};

int squib_populated_open(struct squib_populated **out)
{
	struct squib_populated *p = malloc(sizeof(*p));

	*out = NULL;
	if (!p)
		return -ENOMEM;
	p->pagemap_fd = open("/proc/self/pagemap", O_RDONLY | O_CLOEXEC);
	if (p->pagemap_fd < 0) {
		int e = errno;

		free(p);
		return -e;
	}
	*out = p;
	return 0;
}

void squib_populated_close(struct squib_populated *p)
{
	if (!p)
		return;
	close(p->pagemap_fd);
	free(p);
}

int squib_populated_walk(struct squib_populated *p, enum squib_memfile_detect method,
			 const void *addr, size_t len, squib_populated_fn fn, void *ctx)
{
	uint64_t hp = host_page();
	uint64_t start = (uintptr_t)addr & ~(hp - 1);
	uint64_t end = ((uintptr_t)addr + len + hp - 1) & ~(hp - 1);

	if (!len)
		return 0;
	if (method == SQUIB_DETECT_PAGEMAP_SCAN)
		return scan_walk(p->pagemap_fd, start, end, fn, ctx);
	if (method == SQUIB_DETECT_PAGEMAP_READ)
		return read_walk(p->pagemap_fd, start, end, fn, ctx);
	return -EINVAL;
}

static int ignore_range(void *ctx, uint64_t start, uint64_t end)
{
	(void)ctx;
	(void)start;
	(void)end;
	return 0;
}

int squib_populated_probe(struct squib_populated *p, enum squib_memfile_detect method)
{
	uint64_t here = 1; /* on a populated page: the stack in use */

	return squib_populated_walk(p, method, &here, sizeof(here), ignore_range, NULL);
}
