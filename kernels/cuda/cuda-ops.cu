/* cuda-ops.cu: the row-wise ops: embedding and row gathers, RMSNorm, RoPE (and RoPE fused with
 * the paged KV store), SiLU-and-multiply. All bf16 in and out, fp32 arithmetic, 16-byte accesses
 * where rows allow (a row length that is a multiple of 8 and 16-byte aligned pointers), a plain
 * element loop otherwise. They are memory-bound: one read and one write of each element.
 *
 * RoPE angles are computed as the CPU reference does: the fp32 product of position and inverse
 * frequency, then precise sincosf (not __sinf: large positions need the full range reduction).
 */
#include "cuda-internal.h"

union pack8 {
	uint4 u;
	__nv_bfloat162 h[4];
};

/* ---- embed and gather_rows: out[i, :] = in[idx[i], :] ---- */

__global__ void k_copy_rows_vec(uint4 *out, const uint4 *in, const int32_t *idx, uint32_t chunks)
{
	const uint4 *src = in + (size_t)idx[blockIdx.x] * chunks;
	uint4 *dst = out + (size_t)blockIdx.x * chunks;
	for (uint32_t c = threadIdx.x; c < chunks; c += blockDim.x)
		dst[c] = src[c];
}

__global__ void k_copy_rows(bf16 *out, const bf16 *in, const int32_t *idx, uint32_t H)
{
	const bf16 *src = in + (size_t)idx[blockIdx.x] * H;
	bf16 *dst = out + (size_t)blockIdx.x * H;
	for (uint32_t c = threadIdx.x; c < H; c += blockDim.x)
		dst[c] = src[c];
}

static void copy_rows(struct skv_cuda_backend *cb, void *out, const void *in, const int32_t *idx, uint32_t n,
		      uint32_t H, const char *what)
{
	if (n == 0 || skv_cuda_dead(cb))
		return;
	uint32_t tok = skv_cuda_prof_begin(cb);
	if (H % 8 == 0 && skv_aligned16(out) && skv_aligned16(in)) {
		uint32_t chunks = H / 8;
		k_copy_rows_vec<<<n, SKV_MIN(256u, SKV_ALIGN_UP(chunks, 32u)), 0, cb->stream>>>((uint4 *)out,
												(const uint4 *)in, idx, chunks);
	} else {
		k_copy_rows<<<n, SKV_MIN(256u, SKV_ALIGN_UP(H, 32u)), 0, cb->stream>>>((bf16 *)out, (const bf16 *)in,
										     idx, H);
	}
	skv_cuda_launched(cb, what);
	skv_cuda_prof_end(cb, tok, what, 0.0, 4.0 * n * H);
}

void skv_cuda_embed(struct skv_backend *be, void *out, const void *table, const int32_t *ids, uint32_t n, uint32_t H)
{
	copy_rows(skv_cuda(be), out, table, ids, n, H, "embed");
}

void skv_cuda_gather_rows(struct skv_backend *be, void *out, const void *in, const int32_t *idx, uint32_t n,
			  uint32_t H)
{
	copy_rows(skv_cuda(be), out, in, idx, n, H, "gather_rows");
}

/* ---- RMSNorm: out = w * (x * 1/sqrt(mean(x^2) + eps)), one block per row ---- */

__device__ __forceinline__ float block_sum(float v, float *red)
{
	for (int o = 16; o > 0; o >>= 1)
		v += __shfl_xor_sync(0xffffffffu, v, o);
	const int warp = threadIdx.x >> 5, lane = threadIdx.x & 31, nw = blockDim.x >> 5;
	if (lane == 0)
		red[warp] = v;
	__syncthreads();
	v = lane < nw ? red[lane] : 0.0f;
	for (int o = 16; o > 0; o >>= 1)
		v += __shfl_xor_sync(0xffffffffu, v, o);
	return v;
}

/* H % 8 == 0: each thread keeps up to VPT 16-byte chunks of the row in registers. */
template <int VPT>
__global__ void __launch_bounds__(256) k_rmsnorm_vec(bf16 *out, const bf16 *x, const bf16 *w, uint32_t H, float eps)
{
	__shared__ float red[32];
	const uint32_t chunks = H / 8;
	const uint4 *xr = (const uint4 *)(x + (size_t)blockIdx.x * H);
	uint4 *o = (uint4 *)(out + (size_t)blockIdx.x * H);
	pack8 v[VPT];
	float ss = 0.0f;
#pragma unroll
	for (int j = 0; j < VPT; j++) {
		uint32_t c = threadIdx.x + j * blockDim.x;
		if (c < chunks) {
			v[j].u = xr[c];
#pragma unroll
			for (int e = 0; e < 4; e++) {
				float2 f = __bfloat1622float2(v[j].h[e]);
				ss += f.x * f.x + f.y * f.y;
			}
		}
	}
	ss = block_sum(ss, red);
	const float inv = 1.0f / sqrtf(ss / (float)H + eps);
#pragma unroll
	for (int j = 0; j < VPT; j++) {
		uint32_t c = threadIdx.x + j * blockDim.x;
		if (c < chunks) {
			pack8 wv, r;
			wv.u = ((const uint4 *)w)[c];
#pragma unroll
			for (int e = 0; e < 4; e++) {
				float2 f = __bfloat1622float2(v[j].h[e]), g = __bfloat1622float2(wv.h[e]);
				r.h[e] = __floats2bfloat162_rn(g.x * (f.x * inv), g.y * (f.y * inv));
			}
			o[c] = r.u;
		}
	}
}

__global__ void __launch_bounds__(256) k_rmsnorm(bf16 *out, const bf16 *x, const bf16 *w, uint32_t H, float eps)
{
	__shared__ float red[32];
	const bf16 *xr = x + (size_t)blockIdx.x * H;
	bf16 *o = out + (size_t)blockIdx.x * H;
	float ss = 0.0f;
	for (uint32_t i = threadIdx.x; i < H; i += blockDim.x) {
		float f = __bfloat162float(xr[i]);
		ss += f * f;
	}
	ss = block_sum(ss, red);
	const float inv = 1.0f / sqrtf(ss / (float)H + eps);
	for (uint32_t i = threadIdx.x; i < H; i += blockDim.x)
		o[i] = __float2bfloat16_rn(__bfloat162float(w[i]) * (__bfloat162float(xr[i]) * inv));
}

void skv_cuda_rmsnorm(struct skv_backend *be, void *out, const void *x, const void *w, uint32_t n, uint32_t H,
		      float eps)
{
	struct skv_cuda_backend *cb = skv_cuda(be);
	if (n == 0 || skv_cuda_dead(cb))
		return;
	uint32_t tok = skv_cuda_prof_begin(cb);
	bf16 *o = (bf16 *)out;
	const bf16 *xx = (const bf16 *)x, *ww = (const bf16 *)w;
	const uint32_t chunks = H / 8;
	const bool vec = H % 8 == 0 && skv_aligned16(out) && skv_aligned16(x) && skv_aligned16(w);
	if (vec && chunks <= 256) {
		k_rmsnorm_vec<1><<<n, SKV_ALIGN_UP(chunks, 32u), 0, cb->stream>>>(o, xx, ww, H, eps);
	} else if (vec && chunks <= 512) {
		k_rmsnorm_vec<2><<<n, 256, 0, cb->stream>>>(o, xx, ww, H, eps);
	} else if (vec && chunks <= 1024) {
		k_rmsnorm_vec<4><<<n, 256, 0, cb->stream>>>(o, xx, ww, H, eps);
	} else if (vec && chunks <= 2048) {
		k_rmsnorm_vec<8><<<n, 256, 0, cb->stream>>>(o, xx, ww, H, eps);
	} else {
		k_rmsnorm<<<n, 256, 0, cb->stream>>>(o, xx, ww, H, eps);
	}
	skv_cuda_launched(cb, "rmsnorm");
	skv_cuda_prof_end(cb, tok, "rmsnorm", 4.0 * n * H, 4.0 * n * H);
}

/* ---- RoPE (rotate-half), one block per row ----
 * The row's cos/sin (d/2 of them) go to shared memory first; then threads own pairs of adjacent
 * rotation indices (i, i+1) of every head, so a row's heads rotate in parallel with 4-byte
 * accesses (each thread handles heads h0, h0 + hpb, ...). Needs d % 4 == 0 and an even stride
 * (bf16x2 accesses), which every model here has; otherwise one element at a time. */

struct rope_layout {
	uint32_t tpr; /* threads per head: (d / 2) / 2 pairs, or d / 2 singles */
	uint32_t hpb; /* heads in parallel */
};

static rope_layout rope_threads(uint32_t d, uint32_t n_heads, bool pairs)
{
	rope_layout r;
	r.tpr = pairs ? d / 4 : d / 2;
	r.hpb = SKV_MAX(1u, SKV_MIN(n_heads, 256u / SKV_MAX(r.tpr, 1u)));
	return r;
}

__device__ __forceinline__ void row_sincos(float *cs, const float *inv_freq, float p, uint32_t half)
{
	for (uint32_t i = threadIdx.x; i < half; i += blockDim.x) {
		float s, c;
		sincosf(p * inv_freq[i], &s, &c);
		cs[i] = c;
		cs[half + i] = s;
	}
	__syncthreads();
}

/* Rotates heads [0, n_heads) of `row`, writing the result in place and, when dst, to dst too. */
__device__ __forceinline__ void rope_row(bf16 *row, bf16 *dst, const float *cs, uint32_t n_heads, uint32_t d,
					 rope_layout L, bool pairs)
{
	const uint32_t half = d / 2, j = threadIdx.x % L.tpr;
	for (uint32_t h = threadIdx.x / L.tpr; h < n_heads; h += L.hpb) {
		bf16 *x = row + (size_t)h * d;
		if (pairs) {
			const uint32_t i = 2 * j;
			float2 x1 = __bfloat1622float2(*(const __nv_bfloat162 *)(x + i));
			float2 x2 = __bfloat1622float2(*(const __nv_bfloat162 *)(x + half + i));
			const float c0 = cs[i], c1 = cs[i + 1], s0 = cs[half + i], s1 = cs[half + i + 1];
			__nv_bfloat162 r1 = __floats2bfloat162_rn(x1.x * c0 - x2.x * s0, x1.y * c1 - x2.y * s1);
			__nv_bfloat162 r2 = __floats2bfloat162_rn(x2.x * c0 + x1.x * s0, x2.y * c1 + x1.y * s1);
			*(__nv_bfloat162 *)(x + i) = r1;
			*(__nv_bfloat162 *)(x + half + i) = r2;
			if (dst) {
				*(__nv_bfloat162 *)(dst + (size_t)h * d + i) = r1;
				*(__nv_bfloat162 *)(dst + (size_t)h * d + half + i) = r2;
			}
		} else {
			const uint32_t i = j;
			const float c = cs[i], sn = cs[half + i];
			float x1 = __bfloat162float(x[i]), x2 = __bfloat162float(x[half + i]);
			bf16 r1 = __float2bfloat16_rn(x1 * c - x2 * sn), r2 = __float2bfloat16_rn(x2 * c + x1 * sn);
			x[i] = r1;
			x[half + i] = r2;
			if (dst) {
				dst[(size_t)h * d + i] = r1;
				dst[(size_t)h * d + half + i] = r2;
			}
		}
	}
}

__global__ void k_rope(bf16 *x, uint32_t stride, uint32_t n_heads, const int32_t *pos, const float *inv_freq,
		       uint32_t d, rope_layout L, bool pairs)
{
	extern __shared__ float cs[]; /* [d]: cos then sin */
	row_sincos(cs, inv_freq, (float)pos[blockIdx.x], d / 2);
	rope_row(x + (size_t)blockIdx.x * stride, NULL, cs, n_heads, d, L, pairs);
}

void skv_cuda_rope(struct skv_backend *be, void *x, uint32_t stride, uint32_t n, uint32_t n_heads, const int32_t *pos,
		   const struct skv_rope *rope)
{
	struct skv_cuda_backend *cb = skv_cuda(be);
	if (n == 0 || skv_cuda_dead(cb))
		return;
	uint32_t tok = skv_cuda_prof_begin(cb);
	const uint32_t d = rope->head_dim;
	const bool pairs = d % 4 == 0 && stride % 2 == 0 && ((uintptr_t)x & 3) == 0;
	const rope_layout L = rope_threads(d, n_heads, pairs);
	k_rope<<<n, SKV_MAX(L.tpr * L.hpb, 32u), d * sizeof(float), cb->stream>>>((bf16 *)x, stride, n_heads, pos,
										    rope->inv_freq, d, L, pairs);
	skv_cuda_launched(cb, "rope");
	skv_cuda_prof_end(cb, tok, "rope", 6.0 * n * n_heads * (d / 2), 4.0 * n * n_heads * d);
}

/* RoPE on k (in place) and the store of k and v into their cache slot, one block per row. */
__global__ void k_rope_store_kv(bf16 *k, const bf16 *v, uint32_t stride, uint32_t n_kv_heads, const int32_t *pos,
				const int32_t *slots, const float *inv_freq, uint32_t d, bf16 *ck, bf16 *cv, bool vec,
				rope_layout L, bool pairs)
{
	extern __shared__ float cs[]; /* [d]: cos then sin */
	const int32_t slot = slots[blockIdx.x];
	if (slot < 0)
		return;
	const uint32_t row_len = n_kv_heads * d;
	const bf16 *vr = v + (size_t)blockIdx.x * stride;
	bf16 *dv = cv + (size_t)slot * row_len;
	if (vec) {
		for (uint32_t c = threadIdx.x; c < row_len / 8; c += blockDim.x)
			((uint4 *)dv)[c] = ((const uint4 *)vr)[c];
	} else {
		for (uint32_t c = threadIdx.x; c < row_len; c += blockDim.x)
			dv[c] = vr[c];
	}
	row_sincos(cs, inv_freq, (float)pos[blockIdx.x], d / 2);
	rope_row(k + (size_t)blockIdx.x * stride, ck + (size_t)slot * row_len, cs, n_kv_heads, d, L, pairs);
}

void skv_cuda_rope_store_kv(struct skv_backend *be, void *k, const void *v, uint32_t stride, uint32_t n,
			    uint32_t n_kv_heads, const int32_t *pos, const int32_t *slots, const struct skv_rope *rope,
			    struct skv_kv_layer cache)
{
	struct skv_cuda_backend *cb = skv_cuda(be);
	if (n == 0 || skv_cuda_dead(cb))
		return;
	uint32_t tok = skv_cuda_prof_begin(cb);
	const uint32_t d = rope->head_dim, row_len = n_kv_heads * d;
	const bool vec = row_len % 8 == 0 && skv_aligned16(v) && skv_aligned16(cache.v) && (stride % 8) == 0;
	const bool pairs = d % 4 == 0 && stride % 2 == 0 && ((uintptr_t)k & 3) == 0;
	const rope_layout L = rope_threads(d, n_kv_heads, pairs);
	const uint32_t threads = SKV_MAX(L.tpr * L.hpb, 32u);
	k_rope_store_kv<<<n, threads, d * sizeof(float), cb->stream>>>((bf16 *)k, (const bf16 *)v, stride, n_kv_heads,
									pos, slots, rope->inv_freq, d, (bf16 *)cache.k,
									(bf16 *)cache.v, vec, L, pairs);
	skv_cuda_launched(cb, "rope_store_kv");
	skv_cuda_prof_end(cb, tok, "rope_store_kv", 6.0 * n * n_kv_heads * (d / 2), 2.0 * 5.0 * n * row_len);
}

/* ---- SiLU-and-multiply: out[r, i] = silu(gu[r, i]) * gu[r, inter + i] ---- */

__device__ __forceinline__ float silu_mul1(float g, float u) { return g / (1.0f + expf(-g)) * u; }

__global__ void k_silu_mul_vec(uint4 *out, const uint4 *gu, uint32_t chunks, size_t total)
{
	size_t i = (size_t)blockIdx.x * blockDim.x + threadIdx.x;
	if (i >= total)
		return;
	size_t r = i / chunks, c = i % chunks;
	pack8 g, u, o;
	g.u = gu[r * 2 * chunks + c];
	u.u = gu[r * 2 * chunks + chunks + c];
#pragma unroll
	for (int e = 0; e < 4; e++) {
		float2 a = __bfloat1622float2(g.h[e]), b = __bfloat1622float2(u.h[e]);
		o.h[e] = __floats2bfloat162_rn(silu_mul1(a.x, b.x), silu_mul1(a.y, b.y));
	}
	out[i] = o.u;
}

__global__ void k_silu_mul(bf16 *out, const bf16 *gu, uint32_t inter, size_t total)
{
	size_t i = (size_t)blockIdx.x * blockDim.x + threadIdx.x;
	if (i >= total)
		return;
	size_t r = i / inter, c = i % inter;
	out[i] = __float2bfloat16_rn(
		silu_mul1(__bfloat162float(gu[r * 2 * inter + c]), __bfloat162float(gu[r * 2 * inter + inter + c])));
}

void skv_cuda_silu_mul(struct skv_backend *be, void *out, const void *gu, uint32_t n, uint32_t inter)
{
	struct skv_cuda_backend *cb = skv_cuda(be);
	if (n == 0 || skv_cuda_dead(cb))
		return;
	uint32_t tok = skv_cuda_prof_begin(cb);
	if (inter % 8 == 0 && skv_aligned16(out) && skv_aligned16(gu)) {
		size_t total = (size_t)n * (inter / 8);
		k_silu_mul_vec<<<(unsigned)((total + 255) / 256), 256, 0, cb->stream>>>((uint4 *)out, (const uint4 *)gu,
											 inter / 8, total);
	} else {
		size_t total = (size_t)n * inter;
		k_silu_mul<<<(unsigned)((total + 255) / 256), 256, 0, cb->stream>>>((bf16 *)out, (const bf16 *)gu,
										     inter, total);
	}
	skv_cuda_launched(cb, "silu_mul");
	skv_cuda_prof_end(cb, tok, "silu_mul", 5.0 * n * inter, 6.0 * n * inter);
}
