/* SPDX-License-Identifier: Apache-2.0 */
/* Boot-critical pages: each vCPU's IP and stack pages, translated through the saved page tables. */
#include <squib/prewarm.h>

#include <inttypes.h>
#include <stdbool.h>
#include <stdlib.h>
#include <string.h>

#include "util.h"

/* A walk's outcome; a negative value is a SQUIB_E_* from the page source. */
enum { WALK_OK = 0, WALK_FAULT = 1 };

/* The stack frame below SP that the first push writes. */
#define X86_PUSH_BYTES	 8u
#define A64_PUSH_BYTES	 16u /* stp x29, x30, [sp, #-16]! */
#define GUEST_PAGE_SHIFT 12  /* both architectures' translation granule here */

struct pw {
	const struct squib_memory_layout *l;
	const struct squib_page_source *src;
	struct squib_error_detail *d;
	uint8_t *buf;	   /* one source page */
	uint64_t buf_page; /* the page buf holds; UINT64_MAX: none */
	uint64_t *list;	   /* page << 1 | 1 for a table page */
	size_t n, max;
	struct squib_prewarm_report r;
};

/* Source page and byte offset of guest-physical pa; false outside every region. */
static bool phys_page(const struct squib_memory_layout *l, uint64_t pa, uint64_t *page,
		      uint64_t *off)
{
	uint64_t base = 0; /* file offset of region i */

	for (uint32_t i = 0; i < l->region_count; i++) {
		const struct squib_mem_region *g = &l->regions[i];

		if (pa >= g->guest_addr && pa - g->guest_addr < g->size) {
			uint64_t fo = base + (pa - g->guest_addr);

			*page = fo / l->page_size;
			*off = fo % l->page_size;
			return true;
		}
		base += g->size;
	}
	return false;
}

static void pw_push(struct pw *w, uint64_t page, bool table)
{
	if (w->n < w->max) /* max is the proven bound; never taken */
		w->list[w->n++] = page << 1 | (table ? 1u : 0u);
}

/*
 * The width-byte entry at guest-physical pa of a page table. Its page is
 * boot-critical (the CPU reads it too). A table outside RAM stops the walk.
 * The entry is naturally aligned, so it never crosses a page.
 */
static int read_entry(struct pw *w, uint64_t pa, unsigned width, uint64_t *val)
{
	uint64_t page, off;
	int rc;

	if (!phys_page(w->l, pa, &page, &off))
		return WALK_FAULT;
	pw_push(w, page, true);
	if (!w->src->ops->present(w->src->ctx, page)) {
		*val = 0;
		return WALK_OK;
	}
	if (w->buf_page != page) {
		w->buf_page = UINT64_MAX;
		squib_error_clear(w->d);
		rc = w->src->ops->read(w->src->ctx, page, 1, w->buf, w->d);
		if (rc) /* the backend rule: -errno is SQUIB_E_IO, a stray value a bug */
			return squib_backend_rc(rc, w->d, "page source: reading page %" PRIu64,
						page);
		w->buf_page = page;
	}
	*val = width == 8 ? squib_get_le64(w->buf + off) : squib_get_le32(w->buf + off);
	return WALK_OK;
}

/* Count one address's outcome; list its page when it lands in RAM. */
static int account(struct pw *w, int rc, uint64_t pa)
{
	uint64_t page, off;

	if (rc < 0)
		return rc;
	if (rc == WALK_FAULT) {
		w->r.untranslatable++;
	} else if (!phys_page(w->l, pa, &page, &off)) {
		w->r.outside_ram++;
	} else {
		pw_push(w, page, false);
		w->r.translated++;
	}
	return 0;
}

/* ---- x86_64 ---------------------------------------------------------------------------------- */

#define X86_CR0_PG   (1ull << 31)
#define X86_CR4_PSE  (1ull << 4)
#define X86_CR4_PAE  (1ull << 5)
#define X86_CR4_LA57 (1ull << 12)
#define X86_EFER_LMA (1ull << 10)
#define X86_P	     1ull
#define X86_PS	     (1ull << 7)
#define X86_ADDR     0x000ffffffffff000ull /* bits 51:12: the widest MAXPHYADDR */

#define X86_MP_UNINITIALIZED 1u /* KVM_MP_STATE_*: an AP waiting for INIT/SIPI */
#define X86_MP_INIT_RECEIVED 2u

/* 8-byte-entry levels from `top` down to 1 (4 KiB); PS makes a leaf at levels 2 and 3. */
static int x86_walk_levels(struct pw *w, uint64_t table, uint64_t lin, unsigned top, uint64_t *pa)
{
	for (unsigned lvl = top; lvl >= 1; lvl--) {
		unsigned shift = 12 + 9 * (lvl - 1);
		uint64_t e, mask = (1ull << shift) - 1;
		int rc = read_entry(w, table + ((lin >> shift) & 511) * 8, 8, &e);

		if (rc)
			return rc;
		if (!(e & X86_P) || ((e & X86_PS) && lvl > 3))
			return WALK_FAULT; /* PS is reserved in a PML4E / PML5E */
		if (lvl == 1 || (e & X86_PS)) {
			/* ~mask also drops a large page's PAT bit (bit 12). */
			*pa = (e & X86_ADDR & ~mask) | (lin & mask);
			return WALK_OK;
		}
		table = e & X86_ADDR;
	}
	return WALK_FAULT;
}

static int x86_walk_long(struct pw *w, const struct squib_x86_sregs *sr, uint64_t lin, uint64_t *pa)
{
	bool la57 = sr->cr4 & X86_CR4_LA57;
	unsigned bits = la57 ? 57 : 48;
	uint64_t canon = (uint64_t)((int64_t)(lin << (64 - bits)) >> (64 - bits));

	/* Bits 63:52 of CR3 are reserved: a CPU refuses to load such a value. */
	if (canon != lin || !(sr->cr4 & X86_CR4_PAE) || (sr->cr3 >> 52))
		return WALK_FAULT;
	return x86_walk_levels(w, sr->cr3 & X86_ADDR, lin, la57 ? 5 : 4, pa);
}

/* PAE without long mode: a 4-entry PDPT at CR3[31:5] (read from memory, as
 * the state holds no PDPTE registers), then a PD and a PT. */
static int x86_walk_pae(struct pw *w, const struct squib_x86_sregs *sr, uint64_t lin, uint64_t *pa)
{
	uint64_t e;
	int rc = read_entry(w, (sr->cr3 & 0xffffffe0ull) + ((lin >> 30) & 3) * 8, 8, &e);

	if (rc)
		return rc;
	if (!(e & X86_P))
		return WALK_FAULT;
	return x86_walk_levels(w, e & X86_ADDR, lin, 2, pa);
}

/* 32-bit paging: 4-byte entries, 4 MiB pages with CR4.PSE (PSE-36 high bits). */
static int x86_walk_32(struct pw *w, const struct squib_x86_sregs *sr, uint64_t lin, uint64_t *pa)
{
	uint64_t e;
	int rc = read_entry(w, (sr->cr3 & 0xfffff000ull) + ((lin >> 22) & 1023) * 4, 4, &e);

	if (rc)
		return rc;
	if (!(e & X86_P))
		return WALK_FAULT;
	if ((e & X86_PS) && (sr->cr4 & X86_CR4_PSE)) {
		*pa = (e & 0xffc00000ull) | ((e >> 13) & 0xff) << 32 | (lin & 0x3fffff);
		return WALK_OK;
	}
	rc = read_entry(w, (e & 0xfffff000ull) + ((lin >> 12) & 1023) * 4, 4, &e);
	if (rc)
		return rc;
	if (!(e & X86_P))
		return WALK_FAULT;
	*pa = (e & 0xfffff000ull) | (lin & 0xfff);
	return WALK_OK;
}

static int x86_translate(struct pw *w, const struct squib_x86_sregs *sr, uint64_t lin, uint64_t *pa)
{
	if (!(sr->cr0 & X86_CR0_PG)) {
		*pa = lin;
		return WALK_OK;
	}
	if (sr->efer & X86_EFER_LMA)
		return x86_walk_long(w, sr, lin, pa);
	if (sr->cr4 & X86_CR4_PAE)
		return x86_walk_pae(w, sr, lin, pa);
	return x86_walk_32(w, sr, lin, pa);
}

/* Offset width of a segment: 64 in 64-bit mode (base ignored), else its D/B bit. */
static unsigned x86_width(const struct squib_x86_sregs *sr, const struct squib_x86_segment *seg)
{
	if ((sr->efer & X86_EFER_LMA) && sr->cs.l)
		return 64;
	return seg->db ? 32 : 16;
}

/* Linear address of offset off in seg; outside 64-bit mode the offset wraps
 * at the segment's width and the sum at 4 GiB. */
static uint64_t x86_linear(const struct squib_x86_segment *seg, uint64_t off, unsigned width)
{
	if (width == 64)
		return off;
	off &= width == 32 ? 0xffffffffull : 0xffffull;
	return (seg->base + off) & 0xffffffffull;
}

static int x86_address(struct pw *w, const struct squib_x86_sregs *sr, uint64_t lin)
{
	uint64_t pa = 0;
	int rc = x86_translate(w, sr, lin, &pa); /* before account reads pa */

	return account(w, rc, pa);
}

static int x86_vcpu_pages(struct pw *w, const struct squib_x86_vcpu *v)
{
	const struct squib_x86_sregs *sr = &v->sregs;
	unsigned cw = x86_width(sr, &sr->cs), sw = x86_width(sr, &sr->ss);
	uint64_t ip = x86_linear(&sr->cs, v->regs.rip, cw);
	uint64_t sp = x86_linear(&sr->ss, v->regs.rsp, sw);
	uint64_t below = x86_linear(&sr->ss, v->regs.rsp - X86_PUSH_BYTES, sw);
	int rc;

	if (v->mp_state == X86_MP_UNINITIALIZED || v->mp_state == X86_MP_INIT_RECEIVED) {
		w->r.parked++; /* the SIPI sets a new RIP */
		return 0;
	}
	if ((rc = x86_address(w, sr, ip)) || (rc = x86_address(w, sr, sp)))
		return rc;
	if (below >> GUEST_PAGE_SHIFT != sp >> GUEST_PAGE_SHIFT)
		rc = x86_address(w, sr, below);
	return rc;
}

/* ---- aarch64 --------------------------------------------------------------------------------- */

/* Wire keys of squib/sysreg.h (append-only, so fixed). */
#define A64_KEY_SCTLR 1u
#define A64_KEY_TTBR0 2u
#define A64_KEY_TTBR1 3u
#define A64_KEY_TCR   6u

#define A64_SCTLR_M   1ull
#define A64_PSTATE_32 (1ull << 4)	    /* nRW: AArch32 */
#define A64_OA	      0x0000fffffffff000ull /* output address bits 47:12 */
#define A64_TTB	      0x0000fffffffffffeull /* TTBR BADDR bits 47:1 */

struct a64_mmu {
	bool known; /* SCTLR_EL1 (and, with M set, TCR and both TTBRs) saved */
	bool on;
	uint64_t tcr, ttbr[2];
};

static void a64_mmu_of(const struct squib_arm64_vcpu *v, struct a64_mmu *m)
{
	uint64_t sctlr = 0;

	memset(m, 0, sizeof(*m));
	if (!squib_arm64_vcpu_get_sysreg(v, A64_KEY_SCTLR, &sctlr))
		return;
	m->on = sctlr & A64_SCTLR_M;
	m->known = !m->on || (squib_arm64_vcpu_get_sysreg(v, A64_KEY_TCR, &m->tcr) &&
			      squib_arm64_vcpu_get_sysreg(v, A64_KEY_TTBR0, &m->ttbr[0]) &&
			      squib_arm64_vcpu_get_sysreg(v, A64_KEY_TTBR1, &m->ttbr[1]));
}

/* The TCR_EL1 fields of one half (TTBR0 or TTBR1). */
struct a64_half {
	unsigned tsz;
	bool disabled, granule_4k, tbi;
};

static struct a64_half a64_half_of(uint64_t tcr, unsigned hi, bool ifetch)
{
	struct a64_half h;
	/* TBIDn (bits 51/52) keeps the tag in instruction addresses. */
	bool tbid = (tcr >> (hi ? 52 : 51)) & 1;

	h.tsz = (unsigned)(tcr >> (hi ? 16 : 0)) & 63;
	h.disabled = (tcr >> (hi ? 23 : 7)) & 1;
	/* TG0 0b00 and TG1 0b10 are 4 KiB. */
	h.granule_4k = ((tcr >> (hi ? 30 : 14)) & 3) == (hi ? 2u : 0u);
	h.tbi = ((tcr >> (hi ? 38 : 37)) & 1) && !(ifetch && tbid);
	return h;
}

/* Are VA bits [top-1 : ia] all equal to bit 55? (Else a translation fault.) */
static bool a64_in_range(uint64_t va, unsigned ia, bool tbi, unsigned hi)
{
	uint64_t top = tbi ? (1ull << 56) - 1 : ~0ull;
	uint64_t range = top & ~((1ull << ia) - 1);

	return (va & range) == (hi ? range : 0);
}

/* The EL1&0 walk with the 4 KiB granule; TCR.DS (52-bit descriptors) is not supported. */
static int a64_walk(struct pw *w, const struct a64_mmu *m, uint64_t va, bool ifetch, uint64_t *pa)
{
	unsigned hi = (va >> 55) & 1, ia, levels, lvl, idx_bits;
	struct a64_half h = a64_half_of(m->tcr, hi, ifetch);
	uint64_t table;

	if (h.disabled || !h.granule_4k || ((m->tcr >> 59) & 1) || h.tsz < 16 || h.tsz > 39)
		return WALK_FAULT;
	ia = 64 - h.tsz;
	if (!a64_in_range(va, ia, h.tbi, hi))
		return WALK_FAULT;
	levels = (ia - 12 + 8) / 9;
	lvl = 4 - levels;
	idx_bits = ia - (12 + 9 * (levels - 1)); /* the start table may be short */
	table = m->ttbr[hi] & A64_TTB & ~((8ull << idx_bits) - 1);
	for (;; lvl++, idx_bits = 9) {
		unsigned shift = 12 + 9 * (3 - lvl);
		uint64_t e, mask = (1ull << shift) - 1;
		int rc =
		    read_entry(w, table + ((va >> shift) & ((1ull << idx_bits) - 1)) * 8, 8, &e);

		if (rc)
			return rc;
		if (!(e & 1))
			return WALK_FAULT;
		/* bit 1: table (levels 0-2) or page (level 3); clear: block (levels 1-2). */
		if (lvl == 3 || !(e & 2)) {
			if ((lvl == 3 && !(e & 2)) || lvl == 0)
				return WALK_FAULT;
			*pa = (e & A64_OA & ~mask) | (va & mask);
			return WALK_OK;
		}
		table = e & A64_OA;
	}
}

static int a64_address(struct pw *w, const struct a64_mmu *m, uint64_t va, bool ifetch)
{
	uint64_t pa = va;
	int rc = WALK_OK;

	if (!m->known)
		rc = WALK_FAULT;
	else if (m->on)
		rc = a64_walk(w, m, va, ifetch, &pa);
	return account(w, rc, pa);
}

static int a64_vcpu_pages(struct pw *w, const struct squib_arm64_vcpu *v)
{
	uint64_t ps = v->regs.pstate, sp = v->regs.sp, below = sp - A64_PUSH_BYTES;
	unsigned el = (unsigned)(ps >> 2) & 3;
	struct a64_mmu m;
	int rc;

	if (v->psci_state == SQUIB_PSCI_OFF) {
		w->r.parked++; /* CPU_ON sets a new PC */
		return 0;
	}
	if ((ps & A64_PSTATE_32) || el > 1) {
		w->r.untranslatable += 2; /* AArch32, or an EL whose registers are not saved */
		return 0;
	}
	a64_mmu_of(v, &m);
	if ((rc = a64_address(w, &m, v->regs.pc, true)))
		return rc;
	if (el != 1 || !(ps & 1)) {
		w->r.untranslatable++; /* EL0t / EL1t: SP_EL0, not in the state */
		return 0;
	}
	if ((rc = a64_address(w, &m, sp, false)))
		return rc;
	if (below >> GUEST_PAGE_SHIFT != sp >> GUEST_PAGE_SHIFT)
		rc = a64_address(w, &m, below, false);
	return rc;
}

/* ---- the list -------------------------------------------------------------------------------- */

static int cmp_u64(const void *a, const void *b)
{
	uint64_t x = *(const uint64_t *)a, y = *(const uint64_t *)b;

	return x < y ? -1 : x > y;
}

/* Sort, merge duplicates (a page is a table page if any entry says so), drop the flag. */
static size_t pw_finish(struct pw *w)
{
	size_t out = 0;

	qsort(w->list, w->n, sizeof(*w->list), cmp_u64);
	for (size_t i = 0; i < w->n;) {
		uint64_t page = w->list[i] >> 1;
		bool table = false;

		for (; i < w->n && w->list[i] >> 1 == page; i++)
			table |= w->list[i] & 1;
		w->list[out++] = page; /* out is at most this group's first index */
		w->r.table_pages += table;
	}
	return out;
}

/* Only the geometry is used, so only it is checked: a loader may describe its
 * memory without the file's id and extents. */
static int check_geometry(const struct squib_memory_layout *l, struct squib_error_detail *d)
{
	uint64_t ps = l->page_size, sum = 0, end = 0;

	if (ps < SQUIB_MEMORY_MIN_PAGE_SIZE || ps > SQUIB_PREWARM_MAX_PAGE_SIZE || (ps & (ps - 1)))
		return squib_fail_msg(
		    d, SQUIB_E_INVALID_ARGUMENT,
		    "prewarm: page size %llu is not a power of two in [%llu, %llu]",
		    (unsigned long long)ps, (unsigned long long)SQUIB_MEMORY_MIN_PAGE_SIZE,
		    (unsigned long long)SQUIB_PREWARM_MAX_PAGE_SIZE);
	if (!l->regions || !l->region_count || l->region_count > SQUIB_MEMORY_MAX_REGIONS)
		return squib_fail_msg(d, SQUIB_E_INVALID_ARGUMENT, "prewarm: %u regions",
				      l->region_count);
	for (uint32_t i = 0; i < l->region_count; i++) {
		const struct squib_mem_region *g = &l->regions[i];

		if (!g->size || g->guest_addr % ps || g->size % ps || (i && g->guest_addr < end) ||
		    g->size > UINT64_MAX - g->guest_addr ||
		    g->size > SQUIB_MEMORY_MAX_RAM_SIZE - sum)
			return squib_fail_msg(d, SQUIB_E_INVALID_ARGUMENT,
					      "prewarm: region %u is empty, unaligned, out of "
					      "order or too large",
					      i);
		end = g->guest_addr + g->size;
		sum += g->size;
	}
	if (sum != l->ram_size)
		return squib_fail_msg(d, SQUIB_E_INVALID_ARGUMENT,
				      "prewarm: regions sum to %llu bytes, ram_size is %llu",
				      (unsigned long long)sum, (unsigned long long)l->ram_size);
	return 0;
}

static int check_args(const struct squib_microvm_state *s, const struct squib_memory_layout *l,
		      const struct squib_page_source *src, struct squib_error_detail *d)
{
	int rc;

	if (!src->ops || !src->ops->present || !src->ops->read)
		return squib_fail_msg(d, SQUIB_E_INVALID_ARGUMENT,
				      "prewarm: page source without ops");
	if ((rc = check_geometry(l, d)))
		return rc;
	if (src->page_size != l->page_size || src->page_count != l->ram_size / l->page_size)
		return squib_fail_msg(d, SQUIB_E_INVALID_ARGUMENT,
				      "prewarm: page source does not match the memory layout");
	if (s->vcpu_count > SQUIB_STATE_MAX_VCPUS)
		return squib_fail_msg(d, SQUIB_E_INVALID_ARGUMENT, "prewarm: %u vCPUs",
				      s->vcpu_count);
	if (s->vcpu_count && !(s->arch == SQUIB_ARCH_X86_64    ? (void *)s->x86_vcpus
			       : s->arch == SQUIB_ARCH_AARCH64 ? (void *)s->arm64_vcpus
							       : NULL))
		return squib_fail_msg(d, SQUIB_E_INVALID_ARGUMENT, "prewarm: no %s vCPU state",
				      squib_arch_name(s->arch));
	return 0;
}

static int walk_all(struct pw *w, const struct squib_microvm_state *s)
{
	int rc = 0;

	for (uint32_t i = 0; !rc && i < s->vcpu_count; i++) {
		w->r.vcpus++;
		rc = s->arch == SQUIB_ARCH_X86_64 ? x86_vcpu_pages(w, &s->x86_vcpus[i])
						  : a64_vcpu_pages(w, &s->arm64_vcpus[i]);
	}
	return rc;
}

int squib_prewarm_boot_pages(const struct squib_microvm_state *s,
			     const struct squib_memory_layout *layout,
			     const struct squib_page_source *src, uint64_t *pages, size_t cap,
			     size_t *count, struct squib_prewarm_report *rep,
			     struct squib_error_detail *d)
{
	struct pw w;
	size_t n;
	int rc;

	if (!s || !src || !count || (cap && !pages))
		return squib_fail_msg(d, SQUIB_E_INVALID_ARGUMENT, "prewarm: NULL argument");
	if (!layout && !(layout = s->memory))
		return squib_fail_msg(d, SQUIB_E_INVALID_ARGUMENT,
				      "prewarm: no memory layout (the state has none)");
	if ((rc = check_args(s, layout, src, d)))
		return rc;
	memset(&w, 0, sizeof(w));
	w.l = layout;
	w.src = src;
	w.d = d;
	w.buf_page = UINT64_MAX;
	w.max = (size_t)s->vcpu_count * SQUIB_PREWARM_PAGES_PER_VCPU;
	w.buf = malloc(layout->page_size);
	w.list = malloc((w.max ? w.max : 1) * sizeof(*w.list));
	if (!w.buf || !w.list)
		rc = squib_fail(d, SQUIB_E_NOMEM);
	if (!rc)
		rc = walk_all(&w, s);
	if (!rc) {
		n = pw_finish(&w);
		*count = n;
		if (rep)
			*rep = w.r;
		if (n > cap)
			rc = squib_fail_msg(d, SQUIB_E_INVALID_ARGUMENT,
					    "prewarm: %zu pages do not fit in %zu", n, cap);
		else if (n)
			memcpy(pages, w.list, n * sizeof(*pages));
	}
	free(w.buf);
	free(w.list);
	return rc;
}
