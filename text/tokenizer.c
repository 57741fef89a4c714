/* tokenizer.c: encoding (UTF-8 check, added-token matching, pre-tokenization and BPE through
 * tokenizer-pretok.c and tokenizer-bpe.c, the post-processor), decoding, and the streaming
 * decoder. See tokenizer.h for the contract.
 *
 * Added tokens are matched like tokenizers' AddedVocabulary: leftmost-longest over the raw text,
 * first the tokens that are not "normalized", then, in the gaps, those that are (there is no
 * normalizer, so both see the same text); a match continues the scan from its end, so with
 * SPECIAL_AS_TEXT a skipped special token's text is not searched again. single_word, lstrip and
 * rstrip use the Rust regex crate's \w and \s, as tokenizers does (tables in tokenizer-unicode.c).
 */
#include "tokenizer-internal.h"

#include <string.h>

/* ---- UTF-8 and the byte-level alphabet --------------------------------------------------- */

uint32_t skv_tok_byte_cp(unsigned b)
{
	if ((b >= 33 && b <= 126) || (b >= 161 && b <= 172) || (b >= 174 && b <= 255))
		return b;
	if (b <= 32)
		return 256 + b;
	if (b >= 127 && b <= 160)
		return 162 + b;
	return 323; /* 173 */
}

int skv_tok_cp_byte(uint32_t cp)
{
	if ((cp >= 33 && cp <= 126) || (cp >= 161 && cp <= 172) || (cp >= 174 && cp <= 255))
		return (int)cp;
	if (cp >= 256 && cp <= 288)
		return (int)cp - 256;
	if (cp >= 289 && cp <= 322)
		return (int)cp - 162;
	if (cp == 323)
		return 173;
	return -1;
}

size_t skv_utf8_decode(const uint8_t *s, size_t n, uint32_t *ret_cp)
{
	uint8_t c = s[0];
	if (c < 0x80 || n < 2) {
		*ret_cp = c;
		return 1;
	}
	if (c < 0xe0) {
		*ret_cp = (uint32_t)(c & 0x1f) << 6 | (s[1] & 0x3f);
		return 2;
	}
	if (c < 0xf0 || n < 4) {
		*ret_cp = n < 3 ? c : (uint32_t)(c & 0x0f) << 12 | (uint32_t)(s[1] & 0x3f) << 6 | (s[2] & 0x3f);
		return n < 3 ? 1 : 3;
	}
	*ret_cp = (uint32_t)(c & 0x07) << 18 | (uint32_t)(s[1] & 0x3f) << 12 | (uint32_t)(s[2] & 0x3f) << 6 | (s[3] & 0x3f);
	return 4;
}

size_t skv_utf8_encode(uint32_t cp, char out[4])
{
	if (cp < 0x80) {
		out[0] = (char)cp;
		return 1;
	}
	if (cp < 0x800) {
		out[0] = (char)(0xc0 | cp >> 6);
		out[1] = (char)(0x80 | (cp & 0x3f));
		return 2;
	}
	if (cp < 0x10000) {
		out[0] = (char)(0xe0 | cp >> 12);
		out[1] = (char)(0x80 | ((cp >> 6) & 0x3f));
		out[2] = (char)(0x80 | (cp & 0x3f));
		return 3;
	}
	out[0] = (char)(0xf0 | cp >> 18);
	out[1] = (char)(0x80 | ((cp >> 12) & 0x3f));
	out[2] = (char)(0x80 | ((cp >> 6) & 0x3f));
	out[3] = (char)(0x80 | (cp & 0x3f));
	return 4;
}

/* The range the second byte of a sequence led by c must fall in, and the sequence's length;
 * 0 for a byte that cannot start one. */
static unsigned utf8_lead(uint8_t c, uint8_t *lo, uint8_t *hi)
{
	*lo = 0x80;
	*hi = 0xbf;
	if (c >= 0xc2 && c <= 0xdf)
		return 2;
	if (c == 0xe0) {
		*lo = 0xa0;
		return 3;
	}
	if ((c >= 0xe1 && c <= 0xec) || c == 0xee || c == 0xef)
		return 3;
	if (c == 0xed) {
		*hi = 0x9f;
		return 3;
	}
	if (c == 0xf0) {
		*lo = 0x90;
		return 4;
	}
	if (c >= 0xf1 && c <= 0xf3)
		return 4;
	if (c == 0xf4) {
		*hi = 0x8f;
		return 4;
	}
	return 0;
}

size_t skv_utf8_valid_prefix(const char *text, size_t len)
{
	const uint8_t *s = (const uint8_t *)text;
	size_t i = 0;
	while (i < len) {
		if (i + 8 <= len) {
			uint64_t w;
			memcpy(&w, s + i, 8);
			if (!(w & 0x8080808080808080ull)) {
				i += 8;
				continue;
			}
		}
		uint8_t c = s[i], lo, hi;
		if (c < 0x80) {
			i++;
			continue;
		}
		unsigned n = utf8_lead(c, &lo, &hi);
		if (n == 0 || i + n > len || s[i + 1] < lo || s[i + 1] > hi)
			return i;
		for (unsigned k = 2; k < n; k++)
			if ((s[i + k] & 0xc0) != 0x80)
				return i;
		i += n;
	}
	return len;
}

/* ---- character classes for added tokens -------------------------------------------------- */

static bool in_ranges(const uint32_t (*r)[2], size_t n, uint32_t cp)
{
	size_t lo = 0, hi = n;
	while (lo < hi) {
		size_t mid = (lo + hi) / 2;
		if (cp < r[mid][0])
			hi = mid;
		else if (cp > r[mid][1])
			lo = mid + 1;
		else
			return true;
	}
	return false;
}

static bool is_space(uint32_t cp) { return in_ranges(skv_tok_space_ranges, skv_tok_space_ranges_n, cp); }

static bool is_word(uint32_t cp) { return in_ranges(skv_tok_word_ranges, skv_tok_word_ranges_n, cp); }

/* Start of the character that ends at s[end - 1]. */
static size_t char_before(const char *s, size_t end)
{
	size_t i = end - 1;
	while (i > 0 && ((uint8_t)s[i] & 0xc0) == 0x80)
		i--;
	return i;
}

static uint32_t cp_at(const char *s, size_t n, size_t i)
{
	uint32_t cp;
	skv_utf8_decode((const uint8_t *)s + i, n - i, &cp);
	return cp;
}

/* ---- encoding ---------------------------------------------------------------------------- */

static int split_added(const struct skv_tokenizer *tok, struct skv_tokenizer_ws *ws, const char *s, size_t n,
		       unsigned level, unsigned flags, struct skv_err *err);

static int segment(const struct skv_tokenizer *tok, struct skv_tokenizer_ws *ws, const char *s, size_t n,
		   unsigned level, unsigned flags, struct skv_err *err)
{
	if (level == 0 && tok->nfc) {
		/* the normalizer sees each gap between the added tokens that are not normalized, and the
		 * normalized ones are matched on its output (tokenizers' extract_and_normalize); gaps
		 * are handled one after the other, so one buffer serves */
		const char *norm;
		ssize_t nn = skv_tok_nfc(tok->nfc, s, n, &ws->norm, &norm);
		if (nn < 0)
			return skv_err_set(err, (int)nn, "%s: NFC normalization failed", tok->name);
		return split_added(tok, ws, norm, (size_t)nn, 1, flags, err);
	}
	if (level == 0)
		return split_added(tok, ws, s, n, 1, flags, err);
	return skv_tok_pretokenize(tok, ws, s, n, 0, err);
}

static int split_added(const struct skv_tokenizer *tok, struct skv_tokenizer_ws *ws, const char *s, size_t n,
		       unsigned level, unsigned flags, struct skv_err *err)
{
	const struct skv_tok_trie *tr = &tok->trie[level];
	size_t done = 0, i = 0;
	int r;

	if (tr->n == 0)
		return segment(tok, ws, s, n, level, flags, err);
	while (i < n) {
		if (tr->first_only >= 0) {
			const char *p = memchr(s + i, tr->first_only, n - i);
			if (!p)
				break;
			i = (size_t)(p - s);
		} else if (!(tr->first[(uint8_t)s[i] >> 3] & (1u << ((uint8_t)s[i] & 7)))) {
			i++;
			continue;
		}
		/* the longest token starting at i */
		int32_t best = -1;
		size_t best_end = 0;
		uint32_t node = 0;
		for (size_t j = i; j < n; j++) {
			uint32_t ch = tr->nodes[node].child;
			while (ch && tr->nodes[ch].byte != (uint8_t)s[j])
				ch = tr->nodes[ch].sibling;
			if (!ch)
				break;
			node = ch;
			if (tr->nodes[node].token >= 0) {
				best = tr->nodes[node].token;
				best_end = j + 1;
			}
		}
		if (best < 0) {
			i++;
			continue;
		}
		const struct skv_tok_added *a = &tok->added[best];
		size_t start = i, stop = best_end;
		i = best_end; /* the scan goes on after the match, whatever becomes of it */
		if ((flags & SKV_TOKENIZER_SPECIAL_AS_TEXT) && a->special)
			continue;
		if (a->single_word) {
			bool start_space = start == 0 || !is_word(cp_at(s, n, char_before(s, start)));
			bool stop_space = stop == n || !is_word(cp_at(s, n, stop));
			if (!start_space || !stop_space)
				continue;
		}
		if (a->lstrip) {
			size_t ns = start;
			while (ns > 0) {
				size_t c = char_before(s, ns);
				if (!is_space(cp_at(s, n, c)))
					break;
				ns = c;
			}
			start = SKV_MAX(ns, done);
		}
		if (a->rstrip) {
			while (stop < n) {
				uint32_t cp;
				size_t l = skv_utf8_decode((const uint8_t *)s + stop, n - stop, &cp);
				if (!is_space(cp))
					break;
				stop += l;
			}
		}
		if (done < start && (r = segment(tok, ws, s + done, start - done, level, flags, err)) < 0)
			return r;
		if ((r = skv_tok_ws_push(ws, &a->id, 1)) < 0)
			return skv_err_set(err, r, "%s: out of memory", tok->name);
		done = stop;
	}
	if (done < n)
		return segment(tok, ws, s + done, n - done, level, flags, err);
	return 0;
}

ssize_t skv_tokenizer_encode(const struct skv_tokenizer *tok, struct skv_tokenizer_ws *ws, const char *text, size_t len,
			     unsigned flags, const int32_t **ret_ids, struct skv_err *err)
{
	int r;

	if (ws->tok != tok)
		return skv_err_set(err, -EINVAL, "tokenizer: workspace belongs to another tokenizer");
	size_t bad = skv_utf8_valid_prefix(text, len);
	if (bad < len)
		return skv_err_set(err, -EILSEQ, "invalid UTF-8 at byte offset %zu (byte 0x%02x)", bad, (uint8_t)text[bad]);
	ws->n_ids = 0;
	if ((flags & SKV_TOKENIZER_ADD_SPECIAL) && skv_tok_ws_push(ws, tok->pre_ids, tok->n_pre) < 0)
		return skv_err_set(err, -ENOMEM, "tokenizer: out of memory");
	if (len && (r = split_added(tok, ws, text, len, 0, flags, err)) < 0) {
		if (r == -ENOMEM && err && !err->msg[0])
			skv_err_set(err, r, "tokenizer: out of memory");
		return r;
	}
	if ((flags & SKV_TOKENIZER_ADD_SPECIAL) && skv_tok_ws_push(ws, tok->post_ids, tok->n_post) < 0)
		return skv_err_set(err, -ENOMEM, "tokenizer: out of memory");
	*ret_ids = ws->ids;
	return (ssize_t)ws->n_ids;
}

ssize_t skv_tokenizer_encode_alloc(const struct skv_tokenizer *tok, const char *text, size_t len, unsigned flags,
				   int32_t **ret_ids, struct skv_err *err)
{
	_cleanup_tokenizer_ws_ struct skv_tokenizer_ws *ws = NULL;
	const int32_t *ids;
	int r = skv_tokenizer_ws_new(tok, &ws);
	if (r < 0)
		return skv_err_set(err, r, "tokenizer: out of memory");
	ssize_t n = skv_tokenizer_encode(tok, ws, text, len, flags, &ids, err);
	if (n < 0)
		return n;
	int32_t *out = malloc(((size_t)n + 1) * sizeof(int32_t));
	if (!out)
		return skv_err_set(err, -ENOMEM, "tokenizer: out of memory");
	if (n > 0) /* an empty text gives no ids and may give ids == NULL */
		memcpy(out, ids, (size_t)n * sizeof(int32_t));
	*ret_ids = out;
	return n;
}

/* ---- decoding ---------------------------------------------------------------------------- */

static const char replacement[3] = {(char)0xef, (char)0xbf, (char)0xbd}; /* U+FFFD */

/* An unfinished sequence ends: U+FFFD for it (lossy), or its bytes (raw). */
static size_t stream_break(struct skv_tokenizer_stream *s, char *out)
{
	size_t o;
	if (s->flags & SKV_TOKENIZER_RAW) {
		memcpy(out, s->pending, s->n_pending);
		o = s->n_pending;
	} else {
		memcpy(out, replacement, 3);
		o = 3;
	}
	s->n_pending = 0;
	s->need = 0;
	return o;
}

/* Feeds bytes through the UTF-8 state machine (Unicode's "maximal subpart" substitution, which
 * is Rust's from_utf8_lossy); writes at most 3 * (n + 3) bytes. */
static size_t stream_feed(struct skv_tokenizer_stream *s, const uint8_t *in, size_t n, char *out)
{
	size_t o = 0, i = 0;
	while (i < n) {
		uint8_t b = in[i];
		if (s->need) {
			if (b >= s->lo && b <= s->hi) {
				s->pending[s->n_pending++] = b;
				s->lo = 0x80;
				s->hi = 0xbf;
				i++;
				if (--s->need == 0) {
					memcpy(out + o, s->pending, s->n_pending);
					o += s->n_pending;
					s->n_pending = 0;
				}
				continue;
			}
			o += stream_break(s, out + o); /* and b is looked at again below */
			continue;
		}
		if (b < 0x80) {
			size_t j = i;
			while (j < n && in[j] < 0x80)
				j++;
			memcpy(out + o, in + i, j - i);
			o += j - i;
			i = j;
			continue;
		}
		i++;
		unsigned len = utf8_lead(b, &s->lo, &s->hi);
		if (len == 0) {
			if (s->flags & SKV_TOKENIZER_RAW)
				out[o++] = (char)b;
			else {
				memcpy(out + o, replacement, 3);
				o += 3;
			}
			continue;
		}
		s->pending[0] = b;
		s->n_pending = 1;
		s->need = (uint8_t)(len - 1);
	}
	return o;
}

void skv_tokenizer_stream_init(struct skv_tokenizer_stream *s, unsigned flags)
{
	memset(s, 0, sizeof(*s));
	s->flags = flags;
}

size_t skv_tokenizer_stream_bound(const struct skv_tokenizer *tok)
{
	return 3 * (tok->max_token_bytes + 4);
}

static bool decodable(const struct skv_tokenizer *tok, int32_t id, unsigned flags)
{
	if (id < 0 || (uint32_t)id >= tok->n_ids || !(tok->id_flags[id] & SKV_TOK_FLAG_EXISTS))
		return false;
	return !((flags & SKV_TOKENIZER_SKIP_SPECIAL) && (tok->id_flags[id] & SKV_TOK_FLAG_SPECIAL));
}

ssize_t skv_tokenizer_stream_push(const struct skv_tokenizer *tok, struct skv_tokenizer_stream *s, int32_t id, char *out,
				  size_t cap)
{
	if (cap < skv_tokenizer_stream_bound(tok))
		return -ENOBUFS;
	if (!decodable(tok, id, s->flags))
		return 0;
	return (ssize_t)stream_feed(s, (const uint8_t *)tok->dec + tok->dec_off[id], tok->dec_off[id + 1] - tok->dec_off[id],
				    out);
}

ssize_t skv_tokenizer_stream_flush(struct skv_tokenizer_stream *s, char *out, size_t cap)
{
	if (cap < 3)
		return -ENOBUFS;
	return s->n_pending ? (ssize_t)stream_break(s, out) : 0;
}

ssize_t skv_tokenizer_decode(const struct skv_tokenizer *tok, struct skv_tokenizer_ws *ws, const int32_t *ids, size_t n,
			     unsigned flags, const char **ret_text, struct skv_err *err)
{
	struct skv_tokenizer_stream s;
	size_t len = 0;

	if (ws->tok != tok)
		return skv_err_set(err, -EINVAL, "tokenizer: workspace belongs to another tokenizer");
	skv_tokenizer_stream_init(&s, flags);
	for (size_t i = 0; i <= n; i++) {
		size_t in = 0;
		if (i < n) {
			if (!decodable(tok, ids[i], flags))
				continue;
			in = tok->dec_off[ids[i] + 1] - tok->dec_off[ids[i]];
		}
		size_t need = len + 3 * (in + 4) + 1;
		if (need > ws->cap_text) {
			size_t cap = SKV_MAX(need, 2 * ws->cap_text);
			char *p = realloc(ws->text, cap);
			if (!p)
				return skv_err_set(err, -ENOMEM, "tokenizer: out of memory");
			ws->text = p;
			ws->cap_text = cap;
		}
		if (i < n)
			len += stream_feed(&s, (const uint8_t *)tok->dec + tok->dec_off[ids[i]], in, ws->text + len);
		else if (s.n_pending)
			len += stream_break(&s, ws->text + len);
	}
	if (!ws->text && !(ws->text = malloc(ws->cap_text = 16)))
		return skv_err_set(err, -ENOMEM, "tokenizer: out of memory");
	ws->text[len] = '\0';
	*ret_text = ws->text;
	return (ssize_t)len;
}

/* ---- accessors and the workspace --------------------------------------------------------- */

uint32_t skv_tokenizer_n_ids(const struct skv_tokenizer *tok) { return tok->n_ids; }

int32_t skv_tokenizer_token_id(const struct skv_tokenizer *tok, const char *content, size_t len)
{
	int32_t id = skv_strmap_get(&tok->added_map, content, len);
	return id >= 0 ? id : skv_strmap_get(&tok->vocab_str, content, len);
}

bool skv_tokenizer_is_special(const struct skv_tokenizer *tok, int32_t id)
{
	return id >= 0 && (uint32_t)id < tok->n_ids && (tok->id_flags[id] & SKV_TOK_FLAG_SPECIAL);
}

const char *skv_tokenizer_token_bytes(const struct skv_tokenizer *tok, int32_t id, size_t *ret_len)
{
	if (id < 0 || (uint32_t)id >= tok->n_ids || !(tok->id_flags[id] & SKV_TOK_FLAG_EXISTS)) {
		*ret_len = 0;
		return NULL;
	}
	*ret_len = tok->dec_off[id + 1] - tok->dec_off[id];
	return tok->dec + tok->dec_off[id];
}

int skv_tokenizer_ws_new(const struct skv_tokenizer *tok, struct skv_tokenizer_ws **ret)
{
	struct skv_tokenizer_ws *ws = calloc(1, sizeof(*ws));
	if (!ws)
		return -ENOMEM;
	ws->tok = tok;
	ws->md = pcre2_match_data_create(1, NULL);
	ws->mctx = pcre2_match_context_create(NULL);
	if (!ws->md || !ws->mctx) {
		skv_tokenizer_ws_free(ws);
		return -ENOMEM;
	}
	/* Linear patterns never need PCRE2's default guards, and a long run of spaces costs one
	 * backtrack per byte: lift the limits rather than fail on a large document. */
	pcre2_set_match_limit(ws->mctx, UINT32_MAX);
	pcre2_set_depth_limit(ws->mctx, UINT32_MAX);
	ws->jit_stack = pcre2_jit_stack_create(32 * 1024, 4 * 1024 * 1024, NULL);
	if (ws->jit_stack)
		pcre2_jit_stack_assign(ws->mctx, NULL, ws->jit_stack);
	*ret = ws;
	return 0;
}

void skv_tokenizer_ws_free(struct skv_tokenizer_ws *ws)
{
	if (!ws)
		return;
	free(ws->ids);
	free(ws->text);
	free(ws->scratch);
	skv_tok_nfc_buf_done(&ws->norm);
	if (ws->md)
		pcre2_match_data_free(ws->md);
	if (ws->mctx)
		pcre2_match_context_free(ws->mctx);
	if (ws->jit_stack)
		pcre2_jit_stack_free(ws->jit_stack);
	free(ws->syms);
	free(ws->heap);
	free(ws->cache);
	free(ws->cache_keys);
	free(ws->cache_ids);
	free(ws);
}
