/* fuzz-tokenizer-load: tokenizer.json parsing on arbitrary bytes. A file it accepts must then
 * encode and decode a fixed text (with every flag) without crashing, and give ids inside its
 * vocabulary. */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "tokenizer.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);
int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	static const char text[] = "Hello, world! I'm 12345 <|eot_id|><x> aa\r\n\t 😀 日本語 ab ab cafe\xcc\x81 x-y";
	struct skv_tokenizer *t = NULL;
	struct skv_tokenizer_ws *ws = NULL;
	struct skv_err err = {0};

	if (skv_tokenizer_parse((const char *)data, size, "fuzz.json", &t, &err) < 0) {
		if (!err.msg[0])
			abort();
		return 0;
	}
	if (skv_tokenizer_ws_new(t, &ws) < 0)
		abort();
	for (unsigned flags = 0; flags < 4; flags++) {
		const int32_t *ids;
		const char *out;
		ssize_t n = skv_tokenizer_encode(t, ws, text, strlen(text), flags, &ids, &err);
		if (n < 0)
			abort();
		for (ssize_t i = 0; i < n; i++)
			if (ids[i] < 0 || (uint32_t)ids[i] >= skv_tokenizer_n_ids(t))
				abort();
		int32_t *copy = malloc(((size_t)n + 1) * sizeof(int32_t));
		if (!copy)
			abort();
		memcpy(copy, ids, (size_t)n * sizeof(int32_t));
		if (skv_tokenizer_decode(t, ws, copy, (size_t)n, flags << 2, &out, &err) < 0)
			abort();
		free(copy);
	}
	skv_tokenizer_ws_free(ws);
	skv_tokenizer_free(t);
	return 0;
}
