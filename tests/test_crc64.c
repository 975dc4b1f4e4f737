/* SPDX-License-Identifier: Apache-2.0 */
/* CRC-64/Jones: catalogue check value, residue, incremental use, and every fast path
 * against the bytewise reference. The generated tables are re-derived here. */
#include "testutil.h"

#include <stdlib.h>
#include <string.h>

#include <squib/crc64.h>

#include "../src/crc64_impl.h"
#include "../src/crc64_tables.h"

#define POLY_REFLECTED 0x95AC9329AC4BC9B5ULL

typedef uint64_t (*crc_fn)(uint64_t, const void *, size_t);

struct path {
	const char *name;
	crc_fn fn;
};

/* xorshift64*: a fixed seed keeps failures reproducible. */
static uint64_t rnd(uint64_t *s)
{
	*s ^= *s >> 12;
	*s ^= *s << 25;
	*s ^= *s >> 27;
	return *s * 0x2545F4914F6CDD1DULL;
}

static uint8_t *random_buf(size_t len, uint64_t *seed)
{
	uint8_t *b = malloc(len ? len : 1);

	assert_non_null(b);
	for (size_t i = 0; i < len; i++)
		b[i] = (uint8_t)rnd(seed);
	return b;
}

/* The fast paths this CPU can run; the clmul entry point is only listed when usable. */
static size_t fast_paths(struct path *out)
{
	size_t n = 0;

	out[n++] = (struct path){"squib_crc64", squib_crc64};
	out[n++] = (struct path){"slice8", squib_crc64_slice8};
	if (squib_crc64_clmul_available())
		out[n++] = (struct path){"clmul", squib_crc64_clmul};
	return n;
}

static void test_should_match_catalogue_check_value(void **state)
{
	struct path p[3];
	size_t n = fast_paths(p);

	(void)state;
	assert_true(squib_crc64_bytewise(0, "123456789", 9) == SQUIB_CRC64_CHECK);
	assert_true(SQUIB_CRC64_CHECK == 0xe9c6d914c4b8d9caULL);
	for (size_t i = 0; i < n; i++)
		assert_true(p[i].fn(0, "123456789", 9) == SQUIB_CRC64_CHECK);
}

static void test_should_return_zero_over_data_plus_le_crc(void **state)
{
	static const size_t lens[] = {0, 1, 7, 8, 9, 127, 128, 255, 256, 1000, 4096, 65537};
	uint64_t seed = 0x1234;

	(void)state;
	for (size_t i = 0; i < sizeof(lens) / sizeof(lens[0]); i++) {
		uint8_t *b = random_buf(lens[i] + 8, &seed);
		uint64_t crc = squib_crc64(0, b, lens[i]);

		for (int k = 0; k < 8; k++)
			b[lens[i] + (size_t)k] = (uint8_t)(crc >> (8 * k));
		assert_true(squib_crc64(0, b, lens[i] + 8) == 0);
		assert_true(squib_crc64_bytewise(0, b, lens[i] + 8) == 0);
		/* A wrong trailer must not pass. */
		b[lens[i]] ^= 1;
		assert_true(squib_crc64(0, b, lens[i] + 8) != 0);
		free(b);
	}
}

static void test_should_return_incoming_crc_for_empty_input(void **state)
{
	struct path p[3];
	size_t n = fast_paths(p);

	(void)state;
	assert_true(squib_crc64_bytewise(0, NULL, 0) == 0);
	assert_true(squib_crc64_bytewise(0xdeadbeefULL, "", 0) == 0xdeadbeefULL);
	for (size_t i = 0; i < n; i++) {
		assert_true(p[i].fn(0, NULL, 0) == 0);
		assert_true(p[i].fn(SQUIB_CRC64_CHECK, NULL, 0) == SQUIB_CRC64_CHECK);
	}
}

static void test_should_match_one_shot_when_fed_in_random_splits(void **state)
{
	const size_t len = 3 * 4096 + 77;
	uint64_t seed = 0xfeed;
	uint8_t *b = random_buf(len, &seed);
	uint64_t whole = squib_crc64_bytewise(0, b, len);

	(void)state;
	assert_true(squib_crc64(0, b, len) == whole);
	for (int round = 0; round < 200; round++) {
		uint64_t crc = 0;
		size_t off = 0;

		while (off < len) {
			/* Mix tiny pieces with ones long enough for the folding path. */
			size_t cap = round % 2 ? 16 : 2048;
			size_t piece = (size_t)(rnd(&seed) % (cap + 1));

			if (piece > len - off)
				piece = len - off;
			crc = squib_crc64(crc, b + off, piece);
			off += piece;
		}
		assert_true(crc == whole);
	}
	free(b);
}

static void test_should_match_bytewise_for_every_length_and_alignment(void **state)
{
	const size_t max_len = 4096, slack = 64;
	uint64_t seed = 0xabcdef;
	uint8_t *b = random_buf(max_len + slack, &seed);
	struct path p[3];
	size_t n = fast_paths(p);

	(void)state;
	for (size_t len = 0; len <= max_len; len++) {
		for (int rep = 0; rep < 3; rep++) {
			size_t off = (size_t)(rnd(&seed) % slack);
			uint64_t init = rep == 0 ? 0 : rnd(&seed);
			uint64_t want = squib_crc64_bytewise(init, b + off, len);

			for (size_t i = 0; i < n; i++) {
				uint64_t got = p[i].fn(init, b + off, len);
				if (got != want)
					fail_msg("%s len=%zu off=%zu: %016llx != %016llx",
						 p[i].name, len, off, (unsigned long long)got,
						 (unsigned long long)want);
			}
		}
	}
	free(b);
}

static void test_should_match_bytewise_on_megabyte_buffers(void **state)
{
	const size_t len = (1u << 20) + 13;
	uint64_t seed = 99;
	uint8_t *b = random_buf(len + 1, &seed);
	struct path p[3];
	size_t n = fast_paths(p);

	(void)state;
	for (size_t off = 0; off < 2; off++) {
		uint64_t want = squib_crc64_bytewise(7, b + off, len);
		for (size_t i = 0; i < n; i++)
			assert_true(p[i].fn(7, b + off, len) == want);
	}
	free(b);
}

/* Multiply by x in the reflected domain: bit j holds the coefficient of x^(63-j). */
static uint64_t mul_x(uint64_t r)
{
	return (r >> 1) ^ (r & 1 ? POLY_REFLECTED : 0);
}

static void test_should_match_generated_tables_with_polynomial(void **state)
{
	(void)state;
	for (unsigned n = 0; n < 256; n++) {
		uint64_t crc = n;
		for (int bit = 0; bit < 8; bit++)
			crc = mul_x(crc);
		assert_true(squib_crc64_table[0][n] == crc);
		/* Table k is byte n followed by k zero bytes. */
		for (int k = 1; k < 8; k++) {
			uint8_t msg[8] = {(uint8_t)n};
			uint64_t want = squib_crc64_bytewise(0, msg, (size_t)k + 1);

			assert_true(squib_crc64_table[k][n] == want);
		}
	}
}

static uint64_t xpow_mod_reflected(unsigned k)
{
	uint64_t r = 1ULL << 63; /* x^0 */

	while (k--)
		r = mul_x(r);
	return r;
}

static void test_should_match_generated_fold_constants_with_polynomial(void **state)
{
	(void)state;
	for (unsigned i = 0; i < 8; i++) {
		unsigned d = 128 * (i + 1);
		assert_true(squib_crc64_fold[i][0] == xpow_mod_reflected(d + 63));
		assert_true(squib_crc64_fold[i][1] == xpow_mod_reflected(d - 1));
	}
}

static void test_should_name_the_dispatched_implementation(void **state)
{
	const char *impl = squib_crc64_impl();

	(void)state;
	if (squib_crc64_clmul_available())
		assert_string_equal(impl, "pclmul");
	else
		assert_string_equal(impl, "slice-by-8");
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_should_match_catalogue_check_value),
		cmocka_unit_test(test_should_return_zero_over_data_plus_le_crc),
		cmocka_unit_test(test_should_return_incoming_crc_for_empty_input),
		cmocka_unit_test(test_should_match_one_shot_when_fed_in_random_splits),
		cmocka_unit_test(test_should_match_bytewise_for_every_length_and_alignment),
		cmocka_unit_test(test_should_match_bytewise_on_megabyte_buffers),
		cmocka_unit_test(test_should_match_generated_tables_with_polynomial),
		cmocka_unit_test(test_should_match_generated_fold_constants_with_polynomial),
		cmocka_unit_test(test_should_name_the_dispatched_implementation),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
