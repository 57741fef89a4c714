/* libskv-summarize.c: long documents, summarized hierarchically on one session, for every
 * libskv client (the skv CLI, skv-http, any C program). docs/documents.md tells the design.
 *
 * Every length is counted by skvd's own tokenizer with count-only requests (the chat template
 * included), so libskv needs no tokenizer: the text is cut into pieces (paragraphs; an over-long
 * one into sentences, then halves at words, then at characters), each piece is counted, pieces
 * are packed greedily into chunks that leave room for the instructions and the answer, and each
 * assembled chunk is counted once more and shrunk if the estimate was short. Chunks run
 * concurrently (skvd batches them); their summaries become the next level's text until one
 * request holds it all. A chunk whose worker was lost is run again, alone.
 *
 * It is not a scheduler: it keeps at most max_in_flight requests on the session and backs off
 * when skvd says busy. It does not install signal handlers; cancel is a flag or a callback.
 */
#include <errno.h>
#include <poll.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "libskv-internal.h"

#define DEFAULT_MAX_RETRIES 3u
#define MAX_LEVELS 16u	   /* a level must shrink the text: this is only a backstop */
#define MIN_CHUNK_TOKENS 32u /* a context that leaves fewer per chunk is refused */
#define SEP_TOKENS 1u	   /* the estimate of a blank line between pieces; verification corrects */

/* ---- the pure part: pieces and packing ---- */

static bool is_space(unsigned char ch) { return ch == ' ' || ch == '\t' || ch == '\n' || ch == '\r' || ch == '\f' || ch == '\v'; }

/* Trims [a, b) of whitespace; appends it to out[*n] when something is left. */
static void add_trimmed(const char *text, size_t a, size_t b, struct skv_piece *out, size_t *n)
{
	while (a < b && is_space((unsigned char)text[a]))
		a++;
	while (b > a && is_space((unsigned char)text[b - 1]))
		b--;
	if (b > a)
		out[(*n)++] = (struct skv_piece){.off = a, .len = b - a};
}

int skv_split_paragraphs(const char *text, size_t len, struct skv_piece **ret, size_t *ret_n)
{
	/* at most one paragraph per two bytes (text, then a newline) plus one */
	struct skv_piece *out = malloc((len / 2 + 1) * sizeof(*out));
	size_t n = 0, start = 0, line = 0;

	if (!out)
		return -ENOMEM;
	while (line < len) {
		const char *nl = memchr(text + line, '\n', len - line);
		size_t end = nl ? (size_t)(nl - text) + 1 : len;
		bool blank = true;
		for (size_t i = line; i < end && blank; i++)
			blank = is_space((unsigned char)text[i]);
		if (blank) {
			add_trimmed(text, start, line, out, &n);
			start = end;
		}
		line = end;
	}
	add_trimmed(text, start, len, out, &n);
	if (n == 0) {
		free(out);
		out = NULL;
	}
	*ret = out;
	*ret_n = n;
	return 0;
}

/* The length of the sentence end at text[i] (a terminator and its closers), or 0. */
static size_t sentence_end(const char *text, size_t i, size_t end)
{
	static const char *const cjk[] = {"\u3002", "\uff01", "\uff1f"}; /* 。！？ */
	size_t k = 0;
	const unsigned char ch = (unsigned char)text[i];
	if (ch == '.' || ch == '!' || ch == '?')
		k = 1;
	else
		for (size_t j = 0; j < SKV_ARRAY_SIZE(cjk) && !k; j++)
			if (end - i >= 3 && memcmp(text + i, cjk[j], 3) == 0)
				return 3; /* CJK text has no space after the stop */
	if (!k)
		return 0;
	for (;;) { /* closing quotes and brackets stay with their sentence */
		size_t p = i + k;
		if (p < end && strchr("\"')]", text[p]) && text[p])
			k++;
		else if (end - p >= 3 && (memcmp(text + p, "\u201d", 3) == 0 || memcmp(text + p, "\u2019", 3) == 0))
			k += 3;
		else
			break;
	}
	return i + k == end || is_space((unsigned char)text[i + k]) ? k : 0;
}

int skv_split_piece(const char *text, struct skv_piece p, struct skv_piece **ret, size_t *ret_n)
{
	const size_t end = p.off + p.len;
	struct skv_piece *out = malloc((p.len / 2 + 2) * sizeof(*out));
	size_t n = 0, start = p.off;

	if (!out)
		return -ENOMEM;
	/* sentences, and lines */
	for (size_t i = p.off; i < end; i++) {
		size_t k = text[i] == '\n' ? 1 : sentence_end(text, i, end);
		if (!k)
			continue;
		add_trimmed(text, start, i + k, out, &n);
		start = i + k;
		i += k - 1;
	}
	add_trimmed(text, start, end, out, &n);
	if (n >= 2)
		goto done;

	/* two halves at the whitespace nearest the middle */
	n = 0;
	size_t mid = p.off + p.len / 2, best = 0;
	for (size_t d = 0; d <= p.len / 2 && !best; d++) {
		if (mid >= p.off + d && mid - d > p.off && is_space((unsigned char)text[mid - d]))
			best = mid - d;
		else if (mid + d < end && mid + d > p.off && is_space((unsigned char)text[mid + d]))
			best = mid + d;
	}
	if (best) {
		add_trimmed(text, p.off, best, out, &n);
		add_trimmed(text, best, end, out, &n);
		goto done;
	}
	/* two halves at the character boundary nearest the middle */
	size_t cut = mid;
	while (cut > p.off && ((unsigned char)text[cut] & 0xc0) == 0x80)
		cut--;
	if (cut == p.off) {
		cut = mid;
		while (cut < end && ((unsigned char)text[cut] & 0xc0) == 0x80)
			cut++;
	}
	if (cut == p.off || cut >= end) {
		out[n++] = p; /* one character */
		goto done;
	}
	out[n++] = (struct skv_piece){.off = p.off, .len = cut - p.off};
	out[n++] = (struct skv_piece){.off = cut, .len = end - cut};
done:
	*ret = out;
	*ret_n = n;
	return 0;
}

static size_t pack_from(const struct skv_piece *pieces, const uint32_t *tokens, size_t n, size_t start,
			uint64_t budget_tokens, uint32_t sep_tokens, size_t budget_bytes)
{
	uint64_t sum = tokens[start];
	size_t e = start + 1;
	while (e < n) {
		uint64_t t = sum + sep_tokens + tokens[e];
		size_t bytes = pieces[e].off + pieces[e].len - pieces[start].off;
		if (t > budget_tokens || bytes > budget_bytes)
			break;
		sum = t;
		e++;
	}
	return e;
}

size_t skv_pack_end(const struct skv_piece *pieces, const uint32_t *tokens, size_t n, size_t *start, size_t prev_end,
		    uint64_t budget_tokens, uint32_t sep_tokens, size_t budget_bytes)
{
	size_t end = pack_from(pieces, tokens, n, *start, budget_tokens, sep_tokens, budget_bytes);
	if (end <= prev_end && *start < prev_end && prev_end < n) {
		*start = prev_end;
		end = pack_from(pieces, tokens, n, *start, budget_tokens, sep_tokens, budget_bytes);
	}
	return end;
}

size_t skv_pack_next_start(const uint32_t *tokens, size_t n, size_t start, size_t end, uint32_t overlap_tokens)
{
	uint64_t sum = 0;
	size_t k = end;
	if (end >= n)
		return n;
	while (k - 1 > start && sum + tokens[k - 1] <= overlap_tokens) {
		sum += tokens[k - 1];
		k--;
	}
	return k;
}

/* ---- requests on the session ---- */

struct tbuf {
	char *p;
	size_t len, cap;
};

static int tbuf_append(struct tbuf *b, const char *s, size_t n)
{
	if (b->cap - b->len <= n) {
		size_t cap = SKV_MAX(b->cap * 2, b->len + n + 256);
		char *p = realloc(b->p, cap);
		if (!p)
			return -ENOMEM;
		b->p = p;
		b->cap = cap;
	}
	memcpy(b->p + b->len, s, n);
	b->len += n;
	b->p[b->len] = '\0';
	return 0;
}

struct sz;
struct batch;
/* Fills req for item i (pointers valid until the next build). */
typedef int (*build_fn)(struct sz *z, const struct batch *b, size_t i, struct skv_request *req);

enum { ST_PENDING = 0, ST_FLIGHT = 1, ST_DONE = 2 };

struct batch {
	size_t n;
	build_fn build;
	const void *arg;
	uint64_t *ids;	    /* [n] */
	uint8_t *state;	    /* [n] ST_* */
	uint8_t *tries;	    /* [n] worker_lost re-runs */
	uint32_t *tokens;   /* [n] out: prompt_tokens of each final */
	uint64_t *credited; /* [n] progress already counted from PROGRESS events */
	struct tbuf *texts; /* [n] out: generated text (NULL: count-only) */
	const uint64_t *weight; /* [n] progress per item (NULL: 1 each) */
	bool stream;		/* deltas go to on_text */
	bool quiet;		/* no progress calls (a count between stages) */
	const char *what;	/* "level 0 chunk" ... for messages */
};

/* The state of one skv_summarize or skv_truncate_text call. */
struct sz {
	struct skv_client *c;
	const struct skv_summarize_opts *o;
	struct skv_limits lim;
	struct skv_request base; /* the sampling fields */
	uint32_t bos;		 /* tokens a raw prompt gets beyond its text's */
	uint32_t window;	 /* requests in flight at most */
	uint32_t max_retries;
	struct skv_summary *out;
	struct skv_summarize_progress prog;
	struct tbuf scratch; /* the user message being built */
	struct skv_message msgs[2];
	/* the current span (count_span) */
	const char *span;
	size_t span_len;
	/* the current chunk prompt (generate and count_chat) */
	const char *prompt;
	uint32_t hint_words; /* a length hint in the final prompt (0: none) */
	const char *level_text;
	const struct skv_piece *pieces;
	const size_t *chunk_start, *chunk_end; /* [n_chunks] piece ranges */
};

static int fail(struct sz *z, int code, const char *fmt, ...) SKV_PRINTF(3, 4);
static int fail(struct sz *z, int code, const char *fmt, ...)
{
	va_list ap;
	va_start(ap, fmt);
	vsnprintf(z->c->err.msg, sizeof(z->c->err.msg), fmt, ap);
	va_end(ap);
	z->c->err.code = code;
	return code;
}

static bool cancel_asked(struct sz *z) { return z->o->cancel && *z->o->cancel; }

static int progress(struct sz *z)
{
	if (z->o->on_progress && z->o->on_progress(&z->prog, z->o->userdata))
		return -ECANCELED;
	return cancel_asked(z) ? -ECANCELED : 0;
}

static void sleep_ms(int ms)
{
	struct timespec ts = {.tv_sec = ms / 1000, .tv_nsec = (long)(ms % 1000) * 1000000L};
	nanosleep(&ts, NULL);
}

/* Cancels every request of b in flight and waits until each has ended. */
static void batch_abort(struct sz *z, struct batch *b)
{
	struct skv_event ev;
	size_t in_flight = 0;
	for (size_t i = 0; i < b->n; i++) {
		if (b->state[i] != ST_FLIGHT)
			continue;
		in_flight++;
		int r;
		while ((r = skv_client_cancel(z->c, b->ids[i])) == -EAGAIN)
			sleep_ms(1);
		if (r < 0 && r != -ENOENT)
			return; /* the session is gone: nothing is in flight any more */
	}
	while (in_flight) {
		int r = skv_client_next(z->c, &ev, 1000);
		if (r == -EINTR || r == -ETIMEDOUT)
			continue;
		if (r < 0)
			return;
		if (ev.type == SKV_EVENT_FINAL) {
			size_t i = (size_t)(uintptr_t)ev.user_data;
			if (i < b->n && b->state[i] == ST_FLIGHT) {
				b->state[i] = ST_DONE;
				in_flight--;
			}
		}
	}
}

/* Runs every item of b to its end, at most z->window at a time. */
static int batch_run(struct sz *z, struct batch *b)
{
	size_t done = 0, in_flight = 0, next = 0;
	uint32_t window = z->window;
	uint64_t not_before = 0; /* after a busy answer: wait before submitting again */
	bool blocked;		 /* the ring or data area was full: look again soon */
	struct skv_event ev;
	int r;

	while (done < b->n) {
		if (cancel_asked(z)) {
			r = -ECANCELED;
			goto abort;
		}
		/* submit what the window allows */
		blocked = false;
		while (in_flight < window && skv_now_ns() >= not_before) {
			while (next < b->n && b->state[next] != ST_PENDING)
				next++;
			if (next == b->n)
				break;
			struct skv_request req;
			r = b->build(z, b, next, &req);
			if (r < 0)
				goto abort;
			req.user_data = (void *)(uintptr_t)next;
			r = skv_client_submit(z->c, &req, &b->ids[next]);
			if (r == -EAGAIN || r == -EBUSY) {
				blocked = true; /* skvd has not consumed the ring yet, or our in-flight limit */
				break;
			}
			if (r < 0)
				goto abort;
			b->state[next] = ST_FLIGHT;
			in_flight++;
			if (b->texts) {
				z->out->chunk_requests += !b->stream;
				if (b->tries[next])
					z->out->rerun_requests++;
			} else {
				z->out->count_requests++;
			}
		}
		if (!in_flight) {
			sleep_ms(1);
			next = 0;
			continue;
		}
		r = skv_client_next(z->c, &ev, blocked ? 2 : 100);
		if (r == -EINTR || r == -ETIMEDOUT)
			continue;
		if (r < 0)
			goto abort;
		size_t i = (size_t)(uintptr_t)ev.user_data;
		if (i >= b->n || b->state[i] != ST_FLIGHT) {
			r = fail(z, -EPROTO, "an event for a request this call did not make (was something in flight?)");
			goto abort;
		}
		if (ev.type == SKV_EVENT_PROGRESS) {
			/* inside a long prefill: the item's share, in proportion to its prompt done */
			uint64_t w = b->weight ? b->weight[i] : 1;
			uint64_t part = ev.prompt_tokens ? w * ev.prompt_done / ev.prompt_tokens : 0;
			if (part > b->credited[i]) {
				z->prog.tokens_done += part - b->credited[i];
				b->credited[i] = part;
				if (!b->quiet && (r = progress(z)) < 0)
					goto abort;
			}
			continue;
		}
		if (ev.type == SKV_EVENT_DELTA) {
			if (!b->texts || !ev.text_len)
				continue;
			if ((r = tbuf_append(&b->texts[i], ev.text, ev.text_len)) < 0) {
				fail(z, r, "out of memory");
				goto abort;
			}
			if (b->stream && z->o->on_text && z->o->on_text(ev.text, ev.text_len, z->o->userdata)) {
				r = -ECANCELED;
				goto abort;
			}
			continue;
		}
		in_flight--;
		b->state[i] = ST_DONE;
		if (ev.finish == SKV_FINISH_REASON_STOP || ev.finish == SKV_FINISH_REASON_LENGTH) {
			b->tokens[i] = ev.prompt_tokens;
			if (b->texts) {
				z->out->prompt_tokens += ev.prompt_tokens;
				z->out->completion_tokens += ev.completion_tokens;
				if (b->stream)
					z->out->finish = ev.finish;
			}
			done++;
			z->prog.tokens_done += (b->weight ? b->weight[i] : 1) - b->credited[i];
			z->prog.chunks_done += b->texts && !b->stream;
			if (!b->quiet && (r = progress(z)) < 0)
				goto abort;
			continue;
		}
		if (ev.finish == SKV_FINISH_REASON_ERROR && ev.error == SKV_ERROR_CODE_BUSY) {
			/* skvd's queue is full: this one waits, and fewer go at once */
			b->state[i] = ST_PENDING;
			window = (uint32_t)SKV_MAX(in_flight, 1u);
			not_before = skv_now_ns() + (uint64_t)SKV_MAX(ev.retry_after_ms, 10u) * 1000000u;
			next = 0;
			continue;
		}
		if (ev.finish == SKV_FINISH_REASON_ERROR && ev.error == SKV_ERROR_CODE_WORKER_LOST &&
		    b->tries[i] < z->max_retries) {
			if (b->stream && b->texts[i].len) {
				r = fail(z, -EIO, "%s: the worker was lost after the summary began to stream: %s", b->what,
					 ev.message);
				goto abort;
			}
			/* only this one runs again, from the start: its partial text is dropped */
			b->state[i] = ST_PENDING;
			b->tries[i]++;
			if (b->texts)
				b->texts[i].len = 0;
			next = 0;
			continue;
		}
		if (ev.finish == SKV_FINISH_REASON_ERROR)
			r = fail(z, -EIO, "%s %zu: %s%s%s%s", b->what, i, skv_error_name(ev.error), ev.message[0] ? ": " : "",
				 ev.message, ev.error == SKV_ERROR_CODE_WORKER_LOST ? " (re-run too often: max_retries)" : "");
		else
			r = fail(z, -EIO, "%s %zu: cancelled by skvd", b->what, i);
		goto abort;
	}
	return 0;
abort:
	if (r == -ECANCELED)
		fail(z, r, "cancelled");
	batch_abort(z, b);
	return r;
}

/* Allocates a batch of n items (texts when generating). */
static int batch_new(struct batch *b, size_t n, bool texts)
{
	*b = (struct batch){.n = n};
	b->ids = calloc(SKV_MAX(n, 1u), sizeof(*b->ids));
	b->state = calloc(SKV_MAX(n, 1u), 1);
	b->tries = calloc(SKV_MAX(n, 1u), 1);
	b->tokens = calloc(SKV_MAX(n, 1u), sizeof(*b->tokens));
	b->credited = calloc(SKV_MAX(n, 1u), sizeof(*b->credited));
	if (!b->credited)
		return -ENOMEM;
	if (texts)
		b->texts = calloc(SKV_MAX(n, 1u), sizeof(*b->texts));
	return b->ids && b->state && b->tries && b->tokens && (!texts || b->texts) ? 0 : -ENOMEM;
}

static void batch_free(struct batch *b)
{
	if (b->texts)
		for (size_t i = 0; i < b->n; i++)
			free(b->texts[i].p);
	free(b->texts);
	free(b->ids);
	free(b->state);
	free(b->tries);
	free(b->tokens);
	free(b->credited);
	*b = (struct batch){0};
}

/* ---- builders ---- */

/* A raw prompt of piece i (arg: the pieces; z->level_text). */
static int build_count_piece(struct sz *z, const struct batch *b, size_t i, struct skv_request *req)
{
	const struct skv_piece *p = (const struct skv_piece *)b->arg + i;
	skv_request_init(req);
	req->kind = SKV_PROMPT_TEXT;
	req->flags = SKV_REQUEST_COUNT_ONLY;
	req->text = z->level_text + p->off;
	req->text_len = p->len;
	return 0;
}

static int build_count_span(struct sz *z, const struct batch *b, size_t i, struct skv_request *req)
{
	(void)b, (void)i;
	skv_request_init(req);
	req->kind = SKV_PROMPT_TEXT;
	req->flags = SKV_REQUEST_COUNT_ONLY;
	req->text = z->span;
	req->text_len = z->span_len;
	return 0;
}

/* The chat of z->prompt over text[0..len). */
static int build_chat(struct sz *z, const char *text, size_t len, struct skv_request *req)
{
	const struct skv_summarize_opts *o = z->o;
	const char *system = o->system ? o->system : SKV_SUMMARIZE_SYSTEM;
	char hint[96] = "", title[64 + 1024] = "";

	if (z->hint_words)
		snprintf(hint, sizeof(hint), " Write at most about %u words.", z->hint_words);
	if (o->title && *o->title)
		snprintf(title, sizeof(title), "Document: %.1000s\n\n", o->title);
	z->scratch.len = 0;
	if (tbuf_append(&z->scratch, z->prompt, strlen(z->prompt)) < 0 || tbuf_append(&z->scratch, hint, strlen(hint)) < 0 ||
	    tbuf_append(&z->scratch, "\n\n", 2) < 0 || tbuf_append(&z->scratch, title, strlen(title)) < 0 ||
	    tbuf_append(&z->scratch, text, len) < 0)
		return fail(z, -ENOMEM, "out of memory");
	size_t n = 0;
	if (*system)
		z->msgs[n++] = (struct skv_message){.role = SKV_MESSAGE_SYSTEM, .content = system, .len = strlen(system)};
	z->msgs[n++] = (struct skv_message){.role = SKV_MESSAGE_USER, .content = z->scratch.p, .len = z->scratch.len};
	*req = z->base;
	req->kind = SKV_PROMPT_CHAT;
	req->messages = z->msgs;
	req->n_messages = n;
	return 0;
}

/* Chunk i of the current level, to summarize (arg: max_tokens as uintptr_t). */
static int build_chunk(struct sz *z, const struct batch *b, size_t i, struct skv_request *req)
{
	size_t s = z->chunk_start[i], e = z->chunk_end[i];
	size_t off = z->pieces[s].off, end = z->pieces[e - 1].off + z->pieces[e - 1].len;
	int r = build_chat(z, z->level_text + off, end - off, req);
	if (r < 0)
		return r;
	req->max_tokens = (uint32_t)(uintptr_t)b->arg;
	return 0;
}

/* The chat over z->span, counted. */
static int build_count_chat(struct sz *z, const struct batch *b, size_t i, struct skv_request *req)
{
	(void)b, (void)i;
	int r = build_chat(z, z->span, z->span_len, req);
	if (r < 0)
		return r;
	req->flags = SKV_REQUEST_COUNT_ONLY;
	req->max_tokens = 0;
	req->stop = NULL;
	req->n_stop = 0;
	return 0;
}

/* One count-only request: a raw text (chat false) or the chat of z->prompt over it. */
static int count_one(struct sz *z, const char *text, size_t len, bool chat, uint32_t *ret)
{
	struct batch b;
	int r = batch_new(&b, 1, false);
	if (r < 0) {
		batch_free(&b);
		return fail(z, r, "out of memory");
	}
	z->span = text;
	z->span_len = len;
	b.build = chat ? build_count_chat : build_count_span;
	b.quiet = true; /* a single count is not progress */
	b.what = "count";
	struct skv_summarize_progress keep = z->prog;
	r = batch_run(z, &b);
	z->prog = keep;
	if (r == 0)
		*ret = chat ? b.tokens[0] : b.tokens[0] > z->bos ? b.tokens[0] - z->bos : 0;
	batch_free(&b);
	return r;
}

/* ---- a level's pieces, counted ---- */

struct level {
	struct skv_piece *pieces;
	uint32_t *tokens;
	size_t n;
	uint64_t total; /* tokens, separators estimated */
};

static void level_free(struct level *l)
{
	free(l->pieces);
	free(l->tokens);
	*l = (struct level){0};
}

/* Replaces every piece that `over` says is too long by its parts; *ret_split says whether any was. */
static int level_split(struct sz *z, struct level *l, const char *text, size_t max_bytes, uint64_t max_tokens,
		       bool counted, bool *ret_split)
{
	size_t cap = l->n + 16, n = 0;
	struct skv_piece *np = malloc(cap * sizeof(*np));
	uint32_t *nt = calloc(cap, sizeof(*nt));
	bool split = false;

	if (!np || !nt) {
		free(np);
		free(nt);
		return fail(z, -ENOMEM, "out of memory");
	}
	for (size_t i = 0; i < l->n; i++) {
		struct skv_piece *parts = NULL;
		size_t k = 1;
		bool over = l->pieces[i].len > max_bytes || (counted && l->tokens[i] > max_tokens);
		if (over && skv_split_piece(text, l->pieces[i], &parts, &k) < 0) {
			free(np);
			free(nt);
			return fail(z, -ENOMEM, "out of memory");
		}
		if (over && k < 2) {
			free(parts);
			free(np);
			free(nt);
			return fail(z, -E2BIG, "one character is longer than a chunk may be (%llu tokens)",
				    (unsigned long long)max_tokens);
		}
		if (n + k > cap) {
			cap = SKV_MAX(cap * 2, n + k);
			struct skv_piece *p2 = realloc(np, cap * sizeof(*np));
			uint32_t *t2 = p2 ? realloc(nt, cap * sizeof(*nt)) : NULL;
			if (p2)
				np = p2;
			if (t2)
				nt = t2;
			if (!p2 || !t2) {
				free(parts);
				free(np);
				free(nt);
				return fail(z, -ENOMEM, "out of memory");
			}
		}
		if (over) {
			for (size_t j = 0; j < k; j++) {
				np[n] = parts[j];
				nt[n++] = UINT32_MAX; /* not counted yet */
			}
			split = true;
		} else {
			np[n] = l->pieces[i];
			nt[n++] = counted ? l->tokens[i] : UINT32_MAX;
		}
		free(parts);
	}
	free(l->pieces);
	free(l->tokens);
	l->pieces = np;
	l->tokens = nt;
	l->n = n;
	*ret_split = split;
	return 0;
}

/* Counts the pieces whose tokens are UINT32_MAX. */
static int level_count(struct sz *z, struct level *l, const char *text)
{
	size_t n = 0;
	for (size_t i = 0; i < l->n; i++)
		n += l->tokens[i] == UINT32_MAX;
	if (!n)
		return 0;
	struct batch b;
	size_t *idx = malloc(n * sizeof(*idx));
	struct skv_piece *sub = malloc(n * sizeof(*sub));
	uint64_t *w = malloc(n * sizeof(*w));
	int r = batch_new(&b, n, false);
	if (r < 0 || !idx || !sub || !w) {
		r = fail(z, -ENOMEM, "out of memory");
		goto out;
	}
	for (size_t i = 0, k = 0; i < l->n; i++)
		if (l->tokens[i] == UINT32_MAX) {
			idx[k] = i;
			sub[k] = l->pieces[i];
			w[k++] = n == l->n ? l->pieces[i].len : 0; /* progress in bytes, once */
		}
	z->level_text = text;
	b.arg = sub;
	b.build = build_count_piece;
	b.weight = w;
	b.what = "count of piece";
	r = batch_run(z, &b);
	if (r == 0)
		for (size_t k = 0; k < n; k++)
			l->tokens[idx[k]] = b.tokens[k] > z->bos ? b.tokens[k] - z->bos : 0;
out:
	batch_free(&b);
	free(idx);
	free(sub);
	free(w);
	return r;
}

/* Cuts text into pieces of at most max_tokens tokens and max_bytes bytes, each counted. */
static int level_make(struct sz *z, const char *text, size_t len, size_t max_bytes, uint64_t max_tokens,
		      struct level *l)
{
	bool split = true;
	int r;

	*l = (struct level){0};
	if (skv_split_paragraphs(text, len, &l->pieces, &l->n) < 0)
		return fail(z, -ENOMEM, "out of memory");
	if (!l->n)
		return fail(z, -EINVAL, "the text is empty (only whitespace)");
	if (!(l->tokens = calloc(l->n, sizeof(*l->tokens))))
		return fail(z, -ENOMEM, "out of memory");
	/* what one count request could not carry is cut first, by bytes */
	while (split)
		if ((r = level_split(z, l, text, max_bytes, max_tokens, false, &split)) < 0)
			return r;
	z->prog.stage = SKV_SUMMARIZE_COUNTING;
	z->prog.tokens_done = 0;
	z->prog.tokens_total = len;
	z->prog.chunks_done = z->prog.chunks_total = 0;
	if ((r = progress(z)) < 0)
		return fail(z, r, "cancelled");
	for (split = true; split;) {
		if ((r = level_count(z, l, text)) < 0)
			return r;
		if ((r = level_split(z, l, text, max_bytes, max_tokens, true, &split)) < 0)
			return r;
	}
	l->total = 0;
	for (size_t i = 0; i < l->n; i++)
		l->total += l->tokens[i] + (i ? SEP_TOKENS : 0);
	return 0;
}

/* ---- budgets ---- */

/* The prompt tokens a request with `answer` tokens to generate may have. */
static uint64_t prompt_room(const struct skv_limits *lim, uint32_t answer)
{
	uint64_t room = lim->max_prompt_tokens ? lim->max_prompt_tokens : UINT32_MAX;
	if (lim->max_context)
		room = SKV_MIN(room, lim->max_context > answer ? lim->max_context - answer : 0);
	return room;
}

/* The text tokens one request with `prompt` and an answer of `answer` tokens may carry, given
 * the chat's own tokens (counted); *ret_room is the whole prompt's room. */
static int text_budget(struct sz *z, const char *prompt, uint32_t answer, uint64_t *ret_budget, uint64_t *ret_room)
{
	uint32_t overhead;
	uint64_t room = prompt_room(&z->lim, answer);
	z->prompt = prompt;
	int r = count_one(z, "", 0, true, &overhead);
	if (r < 0)
		return r;
	uint64_t margin = 4 + room / 64;
	*ret_room = room;
	*ret_budget = room > overhead + margin ? room - overhead - margin : 0;
	return 0;
}

/* The bytes of text one request may carry besides the instructions. */
static size_t byte_budget(const struct sz *z)
{
	size_t cap = z->lim.data_size ? z->lim.data_size : 64u << 20;
	if (z->lim.max_request_bytes)
		cap = SKV_MIN(cap, (size_t)z->lim.max_request_bytes);
	size_t fixed = 4096 + (z->o->system ? strlen(z->o->system) : sizeof(SKV_SUMMARIZE_SYSTEM)) +
		       (z->o->title ? SKV_MIN(strlen(z->o->title), 1000u) : 0) + strlen(z->prompt ? z->prompt : "");
	for (size_t i = 0; i < z->base.n_stop; i++)
		fixed += strlen(z->base.stop[i]) + 1;
	return cap > fixed * 2 ? cap - fixed : cap / 2;
}

/* ---- setup ---- */

static int sz_init(struct sz *z, struct skv_client *c, const struct skv_summarize_opts *o, struct skv_summary *out)
{
	*z = (struct sz){.c = c, .o = o, .out = out};
	skv_err_clear(&c->err);
	int r = skv_client_limits(c, &z->lim);
	if (r < 0)
		return fail(z, r, "not connected");
	if (skv_client_in_flight(c))
		return fail(z, -EBUSY, "%u requests are in flight on this handle; summarize needs it to itself",
			    skv_client_in_flight(c));
	if (!(c->limits.features & SKV_WIRE_FEATURE_COUNT_ONLY))
		return fail(z, -EOPNOTSUPP, "this skvd cannot count prompts (SKV_REQUEST_COUNT_ONLY): it is older than "
					    "this libskv");
	z->window = z->lim.max_in_flight ? SKV_MIN(z->lim.max_in_flight, 64u) : 16u;
	z->max_retries = o->max_retries ? o->max_retries : DEFAULT_MAX_RETRIES;
	skv_request_init(&z->base);
	if (o->sampling) {
		const struct skv_request *s = o->sampling;
		z->base.flags = s->flags & (SKV_REQUEST_TEMPERATURE | SKV_REQUEST_TOP_P | SKV_REQUEST_TOP_K |
					    SKV_REQUEST_SEED | SKV_REQUEST_IGNORE_EOS);
		z->base.temperature = s->temperature;
		z->base.top_p = s->top_p;
		z->base.top_k = s->top_k;
		z->base.seed = s->seed;
		z->base.timeout_ms = s->timeout_ms;
		z->base.stop = s->stop;
		z->base.n_stop = s->n_stop;
	}
	if (c->limits.features & SKV_WIRE_FEATURE_PROGRESS)
		z->base.flags |= SKV_REQUEST_PROGRESS; /* progress inside each long prefill */
	/* a raw prompt's tokens beyond its text's: one character is one token */
	uint32_t one;
	z->prompt = "";
	z->bos = 0;
	if ((r = count_one(z, " ", 1, false, &one)) < 0)
		return r;
	z->bos = one ? one - 1 : 0;
	return 0;
}

SKV_EXPORT void skv_summarize_opts_init(struct skv_summarize_opts *o) { *o = (struct skv_summarize_opts){0}; }

SKV_EXPORT void skv_summary_done(struct skv_summary *s)
{
	if (!s)
		return;
	free(s->text);
	*s = (struct skv_summary){0};
}

/* ---- truncation ---- */

/* The longest prefix (head) or suffix of piece p with at most budget tokens: its end (head) or
 * start offset, cut after/before whitespace, found by bisection with count-only requests;
 * p.off (head) or p.off + p.len (tail) when not even one word fits. */
static int cut_piece(struct sz *z, const char *text, struct skv_piece p, uint64_t budget, bool head, size_t *ret)
{
	/* the candidate cuts, in order of growing kept length */
	size_t n = 0, *cand = malloc((p.len + 1) * sizeof(*cand));
	if (!cand)
		return fail(z, -ENOMEM, "out of memory");
	bool any_space = false;
	for (size_t i = 1; i < p.len; i++)
		any_space |= is_space((unsigned char)text[p.off + i]);
	for (size_t k = 1; k < p.len; k++) {
		size_t i = head ? p.off + k : p.off + p.len - k;
		unsigned char ch = (unsigned char)text[i];
		bool ok = any_space ? is_space(ch) && !is_space((unsigned char)text[head ? i - 1 : i + 1])
				    : (ch & 0xc0) != 0x80;
		if (ok)
			cand[n++] = i;
	}
	size_t lo = 0, hi = n; /* cand[0..lo) fit; cand[hi..n) do not */
	while (lo < hi) {
		size_t mid = lo + (hi - lo) / 2;
		size_t a = head ? p.off : cand[mid], b = head ? cand[mid] : p.off + p.len;
		while (!head && a < b && is_space((unsigned char)text[a]))
			a++;
		uint32_t t;
		int r = count_one(z, text + a, b - a, false, &t);
		if (r < 0) {
			free(cand);
			return r;
		}
		if (t <= budget)
			lo = mid + 1;
		else
			hi = mid;
	}
	size_t at = lo ? cand[lo - 1] : head ? p.off : p.off + p.len;
	while (!head && at < p.off + p.len && is_space((unsigned char)text[at]))
		at++;
	*ret = at;
	free(cand);
	return 0;
}

/* The byte offset where the first `budget` tokens of l end (head) or the last start (tail). */
static int keep(struct sz *z, const char *text, const struct level *l, uint64_t budget, bool head, size_t *ret)
{
	uint64_t sum = 0;
	for (size_t k = 0; k < l->n; k++) {
		size_t i = head ? k : l->n - 1 - k;
		uint64_t t = l->tokens[i] + (k ? SEP_TOKENS : 0);
		if (sum + t <= budget) {
			sum += t;
			continue;
		}
		/* piece i fits partly */
		uint64_t left = budget - sum;
		if (left <= (k ? SEP_TOKENS : 0)) {
			*ret = !k ? (head ? l->pieces[0].off : l->pieces[l->n - 1].off + l->pieces[l->n - 1].len)
			       : head ? l->pieces[i - 1].off + l->pieces[i - 1].len
				      : l->pieces[i + 1].off;
			return 0;
		}
		return cut_piece(z, text, l->pieces[i], left - (k ? SEP_TOKENS : 0), head, ret);
	}
	*ret = head ? l->pieces[l->n - 1].off + l->pieces[l->n - 1].len : l->pieces[0].off;
	return 0;
}

/* Truncates text to max_tokens (z set up); *ret malloc'd. */
static int truncate_text(struct sz *z, const char *text, size_t len, uint32_t max_tokens, enum skv_truncate how,
			 char **ret, size_t *ret_len, uint64_t *ret_doc_tokens)
{
	struct level l = {0};
	struct tbuf out = {0}, best = {0};
	uint64_t budget = max_tokens;
	uint32_t best_t = 0;
	bool have_best = false;
	int r;

	if (how < SKV_TRUNCATE_NONE || how > SKV_TRUNCATE_HEAD_TAIL)
		return fail(z, -EINVAL, "truncate: %d is not none, head, tail or head+tail", (int)how);
	if (max_tokens == 0)
		return fail(z, -EINVAL, "max_input_tokens: 0; at least 1");
	z->prompt = "";
	r = level_make(z, text, len, byte_budget(z), UINT64_MAX, &l);
	if (r < 0)
		goto out;
	if (ret_doc_tokens)
		*ret_doc_tokens = l.total;
	if (how == SKV_TRUNCATE_NONE || l.total <= max_tokens) {
		r = tbuf_append(&out, text, len) < 0 ? fail(z, -ENOMEM, "out of memory") : 0;
		goto out;
	}
	for (int attempt = 0; attempt < 8; attempt++) {
		size_t head_end = 0, tail_start = SIZE_MAX;
		uint64_t hb = how == SKV_TRUNCATE_HEAD ? budget : how == SKV_TRUNCATE_TAIL ? 0 : budget / 2;
		uint64_t tb = how == SKV_TRUNCATE_HEAD_TAIL ? budget - hb - SEP_TOKENS : how == SKV_TRUNCATE_TAIL ? budget : 0;
		if (hb && (r = keep(z, text, &l, hb, true, &head_end)) < 0)
			goto out;
		if (tb && (r = keep(z, text, &l, tb, false, &tail_start)) < 0)
			goto out;
		size_t text_end = l.pieces[l.n - 1].off + l.pieces[l.n - 1].len;
		bool has_head = head_end > l.pieces[0].off, has_tail = tail_start < text_end;
		if (has_head && has_tail && tail_start < head_end)
			tail_start = head_end;
		out.len = 0;
		if (tbuf_append(&out, "", 0) < 0 ||
		    (has_head && tbuf_append(&out, text + l.pieces[0].off, head_end - l.pieces[0].off) < 0) ||
		    (has_head && has_tail && tbuf_append(&out, "\n\n", 2) < 0) ||
		    (has_tail && tbuf_append(&out, text + tail_start, text_end - tail_start) < 0)) {
			r = fail(z, -ENOMEM, "out of memory");
			goto out;
		}
		/* the estimate joined pieces by adding their counts: the whole is counted once */
		uint32_t t = 0;
		if (out.len && (r = count_one(z, out.p, out.len, false, &t)) < 0)
			goto out;
		if (t <= max_tokens && (!have_best || t > best_t)) {
			struct tbuf x = best; /* the closest fit so far */
			best = out;
			out = x;
			best_t = t;
			have_best = true;
		}
		/* the estimate added the pieces' counts: aim again by the difference, within a word */
		if (t <= max_tokens && max_tokens - t <= 2)
			break;
		if (t > max_tokens)
			budget -= SKV_MIN(budget - 1, (uint64_t)(t - max_tokens));
		else
			budget += max_tokens - t;
	}
	free(out.p);
	out = best;
	best = (struct tbuf){0};
	if (!have_best)
		r = fail(z, -EIO, "truncate: could not cut the text to %u tokens", max_tokens);
out:
	level_free(&l);
	if (r == 0) {
		*ret = out.p ? out.p : strdup("");
		*ret_len = out.len;
		if (!*ret)
			return fail(z, -ENOMEM, "out of memory");
	} else {
		free(out.p);
	}
	free(best.p);
	return r;
}

SKV_EXPORT int skv_truncate_text(struct skv_client *c, const char *text, size_t len, uint32_t max_tokens,
				 enum skv_truncate how, char **ret, size_t *ret_len)
{
	struct skv_summarize_opts o;
	struct skv_summary out = {0};
	struct sz z;
	skv_summarize_opts_init(&o);
	if (!c || !text)
		return -EINVAL;
	int r = sz_init(&z, c, &o, &out);
	if (r == 0)
		r = truncate_text(&z, text, len, max_tokens, how, ret, ret_len, NULL);
	free(z.scratch.p);
	return r;
}

/* ---- summarize ---- */

/* Runs the final request over text[0..len) with z->prompt; the summary goes into out. */
static int run_final(struct sz *z, const char *text, size_t len, uint32_t max_tokens, uint64_t tokens)
{
	struct batch b;
	int r = batch_new(&b, 1, true);
	if (r < 0) {
		batch_free(&b);
		return fail(z, r, "out of memory");
	}
	z->prog.stage = SKV_SUMMARIZE_FINAL;
	z->prog.tokens_done = 0;
	z->prog.tokens_total = tokens;
	z->prog.chunks_done = 0;
	z->prog.chunks_total = 1;
	if ((r = progress(z)) < 0) {
		batch_free(&b);
		return fail(z, r, "cancelled");
	}
	uint64_t w = tokens;
	b.weight = &w;
	b.stream = true;
	b.what = "final summary";
	struct {
		struct skv_piece piece;
		size_t s, e;
	} one = {{0, len}, 0, 1};
	z->level_text = text;
	z->pieces = &one.piece;
	z->chunk_start = &one.s;
	z->chunk_end = &one.e;
	b.build = build_chunk;
	b.arg = (const void *)(uintptr_t)max_tokens;
	r = batch_run(z, &b);
	if (r == 0) {
		z->out->text = b.texts[0].p ? b.texts[0].p : strdup("");
		z->out->len = b.texts[0].len;
		b.texts[0].p = NULL;
		if (!z->out->text)
			r = fail(z, -ENOMEM, "out of memory");
	}
	batch_free(&b);
	return r;
}

/* Summarizes the chunks of level l of text; their summaries, joined by blank lines, in *ret. */
static int run_chunks(struct sz *z, const char *text, const struct level *l, uint64_t budget, uint64_t room,
		      size_t max_bytes, uint32_t answer, struct tbuf *ret)
{
	const struct skv_summarize_opts *o = z->o;
	size_t cap = 16, n = 0, start = 0;
	size_t *cs = malloc(cap * sizeof(*cs)), *ce = malloc(cap * sizeof(*ce));
	uint64_t *w = malloc(cap * sizeof(*w));
	struct batch b = {0};
	int r = 0;

	if (!cs || !ce || !w) {
		r = fail(z, -ENOMEM, "out of memory");
		goto out;
	}
	/* pack, then count each chunk as it will be sent and shrink it while it is too long */
	size_t prev_end = 0;
	while (start < l->n) {
		size_t end = skv_pack_end(l->pieces, l->tokens, l->n, &start, prev_end, budget, SEP_TOKENS, max_bytes);
		for (;;) {
			uint32_t t;
			size_t a = l->pieces[start].off, e = l->pieces[end - 1].off + l->pieces[end - 1].len;
			if ((r = count_one(z, text + a, e - a, true, &t)) < 0)
				goto out;
			if (t <= room)
				break;
			if (end - start == 1) {
				r = fail(z, -EIO, "a piece of %u tokens does not fit a chunk of %llu (counted %u with the "
						  "instructions)", l->tokens[start], (unsigned long long)budget, t);
				goto out;
			}
			end--;
		}
		if (n == cap) {
			cap *= 2;
			size_t *a2 = realloc(cs, cap * sizeof(*cs));
			if (a2)
				cs = a2;
			size_t *b2 = realloc(ce, cap * sizeof(*ce));
			if (b2)
				ce = b2;
			uint64_t *w2 = realloc(w, cap * sizeof(*w));
			if (w2)
				w = w2;
			if (!a2 || !b2 || !w2) {
				r = fail(z, -ENOMEM, "out of memory");
				goto out;
			}
		}
		cs[n] = start;
		ce[n] = end;
		w[n] = 0;
		for (size_t i = SKV_MAX(start, prev_end); i < end; i++)
			w[n] += l->tokens[i] + (i ? SEP_TOKENS : 0);
		n++;
		prev_end = end;
		start = skv_pack_next_start(l->tokens, l->n, start, end, o->overlap_tokens);
	}

	if ((r = batch_new(&b, n, true)) < 0) {
		r = fail(z, r, "out of memory");
		goto out;
	}
	z->level_text = text;
	z->pieces = l->pieces;
	z->chunk_start = cs;
	z->chunk_end = ce;
	b.build = build_chunk;
	b.arg = (const void *)(uintptr_t)answer;
	b.weight = w;
	b.what = z->prog.level ? "combine chunk" : "chunk";
	z->prog.stage = SKV_SUMMARIZE_CHUNKS;
	z->prog.tokens_done = 0;
	z->prog.tokens_total = 0;
	for (size_t i = 0; i < n; i++)
		z->prog.tokens_total += w[i];
	z->prog.chunks_done = 0;
	z->prog.chunks_total = (uint32_t)n;
	if ((r = progress(z)) < 0) {
		fail(z, r, "cancelled");
		goto out;
	}
	if ((r = batch_run(z, &b)) < 0)
		goto out;
	ret->len = 0;
	for (size_t i = 0; i < n; i++) {
		struct skv_piece *ps = NULL;
		size_t np = 0;
		/* a summary is its trimmed text; an empty one adds nothing */
		if (!b.texts[i].len || skv_split_paragraphs(b.texts[i].p, b.texts[i].len, &ps, &np) < 0 || !np) {
			free(ps);
			continue;
		}
		size_t a = ps[0].off, e = ps[np - 1].off + ps[np - 1].len;
		free(ps);
		if ((ret->len && tbuf_append(ret, "\n\n", 2) < 0) || tbuf_append(ret, b.texts[i].p + a, e - a) < 0) {
			r = fail(z, -ENOMEM, "out of memory");
			goto out;
		}
	}
	if (!ret->len)
		r = fail(z, -EIO, "level %u: every chunk summary came back empty", z->prog.level);
out:
	batch_free(&b);
	free(cs);
	free(ce);
	free(w);
	return r;
}

SKV_EXPORT int skv_summarize(struct skv_client *c, const char *text, size_t len, const struct skv_summarize_opts *o,
			     struct skv_summary *ret)
{
	struct skv_summarize_opts defaults;
	struct skv_summary out = {0};
	struct tbuf cur = {0}, next = {0};
	struct level l = {0};
	struct sz z;
	int r;

	if (!c || !ret || (!text && len))
		return -EINVAL;
	if (!o) {
		skv_summarize_opts_init(&defaults);
		o = &defaults;
	}
	if ((r = sz_init(&z, c, o, &out)) < 0)
		goto out;
	for (size_t i = 0; i < SKV_ARRAY_SIZE(o->reserved); i++)
		if (o->reserved[i]) {
			r = fail(&z, -EINVAL, "summarize options: reserved fields must be zero (start from "
					      "skv_summarize_opts_init)");
			goto out;
		}
	uint64_t max_doc = o->max_document_tokens ? o->max_document_tokens : SKV_SUMMARIZE_MAX_DOCUMENT_TOKENS;
	uint32_t max_tokens = o->max_tokens ? o->max_tokens : SKV_SUMMARIZE_MAX_TOKENS;
	if (z.lim.max_new_tokens)
		max_tokens = SKV_MIN(max_tokens, z.lim.max_new_tokens);
	if (z.lim.max_context)
		max_tokens = SKV_MIN(max_tokens, z.lim.max_context / 2);
	uint32_t chunk_answer = o->chunk_max_tokens ? o->chunk_max_tokens : max_tokens;
	if (z.lim.max_context)
		chunk_answer = SKV_MIN(chunk_answer, z.lim.max_context / 4);
	if (z.lim.max_new_tokens)
		chunk_answer = SKV_MIN(chunk_answer, z.lim.max_new_tokens);
	chunk_answer = SKV_MAX(chunk_answer, 1u);
	const char *doc_prompt = o->document_prompt ? o->document_prompt : SKV_SUMMARIZE_DOCUMENT_PROMPT;
	const char *chunk_prompt = o->chunk_prompt ? o->chunk_prompt : SKV_SUMMARIZE_CHUNK_PROMPT;
	const char *combine_prompt = o->combine_prompt ? o->combine_prompt : SKV_SUMMARIZE_COMBINE_PROMPT;

	if (o->truncate != SKV_TRUNCATE_NONE && o->max_input_tokens) {
		char *t;
		size_t tl;
		if ((r = truncate_text(&z, text, len, o->max_input_tokens, o->truncate, &t, &tl, &out.document_tokens)) < 0)
			goto out;
		cur.p = t;
		cur.len = tl;
	} else if (tbuf_append(&cur, text, len) < 0) {
		r = fail(&z, -ENOMEM, "out of memory");
		goto out;
	}

	uint64_t prev_total = UINT64_MAX;
	for (z.prog.level = 0;; z.prog.level++) {
		uint64_t chunk_budget, chunk_room, final_budget, final_room;
		const char *final_prompt = z.prog.level ? combine_prompt : doc_prompt;
		const char *part_prompt = z.prog.level ? combine_prompt : chunk_prompt;
		if (z.prog.level >= MAX_LEVELS) {
			r = fail(&z, -EIO, "%u levels of summaries and still too long", MAX_LEVELS);
			goto out;
		}
		z.hint_words = 0;
		if ((r = text_budget(&z, part_prompt, chunk_answer, &chunk_budget, &chunk_room)) < 0)
			goto out;
		if (o->chunk_tokens)
			chunk_budget = SKV_MIN(chunk_budget, (uint64_t)o->chunk_tokens);
		if (chunk_budget < MIN_CHUNK_TOKENS || chunk_budget < 2ull * chunk_answer) {
			r = fail(&z, -E2BIG, "a chunk can hold only %llu tokens of text beside the instructions and a %u-token "
					     "answer in the context of %u tokens; summaries would not shrink (use a smaller "
					     "chunk_max_tokens or a larger context)",
				 (unsigned long long)chunk_budget, chunk_answer, z.lim.max_context);
			goto out;
		}
		z.hint_words = max_tokens * 3 / 4;
		if ((r = text_budget(&z, final_prompt, max_tokens, &final_budget, &final_room)) < 0)
			goto out;
		z.hint_words = 0;
		z.prompt = part_prompt;
		level_free(&l);
		if ((r = level_make(&z, cur.p, cur.len, byte_budget(&z), chunk_budget, &l)) < 0)
			goto out;
		if (z.prog.level == 0) {
			z.prog.document_tokens = l.total;
			out.input_tokens = l.total;
			if (!out.document_tokens)
				out.document_tokens = l.total;
			if (l.total > max_doc) {
				r = fail(&z, -EFBIG, "the document has %llu tokens, more than the limit of %llu "
						     "(max_document_tokens)", (unsigned long long)l.total,
					 (unsigned long long)max_doc);
				goto out;
			}
		} else if (l.total >= prev_total) {
			r = fail(&z, -EIO, "level %u: the summaries (%llu tokens) are no shorter than their text (%llu); "
					   "lower chunk_max_tokens", z.prog.level, (unsigned long long)l.total,
				 (unsigned long long)prev_total);
			goto out;
		}
		prev_total = l.total;
		if (l.total <= final_budget) {
			/* one request holds it all: counted as sent, it is the last */
			size_t a = l.pieces[0].off, e = l.pieces[l.n - 1].off + l.pieces[l.n - 1].len;
			uint32_t t;
			z.prompt = final_prompt;
			z.hint_words = max_tokens * 3 / 4;
			if ((r = count_one(&z, cur.p + a, e - a, true, &t)) < 0)
				goto out;
			if (t <= final_room && e - a <= byte_budget(&z)) {
				if ((r = run_final(&z, cur.p + a, e - a, max_tokens, l.total)) < 0)
					goto out;
				break;
			}
			z.hint_words = 0;
			z.prompt = part_prompt;
		}
		next.len = 0;
		if ((r = run_chunks(&z, cur.p, &l, chunk_budget, chunk_room, byte_budget(&z), chunk_answer, &next)) < 0)
			goto out;
		out.levels++;
		struct tbuf t = cur;
		cur = next;
		next = t;
	}
	z.prog.stage = SKV_SUMMARIZE_DONE;
	z.prog.tokens_done = z.prog.tokens_total;
	if (o->on_progress)
		o->on_progress(&z.prog, o->userdata);
	*ret = out;
	out.text = NULL;
	r = 0;
out:
	skv_summary_done(&out);
	level_free(&l);
	free(cur.p);
	free(next.p);
	free(z.scratch.p);
	return r;
}
