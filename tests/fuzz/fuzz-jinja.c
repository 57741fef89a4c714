/* fuzz-jinja: hostile chat templates. The input is a template; it is parsed and, when it parses,
 * rendered with a small conversation under tight bounds. Whatever happens must end in a render
 * or an error with a message: no crash, no hang (the step bound), no unbounded output. Seeds:
 * the real templates of tests/fixtures/chat-templates/ (corpus/fuzz-jinja/). */
#include <json-c/json.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "jinja.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);
int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	static json_object *vars;
	struct skv_jinja *t = NULL;
	struct skv_err err = {0};
	struct skv_jinja_render_opts o = {
		.limits = {.max_steps = 200000, .max_output = 1 << 16, .max_memory = 32 << 20, .max_depth = 100},
		.now = 1725357600,
	};
	char *text = NULL;

	if (!vars)
		vars = json_tokener_parse(
			"{\"messages\": [{\"role\": \"system\", \"content\": \" s \"}, {\"role\": \"user\", \"content\": "
			"\"hi <|eot_id|>\"}, {\"role\": \"assistant\", \"content\": \"ok\", \"tool_calls\": [{\"id\": "
			"\"abcdefghi\", \"type\": \"function\", \"function\": {\"name\": \"f\", \"arguments\": {\"a\": "
			"[1, 2.5, null]}}}]}, {\"role\": \"tool\", \"content\": \"{}\"}], \"tools\": [{\"type\": "
			"\"function\", \"function\": {\"name\": \"f\", \"parameters\": {}}}], \"documents\": null, "
			"\"add_generation_prompt\": true, \"bos_token\": \"<s>\", \"eos_token\": \"</s>\"}");
	if (skv_jinja_parse((const char *)data, size, "fuzz", &t, &err) < 0) {
		if (!err.msg[0])
			abort();
		return 0;
	}
	ssize_t n = skv_jinja_render(t, vars, &o, &text, &err);
	if (n < 0 && !err.msg[0])
		abort();
	if (n >= 0 && ((size_t)n > o.limits.max_output || strlen(text) > (size_t)n))
		abort();
	free(text);
	skv_jinja_free(t);
	return 0;
}
