/* SPDX-License-Identifier: Apache-2.0 */
/* Hostile memory files for tests: a tiny sparse file whose manifest claims a huge present RAM. */
#ifndef SQUIB_TEST_SPARSE_H
#define SQUIB_TEST_SPARSE_H

#include <stdint.h>

#include <squib/memfile.h>

/*
 * A well-formed memory file at path (footer and manifest CRCs right) whose
 * one region of `ram` bytes is listed as present in full, but whose RAM range
 * holds only `data` bytes of data at offset 0: the rest is a hole
 * (ftruncate). *out (may be NULL) gets the manifest. Fails the test on error.
 */
void squib_test_write_sparse_memfile(const char *path, uint64_t ram, uint64_t data,
				     struct squib_memfile_manifest *out);

#endif
