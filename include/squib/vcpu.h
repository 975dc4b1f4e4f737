/* SPDX-License-Identifier: Apache-2.0 */
/*
 * squib/vcpu.h - vCPU, GIC, MMDS and device capture/restore through backends.
 *
 * The C form of upstream vcpu_save.rs. The library never touches a hypervisor
 * here: each piece of live state is reached through an ops table (function
 * pointers) plus the backend's `void *ctx`, the C form of upstream's traits.
 * A KVM or HVF backend implements the ops; tests stand in mocks.
 *
 *   squib_arm64_vcpu_source / _target   one vCPU: GP, FP/SIMD, sysregs, PSCI
 *   squib_gic_source / _target          the interrupt controller as one opaque blob
 *   squib_mmds_source / _target         the metadata service store (optional)
 *   squib_device_source / _target       one device blob, keyed by (kind, id, slot)
 *
 * The core functions mirror upstream one to one:
 *
 *   squib_capture_arm64_vcpu_state   read GP, then FP/SIMD, then every register of
 *                                    the sysreg table in canonical (ascending key)
 *                                    order, keeping the readable ones; then mpidr
 *                                    and the PSCI state
 *   squib_restore_arm64_vcpu_state   write GP, FP/SIMD, the sysregs in ascending key
 *                                    order, then the PSCI state (policy below)
 *   squib_normalized_psci_state      On for vCPU 0, Off for every other vCPU
 *
 * and the squib_capture_* / squib_restore_* helpers move a whole
 * squib_microvm_state's vCPUs, GIC, MMDS and devices.
 *
 * PSCI policy on restore (upstream §17 item 9). Upstream always restores vCPU 0
 * On and every secondary Off, expecting the guest to CPU_ON its secondaries
 * again. A running Linux guest believes its secondaries are online and never
 * does, so that loses them. Two policies are offered:
 *
 *   SQUIB_PSCI_RESTORE_NORMALIZE   upstream's rule; the default (value 0). Only for
 *                                  a userspace-PSCI backend whose boot orchestrator
 *                                  re-creates the secondaries itself (the HVF model
 *                                  upstream was written for).
 *   SQUIB_PSCI_RESTORE_AS_SAVED    the saved state as is. Use it whenever PSCI lives
 *                                  in the kernel (KVM: On/OnPending as
 *                                  KVM_MP_STATE_RUNNABLE, Off as KVM_MP_STATE_STOPPED
 *                                  via KVM_SET_MP_STATE) and for any userspace-PSCI
 *                                  backend that resumes a live guest. The saved
 *                                  state is always kept in the file either way.
 *
 * Ordering. The GIC must be restored before any vCPU runs (upstream: calling it
 * later is Incompatible). A struct squib_restore_session records it: the
 * orchestrator calls squib_restore_session_mark_vcpu_started() before it lets
 * a vCPU run, and every GIC (or vCPU batch) restore through the session after
 * that fails with SQUIB_E_INCOMPATIBLE without calling the backend.
 *
 * Ops contract. Every op returns 0 or a negative SQUIB_E_*; a backend failure
 * is SQUIB_E_CAPTURE with a message (squib_fail_msg). The library clears
 * d->code before each op; if the op fails without filling `d`, the library
 * fills a message naming the backend and the op. A return that is positive or
 * not a SQUIB_E_* code (e.g. a raw -errno) becomes SQUIB_E_CAPTURE. An op
 * that hands back a buffer (GIC and device blobs, the MMDS JSON) allocates
 * it with malloc(); whatever it leaves there becomes the library's, which
 * frees it with free() on success and on failure alike. A NULL handle, ops
 * table or op is SQUIB_E_INVALID_ARGUMENT; no input makes these functions
 * crash.
 *
 * Errors: SQUIB_E_INVALID_ARGUMENT (misuse, with a message), SQUIB_E_NOMEM,
 * SQUIB_E_INCOMPATIBLE (a saved sysreg key this build does not know, a GIC
 * restore after a vCPU started, a state whose vCPUs or devices do not match
 * the targets), SQUIB_E_CAPTURE or whatever SQUIB_E_* a backend returned.
 *
 * Thread-safety: no global state; every function is reentrant. A call uses a
 * backend's ctx only on the calling thread and only during the call; a backend
 * whose vCPU may be touched only from its own thread (HVF affinity) runs the
 * call there or forwards inside its ops. A squib_restore_session is not
 * synchronised: its calls must be serialised by the caller (the orchestrator
 * marks each vCPU started itself, before letting its thread enter the run loop).
 */
#ifndef SQUIB_VCPU_H
#define SQUIB_VCPU_H

#include <squib/api.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include <squib/error.h>
#include <squib/state.h>
#include <squib/sysreg.h>

#ifdef __cplusplus
extern "C" {
#endif

/*
 * Every op of the sources and targets below returns 0, a negative SQUIB_E_*
 * (filling d, or leaving it to the library, which names the backend and the
 * op), or -errno, reported as SQUIB_E_IO with that errno: the backend rule of
 * squib/error.h (squib_backend_rc). Any other value is SQUIB_E_CAPTURE.
 */

/* ==== arm64 vCPU ========================================================== */

/*
 * Where one vCPU's state is read at snapshot time (upstream VcpuSnapshotSource).
 *
 *   mpidr         MPIDR_EL1 affinity bits (matches the FDT cpu node)
 *   read_gp_regs  X0..X30, SP_EL1, PC, PSTATE
 *   read_fp_regs  V0..V31, FPSR, FPCR
 *   read_sysreg   one register of the table. Set *readable = true with *value when
 *                 it was read; leave *readable false (the library presets it) when
 *                 the backend cannot read this register at all (HVF hides the PMU,
 *                 OSLAR, OSDLR, CNTFRQ): the register is then left out of the
 *                 state and a restore keeps the reset default. A failed read is
 *                 an error, not "unreadable".
 *   psci_state    the vCPU's PSCI power state at save time
 *
 * Upstream's mpidr and psci_state cannot fail; here they may (KVM_GET_ONE_REG,
 * KVM_GET_MP_STATE are ioctls).
 */
struct squib_arm64_vcpu_source_ops {
	const char *name; /* for messages; may be NULL */
	int (*mpidr)(void *ctx, uint64_t *mpidr, struct squib_error_detail *d);
	int (*read_gp_regs)(void *ctx, struct squib_arm64_gp_regs *regs,
			    struct squib_error_detail *d);
	int (*read_fp_regs)(void *ctx, struct squib_arm64_fp_regs *regs,
			    struct squib_error_detail *d);
	int (*read_sysreg)(void *ctx, const struct squib_sysreg_info *reg, uint64_t *value,
			   bool *readable, struct squib_error_detail *d);
	int (*psci_state)(void *ctx, enum squib_psci_state *state, struct squib_error_detail *d);
};

struct squib_arm64_vcpu_source {
	const struct squib_arm64_vcpu_source_ops *ops;
	void *ctx;
};

/*
 * Where one vCPU's state is written on restore (upstream VcpuRestoreTarget).
 * write_sysreg is called only for registers of the table (reg is never NULL);
 * a backend that cannot write a register it could not read either (HVF's PMU
 * group) may return 0 without writing.
 */
struct squib_arm64_vcpu_target_ops {
	const char *name;
	int (*write_gp_regs)(void *ctx, const struct squib_arm64_gp_regs *regs,
			     struct squib_error_detail *d);
	int (*write_fp_regs)(void *ctx, const struct squib_arm64_fp_regs *regs,
			     struct squib_error_detail *d);
	int (*write_sysreg)(void *ctx, const struct squib_sysreg_info *reg, uint64_t value,
			    struct squib_error_detail *d);
	int (*set_psci_state)(void *ctx, enum squib_psci_state state,
			      struct squib_error_detail *d);
};

struct squib_arm64_vcpu_target {
	const struct squib_arm64_vcpu_target_ops *ops;
	void *ctx;
};

enum squib_psci_restore {
	SQUIB_PSCI_RESTORE_NORMALIZE = 0, /* upstream: vCPU 0 On, others Off (HVF model) */
	SQUIB_PSCI_RESTORE_AS_SAVED = 1,  /* the saved state (KVM, in-kernel PSCI) */
};

/* Upstream normalized_psci_state: SQUIB_PSCI_ON for index 0, SQUIB_PSCI_OFF otherwise. */
SQUIB_API enum squib_psci_state squib_normalized_psci_state(uint32_t vcpu_index);

/* The state squib_restore_arm64_vcpu_state hands the target under `policy`.
 * SQUIB_E_INVALID_ARGUMENT for an unknown policy or saved state. */
SQUIB_API int squib_psci_restore_state(enum squib_psci_restore policy, uint32_t vcpu_index,
				       enum squib_psci_state saved, enum squib_psci_state *out);

/*
 * Capture one vCPU (upstream capture_vcpu_state) into *out, which is
 * overwritten (not freed first). Order: read_gp_regs, read_fp_regs,
 * read_sysreg for each table entry in canonical order, mpidr, psci_state.
 * On success *out owns its sysreg array (squib_arm64_vcpu_release); on
 * failure *out is zeroed and owns nothing.
 */
SQUIB_API int squib_capture_arm64_vcpu_state(const struct squib_arm64_vcpu_source *src,
					     struct squib_arm64_vcpu *out,
					     struct squib_error_detail *d);

/* Free a captured vCPU's sysreg array and zero it. NULL is a no-op. Not for
 * the vCPUs inside a squib_microvm_state (squib_state_free owns those). */
SQUIB_API void squib_arm64_vcpu_release(struct squib_arm64_vcpu *v);

/*
 * Restore one vCPU (upstream restore_vcpu_state): write_gp_regs,
 * write_fp_regs, write_sysreg per saved key in ascending order, then
 * set_psci_state with squib_psci_restore_state(policy, vcpu_index, ...).
 *
 * Checked before the first write (SQUIB_E_INVALID_ARGUMENT): the policy and
 * the saved PSCI state are known, the sysreg keys strictly ascending. A saved
 * key the table does not know returns SQUIB_E_INCOMPATIBLE when it is reached,
 * as upstream does: the registers written before it stay written and the PSCI
 * state is not set, so a failed restore must discard the vCPU.
 */
SQUIB_API int squib_restore_arm64_vcpu_state(const struct squib_arm64_vcpu_target *t,
					     const struct squib_arm64_vcpu *v, uint32_t vcpu_index,
					     enum squib_psci_restore policy,
					     struct squib_error_detail *d);

/* ==== GIC =================================================================== */

/* capture: the whole controller as one opaque, non-empty malloc()ed blob
 * (HVF hv_gic_state_get_data; a KVM backend serialises its vGIC registers). */
struct squib_gic_source_ops {
	const char *name;
	int (*capture)(void *ctx, uint8_t **blob, size_t *len, struct squib_error_detail *d);
};

struct squib_gic_source {
	const struct squib_gic_source_ops *ops;
	void *ctx;
};

/* restore: install a blob captured by the same kind of backend. */
struct squib_gic_target_ops {
	const char *name;
	int (*restore)(void *ctx, const uint8_t *blob, size_t len, struct squib_error_detail *d);
};

struct squib_gic_target {
	const struct squib_gic_target_ops *ops;
	void *ctx;
};

/* ==== the restore sequencer ================================================ */

/*
 * One restore of one VM. Initialise with squib_restore_session_init(); the
 * fields are for reading only.
 */
struct squib_restore_session {
	enum squib_psci_restore psci;	/* policy used by squib_restore_vcpus */
	bool gic_restored;		/* a GIC restore through this session succeeded */
	uint32_t vcpus_started;		/* squib_restore_session_mark_vcpu_started calls */
};

SQUIB_API void squib_restore_session_init(struct squib_restore_session *rs,
					  enum squib_psci_restore psci);

/* Record that a vCPU is about to run (call it before the first KVM_RUN /
 * hv_vcpu_run of each vCPU). SQUIB_E_INVALID_ARGUMENT for NULL. */
SQUIB_API int squib_restore_session_mark_vcpu_started(struct squib_restore_session *rs);

/*
 * Restore the GIC from a blob through the session. SQUIB_E_INCOMPATIBLE,
 * without calling the target, once a vCPU has been marked started or when the
 * blob is empty. Sets rs->gic_restored on success.
 */
SQUIB_API int squib_restore_gic_blob(struct squib_restore_session *rs,
				     const struct squib_gic_target *t, const void *blob, size_t len,
				     struct squib_error_detail *d);

/* ==== MMDS ================================================================== */

/*
 * capture: set *enabled = true and fill *out when MMDS is on: out->data_json a
 * malloc()ed compact JSON string (NULL means "null", the empty store), the
 * TTL fields as in struct squib_mmds_state. Leave *enabled false (preset) when
 * MMDS is off; the state then has no MMDS.
 */
struct squib_mmds_source_ops {
	const char *name;
	int (*capture)(void *ctx, bool *enabled, struct squib_mmds_state *out,
		       struct squib_error_detail *d);
};

struct squib_mmds_source {
	const struct squib_mmds_source_ops *ops;
	void *ctx;
};

/* restore: replace the live store with `m` (never NULL: a state without MMDS
 * does not call the target, see squib_restore_mmds). */
struct squib_mmds_target_ops {
	const char *name;
	int (*restore)(void *ctx, const struct squib_mmds_state *m, struct squib_error_detail *d);
};

struct squib_mmds_target {
	const struct squib_mmds_target_ops *ops;
	void *ctx;
};

/* ==== devices =============================================================== */

/*
 * One device. The handle carries its key: kind (e.g. "virtio-net"), id
 * (drive_id / iface_id) and MMIO slot; (slot, id) is unique within a VM.
 * capture: the device-defined blob, malloc()ed (an empty blob is *len 0).
 * restore: install a blob captured by the same kind of device.
 */
struct squib_device_source_ops {
	const char *name;
	int (*capture)(void *ctx, uint8_t **blob, size_t *len, struct squib_error_detail *d);
};

struct squib_device_source {
	const struct squib_device_source_ops *ops;
	void *ctx;
	const char *kind;
	const char *id;
	uint32_t mmio_slot;
};

struct squib_device_target_ops {
	const char *name;
	int (*restore)(void *ctx, const uint8_t *blob, size_t len, struct squib_error_detail *d);
};

struct squib_device_target {
	const struct squib_device_target_ops *ops;
	void *ctx;
	const char *kind;
	const char *id;
	uint32_t mmio_slot;
};

/* ==== whole-state helpers =================================================== */

/*
 * Capture n vCPUs (1..SQUIB_STATE_MAX_VCPUS; vCPU i from srcs[i]) and replace
 * the vCPUs of `s` (arch AARCH64) with them. All or nothing: on failure `s`
 * is unchanged.
 */
SQUIB_API int squib_capture_vcpus(const struct squib_arm64_vcpu_source *srcs, uint32_t n,
				  struct squib_microvm_state *s, struct squib_error_detail *d);

/*
 * Restore every vCPU of `s` (arch AARCH64): vCPU i into targets[i] with index
 * i, under rs->psci. SQUIB_E_INCOMPATIBLE when n differs from s->vcpu_count or
 * once a vCPU has been marked started. Every vCPU and target passes the checks
 * of squib_restore_arm64_vcpu_state before the first is written; the writes
 * then stop at the first failure.
 */
SQUIB_API int squib_restore_vcpus(const struct squib_restore_session *rs,
				  const struct squib_arm64_vcpu_target *targets, uint32_t n,
				  const struct squib_microvm_state *s,
				  struct squib_error_detail *d);

/* Capture the GIC blob into s->gic (arch AARCH64); an empty blob is
 * SQUIB_E_CAPTURE. On failure `s` is unchanged. */
SQUIB_API int squib_capture_gic(const struct squib_gic_source *src, struct squib_microvm_state *s,
				struct squib_error_detail *d);

/* squib_restore_gic_blob with s->gic; SQUIB_E_INCOMPATIBLE also when the
 * declared length differs from the blob's size (verify_compatible's rule). */
SQUIB_API int squib_restore_gic(struct squib_restore_session *rs, const struct squib_gic_target *t,
				const struct squib_microvm_state *s, struct squib_error_detail *d);

/* Capture MMDS into s->mmds (replaced; NULL when the source reports it off).
 * On failure `s` is unchanged. */
SQUIB_API int squib_capture_mmds(const struct squib_mmds_source *src, struct squib_microvm_state *s,
				 struct squib_error_detail *d);

/*
 * Restore s->mmds. A state without MMDS leaves the target untouched: the
 * target is not called at all (upstream passed None and trusted the target).
 * t may be NULL when the VM runs no MMDS: fine for a state without MMDS,
 * SQUIB_E_INCOMPATIBLE for a state with it.
 */
SQUIB_API int squib_restore_mmds(const struct squib_mmds_target *t,
				 const struct squib_microvm_state *s, struct squib_error_detail *d);

/*
 * Capture n devices (0..SQUIB_STATE_MAX_DEVICES) and replace the devices of
 * `s` with them, sorted by (slot, id). kind and id must be non-NULL; a
 * duplicate (slot, id) is SQUIB_E_INVALID_ARGUMENT. All or nothing.
 */
SQUIB_API int squib_capture_devices(const struct squib_device_source *srcs, size_t n,
				    struct squib_microvm_state *s, struct squib_error_detail *d);

/*
 * Restore every saved device into the target with the same (slot, id), in the
 * state's (slot, id) order. Checked before any target is called:
 * SQUIB_E_INVALID_ARGUMENT for a duplicate target key; SQUIB_E_INCOMPATIBLE
 * when a saved device has no target, its target's kind differs, or a target
 * has no saved device (the VM's devices must be the snapshot's).
 */
SQUIB_API int squib_restore_devices(const struct squib_device_target *targets, size_t n,
				    const struct squib_microvm_state *s,
				    struct squib_error_detail *d);

#ifdef __cplusplus
}
#endif
#endif /* SQUIB_VCPU_H */
