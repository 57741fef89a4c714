/* sample.h: the sampling parameters of one row, and the random draw every backend shares.
 *
 * Greedy (temperature 0, or top_k 1), or temperature, then top-k, then top-p (the order of
 * transformers' logits warpers), then one draw. The draw for generated token number `step` of a
 * request is a pure function of (seed, step): a seeded request gives the same tokens whenever its
 * logits are the same, whatever else shares its batches, after a preemption too, and on either
 * backend. Header-only and plain C so CUDA code includes it as is.
 */
#pragma once

#include <stdint.h>

struct skv_sample_params {
	float temperature; /* 0: greedy */
	float top_p;	   /* (0, 1]; 1: off */
	uint32_t top_k;	   /* 0: off */
	uint32_t pad0;
	uint64_t seed;
	uint64_t step; /* which generated token of its request this is */
};

/* Limits a request's parameters are checked against. */
#define SKV_MAX_TEMPERATURE 100.0f
#define SKV_MAX_TOP_K 1000000u

#ifdef __CUDACC__
#define SKV_HD __host__ __device__
#else
#define SKV_HD
#endif

static inline SKV_HD uint64_t skv_splitmix64(uint64_t x)
{
	x += 0x9e3779b97f4a7c15ull;
	x = (x ^ (x >> 30)) * 0xbf58476d1ce4e5b9ull;
	x = (x ^ (x >> 27)) * 0x94d049bb133111ebull;
	return x ^ (x >> 31);
}

/* The uniform draw in [0, 1) for (seed, step). */
static inline SKV_HD double skv_sample_uniform(uint64_t seed, uint64_t step)
{
	uint64_t x = skv_splitmix64(skv_splitmix64(seed) ^ (step * 0xd1342543de82ef95ull + 1));
	return (double)(x >> 11) * 0x1.0p-53;
}
