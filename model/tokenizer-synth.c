/* tokenizer-synth.c: the tokenizer files of synthetic checkpoints (see tokenizer-synth.h). */
#include "tokenizer-synth.h"

#include <json-c/json.h>
#include <stdio.h>
#include <string.h>

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

/* GPT-2's byte-to-unicode table: printable bytes stand for themselves, the others are shifted to
 * U+0100 and up. Writes the UTF-8 form of byte b's symbol. */
static void byte_symbol(unsigned b, char out[4])
{
	unsigned cp;
	if ((b >= 33 && b <= 126) || (b >= 161 && b <= 172) || (b >= 174 && b <= 255)) {
		cp = b;
	} else {
		unsigned n = 0;
		for (unsigned x = 0; x < b; x++)
			if (!((x >= 33 && x <= 126) || (x >= 161 && x <= 172) || (x >= 174 && x <= 255)))
				n++;
		cp = 256 + n;
	}
	if (cp < 0x80) {
		out[0] = (char)cp;
		out[1] = 0;
	} else {
		out[0] = (char)(0xc0 | (cp >> 6));
		out[1] = (char)(0x80 | (cp & 0x3f));
		out[2] = 0;
	}
}

static int write_json(const char *dir, const char *name, json_object *o, struct skv_err *err)
{
	char path[4096];
	snprintf(path, sizeof(path), "%s/%s", dir, name);
	if (json_object_to_file_ext(path, o, JSON_C_TO_STRING_PRETTY | JSON_C_TO_STRING_SPACED | JSON_C_TO_STRING_NOSLASHESCAPE) < 0)
		return skv_err_set(err, -EIO, "%s: cannot write: %s", path, json_util_get_last_err());
	return 0;
}

int skv_tokenizer_write_synthetic(const char *dir, uint32_t base_vocab, uint64_t seed, struct skv_err *err)
{
	json_object *tok = json_object_new_object(), *added = json_object_new_array();
	json_object *vocab = json_object_new_object(), *merges = json_object_new_array();
	json_object *cfg = json_object_new_object(), *dec = json_object_new_object();
	char name[64];
	int r;

	(void)seed;
	if (base_vocab < 256) {
		r = skv_err_set(err, -EINVAL, "tokenizer: base vocabulary %u is smaller than the 256 byte tokens",
				base_vocab);
		goto out;
	}
	for (unsigned b = 0; b < 256; b++) {
		char sym[4];
		byte_symbol(b, sym);
		json_object_object_add(vocab, sym, json_object_new_int((int)b));
	}
	for (uint32_t i = 0; i < SKV_LLAMA3_N_SPECIAL; i++) {
		json_object *t = json_object_new_object(), *d = json_object_new_object();
		skv_llama3_special_name(i, name, sizeof(name));
		json_object_object_add(t, "id", json_object_new_int((int)(base_vocab + i)));
		json_object_object_add(t, "content", json_object_new_string(name));
		json_object_object_add(t, "single_word", json_object_new_boolean(0));
		json_object_object_add(t, "lstrip", json_object_new_boolean(0));
		json_object_object_add(t, "rstrip", json_object_new_boolean(0));
		json_object_object_add(t, "normalized", json_object_new_boolean(0));
		json_object_object_add(t, "special", json_object_new_boolean(1));
		json_object_array_add(added, t);
		json_object_object_add(d, "content", json_object_new_string(name));
		json_object_object_add(d, "special", json_object_new_boolean(1));
		snprintf(name, sizeof(name), "%u", base_vocab + i);
		json_object_object_add(dec, name, d);
	}
	json_object *model = json_object_new_object();
	json_object_object_add(model, "type", json_object_new_string("BPE"));
	json_object_object_add(model, "ignore_merges", json_object_new_boolean(1));
	json_object_object_add(model, "byte_fallback", json_object_new_boolean(0));
	json_object_object_add(model, "vocab", vocab);
	json_object_object_add(model, "merges", merges);
	json_object_object_add(tok, "version", json_object_new_string("1.0"));
	json_object_object_add(tok, "added_tokens", added);
	json_object_object_add(tok, "model", model);
	r = write_json(dir, "tokenizer.json", tok, err);
	if (r < 0)
		goto out;

	json_object_object_add(cfg, "added_tokens_decoder", dec);
	dec = NULL;
	json_object_object_add(cfg, "bos_token", json_object_new_string("<|begin_of_text|>"));
	json_object_object_add(cfg, "eos_token", json_object_new_string("<|eot_id|>"));
	json_object_object_add(cfg, "tokenizer_class", json_object_new_string("PreTrainedTokenizerFast"));
	r = write_json(dir, "tokenizer_config.json", cfg, err);
out:
	json_object_put(tok);
	json_object_put(cfg);
	if (dec)
		json_object_put(dec);
	return r;
}
