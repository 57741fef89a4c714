/* test-gguf.c: the GGUF parser, its dequantization and skv-import, against gguf-py.
 *
 * tests/fixtures/gguf is made by scripts/make-gguf-fixtures.py with gguf-py (llama.cpp's own
 * Python package): random blocks of every type with gguf-py's dequantization of them, tiny
 * llamas in the layout llama.cpp's converter writes with the f32 tensors skv-import must give
 * back (q/k un-permuted), the ids Hugging Face tokenizers gives texts with a tokenizer built from
 * the same vocabulary, and files skv-import must refuse. Corrupt files (truncated, offsets out of
 * range) are made here from the tiny llama.
 */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include "gguf.h"
#include "model-config.h"
#include "safetensors.h"
#include "test-util.h"

static char fix[2048];
static char *tmp;

static char *fixture(const char *name)
{
	static char p[4096];
	snprintf(p, sizeof(p), "%s/%s", fix, name);
	return p;
}

static struct skv_gguf *parse_file(const char *path, uint8_t **ret_buf, size_t *ret_len)
{
	size_t len;
	uint8_t *buf = (uint8_t *)tu_slurp(path, &len);
	struct skv_gguf *g = NULL;
	struct skv_err err = {0};
	int r = skv_gguf_parse(buf, len, path, &g, &err);
	if (r < 0)
		fail_msg("%s", err.msg);
	*ret_buf = buf;
	if (ret_len)
		*ret_len = len;
	return g;
}

/* Every type against gguf-py's dequantization of the same blocks. */
static void test_dequant(void **state)
{
	(void)state;
	static const char *const names[] = {"F32",  "F16",  "BF16", "Q4_0", "Q4_1", "Q5_0",
					    "Q5_1", "Q8_0", "Q4_K", "Q5_K", "Q6_K"};
	uint8_t *buf;
	struct skv_gguf *g = parse_file(fixture("dequant.gguf"), &buf, NULL);
	for (size_t i = 0; i < SKV_ARRAY_SIZE(names); i++) {
		char qn[32], wn[32], tb[16];
		snprintf(qn, sizeof(qn), "q.%s", names[i]);
		snprintf(wn, sizeof(wn), "want.%s", names[i]);
		const struct skv_gguf_tensor *q = skv_gguf_find_tensor(g, qn), *w = skv_gguf_find_tensor(g, wn);
		assert_non_null(q);
		assert_non_null(w);
		assert_string_equal(skv_gguf_type_name(q->type, tb), names[i]);
		assert_int_equal(w->type, SKV_GGUF_F32);
		assert_int_equal(q->numel, w->numel);
		float *out = malloc(q->numel * sizeof(float)), *want = malloc(w->numel * sizeof(float));
		assert_int_equal(skv_gguf_dequantize(q->type, q->data, out, q->numel), 0);
		memcpy(want, w->data, w->numel * sizeof(float));
		size_t bad = 0;
		for (uint64_t k = 0; k < q->numel; k++) {
			double tol = 1e-6 * fabs((double)want[k]) + 1e-30; /* float rounding order only */
			if (!(fabs((double)out[k] - (double)want[k]) <= tol) && bad++ < 3)
				print_error("%s[%llu]: %.9g, gguf-py %.9g\n", names[i], (unsigned long long)k,
					    (double)out[k], (double)want[k]);
		}
		assert_int_equal(bad, 0);
		free(out);
		free(want);
	}
	/* a type it does not dequantize, and a count that is not whole blocks */
	float f[32];
	assert_int_equal(skv_gguf_dequantize(10 /* Q2_K */, buf, f, 256), -EOPNOTSUPP);
	assert_int_equal(skv_gguf_dequantize(SKV_GGUF_Q8_0, buf, f, 31), -EINVAL);
	skv_gguf_free(g);
	free(buf);
}

/* Metadata getters: types are checked, ranges named. */
static void test_metadata(void **state)
{
	(void)state;
	uint8_t *buf;
	struct skv_gguf *g = parse_file(fixture("tiny-llama.gguf"), &buf, NULL);
	struct skv_err err = {0};
	int64_t v;
	double d;
	bool b;
	struct skv_gguf_str s;
	assert_int_equal(g->version, 3);
	assert_int_equal(skv_gguf_get_int(g, "llama.block_count", 0, 100, &v, &err), 0);
	assert_int_equal(v, 2);
	assert_int_equal(skv_gguf_get_int(g, "llama.block_count", 3, 100, &v, &err), -EINVAL);
	assert_non_null(strstr(err.msg, "llama.block_count is 2, outside [3, 100]"));
	assert_int_equal(skv_gguf_get_int(g, "general.architecture", 0, 1, &v, &err), -EINVAL);
	assert_non_null(strstr(err.msg, "general.architecture must be an integer"));
	assert_int_equal(skv_gguf_get_int(g, "no.such.key", 0, 1, &v, &err), -ENOENT);
	assert_int_equal(skv_gguf_get_float(g, "llama.rope.freq_base", &d, &err), 0);
	assert_true(d == 100000.0);
	assert_int_equal(skv_gguf_get_bool(g, "tokenizer.ggml.add_bos_token", &b, &err), 0);
	assert_false(b);
	assert_int_equal(skv_gguf_get_str(g, "tokenizer.ggml.pre", &s, &err), 0);
	assert_int_equal(s.len, 9);
	assert_memory_equal(s.p, "llama-bpe", 9);
	const struct skv_gguf_kv *tt = skv_gguf_find_kv(g, "tokenizer.ggml.token_type");
	assert_non_null(tt);
	assert_int_equal(skv_gguf_arr_int(tt, 0), 3);
	assert_int_equal(skv_gguf_arr_int(tt, 3), 1);
	skv_gguf_free(g);
	free(buf);
}

static void expect_parse_error(const uint8_t *buf, size_t len, const char *what)
{
	struct skv_gguf *g = NULL;
	struct skv_err err = {0};
	int r = skv_gguf_parse(buf, len, "x.gguf", &g, &err);
	if (r == 0)
		fail_msg("accepted, expected '%s'", what);
	assert_null(g);
	if (!strstr(err.msg, what))
		fail_msg("error '%s' does not say '%s'", err.msg, what);
}

/* The byte offset, in a file, of the u64 "offset" field of the tensor info called name. */
static size_t offset_field(const uint8_t *buf, size_t len, const char *name)
{
	size_t nl = strlen(name);
	for (size_t i = 8; i + nl + 4 < len; i++) {
		if (memcmp(buf + i, name, nl) || buf[i - 8] != nl)
			continue;
		size_t p = i + nl;
		uint32_t nd = buf[p];
		return p + 4 + 8 * nd + 4;
	}
	fail_msg("tensor info %s not found", name);
	return 0;
}

/* Truncated files, offsets out of range or misaligned, overlaps, bad magic and version. */
static void test_corrupt(void **state)
{
	(void)state;
	size_t len;
	uint8_t *buf = (uint8_t *)tu_slurp(fixture("tiny-llama.gguf"), &len);
	struct skv_gguf *g = NULL;
	struct skv_err err = {0};
	assert_int_equal(skv_gguf_parse(buf, len, "x", &g, &err), 0);
	uint64_t data = g->data_offset;
	skv_gguf_free(g);

	/* every cut: refused, saying the file is truncated or a tensor runs past its end */
	for (size_t cut = 0; cut < len; cut += cut < 4096 ? 1 : 997) {
		g = NULL;
		err.msg[0] = 0;
		if (skv_gguf_parse(buf, cut, "x", &g, &err) == 0)
			fail_msg("a file cut at %zu of %zu bytes was accepted", cut, len);
		if (!strstr(err.msg, "truncated") && !strstr(err.msg, "past the file's end"))
			fail_msg("cut at %zu: '%s'", cut, err.msg);
	}
	expect_parse_error(buf, data + 10, "past the file's end");

	uint8_t *c = malloc(len);
	size_t off = offset_field(buf, len, "output_norm.weight");
	memcpy(c, buf, len);
	for (int i = 1; i < 8; i++)
		c[off + i] = 0x7f; /* aligned, far past the end */
	expect_parse_error(c, len, "run past the file's end");
	memcpy(c, buf, len);
	c[off] = (uint8_t)(c[off] + 1);
	expect_parse_error(c, len, "is not a multiple of the alignment 32");
	memcpy(c, buf, len);
	memset(c + off, 0, 8); /* onto token_embd.weight's bytes */
	expect_parse_error(c, len, "overlap");
	memcpy(c, buf, len);
	c[0] = 'X';
	expect_parse_error(c, len, "not a GGUF file");
	memcpy(c, buf, len);
	c[4] = 1;
	expect_parse_error(c, len, "GGUF version 1 is not supported");
	memcpy(c, buf, len);
	c[8 + 7] = 0x10; /* a tensor count that cannot fit */
	expect_parse_error(c, len, "cannot fit");
	/* a tensor's first extent that is not whole blocks of its type (Q8_0: 32) */
	memcpy(c, buf, len);
	off = offset_field(buf, len, "token_embd.weight");
	c[off - 4 - 16] = 63; /* ne[0] of a 2-D tensor: 64 -> 63 */
	expect_parse_error(c, len, "is not a multiple of Q8_0's block of 32");
	/* an unknown type */
	memcpy(c, buf, len);
	c[off - 4] = 77;
	expect_parse_error(c, len, "type type 77 is not supported");
	free(c);
	free(buf);
}

/* Runs skv-import; returns its exit status, its stderr in *msg (malloc). */
static int import(const char *args, const char *gguf, const char *out, char **msg)
{
	char errf[4096];
	snprintf(errf, sizeof(errf), "%s/import.err", tmp);
	int r = tu_sh("'%s' %s '%s' '%s' >/dev/null 2>'%s'", tu_tool("SKV_IMPORT"), args, gguf, out, errf);
	if (msg)
		*msg = tu_slurp(errf, NULL);
	return r;
}

/* Every tensor in want_file equals the imported one (f32: exactly). */
static void compare_checkpoint(const char *dir, const char *want_file, size_t expect_n)
{
	struct skv_checkpoint *ck = NULL;
	struct skv_err err = {0};
	if (skv_checkpoint_open(dir, &ck, &err) < 0)
		fail_msg("%s", err.msg);
	size_t len;
	uint8_t *w = (uint8_t *)tu_slurp(want_file, &len);
	struct skv_st_header *h = NULL;
	assert_int_equal(skv_st_header_parse(w, len, want_file, &h, &err), 0);
	if (expect_n)
		assert_int_equal(ck->n_tensors, expect_n);
	for (size_t i = 0; i < h->n; i++) {
		const struct skv_st_tensor *a = &h->tensors[i], *b = skv_checkpoint_find(ck, a->name);
		if (!b)
			fail_msg("%s missing from the import", a->name);
		assert_int_equal(b->dtype, SKV_ST_F32);
		assert_int_equal(a->ndim, b->ndim);
		for (uint32_t d = 0; d < a->ndim; d++)
			assert_int_equal(a->shape[d], b->shape[d]);
		if (memcmp(a->data, b->data, a->end - a->begin))
			fail_msg("%s differs from gguf-py's values", a->name);
	}
	skv_st_header_free(h);
	free(w);
	skv_checkpoint_free(ck);
}

static void test_import_tied(void **state)
{
	(void)state;
	char out[4096];
	snprintf(out, sizeof(out), "%s/tied", tmp);
	assert_int_equal(import("--dtype f32", fixture("tiny-llama.gguf"), out, NULL), 0);
	compare_checkpoint(out, fixture("tiny-llama.want.safetensors"), 20);
	struct skv_model_config c;
	struct skv_err err = {0};
	if (skv_model_config_load(out, &c, &err) < 0)
		fail_msg("%s", err.msg);
	assert_int_equal(c.n_layers, 2);
	assert_int_equal(c.hidden, 64);
	assert_int_equal(c.intermediate, 160);
	assert_int_equal(c.n_heads, 4);
	assert_int_equal(c.n_kv_heads, 2);
	assert_int_equal(c.head_dim, 16);
	assert_int_equal(c.vocab, 359);
	assert_int_equal(c.max_position, 4096);
	assert_true(c.tie_word_embeddings);
	assert_true(c.rope_theta == 100000.0f);
	assert_true(c.rms_eps == 1e-5f);
	assert_int_equal(c.rope_type, SKV_ROPE_DEFAULT);
	assert_int_equal(c.bos_id, 1);
	assert_int_equal(c.n_eos, 1);
	assert_int_equal(c.eos_ids[0], 2);
	/* tokenizer_config.json: the template and the special tokens by name */
	char p[4200];
	snprintf(p, sizeof(p), "%s/tokenizer_config.json", out);
	char *tc = tu_slurp(p, NULL);
	assert_non_null(strstr(tc, "\"bos_token\": \"<|im_start|>\""));
	assert_non_null(strstr(tc, "\"eos_token\": \"<|im_end|>\""));
	assert_non_null(strstr(tc, "\"chat_template\": \"{% for message in messages %}"));
	free(tc);
	/* an existing OUTDIR needs --force */
	char *msg;
	assert_int_equal(import("", fixture("tiny-llama.gguf"), out, &msg), 1);
	assert_non_null(strstr(msg, "use --force"));
	free(msg);
	assert_int_equal(import("--force --dtype f32", fixture("tiny-llama.gguf"), out, NULL), 0);
}

static void test_import_untied_bf16(void **state)
{
	(void)state;
	char out[4096];
	snprintf(out, sizeof(out), "%s/untied", tmp);
	assert_int_equal(import("--dtype f32", fixture("tiny-untied.gguf"), out, NULL), 0);
	compare_checkpoint(out, fixture("tiny-untied.want.safetensors"), 21);
	struct skv_model_config c;
	struct skv_err err = {0};
	assert_int_equal(skv_model_config_load(out, &c, &err), 0);
	assert_false(c.tie_word_embeddings);

	/* bf16 (the default): every value is the f32 import's, rounded to bf16 (sharding is
	 * skv_st_write_sharded's, tested through skv-mkmodel in test-model) */
	char out16[4096];
	snprintf(out16, sizeof(out16), "%s/untied16", tmp);
	assert_int_equal(import("", fixture("tiny-untied.gguf"), out16, NULL), 0);
	struct skv_checkpoint *a = NULL, *b = NULL;
	assert_int_equal(skv_checkpoint_open(out, &a, &err), 0);
	assert_int_equal(skv_checkpoint_open(out16, &b, &err), 0);
	assert_int_equal(b->n_files, 1);
	assert_int_equal(a->n_tensors, b->n_tensors);
	for (size_t i = 0; i < a->n_tensors; i++) {
		const struct skv_st_tensor *x = a->sorted[i], *y = skv_checkpoint_find(b, x->name);
		assert_non_null(y);
		assert_int_equal(y->dtype, SKV_ST_BF16);
		for (uint64_t k = 0; k < x->numel; k++)
			assert_int_equal(skv_f32_to_bf16(((const float *)x->data)[k]), ((const uint16_t *)y->data)[k]);
	}
	skv_checkpoint_free(a);
	skv_checkpoint_free(b);
}

/* Llama-3.1 rope scaling stored as rope_freqs.weight comes back as config.json's rope_scaling,
 * which gives every one of the file's divisors again; a divisor off the curve is refused. The
 * same file sets add_bos_token: the tokenizer adds BOS. */
static void test_import_rope_freqs(void **state)
{
	(void)state;
	char out[4096], bad[4200], *msg;
	snprintf(out, sizeof(out), "%s/llama31", tmp);
	assert_int_equal(import("--dtype f32", fixture("tiny-llama31.gguf"), out, NULL), 0);
	struct skv_model_config c;
	struct skv_err err = {0};
	if (skv_model_config_load(out, &c, &err) < 0)
		fail_msg("%s", err.msg);
	assert_int_equal(c.rope_type, SKV_ROPE_LLAMA3);
	assert_true(c.rope_factor == 8.0f);
	assert_true(fabs(c.rope_low_freq_factor - 1.0) < 1e-5);
	assert_true(fabs(c.rope_high_freq_factor - 32.0) < 1e-4);
	assert_int_equal(c.rope_orig_max_position, 8192);

	/* add_bos_token: the post-processor puts BOS (id 1) before the text, as tokenizers does */
	char tf[4200], of[4200];
	snprintf(tf, sizeof(tf), "%s/hello", tmp);
	snprintf(of, sizeof(of), "%s/hello.ids", tmp);
	tu_write(tf, "Hello world", 11);
	assert_int_equal(tu_sh("'%s' encode --tokenizer '%s' <'%s' >'%s'", tu_tool("SKV_TOK"), out, tf, of), 0);
	char *plain = tu_slurp(of, NULL);
	assert_int_equal(tu_sh("'%s' encode --bos --tokenizer '%s' <'%s' >'%s'", tu_tool("SKV_TOK"), out, tf, of), 0);
	char *bos = tu_slurp(of, NULL);
	assert_true(strlen(plain) > 2);
	assert_memory_equal(bos, "1 ", 2);
	assert_string_equal(bos + 2, plain);
	free(plain);
	free(bos);

	size_t len;
	uint8_t *buf;
	struct skv_gguf *g = parse_file(fixture("tiny-llama31.gguf"), &buf, &len);
	const struct skv_gguf_tensor *rf = skv_gguf_find_tensor(g, "rope_freqs.weight");
	assert_non_null(rf);
	assert_int_equal(rf->numel, c.head_dim / 2);
	int smooth = 0;
	for (uint32_t i = 0; i < c.head_dim / 2; i++) {
		float f;
		memcpy(&f, rf->data + 4 * i, 4);
		/* transformers' _compute_llama3_parameters, as a divisor of the frequency */
		double wl = 2 * M_PI * pow(c.rope_theta, 2.0 * i / c.head_dim), orig = c.rope_orig_max_position, want;
		if (wl < orig / c.rope_high_freq_factor)
			want = 1.0;
		else if (wl > orig / c.rope_low_freq_factor)
			want = c.rope_factor;
		else {
			double sm = (orig / wl - c.rope_low_freq_factor) / (c.rope_high_freq_factor - c.rope_low_freq_factor);
			want = 1.0 / ((1 - sm) / c.rope_factor + sm);
			smooth++;
		}
		if (fabs(want - f) > 1e-5 * f)
			fail_msg("frequency %u: the config gives divisor %.7g, the file holds %.7g", i, want, (double)f);
	}
	assert_int_equal(smooth, 2); /* the fewest the importer can fit */
	/* one divisor moved off the curve (an unscaled one: two in the band always fit a line) */
	size_t at = (size_t)(rf->data - buf);
	float f;
	memcpy(&f, buf + at, 4);
	f *= 1.01f;
	memcpy(buf + at, &f, 4);
	snprintf(bad, sizeof(bad), "%s/bad-rope.gguf", tmp);
	tu_write(bad, buf, len);
	snprintf(out, sizeof(out), "%s/bad-rope", tmp);
	assert_int_equal(import("", bad, out, &msg), 1);
	assert_non_null(strstr(msg, "does not follow Llama-3.1's rope scaling"));
	free(msg);
	skv_gguf_free(g);
	free(buf);
}

/* Each refusal names what is wrong. */
static void test_refusals(void **state)
{
	(void)state;
	static const struct {
		const char *file, *args, *msg;
	} cases[] = {
		{"bad-arch.gguf", "", "general.architecture is 'qwen2': skv-import converts the llama architecture only"},
		{"bad-type.gguf", "", "type Q2_K is not supported"},
		{"bad-pre.gguf", "", "tokenizer.ggml.pre 'made-up-pre' is not a pre-tokenizer skv-import knows"},
		{"bad-shape.gguf", "", "tensor blk.0.attn_k.weight has extents [64, 64, 1, 1] (ggml order), expected [64, 32]"},
		{"tiny-llama.gguf", "--dtype f8", "--dtype must be bf16, f16 or f32, not 'f8'"},
		{"tiny-llama.gguf", "--swiftkv-layers 2", "need L < 2 layers"},
		{"no-such.gguf", "", "No such file"},
	};
	for (size_t i = 0; i < SKV_ARRAY_SIZE(cases); i++) {
		char out[4096], *msg;
		snprintf(out, sizeof(out), "%s/refused%zu", tmp, i);
		int r = import(cases[i].args, fixture(cases[i].file), out, &msg);
		if (r == 0 || !strstr(msg, cases[i].msg))
			fail_msg("%s %s: status %d, '%s' (expected '%s')", cases[i].file, cases[i].args, r, msg, cases[i].msg);
		free(msg);
		struct stat st;
		if (stat(out, &st) == 0) /* nothing half-written left behind */
			fail_msg("%s: refused, but %s exists", cases[i].file, out);
	}
	/* a truncated file through the tool */
	size_t len;
	char *buf = tu_slurp(fixture("tiny-llama.gguf"), &len), p[4096], out[4096], *msg;
	snprintf(p, sizeof(p), "%s/cut.gguf", tmp);
	snprintf(out, sizeof(out), "%s/cut", tmp);
	tu_write(p, buf, len - 100);
	assert_true(import("", p, out, &msg) != 0);
	assert_non_null(strstr(msg, "cut.gguf: tensor 'output_norm.weight': bytes"));
	assert_non_null(strstr(msg, "run past the file's end"));
	free(msg);
	free(buf);

	/* a NaN in a weight */
	uint8_t *b2;
	struct skv_gguf *g = parse_file(fixture("tiny-llama.gguf"), &b2, &len);
	const struct skv_gguf_tensor *nt = skv_gguf_find_tensor(g, "output_norm.weight");
	assert_non_null(nt);
	memcpy(b2 + (nt->data - b2) + 4 * 5, "\x00\x00\xc0\x7f", 4);
	snprintf(p, sizeof(p), "%s/nan.gguf", tmp);
	snprintf(out, sizeof(out), "%s/nan", tmp);
	tu_write(p, b2, len);
	assert_int_equal(import("", p, out, &msg), 1);
	assert_non_null(strstr(msg, "model.norm.weight: row 0 holds a value that is not finite"));
	free(msg);
	skv_gguf_free(g);
	free(b2);
}

/* skv-tok on the imported tokenizer.json gives the ids Hugging Face tokenizers gives with a
 * tokenizer built from the same GGUF parts (tokenizer.txt). */
static void check_tokenizer(const char *gguf, const char *pre)
{
	char out[4096];
	snprintf(out, sizeof(out), "%s/tok-%s", tmp, pre);
	assert_int_equal(import("--force", fixture(gguf), out, NULL), 0);
	int n = tu_check_encodings(out, fixture("tokenizer.txt"), pre, tmp);
	if (n < 0 && !strcmp(pre, "smollm"))
		skip(); /* the Digits pre-tokenizer comes with the tokenizer's own work (issue 11 item 2) */
	assert_true(n >= 8);
}

static void test_tokenizer_llama_bpe(void **state)
{
	(void)state;
	check_tokenizer("tiny-llama.gguf", "llama-bpe");
}

static void test_tokenizer_gpt2(void **state)
{
	(void)state;
	check_tokenizer("tiny-untied.gguf", "gpt2");
}

static void test_tokenizer_smollm(void **state)
{
	(void)state;
	check_tokenizer("tiny-smollm.gguf", "smollm");
}

/* --swiftkv-layers: a llama_swiftkv checkpoint whose extra tensors are the teacher's, and the
 * engine serves it with SwiftKV on. */
static void test_import_swiftkv(void **state)
{
	(void)state;
	char out[4096], ids[4200];
	snprintf(out, sizeof(out), "%s/swiftkv", tmp);
	assert_int_equal(import("--dtype f32 --swiftkv-layers 1", fixture("tiny-llama.gguf"), out, NULL), 0);
	struct skv_model_config c;
	struct skv_err err = {0};
	if (skv_model_config_load(out, &c, &err) < 0)
		fail_msg("%s", err.msg);
	assert_true(c.swiftkv);
	assert_int_equal(c.kv_layers, 1);
	assert_int_equal(c.kv_group, 1);
	struct skv_checkpoint *ck = NULL;
	assert_int_equal(skv_checkpoint_open(out, &ck, &err), 0);
	assert_int_equal(ck->n_tensors, 20 + 4);
	const struct skv_st_tensor *q = skv_checkpoint_find(ck, "model.layers.1.self_attn.q_proj.weight"),
				   *qs = skv_checkpoint_find(ck, "model.layers.1.self_attn.q_proj_swiftkv.weight"),
				   *k = skv_checkpoint_find(ck, "model.layers.1.self_attn.k_proj.weight"),
				   *ks = skv_checkpoint_find(ck, "model.layers.1.self_attn.k_proj_swiftkv.weight"),
				   *n1 = skv_checkpoint_find(ck, "model.layers.1.input_layernorm.weight"),
				   *ns = skv_checkpoint_find(ck, "model.norm_swiftkv.weight");
	assert_non_null(qs);
	assert_non_null(ks);
	assert_non_null(ns);
	assert_non_null(skv_checkpoint_find(ck, "model.layers.1.self_attn.v_proj_swiftkv.weight"));
	assert_memory_equal(q->data, qs->data, q->end - q->begin);
	assert_memory_equal(k->data, ks->data, k->end - k->begin);
	assert_memory_equal(n1->data, ns->data, n1->end - n1->begin);
	skv_checkpoint_free(ck);
	snprintf(ids, sizeof(ids), "%s/ids", tmp);
	for (int on = 0; on < 2; on++) {
		assert_int_equal(tu_sh("'%s' --model '%s' --swiftkv %s --prompt-ids 1,40,50,60,70 --max-tokens 4 "
				       "--ignore-eos --ids >'%s' 2>&1",
				       tu_tool("SKV_RUN"), out, on ? "on" : "off", ids),
				 0);
		char *got = tu_slurp(ids, NULL);
		int a, b2, c2, d;
		if (sscanf(got, "%d %d %d %d", &a, &b2, &c2, &d) != 4)
			fail_msg("skv-run --swiftkv %s: '%s'", on ? "on" : "off", got);
		free(got);
	}
}

static int setup(void **state)
{
	(void)state;
	snprintf(fix, sizeof(fix), "%s/tests/fixtures/gguf", tu_tool("SKV_SRCDIR"));
	tmp = tu_tmpdir();
	return 0;
}

static int teardown(void **state)
{
	(void)state;
	tu_rmdir(tmp);
	free(tmp);
	return 0;
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_dequant),
		cmocka_unit_test(test_metadata),
		cmocka_unit_test(test_corrupt),
		cmocka_unit_test(test_import_tied),
		cmocka_unit_test(test_import_untied_bf16),
		cmocka_unit_test(test_import_rope_freqs),
		cmocka_unit_test(test_refusals),
		cmocka_unit_test(test_tokenizer_llama_bpe),
		cmocka_unit_test(test_tokenizer_gpt2),
		cmocka_unit_test(test_tokenizer_smollm),
		cmocka_unit_test(test_import_swiftkv),
	};
	return cmocka_run_group_tests(tests, setup, teardown);
}
