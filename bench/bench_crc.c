/* SPDX-License-Identifier: Apache-2.0 */
/*
 * CRC-64/Jones throughput: bytewise, slice-by-8, pclmul (when the CPU has it) and
 * the dispatcher, with memcpy of the same buffer as the in-run baseline.
 * Usage: bench_crc [MiB] [repetitions]   (default 256 MiB, 7 repetitions)
 */
#include <squib/crc64.h>

#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "benchutil.h"

#include "../src/crc64_impl.h"

#define MAX_REPS 64

struct run {
	double best;
	double median;
	uint64_t check; /* printed, so the optimiser cannot drop the work */
};

static double now(void)
{
	return (double)now_ns() * 1e-9;
}

static struct run summarize(double *gbps, int reps, uint64_t check)
{
	struct run r = {.check = check};

	qsort(gbps, (size_t)reps, sizeof(*gbps), cmp_double);
	r.best = gbps[reps - 1];
	r.median = reps % 2 ? gbps[reps / 2] : (gbps[reps / 2 - 1] + gbps[reps / 2]) / 2;
	return r;
}

static struct run time_crc(uint64_t (*fn)(uint64_t, const void *, size_t), const uint8_t *buf,
			   size_t len, int reps)
{
	double gbps[MAX_REPS];
	uint64_t crc = 0;

	for (int i = 0; i < reps; i++) {
		double t0 = now();
		crc = fn(0, buf, len);
		gbps[i] = (double)len / (now() - t0) / 1e9;
	}
	return summarize(gbps, reps, crc);
}

static struct run time_memcpy(uint8_t *dst, const uint8_t *src, size_t len, int reps)
{
	double gbps[MAX_REPS];
	uint64_t check = 0;

	for (int i = 0; i < reps; i++) {
		double t0 = now();
		memcpy(dst, src, len);
		check += dst[(size_t)i * 4096 % len];
		gbps[i] = (double)len / (now() - t0) / 1e9;
	}
	return summarize(gbps, reps, check);
}

static void report(const char *name, struct run r, struct run base)
{
	printf("%-12s best %7.2f GB/s  median %7.2f GB/s  (%.3f x memcpy median)  [%016llx]\n",
	       name, r.best, r.median, r.median / base.median, (unsigned long long)r.check);
}

int main(int argc, char **argv)
{
	size_t mib = argc > 1 ? strtoul(argv[1], NULL, 10) : 256;
	int reps = argc > 2 ? atoi(argv[2]) : 7;
	size_t len = mib << 20;
	uint8_t *buf, *dst;
	struct run base;

	if (!mib || reps < 1 || reps > MAX_REPS) {
		fprintf(stderr, "usage: %s [MiB>0] [repetitions 1..%d]\n", argv[0], MAX_REPS);
		return 2;
	}
	buf = malloc(len);
	dst = malloc(len);
	if (!buf || !dst) {
		fprintf(stderr, "bench_crc: cannot allocate 2 x %zu MiB\n", mib);
		return 1;
	}
	/* Touch every page of both buffers so no run pays first-touch faults. */
	for (size_t i = 0; i < len; i++)
		buf[i] = (uint8_t)(i * 2654435761u >> 13);
	memset(dst, 0, len);

	printf("crc64: %zu MiB buffer, %d repetitions, dispatch=%s\n", mib, reps,
	       squib_crc64_impl());
	base = time_memcpy(dst, buf, len, reps);
	report("memcpy", base, base);
	report("bytewise", time_crc(squib_crc64_bytewise, buf, len, reps), base);
	report("slice-by-8", time_crc(squib_crc64_slice8, buf, len, reps), base);
	if (squib_crc64_clmul_available())
		report("pclmul", time_crc(squib_crc64_clmul, buf, len, reps), base);
	report("squib_crc64", time_crc(squib_crc64, buf, len, reps), base);
	/* All paths must agree; a benchmark of a wrong answer is worthless. */
	if (squib_crc64(0, buf, len) != squib_crc64_bytewise(0, buf, len)) {
		fprintf(stderr, "bench_crc: fast path disagrees with bytewise\n");
		return 1;
	}
	free(buf);
	free(dst);
	return 0;
}
