/* SPDX-License-Identifier: Apache-2.0 */
/*
 * vCPUs: creation (CPUID = what KVM supports, APIC ids fixed up), one thread
 * per vCPU looping on KVM_RUN, the pause/resume protocol described in
 * squib/kvm.h, and squib_kvm_vm_fail. vm->lock guards pause_req, stop_req,
 * fail_code/fail_detail, acked and every vCPU's acked/parked/exit fields;
 * kvm_run.immediate_exit is written under it too.
 */
#include "kvm_internal.h"

#include <asm/kvm_para.h>
#include <errno.h>
#include <signal.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>
#include <sys/mman.h>
#include <time.h>
#include <unistd.h>

#define CPUID_MAX_ENTRIES 256

/* ---- creation --------------------------------------------------------------- */

static int get_supported_cpuid(struct squib_kvm_vm *vm, struct kvm_cpuid2 **out,
			       struct squib_error_detail *d)
{
	struct kvm_cpuid2 *c = kvm_cpuid_alloc(CPUID_MAX_ENTRIES);

	if (!c)
		return squib_fail(d, SQUIB_E_NOMEM);
	if (kvm_ioctl(vm->kvm_fd, KVM_GET_SUPPORTED_CPUID, c)) {
		free(c);
		return kvm_fail_ioctl(d, "KVM_GET_SUPPORTED_CPUID");
	}
	*out = c;
	return 0;
}

/*
 * KVM's asynchronous page faults, hidden from the guest as Cloud Hypervisor
 * (PR 2498) and Firecracker (issue 3043, PR 4565) do on AMD. A Linux guest
 * restored lazily (its memory served through userfaultfd, where every user-mode
 * fault on a missing page becomes an async PF) stopped making progress with
 * the vCPU busy in KVM_RUN in 5 of 5 restores on Debian 12's kvm_amd, and in
 * none of 5 with these bits clear (tests/test_linux_guest.c). Without them a
 * vCPU simply waits for the page.
 */
#define ASYNC_PF_FEATURES                                                                          \
	((1u << KVM_FEATURE_ASYNC_PF) | (1u << KVM_FEATURE_ASYNC_PF_VMEXIT) |                      \
	 (1u << KVM_FEATURE_ASYNC_PF_INT))

#define CPUID_1_ECX_TSC_DEADLINE (1u << 24)

/*
 * KVM emulates the LAPIC's TSC-deadline timer mode (KVM_CAP_TSC_DEADLINE_TIMER)
 * but leaves the CPUID bit out of KVM_GET_SUPPORTED_CPUID for the VMM to
 * set; without the bit KVM masks the mode out of LVTT writes, so a guest
 * that arms a deadline never gets its interrupt.
 */
static bool tsc_deadline_offered(struct squib_kvm_vm *vm)
{
	return vm->cfg.irqchip && kvm_ioctl(vm->kvm_fd, KVM_CHECK_EXTENSION,
					    (void *)(uintptr_t)KVM_CAP_TSC_DEADLINE_TIMER) > 0;
}

/* The supported table with this vCPU's APIC id in leaves 1, 0xB and 0x1F, the
 * hypervisor bit that KVM leaves to the VMM, with the in-kernel LAPIC the
 * TSC-deadline bit, and no async page faults (above). */
static int set_cpuid(struct kvm_vcpu *c, const struct kvm_cpuid2 *supported,
		     struct squib_error_detail *d)
{
	struct kvm_cpuid2 *mine = kvm_cpuid_alloc(supported->nent);
	bool deadline = tsc_deadline_offered(c->vm);
	int rc = 0;

	if (!mine)
		return squib_fail(d, SQUIB_E_NOMEM);
	memcpy(mine->entries, supported->entries, supported->nent * sizeof(mine->entries[0]));
	for (uint32_t i = 0; i < mine->nent; i++) {
		struct kvm_cpuid_entry2 *e = &mine->entries[i];

		if (e->function == KVM_CPUID_FEATURES)
			e->eax &= ~ASYNC_PF_FEATURES;
		if (e->function == 1) {
			e->ebx = (e->ebx & 0x00ffffffu) | (c->index << 24);
			e->ecx |=
			    1u
			    << 31; /* "running under a hypervisor": guests look for KVM's leaves */
			if (deadline)
				e->ecx |= CPUID_1_ECX_TSC_DEADLINE;
		} else if (e->function == 0xb || e->function == 0x1f)
			e->edx = c->index;
	}
	if (kvm_ioctl(c->fd, KVM_SET_CPUID2, mine))
		rc = kvm_fail_ioctl(d, "KVM_SET_CPUID2");
	else
		c->cpuid_nent = mine->nent;
	free(mine);
	return rc;
}

static int create_vcpu(struct squib_kvm_vm *vm, uint32_t i, const struct kvm_cpuid2 *cpuid,
		       struct squib_error_detail *d)
{
	struct kvm_vcpu *c = &vm->vcpus[i];
	void *run;

	c->vm = vm;
	c->index = i;
	c->parked = SQUIB_KVM_VCPU_RUNNING;
	c->fd = kvm_ioctl(vm->vm_fd, KVM_CREATE_VCPU, (void *)(uintptr_t)i);
	if (c->fd < 0)
		return kvm_fail_ioctl(d, "KVM_CREATE_VCPU");
	run = mmap(NULL, vm->run_size, PROT_READ | PROT_WRITE, MAP_SHARED, c->fd, 0);
	if (run == MAP_FAILED)
		return squib_fail_errno(d, SQUIB_E_IO, errno);
	c->run = run;
	return set_cpuid(c, cpuid, d);
}

int kvm_vcpus_create(struct squib_kvm_vm *vm, struct squib_error_detail *d)
{
	struct kvm_cpuid2 *cpuid = NULL;
	int rc = get_supported_cpuid(vm, &cpuid, d);

	for (uint32_t i = 0; !rc && i < vm->cfg.vcpu_count; i++)
		rc = create_vcpu(vm, i, cpuid, d);
	free(cpuid);
	return rc;
}

/* ---- the vCPU thread ------------------------------------------------------------ */

static void set_immediate_exit(struct kvm_vcpu *c, uint8_t v)
{
	__atomic_store_n(&c->run->immediate_exit, v, __ATOMIC_SEQ_CST);
}

/* What one KVM_RUN and its exit handling led to. */
struct run_outcome {
	enum squib_kvm_vcpu_run_state park; /* RUNNING: go on */
	int error;
	bool exited; /* KVM_RUN returned an exit (not EINTR) */
};

static void handle_mmio(struct kvm_vcpu *c)
{
	/* No MMIO devices: reads see all ones, writes vanish (like an empty bus). */
	if (!c->run->mmio.is_write)
		memset(c->run->mmio.data, 0xff, sizeof(c->run->mmio.data));
	c->pending_io = true;
}

static struct run_outcome handle_exit(struct kvm_vcpu *c)
{
	struct run_outcome o = {SQUIB_KVM_VCPU_RUNNING, 0, true};

	switch (c->run->exit_reason) {
	case KVM_EXIT_IO:
		c->pending_io = true;
		o.error = kvm_dispatch_io(c->vm, c);
		break;
	case KVM_EXIT_MMIO:
		handle_mmio(c);
		break;
	case KVM_EXIT_INTR:
		break;
	case KVM_EXIT_HLT:
		o.park = SQUIB_KVM_VCPU_HALTED;
		return o;
	default: /* SHUTDOWN (triple fault), FAIL_ENTRY, INTERNAL_ERROR, ... */
		o.park = SQUIB_KVM_VCPU_FAILED;
		return o;
	}
	if (o.error)
		o.park = SQUIB_KVM_VCPU_FAILED;
	return o;
}

static struct run_outcome run_once(struct kvm_vcpu *c)
{
	struct run_outcome o = {SQUIB_KVM_VCPU_RUNNING, 0, false};
	int rc = ioctl(c->fd, KVM_RUN, NULL);

	c->pending_io = false; /* any KVM_RUN completes the previous exit's I/O */
	if (rc < 0) {
		if (errno != EINTR && errno != EAGAIN) {
			o.park = SQUIB_KVM_VCPU_FAILED;
			o.error = -errno;
		}
		return o;
	}
	return handle_exit(c);
}

/* Under vm->lock. */
static void set_acked(struct kvm_vcpu *c, bool acked)
{
	struct squib_kvm_vm *vm = c->vm;

	if (c->acked == acked)
		return;
	c->acked = acked;
	if (acked) {
		vm->acked++;
		pthread_cond_broadcast(&vm->cond);
	} else {
		vm->acked--;
	}
}

/* Under vm->lock: record one KVM_RUN's outcome. */
static void record(struct kvm_vcpu *c, const struct run_outcome *o)
{
	if (o->exited) {
		c->exits++;
		c->exit_reason = c->run->exit_reason;
		c->io_exits += c->exit_reason == KVM_EXIT_IO;
	}
	if (o->park != SQUIB_KVM_VCPU_RUNNING) {
		c->parked = o->park;
		c->error = o->error;
	}
}

static void unblock_run_signals(int kick)
{
	sigset_t set;

	sigemptyset(&set);
	sigaddset(&set, kick);
	sigaddset(&set, SIGSEGV);
	sigaddset(&set, SIGBUS);
	sigaddset(&set, SIGFPE);
	sigaddset(&set, SIGILL);
	pthread_sigmask(SIG_UNBLOCK, &set, NULL);
}

static void *vcpu_thread(void *arg)
{
	struct kvm_vcpu *c = arg;
	struct squib_kvm_vm *vm = c->vm;
	struct run_outcome o;

	unblock_run_signals(vm->cfg.kick_signal);
	kvm_lock(&vm->lock);
	while (!vm->stop_req) {
		if (vm->fail_code) {
			/* For good, and without completing a pending I/O: the guest stops here. */
			set_acked(c, true);
			pthread_cond_wait(&vm->cond, &vm->lock);
			continue;
		}
		if (vm->pause_req && c->pending_io) {
			/* immediate_exit is set: KVM finishes the I/O and returns at once. */
			kvm_unlock(&vm->lock);
			o = run_once(c);
			kvm_lock(&vm->lock);
			record(c, &o);
			continue;
		}
		if (vm->pause_req || c->parked != SQUIB_KVM_VCPU_RUNNING) {
			set_acked(c, true);
			pthread_cond_wait(&vm->cond, &vm->lock);
			continue;
		}
		set_acked(c, false);
		set_immediate_exit(c, 0);
		kvm_unlock(&vm->lock);
		o = run_once(c);
		kvm_lock(&vm->lock);
		record(c, &o);
	}
	set_acked(c, false);
	kvm_unlock(&vm->lock);
	return NULL;
}

/* ---- control -------------------------------------------------------------------- */

/* Under vm->lock: make every started vCPU leave KVM_RUN soon. */
static void kick_all(struct squib_kvm_vm *vm)
{
	for (uint32_t i = 0; i < vm->cfg.vcpu_count; i++) {
		struct kvm_vcpu *c = &vm->vcpus[i];

		if (!c->thread_started)
			continue;
		set_immediate_exit(c, 1);
		pthread_kill(c->thread, vm->cfg.kick_signal);
	}
	pthread_cond_broadcast(&vm->cond);
}

static void stop_threads(struct squib_kvm_vm *vm)
{
	bool started[SQUIB_KVM_MAX_VCPUS];

	/* Forget the threads under the lock before joining: a concurrent
	 * squib_kvm_vm_fail must never signal a thread that was joined. */
	kvm_lock(&vm->lock);
	vm->stop_req = true;
	kick_all(vm);
	for (uint32_t i = 0; i < vm->cfg.vcpu_count; i++) {
		started[i] = vm->vcpus[i].thread_started;
		vm->vcpus[i].thread_started = false;
	}
	kvm_unlock(&vm->lock);
	for (uint32_t i = 0; i < vm->cfg.vcpu_count; i++)
		if (started[i])
			pthread_join(vm->vcpus[i].thread, NULL);
}

void kvm_vcpus_destroy(struct squib_kvm_vm *vm)
{
	stop_threads(vm);
	for (uint32_t i = 0; i < SQUIB_KVM_MAX_VCPUS; i++) {
		struct kvm_vcpu *c = &vm->vcpus[i];

		if (c->run)
			munmap(c->run, vm->run_size);
		if (c->fd >= 0)
			close(c->fd);
		c->run = NULL;
		c->fd = -1;
	}
}

/* Threads start with every signal blocked; each unblocks the ones it needs. */
static int spawn_threads(struct squib_kvm_vm *vm, struct squib_error_detail *d)
{
	sigset_t all, old;
	int err = 0;

	sigfillset(&all);
	pthread_sigmask(SIG_SETMASK, &all, &old);
	for (uint32_t i = 0; !err && i < vm->cfg.vcpu_count; i++) {
		struct kvm_vcpu *c = &vm->vcpus[i];

		err = pthread_create(&c->thread, NULL, vcpu_thread, c);
		/* Under the lock: squib_kvm_vm_fail may kick from another thread. */
		kvm_lock(&vm->lock);
		c->thread_started = !err;
		kvm_unlock(&vm->lock);
	}
	pthread_sigmask(SIG_SETMASK, &old, NULL);
	if (err) {
		stop_threads(vm);
		vm->stop_req = false;
		return squib_fail_errno(d, SQUIB_E_IO, err);
	}
	return 0;
}

int squib_kvm_vm_start(struct squib_kvm_vm *vm, struct squib_error_detail *d)
{
	int rc;

	if (!vm)
		return squib_fail_msg(d, SQUIB_E_INVALID_ARGUMENT, "NULL VM");
	kvm_lock(&vm->ctl);
	rc = squib_kvm_vm_error(vm, d);
	if (!rc && vm->started)
		rc = squib_fail_msg(d, SQUIB_E_INVALID_ARGUMENT, "VM already started");
	if (!rc)
		rc = kvm_vm_realize(vm, d);
	if (!rc)
		rc = kvm_apply_restored_clock(vm, d); /* last, so the guest's time starts with it */
	if (!rc && !(rc = spawn_threads(vm, d))) {
		kvm_lock(&vm->lock);
		vm->started = true;
		kvm_unlock(&vm->lock);
	}
	kvm_unlock(&vm->ctl);
	return rc;
}

/* Under vm->lock: the first vCPU that has not acknowledged. */
static uint32_t first_unacked(const struct squib_kvm_vm *vm)
{
	uint32_t i = 0;

	while (i < vm->cfg.vcpu_count && vm->vcpus[i].acked)
		i++;
	return i;
}

/* Under vm->lock: the failure recorded by squib_kvm_vm_fail into d, or 0. */
static int failure(const struct squib_kvm_vm *vm, struct squib_error_detail *d)
{
	if (!vm->fail_code)
		return 0;
	if (d)
		*d = *vm->fail_detail;
	return vm->fail_code;
}

static int wait_for_acks(struct squib_kvm_vm *vm, struct squib_error_detail *d)
{
	struct timespec deadline = kvm_deadline_after_ms(vm->cfg.pause_timeout_ms);
	int err = 0;

	while (!vm->fail_code && vm->acked < vm->cfg.vcpu_count && err != ETIMEDOUT)
		err = pthread_cond_timedwait(&vm->cond, &vm->lock, &deadline);
	if (vm->fail_code)
		return failure(vm, d);
	if (vm->acked == vm->cfg.vcpu_count)
		return 0;
	return squib_fail_msg(d, SQUIB_E_QUIESCE_TIMEOUT, "vCPU %u did not ack within %u ms",
			      first_unacked(vm), vm->cfg.pause_timeout_ms);
}

int squib_kvm_vm_pause(struct squib_kvm_vm *vm, struct squib_error_detail *d)
{
	int rc;

	if (!vm)
		return squib_fail_msg(d, SQUIB_E_INVALID_ARGUMENT, "NULL VM");
	kvm_lock(&vm->ctl);
	if (!vm->started) {
		kvm_unlock(&vm->ctl);
		return squib_fail_msg(d, SQUIB_E_INVALID_ARGUMENT, "pause before start");
	}
	kvm_lock(&vm->lock);
	if (!vm->pause_req) {
		vm->pause_req = true;
		kick_all(vm);
	}
	rc = wait_for_acks(vm, d);
	kvm_unlock(&vm->lock);
	kvm_unlock(&vm->ctl);
	return rc;
}

int squib_kvm_vm_resume(struct squib_kvm_vm *vm, struct squib_error_detail *d)
{
	int rc;

	if (!vm)
		return squib_fail_msg(d, SQUIB_E_INVALID_ARGUMENT, "NULL VM");
	kvm_lock(&vm->ctl);
	kvm_lock(&vm->lock);
	vm->pause_req = false;
	pthread_cond_broadcast(&vm->cond);
	rc = failure(vm, d);
	kvm_unlock(&vm->lock);
	kvm_unlock(&vm->ctl);
	return rc;
}

void kvm_pause_request(struct squib_kvm_vm *vm, bool on)
{
	kvm_lock(&vm->ctl);
	kvm_lock(&vm->lock);
	if (on && !vm->pause_req && vm->started) {
		vm->pause_req = true;
		kick_all(vm);
	} else if (!on && vm->pause_req) {
		vm->pause_req = false;
		pthread_cond_broadcast(&vm->cond);
	}
	kvm_unlock(&vm->lock);
	kvm_unlock(&vm->ctl);
}

int kvm_pause_wait_vcpu(struct squib_kvm_vm *vm, uint32_t i, const struct timespec *deadline)
{
	int err = 0;

	kvm_lock(&vm->lock);
	while (!vm->fail_code && vm->started && !vm->vcpus[i].acked && err != ETIMEDOUT)
		err = pthread_cond_timedwait(&vm->cond, &vm->lock, deadline);
	if (vm->fail_code)
		err = ECANCELED;
	else
		err = !vm->started || vm->vcpus[i].acked ? 0 : ETIMEDOUT;
	kvm_unlock(&vm->lock);
	return err;
}

bool kvm_vm_started(struct squib_kvm_vm *vm)
{
	bool started;

	kvm_lock(&vm->lock);
	started = vm->started;
	kvm_unlock(&vm->lock);
	return started;
}

static bool all_paused(struct squib_kvm_vm *vm)
{
	return !vm->fail_code && vm->pause_req && vm->acked == vm->cfg.vcpu_count;
}

bool squib_kvm_vm_is_paused(struct squib_kvm_vm *vm)
{
	bool paused;

	if (!vm)
		return false;
	kvm_lock(&vm->lock);
	paused = vm->started && all_paused(vm);
	kvm_unlock(&vm->lock);
	return paused;
}

bool kvm_vcpus_quiet(struct squib_kvm_vm *vm)
{
	bool quiet;

	kvm_lock(&vm->lock);
	/* A failed VM whose vCPUs are all out may be captured: post-mortem only. */
	quiet =
	    !vm->started || all_paused(vm) || (vm->fail_code && vm->acked == vm->cfg.vcpu_count);
	kvm_unlock(&vm->lock);
	return quiet;
}

static enum squib_kvm_vcpu_run_state run_state(const struct squib_kvm_vm *vm,
					       const struct kvm_vcpu *c)
{
	if (!vm->started)
		return SQUIB_KVM_VCPU_IDLE;
	if (c->parked != SQUIB_KVM_VCPU_RUNNING)
		return c->parked;
	if (vm->fail_code && c->acked)
		return SQUIB_KVM_VCPU_FAILED;
	return c->acked ? SQUIB_KVM_VCPU_PAUSED : SQUIB_KVM_VCPU_RUNNING;
}

int squib_kvm_vm_vcpu_status(struct squib_kvm_vm *vm, uint32_t vcpu,
			     struct squib_kvm_vcpu_status *st)
{
	const struct kvm_vcpu *c;

	if (!vm || !st || vcpu >= vm->cfg.vcpu_count)
		return SQUIB_E_INVALID_ARGUMENT;
	c = &vm->vcpus[vcpu];
	kvm_lock(&vm->lock);
	st->state = run_state(vm, c);
	st->exit_reason = c->exit_reason;
	st->error = c->error ? c->error : (st->state == SQUIB_KVM_VCPU_FAILED ? vm->fail_code : 0);
	st->exits = c->exits;
	st->io_exits = c->io_exits;
	kvm_unlock(&vm->lock);
	return 0;
}

/* ---- failing the VM for good ------------------------------------------------------ */

/*
 * Revoke the guest's access to its RAM: a vCPU blocked in the kernel on a
 * page nobody serves (kvm_pvm emulates the access and waits in
 * handle_userfault, deaf to the kick) fails its access once the memory's
 * owner wakes it, instead of reading a zero page the owner never served.
 */
static int revoke_ram(struct squib_kvm_vm *vm, struct squib_error_detail *d)
{
	int rc = 0;

	for (uint32_t i = 0; i < vm->slot_count; i++)
		if (mprotect(vm->slots[i].hva, vm->slots[i].size, PROT_NONE) && !rc)
			rc = squib_fail_errno(d, SQUIB_E_IO, errno);
	return rc;
}

int squib_kvm_vm_fail(struct squib_kvm_vm *vm, int code, const struct squib_error_detail *why,
		      struct squib_error_detail *d)
{
	struct squib_error_detail *copy;
	bool first;

	if (!vm || code >= 0)
		return squib_fail_msg(d, SQUIB_E_INVALID_ARGUMENT, "fail needs a VM and an error");
	if (!(copy = calloc(1, sizeof(*copy))))
		return squib_fail(d, SQUIB_E_NOMEM);
	if (why)
		*copy = *why;
	copy->code = code;
	kvm_lock(&vm->lock);
	first = !vm->fail_code;
	if (first) {
		vm->fail_code = code;
		vm->fail_detail = copy;
		copy = NULL;
		kick_all(vm);
	}
	kvm_unlock(&vm->lock);
	free(copy);
	return first ? revoke_ram(vm, d) : 0;
}

int squib_kvm_vm_error(struct squib_kvm_vm *vm, struct squib_error_detail *d)
{
	int rc;

	if (!vm)
		return squib_fail_msg(d, SQUIB_E_INVALID_ARGUMENT, "NULL VM");
	kvm_lock(&vm->lock);
	rc = failure(vm, d);
	kvm_unlock(&vm->lock);
	return rc;
}

int squib_kvm_vm_wait_stopped(struct squib_kvm_vm *vm, uint32_t timeout_ms,
			      struct squib_error_detail *d)
{
	struct timespec deadline = kvm_deadline_after_ms(timeout_ms);
	int err = 0;

	if (!vm)
		return squib_fail_msg(d, SQUIB_E_INVALID_ARGUMENT, "NULL VM");
	kvm_lock(&vm->lock);
	if (!vm->fail_code) {
		kvm_unlock(&vm->lock);
		return squib_fail_msg(d, SQUIB_E_INVALID_ARGUMENT, "wait_stopped before fail");
	}
	while (vm->started && vm->acked < vm->cfg.vcpu_count && err != ETIMEDOUT)
		err = pthread_cond_timedwait(&vm->cond, &vm->lock, &deadline);
	err = !vm->started || vm->acked == vm->cfg.vcpu_count
		  ? 0
		  : squib_fail_msg(d, SQUIB_E_QUIESCE_TIMEOUT,
				   "vCPU %u still in KVM_RUN %u ms after the VM failed",
				   first_unacked(vm), timeout_ms);
	kvm_unlock(&vm->lock);
	return err;
}
