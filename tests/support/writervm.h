/* SPDX-License-Identifier: Apache-2.0 */
/*
 * A library-only VM whose vCPUs are writer threads that keep rewriting guest
 * RAM (plain anonymous memory) until paused: the guest of the live-save test
 * and benchmark. Each writer stores 8-byte counters at pseudo-random places
 * in the first `span` bytes and reports every store to a VMM-marks tracker
 * (when asked for one), so Diffs hold what changed. capture() can copy all of
 * RAM at the pause instant: what a save's image must equal byte for byte.
 *
 * No cmocka here (the benchmark includes it too). Thread-safety: one driver
 * thread; the writers only meet it through their mutexes and atomics.
 */
#ifndef SQUIB_WRITERVM_H
#define SQUIB_WRITERVM_H

#include <stdatomic.h>
#include <stdbool.h>
#include <stdint.h>

#include <squib/track.h>
#include <squib/vm.h>

#define WRITERVM_MAX_WRITERS 4u
#define WRITERVM_GPA	     0x80000000ull

struct writervm_config {
	uint64_t ram;	      /* bytes of guest RAM (host-page multiple) */
	void *host;	      /* that RAM, the caller's (kept at free); NULL: mapped here */
	uint64_t span;	      /* writers store into [0, span) of it; 0: all of it */
	uint64_t fill;	      /* bytes written (non-zero) before the writers start */
	uint32_t writers;     /* 1..WRITERVM_MAX_WRITERS */
	bool tracker;	      /* a started VMM-marks tracker fed by every store */
	bool copy_at_capture; /* capture() copies RAM into writervm_pause_copy */
	/* Stores the writers still make once a pause is asked for, before it is
	 * passed on to them (a live save protects RAM before it pauses). */
	uint64_t stores_before_pause;
};

struct writervm;

/* 0 or a negative SQUIB_E_*. The writers run once this returns. */
int writervm_new(const struct writervm_config *c, struct writervm **out);
void writervm_free(struct writervm *vm);
struct squib_vm writervm_vm(struct writervm *vm);
uint8_t *writervm_ram(struct writervm *vm);
/* RAM as the last capture() saw it (copy_at_capture), else NULL. */
const uint8_t *writervm_pause_copy(const struct writervm *vm);
/* Stores made so far, all writers together (any thread). */
uint64_t writervm_stores(struct writervm *vm);
/* Wait until at least n more stores than now have been made. */
void writervm_wait_stores(struct writervm *vm, uint64_t n);
struct squib_tracker_set *writervm_trackers(struct writervm *vm);

#endif
