/* SPDX-License-Identifier: Apache-2.0 */
/* Input checks shared by the readers (internal, not installed). */
#ifndef SQUIB_INPUT_INTERNAL_H
#define SQUIB_INPUT_INTERNAL_H

#include <stdint.h>

#include <squib/error.h>

/* The three kinds of squib file, told apart by their magic numbers. */
enum squib_input_kind {
	SQUIB_INPUT_OTHER = 0,
	SQUIB_INPUT_STATE,   /* envelope magic (either architecture) in the first 8 bytes */
	SQUIB_INPUT_MEMORY,  /* memory-file magic at the start of the last 4 KiB (the footer) */
	SQUIB_INPUT_WORKSET, /* "SQUIBWS\0" in the first 8 bytes */
};

/*
 * When fd (size bytes, named path) is recognisably a squib file of another
 * kind than `want` - and does not also carry want's own magic - fail with
 * SQUIB_E_INVALID_PATH "PATH is a squib memory file, not a state file".
 * Else 0: the reader's own checks judge the file (a damaged file of the right
 * kind keeps its CRC or magic message). At most two 8-byte reads.
 */
int squib_input_expect(int fd, uint64_t size, const char *path, enum squib_input_kind want,
		       struct squib_error_detail *d);

#endif /* SQUIB_INPUT_INTERNAL_H */
