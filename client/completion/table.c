/*
 * seedctl-table: print seedctl's command table (commands.c) for the
 * completion generator (gen.py), at build time; not installed. One line a
 * command: "C", its words, its arguments ("NAME", "[NAME]" if optional) and
 * its options ("--staging=DIR"), tab-separated; then "G" lines for the
 * global options.
 */
#include <stdio.h>

#include "commands.h"

int
main(void)
{
	for (size_t i = 0; i < commands_count; i++) {
		const struct command *c = &commands_table[i];
		const struct option_spec *o;
		const char *sep = "";

		printf("C\t%s\t", c->name);
		for (int a = 0; a < c->max_args; a++)
			printf(c->args[a].optional ? "%s[%s]" : "%s%s", a ? " " : "",
			       c->args[a].metavar);
		putchar('\t');
		for (size_t k = 0; (o = commands_option(k)) != NULL; k++)
			if (c->options & o->flag) {
				/* A flag (no value) has no metavar. */
				printf(o->arg.metavar ? "%s--%s=%s" : "%s--%s", sep, o->name,
				       o->arg.metavar);
				sep = " ";
			}
		putchar('\n');
	}
	/* commands.c cmdline_option(): the options every command takes. */
	fputs("G\t--socket=PATH --json --help --version -h\n", stdout);
	return fflush(stdout) == 0 ? 0 : 1;
}
