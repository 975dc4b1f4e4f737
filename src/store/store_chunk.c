/* SPDX-License-Identifier: Apache-2.0 */
/*
 * Chunks: named by SHA-256 (OpenSSL's EVP), stored as one zstd frame
 * (libzstd) that records its content size, verified against the name on
 * every read (docs/FORMAT.md §S.4).
 */
#include <errno.h>
#include <stdlib.h>
#include <string.h>

#include <openssl/evp.h>
#include <zstd.h>

#include <squib/store.h>

#include "store_internal.h"

int squib_store_hash(const void *buf, size_t len, struct squib_store_hash *out,
		     struct squib_error_detail *d)
{
	unsigned int n = 0;

	if (!EVP_Digest(buf, len, out->b, &n, EVP_sha256(), NULL) || n != SQUIB_STORE_HASH_SIZE)
		return squib_fail_msg(d, SQUIB_E_IO, "SHA-256 failed (OpenSSL EVP_Digest)");
	return 0;
}

bool squib_store_hash_is_zero(const struct squib_store_hash *h)
{
	for (size_t i = 0; i < sizeof(h->b); i++)
		if (h->b[i])
			return false;
	return true;
}

void squib_store_hash_hex(const struct squib_store_hash *h, char out[2 * SQUIB_STORE_HASH_SIZE + 1])
{
	static const char x[] = "0123456789abcdef";

	for (size_t i = 0; i < sizeof(h->b); i++) {
		out[2 * i] = x[h->b[i] >> 4];
		out[2 * i + 1] = x[h->b[i] & 15];
	}
	out[2 * SQUIB_STORE_HASH_SIZE] = '\0';
}

int squib_store_chunk_encode(const void *buf, size_t len, int level, uint8_t **out, size_t *out_len,
			     struct squib_error_detail *d)
{
	return squib_store_chunk_encode_in(NULL, buf, len, level, out, out_len, d);
}

int squib_store_chunk_encode_in(void *cctx, const void *buf, size_t len, int level, uint8_t **out,
				size_t *out_len, struct squib_error_detail *d)
{
	size_t cap = ZSTD_compressBound(len), n;
	uint8_t *obj;

	*out = NULL;
	*out_len = 0;
	if (ZSTD_isError(cap) || !(obj = malloc(cap ? cap : 1)))
		return squib_fail(d, SQUIB_E_NOMEM);
	/* The same frame either way; a reused context saves its allocation per chunk. */
	n = cctx ? ZSTD_compressCCtx(cctx, obj, cap, buf, len, level)
		 : ZSTD_compress(obj, cap, buf, len, level);
	if (ZSTD_isError(n)) {
		free(obj);
		return squib_fail_msg(d, SQUIB_E_IO, "zstd compression failed: %s",
				      ZSTD_getErrorName(n));
	}
	*out = obj;
	*out_len = n;
	return 0;
}

int squib_store_chunk_decode(const uint8_t *obj, size_t obj_len,
			     const struct squib_store_hash *want, void *buf, size_t len,
			     struct squib_error_detail *d)
{
	return squib_store_chunk_decode_in(NULL, obj, obj_len, want, buf, len, d);
}

/* A delta's window: the base and the new bytes in one window, so every match
 * into the prefix is reachable (at most 2^25 for 16 MiB chunks, under the
 * decoder's default limit of 2^27). */
static int delta_window_log(size_t ref_len, size_t len)
{
	int log = 10; /* ZSTD_WINDOWLOG_MIN (an experimental name) */

	while (log < 27 && ((size_t)1 << log) < ref_len + len)
		log++;
	return log;
}

int squib_store_delta_encode(const void *buf, size_t len, const void *ref, size_t ref_len,
			     int level, uint8_t **out, size_t *out_len,
			     struct squib_error_detail *d)
{
	return squib_store_delta_encode_in(NULL, buf, len, ref, ref_len, level, out, out_len, d);
}

int squib_store_delta_encode_in(void *cctx, const void *buf, size_t len, const void *ref,
				size_t ref_len, int level, uint8_t **out, size_t *out_len,
				struct squib_error_detail *d)
{
	size_t cap = ZSTD_compressBound(len), n;
	ZSTD_CCtx *own = cctx ? NULL : ZSTD_createCCtx(), *c = cctx ? cctx : own;
	uint8_t *obj = malloc(cap ? cap : 1);

	*out = NULL;
	*out_len = 0;
	if (!c || !obj || ZSTD_isError(cap)) {
		ZSTD_freeCCtx(own);
		free(obj);
		return squib_fail(d, SQUIB_E_NOMEM);
	}
	/* A reused context keeps its parameters: start from the defaults. */
	n = ZSTD_CCtx_reset(c, ZSTD_reset_session_and_parameters);
	if (!ZSTD_isError(n))
		n = ZSTD_CCtx_setParameter(c, ZSTD_c_compressionLevel, level);
	if (!ZSTD_isError(n))
		n = ZSTD_CCtx_setParameter(c, ZSTD_c_windowLog, delta_window_log(ref_len, len));
	if (!ZSTD_isError(n))
		n = ZSTD_CCtx_refPrefix(c, ref, ref_len);
	if (!ZSTD_isError(n))
		n = ZSTD_compress2(c, obj, cap, buf, len);
	ZSTD_freeCCtx(own);
	if (ZSTD_isError(n)) {
		free(obj);
		return squib_fail_msg(d, SQUIB_E_IO, "zstd delta compression failed: %s",
				      ZSTD_getErrorName(n));
	}
	*out = obj;
	*out_len = n;
	return 0;
}

/* §S.4's checks on one object; ref: the base a delta decodes against (NULL: plain). */
static int decode_frame(void *dctx, const uint8_t *obj, size_t obj_len,
			const struct squib_store_hash *want, const void *ref, size_t ref_len,
			void *buf, size_t len, struct squib_error_detail *d)
{
	char a[2 * SQUIB_STORE_HASH_SIZE + 1], b[2 * SQUIB_STORE_HASH_SIZE + 1];
	unsigned long long content = ZSTD_getFrameContentSize(obj, obj_len);
	size_t frame = ZSTD_findFrameCompressedSize(obj, obj_len), n;
	ZSTD_DCtx *own = NULL;
	struct squib_store_hash got;
	int r;

	squib_store_hash_hex(want, a);
	if (ZSTD_isError(frame) || frame != obj_len || content != len)
		return squib_fail_msg(d, SQUIB_E_ENCODING,
				      "chunk %s: not one zstd frame of %zu bytes", a, len);
	if (ref && !dctx && !(dctx = own = ZSTD_createDCtx()))
		return squib_fail(d, SQUIB_E_NOMEM);
	/* The prefix is used by the next frame only (so a reused context forgets it). */
	n = ref ? ZSTD_DCtx_refPrefix(dctx, ref, ref_len) : 0;
	/* A reused context: ZSTD_decompress allocates and initialises ~100 KiB per call. */
	if (!ZSTD_isError(n))
		n = dctx ? ZSTD_decompressDCtx(dctx, buf, len, obj, obj_len)
			 : ZSTD_decompress(buf, len, obj, obj_len);
	ZSTD_freeDCtx(own);
	if (ZSTD_isError(n) || n != len)
		return squib_fail_msg(d, SQUIB_E_ENCODING, "%schunk %s: zstd: %s",
				      ref ? "delta " : "", a,
				      ZSTD_isError(n) ? ZSTD_getErrorName(n) : "short frame");
	if ((r = squib_store_hash(buf, len, &got, d)))
		return r;
	if (memcmp(got.b, want->b, sizeof(got.b))) {
		squib_store_hash_hex(&got, b);
		return squib_fail_msg(d, SQUIB_E_CRC_MISMATCH,
				      "%schunk %s: its content hashes to %s", ref ? "delta " : "",
				      a, b);
	}
	return 0;
}

int squib_store_chunk_decode_in(void *dctx, const uint8_t *obj, size_t obj_len,
				const struct squib_store_hash *want, void *buf, size_t len,
				struct squib_error_detail *d)
{
	return decode_frame(dctx, obj, obj_len, want, NULL, 0, buf, len, d);
}

int squib_store_delta_decode_in(void *dctx, const uint8_t *obj, size_t obj_len,
				const struct squib_store_hash *want, const void *ref,
				size_t ref_len, void *buf, size_t len, struct squib_error_detail *d)
{
	return decode_frame(dctx, obj, obj_len, want, ref, ref_len, buf, len, d);
}
