/* skv-eval: how well a model (a distilled SwiftKV student, or any Llama) predicts held-out text,
 * and how close it is to a teacher (docs/distill.md).
 *
 *   skv-eval --model DIR [--swiftkv on|off] --data FILE [--teacher DIR] [--max-tokens N]
 *            [--seq-len N] [--json]
 *
 * The text is tokenized with the model's tokenizer (BOS in front) and cut into sequences of
 * --seq-len tokens (the tail shorter than a sequence is left out); at most --max-tokens tokens are
 * used. Each sequence is one forward of the CPU reference (train/), every token through every
 * layer. Reported: tokens (positions scored), ppl (exp of the mean next-token negative
 * log-likelihood, S - 1 predictions per sequence), and with --teacher the mean KL(p_teacher ||
 * p_model) at temperature 1 over every position and the share of positions where the two argmax
 * tokens agree.
 */
#include <errno.h>
#include <getopt.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "skv-version.h"
#include "tokenizer.h"
#include "train.h"

static void usage(FILE *f)
{
	fputs("usage: skv-eval --model DIR --data FILE [options]\n"
	      "  --model DIR            the model to evaluate (llama or llama_swiftkv)\n"
	      "  --swiftkv on|off       a llama_swiftkv model's SwiftKV path (default on) or its original\n"
	      "  --data FILE            held-out UTF-8 text\n"
	      "  --teacher DIR          also the mean KL to this model and the top-1 agreement with it\n"
	      "  --max-tokens N         use at most N tokens of the text (default all)\n"
	      "  --seq-len N            tokens per sequence (default min(1024, max_position_embeddings))\n"
	      "  --json                 one JSON object: tokens, ppl, kl_vs_teacher, top1_agreement\n"
	      "  --version, --help      this program's version, this text\n",
	      f);
}

struct evm {
	struct skv_checkpoint *ck;
	struct skv_tm_f32 *m;
	bool student;
};

static int open_model(const char *dir, int swiftkv, struct evm *e, struct skv_err *err)
{
	int r = skv_checkpoint_open(dir, &e->ck, err);
	if (r < 0)
		return r;
	if ((r = skv_tm_open_f32(e->ck, &e->m, err)) < 0)
		return r;
	if (swiftkv == 1 && !e->ck->config.swiftkv)
		return skv_err_set(err, -EINVAL, "--swiftkv on: %s is not a llama_swiftkv checkpoint", dir);
	e->student = e->ck->config.swiftkv && swiftkv != 0;
	return 0;
}

static void close_model(struct evm *e)
{
	skv_tm_free_f32(e->m);
	skv_checkpoint_free(e->ck);
}

/* log-softmax of row z[V] into lp (double) */
static void log_softmax(const float *z, double *lp, uint32_t V)
{
	double mx = -INFINITY, s = 0;
	for (uint32_t v = 0; v < V; v++)
		mx = fmax(mx, z[v]);
	for (uint32_t v = 0; v < V; v++)
		s += exp(z[v] - mx);
	double l = mx + log(s);
	for (uint32_t v = 0; v < V; v++)
		lp[v] = z[v] - l;
}

static uint32_t argmax(const float *z, uint32_t V)
{
	uint32_t b = 0;
	for (uint32_t v = 1; v < V; v++)
		if (z[v] > z[b])
			b = v;
	return b;
}

int main(int argc, char **argv)
{
	enum { O_MODEL = 256, O_SWIFTKV, O_DATA, O_TEACHER, O_MAX, O_SEQ, O_JSON, O_VERSION };
	static const struct option opts[] = {
		{"model", required_argument, NULL, O_MODEL},
		{"swiftkv", required_argument, NULL, O_SWIFTKV},
		{"data", required_argument, NULL, O_DATA},
		{"teacher", required_argument, NULL, O_TEACHER},
		{"max-tokens", required_argument, NULL, O_MAX},
		{"seq-len", required_argument, NULL, O_SEQ},
		{"json", no_argument, NULL, O_JSON},
		{"help", no_argument, NULL, 'h'},
		{"version", no_argument, NULL, O_VERSION},
		{0},
	};
	const char *model = NULL, *data = NULL, *teacher = NULL;
	int swiftkv = -1, c, li = 0;
	int64_t max_tokens = INT64_MAX, seq = 0;
	bool json = false;
	struct skv_err err = {0};

	while ((c = getopt_long(argc, argv, "h", opts, &li)) != -1) {
		int pr = 0;
		switch (c) {
		case O_MODEL:
			model = optarg;
			break;
		case O_SWIFTKV:
			if (!strcmp(optarg, "on"))
				swiftkv = 1;
			else if (!strcmp(optarg, "off"))
				swiftkv = 0;
			else
				pr = -EINVAL;
			break;
		case O_DATA:
			data = optarg;
			break;
		case O_TEACHER:
			teacher = optarg;
			break;
		case O_MAX:
			pr = skv_parse_i64(optarg, 2, INT64_MAX, &max_tokens);
			break;
		case O_SEQ:
			pr = skv_parse_i64(optarg, 2, 1 << 20, &seq);
			break;
		case O_JSON:
			json = true;
			break;
		case 'h':
			usage(stdout);
			return 0;
		case O_VERSION:
			skv_version_print("skv-eval");
			return 0;
		default:
			usage(stderr);
			return 2;
		}
		if (pr < 0) {
			fprintf(stderr, "skv-eval: --%s: invalid value '%s'\n", opts[li].name, optarg);
			return 2;
		}
	}
	if (!model || !data || optind != argc) {
		fprintf(stderr, "skv-eval: need --model and --data\n");
		usage(stderr);
		return 2;
	}

	struct evm mm = {0}, tm = {0};
	struct skv_tokenizer *tok = NULL;
	_cleanup_free_ char *text = NULL;
	_cleanup_free_ int32_t *ids = NULL;
	float *lm = NULL, *lt = NULL;
	double *pm = NULL, *pt = NULL;
	int rc = 1;
	size_t len;
	if (open_model(model, swiftkv, &mm, &err) < 0) {
		fprintf(stderr, "skv-eval: --model: %s\n", err.msg);
		goto done;
	}
	if (teacher && open_model(teacher, 0, &tm, &err) < 0) {
		fprintf(stderr, "skv-eval: --teacher: %s\n", err.msg);
		goto done;
	}
	const uint32_t V = mm.m->dm.V;
	if (teacher && tm.m->dm.V != V) {
		fprintf(stderr, "skv-eval: --teacher: vocab_size %u, the model's is %u\n", tm.m->dm.V, V);
		goto done;
	}
	if (!seq)
		seq = SKV_MIN(1024, mm.ck->config.max_position);
	if (seq > mm.ck->config.max_position) {
		fprintf(stderr, "skv-eval: --seq-len %lld: above max_position_embeddings %u\n", (long long)seq,
			mm.ck->config.max_position);
		goto done;
	}
	if (skv_tokenizer_load(model, &tok, &err) < 0 || skv_read_file(data, 1ull << 30, &text, &len, &err) < 0) {
		fprintf(stderr, "skv-eval: %s\n", err.msg);
		goto done;
	}
	ssize_t n = skv_tokenizer_encode_alloc(tok, text, len, SKV_TOKENIZER_ADD_SPECIAL | SKV_TOKENIZER_SPECIAL_AS_TEXT,
					       &ids, &err);
	if (n < 0) {
		fprintf(stderr, "skv-eval: --data %s: %s\n", data, err.msg);
		goto done;
	}
	for (ssize_t i = 0; i < n; i++)
		if ((uint32_t)ids[i] >= V) {
			fprintf(stderr, "skv-eval: --data %s: token id %d outside the model's vocab_size %u\n", data, ids[i],
				V);
			goto done;
		}
	const uint32_t S = (uint32_t)seq;
	size_t use = SKV_MIN((size_t)n, (size_t)max_tokens), n_seq = use / S;
	if (n_seq == 0) {
		fprintf(stderr, "skv-eval: --data %s: %zu tokens (after --max-tokens), shorter than one sequence of --seq-len %u\n",
			data, use, S);
		goto done;
	}
	lm = malloc(sizeof(float) * S * V);
	lt = teacher ? malloc(sizeof(float) * S * V) : NULL;
	pm = malloc(sizeof(double) * V);
	pt = malloc(sizeof(double) * V);
	if (!lm || (teacher && !lt) || !pm || !pt) {
		fprintf(stderr, "skv-eval: out of memory\n");
		goto done;
	}
	double nll = 0, kl = 0;
	size_t n_pred = 0, n_pos = 0, agree = 0;
	for (size_t sq = 0; sq < n_seq; sq++) {
		const int32_t *t = ids + sq * S;
		if (skv_tm_logits_f32(mm.m, t, 1, S, mm.student, lm) < 0 ||
		    (teacher && skv_tm_logits_f32(tm.m, t, 1, S, tm.student, lt) < 0)) {
			fprintf(stderr, "skv-eval: out of memory\n");
			goto done;
		}
		for (uint32_t i = 0; i < S; i++) {
			const float *zm = lm + (size_t)i * V;
			log_softmax(zm, pm, V);
			if (i + 1 < S)
				nll -= pm[t[i + 1]], n_pred++;
			if (!teacher)
				continue;
			const float *zt = lt + (size_t)i * V;
			log_softmax(zt, pt, V);
			for (uint32_t v = 0; v < V; v++)
				kl += exp(pt[v]) * (pt[v] - pm[v]);
			agree += argmax(zm, V) == argmax(zt, V);
			n_pos++;
		}
	}
	double ppl = exp(nll / (double)n_pred);
	if (json) {
		printf("{\"tokens\":%zu,\"sequences\":%zu,\"seq_len\":%u,\"swiftkv\":%s,\"ppl\":%.9g", n_seq * S, n_seq, S,
		       mm.student ? "true" : "false", ppl);
		if (teacher)
			printf(",\"kl_vs_teacher\":%.9g,\"top1_agreement\":%.9g}\n", kl / (double)n_pos,
			       (double)agree / (double)n_pos);
		else
			printf(",\"kl_vs_teacher\":null,\"top1_agreement\":null}\n");
	} else {
		printf("%s%s: %zu tokens in %zu sequences of %u: perplexity %.4f", model, mm.student ? " (SwiftKV)" : "",
		       n_seq * S, n_seq, S, ppl);
		if (teacher)
			printf(", KL to the teacher %.6f, top-1 agreement %.2f%%", kl / (double)n_pos,
			       100.0 * (double)agree / (double)n_pos);
		printf("\n");
	}
	rc = 0;
done:
	free(lm), free(lt), free(pm), free(pt);
	skv_tokenizer_free(tok);
	close_model(&mm);
	close_model(&tm);
	return rc;
}
