/* SPDX-License-Identifier: Apache-2.0 */
/*
 * End-to-end checks of a snapshot pair (squib/verify.h): the state file's
 * envelope and content, then its memory file and the binding between them.
 */
#include <squib/verify.h>

#include <squib/crc64.h>
#include <squib/describe.h>
#include <squib/envelope.h>
#include <squib/input.h>
#include <squib/memfile.h>

#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "input_internal.h"
#include "json_internal.h"
#include "memfile_internal.h"
#include "memlayout.h"
#include "util.h"

static const char *const check_names[SQUIB_CHECK_COUNT] = {
	[SQUIB_CHECK_STATE_FILE] = "state file",
	[SQUIB_CHECK_STATE_CRC] = "state crc",
	[SQUIB_CHECK_STATE_MAGIC] = "state magic",
	[SQUIB_CHECK_STATE_VERSION] = "state version",
	[SQUIB_CHECK_STATE_STRUCTURE] = "state structure",
	[SQUIB_CHECK_COMPATIBILITY] = "compatibility",
	[SQUIB_CHECK_MEMORY_FILE] = "memory file",
	[SQUIB_CHECK_MEMORY_FOOTER] = "memory footer",
	[SQUIB_CHECK_MEMORY_MANIFEST] = "memory manifest",
	[SQUIB_CHECK_MANIFEST_BOUNDS] = "manifest bounds",
	[SQUIB_CHECK_PAIR_BINDING] = "pair binding",
	[SQUIB_CHECK_EXTENT_DIGESTS] = "extent digests",
};

const char *squib_check_name(enum squib_check_id id)
{
	return (unsigned)id < SQUIB_CHECK_COUNT ? check_names[id] : "unknown";
}

const char *squib_check_status_name(enum squib_check_status s)
{
	switch (s) {
	case SQUIB_CHECK_OK:
		return "ok";
	case SQUIB_CHECK_SKIPPED:
		return "skipped";
	case SQUIB_CHECK_FAILED:
	case SQUIB_CHECK_CORRUPT:
		return "FAIL";
	}
	return "unknown";
}

void squib_verify_report_free(struct squib_verify_report *r)
{
	if (!r)
		return;
	for (int i = 0; i < SQUIB_CHECK_COUNT; i++)
		free(r->checks[i].detail);
	free(r->memory_path);
	memset(r, 0, sizeof(*r));
}

enum squib_check_status squib_verify_worst(const struct squib_verify_report *r)
{
	enum squib_check_status worst = SQUIB_CHECK_OK;

	for (int i = 0; r && i < SQUIB_CHECK_COUNT; i++)
		if (r->checks[i].status > worst)
			worst = r->checks[i].status;
	return worst == SQUIB_CHECK_SKIPPED ? SQUIB_CHECK_OK : worst;
}

/* "" or "s", for "1 extent" / "2 extents". */
static const char *plural(uint64_t n)
{
	return n == 1 ? "" : "s";
}

/* ---- recording results ---- */

struct run {
	struct squib_verify_report *r;
	struct squib_verify_options o;
	const char *state_path;
	uint8_t *buf;
	size_t len;
	struct squib_microvm_state st;
	bool decoded;
	int mem_fd;
	uint64_t mem_size;
	struct squib_memfile *mf;
	bool nomem; /* an allocation of ours failed: the report is incomplete */
};

static void __attribute__((format(printf, 5, 0)))
vrecord(struct run *x, enum squib_check_id id, enum squib_check_status status, int code,
	const char *fmt, va_list ap)
{
	struct squib_check_result *c = &x->r->checks[id];

	c->status = status;
	c->code = code;
	free(c->detail);
	c->detail = NULL;
	if (vasprintf(&c->detail, fmt, ap) < 0) {
		c->detail = NULL;
		x->nomem = true;
	}
}

static void __attribute__((format(printf, 5, 6)))
record(struct run *x, enum squib_check_id id, enum squib_check_status status, int code,
       const char *fmt, ...)
{
	va_list ap;

	va_start(ap, fmt);
	vrecord(x, id, status, code, fmt, ap);
	va_end(ap);
}

#define ok(x, id, ...) record(x, id, SQUIB_CHECK_OK, 0, __VA_ARGS__)

/* A check that passed, with nothing to add. */
static void ok_plain(struct run *x, enum squib_check_id id)
{
	struct squib_check_result *c = &x->r->checks[id];

	free(c->detail);
	*c = (struct squib_check_result){.status = SQUIB_CHECK_OK};
}

static void skip(struct run *x, enum squib_check_id first, enum squib_check_id last,
		 const char *why)
{
	for (int id = first; id <= (int)last; id++)
		record(x, id, SQUIB_CHECK_SKIPPED, 0, "%s", why);
}

/* CRC and pair mismatches prove the bytes are not what was written (or not
 * this state's); every other error is input we cannot read or accept. */
static enum squib_check_status classify(int code)
{
	return code == SQUIB_E_CRC_MISMATCH || code == SQUIB_E_PAIR_MISMATCH ? SQUIB_CHECK_CORRUPT
									     : SQUIB_CHECK_FAILED;
}

/* The rendered message, followed by the detail text when it does not show it. */
static void fail(struct run *x, enum squib_check_id id, int code,
		 const struct squib_error_detail *d)
{
	int n = squib_error_format(code, d, NULL, 0);
	char *msg = n >= 0 ? malloc((size_t)n + 1) : NULL;

	if (code == SQUIB_E_NOMEM)
		x->nomem = true;
	if (!msg) {
		x->nomem = true;
		free(x->r->checks[id].detail);
		x->r->checks[id] =
			(struct squib_check_result){.status = classify(code), .code = code};
		return;
	}
	squib_error_format(code, d, msg, (size_t)n + 1);
	record(x, id, classify(code), code, "%s", msg);
	free(msg);
}

/* ---- the state file ---- */

static bool check_magic(struct run *x, const struct squib_envelope_header *h)
{
	enum squib_arch arch = squib_arch_from_magic(h->magic);
	struct squib_error_detail d;

	if (arch == SQUIB_ARCH_ANY) {
		squib_fail_magic(&d, h->magic, squib_arch_magic(squib_host_arch()));
		fail(x, SQUIB_CHECK_STATE_MAGIC, SQUIB_E_MAGIC_MISMATCH, &d);
		return false;
	}
	ok(x, SQUIB_CHECK_STATE_MAGIC, "%s", squib_arch_name(arch));
	return true;
}

/* Same major, minor not newer than ours (squib/envelope.h). */
static bool check_version(struct run *x, const struct squib_envelope_header *h)
{
	struct squib_version v = h->version;
	struct squib_error_detail d;

	if (v.major != SQUIB_FORMAT_VERSION_MAJOR || v.minor > SQUIB_FORMAT_VERSION_MINOR) {
		squib_fail_version(&d, v, squib_format_version());
		fail(x, SQUIB_CHECK_STATE_VERSION, SQUIB_E_VERSION_MISMATCH, &d);
		return false;
	}
	ok(x, SQUIB_CHECK_STATE_VERSION, SQUIB_SEMVER_FMT, v.major, v.minor, v.patch);
	return true;
}

static void check_body(struct run *x)
{
	size_t body = x->len - SQUIB_STATE_TRAILER_SIZE;
	struct squib_error_detail d;
	int rc = squib_state_decode_body(x->buf, body, SQUIB_ARCH_ANY, &x->st, NULL, &d);

	if (rc) {
		fail(x, SQUIB_CHECK_STATE_STRUCTURE, rc, &d);
		skip(x, SQUIB_CHECK_COMPATIBILITY, SQUIB_CHECK_COMPATIBILITY,
		     "the state did not decode");
		return;
	}
	x->decoded = true;
	ok(x, SQUIB_CHECK_STATE_STRUCTURE, "%" PRIu32 " vCPU%s, %" PRIu32 " device%s, %s",
	   x->st.vcpu_count, plural(x->st.vcpu_count), x->st.device_count,
	   plural(x->st.device_count), x->st.memory ? "memory section" : "no memory section");
	rc = squib_state_verify_compatible(&x->st, &d);
	if (rc)
		fail(x, SQUIB_CHECK_COMPATIBILITY, rc, &d);
	else
		ok_plain(x, SQUIB_CHECK_COMPATIBILITY);
}

static void check_state(struct run *x)
{
	struct squib_envelope_header h;
	struct squib_error_detail d;
	uint64_t stored, crc;
	bool magic_ok, version_ok;
	int rc = squib_state_read_file(x->state_path, &x->buf, &x->len, &d);

	if (!rc && x->len < SQUIB_STATE_HEADER_SIZE + SQUIB_STATE_TRAILER_SIZE)
		rc = squib_fail(&d, SQUIB_E_TOO_SHORT);
	if (rc) {
		fail(x, SQUIB_CHECK_STATE_FILE, rc, &d);
		skip(x, SQUIB_CHECK_STATE_CRC, SQUIB_CHECK_COMPATIBILITY,
		     "the state file is unreadable");
		return;
	}
	ok(x, SQUIB_CHECK_STATE_FILE, "%zu bytes", x->len);
	stored = squib_get_le64(x->buf + x->len - SQUIB_STATE_TRAILER_SIZE);
	crc = squib_crc64(0, x->buf, x->len - SQUIB_STATE_TRAILER_SIZE);
	if (crc != stored)
		record(x, SQUIB_CHECK_STATE_CRC, SQUIB_CHECK_CORRUPT, SQUIB_E_CRC_MISMATCH,
		       "snapshot CRC64 mismatch: the trailer says 0x%016" PRIx64
		       ", the bytes give 0x%016" PRIx64,
		       stored, crc);
	else
		ok_plain(x, SQUIB_CHECK_STATE_CRC);
	/* Without a good CRC the rest still runs, on the bytes as they are. */
	squib_envelope_parse_header(x->buf, x->len, &h, NULL);
	magic_ok = check_magic(x, &h);
	version_ok = check_version(x, &h);
	if (magic_ok && version_ok) {
		check_body(x);
		return;
	}
	skip(x, SQUIB_CHECK_STATE_STRUCTURE, SQUIB_CHECK_STATE_STRUCTURE,
	     magic_ok ? "the version is not accepted" : "the magic is not a snapshot's");
	skip(x, SQUIB_CHECK_COMPATIBILITY, SQUIB_CHECK_COMPATIBILITY, "the state did not decode");
}

/* ---- the memory file ---- */

static bool memory_path(struct run *x)
{
	struct squib_error_detail d;
	int rc = squib_mem_path_for_state(x->state_path, x->o.memory_path, &x->r->memory_path, &d);

	if (rc)
		fail(x, SQUIB_CHECK_MEMORY_FILE, rc, &d);
	return !rc;
}

static bool open_memory_file(struct run *x)
{
	const char *path = x->r->memory_path;
	struct squib_error_detail d;
	struct stat st;

	x->mem_fd = squib_input_open(path, O_RDONLY, SQUIB_E_MEMORY_IO, &st, &d);
	if (x->mem_fd < 0) {
		fail(x, SQUIB_CHECK_MEMORY_FILE, x->mem_fd, &d);
		x->mem_fd = -1;
		return false;
	}
	if (squib_input_expect(x->mem_fd, (uint64_t)st.st_size, path, SQUIB_INPUT_MEMORY, &d)) {
		fail(x, SQUIB_CHECK_MEMORY_FILE, d.code, &d);
		return false;
	}
	x->mem_size = (uint64_t)st.st_size;
	ok(x, SQUIB_CHECK_MEMORY_FILE, "%s, %" PRIu64 " bytes", path, x->mem_size);
	return true;
}

/* Just the footer's checks, to tell a footer failure from a manifest one. */
static int probe_footer(struct run *x, struct squib_error_detail *d)
{
	uint8_t foot[SQUIB_MEMFILE_FOOTER_SIZE];
	struct squib_memfile_footer f;
	int e;

	if (x->mem_size < SQUIB_MEMFILE_FOOTER_SIZE)
		return squib_memfile_too_short(x->mem_size, d);
	e = squib_pread_all(x->mem_fd, foot, sizeof(foot), x->mem_size - sizeof(foot));
	if (e)
		return squib_memfile_io_error(d, -e, "reading the footer of %s", x->r->memory_path);
	return squib_memfile_footer_parse(foot, x->mem_size, &f, d);
}

static bool check_footer_and_manifest(struct run *x)
{
	const struct squib_memfile_manifest *m;
	struct squib_error_detail d, fd;
	int rc = squib_memfile_open(x->r->memory_path, &x->mf, &d), frc;

	if (rc) {
		frc = probe_footer(x, &fd);
		if (frc) {
			fail(x, SQUIB_CHECK_MEMORY_FOOTER, frc, &fd);
			skip(x, SQUIB_CHECK_MEMORY_MANIFEST, SQUIB_CHECK_EXTENT_DIGESTS,
			     "the memory footer is not valid");
			return false;
		}
		ok_plain(x, SQUIB_CHECK_MEMORY_FOOTER);
		fail(x, SQUIB_CHECK_MEMORY_MANIFEST, rc, &d);
		skip(x, SQUIB_CHECK_MANIFEST_BOUNDS, SQUIB_CHECK_EXTENT_DIGESTS,
		     "the memory manifest is not valid");
		return false;
	}
	m = squib_memfile_manifest(x->mf);
	ok(x, SQUIB_CHECK_MEMORY_FOOTER, "%s, version " SQUIB_SEMVER_FMT,
	   m->layout.kind == SQUIB_MEMORY_FULL ? "full" : "diff", m->version.major,
	   m->version.minor, m->version.patch);
	ok(x, SQUIB_CHECK_MEMORY_MANIFEST, "%" PRIu32 " region%s, %" PRIu64 " extent%s%s%s",
	   m->layout.region_count, plural(m->layout.region_count), m->layout.extent_count,
	   plural(m->layout.extent_count),
	   (m->flags & SQUIB_MEMFILE_FLAG_DIGESTS) ? ", digests" : "",
	   (m->flags & SQUIB_MEMFILE_FLAG_PACKED) ? ", packed" : "");
	return true;
}

/*
 * The reader already refuses a manifest that breaks these; verify states them
 * again on its own, so that a regression there cannot pass a broken pair.
 */
static void check_bounds(struct run *x)
{
	const struct squib_memfile_manifest *m = squib_memfile_manifest(x->mf);
	const struct squib_memory_layout *l = &m->layout;
	uint64_t pages = l->ram_size / l->page_size, sum = 0, present = 0, want;

	for (uint32_t i = 0; i < l->region_count; i++)
		sum += l->regions[i].size;
	if (sum != l->ram_size || l->ram_size % l->page_size) {
		record(x, SQUIB_CHECK_MANIFEST_BOUNDS, SQUIB_CHECK_FAILED, SQUIB_E_ENCODING,
		       "the regions add up to %" PRIu64 " bytes, the RAM range is %" PRIu64, sum,
		       l->ram_size);
		return;
	}
	for (uint64_t i = 0; i < l->extent_count; i++) {
		const struct squib_page_extent *e = &l->extents[i];

		if (e->first_page >= pages || e->page_count > pages - e->first_page) {
			record(x, SQUIB_CHECK_MANIFEST_BOUNDS, SQUIB_CHECK_FAILED, SQUIB_E_ENCODING,
			       "extent %" PRIu64 " (pages %" PRIu64 " +%" PRIu64
			       ") runs past the %" PRIu64 " pages of the RAM range",
			       i, e->first_page, e->page_count, pages);
			return;
		}
		present += e->page_count;
	}
	want = squib_memfile_size_for(
	    (m->flags & SQUIB_MEMFILE_FLAG_PACKED) ? present * l->page_size : l->ram_size,
	    squib_memfile_manifest_bytes(l->region_count, l->extent_count,
					 m->flags & SQUIB_MEMFILE_FLAG_DIGESTS));
	if (want != l->file_size || want != x->mem_size || present != l->present_pages) {
		record(x, SQUIB_CHECK_MANIFEST_BOUNDS, SQUIB_CHECK_FAILED, SQUIB_E_ENCODING,
		       "the manifest lays out %" PRIu64 " bytes, the footer says %" PRIu64
		       " and the file has %" PRIu64,
		       want, l->file_size, x->mem_size);
		return;
	}
	ok(x, SQUIB_CHECK_MANIFEST_BOUNDS, "%" PRIu64 " of %" PRIu64 " pages present", present,
	   pages);
}

static void check_binding(struct run *x, const struct squib_memory_layout *l)
{
	struct squib_error_detail d;
	char id[2 * SQUIB_MEMORY_ID_SIZE + 1];
	int rc = squib_memfile_check_layout(x->mf, l, &d);

	if (rc) {
		fail(x, SQUIB_CHECK_PAIR_BINDING, rc, &d);
		return;
	}
	squib_memfile_id_hex(l->id, id);
	ok(x, SQUIB_CHECK_PAIR_BINDING, "id %s", id);
}

static void check_digests(struct run *x)
{
	const struct squib_memfile_manifest *m = squib_memfile_manifest(x->mf);
	struct squib_error_detail d;
	int rc;

	if (!(m->flags & SQUIB_MEMFILE_FLAG_DIGESTS)) {
		skip(x, SQUIB_CHECK_EXTENT_DIGESTS, SQUIB_CHECK_EXTENT_DIGESTS,
		     "the memory file records no digests");
		return;
	}
	if (x->o.skip_digests) {
		skip(x, SQUIB_CHECK_EXTENT_DIGESTS, SQUIB_CHECK_EXTENT_DIGESTS, "not requested");
		return;
	}
	rc = squib_memfile_verify_digests_ex(x->mf, x->o.progress, &d);
	if (rc) {
		fail(x, SQUIB_CHECK_EXTENT_DIGESTS, rc, &d);
		return;
	}
	ok(x, SQUIB_CHECK_EXTENT_DIGESTS, "%" PRIu64 " extent%s, %" PRIu64 " bytes",
	   m->layout.extent_count, plural(m->layout.extent_count),
	   m->layout.present_pages * m->layout.page_size);
}

static void check_memory(struct run *x)
{
	const struct squib_memory_layout *l = x->st.memory;

	if (x->decoded && !l && x->o.memory_path) {
		/* A memory file named explicitly is never ignored: it pairs with nothing. */
		record(x, SQUIB_CHECK_MEMORY_FILE, SQUIB_CHECK_FAILED, SQUIB_E_INVALID_PATH,
		       "the state has no memory section: %s cannot be checked against it",
		       x->o.memory_path);
		skip(x, SQUIB_CHECK_MEMORY_FOOTER, SQUIB_CHECK_EXTENT_DIGESTS,
		     "the state has no memory section");
		return;
	}
	if (!x->decoded || !l) {
		skip(x, SQUIB_CHECK_MEMORY_FILE, SQUIB_CHECK_EXTENT_DIGESTS,
		     x->decoded ? "the state has no memory section" : "the state did not decode");
		return;
	}
	if (!memory_path(x) || !open_memory_file(x)) {
		skip(x, SQUIB_CHECK_MEMORY_FOOTER, SQUIB_CHECK_EXTENT_DIGESTS,
		     "no memory file to check");
		return;
	}
	if (!check_footer_and_manifest(x))
		return;
	check_bounds(x);
	check_binding(x, l);
	check_digests(x);
}

int squib_verify(const char *state_path, const struct squib_verify_options *opts,
		 struct squib_verify_report *out, struct squib_error_detail *d)
{
	struct run x = {.r = out, .state_path = state_path, .mem_fd = -1};

	if (!state_path || !out)
		return squib_fail_msg(d, SQUIB_E_INVALID_ARGUMENT, "verify: NULL path or report");
	memset(out, 0, sizeof(*out));
	if (opts)
		x.o = *opts;
	squib_state_init(&x.st, SQUIB_ARCH_ANY);
	check_state(&x);
	check_memory(&x);
	squib_memfile_close(x.mf);
	if (x.mem_fd >= 0)
		close(x.mem_fd);
	squib_state_free(&x.st);
	free(x.buf);
	if (x.nomem) {
		squib_verify_report_free(out);
		return squib_fail(d, SQUIB_E_NOMEM);
	}
	return 0;
}

/* ---- JSON form ---- */

static const char *status_json(enum squib_check_status s)
{
	switch (s) {
	case SQUIB_CHECK_OK:
		return "ok";
	case SQUIB_CHECK_SKIPPED:
		return "skipped";
	case SQUIB_CHECK_FAILED:
		return "failed";
	case SQUIB_CHECK_CORRUPT:
		return "corrupt";
	}
	return "unknown";
}

static json_t *json_check(enum squib_check_id id, const struct squib_check_result *c)
{
	json_t *o = json_object();
	int bad = !o;

	if (bad)
		return NULL;
	bad |= json_object_set_new(o, "name", json_string(squib_check_name(id)));
	bad |= json_object_set_new(o, "status", json_string(status_json(c->status)));
	bad |= json_object_set_new(o, "code",
				   c->code ? json_string(squib_error_name(c->code)) : json_null());
	bad |=
	    json_object_set_new(o, "detail", c->detail ? squib_json_text(c->detail) : json_null());
	if (bad) {
		json_decref(o);
		return NULL;
	}
	return o;
}

static json_t *json_report(const char *state_path, const struct squib_verify_report *r)
{
	json_t *o = json_object(), *checks = json_array();
	int bad = !o || !checks;

	for (int id = 0; !bad && id < SQUIB_CHECK_COUNT; id++)
		bad |= json_array_append_new(checks, json_check(id, &r->checks[id]));
	if (bad) {
		json_decref(o);
		json_decref(checks);
		return NULL;
	}
	bad |= json_object_set_new(o, "state_path", squib_json_text(state_path));
	bad |= json_object_set_new(o, "memory_path",
				   r->memory_path ? squib_json_text(r->memory_path) : json_null());
	bad |= json_object_set_new(o, "checks", checks);
	bad |= json_object_set_new(o, "result", json_string(status_json(squib_verify_worst(r))));
	if (bad) {
		json_decref(o);
		return NULL;
	}
	return o;
}

int squib_verify_report_json(const char *state_path, const struct squib_verify_report *r,
			     char **out)
{
	if (!state_path || !r || !out)
		return SQUIB_E_INVALID_ARGUMENT;
	return squib_json_dump(json_report(state_path, r), out);
}
