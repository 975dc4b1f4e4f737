/* SPDX-License-Identifier: Apache-2.0 */
/*
 * Dirty tracking under concurrency (also run under TSan: `ctest -L concurrency`).
 *
 * Worker threads never call cmocka asserts (they longjmp to the test's
 * frame); they count failures in atomics that the main thread asserts on.
 * Nothing here depends on timing: where the point is that two things overlap,
 * threads hand-shake so they must.
 */
#include "testutil.h"

#include <inttypes.h>
#include <pthread.h>
#include <sched.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <squib/dirty.h>

#define REGION_BASE 0x80000000ull
#define REGION_SIZE 0x10000000ull /* 256 MiB */
#define PAGE_2M (2ull * 1024 * 1024)
#define PAGE_16K (16ull * 1024)
#define THREADS 8

static void start_all(pthread_t *tids, int n, void *(*fn)(void *), void *args, size_t arg_size)
{
	for (int i = 0; i < n; i++)
		assert_int_equal(pthread_create(&tids[i], NULL, fn, (char *)args + i * arg_size), 0);
}

static void join_all(pthread_t *tids, int n)
{
	for (int i = 0; i < n; i++)
		assert_int_equal(pthread_join(tids[i], NULL), 0);
}

/* ---- upstream: 8 threads x 1000 distinct pages --------------------------- */

struct setter {
	struct squib_dirty_bitmap *bm;
	uint64_t first, count;
	_Atomic uint64_t *failures;
};

static void *set_pages(void *arg)
{
	struct setter *s = arg;

	for (uint64_t p = s->first; p < s->first + s->count; p++)
		if (!squib_dirty_bitmap_set(s->bm, REGION_BASE + p * PAGE_16K))
			atomic_fetch_add(s->failures, 1); /* distinct pages: every set is 0 -> 1 */
	return NULL;
}

static void test_should_be_thread_safe_under_concurrent_set_dirty(void **state)
{
	struct squib_dirty_bitmap *bm = NULL;
	_Atomic uint64_t failures = 0;
	struct setter s[THREADS];
	pthread_t tids[THREADS];
	uint64_t *pages = NULL;
	size_t n = 0;

	(void)state;
	assert_int_equal(squib_dirty_bitmap_new(REGION_BASE, REGION_SIZE, PAGE_16K, &bm, NULL), 0);
	for (int t = 0; t < THREADS; t++)
		s[t] = (struct setter){bm, (uint64_t)t * 1000, 1000, &failures};
	start_all(tids, THREADS, set_pages, s, sizeof(s[0]));
	join_all(tids, THREADS);
	assert_int_equal(atomic_load(&failures), 0);
	assert_int_equal(squib_dirty_bitmap_drain_alloc(bm, &pages, &n, NULL), 0);
	assert_int_equal(n, 8000);
	for (size_t i = 0; i < n; i++)
		assert_int_equal(pages[i], i);
	free(pages);
	squib_dirty_bitmap_free(bm);
}

/* ---- markers against a repeated drain ------------------------------------ */

struct drainer {
	struct squib_dirty_bitmap *bm;
	uint8_t *seen; /* per page: how many drains reported it; owned by this thread until joined */
	_Atomic int *done;
	_Atomic uint64_t *drains;
};

static int note_page(void *ctx, uint64_t page)
{
	((uint8_t *)ctx)[page]++;
	return 0;
}

static void *drain_repeatedly(void *arg)
{
	struct drainer *dr = arg;

	while (!atomic_load(dr->done)) {
		squib_dirty_bitmap_drain_into(dr->bm, note_page, dr->seen, NULL);
		atomic_fetch_add(dr->drains, 1);
	}
	return NULL;
}

static void wait_for(_Atomic uint64_t *counter, uint64_t at_least)
{
	while (atomic_load(counter) < at_least)
		sched_yield();
}

static void test_should_lose_no_marks_while_another_thread_drains(void **state)
{
	enum { PER_THREAD = 2000 }; /* 16000 of the 16384 pages */
	struct squib_dirty_bitmap *bm = NULL;
	_Atomic uint64_t failures = 0, drains = 0;
	_Atomic int done = 0;
	uint8_t *seen = calloc(REGION_SIZE / PAGE_16K, 1);
	struct drainer dr = {NULL, seen, &done, &drains};
	struct setter s[THREADS];
	pthread_t tids[THREADS], drain_tid;

	(void)state;
	assert_non_null(seen);
	assert_int_equal(squib_dirty_bitmap_new(REGION_BASE, REGION_SIZE, PAGE_16K, &bm, NULL), 0);
	dr.bm = bm;
	for (int t = 0; t < THREADS; t++)
		s[t] = (struct setter){bm, (uint64_t)t * PER_THREAD, PER_THREAD, &failures};
	start_all(&drain_tid, 1, drain_repeatedly, &dr, sizeof(dr));
	wait_for(&drains, 1); /* the drainer is running before the first set */
	start_all(tids, THREADS, set_pages, s, sizeof(s[0]));
	join_all(tids, THREADS);
	atomic_store(&done, 1);
	join_all(&drain_tid, 1);
	squib_dirty_bitmap_drain_into(bm, note_page, seen, NULL); /* the final state */
	assert_int_equal(atomic_load(&failures), 0);
	/* Every mark reported exactly once, across all drains; nothing else reported. */
	for (uint64_t p = 0; p < REGION_SIZE / PAGE_16K; p++)
		assert_int_equal(seen[p], p < THREADS * PER_THREAD ? 1 : 0);
	free(seen);
	squib_dirty_bitmap_free(bm);
}

/* ---- markers against granule switches and harvests on a region ------------ */

/*
 * Eight markers each mark PAGES_PER_THREAD pages, each page alone in its own
 * 2 MiB block so that a lost mark cannot hide behind another mark's bit at
 * coarse granule. A switcher flips the region coarse -> fine -> coarse as
 * fast as it can; a harvester drains it into an accumulator as fast as it
 * can. Checked:
 *  - every harvest holds (with the harvests before it) every mark that
 *    returned before the harvest began: a checkpoint's Diff must not miss a
 *    page written before the checkpoint, even if the bit would turn up later;
 *  - at the end, the union of all harvests and the final state holds every mark.
 *
 * Left alone, a mark's windows last nanoseconds and a switch almost never
 * lands in one. The test hook stretches them: in every other window a marker
 * waits until a switch publishes a new bitmap, then yields so that switch can
 * run on. That is upstream's interleaving, forced. Waiting only for the
 * publication (never for the switch to finish, which waits for the marker)
 * cannot deadlock, and the wait is bounded anyway.
 * Checked against deliberately broken builds: without the re-check, or
 * without the switcher's wait for in-flight markers, this test fails.
 */
enum { PAGES_PER_THREAD = 512, MAX_WAIT_YIELDS = 100000 };
#define CHECKED_BLOCKS ((uint64_t)THREADS * PAGES_PER_THREAD)
#define HEARTBEAT (REGION_BASE + CHECKED_BLOCKS * PAGE_2M) /* the switcher's own fault */
#define STRESS_SIZE ((CHECKED_BLOCKS + 1) * PAGE_2M)      /* 8 GiB + 2 MiB */

struct stress {
	struct squib_tracked_region *region;
	struct squib_dirty_bitmap *acc;     /* union of all harvests, at the host page */
	_Atomic uint64_t progress[THREADS]; /* marks each marker has completed */
	_Atomic uint64_t now_ns;            /* the region's clock */
	_Atomic uint64_t rounds;            /* completed coarse -> fine -> coarse rounds */
	_Atomic uint64_t harvests;
	_Atomic uint64_t late;              /* marks a harvest should have had but did not */
	_Atomic int markers_done;
	_Atomic uint64_t failures;
};

struct marker {
	struct stress *st;
	int id;
};

/* Only marker threads stretch their windows (the switcher must never wait on itself). */
static _Thread_local bool stretch_windows;
static _Thread_local unsigned int window_calls;

static uint64_t marked_addr(int thread, uint64_t i)
{
	uint64_t block = (uint64_t)thread * PAGES_PER_THREAD + i;
	uint64_t hp = (uint64_t)sysconf(_SC_PAGESIZE);
	uint64_t page_in_block = (i * 37 + (uint64_t)thread * 11) % (PAGE_2M / hp);

	return REGION_BASE + block * PAGE_2M + page_in_block * hp + (i % hp);
}

static uint64_t stress_clock(void *ctx)
{
	return atomic_load(&((struct stress *)ctx)->now_ns);
}

static void race_a_switch(void *ctx, enum squib_dirty_marker_step step)
{
	struct stress *st = ctx;
	enum squib_tracking_granule g;

	(void)step;
	/* Every other window only: a marker that re-checks and retries must get through. */
	if (!stretch_windows || window_calls++ % 2)
		return;
	g = squib_tracked_region_granule(st->region);
	for (int i = 0; i < MAX_WAIT_YIELDS && squib_tracked_region_granule(st->region) == g; i++)
		sched_yield();
	for (int i = 0; i < 4; i++)
		sched_yield();
}

static void *mark_pages(void *arg)
{
	struct marker *m = arg;
	struct stress *st = m->st;

	stretch_windows = true;
	wait_for(&st->rounds, 1); /* so that at least one round overlaps the marks */
	for (uint64_t i = 0; i < PAGES_PER_THREAD; i++) {
		squib_tracked_region_mark_dirty(st->region, marked_addr(m->id, i));
		atomic_store_explicit(&st->progress[m->id], i + 1, memory_order_release);
	}
	atomic_fetch_add(&st->markers_done, 1);
	return NULL;
}

/*
 * Pause between switches: a bit left behind in the bitmap just switched away
 * from would be swept up by the next switch back, so give harvests time to
 * notice it missing first.
 */
static void linger(void)
{
	for (int i = 0; i < 8; i++)
		sched_yield();
}

/* Coarse -> fine (tick) -> coarse (reset) rounds until the markers are done. */
static void *switch_granules(void *arg)
{
	struct stress *st = arg;
	enum squib_tracking_granule g = SQUIB_GRANULE_COARSE;

	while (atomic_load(&st->markers_done) < THREADS) {
		/* Threshold 0: one fault of our own makes every tick step down. */
		squib_tracked_region_mark_dirty(st->region, HEARTBEAT);
		atomic_fetch_add(&st->now_ns, 2 * SQUIB_ADAPTIVE_WINDOW_NS);
		if (squib_tracked_region_tick_adaptive(st->region, &g, NULL) ||
		    g != SQUIB_GRANULE_FINE)
			atomic_fetch_add(&st->failures, 1);
		linger();
		if (squib_tracked_region_reset_after_checkpoint(st->region, NULL))
			atomic_fetch_add(&st->failures, 1);
		linger();
		atomic_fetch_add(&st->rounds, 1);
	}
	return NULL;
}

/* Marks completed before `done` was read that the accumulator lacks. */
static uint64_t count_late(const struct stress *st, const uint64_t *done)
{
	uint64_t late = 0;

	for (int t = 0; t < THREADS; t++)
		for (uint64_t i = 0; i < done[t]; i++)
			late += !squib_dirty_bitmap_test(st->acc, marked_addr(t, i));
	return late;
}

static void *harvest_repeatedly(void *arg)
{
	struct stress *st = arg;
	uint64_t done[THREADS];

	while (atomic_load(&st->markers_done) < THREADS) {
		for (int t = 0; t < THREADS; t++)
			done[t] = atomic_load_explicit(&st->progress[t], memory_order_acquire);
		if (squib_tracked_region_harvest(st->region, st->acc, NULL))
			atomic_fetch_add(&st->failures, 1);
		atomic_fetch_add(&st->late, count_late(st, done));
		atomic_fetch_add(&st->harvests, 1);
		sched_yield(); /* a harvest is long; let the others move on between them */
	}
	return NULL;
}

static void stress_init(struct stress *st)
{
	struct squib_dirty_clock clock = {stress_clock, st};
	struct squib_dirty_hooks hooks = {st, race_a_switch};
	struct squib_tracked_region_options opts = {0, &clock, &hooks};
	uint64_t hp = (uint64_t)sysconf(_SC_PAGESIZE);

	memset(st, 0, sizeof(*st));
	atomic_store(&st->now_ns, 1);
	assert_int_equal(squib_tracked_region_new(REGION_BASE, STRESS_SIZE, &opts, &st->region, NULL),
			 0);
	assert_int_equal(squib_dirty_bitmap_new(REGION_BASE, STRESS_SIZE, hp, &st->acc, NULL), 0);
}

static void test_should_lose_no_marks_across_granule_switches(void **state)
{
	static struct stress st;
	struct marker m[THREADS];
	uint64_t all[THREADS];
	pthread_t tids[THREADS], switcher, harvester;

	(void)state;
	stress_init(&st);
	for (int t = 0; t < THREADS; t++) {
		m[t] = (struct marker){&st, t};
		all[t] = PAGES_PER_THREAD;
	}
	start_all(&harvester, 1, harvest_repeatedly, &st, sizeof(st));
	start_all(&switcher, 1, switch_granules, &st, sizeof(st));
	start_all(tids, THREADS, mark_pages, m, sizeof(m[0]));
	join_all(tids, THREADS);
	join_all(&switcher, 1);
	join_all(&harvester, 1);
	assert_int_equal(atomic_load(&st.failures), 0);
	assert_true(atomic_load(&st.rounds) >= 1);
	assert_int_equal(atomic_load(&st.late), 0);
	/* The union of every harvest and the final state covers every mark. */
	assert_int_equal(squib_tracked_region_harvest(st.region, st.acc, NULL), 0);
	assert_int_equal(count_late(&st, all), 0);
	print_message("%" PRIu64 " rounds, %" PRIu64 " checked harvests\n",
		      (uint64_t)atomic_load(&st.rounds), (uint64_t)atomic_load(&st.harvests));
	squib_dirty_bitmap_free(st.acc);
	squib_tracked_region_free(st.region);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_should_be_thread_safe_under_concurrent_set_dirty),
		cmocka_unit_test(test_should_lose_no_marks_while_another_thread_drains),
		cmocka_unit_test(test_should_lose_no_marks_across_granule_switches),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
