/* cuda-attn.cu: causal paged attention over the KV cache (bf16 q, K, V, out; fp32 softmax).
 *
 * Four kernels, chosen per call:
 *  - prefill (any batch where some sequence has several query rows), head_dim 64 or 128:
 *    flash-attention-2 style. A block owns 128 query rows of one head (4 warps x 32 rows),
 *    walks the sequence's K/V in tiles of 64 positions read through the block table with
 *    cp.async into swizzled shared memory, computes S = QK^T and O += PV with mma.sync
 *    m16n8k16 bf16 (fp32 accumulators), and keeps the softmax online (running max and sum per
 *    row, exp2 with the scale folded in, the output rescaled only when a row's maximum moved).
 *    K/V are double-buffered: tile i+1 loads while tile i is computed. Causal masking only in
 *    the tiles that cross the diagonal.
 *  - decode (every sequence has exactly one query row), head_dim 64 or 128, on tensor cores:
 *    the query heads of one KV head are the rows of an MMA tile; a block owns one (sequence,
 *    KV head, split of the context) and streams its K/V through a 2-stage cp.async pipeline;
 *    partial (max, sum, unnormalised output) per split, then a reduce kernel. The split count
 *    comes from the batch's shape and the capacity (max_blocks * block_size), never from
 *    host-known context lengths, so a captured graph stays right for any context up to it.
 *  - decode on the SIMT cores (SKV_CUDA_DECODE=simt): the first version, kept as the in-run
 *    reference the benchmarks and tests compare against (1.90 vs 2.33 TB/s: docs/perf-notes.md).
 *  - generic (any other head_dim): one warp per (query row, head), online softmax per key; slow,
 *    for tiny test models and odd shapes.
 *
 * Learned from: the FlashAttention-2 paper (Dao, 2023) and its public CUDA code for the tile
 * walk, fragment reuse and masking order; Flash-Decoding (Dao et al., 2023) for the split-context
 * decode; FlashInfer's idea of running GQA decode on tensor cores. Written from scratch here.
 */
#include "cuda-internal.h"

#include <math.h>
#include <stdlib.h>

#define LOG2E 1.4426950408889634f

struct attn_params {
	bf16 *out;
	const bf16 *q;
	const bf16 *kc, *vc;
	const int32_t *q_start, *ctx_len, *bt;
	uint32_t q_stride, n_seqs, max_blocks, block_size, n_heads, n_kv_heads, group;
	int32_t bs_shift; /* log2(block_size) when it is a power of two (the usual 16), else -1 */
	float scale_log2; /* log2(e) / sqrt(d) */
};

/* Cache slot of position pos through a block table; shifts instead of an integer division for
 * power-of-two block sizes (the division costs more instructions than the tile's MMAs). */
__device__ __forceinline__ int32_t slot_of(const attn_params &a, const int32_t *bt, int32_t pos)
{
	if (a.bs_shift >= 0)
		return (bt[pos >> a.bs_shift] << a.bs_shift) + (pos & ((1 << a.bs_shift) - 1));
	const int32_t bs = (int32_t)a.block_size;
	return bt[pos / bs] * bs + pos % bs;
}

/* ================================ prefill (flash, mma.sync) ================================ */

#define FA_BQ 128
#define FA_BK 64
#define FA_WARPS 4

__device__ __forceinline__ void cp_async16(void *smem, const void *gmem, bool pred)
{
	unsigned s = (unsigned)__cvta_generic_to_shared(smem);
	int sz = pred ? 16 : 0;
	asm volatile("cp.async.cg.shared.global [%0], [%1], 16, %2;\n" ::"r"(s), "l"(gmem), "r"(sz));
}
__device__ __forceinline__ void cp_async_commit(void) { asm volatile("cp.async.commit_group;\n" ::); }
__device__ __forceinline__ void cp_async_wait_all(void) { asm volatile("cp.async.wait_group 0;\n" ::); }

__device__ __forceinline__ void ldsm_x4(uint32_t &r0, uint32_t &r1, uint32_t &r2, uint32_t &r3, const bf16 *p)
{
	unsigned a = (unsigned)__cvta_generic_to_shared(p);
	asm volatile("ldmatrix.sync.aligned.m8n8.x4.shared.b16 {%0,%1,%2,%3}, [%4];\n"
		     : "=r"(r0), "=r"(r1), "=r"(r2), "=r"(r3)
		     : "r"(a));
}
__device__ __forceinline__ void ldsm_x4_t(uint32_t &r0, uint32_t &r1, uint32_t &r2, uint32_t &r3, const bf16 *p)
{
	unsigned a = (unsigned)__cvta_generic_to_shared(p);
	asm volatile("ldmatrix.sync.aligned.m8n8.x4.trans.shared.b16 {%0,%1,%2,%3}, [%4];\n"
		     : "=r"(r0), "=r"(r1), "=r"(r2), "=r"(r3)
		     : "r"(a));
}
__device__ __forceinline__ void mma_bf16(float *c, uint32_t a0, uint32_t a1, uint32_t a2, uint32_t a3, uint32_t b0,
					 uint32_t b1)
{
	asm volatile("mma.sync.aligned.m16n8k16.row.col.f32.bf16.bf16.f32 {%0,%1,%2,%3}, {%4,%5,%6,%7}, {%8,%9}, "
		     "{%0,%1,%2,%3};\n"
		     : "+f"(c[0]), "+f"(c[1]), "+f"(c[2]), "+f"(c[3])
		     : "r"(a0), "r"(a1), "r"(a2), "r"(a3), "r"(b0), "r"(b1));
}
/* 2^x by the special-function unit, flushing denormals: exp2f's denormal handling costs three
 * more instructions per element, and a probability below 2^-126 is zero for bf16 P anyway. */
__device__ __forceinline__ float ex2(float x)
{
	float y;
	asm("ex2.approx.ftz.f32 %0, %1;" : "=f"(y) : "f"(x));
	return y;
}

__device__ __forceinline__ uint32_t pack_bf16(float lo, float hi)
{
	__nv_bfloat162 h = __floats2bfloat162_rn(lo, hi);
	return *(uint32_t *)&h;
}

/* Element offset of (row, col) in a [rows][D] bf16 tile whose 16-byte chunks are XOR-swizzled
 * by row, so that 8 consecutive rows at one column chunk hit 8 different bank groups. */
template <int D>
__device__ __forceinline__ int sw(int row, int col)
{
	return row * D + ((((col >> 3) ^ (row & 7))) << 3) + (col & 7);
}

/* K and V of one tile: one block-table lookup per row for both. */
template <int D>
__device__ __forceinline__ void load_kv_tiles(bf16 *dk, bf16 *dv, const attn_params &a, const int32_t *bt, int kv0,
					      int kv_end, uint32_t kvh)
{
	constexpr int CH = D / 8;
	for (int i = threadIdx.x; i < FA_BK * CH; i += FA_WARPS * 32) {
		const int r = i / CH, c = i % CH, pos = kv0 + r;
		const bool ok = pos < kv_end;
		size_t off = 0;
		if (ok)
			off = ((size_t)slot_of(a, bt, pos) * a.n_kv_heads + kvh) * D + c * 8;
		cp_async16(dk + sw<D>(r, c * 8), a.kc + off, ok);
		cp_async16(dv + sw<D>(r, c * 8), a.vc + off, ok);
	}
}

template <int D>
__global__ void __launch_bounds__(FA_WARPS * 32, 2) k_attn_prefill(attn_params a)
{
	constexpr int KT = D / 16;     /* k-steps over the head dim for S */
	constexpr int NT = FA_BK / 8;  /* n-tiles of S */
	constexpr int DT = D / 8;      /* n-tiles of O */
	extern __shared__ __align__(16) unsigned char smem_raw[];
	bf16 *sq = (bf16 *)smem_raw;	 /* [128][D] */
	bf16 *skb = sq + FA_BQ * D;	 /* [2][64][D]: K tiles, double-buffered */
	bf16 *svb = skb + 2 * FA_BK * D; /* [2][64][D]: V tiles */

	const uint32_t h = blockIdx.x, kvh = h / a.group;
	/* blockIdx.y enumerates (sequence, q tile), the tiles of each sequence from its last (the
	 * heaviest under the causal mask) to its first. */
	uint32_t t = blockIdx.y, s = 0;
	int q0 = 0, nq = 0, tiles = 0;
	for (; s < a.n_seqs; s++) {
		q0 = a.q_start[s];
		nq = a.q_start[s + 1] - q0;
		tiles = (nq + FA_BQ - 1) / FA_BQ;
		if (t < (uint32_t)tiles)
			break;
		t -= tiles;
	}
	if (s == a.n_seqs)
		return;
	const int tile = tiles - 1 - (int)t;
	const int ctx = a.ctx_len[s];
	const int row0 = tile * FA_BQ;			/* first query row of the tile within the sequence */
	const int pos0 = ctx - nq + row0;		/* its position */
	const int rows = min(FA_BQ, nq - row0);		/* valid rows */
	const int kv_end = min(ctx, pos0 + rows);	/* keys 0 .. kv_end - 1 are needed */
	const int n_kt = (kv_end + FA_BK - 1) / FA_BK;
	const int32_t *bt = a.bt + (size_t)s * a.max_blocks;
	const int warp = threadIdx.x >> 5, lane = threadIdx.x & 31;
	const int g = lane >> 2, tq = lane & 3;

	/* Q tile (rows beyond the sequence's queries are zero) and K tile 0. */
	for (int i = threadIdx.x; i < FA_BQ * (D / 8); i += FA_WARPS * 32) {
		const int r = i / (D / 8), c = i % (D / 8);
		const bool ok = r < rows;
		const bf16 *src = a.q;
		if (ok)
			src = a.q + (size_t)(q0 + row0 + r) * a.q_stride + (size_t)h * D + c * 8;
		cp_async16(sq + sw<D>(r, c * 8), src, ok);
	}
	load_kv_tiles<D>(skb, svb, a, bt, 0, kv_end, kvh);
	cp_async_commit();

	float o[2][DT][4];
	float m[2][2], l[2][2];
#pragma unroll
	for (int mt = 0; mt < 2; mt++) {
#pragma unroll
		for (int j = 0; j < DT; j++)
#pragma unroll
			for (int e = 0; e < 4; e++)
				o[mt][j][e] = 0.0f;
		m[mt][0] = m[mt][1] = -INFINITY;
		l[mt][0] = l[mt][1] = 0.0f;
	}
	const int wrow = warp * 32; /* the warp's first row in the tile */

	/* Two stages: tile kt + 1 loads (into the buffers tile kt - 1 used) while tile kt is
	 * computed, so a load has a whole iteration to land. */
	for (int kt = 0; kt < n_kt; kt++) {
		const int kv0 = kt * FA_BK;
		const bf16 *sk = skb + (kt & 1) * FA_BK * D, *sv = svb + (kt & 1) * FA_BK * D;
		if (kt + 1 < n_kt)
			load_kv_tiles<D>(skb + ((kt + 1) & 1) * FA_BK * D, svb + ((kt + 1) & 1) * FA_BK * D, a, bt,
					 kv0 + FA_BK, kv_end, kvh);
		cp_async_commit();
		asm volatile("cp.async.wait_group 1;\n" ::);
		__syncthreads(); /* tile kt (and Q) landed for every thread */

		float sacc[2][NT][4];
#pragma unroll
		for (int mt = 0; mt < 2; mt++)
#pragma unroll
			for (int j = 0; j < NT; j++)
#pragma unroll
				for (int e = 0; e < 4; e++)
					sacc[mt][j][e] = 0.0f;
#pragma unroll
		for (int kk = 0; kk < KT; kk++) {
			uint32_t qa[2][4];
#pragma unroll
			for (int mt = 0; mt < 2; mt++) {
				const int r = wrow + mt * 16 + (lane & 7) + ((lane >> 3) & 1) * 8;
				const int c = kk * 16 + (lane >> 4) * 8;
				ldsm_x4(qa[mt][0], qa[mt][1], qa[mt][2], qa[mt][3], sq + sw<D>(r, c));
			}
#pragma unroll
			for (int np = 0; np < NT / 2; np++) {
				uint32_t b0, b1, b2, b3;
				const int r = np * 16 + (lane & 7) + (lane >> 4) * 8;
				const int c = kk * 16 + ((lane >> 3) & 1) * 8;
				ldsm_x4(b0, b1, b2, b3, sk + sw<D>(r, c));
#pragma unroll
				for (int mt = 0; mt < 2; mt++) {
					mma_bf16(sacc[mt][2 * np], qa[mt][0], qa[mt][1], qa[mt][2], qa[mt][3], b0, b1);
					mma_bf16(sacc[mt][2 * np + 1], qa[mt][0], qa[mt][1], qa[mt][2], qa[mt][3], b2, b3);
				}
			}
		}

		/* causal mask, only in the tiles that reach past the first row's position */
		if (kv0 + FA_BK - 1 > pos0) {
#pragma unroll
			for (int mt = 0; mt < 2; mt++)
#pragma unroll
				for (int hi = 0; hi < 2; hi++) {
					const int qpos = pos0 + wrow + mt * 16 + g + hi * 8;
#pragma unroll
					for (int j = 0; j < NT; j++)
#pragma unroll
						for (int e = 0; e < 2; e++)
							if (kv0 + j * 8 + 2 * tq + e > qpos)
								sacc[mt][j][hi * 2 + e] = -INFINITY;
				}
		}
		/* online softmax in raw score units; the scale rides the exp2's FMA; the running
		 * output is rescaled only when some row of the warp saw its maximum move */
#pragma unroll
		for (int mt = 0; mt < 2; mt++) {
#pragma unroll
			for (int hi = 0; hi < 2; hi++) {
				float mx = -INFINITY;
#pragma unroll
				for (int j = 0; j < NT; j++)
					mx = fmaxf(mx, fmaxf(sacc[mt][j][hi * 2], sacc[mt][j][hi * 2 + 1]));
				mx = fmaxf(mx, __shfl_xor_sync(0xffffffffu, mx, 1));
				mx = fmaxf(mx, __shfl_xor_sync(0xffffffffu, mx, 2));
				const float m_new = fmaxf(m[mt][hi], mx);
				const float ms = m_new == -INFINITY ? 0.0f : m_new * a.scale_log2;
				const float corr = ex2(m[mt][hi] * a.scale_log2 - ms);
				m[mt][hi] = m_new;
				float sum = 0.0f;
#pragma unroll
				for (int j = 0; j < NT; j++) {
#pragma unroll
					for (int e = 0; e < 2; e++) {
						float p = ex2(fmaf(sacc[mt][j][hi * 2 + e], a.scale_log2, -ms));
						sacc[mt][j][hi * 2 + e] = p;
						sum += p;
					}
				}
				l[mt][hi] = l[mt][hi] * corr + sum;
				if (__any_sync(0xffffffffu, corr != 1.0f)) {
#pragma unroll
					for (int j = 0; j < DT; j++) {
						o[mt][j][hi * 2] *= corr;
						o[mt][j][hi * 2 + 1] *= corr;
					}
				}
			}
		}

		/* O += P V: P's accumulator layout is the A-operand layout of the next MMA. */
#pragma unroll
		for (int kk = 0; kk < FA_BK / 16; kk++) {
			uint32_t pa[2][4];
#pragma unroll
			for (int mt = 0; mt < 2; mt++) {
				pa[mt][0] = pack_bf16(sacc[mt][2 * kk][0], sacc[mt][2 * kk][1]);
				pa[mt][1] = pack_bf16(sacc[mt][2 * kk][2], sacc[mt][2 * kk][3]);
				pa[mt][2] = pack_bf16(sacc[mt][2 * kk + 1][0], sacc[mt][2 * kk + 1][1]);
				pa[mt][3] = pack_bf16(sacc[mt][2 * kk + 1][2], sacc[mt][2 * kk + 1][3]);
			}
#pragma unroll
			for (int dp = 0; dp < DT / 2; dp++) {
				uint32_t b0, b1, b2, b3;
				const int r = kk * 16 + (lane & 7) + ((lane >> 3) & 1) * 8;
				const int c = dp * 16 + (lane >> 4) * 8;
				ldsm_x4_t(b0, b1, b2, b3, sv + sw<D>(r, c));
#pragma unroll
				for (int mt = 0; mt < 2; mt++) {
					mma_bf16(o[mt][2 * dp], pa[mt][0], pa[mt][1], pa[mt][2], pa[mt][3], b0, b1);
					mma_bf16(o[mt][2 * dp + 1], pa[mt][0], pa[mt][1], pa[mt][2], pa[mt][3], b2, b3);
				}
			}
		}
		__syncthreads(); /* every warp is done with tile kt's buffers before tile kt + 2 reuses them */
	}

	/* normalise and store */
#pragma unroll
	for (int mt = 0; mt < 2; mt++) {
#pragma unroll
		for (int hi = 0; hi < 2; hi++) {
			float sum = l[mt][hi];
			sum += __shfl_xor_sync(0xffffffffu, sum, 1);
			sum += __shfl_xor_sync(0xffffffffu, sum, 2);
			const float inv = sum > 0.0f ? 1.0f / sum : 0.0f;
			const int r = wrow + mt * 16 + g + hi * 8;
			if (r >= rows)
				continue;
			bf16 *dst = a.out + (size_t)(q0 + row0 + r) * a.n_heads * D + (size_t)h * D;
#pragma unroll
			for (int j = 0; j < DT; j++)
				*(uint32_t *)(dst + j * 8 + 2 * tq) =
					pack_bf16(o[mt][j][hi * 2] * inv, o[mt][j][hi * 2 + 1] * inv);
		}
	}
}

/* ============================ prefill on Hopper (wgmma, sm_90a) ============================ */

/* The same tile walk as k_attn_prefill, on the warpgroup MMA: a block of two warpgroups owns 128
 * query rows of one head (64 per warpgroup). S = Q K^T is one wgmma chain from shared memory
 * (Q and K both K-major), O += P V takes P from registers (the S accumulator, rounded to bf16,
 * already is the A-operand layout) and V from shared memory as an MN-major operand, so neither
 * K nor V is ever transposed. Tiles are 128 keys, loaded with cp.async through the block table
 * into 3 stages with the 128-byte swizzle the wgmma descriptors name; one barrier per tile.
 * Learned from the FlashAttention-3 paper (Shah et al., 2024) and the PTX ISA's wgmma chapter;
 * docs/perf-notes.md says what is and is not taken over yet (no producer warp, no ping-pong). */

#define WG_BQ 128	/* query rows per block: two warpgroups of 64 */
#define WG_BK 128	/* keys per tile */
#define WG_THREADS 256
#define WG_STAGES 3

/* Dynamic shared memory of k_attn_prefill_wg<D>: Q, the K/V stages, and room to align to 1 KB
 * (the swizzle pattern repeats every 1024 bytes and the descriptors assume aligned atoms). */
#define WG_SMEM(D) (1024 + (WG_BQ + WG_STAGES * 2 * WG_BK) * (D) * 2)

/* Byte offset of element (r, c) of a tile of `rows` rows kept as D/64 column blocks of
 * [rows][64] bf16, each 128-byte row's 16-byte chunks XORed with (r % 8): wgmma's 128B swizzle. */
__device__ __forceinline__ uint32_t sw128(int rows, int r, int c)
{
	return (uint32_t)((((c >> 6) * rows + r) << 7) + ((((c >> 3) & 7) ^ (r & 7)) << 4) + ((c & 7) << 1));
}

/* A wgmma shared-memory descriptor: start address, leading and stride byte offsets, 128B swizzle. */
__device__ __forceinline__ uint64_t gmma_desc(uint32_t saddr, uint32_t lbo, uint32_t sbo)
{
	return (uint64_t)((saddr & 0x3FFFFu) >> 4) | ((uint64_t)(lbo >> 4) << 16) | ((uint64_t)(sbo >> 4) << 32) |
	       (1ull << 62);
}

__device__ __forceinline__ void cp_async16_s(uint32_t saddr, const void *gmem, bool pred)
{
	asm volatile("cp.async.cg.shared.global [%0], [%1], 16, %2;\n" ::"r"(saddr), "l"(gmem), "r"(pred ? 16 : 0));
}
__device__ __forceinline__ void wgmma_fence(void) { asm volatile("wgmma.fence.sync.aligned;\n" ::: "memory"); }
__device__ __forceinline__ void wgmma_commit(void) { asm volatile("wgmma.commit_group.sync.aligned;\n" ::: "memory"); }
__device__ __forceinline__ void wgmma_wait0(void) { asm volatile("wgmma.wait_group.sync.aligned 0;\n" ::: "memory"); }
/* Keeps the compiler from moving reads or writes of accumulator registers across the points
 * where the asynchronous wgmma owns them. */
template <int N>
__device__ __forceinline__ void reg_fence(float (&r)[N])
{
#pragma unroll
	for (int i = 0; i < N; i++)
		asm volatile("" : "+f"(r[i])::"memory");
}

/* d (+)= A B^T: A (64 x 16) and B (128 x 16) K-major in shared memory (descriptors). */
__device__ __forceinline__ void wgmma_ss_n128(float (&d)[64], uint64_t da, uint64_t db, int accumulate)
{
	asm volatile("{\n.reg .pred p;\nsetp.ne.b32 p, %66, 0;\n"
		     "wgmma.mma_async.sync.aligned.m64n128k16.f32.bf16.bf16 {%0,%1,%2,%3,%4,%5,%6,%7,%8,%9,%10,%11,%12,%13,%14,%15,%16,%17,%18,%19,%20,%21,%22,%23,%24,%25,%26,%27,%28,%29,%30,%31,%32,%33,%34,%35,%36,%37,%38,%39,%40,%41,%42,%43,%44,%45,%46,%47,%48,%49,%50,%51,%52,%53,%54,%55,%56,%57,%58,%59,%60,%61,%62,%63}, %64, %65, p, 1, 1, 0, 0;\n}\n"
		     : "+f"(d[0]), "+f"(d[1]), "+f"(d[2]), "+f"(d[3]), "+f"(d[4]), "+f"(d[5]), "+f"(d[6]), "+f"(d[7]), "+f"(d[8]), "+f"(d[9]), "+f"(d[10]), "+f"(d[11]), "+f"(d[12]), "+f"(d[13]), "+f"(d[14]), "+f"(d[15]), "+f"(d[16]), "+f"(d[17]), "+f"(d[18]), "+f"(d[19]), "+f"(d[20]), "+f"(d[21]), "+f"(d[22]), "+f"(d[23]), "+f"(d[24]), "+f"(d[25]), "+f"(d[26]), "+f"(d[27]), "+f"(d[28]), "+f"(d[29]), "+f"(d[30]), "+f"(d[31]), "+f"(d[32]), "+f"(d[33]), "+f"(d[34]), "+f"(d[35]), "+f"(d[36]), "+f"(d[37]), "+f"(d[38]), "+f"(d[39]), "+f"(d[40]), "+f"(d[41]), "+f"(d[42]), "+f"(d[43]), "+f"(d[44]), "+f"(d[45]), "+f"(d[46]), "+f"(d[47]), "+f"(d[48]), "+f"(d[49]), "+f"(d[50]), "+f"(d[51]), "+f"(d[52]), "+f"(d[53]), "+f"(d[54]), "+f"(d[55]), "+f"(d[56]), "+f"(d[57]), "+f"(d[58]), "+f"(d[59]), "+f"(d[60]), "+f"(d[61]), "+f"(d[62]), "+f"(d[63])
		     : "l"(da), "l"(db), "r"(accumulate));
}
/* d += A B: A (64 x 16) bf16 in registers (the mma.sync A-fragment layout per warp), B (16 x 128)
 * MN-major in shared memory. */
__device__ __forceinline__ void wgmma_rs_n128(float (&d)[64], const uint32_t (&a)[4], uint64_t db)
{
	asm volatile("{\n.reg .pred p;\nsetp.eq.u32 p, 1, 1;\n"
		     "wgmma.mma_async.sync.aligned.m64n128k16.f32.bf16.bf16 {%0,%1,%2,%3,%4,%5,%6,%7,%8,%9,%10,%11,%12,%13,%14,%15,%16,%17,%18,%19,%20,%21,%22,%23,%24,%25,%26,%27,%28,%29,%30,%31,%32,%33,%34,%35,%36,%37,%38,%39,%40,%41,%42,%43,%44,%45,%46,%47,%48,%49,%50,%51,%52,%53,%54,%55,%56,%57,%58,%59,%60,%61,%62,%63}, {%64,%65,%66,%67}, %68, p, 1, 1, 1;\n}\n"
		     : "+f"(d[0]), "+f"(d[1]), "+f"(d[2]), "+f"(d[3]), "+f"(d[4]), "+f"(d[5]), "+f"(d[6]), "+f"(d[7]), "+f"(d[8]), "+f"(d[9]), "+f"(d[10]), "+f"(d[11]), "+f"(d[12]), "+f"(d[13]), "+f"(d[14]), "+f"(d[15]), "+f"(d[16]), "+f"(d[17]), "+f"(d[18]), "+f"(d[19]), "+f"(d[20]), "+f"(d[21]), "+f"(d[22]), "+f"(d[23]), "+f"(d[24]), "+f"(d[25]), "+f"(d[26]), "+f"(d[27]), "+f"(d[28]), "+f"(d[29]), "+f"(d[30]), "+f"(d[31]), "+f"(d[32]), "+f"(d[33]), "+f"(d[34]), "+f"(d[35]), "+f"(d[36]), "+f"(d[37]), "+f"(d[38]), "+f"(d[39]), "+f"(d[40]), "+f"(d[41]), "+f"(d[42]), "+f"(d[43]), "+f"(d[44]), "+f"(d[45]), "+f"(d[46]), "+f"(d[47]), "+f"(d[48]), "+f"(d[49]), "+f"(d[50]), "+f"(d[51]), "+f"(d[52]), "+f"(d[53]), "+f"(d[54]), "+f"(d[55]), "+f"(d[56]), "+f"(d[57]), "+f"(d[58]), "+f"(d[59]), "+f"(d[60]), "+f"(d[61]), "+f"(d[62]), "+f"(d[63])
		     : "r"(a[0]), "r"(a[1]), "r"(a[2]), "r"(a[3]), "l"(db));
}
/* d += A B: A (64 x 16) bf16 in registers (the mma.sync A-fragment layout per warp), B (16 x 64)
 * MN-major in shared memory. */
__device__ __forceinline__ void wgmma_rs_n64(float (&d)[32], const uint32_t (&a)[4], uint64_t db)
{
	asm volatile("{\n.reg .pred p;\nsetp.eq.u32 p, 1, 1;\n"
		     "wgmma.mma_async.sync.aligned.m64n64k16.f32.bf16.bf16 {%0,%1,%2,%3,%4,%5,%6,%7,%8,%9,%10,%11,%12,%13,%14,%15,%16,%17,%18,%19,%20,%21,%22,%23,%24,%25,%26,%27,%28,%29,%30,%31}, {%32,%33,%34,%35}, %36, p, 1, 1, 1;\n}\n"
		     : "+f"(d[0]), "+f"(d[1]), "+f"(d[2]), "+f"(d[3]), "+f"(d[4]), "+f"(d[5]), "+f"(d[6]), "+f"(d[7]), "+f"(d[8]), "+f"(d[9]), "+f"(d[10]), "+f"(d[11]), "+f"(d[12]), "+f"(d[13]), "+f"(d[14]), "+f"(d[15]), "+f"(d[16]), "+f"(d[17]), "+f"(d[18]), "+f"(d[19]), "+f"(d[20]), "+f"(d[21]), "+f"(d[22]), "+f"(d[23]), "+f"(d[24]), "+f"(d[25]), "+f"(d[26]), "+f"(d[27]), "+f"(d[28]), "+f"(d[29]), "+f"(d[30]), "+f"(d[31])
		     : "r"(a[0]), "r"(a[1]), "r"(a[2]), "r"(a[3]), "l"(db));
}

/* K and V of one tile of WG_BK positions into one stage: each row's slot looked up once, the
 * row's D/8 chunks spread over consecutive threads (one 16-byte cp.async each, coalesced). */
template <int D>
__device__ __forceinline__ void wg_load_kv(uint32_t sk, uint32_t sv, const attn_params &a, const int32_t *bt,
					   int kv0, int kv_end, uint32_t kvh)
{
	constexpr int CH = D / 8, RPP = WG_THREADS / CH;
	const int c = threadIdx.x % CH;
#pragma unroll
	for (int r = threadIdx.x / CH; r < WG_BK; r += RPP) {
		const int pos = kv0 + r;
		const bool ok = pos < kv_end;
		size_t off = 0;
		if (ok)
			off = ((size_t)slot_of(a, bt, pos) * a.n_kv_heads + kvh) * D + c * 8;
		const uint32_t so = sw128(WG_BK, r, c * 8);
		cp_async16_s(sk + so, a.kc + off, ok);
		cp_async16_s(sv + so, a.vc + off, ok);
	}
}

/* S = Q K^T of one tile for the warpgroup's 64 rows: D/16 chained wgmma, issued, not waited. */
template <int D>
__device__ __forceinline__ void wg_qk(float (&sacc)[64], uint32_t sq, uint32_t sk, int wrow0)
{
#pragma unroll
	for (int i = 0; i < 64; i++)
		sacc[i] = 0.0f;
	reg_fence(sacc);
	wgmma_fence();
#pragma unroll
	for (int kk = 0; kk < D / 16; kk++) {
		const uint32_t qa = sq + (kk >> 2) * (WG_BQ * 128) + wrow0 * 128 + (kk & 3) * 32;
		const uint32_t kb = sk + (kk >> 2) * (WG_BK * 128) + (kk & 3) * 32;
		wgmma_ss_n128(sacc, gmma_desc(qa, 16, 1024), gmma_desc(kb, 16, 1024), 1);
	}
	wgmma_commit();
}

/* O += P V over one tile: 8 steps of 16 keys, P from registers, V MN-major; issued, not waited. */
template <int D>
__device__ __forceinline__ void wg_pv(float (&o)[D / 2], const uint32_t (&pa)[8][4], uint32_t sv)
{
	reg_fence(o);
	wgmma_fence();
#pragma unroll
	for (int kk = 0; kk < 8; kk++) {
		const uint64_t vb = gmma_desc(sv + kk * 2048, WG_BK * 128, 1024);
		if constexpr (D == 128)
			wgmma_rs_n128(o, pa[kk], vb);
		else
			wgmma_rs_n64(o, pa[kk], vb);
	}
	wgmma_commit();
}

/* The causal mask (only where the tile reaches past the warpgroup's first position) and the
 * online softmax of one tile, as k_attn_prefill: raw score units, the scale in the exp2's FMA.
 * Leaves the probabilities in sacc and each row's output correction in corr. */
__device__ __forceinline__ void wg_softmax(float (&sacc)[64], float (&m)[2], float (&l)[2], float (&corr)[2],
					   int kv0, int wpos0, int warp, int g, int tq, float scale_log2)
{
	if (kv0 + WG_BK - 1 > wpos0) {
#pragma unroll
		for (int hi = 0; hi < 2; hi++) {
			const int qpos = wpos0 + warp * 16 + g + hi * 8;
#pragma unroll
			for (int j = 0; j < 16; j++)
#pragma unroll
				for (int e = 0; e < 2; e++)
					if (kv0 + j * 8 + 2 * tq + e > qpos)
						sacc[j * 4 + hi * 2 + e] = -INFINITY;
		}
	}
#pragma unroll
	for (int hi = 0; hi < 2; hi++) {
		float mx = -INFINITY;
#pragma unroll
		for (int j = 0; j < 16; j++)
			mx = fmaxf(mx, fmaxf(sacc[j * 4 + hi * 2], sacc[j * 4 + hi * 2 + 1]));
		mx = fmaxf(mx, __shfl_xor_sync(0xffffffffu, mx, 1));
		mx = fmaxf(mx, __shfl_xor_sync(0xffffffffu, mx, 2));
		const float m_new = fmaxf(m[hi], mx);
		const float ms = m_new == -INFINITY ? 0.0f : m_new * scale_log2;
		corr[hi] = ex2(m[hi] * scale_log2 - ms);
		m[hi] = m_new;
		float sum = 0.0f;
#pragma unroll
		for (int j = 0; j < 16; j++)
#pragma unroll
			for (int e = 0; e < 2; e++) {
				const float p = ex2(fmaf(sacc[j * 4 + hi * 2 + e], scale_log2, -ms));
				sacc[j * 4 + hi * 2 + e] = p;
				sum += p;
			}
		l[hi] = l[hi] * corr[hi] + sum;
	}
}

template <int ON>
__device__ __forceinline__ void wg_rescale(float (&o)[ON], const float (&corr)[2])
{
#pragma unroll
	for (int j = 0; j < ON / 4; j++) {
		o[j * 4] *= corr[0];
		o[j * 4 + 1] *= corr[0];
		o[j * 4 + 2] *= corr[1];
		o[j * 4 + 3] *= corr[1];
	}
}

/* P in bf16 as wgmma's A operand: the S accumulator layout per 16 keys is the A-fragment layout. */
__device__ __forceinline__ void wg_pack(const float (&sacc)[64], uint32_t (&pa)[8][4])
{
#pragma unroll
	for (int kk = 0; kk < 8; kk++) {
		pa[kk][0] = pack_bf16(sacc[8 * kk + 0], sacc[8 * kk + 1]);
		pa[kk][1] = pack_bf16(sacc[8 * kk + 2], sacc[8 * kk + 3]);
		pa[kk][2] = pack_bf16(sacc[8 * kk + 4], sacc[8 * kk + 5]);
		pa[kk][3] = pack_bf16(sacc[8 * kk + 6], sacc[8 * kk + 7]);
	}
}

/* PIPE: FlashAttention-3's intra-warpgroup overlap: tile k's S = Q K^T and tile k-1's O += P V
 * are issued together, tile k's softmax runs while P V is still on the tensor cores. The
 * stage that P V reads stays busy one more iteration, so tiles are prefetched one ahead (3
 * stages: the one P V reads, the one S reads, the one loading). Without PIPE: S, softmax,
 * P V one after another, tiles prefetched two ahead. */
template <int D, bool PIPE>
__global__ void __launch_bounds__(WG_THREADS, 1) k_attn_prefill_wg(attn_params a)
{
	constexpr int CH = D / 8;
	constexpr int ON = D / 2;		       /* O accumulators per thread: m64 x nD over 128 threads */
	constexpr int PF = PIPE ? 1 : WG_STAGES - 1; /* tiles in flight ahead of the one computed */
	constexpr uint32_t Q_BYTES = WG_BQ * D * 2, KV_BYTES = WG_BK * D * 2;
	extern __shared__ __align__(16) unsigned char smem_raw[];
	const uint32_t sq = ((uint32_t)__cvta_generic_to_shared(smem_raw) + 1023u) & ~1023u;
	const uint32_t skv = sq + Q_BYTES; /* stage st: K at skv + 2 st KV_BYTES, V after it */

	const uint32_t h = blockIdx.x, kvh = h / a.group;
	uint32_t t = blockIdx.y, s = 0; /* (sequence, q tile), heaviest tiles first, as k_attn_prefill */
	int q0 = 0, nq = 0, tiles = 0;
	for (; s < a.n_seqs; s++) {
		q0 = a.q_start[s];
		nq = a.q_start[s + 1] - q0;
		tiles = (nq + WG_BQ - 1) / WG_BQ;
		if (t < (uint32_t)tiles)
			break;
		t -= tiles;
	}
	if (s == a.n_seqs)
		return;
	const int tile = tiles - 1 - (int)t;
	const int ctx = a.ctx_len[s];
	const int row0 = tile * WG_BQ, pos0 = ctx - nq + row0, rows = min(WG_BQ, nq - row0);
	const int kv_end = min(ctx, pos0 + rows);
	const int n_kt = (kv_end + WG_BK - 1) / WG_BK;
	const int32_t *bt = a.bt + (size_t)s * a.max_blocks;

	for (int i = threadIdx.x; i < WG_BQ * CH; i += WG_THREADS) {
		const int r = i / CH, c = i % CH;
		const bool ok = r < rows;
		const bf16 *src = a.q;
		if (ok)
			src = a.q + (size_t)(q0 + row0 + r) * a.q_stride + (size_t)h * D + c * 8;
		cp_async16_s(sq + sw128(WG_BQ, r, c * 8), src, ok);
	}
#pragma unroll
	for (int st = 0; st < PF; st++) {
		if (st < n_kt)
			wg_load_kv<D>(skv + 2 * st * KV_BYTES, skv + (2 * st + 1) * KV_BYTES, a, bt, st * WG_BK, kv_end, kvh);
		cp_async_commit();
	}

	const int wg = threadIdx.x >> 7, warp = (threadIdx.x >> 5) & 3, lane = threadIdx.x & 31;
	const int g = lane >> 2, tq = lane & 3;
	const int wrow0 = wg * 64;				   /* the warpgroup's first row in the tile */
	const bool live = wrow0 < rows;				   /* it has query rows at all */
	const int wpos0 = pos0 + wrow0, wlast = pos0 + min(rows, wrow0 + 64) - 1;
	float o[ON];
#pragma unroll
	for (int i = 0; i < ON; i++)
		o[i] = 0.0f;
	float m[2] = {-INFINITY, -INFINITY}, l[2] = {0.0f, 0.0f}, corr[2];
	float sacc[64];
	uint32_t pa[8][4];
	uint32_t sv_prev = 0;
	bool have_prev = false; /* PIPE: P of the previous tile waits in pa for its P V */

	for (int kt = 0; kt < n_kt; kt++) {
		asm volatile("cp.async.wait_group %0;\n" ::"n"(PF - 1));
		asm volatile("fence.proxy.async.shared::cta;\n" ::: "memory"); /* cp.async wrote it; wgmma reads it */
		__syncthreads(); /* tile kt landed for all; every warpgroup is done with the stage reloaded next */
		const int tn = kt + PF;
		if (tn < n_kt) {
			const int st = tn % WG_STAGES;
			wg_load_kv<D>(skv + 2 * st * KV_BYTES, skv + (2 * st + 1) * KV_BYTES, a, bt, tn * WG_BK, kv_end, kvh);
		}
		cp_async_commit();
		const int kv0 = kt * WG_BK;
		const bool act = live && kv0 <= wlast; /* causal: some of the tile is visible to the warpgroup */
		const uint32_t sk = skv + 2 * (kt % WG_STAGES) * KV_BYTES, sv = sk + KV_BYTES;
		if constexpr (PIPE) {
			if (act)
				wg_qk<D>(sacc, sq, sk, wrow0);
			if (have_prev)
				wg_pv<D>(o, pa, sv_prev);
			if (act) {
				if (have_prev)
					asm volatile("wgmma.wait_group.sync.aligned 1;\n" ::: "memory"); /* S, not P V */
				else
					wgmma_wait0();
				reg_fence(sacc);
				wg_softmax(sacc, m, l, corr, kv0, wpos0, warp, g, tq, a.scale_log2);
			}
			if (have_prev) {
				wgmma_wait0(); /* P V of the previous tile: o and pa are free again */
				reg_fence(o);
			}
			if (act) {
				wg_rescale(o, corr);
				wg_pack(sacc, pa);
				sv_prev = sv;
			}
			have_prev = act;
		} else {
			if (!act)
				continue;
			wg_qk<D>(sacc, sq, sk, wrow0);
			wgmma_wait0();
			reg_fence(sacc);
			wg_softmax(sacc, m, l, corr, kv0, wpos0, warp, g, tq, a.scale_log2);
			wg_rescale(o, corr);
			wg_pack(sacc, pa);
			wg_pv<D>(o, pa, sv);
			wgmma_wait0(); /* V's stage is reloaded after the next barrier */
			reg_fence(o);
		}
	}
	if (PIPE && have_prev) {
		wg_pv<D>(o, pa, sv_prev);
		wgmma_wait0();
		reg_fence(o);
	}

	if (!live)
		return;
#pragma unroll
	for (int hi = 0; hi < 2; hi++) {
		float sum = l[hi];
		sum += __shfl_xor_sync(0xffffffffu, sum, 1);
		sum += __shfl_xor_sync(0xffffffffu, sum, 2);
		const float inv = sum > 0.0f ? 1.0f / sum : 0.0f;
		const int r = wrow0 + warp * 16 + g + hi * 8;
		if (r >= rows)
			continue;
		bf16 *dst = a.out + (size_t)(q0 + row0 + r) * a.n_heads * D + (size_t)h * D;
#pragma unroll
		for (int j = 0; j < D / 8; j++)
			*(uint32_t *)(dst + j * 8 + 2 * tq) = pack_bf16(o[j * 4 + hi * 2] * inv, o[j * 4 + hi * 2 + 1] * inv);
	}
}

/* ================================ decode (split context) ================================ */

/* Element d of one head's result for one split: the output itself when the context is a single
 * split, else the split's partial (running max M, sum L, unnormalised O) for the reduce kernel. */
__device__ __forceinline__ void store_split(const attn_params &a, float *part, int row, int hh, int d, int D,
					    int split, int n_split, bool direct, float M, float L, float O)
{
	if (direct) {
		a.out[(size_t)row * a.n_heads * D + (size_t)hh * D + d] = __float2bfloat16_rn(L > 0.0f ? O / L : 0.0f);
		return;
	}
	float *pp = part + (((size_t)row * a.n_heads + hh) * n_split + split) * (D + 2);
	pp[2 + d] = O;
	if (d == 0) {
		pp[0] = M;
		pp[1] = L;
	}
}

#define DEC_WARPS 4

template <int D, int GQ>
__global__ void __launch_bounds__(DEC_WARPS * 32) k_attn_decode(attn_params a, int split_len, int n_split,
								  float *part, bool direct)
{
	constexpr int LPK = D / 8;	     /* lanes per key: each lane holds 8 dims */
	constexpr int KPI = 32 / LPK;	     /* keys side by side in a warp */
	constexpr int NK = GQ <= 4 ? 8 : 4;  /* keys per lane per step */
	constexpr int WK = KPI * NK;	     /* keys per warp per step */
	__shared__ float s_m[DEC_WARPS][GQ], s_l[DEC_WARPS][GQ];
	__shared__ __align__(16) float s_o[DEC_WARPS][GQ][D];

	const int row = blockIdx.z; /* sequence == query row */
	const int hchunks = (int)a.group / GQ;
	const int kvh = blockIdx.y / hchunks, h0 = kvh * a.group + (blockIdx.y % hchunks) * GQ;
	const int split = blockIdx.x;
	const int ctx = a.ctx_len[row];
	const int start = split * split_len, end = min(ctx, start + split_len);
	if (start >= end && !(split == 0 && direct))
		return; /* an idle split: the reduce does not read it */

	const int warp = threadIdx.x >> 5, lane = threadIdx.x & 31;
	const int kg = lane / LPK, dl = lane % LPK;
	const int32_t *bt = a.bt + (size_t)row * a.max_blocks;
	const int qrow = a.q_start[row];

	float q[GQ][8], acc[GQ][8], m[GQ], l[GQ];
#pragma unroll
	for (int j = 0; j < GQ; j++) {
		union {
			uint4 u;
			__nv_bfloat162 h[4];
		} qv;
		qv.u = *(const uint4 *)(a.q + (size_t)qrow * a.q_stride + (size_t)(h0 + j) * D + dl * 8);
#pragma unroll
		for (int e = 0; e < 4; e++) {
			float2 f = __bfloat1622float2(qv.h[e]);
			q[j][2 * e] = f.x * a.scale_log2;
			q[j][2 * e + 1] = f.y * a.scale_log2;
		}
#pragma unroll
		for (int e = 0; e < 8; e++)
			acc[j][e] = 0.0f;
		m[j] = -1e30f; /* finite: a fully masked step must not make inf - inf */
		l[j] = 0.0f;
	}

	for (int base = start + warp * WK; base < end; base += DEC_WARPS * WK) {
		uint4 kr[NK], vr[NK];
#pragma unroll
		for (int i = 0; i < NK; i++) {
			const int pos = base + i * KPI + kg;
			if (pos < end) {
				const size_t off = ((size_t)slot_of(a, bt, pos) * a.n_kv_heads + kvh) * D + dl * 8;
				kr[i] = __ldg((const uint4 *)(a.kc + off));
				vr[i] = __ldg((const uint4 *)(a.vc + off));
			} else {
				kr[i] = make_uint4(0, 0, 0, 0);
				vr[i] = make_uint4(0, 0, 0, 0);
			}
		}
		float s[GQ][NK];
#pragma unroll
		for (int i = 0; i < NK; i++) {
			const __nv_bfloat162 *kh = (const __nv_bfloat162 *)&kr[i];
			float kf[8];
#pragma unroll
			for (int e = 0; e < 4; e++) {
				float2 f = __bfloat1622float2(kh[e]);
				kf[2 * e] = f.x;
				kf[2 * e + 1] = f.y;
			}
#pragma unroll
			for (int j = 0; j < GQ; j++) {
				float d = 0.0f;
#pragma unroll
				for (int e = 0; e < 8; e++)
					d = fmaf(q[j][e], kf[e], d);
#pragma unroll
				for (int o = LPK / 2; o > 0; o >>= 1)
					d += __shfl_xor_sync(0xffffffffu, d, o);
				s[j][i] = base + i * KPI + kg < end ? d : -INFINITY;
			}
		}
#pragma unroll
		for (int j = 0; j < GQ; j++) {
			float mx = s[j][0];
#pragma unroll
			for (int i = 1; i < NK; i++)
				mx = fmaxf(mx, s[j][i]);
#pragma unroll
			for (int o = LPK; o < 32; o <<= 1)
				mx = fmaxf(mx, __shfl_xor_sync(0xffffffffu, mx, o));
			const float m_new = fmaxf(m[j], mx);
			const float corr = exp2f(m[j] - m_new);
			m[j] = m_new;
			float sum = 0.0f;
#pragma unroll
			for (int e = 0; e < 8; e++)
				acc[j][e] *= corr;
#pragma unroll
			for (int i = 0; i < NK; i++) {
				const float p = exp2f(s[j][i] - m_new);
				sum += p;
				const __nv_bfloat162 *vh = (const __nv_bfloat162 *)&vr[i];
#pragma unroll
				for (int e = 0; e < 4; e++) {
					float2 f = __bfloat1622float2(vh[e]);
					acc[j][2 * e] = fmaf(p, f.x, acc[j][2 * e]);
					acc[j][2 * e + 1] = fmaf(p, f.y, acc[j][2 * e + 1]);
				}
			}
			l[j] = l[j] * corr + sum;
		}
	}

	/* the key groups of a warp share m: their sums and outputs add */
#pragma unroll
	for (int j = 0; j < GQ; j++) {
#pragma unroll
		for (int o = LPK; o < 32; o <<= 1) {
			l[j] += __shfl_xor_sync(0xffffffffu, l[j], o);
#pragma unroll
			for (int e = 0; e < 8; e++)
				acc[j][e] += __shfl_xor_sync(0xffffffffu, acc[j][e], o);
		}
		if (lane < LPK) {
#pragma unroll
			for (int e = 0; e < 8; e++)
				s_o[warp][j][dl * 8 + e] = acc[j][e];
		}
		if (lane == 0) {
			s_m[warp][j] = m[j];
			s_l[warp][j] = l[j];
		}
	}
	__syncthreads();
	for (int i = threadIdx.x; i < GQ * D; i += DEC_WARPS * 32) {
		const int j = i / D, d = i % D;
		float M = s_m[0][j];
#pragma unroll
		for (int w = 1; w < DEC_WARPS; w++)
			M = fmaxf(M, s_m[w][j]);
		float L = 0.0f, O = 0.0f;
#pragma unroll
		for (int w = 0; w < DEC_WARPS; w++) {
			const float f = exp2f(s_m[w][j] - M);
			L += s_l[w][j] * f;
			O += s_o[w][j][d] * f;
		}
		store_split(a, part, row, h0 + j, d, D, split, n_split, direct, M, L, O);
	}
}

/* Combines the splits of each (query row, head): blockDim.x == D. */
__global__ void k_attn_decode_reduce(attn_params a, int split_len, int n_split, const float *part, int D)
{
	const int row = blockIdx.x, h = blockIdx.y, d = threadIdx.x;
	const int ctx = a.ctx_len[row];
	if (ctx <= 0) {
		a.out[(size_t)row * a.n_heads * D + (size_t)h * D + d] = __float2bfloat16_rn(0.0f);
		return;
	}
	const int n_act = min(n_split, (ctx + split_len - 1) / split_len);
	const float *pp = part + ((size_t)row * a.n_heads + h) * n_split * (D + 2);
	float M = -INFINITY;
	for (int i = 0; i < n_act; i++)
		M = fmaxf(M, pp[(size_t)i * (D + 2)]);
	float L = 0.0f, O = 0.0f;
	for (int i = 0; i < n_act; i++) {
		const float f = exp2f(pp[(size_t)i * (D + 2)] - M);
		L += pp[(size_t)i * (D + 2) + 1] * f;
		O += pp[(size_t)i * (D + 2) + 2 + d] * f;
	}
	a.out[(size_t)row * a.n_heads * D + (size_t)h * D + d] = __float2bfloat16_rn(L > 0.0f ? O / L : 0.0f);
}

/* ====================== decode on tensor cores (GQA, head_dim 64/128) ======================
 * The query heads of one KV head are the rows of one 16-row MMA tile (rows past the group are
 * zero): S = Q K^T and O += P V run on mma.sync like the prefill kernel, so a key costs a few
 * instructions instead of the SIMT kernel's ~100 per lane (which made that one issue-bound).
 * A block owns (sequence, KV head, split of the context); its 4 warps stream the split's K/V
 * through shared memory in tiles of 64 positions, 2 cp.async stages deep (3 measured slower:
 * their 96 KB of shared memory at head_dim 128 leave room for 2 blocks per SM instead of 3),
 * each warp taking 16 positions of every tile with its own online softmax; the warps combine at the end, and splits combine in k_attn_decode_reduce. */

#define DM_BK 64
#define DM_STAGES_MAX 3
#define DM_STAGES_DEFAULT 2
#define DM_BLOCKS_PER_SM_DEFAULT 1
#define DM_MAX_SPLIT_LEN 4096 /* positions one block walks at most: bounds a long sequence's tail */

/* K/V tiles come in through the prefill kernel's load_kv_tiles: same tile height, same 128
 * threads */
static_assert(DM_BK == FA_BK && FA_WARPS * 32 == 128, "decode tiles load like prefill tiles");
static_assert(FA_BQ == WG_BQ, "the prefill kernels count query tiles alike");

template <int D, int DM_STAGES>
__global__ void __launch_bounds__(128) k_attn_decode_mma(attn_params a, int split_len, int n_split, float *part,
							   bool direct, int gq)
{
	constexpr int KT = D / 16, DT = D / 8;
	extern __shared__ __align__(16) unsigned char smem_raw[];
	bf16 *stage = (bf16 *)smem_raw; /* [DM_STAGES][2][64][D]: K then V of each stage */

	const int row = blockIdx.z;
	const int hchunks = (int)a.group / gq;
	const int kvh = blockIdx.y / hchunks, h0 = kvh * a.group + (blockIdx.y % hchunks) * gq;
	const int split = blockIdx.x;
	const int ctx = a.ctx_len[row];
	const int start = split * split_len, end = min(ctx, start + split_len);
	if (start >= end && !(split == 0 && direct))
		return;
	const int warp = threadIdx.x >> 5, lane = threadIdx.x & 31, g = lane >> 2, tq = lane & 3;
	const int32_t *bt = a.bt + (size_t)row * a.max_blocks;
	const int n_tiles = start < end ? (end - start + DM_BK - 1) / DM_BK : 0;

	for (int t = 0; t < DM_STAGES - 1; t++) {
		if (t < n_tiles)
			load_kv_tiles<D>(stage + (size_t)t * 2 * DM_BK * D, stage + (size_t)(t * 2 + 1) * DM_BK * D, a, bt,
					start + t * DM_BK, end, kvh);
		cp_async_commit();
	}

	/* Q as A fragments, straight from global memory: rows g and g + 8 are heads h0 + g, h0 + g + 8 */
	uint32_t qa[KT][4];
	{
		const bf16 *q0 = a.q + (size_t)a.q_start[row] * a.q_stride + (size_t)h0 * D;
		const bool r0 = g < gq, r1 = g + 8 < gq;
#pragma unroll
		for (int kk = 0; kk < KT; kk++) {
			const int c = kk * 16 + 2 * tq;
			qa[kk][0] = r0 ? *(const uint32_t *)(q0 + (size_t)g * D + c) : 0u;
			qa[kk][1] = r1 ? *(const uint32_t *)(q0 + (size_t)(g + 8) * D + c) : 0u;
			qa[kk][2] = r0 ? *(const uint32_t *)(q0 + (size_t)g * D + c + 8) : 0u;
			qa[kk][3] = r1 ? *(const uint32_t *)(q0 + (size_t)(g + 8) * D + c + 8) : 0u;
		}
	}
	float o[DT][4];
#pragma unroll
	for (int j = 0; j < DT; j++)
		o[j][0] = o[j][1] = o[j][2] = o[j][3] = 0.0f;
	float m[2] = {-1e30f, -1e30f}, l[2] = {0.0f, 0.0f}; /* log2-scaled units; finite start */
	const int kw = warp * 16;			 /* the warp's positions within a tile */

	for (int t = 0; t < n_tiles; t++) {
		asm volatile("cp.async.wait_group %0;\n" ::"n"(DM_STAGES - 2));
		__syncthreads(); /* tile t landed; every warp is done with tile t - 1 */
		const int tn = t + DM_STAGES - 1;
		if (tn < n_tiles) {
			const int st = tn % DM_STAGES;
			load_kv_tiles<D>(stage + (size_t)st * 2 * DM_BK * D, stage + (size_t)(st * 2 + 1) * DM_BK * D, a, bt,
					start + tn * DM_BK, end, kvh);
		}
		cp_async_commit();
		const int st = t % DM_STAGES;
		const bf16 *sk = stage + (size_t)st * 2 * DM_BK * D, *sv = sk + DM_BK * D;
		const int kv0 = start + t * DM_BK;
		if (kv0 + kw >= end)
			continue; /* nothing of this warp's in the last tile */

		float s[2][4] = {{0.0f, 0.0f, 0.0f, 0.0f}, {0.0f, 0.0f, 0.0f, 0.0f}};
#pragma unroll
		for (int kk = 0; kk < KT; kk++) {
			uint32_t b0, b1, b2, b3;
			ldsm_x4(b0, b1, b2, b3, sk + sw<D>(kw + (lane & 7) + (lane >> 4) * 8, kk * 16 + ((lane >> 3) & 1) * 8));
			mma_bf16(s[0], qa[kk][0], qa[kk][1], qa[kk][2], qa[kk][3], b0, b1);
			mma_bf16(s[1], qa[kk][0], qa[kk][1], qa[kk][2], qa[kk][3], b2, b3);
		}
		float corr[2];
#pragma unroll
		for (int hi = 0; hi < 2; hi++) {
			float mx = -INFINITY;
#pragma unroll
			for (int j = 0; j < 2; j++)
#pragma unroll
				for (int e = 0; e < 2; e++) {
					const int pos = kv0 + kw + j * 8 + 2 * tq + e;
					float v = pos < end ? s[j][hi * 2 + e] * a.scale_log2 : -INFINITY;
					s[j][hi * 2 + e] = v;
					mx = fmaxf(mx, v);
				}
			mx = fmaxf(mx, __shfl_xor_sync(0xffffffffu, mx, 1));
			mx = fmaxf(mx, __shfl_xor_sync(0xffffffffu, mx, 2));
			const float m_new = fmaxf(m[hi], mx);
			corr[hi] = ex2(m[hi] - m_new);
			m[hi] = m_new;
			float sum = 0.0f;
#pragma unroll
			for (int j = 0; j < 2; j++)
#pragma unroll
				for (int e = 0; e < 2; e++) {
					const float p = ex2(s[j][hi * 2 + e] - m_new);
					s[j][hi * 2 + e] = p;
					sum += p;
				}
			l[hi] = l[hi] * corr[hi] + sum;
		}
		const uint32_t pa0 = pack_bf16(s[0][0], s[0][1]), pa1 = pack_bf16(s[0][2], s[0][3]);
		const uint32_t pa2 = pack_bf16(s[1][0], s[1][1]), pa3 = pack_bf16(s[1][2], s[1][3]);
#pragma unroll
		for (int dp = 0; dp < DT / 2; dp++) {
			uint32_t b0, b1, b2, b3;
			ldsm_x4_t(b0, b1, b2, b3, sv + sw<D>(kw + (lane & 7) + ((lane >> 3) & 1) * 8, dp * 16 + (lane >> 4) * 8));
			o[2 * dp][0] *= corr[0];
			o[2 * dp][1] *= corr[0];
			o[2 * dp][2] *= corr[1];
			o[2 * dp][3] *= corr[1];
			o[2 * dp + 1][0] *= corr[0];
			o[2 * dp + 1][1] *= corr[0];
			o[2 * dp + 1][2] *= corr[1];
			o[2 * dp + 1][3] *= corr[1];
			mma_bf16(o[2 * dp], pa0, pa1, pa2, pa3, b0, b1);
			mma_bf16(o[2 * dp + 1], pa0, pa1, pa2, pa3, b2, b3);
		}
	}
	cp_async_wait_all();
	__syncthreads(); /* the stages become the combine area */

	float *cm = (float *)smem_raw;	/* [4][16] */
	float *cl = cm + 4 * 16;	/* [4][16] */
	float *co = cl + 4 * 16;	/* [4][16][D] */
#pragma unroll
	for (int hi = 0; hi < 2; hi++) {
		l[hi] += __shfl_xor_sync(0xffffffffu, l[hi], 1);
		l[hi] += __shfl_xor_sync(0xffffffffu, l[hi], 2);
		if (tq == 0) {
			cm[warp * 16 + g + hi * 8] = m[hi];
			cl[warp * 16 + g + hi * 8] = l[hi];
		}
#pragma unroll
		for (int j = 0; j < DT; j++) {
			co[((size_t)warp * 16 + g + hi * 8) * D + j * 8 + 2 * tq] = o[j][hi * 2];
			co[((size_t)warp * 16 + g + hi * 8) * D + j * 8 + 2 * tq + 1] = o[j][hi * 2 + 1];
		}
	}
	__syncthreads();
	for (int i = threadIdx.x; i < gq * D; i += 128) {
		const int r = i / D, d = i % D;
		float M = cm[r];
#pragma unroll
		for (int w = 1; w < 4; w++)
			M = fmaxf(M, cm[w * 16 + r]);
		float L = 0.0f, O = 0.0f;
#pragma unroll
		for (int w = 0; w < 4; w++) {
			const float f = ex2(cm[w * 16 + r] - M);
			L += cl[w * 16 + r] * f;
			O += co[((size_t)w * 16 + r) * D + d] * f;
		}
		store_split(a, part, row, h0 + r, d, D, split, n_split, direct, M, L, O);
	}
}

/* ================================ generic ================================ */

#define GEN_WARPS 4

/* One warp per (query row, head); lanes split the head dim (EPT elements each, D <= 32 * EPT). */
template <int EPT>
__global__ void __launch_bounds__(GEN_WARPS * 32) k_attn_generic(attn_params a, int D)
{
	const int r = blockIdx.x;
	const int h = blockIdx.y * GEN_WARPS + (threadIdx.x >> 5), lane = threadIdx.x & 31;
	if (h >= (int)a.n_heads)
		return;
	/* the sequence of query row r: the last s with q_start[s] <= r */
	int lo = 0, hi = (int)a.n_seqs - 1;
	while (lo < hi) {
		int mid = (lo + hi + 1) / 2;
		if (a.q_start[mid] <= r)
			lo = mid;
		else
			hi = mid - 1;
	}
	const int s = lo;
	const int nq = a.q_start[s + 1] - a.q_start[s];
	const int qpos = a.ctx_len[s] - nq + (r - a.q_start[s]);
	const int kvh = h / (int)a.group;
	const int32_t *bt = a.bt + (size_t)s * a.max_blocks;

	float q[EPT], acc[EPT];
#pragma unroll
	for (int e = 0; e < EPT; e++) {
		const int d = lane + 32 * e;
		q[e] = d < D ? __bfloat162float(a.q[(size_t)r * a.q_stride + (size_t)h * D + d]) * a.scale_log2 : 0.0f;
		acc[e] = 0.0f;
	}
	float m = -1e30f, l = 0.0f;
	for (int pos = 0; pos <= qpos; pos++) {
		const size_t off = ((size_t)slot_of(a, bt, pos) * a.n_kv_heads + kvh) * D;
		float dot = 0.0f;
#pragma unroll
		for (int e = 0; e < EPT; e++) {
			const int d = lane + 32 * e;
			if (d < D)
				dot = fmaf(q[e], __bfloat162float(a.kc[off + d]), dot);
		}
#pragma unroll
		for (int o = 16; o > 0; o >>= 1)
			dot += __shfl_xor_sync(0xffffffffu, dot, o);
		const float m_new = fmaxf(m, dot);
		const float corr = exp2f(m - m_new), p = exp2f(dot - m_new);
		m = m_new;
		l = l * corr + p;
#pragma unroll
		for (int e = 0; e < EPT; e++) {
			const int d = lane + 32 * e;
			acc[e] = acc[e] * corr + (d < D ? p * __bfloat162float(a.vc[off + d]) : 0.0f);
		}
	}
#pragma unroll
	for (int e = 0; e < EPT; e++) {
		const int d = lane + 32 * e;
		if (d < D)
			a.out[(size_t)r * a.n_heads * D + (size_t)h * D + d] = __float2bfloat16_rn(l > 0.0f ? acc[e] / l : 0.0f);
	}
}

/* ================================ host side ================================ */

int skv_cuda_attention_prepare(struct skv_backend *be, uint32_t n_heads, uint32_t head_dim)
{
	struct skv_cuda_backend *cb = skv_cuda(be);
	if (cb->attn_part && cb->attn_heads >= n_heads && cb->attn_dim >= head_dim)
		return 0;
	if (cb->attn_part)
		cudaFree(cb->attn_part);
	cb->attn_part = NULL;
	size_t floats = (size_t)SKV_CUDA_ATTN_PART_ROWS * n_heads * (head_dim + 2);
	if (cudaMalloc(&cb->attn_part, floats * sizeof(float)) != cudaSuccess) {
		(void)cudaGetLastError();
		cb->attn_part = NULL;
		return -ENOMEM;
	}
	cb->attn_heads = n_heads;
	cb->attn_dim = head_dim;
	return 0;
}

/* Lets `kernel` use `bytes` of dynamic shared memory (past the 48 KB default). */
template <typename K>
static bool smem_limit(struct skv_cuda_backend *cb, K *kernel, size_t bytes)
{
	return skv_cuda_ok(cb, cudaFuncSetAttribute(kernel, cudaFuncAttributeMaxDynamicSharedMemorySize, (int)bytes),
			   "attention: shared memory limit");
}

/* An integer A/B switch from the environment: its value when set and within [lo, hi], else def. */
static int64_t env_i64(const char *name, int64_t lo, int64_t hi, int64_t def)
{
	const char *e = getenv(name);
	int64_t v;
	return e && skv_parse_i64(e, lo, hi, &v) == 0 ? v : def;
}

int skv_cuda_attention_init(struct skv_cuda_backend *cb)
{
	const char *e = getenv("SKV_CUDA_DECODE"); /* simt: the SIMT decode kernel instead (A/B) */
	cb->decode_simt = e && !strcmp(e, "simt");
	/* the default is the wgmma prefill kernel without the intra-warpgroup softmax/MMA overlap:
	 * on the H100 it beat both the mma.sync kernel (mma) and the overlapped variant (pipe) at
	 * every length measured, head_dim 64 and 128 (docs/perf-notes.md, 2026-12-05); "wgmma" and
	 * "serial" name the default, "pipe" and "mma" the other two for A/B on a device */
	e = getenv("SKV_CUDA_PREFILL");
	cb->prefill = !e ? SKV_PREFILL_WGMMA
		      : !strcmp(e, "mma") ? SKV_PREFILL_MMA
		      : !strcmp(e, "pipe") ? SKV_PREFILL_WGMMA_PIPE
					   : SKV_PREFILL_WGMMA;
	/* the tensor-core decode kernel's cp.async stages (2: 64 KB of shared memory at head_dim
	 * 128, 3 blocks per SM; 3: 96 KB, 2 blocks) and the blocks per SM its split count aims at */
	cb->decode_stages = (int)env_i64("SKV_CUDA_DECODE_STAGES", 2, DM_STAGES_MAX, DM_STAGES_DEFAULT);
	cb->decode_blocks_per_sm = (uint32_t)env_i64("SKV_CUDA_DECODE_BLOCKS_PER_SM", 1, 64, DM_BLOCKS_PER_SM_DEFAULT);
	const bool ok = smem_limit(cb, k_attn_prefill<64>, (FA_BQ + 4 * FA_BK) * 64 * 2) &&
			smem_limit(cb, k_attn_prefill<128>, (FA_BQ + 4 * FA_BK) * 128 * 2) &&
			smem_limit(cb, k_attn_prefill_wg<64, true>, WG_SMEM(64)) &&
			smem_limit(cb, k_attn_prefill_wg<128, true>, WG_SMEM(128)) &&
			smem_limit(cb, k_attn_prefill_wg<64, false>, WG_SMEM(64)) &&
			smem_limit(cb, k_attn_prefill_wg<128, false>, WG_SMEM(128)) &&
			smem_limit(cb, k_attn_decode_mma<64, 2>, 2 * 2 * DM_BK * 64 * 2) &&
			smem_limit(cb, k_attn_decode_mma<64, 3>, 3 * 2 * DM_BK * 64 * 2) &&
			smem_limit(cb, k_attn_decode_mma<128, 2>, 2 * 2 * DM_BK * 128 * 2) &&
			smem_limit(cb, k_attn_decode_mma<128, 3>, 3 * 2 * DM_BK * 128 * 2);
	return ok ? 0 : -EIO;
}

template <int D>
static void launch_decode(struct skv_cuda_backend *cb, const attn_params &a, uint32_t n_q, uint32_t capacity)
{
	const uint32_t group = a.group;
	const bool mma = !cb->decode_simt;
	int gq;
	if (mma) { /* the largest divisor of the group that fits the 16 rows of an MMA tile */
		gq = 1;
		for (int d = 1; d <= 16; d++)
			if (group % (uint32_t)d == 0)
				gq = d;
	} else {
		gq = group % 8 == 0 ? 8 : group % 4 == 0 ? 4 : group % 2 == 0 ? 2 : 1;
	}
	const uint32_t hchunks = group / (uint32_t)gq;
	const uint32_t blocks_per_split = n_q * a.n_kv_heads * hchunks;
	/* Splits: the fewest that give every SM a block (DM_BLOCKS_PER_SM_DEFAULT; more splits
	 * measured slower: each costs a pipeline fill, a combine and reduce traffic, and a block
	 * count just past a wave leaves a tail), but no split longer than DM_MAX_SPLIT_LEN, so one
	 * long sequence in a batch of short ones is still spread over several blocks (the split
	 * length is uniform over the capacity, the longest context's); within the partials' budget
	 * and the scratch's shape. */
	uint32_t n_split = 1;
	if (cb->attn_part && a.n_heads <= cb->attn_heads && (uint32_t)D <= cb->attn_dim) {
		const uint32_t want = SKV_MAX(SKV_DIV_UP(cb->decode_blocks_per_sm * (uint32_t)cb->sm_count, blocks_per_split),
					      SKV_DIV_UP(capacity, (uint32_t)DM_MAX_SPLIT_LEN));
		const uint32_t cap = SKV_MIN(SKV_CUDA_ATTN_MAX_SPLITS, SKV_CUDA_ATTN_PART_ROWS / n_q);
		n_split = SKV_MAX(1u, SKV_MIN(want, cap));
	}
	uint32_t split_len = SKV_ALIGN_UP(SKV_DIV_UP(capacity, n_split), 64u);
	n_split = SKV_DIV_UP(capacity, split_len);
	const bool direct = n_split == 1;
	dim3 grid(n_split, a.n_kv_heads * hchunks, n_q);
	if (mma) {
		const int stages = cb->decode_stages;
		const size_t smem = (size_t)stages * 2 * DM_BK * D * 2;
		if (stages == 2)
			k_attn_decode_mma<D, 2><<<grid, 128, smem, cb->stream>>>(a, (int)split_len, (int)n_split,
										   cb->attn_part, direct, gq);
		else
			k_attn_decode_mma<D, 3><<<grid, 128, smem, cb->stream>>>(a, (int)split_len, (int)n_split,
										   cb->attn_part, direct, gq);
	} else {
		switch (gq) {
		case 8:
			k_attn_decode<D, 8><<<grid, DEC_WARPS * 32, 0, cb->stream>>>(a, (int)split_len, (int)n_split,
										       cb->attn_part, direct);
			break;
		case 4:
			k_attn_decode<D, 4><<<grid, DEC_WARPS * 32, 0, cb->stream>>>(a, (int)split_len, (int)n_split,
										       cb->attn_part, direct);
			break;
		case 2:
			k_attn_decode<D, 2><<<grid, DEC_WARPS * 32, 0, cb->stream>>>(a, (int)split_len, (int)n_split,
										       cb->attn_part, direct);
			break;
		default:
			k_attn_decode<D, 1><<<grid, DEC_WARPS * 32, 0, cb->stream>>>(a, (int)split_len, (int)n_split,
										       cb->attn_part, direct);
			break;
		}
	}
	skv_cuda_launched(cb, "attention decode");
	if (!direct) {
		k_attn_decode_reduce<<<dim3(n_q, a.n_heads), D, 0, cb->stream>>>(a, (int)split_len, (int)n_split,
										   cb->attn_part, D);
		skv_cuda_launched(cb, "attention decode reduce");
	}
}

void skv_cuda_attention(struct skv_backend *be, void *out, const void *q, uint32_t q_stride,
			const struct skv_attn_batch *b, struct skv_kv_layer cache, uint32_t n_heads, uint32_t n_kv_heads,
			uint32_t D)
{
	struct skv_cuda_backend *cb = skv_cuda(be);
	if (b->n_q == 0 || b->n_seqs == 0 || skv_cuda_dead(cb))
		return;
	uint32_t tok = skv_cuda_prof_begin(cb);
	attn_params a;
	a.out = (bf16 *)out;
	a.q = (const bf16 *)q;
	a.kc = (const bf16 *)cache.k;
	a.vc = (const bf16 *)cache.v;
	a.q_start = b->q_start;
	a.ctx_len = b->ctx_len;
	a.bt = b->block_tables;
	a.q_stride = q_stride;
	a.n_seqs = b->n_seqs;
	a.max_blocks = b->max_blocks;
	a.block_size = b->block_size;
	a.n_heads = n_heads;
	a.n_kv_heads = n_kv_heads;
	a.group = n_heads / n_kv_heads;
	a.bs_shift = -1;
	for (int sh = 0; sh < 31; sh++)
		if (b->block_size == 1u << sh)
			a.bs_shift = sh;
	a.scale_log2 = LOG2E / sqrtf((float)D);

	bool decode = b->n_q == b->n_seqs;
	for (uint32_t s = 0; decode && s < b->n_seqs; s++)
		decode = b->host_q_start[s + 1] - b->host_q_start[s] == 1;
	const bool fast = (D == 64 || D == 128) && q_stride % 8 == 0 && skv_aligned16(q) && skv_aligned16(out);
	const char *name = "attention generic";
	if (fast && decode) {
		/* Inside a graph the plan must hold for any context the block tables can describe. */
		const uint32_t capacity =
			cb->capturing ? b->max_blocks * b->block_size : SKV_MAX(1u, b->max_ctx);
		if (D == 64)
			launch_decode<64>(cb, a, b->n_q, capacity);
		else
			launch_decode<128>(cb, a, b->n_q, capacity);
		name = D == 64 ? "attention decode d64" : "attention decode d128";
	} else if (fast) {
		/* both kernels tile queries by 128 rows (FA_BQ == WG_BQ) */
		uint32_t tiles = 0;
		for (uint32_t s = 0; s < b->n_seqs; s++)
			tiles += SKV_DIV_UP((uint32_t)(b->host_q_start[s + 1] - b->host_q_start[s]), (uint32_t)FA_BQ);
		dim3 grid(n_heads, tiles);
		if (tiles && cb->prefill == SKV_PREFILL_MMA) {
			const size_t smem = (size_t)(FA_BQ + 4 * FA_BK) * D * 2;
			if (D == 64)
				k_attn_prefill<64><<<grid, FA_WARPS * 32, smem, cb->stream>>>(a);
			else
				k_attn_prefill<128><<<grid, FA_WARPS * 32, smem, cb->stream>>>(a);
		} else if (tiles && cb->prefill == SKV_PREFILL_WGMMA) {
			if (D == 64)
				k_attn_prefill_wg<64, false><<<grid, WG_THREADS, WG_SMEM(64), cb->stream>>>(a);
			else
				k_attn_prefill_wg<128, false><<<grid, WG_THREADS, WG_SMEM(128), cb->stream>>>(a);
		} else if (tiles) {
			if (D == 64)
				k_attn_prefill_wg<64, true><<<grid, WG_THREADS, WG_SMEM(64), cb->stream>>>(a);
			else
				k_attn_prefill_wg<128, true><<<grid, WG_THREADS, WG_SMEM(128), cb->stream>>>(a);
		}
		skv_cuda_launched(cb, "attention prefill");
		name = D == 64 ? "attention prefill d64" : "attention prefill d128";
	} else {
		dim3 grid(b->n_q, SKV_DIV_UP(n_heads, (uint32_t)GEN_WARPS));
		if (D <= 32)
			k_attn_generic<1><<<grid, GEN_WARPS * 32, 0, cb->stream>>>(a, (int)D);
		else if (D <= 64)
			k_attn_generic<2><<<grid, GEN_WARPS * 32, 0, cb->stream>>>(a, (int)D);
		else if (D <= 128)
			k_attn_generic<4><<<grid, GEN_WARPS * 32, 0, cb->stream>>>(a, (int)D);
		else if (D <= 256)
			k_attn_generic<8><<<grid, GEN_WARPS * 32, 0, cb->stream>>>(a, (int)D);
		else
			k_attn_generic<16><<<grid, GEN_WARPS * 32, 0, cb->stream>>>(a, (int)D);
		skv_cuda_launched(cb, "attention generic");
	}
	if (tok != UINT32_MAX) {
		/* FLOPs: 4 d per (query, key) pair attended; bytes: q and out once, each sequence's K
		 * and V once per KV head. */
		double pairs = 0.0, kv = 0.0;
		for (uint32_t s = 0; s < b->n_seqs; s++) {
			const double nq = b->host_q_start[s + 1] - b->host_q_start[s], ctx = b->host_ctx_len[s];
			pairs += nq * ctx - nq * (nq - 1) / 2.0;
			kv += ctx;
		}
		skv_cuda_prof_end(cb, tok, name, 4.0 * D * n_heads * pairs,
				  2.0 * (2.0 * b->n_q * n_heads * D + 2.0 * kv * n_kv_heads * D));
	}
}
