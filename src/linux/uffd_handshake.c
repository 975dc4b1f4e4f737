/* SPDX-License-Identifier: Apache-2.0 */
/*
 * The Uffd handshake message (squib/uffd_remote.h; docs/FORMAT.md "Uffd
 * handshake message"): Firecracker's JSON array of region mappings, built and
 * parsed with jansson. Parsing is strict about what squib relies on (types,
 * ranges, alignment, overlap) and lenient about what Firecracker may add
 * (unknown fields).
 */
#include <squib/uffd_remote.h>

#include <inttypes.h>
#include <jansson.h>
#include <stdbool.h>
#include <stdlib.h>
#include <string.h>

#define MIN_PAGE 4096ull
#define MAX_PAGE (1ull << 30)
#define END_MAX	 (1ull << 63)

static const char *const fields[] = {"base_host_virt_addr", "size", "offset", "page_size"};

static int bad(struct squib_error_detail *d, uint32_t i, const char *field, const char *what)
{
	return squib_fail_msg(d, SQUIB_E_ENCODING, "uffd handshake: region %u: %s %s", i, field,
			      what);
}

/* A required or optional non-negative integer field; 1 absent (optional only), 0 ok, <0 error. */
static int get_u64(const json_t *obj, uint32_t i, const char *field, bool required, uint64_t *v,
		   struct squib_error_detail *d)
{
	const json_t *j = json_object_get(obj, field);

	if (!j)
		return required ? bad(d, i, field, "is missing") : 1;
	if (!json_is_integer(j))
		return bad(d, i, field, "is not an integer");
	if (json_integer_value(j) < 0)
		return bad(d, i, field, "is negative");
	*v = (uint64_t)json_integer_value(j);
	return 0;
}

static int check_mapping(const struct squib_uffd_mapping *m, uint32_t i,
			 struct squib_error_detail *d)
{
	uint64_t ps = m->page_size;
	char buf[96];

	if (ps < MIN_PAGE || ps > MAX_PAGE || (ps & (ps - 1))) {
		snprintf(buf, sizeof(buf), "%" PRIu64 " is not a power of two in [4096, 2^30]", ps);
		return bad(d, i, "page_size", buf);
	}
	if (!m->size)
		return bad(d, i, "size", "is zero");
	if (m->size % ps)
		return bad(d, i, "size", "is not a multiple of page_size");
	if (m->base_host_virt_addr % ps)
		return bad(d, i, "base_host_virt_addr", "is not a multiple of page_size");
	if (m->offset % ps)
		return bad(d, i, "offset", "is not a multiple of page_size");
	/* Every value is at most 2^63 - 1 (jansson's integers), so these sums cannot wrap;
	 * the ends must stay in that space too, so that a range can be encoded back. */
	if (m->base_host_virt_addr + m->size > END_MAX)
		return bad(d, i, "base_host_virt_addr", "+ size exceeds 2^63");
	if (m->offset + m->size > END_MAX)
		return bad(d, i, "offset", "+ size exceeds 2^63");
	return 0;
}

/* Host ranges must be disjoint (n is at most SQUIB_UFFD_MAX_REGIONS: quadratic is fine). */
static int check_overlap(const struct squib_uffd_mapping *m, uint32_t n,
			 struct squib_error_detail *d)
{
	for (uint32_t i = 0; i < n; i++)
		for (uint32_t j = 0; j < i; j++) {
			uint64_t a = m[i].base_host_virt_addr, b = m[j].base_host_virt_addr;

			if (a < b + m[j].size && b < a + m[i].size)
				return squib_fail_msg(d, SQUIB_E_ENCODING,
						      "uffd handshake: region %u: host range "
						      "overlaps region %u",
						      i, j);
		}
	return 0;
}

static int check_all(const struct squib_uffd_mapping *m, uint32_t n, struct squib_error_detail *d)
{
	int rc;

	if (!n || n > SQUIB_UFFD_MAX_REGIONS)
		return squib_fail_msg(d, SQUIB_E_ENCODING,
				      "uffd handshake: %u regions (1 to %u allowed)", n,
				      SQUIB_UFFD_MAX_REGIONS);
	for (uint32_t i = 0; i < n; i++)
		if ((rc = check_mapping(&m[i], i, d)))
			return rc;
	return check_overlap(m, n, d);
}

static int parse_region(const json_t *obj, uint32_t i, struct squib_uffd_mapping *m,
			struct squib_error_detail *d)
{
	uint64_t *dst[] = {&m->base_host_virt_addr, &m->size, &m->offset, &m->page_size};
	uint64_t kib = 0;
	int rc;

	if (!json_is_object(obj))
		return squib_fail_msg(d, SQUIB_E_ENCODING,
				      "uffd handshake: region %u is not a JSON object", i);
	for (size_t k = 0; k < sizeof(fields) / sizeof(fields[0]); k++)
		if ((rc = get_u64(obj, i, fields[k], true, dst[k], d)))
			return rc;
	/* Deprecated; despite its name Firecracker puts bytes in it. */
	if ((rc = get_u64(obj, i, "page_size_kib", false, &kib, d)) < 0)
		return rc;
	if (!rc && kib != m->page_size)
		return bad(d, i, "page_size_kib", "differs from page_size");
	return check_mapping(m, i, d);
}

static int json_error(const json_error_t *e, struct squib_error_detail *d)
{
	if (json_error_code(e) == json_error_numeric_overflow)
		return squib_fail_msg(d, SQUIB_E_ENCODING,
				      "uffd handshake: a number at byte %d (line %d, column %d) "
				      "is above 2^63-1",
				      e->position, e->line, e->column);
	return squib_fail_msg(d, SQUIB_E_ENCODING,
			      "uffd handshake: invalid JSON at byte %d (line %d, column %d): %s",
			      e->position, e->line, e->column, e->text);
}

static int parse_array(const json_t *root, struct squib_uffd_mapping **out, uint32_t *n,
		       struct squib_error_detail *d)
{
	size_t count = json_array_size(root);
	struct squib_uffd_mapping *m;
	int rc;

	if (!json_is_array(root))
		return squib_fail_msg(d, SQUIB_E_ENCODING,
				      "uffd handshake: the message is not a JSON array");
	if (!count || count > SQUIB_UFFD_MAX_REGIONS)
		return squib_fail_msg(d, SQUIB_E_ENCODING,
				      "uffd handshake: %zu regions (1 to %u allowed)", count,
				      SQUIB_UFFD_MAX_REGIONS);
	if (!(m = calloc(count, sizeof(*m))))
		return squib_fail(d, SQUIB_E_NOMEM);
	for (uint32_t i = 0; i < count; i++)
		if ((rc = parse_region(json_array_get(root, i), i, &m[i], d))) {
			free(m);
			return rc;
		}
	if ((rc = check_overlap(m, (uint32_t)count, d))) {
		free(m);
		return rc;
	}
	*out = m;
	*n = (uint32_t)count;
	return 0;
}

int squib_uffd_handshake_parse(const char *buf, size_t len, struct squib_uffd_mapping **out,
			       uint32_t *n, struct squib_error_detail *d)
{
	json_error_t e;
	json_t *root;
	int rc;

	if (!out || !n || (!buf && len))
		return squib_fail_msg(d, SQUIB_E_INVALID_ARGUMENT, "uffd handshake: NULL argument");
	*out = NULL;
	*n = 0;
	if (len > SQUIB_UFFD_HANDSHAKE_MAX)
		return squib_fail_limit(d, SQUIB_UFFD_HANDSHAKE_MAX);
	/* JSON_REJECT_DUPLICATES: a field given twice has no single meaning. */
	if (!(root = json_loadb(buf ? buf : "", len, JSON_REJECT_DUPLICATES, &e)))
		return json_error(&e, d);
	rc = parse_array(root, out, n, d);
	json_decref(root);
	return rc;
}

/* ---- encoding ---------------------------------------------------------------- */

static json_t *region_json(const struct squib_uffd_mapping *m)
{
	return json_pack("{s:I,s:I,s:I,s:I,s:I}", "base_host_virt_addr",
			 (json_int_t)m->base_host_virt_addr, "size", (json_int_t)m->size, "offset",
			 (json_int_t)m->offset, "page_size", (json_int_t)m->page_size,
			 "page_size_kib", (json_int_t)m->page_size);
}

static int fits_int64(const struct squib_uffd_mapping *m, uint32_t i, struct squib_error_detail *d)
{
	const uint64_t v[] = {m->base_host_virt_addr, m->size, m->offset, m->page_size};

	for (size_t k = 0; k < sizeof(v) / sizeof(v[0]); k++)
		if (v[k] > (uint64_t)INT64_MAX)
			return squib_fail_msg(d, SQUIB_E_INVALID_ARGUMENT,
					      "uffd handshake: region %u: %s is above 2^63-1", i,
					      fields[k]);
	return 0;
}

int squib_uffd_handshake_encode(const struct squib_uffd_mapping *m, uint32_t n, char **json,
				size_t *len, struct squib_error_detail *d)
{
	json_t *root;
	char *s;
	int rc;

	if (!m || !json || !len)
		return squib_fail_msg(d, SQUIB_E_INVALID_ARGUMENT, "uffd handshake: NULL argument");
	*json = NULL;
	*len = 0;
	/* Above 2^63 - 1 first: jansson cannot write it, and the checks' sums could wrap. */
	for (uint32_t i = 0; i < n && i < SQUIB_UFFD_MAX_REGIONS; i++)
		if ((rc = fits_int64(&m[i], i, d)))
			return rc;
	/* What the parser would refuse is the caller's mistake here. */
	if (check_all(m, n, d)) {
		if (d)
			d->code = SQUIB_E_INVALID_ARGUMENT;
		return SQUIB_E_INVALID_ARGUMENT;
	}
	if (!(root = json_array()))
		return squib_fail(d, SQUIB_E_NOMEM);
	for (uint32_t i = 0; i < n; i++)
		if (json_array_append_new(root, region_json(&m[i]))) {
			json_decref(root);
			return squib_fail(d, SQUIB_E_NOMEM);
		}
	/* JSON_PRESERVE_ORDER: serde's field order, as Firecracker sends it. */
	s = json_dumps(root, JSON_COMPACT | JSON_PRESERVE_ORDER);
	json_decref(root);
	if (!s)
		return squib_fail(d, SQUIB_E_NOMEM);
	*json = s;
	*len = strlen(s);
	return 0;
}
