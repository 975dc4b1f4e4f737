/* SPDX-License-Identifier: Apache-2.0 */
/*
 * squib/verify.h - check a snapshot pair (state file + memory file) end to
 * end, without restoring it: the checks behind `squib-snapshot verify`.
 *
 * squib_verify() runs every check it can and records one result per check,
 * in a fixed order; a failed check makes the checks that depend on it
 * "skipped" with the reason, the others still run. The state file:
 *
 *   STATE_FILE       readable, within the size limit, long enough for a header and CRC
 *   STATE_CRC        the CRC-64 trailer
 *   STATE_MAGIC      a known architecture's magic
 *   STATE_VERSION    same major, minor not newer than ours
 *   STATE_STRUCTURE  the body decodes (sections, fields, the MEMORY section's rules)
 *   COMPATIBILITY    squib_state_verify_compatible (restorable: vCPUs, GIC, smt)
 *
 * A damaged CRC does not stop the others: they run on the bytes as they are
 * (as describe does) and tell what else is wrong. Then the memory file, when
 * the state has a MEMORY section (else each is skipped, which is not a
 * failure):
 *
 *   MEMORY_FILE      the memory file (given, or the state path with its last
 *                    extension replaced by .mem) opens as a regular file
 *   MEMORY_FOOTER    footer CRC, magic, version, fields against the file size
 *   MEMORY_MANIFEST  manifest CRC and structure (regions, extents, counts)
 *   MANIFEST_BOUNDS  every extent inside the RAM range, and RAM range +
 *                    manifest area + footer = the file's size (the reader
 *                    enforces this; verify re-checks it explicitly)
 *   PAIR_BINDING     squib_memfile_check_layout: the state's MEMORY section
 *                    (id, kind, parent, geometry, extents, size) = the file's
 *   EXTENT_DIGESTS   squib_memfile_verify_digests, when the file records
 *                    digests (skipped when it does not, or when not asked)
 *
 * Each failure is classified (enum squib_check_status): CORRUPT when the
 * bytes are provably not what was written (a CRC or digest that does not
 * match, a memory file that belongs to another state), FAILED when the input
 * is unreadable or malformed (missing file, not a snapshot, unknown version,
 * structure errors, not restorable). The CLI exits 2 on any CORRUPT, else 1 on
 * any FAILED, else 0. So a memory footer or manifest whose CRC fails is
 * CORRUPT: the state names that file and its bytes changed (a raw memory dump
 * without a footer lands here too: its last 4096 bytes fail the CRC). One
 * whose CRC holds but whose magic, version or fields are not ours is FAILED.
 *
 * Thread-safety: reentrant; a report is a plain value owned by the caller.
 */
#ifndef SQUIB_VERIFY_H
#define SQUIB_VERIFY_H

#include <squib/api.h>
#include <stdbool.h>
#include <stddef.h>

#include <squib/error.h>
#include <squib/progress.h>

#ifdef __cplusplus
extern "C" {
#endif

enum squib_check_id {
	SQUIB_CHECK_STATE_FILE = 0,
	SQUIB_CHECK_STATE_CRC,
	SQUIB_CHECK_STATE_MAGIC,
	SQUIB_CHECK_STATE_VERSION,
	SQUIB_CHECK_STATE_STRUCTURE,
	SQUIB_CHECK_COMPATIBILITY,
	SQUIB_CHECK_MEMORY_FILE,
	SQUIB_CHECK_MEMORY_FOOTER,
	SQUIB_CHECK_MEMORY_MANIFEST,
	SQUIB_CHECK_MANIFEST_BOUNDS,
	SQUIB_CHECK_PAIR_BINDING,
	SQUIB_CHECK_EXTENT_DIGESTS,
	SQUIB_CHECK_COUNT
};

/* Ordered by severity: the worst of a report is the largest. */
enum squib_check_status {
	SQUIB_CHECK_OK = 0,
	SQUIB_CHECK_SKIPPED = 1, /* not applicable or not possible; detail says why */
	SQUIB_CHECK_FAILED = 2,  /* unreadable or malformed input */
	SQUIB_CHECK_CORRUPT = 3, /* integrity: CRC, digest or pair binding */
};

struct squib_check_result {
	enum squib_check_status status;
	int code;     /* the SQUIB_E_* of a failure, else 0 */
	char *detail; /* failure: the full message; skipped: why; ok: a short note or NULL */
};

struct squib_verify_options {
	/* NULL: squib_mem_path_for_state's (the state path with its last extension
	 * replaced by .mem). Never ignored: a state without a memory section fails
	 * the memory file check when one is named. */
	const char *memory_path;
	bool skip_digests;	 /* do not read the pages (EXTENT_DIGESTS is skipped) */
	const struct squib_progress *progress; /* digest check progress in bytes; may be NULL */
};

struct squib_verify_report {
	char *memory_path; /* the memory file checked (NULL when none was) */
	struct squib_check_result checks[SQUIB_CHECK_COUNT]; /* indexed by enum squib_check_id */
};

/*
 * Run the checks on state_path (and its memory file). Returns 0 when the
 * report was made, whatever the checks found; SQUIB_E_INVALID_ARGUMENT or
 * SQUIB_E_NOMEM otherwise (*out is then empty). opts may be NULL.
 */
SQUIB_API int squib_verify(const char *state_path, const struct squib_verify_options *opts,
			   struct squib_verify_report *out, struct squib_error_detail *d);

SQUIB_API void squib_verify_report_free(struct squib_verify_report *r);

/* The worst status in the report (SKIPPED counts as OK). */
SQUIB_API enum squib_check_status squib_verify_worst(const struct squib_verify_report *r);

/*
 * The report as a JSON object (heap string, free()): {"state_path", "memory_path"
 * (null when none was checked), "checks": [{"name", "status" ("ok", "skipped",
 * "failed", "corrupt"), "code" (SQUIB_E_* name or null), "detail" (or null)}]
 * in check order, "result": the worst status ("ok", "failed", "corrupt")}.
 */
SQUIB_API int squib_verify_report_json(const char *state_path, const struct squib_verify_report *r,
				       char **out);

/* "state crc", "pair binding", ...; "unknown" for an out-of-range id. */
SQUIB_API const char *squib_check_name(enum squib_check_id id);

/* "ok", "skipped", "FAIL" (FAILED and CORRUPT alike). */
SQUIB_API const char *squib_check_status_name(enum squib_check_status s);

#ifdef __cplusplus
}
#endif
#endif /* SQUIB_VERIFY_H */
