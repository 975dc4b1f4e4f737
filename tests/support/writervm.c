/* SPDX-License-Identifier: Apache-2.0 */
#include "writervm.h"

#include <errno.h>
#include <pthread.h>
#include <sched.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <time.h>

#include <squib/state.h>

/* Stores between two looks at the pause flag: a pause waits for at most this many. */
#define BURST 64

struct writer {
	struct writervm *vm;
	pthread_t thread;
	pthread_mutex_t mu;
	pthread_cond_t cv;
	bool pause_req, paused, stop;
	uint64_t rng;
};

struct writervm {
	struct writervm_config c;
	uint8_t *ram;
	uint8_t *copy;
	struct squib_vm_region region;
	struct writer w[WRITERVM_MAX_WRITERS];
	uint32_t started;
	atomic_uint_fast64_t stores;
	struct squib_tracker *marks;
	struct squib_tracker_set set;
};

static uint64_t next(uint64_t *s)
{
	uint64_t x = *s; /* xorshift64 */

	x ^= x << 13;
	x ^= x >> 7;
	x ^= x << 17;
	return *s = x;
}

/* Wait here while a pause is asked for; false once told to stop. */
static bool checkpoint(struct writer *w)
{
	bool go;

	pthread_mutex_lock(&w->mu);
	while (w->pause_req && !w->stop) {
		w->paused = true;
		pthread_cond_broadcast(&w->cv);
		pthread_cond_wait(&w->cv, &w->mu);
	}
	w->paused = false;
	go = !w->stop;
	pthread_mutex_unlock(&w->mu);
	return go;
}

static void *writer_main(void *arg)
{
	struct writer *w = arg;
	struct writervm *vm = w->vm;
	uint64_t slots = vm->c.span / 8;

	while (checkpoint(w)) {
		for (int i = 0; i < BURST; i++) {
			uint64_t off = next(&w->rng) % slots * 8;
			uint64_t v = atomic_fetch_add(&vm->stores, 1) + 1;

			/* Atomic only so that two writers on one slot are no data race. */
			__atomic_store_n((uint64_t *)(void *)(vm->ram + off), v, __ATOMIC_RELAXED);
			if (vm->marks)
				squib_tracker_mark_write(vm->marks, WRITERVM_GPA + off, 8);
		}
	}
	return NULL;
}

/* ---- the ops ----------------------------------------------------------------------- */

static enum squib_arch op_arch(void *ctx)
{
	(void)ctx;
	return SQUIB_ARCH_AARCH64;
}

static uint32_t op_vcpus(void *ctx)
{
	return ((struct writervm *)ctx)->c.writers;
}

static int op_pause_begin(void *ctx, uint32_t i, struct squib_error_detail *d)
{
	struct writervm *vm = ctx;
	struct writer *w = &vm->w[i];

	(void)d;
	if (i == 0 && vm->c.stores_before_pause)
		writervm_wait_stores(vm, vm->c.stores_before_pause);
	pthread_mutex_lock(&w->mu);
	w->pause_req = true;
	pthread_mutex_unlock(&w->mu);
	return 0;
}

static int op_pause_wait(void *ctx, uint32_t i, const struct timespec *dl,
			 struct squib_error_detail *d)
{
	struct writer *w = &((struct writervm *)ctx)->w[i];
	int rc = 0;

	pthread_mutex_lock(&w->mu);
	while (!w->paused && rc != ETIMEDOUT)
		rc = pthread_cond_timedwait(&w->cv, &w->mu, dl);
	rc = w->paused ? 0 : SQUIB_E_QUIESCE_TIMEOUT;
	pthread_mutex_unlock(&w->mu);
	return rc ? squib_fail_msg(d, rc, "writer %u did not pause", i) : 0;
}

static int op_resume(void *ctx, uint32_t i, struct squib_error_detail *d)
{
	struct writer *w = &((struct writervm *)ctx)->w[i];

	(void)d;
	pthread_mutex_lock(&w->mu);
	w->pause_req = false;
	pthread_cond_broadcast(&w->cv);
	pthread_mutex_unlock(&w->mu);
	return 0;
}

static int op_capture(void *ctx, struct squib_microvm_state *s, struct squib_error_detail *d)
{
	static const uint8_t gic[64];
	struct writervm *vm = ctx;
	struct squib_arm64_vcpu *v;
	int rc = 0;

	if (vm->copy)
		memcpy(vm->copy, vm->ram, vm->c.ram); /* every writer is paused */
	s->vm_info.mem_size_mib = (uint32_t)((vm->c.ram + (1u << 20) - 1) >> 20);
	s->vm_info.track_dirty_pages = vm->marks != NULL;
	for (uint32_t i = 0; !rc && i < vm->c.writers; i++)
		if (!(rc = squib_state_add_arm64_vcpu(s, i, &v))) {
			v->regs.pc = WRITERVM_GPA;
			v->psci_state = SQUIB_PSCI_ON;
		}
	if (!rc)
		rc = squib_state_set_gic(s, gic, sizeof(gic));
	return rc ? squib_fail_msg(d, rc, "writervm: capture") : 0;
}

static int op_restore(void *ctx, const struct squib_microvm_state *s, struct squib_error_detail *d)
{
	(void)ctx, (void)s, (void)d;
	return 0;
}

static int op_get_memory(void *ctx, const struct squib_vm_region **r, uint32_t *n,
			 struct squib_error_detail *d)
{
	(void)d;
	*r = &((struct writervm *)ctx)->region;
	*n = 1;
	return 0;
}

static int op_set_memory(void *ctx, const struct squib_vm_region *r, uint32_t n,
			 struct squib_error_detail *d)
{
	(void)ctx, (void)r, (void)n;
	return squib_fail_msg(d, SQUIB_E_CAPTURE, "writervm: not a restore target");
}

static struct squib_tracker_set *op_trackers(void *ctx)
{
	struct writervm *vm = ctx;

	return vm->marks ? &vm->set : NULL;
}

static const struct squib_vm_ops writervm_ops = {
    .name = "writervm",
    .arch = op_arch,
    .vcpu_count = op_vcpus,
    .pause_begin = op_pause_begin,
    .pause_wait = op_pause_wait,
    .resume = op_resume,
    .capture = op_capture,
    .restore_irqchip = op_restore,
    .restore_vcpus = op_restore,
    .restore_devices = op_restore,
    .get_memory = op_get_memory,
    .set_memory = op_set_memory,
    .trackers = op_trackers,
};

/* ---- life ---------------------------------------------------------------------------- */

static int start_tracker(struct writervm *vm)
{
	struct squib_guest_region g = {WRITERVM_GPA, vm->c.ram, vm->ram, 0};
	struct squib_memory_map map = {&g, 1};
	struct squib_tracker_set init = SQUIB_TRACKER_SET_INIT;
	int rc;

	vm->set = init;
	if ((rc = squib_tracker_vmm_marks_new(&map, &vm->marks, NULL)) ||
	    (rc = squib_tracker_start(vm->marks, NULL)))
		return rc;
	return squib_tracker_set_add(&vm->set, vm->marks, NULL);
}

static void prefill(struct writervm *vm)
{
	for (uint64_t off = 0; off < vm->c.fill; off += 8) {
		uint64_t v = off * 0x9E3779B97F4A7C15ull | 1;

		memcpy(vm->ram + off, &v, sizeof(v));
	}
}

int writervm_new(const struct writervm_config *c, struct writervm **out)
{
	struct writervm *vm = calloc(1, sizeof(*vm));
	int rc = 0;

	*out = NULL;
	if (!vm || !c->writers || c->writers > WRITERVM_MAX_WRITERS || !c->ram)
		return free(vm), SQUIB_E_INVALID_ARGUMENT;
	vm->c = *c;
	if (!vm->c.span || vm->c.span > c->ram)
		vm->c.span = c->ram;
	vm->ram = c->host ? c->host
			  : mmap(NULL, c->ram, PROT_READ | PROT_WRITE,
				 MAP_PRIVATE | MAP_ANONYMOUS | MAP_NORESERVE, -1, 0);
	if (vm->ram == MAP_FAILED || (c->copy_at_capture && !(vm->copy = malloc(c->ram)))) {
		if (vm->ram != MAP_FAILED && !c->host)
			munmap(vm->ram, c->ram);
		free(vm);
		return SQUIB_E_NOMEM;
	}
	vm->region = (struct squib_vm_region){WRITERVM_GPA, c->ram, vm->ram};
	prefill(vm);
	if (c->tracker)
		rc = start_tracker(vm);
	for (uint32_t i = 0; !rc && i < c->writers; i++) {
		struct writer *w = &vm->w[i];
		pthread_condattr_t ca;

		*w = (struct writer){.vm = vm, .rng = 0x1234567ull * (i + 1)};

		/* pause_wait's deadline is CLOCK_MONOTONIC (squib/vm.h). */
		pthread_condattr_init(&ca);
		pthread_condattr_setclock(&ca, CLOCK_MONOTONIC);
		pthread_mutex_init(&w->mu, NULL);
		pthread_cond_init(&w->cv, &ca);
		pthread_condattr_destroy(&ca);
		if (pthread_create(&w->thread, NULL, writer_main, w))
			rc = SQUIB_E_NOMEM;
		else
			vm->started = i + 1;
	}
	*out = vm;
	if (rc)
		writervm_free(vm), *out = NULL;
	return rc;
}

void writervm_free(struct writervm *vm)
{
	if (!vm)
		return;
	for (uint32_t i = 0; i < vm->started; i++) {
		struct writer *w = &vm->w[i];

		pthread_mutex_lock(&w->mu);
		w->stop = true;
		pthread_cond_broadcast(&w->cv);
		pthread_mutex_unlock(&w->mu);
		pthread_join(w->thread, NULL);
		pthread_mutex_destroy(&w->mu);
		pthread_cond_destroy(&w->cv);
	}
	squib_tracker_free(vm->marks);
	if (!vm->c.host)
		munmap(vm->ram, vm->c.ram);
	free(vm->copy);
	free(vm);
}

struct squib_vm writervm_vm(struct writervm *vm)
{
	return (struct squib_vm){&writervm_ops, vm};
}

uint8_t *writervm_ram(struct writervm *vm)
{
	return vm->ram;
}

const uint8_t *writervm_pause_copy(const struct writervm *vm)
{
	return vm->copy;
}

uint64_t writervm_stores(struct writervm *vm)
{
	return atomic_load(&vm->stores);
}

void writervm_wait_stores(struct writervm *vm, uint64_t n)
{
	uint64_t until = writervm_stores(vm) + n;

	while (writervm_stores(vm) < until)
		sched_yield();
}

struct squib_tracker_set *writervm_trackers(struct writervm *vm)
{
	return vm->marks ? &vm->set : NULL;
}
