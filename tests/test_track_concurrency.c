/* SPDX-License-Identifier: Apache-2.0 */
/*
 * Dirty trackers under concurrency (label concurrency; also run under TSan):
 * writer threads write tracked memory (or report VMM writes) while another
 * thread harvests over and over. No write may be lost, including a write
 * that lands just after a harvest took its page:
 *
 *   before each write, a writer notes k = the number of harvests completed;
 *   the harvester notes, per page, the index of the last harvest reporting it;
 *   at the end (after a final harvest) every page's last write must have
 *   been reported by a harvest numbered >= its k.
 *
 * A harvest numbered below k finished before the write began, so only a
 * later one can report it; if re-arming after a harvest ever lost a write,
 * the page's last report would be too early. Worker threads never call
 * cmocka asserts; the main thread checks after joining. No timing.
 */
#include "testutil.h"

#include <errno.h>
#include <pthread.h>
#include <sched.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <unistd.h>

#include <squib/track.h>

#define GPA	    0x40000000ull
#define REGION_SIZE (16ull << 20) /* eight 2 MiB blocks */
#define BLOCK	    (2ull << 20)
#define WRITERS	    3
#define ROUNDS	    12
#define NEVER	    UINT64_MAX

enum kind { UFFD, FAULT, MARKS };

struct shared {
	enum kind kind;
	struct squib_tracker *t;
	uint8_t *mem;
	uint64_t page; /* host page size */
	uint64_t npages;
	_Atomic uint64_t harvests; /* completed */
	_Atomic int writers_left;
	uint64_t *last_k;    /* per page, written by its one writer */
	uint64_t *last_seen; /* per page, written by the harvester only */
	_Atomic uint64_t errors;
};

struct writer {
	struct shared *s;
	uint64_t first; /* this writer's pages: first, first + WRITERS, ... */
};

static void write_one(struct shared *s, uint64_t p, uint8_t v)
{
	if (s->kind == MARKS)
		squib_tracker_mark_write(s->t, GPA + p * s->page, 1);
	else
		((volatile uint8_t *)s->mem)[p * s->page + 1] = v;
}

/* Interleaved pages, so every 2 MiB block is shared by all writers. */
static void *writer_main(void *arg)
{
	struct writer *w = arg;
	struct shared *s = w->s;

	for (int round = 0; round < ROUNDS; round++) {
		/* Each round writes a different subset: some pages skip some rounds. */
		for (uint64_t p = w->first; p < s->npages; p += WRITERS) {
			if ((p + (uint64_t)round) % 3 == 0)
				continue;
			s->last_k[p] = atomic_load(&s->harvests);
			write_one(s, p, (uint8_t)round);
		}
	}
	atomic_fetch_sub(&s->writers_left, 1);
	return NULL;
}

/* Harvest once as harvest number `index`, noting every reported page. */
static int harvest_once(struct shared *s, struct squib_dirty_bitmap *dst, uint64_t index)
{
	uint64_t *pages = NULL;
	size_t n = 0;
	int rc = squib_tracker_harvest(s->t, dst, NULL);

	if (!rc)
		rc = squib_dirty_bitmap_drain_alloc(dst, &pages, &n, NULL);
	for (size_t i = 0; i < n; i++)
		s->last_seen[pages[i]] = index;
	free(pages);
	return rc;
}

static void *harvester_main(void *arg)
{
	struct shared *s = arg;
	struct squib_dirty_bitmap *dst = NULL;

	if (squib_dirty_bitmap_new(GPA, REGION_SIZE, s->page, &dst, NULL)) {
		atomic_fetch_add(&s->errors, 1);
		return NULL;
	}
	while (atomic_load(&s->writers_left) > 0) {
		uint64_t index = atomic_load(&s->harvests);

		if (harvest_once(s, dst, index))
			atomic_fetch_add(&s->errors, 1);
		atomic_store(&s->harvests, index + 1);
	}
	squib_dirty_bitmap_free(dst);
	return NULL;
}

/*
 * Stretch the fault handler's windows so harvests land inside them. Between
 * marking a page and granting write on it, wait for two more harvests to
 * complete: a correct tracker holds every harvest back while a handler is
 * there (the harvest window in track_fault.c), so the wait gives up after a
 * bounded number of yields; without that window the harvests go through, the
 * grant lands after them, and the test sees lost writes. Elsewhere, yield once.
 */
#define STRETCH_YIELDS 200

static void stretch(void *ctx, enum squib_dirty_marker_step step)
{
	_Atomic uint64_t *harvests = ctx;
	uint64_t until = atomic_load(harvests) + 2;

	if (step != SQUIB_DIRTY_MARKER_MARKED) {
		sched_yield();
		return;
	}
	for (int i = 0; i < STRETCH_YIELDS && atomic_load(harvests) < until; i++)
		sched_yield();
}

static struct squib_tracker *make_tracker(enum kind kind, const struct squib_memory_map *map,
					  _Atomic uint64_t *harvests)
{
	struct squib_tracked_region_options opts = SQUIB_TRACKED_REGION_OPTIONS_INIT;
	struct squib_dirty_hooks hooks = {(void *)harvests, stretch};
	struct squib_tracker *t = NULL;
	struct squib_error_detail d;
	int rc;

	opts.hooks = &hooks; /* copied by the tracker */
	if (kind == UFFD)
		rc = squib_tracker_uffd_wp_new(map, &t, &d);
	else if (kind == FAULT)
		rc = squib_tracker_fault_new(map, &opts, &t, &d);
	else
		rc = squib_tracker_vmm_marks_new(map, &t, &d);
	if (kind == UFFD && rc == SQUIB_E_IO && d.os_errno == ENOSYS) {
		fprintf(stderr, "!!!!! SKIPPED: this kernel has no userfaultfd (ENOSYS) !!!!!\n");
		skip();
	}
	assert_int_equal(rc, 0);
	return t;
}

/* Is page p inside a 2 MiB block that some writer wrote? */
static bool in_written_block(const struct shared *s, uint64_t p)
{
	uint64_t per_block = BLOCK / s->page, b0 = p / per_block * per_block;

	for (uint64_t q = b0; q < b0 + per_block; q++)
		if (s->last_k[q] != NEVER)
			return true;
	return false;
}

static void check_reports(const struct shared *s)
{
	uint64_t written = 0;

	for (uint64_t p = 0; p < s->npages; p++) {
		if (s->last_k[p] == NEVER) {
			/* Exact trackers report only written pages; the fault tracker their blocks.
			 */
			if (s->kind != FAULT || !in_written_block(s, p))
				assert_true(s->last_seen[p] == NEVER);
			continue;
		}
		written++;
		if (s->last_seen[p] == NEVER || s->last_seen[p] < s->last_k[p])
			fail_msg(
			    "page %llu: last written after %llu harvests, last reported by #%lld",
			    (unsigned long long)p, (unsigned long long)s->last_k[p],
			    s->last_seen[p] == NEVER ? -1ll : (long long)s->last_seen[p]);
	}
	assert_true(written > 0);
}

static void run(enum kind kind)
{
	struct shared s = {.kind = kind, .page = (uint64_t)sysconf(_SC_PAGESIZE)};
	struct squib_guest_region r = {GPA, REGION_SIZE, NULL, 0};
	struct squib_memory_map map = {&r, 1};
	struct squib_dirty_bitmap *dst = NULL;
	struct writer w[WRITERS];
	pthread_t wt[WRITERS], ht;

	s.npages = REGION_SIZE / s.page;
	s.mem = mmap(NULL, REGION_SIZE, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
	assert_true(s.mem != MAP_FAILED);
	if (kind != MARKS)
		r.hva = s.mem;
	s.last_k = malloc(s.npages * sizeof(uint64_t));
	s.last_seen = malloc(s.npages * sizeof(uint64_t));
	assert_non_null(s.last_k);
	assert_non_null(s.last_seen);
	memset(s.last_k, 0xff, s.npages * sizeof(uint64_t));
	memset(s.last_seen, 0xff, s.npages * sizeof(uint64_t));
	s.t = make_tracker(kind, &map, &s.harvests);
	assert_int_equal(squib_tracker_start(s.t, NULL), 0);
	atomic_init(&s.writers_left, WRITERS);
	assert_int_equal(pthread_create(&ht, NULL, harvester_main, &s), 0);
	for (int i = 0; i < WRITERS; i++) {
		w[i] = (struct writer){&s, (uint64_t)i};
		assert_int_equal(pthread_create(&wt[i], NULL, writer_main, &w[i]), 0);
	}
	for (int i = 0; i < WRITERS; i++)
		assert_int_equal(pthread_join(wt[i], NULL), 0);
	assert_int_equal(pthread_join(ht, NULL), 0);
	/* The final harvest, after every write. */
	assert_int_equal(squib_dirty_bitmap_new(GPA, REGION_SIZE, s.page, &dst, NULL), 0);
	assert_int_equal(harvest_once(&s, dst, atomic_load(&s.harvests)), 0);
	assert_int_equal(atomic_load(&s.errors), 0);
	check_reports(&s);
	squib_tracker_free(s.t);
	squib_dirty_bitmap_free(dst);
	free(s.last_k);
	free(s.last_seen);
	assert_int_equal(munmap(s.mem, REGION_SIZE), 0);
}

static void test_should_lose_no_write_to_uffd_wp_while_another_thread_harvests(void **state)
{
	(void)state;
	run(UFFD);
}

static void
test_should_lose_no_write_to_the_fault_tracker_while_another_thread_harvests(void **state)
{
	(void)state;
	run(FAULT);
}

static void test_should_lose_no_vmm_mark_while_another_thread_harvests(void **state)
{
	(void)state;
	run(MARKS);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
	    cmocka_unit_test(test_should_lose_no_write_to_uffd_wp_while_another_thread_harvests),
	    cmocka_unit_test(
		test_should_lose_no_write_to_the_fault_tracker_while_another_thread_harvests),
	    cmocka_unit_test(test_should_lose_no_vmm_mark_while_another_thread_harvests),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
