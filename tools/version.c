/* SPDX-License-Identifier: Apache-2.0 */
/* `squib-snapshot version`: the state file format version this build writes. */
#include <stdio.h>

#include <squib/snapshot.h>

#include "cli.h"

static void version_usage(FILE *out)
{
	fprintf(out, "usage: squib-snapshot version\n"
		     "       squib-snapshot --version\n\n"
		     "version prints the snapshot format version this build writes and\n"
		     "accepts (same major, minor <= ours), then the library version, on two\n"
		     "lines; --version prints both on one: `squib-snapshot LIB (snapshot\n"
		     "format FORMAT)`.\n");
}

static int version_run(int argc, char **argv)
{
	struct squib_version v = squib_format_version();

	(void)argv;
	if (argc > 1) {
		version_usage(stderr);
		return CLI_EXIT_ERROR;
	}
	printf(SQUIB_SEMVER_FMT "\n", v.major, v.minor, v.patch);
	printf("library " "%s\n", squib_library_version());
	return CLI_EXIT_OK;
}

int cli_version_option(int argc)
{
	struct squib_version v = squib_format_version();

	if (argc > 2) {
		version_usage(stderr);
		return CLI_EXIT_ERROR;
	}
	printf("squib-snapshot %s (snapshot format " SQUIB_SEMVER_FMT ")\n",
	       squib_library_version(), v.major, v.minor, v.patch);
	return CLI_EXIT_OK;
}

const struct cli_command cli_cmd_version = {
    .name = "version",
    .summary = "print the snapshot format version",
    .run = version_run,
    .usage = version_usage,
};
