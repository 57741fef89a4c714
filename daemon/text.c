/* text.c: the model's tokenizer and chat template as skvd uses them. Client text is untrusted:
 * special-token strings in it are encoded as plain text, so only the chat template itself can
 * put <|eot_id|> and its kind into a prompt. A chat is rendered twice, once with the messages
 * and once with a placeholder for each message's content; when the real render is the
 * placeholder render with each placeholder replaced by its content (as is, or trimmed as most
 * templates trim it), the template's own text between them is encoded with specials matched and
 * each content as plain text. The boundaries fall where the split regexes cut anyway (after a
 * header's newline, before the end-of-turn token), so the ids equal those of encoding the whole
 * rendered text whenever the content holds no special strings. A template that rewrites content
 * otherwise (DeepSeek-R1 drops an assistant's <think> part) gets the whole render encoded with
 * specials matched, and only when no message holds special-token text; else the request is
 * refused. A template that fails (its raise_exception, a sandbox bound) fails the request with
 * its message. Streamed text skips special tokens and never splits a UTF-8 character. */
#include <malloc.h>
#include <stdio.h>
#include <string.h>

#include <json-c/json.h>

#include "chat.h"
#include "skv-json.h"
#include "skvd-req.h"
#include "tokenizer.h"

/* The workspace grows with the biggest prompt it has seen (ids, BPE arrays, a word cache):
 * once it has encoded this much text and then sat idle this long, it is freed (and made again
 * at the next prompt), and the freed heap returned to the kernel, so a burst of 1 MiB prompts
 * does not leave skvd that much bigger for good. */
#define WS_TRIM_BYTES (256u * 1024u)
#define WS_TRIM_IDLE_NS (1000ull * 1000000ull)

struct skvd_text {
	struct skv_tokenizer *tok;
	struct skv_tokenizer_ws *ws; /* NULL until needed */
	size_t ws_bytes;	     /* text encoded since ws was made */
	uint64_t ws_used_ns;	     /* its last use */
	struct skv_chat *chat; /* NULL when the model's chat settings did not load */
	size_t bound;	       /* most bytes one streamed token yields */
};

/* skv_tokenizer_encode in skvd's long-lived workspace (made here if it was trimmed). */
static ssize_t encode(struct skvd_text *t, const char *text, size_t len, unsigned flags, const int32_t **ret,
		      struct skv_err *err)
{
	if (!t->ws && skv_tokenizer_ws_new(t->tok, &t->ws) < 0)
		return skv_err_set(err, -ENOMEM, "out of memory");
	t->ws_bytes += len;
	t->ws_used_ns = skv_now_ns();
	return skv_tokenizer_encode(t->tok, t->ws, text, len, flags, ret, err);
}

void skvd_text_tick(struct skvd *d)
{
	struct skvd_text *t = d->text;
	if (!t || !t->ws || t->ws_bytes < WS_TRIM_BYTES || skv_now_ns() - t->ws_used_ns < WS_TRIM_IDLE_NS)
		return;
	skv_tokenizer_ws_free(t->ws);
	t->ws = NULL;
	t->ws_bytes = 0;
	malloc_trim(0); /* the request path's freed buffers too: glibc keeps them otherwise */
}

int skvd_text_load(struct skvd *d, struct skv_err *err)
{
	struct skvd_text *t = calloc(1, sizeof(*t));
	int r;

	if (!t)
		return skv_err_set(err, -ENOMEM, "out of memory");
	d->text = t;
	r = skv_tokenizer_load(d->cfg.model_path, &t->tok, err);
	if (r < 0)
		return r;
	if (skv_tokenizer_n_ids(t->tok) > d->model.vocab)
		return skv_err_set(err, -EINVAL, "%s: the tokenizer has %u ids, more than the model's vocab_size %u",
				   d->cfg.model_path, skv_tokenizer_n_ids(t->tok), d->model.vocab);
	t->bound = skv_tokenizer_stream_bound(t->tok);
	r = skv_chat_load(d->cfg.model_path, d->cfg.chat_template[0] ? d->cfg.chat_template : NULL, &t->chat, err);
	if (r < 0 && d->cfg.chat_template[0])
		return r; /* the operator's own template: stop with its line */
	if (r < 0) {
		/* served anyway: raw prompts and ids still work; chat requests are refused */
		skvd_log(SKVD_WARNING, "%s; chat requests will be refused", err->msg);
		t->chat = NULL;
		skv_err_clear(err);
	} else if (!t->chat->tmpl) {
		skvd_log(SKVD_WARNING, "%s: the model has no chat template; chat requests will be refused",
			 d->cfg.model_path);
	}
	return 0;
}

void skvd_text_free(struct skvd *d)
{
	struct skvd_text *t = d->text;
	if (!t)
		return;
	skv_chat_free(t->chat);
	skv_tokenizer_ws_free(t->ws);
	skv_tokenizer_free(t->tok);
	free(t);
	d->text = NULL;
}

int skvd_text_encode(struct skvd *d, const char *text, size_t len, int32_t **ret, uint32_t *ret_n, struct skv_err *err)
{
	const int32_t *v; /* in skvd's long-lived workspace, not a new one per request */
	ssize_t n = encode(d->text, text, len, SKV_TOKENIZER_ADD_SPECIAL | SKV_TOKENIZER_SPECIAL_AS_TEXT, &v, err);
	if (n < 0)
		return (int)n;
	int32_t *ids = malloc(SKV_MAX((size_t)n, 1u) * sizeof(int32_t));
	if (!ids)
		return skv_err_set(err, -ENOMEM, "out of memory");
	memcpy(ids, v, (size_t)n * sizeof(int32_t));
	*ret = ids;
	*ret_n = (uint32_t)n;
	return 0;
}

/* Appends the ids of text[0..len) to ids (grown as needed). */
static int append_ids(struct skvd_text *t, const char *text, size_t len, unsigned flags, int32_t **ids, uint32_t *n,
		      uint32_t *cap, struct skv_err *err)
{
	const int32_t *v;
	if (!len)
		return 0;
	ssize_t k = encode(t, text, len, flags, &v, err);
	if (k < 0)
		return (int)k;
	if (*n + (size_t)k > *cap) {
		uint32_t nc = (uint32_t)SKV_MAX((size_t)*cap * 2, *n + (size_t)k);
		int32_t *p = realloc(*ids, nc * sizeof(int32_t));
		if (!p)
			return skv_err_set(err, -ENOMEM, "out of memory");
		*ids = p;
		*cap = nc;
	}
	memcpy(*ids + *n, v, (size_t)k * sizeof(int32_t));
	*n += (uint32_t)k;
	return 0;
}

/* \x01 is not whitespace to Python's str.strip(), so a template's |trim keeps it */
#define PLACEHOLDER "\x01skv-content-"

static int render(struct skvd_text *t, const struct skvd_chat_msg *m, uint32_t n, bool placeholders, char **ret,
		  ssize_t *ret_len, struct skv_err *err)
{
	static const char *const roles[] = {"system", "user", "assistant"};
	_cleanup_json_ json_object *arr = json_object_new_array();
	if (!arr)
		return skv_err_set(err, -ENOMEM, "out of memory");
	for (uint32_t i = 0; i < n; i++) {
		char ph[32];
		json_object *o = json_object_new_object();
		if (!o)
			return skv_err_set(err, -ENOMEM, "out of memory");
		json_object_array_add(arr, o);
		json_object_object_add(o, "role", json_object_new_string(roles[m[i].role]));
		snprintf(ph, sizeof(ph), PLACEHOLDER "%u\x01", i);
		json_object_object_add(o, "content", placeholders ? json_object_new_string(ph)
								  : json_object_new_string_len(m[i].content, (int)m[i].len));
	}
	ssize_t len = skv_chat_render_json(t->chat, arr, NULL, true, ret, err);
	if (len < 0)
		return skv_err_prefix(err, (int)len, "messages: ");
	*ret_len = len;
	return 0;
}

/* Whether the placeholder render with every placeholder replaced by its content (trimmed or
 * not) is the real render. */
static bool same_render(const char *p, size_t pl, const char *real, size_t rl, const struct skvd_chat_msg *m, uint32_t n,
			bool trim)
{
	size_t ri = 0;
	const char *end = p + pl;
	while (p < end) {
		const char *hit = memmem(p, (size_t)(end - p), PLACEHOLDER, strlen(PLACEHOLDER));
		size_t lit = (size_t)((hit ? hit : end) - p);
		if (lit > rl - ri || memcmp(real + ri, p, lit))
			return false;
		ri += lit;
		if (!hit)
			break;
		char *after;
		unsigned long k = strtoul(hit + strlen(PLACEHOLDER), &after, 10);
		if (k >= n || *after != '\x01')
			return false;
		size_t cs = 0, cl = m[k].len;
		if (trim)
			skv_chat_trim(m[k].content, m[k].len, &cs, &cl);
		if (cl > rl - ri || memcmp(real + ri, m[k].content + cs, cl))
			return false;
		ri += cl;
		p = after + 1;
	}
	return ri == rl;
}

int skvd_text_encode_chat(struct skvd *d, const struct skvd_chat_msg *m, uint32_t n, int32_t **ret, uint32_t *ret_n,
			  struct skv_err *err)
{
	struct skvd_text *t = d->text;
	_cleanup_free_ char *real = NULL, *ph = NULL;
	_cleanup_free_ int32_t *ids = NULL;
	uint32_t n_ids = 0, cap = 0;
	ssize_t rl, pl;
	int r;

	if (!t->chat || !t->chat->tmpl)
		return skv_err_set(err, -EOPNOTSUPP,
				   "messages: the model has no chat template; send a pre-rendered prompt instead");
	if (n > 256)
		return skv_err_set(err, -E2BIG, "messages: %u, more than the limit of 256", n);
	if ((r = render(t, m, n, false, &real, &rl, err)) < 0 || (r = render(t, m, n, true, &ph, &pl, err)) < 0)
		return r;
	bool trim = false, split = same_render(ph, (size_t)pl, real, (size_t)rl, m, n, false);
	if (!split)
		split = trim = same_render(ph, (size_t)pl, real, (size_t)rl, m, n, true);
	if (!split) {
		/* the template rewrites content: encode the whole render, if no content holds specials */
		for (uint32_t i = 0; i < n; i++) {
			const int32_t *v;
			ssize_t k = skv_tokenizer_encode(t->tok, t->ws, m[i].content, m[i].len, 0, &v, err);
			if (k < 0)
				return (int)k;
			for (ssize_t j = 0; j < k; j++)
				if (skv_tokenizer_is_special(t->tok, v[j]))
					return skv_err_set(err, -EINVAL,
							   "messages[%u]: holds special-token text, and the model's chat "
							   "template rewrites message content, so it cannot be kept as text",
							   i);
		}
		if ((r = append_ids(t, real, (size_t)rl, 0, &ids, &n_ids, &cap, err)) < 0)
			return r;
		*ret = SKV_TAKE_PTR(ids);
		*ret_n = n_ids;
		return 0;
	}
	const char *p = ph, *end = ph + pl;
	while (p < end) {
		const char *hit = memmem(p, (size_t)(end - p), PLACEHOLDER, strlen(PLACEHOLDER));
		const char *stop = hit ? hit : end;
		/* the template's own text: its special tokens are meant */
		if ((r = append_ids(t, p, (size_t)(stop - p), 0, &ids, &n_ids, &cap, err)) < 0)
			return r;
		if (!hit)
			break;
		char *after;
		unsigned long k = strtoul(hit + strlen(PLACEHOLDER), &after, 10);
		/* the content, as the template wrote it: plain text, whatever it contains */
		size_t cs = 0, cl = m[k].len;
		if (trim)
			skv_chat_trim(m[k].content, m[k].len, &cs, &cl);
		if ((r = append_ids(t, m[k].content + cs, cl, SKV_TOKENIZER_SPECIAL_AS_TEXT, &ids, &n_ids, &cap, err)) < 0)
			return r;
		p = after + 1;
	}
	*ret = SKV_TAKE_PTR(ids);
	*ret_n = n_ids;
	return 0;
}

void skvd_detok_init(struct skv_tokenizer_stream *s) { skv_tokenizer_stream_init(s, SKV_TOKENIZER_SKIP_SPECIAL); }

int skvd_detok_push(struct skvd *d, struct skv_tokenizer_stream *s, int32_t id, char **buf, size_t *len, size_t *cap)
{
	size_t need = *len + d->text->bound + 1;
	if (need > *cap) {
		size_t nc = SKV_MAX(need, *cap * 2);
		char *b = realloc(*buf, nc);
		if (!b)
			return -ENOMEM;
		*buf = b;
		*cap = nc;
	}
	ssize_t n = skv_tokenizer_stream_push(d->text->tok, s, id, *buf + *len, *cap - *len);
	if (n < 0)
		return (int)n;
	*len += (size_t)n;
	return 0;
}

int skvd_detok_flush(struct skv_tokenizer_stream *s, char **buf, size_t *len, size_t *cap)
{
	if (*len + 5 > *cap) {
		char *b = realloc(*buf, *len + 5);
		if (!b)
			return -ENOMEM;
		*buf = b;
		*cap = *len + 5;
	}
	ssize_t n = skv_tokenizer_stream_flush(s, *buf + *len, *cap - *len);
	if (n < 0)
		return (int)n;
	*len += (size_t)n;
	return 0;
}
