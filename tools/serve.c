/* SPDX-License-Identifier: Apache-2.0 */
/*
 * `squib-snapshot serve --socket PATH --mem MEMFILE [--chain MEM]... [--state STATE] ...`:
 * a page-fault handler for the Uffd backend (Firecracker's protocol). Accepts
 * one VMM, serves its faults from the memory file (or a base + diffs chain)
 * with the pager, and prints statistics once the VMM hangs up (or on
 * SIGINT/SIGTERM).
 */
#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <libgen.h>
#include <poll.h>
#include <signal.h>
#include <stdlib.h>
#include <string.h>
#include <sys/signalfd.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include <squib/chain.h>
#include <squib/input.h>
#include <squib/load.h>
#include <squib/memfile.h>
#include <squib/pager.h>
#include <squib/store.h>
#include <squib/store_source.h>
#include <squib/uffd_remote.h>
#include <squib/workset.h>

#include "cli.h"

#define SERVE_TICK_MS	     200 /* how often a running pager's error is checked */
#define SERVE_MAX_BATCH	     (1ull << 30)
#define SERVE_MAX_TIMEOUT_MS 600000u
#define SERVE_MAX_CHAIN	     16

static void serve_usage(FILE *out)
{
	fprintf(
	    out,
	    "usage: squib-snapshot serve --socket PATH (--mem MEMFILE | --state STATE)\n"
	    "                            [--state STATE] [--chain MEM]...\n"
	    "                            [--batch BYTES] [--mode on-demand|all]\n"
	    "                            [--record-ws FILE] [--prefetch-ws FILE]\n"
	    "                            [--allow-uid UID]... [--handshake-timeout MS]\n"
	    "       squib-snapshot serve --socket PATH --from URL/ID [--cache DIR|none]\n"
	    "                            [--cache-size BYTES] [the options above but\n"
	    "                            --mem, --state and --chain]\n\n"
	    "A page-fault handler for a VMM's Uffd memory backend (Firecracker's protocol):\n"
	    "listens on PATH, prints `listening on PATH`, and serves ONE VMM: the first\n"
	    "connection that hands over a valid handshake (its regions and userfaultfd).\n"
	    "Every other connection (a peer of another uid, garbage, no fd or not a\n"
	    "userfaultfd, regions that do not fit MEMFILE, silence past the handshake\n"
	    "timeout, anyone connecting while a VMM is served) is refused with one line on\n"
	    "stderr, and serve goes on. It prints `serving pid N: K regions, M MiB`, and\n"
	    "serves every missing-page fault from MEMFILE: pages the memory file's manifest\n"
	    "lists as absent are installed as zero pages without a read; present runs are\n"
	    "read and copied in batches. A memory file without a squib footer is served as\n"
	    "a raw Firecracker memory file (every page read from the file).\n\n"
	    "Runs until the VMM hangs up, or SIGINT/SIGTERM, then prints statistics.\n\n"
	    "  --socket PATH   the AF_UNIX socket to listen on, created mode 0600 whatever\n"
	    "                  the umask (a stale socket file there is replaced; the file\n"
	    "                  is removed on exit)\n"
	    "  --mem MEMFILE   the memory file to serve (default with --state: STATE with\n"
	    "                  its last extension replaced by .mem)\n"
	    "  --state STATE   check that STATE's memory section names MEMFILE (id and\n"
	    "                  geometry); every handshake region must then match it\n"
	    "  --from URL/ID   serve image ID of the snapshot store at URL (s3://BUCKET/PREFIX,\n"
	    "                  file:///DIR or a directory; see push): chunks are fetched on\n"
	    "                  demand, checked against their SHA-256 names, and kept in the\n"
	    "                  host's chunk cache. A chunk that cannot be fetched (after the\n"
	    "                  retries) or fails its check ends serve with an error naming\n"
	    "                  it: the VMM's faults on it are never served (a stopped guest,\n"
	    "                  never wrong memory). --prefetch-ws fetches in parallel\n"
	    "  --cache DIR     the chunk cache (default $SQUIB_CACHE_DIR, else\n"
	    "                  $XDG_CACHE_HOME/squib-snapshot/chunks, else\n"
	    "                  ~/.cache/squib-snapshot/chunks); shared by every restore on\n"
	    "                  the host; `none`: no disk cache\n"
	    "  --cache-size BYTES  the cache's bound (default 4 GiB); least recently used\n"
	    "                  chunks are evicted\n"
	    "  --chain MEM     MEMFILE is a Diff: serve it over its older layers, read\n"
	    "                  lazily (the newest layer holding a page supplies it; a page\n"
	    "                  none holds is zero). The Full base first, then older diffs\n"
	    "                  oldest first, as restore --chain takes them; repeat it\n"
	    "  --batch BYTES   largest batch per fault (default 65536)\n"
	    "  --mode on-demand  serve each fault as it comes (default)\n"
	    "  --mode all      as soon as the VMM is connected, install every page in\n"
	    "                  bulk (Firecracker's fault_all handler); faults that come\n"
	    "                  first are still served on demand meanwhile\n"
	    "  --record-ws FILE  at the end, write the pages the VMM faulted in (the\n"
	    "                  working set, in fault order) to FILE\n"
	    "  --prefetch-ws FILE  as soon as the VMM is connected, install FILE's working\n"
	    "                  set (recorded on this memory file) in bulk; the rest stays\n"
	    "                  on demand\n"
	    "  --allow-uid UID  also serve VMMs running as UID (repeatable). By default\n"
	    "                  only serve's own uid is served; with --allow-uid the socket\n"
	    "                  is 0666 and every peer's uid (SO_PEERCRED) is checked\n"
	    "                  before a byte is read\n"
	    "  --handshake-timeout MS  how long a connection may take to send its\n"
	    "                  handshake (default 5000); a slow one delays no other\n\n"
	    "Every path is checked before listening. SIGINT/SIGTERM stop serve at any\n"
	    "point (also during --prefetch-ws or --mode all).\n\n"
	    "exit status: 0 served until the VMM hung up (or a signal); 2 the files do\n"
	    "not belong together (--state, --chain) or fail a CRC; 1 bad usage, an\n"
	    "unusable memory, state or working-set path, or a read error.\n");
}

struct serve_args {
	const char *socket, *mem, *state, *record_ws, *prefetch_ws;
	struct cli_from from;			/* --from, --cache, --cache-size */
	const char *chain[SERVE_MAX_CHAIN + 1]; /* --chain, oldest first; then --mem */
	size_t chain_len;
	uint64_t batch;
	bool all; /* --mode all */
	uint32_t allow[SQUIB_UFFD_MAX_ALLOW_UIDS];
	uint32_t nallow;
	uint32_t timeout_ms; /* 0: the library's default */
};

static int bad_usage(const char *what)
{
	fprintf(stderr, "squib-snapshot: serve: %s\n", what);
	return -1;
}

/* A decimal in [1, max] (min 0 allowed when zero_ok). */
static int parse_u64(const char *v, uint64_t max, bool zero_ok, uint64_t *out)
{
	char *end;
	unsigned long long x;

	errno = 0;
	x = strtoull(v, &end, 10);
	if (errno || end == v || *end || v[0] == '-' || (!x && !zero_ok) || x > max)
		return -1;
	*out = x;
	return 0;
}

/* --allow-uid, --handshake-timeout: 1 taken, 0 not these, -1 bad. */
static int parse_access(int argc, char **argv, int *i, struct serve_args *a)
{
	const char *v;
	uint64_t x;
	int r;

	if ((r = cli_option_value(argc, argv, i, "--allow-uid", &v))) {
		/* (uid_t)-1 means "no uid" to the kernel: never a peer's. */
		if (r < 0 || parse_u64(v, UINT32_MAX - 1, true, &x))
			return bad_usage("--allow-uid needs a uid (0 to 4294967294)");
		if (a->nallow == SQUIB_UFFD_MAX_ALLOW_UIDS)
			return bad_usage("--allow-uid: at most 64 uids");
		a->allow[a->nallow++] = (uint32_t)x;
		return 1;
	}
	if ((r = cli_option_value(argc, argv, i, "--handshake-timeout", &v))) {
		if (r < 0 || parse_u64(v, SERVE_MAX_TIMEOUT_MS, false, &x))
			return bad_usage("--handshake-timeout needs milliseconds from 1 to 600000");
		a->timeout_ms = (uint32_t)x;
		return 1;
	}
	return 0;
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
		} else if ((r = cli_option_value(argc, argv, &i, "--chain", &v))) {
			if (r < 0 || a->chain_len == SERVE_MAX_CHAIN)
				return bad_usage("--chain needs a MEM (at most 16)");
			a->chain[a->chain_len++] = v;
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
			if (r < 0 || parse_u64(v, SERVE_MAX_BATCH, false, &a->batch))
				return bad_usage("--batch needs a byte count from 1 to 2^30");
		} else if ((r = parse_access(argc, argv, &i, a))) {
			if (r < 0)
				return -1;
		} else if ((r = cli_from_option("serve", argc, argv, &i, &a->from))) {
			if (r < 0)
				return -1;
		} else {
			fprintf(stderr, "squib-snapshot: serve: unknown argument '%s'\n", argv[i]);
			return -1;
		}
	}
	if (a->from.ref && (a->mem || a->state || a->chain_len))
		return bad_usage("--from serves a store's image: no --mem, --state or --chain");
	if ((a->from.cache || a->from.cache_size) && !a->from.ref)
		return bad_usage("--cache and --cache-size go with --from");
	if (!a->socket || (!a->mem && !a->state && !a->from.ref))
		return bad_usage(
		    "--socket and --mem (or --state) are required (or --socket and --from)");
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
	struct squib_memfile *m;       /* the newest layer; NULL: raw */
	struct squib_chain *chain;     /* --chain: every layer */
	struct squib_store *store;     /* --from */
	struct squib_store_source *ss; /* --from: valid while the pager has src */
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
	if (open_rc == SQUIB_E_INVALID_PATH || fd < 0 ||
	    has_squib_magic(fd, (uint64_t)st.st_size)) {
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

static int from_open(struct source *s, const struct serve_args *a, struct squib_error_detail *d)
{
	uint64_t hp = (uint64_t)sysconf(_SC_PAGESIZE);
	int rc = cli_from_open(&a->from, &s->store, &s->src, &s->ss, d);

	if (rc)
		return rc;
	s->have_src = true;
	memcpy(s->id, squib_store_source_layout(s->ss)->id, sizeof(s->id));
	if (s->src.page_size != hp)
		return squib_fail_msg(d, SQUIB_E_INVALID_ARGUMENT,
				      "the image's page size %" PRIu64
				      " is not the host page size %" PRIu64,
				      s->src.page_size, hp);
	return 0;
}

static int source_open(struct source *s, const struct serve_args *a, struct squib_error_detail *d)
{
	struct squib_error_detail od;
	uint64_t hp = (uint64_t)sysconf(_SC_PAGESIZE);
	int rc;

	memset(s, 0, sizeof(*s));
	if (a->from.ref)
		return from_open(s, a, d);
	if ((rc = squib_memfile_open(a->mem, &s->m, &od)))
		return a->chain_len ? (*d = od, rc) : raw_open(s, a->mem, rc, &od, d);
	if (squib_memfile_manifest(s->m)->layout.page_size != hp)
		return squib_fail_msg(d, SQUIB_E_INVALID_ARGUMENT,
				      "the memory file's page size %" PRIu64
				      " is not the host page size %" PRIu64,
				      squib_memfile_manifest(s->m)->layout.page_size, hp);
	if (a->chain_len) /* the layers below --mem, then --mem: checked as one chain */
		rc = squib_chain_open(a->chain, a->chain_len + 1, &s->chain, d);
	if (!rc)
		rc = s->chain ? squib_page_source_chain(s->chain, &s->src, d)
			      : squib_page_source_file(s->m, &s->src, d);
	if (rc)
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
	squib_chain_free(s->chain);
	squib_memfile_close(s->m);
	squib_store_close(s->store); /* after the source: it reads through the store */
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

/* Is path the very file `other` names (NULL: no)? */
static bool same_file(const struct stat *st, const char *other)
{
	struct stat o;

	return other && !stat(other, &o) && o.st_dev == st->st_dev && o.st_ino == st->st_ino;
}

/*
 * --record-ws is written at the end of a session: a path that cannot be
 * written, or that names an input, is refused now rather than after the VMM
 * has run. (The set that --prefetch-ws read may be replaced: that is how a
 * set is refreshed.)
 */
static int check_output(const struct serve_args *a, struct squib_error_detail *d)
{
	const char *path = a->record_ws, *parent;
	char *dir = strdup(path);
	struct stat st;
	int e = 0;

	if (!dir)
		return squib_fail(d, SQUIB_E_NOMEM);
	if (!lstat(path, &st)) {
		if (!S_ISREG(st.st_mode))
			e = EISDIR; /* a directory, device, FIFO, socket or symlink */
		else if (same_file(&st, a->mem) || same_file(&st, a->state))
			e = EEXIST;
	} else if (errno != ENOENT) {
		e = errno;
	}
	/* The set is written next to its path and renamed over it. (dirname may return a
	 * static "." instead of cutting dir.) */
	parent = dirname(dir);
	if (!e && stat(parent, &st))
		e = errno;
	else if (!e && !S_ISDIR(st.st_mode))
		e = ENOTDIR;
	else if (!e && access(parent, W_OK | X_OK))
		e = errno;
	free(dir);
	if (e == EISDIR)
		return squib_fail_msg(d, SQUIB_E_INVALID_PATH, "exists and is not a regular file");
	if (e == EEXIST)
		return squib_fail_msg(d, SQUIB_E_INVALID_PATH,
				      "names an input of this serve (--mem or --state)");
	if (e)
		return squib_fail_msg(d, SQUIB_E_INVALID_PATH,
				      "cannot be written: its directory: %s", strerror(e));
	return 0;
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

/* The server's check of every handshake (a bad one is refused and serve goes on). */
static int check_peer(void *ctx, const struct squib_uffd_peer *p, struct squib_error_detail *d)
{
	const struct source *s = ctx;
	int rc;

	for (uint32_t i = 0; i < p->n; i++)
		if ((rc = check_region(s, &p->mappings[i], i, d)))
			return rc;
	if (s->ss)
		return check_layout(squib_store_source_layout(s->ss), p, d);
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

/* Serve until the VMM hangs up or a signal (0), or the pager fails (its error). Whoever
 * else connects meanwhile is refused at once: one VMM per serve. */
static int wait_end(struct squib_pager *p, const struct squib_uffd_peer *peer,
		    struct squib_uffd_server *srv, int sfd, const char **why,
		    struct squib_error_detail *d)
{
	char busy[64];

	snprintf(busy, sizeof(busy), "already serving pid %d", peer->pid);
	for (;;) {
		struct pollfd pf[3] = {{.fd = peer->conn_fd, .events = POLLIN | POLLRDHUP},
				       {.fd = sfd, .events = POLLIN},
				       {.fd = squib_uffd_server_fd(srv), .events = POLLIN}};
		int n = poll(pf, 3, SERVE_TICK_MS), rc;

		if (n < 0 && errno != EINTR)
			return squib_fail_errno(d, SQUIB_E_IO, errno);
		if ((rc = squib_pager_error(p, d)) && d->os_errno != ESRCH)
			return rc;
		if (n > 0 && pf[2].revents)
			squib_uffd_server_refuse_all(srv, busy);
		if (rc)
			*why = "the VMM exited"; /* its mm is gone: nothing left to serve */
		else if (n > 0 && pf[1].revents)
			*why = "signal";
		else if (n > 0 && peer_gone(peer->conn_fd, pf[0].revents))
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
 * --prefetch-ws, --mode all (Firecracker's fault_all): pages now, on this
 * thread, while the pager thread keeps serving the faults that come first. A
 * failure (the VMM went away) is reported; serving goes on until the hang-up
 * is seen. 1 done (*got pages in *ms), 0 stopped by a signal, -1 failed.
 */
static int install_pager(void *ctx, const struct squib_ws_run *runs, uint64_t n,
			 uint64_t *installed, struct squib_error_detail *d)
{
	return squib_pager_prefetch(ctx, runs, n, installed, d);
}

static int install(struct squib_pager *p, struct squib_store_source *ss,
		   const struct squib_ws_run *runs, uint64_t n, const char *cmd, uint64_t *got,
		   double *ms)
{
	struct timespec t0, t1;
	struct squib_error_detail d;
	bool stopped;
	int rc;

	memset(&d, 0, sizeof(d));
	clock_gettime(CLOCK_MONOTONIC, &t0);
	/* From a store: chunks fetched in parallel, each installed as it arrives. */
	rc = ss ? squib_store_source_prefetch(ss, runs, n, install_pager, p, got, &d)
		: squib_pager_prefetch(p, runs, n, got, &d);
	/* The pager asked signal_pending between chunks: a signal waits in the signalfd. */
	stopped = rc == SQUIB_E_IO && d.os_errno == ECANCELED;
	if (stopped)
		rc = 0;
	clock_gettime(CLOCK_MONOTONIC, &t1);
	*ms = (double)(t1.tv_sec - t0.tv_sec) * 1e3 + (double)(t1.tv_nsec - t0.tv_nsec) / 1e6;
	fflush(stdout);
	if (rc) {
		cli_error(cmd, "the VMM's memory", rc, &d);
		return -1;
	}
	if (stopped) {
		printf("%s: stopped by a signal after %" PRIu64 " pages\n", cmd, *got);
		fflush(stdout);
	}
	return !stopped;
}

/* The bulk installs asked for; false when a signal stopped them. */
static bool install_asked(struct squib_pager *p, const struct source *s, const struct serve_args *a)
{
	struct squib_ws_run all = {0, s->src.page_count};
	uint64_t n = 0;
	double ms;
	int r;

	if (a->prefetch_ws) {
		r = install(p, s->ss, s->ws.runs, s->ws.run_count, "serve --prefetch-ws", &n, &ms);
		if (!r)
			return false;
		if (r > 0)
			printf("prefetched the working set: %" PRIu64 " pages installed\n", n);
	}
	if (a->all) {
		r = install(p, s->ss, &all, 1, "serve --mode all", &n, &ms);
		if (!r)
			return false;
		if (r > 0)
			printf("installed all pages: %" PRIu64 " by this fill in %.1f ms\n", n, ms);
	}
	fflush(stdout);
	return true;
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
		      struct squib_uffd_server *srv, int sfd, struct squib_error_detail *d)
{
	struct squib_pager *p = NULL;
	const char *why = "";
	uint64_t bytes = 0;
	int rc;

	for (uint32_t i = 0; i < peer->n; i++)
		bytes += peer->mappings[i].size;
	printf("serving pid %d: %u regions, %" PRIu64 " MiB\n", peer->pid, peer->n, bytes >> 20);
	fflush(stdout);
	if ((rc = attach(s, peer, a, &p, d)))
		return rc;
	squib_pager_set_prefetch_stop(p, signal_pending, &sfd);
	install_asked(p, s, a);
	rc = wait_end(p, peer, srv, sfd, &why, d);
	squib_pager_stop(p);
	if (!rc)
		print_stats(p, why);
	if (s->ss)
		cli_from_print_stats(s->ss); /* the pager frees the source below */
	if (!rc && a->record_ws)
		rc = record_ws(p, s, a->record_ws, d);
	squib_pager_free(p);
	return rc;
}

/* Every refused connection: one line on stderr, and serve goes on. */
static void on_refused(void *ctx, const struct squib_uffd_refusal *r)
{
	char who[96];

	(void)ctx;
	if (r->uid == UINT32_MAX)
		snprintf(who, sizeof(who), "refused a connection");
	else
		snprintf(who, sizeof(who), "refused a connection from pid %d (uid %u)", r->pid,
			 r->uid);
	fflush(stdout);
	cli_error("serve", who, r->code, r->detail);
}

static int serve_on(struct squib_uffd_server *srv, int sfd, struct source *s,
		    const struct serve_args *a, struct squib_error_detail *d)
{
	struct squib_uffd_peer peer;
	char busy[64];
	int rc = squib_uffd_server_next(srv, sfd, &peer, d);

	if (rc)
		return rc;
	if (peer.conn_fd < 0) {
		printf("stopped: signal before a VMM connected\n");
		return 0;
	}
	snprintf(busy, sizeof(busy), "already serving pid %d", peer.pid);
	squib_uffd_server_refuse_all(srv, busy);
	rc = serve_peer(s, &peer, a, srv, sfd, d);
	squib_uffd_peer_close(&peer);
	return rc;
}

/* Listen (0600, peers checked), serve one VMM, remove the socket. */
static int listen_and_serve(struct source *s, const struct serve_args *a, int sfd,
			    struct squib_error_detail *d)
{
	struct squib_uffd_server_options o = {.handshake_timeout_ms = a->timeout_ms,
					      .allow_uids = a->allow,
					      .allow_uid_count = a->nallow,
					      /* Allowed uids must reach the socket at all:
					       * SO_PEERCRED then keeps the others out. */
					      .socket_mode = a->nallow ? 0666 : 0600,
					      .check = check_peer,
					      .on_refused = on_refused,
					      .ctx = s};
	struct squib_uffd_server *srv;
	int rc = squib_uffd_server_open(a->socket, &o, &srv, d);

	if (rc)
		return rc;
	printf("listening on %s\n", a->socket);
	fflush(stdout);
	rc = serve_on(srv, sfd, s, a, d);
	squib_uffd_server_close(srv);
	return rc;
}

static int serve(const struct serve_args *a, struct squib_error_detail *d, const char **what)
{
	struct source s;
	int sfd, rc;

	*what = a->from.ref ? a->from.ref : a->mem;
	if ((rc = source_open(&s, a, d)))
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
	if (a->record_ws) {
		*what = a->record_ws;
		if ((rc = check_output(a, d)))
			goto out;
	}
	*what = a->socket;
	if ((sfd = signals_fd()) < 0) {
		rc = squib_fail_errno(d, SQUIB_E_IO, errno);
		goto out;
	}
	rc = listen_and_serve(&s, a, sfd, d);
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
	char *mem = NULL;
	int rc;

	if (parse_args(argc, argv, &a)) {
		serve_usage(stderr);
		return CLI_EXIT_ERROR;
	}
	if (a.state && cli_mem_path("serve", a.state, &a.mem, &mem))
		return CLI_EXIT_ERROR;
	a.chain[a.chain_len] = a.mem;
	memset(&d, 0, sizeof(d));
	rc = serve(&a, &d, &what);
	if (rc) {
		fflush(stdout);
		cli_error("serve", what, rc, &d);
	}
	free(mem);
	return cli_exit_code(rc);
}

const struct cli_command cli_cmd_serve = {
    .name = "serve",
    .summary = "serve a VMM's guest-memory faults over its userfaultfd (Firecracker's Uffd "
	       "handshake)",
    .run = serve_run,
    .usage = serve_usage,
};
