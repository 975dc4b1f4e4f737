/* SPDX-License-Identifier: Apache-2.0 */
/*
 * Byte-level helpers for the squib file formats (internal, not installed):
 * a growable little-endian writer with a sticky error, and a bounds-checked
 * cursor reader whose failures name the field and its absolute file offset.
 *
 * Primitive encodings (docs/FORMAT.md): integers little-endian; bool = u8 0/1;
 * str = u32 byte length + UTF-8 bytes (no NUL); blob = u32 length + bytes;
 * opt<T> = u8 0/1 then T when 1.
 */
#ifndef SQUIB_WIRE_H
#define SQUIB_WIRE_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include <squib/error.h>

/* ---- writer ------------------------------------------------------------ */

/*
 * Appends never fail individually: the first failure (SQUIB_E_NOMEM, or
 * SQUIB_E_SIZE_LIMIT_EXCEEDED when len would pass `limit` or a length field
 * would overflow u32) is remembered in `err` and later appends are no-ops, so
 * an encoder checks once at the end.
 */
struct squib_wire_writer {
	uint8_t *buf;
	size_t len;
	size_t cap;
	size_t limit;
	int err;
};

void squib_wire_writer_init(struct squib_wire_writer *w, size_t limit);
void squib_wire_writer_free(struct squib_wire_writer *w);
/* Hand the buffer to the caller (free() it); the writer is left empty. */
uint8_t *squib_wire_writer_take(struct squib_wire_writer *w, size_t *len);

/* Room for n more bytes at the end (len grows by n), or NULL after an error. */
uint8_t *squib_wire_put_space(struct squib_wire_writer *w, size_t n);
void squib_wire_put_bytes(struct squib_wire_writer *w, const void *p, size_t n);
void squib_wire_put_u8(struct squib_wire_writer *w, uint8_t v);
void squib_wire_put_u16(struct squib_wire_writer *w, uint16_t v);
void squib_wire_put_u32(struct squib_wire_writer *w, uint32_t v);
void squib_wire_put_u64(struct squib_wire_writer *w, uint64_t v);
void squib_wire_put_bool(struct squib_wire_writer *w, bool v);
/* u32 length + bytes; NULL writes "". The caller validates UTF-8. */
void squib_wire_put_str(struct squib_wire_writer *w, const char *s);
void squib_wire_put_blob(struct squib_wire_writer *w, const void *p, size_t n);

/* Section framing: begin writes tag, flags and a length placeholder and returns
 * the section's offset; end patches the length to cover what was written since. */
size_t squib_wire_section_begin(struct squib_wire_writer *w, uint16_t tag, uint16_t flags);
void squib_wire_section_end(struct squib_wire_writer *w, size_t section_off);

/* Overwrite 8 bytes at off (which must already be written). */
void squib_wire_patch_u64(struct squib_wire_writer *w, size_t off, uint64_t v);

/* ---- reader ------------------------------------------------------------ */

/*
 * Reads [pos, end) of buf; positions are absolute offsets in the file so
 * messages point at the byte a hex dump shows. Every failure is
 * SQUIB_E_ENCODING with a message naming `what` and the offset (or
 * SQUIB_E_NOMEM), recorded in d.
 */
struct squib_wire_reader {
	const uint8_t *buf;
	size_t pos;
	size_t end;
	struct squib_error_detail *d;
};

void squib_wire_reader_init(struct squib_wire_reader *r, const uint8_t *buf, size_t len,
			    struct squib_error_detail *d);
static inline size_t squib_wire_remaining(const struct squib_wire_reader *r)
{
	return r->end - r->pos;
}

/* A view of the next n bytes (not copied). */
int squib_wire_get_bytes(struct squib_wire_reader *r, size_t n, const char *what,
			 const uint8_t **p);
int squib_wire_get_u8(struct squib_wire_reader *r, const char *what, uint8_t *v);
int squib_wire_get_u16(struct squib_wire_reader *r, const char *what, uint16_t *v);
int squib_wire_get_u32(struct squib_wire_reader *r, const char *what, uint32_t *v);
int squib_wire_get_u64(struct squib_wire_reader *r, const char *what, uint64_t *v);
int squib_wire_get_bool(struct squib_wire_reader *r, const char *what, bool *v);
/* opt<T> presence byte. */
int squib_wire_get_opt(struct squib_wire_reader *r, const char *what, bool *present);
/* Heap copy, NUL-terminated; rejects invalid UTF-8 and embedded NUL. */
int squib_wire_get_str(struct squib_wire_reader *r, const char *what, char **out);
/* Heap copy (NULL when empty). */
int squib_wire_get_blob(struct squib_wire_reader *r, const char *what, uint8_t **out, size_t *len);
/* Split off the next n bytes as their own reader (r skips past them). */
int squib_wire_get_sub(struct squib_wire_reader *r, size_t n, const char *what,
		       struct squib_wire_reader *sub);
/* Fail unless everything was consumed. */
int squib_wire_expect_end(const struct squib_wire_reader *r, const char *what);

/* Strict UTF-8 (no overlongs, surrogates or code points past U+10FFFF); NUL
 * bytes are valid UTF-8 and are accepted here. */
bool squib_utf8_valid(const uint8_t *p, size_t n);

#endif /* SQUIB_WIRE_H */
