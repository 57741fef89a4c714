/* skv-run: the offline driver. Loads a model in-process, runs one request through the same
 * scheduler and engine the worker uses, and prints what it generated.
 *
 *   skv-run --model DIR [--swiftkv on|off] (--prompt TEXT [--chat] | --prompt-ids 5,17,3)
 *           [--max-tokens N] [--ignore-eos] [--temperature T] [--top-p P] [--top-k K] [--seed S]
 *           [--max-batch-tokens N] [--logits-out FILE] [--ids]
 *
 * --prompt is encoded with the model's tokenizer.json, BOS added by its post-processor and
 * special-token strings matched; with --chat it is one user message rendered through the model's
 * chat template (with the assistant header open) instead. The generated text is printed as it
 * comes (special tokens left out), or with --ids the generated ids on one line.
 * Sampling defaults to greedy (temperature 0). --logits-out writes float32 .npy [generated, vocab]:
 * row i holds the logits from which generated token i was chosen.
 */
#include <errno.h>
#include <getopt.h>
#include <stdio.h>
#include <string.h>

#include "chat.h"
#include "local.h"
#include "skv-base.h"
#include "skv-version.h"
#include "tokenizer.h"

struct run {
	const struct skv_model_config *cfg;
	int32_t *out;	/* generated ids */
	uint32_t n_out;
	float *logits;	/* [max_tokens, vocab] when --logits-out */
	enum skv_finish finish;
	bool done;
	const struct skv_tokenizer *tok; /* text output when set */
	struct skv_tokenizer_stream stream;
	char *text; /* [skv_tokenizer_stream_bound] */
};

static void on_event(void *userdata, const struct skv_sched_event *ev)
{
	struct run *r = userdata;
	if (ev->token >= 0) {
		if (r->logits)
			memcpy(r->logits + (size_t)r->n_out * r->cfg->vocab, ev->logits, r->cfg->vocab * sizeof(float));
		r->out[r->n_out++] = ev->token;
		if (r->tok) {
			ssize_t n = skv_tokenizer_stream_push(r->tok, &r->stream, ev->token, r->text,
							      skv_tokenizer_stream_bound(r->tok));
			if (n > 0) {
				fwrite(r->text, 1, (size_t)n, stdout);
				fflush(stdout);
			}
		}
	}
	if (ev->finish != SKV_FINISH_NONE) {
		r->finish = ev->finish;
		r->done = true;
	}
}

/* NumPy .npy v1.0: magic, header length, a Python dict literal padded to 64 bytes, then data. */
static int write_npy(const char *path, const float *data, uint32_t rows, uint32_t cols)
{
	char hdr[128];
	int n = snprintf(hdr, sizeof(hdr), "{'descr': '<f4', 'fortran_order': False, 'shape': (%u, %u), }", rows, cols);
	size_t total = SKV_ALIGN_UP(10 + (size_t)n + 1, 64);
	size_t hlen = total - 10;
	FILE *f = fopen(path, "wbe");
	if (!f)
		return -errno;
	fwrite("\x93NUMPY\x01\x00", 1, 8, f);
	uint8_t l[2] = {(uint8_t)(hlen & 0xff), (uint8_t)(hlen >> 8)};
	fwrite(l, 1, 2, f);
	fwrite(hdr, 1, (size_t)n, f);
	for (size_t i = (size_t)n; i < hlen - 1; i++)
		fputc(' ', f);
	fputc('\n', f);
	fwrite(data, sizeof(float), (size_t)rows * cols, f);
	if (fclose(f) != 0)
		return -errno;
	return 0;
}

static int parse_ids(const char *s, int32_t **ret, uint32_t *ret_n)
{
	size_t cap = 16, n = 0;
	int32_t *v = malloc(cap * sizeof(*v));
	const char *p = s;
	if (!v)
		return -ENOMEM;
	while (*p) {
		char *end;
		errno = 0;
		long x = strtol(p, &end, 10);
		if (end == p || errno || x < 0 || x > INT32_MAX || (*end && *end != ',')) {
			free(v);
			return -EINVAL;
		}
		if (n == cap) {
			int32_t *nv = realloc(v, 2 * cap * sizeof(*v));
			if (!nv) {
				free(v);
				return -ENOMEM;
			}
			v = nv;
			cap *= 2;
		}
		v[n++] = (int32_t)x;
		p = *end ? end + 1 : end;
	}
	if (n == 0) {
		free(v);
		return -EINVAL;
	}
	*ret = v;
	*ret_n = (uint32_t)n;
	return 0;
}

static void usage(FILE *f)
{
	fputs("usage: skv-run --model DIR (--prompt TEXT [--chat] | --prompt-ids 5,17,3) [options]\n"
	      "  --prompt TEXT           the prompt, encoded with the model's tokenizer (BOS added)\n"
	      "  --chat                  --prompt is a user message: render it with the chat template\n"
	      "  --swiftkv on|off        run a SwiftKV checkpoint as SwiftKV (default) or as its original model\n"
	      "  --max-tokens N          tokens to generate (default 32)\n"
	      "  --ignore-eos            do not stop at end-of-sequence ids\n"
	      "  --temperature T         0 = greedy (default)\n"
	      "  --top-p P, --top-k K    nucleus and top-k filtering\n"
	      "  --seed S                sampling seed (default 0)\n"
	      "  --max-batch-tokens N    tokens per step: a longer prompt is prefilled in chunks\n"
	      "  --max-context N         positions per sequence (default min(model, 8192))\n"
	      "  --backend cpu|cuda      (default cpu)\n"
	      "  --threads N             CPU threads (default: every core)\n"
	      "  --logits-out FILE       write the logits of every generated token (.npy, float32)\n"
	      "  --ids                   print the generated ids instead of text\n"
	      "  --version, --help       this program's version, this text\n",
	      f);
}

int main(int argc, char **argv)
{
	skv_reexec_passive_omp(argv);
	enum { O_SWIFTKV = 256, O_PIDS, O_MAXTOK, O_IGNEOS, O_TEMP, O_TOPP, O_TOPK, O_SEED, O_MBT, O_LOGITS, O_IDS,
	       O_CTX, O_BACKEND, O_THREADS, O_CHAT };
	static const struct option opts[] = {
		{"model", required_argument, NULL, 'm'},
		{"prompt", required_argument, NULL, 'p'},
		{"swiftkv", required_argument, NULL, O_SWIFTKV},
		{"prompt-ids", required_argument, NULL, O_PIDS},
		{"max-tokens", required_argument, NULL, O_MAXTOK},
		{"ignore-eos", no_argument, NULL, O_IGNEOS},
		{"temperature", required_argument, NULL, O_TEMP},
		{"top-p", required_argument, NULL, O_TOPP},
		{"top-k", required_argument, NULL, O_TOPK},
		{"seed", required_argument, NULL, O_SEED},
		{"max-batch-tokens", required_argument, NULL, O_MBT},
		{"max-context", required_argument, NULL, O_CTX},
		{"logits-out", required_argument, NULL, O_LOGITS},
		{"ids", no_argument, NULL, O_IDS},
		{"backend", required_argument, NULL, O_BACKEND},
		{"threads", required_argument, NULL, O_THREADS},
		{"chat", no_argument, NULL, O_CHAT},
		{"help", no_argument, NULL, 'h'},
		{"version", no_argument, NULL, 'V'},
		{0},
	};
	struct skv_local_params lp = {.swiftkv = -1};
	struct skv_seq_params sp = {.max_tokens = 32, .sampling = {.temperature = 0.0f, .top_p = 1.0f}};
	const char *prompt = NULL, *logits_out = NULL;
	_cleanup_free_ int32_t *ids = NULL;
	uint32_t n_ids = 0;
	bool print_ids = false, chat = false;
	_cleanup_tokenizer_ struct skv_tokenizer *tok = NULL;
	struct skv_err err = {0};
	int64_t v;
	double dv;
	int c, li = 0, r;

	while ((c = getopt_long(argc, argv, "h", opts, &li)) != -1) {
		r = 0;
		switch (c) {
		case 'm':
			lp.model_dir = optarg;
			break;
		case 'p':
			prompt = optarg;
			break;
		case O_SWIFTKV:
			if (!strcmp(optarg, "on"))
				lp.swiftkv = 1;
			else if (!strcmp(optarg, "off"))
				lp.swiftkv = 0;
			else
				r = -EINVAL;
			break;
		case O_PIDS:
			free(ids);
			ids = NULL;
			r = parse_ids(optarg, &ids, &n_ids);
			break;
		case O_MAXTOK:
			if ((r = skv_parse_i64(optarg, 1, 1 << 20, &v)) == 0)
				sp.max_tokens = (uint32_t)v;
			break;
		case O_IGNEOS:
			sp.ignore_eos = true;
			break;
		case O_TEMP:
			if ((r = skv_parse_f64(optarg, 0, SKV_MAX_TEMPERATURE, &dv)) == 0)
				sp.sampling.temperature = (float)dv;
			break;
		case O_TOPP:
			if ((r = skv_parse_f64(optarg, 1e-9, 1, &dv)) == 0)
				sp.sampling.top_p = (float)dv;
			break;
		case O_TOPK:
			if ((r = skv_parse_i64(optarg, 0, SKV_MAX_TOP_K, &v)) == 0)
				sp.sampling.top_k = (uint32_t)v;
			break;
		case O_SEED:
			if ((r = skv_parse_i64(optarg, 0, INT64_MAX, &v)) == 0)
				sp.sampling.seed = (uint64_t)v;
			break;
		case O_MBT:
			if ((r = skv_parse_i64(optarg, 1, 1 << 20, &v)) == 0)
				lp.max_batch_tokens = (uint32_t)v;
			break;
		case O_CTX:
			if ((r = skv_parse_i64(optarg, 1, INT32_MAX, &v)) == 0)
				lp.max_context = (uint32_t)v;
			break;
		case O_LOGITS:
			logits_out = optarg;
			break;
		case O_IDS:
			print_ids = true;
			break;
		case O_CHAT:
			chat = true;
			break;
		case O_BACKEND:
			lp.backend = optarg;
			break;
		case O_THREADS:
			if ((r = skv_parse_i64(optarg, 0, 4096, &v)) == 0)
				lp.threads = (unsigned)v;
			break;
		case 'h':
			usage(stdout);
			return 0;
		case 'V':
			skv_version_print("skv-run");
			return 0;
		default:
			usage(stderr);
			return 2;
		}
		if (r < 0) {
			fprintf(stderr, "skv-run: --%s: invalid value '%s'\n", opts[li].name, optarg);
			return 2;
		}
	}
	if (!lp.model_dir || optind != argc || (!prompt == !ids)) {
		fprintf(stderr, "skv-run: need --model and exactly one of --prompt or --prompt-ids\n");
		usage(stderr);
		return 2;
	}
	if (chat && !prompt) {
		fprintf(stderr, "skv-run: --chat needs --prompt\n");
		return 2;
	}
	if ((prompt || !print_ids) && skv_tokenizer_load(lp.model_dir, &tok, &err) < 0) {
		fprintf(stderr, "skv-run: %s%s\n", err.msg, prompt ? "" : " (--ids prints ids without it)");
		return 1;
	}
	if (prompt) {
		_cleanup_free_ char *rendered = NULL;
		const char *text = prompt;
		size_t len = strlen(prompt);
		unsigned flags = SKV_TOKENIZER_ADD_SPECIAL;
		if (chat) {
			_cleanup_chat_ struct skv_chat *ch = NULL;
			struct skv_chat_message m = {"user", 4, prompt, strlen(prompt)};
			ssize_t n;
			if (skv_chat_load(lp.model_dir, NULL, &ch, &err) < 0 ||
			    (n = skv_chat_render(ch, &m, 1, true, &rendered, &err)) < 0) {
				fprintf(stderr, "skv-run: %s\n", err.msg);
				return 1;
			}
			text = rendered;
			len = (size_t)n;
			flags = 0; /* the template wrote BOS */
		}
		ssize_t n = skv_tokenizer_encode_alloc(tok, text, len, flags, &ids, &err);
		if (n < 0) {
			fprintf(stderr, "skv-run: --prompt: %s\n", err.msg);
			return 1;
		}
		if (n == 0) {
			fprintf(stderr, "skv-run: --prompt encodes to no tokens\n");
			return 2;
		}
		n_ids = (uint32_t)n;
	}

	struct skv_local *l;
	lp.keep_logits = logits_out != NULL;
	r = skv_local_open(&lp, &l, &err);
	if (r < 0) {
		fprintf(stderr, "skv-run: %s\n", err.msg);
		return 1;
	}
	const struct skv_model_config *cfg = &l->hdr->config;
	struct run run = {.cfg = cfg};
	run.out = calloc(sp.max_tokens, sizeof(int32_t));
	if (logits_out)
		run.logits = malloc((size_t)sp.max_tokens * cfg->vocab * sizeof(float));
	if (!print_ids) {
		run.tok = tok;
		skv_tokenizer_stream_init(&run.stream, SKV_TOKENIZER_SKIP_SPECIAL);
		run.text = malloc(skv_tokenizer_stream_bound(tok));
	}
	if (!run.out || (logits_out && !run.logits) || (!print_ids && !run.text)) {
		fprintf(stderr, "skv-run: out of memory\n");
		skv_local_close(l);
		return 1;
	}
	r = skv_sched_add(l->sched, 1, ids, n_ids, &sp, &err);
	while (r >= 0 && !run.done)
		r = skv_sched_step(l->sched, l->engine, on_event, &run, &err);
	if (r < 0) {
		fprintf(stderr, "skv-run: %s\n", err.msg);
	} else {
		if (print_ids)
			for (uint32_t i = 0; i < run.n_out; i++)
				printf("%s%d", i ? " " : "", run.out[i]);
		else if (run.tok) {
			ssize_t n = skv_tokenizer_stream_flush(&run.stream, run.text, skv_tokenizer_stream_bound(tok));
			fwrite(run.text, 1, n > 0 ? (size_t)n : 0, stdout);
		}
		printf("\n");
		if (logits_out && (r = write_npy(logits_out, run.logits, run.n_out, cfg->vocab)) < 0)
			fprintf(stderr, "skv-run: %s: %s\n", logits_out, strerror(-r));
	}
	free(run.out);
	free(run.logits);
	free(run.text);
	skv_local_close(l);
	return r < 0 ? 1 : 0;
}
