/* skv-cli.c: the skv command, libskv's first user: generate (a raw prompt), chat (a
 * conversation) and summarize (the box's main job).
 *
 * It uses only skv.h (plus base/'s number parsing). Text streams to stdout as it arrives,
 * whether stdout is a terminal or a pipe; diagnostics and progress go to stderr; --json prints
 * one object when the request has ended. The first Ctrl-C cancels the request in flight (skvd
 * answers with a final record), a second one exits at once (skvd cancels on disconnect).
 * Exit codes: 0 ok, 1 a request (or its input) failed, 2 usage, 3 cannot connect, 130
 * interrupted. It is not a library: it prints, and it exits from main only.
 */
#include <fcntl.h>
#include <getopt.h>
#include <json-c/json.h>
#include <math.h>
#include <signal.h>
#include <stdio.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>

#include "doc.h"
#include "skv-base.h"
#include "skv-version.h"
#include "skv.h"

enum {
	EXIT_OK = 0,
	EXIT_FAILED = 1,
	EXIT_USAGE = 2,
	EXIT_CONNECT = 3,
	EXIT_INTERRUPTED = 130,
};

#define LONG_INPUT_BYTES 16384 /* summarize shows progress for inputs at least this long */
#define SKV_DOC_MAX_FILE_BYTES (256u << 20) /* summarize reads document files up to this size */

static volatile sig_atomic_t interrupted;

static void on_sigint(int sig)
{
	(void)sig;
	if (++interrupted >= 2)
		_exit(EXIT_INTERRUPTED); /* skvd cancels what was in flight when the socket closes */
}

struct opts {
	const char *socket;
	struct skv_request req; /* sampling fields, flags, max_tokens, timeout */
	const char **stop;
	size_t n_stop;
	bool json;
	bool quiet;
	const char *system;
	struct skv_doc_opts doc; /* summarize: --format, --charset */
	struct skv_summarize_opts sum; /* summarize: chunking, truncation, limits */
};

/* The outcome of one request, owned by the caller. */
struct result {
	char *text; /* the generated text, [len] and NUL-terminated */
	size_t len, cap;
	bool ended; /* a final event arrived: the fields below are set */
	enum skv_finish_reason finish;
	enum skv_error_code error;
	char message[256];
	uint32_t prompt_tokens, completion_tokens;
	uint32_t queue_us, ttft_us, total_us, retry_after_ms;
	bool user_cancelled;
	int lib_error; /* a libskv call failed: the session is gone or broken */
	char lib_msg[512];
};

static void result_done(struct result *res)
{
	free(res->text);
	*res = (struct result){0};
}

static int usage_error(const char *fmt, ...) SKV_PRINTF(1, 2);
static int usage_error(const char *fmt, ...)
{
	va_list ap;
	fputs("skv: ", stderr);
	va_start(ap, fmt);
	vfprintf(stderr, fmt, ap);
	va_end(ap);
	fputs("\nTry 'skv --help'.\n", stderr);
	return EXIT_USAGE;
}

static void help(void)
{
	fputs("Usage: skv [--socket PATH] COMMAND [OPTIONS] [ARGS]\n"
	      "\n"
	      "Talks to skvd, the swiftkv LLM server, on this machine.\n"
	      "\n"
	      "Commands:\n"
	      "  generate [OPTIONS] PROMPT...  complete a raw prompt ('-' reads it from stdin)\n"
	      "  chat [OPTIONS]                a multi-turn conversation, one user turn per line\n"
	      "  summarize [OPTIONS] FILE...   summarize each document ('-' is stdin)\n"
	      "\n"
	      "Options of every command:\n"
	      "  -s, --socket PATH       skvd's client socket (default $" SKV_SOCKET_ENV ", else " SKV_SOCKET_DEFAULT ")\n"
	      "  -n, --max-tokens N      generate at most N tokens (default: skvd's)\n"
	      "  -t, --temperature T     sampling temperature, 0 = greedy (default: the model's)\n"
	      "      --top-p P           nucleus sampling, in (0, 1]\n"
	      "      --top-k K           sample among the K most likely tokens (0 = all)\n"
	      "      --seed S            a seeded request reproduces its output when run alone\n"
	      "      --stop STR          stop before STR (repeatable; taken literally)\n"
	      "      --ignore-eos        keep generating through end-of-sequence tokens\n"
	      "      --timeout SECONDS   skvd ends the request after this long\n"
	      "  -h, --help              this text\n"
	      "  -V, --version           skv's version (before COMMAND)\n"
	      "generate:  -j, --json     print one JSON object (text, finish_reason, usage, timings, error)\n"
	      "chat:      --system TEXT  a system message that opens the conversation\n"
	      "summarize: -q, --quiet    no progress on stderr\n"
	      "           --format F     read FILE as auto (by content, the default), text, html, pdf, docx or odt\n"
	      "           --charset C    plain text: its charset (iconv's name; default: detected)\n"
	      "           --max-input-tokens N  cut the document to N tokens first (with --truncate)\n"
	      "           --truncate HOW       head, tail or head+tail (default head)\n"
	      "           --chunk-tokens N     at most N tokens of text per chunk (default: what fits)\n"
	      "           --overlap-tokens N   repeat up to N tokens of a chunk's end in the next (default 0)\n"
	      "           --chunk-max-tokens N each chunk's summary length (default: --max-tokens)\n"
	      "           --max-document-tokens N  refuse longer documents (default 2000000)\n"
	      "\n"
	      "Exit status: 0 ok, 1 a request failed, 2 usage, 3 cannot connect to skvd, 130 interrupted.\n"
	      "See skv(1).\n",
	      stdout);
}

/* ---- options ---- */

enum {
	OPT_TOP_P = 256,
	OPT_TOP_K,
	OPT_SEED,
	OPT_STOP,
	OPT_IGNORE_EOS,
	OPT_TIMEOUT,
	OPT_SYSTEM,
	OPT_FORMAT,
	OPT_CHARSET,
	OPT_MAX_INPUT_TOKENS,
	OPT_TRUNCATE,
	OPT_CHUNK_TOKENS,
	OPT_OVERLAP_TOKENS,
	OPT_CHUNK_MAX_TOKENS,
	OPT_MAX_DOCUMENT_TOKENS,
};

static int parse_common(int opt, const char *arg, struct opts *o)
{
	int64_t i;
	double f;
	char *end;

	switch (opt) {
	case 's':
		o->socket = arg;
		return 0;
	case 'n':
		if (skv_parse_i64(arg, 1, UINT32_MAX, &i) < 0)
			return usage_error("--max-tokens: \"%s\" is not a whole number in [1, %u]", arg, UINT32_MAX);
		o->req.max_tokens = (uint32_t)i;
		return 0;
	case 't':
		if (skv_parse_f64(arg, 0.0, 1e6, &f) < 0)
			return usage_error("--temperature: \"%s\" is not a number >= 0", arg);
		o->req.temperature = (float)f;
		o->req.flags |= SKV_REQUEST_TEMPERATURE;
		return 0;
	case OPT_TOP_P:
		if (skv_parse_f64(arg, 0.0, 1.0, &f) < 0 || f <= 0.0)
			return usage_error("--top-p: \"%s\" is not a number in (0, 1]", arg);
		o->req.top_p = (float)f;
		o->req.flags |= SKV_REQUEST_TOP_P;
		return 0;
	case OPT_TOP_K:
		if (skv_parse_i64(arg, 0, INT32_MAX, &i) < 0)
			return usage_error("--top-k: \"%s\" is not a whole number >= 0", arg);
		o->req.top_k = (uint32_t)i;
		o->req.flags |= SKV_REQUEST_TOP_K;
		return 0;
	case OPT_SEED: {
		errno = 0;
		unsigned long long v = strtoull(arg, &end, 0);
		if (!*arg || *end || errno || arg[strspn(arg, " \t")] == '-')
			return usage_error("--seed: \"%s\" is not a whole number in [0, 2^64)", arg);
		o->req.seed = v;
		o->req.flags |= SKV_REQUEST_SEED;
		return 0;
	}
	case OPT_STOP: {
		if (!*arg)
			return usage_error("--stop: the string is empty");
		const char **s = reallocarray(o->stop, o->n_stop + 1, sizeof(*s));
		if (!s)
			return usage_error("out of memory");
		s[o->n_stop++] = arg;
		o->stop = s;
		return 0;
	}
	case OPT_IGNORE_EOS:
		o->req.flags |= SKV_REQUEST_IGNORE_EOS;
		return 0;
	case OPT_TIMEOUT:
		if (skv_parse_f64(arg, 0.001, 4294967.0, &f) < 0)
			return usage_error("--timeout: \"%s\" is not a number of seconds in [0.001, 4294967]", arg);
		o->req.timeout_ms = (uint32_t)ceil(f * 1000.0);
		return 0;
	case 'h':
		help();
		return -1; /* done: exit 0 */
	}
	return usage_error("unknown option");
}

#define COMMON_LONG_OPTIONS                                                                        \
	{"socket", required_argument, NULL, 's'}, {"max-tokens", required_argument, NULL, 'n'},    \
		{"temperature", required_argument, NULL, 't'},                                     \
		{"top-p", required_argument, NULL, OPT_TOP_P},                                     \
		{"top-k", required_argument, NULL, OPT_TOP_K},                                     \
		{"seed", required_argument, NULL, OPT_SEED},                                       \
		{"stop", required_argument, NULL, OPT_STOP},                                       \
		{"ignore-eos", no_argument, NULL, OPT_IGNORE_EOS},                                 \
		{"timeout", required_argument, NULL, OPT_TIMEOUT}, {"help", no_argument, NULL, 'h'}
#define COMMON_SHORT_OPTIONS "s:n:t:h"

/* Parses a subcommand's options (argv[0] is the command's name); returns 0 with optind at the
 * first operand, -1 when --help was shown, or an exit code. */
static int parse_opts(int argc, char **argv, const struct option *longopts, const char *shortopts, struct opts *o)
{
	int opt, r;
	optind = 0; /* GNU: start over */
	while ((opt = getopt_long(argc, argv, shortopts, longopts, NULL)) != -1) {
		switch (opt) {
		case 'j':
			o->json = true;
			break;
		case 'q':
			o->quiet = true;
			break;
		case OPT_SYSTEM:
			o->system = optarg;
			break;
		case OPT_FORMAT:
			if (skv_doc_format_parse(optarg, &o->doc.format) < 0)
				return usage_error("--format: \"%s\" is not auto, text, html, pdf, docx or odt", optarg);
			break;
		case OPT_CHARSET:
			o->doc.charset = optarg;
			break;
		case OPT_TRUNCATE:
			if (strcmp(optarg, "head") == 0)
				o->sum.truncate = SKV_TRUNCATE_HEAD;
			else if (strcmp(optarg, "tail") == 0)
				o->sum.truncate = SKV_TRUNCATE_TAIL;
			else if (strcmp(optarg, "head+tail") == 0)
				o->sum.truncate = SKV_TRUNCATE_HEAD_TAIL;
			else
				return usage_error("--truncate: \"%s\" is not head, tail or head+tail", optarg);
			break;
		case OPT_MAX_INPUT_TOKENS:
		case OPT_CHUNK_TOKENS:
		case OPT_OVERLAP_TOKENS:
		case OPT_CHUNK_MAX_TOKENS:
		case OPT_MAX_DOCUMENT_TOKENS: {
			int64_t v;
			const char *name = opt == OPT_MAX_INPUT_TOKENS	   ? "--max-input-tokens"
					   : opt == OPT_CHUNK_TOKENS	   ? "--chunk-tokens"
					   : opt == OPT_OVERLAP_TOKENS	   ? "--overlap-tokens"
					   : opt == OPT_CHUNK_MAX_TOKENS   ? "--chunk-max-tokens"
									   : "--max-document-tokens";
			if (skv_parse_i64(optarg, opt == OPT_OVERLAP_TOKENS ? 0 : 1, UINT32_MAX, &v) < 0)
				return usage_error("%s: \"%s\" is not a whole number in [%d, %u]", name, optarg,
						   opt == OPT_OVERLAP_TOKENS ? 0 : 1, UINT32_MAX);
			if (opt == OPT_MAX_INPUT_TOKENS)
				o->sum.max_input_tokens = (uint32_t)v;
			else if (opt == OPT_CHUNK_TOKENS)
				o->sum.chunk_tokens = (uint32_t)v;
			else if (opt == OPT_OVERLAP_TOKENS)
				o->sum.overlap_tokens = (uint32_t)v;
			else if (opt == OPT_CHUNK_MAX_TOKENS)
				o->sum.chunk_max_tokens = (uint32_t)v;
			else
				o->sum.max_document_tokens = (uint64_t)v;
			break;
		}
		case '?':
			return usage_error("%s: bad option", argv[0]);
		default:
			r = parse_common(opt, optarg, o);
			if (r)
				return r;
		}
	}
	o->req.stop = o->stop;
	o->req.n_stop = o->n_stop;
	return 0;
}

/* ---- input ---- */

/* Reads a whole file ('-': stdin), at most max bytes (0: no limit): -EFBIG past it. */
static int read_all(const char *path, size_t max, char **ret, size_t *ret_len)
{
	_cleanup_close_ int fd = -1;
	_cleanup_free_ char *buf = NULL;
	size_t len = 0, cap = 0;

	if (strcmp(path, "-") != 0) {
		fd = open(path, O_RDONLY | O_CLOEXEC);
		if (fd < 0)
			return -errno;
		struct stat st;
		if (fstat(fd, &st) == 0 && S_ISDIR(st.st_mode))
			return -EISDIR;
		if (max && S_ISREG(st.st_mode) && (uint64_t)st.st_size > max)
			return -EFBIG;
	}
	for (;;) {
		if (cap - len < 65536) {
			cap = cap ? cap * 2 : 65536;
			char *b = realloc(buf, cap + 1);
			if (!b)
				return -ENOMEM;
			buf = b;
		}
		ssize_t n = read(fd >= 0 ? fd : STDIN_FILENO, buf + len, cap - len);
		if (n < 0) {
			if (errno == EINTR && !interrupted)
				continue;
			return -errno;
		}
		if (n == 0)
			break;
		len += (size_t)n;
		if (max && len > max)
			return -EFBIG;
	}
	buf[len] = '\0';
	*ret = SKV_TAKE_PTR(buf);
	*ret_len = len;
	return 0;
}

/* ---- connecting and running one request ---- */

static int print_json_error(const char *code, const char *message);

static int open_client(const struct opts *o, struct skv_client **ret)
{
	struct skv_client *c;
	if (skv_client_new(&c) < 0) {
		fputs("skv: out of memory\n", stderr);
		return EXIT_FAILED;
	}
	if (skv_client_connect(c, o->socket) < 0) {
		if (o->json)
			print_json_error("connection_failed", skv_client_errmsg(c));
		fprintf(stderr, "skv: %s\n", skv_client_errmsg(c));
		skv_client_free(c);
		return EXIT_CONNECT;
	}
	*ret = c;
	return EXIT_OK;
}

static bool append(struct result *res, const char *s, size_t n)
{
	if (res->cap - res->len <= n) {
		size_t cap = SKV_MAX(res->cap * 2, res->len + n + 256);
		char *t = realloc(res->text, cap);
		if (!t)
			return false;
		res->text = t;
		res->cap = cap;
	}
	memcpy(res->text + res->len, s, n);
	res->len += n;
	res->text[res->len] = '\0';
	return true;
}

struct progress {
	const char *name; /* shown while waiting for the first token; NULL: no progress */
	uint64_t start_ns;
	bool shown;
};

static void progress_clear(struct progress *p)
{
	if (p && p->shown) {
		fputs("\r\033[K", stderr);
		p->shown = false;
	}
}

/* Submits req and waits for its end, streaming the text to stdout when `stream`. On return,
 * res says how the request ended, or why libskv failed (res->lib_error). Ctrl-C cancels. */
static void run_request(struct skv_client *c, const struct skv_request *req, bool stream, struct progress *prog,
			struct result *res)
{
	struct skv_event ev;
	uint64_t id;
	bool cancel_sent = false, got_text = false;
	int r;

	*res = (struct result){0};
	if (!append(res, "", 0))
		goto oom;
	for (int backoff_ms = 1;; backoff_ms = SKV_MIN(backoff_ms * 2, 32)) {
		r = skv_client_submit(c, req, &id);
		if (r != -EAGAIN)
			break;
		/* skvd has not consumed the previous submissions yet (submit notices if it is gone) */
		struct timespec ts = {.tv_nsec = backoff_ms * 1000000L};
		nanosleep(&ts, NULL);
		if (interrupted) {
			res->user_cancelled = true;
			res->lib_error = -ECANCELED;
			skv_strscpy(res->lib_msg, "interrupted before the request was sent", sizeof(res->lib_msg));
			return;
		}
	}
	if (r < 0) {
		res->lib_error = r;
		skv_strscpy(res->lib_msg, skv_client_errmsg(c), sizeof(res->lib_msg));
		return;
	}
	for (;;) {
		if (interrupted && !cancel_sent) {
			progress_clear(prog);
			r = skv_client_cancel(c, id);
			if (r == 0) {
				cancel_sent = true;
				res->user_cancelled = true;
			} else if (r != -EAGAIN) {
				res->lib_error = r;
				skv_strscpy(res->lib_msg, skv_client_errmsg(c), sizeof(res->lib_msg));
				return;
			}
		}
		int wait_ms = interrupted && !cancel_sent ? 10 : prog && prog->name && !got_text ? 250 : -1;
		r = skv_client_next(c, &ev, wait_ms);
		if (r == -EINTR || r == -ETIMEDOUT) {
			if (r == -ETIMEDOUT && prog && prog->name && !got_text && !interrupted) {
				double s = (double)(skv_now_ns() - prog->start_ns) / 1e9;
				fprintf(stderr, "\r\033[Ksummarize: %s: reading the document... %.1f s", prog->name, s);
				prog->shown = true;
			}
			continue;
		}
		if (r < 0) {
			progress_clear(prog);
			res->lib_error = r;
			skv_strscpy(res->lib_msg, skv_client_errmsg(c), sizeof(res->lib_msg));
			return;
		}
		if (ev.type == SKV_EVENT_DELTA) {
			if (!ev.text_len)
				continue;
			if (!got_text)
				progress_clear(prog);
			got_text = true;
			if (!append(res, ev.text, ev.text_len))
				goto oom;
			if (stream) {
				fwrite(ev.text, 1, ev.text_len, stdout);
				fflush(stdout);
			}
			continue;
		}
		progress_clear(prog);
		res->ended = true;
		res->finish = ev.finish;
		res->error = ev.error;
		skv_strscpy(res->message, ev.message, sizeof(res->message));
		res->prompt_tokens = ev.prompt_tokens;
		res->completion_tokens = ev.completion_tokens;
		res->queue_us = ev.queue_us;
		res->ttft_us = ev.ttft_us;
		res->total_us = ev.total_us;
		res->retry_after_ms = ev.retry_after_ms;
		return;
	}
oom:
	res->lib_error = -ENOMEM;
	skv_strscpy(res->lib_msg, "out of memory", sizeof(res->lib_msg));
}

/* Says on stderr why a request did not succeed; returns the exit code for it. */
static int report(const char *what, const struct result *res)
{
	const char *sep = what ? ": " : "";
	what = what ? what : "";
	if (res->user_cancelled && (!res->ended || res->finish == SKV_FINISH_REASON_CANCELLED)) {
		fprintf(stderr, "skv: %s%scancelled\n", what, sep);
		return EXIT_INTERRUPTED;
	}
	if (res->lib_error) {
		fprintf(stderr, "skv: %s%s%s\n", what, sep, res->lib_msg);
		return EXIT_FAILED;
	}
	if (res->finish == SKV_FINISH_REASON_ERROR) {
		fprintf(stderr, "skv: %s%srequest failed: %s%s%s", what, sep, skv_error_name(res->error),
			res->message[0] ? ": " : "", res->message);
		if (res->error == SKV_ERROR_CODE_BUSY && res->retry_after_ms)
			fprintf(stderr, " (retry after %u ms)", res->retry_after_ms);
		fputc('\n', stderr);
		return EXIT_FAILED;
	}
	if (res->finish == SKV_FINISH_REASON_CANCELLED) {
		fprintf(stderr, "skv: %s%sthe request was cancelled by skvd\n", what, sep);
		return EXIT_FAILED;
	}
	return EXIT_OK;
}

static void end_line(const struct result *res)
{
	if (res->len && res->text[res->len - 1] != '\n')
		fputc('\n', stdout);
	fflush(stdout);
}

/* ---- JSON ---- */

/* The length of the valid UTF-8 character at s[0..n), or 0 (RFC 3629: no overlongs, no
 * surrogates, nothing past U+10FFFF). */
static size_t utf8_char(const unsigned char *s, size_t n)
{
	unsigned c = s[0];
	size_t len = c < 0x80 ? 1 : c >= 0xc2 && c <= 0xdf ? 2 : (c & 0xf0) == 0xe0 ? 3 : c >= 0xf0 && c <= 0xf4 ? 4 : 0;
	if (!len || len > n)
		return 0;
	for (size_t k = 1; k < len; k++)
		if ((s[k] & 0xc0) != 0x80)
			return 0;
	if ((c == 0xe0 && s[1] < 0xa0) || (c == 0xed && s[1] > 0x9f) || (c == 0xf0 && s[1] < 0x90) ||
	    (c == 0xf4 && s[1] > 0x8f))
		return 0;
	return len;
}

/* A JSON string of s[0..n): invalid UTF-8 becomes U+FFFD, so that the output is always valid
 * JSON (json-c copies bytes as they are). */
static struct json_object *json_utf8(const char *s, size_t n)
{
	char *t = malloc(3 * n + 1);
	size_t m = 0;
	if (!t)
		return json_object_new_string("");
	for (size_t i = 0; i < n;) {
		size_t l = utf8_char((const unsigned char *)s + i, n - i);
		if (l) {
			memcpy(t + m, s + i, l);
			m += l;
			i += l;
		} else {
			memcpy(t + m, "\xef\xbf\xbd", 3);
			m += 3;
			i++;
		}
	}
	struct json_object *o = json_object_new_string_len(t, (int)m);
	free(t);
	return o;
}

static void json_print(struct json_object *o)
{
	puts(json_object_to_json_string_ext(o, JSON_C_TO_STRING_PLAIN | JSON_C_TO_STRING_NOSLASHESCAPE));
	fflush(stdout);
}

static struct json_object *json_error(const char *code, const char *message)
{
	struct json_object *e = json_object_new_object();
	json_object_object_add(e, "code", json_object_new_string(code));
	json_object_object_add(e, "message", json_utf8(message, strlen(message)));
	return e;
}

static int print_json_error(const char *code, const char *message)
{
	struct json_object *o = json_object_new_object();
	json_object_object_add(o, "error", json_error(code, message));
	json_print(o);
	json_object_put(o);
	return 0;
}

static struct json_object *json_ms(uint32_t us)
{
	char s[32];
	snprintf(s, sizeof(s), "%.3f", us / 1000.0);
	return json_object_new_double_s(us / 1000.0, s);
}

static void print_json_result(const struct result *res)
{
	struct json_object *o = json_object_new_object();
	struct json_object *usage = json_object_new_object();
	struct json_object *timings = json_object_new_object();
	const char *finish = res->ended ? skv_finish_name(res->finish) : res->user_cancelled ? "cancelled" : "error";

	json_object_object_add(o, "text", json_utf8(res->text ? res->text : "", res->len));
	json_object_object_add(o, "finish_reason", json_object_new_string(finish));
	json_object_object_add(usage, "prompt_tokens", json_object_new_int64(res->prompt_tokens));
	json_object_object_add(usage, "completion_tokens", json_object_new_int64(res->completion_tokens));
	json_object_object_add(o, "usage", usage);
	json_object_object_add(timings, "queue_ms", json_ms(res->queue_us));
	json_object_object_add(timings, "ttft_ms", json_ms(res->ttft_us));
	json_object_object_add(timings, "total_ms", json_ms(res->total_us));
	json_object_object_add(o, "timings", timings);
	if (res->ended && res->finish == SKV_FINISH_REASON_ERROR) {
		struct json_object *e = json_error(skv_error_name(res->error), res->message);
		if (res->error == SKV_ERROR_CODE_BUSY)
			json_object_object_add(e, "retry_after_ms", json_object_new_int64(res->retry_after_ms));
		json_object_object_add(o, "error", e);
	} else if (!res->ended && !res->user_cancelled) {
		const char *code = res->lib_error == -EPROTO		? "protocol_error"
				   : res->lib_error == -ECONNRESET	? "connection_lost"
				   : res->lib_error == -E2BIG || res->lib_error == -EINVAL ? "invalid_request"
											: "client_error";
		json_object_object_add(o, "error", json_error(code, res->lib_msg));
	}
	json_print(o);
	json_object_put(o);
}

/* ---- commands ---- */

static int cmd_generate(int argc, char **argv, struct opts *o)
{
	static const struct option longopts[] = {COMMON_LONG_OPTIONS, {"json", no_argument, NULL, 'j'}, {}};
	_cleanup_free_ char *prompt = NULL;
	struct skv_client *c = NULL;
	struct result res;
	size_t len = 0;
	int r;

	r = parse_opts(argc, argv, longopts, COMMON_SHORT_OPTIONS "j", o);
	if (r)
		return r < 0 ? EXIT_OK : r;
	if (optind >= argc)
		return usage_error("generate: no PROMPT (use '-' to read it from stdin)");
	if (argc - optind == 1 && strcmp(argv[optind], "-") == 0) {
		r = read_all("-", 0, &prompt, &len);
		if (r < 0) {
			fprintf(stderr, "skv: cannot read the prompt from stdin: %s\n", strerror(-r));
			return EXIT_FAILED;
		}
	} else {
		for (int i = optind; i < argc; i++) {
			size_t n = strlen(argv[i]);
			char *p = realloc(prompt, len + n + 2);
			if (!p)
				return usage_error("out of memory");
			prompt = p;
			if (i > optind)
				prompt[len++] = ' ';
			memcpy(prompt + len, argv[i], n + 1);
			len += n;
		}
	}
	if (len == 0)
		return usage_error("generate: the prompt is empty");

	r = open_client(o, &c);
	if (r)
		return r;
	o->req.kind = SKV_PROMPT_TEXT;
	o->req.text = prompt;
	o->req.text_len = len;
	run_request(c, &o->req, !o->json, NULL, &res);
	skv_client_free(c);
	if (o->json)
		print_json_result(&res);
	else
		end_line(&res);
	r = report(NULL, &res);
	result_done(&res);
	return r;
}

struct convo {
	struct skv_message *m;
	size_t n, cap;
};

static bool convo_add(struct convo *cv, enum skv_message_role role, const char *text, size_t len)
{
	if (cv->n == cv->cap) {
		size_t cap = cv->cap ? cv->cap * 2 : 16;
		struct skv_message *m = reallocarray(cv->m, cap, sizeof(*m));
		if (!m)
			return false;
		cv->m = m;
		cv->cap = cap;
	}
	char *copy = malloc(len + 1);
	if (!copy)
		return false;
	memcpy(copy, text, len);
	copy[len] = '\0';
	/* len 0 means strlen, which is 0 for an empty copy too */
	cv->m[cv->n++] = (struct skv_message){.role = role, .content = copy, .len = len};
	return true;
}

static void convo_truncate(struct convo *cv, size_t n)
{
	while (cv->n > n)
		free((char *)cv->m[--cv->n].content);
}

static int cmd_chat(int argc, char **argv, struct opts *o)
{
	static const struct option longopts[] = {COMMON_LONG_OPTIONS, {"system", required_argument, NULL, OPT_SYSTEM}, {}};
	struct skv_client *c = NULL;
	struct convo cv = {0};
	_cleanup_free_ char *line = NULL;
	size_t line_cap = 0, base;
	bool tty = isatty(STDIN_FILENO), failed = false;
	int r;

	r = parse_opts(argc, argv, longopts, COMMON_SHORT_OPTIONS, o);
	if (r)
		return r < 0 ? EXIT_OK : r;
	if (optind < argc)
		return usage_error("chat: unexpected argument \"%s\" (the conversation comes from stdin)", argv[optind]);
	r = open_client(o, &c);
	if (r)
		return r;
	if (o->system && !convo_add(&cv, SKV_MESSAGE_SYSTEM, o->system, strlen(o->system))) {
		fputs("skv: out of memory\n", stderr);
		r = EXIT_FAILED;
		goto out;
	}
	base = cv.n;
	if (tty)
		fprintf(stderr, "Chatting with %s. Type /reset to start over, /quit or Ctrl-D to leave.\n",
			skv_client_model(c)[0] ? skv_client_model(c) : "skvd");
	for (;;) {
		if (tty) {
			fputs("> ", stdout);
			fflush(stdout);
		}
		interrupted = 0;
		errno = 0;
		ssize_t n = getline(&line, &line_cap, stdin);
		if (n < 0) {
			if (errno == EINTR || interrupted) {
				fputc('\n', stdout);
				r = EXIT_INTERRUPTED;
				goto out;
			}
			if (tty)
				fputc('\n', stdout);
			break;
		}
		while (n > 0 && (line[n - 1] == '\n' || line[n - 1] == '\r'))
			line[--n] = '\0';
		if (strspn(line, " \t") == (size_t)n)
			continue;
		if (strcmp(line, "/quit") == 0 || strcmp(line, "/exit") == 0)
			break;
		if (strcmp(line, "/reset") == 0) {
			convo_truncate(&cv, base);
			fputs("(conversation cleared)\n", stderr);
			continue;
		}
		if (!convo_add(&cv, SKV_MESSAGE_USER, line, (size_t)n)) {
			fputs("skv: out of memory\n", stderr);
			r = EXIT_FAILED;
			goto out;
		}
		struct result res;
		o->req.kind = SKV_PROMPT_CHAT;
		o->req.messages = cv.m;
		o->req.n_messages = cv.n;
		run_request(c, &o->req, true, NULL, &res);
		end_line(&res);
		bool ok = res.ended && (res.finish == SKV_FINISH_REASON_STOP || res.finish == SKV_FINISH_REASON_LENGTH);
		if (ok && convo_add(&cv, SKV_MESSAGE_ASSISTANT, res.text, res.len)) {
			result_done(&res);
			continue;
		}
		/* the turn did not happen: forget the question */
		convo_truncate(&cv, cv.n - 1);
		int code = ok ? EXIT_FAILED : report(NULL, &res);
		if (ok)
			fputs("skv: out of memory\n", stderr);
		if (code == EXIT_INTERRUPTED)
			code = EXIT_OK; /* Ctrl-C cancels the answer, not the chat */
		else if (code)
			failed = true;
		if (res.lib_error && res.lib_error != -ECANCELED && res.lib_error != -E2BIG && res.lib_error != -EINVAL) {
			result_done(&res);
			r = EXIT_FAILED; /* the session is gone */
			goto out;
		}
		result_done(&res);
	}
	r = failed ? EXIT_FAILED : EXIT_OK;
out:
	convo_truncate(&cv, 0);
	free(cv.m);
	skv_client_free(c);
	return r;
}

/* Progress of one document on stderr: a bar on a terminal, a line per step otherwise. */
struct sum_progress {
	const char *name;
	bool tty, shown;
	int last_pct;	       /* plain lines: the last tenth printed */
	uint32_t last_stage, last_level;
};

static void sum_progress_clear(struct sum_progress *p)
{
	if (p->shown) {
		fputs("\r\033[K", stderr);
		p->shown = false;
	}
}

static int on_sum_progress(const struct skv_summarize_progress *p, void *userdata)
{
	struct sum_progress *sp = userdata;
	const char *what = p->stage == SKV_SUMMARIZE_COUNTING ? "counting"
			   : p->stage == SKV_SUMMARIZE_CHUNKS ? (p->level ? "combining" : "reading")
			   : p->stage == SKV_SUMMARIZE_FINAL  ? "writing the summary"
							      : "done";
	int pct = p->tokens_total ? (int)(p->tokens_done * 100 / p->tokens_total) : 0;
	pct = SKV_MIN(pct, 100);
	if (p->stage == SKV_SUMMARIZE_DONE) {
		sum_progress_clear(sp);
		return 0;
	}
	if (sp->tty) {
		char bar[31];
		int fill = pct * 30 / 100;
		memset(bar, '#', (size_t)fill);
		memset(bar + fill, '-', (size_t)(30 - fill));
		bar[30] = '\0';
		fprintf(stderr, "\r\033[Ksummarize: %s: [%s] %3d%% %s", sp->name, bar, pct, what);
		if (p->stage == SKV_SUMMARIZE_CHUNKS)
			fprintf(stderr, " (level %u: %u/%u chunks, %llu/%llu tokens)", p->level, p->chunks_done,
				p->chunks_total, (unsigned long long)p->tokens_done, (unsigned long long)p->tokens_total);
		sp->shown = true;
		return 0;
	}
	bool changed = p->stage != sp->last_stage || p->level != sp->last_level;
	if (changed || pct / 10 > sp->last_pct / 10) {
		if (p->stage == SKV_SUMMARIZE_CHUNKS)
			fprintf(stderr, "summarize: %s: %s, level %u: %u/%u chunks, %llu/%llu tokens (%d%%)\n", sp->name, what,
				p->level, p->chunks_done, p->chunks_total, (unsigned long long)p->tokens_done,
				(unsigned long long)p->tokens_total, pct);
		else if (changed)
			fprintf(stderr, "summarize: %s: %s, level %u\n", sp->name, what, p->level);
		sp->last_pct = changed ? pct : pct;
	}
	sp->last_stage = p->stage;
	sp->last_level = p->level;
	return 0;
}

struct sum_text {
	struct sum_progress *prog;
	bool any;
	char last;
};

static int on_sum_text(const char *text, size_t len, void *userdata)
{
	struct sum_text *st = userdata;
	if (!len)
		return 0;
	sum_progress_clear(st->prog);
	fwrite(text, 1, len, stdout);
	fflush(stdout);
	st->any = true;
	st->last = text[len - 1];
	return 0;
}

/* Both callbacks of skv_summarize share one userdata. */
struct sum_cb {
	struct sum_progress prog;
	struct sum_text text;
	bool quiet;
};

static int sum_cb_progress(const struct skv_summarize_progress *p, void *userdata)
{
	struct sum_cb *cb = userdata;
	return cb->quiet ? 0 : on_sum_progress(p, &cb->prog);
}

static int sum_cb_text(const char *text, size_t len, void *userdata)
{
	struct sum_cb *cb = userdata;
	return on_sum_text(text, len, &cb->text);
}

_Static_assert(sizeof(sig_atomic_t) == sizeof(int), "the cancel flag is an int");

static int summarize_one(struct skv_client *c, struct opts *o, const char *path, bool header, bool first)
{
	const char *name = strcmp(path, "-") == 0 ? "stdin" : path;
	_cleanup_free_ char *raw = NULL, *doc = NULL;
	size_t raw_len, len;
	int r;

	r = read_all(path, SKV_DOC_MAX_FILE_BYTES, &raw, &raw_len);
	if (r == -EFBIG) {
		fprintf(stderr, "skv: summarize: %s: larger than the limit of %u MiB for a document file\n", name,
			SKV_DOC_MAX_FILE_BYTES >> 20);
		return EXIT_FAILED;
	}
	if (r < 0) {
		fprintf(stderr, "skv: summarize: %s: %s\n", name, strerror(-r));
		return EXIT_FAILED;
	}
	if (raw_len == 0) {
		fprintf(stderr, "skv: summarize: %s: empty\n", name);
		return EXIT_FAILED;
	}
	/* the document's text (up to doc/'s 64 MiB: longer than a request is fine, it is chunked);
	 * a format named on the command line wins over detection */
	struct skv_doc_opts dopts = o->doc;
	if (dopts.format == SKV_DOC_AUTO)
		dopts.format = skv_doc_detect(raw, raw_len, name);
	struct skv_doc_text dt;
	struct skv_err derr = {0};
	r = skv_doc_extract(raw, raw_len, &dopts, &dt, &derr);
	if (r < 0) {
		fprintf(stderr, "skv: summarize: %s: %s\n", name, derr.msg);
		return EXIT_FAILED;
	}
	doc = dt.text;
	len = dt.len;
	if (!o->quiet && (dt.format != SKV_DOC_TEXT || strcmp(dt.charset, "UTF-8") != 0))
		fprintf(stderr, "summarize: %s: read as %s%s%s, %zu bytes of text\n", name, skv_doc_format_name(dt.format),
			dt.format == SKV_DOC_TEXT ? " in " : "", dt.format == SKV_DOC_TEXT ? dt.charset : "", len);
	bool long_input = len >= LONG_INPUT_BYTES && !o->quiet;
	if (long_input)
		fprintf(stderr, "summarize: %s, %zu bytes\n", name, len);
	if (header)
		printf("%s==> %s <==\n", first ? "" : "\n", name);
	fflush(stdout);

	struct sum_cb cb = {
		.prog = {.name = name, .tty = isatty(STDERR_FILENO), .last_pct = -1},
		.quiet = o->quiet,
	};
	cb.text.prog = &cb.prog;
	struct skv_summarize_opts so = o->sum;
	so.sampling = &o->req;
	so.max_tokens = o->req.max_tokens;
	so.title = name;
	so.on_progress = sum_cb_progress;
	so.on_text = sum_cb_text;
	so.userdata = &cb;
	so.cancel = (const volatile int *)&interrupted;
	struct skv_summary sum;
	uint64_t t0 = skv_now_ns();
	r = skv_summarize(c, doc, len, &so, &sum);
	sum_progress_clear(&cb.prog);
	if (cb.text.any && cb.text.last != '\n')
		fputc('\n', stdout);
	fflush(stdout);
	if (r == -ECANCELED) {
		fprintf(stderr, "skv: %s: cancelled\n", name);
		return EXIT_INTERRUPTED;
	}
	if (r < 0) {
		fprintf(stderr, "skv: summarize: %s: %s\n", name, skv_client_errmsg(c));
		return r == -ECONNRESET || r == -EPROTO || r == -ENOTCONN ? -1 : EXIT_FAILED; /* -1: the session is gone */
	}
	if (long_input || sum.levels)
		fprintf(stderr,
			"summarize: %s: %llu tokens%s, %u level%s of chunk summaries (%u chunk requests, %u re-run), %llu "
			"prompt tokens, %llu generated, %.2f s\n",
			name, (unsigned long long)sum.document_tokens, sum.input_tokens < sum.document_tokens ? " (truncated)" : "",
			sum.levels, sum.levels == 1 ? "" : "s", sum.chunk_requests, sum.rerun_requests,
			(unsigned long long)sum.prompt_tokens, (unsigned long long)sum.completion_tokens,
			(double)(skv_now_ns() - t0) / 1e9);
	skv_summary_done(&sum);
	return EXIT_OK;
}

static int cmd_summarize(int argc, char **argv, struct opts *o)
{
	static const struct option longopts[] = {COMMON_LONG_OPTIONS,
						 {"quiet", no_argument, NULL, 'q'},
						 {"format", required_argument, NULL, OPT_FORMAT},
						 {"charset", required_argument, NULL, OPT_CHARSET},
						 {"max-input-tokens", required_argument, NULL, OPT_MAX_INPUT_TOKENS},
						 {"truncate", required_argument, NULL, OPT_TRUNCATE},
						 {"chunk-tokens", required_argument, NULL, OPT_CHUNK_TOKENS},
						 {"overlap-tokens", required_argument, NULL, OPT_OVERLAP_TOKENS},
						 {"chunk-max-tokens", required_argument, NULL, OPT_CHUNK_MAX_TOKENS},
						 {"max-document-tokens", required_argument, NULL, OPT_MAX_DOCUMENT_TOKENS},
						 {}};
	struct skv_client *c = NULL;
	bool failed = false;
	int r;

	r = parse_opts(argc, argv, longopts, COMMON_SHORT_OPTIONS "q", o);
	if (r)
		return r < 0 ? EXIT_OK : r;
	if (optind >= argc)
		return usage_error("summarize: no FILE (use '-' for stdin)");
	if (o->sum.truncate && !o->sum.max_input_tokens)
		return usage_error("summarize: --truncate needs --max-input-tokens");
	if (o->sum.max_input_tokens && !o->sum.truncate)
		o->sum.truncate = SKV_TRUNCATE_HEAD;
	r = open_client(o, &c);
	if (r)
		return r;
	for (int i = optind; i < argc; i++) {
		r = summarize_one(c, o, argv[i], argc - optind > 1, i == optind);
		if (r == EXIT_INTERRUPTED || r < 0) {
			r = r < 0 ? EXIT_FAILED : r;
			goto out;
		}
		failed |= r != EXIT_OK;
	}
	r = failed ? EXIT_FAILED : EXIT_OK;
out:
	skv_client_free(c);
	return r;
}

int main(int argc, char **argv)
{
	static const struct option longopts[] = {
		{"socket", required_argument, NULL, 's'},
		{"help", no_argument, NULL, 'h'},
		{"version", no_argument, NULL, 'V'},
		{},
	};
	struct opts o = {0};
	int opt, r;

	skv_request_init(&o.req);
	while ((opt = getopt_long(argc, argv, "+s:hV", longopts, NULL)) != -1) {
		switch (opt) {
		case 's':
			o.socket = optarg;
			break;
		case 'h':
			help();
			return EXIT_OK;
		case 'V':
			skv_version_print("skv");
			printf("libskv API %d.%d\n", SKV_VERSION_MAJOR, SKV_VERSION_MINOR);
			return EXIT_OK;
		default:
			return usage_error("bad option");
		}
	}
	if (optind >= argc)
		return usage_error("no COMMAND (generate, chat or summarize)");

	struct sigaction sa = {.sa_handler = on_sigint}; /* no SA_RESTART: waits return EINTR */
	sigemptyset(&sa.sa_mask);
	sigaction(SIGINT, &sa, NULL);

	const char *cmd = argv[optind];
	int sub_argc = argc - optind;
	char **sub_argv = argv + optind;
	if (strcmp(cmd, "generate") == 0)
		r = cmd_generate(sub_argc, sub_argv, &o);
	else if (strcmp(cmd, "chat") == 0)
		r = cmd_chat(sub_argc, sub_argv, &o);
	else if (strcmp(cmd, "summarize") == 0)
		r = cmd_summarize(sub_argc, sub_argv, &o);
	else
		r = usage_error("unknown command \"%s\" (generate, chat or summarize)", cmd);
	free(o.stop);
	return r;
}
