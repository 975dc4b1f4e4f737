/* SPDX-License-Identifier: Apache-2.0 */
/* Opening a userfaultfd, shared by the pager and the write-protect tracker (internal). */
#ifndef SQUIB_LINUX_UFFD_H
#define SQUIB_LINUX_UFFD_H

#include <stdbool.h>

/*
 * A non-blocking, close-on-exec userfaultfd: the syscall, else
 * /dev/userfaultfd, which file permissions allow where the
 * vm.unprivileged_userfaultfd sysctl does not. Returns the fd, or -1 with
 * errno (the syscall's errno when both fail: it is the informative one).
 *
 * user_mode_only: UFFD_USER_MODE_ONLY (retried without it on kernels that
 * refuse the flag) - enough for a tracker of the VMM's own writes. Guest RAM
 * served to KVM needs false: KVM resolves guest faults with get_user_pages,
 * a kernel-mode fault that a user-mode-only uffd never reports (the vCPU
 * would fail or spin instead of waiting for the pager).
 */
int squib_uffd_open(bool user_mode_only);

#endif
