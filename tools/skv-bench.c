/* skv-bench: benchmarks, one subcommand each, a printed table and (with --json FILE) JSON.
 *
 *   skv-bench SUBCOMMAND [options]     skv-bench --help lists the subcommands
 *
 * Each subcommand lives in its own tools/bench-*.c and registers in the table below. Speed is
 * measured here, never asserted by a timed test.
 */
#include <stdio.h>
#include <string.h>

#include "bench.h"
#include "skv-base.h"
#include "skv-version.h"

/* SKV_BENCH_LIST is X(name) X(name) ..., set by tools/meson.build from its bench_cmds list. */
#define X(n) extern const struct skv_bench_cmd skv_bench_##n;
SKV_BENCH_LIST
#undef X

static const struct skv_bench_cmd *const cmds[] = {
#define X(n) &skv_bench_##n,
	SKV_BENCH_LIST
#undef X
};

static void usage(FILE *f)
{
	fprintf(f, "usage: skv-bench SUBCOMMAND [options]   (SUBCOMMAND --help for its options)\n"
		   "       skv-bench --version | --help\n\nsubcommands:\n");
	for (size_t i = 0; i < sizeof(cmds) / sizeof(cmds[0]); i++)
		fprintf(f, "  %-12s %s\n", cmds[i]->name, cmds[i]->summary);
}

int main(int argc, char **argv)
{
	skv_reexec_passive_omp(argv);
	if (argc < 2 || !strcmp(argv[1], "--help") || !strcmp(argv[1], "-h")) {
		usage(argc < 2 ? stderr : stdout);
		return argc < 2 ? 2 : 0;
	}
	if (!strcmp(argv[1], "--version") || !strcmp(argv[1], "-V")) {
		skv_version_print("skv-bench");
		return 0;
	}
	for (size_t i = 0; i < sizeof(cmds) / sizeof(cmds[0]); i++)
		if (!strcmp(cmds[i]->name, argv[1]))
			return cmds[i]->main(argc - 1, argv + 1);
	fprintf(stderr, "skv-bench: unknown subcommand '%s'\n", argv[1]);
	usage(stderr);
	return 2;
}
