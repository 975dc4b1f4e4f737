/* SPDX-License-Identifier: Apache-2.0 */
/*
 * Lazy restore (the userfaultfd pager) against the eager backends:
 *
 * 1. the snapshot: a 1-vCPU KVM VM with 1 GiB of BK_RAM, 256 MiB of it
 *    non-zero (256 runs of 1 MiB, 3 MiB apart, from 16 MiB: the working
 *    set), the rest zero and absent from the file, running the counter
 *    guest; a Full pair saved with squib_save (page cache warm);
 * 2. working set, no VM: squib_guest_memory_open + TOUCH_THREADS host
 *    threads reading (then, separately, writing) one byte of every
 *    working-set page, per backend: COPY
 *    (read every present page up front), FILE (MAP_PRIVATE, page-cache
 *    faults), LAZY (uffd faults served by the pager), LAZY with the working
 *    set recorded on an earlier restore prefetched (squib_guest_memory_prefetch: threads by CPUs;
 * and on one thread) before the touches; against a memcpy of 256 MiB between populated buffers
 * measured in the same run; reading and writing with the page cache warm, and reading with it
 * dropped (POSIX_FADV_DONTNEED) before each run;
 * 3. upstream P7 on KVM: squib_load LAZY (with its default pre-warm of the
 *    boot pages, and once without) into a fresh VM, 10 % of the pages
 *    installed before resume (a contiguous block of the working set, the
 *    guest's own pages left out) so 90 % are cold, resume, until the
 *    counter guest's first report; with the page cache warm and dropped
 *    (POSIX_FADV_DONTNEED on the memory file), and with nothing installed.
 *
 * Median of RUNS, ratios against COPY (2) and against the 1 s goal (3).
 * Files go to $SQUIB_BENCH_DIR, else /var/tmp, and are removed. Guest
 * binaries come from $SQUIB_GUESTS, else tests/guests next to this program.
 */
#include <errno.h>
#include <fcntl.h>
#include <libgen.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <unistd.h>

#include <squib/kvm.h>
#include <squib/load.h>
#include <squib/pager.h>
#include <squib/save.h>
#include <squib/workset.h>

#include "benchkvm.h"

#define RUNS	      5
#define WS_BYTES      ((uint64_t)BK_FILL_RUNS * BK_FILL_RUN)
#define WARM_BYTES    (BK_RAM / 10) /* P7: 10 % installed, 90 % cold */
#define TOUCH_THREADS 2u

static char guest_dir[4096];
static char dir[4096];

/* A Full pair of the running counter guest, left paused; its report count. */
static uint64_t make_snapshot(const char *state, const char *mem)
{
	struct squib_save_request req = SQUIB_SAVE_REQUEST_INIT(state, mem);
	struct squib_save_report rep;
	struct squib_error_detail d;
	uint64_t reports = 0;
	struct bk_vm k;

	bk_vm_new(&k, true, false);
	bk_boot_counter(&k, guest_dir);
	req.stay_paused = true;
	bk_check(squib_save(&k.v, &req, &rep, &d), "full save", &d);
	squib_kvm_counter_get(k.counter, 0, NULL, &reports);
	bk_vm_free(&k);
	return reports;
}

/* ---- 2. restore + touch the working set, no VM ------------------------------------ */

struct toucher {
	uint8_t *ram;
	uint32_t first, n; /* fill runs */
	bool write;	   /* store instead of load: FILE then copies on write */
	uint64_t sum;
};

static void *touch_runs(void *arg)
{
	struct toucher *t = arg;
	uint64_t sum = 0;

	for (uint32_t i = t->first; i < t->first + t->n; i++) {
		volatile uint8_t *p = t->ram + BK_FILL_BASE + (uint64_t)i * BK_FILL_STEP;

		for (uint64_t off = 0; off < BK_FILL_RUN; off += BK_PAGE)
			if (t->write)
				p[off] = (uint8_t)off;
			else
				sum += p[off];
	}
	t->sum = sum;
	return NULL;
}

/* Read (or write) one byte of every working-set page with TOUCH_THREADS threads. */
static void touch_working_set(uint8_t *ram, bool write)
{
	struct toucher t[TOUCH_THREADS];
	pthread_t th[TOUCH_THREADS];
	uint32_t per = BK_FILL_RUNS / TOUCH_THREADS;

	for (uint32_t i = 0; i < TOUCH_THREADS; i++) {
		t[i] = (struct toucher){ram, i * per, per, write, 0};
		if (pthread_create(&th[i], NULL, touch_runs, &t[i])) {
			fprintf(stderr, "bench_lazy: pthread_create failed\n");
			exit(1);
		}
	}
	for (uint32_t i = 0; i < TOUCH_THREADS; i++)
		pthread_join(th[i], NULL);
}

static void drop_page_cache(const char *path)
{
	int fd = open(path, O_RDONLY | O_CLOEXEC);

	if (fd < 0 || posix_fadvise(fd, 0, 0, POSIX_FADV_DONTNEED)) {
		fprintf(stderr, "bench_lazy: dropping the page cache of %s failed\n", path);
		exit(1);
	}
	close(fd);
}

/*
 * One open (lazy options: may be NULL), the working set ws installed when
 * given (by the loader's threads, or on this thread with one_thread), then
 * the touches; ms, or -1 with d set.
 */
static double open_and_touch_lazy(const char *mem, enum squib_memory_backend b,
				  const struct squib_lazy_options *lz,
				  const struct squib_workset *ws, bool one_thread, bool write,
				  bool cold, struct squib_pager_stats *stats,
				  struct squib_error_detail *d)
{
	struct squib_guest_memory *g = NULL;
	uint64_t t0;
	double t;

	if (cold)
		drop_page_cache(mem);
	t0 = now_ns();

	if (squib_guest_memory_open_lazy(mem, NULL, 0, NULL, b, lz, &g, d))
		return -1;
	if (ws && (one_thread ? squib_pager_prefetch(squib_guest_memory_pager(g), ws->runs,
						     ws->run_count, NULL, d)
			      : squib_guest_memory_prefetch(g, ws, d))) {
		squib_guest_memory_free(g);
		return -1;
	}
	touch_working_set(squib_guest_memory_region(g, 0)->host, write);
	t = bk_ms(now_ns() - t0);
	if (squib_guest_memory_pager(g) && stats)
		squib_pager_stats(squib_guest_memory_pager(g), stats);
	squib_guest_memory_free(g);
	return t;
}

static double open_and_touch(const char *mem, enum squib_memory_backend b, bool write, bool cold,
			     struct squib_pager_stats *stats, struct squib_error_detail *d)
{
	return open_and_touch_lazy(mem, b, NULL, NULL, false, write, cold, stats, d);
}

/*
 * On demand one page per fault: what Firecracker's example handlers do and
 * REAP's baseline (its 3.7x is against this). Median ms.
 */
static double bench_one_page_per_fault(const char *mem, bool write, bool cold, double copy_ms,
				       double floor_ms)
{
	struct squib_lazy_options lz;
	struct squib_pager_stats stats;
	struct squib_error_detail d;
	double t[RUNS], m;

	memset(&lz, 0, sizeof(lz));
	lz.pager.batch_bytes = BK_PAGE;
	memset(&stats, 0, sizeof(stats));
	for (int r = 0; r < RUNS; r++)
		if ((t[r] = open_and_touch_lazy(mem, SQUIB_BACKEND_LAZY, &lz, NULL, false, write,
						cold, &stats, &d)) < 0)
			bk_check(d.code ? d.code : SQUIB_E_IO, "lazy, one page per fault", &d);
	m = bk_median(t, RUNS);
	printf("  %-24s %9.2f ms  %5.2fx COPY  %6.2fx memcpy  | last run: %llu faults, "
	       "service median %.1f us, p99 %.1f us\n",
	       "LAZY, 4 KiB per fault", m, m / copy_ms, m / floor_ms,
	       (unsigned long long)stats.faults, stats.median_us, stats.p99_us);
	return m;
}

/* memcpy of the working set's size between two populated buffers: the physical floor. */
static double memcpy_baseline(void)
{
	double t[RUNS];
	uint8_t *a =
	    mmap(NULL, WS_BYTES, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
	uint8_t *b =
	    mmap(NULL, WS_BYTES, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);

	if (a == MAP_FAILED || b == MAP_FAILED) {
		fprintf(stderr, "bench_lazy: mmap: %s\n", strerror(errno));
		exit(1);
	}
	memset(a, 0x5a, WS_BYTES);
	memset(b, 0xa5, WS_BYTES);
	for (int r = 0; r < RUNS; r++) {
		uint64_t t0 = now_ns();

		memcpy(b, a, WS_BYTES);
		t[r] = bk_ms(now_ns() - t0);
	}
	munmap(a, WS_BYTES);
	munmap(b, WS_BYTES);
	return bk_median(t, RUNS);
}

static const char *backend_name(enum squib_memory_backend b)
{
	return b == SQUIB_BACKEND_COPY	 ? "COPY (eager read)"
	       : b == SQUIB_BACKEND_FILE ? "FILE (MAP_PRIVATE)"
					 : "LAZY (uffd on demand)";
}

/*
 * The working set as a restore would have recorded it: a pager of our own
 * over the same file with options.record, the same touches, then
 * squib_pager_recorded (squib_guest_memory_open takes no pager options).
 */
static void record_working_set(const char *mem, bool write, struct squib_workset *ws)
{
	struct squib_pager_options opts = {.record = true};
	struct squib_memfile *m = NULL;
	struct squib_page_source src;
	struct squib_pager *p = NULL;
	struct squib_error_detail d;
	struct squib_pager_region r;
	uint8_t *ram;

	ram = mmap(NULL, BK_RAM, PROT_READ | PROT_WRITE,
		   MAP_PRIVATE | MAP_ANONYMOUS | MAP_NORESERVE, -1, 0);
	if (ram == MAP_FAILED) {
		fprintf(stderr, "bench_lazy: mmap: %s\n", strerror(errno));
		exit(1);
	}
	r = (struct squib_pager_region){ram, BK_RAM, 0};
	bk_check(squib_memfile_open(mem, &m, &d), "memfile", &d);
	bk_check(squib_page_source_file(m, &src, &d), "page source", &d);
	bk_check(squib_pager_start(&r, 1, src, &opts, &p, &d), "recording pager", &d);
	touch_working_set(ram, write);
	bk_check(squib_pager_recorded(p, ws, &d), "recorded", &d);
	squib_pager_free(p);
	squib_memfile_close(m);
	munmap(ram, BK_RAM);
}

static int cmp_run(const void *a, const void *b)
{
	uint64_t x = ((const struct squib_ws_run *)a)->first_page,
		 y = ((const struct squib_ws_run *)b)->first_page;

	return (x > y) - (x < y);
}

/* The recorded runs in page order, adjacent ones merged (fault order is lost). */
static void sort_and_merge(struct squib_workset *ws)
{
	uint64_t n = 0;

	qsort(ws->runs, (size_t)ws->run_count, sizeof(ws->runs[0]), cmp_run);
	for (uint64_t i = 0; i < ws->run_count; i++) {
		struct squib_ws_run *last = n ? &ws->runs[n - 1] : NULL;

		if (last && last->first_page + last->page_count >= ws->runs[i].first_page) {
			uint64_t end = ws->runs[i].first_page + ws->runs[i].page_count;

			if (end > last->first_page + last->page_count)
				last->page_count = end - last->first_page;
		} else {
			ws->runs[n++] = ws->runs[i];
		}
	}
	ws->run_count = n;
}

/*
 * uffd + prefetched working set (REAP's record-and-prefetch): the set
 * recorded on one on-demand restore is installed with squib_pager_prefetch
 * right after the open, on the opening thread, before the touches. The
 * issue's goal: >= 3x faster than on demand. Returns the median in ms.
 */
static double bench_prefetched_working_set(const char *mem, bool write, bool cold, double copy_ms,
					   double lazy_ms, double page_ms, double floor_ms)
{
	static const char *const rows[] = {"LAZY + prefetched WS", "  same, runs sorted+merged",
					   "  same, on one thread"};
	struct squib_workset ws;
	struct squib_pager_stats stats;
	struct squib_error_detail d;
	double t[RUNS], m = 0;

	memset(&ws, 0, sizeof(ws));
	record_working_set(mem, write, &ws);
	for (int row = 0; row < 3; row++) {
		if (row == 1)
			sort_and_merge(&ws);
		memset(&stats, 0, sizeof(stats));
		for (int r = 0; r < RUNS; r++)
			if ((t[r] = open_and_touch_lazy(mem, SQUIB_BACKEND_LAZY, NULL, &ws,
							row == 2, write, cold, &stats, &d)) < 0)
				bk_check(d.code ? d.code : SQUIB_E_IO, "prefetch", &d);
		m = bk_median(t, RUNS);
		printf("  %-24s %9.2f ms  %5.2fx COPY  %6.2fx memcpy  %.2fx faster than on demand "
		       "(%.2fx than 4 KiB per fault) | %llu runs; last run: %llu pages prefetched, "
		       "%llu faults\n",
		       rows[row], m, m / copy_ms, m / floor_ms, lazy_ms / m, page_ms / m,
		       (unsigned long long)ws.run_count, (unsigned long long)stats.pages_prefetched,
		       (unsigned long long)stats.faults);
	}
	squib_workset_free(&ws);
	return m;
}

static void bench_working_set(const char *mem, bool write, bool cold, double base)
{
	static const enum squib_memory_backend backends[] = {SQUIB_BACKEND_COPY, SQUIB_BACKEND_FILE,
							     SQUIB_BACKEND_LAZY};
	struct squib_pager_stats stats;
	struct squib_error_detail d;
	double copy_ms = 0, lazy_ms = 0, page_ms;

	printf("restore + touch a %llu MiB working set of the 1 GiB snapshot (open + %u threads "
	       "%s 1 byte per page; median of %d; page cache %s):\n",
	       (unsigned long long)(WS_BYTES >> 20), TOUCH_THREADS, write ? "writing" : "reading",
	       RUNS, cold ? "dropped before each run" : "warm");
	printf("  %-24s %9.2f ms  (physical floor: memcpy of %llu MiB, same run)\n", "memcpy", base,
	       (unsigned long long)(WS_BYTES >> 20));
	for (size_t bi = 0; bi < sizeof(backends) / sizeof(backends[0]); bi++) {
		double t[RUNS], m;

		memset(&stats, 0, sizeof(stats));
		for (int r = 0; r < RUNS; r++)
			if ((t[r] = open_and_touch(mem, backends[bi], write, cold, &stats, &d)) < 0)
				bk_check(d.code ? d.code : SQUIB_E_IO, backend_name(backends[bi]),
					 &d);
		m = bk_median(t, RUNS);
		if (backends[bi] == SQUIB_BACKEND_COPY)
			copy_ms = m;
		if (backends[bi] == SQUIB_BACKEND_LAZY)
			lazy_ms = m;
		printf("  %-24s %9.2f ms  %5.2fx COPY  %6.2fx memcpy", backend_name(backends[bi]),
		       m, m / copy_ms, m / base);
		if (backends[bi] == SQUIB_BACKEND_LAZY)
			printf("  | last run: %llu faults, %llu pages copied, %llu zeroed, "
			       "service median %.1f us, p99 %.1f us",
			       (unsigned long long)stats.faults,
			       (unsigned long long)stats.pages_copied,
			       (unsigned long long)stats.pages_zeroed, stats.median_us,
			       stats.p99_us);
		printf("\n");
	}
	page_ms = bench_one_page_per_fault(mem, write, cold, copy_ms, base);
	bench_prefetched_working_set(mem, write, cold, copy_ms, lazy_ms, page_ms, base);
}

/* ---- 3. P7: time to the first report with 90 % of the pages cold ---------------------- */

/* Install [BK_FILL_BASE, BK_FILL_BASE + WARM_BYTES): part of the working set, none of the guest's
 * pages.
 */
static void warm(const uint8_t *ram)
{
	uint64_t sum = 0;

	for (uint64_t off = 0; off < WARM_BYTES; off += BK_PAGE)
		sum += ((const volatile uint8_t *)ram)[BK_FILL_BASE + off];
	(void)sum;
}

struct p7 {
	double total, load, warm, run; /* ms */
	uint64_t faults_to_report, present;
};

static void p7_once(const char *state, const char *mem, uint64_t saved_reports, bool warm10,
		    bool cold_cache, bool prewarm, struct p7 *out)
{
	struct squib_load_request req = SQUIB_LOAD_REQUEST_INIT(state, mem);
	struct squib_lazy_options lazy = {.no_prewarm = !prewarm};
	struct squib_load_result res;
	struct squib_pager_stats s0, s;
	struct squib_error_detail d;
	uint64_t t0, t1, t2;
	struct bk_vm k;

	if (cold_cache)
		drop_page_cache(mem);
	bk_vm_new(&k, false, false);
	req.backend = SQUIB_BACKEND_LAZY;
	req.stay_paused = true;
	req.lazy = &lazy;
	t0 = now_ns();
	bk_check(squib_load(&k.v, &req, &res, &d), "lazy load", &d);
	t1 = now_ns();
	if (warm10)
		warm(squib_guest_memory_region(res.memory, 0)->host);
	t2 = now_ns();
	squib_pager_stats(squib_guest_memory_pager(res.memory), &s0);
	bk_check(squib_vm_resume(&k.v, &d), "resume", &d);
	bk_check(squib_kvm_counter_wait(k.counter, 0, saved_reports + 1, BK_WAIT_MS, NULL, &d),
		 "first report", &d);
	out->total = bk_ms(now_ns() - t0);
	out->load = bk_ms(t1 - t0);
	out->warm = bk_ms(t2 - t1);
	out->run = out->total - out->load - out->warm;
	squib_pager_stats(squib_guest_memory_pager(res.memory), &s);
	out->faults_to_report = s.faults - s0.faults;
	out->present = s.pages_present;
	bk_check(squib_pager_error(squib_guest_memory_pager(res.memory), &d), "pager", &d);
	bk_vm_free(&k);
	squib_load_result_free(&res);
}

static void bench_p7(const char *state, const char *mem, uint64_t saved_reports)
{
	static const struct {
		bool warm10, cold_cache, prewarm;
		const char *what;
	} cases[] = {
	    {true, false, true, "90 % cold, page cache warm"},
	    {true, true, true, "90 % cold, page cache dropped"},
	    {false, false, true, "100 % cold, page cache warm"},
	    {false, true, true, "100 % cold, page cache dropped"},
	    {false, true, false, "  same, no boot-page pre-warm"},
	};

	printf(
	    "upstream P7: squib_load LAZY (boot pages pre-warmed unless said) of the 1 GiB "
	    "snapshot into a fresh 1-vCPU VM -> first counter report after resume (median of %d; "
	    "goal <= 1 s):\n",
	    RUNS);
	for (size_t c = 0; c < sizeof(cases) / sizeof(cases[0]); c++) {
		double tot[RUNS], load[RUNS], wrm[RUNS], run[RUNS];
		struct p7 p;

		for (int r = 0; r < RUNS; r++) {
			p7_once(state, mem, saved_reports, cases[c].warm10, cases[c].cold_cache,
				cases[c].prewarm, &p);
			tot[r] = p.total;
			load[r] = p.load;
			wrm[r] = p.warm;
			run[r] = p.run;
		}
		printf("  %-31s %8.2f ms (%.4fx the goal) | load %.2f, install 10 %% %.2f, resume "
		       "-> report %.2f ms | last run: %llu faults after resume, %.1f %% of pages "
		       "present\n",
		       cases[c].what, bk_median(tot, RUNS), bk_median(tot, RUNS) / 1000.0,
		       bk_median(load, RUNS), bk_median(wrm, RUNS), bk_median(run, RUNS),
		       (unsigned long long)p.faults_to_report,
		       100.0 * (double)p.present / (double)(BK_RAM / BK_PAGE));
	}
}

int main(int argc, char **argv)
{
	const char *base = getenv("SQUIB_BENCH_DIR");
	char state[4200], mem[4200];
	uint64_t reports;

	(void)argc;
	if (!squib_kvm_available(NULL)) {
		printf("bench_lazy: /dev/kvm does not exist; nothing measured\n");
		return 0;
	}
	bk_guest_dir(argv[0], guest_dir, sizeof(guest_dir));
	snprintf(dir, sizeof(dir), "%s/squib-lbench-XXXXXX", base ? base : "/var/tmp");
	if (!mkdtemp(dir)) {
		fprintf(stderr, "bench_lazy: mkdtemp %s: %s\n", dir, strerror(errno));
		return 1;
	}
	snprintf(state, sizeof(state), "%s/vm.snap", dir);
	snprintf(mem, sizeof(mem), "%s/vm.mem", dir);
	reports = make_snapshot(state, mem);
	printf("bench_lazy: 1 vCPU, 1 GiB RAM, %llu MiB non-zero in 1 MiB runs (the working set), "
	       "counter guest; Full pair in %s\n",
	       (unsigned long long)(WS_BYTES >> 20), dir);
	{
		double floor_ms = memcpy_baseline();

		bench_working_set(mem, false, false, floor_ms);
		bench_working_set(mem, true, false, floor_ms);
		bench_working_set(mem, false, true, floor_ms);
	}
	bench_p7(state, mem, reports);
	unlink(state);
	unlink(mem);
	if (rmdir(dir))
		fprintf(stderr, "bench_lazy: rmdir %s: %s\n", dir, strerror(errno));
	return 0;
}
