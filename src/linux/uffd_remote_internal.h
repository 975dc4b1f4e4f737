/* SPDX-License-Identifier: Apache-2.0 */
/* Shared by the two ends of the Uffd handshake (internal). */
#ifndef SQUIB_LINUX_UFFD_REMOTE_INTERNAL_H
#define SQUIB_LINUX_UFFD_REMOTE_INTERNAL_H

#include <stdint.h>
#include <sys/un.h>

#include <squib/error.h>

/* sa for path, or SQUIB_E_INVALID_PATH (empty, longer than sun_path allows). */
int squib_uffd_sockaddr(const char *path, struct sockaddr_un *sa, struct squib_error_detail *d);

/* CLOCK_MONOTONIC in milliseconds. */
int64_t squib_uffd_now_ms(void);

/* Milliseconds left before deadline for poll: -1 when deadline < 0 (none), 0 once passed. */
int squib_uffd_left_ms(int64_t deadline);

/* Wait until fd has one of events or deadline: 0, or SQUIB_E_IO ("timed out WHAT", ETIMEDOUT). */
int squib_uffd_wait(int fd, short events, int64_t deadline, const char *what,
		    struct squib_error_detail *d);

/* SQUIB_E_IO with errno e and the message "WHAT: strerror(e)". */
int squib_uffd_fail_io(struct squib_error_detail *d, int e, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));

#endif
