/* SPDX-License-Identifier: Apache-2.0 */
/*
 * Handler side for a long-running page-fault handler (squib/uffd_remote.h,
 * "several connections at once"): one bad, silent or foreign client must
 * neither stop the server nor delay the real VMM. Every connection is
 * accepted at once, its peer's uid checked (SO_PEERCRED) before a byte is
 * read, and its handshake gathered without blocking next to the others', each
 * with its own deadline; the first complete and valid one wins, every other
 * ending is reported and the server goes on.
 */
#include <squib/uffd_remote.h>

#include <errno.h>
#include <poll.h>
#include <stdbool.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <unistd.h>

#include "uffd_remote_internal.h"

struct pending {
	int fd;
	pid_t pid;
	uid_t uid;
	int64_t deadline;
	struct squib_uffd_rx rx;
};

struct squib_uffd_server {
	int lfd;
	char *path;
	dev_t dev; /* of the socket file this server bound: only that one is removed */
	ino_t ino;
	uid_t self;
	uint32_t allow[SQUIB_UFFD_MAX_ALLOW_UIDS];
	uint32_t nallow, timeout_ms, max_pending, mode;
	int (*check)(void *ctx, const struct squib_uffd_peer *p, struct squib_error_detail *d);
	void (*on_refused)(void *ctx, const struct squib_uffd_refusal *r);
	void *ctx;
	struct pending *p; /* oldest first */
	uint32_t np;
	struct pollfd *pf; /* stop fd, listening socket, then p[] */
};

static void report(struct squib_uffd_server *s, pid_t pid, uid_t uid, int code,
		   const struct squib_error_detail *d)
{
	struct squib_uffd_refusal r = {(int)pid, (uint32_t)uid, code, d};

	if (s->on_refused)
		s->on_refused(s->ctx, &r);
}

/* Close pending connection i and forget it; report why unless code is 0. */
static void drop(struct squib_uffd_server *s, uint32_t i, int code,
		 const struct squib_error_detail *d)
{
	struct pending *p = &s->p[i];

	if (code)
		report(s, p->pid, p->uid, code, d);
	close(p->fd);
	squib_uffd_rx_free(&p->rx);
	memmove(p, p + 1, (s->np - i - 1) * sizeof(*p));
	s->np--;
}

/* A connection with nothing to say in time: the others must not wait for it. */
static void expire(struct squib_uffd_server *s)
{
	int64_t now = squib_uffd_now_ms();
	struct squib_error_detail d;

	for (uint32_t i = 0; i < s->np;)
		if (s->p[i].deadline <= now) {
			squib_uffd_fail_why(&d, ETIMEDOUT, "no uffd handshake within %u ms",
					    s->timeout_ms);
			drop(s, i, d.code, &d);
		} else {
			i++;
		}
}

/* Take one accepted connection: its uid first, then room among the pending ones. */
static void admit(struct squib_uffd_server *s, int c)
{
	struct squib_error_detail d;
	struct pending p = {.fd = c};
	int rc =
	    squib_uffd_check_cred(c, s->self, s->allow, s->nallow, "the peer", &p.pid, &p.uid, &d);

	if (!rc)
		rc = squib_uffd_rx_init(&p.rx, &d);
	if (rc) {
		report(s, p.pid, p.uid, rc, &d);
		close(c);
		return;
	}
	if (s->np == s->max_pending) {
		squib_uffd_fail_why(&d, EMFILE,
				    "more than %u connections without a handshake: the oldest is "
				    "dropped",
				    s->max_pending);
		drop(s, 0, d.code, &d);
	}
	p.deadline = squib_uffd_now_ms() + s->timeout_ms;
	s->p[s->np++] = p;
}

/* Connections taken per wake-up: a flood must not keep the loop from its stop fd. */
#define ACCEPT_BURST 256

/* Accept what is waiting (the socket is non-blocking). 0, or SQUIB_E_IO. */
static int accept_all(struct squib_uffd_server *s, struct squib_error_detail *d)
{
	for (int k = 0; k < ACCEPT_BURST; k++) {
		int c = accept4(s->lfd, NULL, NULL, SOCK_CLOEXEC | SOCK_NONBLOCK);

		if (c >= 0) {
			admit(s, c);
			continue;
		}
		if (errno == EAGAIN || errno == EINTR || errno == ECONNABORTED)
			return 0;
		/* Out of fds or memory for a moment: the pending ones may still finish. */
		if (errno == EMFILE || errno == ENFILE || errno == ENOBUFS || errno == ENOMEM)
			return 0;
		return squib_uffd_fail_io(d, errno, "accepting on %.400s", s->path);
	}
	return 0;
}

/*
 * Read what pending connection i has: 1 with *out filled when its handshake
 * is complete and valid (it leaves the pending list), else 0 (still pending,
 * or refused, reported and dropped).
 */
static int advance(struct squib_uffd_server *s, uint32_t i, struct squib_uffd_peer *out)
{
	struct squib_error_detail d;
	int rc = squib_uffd_rx_step(s->p[i].fd, &s->p[i].rx, &d);
	struct pending p = s->p[i];

	if (rc == 0)
		return 0;
	if (rc < 0) {
		/* Closed without a byte (another handler probing the socket): not a VMM. */
		bool probe = rc == SQUIB_E_IO && d.os_errno == ECONNABORTED;

		drop(s, i, probe ? 0 : rc, &d);
		return 0;
	}
	memmove(&s->p[i], &s->p[i + 1], (s->np - i - 1) * sizeof(p));
	s->np--;
	rc = squib_uffd_rx_finish(p.fd, &p.rx, out, &d);
	if (!rc && s->check && (rc = s->check(s->ctx, out, &d)))
		squib_uffd_peer_close(out);
	if (rc) {
		report(s, p.pid, p.uid, rc, &d);
		return 0;
	}
	return 1;
}

/* The poll timeout: until the nearest handshake deadline, or forever. */
static int next_timeout(const struct squib_uffd_server *s)
{
	int64_t first = -1;

	for (uint32_t i = 0; i < s->np; i++)
		if (first < 0 || s->p[i].deadline < first)
			first = s->p[i].deadline;
	return squib_uffd_left_ms(first);
}

static int poll_all(struct squib_uffd_server *s, int stop_fd, struct squib_error_detail *d)
{
	s->pf[0] = (struct pollfd){.fd = stop_fd, .events = POLLIN};
	s->pf[1] = (struct pollfd){.fd = s->lfd, .events = POLLIN};
	for (uint32_t i = 0; i < s->np; i++)
		s->pf[2 + i] = (struct pollfd){.fd = s->p[i].fd, .events = POLLIN};
	if (poll(s->pf, 2 + s->np, next_timeout(s)) >= 0 || errno == EINTR || errno == ENOMEM)
		return 0;
	return squib_fail_errno(d, SQUIB_E_IO, errno);
}

int squib_uffd_server_next(struct squib_uffd_server *s, int stop_fd, struct squib_uffd_peer *out,
			   struct squib_error_detail *d)
{
	if (!s || !out)
		return squib_fail_msg(d, SQUIB_E_INVALID_ARGUMENT, "uffd server: NULL argument");
	memset(out, 0, sizeof(*out));
	out->conn_fd = out->uffd = -1;
	for (;;) {
		uint32_t n = s->np;
		int rc = poll_all(s, stop_fd, d);

		if (rc)
			return rc;
		if (stop_fd >= 0 && s->pf[0].revents)
			return 0;
		/* Newest first, so that dropping one does not move the ones still to visit. */
		for (uint32_t i = n; i-- > 0;)
			if (s->pf[2 + i].revents && advance(s, i, out))
				return 0;
		expire(s);
		if (s->pf[1].revents && (rc = accept_all(s, d)))
			return rc;
	}
}

int squib_uffd_server_fd(const struct squib_uffd_server *s)
{
	return s ? s->lfd : -1;
}

/* Closed without sending a byte: a probe of whether the socket is live, never reported. */
static bool closed_silent(int fd, const struct squib_uffd_rx *x)
{
	char c;

	return !x->len && !x->nfds && !x->extra && recv(fd, &c, 1, MSG_PEEK | MSG_DONTWAIT) == 0;
}

void squib_uffd_server_refuse_all(struct squib_uffd_server *s, const char *why)
{
	const struct squib_uffd_rx none = {0};
	struct squib_error_detail busy, d;

	if (!s)
		return;
	squib_uffd_fail_why(&busy, EBUSY, "%.300s", why ? why : "refused");
	while (s->np)
		drop(s, 0, closed_silent(s->p[0].fd, &s->p[0].rx) ? 0 : busy.code, &busy);
	for (int k = 0; k < ACCEPT_BURST; k++) {
		pid_t pid;
		uid_t uid;
		int c = accept4(s->lfd, NULL, NULL, SOCK_CLOEXEC | SOCK_NONBLOCK);

		if (c < 0 && errno == EINTR)
			continue;
		if (c < 0)
			return; /* the rest waits for the caller's next poll */
		/* Who it was, and the first reason it cannot be served. */
		if (squib_uffd_check_cred(c, s->self, s->allow, s->nallow, "the peer", &pid, &uid,
					  &d))
			report(s, pid, uid, d.code, &d);
		else if (!closed_silent(c, &none))
			report(s, pid, uid, busy.code, &busy);
		close(c);
	}
}

static int check_options(const struct squib_uffd_server_options *o, struct squib_error_detail *d)
{
	if (o && o->allow_uid_count > SQUIB_UFFD_MAX_ALLOW_UIDS)
		return squib_fail_msg(d, SQUIB_E_INVALID_ARGUMENT,
				      "uffd server: %u allowed uids (at most %u)",
				      o->allow_uid_count, SQUIB_UFFD_MAX_ALLOW_UIDS);
	if (o && o->allow_uid_count && !o->allow_uids)
		return squib_fail_msg(d, SQUIB_E_INVALID_ARGUMENT, "uffd server: NULL allow_uids");
	if (o && o->socket_mode > 0777)
		return squib_fail_msg(d, SQUIB_E_INVALID_ARGUMENT,
				      "uffd server: socket_mode 0%o is not permission bits",
				      o->socket_mode);
	if (o && o->max_pending > SQUIB_UFFD_MAX_PENDING)
		return squib_fail_msg(d, SQUIB_E_INVALID_ARGUMENT,
				      "uffd server: max_pending %u (at most %u)", o->max_pending,
				      SQUIB_UFFD_MAX_PENDING);
	return 0;
}

static struct squib_uffd_server *server_new(const char *path,
					    const struct squib_uffd_server_options *o)
{
	struct squib_uffd_server *s = calloc(1, sizeof(*s));

	if (!s)
		return NULL;
	s->lfd = -1;
	s->self = geteuid();
	s->timeout_ms =
	    o && o->handshake_timeout_ms ? o->handshake_timeout_ms : SQUIB_UFFD_RECV_TIMEOUT_MS;
	s->max_pending = o && o->max_pending ? o->max_pending : SQUIB_UFFD_MAX_PENDING;
	s->mode = o && o->socket_mode ? o->socket_mode : 0600;
	if (o) {
		s->nallow = o->allow_uid_count;
		if (s->nallow)
			memcpy(s->allow, o->allow_uids, s->nallow * sizeof(s->allow[0]));
		s->check = o->check;
		s->on_refused = o->on_refused;
		s->ctx = o->ctx;
	}
	s->path = strdup(path);
	s->p = calloc(s->max_pending, sizeof(*s->p));
	s->pf = calloc(s->max_pending + 2, sizeof(*s->pf));
	if (!s->path || !s->p || !s->pf) {
		squib_uffd_server_close(s);
		return NULL;
	}
	return s;
}

int squib_uffd_server_open(const char *socket_path, const struct squib_uffd_server_options *o,
			   struct squib_uffd_server **out, struct squib_error_detail *d)
{
	struct squib_uffd_server *s;
	struct stat st;
	int rc;

	if (!out || !socket_path)
		return squib_fail_msg(d, SQUIB_E_INVALID_ARGUMENT, "uffd server: NULL argument");
	*out = NULL;
	if ((rc = check_options(o, d)))
		return rc;
	if (!(s = server_new(socket_path, o)))
		return squib_fail(d, SQUIB_E_NOMEM);
	if ((rc = squib_uffd_listen_mode(socket_path, s->mode, &s->lfd, d))) {
		squib_uffd_server_close(s);
		return rc;
	}
	/* Remember which file is ours: at close, a socket someone put there since stays. */
	if (!lstat(socket_path, &st)) {
		s->dev = st.st_dev;
		s->ino = st.st_ino;
	}
	*out = s;
	return 0;
}

void squib_uffd_server_close(struct squib_uffd_server *s)
{
	struct stat st;

	if (!s)
		return;
	while (s->np)
		drop(s, 0, 0, NULL);
	if (s->lfd >= 0) {
		close(s->lfd);
		if (s->path && !lstat(s->path, &st) && S_ISSOCK(st.st_mode) &&
		    st.st_dev == s->dev && st.st_ino == s->ino)
			unlink(s->path);
	}
	free(s->path);
	free(s->p);
	free(s->pf);
	free(s);
}
