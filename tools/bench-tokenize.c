/* bench-tokenize.c: skv-bench tokenize, our encoder against Hugging Face tokenizers on the same
 * machine, the same tokenizer.json and the same texts, in one run.
 *
 *   skv-bench tokenize --tokenizer PATH [--file F]... [--repeat N] [--lines] [--python PY]
 *                      [--no-hf] [--json FILE]
 *
 * Texts: every --file (whole, as UTF-8), or by default the tokenizer training corpus compiled
 * into libskv-model (prose, code, 30 scripts, ~136 kB) and three generated 1 MB documents without
 * spaces (letters, CJK, digits: the long pre-tokens that must not go quadratic). Each text is
 * encoded without the post-processor, single-threaded, best of --repeat (default 5) after one
 * warm-up; MB/s counts input bytes. With --lines every line is encoded on its own (ours: a loop;
 * tokenizers: encode_batch with TOKENIZERS_PARALLELISM=false, so one thread each).
 * tokenizers runs in a child Python (--python, default /opt/skvpy/bin/python when it exists,
 * else python3) that must import `tokenizers`; without it the comparison is skipped with a note.
 * Both sides' ids are hashed and compared: the ratio is only printed for identical output.
 */
#include <getopt.h>
#include <stdio.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "bench.h"
#include "model-config.h"
#include "skv-base.h"
#include "tokenizer-synth.h"
#include "tokenizer.h"

#define MAX_TEXTS 32

struct text {
	char name[64];
	char *data;
	size_t len;
	char path[4096]; /* a file the Python side reads */
	/* ours */
	double s_best;
	size_t n_ids;
	uint64_t fnv;
	/* tokenizers */
	bool hf_ok;
	double hf_s;
	size_t hf_n;
	uint64_t hf_fnv;
};

static const char hf_script[] =
	"import json, sys, time, os\n"
	"from tokenizers import Tokenizer\n"
	"spec = json.load(sys.stdin)\n"
	"tok = Tokenizer.from_file(spec['tokenizer'])\n"
	"def fnv(ids):\n"
	"    h = 0xcbf29ce484222325\n"
	"    for i in ids:\n"
	"        for b in int(i).to_bytes(4, 'little'):\n"
	"            h = ((h ^ b) * 0x100000001b3) & 0xffffffffffffffff\n"
	"    return h\n"
	"out = []\n"
	"for path in spec['files']:\n"
	"    with open(path, encoding='utf-8', newline='') as f:\n"
	"        text = f.read()\n"
	"    lines = text.splitlines(keepends=True) if spec['lines'] else None\n"
	"    run = (lambda: [i for e in tok.encode_batch(lines, add_special_tokens=False) for i in e.ids]) if lines is not None \\\n"
	"        else (lambda: tok.encode(text, add_special_tokens=False).ids)\n"
	"    ids = run()\n"
	"    best = float('inf')\n"
	"    for _ in range(spec['repeat']):\n"
	"        t0 = time.perf_counter(); run(); best = min(best, time.perf_counter() - t0)\n"
	"    out.append({'s': best, 'n': len(ids), 'fnv': '%016x' % fnv(ids)})\n"
	"json.dump({'version': __import__('tokenizers').__version__, 'results': out}, sys.stdout)\n";

static uint64_t fnv_ids(const int32_t *ids, size_t n, uint64_t h)
{
	for (size_t i = 0; i < n; i++)
		for (int b = 0; b < 4; b++)
			h = (h ^ (((uint32_t)ids[i] >> (8 * b)) & 0xff)) * 0x100000001b3ull;
	return h;
}

/* The fixture script's generator (tests/test-tokenizer.c has the same). */
static char *lcg_text(uint64_t x, const char *const *alphabet, size_t n_alpha, size_t nbytes, size_t *len)
{
	char *s = malloc(nbytes + 8);
	size_t o = 0;
	if (!s)
		return NULL;
	while (o < nbytes) {
		x = x * 6364136223846793005ull + 1442695040888963407ull;
		const char *ch = alphabet[(x >> 33) % n_alpha];
		size_t l = strlen(ch);
		memcpy(s + o, ch, l);
		o += l;
	}
	*len = o;
	return s;
}

/* Encodes t (whole, or line by line); returns seconds, and the ids' count and hash. */
static double encode_once(const struct skv_tokenizer *tok, struct skv_tokenizer_ws *ws, const struct text *t,
			  bool lines, size_t *ret_n, uint64_t *ret_fnv)
{
	const int32_t *ids;
	struct skv_err err = {0};
	uint64_t h = 0xcbf29ce484222325ull, t0 = skv_now_ns();
	size_t total = 0;
	for (size_t a = 0; a < t->len;) {
		size_t b = t->len;
		if (lines) {
			const char *nl = memchr(t->data + a, '\n', t->len - a);
			b = nl ? (size_t)(nl - t->data) + 1 : t->len;
		}
		ssize_t n = skv_tokenizer_encode(tok, ws, t->data + a, b - a, 0, &ids, &err);
		if (n < 0) {
			fprintf(stderr, "skv-bench tokenize: %s: %s\n", t->name, err.msg);
			exit(1);
		}
		if (ret_fnv)
			h = fnv_ids(ids, (size_t)n, h);
		total += (size_t)n;
		a = b;
	}
	double s = (double)(skv_now_ns() - t0) / 1e9;
	*ret_n = total;
	if (ret_fnv)
		*ret_fnv = h;
	return s;
}

static const char *default_python(void)
{
	return access("/opt/skvpy/bin/python", X_OK) == 0 ? "/opt/skvpy/bin/python" : "python3";
}

/* Runs tokenizers on every text; fills hf_* and returns its version in ver, or -1 (note printed). */
static int run_hf(const char *python, const char *tokenizer, struct text *texts, size_t n, unsigned repeat,
		  bool lines, const char *dir, char ver[32])
{
	char spec[4200], script[4200], out[4200], cmd[16384];
	snprintf(script, sizeof(script), "%s/hf.py", dir);
	snprintf(spec, sizeof(spec), "%s/spec.json", dir);
	snprintf(out, sizeof(out), "%s/out.json", dir);
	FILE *f = fopen(script, "we");
	if (!f || fputs(hf_script, f) < 0 || fclose(f) != 0)
		return -1;
	f = fopen(spec, "we");
	if (!f)
		return -1;
	fprintf(f, "{\"tokenizer\": \"%s\", \"repeat\": %u, \"lines\": %s, \"files\": [", tokenizer, repeat,
		lines ? "true" : "false");
	for (size_t i = 0; i < n; i++)
		fprintf(f, "%s\"%s\"", i ? ", " : "", texts[i].path);
	fprintf(f, "]}\n");
	if (fclose(f) != 0)
		return -1;
	snprintf(cmd, sizeof(cmd), "TOKENIZERS_PARALLELISM=false RAYON_NUM_THREADS=1 '%s' '%s' < '%s' > '%s'", python, script,
		 spec, out);
	if (system(cmd) != 0) {
		printf("note: '%s' could not run tokenizers (is it installed?): no comparison\n", python);
		return -1;
	}
	char buf[1 << 16];
	f = fopen(out, "re");
	size_t len = f ? fread(buf, 1, sizeof(buf) - 1, f) : 0;
	if (f)
		fclose(f);
	buf[len] = 0;
	const char *p = strstr(buf, "\"version\": \"");
	if (p)
		sscanf(p + 12, "%31[^\"]", ver);
	p = buf;
	for (size_t i = 0; i < n; i++) {
		char hex[17] = "";
		p = strstr(p, "{\"s\": ");
		if (!p || sscanf(p, "{\"s\": %lf, \"n\": %zu, \"fnv\": \"%16[0-9a-f]\"}", &texts[i].hf_s, &texts[i].hf_n, hex) != 3)
			return -1;
		texts[i].hf_fnv = strtoull(hex, NULL, 16);
		texts[i].hf_ok = true;
		p++;
	}
	return 0;
}

static int add_text(struct text *texts, size_t *n, const char *name, char *data, size_t len)
{
	if (*n == MAX_TEXTS) {
		fprintf(stderr, "skv-bench tokenize: at most %d texts\n", MAX_TEXTS);
		return -1;
	}
	struct text *t = &texts[(*n)++];
	memset(t, 0, sizeof(*t));
	snprintf(t->name, sizeof(t->name), "%s", name);
	t->data = data;
	t->len = len;
	return 0;
}

static void usage(FILE *f)
{
	fputs("usage: skv-bench tokenize --tokenizer PATH [options]\n"
	      "  --tokenizer PATH   a tokenizer.json or a model directory\n"
	      "  --file F           a text to encode (repeatable); default: the built-in corpus and\n"
	      "                     1 MB documents without spaces\n"
	      "  --repeat N         timed runs per text, the best counts (default 5)\n"
	      "  --lines            encode every line on its own\n"
	      "  --python PY        the Python with `tokenizers` (default /opt/skvpy/bin/python or python3)\n"
	      "  --no-hf            skip the comparison\n"
	      "  --json FILE        write the results as JSON\n",
	      f);
}

static int bench_main(int argc, char **argv)
{
	enum { O_TOK = 256, O_FILE, O_REPEAT, O_LINES, O_PY, O_NOHF, O_JSON };
	static const struct option opts[] = {
		{"tokenizer", required_argument, NULL, O_TOK}, {"file", required_argument, NULL, O_FILE},
		{"repeat", required_argument, NULL, O_REPEAT}, {"lines", no_argument, NULL, O_LINES},
		{"python", required_argument, NULL, O_PY},     {"no-hf", no_argument, NULL, O_NOHF},
		{"json", required_argument, NULL, O_JSON},     {"help", no_argument, NULL, 'h'},
		{0},
	};
	const char *path = NULL, *python = default_python(), *json = NULL;
	const char *files[MAX_TEXTS];
	size_t n_files = 0, n = 0;
	int64_t repeat = 5;
	bool lines = false, hf = true;
	struct text texts[MAX_TEXTS];
	struct skv_err err = {0};
	int c;

	while ((c = getopt_long(argc, argv, "h", opts, NULL)) != -1) {
		switch (c) {
		case O_TOK:
			path = optarg;
			break;
		case O_FILE:
			if (n_files == MAX_TEXTS) {
				fprintf(stderr, "skv-bench tokenize: at most %d files\n", MAX_TEXTS);
				return 2;
			}
			files[n_files++] = optarg;
			break;
		case O_REPEAT:
			if (skv_parse_i64(optarg, 1, 1000, &repeat) < 0) {
				fprintf(stderr, "skv-bench tokenize: --repeat: invalid value '%s'\n", optarg);
				return 2;
			}
			break;
		case O_LINES:
			lines = true;
			break;
		case O_PY:
			python = optarg;
			break;
		case O_NOHF:
			hf = false;
			break;
		case O_JSON:
			json = optarg;
			break;
		case 'h':
			usage(stdout);
			return 0;
		default:
			usage(stderr);
			return 2;
		}
	}
	if (!path || optind != argc) {
		usage(stderr);
		return 2;
	}
	_cleanup_tokenizer_ struct skv_tokenizer *tok = NULL;
	_cleanup_tokenizer_ws_ struct skv_tokenizer_ws *ws = NULL;
	if (skv_tokenizer_load(path, &tok, &err) < 0 || skv_tokenizer_ws_new(tok, &ws) < 0) {
		fprintf(stderr, "skv-bench tokenize: %s\n", err.msg[0] ? err.msg : "out of memory");
		return 1;
	}
	char tokfile[4096];
	struct stat st;
	snprintf(tokfile, sizeof(tokfile), stat(path, &st) == 0 && S_ISDIR(st.st_mode) ? "%s/tokenizer.json" : "%s", path);

	for (size_t i = 0; i < n_files; i++) {
		char *d;
		size_t len;
		if (skv_read_file(files[i], 1u << 30, &d, &len, &err) < 0) {
			fprintf(stderr, "skv-bench tokenize: %s\n", err.msg);
			return 1;
		}
		const char *base = strrchr(files[i], '/');
		if (add_text(texts, &n, base ? base + 1 : files[i], d, len) < 0)
			return 2;
	}
	if (!n_files) {
		static const char *const letters[] = {"a", "b", "c", "d", "e", "f", "g", "h", "i", "j", "k", "l", "m",
						      "n", "o", "p", "q", "r", "s", "t", "u", "v", "w", "x", "y", "z"};
		static const char *const cjk[] = {"的", "一", "是", "不", "了", "人", "我", "在", "有", "他", "这", "中"};
		static const char *const digits[] = {"0", "1", "2", "3", "4", "5", "6", "7", "8", "9"};
		char *d = malloc(skv_synth_corpus_len + 1);
		size_t len;
		if (!d)
			return 1;
		memcpy(d, skv_synth_corpus, skv_synth_corpus_len);
		add_text(texts, &n, "corpus", d, skv_synth_corpus_len);
		d = lcg_text(1, letters, SKV_ARRAY_SIZE(letters), 1 << 20, &len);
		add_text(texts, &n, "1MB letters, no space", d, len);
		d = lcg_text(3, cjk, SKV_ARRAY_SIZE(cjk), 1 << 20, &len);
		add_text(texts, &n, "1MB CJK, no space", d, len);
		d = lcg_text(4, digits, SKV_ARRAY_SIZE(digits), 1 << 20, &len);
		add_text(texts, &n, "1MB digits", d, len);
	}

	/* ours */
	for (size_t i = 0; i < n; i++) {
		struct text *t = &texts[i];
		size_t k;
		encode_once(tok, ws, t, lines, &t->n_ids, &t->fnv); /* warm-up, and the ids */
		t->s_best = 1e30;
		for (int64_t r = 0; r < repeat; r++)
			t->s_best = SKV_MIN(t->s_best, encode_once(tok, ws, t, lines, &k, NULL));
	}

	/* tokenizers */
	char dir[] = "/tmp/skv-bench-tok-XXXXXX", ver[32] = "?";
	bool have_hf = false;
	if (hf && mkdtemp(dir)) {
		bool ok = true;
		for (size_t i = 0; i < n && ok; i++) {
			snprintf(texts[i].path, sizeof(texts[i].path), "%s/text%zu.txt", dir, i);
			FILE *f = fopen(texts[i].path, "we");
			ok = f && fwrite(texts[i].data, 1, texts[i].len, f) == texts[i].len;
			if (f && fclose(f) != 0)
				ok = false;
		}
		have_hf = ok && run_hf(python, tokfile, texts, n, (unsigned)repeat, lines, dir, ver) == 0;
		char cmd[200];
		snprintf(cmd, sizeof(cmd), "rm -rf '%s'", dir);
		if (system(cmd) != 0)
			fprintf(stderr, "skv-bench tokenize: could not remove %s\n", dir);
	}

	printf("tokenizer %s, %s, best of %lld, one thread%s\n", tokfile, lines ? "line by line" : "whole texts",
	       (long long)repeat, have_hf ? "" : " (no tokenizers comparison)");
	printf("%-24s %10s %10s %10s %10s %8s %s\n", "text", "bytes", "ids", "skv MB/s", "hf MB/s", "ratio", "same ids");
	for (size_t i = 0; i < n; i++) {
		struct text *t = &texts[i];
		double mbs = (double)t->len / 1e6 / t->s_best;
		printf("%-24s %10zu %10zu %10.2f", t->name, t->len, t->n_ids, mbs);
		if (have_hf && t->hf_ok) {
			bool same = t->hf_n == t->n_ids && t->hf_fnv == t->fnv;
			double hmbs = (double)t->len / 1e6 / t->hf_s;
			if (same)
				printf(" %10.2f %7.1fx yes\n", hmbs, mbs / hmbs);
			else
				printf(" %10.2f %8s NO (tokenizers: %zu ids)\n", hmbs, "-", t->hf_n);
		} else {
			printf(" %10s %8s -\n", "-", "-");
		}
	}
	if (have_hf)
		printf("tokenizers %s via %s\n", ver, python);
	if (json) {
		FILE *f = fopen(json, "we");
		if (!f) {
			fprintf(stderr, "skv-bench tokenize: cannot write %s\n", json);
			return 1;
		}
		fprintf(f, "{\"bench\": \"tokenize\", \"tokenizer\": \"%s\", \"lines\": %s, \"repeat\": %lld, \"tokenizers\": \"%s\", "
			   "\"results\": [",
			tokfile, lines ? "true" : "false", (long long)repeat, have_hf ? ver : "");
		for (size_t i = 0; i < n; i++) {
			struct text *t = &texts[i];
			fprintf(f, "%s\n  {\"text\": \"%s\", \"bytes\": %zu, \"ids\": %zu, \"skv_s\": %.6f", i ? "," : "", t->name, t->len,
				t->n_ids, t->s_best);
			if (have_hf && t->hf_ok)
				fprintf(f, ", \"hf_s\": %.6f, \"same_ids\": %s", t->hf_s,
					t->hf_n == t->n_ids && t->hf_fnv == t->fnv ? "true" : "false");
			fprintf(f, "}");
		}
		fprintf(f, "\n]}\n");
		if (fclose(f) != 0)
			return 1;
	}
	for (size_t i = 0; i < n; i++)
		free(texts[i].data);
	for (size_t i = 0; i < n; i++)
		if (have_hf && texts[i].hf_ok && (texts[i].hf_n != texts[i].n_ids || texts[i].hf_fnv != texts[i].fnv))
			return 1;
	return 0;
}

const struct skv_bench_cmd skv_bench_tokenize = {
	.name = "tokenize",
	.summary = "tokenizer encode speed against Hugging Face tokenizers (same text, one run)",
	.main = bench_main,
};
