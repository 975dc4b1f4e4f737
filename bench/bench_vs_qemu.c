/* SPDX-License-Identifier: Apache-2.0 */
/*
 * Our half of bench/vs-qemu.sh (that script compares it with QEMU's migration
 * to a file and explains the method). Run with no arguments, as
 * scripts/run-bench.sh runs every bench_* binary, it only prints a note.
 *
 *   bench_vs_qemu gen RAMFILE
 *       Create RAMFILE: 1 GiB, 256 MiB of non-zero data in 128 scattered 2 MiB
 *       runs (bench_memfile's pattern: seed 42, 8-byte words (slot << 32 | off) | 1),
 *       the rest a hole.
 *
 *   bench_vs_qemu ours RAMFILE OUTDIR RUNS MODE...
 *       Check RAMFILE still holds exactly that pattern, then for each MODE hold
 *       its content as guest RAM, time RUNS squib_memfile_save_full() calls
 *       (write, fsync, rename, directory fsync) into OUTDIR/ours-MODE.mem and
 *       print each run and the median, after one untimed warm-up run. Every
 *       run starts from a quiet disk: the previous file deleted and sync().
 *       The last file is kept (the script reports its sizes) after its RAM
 *       range was compared with RAMFILE.
 *       MODE is how the RAM is held, outside the timing:
 *         anon       anonymous private memory, only pages holding a non-zero
 *                    byte written (a guest that touched 256 MiB: how our VMM
 *                    holds guest RAM; the writer skips unpopulated pages)
 *         anon-full  anonymous private memory, the whole 1 GiB copied in
 *                    (every page populated: the writer reads and zero-checks
 *                    all of it)
 *         shared     RAMFILE mapped MAP_SHARED, as QEMU maps it with
 *                    memory-backend-file,share=on (read in full, too)
 *
 * Machine-readable lines for the script start with "RESULT ".
 */
#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include <squib/memfile.h>

#include "benchutil.h"

#define GiB	 (1ull << 30)
#define MiB	 (1ull << 20)
#define RAM_SIZE GiB
#define TOUCHED	 (256 * MiB)
#define RUN_LEN	 (2 * MiB)
#define SLOTS	 (RAM_SIZE / RUN_LEN)
#define PAGE	 4096ull
#define MAX_RUNS 99

static void fail(const char *what)
{
	fprintf(stderr, "bench_vs_qemu: %s: %s\n", what, strerror(errno));
	exit(1);
}

static void die(const char *what, const struct squib_error_detail *d)
{
	char msg[1024];

	squib_error_message(d->code, d, msg, sizeof(msg));
	fprintf(stderr, "bench_vs_qemu: %s: %s (%s)\n", what, msg, d->msg);
	exit(1);
}

static uint64_t lcg64(uint64_t *s)
{
	*s = *s * 6364136223846793005ull + 1442695040888963407ull;
	return *s >> 17;
}

/* used[s] = 1 for the 128 slots bench_memfile's touch_runs() fills, same order of draws. */
static void pattern_slots(uint8_t used[SLOTS])
{
	uint64_t seed = 42;

	memset(used, 0, SLOTS);
	for (uint64_t i = 0; i < TOUCHED / RUN_LEN; i++) {
		uint64_t s;

		do
			s = lcg64(&seed) % SLOTS;
		while (used[s]);
		used[s] = 1;
	}
}

static void fill_run(uint8_t *buf, uint64_t s)
{
	for (uint64_t off = 0; off < RUN_LEN; off += 8) {
		uint64_t v = (s << 32 | off) | 1;

		memcpy(buf + off, &v, sizeof(v));
	}
}

static bool all_zero(const uint8_t *p, size_t n)
{
	return p[0] == 0 && memcmp(p, p + 1, n - 1) == 0;
}

static int cmd_gen(const char *path)
{
	uint8_t used[SLOTS];
	uint8_t *buf = malloc(RUN_LEN);
	int fd = open(path, O_WRONLY | O_CREAT | O_TRUNC, 0644);

	if (!buf || fd < 0)
		fail(path);
	if (ftruncate(fd, (off_t)RAM_SIZE))
		fail("ftruncate");
	pattern_slots(used);
	for (uint64_t s = 0; s < SLOTS; s++) {
		if (!used[s])
			continue;
		fill_run(buf, s);
		if (pwrite(fd, buf, RUN_LEN, (off_t)(s * RUN_LEN)) != (ssize_t)RUN_LEN)
			fail("pwrite");
	}
	if (fsync(fd) || close(fd))
		fail("fsync");
	free(buf);
	return 0;
}

static const uint8_t *map_file(const char *path, uint64_t len, int prot, int flags)
{
	int fd = open(path, (prot & PROT_WRITE) ? O_RDWR : O_RDONLY);
	struct stat st;
	void *p;

	if (fd < 0 || fstat(fd, &st))
		fail(path);
	if ((uint64_t)st.st_size < len) {
		fprintf(stderr, "bench_vs_qemu: %s: %lld bytes, want at least %" PRIu64 "\n", path,
			(long long)st.st_size, len);
		exit(1);
	}
	p = mmap(NULL, len, prot, flags, fd, 0);
	if (p == MAP_FAILED)
		fail("mmap");
	close(fd);
	return p;
}

/* The RAM file must hold the pattern: QEMU maps it shared, so check it is intact. */
static void check_pattern(const char *path)
{
	const uint8_t *ram = map_file(path, RAM_SIZE, PROT_READ, MAP_SHARED);
	uint8_t *want = malloc(RUN_LEN);
	uint8_t used[SLOTS];

	if (!want)
		fail("malloc");
	pattern_slots(used);
	for (uint64_t s = 0; s < SLOTS; s++) {
		const uint8_t *got = ram + s * RUN_LEN;
		bool ok;

		if (used[s]) {
			fill_run(want, s);
			ok = memcmp(got, want, RUN_LEN) == 0;
		} else {
			ok = all_zero(got, RUN_LEN);
		}
		if (!ok) {
			fprintf(stderr,
				"bench_vs_qemu: %s: 2 MiB run %" PRIu64 " is not the pattern\n",
				path, s);
			exit(1);
		}
	}
	free(want);
	munmap((void *)ram, RAM_SIZE);
}

static uint8_t *map_anon(void)
{
	void *p = mmap(NULL, RAM_SIZE, PROT_READ | PROT_WRITE,
		       MAP_PRIVATE | MAP_ANONYMOUS | MAP_NORESERVE, -1, 0);

	if (p == MAP_FAILED)
		fail("mmap");
	return p;
}

/* Hold RAMFILE's content as guest RAM, as `mode` says (see the header). */
static const uint8_t *load(const char *path, const char *mode)
{
	const uint8_t *file;
	uint8_t *ram;

	if (!strcmp(mode, "shared"))
		return map_file(path, RAM_SIZE, PROT_READ | PROT_WRITE, MAP_SHARED);
	if (strcmp(mode, "anon") && strcmp(mode, "anon-full")) {
		fprintf(stderr, "bench_vs_qemu: unknown mode %s\n", mode);
		exit(2);
	}
	file = map_file(path, RAM_SIZE, PROT_READ, MAP_SHARED);
	ram = map_anon();
	if (!strcmp(mode, "anon-full")) {
		memcpy(ram, file, RAM_SIZE);
	} else {
		for (uint64_t off = 0; off < RAM_SIZE; off += PAGE)
			if (!all_zero(file + off, PAGE))
				memcpy(ram + off, file + off, PAGE);
	}
	munmap((void *)file, RAM_SIZE);
	return ram;
}

static void quiesce(const char *path)
{
	unlink(path);
	sync();
}

/* What the writer does with this memory (one untimed write_full, dropped). */
static void print_stats(const char *mode, const struct squib_memfile_source *src, const char *path)
{
	struct squib_memfile_write_stats st;
	struct squib_memfile_manifest m;
	struct squib_atomic_writer w;
	struct squib_error_detail d;
	static const char *const names[] = {"auto", "PAGEMAP_SCAN", "pagemap read", "none"};

	if (squib_atomic_open(&w, path, NULL, &d) ||
	    squib_memfile_write_full(&w, src, NULL, &m, &st, &d))
		die("write_full", &d);
	squib_atomic_abort(&w);
	squib_memfile_manifest_release(&m);
	printf("ours %-9s writer: detect %s, pages written %" PRIu64 ", skipped unread %" PRIu64
	       ", read and found zero %" PRIu64 ", %" PRIu64 " pwrite calls\n",
	       mode, st.detect < 4 ? names[st.detect] : "?", st.pages_written, st.pages_unpopulated,
	       st.pages_zero, st.write_calls);
}

/* The published file's RAM range must be RAMFILE's content, byte for byte. */
static void check_output(const char *out, const char *ramfile)
{
	const uint8_t *a = map_file(out, RAM_SIZE, PROT_READ, MAP_SHARED);
	const uint8_t *b = map_file(ramfile, RAM_SIZE, PROT_READ, MAP_SHARED);
	struct squib_error_detail d;

	if (memcmp(a, b, RAM_SIZE)) {
		fprintf(stderr, "bench_vs_qemu: %s: RAM range differs from %s\n", out, ramfile);
		exit(1);
	}
	if (squib_memfile_verify(out, true, NULL, &d))
		die("verify", &d);
	munmap((void *)a, RAM_SIZE);
	munmap((void *)b, RAM_SIZE);
}

/*
 * Each run holds the RAM afresh (outside the timing), so a shared mapping's
 * page tables start empty as in each new QEMU process. An untimed warm-up run
 * goes first: on a virtual disk the first write to blocks it never held
 * costs several times a rewrite (vs-qemu.sh warms QEMU up the same way).
 */
static void run_mode(const char *ramfile, const char *outdir, int runs, const char *mode)
{
	struct squib_memfile_source_region r = {0, RAM_SIZE, NULL};
	struct squib_memfile_source src = {&r, 1, PAGE};
	double ms[MAX_RUNS];
	char *out;

	if (asprintf(&out, "%s/ours-%s.mem", outdir, mode) < 0)
		fail("asprintf");
	for (int i = -1; i < runs; i++) {
		struct squib_memfile_manifest m;
		struct squib_error_detail d;
		double t;
		uint64_t t0;

		r.host = load(ramfile, mode);
		quiesce(out);
		t0 = now_ns();
		if (squib_memfile_save_full(out, &src, NULL, &m, &d))
			die("save_full", &d);
		t = (double)(now_ns() - t0) / 1e6;
		if (m.layout.present_pages * PAGE != TOUCHED) {
			fprintf(stderr, "bench_vs_qemu: %" PRIu64 " pages present, want %llu\n",
				m.layout.present_pages, TOUCHED / PAGE);
			exit(1);
		}
		squib_memfile_manifest_release(&m);
		if (i < 0) {
			printf("ours %-9s warm-up: %9.2f ms (not counted)\n", mode, t);
		} else {
			ms[i] = t;
			printf("ours %-9s run %d:   %9.2f ms\n", mode, i + 1, t);
		}
		if (i == runs - 1)
			print_stats(mode, &src, out);
		munmap((void *)r.host, RAM_SIZE);
	}
	check_output(out, ramfile);
	qsort(ms, (size_t)runs, sizeof(ms[0]), cmp_double);
	printf("RESULT ours %s %.2f %s\n", mode, ms[(runs - 1) / 2], out);
	free(out);
}

static int cmd_ours(int argc, char **argv)
{
	int runs;

	if (argc < 6) {
		fprintf(stderr, "usage: bench_vs_qemu ours RAMFILE OUTDIR RUNS MODE...\n");
		return 2;
	}
	runs = atoi(argv[4]);
	if (runs < 1 || runs > MAX_RUNS) {
		fprintf(stderr, "bench_vs_qemu: RUNS must be 1..%d\n", MAX_RUNS);
		return 2;
	}
	check_pattern(argv[2]);
	for (int i = 5; i < argc; i++)
		run_mode(argv[2], argv[3], runs, argv[i]);
	return 0;
}

int main(int argc, char **argv)
{
	if (argc >= 3 && !strcmp(argv[1], "gen"))
		return cmd_gen(argv[2]);
	if (argc >= 2 && !strcmp(argv[1], "ours"))
		return cmd_ours(argc, argv);
	if (argc == 1) {
		printf("bench_vs_qemu: helper of bench/vs-qemu.sh (run by make bench after "
		       "the C benches); nothing to do without arguments\n");
		return 0;
	}
	fprintf(stderr, "usage: bench_vs_qemu gen RAMFILE | ours RAMFILE OUTDIR RUNS MODE...\n");
	return 2;
}
