/* SPDX-License-Identifier: Apache-2.0 */
/* Timing helpers shared by the benchmark programs (header-only). */
#ifndef SQUIB_BENCHUTIL_H
#define SQUIB_BENCHUTIL_H

#include <stdint.h>
#include <time.h>

/* Monotonic time in nanoseconds. */
static inline uint64_t now_ns(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (uint64_t)ts.tv_sec * 1000000000u + (uint64_t)ts.tv_nsec;
}

/* qsort comparator for doubles (best = [0], median = [n/2] after sorting). */
static inline int cmp_double(const void *a, const void *b)
{
	double x = *(const double *)a, y = *(const double *)b;

	return (x > y) - (x < y);
}

#endif
