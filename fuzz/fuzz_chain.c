/* SPDX-License-Identifier: Apache-2.0 */
/*
 * Fuzz the memory chain (squib/chain.h) over layers that are not files: one
 * to three hostile memory-file images held in memory, parsed with
 * squib_memfile_parse and chained with squib_chain_open_layers (the path a
 * snapshot store's layers take: the chain validates each manifest itself).
 *
 * Input: as fuzz_rebase_chain (its corpus seeds this one): byte 0 bit 0
 * selects three layers instead of two; bytes 1..8 the lengths of the first
 * two images (le32 each, modulo 256 KiB); the rest is the last image. An
 * image whose first byte has bit 0 set gets its CRCs fixed first. A layer
 * that does not parse is left out (the chain is then shorter).
 *
 * Invariants: no crash, leak or out-of-bounds access; the walk of runs
 * covers the RAM range exactly, in order, with maximal runs; every run's
 * owner is, at its first and last page, the newest layer whose manifest
 * holds the page (checked against a plain search, layer by layer); reading
 * the first pages gives the owner's bytes or zeros; a PACKED layer is only
 * asked for runs inside one of its extents.
 */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include <squib/chain.h>
#include <squib/crc64.h>
#include <squib/memfile.h>

#include "../src/memfile_internal.h"
#include "../src/util.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

#define MAX_PART (256u << 10)

struct image {
	uint8_t *bytes;
	size_t len;
	struct squib_memfile_manifest m;
};

static const struct squib_memfile_manifest *im_manifest(void *ctx)
{
	return &((struct image *)ctx)->m;
}

static const char *im_name(void *ctx)
{
	(void)ctx;
	return "fuzz://layer";
}

/* Where page `first` is in the image: its fixed offset, or for a PACKED image
 * the sum of the page counts of the extents before its own. A run the chain
 * asks for must lie inside one extent. */
static uint64_t im_offset(const struct image *im, uint64_t first, uint64_t count)
{
	const struct squib_memory_layout *l = &im->m.layout;
	uint64_t at = 0;
	int64_t e;

	if (!(im->m.flags & SQUIB_MEMFILE_FLAG_PACKED))
		return first * l->page_size;
	e = squib_memfile_find_extent(l, first);
	if (e < 0 || first + count > l->extents[e].first_page + l->extents[e].page_count)
		abort(); /* the chain asked a packed layer for pages it does not hold */
	for (int64_t i = 0; i < e; i++)
		at += l->extents[i].page_count;
	return (at + first - l->extents[e].first_page) * l->page_size;
}

/* The page data is at offset 0 of the image and the manifest was checked against its size. */
static int im_read(void *ctx, uint64_t first, uint64_t count, void *buf,
		   struct squib_error_detail *d)
{
	const struct image *im = ctx;
	uint64_t ps = im->m.layout.page_size, off = im_offset(im, first, count);

	(void)d;
	if (off + count * ps > im->len)
		abort(); /* the chain asked for pages past the image */
	memcpy(buf, im->bytes + off, (size_t)(count * ps));
	return 0;
}

static void im_release(void *ctx)
{
	struct image *im = ctx;

	squib_memfile_manifest_release(&im->m);
	free(im->bytes);
	free(im);
}

static const struct squib_chain_layer_ops im_ops = {im_manifest, im_name, im_read, im_release};

static void fix_crcs(uint8_t *buf, size_t len)
{
	uint8_t *foot = buf + len - SQUIB_MEMFILE_FOOTER_SIZE;
	uint64_t off = squib_get_le64(foot + 88), mlen = squib_get_le64(foot + 96);

	if (off <= len && mlen <= len - off)
		squib_put_le64(foot + 112, squib_crc64(0, buf + off, (size_t)mlen));
	squib_put_le64(foot + 4088, squib_crc64(0, foot, 4088));
}

static struct image *parse(const uint8_t *p, size_t len)
{
	struct image *im = calloc(1, sizeof(*im));

	if (!im || !(im->bytes = malloc(len ? len : 1)))
		abort();
	memcpy(im->bytes, p, len);
	im->len = len;
	if (len >= SQUIB_MEMFILE_FOOTER_SIZE && (im->bytes[0] & 1))
		fix_crcs(im->bytes, len);
	if (squib_memfile_parse(im->bytes, len, &im->m, NULL)) {
		free(im->bytes);
		free(im);
		return NULL;
	}
	return im;
}

/* The newest layer holding page, by a plain search of each manifest. */
static uint32_t plain_owner(const struct squib_chain *c, uint64_t page)
{
	for (size_t i = squib_chain_layer_count(c); i-- > 0;)
		if (squib_memfile_find_extent(&squib_chain_layer_manifest(c, i)->layout, page) >= 0)
			return (uint32_t)i;
	return SQUIB_CHAIN_ZERO;
}

struct walk {
	const struct squib_chain *c;
	uint64_t next, runs;
	uint32_t last;
};

static int check_run(void *ctx, const struct squib_chain_run *r)
{
	struct walk *w = ctx;
	uint64_t last = r->first_page + r->page_count - 1;

	if (r->first_page != w->next || !r->page_count || (w->runs && r->owner == w->last) ||
	    plain_owner(w->c, r->first_page) != r->owner || plain_owner(w->c, last) != r->owner ||
	    squib_chain_owner(w->c, last) != r->owner)
		abort();
	w->next = last + 1;
	w->last = r->owner;
	w->runs++;
	return 0;
}

static void check_reads(const struct squib_chain *c)
{
	uint64_t ps = squib_chain_layout(c)->page_size;
	uint64_t n = squib_chain_page_count(c) < 4 ? squib_chain_page_count(c) : 4;
	uint8_t *buf = malloc((size_t)(n * ps)), *want = malloc((size_t)ps);

	if (!buf || !want || squib_chain_read(c, 0, n, buf, NULL))
		abort();
	for (uint64_t p = 0; p < n; p++) {
		uint32_t o = plain_owner(c, p);

		memset(want, 0, (size_t)ps);
		if (o != SQUIB_CHAIN_ZERO && squib_chain_read_layer(c, o, p, 1, want, NULL))
			abort();
		if (memcmp(buf + p * ps, want, (size_t)ps))
			abort();
	}
	free(buf);
	free(want);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	struct squib_chain_layer layers[3];
	struct squib_chain *c = NULL;
	size_t n, k = 0, len[3], off = 9;

	if (size < 9 || size > 3 * MAX_PART)
		return 0;
	n = data[0] & 1 ? 3 : 2;
	len[0] = squib_get_le32(data + 1) % MAX_PART;
	len[1] = n == 3 ? squib_get_le32(data + 5) % MAX_PART : 0;
	if (len[0] + len[1] > size - off)
		return 0;
	len[n - 1] = size - off - len[0] - (n == 3 ? len[1] : 0);
	for (size_t i = 0; i < n; i++) {
		struct image *im = parse(data + off, len[i]);

		if (im)
			layers[k++] = (struct squib_chain_layer){&im_ops, im};
		off += len[i];
	}
	if (!k || squib_chain_open_layers(layers, k, &c, NULL))
		return 0;
	{
		struct walk w = {c, 0, 0, 0};

		if (squib_chain_for_each_run(c, 0, squib_chain_page_count(c), check_run, &w) ||
		    w.next != squib_chain_page_count(c))
			abort();
	}
	check_reads(c);
	squib_chain_free(c);
	return 0;
}
