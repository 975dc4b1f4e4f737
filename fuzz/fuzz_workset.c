/* SPDX-License-Identifier: Apache-2.0 */
/*
 * Fuzz the working-set file decoder (squib/workset.h).
 *
 * Each input is decoded as given, then once more with its trailer replaced
 * by the right CRC, so the fuzzer also reaches the magic, version and
 * structure checks that random bytes almost never get past the CRC to.
 *
 * Invariants, beyond "no crash, no leak, no out-of-bounds read": a failure
 * leaves the set empty and names its code; a success is canonical, i.e.
 * encoding the decoded set gives back the input byte for byte.
 */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include <squib/crc64.h>
#include <squib/workset.h>

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static void check(const uint8_t *buf, size_t len)
{
	struct squib_error_detail d;
	struct squib_workset ws;
	uint8_t *again = NULL;
	size_t n = 0;

	if (squib_workset_decode(buf, len, &ws, &d)) {
		if (ws.runs || ws.run_count || d.code == 0)
			abort();
		return;
	}
	if (squib_workset_encode(&ws, &again, &n, NULL) || n != len || memcmp(again, buf, len))
		abort();
	free(again);
	squib_workset_free(&ws);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	uint8_t *buf;
	uint64_t crc;

	if (size > (8u << 20))
		return 0;
	check(data, size);
	if (size < SQUIB_WS_TRAILER_SIZE || !(buf = malloc(size)))
		return 0;
	memcpy(buf, data, size);
	crc = squib_crc64(0, buf, size - SQUIB_WS_TRAILER_SIZE);
	for (int i = 0; i < 8; i++)
		buf[size - SQUIB_WS_TRAILER_SIZE + (size_t)i] = (uint8_t)(crc >> (8 * i));
	check(buf, size);
	free(buf);
	return 0;
}
