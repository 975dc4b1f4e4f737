/* SPDX-License-Identifier: Apache-2.0 */
/*
 * Snapshot pairs for tests, built with the library: memory files written
 * from this process's memory (squib_memfile_save_full / save_diff), state
 * files describing them (squib_state_set_memory + squib_state_save_file).
 * Every helper fails the current cmocka test on error.
 */
#ifndef SQUIB_TEST_PAIR_H
#define SQUIB_TEST_PAIR_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include <squib/memfile.h>
#include <squib/state.h>

/* Guest address of the single RAM region every helper writes. */
#define SQUIB_TEST_GUEST_BASE 0x80000000ull

/* The file page size the helpers use: the host page size. */
uint64_t squib_test_page_size(void);

/* Private anonymous memory of `size` bytes, never-zero pattern from `seed`
 * in every page (munmap it). */
uint8_t *squib_test_guest_ram(uint64_t size, uint32_t seed);

/* Fill page `page` of mem with a never-zero pattern from `seed`. */
void squib_test_fill_page(uint8_t *mem, uint64_t page, uint32_t seed);

/* Full memory file of mem[0, size) at path; *out (may be NULL) gets the manifest. */
void squib_test_save_full(const char *path, const uint8_t *mem, uint64_t size, bool digests,
			  struct squib_memfile_manifest *out);

/* Diff holding pages[0..n) of mem[0, size), applying on `parent`. */
void squib_test_save_diff(const char *path, const uint8_t *mem, uint64_t size,
			  const uint8_t parent[SQUIB_MEMORY_ID_SIZE], const uint64_t *pages,
			  size_t n, bool digests, struct squib_memfile_manifest *out);
/* The same with the writer's options (packed, digests, ...). */
void squib_test_save_diff_ex(const char *path, const uint8_t *mem, uint64_t size,
			     const uint8_t parent[SQUIB_MEMORY_ID_SIZE], const uint64_t *pages,
			     size_t n, const struct squib_memfile_write_options *opts,
			     struct squib_memfile_manifest *out);

/* The minimal fixture state (1 vCPU, a GIC blob: restorable), describing the
 * memory file `l` (NULL: no MEMORY section), saved at path. */
void squib_test_save_state(const char *path, const struct squib_memory_layout *l);

/* An x86_64 state (1 vCPU) that restore would accept, describing `l`, saved at path. */
void squib_test_save_x86_state(const char *path, const struct squib_memory_layout *l);

/*
 * A whole pair: <dir>/<stem>.snap describing <dir>/<stem>.mem, a full file of
 * mem[0, size). Heap paths in *state_path / *mem_path (NULL: not wanted);
 * *out (may be NULL) gets the manifest.
 */
void squib_test_save_pair(const char *dir, const char *stem, const uint8_t *mem, uint64_t size,
			  bool digests, char **state_path, char **mem_path,
			  struct squib_memfile_manifest *out);

/* XOR the byte at `off` of the file (negative: counted from its end) with mask. */
void squib_test_xor_byte(const char *path, int64_t off, uint8_t mask);

/* Size of a file in bytes. */
uint64_t squib_test_file_size(const char *path);

#endif
