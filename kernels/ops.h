/* ops.h: the op table every backend implements, and the memory it works on.
 *
 * The engine (worker/engine.c) orchestrates a step and calls only these ops; a backend supplies
 * them: kernels/cpu is the reference (fp32 math, short and obviously right), kernels/cuda the fast
 * path. Pointers passed to ops are backend memory ("device pointers"): host memory for the CPU
 * backend, GPU memory for CUDA. Ops are asynchronous on a backend's stream; sync() waits.
 *
 * Data types: weights are in the image's dtype (fp32 for CPU, bf16 for CUDA); activations are in
 * the backend's act_dtype; norms, softmax and the logits are fp32; ids, positions, slots and
 * block tables are int32. All matrices are row-major; a weight W is [out, in] and a GEMM
 * computes out = a @ W^T, as PyTorch's Linear does.
 *
 * This header knows nothing of models, sequences or schedulers.
 */
#pragma once

#include "skv-base.h"
#include "skv-dtype.h"
#include "sample.h"

struct skv_backend;

/* Paged KV cache of one cache layer: [num_blocks, block_size, n_kv_heads, head_dim] for K and for
 * V, in the backend's kv dtype. Slot s = block * block_size + offset. */
struct skv_kv_layer {
	void *k;
	void *v;
};

/* The queries of one attention call, grouped by sequence. Query row j of sequence s sits at
 * q_start[s] + j, has absolute position ctx_len[s] - (q_start[s+1] - q_start[s]) + j, and attends
 * causally to cache positions 0..that position through block_tables[s * max_blocks ...].
 * The arrays are backend memory; the host_* mirrors let backends plan without reading them back. */
struct skv_attn_batch {
	uint32_t n_seqs;
	uint32_t n_q;	     /* query rows in all */
	uint32_t max_blocks; /* row stride of block_tables */
	uint32_t max_ctx;    /* largest ctx_len */
	uint32_t block_size;
	const int32_t *q_start;	     /* [n_seqs + 1] */
	const int32_t *ctx_len;	     /* [n_seqs] */
	const int32_t *block_tables; /* [n_seqs, max_blocks] */
	const int32_t *host_q_start; /* host copies of the same */
	const int32_t *host_ctx_len;
};

/* RoPE parameters: inv_freq[head_dim / 2] in backend memory, fp32, already scaled (llama3 or
 * linear); rotation is rotate-half (the first half pairs with the second). */
struct skv_rope {
	const float *inv_freq;
	uint32_t head_dim;
};

/* One row of a per-op timing profile: every call of one op with one shape class. flops and
 * bytes are the work the calls had to do (bytes: each input read once, each output written
 * once), so flops / time and bytes / time are the achieved rates. */
struct skv_op_stat {
	char name[64]; /* "gemm 2048x6144x4096", "attention prefill d128", "rmsnorm", ... */
	uint64_t calls;
	double ms; /* device time, all calls */
	double flops;
	double bytes;
};

struct skv_ops {
	const char *name;
	enum skv_dtype act_dtype; /* activations */
	enum skv_dtype w_dtype;	  /* weights the backend expects in its image */
	enum skv_dtype kv_dtype;  /* KV cache elements */

	void (*destroy)(struct skv_backend *be);

	/* Memory. alloc returns zeroed memory or a negative errno. upload and download are ordered
	 * with the ops; a download into host_alloc memory (and an upload from it) may complete only
	 * at the next sync(), so the host must not read (or rewrite) that memory before then. */
	int (*alloc)(struct skv_backend *be, size_t bytes, void **ret);
	void (*free)(struct skv_backend *be, void *p);
	int (*upload)(struct skv_backend *be, void *dst, const void *host_src, size_t bytes);
	int (*download)(struct skv_backend *be, void *host_dst, const void *src, size_t bytes);
	/* Host memory the backend copies from and to fastest (pinned for CUDA). */
	int (*host_alloc)(struct skv_backend *be, size_t bytes, void **ret);
	void (*host_free)(struct skv_backend *be, void *p);
	int (*sync)(struct skv_backend *be); /* waits for every op issued; reports a sticky error */

	/* Called once at engine creation with the largest shapes any step will use, so a backend
	 * allocates its scratch at start-up and never during a step. */
	int (*prepare)(struct skv_backend *be, uint32_t max_context, uint32_t max_rows, uint32_t vocab);

	/* out[n, H] = table[ids[i], :] (table in w_dtype, out in act_dtype). */
	void (*embed)(struct skv_backend *be, void *out, const void *table, const int32_t *ids, uint32_t n,
		      uint32_t H);

	/* out[n, H] = x * rsqrt(mean(x^2) + eps) * w, reduction in fp32. out may equal x. */
	void (*rmsnorm)(struct skv_backend *be, void *out, const void *x, const void *w, uint32_t n, uint32_t H,
			float eps);

	/* out[M, N] (+)= a[M, K] @ w[N, K]^T + bias[N]; accumulate adds to what out holds (the
	 * residual add). bias may be NULL. out_f32 writes fp32 (the logits) instead of act_dtype. */
	void (*gemm)(struct skv_backend *be, void *out, const void *a, const void *w, const void *bias, uint32_t M,
		     uint32_t N, uint32_t K, bool accumulate, bool out_f32);

	/* RoPE in place on n_heads heads of each of n rows (row r starts at x + r * stride elements),
	 * at positions pos[r]. */
	void (*rope)(struct skv_backend *be, void *x, uint32_t stride, uint32_t n, uint32_t n_heads,
		     const int32_t *pos, const struct skv_rope *rope);

	/* For each of n rows: RoPE on the n_kv_heads heads of k (at pos[r]), then store k and v into
	 * cache slot slots[r]. k and v rows start at k + r * stride and v + r * stride. k is rotated
	 * in place. A negative slot skips its row entirely (a padding row of a captured graph). */
	void (*rope_store_kv)(struct skv_backend *be, void *k, const void *v, uint32_t stride, uint32_t n,
			      uint32_t n_kv_heads, const int32_t *pos, const int32_t *slots,
			      const struct skv_rope *rope, struct skv_kv_layer cache);

	/* Causal paged attention: out[n_q, n_heads * d] from q rows (stride q_stride elements),
	 * GQA with head h reading KV head h / (n_heads / n_kv_heads), scale 1/sqrt(d), softmax in fp32. */
	void (*attention)(struct skv_backend *be, void *out, const void *q, uint32_t q_stride,
			  const struct skv_attn_batch *b, struct skv_kv_layer cache, uint32_t n_heads,
			  uint32_t n_kv_heads, uint32_t head_dim);

	/* out[n, inter] = silu(gu[:, :inter]) * gu[:, inter:] (gu is [n, 2 inter]). */
	void (*silu_mul)(struct skv_backend *be, void *out, const void *gu, uint32_t n, uint32_t inter);

	/* out[i, :] = in[idx[i], :] for i < n, rows of H act_dtype elements; out and in do not overlap. */
	void (*gather_rows)(struct skv_backend *be, void *out, const void *in, const int32_t *idx, uint32_t n,
			    uint32_t H);

	/* out[r] = the token sampled from logits row r (fp32 [n, vocab]) with params[r] (see
	 * sample.h); out and params are backend memory. */
	void (*sample)(struct skv_backend *be, int32_t *out, const float *logits, const struct skv_sample_params *params,
		       uint32_t n, uint32_t vocab);

	/* Everything below is optional: NULL where a backend has no use for it (the CPU backend). */

	/* Called once after prepare() with the model's attention shape, so a backend sizes the
	 * scratch its attention kernels need (split-context partial results) at start-up. */
	int (*prepare_attention)(struct skv_backend *be, uint32_t n_heads, uint32_t head_dim);

	/* Captured op sequences (CUDA graphs), keyed by the caller. Between graph_begin and
	 * graph_end the ops are recorded, not run; graph_launch replays a recording. A recording
	 * keeps every argument it was given: device pointers, sizes and the host_* mirrors' shape
	 * (host_q_start), so the caller keeps those fixed for a key (padded batches, fixed buffers);
	 * uploads and downloads from host_alloc memory replay with that memory's contents at replay
	 * time. Attention recorded in a graph plans for any context up to max_blocks * block_size,
	 * never for the max_ctx it was recorded with. graph_end returns a negative errno (and
	 * discards the recording) when capture failed; the caller then runs the ops directly.
	 * graph_launch returns -ENOENT for a key never recorded. */
	int (*graph_begin)(struct skv_backend *be);
	int (*graph_end)(struct skv_backend *be, uint64_t key);
	int (*graph_launch)(struct skv_backend *be, uint64_t key);

	/* Per-op timing (benchmarks): between profile_start and profile_stop every op is timed on
	 * the device (graphs are not used meanwhile: graph_launch answers -ENOENT and graph_begin
	 * refuses, so the caller runs the ops one by one);
	 * profile_stop syncs and returns up to max aggregated rows (one per op and shape class). */
	int (*profile_start)(struct skv_backend *be);
	int (*profile_stop)(struct skv_backend *be, struct skv_op_stat *ret, uint32_t max, uint32_t *ret_n);
};

struct skv_backend {
	const struct skv_ops *ops;
};

/* The CPU backend: fp32 weights and activations, fp32 KV. threads = 0 uses every core. */
int skv_backend_cpu_new(unsigned threads, struct skv_backend **ret, struct skv_err *err);

/* Whether this build has the CUDA backend, and opening it (device index); -ENODEV without one. */
bool skv_backend_cuda_available(void);
int skv_backend_cuda_new(int device, struct skv_backend **ret, struct skv_err *err);

/* llama3 / linear / plain inverse frequencies for head_dim d, exactly as transformers computes
 * them (fp32 arithmetic): out[d / 2]. rope_type is enum skv_rope_type from model-config.h,
 * passed as plain numbers so kernels/ depends on no model header. */
void skv_rope_inv_freq(float *out, uint32_t d, double theta, uint32_t rope_type, double factor, double low_freq_factor,
		       double high_freq_factor, uint32_t orig_max_position);
