/* SPDX-License-Identifier: Apache-2.0 */
/*
 * VMM side of the Uffd backend (squib/uffd_remote.h): register the guest
 * memory with a userfaultfd, hand it to an external page-fault handler with
 * Firecracker's handshake, and watch that handler so that its death becomes
 * an error instead of a guest hung on its next missing page.
 */
#include <squib/uffd_remote.h>

#include <errno.h>
#include <inttypes.h>
#include <linux/userfaultfd.h>
#include <poll.h>
#include <pthread.h>
#include <stdbool.h>
#include <stdlib.h>
#include <string.h>
#include <sys/eventfd.h>
#include <sys/ioctl.h>
#include <sys/socket.h>
#include <sys/syscall.h>
#include <sys/un.h>
#include <time.h>
#include <unistd.h>

#include "uffd.h"
#include "uffd_remote_internal.h"

/* Linux 6.1 headers have it, older libcs may not. */
#ifndef SYS_pidfd_open
#define SYS_pidfd_open 434
#endif
#ifndef POLLRDHUP
#define POLLRDHUP 0x2000
#endif

#define DEFAULT_CONNECT_MS 2000u
#define RETRY_NS	   (10 * 1000 * 1000)
/* After a hang-up, how long to wait for the pidfd to say the process exited (better message). */
#define EXIT_GRACE_MS 100

struct squib_uffd_remote {
	struct squib_uffd_remote_region *regions;
	uint32_t n;
	int uffd, sock, pidfd, efd;
	int pid;
	bool running;
	pthread_t thread;
	void (*on_lost)(void *ctx, int code, const struct squib_error_detail *d);
	void *ctx;

	pthread_mutex_t lock; /* guards err and err_detail */
	int err;
	struct squib_error_detail err_detail;
};

/* ---- set-up ---------------------------------------------------------------------- */

static int check_geometry(const struct squib_uffd_remote_region *r, uint32_t n, uint64_t ps,
			  struct squib_error_detail *d)
{
	uint64_t hp = (uint64_t)sysconf(_SC_PAGESIZE);

	if (!r || !n || n > SQUIB_UFFD_MAX_REGIONS)
		return squib_fail_msg(d, SQUIB_E_INVALID_ARGUMENT,
				      "uffd remote: %u regions (1 to %u allowed)", r ? n : 0,
				      SQUIB_UFFD_MAX_REGIONS);
	if (ps != hp)
		return squib_fail_msg(d, SQUIB_E_INVALID_ARGUMENT,
				      "uffd remote: page size %" PRIu64 " is not the host page "
				      "size %" PRIu64 "%s",
				      ps, hp, ps > hp ? " (hugepages are not supported)" : "");
	for (uint32_t i = 0; i < n; i++)
		if (!r[i].host || (uintptr_t)r[i].host % ps || !r[i].size || r[i].size % ps ||
		    r[i].offset % ps)
			return squib_fail_msg(d, SQUIB_E_INVALID_ARGUMENT,
					      "uffd remote: region %u is not page-aligned", i);
	return 0;
}

static int handshake_json(const struct squib_uffd_remote_region *r, uint32_t n, uint64_t ps,
			  char **json, size_t *len, struct squib_error_detail *d)
{
	struct squib_uffd_mapping *m = calloc(n, sizeof(*m));
	int rc;

	if (!m)
		return squib_fail(d, SQUIB_E_NOMEM);
	for (uint32_t i = 0; i < n; i++)
		m[i] = (struct squib_uffd_mapping){(uint64_t)(uintptr_t)r[i].host, r[i].size,
						   r[i].offset, ps};
	rc = squib_uffd_handshake_encode(m, n, json, len, d);
	free(m);
	return rc;
}

static int register_regions(struct squib_uffd_remote *u, struct squib_error_detail *d)
{
	struct uffdio_api api = {.api = UFFD_API, .features = UFFD_FEATURE_EVENT_REMOVE};

	/* Not user-mode-only: KVM's get_user_pages faults are kernel-mode. */
	if ((u->uffd = squib_uffd_open(false)) < 0)
		return squib_uffd_fail_io(d, errno, "uffd remote: userfaultfd");
	if (ioctl(u->uffd, UFFDIO_API, &api))
		return squib_uffd_fail_io(d, errno, "uffd remote: UFFDIO_API");
	if (!(api.features & UFFD_FEATURE_EVENT_REMOVE))
		return squib_uffd_fail_io(d, EOPNOTSUPP, "uffd remote: UFFD_FEATURE_EVENT_REMOVE");
	for (uint32_t i = 0; i < u->n; i++) {
		struct uffdio_register reg = {
		    .range = {(uint64_t)(uintptr_t)u->regions[i].host, u->regions[i].size},
		    .mode = UFFDIO_REGISTER_MODE_MISSING};

		if (ioctl(u->uffd, UFFDIO_REGISTER, &reg))
			return squib_uffd_fail_io(d, errno, "uffd remote: registering region %u",
						  i);
	}
	return 0;
}

static void unregister_regions(struct squib_uffd_remote *u)
{
	/* Unregistering wakes every thread still blocked on a missing page. */
	for (uint32_t i = 0; u->uffd >= 0 && i < u->n; i++) {
		struct uffdio_range r = {(uint64_t)(uintptr_t)u->regions[i].host,
					 u->regions[i].size};

		ioctl(u->uffd, UFFDIO_UNREGISTER, &r);
	}
}

/* A handler still starting has no socket yet, or does not listen yet: retry until the deadline. */
static bool retryable(int e)
{
	return e == ENOENT || e == ECONNREFUSED || e == EAGAIN || e == EINTR;
}

static int connect_fail(const char *path, int e, struct squib_error_detail *d)
{
	if (e == ENOENT)
		return squib_fail_msg(d, SQUIB_E_INVALID_PATH, "no uffd handler socket at %.400s",
				      path);
	if (e == ECONNREFUSED)
		return squib_fail_msg(d, SQUIB_E_INVALID_PATH,
				      "no uffd handler listens on %.400s (connection refused)",
				      path);
	if (e == EAGAIN)
		return squib_uffd_fail_io(d, ETIMEDOUT,
					  "uffd handler at %.400s accepts no "
					  "connection",
					  path);
	return squib_uffd_fail_io(d, e, "connecting to the uffd handler at %.400s", path);
}

static int connect_handler(struct squib_uffd_remote *u, const char *path, int64_t deadline,
			   struct squib_error_detail *d)
{
	struct sockaddr_un sa;
	int rc;

	if ((rc = squib_uffd_sockaddr(path, &sa, d)))
		return rc;
	for (;;) {
		int s = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC | SOCK_NONBLOCK, 0), e;
		struct timespec pause = {0, RETRY_NS};

		if (s < 0)
			return squib_uffd_fail_io(d, errno, "uffd remote: socket");
		if (!connect(s, (const struct sockaddr *)&sa, sizeof(sa))) {
			u->sock = s;
			return 0;
		}
		e = errno;
		close(s);
		if (!retryable(e) || squib_uffd_left_ms(deadline) == 0)
			return connect_fail(path, e, d);
		nanosleep(&pause, NULL);
	}
}

/* The JSON with the uffd as SCM_RIGHTS on its first bytes, the rest as the socket takes it. */
static int send_handshake(struct squib_uffd_remote *u, const char *json, size_t len,
			  int64_t deadline, struct squib_error_detail *d)
{
	union {
		char b[CMSG_SPACE(sizeof(int))];
		struct cmsghdr align;
	} ctl;
	size_t off = 0;

	while (off < len) {
		struct iovec iov = {(char *)json + off, len - off};
		struct msghdr mh = {.msg_iov = &iov, .msg_iovlen = 1};
		ssize_t n;
		int rc;

		if (!off) {
			struct cmsghdr *c;

			memset(&ctl, 0, sizeof(ctl));
			mh.msg_control = ctl.b;
			mh.msg_controllen = sizeof(ctl.b);
			c = CMSG_FIRSTHDR(&mh);
			c->cmsg_level = SOL_SOCKET;
			c->cmsg_type = SCM_RIGHTS;
			c->cmsg_len = CMSG_LEN(sizeof(int));
			memcpy(CMSG_DATA(c), &u->uffd, sizeof(int));
		}
		if ((n = sendmsg(u->sock, &mh, MSG_NOSIGNAL)) > 0) {
			off += (size_t)n;
			continue;
		}
		if (n == 0 || (errno != EAGAIN && errno != EINTR))
			return squib_uffd_fail_io(d, n ? errno : EPIPE,
						  "sending the uffd handshake");
		if ((rc = squib_uffd_wait(u->sock, POLLOUT, deadline, "sending the uffd handshake",
					  d)))
			return rc;
	}
	return 0;
}

/*
 * Who listens there gets the VMM's guest memory with the uffd, so it is
 * checked before the uffd is sent: a socket someone else bound at the path
 * (a shared /tmp, a directory others can write) must not receive it. Trusted:
 * the VMM's own effective uid, root (who could read the memory anyway), and
 * the options' handler_uids.
 */
static int learn_peer(struct squib_uffd_remote *u, const char *path,
		      const struct squib_uffd_remote_options *o, struct squib_error_detail *d)
{
	uint32_t allow[SQUIB_UFFD_MAX_ALLOW_UIDS + 1] = {0};
	uint32_t n = o ? o->handler_uid_count : 0;
	struct squib_error_detail e;
	pid_t pid;
	uid_t uid;
	int rc;

	if (n)
		memcpy(allow + 1, o->handler_uids, n * sizeof(allow[0]));
	rc = squib_uffd_check_cred(u->sock, geteuid(), allow, n + 1, "the uffd handler", &pid, &uid,
				   &e);
	if (rc && e.os_errno == EPERM)
		return squib_fail_msg(d, SQUIB_E_INVALID_PATH,
				      "%.300s: the uffd is not sent to %.180s", e.msg, path);
	if (rc) {
		if (d)
			*d = e;
		return rc;
	}
	u->pid = pid;
	/* No pidfd (old kernel, or the pid already gone): the socket's hang-up still tells. */
	if (u->pid > 0)
		u->pidfd = (int)syscall(SYS_pidfd_open, (pid_t)u->pid, 0);
	return 0;
}

/* ---- the watcher ------------------------------------------------------------------ */

static void lost(struct squib_uffd_remote *u, bool exited)
{
	struct squib_error_detail det;
	bool first;

	squib_fail_msg(&det, SQUIB_E_MEMORY_IO,
		       "uffd page-fault handler (pid %d) %s: guest memory can no longer be served",
		       u->pid, exited ? "exited" : "closed its socket");
	det.os_errno = exited ? ESRCH : EPIPE;
	pthread_mutex_lock(&u->lock);
	first = !u->err;
	if (first) {
		u->err = SQUIB_E_MEMORY_IO;
		u->err_detail = det;
	}
	pthread_mutex_unlock(&u->lock);
	if (first && u->on_lost)
		u->on_lost(u->ctx, SQUIB_E_MEMORY_IO, &det);
}

/* Read and drop whatever the handler sent (Firecracker's handlers send nothing); true at EOF. */
static bool drain_eof(int sock)
{
	char junk[512];

	for (;;) {
		ssize_t n = recv(sock, junk, sizeof(junk), MSG_DONTWAIT);

		if (n > 0)
			continue;
		if (n == 0)
			return true;
		return errno != EAGAIN && errno != EINTR;
	}
}

/* After a hang-up: did the process exit too (a dying process closes its fds first)? */
static bool exited_soon(int pidfd)
{
	struct pollfd p = {.fd = pidfd, .events = POLLIN};

	return pidfd >= 0 && poll(&p, 1, EXIT_GRACE_MS) > 0;
}

static void *watcher(void *arg)
{
	struct squib_uffd_remote *u = arg;

	for (;;) {
		struct pollfd pf[3] = {{.fd = u->efd, .events = POLLIN},
				       {.fd = u->pidfd, .events = POLLIN},
				       {.fd = u->sock, .events = POLLIN | POLLRDHUP}};
		int n = poll(pf, 3, -1);

		if (n < 0) {
			/* EINTR, or ENOMEM for a moment: the watcher must not give up. */
			struct timespec pause = {0, RETRY_NS};

			if (errno != EINTR)
				nanosleep(&pause, NULL);
			continue;
		}
		if (pf[0].revents)
			break;
		if (pf[1].revents) {
			lost(u, true);
			break;
		}
		if (pf[2].revents & (POLLHUP | POLLERR | POLLRDHUP | POLLNVAL) ||
		    ((pf[2].revents & POLLIN) && drain_eof(u->sock))) {
			lost(u, exited_soon(u->pidfd));
			break;
		}
	}
	return NULL;
}

/* ---- public ---------------------------------------------------------------------- */

static struct squib_uffd_remote *remote_new(const struct squib_uffd_remote_region *r, uint32_t n,
					    const struct squib_uffd_remote_options *opts)
{
	struct squib_uffd_remote *u = calloc(1, sizeof(*u));

	if (!u)
		return NULL;
	u->uffd = u->sock = u->pidfd = u->efd = -1;
	pthread_mutex_init(&u->lock, NULL);
	if (opts) {
		u->on_lost = opts->on_lost;
		u->ctx = opts->ctx;
	}
	if (!(u->regions = calloc(n, sizeof(*r)))) {
		squib_uffd_remote_free(u);
		return NULL;
	}
	memcpy(u->regions, r, n * sizeof(*r));
	u->n = n;
	return u;
}

static int launch(struct squib_uffd_remote *u, struct squib_error_detail *d)
{
	int rc;

	if ((u->efd = eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK)) < 0)
		return squib_uffd_fail_io(d, errno, "uffd remote: eventfd");
	if ((rc = pthread_create(&u->thread, NULL, watcher, u)))
		return squib_uffd_fail_io(d, rc, "uffd remote: starting the watcher");
	u->running = true;
	return 0;
}

int squib_uffd_remote_start(const char *socket_path, const struct squib_uffd_remote_region *r,
			    uint32_t n, uint64_t page_size,
			    const struct squib_uffd_remote_options *opts,
			    struct squib_uffd_remote **out, struct squib_error_detail *d)
{
	uint32_t ms =
	    opts && opts->connect_timeout_ms ? opts->connect_timeout_ms : DEFAULT_CONNECT_MS;
	int64_t deadline = squib_uffd_now_ms() + ms;
	struct squib_uffd_remote *u;
	char *json = NULL;
	size_t len = 0;
	int rc;

	if (!out || !socket_path)
		return squib_fail_msg(d, SQUIB_E_INVALID_ARGUMENT, "uffd remote: NULL argument");
	if (opts && (opts->handler_uid_count > SQUIB_UFFD_MAX_ALLOW_UIDS ||
		     (opts->handler_uid_count && !opts->handler_uids)))
		return squib_fail_msg(d, SQUIB_E_INVALID_ARGUMENT,
				      "uffd remote: handler_uids: NULL or more than %u",
				      SQUIB_UFFD_MAX_ALLOW_UIDS);
	*out = NULL;
	if ((rc = check_geometry(r, n, page_size, d)) ||
	    (rc = handshake_json(r, n, page_size, &json, &len, d)))
		return rc;
	if (!(u = remote_new(r, n, opts))) {
		free(json);
		return squib_fail(d, SQUIB_E_NOMEM);
	}
	if (!(rc = register_regions(u, d)) &&
	    !(rc = connect_handler(u, socket_path, deadline, d)) &&
	    !(rc = learn_peer(u, socket_path, opts, d)) &&
	    !(rc = send_handshake(u, json, len, deadline, d)))
		rc = launch(u, d);
	free(json);
	if (rc) {
		squib_uffd_remote_free(u);
		return rc;
	}
	*out = u;
	return 0;
}

int squib_uffd_remote_error(const struct squib_uffd_remote *cu, struct squib_error_detail *d)
{
	struct squib_uffd_remote *u = (struct squib_uffd_remote *)cu;
	int err;

	if (!u)
		return squib_fail_msg(d, SQUIB_E_INVALID_ARGUMENT, "uffd remote: NULL");
	pthread_mutex_lock(&u->lock);
	err = u->err;
	if (err && d)
		*d = u->err_detail;
	pthread_mutex_unlock(&u->lock);
	return err;
}

int squib_uffd_remote_peer_pid(const struct squib_uffd_remote *u)
{
	return u ? u->pid : 0;
}

static void close_fd(int fd)
{
	if (fd >= 0)
		close(fd);
}

void squib_uffd_remote_free(struct squib_uffd_remote *u)
{
	if (!u)
		return;
	if (u->running) {
		uint64_t one = 1;

		while (write(u->efd, &one, sizeof(one)) < 0 && errno == EINTR)
			;
		pthread_join(u->thread, NULL);
	}
	unregister_regions(u);
	close_fd(u->uffd);
	close_fd(u->sock); /* the handler sees EOF: the VMM is done */
	close_fd(u->pidfd);
	close_fd(u->efd);
	pthread_mutex_destroy(&u->lock);
	free(u->regions);
	free(u);
}
