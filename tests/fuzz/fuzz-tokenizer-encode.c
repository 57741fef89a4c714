/* fuzz-tokenizer-encode: encoding arbitrary bytes with the synthetic Llama-3-shaped tokenizer
 * (the one skv-mkmodel ships). The first byte picks the flags. Invalid UTF-8 must fail at the
 * first bad byte's offset; valid text must round-trip through decode, and the streaming decoder
 * fed one id at a time must give the same text. */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "tokenizer-synth.h"
#include "tokenizer.h"

static struct skv_tokenizer *tok;
static struct skv_tokenizer_ws *ws, *ws2;
static char *piece;

int LLVMFuzzerInitialize(int *argc, char ***argv);
int LLVMFuzzerInitialize(int *argc, char ***argv)
{
	char *tj, *cj;
	size_t tl, cl;
	struct skv_err err = {0};
	(void)argc;
	(void)argv;
	if (skv_tokenizer_synth(1024, &tj, &tl, &cj, &cl, &err) < 0 || skv_tokenizer_parse(tj, tl, "synth", &tok, &err) < 0 ||
	    skv_tokenizer_ws_new(tok, &ws) < 0 || skv_tokenizer_ws_new(tok, &ws2) < 0) {
		fprintf(stderr, "fuzz-tokenizer-encode: %s\n", err.msg);
		abort();
	}
	free(tj);
	free(cj);
	piece = malloc(skv_tokenizer_stream_bound(tok));
	return 0;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);
int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	const int32_t *ids;
	const char *back;
	struct skv_err err = {0};
	if (size == 0)
		return 0;
	unsigned flags = data[0] & (SKV_TOKENIZER_ADD_SPECIAL | SKV_TOKENIZER_SPECIAL_AS_TEXT);
	const char *text = (const char *)data + 1;
	size_t len = size - 1;

	ssize_t n = skv_tokenizer_encode(tok, ws, text, len, flags, &ids, &err);
	size_t valid = skv_utf8_valid_prefix(text, len);
	if (valid < len) {
		char want[64];
		snprintf(want, sizeof(want), "byte offset %zu ", valid);
		if (n != -EILSEQ || !strstr(err.msg, want))
			abort();
		return 0;
	}
	if (n < 0)
		abort();
	for (ssize_t i = 0; i < n; i++)
		if (ids[i] < 0 || (uint32_t)ids[i] >= skv_tokenizer_n_ids(tok))
			abort();
	/* without the post-processor's BOS, decoding gives the text back exactly */
	size_t skip = (flags & SKV_TOKENIZER_ADD_SPECIAL) ? 1 : 0;
	if ((size_t)n < skip)
		abort();
	ssize_t bl = skv_tokenizer_decode(tok, ws2, ids + skip, (size_t)n - skip, 0, &back, &err);
	if (bl < 0 || (size_t)bl != len || memcmp(back, text, len))
		abort();
	/* streaming gives the same bytes, in whole characters */
	struct skv_tokenizer_stream s;
	size_t at = 0, cap = skv_tokenizer_stream_bound(tok);
	skv_tokenizer_stream_init(&s, 0);
	for (ssize_t i = (ssize_t)skip; i <= n; i++) {
		ssize_t k = i < n ? skv_tokenizer_stream_push(tok, &s, ids[i], piece, cap) : skv_tokenizer_stream_flush(&s, piece, cap);
		if (k < 0 || skv_utf8_valid_prefix(piece, (size_t)k) != (size_t)k || at + (size_t)k > len ||
		    memcmp(piece, text + at, (size_t)k))
			abort();
		at += (size_t)k;
	}
	if (at != len)
		abort();
	return 0;
}
