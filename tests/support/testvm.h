/* SPDX-License-Identifier: Apache-2.0 */
/*
 * A test VM for the save/load orchestrators: guest RAM is plain anonymous
 * memory, each vCPU a thread that acknowledges pause and resume requests
 * (one can be made to never acknowledge a pause), capture returns a
 * configurable state, restore records what it was given and in what order.
 * Dirty tracking is a VMM-marks tracker fed by squib_testvm_write().
 *
 * No function here uses cmocka, so a forked child may use the VM too (the
 * crash matrix): failures are returned, never asserted.
 *
 * Thread-safety: the test thread drives the VM; the vCPU threads only talk to
 * it through each vCPU's mutex.
 */
#ifndef SQUIB_TESTVM_H
#define SQUIB_TESTVM_H

#include <stdbool.h>
#include <stdint.h>

#include <squib/state.h>
#include <squib/track.h>
#include <squib/vm.h>

#define SQUIB_TESTVM_MAX_VCPUS	 8u
#define SQUIB_TESTVM_MAX_REGIONS 4u
#define SQUIB_TESTVM_LOG_MAX	 256u

/* The host_dev_name blob of the template's virtio-net device (upstream I-NET-3). */
#define SQUIB_TESTVM_HOST_DEV_NAME "vmnet-shared-en0-1234"

struct squib_testvm_config {
	enum squib_arch arch; /* SQUIB_ARCH_ANY means aarch64 */
	uint32_t vcpu_count;  /* aarch64: 1..MAX_VCPUS (x86_64: threads only, no vCPU state) */
	uint32_t region_count;
	struct squib_mem_region regions[SQUIB_TESTVM_MAX_REGIONS];
	bool track_dirty_pages; /* vm_info.track_dirty_pages in the captured state */
	bool with_tracker;	/* a started VMM-marks tracker over the regions */
	int stuck_vcpu;		/* index of a vCPU that never acks a pause; -1: none */
	bool no_memory;		/* a restore target: RAM arrives through set_memory */
};

/* A config with one region [gpa, gpa + size), n vCPUs, no stuck vCPU. */
struct squib_testvm_config squib_testvm_config_simple(uint64_t gpa, uint64_t size, uint32_t n);

struct squib_testvm;

/* 0 or a negative SQUIB_E_*. */
int squib_testvm_new(const struct squib_testvm_config *cfg, struct squib_testvm **out);
void squib_testvm_free(struct squib_testvm *vm);

/* The ops table and context to hand to squib_save/squib_load. */
struct squib_vm squib_testvm_vm(struct squib_testvm *vm);

/* The state capture returns a copy of: built from the config, edit at will. */
struct squib_microvm_state *squib_testvm_template(struct squib_testvm *vm);

/* Host address of guest address gpa (NULL outside the RAM). */
uint8_t *squib_testvm_host(struct squib_testvm *vm, uint64_t gpa);

/* memset guest [gpa, gpa + len) to byte and report the write to the tracker. */
int squib_testvm_write(struct squib_testvm *vm, uint64_t gpa, int byte, uint64_t len);

/* Deterministic non-zero bytes derived from seed in every host page whose
 * index (counted over all regions) is a multiple of stride (1: every page);
 * the other pages are left alone. Reported to the tracker. */
void squib_testvm_fill(struct squib_testvm *vm, uint32_t seed, uint64_t stride);

/* The tracker set (NULL without a tracker). */
struct squib_tracker_set *squib_testvm_trackers(struct squib_testvm *vm);

/* vCPU i: paused now; pauses/resumes acknowledged so far; a pause pending. */
bool squib_testvm_vcpu_paused(struct squib_testvm *vm, uint32_t i);
bool squib_testvm_vcpu_pause_pending(struct squib_testvm *vm, uint32_t i);
uint32_t squib_testvm_vcpu_pauses(struct squib_testvm *vm, uint32_t i);
uint32_t squib_testvm_vcpu_resumes(struct squib_testvm *vm, uint32_t i);

/* Comma-separated ops so far: capture, set_memory, irqchip, vcpus, devices. */
const char *squib_testvm_log(struct squib_testvm *vm);

/* The state the last restore_irqchip was given (a copy), or NULL. */
const struct squib_microvm_state *squib_testvm_restored(struct squib_testvm *vm);

/* Make the named op ("capture", "irqchip", "vcpus", "devices", "set_memory")
 * fail with SQUIB_E_CAPTURE; NULL: none. */
void squib_testvm_fail_op(struct squib_testvm *vm, const char *op);
/* The same, returning rc (e.g. a -errno) without touching the detail. */
void squib_testvm_fail_op_rc(struct squib_testvm *vm, const char *op, int rc);

/* Total guest RAM in bytes; region i as the VM sees it now. */
uint64_t squib_testvm_ram_size(struct squib_testvm *vm);
const struct squib_vm_region *squib_testvm_region(struct squib_testvm *vm, uint32_t i);

#endif
