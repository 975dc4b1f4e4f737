/* SPDX-License-Identifier: Apache-2.0 */
/* `squib-snapshot describe PATH [--json]`: summarise a state file. */
#include <errno.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <squib/snapshot.h>

#include "cli.h"

static void describe_usage(FILE *out)
{
	fprintf(out,
		"usage: squib-snapshot describe PATH [--json]\n\n"
		"Summarises a state file of either architecture: header, vCPUs, memory size,\n"
		"devices, MMDS, the memory file next to it (PATH with its extension replaced\n"
		"by .mem) and whether the CRC holds. A file whose CRC fails is still described,\n"
		"as far as it decodes.\n\n"
		"When the state describes its memory file (a memory section), that is shown\n"
		"too: kind, id, parent id, page size, RAM size, present pages and bytes, and\n"
		"whether the memory file on disk is that file (id, kind and geometry, read from\n"
		"its footer). `squib-snapshot verify` checks the pair in full.\n\n"
		"  --json   print the summary as a JSON object; a file that cannot be described\n"
		"           prints {\"error\": {\"code\", \"value\", \"path\", \"message\",\n"
		"           \"detail\", \"os_errno\", \"text\"}} instead (and its line on stderr)\n\n"
		"exit status: 0 described and the CRC is good; 2 described but the CRC fails;\n"
		"             1 unreadable or not a state file, or bad usage.\n");
}

/* PATH and --json in any order; "--" ends the options. */
static int parse_args(int argc, char **argv, const char **path, int *json)
{
	int options = 1;

	*path = NULL;
	*json = 0;
	for (int i = 1; i < argc; i++) {
		if (options && !strcmp(argv[i], "--")) {
			options = 0;
		} else if (options && !strcmp(argv[i], "--json")) {
			*json = 1;
		} else if (options && argv[i][0] == '-' && argv[i][1]) {
			fprintf(stderr, "squib-snapshot: describe: unknown option '%s'\n", argv[i]);
			return -1;
		} else if (*path) {
			fprintf(stderr, "squib-snapshot: describe: more than one PATH\n");
			return -1;
		} else {
			*path = argv[i];
		}
	}
	if (!*path)
		fprintf(stderr, "squib-snapshot: describe: missing PATH\n");
	return *path ? 0 : -1;
}

static int print_description(const struct squib_description *desc, int json,
			     struct squib_error_detail *d)
{
	char *text = NULL;
	int r = json ? squib_describe_json(desc, &text) : squib_describe_human(desc, &text);

	if (r)
		return squib_fail(d, r);
	fputs(text, stdout);
	if (json)
		fputc('\n', stdout);
	free(text);
	return fflush(stdout) || ferror(stdout) ? squib_fail_errno(d, SQUIB_E_IO, errno) : 0;
}

static int describe_run(int argc, char **argv)
{
	struct squib_error_detail d;
	struct squib_description desc;
	const char *path;
	int json, r;
	bool crc_ok;

	if (parse_args(argc, argv, &path, &json)) {
		describe_usage(stderr);
		return CLI_EXIT_ERROR;
	}
	r = squib_describe(path, &desc, &d);
	if (r) /* the detail names what failed */
		return cli_fail("describe", path, json, r, &d);
	crc_ok = desc.crc_ok;
	r = print_description(&desc, json, &d);
	squib_description_free(&desc);
	if (r)
		return cli_fail("describe", path, json, r, &d);
	return crc_ok ? CLI_EXIT_OK : CLI_EXIT_INTEGRITY;
}

const struct cli_command cli_cmd_describe = {
	.name = "describe",
	.summary = "summarise a state file (exit 2 if its CRC fails)",
	.run = describe_run,
	.usage = describe_usage,
};
