/* metrics.c: Prometheus exposition for `skvctl metrics`, under the names people already graph
 * for vLLM (vllm:time_to_first_token_seconds, vllm:num_requests_running, ...) with an skv:
 * prefix. Counters and histograms are kept as requests finish; gauges are read at export. */
#include <stdio.h>
#include <string.h>

#include "skvd-req.h"

static const double ttft_b[] = {0.001, 0.005, 0.01, 0.02, 0.04, 0.06, 0.08, 0.1, 0.25, 0.5, 0.75, 1.0, 2.5, 5.0, 7.5, 10.0};
static const double e2e_b[] = {0.05, 0.1, 0.3, 0.5, 0.8, 1.0, 1.5, 2.0, 2.5, 5.0, 10.0, 15.0, 20.0, 30.0, 60.0};

struct hist {
	uint64_t counts[20]; /* per bucket (not cumulative) plus +Inf */
	uint64_t n;
	double sum;
};

struct skvd_metrics {
	struct hist ttft, e2e;
	uint64_t finished[5]; /* by enum skv_wire_finish */
};

static void hist_add(struct hist *h, const double *b, size_t nb, double v)
{
	size_t i = 0;
	while (i < nb && v > b[i])
		i++;
	h->counts[i]++;
	h->n++;
	h->sum += v;
}

void skvd_metrics_observe(struct skvd *d, const struct skvd_req *q)
{
	if (!d->metrics && !(d->metrics = calloc(1, sizeof(*d->metrics))))
		return;
	uint64_t now = skv_now_ns();
	if (q->t_first_token_ns)
		hist_add(&d->metrics->ttft, ttft_b, SKV_ARRAY_SIZE(ttft_b), (double)(q->t_first_token_ns - q->t_submit_ns) / 1e9);
	hist_add(&d->metrics->e2e, e2e_b, SKV_ARRAY_SIZE(e2e_b), (double)(now - q->t_submit_ns) / 1e9);
	if (q->finish < 5)
		d->metrics->finished[q->finish]++;
}

static void put_hist(FILE *f, const char *name, const char *help, const struct hist *h, const double *b, size_t nb)
{
	uint64_t cum = 0;
	fprintf(f, "# HELP %s %s\n# TYPE %s histogram\n", name, help, name);
	for (size_t i = 0; i < nb; i++) {
		cum += h->counts[i];
		fprintf(f, "%s_bucket{le=\"%g\"} %llu\n", name, b[i], (unsigned long long)cum);
	}
	fprintf(f, "%s_bucket{le=\"+Inf\"} %llu\n%s_sum %.6f\n%s_count %llu\n", name, (unsigned long long)h->n, name,
		h->sum, name, (unsigned long long)h->n);
}

char *skvd_metrics_text(struct skvd *d)
{
	static const struct hist empty;
	char *buf = NULL;
	size_t len = 0;
	FILE *f = open_memstream(&buf, &len);
	uint32_t running = 0, waiting = 0;
	uint64_t preempt = 0;

	if (!f)
		return NULL;
	for (uint32_t i = 0; i < d->n_replicas; i++)
		for (struct skvd_req *q = d->replicas[i].reqs_head; q; q = q->next_in_replica) {
			if (q->state == SKVD_REQ_SENT)
				running++;
			else
				waiting++;
		}
	fprintf(f, "# HELP skv:num_requests_running Requests handed to a worker.\n# TYPE skv:num_requests_running gauge\n"
		   "skv:num_requests_running %u\n", running);
	fprintf(f, "# HELP skv:num_requests_waiting Requests waiting for a worker.\n# TYPE skv:num_requests_waiting gauge\n"
		   "skv:num_requests_waiting %u\n", waiting);
	fprintf(f, "# HELP skv:gpu_cache_usage_perc KV cache usage, 1 = full.\n# TYPE skv:gpu_cache_usage_perc gauge\n");
	for (uint32_t i = 0; i < d->n_replicas; i++) {
		struct skvd_replica *rp = &d->replicas[i];
		bool live = rp->state == SKVD_WORKER_READY;
		uint32_t free_blocks = live ? atomic_load(&rp->st->kv_free_blocks) : d->num_blocks;
		fprintf(f, "skv:gpu_cache_usage_perc{replica=\"%u\"} %.6f\n", i,
			d->num_blocks ? 1.0 - (double)SKV_MIN(free_blocks, d->num_blocks) / d->num_blocks : 0.0);
		if (live)
			preempt += atomic_load(&rp->st->preemptions);
	}
	fprintf(f, "# HELP skv:worker_up Whether the replica's worker serves.\n# TYPE skv:worker_up gauge\n");
	for (uint32_t i = 0; i < d->n_replicas; i++)
		fprintf(f, "skv:worker_up{replica=\"%u\"} %d\n", i, d->replicas[i].state == SKVD_WORKER_READY);
	fprintf(f, "# HELP skv:num_preemptions_total Sequences preempted by the current workers.\n"
		   "# TYPE skv:num_preemptions_total counter\nskv:num_preemptions_total %llu\n", (unsigned long long)preempt);
	fprintf(f, "# HELP skv:prompt_tokens_total Prompt tokens accepted.\n# TYPE skv:prompt_tokens_total counter\n"
		   "skv:prompt_tokens_total %llu\n", (unsigned long long)d->n_prompt_tokens_total);
	fprintf(f, "# HELP skv:generation_tokens_total Tokens generated.\n# TYPE skv:generation_tokens_total counter\n"
		   "skv:generation_tokens_total %llu\n", (unsigned long long)d->n_gen_tokens_total);
	fprintf(f, "# HELP skv:request_success_total Finished requests by reason.\n# TYPE skv:request_success_total counter\n");
	for (uint32_t r = 1; r < 5; r++)
		fprintf(f, "skv:request_success_total{finished_reason=\"%s\"} %llu\n", skv_wire_finish_name(r),
			(unsigned long long)(d->metrics ? d->metrics->finished[r] : 0));
	fprintf(f, "# HELP skv:worker_restarts_total Worker processes replaced.\n# TYPE skv:worker_restarts_total counter\n"
		   "skv:worker_restarts_total %llu\n", (unsigned long long)d->n_worker_restarts);
	fprintf(f, "# HELP skv:num_clients Connected client sessions.\n# TYPE skv:num_clients gauge\nskv:num_clients %u\n",
		d->n_sessions);
	put_hist(f, "skv:time_to_first_token_seconds", "Time to the first token.", d->metrics ? &d->metrics->ttft : &empty,
		 ttft_b, SKV_ARRAY_SIZE(ttft_b));
	put_hist(f, "skv:e2e_request_latency_seconds", "Request latency, submit to final record.",
		 d->metrics ? &d->metrics->e2e : &empty, e2e_b, SKV_ARRAY_SIZE(e2e_b));
	if (fclose(f) != 0) {
		free(buf);
		return NULL;
	}
	return buf;
}
