/* SPDX-License-Identifier: Apache-2.0 */
/*
 * The userfaultfd pager (squib/pager.h) and the LAZY backend: real
 * userfaultfd, real memory files from tests/support/pair.h. Without
 * userfaultfd (ENOSYS) every test prints one SKIP line and is skipped.
 */
#include "pair.h"
#include "savetest.h"
#include "testutil.h"

#include <errno.h>
#include <fcntl.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <linux/userfaultfd.h>
#include <sys/ioctl.h>
#include <sys/mman.h>
#include <sys/socket.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <unistd.h>

#include <squib/load.h>
#include <squib/memfile.h>
#include <squib/pager.h>
#include <squib/workset.h>

struct fixture {
	char *dir;
	char *path;
};

static int setup(void **state)
{
	struct fixture *f = calloc(1, sizeof(*f));

	assert_non_null(f);
	f->dir = squib_test_tmpdir();
	f->path = squib_test_path(f->dir, "ram.mem");
	*state = f;
	return 0;
}

static int teardown(void **state)
{
	struct fixture *f = *state;

	squib_test_rmtree(f->dir);
	free(f->dir);
	free(f->path);
	free(f);
	return 0;
}

#define SKIP_WITHOUT_UFFD()                                                                        \
	do {                                                                                       \
		if (squib_test_uffd_missing("pager"))                                              \
			skip();                                                                    \
	} while (0)

static uint64_t ps(void)
{
	return squib_test_page_size();
}

/* RAM of `pages` pages with a pattern; every page where zero_every divides
 * its index (zero_every 0: none) is cleared, so it becomes a hole. */
static uint8_t *pattern_ram(uint64_t pages, uint64_t zero_every, uint64_t *zeros)
{
	uint8_t *m = squib_test_guest_ram(pages * ps(), 0xc0ffee);

	*zeros = 0;
	for (uint64_t k = 0; zero_every && k < pages; k++)
		if (k % zero_every == 0) {
			memset(m + k * ps(), 0, ps());
			(*zeros)++;
		}
	return m;
}

static void *anon(uint64_t size)
{
	void *p = mmap(NULL, size, PROT_READ | PROT_WRITE,
		       MAP_PRIVATE | MAP_ANONYMOUS | MAP_NORESERVE, -1, 0);

	assert_true(p != MAP_FAILED);
	madvise(p, size, MADV_NOHUGEPAGE);
	return p;
}

/* A pager over the memory file at path serving fresh memory of `size` bytes. */
struct lazy {
	struct squib_memfile *m;
	struct squib_pager *p;
	uint8_t *mem;
	uint64_t size;
};

static void lazy_open_opts(struct lazy *l, const char *path, uint64_t size,
			   const struct squib_pager_options *o)
{
	struct squib_page_source src;
	struct squib_pager_region r;
	struct squib_error_detail d;

	assert_int_equal(squib_memfile_open(path, &l->m, &d), 0);
	assert_int_equal(squib_page_source_file(l->m, &src, &d), 0);
	l->size = size;
	l->mem = anon(size);
	r = (struct squib_pager_region){l->mem, size, 0};
	assert_int_equal(squib_pager_start(&r, 1, src, o, &l->p, &d), 0);
}

static void lazy_open(struct lazy *l, const char *path, uint64_t size, uint64_t batch)
{
	struct squib_pager_options o = {.batch_bytes = batch};

	lazy_open_opts(l, path, size, &o);
}

static void lazy_close(struct lazy *l)
{
	squib_pager_free(l->p);
	squib_memfile_close(l->m);
	munmap(l->mem, l->size);
}

/* ---- content ----------------------------------------------------------------------------- */

struct reader {
	const uint8_t *mem, *want;
	uint64_t pages, start;
	uint64_t bad;
};

static void *read_all(void *arg)
{
	struct reader *r = arg;

	for (uint64_t i = 0; i < r->pages; i++) {
		uint64_t k = (r->start + i * 7) % r->pages; /* strided: faults all over */

		if (memcmp(r->mem + k * ps(), r->want + k * ps(), ps()))
			r->bad++;
	}
	return NULL;
}

static void test_should_serve_memory_equal_to_the_file_to_several_threads(void **state)
{
	struct fixture *f = *state;
	uint64_t pages = 512, zeros;
	uint8_t *want = pattern_ram(pages, 5, &zeros);
	struct reader rd[4];
	pthread_t th[4];
	struct squib_pager_stats st;
	struct lazy l;

	SKIP_WITHOUT_UFFD();
	squib_test_save_full(f->path, want, pages * ps(), false, NULL);
	lazy_open(&l, f->path, pages * ps(), 0);
	for (int i = 0; i < 4; i++) {
		rd[i] = (struct reader){l.mem, want, pages, (uint64_t)i * 131, 0};
		assert_int_equal(pthread_create(&th[i], NULL, read_all, &rd[i]), 0);
	}
	for (int i = 0; i < 4; i++) {
		pthread_join(th[i], NULL);
		assert_int_equal(rd[i].bad, 0);
	}
	assert_memory_equal(l.mem, want, pages * ps());
	squib_pager_stats(l.p, &st);
	assert_int_equal(squib_pager_error(l.p, NULL), 0);
	assert_int_equal(st.errors, 0);
	assert_int_equal(st.pages_copied, pages - zeros);
	assert_int_equal(st.pages_zeroed, zeros);
	assert_true(st.complete);
	assert_int_equal(st.pages_present, pages);
	assert_true(st.faults > 0);
	lazy_close(&l);
	munmap(want, pages * ps());
}

static void test_should_install_zero_pages_without_reading_the_file(void **state)
{
	struct fixture *f = *state;
	uint64_t pages = 256, zeros;
	uint8_t *want = pattern_ram(pages, 2, &zeros); /* every other page a hole */
	struct squib_pager_stats st;
	struct lazy l;

	SKIP_WITHOUT_UFFD();
	squib_test_save_full(f->path, want, pages * ps(), false, NULL);
	lazy_open(&l, f->path, pages * ps(), 0);
	assert_memory_equal(l.mem, want, pages * ps()); /* one thread, in order */
	squib_pager_stats(l.p, &st);
	assert_int_equal(zeros, pages / 2);
	assert_int_equal(st.pages_zeroed, zeros);
	assert_int_equal(st.pages_copied, pages - zeros);
	assert_int_equal(st.bytes_read, (pages - zeros) * ps()); /* holes never read */
	assert_int_equal(st.pages_existing, 0);
	lazy_close(&l);
	munmap(want, pages * ps());
}

static void test_should_resolve_a_batch_of_pages_per_fault(void **state)
{
	struct fixture *f = *state;
	uint64_t pages = 256, zeros;
	uint8_t *want = pattern_ram(pages, 0, &zeros);
	struct squib_pager_stats st;
	struct lazy l;
	uint64_t batch_pages = (64u << 10) / ps();

	SKIP_WITHOUT_UFFD();
	squib_test_save_full(f->path, want, pages * ps(), false, NULL);
	lazy_open(&l, f->path, pages * ps(), 0); /* default: 64 KiB */
	for (uint64_t k = 0; k < pages; k++)	 /* touch every page, in order */
		assert_memory_equal(l.mem + k * ps(), want + k * ps(), ps());
	squib_pager_stats(l.p, &st);
	assert_int_equal(st.pages_copied, pages);
	assert_int_equal(st.faults, pages / batch_pages); /* one fault per aligned window */
	assert_int_equal(st.batches, st.faults);
	assert_true(st.faults < pages);
	assert_int_equal(st.bytes_read, pages * ps());
	assert_true(st.median_us > 0);
	assert_true(st.p99_us >= st.median_us);
	lazy_close(&l);
	munmap(want, pages * ps());
}

static void test_should_honour_a_configured_batch_bound(void **state)
{
	struct fixture *f = *state;
	uint64_t pages = 64, zeros;
	uint8_t *want = pattern_ram(pages, 0, &zeros);
	struct squib_pager_stats st;
	struct lazy l;

	SKIP_WITHOUT_UFFD();
	squib_test_save_full(f->path, want, pages * ps(), false, NULL);
	lazy_open(&l, f->path, pages * ps(), 1); /* less than a page: one page per fault */
	assert_memory_equal(l.mem, want, pages * ps());
	squib_pager_stats(l.p, &st);
	assert_int_equal(st.faults, pages);
	assert_int_equal(st.batches, pages);
	lazy_close(&l);
	munmap(want, pages * ps());
}

static void test_should_serve_a_removed_range_again(void **state)
{
	struct fixture *f = *state;
	uint64_t pages = 128, zeros;
	uint8_t *want = pattern_ram(pages, 3, &zeros);
	struct squib_pager_stats a, b;
	struct lazy l;

	SKIP_WITHOUT_UFFD();
	squib_test_save_full(f->path, want, pages * ps(), false, NULL);
	lazy_open(&l, f->path, pages * ps(), 0);
	assert_memory_equal(l.mem, want, pages * ps());
	squib_pager_stats(l.p, &a);
	assert_true(a.complete);
	l.mem[40 * ps()] ^= 0xff; /* the guest writes; the remove drops it */
	assert_int_equal(madvise(l.mem + 32 * ps(), 32 * ps(), MADV_DONTNEED), 0);
	assert_memory_equal(l.mem, want, pages * ps());
	squib_pager_stats(l.p, &b);
	assert_true(b.removes >= 1);
	assert_true(b.faults > a.faults);
	assert_true(b.pages_copied + b.pages_zeroed >= a.pages_copied + a.pages_zeroed + 32);
	assert_int_equal(b.errors, 0);
	assert_true(b.complete);
	lazy_close(&l);
	munmap(want, pages * ps());
}

static void test_should_stop_cleanly_with_pages_never_served(void **state)
{
	struct fixture *f = *state;
	uint64_t pages = 1024, zeros;
	uint8_t *want = pattern_ram(pages, 0, &zeros);
	struct squib_pager_stats st;
	struct lazy l;

	SKIP_WITHOUT_UFFD();
	squib_test_save_full(f->path, want, pages * ps(), false, NULL);
	lazy_open(&l, f->path, pages * ps(), 0);
	assert_memory_equal(l.mem + 100 * ps(), want + 100 * ps(), ps());
	squib_pager_stats(l.p, &st);
	assert_false(st.complete);
	assert_true(st.pages_present < pages);
	squib_pager_stop(l.p);
	squib_pager_stop(l.p); /* idempotent */
	assert_int_equal(squib_pager_error(l.p, NULL), 0);
	lazy_close(&l);
	munmap(want, pages * ps());
}

/* ---- a failing source -------------------------------------------------------------------- */

static bool fail_present(void *ctx, uint64_t page)
{
	(void)ctx;
	(void)page;
	return true;
}

static int fail_read(void *ctx, uint64_t first, uint64_t count, void *buf,
		     struct squib_error_detail *d)
{
	(void)ctx;
	(void)first;
	(void)count;
	(void)buf;
	return squib_fail_errno(d, SQUIB_E_MEMORY_IO, ECONNRESET);
}

static void fail_release(void *ctx)
{
	(*(int *)ctx)++;
}

static void *touch(void *arg)
{
	volatile uint8_t *p = arg;

	return (void *)(uintptr_t)p[0]; /* blocks until the pager is stopped */
}

static void test_should_report_a_source_error_and_wake_the_thread_at_stop(void **state)
{
	static const struct squib_page_source_ops ops = {fail_present, fail_read, fail_release};
	int released = 0;
	struct squib_page_source src = {&ops, &released, ps(), 16};
	struct squib_pager_region r;
	struct squib_error_detail d;
	struct squib_pager_stats st;
	struct squib_pager *p;
	uint8_t *mem;
	pthread_t th;
	void *got;

	(void)state;
	SKIP_WITHOUT_UFFD();
	mem = anon(16 * ps());
	r = (struct squib_pager_region){mem, 16 * ps(), 0};
	assert_int_equal(squib_pager_start(&r, 1, src, NULL, &p, &d), 0);
	assert_int_equal(pthread_create(&th, NULL, touch, mem), 0);
	while (!squib_pager_error(p, NULL)) /* waits for the failure, asserts no time */
		usleep(1000);
	assert_int_equal(squib_pager_error(p, &d), SQUIB_E_MEMORY_IO);
	assert_int_equal(d.os_errno, ECONNRESET);
	squib_pager_stats(p, &st);
	assert_int_equal(st.errors, 1); /* the fault is dropped, not retried in a loop */
	assert_int_equal(st.pages_copied, 0);
	squib_pager_stop(p); /* wakes the blocked reader: plain anonymous memory now */
	assert_int_equal(pthread_join(th, &got), 0);
	assert_null(got);
	squib_pager_free(p);
	assert_int_equal(released, 1);
	munmap(mem, 16 * ps());
}

static void test_should_refuse_bad_geometry_and_release_the_source(void **state)
{
	static const struct squib_page_source_ops ops = {fail_present, fail_read, fail_release};
	int released = 0;
	struct squib_page_source src = {&ops, &released, ps(), 4};
	struct squib_pager_region r;
	struct squib_pager *p = (struct squib_pager *)&r;
	uint8_t *mem;

	(void)state;
	mem = anon(8 * ps());
	r = (struct squib_pager_region){mem, 8 * ps(), 0}; /* 8 pages, source has 4 */
	assert_int_equal(squib_pager_start(&r, 1, src, NULL, &p, NULL), SQUIB_E_INVALID_ARGUMENT);
	assert_null(p);
	assert_int_equal(released, 1);
	munmap(mem, 8 * ps());
}

/* ---- a copy racing a remove (EAGAIN) ----------------------------------------------------- */

/* Wraps the file source: its first read lets a remove start and gives it time to queue. */
struct racing {
	struct squib_page_source inner;
	pthread_mutex_t mu;
	pthread_cond_t cv;
	bool go;
	int reads;
};

static bool racing_present(void *ctx, uint64_t page)
{
	struct racing *r = ctx;

	return r->inner.ops->present(r->inner.ctx, page);
}

static int racing_read(void *ctx, uint64_t first, uint64_t count, void *buf,
		       struct squib_error_detail *d)
{
	struct racing *r = ctx;

	if (r->reads++ == 0) {
		pthread_mutex_lock(&r->mu);
		r->go = true;
		pthread_cond_signal(&r->cv);
		pthread_mutex_unlock(&r->mu);
		usleep(50000); /* the remove queues its event meanwhile (not asserted on) */
	}
	return r->inner.ops->read(r->inner.ctx, first, count, buf, d);
}

static void racing_release(void *ctx)
{
	struct racing *r = ctx;

	r->inner.ops->release(r->inner.ctx);
}

struct remove_arg {
	struct racing *r;
	uint8_t *addr;
	size_t len;
	int rc;
};

static void *remove_when_told(void *arg)
{
	struct remove_arg *a = arg;

	pthread_mutex_lock(&a->r->mu);
	while (!a->r->go)
		pthread_cond_wait(&a->r->cv, &a->r->mu);
	pthread_mutex_unlock(&a->r->mu);
	a->rc = madvise(a->addr, a->len, MADV_DONTNEED);
	return NULL;
}

static void test_should_retry_a_copy_that_races_a_remove(void **state)
{
	static const struct squib_page_source_ops ops = {racing_present, racing_read,
							 racing_release};
	struct fixture *f = *state;
	uint64_t pages = 64, zeros;
	uint8_t *want = pattern_ram(pages, 0, &zeros), *mem;
	struct racing rc = {.mu = PTHREAD_MUTEX_INITIALIZER, .cv = PTHREAD_COND_INITIALIZER};
	struct squib_page_source src;
	struct squib_pager_region r;
	struct squib_pager_stats st;
	struct squib_error_detail d;
	struct squib_memfile *m;
	struct squib_pager *p;
	struct remove_arg ra;
	pthread_t th;

	SKIP_WITHOUT_UFFD();
	squib_test_save_full(f->path, want, pages * ps(), false, NULL);
	assert_int_equal(squib_memfile_open(f->path, &m, &d), 0);
	assert_int_equal(squib_page_source_file(m, &rc.inner, &d), 0);
	src = (struct squib_page_source){&ops, &rc, rc.inner.page_size, rc.inner.page_count};
	mem = anon(pages * ps());
	r = (struct squib_pager_region){mem, pages * ps(), 0};
	assert_int_equal(squib_pager_start(&r, 1, src, NULL, &p, &d), 0);
	ra = (struct remove_arg){&rc, mem + 32 * ps(), 16 * ps(), -1};
	assert_int_equal(pthread_create(&th, NULL, remove_when_told, &ra), 0);
	assert_memory_equal(mem, want, pages * ps());
	pthread_join(th, NULL);
	assert_int_equal(ra.rc, 0);
	assert_memory_equal(mem, want, pages * ps()); /* after the remove too */
	squib_pager_stats(p, &st);
	assert_int_equal(st.errors, 0);
	assert_true(st.removes >= 1);
	fprintf(stderr, "    (EAGAIN retries: %llu)\n", (unsigned long long)st.eagain);
	squib_pager_free(p);
	squib_memfile_close(m);
	munmap(mem, pages * ps());
	munmap(want, pages * ps());
}

/* ---- prefetch ---------------------------------------------------------------------------- */

static void test_should_prefetch_pages_so_that_touching_them_never_faults(void **state)
{
	struct fixture *f = *state;
	uint64_t pages = 256, zeros, installed = 0;
	uint8_t *want = pattern_ram(pages, 5, &zeros);
	const struct squib_ws_run all = {0, pages};
	struct squib_error_detail d;
	struct squib_pager_stats st;
	struct lazy l;

	SKIP_WITHOUT_UFFD();
	squib_test_save_full(f->path, want, pages * ps(), false, NULL);
	lazy_open(&l, f->path, pages * ps(), 0);
	assert_int_equal(squib_pager_prefetch(l.p, &all, 1, &installed, &d), 0);
	assert_int_equal(installed, pages);
	squib_pager_stats(l.p, &st);
	assert_true(st.complete);
	assert_int_equal(st.pages_prefetched, pages);
	assert_memory_equal(l.mem, want, pages * ps()); /* touch everything */
	squib_pager_stats(l.p, &st);
	assert_int_equal(st.faults, 0);
	assert_int_equal(st.pages_copied, pages - zeros);
	assert_int_equal(st.pages_zeroed, zeros);
	assert_int_equal(st.errors, 0);
	lazy_close(&l);
	munmap(want, pages * ps());
}

static void test_should_prefetch_absent_pages_as_zeros_without_reading(void **state)
{
	struct fixture *f = *state;
	uint64_t pages = 128, zeros, installed = 0;
	uint8_t *want = pattern_ram(pages, 2, &zeros); /* even pages are holes */
	const struct squib_ws_run runs[] = {{10, 20}, {64, 1}, {65, 1}};
	struct squib_pager_stats st;
	struct lazy l;

	SKIP_WITHOUT_UFFD();
	squib_test_save_full(f->path, want, pages * ps(), false, NULL);
	lazy_open(&l, f->path, pages * ps(), 0);
	assert_int_equal(squib_pager_prefetch(l.p, runs, 3, &installed, NULL), 0);
	assert_int_equal(installed, 22);
	squib_pager_stats(l.p, &st);
	assert_int_equal(st.pages_zeroed, 11); /* 10, 12, ..., 28 and 64 */
	assert_int_equal(st.pages_copied, 11); /* 11, 13, ..., 29 and 65 */
	assert_int_equal(st.bytes_read, 11 * ps());
	assert_int_equal(st.batches, 11); /* one read per present run */
	assert_memory_equal(l.mem + 10 * ps(), want + 10 * ps(), 20 * ps());
	assert_memory_equal(l.mem + 64 * ps(), want + 64 * ps(), 2 * ps());
	squib_pager_stats(l.p, &st);
	assert_int_equal(st.faults, 0);
	assert_int_equal(st.pages_present, 22);
	lazy_close(&l);
	munmap(want, pages * ps());
}

static void test_should_prefetch_overlapping_and_duplicate_runs_once(void **state)
{
	struct fixture *f = *state;
	uint64_t pages = 512, zeros, installed = 0, faulted;
	uint8_t *want = pattern_ram(pages, 7, &zeros);
	/* Out of order, overlapping, duplicated, one crossing a 1 MiB prefetch chunk. */
	const struct squib_ws_run runs[] = {{300, 10}, {100, 50}, {120, 10},  {100, 50},
					    {0, 1},    {140, 20}, {200, 300}, {499, 1}};
	struct squib_pager_stats st;
	struct lazy l;

	SKIP_WITHOUT_UFFD();
	squib_test_save_full(f->path, want, pages * ps(), false, NULL);
	lazy_open(&l, f->path, pages * ps(), 0);
	assert_memory_equal(l.mem + 205 * ps(), want + 205 * ps(), ps()); /* one fault first */
	squib_pager_stats(l.p, &st);
	faulted = st.pages_present; /* its batch: the present run 204..207 (203 is a hole) */
	assert_int_equal(faulted, 4);
	assert_int_equal(squib_pager_prefetch(l.p, runs, 8, &installed, NULL), 0);
	squib_pager_stats(l.p, &st);
	/* pages 0, 100..159, 200..499, once each; the fault's batch is not installed again */
	assert_int_equal(st.pages_present, 1 + 60 + 300);
	assert_int_equal(installed, 1 + 60 + 300 - faulted);
	assert_int_equal(st.pages_prefetched, installed);
	assert_int_equal(squib_pager_prefetch(l.p, runs, 8, &installed, NULL), 0);
	assert_int_equal(installed, 0); /* everything already there: nothing read */
	squib_pager_stats(l.p, &st);
	assert_int_equal(st.faults, 1);
	assert_memory_equal(l.mem + 100 * ps(), want + 100 * ps(), 60 * ps());
	assert_memory_equal(l.mem + 200 * ps(), want + 200 * ps(), 300 * ps());
	squib_pager_stats(l.p, &st);
	assert_int_equal(st.faults, 1);
	assert_int_equal(st.pages_copied + st.pages_zeroed, 1 + 60 + 300);
	assert_int_equal(st.pages_existing, 0);
	lazy_close(&l);
	munmap(want, pages * ps());
}

/* Touching and overlapping runs are merged before any page is visited: one read for
 * pages 10..29 (before: one per run), and a million runs over the same 256 pages cost
 * those pages once (before: runs x pages, minutes here). */
static void test_should_merge_runs_before_visiting_pages(void **state)
{
	struct fixture *f = *state;
	uint64_t pages = 256, zeros, installed = 0, n = 1u << 20;
	uint8_t *want = pattern_ram(pages, 0, &zeros);
	const struct squib_ws_run touching[] = {{20, 10}, {10, 5}, {15, 5}, {12, 10}};
	struct squib_ws_run *many = calloc(n, sizeof(*many));
	struct squib_pager_stats st;
	struct lazy l;

	SKIP_WITHOUT_UFFD();
	assert_non_null(many);
	squib_test_save_full(f->path, want, pages * ps(), false, NULL);
	lazy_open(&l, f->path, pages * ps(), 0);
	assert_int_equal(squib_pager_prefetch(l.p, touching, 4, &installed, NULL), 0);
	assert_int_equal(installed, 20);
	squib_pager_stats(l.p, &st);
	assert_int_equal(st.batches, 1);
	assert_int_equal(st.bytes_read, 20 * ps());
	for (uint64_t i = 0; i < n; i++)
		many[i] = (struct squib_ws_run){i % 7, pages - i % 7};
	assert_int_equal(squib_pager_prefetch(l.p, many, n, &installed, NULL), 0);
	assert_int_equal(installed, pages - 20);
	assert_memory_equal(l.mem, want, pages * ps());
	squib_pager_stats(l.p, &st);
	assert_int_equal(st.faults, 0);
	lazy_close(&l);
	free(many);
	munmap(want, pages * ps());
}

static bool stop_after_first_look(void *ctx)
{
	int *looks = ctx;

	return ++*looks > 1;
}

/* A prefetch asks the stop function between chunks and ends when told (serve's SIGTERM). */
static void test_should_stop_a_prefetch_between_chunks_when_asked(void **state)
{
	struct fixture *f = *state;
	uint64_t pages = 1024, zeros, installed = 0, chunk;
	uint8_t *want = pattern_ram(pages, 0, &zeros);
	const struct squib_ws_run all = {0, pages};
	struct squib_error_detail d;
	struct squib_pager_stats st;
	struct lazy l;
	int looks = 0;

	SKIP_WITHOUT_UFFD();
	chunk = (1u << 20) / ps();
	squib_test_save_full(f->path, want, pages * ps(), false, NULL);
	lazy_open(&l, f->path, pages * ps(), 0);
	squib_pager_set_prefetch_stop(l.p, stop_after_first_look, &looks);
	assert_int_equal(squib_pager_prefetch(l.p, &all, 1, &installed, &d), SQUIB_E_IO);
	assert_int_equal(d.os_errno, ECANCELED);
	assert_int_equal(looks, 2);
	assert_int_equal(installed, chunk); /* the first chunk, then the stop */
	squib_pager_stats(l.p, &st);
	assert_int_equal(st.pages_prefetched, chunk);
	squib_pager_set_prefetch_stop(l.p, NULL, NULL);
	assert_int_equal(squib_pager_prefetch(l.p, &all, 1, &installed, &d), 0);
	assert_int_equal(installed, pages - chunk);
	lazy_close(&l);
	munmap(want, pages * ps());
}

static uint64_t now_us(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (uint64_t)ts.tv_sec * 1000000u + (uint64_t)ts.tv_nsec / 1000u;
}

static bool count_looks(void *ctx)
{
	int *looks = ctx;

	return ++*looks < 0; /* never */
}

static bool stop_at_second_look(void *ctx)
{
	int *looks = ctx;

	return ++*looks >= 2;
}

/* The merge of a million runs asks the stop function while it sorts (at least every 64 Ki runs
 * of each pass), not only once it is done: before, the first look came after the whole sort
 * (250-875 ms of a SIGTERM ignored under serve --prefetch-ws). Told to stop at its second look,
 * the prefetch ends inside the merge with nothing installed. */
static void test_should_ask_the_stop_function_while_merging_runs(void **state)
{
	struct fixture *f = *state;
	uint64_t pages = 256, zeros, installed = 99, n = 1u << 20, t0;
	uint8_t *want = pattern_ram(pages, 0, &zeros);
	struct squib_ws_run *many = calloc(n, sizeof(*many));
	struct squib_error_detail d;
	struct squib_pager_stats st;
	struct lazy l;
	int looks = 0;

	SKIP_WITHOUT_UFFD();
	assert_non_null(many);
	for (uint64_t i = 0; i < n; i++)
		many[i] = (struct squib_ws_run){(i * 37) % 200, 57 - i % 7}; /* 0..255 */
	squib_test_save_full(f->path, want, pages * ps(), false, NULL);
	lazy_open(&l, f->path, pages * ps(), 0);
	squib_pager_set_prefetch_stop(l.p, stop_at_second_look, &looks);
	assert_int_equal(squib_pager_prefetch(l.p, many, n, &installed, &d), SQUIB_E_IO);
	assert_int_equal(d.os_errno, ECANCELED);
	assert_int_equal(looks, 2);
	assert_int_equal(installed, 0);
	squib_pager_stats(l.p, &st);
	assert_int_equal(st.pages_present, 0);
	looks = 0;
	squib_pager_set_prefetch_stop(l.p, count_looks, &looks);
	t0 = now_us();
	assert_int_equal(squib_pager_prefetch(l.p, many, n, &installed, &d), 0);
	/* one pass by page (256 pages): two loops over 16 x 64 Ki runs, a look every 64 Ki */
	print_message("1 Mi overlapping runs: merged and prefetched in %llu us, %d looks\n",
		      (unsigned long long)(now_us() - t0), looks);
	assert_true(looks >= 16);
	assert_int_equal(installed, pages);
	assert_memory_equal(l.mem, want, pages * ps());
	lazy_close(&l);
	free(many);
	munmap(want, pages * ps());
}

static void test_should_prefetch_all_pages(void **state)
{
	struct fixture *f = *state;
	uint64_t pages = 700, zeros, installed = 0;
	uint8_t *want = pattern_ram(pages, 3, &zeros);
	struct squib_pager_stats st;
	struct lazy l;

	SKIP_WITHOUT_UFFD();
	squib_test_save_full(f->path, want, pages * ps(), false, NULL);
	lazy_open(&l, f->path, pages * ps(), 0);
	assert_int_equal(squib_pager_prefetch_all(l.p, &installed, NULL), 0);
	assert_int_equal(installed, pages);
	assert_memory_equal(l.mem, want, pages * ps());
	squib_pager_stats(l.p, &st);
	assert_true(st.complete);
	assert_int_equal(st.faults, 0);
	assert_int_equal(st.bytes_read, (pages - zeros) * ps());
	assert_int_equal(st.pages_zeroed, zeros);
	lazy_close(&l);
	munmap(want, pages * ps());
}

static void test_should_refuse_prefetch_runs_outside_the_range(void **state)
{
	struct fixture *f = *state;
	uint64_t pages = 64, zeros, installed = 99;
	uint8_t *want = pattern_ram(pages, 0, &zeros);
	const struct squib_ws_run bad[][2] = {{{0, 4}, {60, 5}},
					      {{0, 4}, {65, 0}},
					      {{0, 4}, {UINT64_MAX, 2}},
					      {{0, 4}, {1, UINT64_MAX}}};
	struct squib_pager_stats st;
	struct squib_error_detail d;
	struct lazy l;

	SKIP_WITHOUT_UFFD();
	squib_test_save_full(f->path, want, pages * ps(), false, NULL);
	lazy_open(&l, f->path, pages * ps(), 0);
	for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
		assert_int_equal(squib_pager_prefetch(l.p, bad[i], 2, &installed, &d),
				 SQUIB_E_INVALID_ARGUMENT);
		assert_int_equal(installed, 0);
	}
	assert_int_equal(squib_pager_prefetch(l.p, NULL, 1, NULL, &d), SQUIB_E_INVALID_ARGUMENT);
	assert_int_equal(squib_pager_prefetch(NULL, bad[0], 1, NULL, &d), SQUIB_E_INVALID_ARGUMENT);
	assert_int_equal(squib_pager_prefetch(l.p, NULL, 0, &installed, &d), 0);
	squib_pager_stats(l.p, &st);
	assert_int_equal(st.pages_present, 0); /* nothing installed by a refused call */
	squib_pager_stop(l.p);
	assert_int_equal(squib_pager_prefetch_all(l.p, &installed, &d), SQUIB_E_INVALID_ARGUMENT);
	lazy_close(&l);
	munmap(want, pages * ps());
}

/* A uffd made and registered here, as another process would, served through attach. */
static int make_registered_uffd(void *mem, uint64_t size)
{
	struct uffdio_api api = {.api = UFFD_API, .features = UFFD_FEATURE_EVENT_REMOVE};
	struct uffdio_register reg = {.range = {(uint64_t)(uintptr_t)mem, size},
				      .mode = UFFDIO_REGISTER_MODE_MISSING};
	int fd = (int)syscall(SYS_userfaultfd, O_CLOEXEC | O_NONBLOCK);

	assert_true(fd >= 0);
	assert_int_equal(ioctl(fd, UFFDIO_API, &api), 0);
	assert_int_equal(ioctl(fd, UFFDIO_REGISTER, &reg), 0);
	return fd;
}

static void test_should_prefetch_through_an_attached_uffd(void **state)
{
	struct fixture *f = *state;
	uint64_t pages = 300, zeros, installed = 0, size = pages * ps();
	uint8_t *want = pattern_ram(pages, 4, &zeros), *mem;
	const struct squib_ws_run runs[] = {{0, 100}, {250, 50}};
	struct squib_page_source src;
	struct squib_pager_region r;
	struct squib_pager_stats st;
	struct squib_error_detail d;
	struct squib_memfile *m;
	struct squib_pager *p;
	struct uffdio_range ur;
	int fd;

	SKIP_WITHOUT_UFFD();
	squib_test_save_full(f->path, want, size, false, NULL);
	assert_int_equal(squib_memfile_open(f->path, &m, &d), 0);
	assert_int_equal(squib_page_source_file(m, &src, &d), 0);
	mem = anon(size);
	fd = make_registered_uffd(mem, size);
	r = (struct squib_pager_region){mem, size, 0};
	assert_int_equal(squib_pager_attach(fd, &r, 1, src, NULL, &p, &d), 0);
	assert_int_equal(squib_pager_prefetch(p, runs, 2, &installed, &d), 0);
	assert_int_equal(installed, 150);
	assert_memory_equal(mem, want, 100 * ps());
	assert_memory_equal(mem + 250 * ps(), want + 250 * ps(), 50 * ps());
	squib_pager_stats(p, &st);
	assert_int_equal(st.faults, 0);
	assert_memory_equal(mem, want, size); /* the rest by faults */
	squib_pager_stats(p, &st);
	assert_true(st.faults > 0);
	assert_true(st.complete);
	assert_int_equal(st.errors, 0);
	/* attach leaves the registration to the uffd's creator */
	ur = (struct uffdio_range){(uint64_t)(uintptr_t)mem, size};
	squib_pager_free(p);
	assert_int_equal(ioctl(fd, UFFDIO_UNREGISTER, &ur), -1); /* fd closed by the pager */
	squib_memfile_close(m);
	munmap(mem, size);
	munmap(want, size);
}

/* ---- record and background fill ---------------------------------------------------------- */

static void touch_page(const struct lazy *l, const uint8_t *want, uint64_t k)
{
	assert_memory_equal(l->mem + k * ps(), want + k * ps(), ps());
}

static void test_should_record_fault_driven_installs_in_order(void **state)
{
	struct fixture *f = *state;
	uint64_t pages = 256, zeros;
	uint8_t *want = pattern_ram(pages, 0, &zeros);
	struct squib_pager_options o = {.batch_bytes = 1, .record = true}; /* a page per fault */
	const struct squib_ws_run pre = {100, 20};
	const uint64_t order[] = {50, 10, 11, 12, 200, 105, 9};
	const struct squib_ws_run want_runs[] = {{50, 1}, {10, 3}, {200, 1}, {9, 1}};
	struct squib_workset ws;
	struct squib_error_detail d;
	struct lazy l;

	SKIP_WITHOUT_UFFD();
	memset(want + 12 * ps(), 0, ps()); /* a zero run is recorded too */
	squib_test_save_full(f->path, want, pages * ps(), false, NULL);
	lazy_open_opts(&l, f->path, pages * ps(), &o);
	assert_int_equal(squib_pager_prefetch(l.p, &pre, 1, NULL, &d), 0); /* not recorded */
	for (size_t i = 0; i < sizeof(order) / sizeof(order[0]); i++)
		touch_page(&l, want, order[i]); /* 105 was prefetched: no fault */
	assert_int_equal(squib_pager_recorded(l.p, &ws, &d), 0);
	assert_int_equal(ws.page_size, ps());
	assert_int_equal(ws.page_count, pages);
	for (int i = 0; i < SQUIB_MEMORY_ID_SIZE; i++)
		assert_int_equal(ws.memory_id[i], 0); /* unbound: the caller binds it */
	assert_int_equal(ws.run_count, 4);
	assert_memory_equal(ws.runs, want_runs, sizeof(want_runs));
	squib_workset_free(&ws);
	lazy_close(&l);
	munmap(want, pages * ps());
}

static void test_should_record_a_page_again_after_a_remove(void **state)
{
	struct fixture *f = *state;
	uint64_t pages = 64, zeros;
	uint8_t *want = pattern_ram(pages, 0, &zeros);
	struct squib_pager_options o = {.batch_bytes = 1, .record = true};
	const struct squib_ws_run want_runs[] = {{20, 2}, {20, 1}};
	struct squib_workset ws;
	struct lazy l;

	SKIP_WITHOUT_UFFD();
	squib_test_save_full(f->path, want, pages * ps(), false, NULL);
	lazy_open_opts(&l, f->path, pages * ps(), &o);
	touch_page(&l, want, 20);
	touch_page(&l, want, 21);
	assert_int_equal(madvise(l.mem + 20 * ps(), ps(), MADV_DONTNEED), 0);
	touch_page(&l, want, 20);
	assert_int_equal(squib_pager_recorded(l.p, &ws, NULL), 0);
	assert_int_equal(ws.run_count, 2);
	assert_memory_equal(ws.runs, want_runs, sizeof(want_runs));
	squib_workset_free(&ws);
	lazy_close(&l);
	munmap(want, pages * ps());
}

static void test_should_refuse_the_record_when_not_recording(void **state)
{
	struct fixture *f = *state;
	uint64_t pages = 16, zeros;
	uint8_t *want = pattern_ram(pages, 0, &zeros);
	struct squib_workset ws;
	struct squib_error_detail d;
	struct lazy l;

	SKIP_WITHOUT_UFFD();
	squib_test_save_full(f->path, want, pages * ps(), false, NULL);
	lazy_open(&l, f->path, pages * ps(), 0);
	assert_int_equal(squib_pager_recorded(l.p, &ws, &d), SQUIB_E_INVALID_ARGUMENT);
	assert_null(ws.runs);
	assert_int_equal(squib_pager_recorded(NULL, &ws, &d), SQUIB_E_INVALID_ARGUMENT);
	lazy_close(&l);
	munmap(want, pages * ps());
}

/* A scattered touch pattern, the same on every call: pages of a guest's working set. */
static void touch_pattern(const struct lazy *l, const uint8_t *want, uint64_t pages,
			  uint64_t touches)
{
	uint64_t x = 12345;

	for (uint64_t i = 0; i < touches; i++) {
		x = x * 6364136223846793005ull + 1442695040888963407ull;
		touch_page(l, want, (x >> 33) % pages);
	}
}

static void test_should_cut_faults_by_90_percent_with_a_recorded_working_set(void **state)
{
	struct fixture *f = *state;
	char *wsfile = squib_test_path(f->dir, "ram.ws");
	uint64_t pages = 4096, zeros, installed;
	uint8_t *want = pattern_ram(pages, 9, &zeros);
	struct squib_pager_options rec = {.record = true};
	struct squib_pager_stats one, two;
	struct squib_workset ws, back;
	struct squib_error_detail d;
	struct lazy l;

	SKIP_WITHOUT_UFFD();
	squib_test_save_full(f->path, want, pages * ps(), false, NULL);
	/* restore 1: on demand, recording */
	lazy_open_opts(&l, f->path, pages * ps(), &rec);
	touch_pattern(&l, want, pages, 600);
	squib_pager_stats(l.p, &one);
	assert_int_equal(squib_pager_recorded(l.p, &ws, &d), 0);
	assert_int_equal(squib_workset_write(wsfile, &ws, &d), 0);
	squib_workset_free(&ws);
	lazy_close(&l);
	/* restore 2: the same touches after prefetching the recorded set */
	assert_int_equal(squib_workset_read(wsfile, &back, &d), 0);
	lazy_open(&l, f->path, pages * ps(), 0);
	assert_int_equal(squib_pager_prefetch(l.p, back.runs, back.run_count, &installed, &d), 0);
	assert_int_equal(installed, one.pages_present);
	touch_pattern(&l, want, pages, 600);
	squib_pager_stats(l.p, &two);
	fprintf(stderr, "    faults: on demand %llu, after prefetch %llu (%llu pages prefetched)\n",
		(unsigned long long)one.faults, (unsigned long long)two.faults,
		(unsigned long long)installed);
	assert_true(one.faults >= 100);
	assert_true(two.faults * 10 <= one.faults); /* at least 90 % fewer */
	assert_int_equal(two.pages_present, one.pages_present);
	assert_int_equal(two.errors, 0);
	squib_workset_free(&back);
	lazy_close(&l);
	munmap(want, pages * ps());
	free(wsfile);
}

static bool fill_done(const struct squib_pager_stats *st)
{
	return st->fill_done;
}

static bool released(const struct squib_pager_stats *st)
{
	return st->released;
}

/* Waits (at most 20 s: a liveness bound, not a speed assertion) until done(stats). */
static void wait_until(const struct squib_pager *p, struct squib_pager_stats *st,
		       bool (*done)(const struct squib_pager_stats *), const char *what)
{
	for (int i = 0; i < 20000; i++) {
		squib_pager_stats(p, st);
		if (done(st))
			return;
		usleep(1000);
	}
	fail_msg("%s did not happen within 20 s", what);
}

static void wait_fill_done(const struct squib_pager *p, struct squib_pager_stats *st)
{
	wait_until(p, st, fill_done, "the background fill's end");
}

static void wait_released(const struct squib_pager *p, struct squib_pager_stats *st)
{
	wait_until(p, st, released, "the release of the memory");
}

static void test_should_fill_every_page_in_the_background(void **state)
{
	struct fixture *f = *state;
	uint64_t pages = 2048, zeros;
	uint8_t *want = pattern_ram(pages, 6, &zeros);
	struct squib_pager_options o = {
	    .background_fill = true, .fill_max_bytes = 1u << 20, .record = true};
	struct squib_pager_stats st;
	struct squib_workset ws;
	struct lazy l;

	SKIP_WITHOUT_UFFD();
	squib_test_save_full(f->path, want, pages * ps(), false, NULL);
	lazy_open_opts(&l, f->path, pages * ps(), &o);
	wait_fill_done(l.p, &st);
	assert_true(st.complete);
	assert_int_equal(st.pages_filled, pages);
	assert_int_equal(st.faults, 0);
	assert_int_equal(st.pages_zeroed, zeros);
	assert_int_equal(st.bytes_read, (pages - zeros) * ps()); /* holes never read */
	assert_memory_equal(l.mem, want, pages * ps());
	squib_pager_stats(l.p, &st);
	assert_int_equal(st.faults, 0);
	assert_int_equal(st.errors, 0);
	assert_int_equal(squib_pager_recorded(l.p, &ws, NULL), 0);
	assert_int_equal(ws.run_count, 0); /* filled pages are not recorded */
	squib_workset_free(&ws);
	lazy_close(&l);
	munmap(want, pages * ps());
}

/*
 * Fill + release: the pager installs everything, unregisters and ends; the
 * memory is ordinary anonymous memory from then on (MADV_DONTNEED reads
 * zeros, no fault is served, madvise does not wait for anyone).
 */
static void test_should_release_the_memory_once_every_page_is_present(void **state)
{
	struct fixture *f = *state;
	uint64_t pages = 1024, zeros;
	uint8_t *want = pattern_ram(pages, 8, &zeros), zero[4096] = {0};
	struct squib_pager_options o = {.background_fill = true, .release_when_complete = true};
	struct squib_pager_stats st, after;
	struct lazy l;

	SKIP_WITHOUT_UFFD();
	assert_true(ps() <= sizeof(zero));
	squib_test_save_full(f->path, want, pages * ps(), false, NULL);
	lazy_open_opts(&l, f->path, pages * ps(), &o);
	assert_memory_equal(l.mem, want, 10 * ps()); /* a fault or two may come first */
	wait_released(l.p, &st);
	assert_true(st.complete);
	assert_true(st.fill_done);
	assert_int_equal(st.errors, 0);
	assert_memory_equal(l.mem, want, pages * ps());
	/* Released: a removed page is plain anonymous memory again. */
	assert_int_equal(madvise(l.mem + 7 * ps(), ps(), MADV_DONTNEED), 0);
	assert_memory_equal(l.mem + 7 * ps(), zero, ps());
	squib_pager_stats(l.p, &after);
	assert_int_equal(after.faults, st.faults);
	assert_int_equal(after.removes, st.removes);
	lazy_close(&l);
	munmap(want, pages * ps());
}

/* Prefetching everything from the caller's thread releases too; an attached uffd refuses it. */
static void test_should_release_after_a_prefetch_and_refuse_release_when_attached(void **state)
{
	struct fixture *f = *state;
	uint64_t pages = 256, zeros, size = pages * ps();
	uint8_t *want = pattern_ram(pages, 9, &zeros), *mem;
	struct squib_pager_options o = {.release_when_complete = true};
	struct squib_page_source src;
	struct squib_pager_region r;
	struct squib_pager_stats st;
	struct squib_error_detail d;
	struct squib_pager *p = NULL;
	struct squib_memfile *m;
	struct lazy l;
	int fd;

	SKIP_WITHOUT_UFFD();
	squib_test_save_full(f->path, want, size, false, NULL);
	lazy_open_opts(&l, f->path, size, &o);
	assert_int_equal(squib_pager_prefetch_all(l.p, NULL, &d), 0);
	wait_released(l.p, &st);
	assert_int_equal(st.faults, 0);
	assert_memory_equal(l.mem, want, size);
	lazy_close(&l);

	assert_int_equal(squib_memfile_open(f->path, &m, &d), 0);
	assert_int_equal(squib_page_source_file(m, &src, &d), 0);
	mem = anon(size);
	fd = make_registered_uffd(mem, size);
	r = (struct squib_pager_region){mem, size, 0};
	assert_int_equal(squib_pager_attach(fd, &r, 1, src, &o, &p, &d), SQUIB_E_INVALID_ARGUMENT);
	assert_null(p);
	squib_memfile_close(m);
	munmap(mem, size);
	munmap(want, size);
}

static void test_should_fill_in_growing_chunks_around_faulted_pages(void **state)
{
	struct fixture *f = *state;
	uint64_t pages = 1024, zeros, batch = 16;
	uint8_t *want = pattern_ram(pages, 0, &zeros);
	struct squib_pager_options o = {.background_fill = true, .fill_max_bytes = 256 * ps()};
	struct squib_pager_stats st;
	struct lazy l;

	SKIP_WITHOUT_UFFD();
	squib_test_save_full(f->path, want, pages * ps(), false, NULL);
	lazy_open_opts(&l, f->path, pages * ps(), &o);
	touch_page(&l, want, pages - 1); /* may come before or during the fill */
	wait_fill_done(l.p, &st);
	assert_true(st.complete);
	assert_true(st.faults <= 1);
	assert_int_equal(st.pages_filled + st.faults * batch, pages);
	/* chunks 16, 32, 64, 128, 256, 256, 256, 16 (+ the fault's 16 somewhere): at most 10 reads
	 */
	assert_true(st.batches <= 10);
	assert_memory_equal(l.mem, want, pages * ps());
	lazy_close(&l);
	munmap(want, pages * ps());
}

/* Two regions over pages 0..63 and 128..191 of a 256-page file: pages 64..127 and 192..255
 * belong to no region and are never installed. */
static void test_should_prefetch_and_fill_only_what_regions_map(void **state)
{
	struct fixture *f = *state;
	uint64_t pages = 256, zeros, installed = 0;
	uint8_t *want = pattern_ram(pages, 4, &zeros), *a, *b;
	const struct squib_ws_run runs[] = {{32, 64}, {100, 40}, {250, 6}};
	struct squib_pager_options o = {.background_fill = true, .fill_max_bytes = 8 * ps()};
	struct squib_page_source src;
	struct squib_pager_region r[2];
	struct squib_pager_stats st;
	struct squib_error_detail d;
	struct squib_memfile *m;
	struct squib_pager *p, *q;

	SKIP_WITHOUT_UFFD();
	squib_test_save_full(f->path, want, pages * ps(), false, NULL);
	assert_int_equal(squib_memfile_open(f->path, &m, &d), 0);
	a = anon(64 * ps());
	b = anon(64 * ps());
	r[0] = (struct squib_pager_region){a, 64 * ps(), 0};
	r[1] = (struct squib_pager_region){b, 64 * ps(), 128};
	assert_int_equal(squib_page_source_file(m, &src, &d), 0);
	assert_int_equal(squib_pager_start(r, 2, src, NULL, &p, &d), 0);
	assert_int_equal(squib_pager_prefetch(p, runs, 3, &installed, &d), 0);
	assert_int_equal(installed, 32 + 12); /* 32..63 and 128..139 */
	assert_memory_equal(a + 32 * ps(), want + 32 * ps(), 32 * ps());
	assert_memory_equal(b, want + 128 * ps(), 12 * ps());
	squib_pager_stats(p, &st);
	assert_int_equal(st.faults, 0);
	squib_pager_free(p);
	munmap(a, 64 * ps());
	munmap(b, 64 * ps());
	/* the fill walks both regions, and only them */
	a = anon(64 * ps());
	b = anon(64 * ps());
	r[0].host = a;
	r[1].host = b;
	assert_int_equal(squib_page_source_file(m, &src, &d), 0);
	assert_int_equal(squib_pager_start(r, 2, src, &o, &q, &d), 0);
	wait_fill_done(q, &st);
	assert_true(st.complete);
	assert_int_equal(st.pages_filled, 128);
	assert_memory_equal(a, want, 64 * ps());
	assert_memory_equal(b, want + 128 * ps(), 64 * ps());
	squib_pager_stats(q, &st);
	assert_int_equal(st.faults, 0);
	squib_pager_free(q);
	squib_memfile_close(m);
	munmap(a, 64 * ps());
	munmap(b, 64 * ps());
	munmap(want, pages * ps());
}

static void test_should_return_a_prefetch_read_error_without_failing_the_pager(void **state)
{
	static const struct squib_page_source_ops ops = {fail_present, fail_read, fail_release};
	int released = 0;
	struct squib_page_source src = {&ops, &released, ps(), 16};
	struct squib_pager_region r;
	struct squib_error_detail d;
	struct squib_pager_stats st;
	struct squib_pager *p;
	uint64_t installed = 7;
	uint8_t *mem;

	(void)state;
	SKIP_WITHOUT_UFFD();
	mem = anon(16 * ps());
	r = (struct squib_pager_region){mem, 16 * ps(), 0};
	assert_int_equal(squib_pager_start(&r, 1, src, NULL, &p, &d), 0);
	assert_int_equal(squib_pager_prefetch_all(p, &installed, &d), SQUIB_E_MEMORY_IO);
	assert_int_equal(d.os_errno, ECONNRESET);
	assert_int_equal(installed, 0);
	assert_int_equal(squib_pager_prefetch_all(p, NULL, NULL), SQUIB_E_MEMORY_IO);
	assert_int_equal(squib_pager_error(p, NULL), 0); /* no memory was lost */
	squib_pager_stats(p, &st);
	assert_int_equal(st.pages_present, 0);
	assert_int_equal(st.errors, 0);
	squib_pager_free(p);
	assert_int_equal(released, 1);
	munmap(mem, 16 * ps());
}

static void test_should_end_the_fill_on_a_source_error(void **state)
{
	static const struct squib_page_source_ops ops = {fail_present, fail_read, fail_release};
	int released = 0;
	struct squib_page_source src = {&ops, &released, ps(), 16};
	struct squib_pager_options o = {.background_fill = true};
	struct squib_pager_region r;
	struct squib_error_detail d;
	struct squib_pager_stats st;
	struct squib_pager *p;
	uint8_t *mem;

	(void)state;
	SKIP_WITHOUT_UFFD();
	mem = anon(16 * ps());
	r = (struct squib_pager_region){mem, 16 * ps(), 0};
	assert_int_equal(squib_pager_start(&r, 1, src, &o, &p, &d), 0);
	wait_fill_done(p, &st);
	assert_int_equal(squib_pager_error(p, &d), SQUIB_E_MEMORY_IO);
	assert_int_equal(d.os_errno, ECONNRESET);
	assert_int_equal(st.errors, 1); /* not retried in a loop */
	assert_int_equal(st.pages_filled, 0);
	squib_pager_free(p);
	munmap(mem, 16 * ps());
}

/* ---- another process's uffd -------------------------------------------------------------- */

static void send_fd(int sock, int fd, uint64_t addr)
{
	char cbuf[CMSG_SPACE(sizeof(int))];
	struct iovec io = {&addr, sizeof(addr)};
	struct msghdr mh = {
	    .msg_iov = &io, .msg_iovlen = 1, .msg_control = cbuf, .msg_controllen = sizeof(cbuf)};
	struct cmsghdr *c = CMSG_FIRSTHDR(&mh);

	c->cmsg_level = SOL_SOCKET;
	c->cmsg_type = SCM_RIGHTS;
	c->cmsg_len = CMSG_LEN(sizeof(int));
	memcpy(CMSG_DATA(c), &fd, sizeof(int));
	if (sendmsg(sock, &mh, 0) != (ssize_t)sizeof(addr))
		_exit(3);
}

static int recv_fd(int sock, uint64_t *addr)
{
	char cbuf[CMSG_SPACE(sizeof(int))];
	struct iovec io = {addr, sizeof(*addr)};
	struct msghdr mh = {
	    .msg_iov = &io, .msg_iovlen = 1, .msg_control = cbuf, .msg_controllen = sizeof(cbuf)};
	struct cmsghdr *c;
	int fd = -1;

	assert_int_equal(recvmsg(sock, &mh, 0), sizeof(*addr));
	c = CMSG_FIRSTHDR(&mh);
	assert_non_null(c);
	memcpy(&fd, CMSG_DATA(c), sizeof(int));
	return fd;
}

/* The child: guest memory and its uffd live here; the parent's pager fills it. */
static void child_vm(int sock, const uint8_t *want, uint64_t size, const struct squib_ws_run *run)
{
	void *mem = mmap(NULL, size, PROT_READ | PROT_WRITE,
			 MAP_PRIVATE | MAP_ANONYMOUS | MAP_NORESERVE, -1, 0);
	struct uffdio_api api = {.api = UFFD_API, .features = UFFD_FEATURE_EVENT_REMOVE};
	struct uffdio_register reg = {.range = {(uint64_t)(uintptr_t)mem, size},
				      .mode = UFFDIO_REGISTER_MODE_MISSING};
	int fd = (int)syscall(SYS_userfaultfd, O_CLOEXEC | O_NONBLOCK);
	uint8_t cmd, ok;

	if (mem == MAP_FAILED || fd < 0 || ioctl(fd, UFFDIO_API, &api) ||
	    ioctl(fd, UFFDIO_REGISTER, &reg))
		_exit(2);
	send_fd(sock, fd, (uint64_t)(uintptr_t)mem);
	if (read(sock, &cmd, 1) != 1) /* prefetched: check it */
		_exit(4);
	ok = !memcmp((uint8_t *)mem + run->first_page * ps(), want + run->first_page * ps(),
		     run->page_count * ps());
	if (write(sock, &ok, 1) != 1 || read(sock, &cmd, 1) != 1)
		_exit(5);
	_exit(0);
}

static void test_should_prefetch_into_another_process_and_fail_once_it_is_gone(void **state)
{
	struct fixture *f = *state;
	uint64_t pages = 256, zeros, installed = 0, size = pages * ps(), addr;
	uint8_t *want = pattern_ram(pages, 3, &zeros), go = 1, ok = 0;
	const struct squib_ws_run run = {40, 100}, later = {200, 10};
	struct squib_page_source src;
	struct squib_pager_region r;
	struct squib_pager_stats st;
	struct squib_error_detail d;
	struct squib_memfile *m;
	struct squib_pager *p;
	int sv[2], status, fd;
	pid_t pid;

	SKIP_WITHOUT_UFFD();
	squib_test_save_full(f->path, want, size, false, NULL);
	assert_int_equal(socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, sv), 0);
	if ((pid = fork()) == 0) {
		close(sv[0]);
		child_vm(sv[1], want, size, &run);
	}
	assert_true(pid > 0);
	close(sv[1]);
	assert_int_equal(squib_memfile_open(f->path, &m, &d), 0);
	assert_int_equal(squib_page_source_file(m, &src, &d), 0);
	fd = recv_fd(sv[0], &addr);
	/* the child's address: never dereferenced here */
	r = (struct squib_pager_region){(void *)(uintptr_t)addr, size, 0};
	assert_int_equal(squib_pager_attach(fd, &r, 1, src, NULL, &p, &d), 0);
	assert_int_equal(squib_pager_prefetch(p, &run, 1, &installed, &d), 0);
	assert_int_equal(installed, 100);
	assert_int_equal(write(sv[0], &go, 1), 1);
	assert_int_equal(read(sv[0], &ok, 1), 1);
	assert_int_equal(ok, 1); /* the child reads the file's bytes */
	squib_pager_stats(p, &st);
	assert_int_equal(st.faults, 0);
	assert_int_equal(write(sv[0], &go, 1), 1);
	assert_int_equal(waitpid(pid, &status, 0), pid);
	assert_true(WIFEXITED(status) && WEXITSTATUS(status) == 0);
	assert_int_equal(squib_pager_prefetch(p, &later, 1, &installed, &d), SQUIB_E_MEMORY_IO);
	fprintf(stderr, "    (prefetch into an exited process: %s)\n", strerror(d.os_errno));
	assert_int_equal(installed, 0);
	squib_pager_free(p);
	squib_memfile_close(m);
	close(sv[0]);
	munmap(want, size);
}

/* ---- the LAZY backend -------------------------------------------------------------------- */

static void test_should_open_a_full_file_lazily(void **state)
{
	struct fixture *f = *state;
	uint64_t pages = 300, zeros;
	uint8_t *want = pattern_ram(pages, 4, &zeros);
	struct squib_guest_memory *g;
	struct squib_error_detail d;
	struct squib_pager_stats st;

	SKIP_WITHOUT_UFFD();
	squib_test_save_full(f->path, want, pages * ps(), false, NULL);
	assert_int_equal(
	    squib_guest_memory_open(f->path, NULL, 0, NULL, SQUIB_BACKEND_LAZY, &g, &d), 0);
	assert_int_equal(squib_guest_memory_backend(g), SQUIB_BACKEND_LAZY);
	assert_non_null(squib_guest_memory_pager(g));
	assert_int_equal(squib_guest_memory_region_count(g), 1);
	assert_int_equal(squib_guest_memory_region(g, 0)->guest_addr, SQUIB_TEST_GUEST_BASE);
	assert_memory_equal(squib_guest_memory_region(g, 0)->host, want, pages * ps());
	squib_pager_stats(squib_guest_memory_pager(g), &st);
	assert_int_equal(st.pages_zeroed, zeros);
	assert_int_equal(st.bytes_read, (pages - zeros) * ps());
	squib_guest_memory_free(g);
	munmap(want, pages * ps());
}

static void test_should_open_a_diff_chain_lazily(void **state)
{
	struct fixture *f = *state;
	uint64_t pages = 200, zeros;
	uint8_t *mem = pattern_ram(pages, 6, &zeros);
	char *diff = squib_test_path(f->dir, "diff.mem");
	const uint64_t dirty[] = {0, 1, 7, 60, 61, 62, 199};
	const char *chain[1] = {f->path};
	struct squib_memfile_manifest base;
	struct squib_guest_memory *g, *c;
	struct squib_error_detail d;

	SKIP_WITHOUT_UFFD();
	squib_test_save_full(f->path, mem, pages * ps(), false, &base);
	for (size_t i = 0; i < sizeof(dirty) / sizeof(dirty[0]); i++)
		squib_test_fill_page(mem, dirty[i], 0xd1ff + (uint32_t)i);
	memset(mem + 60 * ps(), 0, ps()); /* a cleared page is data in a diff */
	squib_test_save_diff(diff, mem, pages * ps(), base.layout.id, dirty,
			     sizeof(dirty) / sizeof(dirty[0]), false, NULL);
	assert_int_equal(squib_guest_memory_open(diff, NULL, 0, NULL, SQUIB_BACKEND_LAZY, &g, &d),
			 SQUIB_E_INVALID_ARGUMENT); /* a diff needs its chain */
	assert_int_equal(squib_guest_memory_open(diff, chain, 1, NULL, SQUIB_BACKEND_LAZY, &g, &d),
			 0);
	assert_int_equal(squib_guest_memory_open(diff, chain, 1, NULL, SQUIB_BACKEND_COPY, &c, &d),
			 0);
	assert_memory_equal(squib_guest_memory_region(g, 0)->host, mem, pages * ps());
	assert_memory_equal(squib_guest_memory_region(c, 0)->host,
			    squib_guest_memory_region(g, 0)->host, pages * ps());
	squib_guest_memory_free(c);
	squib_guest_memory_free(g);
	squib_memfile_manifest_release(&base);
	free(diff);
	munmap(mem, pages * ps());
}

#define T(fn) cmocka_unit_test_setup_teardown(fn, setup, teardown)

int main(void)
{
	const struct CMUnitTest tests[] = {
	    T(test_should_serve_memory_equal_to_the_file_to_several_threads),
	    T(test_should_install_zero_pages_without_reading_the_file),
	    T(test_should_resolve_a_batch_of_pages_per_fault),
	    T(test_should_honour_a_configured_batch_bound),
	    T(test_should_serve_a_removed_range_again),
	    T(test_should_stop_cleanly_with_pages_never_served),
	    T(test_should_report_a_source_error_and_wake_the_thread_at_stop),
	    T(test_should_refuse_bad_geometry_and_release_the_source),
	    T(test_should_retry_a_copy_that_races_a_remove),
	    T(test_should_prefetch_pages_so_that_touching_them_never_faults),
	    T(test_should_prefetch_absent_pages_as_zeros_without_reading),
	    T(test_should_prefetch_overlapping_and_duplicate_runs_once),
	    T(test_should_prefetch_all_pages),
	    T(test_should_merge_runs_before_visiting_pages),
	    T(test_should_stop_a_prefetch_between_chunks_when_asked),
	    T(test_should_ask_the_stop_function_while_merging_runs),
	    T(test_should_refuse_prefetch_runs_outside_the_range),
	    T(test_should_prefetch_through_an_attached_uffd),
	    T(test_should_record_fault_driven_installs_in_order),
	    T(test_should_record_a_page_again_after_a_remove),
	    T(test_should_refuse_the_record_when_not_recording),
	    T(test_should_cut_faults_by_90_percent_with_a_recorded_working_set),
	    T(test_should_fill_every_page_in_the_background),
	    T(test_should_release_the_memory_once_every_page_is_present),
	    T(test_should_release_after_a_prefetch_and_refuse_release_when_attached),
	    T(test_should_fill_in_growing_chunks_around_faulted_pages),
	    T(test_should_prefetch_and_fill_only_what_regions_map),
	    T(test_should_return_a_prefetch_read_error_without_failing_the_pager),
	    T(test_should_end_the_fill_on_a_source_error),
	    T(test_should_prefetch_into_another_process_and_fail_once_it_is_gone),
	    T(test_should_open_a_full_file_lazily),
	    T(test_should_open_a_diff_chain_lazily),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
