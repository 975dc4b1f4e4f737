/* SPDX-License-Identifier: Apache-2.0 */
/* Opening a userfaultfd, shared by the pager and the write-protect tracker (internal). */
#ifndef SQUIB_LINUX_UFFD_H
#define SQUIB_LINUX_UFFD_H

/*
 * A non-blocking, close-on-exec userfaultfd for user-mode faults: the syscall
 * (UFFD_USER_MODE_ONLY, retried without it on kernels that refuse the flag),
 * else /dev/userfaultfd, which file permissions allow where the
 * vm.unprivileged_userfaultfd sysctl does not. Returns the fd, or -1 with errno
 * (the syscall's errno when both fail: it is the informative one).
 */
int squib_uffd_open(void);

#endif
