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
 * Thread-safety: reentrant; a description is a plain value owned by the caller.
 */
#ifndef SQUIB_DESCRIBE_H
#define SQUIB_DESCRIBE_H

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
};

/* Describe a file on disk (reads at most the size limit + 1 bytes, stats the
 * inferred memory file). */
int squib_describe(const char *state_path, struct squib_description *out,
		   struct squib_error_detail *d);

/* Describe bytes already in memory; `state_path` (may be NULL) is only recorded
 * and used to infer the memory path, which is not stat-ed. */
int squib_describe_buffer(const uint8_t *buf, size_t len, const char *state_path,
			  struct squib_description *out, struct squib_error_detail *d);

void squib_description_free(struct squib_description *desc);

/* Human form (upstream layout, values at column 23); heap string, free(). */
int squib_describe_human(const struct squib_description *desc, char **out);

/* JSON form with the upstream keys; heap string, free(). */
int squib_describe_json(const struct squib_description *desc, char **out);

/* Memory path for a state path: the last extension replaced by "mem" (Rust
 * Path::with_extension semantics). *out is NULL when the file name has no
 * extension (including dotfiles such as ".snap"). */
int squib_infer_memory_path(const char *state_path, char **out);

#ifdef __cplusplus
}
#endif
#endif /* SQUIB_DESCRIBE_H */
