/* tokenizer-load.c: tokenizer.json -> struct skv_tokenizer.
 *
 * Follows tokenizers' deserialisation where it decides results: a repeated vocabulary key or
 * merge keeps the last one; "a b" merges skip "#version" lines and need exactly one space; every
 * merge's parts and result must be in the vocabulary; added tokens get their ids the way
 * AddedVocabulary::add_tokens assigns them (an existing token's id, else the next free one from
 * the vocabulary's size), not from the file's "id" field. Everything it cannot reproduce exactly
 * is refused with a message naming the field.
 */
#include "tokenizer-internal.h"

#include <json-c/json.h>
#include <stdio.h>
#include <string.h>
#include <sys/stat.h>
#include <unicode/unorm2.h>
#include <unicode/utypes.h>

static void put_jsonp(json_object **o) { json_object_put(*o); }

static json_object *get(json_object *o, const char *key)
{
	json_object *v = NULL;
	if (!o || !json_object_is_type(o, json_type_object) || !json_object_object_get_ex(o, key, &v))
		return NULL;
	return v;
}

/* A boolean field: absent or null gives def; anything but a boolean is an error. */
static int get_bool(json_object *o, const char *key, bool def, bool *ret, const char *what, struct skv_err *err)
{
	json_object *v = get(o, key);
	if (!v) {
		*ret = def;
		return 0;
	}
	if (!json_object_is_type(v, json_type_boolean))
		return skv_err_set(err, -EINVAL, "%s.%s must be true or false", what, key);
	*ret = json_object_get_boolean(v);
	return 0;
}

static const char *type_of(json_object *o)
{
	json_object *t = get(o, "type");
	return t && json_object_is_type(t, json_type_string) ? json_object_get_string(t) : NULL;
}

static int get_id(json_object *v, int32_t *ret)
{
	if (!json_object_is_type(v, json_type_int))
		return -EINVAL;
	int64_t x = json_object_get_int64(v);
	if (x < 0 || x > (int64_t)SKV_TOKENIZER_MAX_ID)
		return -ERANGE;
	*ret = (int32_t)x;
	return 0;
}

/* ---- byte-level strings ------------------------------------------------------------------ */

/* The bytes a ByteLevel vocabulary string stands for, or -1 when a character of it is not one of
 * the 256 (tokenizers' decoder then keeps the string's own UTF-8). out needs len bytes. */
static ssize_t bytelevel_to_bytes(const char *s, size_t len, uint8_t *out)
{
	size_t i = 0, k = 0;
	while (i < len) {
		uint32_t cp;
		size_t l = skv_utf8_decode((const uint8_t *)s + i, len - i, &cp);
		int b = skv_tok_cp_byte(cp);
		if (b < 0)
			return -1;
		out[k++] = (uint8_t)b;
		i += l;
	}
	return (ssize_t)k;
}

/* ---- added tokens ------------------------------------------------------------------------ */

static int trie_node(struct skv_tok_trie *t, uint8_t byte, uint32_t *ret)
{
	if (t->n == t->cap) {
		uint32_t cap = t->cap ? t->cap * 2 : 64;
		struct skv_tok_trie_node *n = realloc(t->nodes, cap * sizeof(*n));
		if (!n)
			return -ENOMEM;
		t->nodes = n;
		t->cap = cap;
	}
	t->nodes[t->n] = (struct skv_tok_trie_node){.token = -1, .byte = byte};
	*ret = t->n++;
	return 0;
}

static int trie_add(struct skv_tok_trie *t, const char *s, size_t len, int32_t token)
{
	uint32_t cur = 0, nn;
	if (t->n == 0) {
		if (trie_node(t, 0, &nn) < 0)
			return -ENOMEM;
		t->first_only = -2; /* no first byte yet */
	}
	for (size_t i = 0; i < len; i++) {
		uint8_t c = (uint8_t)s[i];
		uint32_t ch = t->nodes[cur].child;
		while (ch && t->nodes[ch].byte != c)
			ch = t->nodes[ch].sibling;
		if (!ch) {
			if (trie_node(t, c, &ch) < 0)
				return -ENOMEM;
			t->nodes[ch].sibling = t->nodes[cur].child;
			t->nodes[cur].child = ch;
		}
		if (i == 0) {
			t->first[c >> 3] |= (uint8_t)(1u << (c & 7));
			t->first_only = t->first_only == -2 || t->first_only == c ? c : -1;
		}
		cur = ch;
	}
	t->nodes[cur].token = token;
	return 0;
}

struct added_in {
	const char *content;
	size_t len;
	bool special, lstrip, rstrip, single_word, normalized;
};

static bool added_same(const struct skv_tok_added *a, const struct added_in *b)
{
	return a->len == b->len && !memcmp(a->content, b->content, b->len) && a->special == b->special &&
	       a->lstrip == b->lstrip && a->rstrip == b->rstrip && a->single_word == b->single_word &&
	       a->normalized == b->normalized;
}

static int load_added(struct skv_tokenizer *t, json_object *arr, struct skv_err *err)
{
	size_t n = arr ? json_object_array_length(arr) : 0;
	int r;

	if (arr && !json_object_is_type(arr, json_type_array))
		return skv_err_set(err, -EINVAL, "added_tokens must be an array");
	if ((r = skv_strmap_init(&t->added_map, n + 1)) < 0)
		return skv_err_set(err, r, "out of memory");
	_cleanup_(skv_strmap_done) struct skv_strmap special = {0}, slot = {0}; /* content; id -> added[] */
	if (skv_strmap_init(&special, n + 1) < 0 || skv_strmap_init(&slot, n + 1) < 0)
		return skv_err_set(err, -ENOMEM, "out of memory");
	t->added = calloc(n + 1, sizeof(*t->added));
	if (!t->added)
		return skv_err_set(err, -ENOMEM, "out of memory");

	/* tokenizers: next_id starts at the model's vocabulary size (its number of entries) */
	uint64_t next_id = t->n_vocab;
	for (size_t i = 0; i < n; i++) {
		json_object *o = json_object_array_get_idx(arr, i), *c = get(o, "content");
		struct added_in a = {0};
		char what[64];
		snprintf(what, sizeof(what), "added_tokens[%zu]", i);
		if (!c || !json_object_is_type(c, json_type_string))
			return skv_err_set(err, -EINVAL, "%s.content must be a string", what);
		a.content = json_object_get_string(c);
		a.len = (size_t)json_object_get_string_len(c);
		if ((r = get_bool(o, "special", false, &a.special, what, err)) < 0 ||
		    (r = get_bool(o, "lstrip", false, &a.lstrip, what, err)) < 0 ||
		    (r = get_bool(o, "rstrip", false, &a.rstrip, what, err)) < 0 ||
		    (r = get_bool(o, "single_word", false, &a.single_word, what, err)) < 0 ||
		    (r = get_bool(o, "normalized", !a.special, &a.normalized, what, err)) < 0)
			return r;
		if (a.len == 0)
			continue;
		int32_t id = skv_strmap_get(&t->added_map, a.content, a.len), k;
		if (id >= 0 && (k = skv_strmap_get(&slot, &id, sizeof(id))) >= 0 && added_same(&t->added[k], &a))
			continue;
		if (id < 0)
			id = skv_strmap_get(&t->vocab_str, a.content, a.len);
		if (id < 0) {
			if (next_id > SKV_TOKENIZER_MAX_ID)
				return skv_err_set(err, -ERANGE, "%s: id %llu is above the limit %u", what,
						   (unsigned long long)next_id, SKV_TOKENIZER_MAX_ID);
			id = (int32_t)next_id++;
		}
		if ((r = skv_strmap_put(&t->added_map, a.content, a.len, id)) < 0 ||
		    (a.special && (r = skv_strmap_put(&special, a.content, a.len, 1)) < 0))
			return skv_err_set(err, -ENOMEM, "out of memory");
		/* one token per id: a later one replaces it (tokenizers' added_tokens_map_r) */
		if ((k = skv_strmap_get(&slot, &id, sizeof(id))) < 0) {
			k = (int32_t)t->n_added++;
			if (skv_strmap_put(&slot, &id, sizeof(id), k) < 0)
				return skv_err_set(err, -ENOMEM, "out of memory");
		} else {
			free(t->added[k].content);
		}
		char *copy = malloc(a.len + 1);
		if (!copy)
			return skv_err_set(err, -ENOMEM, "out of memory");
		memcpy(copy, a.content, a.len);
		copy[a.len] = '\0';
		t->added[k] = (struct skv_tok_added){.content = copy, .len = (uint32_t)a.len, .id = id,
						     .special = a.special, .lstrip = a.lstrip, .rstrip = a.rstrip,
						     .single_word = a.single_word, .normalized = a.normalized};
		if ((uint32_t)id + 1 > t->n_ids)
			t->n_ids = (uint32_t)id + 1;
	}
	/* "special" follows the content: a token whose text was ever added as special is one */
	_cleanup_(skv_tok_nfc_buf_done) struct skv_tok_nfc_buf nb = {0};
	for (size_t k = 0; k < t->n_added; k++) {
		struct skv_tok_added *a = &t->added[k];
		a->special = skv_strmap_get(&special, a->content, a->len) >= 0;
		/* a normalized token is looked for in normalized text, and decodes, in its normalized
		 * form (tokenizers normalizes the content when it adds the token) */
		const char *c;
		ssize_t cl;
		if (a->normalized && t->nfc) {
			if ((cl = skv_tok_nfc(t->nfc, a->content, a->len, &nb, &c)) < 0)
				return skv_err_set(err, (int)cl, "added_tokens: NFC normalization failed");
			if (c != a->content) {
				char *copy = malloc((size_t)cl + 1);
				if (!copy)
					return skv_err_set(err, -ENOMEM, "out of memory");
				memcpy(copy, c, (size_t)cl);
				copy[cl] = '\0';
				free(a->content);
				a->content = copy;
				a->len = (uint32_t)cl;
			}
		}
		if ((r = trie_add(&t->trie[a->normalized ? 1 : 0], a->content, a->len, (int32_t)k)) < 0)
			return skv_err_set(err, r, "out of memory");
	}
	return 0;
}

/* ---- model ------------------------------------------------------------------------------- */

static int merge_parts(json_object *m, size_t i, bool *legacy, const char **a, size_t *al, const char **b, size_t *bl,
		       struct skv_err *err)
{
	if (json_object_is_type(m, json_type_string)) {
		const char *s = json_object_get_string(m);
		size_t len = (size_t)json_object_get_string_len(m);
		const char *sp = memchr(s, ' ', len);
		if (i == 0)
			*legacy = true;
		else if (!*legacy)
			goto mixed;
		if (!sp || memchr(sp + 1, ' ', len - (size_t)(sp + 1 - s)))
			return skv_err_set(err, -EINVAL, "model.merges[%zu]: \"%.*s\" is not two tokens separated by one space",
					   i, (int)SKV_MIN(len, 64), s);
		*a = s;
		*al = (size_t)(sp - s);
		*b = sp + 1;
		*bl = len - *al - 1;
		return 0;
	}
	if (json_object_is_type(m, json_type_array) && json_object_array_length(m) == 2) {
		json_object *x = json_object_array_get_idx(m, 0), *y = json_object_array_get_idx(m, 1);
		if (i == 0)
			*legacy = false;
		else if (*legacy)
			goto mixed;
		if (!json_object_is_type(x, json_type_string) || !json_object_is_type(y, json_type_string))
			return skv_err_set(err, -EINVAL, "model.merges[%zu] must hold two strings", i);
		*a = json_object_get_string(x);
		*al = (size_t)json_object_get_string_len(x);
		*b = json_object_get_string(y);
		*bl = (size_t)json_object_get_string_len(y);
		return 0;
	}
	return skv_err_set(err, -EINVAL, "model.merges[%zu] must be \"a b\" or [\"a\", \"b\"]", i);
mixed:
	return skv_err_set(err, -EINVAL, "model.merges[%zu]: merges mix the \"a b\" and [\"a\", \"b\"] forms", i);
}

static int load_model(struct skv_tokenizer *t, json_object *m, const char ***ret_vocab_r, uint32_t *ret_nr,
		      struct skv_err *err)
{
	json_object *vocab = get(m, "vocab"), *merges = get(m, "merges"), *v;
	const char *type = type_of(m);
	int r;

	if (!m || !json_object_is_type(m, json_type_object))
		return skv_err_set(err, -EINVAL, "model must be an object");
	if (type && strcmp(type, "BPE"))
		return skv_err_set(err, -ENOTSUP, "model.type '%s' is not supported (only BPE)", type);
	if (!vocab || !json_object_is_type(vocab, json_type_object))
		return skv_err_set(err, -EINVAL, "model.vocab must be an object");
	if (!merges || !json_object_is_type(merges, json_type_array))
		return skv_err_set(err, -EINVAL, "model.merges must be an array");
	if (((v = get(m, "continuing_subword_prefix")) && !json_object_is_type(v, json_type_null)) ||
	    ((v = get(m, "end_of_word_suffix")) && !json_object_is_type(v, json_type_null)))
		return skv_err_set(err, -ENOTSUP, "model: continuing_subword_prefix and end_of_word_suffix are not supported");
	if ((v = get(m, "dropout")) && !json_object_is_type(v, json_type_null) &&
	    !(json_object_is_type(v, json_type_double) && json_object_get_double(v) == 0.0))
		return skv_err_set(err, -ENOTSUP, "model.dropout is not supported (encoding would not be deterministic)");
	bool byte_fallback;
	if ((r = get_bool(m, "ignore_merges", false, &t->ignore_merges, "model", err)) < 0 ||
	    (r = get_bool(m, "fuse_unk", false, &t->fuse_unk, "model", err)) < 0 ||
	    (r = get_bool(m, "byte_fallback", false, &byte_fallback, "model", err)) < 0)
		return r;

	/* vocabulary */
	size_t nv = (size_t)json_object_object_length(vocab);
	if ((r = skv_strmap_init(&t->vocab_str, nv)) < 0 || (r = skv_strmap_init(&t->vocab_bytes, nv)) < 0)
		return skv_err_set(err, -ENOMEM, "out of memory");
	uint32_t max_id = 0;
	json_object_object_foreach(vocab, key, val) {
		int32_t id;
		if ((r = get_id(val, &id)) < 0)
			return skv_err_set(err, -EINVAL, "model.vocab[\"%.64s\"] must be an id from 0 to %u", key,
					   SKV_TOKENIZER_MAX_ID);
		if ((r = skv_strmap_put(&t->vocab_str, key, strlen(key), id)) < 0)
			return skv_err_set(err, -ENOMEM, "out of memory");
		max_id = SKV_MAX(max_id, (uint32_t)id);
	}
	t->n_vocab = t->vocab_str.n;
	t->n_ids = nv ? max_id + 1 : 0;
	const char **vocab_r = calloc(t->n_ids + 1, sizeof(*vocab_r));
	_cleanup_free_ uint8_t *bytes = NULL;
	size_t max_key = 0;
	if (!vocab_r)
		return skv_err_set(err, -ENOMEM, "out of memory");
	*ret_vocab_r = vocab_r;
	*ret_nr = t->n_ids;
	json_object_object_foreach(vocab, key2, val2) {
		vocab_r[json_object_get_int(val2)] = key2; /* the last key with an id wins */
		max_key = SKV_MAX(max_key, strlen(key2));
	}
	if (!(bytes = malloc(max_key + 1)))
		return skv_err_set(err, -ENOMEM, "out of memory");
	json_object_object_foreach(vocab, key3, val3) {
		ssize_t bl = bytelevel_to_bytes(key3, strlen(key3), bytes);
		if (bl > 0 && skv_strmap_get(&t->vocab_str, key3, strlen(key3)) == json_object_get_int(val3) &&
		    (r = skv_strmap_put(&t->vocab_bytes, bytes, (size_t)bl, json_object_get_int(val3))) < 0)
			return skv_err_set(err, -ENOMEM, "out of memory");
	}
	for (unsigned b = 0; b < 256; b++) {
		char sym[4];
		size_t sl = skv_utf8_encode(skv_tok_byte_cp(b), sym);
		t->byte_id[b] = skv_strmap_get(&t->vocab_str, sym, sl);
		if (!byte_fallback)
			continue;
		/* tokenizers looks up "<0xXX>" for each UTF-8 byte of the missing character */
		int32_t ids[2];
		size_t k;
		for (k = 0; k < sl; k++) {
			char name[8];
			snprintf(name, sizeof(name), "<0x%02X>", (uint8_t)sym[k]);
			if ((ids[k] = skv_strmap_get(&t->vocab_str, name, strlen(name))) < 0)
				break;
		}
		if (k == sl) {
			t->n_fallback[b] = (uint8_t)sl;
			memcpy(t->fallback_ids[b], ids, sizeof(ids));
		}
	}
	t->unk_id = -1;
	if ((v = get(m, "unk_token")) && !json_object_is_type(v, json_type_null)) {
		if (!json_object_is_type(v, json_type_string))
			return skv_err_set(err, -EINVAL, "model.unk_token must be a string or null");
		t->unk_id = skv_strmap_get(&t->vocab_str, json_object_get_string(v), (size_t)json_object_get_string_len(v));
		if (t->unk_id < 0)
			return skv_err_set(err, -EINVAL, "model.unk_token \"%.64s\" is not in the vocabulary",
					   json_object_get_string(v));
	}

	/* merges */
	size_t nm = json_object_array_length(merges), rank = 0;
	bool legacy = false;
	_cleanup_free_ char *cat = NULL;
	size_t cat_cap = 0;
	if ((r = skv_mergemap_init(&t->merges, nm)) < 0)
		return skv_err_set(err, -ENOMEM, "out of memory");
	for (size_t i = 0; i < nm; i++) {
		json_object *mi = json_object_array_get_idx(merges, i);
		const char *a = NULL, *b = NULL;
		size_t al = 0, bl = 0;
		if (json_object_is_type(mi, json_type_string) && json_object_get_string_len(mi) >= 8 &&
		    !memcmp(json_object_get_string(mi), "#version", 8) && (i == 0 || legacy)) {
			legacy = true; /* the "a b" form's header line */
			continue;
		}
		if ((r = merge_parts(mi, i, &legacy, &a, &al, &b, &bl, err)) < 0)
			return r;
		int32_t ia = skv_strmap_get(&t->vocab_str, a, al), ib = skv_strmap_get(&t->vocab_str, b, bl);
		if (al + bl + 1 > cat_cap) {
			cat_cap = 2 * (al + bl + 1);
			free(cat);
			if (!(cat = malloc(cat_cap)))
				return skv_err_set(err, -ENOMEM, "out of memory");
		}
		memcpy(cat, a, al);
		memcpy(cat + al, b, bl);
		int32_t in = skv_strmap_get(&t->vocab_str, cat, al + bl);
		if (ia < 0 || ib < 0 || in < 0)
			return skv_err_set(err, -EINVAL, "model.merges[%zu]: \"%.*s\" is not in the vocabulary", i,
					   (int)SKV_MIN(ia < 0 ? al : ib < 0 ? bl : al + bl, 64),
					   ia < 0 ? a : ib < 0 ? b : cat);
		if ((r = skv_mergemap_put(&t->merges, (uint32_t)ia, (uint32_t)ib, (uint32_t)rank, (uint32_t)in)) < 0)
			return skv_err_set(err, -ENOMEM, "out of memory");
		rank++;
	}
	return 0;
}

/* ---- pre-tokenizer, normalizer, decoder, post-processor ---------------------------------- */

static int add_stage(struct skv_tokenizer *t, struct skv_tok_stage st, struct skv_err *err)
{
	if (t->n_stages == SKV_TOK_MAX_STAGES) {
		if (st.re)
			pcre2_code_free(st.re);
		return skv_err_set(err, -E2BIG, "pre_tokenizer: more than %d steps", SKV_TOK_MAX_STAGES);
	}
	t->stages[t->n_stages++] = st;
	return 0;
}

static int load_split(struct skv_tokenizer *t, json_object *p, const char *what, struct skv_err *err)
{
	json_object *pat = get(p, "pattern"), *re = get(pat, "Regex"), *str = get(pat, "String");
	json_object *beh = get(p, "behavior");
	struct skv_tok_stage st = {.kind = SKV_TOK_STAGE_SPLIT};
	_cleanup_free_ char *pcre = NULL;
	int r;

	if ((r = get_bool(p, "invert", false, &st.invert, what, err)) < 0)
		return r;
	static const char *const behaviors[] = {
		[SKV_TOK_ISOLATED] = "Isolated",
		[SKV_TOK_REMOVED] = "Removed",
		[SKV_TOK_MERGED_WITH_PREVIOUS] = "MergedWithPrevious",
		[SKV_TOK_MERGED_WITH_NEXT] = "MergedWithNext",
		[SKV_TOK_CONTIGUOUS] = "Contiguous",
	};
	if (!beh || !json_object_is_type(beh, json_type_string))
		return skv_err_set(err, -EINVAL, "%s.behavior must be a string", what);
	size_t k = 0;
	while (k < SKV_ARRAY_SIZE(behaviors) && strcmp(json_object_get_string(beh), behaviors[k]))
		k++;
	st.behavior = (uint8_t)k;
	if (k == SKV_ARRAY_SIZE(behaviors))
		return skv_err_set(err, -EINVAL,
				   "%s.behavior '%.64s' is not one of Isolated, Removed, MergedWithPrevious, MergedWithNext, "
				   "Contiguous", what, json_object_get_string(beh));
	if (re && json_object_is_type(re, json_type_string)) {
		pcre = skv_tok_regex_translate(json_object_get_string(re), (size_t)json_object_get_string_len(re), err);
		if (!pcre)
			return skv_err_prefix(err, err ? err->code : -EINVAL, "%s.pattern: ", what);
	} else if (str && json_object_is_type(str, json_type_string)) {
		if (json_object_get_string_len(str) == 0)
			return add_stage(t, st, err); /* an empty string matches nothing */
		pcre = skv_tok_regex_literal(json_object_get_string(str), (size_t)json_object_get_string_len(str));
		if (!pcre)
			return skv_err_set(err, -ENOMEM, "out of memory");
	} else {
		return skv_err_set(err, -EINVAL, "%s.pattern must be {\"Regex\": ...} or {\"String\": ...}", what);
	}
	if ((r = skv_tok_regex_compile(pcre, &st.re, err)) < 0)
		return skv_err_prefix(err, r, "%s.pattern: ", what);
	return add_stage(t, st, err);
}

/* Digits: a split on one numeric character (Rust's char::is_numeric), each alone or in runs. */
static int load_digits(struct skv_tokenizer *t, json_object *p, const char *what, struct skv_err *err)
{
	bool individual;
	int r;
	if ((r = get_bool(p, "individual_digits", false, &individual, what, err)) < 0)
		return r;
	struct skv_tok_stage st = {.kind = SKV_TOK_STAGE_SPLIT,
				   .behavior = individual ? SKV_TOK_ISOLATED : SKV_TOK_CONTIGUOUS};
	size_t len = strlen(skv_tok_numeric_items) + 3;
	_cleanup_free_ char *pcre = malloc(len);
	if (!pcre)
		return skv_err_set(err, -ENOMEM, "out of memory");
	snprintf(pcre, len, "[%s]", skv_tok_numeric_items);
	if ((r = skv_tok_regex_compile(pcre, &st.re, err)) < 0)
		return skv_err_prefix(err, r, "%s: ", what);
	return add_stage(t, st, err);
}

static int load_pretokenizer(struct skv_tokenizer *t, json_object *p, struct skv_err *err)
{
	const char *type = type_of(p);
	json_object *list = NULL;
	size_t n = 1;
	bool byte_level = false;
	int r;

	if (!p || json_object_is_type(p, json_type_null))
		return skv_err_set(err, -ENOTSUP, "pre_tokenizer is null: only ByteLevel tokenizers are supported");
	if (!type)
		return skv_err_set(err, -EINVAL, "pre_tokenizer.type must be a string");
	if (!strcmp(type, "Sequence")) {
		list = get(p, "pretokenizers");
		if (!list || !json_object_is_type(list, json_type_array))
			return skv_err_set(err, -EINVAL, "pre_tokenizer.pretokenizers must be an array");
		n = json_object_array_length(list);
	}
	for (size_t i = 0; i < n; i++) {
		json_object *e = list ? json_object_array_get_idx(list, i) : p;
		const char *et = type_of(e);
		char what[64];
		snprintf(what, sizeof(what), list ? "pre_tokenizer.pretokenizers[%zu]" : "pre_tokenizer", i);
		if (!et)
			return skv_err_set(err, -EINVAL, "%s.type must be a string", what);
		if (byte_level)
			return skv_err_set(err, -ENOTSUP, "%s: only a ByteLevel step may come last", what);
		if (!strcmp(et, "Split")) {
			if ((r = load_split(t, e, what, err)) < 0)
				return r;
		} else if (!strcmp(et, "Digits")) {
			if ((r = load_digits(t, e, what, err)) < 0)
				return r;
		} else if (!strcmp(et, "ByteLevel")) {
			bool prefix, use_regex;
			if ((r = get_bool(e, "add_prefix_space", true, &prefix, what, err)) < 0 ||
			    (r = get_bool(e, "use_regex", true, &use_regex, what, err)) < 0)
				return r;
			if (prefix && (r = add_stage(t, (struct skv_tok_stage){.kind = SKV_TOK_STAGE_PREFIX_SPACE}, err)) < 0)
				return r;
			if (use_regex) {
				_cleanup_free_ char *pcre = skv_tok_regex_translate(skv_tok_gpt2_pattern,
										    strlen(skv_tok_gpt2_pattern), err);
				struct skv_tok_stage st = {.kind = SKV_TOK_STAGE_SPLIT, .behavior = SKV_TOK_ISOLATED};
				if (!pcre || (r = skv_tok_regex_compile(pcre, &st.re, err)) < 0 ||
				    (r = add_stage(t, st, err)) < 0)
					return err ? err->code : -EINVAL;
			}
			byte_level = true;
		} else {
			return skv_err_set(err, -ENOTSUP, "%s: type '%s' is not supported (Split, Digits, ByteLevel)", what, et);
		}
	}
	if (!byte_level)
		return skv_err_set(err, -ENOTSUP, "pre_tokenizer: no ByteLevel step (only byte-level BPE is supported)");
	return 0;
}

/* normalizer: null, NFC, or a Sequence of those (NFC twice is NFC). */
static int load_normalizer(struct skv_tokenizer *t, json_object *o, struct skv_err *err)
{
	json_object *list = NULL;
	size_t n = 1;
	if (!o || json_object_is_type(o, json_type_null))
		return 0;
	const char *type = type_of(o);
	if (type && !strcmp(type, "Sequence")) {
		list = get(o, "normalizers");
		if (!list || !json_object_is_type(list, json_type_array))
			return skv_err_set(err, -EINVAL, "normalizer.normalizers must be an array");
		n = json_object_array_length(list);
	}
	for (size_t i = 0; i < n; i++) {
		const char *et = type_of(list ? json_object_array_get_idx(list, i) : o);
		char what[64];
		snprintf(what, sizeof(what), list ? "normalizer.normalizers[%zu]" : "normalizer", i);
		if (!et || strcmp(et, "NFC"))
			return skv_err_set(err, -ENOTSUP, "%s '%.64s' is not supported (NFC)", what, et ? et : "?");
		UErrorCode st = U_ZERO_ERROR;
		t->nfc = unorm2_getNFCInstance(&st);
		if (U_FAILURE(st) || !t->nfc)
			return skv_err_set(err, -EIO, "%s: ICU has no NFC data (%s)", what, u_errorName(st));
	}
	return 0;
}

static int load_decoder(json_object *d, struct skv_err *err)
{
	const char *type = type_of(d);
	if (!d || json_object_is_type(d, json_type_null))
		return skv_err_set(err, -ENOTSUP, "decoder is null: only the ByteLevel decoder is supported");
	if (type && !strcmp(type, "ByteLevel"))
		return 0;
	if (type && !strcmp(type, "Sequence")) {
		json_object *l = get(d, "decoders");
		size_t n = l && json_object_is_type(l, json_type_array) ? json_object_array_length(l) : 0;
		for (size_t i = 0; i < n; i++) {
			const char *t = type_of(json_object_array_get_idx(l, i));
			if (!t || strcmp(t, "ByteLevel"))
				return skv_err_set(err, -ENOTSUP, "decoder.decoders[%zu] '%s' is not supported (ByteLevel)", i,
						   t ? t : "?");
		}
		if (n)
			return 0;
	}
	return skv_err_set(err, -ENOTSUP, "decoder '%s' is not supported (ByteLevel)", type ? type : "?");
}

static int load_template(struct skv_tokenizer *t, json_object *p, const char *what, struct skv_err *err)
{
	json_object *single = get(p, "single"), *specials = get(p, "special_tokens");
	size_t n = single && json_object_is_type(single, json_type_array) ? json_object_array_length(single) : 0;
	bool seen_seq = false;

	if (!single || !json_object_is_type(single, json_type_array))
		return skv_err_set(err, -EINVAL, "%s.single must be an array", what);
	if (t->pre_ids || t->post_ids)
		return skv_err_set(err, -ENOTSUP, "%s: more than one TemplateProcessing", what);
	for (size_t i = 0; i < n; i++) {
		json_object *piece = json_object_array_get_idx(single, i), *sp = get(piece, "SpecialToken");
		json_object *seq = get(piece, "Sequence");
		if (seq) {
			json_object *id = get(seq, "id");
			if (!id || !json_object_is_type(id, json_type_string) || strcmp(json_object_get_string(id), "A") ||
			    seen_seq)
				return skv_err_set(err, -ENOTSUP, "%s.single[%zu]: only one Sequence \"A\" is supported", what, i);
			seen_seq = true;
			continue;
		}
		json_object *name = get(sp, "id");
		if (!name || !json_object_is_type(name, json_type_string))
			return skv_err_set(err, -EINVAL, "%s.single[%zu] must be a SpecialToken or a Sequence", what, i);
		json_object *st = get(specials, json_object_get_string(name)), *ids = get(st, "ids");
		if (!ids || !json_object_is_type(ids, json_type_array))
			return skv_err_set(err, -EINVAL, "%s.special_tokens lacks \"%.64s\" (or its ids)", what,
					   json_object_get_string(name));
		size_t k = json_object_array_length(ids);
		int32_t **dst = seen_seq ? &t->post_ids : &t->pre_ids;
		size_t *dn = seen_seq ? &t->n_post : &t->n_pre;
		int32_t *grown = realloc(*dst, (*dn + k + 1) * sizeof(int32_t));
		if (!grown)
			return skv_err_set(err, -ENOMEM, "out of memory");
		*dst = grown;
		for (size_t j = 0; j < k; j++) {
			int32_t id;
			if (get_id(json_object_array_get_idx(ids, j), &id) < 0)
				return skv_err_set(err, -EINVAL, "%s.special_tokens[\"%.64s\"].ids[%zu] is not a valid id", what,
						   json_object_get_string(name), j);
			grown[(*dn)++] = id;
			if ((uint32_t)id + 1 > t->n_ids)
				t->n_ids = (uint32_t)id + 1;
		}
	}
	if (!seen_seq)
		return skv_err_set(err, -EINVAL, "%s.single has no Sequence", what);
	return 0;
}

static int load_post(struct skv_tokenizer *t, json_object *p, struct skv_err *err)
{
	const char *type = type_of(p);
	if (!p || json_object_is_type(p, json_type_null))
		return 0;
	if (!type)
		return skv_err_set(err, -EINVAL, "post_processor.type must be a string");
	if (!strcmp(type, "ByteLevel"))
		return 0; /* offsets only */
	if (!strcmp(type, "TemplateProcessing"))
		return load_template(t, p, "post_processor", err);
	if (!strcmp(type, "Sequence")) {
		json_object *l = get(p, "processors");
		if (!l || !json_object_is_type(l, json_type_array))
			return skv_err_set(err, -EINVAL, "post_processor.processors must be an array");
		for (size_t i = 0; i < json_object_array_length(l); i++) {
			json_object *e = json_object_array_get_idx(l, i);
			const char *et = type_of(e);
			char what[64];
			int r;
			snprintf(what, sizeof(what), "post_processor.processors[%zu]", i);
			if (et && !strcmp(et, "ByteLevel"))
				continue;
			if (!et || strcmp(et, "TemplateProcessing"))
				return skv_err_set(err, -ENOTSUP, "%s '%s' is not supported (ByteLevel, TemplateProcessing)",
						   what, et ? et : "?");
			if ((r = load_template(t, e, what, err)) < 0)
				return r;
		}
		return 0;
	}
	return skv_err_set(err, -ENOTSUP, "post_processor '%s' is not supported (TemplateProcessing, ByteLevel, Sequence)",
			   type);
}

/* ---- decoding table ---------------------------------------------------------------------- */

static int build_decode(struct skv_tokenizer *t, const char **vocab_r, uint32_t nr, struct skv_err *err)
{
	_cleanup_free_ const char **str = calloc(t->n_ids + 1, sizeof(*str));
	_cleanup_free_ uint32_t *slen = calloc(t->n_ids + 1, sizeof(*slen));
	size_t total = 0;

	t->dec_off = calloc(t->n_ids + 1, sizeof(*t->dec_off));
	t->id_flags = calloc(t->n_ids + 1, 1);
	if (!str || !slen || !t->dec_off || !t->id_flags)
		return skv_err_set(err, -ENOMEM, "out of memory");
	for (uint32_t id = 0; id < nr; id++)
		if (vocab_r && vocab_r[id]) {
			str[id] = vocab_r[id];
			slen[id] = (uint32_t)strlen(vocab_r[id]);
		}
	for (size_t k = 0; k < t->n_added; k++) {
		str[t->added[k].id] = t->added[k].content;
		slen[t->added[k].id] = t->added[k].len;
		if (t->added[k].special)
			t->id_flags[t->added[k].id] |= SKV_TOK_FLAG_SPECIAL;
	}
	for (uint32_t id = 0; id < t->n_ids; id++) {
		total += slen[id];
		if (total > UINT32_MAX)
			return skv_err_set(err, -E2BIG, "the vocabulary's text is larger than 4 GB");
	}
	t->dec = malloc(total + 1);
	if (!t->dec)
		return skv_err_set(err, -ENOMEM, "out of memory");
	size_t off = 0;
	for (uint32_t id = 0; id < t->n_ids; id++) {
		t->dec_off[id] = (uint32_t)off;
		if (!str[id])
			continue;
		t->id_flags[id] |= SKV_TOK_FLAG_EXISTS;
		/* tokenizers' ByteLevel decoder: a token made of the 256 byte characters becomes
		 * those bytes; any other token stays its own UTF-8 */
		ssize_t bl = bytelevel_to_bytes(str[id], slen[id], (uint8_t *)t->dec + off);
		if (bl < 0) {
			memcpy(t->dec + off, str[id], slen[id]);
			bl = (ssize_t)slen[id];
		}
		off += (size_t)bl;
		t->max_token_bytes = SKV_MAX(t->max_token_bytes, (size_t)bl);
	}
	t->dec_off[t->n_ids] = (uint32_t)off;
	return 0;
}

/* ---- entry points ------------------------------------------------------------------------ */

void skv_tokenizer_free(struct skv_tokenizer *t)
{
	if (!t)
		return;
	free(t->name);
	skv_strmap_done(&t->vocab_str);
	skv_strmap_done(&t->vocab_bytes);
	skv_mergemap_done(&t->merges);
	for (size_t k = 0; k < t->n_added; k++)
		free(t->added[k].content);
	free(t->added);
	skv_strmap_done(&t->added_map);
	free(t->trie[0].nodes);
	free(t->trie[1].nodes);
	for (unsigned i = 0; i < t->n_stages; i++)
		if (t->stages[i].re)
			pcre2_code_free(t->stages[i].re);
	free(t->pre_ids);
	free(t->post_ids);
	free(t->dec);
	free(t->dec_off);
	free(t->id_flags);
	free(t);
}

static int parse(const char *json, size_t len, struct skv_tokenizer *t, struct skv_err *err)
{
	_cleanup_(put_jsonp) json_object *root = NULL;
	_cleanup_free_ const char **vocab_r = NULL;
	uint32_t nr = 0;
	json_tokener *jt = json_tokener_new_ex(64);
	enum json_tokener_error jerr;
	json_object *v;
	int r;

	if (!jt)
		return skv_err_set(err, -ENOMEM, "out of memory");
	size_t bad = skv_utf8_valid_prefix(json, len);
	if (bad < len) {
		json_tokener_free(jt);
		return skv_err_set(err, -EILSEQ, "not UTF-8 (byte offset %zu)", bad);
	}
	if (len > INT32_MAX) {
		json_tokener_free(jt);
		return skv_err_set(err, -EFBIG, "%zu bytes is too large", len);
	}
	root = json_tokener_parse_ex(jt, json, (int)len);
	jerr = json_tokener_get_error(jt);
	if (root && jerr == json_tokener_success && json_tokener_get_parse_end(jt) < len) {
		/* trailing bytes: only whitespace may follow */
		for (size_t i = json_tokener_get_parse_end(jt); i < len; i++)
			if (json[i] != ' ' && json[i] != '\n' && json[i] != '\r' && json[i] != '\t')
				jerr = json_tokener_error_parse_unexpected;
	}
	json_tokener_free(jt);
	if (!root || jerr != json_tokener_success)
		return skv_err_set(err, -EINVAL, "not valid JSON: %s",
				   json_tokener_error_desc(jerr == json_tokener_success ? json_tokener_continue : jerr));
	if (!json_object_is_type(root, json_type_object))
		return skv_err_set(err, -EINVAL, "not a JSON object");
	if ((v = get(root, "version")) &&
	    (!json_object_is_type(v, json_type_string) || strcmp(json_object_get_string(v), "1.0")))
		return skv_err_set(err, -ENOTSUP, "version must be \"1.0\"");
	if ((r = load_normalizer(t, get(root, "normalizer"), err)) < 0 ||
	    (r = load_model(t, get(root, "model"), &vocab_r, &nr, err)) < 0 ||
	    (r = load_pretokenizer(t, get(root, "pre_tokenizer"), err)) < 0 ||
	    (r = load_decoder(get(root, "decoder"), err)) < 0 || (r = load_post(t, get(root, "post_processor"), err)) < 0 ||
	    (r = load_added(t, get(root, "added_tokens"), err)) < 0 || (r = build_decode(t, vocab_r, nr, err)) < 0)
		return r;
	return 0;
}

int skv_tokenizer_parse(const char *json, size_t len, const char *name, struct skv_tokenizer **ret, struct skv_err *err)
{
	struct skv_tokenizer *t = calloc(1, sizeof(*t));
	int r;

	if (!t)
		return skv_err_set(err, -ENOMEM, "%s: out of memory", name);
	t->unk_id = -1;
	t->trie[0].first_only = t->trie[1].first_only = -1;
	t->name = strdup(name ? name : "tokenizer.json");
	if (!t->name) {
		free(t);
		return skv_err_set(err, -ENOMEM, "%s: out of memory", name);
	}
	r = parse(json, len, t, err);
	if (r < 0) {
		skv_tokenizer_free(t);
		return skv_err_prefix(err, r, "%s: ", name ? name : "tokenizer.json");
	}
	*ret = t;
	return 0;
}

int skv_tokenizer_load(const char *path, struct skv_tokenizer **ret, struct skv_err *err)
{
	char file[4096];
	struct stat st;
	_cleanup_free_ char *text = NULL;
	size_t len;
	int r;

	if (stat(path, &st) == 0 && S_ISDIR(st.st_mode))
		snprintf(file, sizeof(file), "%s/tokenizer.json", path);
	else
		snprintf(file, sizeof(file), "%s", path);
	if ((r = skv_read_file(file, SKV_TOKENIZER_MAX_JSON, &text, &len, err)) < 0)
		return r;
	return skv_tokenizer_parse(text, len, file, ret, err);
}
