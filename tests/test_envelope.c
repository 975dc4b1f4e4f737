/* SPDX-License-Identifier: Apache-2.0 */
/*
 * The state file format: upstream envelope.rs tests adapted to format 1.0, the
 * decode check order, every structural error class, forward-compatible
 * sections, canonical re-encoding, truncation, and the bounded file read.
 */
#include "testutil.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <squib/crc64.h>
#include <squib/envelope.h>
#include <squib/state.h>
#include <squib/sysreg.h>

#include "../src/util.h"
#include "../src/wire.h"

#define LIMIT SQUIB_STATE_SIZE_LIMIT

/* ---- helpers ----------------------------------------------------------- */

static const char *message(const struct squib_error_detail *d)
{
	static char buf[1024];

	squib_error_message(d->code, d, buf, sizeof(buf));
	return buf;
}

/* Recompute the trailer after editing the body. */
static void recrc(uint8_t *buf, size_t len)
{
	squib_put_le64(buf + len - 8, squib_crc64(0, buf, len - 8));
}

/* A state that uses every field: two vCPUs, devices added out of order, MMDS, initrd. */
static void populated_state(struct squib_microvm_state *s)
{
	struct squib_arm64_vcpu *v;

	squib_state_init(s, SQUIB_ARCH_AARCH64);
	s->vm_info.mem_size_mib = 256;
	s->vm_info.track_dirty_pages = true;
	assert_int_equal(squib_state_set_string(&s->vm_info.cpu_template, "V1N1"), 0);
	assert_int_equal(squib_state_set_string(&s->vm_info.kernel_image_path, "/k/vmlinux"), 0);
	assert_int_equal(squib_state_set_string(&s->vm_info.initrd_path, "/k/initrd"), 0);
	assert_int_equal(squib_state_set_string(&s->vm_info.boot_args, "console=ttyS0 reboot=k"),
			 0);
	for (uint64_t c = 0; c < 2; c++) {
		assert_int_equal(squib_state_add_arm64_vcpu(s, c, &v), 0);
		for (int i = 0; i < 31; i++)
			v->regs.x[i] = c << 32 | (uint64_t)i;
		v->regs.pc = 0x80080000 + c;
		v->regs.sp = 0x1000;
		v->regs.pstate = 0x3C5;
		v->fp_regs.v[31].hi = 0xFFFFFFFFFFFFFFFFULL;
		v->fp_regs.fpcr = 7;
		v->psci_state = c ? SQUIB_PSCI_OFF : SQUIB_PSCI_ON;
		assert_int_equal(squib_arm64_vcpu_set_sysreg(v, 2, 0xDEADBEAD), 0);
		assert_int_equal(squib_arm64_vcpu_set_sysreg(v, 1, 0xCAFEBEEF), 0);
	}
	assert_int_equal(squib_state_set_gic(s, "gicblob", 7), 0);
	assert_int_equal(squib_state_add_device(s, "virtio-net", "eth0", 1, "\x01\x02", 2), 0);
	assert_int_equal(squib_state_add_device(s, "virtio-block", "rootfs", 0, "rb", 2), 0);
	assert_int_equal(squib_state_set_mmds(s, "{\"a\":1}", true, 3600), 0);
}

static uint8_t *encode_ok(const struct squib_microvm_state *s, size_t *len)
{
	struct squib_error_detail d;
	uint8_t *buf = NULL;

	assert_int_equal(squib_state_encode(s, &buf, len, &d), 0);
	assert_non_null(buf);
	return buf;
}

static uint8_t *encode_populated(size_t *len)
{
	struct squib_microvm_state s;
	uint8_t *buf;

	populated_state(&s);
	buf = encode_ok(&s, len);
	squib_state_free(&s);
	return buf;
}

/* Decode expecting `code`; on failure the output state must be empty. */
static void expect_decode(const uint8_t *buf, size_t len, enum squib_arch arch, int code,
			  struct squib_error_detail *d)
{
	struct squib_microvm_state out, empty;

	assert_int_equal(squib_state_decode(buf, len, arch, &out, NULL, d), code);
	assert_int_equal(d->code, code == 0 ? d->code : code);
	if (code) {
		squib_state_init(&empty, arch);
		assert_true(squib_state_equal(&out, &empty));
		assert_null(out.arm64_vcpus);
		assert_null(out.vm_info.boot_args);
	}
	squib_state_free(&out);
}

/* ---- upstream envelope.rs tests ------------------------------------------ */

static void test_should_round_trip_default_state_through_save_and_load(void **state)
{
	struct squib_microvm_state s, out;
	struct squib_envelope_header hdr;
	struct squib_error_detail d;
	uint8_t *buf;
	size_t len;

	(void)state;
	squib_state_init(&s, SQUIB_ARCH_AARCH64);
	buf = encode_ok(&s, &len);
	assert_int_equal(squib_state_decode(buf, len, SQUIB_ARCH_AARCH64, &out, &hdr, &d), 0);
	assert_int_equal(hdr.magic, SQUIB_MAGIC_AARCH64);
	assert_int_equal(hdr.version.major, 1);
	assert_int_equal(hdr.version.minor, 0);
	assert_int_equal(hdr.version.patch, 0);
	assert_int_equal(hdr.payload_len, len - 32);
	assert_true(squib_state_equal(&s, &out));
	squib_state_free(&out);
	free(buf);
}

static void test_should_reject_truncated_crc_trailer(void **state)
{
	struct squib_error_detail d;
	uint8_t *buf;
	size_t len;

	(void)state;
	buf = encode_populated(&len);
	expect_decode(buf, len - 4, SQUIB_ARCH_AARCH64, SQUIB_E_CRC_MISMATCH, &d);
	assert_string_equal(message(&d), "snapshot CRC64 mismatch");
	free(buf);
}

static void test_should_reject_too_short_buffer(void **state)
{
	struct squib_error_detail d;
	uint8_t *buf;
	size_t len;

	(void)state;
	buf = encode_populated(&len);
	expect_decode(buf, 0, SQUIB_ARCH_AARCH64, SQUIB_E_TOO_SHORT, &d);
	expect_decode(buf, 4, SQUIB_ARCH_AARCH64, SQUIB_E_TOO_SHORT, &d);
	expect_decode(buf, 31, SQUIB_ARCH_AARCH64, SQUIB_E_TOO_SHORT, &d);
	assert_string_equal(message(&d), "snapshot file is too short to contain a CRC trailer");
	expect_decode(NULL, 0, SQUIB_ARCH_AARCH64, SQUIB_E_TOO_SHORT, &d);
	/* 32 bytes is long enough to reach the CRC check. */
	expect_decode(buf, 32, SQUIB_ARCH_AARCH64, SQUIB_E_CRC_MISMATCH, &d);
	free(buf);
}

static void test_should_reject_bit_flipped_state(void **state)
{
	struct squib_error_detail d;
	uint8_t *buf;
	size_t len;

	(void)state;
	buf = encode_populated(&len);
	buf[2] ^= 1;
	expect_decode(buf, len, SQUIB_ARCH_AARCH64, SQUIB_E_CRC_MISMATCH, &d);
	free(buf);
}

static void test_should_reject_clobbered_crc_trailer(void **state)
{
	struct squib_error_detail d;
	uint8_t *buf;
	size_t len;

	(void)state;
	buf = encode_populated(&len);
	for (size_t i = len - 8; i < len; i++)
		buf[i] = (uint8_t)~buf[i];
	expect_decode(buf, len, SQUIB_ARCH_AARCH64, SQUIB_E_CRC_MISMATCH, &d);
	free(buf);
}

static void test_should_reject_wrong_magic_after_crc_check(void **state)
{
	struct squib_microvm_state out;
	struct squib_error_detail d;
	uint8_t *buf;
	size_t len;

	(void)state;
	buf = encode_populated(&len);
	squib_put_le64(buf, 0xDEADBEEF);
	recrc(buf, len);
	expect_decode(buf, len, SQUIB_ARCH_AARCH64, SQUIB_E_MAGIC_MISMATCH, &d);
	assert_int_equal(d.magic_found, 0xDEADBEEF);
	assert_int_equal(d.magic_expected, SQUIB_MAGIC_AARCH64);
	assert_string_equal(
		message(&d),
		"snapshot magic mismatch (file: 0xdeadbeef, expected: 0x7101984aaaa0000)");
	/* The same through decode_body, which never looks at the trailer. */
	assert_int_equal(squib_state_decode_body(buf, len - 8, SQUIB_ARCH_AARCH64, &out, NULL, &d),
			 SQUIB_E_MAGIC_MISMATCH);
	/* ANY names the host's magic as the expected one. */
	expect_decode(buf, len, SQUIB_ARCH_ANY, SQUIB_E_MAGIC_MISMATCH, &d);
	assert_int_equal(d.magic_expected, squib_arch_magic(squib_host_arch()));
	free(buf);
}

static void set_version(uint8_t *buf, size_t len, uint16_t major, uint16_t minor, uint16_t patch)
{
	squib_put_le16(buf + 8, major);
	squib_put_le16(buf + 10, minor);
	squib_put_le16(buf + 12, patch);
	recrc(buf, len);
}

static void test_should_reject_higher_major_version(void **state)
{
	struct squib_error_detail d;
	uint8_t *buf;
	size_t len;

	(void)state;
	buf = encode_populated(&len);
	set_version(buf, len, 2, 0, 0);
	expect_decode(buf, len, SQUIB_ARCH_AARCH64, SQUIB_E_VERSION_MISMATCH, &d);
	assert_string_equal(message(&d),
			    "snapshot version 2.0.0 is incompatible with squib's 1.0.0");
	set_version(buf, len, 0, 0, 0); /* a different major in either direction */
	expect_decode(buf, len, SQUIB_ARCH_AARCH64, SQUIB_E_VERSION_MISMATCH, &d);
	free(buf);
}

static void test_should_reject_higher_minor_version(void **state)
{
	struct squib_error_detail d;
	uint8_t *buf;
	size_t len;

	(void)state;
	buf = encode_populated(&len);
	set_version(buf, len, 1, 1, 0);
	expect_decode(buf, len, SQUIB_ARCH_AARCH64, SQUIB_E_VERSION_MISMATCH, &d);
	assert_string_equal(message(&d),
			    "snapshot version 1.1.0 is incompatible with squib's 1.0.0");
	free(buf);
}

static void test_should_accept_lower_minor_version(void **state)
{
	struct squib_error_detail d;
	uint8_t *buf;
	size_t len;

	(void)state;
	/* No minor below 0 exists yet; 1.0 itself is the lowest and must load. */
	buf = encode_populated(&len);
	set_version(buf, len, 1, 0, 0);
	expect_decode(buf, len, SQUIB_ARCH_AARCH64, 0, &d);
	free(buf);
}

static void test_should_accept_arbitrary_patch_version(void **state)
{
	struct squib_envelope_header hdr;
	struct squib_microvm_state out;
	struct squib_error_detail d;
	uint8_t *buf;
	size_t len;

	(void)state;
	buf = encode_populated(&len);
	set_version(buf, len, 1, 0, 12345);
	assert_int_equal(squib_state_decode(buf, len, SQUIB_ARCH_AARCH64, &out, &hdr, &d), 0);
	assert_int_equal(hdr.version.patch, 12345);
	assert_int_equal(out.vcpu_count, 2);
	squib_state_free(&out);
	free(buf);
}

static void test_should_enforce_size_limit_on_load(void **state)
{
	struct squib_microvm_state out;
	struct squib_error_detail d;
	uint8_t *big = malloc(LIMIT + 32);

	(void)state;
	assert_non_null(big);
	memset(big, 0xA5, LIMIT + 32);
	expect_decode(big, LIMIT + 32, SQUIB_ARCH_AARCH64, SQUIB_E_SIZE_LIMIT_EXCEEDED, &d);
	assert_int_equal(d.limit, LIMIT);
	assert_string_equal(message(&d), "snapshot exceeds 10000000 byte deserialization limit");
	expect_decode(big, LIMIT + 1, SQUIB_ARCH_AARCH64, SQUIB_E_SIZE_LIMIT_EXCEEDED, &d);
	assert_int_equal(
		squib_state_decode_body(big, LIMIT + 1, SQUIB_ARCH_AARCH64, &out, NULL, &d),
		SQUIB_E_SIZE_LIMIT_EXCEEDED);
	/* Exactly the limit gets past the size check (and fails later, on the CRC). */
	expect_decode(big, LIMIT, SQUIB_ARCH_AARCH64, SQUIB_E_CRC_MISMATCH, &d);
	free(big);
}

/* A GIC blob sized so the whole file is `total` bytes. */
static int encode_sized(size_t total, uint8_t **buf, size_t *len, struct squib_error_detail *d)
{
	struct squib_microvm_state s;
	uint8_t *blob;
	size_t base;
	int rc;

	squib_state_init(&s, SQUIB_ARCH_AARCH64);
	free(encode_ok(&s, &base));
	blob = calloc(1, total - base);
	assert_non_null(blob);
	s.gic.bytes = blob;
	s.gic.size = s.gic.len = total - base;
	rc = squib_state_encode(&s, buf, len, d);
	squib_state_free(&s);
	return rc;
}

static void test_should_accept_file_of_exactly_the_limit(void **state)
{
	struct squib_microvm_state out;
	struct squib_error_detail d;
	uint8_t *buf;
	size_t len;

	(void)state;
	assert_int_equal(encode_sized(LIMIT, &buf, &len, &d), 0);
	assert_int_equal(len, LIMIT);
	assert_int_equal(squib_state_decode(buf, len, SQUIB_ARCH_AARCH64, &out, NULL, &d), 0);
	assert_int_equal(out.gic.size, out.gic.len);
	squib_state_free(&out);
	free(buf);
	assert_int_equal(encode_sized(LIMIT + 1, &buf, &len, &d), SQUIB_E_SIZE_LIMIT_EXCEEDED);
	assert_int_equal(d.limit, LIMIT);
}

static void test_should_keep_arch_magic_constants(void **state)
{
	(void)state;
	assert_int_equal(SQUIB_MAGIC_AARCH64, 0x07101984AAAA0000ULL);
	assert_int_equal(SQUIB_MAGIC_X86_64, 0x0710198486640000ULL);
	assert_int_equal(squib_arch_magic(SQUIB_ARCH_AARCH64), SQUIB_MAGIC_AARCH64);
	assert_int_equal(squib_arch_magic(SQUIB_ARCH_X86_64), SQUIB_MAGIC_X86_64);
	assert_int_equal(squib_arch_magic(SQUIB_ARCH_ANY), 0);
	assert_int_equal(squib_arch_from_magic(SQUIB_MAGIC_X86_64), SQUIB_ARCH_X86_64);
	assert_int_equal(squib_arch_from_magic(0xDEADBEEF), SQUIB_ARCH_ANY);
}

/* ---- architectures ------------------------------------------------------ */

static uint8_t *encode_x86(size_t *len)
{
	struct squib_microvm_state s;
	uint8_t *buf;

	squib_state_init(&s, SQUIB_ARCH_X86_64);
	s.vm_info.mem_size_mib = 128;
	assert_int_equal(squib_state_add_device(&s, "virtio-block", "rootfs", 0, NULL, 0), 0);
	buf = encode_ok(&s, len);
	squib_state_free(&s);
	return buf;
}

static void test_should_reject_x86_file_when_aarch64_expected(void **state)
{
	struct squib_error_detail d;
	uint8_t *buf;
	size_t len;

	(void)state;
	buf = encode_x86(&len);
	assert_int_equal(squib_get_le64(buf), SQUIB_MAGIC_X86_64);
	expect_decode(buf, len, SQUIB_ARCH_AARCH64, SQUIB_E_MAGIC_MISMATCH, &d);
	assert_string_equal(message(&d),
			    "snapshot magic mismatch (file: 0x710198486640000, expected: "
			    "0x7101984aaaa0000)");
	free(buf);
}

static void test_should_accept_either_arch_with_any(void **state)
{
	struct squib_microvm_state out;
	struct squib_error_detail d;
	uint8_t *buf;
	size_t len;

	(void)state;
	buf = encode_x86(&len);
	assert_int_equal(squib_state_decode(buf, len, SQUIB_ARCH_ANY, &out, NULL, &d), 0);
	assert_int_equal(out.arch, SQUIB_ARCH_X86_64);
	assert_int_equal(out.device_count, 1);
	assert_int_equal(out.gic.size, 0);
	squib_state_free(&out);
	assert_int_equal(squib_state_decode(buf, len, SQUIB_ARCH_X86_64, &out, NULL, &d), 0);
	squib_state_free(&out);
	free(buf);
	buf = encode_populated(&len);
	assert_int_equal(squib_state_decode(buf, len, SQUIB_ARCH_ANY, &out, NULL, &d), 0);
	assert_int_equal(out.arch, SQUIB_ARCH_AARCH64);
	squib_state_free(&out);
	expect_decode(buf, len, SQUIB_ARCH_X86_64, SQUIB_E_MAGIC_MISMATCH, &d);
	free(buf);
}

/* ---- canonical encoding ------------------------------------------------- */

static void test_should_reencode_decoded_file_byte_identically(void **state)
{
	struct squib_microvm_state s, out;
	struct squib_error_detail d;
	uint8_t *buf, *again;
	size_t len, len2;

	(void)state;
	populated_state(&s);
	buf = encode_ok(&s, &len);
	assert_int_equal(squib_state_decode(buf, len, SQUIB_ARCH_AARCH64, &out, NULL, &d), 0);
	assert_true(squib_state_equal(&s, &out));
	again = encode_ok(&out, &len2);
	assert_int_equal(len, len2);
	assert_memory_equal(buf, again, len);
	squib_state_free(&out);
	squib_state_free(&s);
	free(again);
	free(buf);
}

/* ---- hand-built files ----------------------------------------------------- */

/* Sections are written with the wire writer; fb_finish fixes payload_len and the CRC. */
static void fb_begin(struct squib_wire_writer *w, uint64_t magic)
{
	squib_wire_writer_init(w, SIZE_MAX);
	squib_wire_put_u64(w, magic);
	squib_wire_put_u16(w, 1);
	squib_wire_put_u16(w, 0);
	squib_wire_put_u16(w, 0);
	squib_wire_put_u16(w, 0);
	squib_wire_put_u64(w, 0);
}

static uint8_t *fb_finish(struct squib_wire_writer *w, size_t *len)
{
	squib_wire_patch_u64(w, 16, w->len - 24);
	squib_wire_put_u64(w, squib_crc64(0, w->buf, w->len));
	assert_int_equal(w->err, 0);
	return squib_wire_writer_take(w, len);
}

static void vm_info_fields(struct squib_wire_writer *w, uint8_t smt, uint8_t initrd_tag,
			   const char *cpu_template, size_t tpl_len, const char *boot_args,
			   size_t args_len)
{
	squib_wire_put_u64(w, 512);
	squib_wire_put_u8(w, smt);
	squib_wire_put_u32(w, (uint32_t)tpl_len);
	squib_wire_put_bytes(w, cpu_template, tpl_len);
	squib_wire_put_str(w, "/vmlinux");
	squib_wire_put_u8(w, initrd_tag);
	if (initrd_tag == 1)
		squib_wire_put_str(w, "/initrd");
	squib_wire_put_u32(w, (uint32_t)args_len);
	squib_wire_put_bytes(w, boot_args, args_len);
	squib_wire_put_bool(w, false);
}

static void sec_vm_info(struct squib_wire_writer *w)
{
	size_t s = squib_wire_section_begin(w, SQUIB_SECTION_VM_INFO, 0);

	vm_info_fields(w, 0, 1, "V1N1", 4, "console=ttyS0", 13);
	squib_wire_section_end(w, s);
}

static void sec_gic(struct squib_wire_writer *w, uint64_t declared, size_t size)
{
	size_t s = squib_wire_section_begin(w, SQUIB_SECTION_GIC, 0);

	squib_wire_put_u64(w, declared);
	squib_wire_put_u32(w, (uint32_t)size);
	for (size_t i = 0; i < size; i++)
		squib_wire_put_u8(w, (uint8_t)i);
	squib_wire_section_end(w, s);
}

static void vcpu_fields(struct squib_wire_writer *w, uint8_t psci, uint32_t count,
			const uint64_t *keys, size_t nkeys)
{
	for (int i = 0; i < 1 + 31 + 3 + 64 + 2; i++)
		squib_wire_put_u64(w, (uint64_t)i);
	squib_wire_put_u8(w, psci);
	squib_wire_put_u32(w, count);
	for (size_t i = 0; i < nkeys; i++) {
		squib_wire_put_u64(w, keys[i]);
		squib_wire_put_u64(w, ~keys[i]);
	}
}

static void sec_vcpu(struct squib_wire_writer *w, uint8_t psci, uint32_t count,
		     const uint64_t *keys, size_t nkeys)
{
	size_t s = squib_wire_section_begin(w, SQUIB_SECTION_VCPU_ARM64, 0);

	vcpu_fields(w, psci, count, keys, nkeys);
	squib_wire_section_end(w, s);
}

static void sec_device(struct squib_wire_writer *w, uint32_t slot, const char *id)
{
	size_t s = squib_wire_section_begin(w, SQUIB_SECTION_DEVICE, 0);

	squib_wire_put_str(w, "virtio-block");
	squib_wire_put_str(w, id);
	squib_wire_put_u32(w, slot);
	squib_wire_put_blob(w, "blob", 4);
	squib_wire_section_end(w, s);
}

static void sec_mmds(struct squib_wire_writer *w, uint8_t ttl_tag)
{
	size_t s = squib_wire_section_begin(w, SQUIB_SECTION_MMDS, 0);

	squib_wire_put_str(w, "{}");
	squib_wire_put_u8(w, ttl_tag);
	if (ttl_tag == 1)
		squib_wire_put_u32(w, 60);
	squib_wire_section_end(w, s);
}

static void sec_raw(struct squib_wire_writer *w, uint16_t tag, uint16_t flags, const char *bytes)
{
	size_t s = squib_wire_section_begin(w, tag, flags);

	squib_wire_put_bytes(w, bytes, strlen(bytes));
	squib_wire_section_end(w, s);
}

static void minimal(struct squib_wire_writer *w)
{
	sec_vm_info(w);
	sec_gic(w, 3, 3);
}

static const uint64_t keys_ok[] = {1, 2, 47, 1000};

/* ---- structural error classes ----------------------------------------------- */

struct bad_file {
	const char *name;
	uint64_t magic;
	void (*build)(struct squib_wire_writer *w);
	void (*patch)(uint8_t *buf, size_t len); /* applied before the CRC is refreshed */
	const char *fragment;			 /* expected in the message */
};

static void b_minimal(struct squib_wire_writer *w)
{
	minimal(w);
}
static void p_reserved(uint8_t *b, size_t n)
{
	(void)n;
	b[14] = 1;
}
static void p_payload_len(uint8_t *b, size_t n)
{
	squib_put_le64(b + 16, n - 32 + 1);
}
static void b_trunc_header(struct squib_wire_writer *w)
{
	minimal(w);
	squib_wire_put_bytes(w, "\x04\x00\x00", 3);
}
static void b_len_past_end(struct squib_wire_writer *w)
{
	minimal(w);
	squib_wire_put_u16(w, SQUIB_SECTION_DEVICE);
	squib_wire_put_u16(w, 0);
	squib_wire_put_u32(w, 100);
	squib_wire_put_bytes(w, "0123456789", 10);
}
static void b_out_of_order(struct squib_wire_writer *w)
{
	sec_gic(w, 3, 3);
	sec_vm_info(w);
}
static void b_bad_flags(struct squib_wire_writer *w)
{
	minimal(w);
	sec_raw(w, 0x0040, 0x0003, "x");
}
static void b_known_skippable(struct squib_wire_writer *w)
{
	size_t s = squib_wire_section_begin(w, SQUIB_SECTION_VM_INFO, SQUIB_SECTION_FLAG_SKIPPABLE);

	vm_info_fields(w, 0, 0, "", 0, "", 0);
	squib_wire_section_end(w, s);
	sec_gic(w, 3, 3);
}
static void b_dup_vm_info(struct squib_wire_writer *w)
{
	sec_vm_info(w);
	minimal(w);
}
static void b_dup_gic(struct squib_wire_writer *w)
{
	minimal(w);
	sec_gic(w, 3, 3);
}
static void b_dup_mmds(struct squib_wire_writer *w)
{
	minimal(w);
	sec_mmds(w, 0);
	sec_mmds(w, 1);
}
static void b_no_vm_info(struct squib_wire_writer *w)
{
	sec_gic(w, 3, 3);
}
static void b_no_sections(struct squib_wire_writer *w)
{
	(void)w;
}
static void b_no_gic(struct squib_wire_writer *w)
{
	sec_vm_info(w);
	sec_vcpu(w, 0, 0, NULL, 0);
}
static void b_vcpu_in_x86(struct squib_wire_writer *w)
{
	sec_vm_info(w);
	sec_vcpu(w, 0, 0, NULL, 0);
}
static void b_too_many_vcpus(struct squib_wire_writer *w)
{
	sec_vm_info(w);
	for (int i = 0; i <= SQUIB_STATE_MAX_VCPUS; i++)
		sec_vcpu(w, 0, 0, NULL, 0);
	sec_gic(w, 3, 3);
}
static void b_too_many_devices(struct squib_wire_writer *w)
{
	minimal(w);
	for (uint32_t i = 0; i <= SQUIB_STATE_MAX_DEVICES; i++)
		sec_device(w, i, "d");
}
static void b_too_many_extras(struct squib_wire_writer *w)
{
	minimal(w);
	for (int i = 0; i <= SQUIB_STATE_MAX_EXTRA_SECTIONS; i++)
		sec_raw(w, 0x0100, SQUIB_SECTION_FLAG_SKIPPABLE, "");
}
static void b_sysreg_count_over(struct squib_wire_writer *w)
{
	sec_vm_info(w);
	sec_vcpu(w, 0, SQUIB_STATE_MAX_SYSREGS + 1, NULL, 0);
	sec_gic(w, 3, 3);
}
static void b_sysreg_count_past_end(struct squib_wire_writer *w)
{
	sec_vm_info(w);
	sec_vcpu(w, 0, 3, keys_ok, 1);
	sec_gic(w, 3, 3);
}
static void b_sysreg_descending(struct squib_wire_writer *w)
{
	static const uint64_t k[] = {5, 4};

	sec_vm_info(w);
	sec_vcpu(w, 0, 2, k, 2);
	sec_gic(w, 3, 3);
}
static void b_sysreg_dup(struct squib_wire_writer *w)
{
	static const uint64_t k[] = {1, 7, 7};

	sec_vm_info(w);
	sec_vcpu(w, 0, 3, k, 3);
	sec_gic(w, 3, 3);
}
static void b_bad_psci(struct squib_wire_writer *w)
{
	sec_vm_info(w);
	sec_vcpu(w, 3, 0, NULL, 0);
	sec_gic(w, 3, 3);
}
static void b_trunc_vcpu(struct squib_wire_writer *w)
{
	size_t s;

	sec_vm_info(w);
	s = squib_wire_section_begin(w, SQUIB_SECTION_VCPU_ARM64, 0);
	for (int i = 0; i < 50; i++)
		squib_wire_put_u64(w, 0);
	squib_wire_section_end(w, s);
	sec_gic(w, 3, 3);
}
static void vm_info_section(struct squib_wire_writer *w, uint8_t smt, uint8_t initrd_tag,
			    const char *tpl, size_t tpl_len, const char *args, size_t args_len)
{
	size_t s = squib_wire_section_begin(w, SQUIB_SECTION_VM_INFO, 0);

	vm_info_fields(w, smt, initrd_tag, tpl, tpl_len, args, args_len);
	squib_wire_section_end(w, s);
	sec_gic(w, 3, 3);
}
static void b_bad_bool(struct squib_wire_writer *w)
{
	vm_info_section(w, 2, 0, "", 0, "", 0);
}
static void b_bad_opt(struct squib_wire_writer *w)
{
	vm_info_section(w, 0, 2, "", 0, "", 0);
}
static void b_overlong_utf8(struct squib_wire_writer *w)
{
	vm_info_section(w, 0, 0, "a\xc0\x80", 3, "", 0);
}
static void b_surrogate_utf8(struct squib_wire_writer *w)
{
	vm_info_section(w, 0, 0, "\xed\xa0\x80", 3, "", 0);
}
static void b_cut_utf8(struct squib_wire_writer *w)
{
	vm_info_section(w, 0, 0, "caf\xc3", 4, "", 0);
}
static void b_embedded_nul(struct squib_wire_writer *w)
{
	vm_info_section(w, 0, 0, "", 0, "quiet\0init=/bin/sh", 18);
}
static void b_str_past_end(struct squib_wire_writer *w)
{
	size_t s = squib_wire_section_begin(w, SQUIB_SECTION_VM_INFO, 0);

	squib_wire_put_u64(w, 512);
	squib_wire_put_u8(w, 0);
	squib_wire_put_u32(w, 1000);
	squib_wire_put_bytes(w, "abc", 3);
	squib_wire_section_end(w, s);
	sec_gic(w, 3, 3);
}
static void b_trailing_vm_info(struct squib_wire_writer *w)
{
	size_t s = squib_wire_section_begin(w, SQUIB_SECTION_VM_INFO, 0);

	vm_info_fields(w, 0, 0, "", 0, "", 0);
	squib_wire_put_u8(w, 0);
	squib_wire_section_end(w, s);
	sec_gic(w, 3, 3);
}
static void b_trailing_mmds(struct squib_wire_writer *w)
{
	size_t s;

	minimal(w);
	s = squib_wire_section_begin(w, SQUIB_SECTION_MMDS, 0);
	squib_wire_put_str(w, "null");
	squib_wire_put_u8(w, 0);
	squib_wire_put_u32(w, 60); /* a TTL with no presence flag */
	squib_wire_section_end(w, s);
}
static void b_devices_by_slot(struct squib_wire_writer *w)
{
	minimal(w);
	sec_device(w, 1, "a");
	sec_device(w, 0, "b");
}
static void b_devices_by_id(struct squib_wire_writer *w)
{
	minimal(w);
	sec_device(w, 3, "vdb");
	sec_device(w, 3, "vda");
}
static void b_devices_prefix(struct squib_wire_writer *w)
{
	minimal(w);
	sec_device(w, 3, "vda1");
	sec_device(w, 3, "vda");
}
static void b_device_dup(struct squib_wire_writer *w)
{
	minimal(w);
	sec_device(w, 2, "eth0");
	sec_device(w, 2, "eth0");
}
static void b_x86_empty_gic(struct squib_wire_writer *w)
{
	sec_vm_info(w);
	sec_gic(w, 0, 0);
}
static void b_gic_past_end(struct squib_wire_writer *w)
{
	size_t s;

	sec_vm_info(w);
	s = squib_wire_section_begin(w, SQUIB_SECTION_GIC, 0);
	squib_wire_put_u64(w, 16);
	squib_wire_put_u32(w, 16);
	squib_wire_put_bytes(w, "short", 5);
	squib_wire_section_end(w, s);
}

/* ---- x86_64 sections, built by hand from docs/FORMAT.md ---------------------- */

struct x86_shape {
	uint32_t mp_state;
	uint8_t lapic_tag;
	uint32_t xcr_count;
	const uint32_t *xcrs; /* indices */
	uint32_t cpuid_count;
	const uint32_t *cpuid; /* (function, index) pairs */
	uint32_t msr_count;
	const uint32_t *msrs; /* indices */
	uint32_t xsave_size;
	uint32_t xsave_declared; /* the blob's length field */
	size_t trailing;	 /* extra bytes at the end */
};

static const uint32_t xcrs_ok[] = {0, 1};
static const uint32_t cpuid_ok[] = {0, 0, 1, 0, 7, 0, 7, 1, 0x40000000, 0};
static const uint32_t msrs_ok[] = {0x10, 0x174, 0xc0000080, 0xc0000100};

static const struct x86_shape x86_ok = {
	.mp_state = 3,
	.lapic_tag = 1,
	.xcr_count = 2,
	.xcrs = xcrs_ok,
	.cpuid_count = 5,
	.cpuid = cpuid_ok,
	.msr_count = 4,
	.msrs = msrs_ok,
	.xsave_size = 4096,
	.xsave_declared = 4096,
};

/* Field values are derived from their offsets so a misplaced field shows. */
static void x86_segment_fields(struct squib_wire_writer *w, uint64_t k)
{
	squib_wire_put_u64(w, 0x1000 * k);
	squib_wire_put_u32(w, 0xFFFF0 + (uint32_t)k);
	squib_wire_put_u16(w, (uint16_t)(8 * k));
	for (uint8_t j = 0; j < 9; j++)
		squib_wire_put_u8(w, (uint8_t)(16 * k + j));
}

static void x86_fixed_fields(struct squib_wire_writer *w, uint32_t mp_state)
{
	for (uint64_t i = 0; i < 18; i++) /* rax .. rflags */
		squib_wire_put_u64(w, 0x100 + i);
	for (uint64_t k = 0; k < 8; k++) /* cs ds es fs gs ss tr ldt */
		x86_segment_fields(w, k);
	squib_wire_put_u64(w, 0x6000); /* gdt */
	squib_wire_put_u16(w, 0x27);
	squib_wire_put_u64(w, 0x7000); /* idt */
	squib_wire_put_u16(w, 0xFFF);
	for (uint64_t i = 0; i < 7; i++) /* cr0 cr2 cr3 cr4 cr8 efer apic_base */
		squib_wire_put_u64(w, 0x200 + i);
	for (uint64_t i = 0; i < 4; i++) /* interrupt_bitmap */
		squib_wire_put_u64(w, 0x300 + i);
	for (uint64_t i = 0; i < 7; i++) /* db0..3, dr6, dr7, flags */
		squib_wire_put_u64(w, 0x400 + i);
	for (int i = 0; i < 64; i++) /* events */
		squib_wire_put_u8(w, (uint8_t)(0x80 + i));
	squib_wire_put_u32(w, mp_state);
	squib_wire_put_u32(w, 2400000); /* tsc_khz */
}

static void x86_vcpu_fields(struct squib_wire_writer *w, const struct x86_shape *x)
{
	x86_fixed_fields(w, x->mp_state);
	squib_wire_put_u8(w, x->lapic_tag);
	for (int i = 0; x->lapic_tag == 1 && i < SQUIB_X86_LAPIC_SIZE; i++)
		squib_wire_put_u8(w, (uint8_t)i);
	squib_wire_put_u32(w, x->xcr_count);
	for (uint32_t i = 0; i < x->xcr_count; i++) {
		squib_wire_put_u32(w, x->xcrs[i]);
		squib_wire_put_u64(w, 7 + x->xcrs[i]);
	}
	squib_wire_put_u32(w, x->cpuid_count);
	for (uint32_t i = 0; i < x->cpuid_count; i++) {
		squib_wire_put_u32(w, x->cpuid[2 * i]);
		squib_wire_put_u32(w, x->cpuid[2 * i + 1]);
		for (uint32_t k = 0; k < 5; k++) /* flags eax ebx ecx edx */
			squib_wire_put_u32(w, 0x500 + k);
	}
	squib_wire_put_u32(w, x->msr_count);
	for (uint32_t i = 0; i < x->msr_count; i++) {
		squib_wire_put_u32(w, x->msrs[i]);
		squib_wire_put_u64(w, 0x600 + (uint64_t)i);
	}
	squib_wire_put_u32(w, x->xsave_declared);
	for (uint32_t i = 0; i < x->xsave_size; i++)
		squib_wire_put_u8(w, (uint8_t)(i * 3));
	for (size_t i = 0; i < x->trailing; i++)
		squib_wire_put_u8(w, 0);
}

static void sec_x86_vcpu(struct squib_wire_writer *w, const struct x86_shape *x)
{
	size_t s = squib_wire_section_begin(w, SQUIB_SECTION_VCPU_X86_64, 0);

	x86_vcpu_fields(w, x);
	squib_wire_section_end(w, s);
}

/* irqchip / pit: 0 absent, 1 present, anything else a bad option byte. */
static void sec_x86_vm(struct squib_wire_writer *w, uint8_t irqchip, uint8_t pit, size_t trailing)
{
	size_t s = squib_wire_section_begin(w, SQUIB_SECTION_X86_VM, 0);

	squib_wire_put_u64(w, 123456789); /* clock */
	squib_wire_put_u32(w, 2);	   /* flags */
	squib_wire_put_u64(w, 11);	   /* realtime */
	squib_wire_put_u64(w, 22);	   /* host_tsc */
	squib_wire_put_u8(w, irqchip);
	for (int i = 0; irqchip == 1 && i < 16 + 16 + 216; i++)
		squib_wire_put_u8(w, (uint8_t)(i + 1));
	squib_wire_put_u8(w, pit);
	for (int i = 0; pit == 1 && i < 112; i++)
		squib_wire_put_u8(w, (uint8_t)(i + 2));
	for (size_t i = 0; i < trailing; i++)
		squib_wire_put_u8(w, 0);
	squib_wire_section_end(w, s);
}

static void b_x86_vcpu(struct squib_wire_writer *w, const struct x86_shape *x)
{
	sec_vm_info(w);
	sec_x86_vcpu(w, x);
	sec_x86_vm(w, 1, 1, 0);
}

static void b_x86_vcpu_in_a64(struct squib_wire_writer *w)
{
	minimal(w);
	sec_x86_vcpu(w, &x86_ok);
}
static void b_x86_vm_in_a64(struct squib_wire_writer *w)
{
	minimal(w);
	sec_x86_vm(w, 0, 0, 0);
}
static void b_x86_dup_vm(struct squib_wire_writer *w)
{
	sec_vm_info(w);
	sec_x86_vm(w, 0, 0, 0);
	sec_x86_vm(w, 0, 0, 0);
}
static void b_x86_too_many_vcpus(struct squib_wire_writer *w)
{
	struct x86_shape x = x86_ok;

	x.lapic_tag = 0;
	x.xsave_size = x.xsave_declared = 0;
	sec_vm_info(w);
	for (int i = 0; i <= SQUIB_STATE_MAX_VCPUS; i++)
		sec_x86_vcpu(w, &x);
}
static void b_x86_mp_state(struct squib_wire_writer *w)
{
	struct x86_shape x = x86_ok;

	x.mp_state = 11;
	b_x86_vcpu(w, &x);
}
static void b_x86_lapic_tag(struct squib_wire_writer *w)
{
	struct x86_shape x = x86_ok;

	x.lapic_tag = 2;
	b_x86_vcpu(w, &x);
}
static void b_x86_xcr_count(struct squib_wire_writer *w)
{
	static const uint32_t many[17] = {0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15, 16};
	struct x86_shape x = x86_ok;

	x.xcr_count = 17;
	x.xcrs = many;
	b_x86_vcpu(w, &x);
}
static void b_x86_xcr_order(struct squib_wire_writer *w)
{
	static const uint32_t desc[] = {1, 0};
	struct x86_shape x = x86_ok;

	x.xcrs = desc;
	b_x86_vcpu(w, &x);
}
static void b_x86_cpuid_dup(struct squib_wire_writer *w)
{
	static const uint32_t dup[] = {7, 1, 7, 1};
	struct x86_shape x = x86_ok;

	x.cpuid_count = 2;
	x.cpuid = dup;
	b_x86_vcpu(w, &x);
}
static void b_x86_msr_order(struct squib_wire_writer *w)
{
	static const uint32_t desc[] = {0x174, 0x10};
	struct x86_shape x = x86_ok;

	x.msr_count = 2;
	x.msrs = desc;
	b_x86_vcpu(w, &x);
}
static void b_x86_msrs_past_end(struct squib_wire_writer *w)
{
	size_t s;

	sec_vm_info(w);
	s = squib_wire_section_begin(w, SQUIB_SECTION_VCPU_X86_64, 0);
	x86_fixed_fields(w, 0);
	squib_wire_put_u8(w, 0);     /* no lapic */
	squib_wire_put_u32(w, 0);    /* xcrs */
	squib_wire_put_u32(w, 0);    /* cpuid */
	squib_wire_put_u32(w, 1024); /* msr_count at the limit, entries missing */
	squib_wire_section_end(w, s);
}
static void b_x86_msr_count(struct squib_wire_writer *w)
{
	size_t s;

	sec_vm_info(w);
	s = squib_wire_section_begin(w, SQUIB_SECTION_VCPU_X86_64, 0);
	x86_fixed_fields(w, 0);
	squib_wire_put_u8(w, 0);
	squib_wire_put_u32(w, 0);
	squib_wire_put_u32(w, 0);
	squib_wire_put_u32(w, 1025);
	squib_wire_section_end(w, s);
}
static void b_x86_cpuid_over(struct squib_wire_writer *w)
{
	size_t s;

	sec_vm_info(w);
	s = squib_wire_section_begin(w, SQUIB_SECTION_VCPU_X86_64, 0);
	x86_fixed_fields(w, 0);
	squib_wire_put_u8(w, 0);
	squib_wire_put_u32(w, 0);
	squib_wire_put_u32(w, 257);
	squib_wire_section_end(w, s);
}
static void b_x86_xsave_small(struct squib_wire_writer *w)
{
	struct x86_shape x = x86_ok;

	x.xsave_size = x.xsave_declared = 512;
	b_x86_vcpu(w, &x);
}
static void b_x86_xsave_odd(struct squib_wire_writer *w)
{
	struct x86_shape x = x86_ok;

	x.xsave_size = x.xsave_declared = 4098;
	b_x86_vcpu(w, &x);
}
static void b_x86_xsave_past_end(struct squib_wire_writer *w)
{
	struct x86_shape x = x86_ok;

	x.xsave_declared = 8192;
	b_x86_vcpu(w, &x);
}
static void b_x86_vcpu_trailing(struct squib_wire_writer *w)
{
	struct x86_shape x = x86_ok;

	x.trailing = 3;
	b_x86_vcpu(w, &x);
}
static void b_x86_vm_opt(struct squib_wire_writer *w)
{
	sec_vm_info(w);
	sec_x86_vm(w, 1, 2, 0);
}
static void b_x86_vm_trailing(struct squib_wire_writer *w)
{
	sec_vm_info(w);
	sec_x86_vm(w, 0, 1, 5);
}
static void b_x86_vm_truncated(struct squib_wire_writer *w)
{
	size_t s;

	sec_vm_info(w);
	s = squib_wire_section_begin(w, SQUIB_SECTION_X86_VM, 0);
	squib_wire_put_u64(w, 1);
	squib_wire_put_u32(w, 0);
	squib_wire_put_u64(w, 0);
	squib_wire_put_u64(w, 0);
	squib_wire_put_u8(w, 1);
	squib_wire_put_bytes(w, "pic", 3);
	squib_wire_section_end(w, s);
}

#define A64 SQUIB_MAGIC_AARCH64
#define X86 SQUIB_MAGIC_X86_64

static const struct bad_file bad_files[] = {
	{"reserved header field", A64, b_minimal, p_reserved, "reserved header field at offset 14"},
	{"payload_len mismatch", A64, b_minimal, p_payload_len, "payload_len"},
	{"truncated section header", A64, b_trunc_header, NULL, "truncated section header"},
	{"section length past end", A64, b_len_past_end, NULL, "length 100 exceeds the 10 bytes"},
	{"sections out of order", A64, b_out_of_order, NULL, "out of order (after 0x0003)"},
	{"undefined flag bits", A64, b_bad_flags, NULL, "undefined flag bits 0x0003"},
	{"known section with flags", A64, b_known_skippable, NULL,
	 "VM_INFO section at offset 24 has flags 0x0001"},
	{"duplicate VM_INFO", A64, b_dup_vm_info, NULL, "duplicate VM_INFO"},
	{"duplicate GIC", A64, b_dup_gic, NULL, "duplicate GIC"},
	{"duplicate MMDS", A64, b_dup_mmds, NULL, "duplicate MMDS"},
	{"missing VM_INFO", A64, b_no_vm_info, NULL, "missing VM_INFO"},
	{"no sections", X86, b_no_sections, NULL, "missing VM_INFO"},
	{"missing GIC", A64, b_no_gic, NULL, "missing GIC"},
	{"vCPU in x86_64 file", X86, b_vcpu_in_x86, NULL, "VCPU_ARM64 section at offset"},
	{"too many vCPUs", A64, b_too_many_vcpus, NULL, "more than 256 VCPU_ARM64"},
	{"too many devices", A64, b_too_many_devices, NULL, "more than 1024 DEVICE"},
	{"too many extras", A64, b_too_many_extras, NULL, "more than 256 unknown skippable"},
	{"sysreg count over limit", A64, b_sysreg_count_over, NULL, "sysreg_count 4097"},
	{"sysreg entries past end", A64, b_sysreg_count_past_end, NULL,
	 "truncated vCPU sysreg entries"},
	{"sysreg keys descending", A64, b_sysreg_descending, NULL,
	 "sysreg key 0x4 at offset 928 is not above 0x5"},
	{"sysreg key duplicate", A64, b_sysreg_dup, NULL, "sysreg key 0x7"},
	{"invalid psci_state", A64, b_bad_psci, NULL, "invalid psci_state 3"},
	{"truncated vCPU registers", A64, b_trunc_vcpu, NULL, "truncated vCPU registers"},
	{"invalid bool", A64, b_bad_bool, NULL, "invalid bool vm_info.smt"},
	{"invalid option tag", A64, b_bad_opt, NULL, "vm_info.initrd_path"},
	{"overlong UTF-8", A64, b_overlong_utf8, NULL,
	 "invalid UTF-8 in string vm_info.cpu_template"},
	{"UTF-16 surrogate", A64, b_surrogate_utf8, NULL, "invalid UTF-8"},
	{"cut UTF-8 sequence", A64, b_cut_utf8, NULL, "invalid UTF-8"},
	{"embedded NUL", A64, b_embedded_nul, NULL, "NUL byte in string vm_info.boot_args"},
	{"string past section end", A64, b_str_past_end, NULL, "truncated vm_info.cpu_template"},
	{"trailing bytes in VM_INFO", A64, b_trailing_vm_info, NULL,
	 "1 trailing bytes in VM_INFO section"},
	{"trailing bytes in MMDS", A64, b_trailing_mmds, NULL, "4 trailing bytes in MMDS section"},
	{"devices out of slot order", A64, b_devices_by_slot, NULL, "out of order"},
	{"devices out of id order", A64, b_devices_by_id, NULL, "id \"vda\") is out of order"},
	{"longer id before its prefix", A64, b_devices_prefix, NULL, "out of order"},
	{"duplicate device", A64, b_device_dup, NULL,
	 "duplicate device (mmio_slot 2, id \"eth0\")"},
	{"empty GIC in x86_64 file", X86, b_x86_empty_gic, NULL, "empty GIC section"},
	{"GIC blob past end", A64, b_gic_past_end, NULL, "truncated gic.bytes"},
	{"x86 vCPU in aarch64 file", A64, b_x86_vcpu_in_a64, NULL,
	 "VCPU_X86_64 section at offset 114 in an aarch64 file"},
	{"x86 VM state in aarch64 file", A64, b_x86_vm_in_a64, NULL,
	 "X86_VM section at offset 114 in an aarch64 file"},
	{"duplicate X86_VM", X86, b_x86_dup_vm, NULL, "duplicate X86_VM"},
	{"too many x86 vCPUs", X86, b_x86_too_many_vcpus, NULL, "more than 256 VCPU_X86_64"},
	{"invalid mp_state", X86, b_x86_mp_state, NULL, "invalid mp_state 11 at offset 655"},
	{"invalid lapic option", X86, b_x86_lapic_tag, NULL, "option tag of x86 vCPU lapic"},
	{"too many XCRs", X86, b_x86_xcr_count, NULL, "xcr_count 17"},
	{"XCRs out of order", X86, b_x86_xcr_order, NULL, "XCR at offset 1704"},
	{"duplicate CPUID entry", X86, b_x86_cpuid_dup, NULL, "CPUID entry at offset"},
	{"too many CPUID entries", X86, b_x86_cpuid_over, NULL, "cpuid_count 257"},
	{"MSRs out of order", X86, b_x86_msr_order, NULL, "MSR at offset"},
	{"too many MSRs", X86, b_x86_msr_count, NULL, "msr_count 1025"},
	{"MSRs past section end", X86, b_x86_msrs_past_end, NULL, "truncated x86 vCPU MSRs"},
	{"XSAVE area too small", X86, b_x86_xsave_small, NULL, "XSAVE area of 512 bytes"},
	{"XSAVE area not whole words", X86, b_x86_xsave_odd, NULL, "XSAVE area of 4098 bytes"},
	{"XSAVE past section end", X86, b_x86_xsave_past_end, NULL, "truncated x86 vCPU xsave"},
	{"trailing bytes in x86 vCPU", X86, b_x86_vcpu_trailing, NULL,
	 "3 trailing bytes in VCPU_X86_64 section"},
	{"invalid PIT option", X86, b_x86_vm_opt, NULL, "option tag of x86_vm.pit"},
	{"trailing bytes in X86_VM", X86, b_x86_vm_trailing, NULL,
	 "5 trailing bytes in X86_VM section"},
	{"truncated irqchip", X86, b_x86_vm_truncated, NULL, "truncated x86_vm.pic_master"},
};

static uint8_t *build_bad(const struct bad_file *b, size_t *len)
{
	struct squib_wire_writer w;
	uint8_t *buf;

	fb_begin(&w, b->magic);
	b->build(&w);
	buf = fb_finish(&w, len);
	if (b->patch) {
		b->patch(buf, *len);
		recrc(buf, *len);
	}
	return buf;
}

static void test_should_report_every_structural_error_as_encoding(void **state)
{
	struct squib_error_detail d;

	(void)state;
	for (size_t i = 0; i < sizeof(bad_files) / sizeof(bad_files[0]); i++) {
		const struct bad_file *b = &bad_files[i];
		size_t len;
		uint8_t *buf = build_bad(b, &len);

		print_message("  %-30s ", b->name);
		expect_decode(buf, len, SQUIB_ARCH_ANY, SQUIB_E_ENCODING, &d);
		print_message("%s\n", message(&d));
		if (!strstr(d.msg, b->fragment))
			fail_msg("%s: \"%s\" lacks \"%s\"", b->name, d.msg, b->fragment);
		assert_true(strncmp(message(&d), "snapshot encoding error: ", 25) == 0);
		free(buf);
	}
}

static void test_should_accept_the_hand_built_baseline(void **state)
{
	struct squib_microvm_state out;
	struct squib_wire_writer w;
	struct squib_error_detail d;
	uint8_t *buf, *again;
	size_t len, len2;

	(void)state;
	fb_begin(&w, A64);
	sec_vm_info(&w);
	sec_vcpu(&w, 2, 4, keys_ok, 4);
	sec_gic(&w, 3, 3);
	sec_device(&w, 0, "vda");
	sec_device(&w, 0, "vda1");
	sec_device(&w, 1, "a");
	sec_mmds(&w, 1);
	buf = fb_finish(&w, &len);
	assert_int_equal(squib_state_decode(buf, len, SQUIB_ARCH_AARCH64, &out, NULL, &d), 0);
	assert_int_equal(out.vcpu_count, 1);
	assert_int_equal(out.arm64_vcpus[0].psci_state, SQUIB_PSCI_ON_PENDING);
	assert_int_equal(out.arm64_vcpus[0].sys_reg_count, 4);
	assert_int_equal(out.arm64_vcpus[0].sys_regs[3].key, 1000); /* unknown keys decode */
	assert_int_equal(out.arm64_vcpus[0].regs.x[0], 1);
	assert_int_equal(out.arm64_vcpus[0].fp_regs.fpcr, 100);
	assert_string_equal(out.vm_info.initrd_path, "/initrd");
	assert_int_equal(out.device_count, 3);
	assert_int_equal(out.mmds->token_ttl_seconds, 60);
	again = encode_ok(&out, &len2);
	assert_int_equal(len, len2);
	assert_memory_equal(buf, again, len);
	squib_state_free(&out);
	free(again);
	free(buf);
}

/* ---- forward compatibility --------------------------------------------------- */

static uint8_t *file_with_extras(size_t *len)
{
	struct squib_wire_writer w;

	fb_begin(&w, A64);
	sec_raw(&w, 0x0000, SQUIB_SECTION_FLAG_SKIPPABLE, "before everything");
	minimal(&w);
	sec_mmds(&w, 0);
	sec_raw(&w, 0x0012, SQUIB_SECTION_FLAG_SKIPPABLE, "first");
	sec_raw(&w, 0x0012, SQUIB_SECTION_FLAG_SKIPPABLE, "second");
	sec_raw(&w, 0x0021, SQUIB_SECTION_FLAG_SKIPPABLE, "");
	sec_raw(&w, 0xFFFF, SQUIB_SECTION_FLAG_SKIPPABLE, "last");
	return fb_finish(&w, len);
}

static void test_should_preserve_unknown_skippable_sections(void **state)
{
	struct squib_microvm_state out;
	struct squib_error_detail d;
	uint8_t *buf, *again;
	size_t len, len2;

	(void)state;
	buf = file_with_extras(&len);
	assert_int_equal(squib_state_decode(buf, len, SQUIB_ARCH_AARCH64, &out, NULL, &d), 0);
	assert_int_equal(out.extra_section_count, 5);
	assert_int_equal(out.extra_sections[0].tag, 0);
	assert_int_equal(out.extra_sections[1].tag, 0x0012);
	assert_memory_equal(out.extra_sections[2].bytes, "second", 6);
	assert_int_equal(out.extra_sections[3].len, 0);
	assert_null(out.extra_sections[3].bytes);
	assert_int_equal(out.extra_sections[4].flags, SQUIB_SECTION_FLAG_SKIPPABLE);
	again = encode_ok(&out, &len2);
	assert_int_equal(len, len2);
	assert_memory_equal(buf, again, len);
	squib_state_free(&out);
	free(again);
	free(buf);
}

static void test_should_reject_unknown_mandatory_section_as_incompatible(void **state)
{
	static const uint16_t tags[] = {0x0000, 0x0012, 0x0013, 0x0021, 0x1234};
	struct squib_error_detail d;

	(void)state;
	for (size_t i = 0; i < sizeof(tags) / sizeof(tags[0]); i++) {
		struct squib_wire_writer w;
		uint8_t *buf;
		size_t len;

		fb_begin(&w, A64);
		if (tags[i] == 0)
			sec_raw(&w, 0, 0, "new mandatory thing");
		minimal(&w);
		if (tags[i])
			sec_raw(&w, tags[i], 0, "new mandatory thing");
		buf = fb_finish(&w, &len);
		expect_decode(buf, len, SQUIB_ARCH_AARCH64, SQUIB_E_INCOMPATIBLE, &d);
		assert_string_equal(message(&d), "snapshot is from a different VMM (sysreg or GIC "
						 "blob shape mismatch)");
		free(buf);
	}
}

/* The fixed upstream text stays; the detail names the section that did not match. */
static void test_should_name_the_unknown_mandatory_section_in_the_detail(void **state)
{
	struct squib_wire_writer w;
	struct squib_error_detail d;
	uint8_t *buf;
	size_t len;

	(void)state;
	fb_begin(&w, A64);
	minimal(&w);
	sec_raw(&w, 0x1234, 0, "new mandatory thing");
	sec_raw(&w, 0x1235, 0, "another one");
	buf = fb_finish(&w, &len);
	expect_decode(buf, len, SQUIB_ARCH_AARCH64, SQUIB_E_INCOMPATIBLE, &d);
	assert_non_null(strstr(d.msg, "unknown mandatory section, tag 4660 at offset "));
	assert_null(strstr(d.msg, "4661"));
	free(buf);
}

static void test_should_report_structure_before_unknown_mandatory_section(void **state)
{
	struct squib_wire_writer w;
	struct squib_error_detail d;
	uint8_t *buf;
	size_t len;

	(void)state;
	fb_begin(&w, A64);
	sec_vm_info(&w);
	sec_vcpu(&w, 9, 0, NULL, 0); /* bad psci_state */
	sec_gic(&w, 3, 3);
	sec_raw(&w, 0x0042, 0, "mandatory");
	buf = fb_finish(&w, &len);
	expect_decode(buf, len, SQUIB_ARCH_AARCH64, SQUIB_E_ENCODING, &d);
	assert_non_null(strstr(d.msg, "psci_state"));
	free(buf);
}

/* ---- large state ------------------------------------------------------------- */

static void large_state(struct squib_microvm_state *s)
{
	char *json = malloc(64 * 1024 + 1);
	uint8_t *gic = malloc(64 * 1024);

	assert_non_null(json);
	assert_non_null(gic);
	squib_state_init(s, SQUIB_ARCH_AARCH64);
	s->vm_info.mem_size_mib = 4096;
	for (uint64_t c = 0; c < 32; c++) {
		struct squib_arm64_vcpu *v;
		assert_int_equal(squib_state_add_arm64_vcpu(s, c, &v), 0);
		/* Descending insertion exercises the sorted insert. */
		for (uint64_t k = SQUIB_SYSREG_KEY_MAX; k >= SQUIB_SYSREG_KEY_MIN; k--)
			assert_int_equal(
				squib_arm64_vcpu_set_sysreg(v, k, k * 0x0101010101010101ULL + c),
				0);
		v->regs.x[30] = c;
	}
	for (size_t i = 0; i < 64 * 1024; i++)
		gic[i] = (uint8_t)(i * 7);
	assert_int_equal(squib_state_set_gic(s, gic, 64 * 1024), 0);
	for (uint32_t i = 0; i < 16; i++) {
		char id[16];
		snprintf(id, sizeof(id), "dev%02u", 15 - i);
		assert_int_equal(squib_state_add_device(s, i % 2 ? "virtio-net" : "virtio-block",
							id, 15 - i, gic, 256 + i),
				 0);
	}
	memset(json, 'x', 64 * 1024);
	json[0] = '"';
	json[64 * 1024 - 1] = '"';
	json[64 * 1024] = '\0';
	assert_int_equal(squib_state_set_mmds(s, json, true, 21600), 0);
	free(json);
	free(gic);
}

static void test_should_round_trip_large_state(void **state)
{
	struct squib_microvm_state s, out;
	struct squib_error_detail d;
	uint8_t *buf, *again;
	size_t len, len2;

	(void)state;
	large_state(&s);
	buf = encode_ok(&s, &len);
	assert_int_equal(squib_state_decode(buf, len, SQUIB_ARCH_AARCH64, &out, NULL, &d), 0);
	assert_true(squib_state_equal(&s, &out));
	assert_int_equal(out.vcpu_count, 32);
	assert_int_equal(out.arm64_vcpus[31].sys_reg_count, SQUIB_SYSREG_COUNT);
	assert_int_equal(out.devices[0].mmio_slot, 0);
	assert_int_equal(out.gic.size, 64 * 1024);
	again = encode_ok(&out, &len2);
	assert_int_equal(len, len2);
	assert_memory_equal(buf, again, len);
	squib_state_free(&out);
	squib_state_free(&s);
	free(again);
	free(buf);
}

/* ---- truncation and corruption ------------------------------------------------ */

/* Decoding must fail or, if it succeeds, re-encode to exactly the input. */
static void assert_rejected_or_canonical(const uint8_t *buf, size_t len, int rc,
					 struct squib_microvm_state *out)
{
	uint8_t *again;
	size_t len2;

	if (rc == 0) {
		again = encode_ok(out, &len2);
		assert_int_equal(len, len2);
		assert_memory_equal(buf, again, len);
		free(again);
	}
	squib_state_free(out);
}

static void test_should_reject_truncation_at_every_length(void **state)
{
	struct squib_microvm_state out;
	struct squib_error_detail d;
	uint8_t *buf, *cut;
	size_t len, ok = 0;

	(void)state;
	buf = encode_populated(&len);
	for (size_t n = 0; n < len; n++) {
		/* The file cut short: always an error, usually the CRC. */
		assert_int_not_equal(squib_state_decode(buf, n, SQUIB_ARCH_AARCH64, &out, NULL, &d),
				     0);
		squib_state_free(&out);
		/* The body cut short without a CRC to hide behind. */
		assert_int_not_equal(squib_state_decode_body(buf, n < len - 8 ? n : len - 9,
							     SQUIB_ARCH_AARCH64, &out, NULL, &d),
				     0);
		squib_state_free(&out);
	}
	/* Cut the body, then make the header and CRC consistent again so the
	 * section parser itself sees every cut point. Cuts on a section boundary
	 * that leave the required sections are valid, smaller files. */
	cut = malloc(len);
	assert_non_null(cut);
	for (size_t n = 24; n <= len - 8; n++) {
		int rc;
		memcpy(cut, buf, n);
		squib_put_le64(cut + 16, n - 24);
		squib_put_le64(cut + n, squib_crc64(0, cut, n));
		rc = squib_state_decode(cut, n + 8, SQUIB_ARCH_AARCH64, &out, NULL, &d);
		ok += rc == 0;
		assert_true(rc == 0 || rc == SQUIB_E_ENCODING);
		assert_rejected_or_canonical(cut, n + 8, rc, &out);
	}
	assert_int_equal(ok, 4); /* after GIC, after each of the 2 devices, and whole */
	free(cut);
	free(buf);
}

static void test_should_survive_every_single_byte_corruption(void **state)
{
	struct squib_microvm_state out;
	struct squib_error_detail d;
	uint8_t *buf;
	size_t len;

	(void)state;
	buf = encode_populated(&len);
	for (size_t i = 0; i < len - 8; i++) {
		for (int bit = 0; bit < 8; bit++) {
			int rc;
			buf[i] ^= (uint8_t)(1u << bit);
			recrc(buf, len);
			rc = squib_state_decode(buf, len, SQUIB_ARCH_AARCH64, &out, NULL, &d);
			if (i >= 12 && i < 14) /* the patch level is not kept in the state */
				squib_state_free(&out);
			else
				assert_rejected_or_canonical(buf, len, rc, &out);
			buf[i] ^= (uint8_t)(1u << bit);
		}
	}
	recrc(buf, len);
	free(buf);
}

/* ---- decode_body and parse_header ------------------------------------------- */

static void test_should_decode_body_without_crc(void **state)
{
	struct squib_microvm_state out, ref;
	struct squib_envelope_header hdr;
	struct squib_error_detail d;
	uint8_t *buf;
	size_t len;

	(void)state;
	populated_state(&ref);
	buf = encode_populated(&len);
	buf[len - 1] ^= 0xFF; /* a wrong CRC does not matter here */
	assert_int_equal(squib_state_decode_body(buf, len - 8, SQUIB_ARCH_AARCH64, &out, &hdr, &d),
			 0);
	assert_true(squib_state_equal(&ref, &out));
	assert_int_equal(hdr.payload_len, len - 32);
	squib_state_free(&out);
	/* decode_body must be given the body only. */
	assert_int_equal(squib_state_decode_body(buf, len, SQUIB_ARCH_AARCH64, &out, NULL, &d),
			 SQUIB_E_ENCODING);
	assert_int_equal(squib_state_decode_body(buf, 23, SQUIB_ARCH_AARCH64, &out, NULL, &d),
			 SQUIB_E_TOO_SHORT);
	squib_state_free(&ref);
	free(buf);
}

static void test_should_parse_header_fields(void **state)
{
	struct squib_envelope_header hdr;
	struct squib_error_detail d;
	uint8_t *buf;
	size_t len;

	(void)state;
	buf = encode_populated(&len);
	squib_put_le64(buf, 0x1122334455667788ULL); /* no magic check here */
	squib_put_le16(buf + 8, 9);
	assert_int_equal(squib_envelope_parse_header(buf, 24, &hdr, &d), 0);
	assert_int_equal(hdr.magic, 0x1122334455667788ULL);
	assert_int_equal(hdr.version.major, 9);
	assert_int_equal(hdr.payload_len, len - 32);
	assert_int_equal(squib_envelope_parse_header(buf, 23, &hdr, &d), SQUIB_E_TOO_SHORT);
	assert_int_equal(squib_envelope_parse_header(buf, 24, NULL, &d), SQUIB_E_INVALID_ARGUMENT);
	free(buf);
}

/* ---- encoder ---------------------------------------------------------------- */

static void test_should_encode_in_canonical_order_whatever_the_array_order(void **state)
{
	struct squib_microvm_state s;
	struct squib_device_state tmp;
	struct squib_sysreg_value r;
	uint8_t *a, *b;
	size_t la, lb;

	(void)state;
	populated_state(&s);
	a = encode_ok(&s, &la);
	tmp = s.devices[0];
	s.devices[0] = s.devices[1];
	s.devices[1] = tmp;
	r = s.arm64_vcpus[1].sys_regs[0];
	s.arm64_vcpus[1].sys_regs[0] = s.arm64_vcpus[1].sys_regs[1];
	s.arm64_vcpus[1].sys_regs[1] = r;
	b = encode_ok(&s, &lb);
	assert_int_equal(la, lb);
	assert_memory_equal(a, b, la);
	/* The caller's arrays are left as they were. */
	assert_string_equal(s.devices[0].id, "eth0");
	assert_int_equal(s.arm64_vcpus[1].sys_regs[0].key, 2);
	squib_state_free(&s);
	free(a);
	free(b);
}

static void expect_encode_invalid(const struct squib_microvm_state *s, const char *fragment)
{
	struct squib_error_detail d;
	uint8_t *buf = (uint8_t *)&d;
	size_t len = 99;

	assert_int_equal(squib_state_encode(s, &buf, &len, &d), SQUIB_E_INVALID_ARGUMENT);
	assert_null(buf);
	assert_int_equal(len, 0);
	if (!strstr(d.msg, fragment))
		fail_msg("\"%s\" lacks \"%s\"", d.msg, fragment);
}

static void test_should_refuse_to_encode_unrepresentable_states(void **state)
{
	struct squib_microvm_state s;
	struct squib_raw_section x = {.tag = 0x40, .flags = SQUIB_SECTION_FLAG_SKIPPABLE};

	(void)state;
	populated_state(&s);
	s.arch = SQUIB_ARCH_ANY;
	expect_encode_invalid(&s, "architecture");
	s.arch = SQUIB_ARCH_AARCH64;
	s.arm64_vcpus[1].psci_state = (enum squib_psci_state)3;
	expect_encode_invalid(&s, "psci_state");
	s.arm64_vcpus[1].psci_state = SQUIB_PSCI_ON;
	s.arm64_vcpus[1].sys_regs[0].key = 5;
	s.arm64_vcpus[1].sys_regs[1].key = 5;
	expect_encode_invalid(&s, "duplicate sysreg key");
	s.arm64_vcpus[1].sys_regs[1].key = 6;
	s.vm_info.boot_args[0] = (char)0xFF;
	expect_encode_invalid(&s, "vm_info.boot_args is not valid UTF-8");
	s.vm_info.boot_args[0] = 'c';
	free(s.devices[1].id);
	s.devices[1].id = strdup("rootfs");
	s.devices[1].mmio_slot = 0;
	expect_encode_invalid(&s, "duplicate device (mmio_slot 0, id \"rootfs\")");
	s.devices[1].mmio_slot = 1;
	s.extra_sections = &x;
	s.extra_section_count = 1;
	x.tag = SQUIB_SECTION_GIC;
	expect_encode_invalid(&s, "extra section 0");
	x.tag = 0x40;
	x.flags = 0;
	expect_encode_invalid(&s, "extra section 0");
	s.extra_sections = NULL;
	s.extra_section_count = 0;
	s.arch = SQUIB_ARCH_X86_64; /* the vCPUs are in arm64_vcpus */
	expect_encode_invalid(&s, "x86_64");
	s.arch = SQUIB_ARCH_AARCH64;
	squib_state_free(&s);
	assert_int_equal(squib_state_encode(NULL, NULL, NULL, NULL), SQUIB_E_INVALID_ARGUMENT);
}

static void test_should_encode_null_strings_as_empty(void **state)
{
	struct squib_microvm_state s, out;
	struct squib_error_detail d;
	uint8_t *buf;
	size_t len;

	(void)state;
	squib_state_init(&s, SQUIB_ARCH_AARCH64);
	assert_int_equal(squib_state_add_device(&s, NULL, NULL, 3, NULL, 0), 0);
	assert_int_equal(squib_state_set_mmds(&s, "x", false, 0), 0);
	free(s.mmds->data_json);
	s.mmds->data_json = NULL;
	buf = encode_ok(&s, &len);
	assert_int_equal(squib_state_decode(buf, len, SQUIB_ARCH_AARCH64, &out, NULL, &d), 0);
	assert_string_equal(out.vm_info.cpu_template, "");
	assert_null(out.vm_info.initrd_path);
	assert_string_equal(out.devices[0].id, "");
	assert_string_equal(out.mmds->data_json, "");
	assert_true(squib_state_equal(&s, &out));
	squib_state_free(&out);
	squib_state_free(&s);
	free(buf);
}

/* ---- files ------------------------------------------------------------------ */

/* Bytes this process has read through read(2) so far (Linux /proc/self/io). */
static long long rchar(void)
{
	FILE *f = fopen("/proc/self/io", "r");
	char line[128];
	long long v = -1;

	if (!f)
		return -1;
	while (fgets(line, sizeof(line), f))
		if (sscanf(line, "rchar: %lld", &v) == 1)
			break;
	fclose(f);
	return v;
}

static void test_should_bound_the_file_read_at_limit_plus_one(void **state)
{
	char *dir = squib_test_tmpdir(), *path = squib_test_path(dir, "big.snap");
	struct squib_error_detail d;
	uint8_t *big = calloc(1, LIMIT + 4096), *buf = NULL;
	size_t len = 0;
	long long before, after;

	(void)state;
	assert_non_null(big);
	assert_int_equal(squib_test_write_file(path, big, LIMIT + 4096), 0);
	before = rchar();
	assert_int_equal(squib_state_read_file(path, &buf, &len, &d), SQUIB_E_SIZE_LIMIT_EXCEEDED);
	after = rchar();
	assert_null(buf);
	assert_string_equal(message(&d), "snapshot exceeds 10000000 byte deserialization limit");
	/* rchar also counts our own /proc read (a few hundred bytes). */
	if (before >= 0 && after >= 0)
		assert_in_range(after - before, LIMIT + 1, LIMIT + 1 + 4096);
	/* limit + 1 bytes exactly is already too many. */
	assert_int_equal(truncate(path, LIMIT + 1), 0);
	assert_int_equal(squib_state_read_file(path, &buf, &len, &d), SQUIB_E_SIZE_LIMIT_EXCEEDED);
	/* An endless device is not read at all: inputs are regular files. */
	assert_int_equal(squib_state_read_file("/dev/zero", &buf, &len, &d), SQUIB_E_IO);
	assert_string_equal(d.msg, "/dev/zero is a character device, not a regular file");
	assert_int_equal(truncate(path, LIMIT), 0);
	assert_int_equal(squib_state_read_file(path, &buf, &len, &d), 0);
	assert_int_equal(len, LIMIT);
	free(buf);
	free(big);
	free(path);
	squib_test_rmtree(dir);
	free(dir);
}

static void test_should_report_missing_file_as_io_error(void **state)
{
	struct squib_microvm_state out;
	struct squib_error_detail d;
	uint8_t *buf;
	size_t len;

	(void)state;
	assert_int_equal(squib_state_read_file("/nonexistent/squib/x.snap", &buf, &len, &d),
			 SQUIB_E_IO);
	assert_int_equal(d.os_errno, ENOENT);
	assert_string_equal(message(&d),
			    "snapshot I/O error: No such file or directory (os error 2)");
	assert_int_equal(
		squib_state_load_file("/nonexistent/x.snap", SQUIB_ARCH_AARCH64, &out, NULL, &d),
		SQUIB_E_IO);
	assert_int_equal(squib_state_read_file("/", &buf, &len, &d), SQUIB_E_IO);
	assert_int_equal(d.os_errno, EISDIR);
}

static void test_should_load_file_written_by_encode(void **state)
{
	char *dir = squib_test_tmpdir(), *path = squib_test_path(dir, "vm.snap");
	struct squib_microvm_state ref, out;
	struct squib_envelope_header hdr;
	struct squib_error_detail d;
	uint8_t *buf;
	size_t len;

	(void)state;
	populated_state(&ref);
	buf = encode_ok(&ref, &len);
	assert_int_equal(squib_test_write_file(path, buf, len), 0);
	assert_int_equal(squib_state_load_file(path, SQUIB_ARCH_AARCH64, &out, &hdr, &d), 0);
	assert_true(squib_state_equal(&ref, &out));
	assert_int_equal(hdr.magic, SQUIB_MAGIC_AARCH64);
	squib_state_free(&out);
	assert_int_equal(squib_test_write_file(path, buf, 3), 0);
	assert_int_equal(squib_state_load_file(path, SQUIB_ARCH_AARCH64, &out, NULL, &d),
			 SQUIB_E_TOO_SHORT);
	assert_int_equal(squib_test_write_file(path, buf, 0), 0);
	assert_int_equal(squib_state_load_file(path, SQUIB_ARCH_AARCH64, &out, NULL, &d),
			 SQUIB_E_TOO_SHORT);
	squib_state_free(&ref);
	free(buf);
	free(path);
	squib_test_rmtree(dir);
	free(dir);
}

static void test_should_save_file_atomically_and_load_it_back(void **state)
{
	char *dir = squib_test_tmpdir(), *path = squib_test_path(dir, "vm.snap");
	struct squib_microvm_state ref, out;
	struct squib_error_detail d;
	uint8_t *on_disk, *encoded;
	size_t disk_len, enc_len;

	(void)state;
	populated_state(&ref);
	assert_int_equal(squib_state_save_file(path, &ref, &d), 0);
	assert_int_equal(squib_test_layer_files(path, NULL), 0);
	encoded = encode_ok(&ref, &enc_len);
	assert_int_equal(squib_test_read_file(path, &on_disk, &disk_len), 0);
	assert_int_equal(disk_len, enc_len);
	assert_memory_equal(on_disk, encoded, enc_len);
	assert_int_equal(squib_state_load_file(path, SQUIB_ARCH_AARCH64, &out, NULL, &d), 0);
	assert_true(squib_state_equal(&ref, &out));
	squib_state_free(&out);
	/* An incompatible (unencodable) state leaves the previous file untouched. */
	ref.arch = SQUIB_ARCH_ANY;
	assert_int_equal(squib_state_save_file(path, &ref, &d), SQUIB_E_INVALID_ARGUMENT);
	ref.arch = SQUIB_ARCH_AARCH64;
	free(on_disk);
	assert_int_equal(squib_test_read_file(path, &on_disk, &disk_len), 0);
	assert_int_equal(disk_len, enc_len);
	assert_memory_equal(on_disk, encoded, enc_len);
	assert_int_equal(squib_test_layer_files(path, NULL), 0);
	squib_state_free(&ref);
	free(on_disk);
	free(encoded);
	free(path);
	squib_test_rmtree(dir);
	free(dir);
}

/* ---- the MEMORY section (0x0020) ------------------------------------------- */

static struct squib_mem_region mem_regions[2] = {{0x0, 0x10000}, {0x100000, 0x8000}};
static struct squib_page_extent mem_extents[3] = {{0, 2}, {5, 1}, {16, 8}};

/* A valid layout: two regions (24 pages of 4 KiB), three extents, 11 pages present. */
static struct squib_memory_layout good_layout(void)
{
	struct squib_memory_layout l = {
		.kind = SQUIB_MEMORY_FULL,
		.page_size = 4096,
		.ram_size = 0x18000,
		.file_size = 0x18000 + 4096 + 4096,
		.present_pages = 11,
		.region_count = 2,
		.regions = mem_regions,
		.extent_count = 3,
		.extents = mem_extents,
	};

	for (int i = 0; i < SQUIB_MEMORY_ID_SIZE; i++)
		l.id[i] = (uint8_t)(i + 1);
	return l;
}

/* The section as the format defines it, from a layout (which need not be valid);
 * `region_count`/`extent_count` are written as given even when the arrays are shorter. */
static void sec_memory_counts(struct squib_wire_writer *w, const struct squib_memory_layout *l,
			      uint32_t nregions, uint32_t nextents, uint16_t flags)
{
	size_t s = squib_wire_section_begin(w, SQUIB_SECTION_MEMORY, flags);

	squib_wire_put_u8(w, (uint8_t)l->kind);
	squib_wire_put_bytes(w, l->id, 16);
	squib_wire_put_bytes(w, l->parent_id, 16);
	squib_wire_put_u64(w, l->page_size);
	squib_wire_put_u64(w, l->ram_size);
	squib_wire_put_u64(w, l->file_size);
	squib_wire_put_u64(w, l->present_pages);
	squib_wire_put_u32(w, nregions);
	for (uint32_t i = 0; i < l->region_count; i++) {
		squib_wire_put_u64(w, l->regions[i].guest_addr);
		squib_wire_put_u64(w, l->regions[i].size);
	}
	squib_wire_put_u32(w, nextents);
	for (uint64_t i = 0; i < l->extent_count; i++) {
		squib_wire_put_u64(w, l->extents[i].first_page);
		squib_wire_put_u64(w, l->extents[i].page_count);
	}
	squib_wire_section_end(w, s);
}

static void sec_memory(struct squib_wire_writer *w, const struct squib_memory_layout *l)
{
	sec_memory_counts(w, l, l->region_count, (uint32_t)l->extent_count, 0);
}

static void test_should_round_trip_memory_section(void **state)
{
	struct squib_memory_layout l = good_layout();
	struct squib_microvm_state s, out;
	struct squib_error_detail d;
	uint8_t *buf, *again;
	size_t len, len2;

	(void)state;
	populated_state(&s);
	assert_int_equal(squib_state_set_memory(&s, &l, &d), 0);
	assert_ptr_not_equal(s.memory->regions, l.regions); /* a deep copy */
	buf = encode_ok(&s, &len);
	assert_int_equal(squib_state_decode(buf, len, SQUIB_ARCH_AARCH64, &out, NULL, &d), 0);
	assert_non_null(out.memory);
	assert_true(squib_memory_layout_equal(out.memory, &l));
	assert_true(squib_state_equal(&s, &out));
	again = encode_ok(&out, &len2);
	assert_int_equal(len, len2);
	assert_memory_equal(buf, again, len);
	/* The state without memory differs from it, and encodes 8 + 106 + 2*16 + 3*16 bytes shorter. */
	assert_int_equal(squib_state_set_memory(&out, NULL, &d), 0);
	assert_null(out.memory);
	assert_false(squib_state_equal(&s, &out));
	free(again);
	again = encode_ok(&out, &len2);
	assert_int_equal(len - len2, 8 + 1 + 32 + 32 + 4 + 32 + 4 + 48);
	squib_state_free(&out);
	squib_state_free(&s);
	free(again);
	free(buf);
}

static void test_should_place_memory_section_in_tag_order_among_extras(void **state)
{
	struct squib_memory_layout l = good_layout();
	struct squib_microvm_state out;
	struct squib_wire_writer w;
	struct squib_error_detail d;
	uint8_t *buf, *again;
	size_t len, len2;

	(void)state;
	l.kind = SQUIB_MEMORY_DIFF;
	l.parent_id[15] = 0x42;
	fb_begin(&w, A64);
	minimal(&w);
	sec_raw(&w, 0x0012, SQUIB_SECTION_FLAG_SKIPPABLE, "x");
	sec_memory(&w, &l);
	sec_raw(&w, 0x0021, SQUIB_SECTION_FLAG_SKIPPABLE, "after");
	buf = fb_finish(&w, &len);
	assert_int_equal(squib_state_decode(buf, len, SQUIB_ARCH_AARCH64, &out, NULL, &d), 0);
	assert_int_equal(out.extra_section_count, 2);
	assert_int_equal(out.memory->kind, SQUIB_MEMORY_DIFF);
	assert_int_equal(out.memory->parent_id[15], 0x42);
	assert_int_equal(out.memory->extents[2].first_page, 16);
	again = encode_ok(&out, &len2);
	assert_int_equal(len, len2);
	assert_memory_equal(buf, again, len);
	squib_state_free(&out);
	free(again);
	free(buf);
}

static void test_should_refuse_to_store_an_invalid_memory_layout(void **state)
{
	struct squib_memory_layout l = good_layout();
	struct squib_microvm_state s;
	struct squib_error_detail d;
	uint8_t *buf = NULL;
	size_t len;

	(void)state;
	squib_state_init(&s, SQUIB_ARCH_AARCH64);
	l.present_pages = 12;
	assert_int_equal(squib_state_set_memory(&s, &l, &d), SQUIB_E_INVALID_ARGUMENT);
	assert_non_null(strstr(d.msg, "present_pages 12"));
	assert_null(s.memory);
	/* A layout planted directly is checked again by the encoder. */
	s.memory = malloc(sizeof(*s.memory));
	assert_non_null(s.memory);
	assert_int_equal(squib_memory_layout_copy(s.memory, &l), 0);
	assert_int_equal(squib_state_encode(&s, &buf, &len, &d), SQUIB_E_INVALID_ARGUMENT);
	assert_null(buf);
	squib_state_free(&s);
	assert_null(s.memory);
}

struct bad_memory {
	const char *name;
	void (*mutate)(struct squib_memory_layout *l);
	const char *fragment;
};

static struct squib_mem_region bad_regions[SQUIB_MEMORY_MAX_REGIONS + 1];
static struct squib_page_extent bad_extents[3];

static void use_regions(struct squib_memory_layout *l, uint64_t a0, uint64_t s0, uint64_t a1,
			uint64_t s1)
{
	bad_regions[0] = (struct squib_mem_region){a0, s0};
	bad_regions[1] = (struct squib_mem_region){a1, s1};
	l->regions = bad_regions;
}

static void use_extents(struct squib_memory_layout *l, uint64_t f1, uint64_t n1, uint64_t f2,
			uint64_t n2)
{
	bad_extents[0] = mem_extents[0];
	bad_extents[1] = (struct squib_page_extent){f1, n1};
	bad_extents[2] = (struct squib_page_extent){f2, n2};
	l->extents = bad_extents;
}

static void m_kind0(struct squib_memory_layout *l) { l->kind = 0; }
static void m_kind3(struct squib_memory_layout *l) { l->kind = 3; }
static void m_zero_id(struct squib_memory_layout *l) { memset(l->id, 0, 16); }
static void m_full_parent(struct squib_memory_layout *l) { l->parent_id[0] = 1; }
static void m_diff_no_parent(struct squib_memory_layout *l) { l->kind = SQUIB_MEMORY_DIFF; }
static void m_own_parent(struct squib_memory_layout *l)
{
	l->kind = SQUIB_MEMORY_DIFF;
	memcpy(l->parent_id, l->id, 16);
}
static void m_page0(struct squib_memory_layout *l) { l->page_size = 0; }
static void m_page3000(struct squib_memory_layout *l) { l->page_size = 3000; }
static void m_page2048(struct squib_memory_layout *l) { l->page_size = 2048; }
static void m_no_regions(struct squib_memory_layout *l) { l->region_count = 0; }
static void m_empty_region(struct squib_memory_layout *l)
{
	use_regions(l, 0, 0x10000, 0x100000, 0);
}
static void m_unaligned(struct squib_memory_layout *l)
{
	use_regions(l, 0, 0x10000, 0x100800, 0x8000);
}
static void m_overlap(struct squib_memory_layout *l)
{
	use_regions(l, 0, 0x10000, 0xF000, 0x8000);
}
static void m_descending(struct squib_memory_layout *l)
{
	use_regions(l, 0x100000, 0x10000, 0, 0x8000);
}
static void m_wraps(struct squib_memory_layout *l)
{
	use_regions(l, 0, 0x10000, 0xFFFFFFFFFFFFF000ULL, 0x8000);
}
static void m_ram_size(struct squib_memory_layout *l) { l->ram_size += 4096; }
static void m_extent_order(struct squib_memory_layout *l) { use_extents(l, 16, 8, 5, 1); }
static void m_extent_overlap(struct squib_memory_layout *l) { use_extents(l, 1, 2, 16, 8); }
static void m_extent_touch(struct squib_memory_layout *l) { use_extents(l, 2, 1, 16, 8); }
static void m_extent_empty(struct squib_memory_layout *l) { use_extents(l, 5, 0, 16, 8); }
static void m_extent_past(struct squib_memory_layout *l) { use_extents(l, 5, 1, 16, 9); }
static void m_present(struct squib_memory_layout *l) { l->present_pages = 10; }
static void m_file_size(struct squib_memory_layout *l) { l->file_size += 4096; }

static const struct bad_memory bad_memories[] = {
	{"kind 0", m_kind0, "memory kind 0"},
	{"kind 3", m_kind3, "memory kind 3"},
	{"zero id", m_zero_id, "memory file id is zero"},
	{"full with parent", m_full_parent, "a full memory file has a parent id"},
	{"diff without parent", m_diff_no_parent, "a diff memory file has no parent id"},
	{"own parent", m_own_parent, "its own parent"},
	{"page size 0", m_page0, "page_size must be a power of two: 0"},
	{"page size 3000", m_page3000, "page_size must be a power of two: 3000"},
	{"page size 2048", m_page2048, "page_size 2048 is outside"},
	{"no regions", m_no_regions, "no regions"},
	{"empty region", m_empty_region, "region 1 is empty"},
	{"unaligned region", m_unaligned, "region 1 (guest 0x100800, size 0x8000) is not aligned"},
	{"overlapping regions", m_overlap, "region 1 [0xf000, 0x17000) overlaps region 0"},
	{"descending regions", m_descending, "regions must ascend by guest address"},
	{"wrapping region", m_wraps, "region 1 overflows"},
	{"ram_size", m_ram_size, "ram_size 0x19000 but the regions add up to 0x18000"},
	{"extents out of order", m_extent_order, "extent 2 at page 5 overlaps or precedes"},
	{"extents overlapping", m_extent_overlap, "extent 1 at page 1 overlaps or precedes"},
	{"extents touching", m_extent_touch, "extent 1 at page 2 touches the previous one"},
	{"empty extent", m_extent_empty, "extent 1 is empty"},
	{"extent past RAM", m_extent_past, "extent 2 (pages 16 +9) runs past the 24 pages"},
	{"present_pages", m_present, "present_pages 10 but the extents hold 11"},
	{"file_size", m_file_size, "file_size 110592 but the layout needs 106496"},
};

static void expect_bad_memory(const uint8_t *buf, size_t len, const char *name,
			      const char *fragment, struct squib_error_detail *d)
{
	print_message("  %-26s ", name);
	expect_decode(buf, len, SQUIB_ARCH_AARCH64, SQUIB_E_ENCODING, d);
	print_message("%s\n", message(d));
	if (!strstr(d->msg, fragment))
		fail_msg("%s: \"%s\" lacks \"%s\"", name, d->msg, fragment);
}

static void test_should_reject_every_invalid_memory_layout_as_encoding(void **state)
{
	(void)state;
	for (size_t i = 0; i < sizeof(bad_memories) / sizeof(bad_memories[0]); i++) {
		struct squib_memory_layout l = good_layout();
		struct squib_wire_writer w;
		struct squib_error_detail d;
		uint8_t *buf;
		size_t len;

		bad_memories[i].mutate(&l);
		/* The same rule refuses the value on the way in. */
		assert_int_equal(squib_memory_layout_validate(&l, SQUIB_E_INVALID_ARGUMENT, &d),
				 SQUIB_E_INVALID_ARGUMENT);
		fb_begin(&w, A64);
		minimal(&w);
		sec_memory(&w, &l);
		buf = fb_finish(&w, &len);
		assert_non_null(strstr(d.msg, bad_memories[i].fragment));
		expect_bad_memory(buf, len, bad_memories[i].name, bad_memories[i].fragment, &d);
		/* After VM_INFO (24 + 8 + 59) and GIC (8 + 15): offset 114. */
		assert_non_null(strstr(d.msg, "MEMORY section at offset 114: "));
		free(buf);
	}
}

static void b_mem_flags(struct squib_wire_writer *w)
{
	struct squib_memory_layout l = good_layout();

	minimal(w);
	sec_memory_counts(w, &l, 2, 3, SQUIB_SECTION_FLAG_SKIPPABLE);
}
static void b_mem_dup(struct squib_wire_writer *w)
{
	struct squib_memory_layout l = good_layout();

	minimal(w);
	sec_memory(w, &l);
	sec_memory(w, &l);
}
static void b_mem_regions_over(struct squib_wire_writer *w)
{
	struct squib_memory_layout l = good_layout();

	minimal(w);
	sec_memory_counts(w, &l, SQUIB_MEMORY_MAX_REGIONS + 1, 3, 0);
}
static void b_mem_regions_past_end(struct squib_wire_writer *w)
{
	struct squib_memory_layout l = good_layout();

	minimal(w);
	sec_memory_counts(w, &l, 1000, 3, 0);
}
static void b_mem_extents_past_end(struct squib_wire_writer *w)
{
	struct squib_memory_layout l = good_layout();

	minimal(w);
	sec_memory_counts(w, &l, 2, 0xFFFFFFFFu, 0);
}
static void b_mem_trailing(struct squib_wire_writer *w)
{
	struct squib_memory_layout l = good_layout();

	minimal(w);
	/* Declares 2 of the 3 extents written: 16 bytes are left over. */
	sec_memory_counts(w, &l, 2, 2, 0);
}
static void b_mem_truncated_ids(struct squib_wire_writer *w)
{
	minimal(w);
	sec_raw(w, SQUIB_SECTION_MEMORY, 0, "\x01" "0123456789");
}

static void test_should_reject_malformed_memory_section_framing(void **state)
{
	static const struct {
		const char *name;
		void (*build)(struct squib_wire_writer *w);
		const char *fragment;
	} cases[] = {
		{"MEMORY with flags", b_mem_flags, "MEMORY section at offset 114 has flags 0x0001"},
		{"duplicate MEMORY", b_mem_dup, "duplicate MEMORY section"},
		{"region count over limit", b_mem_regions_over, "memory.region_count 1025"},
		{"regions past section end", b_mem_regions_past_end, "truncated memory regions"},
		{"extents past section end", b_mem_extents_past_end, "truncated memory extents"},
		{"trailing bytes", b_mem_trailing, "16 trailing bytes in MEMORY section"},
		{"truncated ids", b_mem_truncated_ids, "truncated memory ids"},
	};

	(void)state;
	for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
		struct squib_wire_writer w;
		struct squib_error_detail d;
		uint8_t *buf;
		size_t len;

		fb_begin(&w, A64);
		cases[i].build(&w);
		buf = fb_finish(&w, &len);
		expect_bad_memory(buf, len, cases[i].name, cases[i].fragment, &d);
		free(buf);
	}
}

static void test_should_survive_truncation_and_corruption_of_memory_section(void **state)
{
	struct squib_memory_layout l = good_layout();
	struct squib_microvm_state s, out;
	struct squib_error_detail d;
	uint8_t *buf;
	size_t len;

	(void)state;
	squib_state_init(&s, SQUIB_ARCH_AARCH64);
	assert_int_equal(squib_state_set_gic(&s, "g", 1), 0);
	assert_int_equal(squib_state_set_memory(&s, &l, &d), 0);
	buf = encode_ok(&s, &len);
	/* Every body length: decodes or fails cleanly, never crashes. */
	for (size_t n = 0; n < len - 8; n++) {
		int rc = squib_state_decode_body(buf, n, SQUIB_ARCH_AARCH64, &out, NULL, &d);

		assert_int_not_equal(rc, 0);
		squib_state_free(&out);
	}
	/* Every byte of the MEMORY section (8 + 73 + 2 * 16 + 3 * 16) flipped, CRC refreshed. */
	for (size_t i = len - 8 - 161; i < len - 8; i++) {
		buf[i] ^= 0x80;
		recrc(buf, len);
		if (squib_state_decode(buf, len, SQUIB_ARCH_AARCH64, &out, NULL, &d) == 0)
			assert_non_null(out.memory);
		squib_state_free(&out);
		buf[i] ^= 0x80;
	}
	recrc(buf, len);
	assert_int_equal(squib_state_decode(buf, len, SQUIB_ARCH_AARCH64, &out, NULL, &d), 0);
	assert_true(squib_state_equal(&s, &out));
	squib_state_free(&out);
	squib_state_free(&s);
	free(buf);
}

/* ---- x86_64 vCPU and VM sections ---------------------------------------------- */

/* Two vCPUs with every field set, arrays deliberately out of order, and VM state. */
static void x86_populated(struct squib_microvm_state *s)
{
	static const struct squib_x86_msr msrs[] = {
		{0xc0000080, 0x500}, {0x10, 123456}, {0x174, 8}, {0x3b, 0}};
	static const struct squib_x86_cpuid_entry cpuid[] = {
		{7, 1, 1, 0, 0, 0, 0}, {0, 0, 0, 0xd, 0x68747541, 0x444d4163, 0x69746e65},
		{7, 0, 1, 0, 0x219c07ab, 0, 0}, {0x80000001, 0, 0, 0, 0, 0x20000800, 0x2c100800}};
	struct squib_x86_vm_state vm;
	uint8_t xsave[4096];

	squib_state_init(s, SQUIB_ARCH_X86_64);
	s->vm_info.mem_size_mib = 64;
	for (size_t i = 0; i < sizeof(xsave); i++)
		xsave[i] = (uint8_t)(i ^ 0x5a);
	for (uint32_t c = 0; c < 2; c++) {
		struct squib_x86_vcpu *v;

		assert_int_equal(squib_state_add_x86_vcpu(s, &v), 0);
		v->regs.rip = 0x100000 + c;
		v->regs.rflags = 0x2;
		v->regs.r15 = ~0ull;
		v->sregs.cs = (struct squib_x86_segment){0, 0xffffffff, 8, 11, 1, 0, 0, 1, 1, 1, 0, 0};
		v->sregs.tr.unusable = 1;
		v->sregs.gdt = (struct squib_x86_dtable){0x500, 0x1f};
		v->sregs.cr0 = 0x80050033;
		v->sregs.cr3 = 0x2000;
		v->sregs.efer = 0xd00;
		v->sregs.interrupt_bitmap[3] = 1ull << 63;
		v->debugregs.dr7 = 0x400;
		v->events[0] = 1;
		v->events[63] = 0xee;
		v->mp_state = c ? 3 : 0;
		v->tsc_khz = 2400000;
		v->has_lapic = true;
		memset(v->lapic, 0x11 + (int)c, sizeof(v->lapic));
		v->xcr_count = 1;
		v->xcrs[0] = (struct squib_x86_xcr){0, 7};
		assert_int_equal(squib_x86_vcpu_set_msrs(v, msrs, 4), 0);
		assert_int_equal(squib_x86_vcpu_set_cpuid(v, cpuid, 4), 0);
		assert_int_equal(squib_x86_vcpu_set_xsave(v, xsave, sizeof(xsave)), 0);
	}
	memset(&vm, 0, sizeof(vm));
	vm.clock = (struct squib_x86_clock){987654321, 2, 5, 6};
	vm.has_irqchip = true;
	memset(vm.pic_master, 1, sizeof(vm.pic_master));
	memset(vm.pic_slave, 2, sizeof(vm.pic_slave));
	memset(vm.ioapic, 3, sizeof(vm.ioapic));
	vm.has_pit = true;
	memset(vm.pit, 4, sizeof(vm.pit));
	assert_int_equal(squib_state_set_x86_vm(s, &vm), 0);
}

static void test_should_round_trip_x86_vcpus_and_vm_state(void **state)
{
	struct squib_microvm_state s, out;
	struct squib_error_detail d;
	uint8_t *buf, *again;
	size_t len, len2;

	(void)state;
	x86_populated(&s);
	buf = encode_ok(&s, &len);
	assert_int_equal(squib_get_le64(buf), SQUIB_MAGIC_X86_64);
	assert_int_equal(squib_state_decode(buf, len, SQUIB_ARCH_X86_64, &out, NULL, &d), 0);
	assert_int_equal(out.vcpu_count, 2);
	assert_null(out.arm64_vcpus);
	assert_non_null(out.x86_vm);
	/* Decoded arrays are canonical: MSRs by index, CPUID by (function, index). */
	assert_int_equal(out.x86_vcpus[0].msrs[0].index, 0x10);
	assert_int_equal(out.x86_vcpus[0].msrs[3].index, 0xc0000080);
	assert_int_equal(out.x86_vcpus[1].cpuid[1].function, 7);
	assert_int_equal(out.x86_vcpus[1].cpuid[1].index, 0);
	assert_int_equal(out.x86_vcpus[1].mp_state, 3);
	assert_int_equal(squib_state_verify_compatible(&out, &d), 0);
	/* The canonical form of s equals what came back, and encodes to the same bytes. */
	again = encode_ok(&out, &len2);
	assert_int_equal(len, len2);
	assert_memory_equal(buf, again, len);
	free(again);
	squib_state_free(&s);
	assert_int_equal(squib_state_decode(buf, len, SQUIB_ARCH_X86_64, &s, NULL, &d), 0);
	assert_true(squib_state_equal(&s, &out));
	out.x86_vcpus[1].lapic[1023] ^= 1;
	assert_false(squib_state_equal(&s, &out));
	out.x86_vcpus[1].lapic[1023] ^= 1;
	out.x86_vm->pit[111] ^= 1;
	assert_false(squib_state_equal(&s, &out));
	squib_state_free(&out);
	squib_state_free(&s);
	free(buf);
}

/* The hand-built section (every field at the offset FORMAT.md gives) decodes
 * into the right members and re-encodes byte for byte. */
static void test_should_accept_the_hand_built_x86_baseline(void **state)
{
	struct squib_microvm_state out;
	struct squib_wire_writer w;
	struct squib_error_detail d;
	const struct squib_x86_vcpu *v;
	uint8_t *buf, *again;
	size_t len, len2;

	(void)state;
	fb_begin(&w, X86);
	b_x86_vcpu(&w, &x86_ok);
	buf = fb_finish(&w, &len);
	/* VM_INFO ends at 91; the vCPU section's content starts at 99. */
	assert_int_equal(squib_get_le16(buf + 91), SQUIB_SECTION_VCPU_X86_64);
	assert_int_equal(squib_get_le32(buf + 95), 564 + 1 + 1024 + 4 + 2 * 12 + 4 + 5 * 28 + 4 +
							4 * 12 + 4 + 4096);
	assert_int_equal(squib_get_le64(buf + 99 + 128), 0x110); /* rip */
	assert_int_equal(squib_state_decode(buf, len, SQUIB_ARCH_X86_64, &out, NULL, &d), 0);
	v = &out.x86_vcpus[0];
	assert_int_equal(v->regs.rax, 0x100);
	assert_int_equal(v->regs.rip, 0x110);
	assert_int_equal(v->regs.rflags, 0x111);
	assert_int_equal(v->sregs.cs.base, 0);
	assert_int_equal(v->sregs.ds.selector, 8);
	assert_int_equal(v->sregs.ldt.base, 0x7000);
	assert_int_equal(v->sregs.ldt.unusable, 16 * 7 + 8);
	assert_int_equal(v->sregs.ss.type, 16 * 5);
	assert_int_equal(v->sregs.gdt.limit, 0x27);
	assert_int_equal(v->sregs.idt.base, 0x7000);
	assert_int_equal(v->sregs.cr3, 0x202);
	assert_int_equal(v->sregs.apic_base, 0x206);
	assert_int_equal(v->sregs.interrupt_bitmap[3], 0x303);
	assert_int_equal(v->debugregs.db[0], 0x400);
	assert_int_equal(v->debugregs.flags, 0x406);
	assert_int_equal(v->events[63], 0x80 + 63);
	assert_int_equal(v->mp_state, 3);
	assert_int_equal(v->tsc_khz, 2400000);
	assert_true(v->has_lapic);
	assert_int_equal(v->lapic[1023], 1023 & 0xff);
	assert_int_equal(v->xcrs[1].value, 8);
	assert_int_equal(v->cpuid[4].function, 0x40000000);
	assert_int_equal(v->cpuid[4].edx, 0x504);
	assert_int_equal(v->msrs[2].index, 0xc0000080);
	assert_int_equal(v->msrs[2].value, 0x602);
	assert_int_equal(v->xsave_size, 4096);
	assert_int_equal(out.x86_vm->clock.clock, 123456789);
	assert_int_equal(out.x86_vm->clock.host_tsc, 22);
	assert_int_equal(out.x86_vm->ioapic[215], 248);
	assert_int_equal(out.x86_vm->pit[0], 2);
	again = encode_ok(&out, &len2);
	assert_int_equal(len, len2);
	assert_memory_equal(buf, again, len);
	squib_state_free(&out);
	free(again);
	free(buf);
}

static void test_should_encode_x86_arrays_in_canonical_order_whatever_the_array_order(void **state)
{
	struct squib_microvm_state a, b;
	struct squib_x86_vcpu *v;
	uint8_t *ba, *bb;
	size_t la, lb;

	(void)state;
	x86_populated(&a);
	x86_populated(&b);
	v = &b.x86_vcpus[0];
	/* Reverse every array of b's first vCPU. */
	for (uint32_t i = 0; i < v->msr_count / 2; i++) {
		struct squib_x86_msr t = v->msrs[i];
		v->msrs[i] = v->msrs[v->msr_count - 1 - i];
		v->msrs[v->msr_count - 1 - i] = t;
	}
	for (uint32_t i = 0; i < v->cpuid_count / 2; i++) {
		struct squib_x86_cpuid_entry t = v->cpuid[i];
		v->cpuid[i] = v->cpuid[v->cpuid_count - 1 - i];
		v->cpuid[v->cpuid_count - 1 - i] = t;
	}
	v->xcr_count = 2;
	v->xcrs[1] = v->xcrs[0];
	v->xcrs[0] = (struct squib_x86_xcr){1, 3};
	a.x86_vcpus[0].xcr_count = 2;
	a.x86_vcpus[0].xcrs[1] = (struct squib_x86_xcr){1, 3};
	ba = encode_ok(&a, &la);
	bb = encode_ok(&b, &lb);
	assert_int_equal(la, lb);
	assert_memory_equal(ba, bb, la);
	assert_int_equal(v->msrs[0].index, 0xc0000080); /* the caller's arrays are left alone */
	squib_state_free(&a);
	squib_state_free(&b);
	free(ba);
	free(bb);
}

static void test_should_refuse_to_encode_unrepresentable_x86_states(void **state)
{
	struct squib_microvm_state s;
	struct squib_x86_vcpu *v;

	(void)state;
	x86_populated(&s);
	v = &s.x86_vcpus[1];
	v->msrs[1].index = v->msrs[0].index;
	expect_encode_invalid(&s, "x86 vCPU 1: duplicate MSR");
	v->msrs[1].index = 0x11;
	v->cpuid[1] = v->cpuid[2];
	expect_encode_invalid(&s, "x86 vCPU 1: duplicate CPUID entry");
	v->cpuid[1].index = 9;
	v->xcr_count = 2;
	v->xcrs[1] = v->xcrs[0];
	expect_encode_invalid(&s, "duplicate XCR");
	v->xcr_count = SQUIB_X86_MAX_XCRS + 1;
	expect_encode_invalid(&s, "17 XCRs");
	v->xcr_count = 1;
	v->mp_state = SQUIB_X86_MAX_MP_STATE + 1;
	expect_encode_invalid(&s, "mp_state 11");
	v->mp_state = 0;
	v->msr_count = SQUIB_X86_MAX_MSRS + 1;
	expect_encode_invalid(&s, "bad MSR array");
	v->msr_count = 4;
	v->cpuid_count = SQUIB_X86_MAX_CPUID + 1;
	expect_encode_invalid(&s, "bad CPUID array");
	v->cpuid_count = 4;
	v->xsave_size = 4095;
	expect_encode_invalid(&s, "bad XSAVE area (4095 bytes)");
	v->xsave_size = 4096;
	free(s.x86_vcpus[0].xsave);
	s.x86_vcpus[0].xsave = NULL;
	expect_encode_invalid(&s, "x86 vCPU 0: bad XSAVE area");
	s.x86_vcpus[0].xsave_size = 0; /* no XSAVE area at all is representable */
	squib_state_free(&s);
	/* Setters refuse what the encoder would. */
	x86_populated(&s);
	v = &s.x86_vcpus[0];
	assert_int_equal(squib_x86_vcpu_set_msrs(v, v->msrs, SQUIB_X86_MAX_MSRS + 1),
			 SQUIB_E_INVALID_ARGUMENT);
	assert_int_equal(squib_x86_vcpu_set_cpuid(v, NULL, 1), SQUIB_E_INVALID_ARGUMENT);
	assert_int_equal(squib_x86_vcpu_set_xsave(v, v->xsave, 4097), SQUIB_E_INVALID_ARGUMENT);
	assert_int_equal(squib_x86_vcpu_set_xsave(v, NULL, 0), 0);
	assert_null(v->xsave);
	squib_state_free(&s);
	/* x86 members on the wrong architecture. */
	populated_state(&s);
	assert_int_equal(squib_state_add_x86_vcpu(&s, &v), SQUIB_E_INVALID_ARGUMENT);
	assert_int_equal(squib_state_set_x86_vm(&s, NULL), SQUIB_E_INVALID_ARGUMENT);
	s.x86_vm = calloc(1, sizeof(*s.x86_vm));
	assert_non_null(s.x86_vm);
	expect_encode_invalid(&s, "x86_vm in an aarch64 state");
	squib_state_free(&s);
	assert_null(s.x86_vm);
}

static void test_should_reject_every_truncation_and_corruption_of_x86_sections(void **state)
{
	struct squib_microvm_state s, out;
	struct squib_error_detail d;
	uint8_t *buf, *cut;
	size_t len, ok = 0;

	(void)state;
	x86_populated(&s);
	s.x86_vcpus[0].xsave_size = 0; /* keep the sweep short: no XSAVE areas */
	free(s.x86_vcpus[0].xsave);
	s.x86_vcpus[0].xsave = NULL;
	s.x86_vcpus[1].xsave_size = 0;
	free(s.x86_vcpus[1].xsave);
	s.x86_vcpus[1].xsave = NULL;
	buf = encode_ok(&s, &len);
	cut = malloc(len);
	assert_non_null(cut);
	for (size_t n = 24; n <= len - 8; n++) {
		int rc;
		memcpy(cut, buf, n);
		squib_put_le64(cut + 16, n - 24);
		squib_put_le64(cut + n, squib_crc64(0, cut, n));
		rc = squib_state_decode(cut, n + 8, SQUIB_ARCH_X86_64, &out, NULL, &d);
		ok += rc == 0;
		assert_true(rc == 0 || rc == SQUIB_E_ENCODING);
		assert_rejected_or_canonical(cut, n + 8, rc, &out);
	}
	/* After VM_INFO, after each vCPU, and whole. */
	assert_int_equal(ok, 4);
	for (size_t i = 24; i < len - 8; i++) {
		buf[i] ^= 0x81;
		recrc(buf, len);
		assert_rejected_or_canonical(
			buf, len, squib_state_decode(buf, len, SQUIB_ARCH_X86_64, &out, NULL, &d),
			&out);
		buf[i] ^= 0x81;
	}
	squib_state_free(&s);
	free(cut);
	free(buf);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_should_round_trip_default_state_through_save_and_load),
		cmocka_unit_test(test_should_reject_truncated_crc_trailer),
		cmocka_unit_test(test_should_reject_too_short_buffer),
		cmocka_unit_test(test_should_reject_bit_flipped_state),
		cmocka_unit_test(test_should_reject_clobbered_crc_trailer),
		cmocka_unit_test(test_should_reject_wrong_magic_after_crc_check),
		cmocka_unit_test(test_should_reject_higher_major_version),
		cmocka_unit_test(test_should_reject_higher_minor_version),
		cmocka_unit_test(test_should_accept_lower_minor_version),
		cmocka_unit_test(test_should_accept_arbitrary_patch_version),
		cmocka_unit_test(test_should_enforce_size_limit_on_load),
		cmocka_unit_test(test_should_accept_file_of_exactly_the_limit),
		cmocka_unit_test(test_should_keep_arch_magic_constants),
		cmocka_unit_test(test_should_reject_x86_file_when_aarch64_expected),
		cmocka_unit_test(test_should_accept_either_arch_with_any),
		cmocka_unit_test(test_should_reencode_decoded_file_byte_identically),
		cmocka_unit_test(test_should_report_every_structural_error_as_encoding),
		cmocka_unit_test(test_should_accept_the_hand_built_baseline),
		cmocka_unit_test(test_should_preserve_unknown_skippable_sections),
		cmocka_unit_test(test_should_reject_unknown_mandatory_section_as_incompatible),
		cmocka_unit_test(test_should_name_the_unknown_mandatory_section_in_the_detail),
		cmocka_unit_test(test_should_report_structure_before_unknown_mandatory_section),
		cmocka_unit_test(test_should_round_trip_large_state),
		cmocka_unit_test(test_should_reject_truncation_at_every_length),
		cmocka_unit_test(test_should_survive_every_single_byte_corruption),
		cmocka_unit_test(test_should_decode_body_without_crc),
		cmocka_unit_test(test_should_parse_header_fields),
		cmocka_unit_test(test_should_encode_in_canonical_order_whatever_the_array_order),
		cmocka_unit_test(test_should_refuse_to_encode_unrepresentable_states),
		cmocka_unit_test(test_should_encode_null_strings_as_empty),
		cmocka_unit_test(test_should_bound_the_file_read_at_limit_plus_one),
		cmocka_unit_test(test_should_report_missing_file_as_io_error),
		cmocka_unit_test(test_should_load_file_written_by_encode),
		cmocka_unit_test(test_should_save_file_atomically_and_load_it_back),
		cmocka_unit_test(test_should_round_trip_memory_section),
		cmocka_unit_test(test_should_place_memory_section_in_tag_order_among_extras),
		cmocka_unit_test(test_should_refuse_to_store_an_invalid_memory_layout),
		cmocka_unit_test(test_should_reject_every_invalid_memory_layout_as_encoding),
		cmocka_unit_test(test_should_reject_malformed_memory_section_framing),
		cmocka_unit_test(test_should_survive_truncation_and_corruption_of_memory_section),
		cmocka_unit_test(test_should_round_trip_x86_vcpus_and_vm_state),
		cmocka_unit_test(test_should_accept_the_hand_built_x86_baseline),
		cmocka_unit_test(test_should_encode_x86_arrays_in_canonical_order_whatever_the_array_order),
		cmocka_unit_test(test_should_refuse_to_encode_unrepresentable_x86_states),
		cmocka_unit_test(test_should_reject_every_truncation_and_corruption_of_x86_sections),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
