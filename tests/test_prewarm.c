/* SPDX-License-Identifier: Apache-2.0 */
/*
 * squib_prewarm_boot_pages: boot-critical pages through saved page tables.
 *
 * Most tests write page tables by hand into a two-region RAM image (guest
 * [0, 16 MiB) and [4 GiB, 4 GiB + 2 MiB)), save it as a real memory file,
 * open it as the pager's file source and check the exact page list and the
 * report. The last test boots the counter guest on /dev/kvm with the
 * runner's own long-mode tables, saves a pair with squib_save and checks
 * the list against the tables read back from the memory file. It is
 * skipped (one loud line) only when /dev/kvm does not exist.
 */
#include "testutil.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <unistd.h>

#ifdef SQUIB_TEST_KVM
#include <squib/kvm.h>
#endif
#include <squib/load.h>
#include <squib/memfile.h>
#include <squib/pager.h>
#include <squib/prewarm.h>
#include <squib/save.h>
#include <squib/state.h>
#include <squib/sysreg.h>

#include "pair.h"

#define MiB	   (1ull << 20)
#define GiB	   (1ull << 30)
#define R0_SIZE	   (16 * MiB)
#define R1_BASE	   (4 * GiB)
#define R1_SIZE	   (2 * MiB)
#define TABLE_POOL 0x100000ull /* hand-built tables are allocated from here */
#define CAP	   128u

/* x86 */
#define CR0_PE	 1ull
#define CR0_PG	 (1ull << 31)
#define CR4_PSE	 (1ull << 4)
#define CR4_PAE	 (1ull << 5)
#define CR4_LA57 (1ull << 12)
#define EFER_LME (1ull << 8)
#define EFER_LMA (1ull << 10)
#define PTE_P	 1ull
#define PTE_RW	 2ull
#define PTE_PS	 (1ull << 7)

/* aarch64 */
#define PSTATE_EL1H 0x3c5ull /* EL1h, DAIF masked */
#define PSTATE_EL1T 0x3c4ull
#define DESC_TABLE  3ull
#define DESC_BLOCK  0x401ull /* valid, AF */
#define DESC_PAGE   0x403ull

struct mem {
	char *dir, *path;
	uint8_t *ram[2];
	uint64_t next_table;
	struct squib_memfile *mf;
	struct squib_page_source src;
	bool has_src;
	struct squib_memory_layout *layout; /* the opened file's */
};

static uint64_t ps(void)
{
	return squib_test_page_size();
}

static int setup(void **state)
{
	struct mem *m = calloc(1, sizeof(*m));

	assert_non_null(m);
	m->dir = squib_test_tmpdir();
	m->path = squib_test_path(m->dir, "ram.mem");
	for (int i = 0; i < 2; i++) {
		m->ram[i] = mmap(NULL, i ? R1_SIZE : R0_SIZE, PROT_READ | PROT_WRITE,
				 MAP_PRIVATE | MAP_ANONYMOUS | MAP_NORESERVE, -1, 0);
		assert_true(m->ram[i] != MAP_FAILED);
	}
	m->next_table = TABLE_POOL;
	*state = m;
	return 0;
}

static int teardown(void **state)
{
	struct mem *m = *state;

	if (m->has_src)
		m->src.ops->release(m->src.ctx);
	squib_memfile_close(m->mf);
	munmap(m->ram[0], R0_SIZE);
	munmap(m->ram[1], R1_SIZE);
	squib_test_rmtree(m->dir);
	free(m->dir);
	free(m->path);
	free(m);
	return 0;
}

/* Host address of guest-physical gpa (8 bytes inside RAM). */
static uint8_t *host(struct mem *m, uint64_t gpa)
{
	if (gpa + 8 <= R0_SIZE)
		return m->ram[0] + gpa;
	assert_true(gpa >= R1_BASE && gpa + 8 - R1_BASE <= R1_SIZE);
	return m->ram[1] + (gpa - R1_BASE);
}

static void put64(struct mem *m, uint64_t gpa, uint64_t v)
{
	memcpy(host(m, gpa), &v, 8);
}

static uint64_t get64(struct mem *m, uint64_t gpa)
{
	uint64_t v;

	memcpy(&v, host(m, gpa), 8);
	return v;
}

static void put32(struct mem *m, uint64_t gpa, uint32_t v)
{
	memcpy(host(m, gpa), &v, 4);
}

/* The memory file's page number of guest-physical gpa. */
static uint64_t fpage(uint64_t gpa)
{
	if (gpa < R0_SIZE)
		return gpa / ps();
	assert_true(gpa >= R1_BASE && gpa - R1_BASE < R1_SIZE);
	return (R0_SIZE + gpa - R1_BASE) / ps();
}

static uint64_t new_table(struct mem *m)
{
	uint64_t t = m->next_table;

	m->next_table += 4096;
	assert_true(m->next_table <= R0_SIZE);
	return t;
}

/* Write the RAM as a full memory file and open it as a page source. */
static void mem_open(struct mem *m)
{
	struct squib_memfile_source_region r[2] = {{0, R0_SIZE, m->ram[0]},
						   {R1_BASE, R1_SIZE, m->ram[1]}};
	struct squib_memfile_source s = {r, 2, ps()};
	struct squib_memfile_manifest man;
	struct squib_error_detail d;

	assert_int_equal(squib_memfile_save_full(m->path, &s, NULL, &man, &d), 0);
	squib_memfile_manifest_release(&man);
	assert_int_equal(squib_memfile_open(m->path, &m->mf, &d), 0);
	assert_int_equal(squib_page_source_file(m->mf, &m->src, &d), 0);
	m->has_src = true;
	m->layout = (struct squib_memory_layout *)&squib_memfile_manifest(m->mf)->layout;
}

static int prewarm(struct mem *m, const struct squib_microvm_state *s, uint64_t *pages, size_t *n,
		   struct squib_prewarm_report *r)
{
	struct squib_error_detail d = {0};
	int rc = squib_prewarm_boot_pages(s, m->layout, &m->src, pages, CAP, n, r, &d);

	if (rc)
		print_message("prewarm: %s: %s\n", squib_error_name(rc), d.msg);
	return rc;
}

static int cmp_u64(const void *a, const void *b)
{
	uint64_t x = *(const uint64_t *)a, y = *(const uint64_t *)b;

	return x < y ? -1 : x > y;
}

/* got[0..n) is exactly the file pages of gpas[0..k) (any order, duplicates allowed). */
static void expect_pages(const uint64_t *got, size_t n, const uint64_t *gpas, size_t k)
{
	uint64_t want[CAP];
	size_t w = 0;

	assert_true(k <= CAP);
	for (size_t i = 0; i < k; i++)
		want[i] = fpage(gpas[i]);
	qsort(want, k, sizeof(*want), cmp_u64);
	for (size_t i = 0; i < k; i++)
		if (!w || want[w - 1] != want[i])
			want[w++] = want[i];
	for (size_t i = 0; i < n && i < w; i++)
		if (got[i] != want[i])
			fail_msg("page %zu: got %#llx, want %#llx (gpa-derived)", i,
				 (unsigned long long)got[i], (unsigned long long)want[i]);
	assert_int_equal(n, w);
}

static void expect_report(const struct squib_prewarm_report *r, uint32_t translated,
			  uint32_t untranslatable, uint32_t outside, uint32_t tables)
{
	assert_int_equal(r->translated, translated);
	assert_int_equal(r->untranslatable, untranslatable);
	assert_int_equal(r->outside_ram, outside);
	assert_int_equal(r->table_pages, tables);
}

/* ---- x86 helpers --------------------------------------------------------------------------- */

static struct squib_x86_vcpu *x86_state(struct squib_microvm_state *s, uint32_t n)
{
	struct squib_x86_vcpu *v;

	squib_state_init(s, SQUIB_ARCH_X86_64);
	for (uint32_t i = 0; i < n; i++)
		assert_int_equal(squib_state_add_x86_vcpu(s, &v), 0);
	return s->x86_vcpus;
}

static void x86_long_mode(struct squib_x86_vcpu *v, uint64_t cr3, bool la57)
{
	v->sregs.cr0 = CR0_PE | CR0_PG;
	v->sregs.cr4 = CR4_PAE | (la57 ? CR4_LA57 : 0);
	v->sregs.efer = EFER_LME | EFER_LMA;
	v->sregs.cr3 = cr3;
	v->sregs.cs.l = 1;
	v->sregs.cs.base = 0x7770000; /* ignored in 64-bit mode */
	v->sregs.ss.base = 0x5550000;
}

/*
 * Map lin -> pa under the table at root (levels deep: 4 or 5) with a leaf at
 * `leaf` (1: 4 KiB, 2: 2 MiB, 3: 1 GiB), creating tables as needed; the
 * tables on the path are appended to path[*np].
 */
static void x86_map(struct mem *m, uint64_t root, unsigned levels, uint64_t lin, uint64_t pa,
		    unsigned leaf, uint64_t *path, size_t *np)
{
	uint64_t table = root;

	for (unsigned lvl = levels;; lvl--) {
		unsigned shift = 12 + 9 * (lvl - 1);
		uint64_t ea = table + ((lin >> shift) & 511) * 8, e;

		path[(*np)++] = table;
		if (lvl == leaf) {
			put64(m, ea,
			      (pa & ~((1ull << shift) - 1)) | PTE_P | PTE_RW |
				  (lvl > 1 ? PTE_PS : 0));
			return;
		}
		if (!((e = get64(m, ea)) & PTE_P)) {
			e = new_table(m) | PTE_P | PTE_RW;
			put64(m, ea, e);
		}
		table = e & 0x000ffffffffff000ull;
	}
}

/* ---- x86 tests ----------------------------------------------------------------------------- */

static void test_should_list_ip_and_stack_pages_with_paging_off(void **state)
{
	struct mem *m = *state;
	struct squib_microvm_state s;
	struct squib_x86_vcpu *v = x86_state(&s, 2);
	struct squib_prewarm_report r;
	uint64_t pages[CAP];
	size_t n;

	/* vCPU 0: 32-bit flat-ish protected mode, CS base added; SP on a page boundary. */
	v[0].sregs.cr0 = CR0_PE;
	v[0].sregs.cs = (struct squib_x86_segment){.base = 0x10000, .db = 1};
	v[0].sregs.ss = (struct squib_x86_segment){.base = 0, .db = 1};
	v[0].regs.rip = 0x123;
	v[0].regs.rsp = 0x9000;
	/* vCPU 1: real mode: 16-bit offsets wrap (IP high bits ignored), SP - 8 stays in page. */
	v[1].sregs.cs = (struct squib_x86_segment){.base = 0xf0000};
	v[1].sregs.ss = (struct squib_x86_segment){.base = 0x7000};
	v[1].regs.rip = 0xabcd0fff0;
	v[1].regs.rsp = 0x0c08;
	mem_open(m);
	assert_int_equal(prewarm(m, &s, pages, &n, &r), 0);
	expect_pages(pages, n,
		     (uint64_t[]){0x10123, 0x9000, 0x8ff8, 0xf0000 + 0xfff0, 0x7000 + 0xc08}, 5);
	assert_int_equal(r.vcpus, 2);
	assert_int_equal(r.parked, 0);
	expect_report(&r, 5, 0, 0, 0);
	squib_state_free(&s);
}

/* Every entry written literally: PML4 0x1000, PDPT 0x2000, PD 0x3000, PT 0x4000. */
static void test_should_walk_four_levels_to_a_4k_page(void **state)
{
	struct mem *m = *state;
	struct squib_microvm_state s;
	struct squib_x86_vcpu *v = x86_state(&s, 1);
	struct squib_prewarm_report r;
	uint64_t pages[CAP];
	size_t n;
	/* 0xffff8000_40203abc: PML4 256, PDPT 1, PD 1, PT 3, offset 0xabc */
	uint64_t rip = 0xffff800040203abcull;

	put64(m, 0x1000 + 256 * 8, 0x2000 | PTE_P | PTE_RW);
	put64(m, 0x2000 + 1 * 8, 0x3000 | PTE_P | PTE_RW);
	put64(m, 0x3000 + 1 * 8, 0x4000 | PTE_P | PTE_RW);
	put64(m, 0x4000 + 3 * 8, 0x567000 | PTE_P | (1ull << 63)); /* XD is not address */
	/* The stack: PT 4 -> 0x9000 (SP exactly at the top of PT 3's page: SP - 8 is there). */
	put64(m, 0x4000 + 4 * 8, (R1_BASE + 0x9000) | PTE_P | PTE_RW);
	x86_long_mode(&v[0], 0x1000, false);
	v[0].regs.rip = rip;
	v[0].regs.rsp = 0xffff800040204000ull;
	mem_open(m);
	assert_int_equal(prewarm(m, &s, pages, &n, &r), 0);
	expect_pages(pages, n,
		     (uint64_t[]){0x1000, 0x2000, 0x3000, 0x4000, 0x567000, R1_BASE + 0x9000}, 6);
	expect_report(&r, 3, 0, 0, 4);
	squib_state_free(&s);
}

static void test_should_stop_at_2m_and_1g_leaves(void **state)
{
	struct mem *m = *state;
	struct squib_microvm_state s;
	struct squib_x86_vcpu *v = x86_state(&s, 2);
	struct squib_prewarm_report r;
	uint64_t pages[CAP], path[16], root = new_table(m);
	size_t n, np = 0;

	/* vCPU 0: RIP through a 2 MiB page, RSP through a 1 GiB page (to 0, so low RAM). */
	x86_map(m, root, 4, 0xffffffff80000000ull, 0x400000, 2, path, &np);
	x86_map(m, root, 4, 0x0000008000000000ull, 0, 3, path, &np);
	x86_long_mode(&v[0], root, false);
	v[0].regs.rip = 0xffffffff80012345ull; /* -> 0x412345 */
	v[0].regs.rsp = 0x0000008000a00010ull; /* -> 0xa00010; SP - 8 same page */
	/* vCPU 1: same tables, RIP in the 1 GiB page at 4 GiB + 0x1000 (R1, via 1 GiB leaf 4). */
	x86_map(m, root, 4, 0x0000000100000000ull, R1_BASE, 3, path, &np);
	x86_long_mode(&v[1], root, false);
	v[1].regs.rip = 0x0000000100001ff0ull;
	v[1].regs.rsp = 0x0000008000a00010ull;
	mem_open(m);
	assert_int_equal(prewarm(m, &s, pages, &n, &r), 0);
	path[np++] = 0x412345;
	path[np++] = 0xa00010;
	path[np++] = R1_BASE + 0x1ff0;
	expect_pages(pages, n, path, np);
	/* every table x86_map created: PML4, PDPT + PD (2 MiB), two PDPTs (1 GiB) */
	expect_report(&r, 4, 0, 0, (uint32_t)(m->next_table - root) / 4096);
	squib_state_free(&s);
}

static void test_should_walk_five_levels_with_la57(void **state)
{
	struct mem *m = *state;
	struct squib_microvm_state s;
	struct squib_x86_vcpu *v = x86_state(&s, 2);
	struct squib_prewarm_report r;
	uint64_t pages[CAP], path[16], root = new_table(m);
	uint64_t lin = 0xff12345678901000ull; /* canonical with 57 bits, not with 48 */
	size_t n, np = 0;

	x86_map(m, root, 5, lin, 0x777000, 1, path, &np);
	assert_int_equal(np, 5);
	x86_map(m, root, 5, lin - 0x1000, 0x778000, 1, path, &np);
	x86_long_mode(&v[0], root, true);
	v[0].regs.rip = lin + 0x10;
	v[0].regs.rsp = lin; /* SP page 0x777000, SP - 8 in 0x778000 */
	/* vCPU 1: same registers without LA57: the addresses are not canonical. */
	x86_long_mode(&v[1], root, false);
	v[1].regs.rip = lin + 0x10;
	v[1].regs.rsp = lin;
	mem_open(m);
	assert_int_equal(prewarm(m, &s, pages, &n, &r), 0);
	path[np++] = 0x777000;
	path[np++] = 0x778000;
	expect_pages(pages, n, path, np);
	expect_report(&r, 3, 3, 0, 5);
	squib_state_free(&s);
}

static void test_should_count_non_present_entries_and_keep_the_tables_read(void **state)
{
	struct mem *m = *state;
	struct squib_microvm_state s;
	struct squib_x86_vcpu *v = x86_state(&s, 1);
	struct squib_prewarm_report r;
	uint64_t pages[CAP];
	size_t n;

	/* RIP: PML4 0 -> PDPT 0x2000 whose entry is not present. RSP: PML4 1 -> a
	 * PDPT page that is all zeros (absent from the file). */
	put64(m, 0x1000, 0x2000 | PTE_P);
	put64(m, 0x2000, 0x3000 | PTE_RW); /* P clear */
	put64(m, 0x1000 + 8, 0x6000 | PTE_P);
	x86_long_mode(&v[0], 0x1000, false);
	v[0].regs.rip = 0x1234;
	v[0].regs.rsp = 0x8000001000ull;
	mem_open(m);
	assert_false(squib_memfile_page_present(m->mf, fpage(0x6000)));
	assert_int_equal(prewarm(m, &s, pages, &n, &r), 0);
	expect_pages(pages, n, (uint64_t[]){0x1000, 0x2000, 0x6000}, 3);
	expect_report(&r, 0, 3, 0, 3);
	squib_state_free(&s);
}

static void test_should_count_pages_outside_ram(void **state)
{
	struct mem *m = *state;
	struct squib_microvm_state s;
	struct squib_x86_vcpu *v = x86_state(&s, 2);
	struct squib_prewarm_report r;
	uint64_t pages[CAP], path[16], root = new_table(m);
	size_t n, np = 0;

	/* vCPU 0: RIP maps to the LAPIC page (a hole between the regions). */
	x86_map(m, root, 4, 0x200000, 0xfee00000ull, 1, path, &np);
	x86_long_mode(&v[0], root, false);
	v[0].regs.rip = 0x200010;
	v[0].regs.rsp = 0x200ff8; /* the same page, SP - 8 too */
	/* vCPU 1: paging off, 32-bit: RIP past the end of region 0. */
	v[1].sregs.cs.db = v[1].sregs.ss.db = 1;
	v[1].regs.rip = R0_SIZE + 0x10;
	v[1].regs.rsp = 0x3000;
	mem_open(m);
	assert_int_equal(prewarm(m, &s, pages, &n, &r), 0);
	path[np++] = 0x3000;
	path[np++] = 0x2ff8;
	expect_pages(pages, n, path, np);
	expect_report(&r, 2, 0, 3, 4);
	squib_state_free(&s);
}

static void test_should_survive_hostile_cr3(void **state)
{
	struct mem *m = *state;
	struct squib_microvm_state s;
	struct squib_x86_vcpu *v = x86_state(&s, 4);
	struct squib_prewarm_report r;
	uint64_t pages[CAP], path[16], root = new_table(m);
	size_t n, np = 0;

	x86_map(m, root, 4, 0x400000, 0x400000, 2, path, &np);
	for (int i = 0; i < 4; i++) {
		v[i].regs.rip = 0x400100;
		v[i].regs.rsp = 0x400f00;
	}
	x86_long_mode(&v[0], 0x3ff000000ull, false);	    /* tables outside RAM */
	x86_long_mode(&v[1], root | 0x18 | 0x5, false);	    /* PWT|PCD, PCID bits: fine */
	x86_long_mode(&v[2], root | (1ull << 60), false);   /* reserved high bits */
	x86_long_mode(&v[3], 0xfffffffffffff000ull, false); /* all ones */
	mem_open(m);
	assert_int_equal(prewarm(m, &s, pages, &n, &r), 0);
	path[np++] = 0x400100;
	expect_pages(pages, n, path, np);
	expect_report(&r, 2, 6, 0, 3);
	squib_state_free(&s);
}

/* A PML4 entry pointing at its own table (a recursive map): the walk stays bounded. */
static void test_should_bound_a_self_referencing_walk(void **state)
{
	struct mem *m = *state;
	struct squib_microvm_state s;
	struct squib_x86_vcpu *v = x86_state(&s, 1);
	struct squib_prewarm_report r;
	uint64_t pages[CAP];
	size_t n;

	put64(m, 0x1000, 0x1000 | PTE_P | PTE_RW);
	x86_long_mode(&v[0], 0x1000, false);
	v[0].regs.rip = 0; /* every index 0: PML4, PML4, PML4, then PTE = the PML4 page itself */
	v[0].regs.rsp = 0x8;
	mem_open(m);
	assert_int_equal(prewarm(m, &s, pages, &n, &r), 0);
	expect_pages(pages, n, (uint64_t[]){0x1000}, 1);
	expect_report(&r, 2, 0, 0, 1);
	squib_state_free(&s);
}

static void test_should_walk_pae_and_32_bit_paging(void **state)
{
	struct mem *m = *state;
	struct squib_microvm_state s;
	struct squib_x86_vcpu *v = x86_state(&s, 3);
	struct squib_prewarm_report r;
	uint64_t pages[CAP];
	size_t n;

	/* vCPU 0: PAE, PDPT at 0x1020 (32-byte aligned), PDPT[3] -> PD 0x2000,
	 * PD[1] -> PT 0x3000, PT[2] -> 0x50000; RSP via a 2 MiB PDE[2]. */
	put64(m, 0x1020 + 3 * 8, 0x2000 | PTE_P);
	put64(m, 0x2000 + 1 * 8, 0x3000 | PTE_P);
	put64(m, 0x3000 + 2 * 8, 0x50000 | PTE_P);
	put64(m, 0x2000 + 2 * 8, 0x600000 | PTE_P | PTE_PS);
	v[0].sregs.cr0 = CR0_PE | CR0_PG;
	v[0].sregs.cr4 = CR4_PAE;
	v[0].sregs.cr3 = 0x1020;
	v[0].sregs.cs.db = v[0].sregs.ss.db = 1;
	v[0].regs.rip = 0xc0202004; /* PDPT 3, PD 1, PT 2 */
	v[0].regs.rsp = 0xc0412340; /* PDPT 3, PD 2: 2 MiB page -> 0x612340 */
	/* vCPU 1: 32-bit paging, PD 0x4000, PDE[1] -> PT 0x5000, PTE[3] -> 0x70000;
	 * RSP through a 4 MiB PDE[2] with PSE (PSE-36 bits zero). */
	put32(m, 0x4000 + 1 * 4, 0x5000 | PTE_P);
	put32(m, 0x5000 + 3 * 4, 0x70000 | PTE_P);
	put32(m, 0x4000 + 2 * 4, 0x800000 | PTE_P | PTE_PS);
	v[1].sregs.cr0 = CR0_PE | CR0_PG;
	v[1].sregs.cr4 = CR4_PSE;
	v[1].sregs.cr3 = 0x4000;
	v[1].sregs.cs.db = v[1].sregs.ss.db = 1;
	v[1].regs.rip = 0x00403010;
	v[1].regs.rsp = 0x00812340; /* -> 0x812340 */
	/* vCPU 2: 32-bit paging without PSE: PDE[2]'s PS is ignored, its "PT" is
	 * 0x800000 (zeros): RSP untranslatable. RIP as vCPU 1. */
	v[2].sregs = v[1].sregs;
	v[2].sregs.cr4 = 0;
	v[2].regs = v[1].regs;
	mem_open(m);
	assert_int_equal(prewarm(m, &s, pages, &n, &r), 0);
	expect_pages(pages, n,
		     (uint64_t[]){0x1020, 0x2000, 0x3000, 0x50000, 0x612340, 0x4000, 0x5000,
				  0x70000, 0x812340, 0x800000},
		     10);
	expect_report(&r, 5, 1, 0, 6);
	squib_state_free(&s);
}

static void test_should_skip_vcpus_waiting_for_sipi(void **state)
{
	struct mem *m = *state;
	struct squib_microvm_state s;
	struct squib_x86_vcpu *v = x86_state(&s, 3);
	struct squib_prewarm_report r;
	uint64_t pages[CAP];
	size_t n;

	for (int i = 0; i < 3; i++) {
		v[i].sregs.cs.db = v[i].sregs.ss.db = 1;
		v[i].regs.rip = 0x10000 * (uint64_t)(i + 1);
		v[i].regs.rsp = 0x10000 * (uint64_t)(i + 1) + 0x800;
	}
	v[1].mp_state = 1; /* KVM_MP_STATE_UNINITIALIZED */
	v[2].mp_state = 3; /* HALTED: runs again at RIP */
	mem_open(m);
	assert_int_equal(prewarm(m, &s, pages, &n, &r), 0);
	expect_pages(pages, n, (uint64_t[]){0x10000, 0x30000}, 2);
	assert_int_equal(r.vcpus, 3);
	assert_int_equal(r.parked, 1);
	expect_report(&r, 4, 0, 0, 0);
	squib_state_free(&s);
}

static void test_should_refuse_a_cap_too_small_and_say_how_many(void **state)
{
	struct mem *m = *state;
	struct squib_microvm_state s;
	struct squib_x86_vcpu *v = x86_state(&s, 1);
	struct squib_error_detail d;
	uint64_t pages[3] = {7, 7, 7};
	size_t n = 0;

	put64(m, 0x1000, 0x2000 | PTE_P);
	put64(m, 0x2000, 0x3000 | PTE_P);
	put64(m, 0x3000, 0x200000 | PTE_P | PTE_PS);
	x86_long_mode(&v[0], 0x1000, false);
	v[0].regs.rip = 0x12000;
	v[0].regs.rsp = 0x20000;
	mem_open(m);
	assert_int_equal(squib_prewarm_boot_pages(&s, m->layout, &m->src, pages, 3, &n, NULL, &d),
			 SQUIB_E_INVALID_ARGUMENT);
	assert_int_equal(n, 6); /* 3 tables, RIP, SP, SP - 8 */
	assert_non_null(strstr(d.msg, "6 pages"));
	assert_int_equal(pages[0], 7); /* untouched */
	n = 0;
	assert_int_equal(squib_prewarm_boot_pages(&s, m->layout, &m->src, NULL, 0, &n, NULL, &d),
			 SQUIB_E_INVALID_ARGUMENT);
	assert_int_equal(n, 6);
	assert_true(n <= s.vcpu_count * SQUIB_PREWARM_PAGES_PER_VCPU);
	squib_state_free(&s);
}

/* ---- a source that fails ------------------------------------------------------------------- */

static bool all_present(void *ctx, uint64_t page)
{
	(void)ctx;
	(void)page;
	return true;
}

/* ctx NULL: a SQUIB_E_* with its detail; else the int it points to, raw. */
static int failing_read(void *ctx, uint64_t first, uint64_t count, void *buf,
			struct squib_error_detail *d)
{
	(void)first;
	(void)count;
	(void)buf;
	return ctx ? *(const int *)ctx : squib_fail_errno(d, SQUIB_E_MEMORY_IO, EIO);
}

static void no_release(void *ctx)
{
	(void)ctx;
}

static void test_should_refuse_bad_arguments_and_pass_source_errors_on(void **state)
{
	static const struct squib_page_source_ops fail_ops = {all_present, failing_read,
							      no_release};
	struct mem *m = *state;
	struct squib_microvm_state s, a;
	struct squib_x86_vcpu *v = x86_state(&s, 1);
	struct squib_error_detail d;
	struct squib_page_source bad;
	uint64_t pages[CAP];
	size_t n;

	x86_long_mode(&v[0], 0x1000, false);
	mem_open(m);
	/* No layout given and none in the state. */
	assert_int_equal(squib_prewarm_boot_pages(&s, NULL, &m->src, pages, CAP, &n, NULL, &d),
			 SQUIB_E_INVALID_ARGUMENT);
	assert_int_equal(squib_prewarm_boot_pages(&s, m->layout, NULL, pages, CAP, &n, NULL, &d),
			 SQUIB_E_INVALID_ARGUMENT);
	assert_int_equal(squib_prewarm_boot_pages(&s, m->layout, &m->src, NULL, CAP, &n, NULL, &d),
			 SQUIB_E_INVALID_ARGUMENT);
	/* A source whose geometry does not match the layout. */
	bad = m->src;
	bad.page_count--;
	assert_int_equal(squib_prewarm_boot_pages(&s, m->layout, &bad, pages, CAP, &n, NULL, &d),
			 SQUIB_E_INVALID_ARGUMENT);
	/* Only the geometry counts: regions alone (no id, no extents) are enough... */
	{
		struct squib_memory_layout g = {.page_size = m->layout->page_size,
						.ram_size = m->layout->ram_size,
						.region_count = m->layout->region_count,
						.regions = m->layout->regions};
		struct squib_mem_region two[2] = {m->layout->regions[0], m->layout->regions[1]};

		assert_int_equal(
		    squib_prewarm_boot_pages(&s, &g, &m->src, pages, CAP, &n, NULL, &d), 0);
		/* ... but they must be ordered, aligned and add up. */
		g.regions = two;
		two[1].guest_addr = two[0].guest_addr + 4096;
		assert_int_equal(
		    squib_prewarm_boot_pages(&s, &g, &m->src, pages, CAP, &n, NULL, &d),
		    SQUIB_E_INVALID_ARGUMENT);
		two[1] = m->layout->regions[1];
		two[1].guest_addr += 1;
		assert_int_equal(
		    squib_prewarm_boot_pages(&s, &g, &m->src, pages, CAP, &n, NULL, &d),
		    SQUIB_E_INVALID_ARGUMENT);
		two[1] = m->layout->regions[1];
		g.ram_size += 4096;
		assert_int_equal(
		    squib_prewarm_boot_pages(&s, &g, &m->src, pages, CAP, &n, NULL, &d),
		    SQUIB_E_INVALID_ARGUMENT);
		g.ram_size = m->layout->ram_size;
		g.page_size = 3 * 4096;
		assert_int_equal(
		    squib_prewarm_boot_pages(&s, &g, &m->src, pages, CAP, &n, NULL, &d),
		    SQUIB_E_INVALID_ARGUMENT);
	}
	/* The layout of the state itself is used when none is given. */
	assert_int_equal(squib_state_set_memory(&s, m->layout, &d), 0);
	assert_int_equal(squib_prewarm_boot_pages(&s, NULL, &m->src, pages, CAP, &n, NULL, &d), 0);
	/* A failing read is returned as the source reported it. */
	bad = (struct squib_page_source){&fail_ops, NULL, m->src.page_size, m->src.page_count};
	assert_int_equal(squib_prewarm_boot_pages(&s, NULL, &bad, pages, CAP, &n, NULL, &d),
			 SQUIB_E_MEMORY_IO);
	assert_int_equal(d.os_errno, EIO);
	/* The backend rule (squib/error.h): -errno is SQUIB_E_IO with the errno, any
	 * other value a backend bug (SQUIB_E_CAPTURE), never passed through raw. */
	{
		static const int eintr = -EINTR, seven = 7;

		bad.ctx = (void *)&eintr;
		assert_int_equal(squib_prewarm_boot_pages(&s, NULL, &bad, pages, CAP, &n, NULL, &d),
				 SQUIB_E_IO);
		assert_int_equal(d.os_errno, EINTR);
		assert_non_null(strstr(d.msg, "page source"));
		bad.ctx = (void *)&seven;
		assert_int_equal(squib_prewarm_boot_pages(&s, NULL, &bad, pages, CAP, &n, NULL, &d),
				 SQUIB_E_CAPTURE);
	}
	/* An aarch64 state claiming vCPUs without their array. */
	squib_state_init(&a, SQUIB_ARCH_AARCH64);
	a.vcpu_count = 2;
	assert_int_equal(squib_prewarm_boot_pages(&a, m->layout, &m->src, pages, CAP, &n, NULL, &d),
			 SQUIB_E_INVALID_ARGUMENT);
	a.vcpu_count = 0;
	squib_state_free(&a);
	squib_state_free(&s);
}

/* xorshift64: a function, so that two calls in one expression are sequenced. */
static uint64_t rnd(uint64_t *x)
{
	*x ^= *x << 13;
	*x ^= *x >> 7;
	*x ^= *x << 17;
	return *x;
}

/* Random page tables and random control registers: never a crash, every address counted. */
static void test_should_never_crash_on_random_tables_and_registers(void **state)
{
	struct mem *m = *state;
	struct squib_microvm_state s;
	struct squib_x86_vcpu *v = x86_state(&s, 4);
	struct squib_prewarm_report r;
	uint64_t pages[CAP], x = 0x9e3779b97f4a7c15ull;
	size_t n;
	uint64_t walked = 0, tables = 0;

	/* Tables full of entries pointing back into the first 64 KiB, with random flags. */
	for (uint64_t a = 0; a < 0x10000; a += 8)
		put64(m, a, (rnd(&x) & 0xf000) | (rnd(&x) & 0x8000000000000fffull));
	mem_open(m);
	for (int iter = 0; iter < 3000; iter++) {
		for (uint32_t i = 0; i < 4; i++) {
			struct squib_x86_sregs *sr = &v[i].sregs;

			sr->cr0 = rnd(&x) & (CR0_PE | CR0_PG);
			sr->cr4 = rnd(&x) & (CR4_PSE | CR4_PAE | CR4_LA57);
			sr->efer = rnd(&x) & EFER_LMA;
			sr->cr3 = rnd(&x) & 3 ? rnd(&x) & 0xffff : rnd(&x);
			sr->cs.l = rnd(&x) & 1;
			sr->cs.db = sr->ss.db = rnd(&x) & 1;
			sr->cs.base = rnd(&x) & 1 ? 0 : rnd(&x);
			sr->ss.base = rnd(&x) & 1 ? 0 : rnd(&x);
			v[i].regs.rip = rnd(&x) & 1 ? rnd(&x) & 0xffffff : rnd(&x);
			v[i].regs.rsp = rnd(&x) & 1 ? rnd(&x) & 0xffffff : rnd(&x);
			v[i].mp_state = (uint32_t)(rnd(&x) % 4);
		}
		assert_int_equal(prewarm(m, &s, pages, &n, &r), 0);
		assert_true(n <= 4 * SQUIB_PREWARM_PAGES_PER_VCPU);
		/* per running vCPU: RIP, SP and maybe SP - 8 */
		assert_true(r.translated + r.untranslatable + r.outside_ram >= 2 * (4 - r.parked));
		assert_true(r.translated + r.untranslatable + r.outside_ram <= 3 * (4 - r.parked));
		for (size_t i = 1; i < n; i++)
			assert_true(pages[i - 1] < pages[i]);
		walked += r.translated;
		tables += r.table_pages;
		for (size_t i = 0; i < n; i++)
			assert_true(pages[i] < m->src.page_count);
	}
	print_message("random: %llu addresses translated, %llu table pages\n",
		      (unsigned long long)walked, (unsigned long long)tables);
	assert_true(walked > 0 && tables > 0); /* the random input reaches the walkers */
	squib_state_free(&s);
}

/* ---- aarch64 ------------------------------------------------------------------------------- */

static uint64_t key(const char *name)
{
	const struct squib_sysreg_info *i = squib_sysreg_by_name(name);

	assert_non_null(i);
	return i->key;
}

static struct squib_arm64_vcpu *a64_vcpu(struct squib_microvm_state *s, uint64_t pc, uint64_t sp,
					 uint64_t pstate)
{
	struct squib_arm64_vcpu *v;

	assert_int_equal(squib_state_add_arm64_vcpu(s, s->vcpu_count, &v), 0);
	v->psci_state = SQUIB_PSCI_ON;
	v->regs.pc = pc;
	v->regs.sp = sp;
	v->regs.pstate = pstate;
	return v;
}

static void a64_mmu(struct squib_arm64_vcpu *v, uint64_t sctlr, uint64_t tcr, uint64_t ttbr0,
		    uint64_t ttbr1)
{
	assert_int_equal(squib_arm64_vcpu_set_sysreg(v, key("SCTLR_EL1"), sctlr), 0);
	assert_int_equal(squib_arm64_vcpu_set_sysreg(v, key("TCR_EL1"), tcr), 0);
	assert_int_equal(squib_arm64_vcpu_set_sysreg(v, key("TTBR0_EL1"), ttbr0), 0);
	assert_int_equal(squib_arm64_vcpu_set_sysreg(v, key("TTBR1_EL1"), ttbr1), 0);
}

/*
 * Map va -> pa from the table at `table` (start level lvl, top_bits index
 * bits there) with a leaf at level `leaf` (3: page, 2 or 1: block).
 */
static void a64_map(struct mem *m, uint64_t table, unsigned lvl, unsigned top_bits, uint64_t va,
		    uint64_t pa, unsigned leaf, uint64_t *path, size_t *np)
{
	for (unsigned bits = top_bits;; lvl++, bits = 9) {
		unsigned shift = 12 + 9 * (3 - lvl);
		uint64_t ea = table + ((va >> shift) & ((1ull << bits) - 1)) * 8, e;

		path[(*np)++] = table;
		if (lvl == leaf) {
			put64(m, ea,
			      (pa & ~((1ull << shift) - 1)) | (lvl == 3 ? DESC_PAGE : DESC_BLOCK));
			return;
		}
		if (!((e = get64(m, ea)) & 1)) {
			e = new_table(m) | DESC_TABLE;
			put64(m, ea, e);
		}
		table = e & 0x0000fffffffff000ull;
	}
}

#define TCR_T0SZ(n) ((uint64_t)(n))
#define TCR_T1SZ(n) ((uint64_t)(n) << 16)
#define TCR_TG1_4K  (2ull << 30)
#define TCR_TG0_64K (1ull << 14)
#define TCR_EPD0    (1ull << 7)
#define TCR_TBI0    (1ull << 37)

static void test_should_use_physical_addresses_with_the_mmu_off(void **state)
{
	struct mem *m = *state;
	struct squib_microvm_state s;
	struct squib_prewarm_report r;
	uint64_t pages[CAP];
	size_t n;

	squib_state_init(&s, SQUIB_ARCH_AARCH64);
	a64_mmu(a64_vcpu(&s, 0x80000, 0x200008, PSTATE_EL1H), 0x30d00800, 0, 0, 0);
	/* SP 0x200008: SP - 16 is in the page below. */
	a64_mmu(a64_vcpu(&s, R1_BASE + 0x1000, 0x300000 + 0x800, PSTATE_EL1H), 0, 0, 0, 0);
	mem_open(m);
	assert_int_equal(prewarm(m, &s, pages, &n, &r), 0);
	expect_pages(pages, n,
		     (uint64_t[]){0x80000, 0x200008, 0x1ffff8, R1_BASE + 0x1000, 0x300800}, 5);
	expect_report(&r, 5, 0, 0, 0);
	squib_state_free(&s);
}

static void test_should_walk_4k_granule_tables_through_ttbr0_and_ttbr1(void **state)
{
	struct mem *m = *state;
	struct squib_microvm_state s;
	struct squib_prewarm_report r;
	uint64_t pages[CAP], path[32], l0 = new_table(m), l1 = new_table(m);
	uint64_t tcr = TCR_T0SZ(16) | TCR_T1SZ(25) | TCR_TG1_4K;
	uint64_t kva = 0xffffff8000000000ull; /* the first VA of TTBR1 with T1SZ 25 */
	size_t n, np = 0;

	/* TTBR0, 48-bit VA, 4 levels from L0: PC to a 4 KiB page, SP to a 2 MiB block. */
	a64_map(m, l0, 0, 9, 0x0000123456789000ull, 0x345000, 3, path, &np);
	a64_map(m, l0, 0, 9, 0x0000400000200000ull, R1_BASE, 2, path, &np);
	/* TTBR1, 39-bit VA, 3 levels from L1: PC to a 1 GiB block (at 0). */
	a64_map(m, l1, 1, 9, kva + 0x40000000, 0, 1, path, &np);
	squib_state_init(&s, SQUIB_ARCH_AARCH64);
	a64_mmu(a64_vcpu(&s, 0x0000123456789abcull, 0x0000400000200100ull, PSTATE_EL1H), 1, tcr,
		l0 | (5ull << 48), l1);
	/* ASID bits in TTBR0 are not address; a TTBR1 PC, and a TTBR0 SP. */
	a64_mmu(a64_vcpu(&s, kva + 0x40000000 + 0xa0010, 0x0000400000200000ull, PSTATE_EL1H), 1,
		tcr, l0, l1);
	mem_open(m);
	assert_int_equal(prewarm(m, &s, pages, &n, &r), 0);
	path[np++] = 0x345abc;
	path[np++] = R1_BASE + 0x100;
	path[np++] = 0xa0010;
	path[np++] = R1_BASE;
	/* vCPU 1's SP - 16 is 0x00004000001ffff0: below the block, unmapped (L2 entry 0). */
	expect_pages(pages, n, path, np);
	expect_report(&r, 4, 1, 0, (uint32_t)(m->next_table - l0) / 4096);
	squib_state_free(&s);
}

/* T0SZ 24: 40-bit VA, the L0 table has two entries and is only 16-byte aligned. */
static void test_should_walk_a_short_start_table(void **state)
{
	struct mem *m = *state;
	struct squib_microvm_state s;
	struct squib_prewarm_report r;
	uint64_t pages[CAP], l1 = new_table(m);
	size_t n;

	put64(m, 0x5010 + 8, l1 | DESC_TABLE);		  /* L0[1]: VA bit 39 */
	put64(m, l1 + 2 * 8, 0x40000000ull | DESC_BLOCK); /* no RAM there */
	put64(m, l1 + 0 * 8, 0x00000000ull | DESC_BLOCK); /* 1 GiB block at 0 */
	squib_state_init(&s, SQUIB_ARCH_AARCH64);
	a64_mmu(a64_vcpu(&s, 0x8000000000ull + 0x12345, 0x8080000000ull, PSTATE_EL1H), 1,
		TCR_T0SZ(24), 0x5010, 0);
	mem_open(m);
	assert_int_equal(prewarm(m, &s, pages, &n, &r), 0);
	/* PC -> 0x12345; SP -> L1[2] (outside RAM), SP - 16 -> L1[1] (invalid). */
	expect_pages(pages, n, (uint64_t[]){0x5010, l1, 0x12345}, 3);
	expect_report(&r, 1, 1, 1, 2);
	squib_state_free(&s);
}

static void test_should_count_what_the_a64_walk_cannot_translate(void **state)
{
	struct mem *m = *state;
	struct squib_microvm_state s;
	struct squib_arm64_vcpu *v;
	struct squib_prewarm_report r;
	uint64_t pages[CAP], path[8], l0 = new_table(m);
	uint64_t tcr = TCR_T0SZ(16) | TCR_T1SZ(25) | TCR_TG1_4K;
	size_t n, np = 0;

	a64_map(m, l0, 0, 9, 0x1000, 0x1000, 3, path, &np);
	squib_state_init(&s, SQUIB_ARCH_AARCH64);
	/* 0: 64 KiB granule for TTBR0: PC and SP (same page) untranslatable. */
	a64_mmu(a64_vcpu(&s, 0x1000, 0x1800, PSTATE_EL1H), 1, tcr | TCR_TG0_64K, l0, 0);
	/* 1: TTBR0 walks disabled (EPD0). */
	a64_mmu(a64_vcpu(&s, 0x1000, 0x1800, PSTATE_EL1H), 1, tcr | TCR_EPD0, l0, 0);
	/* 2: EL1t: the PC translates, SP is SP_EL0 (not in the state). */
	a64_mmu(a64_vcpu(&s, 0x1004, 0x1800, PSTATE_EL1T), 1, tcr, l0, 0);
	/* 3: AArch32 (nRW): both untranslatable. */
	a64_vcpu(&s, 0x1000, 0x1800, 0x10 | 0x13);
	/* 4: no SCTLR_EL1 saved. */
	a64_vcpu(&s, 0x1000, 0x1800, PSTATE_EL1H);
	/* 5: a tag in bit 56 without TBI: outside T0SZ's range; 6: the same with TBI0. */
	a64_mmu(a64_vcpu(&s, 0x0100000000001008ull, 0x1800, PSTATE_EL1H), 1, tcr, l0, 0);
	a64_mmu(a64_vcpu(&s, 0x0100000000001008ull, 0x0200000000001800ull, PSTATE_EL1H), 1,
		tcr | TCR_TBI0, l0, 0);
	/* 7: PSCI Off: waits for CPU_ON, nothing listed. */
	v = a64_vcpu(&s, 0x9999000, 0x9999000, PSTATE_EL1H);
	v->psci_state = SQUIB_PSCI_OFF;
	mem_open(m);
	assert_int_equal(prewarm(m, &s, pages, &n, &r), 0);
	path[np++] = 0x1000;
	expect_pages(pages, n, path, np);
	assert_int_equal(r.vcpus, 8);
	assert_int_equal(r.parked, 1);
	/* translated: 2's PC, 5's SP, 6's PC and SP; the rest untranslatable */
	expect_report(&r, 4, 2 + 2 + 1 + 2 + 2 + 1, 0, 4);
	squib_state_free(&s);
}

/* The same for aarch64: random TCR, TTBRs, SCTLR, PSTATE and addresses. */
static void test_should_never_crash_on_random_a64_registers(void **state)
{
	struct mem *m = *state;
	struct squib_microvm_state s;
	struct squib_prewarm_report r;
	uint64_t pages[CAP], x = 0x2545f4914f6cdd1dull;
	size_t n;
	uint64_t walked = 0, tables = 0;

	for (uint64_t a = 0; a < 0x10000; a += 8)
		put64(m, a, (rnd(&x) & 0xf000) | (rnd(&x) & 0xfff0000000000fffull));
	squib_state_init(&s, SQUIB_ARCH_AARCH64);
	for (int i = 0; i < 4; i++)
		a64_vcpu(&s, 0, 0, 0);
	mem_open(m);
	for (int iter = 0; iter < 3000; iter++) {
		for (uint32_t i = 0; i < 4; i++) {
			struct squib_arm64_vcpu *v = &s.arm64_vcpus[i];
			uint64_t tcr = rnd(&x) & 1 ? rnd(&x) : (rnd(&x) & 0x3f003full) | TCR_TG1_4K;

			uint64_t sctlr = rnd(&x) & 1;
			uint64_t t0 = rnd(&x) & 1 ? rnd(&x) & 0xfff0 : rnd(&x);
			uint64_t t1 = rnd(&x) & 1 ? rnd(&x) & 0xfff0 : rnd(&x);

			a64_mmu(v, sctlr, tcr, t0, t1);
			v->regs.pc = rnd(&x) & 1 ? rnd(&x) & 0xffff : rnd(&x);
			v->regs.sp = rnd(&x) & 1 ? rnd(&x) & 0xffff : rnd(&x);
			v->regs.pstate = rnd(&x) & 1 ? PSTATE_EL1H : rnd(&x) & 0x1f;
			v->psci_state = (enum squib_psci_state)(rnd(&x) % 3);
		}
		assert_int_equal(prewarm(m, &s, pages, &n, &r), 0);
		assert_true(n <= 4 * SQUIB_PREWARM_PAGES_PER_VCPU);
		assert_true(r.translated + r.untranslatable + r.outside_ram >= 2 * (4 - r.parked));
		assert_true(r.translated + r.untranslatable + r.outside_ram <= 3 * (4 - r.parked));
		for (size_t i = 1; i < n; i++)
			assert_true(pages[i - 1] < pages[i]);
		walked += r.translated;
		tables += r.table_pages;
	}
	print_message("random: %llu addresses translated, %llu table pages\n",
		      (unsigned long long)walked, (unsigned long long)tables);
	assert_true(walked > 0 && tables > 0); /* the random input reaches the walkers */
	squib_state_free(&s);
}

/* ---- the real thing: KVM's long-mode tables ------------------------------------------------ */

#define KVM_RAM	     (4 * MiB)
#define KVM_TABLES   0x1000ull /* GDT, PML4, PDPT, PD */
#define KVM_CODE     0x10000ull
#define KVM_COUNTERS 0x20000ull
#define KVM_STACKS   0x40000ull
#define KVM_PORT     0x3f0
#define KVM_VCPUS    2u
#define KVM_WAIT_MS  10000u /* a safety net for a broken run */

/* The loop of tests/guests/counter.S, assembled: mov (%rsi),%rax; inc %rax;
 * mov %rax,(%rsi); test $0x3ff,%eax; jne 0b; out %eax,(%dx); jmp 0b. */
static const uint8_t counter_code[] = {0x48, 0x8b, 0x06, 0x48, 0xff, 0xc0, 0x48, 0x89, 0x06, 0xa9,
				       0xff, 0x03, 0x00, 0x00, 0x75, 0xf0, 0xef, 0xeb, 0xed};

static void kvm_check(int rc, const struct squib_error_detail *d, const char *what)
{
	if (rc)
		fail_msg("%s: %s: %s", what, squib_error_name(rc), d->msg);
}

#ifdef SQUIB_TEST_KVM
/* Boot the counter guest on 2 vCPUs, let it report, save a Full pair while it runs. */
static void kvm_save_counter_pair(const char *state_path, const char *mem_path)
{
	struct squib_kvm_config cfg = SQUIB_KVM_CONFIG_INIT;
	struct squib_kvm_adapter_config acfg = {false, NULL, NULL};
	struct squib_save_request req = SQUIB_SAVE_REQUEST_INIT(state_path, mem_path);
	struct squib_save_report rep;
	struct squib_error_detail d = {0};
	struct squib_kvm_counter *ctr;
	struct squib_kvm_adapter *a = NULL;
	struct squib_kvm_vm *vm = NULL;
	struct squib_kvm_boot b;
	struct squib_vm v;

	memset(&b, 0, sizeof(b));
	b.tables_gpa = KVM_TABLES;
	b.map_size = KVM_RAM;
	for (uint32_t i = 0; i < KVM_VCPUS; i++) /* RSP on a page boundary: SP - 8 below it */
		b.entry[i] = (struct squib_kvm_entry){KVM_CODE, KVM_STACKS + (i + 1) * 4096, 0,
						      KVM_COUNTERS + i * 4096, KVM_PORT};
	cfg.vcpu_count = KVM_VCPUS;
	kvm_check(squib_kvm_vm_new(&cfg, &vm, &d), &d, "vm_new");
	kvm_check(squib_kvm_vm_add_ram(vm, 0, KVM_RAM, NULL, NULL, &d), &d, "add_ram");
	kvm_check(squib_kvm_vm_add_counter(vm, KVM_PORT, &ctr, &d), &d, "add_counter");
	kvm_check(squib_kvm_vm_write(vm, KVM_CODE, counter_code, sizeof(counter_code), &d), &d,
		  "write");
	kvm_check(squib_kvm_vm_boot_long_mode(vm, &b, &d), &d, "boot");
	kvm_check(squib_kvm_vm_start(vm, &d), &d, "start");
	for (uint32_t i = 0; i < KVM_VCPUS; i++)
		kvm_check(squib_kvm_counter_wait(ctr, i, 2, KVM_WAIT_MS, NULL, &d), &d, "wait");
	kvm_check(squib_kvm_adapter_new(vm, &acfg, &a, &d), &d, "adapter");
	v = squib_kvm_adapter_vm(a);
	kvm_check(squib_save(&v, &req, &rep, &d), &d, "save");
	assert_true(rep.resumed);
	squib_kvm_adapter_free(a);
	squib_kvm_vm_free(vm);
}
#else
/* No KVM backend on this target (not x86_64: docs/DESIGN.md §15). */
static void kvm_save_counter_pair(const char *state_path, const char *mem_path)
{
	(void)state_path;
	(void)mem_path;
	fprintf(stderr, "*** SKIPPED test_should_walk_the_tables_of_a_saved_kvm_guest: "
			"no KVM backend on this target ***\n");
	skip();
}
#endif

static uint64_t file_u64(const struct squib_memfile *mf, uint64_t gpa)
{
	uint8_t page[65536];
	struct squib_error_detail d;
	uint64_t v, base = gpa & ~(ps() - 1);

	assert_true(ps() <= sizeof(page));
	kvm_check(squib_memfile_read_page(mf, base, page, &d), &d, "read_page");
	memcpy(&v, page + (gpa - base), 8);
	return v;
}

static bool listed(const uint64_t *pages, size_t n, uint64_t gpa)
{
	for (size_t i = 0; i < n; i++)
		if (pages[i] == gpa / ps())
			return true;
	return false;
}

static void test_should_walk_the_tables_of_a_saved_kvm_guest(void **state)
{
	struct mem *m = *state;
	char *state_path = squib_test_path(m->dir, "kvm.snap");
	char *mem_path = squib_test_path(m->dir, "kvm.mem");
	struct squib_microvm_state s;
	struct squib_memfile *mf = NULL;
	struct squib_page_source src;
	struct squib_prewarm_report r;
	struct squib_error_detail d = {0};
	uint64_t pages[CAP];
	size_t n;

	if (access("/dev/kvm", F_OK)) {
		fprintf(stderr, "*** SKIPPED test_should_walk_the_tables_of_a_saved_kvm_guest: "
				"/dev/kvm does not exist on this machine ***\n");
		free(state_path);
		free(mem_path);
		skip();
	}
	kvm_save_counter_pair(state_path, mem_path);
	kvm_check(squib_load_state_only(state_path, SQUIB_ARCH_X86_64, &s, NULL, &d), &d, "load");
	kvm_check(squib_memfile_open(mem_path, &mf, &d), &d, "open");
	kvm_check(squib_page_source_file(mf, &src, &d), &d, "source");
	kvm_check(squib_prewarm_boot_pages(&s, NULL, &src, pages, CAP, &n, &r, &d), &d, "prewarm");
	print_message("prewarm of the saved counter guest: %zu pages (%u tables), %u addresses\n",
		      n, r.table_pages, r.translated);

	/* The runner's identity map: PML4 0x2000, PDPT 0x3000, one PD 0x4000 (2 MiB pages). */
	assert_int_equal(r.vcpus, KVM_VCPUS);
	expect_report(&r, 2 * 3, 0, 0, 3);
	for (uint32_t i = 0; i < KVM_VCPUS; i++) {
		const struct squib_x86_vcpu *v = &s.x86_vcpus[i];
		uint64_t cr3 = v->sregs.cr3 & ~0xfffull, rip = v->regs.rip;
		uint64_t pml4e = file_u64(mf, cr3), pdpte, pde;

		/* The walk, re-done on the file's bytes: every table it reads is listed. */
		assert_true(listed(pages, n, cr3)); /* the PML4 page is CR3's page */
		assert_true(pml4e & PTE_P);
		pdpte = file_u64(mf, (pml4e & 0x000ffffffffff000ull) + ((rip >> 30) & 511) * 8);
		assert_true(listed(pages, n, pml4e & 0x000ffffffffff000ull));
		assert_true(pdpte & PTE_P);
		pde = file_u64(mf, (pdpte & 0x000ffffffffff000ull) + ((rip >> 21) & 511) * 8);
		assert_true(listed(pages, n, pdpte & 0x000ffffffffff000ull));
		assert_true((pde & PTE_P) && (pde & PTE_PS));
		/* RIP is inside the guest loop, identity-mapped; its page is listed and
		 * holds the code in the file. */
		assert_true(rip >= KVM_CODE && rip < KVM_CODE + sizeof(counter_code));
		assert_int_equal((pde & 0x000fffffffe00000ull) | (rip & 0x1fffff), rip);
		assert_true(listed(pages, n, rip));
		assert_true(listed(pages, n, v->regs.rsp));
		assert_true(listed(pages, n, v->regs.rsp - 8));
		assert_int_equal(file_u64(mf, KVM_CODE) & 0xffffff, 0x068b48); /* mov (%rsi),%rax */
	}
	expect_pages(pages, n,
		     (uint64_t[]){0x2000, 0x3000, 0x4000, KVM_CODE, KVM_STACKS, KVM_STACKS + 0x1000,
				  KVM_STACKS + 0x2000},
		     7);
	src.ops->release(src.ctx);
	squib_memfile_close(mf);
	squib_state_free(&s);
	free(state_path);
	free(mem_path);
}

#define T(fn) cmocka_unit_test_setup_teardown(fn, setup, teardown)

int main(void)
{
	const struct CMUnitTest tests[] = {
	    T(test_should_list_ip_and_stack_pages_with_paging_off),
	    T(test_should_walk_four_levels_to_a_4k_page),
	    T(test_should_stop_at_2m_and_1g_leaves),
	    T(test_should_walk_five_levels_with_la57),
	    T(test_should_count_non_present_entries_and_keep_the_tables_read),
	    T(test_should_count_pages_outside_ram),
	    T(test_should_survive_hostile_cr3),
	    T(test_should_bound_a_self_referencing_walk),
	    T(test_should_walk_pae_and_32_bit_paging),
	    T(test_should_skip_vcpus_waiting_for_sipi),
	    T(test_should_refuse_a_cap_too_small_and_say_how_many),
	    T(test_should_refuse_bad_arguments_and_pass_source_errors_on),
	    T(test_should_never_crash_on_random_tables_and_registers),
	    T(test_should_use_physical_addresses_with_the_mmu_off),
	    T(test_should_walk_4k_granule_tables_through_ttbr0_and_ttbr1),
	    T(test_should_walk_a_short_start_table),
	    T(test_should_count_what_the_a64_walk_cannot_translate),
	    T(test_should_never_crash_on_random_a64_registers),
	    T(test_should_walk_the_tables_of_a_saved_kvm_guest),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
