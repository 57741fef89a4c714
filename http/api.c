/* api.c: OpenAI request bodies in, libskv requests out; response bodies and error objects.
 *
 * Pure functions over json-c (strict mode, UTF-8 checked, depth 64): a body is any bytes a
 * client sends, so every field's type and range is checked here and a refusal names the field
 * ("messages[2].content") and the limit. A field given as null counts as not given.
 */
#include "http-api.h"

#include <json-c/json.h>
#include <math.h>
#include <stdarg.h>
#include <stdio.h>
#include <string.h>

#include "skv-base.h"

#define MAX_PROMPT_IDS (1u << 20)
#define JSON_DEPTH 64

static const char *const TYPE_INVALID = "invalid_request_error";

int skv_http_error_set(struct skv_http_error *e, int status, const char *code, const char *param, const char *fmt, ...)
{
	va_list ap;
	memset(e, 0, sizeof(*e));
	e->status = status;
	e->type = status == 401   ? "authentication_error"
		  : status == 429 ? "rate_limit_error"
		  : status >= 500 ? "server_error"
				  : TYPE_INVALID;
	e->code = code;
	if (param)
		skv_strscpy(e->param, param, sizeof(e->param));
	va_start(ap, fmt);
	vsnprintf(e->message, sizeof(e->message), fmt, ap);
	va_end(ap);
	return -EINVAL;
}

static void json_putp(json_object **o)
{
	if (*o)
		json_object_put(*o);
}
#define _cleanup_json_ _cleanup_(json_putp)

/* The field, or NULL when absent or null. */
static json_object *field(json_object *o, const char *name)
{
	json_object *v = NULL;
	if (!json_object_object_get_ex(o, name, &v) || json_object_get_type(v) == json_type_null)
		return NULL;
	return v;
}

static const char *type_name(json_object *v)
{
	switch (json_object_get_type(v)) {
	case json_type_null:
		return "null";
	case json_type_boolean:
		return "a boolean";
	case json_type_double:
	case json_type_int:
		return "a number";
	case json_type_object:
		return "an object";
	case json_type_array:
		return "an array";
	case json_type_string:
		return "a string";
	}
	return "?";
}

static int want_bool(json_object *o, const char *name, bool *ret, struct skv_http_error *e)
{
	json_object *v = field(o, name);
	if (!v)
		return 0;
	if (!json_object_is_type(v, json_type_boolean))
		return skv_http_error_set(e, 400, NULL, name, "%s must be a boolean, not %s", name, type_name(v));
	*ret = json_object_get_boolean(v);
	return 1;
}

static int want_number(json_object *o, const char *name, double lo, double hi, bool lo_open, double *ret,
		       struct skv_http_error *e)
{
	json_object *v = field(o, name);
	if (!v)
		return 0;
	if (!json_object_is_type(v, json_type_double) && !json_object_is_type(v, json_type_int))
		return skv_http_error_set(e, 400, NULL, name, "%s must be a number, not %s", name, type_name(v));
	double x = json_object_get_double(v);
	if (!isfinite(x) || x > hi || (lo_open ? x <= lo : x < lo))
		return skv_http_error_set(e, 400, NULL, name, "%s is %g; it must be %s %g and at most %g", name, x,
					  lo_open ? "more than" : "at least", lo, hi);
	*ret = x;
	return 1;
}

/* An integer (a JSON number without a fraction) in [lo, hi]. */
static int want_int(json_object *o, const char *name, int64_t lo, int64_t hi, int64_t *ret, struct skv_http_error *e)
{
	json_object *v = field(o, name);
	int64_t x;
	if (!v)
		return 0;
	if (json_object_is_type(v, json_type_int)) {
		x = json_object_get_int64(v);
		if (x == INT64_MAX && json_object_get_uint64(v) > (uint64_t)INT64_MAX)
			return skv_http_error_set(e, 400, NULL, name, "%s is out of range (%lld to %lld)", name,
						  (long long)lo, (long long)hi);
	} else if (json_object_is_type(v, json_type_double)) {
		double d = json_object_get_double(v);
		if (!isfinite(d) || d != floor(d) || d < -9.2e18 || d > 9.2e18)
			return skv_http_error_set(e, 400, NULL, name, "%s must be an integer, not %g", name, d);
		x = (int64_t)d;
	} else {
		return skv_http_error_set(e, 400, NULL, name, "%s must be an integer, not %s", name, type_name(v));
	}
	if (x < lo || x > hi)
		return skv_http_error_set(e, 400, NULL, name, "%s is %lld; it must be %lld to %lld", name, (long long)x,
					  (long long)lo, (long long)hi);
	*ret = x;
	return 1;
}

/* A string copied out. json-c strings may hold NUL bytes ("\u0000"): refused, since skvd's
 * strings are NUL-terminated. */
static int copy_string(json_object *v, const char *param, char **ret, size_t *ret_len,
		       struct skv_http_error *e)
{
	if (!json_object_is_type(v, json_type_string))
		return skv_http_error_set(e, 400, NULL, param, "%s must be a string, not %s", param, type_name(v));
	size_t len = (size_t)json_object_get_string_len(v);
	const char *s = json_object_get_string(v);
	if (memchr(s, '\0', len))
		return skv_http_error_set(e, 400, NULL, param, "%s holds a NUL character", param);
	char *c = malloc(len + 1);
	if (!c)
		return -ENOMEM;
	memcpy(c, s, len);
	c[len] = '\0';
	*ret = c;
	if (ret_len)
		*ret_len = len;
	return 0;
}

static int parse_role(json_object *m, const char *param, enum skv_message_role *ret, struct skv_http_error *e)
{
	json_object *v = field(m, "role");
	char p[96];
	snprintf(p, sizeof(p), "%s.role", param);
	if (!v)
		return skv_http_error_set(e, 400, NULL, p, "%s is missing", p);
	if (!json_object_is_type(v, json_type_string))
		return skv_http_error_set(e, 400, NULL, p, "%s must be a string, not %s", p, type_name(v));
	const char *r = json_object_get_string(v);
	if (!strcmp(r, "system") || !strcmp(r, "developer"))
		*ret = SKV_MESSAGE_SYSTEM;
	else if (!strcmp(r, "user"))
		*ret = SKV_MESSAGE_USER;
	else if (!strcmp(r, "assistant"))
		*ret = SKV_MESSAGE_ASSISTANT;
	else
		return skv_http_error_set(e, 400, NULL, p,
					  "%s is \"%.32s\"; the roles served are system, developer, user and assistant "
					  "(tool calls are not supported)",
					  p, r);
	return 0;
}

/* A message's content: a string, or an array of {"type": "text", "text": ...} parts joined by
 * newlines (as vLLM joins them). */
static int parse_content(json_object *m, const char *param, char **ret, struct skv_http_error *e)
{
	json_object *v = field(m, "content");
	char p[96];
	snprintf(p, sizeof(p), "%s.content", param);
	if (!v)
		return skv_http_error_set(e, 400, NULL, p, "%s is missing", p);
	if (json_object_is_type(v, json_type_string))
		return copy_string(v, p, ret, NULL, e);
	if (!json_object_is_type(v, json_type_array))
		return skv_http_error_set(e, 400, NULL, p, "%s must be a string or an array of text parts, not %s", p,
					  type_name(v));
	size_t n = json_object_array_length(v), total = 0;
	for (size_t i = 0; i < n; i++) {
		json_object *part = json_object_array_get_idx(v, i), *t;
		char pp[128];
		snprintf(pp, sizeof(pp), "%s[%zu]", p, i);
		if (!json_object_is_type(part, json_type_object))
			return skv_http_error_set(e, 400, NULL, pp, "%s must be an object, not %s", pp, type_name(part));
		t = field(part, "type");
		if (!t || !json_object_is_type(t, json_type_string) || strcmp(json_object_get_string(t), "text"))
			return skv_http_error_set(e, 400, NULL, pp, "%s.type must be \"text\": only text content is served",
						  pp);
		t = field(part, "text");
		if (!t || !json_object_is_type(t, json_type_string))
			return skv_http_error_set(e, 400, NULL, pp, "%s.text must be a string", pp);
		if (memchr(json_object_get_string(t), '\0', (size_t)json_object_get_string_len(t)))
			return skv_http_error_set(e, 400, NULL, pp, "%s.text holds a NUL character", pp);
		total += (size_t)json_object_get_string_len(t) + 1;
	}
	char *buf = malloc(total + 1), *w = buf;
	if (!buf)
		return -ENOMEM;
	for (size_t i = 0; i < n; i++) {
		json_object *t = field(json_object_array_get_idx(v, i), "text");
		size_t len = (size_t)json_object_get_string_len(t);
		if (i)
			*w++ = '\n';
		memcpy(w, json_object_get_string(t), len);
		w += len;
	}
	*w = '\0';
	*ret = buf;
	return 0;
}

static int parse_messages(json_object *root, struct skv_http_req *r, struct skv_http_error *e)
{
	json_object *v = field(root, "messages");
	int ret;
	if (!v)
		return skv_http_error_set(e, 400, NULL, "messages", "messages is missing");
	if (!json_object_is_type(v, json_type_array))
		return skv_http_error_set(e, 400, NULL, "messages", "messages must be an array, not %s", type_name(v));
	size_t n = json_object_array_length(v);
	if (n == 0 || n > SKV_HTTP_MAX_MESSAGES)
		return skv_http_error_set(e, 400, NULL, "messages", "messages has %zu entries; 1 to %d are allowed", n,
					  SKV_HTTP_MAX_MESSAGES);
	r->messages = calloc(n, sizeof(*r->messages));
	r->contents = calloc(n, sizeof(*r->contents));
	if (!r->messages || !r->contents)
		return -ENOMEM;
	r->req.n_messages = n;
	for (size_t i = 0; i < n; i++) {
		json_object *m = json_object_array_get_idx(v, i);
		char p[48];
		snprintf(p, sizeof(p), "messages[%zu]", i);
		if (!json_object_is_type(m, json_type_object))
			return skv_http_error_set(e, 400, NULL, p, "%s must be an object, not %s", p, type_name(m));
		if ((ret = parse_role(m, p, &r->messages[i].role, e)) < 0 ||
		    (ret = parse_content(m, p, &r->contents[i], e)) < 0)
			return ret;
		r->messages[i].content = r->contents[i];
		r->messages[i].len = strlen(r->contents[i]);
	}
	r->req.kind = SKV_PROMPT_CHAT;
	r->req.messages = r->messages;
	return 0;
}

/* A token id list: [1, 2, 3]. */
static int parse_ids(json_object *v, const char *param, struct skv_http_req *r, struct skv_http_error *e)
{
	size_t n = json_object_array_length(v);
	if (n == 0 || n > MAX_PROMPT_IDS)
		return skv_http_error_set(e, 400, NULL, param, "%s has %zu token ids; 1 to %u are allowed", param, n,
					  MAX_PROMPT_IDS);
	r->ids = malloc(n * sizeof(*r->ids));
	if (!r->ids)
		return -ENOMEM;
	for (size_t i = 0; i < n; i++) {
		json_object *t = json_object_array_get_idx(v, i);
		int64_t x = json_object_is_type(t, json_type_int) ? json_object_get_int64(t) : -1;
		if (x < 0 || x > INT32_MAX)
			return skv_http_error_set(e, 400, NULL, param, "%s[%zu] is not a token id (an integer 0 to %d)",
						  param, i, INT32_MAX);
		r->ids[i] = (int32_t)x;
	}
	r->req.kind = SKV_PROMPT_IDS;
	r->req.ids = r->ids;
	r->req.n_ids = n;
	return 0;
}

/* prompt: "text", [ids], or a list of one of those. */
static int parse_prompt(json_object *root, struct skv_http_req *r, struct skv_http_error *e)
{
	json_object *v = field(root, "prompt");
	if (!v)
		return skv_http_error_set(e, 400, NULL, "prompt", "prompt is missing");
	if (json_object_is_type(v, json_type_array)) {
		size_t n = json_object_array_length(v);
		json_object *first = n ? json_object_array_get_idx(v, 0) : NULL;
		if (n && json_object_is_type(first, json_type_int))
			return parse_ids(v, "prompt", r, e);
		if (n != 1)
			return skv_http_error_set(e, 400, NULL, "prompt",
						  "prompt is a list of %zu prompts; one prompt per request is served "
						  "(a string, a list of token ids, or a list of one of those)",
						  n);
		if (json_object_is_type(first, json_type_array))
			return parse_ids(first, "prompt[0]", r, e);
		v = first;
	}
	if (!json_object_is_type(v, json_type_string))
		return skv_http_error_set(e, 400, NULL, "prompt", "prompt must be a string or a list of token ids, not %s",
					  type_name(v));
	int ret = copy_string(v, "prompt", &r->prompt, &r->req.text_len, e);
	if (ret < 0)
		return ret;
	if (!r->req.text_len)
		return skv_http_error_set(e, 400, NULL, "prompt", "prompt is empty");
	r->req.kind = SKV_PROMPT_TEXT;
	r->req.text = r->prompt;
	return 0;
}

static int parse_stop(json_object *root, struct skv_http_req *r, struct skv_http_error *e)
{
	json_object *v = field(root, "stop");
	size_t n;
	bool list;
	if (!v)
		return 0;
	list = json_object_is_type(v, json_type_array);
	if (!list && !json_object_is_type(v, json_type_string))
		return skv_http_error_set(e, 400, NULL, "stop", "stop must be a string or a list of strings, not %s",
					  type_name(v));
	n = list ? json_object_array_length(v) : 1;
	if (n > SKV_HTTP_MAX_STOP)
		return skv_http_error_set(e, 400, NULL, "stop", "stop has %zu strings; at most %d are allowed", n,
					  SKV_HTTP_MAX_STOP);
	for (size_t i = 0; i < n; i++) {
		json_object *s = list ? json_object_array_get_idx(v, i) : v;
		char p[32];
		size_t len;
		snprintf(p, sizeof(p), list ? "stop[%zu]" : "stop", i);
		int ret = copy_string(s, p, &r->stop_buf[i], &len, e);
		if (ret < 0)
			return ret;
		r->stop[i] = r->stop_buf[i];
		r->req.n_stop = i + 1;
		if (!len)
			return skv_http_error_set(e, 400, NULL, p, "%s is an empty string", p);
	}
	r->req.stop = r->req.n_stop ? r->stop : NULL;
	return 0;
}

/* Fields the engine cannot honour: refused when set to anything but their neutral value. */
static int refuse_unsupported(json_object *root, enum skv_http_endpoint ep, struct skv_http_error *e)
{
	json_object *v;
	if ((v = field(root, "logprobs"))) {
		bool set = json_object_is_type(v, json_type_boolean) ? json_object_get_boolean(v) : true;
		if (set)
			return skv_http_error_set(e, 400, NULL, "logprobs",
						  "logprobs are not served: the engine samples on the device and does "
						  "not return token probabilities");
	}
	if ((v = field(root, "top_logprobs")) && !(json_object_is_type(v, json_type_int) && json_object_get_int64(v) == 0))
		return skv_http_error_set(e, 400, NULL, "top_logprobs",
					  "top_logprobs are not served: the engine does not return token probabilities");
	if ((v = field(root, "echo")) && (!json_object_is_type(v, json_type_boolean) || json_object_get_boolean(v)))
		return skv_http_error_set(e, 400, NULL, "echo", "echo is not served");
	if ((v = field(root, "best_of")) && !(json_object_is_type(v, json_type_int) && json_object_get_int64(v) == 1))
		return skv_http_error_set(e, 400, NULL, "best_of", "best_of must be 1: one completion per request is served");
	if ((v = field(root, "suffix")) && !(json_object_is_type(v, json_type_string) && !json_object_get_string_len(v)))
		return skv_http_error_set(e, 400, NULL, "suffix", "suffix is not served");
	if ((v = field(root, "tools")) && !(json_object_is_type(v, json_type_array) && !json_object_array_length(v)))
		return skv_http_error_set(e, 400, NULL, "tools", "tools are not served (no tool calling)");
	if ((v = field(root, "logit_bias")) && !(json_object_is_type(v, json_type_object) && !json_object_object_length(v)))
		return skv_http_error_set(e, 400, NULL, "logit_bias", "logit_bias is not served");
	static const char *const penalties[] = {"presence_penalty", "frequency_penalty"};
	for (size_t i = 0; i < SKV_ARRAY_SIZE(penalties); i++)
		if ((v = field(root, penalties[i])) &&
		    !((json_object_is_type(v, json_type_int) || json_object_is_type(v, json_type_double)) &&
		      json_object_get_double(v) == 0))
			return skv_http_error_set(e, 400, NULL, penalties[i], "%s is not served: it must be 0 or absent",
						  penalties[i]);
	if ((v = field(root, "response_format"))) {
		json_object *t = json_object_is_type(v, json_type_object) ? field(v, "type") : NULL;
		if (!t || !json_object_is_type(t, json_type_string) || strcmp(json_object_get_string(t), "text"))
			return skv_http_error_set(e, 400, NULL, "response_format",
						  "response_format must be {\"type\": \"text\"}: structured output is not served");
	}
	(void)ep;
	return 0;
}

static int parse_fields(json_object *root, struct skv_http_req *r, struct skv_http_error *e)
{
	struct skv_request *q = &r->req;
	json_object *v;
	int64_t x;
	double d;
	int ret;

	v = field(root, "model");
	if (!v)
		return skv_http_error_set(e, 400, NULL, "model", "model is missing");
	if ((ret = copy_string(v, "model", &r->model, NULL, e)) < 0)
		return ret;

	if ((ret = r->endpoint == SKV_HTTP_ENDPOINT_CHAT ? parse_messages(root, r, e) : parse_prompt(root, r, e)) < 0)
		return ret;

	/* max_completion_tokens is the newer name; it wins when both are given */
	if ((ret = want_int(root, "max_tokens", 1, UINT32_MAX, &x, e)) < 0)
		return ret;
	if (ret)
		q->max_tokens = (uint32_t)x;
	if ((ret = want_int(root, "max_completion_tokens", 1, UINT32_MAX, &x, e)) < 0)
		return ret;
	if (ret)
		q->max_tokens = (uint32_t)x;

	if ((ret = want_number(root, "temperature", 0, 2, false, &d, e)) < 0)
		return ret;
	if (ret) {
		q->flags |= SKV_REQUEST_TEMPERATURE;
		q->temperature = (float)d;
	}
	if ((ret = want_number(root, "top_p", 0, 1, true, &d, e)) < 0)
		return ret;
	if (ret) {
		q->flags |= SKV_REQUEST_TOP_P;
		q->top_p = (float)d;
	}
	/* vLLM's -1 (and 0) mean no top-k cut */
	if ((ret = want_int(root, "top_k", -1, UINT32_MAX, &x, e)) < 0)
		return ret;
	if (ret) {
		q->flags |= SKV_REQUEST_TOP_K;
		q->top_k = x < 0 ? 0 : (uint32_t)x;
	}
	if ((ret = want_int(root, "seed", INT64_MIN, INT64_MAX, &x, e)) < 0)
		return ret;
	if (ret) {
		q->flags |= SKV_REQUEST_SEED;
		q->seed = (uint64_t)x;
	}
	if ((ret = want_int(root, "n", INT64_MIN, INT64_MAX, &x, e)) < 0)
		return ret;
	if (ret && x != 1)
		return skv_http_error_set(e, 400, NULL, "n", "n is %lld; one choice per request is served (n = 1)",
					  (long long)x);
	if ((ret = parse_stop(root, r, e)) < 0)
		return ret;
	if ((v = field(root, "user")) && !json_object_is_type(v, json_type_string))
		return skv_http_error_set(e, 400, NULL, "user", "user must be a string, not %s", type_name(v));

	bool b = false;
	if ((ret = want_bool(root, "ignore_eos", &b, e)) < 0)
		return ret;
	if (b)
		q->flags |= SKV_REQUEST_IGNORE_EOS;
	if ((ret = want_bool(root, "stream", &r->stream, e)) < 0)
		return ret;
	if ((v = field(root, "stream_options"))) {
		if (!json_object_is_type(v, json_type_object))
			return skv_http_error_set(e, 400, NULL, "stream_options", "stream_options must be an object, not %s",
						  type_name(v));
		if (!r->stream)
			return skv_http_error_set(e, 400, NULL, "stream_options",
						  "stream_options is only allowed with stream: true");
		if ((ret = want_bool(v, "include_usage", &r->include_usage, e)) < 0) {
			skv_strscpy(e->param, "stream_options.include_usage", sizeof(e->param));
			return ret;
		}
	}
	return refuse_unsupported(root, r->endpoint, e);
}

int skv_http_req_parse(enum skv_http_endpoint endpoint, const char *body, size_t len, struct skv_http_req *ret,
		       struct skv_http_error *err)
{
	_cleanup_json_ json_object *root = NULL;
	struct skv_http_req r = {.endpoint = endpoint};
	json_tokener *tok;
	enum json_tokener_error jerr;
	size_t end;
	int rc;

	skv_request_init(&r.req);
	if (len == 0)
		return skv_http_error_set(err, 400, NULL, NULL, "the request body is empty; a JSON object was expected");
	if (len > INT32_MAX)
		return skv_http_error_set(err, 413, NULL, NULL, "the request body is too large");
	tok = json_tokener_new_ex(JSON_DEPTH);
	if (!tok)
		return -ENOMEM;
	json_tokener_set_flags(tok, JSON_TOKENER_STRICT | JSON_TOKENER_VALIDATE_UTF8);
	root = json_tokener_parse_ex(tok, body, (int)len);
	jerr = json_tokener_get_error(tok);
	end = json_tokener_get_parse_end(tok);
	json_tokener_free(tok);
	if (jerr == json_tokener_continue || (!root && jerr == json_tokener_success))
		return skv_http_error_set(err, 400, NULL, NULL, "the request body is not valid JSON: it ends early");
	if (jerr != json_tokener_success)
		return skv_http_error_set(err, 400, NULL, NULL, "the request body is not valid JSON: %s (at byte %zu)",
					  json_tokener_error_desc(jerr), end);
	for (; end < len; end++)
		if (body[end] != ' ' && body[end] != '\t' && body[end] != '\r' && body[end] != '\n')
			return skv_http_error_set(err, 400, NULL, NULL,
						  "the request body is not valid JSON: text after the object (at byte %zu)",
						  end);
	if (!json_object_is_type(root, json_type_object))
		return skv_http_error_set(err, 400, NULL, NULL, "the request body must be a JSON object, not %s",
					  type_name(root));
	rc = parse_fields(root, &r, err);
	if (rc < 0) {
		skv_http_req_done(&r);
		if (rc == -ENOMEM)
			skv_http_error_set(err, 500, NULL, NULL, "out of memory");
		return rc;
	}
	*ret = r;
	/* the only pointer into the struct itself */
	ret->req.stop = ret->req.n_stop ? ret->stop : NULL;
	return 0;
}

void skv_http_req_done(struct skv_http_req *r)
{
	if (!r)
		return;
	free(r->model);
	free(r->prompt);
	free(r->ids);
	if (r->contents)
		for (size_t i = 0; i < r->req.n_messages; i++)
			free(r->contents[i]);
	free(r->contents);
	free(r->messages);
	for (size_t i = 0; i < SKV_HTTP_MAX_STOP; i++)
		free(r->stop_buf[i]);
	memset(r, 0, sizeof(*r));
}

/* ---- responses ---- */

static char *to_string(json_object *o)
{
	const char *s = json_object_to_json_string_ext(o, JSON_C_TO_STRING_PLAIN | JSON_C_TO_STRING_NOSLASHESCAPE);
	return s ? strdup(s) : NULL;
}

char *skv_http_error_json(const struct skv_http_error *e)
{
	_cleanup_json_ json_object *root = json_object_new_object();
	json_object *o = json_object_new_object();
	json_object_object_add(root, "error", o);
	json_object_object_add(o, "message", json_object_new_string(e->message));
	json_object_object_add(o, "type", json_object_new_string(e->type ? e->type : TYPE_INVALID));
	json_object_object_add(o, "param", e->param[0] ? json_object_new_string(e->param) : NULL);
	json_object_object_add(o, "code", e->code ? json_object_new_string(e->code) : NULL);
	return to_string(root);
}

void skv_http_error_from_final(enum skv_http_endpoint endpoint, const struct skv_event *f, struct skv_http_error *e)
{
	const char *msg = f->message ? f->message : "";
	const char *prompt = endpoint == SKV_HTTP_ENDPOINT_CHAT ? "messages" : "prompt";

	if (f->finish == SKV_FINISH_REASON_CANCELLED) {
		skv_http_error_set(e, 503, "cancelled", NULL, "the request was cancelled in skvd (by its operator)");
		return;
	}
	switch (f->error) {
	case SKV_ERROR_CODE_INVALID:
		skv_http_error_set(e, 400, NULL, NULL, "%s", msg);
		break;
	case SKV_ERROR_CODE_CONTEXT:
		skv_http_error_set(e, 400, "context_length_exceeded", prompt, "%s", msg);
		break;
	case SKV_ERROR_CODE_BUSY:
		skv_http_error_set(e, 429, "rate_limit_exceeded", NULL, "%s", msg);
		e->retry_after_s = SKV_MAX(1u, SKV_DIV_UP(f->retry_after_ms, 1000u));
		break;
	case SKV_ERROR_CODE_SHUTTING_DOWN:
		skv_http_error_set(e, 503, "shutting_down", NULL, "%s", msg);
		e->retry_after_s = 1;
		break;
	case SKV_ERROR_CODE_WORKER_LOST:
		skv_http_error_set(e, 503, "worker_lost", NULL, "%s", msg);
		e->retry_after_s = 1;
		break;
	case SKV_ERROR_CODE_TIMEOUT:
		skv_http_error_set(e, 504, "timeout", NULL, "%s", msg);
		break;
	default:
		skv_http_error_set(e, 500, NULL, NULL, "%s (%s)", msg, skv_error_name(f->error));
		break;
	}
	if (!e->message[0])
		snprintf(e->message, sizeof(e->message), "%s", skv_error_name(f->error));
}

const char *skv_http_finish_reason(enum skv_finish_reason f)
{
	return f == SKV_FINISH_REASON_LENGTH ? "length" : "stop";
}

static json_object *usage_object(uint32_t prompt, uint32_t completion)
{
	json_object *u = json_object_new_object();
	json_object_object_add(u, "prompt_tokens", json_object_new_int64(prompt));
	json_object_object_add(u, "completion_tokens", json_object_new_int64(completion));
	json_object_object_add(u, "total_tokens", json_object_new_int64((int64_t)prompt + completion));
	return u;
}

static json_object *envelope(enum skv_http_endpoint ep, const struct skv_http_meta *m, bool chunk)
{
	json_object *o = json_object_new_object();
	const char *object = ep == SKV_HTTP_ENDPOINT_CHAT ? (chunk ? "chat.completion.chunk" : "chat.completion")
							  : "text_completion";
	json_object_object_add(o, "id", json_object_new_string(m->id));
	json_object_object_add(o, "object", json_object_new_string(object));
	json_object_object_add(o, "created", json_object_new_int64(m->created));
	json_object_object_add(o, "model", json_object_new_string(m->model));
	json_object_object_add(o, "system_fingerprint", json_object_new_string(SKV_HTTP_FINGERPRINT));
	return o;
}

char *skv_http_response_json(enum skv_http_endpoint ep, const struct skv_http_meta *m, const char *text, size_t len,
			     enum skv_finish_reason finish, uint32_t prompt_tokens, uint32_t completion_tokens)
{
	_cleanup_json_ json_object *root = envelope(ep, m, false);
	json_object *choices = json_object_new_array(), *c = json_object_new_object();
	json_object_array_add(choices, c);
	json_object_object_add(c, "index", json_object_new_int(0));
	if (ep == SKV_HTTP_ENDPOINT_CHAT) {
		json_object *msg = json_object_new_object();
		json_object_object_add(msg, "role", json_object_new_string("assistant"));
		json_object_object_add(msg, "content", json_object_new_string_len(text, (int)len));
		json_object_object_add(c, "message", msg);
	} else {
		json_object_object_add(c, "text", json_object_new_string_len(text, (int)len));
	}
	json_object_object_add(c, "logprobs", NULL);
	json_object_object_add(c, "finish_reason", json_object_new_string(skv_http_finish_reason(finish)));
	json_object_object_add(root, "choices", choices);
	json_object_object_add(root, "usage", usage_object(prompt_tokens, completion_tokens));
	return to_string(root);
}

char *skv_http_chunk_sse(enum skv_http_endpoint ep, const struct skv_http_meta *m, const struct skv_http_chunk *ch,
			 size_t *ret_len)
{
	_cleanup_json_ json_object *root = envelope(ep, m, true);
	json_object *choices = json_object_new_array();
	json_object_object_add(root, "choices", choices);
	if (!ch->usage_only) {
		json_object *c = json_object_new_object();
		json_object_array_add(choices, c);
		json_object_object_add(c, "index", json_object_new_int(0));
		if (ep == SKV_HTTP_ENDPOINT_CHAT) {
			json_object *delta = json_object_new_object();
			if (ch->first)
				json_object_object_add(delta, "role", json_object_new_string("assistant"));
			if (ch->len || ch->first)
				json_object_object_add(delta, "content", json_object_new_string_len(ch->text ? ch->text : "",
												    (int)ch->len));
			json_object_object_add(c, "delta", delta);
		} else {
			json_object_object_add(c, "text", json_object_new_string_len(ch->text ? ch->text : "", (int)ch->len));
		}
		json_object_object_add(c, "logprobs", NULL);
		json_object_object_add(c, "finish_reason", ch->finish != SKV_FINISH_REASON_NONE
								    ? json_object_new_string(skv_http_finish_reason(ch->finish))
								    : NULL);
	}
	if (ch->usage_only)
		json_object_object_add(root, "usage", usage_object(ch->prompt_tokens, ch->completion_tokens));
	else if (ch->include_usage)
		json_object_object_add(root, "usage", NULL);

	const char *s = json_object_to_json_string_ext(root, JSON_C_TO_STRING_PLAIN | JSON_C_TO_STRING_NOSLASHESCAPE);
	if (!s)
		return NULL;
	size_t n = strlen(s);
	char *out = malloc(n + 9);
	if (!out)
		return NULL;
	memcpy(out, "data: ", 6);
	memcpy(out + 6, s, n);
	memcpy(out + 6 + n, "\n\n", 3);
	*ret_len = n + 8;
	return out;
}
