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
	fprintf(out, "usage: squib-snapshot <command> [options]\n"
		     "       squib-snapshot help [COMMAND] | --help | --version\n\ncommands:\n");
	for (size_t i = 0; i < N_COMMANDS; i++)
		fprintf(out, "  %-12s %s\n", commands[i]->name, commands[i]->summary);
	fprintf(out,
		"\n'squib-snapshot help COMMAND' (or 'squib-snapshot COMMAND --help') describes\n"
		"one command; man squib-snapshot describes them all.\n\n"
		"exit status (every command): 0 done; 1 bad usage, an input that cannot be read\n"
		"or is not of the kind expected, or another failure; 2 an integrity failure:\n"
		"a CRC or digest that does not match, or files that do not belong together.\n");
}

static const struct cli_command *find(const char *name)
{
	for (size_t i = 0; i < N_COMMANDS; i++)
		if (!strcmp(name, commands[i]->name))
			return commands[i];
	return NULL;
}

static int unknown(const char *name)
{
	fputs("squib-snapshot: unknown command '", stderr);
	cli_put_text(stderr, name);
	fputs("'\n", stderr);
	usage(stderr);
	return CLI_EXIT_ERROR;
}

/* `help` alone: the overview; `help CMD`: that command's usage, as CMD --help prints it. */
static int help(int argc, char **argv)
{
	const struct cli_command *c;

	if (argc > 3) {
		usage(stderr);
		return CLI_EXIT_ERROR;
	}
	if (argc < 3) {
		usage(stdout);
		return CLI_EXIT_OK;
	}
	if (!(c = find(argv[2])))
		return unknown(argv[2]);
	c->usage(stdout);
	return CLI_EXIT_OK;
}

int main(int argc, char **argv)
{
	const struct cli_command *c;

	if (argc < 2) {
		usage(stderr);
		return CLI_EXIT_ERROR;
	}
	if (!strcmp(argv[1], "--help") || !strcmp(argv[1], "-h") || !strcmp(argv[1], "help"))
		return help(argc, argv);
	if (!strcmp(argv[1], "--version") || !strcmp(argv[1], "-V"))
		return cli_version_option(argc);
	if (!(c = find(argv[1])))
		return unknown(argv[1]);
	if (cli_wants_help(argc - 1, argv + 1)) {
		c->usage(stdout);
		return CLI_EXIT_OK;
	}
	return c->run(argc - 1, argv + 1);
}
