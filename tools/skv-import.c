/* skv-import: a GGUF file of the llama architecture becomes a Hugging Face model directory.
 *
 *   skv-import [--dtype bf16|f16|f32] [--swiftkv-layers L [--group G]] [--max-shard-size BYTES]
 *              [--force] GGUF OUTDIR
 *
 * Writes config.json, generation_config.json, model.safetensors (or shards and their index),
 * tokenizer.json and tokenizer_config.json (with the GGUF's chat template and special tokens).
 * Every tensor is dequantized to float (model/gguf.c), the q/k rows that llama.cpp's converter
 * interleaves per head are put back in Hugging Face's order (each head's first half of rotary
 * dimensions, then its second), and the result is stored in --dtype. The tokenizer is rebuilt
 * from tokenizer.ggml.*: byte-level BPE, control tokens as special added tokens, and the
 * pre-tokenizer tokenizer.ggml.pre names. What it cannot convert exactly it refuses, naming the
 * key or tensor: docs/gguf.md lists what and why.
 *
 * --swiftkv-layers L adds SwiftKV tensors in skv-mkmodel's way (q_proj_swiftkv from q_proj, the
 * group owner's k/v_proj_swiftkv from the mean of its group's k/v_proj, norm_swiftkv from layer
 * L's input norm), without noise: a llama_swiftkv checkpoint to test the SwiftKV path on a real
 * model (distillation, which gives these tensors trained values, is separate).
 */
#include <errno.h>
#include <fcntl.h>
#include <getopt.h>
#include <json-c/json.h>
#include <math.h>
#include <stdio.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/stat.h>

#include "skv-json.h"
#include "skv-version.h"
#include "gguf.h"
#include "safetensors.h"
#include "skv-base.h"
#include "skv-dtype.h"
#include "tokenizer.h"

#define MAX_SRC 8

struct hp {
	uint32_t layers, hidden, inter, heads, kv_heads, head_dim, vocab, ctx;
	double eps, theta;
	bool tied;
	/* Llama-3.1 rope scaling, recovered from rope_freqs.weight (factor 0: none) */
	double rope_factor, rope_low, rope_high;
	uint32_t rope_orig;
};

/* One tensor to write: the mean of its sources (one, but for a SwiftKV group's k/v), each with
 * its rows un-permuted when perm_heads is set. */
struct otensor {
	char name[96];
	uint32_t ndim;
	uint64_t rows, cols;
	const struct skv_gguf_tensor *src[MAX_SRC];
	uint32_t n_src;
	uint32_t perm_heads;
};

struct job {
	struct otensor *t;
	enum skv_dtype dtype;
};

/* The GGUF row that holds Hugging Face row r of a q/k projection: llama.cpp's converter views
 * each head's rows as [2][head_dim/2] and stores them transposed, [head_dim/2][2]. */
static inline uint64_t gguf_row(uint64_t r, uint64_t rows, uint32_t heads)
{
	if (!heads)
		return r;
	uint64_t hd = rows / heads, h = r / hd, w = r % hd, half = w / (hd / 2), i = w % (hd / 2);
	return h * hd + 2 * i + half;
}

static int fill(void *userdata, size_t index, void *dst, size_t nbytes, struct skv_err *err)
{
	struct job *j = userdata;
	const struct otensor *t = &j->t[index];
	uint64_t bad_row = UINT64_MAX;
	int r = 0;
	(void)nbytes;
#pragma omp parallel
	{
		float *row = malloc(t->cols * sizeof(float)), *acc = malloc(t->cols * sizeof(float));
#pragma omp for schedule(static)
		for (uint64_t i = 0; i < t->rows; i++) {
			if (!row || !acc) {
#pragma omp atomic write
				r = -ENOMEM;
				continue;
			}
			for (uint32_t s = 0; s < t->n_src; s++) {
				const struct skv_gguf_tensor *g = t->src[s];
				uint32_t be, bb;
				skv_gguf_type_block(g->type, &be, &bb);
				uint64_t gr = gguf_row(i, t->rows, t->perm_heads);
				skv_gguf_dequantize(g->type, g->data + gr * (t->cols / be) * bb, s ? row : acc, t->cols);
				if (s)
					for (uint64_t c = 0; c < t->cols; c++)
						acc[c] += row[c];
			}
			for (uint64_t c = 0; c < t->cols; c++) {
				float v = acc[c] / (float)t->n_src;
				if (!isfinite(v)) {
#pragma omp critical
					bad_row = SKV_MIN(bad_row, i);
				}
				skv_store_f32(dst, j->dtype, i * t->cols + c, v);
			}
		}
		free(row);
		free(acc);
	}
	if (r < 0)
		return skv_err_set(err, r, "%s: out of memory", t->name);
	if (bad_row != UINT64_MAX)
		return skv_err_set(err, -EINVAL, "%s: row %llu holds a value that is not finite", t->name,
				   (unsigned long long)bad_row);
	return 0;
}

/* ---- hyper-parameters and tensors ---- */

static int need_u32(const struct skv_gguf *g, const char *arch, const char *suffix, uint32_t max, uint32_t *ret,
		    struct skv_err *err)
{
	char key[128];
	int64_t v;
	snprintf(key, sizeof(key), "%s.%s", arch, suffix);
	int r = skv_gguf_get_int(g, key, 1, max, &v, err);
	if (r == -ENOENT)
		return skv_err_set(err, -EINVAL, "%s is missing", key);
	if (r < 0)
		return r;
	*ret = (uint32_t)v;
	return 0;
}

/* Llama-3.1's rope scaling: llama.cpp's converter stores it as rope_freqs.weight, one divisor per
 * frequency (1 for short wavelengths, factor for long ones, 1 / ((1 - s) / factor + s) between,
 * s = (orig / wavelen - low) / (high - low)), not as parameters. factor is the largest divisor;
 * s is linear in 1 / wavelen, so the entries between give low and high for an assumed orig (only
 * the ratios orig / low and orig / high matter, so any orig gives the same rotation: 8192, the
 * released models' value). The parameters are accepted only if they give back every entry. */
#define ROPE_ORIG 8192

static double llama3_divisor(double wavelen, double factor, double low, double high, double orig)
{
	if (wavelen < orig / high)
		return 1.0;
	if (wavelen > orig / low)
		return factor;
	double sm = (orig / wavelen - low) / (high - low);
	return 1.0 / ((1.0 - sm) / factor + sm);
}

static int rope_from_freqs(const struct skv_gguf_tensor *t, struct hp *h, struct skv_err *err)
{
	const uint32_t half = h->head_dim / 2;
	float f[SKV_MAX_HEAD_DIM / 2];
	double wl[SKV_MAX_HEAD_DIM / 2], factor = 0, sx = 0, sy = 0, sxx = 0, sxy = 0;
	uint32_t n = 0;
	if (t->n_dims != 1 || t->ne[0] != half || t->type != SKV_GGUF_F32)
		return skv_err_set(err, -EINVAL, "tensor rope_freqs.weight must be F32 [%u] (head_dim / 2)", half);
	skv_gguf_dequantize(t->type, t->data, f, half);
	for (uint32_t i = 0; i < half; i++) {
		if (!(f[i] >= 1.0f && f[i] <= 1e6f))
			return skv_err_set(err, -EINVAL, "rope_freqs.weight[%u] is %g, outside [1, 1e6]", i, (double)f[i]);
		factor = fmax(factor, f[i]);
		wl[i] = 2.0 * M_PI * pow(h->theta, 2.0 * i / h->head_dim);
	}
	if (factor <= 1.0 + 1e-6)
		return 0; /* no scaling */
	for (uint32_t i = 0; i < half; i++) {
		if (f[i] <= 1.0 + 1e-6 || f[i] >= factor * (1 - 1e-6))
			continue;
		double x = 1.0 / wl[i], y = (1.0 / f[i] - 1.0 / factor) / (1.0 - 1.0 / factor);
		sx += x, sy += y, sxx += x * x, sxy += x * y, n++;
	}
	double det = n * sxx - sx * sx;
	if (n < 2 || !(fabs(det) > 0))
		return skv_err_set(err, -EOPNOTSUPP,
				   "rope_freqs.weight: %u frequencies between the scaled and unscaled ones, at least 2 are "
				   "needed to recover Llama-3.1's rope scaling",
				   n);
	double a = (n * sxy - sx * sy) / det, b = (sy - a * sx) / n; /* s = a / wavelen + b */
	double span = ROPE_ORIG / a, low = -b * span, high = low + span;
	if (!(a > 0) || !(low > 0) || !(high > low))
		return skv_err_set(err, -EOPNOTSUPP, "rope_freqs.weight does not follow Llama-3.1's rope scaling");
	for (uint32_t i = 0; i < half; i++)
		if (fabs(llama3_divisor(wl[i], factor, low, high, ROPE_ORIG) - f[i]) > 1e-4 * f[i])
			return skv_err_set(err, -EOPNOTSUPP,
					   "rope_freqs.weight[%u] = %g does not follow Llama-3.1's rope scaling (factor %g, "
					   "low %g, high %g give %g)",
					   i, (double)f[i], factor, low, high, llama3_divisor(wl[i], factor, low, high, ROPE_ORIG));
	h->rope_factor = factor;
	h->rope_low = low;
	h->rope_high = high;
	h->rope_orig = ROPE_ORIG;
	return 0;
}

static int read_hparams(const struct skv_gguf *g, struct hp *h, struct skv_err *err)
{
	struct skv_gguf_str arch;
	int64_t v;
	int r;
	if ((r = skv_gguf_get_str(g, "general.architecture", &arch, err)) == -ENOENT)
		return skv_err_set(err, -EINVAL, "general.architecture is missing");
	if (r < 0)
		return r;
	if (arch.len != 5 || memcmp(arch.p, "llama", 5))
		return skv_err_set(err, -EOPNOTSUPP,
				   "general.architecture is '%.*s': skv-import converts the llama architecture only",
				   (int)SKV_MIN(arch.len, 64), arch.p);
	if ((r = need_u32(g, "llama", "block_count", SKV_MAX_LAYERS, &h->layers, err)) < 0 ||
	    (r = need_u32(g, "llama", "embedding_length", SKV_MAX_HIDDEN, &h->hidden, err)) < 0 ||
	    (r = need_u32(g, "llama", "feed_forward_length", SKV_MAX_INTERMEDIATE, &h->inter, err)) < 0 ||
	    (r = need_u32(g, "llama", "attention.head_count", SKV_MAX_HEADS, &h->heads, err)) < 0 ||
	    (r = need_u32(g, "llama", "context_length", INT32_MAX, &h->ctx, err)) < 0)
		return r;
	h->kv_heads = h->heads;
	if ((r = skv_gguf_get_int(g, "llama.attention.head_count_kv", 1, SKV_MAX_HEADS, &v, err)) == 0)
		h->kv_heads = (uint32_t)v;
	else if (r != -ENOENT)
		return r;
	if (h->heads % h->kv_heads)
		return skv_err_set(err, -EINVAL, "llama.attention.head_count %u is not a multiple of head_count_kv %u",
				   h->heads, h->kv_heads);
	h->head_dim = h->hidden / h->heads;
	if ((r = skv_gguf_get_int(g, "llama.attention.key_length", 2, SKV_MAX_HEAD_DIM, &v, err)) == 0)
		h->head_dim = (uint32_t)v;
	else if (r != -ENOENT)
		return r;
	if (h->head_dim < 2 || h->head_dim % 2)
		return skv_err_set(err, -EINVAL, "the head dimension %u must be even and at least 2", h->head_dim);
	if ((r = skv_gguf_get_int(g, "llama.attention.value_length", 1, SKV_MAX_HEAD_DIM, &v, err)) == 0 &&
	    v != h->head_dim)
		return skv_err_set(err, -EOPNOTSUPP, "llama.attention.value_length %lld differs from key_length %u",
				   (long long)v, h->head_dim);
	if ((r = skv_gguf_get_int(g, "llama.rope.dimension_count", 1, SKV_MAX_HEAD_DIM, &v, err)) == 0 &&
	    v != h->head_dim)
		return skv_err_set(err, -EOPNOTSUPP,
				   "llama.rope.dimension_count %lld: rotary embedding on part of a head (head_dim %u) "
				   "is not supported",
				   (long long)v, h->head_dim);
	h->theta = 10000.0;
	if ((r = skv_gguf_get_float(g, "llama.rope.freq_base", &h->theta, err)) < 0 && r != -ENOENT)
		return r;
	if (!(h->theta >= 1.0 && h->theta <= 1e12))
		return skv_err_set(err, -EINVAL, "llama.rope.freq_base %g is outside [1, 1e12]", h->theta);
	if ((r = skv_gguf_get_float(g, "llama.attention.layer_norm_rms_epsilon", &h->eps, err)) == -ENOENT)
		return skv_err_set(err, -EINVAL, "llama.attention.layer_norm_rms_epsilon is missing");
	if (r < 0)
		return r;
	if (!(h->eps > 0.0 && h->eps < 1.0))
		return skv_err_set(err, -EINVAL, "llama.attention.layer_norm_rms_epsilon %g is outside (0, 1)", h->eps);
	struct skv_gguf_str st;
	if ((r = skv_gguf_get_str(g, "llama.rope.scaling.type", &st, err)) == 0 &&
	    !(st.len == 4 && !memcmp(st.p, "none", 4)))
		return skv_err_set(err, -EOPNOTSUPP, "llama.rope.scaling.type '%.*s' is not supported",
				   (int)SKV_MIN(st.len, 64), st.p);
	const struct skv_gguf_tensor *emb = skv_gguf_find_tensor(g, "token_embd.weight");
	if (!emb)
		return skv_err_set(err, -EINVAL, "tensor token_embd.weight is missing");
	if (emb->n_dims != 2 || emb->ne[1] > SKV_MAX_VOCAB)
		return skv_err_set(err, -EINVAL, "token_embd.weight must be [vocab <= %u, hidden]", SKV_MAX_VOCAB);
	h->vocab = (uint32_t)emb->ne[1];
	if ((r = skv_gguf_get_int(g, "llama.vocab_size", 1, SKV_MAX_VOCAB, &v, err)) == 0 && v != h->vocab)
		return skv_err_set(err, -EINVAL, "llama.vocab_size %lld differs from token_embd.weight's %u rows",
				   (long long)v, h->vocab);
	h->tied = !skv_gguf_find_tensor(g, "output.weight");
	const struct skv_gguf_tensor *rf = skv_gguf_find_tensor(g, "rope_freqs.weight");
	return rf ? rope_from_freqs(rf, h, err) : 0;
}

/* Checks the GGUF tensor's shape against the Hugging Face one ([rows, cols]; rows 0 for 1-D). */
static int want(const struct skv_gguf *g, const char *gname, uint64_t rows, uint64_t cols,
		const struct skv_gguf_tensor **ret, bool *used, struct skv_err *err)
{
	const struct skv_gguf_tensor *t = skv_gguf_find_tensor(g, gname);
	if (!t)
		return skv_err_set(err, -EINVAL, "tensor %s is missing", gname);
	uint32_t nd = rows ? 2 : 1;
	if (t->n_dims != nd || t->ne[0] != cols || (rows && t->ne[1] != rows))
		return skv_err_set(err, -EINVAL,
				   "tensor %s has extents [%llu, %llu, %llu, %llu] (ggml order), expected [%llu%s%llu] "
				   "from the model's hyper-parameters",
				   gname, (unsigned long long)t->ne[0], (unsigned long long)t->ne[1],
				   (unsigned long long)t->ne[2], (unsigned long long)t->ne[3], (unsigned long long)cols,
				   rows ? ", " : "", rows ? (unsigned long long)rows : 0ull);
	used[t - g->tensors] = true;
	*ret = t;
	return 0;
}

static int add(const struct skv_gguf *g, struct otensor *v, size_t *n, const char *hfname, const char *gname,
	       uint64_t rows, uint64_t cols, uint32_t perm, bool *used, struct skv_err *err)
{
	struct otensor *t = &v[*n];
	memset(t, 0, sizeof(*t));
	snprintf(t->name, sizeof(t->name), "%s", hfname);
	t->ndim = rows ? 2 : 1;
	t->rows = rows ? rows : 1;
	t->cols = cols;
	t->perm_heads = perm;
	t->n_src = 1;
	(*n)++;
	return want(g, gname, rows, cols, &t->src[0], used, err);
}

static int build_list(const struct skv_gguf *g, const struct hp *h, uint32_t L, uint32_t G, struct otensor *t,
		      size_t *ret_n, struct skv_err *err)
{
	const uint64_t H = h->hidden, I = h->inter, d = h->head_dim, nq = h->heads * d, nk = h->kv_heads * d;
	_cleanup_free_ bool *used = calloc(g->n_tensors + 1, sizeof(bool));
	char hf[96], gg[96];
	size_t n = 0;
	int r;
	if (!used)
		return skv_err_set(err, -ENOMEM, "out of memory");
	if ((r = add(g, t, &n, "model.embed_tokens.weight", "token_embd.weight", h->vocab, H, 0, used, err)) < 0)
		return r;
	static const struct {
		const char *hf, *gg;
		int rows, cols; /* 0 none, 1 hidden, 2 q, 3 kv, 4 inter */
		int perm;	/* 1 heads, 2 kv heads */
	} layer[] = {
		{"input_layernorm.weight", "attn_norm.weight", 0, 1, 0},
		{"self_attn.q_proj.weight", "attn_q.weight", 2, 1, 1},
		{"self_attn.k_proj.weight", "attn_k.weight", 3, 1, 2},
		{"self_attn.v_proj.weight", "attn_v.weight", 3, 1, 0},
		{"self_attn.o_proj.weight", "attn_output.weight", 1, 2, 0},
		{"post_attention_layernorm.weight", "ffn_norm.weight", 0, 1, 0},
		{"mlp.gate_proj.weight", "ffn_gate.weight", 4, 1, 0},
		{"mlp.up_proj.weight", "ffn_up.weight", 4, 1, 0},
		{"mlp.down_proj.weight", "ffn_down.weight", 1, 4, 0},
	};
	const uint64_t dims[] = {0, H, nq, nk, I};
	for (uint32_t i = 0; i < h->layers; i++) {
		size_t base = n; /* this layer's input norm; q, k, v follow */
		for (size_t k = 0; k < SKV_ARRAY_SIZE(layer); k++) {
			snprintf(hf, sizeof(hf), "model.layers.%u.%s", i, layer[k].hf);
			snprintf(gg, sizeof(gg), "blk.%u.%s", i, layer[k].gg);
			uint32_t perm = layer[k].perm == 1 ? h->heads : layer[k].perm == 2 ? h->kv_heads : 0;
			if ((r = add(g, t, &n, hf, gg, dims[layer[k].rows], dims[layer[k].cols], perm, used, err)) < 0)
				return r;
		}
		if (L && i >= L) { /* SwiftKV: copies of the teacher's (see the file's comment) */
			struct otensor *q = &t[n++];
			*q = t[base + 1];
			snprintf(q->name, sizeof(q->name), "model.layers.%u.self_attn.q_proj_swiftkv.weight", i);
			if ((i - L) % G == 0) {
				for (int k = 0; k < 2; k++) {
					struct otensor *kv = &t[n++];
					*kv = t[base + 2 + (size_t)k];
					snprintf(kv->name, sizeof(kv->name), "model.layers.%u.self_attn.%s_proj_swiftkv.weight",
						 i, k ? "v" : "k");
					kv->n_src = SKV_MIN(G, MAX_SRC);
					for (uint32_t m = 1; m < kv->n_src; m++) {
						snprintf(gg, sizeof(gg), "blk.%u.attn_%s.weight", i + m, k ? "v" : "k");
						if ((r = want(g, gg, nk, H, &kv->src[m], used, err)) < 0)
							return r;
					}
				}
			}
		}
	}
	if ((r = add(g, t, &n, "model.norm.weight", "output_norm.weight", 0, H, 0, used, err)) < 0)
		return r;
	if (L) {
		snprintf(gg, sizeof(gg), "blk.%u.attn_norm.weight", L);
		if ((r = add(g, t, &n, "model.norm_swiftkv.weight", gg, 0, H, 0, used, err)) < 0)
			return r;
	}
	if (!h->tied && (r = add(g, t, &n, "lm_head.weight", "output.weight", h->vocab, H, 0, used, err)) < 0)
		return r;
	const struct skv_gguf_tensor *rf = skv_gguf_find_tensor(g, "rope_freqs.weight");
	if (rf) /* read into the config by read_hparams */
		used[rf - g->tensors] = true;
	for (size_t i = 0; i < g->n_tensors; i++)
		if (!used[i])
			return skv_err_set(err, -EOPNOTSUPP, "tensor %s is not part of a llama model skv-import can convert",
					   g->tensors[i].name);
	*ret_n = n;
	return 0;
}

/* ---- JSON files ---- */

#define J_ADD(o, k, v) json_object_object_add(o, k, v)

static int write_configs(const char *dir, const struct hp *h, int64_t bos, int64_t eos, uint32_t L, uint32_t G,
			 enum skv_dtype dtype, struct skv_err *err)
{
	struct skv_model_config c = {
		.version = SKV_MODEL_CONFIG_VERSION,
		.size = sizeof(c),
		.n_layers = h->layers,
		.hidden = h->hidden,
		.intermediate = h->inter,
		.n_heads = h->heads,
		.n_kv_heads = h->kv_heads,
		.head_dim = h->head_dim,
		.vocab = h->vocab,
		.max_position = h->ctx,
		.swiftkv = L > 0,
		.kv_layers = L ? L : h->layers,
		.kv_group = L ? G : 1,
		.tie_word_embeddings = h->tied,
		.rms_eps = (float)h->eps,
		.rope_theta = (float)h->theta,
		.rope_type = h->rope_factor > 0 ? SKV_ROPE_LLAMA3 : SKV_ROPE_DEFAULT,
		.rope_factor = h->rope_factor > 0 ? (float)h->rope_factor : 1.0f,
		.rope_low_freq_factor = (float)h->rope_low,
		.rope_high_freq_factor = (float)h->rope_high,
		.rope_orig_max_position = h->rope_orig,
		.torch_dtype = dtype,
		.bos_id = (int32_t)bos,
		.n_eos = eos >= 0,
		.eos_ids = {(int32_t)eos},
		.gen_top_p = 1.0f, /* greedy by default: the GGUF names no sampling */
	};
	return skv_model_config_write(dir, &c, err);
}

/* tokenizer.ggml.pre -> the Hugging Face pre-tokenizer that splits text as llama.cpp does. */
static const char llama3_split[] = "(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\\r\\n\\p{L}\\p{N}]?\\p{L}+|\\p{N}{1,3}| "
				   "?[^\\s\\p{L}\\p{N}]+[\\r\\n]*|\\s*[\\r\\n]+|\\s+(?!\\S)|\\s+";

static json_object *byte_level(bool prefix, bool trim, bool regex)
{
	json_object *o = json_object_new_object();
	J_ADD(o, "type", json_object_new_string("ByteLevel"));
	J_ADD(o, "add_prefix_space", json_object_new_boolean(prefix));
	J_ADD(o, "trim_offsets", json_object_new_boolean(trim));
	J_ADD(o, "use_regex", json_object_new_boolean(regex));
	return o;
}

static json_object *pre_tokenizer(const char *pre)
{
	json_object *seq = json_object_new_object(), *l = json_object_new_array(), *e = json_object_new_object();
	if (!strcmp(pre, "gpt2")) {
		json_object_put(seq);
		json_object_put(l);
		json_object_put(e);
		return byte_level(false, true, true);
	}
	J_ADD(seq, "type", json_object_new_string("Sequence"));
	if (!strcmp(pre, "llama-bpe")) {
		json_object *pat = json_object_new_object();
		J_ADD(pat, "Regex", json_object_new_string(llama3_split));
		J_ADD(e, "type", json_object_new_string("Split"));
		J_ADD(e, "pattern", pat);
		J_ADD(e, "behavior", json_object_new_string("Isolated"));
		J_ADD(e, "invert", json_object_new_boolean(0));
		json_object_array_add(l, e);
		json_object_array_add(l, byte_level(false, true, false));
	} else { /* smollm: each digit alone, then GPT-2's split */
		J_ADD(e, "type", json_object_new_string("Digits"));
		J_ADD(e, "individual_digits", json_object_new_boolean(1));
		json_object_array_add(l, e);
		json_object_array_add(l, byte_level(false, true, true));
	}
	J_ADD(seq, "pretokenizers", l);
	return seq;
}

static json_object *str_obj(const struct skv_gguf_str *s) { return json_object_new_string_len(s->p, (int)s->len); }

static int write_tokenizer(const struct skv_gguf *g, const char *dir, const struct hp *h, int64_t *ret_bos,
			   int64_t *ret_eos, struct skv_err *err)
{
	struct skv_gguf_str model, pre = {"gpt2", 4}, tmpl = {0};
	const struct skv_gguf_kv *tokens = skv_gguf_find_kv(g, "tokenizer.ggml.tokens"),
				 *types = skv_gguf_find_kv(g, "tokenizer.ggml.token_type"),
				 *merges = skv_gguf_find_kv(g, "tokenizer.ggml.merges");
	int r;
	if ((r = skv_gguf_get_str(g, "tokenizer.ggml.model", &model, err)) == -ENOENT)
		return skv_err_set(err, -EINVAL, "tokenizer.ggml.model is missing");
	if (r < 0)
		return r;
	if (model.len != 4 || memcmp(model.p, "gpt2", 4))
		return skv_err_set(err, -EOPNOTSUPP,
				   "tokenizer.ggml.model '%.*s' is not supported (byte-level BPE, 'gpt2', is)",
				   (int)SKV_MIN(model.len, 64), model.p);
	if ((r = skv_gguf_get_str(g, "tokenizer.ggml.pre", &pre, err)) < 0 && r != -ENOENT)
		return r;
	char pname[64];
	snprintf(pname, sizeof(pname), "%.*s", (int)SKV_MIN(pre.len, 63), pre.p);
	static const char *const known_pre[] = {"gpt2", "llama-bpe", "smollm", "default"};
	bool known = false;
	for (size_t i = 0; i < SKV_ARRAY_SIZE(known_pre); i++)
		known |= pre.len == strlen(known_pre[i]) && !memcmp(pre.p, known_pre[i], pre.len);
	if (!known)
		return skv_err_set(err, -EOPNOTSUPP,
				   "tokenizer.ggml.pre '%.*s' is not a pre-tokenizer skv-import knows (llama-bpe, smollm, "
				   "gpt2, default)",
				   (int)SKV_MIN(pre.len, 64), pre.p);
	if (!strcmp(pname, "default"))
		snprintf(pname, sizeof(pname), "gpt2");
	if (!tokens || tokens->type != SKV_GGUF_V_ARRAY || tokens->arr_type != SKV_GGUF_V_STRING)
		return skv_err_set(err, -EINVAL, "tokenizer.ggml.tokens must be an array of strings");
	if (tokens->n != h->vocab)
		return skv_err_set(err, -EINVAL, "tokenizer.ggml.tokens holds %llu tokens, the model's vocabulary %u",
				   (unsigned long long)tokens->n, h->vocab);
	if (types && (types->type != SKV_GGUF_V_ARRAY || types->arr_type == SKV_GGUF_V_STRING ||
		      types->arr_type == SKV_GGUF_V_F32 || types->arr_type == SKV_GGUF_V_F64 || types->n != tokens->n))
		return skv_err_set(err, -EINVAL, "tokenizer.ggml.token_type must be %llu integers",
				   (unsigned long long)tokens->n);
	if (!merges || merges->type != SKV_GGUF_V_ARRAY || merges->arr_type != SKV_GGUF_V_STRING)
		return skv_err_set(err, -EINVAL, "tokenizer.ggml.merges must be an array of strings");

	json_object *root = json_object_new_object(), *added = json_object_new_array(), *m = json_object_new_object();
	json_object *vocab = json_object_new_object(), *ml = json_object_new_array();
	_cleanup_json_ json_object *own_root = root, *own_added = added, *own_m = m;
	J_ADD(m, "vocab", vocab);
	J_ADD(m, "merges", ml);
	for (uint64_t i = 0; i < tokens->n; i++) {
		const struct skv_gguf_str *s = &tokens->strs[i];
		if (s->len == 0 || memchr(s->p, '\0', s->len) || skv_utf8_valid_prefix(s->p, s->len) != s->len)
			return skv_err_set(err, -EINVAL, "tokenizer.ggml.tokens[%llu] is empty, holds a NUL byte or is not "
					   "UTF-8", (unsigned long long)i);
		_cleanup_free_ char *key = strndup(s->p, s->len);
		if (!key)
			return skv_err_set(err, -ENOMEM, "out of memory");
		if (json_object_object_get_ex(vocab, key, NULL))
			return skv_err_set(err, -EINVAL, "tokenizer.ggml.tokens[%llu] '%.64s' appears twice",
					   (unsigned long long)i, key);
		json_object_object_add(vocab, key, json_object_new_int64((int64_t)i));
		int64_t ty = types ? skv_gguf_arr_int(types, i) : 1;
		if (ty == 3 || ty == 4) { /* CONTROL: a special token; USER_DEFINED: an added one */
			json_object *a = json_object_new_object();
			J_ADD(a, "id", json_object_new_int64((int64_t)i));
			J_ADD(a, "content", str_obj(s));
			J_ADD(a, "single_word", json_object_new_boolean(0));
			J_ADD(a, "lstrip", json_object_new_boolean(0));
			J_ADD(a, "rstrip", json_object_new_boolean(0));
			J_ADD(a, "normalized", json_object_new_boolean(ty == 4));
			J_ADD(a, "special", json_object_new_boolean(ty == 3));
			json_object_array_add(added, a);
		}
	}
	for (uint64_t i = 0; i < merges->n; i++) {
		const struct skv_gguf_str *s = &merges->strs[i];
		const char *sp = memchr(s->p, ' ', s->len);
		if (!sp || sp == s->p || (uint64_t)(sp - s->p) + 1 >= s->len || memchr(sp + 1, ' ', s->len - (size_t)(sp - s->p) - 1))
			return skv_err_set(err, -EINVAL, "tokenizer.ggml.merges[%llu] is not two tokens separated by one space",
					   (unsigned long long)i);
		_cleanup_free_ char *a = strndup(s->p, (size_t)(sp - s->p)),
				    *b = strndup(sp + 1, s->len - (size_t)(sp - s->p) - 1);
		if (!a || !b)
			return skv_err_set(err, -ENOMEM, "out of memory");
		if (!json_object_object_get_ex(vocab, a, NULL) || !json_object_object_get_ex(vocab, b, NULL))
			return skv_err_set(err, -EINVAL, "tokenizer.ggml.merges[%llu] '%.64s %.64s' names a token not in the "
					   "vocabulary", (unsigned long long)i, a, b);
		json_object *pair = json_object_new_array();
		json_object_array_add(pair, json_object_new_string(a));
		json_object_array_add(pair, json_object_new_string(b));
		json_object_array_add(ml, pair);
	}
	int64_t bos = -1, eos = -1, pad = -1, unk = -1;
	bool add_bos = false;
	struct {
		const char *key;
		int64_t *v;
	} ids[] = {{"tokenizer.ggml.bos_token_id", &bos},
		   {"tokenizer.ggml.eos_token_id", &eos},
		   {"tokenizer.ggml.padding_token_id", &pad},
		   {"tokenizer.ggml.unknown_token_id", &unk}};
	for (size_t i = 0; i < SKV_ARRAY_SIZE(ids); i++)
		if ((r = skv_gguf_get_int(g, ids[i].key, 0, (int64_t)h->vocab - 1, ids[i].v, err)) < 0 && r != -ENOENT)
			return r;
	if ((r = skv_gguf_get_bool(g, "tokenizer.ggml.add_bos_token", &add_bos, err)) < 0 && r != -ENOENT)
		return r;
	if (add_bos && bos < 0)
		return skv_err_set(err, -EINVAL, "tokenizer.ggml.add_bos_token is set without tokenizer.ggml.bos_token_id");
	if ((r = skv_gguf_get_str(g, "tokenizer.chat_template", &tmpl, err)) < 0 && r != -ENOENT)
		return r;

	J_ADD(root, "version", json_object_new_string("1.0"));
	J_ADD(root, "truncation", NULL);
	J_ADD(root, "padding", NULL);
	J_ADD(root, "added_tokens", SKV_TAKE_PTR(own_added));
	J_ADD(root, "normalizer", NULL);
	J_ADD(root, "pre_tokenizer", pre_tokenizer(pname));
	if (add_bos) { /* Llama-3's: BOS before each sequence */
		json_object *p = json_object_new_object(), *single = json_object_new_array(), *pair = json_object_new_array();
		json_object *sp = json_object_new_object(), *st = json_object_new_object(), *idl = json_object_new_array(),
			    *tl = json_object_new_array();
		const struct skv_gguf_str *bs = &tokens->strs[bos];
		for (int k = 0; k < 4; k++) {
			json_object *piece = json_object_new_object(), *in = json_object_new_object();
			if (k % 2 == 0) {
				J_ADD(in, "id", str_obj(bs));
				J_ADD(in, "type_id", json_object_new_int(k / 2));
				J_ADD(piece, "SpecialToken", in);
			} else {
				J_ADD(in, "id", json_object_new_string(k == 1 ? "A" : "B"));
				J_ADD(in, "type_id", json_object_new_int(k / 2));
				J_ADD(piece, "Sequence", in);
			}
			if (k < 2)
				json_object_array_add(single, json_object_get(piece));
			json_object_array_add(pair, piece);
		}
		J_ADD(p, "type", json_object_new_string("TemplateProcessing"));
		J_ADD(p, "single", single);
		J_ADD(p, "pair", pair);
		json_object_array_add(idl, json_object_new_int64(bos));
		json_object_array_add(tl, str_obj(bs));
		J_ADD(st, "id", str_obj(bs));
		J_ADD(st, "ids", idl);
		J_ADD(st, "tokens", tl);
		_cleanup_free_ char *bkey = strndup(bs->p, bs->len);
		if (!bkey)
			return skv_err_set(err, -ENOMEM, "out of memory");
		J_ADD(sp, bkey, st);
		J_ADD(p, "special_tokens", sp);
		J_ADD(root, "post_processor", p);
	} else {
		J_ADD(root, "post_processor", byte_level(true, false, true));
	}
	J_ADD(root, "decoder", byte_level(true, true, true));
	J_ADD(m, "type", json_object_new_string("BPE"));
	J_ADD(m, "dropout", NULL);
	J_ADD(m, "unk_token", NULL);
	J_ADD(m, "continuing_subword_prefix", NULL);
	J_ADD(m, "end_of_word_suffix", NULL);
	J_ADD(m, "fuse_unk", json_object_new_boolean(0));
	J_ADD(m, "byte_fallback", json_object_new_boolean(0));
	J_ADD(m, "ignore_merges", json_object_new_boolean(0));
	J_ADD(root, "model", SKV_TAKE_PTR(own_m));
	own_root = NULL;
	if ((r = skv_json_write(dir, "tokenizer.json", root, err)) < 0)
		return r;

	json_object *tc = json_object_new_object(), *dec = json_object_new_object();
	for (uint64_t i = 0; i < tokens->n; i++) {
		int64_t ty = types ? skv_gguf_arr_int(types, i) : 1;
		if (ty != 3 && ty != 4)
			continue;
		char idk[24];
		json_object *a = json_object_new_object();
		snprintf(idk, sizeof(idk), "%llu", (unsigned long long)i);
		J_ADD(a, "content", str_obj(&tokens->strs[i]));
		J_ADD(a, "lstrip", json_object_new_boolean(0));
		J_ADD(a, "normalized", json_object_new_boolean(ty == 4));
		J_ADD(a, "rstrip", json_object_new_boolean(0));
		J_ADD(a, "single_word", json_object_new_boolean(0));
		J_ADD(a, "special", json_object_new_boolean(ty == 3));
		J_ADD(dec, idk, a);
	}
	J_ADD(tc, "add_bos_token", json_object_new_boolean(add_bos));
	J_ADD(tc, "add_prefix_space", json_object_new_boolean(0));
	J_ADD(tc, "added_tokens_decoder", dec);
	const struct {
		const char *key;
		int64_t id;
	} named[] = {{"bos_token", bos}, {"eos_token", eos}, {"pad_token", pad}, {"unk_token", unk}};
	for (size_t i = 0; i < SKV_ARRAY_SIZE(named); i++)
		J_ADD(tc, named[i].key, named[i].id >= 0 ? str_obj(&tokens->strs[named[i].id]) : NULL);
	if (tmpl.p)
		J_ADD(tc, "chat_template", str_obj(&tmpl));
	J_ADD(tc, "clean_up_tokenization_spaces", json_object_new_boolean(0));
	J_ADD(tc, "model_max_length", json_object_new_int64(h->ctx));
	J_ADD(tc, "tokenizer_class", json_object_new_string("PreTrainedTokenizerFast"));
	if ((r = skv_json_write(dir, "tokenizer_config.json", tc, err)) < 0)
		return r;
	*ret_bos = bos;
	*ret_eos = eos;
	return 0;
}

static void usage(FILE *f)
{
	fprintf(f, "usage: skv-import [options] GGUF OUTDIR\n"
		   "  --dtype bf16|f16|f32     storage dtype of the safetensors, default bf16\n"
		   "  --swiftkv-layers L       add SwiftKV tensors (copies of the teacher's): a llama_swiftkv\n"
		   "                           checkpoint with num_key_value_layers = L\n"
		   "  --group G                key_value_group_size with --swiftkv-layers, default 1\n"
		   "  --max-shard-size BYTES   shard above this size (default 5000000000)\n"
		   "  --force                  write into an existing OUTDIR\n"
		   "  -h, --help               this text\n"
		   "  --version                the version, then exit\n");
}

static void remove_outputs(const char *dir)
{
	static const char *const files[] = {"config.json", "generation_config.json", "tokenizer.json",
					    "tokenizer_config.json"};
	char p[4096];
	for (size_t i = 0; i < SKV_ARRAY_SIZE(files); i++) {
		snprintf(p, sizeof(p), "%s/%s", dir, files[i]);
		unlink(p);
	}
	skv_st_remove_checkpoint(dir);
	rmdir(dir);
}

static void unmap(void *p, size_t n)
{
	if (p && p != MAP_FAILED)
		munmap(p, n);
}

int main(int argc, char **argv)
{
	static const struct option opts[] = {
		{"dtype", required_argument, NULL, 'd'},	  {"swiftkv-layers", required_argument, NULL, 'L'},
		{"group", required_argument, NULL, 'G'},	  {"max-shard-size", required_argument, NULL, 'm'},
		{"force", no_argument, NULL, 'f'},		  {"help", no_argument, NULL, 'h'},
		{"version", no_argument, NULL, 'V'},	  {0},
	};
	const char *dtype_name = "bf16";
	int64_t L = 0, G = 1, max_shard = 5000000000ll;
	bool force = false;
	struct skv_err err = {0};
	int c, li = 0, r;

	while ((c = getopt_long(argc, argv, "h", opts, &li)) != -1) {
		int pr = 0;
		switch (c) {
		case 'd':
			dtype_name = optarg;
			break;
		case 'L':
			pr = skv_parse_i64(optarg, 1, SKV_MAX_LAYERS, &L);
			break;
		case 'G':
			pr = skv_parse_i64(optarg, 1, MAX_SRC, &G);
			break;
		case 'm':
			pr = skv_parse_i64(optarg, 1 << 20, INT64_MAX, &max_shard);
			break;
		case 'f':
			force = true;
			break;
		case 'h':
			usage(stdout);
			return 0;
		case 'V':
			skv_version_print("skv-import");
			return 0;
		default:
			usage(stderr);
			return 2;
		}
		if (pr < 0) {
			fprintf(stderr, "skv-import: --%s: invalid value '%s'\n", opts[li].name, optarg);
			return 2;
		}
	}
	if (optind != argc - 2) {
		usage(stderr);
		return 2;
	}
	enum skv_st_dtype st;
	enum skv_dtype dt;
	if (!strcmp(dtype_name, "bf16"))
		st = SKV_ST_BF16, dt = SKV_DTYPE_BF16;
	else if (!strcmp(dtype_name, "f16"))
		st = SKV_ST_F16, dt = SKV_DTYPE_F16;
	else if (!strcmp(dtype_name, "f32"))
		st = SKV_ST_F32, dt = SKV_DTYPE_F32;
	else {
		fprintf(stderr, "skv-import: --dtype must be bf16, f16 or f32, not '%s'\n", dtype_name);
		return 2;
	}
	const char *in = argv[optind], *out = argv[optind + 1];

	_cleanup_close_ int fd = open(in, O_RDONLY | O_CLOEXEC);
	struct stat sb;
	if (fd < 0 || fstat(fd, &sb) < 0) {
		fprintf(stderr, "skv-import: %s: %s\n", in, strerror(errno));
		return 1;
	}
	size_t size = (size_t)sb.st_size;
	void *map = size ? mmap(NULL, size, PROT_READ, MAP_PRIVATE, fd, 0) : NULL;
	if (size && map == MAP_FAILED) {
		fprintf(stderr, "skv-import: %s: mmap: %s\n", in, strerror(errno));
		return 1;
	}
	struct skv_gguf *g = NULL;
	struct hp h = {0};
	_cleanup_free_ struct otensor *t = NULL;
	size_t n = 0, shards = 0;
	uint64_t total = 0;
	int64_t bos = -1, eos = -1;
	bool created = false;
	int rc = 1;

	if ((r = skv_gguf_parse(map, size, in, &g, &err)) < 0)
		goto fail;
	if ((r = read_hparams(g, &h, &err)) < 0)
		goto fail_in;
	if (L && (L >= h.layers || (h.layers - L) % G != 0)) {
		fprintf(stderr, "skv-import: --swiftkv-layers %lld with --group %lld: need L < %u layers and (N - L) a "
				"multiple of G\n", (long long)L, (long long)G, h.layers);
		rc = 2;
		goto out;
	}
	if (!(t = calloc(8 + (size_t)h.layers * 12, sizeof(*t)))) {
		r = skv_err_set(&err, -ENOMEM, "out of memory");
		goto fail;
	}
	if ((r = build_list(g, &h, (uint32_t)L, (uint32_t)G, t, &n, &err)) < 0)
		goto fail_in;
	if (mkdir(out, 0755) == 0)
		created = true;
	else if (!(errno == EEXIST && force)) {
		fprintf(stderr, "skv-import: %s: %s%s\n", out, strerror(errno),
			errno == EEXIST ? " (use --force to overwrite)" : "");
		goto out;
	}
	if ((r = write_tokenizer(g, out, &h, &bos, &eos, &err)) < 0)
		goto fail_in;
	{
		_cleanup_free_ struct skv_st_out_tensor *ot = calloc(n, sizeof(*ot));
		if (!ot) {
			r = skv_err_set(&err, -ENOMEM, "out of memory");
			goto fail;
		}
		for (size_t i = 0; i < n; i++) {
			ot[i] = (struct skv_st_out_tensor){.name = t[i].name, .dtype = st, .ndim = t[i].ndim};
			ot[i].shape[0] = t[i].ndim == 2 ? t[i].rows : t[i].cols;
			ot[i].shape[1] = t[i].cols;
		}
		struct job job = {.t = t, .dtype = dt};
		if ((r = skv_st_write_sharded(out, ot, n, (uint64_t)max_shard, "{\"format\":\"pt\"}", fill, &job, &shards,
					      &total, &err)) < 0)
			goto fail;
	}
	if ((r = write_configs(out, &h, bos, eos, (uint32_t)L, (uint32_t)G, dt, &err)) < 0)
		goto fail;
	printf("%s: llama, %u layers%s, %zu tensors, %.2f GB %s in %zu file%s\n", out, h.layers, L ? " (SwiftKV)" : "",
	       n, (double)total / 1e9, dtype_name, shards, shards > 1 ? "s" : "");
	rc = 0;
	goto out;
fail_in:
	fprintf(stderr, "skv-import: %s: %s\n", in, err.msg);
	goto out;
fail:
	fprintf(stderr, "skv-import: %s\n", err.msg);
out:
	if (rc == 1 && created) /* a refused import leaves no half-written directory behind */
		remove_outputs(out);
	skv_gguf_free(g);
	unmap(map, size);
	return rc;
}
