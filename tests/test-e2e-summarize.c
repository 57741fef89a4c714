/* test-e2e-summarize.c: long documents end to end: libskv's skv_summarize and skv_truncate_text
 * and `skv summarize` against the real skvd and skv-worker processes with the tiny model, whose
 * context is made small (1024 tokens) so that a document of 100K tokens needs chunks and levels.
 * The document is model/corpus/prose-en.txt repeated with numbered paragraphs. Counting,
 * progress, cancel, a worker killed mid-way and truncation are checked on the real path. */
#include <errno.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "e2e-util.h"

static char *model;
static char *doc;     /* the long document, ~100K tokens */
static size_t doc_len;

static const char *const small_context[] = {"engine.max_context=1024", "engine.max_seqs=16", NULL};

/* The corpus's paragraphs, numbered, repeated until at least min_bytes. */
static char *make_doc(size_t min_bytes, size_t *ret_len)
{
	char path[512];
	snprintf(path, sizeof(path), "%s/model/corpus/prose-en.txt", tu_tool("SKV_SRCDIR"));
	FILE *f = fopen(path, "r");
	assert_non_null(f);
	static char src[1 << 16];
	size_t n = fread(src, 1, sizeof(src) - 1, f);
	fclose(f);
	src[n] = '\0';
	size_t cap = min_bytes + sizeof(src) * 2, len = 0;
	char *out = malloc(cap);
	assert_non_null(out);
	for (int part = 1; len < min_bytes; part++) {
		int para = 1;
		for (char *p = src; *p;) {
			char *end = strstr(p, "\n\n");
			size_t l = end ? (size_t)(end - p) : strlen(p);
			if (l && l + 64 < cap - len)
				len += (size_t)snprintf(out + len, cap - len, "%sPart %d, paragraph %d. %.*s", len ? "\n\n" : "",
							part, para++, (int)l, p);
			p += l;
			while (*p == '\n')
				p++;
		}
	}
	*ret_len = len;
	return out;
}

/* skvd with the small context, and a client of it. */
static struct skv_client *start(struct e2e *e)
{
	e2e_start(e, model, small_context);
	return e2e_client(e);
}

static void stop(struct e2e *e, struct skv_client *c)
{
	skv_client_free(c);
	assert_int_equal(e2e_stop(e, 10000), 0);
	tu_rmdir(e->dir);
}

/* The document's first part of about `len` bytes, ending at a line break (whole characters). */
static size_t doc_part(size_t len)
{
	while (len < doc_len && doc[len] != '\n')
		len++;
	return len;
}

static uint32_t count_text(struct skv_client *c, const char *text, size_t len)
{
	struct skv_request req;
	struct skv_event fin;
	skv_request_init(&req);
	req.kind = SKV_PROMPT_TEXT;
	req.text = text;
	req.text_len = len;
	req.flags = SKV_REQUEST_COUNT_ONLY;
	assert_int_equal(skv_client_generate(c, &req, NULL, NULL, &fin), 0);
	assert_int_equal(fin.finish, SKV_FINISH_REASON_STOP);
	assert_int_equal(fin.completion_tokens, 0);
	return fin.prompt_tokens;
}

static void greedy(struct skv_request *s)
{
	skv_request_init(s);
	s->flags = SKV_REQUEST_IGNORE_EOS | SKV_REQUEST_TEMPERATURE;
	s->temperature = 0.0f;
}

/* Options for the tests: greedy, through end-of-sequence, short summaries (samp is kept). */
static void test_opts(struct skv_summarize_opts *o, struct skv_request *samp, uint32_t max_tokens, void *seen)
{
	greedy(samp);
	skv_summarize_opts_init(o);
	o->sampling = samp;
	o->max_tokens = max_tokens;
	o->chunk_max_tokens = 16;
	o->userdata = seen;
}

/* What the progress callback saw. */
struct seen {
	uint32_t calls;
	uint32_t last_stage, last_level;
	uint64_t last_done;
	bool monotonic;
	uint64_t level0_done, level0_total;
	uint32_t chunks_total_sum; /* over levels, each level's chunks_total once */
	uint32_t level0_chunks;
	uint32_t max_level;
	bool done_seen;
	bool final_partial; /* FINAL stage progress strictly between 0 and total (inside a prefill) */
	/* actions */
	uint32_t cancel_after_chunks; /* 0: never */
	struct e2e *kill_e;	      /* kill a worker once this many level-0 chunks are done */
	uint32_t kill_after_chunks;
	bool killed;
};

static int on_progress(const struct skv_summarize_progress *p, void *userdata)
{
	struct seen *s = userdata;
	bool same = p->stage == s->last_stage && p->level == s->last_level;
	if (same && p->tokens_done < s->last_done)
		s->monotonic = false;
	if (p->tokens_done > p->tokens_total && p->stage != SKV_SUMMARIZE_DONE)
		s->monotonic = false;
	if (p->stage == SKV_SUMMARIZE_CHUNKS && !same)
		s->chunks_total_sum += p->chunks_total;
	if (p->stage == SKV_SUMMARIZE_CHUNKS && p->level == 0) {
		s->level0_done = p->tokens_done;
		s->level0_total = p->tokens_total;
		s->level0_chunks = p->chunks_total;
		if (s->cancel_after_chunks && p->chunks_done >= s->cancel_after_chunks)
			return 1;
		if (s->kill_e && !s->killed && p->chunks_done >= s->kill_after_chunks) {
			pid_t pids[2];
			assert_true(e2e_workers(s->kill_e, pids, NULL, NULL, 2) >= 1);
			assert_true(pids[0] > 0);
			assert_int_equal(kill(pids[0], SIGKILL), 0);
			s->killed = true;
		}
	}
	if (p->stage == SKV_SUMMARIZE_DONE)
		s->done_seen = true;
	if (p->stage == SKV_SUMMARIZE_FINAL && p->tokens_done > 0 && p->tokens_done < p->tokens_total)
		s->final_partial = true;
	s->max_level = p->level > s->max_level ? p->level : s->max_level;
	s->last_stage = p->stage;
	s->last_level = p->level;
	s->last_done = p->tokens_done;
	s->calls++;
	return 0;
}

/* Count-only: the count equals the prompt_tokens of running the same chat; it is given past
 * the context (which a run refuses); a run of the same request is refused. */
static void test_count_only(void **state)
{
	(void)state;
	struct e2e e;
	struct skv_client *c = start(&e);
	struct skv_message m[2] = {{.role = SKV_MESSAGE_SYSTEM, .content = "Be brief."},
				   {.role = SKV_MESSAGE_USER, .content = "Summarize: the lamp was trimmed twice."}};
	struct skv_request req;
	struct skv_event fin;
	greedy(&req);
	req.kind = SKV_PROMPT_CHAT;
	req.messages = m;
	req.n_messages = 2;
	req.max_tokens = 2;
	assert_int_equal(skv_client_generate(c, &req, NULL, NULL, &fin), 0);
	assert_int_equal(fin.finish, SKV_FINISH_REASON_LENGTH);
	uint32_t ran = fin.prompt_tokens;
	req.flags |= SKV_REQUEST_COUNT_ONLY;
	assert_int_equal(skv_client_generate(c, &req, NULL, NULL, &fin), 0);
	assert_int_equal(fin.finish, SKV_FINISH_REASON_STOP);
	assert_int_equal(fin.prompt_tokens, ran);
	assert_int_equal(fin.completion_tokens, 0);

	/* past the context: counted, while running it is refused */
	size_t len;
	char *big = make_doc(20000, &len);
	uint32_t n = count_text(c, big, len);
	assert_true(n > 1024);
	skv_request_init(&req);
	req.text = big;
	req.text_len = len;
	assert_int_equal(skv_client_generate(c, &req, NULL, NULL, &fin), 0);
	assert_int_equal(fin.error, SKV_ERROR_CODE_CONTEXT);
	free(big);
	assert_int_equal(skv_client_in_flight(c), 0);
	stop(&e, c);
}

/* PROGRESS events inside one long prefill (the test skvd's engine runs 256-token chunks):
 * increasing, below the prompt's length, all before the first token; none without the flag;
 * skv_summarize's progress moves during the final request's prefill. */
static void test_prefill_progress(void **state)
{
	(void)state;
	struct e2e e;
	struct skv_client *c = start(&e);
	size_t len = 200;
	while (len < doc_len && count_text(c, doc, len) < 600)
		len += 200;
	assert_true(len < doc_len);
	for (int with = 0; with < 2; with++) {
		struct skv_request req;
		struct skv_event ev;
		uint64_t id;
		uint32_t n_progress = 0, last = 0;
		bool delta_seen = false;
		greedy(&req);
		req.text = doc;
		req.text_len = len;
		req.max_tokens = 4;
		if (with)
			req.flags |= SKV_REQUEST_PROGRESS;
		assert_int_equal(skv_client_submit(c, &req, &id), 0);
		for (;;) {
			assert_int_equal(skv_client_next(c, &ev, 30000), 0);
			if (ev.type == SKV_EVENT_PROGRESS) {
				assert_false(delta_seen);
				assert_true(ev.prompt_done > last);
				assert_true(ev.prompt_done < ev.prompt_tokens);
				last = ev.prompt_done;
				n_progress++;
			} else if (ev.type == SKV_EVENT_DELTA) {
				delta_seen = true;
			} else {
				if (ev.finish != SKV_FINISH_REASON_LENGTH)
					fail_msg("finish %s: %s", skv_finish_name(ev.finish), ev.message);
				assert_true(ev.prompt_tokens >= 600);
				break;
			}
		}
		if (with)
			assert_true(n_progress >= 2);
		else
			assert_int_equal(n_progress, 0);
	}
	struct skv_request samp;
	struct skv_summarize_opts o;
	struct skv_summary sum;
	struct seen seen = {.monotonic = true};
	test_opts(&o, &samp, 8, &seen);
	o.on_progress = on_progress;
	assert_int_equal(skv_summarize(c, doc, len, &o, &sum), 0);
	assert_int_equal(sum.levels, 0);
	assert_true(seen.final_partial);
	assert_true(seen.monotonic);
	skv_summary_done(&sum);
	stop(&e, c);
}

/* 100K tokens, several levels, progress monotonic and reaching the document's tokens. */
static void test_long_document(void **state)
{
	(void)state;
	struct e2e e;
	struct skv_client *c = start(&e);
	struct skv_request samp;
	struct skv_summarize_opts o;
	struct skv_summary sum;
	struct seen seen = {.monotonic = true};
	test_opts(&o, &samp, 24, &seen);
	o.title = "long.txt";
	o.on_progress = on_progress;
	assert_int_equal(skv_summarize(c, doc, doc_len, &o, &sum), 0);
	assert_true(sum.document_tokens >= 100000);
	assert_true(sum.levels >= 2);
	assert_true(sum.len > 0);
	assert_int_equal(sum.completion_tokens > 0, 1);
	assert_int_equal(sum.finish, SKV_FINISH_REASON_LENGTH); /* ignore-eos: exactly max_tokens */
	assert_true(seen.monotonic);
	assert_true(seen.done_seen);
	assert_int_equal(seen.level0_done, seen.level0_total);
	assert_int_equal(seen.level0_total, sum.document_tokens);
	assert_int_equal(seen.max_level, sum.levels);
	assert_int_equal(sum.chunk_requests, seen.chunks_total_sum);
	assert_int_equal(sum.rerun_requests, 0);
	/* the counted length agrees with counting the whole document at once, within a token per
	 * paragraph break (pieces are counted apart and joined by estimate) */
	uint32_t whole = count_text(c, doc, doc_len) - 1;
	uint64_t diff = whole > sum.document_tokens ? whole - sum.document_tokens : sum.document_tokens - whole;
	assert_true(diff * 50 < whole);
	assert_int_equal(skv_client_in_flight(c), 0);
	skv_summary_done(&sum);
	stop(&e, c);
}

/* Cancel mid-way (from the callback, then by the flag): every request ends, no KV stays held. */
static void test_cancel(void **state)
{
	(void)state;
	struct e2e e;
	struct skv_client *c = start(&e);
	struct skv_request samp;
	struct skv_summarize_opts o;
	struct skv_summary sum;
	struct seen seen = {.monotonic = true, .cancel_after_chunks = 3};
	test_opts(&o, &samp, 16, &seen);
	o.on_progress = on_progress;
	assert_int_equal(skv_summarize(c, doc, doc_part(doc_len / 4), &o, &sum), -ECANCELED);
	assert_int_equal(skv_client_in_flight(c), 0);
	assert_true(seen.level0_chunks > 3);
	/* skvd ended them all: the KV is free again */
	int used = -1;
	for (int i = 0; i < 100 && used != 0; i++) {
		used = e2e_kv_used(&e);
		if (used)
			usleep(20000);
	}
	assert_int_equal(used, 0);
	/* by the flag, before anything ran */
	int flag = 1;
	o.on_progress = NULL;
	o.cancel = &flag;
	assert_int_equal(skv_summarize(c, doc, doc_part(doc_len / 4), &o, &sum), -ECANCELED);
	assert_int_equal(skv_client_in_flight(c), 0);
	/* the session is still good */
	assert_true(count_text(c, "x", 1) >= 1);
	stop(&e, c);
}

/* A worker SIGKILLed mid-way: the summary still comes, and only chunks that were running on it
 * ran again. */
static void test_worker_killed(void **state)
{
	(void)state;
	struct e2e e;
	struct skv_client *c = start(&e);
	struct skv_request samp;
	struct skv_summarize_opts o;
	struct skv_summary sum;
	struct seen seen = {.monotonic = true, .kill_e = &e, .kill_after_chunks = 4};
	test_opts(&o, &samp, 16, &seen);
	o.on_progress = on_progress;
	size_t len = doc_part(doc_len / 4);
	assert_int_equal(skv_summarize(c, doc, len, &o, &sum), 0);
	assert_true(seen.killed);
	assert_true(sum.len > 0);
	/* every chunk ran once, plus the re-runs; fewer re-runs than chunks */
	assert_int_equal(sum.chunk_requests, seen.chunks_total_sum + sum.rerun_requests);
	assert_true(sum.rerun_requests < seen.level0_chunks);
	fprintf(stderr, "worker killed: %u chunks, %u re-run\n", seen.chunks_total_sum, sum.rerun_requests);
	skv_summary_done(&sum);
	stop(&e, c);
}

/* Truncation keeps the head, the tail or both, within max_tokens and close to it. */
static void test_truncate(void **state)
{
	(void)state;
	struct e2e e;
	struct skv_client *c = start(&e);
	static const enum skv_truncate how[] = {SKV_TRUNCATE_HEAD, SKV_TRUNCATE_TAIL, SKV_TRUNCATE_HEAD_TAIL};
	size_t len = doc_part(doc_len / 10);
	uint32_t bos = count_text(c, " ", 1) - 1;
	for (size_t k = 0; k < 3; k++)
		for (uint32_t n = 300; n <= 3000; n *= 10) {
			char *t;
			size_t tl;
			assert_int_equal(skv_truncate_text(c, doc, len, n, how[k], &t, &tl), 0);
			uint32_t got = count_text(c, t, tl) - bos;
			if (got > n || got + 12 < n)
				fail_msg("truncate %d to %u tokens: %u", (int)how[k], n, got);
			if (how[k] != SKV_TRUNCATE_TAIL)
				assert_memory_equal(t, doc, 200); /* the head is the document's start */
			if (how[k] != SKV_TRUNCATE_HEAD)
				assert_memory_equal(t + tl - 200, doc + len - 200, 200);
			if (how[k] == SKV_TRUNCATE_HEAD_TAIL)
				assert_non_null(strstr(t, "\n\n"));
			free(t);
		}
	/* a text that fits is kept whole */
	char *t;
	size_t tl;
	assert_int_equal(skv_truncate_text(c, "A short text.", 13, 100, SKV_TRUNCATE_HEAD, &t, &tl), 0);
	assert_string_equal(t, "A short text.");
	free(t);
	stop(&e, c);
}

/* skv summarize: levels and progress lines on a pipe, truncation, the document limit named. */
static void test_cli(void **state)
{
	(void)state;
	struct e2e e;
	e2e_start(&e, model, small_context);
	char path[256];
	snprintf(path, sizeof(path), "%s/long.txt", e.dir);
	size_t len = doc_part(doc_len / 10);
	FILE *f = fopen(path, "w");
	assert_non_null(f);
	assert_int_equal(fwrite(doc, 1, len, f), len);
	assert_int_equal(fclose(f), 0);
	const char *cli = tu_tool("SKV_CLI");
	if (tu_sh("'%s' --socket '%s' summarize -n 16 --chunk-max-tokens 12 --ignore-eos -t 0 '%s' > '%s/sum.txt' 2> '%s/err.txt' && "
		  "test -s '%s/sum.txt' && grep -q 'reading, level 0: .* (100%%)' '%s/err.txt' && grep -q 'writing the summary, level 1' '%s/err.txt' && "
		  "grep -q 'level.* of chunk summaries' '%s/err.txt'",
		  cli, e.sock, path, e.dir, e.dir, e.dir, e.dir, e.dir, e.dir) != 0) {
		tu_sh("cat '%s/err.txt' >&2", e.dir);
		fail_msg("skv summarize of a long document failed");
	}
	if (tu_sh("'%s' --socket '%s' summarize -n 8 --ignore-eos --max-input-tokens 300 --truncate head+tail '%s' > '%s/sum.txt' "
		  "2> '%s/err.txt' && test -s '%s/sum.txt' && grep -q '(truncated), 0 levels' '%s/err.txt'",
		  cli, e.sock, path, e.dir, e.dir, e.dir, e.dir) != 0) {
		tu_sh("cat '%s/err.txt' >&2", e.dir);
		fail_msg("skv summarize --max-input-tokens failed");
	}
	if (tu_sh("'%s' --socket '%s' summarize -q --max-document-tokens 1000 '%s' 2> '%s/err.txt'; test $? = 1 && "
		  "grep -q 'more than the limit of 1000 (max_document_tokens)' '%s/err.txt'",
		  cli, e.sock, path, e.dir, e.dir) != 0) {
		tu_sh("cat '%s/err.txt' >&2", e.dir);
		fail_msg("skv summarize --max-document-tokens did not refuse");
	}
	if (tu_sh("'%s' --socket '%s' summarize --truncate tail '%s' 2> '%s/err.txt'; test $? = 2", cli, e.sock, path,
		  e.dir) != 0)
		fail_msg("--truncate without --max-input-tokens was not a usage error");
	/* on a terminal (script(1) gives it one), a bar: "[####------] 40% reading" */
	if (tu_sh("script -qec \"'%s' --socket '%s' summarize -n 8 --ignore-eos '%s' > /dev/null\" /dev/null > '%s/tty.txt' && "
		  "grep -q '\\[#*-*\\] *[0-9]*%% reading (level 0: [0-9]*/[0-9]* chunks' '%s/tty.txt' && "
		  "grep -q '\\[##############################\\] 100%% reading' '%s/tty.txt'",
		  cli, e.sock, path, e.dir, e.dir, e.dir) != 0) {
		tu_sh("cat -v '%s/tty.txt' >&2", e.dir);
		fail_msg("no progress bar on a terminal");
	}
	/* --chunk-tokens makes more chunks; --overlap-tokens more again */
	int chunks[3];
	static const char *const chunking[] = {"", "--chunk-tokens 300", "--chunk-tokens 300 --overlap-tokens 100"};
	for (int k = 0; k < 3; k++) {
		char out[256];
		if (tu_sh("'%s' --socket '%s' summarize -n 8 --chunk-max-tokens 8 --ignore-eos %s '%s' > /dev/null 2> '%s/err.txt' && "
			  "grep -o 'level 0: 0/[0-9]*' '%s/err.txt' | head -1 | cut -d/ -f2 > '%s/n.txt'",
			  cli, e.sock, chunking[k], path, e.dir, e.dir, e.dir) != 0)
			fail_msg("skv summarize %s failed", chunking[k]);
		snprintf(out, sizeof(out), "%s/n.txt", e.dir);
		FILE *nf = fopen(out, "r");
		assert_non_null(nf);
		assert_int_equal(fscanf(nf, "%d", &chunks[k]), 1);
		fclose(nf);
	}
	if (!(chunks[0] < chunks[1] && chunks[1] < chunks[2]))
		fail_msg("chunks: %d by default, %d with --chunk-tokens, %d with overlap", chunks[0], chunks[1], chunks[2]);
	/* Ctrl-C in the middle of the 100K-token document: exit 130, nothing left in skvd */
	snprintf(path, sizeof(path), "%s/full.txt", e.dir);
	f = fopen(path, "w");
	assert_non_null(f);
	assert_int_equal(fwrite(doc, 1, doc_len, f), doc_len);
	assert_int_equal(fclose(f), 0);
	if (tu_sh("'%s' --socket '%s' summarize -n 16 --ignore-eos '%s' > /dev/null 2> '%s/int.txt' & p=$!; "
		  "for i in $(seq 1 400); do grep -q 'reading, level 0: [1-9]' '%s/int.txt' && break; sleep 0.05; done; "
		  "kill -INT $p; wait $p; rc=$?; test $rc = 130 && grep -q 'cancelled' '%s/int.txt'",
		  cli, e.sock, path, e.dir, e.dir, e.dir) != 0) {
		tu_sh("cat '%s/int.txt' >&2", e.dir);
		fail_msg("skv summarize was not cancelled by SIGINT");
	}
	int used = -1;
	for (int i = 0; i < 100 && used != 0; i++) {
		used = e2e_kv_used(&e);
		if (used)
			usleep(20000);
	}
	assert_int_equal(used, 0);
	assert_int_equal(e2e_stop(&e, 10000), 0);
	tu_rmdir(e.dir);
}

int main(void)
{
	model = tu_mkmodel("--preset tiny --swiftkv-layers 2 --seed 7");
	doc = make_doc(230000, &doc_len);
	const struct CMUnitTest tests[] = {
		cmocka_unit_test_teardown(test_count_only, e2e_teardown),
		cmocka_unit_test_teardown(test_truncate, e2e_teardown),
		cmocka_unit_test_teardown(test_prefill_progress, e2e_teardown),
		cmocka_unit_test_teardown(test_cancel, e2e_teardown),
		cmocka_unit_test_teardown(test_worker_killed, e2e_teardown),
		cmocka_unit_test_teardown(test_long_document, e2e_teardown),
		cmocka_unit_test_teardown(test_cli, e2e_teardown),
	};
	int r = cmocka_run_group_tests(tests, NULL, NULL);
	free(doc);
	tu_rmdir(model);
	free(model);
	return r;
}
