/* test-http: skv-http's pure parts: skv-http.ini (http/config.c), the API keys file, and the
 * OpenAI request bodies and response bodies (http/api.c). The running gateway is tested end to
 * end with the openai client by tests/test-http-e2e.sh.
 */
#include <json-c/json.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "http-api.h"
#include "http-config.h"
#include "test-util.h"

static const char *srcdir(void)
{
	const char *s = getenv("SKV_SRCDIR");
	if (!s) {
		fprintf(stderr, "test: SKV_SRCDIR is not set (run through meson test)\n");
		exit(77);
	}
	return s;
}

/* ---- skv-http.ini ---- */

static int parse_cfg(const char *text, struct skv_http_config *c, struct skv_err *err)
{
	return skv_http_config_parse(text, strlen(text), "t.ini", c, err);
}

static void expect_cfg_error(const char *text, const char *want)
{
	struct skv_http_config c;
	struct skv_err err = {0};
	if (parse_cfg(text, &c, &err) >= 0)
		fail_msg("accepted: %s", text);
	if (!strstr(err.msg, want))
		fail_msg("message \"%s\" lacks \"%s\"", err.msg, want);
}

static char *dump_cfg(const struct skv_http_config *c)
{
	char *s = NULL;
	size_t n = 0;
	FILE *f = open_memstream(&s, &n);
	assert_int_equal(skv_http_config_write(c, f), 0);
	fclose(f);
	return s;
}

static void test_config_shipped(void **state)
{
	(void)state;
	struct skv_http_config def, c;
	struct skv_err err = {0};
	char *p = NULL, *mp = NULL;

	assert_true(asprintf(&p, "%s/etc/skv-http.ini", srcdir()) > 0);
	assert_true(asprintf(&mp, "%s/docs/man/skv-http.ini.5", srcdir()) > 0);
	skv_http_config_defaults(&def);
	if (skv_http_config_load(p, &c, &err) < 0)
		fail_msg("%s", err.msg);
	char *a = dump_cfg(&c), *b = dump_cfg(&def);
	assert_string_equal(a, b); /* the shipped file is the defaults */

	/* every key is set in the shipped file and documented in skv-http.ini(5) */
	char *shipped = tu_slurp(p, NULL), *man = tu_slurp(mp, NULL), *save = NULL;
	unsigned n = 0;
	for (char *line = strtok_r(b, "\n", &save); line; line = strtok_r(NULL, "\n", &save)) {
		char key[64], want[96], want_empty[96];
		if (line[0] == '[') {
			snprintf(want, sizeof(want), "\n%s\n", line);
			if (!strstr(shipped, want))
				fail_msg("etc/skv-http.ini has no %s section", line);
			continue;
		}
		assert_int_equal(sscanf(line, "%63[a-z_] =", key), 1);
		snprintf(want, sizeof(want), "\n%s = ", key);
		snprintf(want_empty, sizeof(want_empty), "\n%s =\n", key);
		if (!strstr(shipped, want) && !strstr(shipped, want_empty))
			fail_msg("etc/skv-http.ini does not set %s", key);
		snprintf(want, sizeof(want), "\n.B %s\n", key);
		if (!strstr(man, want))
			fail_msg("skv-http.ini(5) does not document %s (as \".B %s\")", key, key);
		n++;
	}
	assert_int_equal(n, 13);
	free(a);
	free(b);
	free(shipped);
	free(man);
	free(p);
	free(mp);
}

static void test_config_values(void **state)
{
	(void)state;
	struct skv_http_config c;
	struct skv_err err = {0};

	if (parse_cfg("[http]\nlisten = 127.0.0.1:9000, [::1]:9001\n[limits]\nmax_body_bytes = 64K\n"
		      "max_concurrent_requests = 8\nmax_connections = 8\n[skvd]\nadmin_socket =\n",
		      &c, &err) < 0)
		fail_msg("%s", err.msg);
	assert_int_equal(c.n_listen, 2);
	assert_true(c.listen[0].loopback && c.listen[1].loopback);
	assert_int_equal(c.listen[1].addr.ss_family, AF_INET6);
	assert_int_equal(ntohs(((struct sockaddr_in6 *)&c.listen[1].addr)->sin6_port), 9001);
	assert_int_equal(c.max_body_bytes, 64 * 1024);
	assert_string_equal(c.admin_socket, "");

	/* a public address needs keys, or the explicit opt-out */
	expect_cfg_error("[http]\nlisten = 0.0.0.0:8000\n", "t.ini:2: [http] listen: 0.0.0.0:8000 is not a loopback address");
	if (parse_cfg("[http]\nlisten = 0.0.0.0:8000\nallow_unauthenticated = yes\n", &c, &err) < 0)
		fail_msg("%s", err.msg);
	if (parse_cfg("[http]\nlisten = 10.1.2.3:443\napi_keys_file = /etc/keys\n", &c, &err) < 0)
		fail_msg("%s", err.msg);
	assert_false(c.listen[0].loopback);

	expect_cfg_error("[http]\nlisten = localhost:8000\n", "[http] listen: \"localhost:8000\" is not ADDR:PORT");
	expect_cfg_error("[http]\nlisten = 127.0.0.1:0\n", "is not ADDR:PORT");
	expect_cfg_error("[http]\nlisten = 127.0.0.1:70000\n", "is not ADDR:PORT");
	expect_cfg_error("[http]\nlisten = [::1:80\n", "is not ADDR:PORT");
	expect_cfg_error("[http]\nlisten =\n", "must name at least one");
	expect_cfg_error("[limits]\nmax_concurrent_requests = 0\n",
			 "t.ini:2: [limits] max_concurrent_requests: 0 is out of range (1 to 65536)");
	expect_cfg_error("[limits]\nmax_body_bytes = 1G\n", "[limits] max_body_bytes: 1G is out of range (4096 to 268435456)");
	expect_cfg_error("[limits]\nidle_timeout_s = -1\n", "is not a whole number");
	expect_cfg_error("[limits]\nmax_connections = 10\n", "[limits] max_connections: 10 is less than [limits] max_concurrent_requests (256)");
	expect_cfg_error("[http]\ntls_cert = /etc/c.pem\n", "[http] tls_cert: set without [http] tls_key");
	expect_cfg_error("[http]\napi_keys_file = keys\n", "not an absolute path");
	expect_cfg_error("[http]\nallow_unauthenticated = maybe\n", "is not one of yes, no");
	expect_cfg_error("[http]\nlisten = 127.0.0.1:1\nlisten = 127.0.0.1:2\n", "t.ini:3: [http] listen: set twice (first on line 2)");
	expect_cfg_error("[http]\nport = 80\n", "[http] port: unknown key ([http] has listen, api_keys_file");
	expect_cfg_error("[server]\nsocket = /x\n", "unknown section [server]");
	expect_cfg_error("[skvd]\nsocket =\n", "[skvd] socket: must not be empty");
	expect_cfg_error("listen = 1\n", "a key before any [section]");
	expect_cfg_error("[http]\nnonsense\n", "t.ini:2: expected \"key = value\"");
	expect_cfg_error("[skvd]\nconnect_timeout_ms = 99\n", "99 is out of range (100 to 600000)");
}

/* ---- the API keys file ---- */

static void test_keys(void **state)
{
	(void)state;
	struct skv_http_keys k;
	struct skv_err err = {0};
	const char *text = "# keys\n\n  sk-first-key-1234  \nsk-second-key-5678\n";

	if (skv_http_keys_parse(text, strlen(text), "keys", &k, &err) < 0)
		fail_msg("%s", err.msg);
	assert_int_equal(k.n, 2);
	assert_true(skv_http_keys_match(&k, "sk-first-key-1234", 17));
	assert_true(skv_http_keys_match(&k, "sk-second-key-5678", 18));
	assert_false(skv_http_keys_match(&k, "sk-first-key-123", 16));
	assert_false(skv_http_keys_match(&k, "sk-first-key-12345", 18));
	assert_false(skv_http_keys_match(&k, "", 0));
	assert_false(skv_http_keys_match(&k, "# keys", 6));
	skv_http_keys_done(&k);

	assert_true(skv_http_keys_parse("ok-key-123\nshort\n", 17, "keys", &k, &err) < 0);
	assert_non_null(strstr(err.msg, "keys:2: the key is not 8 to 256 characters long"));
	assert_true(skv_http_keys_parse("has space inside\n", 17, "keys", &k, &err) < 0);
	assert_non_null(strstr(err.msg, "keys:1: the key holds a space"));
}

/* ---- requests ---- */

static void parse_ok(enum skv_http_endpoint ep, const char *body, struct skv_http_req *r)
{
	struct skv_http_error e;
	if (skv_http_req_parse(ep, body, strlen(body), r, &e) < 0)
		fail_msg("refused (%d %s): %s", e.status, e.param, e.message);
}

static void expect_refused(enum skv_http_endpoint ep, const char *body, int status, const char *param,
			   const char *msg_part)
{
	struct skv_http_req r;
	struct skv_http_error e;
	if (skv_http_req_parse(ep, body, strlen(body), &r, &e) == 0)
		fail_msg("accepted: %s", body);
	if (e.status != status || strcmp(e.param, param) || !strstr(e.message, msg_part))
		fail_msg("%s: got %d param \"%s\" \"%s\"; want %d \"%s\" \"%s\"", body, e.status, e.param, e.message, status,
			 param, msg_part);
	/* the error object is valid JSON with the fields OpenAI's clients read */
	char *j = skv_http_error_json(&e);
	json_object *o = json_tokener_parse(j), *err, *v;
	assert_non_null(o);
	assert_true(json_object_object_get_ex(o, "error", &err));
	assert_true(json_object_object_get_ex(err, "message", &v));
	assert_string_equal(json_object_get_string(v), e.message);
	assert_true(json_object_object_get_ex(err, "type", &v));
	assert_true(json_object_object_get_ex(err, "param", &v));
	if (param[0])
		assert_string_equal(json_object_get_string(v), param);
	else
		assert_null(v);
	json_object_put(o);
	free(j);
}

static void test_chat_request(void **state)
{
	(void)state;
	struct skv_http_req r;

	parse_ok(SKV_HTTP_ENDPOINT_CHAT,
		 "{\"model\":\"m\",\"messages\":[{\"role\":\"system\",\"content\":\"be brief\"},"
		 "{\"role\":\"user\",\"content\":[{\"type\":\"text\",\"text\":\"a\"},{\"type\":\"text\",\"text\":\"b\"}]},"
		 "{\"role\":\"assistant\",\"content\":\"ok\"},{\"role\":\"developer\",\"content\":\"\"}],"
		 "\"max_tokens\":5,\"max_completion_tokens\":7,\"temperature\":0,\"top_p\":0.5,\"top_k\":-1,"
		 "\"seed\":-3,\"stop\":[\"x\",\"yz\"],\"n\":1,\"user\":\"u\",\"stream\":true,"
		 "\"stream_options\":{\"include_usage\":true},\"logprobs\":false,\"unknown_field\":{\"a\":1},"
		 "\"presence_penalty\":0,\"response_format\":{\"type\":\"text\"}}",
		 &r);
	assert_string_equal(r.model, "m");
	assert_int_equal(r.req.kind, SKV_PROMPT_CHAT);
	assert_int_equal(r.req.n_messages, 4);
	assert_int_equal(r.req.messages[0].role, SKV_MESSAGE_SYSTEM);
	assert_string_equal(r.req.messages[1].content, "a\nb");
	assert_int_equal(r.req.messages[1].role, SKV_MESSAGE_USER);
	assert_int_equal(r.req.messages[2].role, SKV_MESSAGE_ASSISTANT);
	assert_int_equal(r.req.messages[3].role, SKV_MESSAGE_SYSTEM);
	assert_int_equal(r.req.messages[3].len, 0);
	assert_int_equal(r.req.max_tokens, 7); /* max_completion_tokens wins */
	assert_true(r.req.flags & SKV_REQUEST_TEMPERATURE);
	assert_true(r.req.temperature == 0.0f);
	assert_true(r.req.top_p == 0.5f);
	assert_true((r.req.flags & SKV_REQUEST_TOP_K) && r.req.top_k == 0);
	assert_true((r.req.flags & SKV_REQUEST_SEED) && r.req.seed == (uint64_t)-3);
	assert_int_equal(r.req.n_stop, 2);
	assert_string_equal(r.req.stop[1], "yz");
	assert_ptr_equal(r.req.stop, r.stop); /* into the caller's copy, not the parser's frame */
	assert_true(r.stream && r.include_usage);
	skv_http_req_done(&r);

	/* the minimum: sampling left to the model's defaults */
	parse_ok(SKV_HTTP_ENDPOINT_CHAT, "{\"model\":\"m\",\"messages\":[{\"role\":\"user\",\"content\":\"hi\"}],\"stop\":\"\\n\"}", &r);
	assert_int_equal(r.req.flags, 0);
	assert_int_equal(r.req.max_tokens, 0);
	assert_int_equal(r.req.n_stop, 1);
	assert_string_equal(r.req.stop[0], "\n");
	assert_false(r.stream);
	skv_http_req_done(&r);
}

static void test_completion_request(void **state)
{
	(void)state;
	struct skv_http_req r;

	parse_ok(SKV_HTTP_ENDPOINT_COMPLETIONS, "{\"model\":\"m\",\"prompt\":\"Once\",\"max_tokens\":3.0,\"ignore_eos\":true}", &r);
	assert_int_equal(r.req.kind, SKV_PROMPT_TEXT);
	assert_string_equal(r.req.text, "Once");
	assert_int_equal(r.req.text_len, 4);
	assert_int_equal(r.req.max_tokens, 3);
	assert_true(r.req.flags & SKV_REQUEST_IGNORE_EOS);
	skv_http_req_done(&r);

	parse_ok(SKV_HTTP_ENDPOINT_COMPLETIONS, "{\"model\":\"m\",\"prompt\":[1,2,2147483647]}", &r);
	assert_int_equal(r.req.kind, SKV_PROMPT_IDS);
	assert_int_equal(r.req.n_ids, 3);
	assert_int_equal(r.req.ids[2], 2147483647);
	skv_http_req_done(&r);
	parse_ok(SKV_HTTP_ENDPOINT_COMPLETIONS, "{\"model\":\"m\",\"prompt\":[[5,6]]}", &r);
	assert_int_equal(r.req.kind, SKV_PROMPT_IDS);
	assert_int_equal(r.req.n_ids, 2);
	skv_http_req_done(&r);
	parse_ok(SKV_HTTP_ENDPOINT_COMPLETIONS, "{\"model\":\"m\",\"prompt\":[\"only one\"]}  \n", &r);
	assert_string_equal(r.req.text, "only one");
	skv_http_req_done(&r);
}

static void test_refusals(void **state)
{
	(void)state;
	const enum skv_http_endpoint C = SKV_HTTP_ENDPOINT_CHAT, P = SKV_HTTP_ENDPOINT_COMPLETIONS;
#define MSG "\"messages\":[{\"role\":\"user\",\"content\":\"hi\"}]"

	expect_refused(C, "", 400, "", "empty");
	expect_refused(C, "{\"model\":", 400, "", "not valid JSON: it ends early");
	expect_refused(C, "{\"model\":\"m\"} x", 400, "", "not valid JSON");
	expect_refused(C, "{\"model\" 1}", 400, "", "not valid JSON");
	expect_refused(C, "{model:1}", 400, "", "not valid JSON");
	expect_refused(C, "{\"model\":\"\xff\"}", 400, "", "not valid JSON");
	expect_refused(C, "[1,2]", 400, "", "must be a JSON object, not an array");
	expect_refused(C, "{" MSG "}", 400, "model", "model is missing");
	expect_refused(C, "{\"model\":5," MSG "}", 400, "model", "model must be a string, not a number");
	expect_refused(C, "{\"model\":\"m\"}", 400, "messages", "messages is missing");
	expect_refused(C, "{\"model\":\"m\",\"messages\":[]}", 400, "messages", "1 to 4096");
	expect_refused(C, "{\"model\":\"m\",\"messages\":\"hi\"}", 400, "messages", "must be an array, not a string");
	expect_refused(C, "{\"model\":\"m\",\"messages\":[{\"role\":\"tool\",\"content\":\"x\"}]}", 400, "messages[0].role",
		       "tool calls are not supported");
	expect_refused(C, "{\"model\":\"m\",\"messages\":[{\"role\":\"user\"}]}", 400, "messages[0].content", "missing");
	expect_refused(C, "{\"model\":\"m\",\"messages\":[{\"role\":\"user\",\"content\":3}]}", 400, "messages[0].content",
		       "must be a string or an array of text parts, not a number");
	expect_refused(C,
		       "{\"model\":\"m\",\"messages\":[{\"role\":\"user\",\"content\":[{\"type\":\"image_url\","
		       "\"image_url\":{}}]}]}",
		       400, "messages[0].content[0]", "only text content is served");
	expect_refused(C, "{\"model\":\"m\",\"messages\":[{\"role\":\"user\",\"content\":\"a\\u0000b\"}]}", 400,
		       "messages[0].content", "NUL");
	expect_refused(C, "{\"model\":\"m\"," MSG ",\"max_tokens\":\"8\"}", 400, "max_tokens",
		       "max_tokens must be an integer, not a string");
	expect_refused(C, "{\"model\":\"m\"," MSG ",\"max_tokens\":0}", 400, "max_tokens", "max_tokens is 0; it must be 1 to");
	expect_refused(C, "{\"model\":\"m\"," MSG ",\"max_tokens\":2.5}", 400, "max_tokens", "must be an integer, not 2.5");
	expect_refused(C, "{\"model\":\"m\"," MSG ",\"max_completion_tokens\":99999999999}", 400, "max_completion_tokens",
		       "it must be 1 to 4294967295");
	expect_refused(C, "{\"model\":\"m\"," MSG ",\"temperature\":2.5}", 400, "temperature", "at most 2");
	expect_refused(C, "{\"model\":\"m\"," MSG ",\"temperature\":\"hot\"}", 400, "temperature", "must be a number");
	expect_refused(C, "{\"model\":\"m\"," MSG ",\"top_p\":0}", 400, "top_p", "more than 0");
	expect_refused(C, "{\"model\":\"m\"," MSG ",\"top_k\":-2}", 400, "top_k", "-1 to");
	expect_refused(C, "{\"model\":\"m\"," MSG ",\"seed\":1e30}", 400, "seed", "must be an integer");
	expect_refused(C, "{\"model\":\"m\"," MSG ",\"n\":2}", 400, "n", "one choice per request");
	expect_refused(C, "{\"model\":\"m\"," MSG ",\"stop\":5}", 400, "stop", "a string or a list of strings");
	expect_refused(C, "{\"model\":\"m\"," MSG ",\"stop\":[\"a\",\"\"]}", 400, "stop[1]", "empty");
	expect_refused(C, "{\"model\":\"m\"," MSG ",\"stop\":[\"a\",7]}", 400, "stop[1]", "must be a string");
	expect_refused(C, "{\"model\":\"m\"," MSG ",\"user\":1}", 400, "user", "must be a string");
	expect_refused(C, "{\"model\":\"m\"," MSG ",\"stream\":\"yes\"}", 400, "stream", "must be a boolean");
	expect_refused(C, "{\"model\":\"m\"," MSG ",\"stream_options\":{\"include_usage\":true}}", 400, "stream_options",
		       "only allowed with stream: true");
	expect_refused(C, "{\"model\":\"m\"," MSG ",\"stream\":true,\"stream_options\":{\"include_usage\":1}}", 400,
		       "stream_options.include_usage", "must be a boolean");
	expect_refused(C, "{\"model\":\"m\"," MSG ",\"logprobs\":true}", 400, "logprobs", "not served");
	expect_refused(C, "{\"model\":\"m\"," MSG ",\"top_logprobs\":2}", 400, "top_logprobs", "not served");
	expect_refused(C, "{\"model\":\"m\"," MSG ",\"tools\":[{\"type\":\"function\"}]}", 400, "tools", "not served");
	expect_refused(C, "{\"model\":\"m\"," MSG ",\"frequency_penalty\":0.5}", 400, "frequency_penalty", "must be 0");
	expect_refused(C, "{\"model\":\"m\"," MSG ",\"response_format\":{\"type\":\"json_object\"}}", 400,
		       "response_format", "structured output");
	expect_refused(C, "{\"model\":\"m\"," MSG ",\"logit_bias\":{\"5\":1}}", 400, "logit_bias", "not served");

	expect_refused(P, "{\"model\":\"m\"}", 400, "prompt", "prompt is missing");
	expect_refused(P, "{\"model\":\"m\",\"prompt\":\"\"}", 400, "prompt", "prompt is empty");
	expect_refused(P, "{\"model\":\"m\",\"prompt\":[\"a\",\"b\"]}", 400, "prompt", "a list of 2 prompts");
	expect_refused(P, "{\"model\":\"m\",\"prompt\":[]}", 400, "prompt", "a list of 0 prompts");
	expect_refused(P, "{\"model\":\"m\",\"prompt\":[1,-1]}", 400, "prompt", "prompt[1] is not a token id");
	expect_refused(P, "{\"model\":\"m\",\"prompt\":[1,\"a\"]}", 400, "prompt", "prompt[1] is not a token id");
	expect_refused(P, "{\"model\":\"m\",\"prompt\":[1,2147483648]}", 400, "prompt", "prompt[1] is not a token id");
	expect_refused(P, "{\"model\":\"m\",\"prompt\":[[]]}", 400, "prompt[0]", "1 to");
	expect_refused(P, "{\"model\":\"m\",\"prompt\":{}}", 400, "prompt", "must be a string or a list of token ids");
	expect_refused(P, "{\"model\":\"m\",\"prompt\":\"x\",\"logprobs\":1}", 400, "logprobs", "not served");
	expect_refused(P, "{\"model\":\"m\",\"prompt\":\"x\",\"echo\":true}", 400, "echo", "not served");
	expect_refused(P, "{\"model\":\"m\",\"prompt\":\"x\",\"best_of\":3}", 400, "best_of", "must be 1");
	expect_refused(P, "{\"model\":\"m\",\"prompt\":\"x\",\"suffix\":\"y\"}", 400, "suffix", "not served");
	/* nesting deeper than the parser's limit is refused, not a crash */
	char deep[400];
	size_t n = 0;
	n += (size_t)snprintf(deep, sizeof(deep), "{\"model\":\"m\",\"prompt\":\"x\",\"u\":");
	for (int i = 0; i < 100; i++)
		deep[n++] = '[';
	for (int i = 0; i < 100; i++)
		deep[n++] = ']';
	deep[n++] = '}';
	deep[n] = '\0';
	expect_refused(P, deep, 400, "", "not valid JSON");
#undef MSG
}

/* ---- responses ---- */

static json_object *get(json_object *o, const char *path)
{
	char buf[128], *save = NULL;
	skv_strscpy(buf, path, sizeof(buf));
	for (char *k = strtok_r(buf, ".", &save); k && o; k = strtok_r(NULL, ".", &save)) {
		if (k[0] >= '0' && k[0] <= '9')
			o = json_object_array_get_idx(o, (size_t)atoi(k));
		else if (!json_object_object_get_ex(o, k, &o))
			return NULL;
	}
	return o;
}

static void test_responses(void **state)
{
	(void)state;
	struct skv_http_meta m = {.id = "chatcmpl-1", .created = 1700000000, .model = "tiny"};

	char *s = skv_http_response_json(SKV_HTTP_ENDPOINT_CHAT, &m, "he said \"hi\"\n", 13, SKV_FINISH_REASON_LENGTH, 10, 4);
	json_object *o = json_tokener_parse(s);
	assert_non_null(o);
	assert_string_equal(json_object_get_string(get(o, "object")), "chat.completion");
	assert_string_equal(json_object_get_string(get(o, "id")), "chatcmpl-1");
	assert_int_equal(json_object_get_int64(get(o, "created")), 1700000000);
	assert_string_equal(json_object_get_string(get(o, "model")), "tiny");
	assert_string_equal(json_object_get_string(get(o, "system_fingerprint")), SKV_HTTP_FINGERPRINT);
	assert_string_equal(json_object_get_string(get(o, "choices.0.message.role")), "assistant");
	assert_string_equal(json_object_get_string(get(o, "choices.0.message.content")), "he said \"hi\"\n");
	assert_string_equal(json_object_get_string(get(o, "choices.0.finish_reason")), "length");
	assert_int_equal(json_object_get_int(get(o, "usage.total_tokens")), 14);
	json_object_put(o);
	free(s);

	s = skv_http_response_json(SKV_HTTP_ENDPOINT_COMPLETIONS, &m, "abc", 2, SKV_FINISH_REASON_STOP, 1, 2);
	o = json_tokener_parse(s);
	assert_string_equal(json_object_get_string(get(o, "object")), "text_completion");
	assert_string_equal(json_object_get_string(get(o, "choices.0.text")), "ab");
	assert_string_equal(json_object_get_string(get(o, "choices.0.finish_reason")), "stop");
	json_object_put(o);
	free(s);

	/* a chunk is one server-sent event: "data: JSON\n\n" */
	size_t len;
	struct skv_http_chunk ch = {.text = "x", .len = 1, .first = true, .include_usage = true};
	s = skv_http_chunk_sse(SKV_HTTP_ENDPOINT_CHAT, &m, &ch, &len);
	assert_int_equal(len, strlen(s));
	assert_memory_equal(s, "data: {", 7);
	assert_memory_equal(s + len - 2, "\n\n", 2);
	assert_null(memchr(s, '\n', len - 2));
	s[len - 2] = '\0';
	o = json_tokener_parse(s + 6);
	assert_string_equal(json_object_get_string(get(o, "object")), "chat.completion.chunk");
	assert_string_equal(json_object_get_string(get(o, "choices.0.delta.role")), "assistant");
	assert_string_equal(json_object_get_string(get(o, "choices.0.delta.content")), "x");
	assert_true(json_object_object_get_ex(o, "usage", NULL) && !get(o, "usage"));
	assert_null(get(o, "choices.0.finish_reason"));
	json_object_put(o);
	free(s);

	struct skv_http_chunk u = {.usage_only = true, .prompt_tokens = 3, .completion_tokens = 5};
	s = skv_http_chunk_sse(SKV_HTTP_ENDPOINT_COMPLETIONS, &m, &u, &len);
	s[len - 2] = '\0';
	o = json_tokener_parse(s + 6);
	assert_int_equal(json_object_array_length(get(o, "choices")), 0);
	assert_int_equal(json_object_get_int(get(o, "usage.total_tokens")), 8);
	json_object_put(o);
	free(s);

	/* skvd's refusals map to OpenAI's statuses */
	struct skv_event f = {.type = SKV_EVENT_FINAL, .finish = SKV_FINISH_REASON_ERROR, .message = "busy: queue full",
			      .error = SKV_ERROR_CODE_BUSY, .retry_after_ms = 1500};
	struct skv_http_error e;
	skv_http_error_from_final(SKV_HTTP_ENDPOINT_CHAT, &f, &e);
	assert_int_equal(e.status, 429);
	assert_int_equal(e.retry_after_s, 2);
	f.error = SKV_ERROR_CODE_CONTEXT;
	f.message = "prompt 9000 + max_tokens 100 > context 8192";
	skv_http_error_from_final(SKV_HTTP_ENDPOINT_COMPLETIONS, &f, &e);
	assert_int_equal(e.status, 400);
	assert_string_equal(e.code, "context_length_exceeded");
	assert_string_equal(e.param, "prompt");
	assert_string_equal(e.message, f.message);
	f.error = SKV_ERROR_CODE_SHUTTING_DOWN;
	skv_http_error_from_final(SKV_HTTP_ENDPOINT_CHAT, &f, &e);
	assert_int_equal(e.status, 503);
	f.error = SKV_ERROR_CODE_TIMEOUT;
	skv_http_error_from_final(SKV_HTTP_ENDPOINT_CHAT, &f, &e);
	assert_int_equal(e.status, 504);
	f.error = (enum skv_error_code)99;
	skv_http_error_from_final(SKV_HTTP_ENDPOINT_CHAT, &f, &e);
	assert_int_equal(e.status, 500);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_config_shipped), cmocka_unit_test(test_config_values),
		cmocka_unit_test(test_keys),	       cmocka_unit_test(test_chat_request),
		cmocka_unit_test(test_completion_request), cmocka_unit_test(test_refusals),
		cmocka_unit_test(test_responses),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
