/* SPDX-License-Identifier: Apache-2.0 */
/*
 * Fuzz the on-disk memory-file reader: squib_memfile_open on a real file
 * (a memfd, reopened through /proc/self/fd as any path is), then what the
 * tools do with an open file - read pages, check digests, open it as the
 * base of a chain.
 *
 * As in fuzz_memfile_footer, when bit 0 of the first byte is set the harness
 * first makes the manifest and footer CRCs right (footer_crc, manifest_crc),
 * so the structural checks, the kind sniffing and the holes bound are
 * reached, not just the CRC. Bit 1 punches a hole over the first half of the
 * RAM range, so the holes bound sees sparse files too.
 *
 * Invariants: no crash, no leak, no out-of-bounds access; a failed open
 * leaves *out NULL with an error code in the detail; every page the
 * manifest calls present reads back the file's bytes (for a PACKED diff, at
 * its place in the packed data, which must lie inside the file).
 */
#include <fcntl.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <unistd.h>

#include <squib/crc64.h>
#include <squib/memfile.h>

#include "../src/memfile_internal.h"
#include "../src/util.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static int mfd = -1;
static char path[64];

static void fix_crcs(uint8_t *buf, size_t len)
{
	uint8_t *foot = buf + len - SQUIB_MEMFILE_FOOTER_SIZE;
	uint64_t off = squib_get_le64(foot + 88), mlen = squib_get_le64(foot + 96);

	if (off <= len && mlen <= len - off)
		squib_put_le64(foot + 112, squib_crc64(0, buf + off, (size_t)mlen));
	squib_put_le64(foot + 4088, squib_crc64(0, foot, 4088));
}

static void put_file(const uint8_t *buf, size_t len, bool hole)
{
	if (ftruncate(mfd, 0) || ftruncate(mfd, (off_t)len) ||
	    (len && pwrite(mfd, buf, len, 0) != (ssize_t)len))
		abort();
	if (hole && len > 2 * SQUIB_MEMFILE_FOOTER_SIZE)
		(void)fallocate(mfd, FALLOC_FL_PUNCH_HOLE | FALLOC_FL_KEEP_SIZE, 0,
				(off_t)(len / 2) & ~(off_t)4095);
}

/* Where file page p's bytes are: fixed, or through a packed file's index. */
static uint64_t page_offset(const struct squib_memfile *m, uint64_t p)
{
	const struct squib_memory_layout *l = &squib_memfile_manifest(m)->layout;
	int64_t e = squib_memfile_find_extent(l, p);

	if (e < 0)
		return p * l->page_size;
	return squib_memfile_extent_offset(m, (uint64_t)e) +
	       (p - l->extents[e].first_page) * l->page_size;
}

/* Every present page of every region reads back the file's bytes (first 8 pages of each). */
static void read_pages(struct squib_memfile *m, const uint8_t *buf, size_t len)
{
	const struct squib_memory_layout *l = &squib_memfile_manifest(m)->layout;
	uint64_t file_off = 0;
	uint8_t *page = malloc((size_t)l->page_size);

	if (!page)
		return;
	for (uint32_t i = 0; i < l->region_count; i++) {
		for (uint64_t k = 0; k < 8 && k < l->regions[i].size / l->page_size; k++) {
			uint64_t p = (file_off + k * l->page_size) / l->page_size;
			uint64_t off = page_offset(m, p);
			int rc = squib_memfile_read_page(
			    m, l->regions[i].guest_addr + k * l->page_size, page, NULL);

			if (!rc && squib_memfile_page_present(m, p) &&
			    off + l->page_size > len - SQUIB_MEMFILE_FOOTER_SIZE)
				abort(); /* a present page must lie before the footer */
			if (!rc && squib_memfile_page_present(m, p) && off + l->page_size <= len &&
			    memcmp(page, buf + off, (size_t)l->page_size))
				abort(); /* a hole punched by the harness reads as zeros: skip those
					  */
		}
		file_off += l->regions[i].size;
	}
	free(page);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	struct squib_memfile *m = NULL;
	struct squib_memfile_chain *c = NULL;
	struct squib_error_detail d;
	const char *one[1] = {path};
	uint8_t *buf;
	bool hole;

	if (size > (1u << 20))
		return 0;
	if (mfd < 0) {
		if ((mfd = memfd_create("fuzz-mem", MFD_CLOEXEC)) < 0)
			abort();
		snprintf(path, sizeof(path), "/proc/self/fd/%d", mfd);
	}
	if (!(buf = malloc(size ? size : 1)))
		return 0;
	memcpy(buf, data, size);
	hole = size && (buf[0] & 2);
	if (size >= SQUIB_MEMFILE_FOOTER_SIZE && (buf[0] & 1))
		fix_crcs(buf, size);
	put_file(buf, size, hole);
	memset(&d, 0, sizeof(d));
	if (squib_memfile_open(path, &m, &d) == 0) {
		if (!hole)
			read_pages(m, buf, size);
		(void)squib_memfile_verify_digests(m, NULL);
		if (squib_memfile_chain_open(one, 1, &c, NULL) == 0)
			squib_memfile_chain_close(c);
		squib_memfile_close(m);
	} else if (m || d.code == 0) {
		abort();
	}
	free(buf);
	return 0;
}
