/* tokenizer-synth.c: the tokenizer files of synthetic checkpoints (see tokenizer-synth.h).
 *
 * The JSON is written by hand, not through json-c, because the layout must be the one
 * tokenizers (serde_json's pretty printer) and transformers (json.dumps(indent=2,
 * sort_keys=True, ensure_ascii=False)) write: two-space indents, ": " after keys, arrays one
 * element per line, only '"', '\\' and control characters escaped.
 */
#include "tokenizer-synth.h"

#include <fcntl.h>
#include <stdio.h>
#include <string.h>

#include "tokenizer-internal.h"

void skv_llama3_special_name(uint32_t off, char *buf, size_t len)
{
	static const char *const named[] = {
		"<|begin_of_text|>",	       "<|end_of_text|>",   "<|reserved_special_token_0|>",
		"<|reserved_special_token_1|>", "<|finetune_right_pad_id|>", "<|reserved_special_token_2|>",
		"<|start_header_id|>",	       "<|end_header_id|>", "<|eom_id|>",
		"<|eot_id|>",		       "<|python_tag|>",
	};
	if (off < SKV_ARRAY_SIZE(named))
		snprintf(buf, len, "%s", named[off]);
	else
		snprintf(buf, len, "<|reserved_special_token_%u|>", off - 8);
}

/* ---- a pretty JSON writer ---------------------------------------------------------------- */

struct jw {
	char *p;
	size_t len, cap;
	bool oom;
	unsigned depth;
	bool has[16];
	bool after_key;
};

static void raw(struct jw *w, const char *s, size_t n)
{
	if (w->oom)
		return;
	if (w->len + n + 1 > w->cap) {
		size_t cap = SKV_MAX(2 * w->cap, w->len + n + 4096);
		char *p = realloc(w->p, cap);
		if (!p) {
			w->oom = true;
			return;
		}
		w->p = p;
		w->cap = cap;
	}
	memcpy(w->p + w->len, s, n);
	w->len += n;
	w->p[w->len] = '\0';
}
static void raws(struct jw *w, const char *s) { raw(w, s, strlen(s)); }

/* Before a value: the comma, newline and indent its container needs. */
static void sep(struct jw *w)
{
	if (w->after_key) {
		w->after_key = false;
		return;
	}
	if (!w->depth)
		return;
	if (w->has[w->depth])
		raws(w, ",");
	raws(w, "\n");
	for (unsigned i = 0; i < w->depth; i++)
		raws(w, "  ");
	w->has[w->depth] = true;
}

static void jbegin(struct jw *w, char c)
{
	sep(w);
	raw(w, &c, 1);
	w->depth++;
	w->has[w->depth] = false;
}

static void jend(struct jw *w, char c)
{
	if (w->has[w->depth]) {
		raws(w, "\n");
		for (unsigned i = 1; i < w->depth; i++)
			raws(w, "  ");
	}
	raw(w, &c, 1);
	w->depth--;
}

static void jstr(struct jw *w, const char *s, size_t n)
{
	sep(w);
	raws(w, "\"");
	for (size_t i = 0; i < n; i++) {
		unsigned char c = (unsigned char)s[i];
		const char *e = NULL;
		char u[8];
		switch (c) {
		case '"':
			e = "\\\"";
			break;
		case '\\':
			e = "\\\\";
			break;
		case '\b':
			e = "\\b";
			break;
		case '\f':
			e = "\\f";
			break;
		case '\n':
			e = "\\n";
			break;
		case '\r':
			e = "\\r";
			break;
		case '\t':
			e = "\\t";
			break;
		default:
			if (c < 0x20) {
				snprintf(u, sizeof(u), "\\u%04x", c);
				e = u;
			}
		}
		if (e)
			raws(w, e);
		else
			raw(w, (const char *)&s[i], 1);
	}
	raws(w, "\"");
}
static void jstrs(struct jw *w, const char *s) { jstr(w, s, strlen(s)); }

static void jkey(struct jw *w, const char *k)
{
	jstrs(w, k);
	raws(w, ": ");
	w->after_key = true;
}

static void jlit(struct jw *w, const char *lit)
{
	sep(w);
	raws(w, lit);
}

static void jint(struct jw *w, long long v)
{
	char b[32];
	snprintf(b, sizeof(b), "%lld", v);
	jlit(w, b);
}

static void kv_str(struct jw *w, const char *k, const char *v)
{
	jkey(w, k);
	jstrs(w, v);
}
static void kv_lit(struct jw *w, const char *k, const char *lit)
{
	jkey(w, k);
	jlit(w, lit);
}
static void kv_bool(struct jw *w, const char *k, bool v) { kv_lit(w, k, v ? "true" : "false"); }

/* ---- the files --------------------------------------------------------------------------- */

/* A token's ByteLevel spelling (GPT-2's byte-to-unicode table). */
static void bytelevel(struct jw *w, const char *b, size_t n)
{
	_cleanup_free_ char *s = malloc(2 * n + 1); /* every byte's symbol is 1 or 2 UTF-8 bytes */
	size_t k = 0;
	if (!s) {
		w->oom = true;
		return;
	}
	for (size_t i = 0; i < n; i++)
		k += skv_utf8_encode(skv_tok_byte_cp((uint8_t)b[i]), s + k);
	jstr(w, s, k);
}

static void byte_level_step(struct jw *w, bool prefix, bool trim, bool regex)
{
	jbegin(w, '{');
	kv_str(w, "type", "ByteLevel");
	kv_bool(w, "add_prefix_space", prefix);
	kv_bool(w, "trim_offsets", trim);
	kv_bool(w, "use_regex", regex);
	jend(w, '}');
}

static void template_piece(struct jw *w, const char *kind, const char *id, int type_id)
{
	jbegin(w, '{');
	jkey(w, kind);
	jbegin(w, '{');
	kv_str(w, "id", id);
	jkey(w, "type_id");
	jint(w, type_id);
	jend(w, '}');
	jend(w, '}');
}

static void tokenizer_json(struct jw *w, const struct skv_bpe_vocab *v, uint32_t base_vocab)
{
	char name[64];

	jbegin(w, '{');
	kv_str(w, "version", "1.0");
	kv_lit(w, "truncation", "null");
	kv_lit(w, "padding", "null");
	jkey(w, "added_tokens");
	jbegin(w, '[');
	for (uint32_t i = 0; i < SKV_LLAMA3_N_SPECIAL; i++) {
		skv_llama3_special_name(i, name, sizeof(name));
		jbegin(w, '{');
		jkey(w, "id");
		jint(w, base_vocab + i);
		kv_str(w, "content", name);
		kv_bool(w, "single_word", false);
		kv_bool(w, "lstrip", false);
		kv_bool(w, "rstrip", false);
		kv_bool(w, "normalized", false);
		kv_bool(w, "special", true);
		jend(w, '}');
	}
	jend(w, ']');
	kv_lit(w, "normalizer", "null");

	jkey(w, "pre_tokenizer");
	jbegin(w, '{');
	kv_str(w, "type", "Sequence");
	jkey(w, "pretokenizers");
	jbegin(w, '[');
	jbegin(w, '{');
	kv_str(w, "type", "Split");
	jkey(w, "pattern");
	jbegin(w, '{');
	kv_str(w, "Regex", skv_llama3_split_pattern());
	jend(w, '}');
	kv_str(w, "behavior", "Isolated");
	kv_bool(w, "invert", false);
	jend(w, '}');
	byte_level_step(w, false, true, false);
	jend(w, ']');
	jend(w, '}');

	jkey(w, "post_processor");
	jbegin(w, '{');
	kv_str(w, "type", "Sequence");
	jkey(w, "processors");
	jbegin(w, '[');
	byte_level_step(w, true, false, true);
	jbegin(w, '{');
	kv_str(w, "type", "TemplateProcessing");
	jkey(w, "single");
	jbegin(w, '[');
	template_piece(w, "SpecialToken", "<|begin_of_text|>", 0);
	template_piece(w, "Sequence", "A", 0);
	jend(w, ']');
	jkey(w, "pair");
	jbegin(w, '[');
	template_piece(w, "SpecialToken", "<|begin_of_text|>", 0);
	template_piece(w, "Sequence", "A", 0);
	template_piece(w, "SpecialToken", "<|begin_of_text|>", 1);
	template_piece(w, "Sequence", "B", 1);
	jend(w, ']');
	jkey(w, "special_tokens");
	jbegin(w, '{');
	jkey(w, "<|begin_of_text|>");
	jbegin(w, '{');
	kv_str(w, "id", "<|begin_of_text|>");
	jkey(w, "ids");
	jbegin(w, '[');
	jint(w, base_vocab);
	jend(w, ']');
	jkey(w, "tokens");
	jbegin(w, '[');
	jstrs(w, "<|begin_of_text|>");
	jend(w, ']');
	jend(w, '}');
	jend(w, '}');
	jend(w, '}');
	jend(w, ']');
	jend(w, '}');

	jkey(w, "decoder");
	byte_level_step(w, true, true, true);

	jkey(w, "model");
	jbegin(w, '{');
	kv_str(w, "type", "BPE");
	kv_lit(w, "dropout", "null");
	kv_lit(w, "unk_token", "null");
	kv_lit(w, "continuing_subword_prefix", "null");
	kv_lit(w, "end_of_word_suffix", "null");
	kv_bool(w, "fuse_unk", false);
	kv_bool(w, "byte_fallback", false);
	kv_bool(w, "ignore_merges", true);
	jkey(w, "vocab");
	jbegin(w, '{');
	for (uint32_t i = 0; i < v->n_tokens; i++) {
		bytelevel(w, v->bytes + v->tok_off[i], v->tok_len[i]);
		raws(w, ": ");
		w->after_key = true;
		jint(w, i);
	}
	jend(w, '}');
	jkey(w, "merges");
	jbegin(w, '[');
	for (uint32_t m = 0; m < v->n_merges; m++) {
		jbegin(w, '[');
		for (int k = 0; k < 2; k++) {
			uint32_t t = v->merges[m][k];
			bytelevel(w, v->bytes + v->tok_off[t], v->tok_len[t]);
		}
		jend(w, ']');
	}
	jend(w, ']');
	jend(w, '}');
	jend(w, '}');
}

static void config_json(struct jw *w, uint32_t base_vocab)
{
	char name[64], key[16];
	uint32_t order[SKV_LLAMA3_N_SPECIAL];

	/* json.dumps(sort_keys=True) orders the ids as strings */
	for (uint32_t i = 0; i < SKV_LLAMA3_N_SPECIAL; i++)
		order[i] = base_vocab + i;
	for (uint32_t i = 1; i < SKV_LLAMA3_N_SPECIAL; i++) {
		uint32_t x = order[i], j = i;
		char a[16], b[16];
		snprintf(a, sizeof(a), "%u", x);
		while (j > 0 && (snprintf(b, sizeof(b), "%u", order[j - 1]), strcmp(b, a) > 0)) {
			order[j] = order[j - 1];
			j--;
		}
		order[j] = x;
	}
	jbegin(w, '{');
	jkey(w, "added_tokens_decoder");
	jbegin(w, '{');
	for (uint32_t i = 0; i < SKV_LLAMA3_N_SPECIAL; i++) {
		snprintf(key, sizeof(key), "%u", order[i]);
		skv_llama3_special_name(order[i] - base_vocab, name, sizeof(name));
		jkey(w, key);
		jbegin(w, '{');
		kv_str(w, "content", name);
		kv_bool(w, "lstrip", false);
		kv_bool(w, "normalized", false);
		kv_bool(w, "rstrip", false);
		kv_bool(w, "single_word", false);
		kv_bool(w, "special", true);
		jend(w, '}');
	}
	jend(w, '}');
	kv_str(w, "bos_token", "<|begin_of_text|>");
	kv_str(w, "chat_template", skv_chat_template_llama31_text);
	kv_bool(w, "clean_up_tokenization_spaces", false);
	kv_str(w, "eos_token", "<|eot_id|>");
	jkey(w, "model_input_names");
	jbegin(w, '[');
	jstrs(w, "input_ids");
	jstrs(w, "attention_mask");
	jend(w, ']');
	jkey(w, "model_max_length");
	jint(w, 131072);
	kv_str(w, "tokenizer_class", "PreTrainedTokenizerFast");
	jend(w, '}');
	raws(w, "\n");
}

int skv_tokenizer_synth(uint32_t base_vocab, char **ret_tokenizer_json, size_t *ret_tokenizer_len, char **ret_config_json,
			size_t *ret_config_len, struct skv_err *err)
{
	struct skv_bpe_vocab *v = NULL;
	struct jw t = {0}, c = {0};
	int r;

	if (base_vocab < 256 || base_vocab > SKV_TOKENIZER_MAX_ID - SKV_LLAMA3_N_SPECIAL)
		return skv_err_set(err, -EINVAL, "tokenizer: base vocabulary %u is outside 256 .. %u", base_vocab,
				   SKV_TOKENIZER_MAX_ID - SKV_LLAMA3_N_SPECIAL);
	if ((r = skv_bpe_train(skv_synth_corpus, skv_synth_corpus_len, base_vocab, &v, err)) < 0)
		return r;
	tokenizer_json(&t, v, base_vocab);
	config_json(&c, base_vocab);
	skv_bpe_vocab_free(v);
	if (t.oom || c.oom) {
		free(t.p);
		free(c.p);
		return skv_err_set(err, -ENOMEM, "tokenizer: out of memory");
	}
	*ret_tokenizer_json = t.p;
	*ret_tokenizer_len = t.len;
	*ret_config_json = c.p;
	*ret_config_len = c.len;
	return 0;
}

static int write_file(const char *dir, const char *name, const char *data, size_t len, struct skv_err *err)
{
	char path[4096];
	snprintf(path, sizeof(path), "%s/%s", dir, name);
	_cleanup_close_ int fd = open(path, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
	if (fd < 0)
		return skv_err_set(err, -errno, "%s: cannot create: %s", path, strerror(errno));
	while (len) {
		ssize_t n = write(fd, data, len);
		if (n < 0 && errno == EINTR)
			continue;
		if (n < 0)
			return skv_err_set(err, -errno, "%s: cannot write: %s", path, strerror(errno));
		data += n;
		len -= (size_t)n;
	}
	if (close(SKV_TAKE_FD(fd)) < 0)
		return skv_err_set(err, -errno, "%s: cannot write: %s", path, strerror(errno));
	return 0;
}

int skv_tokenizer_write_synthetic(const char *dir, uint32_t base_vocab, uint64_t seed, struct skv_err *err)
{
	_cleanup_free_ char *tj = NULL, *cj = NULL;
	size_t tl, cl;
	int r;

	(void)seed;
	if ((r = skv_tokenizer_synth(base_vocab, &tj, &tl, &cj, &cl, err)) < 0 ||
	    (r = write_file(dir, "tokenizer.json", tj, tl, err)) < 0 ||
	    (r = write_file(dir, "tokenizer_config.json", cj, cl, err)) < 0)
		return r;
	return 0;
}
