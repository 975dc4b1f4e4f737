/* SPDX-License-Identifier: Apache-2.0 */
/*
 * Handler side of the Uffd handshake (squib/uffd_remote.h): listen on an
 * AF_UNIX socket, accept one VMM, receive its JSON mappings and its
 * userfaultfd. A stream socket may deliver the one message in pieces, so
 * bytes are gathered until they form complete JSON (or EOF, the size limit,
 * the deadline), collecting every SCM_RIGHTS fd on the way.
 */
#include <squib/uffd_remote.h>

#include <errno.h>
#include <jansson.h>
#include <limits.h>
#include <poll.h>
#include <pthread.h>
#include <sched.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <linux/userfaultfd.h>
#include <sys/ioctl.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <time.h>
#include <unistd.h>

#include "uffd_remote_internal.h"

/* ---- listen ---------------------------------------------------------------------- */

int squib_uffd_sockaddr(const char *path, struct sockaddr_un *sa, struct squib_error_detail *d)
{
	size_t n = path ? strlen(path) : 0;

	memset(sa, 0, sizeof(*sa));
	sa->sun_family = AF_UNIX;
	if (!n)
		return squib_fail_msg(d, SQUIB_E_INVALID_PATH, "uffd socket: empty path");
	if (n >= sizeof(sa->sun_path))
		return squib_fail_msg(d, SQUIB_E_INVALID_PATH,
				      "uffd socket path is %zu bytes long (at most %zu): %.200s", n,
				      sizeof(sa->sun_path) - 1, path);
	memcpy(sa->sun_path, path, n);
	return 0;
}

/* Is something listening at sa? (A refused connection means a stale socket file.) */
static bool is_live(const struct sockaddr_un *sa)
{
	int s = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC | SOCK_NONBLOCK, 0), rc;

	if (s < 0)
		return true; /* cannot tell: do not remove it */
	rc = connect(s, (const struct sockaddr *)sa, sizeof(*sa));
	rc = rc == 0 || errno != ECONNREFUSED;
	close(s);
	return rc;
}

/* Bind s at sa, replacing a stale socket file; 0 or SQUIB_E_*. */
static int bind_replacing(int s, const struct sockaddr_un *sa, struct squib_error_detail *d)
{
	struct stat st;

	if (!bind(s, (const struct sockaddr *)sa, sizeof(*sa)))
		return 0;
	if (errno != EADDRINUSE)
		goto fail;
	if (lstat(sa->sun_path, &st))
		goto fail;
	if (!S_ISSOCK(st.st_mode))
		return squib_fail_msg(d, SQUIB_E_INVALID_PATH,
				      "%.400s exists and is not a socket: not replaced",
				      sa->sun_path);
	if (is_live(sa))
		return squib_fail_msg(d, SQUIB_E_INVALID_PATH,
				      "%.400s: another handler is listening there", sa->sun_path);
	if (unlink(sa->sun_path) && errno != ENOENT)
		goto fail;
	if (!bind(s, (const struct sockaddr *)sa, sizeof(*sa)))
		return 0;
fail:
	return squib_uffd_fail_io(d, errno, "binding %.400s", sa->sun_path);
}

/*
 * The socket file's mode, race-free. bind creates the file in one step with
 * the socket inode's mode (set by fchmod before) less the umask, so it is
 * never wider than wanted - no window where another user could connect, and
 * no chmod of a path someone could swap. To get the mode exactly (the umask
 * would turn a wanted 0666 into 0644), the bind runs in a short thread of its
 * own with its own filesystem context (unshare(CLONE_FS)) and umask 0: the
 * process-wide umask, which other threads share, is never touched. Without
 * that thread or unshare the bind happens here and the umask may narrow the
 * mode, never widen it.
 */
struct bind_job {
	int s;
	const struct sockaddr_un *sa;
	struct squib_error_detail *d;
	int rc;
};

static void *bind_job_run(void *arg)
{
	struct bind_job *j = arg;

	if (!unshare(CLONE_FS))
		umask(0); /* this thread's own umask now */
	j->rc = bind_replacing(j->s, j->sa, j->d);
	return NULL;
}

static int bind_exact(int s, const struct sockaddr_un *sa, struct squib_error_detail *d)
{
	struct bind_job j = {s, sa, d, 0};
	pthread_t t;

	if (pthread_create(&t, NULL, bind_job_run, &j))
		return bind_replacing(s, sa, d);
	pthread_join(t, NULL);
	return j.rc;
}

int squib_uffd_listen(const char *socket_path, int *listen_fd, struct squib_error_detail *d)
{
	return squib_uffd_listen_mode(socket_path, 0600, listen_fd, d);
}

int squib_uffd_listen_mode(const char *socket_path, unsigned mode, int *listen_fd,
			   struct squib_error_detail *d)
{
	struct sockaddr_un sa;
	int s, rc = 0;

	if (!listen_fd)
		return squib_fail_msg(d, SQUIB_E_INVALID_ARGUMENT, "uffd listen: NULL argument");
	*listen_fd = -1;
	if ((rc = squib_uffd_sockaddr(socket_path, &sa, d)))
		return rc;
	/* Non-blocking: a connection that vanishes between poll and accept must not block. */
	if ((s = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC | SOCK_NONBLOCK, 0)) < 0)
		return squib_fail_errno(d, SQUIB_E_IO, errno);
	if (fchmod(s, (mode_t)mode) || (rc = bind_exact(s, &sa, d))) {
		rc = rc ? rc
			: squib_uffd_fail_io(d, errno, "fchmod of the socket for %.400s",
					     socket_path);
		close(s);
		return rc;
	}
	if (listen(s, 16)) {
		rc = squib_fail_errno(d, SQUIB_E_IO, errno);
		close(s);
		return rc;
	}
	*listen_fd = s;
	return 0;
}

/* ---- deadlines and errors ------------------------------------------------------------- */

int squib_uffd_fail_io(struct squib_error_detail *d, int e, const char *fmt, ...)
{
	char what[SQUIB_DETAIL_MSG_MAX];
	va_list ap;

	va_start(ap, fmt);
	vsnprintf(what, sizeof(what), fmt, ap);
	va_end(ap);
	squib_fail_msg(d, SQUIB_E_IO, "%s: %s", what, strerror(e));
	if (d)
		d->os_errno = e;
	return SQUIB_E_IO;
}

int squib_uffd_fail_why(struct squib_error_detail *d, int e, const char *fmt, ...)
{
	char what[SQUIB_DETAIL_MSG_MAX];
	va_list ap;

	va_start(ap, fmt);
	vsnprintf(what, sizeof(what), fmt, ap);
	va_end(ap);
	squib_fail_msg(d, SQUIB_E_IO, "%s", what);
	if (d)
		d->os_errno = e;
	return SQUIB_E_IO;
}

int64_t squib_uffd_now_ms(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

/* Milliseconds left before deadline (-1: none) for poll; 0 once passed. */
int squib_uffd_left_ms(int64_t deadline)
{
	int64_t left;

	if (deadline < 0)
		return -1;
	left = deadline - squib_uffd_now_ms();
	return left <= 0 ? 0 : left > INT_MAX ? INT_MAX : (int)left;
}

/* Wait for events on fd until deadline: 0 ready, SQUIB_E_IO (ETIMEDOUT or poll's errno). */
int squib_uffd_wait(int fd, short events, int64_t deadline, const char *what,
		    struct squib_error_detail *d)
{
	for (;;) {
		struct pollfd p = {.fd = fd, .events = events};
		int n = poll(&p, 1, squib_uffd_left_ms(deadline));

		if (n > 0)
			return 0;
		if (n == 0)
			return squib_uffd_fail_io(d, ETIMEDOUT, "timed out %s", what);
		if (errno != EINTR)
			return squib_fail_errno(d, SQUIB_E_IO, errno);
	}
}

/* ---- receive --------------------------------------------------------------------- */

int squib_uffd_rx_init(struct squib_uffd_rx *x, struct squib_error_detail *d)
{
	memset(x, 0, sizeof(*x));
	if (!(x->buf = malloc(SQUIB_UFFD_HANDSHAKE_MAX + 1)))
		return squib_fail(d, SQUIB_E_NOMEM);
	return 0;
}

void squib_uffd_rx_free(struct squib_uffd_rx *x)
{
	for (int i = 0; i < x->nfds; i++)
		close(x->fds[i]);
	free(x->buf);
	memset(x, 0, sizeof(*x));
}

static void take_fds(struct squib_uffd_rx *x, struct msghdr *mh)
{
	for (struct cmsghdr *c = CMSG_FIRSTHDR(mh); c; c = CMSG_NXTHDR(mh, c)) {
		size_t k;

		if (c->cmsg_level != SOL_SOCKET || c->cmsg_type != SCM_RIGHTS)
			continue;
		k = (c->cmsg_len - CMSG_LEN(0)) / sizeof(int);
		for (size_t i = 0; i < k; i++) {
			int fd;

			memcpy(&fd, CMSG_DATA(c) + i * sizeof(int), sizeof(fd));
			if (x->nfds < SQUIB_UFFD_RX_MAX_FDS) {
				x->fds[x->nfds++] = fd;
			} else {
				close(fd);
				x->extra++;
			}
		}
	}
	if (mh->msg_flags & MSG_CTRUNC)
		x->ctrunc = true;
}

/* One recvmsg; >0 bytes, 0 EOF, -1 nothing yet (EAGAIN/EINTR), else SQUIB_E_IO. */
static int rx_once(int fd, struct squib_uffd_rx *x, struct squib_error_detail *d)
{
	union {
		char b[CMSG_SPACE(SQUIB_UFFD_RX_MAX_FDS * sizeof(int))];
		struct cmsghdr align;
	} ctl;
	struct iovec iov = {x->buf + x->len, SQUIB_UFFD_HANDSHAKE_MAX + 1 - x->len};
	struct msghdr mh = {.msg_iov = &iov,
			    .msg_iovlen = 1,
			    .msg_control = ctl.b,
			    .msg_controllen = sizeof(ctl.b)};
	ssize_t n = recvmsg(fd, &mh, MSG_DONTWAIT | MSG_CMSG_CLOEXEC);

	if (n < 0)
		return errno == EAGAIN || errno == EINTR ? -1
							 : squib_fail_errno(d, SQUIB_E_IO, errno);
	take_fds(x, &mh);
	x->len += (size_t)n;
	return n > 0;
}

/* Do the bytes so far form a whole JSON value (valid or not)? Only a premature end says no. */
static bool complete(const struct squib_uffd_rx *x)
{
	json_error_t e;
	json_t *j = json_loadb(x->buf, x->len, 0, &e);

	if (j) {
		json_decref(j);
		return true;
	}
	return json_error_code(&e) != json_error_premature_end_of_input;
}

/*
 * EOF before a whole message. Nothing at all (no byte, no fd) is ECONNABORTED:
 * a connection that never was a handshake, such as another handler probing
 * whether the socket is live; a caller waiting for a VMM may simply go on.
 */
static int eof_error(const struct squib_uffd_rx *x, struct squib_error_detail *d)
{
	if (x->len || x->nfds || x->extra)
		return squib_fail_msg(d, SQUIB_E_ENCODING,
				      "uffd handshake: the VMM closed the socket in the middle of "
				      "the handshake");
	squib_fail_msg(d, SQUIB_E_IO,
		       "uffd handshake: the VMM closed the socket before the "
		       "handshake");
	if (d)
		d->os_errno = ECONNABORTED;
	return SQUIB_E_IO;
}

/* Could bytes [from, len) have completed a value? Only a closing bracket can; parsing the
 * whole buffer after every small read would be quadratic. */
static bool may_close(const struct squib_uffd_rx *x, size_t from)
{
	return memchr(x->buf + from, ']', x->len - from) ||
	       memchr(x->buf + from, '}', x->len - from);
}

/* A message is an array: a first byte that is neither '[' nor JSON whitespace already tells
 * (a client sending one garbage byte and keeping the socket open is answered now). Only the
 * new bytes [from, len) are looked at, until the first significant one is seen. */
static bool starts_wrong(struct squib_uffd_rx *x, size_t from)
{
	for (size_t i = from; i < x->len && !x->started; i++)
		if (!x->buf[i] || !strchr(" \t\r\n", x->buf[i])) {
			x->started = true;
			return x->buf[i] != '[';
		}
	return false;
}

int squib_uffd_rx_step(int fd, struct squib_uffd_rx *x, struct squib_error_detail *d)
{
	for (;;) {
		size_t from = x->len;
		int rc = rx_once(fd, x, d);

		if (rc == -1)
			return 0;
		if (rc < 0)
			return rc;
		/* At EOF, bytes that are no JSON at all get the parser's message, not "closed". */
		if (rc == 0)
			return x->len && complete(x) ? 1 : eof_error(x, d);
		if (x->len > SQUIB_UFFD_HANDSHAKE_MAX)
			return squib_fail_limit(d, SQUIB_UFFD_HANDSHAKE_MAX);
		if ((starts_wrong(x, from) || may_close(x, from)) && complete(x))
			return 1;
	}
}

static int gather(int fd, struct squib_uffd_rx *x, int64_t deadline, struct squib_error_detail *d)
{
	for (;;) {
		int rc = squib_uffd_wait(fd, POLLIN, deadline, "waiting for the uffd handshake", d);

		if (rc || (rc = squib_uffd_rx_step(fd, x, d)) < 0)
			return rc;
		if (rc == 1)
			return 0;
	}
}

/* A guest-unlikely, page-aligned address below every TASK_SIZE and above every mmap_min_addr. */
#define PROBE_ADDR (1ull << 30)

/*
 * The fd is asked, not named: UFFDIO_WAKE of one page succeeds only on an
 * initialised userfaultfd (it wakes nothing unless a fault waits on that
 * page, and one woken early just faults again). Everything else refuses it:
 * ENOTTY for most fds, EINVAL for an epoll fd and for a userfaultfd nobody
 * initialised - which UFFDIO_API then tells apart (it succeeds only there;
 * the fd is refused either way, since its sender registered nothing).
 */
static int check_is_uffd(int fd, struct squib_error_detail *d)
{
	struct uffdio_range r = {PROBE_ADDR, (uint64_t)sysconf(_SC_PAGESIZE)};
	struct uffdio_api api = {.api = UFFD_API};
	int e;

	if (ioctl(fd, UFFDIO_WAKE, &r) == 0)
		return 0;
	e = errno;
	if (e == ESRCH)
		return squib_fail_msg(d, SQUIB_E_ENCODING,
				      "uffd handshake: the userfaultfd's process has exited");
	if (e == EINVAL && ioctl(fd, UFFDIO_API, &api) == 0)
		return squib_fail_msg(d, SQUIB_E_ENCODING,
				      "uffd handshake: the userfaultfd received was never initialised "
				      "(UFFDIO_API), so it serves no memory");
	return squib_fail_msg(d, SQUIB_E_ENCODING,
			      "uffd handshake: the fd received is not a userfaultfd (UFFDIO_WAKE: %s)",
			      strerror(e));
}

static int check_fds(struct squib_uffd_rx *x, struct squib_error_detail *d)
{
	if (x->ctrunc)
		return squib_fail_msg(d, SQUIB_E_ENCODING,
				      "uffd handshake: control data truncated (MSG_CTRUNC)");
	if (x->nfds + x->extra == 0)
		return squib_fail_msg(d, SQUIB_E_ENCODING,
				      "uffd handshake: no userfaultfd received (SCM_RIGHTS)");
	if (x->nfds + x->extra > 1)
		return squib_fail_msg(d, SQUIB_E_ENCODING,
				      "uffd handshake: %d fds received, exactly one expected",
				      x->nfds + x->extra);
	return check_is_uffd(x->fds[0], d);
}

int squib_uffd_check_cred(int fd, uid_t uid_self, const uint32_t *allow, uint32_t n,
			  const char *who, pid_t *pid, uid_t *uid, struct squib_error_detail *d)
{
	struct ucred cr;
	socklen_t l = sizeof(cr);

	*pid = 0;
	*uid = (uid_t)-1;
	if (getsockopt(fd, SOL_SOCKET, SO_PEERCRED, &cr, &l))
		return squib_uffd_fail_io(d, errno, "SO_PEERCRED");
	*pid = cr.pid;
	*uid = cr.uid;
	if (cr.uid == uid_self)
		return 0;
	for (uint32_t i = 0; i < n; i++)
		if (cr.uid == allow[i])
			return 0;
	return squib_uffd_fail_why(d, EPERM, "%s (pid %d) runs as uid %u, not uid %u%s", who,
				   (int)cr.pid, (unsigned)cr.uid, (unsigned)uid_self,
				   n ? " or an allowed one" : "");
}

int squib_uffd_rx_finish(int conn_fd, struct squib_uffd_rx *x, struct squib_uffd_peer *out,
			 struct squib_error_detail *d)
{
	struct ucred cr;
	socklen_t l = sizeof(cr);
	int rc;

	memset(out, 0, sizeof(*out));
	out->conn_fd = out->uffd = -1;
	if (!(rc = squib_uffd_handshake_parse(x->buf, x->len, &out->mappings, &out->n, d)) &&
	    !(rc = check_fds(x, d)) && getsockopt(conn_fd, SOL_SOCKET, SO_PEERCRED, &cr, &l))
		rc = squib_fail_errno(d, SQUIB_E_IO, errno);
	if (rc) {
		free(out->mappings);
		out->mappings = NULL;
		out->n = 0;
		close(conn_fd);
		squib_uffd_rx_free(x);
		return rc;
	}
	out->conn_fd = conn_fd;
	out->uffd = x->fds[0];
	out->pid = cr.pid;
	x->nfds = 0; /* the uffd is out's now */
	squib_uffd_rx_free(x);
	return 0;
}

int squib_uffd_receive(int conn_fd, int timeout_ms, struct squib_uffd_peer *out,
		       struct squib_error_detail *d)
{
	int64_t deadline = timeout_ms < 0 ? squib_uffd_now_ms() + SQUIB_UFFD_RECV_TIMEOUT_MS
					  : squib_uffd_now_ms() + timeout_ms;
	struct squib_uffd_rx x;
	int rc;

	if (!out) {
		if (conn_fd >= 0)
			close(conn_fd);
		return squib_fail_msg(d, SQUIB_E_INVALID_ARGUMENT, "uffd receive: NULL argument");
	}
	memset(out, 0, sizeof(*out));
	out->conn_fd = out->uffd = -1;
	if (conn_fd < 0)
		return squib_fail_msg(d, SQUIB_E_INVALID_ARGUMENT, "uffd receive: no socket");
	if ((rc = squib_uffd_rx_init(&x, d))) {
		close(conn_fd);
		return rc;
	}
	if ((rc = gather(conn_fd, &x, deadline, d))) {
		squib_uffd_rx_free(&x);
		close(conn_fd);
		return rc;
	}
	return squib_uffd_rx_finish(conn_fd, &x, out, d);
}

int squib_uffd_accept(int listen_fd, int timeout_ms, struct squib_uffd_peer *out,
		      struct squib_error_detail *d)
{
	int64_t start = squib_uffd_now_ms();
	int64_t deadline = timeout_ms < 0 ? -1 : start + timeout_ms;

	if (!out || listen_fd < 0)
		return squib_fail_msg(d, SQUIB_E_INVALID_ARGUMENT, "uffd accept: bad argument");
	memset(out, 0, sizeof(*out));
	out->conn_fd = out->uffd = -1;
	for (;;) {
		int rc =
		    squib_uffd_wait(listen_fd, POLLIN, deadline, "waiting for a VMM to connect", d);
		pid_t pid;
		uid_t uid;
		int c;

		if (rc)
			return rc;

		c = accept4(listen_fd, NULL, NULL, SOCK_CLOEXEC | SOCK_NONBLOCK);
		if (c >= 0 &&
		    (rc = squib_uffd_check_cred(c, geteuid(), NULL, 0, "the VMM", &pid, &uid, d))) {
			close(c);
			return rc;
		}
		if (c >= 0)
			return squib_uffd_receive(
			    c, deadline < 0 ? -1 : squib_uffd_left_ms(deadline), out, d);
		if (errno != EAGAIN && errno != EINTR && errno != ECONNABORTED)
			return squib_fail_errno(d, SQUIB_E_IO, errno);
	}
}

void squib_uffd_peer_close(struct squib_uffd_peer *p)
{
	if (!p)
		return;
	if (p->conn_fd >= 0)
		close(p->conn_fd);
	if (p->uffd >= 0)
		close(p->uffd);
	free(p->mappings);
	memset(p, 0, sizeof(*p));
	p->conn_fd = p->uffd = -1;
}
