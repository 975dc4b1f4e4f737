/* SPDX-License-Identifier: Apache-2.0 */
/*
 * Summaries of a state file for people and tools (upstream load::describe and
 * `--describe-snapshot`), extended so that a damaged file always describes.
 */
#include <squib/describe.h>
#include <squib/envelope.h>
#include <squib/input.h>
#include <squib/memfile.h>

#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <jansson.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "json_internal.h"
#include "memfile_internal.h"
#include "util.h"

/* ---- memory path inference (Rust Path::file_name / extension / with_extension) ---- */

/*
 * Bounds [*start, *end) of the last component of `p` as Rust's Path::file_name()
 * sees it: trailing '/' and non-leading "." components are ignored. False when
 * there is no file name ("", "/", ".", "./.", "..", "a/..").
 */
static bool last_component(const char *p, size_t *start, size_t *end)
{
	size_t e = strlen(p), s;

	for (;;) {
		while (e > 0 && p[e - 1] == '/')
			e--;
		if (e >= 2 && p[e - 1] == '.' && p[e - 2] == '/')
			e--; /* "x/." is "x" */
		else
			break;
	}
	for (s = e; s > 0 && p[s - 1] != '/'; s--)
		;
	*start = s;
	*end = e;
	if (e == s)
		return false;
	if (e - s == 1 && p[s] == '.')
		return false;
	return !(e - s == 2 && p[s] == '.' && p[s + 1] == '.');
}

int squib_infer_memory_path(const char *state_path, char **out)
{
	const char *dot;
	size_t s, e, stem_end;

	if (!out)
		return SQUIB_E_INVALID_ARGUMENT;
	*out = NULL;
	if (!state_path)
		return SQUIB_E_INVALID_ARGUMENT;
	if (!last_component(state_path, &s, &e))
		return 0;
	dot = memrchr(state_path + s, '.', e - s);
	if (!dot || dot == state_path + s) /* no extension, or a dotfile */
		return 0;
	stem_end = (size_t)(dot - state_path);
	*out = malloc(stem_end + sizeof(".mem"));
	if (!*out)
		return SQUIB_E_NOMEM;
	memcpy(*out, state_path, stem_end);
	memcpy(*out + stem_end, ".mem", sizeof(".mem"));
	return 0;
}

int squib_mem_path_for_state(const char *state_path, const char *mem, char **out,
			     struct squib_error_detail *d)
{
	int rc;

	if (!out || !state_path)
		return squib_fail_msg(d, SQUIB_E_INVALID_ARGUMENT, "NULL state path or output");
	*out = NULL;
	if (mem) {
		if (!*mem)
			return squib_fail_msg(d, SQUIB_E_INVALID_PATH, "empty memory file path");
		*out = strdup(mem);
		return *out ? 0 : squib_fail(d, SQUIB_E_NOMEM);
	}
	if ((rc = squib_infer_memory_path(state_path, out)))
		return squib_fail(d, rc);
	if (!*out)
		return squib_fail_msg(
		    d, SQUIB_E_INVALID_PATH,
		    "no memory file path for %.300s: its name has no extension to "
		    "replace with .mem (name the memory file)",
		    state_path);
	return 0;
}

/* ---- building a description ---- */

void squib_description_free(struct squib_description *desc)
{
	if (!desc)
		return;
	for (uint32_t i = 0; i < desc->device_count && desc->devices; i++) {
		free(desc->devices[i].kind);
		free(desc->devices[i].id);
	}
	free(desc->devices);
	free(desc->state_path);
	free(desc->body_error);
	free(desc->inferred_memory_path);
	free(desc->memory_match_detail);
	memset(desc, 0, sizeof(*desc));
}

static void set_header(struct squib_description *out, const struct squib_envelope_header *hdr)
{
	out->magic = hdr->magic;
	out->arch = squib_arch_from_magic(hdr->magic);
	out->version = hdr->version;
	out->expected_version = squib_format_version();
}

static int copy_devices(struct squib_description *out, const struct squib_microvm_state *st)
{
	if (!st->device_count)
		return 0;
	out->devices = calloc(st->device_count, sizeof(*out->devices));
	if (!out->devices)
		return SQUIB_E_NOMEM;
	for (uint32_t i = 0; i < st->device_count; i++) {
		struct squib_device_summary *ds = &out->devices[i];

		out->device_count = i + 1; /* so free() releases what was copied */
		ds->kind = strdup(st->devices[i].kind ? st->devices[i].kind : "");
		ds->id = strdup(st->devices[i].id ? st->devices[i].id : "");
		ds->mmio_slot = st->devices[i].mmio_slot;
		if (!ds->kind || !ds->id)
			return SQUIB_E_NOMEM;
	}
	return 0;
}

static void set_memory(struct squib_description *out, const struct squib_memory_layout *l)
{
	struct squib_memory_summary *m = &out->memory;

	out->has_memory = true;
	m->kind = l->kind;
	memcpy(m->id, l->id, sizeof(m->id));
	memcpy(m->parent_id, l->parent_id, sizeof(m->parent_id));
	m->page_size = l->page_size;
	m->ram_size = l->ram_size;
	m->file_size = l->file_size;
	m->present_pages = l->present_pages;
	m->present_bytes = l->present_pages * l->page_size;
	m->region_count = l->region_count;
	m->extent_count = l->extent_count;
}

static int set_body(struct squib_description *out, const struct squib_microvm_state *st)
{
	out->body_ok = true;
	out->vcpu_count = st->vcpu_count;
	out->mem_size_mib = st->vm_info.mem_size_mib;
	out->track_dirty_pages = st->vm_info.track_dirty_pages;
	out->mmds_present = st->mmds != NULL;
	if (st->memory)
		set_memory(out, st->memory);
	return copy_devices(out, st);
}

/* squib_error_format of an error, as a heap string (NULL if out of memory). */
static char *error_text(int code, const struct squib_error_detail *e)
{
	int n = squib_error_format(code, e, NULL, 0);
	char *s = n >= 0 ? malloc((size_t)n + 1) : NULL;

	if (s)
		squib_error_format(code, e, s, (size_t)n + 1);
	return s;
}

/*
 * A damaged file whose magic is unknown: is it a snapshot with a damaged magic,
 * or not a snapshot at all? Decode the body under each known magic; if one
 * decodes, describe it (keeping the file's magic), otherwise give up with the
 * original magic error so garbage is refused instead of "described".
 */
static int describe_unknown_magic(const uint8_t *buf, size_t len,
				  struct squib_microvm_state *st, struct squib_description *out,
				  const struct squib_error_detail *magic_err,
				  struct squib_error_detail *d)
{
	static const uint64_t magics[] = {SQUIB_MAGIC_AARCH64, SQUIB_MAGIC_X86_64};
	size_t body_len = len - SQUIB_STATE_TRAILER_SIZE;
	struct squib_envelope_header hdr;
	uint8_t *copy = malloc(body_len);

	if (!copy)
		return squib_fail(d, SQUIB_E_NOMEM);
	memcpy(copy, buf, body_len);
	for (size_t i = 0; i < sizeof(magics) / sizeof(magics[0]); i++) {
		squib_put_le64(copy, magics[i]);
		if (squib_state_decode_body(copy, body_len, SQUIB_ARCH_ANY, st, &hdr, NULL) == 0) {
			free(copy);
			hdr.magic = squib_get_le64(buf);
			set_header(out, &hdr);
			return set_body(out, st);
		}
	}
	free(copy);
	if (d)
		*d = *magic_err;
	return SQUIB_E_MAGIC_MISMATCH;
}

/*
 * The CRC failed: decode the body without it. If that fails too, keep the
 * header fields and the decode error's message (body_ok = false) — provided
 * the file is recognisably a snapshot (known magic, or a body that decodes).
 */
static int describe_damaged(const uint8_t *buf, size_t len, struct squib_microvm_state *st,
			    struct squib_description *out, struct squib_error_detail *d)
{
	struct squib_envelope_header hdr;
	struct squib_error_detail body_err;
	int r;

	if (len < SQUIB_STATE_HEADER_SIZE + SQUIB_STATE_TRAILER_SIZE)
		return squib_fail(d, SQUIB_E_TOO_SHORT);
	out->crc_ok = false;
	r = squib_state_decode_body(buf, len - SQUIB_STATE_TRAILER_SIZE, SQUIB_ARCH_ANY, st, &hdr,
				    &body_err);
	if (r == 0) {
		set_header(out, &hdr);
		return set_body(out, st);
	}
	if (r == SQUIB_E_NOMEM) /* our failure, not the file's */
		return squib_fail(d, r);
	if (r == SQUIB_E_MAGIC_MISMATCH)
		return describe_unknown_magic(buf, len, st, out, &body_err, d);
	out->body_error = error_text(r, &body_err);
	if (!out->body_error)
		return squib_fail(d, SQUIB_E_NOMEM);
	r = squib_envelope_parse_header(buf, len, &hdr, d);
	if (r)
		return r;
	set_header(out, &hdr);
	return 0;
}

static int describe_bytes(const uint8_t *buf, size_t len, struct squib_microvm_state *st,
			  struct squib_description *out, struct squib_error_detail *d)
{
	struct squib_envelope_header hdr;
	int r = squib_state_decode(buf, len, SQUIB_ARCH_ANY, st, &hdr, d);

	if (r == SQUIB_E_CRC_MISMATCH)
		return describe_damaged(buf, len, st, out, d);
	if (r)
		return r;
	out->crc_ok = true;
	set_header(out, &hdr);
	return set_body(out, st);
}

/* The state path as given (NULL: "") and the memory path inferred from it. */
static int set_paths(struct squib_description *out, const char *state_path)
{
	out->state_path = strdup(state_path ? state_path : "");
	if (!out->state_path)
		return SQUIB_E_NOMEM;
	return squib_infer_memory_path(out->state_path, &out->inferred_memory_path);
}

int squib_describe_buffer(const uint8_t *buf, size_t len, const char *state_path,
			  struct squib_description *out, struct squib_error_detail *d)
{
	struct squib_microvm_state st;
	int r;

	if (!out || (!buf && len))
		return squib_fail_msg(d, SQUIB_E_INVALID_ARGUMENT, "describe: NULL buffer");
	memset(out, 0, sizeof(*out));
	squib_state_init(&st, SQUIB_ARCH_ANY);
	r = describe_bytes(buf ? buf : (const uint8_t *)"", len, &st, out, d);
	squib_state_free(&st);
	if (r == 0 && (r = set_paths(out, state_path)))
		squib_fail(d, r);
	if (r)
		squib_description_free(out);
	return r;
}

/* Exists + size of the inferred memory file; a stat failure counts as missing. */
static void stat_memory_file(struct squib_description *desc)
{
	struct stat st;

	if (!desc->inferred_memory_path || stat(desc->inferred_memory_path, &st) != 0)
		return;
	desc->inferred_memory_exists = true;
	if (S_ISREG(st.st_mode)) {
		desc->has_inferred_memory_size = true;
		desc->inferred_memory_size = (uint64_t)st.st_size;
	}
}

/* ---- the memory file against the MEMORY section ---- */

static const char *kind_name(enum squib_memory_kind k)
{
	return k == SQUIB_MEMORY_FULL ? "full" : k == SQUIB_MEMORY_DIFF ? "diff" : "unknown";
}

static int set_match(struct squib_description *desc, enum squib_memory_match m, const char *fmt,
		     ...) __attribute__((format(printf, 3, 4)));

static int set_match(struct squib_description *desc, enum squib_memory_match m, const char *fmt,
		     ...)
{
	va_list ap;
	int n;

	desc->memory_match = m;
	va_start(ap, fmt);
	n = vasprintf(&desc->memory_match_detail, fmt, ap);
	va_end(ap);
	if (n < 0) {
		desc->memory_match_detail = NULL;
		return SQUIB_E_NOMEM;
	}
	return 0;
}

static int set_unreadable(struct squib_description *desc, int code,
			  const struct squib_error_detail *e)
{
	char *msg = error_text(code, e);
	int r;

	if (!msg)
		return SQUIB_E_NOMEM;
	r = set_match(desc, SQUIB_MEMORY_MATCH_UNREADABLE, "%s", msg);
	free(msg);
	return r;
}

/* The footer of the memory file at fd (size bytes) into *f, checked. */
static int read_footer(int fd, uint64_t size, struct squib_memfile_footer *f,
		       struct squib_error_detail *e)
{
	uint8_t foot[SQUIB_MEMFILE_FOOTER_SIZE];
	int r;

	if (size < SQUIB_MEMFILE_FOOTER_SIZE)
		return squib_memfile_too_short(size, e);
	r = squib_pread_all(fd, foot, sizeof(foot), size - sizeof(foot));
	if (r)
		return squib_memfile_io_error(e, -r, "reading the footer");
	return squib_memfile_footer_parse(foot, size, f, e);
}

/* What the state expects against what the footer says: the first difference. */
static int compare_footer(struct squib_description *desc, const struct squib_memfile_footer *f)
{
	const struct squib_memory_summary *m = &desc->memory;
	char want[33], have[33];

	if (memcmp(f->id, m->id, sizeof(m->id))) {
		squib_memfile_id_hex(m->id, want);
		squib_memfile_id_hex(f->id, have);
		return set_match(desc, SQUIB_MEMORY_MATCH_NO,
				 "memory file has id %s, the state expects %s", have, want);
	}
	if (f->kind != (uint32_t)m->kind)
		return set_match(desc, SQUIB_MEMORY_MATCH_NO,
				 "memory file is a %s file, the state expects a %s file",
				 kind_name((enum squib_memory_kind)f->kind), kind_name(m->kind));
	if (memcmp(f->parent_id, m->parent_id, sizeof(m->parent_id))) {
		squib_memfile_id_hex(m->parent_id, want);
		squib_memfile_id_hex(f->parent_id, have);
		return set_match(desc, SQUIB_MEMORY_MATCH_NO,
				 "memory file has parent id %s, the state expects %s", have, want);
	}
	if (f->page_size != m->page_size || f->ram_size != m->ram_size ||
	    f->region_count != m->region_count)
		return set_match(desc, SQUIB_MEMORY_MATCH_NO,
				 "memory file has page size %" PRIu64 ", RAM size %" PRIu64
				 ", %" PRIu32 " regions; the state expects %" PRIu64 ", %" PRIu64
				 ", %" PRIu32,
				 f->page_size, f->ram_size, f->region_count, m->page_size,
				 m->ram_size, m->region_count);
	desc->memory_match = SQUIB_MEMORY_MATCH_YES;
	return 0;
}

static int match_memory_file(struct squib_description *desc)
{
	struct squib_memfile_footer f;
	struct squib_error_detail e;
	struct stat st;
	int fd, r;

	if (!desc->has_memory || !desc->inferred_memory_path)
		return 0;
	if (!desc->inferred_memory_exists) {
		desc->memory_match = SQUIB_MEMORY_MATCH_MISSING;
		return 0;
	}
	fd = squib_input_open(desc->inferred_memory_path, O_RDONLY, SQUIB_E_MEMORY_IO, &st, &e);
	r = fd < 0 ? fd : read_footer(fd, (uint64_t)st.st_size, &f, &e);
	if (fd >= 0)
		close(fd);
	if (r == SQUIB_E_NOMEM)
		return r;
	return r ? set_unreadable(desc, r, &e) : compare_footer(desc, &f);
}

int squib_describe(const char *state_path, struct squib_description *out,
		   struct squib_error_detail *d)
{
	uint8_t *buf = NULL;
	size_t len = 0;
	int r;

	if (!state_path || !out)
		return squib_fail_msg(d, SQUIB_E_INVALID_ARGUMENT, "describe: NULL path or output");
	memset(out, 0, sizeof(*out));
	r = squib_state_read_file(state_path, &buf, &len, d);
	if (r)
		return r;
	r = squib_describe_buffer(buf, len, state_path, out, d);
	free(buf);
	if (r)
		return r;
	stat_memory_file(out);
	r = match_memory_file(out);
	if (r) {
		squib_description_free(out);
		return squib_fail(d, r);
	}
	return 0;
}

/* ---- human form ---- */

/* A string from the file or the command line, with control characters escaped
 * so they cannot break the line layout or drive the terminal. */
static void put_text(FILE *f, const char *s)
{
	for (const unsigned char *p = (const unsigned char *)s; p && *p; p++) {
		if (*p < 0x20 || *p == 0x7f)
			fprintf(f, "\\x%02x", *p);
		else
			fputc(*p, f);
	}
}

/* "  name:" padded so the value starts at SQUIB_DESCRIBE_VALUE_COLUMN. */
static void label(FILE *f, const char *name)
{
	int n = fprintf(f, "  %s:", name);
	int pad = n > 0 && n < SQUIB_DESCRIBE_VALUE_COLUMN ? SQUIB_DESCRIBE_VALUE_COLUMN - n : 1;

	fprintf(f, "%*s", pad, "");
}

static void human_version(FILE *f, const char *name, struct squib_version v)
{
	label(f, name);
	fprintf(f, SQUIB_SEMVER_FMT "\n", v.major, v.minor, v.patch);
}

static bool version_equal(struct squib_version a, struct squib_version b)
{
	return a.major == b.major && a.minor == b.minor && a.patch == b.patch;
}

static void human_body(FILE *f, const struct squib_description *desc)
{
	if (!desc->body_ok) {
		label(f, "body_error");
		put_text(f, desc->body_error);
		fputc('\n', f);
		return;
	}
	label(f, "vcpu_count");
	fprintf(f, "%" PRIu32 "\n", desc->vcpu_count);
	label(f, "mem_size_mib");
	fprintf(f, "%" PRIu64 "\n", desc->mem_size_mib);
	label(f, "track_dirty_pages");
	fprintf(f, "%s\n", desc->track_dirty_pages ? "true" : "false");
	label(f, "devices");
	fprintf(f, "%" PRIu32 "\n", desc->device_count);
	for (uint32_t i = 0; i < desc->device_count; i++) {
		fputs("    - ", f);
		put_text(f, desc->devices[i].kind);
		fputs(": ", f);
		put_text(f, desc->devices[i].id);
		fprintf(f, " (slot %" PRIu32 ")\n", desc->devices[i].mmio_slot);
	}
	label(f, "mmds_present");
	fprintf(f, "%s\n", desc->mmds_present ? "true" : "false");
}

static void human_memory(FILE *f, const struct squib_description *desc)
{
	if (!desc->inferred_memory_path)
		return;
	label(f, "memory file");
	put_text(f, desc->inferred_memory_path);
	if (!desc->inferred_memory_exists)
		fputs(" (MISSING)\n", f);
	else if (desc->has_inferred_memory_size)
		fprintf(f, " (%" PRIu64 " bytes)\n", desc->inferred_memory_size);
	else
		fputs(" (present)\n", f);
}

static void put_id(FILE *f, const uint8_t id[SQUIB_MEMORY_ID_SIZE])
{
	char hex[2 * SQUIB_MEMORY_ID_SIZE + 1];

	squib_memfile_id_hex(id, hex);
	fprintf(f, "%s\n", hex);
}

static bool id_is_zero(const uint8_t id[SQUIB_MEMORY_ID_SIZE])
{
	for (size_t i = 0; i < SQUIB_MEMORY_ID_SIZE; i++)
		if (id[i])
			return false;
	return true;
}

static void human_memory_match(FILE *f, const struct squib_description *desc)
{
	label(f, "memory file match");
	switch (desc->memory_match) {
	case SQUIB_MEMORY_MATCH_YES:
		fputs("yes\n", f);
		return;
	case SQUIB_MEMORY_MATCH_MISSING:
		fputs("MISSING\n", f);
		return;
	case SQUIB_MEMORY_MATCH_NO:
	case SQUIB_MEMORY_MATCH_UNREADABLE:
		fputs(desc->memory_match == SQUIB_MEMORY_MATCH_NO ? "NO (" : "UNREADABLE (", f);
		put_text(f, desc->memory_match_detail);
		fputs(")\n", f);
		return;
	case SQUIB_MEMORY_MATCH_UNCHECKED:
		break;
	}
	fputs("not checked\n", f);
}

/* The MEMORY section, after the "memory file:" line. */
static void human_memory_section(FILE *f, const struct squib_description *desc)
{
	const struct squib_memory_summary *m = &desc->memory;

	if (!desc->body_ok || !desc->has_memory)
		return;
	label(f, "memory kind");
	fprintf(f, "%s\n", kind_name(m->kind));
	label(f, "memory id");
	put_id(f, m->id);
	label(f, "memory parent id");
	if (id_is_zero(m->parent_id))
		fputs("none\n", f);
	else
		put_id(f, m->parent_id);
	label(f, "memory page size");
	fprintf(f, "%" PRIu64 "\n", m->page_size);
	label(f, "memory ram size");
	fprintf(f, "%" PRIu64 "\n", m->ram_size);
	label(f, "present pages");
	fprintf(f, "%" PRIu64 "\n", m->present_pages);
	label(f, "present bytes");
	fprintf(f, "%" PRIu64 "\n", m->present_bytes);
	human_memory_match(f, desc);
}

int squib_describe_human(const struct squib_description *desc, char **out)
{
	size_t size = 0;
	FILE *f;
	int bad;

	if (!desc || !out)
		return SQUIB_E_INVALID_ARGUMENT;
	*out = NULL;
	f = open_memstream(out, &size);
	if (!f)
		return SQUIB_E_NOMEM;
	fputs("snapshot: ", f);
	put_text(f, desc->state_path);
	fputc('\n', f);
	label(f, "magic");
	fprintf(f, "0x%016" PRIx64 "\n", desc->magic);
	human_version(f, "version", desc->version);
	if (!version_equal(desc->version, desc->expected_version))
		human_version(f, "expected (squib)", desc->expected_version);
	human_body(f, desc);
	human_memory(f, desc);
	human_memory_section(f, desc);
	label(f, "crc_ok");
	fputs(desc->crc_ok ? "yes\n" : "NO\n", f);
	bad = ferror(f);
	if (fclose(f) != 0 || bad) {
		free(*out);
		*out = NULL;
		return SQUIB_E_NOMEM;
	}
	return 0;
}

/* ---- JSON form ---- */

/* Length of the valid UTF-8 sequence at s (at most n bytes), 0 if invalid. */
static size_t utf8_seq_len(const unsigned char *s, size_t n)
{
	size_t len, i;
	uint32_t cp;

	if (s[0] < 0x80)
		return 1;
	if (s[0] < 0xc2 || s[0] > 0xf4)
		return 0;
	len = s[0] < 0xe0 ? 2 : s[0] < 0xf0 ? 3 : 4;
	cp = s[0] & (0x7fu >> len);
	if (n < len)
		return 0;
	for (i = 1; i < len; i++) {
		if ((s[i] & 0xc0) != 0x80)
			return 0;
		cp = (cp << 6) | (s[i] & 0x3fu);
	}
	if ((len == 3 && cp < 0x800) || (len == 4 && (cp < 0x10000 || cp > 0x10ffff)) ||
	    (cp >= 0xd800 && cp <= 0xdfff))
		return 0;
	return len;
}

json_t *squib_json_text(const char *s)
{
	size_t n, o = 0;
	char *tmp;
	json_t *j;

	if (!s)
		s = "";
	n = strlen(s);
	j = json_stringn(s, n);

	if (j)
		return j;
	tmp = malloc(3 * n + 1);
	if (!tmp)
		return NULL;
	for (size_t i = 0; i < n;) {
		size_t k = utf8_seq_len((const unsigned char *)s + i, n - i);

		if (k) {
			memcpy(tmp + o, s + i, k);
			o += k;
			i += k;
		} else {
			memcpy(tmp + o, "\xef\xbf\xbd", 3);
			o += 3;
			i++;
		}
	}
	j = json_stringn(tmp, o);
	free(tmp);
	return j;
}

/* jansson integers are signed 64-bit; a larger u64 is emitted as a real. */
static json_t *json_u64(uint64_t v)
{
	return v <= (uint64_t)INT64_MAX ? json_integer((json_int_t)v) : json_real((double)v);
}

static json_t *json_version(struct squib_version v)
{
	return json_sprintf(SQUIB_SEMVER_FMT, v.major, v.minor, v.patch);
}

static json_t *json_device(const struct squib_device_summary *ds)
{
	json_t *o = json_object();

	if (o && !json_object_set_new(o, "kind", squib_json_text(ds->kind)) &&
	    !json_object_set_new(o, "id", squib_json_text(ds->id)) &&
	    !json_object_set_new(o, "mmio_slot", json_integer(ds->mmio_slot)))
		return o;
	json_decref(o);
	return NULL;
}

static json_t *json_devices(const struct squib_description *desc)
{
	json_t *a = json_array();

	for (uint32_t i = 0; a && i < desc->device_count; i++) {
		if (json_array_append_new(a, json_device(&desc->devices[i]))) {
			json_decref(a);
			return NULL;
		}
	}
	return a;
}

/* Body-derived value, or null when the body did not decode. */
static json_t *body_value(const struct squib_description *desc, json_t *v)
{
	if (desc->body_ok)
		return v;
	json_decref(v);
	return json_null();
}

static json_t *json_memory_size(const struct squib_description *desc)
{
	return desc->has_inferred_memory_size ? json_u64(desc->inferred_memory_size) : json_null();
}

static json_t *json_id(const uint8_t id[SQUIB_MEMORY_ID_SIZE])
{
	char hex[2 * SQUIB_MEMORY_ID_SIZE + 1];

	squib_memfile_id_hex(id, hex);
	return json_string(hex);
}

static const char *match_name(enum squib_memory_match m)
{
	switch (m) {
	case SQUIB_MEMORY_MATCH_YES:
		return "yes";
	case SQUIB_MEMORY_MATCH_NO:
		return "no";
	case SQUIB_MEMORY_MATCH_MISSING:
		return "missing";
	case SQUIB_MEMORY_MATCH_UNREADABLE:
		return "unreadable";
	case SQUIB_MEMORY_MATCH_UNCHECKED:
		break;
	}
	return "unchecked";
}

/* The MEMORY section as an object, or null without one. */
static json_t *json_memory(const struct squib_description *desc)
{
	const struct squib_memory_summary *m = &desc->memory;
	const char *detail = desc->memory_match_detail;
	json_t *o;
	int bad;

	if (!desc->body_ok || !desc->has_memory)
		return json_null();
	if (!(o = json_object()))
		return NULL;
	bad = json_object_set_new(o, "kind", json_string(kind_name(m->kind)));
	bad |= json_object_set_new(o, "id", json_id(m->id));
	bad |= json_object_set_new(o, "parent_id",
				   id_is_zero(m->parent_id) ? json_null() : json_id(m->parent_id));
	bad |= json_object_set_new(o, "page_size", json_u64(m->page_size));
	bad |= json_object_set_new(o, "ram_size", json_u64(m->ram_size));
	bad |= json_object_set_new(o, "file_size", json_u64(m->file_size));
	bad |= json_object_set_new(o, "region_count", json_integer(m->region_count));
	bad |= json_object_set_new(o, "extent_count", json_u64(m->extent_count));
	bad |= json_object_set_new(o, "present_pages", json_u64(m->present_pages));
	bad |= json_object_set_new(o, "present_bytes", json_u64(m->present_bytes));
	bad |= json_object_set_new(o, "file_match", json_string(match_name(desc->memory_match)));
	bad |= json_object_set_new(o, "file_match_detail",
				   detail ? squib_json_text(detail) : json_null());
	if (bad) {
		json_decref(o);
		return NULL;
	}
	return o;
}

static json_t *json_description(const struct squib_description *desc)
{
	const char *mem = desc->inferred_memory_path;
	json_t *o = json_object();
	int bad = !o;

	if (bad)
		return NULL;
	/* json_object_set_new() fails (and so flags `bad`) when a value is NULL. */
	bad |= json_object_set_new(o, "state_path", squib_json_text(desc->state_path));
	bad |= json_object_set_new(o, "magic", json_sprintf("0x%016" PRIx64, desc->magic));
	bad |= json_object_set_new(o, "version", json_version(desc->version));
	bad |= json_object_set_new(o, "expected_version", json_version(desc->expected_version));
	bad |= json_object_set_new(o, "vcpu_count",
				   body_value(desc, json_integer(desc->vcpu_count)));
	bad |= json_object_set_new(o, "mem_size_mib",
				   body_value(desc, json_u64(desc->mem_size_mib)));
	bad |= json_object_set_new(o, "track_dirty_pages",
				   body_value(desc, json_boolean(desc->track_dirty_pages)));
	bad |= json_object_set_new(o, "devices", body_value(desc, json_devices(desc)));
	bad |= json_object_set_new(o, "mmds_present",
				   body_value(desc, json_boolean(desc->mmds_present)));
	bad |= json_object_set_new(o, "inferred_memory_path",
				   mem ? squib_json_text(mem) : json_null());
	bad |= json_object_set_new(o, "inferred_memory_exists",
				   json_boolean(desc->inferred_memory_exists));
	bad |= json_object_set_new(o, "inferred_memory_size", json_memory_size(desc));
	bad |= json_object_set_new(o, "memory", json_memory(desc));
	bad |= json_object_set_new(o, "crc_ok", json_boolean(desc->crc_ok));
	if (!desc->body_ok)
		bad |= json_object_set_new(o, "body_error", squib_json_text(desc->body_error));
	if (bad) {
		json_decref(o);
		return NULL;
	}
	return o;
}

int squib_describe_json(const struct squib_description *desc, char **out)
{
	if (!desc || !out)
		return SQUIB_E_INVALID_ARGUMENT;
	return squib_json_dump(json_description(desc), out);
}

int squib_json_dump(json_t *o, char **out)
{
	*out = o ? json_dumps(o, JSON_INDENT(2) | JSON_PRESERVE_ORDER) : NULL;
	json_decref(o);
	return *out ? 0 : SQUIB_E_NOMEM;
}

/* ---- a failure as JSON ---- */

static json_t *json_error_object(int code, const struct squib_error_detail *d, const char *path)
{
	char message[SQUIB_ERROR_TEXT_MAX], text[SQUIB_ERROR_TEXT_MAX];
	json_t *o = json_object();
	int bad = !o;

	if (bad)
		return NULL;
	squib_error_message(code, d, message, sizeof(message));
	squib_error_format(code, d, text, sizeof(text));
	bad |= json_object_set_new(o, "code", json_string(squib_error_name(code)));
	bad |= json_object_set_new(o, "value", json_integer(code));
	bad |= json_object_set_new(o, "path", path ? squib_json_text(path) : json_null());
	bad |= json_object_set_new(o, "message", squib_json_text(message));
	bad |= json_object_set_new(o, "detail",
				   d && d->msg[0] ? squib_json_text(d->msg) : json_null());
	bad |= json_object_set_new(o, "os_errno",
				   d && d->os_errno ? json_integer(d->os_errno) : json_null());
	bad |= json_object_set_new(o, "text", squib_json_text(text));
	if (bad) {
		json_decref(o);
		return NULL;
	}
	return o;
}

int squib_error_json(int code, const struct squib_error_detail *d, const char *path, char **out)
{
	json_t *o, *e;

	if (!out)
		return SQUIB_E_INVALID_ARGUMENT;
	*out = NULL;
	e = json_error_object(code, d, path);
	o = json_object();
	/* json_object_set_new takes e also when it fails (or when o or e is NULL). */
	if (json_object_set_new(o, "error", e)) {
		json_decref(o);
		o = NULL;
	}
	return squib_json_dump(o, out);
}
