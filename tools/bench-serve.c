/* bench-serve.c: skv-bench serve, a load generator against a running skvd, like vLLM's
 * benchmark_serving: a fixed number of prompts of exact input length, each asking for exactly
 * --output-len tokens (ignore-eos), arriving all at once, as a Poisson process or in a closed
 * loop; request throughput, token throughput, TTFT, TPOT, inter-token latency, end-to-end
 * latency and queue time (mean, p50, p90, p99), a printed table and JSON.
 *
 *   skv-bench serve --socket PATH --input-len N --output-len N --num-prompts N
 *                   [--request-rate R | --concurrency C] [--json FILE] [--csv FILE]
 *                   [--model DIR] [--text [--text-file F]] [--temperature T] [--seed S]
 *                   [--warmup N] [--clients N] [--per-client N] [--request-timeout-ms MS]
 *   skv-bench serve --compare --socket-on A --socket-off B ...   the same load against two skvd
 *                   (swiftkv on and off, same checkpoint), one after the other, and the ratios
 *   skv-bench serve --sweep R1,R2,... ...                        one load per request rate
 *
 * The generator is one thread: several libskv sessions (each up to --per-client requests in
 * flight, at most skvd's max_in_flight) multiplexed with ppoll() over skv_client_fd(), so that it
 * is not what limits the load; waits end to the nanosecond, so Poisson arrivals leave on time
 * (submit_lag_ms in the JSON says how late they were). Every time is taken on CLOCK_MONOTONIC
 * (skv_now_ns), the clock of libskv's event timestamps. A request's times start at its first
 * submission: TTFT ends at the first delta with text or ids (SKV_REQUEST_STREAM_IDS, so every
 * token is seen), e2e at its FINAL event, TPOT = (e2e - TTFT) / (output tokens - 1), queue at
 * the engine first scheduling it (the FINAL's t_seen_ns + queue_us). A BUSY answer is retried after its
 * retry_after_ms (counted, and inside the request's times); any other error fails the request
 * (counted by code).
 *
 * It measures; it asserts nothing about speed. It is not a correctness check of the text.
 */
#include <errno.h>
#include <getopt.h>
#include <math.h>
#include <poll.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include <json-c/json.h>

#include "bench.h"
#include "model-config.h"
#include "sample.h"
#include "skv-base.h"
#include "skv.h"
#include "tokenizer.h"

/* data/sample-report.txt, compiled in (tools/meson.build) */
extern const char skv_bench_sample_report[];
extern const size_t skv_bench_sample_report_len;

#define MAX_CLIENTS_DEFAULT 64u
#define N_ERR (SKV_ERROR_CODE_INTERNAL + 2) /* every code, and one for "connection lost" */
#define ERR_CONNECTION (N_ERR - 1)
#define MAX_SWEEP 64

struct opts {
	const char *socket, *socket_on, *socket_off;
	const char *json, *csv, *model, *text_file, *label;
	int64_t input_len, output_len, num_prompts;
	double rate; /* requests/s; INFINITY: all at once */
	int64_t concurrency; /* 0: open loop (rate) */
	bool compare, text, have_temperature;
	double temperature;
	int64_t seed, warmup, clients, per_client, timeout_ms;
	double sweep[MAX_SWEEP];
	uint32_t n_sweep;
};

/* The prompts, made once so that every run of a comparison or sweep sends the same. */
struct prompts {
	uint32_t n, len;
	int32_t *ids;	/* [n * len] token ids, SKV_PROMPT_IDS */
	char **texts;	/* [n] NUL-terminated, SKV_PROMPT_TEXT (--text) */
	uint32_t vocab; /* ids are below this */
};

struct stats {
	double mean, p50, p90, p99, min, max;
	uint32_t n;
};

/* One run's outcome. Times in ms, throughputs per second. */
struct result {
	const char *label; /* "", "on", "off" */
	char model[64];
	double rate;
	uint32_t concurrency, clients, per_client;
	uint32_t completed, failed, retries, prompt_mismatch, short_outputs;
	uint32_t errors[N_ERR];
	uint64_t in_tokens, out_tokens;
	double duration_s, request_throughput, output_throughput, total_token_throughput;
	struct stats ttft, tpot, itl, e2e, queue;
	double lag_mean_ms, lag_max_ms; /* first submission behind its scheduled arrival */
};

enum req_state {
	REQ_WAITING = 0, /* not yet arrived */
	REQ_READY,	 /* due: waits for a session with room */
	REQ_IN_FLIGHT,
	REQ_RETRY, /* answered busy: resubmitted at retry_at */
	REQ_DONE,
	REQ_FAILED,
};

struct req {
	uint32_t idx; /* prompt index */
	enum req_state state;
	int client;
	uint64_t id;
	uint64_t t_arrival, t_start, t_first, t_last, t_end, t_taken, retry_at; /* ns */
	uint32_t retries, n_ids, prompt_tokens, completion_tokens;
	uint32_t n_gaps; /* inter-token gaps recorded in run.itl */
};

struct client {
	struct skv_client *c;
	unsigned in_flight;
	bool dead;
};

/* ---- small helpers ---- */

/* The next number of the splitmix64 stream whose state is *s (the sampler's mixer). */
static uint64_t splitmix64(uint64_t *s)
{
	const uint64_t z = skv_splitmix64(*s);
	*s += 0x9e3779b97f4a7c15ull;
	return z;
}

static double rng_uniform(uint64_t *s) { return (double)(splitmix64(s) >> 11) * 0x1.0p-53; } /* [0, 1) */

static int cmp_double(const void *a, const void *b)
{
	double x = *(const double *)a, y = *(const double *)b;
	return x < y ? -1 : x > y;
}

/* numpy's default (linear) percentile of sorted v[n] */
static double percentile(const double *v, uint32_t n, double p)
{
	if (!n)
		return 0;
	double pos = p / 100.0 * (double)(n - 1);
	uint32_t lo = (uint32_t)pos;
	if (lo + 1 >= n)
		return v[n - 1];
	return v[lo] + (pos - (double)lo) * (v[lo + 1] - v[lo]);
}

static struct stats stats_of(double *v, uint32_t n)
{
	struct stats s = {.n = n};
	if (!n)
		return s;
	qsort(v, n, sizeof(*v), cmp_double);
	double sum = 0;
	for (uint32_t i = 0; i < n; i++)
		sum += v[i];
	s.mean = sum / n;
	s.p50 = percentile(v, n, 50);
	s.p90 = percentile(v, n, 90);
	s.p99 = percentile(v, n, 99);
	s.min = v[0];
	s.max = v[n - 1];
	return s;
}

static const char *err_key(uint32_t code)
{
	return code == ERR_CONNECTION ? "connection" : skv_error_name((enum skv_error_code)code);
}

static void rate_str(double rate, char *buf, size_t len)
{
	if (isinf(rate))
		snprintf(buf, len, "inf");
	else
		snprintf(buf, len, "%g", rate);
}

/* ---- prompts ---- */

static void prompts_done(struct prompts *p)
{
	free(p->ids);
	if (p->texts)
		for (uint32_t i = 0; i < p->n; i++)
			free(p->texts[i]);
	free(p->texts);
}

/* Random ids below the vocabulary (below 256 without --model), never a special token when the
 * model's tokenizer says which those are. */
static int prompts_make_ids(const struct opts *o, const struct skv_tokenizer *tok, struct prompts *p)
{
	uint64_t s = (uint64_t)o->seed * 0x2545f4914f6cdd1dull + 1;
	p->ids = malloc((size_t)p->n * p->len * sizeof(int32_t));
	if (!p->ids)
		return -ENOMEM;
	for (size_t i = 0; i < (size_t)p->n * p->len; i++) {
		int32_t id = 0;
		for (int tries = 0; tries < 64; tries++) {
			id = (int32_t)(splitmix64(&s) % p->vocab);
			if (!tok || !skv_tokenizer_is_special(tok, id))
				break;
		}
		p->ids[i] = id;
	}
	return 0;
}

/* Text prompts of exactly len tokens as skvd counts them (with BOS, specials as text): windows
 * of the repeated sample text, starting at a random token, decoded and re-encoded until the
 * count is exact (a cut can merge or split tokens at the edges). */
static int prompts_make_text(const struct opts *o, const struct skv_tokenizer *tok, struct prompts *p)
{
	struct skv_err err = {0};
	_cleanup_free_ char *file = NULL;
	const char *src = skv_bench_sample_report;
	size_t src_len = skv_bench_sample_report_len;
	_cleanup_tokenizer_ws_ struct skv_tokenizer_ws *ws = NULL;
	_cleanup_free_ int32_t *one = NULL, *all = NULL;
	_cleanup_free_ char *rep = NULL;
	const unsigned enc = SKV_TOKENIZER_ADD_SPECIAL | SKV_TOKENIZER_SPECIAL_AS_TEXT;

	if (o->text_file) {
		if (skv_read_file(o->text_file, 64u << 20, &file, &src_len, &err) < 0) {
			fprintf(stderr, "skv-bench serve: %s\n", err.msg);
			return -EINVAL;
		}
		src = file;
	}
	if (skv_tokenizer_ws_new(tok, &ws) < 0)
		return -ENOMEM;
	/* tokens of one copy: how far a window may start */
	ssize_t n_one = skv_tokenizer_encode_alloc(tok, src, src_len, 0, &one, &err);
	if (n_one < 8) {
		fprintf(stderr, "skv-bench serve: the prompt text is too short to cut prompts from (%s)\n",
			n_one < 0 ? err.msg : "under 8 tokens");
		return -EINVAL;
	}
	/* enough copies for a window of len + slack tokens from any start in the first copy */
	size_t copies = ((size_t)p->len + 64) / (size_t)n_one + 2;
	rep = malloc(copies * (src_len + 1) + 1);
	if (!rep)
		return -ENOMEM;
	size_t rep_len = 0;
	for (size_t i = 0; i < copies; i++) {
		memcpy(rep + rep_len, src, src_len);
		rep_len += src_len;
		if (src_len && src[src_len - 1] != '\n')
			rep[rep_len++] = '\n';
	}
	ssize_t n_all = skv_tokenizer_encode_alloc(tok, rep, rep_len, 0, &all, &err);
	if (n_all < 0) {
		fprintf(stderr, "skv-bench serve: %s\n", err.msg);
		return (int)n_all;
	}
	p->texts = calloc(p->n, sizeof(char *));
	if (!p->texts)
		return -ENOMEM;
	uint64_t s = (uint64_t)o->seed * 0x2545f4914f6cdd1dull + 7;
	for (uint32_t i = 0; i < p->n; i++) {
		size_t start = (size_t)(splitmix64(&s) % (uint64_t)n_one);
		int64_t k = (int64_t)p->len - 1; /* tokens of the window; BOS makes one more */
		bool ok = false;
		for (int it = 0; it < 32 && k >= 1 && (size_t)k + start <= (size_t)n_all; it++) {
			const char *txt;
			const int32_t *ids;
			ssize_t tl = skv_tokenizer_decode(tok, ws, all + start, (size_t)k, 0, &txt, &err);
			if (tl <= 0)
				break;
			free(p->texts[i]);
			p->texts[i] = strndup(txt, (size_t)tl);
			if (!p->texts[i])
				return -ENOMEM;
			ssize_t n = skv_tokenizer_encode(tok, ws, p->texts[i], (size_t)tl, enc, &ids, &err);
			if (n < 0)
				break;
			if (n == (ssize_t)p->len) {
				ok = true;
				break;
			}
			/* step by the difference, at least one, towards the target */
			int64_t d = (int64_t)p->len - n;
			k += d > 0 ? d : (it < 8 ? d : -1);
		}
		if (!ok) {
			fprintf(stderr, "skv-bench serve: cannot cut a text prompt of exactly %u tokens from the text\n",
				p->len);
			return -EINVAL;
		}
	}
	return 0;
}

static int prompts_make(const struct opts *o, struct prompts *p)
{
	struct skv_err err = {0};
	_cleanup_tokenizer_ struct skv_tokenizer *tok = NULL;

	p->n = (uint32_t)o->num_prompts;
	p->len = (uint32_t)o->input_len;
	p->vocab = 256;
	if (o->model) {
		struct skv_model_config cfg;
		if (skv_model_config_load(o->model, &cfg, &err) < 0) {
			fprintf(stderr, "skv-bench serve: %s\n", err.msg);
			return -EINVAL;
		}
		p->vocab = cfg.vocab;
		if (skv_tokenizer_load(o->model, &tok, &err) < 0) {
			if (o->text) {
				fprintf(stderr, "skv-bench serve: --text: %s\n", err.msg);
				return -EINVAL;
			}
			tok = NULL; /* ids only: the vocabulary size is enough */
		}
	}
	return o->text ? prompts_make_text(o, tok, p) : prompts_make_ids(o, tok, p);
}

static void request_fill(const struct opts *o, const struct prompts *p, uint32_t idx, struct skv_request *r)
{
	skv_request_init(r);
	if (p->texts) {
		r->kind = SKV_PROMPT_TEXT;
		r->text = p->texts[idx];
	} else {
		r->kind = SKV_PROMPT_IDS;
		r->ids = p->ids + (size_t)idx * p->len;
		r->n_ids = p->len;
	}
	r->flags = SKV_REQUEST_IGNORE_EOS | SKV_REQUEST_STREAM_IDS | SKV_REQUEST_TEMPERATURE;
	r->temperature = o->have_temperature ? (float)o->temperature : 0.0f;
	if (o->have_temperature && o->temperature > 0) {
		r->flags |= SKV_REQUEST_SEED;
		r->seed = (uint64_t)o->seed * 1000003u + idx;
	}
	r->max_tokens = (uint32_t)o->output_len;
	r->timeout_ms = (uint32_t)o->timeout_ms;
}

/* ---- one run ---- */

struct run {
	const struct opts *o;
	const struct prompts *p;
	struct client *cl;
	uint32_t n_cl, per_client;
	struct req *rq;
	uint32_t n, next;     /* next request to arrive */
	uint32_t *ready;      /* FIFO of request indices due for submission */
	uint32_t r_head, r_len;
	uint32_t active;      /* arrived and not ended (closed loop's count) */
	uint32_t ended;
	float *itl;	      /* [n][output_len] ms gaps between a request's deltas; NULL: too many */
	uint32_t errors[N_ERR];
	uint32_t retries;
	uint64_t retry_min;   /* the earliest retry_at of a REQ_RETRY request; UINT64_MAX: none */
	bool submit_blocked;  /* a submission met -EAGAIN: poll briefly */
};

static void ready_push(struct run *r, uint32_t i)
{
	r->ready[(r->r_head + r->r_len) % r->n] = i;
	r->r_len++;
	r->rq[i].state = REQ_READY;
}

static void req_end(struct run *r, struct req *q, bool ok, uint32_t code, uint64_t now)
{
	q->state = ok ? REQ_DONE : REQ_FAILED;
	q->t_end = now;
	if (!ok)
		r->errors[SKV_MIN(code, (uint32_t)ERR_CONNECTION)]++;
	r->ended++;
	r->active--;
}

static void client_lost(struct run *r, uint32_t ci, const char *why)
{
	uint64_t now = skv_now_ns();
	struct client *c = &r->cl[ci];
	fprintf(stderr, "skv-bench serve: session %u lost: %s\n", ci, why);
	c->dead = true;
	for (uint32_t i = 0; i < r->n; i++)
		if (r->rq[i].state == REQ_IN_FLIGHT && r->rq[i].client == (int)ci)
			req_end(r, &r->rq[i], false, ERR_CONNECTION, now);
	c->in_flight = 0;
}

/* Every session is gone: whatever has not ended fails now, arrived or not. */
static void fail_rest(struct run *r)
{
	uint64_t now = skv_now_ns();
	for (uint32_t i = 0; i < r->n; i++) {
		struct req *q = &r->rq[i];
		if (q->state == REQ_DONE || q->state == REQ_FAILED)
			continue;
		if (q->state == REQ_WAITING)
			r->active++; /* req_end counts it out */
		req_end(r, q, false, ERR_CONNECTION, now);
	}
	r->next = r->n;
	r->r_len = 0;
}

/* Submits what is due while some session has room. */
static void submit_ready(struct run *r)
{
	r->submit_blocked = false;
	while (r->r_len) {
		struct req *q = &r->rq[r->ready[r->r_head]];
		int best = -1;
		for (uint32_t ci = 0; ci < r->n_cl; ci++)
			if (!r->cl[ci].dead && r->cl[ci].in_flight < r->per_client &&
			    (best < 0 || r->cl[ci].in_flight < r->cl[best].in_flight))
				best = (int)ci;
		if (best < 0) {
			bool any = false;
			for (uint32_t ci = 0; ci < r->n_cl; ci++)
				any |= !r->cl[ci].dead;
			if (!any) { /* every session is gone: nothing can be sent any more */
				r->r_head = (r->r_head + 1) % r->n;
				r->r_len--;
				req_end(r, q, false, ERR_CONNECTION, skv_now_ns());
				continue;
			}
			return;
		}
		struct skv_request req;
		request_fill(r->o, r->p, q->idx, &req);
		req.user_data = q;
		uint64_t now = skv_now_ns();
		int rc = skv_client_submit(r->cl[best].c, &req, &q->id);
		if (rc == -EAGAIN) { /* the session's ring or data area is full for a moment */
			r->submit_blocked = true;
			return;
		}
		r->r_head = (r->r_head + 1) % r->n;
		r->r_len--;
		if (rc == -ECONNRESET || rc == -ENOTCONN || rc == -EPROTO) {
			ready_push(r, (uint32_t)(q - r->rq)); /* to another session */
			client_lost(r, (uint32_t)best, skv_client_errmsg(r->cl[best].c));
			continue;
		}
		if (rc < 0) {
			fprintf(stderr, "skv-bench serve: request %u not submitted: %s\n", q->idx,
				skv_client_errmsg(r->cl[best].c));
			req_end(r, q, false, rc == -EINVAL || rc == -E2BIG ? SKV_ERROR_CODE_INVALID : SKV_ERROR_CODE_INTERNAL,
				now);
			continue;
		}
		if (!q->t_start)
			q->t_start = now;
		q->state = REQ_IN_FLIGHT;
		q->client = best;
		r->cl[best].in_flight++;
	}
}

static void on_event(struct run *r, uint32_t ci, const struct skv_event *ev, uint64_t now)
{
	struct req *q = ev->user_data;
	if (ev->type == SKV_EVENT_DELTA) {
		if (!ev->n_ids && !ev->text_len)
			return;
		if (!q->t_first) {
			q->t_first = q->t_last = now;
		} else if (ev->n_ids) {
			if (r->itl && q->n_gaps < (uint32_t)r->o->output_len)
				r->itl[(size_t)q->idx * (size_t)r->o->output_len + q->n_gaps++] = (float)((double)(now - q->t_last) / 1e6);
			q->t_last = now;
		}
		q->n_ids += ev->n_ids;
		return;
	}
	r->cl[ci].in_flight--;
	if (ev->finish == SKV_FINISH_REASON_ERROR && ev->error == SKV_ERROR_CODE_BUSY) {
		q->retries++;
		r->retries++;
		q->t_first = q->t_last = 0;
		q->n_ids = q->n_gaps = 0;
		q->state = REQ_RETRY;
		q->retry_at = now + (uint64_t)(ev->retry_after_ms ? ev->retry_after_ms : 100) * 1000000ull;
		r->retry_min = SKV_MIN(r->retry_min, q->retry_at);
		return;
	}
	q->prompt_tokens = ev->prompt_tokens;
	q->completion_tokens = ev->completion_tokens;
	/* queueing ends when the engine first schedules the request: skvd's queue_us counts from
	 * when it read the submission */
	q->t_taken = ev->t_seen_ns ? ev->t_seen_ns + (uint64_t)ev->queue_us * 1000 : 0;
	if (ev->finish == SKV_FINISH_REASON_STOP || ev->finish == SKV_FINISH_REASON_LENGTH) {
		req_end(r, q, true, 0, now);
		return;
	}
	uint32_t code = ev->finish == SKV_FINISH_REASON_ERROR ? (uint32_t)ev->error : SKV_ERROR_CODE_INTERNAL;
	if (code >= ERR_CONNECTION)
		code = SKV_ERROR_CODE_INTERNAL;
	if (r->errors[code] == 0)
		fprintf(stderr, "skv-bench serve: request %u failed: %s%s%s\n", q->idx,
			ev->finish == SKV_FINISH_REASON_ERROR ? skv_error_name(ev->error) : skv_finish_name(ev->finish),
			*ev->message ? ": " : "", ev->message);
	req_end(r, q, false, code, now);
}

static void drain_client(struct run *r, uint32_t ci)
{
	struct skv_event ev;
	for (;;) {
		int rc = skv_client_next(r->cl[ci].c, &ev, 0);
		if (rc == -EAGAIN || rc == -EINTR)
			return;
		if (rc < 0) {
			client_lost(r, ci, skv_client_errmsg(r->cl[ci].c));
			return;
		}
		on_event(r, ci, &ev, skv_now_ns());
	}
}

static void clients_free(struct client *cl, uint32_t n)
{
	for (uint32_t i = 0; cl && i < n; i++)
		skv_client_free(cl[i].c);
	free(cl);
}

/* Connects n sessions; the first one's limits are checked against the load. */
static int clients_open(const struct opts *o, const char *socket, uint32_t want, struct client **ret_cl,
			uint32_t *ret_n, uint32_t *ret_per, char *model, size_t model_len)
{
	struct client *cl = calloc(want, sizeof(*cl));
	struct skv_limits lim;
	uint32_t n = 0, per = (uint32_t)o->per_client;
	int rc;

	if (!cl)
		return -ENOMEM;
	for (; n < want; n++) {
		if ((rc = skv_client_new(&cl[n].c)) < 0)
			goto fail;
		if ((rc = skv_client_connect(cl[n].c, socket)) < 0) {
			fprintf(stderr, "skv-bench serve: %s\n", skv_client_errmsg(cl[n].c));
			n++;
			goto fail;
		}
		if (n == 0) {
			skv_client_limits(cl[0].c, &lim);
			snprintf(model, model_len, "%s", skv_client_model(cl[0].c));
			if (lim.max_in_flight)
				per = SKV_MIN(per, lim.max_in_flight);
			rc = -EINVAL;
			if (lim.max_prompt_tokens && o->input_len > lim.max_prompt_tokens) {
				fprintf(stderr, "skv-bench serve: --input-len %lld is over skvd's max_prompt_tokens %u\n",
					(long long)o->input_len, lim.max_prompt_tokens);
				n++;
				goto fail;
			}
			if (lim.max_new_tokens && o->output_len > lim.max_new_tokens) {
				fprintf(stderr, "skv-bench serve: --output-len %lld is over skvd's max_new_tokens %u\n",
					(long long)o->output_len, lim.max_new_tokens);
				n++;
				goto fail;
			}
			if (lim.max_context && o->input_len + o->output_len > lim.max_context) {
				fprintf(stderr, "skv-bench serve: input + output (%lld) is over skvd's context of %u\n",
					(long long)(o->input_len + o->output_len), lim.max_context);
				n++;
				goto fail;
			}
			/* sessions enough for every request that can be outstanding at once */
			uint32_t need = (uint32_t)SKV_DIV_UP(
				(uint64_t)(o->concurrency ? SKV_MIN(o->concurrency, o->num_prompts) : o->num_prompts), per);
			want = SKV_MAX(1u, SKV_MIN(want, need));
		}
	}
	*ret_cl = cl;
	*ret_n = n;
	*ret_per = per;
	return 0;
fail:
	clients_free(cl, n);
	return rc < 0 ? rc : -EIO;
}

/* The warm-up: requests of the same shape, one at a time, not counted. */
static int warmup(const struct opts *o, const struct prompts *p, struct skv_client *c)
{
	for (int64_t i = 0; i < o->warmup; i++) {
		struct skv_request req;
		struct skv_event fin;
		request_fill(o, p, (uint32_t)(i % p->n), &req);
		req.timeout_ms = 0; /* the first request may be slow (allocations, caches) */
		int rc = skv_client_generate(c, &req, NULL, NULL, &fin);
		if (rc < 0) {
			fprintf(stderr, "skv-bench serve: warm-up: %s\n", skv_client_errmsg(c));
			return rc;
		}
		if (fin.finish == SKV_FINISH_REASON_ERROR && fin.error == SKV_ERROR_CODE_BUSY) {
			i--; /* skvd is still busy with something: wait and try again */
			poll(NULL, 0, (int)(fin.retry_after_ms ? fin.retry_after_ms : 100));
			continue;
		}
		if (fin.finish != SKV_FINISH_REASON_LENGTH && fin.finish != SKV_FINISH_REASON_STOP) {
			fprintf(stderr, "skv-bench serve: warm-up request failed: %s%s%s\n",
				fin.finish == SKV_FINISH_REASON_ERROR ? skv_error_name(fin.error) : skv_finish_name(fin.finish),
				*fin.message ? ": " : "", fin.message);
			return -EIO;
		}
	}
	return 0;
}

static int run_load(const struct opts *o, const struct prompts *p, const char *socket, double rate, const char *label,
		    struct result *res)
{
	struct run r = {.o = o, .p = p, .n = p->n};
	_cleanup_free_ struct req *rq = NULL;
	_cleanup_free_ uint32_t *ready = NULL;
	_cleanup_free_ float *itl = NULL;
	_cleanup_free_ double *v = NULL, *gaps = NULL;
	_cleanup_free_ struct pollfd *pfd = NULL;
	int rc;

	memset(res, 0, sizeof(*res));
	res->label = label;
	res->rate = rate;
	res->concurrency = (uint32_t)o->concurrency;
	rc = clients_open(o, socket, (uint32_t)o->clients, &r.cl, &r.n_cl, &r.per_client, res->model,
			  sizeof(res->model));
	if (rc < 0)
		return rc;
	res->clients = r.n_cl;
	res->per_client = r.per_client;
	if ((rc = warmup(o, p, r.cl[0].c)) < 0) {
		clients_free(r.cl, r.n_cl);
		return rc;
	}

	rq = r.rq = calloc(r.n, sizeof(*rq));
	ready = r.ready = calloc(r.n, sizeof(*ready));
	/* inter-token gaps: up to 256M of them (1 GiB); past that ITL is left out */
	size_t n_gaps_max = (size_t)r.n * (size_t)o->output_len;
	if (n_gaps_max <= (256u << 20))
		itl = r.itl = malloc(n_gaps_max * sizeof(float));
	v = malloc(r.n * sizeof(double));
	pfd = calloc(r.n_cl, sizeof(*pfd));
	if (!rq || !ready || !v || !pfd) {
		clients_free(r.cl, r.n_cl);
		return -ENOMEM;
	}
	/* arrivals: Poisson with the given rate (seeded), or all at time 0 */
	uint64_t s = (uint64_t)o->seed ^ 0x5deece66dull, t = 0;
	for (uint32_t i = 0; i < r.n; i++) {
		rq[i].idx = i;
		if (!o->concurrency && !isinf(rate)) {
			t += (uint64_t)(-log(1.0 - rng_uniform(&s)) / rate * 1e9);
			rq[i].t_arrival = t;
		}
	}

	uint64_t t0 = skv_now_ns(), next_progress = t0 + 10000000000ull;
	r.retry_min = UINT64_MAX;
	for (uint32_t i = 0; i < r.n; i++)
		rq[i].t_arrival += t0;
	while (r.ended < r.n) {
		uint64_t now = skv_now_ns();
		/* arrivals */
		while (r.next < r.n && (o->concurrency ? r.active < (uint32_t)o->concurrency : rq[r.next].t_arrival <= now)) {
			if (o->concurrency)
				rq[r.next].t_arrival = now;
			r.active++;
			ready_push(&r, r.next++);
		}
		/* busy answers whose wait is over */
		if (now >= r.retry_min) {
			r.retry_min = UINT64_MAX;
			for (uint32_t i = 0; i < r.n; i++)
				if (rq[i].state == REQ_RETRY) {
					if (rq[i].retry_at <= now)
						ready_push(&r, i);
					else
						r.retry_min = SKV_MIN(r.retry_min, rq[i].retry_at);
				}
		}
		submit_ready(&r);
		if (r.ended >= r.n)
			break;

		/* wait for events, the next arrival or the next retry */
		uint64_t wake = r.retry_min;
		if (!o->concurrency && r.next < r.n)
			wake = SKV_MIN(wake, rq[r.next].t_arrival);
		now = skv_now_ns();
		if (r.submit_blocked)
			wake = SKV_MIN(wake, now + 1000000); /* retry the submission in 1 ms */
		if (now >= next_progress) { /* a sign of life on long runs */
			fprintf(stderr, "skv-bench serve: %u of %u requests ended after %.0f s\n", r.ended, r.n,
				(double)(now - t0) / 1e9);
			next_progress = now + 10000000000ull;
		}
		struct timespec ts, *tsp = NULL;
		if (wake != UINT64_MAX) {
			uint64_t dt = wake > now ? wake - now : 0;
			ts.tv_sec = (time_t)(dt / 1000000000ull);
			ts.tv_nsec = (long)(dt % 1000000000ull);
			tsp = &ts;
		}
		nfds_t nf = 0;
		for (uint32_t ci = 0; ci < r.n_cl; ci++) {
			pfd[ci].fd = r.cl[ci].dead || !r.cl[ci].in_flight ? -1 : skv_client_fd(r.cl[ci].c);
			pfd[ci].events = POLLIN;
			pfd[ci].revents = 0;
			nf = ci + 1;
		}
		int np = ppoll(pfd, nf, tsp, NULL);
		if (np < 0 && errno != EINTR) {
			rc = -errno;
			break;
		}
		for (uint32_t ci = 0; np > 0 && ci < r.n_cl; ci++)
			if (pfd[ci].revents && !r.cl[ci].dead)
				drain_client(&r, ci);
		bool alive = false;
		for (uint32_t ci = 0; ci < r.n_cl; ci++)
			alive |= !r.cl[ci].dead;
		if (!alive)
			fail_rest(&r);
	}
	uint64_t t_end = 0;

	/* the numbers */
	memcpy(res->errors, r.errors, sizeof(r.errors));
	res->retries = r.retries;
	uint32_t m;
	for (uint32_t i = 0; i < r.n; i++) {
		t_end = SKV_MAX(t_end, rq[i].t_end);
		if (rq[i].state != REQ_DONE) {
			res->failed++;
			continue;
		}
		res->completed++;
		res->in_tokens += rq[i].prompt_tokens;
		res->out_tokens += rq[i].completion_tokens;
		res->prompt_mismatch += rq[i].prompt_tokens != p->len;
		res->short_outputs += rq[i].completion_tokens != (uint32_t)o->output_len;
	}
	res->duration_s = t_end > t0 ? (double)(t_end - t0) / 1e9 : 0;
	if (res->duration_s > 0) {
		res->request_throughput = res->completed / res->duration_s;
		res->output_throughput = (double)res->out_tokens / res->duration_s;
		res->total_token_throughput = (double)(res->in_tokens + res->out_tokens) / res->duration_s;
	}
#define COLLECT(field, cond, expr)                                                                  \
	do {                                                                                        \
		m = 0;                                                                              \
		for (uint32_t i = 0; i < r.n; i++) {                                                \
			const struct req *q = &rq[i];                                               \
			if (q->state == REQ_DONE && (cond))                                         \
				v[m++] = (expr);                                                    \
		}                                                                                   \
		res->field = stats_of(v, m);                                                        \
	} while (0)
	COLLECT(ttft, q->t_first, (double)(q->t_first - q->t_start) / 1e6);
	COLLECT(tpot, q->t_first && q->completion_tokens > 1,
		(double)(q->t_end - q->t_first) / 1e6 / (double)(q->completion_tokens - 1));
	COLLECT(e2e, 1, (double)(q->t_end - q->t_start) / 1e6);
	COLLECT(queue, q->t_taken >= q->t_start, (double)(q->t_taken - q->t_start) / 1e6);
#undef COLLECT
	/* the gaps of completed requests */
	size_t n_gaps = 0;
	for (uint32_t i = 0; itl && i < r.n; i++)
		if (rq[i].state == REQ_DONE)
			n_gaps += rq[i].n_gaps;
	gaps = malloc(SKV_MAX(n_gaps, (size_t)1) * sizeof(double));
	if (gaps && n_gaps <= UINT32_MAX) {
		size_t k = 0;
		for (uint32_t i = 0; itl && i < r.n; i++)
			for (uint32_t g = 0; rq[i].state == REQ_DONE && g < rq[i].n_gaps; g++)
				gaps[k++] = itl[(size_t)i * (size_t)o->output_len + g];
		res->itl = stats_of(gaps, (uint32_t)k);
	}
	double lag_sum = 0;
	m = 0;
	for (uint32_t i = 0; i < r.n; i++)
		if (rq[i].t_start) {
			double lag = (double)(rq[i].t_start - rq[i].t_arrival) / 1e6;
			lag_sum += lag;
			res->lag_max_ms = SKV_MAX(res->lag_max_ms, lag);
			m++;
		}
	res->lag_mean_ms = m ? lag_sum / m : 0;
	clients_free(r.cl, r.n_cl);
	return rc;
}

/* ---- output ---- */

struct metric {
	const char *title; /* section header before this row, or NULL */
	const char *name;
	size_t off; /* of a double in struct result */
	const char *fmt;
};

#define RES(f) offsetof(struct result, f)
static const struct metric metrics[] = {
	{NULL, "Benchmark duration (s):", RES(duration_s), "%.2f"},
	{NULL, "Request throughput (req/s):", RES(request_throughput), "%.2f"},
	{NULL, "Output token throughput (tok/s):", RES(output_throughput), "%.2f"},
	{NULL, "Total token throughput (tok/s):", RES(total_token_throughput), "%.2f"},
	{"Time to First Token", "Mean TTFT (ms):", RES(ttft.mean), "%.2f"},
	{NULL, "Median TTFT (ms):", RES(ttft.p50), "%.2f"},
	{NULL, "P90 TTFT (ms):", RES(ttft.p90), "%.2f"},
	{NULL, "P99 TTFT (ms):", RES(ttft.p99), "%.2f"},
	{"Time per Output Token (excl. 1st token)", "Mean TPOT (ms):", RES(tpot.mean), "%.2f"},
	{NULL, "Median TPOT (ms):", RES(tpot.p50), "%.2f"},
	{NULL, "P90 TPOT (ms):", RES(tpot.p90), "%.2f"},
	{NULL, "P99 TPOT (ms):", RES(tpot.p99), "%.2f"},
	{"Inter-token Latency", "Mean ITL (ms):", RES(itl.mean), "%.2f"},
	{NULL, "Median ITL (ms):", RES(itl.p50), "%.2f"},
	{NULL, "P90 ITL (ms):", RES(itl.p90), "%.2f"},
	{NULL, "P99 ITL (ms):", RES(itl.p99), "%.2f"},
	{"End-to-end Latency", "Mean E2EL (ms):", RES(e2e.mean), "%.2f"},
	{NULL, "Median E2EL (ms):", RES(e2e.p50), "%.2f"},
	{NULL, "P99 E2EL (ms):", RES(e2e.p99), "%.2f"},
	{"Queue (submit to worker, retries incl.)", "Mean queue (ms):", RES(queue.mean), "%.2f"},
	{NULL, "Median queue (ms):", RES(queue.p50), "%.2f"},
	{NULL, "P99 queue (ms):", RES(queue.p99), "%.2f"},
};

static double res_get(const struct result *r, size_t off)
{
	double d;
	memcpy(&d, (const char *)r + off, sizeof(d));
	return d;
}

static void print_rule(const char *title)
{
	int w = 50, tl = title ? (int)strlen(title) + 2 : 0;
	int left = (w - tl) / 2, right = w - tl - left;
	char c = title ? '-' : '=';
	for (int i = 0; i < left; i++)
		putchar(c);
	if (title)
		printf(" %s ", title);
	for (int i = 0; i < right; i++)
		putchar(c);
	putchar('\n');
}

/* vLLM's table, one column per result (two: on, off and their ratio). */
static void print_table(const struct opts *o, const struct result *res, uint32_t n)
{
	char rs[32];
	rate_str(res[0].rate, rs, sizeof(rs));
	print_rule(NULL);
	printf("%s\n", n == 2 ? "Serving Benchmark: swiftkv on vs off" : "Serving Benchmark Result");
	printf("%-40s %s\n", "Model:", res[0].model);
	printf("%-40s %lld in / %lld out (%s), %lld prompts\n", "Traffic:", (long long)o->input_len,
	       (long long)o->output_len, o->text ? "text" : "ids", (long long)o->num_prompts);
	if (o->concurrency)
		printf("%-40s closed loop, concurrency %lld\n", "Arrivals:", (long long)o->concurrency);
	else
		printf("%-40s %s req/s%s\n", "Arrivals:", rs, isinf(res[0].rate) ? " (all at once)" : ", Poisson");
	if (n == 2)
		printf("%-40s %12s %12s %10s\n", "", res[0].label, res[1].label, "on/off");
#define ROW_U(name, field)                                                                          \
	do {                                                                                        \
		printf("%-40s", name);                                                              \
		for (uint32_t k = 0; k < n; k++)                                                    \
			printf(" %12llu", (unsigned long long)res[k].field);                        \
		putchar('\n');                                                                      \
	} while (0)
	ROW_U("Successful requests:", completed);
	ROW_U("Failed requests:", failed);
	ROW_U("Busy retries:", retries);
	ROW_U("Total input tokens:", in_tokens);
	ROW_U("Total generated tokens:", out_tokens);
#undef ROW_U
	for (size_t i = 0; i < SKV_ARRAY_SIZE(metrics); i++) {
		const struct metric *m = &metrics[i];
		if (m->title)
			print_rule(m->title);
		printf("%-40s", m->name);
		for (uint32_t k = 0; k < n; k++) {
			char b[32];
			snprintf(b, sizeof(b), m->fmt, res_get(&res[k], m->off));
			printf(" %12s", b);
		}
		if (n == 2) {
			double a = res_get(&res[0], m->off), b = res_get(&res[1], m->off);
			if (b > 0)
				printf(" %9.2fx", a / b);
		}
		putchar('\n');
	}
	print_rule(NULL);
	for (uint32_t k = 0; k < n; k++) {
		const struct result *r = &res[k];
		const char *pre = n == 2 ? r->label : "";
		for (uint32_t e = 0; e < N_ERR; e++)
			if (r->errors[e])
				printf("%s%serrors %s: %u\n", pre, *pre ? ": " : "", err_key(e), r->errors[e]);
		if (r->prompt_mismatch)
			printf("%s%swarning: %u requests had a prompt length other than %lld\n", pre, *pre ? ": " : "",
			       r->prompt_mismatch, (long long)o->input_len);
		if (r->short_outputs)
			printf("%s%swarning: %u requests generated other than %lld tokens\n", pre, *pre ? ": " : "",
			       r->short_outputs, (long long)o->output_len);
	}
	fflush(stdout);
}

static json_object *stats_json(const struct stats *s)
{
	json_object *o = json_object_new_object();
	json_object_object_add(o, "mean", json_object_new_double(s->mean));
	json_object_object_add(o, "p50", json_object_new_double(s->p50));
	json_object_object_add(o, "p90", json_object_new_double(s->p90));
	json_object_object_add(o, "p99", json_object_new_double(s->p99));
	json_object_object_add(o, "min", json_object_new_double(s->min));
	json_object_object_add(o, "max", json_object_new_double(s->max));
	json_object_object_add(o, "n", json_object_new_int64(s->n));
	return o;
}

static void settings_json(const struct opts *o, json_object *j)
{
	json_object_object_add(j, "input_len", json_object_new_int64(o->input_len));
	json_object_object_add(j, "output_len", json_object_new_int64(o->output_len));
	json_object_object_add(j, "num_prompts", json_object_new_int64(o->num_prompts));
	json_object_object_add(j, "prompt_kind", json_object_new_string(o->text ? "text" : "ids"));
	json_object_object_add(j, "temperature", json_object_new_double(o->have_temperature ? o->temperature : 0));
	json_object_object_add(j, "seed", json_object_new_int64(o->seed));
	json_object_object_add(j, "warmup", json_object_new_int64(o->warmup));
	if (o->model)
		json_object_object_add(j, "model_dir", json_object_new_string(o->model));
}

/* One result's fields, into j (an object of its own, or the top level for a single run). */
static void result_json(const struct result *r, json_object *j)
{
	json_object_object_add(j, "model", json_object_new_string(r->model));
	if (*r->label)
		json_object_object_add(j, "swiftkv", json_object_new_string(r->label));
	json_object_object_add(j, "arrivals", json_object_new_string(r->concurrency ? "closed-loop" :
									 isinf(r->rate)	  ? "all-at-once" :
											    "poisson"));
	/* JSON has no infinity: null means all at once */
	json_object_object_add(j, "request_rate", isinf(r->rate) || r->concurrency ? NULL : json_object_new_double(r->rate));
	json_object_object_add(j, "concurrency", r->concurrency ? json_object_new_int64(r->concurrency) : NULL);
	json_object_object_add(j, "clients", json_object_new_int64(r->clients));
	json_object_object_add(j, "per_client", json_object_new_int64(r->per_client));
	json_object_object_add(j, "completed", json_object_new_int64(r->completed));
	json_object_object_add(j, "failed", json_object_new_int64(r->failed));
	json_object_object_add(j, "busy_retries", json_object_new_int64(r->retries));
	json_object *e = json_object_new_object();
	for (uint32_t k = 1; k < N_ERR; k++)
		if (r->errors[k])
			json_object_object_add(e, err_key(k), json_object_new_int64(r->errors[k]));
	json_object_object_add(j, "errors", e);
	json_object_object_add(j, "prompt_len_mismatch", json_object_new_int64(r->prompt_mismatch));
	json_object_object_add(j, "short_outputs", json_object_new_int64(r->short_outputs));
	json_object_object_add(j, "duration_s", json_object_new_double(r->duration_s));
	json_object_object_add(j, "total_input_tokens", json_object_new_int64((int64_t)r->in_tokens));
	json_object_object_add(j, "total_output_tokens", json_object_new_int64((int64_t)r->out_tokens));
	json_object_object_add(j, "request_throughput", json_object_new_double(r->request_throughput));
	json_object_object_add(j, "output_throughput", json_object_new_double(r->output_throughput));
	json_object_object_add(j, "total_token_throughput", json_object_new_double(r->total_token_throughput));
	json_object_object_add(j, "ttft_ms", stats_json(&r->ttft));
	json_object_object_add(j, "tpot_ms", stats_json(&r->tpot));
	json_object_object_add(j, "itl_ms", stats_json(&r->itl));
	json_object_object_add(j, "e2e_ms", stats_json(&r->e2e));
	json_object_object_add(j, "queue_ms", stats_json(&r->queue));
	json_object_object_add(j, "submit_lag_ms_mean", json_object_new_double(r->lag_mean_ms));
	json_object_object_add(j, "submit_lag_ms_max", json_object_new_double(r->lag_max_ms));
}

static json_object *ratio_json(const struct result *on, const struct result *off)
{
	json_object *j = json_object_new_object();
	static const char *const keys[] = {"request_throughput", "output_throughput", "total_token_throughput"};
	const double a[] = {on->request_throughput, on->output_throughput, on->total_token_throughput};
	const double b[] = {off->request_throughput, off->output_throughput, off->total_token_throughput};
	for (size_t i = 0; i < SKV_ARRAY_SIZE(keys); i++)
		json_object_object_add(j, keys[i], b[i] > 0 ? json_object_new_double(a[i] / b[i]) : NULL);
	const struct stats *sa[] = {&on->ttft, &on->tpot, &on->itl, &on->e2e};
	const struct stats *sb[] = {&off->ttft, &off->tpot, &off->itl, &off->e2e};
	static const char *const skeys[] = {"ttft_ms", "tpot_ms", "itl_ms", "e2e_ms"};
	for (size_t i = 0; i < SKV_ARRAY_SIZE(skeys); i++) {
		json_object *s = json_object_new_object();
		json_object_object_add(s, "mean", sb[i]->mean > 0 ? json_object_new_double(sa[i]->mean / sb[i]->mean) : NULL);
		json_object_object_add(s, "p50", sb[i]->p50 > 0 ? json_object_new_double(sa[i]->p50 / sb[i]->p50) : NULL);
		json_object_object_add(s, "p90", sb[i]->p90 > 0 ? json_object_new_double(sa[i]->p90 / sb[i]->p90) : NULL);
		json_object_object_add(s, "p99", sb[i]->p99 > 0 ? json_object_new_double(sa[i]->p99 / sb[i]->p99) : NULL);
		json_object_object_add(j, skeys[i], s);
	}
	return j;
}

static int write_csv(const char *path, const struct result *res, uint32_t n)
{
	FILE *f = fopen(path, "w");
	if (!f)
		return -errno;
	fprintf(f, "swiftkv,request_rate,concurrency,completed,failed,busy_retries,duration_s,request_throughput,"
		   "output_throughput,total_token_throughput,ttft_mean_ms,ttft_p50_ms,ttft_p90_ms,ttft_p99_ms,"
		   "tpot_mean_ms,tpot_p50_ms,tpot_p90_ms,tpot_p99_ms,itl_p50_ms,itl_p99_ms,e2e_p50_ms,e2e_p99_ms,"
		   "queue_p50_ms,queue_p99_ms\n");
	for (uint32_t i = 0; i < n; i++) {
		const struct result *r = &res[i];
		char rs[32];
		rate_str(r->rate, rs, sizeof(rs));
		fprintf(f, "%s,%s,%u,%u,%u,%u,%.4f,%.4f,%.3f,%.3f,%.3f,%.3f,%.3f,%.3f,%.4f,%.4f,%.4f,%.4f,%.4f,%.4f,"
			   "%.3f,%.3f,%.3f,%.3f\n",
			r->label, r->concurrency ? "" : rs, r->concurrency, r->completed, r->failed, r->retries,
			r->duration_s, r->request_throughput, r->output_throughput, r->total_token_throughput,
			r->ttft.mean, r->ttft.p50, r->ttft.p90, r->ttft.p99, r->tpot.mean, r->tpot.p50, r->tpot.p90,
			r->tpot.p99, r->itl.p50, r->itl.p99, r->e2e.p50, r->e2e.p99, r->queue.p50, r->queue.p99);
	}
	return fclose(f) == 0 ? 0 : -EIO;
}

/* The summary after a sweep: one line per run. */
static void print_sweep(const struct result *res, uint32_t n)
{
	printf("\n%-8s %-4s %9s %9s %11s %11s %11s %11s %11s %6s\n", "rate", "skv", "req/s", "out tok/s", "total tok/s",
	       "TTFT p50", "TTFT p99", "TPOT p50", "TPOT p99", "failed");
	for (uint32_t i = 0; i < n; i++) {
		const struct result *r = &res[i];
		char rs[32];
		rate_str(r->rate, rs, sizeof(rs));
		printf("%-8s %-4s %9.2f %9.1f %11.1f %11.2f %11.2f %11.3f %11.3f %6u\n", rs, *r->label ? r->label : "-",
		       r->request_throughput, r->output_throughput, r->total_token_throughput, r->ttft.p50, r->ttft.p99,
		       r->tpot.p50, r->tpot.p99, r->failed);
	}
	printf("(latencies in ms)\n");
}

/* ---- main ---- */

static void usage(FILE *f)
{
	fprintf(f,
		"usage: skv-bench serve --socket PATH --input-len N --output-len N --num-prompts N\n"
		"                       [--request-rate R | --concurrency C] [--json FILE] [--csv FILE]\n"
		"                       [--model DIR] [--text [--text-file F]] [--temperature T] [--seed S]\n"
		"                       [--warmup N] [--clients N] [--per-client N] [--request-timeout-ms MS]\n"
		"                       [--label on|off]   (which forward the server runs, for the JSON)\n"
		"       skv-bench serve --compare --socket-on A --socket-off B ...\n"
		"       skv-bench serve --sweep R1,R2,... ...   (rates in requests/s, inf for all at once)\n"
		"Default arrivals: every request at once (rate inf). Greedy unless --temperature.\n");
}

static int parse_sweep(const char *s, struct opts *o)
{
	_cleanup_free_ char *dup = strdup(s);
	char *save = NULL;
	if (!dup)
		return -ENOMEM;
	for (char *t = strtok_r(dup, ",", &save); t; t = strtok_r(NULL, ",", &save)) {
		if (o->n_sweep == MAX_SWEEP || skv_parse_f64(t, 1e-6, INFINITY, &o->sweep[o->n_sweep]) < 0)
			return -EINVAL;
		o->n_sweep++;
	}
	return o->n_sweep ? 0 : -EINVAL;
}

static int serve_main(int argc, char **argv)
{
	static const struct option lopts[] = {
		{"socket", required_argument, NULL, 's'},
		{"socket-on", required_argument, NULL, 'A'},
		{"socket-off", required_argument, NULL, 'B'},
		{"compare", no_argument, NULL, 'C'},
		{"label", required_argument, NULL, 'L'},
		{"input-len", required_argument, NULL, 'i'},
		{"output-len", required_argument, NULL, 'o'},
		{"num-prompts", required_argument, NULL, 'n'},
		{"request-rate", required_argument, NULL, 'r'},
		{"concurrency", required_argument, NULL, 'c'},
		{"sweep", required_argument, NULL, 'S'},
		{"json", required_argument, NULL, 'j'},
		{"csv", required_argument, NULL, 'v'},
		{"model", required_argument, NULL, 'm'},
		{"text", no_argument, NULL, 't'},
		{"text-file", required_argument, NULL, 'f'},
		{"temperature", required_argument, NULL, 'T'},
		{"seed", required_argument, NULL, 'e'},
		{"warmup", required_argument, NULL, 'w'},
		{"clients", required_argument, NULL, 'k'},
		{"per-client", required_argument, NULL, 'p'},
		{"request-timeout-ms", required_argument, NULL, 'O'},
		{"help", no_argument, NULL, 'h'},
		{0},
	};
	struct opts o = {.rate = INFINITY, .seed = 0, .warmup = 1, .clients = MAX_CLIENTS_DEFAULT, .per_client = 32};
	bool have_rate = false;
	int c, li = -1;

	while ((c = getopt_long(argc, argv, "", lopts, &li)) != -1) {
		int r = 0;
		switch (c) {
		case 's': o.socket = optarg; break;
		case 'A': o.socket_on = optarg; break;
		case 'B': o.socket_off = optarg; break;
		case 'C': o.compare = true; break;
		case 'L':
			if (strcmp(optarg, "on") && strcmp(optarg, "off"))
				r = -EINVAL;
			o.label = optarg;
			break;
		case 'i': r = skv_parse_i64(optarg, 1, 1 << 24, &o.input_len); break;
		case 'o': r = skv_parse_i64(optarg, 1, 1 << 24, &o.output_len); break;
		case 'n': r = skv_parse_i64(optarg, 1, 10000000, &o.num_prompts); break;
		case 'r': r = skv_parse_f64(optarg, 1e-6, INFINITY, &o.rate); have_rate = true; break;
		case 'c': r = skv_parse_i64(optarg, 1, 1000000, &o.concurrency); break;
		case 'S': r = parse_sweep(optarg, &o); break;
		case 'j': o.json = optarg; break;
		case 'v': o.csv = optarg; break;
		case 'm': o.model = optarg; break;
		case 't': o.text = true; break;
		case 'f': o.text_file = optarg; break;
		case 'T': r = skv_parse_f64(optarg, 0, 100, &o.temperature); o.have_temperature = true; break;
		case 'e': r = skv_parse_i64(optarg, 0, INT64_MAX, &o.seed); break;
		case 'w': r = skv_parse_i64(optarg, 0, 1000, &o.warmup); break;
		case 'k': r = skv_parse_i64(optarg, 1, 4096, &o.clients); break;
		case 'p': r = skv_parse_i64(optarg, 1, 1024, &o.per_client); break;
		case 'O': r = skv_parse_i64(optarg, 0, UINT32_MAX, &o.timeout_ms); break;
		case 'h': usage(stdout); return 0;
		default: r = -EINVAL;
		}
		if (r < 0) {
			if (c != '?' && li >= 0)
				fprintf(stderr, "skv-bench serve: bad value for --%s: '%s'\n", lopts[li].name,
					optarg ? optarg : "");
			usage(stderr);
			return 2;
		}
	}
	const char *why = NULL;
	if (optind < argc)
		why = "unexpected arguments";
	else if (!o.input_len || !o.output_len || !o.num_prompts)
		why = "--input-len, --output-len and --num-prompts are required";
	else if (o.compare && (!o.socket_on || !o.socket_off))
		why = "--compare needs --socket-on and --socket-off";
	else if (!o.compare && (o.socket_on || o.socket_off))
		why = "--socket-on and --socket-off go with --compare";
	else if (!o.compare && !o.socket)
		why = "--socket is required";
	else if (o.compare && o.socket)
		why = "--compare uses --socket-on and --socket-off, not --socket";
	else if (o.compare && o.label)
		why = "--label names a single server's forward (on or off); --compare labels its two itself";
	else if (o.concurrency && (have_rate || o.n_sweep))
		why = "--concurrency is a closed loop: give it without --request-rate and --sweep";
	else if (have_rate && o.n_sweep)
		why = "give --request-rate or --sweep, not both";
	else if (o.text && !o.model)
		why = "--text needs --model DIR (its tokenizer cuts prompts to the exact length)";
	else if (o.text && o.input_len < 2)
		why = "--text needs --input-len of at least 2 (BOS and one token)";
	else if (o.text_file && !o.text)
		why = "--text-file goes with --text";
	if (why) {
		fprintf(stderr, "skv-bench serve: %s\n", why);
		usage(stderr);
		return 2;
	}

	struct prompts p = {0};
	if (prompts_make(&o, &p) < 0) {
		prompts_done(&p);
		return 1;
	}
	if (!o.n_sweep)
		o.sweep[o.n_sweep++] = o.rate;
	uint32_t per_rate = o.compare ? 2 : 1, n_res = o.n_sweep * per_rate;
	struct result *res = calloc(n_res, sizeof(*res));
	int rc = 0;
	if (!res) {
		prompts_done(&p);
		return 1;
	}
	for (uint32_t i = 0; i < o.n_sweep && rc == 0; i++)
		for (uint32_t k = 0; k < per_rate && rc == 0; k++) {
			const char *label = !o.compare ? (o.label ? o.label : "") : k == 0 ? "on" : "off";
			const char *sock = !o.compare ? o.socket : k == 0 ? o.socket_on : o.socket_off;
			char rs[32];
			rate_str(o.sweep[i], rs, sizeof(rs));
			if (o.concurrency)
				snprintf(rs, sizeof(rs), "%lld", (long long)o.concurrency);
			fprintf(stderr, "skv-bench serve: %s%s%s%lld prompts, %lld in / %lld out, %s %s ...\n",
				o.compare ? "swiftkv " : "", label, o.compare ? ": " : "", (long long)o.num_prompts,
				(long long)o.input_len, (long long)o.output_len, o.concurrency ? "concurrency" : "rate", rs);
			rc = run_load(&o, &p, sock, o.sweep[i], label, &res[i * per_rate + k]);
			if (rc < 0)
				fprintf(stderr, "skv-bench serve: the run against %s failed: %s\n", sock, strerror(-rc));
		}
	if (rc == 0) {
		for (uint32_t i = 0; i < o.n_sweep; i++)
			print_table(&o, &res[i * per_rate], per_rate);
		if (o.n_sweep > 1)
			print_sweep(res, n_res);
	}
	if (rc == 0 && o.json) {
		json_object *j = json_object_new_object();
		json_object_object_add(j, "benchmark", json_object_new_string("skv-bench serve"));
		json_object_object_add(j, "mode", json_object_new_string(o.n_sweep > 1 ? "sweep" : o.compare ? "compare" : "single"));
		settings_json(&o, j);
		if (o.n_sweep > 1) {
			json_object *runs = json_object_new_array();
			for (uint32_t i = 0; i < n_res; i++) {
				json_object *rj = json_object_new_object();
				result_json(&res[i], rj);
				json_object_array_add(runs, rj);
			}
			json_object_object_add(j, "runs", runs);
			if (o.compare) {
				json_object *ratios = json_object_new_array();
				for (uint32_t i = 0; i < o.n_sweep; i++) {
					json_object *rj = ratio_json(&res[2 * i], &res[2 * i + 1]);
					json_object_object_add(rj, "request_rate",
							       isinf(o.sweep[i]) ? NULL : json_object_new_double(o.sweep[i]));
					json_object_array_add(ratios, rj);
				}
				json_object_object_add(j, "ratios", ratios);
			}
		} else if (o.compare) {
			json_object *on = json_object_new_object(), *off = json_object_new_object();
			result_json(&res[0], on);
			result_json(&res[1], off);
			json_object_object_add(j, "on", on);
			json_object_object_add(j, "off", off);
			json_object_object_add(j, "ratio", ratio_json(&res[0], &res[1]));
		} else {
			result_json(&res[0], j);
		}
		if (json_object_to_file_ext(o.json, j, JSON_C_TO_STRING_PRETTY) < 0) {
			fprintf(stderr, "skv-bench serve: cannot write %s\n", o.json);
			rc = -EIO;
		}
		json_object_put(j);
	}
	if (rc == 0 && o.csv && write_csv(o.csv, res, n_res) < 0) {
		fprintf(stderr, "skv-bench serve: cannot write %s\n", o.csv);
		rc = -EIO;
	}
	uint32_t failed = 0;
	for (uint32_t i = 0; i < n_res; i++)
		failed += res[i].failed;
	free(res);
	prompts_done(&p);
	return rc < 0 ? 3 : failed ? 1 : 0;
}

const struct skv_bench_cmd skv_bench_serve = {
	.name = "serve",
	.summary = "load through a running skvd: throughput, TTFT, TPOT (--compare: swiftkv on vs off)",
	.main = serve_main,
};
