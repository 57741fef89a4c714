/* cuda-backend.cu: creation, memory, sync, graphs and per-op timing of the CUDA backend.
 *
 * Graphs: graph_begin starts a stream capture, graph_end instantiates what was recorded under the
 * caller's key, graph_launch replays it. Errors seen while capturing spoil only that capture (the
 * engine then runs the ops directly); errors outside a capture are sticky.
 */
#include "cuda-internal.h"

#include <stdarg.h>

void skv_cuda_fail(struct skv_cuda_backend *cb, const char *what, const char *detail)
{
	if (cb->capturing) {
		if (!cb->capture_error)
			cb->capture_error = -EIO;
		return;
	}
	if (cb->error)
		return;
	cb->error = -EIO;
	fprintf(stderr, "<3>cuda %d | %s: %s\n", cb->device, what, detail);
}

bool skv_cuda_ok(struct skv_cuda_backend *cb, cudaError_t e, const char *what)
{
	if (e == cudaSuccess)
		return true;
	skv_cuda_fail(cb, what, cudaGetErrorString(e));
	return false;
}

static int cuda_alloc(struct skv_backend *be, size_t bytes, void **ret)
{
	struct skv_cuda_backend *cb = skv_cuda(be);
	void *p = NULL;
	if (cudaMalloc(&p, bytes ? bytes : 256) != cudaSuccess) {
		(void)cudaGetLastError(); /* an allocation failure is not sticky */
		return -ENOMEM;
	}
	/* on the backend's stream (non-blocking: the legacy stream would not order it), and waited
	 * for: alloc runs at start-up, never inside a step */
	if (!skv_cuda_ok(cb, cudaMemsetAsync(p, 0, bytes, cb->stream), "alloc: memset") ||
	    !skv_cuda_ok(cb, cudaStreamSynchronize(cb->stream), "alloc: memset")) {
		cudaFree(p);
		return -EIO;
	}
	*ret = p;
	return 0;
}

static void cuda_free(struct skv_backend *be, void *p)
{
	(void)be;
	if (p)
		cudaFree(p);
}

static int cuda_upload(struct skv_backend *be, void *dst, const void *src, size_t bytes)
{
	struct skv_cuda_backend *cb = skv_cuda(be);
	if (!bytes)
		return 0;
	if (!skv_cuda_ok(cb, cudaMemcpyAsync(dst, src, bytes, cudaMemcpyHostToDevice, cb->stream), "upload"))
		return cb->capturing ? -EIO : cb->error;
	return 0;
}

static int cuda_download(struct skv_backend *be, void *dst, const void *src, size_t bytes)
{
	struct skv_cuda_backend *cb = skv_cuda(be);
	if (!bytes)
		return 0;
	if (!skv_cuda_ok(cb, cudaMemcpyAsync(dst, src, bytes, cudaMemcpyDeviceToHost, cb->stream), "download"))
		return cb->capturing ? -EIO : cb->error;
	return 0;
}

static int cuda_host_alloc(struct skv_backend *be, size_t bytes, void **ret)
{
	void *p = NULL;
	(void)be;
	if (cudaHostAlloc(&p, bytes ? bytes : 64, cudaHostAllocDefault) != cudaSuccess) {
		(void)cudaGetLastError();
		return -ENOMEM;
	}
	memset(p, 0, bytes);
	*ret = p;
	return 0;
}

static void cuda_host_free(struct skv_backend *be, void *p)
{
	(void)be;
	if (p)
		cudaFreeHost(p);
}

static int cuda_sync(struct skv_backend *be)
{
	struct skv_cuda_backend *cb = skv_cuda(be);
	if (cb->capturing)
		return -EBUSY;
	skv_cuda_ok(cb, cudaStreamSynchronize(cb->stream), "sync");
	return cb->error;
}

static int cuda_prepare(struct skv_backend *be, uint32_t max_context, uint32_t max_rows, uint32_t vocab)
{
	struct skv_cuda_backend *cb = skv_cuda(be);
	(void)max_context;
	(void)max_rows;
	(void)vocab;
	return cb->error;
}

/* ---- graphs ---- */

static int cuda_graph_begin(struct skv_backend *be)
{
	struct skv_cuda_backend *cb = skv_cuda(be);
	if (cb->capturing || cb->profiling)
		return -EBUSY;
	if (cb->error)
		return cb->error;
	if (cb->n_graphs == SKV_CUDA_MAX_GRAPHS)
		return -ENOSPC;
	cudaError_t e = cudaStreamBeginCapture(cb->stream, cudaStreamCaptureModeRelaxed);
	if (e != cudaSuccess) {
		(void)cudaGetLastError();
		return -EIO;
	}
	cb->capturing = true;
	cb->capture_error = 0;
	return 0;
}

static int cuda_graph_end(struct skv_backend *be, uint64_t key)
{
	struct skv_cuda_backend *cb = skv_cuda(be);
	cudaGraph_t g = NULL;
	cudaGraphExec_t x = NULL;

	if (!cb->capturing)
		return -EINVAL;
	cudaError_t e = cudaStreamEndCapture(cb->stream, &g);
	cb->capturing = false;
	int r = cb->capture_error;
	cb->capture_error = 0;
	if (e != cudaSuccess || r < 0 || !g) {
		(void)cudaGetLastError();
		if (g)
			cudaGraphDestroy(g);
		return r < 0 ? r : -EIO;
	}
	e = cudaGraphInstantiate(&x, g, 0);
	cudaGraphDestroy(g);
	if (e != cudaSuccess) {
		(void)cudaGetLastError();
		return -EIO;
	}
	if (cudaGraphUpload(x, cb->stream) != cudaSuccess) {
		(void)cudaGetLastError();
		cudaGraphExecDestroy(x);
		return -EIO;
	}
	cb->graphs[cb->n_graphs].key = key;
	cb->graphs[cb->n_graphs].exec = x;
	cb->n_graphs++;
	return 0;
}

static int cuda_graph_launch(struct skv_backend *be, uint64_t key)
{
	struct skv_cuda_backend *cb = skv_cuda(be);
	if (cb->error)
		return cb->error;
	if (cb->profiling)
		return -ENOENT; /* so the caller runs the ops one by one, each timed */
	for (uint32_t i = 0; i < cb->n_graphs; i++) {
		if (cb->graphs[i].key != key)
			continue;
		if (!skv_cuda_ok(cb, cudaGraphLaunch(cb->graphs[i].exec, cb->stream), "graph launch"))
			return cb->error;
		return 0;
	}
	return -ENOENT;
}

/* ---- per-op timing ---- */

uint32_t skv_cuda_prof_begin(struct skv_cuda_backend *cb)
{
	if (!cb->profiling)
		return UINT32_MAX;
	if (cb->n_prof_calls == SKV_CUDA_PROF_CALLS) {
		cb->prof_dropped++;
		return UINT32_MAX;
	}
	uint32_t t = cb->n_prof_calls++;
	cudaEventRecord(cb->prof_ev[2 * t], cb->stream);
	return t;
}

void skv_cuda_prof_end(struct skv_cuda_backend *cb, uint32_t tok, const char *name, double flops, double bytes)
{
	if (tok == UINT32_MAX)
		return;
	cudaEventRecord(cb->prof_ev[2 * tok + 1], cb->stream);
	uint32_t row = 0;
	while (row < cb->n_prof_rows && strcmp(cb->prof_rows[row].name, name))
		row++;
	if (row == cb->n_prof_rows) {
		if (row == SKV_CUDA_PROF_ROWS)
			row--; /* lumps the rest into the last row rather than dropping it */
		else {
			cb->n_prof_rows++;
			memset(&cb->prof_rows[row], 0, sizeof(cb->prof_rows[row]));
			skv_strscpy(cb->prof_rows[row].name, name, sizeof(cb->prof_rows[row].name));
		}
	}
	cb->prof_calls[tok] = (struct skv_cuda_prof_call){.row = row, .flops = flops, .bytes = bytes};
}

static int cuda_profile_start(struct skv_backend *be)
{
	struct skv_cuda_backend *cb = skv_cuda(be);
	if (cb->capturing)
		return -EBUSY;
	if (!cb->prof_ev) {
		cb->prof_ev = (cudaEvent_t *)calloc(2 * SKV_CUDA_PROF_CALLS, sizeof(cudaEvent_t));
		cb->prof_calls = (struct skv_cuda_prof_call *)calloc(SKV_CUDA_PROF_CALLS, sizeof(*cb->prof_calls));
		if (!cb->prof_ev || !cb->prof_calls)
			return -ENOMEM;
		for (uint32_t i = 0; i < 2 * SKV_CUDA_PROF_CALLS; i++)
			if (!skv_cuda_ok(cb, cudaEventCreate(&cb->prof_ev[i]), "profile: event"))
				return cb->error;
	}
	cb->n_prof_calls = 0;
	cb->n_prof_rows = 0;
	cb->prof_dropped = 0;
	cb->profiling = true;
	return 0;
}

static int cuda_profile_stop(struct skv_backend *be, struct skv_op_stat *ret, uint32_t max, uint32_t *ret_n)
{
	struct skv_cuda_backend *cb = skv_cuda(be);
	if (!cb->profiling)
		return -EINVAL;
	cb->profiling = false;
	if (!skv_cuda_ok(cb, cudaStreamSynchronize(cb->stream), "profile: sync"))
		return cb->error;
	for (uint32_t i = 0; i < cb->n_prof_calls; i++) {
		float ms = 0.0f;
		cudaEventElapsedTime(&ms, cb->prof_ev[2 * i], cb->prof_ev[2 * i + 1]);
		struct skv_op_stat *s = &cb->prof_rows[cb->prof_calls[i].row];
		s->calls++;
		s->ms += ms;
		s->flops += cb->prof_calls[i].flops;
		s->bytes += cb->prof_calls[i].bytes;
	}
	uint32_t n = SKV_MIN(max, cb->n_prof_rows);
	memcpy(ret, cb->prof_rows, n * sizeof(*ret));
	*ret_n = n;
	return 0;
}

/* ---- creation ---- */

static void cuda_destroy(struct skv_backend *be)
{
	struct skv_cuda_backend *cb = skv_cuda(be);
	if (!cb)
		return;
	if (cb->capturing) {
		cudaGraph_t g = NULL;
		cudaStreamEndCapture(cb->stream, &g);
		if (g)
			cudaGraphDestroy(g);
	}
	if (cb->stream)
		cudaStreamSynchronize(cb->stream);
	for (uint32_t i = 0; i < cb->n_graphs; i++)
		cudaGraphExecDestroy(cb->graphs[i].exec);
	if (cb->prof_ev) {
		for (uint32_t i = 0; i < 2 * SKV_CUDA_PROF_CALLS; i++)
			if (cb->prof_ev[i])
				cudaEventDestroy(cb->prof_ev[i]);
		free(cb->prof_ev);
	}
	free(cb->prof_calls);
	skv_cuda_gemm_done(cb);
	if (cb->attn_part)
		cudaFree(cb->attn_part);
	if (cb->workspace)
		cudaFree(cb->workspace);
	if (cb->lt)
		cublasLtDestroy(cb->lt);
	if (cb->stream)
		cudaStreamDestroy(cb->stream);
	free(cb);
}

static const struct skv_ops skv_cuda_ops = {
	.name = "cuda",
	.act_dtype = SKV_DTYPE_BF16,
	.w_dtype = SKV_DTYPE_BF16,
	.kv_dtype = SKV_DTYPE_BF16,
	.destroy = cuda_destroy,
	.alloc = cuda_alloc,
	.free = cuda_free,
	.upload = cuda_upload,
	.download = cuda_download,
	.host_alloc = cuda_host_alloc,
	.host_free = cuda_host_free,
	.sync = cuda_sync,
	.prepare = cuda_prepare,
	.embed = skv_cuda_embed,
	.rmsnorm = skv_cuda_rmsnorm,
	.gemm = skv_cuda_gemm,
	.rope = skv_cuda_rope,
	.rope_store_kv = skv_cuda_rope_store_kv,
	.attention = skv_cuda_attention,
	.silu_mul = skv_cuda_silu_mul,
	.gather_rows = skv_cuda_gather_rows,
	.sample = skv_cuda_sample,
	.prepare_attention = skv_cuda_attention_prepare,
	.graph_begin = cuda_graph_begin,
	.graph_end = cuda_graph_end,
	.graph_launch = cuda_graph_launch,
	.profile_start = cuda_profile_start,
	.profile_stop = cuda_profile_stop,
};

extern "C" bool skv_backend_cuda_available(void)
{
	int n = 0;
	if (cudaGetDeviceCount(&n) != cudaSuccess) {
		(void)cudaGetLastError();
		return false;
	}
	return n > 0;
}

extern "C" int skv_backend_cuda_new(int device, struct skv_backend **ret, struct skv_err *err)
{
	struct skv_cuda_backend *cb;
	int n = 0, major = 0;
	cudaError_t e;

	if ((e = cudaGetDeviceCount(&n)) != cudaSuccess || n == 0) {
		(void)cudaGetLastError();
		return skv_err_set(err, -ENODEV, "cuda: no usable GPU (%s)",
				   e != cudaSuccess ? cudaGetErrorString(e) : "none found");
	}
	if (device < 0 || device >= n)
		return skv_err_set(err, -ENODEV, "cuda: device %d does not exist (%d found)", device, n);
	if ((e = cudaSetDevice(device)) != cudaSuccess)
		return skv_err_set(err, -ENODEV, "cuda: cannot use device %d: %s", device, cudaGetErrorString(e));
	cudaDeviceGetAttribute(&major, cudaDevAttrComputeCapabilityMajor, device);
	if (major < 9)
		return skv_err_set(err, -ENODEV, "cuda: device %d has compute capability %d.x; this build targets sm_90a",
				   device, major);
	cb = (struct skv_cuda_backend *)calloc(1, sizeof(*cb));
	if (!cb)
		return skv_err_set(err, -ENOMEM, "cuda: out of memory");
	cb->base.ops = &skv_cuda_ops;
	cb->device = device;
	cudaDeviceGetAttribute(&cb->sm_count, cudaDevAttrMultiProcessorCount, device);
	if ((e = cudaStreamCreateWithFlags(&cb->stream, cudaStreamNonBlocking)) != cudaSuccess) {
		cuda_destroy(&cb->base);
		return skv_err_set(err, -EIO, "cuda: cannot create a stream: %s", cudaGetErrorString(e));
	}
	if (cublasLtCreate(&cb->lt) != CUBLAS_STATUS_SUCCESS) {
		cb->lt = NULL;
		cuda_destroy(&cb->base);
		return skv_err_set(err, -EIO, "cuda: cannot create a cuBLASLt handle");
	}
	if ((e = cudaMalloc(&cb->workspace, SKV_CUDA_WORKSPACE_BYTES)) != cudaSuccess) {
		cb->workspace = NULL;
		cuda_destroy(&cb->base);
		return skv_err_set(err, -ENOMEM, "cuda: cannot allocate the GEMM workspace: %s", cudaGetErrorString(e));
	}
	if (skv_cuda_gemm_init(cb) < 0) {
		cuda_destroy(&cb->base);
		return skv_err_set(err, -ENOMEM, "cuda: out of memory");
	}
	if (skv_cuda_attention_init(cb) < 0) {
		cuda_destroy(&cb->base);
		return skv_err_set(err, -EIO, "cuda: cannot configure the kernels (see the log)");
	}
	*ret = &cb->base;
	return 0;
}
