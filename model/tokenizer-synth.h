/* tokenizer-synth.h: writes the tokenizer files of a synthetic checkpoint (tokenizer.json in the
 * Llama-3 shape: byte-level BPE, Llama-3's split regex, 256 special tokens after the base
 * vocabulary, a post-processor that adds <|begin_of_text|>; and tokenizer_config.json).
 *
 * base_vocab is the number of ordinary (BPE) tokens; the special tokens take ids
 * base_vocab .. base_vocab + 255, exactly as Llama-3's take 128000 .. 128255.
 */
#pragma once

#include "skv-base.h"

#define SKV_LLAMA3_N_SPECIAL 256u

/* Llama-3.1's special token names: offset 0 is <|begin_of_text|>, 1 <|end_of_text|>,
 * 6/7 the header markers, 8 <|eom_id|>, 9 <|eot_id|>, 10 <|python_tag|>, the rest reserved.
 * Writes the name of special token `offset` into buf. */
void skv_llama3_special_name(uint32_t offset, char *buf, size_t len);

int skv_tokenizer_write_synthetic(const char *dir, uint32_t base_vocab, uint64_t seed, struct skv_err *err);
