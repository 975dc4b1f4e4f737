/* SPDX-License-Identifier: Apache-2.0 */
/*
 * Live memory capture: guest RAM write-protected with a synchronous
 * userfaultfd, a view of the pause instant filled on demand. live.h has the
 * scheme; docs/DESIGN.md "Live snapshots" the reasoning.
 */
#include "../live.h"

#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <linux/userfaultfd.h>
#include <poll.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stdlib.h>
#include <string.h>
#include <sys/eventfd.h>
#include <sys/ioctl.h>
#include <sys/mman.h>
#include <unistd.h>

#include "../memfile_internal.h"
#include "pagemap_scan.h"
#include "uffd.h"

/* Host pages the handler copies per fault: a writer's read takes a large
 * batch (few round trips), a guest's write a small one (a short wait). */
#define VIEW_BATCH_PAGES 512u
#define WP_BATCH_PAGES	 16u
/* Host pages the writer claims at once on the claim path (a multiple of
 * WP_BATCH_PAGES, so a guest write's batch lies in one claimed block). */
#define CLAIM_PAGES 512u

struct live_region {
	uint8_t *guest;
	uint8_t *view;
	uint64_t size, pages;
	uint64_t *done;	     /* copied into the view (and unprotected) */
	uint64_t *populated; /* had data at the freeze (PAGEMAP_SCAN), else NULL */
	uint64_t *direct;    /* written from guest RAM by the claim path: never in the view */
	bool guest_registered, view_registered;
};

struct squib_live {
	int uffd, efd;
	int pagemap; /* /proc/self/pagemap: which pages are still protected */
	uint64_t hp;
	uint32_t count;
	struct live_region *r;
	struct squib_memfile_source_region *view_src;
	pthread_t thread;
	bool thread_started;
	/* Before the freeze a guest write only lifts the protection (nothing is
	 * copied: the pause has not happened yet); after it, the copy comes first.
	 * The handler serves each message under mu, so the freeze sees none half done. */
	pthread_mutex_t mu;
	bool frozen;
	/* The writer's claimed block [claim_p0, claim_p1) of region claim_region:
	 * a guest write there is left waiting until the writer has written it
	 * (live_release's unprotect wakes it); the handler serves others meanwhile. */
	bool claim_active;
	uint32_t claim_region;
	uint64_t claim_p0, claim_p1;
	struct squib_memfile_populated pop; /* walks populated[], once every region has one */
	atomic_int err;			    /* the handler's first errno, 0 while fine */
	const char *err_what;
	uint64_t err_addr;
	struct squib_live_stats st; /* the handler's; read after the join */
};

static bool bit(const uint64_t *w, uint64_t i)
{
	return (w[i / 64] >> (i % 64)) & 1;
}

static void set_bit(uint64_t *w, uint64_t i)
{
	w[i / 64] |= 1ull << (i % 64);
}

/* ---- the handler ---------------------------------------------------------------- */

/* UFFDIO_COPY (src non-NULL) or UFFDIO_ZEROPAGE of len bytes at dst, waking
 * the waiters; a page installed meanwhile (EEXIST) is skipped. 0 or errno. */
static int install(struct squib_live *l, uint8_t *dst, const uint8_t *src, uint64_t len)
{
	while (len) {
		int64_t got;
		int rc;

		if (src) {
			struct uffdio_copy c = {
			    .dst = (uintptr_t)dst, .src = (uintptr_t)src, .len = len};

			rc = ioctl(l->uffd, UFFDIO_COPY, &c);
			got = c.copy;
		} else {
			struct uffdio_zeropage z = {.range = {(uintptr_t)dst, len}};

			rc = ioctl(l->uffd, UFFDIO_ZEROPAGE, &z);
			got = z.zeropage;
		}
		if (rc && errno != EAGAIN && errno != EEXIST)
			return errno;
		if (!rc && got <= 0)
			return EIO; /* the kernel claims success for nothing: never loop on it */
		if (got <= 0)
			got = rc && errno == EEXIST ? (int64_t)l->hp : 0;
		dst += got;
		if (src)
			src += got;
		len -= (uint64_t)got;
	}
	return 0;
}

static int unprotect(struct squib_live *l, uint8_t *addr, uint64_t len)
{
	struct uffdio_writeprotect wp = {.range = {(uintptr_t)addr, len}, .mode = 0};

	return ioctl(l->uffd, UFFDIO_WRITEPROTECT, &wp) ? errno : 0;
}

/* Pages [p, q) of region r, none done, all with data at the pause or none: into the view. */
static int copy_run(struct squib_live *l, struct live_region *r, uint64_t p, uint64_t q, bool data,
		    bool wp)
{
	uint64_t off = p * l->hp, len = (q - p) * l->hp;
	int e = install(l, r->view + off, data ? r->guest + off : NULL, len);

	if (e)
		return e;
	for (uint64_t i = p; i < q; i++)
		set_bit(r->done, i);
	if (data) {
		l->st.pages_copied += q - p;
		l->st.pages_copied_on_wp += wp ? q - p : 0;
	} else {
		l->st.pages_zero += q - p;
	}
	return 0;
}

/* Pagemap's uffd-wp bit (Documentation/admin-guide/mm/pagemap.rst). */
#define PM_UFFD_WP (1ull << 57)

/*
 * Which of pages [b0, b1) had data at the pause: exactly those still
 * write-protected now. begin protected every page that had data (a present
 * or swapped page keeps the bit); only the handler lifts it, after the copy;
 * an empty page gets no bit (no WP_UNPOPULATED markers), and whatever the
 * guest puts there later is not the pause's. If pagemap cannot be read every
 * page is copied, which is right too, only dearer.
 */
static void protected_pages(struct squib_live *l, struct live_region *r, uint64_t b0, uint64_t b1,
			    uint64_t *ent)
{
	uint64_t first = ((uintptr_t)r->guest / l->hp + b0) * 8;
	size_t len = (size_t)(b1 - b0) * 8;

	if (l->pagemap < 0 || pread(l->pagemap, ent, len, (off_t)first) != (ssize_t)len)
		for (uint64_t i = 0; i < b1 - b0; i++)
			ent[i] = PM_UFFD_WP;
}

/*
 * Copy the batch of `batch` pages holding page p into the view, then lift the
 * guest's protection of it: never the other way round, so no write can reach
 * a page the view does not hold yet.
 */
static int serve(struct squib_live *l, struct live_region *r, uint64_t p, uint64_t batch, bool wp)
{
	uint64_t b0 = p / batch * batch, b1 = b0 + batch < r->pages ? b0 + batch : r->pages;
	uint64_t ent[VIEW_BATCH_PAGES], i = b0;
	int e;

	if (!wp && bit(r->direct, p))
		return EFAULT; /* written from guest RAM, never copied: read each page once */
	protected_pages(l, r, b0, b1, ent);
	while (i < b1) {
		uint64_t j = i + 1;
		bool data = ent[i - b0] & PM_UFFD_WP;

		if (bit(r->done, i)) {
			i++;
			continue;
		}
		while (j < b1 && !bit(r->done, j) && !(ent[j - b0] & PM_UFFD_WP) == !data)
			j++;
		if ((e = copy_run(l, r, i, j, data, wp)))
			return e;
		i = j;
	}
	if (wp) /* lifting it also wakes the guest's write */
		return unprotect(l, r->guest + b0 * l->hp, (b1 - b0) * l->hp);
	/* A writer's read: guest RAM stays protected (each lift costs KVM an MMU
	 * invalidation; a later guest write finds its page done and only lifts).
	 * Wake a writer that faulted on pages installed before its message was read. */
	{
		struct uffdio_range w = {(uintptr_t)(r->view + b0 * l->hp), (b1 - b0) * l->hp};

		return ioctl(l->uffd, UFFDIO_WAKE, &w) ? errno : 0;
	}
}

/* After an error nothing may wait on us: unregister everything (waking every
 * waiter: guest writes proceed, view reads see zeros - the image is void). */
static void fail_open(struct squib_live *l, int e, const char *what, uint64_t addr)
{
	if (!atomic_load_explicit(&l->err, memory_order_relaxed)) {
		l->err_what = what; /* published by the store below */
		l->err_addr = addr;
		atomic_store(&l->err, e ? e : EIO);
	}
	for (uint32_t i = 0; i < l->count; i++) {
		struct live_region *r = &l->r[i];
		struct uffdio_range g = {(uintptr_t)r->guest, r->size},
				    v = {(uintptr_t)r->view, r->size};

		if (r->guest_registered && !ioctl(l->uffd, UFFDIO_UNREGISTER, &g))
			r->guest_registered = false;
		if (r->view_registered && !ioctl(l->uffd, UFFDIO_UNREGISTER, &v))
			r->view_registered = false;
	}
}

/* Before the freeze: let the write through; the freeze protects the page again. */
static int let_through(struct squib_live *l, struct live_region *r, uint64_t p)
{
	uint64_t b0 = p / WP_BATCH_PAGES * WP_BATCH_PAGES;
	uint64_t n = b0 + WP_BATCH_PAGES < r->pages ? WP_BATCH_PAGES : r->pages - b0;

	return unprotect(l, r->guest + b0 * l->hp, n * l->hp);
}

/* A guest write to the block the writer is writing from guest RAM: its
 * bytes must reach the file unchanged, so the write is left waiting; the
 * release lifts the block's protection, which wakes it. */
static bool claimed_by_writer(const struct squib_live *l, uint32_t region, uint64_t p)
{
	return l->claim_active && l->claim_region == region && p >= l->claim_p0 && p < l->claim_p1;
}

static void on_fault(struct squib_live *l, const struct uffd_msg *m)
{
	uint64_t a = m->arg.pagefault.address;
	bool wp = m->arg.pagefault.flags & UFFD_PAGEFAULT_FLAG_WP;

	if (!l->frozen) {
		for (uint32_t i = 0; i < l->count; i++) {
			struct live_region *r = &l->r[i];

			if (a >= (uintptr_t)r->guest && a - (uintptr_t)r->guest < r->size) {
				int e = let_through(l, r, (a - (uintptr_t)r->guest) / l->hp);

				if (e)
					fail_open(l, e, "a guest write before the pause", a);
				return;
			}
		}
	}

	for (uint32_t i = 0; i < l->count; i++) {
		struct live_region *r = &l->r[i];
		int e;

		if (a >= (uintptr_t)r->guest && a - (uintptr_t)r->guest < r->size) {
			l->st.wp_faults++;
			if (claimed_by_writer(l, i, (a - (uintptr_t)r->guest) / l->hp)) {
				l->st.wp_deferred++;
				return;
			}
			e = serve(l, r, (a - (uintptr_t)r->guest) / l->hp, WP_BATCH_PAGES, wp);
		} else if (a >= (uintptr_t)r->view && a - (uintptr_t)r->view < r->size) {
			l->st.view_faults++;
			e = serve(l, r, (a - (uintptr_t)r->view) / l->hp, VIEW_BATCH_PAGES, false);
		} else {
			continue;
		}
		if (e)
			fail_open(l, e, wp ? "a guest write" : "a view read", a);
		return;
	}
	fail_open(l, EFAULT, "a fault outside every region", a);
}

/* Read what the uffd holds; false once it is drained. */
static bool drain(struct squib_live *l)
{
	struct uffd_msg msg[16];
	ssize_t n = read(l->uffd, msg, sizeof(msg));

	if (n < 0) {
		if (errno != EAGAIN && errno != EINTR) {
			pthread_mutex_lock(&l->mu);
			fail_open(l, errno, "reading the userfaultfd", 0);
			pthread_mutex_unlock(&l->mu);
		}
		return false;
	}
	pthread_mutex_lock(&l->mu);
	for (size_t i = 0; i < (size_t)n / sizeof(msg[0]); i++)
		if (msg[i].event == UFFD_EVENT_PAGEFAULT)
			on_fault(l, &msg[i]);
	pthread_mutex_unlock(&l->mu);
	return true;
}

static void *handler(void *arg)
{
	struct squib_live *l = arg;

	for (;;) {
		struct pollfd pf[2] = {{.fd = l->uffd, .events = POLLIN},
				       {.fd = l->efd, .events = POLLIN}};

		if (poll(pf, 2, -1) < 0) {
			if (errno == EINTR)
				continue;
			pthread_mutex_lock(&l->mu);
			fail_open(l, errno, "poll", 0);
			pthread_mutex_unlock(&l->mu);
			return NULL;
		}
		if (pf[0].revents & POLLIN)
			while (drain(l))
				;
		if (pf[1].revents)
			return NULL;
	}
}

/* ---- setup ------------------------------------------------------------------------ */

static int protect(struct squib_live *l, struct live_region *r, struct squib_error_detail *d)
{
	struct uffdio_register g = {.range = {(uintptr_t)r->guest, r->size},
				    .mode = UFFDIO_REGISTER_MODE_WP};
	struct uffdio_register v = {.range = {(uintptr_t)r->view, r->size},
				    .mode = UFFDIO_REGISTER_MODE_MISSING};
	struct uffdio_writeprotect wp = {.range = g.range, .mode = UFFDIO_WRITEPROTECT_MODE_WP};

	if (ioctl(l->uffd, UFFDIO_REGISTER, &g))
		return squib_fail_errno_msg(
		    d, errno == EBUSY ? SQUIB_E_BUSY : SQUIB_E_IO, errno,
		    "registering guest RAM at %p for write-protect%s", (void *)r->guest,
		    errno == EBUSY ? " (another userfaultfd serves it)" : "");
	r->guest_registered = true;
	if (!(g.ioctls & (1ull << _UFFDIO_WRITEPROTECT)))
		return squib_fail_errno_msg(d, SQUIB_E_IO, EOPNOTSUPP,
					    "guest RAM at %p cannot be write-protected",
					    (void *)r->guest);
	if (ioctl(l->uffd, UFFDIO_REGISTER, &v))
		return squib_fail_errno_msg(d, SQUIB_E_IO, errno, "registering the live view");
	r->view_registered = true;
	if (ioctl(l->uffd, UFFDIO_WRITEPROTECT, &wp))
		return squib_fail_errno_msg(d, SQUIB_E_IO, errno,
					    "write-protecting guest RAM at %p", (void *)r->guest);
	return 0;
}

static int map_region(struct squib_live *l, struct live_region *r,
		      const struct squib_memfile_source_region *src, struct squib_error_detail *d)
{
	uint64_t words;

	r->guest = (uint8_t *)(uintptr_t)src->host; /* only read, and protected */
	r->size = src->size;
	r->pages = src->size / l->hp;
	if ((uintptr_t)r->guest % l->hp || r->size % l->hp || !r->pages)
		return squib_fail_msg(d, SQUIB_E_INVALID_ARGUMENT,
				      "live save: region %p + 0x%" PRIx64
				      " is not host-page aligned",
				      (void *)r->guest, r->size);
	words = (r->pages + 63) / 64;
	r->view = mmap(NULL, r->size, PROT_READ | PROT_WRITE,
		       MAP_PRIVATE | MAP_ANONYMOUS | MAP_NORESERVE, -1, 0);
	if (r->view == MAP_FAILED) {
		r->view = NULL;
		return squib_fail_errno_msg(d, SQUIB_E_NOMEM, errno, "mapping the live view");
	}
	if (!(r->done = calloc(words, 8)) || !(r->direct = calloc(words, 8)))
		return squib_fail(d, SQUIB_E_NOMEM);
	return 0;
}

static int open_uffd(struct squib_live *l, struct squib_error_detail *d)
{
	struct uffdio_api api = {.api = UFFD_API, .features = UFFD_FEATURE_PAGEFAULT_FLAG_WP};

	/* Not user-mode-only: KVM's get_user_pages faults must wait for us too. */
	if ((l->uffd = squib_uffd_open(false)) < 0)
		return squib_fail_errno_msg(d, SQUIB_E_IO, errno, "opening a userfaultfd");
	if (ioctl(l->uffd, UFFDIO_API, &api))
		return squib_fail_errno_msg(d, SQUIB_E_IO, errno, "UFFDIO_API (write-protect)");
	if ((l->efd = eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK)) < 0)
		return squib_fail_errno_msg(d, SQUIB_E_IO, errno, "eventfd");
	return 0;
}

static int setup(struct squib_live *l, const struct squib_memfile_source_region *regions,
		 struct squib_error_detail *d)
{
	int rc = 0;

	l->pagemap = open("/proc/self/pagemap", O_RDONLY | O_CLOEXEC);
	for (uint32_t i = 0; !rc && i < l->count; i++) {
		rc = map_region(l, &l->r[i], &regions[i], d);
		if (!rc)
			rc = protect(l, &l->r[i], d);
		l->view_src[i] = regions[i];
		l->view_src[i].host = l->r[i].view;
	}
	if (!rc && (errno = pthread_create(&l->thread, NULL, handler, l)))
		rc = squib_fail_errno_msg(d, SQUIB_E_IO, errno, "starting the live handler");
	l->thread_started = !rc;
	return rc;
}

int squib_live_begin(const struct squib_memfile_source_region *regions, uint32_t count,
		     struct squib_live **out, struct squib_error_detail *d)
{
	struct squib_live *l;
	int rc;

	*out = NULL;
	if (!regions || !count)
		return squib_fail_msg(d, SQUIB_E_INVALID_ARGUMENT, "live save: no memory regions");
	if (!(l = calloc(1, sizeof(*l))))
		return squib_fail(d, SQUIB_E_NOMEM);
	l->uffd = l->efd = l->pagemap = -1;
	pthread_mutex_init(&l->mu, NULL);
	l->hp = (uint64_t)sysconf(_SC_PAGESIZE);
	l->count = count;
	l->r = calloc(count, sizeof(*l->r));
	l->view_src = calloc(count, sizeof(*l->view_src));
	rc = !l->r || !l->view_src ? squib_fail(d, SQUIB_E_NOMEM) : open_uffd(l, d);
	if (!rc)
		rc = setup(l, regions, d);
	if (rc) {
		squib_live_end(l, NULL);
		return rc;
	}
	*out = l;
	return 0;
}

/* ---- the freeze ------------------------------------------------------------------ */

#define SCAN_VEC 256

/* The whole region again: every page with data gets the bit (Linux < 6.7). */
static int protect_all(struct squib_live *l, struct live_region *r)
{
	struct uffdio_writeprotect wp = {.range = {(uintptr_t)r->guest, r->size},
					 .mode = UFFDIO_WRITEPROTECT_MODE_WP};

	free(r->populated); /* nothing known: the writer reads every page */
	r->populated = NULL;
	return ioctl(l->uffd, UFFDIO_WRITEPROTECT, &wp) ? errno : 0;
}

/* One range of the scan: note its pages, and protect them again if written. */
static int scanned(struct squib_live *l, struct live_region *r, const struct page_region *v)
{
	struct uffdio_writeprotect wp = {.range = {v->start, v->end - v->start},
					 .mode = UFFDIO_WRITEPROTECT_MODE_WP};
	uint64_t base = (uintptr_t)r->guest;

	for (uint64_t a = v->start; a < v->end; a += l->hp)
		set_bit(r->populated, (a - base) / l->hp);
	if (!(v->categories & PAGE_IS_WRITTEN))
		return 0;
	return ioctl(l->uffd, UFFDIO_WRITEPROTECT, &wp) ? errno : 0;
}

/*
 * Protect again what lost its bit since begin: the pages the guest wrote
 * (let through) and those it filled for the first time. PAGEMAP_SCAN finds
 * them (present or swapped without the uffd-wp bit: PAGE_IS_WRITTEN) in a
 * walk of the page tables that changes nothing, so the pause costs what the
 * guest wrote meanwhile, not what it holds. The same walk notes every page
 * with data, so the writer skips the rest unread.
 */
static int reprotect(struct squib_live *l, struct live_region *r)
{
	struct page_region vec[SCAN_VEC];
	uint64_t addr = (uintptr_t)r->guest, end = addr + r->size;

	if (l->pagemap < 0 || !(r->populated = calloc((r->pages + 63) / 64, 8)))
		return protect_all(l, r);
	while (addr < end) {
		struct pm_scan_arg a = {.size = sizeof(a),
					.start = addr,
					.end = end,
					.vec = (uintptr_t)vec,
					.vec_len = SCAN_VEC,
					.category_anyof_mask = PAGE_IS_PRESENT | PAGE_IS_SWAPPED,
					.return_mask = PAGE_IS_WRITTEN};
		long n = ioctl(l->pagemap, PAGEMAP_SCAN, &a);
		int e;

		if (n < 0 || a.walk_end <= addr || a.walk_end > end)
			return protect_all(l, r);
		for (long i = 0; i < n; i++)
			if ((e = scanned(l, r, &vec[i])))
				return e;
		addr = a.walk_end;
	}
	return 0;
}

/* The writer's populated ranges: those of the freeze, as view addresses. */
static int walk_populated(void *ctx, uint32_t region,
			  int (*fn)(void *fctx, uint64_t start, uint64_t end), void *fctx)
{
	struct squib_live *l = ctx;
	const struct live_region *r = &l->r[region];
	uint64_t p = 0, view = (uintptr_t)r->view;

	while (p < r->pages) {
		uint64_t q = p + 1;
		int rc;

		if (!(p % 64) && !r->populated[p / 64]) {
			p += 64;
			continue;
		}
		if (!bit(r->populated, p)) {
			p++;
			continue;
		}
		while (q < r->pages && bit(r->populated, q))
			q++;
		if ((rc = fn(fctx, view + p * l->hp, view + q * l->hp)))
			return rc;
		p = q;
	}
	return 0;
}

/* ---- the claim path ---------------------------------------------------------------- */

/*
 * The writer is about to write block [p0, p1) of a region. Pages the guest
 * wrote first are in the view (done): staged, read there. Those with data at
 * the freeze and still protected are unchanged since: read straight from guest
 * RAM, and a guest write to them waits (claimed_by_writer) until live_release.
 * Pages with data at the freeze that lost it since (discarded) read as zeros
 * from the view, as the handler would serve them.
 */
static int claim_locked(struct squib_live *l, struct live_region *r, uint64_t p0, uint64_t p1,
			uint64_t *staged)
{
	uint64_t ent[CLAIM_PAGES];
	int e = 0;

	protected_pages(l, r, p0, p1, ent);
	for (uint64_t i = p0; !e && i < p1; i++) {
		if (bit(r->done, i)) {
			set_bit(staged, i - p0);
		} else if (bit(r->populated, i) && !(ent[i - p0] & PM_UFFD_WP)) {
			e = copy_run(l, r, i, i + 1, false, false);
			set_bit(staged, i - p0);
		}
	}
	return e;
}

static int live_claim(void *ctx, uint32_t region, uint64_t off, const uint8_t **direct,
		      uint64_t *staged)
{
	struct squib_live *l = ctx;
	struct live_region *r;
	uint64_t p0 = off / l->hp, p1;
	int e;

	memset(staged, 0, CLAIM_PAGES / 8);
	*direct = NULL;
	if (region >= l->count || off % (CLAIM_PAGES * l->hp) || p0 >= l->r[region].pages)
		return -EINVAL;
	r = &l->r[region];
	p1 = p0 + CLAIM_PAGES < r->pages ? p0 + CLAIM_PAGES : r->pages;
	*direct = r->guest;
	pthread_mutex_lock(&l->mu);
	e = atomic_load(&l->err) ? EIO : !l->frozen || l->claim_active ? EINVAL : 0;
	if (!e)
		e = claim_locked(l, r, p0, p1, staged);
	if (!e) {
		l->claim_active = true;
		l->claim_region = region;
		l->claim_p0 = p0;
		l->claim_p1 = p1;
	}
	pthread_mutex_unlock(&l->mu);
	return -e;
}

/* The claimed block is in the file: mark it done and lift its protection, so
 * the guest stops faulting behind the writer, and let waiting writes on. */
static int live_release(void *ctx)
{
	struct squib_live *l = ctx;
	int e = 0;

	pthread_mutex_lock(&l->mu);
	if (l->claim_active) {
		struct live_region *r = &l->r[l->claim_region];

		for (uint64_t i = l->claim_p0; i < l->claim_p1; i++)
			if (!bit(r->done, i)) {
				set_bit(r->done, i);
				set_bit(r->direct, i);
				l->st.pages_direct += bit(r->populated, i);
			}
		if (!atomic_load(&l->err))
			e = unprotect(l, r->guest + l->claim_p0 * l->hp,
				      (l->claim_p1 - l->claim_p0) * l->hp);
		if (e)
			fail_open(l, e, "lifting the protection of a written block",
				  (uintptr_t)r->guest + l->claim_p0 * l->hp);
		l->claim_active = false;
	}
	pthread_mutex_unlock(&l->mu);
	return -e;
}

int squib_live_freeze(struct squib_live *l, struct squib_error_detail *d)
{
	int e = 0;

	pthread_mutex_lock(&l->mu);
	for (uint32_t i = 0; !e && !atomic_load(&l->err) && i < l->count; i++)
		e = reprotect(l, &l->r[i]);
	l->frozen = !e && !atomic_load(&l->err);
	l->pop = (struct squib_memfile_populated){.walk = walk_populated,
						  .ctx = l,
						  .claim = live_claim,
						  .release = live_release,
						  .claim_bytes = CLAIM_PAGES * l->hp,
						  .claim_page = l->hp};
	for (uint32_t i = 0; i < l->count; i++)
		if (!l->r[i].populated)
			l->pop.walk = NULL;
	pthread_mutex_unlock(&l->mu);
	if (e)
		return squib_fail_errno_msg(d, SQUIB_E_IO, e, "write-protecting guest RAM again");
	return squib_live_error(l, d);
}

const struct squib_memfile_populated *squib_live_populated(const struct squib_live *l)
{
	return l->pop.walk ? &l->pop : NULL;
}

const struct squib_memfile_source_region *squib_live_view(const struct squib_live *l)
{
	return l->view_src;
}

int squib_live_error(const struct squib_live *l, struct squib_error_detail *d)
{
	int e = atomic_load(&l->err);

	if (!e)
		return 0;
	return squib_fail_errno_msg(d, SQUIB_E_MEMORY_IO, e,
				    "live save: serving %s at 0x%" PRIx64 " failed", l->err_what,
				    l->err_addr);
}

void squib_live_end(struct squib_live *l, struct squib_live_stats *st)
{
	if (!l)
		return;
	/* The handler first: from here on the registrations are ours alone. A
	 * guest write that faults meanwhile waits only until the unregister. */
	if (l->thread_started) {
		uint64_t one = 1;

		(void)!write(l->efd, &one, sizeof(one));
		pthread_join(l->thread, NULL);
	}
	/* Unregistering drops every protection left and wakes every waiter. */
	for (uint32_t i = 0; l->uffd >= 0 && i < l->count; i++) {
		struct uffdio_range g = {(uintptr_t)l->r[i].guest, l->r[i].size};

		if (l->r[i].guest_registered)
			(void)ioctl(l->uffd, UFFDIO_UNREGISTER, &g);
	}
	for (uint32_t i = 0; l->r && i < l->count; i++) {
		if (l->r[i].view)
			munmap(l->r[i].view, l->r[i].size);
		free(l->r[i].done);
		free(l->r[i].direct);
		free(l->r[i].populated);
	}
	if (st)
		*st = l->st;
	if (l->uffd >= 0)
		close(l->uffd);
	if (l->efd >= 0)
		close(l->efd);
	if (l->pagemap >= 0)
		close(l->pagemap);
	free(l->r);
	free(l->view_src);
	pthread_mutex_destroy(&l->mu);
	free(l);
}
