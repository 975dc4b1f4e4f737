/* SPDX-License-Identifier: Apache-2.0 */
/*
 * squib/api.h - SQUIB_API, the mark on every function the libraries export.
 *
 * libsquib-snapshot and libsquib-kvm are compiled with -fvisibility=hidden,
 * so a function is part of the ABI only when its public prototype carries
 * SQUIB_API; everything else stays inside the library (docs/DESIGN.md, "The
 * ABI and the two libraries"). Including this header has no other effect.
 */
#ifndef SQUIB_API_H
#define SQUIB_API_H

#if defined(__GNUC__) || defined(__clang__)
#define SQUIB_API __attribute__((visibility("default")))
#else
#define SQUIB_API
#endif

#endif /* SQUIB_API_H */
