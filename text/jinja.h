/* jinja.h: the Jinja subset that model chat templates use, rendered as transformers renders
 * them (jinja2's ImmutableSandboxedEnvironment with trim_blocks and lstrip_blocks on, the
 * loopcontrols extension, transformers' tojson, raise_exception and strftime_now).
 *
 * A template is parsed once into a tree (skv_jinja_parse) and rendered many times, each time
 * with its variables given as a json-c object (name -> value; JSON strings, numbers, booleans,
 * null, arrays and objects become Python's str, int/float, bool, None, list and dict).
 *
 * The renderer is a sandbox for templates nobody reviewed: it reads no file and no environment
 * variable, and every render is bounded in steps (statements and expressions evaluated), output
 * bytes, memory and nesting depth; a template that exceeds a bound fails with -E2BIG and a
 * message naming the bound. docs/chat-templates.md lists the supported statements, expressions,
 * filters, tests and methods, and where the renderer knowingly differs from Python.
 */
#pragma once

#include <stdbool.h>
#include <stdint.h>
#include <sys/types.h>
#include <time.h>

#include "skv-base.h"

struct json_object;

/* Bounds of one render. Zero fields take the defaults below. */
struct skv_jinja_limits {
	uint64_t max_steps;  /* statements + expressions evaluated */
	size_t max_output;   /* bytes of rendered text */
	size_t max_memory;   /* bytes of values made while rendering */
	unsigned max_depth;  /* nesting of macro calls and expressions */
};

#define SKV_JINJA_MAX_STEPS 10000000u
#define SKV_JINJA_MAX_OUTPUT (16u << 20)
#define SKV_JINJA_MAX_MEMORY (256u << 20)
#define SKV_JINJA_MAX_DEPTH 200u
/* Longest template source accepted, and deepest nesting of blocks and parentheses in it. */
#define SKV_JINJA_MAX_SOURCE (4u << 20)
#define SKV_JINJA_MAX_PARSE_DEPTH 200u

struct skv_jinja_render_opts {
	struct skv_jinja_limits limits;
	/* The time strftime_now() formats (local time); 0 means now. Tests fix it. */
	time_t now;
};

struct skv_jinja;

/* Parses template text (UTF-8, at most SKV_JINJA_MAX_SOURCE bytes). name is used in messages
 * ("NAME:LINE: ..."). Returns 0, or -EINVAL with the line of the syntax error, -EILSEQ for text
 * that is not UTF-8, -E2BIG, -ENOMEM. The caller owns *ret. */
int skv_jinja_parse(const char *src, size_t len, const char *name, struct skv_jinja **ret, struct skv_err *err);
void skv_jinja_free(struct skv_jinja *t);
static inline void skv_jinja_freep(struct skv_jinja **p) { skv_jinja_free(*p); }
#define _cleanup_jinja_ _cleanup_(skv_jinja_freep)

/* Renders t with the variables of vars (a JSON object; borrowed). Returns the length and a
 * malloc'ed NUL-terminated text in *ret, or:
 *   -ECANCELED  the template called raise_exception(msg): err->msg is msg itself;
 *   -EINVAL     a runtime error (an undefined value used, a type error, an unknown filter...):
 *               err says what and on which line;
 *   -E2BIG      a bound of opts->limits was exceeded; -ENOMEM.
 * opts may be NULL (defaults). */
ssize_t skv_jinja_render(const struct skv_jinja *t, const struct json_object *vars,
			 const struct skv_jinja_render_opts *opts, char **ret, struct skv_err *err);

/* Python's str.strip() (what the trim filter does): the bounds of s[0..len) without leading and
 * trailing whitespace (str.isspace: 29 code points). s is valid UTF-8. */
void skv_jinja_strip(const char *s, size_t len, size_t *ret_start, size_t *ret_len);
