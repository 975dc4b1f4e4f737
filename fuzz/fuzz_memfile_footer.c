/* SPDX-License-Identifier: Apache-2.0 */
/*
 * Fuzz the memory file's footer and manifest parser with whole files.
 *
 * Random bytes almost never pass two CRC-64s, so when bit 0 of the first
 * byte (RAM byte 0, which the parser never reads) is set, the harness first
 * makes both CRCs right: the manifest CRC over whatever range the footer
 * names (when it lies inside the input), then the footer CRC. That lets the
 * fuzzer reach every structural check.
 *
 * Invariants, beyond "no crash, no leak, no out-of-bounds read": a failure
 * leaves the manifest empty; a success is canonical, i.e. encoding the
 * parsed manifest again gives back the input's tail byte for byte (but for
 * a minor version higher than the file needs, see check_canonical).
 */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include <squib/crc64.h>
#include <squib/memfile.h>

#include "../src/memfile_internal.h"
#include "../src/util.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static void fix_crcs(uint8_t *buf, size_t len)
{
	uint8_t *foot = buf + len - SQUIB_MEMFILE_FOOTER_SIZE;
	uint64_t off = squib_get_le64(foot + 88), mlen = squib_get_le64(foot + 96);

	if (off <= len && mlen <= len - off)
		squib_put_le64(foot + 112, squib_crc64(0, buf + off, (size_t)mlen));
	squib_put_le64(foot + 4088, squib_crc64(0, foot, 4088));
}

/* The tail starts after the page data: ram_size, or a packed diff's present pages. A
 * writer records the lowest minor that describes the file, so a valid file with a
 * higher one re-encodes with that single field (and the footer CRC) different. */
static void check_canonical(const uint8_t *buf, size_t len, struct squib_memfile_manifest *m)
{
	uint16_t minor = m->version.minor;
	uint8_t *tail = NULL, *foot;
	uint64_t data;
	size_t n = 0;

	if (squib_memfile_encode_tail(m, SQUIB_MEMFILE_MAGIC, &tail, &n, NULL))
		abort();
	data = squib_memfile_data_bytes(m);
	foot = tail + n - SQUIB_MEMFILE_FOOTER_SIZE;
	if (squib_get_le16(foot + 10) != minor) {
		squib_put_le16(foot + 10, minor);
		squib_put_le64(foot + 4088, squib_crc64(0, foot, 4088));
	}
	if (m->layout.file_size != len || data > len || n != len - data ||
	    memcmp(tail, buf + data, n))
		abort();
	free(tail);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	struct squib_memfile_manifest m;
	struct squib_error_detail d;
	uint8_t *buf;

	if (size > (8u << 20))
		return 0;
	buf = malloc(size ? size : 1);
	if (!buf)
		return 0;
	memcpy(buf, data, size);
	if (size >= SQUIB_MEMFILE_FOOTER_SIZE && (buf[0] & 1))
		fix_crcs(buf, size);
	if (squib_memfile_parse(buf, size, &m, &d) == 0) {
		check_canonical(buf, size, &m);
		squib_memfile_manifest_release(&m);
	} else if (m.layout.regions || m.layout.extents || m.digests || d.code == 0) {
		abort();
	}
	free(buf);
	return 0;
}
