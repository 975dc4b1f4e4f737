/* SPDX-License-Identifier: Apache-2.0 */
/*
 * libFuzzer target: the state-file decoder. Whatever the bytes, decoding must
 * not crash, leak or read out of bounds; a file that decodes must re-encode to
 * exactly the same bytes (the format is canonical). Mutations rarely keep the
 * CRC right, so the bytes are also decoded with a repaired trailer, and the body
 * decoder (no CRC, as describe uses it) gets them minus the trailer.
 */
#include <stdbool.h>
#include <stdlib.h>
#include <string.h>

#include <squib/snapshot.h>

/*
 * Byte identity of a re-encoding. The encoder stamps the format version this
 * library writes, so a file with another accepted version (a different patch,
 * an older minor) differs in the version field and hence the CRC trailer; every
 * other byte must still be identical.
 */
static bool same_encoding(const uint8_t *a, const uint8_t *b, size_t len,
			  const struct squib_envelope_header *hdr)
{
	struct squib_version v = squib_format_version();
	const size_t ver = 8, ver_end = 14; /* major, minor, patch: u16 each */

	if (hdr->version.major == v.major && hdr->version.minor == v.minor &&
	    hdr->version.patch == v.patch)
		return memcmp(a, b, len) == 0;
	return memcmp(a, b, ver) == 0 &&
	       memcmp(a + ver_end, b + ver_end, len - ver_end - SQUIB_STATE_TRAILER_SIZE) == 0;
}

static void decode_and_check(const uint8_t *data, size_t size, enum squib_arch arch)
{
	struct squib_microvm_state s;
	struct squib_envelope_header hdr;
	uint8_t *out = NULL;
	size_t out_len = 0;

	if (squib_state_decode(data, size, arch, &s, &hdr, NULL) != 0)
		return;
	if (squib_state_encode(&s, &out, &out_len, NULL) != 0 || out_len != size ||
	    !same_encoding(data, out, size, &hdr))
		abort(); /* decoded but does not re-encode to the same bytes */
	free(out);
	squib_state_free(&s);
}

/* The same bytes with the trailer set to their CRC, so the decoder proper runs. */
static void decode_with_repaired_crc(const uint8_t *data, size_t size)
{
	uint8_t *copy;
	uint64_t crc;

	if (size < SQUIB_STATE_TRAILER_SIZE || !(copy = malloc(size)))
		return;
	memcpy(copy, data, size);
	crc = squib_crc64(0, copy, size - SQUIB_STATE_TRAILER_SIZE);
	for (int i = 0; i < 8; i++)
		copy[size - SQUIB_STATE_TRAILER_SIZE + (size_t)i] = (uint8_t)(crc >> (8 * i));
	decode_and_check(copy, size, SQUIB_ARCH_ANY);
	free(copy);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	struct squib_microvm_state s;

	decode_and_check(data, size, SQUIB_ARCH_ANY);
	decode_and_check(data, size, SQUIB_ARCH_AARCH64);
	decode_with_repaired_crc(data, size);
	if (size >= SQUIB_STATE_TRAILER_SIZE &&
	    squib_state_decode_body(data, size - SQUIB_STATE_TRAILER_SIZE, SQUIB_ARCH_ANY, &s,
				    NULL, NULL) == 0)
		squib_state_free(&s);
	return 0;
}
