/* tokenizer-synth.h: the tokenizer files of a synthetic checkpoint, and the trainer behind them.
 *
 * tokenizer.json is a byte-level BPE trained on a small corpus compiled into the library
 * (model/corpus/), in the Llama-3 shape: Llama-3's split regex then ByteLevel, ignore_merges,
 * 256 special tokens right after the base_vocab ordinary ones (ids base_vocab ..
 * base_vocab + 255, as Llama-3's take 128000 .. 128255), the TemplateProcessing post-processor
 * that adds <|begin_of_text|>, the ByteLevel decoder; written byte for byte as tokenizers saves
 * it (Tokenizer.from_file(...).to_str(pretty=True) gives the file back). tokenizer_config.json
 * carries Meta's Llama-3.1 chat template, bos/eos and added_tokens_decoder, laid out as
 * transformers writes it.
 *
 * Deterministic: the same base_vocab gives the same bytes. When the corpus runs out of pairs
 * before base_vocab tokens (the 128000-token presets), the rest are concatenations of existing
 * tokens, each with its merge, so the vocabulary still has exactly base_vocab ordinary tokens.
 */
#pragma once

#include "skv-base.h"

#define SKV_LLAMA3_N_SPECIAL 256u

/* Llama-3.1's special token names: offset 0 is <|begin_of_text|>, 1 <|end_of_text|>,
 * 6/7 the header markers, 8 <|eom_id|>, 9 <|eot_id|>, 10 <|python_tag|>, the rest reserved.
 * Writes the name of special token `offset` into buf. */
void skv_llama3_special_name(uint32_t offset, char *buf, size_t len);

/* Llama-3's pre-tokenizer split pattern, as tokenizer.json spells it. */
const char *skv_llama3_split_pattern(void);

/* The corpus compiled into the library (the files of model/corpus/, concatenated). */
/* Meta's Llama-3.1 chat template (model/templates/llama-3.1.jinja), written into the synthetic
 * tokenizer_config.json. */
extern const char skv_chat_template_llama31_text[];
extern const char skv_synth_corpus[];
extern const size_t skv_synth_corpus_len;

/* A trained byte-level BPE: token i's bytes are bytes[tok_off[i] .. + tok_len[i]); tokens
 * 0..255 are the single bytes (id = byte value); merges[r] = {left, right} in rank order. */
struct skv_bpe_vocab {
	uint32_t n_tokens;
	uint32_t n_trained; /* tokens learned from the corpus; the rest were filled */
	uint32_t n_merges;
	char *bytes;
	uint32_t *tok_off, *tok_len;
	uint32_t (*merges)[2];
};

/* Trains on text (valid UTF-8) up to n_tokens tokens (bytes included). */
int skv_bpe_train(const char *text, size_t len, uint32_t n_tokens, struct skv_bpe_vocab **ret, struct skv_err *err);
void skv_bpe_vocab_free(struct skv_bpe_vocab *v);

/* The two files' texts (malloc'ed, NUL-terminated) for base_vocab ordinary tokens. */
int skv_tokenizer_synth(uint32_t base_vocab, char **ret_tokenizer_json, size_t *ret_tokenizer_len,
			char **ret_config_json, size_t *ret_config_len, struct skv_err *err);

/* Writes DIR/tokenizer.json and DIR/tokenizer_config.json. seed is unused (the tokenizer depends
 * on base_vocab only), kept so every synthetic artifact takes one. */
int skv_tokenizer_write_synthetic(const char *dir, uint32_t base_vocab, uint64_t seed, struct skv_err *err);
