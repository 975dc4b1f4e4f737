/* SPDX-License-Identifier: Apache-2.0 */
/*
 * Fuzz the Uffd handshake parser (squib_uffd_handshake_parse) with raw bytes.
 *
 * Invariants, beyond "no crash, no leak, no out-of-bounds read": a failure
 * leaves *out NULL, *n 0 and a code in the detail; a success is 1..MAX
 * regions that pass the parser's own rules, so encoding them succeeds and
 * parsing that encoding gives back the same regions.
 */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include <squib/uffd_remote.h>

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static void check_round_trip(const struct squib_uffd_mapping *m, uint32_t n)
{
	struct squib_uffd_mapping *again = NULL;
	uint32_t n2 = 0;
	char *json = NULL;
	size_t len = 0;

	if (!n || n > SQUIB_UFFD_MAX_REGIONS)
		abort();
	if (squib_uffd_handshake_encode(m, n, &json, &len, NULL) ||
	    squib_uffd_handshake_parse(json, len, &again, &n2, NULL) || n2 != n ||
	    memcmp(again, m, n * sizeof(*m)))
		abort();
	free(again);
	free(json);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	struct squib_uffd_mapping *m = NULL;
	struct squib_error_detail d;
	uint32_t n = 0;

	memset(&d, 0, sizeof(d));
	if (squib_uffd_handshake_parse((const char *)data, size, &m, &n, &d) == 0) {
		check_round_trip(m, n);
		free(m);
	} else if (m || n || d.code == 0) {
		abort();
	}
	return 0;
}
