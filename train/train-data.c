/* train-data.c: distillation data: plain text and chat conversations to tokens and a loss mask
 * (docs/distill.md). */
#include <errno.h>
#include <json-c/json.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "skv-json.h"
#include "chat.h"
#include "model-config.h"
#include "train.h"

#define MAX_DATA_BYTES (1ull << 30)

static int data_add(struct skv_tm_data *d, const int32_t *ids, size_t n, uint8_t mask, struct skv_err *err)
{
	if (d->n + n > d->cap) {
		size_t cap = SKV_MAX(d->cap * 2, d->n + n);
		int32_t *t = realloc(d->tok, cap * sizeof(*t));
		if (t)
			d->tok = t;
		uint8_t *m = realloc(d->mask, cap);
		if (m)
			d->mask = m;
		if (!t || !m)
			return skv_err_set(err, -ENOMEM, "out of memory");
		d->cap = cap;
	}
	memcpy(d->tok + d->n, ids, n * sizeof(*ids));
	memset(d->mask + d->n, mask, n);
	d->n += n;
	return 0;
}

static bool ends_with(const char *s, const char *suf)
{
	size_t a = strlen(s), b = strlen(suf);
	return a >= b && !strcmp(s + a - b, suf);
}

/* Renders msgs[0..k) (with the assistant header when gen) and tokenizes it (special tokens
 * matched: the template writes them). */
static ssize_t render_ids(const struct skv_chat *chat, const struct skv_tokenizer *tok,
			  const struct skv_chat_message *msgs, size_t k, bool gen, int32_t **ret, struct skv_err *err)
{
	_cleanup_free_ char *text = NULL;
	ssize_t len = skv_chat_render(chat, msgs, k, gen, &text, err);
	if (len < 0)
		return len;
	return skv_tokenizer_encode_alloc(tok, text, (size_t)len, 0, ret, err);
}

/* One JSONL line {"messages": [...]}: the whole conversation rendered with the chat template,
 * tokenized, and scored only where the next token belongs to an assistant message (the tokens
 * between the render of the messages before it with the assistant header and the render that
 * includes it). */
static int add_conversation(struct skv_tm_data *d, const struct skv_chat *chat, const struct skv_tokenizer *tok,
			    const char *line, size_t len, const char *where, struct skv_err *err)
{
	_cleanup_json_ struct json_object *o = NULL;
	struct json_object *arr;
	int r = skv_json_parse(line, len, where, &o, err);
	if (r < 0)
		return r;
	if (!json_object_is_type(o, json_type_object) || !json_object_object_get_ex(o, "messages", &arr) ||
	    !json_object_is_type(arr, json_type_array))
		return skv_err_set(err, -EINVAL, "%s: not an object with a \"messages\" array", where);
	size_t alen;
	const char *atext = json_object_to_json_string_length(arr, JSON_C_TO_STRING_PLAIN, &alen);
	_cleanup_free_ struct skv_chat_message *msgs = NULL;
	size_t nm;
	if ((r = skv_chat_messages_parse(atext, alen, &msgs, &nm, err)) < 0)
		return skv_err_prefix(err, r, "%s: ", where);
	_cleanup_free_ int32_t *all = NULL;
	ssize_t n = render_ids(chat, tok, msgs, nm, false, &all, err);
	if (n < 0)
		return skv_err_prefix(err, (int)n, "%s: ", where);
	_cleanup_free_ uint8_t *mask = calloc((size_t)n + 1, 1);
	if (!mask)
		return skv_err_set(err, -ENOMEM, "out of memory");
	size_t scored = 0;
	for (size_t k = 0; k < nm; k++) {
		if (msgs[k].role_len != 9 || memcmp(msgs[k].role, "assistant", 9))
			continue;
		_cleanup_free_ int32_t *pre = NULL, *upto = NULL;
		ssize_t a = render_ids(chat, tok, msgs, k, true, &pre, err), b;
		if (a < 0)
			return skv_err_prefix(err, (int)a, "%s: ", where);
		if ((b = render_ids(chat, tok, msgs, k + 1, false, &upto, err)) < 0)
			return skv_err_prefix(err, (int)b, "%s: ", where);
		if (a < 1 || b < a || b > n || memcmp(pre, all, (size_t)a * sizeof(*pre)) ||
		    memcmp(upto, all, (size_t)b * sizeof(*upto)))
			return skv_err_set(err, -EINVAL,
					   "%s: message %zu: the chat template's rendering of the conversation so far is "
					   "not a prefix of the whole one's tokens, so its assistant tokens cannot be found",
					   where, k + 1);
		for (ssize_t t = a; t < b; t++) /* position t - 1 predicts token t */
			mask[t - 1] = 1, scored++;
	}
	if (!scored)
		return skv_err_set(err, -EINVAL, "%s: no assistant message: nothing to learn from", where);
	/* the mask is per token pushed: add the tokens one run of equal mask at a time */
	size_t i = 0;
	while (i < (size_t)n) {
		size_t j = i;
		while (j < (size_t)n && mask[j] == mask[i])
			j++;
		if ((r = data_add(d, all + i, j - i, mask[i], err)) < 0)
			return r;
		i = j;
	}
	d->conversations++;
	return 0;
}

/* Every file tokenized and concatenated: plain text (BOS in front, every position scored), or a
 * FILE.jsonl of chat conversations (add_conversation). */
int skv_tm_data_read(const char *model, const struct skv_tokenizer *tok, uint32_t vocab, const char *const *files,
		     size_t n_files, struct skv_tm_data *d, struct skv_err *err)
{
	_cleanup_chat_ struct skv_chat *chat = NULL;
	for (size_t f = 0; f < n_files; f++) {
		_cleanup_free_ char *text = NULL;
		size_t len, first = d->n;
		int r = skv_read_file(files[f], MAX_DATA_BYTES, &text, &len, err);
		if (r < 0)
			return r;
		if (ends_with(files[f], ".jsonl")) {
			if (!chat && (r = skv_chat_load(model, NULL, &chat, err)) < 0)
				return skv_err_prefix(err, r, "--data %s: chat data needs the model's chat template: ", files[f]);
			size_t lineno = 0;
			for (char *line = text, *end; line < text + len; line = end + 1) {
				end = memchr(line, '\n', (size_t)(text + len - line));
				if (!end)
					end = text + len;
				lineno++;
				size_t ll = (size_t)(end - line);
				if (ll == 0 || strspn(line, " \t\r") >= ll)
					continue;
				char where[4200];
				snprintf(where, sizeof(where), "--data %s line %zu", files[f], lineno);
				if ((r = add_conversation(d, chat, tok, line, ll, where, err)) < 0)
					return r;
			}
		} else {
			_cleanup_free_ int32_t *ids = NULL;
			ssize_t k = skv_tokenizer_encode_alloc(tok, text, len,
							       SKV_TOKENIZER_ADD_SPECIAL | SKV_TOKENIZER_SPECIAL_AS_TEXT, &ids,
							       err);
			if (k < 0)
				return skv_err_prefix(err, (int)k, "--data %s: ", files[f]);
			if ((r = data_add(d, ids, (size_t)k, 1, err)) < 0)
				return r;
		}
		for (size_t i = first; i < d->n; i++)
			if ((uint32_t)d->tok[i] >= vocab)
				return skv_err_set(err, -EINVAL,
						   "--data %s: token id %d is outside the model's vocabulary (vocab_size %u): "
						   "the tokenizer does not belong to this model",
						   files[f], d->tok[i], vocab);
	}
	return 0;
}

void skv_tm_data_free(struct skv_tm_data *d)
{
	free(d->tok);
	free(d->mask);
	memset(d, 0, sizeof(*d));
}
