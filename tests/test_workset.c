/* SPDX-License-Identifier: Apache-2.0 */
/* The working-set file (squib/workset.h): round trip, strict decoding, check order, files. */
#include "testutil.h"

#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include <squib/crc64.h>
#include <squib/workset.h>

static const struct squib_ws_run sample_runs[] = {{16, 16}, {0, 1}, {100, 3}, {17, 2}};

static struct squib_workset sample(void)
{
	struct squib_workset ws = {.page_size = 4096,
				   .page_count = 256,
				   .run_count = 4,
				   .runs = (struct squib_ws_run *)sample_runs};

	for (int i = 0; i < SQUIB_MEMORY_ID_SIZE; i++)
		ws.memory_id[i] = (uint8_t)(0xa0 + i);
	return ws;
}

static void encode_sample(uint8_t **buf, size_t *len)
{
	struct squib_workset ws = sample();

	assert_int_equal(squib_workset_encode(&ws, buf, len, NULL), 0);
}

static void put64(uint8_t *p, uint64_t v)
{
	for (int i = 0; i < 8; i++)
		p[i] = (uint8_t)(v >> (8 * i));
}

/* Recompute the trailer after editing a field, so a later check is reached. */
static void fix_crc(uint8_t *buf, size_t len)
{
	put64(buf + len - 8, squib_crc64(0, buf, len - 8));
}

static int decode(const uint8_t *buf, size_t len)
{
	struct squib_workset ws;
	struct squib_error_detail d;
	int rc = squib_workset_decode(buf, len, &ws, &d);

	if (rc) {
		assert_null(ws.runs); /* a failure leaves nothing to free */
		assert_int_equal(ws.run_count, 0);
		assert_int_equal(d.code, rc);
	}
	squib_workset_free(&ws);
	return rc;
}

static void test_should_round_trip_a_working_set_byte_for_byte(void **state)
{
	struct squib_workset in = sample(), out;
	uint8_t *buf, *again;
	size_t len, len2;

	(void)state;
	assert_int_equal(squib_workset_encode(&in, &buf, &len, NULL), 0);
	assert_int_equal(len, 56 + 4 * 16 + 8);
	assert_int_equal(squib_workset_decode(buf, len, &out, NULL), 0);
	assert_int_equal(out.page_size, 4096);
	assert_int_equal(out.page_count, 256);
	assert_memory_equal(out.memory_id, in.memory_id, SQUIB_MEMORY_ID_SIZE);
	assert_int_equal(out.run_count, 4);
	assert_memory_equal(out.runs, sample_runs, sizeof(sample_runs)); /* order kept */
	assert_int_equal(squib_workset_pages(&out), 22);
	assert_int_equal(squib_workset_encode(&out, &again, &len2, NULL), 0);
	assert_int_equal(len2, len);
	assert_memory_equal(again, buf, len);
	squib_workset_free(&out);
	assert_null(out.runs);
	squib_workset_free(NULL);
	free(buf);
	free(again);
}

/* The layout of docs/FORMAT.md, field by field. */
static void test_should_lay_out_the_fields_as_documented(void **state)
{
	static const uint8_t head[] = {'S', 'Q', 'U', 'I', 'B', 'W', 'S',  0, 1, 0, 0,
				       0,   0,	 0,   0,   0,	0,   0x10, 0, 0, 0, 0,
				       0,   0,	 0,   1,   0,	0,   0,	   0, 0, 0};
	uint8_t *buf;
	size_t len;

	(void)state;
	encode_sample(&buf, &len);
	assert_memory_equal(buf, head, sizeof(head));
	assert_int_equal(buf[32], 0xa0); /* memory_id */
	assert_int_equal(buf[47], 0xaf);
	assert_int_equal(buf[48], 4);		       /* run_count */
	assert_int_equal(buf[56], 16);		       /* run 0 first_page */
	assert_int_equal(buf[64], 16);		       /* run 0 page_count */
	assert_int_equal(buf[56 + 3 * 16], 17);	       /* run 3 */
	assert_int_equal(squib_crc64(0, buf, len), 0); /* trailer: CRC of the rest */
	free(buf);
}

/* The example of docs/FORMAT.md §W.4, byte for byte. */
static void test_should_encode_the_documented_example(void **state)
{
	static const uint8_t doc[112] = {
	    0x53, 0x51, 0x55, 0x49, 0x42, 0x57, 0x53, 0x00, 0x01, 0x00, 0x00, 0x00, 0x00, 0x00,
	    0x00, 0x00, 0x00, 0x10, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x01, 0x00, 0x00,
	    0x00, 0x00, 0x00, 0x00, 0x5a, 0x5a, 0x5a, 0x5a, 0x5a, 0x5a, 0x5a, 0x5a, 0x5a, 0x5a,
	    0x5a, 0x5a, 0x5a, 0x5a, 0x5a, 0x5a, 0x03, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00,
	    0x10, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x10, 0x00, 0x00, 0x00, 0x00, 0x00,
	    0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x01, 0x00, 0x00, 0x00,
	    0x00, 0x00, 0x00, 0x00, 0x64, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x03, 0x00,
	    0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0xbd, 0x46, 0xce, 0x88, 0x18, 0x76, 0x4f, 0xb7};
	struct squib_workset ws = sample();
	uint8_t *buf;
	size_t len;

	(void)state;
	memset(ws.memory_id, 0x5a, sizeof(ws.memory_id));
	ws.run_count = 3;
	assert_int_equal(squib_workset_encode(&ws, &buf, &len, NULL), 0);
	assert_int_equal(len, sizeof(doc));
	assert_memory_equal(buf, doc, sizeof(doc));
	free(buf);
}

static void test_should_round_trip_an_empty_set(void **state)
{
	struct squib_workset in = {.page_size = 1u << 21, .page_count = 1}, out;
	uint8_t *buf;
	size_t len;

	(void)state;
	assert_int_equal(squib_workset_encode(&in, &buf, &len, NULL), 0);
	assert_int_equal(len, 64);
	assert_int_equal(squib_workset_decode(buf, len, &out, NULL), 0);
	assert_int_equal(out.run_count, 0);
	assert_null(out.runs);
	assert_int_equal(out.page_size, 1u << 21);
	free(buf);
}

static void test_should_detect_every_single_bit_flip(void **state)
{
	uint8_t *buf;
	size_t len;

	(void)state;
	encode_sample(&buf, &len);
	for (size_t bit = 0; bit < len * 8; bit++) {
		buf[bit / 8] ^= (uint8_t)(1u << (bit % 8));
		assert_int_equal(decode(buf, len), SQUIB_E_CRC_MISMATCH);
		buf[bit / 8] ^= (uint8_t)(1u << (bit % 8));
	}
	assert_int_equal(decode(buf, len), 0);
	free(buf);
}

static void test_should_refuse_every_truncation_and_extension(void **state)
{
	uint8_t *buf, *longer;
	size_t len;

	(void)state;
	encode_sample(&buf, &len);
	for (size_t n = 0; n < len; n++)
		assert_int_equal(decode(buf, n), n < 64 ? SQUIB_E_TOO_SHORT : SQUIB_E_CRC_MISMATCH);
	assert_int_equal(decode(NULL, 0), SQUIB_E_TOO_SHORT);
	longer = calloc(1, len + 16);
	assert_non_null(longer);
	memcpy(longer, buf, len);
	/* Zero bytes after a CRC-0 message keep the CRC 0 (init 0, no xorout):
	 * run_count against the length is what refuses them. */
	for (size_t n = 1; n <= 16; n++)
		assert_int_equal(decode(longer, len + n), SQUIB_E_ENCODING);
	longer[len] = 1;
	assert_int_equal(decode(longer, len + 1), SQUIB_E_CRC_MISMATCH);
	/* A CRC-valid file with one run too many bytes: the length check catches it. */
	memcpy(longer, buf, len - 8);
	fix_crc(longer, len + 16);
	assert_int_equal(decode(longer, len + 16), SQUIB_E_ENCODING);
	free(longer);
	free(buf);
}

static void test_should_refuse_a_file_over_the_size_limit_before_reading_it(void **state)
{
	size_t len = (size_t)SQUIB_WS_SIZE_LIMIT + 1;
	uint8_t *big = calloc(1, len);
	struct squib_error_detail d;
	struct squib_workset ws;

	(void)state;
	assert_non_null(big);
	assert_int_equal(squib_workset_decode(big, len, &ws, &d), SQUIB_E_SIZE_LIMIT_EXCEEDED);
	assert_int_equal(d.limit, SQUIB_WS_SIZE_LIMIT);
	free(big);
	ws = sample();
	ws.run_count = SQUIB_WS_MAX_RUNS + 1; /* refused before the runs are looked at */
	assert_int_equal(squib_workset_encode(&ws, &big, &len, &d), SQUIB_E_SIZE_LIMIT_EXCEEDED);
	assert_null(big);
}

static void test_should_refuse_a_bad_magic_or_version(void **state)
{
	struct squib_error_detail d;
	struct squib_workset ws;
	uint8_t *buf;
	size_t len;

	(void)state;
	encode_sample(&buf, &len);
	buf[6] = 'X';
	fix_crc(buf, len);
	assert_int_equal(squib_workset_decode(buf, len, &ws, &d), SQUIB_E_MAGIC_MISMATCH);
	assert_int_equal(d.magic_expected, 0x0053574249555153ull); /* "SQUIBWS\0" little-endian */
	buf[6] = 'S';
	buf[8] = 2; /* major 2 */
	fix_crc(buf, len);
	assert_int_equal(squib_workset_decode(buf, len, &ws, &d), SQUIB_E_VERSION_MISMATCH);
	assert_int_equal(d.version_found.major, 2);
	assert_int_equal(d.version_expected.major, 1);
	buf[8] = 1;
	buf[10] = 1; /* minor 1: newer than ours */
	fix_crc(buf, len);
	assert_int_equal(decode(buf, len), SQUIB_E_VERSION_MISMATCH);
	buf[10] = 0;
	buf[8] = 0; /* major 0 */
	fix_crc(buf, len);
	assert_int_equal(decode(buf, len), SQUIB_E_VERSION_MISMATCH);
	free(buf);
}

/* Set the u64 at off (or u32 flags), fix the CRC, decode. */
static int decode_with(size_t off, uint64_t v, int width)
{
	uint8_t *buf;
	size_t len;
	int rc;

	encode_sample(&buf, &len);
	if (width == 4)
		for (int i = 0; i < 4; i++)
			buf[off + (size_t)i] = (uint8_t)(v >> (8 * i));
	else
		put64(buf + off, v);
	fix_crc(buf, len);
	rc = decode(buf, len);
	free(buf);
	return rc;
}

static void test_should_refuse_nonzero_flags_and_bad_geometry(void **state)
{
	(void)state;
	assert_int_equal(decode_with(12, 1, 4), SQUIB_E_ENCODING);
	assert_int_equal(decode_with(12, 0x80000000u, 4), SQUIB_E_ENCODING);
	assert_int_equal(decode_with(16, 0, 8), SQUIB_E_ENCODING);	    /* page_size 0 */
	assert_int_equal(decode_with(16, 2048, 8), SQUIB_E_ENCODING);	    /* below the minimum */
	assert_int_equal(decode_with(16, 12288, 8), SQUIB_E_ENCODING);	    /* not a power of two */
	assert_int_equal(decode_with(16, 1ull << 31, 8), SQUIB_E_ENCODING); /* above the maximum */
	assert_int_equal(decode_with(16, 1ull << 30, 8), 0);
	assert_int_equal(decode_with(24, 0, 8), SQUIB_E_ENCODING);	    /* no pages */
	assert_int_equal(decode_with(24, UINT64_MAX, 8), SQUIB_E_ENCODING); /* past the RAM limit */
	assert_int_equal(decode_with(24, 103, 8), 0);			    /* just holds run 2 */
	assert_int_equal(decode_with(24, 102, 8), SQUIB_E_ENCODING);
	assert_int_equal(decode_with(48, 3, 8), SQUIB_E_ENCODING); /* run_count vs length */
	assert_int_equal(decode_with(48, 5, 8), SQUIB_E_ENCODING);
	assert_int_equal(decode_with(48, UINT64_MAX, 8), SQUIB_E_ENCODING);
}

static void test_should_refuse_runs_that_are_empty_or_out_of_range(void **state)
{
	const size_t run2 = 56 + 2 * 16;

	(void)state;
	assert_int_equal(decode_with(run2 + 8, 0, 8), SQUIB_E_ENCODING); /* empty */
	assert_int_equal(decode_with(run2, 256, 8), SQUIB_E_ENCODING);	 /* first past the end */
	assert_int_equal(decode_with(run2, 254, 8), SQUIB_E_ENCODING);	 /* 254 + 3 > 256 */
	assert_int_equal(decode_with(run2, 253, 8), 0);			 /* ends at 256 */
	assert_int_equal(decode_with(run2 + 8, UINT64_MAX, 8), SQUIB_E_ENCODING); /* overflow */
	assert_int_equal(decode_with(run2, UINT64_MAX, 8), SQUIB_E_ENCODING);
}

static void test_should_check_in_the_documented_order(void **state)
{
	uint8_t *buf;
	size_t len;

	(void)state;
	encode_sample(&buf, &len);
	/* bad magic + bad version + bad flags: the magic is named */
	buf[0] = 'X';
	buf[8] = 9;
	buf[12] = 1;
	assert_int_equal(decode(buf, len), SQUIB_E_CRC_MISMATCH); /* CRC before all of them */
	fix_crc(buf, len);
	assert_int_equal(decode(buf, len), SQUIB_E_MAGIC_MISMATCH);
	buf[0] = 'S';
	fix_crc(buf, len);
	assert_int_equal(decode(buf, len), SQUIB_E_VERSION_MISMATCH);
	buf[8] = 1;
	fix_crc(buf, len);
	assert_int_equal(decode(buf, len), SQUIB_E_ENCODING);
	free(buf);
}

static void test_should_refuse_to_encode_what_decode_would_refuse(void **state)
{
	struct squib_ws_run bad[] = {{0, 0}};
	struct squib_workset ws = sample();
	uint8_t *buf = (uint8_t *)&ws;
	size_t len = 1;

	(void)state;
	ws.page_size = 1000;
	assert_int_equal(squib_workset_encode(&ws, &buf, &len, NULL), SQUIB_E_INVALID_ARGUMENT);
	assert_null(buf);
	assert_int_equal(len, 0);
	ws = sample();
	ws.runs = bad;
	ws.run_count = 1;
	assert_int_equal(squib_workset_encode(&ws, &buf, &len, NULL), SQUIB_E_INVALID_ARGUMENT);
	ws.runs = NULL;
	assert_int_equal(squib_workset_encode(&ws, &buf, &len, NULL), SQUIB_E_INVALID_ARGUMENT);
	assert_int_equal(squib_workset_encode(NULL, &buf, &len, NULL), SQUIB_E_INVALID_ARGUMENT);
}

static void test_should_tell_whether_a_set_fits_a_memory_file(void **state)
{
	struct squib_workset ws = sample();
	uint8_t id[SQUIB_MEMORY_ID_SIZE], other[SQUIB_MEMORY_ID_SIZE];
	struct squib_error_detail d;

	(void)state;
	memcpy(id, ws.memory_id, sizeof(id));
	memset(other, 0x11, sizeof(other));
	assert_int_equal(squib_workset_check_fits(&ws, 4096, 256, id, &d), 0);
	assert_int_equal(squib_workset_check_fits(&ws, 8192, 256, id, &d), SQUIB_E_PAIR_MISMATCH);
	assert_int_equal(squib_workset_check_fits(&ws, 4096, 255, id, &d), SQUIB_E_PAIR_MISMATCH);
	assert_int_equal(squib_workset_check_fits(&ws, 4096, 256, other, &d),
			 SQUIB_E_PAIR_MISMATCH);
	assert_non_null(strstr(d.msg, "a0a1a2a3"));
	memset(ws.memory_id, 0, sizeof(ws.memory_id)); /* unbound: fits any file */
	assert_int_equal(squib_workset_check_fits(&ws, 4096, 256, other, &d), 0);
	assert_int_equal(squib_workset_check_fits(NULL, 4096, 256, other, &d),
			 SQUIB_E_INVALID_ARGUMENT);
}

static void test_should_write_and_read_a_file(void **state)
{
	char *dir = squib_test_tmpdir(), *path = squib_test_path(dir, "ws.bin");
	char *big = squib_test_path(dir, "big.bin");
	struct squib_workset in = sample(), out;
	struct squib_error_detail d;
	uint8_t *enc, *disk;
	size_t len, dlen;
	int fd;

	(void)state;
	{
		/* Private whatever the umask: it lists which guest pages were touched. */
		mode_t old = umask(0);
		struct stat st;

		assert_int_equal(squib_workset_write(path, &in, &d), 0);
		umask(old);
		assert_int_equal(stat(path, &st), 0);
		assert_int_equal(st.st_mode & 0777, 0600);
	}
	assert_int_equal(squib_test_read_file(path, &disk, &dlen), 0);
	encode_sample(&enc, &len);
	assert_int_equal(dlen, len);
	assert_memory_equal(disk, enc, len);
	assert_int_equal(squib_workset_read(path, &out, &d), 0);
	assert_int_equal(out.run_count, 4);
	assert_memory_equal(out.runs, sample_runs, sizeof(sample_runs));
	squib_workset_free(&out);
	assert_int_equal(squib_workset_read(big, &out, &d), SQUIB_E_IO); /* missing */
	assert_int_equal(d.os_errno, ENOENT);
	fd = open(big, O_CREAT | O_WRONLY | O_TRUNC, 0644);
	assert_true(fd >= 0);
	assert_int_equal(ftruncate(fd, (off_t)SQUIB_WS_SIZE_LIMIT + 4096), 0);
	close(fd);
	assert_int_equal(squib_workset_read(big, &out, &d), SQUIB_E_SIZE_LIMIT_EXCEEDED);
	in.page_size = 3;
	assert_int_equal(squib_workset_write(path, &in, &d), SQUIB_E_INVALID_ARGUMENT);
	assert_int_equal(squib_workset_read(path, &out, &d), 0); /* the old file stays */
	squib_workset_free(&out);
	free(enc);
	free(disk);
	squib_test_rmtree(dir);
	free(big);
	free(path);
	free(dir);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
	    cmocka_unit_test(test_should_round_trip_a_working_set_byte_for_byte),
	    cmocka_unit_test(test_should_lay_out_the_fields_as_documented),
	    cmocka_unit_test(test_should_encode_the_documented_example),
	    cmocka_unit_test(test_should_round_trip_an_empty_set),
	    cmocka_unit_test(test_should_detect_every_single_bit_flip),
	    cmocka_unit_test(test_should_refuse_every_truncation_and_extension),
	    cmocka_unit_test(test_should_refuse_a_file_over_the_size_limit_before_reading_it),
	    cmocka_unit_test(test_should_refuse_a_bad_magic_or_version),
	    cmocka_unit_test(test_should_refuse_nonzero_flags_and_bad_geometry),
	    cmocka_unit_test(test_should_refuse_runs_that_are_empty_or_out_of_range),
	    cmocka_unit_test(test_should_check_in_the_documented_order),
	    cmocka_unit_test(test_should_refuse_to_encode_what_decode_would_refuse),
	    cmocka_unit_test(test_should_tell_whether_a_set_fits_a_memory_file),
	    cmocka_unit_test(test_should_write_and_read_a_file),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
