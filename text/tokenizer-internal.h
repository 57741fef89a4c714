/* tokenizer-internal.h: what the tokenizer's files share (tokenizer-load.c builds the struct,
 * tokenizer-pretok.c owns the regex translation and splitting, tokenizer-bpe.c the merging,
 * tokenizer.c the encode and decode paths). Not a public interface: see tokenizer.h.
 */
#pragma once

#define PCRE2_CODE_UNIT_WIDTH 8
#include <pcre2.h>

#include "tokenizer.h"

/* ---- hash tables ------------------------------------------------------------------------- */

/* Bytes -> int32 map with keys in one arena (open addressing, linear probing). */
struct skv_strmap {
	struct skv_strmap_slot {
		uint64_t hash; /* 0: empty */
		uint32_t off, len;
		int32_t value;
		uint32_t pad;
	} *slots;
	size_t cap, n; /* cap: power of two */
	char *arena;
	size_t arena_len, arena_cap;
};
int skv_strmap_init(struct skv_strmap *m, size_t expect);
void skv_strmap_done(struct skv_strmap *m);
/* Inserts or replaces (last wins, as a JSON object's duplicate keys do in serde). */
int skv_strmap_put(struct skv_strmap *m, const void *key, size_t len, int32_t value);
/* -1 when absent. */
int32_t skv_strmap_get(const struct skv_strmap *m, const void *key, size_t len);
uint64_t skv_tok_hash(const void *key, size_t len);

/* (left id, right id) -> (rank, merged id). */
struct skv_mergemap {
	struct skv_merge_slot {
		uint64_t key; /* left << 32 | right; UINT64_MAX: empty */
		uint32_t rank, id;
	} *slots;
	size_t cap, n;
};
int skv_mergemap_init(struct skv_mergemap *m, size_t expect);
void skv_mergemap_done(struct skv_mergemap *m);
int skv_mergemap_put(struct skv_mergemap *m, uint32_t a, uint32_t b, uint32_t rank, uint32_t id);
static inline const struct skv_merge_slot *skv_mergemap_get(const struct skv_mergemap *m, uint32_t a, uint32_t b)
{
	uint64_t key = (uint64_t)a << 32 | b;
	uint64_t h = key * 0x9e3779b97f4a7c15ull;
	size_t mask = m->cap - 1, i = (size_t)(h >> 32) & mask;
	if (!m->cap)
		return NULL;
	for (;;) {
		const struct skv_merge_slot *s = &m->slots[i];
		if (s->key == key)
			return s;
		if (s->key == UINT64_MAX)
			return NULL;
		i = (i + 1) & mask;
	}
}

/* ---- the tokenizer ----------------------------------------------------------------------- */

/* tokenizers' SplitDelimiterBehavior: what becomes of a match and the text around it. */
enum skv_tok_behavior {
	SKV_TOK_ISOLATED,	     /* a piece of its own */
	SKV_TOK_REMOVED,	     /* dropped */
	SKV_TOK_MERGED_WITH_PREVIOUS, /* appended to the piece before it */
	SKV_TOK_MERGED_WITH_NEXT,     /* prepended to the piece after it */
	SKV_TOK_CONTIGUOUS,	     /* consecutive matches (or non-matches) form one piece */
};

/* One step of pre-tokenization, applied to every piece the previous step produced. A Digits
 * step is a split on one numeric character (Isolated for individual_digits, else Contiguous). */
struct skv_tok_stage {
	enum { SKV_TOK_STAGE_SPLIT, SKV_TOK_STAGE_PREFIX_SPACE } kind;
	pcre2_code *re; /* NULL: matches nothing (an empty String pattern) */
	uint8_t behavior; /* enum skv_tok_behavior */
	bool invert;
};
#define SKV_TOK_MAX_STAGES 16

struct skv_tok_added {
	char *content;
	uint32_t len;
	int32_t id;
	bool special, lstrip, rstrip, single_word, normalized;
};

/* Prefix tree over added-token contents, for leftmost-longest matching. */
struct skv_tok_trie {
	struct skv_tok_trie_node {
		uint32_t child;	  /* first child, 0: none (node 0 is the root) */
		uint32_t sibling; /* next sibling, 0: none */
		int32_t token;	  /* index into added[], -1: none ends here */
		uint8_t byte;
	} *nodes;
	uint32_t n, cap;
	uint8_t first[32]; /* bitmap of first bytes */
	int first_only;	   /* the only first byte, -1 when several */
};

/* The symbols a byte becomes when it is not in the vocabulary (byte_fallback, unk). */
#define SKV_TOK_FLAG_EXISTS 1u
#define SKV_TOK_FLAG_SPECIAL 2u

struct skv_tokenizer {
	char *name;
	uint32_t n_ids;	   /* max id + 1 */
	size_t n_vocab;	   /* distinct vocabulary entries (tokenizers' get_vocab_size) */

	/* model */
	struct skv_strmap vocab_str;   /* vocabulary entry as written -> id */
	struct skv_strmap vocab_bytes; /* the bytes a ByteLevel entry stands for -> id */
	struct skv_mergemap merges;
	int32_t byte_id[256];	       /* id of the one-byte token for each byte, -1: none */
	int32_t fallback_ids[256][2];  /* byte_fallback <0xXX> ids for each byte's symbol, -1: none */
	uint8_t n_fallback[256];       /* 0: no complete fallback */
	int32_t unk_id;		       /* -1: none */
	bool ignore_merges, fuse_unk;

	/* normalizer: none, or NFC (ICU's) */
	const void *nfc; /* const UNormalizer2 *, NULL: no normalizer */

	/* added tokens: added[] in file order, two tries (not normalized, normalized) */
	struct skv_tok_added *added;
	size_t n_added;
	struct skv_strmap added_map; /* content -> id */
	struct skv_tok_trie trie[2];

	/* pre-tokenizer */
	struct skv_tok_stage stages[SKV_TOK_MAX_STAGES];
	unsigned n_stages;

	/* post-processor (TemplateProcessing single): ids before and after the sequence */
	int32_t *pre_ids, *post_ids;
	size_t n_pre, n_post;

	/* decoding: id -> bytes (the ByteLevel decoder's output for that token alone) */
	char *dec;
	uint32_t *dec_off;  /* [n_ids + 1] */
	uint8_t *id_flags;  /* [n_ids] SKV_TOK_FLAG_* */
	size_t max_token_bytes;
};

/* ---- regex and pre-tokenization (tokenizer-pretok.c) -------------------------------------- */

/* Translates a tokenizers (Oniguruma) pattern into PCRE2 syntax with Oniguruma's \s, \p{L},
 * \p{N} and ASCII-only (?i:...). Returns a malloc'ed pattern, or NULL with err set. */
char *skv_tok_regex_translate(const char *pat, size_t len, struct skv_err *err);
/* Escapes a literal string (a Split "String" pattern) for PCRE2. */
char *skv_tok_regex_literal(const char *s, size_t len);
/* Compiles (and JIT-compiles when available) a translated pattern. */
int skv_tok_regex_compile(const char *pat, pcre2_code **ret, struct skv_err *err);
/* GPT-2's pattern (ByteLevel with use_regex), in tokenizers' syntax. */
extern const char skv_tok_gpt2_pattern[];

/* Generated (tokenizer-unicode.c): PCRE2 class items PCRE2's \p{L} and \p{N} lack, and the
 * full range lists of each class as tokenizers sees them. */
extern const char skv_tok_letters_extra[];
extern const char skv_tok_numbers_extra[];
extern const uint32_t skv_tok_letter_ranges[][2];
extern const size_t skv_tok_letter_ranges_n;
extern const uint32_t skv_tok_number_ranges[][2];
extern const size_t skv_tok_number_ranges_n;
extern const uint32_t skv_tok_space_ranges[][2];
extern const size_t skv_tok_space_ranges_n;
extern const uint32_t skv_tok_word_ranges[][2]; /* Rust regex \w (added tokens' single_word) */
extern const size_t skv_tok_word_ranges_n;
/* PCRE2 class items for Oniguruma's \s (Unicode White_Space). */
extern const char skv_tok_space_items[];
/* Rust's char::is_numeric (the Digits pre-tokenizer's class) as PCRE2 class items, and as ranges. */
extern const char skv_tok_numeric_items[];
extern const uint32_t skv_tok_numeric_ranges[][2];
extern const size_t skv_tok_numeric_ranges_n;

/* ---- the workspace ----------------------------------------------------------------------- */

/* Amortized buffers of the NFC normalizer. */
struct skv_tok_nfc_buf {
	char *out;
	size_t cap_out;
	uint16_t *u16[2]; /* UTF-16 for ICU: the text, its NFC */
	size_t cap16[2];  /* in code units */
};

/* Pre-tokens with fewer symbols merge by scanning, longer ones through a heap. */
#define SKV_TOK_SMALL_WORD 48

struct skv_tok_cache_slot {
	uint64_t hash; /* 0: empty */
	uint32_t key_off, key_len;
	uint32_t ids_off, n_ids;
};

struct skv_tokenizer_ws {
	const struct skv_tokenizer *tok;
	int32_t *ids;
	size_t n_ids, cap_ids;
	char *text; /* decode output */
	size_t cap_text;
	char *scratch; /* prefix-space copies */
	size_t cap_scratch;
	struct skv_tok_nfc_buf norm; /* the normalized text of a gap between added tokens */
	pcre2_match_data *md;
	pcre2_match_context *mctx;
	pcre2_jit_stack *jit_stack;
	/* BPE working arrays */
	struct skv_tok_sym {
		uint32_t id;
		int32_t prev, next;
		uint32_t len; /* bytes; 0: merged away */
	} *syms;
	size_t cap_syms;
	uint32_t ranks[SKV_TOK_SMALL_WORD]; /* short-word path: rank of the pair at each symbol */
	uint32_t rnew[SKV_TOK_SMALL_WORD];  /* and the id it merges into */
	struct skv_tok_heap_item {
		uint32_t rank, pos, id;
	} *heap;
	size_t cap_heap;
	/* word cache: pre-token bytes -> ids */
	struct skv_tok_cache_slot *cache;
	size_t cache_cap, cache_n;
	char *cache_keys;
	size_t cache_keys_len, cache_keys_cap;
	int32_t *cache_ids;
	size_t cache_ids_len, cache_ids_cap;
};

int skv_tok_ws_push(struct skv_tokenizer_ws *ws, const int32_t *ids, size_t n);
/* NFC of s[0..n) (valid UTF-8) through ICU: *ret is s itself when nothing changes (all ASCII),
 * else b->out. Returns the length or a negative errno. */
ssize_t skv_tok_nfc(const void *nfc, const char *s, size_t n, struct skv_tok_nfc_buf *b, const char **ret);
void skv_tok_nfc_buf_done(struct skv_tok_nfc_buf *b);
/* Encodes one pre-token (raw bytes) with the BPE model, appending ids to ws (tokenizer-bpe.c). */
int skv_tok_bpe_piece(const struct skv_tokenizer *tok, struct skv_tokenizer_ws *ws, const uint8_t *s, size_t n);
/* Runs pre-tokenization from stage `stage` on s and BPE on every piece (tokenizer-pretok.c). */
int skv_tok_pretokenize(const struct skv_tokenizer *tok, struct skv_tokenizer_ws *ws, const char *s, size_t n,
			unsigned stage, struct skv_err *err);

/* GPT-2's byte <-> unicode table: byte b stands for code point skv_tok_byte_cp(b). */
uint32_t skv_tok_byte_cp(unsigned b);
/* The byte code point cp stands for, -1 when it is not one of the 256. */
int skv_tok_cp_byte(uint32_t cp);
/* Decodes one UTF-8 character (valid input assumed); returns its length. */
size_t skv_utf8_decode(const uint8_t *s, size_t n, uint32_t *ret_cp);
size_t skv_utf8_encode(uint32_t cp, char out[4]);
