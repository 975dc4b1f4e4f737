/* SPDX-License-Identifier: Apache-2.0 */
/*
 * Beside guest memory (squib/guest_memory.h): pre-warming the boot-critical
 * pages (installed by the backend's install op), prefetching a recorded
 * working set, reading the record. Calls into guest_memory.c, never back.
 */
#include <squib/guest_memory.h>

#include <errno.h>
#include <inttypes.h>
#include <pthread.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "guest_memory_internal.h"

/* ---- a page source over the guest memory itself ---------------------------------------- */

/*
 * Reading guest memory through its mapping faults each page in through the
 * pager or the external handler: the page-table walk of the pre-warm is
 * served like the vCPU's own walk would be, and installs what it reads.
 */
static bool guest_present(void *ctx, uint64_t page)
{
	(void)ctx;
	(void)page;
	return true;
}

static int guest_read(void *ctx, uint64_t first, uint64_t count, void *buf,
		      struct squib_error_detail *d)
{
	const struct squib_guest_memory *g = ctx;

	for (uint64_t k = 0; k < count; k++) {
		volatile const uint8_t *a = squib_gm_page_addr(g, first + k);

		if (!a)
			return squib_fail_msg(d, SQUIB_E_INVALID_ARGUMENT,
					      "page %" PRIu64 " lies outside guest memory",
					      first + k);
		memcpy((uint8_t *)buf + k * g->page_size, (const void *)a, (size_t)g->page_size);
	}
	return 0;
}

static const struct squib_page_source_ops guest_source_ops = {
    .present = guest_present, .read = guest_read, .release = NULL};

/* The memory's layout as the pre-warm needs it (regions only). */
static int layout_of(const struct squib_guest_memory *g, struct squib_memory_layout *l,
		     struct squib_error_detail *d)
{
	memset(l, 0, sizeof(*l));
	if (!(l->regions = calloc(g->region_count, sizeof(*l->regions))))
		return squib_fail(d, SQUIB_E_NOMEM);
	l->kind = SQUIB_MEMORY_FULL;
	l->page_size = g->page_size;
	l->region_count = g->region_count;
	for (uint32_t i = 0; i < g->region_count; i++) {
		l->regions[i] =
		    (struct squib_mem_region){g->regions[i].guest_addr, g->regions[i].size};
		l->ram_size += g->regions[i].size;
	}
	return 0;
}

/* The walk and the installs, on whatever thread: may block on a fault. */
static int prewarm_now(struct squib_guest_memory *g, const struct squib_microvm_state *s,
		       struct squib_error_detail *d)
{
	struct squib_page_source src;
	struct squib_memory_layout l;
	size_t cap, count = 0;
	uint64_t *pages;
	int rc;

	if ((rc = layout_of(g, &l, d)))
		return rc;
	src = (struct squib_page_source){&guest_source_ops, g, g->page_size, g->page_count};
	cap = SQUIB_PREWARM_PAGES_PER_VCPU * (size_t)(s->vcpu_count ? s->vcpu_count : 1);
	if (!(pages = calloc(cap, sizeof(*pages)))) {
		free(l.regions);
		return squib_fail(d, SQUIB_E_NOMEM);
	}
	rc = squib_prewarm_boot_pages(s, &l, &src, pages, cap, &count, &g->stats.prewarm, d);
	if (!rc) {
		rc = g->ops->install(g, pages, count, d);
		g->stats.pages_prewarmed += count;
	}
	free(pages);
	free(l.regions);
	return rc;
}

struct warm_job {
	struct squib_guest_memory *g;
	const struct squib_microvm_state *s;
	int rc;
	struct squib_error_detail d;
	bool done;
	pthread_mutex_t lock;
	pthread_cond_t cond;
};

static void *warm_thread(void *arg)
{
	struct warm_job *j = arg;
	int rc = prewarm_now(j->g, j->s, &j->d);

	pthread_mutex_lock(&j->lock);
	j->rc = rc;
	j->done = true;
	pthread_cond_signal(&j->cond);
	pthread_mutex_unlock(&j->lock);
	return NULL;
}

/* Wait for the job; on a memory failure first, release the memory (it wakes the job). */
static int watch_warm(struct warm_job *j, pthread_t t, struct squib_error_detail *d)
{
	struct squib_error_detail lost;
	int rc = 0;

	pthread_mutex_lock(&j->lock);
	while (!j->done) {
		struct timespec ts;

		clock_gettime(CLOCK_REALTIME, &ts);
		ts.tv_nsec += 10 * 1000 * 1000;
		if (ts.tv_nsec >= 1000000000) {
			ts.tv_sec++;
			ts.tv_nsec -= 1000000000;
		}
		pthread_cond_timedwait(&j->cond, &j->lock, &ts);
		if (!j->done && (rc = squib_guest_memory_error(j->g, &lost)))
			break;
	}
	pthread_mutex_unlock(&j->lock);
	if (rc) {
		squib_guest_memory_release(j->g); /* unregisters: the blocked read completes */
		if (d)
			*d = lost;
	}
	pthread_join(t, NULL);
	if (!rc && (rc = j->rc) && d)
		*d = j->d;
	return rc;
}

/*
 * The walk reads guest memory, and a read blocks until the page is served:
 * if the pager fails or the handler dies meanwhile it would block for ever.
 * So it runs on a helper thread, and this one watches the memory's error.
 */
int squib_guest_memory_prewarm(struct squib_guest_memory *g, const struct squib_microvm_state *s,
			       struct squib_error_detail *d)
{
	struct warm_job j = {.g = g, .s = s};
	pthread_t t;
	int rc;

	if (!g || !s)
		return squib_fail_msg(d, SQUIB_E_INVALID_ARGUMENT, "NULL argument to prewarm");
	if (!g->ops->install)
		return 0; /* the memory is complete already */
	pthread_mutex_init(&j.lock, NULL);
	pthread_cond_init(&j.cond, NULL);
	if ((rc = pthread_create(&t, NULL, warm_thread, &j)))
		rc = squib_fail_errno(d, SQUIB_E_IO, rc);
	else
		rc = watch_warm(&j, t, d);
	pthread_cond_destroy(&j.cond);
	pthread_mutex_destroy(&j.lock);
	return rc;
}

/* ---- working sets ------------------------------------------------------------------------ */

/*
 * Installing a page costs about a microsecond of kernel work here (page
 * allocation, LRU and memcg accounting: perf), not I/O, so a large set is
 * installed by several threads at once (bench_lazy: 2 threads cut 256 MiB
 * from ~69 to ~48 ms). Small sets are not worth a thread.
 */
#define PREFETCH_MAX_THREADS	  4
#define PREFETCH_PAGES_PER_THREAD 4096u

struct prefetch_slice {
	struct squib_pager *p;
	const struct squib_ws_run *runs;
	uint64_t n, installed;
	int rc;
	struct squib_error_detail d;
};

static void *prefetch_slice_run(void *arg)
{
	struct prefetch_slice *s = arg;

	memset(&s->d, 0, sizeof(s->d));
	s->rc = squib_pager_prefetch(s->p, s->runs, s->n, &s->installed, &s->d);
	return NULL;
}

static uint32_t prefetch_threads(uint64_t pages)
{
	long cpus = sysconf(_SC_NPROCESSORS_ONLN);
	uint64_t k = pages / PREFETCH_PAGES_PER_THREAD;

	if (cpus < 1)
		cpus = 1;
	if (k > (uint64_t)cpus)
		k = (uint64_t)cpus;
	if (k > PREFETCH_MAX_THREADS)
		k = PREFETCH_MAX_THREADS;
	return k ? (uint32_t)k : 1;
}

/* Cut ws's runs into k slices of about equal pages (runs split at the borders) into out
 * (room for run_count + k runs); slice i is out[first[i], first[i + 1]). */
static void slice_runs(const struct squib_workset *ws, uint32_t k, uint64_t pages,
		       struct squib_ws_run *out, uint64_t *first)
{
	uint64_t per = (pages + k - 1) / k, room = per, n = 0;
	uint32_t slice = 0;

	first[0] = 0;
	for (uint64_t i = 0; i < ws->run_count; i++) {
		struct squib_ws_run r = ws->runs[i];

		while (r.page_count) {
			uint64_t take = r.page_count < room ? r.page_count : room;

			out[n++] = (struct squib_ws_run){r.first_page, take};
			r.first_page += take;
			r.page_count -= take;
			if (!(room -= take) && slice + 1 < k) {
				first[++slice] = n;
				room = per;
			}
		}
	}
	while (slice + 1 <= k)
		first[++slice] = n;
}

static int prefetch_parallel(struct squib_pager *p, const struct squib_workset *ws,
			     uint64_t *installed, struct squib_error_detail *d)
{
	uint64_t pages = squib_workset_pages(ws), first[PREFETCH_MAX_THREADS + 1];
	uint32_t k = prefetch_threads(pages);
	struct prefetch_slice sl[PREFETCH_MAX_THREADS];
	pthread_t th[PREFETCH_MAX_THREADS];
	bool started[PREFETCH_MAX_THREADS] = {false};
	struct squib_ws_run *runs;
	int rc = 0;

	if (k == 1)
		return squib_pager_prefetch(p, ws->runs, ws->run_count, installed, d);
	if (!(runs = calloc(ws->run_count + k, sizeof(*runs))))
		return squib_fail(d, SQUIB_E_NOMEM);
	slice_runs(ws, k, pages, runs, first);
	for (uint32_t i = 0; i < k; i++) {
		sl[i] = (struct prefetch_slice){
		    .p = p, .runs = runs + first[i], .n = first[i + 1] - first[i]};
		/* The last slice runs here; a thread that cannot start runs here too. */
		started[i] = i + 1 < k && !pthread_create(&th[i], NULL, prefetch_slice_run, &sl[i]);
		if (!started[i])
			prefetch_slice_run(&sl[i]);
	}
	for (uint32_t i = 0; i < k; i++) {
		if (started[i])
			pthread_join(th[i], NULL);
		*installed += sl[i].installed;
		if (sl[i].rc && !rc) {
			rc = sl[i].rc;
			if (d)
				*d = sl[i].d;
		}
	}
	free(runs);
	return rc;
}

int squib_guest_memory_prefetch(struct squib_guest_memory *g, const struct squib_workset *ws,
				struct squib_error_detail *d)
{
	uint64_t installed = 0;
	int rc;

	if (!g || !ws)
		return squib_fail_msg(d, SQUIB_E_INVALID_ARGUMENT, "NULL argument to prefetch");
	if (!g->pager)
		return squib_fail_msg(d, SQUIB_E_INVALID_ARGUMENT,
				      "a working set is prefetched by the in-process pager (LAZY "
				      "backend) only");
	if ((rc = squib_workset_check_fits(ws, g->page_size, g->page_count, g->memory_id, d)))
		return rc;
	rc = prefetch_parallel(g->pager, ws, &installed, d);
	g->stats.pages_prefetched += installed;
	return rc;
}

int squib_guest_memory_recorded(const struct squib_guest_memory *g, struct squib_workset *out,
				struct squib_error_detail *d)
{
	int rc;

	if (!g || !out)
		return squib_fail_msg(d, SQUIB_E_INVALID_ARGUMENT, "NULL argument to recorded");
	memset(out, 0, sizeof(*out));
	if (!g->pager)
		return squib_fail_msg(
		    d, SQUIB_E_INVALID_ARGUMENT,
		    "only the in-process pager (LAZY backend) records a working set");
	if (!(rc = squib_pager_recorded(g->pager, out, d)))
		memcpy(out->memory_id, g->memory_id, sizeof(out->memory_id));
	return rc;
}
