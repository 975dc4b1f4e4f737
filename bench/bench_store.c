/* SPDX-License-Identifier: Apache-2.0 */
/*
 * bench_store: the snapshot store on memory content no one here wrote. The
 * bench starts a Python interpreter with its libraries loaded (working on a
 * request per line of stdin), a Node.js HTTP server (churning a cache on a
 * timer) and GCC's cc1 compiling a large file, and lays their memory
 * (/proc/PID/mem, every readable mapping, each at a fixed place) into a
 * 1 GiB guest RAM, the rest zero. The ten diffs are the programs running on:
 * they are let run in short slices (SIGCONT ... SIGSTOP) and resampled at the
 * same places until ~1 % of the RAM's pages changed since the last snapshot.
 * On that:
 *
 *   sweep      for chunk sizes 16 KiB..1 MiB and zstd levels 1, 3, 9: stored
 *              bytes / present bytes of one snapshot; base + ten diffs stored
 *              / one snapshot (the chunks each diff's pages touch, against
 *              every chunk stored before); single-thread compression speed.
 *   save       the defaults through the library: squib_store_save of a VM
 *              over that RAM into a directory store (Full, then the ten
 *              diffs as Diffs through the VMM-marks tracker) - stored /
 *              present, stored / one snapshot, and the save's time against
 *              writing the raw 1 GiB file + fdatasync and against squib_save
 *              of a local pair; with SQUIB_TEST_S3_URL (a live S3 server, as
 *              `make test-store` sets) the same save into S3, and push
 *              throughput vs the server's raw PUT throughput with the same
 *              object sizes and parallelism. The ten diffs are saved again
 *              into a store without delta chunks (the baseline), and the
 *              11-image chain pulled from both and pushed into empty stores
 *              with and without deltas: ratios and times side by side.
 *
 * Usage: bench_store [sweep|save|all|full] (default all; full: the Full saves
 * only, no diffs made). Files go under
 * SQUIB_BENCH_DIR (default /var/tmp).
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

#include "../src/store/store_internal.h"
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

/* One readable mapping of a program and where its pages lie in the guest RAM. */
struct slot {
	uint64_t a, b, off;
};

struct prog {
	const char *name;
	pid_t pid;
	int in, out; /* its stdin and stdout */
	struct slot *v;
	size_t n;
	uint64_t base, used; /* its quarter of the RAM, and the bytes laid in */
	uint64_t changed;    /* pages changed in the current diff */
};

struct content {
	uint8_t *ram;
	struct prog p[3];
};

/* The pages one diff changed, and their new bytes. */
struct diff {
	uint64_t n, *pages;
	uint8_t *data;
};

/* Start argv with stdin and stdout pipes; wait for its first line. */
static pid_t start(char *const argv[], struct prog *p, int wait_line)
{
	int in[2], out[2];
	char c;

	if (pipe(in) || pipe(out))
		return -1;
	if (!(p->pid = fork())) {
		dup2(in[0], 0);
		dup2(out[1], 1);
		close(in[1]);
		close(out[0]);
		execvp(argv[0], argv);
		_exit(127);
	}
	close(in[0]);
	close(out[1]);
	p->in = in[1];
	p->out = out[0];
	while (wait_line && read(p->out, &c, 1) == 1 && c != '\n')
		;
	return p->pid;
}

/* The first time: every readable mapping gets its place from p->base on; then
 * each is read again at its place (pages that no longer read keep their bytes). */
static void lay_in(struct prog *p, uint8_t *ram, bool first)
{
	char path[64], line[512];
	FILE *maps = NULL;
	int mem;
	uint64_t cur = p->base, lim = p->base + GUEST_RAM / 4;

	snprintf(path, sizeof(path), "/proc/%d/maps", (int)p->pid);
	if (first && !(maps = fopen(path, "r")))
		return;
	snprintf(path, sizeof(path), "/proc/%d/mem", (int)p->pid);
	mem = open(path, O_RDONLY);
	while (first && mem >= 0 && fgets(line, sizeof(line), maps)) {
		unsigned long long a, b;
		char perms[8];

		if (sscanf(line, "%llx-%llx %7s", &a, &b, perms) != 3 || perms[0] != 'r' ||
		    strstr(line, "[vvar]") || strstr(line, "[vsyscall]") || cur >= lim)
			continue;
		if (b - a > lim - cur)
			b = a + (lim - cur);
		p->v = realloc(p->v, (p->n + 1) * sizeof(*p->v));
		p->v[p->n++] = (struct slot){a, b, cur};
		cur += b - a;
	}
	for (size_t i = 0; mem >= 0 && i < p->n; i++)
		for (uint64_t o = p->v[i].a; o < p->v[i].b; o += PAGE)
			if (pread(mem, ram + p->v[i].off + (o - p->v[i].a), PAGE, (off_t)o) !=
				(ssize_t)PAGE &&
			    first)
				memset(ram + p->v[i].off + (o - p->v[i].a), 0, PAGE);
	if (first)
		p->used = cur - p->base;
	if (mem >= 0)
		close(mem);
	if (maps)
		fclose(maps);
}

static void write_big_c(const char *path)
{
	FILE *f = fopen(path, "w");

	for (int i = 0; f && i < 12000; i++)
		fprintf(f,
			"int f%d(int *a, int n) { int s = %d; for (int i = 0; i < n; i++) "
			"{ s += a[i] * %d ^ (s >> 3); if (s %% 7 == %d) s -= a[(i + 3) %% n]; } "
			"return s; }\n",
			i, i, i % 13 + 1, i % 7);
	if (f)
		fclose(f);
}

static int cc1_path(char *out, size_t n)
{
	FILE *p = popen("gcc -print-prog-name=cc1", "r");
	int ok = p && fgets(out, (int)n, p);

	if (p)
		pclose(p);
	out[strcspn(out, "\n")] = '\0';
	return ok && access(out, X_OK) == 0 ? 0 : -1;
}

static char src_path[] = "/tmp/bench_store_big.c";

static int build_content(struct content *c)
{
	char *py[] = {
	    "python3", "-c",
	    "import json,email.parser,http.server,sqlite3,decimal,asyncio,unittest,argparse,"
	    "logging,xml.etree.ElementTree,sys\n"
	    "print('ready',flush=True)\nkeep=[]\n"
	    "for line in sys.stdin:\n"
	    " keep.append({i:json.dumps([i,str(i)*3]) for i in range(3000)})\n"
	    " keep=keep[-20:]\n print('ok',flush=True)\n",
	    NULL};
	char *node[] = {"node", "-e",
			"const h=require('http');const s=h.createServer((q,r)=>r.end('x'));"
			"let c=[];setInterval(()=>{c.push(JSON.stringify({t:Date.now(),"
			"v:Math.random()}).repeat(200));if(c.length>50)c.shift()},10);"
			"s.listen(0,()=>console.log('ready'));process.stdin.resume()",
			NULL};
	char cc1[512];
	char *comp[] = {cc1, "-quiet", "-O2", src_path, "-o", "/dev/null", NULL};
	char *const *argv[3] = {py, node, comp};
	static const char *names[3] = {"python3", "node", "cc1"};

	c->ram = mmap(NULL, GUEST_RAM, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
	if (c->ram == MAP_FAILED || cc1_path(cc1, sizeof(cc1)))
		return -1;
	write_big_c(src_path);
	for (int i = 0; i < 3; i++) {
		struct prog *p = &c->p[i];

		p->name = names[i];
		p->base = (uint64_t)i * (GUEST_RAM / 4);
		if (start(argv[i], p, i < 2) < 0)
			return -1;
		if (i == 2)
			sleep(3); /* mid-build */
		kill(p->pid, SIGSTOP);
		waitpid(p->pid, NULL, WUNTRACED);
		lay_in(p, c->ram, true);
	}
	printf("content: python3 %.1f MiB, node %.1f MiB, cc1 mid-build %.1f MiB laid into 1 GiB\n",
	       c->p[0].used / 1048576.0, c->p[1].used / 1048576.0, c->p[2].used / 1048576.0);
	return c->p[0].used && c->p[1].used && c->p[2].used ? 0 : -1;
}

static void stop_content(struct content *c)
{
	for (int i = 0; i < 3; i++) {
		kill(c->p[i].pid, SIGKILL);
		waitpid(c->p[i].pid, NULL, 0);
		close(c->p[i].in);
		close(c->p[i].out);
		free(c->p[i].v);
	}
	unlink(src_path);
}

/* Let every program run for slice_us (python: one request), then stop them all. */
static void run_slice(struct content *c, uint64_t slice_us)
{
	char buf[8];

	for (int i = 0; i < 3; i++)
		kill(c->p[i].pid, SIGCONT);
	if (write(c->p[0].in, "x\n", 2) == 2)
		(void)!read(c->p[0].out, buf, 3); /* "ok\n": the request is done */
	usleep((useconds_t)slice_us);
	for (int i = 0; i < 3; i++) {
		kill(c->p[i].pid, SIGSTOP);
		waitpid(c->p[i].pid, NULL, WUNTRACED);
	}
}

/* Pages of the programs' places that differ from prev. */
static uint64_t count_changed(struct content *c, const uint8_t *prev)
{
	uint64_t n = 0;

	for (int i = 0; i < 3; i++) {
		c->p[i].changed = 0;
		for (uint64_t o = c->p[i].base; o < c->p[i].base + c->p[i].used; o += PAGE)
			if (memcmp(c->ram + o, prev + o, PAGE))
				c->p[i].changed++;
		n += c->p[i].changed;
	}
	return n;
}

/* The next diff: run and resample until >= 1 % of the RAM's pages changed since
 * prev (the last snapshot), then record them and bring prev up to date. */
static void next_diff(struct content *c, uint8_t *prev, struct diff *out, uint64_t *slice_us)
{
	const uint64_t target = GUEST_RAM / PAGE / 100;
	uint64_t n = 0;

	for (int k = 0; k < 400 && n < target; k++) {
		run_slice(c, *slice_us);
		for (int i = 0; i < 3; i++)
			lay_in(&c->p[i], c->ram, false);
		n = count_changed(c, prev);
		if (!k && n > 2 * target && *slice_us > 500)
			*slice_us /= 2; /* overshot in one slice: finer slices for the next */
	}
	out->n = 0;
	out->pages = malloc(n * sizeof(*out->pages));
	out->data = malloc(n * PAGE);
	for (int i = 0; i < 3; i++)
		for (uint64_t o = c->p[i].base; o < c->p[i].base + c->p[i].used; o += PAGE)
			if (memcmp(c->ram + o, prev + o, PAGE) && out->n < n) {
				out->pages[out->n] = o / PAGE;
				memcpy(out->data + out->n * PAGE, c->ram + o, PAGE);
				memcpy(prev + o, c->ram + o, PAGE);
				out->n++;
			}
	printf("diff: %" PRIu64 " pages (%.2f %% of RAM): python3 %" PRIu64 ", node %" PRIu64
	       ", cc1 %" PRIu64 " (slices of %" PRIu64 " us)\n",
	       out->n, 100.0 * out->n / (GUEST_RAM / PAGE), c->p[0].changed, c->p[1].changed,
	       c->p[2].changed, *slice_us);
}

/* The base (a copy) and ten diffs of it, made by the programs running on. */
static uint8_t *make_diffs(struct content *c, struct diff d[10])
{
	uint8_t *base = malloc(GUEST_RAM), *prev = malloc(GUEST_RAM);
	uint64_t slice_us = 10000;

	memcpy(base, c->ram, GUEST_RAM);
	memcpy(prev, c->ram, GUEST_RAM);
	for (int i = 0; i < 10; i++)
		next_diff(c, prev, &d[i], &slice_us);
	free(prev);
	return base;
}

static bool zero(const uint8_t *p, size_t n)
{
	return !p[0] && !memcmp(p, p + 1, n - 1);
}

/* Compressed bytes of window o of ram when its chunk is not in `seen` (added). */
static uint64_t window_bytes(const uint8_t *ram, uint64_t o, size_t chunk, int level,
			     struct squib_store_idset *seen, uint64_t *ns)
{
	struct squib_store_hash h;
	uint8_t *obj;
	size_t n;
	bool added;

	if (zero(ram + o, chunk))
		return 0;
	squib_store_hash(ram + o, chunk, &h, NULL);
	if (squib_store_idset_add(seen, &h, &added) || !added)
		return 0;
	uint64_t t0 = now_ns();
	if (squib_store_chunk_encode(ram + o, chunk, level, &obj, &n, NULL))
		exit(1);
	*ns += now_ns() - t0;
	free(obj);
	return n;
}

/* Compressed bytes of the chunks of ram not in `seen`; *present: non-zero chunk bytes. */
static uint64_t store_bytes(const uint8_t *ram, size_t chunk, int level,
			    struct squib_store_idset *seen, uint64_t *present, uint64_t *ns)
{
	uint64_t stored = 0;

	*present = *ns = 0;
	for (uint64_t o = 0; o < GUEST_RAM; o += chunk) {
		*present += zero(ram + o, chunk) ? 0 : chunk;
		stored += window_bytes(ram, o, chunk, level, seen, ns);
	}
	return stored;
}

static uint64_t present_bytes(const uint8_t *ram)
{
	uint64_t n = 0;

	for (uint64_t o = 0; o < GUEST_RAM; o += PAGE)
		n += zero(ram + o, PAGE) ? 0 : PAGE;
	return n;
}

/* Base + ten diffs at this chunk size: the diffs' touched windows only (the
 * others hash as before, so they add nothing). */
static double chain_ratio(const uint8_t *base, const struct diff d[10], size_t chunk,
			  uint64_t *objects)
{
	uint8_t *work = malloc(GUEST_RAM);
	struct squib_store_idset seen = {0};
	uint64_t one, total, pres, ns = 0;

	memcpy(work, base, GUEST_RAM);
	total = one = store_bytes(work, chunk, 3, &seen, &pres, &ns);
	for (int i = 0; i < 10; i++) {
		uint64_t last = UINT64_MAX;

		for (uint64_t k = 0; k < d[i].n; k++)
			memcpy(work + d[i].pages[k] * PAGE, d[i].data + k * PAGE, PAGE);
		for (uint64_t k = 0; k < d[i].n; k++) {
			uint64_t w = d[i].pages[k] * PAGE / chunk * chunk;

			if (w != last)
				total += window_bytes(work, w, chunk, 3, &seen, &ns);
			last = w;
		}
	}
	*objects = seen.n;
	squib_store_idset_free(&seen);
	free(work);
	return (double)total / one;
}

static void sweep(const uint8_t *base, const struct diff d[10])
{
	static const int levels[] = {1, 3};
	uint64_t present = present_bytes(base), pres, ns;

	printf("present (non-zero pages): %.1f MiB of 1024\n", present / 1048576.0);
	printf("%-8s | stored/present zstd 1 / 3 | zstd 3 MB/s | base+10 diffs / base, zstd 3 "
	       "(chunk objects)\n",
	       "chunk");
	for (uint32_t shift = 14; shift <= 20; shift++) {
		size_t chunk = (size_t)1 << shift;
		double r[2], mbs = 0;
		uint64_t objects;

		for (size_t l = 0; l < 2; l++) {
			struct squib_store_idset s = {0};
			uint64_t st = store_bytes(base, chunk, levels[l], &s, &pres, &ns);

			r[l] = (double)st / present;
			if (levels[l] == 3)
				mbs = pres / (ns / 1e3);
			squib_store_idset_free(&s);
		}
		double ten = chain_ratio(base, d, chunk, &objects);
		printf("%4zu KiB | %.3f / %.3f              | %-11.0f | %.3f (%" PRIu64 ")\n",
		       chunk >> 10, r[0], r[1], mbs, ten, objects);
		fflush(stdout);
	}
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

/* ---- a VM over the RAM, for squib_save and squib_store_save ------------------ */

struct bvm {
	struct squib_vm_region ram;
	struct squib_tracker *tracker;
	struct squib_tracker_set set;
};

static enum squib_arch bvm_arch(void *ctx)
{
	(void)ctx;
	return SQUIB_ARCH_AARCH64;
}

static uint32_t bvm_vcpus(void *ctx)
{
	(void)ctx;
	return 1;
}

static int bvm_nop(void *ctx, uint32_t i, struct squib_error_detail *d)
{
	(void)ctx, (void)i, (void)d;
	return 0;
}

static int bvm_wait(void *ctx, uint32_t i, const struct timespec *dl, struct squib_error_detail *d)
{
	(void)ctx, (void)i, (void)dl, (void)d;
	return 0;
}

static int bvm_capture(void *ctx, struct squib_microvm_state *s, struct squib_error_detail *d)
{
	static const uint8_t gic[64];
	struct squib_arm64_vcpu *v;
	int rc;

	(void)ctx;
	s->vm_info.mem_size_mib = GUEST_RAM >> 20;
	s->vm_info.track_dirty_pages = true;
	if ((rc = squib_state_set_string(&s->vm_info.kernel_image_path, "/bench/vmlinux")) ||
	    (rc = squib_state_add_arm64_vcpu(s, 0, &v)) ||
	    (rc = squib_state_set_gic(s, gic, sizeof(gic))))
		return squib_fail_msg(d, rc, "bench: capture");
	v->psci_state = SQUIB_PSCI_ON;
	return 0;
}

static int bvm_restore(void *ctx, const struct squib_microvm_state *s, struct squib_error_detail *d)
{
	(void)ctx, (void)s, (void)d;
	return 0;
}

static int bvm_get_memory(void *ctx, const struct squib_vm_region **r, uint32_t *n,
			  struct squib_error_detail *d)
{
	(void)d;
	*r = &((struct bvm *)ctx)->ram;
	*n = 1;
	return 0;
}

static int bvm_set_memory(void *ctx, const struct squib_vm_region *r, uint32_t n,
			  struct squib_error_detail *d)
{
	(void)ctx, (void)r, (void)n;
	return squib_fail_msg(d, SQUIB_E_CAPTURE, "bench: no restore");
}

static struct squib_tracker_set *bvm_trackers(void *ctx)
{
	return &((struct bvm *)ctx)->set;
}

static const struct squib_vm_ops bvm_ops = {
    .name = "bench",
    .arch = bvm_arch,
    .vcpu_count = bvm_vcpus,
    .pause_begin = bvm_nop,
    .pause_wait = bvm_wait,
    .resume = bvm_nop,
    .capture = bvm_capture,
    .restore_irqchip = bvm_restore,
    .restore_vcpus = bvm_restore,
    .restore_devices = bvm_restore,
    .get_memory = bvm_get_memory,
    .set_memory = bvm_set_memory,
    .trackers = bvm_trackers,
};

static int bvm_new(struct bvm *b, const uint8_t *content)
{
	struct squib_guest_region g = {GUEST_BASE, GUEST_RAM, NULL, 0};
	struct squib_memory_map map = {&g, 1};
	struct squib_tracker_set none = SQUIB_TRACKER_SET_INIT;
	void *p = mmap(NULL, GUEST_RAM, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);

	if (p == MAP_FAILED)
		return -1;
	memcpy(p, content, GUEST_RAM);
	b->ram = (struct squib_vm_region){GUEST_BASE, GUEST_RAM, p};
	b->set = none;
	g.hva = p;
	if (squib_tracker_vmm_marks_new(&map, &b->tracker, NULL) ||
	    squib_tracker_start(b->tracker, NULL) ||
	    squib_tracker_set_add(&b->set, b->tracker, NULL))
		return -1;
	return 0;
}

static void bvm_free(struct bvm *b)
{
	squib_tracker_free(b->tracker);
	munmap(b->ram.host, GUEST_RAM);
}

/* ---- the baselines and the saves --------------------------------------------- */

/* The raw RAM written to a new file and fdatasync'd: seconds. */
static double raw_file_s(const char *dir, const uint8_t *ram)
{
	char path[600];
	uint64_t t0 = now_ns();
	int fd;

	snprintf(path, sizeof(path), "%s/raw.mem", dir);
	if ((fd = open(path, O_WRONLY | O_CREAT | O_TRUNC, 0600)) < 0)
		return -1;
	for (uint64_t o = 0; o < GUEST_RAM; o += 8u << 20)
		if (write(fd, ram + o, 8u << 20) != (ssize_t)(8u << 20))
			return -1;
	fdatasync(fd);
	close(fd);
	double s = (now_ns() - t0) / 1e9;
	unlink(path);
	return s;
}

static int store_save(struct squib_store *st, struct bvm *b, const uint8_t *parent, uint64_t buffer,
		      struct squib_store_save_report *rep)
{
	struct squib_vm v = {&bvm_ops, b};
	struct squib_store_save_request req = {.kind = parent ? SQUIB_SNAPSHOT_DIFF
							      : SQUIB_SNAPSHOT_FULL,
					       .parent_memory_id = parent,
					       .page_size = PAGE,
					       .buffer_bytes = buffer};
	struct squib_error_detail d;
	int rc = squib_store_save(st, &v, &req, rep, &d);

	if (rc)
		fprintf(stderr, "bench_store: store save: %s\n", d.msg);
	return rc;
}

/* The ten diffs applied as the VMM would (write + mark), each saved as a Diff;
 * ids (may be NULL) receives the eleven memory ids, the Full's first. */
static int save_diffs(struct squib_store *st, struct bvm *b, const struct diff d[10],
		      uint8_t id[SQUIB_MEMORY_ID_SIZE], double *s,
		      uint8_t ids[11][SQUIB_MEMORY_ID_SIZE])
{
	struct squib_store_save_report rep;
	uint64_t t = 0;

	if (ids)
		memcpy(ids[0], id, SQUIB_MEMORY_ID_SIZE);
	for (int i = 0; i < 10; i++) {
		for (uint64_t k = 0; k < d[i].n; k++) {
			memcpy((uint8_t *)b->ram.host + d[i].pages[k] * PAGE, d[i].data + k * PAGE,
			       PAGE);
			squib_tracker_mark_write(b->tracker, GUEST_BASE + d[i].pages[k] * PAGE,
						 PAGE);
		}
		if (store_save(st, b, id, 0, &rep))
			return -1;
		t += rep.save.ns.total;
		memcpy(id, rep.save.memory_id, SQUIB_MEMORY_ID_SIZE);
		if (ids)
			memcpy(ids[i + 1], id, SQUIB_MEMORY_ID_SIZE);
	}
	*s = t / 1e9;
	return 0;
}

/* A Full squib_store_save into url (buffer: its buffer_bytes, 0 the default). */
static int full_into(const char *url, const struct squib_store_options *o, const uint8_t *base,
		     uint64_t buffer, struct squib_store_save_report *rep, struct squib_store **out,
		     struct bvm *b)
{
	if (squib_store_open(url, o, out, NULL) || bvm_new(b, base))
		return -1;
	return store_save(*out, b, NULL, buffer, rep);
}

/* squib_save of a local pair (sparse memory file, fsync'd): seconds; the pair is kept. */
static double file_save_s(const char *dir, const uint8_t *base, char **state, char **mem)
{
	struct squib_save_report rep;
	struct squib_error_detail d;
	struct bvm b;
	int rc;

	if (asprintf(state, "%s/pair.snap", dir) < 0 || asprintf(mem, "%s/pair.mem", dir) < 0 ||
	    bvm_new(&b, base))
		return -1;
	struct squib_vm v = {&bvm_ops, &b};
	struct squib_save_request req = SQUIB_SAVE_REQUEST_INIT(*state, *mem);
	req.page_size = PAGE;
	rc = squib_save(&v, &req, &rep, &d);
	bvm_free(&b);
	if (rc)
		fprintf(stderr, "bench_store: squib_save: %s\n", d.msg);
	return rc ? -1 : rep.ns.total / 1e9;
}

/* With SQUIB_TEST_S3_URL: a Full squib_store_save into S3 against the raw local file,
 * then push of the local pair against raw PUTs of as many objects of the mean size. */
static void s3_bench(const uint8_t *base, double raw, const char *state, const char *mem)
{
	const char *s3 = getenv("SQUIB_TEST_S3_URL");
	struct squib_store_options o = {.workers = 8};
	struct squib_store_save_report rep;
	struct squib_store_push_stats ps;
	struct squib_store *st;
	struct bvm b;
	char url[256];
	double s, rawput;

	if (!s3 || !*s3) {
		printf("S3: SQUIB_TEST_S3_URL unset (`make test-store` style RGW): not measured\n");
		return;
	}
	for (int small = 0; small < 2; small++) {
		snprintf(url, sizeof(url), "%s/bsave%ld-%d", s3, (long)getpid(), small);
		if (full_into(url, NULL, base, small, &rep, &st, &b))
			return;
		printf("S3 (%s): save into the store, buffer %s: %.2f s (guest paused %.2f s, "
		       "%" PRIu64
		       " chunks uploaded) vs the raw local file + fdatasync %.2f s: store "
		       "/ raw = %.2f\n",
		       url, small ? "2 windows per worker" : "the default 256 MiB",
		       rep.save.ns.total / 1e9, rep.save.ns.paused / 1e9, rep.store.chunks_put, raw,
		       rep.save.ns.total / 1e9 / raw);
		squib_store_close(st);
		bvm_free(&b);
	}
	snprintf(url, sizeof(url), "%s/bench%ld", s3, (long)getpid());
	if (squib_store_open(url, &o, &st, NULL) || push_timed(st, state, mem, NULL, 0, &ps, &s))
		return;
	rawput = raw_put_mbs(st, ps.chunks_put ? ps.bytes_put / ps.chunks_put : 1,
			     (uint32_t)ps.chunks_put, o.workers);
	printf("S3 (%s): push %.1f MB/s of objects (%" PRIu64 " chunks, %.1f MB in %.2f s; "
	       "%.1f MB/s of present memory); raw PUT of as many objects of the mean size, %u at a "
	       "time: %.1f MB/s; push / raw = %.2f\n",
	       url, ps.bytes_put / s / 1e6, ps.chunks_put, ps.bytes_put / 1e6, s,
	       ps.bytes_present / s / 1e6, o.workers, rawput, ps.bytes_put / s / 1e6 / rawput);
	squib_store_close(st);
}

/* Pull image id's chain from url into dir/sub: seconds (negative: failed). */
static double pull_s(const char *url, const char *dir, const char *sub, const uint8_t *id,
		     struct squib_store_pull_stats *ps, char **state)
{
	char path[700];
	struct squib_store *st;
	struct squib_error_detail e;
	uint64_t t0;
	int rc;

	snprintf(path, sizeof(path), "%s/%s", dir, sub);
	if (mkdir(path, 0700) || squib_store_open(url, NULL, &st, NULL))
		return -1;
	t0 = now_ns();
	rc = squib_store_pull(st, id, path, NULL, ps, state, &e);
	squib_store_close(st);
	if (rc)
		fprintf(stderr, "bench_store: pull from %s: %s\n", url, e.msg);
	return rc ? -1 : (now_ns() - t0) / 1e9;
}

/* Push the pulled chain (DIR/<id>.snap, base first) into a new store: seconds. */
static double push_chain_s(const char *url, bool no_delta, const char *pulled,
			   uint8_t ids[11][SQUIB_MEMORY_ID_SIZE], struct squib_store_push_stats *ps,
			   uint64_t *bytes)
{
	struct squib_store_options o = {.no_delta = no_delta};
	char *states[11] = {0}, *mems[11] = {0}, hex[2 * SQUIB_MEMORY_ID_SIZE + 1];
	struct squib_store *st;
	double s = -1;

	for (int i = 0; i < 11; i++) {
		squib_memfile_id_hex(ids[i], hex);
		if (asprintf(&states[i], "%s/%s.snap", pulled, hex) < 0 ||
		    asprintf(&mems[i], "%s/%s.mem", pulled, hex) < 0)
			return -1;
	}
	if (!squib_store_open(url, &o, &st, NULL)) {
		if (push_timed(st, states[10], mems[10], states, 10, ps, &s))
			s = -1;
		*bytes = stored(st);
		squib_store_close(st);
	}
	for (int i = 0; i < 11; i++) {
		free(states[i]);
		free(mems[i]);
	}
	return s;
}

/* The same Full and ten Diffs saved into a store without deltas (the baseline,
 * as before delta chunks), the ratios side by side; then pull and push of the
 * whole chain from and into stores with and without deltas. */
static int delta_bench(const char *dir, const uint8_t *base, const struct diff d[10],
		       const char *with, uint8_t ids[11][SQUIB_MEMORY_ID_SIZE], uint64_t one_with,
		       double ratio_with, double s_with)
{
	struct squib_store_options o = {.no_delta = true};
	struct squib_store_save_report rep;
	struct squib_store_pull_stats pw, po;
	struct squib_store_push_stats uw, uo;
	uint8_t id[SQUIB_MEMORY_ID_SIZE], ids_plain[11][SQUIB_MEMORY_ID_SIZE];
	char plain[600], url[700];
	struct squib_store *st;
	uint64_t one, ten, bw = 0, bo = 0;
	double s, tw, to, pwt, pot;
	struct bvm b;

	snprintf(plain, sizeof(plain), "%s/store-plain", dir);
	if (full_into(plain, &o, base, 0, &rep, &st, &b))
		return -1;
	one = stored(st);
	memcpy(id, rep.save.memory_id, sizeof(id));
	if (save_diffs(st, &b, d, id, &s, ids_plain))
		return -1;
	ten = stored(st);
	squib_store_close(st);
	bvm_free(&b);
	printf("delta chunks: ten diffs / one snapshot without deltas %.3f (%.1f / %.1f MiB, "
	       "saves %.2f s), with deltas %.3f (saves %.2f s); one snapshot %.1f vs %.1f MiB\n",
	       (double)ten / one, ten / 1048576.0, one / 1048576.0, s, ratio_with, s_with,
	       one / 1048576.0, one_with / 1048576.0);
	tw = pull_s(with, dir, "pull-with", ids[10], &pw, NULL);
	to = pull_s(plain, dir, "pull-plain", ids_plain[10], &po, NULL);
	if (tw < 0 || to < 0)
		return -1;
	printf("  pull of the 11-image chain: with deltas %.2f s (%" PRIu64 " windows, %.1f MiB "
	       "fetched), without %.2f s (%" PRIu64 " windows, %.1f MiB); with / without = %.2f\n",
	       tw, pw.chunks_fetched, pw.bytes_fetched / 1048576.0, to, po.chunks_fetched,
	       po.bytes_fetched / 1048576.0, tw / to);
	snprintf(url, sizeof(url), "%s/pull-with", dir);
	snprintf(plain, sizeof(plain), "%s/push-with", dir);
	pwt = push_chain_s(plain, false, url, ids, &uw, &bw);
	snprintf(plain, sizeof(plain), "%s/push-plain", dir);
	pot = push_chain_s(plain, true, url, ids, &uo, &bo);
	if (pwt < 0 || pot < 0)
		return -1;
	printf("  push of that chain into an empty store: with deltas %.2f s (%" PRIu64
	       " chunks, %" PRIu64 " deltas, stored %.1f MiB), without %.2f s (%" PRIu64
	       " chunks, stored %.1f MiB); with / without = %.2f\n",
	       pwt, uw.chunks_put, uw.deltas_put, bw / 1048576.0, pot, uo.chunks_put,
	       bo / 1048576.0, pwt / pot);
	return 0;
}

static int save_bench(const uint8_t *base, const struct diff d[10])
{
	const char *root = getenv("SQUIB_BENCH_DIR") ? getenv("SQUIB_BENCH_DIR") : "/var/tmp";
	char dir[512], store[600], *state = NULL, *mem = NULL;
	uint64_t present = present_bytes(base), one, ten;
	struct squib_store_save_report rep;
	struct squib_store *st = NULL;
	double raw, file, ds;
	uint8_t id[SQUIB_MEMORY_ID_SIZE];
	struct bvm b;
	int rc = -1;

	snprintf(dir, sizeof(dir), "%s/bench_store.XXXXXX", root);
	if (!mkdtemp(dir))
		return -1;
	snprintf(store, sizeof(store), "%s/store", dir);
	raw = raw_file_s(dir, base);
	file = file_save_s(dir, base, &state, &mem);
	if (raw < 0 || file < 0 || full_into(store, NULL, base, 0, &rep, &st, &b))
		goto out;
	one = stored(st);
	printf("save into a directory store (defaults %u KiB / zstd %d, %u workers): %.2f s "
	       "(guest paused %.2f s), %" PRIu64 " chunks (%" PRIu64 " zero, %" PRIu64
	       " uploaded); stored / present = %.1f / %.1f MiB = %.3f\n",
	       1u << (SQUIB_STORE_DEFAULT_CHUNK_SHIFT - 10), SQUIB_STORE_DEFAULT_ZSTD_LEVEL, 8,
	       rep.save.ns.total / 1e9, rep.save.ns.paused / 1e9, rep.store.chunks,
	       rep.store.chunks_zero, rep.store.chunks_put, one / 1048576.0, present / 1048576.0,
	       (double)one / present);
	printf("  vs the raw 1 GiB file + fdatasync: %.2f s (store / raw = %.2f); vs squib_save of "
	       "a local pair (sparse, fsync): %.2f s (store / pair = %.2f)\n",
	       raw, rep.save.ns.total / 1e9 / raw, file, rep.save.ns.total / 1e9 / file);
	memcpy(id, rep.save.memory_id, sizeof(id));
	if (d) {
		uint8_t ids[11][SQUIB_MEMORY_ID_SIZE];

		if (save_diffs(st, &b, d, id, &ds, ids))
			goto out;
		ten = stored(st);
		printf("ten diffs saved as Diffs: %.2f s in all; stored %.1f MiB / one snapshot "
		       "%.1f MiB = %.3f\n",
		       ds, ten / 1048576.0, one / 1048576.0, (double)ten / one);
		if (delta_bench(dir, base, d, store, ids, one, (double)ten / one, ds))
			goto out;
	}
	squib_store_close(st);
	st = NULL;
	bvm_free(&b);
	s3_bench(base, raw, state, mem);
	rc = 0;
out:
	if (st) {
		squib_store_close(st);
		bvm_free(&b);
	}
	free(state);
	free(mem);
	snprintf(store, sizeof(store), "rm -rf %s", dir);
	if (system(store))
		rc = -1;
	return rc;
}

int main(int argc, char **argv)
{
	const char *mode = argc > 1 ? argv[1] : "all";
	struct content c = {0};
	struct diff d[10];
	uint8_t *base;
	int rc = 0;

	signal(SIGPIPE, SIG_IGN); /* a program that died: its pipe fails, we go on */
	setvbuf(stdout, NULL, _IOLBF, 0);
	if (build_content(&c)) {
		fprintf(stderr,
			"bench_store: could not lay real programs' memory in (python3, node, "
			"cc1 needed)\n");
		return 1;
	}
	memset(d, 0, sizeof(d));
	if (strcmp(mode, "full")) /* "full": the Full saves only, without making diffs */
		base = make_diffs(&c, d);
	else if ((base = malloc(GUEST_RAM)))
		memcpy(base, c.ram, GUEST_RAM);
	stop_content(&c);
	munmap(c.ram, GUEST_RAM);
	if (!strcmp(mode, "sweep") || !strcmp(mode, "all"))
		sweep(base, d);
	if (!strcmp(mode, "save") || !strcmp(mode, "all") || !strcmp(mode, "full"))
		rc = save_bench(base, strcmp(mode, "full") ? d : NULL);
	for (int i = 0; i < 10; i++) {
		free(d[i].pages);
		free(d[i].data);
	}
	free(base);
	return rc ? 1 : 0;
}
