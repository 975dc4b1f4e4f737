/* SPDX-License-Identifier: Apache-2.0 */
/*
 * Fuzz the rebase chain checks: a base and one or two diffs, every one of
 * them hostile, through squib_memfile_chain_open (each layer opened and
 * linked: kind, parent id, geometry) and squib_memfile_rebase into a fresh
 * output file.
 *
 * Input: byte 0 bit 0 selects two diffs instead of one; bytes 1..8 give the
 * lengths of the first two files (le32 each, modulo 256 KiB); the rest is the
 * last file. A file whose first byte has bit 0 set gets its manifest and
 * footer CRCs fixed first, as in fuzz_memfile_footer. Files are memfds
 * reached through /proc/self/fd.
 *
 * Invariants: no crash, no leak, no out-of-bounds access; the chain opens
 * exactly when the rebase is willing to start (both run the same checks);
 * a rebased file reads, page for page, what the chain reads.
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

#define MAX_PART (256u << 10)

static int fds[3] = {-1, -1, -1};
static char paths[3][64], out[256], dir[] = "/tmp/fuzz-rebase-XXXXXX";

/* The output directory goes with the process (libFuzzer exits through exit()). */
static void cleanup(void)
{
	unlink(out);
	rmdir(dir);
}

static void fix_crcs(uint8_t *buf, size_t len)
{
	uint8_t *foot = buf + len - SQUIB_MEMFILE_FOOTER_SIZE;
	uint64_t off = squib_get_le64(foot + 88), mlen = squib_get_le64(foot + 96);

	if (off <= len && mlen <= len - off)
		squib_put_le64(foot + 112, squib_crc64(0, buf + off, (size_t)mlen));
	squib_put_le64(foot + 4088, squib_crc64(0, foot, 4088));
}

static void init(void)
{
	for (int i = 0; i < 3; i++) {
		if ((fds[i] = memfd_create("fuzz-layer", MFD_CLOEXEC)) < 0)
			abort();
		snprintf(paths[i], sizeof(paths[i]), "/proc/self/fd/%d", fds[i]);
	}
	if (!mkdtemp(dir))
		abort();
	snprintf(out, sizeof(out), "%s/out.mem", dir);
	atexit(cleanup);
}

static void put(int i, const uint8_t *p, size_t len)
{
	uint8_t *buf = malloc(len ? len : 1);

	if (!buf)
		abort();
	memcpy(buf, p, len);
	if (len >= SQUIB_MEMFILE_FOOTER_SIZE && (buf[0] & 1))
		fix_crcs(buf, len);
	if (ftruncate(fds[i], 0) || (len && pwrite(fds[i], buf, len, 0) != (ssize_t)len))
		abort();
	free(buf);
}

/* The rebased file reads what the chain reads, for the first pages of each region. */
static void compare(const struct squib_memfile_chain *c)
{
	struct squib_memfile *m;
	const struct squib_memory_layout *l;
	uint8_t *a, *b;

	if (squib_memfile_open(out, &m, NULL))
		abort(); /* the rebase published a file its own reader refuses */
	l = &squib_memfile_manifest(m)->layout;
	a = malloc((size_t)l->page_size);
	b = malloc((size_t)l->page_size);
	for (uint32_t i = 0; a && b && i < l->region_count; i++)
		for (uint64_t k = 0; k < 4 && k < l->regions[i].size / l->page_size; k++) {
			uint64_t g = l->regions[i].guest_addr + k * l->page_size;

			if (squib_memfile_read_page(m, g, a, NULL) ||
			    squib_memfile_chain_read_page(c, g, b, NULL) ||
			    memcmp(a, b, (size_t)l->page_size))
				abort();
		}
	free(a);
	free(b);
	squib_memfile_close(m);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	const char *layers[3] = {paths[0], paths[1], paths[2]};
	struct squib_memfile_chain *c = NULL;
	size_t n, len[3], off = 9;
	int crc, rrc;

	if (size < 9 || size > 3 * MAX_PART)
		return 0;
	if (fds[0] < 0)
		init();
	n = data[0] & 1 ? 3 : 2;
	len[0] = squib_get_le32(data + 1) % MAX_PART;
	len[1] = n == 3 ? squib_get_le32(data + 5) % MAX_PART : 0;
	if (len[0] + len[1] > size - off)
		return 0;
	len[n - 1] = size - off - len[0] - (n == 3 ? len[1] : 0);
	for (size_t i = 0; i < n; i++) {
		put((int)i, data + off, len[i]);
		off += len[i];
	}
	crc = squib_memfile_chain_open(layers, n, &c, NULL);
	unlink(out);
	rrc = squib_memfile_rebase(paths[0], layers + 1, n - 1, out, NULL, NULL, NULL);
	if (!rrc && crc)
		abort(); /* the rebase took a chain the chain reader refuses */
	if (!rrc)
		compare(c);
	squib_memfile_chain_close(c);
	return 0;
}
