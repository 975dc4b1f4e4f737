/* SPDX-License-Identifier: Apache-2.0 */
/*
 * print_state STATE: decode a state file and print it, as `squib-snapshot
 * describe` does. The walk-through is docs/EMBEDDING.md, "Reading a state".
 *
 * Exit status: 0 printed, 1 usage, 2 the file could not be read or decoded
 * (the library's message on stderr).
 */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>

#include <squib/describe.h>
#include <squib/envelope.h>
#include <squib/error.h>
#include <squib/state.h>

/* One place turns a code and its detail into text: the library's
 * squib_error_format, so the example prints what the CLI prints. */
static int report(const char *what, int rc, const struct squib_error_detail *d)
{
	char text[SQUIB_ERROR_TEXT_MAX];

	squib_error_format(rc, d, text, sizeof(text));
	fprintf(stderr, "print_state: %s: %s [%s]\n", what, text, squib_error_name(rc));
	return 2;
}

int main(int argc, char **argv)
{
	struct squib_error_detail d = {0};
	struct squib_envelope_header hdr;
	struct squib_description desc;
	uint8_t *buf = NULL;
	size_t len = 0;
	char *text = NULL;
	int rc;

	if (argc != 2) {
		fprintf(stderr, "usage: print_state STATE\n");
		return 1;
	}
	/* Read once, bounded by the library's size limit, then work on the
	 * buffer: the header and the description see the same bytes. */
	if ((rc = squib_state_read_file(argv[1], &buf, &len, &d)))
		return report(argv[1], rc, &d);
	if ((rc = squib_envelope_parse_header(buf, len, &hdr, &d))) {
		free(buf);
		return report(argv[1], rc, &d);
	}
	/* describe_buffer checks CRC, magic, version and structure before it
	 * trusts a byte, so a corrupt file fails here, never prints garbage. */
	rc = squib_describe_buffer(buf, len, argv[1], &desc, &d);
	free(buf);
	if (rc)
		return report(argv[1], rc, &d);
	printf("format version %u.%u.%u, %llu payload bytes\n", hdr.version.major,
	       hdr.version.minor, hdr.version.patch, (unsigned long long)hdr.payload_len);
	rc = squib_describe_human(&desc, &text);
	squib_description_free(&desc);
	if (rc)
		return report("describe", rc, NULL);
	fputs(text, stdout);
	free(text);
	return 0;
}
