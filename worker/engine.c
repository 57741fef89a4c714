/* engine.c: the SwiftKV step (docs/swiftkv.md, "The forward, exactly").
 *
 *   1. layers 0..L-1 for all T scheduled tokens;
 *   2. s = RMSNorm(x_L; norm_swiftkv); one GEMM against every later group's packed k|v; RoPE on
 *      K; K, V written to cache layers L..L+F-1 for all T tokens;
 *   3. survivors (the last token of each sequence that wants logits) are gathered;
 *   4. layers L..N-1 for the survivors only, attending over cache layer L + (i - L) / G;
 *   5. final norm and lm_head on the survivors.
 * A plain model (or SwiftKV off) is L = N: steps 2 and 4 vanish and the gather moves to the head.
 *
 * The residual stream is kept whole in `res`; each sublayer's output projection accumulates into
 * it (out += a @ W^T), and the next norm reads it. Everything is sized at creation; a step only
 * indexes into what exists.
 *
 * Graphs (backends with graph_begin, unless no_graphs): a decode-only step runs as one recorded
 * graph keyed by its padded batch size (and the padded block-table width), metadata upload and
 * the sampled ids' download included; any other step runs its first half directly and its
 * survivor half (steps 3-5) as a graph keyed by the padded survivor count. Padding rows are
 * harmless: token 0 at position 0, cache slot -1 (not stored), one position of context through
 * block 0, greedy sampling; their outputs are never read.
 */
#include "engine.h"

#include <math.h>
#include <stdio.h>
#include <string.h>

struct layer_w {
	const void *attn_norm, *qkv, *qkv_b, *o, *o_b, *mlp_norm, *gu, *gu_b, *down, *down_b;
};

struct skv_engine {
	struct skv_engine_params p;
	struct skv_backend *be;
	const struct skv_ops *ops;
	struct skv_model_config cfg;
	uint32_t L, G, F, cache_layers, max_blocks;

	/* weights (backend memory) */
	const void *embed, *final_norm, *lm_head, *norm_skv, *kv_skv, *kv_skv_b;
	struct layer_w *layers; /* [N] */

	/* KV cache layers (backend memory) */
	struct skv_kv_layer *cache; /* [cache_layers] */

	/* activations (backend memory), T = max_batch_tokens rows, S = max_seqs rows */
	void *res;    /* [T, H] residual stream */
	void *surv;   /* [S, H] the survivors' residual stream */
	void *normed; /* [T, H] */
	void *qkv;    /* [T, (nh + 2 nkv) d] */
	void *attn;   /* [T, nh d] */
	void *gu;     /* [T, 2 I] */
	void *act;    /* [T, I] */
	void *kvs;    /* [T, F 2 nkv d] SwiftKV packed k|v */
	void *logits; /* [S, V] fp32 */
	float *inv_freq;
	struct skv_rope rope;

	/* step metadata: one int32 block, built on the host and uploaded once per step */
	int32_t *meta_host, *meta_dev;
	size_t meta_len; /* int32s */
	struct skv_sample_params *sp_host, *sp_dev; /* [S] */
	int32_t *ids_host, *ids_dev;		     /* [S] sampled tokens */
	float *logits_host;			     /* [S, V] with keep_logits */
};

/* Offsets (in int32s) of the metadata arrays inside meta_host / meta_dev. */
struct meta_layout {
	size_t ids, pos, slots, q_start, ctx, bt;	       /* all scheduled tokens, per sequence */
	size_t surv_idx, surv_pos, surv_q_start, surv_ctx, surv_bt; /* survivors, per surviving sequence */
	size_t total;
};

static struct meta_layout meta_layout(uint32_t T, uint32_t S, uint32_t maxb)
{
	struct meta_layout m;
	size_t o = 0;
	m.ids = o, o += T;
	m.pos = o, o += T;
	m.slots = o, o += T;
	m.q_start = o, o += S + 1;
	m.ctx = o, o += S;
	m.bt = o, o += (size_t)S * maxb;
	m.surv_idx = o, o += S;
	m.surv_pos = o, o += S;
	m.surv_q_start = o, o += S + 1;
	m.surv_ctx = o, o += S;
	m.surv_bt = o, o += (size_t)S * maxb;
	m.total = o;
	return m;
}

size_t skv_engine_kv_bytes(const struct skv_image_header *h, enum skv_dtype kv_dtype, uint32_t num_blocks,
			   uint32_t block_size)
{
	size_t n;
	if (!skv_mul_size(skv_image_kv_block_bytes(h, kv_dtype, block_size), num_blocks, &n))
		return 0;
	return n;
}

const struct skv_model_config *skv_engine_config(const struct skv_engine *e) { return &e->cfg; }

void skv_engine_free(struct skv_engine *e)
{
	if (!e)
		return;
	void *bufs[] = {e->res,	   e->surv,	e->normed, e->qkv,    e->attn,	 e->gu,
			e->act,	   e->kvs,	e->logits, e->inv_freq, e->meta_dev, e->sp_dev,
			e->ids_dev};
	void *host[] = {e->meta_host, e->sp_host, e->ids_host, e->logits_host};
	for (size_t i = 0; i < SKV_ARRAY_SIZE(bufs); i++)
		if (bufs[i])
			e->ops->free(e->be, bufs[i]);
	for (size_t i = 0; i < SKV_ARRAY_SIZE(host); i++)
		if (host[i])
			e->ops->host_free(e->be, host[i]);
	free(e->layers);
	free(e->cache);
	free(e);
}

static const void *wptr(const struct skv_engine *e, enum skv_wkind k, uint32_t layer)
{
	const struct skv_image_entry *x = skv_image_find(e->p.image, k, layer);
	return x ? (const char *)e->p.weights + x->offset : NULL;
}

static int balloc(struct skv_engine *e, void **ret, size_t n, size_t elem, const char *what, struct skv_err *err)
{
	size_t bytes;
	if (!skv_mul_size(n, elem, &bytes))
		return skv_err_set(err, -EOVERFLOW, "engine: %s buffer size overflows", what);
	int r = e->ops->alloc(e->be, bytes, ret);
	if (r < 0)
		return skv_err_set(err, r, "engine: cannot allocate %zu bytes for %s", bytes, what);
	return 0;
}

int skv_engine_new(const struct skv_engine_params *p, struct skv_engine **ret, struct skv_err *err)
{
	const struct skv_image_header *h = p->image;
	struct skv_engine *e;
	int r;

	if (h->dtype != p->be->ops->w_dtype)
		return skv_err_set(err, -EINVAL, "engine: image dtype %s, but the %s backend runs %s weights",
				   skv_dtype_name(h->dtype), p->be->ops->name, skv_dtype_name(p->be->ops->w_dtype));
	if (!p->block_size || !p->num_blocks || !p->max_batch_tokens || !p->max_seqs || !p->max_context)
		return skv_err_set(err, -EINVAL, "engine: block size, blocks, batch tokens, sequences and context "
						 "must all be positive");
	e = calloc(1, sizeof(*e));
	if (!e)
		return skv_err_set(err, -ENOMEM, "engine: out of memory");
	e->p = *p;
	e->be = p->be;
	e->ops = p->be->ops;
	e->cfg = h->config;
	e->L = h->kv_layers;
	e->G = h->kv_group;
	e->cache_layers = h->cache_layers;
	e->F = h->cache_layers - h->kv_layers;
	e->max_blocks = SKV_DIV_UP(p->max_context, p->block_size);

	const struct skv_model_config *c = &e->cfg;
	const uint32_t N = c->n_layers, H = c->hidden, I = c->intermediate, d = c->head_dim;
	const uint32_t nh = c->n_heads, nkv = c->n_kv_heads, T = p->max_batch_tokens, S = p->max_seqs;
	const size_t act = skv_dtype_size(e->ops->act_dtype);

	e->embed = wptr(e, SKV_W_EMBED, 0);
	e->final_norm = wptr(e, SKV_W_FINAL_NORM, 0);
	e->lm_head = c->tie_word_embeddings ? e->embed : wptr(e, SKV_W_LM_HEAD, 0);
	e->norm_skv = wptr(e, SKV_W_NORM_SKV, 0);
	e->kv_skv = wptr(e, SKV_W_KV_SKV, 0);
	e->kv_skv_b = wptr(e, SKV_W_KV_SKV_BIAS, 0);
	if (!e->embed || !e->final_norm || !e->lm_head || (e->F && (!e->norm_skv || !e->kv_skv)) ||
	    (e->F && c->attention_bias && !e->kv_skv_b)) {
		r = skv_err_set(err, -EINVAL, "engine: the weights image lacks a global tensor");
		goto fail;
	}
	e->layers = calloc(N, sizeof(*e->layers));
	e->cache = calloc(e->cache_layers, sizeof(*e->cache));
	if (!e->layers || !e->cache) {
		r = skv_err_set(err, -ENOMEM, "engine: out of memory");
		goto fail;
	}
	for (uint32_t i = 0; i < N; i++) {
		struct layer_w *w = &e->layers[i];
		w->attn_norm = wptr(e, SKV_W_ATTN_NORM, i);
		w->qkv = wptr(e, SKV_W_QKV, i);
		w->qkv_b = wptr(e, SKV_W_QKV_BIAS, i);
		w->o = wptr(e, SKV_W_O, i);
		w->o_b = wptr(e, SKV_W_O_BIAS, i);
		w->mlp_norm = wptr(e, SKV_W_MLP_NORM, i);
		w->gu = wptr(e, SKV_W_GATE_UP, i);
		w->gu_b = wptr(e, SKV_W_GATE_UP_BIAS, i);
		w->down = wptr(e, SKV_W_DOWN, i);
		w->down_b = wptr(e, SKV_W_DOWN_BIAS, i);
		if (!w->attn_norm || !w->qkv || !w->o || !w->mlp_norm || !w->gu || !w->down ||
		    (c->attention_bias && (!w->qkv_b || !w->o_b)) || (c->mlp_bias && (!w->gu_b || !w->down_b))) {
			r = skv_err_set(err, -EINVAL, "engine: the weights image lacks a tensor of layer %u", i);
			goto fail;
		}
	}
	if ((r = skv_image_kv_check(h, e->ops->kv_dtype, p->num_blocks, p->block_size, err)) < 0)
		goto fail;
	size_t kv_bytes = skv_engine_kv_bytes(h, e->ops->kv_dtype, p->num_blocks, p->block_size);
	size_t layer_bytes = kv_bytes / (2 * (size_t)e->cache_layers);
	for (uint32_t l = 0; l < e->cache_layers; l++) {
		e->cache[l].k = (char *)p->kv_arena + (2 * (size_t)l) * layer_bytes;
		e->cache[l].v = (char *)p->kv_arena + (2 * (size_t)l + 1) * layer_bytes;
	}

	if ((r = balloc(e, &e->res, (size_t)T * H, act, "residual", err)) < 0 ||
	    (r = balloc(e, &e->surv, (size_t)S * H, act, "survivors", err)) < 0 ||
	    (r = balloc(e, &e->normed, (size_t)T * H, act, "normed", err)) < 0 ||
	    (r = balloc(e, &e->qkv, (size_t)T * (nh + 2 * nkv) * d, act, "qkv", err)) < 0 ||
	    (r = balloc(e, &e->attn, (size_t)T * nh * d, act, "attention", err)) < 0 ||
	    (r = balloc(e, &e->gu, (size_t)T * 2 * I, act, "gate_up", err)) < 0 ||
	    (r = balloc(e, &e->act, (size_t)T * I, act, "mlp", err)) < 0 ||
	    (r = balloc(e, &e->logits, (size_t)S * c->vocab, sizeof(float), "logits", err)) < 0 ||
	    (r = balloc(e, (void **)&e->inv_freq, d / 2, sizeof(float), "rope", err)) < 0)
		goto fail;
	if (e->F && (r = balloc(e, &e->kvs, (size_t)T * e->F * 2 * nkv * d, act, "swiftkv k|v", err)) < 0)
		goto fail;

	float inv[SKV_MAX_HEAD_DIM / 2];
	skv_rope_inv_freq(inv, d, c->rope_theta, c->rope_type, c->rope_factor, c->rope_low_freq_factor,
			  c->rope_high_freq_factor, c->rope_orig_max_position);
	if ((r = e->ops->upload(e->be, e->inv_freq, inv, d / 2 * sizeof(float))) < 0) {
		skv_err_set(err, r, "engine: cannot upload RoPE frequencies");
		goto fail;
	}
	e->rope.inv_freq = e->inv_freq;
	e->rope.head_dim = d;

	e->meta_len = meta_layout(T, S, e->max_blocks).total;
	if ((r = balloc(e, (void **)&e->meta_dev, e->meta_len, sizeof(int32_t), "step metadata", err)) < 0 ||
	    (r = balloc(e, (void **)&e->sp_dev, S, sizeof(struct skv_sample_params), "sampling", err)) < 0 ||
	    (r = balloc(e, (void **)&e->ids_dev, S, sizeof(int32_t), "sampled ids", err)) < 0)
		goto fail;
	if (e->ops->host_alloc(e->be, e->meta_len * sizeof(int32_t), (void **)&e->meta_host) < 0 ||
	    e->ops->host_alloc(e->be, S * sizeof(struct skv_sample_params), (void **)&e->sp_host) < 0 ||
	    e->ops->host_alloc(e->be, S * sizeof(int32_t), (void **)&e->ids_host) < 0 ||
	    (p->keep_logits &&
	     e->ops->host_alloc(e->be, (size_t)S * c->vocab * sizeof(float), (void **)&e->logits_host) < 0)) {
		r = skv_err_set(err, -ENOMEM, "engine: cannot allocate host staging buffers");
		goto fail;
	}
	r = e->ops->prepare(e->be, p->max_context, T, c->vocab);
	if (r < 0) {
		skv_err_set(err, r, "engine: the %s backend cannot prepare for %u tokens of context", e->ops->name,
			    p->max_context);
		goto fail;
	}
	if (e->ops->prepare_attention && (r = e->ops->prepare_attention(e->be, nh, d)) < 0) {
		skv_err_set(err, r, "engine: the %s backend cannot prepare attention for %u heads of %u", e->ops->name,
			    nh, d);
		goto fail;
	}
	*ret = e;
	return 0;
fail:
	skv_engine_free(e);
	return r;
}

/* Checks the step against the engine's limits; the scheduler should never break them, and a
 * broken one must not become an out-of-bounds access. */
static int check_step(const struct skv_engine *e, const struct skv_step_seq *seqs, uint32_t n_seqs, uint32_t *ret_T,
		      struct skv_err *err)
{
	uint64_t T = 0;
	if (n_seqs > e->p.max_seqs)
		return skv_err_set(err, -E2BIG, "engine: %u sequences in a step, limit %u", n_seqs, e->p.max_seqs);
	for (uint32_t s = 0; s < n_seqs; s++) {
		const struct skv_step_seq *q = &seqs[s];
		uint64_t end = (uint64_t)q->start_pos + q->n_tokens;
		if (q->n_tokens == 0)
			return skv_err_set(err, -EINVAL, "engine: sequence %u schedules no tokens", s);
		if (end > e->p.max_context)
			return skv_err_set(err, -E2BIG, "engine: sequence %u reaches position %llu, context limit %u", s,
					   (unsigned long long)end, e->p.max_context);
		if ((uint64_t)q->n_blocks * e->p.block_size < end || q->n_blocks > e->max_blocks)
			return skv_err_set(err, -EINVAL, "engine: sequence %u has %u blocks for %llu positions", s,
					   q->n_blocks, (unsigned long long)end);
		for (uint32_t b = 0; b < q->n_blocks; b++)
			if (q->block_table[b] < 0 || (uint32_t)q->block_table[b] >= e->p.num_blocks)
				return skv_err_set(err, -EINVAL, "engine: sequence %u block %u is %d, arena has %u", s, b,
						   q->block_table[b], e->p.num_blocks);
		for (uint32_t t = 0; t < q->n_tokens; t++)
			if (q->tokens[t] < 0 || (uint32_t)q->tokens[t] >= e->cfg.vocab)
				return skv_err_set(err, -EINVAL, "engine: token id %d is outside the vocabulary (%u)",
						   q->tokens[t], e->cfg.vocab);
		T += q->n_tokens;
	}
	if (T > e->p.max_batch_tokens)
		return skv_err_set(err, -E2BIG, "engine: %llu tokens in a step, limit %u", (unsigned long long)T,
				   e->p.max_batch_tokens);
	*ret_T = (uint32_t)T;
	return 0;
}

/* One transformer layer on n rows of the residual stream res: attention through `attn_batch` over cache layer `cl`.
 * full: the layer projects q|k|v and writes k, v into the cache; otherwise (a SwiftKV layer)
 * it projects q only and reads the cache the KV projection filled. */
static void run_layer(struct skv_engine *e, void *res, uint32_t i, uint32_t n, bool full, const int32_t *pos,
		      const int32_t *slots, const struct skv_attn_batch *ab, uint32_t cl)
{
	const struct skv_ops *o = e->ops;
	const struct skv_model_config *c = &e->cfg;
	const struct layer_w *w = &e->layers[i];
	const uint32_t H = c->hidden, I = c->intermediate, d = c->head_dim, nh = c->n_heads, nkv = c->n_kv_heads;
	const uint32_t qkv_cols = full ? (nh + 2 * nkv) * d : nh * d;
	const size_t act = skv_dtype_size(o->act_dtype);

	o->rmsnorm(e->be, e->normed, res, w->attn_norm, n, H, c->rms_eps);
	o->gemm(e->be, e->qkv, e->normed, w->qkv, w->qkv_b, n, qkv_cols, H, false, false);
	o->rope(e->be, e->qkv, qkv_cols, n, nh, pos, &e->rope);
	if (full) {
		char *k = (char *)e->qkv + (size_t)nh * d * act;
		char *v = k + (size_t)nkv * d * act;
		o->rope_store_kv(e->be, k, v, qkv_cols, n, nkv, pos, slots, &e->rope, e->cache[cl]);
	}
	o->attention(e->be, e->attn, e->qkv, qkv_cols, ab, e->cache[cl], nh, nkv, d);
	o->gemm(e->be, res, e->attn, w->o, w->o_b, n, H, nh * d, true, false);
	if (e->p.progress)
		atomic_fetch_add_explicit(e->p.progress, 1, memory_order_relaxed);

	o->rmsnorm(e->be, e->normed, res, w->mlp_norm, n, H, c->rms_eps);
	o->gemm(e->be, e->gu, e->normed, w->gu, w->gu_b, n, 2 * I, H, false, false);
	o->silu_mul(e->be, e->act, e->gu, n, I);
	o->gemm(e->be, res, e->act, w->down, w->down_b, n, H, I, true, false);
	if (e->p.progress)
		atomic_fetch_add_explicit(e->p.progress, 1, memory_order_relaxed);
}

/* What the two halves of a step work on. */
struct fwd {
	struct skv_engine *e;
	const struct meta_layout *m;
	uint32_t T, R; /* rows of the first half, survivor rows (both padded inside graphs) */
	const struct skv_attn_batch *all, *surv;
	bool upload_meta; /* the first half uploads the metadata (a decode graph records it) */
};

/* 1-2: embeddings, layers 0..L-1 for every scheduled row, the SwiftKV projection. */
static int forward_first(const struct fwd *f)
{
	struct skv_engine *e = f->e;
	const struct skv_ops *o = e->ops;
	const struct skv_model_config *c = &e->cfg;
	const struct meta_layout *m = f->m;
	const uint32_t H = c->hidden, d = c->head_dim, nkv = c->n_kv_heads, N = c->n_layers, L = e->L, T = f->T;
	const size_t act = skv_dtype_size(o->act_dtype);
	int32_t *dev = e->meta_dev;
	int r;

	if (f->upload_meta && (r = o->upload(e->be, dev, e->meta_host, m->total * sizeof(int32_t))) < 0)
		return r;

	/* 1. embeddings, then layers 0..L-1 for every scheduled token */
	o->embed(e->be, e->res, e->embed, dev + m->ids, T, H);
	for (uint32_t i = 0; i < L; i++)
		run_layer(e, e->res, i, T, true, dev + m->pos, dev + m->slots, f->all, i);

	/* 2. the SwiftKV projection: every later group's K and V for every token, one GEMM */
	if (L < N) {
		const uint32_t kv_cols = e->F * 2 * nkv * d;
		o->rmsnorm(e->be, e->normed, e->res, e->norm_skv, T, H, c->rms_eps);
		o->gemm(e->be, e->kvs, e->normed, e->kv_skv, e->kv_skv_b, T, kv_cols, H, false, false);
		for (uint32_t j = 0; j < e->F; j++) {
			char *k = (char *)e->kvs + (size_t)j * 2 * nkv * d * act;
			char *v = k + (size_t)nkv * d * act;
			o->rope_store_kv(e->be, k, v, kv_cols, T, nkv, dev + m->pos, dev + m->slots, &e->rope,
					 e->cache[L + j]);
		}
	}
	return 0;
}

/* 3-5: gather the survivors, layers L..N-1 for them, the head, sampling, the ids to the host. */
static int forward_rest(const struct fwd *f)
{
	struct skv_engine *e = f->e;
	const struct skv_ops *o = e->ops;
	const struct skv_model_config *c = &e->cfg;
	const struct meta_layout *m = f->m;
	const uint32_t H = c->hidden, V = c->vocab, N = c->n_layers, L = e->L, R = f->R;
	int32_t *dev = e->meta_dev;
	int r;

	/* 3. survivors: their rows of the residual stream */
	o->gather_rows(e->be, e->surv, e->res, dev + m->surv_idx, R, H);

	/* 4. layers L..N-1 for the survivors, over cache layer L + (i - L) / G */
	for (uint32_t i = L; i < N; i++)
		run_layer(e, e->surv, i, R, false, dev + m->surv_pos, NULL, f->surv, L + (i - L) / e->G);

	/* 5. the head, and the next token of each survivor */
	o->rmsnorm(e->be, e->normed, e->surv, e->final_norm, R, H, c->rms_eps);
	o->gemm(e->be, e->logits, e->normed, e->lm_head, NULL, R, V, H, false, true);
	if ((r = o->upload(e->be, e->sp_dev, e->sp_host, R * sizeof(*e->sp_host))) < 0)
		return r;
	o->sample(e->be, e->ids_dev, e->logits, e->sp_dev, R, V);
	if ((r = o->download(e->be, e->ids_host, e->ids_dev, R * sizeof(int32_t))) < 0)
		return r;
	if (e->p.keep_logits && (r = o->download(e->be, e->logits_host, e->logits, (size_t)R * V * sizeof(float))) < 0)
		return r;
	return 0;
}

/* A whole step: both halves (a decode-only step's recording). */
static int forward_all(const struct fwd *f)
{
	int r = forward_first(f);
	return r < 0 ? r : forward_rest(f);
}

/* Graph keys: the kind of recording, its padded rows and its block-table width. */
#define GRAPH_DECODE 1u /* a whole decode-only step */
#define GRAPH_SURV 2u	/* the survivor half of any other step */
static uint64_t graph_key(uint32_t kind, uint32_t rows, uint32_t bt_stride)
{
	return (uint64_t)kind << 56 | (uint64_t)rows << 28 | bt_stride;
}

/* Padded row counts: a few graphs, little padding. */
static uint32_t pad_rows(uint32_t n, uint32_t cap)
{
	uint32_t p = 1;
	if (n <= 8)
		while (p < n)
			p <<= 1;
	else if (n <= 64)
		p = SKV_ALIGN_UP(n, 8u);
	else if (n <= 256)
		p = SKV_ALIGN_UP(n, 32u);
	else
		p = SKV_ALIGN_UP(n, 64u);
	return SKV_MIN(p, cap);
}

/* Block-table width (in blocks) of a recording that must serve contexts up to ctx: rounded up by
 * a quarter of the next power of two (at least 256 positions), so a graph serves many steps and
 * attention plans for at most a third more context than it has. */
static uint32_t pad_blocks(uint32_t ctx, uint32_t block_size, uint32_t max_blocks)
{
	uint32_t pow = 256;
	while (pow < ctx)
		pow <<= 1;
	const uint32_t c = SKV_ALIGN_UP(SKV_MAX(ctx, 1u), SKV_MAX(256u, pow / 4));
	return SKV_MIN(SKV_DIV_UP(c, block_size), max_blocks);
}

/* Replays the graph `key`, recording it first if there is none; runs the ops directly when the
 * backend cannot record (or is busy timing ops). */
static int run_graph(struct skv_engine *e, uint64_t key, int (*fn)(const struct fwd *), const struct fwd *f)
{
	const struct skv_ops *o = e->ops;
	int r = o->graph_launch(e->be, key);
	if (r != -ENOENT)
		return r;
	if (o->graph_begin(e->be) == 0) {
		int fr = fn(f);
		if (o->graph_end(e->be, key) == 0 && fr == 0)
			return o->graph_launch(e->be, key);
	}
	return fn(f);
}

/* How a padding row samples (its id is never read). */
static const struct skv_sample_params pad_sample = {.temperature = 0.0f, .top_p = 1.0f};

int skv_engine_step(struct skv_engine *e, const struct skv_step_seq *seqs, uint32_t n_seqs, struct skv_step_out *ret,
		    struct skv_err *err)
{
	const struct skv_ops *o = e->ops;
	const uint32_t maxb = e->max_blocks, B = e->p.block_size;
	const struct meta_layout m = meta_layout(e->p.max_batch_tokens, e->p.max_seqs, maxb);
	int32_t *h = e->meta_host, *dev = e->meta_dev;
	uint32_t T = 0, R = 0, t = 0, max_ctx = 0, max_surv_ctx = 0;
	int r;

	*ret = (struct skv_step_out){0};
	r = check_step(e, seqs, n_seqs, &T, err);
	if (r < 0 || T == 0)
		return r;

	const bool graphs = o->graph_begin && o->graph_end && o->graph_launch && !e->p.no_graphs;
	bool decode = graphs;
	uint32_t n_surv = 0;
	for (uint32_t s = 0; s < n_seqs; s++) {
		const uint32_t ctx = seqs[s].start_pos + seqs[s].n_tokens;
		decode = decode && seqs[s].n_tokens == 1 && seqs[s].want_logits;
		max_ctx = SKV_MAX(max_ctx, ctx);
		if (seqs[s].want_logits) {
			n_surv++;
			max_surv_ctx = SKV_MAX(max_surv_ctx, ctx);
		}
	}
	/* Rows and block-table widths: padded for a recording, exact otherwise. */
	const uint32_t Tp = decode ? pad_rows(n_seqs, SKV_MIN(e->p.max_seqs, e->p.max_batch_tokens)) : T;
	/* padded survivor rows run through buffers of max_batch_tokens rows */
	const uint32_t Rp = decode ? Tp
			   : graphs && n_surv ? pad_rows(n_surv, SKV_MIN(e->p.max_seqs, e->p.max_batch_tokens))
					      : n_surv;
	const uint32_t sa = decode ? pad_blocks(max_ctx, B, maxb) : maxb;
	const uint32_t ss = decode ? sa : graphs ? pad_blocks(max_surv_ctx, B, maxb) : maxb;

	/* Metadata, built on the host and uploaded in one copy: per token its id, position and cache
	 * slot; per sequence its query start, context length and block table; and the same for the
	 * survivors (one per sequence that wants logits: its last scheduled token). */
	h[m.q_start] = 0;
	h[m.surv_q_start] = 0;
	for (uint32_t s = 0; s < n_seqs; s++) {
		const struct skv_step_seq *q = &seqs[s];
		const int32_t ctx = (int32_t)(q->start_pos + q->n_tokens);
		for (uint32_t j = 0; j < q->n_tokens; j++, t++) {
			int32_t p = (int32_t)(q->start_pos + j);
			h[m.ids + t] = q->tokens[j];
			h[m.pos + t] = p;
			h[m.slots + t] = q->block_table[p / (int32_t)B] * (int32_t)B + p % (int32_t)B;
		}
		h[m.q_start + s + 1] = (int32_t)t;
		h[m.ctx + s] = ctx;
		memcpy(h + m.bt + (size_t)s * sa, q->block_table, SKV_MIN(q->n_blocks, sa) * sizeof(int32_t));
		if (q->want_logits) {
			h[m.surv_idx + R] = (int32_t)t - 1;
			h[m.surv_pos + R] = ctx - 1;
			h[m.surv_ctx + R] = ctx;
			memcpy(h + m.surv_bt + (size_t)R * ss, q->block_table, SKV_MIN(q->n_blocks, ss) * sizeof(int32_t));
			e->sp_host[R] = q->sample;
			R++;
			h[m.surv_q_start + R] = (int32_t)R;
		}
	}
	for (uint32_t s = n_seqs; s < (decode ? Tp : n_seqs); s++, t++) { /* padding sequences */
		h[m.ids + t] = 0;
		h[m.pos + t] = 0;
		h[m.slots + t] = -1;
		h[m.q_start + s + 1] = (int32_t)t + 1;
		h[m.ctx + s] = 1;
		h[m.bt + (size_t)s * sa] = 0;
	}
	for (uint32_t s = R; s < Rp; s++) { /* padding survivors */
		h[m.surv_idx + s] = decode ? (int32_t)s : 0;
		h[m.surv_pos + s] = 0;
		h[m.surv_ctx + s] = 1;
		h[m.surv_bt + (size_t)s * ss] = 0;
		h[m.surv_q_start + s + 1] = (int32_t)s + 1;
		e->sp_host[s] = pad_sample;
	}

	const struct skv_attn_batch all = {
		.n_seqs = decode ? Tp : n_seqs,
		.n_q = decode ? Tp : T,
		.max_blocks = sa,
		.max_ctx = max_ctx,
		.block_size = B,
		.q_start = dev + m.q_start,
		.ctx_len = dev + m.ctx,
		.block_tables = dev + m.bt,
		.host_q_start = h + m.q_start,
		.host_ctx_len = h + m.ctx,
	};
	const struct skv_attn_batch surv = {
		.n_seqs = Rp,
		.n_q = Rp,
		.max_blocks = ss,
		.max_ctx = max_surv_ctx,
		.block_size = B,
		.q_start = dev + m.surv_q_start,
		.ctx_len = dev + m.surv_ctx,
		.block_tables = dev + m.surv_bt,
		.host_q_start = h + m.surv_q_start,
		.host_ctx_len = h + m.surv_ctx,
	};
	const struct fwd f = {
		.e = e, .m = &m, .T = decode ? Tp : T, .R = Rp, .all = &all, .surv = &surv, .upload_meta = true};

	if (decode) {
		r = run_graph(e, graph_key(GRAPH_DECODE, Tp, sa), forward_all, &f);
	} else {
		r = forward_first(&f);
		if (r == 0 && Rp > 0)
			r = graphs ? run_graph(e, graph_key(GRAPH_SURV, Rp, ss), forward_rest, &f) : forward_rest(&f);
	}
	if (r < 0)
		return skv_err_set(err, r, "engine: the %s backend failed to run the step", o->name);
	r = o->sync(e->be);
	if (r < 0)
		return skv_err_set(err, r, "engine: the %s backend failed during the step", o->name);
	ret->n = R;
	ret->ids = e->ids_host;
	ret->logits = e->p.keep_logits ? e->logits_host : NULL;
	return 0;
}
