/* test-jinja.c: the Jinja renderer (text/jinja.c) byte for byte against jinja2 in transformers'
 * environment: the real chat templates of tests/fixtures/chat-templates/ over many
 * conversations (including the ones they refuse with raise_exception), and small templates of
 * one construct each (fixtures from scripts/make-chat-fixtures.py); syntax errors with their
 * line; the sandbox's bounds on hostile templates.
 */
#include <json-c/json.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "jinja.h"
#include "test-util.h"

static char srcdir[4096];
static time_t fixed_now;

static json_object *field(json_object *o, const char *k)
{
	json_object *v = NULL;
	json_object_object_get_ex(o, k, &v);
	return v;
}

static json_object *load(const char *name)
{
	char path[4300];
	snprintf(path, sizeof(path), "%s/tests/fixtures/chat/%s", srcdir, name);
	json_object *g = json_object_from_file(path);
	assert_non_null(g);
	fixed_now = (time_t)json_object_get_int64(field(g, "now"));
	return g;
}

/* Renders one fixture case; returns whether it matched. */
static bool check_case(size_t i, const char *tmpl, size_t tlen, json_object *c)
{
	struct skv_jinja *t = NULL;
	struct skv_err err = {0};
	struct skv_jinja_render_opts o = {.now = fixed_now};
	char *text = NULL;
	json_object *want = field(c, "text"), *error = field(c, "error");
	int r = skv_jinja_parse(tmpl, tlen, "t", &t, &err);
	ssize_t n = r;
	if (r == 0)
		n = skv_jinja_render(t, field(c, "vars"), &o, &text, &err);
	bool ok = true;
	if (want) {
		if (n < 0) {
			print_error("case %zu: failed: %s\n--- template:\n%s\n", i, err.msg, tmpl);
			ok = false;
		} else if ((size_t)n != (size_t)json_object_get_string_len(want) ||
			   memcmp(text, json_object_get_string(want), (size_t)n)) {
			print_error("case %zu: rendered\n[%s]\njinja2:\n[%s]\n--- template:\n%s\n", i, text,
				    json_object_get_string(want), tmpl);
			ok = false;
		}
	} else {
		if (n >= 0) {
			print_error("case %zu: jinja2 fails (%s), we rendered [%s]\n", i, json_object_get_string(error), text);
			ok = false;
		} else if (json_object_get_boolean(field(c, "raised"))) {
			/* raise_exception's message reaches the caller as it is */
			if (n != -ECANCELED || strcmp(err.msg, json_object_get_string(error))) {
				print_error("case %zu: raise_exception: got %zd '%s', want '%s'\n", i, n, err.msg,
					    json_object_get_string(error));
				ok = false;
			}
		} else if (field(c, "syntax")) {
			char where[32];
			snprintf(where, sizeof(where), "t:%d: ", json_object_get_int(field(c, "line")));
			if (r == 0 || strncmp(err.msg, where, strlen(where))) {
				print_error("case %zu: a syntax error on line %d expected, got '%s'\n", i,
					    json_object_get_int(field(c, "line")), err.msg);
				ok = false;
			}
		} else if (n == -ECANCELED || !err.msg[0]) {
			print_error("case %zu: an error without a message or as if raised: '%s'\n", i, err.msg);
			ok = false;
		}
	}
	free(text);
	skv_jinja_free(t);
	return ok;
}

static void test_units(void **state)
{
	(void)state;
	json_object *g = load("units.json"), *cases = field(g, "cases");
	size_t bad = 0, n = json_object_array_length(cases);
	for (size_t i = 0; i < n; i++) {
		json_object *c = json_object_array_get_idx(cases, i), *t = field(c, "template");
		bad += !check_case(i, json_object_get_string(t), (size_t)json_object_get_string_len(t), c);
	}
	json_object_put(g);
	assert_true(n >= 100);
	assert_int_equal(bad, 0);
}

static void test_real_templates(void **state)
{
	(void)state;
	json_object *g = load("renders.json"), *cases = field(g, "cases");
	size_t bad = 0, n = json_object_array_length(cases), raised = 0, texts = 0;
	for (size_t i = 0; i < n; i++) {
		json_object *c = json_object_array_get_idx(cases, i);
		char path[4400];
		size_t len;
		snprintf(path, sizeof(path), "%s/tests/fixtures/chat-templates/%s", srcdir,
			 json_object_get_string(field(c, "template")));
		char *tmpl = tu_slurp(path, &len);
		if (!check_case(i, tmpl, len, c)) {
			print_error("  (%s)\n", json_object_get_string(field(c, "template")));
			bad++;
		}
		raised += json_object_get_boolean(field(c, "raised"));
		texts += field(c, "text") != NULL;
		free(tmpl);
	}
	json_object_put(g);
	assert_true(texts >= 200);
	assert_true(raised >= 10);
	assert_int_equal(bad, 0);
}

static ssize_t render_str(const char *tmpl, const char *vars_json, const struct skv_jinja_limits *lim, char **text,
			  struct skv_err *err)
{
	struct skv_jinja *t = NULL;
	struct skv_jinja_render_opts o = {0};
	if (lim)
		o.limits = *lim;
	int r = skv_jinja_parse(tmpl, strlen(tmpl), "t", &t, err);
	if (r < 0)
		return r;
	json_object *v = vars_json ? json_tokener_parse(vars_json) : NULL;
	ssize_t n = skv_jinja_render(t, v, &o, text, err);
	json_object_put(v);
	skv_jinja_free(t);
	return n;
}

/* Hostile templates end with -E2BIG and a message naming the bound, never hang or crash. */
static void test_sandbox(void **state)
{
	(void)state;
	struct skv_err err = {0};
	char *text = NULL;
	struct skv_jinja_limits small = {.max_steps = 100000, .max_output = 1 << 16, .max_memory = 8 << 20};
	static const struct {
		const char *tmpl, *needle;
	} bad[] = {
		/* time: nested loops */
		{"{% set l = range(1000) %}{% for a in l %}{% for b in l %}{% for c in l %}{% endfor %}{% endfor %}{% endfor %}",
		 "steps"},
		/* output */
		{"{% for a in range(100000) %}xxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxx{% endfor %}", "bytes"},
		{"{{ 'x' * 100000000 }}", "exceeds"},
		/* past the bound by less than the buffer's doubling (found by fuzz-jinja) */
		{"{% for a in range(66) %}{{ 'x' * 1000 }}{% endfor %}", "exceeds 65536"},
		/* memory: a string doubled */
		{"{% set ns = namespace(s='x') %}{% for a in range(60) %}{% set ns.s = ns.s + ns.s %}{% endfor %}", "bytes"},
		/* recursion */
		{"{% macro m(n) %}{{ m(n + 1) }}{% endmacro %}{{ m(0) }}", "deep"},
		{"{% set ns = namespace(l=[]) %}{% for a in range(5000) %}{% set ns.l = [ns.l] %}{% endfor %}{{ ns.l }}", "deep"},
	};
	for (size_t i = 0; i < SKV_ARRAY_SIZE(bad); i++) {
		ssize_t n = render_str(bad[i].tmpl, NULL, &small, &text, &err);
		if (n != -E2BIG || !strstr(err.msg, bad[i].needle))
			fail_msg("'%s': %zd '%s' (want -E2BIG and '%s')", bad[i].tmpl, n, err.msg, bad[i].needle);
	}
	/* parse depth */
	char deep[2000];
	for (int depth = 150; depth <= 600; depth += 450) { /* past the parser's bound, then the lexer's */
		size_t k = (size_t)snprintf(deep, sizeof(deep), "{{ ");
		for (int i = 0; i < depth; i++)
			deep[k++] = '(';
		deep[k++] = '1';
		for (int i = 0; i < depth; i++)
			deep[k++] = ')';
		memcpy(deep + k, " }}", 4);
		assert_int_equal(render_str(deep, NULL, NULL, &text, &err), -E2BIG);
		assert_non_null(strstr(err.msg, "deep"));
	}
	/* no file access, no environment */
	assert_int_equal(render_str("{% include '/etc/passwd' %}", NULL, NULL, &text, &err), -EINVAL);
	assert_non_null(strstr(err.msg, "not supported"));
	assert_int_equal(render_str("{% import 'x' as y %}", NULL, NULL, &text, &err), -EINVAL);
	assert_int_equal(render_str("{% extends 'x' %}", NULL, NULL, &text, &err), -EINVAL);
	/* not UTF-8 */
	assert_int_equal(render_str("ok\n\xff", NULL, NULL, &text, &err), -EILSEQ);
	assert_non_null(strstr(err.msg, "t:2:"));
	/* the same template renders again after a failure */
	struct skv_jinja *t = NULL;
	const char *src = "{% if x %}{{ raise_exception('boom') }}{% endif %}ok";
	assert_int_equal(skv_jinja_parse(src, strlen(src), "t", &t, &err), 0);
	json_object *v = json_tokener_parse("{\"x\": true}");
	assert_int_equal(skv_jinja_render(t, v, NULL, &text, &err), -ECANCELED);
	assert_string_equal(err.msg, "boom");
	json_object_object_add(v, "x", json_object_new_boolean(false));
	assert_int_equal(skv_jinja_render(t, v, NULL, &text, &err), 2);
	assert_string_equal(text, "ok");
	free(text);
	json_object_put(v);
	skv_jinja_free(t);
}

/* Syntax errors name the line; runtime errors name the line and the thing. */
static void test_errors(void **state)
{
	(void)state;
	struct skv_err err = {0};
	char *text = NULL;
	static const struct {
		const char *tmpl, *msg;
	} bad[] = {
		{"a\nb\n{{ x|nope }}", "t:3: no filter named 'nope'"},
		{"{% if x %}\n\n{% endfor %}", "t:3: unexpected 'endfor'"},
		{"{{ 1 +\n}}", "t:2: expected an expression"},
		{"{% for x in y %}", "t:1: unexpected end of template, expected 'endfor' or 'else'"},
		{"\n{% frobnicate %}", "t:2: unknown statement 'frobnicate'"},
		{"{{ a.b }}", "t:1: 'a' is undefined"},
		{"{{ x is frob }}", "t:1: no test named 'frob'"},
		{"{{ 'a'.frob() }}", "t:1: 'str' object has no method 'frob'"},
		{"{% break %}", "t:1: 'break' outside a loop"},
		{"{{ 'abc }}", "t:1: unterminated string literal"},
	};
	for (size_t i = 0; i < SKV_ARRAY_SIZE(bad); i++) {
		ssize_t n = render_str(bad[i].tmpl, NULL, NULL, &text, &err);
		if (n != -EINVAL || strncmp(err.msg, bad[i].msg, strlen(bad[i].msg)))
			fail_msg("'%s': %zd '%s' (want '%s')", bad[i].tmpl, n, err.msg, bad[i].msg);
	}
}

int main(void)
{
	snprintf(srcdir, sizeof(srcdir), "%s", tu_tool("SKV_SRCDIR"));
	setenv("TZ", "UTC", 1);
	tzset();
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_units),
		cmocka_unit_test(test_real_templates),
		cmocka_unit_test(test_sandbox),
		cmocka_unit_test(test_errors),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
