/* SPDX-License-Identifier: Apache-2.0 */
/*
 * Content of the golden state files in tests/fixtures/, built in memory.
 *
 * tests/fixtures/gen_fixtures.c writes them; tests/test_golden.c rebuilds them
 * and compares byte for byte, so a format change that is not followed by
 * scripts/gen-fixtures.sh fails loudly. demo.snap is not here: its content is
 * examples/produce_demo_pair.c's (the test runs that program instead).
 *
 * Every builder is deterministic and starts from an uninitialised state.
 */
#ifndef SQUIB_TEST_FIXTURES_H
#define SQUIB_TEST_FIXTURES_H

#include <stddef.h>

#include <squib/state.h>

/* Tag of the unknown, skippable section maximal.snap carries. */
#define SQUIB_FIXTURE_EXTRA_TAG 0x7ff0u

struct squib_fixture {
	const char *file; /* name in tests/fixtures/ */
	int (*build)(struct squib_microvm_state *s);
};

/* 1 vCPU without sysregs, a 1-byte GIC blob, no devices, no MMDS, empty strings,
 * no initrd. */
int squib_fixture_minimal(struct squib_microvm_state *s);

/* 32 vCPUs with all 47 sysregs and every PSCI state, 16 devices with blobs, a
 * 64 KiB GIC blob, MMDS with a TTL, an initrd, and one unknown skippable section. */
int squib_fixture_maximal(struct squib_microvm_state *s);

/* An x86_64 file: VM info and devices, no vCPUs (x86 vCPU state comes later). */
int squib_fixture_x86(struct squib_microvm_state *s);

/*
 * The golden memory files, written into dir (0, or a SQUIB_E_* with a message
 * on stderr). One region of 16 KiB at guest 0x80000000, 4 KiB pages:
 *   mem-full.mem         version 1.0.0, docs/FORMAT.md §M.7's example: pages 1-2
 *                        0xab, id 10 11 .. 1f, no digests
 *   mem-diff.mem         version 1.0.0 fixed-offset diff over it: page 0 0xcd,
 *                        page 2 0xef, page 3 0x01; digests; id 20 .. 2f
 *   mem-diff-packed.mem  version 1.1.0, the same pages PACKED; id 30 .. 3f
 * The two diffs read the same memory over mem-full.mem.
 */
#define SQUIB_FIXTURE_MEM_FULL	 "mem-full.mem"
#define SQUIB_FIXTURE_MEM_DIFF	 "mem-diff.mem"
#define SQUIB_FIXTURE_MEM_PACKED "mem-diff-packed.mem"
int squib_fixture_write_memfiles(const char *dir);

/* The generated fixtures above, in a table. */
const struct squib_fixture *squib_fixture_table(size_t *count);

#endif
