/* tokenizer-pretok.c: the pre-tokenizer. Translates tokenizers' (Oniguruma) split patterns into
 * PCRE2, compiles them, and cuts text into the pieces the BPE model sees.
 *
 * The translation is deliberately narrow: it rewrites \s, \S, \p{L}, \P{L}, \p{N}, \P{N}, \h and
 * \uHHHH, whose meaning differs between the dialects (or between their Unicode versions), copies
 * everything else, and refuses what PCRE2 would read differently (nested classes, class
 * intersection) with a message rather than guessing. (?i:...) is left to PCRE2: its caseless
 * matching uses Unicode simple case folding, which is what Oniguruma does for these patterns
 * ('s also matches 'ſ, U+017F, in both); Oniguruma's multi-character folds (a pattern "ss"
 * matching "ß") have no PCRE2 equivalent, and no Llama or GPT-2 pattern needs them.
 */
#include "tokenizer-internal.h"

#include <stdio.h>
#include <string.h>

const char skv_tok_gpt2_pattern[] = "'s|'t|'re|'ve|'m|'ll|'d| ?\\p{L}+| ?\\p{N}+| ?[^\\s\\p{L}\\p{N}]+|\\s+(?!\\S)|\\s+";

/* Oniguruma's \s under Unicode: the White_Space property (no U+180E, unlike PCRE2's \s). */
const char skv_tok_space_items[] = "\\t\\n\\x0b\\f\\r\\x20\\x{85}\\x{a0}\\x{1680}\\x{2000}-\\x{200a}\\x{2028}\\x{2029}"
				   "\\x{202f}\\x{205f}\\x{3000}";

struct sbuf {
	char *p;
	size_t len, cap;
	bool oom;
};

static void sb_put(struct sbuf *b, const char *s, size_t n)
{
	if (b->oom)
		return;
	if (b->len + n + 1 > b->cap) {
		size_t cap = SKV_MAX(b->cap * 2, b->len + n + 64);
		char *p = realloc(b->p, cap);
		if (!p) {
			b->oom = true;
			return;
		}
		b->p = p;
		b->cap = cap;
	}
	memcpy(b->p + b->len, s, n);
	b->len += n;
	b->p[b->len] = '\0';
}
static void sb_puts(struct sbuf *b, const char *s) { sb_put(b, s, strlen(s)); }

static bool is_ascii_letter(char c) { return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z'); }
static bool is_hex(char c) { return (c >= '0' && c <= '9') || (c >= 'a' && c <= 'f') || (c >= 'A' && c <= 'F'); }

/* The class items for \p{name}, or NULL to pass it through unchanged. */
static const char *property_extra(const char *name, size_t len)
{
	if ((len == 1 && name[0] == 'L') || (len == 6 && !memcmp(name, "Letter", 6)))
		return skv_tok_letters_extra;
	if ((len == 1 && name[0] == 'N') || (len == 6 && !memcmp(name, "Number", 6)))
		return skv_tok_numbers_extra;
	return NULL;
}

char *skv_tok_regex_translate(const char *pat, size_t len, struct skv_err *err)
{
	struct sbuf b = {0};
	bool in_class = false;
	size_t i = 0;

#define FAIL(...)                                                                                  \
	do {                                                                                       \
		skv_err_set(err, -EINVAL, __VA_ARGS__);                                            \
		free(b.p);                                                                         \
		return NULL;                                                                       \
	} while (0)

	sb_puts(&b, "");
	while (i < len) {
		char c = pat[i];
		if (c == '\0')
			FAIL("regex: NUL byte at offset %zu", i);
		if (c == '\\') {
			if (i + 1 >= len)
				FAIL("regex: trailing backslash");
			char e = pat[i + 1];
			if (e == 's') {
				if (!in_class)
					sb_puts(&b, "[");
				sb_puts(&b, skv_tok_space_items);
				if (!in_class)
					sb_puts(&b, "]");
				i += 2;
			} else if (e == 'S') {
				if (in_class)
					FAIL("regex: \\S inside a character class is not supported (offset %zu)", i);
				sb_puts(&b, "[^");
				sb_puts(&b, skv_tok_space_items);
				sb_puts(&b, "]");
				i += 2;
			} else if (e == 'h' || e == 'H') {
				/* Oniguruma (Ruby syntax): a hexadecimal digit */
				if (in_class && e == 'H')
					FAIL("regex: \\H inside a character class is not supported (offset %zu)", i);
				sb_puts(&b, in_class ? "0-9a-fA-F" : e == 'h' ? "[0-9a-fA-F]" : "[^0-9a-fA-F]");
				i += 2;
			} else if ((e == 'p' || e == 'P') && i + 2 < len && pat[i + 2] == '{') {
				const char *name = pat + i + 3;
				const char *end = memchr(name, '}', len - (size_t)(name - pat));
				if (!end)
					FAIL("regex: unterminated \\%c{ at offset %zu", e, i);
				size_t nl = (size_t)(end - name);
				bool neg = e == 'P';
				if (nl > 0 && name[0] == '^') {
					neg = !neg;
					name++;
					nl--;
				}
				const char *extra = property_extra(name, nl);
				if (!extra) {
					sb_put(&b, pat + i, (size_t)(end - pat) + 1 - i);
				} else if (neg) {
					if (in_class)
						FAIL("regex: a negated \\p{%.*s} inside a character class is not supported",
						     (int)nl, name);
					sb_puts(&b, "[^\\p{");
					sb_put(&b, name, 1);
					sb_puts(&b, "}");
					sb_puts(&b, extra);
					sb_puts(&b, "]");
				} else {
					if (!in_class)
						sb_puts(&b, "[");
					sb_puts(&b, "\\p{");
					sb_put(&b, name, 1);
					sb_puts(&b, "}");
					sb_puts(&b, extra);
					if (!in_class)
						sb_puts(&b, "]");
				}
				i = (size_t)(end - pat) + 1;
			} else if (e == 'u') {
				/* Oniguruma's \uHHHH is PCRE2's \x{HHHH} */
				if (i + 6 > len || !is_hex(pat[i + 2]) || !is_hex(pat[i + 3]) || !is_hex(pat[i + 4]) ||
				    !is_hex(pat[i + 5]))
					FAIL("regex: \\u needs four hexadecimal digits (offset %zu)", i);
				sb_puts(&b, "\\x{");
				sb_put(&b, pat + i + 2, 4);
				sb_puts(&b, "}");
				i += 6;
			} else if (e == 'x') {
				size_t j = i + 2;
				if (j < len && pat[j] == '{') {
					while (j < len && pat[j] != '}')
						j++;
					if (j == len)
						FAIL("regex: unterminated \\x{ at offset %zu", i);
					j++;
				} else {
					while (j < len && j < i + 4 && is_hex(pat[j]))
						j++;
				}
				sb_put(&b, pat + i, j - i);
				i = j;
			} else {
				sb_put(&b, pat + i, 2);
				i += 2;
			}
			continue;
		}
		if (in_class) {
			if (c == '[') {
				if (i + 1 < len && pat[i + 1] == ':') {
					const char *end = memmem(pat + i, len - i, ":]", 2);
					if (!end)
						FAIL("regex: unterminated POSIX class at offset %zu", i);
					sb_put(&b, pat + i, (size_t)(end - pat) + 2 - i);
					i = (size_t)(end - pat) + 2;
					continue;
				}
				FAIL("regex: nested character classes are not supported (offset %zu)", i);
			}
			if (c == ']') {
				in_class = false;
				sb_puts(&b, "]");
				i++;
				continue;
			}
			if (c == '&' && i + 1 < len && pat[i + 1] == '&')
				FAIL("regex: class intersection (&&) is not supported (offset %zu)", i);
			sb_put(&b, &c, 1);
			i++;
			continue;
		}
		if (c == '[') {
			in_class = true;
			sb_puts(&b, "[");
			i++;
			if (i < len && pat[i] == '^') {
				sb_puts(&b, "^");
				i++;
			}
			if (i < len && pat[i] == ']') {
				sb_puts(&b, "\\]");
				i++;
			}
			continue;
		}
		sb_put(&b, &c, 1);
		i++;
	}
	if (in_class)
		FAIL("regex: unterminated character class");
	if (b.oom) {
		free(b.p);
		skv_err_set(err, -ENOMEM, "regex: out of memory");
		return NULL;
	}
#undef FAIL
	return b.p;
}

char *skv_tok_regex_literal(const char *s, size_t len)
{
	struct sbuf b = {0};
	sb_puts(&b, "");
	for (size_t i = 0; i < len; i++) {
		unsigned char c = (unsigned char)s[i];
		if (c == 0) {
			sb_puts(&b, "\\x00");
		} else if (c < 0x80 && !((c >= '0' && c <= '9') || is_ascii_letter((char)c) || c == '_')) {
			if (c < 0x20 || c == 0x7f) {
				char hex[8];
				snprintf(hex, sizeof(hex), "\\x%02x", c);
				sb_puts(&b, hex);
			} else {
				char esc[2] = {'\\', (char)c};
				sb_put(&b, esc, 2);
			}
		} else {
			sb_put(&b, (const char *)&s[i], 1);
		}
	}
	if (b.oom) {
		free(b.p);
		return NULL;
	}
	return b.p;
}

int skv_tok_regex_compile(const char *pat, pcre2_code **ret, struct skv_err *err)
{
	int ec;
	PCRE2_SIZE eo;
	pcre2_code *re = pcre2_compile((PCRE2_SPTR)pat, PCRE2_ZERO_TERMINATED, PCRE2_UTF | PCRE2_UCP | PCRE2_NEVER_BACKSLASH_C,
				       &ec, &eo, NULL);
	if (!re) {
		PCRE2_UCHAR msg[256];
		pcre2_get_error_message(ec, msg, sizeof(msg));
		return skv_err_set(err, -EINVAL, "regex: PCRE2 refuses the pattern at offset %zu: %s", (size_t)eo,
				   (const char *)msg);
	}
	(void)pcre2_jit_compile(re, PCRE2_JIT_COMPLETE); /* the interpreter serves when JIT is absent */
	*ret = re;
	return 0;
}

/* One match at or after pos: 1 with [*ms, *me), 0 when none, negative errno on failure. */
static int find(struct skv_tokenizer_ws *ws, const pcre2_code *re, const char *s, size_t n, size_t pos, size_t *ms,
		size_t *me, struct skv_err *err)
{
	int rc = pcre2_match(re, (PCRE2_SPTR)s, n, pos, PCRE2_NO_UTF_CHECK, ws->md, ws->mctx);
	if (rc == PCRE2_ERROR_JIT_STACKLIMIT)
		rc = pcre2_match(re, (PCRE2_SPTR)s, n, pos, PCRE2_NO_UTF_CHECK | PCRE2_NO_JIT, ws->md, ws->mctx);
	if (rc == PCRE2_ERROR_NOMATCH)
		return 0;
	if (rc < 0) {
		PCRE2_UCHAR msg[256];
		pcre2_get_error_message(rc, msg, sizeof(msg));
		return skv_err_set(err, rc == PCRE2_ERROR_NOMEMORY ? -ENOMEM : -EIO,
				   "pre-tokenizer: regex match failed at byte %zu: %s", pos, (const char *)msg);
	}
	PCRE2_SIZE *ov = pcre2_get_ovector_pointer(ws->md);
	*ms = ov[0];
	*me = ov[1];
	return 1;
}

static size_t utf8_len(unsigned char c)
{
	return c < 0x80 ? 1 : c < 0xe0 ? 2 : c < 0xf0 ? 3 : 4;
}

/* A finished piece goes on to the next stage (empty ones are dropped, as tokenizers drops them). */
static int split_piece(const struct skv_tokenizer *tok, struct skv_tokenizer_ws *ws, const char *s, size_t a, size_t b,
		       unsigned stage, struct skv_err *err)
{
	return b > a ? skv_tok_pretokenize(tok, ws, s + a, b - a, stage + 1, err) : 0;
}

/* The piece being built: [a, b) while have; prev_match is the kind of the last segment. */
struct split_fold {
	const struct skv_tok_stage *st;
	bool invert, have, prev_match;
	size_t a, b;
};

/* One segment [a, b) (a match or the gap before one) through the stage's behavior. */
static int split_segment(const struct skv_tokenizer *tok, struct skv_tokenizer_ws *ws, const char *s, size_t a,
			 size_t b, bool match, unsigned stage, struct split_fold *f, struct skv_err *err)
{
	bool extend = false;
	int r;
	match ^= f->invert;
	switch (f->st->behavior) {
	case SKV_TOK_ISOLATED:
		return split_piece(tok, ws, s, a, b, stage, err);
	case SKV_TOK_REMOVED:
		return match ? 0 : split_piece(tok, ws, s, a, b, stage, err);
	case SKV_TOK_CONTIGUOUS:
		extend = f->have && match == f->prev_match;
		break;
	case SKV_TOK_MERGED_WITH_PREVIOUS:
		extend = f->have && match && !f->prev_match;
		break;
	case SKV_TOK_MERGED_WITH_NEXT:
		/* a match waits for the segment after it, and joins it when that one is a gap */
		extend = f->have && !match;
		break;
	}
	f->prev_match = match;
	if (extend) {
		f->b = b;
		if (f->st->behavior != SKV_TOK_MERGED_WITH_NEXT)
			return 0;
		f->have = false;
		return split_piece(tok, ws, s, f->a, f->b, stage, err);
	}
	if (f->have && (r = split_piece(tok, ws, s, f->a, f->b, stage, err)) < 0)
		return r;
	if (f->st->behavior == SKV_TOK_MERGED_WITH_NEXT && !match) {
		f->have = false;
		return split_piece(tok, ws, s, a, b, stage, err);
	}
	f->have = true;
	f->a = a;
	f->b = b;
	return 0;
}

int skv_tok_pretokenize(const struct skv_tokenizer *tok, struct skv_tokenizer_ws *ws, const char *s, size_t n,
			unsigned stage, struct skv_err *err)
{
	if (n == 0)
		return 0;
	if (stage == tok->n_stages)
		return skv_tok_bpe_piece(tok, ws, (const uint8_t *)s, n);

	const struct skv_tok_stage *st = &tok->stages[stage];
	if (st->kind == SKV_TOK_STAGE_PREFIX_SPACE) {
		if (s[0] == ' ')
			return skv_tok_pretokenize(tok, ws, s, n, stage + 1, err);
		/* One ByteLevel stage at most (checked at load), so no caller holds scratch now. */
		if (n + 1 > ws->cap_scratch) {
			size_t cap = SKV_MAX(n + 1, 2 * ws->cap_scratch);
			char *p = realloc(ws->scratch, cap);
			if (!p)
				return skv_err_set(err, -ENOMEM, "pre-tokenizer: out of memory");
			ws->scratch = p;
			ws->cap_scratch = cap;
		}
		ws->scratch[0] = ' ';
		memcpy(ws->scratch + 1, s, n);
		return skv_tok_pretokenize(tok, ws, ws->scratch, n + 1, stage + 1, err);
	}

	/* The regex cuts the text into segments, alternately gaps and matches (onig's find_iter:
	 * an empty match right where the previous match ended is skipped, the search goes on one
	 * character later); invert swaps the two kinds; the behavior folds segments into pieces
	 * (tokenizers' NormalizedString::split), each handed to the next stage as soon as it is
	 * complete, so nothing is collected. */
	struct split_fold f = {.st = st, .invert = st->invert};
	size_t prev = 0, pos = 0, last_end = 0, ms = 0, me = 0;
	bool have_end = false;
	int r;
	while (st->re && pos <= n) {
		r = find(ws, st->re, s, n, pos, &ms, &me, err);
		if (r < 0)
			return r;
		if (r == 0)
			break;
		if (ms == me && have_end && me == last_end) {
			if (pos >= n)
				break;
			pos += utf8_len((unsigned char)s[pos]);
			continue;
		}
		pos = last_end = me;
		have_end = true;
		if ((ms > prev && (r = split_segment(tok, ws, s, prev, ms, false, stage, &f, err)) < 0) ||
		    (r = split_segment(tok, ws, s, ms, me, true, stage, &f, err)) < 0)
			return r;
		prev = me;
	}
	if (prev < n && (r = split_segment(tok, ws, s, prev, n, false, stage, &f, err)) < 0)
		return r;
	return split_piece(tok, ws, s, f.have ? f.a : 0, f.have ? f.b : 0, stage, err);
}
