/* bench-engine.c: skv-bench prefill and decode, the engine's speed on one checkpoint, SwiftKV on
 * and off in the same run (two images of the same checkpoint, one after the other).
 *
 *   skv-bench prefill --model DIR [--lengths 2048,8192] [options]
 *   skv-bench decode  --model DIR [--batch 1,32] [--context 2048] [options]
 *
 * prefill: one sequence of each prompt length, the whole prompt in one step (max_batch_tokens =
 * the longest length); tok/s = length / the step's median wall time. decode: `batch` sequences
 * whose prompts of `context` tokens were prefilled first, then steps of one token per sequence;
 * ms/step is the median wall time of a step. A step's wall time is everything a caller waits
 * for: metadata upload, the forward, sampling, the sampled ids back on the host.
 * Next to each result: the floor, max(FLOPs / peak rate, bytes / bandwidth), from the model's
 * shape (docs/performance.md, "Method"); with --profile (default on backends that time ops) one more
 * step is run with every op timed by the backend (CUDA events) and printed per op and shape
 * class with its achieved TFLOP/s and TB/s and its own floor.
 * Runs on any backend; with the CPU backend and a tiny model it takes a second (CI).
 */
#include <getopt.h>
#include <stdio.h>
#include <string.h>
#include <time.h>

#include "bench.h"
#include "local.h"
#include "skv-base.h"

#define MAX_LIST 16
#define MAX_OPS 128

struct bopts {
	const char *model, *backend, *json, *label;
	int modes[2];
	uint32_t n_modes;
	uint32_t list[MAX_LIST], n_list; /* prompt lengths or batch sizes */
	uint32_t context, repeat, warmup, steps;
	unsigned threads;
	int profile; /* -1: where the backend can */
	bool no_graphs;
	double peak_tflops, peak_tbs;
};

struct result {
	int swiftkv;
	uint32_t n; /* prompt length or batch */
	double median_ms, min_ms, max_ms;
	double flops, bytes, floor_ms;
	struct skv_op_stat ops[MAX_OPS];
	uint32_t n_ops;
	double step_ms_profiled;
};

static int parse_list(const char *s, uint32_t *out, uint32_t *n)
{
	*n = 0;
	while (*s) {
		int64_t v;
		char buf[32];
		size_t len = strcspn(s, ",");
		if (len == 0 || len >= sizeof(buf) || *n == MAX_LIST)
			return -EINVAL;
		memcpy(buf, s, len);
		buf[len] = '\0';
		if (skv_parse_i64(buf, 1, 1 << 20, &v) < 0)
			return -EINVAL;
		out[(*n)++] = (uint32_t)v;
		s += len;
		if (*s == ',')
			s++;
	}
	return *n ? 0 : -EINVAL;
}

static int cmp_double(const void *a, const void *b)
{
	double x = *(const double *)a, y = *(const double *)b;
	return x < y ? -1 : x > y;
}

static double median(double *v, uint32_t n)
{
	qsort(v, n, sizeof(*v), cmp_double);
	return n % 2 ? v[n / 2] : 0.5 * (v[n / 2 - 1] + v[n / 2]);
}

/* ---- the model's arithmetic ---- */

struct shape {
	double H, I, nh, nkv, d, V, N, L, F, cache_layers;
	double full, later, kvproj, head; /* FLOPs per token of one full layer, one SwiftKV layer, the
					   * SwiftKV k|v projection, the head */
	double weight_bytes;		  /* what one forward must stream: the image less the embedding table */
};

static struct shape shape_of(const struct skv_local *l)
{
	const struct skv_image_header *h = l->hdr;
	const struct skv_model_config *c = &h->config;
	struct shape s;
	s.H = c->hidden;
	s.I = c->intermediate;
	s.nh = c->n_heads;
	s.nkv = c->n_kv_heads;
	s.d = c->head_dim;
	s.V = c->vocab;
	s.N = c->n_layers;
	s.L = h->kv_layers;
	s.F = (double)h->cache_layers - h->kv_layers;
	s.cache_layers = h->cache_layers;
	s.full = 2.0 * s.H * (s.nh + 2 * s.nkv) * s.d + 2.0 * s.nh * s.d * s.H + 2.0 * s.H * 2 * s.I + 2.0 * s.I * s.H;
	s.later = 2.0 * s.H * s.nh * s.d + 2.0 * s.nh * s.d * s.H + 2.0 * s.H * 2 * s.I + 2.0 * s.I * s.H;
	s.kvproj = 2.0 * s.H * s.F * 2 * s.nkv * s.d;
	s.head = 2.0 * s.H * s.V;
	s.weight_bytes = (double)h->data_size -
			 (c->tie_word_embeddings ? 0.0 : s.V * s.H * (double)skv_dtype_size((enum skv_dtype)h->dtype));
	return s;
}

static double attn_flops(const struct shape *s, double pairs) { return 4.0 * s->d * s->nh * pairs; }

/* ---- running steps ---- */

static double now_ms(void) { return (double)skv_now_ns() / 1e6; }

static int step(struct skv_local *l, struct skv_step_seq *ss, uint32_t n, struct skv_step_out *out, double *ret_ms)
{
	struct skv_err err = {0};
	double t0 = now_ms();
	int r = skv_engine_step(l->engine, ss, n, out, &err);
	if (r < 0) {
		fprintf(stderr, "skv-bench: step failed: %s\n", err.msg);
		return r;
	}
	*ret_ms = now_ms() - t0;
	return 0;
}

static bool can_profile(const struct bopts *o, const struct skv_local *l)
{
	return o->profile != 0 && l->be->ops->profile_start && l->be->ops->profile_stop;
}

static int profiled_step(struct skv_local *l, struct skv_step_seq *ss, uint32_t n, struct result *res)
{
	struct skv_step_out out;
	const struct skv_ops *ops = l->be->ops;
	if (ops->profile_start(l->be) < 0)
		return -EIO;
	int r = step(l, ss, n, &out, &res->step_ms_profiled);
	int r2 = ops->profile_stop(l->be, res->ops, MAX_OPS, &res->n_ops);
	return r < 0 ? r : r2;
}

static struct skv_local *open_mode(const struct bopts *o, int swiftkv, uint32_t mbt, uint32_t seqs, uint32_t ctx,
				   uint32_t blocks)
{
	struct skv_local_params p = {
		.model_dir = o->model,
		.swiftkv = swiftkv,
		.backend = o->backend,
		.threads = o->threads,
		.max_batch_tokens = mbt,
		.max_seqs = seqs,
		.block_size = 16,
		.max_context = ctx,
		.num_blocks = blocks,
		.no_graphs = o->no_graphs,
	};
	struct skv_local *l = NULL;
	struct skv_err err = {0};
	double t0 = now_ms();
	if (skv_local_open(&p, &l, &err) < 0) {
		fprintf(stderr, "skv-bench: %s (swiftkv %s): %s\n", o->model, swiftkv ? "on" : "off", err.msg);
		return NULL;
	}
	fprintf(stderr, "skv-bench: loaded %s, swiftkv %s, %s backend, %.2f GB of weights, in %.1f s\n", o->model,
		swiftkv ? "on" : "off", l->be->ops->name, (double)l->hdr->data_size / 1e9, (now_ms() - t0) / 1e3);
	return l;
}

static uint64_t rng(uint64_t *s)
{
	*s = *s * 6364136223846793005ull + 1442695040888963407ull;
	return *s >> 33;
}

/* ---- prefill ---- */

static int run_prefill(const struct bopts *o, int swiftkv, struct result *res)
{
	uint32_t maxlen = 0;
	for (uint32_t i = 0; i < o->n_list; i++)
		maxlen = SKV_MAX(maxlen, o->list[i]);
	const uint32_t nb = SKV_DIV_UP(maxlen, 16u);
	struct skv_local *l = open_mode(o, swiftkv, maxlen, 1, maxlen, nb);
	if (!l)
		return -EINVAL;
	const struct shape s = shape_of(l);
	int32_t *tokens = malloc(maxlen * sizeof(int32_t)), *bt = malloc(nb * sizeof(int32_t));
	double *t = calloc(o->repeat, sizeof(double));
	uint64_t seed = 42;
	int r = 0;
	if (!tokens || !bt || !t) {
		r = -ENOMEM;
		goto out;
	}
	for (uint32_t i = 0; i < maxlen; i++)
		tokens[i] = (int32_t)(rng(&seed) % l->hdr->config.vocab);
	for (uint32_t b = 0; b < nb; b++)
		bt[b] = (int32_t)b;
	for (uint32_t li = 0; li < o->n_list; li++) {
		const uint32_t P = o->list[li];
		struct result *x = &res[li];
		struct skv_step_seq ss = {
			.n_tokens = P,
			.start_pos = 0,
			.tokens = tokens,
			.block_table = bt,
			.n_blocks = SKV_DIV_UP(P, 16u),
			.want_logits = true,
			.sample = {.temperature = 0.0f, .top_p = 1.0f},
		};
		struct skv_step_out out;
		double ms;
		memset(x, 0, sizeof(*x));
		x->swiftkv = swiftkv;
		x->n = P;
		for (uint32_t w = 0; w < o->warmup; w++)
			if ((r = step(l, &ss, 1, &out, &ms)) < 0)
				goto out;
		for (uint32_t k = 0; k < o->repeat; k++)
			if ((r = step(l, &ss, 1, &out, &t[k])) < 0)
				goto out;
		x->median_ms = median(t, o->repeat);
		x->min_ms = t[0];
		x->max_ms = t[o->repeat - 1];
		const double pairs = (double)P * (P + 1) / 2.0;
		x->flops = (double)P * s.L * s.full + (double)P * s.kvproj + (s.N - s.L) * s.later + s.head +
			   s.L * attn_flops(&s, pairs) + (s.N - s.L) * attn_flops(&s, (double)P);
		x->bytes = s.weight_bytes + (double)P * s.cache_layers * 2 * s.nkv * s.d * 2;
		x->floor_ms = SKV_MAX(x->flops / (o->peak_tflops * 1e12), x->bytes / (o->peak_tbs * 1e12)) * 1e3;
		if (can_profile(o, l) && (li == o->n_list - 1 || o->profile > 0) && (r = profiled_step(l, &ss, 1, x)) < 0)
			goto out;
	}
out:
	free(tokens);
	free(bt);
	free(t);
	skv_local_close(l);
	return r;
}

/* ---- decode ---- */

static int run_decode(const struct bopts *o, int swiftkv, struct result *res)
{
	uint32_t maxb = 0;
	for (uint32_t i = 0; i < o->n_list; i++)
		maxb = SKV_MAX(maxb, o->list[i]);
	const uint32_t C = o->context, total = C + o->warmup + o->steps + 2;
	const uint32_t nbps = SKV_DIV_UP(total, 16u); /* blocks per sequence */
	const uint32_t mbt = SKV_MAX(SKV_MIN(8192u, SKV_MAX(C, maxb)), maxb);
	struct skv_local *l = open_mode(o, swiftkv, mbt, maxb, total, maxb * nbps);
	if (!l)
		return -EINVAL;
	const struct shape s = shape_of(l);
	const uint32_t V = l->hdr->config.vocab;
	int32_t *tokens = malloc((size_t)maxb * total * sizeof(int32_t)), *bt = malloc((size_t)maxb * nbps * 4);
	struct skv_step_seq *ss = calloc(maxb, sizeof(*ss));
	uint32_t *len = calloc(maxb, sizeof(uint32_t));
	double *t = calloc(o->steps, sizeof(double));
	uint64_t seed = 7;
	int r = 0;
	if (!tokens || !bt || !ss || !len || !t) {
		r = -ENOMEM;
		goto out;
	}
	for (size_t i = 0; i < (size_t)maxb * total; i++)
		tokens[i] = (int32_t)(rng(&seed) % V);
	for (size_t b = 0; b < (size_t)maxb * nbps; b++)
		bt[b] = (int32_t)b;
	for (uint32_t li = 0; li < o->n_list; li++) {
		const uint32_t B = o->list[li];
		struct result *x = &res[li];
		struct skv_step_out out;
		double ms;
		memset(x, 0, sizeof(*x));
		x->swiftkv = swiftkv;
		x->n = B;
		/* prefill every sequence's prompt (several per step), which leaves one sampled token each */
		for (uint32_t q = 0; q < B; q++)
			len[q] = 0;
		for (uint32_t q0 = 0; q0 < B;) {
			uint32_t n = 0, budget = mbt;
			while (q0 + n < B && budget > 0) {
				const uint32_t q = q0 + n, c = SKV_MIN(C - len[q], budget);
				ss[n] = (struct skv_step_seq){
					.n_tokens = c,
					.start_pos = len[q],
					.tokens = tokens + (size_t)q * total + len[q],
					.block_table = bt + (size_t)q * nbps,
					.n_blocks = nbps,
					.want_logits = len[q] + c == C,
					.sample = {.temperature = 0.0f, .top_p = 1.0f},
				};
				budget -= c;
				n++;
				if (len[q] + c < C)
					break; /* this sequence continues in the next step */
			}
			if ((r = step(l, ss, n, &out, &ms)) < 0)
				goto out;
			uint32_t row = 0;
			for (uint32_t i = 0; i < n; i++) {
				const uint32_t q = q0 + i;
				len[q] += ss[i].n_tokens;
				if (ss[i].want_logits)
					tokens[(size_t)q * total + len[q]] = out.ids[row++];
			}
			q0 += len[q0 + n - 1] == C ? n : n - 1;
		}
		/* decode steps: one token per sequence */
		for (uint32_t k = 0; k < o->warmup + o->steps + (can_profile(o, l) ? 1 : 0); k++) {
			for (uint32_t q = 0; q < B; q++)
				ss[q] = (struct skv_step_seq){
					.n_tokens = 1,
					.start_pos = len[q],
					.tokens = tokens + (size_t)q * total + len[q],
					.block_table = bt + (size_t)q * nbps,
					.n_blocks = nbps,
					.want_logits = true,
					.sample = {.temperature = 0.0f, .top_p = 1.0f},
				};
			if (k == o->warmup + o->steps)
				r = profiled_step(l, ss, B, x);
			else
				r = step(l, ss, B, &out, k >= o->warmup ? &t[k - o->warmup] : &ms);
			if (r < 0)
				goto out;
			for (uint32_t q = 0; q < B; q++) {
				len[q]++;
				if (k != o->warmup + o->steps)
					tokens[(size_t)q * total + len[q]] = out.ids[q];
			}
		}
		x->median_ms = median(t, o->steps);
		x->min_ms = t[0];
		x->max_ms = t[o->steps - 1];
		const double ctx = C + o->warmup + o->steps / 2.0; /* the mid-run context */
		x->flops = B * ((s.L * s.full + s.kvproj + (s.N - s.L) * s.later + s.head) +
				s.N * attn_flops(&s, ctx));
		x->bytes = s.weight_bytes + (double)B * ctx * s.cache_layers * 2 * s.nkv * s.d * 2;
		x->floor_ms = SKV_MAX(x->flops / (o->peak_tflops * 1e12), x->bytes / (o->peak_tbs * 1e12)) * 1e3;
	}
out:
	free(tokens);
	free(bt);
	free(ss);
	free(len);
	free(t);
	skv_local_close(l);
	return r;
}

/* ---- output ---- */

static void print_ops(const struct bopts *o, const char *what, const struct result *x)
{
	if (!x->n_ops)
		return;
	double total = 0.0;
	for (uint32_t i = 0; i < x->n_ops; i++)
		total += x->ops[i].ms;
	printf("\nper op, %s, swiftkv %s (one step timed op by op with CUDA events: %.2f ms of ops, %.2f ms "
	       "wall)\n",
	       what, x->swiftkv ? "on" : "off", total, x->step_ms_profiled);
	printf("  %-34s %6s %9s %6s %8s %7s %9s %7s\n", "op", "calls", "ms", "%", "TFLOP/s", "TB/s", "floor ms",
	       "of floor");
	for (uint32_t i = 0; i < x->n_ops; i++) {
		const struct skv_op_stat *s = &x->ops[i];
		const double fl = SKV_MAX(s->flops / (o->peak_tflops * 1e12), s->bytes / (o->peak_tbs * 1e12)) * 1e3;
		printf("  %-34s %6llu %9.3f %5.1f%% %8.1f %7.2f %9.3f %6.0f%%\n", s->name, (unsigned long long)s->calls,
		       s->ms, 100.0 * s->ms / total, s->ms > 0 ? s->flops / (s->ms * 1e9) : 0.0,
		       s->ms > 0 ? s->bytes / (s->ms * 1e9) : 0.0, fl, s->ms > 0 ? 100.0 * fl / s->ms : 0.0);
	}
}

static void json_results(FILE *f, const struct bopts *o, const char *kind, const struct result *res, uint32_t n)
{
	char date[32];
	time_t now = time(NULL);
	struct tm tm;
	gmtime_r(&now, &tm);
	strftime(date, sizeof(date), "%Y-%m-%dT%H:%M:%SZ", &tm);
	fprintf(f, "{\n  \"bench\": \"%s\",\n  \"date\": \"%s\",\n  \"model\": \"%s\",\n  \"backend\": \"%s\",\n", kind,
		date, o->model, o->backend ? o->backend : "cpu");
	fprintf(f, "  \"label\": \"%s\",\n  \"peak_tflops\": %.1f,\n  \"peak_tbs\": %.3f,\n", o->label ? o->label : "",
		o->peak_tflops, o->peak_tbs);
	if (!strcmp(kind, "decode"))
		fprintf(f, "  \"context\": %u,\n  \"steps\": %u,\n", o->context, o->steps);
	fprintf(f, "  \"warmup\": %u,\n  \"graphs\": %s,\n  \"results\": [\n", o->warmup, o->no_graphs ? "false" : "true");
	for (uint32_t i = 0; i < n; i++) {
		const struct result *x = &res[i];
		const bool pf = !strcmp(kind, "prefill");
		fprintf(f,
			"    {\"swiftkv\": %s, \"%s\": %u, \"median_ms\": %.4f, \"min_ms\": %.4f, \"max_ms\": %.4f, "
			"\"tok_s\": %.1f, \"flops\": %.6g, \"bytes\": %.6g, \"floor_ms\": %.4f,\n     \"ops\": [",
			x->swiftkv ? "true" : "false", pf ? "length" : "batch", x->n, x->median_ms, x->min_ms, x->max_ms,
			x->n * 1e3 / x->median_ms, x->flops, x->bytes, x->floor_ms);
		for (uint32_t k = 0; k < x->n_ops; k++)
			fprintf(f, "%s\n       {\"name\": \"%s\", \"calls\": %llu, \"ms\": %.5f, \"flops\": %.6g, \"bytes\": %.6g}",
				k ? "," : "", x->ops[k].name, (unsigned long long)x->ops[k].calls, x->ops[k].ms,
				x->ops[k].flops, x->ops[k].bytes);
		fprintf(f, "]}%s\n", i + 1 < n ? "," : "");
	}
	fprintf(f, "  ]\n}\n");
}

static void usage(FILE *f, const char *cmd)
{
	fprintf(f,
		"usage: skv-bench %s --model DIR [options]\n"
		"  %s\n"
		"  --swiftkv on|off|both  modes to run (default: both on a llama_swiftkv checkpoint, else off)\n"
		"  --backend cpu|cuda     (default cuda when this build has it, else cpu)\n"
		"  --warmup N             untimed steps first (default 2)\n"
		"  %s\n"
		"  --profile on|off       time every op of one more step (default: on where the backend can)\n"
		"  --no-graphs            never replay graphs\n"
		"  --peak-tflops F        the matrix rate floors assume (default 800: cuBLAS bf16 8192^3 on the H100)\n"
		"  --peak-tbs F           the bandwidth floors assume (default 2.98, the measured copy rate)\n"
		"  --threads N            CPU backend threads (default: every core)\n"
		"  --label TEXT           recorded in the JSON (the device, say)\n"
		"  --json FILE            write the results as JSON\n",
		cmd,
		!strcmp(cmd, "prefill") ? "--lengths L1,L2,...     prompt lengths (default 2048,8192)"
					: "--batch B1,B2,...       batch sizes (default 1,32)\n"
					  "  --context C            prompt tokens per sequence (default 2048)",
		!strcmp(cmd, "prefill") ? "--repeat N             timed steps per length (default 5)"
					: "--steps N              timed decode steps (default 20)");
}

static int bench_main(int argc, char **argv, bool prefill)
{
	enum { O_SWIFTKV = 256, O_BACKEND, O_WARMUP, O_REPEAT, O_PROFILE, O_NOGRAPHS, O_PEAKF, O_PEAKB, O_THREADS,
	       O_LABEL, O_JSON, O_CONTEXT };
	static const struct option opts[] = {
		{"model", required_argument, NULL, 'm'},    {"lengths", required_argument, NULL, 'l'},
		{"batch", required_argument, NULL, 'b'},    {"context", required_argument, NULL, O_CONTEXT},
		{"swiftkv", required_argument, NULL, O_SWIFTKV}, {"backend", required_argument, NULL, O_BACKEND},
		{"warmup", required_argument, NULL, O_WARMUP}, {"repeat", required_argument, NULL, O_REPEAT},
		{"steps", required_argument, NULL, O_REPEAT}, {"profile", required_argument, NULL, O_PROFILE},
		{"no-graphs", no_argument, NULL, O_NOGRAPHS}, {"peak-tflops", required_argument, NULL, O_PEAKF},
		{"peak-tbs", required_argument, NULL, O_PEAKB}, {"threads", required_argument, NULL, O_THREADS},
		{"label", required_argument, NULL, O_LABEL}, {"json", required_argument, NULL, O_JSON},
		{"help", no_argument, NULL, 'h'},	    {0},
	};
	const char *cmd = prefill ? "prefill" : "decode";
	struct bopts o = {
		.backend = skv_backend_cuda_available() ? "cuda" : "cpu",
		.warmup = 2,
		.repeat = prefill ? 5 : 20,
		.context = 2048,
		.profile = -1,
		.peak_tflops = 800.0,
		.peak_tbs = 2.98,
	};
	const char *modes = NULL;
	int64_t v;
	double f;
	int c;

	if (prefill) {
		o.list[0] = 2048;
		o.list[1] = 8192;
	} else {
		o.list[0] = 1;
		o.list[1] = 32;
	}
	o.n_list = 2;
	optind = 1;
	while ((c = getopt_long(argc, argv, "m:l:b:h", opts, NULL)) != -1) {
		switch (c) {
		case 'm':
			o.model = optarg;
			break;
		case 'l':
		case 'b':
			if (parse_list(optarg, o.list, &o.n_list) < 0) {
				fprintf(stderr, "skv-bench %s: bad list '%s'\n", cmd, optarg);
				return 2;
			}
			break;
		case O_CONTEXT:
			if (skv_parse_i64(optarg, 1, 1 << 20, &v) < 0)
				goto bad;
			o.context = (uint32_t)v;
			break;
		case O_SWIFTKV:
			modes = optarg;
			break;
		case O_BACKEND:
			o.backend = optarg;
			break;
		case O_WARMUP:
			if (skv_parse_i64(optarg, 0, 1000, &v) < 0)
				goto bad;
			o.warmup = (uint32_t)v;
			break;
		case O_REPEAT:
			if (skv_parse_i64(optarg, 1, 100000, &v) < 0)
				goto bad;
			o.repeat = (uint32_t)v;
			break;
		case O_PROFILE:
			o.profile = !strcmp(optarg, "on") ? 1 : !strcmp(optarg, "off") ? 0 : -2;
			if (o.profile == -2)
				goto bad;
			break;
		case O_NOGRAPHS:
			o.no_graphs = true;
			break;
		case O_PEAKF:
		case O_PEAKB:
			if (skv_parse_f64(optarg, 1e-6, 1e6, &f) < 0)
				goto bad;
			*(c == O_PEAKF ? &o.peak_tflops : &o.peak_tbs) = f;
			break;
		case O_THREADS:
			if (skv_parse_i64(optarg, 0, 4096, &v) < 0)
				goto bad;
			o.threads = (unsigned)v;
			break;
		case O_LABEL:
			o.label = optarg;
			break;
		case O_JSON:
			o.json = optarg;
			break;
		case 'h':
			usage(stdout, cmd);
			return 0;
		default:
			usage(stderr, cmd);
			return 2;
		}
	}
	if (!o.model || optind != argc) {
		usage(stderr, cmd);
		return 2;
	}
	o.steps = o.repeat;

	/* which modes: the checkpoint says whether SwiftKV exists */
	struct skv_checkpoint *ck = NULL;
	struct skv_err err = {0};
	if (skv_checkpoint_open(o.model, &ck, &err) < 0) {
		fprintf(stderr, "skv-bench %s: %s\n", cmd, err.msg);
		return 1;
	}
	const bool has_skv = ck->config.swiftkv != 0;
	skv_checkpoint_free(ck);
	if (!modes || !strcmp(modes, "both")) {
		o.modes[o.n_modes++] = 0;
		if (has_skv)
			o.modes[o.n_modes++] = 1;
	} else if (!strcmp(modes, "on") || !strcmp(modes, "off")) {
		o.modes[o.n_modes++] = !strcmp(modes, "on");
	} else {
		fprintf(stderr, "skv-bench %s: --swiftkv takes on, off or both\n", cmd);
		return 2;
	}

	struct result *res = calloc((size_t)o.n_modes * o.n_list, sizeof(*res));
	if (!res)
		return 1;
	for (uint32_t m = 0; m < o.n_modes; m++) {
		int r = prefill ? run_prefill(&o, o.modes[m], res + m * o.n_list)
				: run_decode(&o, o.modes[m], res + m * o.n_list);
		if (r < 0) {
			free(res);
			return 1;
		}
	}

	/* the table */
	if (prefill)
		printf("\nprefill: %s, %s backend, one prompt per step, median of %u (after %u warm-up)\n", o.model,
		       o.backend, o.repeat, o.warmup);
	else
		printf("\ndecode: %s, %s backend, %u-token prompts, median of %u steps (after %u warm-up)%s\n", o.model,
		       o.backend, o.context, o.steps, o.warmup, o.no_graphs ? ", no graphs" : "");
	printf("  %-8s %8s %11s %12s %10s %12s %9s\n", "swiftkv", prefill ? "length" : "batch", "ms/step",
	       prefill ? "tok/s" : "tok/s", "floor ms", "floor tok/s", "of floor");
	for (uint32_t i = 0; i < o.n_modes * o.n_list; i++) {
		const struct result *x = &res[i];
		printf("  %-8s %8u %11.3f %12.0f %10.3f %12.0f %8.0f%%\n", x->swiftkv ? "on" : "off", x->n, x->median_ms,
		       x->n * 1e3 / x->median_ms, x->floor_ms, x->n * 1e3 / x->floor_ms, 100.0 * x->floor_ms / x->median_ms);
	}
	if (o.n_modes == 2) {
		printf("  SwiftKV on vs off:");
		for (uint32_t i = 0; i < o.n_list; i++)
			printf(" %u: %.2fx", o.list[i], res[i].median_ms / res[o.n_list + i].median_ms);
		printf("\n");
	}
	for (uint32_t i = 0; i < o.n_modes * o.n_list; i++) {
		char what[64];
		snprintf(what, sizeof(what), prefill ? "prefill %u tokens" : "decode batch %u", res[i].n);
		print_ops(&o, what, &res[i]);
	}
	if (o.json) {
		FILE *jf = fopen(o.json, "we");
		if (!jf) {
			fprintf(stderr, "skv-bench %s: cannot write %s\n", cmd, o.json);
			free(res);
			return 1;
		}
		json_results(jf, &o, cmd, res, o.n_modes * o.n_list);
		fclose(jf);
	}
	free(res);
	return 0;
bad:
	fprintf(stderr, "skv-bench %s: bad value '%s'\n", cmd, optarg);
	return 2;
}

static int prefill_main(int argc, char **argv) { return bench_main(argc, argv, true); }
static int decode_main(int argc, char **argv) { return bench_main(argc, argv, false); }

const struct skv_bench_cmd skv_bench_prefill = {
	.name = "prefill",
	.summary = "prefill speed of one prompt per step, SwiftKV on and off (tok/s, per-op timing)",
	.main = prefill_main,
};
const struct skv_bench_cmd skv_bench_decode = {
	.name = "decode",
	.summary = "decode speed of a batch of sequences, SwiftKV on and off (ms/step, per-op timing)",
	.main = decode_main,
};
