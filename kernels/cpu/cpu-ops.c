/* cpu-ops.c: the reference backend. fp32 weights, activations and KV; every op is the plain
 * definition, written to be read and trusted; the CUDA kernels are checked against these.
 *
 * Parallelism: GEMMs go through OpenBLAS (all cores); attention and the row-wise ops use
 * OpenMP over rows. Nothing here allocates per call except the attention score scratch, which
 * grows (rarely) with the longest context seen.
 */
#include "cpu-internal.h"

#include <cblas.h>
#include <math.h>
#include <omp.h>
#include <string.h>

static void cpu_embed(struct skv_backend *be, void *out, const void *table, const int32_t *ids, uint32_t n, uint32_t H)
{
	(void)be;
	for (uint32_t i = 0; i < n; i++)
		memcpy((float *)out + (size_t)i * H, (const float *)table + (size_t)ids[i] * H, H * sizeof(float));
}

static void cpu_rmsnorm(struct skv_backend *be, void *out, const void *x, const void *w, uint32_t n, uint32_t H,
			float eps)
{
	(void)be;
#pragma omp parallel for schedule(static) if (n >= 16)
	for (uint32_t r = 0; r < n; r++) {
		const float *xr = (const float *)x + (size_t)r * H;
		float *o = (float *)out + (size_t)r * H;
		float ss = 0.0f;
		for (uint32_t i = 0; i < H; i++)
			ss += xr[i] * xr[i];
		float inv = 1.0f / sqrtf(ss / (float)H + eps);
		for (uint32_t i = 0; i < H; i++)
			o[i] = ((const float *)w)[i] * (xr[i] * inv);
	}
}

static void cpu_gemm(struct skv_backend *be, void *out, const void *a, const void *w, const void *bias, uint32_t M,
		     uint32_t N, uint32_t K, bool accumulate, bool out_f32)
{
	(void)be;
	(void)out_f32; /* every activation is fp32 here */
	if (M == 0)
		return;
	cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasTrans, (int)M, (int)N, (int)K, 1.0f, a, (int)K, w, (int)K,
		    accumulate ? 1.0f : 0.0f, out, (int)N);
	if (bias) {
		for (uint32_t r = 0; r < M; r++) {
			float *o = (float *)out + (size_t)r * N;
			for (uint32_t c = 0; c < N; c++)
				o[c] += ((const float *)bias)[c];
		}
	}
}

/* Rotate-half RoPE on one head of d values at position p. The angle is computed as transformers
 * does: fp32 product of position and inverse frequency, then cos/sin. */
static void rope_head(float *x, uint32_t d, int32_t p, const float *inv_freq)
{
	uint32_t half = d / 2;
	for (uint32_t i = 0; i < half; i++) {
		float ang = (float)p * inv_freq[i];
		float c = cosf(ang), s = sinf(ang);
		float x1 = x[i], x2 = x[i + half];
		x[i] = x1 * c - x2 * s;
		x[i + half] = x2 * c + x1 * s;
	}
}

/* Every head of one row, at position p. */
static void rope_row(float *x, uint32_t n_heads, int32_t p, const struct skv_rope *rope)
{
	for (uint32_t h = 0; h < n_heads; h++)
		rope_head(x + (size_t)h * rope->head_dim, rope->head_dim, p, rope->inv_freq);
}

static void cpu_rope(struct skv_backend *be, void *x, uint32_t stride, uint32_t n, uint32_t n_heads,
		     const int32_t *pos, const struct skv_rope *rope)
{
	(void)be;
#pragma omp parallel for schedule(static) if (n >= 16)
	for (uint32_t r = 0; r < n; r++)
		rope_row((float *)x + (size_t)r * stride, n_heads, pos[r], rope);
}

static void cpu_rope_store_kv(struct skv_backend *be, void *k, const void *v, uint32_t stride, uint32_t n,
			      uint32_t n_kv_heads, const int32_t *pos, const int32_t *slots, const struct skv_rope *rope,
			      struct skv_kv_layer cache)
{
	const size_t row = (size_t)n_kv_heads * rope->head_dim;

	(void)be;
#pragma omp parallel for schedule(static) if (n >= 16)
	for (uint32_t r = 0; r < n; r++) {
		if (slots[r] < 0) /* a padding row: nothing to rotate or store */
			continue;
		rope_row((float *)k + (size_t)r * stride, n_kv_heads, pos[r], rope);
		memcpy((float *)cache.k + (size_t)slots[r] * row, (const float *)k + (size_t)r * stride,
		       row * sizeof(float));
		memcpy((float *)cache.v + (size_t)slots[r] * row, (const float *)v + (size_t)r * stride,
		       row * sizeof(float));
	}
}

static void cpu_attention(struct skv_backend *be, void *out, const void *q, uint32_t q_stride,
			  const struct skv_attn_batch *b, struct skv_kv_layer cache, uint32_t n_heads,
			  uint32_t n_kv_heads, uint32_t d)
{
	struct skv_cpu_backend *cb = (struct skv_cpu_backend *)be;
	const uint32_t group = n_heads / n_kv_heads;
	const size_t kv_row = (size_t)n_kv_heads * d;
	const float scale = 1.0f / sqrtf((float)d);

	if (skv_cpu_scratch_reserve(cb, b->max_ctx) < 0)
		return; /* cannot happen after the engine reserved max context at start-up */

	for (uint32_t s = 0; s < b->n_seqs; s++) {
		const int32_t q0 = b->host_q_start[s], nq = b->host_q_start[s + 1] - q0;
		const int32_t ctx = b->host_ctx_len[s];
		const int32_t *bt = b->block_tables + (size_t)s * b->max_blocks;
		const int32_t work = nq * (int32_t)n_heads;

		/* the scratch has a row per thread of this backend: the team must not be larger
		 * (omp_set_num_threads is process-wide, and another backend may have changed it) */
#pragma omp parallel for schedule(dynamic, 1) if (work > 1) num_threads(cb->threads)
		for (int32_t w = 0; w < work; w++) {
			const int32_t j = w / (int32_t)n_heads, h = w % (int32_t)n_heads;
			const int32_t pos = ctx - nq + j; /* attends to 0..pos */
			const float *qh = (const float *)q + (size_t)(q0 + j) * q_stride + (size_t)h * d;
			float *oh = (float *)out + (size_t)(q0 + j) * n_heads * d + (size_t)h * d;
			float *sc = cb->scratch + (size_t)omp_get_thread_num() * cb->scratch_per_thread;
			const size_t kvh = (size_t)(h / (int32_t)group) * d;
			float mx = -INFINITY, sum = 0.0f;

			for (int32_t t = 0; t <= pos; t++) {
				size_t slot = (size_t)bt[t / (int32_t)b->block_size] * b->block_size +
					      (size_t)(t % (int32_t)b->block_size);
				const float *kt = (const float *)cache.k + slot * kv_row + kvh;
				float dot = 0.0f;
#pragma omp simd reduction(+ : dot)
				for (uint32_t i = 0; i < d; i++)
					dot += qh[i] * kt[i];
				sc[t] = dot * scale;
				mx = fmaxf(mx, sc[t]);
			}
#pragma omp simd reduction(+ : sum)
			for (int32_t t = 0; t <= pos; t++) {
				sc[t] = expf(sc[t] - mx);
				sum += sc[t];
			}
			memset(oh, 0, d * sizeof(float));
			for (int32_t t = 0; t <= pos; t++) {
				size_t slot = (size_t)bt[t / (int32_t)b->block_size] * b->block_size +
					      (size_t)(t % (int32_t)b->block_size);
				const float *vt = (const float *)cache.v + slot * kv_row + kvh;
				float p = sc[t] / sum;
#pragma omp simd
				for (uint32_t i = 0; i < d; i++)
					oh[i] += p * vt[i];
			}
		}
	}
}

static void cpu_silu_mul(struct skv_backend *be, void *out, const void *gu, uint32_t n, uint32_t inter)
{
	(void)be;
#pragma omp parallel for schedule(static) if (n >= 16)
	for (uint32_t r = 0; r < n; r++) {
		const float *g = (const float *)gu + (size_t)r * 2 * inter, *u = g + inter;
		float *o = (float *)out + (size_t)r * inter;
		for (uint32_t i = 0; i < inter; i++)
			o[i] = g[i] / (1.0f + expf(-g[i])) * u[i];
	}
}

static void cpu_gather_rows(struct skv_backend *be, void *out, const void *in, const int32_t *idx, uint32_t n,
			    uint32_t H)
{
	(void)be;
	for (uint32_t i = 0; i < n; i++)
		memcpy((float *)out + (size_t)i * H, (const float *)in + (size_t)idx[i] * H, H * sizeof(float));
}

const struct skv_ops skv_cpu_ops = {
	.name = "cpu",
	.act_dtype = SKV_DTYPE_F32,
	.w_dtype = SKV_DTYPE_F32,
	.kv_dtype = SKV_DTYPE_F32,
	.destroy = skv_cpu_destroy,
	.alloc = skv_cpu_alloc,
	.free = skv_cpu_free,
	.upload = skv_cpu_copy,
	.download = skv_cpu_copy,
	.host_alloc = skv_cpu_alloc,
	.host_free = skv_cpu_free,
	.sync = skv_cpu_sync,
	.prepare = skv_cpu_prepare,
	.embed = cpu_embed,
	.rmsnorm = cpu_rmsnorm,
	.gemm = cpu_gemm,
	.rope = cpu_rope,
	.rope_store_kv = cpu_rope_store_kv,
	.attention = cpu_attention,
	.silu_mul = cpu_silu_mul,
	.gather_rows = cpu_gather_rows,
	.sample = skv_cpu_sample,
};
