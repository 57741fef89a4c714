/* tokenizer.h: Hugging Face tokenizer.json byte-level BPE (the Llama-3 kind), encoding and
 * decoding exactly as the `tokenizers` library does.
 *
 * What it loads: model BPE (vocab, merges as "a b" strings or ["a", "b"] pairs, ignore_merges,
 * unk_token, fuse_unk, byte_fallback); added_tokens, special or not, with lstrip / rstrip /
 * single_word / normalized; a pre_tokenizer made of Split (regex or string; Isolated, Removed,
 * MergedWithPrevious, MergedWithNext or Contiguous; invert) and Digits (individual_digits or not)
 * steps followed by one ByteLevel (use_regex, add_prefix_space); the ByteLevel decoder;
 * the TemplateProcessing post-processor, alone or inside a Sequence beside ByteLevel; the NFC
 * normalizer (ICU's). Anything else (another normalizer, WordPiece, Metaspace,
 * continuing_subword_prefix, ...) is refused at load
 * with a message that names the field: the product serves Llama-3 checkpoints, and a tokenizer it
 * would only approximate is worse than a clear error. Truncation and padding are ignored: callers
 * enforce context limits themselves.
 *
 * Encoding equals `tokenizers` (0.23) on every valid UTF-8 input: the split regex runs on PCRE2
 * (UTF + UCP, JIT when available) after a translation that gives \s, \p{L} and \p{N} the
 * character sets of tokenizers' Oniguruma (Unicode 16.0; see tokenizer-unicode.c, and
 * tokenizer-pretok.c for what is translated). Invalid UTF-8 is an error that
 * names the byte offset. Work is linear in the input: BPE merging inside one pre-token uses a
 * heap once the pre-token is long, so a 1 MB word costs O(n log n), never O(n^2).
 *
 * Threads: a loaded tokenizer is immutable and may be shared. Encoding and decoding need a
 * workspace (struct skv_tokenizer_ws: amortized buffers, the regex match data, a word cache),
 * one per thread. Returned ids and text live in the workspace until its next call.
 *
 * Errors: negative errno, with a message in err when err is non-NULL.
 */
#pragma once

#include <sys/types.h>

#include "skv-base.h"

struct skv_tokenizer;
struct skv_tokenizer_ws;

enum skv_tokenizer_flag {
	/* encode: apply the post-processor (Llama-3: <|begin_of_text|> in front), as
	 * `add_special_tokens=True` does */
	SKV_TOKENIZER_ADD_SPECIAL = 1u << 0,
	/* encode: special added tokens are not matched, their text is encoded as ordinary text
	 * (tokenizers' encode_special_tokens; for untrusted text). Non-special added tokens still
	 * match. */
	SKV_TOKENIZER_SPECIAL_AS_TEXT = 1u << 1,
	/* decode: leave special tokens out (skip_special_tokens=True) */
	SKV_TOKENIZER_SKIP_SPECIAL = 1u << 2,
	/* decode: the raw bytes, not repaired into UTF-8 (by default invalid sequences become
	 * U+FFFD exactly as tokenizers' String::from_utf8_lossy does) */
	SKV_TOKENIZER_RAW = 1u << 3,
};

/* Largest tokenizer.json accepted (Llama-3's is 9 MB). */
#define SKV_TOKENIZER_MAX_JSON (256u << 20)
/* Largest token id accepted (bounds the per-id tables a hostile file could ask for). */
#define SKV_TOKENIZER_MAX_ID ((1u << 22) - 1)

/* Loads PATH: a tokenizer.json, or a model directory holding one. */
int skv_tokenizer_load(const char *path, struct skv_tokenizer **ret, struct skv_err *err);
/* Parses tokenizer.json text (len bytes, need not be NUL-terminated); name is used in messages. */
int skv_tokenizer_parse(const char *json, size_t len, const char *name, struct skv_tokenizer **ret,
			struct skv_err *err);
void skv_tokenizer_free(struct skv_tokenizer *tok);
static inline void skv_tokenizer_freep(struct skv_tokenizer **p) { skv_tokenizer_free(*p); }
#define _cleanup_tokenizer_ _cleanup_(skv_tokenizer_freep)

/* One past the largest id of the vocabulary and the added tokens. */
uint32_t skv_tokenizer_n_ids(const struct skv_tokenizer *tok);
/* The id of a token given by its content (an added token's text, or a vocabulary entry as
 * written in tokenizer.json, e.g. "Ġthe"); -1 when there is none. */
int32_t skv_tokenizer_token_id(const struct skv_tokenizer *tok, const char *content, size_t len);
/* Whether id is a special added token (what SKIP_SPECIAL leaves out). */
bool skv_tokenizer_is_special(const struct skv_tokenizer *tok, int32_t id);
/* The bytes id decodes to on its own (NULL and *ret_len 0 for an id with no token). Borrowed
 * from tok. */
const char *skv_tokenizer_token_bytes(const struct skv_tokenizer *tok, int32_t id, size_t *ret_len);

int skv_tokenizer_ws_new(const struct skv_tokenizer *tok, struct skv_tokenizer_ws **ret);
void skv_tokenizer_ws_free(struct skv_tokenizer_ws *ws);
static inline void skv_tokenizer_ws_freep(struct skv_tokenizer_ws **p) { skv_tokenizer_ws_free(*p); }
#define _cleanup_tokenizer_ws_ _cleanup_(skv_tokenizer_ws_freep)

/* Encodes len bytes of UTF-8 text. Returns the number of ids, stored in *ret_ids (owned by ws,
 * valid until ws is used again), or a negative errno: -EILSEQ for invalid UTF-8 (err names the
 * byte offset), -ENOMEM. ws must come from this tokenizer. flags: ADD_SPECIAL, SPECIAL_AS_TEXT. */
ssize_t skv_tokenizer_encode(const struct skv_tokenizer *tok, struct skv_tokenizer_ws *ws, const char *text,
			     size_t len, unsigned flags, const int32_t **ret_ids, struct skv_err *err);
/* Like encode, but the ids are a fresh malloc'ed array the caller frees. */
ssize_t skv_tokenizer_encode_alloc(const struct skv_tokenizer *tok, const char *text, size_t len, unsigned flags,
				   int32_t **ret_ids, struct skv_err *err);

/* Decodes ids to text as tokenizers' decode does (ids with no token are skipped, as there).
 * Returns the length; *ret_text (owned by ws, NUL-terminated, valid until ws is used again).
 * flags: SKIP_SPECIAL, RAW. */
ssize_t skv_tokenizer_decode(const struct skv_tokenizer *tok, struct skv_tokenizer_ws *ws, const int32_t *ids,
			     size_t n, unsigned flags, const char **ret_text, struct skv_err *err);

/* Incremental decoding for streaming: push one id at a time, get the text it completes. Never
 * emits part of a UTF-8 character: a character split across tokens is held back until it is
 * whole; bytes that can never form one become U+FFFD at once. The concatenation of every push
 * and the final flush equals skv_tokenizer_decode of all the ids (same flags). Caller-owned,
 * no allocation. */
struct skv_tokenizer_stream {
	uint32_t flags;	    /* SKIP_SPECIAL, RAW */
	uint8_t pending[4]; /* the started character */
	uint8_t n_pending;
	uint8_t need;	    /* continuation bytes still missing */
	uint8_t lo, hi;	    /* the range the next continuation byte must fall in */
};
void skv_tokenizer_stream_init(struct skv_tokenizer_stream *s, unsigned flags);
/* The most bytes one push or flush writes for this tokenizer. */
size_t skv_tokenizer_stream_bound(const struct skv_tokenizer *tok);
/* Writes the text that id completes into out (cap >= skv_tokenizer_stream_bound, else
 * -ENOBUFS); returns its length (often 0 inside a character). Unknown ids add nothing. */
ssize_t skv_tokenizer_stream_push(const struct skv_tokenizer *tok, struct skv_tokenizer_stream *s, int32_t id,
				  char *out, size_t cap);
/* End of stream: an unfinished character becomes U+FFFD. Returns the bytes written (0..3). */
ssize_t skv_tokenizer_stream_flush(struct skv_tokenizer_stream *s, char *out, size_t cap);

/* The first invalid UTF-8 byte offset in text, or len when it is all valid. */
size_t skv_utf8_valid_prefix(const char *text, size_t len);
