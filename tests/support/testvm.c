/* SPDX-License-Identifier: Apache-2.0 */
/* The test VM (see testvm.h): anonymous RAM, vCPU threads, recorded restores. */
#include "testvm.h"

#include <errno.h>
#include <pthread.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <unistd.h>

#include <squib/envelope.h>

struct vcpu {
	pthread_t th;
	bool started;
	pthread_mutex_t mu;
	pthread_cond_t cv; /* CLOCK_MONOTONIC; every change is broadcast */
	bool want_pause, paused, quit, stuck;
	uint32_t pauses, resumes;
};

struct squib_testvm {
	struct squib_testvm_config cfg;
	struct vcpu vcpus[SQUIB_TESTVM_MAX_VCPUS];
	struct squib_vm_region regions[SQUIB_TESTVM_MAX_REGIONS];
	uint32_t region_count;
	bool owns_memory;
	struct squib_tracker *tracker;
	struct squib_tracker_set set;
	struct squib_microvm_state tmpl;
	struct squib_microvm_state *restored;
	bool irqchip_restored;
	char log[SQUIB_TESTVM_LOG_MAX];
	char fail_op[32];
	int fail_rc; /* 0: SQUIB_E_CAPTURE with a message */
};

/* ---- vCPU threads ----------------------------------------------------------------- */

static void *vcpu_main(void *arg)
{
	struct vcpu *v = arg;

	pthread_mutex_lock(&v->mu);
	while (!v->quit) {
		if (v->want_pause && !v->paused && !v->stuck) {
			v->paused = true;
			v->pauses++;
			pthread_cond_broadcast(&v->cv);
		} else if (!v->want_pause && v->paused) {
			v->paused = false;
			v->resumes++;
			pthread_cond_broadcast(&v->cv);
		}
		pthread_cond_wait(&v->cv, &v->mu);
	}
	pthread_mutex_unlock(&v->mu);
	return NULL;
}

static int vcpu_start(struct vcpu *v, bool stuck)
{
	pthread_condattr_t ca;

	pthread_condattr_init(&ca);
	pthread_condattr_setclock(&ca, CLOCK_MONOTONIC);
	pthread_cond_init(&v->cv, &ca);
	pthread_condattr_destroy(&ca);
	pthread_mutex_init(&v->mu, NULL);
	v->stuck = stuck;
	if (pthread_create(&v->th, NULL, vcpu_main, v))
		return SQUIB_E_NOMEM;
	v->started = true;
	return 0;
}

static void vcpu_stop(struct vcpu *v)
{
	if (!v->started)
		return;
	pthread_mutex_lock(&v->mu);
	v->quit = true;
	pthread_cond_broadcast(&v->cv);
	pthread_mutex_unlock(&v->mu);
	pthread_join(v->th, NULL);
	pthread_cond_destroy(&v->cv);
	pthread_mutex_destroy(&v->mu);
	v->started = false;
}

/* ---- ops --------------------------------------------------------------------------- */

static void log_op(struct squib_testvm *vm, const char *op)
{
	size_t n = strlen(vm->log);

	snprintf(vm->log + n, sizeof(vm->log) - n, "%s%s", n ? "," : "", op);
}

static int maybe_fail(struct squib_testvm *vm, const char *op, struct squib_error_detail *d)
{
	log_op(vm, op);
	if (strcmp(vm->fail_op, op))
		return 0;
	if (vm->fail_rc)
		return vm->fail_rc; /* as a backend returns it, d untouched */
	return squib_fail_msg(d, SQUIB_E_CAPTURE, "test VM: %s fails on request", op);
}

static enum squib_arch op_arch(void *ctx)
{
	struct squib_testvm *vm = ctx;

	return vm->cfg.arch;
}

static uint32_t op_vcpu_count(void *ctx)
{
	struct squib_testvm *vm = ctx;

	return vm->cfg.vcpu_count;
}

static int op_pause_begin(void *ctx, uint32_t i, struct squib_error_detail *d)
{
	struct vcpu *v = &((struct squib_testvm *)ctx)->vcpus[i];

	(void)d;
	pthread_mutex_lock(&v->mu);
	v->want_pause = true;
	pthread_cond_broadcast(&v->cv);
	pthread_mutex_unlock(&v->mu);
	return 0;
}

static int op_pause_wait(void *ctx, uint32_t i, const struct timespec *dl,
			 struct squib_error_detail *d)
{
	struct vcpu *v = &((struct squib_testvm *)ctx)->vcpus[i];
	int rc = 0;

	pthread_mutex_lock(&v->mu);
	while (!v->paused && !rc)
		if (pthread_cond_timedwait(&v->cv, &v->mu, dl) == ETIMEDOUT && !v->paused)
			rc = squib_fail(d, SQUIB_E_QUIESCE_TIMEOUT);
	pthread_mutex_unlock(&v->mu);
	return rc;
}

/* Synchronous: returns once the vCPU runs again (or withdraws a pending pause). */
static int op_resume(void *ctx, uint32_t i, struct squib_error_detail *d)
{
	struct vcpu *v = &((struct squib_testvm *)ctx)->vcpus[i];

	(void)d;
	pthread_mutex_lock(&v->mu);
	v->want_pause = false;
	pthread_cond_broadcast(&v->cv);
	while (v->paused)
		pthread_cond_wait(&v->cv, &v->mu);
	pthread_mutex_unlock(&v->mu);
	return 0;
}

/* Deep copy through the codec (the state has no other copy function). */
static int state_copy(const struct squib_microvm_state *src, struct squib_microvm_state *dst,
		      struct squib_error_detail *d)
{
	uint8_t *buf = NULL;
	size_t len = 0;
	int rc = squib_state_encode(src, &buf, &len, d);

	if (!rc)
		rc = squib_state_decode(buf, len, SQUIB_ARCH_ANY, dst, NULL, d);
	free(buf);
	return rc;
}

static int op_capture(void *ctx, struct squib_microvm_state *s, struct squib_error_detail *d)
{
	struct squib_testvm *vm = ctx;
	int rc = maybe_fail(vm, "capture", d);

	if (rc)
		return rc;
	squib_state_free(s);
	return state_copy(&vm->tmpl, s, d);
}

static int op_restore_irqchip(void *ctx, const struct squib_microvm_state *s,
			      struct squib_error_detail *d)
{
	struct squib_testvm *vm = ctx;
	int rc = maybe_fail(vm, "irqchip", d);

	if (rc)
		return rc;
	if (vm->restored) {
		squib_state_free(vm->restored);
		free(vm->restored);
	}
	if (!(vm->restored = calloc(1, sizeof(*vm->restored))))
		return squib_fail(d, SQUIB_E_NOMEM);
	vm->irqchip_restored = true;
	return state_copy(s, vm->restored, d);
}

static int op_restore_vcpus(void *ctx, const struct squib_microvm_state *s,
			    struct squib_error_detail *d)
{
	struct squib_testvm *vm = ctx;
	int rc = maybe_fail(vm, "vcpus", d);

	(void)s;
	if (!rc && !vm->irqchip_restored)
		rc = squib_fail_msg(d, SQUIB_E_CAPTURE, "vCPUs restored before the GIC");
	return rc;
}

static int op_restore_devices(void *ctx, const struct squib_microvm_state *s,
			      struct squib_error_detail *d)
{
	(void)s;
	return maybe_fail(ctx, "devices", d);
}

static int op_get_memory(void *ctx, const struct squib_vm_region **r, uint32_t *n,
			 struct squib_error_detail *d)
{
	struct squib_testvm *vm = ctx;

	(void)d;
	*r = vm->regions;
	*n = vm->region_count;
	return 0;
}

static int op_set_memory(void *ctx, const struct squib_vm_region *r, uint32_t n,
			 struct squib_error_detail *d)
{
	struct squib_testvm *vm = ctx;
	int rc = maybe_fail(vm, "set_memory", d);

	if (rc)
		return rc;
	if (n > SQUIB_TESTVM_MAX_REGIONS || vm->owns_memory)
		return squib_fail_msg(d, SQUIB_E_CAPTURE, "test VM cannot take %u regions", n);
	memcpy(vm->regions, r, n * sizeof(*r));
	vm->region_count = n;
	return 0;
}

static struct squib_tracker_set *op_trackers(void *ctx)
{
	struct squib_testvm *vm = ctx;

	return vm->tracker ? &vm->set : NULL;
}

static const struct squib_vm_ops testvm_ops = {
    .name = "testvm",
    .arch = op_arch,
    .vcpu_count = op_vcpu_count,
    .pause_begin = op_pause_begin,
    .pause_wait = op_pause_wait,
    .resume = op_resume,
    .capture = op_capture,
    .restore_irqchip = op_restore_irqchip,
    .restore_vcpus = op_restore_vcpus,
    .restore_devices = op_restore_devices,
    .get_memory = op_get_memory,
    .set_memory = op_set_memory,
    .trackers = op_trackers,
};

/* ---- the template state -------------------------------------------------------------- */

static uint64_t ram_of(const struct squib_testvm_config *c)
{
	uint64_t t = 0;

	for (uint32_t i = 0; i < c->region_count; i++)
		t += c->regions[i].size;
	return t;
}

static int add_vcpus(struct squib_microvm_state *s, uint32_t n)
{
	for (uint32_t i = 0; i < n; i++) {
		struct squib_arm64_vcpu *v;
		int rc = squib_state_add_arm64_vcpu(s, i, &v);

		if (rc)
			return rc;
		for (int r = 0; r < 31; r++)
			v->regs.x[r] = 0x1000ull * (i + 1) + (uint64_t)r;
		v->regs.pc = 0x80080000ull + i;
		v->regs.pstate = 0x3c5;
		v->psci_state = i ? SQUIB_PSCI_OFF : SQUIB_PSCI_ON;
		if ((rc = squib_arm64_vcpu_set_sysreg(v, 1, 0x30d00800ull + i)) ||
		    (rc = squib_arm64_vcpu_set_sysreg(v, 2, 0xdeadbead00ull + i)))
			return rc;
	}
	return 0;
}

static int host_dev_blob(uint8_t *b, size_t *len)
{
	size_t n = strlen(SQUIB_TESTVM_HOST_DEV_NAME);

	b[0] = 1;
	for (int i = 0; i < 4; i++)
		b[1 + i] = (uint8_t)(n >> (8 * i));
	memcpy(b + 5, SQUIB_TESTVM_HOST_DEV_NAME, n);
	*len = 5 + n;
	return 0;
}

static int build_template(struct squib_testvm *vm)
{
	struct squib_microvm_state *s = &vm->tmpl;
	static const uint8_t blk[] = {0x01, 0x02, 0x03};
	uint8_t gic[64], net[64];
	size_t net_len;
	int rc;

	squib_state_init(s, vm->cfg.arch);
	s->vm_info.mem_size_mib = ram_of(&vm->cfg) >> 20;
	s->vm_info.track_dirty_pages = vm->cfg.track_dirty_pages;
	if ((rc =
		 squib_state_set_string(&s->vm_info.kernel_image_path, "/var/lib/squib/vmlinux")) ||
	    (rc = squib_state_set_string(&s->vm_info.boot_args, "console=ttyAMA0 panic=1")))
		return rc;
	if (vm->cfg.arch == SQUIB_ARCH_AARCH64) {
		for (size_t i = 0; i < sizeof(gic); i++)
			gic[i] = (uint8_t)(0xa0 + i);
		if ((rc = add_vcpus(s, vm->cfg.vcpu_count)) ||
		    (rc = squib_state_set_gic(s, gic, sizeof(gic))))
			return rc;
	}
	host_dev_blob(net, &net_len);
	if ((rc = squib_state_add_device(s, "virtio-block", "rootfs", 0, blk, sizeof(blk))) ||
	    (rc = squib_state_add_device(s, "virtio-net", "eth0", 1, net, net_len)))
		return rc;
	return squib_state_set_mmds(s, "{\"latest\":{\"meta-data\":{\"id\":\"i-1\"}}}", true, 3600);
}

/* ---- memory and tracker ---------------------------------------------------------------- */

static int map_memory(struct squib_testvm *vm)
{
	vm->owns_memory = true;
	for (uint32_t i = 0; i < vm->cfg.region_count; i++) {
		const struct squib_mem_region *r = &vm->cfg.regions[i];
		void *p = mmap(NULL, (size_t)r->size, PROT_READ | PROT_WRITE,
			       MAP_PRIVATE | MAP_ANONYMOUS | MAP_NORESERVE, -1, 0);

		if (p == MAP_FAILED)
			return SQUIB_E_NOMEM;
		madvise(p, (size_t)r->size, MADV_NOHUGEPAGE);
		vm->regions[i] = (struct squib_vm_region){r->guest_addr, r->size, p};
		vm->region_count = i + 1;
	}
	return 0;
}

static int start_tracker(struct squib_testvm *vm)
{
	struct squib_guest_region g[SQUIB_TESTVM_MAX_REGIONS];
	struct squib_memory_map map = {g, vm->region_count};
	struct squib_tracker_set init = SQUIB_TRACKER_SET_INIT;
	int rc;

	for (uint32_t i = 0; i < vm->region_count; i++)
		g[i] = (struct squib_guest_region){vm->regions[i].guest_addr, vm->regions[i].size,
						   vm->regions[i].host, i};
	vm->set = init;
	if ((rc = squib_tracker_vmm_marks_new(&map, &vm->tracker, NULL)) ||
	    (rc = squib_tracker_start(vm->tracker, NULL)))
		return rc;
	return squib_tracker_set_add(&vm->set, vm->tracker, NULL);
}

/* ---- lifecycle ------------------------------------------------------------------------------ */

struct squib_testvm_config squib_testvm_config_simple(uint64_t gpa, uint64_t size, uint32_t n)
{
	struct squib_testvm_config c = {
	    .arch = SQUIB_ARCH_AARCH64, .vcpu_count = n, .region_count = 1, .stuck_vcpu = -1};

	c.regions[0] = (struct squib_mem_region){gpa, size};
	return c;
}

static int check_config(const struct squib_testvm_config *c)
{
	if (c->vcpu_count > SQUIB_TESTVM_MAX_VCPUS || c->region_count > SQUIB_TESTVM_MAX_REGIONS ||
	    (!c->no_memory && !c->region_count) || (c->with_tracker && c->no_memory))
		return SQUIB_E_INVALID_ARGUMENT;
	return 0;
}

int squib_testvm_new(const struct squib_testvm_config *cfg, struct squib_testvm **out)
{
	struct squib_testvm *vm;
	int rc;

	*out = NULL;
	if ((rc = check_config(cfg)))
		return rc;
	if (!(vm = calloc(1, sizeof(*vm))))
		return SQUIB_E_NOMEM;
	vm->cfg = *cfg;
	if (vm->cfg.arch == SQUIB_ARCH_ANY)
		vm->cfg.arch = SQUIB_ARCH_AARCH64;
	rc = build_template(vm);
	for (uint32_t i = 0; !rc && i < cfg->vcpu_count; i++)
		rc = vcpu_start(&vm->vcpus[i], (int)i == cfg->stuck_vcpu);
	if (!rc && !cfg->no_memory)
		rc = map_memory(vm);
	if (!rc && cfg->with_tracker)
		rc = start_tracker(vm);
	if (rc) {
		squib_testvm_free(vm);
		return rc;
	}
	*out = vm;
	return 0;
}

void squib_testvm_free(struct squib_testvm *vm)
{
	if (!vm)
		return;
	for (uint32_t i = 0; i < SQUIB_TESTVM_MAX_VCPUS; i++)
		vcpu_stop(&vm->vcpus[i]);
	squib_tracker_free(vm->tracker);
	for (uint32_t i = 0; vm->owns_memory && i < vm->region_count; i++)
		munmap(vm->regions[i].host, (size_t)vm->regions[i].size);
	squib_state_free(&vm->tmpl);
	if (vm->restored) {
		squib_state_free(vm->restored);
		free(vm->restored);
	}
	free(vm);
}

struct squib_vm squib_testvm_vm(struct squib_testvm *vm)
{
	return (struct squib_vm){&testvm_ops, vm};
}

struct squib_microvm_state *squib_testvm_template(struct squib_testvm *vm)
{
	return &vm->tmpl;
}

/* ---- guest memory access ----------------------------------------------------------------- */

uint8_t *squib_testvm_host(struct squib_testvm *vm, uint64_t gpa)
{
	for (uint32_t i = 0; i < vm->region_count; i++) {
		const struct squib_vm_region *r = &vm->regions[i];

		if (gpa >= r->guest_addr && gpa - r->guest_addr < r->size)
			return (uint8_t *)r->host + (gpa - r->guest_addr);
	}
	return NULL;
}

int squib_testvm_write(struct squib_testvm *vm, uint64_t gpa, int byte, uint64_t len)
{
	uint8_t *p = squib_testvm_host(vm, gpa);

	if (!p || !len || !squib_testvm_host(vm, gpa + len - 1) ||
	    squib_testvm_host(vm, gpa + len - 1) - p != (ptrdiff_t)(len - 1))
		return SQUIB_E_INVALID_ARGUMENT;
	memset(p, byte, (size_t)len);
	if (vm->tracker)
		squib_tracker_mark_write(vm->tracker, gpa, len);
	return 0;
}

void squib_testvm_fill(struct squib_testvm *vm, uint32_t seed, uint64_t stride)
{
	uint64_t hp = (uint64_t)sysconf(_SC_PAGESIZE), idx = 0;

	for (uint32_t i = 0; i < vm->region_count; i++) {
		const struct squib_vm_region *r = &vm->regions[i];

		for (uint64_t off = 0; off < r->size; off += hp, idx++) {
			uint8_t *p = (uint8_t *)r->host + off;

			if (stride > 1 && idx % stride)
				continue;
			for (uint64_t k = 0; k < hp; k++)
				p[k] = (uint8_t)(((k * 131) ^ (idx * 7) ^ seed) % 251 + 1);
			if (vm->tracker)
				squib_tracker_mark_write(vm->tracker, r->guest_addr + off, hp);
		}
	}
}

struct squib_tracker_set *squib_testvm_trackers(struct squib_testvm *vm)
{
	return vm->tracker ? &vm->set : NULL;
}

/* ---- observation ---------------------------------------------------------------------------- */

static uint32_t vcpu_read(struct squib_testvm *vm, uint32_t i, int what)
{
	struct vcpu *v = &vm->vcpus[i];
	uint32_t r;

	pthread_mutex_lock(&v->mu);
	r = what == 0 ? v->paused : what == 1 ? v->want_pause : what == 2 ? v->pauses : v->resumes;
	pthread_mutex_unlock(&v->mu);
	return r;
}

bool squib_testvm_vcpu_paused(struct squib_testvm *vm, uint32_t i)
{
	return vcpu_read(vm, i, 0);
}

bool squib_testvm_vcpu_pause_pending(struct squib_testvm *vm, uint32_t i)
{
	return vcpu_read(vm, i, 1) && !vcpu_read(vm, i, 0);
}

uint32_t squib_testvm_vcpu_pauses(struct squib_testvm *vm, uint32_t i)
{
	return vcpu_read(vm, i, 2);
}

uint32_t squib_testvm_vcpu_resumes(struct squib_testvm *vm, uint32_t i)
{
	return vcpu_read(vm, i, 3);
}

const char *squib_testvm_log(struct squib_testvm *vm)
{
	return vm->log;
}

const struct squib_microvm_state *squib_testvm_restored(struct squib_testvm *vm)
{
	return vm->restored;
}

void squib_testvm_fail_op(struct squib_testvm *vm, const char *op)
{
	snprintf(vm->fail_op, sizeof(vm->fail_op), "%s", op ? op : "");
	vm->fail_rc = 0;
}

void squib_testvm_fail_op_rc(struct squib_testvm *vm, const char *op, int rc)
{
	squib_testvm_fail_op(vm, op);
	vm->fail_rc = rc;
}

uint64_t squib_testvm_ram_size(struct squib_testvm *vm)
{
	uint64_t t = 0;

	for (uint32_t i = 0; i < vm->region_count; i++)
		t += vm->regions[i].size;
	return t;
}

const struct squib_vm_region *squib_testvm_region(struct squib_testvm *vm, uint32_t i)
{
	return i < vm->region_count ? &vm->regions[i] : NULL;
}
