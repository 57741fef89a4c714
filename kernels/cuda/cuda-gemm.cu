/* cuda-gemm.cu: out[M, N] (+)= a[M, K] @ w[N, K]^T (+ bias) through cuBLASLt, bf16 in, fp32
 * accumulation, bf16 or fp32 out.
 *
 * Row-major out = a @ w^T is column-major out^T = w^T(as stored) @ a: cuBLASLt's "TN" case with
 * A = w (K x N, ld K, transposed), B = a (K x M, ld K), C = D = out (N x M, ld N). The bias rides
 * the BIAS epilogue (bf16 output); accumulate is beta = 1 with C = D = out, the residual add.
 *
 * Plans: one per shape class (N, K, flags, M bucket) holding the descriptors and the algorithm
 * the heuristic picked for the bucket's M; made on first use (the engine's first steps, the
 * warm-up) and reused after, so a steady-state step makes no heuristic query and no allocation.
 * M buckets: exact up to 16 (decode batches), then powers of two. A bucket's algorithm runs the
 * smaller M of its bucket; if cuBLASLt refuses it for one M, that M gets an exact plan.
 */
#include "cuda-internal.h"

enum {
	PLAN_F32 = 1,  /* fp32 output (logits) */
	PLAN_BIAS = 2, /* BIAS epilogue */
	PLAN_ACC = 4,  /* beta = 1 */
};

struct skv_cuda_plan {
	uint32_t n, k, mb, flags;
	cublasLtMatmulDesc_t desc;
	cublasLtMatrixLayout_t la, lb, lc;
	cublasLtMatmulAlgo_t algo;
	bool have_algo;
};

int skv_cuda_gemm_init(struct skv_cuda_backend *cb)
{
	const char *e = getenv("SKV_CUDA_GEMV"); /* 0: every GEMM on cuBLASLt (A/B) */
	cb->gemv = !(e && e[0] == '0');
	cb->plans = (struct skv_cuda_plan *)calloc(SKV_CUDA_MAX_PLANS, sizeof(*cb->plans));
	return cb->plans ? 0 : -ENOMEM;
}

static void plan_destroy(struct skv_cuda_plan *p)
{
	if (p->desc)
		cublasLtMatmulDescDestroy(p->desc);
	if (p->la)
		cublasLtMatrixLayoutDestroy(p->la);
	if (p->lb)
		cublasLtMatrixLayoutDestroy(p->lb);
	if (p->lc)
		cublasLtMatrixLayoutDestroy(p->lc);
	memset(p, 0, sizeof(*p));
}

void skv_cuda_gemm_done(struct skv_cuda_backend *cb)
{
	if (!cb->plans)
		return;
	for (uint32_t i = 0; i < cb->n_plans; i++)
		plan_destroy(&cb->plans[i]);
	free(cb->plans);
	cb->plans = NULL;
}

static uint32_t m_bucket(uint32_t m)
{
	if (m <= 16)
		return m;
	uint32_t b = 32;
	while (b < m)
		b <<= 1;
	return b;
}

/* Finds or makes the plan for (n, k, mb, flags); NULL (error recorded) when cuBLASLt offers none. */
static struct skv_cuda_plan *plan_get(struct skv_cuda_backend *cb, uint32_t n, uint32_t k, uint32_t mb, uint32_t flags)
{
	for (uint32_t i = 0; i < cb->n_plans; i++) {
		struct skv_cuda_plan *p = &cb->plans[i];
		if (p->n == n && p->k == k && p->mb == mb && p->flags == flags)
			return p;
	}
	if (cb->n_plans == SKV_CUDA_MAX_PLANS) {
		skv_cuda_fail(cb, "gemm", "too many GEMM shape classes");
		return NULL;
	}
	struct skv_cuda_plan *p = &cb->plans[cb->n_plans];
	const cudaDataType_t ct = (flags & PLAN_F32) ? CUDA_R_32F : CUDA_R_16BF;
	const cublasOperation_t ta = CUBLAS_OP_T, tb = CUBLAS_OP_N;
	cublasLtMatmulPreference_t pref = NULL;
	cublasLtMatmulHeuristicResult_t res[8];
	int found = 0;
	size_t ws = SKV_CUDA_WORKSPACE_BYTES;
	bool ok;

	memset(p, 0, sizeof(*p));
	p->n = n;
	p->k = k;
	p->mb = mb;
	p->flags = flags;
	ok = cublasLtMatmulDescCreate(&p->desc, CUBLAS_COMPUTE_32F, CUDA_R_32F) == CUBLAS_STATUS_SUCCESS &&
	     cublasLtMatmulDescSetAttribute(p->desc, CUBLASLT_MATMUL_DESC_TRANSA, &ta, sizeof(ta)) ==
		     CUBLAS_STATUS_SUCCESS &&
	     cublasLtMatmulDescSetAttribute(p->desc, CUBLASLT_MATMUL_DESC_TRANSB, &tb, sizeof(tb)) ==
		     CUBLAS_STATUS_SUCCESS &&
	     cublasLtMatrixLayoutCreate(&p->la, CUDA_R_16BF, k, n, k) == CUBLAS_STATUS_SUCCESS &&
	     cublasLtMatrixLayoutCreate(&p->lb, CUDA_R_16BF, k, mb, k) == CUBLAS_STATUS_SUCCESS &&
	     cublasLtMatrixLayoutCreate(&p->lc, ct, n, mb, n) == CUBLAS_STATUS_SUCCESS;
	if (ok && (flags & PLAN_BIAS)) {
		cublasLtEpilogue_t epi = CUBLASLT_EPILOGUE_BIAS;
		cudaDataType_t bt = CUDA_R_16BF;
		ok = cublasLtMatmulDescSetAttribute(p->desc, CUBLASLT_MATMUL_DESC_EPILOGUE, &epi, sizeof(epi)) ==
			     CUBLAS_STATUS_SUCCESS &&
		     cublasLtMatmulDescSetAttribute(p->desc, CUBLASLT_MATMUL_DESC_BIAS_DATA_TYPE, &bt, sizeof(bt)) ==
			     CUBLAS_STATUS_SUCCESS;
	}
	ok = ok && cublasLtMatmulPreferenceCreate(&pref) == CUBLAS_STATUS_SUCCESS &&
	     cublasLtMatmulPreferenceSetAttribute(pref, CUBLASLT_MATMUL_PREF_MAX_WORKSPACE_BYTES, &ws, sizeof(ws)) ==
		     CUBLAS_STATUS_SUCCESS;
	if (ok && cublasLtMatmulAlgoGetHeuristic(cb->lt, p->desc, p->la, p->lb, p->lc, p->lc, pref, 8, res, &found) ==
			  CUBLAS_STATUS_SUCCESS &&
	    found > 0) {
		p->algo = res[0].algo;
		p->have_algo = true;
	}
	if (pref)
		cublasLtMatmulPreferenceDestroy(pref);
	if (!ok || !p->have_algo) {
		char msg[160];
		snprintf(msg, sizeof(msg), "no cuBLASLt algorithm for M=%u N=%u K=%u flags=%u", mb, n, k, flags);
		skv_cuda_fail(cb, "gemm", msg);
		plan_destroy(p);
		return NULL;
	}
	cb->n_plans++;
	return p;
}

static cublasStatus_t plan_run(struct skv_cuda_backend *cb, struct skv_cuda_plan *p, void *out, const void *a,
			       const void *w, const void *bias, uint32_t m)
{
	const float alpha = 1.0f, beta = (p->flags & PLAN_ACC) ? 1.0f : 0.0f;
	uint64_t cols = m;
	cublasStatus_t s;

	if ((s = cublasLtMatrixLayoutSetAttribute(p->lb, CUBLASLT_MATRIX_LAYOUT_COLS, &cols, sizeof(cols))) !=
		    CUBLAS_STATUS_SUCCESS ||
	    (s = cublasLtMatrixLayoutSetAttribute(p->lc, CUBLASLT_MATRIX_LAYOUT_COLS, &cols, sizeof(cols))) !=
		    CUBLAS_STATUS_SUCCESS)
		return s;
	if (p->flags & PLAN_BIAS) {
		s = cublasLtMatmulDescSetAttribute(p->desc, CUBLASLT_MATMUL_DESC_BIAS_POINTER, &bias, sizeof(bias));
		if (s != CUBLAS_STATUS_SUCCESS)
			return s;
	}
	return cublasLtMatmul(cb->lt, p->desc, &alpha, w, p->la, a, p->lb, &beta, out, p->lc, out, p->lc, &p->algo,
			      cb->workspace, SKV_CUDA_WORKSPACE_BYTES, cb->stream);
}

__global__ void k_add_bias_f32(float *out, const bf16 *bias, uint32_t M, uint32_t N)
{
	size_t i = (size_t)blockIdx.x * blockDim.x + threadIdx.x;
	if (i < (size_t)M * N)
		out[i] += __bfloat162float(bias[i % N]);
}

void skv_cuda_add_bias_f32(struct skv_cuda_backend *cb, float *out, const bf16 *bias, uint32_t M, uint32_t N)
{
	size_t n = (size_t)M * N;
	k_add_bias_f32<<<(unsigned)((n + 255) / 256), 256, 0, cb->stream>>>(out, bias, M, N);
	skv_cuda_launched(cb, "gemm bias");
}

/* ---- the weight-streaming GEMV for decode (M <= 4) ----
 * cuBLAS runs these shapes at about 76% of the copy rate (docs/performance.md); a decode step is
 * nothing but streaming the weights, so it gets its own kernel: each warp owns 2 rows of W and
 * keeps 16 independent 16-byte loads in flight per lane (L1 bypassed: W is read once), the M
 * activation rows come through L1 (every warp of the SM reads the same ones), fp32 sums reduced
 * across the warp at the end, bias / accumulate / fp32 output applied in one rounding, as
 * cuBLASLt's epilogue does. */
#define GV_WARPS 8
#define GV_ROWS 2
#define GV_CH 8

__device__ __forceinline__ uint4 ld_stream(const uint4 *p)
{
	uint4 v;
	asm("ld.global.nc.L1::no_allocate.v4.u32 {%0,%1,%2,%3}, [%4];"
	    : "=r"(v.x), "=r"(v.y), "=r"(v.z), "=r"(v.w)
	    : "l"(p));
	return v;
}

__device__ __forceinline__ void bf16x8_to_f32(uint4 v, float *f)
{
	const __nv_bfloat162 *h = (const __nv_bfloat162 *)&v;
#pragma unroll
	for (int e = 0; e < 4; e++) {
		float2 x = __bfloat1622float2(h[e]);
		f[2 * e] = x.x;
		f[2 * e + 1] = x.y;
	}
}

template <int M, bool F32>
__global__ void __launch_bounds__(GV_WARPS * 32) k_gemv(void *out, const bf16 *a, const bf16 *w, const bf16 *bias,
							 int N, int K, bool acc)
{
	const int warp = threadIdx.x >> 5, lane = threadIdx.x & 31;
	const int n0 = (blockIdx.x * GV_WARPS + warp) * GV_ROWS;
	if (n0 >= N)
		return;
	const int nch = K / 8;
	const uint4 *w4 = (const uint4 *)w, *a4 = (const uint4 *)a;
	float sum[GV_ROWS][M];
#pragma unroll
	for (int r = 0; r < GV_ROWS; r++)
#pragma unroll
		for (int m = 0; m < M; m++)
			sum[r][m] = 0.0f;

	for (int c0 = 0; c0 < nch; c0 += 32 * GV_CH) {
		uint4 wr[GV_ROWS][GV_CH];
#pragma unroll
		for (int r = 0; r < GV_ROWS; r++)
#pragma unroll
			for (int j = 0; j < GV_CH; j++) {
				const int c = c0 + lane + 32 * j;
				wr[r][j] = c < nch && n0 + r < N ? ld_stream(w4 + (size_t)(n0 + r) * nch + c)
								 : make_uint4(0, 0, 0, 0);
			}
#pragma unroll
		for (int j = 0; j < GV_CH; j++) {
			const int c = c0 + lane + 32 * j;
			if (c < nch) {
				float wf[GV_ROWS][8];
#pragma unroll
				for (int r = 0; r < GV_ROWS; r++)
					bf16x8_to_f32(wr[r][j], wf[r]);
#pragma unroll
				for (int m = 0; m < M; m++) {
					float af[8];
					bf16x8_to_f32(__ldg(a4 + (size_t)m * nch + c), af);
#pragma unroll
					for (int r = 0; r < GV_ROWS; r++)
#pragma unroll
						for (int e = 0; e < 8; e++)
							sum[r][m] = fmaf(wf[r][e], af[e], sum[r][m]);
				}
			}
		}
	}
#pragma unroll
	for (int r = 0; r < GV_ROWS; r++)
#pragma unroll
		for (int m = 0; m < M; m++)
#pragma unroll
			for (int o = 16; o > 0; o >>= 1)
				sum[r][m] += __shfl_xor_sync(0xffffffffu, sum[r][m], o);
	if (lane != 0)
		return;
#pragma unroll
	for (int r = 0; r < GV_ROWS; r++) {
		const int n = n0 + r;
		if (n >= N)
			break;
		const float b = bias ? __bfloat162float(bias[n]) : 0.0f;
#pragma unroll
		for (int m = 0; m < M; m++) {
			const size_t i = (size_t)m * N + n;
			if (F32) {
				float *o = (float *)out;
				o[i] = (acc ? o[i] : 0.0f) + sum[r][m] + b;
			} else {
				bf16 *o = (bf16 *)out;
				o[i] = __float2bfloat16_rn((acc ? __bfloat162float(o[i]) : 0.0f) + sum[r][m] + b);
			}
		}
	}
}

/* SKV_CUDA_GEMV=0 sends every GEMM to cuBLASLt (for A/B measurements). */
template <bool F32>
static void launch_gemv(struct skv_cuda_backend *cb, void *out, const void *a, const void *w, const void *bias,
			uint32_t M, uint32_t N, uint32_t K, bool acc)
{
	const unsigned blocks = SKV_DIV_UP(N, (uint32_t)(GV_WARPS * GV_ROWS));
	const bf16 *aa = (const bf16 *)a, *ww = (const bf16 *)w, *bb = (const bf16 *)bias;
	switch (M) {
	case 1:
		k_gemv<1, F32><<<blocks, GV_WARPS * 32, 0, cb->stream>>>(out, aa, ww, bb, (int)N, (int)K, acc);
		break;
	case 2:
		k_gemv<2, F32><<<blocks, GV_WARPS * 32, 0, cb->stream>>>(out, aa, ww, bb, (int)N, (int)K, acc);
		break;
	case 3:
		k_gemv<3, F32><<<blocks, GV_WARPS * 32, 0, cb->stream>>>(out, aa, ww, bb, (int)N, (int)K, acc);
		break;
	default:
		k_gemv<4, F32><<<blocks, GV_WARPS * 32, 0, cb->stream>>>(out, aa, ww, bb, (int)N, (int)K, acc);
		break;
	}
	skv_cuda_launched(cb, "gemv");
}

void skv_cuda_gemm(struct skv_backend *be, void *out, const void *a, const void *w, const void *bias, uint32_t M,
		   uint32_t N, uint32_t K, bool accumulate, bool out_f32)
{
	struct skv_cuda_backend *cb = skv_cuda(be);
	if (M == 0 || skv_cuda_dead(cb))
		return;
	if (M <= 4 && K % 8 == 0 && skv_aligned16(a) && skv_aligned16(w) && cb->gemv) {
		uint32_t tok = skv_cuda_prof_begin(cb);
		if (out_f32)
			launch_gemv<true>(cb, out, a, w, bias, M, N, K, accumulate);
		else
			launch_gemv<false>(cb, out, a, w, bias, M, N, K, accumulate);
		if (tok != UINT32_MAX) {
			char name[64];
			const double osz = out_f32 ? 4.0 : 2.0;
			snprintf(name, sizeof(name), "gemv %ux%ux%u%s", M, N, K, out_f32 ? " f32" : "");
			skv_cuda_prof_end(cb, tok, name, 2.0 * M * N * K,
					  2.0 * ((double)M * K + (double)N * K) + osz * M * N * (accumulate ? 2 : 1));
		}
		return;
	}
	/* The BIAS epilogue is used with bf16 output; an fp32 output adds its bias separately. */
	const bool epi_bias = bias && !out_f32;
	const uint32_t flags = (out_f32 ? PLAN_F32 : 0) | (epi_bias ? PLAN_BIAS : 0) | (accumulate ? PLAN_ACC : 0);
	uint32_t tok = skv_cuda_prof_begin(cb);

	struct skv_cuda_plan *p = plan_get(cb, N, K, m_bucket(M), flags);
	if (!p)
		return;
	cublasStatus_t s = plan_run(cb, p, out, a, w, bias, M);
	if (s != CUBLAS_STATUS_SUCCESS && p->mb != M) {
		p = plan_get(cb, N, K, M, flags); /* the bucket's algorithm does not take this M */
		if (!p)
			return;
		s = plan_run(cb, p, out, a, w, bias, M);
	}
	if (s != CUBLAS_STATUS_SUCCESS) {
		char msg[160];
		snprintf(msg, sizeof(msg), "cublasLtMatmul failed (status %d) for M=%u N=%u K=%u", (int)s, M, N, K);
		skv_cuda_fail(cb, "gemm", msg);
		return;
	}
	if (bias && !epi_bias)
		skv_cuda_add_bias_f32(cb, (float *)out, (const bf16 *)bias, M, N);
	if (tok != UINT32_MAX) {
		char name[64];
		const double osz = out_f32 ? 4.0 : 2.0;
		snprintf(name, sizeof(name), "gemm %ux%ux%u%s", M, N, K, out_f32 ? " f32" : "");
		skv_cuda_prof_end(cb, tok, name, 2.0 * M * N * K,
				  2.0 * ((double)M * K + (double)N * K) + osz * M * N * (accumulate ? 2 : 1));
	}
}
