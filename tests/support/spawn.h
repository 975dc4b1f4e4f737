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

/*
 * The CLI under test: the path ctest passes in SQUIB_CLI to the programs
 * tests/CMakeLists.txt lists in SQUIB_TESTS_CLI. Fails the current test when
 * it is unset or empty (not run through ctest, or a build without the CLI).
 */
char *squib_test_cli_path(void);

/*
 * The same for a program that is built without the CLI too
 * (SQUIB_TESTS_KVM_OPTIONAL: the arm64 build sets SQUIB_CLI empty): an empty
 * SQUIB_CLI skips the current test with one loud line; unset still fails.
 */
char *squib_test_cli_path_or_skip(void);

/*
 * A program running in the background (a page-fault handler, a VMM), its
 * stdout and stderr collected through pipes while the test goes on.
 */
struct squib_test_bg {
	int pid;
	int out, err; /* read ends; -1 once at EOF */
	char obuf[16384], ebuf[16384];
	size_t olen, elen;
};

/* Start argv[0] with argv in cwd (NULL: here), stdin from /dev/null. */
void squib_test_bg_start(const char *cwd, char *const argv[], struct squib_test_bg *b);

/* The same as user and group `uid` (root only; uid < 0: unchanged); exit 125 if the switch
 * fails. */
void squib_test_bg_start_as(const char *cwd, char *const argv[], long uid, struct squib_test_bg *b);

/* Read whatever the program has written so far (never blocks). */
void squib_test_bg_pump(struct squib_test_bg *b);

/* Wait at most ms for stdout to contain text; fails the test otherwise. */
void squib_test_bg_wait_for(struct squib_test_bg *b, const char *text, int ms);

/* Wait at most ms for the exit (then SIGKILL and fail the test); the exit
 * status (128 + signal when killed), all output read. */
int squib_test_bg_finish(struct squib_test_bg *b, int ms);

/* Number of '\n'-terminated lines in s (a final unterminated line counts too). */
size_t squib_test_count_lines(const char *s);

#endif
