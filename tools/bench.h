/* bench.h: how skv-bench subcommands plug in. A subcommand is a tools/bench-NAME.c file that
 * defines `const struct skv_bench_cmd skv_bench_NAME`; its NAME goes into bench_cmds in
 * tools/meson.build. */
#pragma once

struct skv_bench_cmd {
	const char *name;
	const char *summary;
	int (*main)(int argc, char **argv); /* argv[0] is the subcommand's name */
};
