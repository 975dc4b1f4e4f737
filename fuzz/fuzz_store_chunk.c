/* SPDX-License-Identifier: Apache-2.0 */
/*
 * Fuzz the chunk decoder (squib/store.h, docs/FORMAT.md §S.4): an object
 * from the store that must be one zstd frame of exactly `len` bytes whose
 * SHA-256 is its name. Input: u32 len (little-endian, bounded to 1 MiB),
 * then the object. The name is that of the object's own content when it
 * decodes (so the hash check passes) and of zeros otherwise.
 *
 * The same object is decoded as a delta too (docs/FORMAT.md §S.4: a frame
 * against its base's bytes as a raw prefix), against a base of len bytes made
 * from the input's own first bytes.
 *
 * Invariants: no crash or overread; a success means the bytes written hash
 * to the name and recompressing them (plain, or as a delta against the same
 * base) gives an object that decodes too.
 */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include <zstd.h>

#include <squib/store.h>

#include "../src/store/store_internal.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	struct squib_store_hash want = {{0}}, got;
	size_t len, n;
	uint8_t *buf, *obj;

	if (size < 4)
		return 0;
	len = (data[0] | (size_t)data[1] << 8 | (size_t)data[2] << 16) % (1u << 20) + 1;
	if (!(buf = malloc(len)))
		return 0;
	/* The frame's own content (when it has one of len bytes) names it. */
	if (ZSTD_getFrameContentSize(data + 4, size - 4) == len &&
	    !ZSTD_isError(ZSTD_decompress(buf, len, data + 4, size - 4)))
		squib_store_hash(buf, len, &want, NULL);
	if (!squib_store_chunk_decode(data + 4, size - 4, &want, buf, len, NULL)) {
		if (squib_store_hash(buf, len, &got, NULL) || memcmp(got.b, want.b, sizeof(got.b)))
			abort();
		if (squib_store_chunk_encode(buf, len, 1, &obj, &n, NULL) ||
		    squib_store_chunk_decode(obj, n, &want, buf, len, NULL))
			abort();
		free(obj);
	}
	/* As a delta: the base is the input repeated; named by a delta's output. */
	uint8_t *ref = malloc(len);

	if (ref) {
		for (size_t i = 0; i < len; i++)
			ref[i] = data[i % size];
		memset(&want, 0, sizeof(want));
		if (ZSTD_getFrameContentSize(data + 4, size - 4) == len &&
		    !squib_store_delta_decode_in(NULL, data + 4, size - 4, &want, ref, len, buf,
						 len, NULL))
			abort(); /* the zero name is never any bytes' hash */
		/* Decode once with the right name: the output of the frame against ref. */
		ZSTD_DCtx *dc = ZSTD_createDCtx();

		if (dc && !ZSTD_isError(ZSTD_DCtx_refPrefix(dc, ref, len)) &&
		    ZSTD_decompressDCtx(dc, buf, len, data + 4, size - 4) == len)
			squib_store_hash(buf, len, &want, NULL);
		if (!squib_store_delta_decode_in(dc, data + 4, size - 4, &want, ref, len, buf, len,
						 NULL)) {
			if (squib_store_hash(buf, len, &got, NULL) ||
			    memcmp(got.b, want.b, sizeof(got.b)))
				abort();
			if (squib_store_delta_encode(buf, len, ref, len, 1, &obj, &n, NULL) ||
			    squib_store_delta_decode_in(NULL, obj, n, &want, ref, len, buf, len,
							NULL))
				abort();
			free(obj);
		}
		ZSTD_freeDCtx(dc);
		free(ref);
	}
	free(buf);
	return 0;
}
