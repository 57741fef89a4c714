/* tokenizer-train.c: byte-level BPE training for synthetic checkpoints (see tokenizer-synth.h).
 *
 * The corpus is cut with Llama-3's split regex (the same PCRE2 translation encoding uses); each
 * distinct piece is a word with a count. Training repeats: take the most frequent adjacent pair
 * (ties: the smaller left id, then the smaller right id), make it a token, merge it in every word
 * that has it, and update the pair counts incrementally (a max-heap with lazy deletion, and per
 * pair a list of the words it occurs in). It stops at the requested size or when no pair is left;
 * then, if the corpus could not provide enough tokens, the vocabulary is filled with
 * concatenations of existing tokens (each a new merge), in a fixed order. Same corpus and size,
 * same result: no hash order, no clock, no randomness is involved.
 *
 * This is a test fixture generator, not a production trainer: it holds everything in memory and
 * is meant for corpora of a few hundred kilobytes.
 */
#include <string.h>

#include "tokenizer-internal.h"
#include "tokenizer-synth.h"

static const char llama3_pattern[] = "(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\\r\\n\\p{L}\\p{N}]?\\p{L}+|\\p{N}{1,3}| "
				     "?[^\\s\\p{L}\\p{N}]+[\\r\\n]*|\\s*[\\r\\n]+|\\s+(?!\\S)|\\s+";

const char *skv_llama3_split_pattern(void) { return llama3_pattern; }

struct vec {
	uint32_t *v;
	uint32_t n, cap;
};

static int vec_push(struct vec *x, uint32_t e)
{
	if (x->n == x->cap) {
		uint32_t cap = x->cap ? 2 * x->cap : 4;
		uint32_t *n = realloc(x->v, cap * sizeof(*n));
		if (!n)
			return -ENOMEM;
		x->v = n;
		x->cap = cap;
	}
	x->v[x->n++] = e;
	return 0;
}

struct pair {
	uint32_t a, b;
	int64_t count;
	struct vec words; /* may hold duplicates and words that lost the pair */
};

struct hitem {
	int64_t count;
	uint32_t a, b, pair;
};

struct trainer {
	/* words */
	uint32_t n_words;
	uint32_t *wfreq, *woff, *wlen;
	uint32_t *sym;
	uint32_t *stamp;
	/* pairs */
	struct skv_mergemap pmap; /* (a, b) -> pair index in .rank */
	struct pair *pairs;
	uint32_t n_pairs, cap_pairs;
	struct hitem *heap;
	size_t n_heap, cap_heap;
	/* tokens */
	struct skv_strmap tok_of; /* bytes -> id */
	char *bytes;
	size_t n_bytes, cap_bytes;
	uint32_t *toff, *tlen;
	uint32_t n_tok, cap_tok;
	uint32_t (*merges)[2];
	uint32_t n_merges, cap_merges;
};

static bool hbetter(const struct hitem *x, const struct hitem *y)
{
	if (x->count != y->count)
		return x->count > y->count;
	if (x->a != y->a)
		return x->a < y->a;
	return x->b < y->b;
}

static int hpush(struct trainer *t, struct hitem it)
{
	if (t->n_heap == t->cap_heap) {
		size_t cap = t->cap_heap ? 2 * t->cap_heap : 1024;
		struct hitem *h = realloc(t->heap, cap * sizeof(*h));
		if (!h)
			return -ENOMEM;
		t->heap = h;
		t->cap_heap = cap;
	}
	size_t i = t->n_heap++;
	while (i > 0) {
		size_t p = (i - 1) / 2;
		if (!hbetter(&it, &t->heap[p]))
			break;
		t->heap[i] = t->heap[p];
		i = p;
	}
	t->heap[i] = it;
	return 0;
}

static struct hitem hpop(struct trainer *t)
{
	struct hitem top = t->heap[0], last = t->heap[--t->n_heap];
	size_t i = 0;
	for (;;) {
		size_t c = 2 * i + 1;
		if (c >= t->n_heap)
			break;
		if (c + 1 < t->n_heap && hbetter(&t->heap[c + 1], &t->heap[c]))
			c++;
		if (!hbetter(&t->heap[c], &last))
			break;
		t->heap[i] = t->heap[c];
		i = c;
	}
	if (t->n_heap)
		t->heap[i] = last;
	return top;
}

/* The pair (a, b), created with count 0 when new. */
static int pair_get(struct trainer *t, uint32_t a, uint32_t b, uint32_t *ret)
{
	const struct skv_merge_slot *s = skv_mergemap_get(&t->pmap, a, b);
	if (s) {
		*ret = s->rank;
		return 0;
	}
	if (t->n_pairs == t->cap_pairs) {
		uint32_t cap = t->cap_pairs ? 2 * t->cap_pairs : 4096;
		struct pair *p = realloc(t->pairs, cap * sizeof(*p));
		if (!p)
			return -ENOMEM;
		t->pairs = p;
		t->cap_pairs = cap;
	}
	t->pairs[t->n_pairs] = (struct pair){.a = a, .b = b};
	if (skv_mergemap_put(&t->pmap, a, b, t->n_pairs, 0) < 0)
		return -ENOMEM;
	*ret = t->n_pairs++;
	return 0;
}

static int pair_add(struct trainer *t, uint32_t a, uint32_t b, int64_t delta, uint32_t word)
{
	uint32_t p;
	int r = pair_get(t, a, b, &p);
	if (r < 0)
		return r;
	t->pairs[p].count += delta;
	if (delta > 0) {
		if ((r = vec_push(&t->pairs[p].words, word)) < 0)
			return r;
		return hpush(t, (struct hitem){t->pairs[p].count, a, b, p});
	}
	return 0;
}

/* A new token (or the existing one with the same bytes); its id in *ret. */
static int token_add(struct trainer *t, const char *s, size_t len, uint32_t *ret)
{
	int32_t id = skv_strmap_get(&t->tok_of, s, len);
	if (id >= 0) {
		*ret = (uint32_t)id;
		return 0;
	}
	if (t->n_tok == t->cap_tok) {
		uint32_t cap = t->cap_tok ? 2 * t->cap_tok : 1024;
		uint32_t *o = realloc(t->toff, cap * sizeof(*o)), *l;
		if (!o)
			return -ENOMEM;
		t->toff = o;
		if (!(l = realloc(t->tlen, cap * sizeof(*l))))
			return -ENOMEM;
		t->tlen = l;
		t->cap_tok = cap;
	}
	if (t->n_bytes + len > t->cap_bytes) {
		size_t cap = SKV_MAX(2 * t->cap_bytes, t->n_bytes + len + 4096);
		char *b = realloc(t->bytes, cap);
		if (!b)
			return -ENOMEM;
		t->bytes = b;
		t->cap_bytes = cap;
	}
	memcpy(t->bytes + t->n_bytes, s, len);
	t->toff[t->n_tok] = (uint32_t)t->n_bytes;
	t->tlen[t->n_tok] = (uint32_t)len;
	t->n_bytes += len;
	if (skv_strmap_put(&t->tok_of, s, len, (int32_t)t->n_tok) < 0)
		return -ENOMEM;
	*ret = t->n_tok++;
	return 0;
}

/* Records merge (a, b) and returns the id of a + b. */
static int merge_add(struct trainer *t, uint32_t a, uint32_t b, uint32_t *ret)
{
	size_t la = t->tlen[a], lb = t->tlen[b];
	char buf[512], *cat = la + lb <= sizeof(buf) ? buf : malloc(la + lb);
	int r;
	if (!cat)
		return -ENOMEM;
	memcpy(cat, t->bytes + t->toff[a], la);
	memcpy(cat + la, t->bytes + t->toff[b], lb);
	r = token_add(t, cat, la + lb, ret);
	if (cat != buf)
		free(cat);
	if (r < 0)
		return r;
	if (t->n_merges == t->cap_merges) {
		uint32_t cap = t->cap_merges ? 2 * t->cap_merges : 1024;
		uint32_t(*m)[2] = realloc(t->merges, cap * sizeof(*m));
		if (!m)
			return -ENOMEM;
		t->merges = m;
		t->cap_merges = cap;
	}
	t->merges[t->n_merges][0] = a;
	t->merges[t->n_merges][1] = b;
	t->n_merges++;
	return 0;
}

/* Applies merge (a, b) -> c to every word that has it, keeping the pair counts exact. */
static int apply_merge(struct trainer *t, uint32_t p, uint32_t c, uint32_t step)
{
	uint32_t a = t->pairs[p].a, b = t->pairs[p].b;
	struct vec words = t->pairs[p].words;
	int r;

	t->pairs[p].words = (struct vec){0};
	for (uint32_t k = 0; k < words.n; k++) {
		uint32_t w = words.v[k];
		if (t->stamp[w] == step)
			continue;
		t->stamp[w] = step;
		uint32_t *s = t->sym + t->woff[w], n = t->wlen[w];
		int64_t f = t->wfreq[w];
		for (uint32_t i = 0; i + 1 < n; i++) {
			if (s[i] != a || s[i + 1] != b)
				continue;
			if (i > 0 && ((r = pair_add(t, s[i - 1], a, -f, w)) < 0 || (r = pair_add(t, s[i - 1], c, f, w)) < 0))
				goto out;
			t->pairs[p].count -= f;
			s[i] = c;
			memmove(s + i + 1, s + i + 2, (n - i - 2) * sizeof(*s));
			n--;
			if (i + 1 < n && ((r = pair_add(t, b, s[i + 1], -f, w)) < 0 || (r = pair_add(t, c, s[i + 1], f, w)) < 0))
				goto out;
		}
		t->wlen[w] = n;
	}
	r = 0;
out:
	free(words.v);
	return r;
}

static int count_words(struct trainer *t, const char *text, size_t len, struct skv_err *err)
{
	_cleanup_free_ char *pcre = skv_tok_regex_translate(llama3_pattern, strlen(llama3_pattern), err);
	_cleanup_(skv_strmap_done) struct skv_strmap wmap = {0};
	pcre2_code *re = NULL;
	pcre2_match_data *md = NULL;
	struct vec freq = {0}, off = {0}, wl = {0};
	size_t pos = 0, total = 0;
	int r;

	if (!pcre)
		return err ? err->code : -EINVAL;
	if ((r = skv_tok_regex_compile(pcre, &re, err)) < 0)
		return r;
	if (skv_strmap_init(&wmap, 1 << 14) < 0 || !(md = pcre2_match_data_create(1, NULL))) {
		r = skv_err_set(err, -ENOMEM, "tokenizer training: out of memory");
		goto out;
	}
	while (pos < len) {
		int rc = pcre2_match(re, (PCRE2_SPTR)text, len, pos, PCRE2_NO_UTF_CHECK, md, NULL);
		if (rc < 0)
			break;
		PCRE2_SIZE *ov = pcre2_get_ovector_pointer(md);
		size_t ms = ov[0], me = ov[1];
		if (me <= ms)
			break; /* this pattern never matches empty */
		int32_t w = skv_strmap_get(&wmap, text + ms, me - ms);
		if (w < 0) {
			w = (int32_t)freq.n;
			if (skv_strmap_put(&wmap, text + ms, me - ms, w) < 0 || vec_push(&freq, 0) < 0 ||
			    vec_push(&off, (uint32_t)ms) < 0 || vec_push(&wl, (uint32_t)(me - ms)) < 0) {
				r = skv_err_set(err, -ENOMEM, "tokenizer training: out of memory");
				goto out;
			}
			total += me - ms;
		}
		freq.v[w]++;
		pos = me;
	}
	t->n_words = freq.n;
	t->wfreq = freq.v;
	t->wlen = wl.v;
	t->woff = calloc(freq.n + 1, sizeof(uint32_t));
	t->sym = malloc((total + 1) * sizeof(uint32_t));
	t->stamp = calloc(freq.n + 1, sizeof(uint32_t));
	freq.v = wl.v = NULL;
	if (!t->woff || !t->sym || !t->stamp) {
		r = skv_err_set(err, -ENOMEM, "tokenizer training: out of memory");
		goto out;
	}
	size_t o = 0;
	for (uint32_t w = 0; w < t->n_words; w++) {
		t->woff[w] = (uint32_t)o;
		for (uint32_t i = 0; i < t->wlen[w]; i++)
			t->sym[o + i] = (uint8_t)text[off.v[w] + i];
		o += t->wlen[w];
	}
	r = 0;
out:
	free(freq.v);
	free(off.v);
	free(wl.v);
	if (md)
		pcre2_match_data_free(md);
	pcre2_code_free(re);
	return r;
}

void skv_bpe_vocab_free(struct skv_bpe_vocab *v)
{
	if (!v)
		return;
	free(v->bytes);
	free(v->tok_off);
	free(v->tok_len);
	free(v->merges);
	free(v);
}

static void trainer_done(struct trainer *t)
{
	free(t->wfreq);
	free(t->woff);
	free(t->wlen);
	free(t->sym);
	free(t->stamp);
	skv_mergemap_done(&t->pmap);
	for (uint32_t i = 0; i < t->n_pairs; i++)
		free(t->pairs[i].words.v);
	free(t->pairs);
	free(t->heap);
	skv_strmap_done(&t->tok_of);
	free(t->bytes);
	free(t->toff);
	free(t->tlen);
	free(t->merges);
}

int skv_bpe_train(const char *text, size_t len, uint32_t n_tokens, struct skv_bpe_vocab **ret, struct skv_err *err)
{
	struct trainer t = {0};
	int r;

	if (n_tokens < 256)
		return skv_err_set(err, -EINVAL, "tokenizer training: %u tokens is fewer than the 256 bytes", n_tokens);
	if (skv_utf8_valid_prefix(text, len) != len)
		return skv_err_set(err, -EILSEQ, "tokenizer training: the corpus is not valid UTF-8");
	if (skv_mergemap_init(&t.pmap, 1 << 16) < 0 || skv_strmap_init(&t.tok_of, n_tokens) < 0) {
		r = skv_err_set(err, -ENOMEM, "tokenizer training: out of memory");
		goto out;
	}
	for (unsigned b = 0; b < 256; b++) {
		char c = (char)b;
		uint32_t id;
		if ((r = token_add(&t, &c, 1, &id)) < 0)
			goto oom;
	}
	if ((r = count_words(&t, text, len, err)) < 0)
		goto out;
	for (uint32_t w = 0; w < t.n_words; w++) {
		const uint32_t *s = t.sym + t.woff[w];
		for (uint32_t i = 0; i + 1 < t.wlen[w]; i++)
			if ((r = pair_add(&t, s[i], s[i + 1], t.wfreq[w], w)) < 0)
				goto oom;
	}

	/* learn */
	uint32_t step = 0;
	while (t.n_tok < n_tokens && t.n_heap) {
		struct hitem top = hpop(&t);
		int64_t now = t.pairs[top.pair].count;
		if (now <= 0)
			continue;
		if (now != top.count) {
			if ((r = hpush(&t, (struct hitem){now, top.a, top.b, top.pair})) < 0)
				goto oom;
			continue;
		}
		uint32_t c;
		if ((r = merge_add(&t, top.a, top.b, &c)) < 0 || (r = apply_merge(&t, top.pair, c, ++step)) < 0)
			goto oom;
	}
	uint32_t trained = t.n_tok;

	/* fill: each learned token a (in id order, filled ones too) followed by each byte, when new */
	for (uint32_t a = t.n_tok > 256 ? 256 : 0; t.n_tok < n_tokens; a++) {
		if (a >= t.n_tok) {
			r = skv_err_set(err, -EINVAL, "tokenizer training: cannot fill %u tokens", n_tokens);
			goto out;
		}
		for (unsigned b = 0; b < 256 && t.n_tok < n_tokens; b++) {
			size_t la = t.tlen[a];
			char buf[512];
			if (la + 1 > sizeof(buf))
				break;
			memcpy(buf, t.bytes + t.toff[a], la);
			buf[la] = (char)b;
			if (skv_strmap_get(&t.tok_of, buf, la + 1) >= 0)
				continue;
			uint32_t c;
			if ((r = merge_add(&t, a, b, &c)) < 0)
				goto oom;
		}
	}

	struct skv_bpe_vocab *v = calloc(1, sizeof(*v));
	if (!v)
		goto oom;
	v->n_tokens = t.n_tok;
	v->n_trained = trained;
	v->n_merges = t.n_merges;
	v->bytes = SKV_TAKE_PTR(t.bytes);
	v->tok_off = SKV_TAKE_PTR(t.toff);
	v->tok_len = SKV_TAKE_PTR(t.tlen);
	v->merges = SKV_TAKE_PTR(t.merges);
	*ret = v;
	r = 0;
	goto out;
oom:
	r = skv_err_set(err, -ENOMEM, "tokenizer training: out of memory");
out:
	trainer_done(&t);
	return r;
}
