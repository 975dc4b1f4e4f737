/* SPDX-License-Identifier: Apache-2.0 */
/*
 * squib/describe.h - summarise a state file for people and tools
 * (upstream load::describe and `--describe-snapshot`).
 *
 * Describe reads either architecture, does not run verify_compatible, and
 * tolerates a bad CRC: the body is then decoded without the check and crc_ok is
 * false. When the CRC is bad *and* the body does not decode, the description
 * still succeeds with body_ok = false, the header fields, and body_error; so a
 * damaged file always describes as "crc_ok: NO" rather than failing. A file whose
 * CRC is good but whose content is malformed is an error (the call fails).
 *
 * When the state has a MEMORY section (squib/memfile.h), the description
 * carries its summary and, for squib_describe(), whether the memory file at
 * the inferred path is the one it names: its footer alone is read and checked
 * (CRC, magic, version, fields) and compared on id, kind, parent id, page
 * size, RAM size and region count. The pages, the manifest and the digests
 * are `squib-snapshot verify`'s business (squib/verify.h).
 *
 * Thread-safety: reentrant; a description is a plain value owned by the caller.
 */
#ifndef SQUIB_DESCRIBE_H
#define SQUIB_DESCRIBE_H

#include <squib/api.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include <squib/error.h>
#include <squib/state.h>

#ifdef __cplusplus
extern "C" {
#endif

/* Column where every value of the human form starts (upstream). */
#define SQUIB_DESCRIBE_VALUE_COLUMN 23

struct squib_device_summary {
	char *kind;
	char *id;
	uint32_t mmio_slot;
};

/* The state's MEMORY section, summarised. */
struct squib_memory_summary {
	enum squib_memory_kind kind;
	uint8_t id[SQUIB_MEMORY_ID_SIZE];
	uint8_t parent_id[SQUIB_MEMORY_ID_SIZE]; /* all zero for a full file */
	uint64_t page_size;
	uint64_t ram_size;
	uint64_t file_size; /* the memory file's size as the state records it */
	uint64_t present_pages;
	uint64_t present_bytes; /* present_pages * page_size */
	uint32_t region_count;
	uint64_t extent_count;
};

/* The memory file at the inferred path, by its footer, against the MEMORY section. */
enum squib_memory_match {
	SQUIB_MEMORY_MATCH_UNCHECKED = 0, /* no section, no inferred path, describe_buffer */
	SQUIB_MEMORY_MATCH_YES,		  /* id, kind, parent, geometry agree */
	SQUIB_MEMORY_MATCH_NO,		  /* a valid footer naming another file (detail) */
	SQUIB_MEMORY_MATCH_MISSING,	  /* nothing at the inferred path */
	SQUIB_MEMORY_MATCH_UNREADABLE,	  /* no valid footer: damaged, foreign, I/O error */
};

struct squib_description {
	char *state_path;
	uint64_t magic;
	enum squib_arch arch; /* from the magic; ANY if unknown */
	struct squib_version version;
	struct squib_version expected_version;
	bool crc_ok;
	bool body_ok;     /* false only when crc_ok is false and the body did not decode */
	char *body_error; /* the decode error's message when !body_ok, else NULL */
	/* Meaningful when body_ok: */
	uint32_t vcpu_count;
	uint64_t mem_size_mib;
	bool track_dirty_pages;
	uint32_t device_count;
	struct squib_device_summary *devices;
	bool mmds_present;
	/* Memory file next to the state file (last extension replaced by ".mem"). */
	char *inferred_memory_path; /* NULL when the state path has no extension */
	bool inferred_memory_exists;
	bool has_inferred_memory_size;
	uint64_t inferred_memory_size;
	/* The state's MEMORY section (only when body_ok): */
	bool has_memory;
	struct squib_memory_summary memory;
	enum squib_memory_match memory_match;
	char *memory_match_detail; /* for NO and UNREADABLE: why; else NULL */
};

/* Describe a file on disk (reads at most the size limit + 1 bytes, stats the
 * inferred memory file). */
SQUIB_API int squib_describe(const char *state_path, struct squib_description *out,
			     struct squib_error_detail *d);

/* Describe bytes already in memory; `state_path` (may be NULL) is only recorded
 * and used to infer the memory path, which is not stat-ed. */
SQUIB_API int squib_describe_buffer(const uint8_t *buf, size_t len, const char *state_path,
				    struct squib_description *out, struct squib_error_detail *d);

SQUIB_API void squib_description_free(struct squib_description *desc);

/* Human form (upstream layout, values at column 23; with a MEMORY section,
 * labelled lines for it after "memory file:"); heap string, free(). */
SQUIB_API int squib_describe_human(const struct squib_description *desc, char **out);

/* JSON form with the upstream keys, plus "memory": the MEMORY section as an
 * object, or null; heap string, free(). */
SQUIB_API int squib_describe_json(const struct squib_description *desc, char **out);

/*
 * A failure as a JSON object, what `describe --json` and `verify --json`
 * print instead of a report: {"error": {"code": "SQUIB_E_IO", "value": -1013,
 * "path": PATH or null, "message": the wire-stable text, "detail": d->msg or
 * null, "os_errno": N or null, "text": squib_error_format's}}. d and path may
 * be NULL; heap string, free().
 */
SQUIB_API int squib_error_json(int code, const struct squib_error_detail *d, const char *path,
			       char **out);

/* Memory path for a state path: the last extension replaced by "mem" (Rust
 * Path::with_extension semantics). *out is NULL when the file name has no
 * extension (including dotfiles such as ".snap"). */
SQUIB_API int squib_infer_memory_path(const char *state_path, char **out);

/*
 * The memory file of a state: the one rule every command follows. An
 * explicit `mem` (a --mem option) is taken as it is, never replaced or
 * ignored; without one, the path squib_infer_memory_path gives. *out is a
 * heap string (free()); SQUIB_E_INVALID_PATH when there is none (the state
 * path has no extension to replace: the memory file must be named).
 */
SQUIB_API int squib_mem_path_for_state(const char *state_path, const char *mem, char **out,
				       struct squib_error_detail *d);

#ifdef __cplusplus
}
#endif
#endif /* SQUIB_DESCRIBE_H */
