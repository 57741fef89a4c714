/* test-cuda-ops.c: every CUDA op against the CPU reference op (ggml's test-backend-ops idea).
 *
 * Fresh random inputs each run (the seed is printed; SKV_TEST_SEED repeats one), several shapes
 * per op (odd sizes, the vector and scalar paths, GQA / MQA / MHA, head_dim 16, 64, 96 and 128,
 * several sequences of different context lengths in one attention batch, block tables of
 * shuffled blocks, graph-recorded attention). Inputs are rounded to bf16 before the CPU sees
 * them, so the comparison measures the op's own arithmetic; every GPU output is poisoned (NaN)
 * before the op runs, and a NaN left anywhere fails the comparison.
 * Pass: ||out - ref|| / ||ref|| < 1e-2 (bf16 outputs: half an ulp is 2^-9 = 0.2% per element);
 * exact for copies; identical token ids for sampling.
 * Exits 77 (skip) without a usable GPU. SKV_TEST_QUICK=1 runs small shapes only (for
 * compute-sanitizer).
 */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "ops.h"
#include "test-util.h"

#define TOL 1e-2

static struct skv_backend *gpu, *cpu;
static bool quick;
static uint64_t rng_state;

static uint64_t rnd(void)
{
	rng_state ^= rng_state << 13;
	rng_state ^= rng_state >> 7;
	rng_state ^= rng_state << 17;
	return rng_state;
}
static float urand(void) { return (float)((double)(rnd() >> 11) * 0x1.0p-53 * 2.0 - 1.0); }
static uint32_t irand(uint32_t n) { return (uint32_t)(rnd() % n); }

static float *frand(size_t n, float scale)
{
	float *x = malloc(n * sizeof(float));
	assert_non_null(x);
	for (size_t i = 0; i < n; i++)
		x[i] = skv_bf16_to_f32(skv_f32_to_bf16(urand() * scale)); /* exactly representable in bf16 */
	return x;
}

static void *dalloc(size_t bytes)
{
	void *p = NULL;
	assert_int_equal(gpu->ops->alloc(gpu, bytes, &p), 0);
	return p;
}
static void dfree(void *p) { gpu->ops->free(gpu, p); }

static void *up_bf16(const float *x, size_t n)
{
	uint16_t *h = malloc(n * 2 + 2);
	assert_non_null(h);
	for (size_t i = 0; i < n; i++)
		h[i] = skv_f32_to_bf16(x[i]);
	void *d = dalloc(n * 2);
	assert_int_equal(gpu->ops->upload(gpu, d, h, n * 2), 0);
	assert_int_equal(gpu->ops->sync(gpu), 0);
	free(h);
	return d;
}
static void *up_raw(const void *x, size_t bytes)
{
	void *d = dalloc(bytes);
	assert_int_equal(gpu->ops->upload(gpu, d, x, bytes), 0);
	assert_int_equal(gpu->ops->sync(gpu), 0);
	return d;
}
static void poison(void *d, size_t bytes)
{
	uint8_t *h = malloc(bytes + 1);
	assert_non_null(h);
	memset(h, 0xff, bytes); /* 0xffff is a NaN in bf16, 0xffffffff in fp32 */
	assert_int_equal(gpu->ops->upload(gpu, d, h, bytes), 0);
	assert_int_equal(gpu->ops->sync(gpu), 0);
	free(h);
}
static float *down_bf16(const void *d, size_t n)
{
	uint16_t *h = malloc(n * 2 + 2);
	float *f = malloc(n * sizeof(float) + 4);
	assert_non_null(h);
	assert_non_null(f);
	assert_int_equal(gpu->ops->download(gpu, h, d, n * 2), 0);
	assert_int_equal(gpu->ops->sync(gpu), 0);
	for (size_t i = 0; i < n; i++)
		f[i] = skv_bf16_to_f32(h[i]);
	free(h);
	return f;
}
static float *down_f32(const void *d, size_t n)
{
	float *f = malloc(n * sizeof(float) + 4);
	assert_non_null(f);
	assert_int_equal(gpu->ops->download(gpu, f, d, n * sizeof(float)), 0);
	assert_int_equal(gpu->ops->sync(gpu), 0);
	return f;
}

/* ||out - ref|| / ||ref||; infinite when out holds anything not finite. */
static double rel_err(const float *out, const float *ref, size_t n)
{
	double num = 0.0, den = 0.0;
	for (size_t i = 0; i < n; i++) {
		if (!isfinite(out[i]))
			return INFINITY;
		double dd = (double)out[i] - (double)ref[i];
		num += dd * dd;
		den += (double)ref[i] * (double)ref[i];
	}
	return den > 0.0 ? sqrt(num / den) : sqrt(num);
}

static void check(const char *what, double err, double tol)
{
	printf("  %-58s rel err %.3e %s\n", what, err, err < tol ? "ok" : "FAIL");
	fflush(stdout);
	if (!(err < tol))
		fail_msg("%s: relative error %.3e >= %.1e", what, err, tol);
}

/* ---- embed, gather_rows ---- */

static void test_copy_rows(void **state)
{
	(void)state;
	const uint32_t shapes[][3] = {{1, 64, 10}, {37, 4096, 300}, {5, 100, 7} /* scalar path */, {16, 2056, 64}};
	for (size_t c = 0; c < SKV_ARRAY_SIZE(shapes); c++) {
		const uint32_t n = shapes[c][0], H = shapes[c][1], rows = shapes[c][2];
		float *table = frand((size_t)rows * H, 3.0f);
		int32_t *ids = malloc(n * sizeof(int32_t));
		for (uint32_t i = 0; i < n; i++)
			ids[i] = (int32_t)irand(rows);
		void *dt = up_bf16(table, (size_t)rows * H), *di = up_raw(ids, n * 4), *dout = dalloc((size_t)n * H * 2);
		float *ref = malloc((size_t)n * H * sizeof(float));
		cpu->ops->embed(cpu, ref, table, ids, n, H);
		for (int op = 0; op < 2; op++) {
			poison(dout, (size_t)n * H * 2);
			if (op == 0)
				gpu->ops->embed(gpu, dout, dt, di, n, H);
			else
				gpu->ops->gather_rows(gpu, dout, dt, di, n, H);
			float *out = down_bf16(dout, (size_t)n * H);
			char what[96];
			snprintf(what, sizeof(what), "%s n=%u H=%u", op ? "gather_rows" : "embed", n, H);
			check(what, rel_err(out, ref, (size_t)n * H), 1e-30);
			free(out);
		}
		free(table);
		free(ids);
		free(ref);
		dfree(dt);
		dfree(di);
		dfree(dout);
	}
}

/* ---- rmsnorm ---- */

static void test_rmsnorm(void **state)
{
	(void)state;
	const uint32_t shapes[][2] = {{1, 64}, {7, 4096}, {33, 1000}, {5, 2048}, {3, 8192}, {2, 16384}, {2, 20000}, {9, 4100}};
	for (size_t c = 0; c < SKV_ARRAY_SIZE(shapes); c++) {
		const uint32_t n = shapes[c][0], H = shapes[c][1];
		if (quick && H > 4096)
			continue;
		float *x = frand((size_t)n * H, 4.0f), *w = frand(H, 1.5f), *ref = malloc((size_t)n * H * 4);
		cpu->ops->rmsnorm(cpu, ref, x, w, n, H, 1e-5f);
		void *dx = up_bf16(x, (size_t)n * H), *dw = up_bf16(w, H), *dout = dalloc((size_t)n * H * 2);
		poison(dout, (size_t)n * H * 2);
		gpu->ops->rmsnorm(gpu, dout, dx, dw, n, H, 1e-5f);
		float *out = down_bf16(dout, (size_t)n * H);
		char what[96];
		snprintf(what, sizeof(what), "rmsnorm n=%u H=%u", n, H);
		check(what, rel_err(out, ref, (size_t)n * H), TOL);
		free(out);
		/* in place */
		gpu->ops->rmsnorm(gpu, dx, dx, dw, n, H, 1e-5f);
		out = down_bf16(dx, (size_t)n * H);
		snprintf(what, sizeof(what), "rmsnorm in place n=%u H=%u", n, H);
		check(what, rel_err(out, ref, (size_t)n * H), TOL);
		free(out);
		free(x);
		free(w);
		free(ref);
		dfree(dx);
		dfree(dw);
		dfree(dout);
	}
}

/* ---- gemm ---- */

static void test_gemm(void **state)
{
	(void)state;
	struct {
		uint32_t M, N, K;
		bool bias, acc, f32;
	} cases[] = {
		{1, 6144, 4096, false, false, false}, {7, 129, 64, false, false, false},   {33, 1000, 72, true, false, false},
		{128, 512, 256, false, true, false},  {300, 768, 256, true, true, false},  {3, 4096, 14336, false, true, false},
		{1, 32000, 512, false, false, true},  {17, 2000, 4096, false, false, true}, {5, 300, 128, true, false, true},
		{1000, 1024, 512, false, false, false}, {24, 28672, 4096, false, false, false},
		/* M <= 4 runs the weight-streaming GEMV unless SKV_CUDA_GEMV=0 */
		{2, 129, 72, true, false, false},     {4, 1000, 256, true, true, false},	 {4, 130, 64, false, true, true},
		{2, 7, 8, false, false, false},	      {3, 4096, 4096, false, false, true},
	};
	for (size_t c = 0; c < SKV_ARRAY_SIZE(cases); c++) {
		const uint32_t M = cases[c].M, N = cases[c].N, K = cases[c].K;
		if (quick && (size_t)N * K > (1u << 22))
			continue;
		float *a = frand((size_t)M * K, 1.0f), *w = frand((size_t)N * K, 0.05f), *b = frand(N, 0.5f);
		float *ref = frand((size_t)M * N, 2.0f); /* what accumulate adds to */
		void *da = up_bf16(a, (size_t)M * K), *dw = up_bf16(w, (size_t)N * K), *db = up_bf16(b, N);
		const size_t osz = cases[c].f32 ? 4 : 2;
		void *dout;
		if (cases[c].acc) {
			dout = cases[c].f32 ? up_raw(ref, (size_t)M * N * 4) : up_bf16(ref, (size_t)M * N);
		} else {
			dout = dalloc((size_t)M * N * osz);
			poison(dout, (size_t)M * N * osz);
		}
		cpu->ops->gemm(cpu, ref, a, w, cases[c].bias ? b : NULL, M, N, K, cases[c].acc, cases[c].f32);
		gpu->ops->gemm(gpu, dout, da, dw, cases[c].bias ? db : NULL, M, N, K, cases[c].acc, cases[c].f32);
		float *out = cases[c].f32 ? down_f32(dout, (size_t)M * N) : down_bf16(dout, (size_t)M * N);
		char what[96];
		snprintf(what, sizeof(what), "gemm %ux%ux%u%s%s%s", M, N, K, cases[c].bias ? " bias" : "",
			 cases[c].acc ? " accumulate" : "", cases[c].f32 ? " f32" : "");
		check(what, rel_err(out, ref, (size_t)M * N), TOL);
		free(out);
		free(a);
		free(w);
		free(b);
		free(ref);
		dfree(da);
		dfree(dw);
		dfree(db);
		dfree(dout);
	}
}

/* ---- rope, rope_store_kv ---- */

static float *inv_freq_llama3(uint32_t d)
{
	float *f = malloc(d / 2 * sizeof(float));
	skv_rope_inv_freq(f, d, 500000.0, 1, 8.0, 1.0, 4.0, 8192);
	return f;
}

static void test_rope(void **state)
{
	(void)state;
	const uint32_t shapes[][3] = {{1, 4, 16}, {9, 32, 128}, {300, 8, 64}, {5, 3, 96}};
	for (size_t c = 0; c < SKV_ARRAY_SIZE(shapes); c++) {
		const uint32_t n = shapes[c][0], nh = shapes[c][1], d = shapes[c][2], stride = (nh + 3) * d;
		float *x = frand((size_t)n * stride, 2.0f), *inv = inv_freq_llama3(d);
		int32_t *pos = malloc(n * sizeof(int32_t));
		for (uint32_t i = 0; i < n; i++)
			pos[i] = (int32_t)irand(i % 2 ? 131072 : 4096);
		void *dx = up_bf16(x, (size_t)n * stride), *dp = up_raw(pos, n * 4), *df = up_raw(inv, d / 2 * 4);
		struct skv_rope rc = {.inv_freq = inv, .head_dim = d}, rg = {.inv_freq = df, .head_dim = d};
		cpu->ops->rope(cpu, x, stride, n, nh, pos, &rc);
		gpu->ops->rope(gpu, dx, stride, n, nh, dp, &rg);
		float *out = down_bf16(dx, (size_t)n * stride);
		char what[96];
		snprintf(what, sizeof(what), "rope n=%u heads=%u d=%u (positions to 131072)", n, nh, d);
		check(what, rel_err(out, x, (size_t)n * stride), TOL);
		free(out);
		free(x);
		free(inv);
		free(pos);
		dfree(dx);
		dfree(dp);
		dfree(df);
	}
}

static void test_rope_store_kv(void **state)
{
	(void)state;
	const uint32_t shapes[][4] = {{1, 2, 16, 16}, {40, 8, 128, 16}, {33, 1, 64, 16}, {7, 3, 96, 5}};
	for (size_t c = 0; c < SKV_ARRAY_SIZE(shapes); c++) {
		const uint32_t n = shapes[c][0], nkv = shapes[c][1], d = shapes[c][2], bs = shapes[c][3];
		const uint32_t stride = (4 * nkv + 2 * nkv) * d, row = nkv * d;
		const uint32_t nblocks = SKV_DIV_UP(n, bs) * 2 + 3, slots_n = nblocks * bs;
		float *qkv = frand((size_t)n * stride, 2.0f), *inv = inv_freq_llama3(d);
		float *ck = calloc((size_t)slots_n * row, 4), *cv = calloc((size_t)slots_n * row, 4);
		int32_t *pos = malloc(n * 4), *slots = malloc(n * 4);
		/* distinct random slots, some rows skipped */
		int32_t *perm = malloc(slots_n * 4);
		for (uint32_t i = 0; i < slots_n; i++)
			perm[i] = (int32_t)i;
		for (uint32_t i = slots_n - 1; i > 0; i--) {
			uint32_t j = irand(i + 1);
			int32_t t = perm[i];
			perm[i] = perm[j];
			perm[j] = t;
		}
		for (uint32_t i = 0; i < n; i++) {
			pos[i] = (int32_t)irand(70000);
			slots[i] = (n > 1 && i % 5 == 3) ? -1 : perm[i];
		}
		float *k = qkv + 4 * nkv * d, *v = k + row;
		void *dqkv = up_bf16(qkv, (size_t)n * stride), *dp = up_raw(pos, n * 4), *ds = up_raw(slots, n * 4);
		void *df = up_raw(inv, d / 2 * 4);
		void *dck = dalloc((size_t)slots_n * row * 2), *dcv = dalloc((size_t)slots_n * row * 2);
		poison(dck, (size_t)slots_n * row * 2);
		poison(dcv, (size_t)slots_n * row * 2);
		struct skv_rope rc = {.inv_freq = inv, .head_dim = d}, rg = {.inv_freq = df, .head_dim = d};
		cpu->ops->rope_store_kv(cpu, k, v, stride, n, nkv, pos, slots, &rc, (struct skv_kv_layer){ck, cv});
		char *dk = (char *)dqkv + 4 * nkv * d * 2, *dv = dk + row * 2;
		gpu->ops->rope_store_kv(gpu, dk, dv, stride, n, nkv, dp, ds, &rg, (struct skv_kv_layer){dck, dcv});
		float *gk = down_bf16(dck, (size_t)slots_n * row), *gv = down_bf16(dcv, (size_t)slots_n * row);
		float *gq = down_bf16(dqkv, (size_t)n * stride);
		/* written slots match; the others were never touched (still poisoned) */
		size_t written = 0;
		float *rk = malloc((size_t)n * row * 4), *rv = malloc((size_t)n * row * 4);
		float *ok = malloc((size_t)n * row * 4), *ov = malloc((size_t)n * row * 4);
		bool *used = calloc(slots_n, 1);
		for (uint32_t i = 0; i < n; i++) {
			if (slots[i] < 0)
				continue;
			used[slots[i]] = true;
			memcpy(rk + written * row, ck + (size_t)slots[i] * row, row * 4);
			memcpy(rv + written * row, cv + (size_t)slots[i] * row, row * 4);
			memcpy(ok + written * row, gk + (size_t)slots[i] * row, row * 4);
			memcpy(ov + written * row, gv + (size_t)slots[i] * row, row * 4);
			written++;
		}
		for (uint32_t sl = 0; sl < slots_n; sl++)
			if (!used[sl])
				assert_true(isnan(gk[(size_t)sl * row]) && isnan(gv[(size_t)sl * row + row - 1]));
		char what[96];
		snprintf(what, sizeof(what), "rope_store_kv n=%u kv_heads=%u d=%u block=%u: k", n, nkv, d, bs);
		check(what, rel_err(ok, rk, written * row), TOL);
		snprintf(what, sizeof(what), "rope_store_kv n=%u kv_heads=%u d=%u block=%u: v", n, nkv, d, bs);
		check(what, rel_err(ov, rv, written * row), 1e-30);
		snprintf(what, sizeof(what), "rope_store_kv n=%u kv_heads=%u d=%u: k rotated in place", n, nkv, d);
		check(what, rel_err(gq, qkv, (size_t)n * stride), TOL);
		free(rk);
		free(rv);
		free(ok);
		free(ov);
		free(used);
		free(gk);
		free(gv);
		free(gq);
		free(qkv);
		free(inv);
		free(ck);
		free(cv);
		free(pos);
		free(slots);
		free(perm);
		dfree(dqkv);
		dfree(dp);
		dfree(ds);
		dfree(df);
		dfree(dck);
		dfree(dcv);
	}
}

/* ---- attention ---- */

struct attn_case {
	const char *name;
	uint32_t n_seqs;
	uint32_t nq[6], ctx[6];
	uint32_t nh, nkv, d, bs;
	uint32_t extra_blocks; /* block-table stride beyond what the contexts need */
	bool graph;	       /* record the call in a graph and replay it */
};

static void run_attn_case(const struct attn_case *ac)
{
	const uint32_t nh = ac->nh, nkv = ac->nkv, d = ac->d, bs = ac->bs, S = ac->n_seqs;
	const uint32_t q_stride = (nh + 2 * nkv) * d, row = nkv * d;
	uint32_t n_q = 0, max_ctx = 0, need = 0, maxb = 0;
	for (uint32_t s = 0; s < S; s++) {
		n_q += ac->nq[s];
		max_ctx = SKV_MAX(max_ctx, ac->ctx[s]);
		need += SKV_DIV_UP(ac->ctx[s], bs);
		maxb = SKV_MAX(maxb, SKV_DIV_UP(ac->ctx[s], bs));
	}
	maxb += ac->extra_blocks;
	const uint32_t nblocks = need + 5;
	int32_t *perm = malloc(nblocks * 4), *bt = calloc((size_t)S * maxb, 4);
	for (uint32_t i = 0; i < nblocks; i++)
		perm[i] = (int32_t)i;
	for (uint32_t i = nblocks - 1; i > 0; i--) {
		uint32_t j = irand(i + 1);
		int32_t t = perm[i];
		perm[i] = perm[j];
		perm[j] = t;
	}
	int32_t q_start[7], ctx[6];
	uint32_t used = 0;
	q_start[0] = 0;
	for (uint32_t s = 0; s < S; s++) {
		q_start[s + 1] = q_start[s] + (int32_t)ac->nq[s];
		ctx[s] = (int32_t)ac->ctx[s];
		for (uint32_t b = 0; b < SKV_DIV_UP(ac->ctx[s], bs); b++)
			bt[(size_t)s * maxb + b] = perm[used++];
	}
	const size_t cache_n = (size_t)nblocks * bs * row;
	float *ck = frand(cache_n, 1.0f), *cv = frand(cache_n, 1.0f), *q = frand((size_t)n_q * q_stride, 1.5f);
	float *ref = malloc((size_t)n_q * nh * d * 4);
	struct skv_attn_batch cb = {
		.n_seqs = S, .n_q = n_q, .max_blocks = maxb, .max_ctx = max_ctx, .block_size = bs,
		.q_start = q_start, .ctx_len = ctx, .block_tables = bt, .host_q_start = q_start, .host_ctx_len = ctx,
	};
	cpu->ops->attention(cpu, ref, q, q_stride, &cb, (struct skv_kv_layer){ck, cv}, nh, nkv, d);

	void *dk = up_bf16(ck, cache_n), *dv = up_bf16(cv, cache_n), *dq = up_bf16(q, (size_t)n_q * q_stride);
	void *dqs = up_raw(q_start, (S + 1) * 4), *dctx = up_raw(ctx, S * 4), *dbt = up_raw(bt, (size_t)S * maxb * 4);
	void *dout = dalloc((size_t)n_q * nh * d * 2);
	poison(dout, (size_t)n_q * nh * d * 2);
	struct skv_attn_batch gb = cb;
	gb.q_start = dqs;
	gb.ctx_len = dctx;
	gb.block_tables = dbt;
	bool recorded = false;
	if (ac->graph && gpu->ops->graph_begin && gpu->ops->graph_begin(gpu) == 0) {
		gpu->ops->attention(gpu, dout, dq, q_stride, &gb, (struct skv_kv_layer){dk, dv}, nh, nkv, d);
		static uint64_t key = 1000;
		assert_int_equal(gpu->ops->graph_end(gpu, ++key), 0);
		assert_int_equal(gpu->ops->graph_launch(gpu, key), 0);
		recorded = true;
	} else {
		gpu->ops->attention(gpu, dout, dq, q_stride, &gb, (struct skv_kv_layer){dk, dv}, nh, nkv, d);
	}
	float *out = down_bf16(dout, (size_t)n_q * nh * d);
	char what[128];
	snprintf(what, sizeof(what), "attention %s h=%u/%u d=%u%s", ac->name, nh, nkv, d, recorded ? " (graph)" : "");
	check(what, rel_err(out, ref, (size_t)n_q * nh * d), TOL);
	free(out);
	free(perm);
	free(bt);
	free(ck);
	free(cv);
	free(q);
	free(ref);
	dfree(dk);
	dfree(dv);
	dfree(dq);
	dfree(dqs);
	dfree(dctx);
	dfree(dbt);
	dfree(dout);
}

static void test_attention(void **state)
{
	(void)state;
	const struct attn_case cases[] = {
		/* prefill kernel (d 64 / 128): whole prompts, chunks of a longer context, mixed with decode rows */
		{"prefill 1 seq", 1, {200}, {200}, 32, 8, 128, 16, 0, false},
		{"prefill chunks+decode", 4, {130, 1, 64, 7}, {300, 50, 64, 1000}, 8, 2, 128, 16, 3, false},
		{"prefill mqa", 3, {129, 256, 1}, {129, 700, 33}, 8, 1, 128, 16, 0, false},
		{"prefill mha d64", 2, {100, 17}, {333, 17}, 4, 4, 64, 16, 0, false},
		{"prefill gqa d64 block 7", 2, {70, 3}, {70, 90}, 16, 4, 64, 7, 1, false},
		/* decode kernel: one query per sequence, split contexts */
		{"decode batch", 5, {1, 1, 1, 1, 1}, {1, 17, 300, 2048, 64}, 32, 8, 128, 16, 0, false},
		{"decode 1 long", 1, {1}, {3000}, 32, 8, 128, 16, 0, false},
		{"decode mqa d64", 3, {1, 1, 1}, {900, 5, 129}, 16, 1, 64, 16, 2, false},
		{"decode group 2 d64", 2, {1, 1}, {1000, 40}, 8, 4, 64, 16, 0, false},
		{"decode group 3", 2, {1, 1}, {400, 1}, 6, 2, 128, 16, 0, false},
		{"decode mqa 32 heads", 2, {1, 1}, {700, 64}, 32, 1, 128, 16, 0, false},
		{"decode capacity (graph)", 4, {1, 1, 1, 1}, {1500, 7, 800, 2100}, 32, 8, 128, 16, 40, true},
		{"decode batch 1 (graph)", 1, {1}, {2048}, 32, 8, 128, 16, 100, true},
		/* generic kernel: other head dims */
		{"generic d16", 3, {20, 1, 5}, {20, 9, 40}, 4, 2, 16, 16, 0, false},
		{"generic d96", 2, {33, 1}, {60, 100}, 6, 3, 96, 16, 0, false},
		{"generic d32 decode", 2, {1, 1}, {50, 300}, 8, 2, 32, 16, 0, false},
		/* prefill over several 128-key tiles, query tiles not aligned to them (a chunk of a
		 * longer context), several tiles per sequence */
		{"prefill long chunk", 1, {700}, {1100}, 32, 8, 128, 16, 0, false},
		{"prefill long d64", 2, {300, 260}, {300, 900}, 8, 2, 64, 16, 0, false},
	};
	for (size_t c = 0; c < SKV_ARRAY_SIZE(cases); c++) {
		if (quick && (c == 1 || c == 6 || c == 11 || c == 12 || c >= 16))
			continue;
		run_attn_case(&cases[c]);
	}
}

/* ---- silu_mul ---- */

static void test_silu_mul(void **state)
{
	(void)state;
	const uint32_t shapes[][2] = {{3, 14336}, {5, 100}, {64, 768}, {1, 7}};
	for (size_t c = 0; c < SKV_ARRAY_SIZE(shapes); c++) {
		const uint32_t n = shapes[c][0], I = shapes[c][1];
		float *gu = frand((size_t)n * 2 * I, 6.0f), *ref = malloc((size_t)n * I * 4);
		cpu->ops->silu_mul(cpu, ref, gu, n, I);
		void *dgu = up_bf16(gu, (size_t)n * 2 * I), *dout = dalloc((size_t)n * I * 2);
		poison(dout, (size_t)n * I * 2);
		gpu->ops->silu_mul(gpu, dout, dgu, n, I);
		float *out = down_bf16(dout, (size_t)n * I);
		char what[96];
		snprintf(what, sizeof(what), "silu_mul n=%u inter=%u", n, I);
		check(what, rel_err(out, ref, (size_t)n * I), TOL);
		free(out);
		free(gu);
		free(ref);
		dfree(dgu);
		dfree(dout);
	}
}

/* ---- sample ---- */

static void test_sample(void **state)
{
	(void)state;
	const struct skv_sample_params kinds[] = {
		{.temperature = 0.0f, .top_p = 1.0f},
		{.temperature = 0.8f, .top_p = 1.0f},
		{.temperature = 1.0f, .top_p = 1.0f, .top_k = 40},
		{.temperature = 0.7f, .top_p = 0.9f},
		{.temperature = 1.3f, .top_p = 0.5f, .top_k = 100},
		{.temperature = 1.0f, .top_p = 1.0f, .top_k = 1},
		{.temperature = 2.0f, .top_p = 0.99f},
		{.temperature = 0.05f, .top_p = 0.3f, .top_k = 7},
	};
	const uint32_t vocabs[] = {50, 1000, 128256};
	uint32_t agree = 0, total = 0;
	for (size_t vi = 0; vi < SKV_ARRAY_SIZE(vocabs); vi++) {
		const uint32_t V = vocabs[vi], n = quick ? 8 : 48;
		if (quick && V > 1000)
			continue;
		float *l = malloc((size_t)n * V * 4);
		struct skv_sample_params *sp = calloc(n, sizeof(*sp));
		for (uint32_t r = 0; r < n; r++) {
			const bool ties = r % 3 == 2;
			for (uint32_t i = 0; i < V; i++) {
				float x = urand() * 4.0f + urand() * 4.0f;
				l[(size_t)r * V + i] = ties ? roundf(x * 2.0f) / 2.0f : x; /* ties: many equal logits */
			}
			sp[r] = kinds[r % SKV_ARRAY_SIZE(kinds)];
			sp[r].seed = rnd();
			sp[r].step = irand(1000);
		}
		int32_t *ref = malloc(n * 4);
		cpu->ops->sample(cpu, ref, l, sp, n, V);
		void *dl = up_raw(l, (size_t)n * V * 4), *dsp = up_raw(sp, n * sizeof(*sp)), *dout = dalloc(n * 4);
		poison(dout, n * 4);
		gpu->ops->sample(gpu, dout, dl, dsp, n, V);
		int32_t *out = malloc(n * 4);
		assert_int_equal(gpu->ops->download(gpu, out, dout, n * 4), 0);
		assert_int_equal(gpu->ops->sync(gpu), 0);
		for (uint32_t r = 0; r < n; r++) {
			total++;
			if (out[r] == ref[r])
				agree++;
			else
				printf("  sample V=%u row %u (T=%g k=%u p=%g%s): gpu %d cpu %d\n", V, r,
				       (double)sp[r].temperature, sp[r].top_k, (double)sp[r].top_p, r % 3 == 2 ? ", ties" : "",
				       out[r], ref[r]);
		}
		free(l);
		free(sp);
		free(ref);
		free(out);
		dfree(dl);
		dfree(dsp);
		dfree(dout);
	}
	printf("  sample: %u of %u rows pick the CPU's token\n", agree, total);
	assert_int_equal(agree, total);
}

static int setup(void **state)
{
	(void)state;
	struct skv_err err = {0};
	if (!skv_backend_cuda_available() || skv_backend_cuda_new(0, &gpu, &err) < 0) {
		printf("no usable GPU (%s): skipping\n", err.msg[0] ? err.msg : "none found");
		exit(77);
	}
	if (skv_backend_cpu_new(0, &cpu, &err) < 0)
		return -1;
	assert_int_equal(gpu->ops->prepare(gpu, 8192, 4096, 128256), 0);
	if (gpu->ops->prepare_attention)
		assert_int_equal(gpu->ops->prepare_attention(gpu, 32, 128), 0);
	assert_int_equal(cpu->ops->prepare(cpu, 8192, 4096, 128256), 0);
	return 0;
}

static int teardown(void **state)
{
	(void)state;
	if (gpu)
		gpu->ops->destroy(gpu);
	if (cpu)
		cpu->ops->destroy(cpu);
	return 0;
}

int main(void)
{
	const char *s = getenv("SKV_TEST_SEED");
	rng_state = s ? strtoull(s, NULL, 0) : (uint64_t)time(NULL) * 2654435761u + 1;
	if (!rng_state)
		rng_state = 1;
	quick = getenv("SKV_TEST_QUICK") != NULL;
	printf("test-cuda-ops: seed %llu%s\n", (unsigned long long)rng_state, quick ? " (quick)" : "");
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_copy_rows),     cmocka_unit_test(test_rmsnorm),	   cmocka_unit_test(test_gemm),
		cmocka_unit_test(test_rope),	      cmocka_unit_test(test_rope_store_kv), cmocka_unit_test(test_attention),
		cmocka_unit_test(test_silu_mul),      cmocka_unit_test(test_sample),
	};
	return cmocka_run_group_tests(tests, setup, teardown);
}
