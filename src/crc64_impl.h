/* SPDX-License-Identifier: Apache-2.0 */
/*
 * Internal: the individual CRC-64/Jones paths behind squib_crc64(), exposed so
 * tests and benchmarks can compare each one with the bytewise reference even on
 * a CPU where the dispatcher would pick another. Not installed, not exported
 * from the shared library.
 */
#ifndef SQUIB_CRC64_IMPL_H
#define SQUIB_CRC64_IMPL_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#define SQUIB_INTERNAL __attribute__((visibility("hidden")))

/* Eight bytes per step through eight 256-entry tables. */
SQUIB_INTERNAL uint64_t squib_crc64_slice8(uint64_t crc, const void *buf, size_t len);

/* Does this build and CPU have the carry-less-multiply folding path? */
SQUIB_INTERNAL bool squib_crc64_clmul_available(void);

/* PCLMULQDQ folding; only call when squib_crc64_clmul_available(). Any length. */
SQUIB_INTERNAL uint64_t squib_crc64_clmul(uint64_t crc, const void *buf, size_t len);

#endif /* SQUIB_CRC64_IMPL_H */
