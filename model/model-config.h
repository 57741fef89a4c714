/* model-config.h: a model's hyper-parameters, read from config.json and generation_config.json.
 *
 * The struct is plain old data with a version first: it is copied verbatim into the weights
 * image that skvd hands to workers, so it crosses a process boundary (style rule 11).
 * Accepts model_type "llama" and "llama_swiftkv" (docs/swiftkv.md); anything else is rejected with
 * an error that names the key and the limit.
 */
#pragma once

#include "skv-base.h"
#include "skv-dtype.h"

#define SKV_MODEL_CONFIG_VERSION 1u
#define SKV_MAX_EOS 8

enum skv_rope_type {
	SKV_ROPE_DEFAULT = 0, /* no scaling */
	SKV_ROPE_LLAMA3 = 1,  /* Llama-3.1 frequency-dependent scaling */
	SKV_ROPE_LINEAR = 2,  /* positions divided by factor */
};

struct skv_model_config {
	uint32_t version; /* SKV_MODEL_CONFIG_VERSION */
	uint32_t size;	  /* sizeof(struct skv_model_config) */

	uint32_t n_layers;     /* N: num_hidden_layers */
	uint32_t hidden;       /* H: hidden_size */
	uint32_t intermediate; /* intermediate_size */
	uint32_t n_heads;      /* num_attention_heads */
	uint32_t n_kv_heads;   /* num_key_value_heads */
	uint32_t head_dim;     /* head_dim, or hidden / n_heads */
	uint32_t vocab;	       /* vocab_size */
	uint32_t max_position; /* max_position_embeddings */

	uint32_t swiftkv;  /* 1 for model_type llama_swiftkv */
	uint32_t kv_layers; /* L: num_key_value_layers (N for a plain llama) */
	uint32_t kv_group;  /* G: key_value_group_size (1 for a plain llama) */

	uint32_t tie_word_embeddings;
	uint32_t attention_bias; /* q/k/v/o projections carry a bias */
	uint32_t mlp_bias;	 /* gate/up/down projections carry a bias */

	float rms_eps;
	float rope_theta;
	uint32_t rope_type; /* enum skv_rope_type */
	float rope_factor;
	float rope_low_freq_factor;
	float rope_high_freq_factor;
	uint32_t rope_orig_max_position;

	uint32_t torch_dtype; /* enum skv_dtype declared in config.json (informational) */

	/* From generation_config.json, falling back on config.json. -1 when absent. */
	int32_t bos_id;
	uint32_t n_eos;
	int32_t eos_ids[SKV_MAX_EOS];
	float gen_temperature; /* default sampling for requests that name none; 0 = greedy */
	float gen_top_p;       /* 1 = off */
	int32_t gen_top_k;     /* 0 = off */
	uint32_t pad0;
};

/* Limits the loader enforces (a config outside them is rejected, naming the key). */
#define SKV_MAX_LAYERS 1024u
#define SKV_MAX_HIDDEN 65536u
#define SKV_MAX_HEADS 1024u
#define SKV_MAX_HEAD_DIM 512u
#define SKV_MAX_VOCAB (1u << 22)
#define SKV_MAX_INTERMEDIATE (1u << 20)
/* generation_config.json's top_k and temperature: the engine's own limits (kernels/sample.h;
 * worker-main.c asserts they are equal) */
#define SKV_MAX_GEN_TOP_K 1000000
#define SKV_MAX_GEN_TEMPERATURE 100

/* Parse config.json text (len bytes, not NUL-terminated) into ret. name is used in messages.
 * Returns 0 or a negative errno with err saying which key is wrong and why. */
int skv_model_config_parse(const char *json, size_t len, const char *name, struct skv_model_config *ret,
			   struct skv_err *err);

/* The invariants every consumer relies on (layer, head and group arithmetic, limits, ids below
 * the vocabulary, finite rope parameters), for a config from anywhere: a parsed file, or one
 * copied into a weights image another process wrote. */
int skv_model_config_validate(const struct skv_model_config *c, const char *name, struct skv_err *err);

/* Merge generation_config.json text into cfg (bos/eos and sampling defaults). */
int skv_model_config_parse_generation(const char *json, size_t len, const char *name,
				      struct skv_model_config *cfg, struct skv_err *err);

/* Write DIR/config.json and DIR/generation_config.json as transformers does for a (SwiftKV)
 * Llama, from a config that passes skv_model_config_validate (skv-mkmodel, skv-import). */
int skv_model_config_write(const char *dir, const struct skv_model_config *c, struct skv_err *err);

/* Read DIR/config.json and, if present, DIR/generation_config.json. */
int skv_model_config_load(const char *dir, struct skv_model_config *ret, struct skv_err *err);

/* Number of KV cache layers when the forward runs with kv_layers = L and group G:
 * L + (N - L) / G. */
static inline uint32_t skv_model_cache_layers(const struct skv_model_config *c, bool swiftkv_on)
{
	if (!swiftkv_on || !c->swiftkv)
		return c->n_layers;
	return c->kv_layers + (c->n_layers - c->kv_layers) / c->kv_group;
}

/* Whether token id is one of the model's end-of-sequence ids. */
static inline bool skv_model_is_eos(const struct skv_model_config *c, int32_t id)
{
	for (uint32_t i = 0; i < c->n_eos; i++)
		if (c->eos_ids[i] == id)
			return true;
	return false;
}

/* Write o to DIR/FILE, indented as transformers writes its JSON files; takes o (put even on
 * failure). */
struct json_object;
int skv_json_write(const char *dir, const char *file, struct json_object *o, struct skv_err *err);
