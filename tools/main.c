/* SPDX-License-Identifier: Apache-2.0 */
/* squib-snapshot: inspect and manage microVM snapshot files. */
#include <stdio.h>
#include <string.h>

#include "cli.h"

static const struct cli_command *const commands[] = {
	&cli_cmd_describe,
	&cli_cmd_verify,
	&cli_cmd_rebase,
	&cli_cmd_run,
	&cli_cmd_restore,
	&cli_cmd_serve,
	&cli_cmd_push,
	&cli_cmd_pull,
	&cli_cmd_store,
	&cli_cmd_version,
};

#define N_COMMANDS (sizeof(commands) / sizeof(commands[0]))

int cli_wants_help(int argc, char **argv)
{
	for (int i = 1; i < argc; i++)
		if (!strcmp(argv[i], "--help") || !strcmp(argv[i], "-h"))
			return 1;
	return 0;
}

static void usage(FILE *out)
{
	fprintf(out, "usage: squib-snapshot <command> [options]\n\ncommands:\n");
	for (size_t i = 0; i < N_COMMANDS; i++)
		fprintf(out, "  %-12s %s\n", commands[i]->name, commands[i]->summary);
	fprintf(out, "\n'squib-snapshot <command> --help' describes one command.\n");
}

int main(int argc, char **argv)
{
	if (argc < 2) {
		usage(stderr);
		return CLI_EXIT_ERROR;
	}
	if (!strcmp(argv[1], "--help") || !strcmp(argv[1], "-h") || !strcmp(argv[1], "help")) {
		usage(stdout);
		return CLI_EXIT_OK;
	}
	for (size_t i = 0; i < N_COMMANDS; i++) {
		if (strcmp(argv[1], commands[i]->name))
			continue;
		if (cli_wants_help(argc - 1, argv + 1)) {
			commands[i]->usage(stdout);
			return CLI_EXIT_OK;
		}
		return commands[i]->run(argc - 1, argv + 1);
	}
	fprintf(stderr, "squib-snapshot: unknown command '%s'\n", argv[1]);
	usage(stderr);
	return CLI_EXIT_ERROR;
}
