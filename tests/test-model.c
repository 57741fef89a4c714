/* test-model.c: config.json, safetensors and checkpoint loading, and the weights image.
 * Every corrupt input must be rejected with a message that names the file, the tensor or the key. */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "image.h"
#include "model-config.h"
#include "safetensors.h"
#include "test-util.h"

/* A safetensors file from a header string and `data` bytes of payload. */
static size_t make_st(uint8_t *buf, size_t cap, const char *header, size_t data)
{
	size_t hl = strlen(header);
	assert_true(8 + hl + data <= cap);
	for (int i = 0; i < 8; i++)
		buf[i] = (uint8_t)((uint64_t)hl >> (8 * i));
	memcpy(buf + 8, header, hl);
	memset(buf + 8 + hl, 0x3c, data);
	return 8 + hl + data;
}

static void expect_reject(const char *header, size_t data, const char *needle)
{
	uint8_t buf[4096];
	size_t n = make_st(buf, sizeof(buf), header, data);
	struct skv_st_header *h = NULL;
	struct skv_err err = {0};
	int r = skv_st_header_parse(buf, n, "x.safetensors", &h, &err);
	if (r == 0)
		fail_msg("accepted: %s", header);
	assert_null(h);
	assert_true(r < 0);
	if (!strstr(err.msg, needle))
		fail_msg("message '%s' lacks '%s'", err.msg, needle);
	assert_non_null(strstr(err.msg, "x.safetensors"));
}

static void test_st_valid(void **state)
{
	(void)state;
	uint8_t buf[256];
	const char *hdr = "{\"__metadata__\":{\"format\":\"pt\"},\"b\":{\"dtype\":\"F32\",\"shape\":[2],\"data_offsets\":[4,12]},"
			  "\"a\":{\"dtype\":\"BF16\",\"shape\":[2],\"data_offsets\":[0,4]}}   ";
	size_t n = make_st(buf, sizeof(buf), hdr, 12);
	struct skv_st_header *h = NULL;
	struct skv_err err = {0};
	assert_int_equal(skv_st_header_parse(buf, n, "ok.safetensors", &h, &err), 0);
	assert_int_equal(h->n, 2);
	assert_string_equal(h->tensors[0].name, "b");
	assert_int_equal(h->tensors[0].dtype, SKV_ST_F32);
	assert_int_equal(h->tensors[1].shape[0], 2);
	assert_ptr_equal(h->tensors[1].data, buf + 8 + strlen(hdr));
	skv_st_header_free(h);
}

static void test_st_corrupt(void **state)
{
	(void)state;
	struct skv_err err = {0};
	struct skv_st_header *h = NULL;
	uint8_t tiny[5] = {1, 2, 3, 4, 5};
	assert_true(skv_st_header_parse(tiny, sizeof(tiny), "x.safetensors", &h, &err) < 0);
	assert_non_null(strstr(err.msg, "too short"));

	uint8_t big[16] = {0xff, 0xff, 0, 0, 0, 0, 0, 0, '{', '}'};
	assert_true(skv_st_header_parse(big, sizeof(big), "x.safetensors", &h, &err) < 0);
	assert_non_null(strstr(err.msg, "past the end of the file"));

	expect_reject("{\"a\":{\"dtype\":\"F32\",\"shape\":[2],\"data_offsets\":[0,8]", 8, "not valid JSON");
	expect_reject("[1,2]", 0, "JSON object");
	expect_reject("{\"a\":{\"dtype\":\"Q4\",\"shape\":[2],\"data_offsets\":[0,8]}}", 8, "unknown dtype");
	expect_reject("{\"a\":{\"dtype\":\"F32\",\"shape\":[3],\"data_offsets\":[0,8]}}", 8, "need 12 bytes");
	expect_reject("{\"a\":{\"dtype\":\"F32\",\"shape\":[2],\"data_offsets\":[0,8]}}", 4, "past the end of the data");
	expect_reject("{\"a\":{\"dtype\":\"F32\",\"shape\":[2],\"data_offsets\":[8,0]}}", 8, "end before");
	expect_reject("{\"a\":{\"dtype\":\"F32\",\"shape\":[-2],\"data_offsets\":[0,8]}}", 8, "shape[0]");
	expect_reject("{\"a\":{\"dtype\":\"F32\",\"shape\":[2],\"data_offsets\":[0,8]},"
		      "\"b\":{\"dtype\":\"F32\",\"shape\":[2],\"data_offsets\":[4,12]}}",
		      12, "overlaps");
	expect_reject("{\"a\":{\"dtype\":\"F32\",\"shape\":[1],\"data_offsets\":[4,8]}}", 8, "unindexed bytes");
	expect_reject("{\"a\":{\"dtype\":\"F32\",\"shape\":[1],\"data_offsets\":[0,4]}}", 8, "not indexed");
	/* a duplicate name hides one range: the hole gives it away */
	expect_reject("{\"a\":{\"dtype\":\"F32\",\"shape\":[1],\"data_offsets\":[0,4]},"
		      "\"a\":{\"dtype\":\"F32\",\"shape\":[1],\"data_offsets\":[4,8]}}",
		      8, "unindexed");
	expect_reject("{\"a\":{\"dtype\":\"F32\",\"shape\":[1],\"data_offsets\":[0]}}", 4, "data_offsets");
	expect_reject("{\"a\":{\"dtype\":\"F32\",\"shape\":[1],\"data_offsets\":[0,4]}} x", 4, "JSON");
	expect_reject("{\"a\":{\"dtype\":\"F32\",\"shape\":[4294967296,4294967296,4294967296],\"data_offsets\":[0,4]}}", 4,
		      "overflows");
}

static const char *cfg_ok = "{\"model_type\":\"llama_swiftkv\",\"num_hidden_layers\":8,\"hidden_size\":64,"
			    "\"intermediate_size\":128,\"num_attention_heads\":4,\"num_key_value_heads\":2,"
			    "\"vocab_size\":300,\"num_key_value_layers\":4,\"key_value_group_size\":2,"
			    "\"eos_token_id\":[1,2],\"rope_theta\":500000.0,\"rope_scaling\":{\"rope_type\":\"llama3\","
			    "\"factor\":8.0,\"low_freq_factor\":1.0,\"high_freq_factor\":4.0,"
			    "\"original_max_position_embeddings\":1024},\"tie_word_embeddings\":true}";

static int parse_cfg(const char *json, struct skv_model_config *c, struct skv_err *err)
{
	return skv_model_config_parse(json, strlen(json), "config.json", c, err);
}

static void test_config(void **state)
{
	(void)state;
	struct skv_model_config c;
	struct skv_err err = {0};

	assert_int_equal(parse_cfg(cfg_ok, &c, &err), 0);
	assert_int_equal(c.swiftkv, 1);
	assert_int_equal(c.kv_layers, 4);
	assert_int_equal(c.kv_group, 2);
	assert_int_equal(c.head_dim, 16);
	assert_int_equal(c.n_eos, 2);
	assert_int_equal(c.eos_ids[1], 2);
	assert_int_equal(c.rope_type, SKV_ROPE_LLAMA3);
	assert_int_equal(c.rope_orig_max_position, 1024);
	assert_int_equal(c.tie_word_embeddings, 1);
	assert_int_equal(skv_model_cache_layers(&c, true), 6);
	assert_int_equal(skv_model_cache_layers(&c, false), 8);

	/* transformers 5 writes rope_parameters; an int eos; null num_key_value_layers means N */
	assert_int_equal(parse_cfg("{\"model_type\":\"llama_swiftkv\",\"num_hidden_layers\":2,\"hidden_size\":8,"
				   "\"intermediate_size\":8,\"num_attention_heads\":2,\"vocab_size\":10,"
				   "\"num_key_value_layers\":null,\"eos_token_id\":3,\"head_dim\":6,"
				   "\"rope_parameters\":{\"rope_type\":\"default\",\"rope_theta\":1000.0}}",
				   &c, &err),
			 0);
	assert_int_equal(c.kv_layers, 2);
	assert_int_equal(c.n_kv_heads, 2);
	assert_int_equal(c.head_dim, 6);
	assert_true(c.rope_theta == 1000.0f);
	assert_int_equal(c.n_eos, 1);

	struct {
		const char *json, *needle;
	} bad[] = {
		{"{\"model_type\":\"gpt2\"}", "gpt2"},
		{"{\"model_type\":\"llama\",\"hidden_size\":64}", "num_hidden_layers"},
		{"{\"model_type\":\"llama_swiftkv\",\"num_hidden_layers\":8,\"hidden_size\":64,\"intermediate_size\":8,"
		 "\"num_attention_heads\":4,\"vocab_size\":10,\"num_key_value_layers\":3,\"key_value_group_size\":2}",
		 "multiple of key_value_group_size"},
		{"{\"model_type\":\"llama_swiftkv\",\"num_hidden_layers\":8,\"hidden_size\":64,\"intermediate_size\":8,"
		 "\"num_attention_heads\":4,\"vocab_size\":10,\"num_key_value_layers\":9}",
		 "num_key_value_layers"},
		{"{\"model_type\":\"llama\",\"num_hidden_layers\":8,\"hidden_size\":64,\"intermediate_size\":8,"
		 "\"num_attention_heads\":6,\"num_key_value_heads\":4,\"vocab_size\":10}",
		 "multiple of \"num_key_value_heads\""},
		{"{\"model_type\":\"llama\",\"num_hidden_layers\":2000,\"hidden_size\":64,\"intermediate_size\":8,"
		 "\"num_attention_heads\":4,\"vocab_size\":10}",
		 "num_hidden_layers"},
		{"{\"model_type\":\"llama\",\"num_hidden_layers\":2.5,\"hidden_size\":64,\"intermediate_size\":8,"
		 "\"num_attention_heads\":4,\"vocab_size\":10}",
		 "integer"},
		{"{\"model_type\":\"llama\",\"num_hidden_layers\":2,\"hidden_size\":64,\"intermediate_size\":8,"
		 "\"num_attention_heads\":4,\"vocab_size\":10,\"rope_scaling\":{\"rope_type\":\"yarn\",\"factor\":4}}",
		 "yarn"},
		{"{\"model_type\":\"llama\",\"num_hidden_layers\":2,\"hidden_size\":64,\"intermediate_size\":8,"
		 "\"num_attention_heads\":4,\"vocab_size\":10,\"hidden_act\":\"gelu\"}",
		 "hidden_act"},
		{"{\"model_type\":\"llama\",\"num_hidden_layers\":2,\"hidden_size\":64,\"intermediate_size\":8,"
		 "\"num_attention_heads\":4,\"vocab_size\":10,\"eos_token_id\":\"x\"}",
		 "eos_token_id"},
		{"{\"model_type\":\"llama\" \"x\"}", "invalid JSON"},
	};
	for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
		err.msg[0] = 0;
		assert_true(parse_cfg(bad[i].json, &c, &err) < 0);
		if (!strstr(err.msg, bad[i].needle))
			fail_msg("case %zu: message '%s' lacks '%s'", i, err.msg, bad[i].needle);
	}
}

/* Opening a checkpoint whose files were damaged after skv-mkmodel wrote them. */
static void expect_open_fails(const char *dir, const char *needle)
{
	struct skv_checkpoint *c = NULL;
	struct skv_image_plan *p = NULL;
	struct skv_err err = {0};
	int r = skv_checkpoint_open(dir, &c, &err);
	if (r == 0) {
		r = skv_image_plan_new(c, SKV_DTYPE_F32, true, &p, &err);
		skv_image_plan_free(p);
		skv_checkpoint_free(c);
	}
	if (r == 0)
		fail_msg("%s: accepted", dir);
	if (!strstr(err.msg, needle))
		fail_msg("message '%s' lacks '%s'", err.msg, needle);
}

static void test_checkpoint_corrupt(void **state)
{
	(void)state;
	char *d = tu_mkmodel("--preset tiny --swiftkv-layers 2 --seed 3");
	char path[512];
	snprintf(path, sizeof(path), "%s/model.safetensors", d);

	/* intact: opens and plans */
	struct skv_checkpoint *c = NULL;
	struct skv_image_plan *p = NULL;
	struct skv_err err = {0};
	assert_int_equal(skv_checkpoint_open(d, &c, &err), 0);
	assert_int_equal(skv_image_plan_new(c, SKV_DTYPE_F32, true, &p, &err), 0);
	assert_int_equal(p->header.kv_layers, 2);
	assert_int_equal(p->header.cache_layers, 4);
	skv_image_plan_free(p);
	skv_checkpoint_free(c);

	/* truncated by one byte: the last tensor runs past the data */
	assert_int_equal(tu_sh("cp '%s' '%s.bak' && truncate -s -1 '%s'", path, path, path), 0);
	expect_open_fails(d, "truncated or corrupt");
	/* header length field corrupted */
	assert_int_equal(tu_sh("cp '%s.bak' '%s' && printf '\\377\\377\\377\\377' | dd of='%s' bs=1 seek=0 conv=notrunc 2>/dev/null",
			       path, path, path),
			 0);
	expect_open_fails(d, "past the end of the file");
	/* a required tensor renamed in place: named as missing */
	assert_int_equal(tu_sh("cp '%s.bak' '%s' && sed -i 's/model.norm_swiftkv.weight/model.norm_swiftkx.weight/' '%s'",
			       path, path, path),
			 0);
	expect_open_fails(d, "'model.norm_swiftkv.weight' is missing");
	/* a shape that disagrees with the config */
	assert_int_equal(tu_sh("cp '%s.bak' '%s' && sed -i 's/\"intermediate_size\": 192/\"intermediate_size\": 96/' "
			       "'%s/config.json'",
			       path, path, d),
			 0);
	expect_open_fails(d, "mlp.gate_proj.weight' (in model.safetensors) has shape [192, 64], expected [96, 64]");
	/* no weights at all */
	assert_int_equal(tu_sh("rm '%s' '%s.bak'", path, path), 0);
	expect_open_fails(d, "no model.safetensors");
	/* no config */
	assert_int_equal(tu_sh("rm '%s/config.json'", d), 0);
	expect_open_fails(d, "config.json");
	tu_rmdir(d);
	free(d);
}

static void test_sharded(void **state)
{
	(void)state;
	/* tiny is ~0.5 MB: shards of 100 KB give several files and an index */
	char *d = tu_mkmodel("--preset tiny --max-shard-size 1048576 --dtype fp32");
	char *e = tu_mkmodel("--preset tiny --dtype fp32");
	struct skv_checkpoint *a = NULL, *b = NULL;
	struct skv_err err = {0};
	/* same weights whatever the sharding */
	assert_int_equal(skv_checkpoint_open(d, &a, &err), 0);
	assert_int_equal(skv_checkpoint_open(e, &b, &err), 0);
	assert_true(a->n_files > 1);
	assert_int_equal(b->n_files, 1);
	assert_int_equal(a->n_tensors, b->n_tensors);
	for (size_t i = 0; i < a->n_tensors; i++) {
		const struct skv_st_tensor *x = a->sorted[i], *y = skv_checkpoint_find(b, x->name);
		assert_non_null(y);
		assert_int_equal(x->end - x->begin, y->end - y->begin);
		assert_memory_equal(x->data, y->data, x->end - x->begin);
	}
	skv_checkpoint_free(a);
	skv_checkpoint_free(b);

	/* an index that points a tensor at the wrong shard, or outside the folder */
	assert_int_equal(tu_sh("cd '%s' && sed -i '0,/model-00001-of/s/\"model.embed_tokens.weight\": \"model-00001-of/\"model.embed_tokens.weight\": \"model-00002-of/' model.safetensors.index.json", d), 0);
	expect_open_fails(d, "model.embed_tokens.weight");
	assert_int_equal(tu_sh("cd '%s' && sed -i 's/\"model-00002-of-[0-9]*.safetensors\"/\"..\\/evil\"/' model.safetensors.index.json", d), 0);
	expect_open_fails(d, "invalid file name");
	tu_rmdir(d);
	free(d);
	tu_rmdir(e);
	free(e);
}

/* bf16 and fp16 checkpoints convert exactly to the fp32 image */
static void test_image_dtypes(void **state)
{
	(void)state;
	const char *dts[] = {"bf16", "fp16", "fp32"};
	for (int k = 0; k < 3; k++) {
		char args[128];
		snprintf(args, sizeof(args), "--preset tiny --dtype %s --attention-bias --mlp-bias --tie", dts[k]);
		char *d = tu_mkmodel(args);
		struct skv_checkpoint *c = NULL;
		struct skv_image_plan *p = NULL;
		struct skv_err err = {0};
		assert_int_equal(skv_checkpoint_open(d, &c, &err), 0);
		if (skv_image_plan_new(c, SKV_DTYPE_F32, false, &p, &err) < 0)
			fail_msg("%s", err.msg);
		void *img = malloc(p->header.total_size);
		assert_int_equal(skv_image_fill(p, img, NULL, NULL, &err), 0);
		const struct skv_image_header *h = NULL;
		assert_int_equal(skv_image_check(img, p->header.total_size, &h, &err), 0);
		assert_null(skv_image_find(h, SKV_W_LM_HEAD, 0)); /* tied */
		/* layer 1's packed q|k|v: rows of v_proj come after q and k */
		const struct skv_image_entry *e = skv_image_find(h, SKV_W_QKV, 1);
		const struct skv_st_tensor *v = skv_checkpoint_find(c, "model.layers.1.self_attn.v_proj.weight");
		const float *rows = (const float *)((const char *)img + h->data_offset + e->offset);
		size_t off = (size_t)(h->config.n_heads + h->config.n_kv_heads) * h->config.head_dim * h->config.hidden;
		enum skv_dtype sd;
		assert_int_equal(skv_st_dtype_to_skv(v->dtype, &sd), 0);
		for (size_t i = 0; i < v->numel; i++)
			assert_true(rows[off + i] == skv_load_f32(v->data, sd, i));
		assert_non_null(skv_image_find(h, SKV_W_GATE_UP_BIAS, 3));
		/* a corrupted image is refused */
		((struct skv_image_header *)img)->n_entries += 1000000;
		assert_true(skv_image_check(img, p->header.total_size, &h, &err) < 0);
		free(img);
		skv_image_plan_free(p);
		skv_checkpoint_free(c);
		tu_rmdir(d);
		free(d);
	}
}

/* The one KV limit skvd and the engine share: blocks x block_size positions fit the engine's
 * int32 slots, at least one block, bytes that fit size_t. */
static void test_kv_check(void **state)
{
	(void)state;
	struct skv_image_header h = {.cache_layers = 4};
	struct skv_err err = {0};
	h.config.n_kv_heads = 2;
	h.config.head_dim = 16;
	/* K and V of 4 cache layers, 16 positions, 2 heads of 16: 4096 elements */
	assert_int_equal(skv_image_kv_block_bytes(&h, SKV_DTYPE_F32, 16), 16384);
	assert_int_equal(skv_image_kv_block_bytes(&h, SKV_DTYPE_BF16, 16), 8192);
	assert_int_equal(skv_image_kv_check(&h, SKV_DTYPE_F32, 1, 16, &err), 0);
	assert_int_equal(skv_image_kv_check(&h, SKV_DTYPE_F32, SKV_KV_MAX_SLOTS / 16, 16, &err), 0);
	assert_int_equal(skv_image_kv_check(&h, SKV_DTYPE_F32, SKV_KV_MAX_SLOTS / 16 + 1, 16, &err), -E2BIG);
	assert_non_null(strstr(err.msg, "134217728 blocks of 16 positions"));
	assert_non_null(strstr(err.msg, "limit of 2147483647 positions, 134217727 blocks"));
	/* 16T of fp32 KV for this shape: 2^30 blocks (the case that restarted workers forever) */
	assert_int_equal(skv_image_kv_check(&h, SKV_DTYPE_F32, (16ull << 40) / 16384, 16, &err), -E2BIG);
	assert_int_equal(skv_image_kv_check(&h, SKV_DTYPE_F32, 0, 16, &err), -EINVAL);
	assert_non_null(strstr(err.msg, "at least one"));
	assert_int_equal(skv_image_kv_check(&h, SKV_DTYPE_F32, 1, 0, &err), -EINVAL);
	assert_int_equal(skv_image_kv_check(&h, SKV_DTYPE_F32, UINT64_MAX, 256, &err), -E2BIG);
}

static void test_dtype_roundtrip(void **state)
{
	(void)state;
	/* every fp16 and bf16 bit pattern survives fp32 and back (NaNs stay NaN) */
	for (uint32_t h = 0; h < 65536; h++) {
		float f = skv_f16_to_f32((uint16_t)h);
		if (f != f)
			assert_true(skv_f16_to_f32(skv_f32_to_f16(f)) != skv_f16_to_f32(skv_f32_to_f16(f)));
		else
			assert_int_equal(skv_f32_to_f16(f), h);
		float g = skv_bf16_to_f32((uint16_t)h);
		if (g == g)
			assert_int_equal(skv_f32_to_bf16(g), h);
	}
	assert_int_equal(skv_f32_to_f16(65520.0f), 0x7c00);
	assert_int_equal(skv_f32_to_f16(65504.0f), 0x7bff);
	assert_int_equal(skv_f32_to_bf16(1.00390625f), 0x3f80); /* halfway: to even */
	assert_int_equal(skv_f32_to_bf16(1.01171875f), 0x3f82);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_st_valid),	  cmocka_unit_test(test_st_corrupt),
		cmocka_unit_test(test_config),		  cmocka_unit_test(test_checkpoint_corrupt),
		cmocka_unit_test(test_sharded),		  cmocka_unit_test(test_image_dtypes),
		cmocka_unit_test(test_dtype_roundtrip),  cmocka_unit_test(test_kv_check),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
