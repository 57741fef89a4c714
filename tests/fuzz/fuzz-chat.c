/* fuzz-chat: chat messages (the JSON clients send) parsed and rendered with both Llama-3
 * templates. Whatever parses and is UTF-8 must render; the rendering must contain every
 * message's role. */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "chat.h"

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
	for (int t = SKV_CHAT_TEMPLATE_LLAMA3; t <= SKV_CHAT_TEMPLATE_LLAMA31; t++) {
		struct skv_chat *c = NULL;
		char *text = NULL;
		if (skv_chat_new((enum skv_chat_template)t, &c, &err) < 0)
			abort();
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
