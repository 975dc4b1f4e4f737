/* SPDX-License-Identifier: Apache-2.0 */
/* Shared by the two ends of the Uffd handshake (internal). */
#ifndef SQUIB_LINUX_UFFD_REMOTE_INTERNAL_H
#define SQUIB_LINUX_UFFD_REMOTE_INTERNAL_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/types.h>
#include <sys/un.h>

#include <squib/error.h>
#include <squib/uffd_remote.h>

/* sa for path, or SQUIB_E_INVALID_PATH (empty, longer than sun_path allows). */
int squib_uffd_sockaddr(const char *path, struct sockaddr_un *sa, struct squib_error_detail *d);

/* squib_uffd_listen with the socket file created `mode` (permission bits) at most. */
int squib_uffd_listen_mode(const char *socket_path, unsigned mode, int *listen_fd,
			   struct squib_error_detail *d);

/* CLOCK_MONOTONIC in milliseconds. */
int64_t squib_uffd_now_ms(void);

/* Milliseconds left before deadline for poll: -1 when deadline < 0 (none), 0 once passed. */
int squib_uffd_left_ms(int64_t deadline);

/* Wait until fd has one of events or deadline: 0, or SQUIB_E_IO ("timed out WHAT", ETIMEDOUT). */
int squib_uffd_wait(int fd, short events, int64_t deadline, const char *what,
		    struct squib_error_detail *d);

/* SQUIB_E_IO with errno e and the message "WHAT" (its rendering adds strerror(e)). */
int squib_uffd_fail_why(struct squib_error_detail *d, int e, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));

/* SQUIB_E_IO with errno e and the message "WHAT: strerror(e)". */
int squib_uffd_fail_io(struct squib_error_detail *d, int e, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));

/* fds kept per handshake before the rest is treated as "too many". */
#define SQUIB_UFFD_RX_MAX_FDS 8

/* One handshake being received: the bytes and every SCM_RIGHTS fd so far. */
struct squib_uffd_rx {
	char *buf; /* SQUIB_UFFD_HANDSHAKE_MAX + 1 bytes */
	size_t len;
	int fds[SQUIB_UFFD_RX_MAX_FDS];
	int nfds;     /* kept in fds */
	int extra;    /* beyond SQUIB_UFFD_RX_MAX_FDS (closed at once) */
	bool ctrunc;  /* the kernel dropped control data */
	bool started; /* the first byte that is not whitespace has come */
};

/* Allocate the buffer: 0 or SQUIB_E_NOMEM. */
int squib_uffd_rx_init(struct squib_uffd_rx *x, struct squib_error_detail *d);

/* Close the fds still held, free the buffer (zeroed: calling twice is harmless). */
void squib_uffd_rx_free(struct squib_uffd_rx *x);

/*
 * Read what fd has now (never blocks): 0 more is needed, 1 the bytes form a
 * complete JSON value (valid or not), else the error that ends the handshake
 * (EOF, the size limit, recvmsg's errno).
 */
int squib_uffd_rx_step(int fd, struct squib_uffd_rx *x, struct squib_error_detail *d);

/*
 * A complete message into *out: parse, then the fds (exactly one, a
 * userfaultfd), then the peer's pid. Takes conn_fd and the rx in every case:
 * on success out owns conn_fd and the uffd, on failure all is closed.
 */
int squib_uffd_rx_finish(int conn_fd, struct squib_uffd_rx *x, struct squib_uffd_peer *out,
			 struct squib_error_detail *d);

/*
 * SO_PEERCRED of a connected socket; 0, or SQUIB_E_INVALID_PATH naming the
 * uid when it is neither uid_self nor one of allow[0..n) ("who" names the
 * peer's role in the message), SQUIB_E_IO.
 */
int squib_uffd_check_cred(int fd, uid_t uid_self, const uint32_t *allow, uint32_t n,
			  const char *who, pid_t *pid, uid_t *uid, struct squib_error_detail *d);

#endif
