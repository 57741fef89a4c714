/* sampler.c: greedy, temperature, top-k and top-p sampling on the host (see sampler.h). */
#include "sampler.h"

#include <math.h>
#include <stdio.h>
#include <string.h>

struct skv_sampler {
	uint32_t vocab;
	int32_t *idx; /* [vocab] candidate ids */
	double *p;    /* [vocab] their probabilities */
};

int skv_sampling_check(const struct skv_sampling *sp, struct skv_err *err)
{
	if (!(sp->temperature >= 0.0f && sp->temperature <= SKV_MAX_TEMPERATURE))
		return skv_err_set(err, -EINVAL, "temperature %g is outside [0, %g]", sp->temperature,
				   SKV_MAX_TEMPERATURE);
	if (!(sp->top_p > 0.0f && sp->top_p <= 1.0f))
		return skv_err_set(err, -EINVAL, "top_p %g is outside (0, 1]", sp->top_p);
	if (sp->top_k > SKV_MAX_TOP_K)
		return skv_err_set(err, -EINVAL, "top_k %u is over the limit of %u", sp->top_k, SKV_MAX_TOP_K);
	return 0;
}

int skv_sampler_new(uint32_t vocab, struct skv_sampler **ret)
{
	struct skv_sampler *s = calloc(1, sizeof(*s));
	if (!s)
		return -ENOMEM;
	s->vocab = vocab;
	s->idx = calloc(vocab, sizeof(*s->idx));
	s->p = calloc(vocab, sizeof(*s->p));
	if (!s->idx || !s->p) {
		skv_sampler_free(s);
		return -ENOMEM;
	}
	*ret = s;
	return 0;
}

void skv_sampler_free(struct skv_sampler *s)
{
	if (!s)
		return;
	free(s->idx);
	free(s->p);
	free(s);
}

static uint64_t splitmix64(uint64_t x)
{
	x += 0x9e3779b97f4a7c15ull;
	x = (x ^ (x >> 30)) * 0xbf58476d1ce4e5b9ull;
	x = (x ^ (x >> 27)) * 0x94d049bb133111ebull;
	return x ^ (x >> 31);
}

double skv_sample_uniform(uint64_t seed, uint64_t step)
{
	uint64_t x = splitmix64(splitmix64(seed) ^ (step * 0xd1342543de82ef95ull + 1));
	return (double)(x >> 11) * 0x1.0p-53;
}

static int32_t argmax(const float *l, uint32_t n)
{
	int32_t best = 0;
	for (uint32_t i = 1; i < n; i++)
		if (l[i] > l[best] || (isnan(l[best]) && !isnan(l[i])))
			best = (int32_t)i;
	return best;
}

/* Descending by logit, ties to the lower id: a total order, so results do not depend on qsort.
 * qsort has no context argument, hence the thread-local. */
static _Thread_local const float *sort_logits;
static int cmp_desc(const void *a, const void *b)
{
	int32_t x = *(const int32_t *)a, y = *(const int32_t *)b;
	float lx = sort_logits[x], ly = sort_logits[y];
	if (lx != ly)
		return lx > ly ? -1 : 1;
	return x < y ? -1 : x > y;
}

int32_t skv_sample(struct skv_sampler *s, const float *logits, const struct skv_sampling *sp, uint64_t step)
{
	const uint32_t V = s->vocab;
	uint32_t n = V;

	if (sp->temperature <= 0.0f || sp->top_k == 1)
		return argmax(logits, V);

	/* candidates sorted by logit (top-k keeps a prefix, top-p another) */
	for (uint32_t i = 0; i < V; i++)
		s->idx[i] = (int32_t)i;
	sort_logits = logits;
	qsort(s->idx, V, sizeof(*s->idx), cmp_desc);
	if (sp->top_k > 0 && sp->top_k < n)
		n = sp->top_k;

	/* softmax of logits / temperature over the candidates, in double */
	const double inv_t = 1.0 / (double)sp->temperature;
	const double mx = (double)logits[s->idx[0]] * inv_t;
	double sum = 0.0;
	for (uint32_t i = 0; i < n; i++) {
		s->p[i] = exp((double)logits[s->idx[i]] * inv_t - mx);
		sum += s->p[i];
	}
	/* top-p: the smallest prefix whose probability reaches top_p (at least one token) */
	if (sp->top_p < 1.0f) {
		double cum = 0.0, target = (double)sp->top_p * sum;
		uint32_t keep = 0;
		while (keep < n) {
			cum += s->p[keep++];
			if (cum >= target)
				break;
		}
		n = keep;
		sum = cum;
	}
	double u = skv_sample_uniform(sp->seed, step) * sum, acc = 0.0;
	for (uint32_t i = 0; i < n; i++) {
		acc += s->p[i];
		if (u < acc)
			return s->idx[i];
	}
	return s->idx[n - 1];
}
