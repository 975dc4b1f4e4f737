/* SPDX-License-Identifier: Apache-2.0 */
/*
 * squib/crc64.h - CRC-64/Jones (the variant Redis uses; catalogued as CRC-64/REDIS).
 *
 * Polynomial 0xAD93D23594C935A9 (reflected 0x95AC9329AC4BC9B5), reflected in and
 * out, init 0, xorout 0. Check value for "123456789": 0xe9c6d914c4b8d9ca.
 * Appending the CRC little-endian to the data gives a CRC of 0 over the whole
 * (the residue property every squib file trailer relies on).
 *
 * Thread-safety: pure functions over caller memory; safe from any thread.
 */
#ifndef SQUIB_CRC64_H
#define SQUIB_CRC64_H

#include <squib/api.h>
#include <stddef.h>
#include <stdint.h>

#ifdef __cplusplus
extern "C" {
#endif

#define SQUIB_CRC64_CHECK 0xe9c6d914c4b8d9caULL

/* Continue a CRC: crc = squib_crc64(0, a, n); crc = squib_crc64(crc, b, m); ... */
SQUIB_API uint64_t squib_crc64(uint64_t crc, const void *buf, size_t len);

/* The one-byte-at-a-time reference implementation (for tests and benchmarks). */
SQUIB_API uint64_t squib_crc64_bytewise(uint64_t crc, const void *buf, size_t len);

/* Name of the implementation squib_crc64() dispatches to on this CPU. */
SQUIB_API const char *squib_crc64_impl(void);

#ifdef __cplusplus
}
#endif
#endif /* SQUIB_CRC64_H */
