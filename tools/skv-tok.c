/* skv-tok: the tokenizer and chat template, offline.
 *
 *   skv-tok encode --tokenizer PATH [--bos] [--special-as-text]
 *           UTF-8 text on stdin -> ids, space-separated, on one line
 *   skv-tok decode --tokenizer PATH [--skip-special] [--raw]
 *           ids on stdin (separated by spaces, commas or newlines) -> text
 *   skv-tok chat --tokenizer PATH [--add-generation-prompt] [--ids] [--template FILE]
 *           [--tools FILE] [--special-as-text]
 *           a JSON array of messages on stdin -> the prompt rendered by the chat template
 *           (the model directory's, or FILE's), or its ids
 *
 * PATH is a tokenizer.json or a model directory (then tokenizer_config.json, its chat template
 * and generation_config.json are read from it too). Exit status: 0 done, 1 bad input or files,
 * 2 bad usage.
 */
#include <errno.h>
#include <getopt.h>
#include <stdio.h>
#include <string.h>
#include <sys/stat.h>

#include <json-c/json.h>

#include "chat.h"
#include "skv-json.h"
#include "jinja.h"
#include "model-config.h"
#include "skv-base.h"
#include "skv-version.h"
#include "tokenizer.h"

static void usage(FILE *f)
{
	fputs("usage: skv-tok encode --tokenizer PATH [--bos] [--special-as-text]\n"
	      "       skv-tok decode --tokenizer PATH [--skip-special] [--raw]\n"
	      "       skv-tok chat --tokenizer PATH [--add-generation-prompt] [--ids] [--template FILE]\n"
	      "                    [--tools FILE]\n"
	      "       skv-tok --version | --help\n"
	      "\n"
	      "  --tokenizer PATH         a tokenizer.json, or a model directory holding one\n"
	      "  --bos                    encode: apply the post-processor (adds <|begin_of_text|>)\n"
	      "  --special-as-text        encode, chat --ids: special-token strings in the text are\n"
	      "                           plain text, not special tokens (for untrusted text)\n"
	      "  --skip-special           decode: leave special tokens out\n"
	      "  --raw                    decode: write the raw bytes (no U+FFFD for invalid UTF-8)\n"
	      "  --add-generation-prompt  chat: end with the open assistant header\n"
	      "  --ids                    chat: print the prompt's ids instead of its text\n"
	      "  --template FILE          chat: a Jinja chat template to use instead of the model's\n"
	      "  --tools FILE             chat: a JSON array of tool definitions the template sees\n",
	      f);
}

/* Reads all of stdin into a NUL-terminated heap buffer. */
static int read_stdin(char **ret, size_t *ret_len)
{
	size_t cap = 1 << 16, len = 0;
	char *buf = malloc(cap);
	if (!buf)
		return -ENOMEM;
	for (;;) {
		if (len + 1 >= cap) {
			char *nb = realloc(buf, cap * 2);
			if (!nb) {
				free(buf);
				return -ENOMEM;
			}
			buf = nb;
			cap *= 2;
		}
		size_t n = fread(buf + len, 1, cap - len - 1, stdin);
		len += n;
		if (n == 0) {
			if (ferror(stdin)) {
				free(buf);
				return -EIO;
			}
			break;
		}
	}
	buf[len] = '\0';
	*ret = buf;
	*ret_len = len;
	return 0;
}

static int print_ids(const int32_t *ids, size_t n)
{
	for (size_t i = 0; i < n; i++)
		printf("%s%d", i ? " " : "", ids[i]);
	printf("\n");
	return fflush(stdout) == 0 ? 0 : -EIO;
}

static int cmd_encode(const struct skv_tokenizer *tok, unsigned flags)
{
	_cleanup_free_ char *text = NULL;
	_cleanup_free_ int32_t *ids = NULL;
	struct skv_err err = {0};
	size_t len;
	if (read_stdin(&text, &len) < 0) {
		fprintf(stderr, "skv-tok: cannot read stdin\n");
		return 1;
	}
	ssize_t n = skv_tokenizer_encode_alloc(tok, text, len, flags, &ids, &err);
	if (n < 0) {
		fprintf(stderr, "skv-tok: stdin: %s\n", err.msg);
		return 1;
	}
	return print_ids(ids, (size_t)n) < 0 ? 1 : 0;
}

static int cmd_decode(const struct skv_tokenizer *tok, unsigned flags)
{
	_cleanup_free_ char *text = NULL;
	_cleanup_free_ int32_t *ids = NULL;
	_cleanup_tokenizer_ws_ struct skv_tokenizer_ws *ws = NULL;
	struct skv_err err = {0};
	size_t len, n = 0, cap = 0;
	const char *out;

	if (read_stdin(&text, &len) < 0) {
		fprintf(stderr, "skv-tok: cannot read stdin\n");
		return 1;
	}
	for (char *p = text;;) {
		while (*p == ' ' || *p == ',' || *p == '\n' || *p == '\t' || *p == '\r')
			p++;
		if (!*p)
			break;
		char *end;
		errno = 0;
		long v = strtol(p, &end, 10);
		if (end == p || errno || v < 0 || v > INT32_MAX || (*end && !strchr(" ,\n\t\r", *end))) {
			fprintf(stderr, "skv-tok: stdin: '%.20s' is not a token id\n", p);
			return 1;
		}
		if (n == cap) {
			cap = cap ? 2 * cap : 1024;
			int32_t *ni = realloc(ids, cap * sizeof(*ids));
			if (!ni) {
				fprintf(stderr, "skv-tok: out of memory\n");
				return 1;
			}
			ids = ni;
		}
		ids[n++] = (int32_t)v;
		p = end;
	}
	if (skv_tokenizer_ws_new(tok, &ws) < 0) {
		fprintf(stderr, "skv-tok: out of memory\n");
		return 1;
	}
	ssize_t l = skv_tokenizer_decode(tok, ws, ids ? ids : (int32_t[]){0}, n, flags, &out, &err);
	if (l < 0) {
		fprintf(stderr, "skv-tok: %s\n", err.msg);
		return 1;
	}
	if (fwrite(out, 1, (size_t)l, stdout) != (size_t)l || fflush(stdout) != 0) {
		fprintf(stderr, "skv-tok: cannot write stdout\n");
		return 1;
	}
	return 0;
}

static int cmd_chat(const struct skv_tokenizer *tok, const char *path, const char *tmpl_file, const char *tools_file,
		    bool gen_prompt, bool want_ids, unsigned flags)
{
	_cleanup_free_ char *json = NULL, *prompt = NULL, *tmpl = NULL, *tools_text = NULL;
	_cleanup_json_ json_object *tools = NULL;
	_cleanup_free_ int32_t *ids = NULL;
	_cleanup_chat_ struct skv_chat *chat = NULL;
	_cleanup_json_ json_object *msgs = NULL;
	struct skv_err err = {0};
	struct stat st;
	size_t len;
	int r;

	if (stat(path, &st) == 0 && S_ISDIR(st.st_mode)) {
		r = skv_chat_load(path, tmpl_file, &chat, &err);
	} else if (tmpl_file) {
		/* a bare tokenizer.json: Llama-3's BOS and EOS texts */
		r = skv_read_file(tmpl_file, SKV_JINJA_MAX_SOURCE, &tmpl, &len, &err);
		if (r >= 0)
			r = skv_chat_new(tmpl, len, "<|begin_of_text|>", "<|eot_id|>", &chat, &err);
	} else {
		fprintf(stderr, "skv-tok: chat needs a model directory (with tokenizer_config.json) or --template\n");
		return 2;
	}
	if (r < 0) {
		fprintf(stderr, "skv-tok: %s\n", err.msg);
		return 1;
	}
	if (read_stdin(&json, &len) < 0) {
		fprintf(stderr, "skv-tok: cannot read stdin\n");
		return 1;
	}
	if (skv_json_parse(json, len, "stdin", &msgs, &err) < 0) {
		fprintf(stderr, "skv-tok: %s\n", err.msg);
		return 1;
	}
	if (!json_object_is_type(msgs, json_type_array)) {
		fprintf(stderr, "skv-tok: stdin: a JSON array of messages is expected\n");
		return 1;
	}
	if (tools_file) {
		size_t tl;
		if (skv_read_file(tools_file, 16u << 20, &tools_text, &tl, &err) < 0 ||
		    skv_json_parse(tools_text, tl, tools_file, &tools, &err) < 0) {
			fprintf(stderr, "skv-tok: %s\n", err.msg);
			return 1;
		}
		if (!json_object_is_type(tools, json_type_array)) {
			fprintf(stderr, "skv-tok: %s: a JSON array of tool definitions is expected\n", tools_file);
			return 1;
		}
	}
	ssize_t pl = skv_chat_render_json(chat, msgs, tools, gen_prompt, &prompt, &err);
	if (pl < 0) {
		fprintf(stderr, "skv-tok: %s\n", err.msg);
		return 1;
	}
	if (!want_ids) {
		if (fwrite(prompt, 1, (size_t)pl, stdout) != (size_t)pl || fflush(stdout) != 0) {
			fprintf(stderr, "skv-tok: cannot write stdout\n");
			return 1;
		}
		return 0;
	}
	/* the template wrote BOS itself: encode without the post-processor, as transformers does */
	ssize_t k = skv_tokenizer_encode_alloc(tok, prompt, (size_t)pl, flags, &ids, &err);
	if (k < 0) {
		fprintf(stderr, "skv-tok: %s\n", err.msg);
		return 1;
	}
	return print_ids(ids, (size_t)k) < 0 ? 1 : 0;
}

int main(int argc, char **argv)
{
	enum { O_TOK = 256, O_BOS, O_SPECIAL_TEXT, O_SKIP, O_RAW, O_GEN, O_IDS, O_TEMPLATE, O_TOOLS };
	static const struct option opts[] = {
		{"tokenizer", required_argument, NULL, O_TOK},
		{"bos", no_argument, NULL, O_BOS},
		{"special-as-text", no_argument, NULL, O_SPECIAL_TEXT},
		{"skip-special", no_argument, NULL, O_SKIP},
		{"raw", no_argument, NULL, O_RAW},
		{"add-generation-prompt", no_argument, NULL, O_GEN},
		{"ids", no_argument, NULL, O_IDS},
		{"template", required_argument, NULL, O_TEMPLATE},
		{"tools", required_argument, NULL, O_TOOLS},
		{"help", no_argument, NULL, 'h'},
		{0},
	};
	const char *path = NULL, *tmpl = NULL, *tools = NULL, *cmd;
	bool bos = false, special_text = false, skip = false, raw = false, gen = false, ids = false;
	_cleanup_tokenizer_ struct skv_tokenizer *tok = NULL;
	struct skv_err err = {0};
	int c;

	if (argc < 2) {
		usage(stderr);
		return 2;
	}
	if (!strcmp(argv[1], "--help") || !strcmp(argv[1], "-h")) {
		usage(stdout);
		return 0;
	}
	if (!strcmp(argv[1], "--version") || !strcmp(argv[1], "-V")) {
		skv_version_print("skv-tok");
		return 0;
	}
	cmd = argv[1];
	if (strcmp(cmd, "encode") && strcmp(cmd, "decode") && strcmp(cmd, "chat")) {
		fprintf(stderr, "skv-tok: unknown command '%s'\n", cmd);
		usage(stderr);
		return 2;
	}
	optind = 2;
	while ((c = getopt_long(argc, argv, "h", opts, NULL)) != -1) {
		switch (c) {
		case O_TOK:
			path = optarg;
			break;
		case O_BOS:
			bos = true;
			break;
		case O_SPECIAL_TEXT:
			special_text = true;
			break;
		case O_SKIP:
			skip = true;
			break;
		case O_RAW:
			raw = true;
			break;
		case O_GEN:
			gen = true;
			break;
		case O_IDS:
			ids = true;
			break;
		case O_TEMPLATE:
			tmpl = optarg;
			break;
		case O_TOOLS:
			tools = optarg;
			break;
		case 'h':
			usage(stdout);
			return 0;
		default:
			usage(stderr);
			return 2;
		}
	}
	bool is_enc = !strcmp(cmd, "encode"), is_dec = !strcmp(cmd, "decode"), is_chat = !strcmp(cmd, "chat");
	if (optind != argc || !path) {
		fprintf(stderr, "skv-tok: %s\n", optind != argc ? "unexpected arguments" : "--tokenizer PATH is required");
		usage(stderr);
		return 2;
	}
	if ((bos && !is_enc) || (special_text && is_dec) || ((skip || raw) && !is_dec) || ((gen || ids || tmpl || tools) && !is_chat)) {
		fprintf(stderr, "skv-tok: an option does not apply to '%s'\n", cmd);
		usage(stderr);
		return 2;
	}
	if (skv_tokenizer_load(path, &tok, &err) < 0) {
		fprintf(stderr, "skv-tok: %s\n", err.msg);
		return 1;
	}
	unsigned eflags = (special_text ? SKV_TOKENIZER_SPECIAL_AS_TEXT : 0u);
	if (is_enc)
		return cmd_encode(tok, eflags | (bos ? SKV_TOKENIZER_ADD_SPECIAL : 0u));
	if (is_dec)
		return cmd_decode(tok, (skip ? SKV_TOKENIZER_SKIP_SPECIAL : 0u) | (raw ? SKV_TOKENIZER_RAW : 0u));
	return cmd_chat(tok, path, tmpl, tools, gen, ids, eflags);
}
