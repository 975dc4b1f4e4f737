/* SPDX-License-Identifier: Apache-2.0 */
/*
 * TEMPORARY bytewise CRC-64/Jones so this branch links; the real table/slicing
 * implementation is being written on another branch and replaces this at merge.
 */
#include <squib/crc64.h>

/* Reflected form of the Jones polynomial 0xAD93D23594C935A9. */
#define CRC64_JONES_POLY_REFLECTED 0x95AC9329AC4BC9B5ULL

uint64_t squib_crc64_bytewise(uint64_t crc, const void *buf, size_t len)
{
	const unsigned char *p = buf;

	for (size_t i = 0; i < len; i++) {
		crc ^= p[i];
		for (int bit = 0; bit < 8; bit++)
			crc = (crc >> 1) ^ (CRC64_JONES_POLY_REFLECTED & (0 - (crc & 1)));
	}
	return crc;
}

uint64_t squib_crc64(uint64_t crc, const void *buf, size_t len)
{
	return squib_crc64_bytewise(crc, buf, len);
}

const char *squib_crc64_impl(void)
{
	return "bytewise";
}
