/* SPDX-License-Identifier: Apache-2.0 */
/*
 * squib/snapshot.h - umbrella header for libsquib-snapshot.
 *
 * Include this one header to get the whole public API. Each module header
 * states its own thread-safety rules.
 */
#ifndef SQUIB_SNAPSHOT_H
#define SQUIB_SNAPSHOT_H

#include <squib/api.h>
#include <squib/error.h>
#include <squib/crc64.h>
#include <squib/sysreg.h>
#include <squib/state.h>
#include <squib/envelope.h>
#include <squib/atomic.h>
#include <squib/input.h>
#include <squib/describe.h>
#include <squib/dirty.h>
#include <squib/progress.h>
#include <squib/memfile.h>
#include <squib/chain.h>
#include <squib/page_source.h>
#include <squib/track.h>
#include <squib/vcpu.h>
#include <squib/verify.h>
#include <squib/vm.h>
#include <squib/save.h>
#include <squib/guest_memory.h>
#include <squib/load.h>
#include <squib/workset.h>
#include <squib/pager.h>
#include <squib/prewarm.h>
#include <squib/uffd_remote.h>
#include <squib/store.h>

#ifdef __cplusplus
extern "C" {
#endif

/* Version of the library itself (not of the file format), e.g. "0.1.0". */
SQUIB_API const char *squib_library_version(void);

#ifdef __cplusplus
}
#endif
#endif /* SQUIB_SNAPSHOT_H */
