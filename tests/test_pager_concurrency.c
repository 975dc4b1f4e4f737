/* SPDX-License-Identifier: Apache-2.0 */
/*
 * The pager under concurrency (run under TSan too: the name ends in
 * _concurrency): threads faulting the same pages at once, a thread removing
 * ranges (MADV_DONTNEED) while others read, a thread reading statistics all
 * the while. Real userfaultfd; skipped loudly without it.
 */
#include "pair.h"
#include "testutil.h"

#include <errno.h>
#include <fcntl.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/syscall.h>
#include <unistd.h>

#include <squib/memfile.h>
#include <squib/pager.h>
#include <squib/workset.h>

#define PAGES	512
#define READERS 4
#define ROUNDS	3

struct shared {
	uint8_t *mem;
	const uint8_t *want;
	uint64_t ps;
	const struct squib_pager *pager;
	atomic_bool done;
	atomic_uint_fast64_t bad;
};

/* Every reader walks all pages in the same order: they fault the same pages at once. */
static void *reader(void *arg)
{
	struct shared *s = arg;

	for (int r = 0; r < ROUNDS; r++)
		for (uint64_t k = 0; k < PAGES; k++)
			if (memcmp(s->mem + k * s->ps, s->want + k * s->ps, s->ps))
				atomic_fetch_add(&s->bad, 1);
	return NULL;
}

/* Drops ranges while the readers run: they must read the file's content again. */
static void *remover(void *arg)
{
	struct shared *s = arg;
	uint64_t k = 0;

	while (!atomic_load(&s->done)) {
		madvise(s->mem + k * s->ps, 8 * s->ps, MADV_DONTNEED);
		k = (k + 37) % (PAGES - 8);
		usleep(200);
	}
	return NULL;
}

static void *stats_reader(void *arg)
{
	struct shared *s = arg;
	struct squib_pager_stats st;

	while (!atomic_load(&s->done)) {
		squib_pager_stats(s->pager, &st);
		if (st.pages_present > st.page_count)
			atomic_fetch_add(&s->bad, 1);
		usleep(100);
	}
	return NULL;
}

static void test_should_serve_concurrent_faults_and_removes(void **state)
{
	char *dir = squib_test_tmpdir(), *path = squib_test_path(dir, "c.mem");
	uint64_t ps = squib_test_page_size();
	uint8_t *want = squib_test_guest_ram(PAGES * ps, 77);
	struct squib_memfile *m;
	struct squib_page_source src;
	struct squib_pager_region r;
	struct squib_pager *p;
	struct squib_pager_stats st;
	struct squib_error_detail d;
	struct shared s;
	pthread_t rd[READERS], rm, sr;

	(void)state;
	if (squib_test_uffd_missing("pager"))
		skip();
	for (uint64_t k = 0; k < PAGES; k += 3)
		memset(want + k * ps, 0, ps);
	squib_test_save_full(path, want, PAGES * ps, false, NULL);
	assert_int_equal(squib_memfile_open(path, &m, &d), 0);
	assert_int_equal(squib_page_source_file(m, &src, &d), 0);
	memset(&s, 0, sizeof(s));
	s.mem = mmap(NULL, PAGES * ps, PROT_READ | PROT_WRITE,
		     MAP_PRIVATE | MAP_ANONYMOUS | MAP_NORESERVE, -1, 0);
	assert_true(s.mem != MAP_FAILED);
	s.want = want;
	s.ps = ps;
	r = (struct squib_pager_region){s.mem, PAGES * ps, 0};
	assert_int_equal(squib_pager_start(&r, 1, src, NULL, &p, &d), 0);
	s.pager = p;
	assert_int_equal(pthread_create(&rm, NULL, remover, &s), 0);
	assert_int_equal(pthread_create(&sr, NULL, stats_reader, &s), 0);
	for (int i = 0; i < READERS; i++)
		assert_int_equal(pthread_create(&rd[i], NULL, reader, &s), 0);
	for (int i = 0; i < READERS; i++)
		pthread_join(rd[i], NULL);
	atomic_store(&s.done, true);
	pthread_join(rm, NULL);
	pthread_join(sr, NULL);
	assert_int_equal(atomic_load(&s.bad), 0);
	assert_memory_equal(s.mem, want, PAGES * ps);
	squib_pager_stats(p, &st);
	assert_int_equal(st.errors, 0);
	assert_int_equal(squib_pager_error(p, NULL), 0);
	assert_true(st.faults > 0);
	squib_pager_free(p);
	squib_memfile_close(m);
	munmap(s.mem, PAGES * ps);
	munmap(want, PAGES * ps);
	squib_test_rmtree(dir);
	free(path);
	free(dir);
}

/* ---- prefetch and background fill racing faults ---------------------------------------- */

struct prefetcher {
	struct squib_pager *p;
	int rc;
	uint64_t installed;
};

/* Prefetches the whole range in overlapping runs from the top down, against the readers. */
static void *prefetch_all_runs(void *arg)
{
	struct prefetcher *f = arg;
	struct squib_ws_run runs[PAGES / 32];
	uint64_t n = 0, got = 0;

	for (uint64_t k = PAGES; k >= 48; k -= 32)
		runs[n++] = (struct squib_ws_run){k - 48, 48};
	f->rc = squib_pager_prefetch(f->p, runs, n, &got, NULL);
	f->installed = got;
	if (!f->rc)
		f->rc = squib_pager_prefetch_all(f->p, &got, NULL);
	f->installed += got;
	return NULL;
}

struct racer {
	struct squib_memfile *m;
	struct squib_pager *p;
	struct shared s;
	uint8_t *want;
	char *dir, *path;
};

static void racer_open(struct racer *r, const struct squib_pager_options *o)
{
	uint64_t ps = squib_test_page_size();
	struct squib_page_source src;
	struct squib_pager_region reg;
	struct squib_error_detail d;

	r->dir = squib_test_tmpdir();
	r->path = squib_test_path(r->dir, "c.mem");
	r->want = squib_test_guest_ram(PAGES * ps, 91);
	for (uint64_t k = 0; k < PAGES; k += 5)
		memset(r->want + k * ps, 0, ps);
	squib_test_save_full(r->path, r->want, PAGES * ps, false, NULL);
	assert_int_equal(squib_memfile_open(r->path, &r->m, &d), 0);
	assert_int_equal(squib_page_source_file(r->m, &src, &d), 0);
	memset(&r->s, 0, sizeof(r->s));
	r->s.mem = mmap(NULL, PAGES * ps, PROT_READ | PROT_WRITE,
			MAP_PRIVATE | MAP_ANONYMOUS | MAP_NORESERVE, -1, 0);
	assert_true(r->s.mem != MAP_FAILED);
	r->s.want = r->want;
	r->s.ps = ps;
	reg = (struct squib_pager_region){r->s.mem, PAGES * ps, 0};
	assert_int_equal(squib_pager_start(&reg, 1, src, o, &r->p, &d), 0);
	r->s.pager = r->p;
}

static void racer_close(struct racer *r)
{
	uint64_t ps = squib_test_page_size();

	squib_pager_free(r->p);
	squib_memfile_close(r->m);
	munmap(r->s.mem, PAGES * ps);
	munmap(r->want, PAGES * ps);
	squib_test_rmtree(r->dir);
	free(r->path);
	free(r->dir);
}

/* Prefetch, fill and faults at once; with `release`, the pager then lets the memory go. */
static void prefetch_fill_race(bool release)
{
	struct squib_pager_options o = {
	    .background_fill = true, .record = true, .release_when_complete = release};
	struct squib_pager_stats st;
	struct prefetcher pf;
	struct squib_workset ws;
	struct racer r;
	pthread_t rd[READERS], pt, sr;

	if (squib_test_uffd_missing("pager"))
		skip();
	racer_open(&r, &o);
	pf = (struct prefetcher){r.p, -1, 0};
	assert_int_equal(pthread_create(&sr, NULL, stats_reader, &r.s), 0);
	assert_int_equal(pthread_create(&pt, NULL, prefetch_all_runs, &pf), 0);
	for (int i = 0; i < READERS; i++)
		assert_int_equal(pthread_create(&rd[i], NULL, reader, &r.s), 0);
	for (int i = 0; i < READERS; i++)
		pthread_join(rd[i], NULL);
	pthread_join(pt, NULL);
	atomic_store(&r.s.done, true);
	pthread_join(sr, NULL);
	assert_int_equal(pf.rc, 0);
	assert_int_equal(atomic_load(&r.s.bad), 0);
	assert_memory_equal(r.s.mem, r.want, PAGES * r.s.ps);
	squib_pager_stats(r.p, &st);
	for (int t = 0; t < 20000 && !st.complete; t++) { /* the fill may be mid-install */
		usleep(1000);
		squib_pager_stats(r.p, &st);
	}
	assert_int_equal(st.errors, 0);
	assert_true(st.complete);
	/* every page installed exactly once, by one of the three; faults' pages recorded */
	assert_int_equal(st.pages_copied + st.pages_zeroed, PAGES);
	assert_int_equal(st.pages_prefetched, pf.installed);
	assert_int_equal(squib_pager_recorded(r.p, &ws, NULL), 0);
	assert_int_equal(squib_workset_pages(&ws) + st.pages_prefetched + st.pages_filled, PAGES);
	if (release) {
		for (int t = 0; t < 20000 && !st.released; t++) { /* liveness bound */
			usleep(1000);
			squib_pager_stats(r.p, &st);
		}
		assert_true(st.released);
		assert_memory_equal(r.s.mem, r.want, PAGES * r.s.ps);
	}
	squib_workset_free(&ws);
	racer_close(&r);
}

static void test_should_prefetch_and_fill_while_threads_fault(void **state)
{
	(void)state;
	prefetch_fill_race(false);
}

static void test_should_release_after_a_race_of_prefetch_fill_and_faults(void **state)
{
	(void)state;
	prefetch_fill_race(true);
}

static void test_should_prefetch_while_ranges_are_removed(void **state)
{
	struct prefetcher pf;
	struct squib_pager_stats st;
	struct racer r;
	pthread_t rd[READERS], rm, pt;

	(void)state;
	if (squib_test_uffd_missing("pager"))
		skip();
	racer_open(&r, NULL);
	pf = (struct prefetcher){r.p, -1, 0};
	assert_int_equal(pthread_create(&rm, NULL, remover, &r.s), 0);
	for (int i = 0; i < READERS; i++)
		assert_int_equal(pthread_create(&rd[i], NULL, reader, &r.s), 0);
	for (int round = 0; round < 3; round++) { /* prefetch against removes (EAGAIN) */
		assert_int_equal(pthread_create(&pt, NULL, prefetch_all_runs, &pf), 0);
		pthread_join(pt, NULL);
		assert_int_equal(pf.rc, 0);
	}
	for (int i = 0; i < READERS; i++)
		pthread_join(rd[i], NULL);
	atomic_store(&r.s.done, true);
	pthread_join(rm, NULL);
	assert_int_equal(atomic_load(&r.s.bad), 0);
	assert_memory_equal(r.s.mem, r.want, PAGES * r.s.ps);
	squib_pager_stats(r.p, &st);
	assert_int_equal(st.errors, 0);
	assert_int_equal(squib_pager_error(r.p, NULL), 0);
	fprintf(stderr, "    (removes %llu, EAGAIN retries %llu, prefetched %llu)\n",
		(unsigned long long)st.removes, (unsigned long long)st.eagain,
		(unsigned long long)st.pages_prefetched);
	racer_close(&r);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
	    cmocka_unit_test(test_should_serve_concurrent_faults_and_removes),
	    cmocka_unit_test(test_should_prefetch_and_fill_while_threads_fault),
	    cmocka_unit_test(test_should_release_after_a_race_of_prefetch_fill_and_faults),
	    cmocka_unit_test(test_should_prefetch_while_ranges_are_removed),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
