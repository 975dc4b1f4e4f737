/* SPDX-License-Identifier: Apache-2.0 */

#include "spawn.h"
#include "testutil.h"

#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>

/* In the child: cwd, stdin, stdout, stderr, then exec; never returns. */
static void child(const char *cwd, char *const argv[], const char *out, const char *err)
{
	int in = open("/dev/null", O_RDONLY);
	int o = open(out, O_WRONLY | O_CREAT | O_TRUNC, 0600);
	int e = open(err, O_WRONLY | O_CREAT | O_TRUNC, 0600);

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
		child(cwd, argv, out, err);
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
