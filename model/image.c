/* image.c: plan, fill and check the engine's weights image (see image.h). */
#include "image.h"

#include <stdio.h>
#include <string.h>

void skv_image_plan_free(struct skv_image_plan *p)
{
	if (!p)
		return;
	if (p->sources)
		for (uint32_t i = 0; i < p->header.n_entries; i++)
			free(p->sources[i].src);
	free(p->sources);
	free(p->entries);
	free(p);
}

struct planner {
	const struct skv_checkpoint *c;
	struct skv_image_plan *p;
	uint32_t cap;
	uint64_t off;
	struct skv_err *err;
};

/* Checks one checkpoint tensor against the shape the engine needs. */
static int need_tensor(struct planner *pl, const char *name, uint64_t rows, uint64_t cols, bool vector,
		       const struct skv_st_tensor **ret)
{
	const struct skv_st_tensor *t = skv_checkpoint_find(pl->c, name);
	enum skv_dtype dt;

	if (!t)
		return skv_err_set(pl->err, -ENOENT, "%s: tensor '%s' is missing", pl->c->dir, name);
	if (skv_st_dtype_to_skv(t->dtype, &dt) < 0)
		return skv_err_set(pl->err, -EOPNOTSUPP, "%s: tensor '%s' (in %s) has dtype %s; BF16, F16 and F32 are supported",
				   pl->c->dir, name, t->file, skv_st_dtype_name(t->dtype));
	if (vector) {
		if (t->ndim != 1 || t->shape[0] != cols)
			return skv_err_set(pl->err, -EINVAL, "%s: tensor '%s' (in %s) must have shape [%llu]", pl->c->dir,
					   name, t->file, (unsigned long long)cols);
	} else if (t->ndim != 2 || t->shape[0] != rows || t->shape[1] != cols) {
		char got[64] = "";
		for (uint32_t d = 0; d < t->ndim && d < 4; d++)
			snprintf(got + strlen(got), sizeof(got) - strlen(got), "%s%llu", d ? ", " : "",
				 (unsigned long long)t->shape[d]);
		return skv_err_set(pl->err, -EINVAL, "%s: tensor '%s' (in %s) has shape [%s], expected [%llu, %llu]",
				   pl->c->dir, name, t->file, got, (unsigned long long)rows, (unsigned long long)cols);
	}
	*ret = t;
	return 0;
}

/* Adds an entry made of the named tensors stacked in order: matrices of rows_each[i] x cols rows,
 * or (vector) vectors of rows_each[i] values concatenated into one row. */
static int add_entry(struct planner *pl, enum skv_wkind kind, uint32_t layer, uint64_t cols, bool vector,
		     uint32_t n, const char *const *names, const uint64_t *rows_each)
{
	struct skv_image_plan *p = pl->p;
	struct skv_image_entry *e;
	uint64_t total = 0;
	int r;

	if (p->header.n_entries == pl->cap) {
		uint32_t ncap = pl->cap ? 2 * pl->cap : 64;
		void *a = realloc(p->entries, ncap * sizeof(*p->entries));
		if (!a)
			return skv_err_set(pl->err, -ENOMEM, "out of memory");
		p->entries = a;
		a = realloc(p->sources, ncap * sizeof(*p->sources));
		if (!a)
			return skv_err_set(pl->err, -ENOMEM, "out of memory");
		p->sources = a;
		pl->cap = ncap;
	}
	struct skv_image_src_list *sl = &p->sources[p->header.n_entries];
	sl->n = 0;
	sl->src = calloc(n, sizeof(*sl->src));
	if (!sl->src)
		return skv_err_set(pl->err, -ENOMEM, "out of memory");
	p->header.n_entries++; /* so that plan_free frees sl->src on failure */
	for (uint32_t i = 0; i < n; i++) {
		r = need_tensor(pl, names[i], rows_each[i], vector ? rows_each[i] : cols, vector, &sl->src[i]);
		if (r < 0)
			return r;
		total += rows_each[i];
		sl->n++;
	}
	e = &p->entries[p->header.n_entries - 1];
	e->kind = kind;
	e->layer = layer;
	e->rows = vector ? 1 : total;
	e->cols = vector ? total : cols;
	e->offset = pl->off;
	e->nbytes = e->rows * e->cols * skv_dtype_size(p->header.dtype);
	pl->off = SKV_ALIGN_UP(pl->off + e->nbytes, SKV_IMAGE_ALIGN);
	return 0;
}

/* One tensor: a matrix [rows, cols], or with vector a vector of cols values. */
static int add1(struct planner *pl, enum skv_wkind kind, uint32_t layer, uint64_t rows, uint64_t cols, bool vector,
		const char *name)
{
	const char *names[1] = {name};
	uint64_t r[1] = {vector ? cols : rows};
	return add_entry(pl, kind, layer, cols, vector, 1, names, r);
}

int skv_image_plan_new(const struct skv_checkpoint *c, enum skv_dtype dtype, bool swiftkv_on,
		       struct skv_image_plan **ret, struct skv_err *err)
{
	const struct skv_model_config *cfg = &c->config;
	struct planner pl = {.c = c, .err = err};
	struct skv_image_plan *p;
	const uint64_t H = cfg->hidden, I = cfg->intermediate, d = cfg->head_dim;
	const uint64_t nh = cfg->n_heads, nkv = cfg->n_kv_heads, V = cfg->vocab;
	bool on = swiftkv_on && cfg->swiftkv && cfg->kv_layers < cfg->n_layers;
	char n0[160], n1[160], n2[160];
	int r;

	p = calloc(1, sizeof(*p));
	if (!p)
		return skv_err_set(err, -ENOMEM, "out of memory");
	pl.p = p;
	p->header.magic = SKV_IMAGE_MAGIC;
	p->header.version = SKV_IMAGE_VERSION;
	p->header.header_size = sizeof(struct skv_image_header);
	p->header.dtype = dtype;
	p->header.swiftkv_on = on;
	p->header.kv_layers = on ? cfg->kv_layers : cfg->n_layers;
	p->header.kv_group = on ? cfg->kv_group : 1;
	p->header.config = *cfg;
	const uint32_t N = cfg->n_layers, L = p->header.kv_layers, G = p->header.kv_group;
	const uint32_t F = (N - L) / G;
	p->header.cache_layers = L + F;

	if ((r = add1(&pl, SKV_W_EMBED, 0, V, H, false, "model.embed_tokens.weight")) < 0 ||
	    (r = add1(&pl, SKV_W_FINAL_NORM, 0, 1, H, true, "model.norm.weight")) < 0)
		goto fail;
	if (!cfg->tie_word_embeddings && (r = add1(&pl, SKV_W_LM_HEAD, 0, V, H, false, "lm_head.weight")) < 0)
		goto fail;
	if (on) {
		const char *names[SKV_IMAGE_MAX_SOURCES];
		uint64_t rows[SKV_IMAGE_MAX_SOURCES];
		char (*buf)[96] = calloc(2 * F, 96);
		if (!buf || 2 * F > SKV_IMAGE_MAX_SOURCES) {
			free(buf);
			r = skv_err_set(err, -E2BIG, "%s: %u SwiftKV groups, more than the limit of %d", c->dir, F,
					SKV_IMAGE_MAX_SOURCES / 2);
			goto fail;
		}
		if ((r = add1(&pl, SKV_W_NORM_SKV, 0, 1, H, true, "model.norm_swiftkv.weight")) < 0) {
			free(buf);
			goto fail;
		}
		for (int bias = 0; bias <= (int)cfg->attention_bias; bias++) {
			for (uint32_t j = 0; j < F; j++) {
				uint32_t o = L + j * G;
				snprintf(buf[2 * j], 96, "model.layers.%u.self_attn.k_proj_swiftkv.%s", o,
					 bias ? "bias" : "weight");
				snprintf(buf[2 * j + 1], 96, "model.layers.%u.self_attn.v_proj_swiftkv.%s", o,
					 bias ? "bias" : "weight");
				names[2 * j] = buf[2 * j];
				names[2 * j + 1] = buf[2 * j + 1];
				rows[2 * j] = rows[2 * j + 1] = nkv * d;
			}
			if (bias) /* one row of 2 F nkv d values, from 2F vectors */
				r = add_entry(&pl, SKV_W_KV_SKV_BIAS, 0, 0, true, 2 * F, names, rows);
			else
				r = add_entry(&pl, SKV_W_KV_SKV, 0, H, false, 2 * F, names, rows);
			if (r < 0) {
				free(buf);
				goto fail;
			}
		}
		free(buf);
	}

	for (uint32_t i = 0; i < N; i++) {
		const char *names[3] = {n0, n1, n2};
		uint64_t rows[3];
		snprintf(n0, sizeof(n0), "model.layers.%u.input_layernorm.weight", i);
		if ((r = add1(&pl, SKV_W_ATTN_NORM, i, 1, H, true, n0)) < 0)
			goto fail;
		for (int bias = 0; bias <= (int)cfg->attention_bias; bias++) {
			const char *suf = bias ? "bias" : "weight";
			enum skv_wkind k = bias ? SKV_W_QKV_BIAS : SKV_W_QKV;
			if (i < L) {
				snprintf(n0, sizeof(n0), "model.layers.%u.self_attn.q_proj.%s", i, suf);
				snprintf(n1, sizeof(n1), "model.layers.%u.self_attn.k_proj.%s", i, suf);
				snprintf(n2, sizeof(n2), "model.layers.%u.self_attn.v_proj.%s", i, suf);
				rows[0] = nh * d;
				rows[1] = rows[2] = nkv * d;
				r = bias ? add_entry(&pl, k, i, 0, true, 3, names, rows)
					 : add_entry(&pl, k, i, H, false, 3, names, rows);
			} else {
				snprintf(n0, sizeof(n0), "model.layers.%u.self_attn.q_proj_swiftkv.%s", i, suf);
				r = bias ? add1(&pl, k, i, 1, nh * d, true, n0) : add1(&pl, k, i, nh * d, H, false, n0);
			}
			if (r < 0)
				goto fail;
		}
		snprintf(n0, sizeof(n0), "model.layers.%u.self_attn.o_proj.weight", i);
		if ((r = add1(&pl, SKV_W_O, i, H, nh * d, false, n0)) < 0)
			goto fail;
		if (cfg->attention_bias) {
			snprintf(n0, sizeof(n0), "model.layers.%u.self_attn.o_proj.bias", i);
			if ((r = add1(&pl, SKV_W_O_BIAS, i, 1, H, true, n0)) < 0)
				goto fail;
		}
		snprintf(n0, sizeof(n0), "model.layers.%u.post_attention_layernorm.weight", i);
		if ((r = add1(&pl, SKV_W_MLP_NORM, i, 1, H, true, n0)) < 0)
			goto fail;
		for (int bias = 0; bias <= (int)cfg->mlp_bias; bias++) {
			const char *suf = bias ? "bias" : "weight";
			snprintf(n0, sizeof(n0), "model.layers.%u.mlp.gate_proj.%s", i, suf);
			snprintf(n1, sizeof(n1), "model.layers.%u.mlp.up_proj.%s", i, suf);
			rows[0] = rows[1] = I;
			r = bias ? add_entry(&pl, SKV_W_GATE_UP_BIAS, i, 0, true, 2, names, rows)
				 : add_entry(&pl, SKV_W_GATE_UP, i, H, false, 2, names, rows);
			if (r < 0)
				goto fail;
			snprintf(n0, sizeof(n0), "model.layers.%u.mlp.down_proj.%s", i, suf);
			r = bias ? add1(&pl, SKV_W_DOWN_BIAS, i, 1, H, true, n0)
				 : add1(&pl, SKV_W_DOWN, i, H, I, false, n0);
			if (r < 0)
				goto fail;
		}
	}
	p->header.data_size = pl.off;
	p->header.data_offset = skv_image_meta_size(p);
	p->header.total_size = p->header.data_offset + p->header.data_size;
	*ret = p;
	return 0;
fail:
	skv_image_plan_free(p);
	return r;
}

uint64_t skv_image_meta_size(const struct skv_image_plan *p)
{
	return SKV_ALIGN_UP(sizeof(struct skv_image_header) +
				    (uint64_t)p->header.n_entries * sizeof(struct skv_image_entry),
			    4096);
}

void skv_image_write_meta(const struct skv_image_plan *p, void *meta)
{
	memset(meta, 0, skv_image_meta_size(p));
	memcpy(meta, &p->header, sizeof(p->header));
	memcpy((char *)meta + sizeof(p->header), p->entries, p->header.n_entries * sizeof(*p->entries));
}

int skv_image_fill_entry(const struct skv_image_plan *p, uint32_t i, void *dst, struct skv_err *err)
{
	const struct skv_image_src_list *sl = &p->sources[i];
	enum skv_dtype out = p->header.dtype;
	size_t osz = skv_dtype_size(out);
	size_t at = 0; /* elements written so far: sources are stacked back to back */

	for (uint32_t s = 0; s < sl->n; s++) {
		const struct skv_st_tensor *t = sl->src[s];
		enum skv_dtype in;
		size_t n = (size_t)t->numel;
		char *d = (char *)dst + at * osz;

		if (skv_st_dtype_to_skv(t->dtype, &in) < 0)
			return skv_err_set(err, -EOPNOTSUPP, "tensor '%s': unsupported dtype", t->name);
		if (in == out) {
			memcpy(d, t->data, n * osz);
		} else {
#pragma omp parallel for schedule(static) if (n > (1u << 20))
			for (size_t k = 0; k < n; k++)
				skv_store_f32(d, out, k, skv_load_f32(t->data, in, k));
		}
		at += n;
	}
	return 0;
}

int skv_image_fill(const struct skv_image_plan *p, void *dst, skv_image_progress_fn progress, void *userdata,
		   struct skv_err *err)
{
	uint64_t done = 0;
	char *data = (char *)dst + p->header.data_offset;

	skv_image_write_meta(p, dst);
	for (uint32_t i = 0; i < p->header.n_entries; i++) {
		const struct skv_image_entry *e = &p->entries[i];
		int r = skv_image_fill_entry(p, i, data + e->offset, err);
		if (r < 0)
			return r;
		/* zero the alignment padding so the image is deterministic */
		uint64_t end = e->offset + e->nbytes;
		uint64_t next = i + 1 < p->header.n_entries ? p->entries[i + 1].offset : p->header.data_size;
		if (next > end)
			memset(data + end, 0, next - end);
		done += e->nbytes;
		if (progress)
			progress(userdata, done, p->header.data_size);
	}
	return 0;
}

const struct skv_image_entry *skv_image_find(const struct skv_image_header *h, enum skv_wkind kind,
					     uint32_t layer)
{
	const struct skv_image_entry *e = (const void *)((const char *)h + h->header_size);
	for (uint32_t i = 0; i < h->n_entries; i++)
		if (e[i].kind == (uint32_t)kind && e[i].layer == layer)
			return &e[i];
	return NULL;
}

int skv_image_check(const void *image, size_t size, const struct skv_image_header **ret, struct skv_err *err)
{
	const struct skv_image_header *h = image;
	if (size < sizeof(*h))
		return skv_err_set(err, -EINVAL, "weights image: %zu bytes, smaller than its header", size);
	if (h->total_size != size)
		return skv_err_set(err, -EINVAL, "weights image: %llu bytes by its header, %zu mapped",
				   (unsigned long long)h->total_size, size);
	return skv_image_check_meta(image, SKV_MIN(size, (size_t)h->data_offset), size > h->data_offset ? size - h->data_offset : 0,
				    ret, err);
}

int skv_image_check_meta(const void *meta, size_t meta_size, size_t data_size, const struct skv_image_header **ret,
			 struct skv_err *err)
{
	const struct skv_image_header *h = meta;
	const struct skv_model_config *c;

	if (meta_size < sizeof(*h))
		return skv_err_set(err, -EINVAL, "weights image: %zu bytes of header, smaller than its header", meta_size);
	if (h->magic != SKV_IMAGE_MAGIC || h->version != SKV_IMAGE_VERSION || h->header_size != sizeof(*h))
		return skv_err_set(err, -EPROTO, "weights image: bad magic, version or header size");
	c = &h->config;
	int rc = skv_model_config_validate(c, "weights image", err);
	if (rc < 0)
		return rc;
	/* the data may sit in a larger region (a GPU allocation rounded to its granularity) */
	if (h->n_entries > 64u + 16u * SKV_MAX_LAYERS || h->data_offset != meta_size || h->data_size > data_size ||
	    h->total_size != h->data_offset + h->data_size ||
	    h->data_offset < sizeof(*h) + (uint64_t)h->n_entries * sizeof(struct skv_image_entry))
		return skv_err_set(err, -EINVAL, "weights image: sizes do not add up (%zu bytes of header, %zu of data)",
				   meta_size, data_size);
	if (h->dtype > SKV_DTYPE_F16 || c->n_layers == 0 || c->n_layers > SKV_MAX_LAYERS || h->kv_group == 0 ||
	    h->kv_layers == 0 || h->kv_layers > c->n_layers || (c->n_layers - h->kv_layers) % h->kv_group ||
	    h->cache_layers != h->kv_layers + (c->n_layers - h->kv_layers) / h->kv_group)
		return skv_err_set(err, -EINVAL, "weights image: inconsistent layer counts");
	const struct skv_image_entry *e = (const void *)((const char *)h + h->header_size);
	size_t esz = skv_dtype_size(h->dtype);
	for (uint32_t i = 0; i < h->n_entries; i++) {
		uint64_t bytes;
		if (e[i].kind >= SKV_W__COUNT || e[i].layer >= c->n_layers ||
		    __builtin_mul_overflow(e[i].rows, e[i].cols, &bytes) ||
		    __builtin_mul_overflow(bytes, (uint64_t)esz, &bytes) || bytes != e[i].nbytes ||
		    e[i].offset > h->data_size || e[i].nbytes > h->data_size - e[i].offset)
			return skv_err_set(err, -EINVAL, "weights image: entry %u is out of bounds", i);
	}
	/* The entries the engine will dereference must be there with the shapes it assumes. */
	const uint64_t H = c->hidden, d = c->head_dim, nh = c->n_heads, nkv = c->n_kv_heads;
	const uint64_t I = c->intermediate, V = c->vocab;
	const uint32_t F = h->cache_layers - h->kv_layers;
	struct need {
		enum skv_wkind k;
		uint64_t rows, cols;
	} need[8];
	int nn = 0;
	need[nn++] = (struct need){SKV_W_EMBED, V, H};
	need[nn++] = (struct need){SKV_W_FINAL_NORM, 1, H};
	if (!c->tie_word_embeddings)
		need[nn++] = (struct need){SKV_W_LM_HEAD, V, H};
	if (F) {
		need[nn++] = (struct need){SKV_W_NORM_SKV, 1, H};
		need[nn++] = (struct need){SKV_W_KV_SKV, F * 2 * nkv * d, H};
	}
	if (F && c->attention_bias)
		need[nn++] = (struct need){SKV_W_KV_SKV_BIAS, 1, F * 2 * nkv * d};
	for (int k = 0; k < nn; k++) {
		const struct skv_image_entry *x = skv_image_find(h, need[k].k, 0);
		if (!x || x->rows != need[k].rows || x->cols != need[k].cols)
			return skv_err_set(err, -EINVAL, "weights image: global tensor %d missing or misshapen", need[k].k);
	}
	for (uint32_t l = 0; l < c->n_layers; l++) {
		uint64_t qrows = l < h->kv_layers ? (nh + 2 * nkv) * d : nh * d;
		const struct skv_image_entry *a = skv_image_find(h, SKV_W_ATTN_NORM, l),
					     *q = skv_image_find(h, SKV_W_QKV, l), *o = skv_image_find(h, SKV_W_O, l),
					     *m = skv_image_find(h, SKV_W_MLP_NORM, l),
					     *g = skv_image_find(h, SKV_W_GATE_UP, l),
					     *dn = skv_image_find(h, SKV_W_DOWN, l);
		if (!a || a->cols != H || !q || q->rows != qrows || q->cols != H || !o || o->rows != H ||
		    o->cols != nh * d || !m || m->cols != H || !g || g->rows != 2 * I || g->cols != H || !dn ||
		    dn->rows != H || dn->cols != I)
			return skv_err_set(err, -EINVAL, "weights image: layer %u tensors missing or misshapen", l);
		/* biases the config announces: one row each, as long as the projection's output */
		const struct skv_image_entry *qb = skv_image_find(h, SKV_W_QKV_BIAS, l), *ob = skv_image_find(h, SKV_W_O_BIAS, l),
					     *gb = skv_image_find(h, SKV_W_GATE_UP_BIAS, l),
					     *db = skv_image_find(h, SKV_W_DOWN_BIAS, l);
		if ((c->attention_bias && (!qb || qb->rows != 1 || qb->cols != qrows || !ob || ob->rows != 1 || ob->cols != H)) ||
		    (c->mlp_bias && (!gb || gb->rows != 1 || gb->cols != 2 * I || !db || db->rows != 1 || db->cols != H)))
			return skv_err_set(err, -EINVAL, "weights image: layer %u biases missing or misshapen", l);
	}
	*ret = h;
	return 0;
}

size_t skv_image_kv_block_bytes(const struct skv_image_header *h, enum skv_dtype kv_dtype, uint32_t block_size)
{
	size_t n = (size_t)h->cache_layers * 2;
	if (!skv_mul_size(n, block_size, &n) || !skv_mul_size(n, (size_t)h->config.n_kv_heads * h->config.head_dim, &n) ||
	    !skv_mul_size(n, skv_dtype_size(kv_dtype), &n))
		return 0;
	return n;
}

int skv_image_kv_check(const struct skv_image_header *h, enum skv_dtype kv_dtype, uint64_t num_blocks,
		       uint32_t block_size, struct skv_err *err)
{
	size_t bb = skv_image_kv_block_bytes(h, kv_dtype, block_size), total;
	if (!block_size || !bb)
		return skv_err_set(err, -EINVAL, "a KV block of %u positions has no valid size", block_size);
	if (num_blocks < 1)
		return skv_err_set(err, -EINVAL, "the KV arena holds no block of %zu bytes; it needs at least one", bb);
	if (num_blocks > SKV_KV_MAX_SLOTS / block_size || !skv_mul_size(num_blocks, bb, &total))
		return skv_err_set(err, -E2BIG,
				   "the KV arena holds %llu blocks of %u positions (%zu bytes each): over the "
				   "engine's limit of %d positions, %llu blocks",
				   (unsigned long long)num_blocks, block_size, bb, SKV_KV_MAX_SLOTS,
				   (unsigned long long)(SKV_KV_MAX_SLOTS / block_size));
	return 0;
}
