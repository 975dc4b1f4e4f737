/* SPDX-License-Identifier: Apache-2.0 */
/*
 * Writes the seed corpora of fuzz_memfile_reader, fuzz_rebase_chain, fuzz_chain,
 * fuzz_pair_binding and fuzz_prewarm (fuzz/corpus/<target>/) from files the
 * library itself writes, so each fuzzer starts from inputs that pass every
 * check. Not built by CMake (the corpus is committed); to regenerate, from
 * the repository root after `cmake --build build`:
 *
 *   cc -std=gnu11 -Iinclude -Itests/support fuzz/gen_seeds.c \
 *      build/tests/libsquib_test_support.a build/libsquib_internal.a \
 *      -lcmocka -ljansson -lzstd -lcurl -lcrypto -lpthread -o /tmp/gen_seeds \
 *      && /tmp/gen_seeds fuzz/corpus
 */
#include "pair.h"
#include "testutil.h"

#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>

#include <squib/snapshot.h>

static uint8_t *slurp(const char *path, size_t *len)
{
	uint8_t *b = NULL;

	if (squib_test_read_file(path, &b, len))
		abort();
	return b;
}

static void put(const char *root, const char *target, const char *name, const void *a, size_t alen,
		const void *b, size_t blen)
{
	char path[4096];
	FILE *f;

	snprintf(path, sizeof(path), "%s/%s", root, target);
	mkdir(path, 0755);
	snprintf(path, sizeof(path), "%s/%s/%s", root, target, name);
	if (!(f = fopen(path, "wb")) || fwrite(a, 1, alen, f) != alen ||
	    (blen && fwrite(b, 1, blen, f) != blen) || fclose(f))
		abort();
}

static void le32(uint8_t *p, uint32_t v)
{
	for (int i = 0; i < 4; i++)
		p[i] = (uint8_t)(v >> (8 * i));
}

/* A chain seed: byte 0 (bit 0: two diffs), two le32 lengths, then the files. */
static void chain_seed(const char *root, const char *name, const char *const *files, int n)
{
	size_t len[3], total = 9;
	uint8_t *b[3], *buf;

	for (int i = 0; i < n; i++) {
		b[i] = slurp(files[i], &len[i]);
		total += len[i];
	}
	buf = calloc(1, total);
	buf[0] = n == 3;
	le32(buf + 1, (uint32_t)len[0]);
	le32(buf + 5, n == 3 ? (uint32_t)len[1] : 0);
	for (int i = 0, off = 9; i < n; off += (int)len[i], i++)
		memcpy(buf + off, b[i], len[i]);
	put(root, "fuzz_rebase_chain", name, buf, total, NULL, 0);
	put(root, "fuzz_chain", name, buf, total, NULL, 0); /* the same input format */
	for (int i = 0; i < n; i++)
		free(b[i]);
	free(buf);
}

static void pair_seed(const char *root, const char *name, const char *snap, const char *mem)
{
	size_t sl, ml;
	uint8_t *s = slurp(snap, &sl), *m = slurp(mem, &ml), *buf = malloc(4 + sl);

	le32(buf, (uint32_t)sl);
	memcpy(buf + 4, s, sl);
	put(root, "fuzz_pair_binding", name, buf, 4 + sl, m, ml);
	free(s);
	free(m);
	free(buf);
}

#define CTL   32u
#define BLOCK 512u
#define HDR   (CTL + 4 * BLOCK)
#define PS    4096u

static void put64(uint8_t *p, uint64_t v)
{
	for (int i = 0; i < 8; i++)
		p[i] = (uint8_t)(v >> (8 * i));
}

/* x86_64 4-level paging identity-mapping 64 KiB (large: a 2 MiB PD leaf instead). */
static void prewarm_x86(const char *root, const char *name, int large)
{
	uint8_t *in = calloc(1, HDR + 16 * PS), *ram = in + HDR, *b = in + CTL;
	struct squib_x86_regs r = {0};
	struct squib_x86_sregs s = {0};

	in[0] = 1; /* x86, 1 vCPU */
	put64(ram + 0x1000, 0x2003);
	put64(ram + 0x2000, 0x3003);
	put64(ram + 0x3000, large ? 0x83 : 0x4003);
	for (int i = 0; i < 16; i++)
		put64(ram + 0x4000 + 8 * i, (uint64_t)i * PS | 3);
	r.rip = 0x5000;
	r.rsp = 0x8000;
	s.cr0 = 0x80000001;
	s.cr3 = 0x1000;
	s.cr4 = 0x20;
	s.efer = 0x500;
	s.cs.l = 1;
	s.cs.present = s.ss.present = 1;
	memcpy(b, &r, sizeof(r));
	memcpy(b + sizeof(r), &s, sizeof(s));
	put(root, "fuzz_prewarm", name, in, HDR + 16 * PS, NULL, 0);
	free(in);
}

/* aarch64, 4 KiB granule, 48-bit VA, TTBR0 at 0x1000 mapping 64 KiB (mmu 0: MMU off). */
static void prewarm_a64(const char *root, const char *name, int mmu)
{
	uint8_t *in = calloc(1, HDR + 16 * PS), *ram = in + HDR, *b = in + CTL;

	in[0] = 0; /* aarch64, 1 vCPU */
	put64(ram + 0x1000, 0x2003);
	put64(ram + 0x2000, 0x3003);
	put64(ram + 0x3000, 0x4003);
	for (int i = 0; i < 16; i++)
		put64(ram + 0x4000 + 8 * i, (uint64_t)i * PS | 0x403);
	put64(b, 0x8000);			      /* sp */
	put64(b + 8, 0x5000);			      /* pc */
	put64(b + 16, 0x5);			      /* pstate: EL1h */
	b[24] = 0;				      /* PSCI on */
	b[25] = 1, put64(b + 26, mmu ? 1 : 0);	      /* SCTLR_EL1.M */
	b[34] = 1, put64(b + 35, 0x1000);	      /* TTBR0 */
	b[43] = 1, put64(b + 44, 0);		      /* TTBR1 */
	b[52] = 1, put64(b + 53, 16 | (16ull << 16)); /* TCR: T0SZ = T1SZ = 16, 4 KiB */
	put(root, "fuzz_prewarm", name, in, HDR + 16 * PS, NULL, 0);
	free(in);
}

int main(int argc, char **argv)
{
	static const uint64_t a[] = {1, 2}, bpages[] = {2, 5};
	const char *root = argc > 1 ? argv[1] : "fuzz/corpus";
	char *dir = squib_test_tmpdir(), *snap, *base, *d1, *d2, *d1snap, *d1p, *d2p, *d1psnap;
	uint64_t ram = 8 * squib_test_page_size();
	uint8_t *mem = squib_test_guest_ram(ram, 3);
	struct squib_memfile_manifest m0, m1, m2;
	size_t len;
	uint8_t *b;

	memset(mem + 6 * squib_test_page_size(), 0, 2 * squib_test_page_size()); /* holes */
	squib_test_save_pair(dir, "base", mem, ram, true, &snap, &base, &m0);
	d1 = squib_test_path(dir, "d1.mem");
	d2 = squib_test_path(dir, "d2.mem");
	d1p = squib_test_path(dir, "d1p.mem");
	d2p = squib_test_path(dir, "d2p.mem");
	d1psnap = squib_test_path(dir, "d1p.snap");
	d1snap = squib_test_path(dir, "d1.snap");
	squib_test_fill_page(mem, 1, 9);
	squib_test_save_diff(d1, mem, ram, m0.layout.id, a, 2, false, &m1);
	squib_test_save_state(d1snap, &m1.layout);
	squib_test_fill_page(mem, 5, 10);
	squib_test_save_diff(d2, mem, ram, m1.layout.id, bpages, 2, true, &m2);
	b = slurp(base, &len);
	put(root, "fuzz_memfile_reader", "full-digests", b, len, NULL, 0);
	free(b);
	b = slurp(d2, &len);
	put(root, "fuzz_memfile_reader", "diff-digests", b, len, NULL, 0);
	free(b);
	/* The same diffs PACKED (memory file 1.1). */
	{
		struct squib_memfile_write_options po = {.packed = true},
						   pdo = {.packed = true, .digests = true};
		struct squib_memfile_manifest p1;

		squib_test_save_diff_ex(d1p, mem, ram, m0.layout.id, a, 2, &po, &p1);
		squib_test_save_state(d1psnap, &p1.layout);
		squib_test_save_diff_ex(d2p, mem, ram, p1.layout.id, bpages, 2, &pdo, NULL);
		squib_memfile_manifest_release(&p1);
	}
	b = slurp(d2p, &len);
	put(root, "fuzz_memfile_reader", "diff-packed-digests", b, len, NULL, 0);
	free(b);
	chain_seed(root, "base-d1p", (const char *const[]){base, d1p}, 2);
	chain_seed(root, "base-d1p-d2p", (const char *const[]){base, d1p, d2p}, 3);
	chain_seed(root, "base-d1", (const char *const[]){base, d1}, 2);
	chain_seed(root, "base-d1-d2", (const char *const[]){base, d1, d2}, 3);
	pair_seed(root, "full-pair", snap, base);
	pair_seed(root, "diff-pair", d1snap, d1);
	pair_seed(root, "diff-pair-packed", d1psnap, d1p);
	prewarm_x86(root, "x86-4level", 0);
	prewarm_x86(root, "x86-2m-leaf", 1);
	prewarm_a64(root, "a64-mmu-on", 1);
	prewarm_a64(root, "a64-mmu-off", 0);
	squib_test_rmtree(dir);
	printf("seeds written under %s\n", root);
	return 0;
}
