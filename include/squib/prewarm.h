/* SPDX-License-Identifier: Apache-2.0 */
/*
 * squib/prewarm.h - the boot-critical pages of a lazily restored VM.
 *
 * Before the first vCPU runs after a lazy restore, the loader installs the
 * pages each vCPU touches first, so its first instructions do not each take
 * a userfaultfd round trip. This module computes WHICH pages, from the saved
 * vCPU state and the saved page tables; installing them is the loader's job
 * (squib_pager_prefetch in-process, or touching them for an external
 * handler).
 *
 * Per vCPU that will run (x86: every MP state but UNINITIALIZED and
 * INIT_RECEIVED, which wait for a SIPI that sets a new RIP; aarch64: every
 * PSCI state but Off, which waits for CPU_ON):
 *   - the page holding the instruction pointer;
 *   - the page holding the stack pointer and, when different, the page of
 *     the frame just below it (SP - 8 on x86_64: a push; SP - 16 on aarch64:
 *     the usual `stp x29, x30, [sp, #-16]!`);
 *   - every page-table page the hardware walk reads to translate those.
 * Page-table entries are read through the page source (src->ops->present /
 * read), never from guest memory, which a lazy restore serves on fault; a
 * page the source says is absent reads as zeros.
 *
 * Translation:
 *   x86_64  linear = segment base + offset (CS for RIP, SS for RSP; bases
 *           are ignored in 64-bit mode, offsets wrap at the segment's
 *           width otherwise). CR0.PG off: physical = linear. On: 32-bit
 *           paging (4 KiB, and 4 MiB with CR4.PSE), PAE paging (EFER.LMA
 *           off, CR4.PAE on; the PDPT is read from memory, not from the
 *           PDPTE registers, which the state does not hold), 4-level (1 GiB,
 *           2 MiB, 4 KiB leaves) and 5-level with CR4.LA57.
 *   aarch64 SCTLR_EL1.M off: physical = virtual. On: the EL1&0 regime with
 *           the 4 KiB granule (TTBR0 for VA bit 55 clear, else TTBR1; start
 *           level from T0SZ/T1SZ; block descriptors at levels 1 and 2).
 *           The stack pointer follows PSTATE: EL1h uses SP_EL1 (regs.sp);
 *           EL0t/EL1t use SP_EL0, which the state does not hold.
 * An address that cannot be translated (a non-present or invalid entry, a
 * table outside RAM, a non-canonical address, a 16/64 KiB granule, a
 * missing system register, SP_EL0, AArch32, reserved CR3 bits) is counted
 * in `untranslatable`, not an error; one that translates to a physical
 * address outside every RAM region (e.g. MMIO) in `outside_ram`. The table
 * pages a walk read before it stopped are still listed: the CPU reads them
 * too before it faults.
 *
 * Thread-safety: reentrant; the call only reads its arguments. The page
 * source's ops are called from the calling thread only, so a source must
 * not be used by a running pager at the same time.
 */
#ifndef SQUIB_PREWARM_H
#define SQUIB_PREWARM_H

#include <squib/api.h>
#include <stddef.h>
#include <stdint.h>

#include <squib/error.h>
#include <squib/page_source.h>
#include <squib/state.h>

#ifdef __cplusplus
extern "C" {
#endif

/* Addresses per vCPU (IP, SP, the frame below SP) times pages per address
 * (up to 5 tables + the target): `cap = vcpu_count * SQUIB_PREWARM_PAGES_PER_VCPU`
 * always suffices. */
#define SQUIB_PREWARM_PAGES_PER_VCPU 18u

/* Largest source page size accepted (one page is buffered while walking). */
#define SQUIB_PREWARM_MAX_PAGE_SIZE (2ull << 20)

struct squib_prewarm_report {
	uint32_t vcpus;		 /* vCPUs examined (the state's vcpu_count) */
	uint32_t parked;	 /* of which waiting for SIPI / CPU_ON: nothing listed */
	uint32_t translated;	 /* addresses that reached a page inside RAM */
	uint32_t untranslatable; /* addresses whose walk stopped (see above) */
	uint32_t outside_ram;	 /* addresses translated outside every RAM region */
	uint32_t table_pages;	 /* distinct page-table pages in the output */
};

/*
 * The boot-critical source pages of state s, sorted ascending without
 * duplicates, into pages[0..*count). Pages are numbered as the memory file
 * and the page source number them: regions back to back, page k is bytes
 * [k * page_size, (k + 1) * page_size) of the RAM range.
 *
 * layout describes the RAM (NULL: s->memory). Only its geometry is used:
 * page_size, regions (non-empty, page-aligned, ascending, not overlapping)
 * and ram_size (their sum); id, kind and extents may be left zero by a
 * loader describing its own memory. src serves the pages and must match it
 * (same page size, ram_size / page_size pages). rep may be NULL.
 *
 * Errors: SQUIB_E_INVALID_ARGUMENT for a NULL argument, a bad geometry, a
 * source that does not match it, a page size above
 * SQUIB_PREWARM_MAX_PAGE_SIZE, an architecture without vCPU state, a vCPU
 * count above SQUIB_STATE_MAX_VCPUS — and when the pages do not fit in cap:
 * then *count receives the number needed and pages is left untouched
 * (pages may be NULL when cap is 0, to ask for the size). SQUIB_E_NOMEM;
 * a failing source read is returned as the source reported it.
 */
SQUIB_API int squib_prewarm_boot_pages(const struct squib_microvm_state *s,
				       const struct squib_memory_layout *layout,
				       const struct squib_page_source *src, uint64_t *pages,
				       size_t cap, size_t *count, struct squib_prewarm_report *rep,
				       struct squib_error_detail *d);

#ifdef __cplusplus
}
#endif
#endif /* SQUIB_PREWARM_H */
