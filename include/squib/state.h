/* SPDX-License-Identifier: Apache-2.0 */
/*
 * squib/state.h - the in-memory model of a microVM state file.
 *
 * Field for field the upstream MicrovmState (vm_info, vCPUs, GIC blob, devices,
 * MMDS), plus what our format adds. The model is architecture-tagged: `arch`
 * says which vCPU array is meaningful (arm64_vcpus on aarch64, x86_vcpus and
 * x86_vm on x86_64). Later additions arrive as new members; existing ones
 * keep their meaning. `memory` describes the memory file the state pairs
 * with (squib/memfile.h).
 *
 * Ownership: every pointer inside a squib_microvm_state is heap memory owned by
 * the state and released by squib_state_free(). Set string fields with strdup()
 * or the setters below. A NULL cpu_template / kernel_image_path / boot_args means
 * the empty string; a NULL initrd_path means "none" (upstream Option::None).
 *
 * Thread-safety: none internally; a state is a plain value. Distinct states may
 * be used from distinct threads.
 */
#ifndef SQUIB_STATE_H
#define SQUIB_STATE_H

#include <squib/api.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include <squib/error.h>

#ifdef __cplusplus
extern "C" {
#endif

enum squib_arch {
	SQUIB_ARCH_ANY = 0, /* only as an "expected" argument: accept either */
	SQUIB_ARCH_AARCH64 = 1,
	SQUIB_ARCH_X86_64 = 2,
};

/* verify_compatible accepts 1..SQUIB_MAX_VCPUS vCPUs (upstream rule). */
#define SQUIB_MAX_VCPUS 32

/* Decoder bounds: a file over any of these is an encoding error. */
#define SQUIB_STATE_MAX_VCPUS 256
#define SQUIB_STATE_MAX_DEVICES 1024
#define SQUIB_STATE_MAX_SYSREGS 4096 /* per vCPU */
#define SQUIB_STATE_MAX_EXTRA_SECTIONS 256

struct squib_vm_info {
	uint64_t mem_size_mib;
	bool smt; /* must be false */
	char *cpu_template;
	char *kernel_image_path;
	char *initrd_path; /* NULL = none */
	char *boot_args;
	bool track_dirty_pages;
};

struct squib_arm64_gp_regs {
	uint64_t x[31]; /* X0..X30 */
	uint64_t sp;    /* SP_EL1 */
	uint64_t pc;
	uint64_t pstate;
};

struct squib_arm64_vreg {
	uint64_t lo;
	uint64_t hi;
};

struct squib_arm64_fp_regs {
	struct squib_arm64_vreg v[32]; /* V0..V31 */
	uint64_t fpsr;
	uint64_t fpcr;
};

enum squib_psci_state {
	SQUIB_PSCI_ON = 0,
	SQUIB_PSCI_OFF = 1,
	SQUIB_PSCI_ON_PENDING = 2,
};

struct squib_sysreg_value {
	uint64_t key; /* wire key, see squib/sysreg.h */
	uint64_t value;
};

struct squib_arm64_vcpu {
	uint64_t mpidr;
	struct squib_arm64_gp_regs regs;
	struct squib_arm64_fp_regs fp_regs;
	uint32_t sys_reg_count;
	struct squib_sysreg_value *sys_regs; /* ascending unique keys */
	enum squib_psci_state psci_state;
};

/* The interrupt controller's opaque blob. `len` is the declared length, kept
 * redundantly (upstream GicState.len); verify_compatible requires len == size. */
struct squib_gic_state {
	uint64_t len;
	size_t size;
	uint8_t *bytes;
};

struct squib_device_state {
	char *kind; /* e.g. "virtio-block" */
	char *id;   /* drive_id / iface_id */
	uint32_t mmio_slot;
	size_t blob_len;
	uint8_t *blob; /* device-defined */
};

struct squib_mmds_state {
	char *data_json; /* compact JSON; "null" is an empty store */
	bool has_token_ttl;
	uint32_t token_ttl_seconds; /* V2 session-token TTL; absent = MMDS V1 */
};

/* ---- memory-file description (section 0x0020, see squib/memfile.h) ------- */

/* Random identifier of a memory file; all zero means "none". */
#define SQUIB_MEMORY_ID_SIZE 16

/* Bounds shared by the state codec and the memory-file reader. */
#define SQUIB_MEMORY_MIN_PAGE_SIZE 4096ull
#define SQUIB_MEMORY_MAX_PAGE_SIZE (1ull << 30)
#define SQUIB_MEMORY_MAX_REGIONS 1024u
#define SQUIB_MEMORY_MAX_RAM_SIZE (1ull << 48) /* 256 TiB */
#define SQUIB_MEMORY_MAX_EXTENTS (1ull << 24)

enum squib_memory_kind {
	SQUIB_MEMORY_FULL = 1, /* every page of RAM; absent pages are zero */
	SQUIB_MEMORY_DIFF = 2, /* only the pages dirtied since the parent; absent = unknown */
};

/* One guest RAM region. Regions are laid out in the memory file back to back,
 * in ascending guest address order: region i starts at file offset
 * sum(size[0..i)). */
struct squib_mem_region {
	uint64_t guest_addr;
	uint64_t size;
};

/* A run of pages present in the memory file: pages [first_page,
 * first_page + page_count), counted in page_size units from file offset 0. */
struct squib_page_extent {
	uint64_t first_page;
	uint64_t page_count;
};

/*
 * What a memory file holds, as the state file records it. The same fields sit
 * in the memory file's footer and manifest; squib_memfile_check_layout()
 * compares the two. Valid when (squib_memory_layout_validate):
 *   kind FULL with a zero parent_id, or DIFF with a non-zero parent_id != id;
 *   id non-zero; page_size a power of two in [MIN, MAX]_PAGE_SIZE;
 *   1..MAX_REGIONS regions, each non-empty, page-aligned in address and size,
 *   strictly ascending and non-overlapping, sizes summing to ram_size
 *   (at most MAX_RAM_SIZE);
 *   extents non-empty, strictly ascending, neither overlapping nor touching
 *   (coalesced), inside ram_size / page_size pages, their page counts summing
 *   to present_pages; at most MAX_EXTENTS of them;
 *   file_size the size docs/FORMAT.md "Memory file" gives for that manifest.
 */
struct squib_memory_layout {
	enum squib_memory_kind kind;
	uint8_t id[SQUIB_MEMORY_ID_SIZE];
	uint8_t parent_id[SQUIB_MEMORY_ID_SIZE]; /* all zero for FULL */
	uint64_t page_size;
	uint64_t ram_size;  /* sum of the region sizes: the raw RAM range of the file */
	uint64_t file_size; /* RAM range + manifest area + footer */
	uint64_t present_pages;
	uint32_t region_count;
	struct squib_mem_region *regions;
	uint64_t extent_count;
	struct squib_page_extent *extents;
};

/* ---- x86_64 vCPUs and VM (sections 0x0010 and 0x0011) ------------------- */

/*
 * The x86_64 model mirrors what KVM reports (docs/FORMAT.md documents every
 * byte). Register files are named fields; a few kernel structures whose
 * layout is a stable KVM ABI are kept as fixed-size byte images (LAPIC page,
 * vCPU events, PIC, IOAPIC, PIT), so this header needs no <linux/kvm.h>.
 */
#define SQUIB_X86_MAX_XCRS     16     /* KVM_MAX_XCRS */
#define SQUIB_X86_MAX_CPUID    256    /* CPUID entries per vCPU */
#define SQUIB_X86_MAX_MSRS     1024   /* MSRs per vCPU */
#define SQUIB_X86_XSAVE_MIN    4096u  /* sizeof(struct kvm_xsave) */
#define SQUIB_X86_XSAVE_MAX    65536u /* KVM_CAP_XSAVE2 sizes are far below */
#define SQUIB_X86_LAPIC_SIZE   1024   /* struct kvm_lapic_state */
#define SQUIB_X86_EVENTS_SIZE  64     /* struct kvm_vcpu_events */
#define SQUIB_X86_PIC_SIZE     16     /* struct kvm_pic_state */
#define SQUIB_X86_IOAPIC_SIZE  216    /* struct kvm_ioapic_state */
#define SQUIB_X86_PIT_SIZE     112    /* struct kvm_pit_state2 */
#define SQUIB_X86_MAX_MP_STATE 10     /* KVM_MP_STATE_SUSPENDED, the highest defined */

/* struct kvm_regs, in its order. */
struct squib_x86_regs {
	uint64_t rax, rbx, rcx, rdx, rsi, rdi, rsp, rbp;
	uint64_t r8, r9, r10, r11, r12, r13, r14, r15;
	uint64_t rip, rflags;
};

/* struct kvm_segment without its padding byte. */
struct squib_x86_segment {
	uint64_t base;
	uint32_t limit;
	uint16_t selector;
	uint8_t type, present, dpl, db, s, l, g, avl, unusable;
};

/* struct kvm_dtable without its padding. */
struct squib_x86_dtable {
	uint64_t base;
	uint16_t limit;
};

/* struct kvm_sregs. */
struct squib_x86_sregs {
	struct squib_x86_segment cs, ds, es, fs, gs, ss, tr, ldt;
	struct squib_x86_dtable gdt, idt;
	uint64_t cr0, cr2, cr3, cr4, cr8, efer, apic_base;
	uint64_t interrupt_bitmap[4];
};

/* struct kvm_debugregs without its reserved words. */
struct squib_x86_debugregs {
	uint64_t db[4];
	uint64_t dr6, dr7, flags;
};

struct squib_x86_xcr {
	uint32_t xcr; /* XCR index (0 = XCR0) */
	uint64_t value;
};

/* struct kvm_cpuid_entry2 without its padding. */
struct squib_x86_cpuid_entry {
	uint32_t function, index, flags;
	uint32_t eax, ebx, ecx, edx;
};

struct squib_x86_msr {
	uint32_t index;
	uint64_t value;
};

/*
 * One x86_64 vCPU. Arrays are heap memory owned by the state; the encoder
 * writes xcrs (by xcr), cpuid (by function, then index) and msrs (by index)
 * in ascending order whatever their array order, and refuses duplicates.
 */
struct squib_x86_vcpu {
	struct squib_x86_regs regs;
	struct squib_x86_sregs sregs;
	struct squib_x86_debugregs debugregs;
	uint8_t events[SQUIB_X86_EVENTS_SIZE]; /* struct kvm_vcpu_events, verbatim */
	uint32_t mp_state;		       /* KVM_MP_STATE_*, 0..SQUIB_X86_MAX_MP_STATE */
	uint32_t tsc_khz;		       /* KVM_GET_TSC_KHZ; 0 = unknown */
	bool has_lapic;			       /* false: no in-kernel LAPIC */
	uint8_t lapic[SQUIB_X86_LAPIC_SIZE];   /* struct kvm_lapic_state, verbatim */
	uint32_t xcr_count;		       /* 0..SQUIB_X86_MAX_XCRS */
	struct squib_x86_xcr xcrs[SQUIB_X86_MAX_XCRS];
	uint32_t cpuid_count; /* 0..SQUIB_X86_MAX_CPUID */
	struct squib_x86_cpuid_entry *cpuid;
	uint32_t msr_count; /* 0..SQUIB_X86_MAX_MSRS */
	struct squib_x86_msr *msrs;
	uint32_t xsave_size; /* 0 (none) or XSAVE_MIN..XSAVE_MAX, a multiple of 4 */
	uint8_t *xsave;	     /* the KVM_GET_XSAVE(2) buffer, verbatim */
};

/* struct kvm_clock_data without its padding. */
struct squib_x86_clock {
	uint64_t clock;
	uint32_t flags;
	uint64_t realtime;
	uint64_t host_tsc;
};

/* VM-wide x86_64 state: KVM clock, in-kernel irqchip and PIT when created. */
struct squib_x86_vm_state {
	struct squib_x86_clock clock;
	bool has_irqchip;
	uint8_t pic_master[SQUIB_X86_PIC_SIZE]; /* KVM_GET_IRQCHIP chip 0, verbatim */
	uint8_t pic_slave[SQUIB_X86_PIC_SIZE];	/* chip 1 */
	uint8_t ioapic[SQUIB_X86_IOAPIC_SIZE];	/* chip 2 */
	bool has_pit;
	uint8_t pit[SQUIB_X86_PIT_SIZE]; /* KVM_GET_PIT2, verbatim */
};

/* A section this library does not know but which carries the skip flag: kept so
 * that re-encoding a decoded file reproduces it byte for byte. */
struct squib_raw_section {
	uint16_t tag;
	uint16_t flags;
	uint32_t len;
	uint8_t *bytes;
};

struct squib_microvm_state {
	enum squib_arch arch;
	struct squib_vm_info vm_info;
	uint32_t vcpu_count;
	struct squib_arm64_vcpu *arm64_vcpus; /* arch == AARCH64: vcpu_count entries */
	struct squib_x86_vcpu *x86_vcpus;     /* arch == X86_64: vcpu_count entries */
	struct squib_x86_vm_state *x86_vm;    /* x86_64 VM state; NULL = absent */
	struct squib_gic_state gic;
	uint32_t device_count;
	struct squib_device_state *devices; /* sorted by (mmio_slot, id bytewise) */
	struct squib_mmds_state *mmds;      /* NULL = MMDS not enabled */
	uint32_t extra_section_count;
	struct squib_raw_section *extra_sections; /* ascending tag */
	struct squib_memory_layout *memory;	  /* NULL = no memory-file description */
};

/* An empty state of the given architecture (no allocation). */
SQUIB_API void squib_state_init(struct squib_microvm_state *s, enum squib_arch arch);

/* Release everything the state owns and re-initialise it (arch is kept). */
SQUIB_API void squib_state_free(struct squib_microvm_state *s);

/* Deep comparison of two states (every field, extra sections included). */
SQUIB_API bool squib_state_equal(const struct squib_microvm_state *a,
				 const struct squib_microvm_state *b);

/* Replace *field with a heap copy of value (NULL stays NULL). */
SQUIB_API int squib_state_set_string(char **field, const char *value);

/* Append an arm64 vCPU: registers zero, no sysregs, PSCI Off (upstream VcpuState::new).
 * Fails with SQUIB_E_INVALID_ARGUMENT unless arch == AARCH64 and below the decoder bound. */
SQUIB_API int squib_state_add_arm64_vcpu(struct squib_microvm_state *s, uint64_t mpidr,
					 struct squib_arm64_vcpu **out);

/* Insert or replace a sysreg value, keeping keys ascending. */
SQUIB_API int squib_arm64_vcpu_set_sysreg(struct squib_arm64_vcpu *v, uint64_t key, uint64_t value);

/* Look up a sysreg; returns false if the key is absent. */
SQUIB_API bool squib_arm64_vcpu_get_sysreg(const struct squib_arm64_vcpu *v, uint64_t key,
					   uint64_t *value);

/* Append an x86_64 vCPU, every field zero (mp_state RUNNABLE, no LAPIC, no
 * arrays). SQUIB_E_INVALID_ARGUMENT unless arch == X86_64 and below the
 * decoder bound. */
SQUIB_API int squib_state_add_x86_vcpu(struct squib_microvm_state *s, struct squib_x86_vcpu **out);

/*
 * Replace an x86 vCPU's arrays with copies in canonical order (MSRs by
 * index, CPUID by (function, index), XCRs by xcr), so a state built with
 * them compares equal to its decoded file. SQUIB_E_INVALID_ARGUMENT for a
 * count over the bounds above, duplicate keys, or an XSAVE size other than
 * 0 or XSAVE_MIN..XSAVE_MAX in multiples of 4; nothing changes then.
 */
SQUIB_API int squib_x86_vcpu_set_msrs(struct squib_x86_vcpu *v, const struct squib_x86_msr *msrs,
				      uint32_t n);
SQUIB_API int squib_x86_vcpu_set_cpuid(struct squib_x86_vcpu *v,
				       const struct squib_x86_cpuid_entry *e, uint32_t n);
SQUIB_API int squib_x86_vcpu_set_xcrs(struct squib_x86_vcpu *v, const struct squib_x86_xcr *x,
				      uint32_t n);
SQUIB_API int squib_x86_vcpu_set_xsave(struct squib_x86_vcpu *v, const void *bytes, uint32_t size);

/* Replace the state's x86 VM state with a copy (NULL removes it). */
SQUIB_API int squib_state_set_x86_vm(struct squib_microvm_state *s,
				     const struct squib_x86_vm_state *vm);

/* Copy `bytes` into the GIC blob and set len to its size. */
SQUIB_API int squib_state_set_gic(struct squib_microvm_state *s, const void *bytes, size_t size);

/* Insert a copy of a device at its sorted position (mmio_slot, then id bytewise,
 * the upstream DeviceStates::from_devices order). A duplicate (slot, id) is
 * SQUIB_E_INVALID_ARGUMENT. */
SQUIB_API int squib_state_add_device(struct squib_microvm_state *s, const char *kind,
				     const char *id, uint32_t mmio_slot, const void *blob,
				     size_t blob_len);

/* Enable MMDS with a copy of data_json (NULL means "null"). */
SQUIB_API int squib_state_set_mmds(struct squib_microvm_state *s, const char *data_json,
				   bool has_ttl, uint32_t ttl_seconds);

/* Replace the state's memory description with a deep copy of `layout` (NULL
 * removes it). SQUIB_E_INVALID_ARGUMENT if the layout is not valid. */
SQUIB_API int squib_state_set_memory(struct squib_microvm_state *s,
				     const struct squib_memory_layout *layout,
				     struct squib_error_detail *d);

/*
 * Check every rule listed at struct squib_memory_layout. Failures return
 * `code` (the caller's choice: SQUIB_E_ENCODING for a decoded file,
 * SQUIB_E_INVALID_ARGUMENT for a caller's value) with a message naming the
 * rule.
 */
SQUIB_API int squib_memory_layout_validate(const struct squib_memory_layout *l, int code,
					   struct squib_error_detail *d);

/* Deep copy; dst is overwritten (not freed first). SQUIB_E_NOMEM on failure,
 * leaving dst empty. */
SQUIB_API int squib_memory_layout_copy(struct squib_memory_layout *dst,
				       const struct squib_memory_layout *src);

/* Free the arrays and zero the struct (the struct itself is the caller's). */
SQUIB_API void squib_memory_layout_release(struct squib_memory_layout *l);

/* Field-by-field equality (arrays by content). Two NULLs are equal. */
SQUIB_API bool squib_memory_layout_equal(const struct squib_memory_layout *a,
					 const struct squib_memory_layout *b);

/* Order of two devices: (mmio_slot, id bytewise). Negative, zero or positive. */
SQUIB_API int squib_device_compare(const struct squib_device_state *a,
				   const struct squib_device_state *b);

/*
 * Upstream verify_compatible, for the state's architecture: SQUIB_E_INCOMPATIBLE
 * when the vCPU count is outside 1..32 or smt is set; on aarch64 also when the
 * GIC blob is empty or its declared len differs from its size; on x86_64 when
 * the x86 VM state is absent.
 */
SQUIB_API int squib_state_verify_compatible(const struct squib_microvm_state *s,
					    struct squib_error_detail *d);

SQUIB_API const char *squib_arch_name(enum squib_arch arch); /* "aarch64", "x86_64", "any" */
SQUIB_API const char *squib_psci_state_name(enum squib_psci_state p); /* "On", "Off", "OnPending" */

#ifdef __cplusplus
}
#endif
#endif /* SQUIB_STATE_H */
