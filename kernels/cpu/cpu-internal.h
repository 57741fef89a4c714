/* cpu-internal.h: the CPU backend's private state, shared by its files. */
#pragma once

#include "ops.h"
#include "sample.h"

struct skv_cpu_backend {
	struct skv_backend base;
	unsigned threads;
	float *scratch;		   /* attention scores: [threads, scratch_per_thread] */
	size_t scratch_per_thread; /* floats */
	int32_t *sample_idx;	   /* [sample_cap] sampling candidates */
	double *sample_p;	   /* [sample_cap] their probabilities */
	uint32_t sample_cap;
};

extern const struct skv_ops skv_cpu_ops;

void skv_cpu_destroy(struct skv_backend *be);
int skv_cpu_alloc(struct skv_backend *be, size_t bytes, void **ret);
void skv_cpu_free(struct skv_backend *be, void *p);
int skv_cpu_copy(struct skv_backend *be, void *dst, const void *src, size_t bytes);
int skv_cpu_sync(struct skv_backend *be);
int skv_cpu_prepare(struct skv_backend *be, uint32_t max_context, uint32_t max_rows, uint32_t vocab);
/* Makes room for attention over contexts of up to ctx positions. */
int skv_cpu_scratch_reserve(struct skv_cpu_backend *cb, size_t ctx);
int skv_cpu_sample_reserve(struct skv_cpu_backend *cb, uint32_t vocab);
void skv_cpu_sample(struct skv_backend *be, int32_t *out, const float *logits, const struct skv_sample_params *sp,
		    uint32_t n, uint32_t V);
