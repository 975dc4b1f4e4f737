/* SPDX-License-Identifier: Apache-2.0 */
/*
 * squib/vm.h - the VM as the save and load orchestrators see it.
 *
 * A VMM (the KVM runner, a test VM) plugs into squib_save() and squib_load()
 * by filling a squib_vm_ops table and passing it with its context in a
 * struct squib_vm. The orchestrators never touch vCPU threads, KVM file
 * descriptors or device models themselves; they drive these ops in a fixed
 * order and keep the protocol logic (quiesce with rollback, restore order)
 * here, in one place, for every backend.
 *
 * The ops:
 *
 *   arch               the architecture of the VM (its state files carry that magic)
 *   vcpu_count         how many vCPUs pause/resume address (may be 0)
 *   pause_begin(i)     ask vCPU i to stop; must not block (kick its thread and return)
 *   pause_wait(i, dl)  wait until vCPU i has acknowledged the pause, or until the
 *                      absolute CLOCK_MONOTONIC deadline dl: 0, or
 *                      SQUIB_E_QUIESCE_TIMEOUT when dl passes first
 *   resume(i)          let vCPU i run again: resume it if it paused, or withdraw a
 *                      pause request it has not acknowledged yet (a vCPU that never
 *                      acked); must accept a vCPU in either state
 *   capture(s)         fill *s (initialised by the caller for arch()) with the VM's
 *                      state: vm_info, vCPUs, the interrupt controller, devices, MMDS.
 *                      Coarse on purpose: each architecture captures in its own order.
 *                      Called with every vCPU paused. Must not set s->memory.
 *   restore_irqchip(s) the interrupt controller and other VM-wide state (arm64: GIC;
 *                      x86: PIC/IOAPIC/PIT/clock); called before any vCPU is restored
 *   restore_vcpus(s)   every vCPU's registers (x86: LAPIC included)
 *   restore_devices(s) device models and MMDS
 *   get_memory         the VM's guest RAM: regions in ascending guest order, each with
 *                      the host address it is mapped at in this process. The array is
 *                      the VM's and stays valid until the next set_memory.
 *   set_memory         use these host ranges as guest RAM (KVM: the memslots). The
 *                      memory stays the caller's (a squib_guest_memory from
 *                      squib_load); it outlives the VM's use of it.
 *   trackers           the dirty-page trackers whose union a Diff snapshot writes, or
 *                      NULL when the VM tracks nothing (optional op)
 *
 * All ops but trackers are required. vCPU indices run 0..vcpu_count-1.
 *
 * Errors: an op returns 0, a negative SQUIB_E_* (capture/restore failures as
 * SQUIB_E_CAPTURE with a message), or -errno, which the library reports as
 * SQUIB_E_IO with that errno (the backend rule of squib/error.h, applied by
 * squib_backend_rc; any other value is reported as SQUIB_E_CAPTURE). The
 * helpers below return only SQUIB_E_* codes; ops missing from the table are
 * SQUIB_E_INVALID_ARGUMENT.
 *
 * Thread-safety: the helpers below run the ops on the calling thread and
 * keep no state of their own. One orchestrator at a time may drive a VM (a
 * save and a load of the same VM must not overlap); ops implementations may
 * be called from any thread, but not concurrently with each other.
 */
#ifndef SQUIB_VM_H
#define SQUIB_VM_H

#include <squib/api.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <time.h>

#include <squib/error.h>
#include <squib/state.h>
#include <squib/track.h>

#ifdef __cplusplus
extern "C" {
#endif

/* How long squib_save waits for every vCPU to acknowledge a pause (upstream: 1 s). */
#define SQUIB_QUIESCE_TIMEOUT_MS 1000u

/* Most guest RAM regions a VM may have (the memory file's limit). */
#define SQUIB_VM_MAX_REGIONS SQUIB_MEMORY_MAX_REGIONS

/* One guest RAM region and where this process maps it. */
struct squib_vm_region {
	uint64_t guest_addr;
	uint64_t size;
	void *host;
};

struct squib_vm_ops {
	const char *name;
	enum squib_arch (*arch)(void *ctx);
	uint32_t (*vcpu_count)(void *ctx);
	int (*pause_begin)(void *ctx, uint32_t vcpu, struct squib_error_detail *d);
	int (*pause_wait)(void *ctx, uint32_t vcpu, const struct timespec *deadline,
			  struct squib_error_detail *d);
	int (*resume)(void *ctx, uint32_t vcpu, struct squib_error_detail *d);
	int (*capture)(void *ctx, struct squib_microvm_state *s, struct squib_error_detail *d);
	int (*restore_irqchip)(void *ctx, const struct squib_microvm_state *s,
			       struct squib_error_detail *d);
	int (*restore_vcpus)(void *ctx, const struct squib_microvm_state *s,
			     struct squib_error_detail *d);
	int (*restore_devices)(void *ctx, const struct squib_microvm_state *s,
			       struct squib_error_detail *d);
	int (*get_memory)(void *ctx, const struct squib_vm_region **regions, uint32_t *count,
			  struct squib_error_detail *d);
	int (*set_memory)(void *ctx, const struct squib_vm_region *regions, uint32_t count,
			  struct squib_error_detail *d);
	struct squib_tracker_set *(*trackers)(void *ctx);
};

/* A VM: its ops and their context (both the VMM's). */
struct squib_vm {
	const struct squib_vm_ops *ops;
	void *ctx;
};

/* SQUIB_E_INVALID_ARGUMENT naming the first required op that is missing. */
SQUIB_API int squib_vm_check(const struct squib_vm *vm, struct squib_error_detail *d);

/* The VM's architecture; SQUIB_ARCH_ANY for an invalid vm. */
SQUIB_API enum squib_arch squib_vm_arch(const struct squib_vm *vm);

/*
 * Quiesce: ask every vCPU to pause, then wait for every acknowledgement
 * against one deadline timeout_ms from now (0: SQUIB_QUIESCE_TIMEOUT_MS).
 * All or nothing: when a vCPU does not acknowledge in time (or an op fails),
 * every vCPU is resumed, those that paused and those still asked to, and
 * the call returns SQUIB_E_QUIESCE_TIMEOUT (or the op's error) with a
 * message naming the vCPU.
 */
SQUIB_API int squib_vm_pause(const struct squib_vm *vm, uint32_t timeout_ms,
			     struct squib_error_detail *d);

/* Resume every vCPU; all are tried, the first error is returned. */
SQUIB_API int squib_vm_resume(const struct squib_vm *vm, struct squib_error_detail *d);

/* capture into *s, which this initialises for the VM's arch (free it with
 * squib_state_free, also on failure). */
SQUIB_API int squib_vm_capture(const struct squib_vm *vm, struct squib_microvm_state *s,
			       struct squib_error_detail *d);

/* Restore in the order the hardware needs: interrupt controller, then vCPUs,
 * then devices; stops at the first failure. vCPUs must be paused. */
SQUIB_API int squib_vm_restore(const struct squib_vm *vm, const struct squib_microvm_state *s,
			       struct squib_error_detail *d);

/* get_memory, with the regions checked: 1..SQUIB_VM_MAX_REGIONS, non-empty,
 * host non-NULL, ascending and disjoint in guest space. */
SQUIB_API int squib_vm_get_memory(const struct squib_vm *vm, const struct squib_vm_region **regions,
				  uint32_t *count, struct squib_error_detail *d);

SQUIB_API int squib_vm_set_memory(const struct squib_vm *vm, const struct squib_vm_region *regions,
				  uint32_t count, struct squib_error_detail *d);

/* The VM's tracker set, or NULL when it has none or no tracker in it is active. */
SQUIB_API struct squib_tracker_set *squib_vm_trackers(const struct squib_vm *vm);

#ifdef __cplusplus
}
#endif
#endif /* SQUIB_VM_H */
