/* chat.c: tokenizer_config.json's chat settings, and chat messages rendered through the model's
 * Jinja template (jinja.h) with the variables transformers passes (see chat.h).
 */
#include "chat.h"

#include <json-c/json.h>
#include <stdio.h>
#include <string.h>
#include <unistd.h>

#include "jinja.h"
#include "skv-json.h"

/* Special tokens that end a turn in the templates of common families; a template that writes
 * one makes it a stop id. */
static const char *const turn_ends[] = {"<|eot_id|>",  "<|eom_id|>",	  "<|end_of_text|>", "<|im_end|>",
					"<|end|>",     "<end_of_turn>", "<|endoftext|>",   "</s>",
					"<｜end▁of▁sentence｜>"};

/* ---- config ------------------------------------------------------------------------------ */

void skv_chat_free(struct skv_chat *c)
{
	if (!c)
		return;
	skv_jinja_free(c->tmpl);
	free(c->tmpl_text);
	json_object_put(c->specials);
	free(c->bos_token);
	free(c->eos_token);
	free(c);
}

/* A token field: a string, an AddedToken object with "content", or null. */
static int token_field(json_object *root, const char *key, char **ret, const char *name, struct skv_err *err)
{
	json_object *v = NULL;
	const char *s = "";
	if (json_object_object_get_ex(root, key, &v) && v && !json_object_is_type(v, json_type_null)) {
		json_object *c = NULL;
		if (json_object_is_type(v, json_type_object) && json_object_object_get_ex(v, "content", &c))
			v = c;
		if (!v || !json_object_is_type(v, json_type_string))
			return skv_err_set(err, -EINVAL, "%s: %s must be a string, an object with \"content\", or null", name,
					   key);
		s = json_object_get_string(v);
	}
	*ret = strdup(s);
	return *ret ? 0 : skv_err_set(err, -ENOMEM, "%s: out of memory", name);
}


int skv_chat_set_template(struct skv_chat *c, const char *text, size_t len, const char *name, struct skv_err *err)
{
	struct skv_jinja *t = NULL;
	char *copy;
	int r = skv_jinja_parse(text, len, name, &t, err);
	if (r < 0)
		return r;
	if (!(copy = strndup(text, len))) {
		skv_jinja_free(t);
		return skv_err_set(err, -ENOMEM, "%s: out of memory", name);
	}
	skv_jinja_free(c->tmpl);
	free(c->tmpl_text);
	c->tmpl = t;
	c->tmpl_text = copy;
	return 0;
}

/* tokenizer_config.json's special tokens as the template sees them (transformers'
 * special_tokens_map: the *_token keys that are strings or AddedToken objects) */
static int collect_specials(struct skv_chat *c, json_object *root, const char *name, struct skv_err *err)
{
	static const char *const keys[] = {"bos_token", "eos_token", "unk_token", "sep_token",
					   "pad_token", "cls_token", "mask_token"};
	if (!(c->specials = json_object_new_object()))
		return skv_err_set(err, -ENOMEM, "%s: out of memory", name);
	for (size_t i = 0; i < SKV_ARRAY_SIZE(keys); i++) {
		json_object *v = NULL, *cont = NULL;
		if (!json_object_object_get_ex(root, keys[i], &v) || !v)
			continue;
		if (json_object_is_type(v, json_type_object) && json_object_object_get_ex(v, "content", &cont))
			v = cont;
		if (json_object_is_type(v, json_type_string))
			json_object_object_add(c->specials, keys[i], json_object_new_string(json_object_get_string(v)));
	}
	return 0;
}

int skv_chat_parse_config(const char *json, size_t len, const char *name, struct skv_chat **ret, struct skv_err *err)
{
	_cleanup_json_ json_object *root = NULL;
	_cleanup_chat_ struct skv_chat *c = calloc(1, sizeof(*c));
	json_object *tmpl = NULL;
	char tname[4200];
	int r;

	if (!c)
		return skv_err_set(err, -ENOMEM, "%s: out of memory", name);
	if ((r = skv_json_parse(json, len, name, &root, err)) < 0)
		return r;
	if (!json_object_is_type(root, json_type_object))
		return skv_err_set(err, -EINVAL, "%s: not a JSON object", name);
	if ((r = token_field(root, "bos_token", &c->bos_token, name, err)) < 0 ||
	    (r = token_field(root, "eos_token", &c->eos_token, name, err)) < 0 ||
	    (r = collect_specials(c, root, name, err)) < 0)
		return r;
	if (json_object_object_get_ex(root, "chat_template", &tmpl) && tmpl && json_object_is_type(tmpl, json_type_array)) {
		/* transformers' named templates: [{"name": ..., "template": ...}]; use "default" */
		json_object *found = NULL;
		for (size_t i = 0; i < json_object_array_length(tmpl); i++) {
			json_object *e = json_object_array_get_idx(tmpl, i), *n = NULL, *t = NULL;
			if (json_object_object_get_ex(e, "name", &n) && json_object_is_type(n, json_type_string) &&
			    !strcmp(json_object_get_string(n), "default") && json_object_object_get_ex(e, "template", &t))
				found = t;
		}
		if (!found)
			return skv_err_set(err, -EINVAL, "%s: chat_template is a list without a \"default\" template", name);
		tmpl = found;
	}
	snprintf(tname, sizeof(tname), "%s: chat_template", name);
	if (tmpl && json_object_is_type(tmpl, json_type_string)) {
		if ((r = skv_chat_set_template(c, json_object_get_string(tmpl), (size_t)json_object_get_string_len(tmpl),
					       tname, err)) < 0)
			return r;
	} else if (tmpl && !json_object_is_type(tmpl, json_type_null)) {
		return skv_err_set(err, -EINVAL, "%s: chat_template must be a string", name);
	}
	*ret = SKV_TAKE_PTR(c);
	return 0;
}

static int parse_gen_eos(struct skv_chat *c, const char *json, size_t len, const char *name, struct skv_err *err)
{
	_cleanup_json_ json_object *root = NULL;
	json_object *e = NULL;
	int r;
	if ((r = skv_json_parse(json, len, name, &root, err)) < 0)
		return r;
	if (!json_object_is_type(root, json_type_object) || !json_object_object_get_ex(root, "eos_token_id", &e) || !e ||
	    json_object_is_type(e, json_type_null))
		return 0;
	size_t n = json_object_is_type(e, json_type_array) ? json_object_array_length(e) : 1;
	for (size_t i = 0; i < n; i++) {
		json_object *x = json_object_is_type(e, json_type_array) ? json_object_array_get_idx(e, i) : e;
		int64_t id;
		if (!json_object_is_type(x, json_type_int) || (id = json_object_get_int64(x)) < 0 || id > INT32_MAX)
			return skv_err_set(err, -EINVAL, "%s: eos_token_id must be a token id or a list of them", name);
		if (c->n_gen_eos < SKV_CHAT_MAX_STOP)
			c->gen_eos[c->n_gen_eos++] = (int32_t)id;
	}
	return 0;
}

int skv_chat_load(const char *dir, const char *template_file, struct skv_chat **ret, struct skv_err *err)
{
	char path[4096];
	_cleanup_free_ char *text = NULL, *jinja = NULL, *gen = NULL;
	_cleanup_chat_ struct skv_chat *c = NULL;
	size_t len;
	int r;

	snprintf(path, sizeof(path), "%s/tokenizer_config.json", dir);
	if ((r = skv_read_file(path, 64u << 20, &text, &len, err)) < 0 ||
	    (r = skv_chat_parse_config(text, len, path, &c, err)) < 0)
		return r;
	if (template_file)
		snprintf(path, sizeof(path), "%s", template_file);
	else
		snprintf(path, sizeof(path), "%s/chat_template.jinja", dir);
	if (template_file || access(path, F_OK) == 0) {
		if ((r = skv_read_file(path, SKV_JINJA_MAX_SOURCE, &jinja, &len, err)) < 0 ||
		    (r = skv_chat_set_template(c, jinja, len, path, err)) < 0)
			return r;
	}
	snprintf(path, sizeof(path), "%s/generation_config.json", dir);
	if (access(path, F_OK) == 0) {
		if ((r = skv_read_file(path, 1u << 20, &gen, &len, err)) < 0 ||
		    (r = parse_gen_eos(c, gen, len, path, err)) < 0)
			return r;
	}
	*ret = SKV_TAKE_PTR(c);
	return 0;
}

int skv_chat_new(const char *tmpl, size_t len, const char *bos, const char *eos, struct skv_chat **ret,
		 struct skv_err *err)
{
	_cleanup_chat_ struct skv_chat *c = calloc(1, sizeof(*c));
	int r;
	if (!c || !(c->bos_token = strdup(bos)) || !(c->eos_token = strdup(eos)) ||
	    !(c->specials = json_object_new_object()))
		return skv_err_set(err, -ENOMEM, "out of memory");
	json_object_object_add(c->specials, "bos_token", json_object_new_string(bos));
	json_object_object_add(c->specials, "eos_token", json_object_new_string(eos));
	if (tmpl && (r = skv_chat_set_template(c, tmpl, len, "chat template", err)) < 0)
		return r;
	*ret = SKV_TAKE_PTR(c);
	return 0;
}

size_t skv_chat_stop_ids(const struct skv_chat *c, const struct skv_tokenizer *tok, int32_t *ids, size_t cap)
{
	int32_t cand[SKV_CHAT_MAX_STOP + SKV_ARRAY_SIZE(turn_ends) + 1];
	size_t nc = 0, n = 0;

	for (size_t i = 0; i < c->n_gen_eos; i++)
		cand[nc++] = c->gen_eos[i];
	if (tok && c->eos_token[0])
		cand[nc++] = skv_tokenizer_token_id(tok, c->eos_token, strlen(c->eos_token));
	if (tok && c->tmpl_text)
		for (size_t i = 0; i < SKV_ARRAY_SIZE(turn_ends); i++) {
			if (!strstr(c->tmpl_text, turn_ends[i]))
				continue;
			int32_t id = skv_tokenizer_token_id(tok, turn_ends[i], strlen(turn_ends[i]));
			if (id >= 0 && skv_tokenizer_is_special(tok, id))
				cand[nc++] = id;
		}
	for (size_t i = 0; i < nc && n < cap; i++) {
		bool dup = cand[i] < 0;
		for (size_t k = 0; k < n && !dup; k++)
			dup = ids[k] == cand[i];
		if (!dup)
			ids[n++] = cand[i];
	}
	return n;
}

/* ---- messages ---------------------------------------------------------------------------- */

int skv_chat_messages_parse(const char *json, size_t len, struct skv_chat_message **ret_msgs, size_t *ret_n,
			    struct skv_err *err)
{
	_cleanup_json_ json_object *root = NULL;
	int r;

	if ((r = skv_json_parse(json, len, "messages", &root, err)) < 0)
		return r;
	if (!json_object_is_type(root, json_type_array))
		return skv_err_set(err, -EINVAL, "messages: a JSON array of {\"role\", \"content\"} objects is expected");
	size_t n = json_object_array_length(root), bytes = (n + 1) * sizeof(struct skv_chat_message);
	for (size_t i = 0; i < n; i++) {
		json_object *m = json_object_array_get_idx(root, i), *role = NULL, *content = NULL;
		if (!json_object_is_type(m, json_type_object))
			return skv_err_set(err, -EINVAL, "messages[%zu]: not an object", i);
		if (json_object_object_get_ex(m, "tool_calls", NULL))
			return skv_err_set(err, -ENOTSUP, "messages[%zu]: tool_calls are not supported", i);
		if (!json_object_object_get_ex(m, "role", &role) || !json_object_is_type(role, json_type_string))
			return skv_err_set(err, -EINVAL, "messages[%zu]: \"role\" must be a string", i);
		if (!json_object_object_get_ex(m, "content", &content) || !json_object_is_type(content, json_type_string))
			return skv_err_set(err, -EINVAL, "messages[%zu]: \"content\" must be a string", i);
		bytes += (size_t)json_object_get_string_len(role) + (size_t)json_object_get_string_len(content) + 2;
	}
	struct skv_chat_message *msgs = malloc(bytes);
	if (!msgs)
		return skv_err_set(err, -ENOMEM, "messages: out of memory");
	char *p = (char *)(msgs + n + 1);
	for (size_t i = 0; i < n; i++) {
		json_object *m = json_object_array_get_idx(root, i), *role = NULL, *content = NULL;
		json_object_object_get_ex(m, "role", &role);
		json_object_object_get_ex(m, "content", &content);
		size_t rl = (size_t)json_object_get_string_len(role), cl = (size_t)json_object_get_string_len(content);
		memcpy(p, json_object_get_string(role), rl + 1);
		msgs[i].role = p;
		msgs[i].role_len = rl;
		p += rl + 1;
		memcpy(p, json_object_get_string(content), cl + 1);
		msgs[i].content = p;
		msgs[i].content_len = cl;
		p += cl + 1;
	}
	*ret_msgs = msgs;
	*ret_n = n;
	return 0;
}

/* ---- rendering ---------------------------------------------------------------------------- */

void skv_chat_trim(const char *s, size_t len, size_t *ret_start, size_t *ret_len)
{
	skv_jinja_strip(s, len, ret_start, ret_len);
}

ssize_t skv_chat_render_json(const struct skv_chat *c, const struct json_object *messages,
			     const struct json_object *tools, bool add_generation_prompt, char **ret_text,
			     struct skv_err *err)
{
	_cleanup_json_ json_object *vars = json_object_new_object();
	struct skv_jinja_render_opts opts = {.now = c->now};
	char *text = NULL;

	if (!c->tmpl)
		return skv_err_set(err, -ENOTSUP, "chat: the model has no chat template; send a pre-rendered prompt");
	if (!vars)
		return skv_err_set(err, -ENOMEM, "chat: out of memory");
	if (!json_object_is_type((json_object *)messages, json_type_array))
		return skv_err_set(err, -EINVAL, "chat: messages must be a JSON array");
	if (json_object_array_length(messages) == 0)
		return skv_err_set(err, -EINVAL, "chat: no messages (transformers refuses an empty conversation too)");
	if (c->specials) {
		json_object_object_foreach(c->specials, k, v)
		{
			json_object_object_add(vars, k, json_object_get(v));
		}
	}
	/* as transformers' render_jinja_template passes them */
	json_object_object_add(vars, "messages", json_object_get((json_object *)messages));
	json_object_object_add(vars, "tools", tools ? json_object_get((json_object *)tools) : NULL);
	json_object_object_add(vars, "documents", NULL);
	json_object_object_add(vars, "add_generation_prompt", json_object_new_boolean(add_generation_prompt));
	ssize_t n = skv_jinja_render(c->tmpl, vars, &opts, &text, err);
	if (n == -ECANCELED)
		return skv_err_prefix(err, -ECANCELED, "chat template: ");
	if (n < 0)
		return (int)n;
	if (skv_utf8_valid_prefix(text, (size_t)n) != (size_t)n) {
		free(text);
		return skv_err_set(err, -EILSEQ, "chat: the rendered prompt is not valid UTF-8");
	}
	*ret_text = text;
	return n;
}

ssize_t skv_chat_render(const struct skv_chat *c, const struct skv_chat_message *msgs, size_t n,
			bool add_generation_prompt, char **ret_text, struct skv_err *err)
{
	_cleanup_json_ json_object *arr = json_object_new_array();
	if (!arr)
		return skv_err_set(err, -ENOMEM, "chat: out of memory");
	for (size_t i = 0; i < n; i++) {
		if (skv_utf8_valid_prefix(msgs[i].role, msgs[i].role_len) != msgs[i].role_len ||
		    skv_utf8_valid_prefix(msgs[i].content, msgs[i].content_len) != msgs[i].content_len)
			return skv_err_set(err, -EILSEQ, "chat: message %zu is not valid UTF-8", i);
		json_object *m = json_object_new_object();
		if (!m)
			return skv_err_set(err, -ENOMEM, "chat: out of memory");
		json_object_array_add(arr, m);
		json_object_object_add(m, "role", json_object_new_string_len(msgs[i].role, (int)msgs[i].role_len));
		json_object_object_add(m, "content", json_object_new_string_len(msgs[i].content, (int)msgs[i].content_len));
	}
	return skv_chat_render_json(c, arr, NULL, add_generation_prompt, ret_text, err);
}
