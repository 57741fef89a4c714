/* cpu-sample.c: greedy, temperature, top-k and top-p sampling of logit rows (see sample.h).
 * Candidates are ordered by logit with ties to the lower id, a total order, so the result does
 * not depend on the sort; probabilities are computed in double. */
#include "cpu-internal.h"

#include <math.h>
#include <stdlib.h>

static int32_t argmax(const float *l, uint32_t n)
{
	int32_t best = 0;
	for (uint32_t i = 1; i < n; i++)
		if (l[i] > l[best] || (isnan(l[best]) && !isnan(l[i])))
			best = (int32_t)i;
	return best;
}

/* qsort has no context argument, hence the thread-local. */
static _Thread_local const float *sort_logits;
static int cmp_desc(const void *a, const void *b)
{
	int32_t x = *(const int32_t *)a, y = *(const int32_t *)b;
	float lx = sort_logits[x], ly = sort_logits[y];
	if (lx != ly)
		return lx > ly ? -1 : 1;
	return x < y ? -1 : x > y;
}

static int32_t sample_row(int32_t *idx, double *p, const float *logits, uint32_t V, const struct skv_sample_params *sp)
{
	uint32_t n = V;

	if (sp->temperature <= 0.0f || sp->top_k == 1)
		return argmax(logits, V);

	for (uint32_t i = 0; i < V; i++)
		idx[i] = (int32_t)i;
	sort_logits = logits;
	qsort(idx, V, sizeof(*idx), cmp_desc);
	if (sp->top_k > 0 && sp->top_k < n)
		n = sp->top_k;

	/* softmax of logits / temperature over the candidates */
	const double inv_t = 1.0 / (double)sp->temperature;
	const double mx = (double)logits[idx[0]] * inv_t;
	double sum = 0.0;
	for (uint32_t i = 0; i < n; i++) {
		p[i] = exp((double)logits[idx[i]] * inv_t - mx);
		sum += p[i];
	}
	/* top-p: the smallest prefix whose probability reaches top_p (at least one token) */
	if (sp->top_p < 1.0f) {
		double cum = 0.0, target = (double)sp->top_p * sum;
		uint32_t keep = 0;
		while (keep < n) {
			cum += p[keep++];
			if (cum >= target)
				break;
		}
		n = keep;
		sum = cum;
	}
	double u = skv_sample_uniform(sp->seed, sp->step) * sum, acc = 0.0;
	for (uint32_t i = 0; i < n; i++) {
		acc += p[i];
		if (u < acc)
			return idx[i];
	}
	return idx[n - 1];
}

void skv_cpu_sample(struct skv_backend *be, int32_t *out, const float *logits, const struct skv_sample_params *sp,
		    uint32_t n, uint32_t V)
{
	struct skv_cpu_backend *cb = (struct skv_cpu_backend *)be;
	if (skv_cpu_sample_reserve(cb, V) < 0) {
		for (uint32_t r = 0; r < n; r++) /* cannot happen after the engine reserved at start-up */
			out[r] = argmax(logits + (size_t)r * V, V);
		return;
	}
	for (uint32_t r = 0; r < n; r++)
		out[r] = sample_row(cb->sample_idx, cb->sample_p, logits + (size_t)r * V, V, &sp[r]);
}
