/* test-chat.c: the chat layer (text/chat.c) on the Jinja renderer: Meta's Llama-3.1 and
 * Llama-3 templates byte for byte against transformers' apply_chat_template and its ids
 * (fixtures from scripts/make-tokenizer-fixtures.py), tokenizer_config.json, chat_template.jinja,
 * an operator's template file and generation_config.json handling, raise_exception reaching the
 * caller, stop ids, Python's strip(), message parsing.
 */
#include <json-c/json.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "chat.h"
#include "test-util.h"
#include "tokenizer.h"

static char srcdir[4096], fixdir[4200];

/* a template of tests/fixtures/chat-templates/ as a chat config with Llama-3's tokens */
static struct skv_chat *chat_from_file(const char *file)
{
	char path[4400];
	size_t len;
	struct skv_chat *c = NULL;
	struct skv_err err = {0};
	snprintf(path, sizeof(path), "%s/tests/fixtures/chat-templates/%s", srcdir, file);
	char *t = tu_slurp(path, &len);
	assert_int_equal(skv_chat_new(t, len, "<|begin_of_text|>", "<|eot_id|>", &c, &err), 0);
	free(t);
	return c;
}

static const char *template_file(const char *name)
{
	return !strcmp(name, "llama-3.1") ? "meta-llama-Llama-3.1-8B-Instruct.jinja"
					  : "meta-llama-Meta-Llama-3-8B-Instruct.jinja";
}

static json_object *field(json_object *o, const char *k)
{
	json_object *v = NULL;
	json_object_object_get_ex(o, k, &v);
	return v;
}

static void test_golden(void **state)
{
	(void)state;
	char path[4300];
	snprintf(path, sizeof(path), "%s/chat.json", fixdir);
	json_object *g = json_object_from_file(path), *cases = field(g, "cases");
	struct skv_tokenizer *tok = NULL;
	struct skv_err err = {0};
	size_t n_ok = 0, n_err = 0;

	assert_non_null(cases);
	snprintf(path, sizeof(path), "%s/llama3", fixdir);
	assert_int_equal(skv_tokenizer_load(path, &tok, &err), 0);
	for (size_t i = 0; i < json_object_array_length(cases); i++) {
		json_object *c = json_object_array_get_idx(cases, i);
		const char *mj = json_object_to_json_string_ext(field(c, "messages"), JSON_C_TO_STRING_PLAIN);
		struct skv_chat_message *msgs = NULL;
		struct skv_chat *chat = NULL;
		size_t n;
		char *text = NULL;
		const char *tname = json_object_get_string(field(c, "template"));

		assert_int_equal(skv_chat_messages_parse(mj, strlen(mj), &msgs, &n, &err), 0);
		chat = chat_from_file(template_file(tname));
		ssize_t len = skv_chat_render(chat, msgs, n, json_object_get_boolean(field(c, "add_generation_prompt")), &text, &err);
		if (field(c, "error")) {
			if (len >= 0)
				fail_msg("case %zu: transformers refuses (%s), we rendered '%s'", i,
					 json_object_get_string(field(c, "error")), text);
			n_err++;
		} else {
			json_object *want = field(c, "text"), *ids = field(c, "ids");
			if (len < 0)
				fail_msg("case %zu: %s", i, err.msg);
			if ((size_t)len != (size_t)json_object_get_string_len(want) || memcmp(text, json_object_get_string(want), (size_t)len))
				fail_msg("case %zu (%s): rendered\n%s\ntransformers:\n%s", i, tname, text,
					 json_object_get_string(want));
			/* apply_chat_template(tokenize=True): the text encoded without the post-processor */
			int32_t *got;
			ssize_t k = skv_tokenizer_encode_alloc(tok, text, (size_t)len, 0, &got, &err);
			assert_int_equal(k, json_object_array_length(ids));
			for (ssize_t j = 0; j < k; j++)
				assert_int_equal(got[j], json_object_get_int(json_object_array_get_idx(ids, (size_t)j)));
			free(got);
			n_ok++;
		}
		free(text);
		free(msgs);
		skv_chat_free(chat);
	}
	assert_true(n_ok >= 60);
	assert_true(n_err >= 2);
	skv_tokenizer_free(tok);
	json_object_put(g);
}

/* raise_exception's message reaches the caller; a template that does not parse names its line */
static void test_errors(void **state)
{
	(void)state;
	struct skv_chat *c = chat_from_file("google-gemma-2-2b-it.jinja");
	struct skv_chat_message m[] = {{"system", 6, "s", 1}, {"user", 4, "hi", 2}};
	struct skv_err err = {0};
	char *text = NULL;
	assert_int_equal(skv_chat_render(c, m, 2, true, &text, &err), -ECANCELED);
	assert_string_equal(err.msg, "chat template: System role not supported");
	assert_int_equal(skv_chat_render(c, m + 1, 1, true, &text, &err), (ssize_t)strlen(
		"<bos><start_of_turn>user\nhi<end_of_turn>\n<start_of_turn>model\n") - 5 + strlen("<|begin_of_text|>"));
	assert_string_equal(text, "<|begin_of_text|><start_of_turn>user\nhi<end_of_turn>\n<start_of_turn>model\n");
	free(text);
	skv_chat_free(c);
	c = NULL;
	assert_int_equal(skv_chat_new("ok\n{% if %}", 11, "", "", &c, &err), -EINVAL);
	assert_non_null(strstr(err.msg, "chat template:2:"));
}

/* skv-tok chat --template FILE --tools FILE renders Qwen2.5's tool prompt exactly as
 * transformers does (the case of tests/fixtures/chat/renders.json) */
static void test_skv_tok_tools(void **state)
{
	(void)state;
	char path[4400], *dir = tu_tmpdir();
	snprintf(path, sizeof(path), "%s/tests/fixtures/chat/renders.json", srcdir);
	json_object *g = json_object_from_file(path), *cases = field(g, "cases"), *want = NULL;
	for (size_t i = 0; i < json_object_array_length(cases) && !want; i++) {
		json_object *c = json_object_array_get_idx(cases, i), *v = field(c, "vars");
		if (!strcmp(json_object_get_string(field(c, "template")), "Qwen-Qwen2.5-7B-Instruct.jinja") &&
		    json_object_is_type(field(v, "tools"), json_type_array) && json_object_get_boolean(field(v, "add_generation_prompt")) &&
		    field(c, "text")) {
			want = c;
			snprintf(path, sizeof(path), "%s/messages.json", dir);
			json_object_to_file(path, field(v, "messages"));
			snprintf(path, sizeof(path), "%s/tools.json", dir);
			json_object_to_file(path, field(v, "tools"));
		}
	}
	assert_non_null(want);
	assert_int_equal(tu_sh("'%s' chat --tokenizer '%s/llama3/tokenizer.json' --template "
			       "'%s/tests/fixtures/chat-templates/Qwen-Qwen2.5-7B-Instruct.jinja' --tools '%s/tools.json' "
			       "--add-generation-prompt < '%s/messages.json' > '%s/out.txt'",
			       tu_tool("SKV_TOK"), fixdir, srcdir, dir, dir, dir),
			 0);
	snprintf(path, sizeof(path), "%s/out.txt", dir);
	size_t len;
	char *out = tu_slurp(path, &len);
	assert_int_equal(len, (size_t)json_object_get_string_len(field(want, "text")));
	assert_memory_equal(out, json_object_get_string(field(want, "text")), len);
	assert_non_null(strstr(out, "# Tools"));
	free(out);
	/* tools that are not an array, and a template that raises: exit 1 with the message */
	tu_writef(path, "{}");
	assert_int_equal(tu_sh("'%s' chat --tokenizer '%s/llama3/tokenizer.json' --template "
			       "'%s/tests/fixtures/chat-templates/Qwen-Qwen2.5-7B-Instruct.jinja' --tools '%s' < '%s/messages.json' "
			       "2>/dev/null",
			       tu_tool("SKV_TOK"), fixdir, srcdir, path, dir),
			 1);
	assert_int_equal(tu_sh("printf '[{\"role\":\"system\",\"content\":\"s\"}]' | '%s' chat --tokenizer "
			       "'%s/llama3/tokenizer.json' --template '%s/tests/fixtures/chat-templates/google-gemma-2-2b-it.jinja' "
			       "2>&1 | grep -q 'chat template: System role not supported'",
			       tu_tool("SKV_TOK"), fixdir, srcdir),
			 0);
	json_object_put(g);
	tu_rmdir(dir);
	free(dir);
}

static void write_config(const char *dir, const char *tmpl_json)
{
	char path[4300];
	snprintf(path, sizeof(path), "%s/tokenizer_config.json", dir);
	tu_writef(path, "{\"bos_token\": {\"content\": \"<|begin_of_text|>\"}, \"eos_token\": \"<|eot_id|>\"%s%s}",
		  tmpl_json ? ", \"chat_template\": " : "", tmpl_json ? tmpl_json : "");
}

static void test_config(void **state)
{
	(void)state;
	char *dir = tu_tmpdir(), path[4300];
	struct skv_chat *c = NULL;
	struct skv_err err = {0};
	struct skv_chat_message m = {"user", 4, "hi", 2};
	char *text = NULL;

	/* the synthetic model's config: Meta's 3.1 template */
	snprintf(path, sizeof(path), "%s/llama3", fixdir);
	assert_int_equal(skv_chat_load(path, NULL, &c, &err), 0);
	assert_non_null(c->tmpl);
	assert_string_equal(c->bos_token, "<|begin_of_text|>");
	assert_string_equal(c->eos_token, "<|eot_id|>");
	skv_chat_free(c);

	/* no template: loads, refuses to render */
	write_config(dir, NULL);
	assert_int_equal(skv_chat_load(dir, NULL, &c, &err), 0);
	assert_null(c->tmpl);
	assert_int_equal(skv_chat_render(c, &m, 1, true, &text, &err), -ENOTSUP);
	assert_non_null(strstr(err.msg, "pre-rendered"));
	skv_chat_free(c);

	/* any template renders, with the config's special tokens */
	write_config(dir, "\"{{ bos_token }}{% for m in messages %}{{ m.content }}{{ eos_token }}{% endfor %}\"");
	assert_int_equal(skv_chat_load(dir, NULL, &c, &err), 0);
	assert_int_equal(skv_chat_render(c, &m, 1, true, &text, &err), 29);
	assert_string_equal(text, "<|begin_of_text|>hi<|eot_id|>");
	free(text);
	skv_chat_free(c);
	/* an operator's template file replaces the model's; one that does not parse fails the load */
	snprintf(path, sizeof(path), "%s/op.jinja", dir);
	tu_writef(path, "[{{ messages[0].content }}]");
	assert_int_equal(skv_chat_load(dir, path, &c, &err), 0);
	assert_int_equal(skv_chat_render(c, &m, 1, true, &text, &err), 4);
	assert_string_equal(text, "[hi]");
	free(text);
	skv_chat_free(c);
	tu_writef(path, "line\n{{ 1 + }}");
	assert_int_equal(skv_chat_load(dir, path, &c, &err), -EINVAL);
	assert_non_null(strstr(err.msg, "op.jinja:2:"));
	snprintf(path, sizeof(path), "%s/missing.jinja", dir);
	assert_true(skv_chat_load(dir, path, &c, &err) < 0);

	/* the named-template list form, and chat_template.jinja taking precedence */
	char tp[4400];
	size_t tlen;
	snprintf(tp, sizeof(tp), "%s/tests/fixtures/chat-templates/meta-llama-Meta-Llama-3-8B-Instruct.jinja", srcdir);
	char *l3 = tu_slurp(tp, &tlen);
	json_object *s = json_object_new_string(l3);
	free(l3);
	char list[16384];
	snprintf(list, sizeof(list), "[{\"name\": \"tool_use\", \"template\": \"x\"}, {\"name\": \"default\", \"template\": %s}]",
		 json_object_to_json_string_ext(s, JSON_C_TO_STRING_PLAIN | JSON_C_TO_STRING_NOSLASHESCAPE));
	json_object_put(s);
	write_config(dir, list);
	assert_int_equal(skv_chat_load(dir, NULL, &c, &err), 0);
	assert_int_equal(skv_chat_render(c, &m, 1, false, &text, &err), (ssize_t)strlen(
		"<|begin_of_text|><|start_header_id|>user<|end_header_id|>\n\nhi<|eot_id|>"));
	assert_string_equal(text, "<|begin_of_text|><|start_header_id|>user<|end_header_id|>\n\nhi<|eot_id|>");
	free(text);
	skv_chat_free(c);
	snprintf(path, sizeof(path), "%s/chat_template.jinja", dir);
	tu_writef(path, "from the file");
	assert_int_equal(skv_chat_load(dir, NULL, &c, &err), 0);
	assert_int_equal(skv_chat_render(c, &m, 1, false, &text, &err), 13);
	assert_string_equal(text, "from the file");
	free(text);
	skv_chat_free(c);

	/* broken files */
	write_config(dir, "42");
	assert_true(skv_chat_load(dir, NULL, &c, &err) < 0);
	assert_non_null(strstr(err.msg, "chat_template"));
	snprintf(path, sizeof(path), "%s/tokenizer_config.json", dir);
	tu_writef(path, "{\"bos_token\": 7}");
	assert_true(skv_chat_load(dir, NULL, &c, &err) < 0);
	assert_non_null(strstr(err.msg, "bos_token"));
	tu_writef(path, "{not json");
	assert_true(skv_chat_load(dir, NULL, &c, &err) < 0);
	assert_non_null(strstr(err.msg, "invalid JSON"));
	assert_true(skv_chat_load("/nonexistent", NULL, &c, &err) < 0);
	tu_rmdir(dir);
	free(dir);
}

static void test_stop_ids(void **state)
{
	(void)state;
	char *dir = tu_tmpdir(), path[4300];
	struct skv_chat *c = NULL;
	struct skv_tokenizer *tok = NULL;
	struct skv_err err = {0};
	int32_t ids[SKV_CHAT_MAX_STOP];

	snprintf(path, sizeof(path), "%s/llama3", fixdir);
	assert_int_equal(skv_tokenizer_load(path, &tok, &err), 0);
	/* generation_config's list, the config's eos_token, and the Llama-3 turn ends */
	tu_sh("cp '%s/llama3/tokenizer_config.json' '%s/'", fixdir, dir);
	snprintf(path, sizeof(path), "%s/generation_config.json", dir);
	tu_writef(path, "{\"bos_token_id\": 1024, \"eos_token_id\": [1025, 77]}");
	assert_int_equal(skv_chat_load(dir, NULL, &c, &err), 0);
	size_t n = skv_chat_stop_ids(c, tok, ids, SKV_ARRAY_SIZE(ids));
	assert_int_equal(n, 4); /* 1025, 77, 1033 (<|eot_id|>, also the eos_token), 1032 (<|eom_id|>) */
	assert_int_equal(ids[0], 1025);
	assert_int_equal(ids[1], 77);
	assert_int_equal(ids[2], 1033);
	assert_int_equal(ids[3], 1032);
	assert_int_equal(skv_chat_stop_ids(c, tok, ids, 2), 2);
	skv_chat_free(c);
	/* an int eos_token_id */
	tu_writef(path, "{\"eos_token_id\": 1025}");
	assert_int_equal(skv_chat_load(dir, NULL, &c, &err), 0);
	assert_int_equal(c->n_gen_eos, 1);
	skv_chat_free(c);
	tu_writef(path, "{\"eos_token_id\": \"x\"}");
	assert_true(skv_chat_load(dir, NULL, &c, &err) < 0);
	assert_non_null(strstr(err.msg, "eos_token_id"));
	skv_tokenizer_free(tok);
	tu_rmdir(dir);
	free(dir);
}

static void test_trim(void **state)
{
	(void)state;
	/* every code point Python's str.isspace() accepts, around a word, and two it does not */
	static const char *space[] = {"\t", "\n", "\v", "\f", "\r", "\x1c", "\x1d", "\x1e", "\x1f", " ",
				      "\xc2\x85", "\xc2\xa0", "\xe1\x9a\x80", "\xe2\x80\x80", "\xe2\x80\x8a",
				      "\xe2\x80\xa8", "\xe2\x80\xa9", "\xe2\x80\xaf", "\xe2\x81\x9f", "\xe3\x80\x80"};
	char buf[64];
	size_t a, l;
	for (size_t i = 0; i < SKV_ARRAY_SIZE(space); i++) {
		int n = snprintf(buf, sizeof(buf), "%s%sword%s", space[i], space[i], space[i]);
		skv_chat_trim(buf, (size_t)n, &a, &l);
		assert_int_equal(l, 4);
		assert_memory_equal(buf + a, "word", 4);
	}
	skv_chat_trim("\xe2\x80\x8bx\xe1\xa0\x8e", 7, &a, &l); /* U+200B, U+180E are not space */
	assert_int_equal(a, 0);
	assert_int_equal(l, 7);
	skv_chat_trim("   ", 3, &a, &l);
	assert_int_equal(l, 0);
	skv_chat_trim("", 0, &a, &l);
	assert_int_equal(l, 0);
}

static void test_messages(void **state)
{
	(void)state;
	struct skv_chat_message *m = NULL;
	struct skv_err err = {0};
	size_t n;
	const char *ok = "[{\"role\": \"system\", \"content\": \"a\\u0000b\"}, {\"role\": \"user\", \"content\": \"\", \"name\": \"x\"}]";
	assert_int_equal(skv_chat_messages_parse(ok, strlen(ok), &m, &n, &err), 0);
	assert_int_equal(n, 2);
	assert_int_equal(m[0].content_len, 3);
	assert_memory_equal(m[0].content, "a\0b", 3);
	assert_string_equal(m[1].role, "user");
	assert_int_equal(m[1].content_len, 0);
	free(m);
	static const struct {
		const char *json, *needle;
	} bad[] = {
		{"{", "invalid JSON"},
		{"[{\"role\": \"user\", \"content\": \"x\"}] junk", "invalid JSON"},
		{"{}", "JSON array"},
		{"[1]", "not an object"},
		{"[{\"content\": \"x\"}]", "\"role\""},
		{"[{\"role\": \"user\"}]", "\"content\""},
		{"[{\"role\": \"user\", \"content\": null}]", "\"content\""},
		{"[{\"role\": \"user\", \"content\": [{\"type\": \"text\"}]}]", "\"content\""},
		{"[{\"role\": \"assistant\", \"content\": \"\", \"tool_calls\": []}]", "tool_calls"},
	};
	for (size_t i = 0; i < SKV_ARRAY_SIZE(bad); i++) {
		assert_true(skv_chat_messages_parse(bad[i].json, strlen(bad[i].json), &m, &n, &err) < 0);
		if (!strstr(err.msg, bad[i].needle))
			fail_msg("'%s': '%s' lacks '%s'", bad[i].json, err.msg, bad[i].needle);
	}
	/* rendering refuses text that is not UTF-8 */
	struct skv_chat *c = NULL;
	struct skv_chat_message bin = {"user", 4, "\xff", 1};
	char *text;
	c = chat_from_file("meta-llama-Llama-3.1-8B-Instruct.jinja");
	assert_int_equal(skv_chat_render(c, &bin, 1, true, &text, &err), -EILSEQ);
	skv_chat_free(c);
}

int main(void)
{
	snprintf(srcdir, sizeof(srcdir), "%s", tu_tool("SKV_SRCDIR"));
	snprintf(fixdir, sizeof(fixdir), "%s/tests/fixtures/tokenizer", srcdir);
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_golden),	 cmocka_unit_test(test_errors), cmocka_unit_test(test_skv_tok_tools), cmocka_unit_test(test_config),
		cmocka_unit_test(test_stop_ids), cmocka_unit_test(test_trim),	  cmocka_unit_test(test_messages),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
