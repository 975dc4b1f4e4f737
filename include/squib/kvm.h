/* SPDX-License-Identifier: Apache-2.0 */
/*
 * squib/kvm.h - a small KVM x86_64 VM runner: enough of a VMM to run tiny
 * guests, pause them, capture and restore their x86 state, and track the
 * pages they dirty.
 *
 * This is libsquib-kvm (pkg-config squib-kvm, CMake squib::kvm), the
 * reference backend, built and installed on x86_64 only; libsquib-snapshot
 * neither contains nor needs it. It is a VMM written against the core's
 * public API, for the CLI, the tests and as an example. The console, the
 * counter-report device and boot_long_mode are its test devices: with the
 * guests of tests/guests/ they make the counter-guest protocol the CLI's
 * run/restore and the tests use (each vCPU writes a growing counter to the
 * report port); they are part of this library's ABI, not of the core's.
 *
 *   squib_kvm_vm_new          /dev/kvm, KVM_CREATE_VM; the optional in-kernel irqchip + PIT
 *                             and the 1..SQUIB_KVM_MAX_VCPUS vCPUs (CPUID = what KVM
 *                             supports, plus the TSC-deadline timer bit with the
 *                             irqchip, which KVM leaves to the VMM) are created by the first boot, start, capture
 *                             or restore, after the RAM: KVM registers a memslot far
 *                             faster while no irqchip exists (here ~0.3 ms instead of
 *                             ~6 ms per 1 GiB), which is most of a FILE restore
 *   squib_kvm_vm_add_ram      a memslot over anonymous private memory or a caller's mapping
 *   squib_kvm_vm_add_device   port-I/O devices (a console and a counter-report device are built in)
 *   squib_kvm_vm_boot_long_mode  page tables (identity map, 2 MiB pages), GDT, CR0/CR4/EFER:
 *                             vCPUs start directly in 64-bit mode at the given RIP
 *   squib_kvm_vm_start        one thread per vCPU, each looping on KVM_RUN
 *   squib_kvm_vm_pause/resume stop every vCPU outside KVM_RUN and let them go again
 *   squib_kvm_vm_fail         stop it for good with an error (a dead page server),
 *                             also a vCPU blocked on a page nobody will serve
 *   squib_kvm_vm_capture      x86 vCPU + VM state (+ device blobs) into a squib_microvm_state
 *   squib_kvm_vm_restore      the same into a VM whose vCPUs never ran
 *   squib_tracker_kvm_new     the KVM dirty log behind the squib/track.h interface
 *   squib_kvm_adapter_new     the VM as a squib/vm.h struct squib_vm, for squib_save/squib_load
 *
 * Lifecycle: new -> add_ram / add_device -> boot_long_mode or restore ->
 * start -> (pause -> capture -> resume)* -> free. capture works on a VM that
 * is paused or not yet started; restore only on one not yet started.
 *
 * Pausing. Each vCPU thread runs KVM_RUN with kvm_run.immediate_exit clear.
 * pause() sets the request and immediate_exit under the VM's lock and sends
 * the kick signal to every vCPU thread: a vCPU inside KVM_RUN leaves it with
 * EINTR, one about to enter returns at once (immediate_exit), and one
 * handling an exit sees the request when it comes back. A vCPU whose last
 * exit was port I/O first re-enters KVM_RUN once with immediate_exit set, so
 * KVM completes that instruction (otherwise the saved RIP would point at it
 * and the state would be inconsistent); then it acknowledges and waits.
 * pause() returns once every vCPU has acknowledged, or SQUIB_E_QUIESCE_TIMEOUT
 * after the configured timeout (the request stays in force: vCPUs that get
 * there later stay paused; call resume() to withdraw it). A vCPU stopped by
 * HLT without an in-kernel irqchip, or by an exit it cannot handle, parks
 * and counts as acknowledged.
 *
 * The kick signal (SIGRTMIN unless configured) needs a handler, or it would
 * kill the process (SIG_DFL) or never interrupt KVM_RUN (SIG_IGN). When the
 * signal's action is SIG_DFL or SIG_IGN, squib_kvm_vm_new installs a handler
 * that does nothing; it is never removed and is the same for every VM. An
 * existing handler is kept (any handler interrupts KVM_RUN). That action is
 * the only process-wide state this module touches.
 *
 * Errors: 0 or a negative SQUIB_E_*. A failing KVM ioctl is SQUIB_E_CAPTURE
 * with the ioctl's name and strerror(errno) in the detail message; opening
 * /dev/kvm and mapping memory are SQUIB_E_IO with the errno; misuse
 * (wrong lifecycle step, bad ranges) SQUIB_E_INVALID_ARGUMENT; a state that
 * does not fit the VM (vCPU count, irqchip presence, devices) SQUIB_E_INCOMPATIBLE.
 *
 * Thread-safety: the control calls (add_*, boot, start, pause, resume,
 * capture, restore) serialise on a mutex inside the VM and may come from any
 * thread; vcpu_status, is_paused, fail, error and wait_stopped may run at
 * any time from any thread (fail also while pause waits; not concurrently
 * with add_ram or free). gpa_to_hva,
 * memory_map and write read the RAM table without a lock: they may run from
 * any thread, but not concurrently with add_ram (which start ends).
 * squib_kvm_vm_free needs exclusive access. Device callbacks run on vCPU
 * threads, concurrently for different vCPUs; the built-in devices'
 * accessors are thread-safe.
 */
#ifndef SQUIB_KVM_H
#define SQUIB_KVM_H

#include <squib/api.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include <squib/error.h>
#include <squib/state.h>
#include <squib/track.h>
#include <squib/vm.h>

#ifdef __cplusplus
extern "C" {
#endif

#define SQUIB_KVM_MAX_VCPUS		   8
#define SQUIB_KVM_MAX_SLOTS		   32 /* RAM regions per VM */
#define SQUIB_KVM_MAX_DEVICES		   16 /* port-I/O devices per VM */
#define SQUIB_KVM_DEFAULT_PAUSE_TIMEOUT_MS 1000u

struct squib_kvm_vm;

/* How the dirty log runs (see squib_tracker_kvm_new). */
enum squib_kvm_dirty_log_mode {
	/* KVM_CAP_MANUAL_DIRTY_LOG_PROTECT2 with INITIALLY_SET, as far as offered */
	SQUIB_KVM_DIRTY_LOG_AUTO = 0,
	/* manual protect without INITIALLY_SET, when offered */
	SQUIB_KVM_DIRTY_LOG_MANUAL,
	/* KVM_GET_DIRTY_LOG fetches and re-protects in one call */
	SQUIB_KVM_DIRTY_LOG_CLASSIC,
};

struct squib_kvm_config {
	uint32_t vcpu_count;	   /* 1..SQUIB_KVM_MAX_VCPUS */
	bool irqchip;		   /* in-kernel PIC, IOAPIC, LAPICs and PIT */
	uint32_t pause_timeout_ms; /* 0: SQUIB_KVM_DEFAULT_PAUSE_TIMEOUT_MS */
	int kick_signal;	   /* 0: SIGRTMIN */
	const char *device_path;   /* NULL: "/dev/kvm" */
	enum squib_kvm_dirty_log_mode dirty_log;
};

#define SQUIB_KVM_CONFIG_INIT                                                                      \
	{                                                                                          \
		1, true, 0, 0, NULL, SQUIB_KVM_DIRTY_LOG_AUTO                                      \
	}

/* Does the KVM device exist (path NULL: /dev/kvm)? Says nothing about access. */
SQUIB_API bool squib_kvm_available(const char *device_path);

/* Errors of the irqchip or vCPU creation surface at that first call. */
SQUIB_API int squib_kvm_vm_new(const struct squib_kvm_config *cfg, struct squib_kvm_vm **out,
			       struct squib_error_detail *d);

/* Stop and join the vCPU threads, close every fd, unmap the VM's own RAM.
 * Trackers made on the VM must be freed first, and no device callback may
 * be blocked for good (its vCPU thread could not be joined). NULL is a no-op. */
SQUIB_API void squib_kvm_vm_free(struct squib_kvm_vm *vm);

SQUIB_API uint32_t squib_kvm_vm_vcpu_count(const struct squib_kvm_vm *vm);

/* The KVM_DIRTY_LOG_* flags enabled with KVM_CAP_MANUAL_DIRTY_LOG_PROTECT2
 * (0: the classic dirty log). */
SQUIB_API uint64_t squib_kvm_vm_dirty_log_flags(const struct squib_kvm_vm *vm);

/* ---- memory ------------------------------------------------------------- */

/*
 * Guest RAM [gpa, gpa + size) as a new memslot (host-page multiples, no
 * overlap). hva NULL: anonymous private memory the VM maps and unmaps; else
 * the caller's read-write mapping of at least size bytes, which must stay
 * mapped until the VM is freed (a restore backend's file or uffd mapping).
 * *slot (may be NULL) receives the memslot id. Not after start.
 */
SQUIB_API int squib_kvm_vm_add_ram(struct squib_kvm_vm *vm, uint64_t gpa, uint64_t size, void *hva,
				   uint32_t *slot, struct squib_error_detail *d);

/* Host address of guest-physical [gpa, gpa + len), which must lie inside one
 * region; NULL otherwise. The guest may be writing there concurrently. */
SQUIB_API void *squib_kvm_vm_gpa_to_hva(struct squib_kvm_vm *vm, uint64_t gpa, uint64_t len);

/* The RAM regions (slot ids, gpa order) as a squib/track.h memory map. The
 * array is the VM's; it is valid until the next add_ram or free. */
SQUIB_API struct squib_memory_map squib_kvm_vm_memory_map(const struct squib_kvm_vm *vm);

/* Copy len bytes into guest memory at gpa (one region). */
SQUIB_API int squib_kvm_vm_write(struct squib_kvm_vm *vm, uint64_t gpa, const void *src, size_t len,
				 struct squib_error_detail *d);

/* ---- port-I/O devices ---------------------------------------------------- */

/*
 * A device serving ports [port, port + count). io runs on the vCPU thread
 * that exited, for each element of a string I/O: `data` holds `size` (1, 2
 * or 4) bytes, to fill for a read (is_write false; it starts as 0xff). A
 * non-zero return stops that vCPU (it parks with the code as its error).
 * save/restore (both optional) turn the device's registers into a blob and
 * back; capture stores the blob as a state device {kind, id, mmio_slot =
 * port}. free releases ctx when the VM goes.
 */
struct squib_kvm_device_ops {
	const char *kind;
	int (*io)(void *ctx, uint32_t vcpu, uint16_t port, bool is_write, uint8_t *data,
		  uint32_t size);
	int (*save)(void *ctx, uint8_t **blob, size_t *len);
	int (*restore)(void *ctx, const uint8_t *blob, size_t len);
	void (*free)(void *ctx);
};

/* ops must outlive the VM; ctx is the VM's from here on (ops->free is called
 * on it even when this fails). Ports must not overlap another device's. */
SQUIB_API int squib_kvm_vm_add_device(struct squib_kvm_vm *vm, const char *id, uint16_t port,
				      uint16_t count, const struct squib_kvm_device_ops *ops,
				      void *ctx, struct squib_error_detail *d);

/*
 * The console: bytes written to its port (Bochs/QEMU debug port 0xe9 by
 * convention) are appended to a 4 KiB ring; reads return 0xe9.
 * Blob: u64 total bytes ever written, u32 n, then the last n (<= 4096) bytes.
 */
#define SQUIB_KVM_CONSOLE_RING 4096u
struct squib_kvm_console;
SQUIB_API int squib_kvm_vm_add_console(struct squib_kvm_vm *vm, uint16_t port,
				       struct squib_kvm_console **out,
				       struct squib_error_detail *d);
/* Copy out the last bytes written (NUL-terminated, truncated to cap - 1). */
SQUIB_API size_t squib_kvm_console_read(struct squib_kvm_console *c, char *buf, size_t cap);

/*
 * The counter-report device: a 32-bit write to its port records the value
 * as the writing vCPU's latest report and counts it; reads return 0.
 * Blob: u32 version (1), u32 vCPU count, then per vCPU u64 last, u64 reports.
 */
struct squib_kvm_counter;
SQUIB_API int squib_kvm_vm_add_counter(struct squib_kvm_vm *vm, uint16_t port,
				       struct squib_kvm_counter **out,
				       struct squib_error_detail *d);
/* The vCPU's latest report and how many it made; false for a bad vcpu. */
SQUIB_API bool squib_kvm_counter_get(struct squib_kvm_counter *c, uint32_t vcpu, uint64_t *last,
				     uint64_t *reports);
/*
 * Block until the vCPU has made at least min_reports reports in total:
 * SQUIB_E_IO with os_errno ETIMEDOUT when timeout_ms passes first (a
 * safety net for tests, not a measurement). *last (may be NULL) receives
 * the latest report.
 */
SQUIB_API int squib_kvm_counter_wait(struct squib_kvm_counter *c, uint32_t vcpu,
				     uint64_t min_reports, uint32_t timeout_ms, uint64_t *last,
				     struct squib_error_detail *d);

/*
 * A 16550A UART at ports [port, port + 8) (the PC's COM1: 0x3f8, IRQ 4), as
 * Linux's 8250 driver and serial console need it: THR/RBR, IER, IIR/FCR,
 * LCR, MCR with loopback, LSR, MSR, SCR, DLL/DLM. Transmission is instant;
 * the interrupt line follows IIR through KVM_IRQ_LINE (with the in-kernel
 * irqchip; without one the driver polls). Every byte the guest sends is
 * written to out_fd (-1: nowhere) from the vCPU thread; the UART counts
 * bytes and lines and keeps the last complete line (up to
 * SQUIB_KVM_UART_LINE - 1 bytes, CRs dropped). Nothing is ever received.
 * Device id "serial0", kind "uart-16550"; blob: u32 version (1), the 12
 * register bytes, u8 line level, u8 0, u16 n, u64 bytes, u64 lines, then
 * the n bytes of the last line. out_fd is the caller's and must stay open.
 */
#define SQUIB_KVM_UART_LINE 256u
struct squib_kvm_uart;
struct squib_kvm_uart_info {
	uint64_t bytes; /* sent by the guest since boot (carried through snapshots) */
	uint64_t lines;
	char last_line[SQUIB_KVM_UART_LINE]; /* NUL-terminated */
};
SQUIB_API int squib_kvm_vm_add_uart(struct squib_kvm_vm *vm, uint16_t port, uint32_t irq,
				    int out_fd, struct squib_kvm_uart **out,
				    struct squib_error_detail *d);
SQUIB_API void squib_kvm_uart_get(struct squib_kvm_uart *u, struct squib_kvm_uart_info *out);
/* Block until the guest has sent min_lines lines in all; SQUIB_E_IO with
 * ETIMEDOUT after timeout_ms. info (may be NULL) receives the counts then. */
SQUIB_API int squib_kvm_uart_wait_lines(struct squib_kvm_uart *u, uint64_t min_lines,
					uint32_t timeout_ms, struct squib_kvm_uart_info *info,
					struct squib_error_detail *d);
/* Decode a saved UART blob (from a state's devices); SQUIB_E_ENCODING if it is not one. */
SQUIB_API int squib_kvm_uart_blob_info(const uint8_t *blob, size_t len,
				       struct squib_kvm_uart_info *out);

/* ---- entering a guest ----------------------------------------------------- */

/* Registers a vCPU starts with; all others are zero and RFLAGS is 0x2. */
struct squib_kvm_entry {
	uint64_t rip, rsp, rdi, rsi, rdx;
};

/*
 * Long mode, directly. At tables_gpa (4 KiB aligned, in RAM) the runner
 * writes a GDT page (null, 64-bit code 0x08, data 0x10), a PML4, a PDPT and
 * map_size / 1 GiB PD pages identity-mapping [0, map_size) with 2 MiB pages
 * (map_size a non-zero multiple of 2 MiB, at most 4 GiB). Every entry has its
 * accessed (and dirty) bit preset, so the CPU never writes the tables: they
 * stay clean in the dirty log. Then each vCPU gets CR0 = PE|MP|ET|NE|WP|PG,
 * CR4 = PAE|OSFXSR|OSXMMEXCPT, EFER = LME|LMA, flat segments, an empty IDT,
 * the registers in entry[i], and MP state RUNNABLE. Not after start.
 */
#define SQUIB_KVM_TABLE_PAGES(map_size) (3 + (((map_size) + (1ull << 30) - 1) >> 30))
struct squib_kvm_boot {
	uint64_t tables_gpa;
	uint64_t map_size;
	struct squib_kvm_entry entry[SQUIB_KVM_MAX_VCPUS];
};

SQUIB_API int squib_kvm_vm_boot_long_mode(struct squib_kvm_vm *vm, const struct squib_kvm_boot *b,
					  struct squib_error_detail *d);

/*
 * Boot a Linux bzImage directly, through the 64-bit entry of the x86 boot
 * protocol (2.12+, XLF_KERNEL_64): no firmware, no real-mode setup code.
 * The VM needs one RAM region at gpa 0 (at least 32 MiB plus the kernel's
 * init_size and the initrd). The runner writes the zero page (boot_params)
 * at 0x7000 (the image's setup header, loader type 0xff, the command line at
 * 0x20000, the initrd, an e820 map: [0, 0x9fc00) and [1 MiB, RAM end)
 * usable), identity page tables for the first 4 GiB at 0x9000 (as
 * boot_long_mode), the protected-mode kernel at 1 MiB, the initrd page
 * aligned at the top of RAM below initrd_addr_max; then each vCPU gets
 * IA32_MISC_ENABLE fast strings and MTRRs enabled with write-back default
 * (what a BIOS leaves), RIP = 1 MiB + 0x200, RSI = the zero page, interrupts
 * off. Only vCPU 0 runs the kernel: use one vCPU (without ACPI or MP tables
 * Linux finds no other CPU; pass acpi=off). Not after start.
 */
struct squib_kvm_linux {
	const uint8_t *kernel; /* the bzImage */
	size_t kernel_len;
	const uint8_t *initrd; /* NULL: none */
	size_t initrd_len;
	const char *cmdline; /* NULL: empty */
};

SQUIB_API int squib_kvm_vm_boot_linux(struct squib_kvm_vm *vm, const struct squib_kvm_linux *l,
				      struct squib_error_detail *d);

/* ---- running -------------------------------------------------------------- */

SQUIB_API int squib_kvm_vm_start(struct squib_kvm_vm *vm, struct squib_error_detail *d);
/* SQUIB_E_QUIESCE_TIMEOUT as described above; pausing a paused VM is a no-op. */
SQUIB_API int squib_kvm_vm_pause(struct squib_kvm_vm *vm, struct squib_error_detail *d);
SQUIB_API int squib_kvm_vm_resume(struct squib_kvm_vm *vm, struct squib_error_detail *d);
SQUIB_API bool squib_kvm_vm_is_paused(struct squib_kvm_vm *vm);

/*
 * Stop the VM for good because something it cannot run without failed (its
 * page server died, the pager reported an error): the error `code` (< 0)
 * with `why` (may be NULL; copied) is remembered, every vCPU is kicked and
 * never enters KVM_RUN again (a pending port I/O is not completed), and
 * every RAM mapping of the VM is made inaccessible (mprotect PROT_NONE).
 * From then on start, pause and resume (and the adapter's pause_wait and
 * resume) return the error with its detail, vcpu_status reports FAILED for
 * each vCPU out of KVM_RUN (one parked earlier keeps its HALTED or FAILED
 * state), and capture works once all are out (post-mortem
 * only: never save a failed VM). Only the first failure is kept; a later
 * call returns 0 and changes nothing. Returns at once, without waiting:
 *
 * A vCPU may be blocked in the kernel on a userfaultfd page nobody will
 * serve, and the kick signal does not always get it out. On x86 with
 * hardware paging KVM faults guest memory in with FOLL_INTERRUPTIBLE and
 * KVM_RUN returns EINTR; under kvm_pvm (Linux 6.18, the development
 * machine) the access is emulated, copy_from_user waits in
 * handle_userfault, and a pending non-fatal signal does not end that wait.
 * The memory's owner must therefore wake such faults after this call:
 * squib_pager_stop (it unregisters the memory), or, for an external
 * handler, unregister the range or close the uffd. The woken access then
 * meets PROT_NONE and fails, so the vCPU leaves KVM_RUN (an MMIO exit or
 * EFAULT) without the guest reading a zero page the server never sent and
 * without running another instruction. squib_kvm_vm_wait_stopped then
 * returns; squib_kvm_vm_free would otherwise wait for ever to join it.
 * The VMM must not touch guest RAM after this call either.
 */
SQUIB_API int squib_kvm_vm_fail(struct squib_kvm_vm *vm, int code,
				const struct squib_error_detail *why, struct squib_error_detail *d);

/* 0, or the failure squib_kvm_vm_fail recorded (its detail into d, may be NULL). */
SQUIB_API int squib_kvm_vm_error(struct squib_kvm_vm *vm, struct squib_error_detail *d);

/* After squib_kvm_vm_fail: wait until every vCPU is out of KVM_RUN for good
 * (0), or SQUIB_E_QUIESCE_TIMEOUT naming one still inside after timeout_ms. */
SQUIB_API int squib_kvm_vm_wait_stopped(struct squib_kvm_vm *vm, uint32_t timeout_ms,
					struct squib_error_detail *d);

enum squib_kvm_vcpu_run_state {
	SQUIB_KVM_VCPU_IDLE = 0, /* not started */
	SQUIB_KVM_VCPU_RUNNING,
	SQUIB_KVM_VCPU_PAUSED,
	SQUIB_KVM_VCPU_HALTED, /* HLT exit without in-kernel irqchip */
	SQUIB_KVM_VCPU_FAILED, /* an exit it could not handle; see exit_reason / error */
};

struct squib_kvm_vcpu_status {
	enum squib_kvm_vcpu_run_state state;
	uint32_t exit_reason; /* KVM_EXIT_* of the last exit */
	int error;	      /* why it failed: a SQUIB_E_* or -errno of KVM_RUN; 0 */
	uint64_t exits;	      /* exits KVM_RUN returned so far (interruptions not counted) */
	uint64_t io_exits;    /* of which port I/O */
};

SQUIB_API int squib_kvm_vm_vcpu_status(struct squib_kvm_vm *vm, uint32_t vcpu,
				       struct squib_kvm_vcpu_status *st);

/* ---- x86 state ------------------------------------------------------------- */

/*
 * Capture into `out` (initialised here as an x86_64 state): every vCPU's
 * registers, special and debug registers, XSAVE area (KVM_CAP_XSAVE2 size),
 * XCRs, CPUID, the readable MSRs of KVM_GET_MSR_INDEX_LIST, LAPIC (with the
 * irqchip), vCPU events, MP state and TSC rate; the VM's clock, PIC, IOAPIC
 * and PIT (when created); each device with a save op; vm_info.mem_size_mib
 * from the RAM size. The VM must be paused or not started.
 */
SQUIB_API int squib_kvm_vm_capture(struct squib_kvm_vm *vm, struct squib_microvm_state *out,
				   struct squib_error_detail *d);

/*
 * Restore a captured state into a VM that was never started: same vCPU
 * count, same irqchip/PIT presence, every device of the VM with a restore op
 * present in the state (by id and port; other state devices are left for
 * other layers). Guest memory is the caller's business (copy it, or map the
 * memory file, before start). VM state first (PIC, IOAPIC, PIT), then
 * per vCPU: CPUID, MP state (as saved), registers, special registers, XSAVE,
 * XCRs, debug registers, LAPIC, MSRs but the TSC, events. The KVM clock and
 * the TSCs are set when the VM starts (or is captured first), as one pair:
 * the clock as saved, each TSC as far on as the clock ran since.
 */
SQUIB_API int squib_kvm_vm_restore(struct squib_kvm_vm *vm, const struct squib_microvm_state *s,
				   struct squib_error_detail *d);

/* ---- dirty log --------------------------------------------------------------- */

/*
 * A tracker over every RAM region of the VM at the time of the call (its
 * memory map is squib_kvm_vm_memory_map's), reporting guest writes through
 * the KVM dirty log at host-page granularity:
 *   start      sets KVM_MEM_LOG_DIRTY_PAGES on each slot. When the VM has
 *              KVM_CAP_MANUAL_DIRTY_LOG_PROTECT2 enabled with INITIALLY_SET,
 *              KVM starts such a slot with every bit set and nothing
 *              write-protected, so start then clears every bit
 *              (KVM_CLEAR_DIRTY_LOG), protecting all pages: earlier writes
 *              are not reported.
 *   harvest    per slot inside dst: KVM_GET_DIRTY_LOG, then, in manual-protect
 *              mode, KVM_CLEAR_DIRTY_LOG of exactly the bits it returned, then
 *              OR them into dst; plus whatever give_back returned. Without
 *              manual protect GET_DIRTY_LOG clears and protects by itself.
 *   give_back  ORs into a host-page bitmap per slot drained by the next harvest.
 *   stop       clears KVM_MEM_LOG_DIRTY_PAGES.
 * The VM must outlive the tracker. Only guest stores are seen: join a
 * VMM-marks tracker in a squib_tracker_set for the VMM's own writes.
 */
SQUIB_API int squib_tracker_kvm_new(struct squib_kvm_vm *vm, struct squib_tracker **out,
				    struct squib_error_detail *d);

/* ---- the squib/vm.h adapter ------------------------------------------------------ */

/*
 * A squib_kvm_vm as a struct squib_vm, for squib_save() and squib_load():
 *
 *   pause_begin/pause_wait/resume  the runner's pause is VM-wide: the first
 *                      pause_begin requests it (kick, no wait), pause_wait(i)
 *                      waits for vCPU i's acknowledgement against the
 *                      deadline, and the request is withdrawn when the last
 *                      vCPU asked to pause is resumed. A VM that was never
 *                      started counts as paused; resume starts it (so a
 *                      restored VM runs when squib_load resumes it, and stays
 *                      unstarted with stay_paused until squib_vm_resume).
 *   capture            squib_kvm_vm_capture, then vm_info from the config
 *                      (track_dirty_pages, kernel image path, boot args)
 *   restore_*          VM state (clock, PIC, IOAPIC, PIT), then every vCPU,
 *                      then the devices: squib_kvm_vm_restore in three steps
 *   get_memory         the VM's RAM regions
 *   set_memory         adds the regions (a squib_guest_memory's COPY or FILE
 *                      mappings) as the memslots of a VM that has no RAM yet
 *                      and was never started; the memory stays the caller's
 *   trackers           with track_dirty_pages: the KVM dirty-log tracker plus
 *                      a VMM-marks tracker (squib_kvm_adapter_vmm_tracker) in
 *                      one set, started once the VM has RAM (at adapter_new,
 *                      or at set_memory for a restore target)
 *
 * The adapter does not own the VM: free the adapter (its trackers) first,
 * then the VM. Thread-safety: as squib/vm.h (one orchestrator at a time);
 * the adapter's own fields are only touched by those ops, and the VM's
 * control calls serialise on the VM's mutex.
 */
struct squib_kvm_adapter_config {
	bool track_dirty_pages;
	const char *kernel_image_path; /* vm_info strings; NULL: empty */
	const char *boot_args;
};

struct squib_kvm_adapter;

SQUIB_API int squib_kvm_adapter_new(struct squib_kvm_vm *vm,
				    const struct squib_kvm_adapter_config *cfg,
				    struct squib_kvm_adapter **out, struct squib_error_detail *d);
/* Stops and frees the trackers; the VM is left alone. NULL is a no-op. */
SQUIB_API void squib_kvm_adapter_free(struct squib_kvm_adapter *a);
/* The ops table and context for squib_save / squib_load. */
SQUIB_API struct squib_vm squib_kvm_adapter_vm(struct squib_kvm_adapter *a);
/* The VMM-marks tracker (report the VMM's own guest-memory writes with
 * squib_tracker_mark_write), or NULL without tracking or before RAM. */
SQUIB_API struct squib_tracker *squib_kvm_adapter_vmm_tracker(struct squib_kvm_adapter *a);

#ifdef __cplusplus
}
#endif
#endif /* SQUIB_KVM_H */
