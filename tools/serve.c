/* SPDX-License-Identifier: Apache-2.0 */
/*
 * `squib-snapshot serve --socket PATH --mem MEMFILE [--state STATE] [--batch BYTES]`:
 * a page-fault handler for the Uffd backend (Firecracker's protocol). Accepts
 * one VMM, serves its faults from the memory file with the pager, and prints
 * statistics once the VMM hangs up (or on SIGINT/SIGTERM).
 */
#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <poll.h>
#include <signal.h>
#include <stdlib.h>
#include <string.h>
#include <sys/signalfd.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include <squib/input.h>
#include <squib/load.h>
#include <squib/memfile.h>
#include <squib/pager.h>
#include <squib/uffd_remote.h>
#include <squib/workset.h>

#include "cli.h"

#define SERVE_ACCEPT_MS 5000 /* from a pending connection to a received handshake */
#define SERVE_TICK_MS	200  /* how often a running pager's error is checked */
#define SERVE_MAX_BATCH (1ull << 30)

static void serve_usage(FILE *out)
{
	fprintf(out,
		"usage: squib-snapshot serve --socket PATH --mem MEMFILE [--state STATE]\n"
		"                            [--batch BYTES] [--mode on-demand|all]\n"
		"                            [--record-ws FILE] [--prefetch-ws FILE]\n\n"
		"A page-fault handler for a VMM's Uffd memory backend (Firecracker's protocol):\n"
		"listens on PATH, prints `listening on PATH`, accepts ONE VMM, receives its\n"
		"regions and userfaultfd, prints `serving pid N: K regions, M MiB`, and serves\n"
		"every missing-page fault from MEMFILE: pages the memory file's manifest lists\n"
		"as absent are installed as zero pages without a read; present runs are read\n"
		"and copied in batches. A memory file without a squib footer is served as a raw\n"
		"Firecracker memory file (every page read from the file).\n\n"
		"Runs until the VMM hangs up, or SIGINT/SIGTERM, then prints statistics.\n\n"
		"  --socket PATH   the AF_UNIX socket to listen on (a stale socket file there\n"
		"                  is replaced; the file is removed on exit)\n"
		"  --mem MEMFILE   the memory file to serve\n"
		"  --state STATE   check that STATE's memory section names MEMFILE (id and\n"
		"                  geometry); every handshake region must then match it\n"
		"  --batch BYTES   largest batch per fault (default 65536)\n"
		"  --mode on-demand  serve each fault as it comes (default)\n"
		"  --mode all      as soon as the VMM is connected, install every page in\n"
		"                  bulk (Firecracker's fault_all handler); faults that come\n"
		"                  first are still served on demand meanwhile\n"
		"  --record-ws FILE  at the end, write the pages the VMM faulted in (the\n"
		"                  working set, in fault order) to FILE\n"
		"  --prefetch-ws FILE  as soon as the VMM is connected, install FILE's working\n"
		"                  set (recorded on this memory file) in bulk; the rest stays\n"
		"                  on demand\n\n"
		"exit status: 0 served until the VMM hung up (or a signal); 1 bad usage, an\n"
		"unusable memory or state file, a refused handshake, or a read error.\n");
}

struct serve_args {
	const char *socket, *mem, *state, *record_ws, *prefetch_ws;
	uint64_t batch;
	bool all; /* --mode all */
};

static int parse_batch(const char *v, uint64_t *out)
{
	char *end;
	unsigned long long x;

	errno = 0;
	x = strtoull(v, &end, 10);
	if (errno || end == v || *end || v[0] == '-' || !x || x > SERVE_MAX_BATCH)
		return -1;
	*out = x;
	return 0;
}

static int bad_usage(const char *what)
{
	fprintf(stderr, "squib-snapshot: serve: %s\n", what);
	return -1;
}

static int parse_args(int argc, char **argv, struct serve_args *a)
{
	const char *v;

	memset(a, 0, sizeof(*a));
	for (int i = 1; i < argc; i++) {
		int r;

		if ((r = cli_option_value(argc, argv, &i, "--socket", &a->socket))) {
			if (r < 0)
				return bad_usage("--socket needs a PATH");
		} else if ((r = cli_option_value(argc, argv, &i, "--mem", &a->mem))) {
			if (r < 0)
				return bad_usage("--mem needs a MEMFILE");
		} else if ((r = cli_option_value(argc, argv, &i, "--state", &a->state))) {
			if (r < 0)
				return bad_usage("--state needs a STATE");
		} else if ((r = cli_option_value(argc, argv, &i, "--record-ws", &a->record_ws))) {
			if (r < 0)
				return bad_usage("--record-ws needs a FILE");
		} else if ((r = cli_option_value(argc, argv, &i, "--prefetch-ws",
						 &a->prefetch_ws))) {
			if (r < 0)
				return bad_usage("--prefetch-ws needs a FILE");
		} else if ((r = cli_option_value(argc, argv, &i, "--mode", &v))) {
			if (r > 0 && !strcmp(v, "all"))
				a->all = true;
			else if (r < 0 || strcmp(v, "on-demand"))
				return bad_usage("--mode is on-demand or all");
		} else if ((r = cli_option_value(argc, argv, &i, "--batch", &v))) {
			if (r < 0 || parse_batch(v, &a->batch))
				return bad_usage("--batch needs a byte count from 1 to 2^30");
		} else {
			fprintf(stderr, "squib-snapshot: serve: unknown argument '%s'\n", argv[i]);
			return -1;
		}
	}
	if (!a->socket || !a->mem)
		return bad_usage("--socket and --mem are required");
	return 0;
}

/* ---- the memory source: a squib memory file, or a raw Firecracker one ---------------- */

struct raw_source {
	int fd;
	uint64_t ps;
};

static bool raw_present(void *ctx, uint64_t page)
{
	(void)ctx;
	(void)page;
	return true; /* no manifest: every page is data */
}

static int raw_read(void *ctx, uint64_t first, uint64_t count, void *buf,
		    struct squib_error_detail *d)
{
	const struct raw_source *r = ctx;
	uint64_t len = count * r->ps, done = 0;

	while (done < len) {
		ssize_t n =
		    pread(r->fd, (char *)buf + done, len - done, (off_t)(first * r->ps + done));

		if (n < 0 && errno == EINTR)
			continue;
		if (n <= 0)
			return squib_fail_errno(d, SQUIB_E_MEMORY_IO, n ? errno : ENODATA);
		done += (uint64_t)n;
	}
	return 0;
}

static void raw_release(void *ctx)
{
	struct raw_source *r = ctx;

	if (r)
		close(r->fd);
	free(r);
}

static const struct squib_page_source_ops raw_ops = {raw_present, raw_read, raw_release};

/* Does the file end in a squib footer magic (valid or not)? Then it is no raw file. */
static bool has_squib_magic(int fd, uint64_t size)
{
	uint64_t magic = 0;

	if (size < SQUIB_MEMFILE_FOOTER_SIZE ||
	    pread(fd, &magic, sizeof(magic), (off_t)(size - SQUIB_MEMFILE_FOOTER_SIZE)) !=
		sizeof(magic))
		return false;
	return magic == SQUIB_MEMFILE_MAGIC || magic == SQUIB_MEMFILE_MAGIC_REBASING;
}

struct source {
	struct squib_memfile *m; /* NULL: raw */
	struct squib_page_source src;
	bool have_src;
	uint8_t id[SQUIB_MEMORY_ID_SIZE]; /* the memory file's (raw: zero) */
	struct squib_workset ws;	  /* --prefetch-ws */
};

static int raw_open(struct source *s, const char *path, int open_rc,
		    const struct squib_error_detail *open_d, struct squib_error_detail *d)
{
	uint64_t ps = (uint64_t)sysconf(_SC_PAGESIZE);
	struct raw_source *r;
	struct stat st;
	int fd = squib_input_open(path, O_RDONLY, SQUIB_E_MEMORY_IO, &st, NULL);

	/* Unreadable, a squib file that does not open, or another kind of squib file (a
	 * state file is no raw memory): report why it did not open. */
	if (open_rc == SQUIB_E_INVALID_PATH || fd < 0 || has_squib_magic(fd, (uint64_t)st.st_size)) {
		if (fd >= 0)
			close(fd);
		*d = *open_d;
		return open_rc;
	}
	if (!(r = calloc(1, sizeof(*r)))) {
		close(fd);
		return squib_fail(d, SQUIB_E_NOMEM);
	}
	*r = (struct raw_source){fd, ps};
	/* A partial last page is not RAM: Firecracker's files are whole pages. */
	s->src = (struct squib_page_source){&raw_ops, r, ps, (uint64_t)st.st_size / ps};
	s->have_src = true;
	return 0;
}

static int source_open(struct source *s, const char *path, struct squib_error_detail *d)
{
	struct squib_error_detail od;
	uint64_t hp = (uint64_t)sysconf(_SC_PAGESIZE);
	int rc;

	memset(s, 0, sizeof(*s));
	if ((rc = squib_memfile_open(path, &s->m, &od)))
		return raw_open(s, path, rc, &od, d);
	if (squib_memfile_manifest(s->m)->layout.page_size != hp)
		return squib_fail_msg(d, SQUIB_E_INVALID_ARGUMENT,
				      "the memory file's page size %" PRIu64
				      " is not the host page size %" PRIu64,
				      squib_memfile_manifest(s->m)->layout.page_size, hp);
	if ((rc = squib_page_source_file(s->m, &s->src, d)))
		return rc;
	s->have_src = true;
	memcpy(s->id, squib_memfile_manifest(s->m)->layout.id, sizeof(s->id));
	return 0;
}

/* Release what the pager has not taken over. */
static void source_close(struct source *s)
{
	if (s->have_src && s->src.ops->release)
		s->src.ops->release(s->src.ctx);
	squib_memfile_close(s->m);
	squib_workset_free(&s->ws);
	memset(s, 0, sizeof(*s));
}

/* --state: the state's memory section must describe this very file. */
static int check_state(const struct source *s, const char *state, struct squib_error_detail *d)
{
	struct squib_microvm_state st;
	int rc = squib_load_state_only(state, SQUIB_ARCH_ANY, &st, NULL, d);

	if (!rc && !st.memory)
		rc =
		    squib_fail_msg(d, SQUIB_E_PAIR_MISMATCH, "%.300s has no memory section", state);
	else if (!rc && !s->m)
		rc = squib_fail_msg(d, SQUIB_E_PAIR_MISMATCH,
				    "the memory file is a raw file (no squib footer): it cannot "
				    "be checked against %.300s",
				    state);
	else if (!rc)
		rc = squib_memfile_check_layout(s->m, st.memory, d);
	squib_state_free(&st);
	return rc;
}

/* ---- the handshake's regions against the source ---------------------------------------- */

static int check_region(const struct source *s, const struct squib_uffd_mapping *m, uint32_t i,
			struct squib_error_detail *d)
{
	uint64_t hp = (uint64_t)sysconf(_SC_PAGESIZE);
	uint64_t bytes = s->src.page_count * s->src.page_size;

	if (m->page_size != hp)
		return squib_fail_msg(d, SQUIB_E_INVALID_ARGUMENT,
				      "handshake region %u: page size %" PRIu64
				      " is not the host page size %" PRIu64 "%s",
				      i, m->page_size, hp,
				      m->page_size > hp ? ": hugepages are not supported" : "");
	if (m->offset > bytes || m->size > bytes - m->offset)
		return squib_fail_msg(d, SQUIB_E_PAIR_MISMATCH,
				      "handshake region %u: %" PRIu64 " bytes at offset %" PRIu64
				      " lie beyond the memory file's %" PRIu64 " bytes of RAM",
				      i, m->size, m->offset, bytes);
	return 0;
}

/* A squib memory file knows its regions: the handshake must describe exactly those. */
static int check_layout(const struct squib_memory_layout *l, const struct squib_uffd_peer *p,
			struct squib_error_detail *d)
{
	uint64_t off = 0;

	if (p->n != l->region_count)
		return squib_fail_msg(d, SQUIB_E_PAIR_MISMATCH,
				      "the handshake has %u regions, the memory file %u", p->n,
				      l->region_count);
	for (uint32_t i = 0; i < p->n; off += l->regions[i].size, i++)
		if (p->mappings[i].size != l->regions[i].size || p->mappings[i].offset != off)
			return squib_fail_msg(
			    d, SQUIB_E_PAIR_MISMATCH,
			    "handshake region %u: %" PRIu64 " bytes at offset %" PRIu64
			    "; the memory file's region %u is %" PRIu64 " bytes at offset %" PRIu64,
			    i, p->mappings[i].size, p->mappings[i].offset, i, l->regions[i].size,
			    off);
	return 0;
}

static int check_peer(const struct source *s, const struct squib_uffd_peer *p,
		      struct squib_error_detail *d)
{
	int rc;

	for (uint32_t i = 0; i < p->n; i++)
		if ((rc = check_region(s, &p->mappings[i], i, d)))
			return rc;
	return s->m ? check_layout(&squib_memfile_manifest(s->m)->layout, p, d) : 0;
}

/* ---- serving ---------------------------------------------------------------------------- */

/* SIGINT/SIGTERM as an fd: blocked before any thread starts, so every thread inherits the mask. */
static int signals_fd(void)
{
	sigset_t set;

	sigemptyset(&set);
	sigaddset(&set, SIGINT);
	sigaddset(&set, SIGTERM);
	if (sigprocmask(SIG_BLOCK, &set, NULL))
		return -1;
	return signalfd(-1, &set, SFD_CLOEXEC | SFD_NONBLOCK);
}

/* 1: a connection is pending; 0: a signal came first; SQUIB_E_IO. */
static int wait_connection(int lfd, int sfd, struct squib_error_detail *d)
{
	for (;;) {
		struct pollfd pf[2] = {{.fd = lfd, .events = POLLIN},
				       {.fd = sfd, .events = POLLIN}};

		if (poll(pf, 2, -1) < 0) {
			if (errno == EINTR)
				continue;
			return squib_fail_errno(d, SQUIB_E_IO, errno);
		}
		if (pf[1].revents)
			return 0;
		if (pf[0].revents)
			return 1;
	}
}

/* The VMM gone: hang-up, EOF, or the pager's ioctls finding its mm gone (ESRCH). */
static bool peer_gone(int conn, short revents)
{
	char junk[256];
	ssize_t n;

	if (revents & (POLLHUP | POLLERR | POLLRDHUP | POLLNVAL))
		return true;
	if (!(revents & POLLIN))
		return false;
	while ((n = recv(conn, junk, sizeof(junk), MSG_DONTWAIT)) > 0)
		; /* Firecracker sends nothing after the handshake: ignore stray bytes */
	return n == 0 || (errno != EAGAIN && errno != EINTR);
}

/* Serve until the VMM hangs up or a signal (0), or the pager fails (its error). */
static int wait_end(struct squib_pager *p, int conn, int sfd, const char **why,
		    struct squib_error_detail *d)
{
	for (;;) {
		struct pollfd pf[2] = {{.fd = conn, .events = POLLIN | POLLRDHUP},
				       {.fd = sfd, .events = POLLIN}};
		int n = poll(pf, 2, SERVE_TICK_MS), rc;

		if (n < 0 && errno != EINTR)
			return squib_fail_errno(d, SQUIB_E_IO, errno);
		if ((rc = squib_pager_error(p, d)) && d->os_errno != ESRCH)
			return rc;
		if (rc)
			*why = "the VMM exited"; /* its mm is gone: nothing left to serve */
		else if (n > 0 && pf[1].revents)
			*why = "signal";
		else if (n > 0 && peer_gone(conn, pf[0].revents))
			*why = "the VMM hung up";
		else
			continue;
		return 0;
	}
}

static void print_stats(const struct squib_pager *p, const char *why)
{
	struct squib_pager_stats st;

	squib_pager_stats(p, &st);
	printf("stopped: %s\n", why);
	printf("faults %" PRIu64 ", pages copied %" PRIu64 ", pages zeroed %" PRIu64
	       ", bytes read %" PRIu64 ", batches %" PRIu64 ", median %.1f us, p99 %.1f us\n",
	       st.faults, st.pages_copied, st.pages_zeroed, st.bytes_read, st.batches, st.median_us,
	       st.p99_us);
	fflush(stdout);
}

static int attach(struct source *s, struct squib_uffd_peer *peer, const struct serve_args *a,
		  struct squib_pager **p, struct squib_error_detail *d)
{
	struct squib_pager_options o = {.batch_bytes = a->batch, .record = a->record_ws != NULL};
	struct squib_pager_region *r = calloc(peer->n, sizeof(*r));
	int rc;

	if (!r)
		return squib_fail(d, SQUIB_E_NOMEM);
	for (uint32_t i = 0; i < peer->n; i++)
		r[i] = (struct squib_pager_region){
		    (void *)(uintptr_t)peer->mappings[i].base_host_virt_addr,
		    peer->mappings[i].size, peer->mappings[i].offset / s->src.page_size};
	/* The pager takes the uffd and the source, also on failure. */
	rc = squib_pager_attach(peer->uffd, r, peer->n, s->src, &o, p, d);
	peer->uffd = -1;
	s->have_src = false;
	free(r);
	return rc;
}

/*
 * --mode all: every page now, on this thread, while the pager thread keeps
 * serving the faults that come first. A failure (the VMM went away) is
 * reported; serving goes on until the hang-up is seen.
 */
static void fill_all(struct squib_pager *p)
{
	struct timespec t0, t1;
	struct squib_error_detail d;
	uint64_t n = 0;
	int rc;

	memset(&d, 0, sizeof(d));
	clock_gettime(CLOCK_MONOTONIC, &t0);
	rc = squib_pager_prefetch_all(p, &n, &d);
	clock_gettime(CLOCK_MONOTONIC, &t1);
	if (rc) {
		fflush(stdout);
		cli_error("serve --mode all", "the VMM's memory", rc, &d);
		return;
	}
	printf("installed all pages: %" PRIu64 " by this fill in %.1f ms\n", n,
	       (double)(t1.tv_sec - t0.tv_sec) * 1e3 + (double)(t1.tv_nsec - t0.tv_nsec) / 1e6);
	fflush(stdout);
}

/* --prefetch-ws: the set now, on this thread, as fill_all does for every page. */
static void prefetch_ws(struct squib_pager *p, const struct squib_workset *ws)
{
	struct squib_error_detail d;
	uint64_t n = 0;
	int rc;

	memset(&d, 0, sizeof(d));
	if ((rc = squib_pager_prefetch(p, ws->runs, ws->run_count, &n, &d))) {
		fflush(stdout);
		cli_error("serve --prefetch-ws", "the VMM's memory", rc, &d);
		return;
	}
	printf("prefetched the working set: %" PRIu64 " pages installed\n", n);
	fflush(stdout);
}

/* --record-ws: the pages the VMM faulted in, bound to the memory file (raw: unbound). */
static int record_ws(const struct squib_pager *p, const struct source *s, const char *path,
		     struct squib_error_detail *d)
{
	struct squib_workset ws;
	int rc = squib_pager_recorded(p, &ws, d);

	if (!rc) {
		memcpy(ws.memory_id, s->id, sizeof(ws.memory_id));
		rc = squib_workset_write(path, &ws, d);
	}
	if (!rc)
		printf("recorded working set: %" PRIu64 " runs, %" PRIu64 " pages -> %s\n",
		       ws.run_count, squib_workset_pages(&ws), path);
	squib_workset_free(&ws);
	return rc;
}

/* A signal waits in the signalfd (not read here): a long prefetch ends, wait_end reads it. */
static bool signal_pending(void *ctx)
{
	struct pollfd pfd = {.fd = *(const int *)ctx, .events = POLLIN};

	return poll(&pfd, 1, 0) > 0;
}

static int serve_peer(struct source *s, struct squib_uffd_peer *peer, const struct serve_args *a,
		      int sfd, struct squib_error_detail *d)
{
	struct squib_pager *p = NULL;
	const char *why = "";
	uint64_t bytes = 0;
	int rc;

	if ((rc = check_peer(s, peer, d)))
		return rc;
	for (uint32_t i = 0; i < peer->n; i++)
		bytes += peer->mappings[i].size;
	printf("serving pid %d: %u regions, %" PRIu64 " MiB\n", peer->pid, peer->n, bytes >> 20);
	fflush(stdout);
	if ((rc = attach(s, peer, a, &p, d)))
		return rc;
	squib_pager_set_prefetch_stop(p, signal_pending, &sfd);
	if (a->prefetch_ws)
		prefetch_ws(p, &s->ws);
	if (a->all)
		fill_all(p);
	rc = wait_end(p, peer->conn_fd, sfd, &why, d);
	squib_pager_stop(p);
	if (!rc)
		print_stats(p, why);
	if (!rc && a->record_ws)
		rc = record_ws(p, s, a->record_ws, d);
	squib_pager_free(p);
	return rc;
}

/* The first connection that hands over a uffd; 0 with peer->conn_fd -1 after a signal. */
static int accept_vmm(int lfd, int sfd, struct squib_uffd_peer *peer, struct squib_error_detail *d)
{
	for (;;) {
		int rc = wait_connection(lfd, sfd, d);

		if (rc <= 0) {
			peer->conn_fd = peer->uffd = -1;
			return rc;
		}
		rc = squib_uffd_accept(lfd, SERVE_ACCEPT_MS, peer, d);
		/* Closed without a byte (e.g. another serve probing the socket): not a VMM. */
		if (rc != SQUIB_E_IO || d->os_errno != ECONNABORTED)
			return rc;
	}
}

static int serve_on(int lfd, int sfd, struct source *s, const struct serve_args *a,
		    struct squib_error_detail *d)
{
	struct squib_uffd_peer peer;
	int rc = accept_vmm(lfd, sfd, &peer, d);

	if (rc)
		return rc;
	if (peer.conn_fd < 0) {
		printf("stopped: signal before a VMM connected\n");
		return 0;
	}
	rc = serve_peer(s, &peer, a, sfd, d);
	squib_uffd_peer_close(&peer);
	return rc;
}

static int serve(const struct serve_args *a, struct squib_error_detail *d, const char **what)
{
	struct source s;
	int lfd = -1, sfd, rc;

	*what = a->mem;
	if ((rc = source_open(&s, a->mem, d)))
		goto out;
	/* A set for another snapshot is refused before any VMM connects. */
	if (a->prefetch_ws) {
		*what = a->prefetch_ws;
		if ((rc = squib_workset_read(a->prefetch_ws, &s.ws, d)) ||
		    (rc = squib_workset_check_fits(&s.ws, s.src.page_size, s.src.page_count, s.id,
						   d)))
			goto out;
	}
	if (a->state) {
		*what = a->state;
		if ((rc = check_state(&s, a->state, d)))
			goto out;
	}
	*what = a->socket;
	if ((sfd = signals_fd()) < 0) {
		rc = squib_fail_errno(d, SQUIB_E_IO, errno);
		goto out;
	}
	if (!(rc = squib_uffd_listen(a->socket, &lfd, d))) {
		printf("listening on %s\n", a->socket);
		fflush(stdout);
		rc = serve_on(lfd, sfd, &s, a, d);
		close(lfd);
		unlink(a->socket);
	}
	close(sfd);
out:
	source_close(&s);
	return rc;
}

static int serve_run(int argc, char **argv)
{
	struct squib_error_detail d;
	struct serve_args a;
	const char *what;
	int rc;

	if (parse_args(argc, argv, &a)) {
		serve_usage(stderr);
		return CLI_EXIT_ERROR;
	}
	memset(&d, 0, sizeof(d));
	if ((rc = serve(&a, &d, &what))) {
		fflush(stdout);
		cli_error("serve", what, rc, &d);
		return CLI_EXIT_ERROR;
	}
	return CLI_EXIT_OK;
}

const struct cli_command cli_cmd_serve = {
    .name = "serve",
    .summary = "serve a VMM's guest-memory faults over its userfaultfd (Firecracker's Uffd "
	       "handshake)",
    .run = serve_run,
    .usage = serve_usage,
};
