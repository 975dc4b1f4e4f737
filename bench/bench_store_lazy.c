/* SPDX-License-Identifier: Apache-2.0 */
/*
 * bench_store_lazy: lazy restore from the snapshot store, on memory no one
 * here wrote. A Python interpreter with its libraries loaded, a Node.js HTTP
 * server and GCC's cc1 mid-build are laid (/proc/PID/mem) into a 512 MiB
 * guest RAM, saved and pushed to the store: Ceph RGW when SQUIB_TEST_S3_URL
 * is set (scripts/run-bench.sh starts a throwaway one), else a directory
 * store (labelled so). The working set is every present page, in 2 MiB runs
 * in a shuffled order (a guest touching its memory all over). One thread
 * reads a byte of each page, in that order, through the userfaultfd pager:
 *
 *   cold, on demand      fresh source, empty chunk cache: time to the first
 *                        served fault, time to fault in the working set
 *   cold, prefetched     squib_store_source_prefetch of the set, then the reads
 *   pull, then FILE      squib_store_pull, mmap the memory file, the reads
 *   warm cache           every chunk in the disk cache, the reads on demand
 *   local memory file    the pulled file through the file page source
 *
 * Ratios: on demand / prefetched (goal >= 3), warm cache / local file
 * (goal <= 1.2). Figures in one run; the cold phases once (they cannot repeat
 * without a fresh store), the warm and local ones in $SQUIB_BENCH_ROUNDS
 * interleaved rounds (default 5; the machine may be shared: each round's ratio
 * and their range are reported). Usage: bench_store_lazy
 * ($SQUIB_BENCH_RAM_MIB: another RAM size, e.g. 128 for a short profiling run;
 * $SQUIB_BENCH_WARM_ONLY=1: the cold phases skipped;
 * $SQUIB_BENCH_PERF_CTL: a `perf record --control fifo:PATH -D -1` fifo, enabled
 * during the warm on-demand reads only).
 */
#include <fcntl.h>
#include <inttypes.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/resource.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include <squib/snapshot.h>
#include <squib/store_source.h>

#include "benchutil.h"

/* The guest RAM: 512 MiB, or $SQUIB_BENCH_RAM_MIB (>= 64, for short profiling runs). */
static uint64_t guest_ram = 512ull << 20;
#define PAGE	   4096ull
#define GUEST_BASE 0x100000000ull
#define RUN_PAGES  512u /* 2 MiB */

static uint64_t rng = 0x2545f4914f6cdd1dull;

static uint64_t next_rand(void)
{
	rng ^= rng << 13;
	rng ^= rng >> 7;
	rng ^= rng << 17;
	return rng;
}

/* ---- content: real programs' memory (as bench_store lays it) ---------------------- */

static pid_t start(char *const argv[], int *keep, int wait_line)
{
	int in[2], out[2];
	char c;
	pid_t p;

	if (pipe(in) || pipe(out))
		return -1;
	if (!(p = fork())) {
		dup2(in[0], 0);
		dup2(out[1], 1);
		close(in[1]);
		close(out[0]);
		execvp(argv[0], argv);
		_exit(127);
	}
	close(in[0]);
	close(out[1]);
	*keep = in[1];
	while (wait_line && read(out[0], &c, 1) == 1 && c != '\n')
		;
	close(out[0]);
	return p;
}

static uint64_t lay_in(pid_t pid, uint8_t *ram, uint64_t cursor, uint64_t lim)
{
	char path[64], line[512];
	uint64_t start0 = cursor;
	FILE *maps;
	int mem;

	snprintf(path, sizeof(path), "/proc/%d/maps", (int)pid);
	if (!(maps = fopen(path, "r")))
		return 0;
	snprintf(path, sizeof(path), "/proc/%d/mem", (int)pid);
	mem = open(path, O_RDONLY);
	while (mem >= 0 && fgets(line, sizeof(line), maps)) {
		unsigned long long a, b;
		char perms[8];

		if (sscanf(line, "%llx-%llx %7s", &a, &b, perms) != 3 || perms[0] != 'r' ||
		    strstr(line, "[vvar]") || strstr(line, "[vsyscall]"))
			continue;
		for (uint64_t o = a; o < b && cursor + PAGE <= lim; o += PAGE)
			if (pread(mem, ram + cursor, PAGE, (off_t)o) == (ssize_t)PAGE)
				cursor += PAGE;
	}
	if (mem >= 0)
		close(mem);
	fclose(maps);
	return cursor - start0;
}

static int build_content(uint8_t *ram)
{
	char *py[] = {"python3", "-c",
		      "import json,email.parser,http.server,sqlite3,decimal,asyncio,unittest,"
		      "argparse,logging,xml.etree.ElementTree;print('ready',flush=True);"
		      "import sys;sys.stdin.read()",
		      NULL};
	char *node[] = {"node", "-e",
			"const h=require('http');const s=h.createServer((q,r)=>r.end('x'));"
			"s.listen(0,()=>console.log('ready'));process.stdin.resume()",
			NULL};
	char *gcc[] = {"sh", "-c",
		       "for i in $(seq 4000); do echo \"int f$i(int*a,int n){int s=$i;for(int "
		       "i=0;i<n;i++)s+=a[i]*$i^(s>>3);return s;}\"; done > /tmp/bsl_big.c; "
		       "echo ready; exec $(gcc -print-prog-name=cc1) -quiet -O2 /tmp/bsl_big.c "
		       "-o /dev/null",
		       NULL};
	char *const *argv[3] = {py, node, gcc};
	uint64_t used = 0;

	for (int i = 0; i < 3; i++) {
		int keep = -1;
		pid_t pid = start(argv[i], &keep, 1);
		uint64_t n;

		if (pid < 0)
			return -1;
		if (i == 2) {
			sleep(3); /* mid-build: the shell exec'd cc1 */
		}
		n = lay_in(pid, ram, (uint64_t)i * (guest_ram / 3) & ~(PAGE - 1),
			   (uint64_t)(i + 1) * (guest_ram / 3) & ~(PAGE - 1));
		printf("content: %s %.1f MiB\n",
		       i == 0	? "python3"
		       : i == 1 ? "node"
				: "cc1",
		       n / 1048576.0);
		used += n;
		kill(pid, SIGKILL);
		waitpid(pid, NULL, 0);
		close(keep);
	}
	unlink("/tmp/bsl_big.c");
	return used ? 0 : -1;
}

/* ---- the pair, the store ------------------------------------------------------------ */

static int save_pair(const char *dir, uint8_t *ram, struct squib_memfile_manifest *m,
		     char **state_path, char **mem_path)
{
	struct squib_memfile_source_region r = {GUEST_BASE, guest_ram, ram};
	struct squib_memfile_source src = {&r, 1, PAGE};
	struct squib_microvm_state s;
	struct squib_error_detail d;
	int rc;

	if (asprintf(state_path, "%s/vm.snap", dir) < 0 || asprintf(mem_path, "%s/vm.mem", dir) < 0)
		return -1;
	rc = squib_memfile_save_full(*mem_path, &src, NULL, m, &d);
	squib_state_init(&s, SQUIB_ARCH_X86_64);
	if (!rc)
		rc = squib_state_set_memory(&s, &m->layout, &d);
	if (!rc)
		rc = squib_state_save_file(*state_path, &s, &d);
	squib_state_free(&s);
	if (rc)
		fprintf(stderr, "bench_store_lazy: saving: %s\n", d.msg);
	return rc;
}

/* Every present page, in runs of at most 2 MiB, shuffled. */
static struct squib_ws_run *working_set(const struct squib_memory_layout *l, uint64_t *n,
					uint64_t *pages)
{
	struct squib_ws_run *v = NULL;
	size_t cap = 0;

	*n = *pages = 0;
	for (uint64_t i = 0; i < l->extent_count; i++)
		for (uint64_t p = l->extents[i].first_page;
		     p < l->extents[i].first_page + l->extents[i].page_count; p += RUN_PAGES) {
			uint64_t end = l->extents[i].first_page + l->extents[i].page_count;

			if (*n == cap &&
			    !(v = realloc(v, (cap = cap ? 2 * cap : 1024) * sizeof(*v))))
				return NULL;
			v[*n] = (struct squib_ws_run){p, end - p < RUN_PAGES ? end - p : RUN_PAGES};
			*pages += v[(*n)++].page_count;
		}
	for (uint64_t i = *n; i > 1; i--) {
		uint64_t j = next_rand() % i;
		struct squib_ws_run t = v[i - 1];

		v[i - 1] = v[j];
		v[j] = t;
	}
	return v;
}

/* ---- the phases ------------------------------------------------------------------------ */

struct restore {
	uint8_t *ram;
	struct squib_pager *p;
	struct squib_store_source *ss;
};

static int pager_on(struct squib_page_source src, struct restore *r)
{
	struct squib_pager_region reg;
	struct squib_error_detail d;

	r->ram = mmap(NULL, guest_ram, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
	reg = (struct squib_pager_region){r->ram, guest_ram, 0};
	if (r->ram == MAP_FAILED || squib_pager_start(&reg, 1, src, NULL, &r->p, &d)) {
		fprintf(stderr, "bench_store_lazy: pager: %s\n", d.msg);
		return -1;
	}
	return 0;
}

static int from_store(struct squib_store *st, const uint8_t *id, const char *cache,
		      struct restore *r)
{
	struct squib_store_source_options o = {.cache_dir = cache, .cache_bytes = 2ull << 30};
	struct squib_page_source src;
	struct squib_error_detail d;

	memset(r, 0, sizeof(*r));
	if (squib_store_source_open(st, id, &o, &src, &r->ss, &d)) {
		fprintf(stderr, "bench_store_lazy: source: %s\n", d.msg);
		return -1;
	}
	return pager_on(src, r);
}

static void restore_end(struct restore *r)
{
	squib_pager_free(r->p);
	if (r->ram && r->ram != MAP_FAILED)
		munmap(r->ram, guest_ram);
}

/* CPU seconds (user + system) of every thread of the process so far: the pager's, the
 * source's, the reader's. On a shared machine a phase's CPU time moves less than its wall
 * time. */
static double cpu_s(void)
{
	struct rusage u;

	getrusage(RUSAGE_SELF, &u);
	return (double)(u.ru_utime.tv_sec + u.ru_stime.tv_sec) +
	       (double)(u.ru_utime.tv_usec + u.ru_stime.tv_usec) / 1e6;
}

/* Read a byte of every page of the runs, in order; their sum (so the reads stay). */
static uint64_t touch(const uint8_t *ram, const struct squib_ws_run *ws, uint64_t n)
{
	uint64_t sum = 0;

	for (uint64_t i = 0; i < n; i++)
		for (uint64_t p = ws[i].first_page; p < ws[i].first_page + ws[i].page_count; p++)
			sum += ((const volatile uint8_t *)ram)[p * PAGE + 64];
	return sum;
}

static int install_pager(void *ctx, const struct squib_ws_run *runs, uint64_t n,
			 uint64_t *installed, struct squib_error_detail *d)
{
	return squib_pager_prefetch(ctx, runs, n, installed, d);
}

#define ROUNDS_MAX 50

struct figures {
	double first_ms, demand_s, prefetch_s, pull_s, warm_s, warm_prefetch_s, local_s;
	int rounds;
	/* warm / local in each round: wall times, on demand and prefetched; CPU, on demand */
	double ratio[ROUNDS_MAX], ratio_prefetch[ROUNDS_MAX], ratio_cpu[ROUNDS_MAX];
};

/* Cold: an empty chunk cache (as a restore on a new host has), one per run. */
static int cold(struct squib_store *st, const uint8_t *id, const char *dir,
		const struct squib_ws_run *ws, uint64_t n, uint64_t want, struct figures *f)
{
	char c1[512], c2[512];
	struct squib_error_detail d;
	struct restore r;
	uint64_t t0, got = 0, sum;

	snprintf(c1, sizeof(c1), "%s/cold1", dir);
	snprintf(c2, sizeof(c2), "%s/cold2", dir);
	if (from_store(st, id, c1, &r))
		return -1;
	t0 = now_ns();
	sum = ((const volatile uint8_t *)r.ram)[ws[0].first_page * PAGE];
	f->first_ms = (double)(now_ns() - t0) / 1e6;
	sum += touch(r.ram, ws, n);
	f->demand_s = (double)(now_ns() - t0) / 1e9;
	restore_end(&r);
	if (from_store(st, id, c2, &r))
		return -1;
	t0 = now_ns();
	if (squib_store_source_prefetch(r.ss, ws, n, install_pager, r.p, &got, &d))
		fprintf(stderr, "bench_store_lazy: prefetch: %s\n", d.msg);
	sum += touch(r.ram, ws, n);
	f->prefetch_s = (double)(now_ns() - t0) / 1e9;
	{
		struct squib_store_source_stats ss;

		squib_store_source_stats(r.ss, &ss);
		printf("cold prefetch: %" PRIu64 " chunks fetched, %" PRIu64 " waits on a fetch in "
		       "flight, %" PRIu64 " from memory\n",
		       ss.chunks_fetched, ss.waits, ss.memory_hits);
	}
	restore_end(&r);
	if (got != want)
		fprintf(stderr, "bench_store_lazy: prefetch installed %" PRIu64 " of %" PRIu64 "\n",
			got, want);
	return sum ? 0 : -1;
}

static int pull_file(struct squib_store *st, const uint8_t *id, const char *dir,
		     const struct squib_ws_run *ws, uint64_t n, char **state, struct figures *f)
{
	struct squib_error_detail d;
	uint64_t t0 = now_ns(), sum;
	char *mem;
	uint8_t *map;
	int fd;

	if (squib_store_pull(st, id, dir, NULL, NULL, state, &d)) {
		fprintf(stderr, "bench_store_lazy: pull: %s\n", d.msg);
		return -1;
	}
	mem = strdup(*state);
	strcpy(strrchr(mem, '.'), ".mem");
	fd = open(mem, O_RDONLY);
	map = fd < 0 ? MAP_FAILED : mmap(NULL, guest_ram, PROT_READ, MAP_PRIVATE, fd, 0);
	free(mem);
	if (map == MAP_FAILED)
		return -1;
	sum = touch(map, ws, n);
	f->pull_s = (double)(now_ns() - t0) / 1e9;
	munmap(map, guest_ram);
	close(fd);
	return sum ? 0 : -1;
}

/* $SQUIB_BENCH_PERF_CTL: a perf --control fifo, enabled around the warm on-demand reads. */
static void perf_ctl(const char *cmd)
{
	const char *path = getenv("SQUIB_BENCH_PERF_CTL");
	int fd;

	if (path && *path && (fd = open(path, O_WRONLY)) >= 0) {
		if (write(fd, cmd, strlen(cmd)) < 0)
			perror("perf control");
		close(fd);
	}
}

/*
 * Fill the disk cache: restores prefetching the working set until one fetches nothing from
 * the store (one pass should do: fills wait for room in the cache writer's queue; but a
 * "warm" figure over a half-filled cache would time the store, so this checks).
 */
static int fill_cache(struct squib_store *st, const uint8_t *id, const char *cache,
		      const struct squib_ws_run *ws, uint64_t n)
{
	struct squib_store_source_stats ss = {0};
	struct squib_error_detail d;
	struct restore r;
	uint64_t got;
	int pass = 0;

	do {
		if (from_store(st, id, cache, &r))
			return -1;
		squib_store_source_prefetch(r.ss, ws, n, install_pager, r.p, &got, &d);
		squib_store_source_stats(r.ss, &ss);
		restore_end(&r); /* the cache's writer finishes its queue */
		printf("cache fill, pass %d: %" PRIu64 " chunks from the store, %" PRIu64
		       " from the cache\n",
		       ++pass, ss.chunks_fetched, ss.cache_hits);
	} while (ss.chunks_fetched && pass < 8);
	if (ss.chunks_fetched)
		fprintf(stderr, "bench_store_lazy: the cache is still not warm after %d passes\n",
			pass);
	return 0;
}

static int warm(struct squib_store *st, const uint8_t *id, const char *cache,
		const struct squib_ws_run *ws, uint64_t n, double *demand_s, double *demand_cpu,
		double *prefetch_s)
{
	struct squib_error_detail d;
	struct restore r;
	uint64_t t0, got, sum;
	double c0;

	if (from_store(st, id, cache, &r))
		return -1;
	perf_ctl("enable\n");
	c0 = cpu_s();
	t0 = now_ns();
	sum = touch(r.ram, ws, n);
	*demand_s = (double)(now_ns() - t0) / 1e9;
	*demand_cpu = cpu_s() - c0;
	perf_ctl("disable\n");
	{
		struct squib_store_source_stats ss;

		squib_store_source_stats(r.ss, &ss);
		printf("warm on demand: %" PRIu64 " cache hits, %" PRIu64 " from memory, %" PRIu64
		       " fetched from the store, %" PRIu64 " corrupt\n",
		       ss.cache_hits, ss.memory_hits, ss.chunks_fetched, ss.cache_corrupt);
	}
	restore_end(&r);
	if (from_store(st, id, cache, &r))
		return -1;
	t0 = now_ns();
	squib_store_source_prefetch(r.ss, ws, n, install_pager, r.p, &got, &d);
	sum += touch(r.ram, ws, n);
	*prefetch_s = (double)(now_ns() - t0) / 1e9;
	restore_end(&r);
	return sum ? 0 : -1;
}

static int local(const char *state, const struct squib_ws_run *ws, uint64_t n, double *local_s,
		 double *local_cpu)
{
	double c0;
	struct squib_page_source src;
	struct squib_error_detail d;
	struct squib_memfile *m;
	struct restore r = {0};
	char *mem = strdup(state);
	uint64_t t0, sum;

	strcpy(strrchr(mem, '.'), ".mem");
	if (squib_memfile_open(mem, &m, &d) || squib_page_source_file(m, &src, &d)) {
		fprintf(stderr, "bench_store_lazy: %s: %s\n", mem, d.msg);
		free(mem);
		return -1;
	}
	free(mem);
	if (pager_on(src, &r))
		return -1;
	c0 = cpu_s();
	t0 = now_ns();
	sum = touch(r.ram, ws, n);
	*local_s = (double)(now_ns() - t0) / 1e9;
	*local_cpu = cpu_s() - c0;
	restore_end(&r);
	squib_memfile_close(m);
	return sum ? 0 : -1;
}

/*
 * The warm and local phases, ROUNDS times, interleaved (warm on demand, warm prefetched, local):
 * on a shared machine a round's ratios compare figures taken seconds apart. The figures kept
 * are the medians; the ratios' ranges are over the rounds.
 */
static int warm_rounds(struct squib_store *st, const uint8_t *id, const char *cache,
		       const char *state, const struct squib_ws_run *ws, uint64_t n,
		       struct figures *f)
{
	double w[ROUNDS_MAX], wp[ROUNDS_MAX], l[ROUNDS_MAX], wc[ROUNDS_MAX], lc[ROUNDS_MAX];

	if (fill_cache(st, id, cache, ws, n))
		return -1;
	for (int i = 0; i < f->rounds; i++) {
		if (warm(st, id, cache, ws, n, &w[i], &wc[i], &wp[i]) ||
		    local(state, ws, n, &l[i], &lc[i]))
			return -1;
		f->ratio[i] = w[i] / l[i];
		f->ratio_prefetch[i] = wp[i] / l[i];
		f->ratio_cpu[i] = wc[i] / lc[i];
		printf("round %d: warm on demand %.3f s (%.3f s CPU), prefetched %.3f s, local "
		       "%.3f s (%.3f s CPU): %.2f, %.2f; CPU %.2f\n",
		       i + 1, w[i], wc[i], wp[i], l[i], lc[i], f->ratio[i], f->ratio_prefetch[i],
		       f->ratio_cpu[i]);
	}
	qsort(w, (size_t)f->rounds, sizeof(double), cmp_double);
	qsort(wp, (size_t)f->rounds, sizeof(double), cmp_double);
	qsort(l, (size_t)f->rounds, sizeof(double), cmp_double);
	f->warm_s = w[f->rounds / 2];
	f->warm_prefetch_s = wp[f->rounds / 2];
	f->local_s = l[f->rounds / 2];
	return 0;
}

static void report(const struct figures *f, uint64_t pages, uint64_t runs, const char *where)
{
	double mib = (double)(pages * PAGE) / 1048576.0;

	printf("working set %.0f MiB (%" PRIu64 " pages in %" PRIu64
	       " runs of at most 2 MiB, shuffled), from %s:\n",
	       mib, pages, runs, where);
	printf("  cold, first served fault      %8.2f ms\n", f->first_ms);
	printf("  cold, on demand               %8.2f s  (%.0f MiB/s)\n", f->demand_s,
	       mib / f->demand_s);
	printf("  cold, prefetched in parallel  %8.2f s  (%.0f MiB/s)\n", f->prefetch_s,
	       mib / f->prefetch_s);
	printf("  pull, then FILE (mmap)        %8.2f s\n", f->pull_s);
	printf("  warm cache, on demand         %8.2f s\n", f->warm_s);
	printf("  warm cache, prefetched        %8.2f s\n", f->warm_prefetch_s);
	printf("  local memory file, on demand  %8.2f s\n", f->local_s);
	printf("  on demand / prefetched = %.2f (goal >= 3); pull+FILE / prefetched = %.2f\n",
	       f->demand_s / f->prefetch_s, f->pull_s / f->prefetch_s);
	double r[ROUNDS_MAX], rp[ROUNDS_MAX], rc[ROUNDS_MAX];
	int n = f->rounds;

	memcpy(r, f->ratio, sizeof(r));
	memcpy(rp, f->ratio_prefetch, sizeof(rp));
	memcpy(rc, f->ratio_cpu, sizeof(rc));
	qsort(r, (size_t)n, sizeof(double), cmp_double);
	qsort(rp, (size_t)n, sizeof(double), cmp_double);
	qsort(rc, (size_t)n, sizeof(double), cmp_double);
	printf("  (warm and local: medians of %d interleaved rounds)\n", n);
	printf("  warm cache / local file, per round: on demand %.2f (%.2f-%.2f), prefetched %.2f "
	       "(%.2f-%.2f) (median (min-max); goal <= 1.2)\n",
	       r[n / 2], r[0], r[n - 1], rp[n / 2], rp[0], rp[n - 1]);
	printf("  warm cache / local file in CPU time (all threads), on demand: %.2f (%.2f-%.2f)\n",
	       rc[n / 2], rc[0], rc[n - 1]);
}

int main(void)
{
	const char *s3 = getenv("SQUIB_TEST_S3_URL"), *tmp = getenv("SQUIB_BENCH_DIR"), *mib;
	char dir[256], *url = NULL, *state = NULL, *mem = NULL, *pulled = NULL, *cache;
	struct squib_store_options so = {.workers = 8};
	struct squib_memfile_manifest m = {0};
	struct squib_store *st = NULL;
	struct squib_error_detail d;
	struct squib_ws_run *ws;
	struct figures f = {0};
	uint64_t n, pages, t0;
	uint8_t *ram;
	int rc = 1;

	if ((mib = getenv("SQUIB_BENCH_RAM_MIB")) && atoi(mib) >= 64)
		guest_ram = (uint64_t)atoi(mib) << 20;
	f.rounds = (mib = getenv("SQUIB_BENCH_ROUNDS")) && atoi(mib) > 0 ? atoi(mib) : 5;
	if (f.rounds > ROUNDS_MAX)
		f.rounds = ROUNDS_MAX;
	snprintf(dir, sizeof(dir), "%s/bench_store_lazy.XXXXXX", tmp && *tmp ? tmp : "/var/tmp");
	ram = mmap(NULL, guest_ram, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
	if (!mkdtemp(dir) || ram == MAP_FAILED || build_content(ram) ||
	    save_pair(dir, ram, &m, &state, &mem))
		return 1;
	munmap(ram, guest_ram);
	if (s3 && *s3)
		rc = asprintf(&url, "%s/bench-lazy-%ld", s3, (long)getpid()) < 0;
	else
		rc = asprintf(&url, "%s/store", dir) < 0;
	if (rc || asprintf(&cache, "%s/cache", dir) < 0 ||
	    asprintf(&pulled, "%s/pulled", dir) < 0 || mkdir(pulled, 0700) ||
	    squib_store_open(url, &so, &st, &d))
		return 1;
	t0 = now_ns();
	if (squib_store_push(st, state, mem, NULL, NULL, 0, NULL, NULL, &d)) {
		fprintf(stderr, "bench_store_lazy: push: %s\n", d.msg);
		return 1;
	}
	printf("pushed %.0f MiB of RAM to %s in %.2f s\n", guest_ram / 1048576.0,
	       s3 && *s3 ? "Ceph RGW" : "a directory store", (double)(now_ns() - t0) / 1e9);
	ws = working_set(&m.layout, &n, &pages);
	free(state);
	state = NULL;
	/* $SQUIB_BENCH_WARM_ONLY: skip the cold phases (profiling the warm path). */
	rc = !ws ||
	     (!getenv("SQUIB_BENCH_WARM_ONLY") && cold(st, m.layout.id, dir, ws, n, pages, &f)) ||
	     pull_file(st, m.layout.id, pulled, ws, n, &state, &f) ||
	     warm_rounds(st, m.layout.id, cache, state, ws, n, &f);
	if (!rc)
		report(&f, pages, n,
		       s3 && *s3 ? "Ceph RGW (127.0.0.1)"
				 : "a DIRECTORY store (no S3 server: SQUIB_TEST_S3_URL unset)");
	squib_store_close(st);
	char *rm;
	if (asprintf(&rm, "rm -rf '%s'", dir) > 0 && system(rm))
		rc = 1;
	return rc;
}
