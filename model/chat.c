/* chat.c: tokenizer_config.json's chat settings and the native renderers of the Llama-3 and
 * Llama-3.1 chat templates (see chat.h). The template texts come from model/templates/ through
 * the build (chat-templates.c, generated).
 */
#include "chat.h"

#include <json-c/json.h>
#include <stdio.h>
#include <string.h>
#include <unistd.h>

#include "model-config.h"

extern const char skv_chat_template_llama31_text[];
extern const size_t skv_chat_template_llama31_text_len;
extern const char skv_chat_template_llama3_text[];
extern const size_t skv_chat_template_llama3_text_len;


const char *skv_chat_template_text(enum skv_chat_template t)
{
	switch (t) {
	case SKV_CHAT_TEMPLATE_LLAMA31:
		return skv_chat_template_llama31_text;
	case SKV_CHAT_TEMPLATE_LLAMA3:
		return skv_chat_template_llama3_text;
	default:
		return NULL;
	}
}

const char *skv_chat_template_name(enum skv_chat_template t)
{
	switch (t) {
	case SKV_CHAT_TEMPLATE_LLAMA31:
		return "llama-3.1";
	case SKV_CHAT_TEMPLATE_LLAMA3:
		return "llama-3";
	case SKV_CHAT_TEMPLATE_NONE:
		return "none";
	default:
		return "unknown";
	}
}

enum skv_chat_template skv_chat_template_from_name(const char *name)
{
	if (!strcmp(name, "llama-3.1"))
		return SKV_CHAT_TEMPLATE_LLAMA31;
	if (!strcmp(name, "llama-3"))
		return SKV_CHAT_TEMPLATE_LLAMA3;
	return SKV_CHAT_TEMPLATE_UNKNOWN;
}

/* Compares two templates as Jinja would render them the same: a Jinja string literal may spell
 * a newline as a real one or as backslash-n (JSON files and Python sources differ there), and
 * trailing whitespace is dropped. */
static bool same_template(const char *a, size_t an, const char *b, size_t bn)
{
	size_t i = 0, j = 0;
	while (an && (a[an - 1] == '\n' || a[an - 1] == ' ' || a[an - 1] == '\r' || a[an - 1] == '\t'))
		an--;
	while (bn && (b[bn - 1] == '\n' || b[bn - 1] == ' ' || b[bn - 1] == '\r' || b[bn - 1] == '\t'))
		bn--;
	while (i < an && j < bn) {
		char ca = a[i], cb = b[j];
		size_t sa = 1, sb = 1;
		if (ca == '\\' && i + 1 < an && a[i + 1] == 'n')
			ca = '\n', sa = 2;
		if (cb == '\\' && j + 1 < bn && b[j + 1] == 'n')
			cb = '\n', sb = 2;
		if (ca != cb)
			return false;
		i += sa;
		j += sb;
	}
	return i == an && j == bn;
}

enum skv_chat_template skv_chat_template_identify(const char *text, size_t len)
{
	if (same_template(text, len, skv_chat_template_llama31_text, skv_chat_template_llama31_text_len))
		return SKV_CHAT_TEMPLATE_LLAMA31;
	if (same_template(text, len, skv_chat_template_llama3_text, skv_chat_template_llama3_text_len))
		return SKV_CHAT_TEMPLATE_LLAMA3;
	return SKV_CHAT_TEMPLATE_UNKNOWN;
}

/* ---- config ------------------------------------------------------------------------------ */

void skv_chat_free(struct skv_chat *c)
{
	if (!c)
		return;
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


int skv_chat_parse_config(const char *json, size_t len, const char *name, struct skv_chat **ret, struct skv_err *err)
{
	_cleanup_json_ json_object *root = NULL;
	_cleanup_chat_ struct skv_chat *c = calloc(1, sizeof(*c));
	json_object *tmpl = NULL;
	int r;

	if (!c)
		return skv_err_set(err, -ENOMEM, "%s: out of memory", name);
	if ((r = skv_json_parse(json, len, name, &root, err)) < 0)
		return r;
	if (!json_object_is_type(root, json_type_object))
		return skv_err_set(err, -EINVAL, "%s: not a JSON object", name);
	if ((r = token_field(root, "bos_token", &c->bos_token, name, err)) < 0 ||
	    (r = token_field(root, "eos_token", &c->eos_token, name, err)) < 0)
		return r;
	c->tmpl = SKV_CHAT_TEMPLATE_NONE;
	if (json_object_object_get_ex(root, "chat_template", &tmpl) && tmpl && json_object_is_type(tmpl, json_type_array)) {
		/* transformers' named templates: [{"name": ..., "template": ...}]; use "default" */
		json_object *found = NULL;
		for (size_t i = 0; i < json_object_array_length(tmpl); i++) {
			json_object *e = json_object_array_get_idx(tmpl, i), *n = NULL, *t = NULL;
			if (json_object_object_get_ex(e, "name", &n) && json_object_is_type(n, json_type_string) &&
			    !strcmp(json_object_get_string(n), "default") && json_object_object_get_ex(e, "template", &t))
				found = t;
		}
		tmpl = found;
		if (!tmpl)
			c->tmpl = SKV_CHAT_TEMPLATE_UNKNOWN;
	}
	if (tmpl && json_object_is_type(tmpl, json_type_string))
		c->tmpl = skv_chat_template_identify(json_object_get_string(tmpl), (size_t)json_object_get_string_len(tmpl));
	else if (tmpl && !json_object_is_type(tmpl, json_type_null))
		return skv_err_set(err, -EINVAL, "%s: chat_template must be a string", name);
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

int skv_chat_load(const char *dir, struct skv_chat **ret, struct skv_err *err)
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
	snprintf(path, sizeof(path), "%s/chat_template.jinja", dir);
	if (access(path, F_OK) == 0) {
		if ((r = skv_read_file(path, 16u << 20, &jinja, &len, err)) < 0)
			return r;
		c->tmpl = skv_chat_template_identify(jinja, len);
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

int skv_chat_new(enum skv_chat_template t, struct skv_chat **ret, struct skv_err *err)
{
	_cleanup_chat_ struct skv_chat *c = calloc(1, sizeof(*c));
	if (!c || !(c->bos_token = strdup("<|begin_of_text|>")) || !(c->eos_token = strdup("<|eot_id|>")))
		return skv_err_set(err, -ENOMEM, "out of memory");
	c->tmpl = t;
	*ret = SKV_TAKE_PTR(c);
	return 0;
}

size_t skv_chat_stop_ids(const struct skv_chat *c, const struct skv_tokenizer *tok, int32_t *ids, size_t cap)
{
	static const char *const llama[] = {"<|eot_id|>", "<|eom_id|>", "<|end_of_text|>"};
	int32_t cand[SKV_CHAT_MAX_STOP + 4];
	size_t nc = 0, n = 0;

	for (size_t i = 0; i < c->n_gen_eos; i++)
		cand[nc++] = c->gen_eos[i];
	if (tok && c->eos_token[0])
		cand[nc++] = skv_tokenizer_token_id(tok, c->eos_token, strlen(c->eos_token));
	if (tok && (c->tmpl == SKV_CHAT_TEMPLATE_LLAMA3 || c->tmpl == SKV_CHAT_TEMPLATE_LLAMA31))
		for (size_t i = 0; i < SKV_ARRAY_SIZE(llama); i++) {
			int32_t id = skv_tokenizer_token_id(tok, llama[i], strlen(llama[i]));
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

/* ---- rendering --------------------------------------------------------------------------- */

struct out {
	char *p;
	size_t len, cap;
	bool oom;
};

static void put(struct out *o, const char *s, size_t n)
{
	if (o->oom)
		return;
	if (o->len + n + 1 > o->cap) {
		size_t cap = SKV_MAX(2 * o->cap, o->len + n + 256);
		char *p = realloc(o->p, cap);
		if (!p) {
			o->oom = true;
			return;
		}
		o->p = p;
		o->cap = cap;
	}
	memcpy(o->p + o->len, s, n);
	o->len += n;
	o->p[o->len] = '\0';
}
static void puts_(struct out *o, const char *s) { put(o, s, strlen(s)); }

/* Python's str.isspace() on one code point. */
static bool py_space(uint32_t cp)
{
	return (cp >= 0x09 && cp <= 0x0d) || (cp >= 0x1c && cp <= 0x20) || cp == 0x85 || cp == 0xa0 || cp == 0x1680 ||
	       (cp >= 0x2000 && cp <= 0x200a) || cp == 0x2028 || cp == 0x2029 || cp == 0x202f || cp == 0x205f ||
	       cp == 0x3000;
}

/* The code point of the (valid) UTF-8 character at s[i], and its length. */
static size_t cp_at(const char *s, size_t n, size_t i, uint32_t *cp)
{
	const uint8_t *u = (const uint8_t *)s + i;
	size_t left = n - i;
	if (u[0] < 0x80 || left < 2) {
		*cp = u[0];
		return 1;
	}
	if (u[0] < 0xe0) {
		*cp = (uint32_t)(u[0] & 0x1f) << 6 | (u[1] & 0x3f);
		return 2;
	}
	if (u[0] < 0xf0 && left >= 3) {
		*cp = (uint32_t)(u[0] & 0x0f) << 12 | (uint32_t)(u[1] & 0x3f) << 6 | (u[2] & 0x3f);
		return 3;
	}
	if (left >= 4) {
		*cp = (uint32_t)(u[0] & 0x07) << 18 | (uint32_t)(u[1] & 0x3f) << 12 | (uint32_t)(u[2] & 0x3f) << 6 |
		      (u[3] & 0x3f);
		return 4;
	}
	*cp = u[0];
	return 1;
}

void skv_chat_trim(const char *s, size_t len, size_t *ret_start, size_t *ret_len)
{
	size_t a = 0, b = len;
	uint32_t cp;
	while (a < b) {
		size_t l = cp_at(s, len, a, &cp);
		if (!py_space(cp))
			break;
		a += l;
	}
	while (b > a) {
		size_t c = b - 1;
		while (c > a && ((uint8_t)s[c] & 0xc0) == 0x80)
			c--;
		cp_at(s, len, c, &cp);
		if (!py_space(cp))
			break;
		b = c;
	}
	*ret_start = a;
	*ret_len = b - a;
}

static void put_trimmed(struct out *o, const char *s, size_t n)
{
	size_t a, l;
	skv_chat_trim(s, n, &a, &l);
	put(o, s + a, l);
}

/* transformers' tojson on a string: json.dumps(s, ensure_ascii=False). */
static void put_json_string(struct out *o, const char *s, size_t n)
{
	puts_(o, "\"");
	for (size_t i = 0; i < n; i++) {
		unsigned char c = (unsigned char)s[i];
		char esc[8];
		switch (c) {
		case '"':
			puts_(o, "\\\"");
			break;
		case '\\':
			puts_(o, "\\\\");
			break;
		case '\n':
			puts_(o, "\\n");
			break;
		case '\r':
			puts_(o, "\\r");
			break;
		case '\t':
			puts_(o, "\\t");
			break;
		case '\b':
			puts_(o, "\\b");
			break;
		case '\f':
			puts_(o, "\\f");
			break;
		default:
			if (c < 0x20) {
				snprintf(esc, sizeof(esc), "\\u%04x", c);
				puts_(o, esc);
			} else {
				put(o, (const char *)&s[i], 1);
			}
		}
	}
	puts_(o, "\"");
}

static bool role_is(const struct skv_chat_message *m, const char *r)
{
	return m->role_len == strlen(r) && !memcmp(m->role, r, m->role_len);
}

static void header(struct out *o, const char *role, size_t len)
{
	puts_(o, "<|start_header_id|>");
	put(o, role, len);
	puts_(o, "<|end_header_id|>\n\n");
}

ssize_t skv_chat_render(const struct skv_chat *c, const struct skv_chat_message *msgs, size_t n,
			bool add_generation_prompt, char **ret_text, struct skv_err *err)
{
	struct out o = {0};

	if (n == 0 && (c->tmpl == SKV_CHAT_TEMPLATE_LLAMA31 || c->tmpl == SKV_CHAT_TEMPLATE_LLAMA3))
		return skv_err_set(err, -EINVAL, "chat: no messages (transformers refuses an empty conversation too)");
	for (size_t i = 0; i < n; i++) {
		if (skv_utf8_valid_prefix(msgs[i].role, msgs[i].role_len) != msgs[i].role_len ||
		    skv_utf8_valid_prefix(msgs[i].content, msgs[i].content_len) != msgs[i].content_len)
			return skv_err_set(err, -EILSEQ, "chat: message %zu is not valid UTF-8", i);
	}
	switch (c->tmpl) {
	case SKV_CHAT_TEMPLATE_LLAMA31: {
		/* Meta's template: BOS, the system turn (with the date lines, always), the rest */
		size_t first = 0;
		puts_(&o, c->bos_token);
		puts_(&o, "<|start_header_id|>system<|end_header_id|>\n\n");
		puts_(&o, "Cutting Knowledge Date: December 2023\n");
		puts_(&o, "Today Date: 26 Jul 2024\n\n");
		if (role_is(&msgs[0], "system")) {
			put_trimmed(&o, msgs[0].content, msgs[0].content_len);
			first = 1;
		}
		puts_(&o, "<|eot_id|>");
		for (size_t i = first; i < n; i++) {
			if (role_is(&msgs[i], "ipython") || role_is(&msgs[i], "tool")) {
				/* a tool result: its content as JSON, untrimmed */
				puts_(&o, "<|start_header_id|>ipython<|end_header_id|>\n\n");
				put_json_string(&o, msgs[i].content, msgs[i].content_len);
			} else {
				header(&o, msgs[i].role, msgs[i].role_len);
				put_trimmed(&o, msgs[i].content, msgs[i].content_len);
			}
			puts_(&o, "<|eot_id|>");
		}
		break;
	}
	case SKV_CHAT_TEMPLATE_LLAMA3:
		for (size_t i = 0; i < n; i++) {
			if (i == 0)
				puts_(&o, c->bos_token);
			header(&o, msgs[i].role, msgs[i].role_len);
			put_trimmed(&o, msgs[i].content, msgs[i].content_len);
			puts_(&o, "<|eot_id|>");
		}
		break;
	case SKV_CHAT_TEMPLATE_NONE:
		return skv_err_set(err, -ENOTSUP, "chat: the model has no chat template; send a pre-rendered prompt");
	default:
		return skv_err_set(err, -ENOTSUP,
				   "chat: the model's chat template is not one skv knows (llama-3.1, llama-3); "
				   "send a pre-rendered prompt");
	}
	if (add_generation_prompt)
		puts_(&o, "<|start_header_id|>assistant<|end_header_id|>\n\n");
	puts_(&o, "");
	if (o.oom) {
		free(o.p);
		return skv_err_set(err, -ENOMEM, "chat: out of memory");
	}
	*ret_text = o.p;
	return (ssize_t)o.len;
}
