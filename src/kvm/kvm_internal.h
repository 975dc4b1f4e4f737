/* SPDX-License-Identifier: Apache-2.0 */
/* Shared by the files of src/kvm/ (not installed): the VM object and helpers. */
#ifndef SQUIB_KVM_INTERNAL_H
#define SQUIB_KVM_INTERNAL_H

#include <linux/kvm.h>
#include <pthread.h>
#include <stdbool.h>
#include <stdint.h>
#include <time.h>

#include <squib/kvm.h>

#define KVM_DEVICE_ID_MAX 32

struct kvm_slot {
	uint32_t id;
	uint64_t gpa;
	uint64_t size;
	void *hva;
	bool owned;	/* mapped by the VM, unmapped at free */
	uint32_t flags; /* KVM_MEM_* currently set */
};

struct kvm_device {
	char id[KVM_DEVICE_ID_MAX];
	uint16_t port;
	uint16_t count;
	const struct squib_kvm_device_ops *ops;
	void *ctx;
};

struct kvm_vcpu {
	struct squib_kvm_vm *vm;
	uint32_t index;
	int fd;
	struct kvm_run *run;
	uint32_t cpuid_nent; /* entries of the last KVM_SET_CPUID2 (control thread) */
	pthread_t thread;
	bool thread_started;
	bool pending_io; /* vCPU thread only: the last exit needs KVM_RUN to complete */
	/* Under vm->lock. */
	bool acked;			      /* counted in vm->acked */
	enum squib_kvm_vcpu_run_state parked; /* HALTED or FAILED; RUNNING when not parked */
	uint32_t exit_reason;
	int error;
	uint64_t exits;
	uint64_t io_exits;
};

struct squib_kvm_vm {
	struct squib_kvm_config cfg;
	int kvm_fd;
	int vm_fd;
	size_t run_size;
	uint32_t xsave_size;	 /* KVM's XSAVE buffer size; 0 without KVM_CAP_XSAVE */
	uint64_t manual_protect; /* KVM_DIRTY_LOG_* flags enabled; 0 = classic dirty log */
	pthread_mutex_t ctl;	 /* serialises the control calls */
	pthread_mutex_t lock;	 /* run control: the flags below and each vCPU's */
	pthread_cond_t cond;	 /* CLOCK_MONOTONIC */
	bool irqchip_created;	 /* kvm_vm_realize's two steps, each done once */
	bool vcpus_created;
	bool started;
	bool pause_req;
	bool stop_req;
	int fail_code;				/* squib_kvm_vm_fail: the VM's error, for good */
	struct squib_error_detail *fail_detail; /* its detail (heap: the struct is large) */
	uint32_t acked;
	uint32_t slot_count;
	struct kvm_slot slots[SQUIB_KVM_MAX_SLOTS];		/* gpa order */
	struct squib_guest_region regions[SQUIB_KVM_MAX_SLOTS]; /* the same, as a map */
	uint32_t device_count;
	struct kvm_device devices[SQUIB_KVM_MAX_DEVICES];
	struct kvm_vcpu vcpus[SQUIB_KVM_MAX_VCPUS];
	uint32_t msr_count; /* readable MSRs, found at the first capture */
	uint32_t *msrs;
	/* A restored clock and TSCs, set when the vCPUs start (kvm_apply_restored_clock). */
	bool clock_pending;
	uint64_t clock_saved;
	bool tsc_pending[SQUIB_KVM_MAX_VCPUS];
	uint64_t tsc_saved[SQUIB_KVM_MAX_VCPUS];
	uint32_t tsc_khz[SQUIB_KVM_MAX_VCPUS];	      /* 0: the vCPU's own rate */
	uint64_t deadline_saved[SQUIB_KVM_MAX_VCPUS]; /* IA32_TSC_DEADLINE, set after the TSC */
};

/*
 * Create the in-kernel irqchip + PIT (if configured) and the vCPUs, once;
 * vm->ctl held. Deferred from squib_kvm_vm_new to the first call that needs
 * them (boot, start, capture, restore) so that RAM registered before that
 * costs a plain memslot: with an irqchip present, each
 * KVM_SET_USER_MEMORY_REGION here took ~6 ms for 1 GiB instead of ~0.3 ms.
 */
int kvm_vm_realize(struct squib_kvm_vm *vm, struct squib_error_detail *d);

/* SQUIB_E_CAPTURE "NAME: strerror(errno)"; reads errno, so call it first. */
int kvm_fail_ioctl(struct squib_error_detail *d, const char *name);

/* ioctl that retries on EINTR (not for KVM_RUN). */
int kvm_ioctl(int fd, unsigned long req, void *arg);

/* Zeroed struct kvm_cpuid2 / kvm_msrs with room for n entries (their
 * flexible arrays; no struct with one embedded, which clang refuses);
 * nent / nmsrs set to n. NULL when out of memory. */
struct kvm_cpuid2 *kvm_cpuid_alloc(uint32_t n);
struct kvm_msrs *kvm_msrs_alloc(uint32_t n);

/* CLOCK_MONOTONIC now + ms, for pthread_cond_timedwait on our condvars. */
struct timespec kvm_deadline_after_ms(uint32_t ms);

/* vcpu.c */
int kvm_vcpus_create(struct squib_kvm_vm *vm, struct squib_error_detail *d);
void kvm_vcpus_destroy(struct squib_kvm_vm *vm);
/* Paused, or not started: vCPU ioctls may run from the control thread. */
bool kvm_vcpus_quiet(struct squib_kvm_vm *vm);

/*
 * The per-vCPU view of the VM-wide pause, for the squib/vm.h adapter:
 * kvm_pause_request sets (on) or withdraws (off) the pause request without
 * waiting, kicking every vCPU; kvm_pause_wait_vcpu waits until vCPU i has
 * acknowledged or the absolute CLOCK_MONOTONIC deadline passes (ETIMEDOUT);
 * ECANCELED once the VM failed (squib_kvm_vm_fail: nothing is paused).
 * A VM that was never started counts as paused. kvm_vm_started says whether
 * squib_kvm_vm_start ran.
 */
void kvm_pause_request(struct squib_kvm_vm *vm, bool on);
int kvm_pause_wait_vcpu(struct squib_kvm_vm *vm, uint32_t i, const struct timespec *deadline);
bool kvm_vm_started(struct squib_kvm_vm *vm);

/* x86_state.c: squib_kvm_vm_restore in the three steps of squib/vm.h (each
 * checks that the state fits and the VM was never started). */
int kvm_restore_vm_step(struct squib_kvm_vm *vm, const struct squib_microvm_state *s,
			struct squib_error_detail *d);
int kvm_restore_vcpus_step(struct squib_kvm_vm *vm, const struct squib_microvm_state *s,
			   struct squib_error_detail *d);
int kvm_restore_devices_step(struct squib_kvm_vm *vm, const struct squib_microvm_state *s,
			     struct squib_error_detail *d);

/*
 * Set the clock and the TSCs a restore left pending (vm->ctl held; a no-op
 * when none is): squib_kvm_vm_start calls it right before the vCPU threads
 * start, capture before it reads a VM that was restored but never ran.
 */
int kvm_apply_restored_clock(struct squib_kvm_vm *vm, struct squib_error_detail *d);

/* devices.c */
/* Serve one KVM_EXIT_IO; 0 or the device's error. */
int kvm_dispatch_io(struct squib_kvm_vm *vm, struct kvm_vcpu *c);
void kvm_devices_free(struct squib_kvm_vm *vm);
int kvm_devices_save(struct squib_kvm_vm *vm, struct squib_microvm_state *s,
		     struct squib_error_detail *d);
int kvm_devices_restore(struct squib_kvm_vm *vm, const struct squib_microvm_state *s,
			struct squib_error_detail *d);

/* vm.c: set a slot's KVM_MEM_* flags (the tracker's dirty logging). */
int kvm_slot_set_flags(struct squib_kvm_vm *vm, uint32_t slot_index, uint32_t flags,
		       struct squib_error_detail *d);

/* Lock helpers: the pthread calls cannot fail on a valid, owned mutex. */
static inline void kvm_lock(pthread_mutex_t *m)
{
	pthread_mutex_lock(m);
}

static inline void kvm_unlock(pthread_mutex_t *m)
{
	pthread_mutex_unlock(m);
}

#endif /* SQUIB_KVM_INTERNAL_H */
