/* SPDX-License-Identifier: Apache-2.0 */
/*
 * Fuzz the pre-warm page-table walk (src/prewarm.c) over attacker-controlled
 * guest memory and registers: a restored snapshot's RAM and vCPU state are
 * both the file's, so every page-table entry, CR3/TTBR, segment base and
 * mode bit is hostile.
 *
 * Input: a header of 32 bytes plus one 512-byte block per possible vCPU (4),
 * then RAM (at most 64 pages of 4 KiB). Header byte 0 picks the architecture
 * and the vCPU count (1..4); byte 1 the number of RAM regions (1..3); byte 2
 * which pages the source calls absent; bytes 8..31 the gaps between regions'
 * guest addresses. vCPU i's block is copied over its registers (x86: regs,
 * sregs, MP state; aarch64: sp, pc, pstate, PSCI state, then SCTLR, TTBR0,
 * TTBR1 and TCR, each kept unless its flag byte is zero).
 *
 * Invariants: no crash, no leak, no out-of-bounds read; success lists
 * pages sorted, unique and inside the RAM; asking with cap 0 reports the
 * size the real call then fills.
 */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include <squib/prewarm.h>
#include <squib/state.h>

#include "../src/util.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

#define CTL   32u
#define BLOCK 512u
#define HDR   (CTL + 4 * BLOCK)
#define PS    4096u
#define MAXPG 64u

struct ram {
	const uint8_t *bytes; /* pages * PS, the tail of a short input read as zeros */
	size_t len;
	uint64_t pages, absent_mask;
};

static bool ram_present(void *ctx, uint64_t page)
{
	const struct ram *r = ctx;

	return page < r->pages && !(r->absent_mask & (1ull << (page % 64)));
}

static int ram_read(void *ctx, uint64_t first, uint64_t count, void *buf,
		    struct squib_error_detail *d)
{
	const struct ram *r = ctx;
	uint8_t *out = buf;

	(void)d;
	if (first > r->pages || count > r->pages - first)
		abort(); /* the walk asked past the source: a bug */
	for (uint64_t k = 0; k < count; k++) {
		uint64_t off = (first + k) * PS;
		size_t have = off < r->len ? r->len - off : 0;

		have = have > PS ? PS : have;
		memcpy(out + k * PS, r->bytes + off, have);
		memset(out + k * PS + have, 0, PS - have);
	}
	return 0;
}

static const struct squib_page_source_ops ram_ops = {ram_present, ram_read, NULL};

_Static_assert(sizeof(struct squib_x86_regs) + sizeof(struct squib_x86_sregs) + 1 <= BLOCK,
	       "an x86 vCPU's registers fit its block");

static int add_x86(struct squib_microvm_state *s, const uint8_t *b)
{
	struct squib_x86_vcpu *v;

	if (squib_state_add_x86_vcpu(s, &v))
		return -1;
	memcpy(&v->regs, b, sizeof(v->regs));
	memcpy(&v->sregs, b + sizeof(v->regs), sizeof(v->sregs));
	v->mp_state = b[sizeof(v->regs) + sizeof(v->sregs)] % 5;
	return 0;
}

/* Block: sp, pc, pstate (24 bytes), PSCI state, then 4 x (flag byte, u64) sysregs. */
static int add_a64(struct squib_microvm_state *s, const uint8_t *b, uint32_t i)
{
	static const uint64_t keys[] = {1, 2, 3, 6}; /* SCTLR, TTBR0, TTBR1, TCR */
	struct squib_arm64_vcpu *v;

	if (squib_state_add_arm64_vcpu(s, i, &v))
		return -1;
	memcpy(&v->regs.sp, b, 3 * sizeof(uint64_t));
	v->psci_state = (enum squib_psci_state)(b[24] % 3);
	for (size_t k = 0; k < 4; k++)
		if (b[25 + 9 * k] &&
		    squib_arm64_vcpu_set_sysreg(v, keys[k], squib_get_le64(b + 26 + 9 * k)))
			return -1;
	return 0;
}

static void check(const uint64_t *pages, size_t n, uint64_t total)
{
	for (size_t i = 0; i < n; i++)
		if (pages[i] >= total || (i && pages[i] <= pages[i - 1]))
			abort();
}

static int build(struct squib_microvm_state *s, struct squib_memory_layout *l,
		 struct squib_mem_region *regs, const uint8_t *h, uint64_t pages)
{
	bool x86 = h[0] & 1;
	uint32_t vcpus = 1 + ((h[0] >> 1) & 3), nreg = 1 + h[1] % 3;
	uint64_t addr = 0, per = pages / nreg;

	if (per == 0)
		nreg = 1, per = pages;
	squib_state_init(s, x86 ? SQUIB_ARCH_X86_64 : SQUIB_ARCH_AARCH64);
	for (uint32_t i = 0; i < vcpus; i++)
		if (x86 ? add_x86(s, h + CTL + i * BLOCK) : add_a64(s, h + CTL + i * BLOCK, i))
			return -1;
	memset(l, 0, sizeof(*l));
	l->page_size = PS;
	l->region_count = nreg;
	l->regions = regs;
	for (uint32_t i = 0; i < nreg; i++) {
		uint64_t gap = (uint64_t)squib_get_le64(h + 8 + 8 * i) & 0xffffffffull;
		uint64_t size = (i + 1 == nreg ? pages - per * i : per) * PS;

		addr += gap & ~(uint64_t)(PS - 1);
		regs[i] = (struct squib_mem_region){addr, size};
		addr += size;
	}
	l->ram_size = pages * PS;
	return 0;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	struct squib_mem_region regs[3];
	struct squib_microvm_state s;
	struct squib_memory_layout l;
	struct squib_prewarm_report rep;
	struct ram r;
	struct squib_page_source src;
	uint64_t *pages = NULL;
	size_t need = 0, got = 0;

	if (size < HDR)
		return 0;
	r.bytes = data + HDR;
	r.len = size - HDR;
	r.pages = r.len / PS + 1 > MAXPG ? MAXPG : r.len / PS + 1;
	r.absent_mask = data[2] & 0x80 ? ~0ull : (uint64_t)data[2] * 0x0101010101010101ull;
	if (build(&s, &l, regs, data, r.pages) == 0) {
		src = (struct squib_page_source){&ram_ops, &r, PS, r.pages};
		if (squib_prewarm_boot_pages(&s, &l, &src, NULL, 0, &need, &rep, NULL) ==
			SQUIB_E_INVALID_ARGUMENT &&
		    need && (pages = malloc(need * sizeof(*pages)))) {
			if (squib_prewarm_boot_pages(&s, &l, &src, pages, need, &got, &rep, NULL) ||
			    got != need)
				abort();
			check(pages, got, r.pages);
		}
	}
	free(pages);
	squib_state_free(&s);
	return 0;
}
