/* SPDX-License-Identifier: Apache-2.0 */
/*
 * The memory-file writers against the disk's own limit: `dd` of the same
 * bytes into a fresh file with fdatasync, measured in the same run, on the
 * same directory, interleaved run by run with ours (disk timings drift).
 *
 *   full   1 GiB of anonymous RAM, 256 MiB of non-zero data in 128 scattered
 *          2 MiB runs, the rest never touched (bench_memfile's and
 *          vs-qemu.sh's pattern): squib_memfile_write_full + commit (fsync,
 *          rename, directory fsync) against `dd if=SRC of=OUT bs=1M
 *          conv=fdatasync` of the same 256 MiB;
 *   diff   1 % of the 1 GiB (2,621 scattered 4 KiB pages) dirty: the diff
 *          writer + commit, packed and fixed-offset, against dd of the same
 *          10 MiB.
 *
 * SRC is a file holding exactly the bytes written, read once so that dd
 * reads it from the page cache as ours reads RAM. dd runs as a process
 * (fork + exec is inside its time: ~1 ms, about 3 % of the diff baseline);
 * "write(2) loop" is the same copy done in this process, printed beside.
 * Every run starts from a quiet disk: the previous output deleted, sync().
 *
 *   bench_disk [--runs N]   (default 7; SQUIB_BENCH_DIR, default /var/tmp)
 *
 * Prints, per pair of figures, the ratio run by run (each writer against the
 * dd measured just before it, which cancels most of the disk's drift between
 * runs): median and min..max; then each figure's median and spread and the
 * ratios of the medians. "paired" and "ratio" lines are what bench/vs-qemu.sh
 * repeats.
 */
#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <spawn.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include <squib/memfile.h>

#include "benchutil.h"

#define GiB	 (1ull << 30)
#define MiB	 (1ull << 20)
#define RAM_BASE 0x40000000ull
#define TOUCHED	 (256 * MiB)
#define RUN_LEN	 (2 * MiB)
#define PAGE	 ((uint64_t)4096)
#define MAX_RUNS 31

extern char **environ;

enum {
	F_DD_FULL,
	F_LOOP_FULL,
	F_FULL,
	F_FULL_NOPUB,
	F_DD_DIFF,
	F_LOOP_DIFF,
	F_PACKED,
	F_PACKED_NOPUB,
	F_FIXED,
	F_COUNT
};

static const char *const names[F_COUNT] = {
    [F_DD_FULL] = "dd of the full's bytes, fdatasync",
    [F_LOOP_FULL] = "write(2) loop of the full's bytes",
    [F_FULL] = "full writer, durable",
    [F_FULL_NOPUB] = "full writer + fdatasync (no rename)",
    [F_DD_DIFF] = "dd of the diff's bytes, fdatasync",
    [F_LOOP_DIFF] = "write(2) loop of the diff's bytes",
    [F_PACKED] = "diff writer 1 %, packed, durable",
    [F_PACKED_NOPUB] = "diff writer 1 %, packed + fdatasync (no rename)",
    [F_FIXED] = "diff writer 1 %, fixed offsets, durable",
};

struct bench {
	const char *dir;
	char *out, *src_full, *src_diff;
	uint8_t *ram, *dram; /* the full's RAM; the diff's (only its dirty pages written) */
	struct squib_memfile_source_region region, dregion;
	struct squib_memfile_source src, dsrc;
	struct squib_dirty_bitmap *bm;
	uint8_t parent[SQUIB_MEMORY_ID_SIZE];
	double ms[F_COUNT][MAX_RUNS];
	struct squib_memfile_write_stats st[F_COUNT];
};

static void die(const char *what)
{
	fprintf(stderr, "bench_disk: %s: %s\n", what, strerror(errno));
	exit(1);
}

static void die_d(const char *what, const struct squib_error_detail *d)
{
	char msg[1024];

	squib_error_message(d->code, d, msg, sizeof(msg));
	fprintf(stderr, "bench_disk: %s: %s (%s)\n", what, msg, d->msg);
	exit(1);
}

static uint64_t lcg64(uint64_t *s)
{
	*s = *s * 6364136223846793005ull + 1442695040888963407ull;
	return *s >> 17;
}

/* bench_memfile's content: 128 distinct 2 MiB slots of non-zero words. */
static uint8_t *map_gib(void)
{
	void *p = mmap(NULL, GiB, PROT_READ | PROT_WRITE,
		       MAP_PRIVATE | MAP_ANONYMOUS | MAP_NORESERVE, -1, 0);

	if (p == MAP_FAILED)
		die("mmap");
	return p;
}

static void make_ram(struct bench *b)
{
	uint8_t used[GiB / RUN_LEN] = {0};
	uint64_t seed = 42;

	b->ram = map_gib();
	for (uint64_t i = 0; i < TOUCHED / RUN_LEN; i++) {
		uint64_t s;

		do
			s = lcg64(&seed) % (GiB / RUN_LEN);
		while (used[s]);
		used[s] = 1;
		for (uint64_t off = 0; off < RUN_LEN; off += 8)
			*(uint64_t *)(b->ram + s * RUN_LEN + off) = (s << 32 | off) | 1;
	}
	b->region = (struct squib_memfile_source_region){RAM_BASE, GiB, b->ram};
	b->src = (struct squib_memfile_source){&b->region, 1, PAGE};
}

/* 1 % of the pages dirty (written, so populated), scattered. */
static void make_dirty(struct bench *b)
{
	uint64_t pages = GiB / PAGE, want = pages / 100, n = 0, seed = 7;

	b->dram = map_gib();
	if (squib_dirty_bitmap_new(RAM_BASE, GiB, PAGE, &b->bm, NULL))
		exit(1);
	while (n < want) {
		uint64_t p = lcg64(&seed) % pages;

		if (squib_dirty_bitmap_set_by_index(b->bm, p)) {
			memset(b->dram + p * PAGE, (int)(n % 255) + 1, PAGE);
			n++;
		}
	}
	b->dregion = (struct squib_memfile_source_region){RAM_BASE, GiB, b->dram};
	b->dsrc = (struct squib_memfile_source){&b->dregion, 1, PAGE};
}

/* The bytes each writer writes, as one file for dd to copy (and read once). */
static void write_source(const char *path, const uint8_t *ram, bool diff,
			 const struct squib_dirty_bitmap *bm)
{
	int fd = open(path, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0600);
	uint64_t pages = GiB / PAGE;
	static char buf[1 << 20];

	if (fd < 0)
		die(path);
	for (uint64_t p = 0; p < pages; p++) {
		bool take = diff ? squib_dirty_bitmap_test_by_index(bm, p)
				 : *(const uint64_t *)(ram + p * PAGE) != 0;

		if (take && write(fd, ram + p * PAGE, PAGE) != (ssize_t)PAGE)
			die("write source");
	}
	if (fsync(fd) < 0 || close(fd) < 0)
		die("fsync source");
	fd = open(path, O_RDONLY | O_CLOEXEC);
	while (fd >= 0 && read(fd, buf, sizeof(buf)) > 0)
		; /* into the page cache: dd reads it from memory, as ours reads RAM */
	if (fd >= 0)
		close(fd);
}

static void quiesce(const char *path)
{
	unlink(path);
	sync();
}

static double dd_once(const char *src, const char *out)
{
	char ifa[4200], ofa[4200];
	char *argv[] = {"dd", ifa, ofa, "bs=1M", "conv=fdatasync", "status=none", NULL};
	pid_t pid;
	int st;
	uint64_t t0;

	snprintf(ifa, sizeof(ifa), "if=%s", src);
	snprintf(ofa, sizeof(ofa), "of=%s", out);
	quiesce(out);
	t0 = now_ns();
	if (posix_spawnp(&pid, "dd", NULL, NULL, argv, environ) || waitpid(pid, &st, 0) != pid ||
	    !WIFEXITED(st) || WEXITSTATUS(st))
		die("dd");
	return (double)(now_ns() - t0) / 1e6;
}

/* What dd does, without the process: 1 MiB write(2)s from memory, fdatasync. */
static double loop_once(const uint8_t *buf, uint64_t len, const char *out)
{
	uint64_t t0;
	int fd;

	quiesce(out);
	t0 = now_ns();
	fd = open(out, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0600);
	if (fd < 0)
		die(out);
	for (uint64_t off = 0; off < len; off += MiB) {
		size_t n = len - off < MiB ? (size_t)(len - off) : MiB;

		if (write(fd, buf + off, n) != (ssize_t)n)
			die("write");
	}
	if (fdatasync(fd) < 0 || close(fd) < 0)
		die("fdatasync");
	return (double)(now_ns() - t0) / 1e6;
}

static double ours_once(struct bench *b, int which, struct squib_memfile_write_stats *st)
{
	struct squib_memfile_write_options o = {.packed =
						    which == F_PACKED || which == F_PACKED_NOPUB};
	bool publish = which != F_FULL_NOPUB && which != F_PACKED_NOPUB;
	const struct squib_dirty_bitmap *bm = b->bm;
	struct squib_memfile_manifest m;
	struct squib_atomic_writer w;
	struct squib_error_detail d;
	uint64_t t0;
	double t;
	int rc;

	quiesce(b->out);
	t0 = now_ns();
	if (squib_atomic_open(&w, b->out, NULL, &d))
		die_d("open", &d);
	if (which == F_FULL || which == F_FULL_NOPUB)
		rc = squib_memfile_write_full(&w, &b->src, &o, &m, st, &d);
	else
		rc = squib_memfile_write_diff(&w, &b->dsrc, b->parent, &bm, 1, &o, &m, st, &d);
	if (rc || (publish && squib_atomic_commit(&w, &d)))
		die_d(names[which], &d);
	if (!publish && fdatasync(w.fd) < 0)
		die("fdatasync");
	t = (double)(now_ns() - t0) / 1e6;
	if (!publish)
		squib_atomic_abort(&w);
	squib_memfile_manifest_release(&m);
	return t;
}

/* The whole source file in memory, for the write(2) loop. */
static uint8_t *slurp(const char *path, uint64_t *len)
{
	struct stat s;
	uint8_t *p;
	int fd = open(path, O_RDONLY | O_CLOEXEC);

	if (fd < 0 || fstat(fd, &s) < 0 || !(p = malloc((size_t)s.st_size)) ||
	    read(fd, p, (size_t)s.st_size) != s.st_size)
		die("slurp");
	close(fd);
	*len = (uint64_t)s.st_size;
	return p;
}

static double median(double *v, int n)
{
	qsort(v, (size_t)n, sizeof(v[0]), cmp_double);
	return v[n / 2];
}

/* ours / dd run by run (each against the dd measured next to it): median, min, max. */
static void paired(const struct bench *b, int num, int den, int runs, double out[3])
{
	double r[MAX_RUNS];

	for (int i = 0; i < runs; i++)
		r[i] = b->ms[num][i] / b->ms[den][i];
	out[0] = median(r, runs);
	out[1] = r[0];
	out[2] = r[runs - 1];
}

static void report_paired(const struct bench *b, int runs)
{
	static const struct {
		const char *name;
		int num, den;
	} p[] = {{"full writer / dd", F_FULL, F_DD_FULL},
		 {"full writer (no rename) / dd", F_FULL_NOPUB, F_DD_FULL},
		 {"diff 1 % packed / dd", F_PACKED, F_DD_DIFF},
		 {"diff 1 % packed (no rename) / dd", F_PACKED_NOPUB, F_DD_DIFF},
		 {"diff 1 % fixed-offset / dd", F_FIXED, F_DD_DIFF},
		 {"diff 1 % fixed-offset / packed", F_FIXED, F_PACKED}};
	double v[3];

	printf("-- paired: each run's writer against the dd run just before it (median, min .. "
	       "max)\n");
	for (size_t i = 0; i < sizeof(p) / sizeof(p[0]); i++) {
		paired(b, p[i].num, p[i].den, runs, v);
		printf("paired %-34s %5.2f  (%.2f .. %.2f)\n", p[i].name, v[0], v[1], v[2]);
	}
}

static void report(struct bench *b, int runs)
{
	double med[F_COUNT];

	report_paired(b, runs); /* before the medians sort the runs */
	printf("-- median (min .. max) of %d interleaved runs\n", runs);
	for (int f = 0; f < F_COUNT; f++) {
		med[f] = median(b->ms[f], runs);
		printf("%-44s %9.2f ms  (%.2f .. %.2f)", names[f], med[f], b->ms[f][0],
		       b->ms[f][runs - 1]);
		if (f == F_FULL || f == F_PACKED || f == F_FIXED || f == F_FULL_NOPUB ||
		    f == F_PACKED_NOPUB)
			printf("  %" PRIu64 " pwrite calls", b->st[f].write_calls);
		printf("\n");
	}
	printf("ratio full writer / dd:             %.2f (goal <= 1.1; / write(2) loop %.2f)\n",
	       med[F_FULL] / med[F_DD_FULL], med[F_FULL] / med[F_LOOP_FULL]);
	printf("ratio diff 1 %% packed / dd:         %.2f (goal <= 1.3; / write(2) loop %.2f)\n",
	       med[F_PACKED] / med[F_DD_DIFF], med[F_PACKED] / med[F_LOOP_DIFF]);
	printf("  without the rename (write + fdatasync): full / dd %.2f, packed / dd %.2f\n",
	       med[F_FULL_NOPUB] / med[F_DD_FULL], med[F_PACKED_NOPUB] / med[F_DD_DIFF]);
	printf("ratio diff 1 %% fixed-offset / dd:   %.2f (for comparison; / write(2) loop %.2f)\n",
	       med[F_FIXED] / med[F_DD_DIFF], med[F_FIXED] / med[F_LOOP_DIFF]);
}

static char *path_of(const char *dir, const char *name)
{
	char *p;

	if (asprintf(&p, "%s/squib-bench-disk-%d-%s", dir, (int)getpid(), name) < 0)
		exit(1);
	return p;
}

static void run_all(struct bench *b, int runs)
{
	uint64_t full_len, diff_len;
	uint8_t *full = slurp(b->src_full, &full_len), *diff = slurp(b->src_diff, &diff_len);

	printf("bench_disk: files in %s; full %.0f MiB of data, diff %.2f MiB (%" PRIu64
	       " pages)\n",
	       b->dir, (double)full_len / MiB, (double)diff_len / MiB, (uint64_t)(diff_len / PAGE));
	for (int r = -1; r < runs; r++) { /* run -1: warm-up, not counted */
		double t[F_COUNT];

		t[F_DD_FULL] = dd_once(b->src_full, b->out);
		t[F_LOOP_FULL] = loop_once(full, full_len, b->out);
		t[F_FULL] = ours_once(b, F_FULL, &b->st[F_FULL]);
		t[F_FULL_NOPUB] = ours_once(b, F_FULL_NOPUB, &b->st[F_FULL_NOPUB]);
		t[F_DD_DIFF] = dd_once(b->src_diff, b->out);
		t[F_LOOP_DIFF] = loop_once(diff, diff_len, b->out);
		t[F_PACKED] = ours_once(b, F_PACKED, &b->st[F_PACKED]);
		t[F_PACKED_NOPUB] = ours_once(b, F_PACKED_NOPUB, &b->st[F_PACKED_NOPUB]);
		t[F_FIXED] = ours_once(b, F_FIXED, &b->st[F_FIXED]);
		for (int f = 0; r >= 0 && f < F_COUNT; f++)
			b->ms[f][r] = t[f];
	}
	free(full);
	free(diff);
}

int main(int argc, char **argv)
{
	struct bench b = {0};
	int runs = 7;

	if (argc == 3 && !strcmp(argv[1], "--runs"))
		runs = atoi(argv[2]);
	if (runs < 1 || runs > MAX_RUNS) {
		fprintf(stderr, "usage: bench_disk [--runs 1..%d]\n", MAX_RUNS);
		return 2;
	}
	b.dir = getenv("SQUIB_BENCH_DIR");
	if (!b.dir || !*b.dir)
		b.dir = "/var/tmp";
	b.out = path_of(b.dir, "out");
	b.src_full = path_of(b.dir, "src-full");
	b.src_diff = path_of(b.dir, "src-diff");
	memset(b.parent, 0x5a, sizeof(b.parent));
	make_ram(&b);
	make_dirty(&b);
	write_source(b.src_full, b.ram, false, NULL);
	write_source(b.src_diff, b.dram, true, b.bm);
	run_all(&b, runs);
	report(&b, runs);
	unlink(b.out);
	unlink(b.src_full);
	unlink(b.src_diff);
	squib_dirty_bitmap_free(b.bm);
	munmap(b.ram, GiB);
	munmap(b.dram, GiB);
	free(b.out);
	free(b.src_full);
	free(b.src_diff);
	return 0;
}
