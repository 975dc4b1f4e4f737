/* SPDX-License-Identifier: Apache-2.0 */
/*
 * squib/uffd_remote.h - guest memory served by another process over
 * userfaultfd: Firecracker's "Uffd" memory backend, both ends (Linux).
 *
 * The protocol (Firecracker's, so handlers written for it work unchanged):
 * the VMM maps anonymous guest memory, creates a userfaultfd (UFFDIO_API with
 * UFFD_FEATURE_EVENT_REMOVE), registers every region in MISSING mode,
 * connects to the handler's AF_UNIX stream socket and sends ONE message: a
 * JSON array with one object per region (docs/FORMAT.md, "Uffd handshake
 * message") and the uffd attached as SCM_RIGHTS. It keeps the socket open
 * while the VM lives and sends nothing else. The handler learns the VMM's pid
 * with SO_PEERCRED and resolves faults with UFFDIO_COPY / UFFDIO_ZEROPAGE on
 * the uffd (which act on the VMM's address space).
 *
 * Unlike Firecracker, the VMM side watches its handler: a watcher thread
 * polls the socket (hang-up) and a pidfd of the handler process (SO_PEERCRED
 * pid of the process that called listen()). When either fires, the loss is
 * recorded and on_lost called, so the VMM can stop its vCPUs with a clear
 * error instead of hanging forever on the next missing page.
 *
 * Thread-safety: the handshake codec is reentrant. A squib_uffd_remote is
 * started and freed by one owner thread; squib_uffd_remote_error and
 * squib_uffd_remote_peer_pid may be called from any thread (on_lost
 * included) before squib_uffd_remote_free. on_lost runs on the watcher
 * thread and must not call squib_uffd_remote_free (free joins that thread).
 * The handler-side calls use only their arguments: one thread per peer.
 */
#ifndef SQUIB_UFFD_REMOTE_H
#define SQUIB_UFFD_REMOTE_H

#include <squib/api.h>
#include <stddef.h>
#include <stdint.h>

#include <squib/error.h>

#ifdef __cplusplus
extern "C" {
#endif

/* ---- the handshake message ------------------------------------------------ */

/* One region as the handshake states it (Firecracker's GuestRegionUffdMapping). */
struct squib_uffd_mapping {
	uint64_t base_host_virt_addr; /* in the VMM's address space */
	uint64_t size;		      /* bytes */
	uint64_t offset;	      /* of the region's first byte in the memory file */
	uint64_t page_size;	      /* bytes: the backing page size */
};

#define SQUIB_UFFD_MAX_REGIONS	  256
#define SQUIB_UFFD_MAX_ALLOW_UIDS 64	/* uids trusted besides one's own, either side */
#define SQUIB_UFFD_HANDSHAKE_MAX  65536 /* bytes of JSON */

/*
 * The handshake JSON for m[0..n): compact, Firecracker's field order, with
 * page_size_kib (deprecated; holds bytes, as Firecracker writes it). The
 * mappings must pass the parser's checks. *json is malloc'd (free it), not
 * NUL-terminated in *len. SQUIB_E_INVALID_ARGUMENT, SQUIB_E_NOMEM.
 */
SQUIB_API int squib_uffd_handshake_encode(const struct squib_uffd_mapping *m, uint32_t n,
					  char **json, size_t *len, struct squib_error_detail *d);

/*
 * Strict parse of one handshake message (buf need not be NUL-terminated): a
 * JSON array of 1..SQUIB_UFFD_MAX_REGIONS objects, each with non-negative
 * integers base_host_virt_addr, size, offset, page_size (at most INT64_MAX);
 * page_size_kib optional and, if present, equal to page_size; other fields
 * ignored. page_size a power of two in [4 KiB, 1 GiB]; address, size and
 * offset multiples of it; size > 0; no range wraps; host ranges disjoint.
 * *out is malloc'd (free it) with *n entries; on failure *out is NULL and
 * *n 0. SQUIB_E_ENCODING naming the region and field (or the JSON error
 * position), SQUIB_E_SIZE_LIMIT_EXCEEDED beyond SQUIB_UFFD_HANDSHAKE_MAX
 * bytes, SQUIB_E_NOMEM.
 */
SQUIB_API int squib_uffd_handshake_parse(const char *buf, size_t len,
					 struct squib_uffd_mapping **out, uint32_t *n,
					 struct squib_error_detail *d);

/* ---- VMM side ---------------------------------------------------------------- */

/* One region of guest memory: private anonymous, page-aligned, not yet touched. */
struct squib_uffd_remote_region {
	void *host;
	uint64_t size;
	uint64_t offset; /* in the memory file: with squib's files, the running sum of sizes */
};

struct squib_uffd_remote_options {
	/* Bound on reaching the handler: connect is retried while the socket is
	 * missing or refuses (a handler still starting), then the message must be
	 * sent within what is left. 0: 2000 ms. */
	uint32_t connect_timeout_ms;
	/* Called once, from the watcher thread, when the handler is gone (socket
	 * hang-up, its pid exited). The VMM stops its vCPUs here (or soon after)
	 * and must not resume them: memory can no longer be served. May be NULL.
	 * A vCPU blocked on a missing page inside the kernel may not acknowledge
	 * a pause: a fault taken by kernel code (KVM's instruction emulator
	 * reading guest memory, as on this project's nested-PVM host) is
	 * interrupted by fatal signals only. Unregistering wakes it, but the
	 * access then completes on a zero page the snapshot never had. So first
	 * revoke the guest's access (the KVM runner's squib_kvm_vm_fail: vCPUs
	 * kicked and parked for good, RAM PROT_NONE), then wake the fault from
	 * another thread than this one (squib_uffd_remote_free joins the
	 * watcher; squib_guest_memory_release in squib/load.h): the access
	 * fails and the vCPU leaves KVM_RUN without running on. */
	void (*on_lost)(void *ctx, int code, const struct squib_error_detail *d);
	void *ctx;
	/* Handlers trusted with the uffd besides the VMM's own effective uid and
	 * root: the listener's uid (SO_PEERCRED) is checked before anything is
	 * sent. At most SQUIB_UFFD_MAX_ALLOW_UIDS. */
	const uint32_t *handler_uids;
	uint32_t handler_uid_count;
};

struct squib_uffd_remote;

/*
 * Create the uffd (kernel-mode faults included: KVM resolves guest faults
 * with get_user_pages), register r[0..n) in MISSING mode, connect to
 * socket_path, send the handshake with the uffd, learn the handler's pid and
 * start the watcher. page_size must be the host page size (anonymous memory;
 * hugepages are not supported). opts may be NULL. The VMM keeps its own copy
 * of the uffd only to unregister the regions at free time; it never reads it.
 * Errors: SQUIB_E_INVALID_ARGUMENT (geometry), SQUIB_E_INVALID_PATH (path too
 * long, no handler listening there within the timeout: the message names the
 * path; a handler running as an untrusted uid, see handler_uids: nothing is
 * sent), SQUIB_E_IO with the errno (userfaultfd, socket, send, timeout:
 * ETIMEDOUT), SQUIB_E_NOMEM. Nothing is left registered on failure.
 */
SQUIB_API int squib_uffd_remote_start(const char *socket_path,
				      const struct squib_uffd_remote_region *r, uint32_t n,
				      uint64_t page_size,
				      const struct squib_uffd_remote_options *opts,
				      struct squib_uffd_remote **out, struct squib_error_detail *d);

/* 0 while the handler is there, else the loss (SQUIB_E_MEMORY_IO; its detail
 * into d, may be NULL): "uffd page-fault handler (pid N) exited: ...". */
SQUIB_API int squib_uffd_remote_error(const struct squib_uffd_remote *r,
				      struct squib_error_detail *d);

/* The handler's pid (SO_PEERCRED: the process that called listen()). */
SQUIB_API int squib_uffd_remote_peer_pid(const struct squib_uffd_remote *r);

/*
 * Stop the watcher, unregister the regions (this wakes any thread blocked on
 * a missing page: after a loss it then reads zeros, so stop the vCPUs
 * first), close uffd and socket. The memory is not unmapped. NULL: no-op.
 */
SQUIB_API void squib_uffd_remote_free(struct squib_uffd_remote *r);

/* ---- handler side ------------------------------------------------------------- */

/*
 * A listening AF_UNIX stream socket at socket_path (close-on-exec,
 * non-blocking), its file created with mode 0600 whatever the umask (the
 * bind runs in a thread with its own umask; the process's is not touched). An existing file there is replaced only if it is a socket
 * nobody listens on (a stale one); a live socket or another kind of file is
 * SQUIB_E_INVALID_PATH. The caller unlinks the path when done.
 */
SQUIB_API int squib_uffd_listen(const char *socket_path, int *listen_fd,
				struct squib_error_detail *d);

/* What one VMM sent. */
struct squib_uffd_peer {
	int conn_fd; /* keep open while serving: its hang-up means the VMM is gone */
	int uffd;    /* the VMM's userfaultfd (set to -1 when handed to a pager) */
	int pid;     /* the VMM's pid (SO_PEERCRED) */
	uint32_t n;
	struct squib_uffd_mapping *mappings;
};

/* Bound on receiving the message after a connection when accept waits forever. */
#define SQUIB_UFFD_RECV_TIMEOUT_MS 5000

/*
 * Accept one VMM on listen_fd and receive its handshake: the peer must run
 * as this process's effective uid (SO_PEERCRED; else SQUIB_E_IO with EPERM,
 * before a byte is read); recvmsg until the bytes form complete JSON, then
 * exactly one SCM_RIGHTS fd must have come with them, and it must answer as
 * an initialised userfaultfd (UFFDIO_WAKE of one page). timeout_ms >= 0 bounds the whole call; < 0 waits for a
 * connection forever, then SQUIB_UFFD_RECV_TIMEOUT_MS for the message.
 * EINTR is retried. On failure nothing is left open and *out is zeroed.
 * Errors: SQUIB_E_IO (ETIMEDOUT, accept/recv errno; ECONNABORTED: "the VMM
 * closed the socket before the handshake", having sent nothing at all - a
 * caller waiting for a VMM may accept the next one), SQUIB_E_ENCODING (the
 * JSON; "no userfaultfd received"; more than one fd; control data
 * truncated; closed in the middle of the handshake),
 * SQUIB_E_SIZE_LIMIT_EXCEEDED, SQUIB_E_NOMEM.
 */
SQUIB_API int squib_uffd_accept(int listen_fd, int timeout_ms, struct squib_uffd_peer *out,
				struct squib_error_detail *d);

/* The same on an already connected socket (takes ownership of conn_fd). */
SQUIB_API int squib_uffd_receive(int conn_fd, int timeout_ms, struct squib_uffd_peer *out,
				 struct squib_error_detail *d);

/* Close the fds that are still >= 0, free the mappings; *p is left zeroed with
 * both fds -1 (closing twice is harmless). NULL: no-op. */
SQUIB_API void squib_uffd_peer_close(struct squib_uffd_peer *p);

/* ---- handler side: a server that one client cannot stop ------------------------ */

/*
 * For a long-running handler (`serve`): every connection is accepted at once
 * and its peer's uid checked with SO_PEERCRED before a byte is read (the
 * server's effective uid, or one of allow_uids); allowed connections gather
 * their handshakes side by side, without blocking, each with its own
 * deadline. The first complete handshake that passes the receive checks and
 * `check` is returned; every other connection that ends (refused uid,
 * garbage, no fd or not a userfaultfd, closed early, too slow, too many
 * pending) is closed and reported to on_refused, and the server goes on. A
 * connection closed without any byte is dropped silently (another handler
 * probing whether the socket is live).
 *
 * The socket file is created 0600 (or socket_mode) whatever the umask and
 * removed by squib_uffd_server_close if it is still the file this server
 * bound.
 *
 * Thread-safety: one thread uses a server; the callbacks run on it.
 */

#define SQUIB_UFFD_MAX_PENDING 64 /* connections gathering a handshake at once */

/* A connection the server refused. */
struct squib_uffd_refusal {
	int pid;      /* the peer's (SO_PEERCRED; 0 if unknown) */
	uint32_t uid; /* the peer's ((uint32_t)-1 if unknown) */
	int code;     /* SQUIB_E_*: why */
	const struct squib_error_detail *detail;
};

struct squib_uffd_server_options {
	/* From accept to the whole message, per connection. 0: SQUIB_UFFD_RECV_TIMEOUT_MS. */
	uint32_t handshake_timeout_ms;
	/* Peers allowed besides the server's effective uid (at most SQUIB_UFFD_MAX_ALLOW_UIDS). */
	const uint32_t *allow_uids;
	uint32_t allow_uid_count;
	/* Connections gathering at once (0: SQUIB_UFFD_MAX_PENDING, the most); one more
	 * drops the oldest, so a flood cannot keep a new VMM out. */
	uint32_t max_pending;
	/* The socket file's permission bits (0: 0600). Wider lets other users
	 * connect at all (e.g. 0666 for allow_uids when the server runs as root):
	 * the uid check is then what keeps the others out. */
	uint32_t socket_mode;
	/* The caller's own test of a received handshake (e.g. its regions against a
	 * memory file): non-zero refuses it (reported, then the server goes on). May be NULL. */
	int (*check)(void *ctx, const struct squib_uffd_peer *p, struct squib_error_detail *d);
	/* Told of every refused connection. May be NULL. */
	void (*on_refused)(void *ctx, const struct squib_uffd_refusal *r);
	void *ctx;
};

struct squib_uffd_server;

/* Listen on socket_path (squib_uffd_listen's rules). opts may be NULL.
 * SQUIB_E_INVALID_ARGUMENT, SQUIB_E_NOMEM, squib_uffd_listen's errors. */
SQUIB_API int squib_uffd_server_open(const char *socket_path,
				     const struct squib_uffd_server_options *opts,
				     struct squib_uffd_server **out, struct squib_error_detail *d);

/*
 * Wait for the first valid handshake: 0 with *out filled (close it with
 * squib_uffd_peer_close). When stop_fd (>= 0; e.g. a signalfd) becomes
 * readable first: 0 with out->conn_fd == -1 (stop_fd is not read). Other
 * connections stay pending for a later call. Errors (the listening socket
 * failing): SQUIB_E_IO, SQUIB_E_INVALID_ARGUMENT.
 */
SQUIB_API int squib_uffd_server_next(struct squib_uffd_server *s, int stop_fd,
				     struct squib_uffd_peer *out, struct squib_error_detail *d);

/* The listening fd, to poll while serving (readable: call squib_uffd_server_refuse_all). */
SQUIB_API int squib_uffd_server_fd(const struct squib_uffd_server *s);

/* Close every pending connection and every one waiting to be accepted, each
 * reported with `why` (EBUSY) - or its refused uid. */
SQUIB_API void squib_uffd_server_refuse_all(struct squib_uffd_server *s, const char *why);

/* Close everything; remove the socket file if it is still the one bound here. NULL: no-op. */
SQUIB_API void squib_uffd_server_close(struct squib_uffd_server *s);

#ifdef __cplusplus
}
#endif
#endif /* SQUIB_UFFD_REMOTE_H */
