/* SPDX-License-Identifier: Apache-2.0 */
/* Run a program from a test and capture what it prints (for CLI tests). */
#ifndef SQUIB_TEST_SPAWN_H
#define SQUIB_TEST_SPAWN_H

#include <stddef.h>

struct squib_test_proc {
	int status; /* exit code; 128 + signal number if a signal ended it */
	char *out;  /* everything written to stdout, NUL-terminated */
	size_t out_len;
	char *err; /* everything written to stderr, NUL-terminated */
	size_t err_len;
};

/*
 * Run argv[0] (a path, not searched in $PATH) with argv, in directory `cwd`
 * (NULL: the current one), stdin from /dev/null, and wait for it. Fails the
 * current cmocka test if the program cannot be started.
 */
void squib_test_spawn(const char *cwd, char *const argv[], struct squib_test_proc *p);

/*
 * The same with stderr on a pseudo-terminal (so isatty(2) holds in the
 * program); p->err is what the terminal received (the line discipline turns
 * "\n" into "\r\n").
 */
void squib_test_spawn_tty_stderr(const char *cwd, char *const argv[], struct squib_test_proc *p);

void squib_test_proc_free(struct squib_test_proc *p);

/* Number of '\n'-terminated lines in s (a final unterminated line counts too). */
size_t squib_test_count_lines(const char *s);

#endif
