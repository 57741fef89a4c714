/* cuda-internal.h: the CUDA backend's private state and the helpers its files share.
 *
 * One backend = one device, one stream, one cuBLASLt handle. Every op is asynchronous on the
 * stream; errors are sticky (the first one is kept, printed once to stderr, and returned by
 * sync()), because after a device fault the context is lost and the worker must be replaced.
 * Everything a step needs is allocated at start-up (prepare, prepare_attention, the first use of
 * a GEMM shape class); a step only launches work.
 *
 * Not here (yet): importing the weights and KV arena from skvd's VMM-exported fds. The backend
 * keeps device memory behind alloc/free only, so an import path can later hand the engine
 * mapped VMM ranges without the ops knowing the difference.
 */
#pragma once

#include <cublasLt.h>
#include <cuda_bf16.h>
#include <cuda_runtime.h>
#include <stdint.h>
#include <stdio.h>
#include <string.h>

extern "C" {
#include "ops.h"
}

typedef __nv_bfloat16 bf16;

#define SKV_CUDA_WORKSPACE_BYTES (32u << 20) /* cuBLASLt workspace: 32 MiB, as cuBLAS advises for Hopper */
#define SKV_CUDA_MAX_GRAPHS 256
#define SKV_CUDA_MAX_PLANS 1024
#define SKV_CUDA_PROF_CALLS 32768
#define SKV_CUDA_PROF_ROWS 128
/* Decode attention splits the context of each query; partial results are kept for at most this
 * many (query row, split) pairs, which bounds the scratch: 4096 * n_heads * (head_dim + 2) fp32. */
#define SKV_CUDA_ATTN_PART_ROWS 4096u
#define SKV_CUDA_ATTN_MAX_SPLITS 64u

struct skv_cuda_plan; /* cuda-gemm.cu */

struct skv_cuda_graph {
	uint64_t key;
	cudaGraphExec_t exec;
};

struct skv_cuda_prof_call {
	uint32_t row; /* index into prof_rows */
	double flops, bytes;
};

/* the prefill attention kernel (SKV_CUDA_PREFILL): wgmma without the softmax/MMA overlap (the
 * default), wgmma with it ("pipe"), or the mma.sync kernel ("mma") */
enum skv_cuda_prefill { SKV_PREFILL_WGMMA, SKV_PREFILL_WGMMA_PIPE, SKV_PREFILL_MMA };

struct skv_cuda_backend {
	struct skv_backend base;
	int device;
	int sm_count;
	cudaStream_t stream;
	cublasLtHandle_t lt;
	void *workspace; /* [SKV_CUDA_WORKSPACE_BYTES] */
	int error;	 /* first error, a negative errno; sticky */
	int capture_error;

	struct skv_cuda_plan *plans; /* [SKV_CUDA_MAX_PLANS] GEMM shape classes and their algorithms */
	uint32_t n_plans;

	/* A/B switches for device runs, read from the environment once, at creation:
	 * SKV_CUDA_GEMV=0, SKV_CUDA_DECODE=simt, SKV_CUDA_DECODE_STAGES, SKV_CUDA_DECODE_BLOCKS_PER_SM,
	 * SKV_CUDA_PREFILL=pipe|mma (the wgmma prefill attention with its softmax/MMA overlap, or the
	 * mma.sync kernel, instead of the default: wgmma without the overlap) */
	bool gemv, decode_simt;
	enum skv_cuda_prefill prefill;
	int decode_stages;
	uint32_t decode_blocks_per_sm;
	float *attn_part; /* [SKV_CUDA_ATTN_PART_ROWS, n_heads, head_dim + 2] decode split partials */
	uint32_t attn_heads, attn_dim;

	bool capturing;
	struct skv_cuda_graph graphs[SKV_CUDA_MAX_GRAPHS];
	uint32_t n_graphs;

	bool profiling;
	cudaEvent_t *prof_ev; /* [2 * SKV_CUDA_PROF_CALLS] */
	struct skv_cuda_prof_call *prof_calls;
	uint32_t n_prof_calls, prof_dropped;
	struct skv_op_stat prof_rows[SKV_CUDA_PROF_ROWS];
	uint32_t n_prof_rows;
};

static inline struct skv_cuda_backend *skv_cuda(struct skv_backend *be) { return (struct skv_cuda_backend *)be; }

/* Records an error (the first one sticks; inside a graph capture it only spoils the capture). */
void skv_cuda_fail(struct skv_cuda_backend *cb, const char *what, const char *detail);
/* true when e is cudaSuccess; otherwise records it. */
bool skv_cuda_ok(struct skv_cuda_backend *cb, cudaError_t e, const char *what);
/* After a kernel launch: picks up launch errors. */
static inline void skv_cuda_launched(struct skv_cuda_backend *cb, const char *what)
{
	cudaError_t e = cudaGetLastError();
	if (e != cudaSuccess)
		skv_cuda_ok(cb, e, what);
}
/* Whether ops should do nothing (a sticky error is set). */
static inline bool skv_cuda_dead(const struct skv_cuda_backend *cb) { return cb->error != 0; }

/* Per-op timing: begin returns a token for end (UINT32_MAX when not profiling). */
uint32_t skv_cuda_prof_begin(struct skv_cuda_backend *cb);
void skv_cuda_prof_end(struct skv_cuda_backend *cb, uint32_t tok, const char *name, double flops, double bytes);

static inline bool skv_aligned16(const void *p) { return ((uintptr_t)p & 15u) == 0; }

/* The ops, by file. */
int skv_cuda_gemm_init(struct skv_cuda_backend *cb);
void skv_cuda_gemm_done(struct skv_cuda_backend *cb);
void skv_cuda_gemm(struct skv_backend *be, void *out, const void *a, const void *w, const void *bias, uint32_t M,
		   uint32_t N, uint32_t K, bool accumulate, bool out_f32);

void skv_cuda_embed(struct skv_backend *be, void *out, const void *table, const int32_t *ids, uint32_t n, uint32_t H);
void skv_cuda_rmsnorm(struct skv_backend *be, void *out, const void *x, const void *w, uint32_t n, uint32_t H,
		      float eps);
void skv_cuda_rope(struct skv_backend *be, void *x, uint32_t stride, uint32_t n, uint32_t n_heads, const int32_t *pos,
		   const struct skv_rope *rope);
void skv_cuda_rope_store_kv(struct skv_backend *be, void *k, const void *v, uint32_t stride, uint32_t n,
			    uint32_t n_kv_heads, const int32_t *pos, const int32_t *slots, const struct skv_rope *rope,
			    struct skv_kv_layer cache);
void skv_cuda_silu_mul(struct skv_backend *be, void *out, const void *gu, uint32_t n, uint32_t inter);
void skv_cuda_gather_rows(struct skv_backend *be, void *out, const void *in, const int32_t *idx, uint32_t n,
			  uint32_t H);
void skv_cuda_add_bias_f32(struct skv_cuda_backend *cb, float *out, const bf16 *bias, uint32_t M, uint32_t N);

int skv_cuda_attention_init(struct skv_cuda_backend *cb);
int skv_cuda_attention_prepare(struct skv_backend *be, uint32_t n_heads, uint32_t head_dim);
void skv_cuda_attention(struct skv_backend *be, void *out, const void *q, uint32_t q_stride,
			const struct skv_attn_batch *b, struct skv_kv_layer cache, uint32_t n_heads, uint32_t n_kv_heads,
			uint32_t head_dim);

void skv_cuda_sample(struct skv_backend *be, int32_t *out, const float *logits, const struct skv_sample_params *params,
		     uint32_t n, uint32_t vocab);
