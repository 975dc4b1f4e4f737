/* SPDX-License-Identifier: Apache-2.0 */
/*
 * uffd_handler: guest memory served lazily by another process, both ends
 * written from the public headers (squib/uffd_remote.h, squib/pager.h,
 * squib/page_source.h).
 *
 * The handler (a child process here; a separate program in practice) listens
 * on a socket, accepts the VMM's handshake (its regions and its userfaultfd)
 * and serves every missing page with squib_pager_attach from its own page
 * source: page k holds the byte k + 1, computed rather than read from a file,
 * which is all a page source is (present + read). The VMM maps anonymous
 * memory, hands it over with squib_uffd_remote_start and an on_lost callback,
 * and reads it: each first touch is a fault the handler resolves.
 *
 * Three runs:
 *   served      the VMM reads every page and finds the handler's bytes
 *   killed      the handler is killed halfway: on_lost fires, the VMM stops
 *               using the memory and reports squib_uffd_remote_error
 *   unservable  the source cannot read one page: the pager keeps the fault
 *               blocked and records the error, the handler gives up and exits,
 *               on_lost fires; freeing the remote then wakes the blocked reader
 *               (it reads a zero page the snapshot never had, which is why a
 *               real VMM stops its vCPUs first, see on_lost in uffd_remote.h)
 *
 * Where userfaultfd is not available (ENOSYS, EPERM) it says so on one line
 * and exits 0. Walk-through: docs/EMBEDDING.md.
 *
 * Exit status: 0 every run behaved as described, 2 otherwise (stderr says why).
 */
#include <errno.h>
#include <poll.h>
#include <pthread.h>
#include <signal.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include <squib/error.h>
#include <squib/page_source.h>
#include <squib/pager.h>
#include <squib/uffd_remote.h>

#define PAGES	32u
#define NO_PAGE UINT64_MAX
#define WAIT_MS 10000 /* bound on waiting for the other side */

static int fail(const char *what, int rc, const struct squib_error_detail *d)
{
	char text[SQUIB_ERROR_TEXT_MAX];

	squib_error_format(rc, d, text, sizeof(text));
	fprintf(stderr, "uffd_handler: %s: %s [%s]\n", what, text, squib_error_name(rc));
	return 2;
}

static void sleep_ms(long ms)
{
	struct timespec ts = {ms / 1000, (ms % 1000) * 1000000L};

	nanosleep(&ts, NULL);
}

/* ---- the handler: a page source and the pager over the VMM's uffd -------------------- */

struct source {
	uint64_t psz;
	uint64_t bad; /* the page this source cannot read (NO_PAGE: none) */
};

static bool src_present(void *ctx, uint64_t page)
{
	(void)ctx, (void)page;
	return true; /* every page holds data; false would make the pager install zeros */
}

static int src_read(void *ctx, uint64_t first, uint64_t count, void *buf,
		    struct squib_error_detail *d)
{
	const struct source *s = ctx;

	for (uint64_t k = first; k < first + count; k++) {
		if (k == s->bad) /* a backend may also return -errno: SQUIB_E_IO */
			return squib_fail_errno_msg(d, SQUIB_E_MEMORY_IO, EIO,
						    "page %llu is unreadable",
						    (unsigned long long)k);
		memset((uint8_t *)buf + (k - first) * s->psz, (int)(k + 1), s->psz);
	}
	return 0;
}

static void src_release(void *ctx)
{
	(void)ctx;
}

static const struct squib_page_source_ops source_ops = {src_present, src_read, src_release};

/* Serve until the VMM hangs up (0) or the pager fails (3): a failed page
 * means the VM's memory is lost, so the handler gives up on it. */
static int serve_peer(struct squib_uffd_peer *peer, struct source *s)
{
	struct squib_pager_region regs[SQUIB_UFFD_MAX_REGIONS];
	struct squib_page_source src = {&source_ops, s, s->psz, 0};
	/* One page per fault: a batch holding the bad page would fail its neighbours too. */
	struct squib_pager_options o = {.batch_bytes = s->psz};
	struct squib_error_detail d = {0};
	struct squib_pager *pager;
	struct pollfd pfd = {peer->conn_fd, POLLIN, 0};
	int rc;

	for (uint32_t i = 0; i < peer->n; i++) {
		const struct squib_uffd_mapping *m = &peer->mappings[i];

		regs[i] = (struct squib_pager_region){(void *)(uintptr_t)m->base_host_virt_addr,
						      m->size, m->offset / s->psz};
		src.page_count += m->size / s->psz;
	}
	rc = squib_pager_attach(peer->uffd, regs, peer->n, src, &o, &pager, &d);
	peer->uffd = -1; /* the pager owns it now, also on failure */
	if (rc)
		return fail("handler: attach", rc, &d);
	while (!(rc = squib_pager_error(pager, &d)) && poll(&pfd, 1, 20) >= 0 && !pfd.revents)
		;
	if (rc)
		fail("handler: giving up on the VM's memory", rc, &d);
	squib_pager_free(pager);
	return rc ? 3 : 0;
}

static int handler_main(const char *sock, uint64_t bad)
{
	struct source s = {(uint64_t)sysconf(_SC_PAGESIZE), bad};
	struct squib_error_detail d = {0};
	struct squib_uffd_peer peer;
	int lfd, rc;

	if ((rc = squib_uffd_listen(sock, &lfd, &d)))
		return fail("handler: listen", rc, &d);
	rc = squib_uffd_accept(lfd, WAIT_MS, &peer, &d);
	close(lfd);
	unlink(sock);
	if (rc)
		return fail("handler: accept", rc, &d);
	rc = serve_peer(&peer, &s);
	squib_uffd_peer_close(&peer);
	return rc;
}

/* ---- the VMM ------------------------------------------------------------------------------ */

struct vmm {
	uint8_t *ram;
	uint64_t psz;
	atomic_bool lost;
	struct squib_uffd_remote *remote;
};

/* The watcher thread: the handler is gone. A VMM stops its vCPUs here. */
static void on_lost(void *ctx, int code, const struct squib_error_detail *d)
{
	(void)code, (void)d;
	atomic_store(&((struct vmm *)ctx)->lost, true);
}

static bool wait_lost(struct vmm *v)
{
	for (int ms = 0; ms < WAIT_MS && !atomic_load(&v->lost); ms += 10)
		sleep_ms(10);
	return atomic_load(&v->lost);
}

/* Each first read is a fault the handler serves. */
static int check_pages(const struct vmm *v, uint64_t from, uint64_t to)
{
	for (uint64_t k = from; k < to; k++)
		for (uint64_t i = 0; i < v->psz; i += 512)
			if (v->ram[k * v->psz + i] != (uint8_t)(k + 1)) {
				fprintf(stderr, "uffd_handler: page %llu reads %#x\n",
					(unsigned long long)k, v->ram[k * v->psz + i]);
				return 2;
			}
	return 0;
}

static int vmm_start(struct vmm *v, const char *sock, struct squib_error_detail *d)
{
	struct squib_uffd_remote_options o = {
	    .connect_timeout_ms = WAIT_MS, .on_lost = on_lost, .ctx = v};
	struct squib_uffd_remote_region reg;

	v->psz = (uint64_t)sysconf(_SC_PAGESIZE);
	v->ram =
	    mmap(NULL, PAGES * v->psz, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
	if (v->ram == MAP_FAILED)
		return squib_fail_errno_msg(d, SQUIB_E_IO, errno, "mmap guest RAM");
	reg = (struct squib_uffd_remote_region){v->ram, PAGES * v->psz, 0};
	atomic_init(&v->lost, false);
	return squib_uffd_remote_start(sock, &reg, 1, v->psz, &o, &v->remote, d);
}

static void *touch_page(void *arg)
{
	struct vmm *v = arg;

	return (void *)(uintptr_t)v->ram[(PAGES - 1) * v->psz]; /* blocks: unservable */
}

/* After the loss: report it, then free (which wakes a blocked reader). */
static int report_loss(struct vmm *v, const char *run)
{
	char text[SQUIB_ERROR_TEXT_MAX];
	struct squib_error_detail d = {0};
	int rc;

	if (!wait_lost(v)) {
		fprintf(stderr, "uffd_handler: %s: on_lost never came\n", run);
		return 2;
	}
	rc = squib_uffd_remote_error(v->remote, &d);
	squib_error_format(rc, &d, text, sizeof(text));
	printf("uffd_handler: %s: on_lost: %s [%s]\n", run, text, squib_error_name(rc));
	return rc == SQUIB_E_MEMORY_IO ? 0 : 2;
}

/* One run: the handler in a child, the VMM here. Returns 0, 2, or 1 for
 * "userfaultfd is not available here". */
static int run(const char *dir, const char *name, uint64_t bad, bool kill_it)
{
	char sock[4096];
	struct vmm v = {0};
	struct squib_error_detail d = {0};
	pthread_t reader;
	bool reading = false;
	int rc, status;
	pid_t pid;

	snprintf(sock, sizeof(sock), "%s/%s.sock", dir, name);
	fflush(stdout); /* else the child inherits what is buffered and may print it again */
	if ((pid = fork()) < 0)
		return fail("fork", squib_fail_errno(&d, SQUIB_E_IO, errno), &d);
	if (pid == 0)
		_exit(handler_main(sock, bad));
	if ((rc = vmm_start(&v, sock, &d))) {
		kill(pid, SIGKILL);
		waitpid(pid, NULL, 0);
		munmap(v.ram, PAGES * v.psz);
		if (rc == SQUIB_E_IO && (d.os_errno == ENOSYS || d.os_errno == EPERM))
			return 1;
		return fail(name, rc, &d);
	}
	rc = check_pages(&v, 0, kill_it ? PAGES / 2 : bad == NO_PAGE ? PAGES : PAGES - 1);
	if (!rc && kill_it)
		kill(pid, SIGKILL);
	if (!rc && bad != NO_PAGE) {
		reading = !pthread_create(&reader, NULL, touch_page, &v);
		rc = reading ? 0 : 2;
	}
	if (!rc && (kill_it || bad != NO_PAGE))
		rc = report_loss(&v, name);
	squib_uffd_remote_free(v.remote); /* the VMM's end; wakes a blocked reader */
	if (reading)
		pthread_join(reader, NULL);
	waitpid(pid, &status, 0);
	munmap(v.ram, PAGES * v.psz);
	if (!rc)
		printf("uffd_handler: %s: ok (handler exit status %d)\n", name,
		       WIFEXITED(status) ? WEXITSTATUS(status) : 128 + WTERMSIG(status));
	return rc;
}

int main(void)
{
	char tmpl[] = "/tmp/uffd_handler.XXXXXX";
	const char *dir = mkdtemp(tmpl);
	int rc;

	if (!dir) {
		perror("uffd_handler: mkdtemp");
		return 2;
	}
	rc = run(dir, "served", NO_PAGE, false);
	if (!rc)
		rc = run(dir, "killed", NO_PAGE, true);
	if (!rc)
		rc = run(dir, "unservable", PAGES - 1, false);
	rmdir(dir);
	if (rc == 1) {
		fprintf(stderr, "uffd_handler: SKIP: userfaultfd is not available here\n");
		return 0;
	}
	if (!rc)
		printf("uffd_handler: ok\n");
	return rc;
}
