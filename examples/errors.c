/* SPDX-License-Identifier: Apache-2.0 */
/*
 * errors STATE: the error model of squib/error.h as an embedder meets it.
 * Each case makes one call fail on purpose and shows what the caller gets:
 * the code (a negative SQUIB_E_*), its stable name, the detail (errno, what
 * failed on which path), squib_error_format's one line and, for the corrupt
 * file, the JSON error object of squib_error_json. Then the backend rule: what
 * squib_backend_rc makes of a VMM op's return codes. STATE is a valid state
 * file (tests/fixtures/demo.snap); it is read, never written. Walk-through:
 * docs/EMBEDDING.md.
 *
 * Exit status: 0 every call failed as documented, 1 usage, 2 otherwise.
 */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <squib/describe.h>
#include <squib/envelope.h>
#include <squib/error.h>
#include <squib/state.h>

/* Show one failure as a VMM's log would; 0 when it is the expected code. */
static int show(const char *what, int rc, const struct squib_error_detail *d, int want)
{
	char text[SQUIB_ERROR_TEXT_MAX];

	squib_error_format(rc, d, text, sizeof(text));
	printf("%-28s %-26s errno %-3d %s\n", what, squib_error_name(rc), d ? d->os_errno : 0,
	       text);
	if (rc == want)
		return 0;
	fprintf(stderr, "errors: %s: expected %s\n", what, squib_error_name(want));
	return 2;
}

/* A file that is not there: SQUIB_E_IO, the errno kept, the path in the text. */
static int missing_file(void)
{
	struct squib_microvm_state s;
	struct squib_error_detail d = {0};
	int rc = squib_state_load_file("/nonexistent/vm.snap", SQUIB_ARCH_ANY, &s, NULL, &d);

	if (!rc)
		squib_state_free(&s);
	return show("missing file", rc, &d, SQUIB_E_IO) || d.os_errno != ENOENT;
}

/* One flipped body byte: the CRC catches it before anything is decoded.
 * The JSON object is what `describe --json` prints for it. */
static int corrupt_file(const char *path)
{
	struct squib_microvm_state s;
	struct squib_error_detail d = {0};
	uint8_t *buf = NULL;
	size_t len = 0;
	char *json = NULL;
	int rc;

	if ((rc = squib_state_read_file(path, &buf, &len, &d)))
		return show("reading STATE", rc, &d, 0);
	buf[len / 2] ^= 0x40;
	rc = squib_state_decode(buf, len, SQUIB_ARCH_ANY, &s, NULL, &d);
	free(buf);
	if (!rc)
		squib_state_free(&s);
	if (show("one byte flipped", rc, &d, SQUIB_E_CRC_MISMATCH))
		return 2;
	if (squib_error_json(rc, &d, path, &json))
		return 2;
	printf("%-28s %s\n", "  as JSON", json);
	free(json);
	return 0;
}

/* The backend rule: a VMM op returns 0, a SQUIB_E_*, or -errno; the library
 * (and a VMM driving its own ops) passes each through squib_backend_rc. */
static int backend_codes(void)
{
	struct squib_error_detail d = {0};
	int rc = 0;

	squib_error_clear(&d);
	rc |= show("op returned -EINTR", squib_backend_rc(-EINTR, &d, "toy: get_memory"), &d,
		   SQUIB_E_IO);
	rc |= d.os_errno != EINTR;
	squib_error_clear(&d);
	rc |= show("op returned SQUIB_E_BUSY", squib_backend_rc(SQUIB_E_BUSY, &d, "toy: pause"), &d,
		   SQUIB_E_BUSY);
	squib_error_clear(&d);
	rc |= show("op returned 42", squib_backend_rc(42, &d, "toy: capture"), &d, SQUIB_E_CAPTURE);
	return rc ? 2 : 0;
}

int main(int argc, char **argv)
{
	int rc;

	if (argc != 2) {
		fprintf(stderr, "usage: errors STATE\n");
		return 1;
	}
	rc = missing_file();
	if (!rc)
		rc = corrupt_file(argv[1]);
	if (!rc)
		rc = backend_codes();
	/* A NULL detail is allowed everywhere: the code alone still formats. */
	if (!rc)
		rc = show("no detail", SQUIB_E_NOMEM, NULL, SQUIB_E_NOMEM);
	if (!rc)
		printf("errors: ok\n");
	return rc ? 2 : 0;
}
