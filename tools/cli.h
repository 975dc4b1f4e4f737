/* SPDX-License-Identifier: Apache-2.0 */
/* squib-snapshot CLI: one file per subcommand, dispatched from main.c. */
#ifndef SQUIB_CLI_H
#define SQUIB_CLI_H

#include <stdint.h>
#include <stdio.h>

#include <squib/error.h>
#include <squib/progress.h>

/* Exit codes shared by every subcommand. */
enum {
	CLI_EXIT_OK = 0,
	CLI_EXIT_ERROR = 1,     /* unreadable or malformed input, bad usage */
	CLI_EXIT_INTEGRITY = 2, /* the file is readable but fails an integrity check */
};

struct cli_command {
	const char *name;
	const char *summary;
	int (*run)(int argc, char **argv); /* argv[0] is the subcommand name */
	void (*usage)(FILE *out);
};

extern const struct cli_command cli_cmd_version;
extern const struct cli_command cli_cmd_describe;
extern const struct cli_command cli_cmd_verify;
extern const struct cli_command cli_cmd_rebase;

/* Is argv[i] "--help" or "-h"? */
int cli_wants_help(int argc, char **argv);

/*
 * Is argv[*i] the option `name` ("--mem") with a value, as "--mem VALUE" or
 * "--mem=VALUE"? 1 and *value set (*i advanced past a separate value); 0 if
 * it is another argument; -1 if the value is missing.
 */
int cli_option_value(int argc, char **argv, int *i, const char *name, const char **value);

/* Text from a file or the command line with control characters escaped (\xNN). */
void cli_put_text(FILE *f, const char *s);

/* "squib-snapshot: CMD: WHAT: message (detail)" on stderr; what may be NULL. */
void cli_error(const char *cmd, const char *what, int code, const struct squib_error_detail *d);

/* ---- progress bar on stderr ---- */

enum cli_progress_mode {
	CLI_PROGRESS_AUTO = 0, /* when stderr is a terminal and the work is large */
	CLI_PROGRESS_ON,       /* always (--progress) */
	CLI_PROGRESS_OFF,      /* never (--no-progress) */
};

/* "Large": below this many bytes of work, AUTO draws nothing. */
#define CLI_PROGRESS_MIN_BYTES (64ull << 20)

struct cli_progress {
	const char *label;
	enum cli_progress_mode mode;
	int decided, active, tty, drawn, percent;
	struct squib_progress ops;
};

/* Ready p; the callbacks to hand to the library (NULL when mode is OFF). */
const struct squib_progress *cli_progress_start(struct cli_progress *p, const char *label,
						enum cli_progress_mode mode);

/* End the bar's line if one was drawn (call before printing anything else). */
void cli_progress_end(struct cli_progress *p);

/* Is arg --progress or --no-progress? 1 and *mode set, else 0. */
int cli_progress_option(const char *arg, enum cli_progress_mode *mode);

#endif
