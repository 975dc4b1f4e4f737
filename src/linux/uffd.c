/* SPDX-License-Identifier: Apache-2.0 */
#include "uffd.h"

#include <errno.h>
#include <fcntl.h>
#include <linux/userfaultfd.h>
#include <sys/ioctl.h>
#include <sys/syscall.h>
#include <unistd.h>

/* Linux 6.1 headers lack these (kernel uapi: include/uapi/linux/userfaultfd.h). */
#ifndef USERFAULTFD_IOC_NEW
#define USERFAULTFD_IOC_NEW _IO(0xAA, 0x00)
#endif
#ifndef UFFD_USER_MODE_ONLY
#define UFFD_USER_MODE_ONLY 1
#endif

static int uffd_syscall(bool user_mode_only)
{
	int fd = -1;

	if (user_mode_only) {
		fd = (int)syscall(SYS_userfaultfd, O_CLOEXEC | O_NONBLOCK | UFFD_USER_MODE_ONLY);
		/* Older kernels refuse UFFD_USER_MODE_ONLY; fall back to the plain fd. */
		if (fd >= 0 || errno != EINVAL)
			return fd;
	}
	return (int)syscall(SYS_userfaultfd, O_CLOEXEC | O_NONBLOCK);
}

int squib_uffd_open(bool user_mode_only)
{
	int fd = uffd_syscall(user_mode_only), dev, err;

	if (fd >= 0 || errno == ENOSYS)
		return fd;
	err = errno;
	dev = open("/dev/userfaultfd", O_RDWR | O_CLOEXEC);
	if (dev < 0) {
		errno = err;
		return -1;
	}
	/* /dev/userfaultfd handles kernel-mode faults whatever the flags: none needed. */
	fd = ioctl(dev, USERFAULTFD_IOC_NEW, O_CLOEXEC | O_NONBLOCK);
	err = errno;
	close(dev);
	errno = err;
	return fd;
}
