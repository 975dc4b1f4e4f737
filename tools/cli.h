/* SPDX-License-Identifier: Apache-2.0 */
/* squib-snapshot CLI: one file per subcommand, dispatched from main.c. */
#ifndef SQUIB_CLI_H
#define SQUIB_CLI_H

#include <stdio.h>

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

/* Is argv[i] "--help" or "-h"? */
int cli_wants_help(int argc, char **argv);

#endif
