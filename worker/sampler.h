/* sampler.h: choosing the next token from a row of logits.
 *
 * Greedy (temperature 0, or top_k 1), or temperature, then top-k, then top-p (the order of
 * transformers' logits warpers), then one draw. The draw for generated token number `step` of a
 * request is a pure function of (seed, step): a seeded request gives the same tokens whenever its
 * logits are the same, whatever else shares its batches, and after a preemption too.
 */
#pragma once

#include "skv-base.h"

struct skv_sampling {
	float temperature; /* 0: greedy */
	float top_p;	   /* (0, 1]; 1: off */
	uint32_t top_k;	   /* 0: off */
	uint64_t seed;
};

/* Limits a request's parameters are checked against (errors name the field and the range). */
#define SKV_MAX_TEMPERATURE 100.0f
#define SKV_MAX_TOP_K 1000000u

/* Checks ranges; -EINVAL with err naming the field. */
int skv_sampling_check(const struct skv_sampling *sp, struct skv_err *err);

struct skv_sampler; /* scratch for one vocabulary size (reused across calls, not thread-safe) */

int skv_sampler_new(uint32_t vocab, struct skv_sampler **ret);
void skv_sampler_free(struct skv_sampler *s);

/* The token for generated position `step` from logits[vocab]. */
int32_t skv_sample(struct skv_sampler *s, const float *logits, const struct skv_sampling *sp, uint64_t step);

/* The uniform draw in [0, 1) for (seed, step): splitmix64 of a mix of both. */
double skv_sample_uniform(uint64_t seed, uint64_t step);
