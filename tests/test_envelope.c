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
	assert_string_equal(message(&d),
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
	assert_string_equal(message(&d), "snapshot version 2.0.0 is incompatible with squib's 1.0.0");
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
	assert_string_equal(message(&d), "snapshot version 1.1.0 is incompatible with squib's 1.0.0");
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
	assert_int_equal(squib_state_decode_body(big, LIMIT + 1, SQUIB_ARCH_AARCH64, &out, NULL, &d),
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
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
