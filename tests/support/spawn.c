/* SPDX-License-Identifier: Apache-2.0 */

#include "spawn.h"
#include "testutil.h"

#include <errno.h>
#include <fcntl.h>
#include <grp.h>
#include <poll.h>
#include <signal.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

/* In the child: cwd, stdin, stdout, stderr (a file, or the terminal `tty`), then exec;
 * never returns. */
static void child(const char *cwd, char *const argv[], const char *out, const char *err,
		  const char *tty)
{
	int in = open("/dev/null", O_RDONLY);
	int o = open(out, O_WRONLY | O_CREAT | O_TRUNC, 0600);
	int e = tty ? open(tty, O_RDWR | O_NOCTTY) : open(err, O_WRONLY | O_CREAT | O_TRUNC, 0600);

	if (in < 0 || o < 0 || e < 0 || dup2(in, 0) < 0 || dup2(o, 1) < 0 || dup2(e, 2) < 0)
		_exit(126);
	if (cwd && chdir(cwd) != 0)
		_exit(126);
	execv(argv[0], argv);
	_exit(127);
}

static char *slurp(const char *path, size_t *len)
{
	uint8_t *buf;
	char *s;
	int r = squib_test_read_file(path, &buf, len);

	if (r)
		fail_msg("reading %s: %s", path, strerror(-r));
	s = malloc(*len + 1);
	if (!s)
		fail_msg("out of memory");
	memcpy(s, buf, *len);
	s[*len] = '\0';
	free(buf);
	return s;
}

void squib_test_spawn(const char *cwd, char *const argv[], struct squib_test_proc *p)
{
	char *dir = squib_test_tmpdir();
	char *out = squib_test_path(dir, "stdout"), *err = squib_test_path(dir, "stderr");
	int status;
	pid_t pid;

	fflush(NULL);
	pid = fork();
	if (pid < 0)
		fail_msg("fork: %s", strerror(errno));
	if (pid == 0)
		child(cwd, argv, out, err, NULL);
	while (waitpid(pid, &status, 0) < 0)
		if (errno != EINTR)
			fail_msg("waitpid: %s", strerror(errno));
	p->status = WIFEXITED(status) ? WEXITSTATUS(status) : 128 + WTERMSIG(status);
	p->out = slurp(out, &p->out_len);
	p->err = slurp(err, &p->err_len);
	if (p->status == 126 || p->status == 127)
		fail_msg("could not run %s (status %d)", argv[0], p->status);
	squib_test_rmtree(dir);
	free(out);
	free(err);
	free(dir);
}

/* Append what the terminal's master side holds to *buf (until it would block or the
 * program's side is closed). */
static void drain(int master, char **buf, size_t *len, size_t *cap)
{
	for (;;) {
		ssize_t n;

		if (*cap - *len < 4096) {
			*cap = *cap * 2 + 4096;
			if (!(*buf = realloc(*buf, *cap)))
				fail_msg("out of memory");
		}
		n = read(master, *buf + *len, *cap - *len - 1);
		if (n > 0) {
			*len += (size_t)n;
			continue;
		}
		if (n < 0 && errno == EINTR)
			continue;
		return;
	}
}

void squib_test_spawn_tty_stderr(const char *cwd, char *const argv[], struct squib_test_proc *p)
{
	char *dir = squib_test_tmpdir(), *out = squib_test_path(dir, "stdout");
	int master = posix_openpt(O_RDWR | O_NOCTTY | O_NONBLOCK), status = 0;
	size_t cap = 0, len = 0;
	bool exited = false;
	char *buf = NULL;
	const char *tty;
	pid_t pid;

	if (master < 0 || grantpt(master) || unlockpt(master) || !(tty = ptsname(master)))
		fail_msg("pseudo-terminal: %s", strerror(errno));
	fflush(NULL);
	pid = fork();
	if (pid < 0)
		fail_msg("fork: %s", strerror(errno));
	if (pid == 0)
		child(cwd, argv, out, NULL, tty);
	/* Read while it runs, so that a full terminal buffer never blocks it. */
	while (!exited) {
		struct pollfd pfd = {.fd = master, .events = POLLIN};
		pid_t w;

		poll(&pfd, 1, 50);
		drain(master, &buf, &len, &cap);
		w = waitpid(pid, &status, WNOHANG);
		if (w < 0 && errno != EINTR)
			fail_msg("waitpid: %s", strerror(errno));
		exited = w == pid;
	}
	drain(master, &buf, &len, &cap);
	close(master);
	p->status = WIFEXITED(status) ? WEXITSTATUS(status) : 128 + WTERMSIG(status);
	p->out = slurp(out, &p->out_len);
	if (!buf && !(buf = malloc(1)))
		fail_msg("out of memory");
	buf[len] = '\0';
	p->err = buf;
	p->err_len = len;
	if (p->status == 126 || p->status == 127)
		fail_msg("could not run %s (status %d)", argv[0], p->status);
	squib_test_rmtree(dir);
	free(out);
	free(dir);
}

void squib_test_proc_free(struct squib_test_proc *p)
{
	free(p->out);
	free(p->err);
	memset(p, 0, sizeof(*p));
}

size_t squib_test_count_lines(const char *s)
{
	size_t n = 0;

	for (; *s; s++)
		if (*s == '\n' || s[1] == '\0')
			n++;
	return n;
}

/* ---- background programs -------------------------------------------------------------- */

static int64_t bg_now_ms(void)
{
	struct timespec t;

	clock_gettime(CLOCK_MONOTONIC, &t);
	return (int64_t)t.tv_sec * 1000 + t.tv_nsec / 1000000;
}

void squib_test_bg_start(const char *cwd, char *const argv[], struct squib_test_bg *b)
{
	squib_test_bg_start_as(cwd, argv, -1, b);
}

void squib_test_bg_start_as(const char *cwd, char *const argv[], long uid, struct squib_test_bg *b)
{
	int o[2], e[2];

	memset(b, 0, sizeof(*b));
	if (pipe2(o, O_CLOEXEC) || pipe2(e, O_CLOEXEC))
		fail_msg("pipe: %s", strerror(errno));
	fflush(NULL);
	b->pid = fork();
	if (b->pid < 0)
		fail_msg("fork: %s", strerror(errno));
	if (!b->pid) {
		int in = open("/dev/null", O_RDONLY);

		if (in < 0 || dup2(in, 0) < 0 || dup2(o[1], 1) < 0 || dup2(e[1], 2) < 0 ||
		    (cwd && chdir(cwd) != 0))
			_exit(126);
		/* For good: groups, gid and uid, so nothing of the caller's is left. */
		if (uid >= 0 &&
		    (setgroups(0, NULL) || setresgid((gid_t)uid, (gid_t)uid, (gid_t)uid) ||
		     setresuid((uid_t)uid, (uid_t)uid, (uid_t)uid)))
			_exit(125);
		execv(argv[0], argv);
		_exit(127);
	}
	close(o[1]);
	close(e[1]);
	b->out = o[0];
	b->err = e[0];
}

/* Append what fd has now to buf; false at EOF (or error). */
static bool bg_read(int fd, char *buf, size_t *len, size_t cap)
{
	struct pollfd p = {.fd = fd, .events = POLLIN};
	ssize_t n;

	if (poll(&p, 1, 0) <= 0)
		return true;
	if (*len + 1 >= cap) { /* full: drop the rest, keep reading to see EOF */
		char sink[4096];

		return read(fd, sink, sizeof(sink)) > 0;
	}
	n = read(fd, buf + *len, cap - 1 - *len);
	if (n <= 0)
		return false;
	*len += (size_t)n;
	buf[*len] = '\0';
	return true;
}

void squib_test_bg_pump(struct squib_test_bg *b)
{
	if (b->out >= 0 && !bg_read(b->out, b->obuf, &b->olen, sizeof(b->obuf))) {
		close(b->out);
		b->out = -1;
	}
	if (b->err >= 0 && !bg_read(b->err, b->ebuf, &b->elen, sizeof(b->ebuf))) {
		close(b->err);
		b->err = -1;
	}
}

void squib_test_bg_wait_for(struct squib_test_bg *b, const char *text, int ms)
{
	int64_t end = bg_now_ms() + ms;

	while (!strstr(b->obuf, text)) {
		if (bg_now_ms() > end)
			fail_msg(
			    "pid %d did not print '%s' within %d ms (stdout '%s', stderr '%s')",
			    b->pid, text, ms, b->obuf, b->ebuf);
		squib_test_bg_pump(b);
		usleep(2000);
	}
}

int squib_test_bg_finish(struct squib_test_bg *b, int ms)
{
	int64_t end = bg_now_ms() + ms;
	int st = 0;

	while (waitpid(b->pid, &st, WNOHANG) == 0) {
		squib_test_bg_pump(b);
		if (bg_now_ms() > end) {
			kill(b->pid, SIGKILL);
			waitpid(b->pid, &st, 0);
			fail_msg("pid %d did not exit within %d ms (stdout '%s', stderr '%s')",
				 b->pid, ms, b->obuf, b->ebuf);
		}
		usleep(2000);
	}
	while (b->out >= 0 || b->err >= 0)
		squib_test_bg_pump(b);
	return WIFEXITED(st) ? WEXITSTATUS(st) : 128 + WTERMSIG(st);
}

char *squib_test_cli_path(void)
{
	const char *cli = getenv("SQUIB_CLI");

	if (!cli || !*cli)
		fail_msg("SQUIB_CLI is not set (run through ctest)");
	return (char *)cli;
}

char *squib_test_cli_path_or_skip(void)
{
	const char *cli = getenv("SQUIB_CLI");

	if (!cli)
		fail_msg("SQUIB_CLI is not set (run through ctest)");
	if (!*cli) { /* this build has no CLI (no KVM backend, docs/DESIGN.md §15) */
		fprintf(stderr,
			"*** SKIP: no CLI in this build (no KVM backend on this target) ***\n");
		skip();
	}
	return (char *)cli;
}
