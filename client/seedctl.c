/*
 * seedctl: the command-line client of seedd. main() only: parse the command
 * line with the command table (commands.c), then make the call (call.c).
 */
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>

#include "call.h"
#include "commands.h"
#include "output.h"
#include "seedd-build.h"
#include "util.h"

int
main(int argc, char **argv)
{
	struct invocation inv;
	char *err = NULL;
	int r;

	secure_alloc_install(); /* requests carry BitLocker recovery passwords */
	if ((r = commands_build(argc, argv, &inv, &err)) != SEEDCTL_EXIT_OK) {
		bool json = commands_want_json(argc, argv);
		output_failure(json ? stdout : stderr, json, SEEDCTL_ERR_USAGE, err);
		free(err);
		return r;
	}
	switch (inv.action) {
	case INVOCATION_HELP:
		if (inv.help_group != NULL)
			commands_usage_group(stdout, inv.help_group);
		else if (inv.command != NULL)
			commands_usage(stdout, inv.command);
		else
			commands_help(stdout);
		r = SEEDCTL_EXIT_OK;
		break;
	case INVOCATION_VERSION:
		printf("seedctl %s\n", SEEDD_VERSION);
		r = SEEDCTL_EXIT_OK;
		break;
	case INVOCATION_CALL:
		r = call_run(&inv, stdout, stderr);
		break;
	}
	invocation_done(&inv);
	if (fflush(stdout) != 0 && r == SEEDCTL_EXIT_OK) {
		perror("seedctl: stdout");
		r = SEEDCTL_EXIT_REFUSED;
	}
	return r;
}
