/* SPDX-License-Identifier: Apache-2.0 */
/* Byte-level writer and bounds-checked reader (see wire.h). */
#include "wire.h"

#include <stdlib.h>
#include <string.h>

#include "util.h"

/* ---- writer ------------------------------------------------------------ */

void squib_wire_writer_init(struct squib_wire_writer *w, size_t limit)
{
	memset(w, 0, sizeof(*w));
	w->limit = limit;
}

void squib_wire_writer_free(struct squib_wire_writer *w)
{
	free(w->buf);
	squib_wire_writer_init(w, w->limit);
}

uint8_t *squib_wire_writer_take(struct squib_wire_writer *w, size_t *len)
{
	uint8_t *b = w->buf;

	*len = w->len;
	w->buf = NULL;
	w->len = w->cap = 0;
	return b;
}

static int writer_grow(struct squib_wire_writer *w, size_t need)
{
	size_t cap = w->cap ? w->cap : 4096;
	uint8_t *b;

	while (cap < need)
		cap = cap > SIZE_MAX / 2 ? need : cap * 2;
	if (cap > w->limit)
		cap = w->limit;
	b = realloc(w->buf, cap);
	if (!b)
		return SQUIB_E_NOMEM;
	w->buf = b;
	w->cap = cap;
	return 0;
}

uint8_t *squib_wire_put_space(struct squib_wire_writer *w, size_t n)
{
	uint8_t *p;

	if (w->err)
		return NULL;
	if (n > w->limit - w->len) {
		w->err = SQUIB_E_SIZE_LIMIT_EXCEEDED;
		return NULL;
	}
	if ((w->len + n > w->cap || !w->buf) && (w->err = writer_grow(w, w->len + n)))
		return NULL;
	p = w->buf + w->len;
	w->len += n;
	return p;
}

void squib_wire_put_bytes(struct squib_wire_writer *w, const void *p, size_t n)
{
	uint8_t *dst = squib_wire_put_space(w, n);

	if (dst && n)
		memcpy(dst, p, n);
}

void squib_wire_put_u8(struct squib_wire_writer *w, uint8_t v)
{
	uint8_t *p = squib_wire_put_space(w, 1);

	if (p)
		*p = v;
}

void squib_wire_put_u16(struct squib_wire_writer *w, uint16_t v)
{
	uint8_t *p = squib_wire_put_space(w, 2);

	if (p)
		squib_put_le16(p, v);
}

void squib_wire_put_u32(struct squib_wire_writer *w, uint32_t v)
{
	uint8_t *p = squib_wire_put_space(w, 4);

	if (p)
		squib_put_le32(p, v);
}

void squib_wire_put_u64(struct squib_wire_writer *w, uint64_t v)
{
	uint8_t *p = squib_wire_put_space(w, 8);

	if (p)
		squib_put_le64(p, v);
}

void squib_wire_put_bool(struct squib_wire_writer *w, bool v)
{
	squib_wire_put_u8(w, v ? 1 : 0);
}

void squib_wire_put_blob(struct squib_wire_writer *w, const void *p, size_t n)
{
	if (n > UINT32_MAX) {
		if (!w->err)
			w->err = SQUIB_E_SIZE_LIMIT_EXCEEDED;
		return;
	}
	squib_wire_put_u32(w, (uint32_t)n);
	squib_wire_put_bytes(w, p, n);
}

void squib_wire_put_str(struct squib_wire_writer *w, const char *s)
{
	if (!s)
		s = "";
	squib_wire_put_blob(w, s, strlen(s));
}

size_t squib_wire_section_begin(struct squib_wire_writer *w, uint16_t tag, uint16_t flags)
{
	size_t off = w->len;

	squib_wire_put_u16(w, tag);
	squib_wire_put_u16(w, flags);
	squib_wire_put_u32(w, 0);
	return off;
}

void squib_wire_section_end(struct squib_wire_writer *w, size_t section_off)
{
	size_t body = w->len - section_off - 8;

	if (w->err)
		return;
	if (body > UINT32_MAX) {
		w->err = SQUIB_E_SIZE_LIMIT_EXCEEDED;
		return;
	}
	squib_put_le32(w->buf + section_off + 4, (uint32_t)body);
}

void squib_wire_patch_u64(struct squib_wire_writer *w, size_t off, uint64_t v)
{
	if (!w->err && off <= w->len && w->len - off >= 8)
		squib_put_le64(w->buf + off, v);
}

/* ---- reader ------------------------------------------------------------ */

void squib_wire_reader_init(struct squib_wire_reader *r, const uint8_t *buf, size_t len,
			    struct squib_error_detail *d)
{
	r->buf = buf;
	r->pos = 0;
	r->end = len;
	r->d = d;
}

static int truncated(const struct squib_wire_reader *r, size_t n, const char *what)
{
	return squib_fail_msg(r->d, SQUIB_E_ENCODING,
			      "truncated %s at offset %zu: needs %zu bytes, %zu left", what, r->pos,
			      n, squib_wire_remaining(r));
}

int squib_wire_get_bytes(struct squib_wire_reader *r, size_t n, const char *what, const uint8_t **p)
{
	if (n > squib_wire_remaining(r))
		return truncated(r, n, what);
	*p = r->buf + r->pos;
	r->pos += n;
	return 0;
}

int squib_wire_get_u8(struct squib_wire_reader *r, const char *what, uint8_t *v)
{
	const uint8_t *p = NULL;
	int rc = squib_wire_get_bytes(r, 1, what, &p);

	if (!rc)
		*v = *p;
	return rc;
}

int squib_wire_get_u16(struct squib_wire_reader *r, const char *what, uint16_t *v)
{
	const uint8_t *p = NULL;
	int rc = squib_wire_get_bytes(r, 2, what, &p);

	if (!rc)
		*v = squib_get_le16(p);
	return rc;
}

int squib_wire_get_u32(struct squib_wire_reader *r, const char *what, uint32_t *v)
{
	const uint8_t *p = NULL;
	int rc = squib_wire_get_bytes(r, 4, what, &p);

	if (!rc)
		*v = squib_get_le32(p);
	return rc;
}

int squib_wire_get_u64(struct squib_wire_reader *r, const char *what, uint64_t *v)
{
	const uint8_t *p = NULL;
	int rc = squib_wire_get_bytes(r, 8, what, &p);

	if (!rc)
		*v = squib_get_le64(p);
	return rc;
}

/* A 0/1 byte: shared by bool and the opt<T> presence tag. */
static int get_flag(struct squib_wire_reader *r, const char *kind, const char *what, bool *v)
{
	size_t at = r->pos;
	uint8_t b;
	int rc = squib_wire_get_u8(r, what, &b);

	if (rc)
		return rc;
	if (b > 1)
		return squib_fail_msg(r->d, SQUIB_E_ENCODING,
				      "invalid %s %s at offset %zu: 0x%02x (must be 0 or 1)", kind,
				      what, at, b);
	*v = b == 1;
	return 0;
}

int squib_wire_get_bool(struct squib_wire_reader *r, const char *what, bool *v)
{
	return get_flag(r, "bool", what, v);
}

int squib_wire_get_opt(struct squib_wire_reader *r, const char *what, bool *present)
{
	return get_flag(r, "option tag of", what, present);
}

/* The u32 length prefix of a str/blob, then a view of that many bytes. */
static int get_counted(struct squib_wire_reader *r, const char *what, const uint8_t **p,
		       uint32_t *n)
{
	int rc = squib_wire_get_u32(r, what, n);

	return rc ? rc : squib_wire_get_bytes(r, *n, what, p);
}

int squib_wire_get_str(struct squib_wire_reader *r, const char *what, char **out)
{
	const uint8_t *p = NULL;
	uint32_t n;
	size_t at = r->pos + 4;
	int rc = get_counted(r, what, &p, &n);

	const uint8_t *nul;

	if (rc)
		return rc;
	nul = memchr(p, 0, n);
	if (nul)
		return squib_fail_msg(r->d, SQUIB_E_ENCODING, "NUL byte in string %s at offset %zu",
				      what, at + (size_t)(nul - p));
	if (!squib_utf8_valid(p, n))
		return squib_fail_msg(r->d, SQUIB_E_ENCODING,
				      "invalid UTF-8 in string %s at offset %zu", what, at);
	*out = malloc((size_t)n + 1);
	if (!*out)
		return squib_fail(r->d, SQUIB_E_NOMEM);
	memcpy(*out, p, n);
	(*out)[n] = '\0';
	return 0;
}

int squib_wire_get_blob(struct squib_wire_reader *r, const char *what, uint8_t **out, size_t *len)
{
	const uint8_t *p = NULL;
	uint32_t n;
	int rc = get_counted(r, what, &p, &n);

	if (rc)
		return rc;
	*out = NULL;
	*len = 0;
	if (n == 0)
		return 0;
	*out = malloc(n);
	if (!*out)
		return squib_fail(r->d, SQUIB_E_NOMEM);
	memcpy(*out, p, n);
	*len = n;
	return 0;
}

int squib_wire_get_sub(struct squib_wire_reader *r, size_t n, const char *what,
		       struct squib_wire_reader *sub)
{
	size_t start = r->pos;
	const uint8_t *p = NULL;
	int rc = squib_wire_get_bytes(r, n, what, &p);

	if (rc)
		return rc;
	sub->buf = r->buf;
	sub->pos = start;
	sub->end = start + n;
	sub->d = r->d;
	return 0;
}

int squib_wire_expect_end(const struct squib_wire_reader *r, const char *what)
{
	if (r->pos == r->end)
		return 0;
	return squib_fail_msg(r->d, SQUIB_E_ENCODING, "%zu trailing bytes in %s at offset %zu",
			      squib_wire_remaining(r), what, r->pos);
}

/* ---- UTF-8 ------------------------------------------------------------- */

/* Length of the sequence led by byte b (0 if b cannot lead one), and the
 * allowed range of the second byte, which is where overlongs, surrogates and
 * values past U+10FFFF are excluded (RFC 3629 table). */
static size_t utf8_lead(uint8_t b, uint8_t *lo, uint8_t *hi)
{
	*lo = 0x80;
	*hi = 0xBF;
	if (b < 0x80)
		return 1;
	if (b >= 0xC2 && b <= 0xDF)
		return 2;
	if (b >= 0xE0 && b <= 0xEF) {
		if (b == 0xE0)
			*lo = 0xA0;
		else if (b == 0xED)
			*hi = 0x9F;
		return 3;
	}
	if (b >= 0xF0 && b <= 0xF4) {
		if (b == 0xF0)
			*lo = 0x90;
		else if (b == 0xF4)
			*hi = 0x8F;
		return 4;
	}
	return 0;
}

bool squib_utf8_valid(const uint8_t *p, size_t n)
{
	size_t i = 0;

	while (i < n) {
		uint8_t lo, hi;
		size_t len = utf8_lead(p[i], &lo, &hi);

		if (len == 0 || len > n - i)
			return false;
		if (len > 1 && (p[i + 1] < lo || p[i + 1] > hi))
			return false;
		for (size_t k = 2; k < len; k++)
			if ((p[i + k] & 0xC0) != 0x80)
				return false;
		i += len;
	}
	return true;
}
