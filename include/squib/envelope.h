/* SPDX-License-Identifier: Apache-2.0 */
/*
 * squib/envelope.h - the state file format: header, sections, CRC trailer.
 *
 *   offset 0   header (24 bytes, little-endian):
 *                magic u64 | major u16 | minor u16 | patch u16 | reserved u16 (0)
 *                | payload_len u64
 *   offset 24  payload: sections in ascending tag order, each
 *                tag u16 | flags u16 | length u32 | length bytes
 *   end - 8    CRC-64/Jones of every preceding byte, u64 little-endian
 *
 * docs/FORMAT.md documents every section byte by byte.
 *
 * Decoding checks, in order, each with its own error: size limit, too short,
 * CRC, magic, version, then structure (SQUIB_E_ENCODING) and unknown mandatory
 * sections (SQUIB_E_INCOMPATIBLE). Decoding never reads out of bounds and never
 * allocates more than a bounded multiple of the input size.
 *
 * Encoding is deterministic: encode(decode(f)) == f for every f that decodes,
 * except that the header's patch level is always written as ours (FORMAT.md §4).
 *
 * Thread-safety: all functions are reentrant.
 */
#ifndef SQUIB_ENVELOPE_H
#define SQUIB_ENVELOPE_H

#include <squib/api.h>
#include <stddef.h>
#include <stdint.h>

#include <squib/error.h>
#include <squib/state.h>

#ifdef __cplusplus
extern "C" {
#endif

#define SQUIB_MAGIC_AARCH64 0x07101984AAAA0000ULL
#define SQUIB_MAGIC_X86_64 0x0710198486640000ULL

/* Format version written, and the acceptance rule: same major, minor <= ours. */
#define SQUIB_FORMAT_VERSION_MAJOR 1
#define SQUIB_FORMAT_VERSION_MINOR 0
#define SQUIB_FORMAT_VERSION_PATCH 0

/* Largest accepted state file in bytes, trailer included (decimal, not MiB). */
#define SQUIB_STATE_SIZE_LIMIT 10000000u

#define SQUIB_STATE_HEADER_SIZE 24u
#define SQUIB_STATE_TRAILER_SIZE 8u
#define SQUIB_SECTION_HEADER_SIZE 8u

/* Section flag: a reader that does not know the tag may skip the section. */
#define SQUIB_SECTION_FLAG_SKIPPABLE 0x0001u

enum squib_section_tag {
	SQUIB_SECTION_VM_INFO = 0x0001,     /* exactly one */
	SQUIB_SECTION_VCPU_ARM64 = 0x0002,  /* one per vCPU, in vCPU order (aarch64 files) */
	SQUIB_SECTION_GIC = 0x0003,         /* exactly one */
	SQUIB_SECTION_DEVICE = 0x0004,      /* one per device, sorted */
	SQUIB_SECTION_MMDS = 0x0005,        /* at most one */
	SQUIB_SECTION_VCPU_X86_64 = 0x0010, /* one per vCPU, in vCPU order (x86_64 files) */
	SQUIB_SECTION_X86_VM = 0x0011,      /* at most one (x86_64 files) */
	SQUIB_SECTION_MEMORY = 0x0020,      /* at most one */
};

struct squib_envelope_header {
	uint64_t magic;
	struct squib_version version;
	uint64_t payload_len;
};

/* The format version this library writes. */
SQUIB_API struct squib_version squib_format_version(void);

SQUIB_API uint64_t squib_arch_magic(enum squib_arch arch);	 /* 0 for SQUIB_ARCH_ANY */
SQUIB_API enum squib_arch squib_arch_from_magic(uint64_t magic); /* SQUIB_ARCH_ANY if unknown */
SQUIB_API enum squib_arch squib_host_arch(void);

/*
 * Encode a state into a new heap buffer (*out, *out_len; free() it). Devices,
 * sysregs and the x86 XCR, CPUID and MSR arrays are emitted in canonical order
 * whatever their array order. Fails with SQUIB_E_INVALID_ARGUMENT for a state
 * that cannot be represented (invalid UTF-8 or NUL in a string, duplicate
 * sysreg key, XCR, CPUID entry, MSR or device, a count or blob size outside
 * docs/FORMAT.md's bounds, bad enum value, arch ANY) and
 * SQUIB_E_SIZE_LIMIT_EXCEEDED when the file would exceed the limit.
 */
SQUIB_API int squib_state_encode(const struct squib_microvm_state *s, uint8_t **out,
				 size_t *out_len, struct squib_error_detail *d);

/*
 * Decode a whole state file (header, payload, trailer). `expected` selects the
 * magic to accept; SQUIB_ARCH_ANY accepts either architecture (a MagicMismatch
 * then names the host's magic as expected). On success *out owns the decoded
 * state (free with squib_state_free) and *hdr (optional) receives the header.
 * On failure *out is left initialised and empty.
 */
SQUIB_API int squib_state_decode(const uint8_t *buf, size_t len, enum squib_arch expected,
				 struct squib_microvm_state *out, struct squib_envelope_header *hdr,
				 struct squib_error_detail *d);

/* The same without the CRC check, over the body only (the file minus its 8-byte
 * trailer): upstream load_without_crc_check, used by describe. */
SQUIB_API int squib_state_decode_body(const uint8_t *body, size_t len, enum squib_arch expected,
				      struct squib_microvm_state *out,
				      struct squib_envelope_header *hdr,
				      struct squib_error_detail *d);

/* Parse just the 24-byte header (no CRC, magic or version checks). */
SQUIB_API int squib_envelope_parse_header(const uint8_t *buf, size_t len,
					  struct squib_envelope_header *hdr,
					  struct squib_error_detail *d);

/* Read a state file into a heap buffer, reading at most limit+1 bytes:
 * SQUIB_E_SIZE_LIMIT_EXCEEDED for a larger file, SQUIB_E_IO on OS errors. */
SQUIB_API int squib_state_read_file(const char *path, uint8_t **buf, size_t *len,
				    struct squib_error_detail *d);

/* read_file of an open fd (from its current offset; the fd stays open). */
SQUIB_API int squib_state_read_fd(int fd, uint8_t **buf, size_t *len, struct squib_error_detail *d);

/* read_file + decode. */
SQUIB_API int squib_state_load_file(const char *path, enum squib_arch expected,
				    struct squib_microvm_state *out,
				    struct squib_envelope_header *hdr,
				    struct squib_error_detail *d);

/* encode + crash-safe publication through squib/atomic.h. */
SQUIB_API int squib_state_save_file(const char *path, const struct squib_microvm_state *s,
				    struct squib_error_detail *d);

#ifdef __cplusplus
}
#endif
#endif /* SQUIB_ENVELOPE_H */
