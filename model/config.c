/* config.c: config.json and generation_config.json for llama and llama_swiftkv checkpoints.
 *
 * Accepts both the classic layout (rope_theta + rope_scaling) and transformers 5's
 * rope_parameters. Every rejection names the file, the key, the value and the limit.
 */
#include "model-config.h"
#include "skv-json.h"

#include <json-c/json.h>
#include <limits.h>
#include <math.h>
#include <stdio.h>
#include <string.h>

/* A config file: one JSON object. */
static int parse_json(const char *text, size_t len, const char *name, json_object **ret, struct skv_err *err)
{
	json_object *o;
	int r = skv_json_parse(text, len, name, &o, err);
	if (r < 0)
		return r;
	if (!json_object_is_type(o, json_type_object)) {
		json_object_put(o);
		return skv_err_set(err, -EINVAL, "%s: top level is not a JSON object", name);
	}
	*ret = o;
	return 0;
}

/* Integer key: 1 found, 0 absent (or null), negative error. */
static int get_int(json_object *obj, const char *key, const char *name, int64_t min, int64_t max, int64_t *ret,
		   struct skv_err *err)
{
	json_object *v;

	if (!json_object_object_get_ex(obj, key, &v) || !v)
		return 0;
	if (json_object_is_type(v, json_type_double)) {
		double d = json_object_get_double(v);
		if (d != floor(d) || d < (double)min || d > (double)max)
			return skv_err_set(err, -EINVAL, "%s: \"%s\" = %g must be an integer in [%lld, %lld]", name,
					   key, d, (long long)min, (long long)max);
		*ret = (int64_t)d;
		return 1;
	}
	if (!json_object_is_type(v, json_type_int))
		return skv_err_set(err, -EINVAL, "%s: \"%s\" must be an integer", name, key);
	errno = 0;
	int64_t x = json_object_get_int64(v);
	if (errno == ERANGE || x < min || x > max)
		return skv_err_set(err, -ERANGE, "%s: \"%s\" = %s is outside [%lld, %lld]", name, key,
				   json_object_to_json_string(v), (long long)min, (long long)max);
	*ret = x;
	return 1;
}

static int get_num(json_object *obj, const char *key, const char *name, double min, double max, double *ret,
		   struct skv_err *err)
{
	json_object *v;

	if (!json_object_object_get_ex(obj, key, &v) || !v)
		return 0;
	if (!json_object_is_type(v, json_type_double) && !json_object_is_type(v, json_type_int))
		return skv_err_set(err, -EINVAL, "%s: \"%s\" must be a number", name, key);
	double d = json_object_get_double(v);
	if (!(d >= min && d <= max))
		return skv_err_set(err, -ERANGE, "%s: \"%s\" = %g is outside [%g, %g]", name, key, d, min, max);
	*ret = d;
	return 1;
}

static int get_bool(json_object *obj, const char *key, const char *name, bool *ret, struct skv_err *err)
{
	json_object *v;

	if (!json_object_object_get_ex(obj, key, &v) || !v)
		return 0;
	if (!json_object_is_type(v, json_type_boolean))
		return skv_err_set(err, -EINVAL, "%s: \"%s\" must be true or false", name, key);
	*ret = json_object_get_boolean(v);
	return 1;
}

static const char *get_str(json_object *obj, const char *key)
{
	json_object *v;

	if (!json_object_object_get_ex(obj, key, &v) || !v || !json_object_is_type(v, json_type_string))
		return NULL;
	return json_object_get_string(v);
}

static int need_u32(json_object *obj, const char *key, const char *name, uint32_t min, uint32_t max,
		    uint32_t *ret, struct skv_err *err)
{
	int64_t v;
	int r = get_int(obj, key, name, min, max, &v, err);
	if (r < 0)
		return r;
	if (r == 0)
		return skv_err_set(err, -EINVAL, "%s: required key \"%s\" is missing", name, key);
	*ret = (uint32_t)v;
	return 0;
}

/* eos_token_id: an int or a list of ints (or null). */
static int get_eos(json_object *obj, const char *name, struct skv_model_config *c, struct skv_err *err)
{
	json_object *v;

	if (!json_object_object_get_ex(obj, "eos_token_id", &v) || !v)
		return 0;
	if (json_object_is_type(v, json_type_int)) {
		int64_t x = json_object_get_int64(v);
		if (x < 0 || x >= INT32_MAX)
			return skv_err_set(err, -ERANGE, "%s: \"eos_token_id\" = %lld is not a token id", name,
					   (long long)x);
		c->n_eos = 1;
		c->eos_ids[0] = (int32_t)x;
		return 1;
	}
	if (!json_object_is_type(v, json_type_array))
		return skv_err_set(err, -EINVAL, "%s: \"eos_token_id\" must be an integer or a list of integers",
				   name);
	size_t n = json_object_array_length(v);
	if (n > SKV_MAX_EOS)
		return skv_err_set(err, -E2BIG, "%s: \"eos_token_id\" has %zu ids, more than the limit of %d", name, n,
				   SKV_MAX_EOS);
	for (size_t i = 0; i < n; i++) {
		json_object *e = json_object_array_get_idx(v, i);
		if (!json_object_is_type(e, json_type_int) || json_object_get_int64(e) < 0 ||
		    json_object_get_int64(e) >= INT32_MAX)
			return skv_err_set(err, -EINVAL, "%s: \"eos_token_id\"[%zu] is not a token id", name, i);
		c->eos_ids[i] = (int32_t)json_object_get_int64(e);
	}
	c->n_eos = (uint32_t)n;
	return 1;
}

static int parse_rope(json_object *root, const char *name, struct skv_model_config *c, struct skv_err *err)
{
	json_object *rs = NULL, *rp = NULL;
	double theta = 10000.0;
	const char *type = NULL;
	int r;

	/* transformers 5: "rope_parameters": {"rope_type", "rope_theta", ...}; classic: "rope_theta"
	 * at top level and "rope_scaling" (null or an object with "rope_type" or "type"). */
	if (json_object_object_get_ex(root, "rope_parameters", &rp) && rp) {
		if (!json_object_is_type(rp, json_type_object))
			return skv_err_set(err, -EINVAL, "%s: \"rope_parameters\" must be an object", name);
		rs = rp;
	} else if (json_object_object_get_ex(root, "rope_scaling", &rs) && rs) {
		if (!json_object_is_type(rs, json_type_object))
			return skv_err_set(err, -EINVAL, "%s: \"rope_scaling\" must be an object or null", name);
	}
	r = get_num(root, "rope_theta", name, 1.0, 1e12, &theta, err);
	if (r < 0)
		return r;
	if (rp) {
		r = get_num(rp, "rope_theta", name, 1.0, 1e12, &theta, err);
		if (r < 0)
			return r;
	}
	c->rope_theta = (float)theta;
	c->rope_type = SKV_ROPE_DEFAULT;
	c->rope_factor = 1.0f;
	if (!rs)
		return 0;
	type = get_str(rs, "rope_type");
	if (!type)
		type = get_str(rs, "type");
	if (!type || !strcmp(type, "default"))
		return 0;
	double factor = 1.0;
	r = get_num(rs, "factor", name, 1.0, 1e6, &factor, err);
	if (r < 0)
		return r;
	if (r == 0)
		return skv_err_set(err, -EINVAL, "%s: rope scaling \"%s\" needs \"factor\"", name, type);
	c->rope_factor = (float)factor;
	if (!strcmp(type, "linear")) {
		c->rope_type = SKV_ROPE_LINEAR;
		return 0;
	}
	if (strcmp(type, "llama3") != 0)
		return skv_err_set(err, -EOPNOTSUPP,
				   "%s: rope scaling type \"%s\" is not supported (default, linear and llama3 are)",
				   name, type);
	double lo = 1.0, hi = 4.0;
	int64_t orig = 8192;
	if ((r = get_num(rs, "low_freq_factor", name, 1e-6, 1e6, &lo, err)) < 0)
		return r;
	if ((r = get_num(rs, "high_freq_factor", name, 1e-6, 1e6, &hi, err)) < 0)
		return r;
	if ((r = get_int(rs, "original_max_position_embeddings", name, 1, INT32_MAX, &orig, err)) < 0)
		return r;
	if (!(hi > lo))
		return skv_err_set(err, -EINVAL, "%s: rope \"high_freq_factor\" (%g) must exceed \"low_freq_factor\" (%g)",
				   name, hi, lo);
	c->rope_type = SKV_ROPE_LLAMA3;
	c->rope_low_freq_factor = (float)lo;
	c->rope_high_freq_factor = (float)hi;
	c->rope_orig_max_position = (uint32_t)orig;
	return 0;
}

int skv_model_config_parse(const char *json, size_t len, const char *name, struct skv_model_config *ret,
			   struct skv_err *err)
{
	_cleanup_json_ json_object *root = NULL;
	struct skv_model_config c = {0};
	const char *type, *act, *dtype;
	bool b;
	int64_t v;
	int r;

	r = parse_json(json, len, name, &root, err);
	if (r < 0)
		return r;

	c.version = SKV_MODEL_CONFIG_VERSION;
	c.size = sizeof(c);
	type = get_str(root, "model_type");
	if (!type)
		return skv_err_set(err, -EINVAL, "%s: \"model_type\" is missing", name);
	if (!strcmp(type, "llama_swiftkv"))
		c.swiftkv = 1;
	else if (strcmp(type, "llama") != 0)
		return skv_err_set(err, -EOPNOTSUPP, "%s: model_type \"%s\" is not supported (llama and llama_swiftkv are)",
				   name, type);

	act = get_str(root, "hidden_act");
	if (act && strcmp(act, "silu") != 0)
		return skv_err_set(err, -EOPNOTSUPP, "%s: \"hidden_act\" = \"%s\" is not supported (silu is)", name, act);

	if ((r = need_u32(root, "num_hidden_layers", name, 1, SKV_MAX_LAYERS, &c.n_layers, err)) < 0 ||
	    (r = need_u32(root, "hidden_size", name, 1, SKV_MAX_HIDDEN, &c.hidden, err)) < 0 ||
	    (r = need_u32(root, "intermediate_size", name, 1, SKV_MAX_INTERMEDIATE, &c.intermediate, err)) < 0 ||
	    (r = need_u32(root, "num_attention_heads", name, 1, SKV_MAX_HEADS, &c.n_heads, err)) < 0 ||
	    (r = need_u32(root, "vocab_size", name, 1, SKV_MAX_VOCAB, &c.vocab, err)) < 0)
		return r;

	r = get_int(root, "num_key_value_heads", name, 1, SKV_MAX_HEADS, &v, err);
	if (r < 0)
		return r;
	c.n_kv_heads = r ? (uint32_t)v : c.n_heads;
	if (c.n_heads % c.n_kv_heads != 0)
		return skv_err_set(err, -EINVAL,
				   "%s: \"num_attention_heads\" (%u) must be a multiple of \"num_key_value_heads\" (%u)",
				   name, c.n_heads, c.n_kv_heads);

	r = get_int(root, "head_dim", name, 2, SKV_MAX_HEAD_DIM, &v, err);
	if (r < 0)
		return r;
	if (r) {
		c.head_dim = (uint32_t)v;
	} else {
		if (c.hidden % c.n_heads != 0)
			return skv_err_set(err, -EINVAL,
					   "%s: \"hidden_size\" (%u) is not a multiple of \"num_attention_heads\" (%u) "
					   "and no \"head_dim\" is given",
					   name, c.hidden, c.n_heads);
		c.head_dim = c.hidden / c.n_heads;
	}
	if (c.head_dim % 2 != 0 || c.head_dim > SKV_MAX_HEAD_DIM)
		return skv_err_set(err, -EINVAL, "%s: head dim %u must be even and at most %u", name, c.head_dim,
				   SKV_MAX_HEAD_DIM);

	r = get_int(root, "max_position_embeddings", name, 1, INT32_MAX, &v, err);
	if (r < 0)
		return r;
	c.max_position = r ? (uint32_t)v : 2048;

	double eps = 1e-6;
	if ((r = get_num(root, "rms_norm_eps", name, 0.0, 1.0, &eps, err)) < 0)
		return r;
	c.rms_eps = (float)eps;

	b = false;
	if ((r = get_bool(root, "tie_word_embeddings", name, &b, err)) < 0)
		return r;
	c.tie_word_embeddings = b;
	b = false;
	if ((r = get_bool(root, "attention_bias", name, &b, err)) < 0)
		return r;
	c.attention_bias = b;
	b = false;
	if ((r = get_bool(root, "mlp_bias", name, &b, err)) < 0)
		return r;
	c.mlp_bias = b;

	if ((r = parse_rope(root, name, &c, err)) < 0)
		return r;

	c.torch_dtype = SKV_DTYPE_BF16;
	dtype = get_str(root, "torch_dtype");
	if (!dtype)
		dtype = get_str(root, "dtype");
	if (dtype && !strcmp(dtype, "float32"))
		c.torch_dtype = SKV_DTYPE_F32;
	else if (dtype && !strcmp(dtype, "float16"))
		c.torch_dtype = SKV_DTYPE_F16;

	/* SwiftKV: num_key_value_layers (null or 0 means N), key_value_group_size (null means 1). */
	c.kv_layers = c.n_layers;
	c.kv_group = 1;
	if (c.swiftkv) {
		r = get_int(root, "num_key_value_layers", name, 0, c.n_layers, &v, err);
		if (r < 0)
			return r;
		if (r && v > 0)
			c.kv_layers = (uint32_t)v;
		r = get_int(root, "key_value_group_size", name, 1, c.n_layers, &v, err);
		if (r < 0)
			return r;
		if (r)
			c.kv_group = (uint32_t)v;
		if ((c.n_layers - c.kv_layers) % c.kv_group != 0)
			return skv_err_set(err, -EINVAL,
					   "%s: num_hidden_layers - num_key_value_layers (%u - %u) must be a multiple of "
					   "key_value_group_size (%u)",
					   name, c.n_layers, c.kv_layers, c.kv_group);
	}

	c.bos_id = -1;
	r = get_int(root, "bos_token_id", name, 0, INT32_MAX - 1, &v, err);
	if (r < 0)
		return r;
	if (r)
		c.bos_id = (int32_t)v;
	if ((r = get_eos(root, name, &c, err)) < 0)
		return r;
	c.gen_temperature = 0.0f;
	c.gen_top_p = 1.0f;
	c.gen_top_k = 0;
	*ret = c;
	return 0;
}

int skv_model_config_validate(const struct skv_model_config *c, const char *name, struct skv_err *err)
{
	if (c->version != SKV_MODEL_CONFIG_VERSION || c->size != sizeof(*c))
		return skv_err_set(err, -EPROTO, "%s: model config version %u, expected %u", name, c->version,
				   SKV_MODEL_CONFIG_VERSION);
	if (!c->n_layers || c->n_layers > SKV_MAX_LAYERS || !c->hidden || c->hidden > SKV_MAX_HIDDEN ||
	    !c->intermediate || c->intermediate > SKV_MAX_INTERMEDIATE || !c->n_heads || c->n_heads > SKV_MAX_HEADS ||
	    !c->n_kv_heads || c->n_heads % c->n_kv_heads || !c->vocab || c->vocab > SKV_MAX_VOCAB ||
	    c->head_dim < 2 || c->head_dim % 2 || c->head_dim > SKV_MAX_HEAD_DIM || !c->max_position)
		return skv_err_set(err, -EINVAL, "%s: model shape out of range", name);
	if (!c->kv_layers || c->kv_layers > c->n_layers || !c->kv_group || (c->n_layers - c->kv_layers) % c->kv_group)
		return skv_err_set(err, -EINVAL, "%s: SwiftKV layers and groups do not divide", name);
	if (c->n_eos > SKV_MAX_EOS || (c->bos_id >= 0 && (uint32_t)c->bos_id >= c->vocab) || c->gen_top_k < 0 ||
	    c->gen_top_k > SKV_MAX_GEN_TOP_K || !(c->gen_top_p > 0 && c->gen_top_p <= 1) ||
	    !(c->gen_temperature >= 0 && c->gen_temperature <= SKV_MAX_GEN_TEMPERATURE))
		return skv_err_set(err, -EINVAL, "%s: token ids or sampling defaults out of range", name);
	for (uint32_t i = 0; i < c->n_eos; i++)
		if (c->eos_ids[i] < 0 || (uint32_t)c->eos_ids[i] >= c->vocab)
			return skv_err_set(err, -EINVAL, "%s: eos token id %d is not below vocab_size %u", name, c->eos_ids[i],
					   c->vocab);
	if (!(c->rms_eps >= 0 && c->rms_eps <= 1) || !(c->rope_theta >= 1 && c->rope_theta <= 1e12f) ||
	    c->rope_type > SKV_ROPE_LINEAR || !(c->rope_factor >= 1 && c->rope_factor <= 1e6f) ||
	    (c->rope_type == SKV_ROPE_LLAMA3 &&
	     (!(c->rope_high_freq_factor > c->rope_low_freq_factor) || !(c->rope_low_freq_factor > 0) ||
	      !c->rope_orig_max_position)))
		return skv_err_set(err, -EINVAL, "%s: norm or RoPE parameters out of range", name);
	return 0;
}

int skv_model_config_parse_generation(const char *json, size_t len, const char *name,
				      struct skv_model_config *cfg, struct skv_err *err)
{
	_cleanup_json_ json_object *root = NULL;
	struct skv_model_config c = *cfg;
	int64_t v;
	double d;
	bool sample = false;
	int r;

	r = parse_json(json, len, name, &root, err);
	if (r < 0)
		return r;
	r = get_int(root, "bos_token_id", name, 0, INT32_MAX - 1, &v, err);
	if (r < 0)
		return r;
	if (r)
		c.bos_id = (int32_t)v;
	if ((r = get_eos(root, name, &c, err)) < 0)
		return r;
	if ((r = get_bool(root, "do_sample", name, &sample, err)) < 0)
		return r;
	if (sample) {
		c.gen_temperature = 1.0f;
		if ((r = get_num(root, "temperature", name, 0.0, SKV_MAX_GEN_TEMPERATURE, &d, err)) < 0)
			return r;
		if (r)
			c.gen_temperature = (float)d;
		if ((r = get_num(root, "top_p", name, 0.0, 1.0, &d, err)) < 0)
			return r;
		if (r)
			c.gen_top_p = d > 0 ? (float)d : 1.0f;
		if ((r = get_int(root, "top_k", name, 0, SKV_MAX_GEN_TOP_K, &v, err)) < 0)
			return r;
		if (r)
			c.gen_top_k = (int32_t)v;
	}
	*cfg = c;
	return 0;
}

int skv_model_config_load(const char *dir, struct skv_model_config *ret, struct skv_err *err)
{
	char path[4096];
	_cleanup_free_ char *text = NULL;
	_cleanup_free_ char *gtext = NULL;
	struct skv_model_config c;
	size_t len;
	int r;

	snprintf(path, sizeof(path), "%s/config.json", dir);
	r = skv_read_file(path, 1 << 20, &text, &len, err);
	if (r < 0)
		return r;
	r = skv_model_config_parse(text, len, path, &c, err);
	if (r < 0)
		return r;
	snprintf(path, sizeof(path), "%s/generation_config.json", dir);
	if (access(path, F_OK) == 0) {
		r = skv_read_file(path, 1 << 20, &gtext, &len, err);
		if (r < 0)
			return r;
		r = skv_model_config_parse_generation(gtext, len, path, &c, err);
		if (r < 0)
			return r;
	}
	for (uint32_t i = 0; i < c.n_eos; i++)
		if ((uint32_t)c.eos_ids[i] >= c.vocab)
			return skv_err_set(err, -EINVAL, "%s: eos token id %d is not below vocab_size %u", dir,
					   c.eos_ids[i], c.vocab);
	if (c.bos_id >= 0 && (uint32_t)c.bos_id >= c.vocab)
		return skv_err_set(err, -EINVAL, "%s: bos_token_id %d is not below vocab_size %u", dir, c.bos_id,
				   c.vocab);
	*ret = c;
	return 0;
}

/* ---- writing (skv-mkmodel, skv-import) ---- */

static json_object *eos_json(const struct skv_model_config *c)
{
	if (c->n_eos == 1)
		return json_object_new_int(c->eos_ids[0]);
	json_object *a = json_object_new_array();
	for (uint32_t i = 0; i < c->n_eos; i++)
		json_object_array_add(a, json_object_new_int(c->eos_ids[i]));
	return a;
}

int skv_json_write(const char *dir, const char *file, json_object *o, struct skv_err *err)
{
	char path[4096];
	snprintf(path, sizeof(path), "%s/%s", dir, file);
	int r = json_object_to_file_ext(path, o, JSON_C_TO_STRING_PRETTY | JSON_C_TO_STRING_SPACED |
							 JSON_C_TO_STRING_NOSLASHESCAPE);
	json_object_put(o);
	return r < 0 ? skv_err_set(err, -EIO, "%s: cannot write", path) : 0;
}

#define ADD(o, k, v) json_object_object_add(o, k, v)

/* A float as Python prints it for a value read back from float: "%g" (8.0, 1e-05, 0.9), not the
 * double expansion of the float (0.89999997615814209). */
static json_object *num(float v)
{
	char s[32];
	snprintf(s, sizeof(s), "%g", (double)v);
	if (!strpbrk(s, ".en"))
		strcat(s, ".0");
	return json_object_new_double_s(v, s);
}

int skv_model_config_write(const char *dir, const struct skv_model_config *c, struct skv_err *err)
{
	static const char *const dtypes[] = {[SKV_DTYPE_F32] = "float32", [SKV_DTYPE_F16] = "float16",
					     [SKV_DTYPE_BF16] = "bfloat16"};
	json_object *o = json_object_new_object(), *arch = json_object_new_array();
	int r;
	if ((r = skv_model_config_validate(c, "config", err)) < 0) {
		json_object_put(o);
		json_object_put(arch);
		return r;
	}
	json_object_array_add(arch, json_object_new_string(c->swiftkv ? "LlamaSwiftKVForCausalLM" : "LlamaForCausalLM"));
	ADD(o, "architectures", arch);
	ADD(o, "attention_bias", json_object_new_boolean(c->attention_bias));
	ADD(o, "attention_dropout", json_object_new_double(0.0));
	if (c->bos_id >= 0)
		ADD(o, "bos_token_id", json_object_new_int(c->bos_id));
	if (c->n_eos)
		ADD(o, "eos_token_id", eos_json(c));
	ADD(o, "head_dim", json_object_new_int((int)c->head_dim));
	ADD(o, "hidden_act", json_object_new_string("silu"));
	ADD(o, "hidden_size", json_object_new_int((int)c->hidden));
	ADD(o, "intermediate_size", json_object_new_int((int)c->intermediate));
	if (c->swiftkv) {
		ADD(o, "key_value_group_size", json_object_new_int((int)c->kv_group));
		ADD(o, "num_key_value_layers", json_object_new_int((int)c->kv_layers));
	}
	ADD(o, "max_position_embeddings", json_object_new_int64(c->max_position));
	ADD(o, "mlp_bias", json_object_new_boolean(c->mlp_bias));
	ADD(o, "model_type", json_object_new_string(c->swiftkv ? "llama_swiftkv" : "llama"));
	ADD(o, "num_attention_heads", json_object_new_int((int)c->n_heads));
	ADD(o, "num_hidden_layers", json_object_new_int((int)c->n_layers));
	ADD(o, "num_key_value_heads", json_object_new_int((int)c->n_kv_heads));
	ADD(o, "pretraining_tp", json_object_new_int(1));
	ADD(o, "rms_norm_eps", num(c->rms_eps));
	if (c->rope_type == SKV_ROPE_DEFAULT) {
		ADD(o, "rope_scaling", NULL);
	} else {
		json_object *rs = json_object_new_object();
		ADD(rs, "factor", num(c->rope_factor));
		if (c->rope_type == SKV_ROPE_LLAMA3) {
			ADD(rs, "high_freq_factor", num(c->rope_high_freq_factor));
			ADD(rs, "low_freq_factor", num(c->rope_low_freq_factor));
			ADD(rs, "original_max_position_embeddings", json_object_new_int((int)c->rope_orig_max_position));
		}
		ADD(rs, "rope_type", json_object_new_string(c->rope_type == SKV_ROPE_LLAMA3 ? "llama3" : "linear"));
		ADD(o, "rope_scaling", rs);
	}
	ADD(o, "rope_theta", json_object_new_double(c->rope_theta));
	if (c->swiftkv)
		ADD(o, "swiftkv", json_object_new_boolean(1));
	ADD(o, "tie_word_embeddings", json_object_new_boolean(c->tie_word_embeddings));
	ADD(o, "torch_dtype", json_object_new_string(c->torch_dtype < SKV_ARRAY_SIZE(dtypes) && dtypes[c->torch_dtype]
							     ? dtypes[c->torch_dtype] : "bfloat16"));
	ADD(o, "use_cache", json_object_new_boolean(1));
	ADD(o, "vocab_size", json_object_new_int((int)c->vocab));
	if ((r = skv_json_write(dir, "config.json", o, err)) < 0)
		return r;

	json_object *g = json_object_new_object();
	if (c->bos_id >= 0)
		ADD(g, "bos_token_id", json_object_new_int(c->bos_id));
	ADD(g, "do_sample", json_object_new_boolean(c->gen_temperature > 0.0f));
	if (c->n_eos)
		ADD(g, "eos_token_id", eos_json(c));
	if (c->gen_temperature > 0.0f) {
		ADD(g, "temperature", num(c->gen_temperature));
		ADD(g, "top_p", num(c->gen_top_p));
		if (c->gen_top_k > 0)
			ADD(g, "top_k", json_object_new_int(c->gen_top_k));
	}
	return skv_json_write(dir, "generation_config.json", g, err);
}
