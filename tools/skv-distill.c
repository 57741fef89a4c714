/* skv-distill: makes a SwiftKV model of a plain Llama checkpoint by knowledge-preserving
 * distillation (docs/distill.md, docs/swiftkv.md section 5).
 *
 *   skv-distill --teacher DIR --out DIR --swiftkv-layers L [--group G] --data FILE [--data FILE...]
 *               [--steps N] [--seq-len N] [--batch-tokens N] [--lr X] [--temperature T] [--seed S]
 *               [--backend cpu] [--save-every N] [--resume] [--continue] [--force]
 *               [--prompts FILE --self-generate N]
 *
 * The data (plain UTF-8 text, or chat conversations in FILE.jsonl scored on the assistant
 * tokens: train.h, skv_tm_data_read) is tokenized with the teacher's tokenizer, concatenated
 * and cut into sequences of --seq-len tokens, which a seeded shuffle orders; each step takes
 * --batch-tokens / --seq-len of them. By default one pass over the data. --steps 0
 * writes the initialised, undistilled student. The output is a llama_swiftkv checkpoint
 * (train.h: skv_tm_write_student) plus OUT/distill-log.jsonl, one JSON object per step.
 *
 * Every --save-every steps the whole training state (parameters, AdamW moments, the step, and
 * what the run was started with) goes to OUT/distill-state.bin, written to a temporary file,
 * synced and renamed, so a run killed at any moment leaves the last complete state. --resume
 * continues from it; with the same options, data and thread count the result is bit for bit the
 * one of an uninterrupted run (every step is a pure function of the state and the step number).
 */
#include <errno.h>
#include <fcntl.h>
#include <getopt.h>
#include <json-c/json.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "chat.h"
#include "local.h"
#include "skv-version.h"
#include "tokenizer.h"
#include "train.h"

#define MAX_DATA_FILES 256

static void usage(FILE *f)
{
	fputs("usage: skv-distill --teacher DIR --out DIR --swiftkv-layers L --data FILE [options]\n"
	      "  --teacher DIR          the plain Llama checkpoint to distil (teacher and student's start)\n"
	      "  --out DIR              where the llama_swiftkv checkpoint goes (created)\n"
	      "  --swiftkv-layers L     num_key_value_layers: layers every prompt token runs (1..N-1)\n"
	      "  --group G              key_value_group_size (AcrossKV), default 1; G must divide N - L\n"
	      "  --data FILE            UTF-8 text to distil on, or FILE.jsonl of {\"messages\": [...]} chats\n"
	      "                         (loss on the assistant tokens); repeat for more files\n"
	      "  --steps N              optimizer steps (default: one pass over the data; 0 writes the\n"
	      "                         initialised student)\n"
	      "  --seq-len N            tokens per sequence (default min(1024, max_position_embeddings))\n"
	      "  --batch-tokens N       tokens per step, a multiple of --seq-len (default 8 sequences)\n"
	      "  --lr X                 peak learning rate (default 2e-4; 5% warm-up, linear decay)\n"
	      "  --temperature T        softmax temperature of the KL loss (default 2)\n"
	      "  --seed S               shuffle seed (default 0)\n"
	      "  --backend cpu          the only backend so far\n"
	      "  --save-every N         save the training state every N steps (default 100; 0: never)\n"
	      "  --resume               continue the run whose state is in OUT\n"
	      "  --prompts FILE         with --self-generate N: one prompt a line; the teacher answers each\n"
	      "                         (greedy, at most N tokens) and the conversations are distilled on\n"
	      "                         (OUT/self-generated.jsonl), after any --data\n"
	      "  --continue             the teacher is a llama_swiftkv checkpoint: distil its SwiftKV tensors\n"
	      "                         further (its original path is the teacher; L and G are its own)\n"
	      "  --force                write into an existing OUT\n"
	      "  --version, --help      this program's version, this text\n",
	      f);
}

static uint64_t splitmix64(uint64_t *s)
{
	uint64_t x = (*s += 0x9e3779b97f4a7c15ull);
	x = (x ^ (x >> 30)) * 0xbf58476d1ce4e5b9ull;
	x = (x ^ (x >> 27)) * 0x94d049bb133111ebull;
	return x ^ (x >> 31);
}

/* The training state file: this header, then param, AdamW's m and v (float, n_param each). */
#define STATE_MAGIC "SKVDST1"
struct state_hdr {
	char magic[8];
	uint32_t L, G, S, B;
	uint64_t steps, seed, done, n_param, n_tok, data_hash;
	double lr, temp;
};

/* FNV-1a over n bytes, continuing from h (start: 1469598103934665603). */
static uint64_t hash_bytes(uint64_t h, const void *p, size_t n)
{
	const uint8_t *b = p;
	for (size_t i = 0; i < n; i++)
		h = (h ^ b[i]) * 1099511628211ull;
	return h;
}

static int write_all(int fd, const void *p, size_t n)
{
	const char *c = p;
	while (n) {
		ssize_t k = write(fd, c, n);
		if (k < 0 && errno == EINTR)
			continue;
		if (k <= 0)
			return -errno;
		c += k, n -= (size_t)k;
	}
	return 0;
}

/* DIR/distill-state.bin, replaced atomically (temporary file, fsync, rename). */
static int save_state(const char *dir, const struct state_hdr *h, const float *param, const float *m, const float *v,
		      struct skv_err *err)
{
	char tmp[4096], path[4096];
	snprintf(tmp, sizeof(tmp), "%s/distill-state.bin.tmp", dir);
	snprintf(path, sizeof(path), "%s/distill-state.bin", dir);
	_cleanup_close_ int fd = open(tmp, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
	int r;
	if (fd < 0)
		return skv_err_set(err, -errno, "%s: %s", tmp, strerror(errno));
	size_t n = h->n_param * sizeof(float);
	if ((r = write_all(fd, h, sizeof(*h))) < 0 || (r = write_all(fd, param, n)) < 0 || (r = write_all(fd, m, n)) < 0 ||
	    (r = write_all(fd, v, n)) < 0 || (fsync(fd) < 0 && (r = -errno)))
		return skv_err_set(err, r, "%s: %s", tmp, strerror(-r));
	if (rename(tmp, path) < 0)
		return skv_err_set(err, -errno, "%s: %s", path, strerror(errno));
	return 0;
}

/* Reads DIR/distill-state.bin into *h and the three vectors, after checking that it belongs to
 * the run `want` describes (every field but done). */
static int load_state(const char *dir, const struct state_hdr *want, struct state_hdr *h, float *param, float *m,
		      float *v, struct skv_err *err)
{
	char path[4096];
	snprintf(path, sizeof(path), "%s/distill-state.bin", dir);
	_cleanup_close_ int fd = open(path, O_RDONLY | O_CLOEXEC);
	if (fd < 0)
		return skv_err_set(err, -errno, "--resume: %s: %s", path, strerror(errno));
	size_t n = want->n_param * sizeof(float);
	struct stat st;
	if (fstat(fd, &st) < 0 || (size_t)st.st_size != sizeof(*h) + 3 * n || read(fd, h, sizeof(*h)) != sizeof(*h) ||
	    memcmp(h->magic, STATE_MAGIC, 8) != 0)
		return skv_err_set(err, -EINVAL, "--resume: %s: not a training state of this model (%zu bytes expected)",
				   path, sizeof(*h) + 3 * n);
#define SAME(f, opt)                                                                                           \
	if (h->f != want->f)                                                                                   \
		return skv_err_set(err, -EINVAL, "--resume: %s was saved with %s %g, this run has %g", path, opt, \
				   (double)h->f, (double)want->f)
	SAME(L, "--swiftkv-layers");
	SAME(G, "--group");
	SAME(S, "--seq-len");
	SAME(B, "--batch-tokens / --seq-len");
	SAME(steps, "--steps");
	SAME(seed, "--seed");
	SAME(lr, "--lr");
	SAME(temp, "--temperature");
	SAME(n_param, "trainable parameters");
	SAME(n_tok, "data tokens");
#undef SAME
	if (h->data_hash != want->data_hash)
		return skv_err_set(err, -EINVAL, "--resume: %s was saved with other --data (same length, other tokens)", path);
	if (h->done > h->steps)
		return skv_err_set(err, -EINVAL, "--resume: %s: step %llu beyond --steps %llu", path,
				   (unsigned long long)h->done, (unsigned long long)h->steps);
	if (read(fd, param, n) != (ssize_t)n || read(fd, m, n) != (ssize_t)n || read(fd, v, n) != (ssize_t)n)
		return skv_err_set(err, -EIO, "--resume: %s: short read", path);
	return 0;
}

/* Keeps the first `lines` lines of the log (a resumed run rewrites what came after its state). */
static FILE *open_log(const char *dir, uint64_t lines, struct skv_err *err)
{
	char path[4096];
	snprintf(path, sizeof(path), "%s/distill-log.jsonl", dir);
	if (!lines) {
		FILE *f = fopen(path, "w");
		if (!f)
			skv_err_set(err, -errno, "%s: %s", path, strerror(errno));
		return f;
	}
	FILE *f = fopen(path, "r+");
	if (!f) {
		skv_err_set(err, -errno, "%s: %s", path, strerror(errno));
		return NULL;
	}
	int c;
	uint64_t seen = 0;
	while (seen < lines && (c = fgetc(f)) != EOF)
		seen += c == '\n';
	long at = ftell(f);
	if (seen < lines || at < 0 || ftruncate(fileno(f), at) < 0 || fseek(f, at, SEEK_SET) < 0) {
		skv_err_set(err, -EINVAL, "%s: fewer than the %llu lines of the saved state", path, (unsigned long long)lines);
		fclose(f);
		return NULL;
	}
	return f;
}

/* --self-generate: the teacher (the serving engine, greedy) answers each prompt line of FILE;
 * each prompt and its answer become one conversation of OUT/self-generated.jsonl. */
struct gen {
	int32_t *out; /* [n_prompts, max_tokens] */
	uint32_t *n_out;
	bool *done;
	uint32_t max_tokens;
};

static void on_gen(void *userdata, const struct skv_sched_event *ev)
{
	struct gen *g = userdata;
	if (ev->token >= 0 && g->n_out[ev->id] < g->max_tokens)
		g->out[(size_t)ev->id * g->max_tokens + g->n_out[ev->id]++] = ev->token;
	if (ev->finish != SKV_FINISH_NONE)
		g->done[ev->id] = true;
}

static int self_generate(const char *teacher, const struct skv_tokenizer *tok, const char *prompts, uint32_t max_tokens,
			 const char *path, size_t *ret_n, struct skv_err *err)
{
	_cleanup_free_ char *text = NULL;
	size_t len;
	int r = skv_read_file(prompts, 64u << 20, &text, &len, err);
	if (r < 0)
		return skv_err_prefix(err, r, "--prompts: ");
	/* the prompt lines (blank ones skipped) */
	size_t n = 0, cap = 0;
	_cleanup_free_ char **line = NULL;
	for (char *p = text, *end; p < text + len; p = end + 1) {
		end = memchr(p, '\n', (size_t)(text + len - p));
		if (!end)
			end = text + len;
		*end = 0;
		if (end > p && end[-1] == '\r')
			end[-1] = 0;
		if (strspn(p, " \t") == strlen(p))
			continue;
		if (n == cap) {
			char **q = realloc(line, (cap = cap ? 2 * cap : 64) * sizeof(*q));
			if (!q)
				return skv_err_set(err, -ENOMEM, "out of memory");
			line = q;
		}
		line[n++] = p;
	}
	if (!n)
		return skv_err_set(err, -EINVAL, "--prompts %s: no prompt (one a line)", prompts);

	_cleanup_chat_ struct skv_chat *chat = NULL;
	if ((r = skv_chat_load(teacher, NULL, &chat, err)) < 0)
		return skv_err_prefix(err, r, "--self-generate needs the teacher's chat template: ");
	struct skv_local_params lp = {.model_dir = teacher, .swiftkv = 0, .backend = "cpu"};
	struct skv_local *l = NULL;
	if ((r = skv_local_open(&lp, &l, err)) < 0)
		return r;
	struct gen g = {.max_tokens = max_tokens};
	g.out = malloc((size_t)n * max_tokens * sizeof(*g.out));
	g.n_out = calloc(n, sizeof(*g.n_out));
	g.done = calloc(n, sizeof(*g.done));
	struct skv_seq_params sp = {.max_tokens = max_tokens, .sampling = {.temperature = 0.0f, .top_p = 1.0f}}; /* greedy */
	FILE *f = NULL;
	size_t queued = 0, finished = 0;
	if (!g.out || !g.n_out || !g.done) {
		r = skv_err_set(err, -ENOMEM, "out of memory");
		goto out;
	}
	/* queue a window of prompts at a time; the scheduler batches them */
	while (r >= 0 && finished < n) {
		while (queued < n && queued - finished < 16) {
			struct skv_chat_message m = {"user", 4, line[queued], strlen(line[queued])};
			_cleanup_free_ char *rendered = NULL;
			_cleanup_free_ int32_t *ids = NULL;
			ssize_t k = skv_chat_render(chat, &m, 1, true, &rendered, err);
			if (k >= 0)
				k = skv_tokenizer_encode_alloc(tok, rendered, (size_t)k, 0, &ids, err);
			if (k < 0) {
				r = skv_err_prefix(err, (int)k, "--prompts %s: prompt %zu: ", prompts, queued + 1);
				goto out;
			}
			if ((r = skv_sched_add(l->sched, queued, ids, (uint32_t)k, &sp, err)) < 0) {
				skv_err_prefix(err, r, "--prompts %s: prompt %zu: ", prompts, queued + 1);
				goto out;
			}
			queued++;
		}
		r = skv_sched_step(l->sched, l->engine, on_gen, &g, err);
		finished = 0;
		for (size_t i = 0; i < queued; i++)
			finished += g.done[i];
	}
	if (r < 0)
		goto out;
	if (!(f = fopen(path, "w"))) {
		r = skv_err_set(err, -errno, "%s: %s", path, strerror(errno));
		goto out;
	}
	for (size_t i = 0; i < n; i++) {
		struct skv_tokenizer_ws *ws = NULL;
		const char *dec = "";
		if (skv_tokenizer_ws_new(tok, &ws) < 0) {
			r = skv_err_set(err, -ENOMEM, "out of memory");
			goto out;
		}
		ssize_t k = skv_tokenizer_decode(tok, ws, g.out + i * max_tokens, g.n_out[i], SKV_TOKENIZER_SKIP_SPECIAL, &dec,
						 err);
		json_object *o = json_object_new_object(), *msgs = json_object_new_array();
		json_object *u = json_object_new_object(), *a = json_object_new_object();
		json_object_object_add(u, "role", json_object_new_string("user"));
		json_object_object_add(u, "content", json_object_new_string(line[i]));
		json_object_object_add(a, "role", json_object_new_string("assistant"));
		json_object_object_add(a, "content", json_object_new_string_len(k > 0 ? dec : "", k > 0 ? (int)k : 0));
		json_object_array_add(msgs, u);
		json_object_array_add(msgs, a);
		json_object_object_add(o, "messages", msgs);
		fprintf(f, "%s\n", json_object_to_json_string_ext(o, JSON_C_TO_STRING_PLAIN | JSON_C_TO_STRING_NOSLASHESCAPE));
		json_object_put(o);
		skv_tokenizer_ws_free(ws);
		if (k < 0) {
			r = (int)k;
			goto out;
		}
	}
	if (fflush(f) != 0)
		r = skv_err_set(err, -EIO, "%s: cannot write", path);
	*ret_n = n;
out:
	if (f)
		fclose(f);
	free(g.out);
	free(g.n_out);
	free(g.done);
	skv_local_close(l);
	return r < 0 ? r : 0;
}

static void fmt_eta(char *buf, size_t cap, double s)
{
	long t = (long)(s + 0.5);
	snprintf(buf, cap, "%ld:%02ld:%02ld", t / 3600, t / 60 % 60, t % 60);
}

int main(int argc, char **argv)
{
	enum { O_TEACHER = 256, O_OUT, O_L, O_G, O_DATA, O_STEPS, O_SEQ, O_BATCH, O_LR, O_TEMP, O_SEED, O_BACKEND,
	       O_FORCE, O_VERSION, O_SAVE, O_RESUME, O_SELFGEN, O_PROMPTS, O_CONTINUE };
	static const struct option opts[] = {
		{"teacher", required_argument, NULL, O_TEACHER},
		{"out", required_argument, NULL, O_OUT},
		{"swiftkv-layers", required_argument, NULL, O_L},
		{"group", required_argument, NULL, O_G},
		{"data", required_argument, NULL, O_DATA},
		{"steps", required_argument, NULL, O_STEPS},
		{"seq-len", required_argument, NULL, O_SEQ},
		{"batch-tokens", required_argument, NULL, O_BATCH},
		{"lr", required_argument, NULL, O_LR},
		{"temperature", required_argument, NULL, O_TEMP},
		{"seed", required_argument, NULL, O_SEED},
		{"backend", required_argument, NULL, O_BACKEND},
		{"force", no_argument, NULL, O_FORCE},
		{"save-every", required_argument, NULL, O_SAVE},
		{"resume", no_argument, NULL, O_RESUME},
		{"self-generate", required_argument, NULL, O_SELFGEN},
		{"prompts", required_argument, NULL, O_PROMPTS},
		{"continue", no_argument, NULL, O_CONTINUE},
		{"help", no_argument, NULL, 'h'},
		{"version", no_argument, NULL, O_VERSION},
		{0},
	};
	const char *teacher = NULL, *out = NULL;
	char *data[MAX_DATA_FILES];
	size_t n_data = 0;
	int64_t L = 0, G = 1, steps = -1, seq = 0, batch = 0, seed = 0;
	double lr = 2e-4, temp = 2.0;
	int64_t save_every = 100, self_gen = 0;
	const char *prompts = NULL;
	bool force = false, resume = false, cont = false;
	struct skv_err err = {0};
	int c, li = 0;

	while ((c = getopt_long(argc, argv, "h", opts, &li)) != -1) {
		int pr = 0;
		char *end;
		switch (c) {
		case O_TEACHER:
			teacher = optarg;
			break;
		case O_OUT:
			out = optarg;
			break;
		case O_L:
			pr = skv_parse_i64(optarg, 1, SKV_MAX_LAYERS, &L);
			break;
		case O_G:
			pr = skv_parse_i64(optarg, 1, SKV_MAX_LAYERS, &G);
			break;
		case O_DATA:
			if (n_data == MAX_DATA_FILES - 1) {
				fprintf(stderr, "skv-distill: --data: at most %d files\n", MAX_DATA_FILES);
				return 2;
			}
			data[n_data++] = optarg;
			break;
		case O_STEPS:
			pr = skv_parse_i64(optarg, 0, INT32_MAX, &steps);
			break;
		case O_SEQ:
			pr = skv_parse_i64(optarg, 2, 1 << 20, &seq);
			break;
		case O_BATCH:
			pr = skv_parse_i64(optarg, 2, 1 << 24, &batch);
			break;
		case O_LR:
		case O_TEMP: {
			errno = 0;
			double v = strtod(optarg, &end);
			if (errno || end == optarg || *end || !(v > 0) || !isfinite(v) || (c == O_TEMP && v > 100) ||
			    (c == O_LR && v > 1))
				pr = -EINVAL;
			else if (c == O_LR)
				lr = v;
			else
				temp = v;
			break;
		}
		case O_SEED:
			pr = skv_parse_i64(optarg, 0, INT64_MAX, &seed);
			break;
		case O_BACKEND:
			if (strcmp(optarg, "cpu") != 0) {
				fprintf(stderr, "skv-distill: --backend %s: only cpu is built so far\n", optarg);
				return 2;
			}
			break;
		case O_FORCE:
			force = true;
			break;
		case O_SAVE:
			pr = skv_parse_i64(optarg, 0, INT32_MAX, &save_every);
			break;
		case O_RESUME:
			resume = true;
			break;
		case O_SELFGEN:
			pr = skv_parse_i64(optarg, 1, 1 << 20, &self_gen);
			break;
		case O_PROMPTS:
			prompts = optarg;
			break;
		case O_CONTINUE:
			cont = true;
			break;
		case 'h':
			usage(stdout);
			return 0;
		case O_VERSION:
			skv_version_print("skv-distill");
			return 0;
		default:
			usage(stderr);
			return 2;
		}
		if (pr < 0) {
			fprintf(stderr, "skv-distill: --%s: invalid value '%s'%s\n", opts[li].name, optarg,
				c == O_LR ? " (a number in (0, 1])" : c == O_TEMP ? " (a number in (0, 100])" : "");
			return 2;
		}
	}
	if (!!self_gen != !!prompts) {
		fprintf(stderr, "skv-distill: --self-generate N and --prompts FILE go together\n");
		return 2;
	}
	if (!teacher || !out || !L || (!n_data && !prompts) || optind != argc) {
		fprintf(stderr, "skv-distill: need --teacher, --out, --swiftkv-layers and --data (or --prompts)\n");
		usage(stderr);
		return 2;
	}

	struct skv_checkpoint *ck = NULL;
	if (skv_checkpoint_open(teacher, &ck, &err) < 0) {
		fprintf(stderr, "skv-distill: --teacher: %s\n", err.msg);
		return 1;
	}
	const struct skv_model_config *cfg = &ck->config;
	int rc = 1;
	struct skv_tm_data dd = {0};
	struct skv_tokenizer *tok = NULL;
	struct skv_tm_f32 *m = NULL;
	float *mom = NULL, *vel = NULL;
	FILE *log = NULL;
	_cleanup_free_ uint32_t *order = NULL;
	_cleanup_free_ int32_t *batch_tok = NULL;
	_cleanup_free_ uint8_t *batch_mask = NULL;

	if (cont) {
		if (!cfg->swiftkv) {
			fprintf(stderr, "skv-distill: --continue: %s is not a llama_swiftkv checkpoint\n", teacher);
			goto done;
		}
		if ((uint32_t)L != cfg->kv_layers || (uint32_t)G != cfg->kv_group) {
			fprintf(stderr,
				"skv-distill: --continue: --swiftkv-layers %lld --group %lld, but %s has "
				"num_key_value_layers %u, key_value_group_size %u\n",
				(long long)L, (long long)G, teacher, cfg->kv_layers, cfg->kv_group);
			goto done;
		}
	} else if (skv_tm_check(cfg, (uint32_t)L, (uint32_t)G, &err) < 0) {
		fprintf(stderr, "skv-distill: %s: %s\n", teacher, err.msg);
		goto done;
	}
	if (!seq)
		seq = SKV_MIN(1024, cfg->max_position);
	if (seq > cfg->max_position) {
		fprintf(stderr, "skv-distill: --seq-len %lld: above max_position_embeddings %u\n", (long long)seq,
			cfg->max_position);
		goto done;
	}
	if (!batch)
		batch = 8 * seq;
	if (batch % seq) {
		fprintf(stderr, "skv-distill: --batch-tokens %lld: must be a multiple of --seq-len %lld\n", (long long)batch,
			(long long)seq);
		goto done;
	}
	const uint32_t S = (uint32_t)seq, B = (uint32_t)(batch / seq);

	if (skv_tokenizer_load(teacher, &tok, &err) < 0) {
		fprintf(stderr, "skv-distill: %s\n", err.msg);
		goto done;
	}
	if (skv_tokenizer_n_ids(tok) > cfg->vocab) {
		fprintf(stderr, "skv-distill: %s: the tokenizer has %u ids, more than the model's vocab_size %u\n", teacher,
			skv_tokenizer_n_ids(tok), cfg->vocab);
		goto done;
	}
	char gen_path[4096];
	if (prompts) { /* the teacher's answers, written into OUT before anything else */
		size_t n_gen = 0;
		snprintf(gen_path, sizeof(gen_path), "%s/self-generated.jsonl", out);
		if (!resume || access(gen_path, F_OK) != 0) {
			if (mkdir(out, 0755) < 0 && !(errno == EEXIST && (force || resume))) {
				fprintf(stderr, "skv-distill: --out %s: %s%s\n", out, strerror(errno),
					errno == EEXIST ? " (use --force to write into it)" : "");
				goto done;
			}
			if (self_generate(teacher, tok, prompts, (uint32_t)self_gen, gen_path, &n_gen, &err) < 0) {
				fprintf(stderr, "skv-distill: %s\n", err.msg);
				goto done;
			}
			fprintf(stderr, "skv-distill: the teacher answered %zu prompts into %s\n", n_gen, gen_path);
		}
		data[n_data++] = gen_path;
	}
	if (skv_tm_data_read(teacher, tok, cfg->vocab, (const char *const *)data, n_data, &dd, &err) < 0) {
		fprintf(stderr, "skv-distill: %s\n", err.msg);
		goto done;
	}
	const int32_t *tokens = dd.tok;
	const size_t n_tok = dd.n;
	const size_t n_seq = n_tok / S;
	if (n_seq == 0) {
		fprintf(stderr, "skv-distill: --data: %zu tokens in all, shorter than one sequence of --seq-len %u\n", n_tok,
			S);
		goto done;
	}
	if (steps < 0)
		steps = (int64_t)SKV_MAX(1, n_seq / B);

	if (mkdir(out, 0755) < 0 && !(errno == EEXIST && (force || resume || prompts))) {
		fprintf(stderr, "skv-distill: --out %s: %s%s\n", out, strerror(errno),
			errno == EEXIST ? " (use --force to write into it)" : "");
		goto done;
	}
	if ((cont ? skv_tm_open_f32(ck, &m, &err) : skv_tm_new_f32(ck, (uint32_t)L, (uint32_t)G, &m, &err)) < 0) {
		fprintf(stderr, "skv-distill: %s\n", err.msg);
		goto done;
	}

	/* sequence order: a seeded Fisher-Yates shuffle */
	order = malloc(n_seq * sizeof(*order));
	batch_tok = malloc((size_t)B * S * sizeof(*batch_tok));
	batch_mask = malloc((size_t)B * S);
	mom = calloc(m->n_param, sizeof(float));
	vel = calloc(m->n_param, sizeof(float));
	if (!order || !batch_tok || !batch_mask || !mom || !vel) {
		fprintf(stderr, "skv-distill: out of memory\n");
		goto done;
	}
	uint64_t rs = (uint64_t)seed;
	for (size_t i = 0; i < n_seq; i++)
		order[i] = (uint32_t)i;
	for (size_t i = n_seq; i > 1; i--) {
		size_t j = splitmix64(&rs) % i;
		uint32_t t = order[i - 1];
		order[i - 1] = order[j];
		order[j] = t;
	}

	struct state_hdr want = {.magic = STATE_MAGIC, .L = (uint32_t)L, .G = (uint32_t)G, .S = S, .B = B,
				 .steps = (uint64_t)steps, .seed = (uint64_t)seed, .n_param = m->n_param,
				 .n_tok = n_tok, .data_hash = hash_bytes(hash_bytes(1469598103934665603ull, tokens, n_tok * sizeof(*tokens)), dd.mask, n_tok), .lr = lr, .temp = temp},
			  got;
	int64_t first = 0;
	if (resume) {
		if (load_state(out, &want, &got, m->param, mom, vel, &err) < 0) {
			fprintf(stderr, "skv-distill: %s\n", err.msg);
			goto done;
		}
		first = (int64_t)got.done;
		fprintf(stderr, "skv-distill: resuming %s at step %lld of %lld\n", out, (long long)first, (long long)steps);
	}
	if (!(log = open_log(out, (uint64_t)first, &err))) {
		fprintf(stderr, "skv-distill: %s\n", err.msg);
		goto done;
	}
	char scored_note[128] = "";
	if (dd.conversations) {
		size_t sc = 0;
		for (size_t i = 0; i < n_tok; i++)
			sc += dd.mask[i];
		snprintf(scored_note, sizeof(scored_note), "; %zu conversations, %zu positions scored (assistant tokens)",
			 dd.conversations, sc);
	}
	fprintf(stderr,
		"skv-distill: %s, L = %u of %u, G = %u: %zu trainable parameters; %zu tokens = %zu sequences of %u; "
		"%lld steps of %u sequences%s%s\n",
		teacher, (unsigned)L, cfg->n_layers, (unsigned)G, m->n_param, n_tok, n_seq, S, (long long)steps, B,
		(uint64_t)steps * B > n_seq ? " (more than one pass: the data repeats)" : "", scored_note);
	const bool tty = isatty(STDERR_FILENO);
	const int64_t every = SKV_MAX(1, steps / 10);
	uint64_t t0 = skv_now_ns();
	for (int64_t st = first; st < steps; st++) {
		for (uint32_t b = 0; b < B; b++) {
			size_t at = (size_t)order[((size_t)st * B + b) % n_seq] * S;
			memcpy(batch_tok + (size_t)b * S, tokens + at, S * sizeof(int32_t));
			memcpy(batch_mask + (size_t)b * S, dd.mask + at, S);
		}
		double loss;
		int r = skv_tm_loss_f32(m, batch_tok, batch_mask, B, S, temp, true, &loss);
		if (r < 0) {
			fprintf(stderr, "skv-distill: step %lld: %s\n", (long long)st + 1, strerror(-r));
			goto done;
		}
		double gn = 0;
		for (size_t i = 0; i < m->n_param; i++)
			gn += (double)m->grad[i] * m->grad[i];
		gn = sqrt(gn);
		if (!isfinite(loss) || !isfinite(gn)) {
			fprintf(stderr, "skv-distill: step %lld: loss %g, gradient norm %g: not finite, stopping\n",
				(long long)st + 1, loss, gn);
			goto done;
		}
		if (gn > 1.0) /* clip the global norm to 1 */
			for (size_t i = 0; i < m->n_param; i++)
				m->grad[i] = (float)(m->grad[i] / gn);
		double lrs = skv_lr_at((uint64_t)st, (uint64_t)steps, lr);
		skv_adamw_step(m->param, m->grad, mom, vel, m->n_param, (uint64_t)st + 1, lrs, 0.9, 0.999, 1e-8);

		double el = (double)(skv_now_ns() - t0) / 1e9, tps = (double)(st + 1 - first) * B * S / el;
		double eta = el / (double)(st + 1 - first) * (double)(steps - st - 1);
		fprintf(log, "{\"step\":%lld,\"loss\":%.9g,\"grad_norm\":%.6g,\"lr\":%.6g,\"tokens\":%llu,"
			     "\"tokens_per_s\":%.1f,\"elapsed_s\":%.3f}\n",
			(long long)st + 1, loss, gn, lrs, (unsigned long long)(st + 1) * B * S, tps, el);
		fflush(log);
		if (tty || (st + 1) % every == 0 || st + 1 == steps) {
			char e[32];
			fmt_eta(e, sizeof(e), eta);
			fprintf(stderr, "%sstep %lld/%lld  %.0f tok/s  loss %.5f  lr %.2e  ETA %s%s", tty ? "\r" : "",
				(long long)st + 1, (long long)steps, tps, loss, lrs, e,
				!tty || st + 1 == steps ? "\n" : "  ");
		}
		if (save_every && (st + 1) % save_every == 0 && st + 1 < steps) {
			want.done = (uint64_t)st + 1;
			if (save_state(out, &want, m->param, mom, vel, &err) < 0) {
				fprintf(stderr, "skv-distill: %s\n", err.msg);
				goto done;
			}
		}
	}
	/* the final state too: a run killed while writing the checkpoint resumes to write it */
	want.done = (uint64_t)steps;
	if (save_every && steps > 0 && save_state(out, &want, m->param, mom, vel, &err) < 0) {
		fprintf(stderr, "skv-distill: %s\n", err.msg);
		goto done;
	}
	if (skv_tm_write_student(ck, &m->dm, m->param, out, &err) < 0) {
		fprintf(stderr, "skv-distill: %s\n", err.msg);
		goto done;
	}
	printf("%s: llama_swiftkv, L = %u, G = %u, %lld steps\n", out, (unsigned)L, (unsigned)G, (long long)steps);
	rc = 0;
done:
	if (log)
		fclose(log);
	free(mom);
	free(vel);
	skv_tm_free_f32(m);
	skv_tm_data_free(&dd);
	skv_tokenizer_free(tok);
	skv_checkpoint_free(ck);
	return rc;
}
