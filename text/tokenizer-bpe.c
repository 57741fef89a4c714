/* tokenizer-bpe.c: the BPE model. Turns one pre-token (raw bytes) into ids: the ignore_merges
 * shortcut, the word cache, the bytes-to-symbols step (with byte_fallback and unk exactly as
 * tokenizers' merge_word), and merging.
 *
 * Merging repeatedly applies the lowest-ranked merge, leftmost first on ties. Short words use a
 * plain scan (fewer than SKV_TOK_SMALL_WORD symbols: cheaper than a heap); longer ones use a binary heap
 * of (rank, position) with a linked list of symbols, tokenizers' own scheme, so a pre-token of n
 * bytes costs O(n log n). Both produce the same merges: the pair the heap pops is the leftmost
 * lowest-ranked pair present, which is what the scan picks.
 */
#include "tokenizer-internal.h"

#include <string.h>

#define CACHE_MAX_KEY 256		/* longer pre-tokens are not cached (tokenizers: same) */
#define CACHE_SLOTS (1u << 14)
#define CACHE_KEYS_MAX (4u << 20)

/* ---- hashing and tables ------------------------------------------------------------------ */

static inline uint64_t rd64(const uint8_t *p)
{
	uint64_t v;
	memcpy(&v, p, 8);
	return v;
}

static inline uint64_t mix(uint64_t x)
{
	x ^= x >> 32;
	x *= 0xd6e8feb86659fd93ull;
	x ^= x >> 32;
	x *= 0xd6e8feb86659fd93ull;
	x ^= x >> 32;
	return x;
}

uint64_t skv_tok_hash(const void *key, size_t len)
{
	const uint8_t *p = key;
	uint64_t h = 0x9e3779b97f4a7c15ull ^ (len * 0xff51afd7ed558ccdull);
	while (len >= 8) {
		h = (h ^ rd64(p)) * 0x9fb21c651e98df25ull;
		h ^= h >> 29;
		p += 8;
		len -= 8;
	}
	uint64_t t = 0;
	for (size_t i = 0; i < len; i++)
		t |= (uint64_t)p[i] << (8 * i);
	h = mix(h ^ t);
	return h ? h : 1;
}

int skv_strmap_init(struct skv_strmap *m, size_t expect)
{
	size_t cap = 16;
	memset(m, 0, sizeof(*m));
	while (cap < expect * 2)
		cap *= 2;
	m->slots = calloc(cap, sizeof(*m->slots));
	if (!m->slots)
		return -ENOMEM;
	m->cap = cap;
	return 0;
}

void skv_strmap_done(struct skv_strmap *m)
{
	free(m->slots);
	free(m->arena);
	memset(m, 0, sizeof(*m));
}

static int strmap_grow(struct skv_strmap *m)
{
	size_t cap = m->cap * 2;
	struct skv_strmap_slot *s = calloc(cap, sizeof(*s));
	if (!s)
		return -ENOMEM;
	for (size_t i = 0; i < m->cap; i++) {
		if (!m->slots[i].hash)
			continue;
		size_t j = (size_t)m->slots[i].hash & (cap - 1);
		while (s[j].hash)
			j = (j + 1) & (cap - 1);
		s[j] = m->slots[i];
	}
	free(m->slots);
	m->slots = s;
	m->cap = cap;
	return 0;
}

int skv_strmap_put(struct skv_strmap *m, const void *key, size_t len, int32_t value)
{
	uint64_t h = skv_tok_hash(key, len);
	size_t i;
	if (len > UINT32_MAX)
		return -E2BIG;
	if ((m->n + 1) * 4 > m->cap * 3 && strmap_grow(m) < 0)
		return -ENOMEM;
	for (i = (size_t)h & (m->cap - 1); m->slots[i].hash; i = (i + 1) & (m->cap - 1)) {
		struct skv_strmap_slot *s = &m->slots[i];
		if (s->hash == h && s->len == len && !memcmp(m->arena + s->off, key, len)) {
			s->value = value;
			return 0;
		}
	}
	if (m->arena_len + len > m->arena_cap) {
		size_t cap = SKV_MAX(m->arena_cap * 2, m->arena_len + len + 1024);
		char *a;
		if (cap > UINT32_MAX || !(a = realloc(m->arena, cap)))
			return -ENOMEM;
		m->arena = a;
		m->arena_cap = cap;
	}
	if (len)
		memcpy(m->arena + m->arena_len, key, len);
	m->slots[i] = (struct skv_strmap_slot){.hash = h, .off = (uint32_t)m->arena_len, .len = (uint32_t)len, .value = value};
	m->arena_len += len;
	m->n++;
	return 0;
}

int32_t skv_strmap_get(const struct skv_strmap *m, const void *key, size_t len)
{
	if (!m->cap)
		return -1;
	uint64_t h = skv_tok_hash(key, len);
	for (size_t i = (size_t)h & (m->cap - 1); m->slots[i].hash; i = (i + 1) & (m->cap - 1)) {
		const struct skv_strmap_slot *s = &m->slots[i];
		if (s->hash == h && s->len == len && !memcmp(m->arena + s->off, key, len))
			return s->value;
	}
	return -1;
}

int skv_mergemap_init(struct skv_mergemap *m, size_t expect)
{
	size_t cap = 16;
	while (cap < expect * 2)
		cap *= 2;
	m->slots = malloc(cap * sizeof(*m->slots));
	if (!m->slots)
		return -ENOMEM;
	memset(m->slots, 0xff, cap * sizeof(*m->slots));
	m->cap = cap;
	m->n = 0;
	return 0;
}

void skv_mergemap_done(struct skv_mergemap *m)
{
	free(m->slots);
	memset(m, 0, sizeof(*m));
}

int skv_mergemap_put(struct skv_mergemap *m, uint32_t a, uint32_t b, uint32_t rank, uint32_t id)
{
	uint64_t key = (uint64_t)a << 32 | b;
	if ((m->n + 1) * 2 > m->cap) {
		struct skv_mergemap nm;
		if (skv_mergemap_init(&nm, m->cap) < 0)
			return -ENOMEM;
		for (size_t i = 0; i < m->cap; i++)
			if (m->slots[i].key != UINT64_MAX)
				skv_mergemap_put(&nm, (uint32_t)(m->slots[i].key >> 32), (uint32_t)m->slots[i].key,
						 m->slots[i].rank, m->slots[i].id);
		free(m->slots);
		*m = nm;
	}
	uint64_t h = key * 0x9e3779b97f4a7c15ull;
	size_t mask = m->cap - 1, i = (size_t)(h >> 32) & mask;
	while (m->slots[i].key != UINT64_MAX && m->slots[i].key != key)
		i = (i + 1) & mask;
	if (m->slots[i].key == UINT64_MAX)
		m->n++;
	/* a repeated pair takes the later rank, as tokenizers' HashMap collect does */
	m->slots[i] = (struct skv_merge_slot){.key = key, .rank = rank, .id = id};
	return 0;
}

/* ---- workspace buffers ------------------------------------------------------------------- */

/* Makes *p hold at least need elements (and never stay NULL, so p + 0 is always valid). */
static int grow(void **p, size_t *cap, size_t need, size_t elem)
{
	if (need <= *cap && *p)
		return 0;
	size_t c = SKV_MAX(SKV_MAX(need, *cap * 2), 16);
	size_t bytes;
	if (!skv_mul_size(c, elem, &bytes))
		return -ENOMEM;
	void *n = realloc(*p, bytes);
	if (!n)
		return -ENOMEM;
	*p = n;
	*cap = c;
	return 0;
}

int skv_tok_ws_push(struct skv_tokenizer_ws *ws, const int32_t *ids, size_t n)
{
	if (n == 0)
		return 0;
	if (grow((void **)&ws->ids, &ws->cap_ids, ws->n_ids + n, sizeof(int32_t)) < 0)
		return -ENOMEM;
	memcpy(ws->ids + ws->n_ids, ids, n * sizeof(int32_t));
	ws->n_ids += n;
	return 0;
}

static inline int push1(struct skv_tokenizer_ws *ws, int32_t id)
{
	if (ws->n_ids == ws->cap_ids && grow((void **)&ws->ids, &ws->cap_ids, ws->n_ids + 1, sizeof(int32_t)) < 0)
		return -ENOMEM;
	ws->ids[ws->n_ids++] = id;
	return 0;
}

/* ---- word cache -------------------------------------------------------------------------- */

static void cache_clear(struct skv_tokenizer_ws *ws)
{
	if (ws->cache)
		memset(ws->cache, 0, ws->cache_cap * sizeof(*ws->cache));
	ws->cache_n = 0;
	ws->cache_keys_len = 0;
	ws->cache_ids_len = 0;
}

static const struct skv_tok_cache_slot *cache_get(const struct skv_tokenizer_ws *ws, const uint8_t *s, size_t n,
						  uint64_t h)
{
	if (!ws->cache)
		return NULL;
	for (size_t i = (size_t)h & (ws->cache_cap - 1); ws->cache[i].hash; i = (i + 1) & (ws->cache_cap - 1)) {
		const struct skv_tok_cache_slot *c = &ws->cache[i];
		if (c->hash == h && c->key_len == n && !memcmp(ws->cache_keys + c->key_off, s, n))
			return c;
	}
	return NULL;
}

/* Best effort: a failed allocation just leaves the word uncached. */
static void cache_put(struct skv_tokenizer_ws *ws, const uint8_t *s, size_t n, uint64_t h, const int32_t *ids,
		      size_t n_ids)
{
	if (!ws->cache) {
		ws->cache = calloc(CACHE_SLOTS, sizeof(*ws->cache));
		if (!ws->cache)
			return;
		ws->cache_cap = CACHE_SLOTS;
	}
	if ((ws->cache_n + 1) * 4 > ws->cache_cap * 3 || ws->cache_keys_len + n > CACHE_KEYS_MAX)
		cache_clear(ws);
	if (grow((void **)&ws->cache_keys, &ws->cache_keys_cap, ws->cache_keys_len + n, 1) < 0 ||
	    grow((void **)&ws->cache_ids, &ws->cache_ids_cap, ws->cache_ids_len + n_ids, sizeof(int32_t)) < 0)
		return;
	size_t i = (size_t)h & (ws->cache_cap - 1);
	while (ws->cache[i].hash)
		i = (i + 1) & (ws->cache_cap - 1);
	memcpy(ws->cache_keys + ws->cache_keys_len, s, n);
	memcpy(ws->cache_ids + ws->cache_ids_len, ids, n_ids * sizeof(int32_t));
	ws->cache[i] = (struct skv_tok_cache_slot){.hash = h,
						   .key_off = (uint32_t)ws->cache_keys_len,
						   .key_len = (uint32_t)n,
						   .ids_off = (uint32_t)ws->cache_ids_len,
						   .n_ids = (uint32_t)n_ids};
	ws->cache_keys_len += n;
	ws->cache_ids_len += n_ids;
	ws->cache_n++;
}

/* ---- merging ----------------------------------------------------------------------------- */

/* Symbols ws->syms[0..n) (ids only) merged by scanning; returns the new count. */
static size_t merge_small(const struct skv_tokenizer *tok, struct skv_tokenizer_ws *ws, size_t n)
{
	struct skv_tok_sym *sy = ws->syms;
	uint32_t *rank = ws->ranks, *nid = ws->rnew;

	for (size_t i = 0; i + 1 < n; i++) {
		const struct skv_merge_slot *m = skv_mergemap_get(&tok->merges, sy[i].id, sy[i + 1].id);
		rank[i] = m ? m->rank : UINT32_MAX;
		nid[i] = m ? m->id : 0;
	}
	while (n > 1) {
		size_t best = 0;
		uint32_t br = UINT32_MAX;
		for (size_t i = 0; i + 1 < n; i++)
			if (rank[i] < br) {
				br = rank[i];
				best = i;
			}
		if (br == UINT32_MAX)
			break;
		sy[best].id = nid[best];
		memmove(sy + best + 1, sy + best + 2, (n - best - 2) * sizeof(*sy));
		memmove(rank + best + 1, rank + best + 2, (n - best - 2) * sizeof(*rank));
		memmove(nid + best + 1, nid + best + 2, (n - best - 2) * sizeof(*nid));
		n--;
		for (size_t i = best ? best - 1 : 0; i <= best && i + 1 < n; i++) {
			const struct skv_merge_slot *m = skv_mergemap_get(&tok->merges, sy[i].id, sy[i + 1].id);
			rank[i] = m ? m->rank : UINT32_MAX;
			nid[i] = m ? m->id : 0;
		}
	}
	return n;
}

static inline bool heap_less(const struct skv_tok_heap_item *a, const struct skv_tok_heap_item *b)
{
	return a->rank != b->rank ? a->rank < b->rank : a->pos < b->pos;
}

static void heap_push(struct skv_tok_heap_item *h, size_t *n, struct skv_tok_heap_item it)
{
	size_t i = (*n)++;
	while (i > 0) {
		size_t p = (i - 1) / 2;
		if (!heap_less(&it, &h[p]))
			break;
		h[i] = h[p];
		i = p;
	}
	h[i] = it;
}

static struct skv_tok_heap_item heap_pop(struct skv_tok_heap_item *h, size_t *n)
{
	struct skv_tok_heap_item top = h[0], last = h[--(*n)];
	size_t i = 0;
	for (;;) {
		size_t c = 2 * i + 1;
		if (c >= *n)
			break;
		if (c + 1 < *n && heap_less(&h[c + 1], &h[c]))
			c++;
		if (!heap_less(&h[c], &last))
			break;
		h[i] = h[c];
		i = c;
	}
	if (*n)
		h[i] = last;
	return top;
}

/* Symbols ws->syms[0..n) merged with a heap (tokenizers' Word::merge_all); compacts them and
 * returns the new count. */
static int merge_heap(const struct skv_tokenizer *tok, struct skv_tokenizer_ws *ws, size_t n, size_t *ret_n)
{
	struct skv_tok_sym *sy = ws->syms;
	size_t hn = 0;
	/* every pair is pushed once at the start and at most twice per merge: 3n bounds the heap */
	if (grow((void **)&ws->heap, &ws->cap_heap, 3 * n, sizeof(*ws->heap)) < 0)
		return -ENOMEM;
	struct skv_tok_heap_item *h = ws->heap;
	for (size_t i = 0; i < n; i++) {
		sy[i].prev = (int32_t)i - 1;
		sy[i].next = i + 1 < n ? (int32_t)i + 1 : -1;
	}
	for (size_t i = 0; i + 1 < n; i++) {
		const struct skv_merge_slot *m = skv_mergemap_get(&tok->merges, sy[i].id, sy[i + 1].id);
		if (m)
			heap_push(h, &hn, (struct skv_tok_heap_item){m->rank, (uint32_t)i, m->id});
	}
	while (hn) {
		struct skv_tok_heap_item top = heap_pop(h, &hn);
		struct skv_tok_sym *cur = &sy[top.pos];
		if (cur->len == 0 || cur->next < 0)
			continue;
		struct skv_tok_sym *right = &sy[cur->next];
		const struct skv_merge_slot *m = skv_mergemap_get(&tok->merges, cur->id, right->id);
		if (!m || m->id != top.id)
			continue; /* stale: one side has merged since */
		cur->id = top.id;
		cur->len += right->len;
		cur->next = right->next;
		right->len = 0;
		if (cur->next >= 0)
			sy[cur->next].prev = (int32_t)top.pos;
		if (cur->prev >= 0) {
			m = skv_mergemap_get(&tok->merges, sy[cur->prev].id, cur->id);
			if (m)
				heap_push(h, &hn, (struct skv_tok_heap_item){m->rank, (uint32_t)cur->prev, m->id});
		}
		if (cur->next >= 0) {
			m = skv_mergemap_get(&tok->merges, cur->id, sy[cur->next].id);
			if (m)
				heap_push(h, &hn, (struct skv_tok_heap_item){m->rank, top.pos, m->id});
		}
	}
	size_t k = 0;
	for (size_t i = 0; i < n; i++)
		if (sy[i].len)
			sy[k++] = sy[i];
	*ret_n = k;
	return 0;
}

int skv_tok_bpe_piece(const struct skv_tokenizer *tok, struct skv_tokenizer_ws *ws, const uint8_t *s, size_t n)
{
	int32_t id;
	uint64_t h = 0;

	if (n == 0)
		return 0;
	if (tok->ignore_merges && (id = skv_strmap_get(&tok->vocab_bytes, s, n)) >= 0)
		return push1(ws, id);
	if (n <= CACHE_MAX_KEY) {
		h = skv_tok_hash(s, n);
		const struct skv_tok_cache_slot *c = cache_get(ws, s, n, h);
		if (c)
			return skv_tok_ws_push(ws, ws->cache_ids + c->ids_off, c->n_ids);
	}

	/* bytes -> symbols (tokenizers' merge_word: each byte is one character of the ByteLevel
	 * string; unknown ones go through byte_fallback, then unk, else are dropped) */
	if (grow((void **)&ws->syms, &ws->cap_syms, 2 * n, sizeof(*ws->syms)) < 0)
		return -ENOMEM;
	struct skv_tok_sym *sy = ws->syms;
	size_t k = 0;
	int32_t unk = -1;
	uint32_t unk_len = 0;
	for (size_t i = 0; i < n; i++) {
		id = tok->byte_id[s[i]];
		if (id >= 0) {
			if (unk >= 0) {
				sy[k++] = (struct skv_tok_sym){.id = (uint32_t)unk, .len = unk_len};
				unk = -1;
			}
			sy[k++] = (struct skv_tok_sym){.id = (uint32_t)id, .len = 1};
			continue;
		}
		if (tok->n_fallback[s[i]]) {
			for (unsigned f = 0; f < tok->n_fallback[s[i]]; f++)
				sy[k++] = (struct skv_tok_sym){.id = (uint32_t)tok->fallback_ids[s[i]][f], .len = 1};
			continue;
		}
		if (tok->unk_id >= 0) {
			if (unk >= 0 && tok->fuse_unk) {
				unk_len++;
			} else {
				if (unk >= 0)
					sy[k++] = (struct skv_tok_sym){.id = (uint32_t)unk, .len = unk_len};
				unk = tok->unk_id;
				unk_len = 1;
			}
		}
	}
	if (unk >= 0)
		sy[k++] = (struct skv_tok_sym){.id = (uint32_t)unk, .len = unk_len};

	if (k < SKV_TOK_SMALL_WORD) {
		k = merge_small(tok, ws, k);
	} else {
		int r = merge_heap(tok, ws, k, &k);
		if (r < 0)
			return r;
	}
	size_t start = ws->n_ids;
	if (grow((void **)&ws->ids, &ws->cap_ids, ws->n_ids + k, sizeof(int32_t)) < 0)
		return -ENOMEM;
	for (size_t i = 0; i < k; i++)
		ws->ids[ws->n_ids++] = (int32_t)sy[i].id;
	if (n <= CACHE_MAX_KEY)
		cache_put(ws, s, n, h, ws->ids + start, k);
	return 0;
}
