/* SPDX-License-Identifier: Apache-2.0 */
/*
 * What a lazily restored page costs, in the same run:
 *
 * 1. raw uffd round trip: a minimal handler thread (poll + one UFFDIO_COPY
 *    of one page from a buffer, no file) serving a thread that touches every
 *    page in order; µs per fault as the faulting thread sees it.
 * 2. the pager (squib/pager.h) over a memory file in the page cache, with a
 *    one-page batch and with the default 64 KiB batch: µs per fault as the
 *    faulting thread sees it, the pager's own service time (message read to
 *    resolved: median, p99), and µs per page overall.
 * 3. the same with every other page a hole (ZEROPAGE, nothing read).
 *
 * SIZE bytes of RAM, the median of RUNS runs each on a fresh mapping.
 * Skips (prints) where userfaultfd is missing.
 */
#include <errno.h>
#include <fcntl.h>
#include <linux/userfaultfd.h>
#include <poll.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>
#include <sys/mman.h>
#include <sys/syscall.h>
#include <time.h>
#include <unistd.h>

#include <squib/memfile.h>
#include <squib/pager.h>

#define SIZE (32ull << 20)
#define RUNS 3
#define GPA  0x80000000ull

static uint64_t ps;

static uint64_t now_ns(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (uint64_t)ts.tv_sec * 1000000000u + (uint64_t)ts.tv_nsec;
}

static int cmp_u64(const void *a, const void *b)
{
	uint64_t x = *(const uint64_t *)a, y = *(const uint64_t *)b;

	return (x > y) - (x < y);
}

static int cmp_double(const void *a, const void *b)
{
	double x = *(const double *)a, y = *(const double *)b;

	return (x > y) - (x < y);
}

static double med(double *v, int n)
{
	qsort(v, (size_t)n, sizeof(v[0]), cmp_double);
	return v[n / 2];
}

static void *anon(void)
{
	void *p = mmap(NULL, SIZE, PROT_READ | PROT_WRITE,
		       MAP_PRIVATE | MAP_ANONYMOUS | MAP_NORESERVE, -1, 0);

	if (p == MAP_FAILED) {
		perror("mmap");
		exit(1);
	}
	madvise(p, SIZE, MADV_NOHUGEPAGE);
	return p;
}

/* Touch every page in order; fault times (touches of a page starting a batch) in ns. */
static uint64_t touch_all(volatile uint8_t *mem, uint64_t batch_pages, uint64_t *lat,
			  uint64_t *nlat)
{
	uint64_t t0 = now_ns(), sum = 0;

	*nlat = 0;
	for (uint64_t k = 0; k < SIZE / ps; k++) {
		uint64_t a = now_ns();

		sum += mem[k * ps];
		if (k % batch_pages == 0)
			lat[(*nlat)++] = now_ns() - a;
	}
	(void)sum;
	return now_ns() - t0;
}

static void pct(uint64_t *lat, uint64_t n, double *p50, double *p99)
{
	qsort(lat, n, sizeof(lat[0]), cmp_u64);
	*p50 = lat[n / 2] / 1000.0;
	*p99 = lat[n * 99 / 100] / 1000.0;
}

/* ---- raw round trip ----------------------------------------------------------------------- */

struct raw {
	int uffd, efd[2];
	uint8_t *page;
};

static void *raw_handler(void *arg)
{
	struct raw *r = arg;
	struct pollfd pf[2] = {{.fd = r->uffd, .events = POLLIN},
			       {.fd = r->efd[0], .events = POLLIN}};

	for (;;) {
		struct uffd_msg msg;

		if (poll(pf, 2, -1) < 0)
			continue;
		if (pf[1].revents)
			return NULL;
		if (read(r->uffd, &msg, sizeof(msg)) != sizeof(msg) ||
		    msg.event != UFFD_EVENT_PAGEFAULT)
			continue;
		struct uffdio_copy c = {.dst = msg.arg.pagefault.address & ~(ps - 1),
					.src = (uint64_t)(uintptr_t)r->page,
					.len = ps};
		ioctl(r->uffd, UFFDIO_COPY, &c);
	}
}

static int raw_round_trip(uint64_t *lat, double *p50, double *p99)
{
	struct raw r = {.page = malloc(ps)};
	struct uffdio_api api = {.api = UFFD_API};
	uint8_t *mem = anon();
	uint64_t n;
	pthread_t th;

	memset(r.page, 0x5a, ps);
	r.uffd = (int)syscall(SYS_userfaultfd, O_CLOEXEC | O_NONBLOCK);
	if (r.uffd < 0) {
		int dev = open("/dev/userfaultfd", O_RDWR | O_CLOEXEC);

		r.uffd = dev < 0 ? -1 : ioctl(dev, _IO(0xAA, 0x00), O_CLOEXEC | O_NONBLOCK);
		if (dev >= 0)
			close(dev);
	}
	if (r.uffd < 0 || ioctl(r.uffd, UFFDIO_API, &api) || pipe(r.efd)) {
		fprintf(stderr, "SKIP: userfaultfd unavailable: %s\n", strerror(errno));
		return -1;
	}
	struct uffdio_register reg = {.range = {(uint64_t)(uintptr_t)mem, SIZE},
				      .mode = UFFDIO_REGISTER_MODE_MISSING};
	if (ioctl(r.uffd, UFFDIO_REGISTER, &reg))
		return -1;
	pthread_create(&th, NULL, raw_handler, &r);
	touch_all(mem, 1, lat, &n);
	if (write(r.efd[1], "x", 1) != 1)
		return -1;
	pthread_join(th, NULL);
	pct(lat, n, p50, p99);
	close(r.uffd);
	close(r.efd[0]);
	close(r.efd[1]);
	munmap(mem, SIZE);
	free(r.page);
	return 0;
}

/* ---- the pager ---------------------------------------------------------------------------- */

static void pager_run(struct squib_memfile *m, uint64_t batch, uint64_t *lat, double *fault50,
		      double *fault99, double *svc50, double *svc99, double *us_page,
		      struct squib_pager_stats *st)
{
	struct squib_pager_options o = {.batch_bytes = batch};
	struct squib_page_source src;
	struct squib_pager_region r;
	struct squib_pager *p;
	uint8_t *mem = anon();
	uint64_t n, total;

	r = (struct squib_pager_region){mem, SIZE, 0};
	if (squib_page_source_file(m, &src, NULL) || squib_pager_start(&r, 1, src, &o, &p, NULL)) {
		fprintf(stderr, "pager start failed\n");
		exit(1);
	}
	total = touch_all(mem, batch / ps, lat, &n);
	squib_pager_stats(p, st);
	pct(lat, n, fault50, fault99);
	*svc50 = st->median_us;
	*svc99 = st->p99_us;
	*us_page = total / 1000.0 / (double)(SIZE / ps);
	squib_pager_free(p);
	munmap(mem, SIZE);
}

static void write_file(const char *path, bool holes)
{
	uint8_t *ram = anon();
	struct squib_memfile_source_region reg = {GPA, SIZE, ram};
	struct squib_memfile_source s = {&reg, 1, ps};
	struct squib_memfile_manifest man;
	struct squib_error_detail d;

	for (uint64_t k = 0; k < SIZE / ps; k++)
		if (!holes || (k / 8) % 2) /* holes: every other 32 KiB */
			memset(ram + k * ps, (int)(k % 251) + 1, ps);
	if (squib_memfile_save_full(path, &s, NULL, &man, &d)) {
		fprintf(stderr, "save failed: %d %s\n", d.code, d.msg);
		exit(1);
	}
	squib_memfile_manifest_release(&man);
	munmap(ram, SIZE);
}

static void bench_file(const char *path, const char *label, uint64_t *lat)
{
	static const uint64_t batches[] = {0, 64u << 10};
	struct squib_memfile *m;
	uint8_t *warm = malloc(1 << 20);
	int fd = open(path, O_RDONLY);

	while (fd >= 0 && read(fd, warm, 1 << 20) > 0) /* the page cache is warm */
		;
	close(fd);
	free(warm);
	if (squib_memfile_open(path, &m, NULL))
		exit(1);
	for (int b = 0; b < 2; b++) {
		uint64_t batch = batches[b] ? batches[b] : ps;
		double f50[RUNS], f99[RUNS], s50[RUNS], s99[RUNS], up[RUNS];
		struct squib_pager_stats st;

		for (int i = 0; i < RUNS; i++)
			pager_run(m, batch, lat, &f50[i], &f99[i], &s50[i], &s99[i], &up[i], &st);
		printf("pager %-14s batch %3llu KiB: fault seen %6.1f us (p99 %6.1f), service "
		       "%5.1f us "
		       "(p99 %6.1f), %5.2f us/page, %llu faults, %llu copied, %llu zeroed, %llu "
		       "read\n",
		       label, (unsigned long long)(batch >> 10), med(f50, RUNS), med(f99, RUNS),
		       med(s50, RUNS), med(s99, RUNS), med(up, RUNS), (unsigned long long)st.faults,
		       (unsigned long long)st.pages_copied, (unsigned long long)st.pages_zeroed,
		       (unsigned long long)st.bytes_read);
	}
	squib_memfile_close(m);
}

int main(void)
{
	char path[] = "/tmp/bench_pager_XXXXXX";
	uint64_t *lat;
	double r50[RUNS], r99[RUNS];
	int fd;

	ps = (uint64_t)sysconf(_SC_PAGESIZE);
	lat = malloc(SIZE / ps * sizeof(*lat));
	for (int i = 0; i < RUNS; i++)
		if (raw_round_trip(lat, &r50[i], &r99[i]))
			return 0;
	printf("raw uffd round trip (1 page/fault, poll handler): %6.1f us (p99 %6.1f)\n",
	       med(r50, RUNS), med(r99, RUNS));
	if ((fd = mkstemp(path)) < 0)
		return 1;
	close(fd);
	write_file(path, false);
	bench_file(path, "all present", lat);
	write_file(path, true);
	bench_file(path, "half holes", lat);
	unlink(path);
	free(lat);
	return 0;
}
