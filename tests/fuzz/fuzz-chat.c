/* fuzz-chat: chat messages (the JSON clients send) parsed and rendered with Meta's Llama-3
 * template (tests/fixtures/chat-templates/, read at start). Whatever parses, is UTF-8 and is not
 * empty must render, as valid UTF-8. */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "chat.h"
#include "skv-base.h"

#ifndef SKV_SRCDIR
#define SKV_SRCDIR "."
#endif

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);
int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	struct skv_chat_message *m = NULL;
	struct skv_err err = {0};
	size_t n;

	if (skv_chat_messages_parse((const char *)data, size, &m, &n, &err) < 0) {
		if (!err.msg[0])
			abort();
		return 0;
	}
	static const char *const files[] = {"meta-llama-Meta-Llama-3-8B-Instruct.jinja",
					    "HuggingFaceTB-SmolLM2-135M-Instruct.jinja"};
	for (size_t t = 0; t < 2; t++) {
		struct skv_chat *c = NULL;
		char *text = NULL, path[512], *tmpl = NULL;
		size_t tlen;
		snprintf(path, sizeof(path), "%s/tests/fixtures/chat-templates/%s", SKV_SRCDIR, files[t]);
		if (skv_read_file(path, 1 << 20, &tmpl, &tlen, &err) < 0 ||
		    skv_chat_new(tmpl, tlen, "<|begin_of_text|>", "<|eot_id|>", &c, &err) < 0)
			abort();
		free(tmpl);
		ssize_t len = skv_chat_render(c, m, n, size & 1, &text, &err);
		bool utf8 = true;
		for (size_t i = 0; i < n; i++)
			utf8 &= skv_utf8_valid_prefix(m[i].role, m[i].role_len) == m[i].role_len &&
				skv_utf8_valid_prefix(m[i].content, m[i].content_len) == m[i].content_len;
		if ((len < 0) != (n == 0 || !utf8))
			abort();
		if (len >= 0 && (strlen(text) > (size_t)len || skv_utf8_valid_prefix(text, (size_t)len) != (size_t)len))
			abort();
		free(text);
		skv_chat_free(c);
	}
	free(m);
	return 0;
}
