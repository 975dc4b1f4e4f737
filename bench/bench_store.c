/* SPDX-License-Identifier: Apache-2.0 */
/*
 * bench_store: the snapshot store on memory content no one here wrote. The
 * bench starts a Python interpreter with its libraries loaded, a Node.js
 * HTTP server and GCC's cc1 compiling a large file, and lays their memory
 * (/proc/PID/mem, every readable mapping) into a 1 GiB guest RAM, the rest
 * zero. On that:
 *
 *   sweep      for chunk sizes 64 KiB..1 MiB and zstd levels 1..9: stored
 *              bytes / present bytes of one snapshot, and ten snapshots of
 *              one base with ~1 % of RAM changed each (runs of 1-32 pages
 *              copied from elsewhere in the image), stored / one snapshot;
 *              the single-thread compression speed. This chose the defaults.
 *   push       the defaults through the library into a directory store:
 *              stored / present, ten 1 % diffs pushed as Diff pairs: stored /
 *              one; and with SQUIB_TEST_S3_URL (a live S3 server, as `make
 *              test-store` sets): push throughput vs the server's raw PUT
 *              throughput with the same object sizes and parallelism.
 *
 * Usage: bench_store [sweep|push|all] (default all).
 */
#include <errno.h>
#include <pthread.h>
#include <fcntl.h>
#include <inttypes.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include <zstd.h>

#include <squib/snapshot.h>

#include "benchutil.h"

#define GUEST_RAM  (1ull << 30)
#define PAGE	   4096ull
#define GUEST_BASE 0x100000000ull

static uint64_t rng = 0x9e3779b97f4a7c15ull;

static uint64_t next_rand(void)
{
	rng ^= rng << 13;
	rng ^= rng >> 7;
	rng ^= rng << 17;
	return rng;
}

/* Start argv with stdin a pipe we hold open and stdout a pipe; wait for a line. */
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

/* Copy every readable mapping of pid into ram from *cursor (page-aligned), up to lim. */
static uint64_t lay_in(pid_t pid, uint8_t *ram, uint64_t *cursor, uint64_t lim)
{
	char path[64], line[512];
	uint64_t start0 = *cursor;
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
		for (uint64_t o = a; o < b && *cursor + PAGE <= lim; o += PAGE)
			if (pread(mem, ram + *cursor, PAGE, (off_t)o) == (ssize_t)PAGE)
				*cursor += PAGE;
	}
	if (mem >= 0)
		close(mem);
	fclose(maps);
	return *cursor - start0;
}

static void write_big_c(const char *path)
{
	FILE *f = fopen(path, "w");

	for (int i = 0; f && i < 4000; i++)
		fprintf(f,
			"int f%d(int *a, int n) { int s = %d; for (int i = 0; i < n; i++) "
			"{ s += a[i] * %d ^ (s >> 3); if (s %% 7 == %d) s -= a[(i + 3) %% n]; } "
			"return s; }\n",
			i, i, i % 13 + 1, i % 7);
	if (f)
		fclose(f);
}

struct content {
	uint8_t *ram;
	uint64_t used[3], base[3]; /* each program's bytes and where they start */
};

static int cc1_path(char *out, size_t n)
{
	FILE *p = popen("gcc -print-prog-name=cc1", "r");
	int ok = p && fgets(out, (int)n, p);

	if (p)
		pclose(p);
	out[strcspn(out, "\n")] = '\0';
	return ok && access(out, X_OK) == 0 ? 0 : -1;
}

static int build_content(struct content *c)
{
	char *py[] = {
	    "python3", "-c",
	    "import json,email.parser,http.server,sqlite3,decimal,asyncio,unittest,argparse,"
	    "logging,xml.etree.ElementTree;print('ready',flush=True);import sys;sys.stdin.read()",
	    NULL};
	char *node[] = {"node", "-e",
			"const h=require('http');const s=h.createServer((q,r)=>r.end('x'));"
			"s.listen(0,()=>console.log('ready'));process.stdin.resume()",
			NULL};
	char cc1[512], src[] = "/tmp/bench_store_big.c";
	char *comp[] = {cc1, "-quiet", "-O2", src, "-o", "/dev/null", NULL};
	char *const *argv[3] = {py, node, comp};
	int keep[3] = {-1, -1, -1};
	pid_t pid[3];

	c->ram = mmap(NULL, GUEST_RAM, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
	if (c->ram == MAP_FAILED || cc1_path(cc1, sizeof(cc1)))
		return -1;
	write_big_c(src);
	for (int i = 0; i < 3; i++) {
		pid[i] = start(argv[i], &keep[i], i < 2);
		if (pid[i] < 0)
			return -1;
		if (i == 2)
			sleep(3); /* mid-build */
		c->base[i] = (uint64_t)i * (GUEST_RAM / 4);
		uint64_t cur = c->base[i];
		c->used[i] = lay_in(pid[i], c->ram, &cur, c->base[i] + GUEST_RAM / 4);
		kill(pid[i], SIGKILL);
		waitpid(pid[i], NULL, 0);
		close(keep[i]);
	}
	unlink(src);
	printf("content: python3 %.1f MiB, node %.1f MiB, cc1 mid-build %.1f MiB laid into 1 GiB\n",
	       c->used[0] / 1048576.0, c->used[1] / 1048576.0, c->used[2] / 1048576.0);
	return c->used[0] && c->used[1] && c->used[2] ? 0 : -1;
}

/* One ~1 % diff: runs of 1-32 pages inside the programs' images, each page copied from
 * another page of them with 8 bytes changed. */
static void apply_diff(const struct content *c, uint8_t *ram)
{
	for (uint64_t pages = 0; pages < GUEST_RAM / PAGE / 100;) {
		int i = (int)(next_rand() % 3);
		uint64_t n = next_rand() % 32 + 1, np = c->used[i] / PAGE;
		uint64_t dst = c->base[i] / PAGE + next_rand() % (np > n ? np - n : 1);

		for (uint64_t k = 0; k < n; k++, pages++) {
			int j = (int)(next_rand() % 3);
			uint64_t src = c->base[j] / PAGE + next_rand() % (c->used[j] / PAGE);
			uint8_t *p = ram + (dst + k) * PAGE;

			memmove(p, ram + src * PAGE, PAGE);
			for (int b = 0; b < 8; b++)
				p[next_rand() % PAGE] = (uint8_t)next_rand();
		}
	}
}

static bool zero(const uint8_t *p, size_t n)
{
	return !p[0] && !memcmp(p, p + 1, n - 1);
}

/* Unique non-zero chunks of ram at this size, against (and added to) the set `seen`. */
struct seen {
	struct squib_store_hash *v;
	size_t n, cap;
};

static bool seen_add(struct seen *s, const struct squib_store_hash *h)
{
	for (size_t i = 0; i < s->n; i++) /* small sets (thousands): linear is fine */
		if (!memcmp(s->v[i].b, h->b, sizeof(h->b)))
			return false;
	if (s->n == s->cap) {
		s->cap = s->cap ? 2 * s->cap : 4096;
		s->v = realloc(s->v, s->cap * sizeof(*s->v));
	}
	s->v[s->n++] = *h;
	return true;
}

/* Compressed bytes of the chunks of ram not in `seen`; *present: non-zero bytes; *ns: time. */
static uint64_t store_bytes(const uint8_t *ram, size_t chunk, int level, struct seen *seen,
			    uint64_t *present, uint64_t *ns)
{
	uint64_t stored = 0, t = 0;

	*present = 0;
	for (uint64_t o = 0; o < GUEST_RAM; o += chunk) {
		struct squib_store_hash h;
		uint8_t *obj;
		size_t n;

		if (zero(ram + o, chunk))
			continue;
		*present += chunk;
		squib_store_hash(ram + o, chunk, &h, NULL);
		if (!seen_add(seen, &h))
			continue;
		uint64_t t0 = now_ns();
		if (squib_store_chunk_encode(ram + o, chunk, level, &obj, &n, NULL))
			exit(1);
		t += now_ns() - t0;
		stored += n;
		free(obj);
	}
	*ns = t;
	return stored;
}

static uint64_t present_bytes(const uint8_t *ram)
{
	uint64_t n = 0;

	for (uint64_t o = 0; o < GUEST_RAM; o += PAGE)
		n += zero(ram + o, PAGE) ? 0 : PAGE;
	return n;
}

static void sweep(const struct content *c)
{
	static const int levels[] = {1, 3, 6, 9};
	uint8_t *work =
	    mmap(NULL, GUEST_RAM, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
	uint64_t present = present_bytes(c->ram), pres, ns;

	printf("present (non-zero pages): %.1f MiB of 1024\n", present / 1048576.0);
	printf("%-8s %-6s %-16s %-14s\n", "chunk", "level", "stored/present", "compress MB/s");
	for (uint32_t shift = 16; shift <= 20; shift++) {
		size_t chunk = (size_t)1 << shift;

		for (size_t l = 0; l < sizeof(levels) / sizeof(levels[0]); l++) {
			struct seen s = {0};
			uint64_t st = store_bytes(c->ram, chunk, levels[l], &s, &pres, &ns);

			printf("%4zu KiB %-6d %-16.3f %-14.0f\n", chunk >> 10, levels[l],
			       (double)st / present, pres / (ns / 1e3));
			free(s.v);
		}
		struct seen s = {0};
		uint64_t one, total;

		memcpy(work, c->ram, GUEST_RAM);
		rng = 0x9e3779b97f4a7c15ull;
		total = one = store_bytes(work, chunk, 3, &s, &pres, &ns);
		for (int i = 0; i < 10; i++) {
			apply_diff(c, work);
			total += store_bytes(work, chunk, 3, &s, &pres, &ns);
		}
		printf("%4zu KiB level 3: base + ten 1%% diffs stored / one snapshot: %.3f "
		       "(chunk objects in all: %zu)\n",
		       chunk >> 10, (double)total / one, (size_t)(one ? s.n : 0));
		free(s.v);
	}
	munmap(work, GUEST_RAM);
}

/* DIR/STEM.mem (full, or a diff of bm over parent) and DIR/STEM.snap describing it. */
static int save_pair(const char *dir, const char *stem, uint8_t *ram, const uint8_t *parent,
		     struct squib_dirty_bitmap *bm, struct squib_memfile_manifest *m,
		     char **state_path, char **mem_path)
{
	struct squib_memfile_source_region r = {GUEST_BASE, GUEST_RAM, ram};
	struct squib_memfile_source src = {&r, 1, PAGE};
	const struct squib_dirty_bitmap *const bms[1] = {bm};
	struct squib_microvm_state s;
	struct squib_error_detail d;
	int rc;

	if (asprintf(state_path, "%s/%s.snap", dir, stem) < 0 ||
	    asprintf(mem_path, "%s/%s.mem", dir, stem) < 0)
		return -1;
	rc = parent ? squib_memfile_save_diff(*mem_path, &src, parent, bms, 1, NULL, m, &d)
		    : squib_memfile_save_full(*mem_path, &src, NULL, m, &d);
	squib_state_init(&s, SQUIB_ARCH_X86_64);
	if (!rc)
		rc = squib_state_set_memory(&s, &m->layout, &d);
	if (!rc)
		rc = squib_state_save_file(*state_path, &s, &d);
	squib_state_free(&s);
	if (rc)
		fprintf(stderr, "bench_store: saving %s: %s\n", stem, d.msg);
	return rc;
}

static int push_timed(struct squib_store *st, const char *state, const char *mem,
		      char *const *chain, size_t n, struct squib_store_push_stats *ps, double *s)
{
	struct squib_error_detail d;
	uint64_t t0 = now_ns();
	int rc =
	    squib_store_push(st, state, mem, (const char *const *)chain, NULL, n, NULL, ps, &d);

	*s = (now_ns() - t0) / 1e9;
	if (rc)
		fprintf(stderr, "bench_store: push %s: %s\n", state, d.msg);
	return rc;
}

/* Sum of the sizes of every object under prefix. */
static int add_size(void *ctx, const struct squib_store_object *o)
{
	*(uint64_t *)ctx += o->size;
	return 0;
}

static uint64_t stored(struct squib_store *st)
{
	uint64_t n = 0;

	squib_store_list(st, "", add_size, &n, NULL);
	return n;
}

/* Ten 1 % diffs of one base, each pushed as a Diff with its chain. */
static int push_diffs(const struct content *c, const char *dir, struct squib_store *st,
		      struct squib_memfile_manifest *base, char **states, char **mems)
{
	struct squib_memfile_manifest m = *base, next;

	rng = 0x9e3779b97f4a7c15ull;
	for (int i = 1; i <= 10; i++) {
		struct squib_dirty_bitmap *bm;
		struct squib_store_push_stats ps;
		char stem[16];
		double s;

		/* The diff's pages: whatever apply_diff changed (compare with a copy). */
		uint8_t *before = malloc(GUEST_RAM);
		memcpy(before, c->ram, GUEST_RAM);
		apply_diff(c, c->ram);
		squib_dirty_bitmap_new(GUEST_BASE, GUEST_RAM, PAGE, &bm, NULL);
		for (uint64_t p = 0; p < GUEST_RAM / PAGE; p++)
			if (memcmp(before + p * PAGE, c->ram + p * PAGE, PAGE))
				squib_dirty_bitmap_set_by_index(bm, p);
		free(before);
		snprintf(stem, sizeof(stem), "diff%d", i);
		if (save_pair(dir, stem, c->ram, m.layout.id, bm, &next, &states[i], &mems[i]) ||
		    push_timed(st, states[i], mems[i], states, (size_t)i, &ps, &s))
			return -1;
		squib_dirty_bitmap_free(bm);
		if (i > 1)
			squib_memfile_manifest_release(&m);
		m = next;
	}
	squib_memfile_manifest_release(&m); /* the newest diff's */
	return 0;
}

struct raw_put {
	struct squib_store *st;
	size_t size;
	uint32_t next, count;
	pthread_mutex_t mu;
};

static void *raw_put_main(void *arg)
{
	struct raw_put *r = arg;
	uint8_t *buf = malloc(r->size);
	char key[64];

	for (size_t i = 0; i < r->size; i++)
		buf[i] = (uint8_t)next_rand();
	for (;;) {
		pthread_mutex_lock(&r->mu);
		uint32_t k = r->next++;
		pthread_mutex_unlock(&r->mu);
		if (k >= r->count)
			break;
		snprintf(key, sizeof(key), "raw/%08" PRIu32, k);
		buf[0] = (uint8_t)k;
		if (squib_store_put(r->st, key, buf, r->size, NULL))
			fprintf(stderr, "bench_store: raw PUT %s failed\n", key);
	}
	free(buf);
	return NULL;
}

/* The server's raw PUT throughput: count objects of size bytes, `threads` at a time. */
static double raw_put_mbs(struct squib_store *st, size_t size, uint32_t count, uint32_t threads)
{
	struct raw_put r = {.st = st, .size = size, .count = count};
	pthread_t t[64];
	uint64_t t0 = now_ns();

	pthread_mutex_init(&r.mu, NULL);
	for (uint32_t i = 0; i < threads; i++)
		pthread_create(&t[i], NULL, raw_put_main, &r);
	for (uint32_t i = 0; i < threads; i++)
		pthread_join(t[i], NULL);
	return (double)size * count / ((now_ns() - t0) / 1e3);
}

static void s3_throughput(const char *state, const char *mem)
{
	const char *base = getenv("SQUIB_TEST_S3_URL");
	struct squib_store_options o = {.workers = 8};
	struct squib_store_push_stats ps;
	struct squib_store *st;
	char url[256];
	double s, raw;

	if (!base || !*base) {
		printf("S3: SQUIB_TEST_S3_URL unset (`make test-store` style RGW): push vs raw PUT "
		       "not measured\n");
		return;
	}
	snprintf(url, sizeof(url), "%s/bench%ld", base, (long)getpid());
	if (squib_store_open(url, &o, &st, NULL) || push_timed(st, state, mem, NULL, 0, &ps, &s))
		return;
	raw = raw_put_mbs(st, ps.chunks_put ? ps.bytes_put / ps.chunks_put : 1,
			  (uint32_t)ps.chunks_put, o.workers);
	printf("S3 (%s): push %.1f MB/s of objects (%" PRIu64 " chunks, %.1f MB in %.2f s; "
	       "%.1f MB/s of present memory); raw PUT of as many objects of the mean size, %u at a "
	       "time: %.1f MB/s; push / raw = %.2f\n",
	       url, ps.bytes_put / s / 1e6, ps.chunks_put, ps.bytes_put / 1e6, s,
	       ps.bytes_present / s / 1e6, o.workers, raw, ps.bytes_put / s / 1e6 / raw);
	squib_store_close(st);
}

static int push_bench(struct content *c)
{
	char dir[] = "/tmp/bench_store.XXXXXX", store[64], *states[11] = {0}, *mems[11] = {0};
	struct squib_memfile_manifest base;
	struct squib_store_push_stats ps;
	struct squib_store *st;
	uint64_t one, ten;
	double s;
	int rc = -1;

	if (!mkdtemp(dir))
		return -1;
	snprintf(store, sizeof(store), "%s/store", dir);
	if (save_pair(dir, "base", c->ram, NULL, NULL, &base, &states[0], &mems[0]) ||
	    squib_store_open(store, NULL, &st, NULL))
		goto out;
	if (!push_timed(st, states[0], mems[0], NULL, 0, &ps, &s)) {
		one = stored(st);
		printf("push (directory store, defaults %u KiB / zstd %d): %" PRIu64
		       " chunks (%" PRIu64 " zero, %" PRIu64
		       " uploaded), %.2f s; stored / present = %.1f / %.1f MiB = %.3f\n",
		       1u << (SQUIB_STORE_DEFAULT_CHUNK_SHIFT - 10), SQUIB_STORE_DEFAULT_ZSTD_LEVEL,
		       ps.chunks, ps.chunks_zero, ps.chunks_put, s, one / 1048576.0,
		       base.layout.present_pages * PAGE / 1048576.0,
		       (double)one / (base.layout.present_pages * PAGE));
		s3_throughput(states[0], mems[0]);
		if (!push_diffs(c, dir, st, &base, states, mems)) {
			ten = stored(st);
			printf("ten 1%% diffs pushed as Diff pairs: stored %.1f MiB / one snapshot "
			       "%.1f MiB = %.3f\n",
			       ten / 1048576.0, one / 1048576.0, (double)ten / one);
			rc = 0;
		}
	}
	squib_store_close(st);
	squib_memfile_manifest_release(&base);
out:
	for (int i = 0; i < 11; i++) {
		free(states[i]);
		free(mems[i]);
	}
	snprintf(store, sizeof(store), "rm -rf %s", dir);
	if (system(store))
		rc = -1;
	return rc;
}

int main(int argc, char **argv)
{
	const char *mode = argc > 1 ? argv[1] : "all";
	struct content c = {0};

	if (build_content(&c)) {
		fprintf(stderr,
			"bench_store: could not lay real programs' memory in (python3, node, "
			"cc1 needed)\n");
		return 1;
	}
	if (!strcmp(mode, "sweep") || !strcmp(mode, "all"))
		sweep(&c);
	if (!strcmp(mode, "push") || !strcmp(mode, "all"))
		if (push_bench(&c))
			return 1;
	munmap(c.ram, GUEST_RAM);
	return 0;
}
