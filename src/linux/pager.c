/* SPDX-License-Identifier: Apache-2.0 */
/*
 * Lazy restore: the userfaultfd pager (squib/pager.h), a pure engine over
 * squib_page_source_ops (the file sources are format code, in the core:
 * page_source.c). One thread per pager polls the uffd and a shutdown
 * eventfd; faults are queued and served in arrival order, events (REMOVE)
 * handled as read; when nothing waits, the same thread runs the background
 * fill. Prefetch installs from the caller's thread; the source is shared
 * under src_lock.
 */
#include <squib/pager.h>

#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <linux/userfaultfd.h>
#include <poll.h>
#include <pthread.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <sys/eventfd.h>
#include <sys/ioctl.h>
#include <sys/syscall.h>
#include <time.h>
#include <unistd.h>

#include <squib/workset.h>

#include "../util.h"
#include "uffd.h"

#define DEFAULT_BATCH (64u << 10)
#define PENDING_MIN   64
/* Prefetch reads at most this much per chunk: a fault waits for one chunk's read at most. */
#define PREFETCH_CHUNK	 (1u << 20)
#define DEFAULT_FILL_MAX (2u << 20)
#define FILL_MAX_LIMIT	 (64u << 20)
/* EAGAIN retries of one prefetch chunk, PREFETCH_RETRY_US apart (about a second in all). */
#define PREFETCH_TRIES	  10000
#define PREFETCH_RETRY_US 100
#define RECORD_MIN	  256
/* Histogram: 128 buckets of 0.5 us up to 64 us, then one per octave. */
#define HIST_LINEAR  128
#define HIST_STEP_NS 500u

struct pending {
	uint64_t addr;
	uint64_t t0;
};

struct squib_pager {
	struct squib_pager_region *regions;
	uint32_t region_count;
	struct squib_page_source src;
	uint64_t ps; /* page size */
	uint64_t batch_pages;
	uint8_t *present; /* one flag per source page */
	uint8_t *buf;	  /* batch_pages * ps, the thread's read buffer */
	int uffd, efd;
	bool running, stopped;
	bool attached; /* the uffd came from another process: its registrations are not ours */
	pthread_t thread;
	struct pending *pend; /* queued faults: grows (one per blocked thread at most) */
	size_t npend, cap;
	bool release; /* options.release_when_complete */
	/* Under lock: a release began unregistering (a prefetch may fail now). */
	bool releasing;
	/* Background fill (pager thread only): cursor, chunk size, its buffer. */
	bool fill;
	uint32_t fill_region;
	uint64_t fill_rel, fill_pages, fill_max_pages;
	uint8_t *fill_buf;
	/* Asked between prefetch chunks: true ends the prefetch (squib_pager_set_prefetch_stop). */
	bool (*stop_fn)(void *ctx);
	void *stop_ctx;

	/* The source is read by the pager thread and by prefetching threads: one at a time. */
	pthread_mutex_t src_lock;

	pthread_mutex_t lock; /* guards everything below */
	bool record, rec_failed;
	struct squib_ws_run *rec; /* fault-driven installs, in order */
	uint64_t nrec, rec_cap;
	struct squib_pager_stats st;
	/* install() calls under way: a page another installer marked present on EEXIST may
	 * not be counted yet, so "complete" also waits for these */
	uint64_t installing;
	uint64_t hist[SQUIB_PAGER_HIST_BUCKETS];
	uint64_t max_ns;
	int err;
	struct squib_error_detail err_detail;
};

static uint64_t now_ns(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (uint64_t)ts.tv_sec * 1000000000u + (uint64_t)ts.tv_nsec;
}

/* ---- statistics ----------------------------------------------------------------------- */

static unsigned bucket_of(uint64_t ns)
{
	uint64_t lim = (uint64_t)HIST_LINEAR * HIST_STEP_NS;
	unsigned b = HIST_LINEAR;

	if (ns < lim)
		return (unsigned)(ns / HIST_STEP_NS);
	while (ns >= 2 * lim && b < SQUIB_PAGER_HIST_BUCKETS - 1) {
		lim *= 2;
		b++;
	}
	return b;
}

/* Middle of bucket b in microseconds. */
static double bucket_us(unsigned b)
{
	double lo;

	if (b < HIST_LINEAR)
		return (b + 0.5) * HIST_STEP_NS / 1000.0;
	lo = (double)HIST_LINEAR * HIST_STEP_NS / 1000.0;
	for (unsigned i = HIST_LINEAR; i < b; i++)
		lo *= 2;
	return lo * 1.5;
}

static double percentile(const uint64_t *h, uint64_t total, double q)
{
	uint64_t want = (uint64_t)(q * (double)total), seen = 0;

	if (!total)
		return 0;
	if (want >= total)
		want = total - 1;
	for (unsigned b = 0; b < SQUIB_PAGER_HIST_BUCKETS; b++) {
		seen += h[b];
		if (seen > want)
			return bucket_us(b);
	}
	return 0;
}

void squib_pager_stats(const struct squib_pager *cp, struct squib_pager_stats *out)
{
	struct squib_pager *p = (struct squib_pager *)cp;
	uint64_t total = 0;

	memset(out, 0, sizeof(*out));
	if (!p)
		return;
	pthread_mutex_lock(&p->lock);
	*out = p->st;
	for (unsigned b = 0; b < SQUIB_PAGER_HIST_BUCKETS; b++)
		total += p->hist[b];
	out->median_us = percentile(p->hist, total, 0.5);
	out->p99_us = percentile(p->hist, total, 0.99);
	out->max_us = (double)p->max_ns / 1000.0;
	out->complete = out->pages_present == out->page_count && !p->installing;
	pthread_mutex_unlock(&p->lock);
}

int squib_pager_error(const struct squib_pager *cp, struct squib_error_detail *d)
{
	struct squib_pager *p = (struct squib_pager *)cp;
	int err;

	if (!p)
		return squib_fail_msg(d, SQUIB_E_INVALID_ARGUMENT, "NULL pager");
	pthread_mutex_lock(&p->lock);
	err = p->err;
	if (err && d)
		*d = p->err_detail;
	pthread_mutex_unlock(&p->lock);
	return err;
}

/* Record an error (the first one is kept); called without the lock. */
static void record_error(struct squib_pager *p, int code, const struct squib_error_detail *d)
{
	pthread_mutex_lock(&p->lock);
	p->st.errors++;
	if (!p->err) {
		p->err = code;
		if (d)
			p->err_detail = *d;
		else
			p->err_detail.code = code;
	}
	pthread_mutex_unlock(&p->lock);
}

static void record_errno(struct squib_pager *p, int e, const char *what, uint64_t addr)
{
	struct squib_error_detail d;

	squib_fail_msg(&d, SQUIB_E_MEMORY_IO, "pager: %s at 0x%" PRIx64 ": %s", what, addr,
		       strerror(e));
	d.os_errno = e;
	record_error(p, SQUIB_E_MEMORY_IO, &d);
}

/* Mark `count` pages from source page `first` present (or not); p->lock held. */
static void mark_locked(struct squib_pager *p, uint64_t first, uint64_t count, bool on)
{
	for (uint64_t k = first; k < first + count && k < p->src.page_count; k++) {
		if (p->present[k] != on)
			p->st.pages_present += on ? 1 : (uint64_t)-1;
		p->present[k] = on;
	}
}

static void mark(struct squib_pager *p, uint64_t first, uint64_t count, bool on)
{
	pthread_mutex_lock(&p->lock);
	mark_locked(p, first, count, on);
	pthread_mutex_unlock(&p->lock);
}

/* ---- recording (under p->lock)
 * ------------------------------------------------------------------------- */

/* Room for one more recorded run (p->lock held); false when full or out of memory. */
static bool record_room(struct squib_pager *p)
{
	uint64_t cap = p->rec_cap ? p->rec_cap * 2 : RECORD_MIN;
	struct squib_ws_run *v;

	if (p->nrec < p->rec_cap)
		return true;
	if (p->rec_cap >= SQUIB_WS_MAX_RUNS)
		return false; /* full: the prefix is kept */
	if (cap > SQUIB_WS_MAX_RUNS)
		cap = SQUIB_WS_MAX_RUNS;
	if (!(v = realloc(p->rec, cap * sizeof(*v)))) {
		p->rec_failed = true;
		return false;
	}
	p->rec = v;
	p->rec_cap = cap;
	return true;
}

/* Append a fault-driven install of [first, first + n), merged with the run it continues
 * (p->lock held). */
static void record_locked(struct squib_pager *p, uint64_t first, uint64_t n)
{
	struct squib_ws_run *last = p->nrec ? &p->rec[p->nrec - 1] : NULL;

	if (!p->record || p->rec_failed)
		return;
	if (last && last->first_page + last->page_count == first)
		last->page_count += n;
	else if (record_room(p))
		p->rec[p->nrec++] = (struct squib_ws_run){first, n};
}

/* ---- installing pages ---------------------------------------------------------------- */

/* What made an install happen (which counter it adds to). */
enum by { BY_FAULT, BY_PREFETCH, BY_FILL };

static void count_installed(struct squib_pager *p, uint64_t first, uint64_t n, bool copied,
			    enum by by)
{
	pthread_mutex_lock(&p->lock);
	mark_locked(p, first, n, true);
	if (copied)
		p->st.pages_copied += n;
	else
		p->st.pages_zeroed += n;
	if (by == BY_PREFETCH)
		p->st.pages_prefetched += n;
	else if (by == BY_FILL)
		p->st.pages_filled += n;
	else
		record_locked(p, first, n);
	pthread_mutex_unlock(&p->lock);
}

static const struct squib_pager_region *region_of(const struct squib_pager *p, uint64_t addr)
{
	for (uint32_t i = 0; i < p->region_count; i++) {
		uint64_t h = (uint64_t)(uintptr_t)p->regions[i].host;

		if (addr >= h && addr - h < p->regions[i].size)
			return &p->regions[i];
	}
	return NULL;
}

/* One UFFDIO_COPY (src non-NULL) or UFFDIO_ZEROPAGE without waking; *got: bytes installed. */
static int install_once(struct squib_pager *p, uint64_t addr, const uint8_t *src, uint64_t len,
			int64_t *got)
{
	int rc;

	if (src) {
		struct uffdio_copy c = {.dst = addr,
					.src = (uint64_t)(uintptr_t)src,
					.len = len,
					.mode = UFFDIO_COPY_MODE_DONTWAKE};

		rc = ioctl(p->uffd, UFFDIO_COPY, &c);
		*got = c.copy;
	} else {
		struct uffdio_zeropage z = {.range = {addr, len},
					    .mode = UFFDIO_ZEROPAGE_MODE_DONTWAKE};

		rc = ioctl(p->uffd, UFFDIO_ZEROPAGE, &z);
		*got = z.zeropage;
	}
	return rc;
}

/*
 * Install [addr, addr + len), whose first page is source page `page`, from
 * src (NULL: zeros), without waking. EEXIST pages are skipped. 0, -EAGAIN
 * (retry later), or -errno; *donep: the bytes from addr now present (all of
 * len on success); *newp (may be NULL): pages this call installed.
 */
static int install(struct squib_pager *p, uint64_t addr, const uint8_t *src, uint64_t len,
		   uint64_t page, enum by by, uint64_t *donep, uint64_t *newp)
{
	uint64_t done = 0, existing = 0, fresh = 0;
	int ret = 0;

	pthread_mutex_lock(&p->lock);
	p->installing++;
	pthread_mutex_unlock(&p->lock);
	while (done < len) {
		int64_t got;
		int rc = install_once(p, addr + done, src ? src + done : NULL, len - done, &got);
		int e = errno;

		if (got > 0) {
			uint64_t n = (uint64_t)got / p->ps;

			count_installed(p, page + done / p->ps, n, src != NULL, by);
			done += n * p->ps;
			fresh += n;
			if (!n) {
				ret = -EIO; /* less than a page: cannot happen */
				break;
			}
			continue;
		}
		if (!rc) {
			ret = -EIO;
			break;
		}
		if (e == EEXIST) {
			mark(p, page + done / p->ps, 1, true);
			existing++;
			done += p->ps;
			continue;
		}
		ret = -e;
		break;
	}
	pthread_mutex_lock(&p->lock);
	p->st.pages_existing += existing;
	p->installing--;
	pthread_mutex_unlock(&p->lock);
	*donep = done;
	if (newp)
		*newp = fresh;
	return ret;
}

/* Wake the threads faulting in [addr, addr + len): those whose page is still
 * missing fault again (a new message). 0 or the errno. */
static int wake(struct squib_pager *p, uint64_t addr, uint64_t len)
{
	struct uffdio_range r = {addr, len};

	return ioctl(p->uffd, UFFDIO_WAKE, &r) ? errno : 0;
}

/* Known present: installed here and no remove came since. */
static bool known(struct squib_pager *p, uint64_t page)
{
	bool v;

	pthread_mutex_lock(&p->lock);
	v = p->present[page];
	pthread_mutex_unlock(&p->lock);
	return v;
}

/* The same-kind pages after region-relative page `from` that are not known present, up to `lim`. */
static uint64_t run_end(struct squib_pager *p, const struct squib_pager_region *r, uint64_t from,
			uint64_t lim, bool data)
{
	uint64_t hi = from + 1;

	while (hi < lim && !known(p, r->first_page + hi) &&
	       p->src.ops->present(p->src.ctx, r->first_page + hi) == data)
		hi++;
	return hi;
}

/* Read `count` present pages from `first` into buf (src_lock held); 0 or SQUIB_E_*. */
static int source_read(struct squib_pager *p, uint64_t first, uint64_t count, uint8_t *buf,
		       struct squib_error_detail *d)
{
	int rc;

	squib_error_clear(d);
	if ((rc = p->src.ops->read(p->src.ctx, first, count, buf, d))) /* never "retry" */
		return squib_backend_rc(rc, d, "page source: reading %" PRIu64 " pages at %" PRIu64,
					count, first);
	pthread_mutex_lock(&p->lock);
	p->st.bytes_read += count * p->ps;
	p->st.batches++;
	pthread_mutex_unlock(&p->lock);
	return 0;
}

/* ---- reading the record ---------------------------------------------------------------- */

int squib_pager_recorded(const struct squib_pager *cp, struct squib_workset *out,
			 struct squib_error_detail *d)
{
	struct squib_pager *p = (struct squib_pager *)cp;
	int rc = 0;

	if (!p || !out)
		return squib_fail_msg(d, SQUIB_E_INVALID_ARGUMENT, "pager: NULL argument");
	memset(out, 0, sizeof(*out));
	pthread_mutex_lock(&p->lock);
	if (!p->record)
		rc = squib_fail_msg(d, SQUIB_E_INVALID_ARGUMENT, "pager: not recording");
	else if (p->rec_failed)
		rc = squib_fail(d, SQUIB_E_NOMEM);
	else if (p->nrec && !(out->runs = malloc(p->nrec * sizeof(*out->runs))))
		rc = squib_fail(d, SQUIB_E_NOMEM);
	if (!rc) {
		if (p->nrec)
			memcpy(out->runs, p->rec, p->nrec * sizeof(*out->runs));
		out->run_count = p->nrec;
		out->page_size = p->ps;
		out->page_count = p->src.page_count;
	}
	pthread_mutex_unlock(&p->lock);
	return rc;
}

/* ---- serving a fault ----------------------------------------------------------------- */

static void account(struct squib_pager *p, uint64_t t0);

/*
 * The run to serve around region-relative page rel: pages of rel's kind not
 * known present, inside the batch window. src_lock held.
 */
static void fault_run(struct squib_pager *p, const struct squib_pager_region *r, uint64_t rel,
		      bool data, uint64_t *lop, uint64_t *hip)
{
	uint64_t rpages = r->size / p->ps, lo = rel;
	uint64_t wlo = rel / p->batch_pages * p->batch_pages;
	uint64_t whi = wlo + p->batch_pages < rpages ? wlo + p->batch_pages : rpages;

	while (lo > wlo && !known(p, r->first_page + lo - 1) &&
	       p->src.ops->present(p->src.ctx, r->first_page + lo - 1) == data)
		lo--;
	*lop = lo;
	/* The fault's own page is served even when known: the flag may be stale after a remove. */
	*hip = run_end(p, r, rel, whi, data);
}

/*
 * 0 served, -EAGAIN keep it queued, other: failed (recorded, dropped).
 * Pages are installed without waking (DONTWAKE), the counters updated, then
 * the range woken: a woken thread sees statistics that include its fault.
 */
static int serve(struct squib_pager *p, uint64_t addr, uint64_t t0)
{
	const struct squib_pager_region *r = region_of(p, addr);
	struct squib_error_detail d;
	uint64_t base, rel, lo, hi, first, done;
	bool data;
	int rc = 0, e;

	if (!r) {
		record_errno(p, EFAULT, "fault outside the pager's memory", addr);
		return -EFAULT;
	}
	base = (uint64_t)(uintptr_t)r->host;
	rel = (addr - base) / p->ps;
	memset(&d, 0, sizeof(d));
	pthread_mutex_lock(&p->src_lock);
	data = p->src.ops->present(p->src.ctx, r->first_page + rel);
	fault_run(p, r, rel, data, &lo, &hi);
	first = r->first_page + lo;
	if (data)
		rc = source_read(p, first, hi - lo, p->buf, &d);
	pthread_mutex_unlock(&p->src_lock);
	if (rc) {
		record_error(p, rc, &d);
		return rc;
	}
	rc = install(p, base + lo * p->ps, data ? p->buf : NULL, (hi - lo) * p->ps, first, BY_FAULT,
		     &done, NULL);
	if (rc && rc != -EAGAIN)
		record_errno(p, -rc, data ? "UFFDIO_COPY" : "UFFDIO_ZEROPAGE", addr);
	if (!rc)
		account(p, t0);
	/* Only what is present: a thread woken on a missing page would fault again at once. */
	if (done && (e = wake(p, base + lo * p->ps, done)))
		record_errno(p, e, "UFFDIO_WAKE", addr);
	return rc;
}

/* ---- prefetch -------------------------------------------------------------------------- */

/* One chunk: the same-kind run of missing pages from region-relative page k, below lim. */
struct chunk {
	const struct squib_pager_region *r;
	uint64_t k, lim;
	uint8_t *buf; /* room for lim - k pages */
	enum by by;
	int tries;	/* EAGAIN attempts before giving the chunk up */
	uint64_t pages; /* out: the run's length */
	uint64_t done;	/* out: pages from k now present */
	uint64_t fresh; /* out: pages this chunk installed */
	bool gave_up;	/* out: EAGAIN every time */
};

/* Install c->buf's data (or zeros) over the chunk, retrying EAGAIN c->tries times. 0 or -errno. */
static int put_chunk(struct squib_pager *p, struct chunk *c, bool data)
{
	uint64_t addr = (uint64_t)(uintptr_t)c->r->host + c->k * p->ps, len = c->pages * p->ps;
	uint64_t off = 0;
	int rc = -EAGAIN, e;

	for (int t = 0; t < c->tries && rc == -EAGAIN; t++) {
		uint64_t done, fresh;

		if (t) {
			pthread_mutex_lock(&p->lock);
			p->st.eagain++;
			pthread_mutex_unlock(&p->lock);
			usleep(PREFETCH_RETRY_US); /* the pager thread reads the remove event */
		}
		rc = install(p, addr + off, data ? c->buf + off : NULL, len - off,
			     c->r->first_page + c->k + off / p->ps, c->by, &done, &fresh);
		off += done;
		c->fresh += fresh;
	}
	c->done = off / p->ps;
	c->gave_up = rc == -EAGAIN;
	if (c->gave_up)
		rc = 0;
	/* A thread may already wait on these pages (its message still queued). */
	if (off && (e = wake(p, addr, off)) && !rc)
		rc = -e;
	return rc;
}

/* Read (when present) and install one chunk. 0 or SQUIB_E_* with d (never NULL: the
 * source's read gets it) filled. */
static int fill_chunk(struct squib_pager *p, struct chunk *c, struct squib_error_detail *d)
{
	uint64_t page = c->r->first_page + c->k;
	bool data;
	int rc = 0;

	c->done = c->fresh = 0;
	c->gave_up = false;
	pthread_mutex_lock(&p->src_lock);
	data = p->src.ops->present(p->src.ctx, page);
	c->pages = run_end(p, c->r, c->k, c->lim, data) - c->k;
	if (data)
		rc = source_read(p, page, c->pages, c->buf, d);
	pthread_mutex_unlock(&p->src_lock);
	if (rc)
		return rc;
	if ((rc = put_chunk(p, c, data))) {
		squib_fail_msg(d, SQUIB_E_MEMORY_IO, "pager: %s at page %" PRIu64 ": %s",
			       data ? "UFFDIO_COPY" : "UFFDIO_ZEROPAGE", page, strerror(-rc));
		d->os_errno = -rc;
		return SQUIB_E_MEMORY_IO;
	}
	return 0;
}

/*
 * A release has begun: the memory may already be unregistered although
 * st.released is not yet set (the thread drains the uffd in between).
 */
static bool was_released(struct squib_pager *p)
{
	bool v;

	pthread_mutex_lock(&p->lock);
	v = p->releasing || p->st.released;
	pthread_mutex_unlock(&p->lock);
	return v;
}

/* Pages skipped as already present between two looks at the stop function. */
#define STOP_CHECK_PAGES 65536u

static bool asked_to_stop(struct squib_pager *p, struct squib_error_detail *d)
{
	if (!p->stop_fn || !p->stop_fn(p->stop_ctx))
		return false;
	squib_fail_errno_msg(d, SQUIB_E_IO, ECANCELED, "prefetch: stopped on request");
	return true;
}

/* Prefetch region-relative pages [lo, hi) of r. */
static int prefetch_range(struct squib_pager *p, const struct squib_pager_region *r, uint64_t lo,
			  uint64_t hi, uint8_t *buf, uint64_t chunk_pages, uint64_t *installed,
			  struct squib_error_detail *d)
{
	struct chunk c = {.r = r, .buf = buf, .by = BY_PREFETCH, .tries = PREFETCH_TRIES};
	uint64_t skipped = 0;
	int rc;

	for (uint64_t k = lo; k < hi;) {
		if (known(p, r->first_page + k)) {
			k++;
			if (++skipped % STOP_CHECK_PAGES == 0 && asked_to_stop(p, d))
				return SQUIB_E_IO;
			continue;
		}
		if (asked_to_stop(p, d))
			return SQUIB_E_IO;
		c.k = k;
		c.lim = hi - k < chunk_pages ? hi : k + chunk_pages;
		rc = fill_chunk(p, &c, d);
		*installed += c.fresh;
		/* Released meanwhile (release_when_complete): every page is there, and the
		 * unregistered memory refuses UFFDIO_COPY - that is not a failure. */
		if (rc && was_released(p))
			return 0;
		if (rc)
			return rc;
		k += c.gave_up ? c.pages : c.done; /* given up: left to faults */
	}
	return 0;
}

static int check_runs(const struct squib_pager *p, const struct squib_ws_run *runs, uint64_t n,
		      struct squib_error_detail *d)
{
	uint64_t pages = p->src.page_count;

	if (!runs && n)
		return squib_fail_msg(d, SQUIB_E_INVALID_ARGUMENT, "prefetch: NULL runs");
	if (p->stopped || p->uffd < 0)
		return squib_fail_msg(d, SQUIB_E_INVALID_ARGUMENT,
				      "prefetch: the pager is stopped");
	for (uint64_t i = 0; i < n; i++)
		if (runs[i].first_page > pages || runs[i].page_count > pages - runs[i].first_page)
			return squib_fail_msg(d, SQUIB_E_INVALID_ARGUMENT,
					      "prefetch: run %" PRIu64 " (%" PRIu64 "+%" PRIu64
					      ") lies outside the %" PRIu64 " pages",
					      i, runs[i].first_page, runs[i].page_count, pages);
	return 0;
}

/* The pages of run that region r maps, region-relative: false when none. */
static bool clip(const struct squib_pager *p, const struct squib_pager_region *r,
		 const struct squib_ws_run *run, uint64_t *lo, uint64_t *hi)
{
	uint64_t a = r->first_page, b = a + r->size / p->ps;
	uint64_t s = run->first_page > a ? run->first_page : a;
	uint64_t e = run->first_page + run->page_count < b ? run->first_page + run->page_count : b;

	*lo = s - a;
	*hi = e - a;
	return s < e;
}

/* A run of the merge: [first, end) and the index of the first run that touched it. */
struct span {
	uint64_t first, end, order;
};

/* The merge sorts by radix (no comparison sort, O(runs) per pass) and asks the stop function
 * every STOP_CHECK_RUNS runs of every pass: 4 M runs must not delay a SIGTERM. A merge of fewer
 * runs is too short to ask at all. */
#define RADIX_BITS	11u
#define RADIX		(1u << RADIX_BITS)
#define STOP_CHECK_RUNS 65536u

static bool stop_at(struct squib_pager *p, uint64_t i, struct squib_error_detail *d)
{
	return i && i % STOP_CHECK_RUNS == 0 && asked_to_stop(p, d);
}

static uint64_t digit(const struct span *s, bool by_order, unsigned int shift)
{
	return ((by_order ? s->order : s->first) >> shift) & (RADIX - 1);
}

/* One stable counting pass of src into dst by the digit at shift. */
static int radix_pass(struct squib_pager *p, const struct span *src, struct span *dst, uint64_t n,
		      bool by_order, unsigned int shift, struct squib_error_detail *d)
{
	uint64_t count[RADIX] = {0}, at = 0;

	for (uint64_t i = 0; i < n; i++) {
		if (stop_at(p, i, d))
			return SQUIB_E_IO;
		count[digit(&src[i], by_order, shift)]++;
	}
	for (uint32_t b = 0; b < RADIX; b++) {
		uint64_t c = count[b];

		count[b] = at;
		at += c;
	}
	for (uint64_t i = 0; i < n; i++) {
		if (stop_at(p, i, d))
			return SQUIB_E_IO;
		dst[count[digit(&src[i], by_order, shift)]++] = src[i];
	}
	return 0;
}

/* *s[0..n) sorted by first page or by order (keys at most max); *s and *tmp may swap. */
static int sort_spans(struct squib_pager *p, struct span **s, struct span **tmp, uint64_t n,
		      bool by_order, uint64_t max, struct squib_error_detail *d)
{
	for (unsigned int shift = 0; shift < 64 && (shift == 0 || max >> shift);
	     shift += RADIX_BITS) {
		struct span *t = *s;
		int rc = radix_pass(p, *s, *tmp, n, by_order, shift, d);

		if (rc)
			return rc;
		*s = *tmp;
		*tmp = t;
	}
	return 0;
}

/* Sorted spans [0..n) merged in place where they overlap or touch; the count left. */
static uint64_t merge_sorted(struct span *s, uint64_t n)
{
	uint64_t k = 0;

	for (uint64_t i = 1; i < n; i++) {
		if (s[i].first <= s[k].end) {
			s[k].end = s[i].end > s[k].end ? s[i].end : s[k].end;
			s[k].order = s[i].order < s[k].order ? s[i].order : s[k].order;
		} else {
			s[++k] = s[i];
		}
	}
	return k + 1;
}

/*
 * runs[0..n) as disjoint runs: overlapping and touching runs merged, so that
 * each page is visited once whatever the runs (4 M overlapping runs cost
 * their pages, not runs x pages). The merged runs keep the order of the first
 * run that touched each - the working set's first-fault order, roughly.
 * 0, SQUIB_E_NOMEM, or SQUIB_E_IO when the stop function said so.
 */
static int merge_runs(struct squib_pager *p, const struct squib_ws_run *runs, uint64_t n,
		      struct squib_ws_run **out, uint64_t *m, struct squib_error_detail *d)
{
	struct span *s = NULL, *tmp = NULL;
	uint64_t merged = 0;
	int rc;

	*m = 0;
	*out = NULL;
	if (!n)
		return 0;
	if (n > SIZE_MAX / 2 / sizeof(*s) || !(s = malloc((size_t)n * sizeof(*s))) ||
	    !(tmp = malloc((size_t)n * sizeof(*s)))) {
		free(s);
		return squib_fail(d, SQUIB_E_NOMEM);
	}
	for (uint64_t i = 0; i < n; i++)
		s[i] =
		    (struct span){runs[i].first_page, runs[i].first_page + runs[i].page_count, i};
	rc = sort_spans(p, &s, &tmp, n, false, p->src.page_count, d);
	if (!rc) /* orders stay below the runs' count */
		rc = sort_spans(p, &s, &tmp, merged = merge_sorted(s, n), true, n - 1, d);
	n = merged;
	if (!rc && !(*out = malloc((size_t)n * sizeof(**out))))
		rc = squib_fail(d, SQUIB_E_NOMEM);
	for (uint64_t i = 0; !rc && i < n; i++)
		(*out)[i] = (struct squib_ws_run){s[i].first, s[i].end - s[i].first};
	free(s);
	free(tmp);
	*m = rc ? 0 : n;
	return rc;
}

int squib_pager_prefetch(struct squib_pager *p, const struct squib_ws_run *runs, uint64_t n,
			 uint64_t *installed, struct squib_error_detail *d)
{
	struct squib_error_detail err;
	struct squib_ws_run *merged = NULL;
	uint64_t chunk, total = 0, lo, hi, m;
	uint8_t *buf;
	int rc;

	if (installed)
		*installed = 0;
	if (!p)
		return squib_fail_msg(d, SQUIB_E_INVALID_ARGUMENT, "prefetch: NULL pager");
	if ((rc = check_runs(p, runs, n, d)))
		return rc;
	chunk = PREFETCH_CHUNK / p->ps ? PREFETCH_CHUNK / p->ps : 1;
	memset(&err, 0, sizeof(err));
	if ((rc = merge_runs(p, runs, n, &merged, &m, &err)))
		goto out;
	if (!(buf = malloc(chunk * p->ps))) {
		free(merged);
		return squib_fail(d, SQUIB_E_NOMEM);
	}
	for (uint64_t i = 0; i < m && !rc; i++)
		for (uint32_t j = 0; j < p->region_count && !rc; j++)
			if (clip(p, &p->regions[j], &merged[i], &lo, &hi))
				rc = prefetch_range(p, &p->regions[j], lo, hi, buf, chunk, &total,
						    &err);
	free(merged);
	free(buf);
out:
	if (installed)
		*installed = total;
	if (rc && d)
		*d = err;
	return rc;
}

void squib_pager_set_prefetch_stop(struct squib_pager *p, bool (*stop)(void *ctx), void *ctx)
{
	if (!p)
		return;
	p->stop_fn = stop;
	p->stop_ctx = ctx;
}

int squib_pager_prefetch_all(struct squib_pager *p, uint64_t *installed,
			     struct squib_error_detail *d)
{
	struct squib_ws_run all;

	if (installed)
		*installed = 0;
	if (!p)
		return squib_fail_msg(d, SQUIB_E_INVALID_ARGUMENT, "prefetch: NULL pager");
	all = (struct squib_ws_run){0, p->src.page_count};
	return squib_pager_prefetch(p, &all, 1, installed, d);
}

/* ---- background fill ------------------------------------------------------------------- */

/* Move the cursor to the next page not known present; false at the end of the pass. */
static bool fill_seek(struct squib_pager *p)
{
	while (p->fill_region < p->region_count) {
		const struct squib_pager_region *r = &p->regions[p->fill_region];
		uint64_t rpages = r->size / p->ps;

		while (p->fill_rel < rpages && known(p, r->first_page + p->fill_rel))
			p->fill_rel++;
		if (p->fill_rel < rpages)
			return true;
		p->fill_region++;
		p->fill_rel = 0;
	}
	return false;
}

static void fill_finish(struct squib_pager *p)
{
	p->fill = false;
	pthread_mutex_lock(&p->lock);
	p->st.fill_done = true;
	pthread_mutex_unlock(&p->lock);
}

/*
 * One chunk of the background fill, on the pager thread (no retry on EAGAIN:
 * this thread must read the remove event first). A failure is the pager's
 * error (a fault on those pages would meet it too) and ends the fill.
 */
static void fill_step(struct squib_pager *p)
{
	struct squib_error_detail d;
	struct chunk c = {.buf = p->fill_buf, .by = BY_FILL, .tries = 1};
	uint64_t rpages;
	int rc;

	if (!fill_seek(p)) {
		fill_finish(p);
		return;
	}
	c.r = &p->regions[p->fill_region];
	rpages = c.r->size / p->ps;
	c.k = p->fill_rel;
	c.lim = rpages - c.k < p->fill_pages ? rpages : c.k + p->fill_pages;
	memset(&d, 0, sizeof(d));
	if ((rc = fill_chunk(p, &c, &d))) {
		record_error(p, rc, &d);
		fill_finish(p);
		return;
	}
	p->fill_rel += c.done;
	if (c.gave_up) {
		pthread_mutex_lock(&p->lock);
		p->st.eagain++;
		pthread_mutex_unlock(&p->lock);
		return;
	}
	if (p->fill_pages < p->fill_max_pages)
		p->fill_pages =
		    p->fill_pages * 2 < p->fill_max_pages ? p->fill_pages * 2 : p->fill_max_pages;
}

/* ---- the thread -------------------------------------------------------------------------- */

static void on_remove(struct squib_pager *p, uint64_t start, uint64_t end)
{
	pthread_mutex_lock(&p->lock);
	p->st.removes++;
	pthread_mutex_unlock(&p->lock);
	for (uint32_t i = 0; i < p->region_count; i++) {
		uint64_t h = (uint64_t)(uintptr_t)p->regions[i].host, e = h + p->regions[i].size;
		uint64_t a = start > h ? start : h, b = end < e ? end : e;

		if (a < b)
			mark(p, p->regions[i].first_page + (a - h) / p->ps,
			     (b - a + p->ps - 1) / p->ps, false);
	}
}

/* Room for 16 more queued faults; false when memory is short. */
static bool reserve(struct squib_pager *p)
{
	size_t cap = p->cap ? p->cap : PENDING_MIN;
	struct pending *v;

	while (cap < p->npend + 16)
		cap *= 2;
	if (cap == p->cap)
		return true;
	if (!(v = realloc(p->pend, cap * sizeof(*v))))
		return false;
	p->pend = v;
	p->cap = cap;
	return true;
}

/*
 * Read every available message: events handled, faults queued. Never stops
 * reading while messages remain (a remove waits for its event to be read,
 * and until then copies fail with EAGAIN). 0 or -errno.
 */
static int drain(struct squib_pager *p)
{
	struct uffd_msg msg[16];

	for (;;) {
		ssize_t n;
		uint64_t t;

		if (!reserve(p)) {
			record_error(p, SQUIB_E_NOMEM, NULL);
			return 0; /* serve what is queued; read the rest later */
		}
		n = read(p->uffd, msg, sizeof(msg));
		if (n < 0)
			return errno == EAGAIN ? 0 : errno == EINTR ? 0 : -errno;
		t = now_ns();
		for (size_t i = 0; i < (size_t)n / sizeof(msg[0]); i++) {
			if (msg[i].event == UFFD_EVENT_PAGEFAULT)
				p->pend[p->npend++] =
				    (struct pending){msg[i].arg.pagefault.address, t};
			else if (msg[i].event == UFFD_EVENT_REMOVE)
				on_remove(p, msg[i].arg.remove.start, msg[i].arg.remove.end);
		}
		if ((size_t)n < sizeof(msg))
			return 0;
	}
}

static void account(struct squib_pager *p, uint64_t t0)
{
	uint64_t ns = now_ns() - t0;

	pthread_mutex_lock(&p->lock);
	p->st.faults++;
	p->hist[bucket_of(ns)]++;
	if (ns > p->max_ns)
		p->max_ns = ns;
	pthread_mutex_unlock(&p->lock);
}

/* Serve the queue in order; stop at the first EAGAIN (the rest stays queued). */
static bool serve_pending(struct squib_pager *p)
{
	size_t i = 0;
	bool again = false;

	for (; i < p->npend; i++) {
		int rc = serve(p, p->pend[i].addr, p->pend[i].t0);

		if (rc == -EAGAIN) {
			pthread_mutex_lock(&p->lock);
			p->st.eagain++;
			pthread_mutex_unlock(&p->lock);
			again = true;
			break;
		}
	}
	memmove(p->pend, p->pend + i, (p->npend - i) * sizeof(p->pend[0]));
	p->npend -= i;
	return again;
}

/* Poll timeout: 1 ms after EAGAIN (the events that cleared it may not be
 * queued yet), 0 while a background fill has work, else forever. */
/* Milliseconds: 1 after EAGAIN, 0 while filling, 100 while a release may come from a
 * prefetch on another thread (nothing wakes this one then), else wait for a message. */
static int poll_timeout(const struct squib_pager *p, bool again)
{
	return again ? 1 : p->fill ? 0 : p->release ? 100 : -1;
}

static bool all_present(struct squib_pager *p)
{
	bool v;

	pthread_mutex_lock(&p->lock);
	v = p->st.pages_present == p->st.page_count && !p->installing;
	pthread_mutex_unlock(&p->lock);
	return v;
}

/*
 * release_when_complete: with every page present and nothing queued,
 * unregister the memory (a thread whose fault was queued meanwhile is woken
 * and gets ordinary anonymous memory), then read what the uffd still holds:
 * a REMOVE event queued before the unregister blocks its madvise() until it
 * is read. true: released, the thread ends.
 */
static bool try_release(struct squib_pager *p)
{
	if (!p->release || p->npend || !all_present(p))
		return false;
	/* Every page is present: a prefetch that fails from here on lost nothing. */
	pthread_mutex_lock(&p->lock);
	p->releasing = true;
	pthread_mutex_unlock(&p->lock);
	for (uint32_t i = 0; i < p->region_count; i++) {
		struct uffdio_range r = {(uint64_t)(uintptr_t)p->regions[i].host,
					 p->regions[i].size};

		if (ioctl(p->uffd, UFFDIO_UNREGISTER, &r)) {
			record_errno(p, errno, "UFFDIO_UNREGISTER", r.start);
			p->release = false; /* keep serving what is still registered */
			return false;
		}
	}
	(void)drain(p);
	p->npend = 0; /* woken by the unregister: nothing left to serve */
	if (p->fill)
		fill_finish(p); /* every page is there: the pass has nothing left */
	pthread_mutex_lock(&p->lock);
	p->st.released = true;
	pthread_mutex_unlock(&p->lock);
	return true;
}

static void *pager_thread(void *arg)
{
	struct squib_pager *p = arg;
	bool again = false;

	for (;;) {
		struct pollfd pf[2] = {{.fd = p->uffd, .events = POLLIN},
				       {.fd = p->efd, .events = POLLIN}};
		int n = poll(pf, 2, poll_timeout(p, again)), rc;

		if (n < 0 && errno != EINTR) {
			record_errno(p, errno, "poll", 0);
			break;
		}
		if (n > 0 && pf[1].revents)
			break;
		if (n > 0 && (pf[0].revents & (POLLERR | POLLNVAL))) {
			record_errno(p, EIO, "userfaultfd poll error", 0);
			break;
		}
		if ((rc = drain(p))) {
			record_errno(p, -rc, "reading the userfaultfd", 0);
			break;
		}
		again = serve_pending(p);
		/* Faults first: fill only when the poll found nothing to read. */
		if (n == 0 && !p->npend && p->fill)
			fill_step(p);
		if (!again && try_release(p))
			break;
	}
	return NULL;
}

/* ---- start / stop ------------------------------------------------------------------------- */

static int check_regions(const struct squib_pager_region *regions, uint32_t n,
			 const struct squib_page_source *src, struct squib_error_detail *d)
{
	uint64_t hp = (uint64_t)sysconf(_SC_PAGESIZE);

	if (!src->ops || !src->ops->present || !src->ops->read)
		return squib_fail_msg(d, SQUIB_E_INVALID_ARGUMENT, "pager: incomplete page source");
	if (src->page_size != hp)
		return squib_fail_msg(d, SQUIB_E_INVALID_ARGUMENT,
				      "pager: source page size %" PRIu64
				      " is not the host page size %" PRIu64,
				      src->page_size, hp);
	if (!regions || !n)
		return squib_fail_msg(d, SQUIB_E_INVALID_ARGUMENT, "pager: no regions");
	for (uint32_t i = 0; i < n; i++) {
		const struct squib_pager_region *r = &regions[i];

		if (!r->host || (uintptr_t)r->host % hp || !r->size || r->size % hp ||
		    r->first_page > src->page_count ||
		    r->size / hp > src->page_count - r->first_page)
			return squib_fail_msg(
			    d, SQUIB_E_INVALID_ARGUMENT,
			    "pager: region %u is not page-aligned or lies outside "
			    "the source's %" PRIu64 " pages",
			    i, src->page_count);
	}
	return 0;
}

static int open_and_register(struct squib_pager *p, struct squib_error_detail *d)
{
	struct uffdio_api api = {.api = UFFD_API, .features = UFFD_FEATURE_EVENT_REMOVE};
	uint64_t need =
	    (1ull << _UFFDIO_COPY) | (1ull << _UFFDIO_ZEROPAGE) | (1ull << _UFFDIO_WAKE);

	if ((p->uffd = squib_uffd_open(false)) < 0)
		return squib_fail_errno_msg(
		    d, SQUIB_E_IO, errno, "opening a userfaultfd (syscall, then /dev/userfaultfd)");
	if (ioctl(p->uffd, UFFDIO_API, &api))
		return squib_fail_errno_msg(d, SQUIB_E_IO, errno, "UFFDIO_API");
	if (!(api.features & UFFD_FEATURE_EVENT_REMOVE))
		return squib_fail_errno(d, SQUIB_E_IO, EOPNOTSUPP);
	for (uint32_t i = 0; i < p->region_count; i++) {
		struct uffdio_register reg = {
		    .range = {(uint64_t)(uintptr_t)p->regions[i].host, p->regions[i].size},
		    .mode = UFFDIO_REGISTER_MODE_MISSING};

		if (ioctl(p->uffd, UFFDIO_REGISTER, &reg))
			return squib_fail_errno(d, SQUIB_E_IO, errno);
		if ((reg.ioctls & need) != need)
			return squib_fail_errno(d, SQUIB_E_IO, EOPNOTSUPP);
	}
	return 0;
}

/* Batch, record and fill settings; false when the fill buffer cannot be had. */
static bool apply_options(struct squib_pager *p, const struct squib_pager_options *opts)
{
	uint64_t batch = opts && opts->batch_bytes ? opts->batch_bytes : DEFAULT_BATCH;
	uint64_t fmax = opts && opts->fill_max_bytes ? opts->fill_max_bytes : DEFAULT_FILL_MAX;

	p->batch_pages = batch / p->ps ? batch / p->ps : 1;
	p->record = opts && opts->record;
	p->release = opts && opts->release_when_complete;
	p->fill = opts && opts->background_fill;
	p->st.fill_done = !p->fill;
	if (!p->fill)
		return true;
	if (fmax > FILL_MAX_LIMIT)
		fmax = FILL_MAX_LIMIT;
	p->fill_max_pages = fmax / p->ps ? fmax / p->ps : 1;
	p->fill_pages = p->batch_pages < p->fill_max_pages ? p->batch_pages : p->fill_max_pages;
	return (p->fill_buf = malloc(p->fill_max_pages * p->ps)) != NULL;
}

/* A pager over regions with no uffd yet, or NULL with the error in d; src released on failure. */
static struct squib_pager *pager_new(const struct squib_pager_region *regions, uint32_t n,
				     struct squib_page_source src,
				     const struct squib_pager_options *opts,
				     struct squib_error_detail *d, int *rcp)
{
	struct squib_pager *p;

	if ((*rcp = check_regions(regions, n, &src, d)))
		goto release;
	if (!(p = calloc(1, sizeof(*p)))) {
		*rcp = squib_fail(d, SQUIB_E_NOMEM);
		goto release;
	}
	p->uffd = p->efd = -1;
	p->src = src;
	p->ps = src.page_size;
	p->region_count = n;
	p->st.page_count = src.page_count;
	pthread_mutex_init(&p->lock, NULL);
	pthread_mutex_init(&p->src_lock, NULL);
	if (!apply_options(p, opts) || !(p->regions = calloc(n, sizeof(*regions))) ||
	    !(p->present = calloc(src.page_count ? src.page_count : 1, 1)) ||
	    !(p->buf = malloc(p->batch_pages * p->ps))) {
		squib_pager_free(p);
		*rcp = squib_fail(d, SQUIB_E_NOMEM);
		return NULL;
	}
	memcpy(p->regions, regions, n * sizeof(*regions));
	/* Pages outside every region are never faulted: count them present. */
	for (uint64_t k = 0; k < src.page_count; k++)
		p->present[k] = 1;
	p->st.pages_present = src.page_count;
	for (uint32_t i = 0; i < n; i++)
		mark(p, regions[i].first_page, regions[i].size / p->ps, false);
	return p;
release:
	if (src.ops && src.ops->release)
		src.ops->release(src.ctx);
	return NULL;
}

static int launch(struct squib_pager *p, struct squib_pager **out, struct squib_error_detail *d)
{
	int rc;

	if (p->efd < 0 && (p->efd = eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK)) < 0)
		rc = squib_fail_errno(d, SQUIB_E_IO, errno);
	else if ((rc = pthread_create(&p->thread, NULL, pager_thread, p)))
		rc = squib_fail_errno(d, SQUIB_E_IO, rc);
	if (rc) {
		squib_pager_free(p);
		return rc;
	}
	p->running = true;
	*out = p;
	return 0;
}

int squib_pager_start(const struct squib_pager_region *regions, uint32_t n,
		      struct squib_page_source src, const struct squib_pager_options *opts,
		      struct squib_pager **out, struct squib_error_detail *d)
{
	struct squib_pager *p;
	int rc;

	if (!out) {
		if (src.ops && src.ops->release)
			src.ops->release(src.ctx);
		return squib_fail_msg(d, SQUIB_E_INVALID_ARGUMENT, "pager: NULL out");
	}
	*out = NULL;
	if (!(p = pager_new(regions, n, src, opts, d, &rc)))
		return rc;
	if ((rc = open_and_register(p, d))) {
		squib_pager_free(p);
		return rc;
	}
	return launch(p, out, d);
}

int squib_pager_attach(int uffd, const struct squib_pager_region *regions, uint32_t n,
		       struct squib_page_source src, const struct squib_pager_options *opts,
		       struct squib_pager **out, struct squib_error_detail *d)
{
	struct squib_pager *p;
	int rc;

	if (!out || uffd < 0) {
		if (uffd >= 0)
			close(uffd);
		if (src.ops && src.ops->release)
			src.ops->release(src.ctx);
		return squib_fail_msg(d, SQUIB_E_INVALID_ARGUMENT, "pager: NULL out or no uffd");
	}
	*out = NULL;
	if (opts && opts->release_when_complete) {
		close(uffd);
		if (src.ops && src.ops->release)
			src.ops->release(src.ctx);
		return squib_fail_msg(d, SQUIB_E_INVALID_ARGUMENT,
				      "pager: an attached uffd's registrations are its creator's: "
				      "release_when_complete does not apply");
	}
	if (!(p = pager_new(regions, n, src, opts, d, &rc))) {
		close(uffd);
		return rc;
	}
	p->uffd = uffd;
	p->attached = true;
	return launch(p, out, d);
}

void squib_pager_stop(struct squib_pager *p)
{
	if (!p || p->stopped)
		return;
	p->stopped = true;
	if (p->running) {
		uint64_t one = 1;

		while (write(p->efd, &one, sizeof(one)) < 0 && errno == EINTR)
			;
		pthread_join(p->thread, NULL);
		p->running = false;
	}
	if (p->uffd >= 0) {
		/* Unregistering wakes every thread still blocked on a missing page. */
		for (uint32_t i = 0; !p->attached && i < p->region_count; i++) {
			struct uffdio_range r = {(uint64_t)(uintptr_t)p->regions[i].host,
						 p->regions[i].size};

			ioctl(p->uffd, UFFDIO_UNREGISTER, &r);
		}
		close(p->uffd);
		p->uffd = -1;
	}
	if (p->efd >= 0) {
		close(p->efd);
		p->efd = -1;
	}
}

void squib_pager_free(struct squib_pager *p)
{
	if (!p)
		return;
	squib_pager_stop(p);
	if (p->src.ops && p->src.ops->release)
		p->src.ops->release(p->src.ctx);
	pthread_mutex_destroy(&p->lock);
	pthread_mutex_destroy(&p->src_lock);
	free(p->regions);
	free(p->fill_buf);
	free(p->rec);
	free(p->present);
	free(p->buf);
	free(p->pend);
	free(p);
}
