/* SPDX-License-Identifier: Apache-2.0 */
/* Hostile memory files for tests (sparse.h); built with the library's own encoder. */
#include "sparse.h"

#include "pair.h"
#include "testutil.h"

#include <fcntl.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "../../src/memfile_internal.h"

void squib_test_write_sparse_memfile(const char *path, uint64_t ram, uint64_t data,
				     struct squib_memfile_manifest *out)
{
	struct squib_mem_region region = {SQUIB_TEST_GUEST_BASE, ram};
	struct squib_memfile_manifest m;
	struct squib_page_extent all;
	uint8_t *tail = NULL, page[4096];
	size_t len = 0;
	int fd;

	memset(&m, 0, sizeof(m));
	m.layout.kind = SQUIB_MEMORY_FULL;
	m.layout.page_size = squib_test_page_size();
	all = (struct squib_page_extent){0, ram / m.layout.page_size};
	m.layout.region_count = 1;
	m.layout.regions = &region;
	m.layout.extent_count = 1;
	m.layout.extents = &all;
	assert_int_equal(squib_memfile_new_id(m.layout.id, NULL), 0);
	assert_int_equal(squib_memfile_encode_tail(&m, SQUIB_MEMFILE_MAGIC, &tail, &len, NULL), 0);
	fd = open(path, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0600);
	assert_true(fd >= 0);
	memset(page, 0x5a, sizeof(page));
	for (uint64_t off = 0; off < data; off += sizeof(page))
		assert_int_equal(pwrite(fd, page, sizeof(page), (off_t)off), (ssize_t)sizeof(page));
	assert_int_equal(pwrite(fd, tail, len, (off_t)ram), (ssize_t)len);
	assert_int_equal(close(fd), 0);
	free(tail);
	if (out) {
		*out = m;
		assert_int_equal(squib_memory_layout_copy(&out->layout, &m.layout), 0);
	}
}
