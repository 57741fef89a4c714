/* cpu-backend.c: creation, memory and threads of the CPU backend. */
#include "cpu-internal.h"

#include <cblas.h>
#include <omp.h>
#include <stdio.h>
#include <string.h>

int skv_cpu_alloc(struct skv_backend *be, size_t bytes, void **ret)
{
	void *p;
	(void)be;
	if (posix_memalign(&p, 64, bytes ? bytes : 64) != 0)
		return -ENOMEM;
	memset(p, 0, bytes);
	*ret = p;
	return 0;
}

void skv_cpu_free(struct skv_backend *be, void *p)
{
	(void)be;
	free(p);
}

int skv_cpu_copy(struct skv_backend *be, void *dst, const void *src, size_t bytes)
{
	(void)be;
	if (bytes)
		memmove(dst, src, bytes);
	return 0;
}

int skv_cpu_sync(struct skv_backend *be)
{
	(void)be;
	return 0;
}

int skv_cpu_scratch_reserve(struct skv_cpu_backend *cb, size_t ctx)
{
	size_t per = SKV_ALIGN_UP(ctx + 1, 16);
	if (per <= cb->scratch_per_thread)
		return 0;
	float *p = realloc(cb->scratch, per * cb->threads * sizeof(float));
	if (!p)
		return -ENOMEM;
	cb->scratch = p;
	cb->scratch_per_thread = per;
	return 0;
}

int skv_cpu_sample_reserve(struct skv_cpu_backend *cb, uint32_t vocab)
{
	if (vocab <= cb->sample_cap)
		return 0;
	int32_t *i = realloc(cb->sample_idx, vocab * sizeof(*i));
	if (!i)
		return -ENOMEM;
	cb->sample_idx = i;
	double *p = realloc(cb->sample_p, vocab * sizeof(*p));
	if (!p)
		return -ENOMEM;
	cb->sample_p = p;
	cb->sample_cap = vocab;
	return 0;
}

int skv_cpu_prepare(struct skv_backend *be, uint32_t max_context, uint32_t max_rows, uint32_t vocab)
{
	struct skv_cpu_backend *cb = (struct skv_cpu_backend *)be;
	(void)max_rows;
	if (skv_cpu_scratch_reserve(cb, max_context) < 0 || skv_cpu_sample_reserve(cb, vocab) < 0)
		return -ENOMEM;
	return 0;
}

void skv_cpu_destroy(struct skv_backend *be)
{
	struct skv_cpu_backend *cb = (struct skv_cpu_backend *)be;
	if (!cb)
		return;
	free(cb->scratch);
	free(cb->sample_idx);
	free(cb->sample_p);
	free(cb);
}

int skv_backend_cpu_new(unsigned threads, struct skv_backend **ret, struct skv_err *err)
{
	struct skv_cpu_backend *cb = calloc(1, sizeof(*cb));
	long ncpu = sysconf(_SC_NPROCESSORS_ONLN);

	if (!cb)
		return skv_err_set(err, -ENOMEM, "cpu backend: out of memory");
	if (threads == 0)
		threads = ncpu > 0 ? (unsigned)ncpu : 1;
	cb->threads = threads;
	cb->base.ops = &skv_cpu_ops;
	omp_set_num_threads((int)threads);
	openblas_set_num_threads((int)threads);
	/* omp_get_thread_num() indexes the scratch: make sure no team is larger than threads. */
	omp_set_dynamic(0);
	*ret = &cb->base;
	return 0;
}
