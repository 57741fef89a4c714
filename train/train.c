/* train.c: what the float and double models share: the checks of L and G, the list of trainable
 * tensors, AdamW and its schedule, and writing the student as a llama_swiftkv checkpoint. */
#include <errno.h>
#include <fcntl.h>
#include <json-c/json.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "skv-json.h"
#include "train.h"

int skv_tm_check(const struct skv_model_config *c, uint32_t L, uint32_t G, struct skv_err *err)
{
	if (c->swiftkv)
		return skv_err_set(err, -EINVAL,
				   "the teacher is already a SwiftKV checkpoint (model_type llama_swiftkv, "
				   "num_key_value_layers %u): distil from the plain llama checkpoint, or pass "
				   "--continue to distil this one further",
				   c->kv_layers);
	if (L < 1 || L >= c->n_layers)
		return skv_err_set(err, -ERANGE, "--swiftkv-layers %u: must be in 1..%u (the teacher has %u layers)", L,
				   c->n_layers - 1, c->n_layers);
	if (G < 1 || G > c->n_layers - L)
		return skv_err_set(err, -ERANGE, "--group %u: must be in 1..%u (N - L = %u - %u)", G, c->n_layers - L,
				   c->n_layers, L);
	if ((c->n_layers - L) % G)
		return skv_err_set(err, -EINVAL, "--group %u: must divide N - L = %u - %u = %u", G, c->n_layers, L,
				   c->n_layers - L);
	if (c->head_dim % 2)
		return skv_err_set(err, -EINVAL, "head_dim %u: must be even for RoPE", c->head_dim);
	return 0;
}

int skv_tm_tensors(const struct skv_tm_dims *dm, struct skv_tm_tensor **ret, size_t *ret_n)
{
	const uint64_t H = dm->H, qd = (uint64_t)dm->nh * dm->d, kd = (uint64_t)dm->nkv * dm->d;
	size_t cap = 1 + (size_t)(dm->N - dm->L) * 2 + (size_t)dm->F * 4, n = 0, off = 0;
	struct skv_tm_tensor *t = calloc(cap, sizeof(*t));
	if (!t)
		return -ENOMEM;
#define ADD(rows, cols, ...)                                                                                   \
	do {                                                                                                   \
		struct skv_tm_tensor *e = &t[n++];                                                             \
		snprintf(e->name, sizeof(e->name), __VA_ARGS__);                                               \
		e->ndim = (rows) ? 2 : 1;                                                                      \
		e->shape[0] = (rows) ? (rows) : (cols);                                                        \
		e->shape[1] = (rows) ? (cols) : 0;                                                             \
		e->numel = (size_t)((rows) ? (rows) * (cols) : (cols));                                        \
		e->offset = off;                                                                               \
		off += e->numel;                                                                               \
	} while (0)
	ADD(0, H, "model.norm_swiftkv.weight");
	for (uint32_t i = dm->L; i < dm->N; i++) {
		ADD(qd, H, "model.layers.%u.self_attn.q_proj_swiftkv.weight", i);
		if (dm->abias)
			ADD(0, qd, "model.layers.%u.self_attn.q_proj_swiftkv.bias", i);
		if ((i - dm->L) % dm->G)
			continue;
		ADD(kd, H, "model.layers.%u.self_attn.k_proj_swiftkv.weight", i);
		if (dm->abias)
			ADD(0, kd, "model.layers.%u.self_attn.k_proj_swiftkv.bias", i);
		ADD(kd, H, "model.layers.%u.self_attn.v_proj_swiftkv.weight", i);
		if (dm->abias)
			ADD(0, kd, "model.layers.%u.self_attn.v_proj_swiftkv.bias", i);
	}
#undef ADD
	*ret = t;
	*ret_n = n;
	return 0;
}

void skv_adamw_step(float *param, const float *grad, float *m, float *v, size_t n, uint64_t step, double lr,
		    double beta1, double beta2, double eps)
{
	const double c1 = 1 - pow(beta1, (double)step), c2 = 1 - pow(beta2, (double)step);
	for (size_t i = 0; i < n; i++) {
		m[i] = (float)(beta1 * m[i] + (1 - beta1) * grad[i]);
		v[i] = (float)(beta2 * v[i] + (1 - beta2) * (double)grad[i] * grad[i]);
		param[i] -= (float)(lr * (m[i] / c1) / (sqrt(v[i] / c2) + eps));
	}
}

double skv_lr_at(uint64_t step, uint64_t total, double lr)
{
	uint64_t warm = (total * 5 + 99) / 100;
	if (step < warm)
		return lr * (double)(step + 1) / (double)warm;
	if (total <= warm)
		return lr;
	return lr * (double)(total - step) / (double)(total - warm);
}

/* Copies src to dst (a new file), byte for byte. */
static int copy_file(const char *src, const char *dst, bool optional, struct skv_err *err)
{
	_cleanup_close_ int in = open(src, O_RDONLY | O_CLOEXEC);
	if (in < 0)
		return optional && errno == ENOENT ? 0 : skv_err_set(err, -errno, "%s: %s", src, strerror(errno));
	_cleanup_close_ int out = open(dst, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
	if (out < 0)
		return skv_err_set(err, -errno, "%s: %s", dst, strerror(errno));
	for (bool plain = false;;) {
		ssize_t k = plain ? 0 : copy_file_range(in, NULL, out, NULL, 1 << 30, 0);
		if (k < 0 && !plain && (errno == EXDEV || errno == ENOSYS || errno == EINVAL || errno == EOPNOTSUPP)) {
			plain = true; /* a kernel or file system without it: read and write */
			continue;
		}
		if (plain) {
			static char buf[1 << 16];
			k = read(in, buf, sizeof(buf));
			for (ssize_t w = 0, c; k > 0 && w < k; w += c)
				if ((c = write(out, buf + w, (size_t)(k - w))) < 0)
					return skv_err_set(err, -errno, "%s: %s", dst, strerror(errno));
		}
		if (k < 0)
			return skv_err_set(err, -errno, "%s -> %s: %s", src, dst, strerror(errno));
		if (k == 0)
			return 0;
	}
}

struct fill_ctx {
	const struct skv_tm_tensor *t;
	const float *param;
	enum skv_dtype dt;
};

static int fill_student(void *userdata, size_t index, void *dst, size_t nbytes, struct skv_err *err)
{
	const struct fill_ctx *c = userdata;
	const struct skv_tm_tensor *t = &c->t[index];
	(void)err;
	(void)nbytes;
	for (size_t i = 0; i < t->numel; i++)
		skv_store_f32(dst, c->dt, i, c->param[t->offset + i]);
	return 0;
}

bool skv_tm_is_student_tensor(const char *name)
{
	return !strcmp(name, "model.norm_swiftkv.weight") || strstr(name, "_proj_swiftkv.");
}

/* skv_st_write's fill: a tensor's bytes as the teacher's file holds them */
static int fill_copy(void *userdata, size_t index, void *dst, size_t nbytes, struct skv_err *err)
{
	const struct skv_st_tensor *const *from = userdata;
	(void)err;
	memcpy(dst, from[index]->data, nbytes);
	return 0;
}

int skv_tm_write_student(const struct skv_checkpoint *teacher, const struct skv_tm_dims *dm, const float *param,
			 const char *out, struct skv_err *err)
{
	char src[4096], dst[4096];
	int r;
	_cleanup_free_ struct skv_tm_tensor *t = NULL;
	size_t n;
	if (skv_tm_tensors(dm, &t, &n) < 0)
		return skv_err_set(err, -ENOMEM, "out of memory");
	const struct skv_st_tensor *q = skv_checkpoint_find(teacher, "model.layers.0.self_attn.q_proj.weight");
	enum skv_dtype dt;
	if (!q || skv_st_dtype_to_skv(q->dtype, &dt) < 0)
		return skv_err_set(err, -EINVAL, "%s: model.layers.0.self_attn.q_proj.weight missing or not bf16/fp16/fp32",
				   teacher->dir);
	const char *new_file = "model-swiftkv.safetensors";
	/* the teacher's tensors: its files, byte for byte; a SwiftKV teacher (a distillation
	 * continued) loses its old student tensors: a file of only those is left out, a file that
	 * mixes them is written again with the others' bytes */
	for (size_t i = 0; i < teacher->n_files; i++) {
		const struct skv_st_header *h = teacher->files[i].header;
		size_t n_student = 0;
		for (size_t k = 0; k < h->n; k++)
			n_student += skv_tm_is_student_tensor(h->tensors[k].name);
		if (n_student == h->n)
			continue;
		if (!strcmp(teacher->files[i].name, new_file))
			return skv_err_set(err, -EEXIST, "%s: its %s holds teacher tensors", teacher->dir, new_file);
		snprintf(src, sizeof(src), "%s/%s", teacher->dir, teacher->files[i].name);
		snprintf(dst, sizeof(dst), "%s/%s", out, teacher->files[i].name);
		if (!n_student) {
			if ((r = copy_file(src, dst, false, err)) < 0)
				return r;
			continue;
		}
		_cleanup_free_ struct skv_st_out_tensor *keep = calloc(h->n, sizeof(*keep));
		_cleanup_free_ const struct skv_st_tensor **from = calloc(h->n, sizeof(*from));
		size_t nk = 0;
		if (!keep || !from)
			return skv_err_set(err, -ENOMEM, "out of memory");
		for (size_t k = 0; k < h->n; k++) {
			const struct skv_st_tensor *x = &h->tensors[k];
			if (skv_tm_is_student_tensor(x->name))
				continue;
			keep[nk] = (struct skv_st_out_tensor){.name = x->name, .dtype = x->dtype, .ndim = x->ndim};
			memcpy(keep[nk].shape, x->shape, sizeof(x->shape));
			from[nk++] = x;
		}
		if ((r = skv_st_write(dst, keep, nk, "{\"format\":\"pt\"}", fill_copy, from, err)) < 0)
			return r;
	}
	/* the student's */
	_cleanup_free_ struct skv_st_out_tensor *ot = calloc(n, sizeof(*ot));
	if (!ot)
		return skv_err_set(err, -ENOMEM, "out of memory");
	for (size_t i = 0; i < n; i++) {
		ot[i] = (struct skv_st_out_tensor){.name = t[i].name, .dtype = q->dtype, .ndim = t[i].ndim};
		ot[i].shape[0] = t[i].shape[0];
		ot[i].shape[1] = t[i].shape[1];
	}
	struct fill_ctx fc = {.t = t, .param = param, .dt = dt};
	snprintf(dst, sizeof(dst), "%s/%s", out, new_file);
	if ((r = skv_st_write(dst, ot, n, "{\"format\":\"pt\"}", fill_student, &fc, err)) < 0)
		return r;

	/* the index: every tensor by name */
	json_object *index = json_object_new_object(), *meta = json_object_new_object(), *map = json_object_new_object();
	uint64_t total = 0;
	for (size_t i = 0; i < teacher->n_tensors; i++) {
		const struct skv_st_tensor *x = teacher->sorted[i];
		if (skv_tm_is_student_tensor(x->name))
			continue;
		json_object_object_add(map, x->name, json_object_new_string(x->file));
		total += x->end - x->begin;
	}
	for (size_t i = 0; i < n; i++) {
		json_object_object_add(map, t[i].name, json_object_new_string(new_file));
		total += t[i].numel * skv_dtype_size(dt);
	}
	json_object_object_add(meta, "total_size", json_object_new_int64((int64_t)total));
	json_object_object_add(index, "metadata", meta);
	json_object_object_add(index, "weight_map", map);
	snprintf(dst, sizeof(dst), "%s/model.safetensors.index.json", out);
	const int jf = JSON_C_TO_STRING_PRETTY | JSON_C_TO_STRING_SPACED | JSON_C_TO_STRING_NOSLASHESCAPE;
	r = json_object_to_file_ext(dst, index, jf) < 0 ? skv_err_set(err, -EIO, "%s: cannot write", dst) : 0;
	json_object_put(index);
	if (r < 0)
		return r;

	/* config.json: the teacher's, made llama_swiftkv (Snowflake's keys) */
	snprintf(src, sizeof(src), "%s/config.json", teacher->dir);
	_cleanup_free_ char *text = NULL;
	size_t len;
	if ((r = skv_read_file(src, 16 << 20, &text, &len, err)) < 0)
		return r;
	_cleanup_json_ json_object *cfg = NULL;
	if ((r = skv_json_parse(text, len, src, &cfg, err)) < 0)
		return r;
	json_object *arch = json_object_new_array();
	json_object_array_add(arch, json_object_new_string("LlamaSwiftKVForCausalLM"));
	json_object_object_add(cfg, "architectures", arch);
	json_object_object_add(cfg, "model_type", json_object_new_string("llama_swiftkv"));
	json_object_object_add(cfg, "num_key_value_layers", json_object_new_int((int)dm->L));
	json_object_object_add(cfg, "key_value_group_size", json_object_new_int((int)dm->G));
	json_object_object_add(cfg, "swiftkv", json_object_new_boolean(1));
	snprintf(dst, sizeof(dst), "%s/config.json", out);
	if (json_object_to_file_ext(dst, cfg, jf) < 0)
		return skv_err_set(err, -EIO, "%s: cannot write", dst);

	static const char *const extra[] = {"tokenizer.json", "tokenizer_config.json", "special_tokens_map.json",
					    "generation_config.json"};
	for (size_t i = 0; i < SKV_ARRAY_SIZE(extra); i++) {
		snprintf(src, sizeof(src), "%s/%s", teacher->dir, extra[i]);
		snprintf(dst, sizeof(dst), "%s/%s", out, extra[i]);
		if ((r = copy_file(src, dst, true, err)) < 0)
			return r;
	}
	return 0;
}
