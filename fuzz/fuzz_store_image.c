/* SPDX-License-Identifier: Apache-2.0 */
/*
 * Fuzz the snapshot store's image decoder (squib/store.h, docs/FORMAT.md §S.2).
 *
 * Each input is decoded as given, then once more with its trailer replaced
 * by the right CRC, so the fuzzer reaches the header, layout and chunk-map
 * checks that random bytes almost never get past the CRC to.
 *
 * Invariants, beyond "no crash, no leak, no out-of-bounds read": a failure
 * leaves the image empty and names its code; a success is canonical (its
 * encoding is the input byte for byte, the ignored patch level aside), its
 * map has exactly the windows its regions need, every window lies inside
 * its region, and (a 1.1 image) every delta window has content and a base
 * other than itself.
 */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include <squib/crc64.h>
#include <squib/store.h>

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static void check_windows(const struct squib_store_image *im)
{
	const struct squib_memory_layout *l = &im->manifest.layout;

	if (im->chunk_count != squib_store_chunk_count(l, im->chunk_shift))
		abort();
	for (uint64_t k = 0; k < im->chunk_count && k < 4096; k++) {
		uint64_t ga, off, len;
		uint32_t r;

		if (squib_store_chunk_window(l, im->chunk_shift, k, &r, &ga, &off, &len) || !len ||
		    len > (1ull << im->chunk_shift) || ga < l->regions[r].guest_addr ||
		    ga - l->regions[r].guest_addr + len > l->regions[r].size || off + len > l->ram_size)
			abort();
	}
	for (uint64_t k = 0; im->bases && k < im->chunk_count; k++)
		if (!squib_store_hash_is_zero(&im->bases[k]) &&
		    (squib_store_hash_is_zero(&im->chunks[k]) ||
		     !memcmp(im->bases[k].b, im->chunks[k].b, sizeof(im->chunks[k].b))))
			abort();
}

static void check(const uint8_t *buf, size_t len)
{
	struct squib_error_detail d;
	struct squib_store_image im;
	uint8_t *again = NULL;
	size_t n = 0;

	if (squib_store_image_decode(buf, len, &im, &d)) {
		if (im.chunks || im.bases || im.manifest.layout.regions || d.code == 0)
			abort();
		return;
	}
	check_windows(&im);
	if (squib_store_image_encode(&im, &again, &n, NULL) || n != len)
		abort();
	if (!buf[12] && !buf[13] && memcmp(again, buf, len))
		abort();
	free(again);
	squib_store_image_release(&im);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	uint8_t *buf;
	uint64_t crc;

	if (size > (8u << 20))
		return 0;
	check(data, size);
	if (size < 8 || !(buf = malloc(size)))
		return 0;
	memcpy(buf, data, size);
	crc = squib_crc64(0, buf, size - 8);
	for (int i = 0; i < 8; i++)
		buf[size - 8 + (size_t)i] = (uint8_t)(crc >> (8 * i));
	check(buf, size);
	free(buf);
	return 0;
}
