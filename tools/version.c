/* SPDX-License-Identifier: Apache-2.0 */
/* `squib-snapshot version`: the state file format version this build writes. */
#include <stdio.h>

#include <squib/snapshot.h>

#include "cli.h"

static void version_usage(FILE *out)
{
	fprintf(out, "usage: squib-snapshot version\n\n"
		     "Prints the snapshot format version this build writes and accepts\n"
		     "(same major, minor <= ours), then the library version.\n");
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

const struct cli_command cli_cmd_version = {
	.name = "version",
	.summary = "print the snapshot format version",
	.run = version_run,
	.usage = version_usage,
};
