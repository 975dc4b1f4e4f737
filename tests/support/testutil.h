/* SPDX-License-Identifier: Apache-2.0 */
/* Helpers shared by the cmocka test programs (not part of the library). */
#ifndef SQUIB_TESTUTIL_H
#define SQUIB_TESTUTIL_H

#include <stdarg.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <setjmp.h>
#include <cmocka.h>

/* A fresh directory under $TMPDIR (or /tmp); heap string. Aborts the test on failure. */
char *squib_test_tmpdir(void);

/* rm -rf; ignores errors. */
void squib_test_rmtree(const char *path);

/* path = dir + "/" + name; heap string. */
char *squib_test_path(const char *dir, const char *name);

/* Path of a committed fixture: $SQUIB_FIXTURES/name (tests/fixtures when unset). */
char *squib_test_fixture(const char *name);

/* Whole-file helpers; 0 on success, -errno on failure. */
int squib_test_read_file(const char *path, uint8_t **buf, size_t *len);
int squib_test_write_file(const char *path, const void *buf, size_t len);

/* Does the path exist? */
int squib_test_exists(const char *path);

/*
 * The file-safety layer's files of the destination `path` beside it (names as
 * in squib/atomic.h: NAME.<hex>.tmp temps, the .NAME.squib-lock lock): how
 * many there are. With `temp` non-NULL, *temp is the path of one temp (heap;
 * the pair's state temp, NAME.<32 hex>.tmp, first), or NULL when there is none.
 */
int squib_test_layer_files(const char *path, char **temp);

/* The same, temps only (a killed writer's lock file stays, and is harmless). */
int squib_test_temps(const char *path, char **temp);

/*
 * Is userfaultfd truly absent (the syscall is ENOSYS, as on a kernel without
 * it or under qemu-user, and the library then gives up)? Then it prints one
 * loud SKIP line naming `what` (what
 * goes untested) and returns 1; a test calls skip() on it. Any other
 * failure (EPERM...) is not absence: the test runs and reports it.
 */
int squib_test_uffd_missing(const char *what);

/*
 * Does this machine's KVM map guest memory with two-dimensional paging (AMD
 * NPT, Intel EPT: kvm_amd's npt or kvm_intel's ept parameter is Y)? Then
 * its dirty log holds more than the guest's stores (docs/DESIGN.md, "What
 * the dirty log reports"): every page the guest first touches after logging
 * starts, and the guest's page tables whenever the CPU walks them. With
 * shadow paging (kvm_pvm, or npt/ept off) it holds exactly the stores.
 */
bool squib_test_kvm_tdp(void);

/*
 * Is this machine's /dev/kvm kvm_pvm's (software nested virtualisation, no
 * kvm_amd or kvm_intel loaded)? PVM runs its guests in hardware user mode and
 * delivers events only to a PVM-aware guest kernel (its event-entry MSR), never
 * through a guest IDT: interrupts never reach our interrupt guest, and a stock
 * Linux kernel does not boot. Then it prints one loud SKIP line for the test
 * program `what` (make test-kvm-vm runs it under kvm_amd) and returns true.
 */
bool squib_test_kvm_pvm_skips(const char *what);

/*
 * A fresh prefix of the S3 store the tests use, SQUIB_TEST_S3_URL (s3://BUCKET,
 * the bucket existing; `make test-store` starts Ceph RGW and sets it):
 * "URL/TAG<pid>-<n>", heap string. NULL, after one loud SKIP line naming
 * `what`, when there is no server.
 */
char *squib_test_s3_url(const char *what, const char *tag);

#endif
