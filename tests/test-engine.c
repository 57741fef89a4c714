/* test-engine.c: the engine step and the scheduler on the CPU backend with tiny synthetic models.
 *
 * The engine must give the same logits for a sequence whatever the chunking of its prompt and
 * whatever else shares its steps (within fp32 summation noise: BLAS may order sums differently
 * for different batch sizes); the scheduler must keep that true through preemption, free every
 * block it took, and end cancelled requests at once. */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "local.h"
#include "test-util.h"

#define TOL 2e-5 /* relative, fp32 with different GEMM batch sizes */

static struct skv_local *open_sched(const char *dir, int swiftkv, uint32_t blocks, uint32_t batch, uint32_t seqs,
				    uint32_t mixed, enum skv_admission admission)
{
	struct skv_local_params p = {
		.model_dir = dir,
		.swiftkv = swiftkv,
		.threads = 2,
		.max_batch_tokens = batch,
		.mixed_batch_tokens = mixed,
		.admission = admission,
		.max_seqs = seqs,
		.max_context = 256,
		.num_blocks = blocks,
		.keep_logits = true,
	};
	struct skv_local *l = NULL;
	struct skv_err err = {0};
	if (skv_local_open(&p, &l, &err) < 0)
		fail_msg("%s", err.msg);
	return l;
}

static struct skv_local *open_model(const char *dir, int swiftkv, uint32_t blocks, uint32_t batch, uint32_t seqs)
{
	return open_sched(dir, swiftkv, blocks, batch, seqs, 0, SKV_ADMIT_EAGER);
}

static uint32_t lcg(uint64_t *s)
{
	*s = *s * 6364136223846793005ull + 1442695040888963407ull;
	return (uint32_t)(*s >> 33);
}

/* A sequence driven by hand through the engine: its tokens, a shuffled block table, progress. */
struct hseq {
	int32_t tokens[256];
	uint32_t n_prompt, n_total, computed;
	int32_t blocks[16];
	float logits[8][4096]; /* logits of each generated token, greedy */
	uint32_t n_gen, want_gen;
};

static void hseq_init(struct hseq *q, uint64_t seed, uint32_t n_prompt, uint32_t vocab, const int32_t *blocks,
		      uint32_t want_gen)
{
	memset(q, 0, sizeof(*q));
	for (uint32_t i = 0; i < n_prompt; i++)
		q->tokens[i] = (int32_t)(lcg(&seed) % vocab);
	q->n_prompt = q->n_total = n_prompt;
	memcpy(q->blocks, blocks, sizeof(q->blocks));
	q->want_gen = want_gen;
}

/* Runs several hand-driven sequences to completion. Each step, each unfinished sequence takes a
 * chunk of random size (1..max_chunk) of what it has left; which sequences join a step is random
 * too. Greedy: the sampled id is appended. */
static void run_hand(struct skv_local *l, struct hseq *qs, uint32_t n, uint32_t max_chunk, uint64_t seed)
{
	const uint32_t V = l->hdr->config.vocab;
	struct skv_step_seq steps[8];
	struct hseq *who[8];
	struct skv_err err = {0};
	assert_true(n <= 8 && V <= 4096);
	for (;;) {
		uint32_t k = 0;
		for (uint32_t i = 0; i < n; i++) {
			struct hseq *q = &qs[i];
			if (q->n_gen == q->want_gen || (n > 1 && lcg(&seed) % 4 == 0))
				continue;
			uint32_t left = q->n_total - q->computed;
			uint32_t c = 1 + lcg(&seed) % max_chunk;
			c = c < left ? c : left;
			steps[k] = (struct skv_step_seq){
				.n_tokens = c,
				.start_pos = q->computed,
				.tokens = q->tokens + q->computed,
				.block_table = q->blocks,
				.n_blocks = 16,
				.want_logits = q->computed + c == q->n_total,
				.sample = {.temperature = 0.0f, .top_p = 1.0f},
			};
			who[k++] = q;
		}
		bool done = true;
		for (uint32_t i = 0; i < n; i++)
			done &= qs[i].n_gen == qs[i].want_gen;
		if (done)
			return;
		if (k == 0)
			continue;
		struct skv_step_out out;
		if (skv_engine_step(l->engine, steps, k, &out, &err) < 0)
			fail_msg("%s", err.msg);
		uint32_t row = 0;
		for (uint32_t i = 0; i < k; i++) {
			struct hseq *q = who[i];
			q->computed += steps[i].n_tokens;
			if (!steps[i].want_logits)
				continue;
			memcpy(q->logits[q->n_gen], out.logits + (size_t)row * V, V * sizeof(float));
			/* greedy: the engine's sampled id is the argmax of the row */
			int32_t best = 0;
			for (uint32_t v = 1; v < V; v++)
				if (out.logits[(size_t)row * V + v] > out.logits[(size_t)row * V + best])
					best = (int32_t)v;
			assert_int_equal(out.ids[row], best);
			q->tokens[q->n_total++] = out.ids[row];
			q->n_gen++;
			row++;
		}
		assert_int_equal(row, out.n);
	}
}

static void compare(const struct hseq *a, const struct hseq *b, uint32_t V)
{
	assert_int_equal(a->n_gen, b->n_gen);
	for (uint32_t g = 0; g < a->n_gen; g++) {
		double e = tu_rel_err(a->logits[g], b->logits[g], V);
		if (e > TOL)
			fail_msg("generated token %u: relative error %.3g > %g", g, e, TOL);
		assert_int_equal(a->tokens[a->n_prompt + g], b->tokens[b->n_prompt + g]);
	}
}

static void chunking_and_batching(const char *args, int swiftkv)
{
	char *dir = tu_mkmodel(args);
	struct skv_local *l = open_model(dir, swiftkv, 64, 128, 8);
	const uint32_t V = l->hdr->config.vocab;
	int32_t blocks[4][16];
	/* non-contiguous, interleaved block tables */
	for (int s = 0; s < 4; s++)
		for (int b = 0; b < 16; b++)
			blocks[s][b] = (b * 4 + s * 7 + 3) % 64;
	for (int s = 0; s < 4; s++)
		for (int b = 0; b < 16; b++)
			for (int t = 0; t < 4; t++)
				for (int c = 0; c < 16; c++)
					if ((t != s || c != b) && blocks[t][c] == blocks[s][b])
						fail_msg("test bug: block tables overlap");

	static struct hseq alone[4], together[4];
	const uint32_t lens[4] = {70, 1, 33, 17};
	for (int s = 0; s < 4; s++) {
		hseq_init(&alone[s], 100 + s, lens[s], V, blocks[s], 6);
		run_hand(l, &alone[s], 1, 1000, 1); /* the whole prompt in one step */
	}
	for (uint64_t trial = 0; trial < 3; trial++) {
		for (int s = 0; s < 4; s++)
			hseq_init(&together[s], 100 + s, lens[s], V, blocks[s], 6);
		/* random chunks, random company, decodes mixed with prefill chunks */
		run_hand(l, together, 4, trial == 0 ? 3 : 16, 7 + trial);
		for (int s = 0; s < 4; s++)
			compare(&together[s], &alone[s], V);
	}
	skv_local_close(l);
	tu_rmdir(dir);
	free(dir);
}

static void test_chunking_plain(void **state)
{
	(void)state;
	chunking_and_batching("--preset tiny --seed 1", -1);
}

static void test_chunking_swiftkv(void **state)
{
	(void)state;
	chunking_and_batching("--preset tiny --seed 2 --swiftkv-layers 2", 1);
}

static void test_chunking_acrosskv(void **state)
{
	(void)state;
	chunking_and_batching("--preset tiny --seed 3 --layers 5 --swiftkv-layers 1 --group 2 --kv-heads 1", 1);
}

/* ---- scheduler ---- */

struct collect {
	int32_t ids[16][64];
	uint32_t n[16];
	enum skv_finish finish[16];
	uint32_t events;
};

static void on_event(void *ud, const struct skv_sched_event *ev)
{
	struct collect *c = ud;
	assert_true(ev->id < 16);
	if (ev->token >= 0) {
		assert_true(c->n[ev->id] < 64);
		c->ids[ev->id][c->n[ev->id]++] = ev->token;
		assert_int_equal(c->n[ev->id], ev->n_generated);
	}
	if (ev->finish != SKV_FINISH_NONE) {
		assert_int_equal(c->finish[ev->id], SKV_FINISH_NONE);
		c->finish[ev->id] = ev->finish;
	}
	c->events++;
}

static void drain(struct skv_local *l, struct collect *c)
{
	struct skv_err err = {0};
	int steps = 0;
	while (!skv_sched_idle(l->sched)) {
		if (skv_sched_step(l->sched, l->engine, on_event, c, &err) < 0)
			fail_msg("%s", err.msg);
		assert_true(++steps < 10000);
	}
}

static void make_prompt(int32_t *p, uint32_t n, uint32_t V, uint64_t seed)
{
	for (uint32_t i = 0; i < n; i++)
		p[i] = (int32_t)(lcg(&seed) % V);
}

static void test_sched_preemption(void **state)
{
	(void)state;
	char *dir = tu_mkmodel("--preset tiny --seed 4 --swiftkv-layers 2");
	/* ample arena: every request alone */
	struct skv_local *big = open_model(dir, 1, 256, 64, 8);
	/* 24 blocks of 16 tokens for 8 requests of up to ~60 tokens: preemption must happen */
	struct skv_local *small = open_model(dir, 1, 24, 32, 8);
	const uint32_t V = big->hdr->config.vocab;
	struct skv_seq_params sp = {.max_tokens = 24, .ignore_eos = true, .sampling = {.temperature = 0.0f, .top_p = 1.0f}};
	struct skv_err err = {0};
	static struct collect ref, got;
	int32_t prompt[64];

	for (uint64_t i = 0; i < 8; i++) {
		make_prompt(prompt, 20 + 4 * (uint32_t)i, V, i);
		assert_int_equal(skv_sched_add(big->sched, i, prompt, 20 + 4 * (uint32_t)i, &sp, &err), 0);
		drain(big, &ref);
	}
	for (uint64_t i = 0; i < 8; i++) {
		make_prompt(prompt, 20 + 4 * (uint32_t)i, V, i);
		assert_int_equal(skv_sched_add(small->sched, i, prompt, 20 + 4 * (uint32_t)i, &sp, &err), 0);
	}
	drain(small, &got);
	struct skv_sched_stats st;
	skv_sched_get_stats(small->sched, &st);
	assert_true(st.preemptions > 0);
	assert_int_equal(st.free_blocks, st.num_blocks);
	for (int i = 0; i < 8; i++) {
		assert_int_equal(got.finish[i], SKV_FINISH_LENGTH);
		assert_int_equal(got.n[i], 24);
		assert_memory_equal(got.ids[i], ref.ids[i], 24 * sizeof(int32_t));
	}
	skv_local_close(big);
	skv_local_close(small);
	tu_rmdir(dir);
	free(dir);
}

/* admission = reserve in the arena where eager admission preempts: no preemption at all, the
 * same tokens, every block back */
static void test_sched_reserve(void **state)
{
	(void)state;
	char *dir = tu_mkmodel("--preset tiny --seed 4 --swiftkv-layers 2");
	struct skv_local *big = open_model(dir, 1, 256, 64, 8);
	struct skv_local *eager = open_sched(dir, 1, 24, 32, 8, 0, SKV_ADMIT_EAGER);
	struct skv_local *rsv = open_sched(dir, 1, 24, 32, 8, 0, SKV_ADMIT_RESERVE);
	const uint32_t V = big->hdr->config.vocab;
	struct skv_seq_params sp = {.max_tokens = 24, .ignore_eos = true, .sampling = {.temperature = 0.0f, .top_p = 1.0f}};
	struct skv_err err = {0};
	static struct collect ref, got_e, got_r;
	int32_t prompt[64];

	for (uint64_t i = 0; i < 8; i++) {
		uint32_t n = 20 + 4 * (uint32_t)i;
		make_prompt(prompt, n, V, i);
		assert_int_equal(skv_sched_add(big->sched, i, prompt, n, &sp, &err), 0);
		drain(big, &ref);
		assert_int_equal(skv_sched_add(eager->sched, i, prompt, n, &sp, &err), 0);
		assert_int_equal(skv_sched_add(rsv->sched, i, prompt, n, &sp, &err), 0);
	}
	/* reserve: while running, the sequences' full lengths always fit in the arena */
	uint32_t max_running = 0;
	while (!skv_sched_idle(rsv->sched)) {
		assert_true(skv_sched_step(rsv->sched, rsv->engine, on_event, &got_r, &err) > 0);
		struct skv_sched_stats st;
		skv_sched_get_stats(rsv->sched, &st);
		max_running = st.running > max_running ? st.running : max_running;
	}
	drain(eager, &got_e);
	struct skv_sched_stats se, sr;
	skv_sched_get_stats(eager->sched, &se);
	skv_sched_get_stats(rsv->sched, &sr);
	assert_true(se.preemptions > 0);
	assert_int_equal(sr.preemptions, 0);
	assert_int_equal(sr.free_blocks, sr.num_blocks);
	/* 44..72 tokens each = 3..5 blocks of 16: at most 7 at a time fit... but not all 8 */
	assert_true(max_running >= 4 && max_running < 8);
	for (int i = 0; i < 8; i++) {
		assert_int_equal(got_r.finish[i], SKV_FINISH_LENGTH);
		assert_int_equal(got_r.n[i], 24);
		assert_memory_equal(got_r.ids[i], ref.ids[i], 24 * sizeof(int32_t));
		assert_memory_equal(got_e.ids[i], ref.ids[i], 24 * sizeof(int32_t));
	}
	skv_local_close(big);
	skv_local_close(eager);
	skv_local_close(rsv);
	tu_rmdir(dir);
	free(dir);
}

/* Runs 4 short streams, then a 200-token prompt arrives while they decode. Returns the largest
 * step (tokens) taken while the short streams were still running after the long prompt came. */
static uint32_t mixed_run(struct skv_local *l, uint32_t V, struct collect *c)
{
	struct skv_seq_params sp = {.max_tokens = 40, .ignore_eos = true, .sampling = {.temperature = 0.0f, .top_p = 1.0f}};
	struct skv_err err = {0};
	int32_t prompt[200];
	uint32_t biggest = 0;
	int r;

	for (uint64_t i = 0; i < 4; i++) {
		make_prompt(prompt, 8, V, 100 + i);
		assert_int_equal(skv_sched_add(l->sched, i, prompt, 8, &sp, &err), 0);
	}
	assert_int_equal(skv_sched_step(l->sched, l->engine, on_event, c, &err), 32); /* 4 prompts */
	assert_int_equal(skv_sched_step(l->sched, l->engine, on_event, c, &err), 4);  /* 4 decodes */
	make_prompt(prompt, 200, V, 7);
	assert_int_equal(skv_sched_add(l->sched, 4, prompt, 200, &sp, &err), 0);
	while (c->finish[0] == SKV_FINISH_NONE) {
		r = skv_sched_step(l->sched, l->engine, on_event, c, &err);
		assert_true(r > 0);
		biggest = (uint32_t)r > biggest ? (uint32_t)r : biggest;
	}
	drain(l, c);
	return biggest;
}

/* mixed_batch_tokens bounds the steps that carry decode tokens (the streams' TPOT) and changes
 * no token: 4 decodes + 28 prompt tokens per step instead of 4 + 124 */
static void test_sched_mixed_budget(void **state)
{
	(void)state;
	char *dir = tu_mkmodel("--preset tiny --seed 5 --swiftkv-layers 2");
	struct skv_local *full = open_sched(dir, 1, 256, 128, 8, 0, SKV_ADMIT_EAGER);
	struct skv_local *mixed = open_sched(dir, 1, 256, 128, 8, 32, SKV_ADMIT_EAGER);
	const uint32_t V = full->hdr->config.vocab;
	static struct collect a, b;

	assert_int_equal(mixed_run(full, V, &a), 128);
	assert_int_equal(mixed_run(mixed, V, &b), 32);
	for (int i = 0; i < 5; i++) {
		assert_int_equal(a.n[i], 40);
		assert_int_equal(b.n[i], 40);
		assert_memory_equal(a.ids[i], b.ids[i], 40 * sizeof(int32_t));
	}
	/* mixed_batch_tokens above max_batch_tokens is refused by name */
	struct skv_sched *s = NULL;
	struct skv_err err = {0};
	struct skv_sched_params bad = {.num_blocks = 8, .block_size = 16, .max_batch_tokens = 64,
				       .mixed_batch_tokens = 65, .max_seqs = 4, .max_context = 64};
	assert_int_equal(skv_sched_new(&bad, &full->hdr->config, &s, &err), -EINVAL);
	assert_non_null(strstr(err.msg, "mixed_batch_tokens 65 exceeds max_batch_tokens 64"));
	skv_local_close(full);
	skv_local_close(mixed);
	tu_rmdir(dir);
	free(dir);
}

static void test_sched_cancel_and_limits(void **state)
{
	(void)state;
	char *dir = tu_mkmodel("--preset tiny --seed 5 --swiftkv-layers 2");
	struct skv_local *l = open_model(dir, 1, 32, 8, 4);
	const uint32_t V = l->hdr->config.vocab;
	struct skv_seq_params sp = {.max_tokens = 8, .ignore_eos = true, .sampling = {.temperature = 0.7f, .top_p = 0.9f, .seed = 3}};
	struct skv_err err = {0};
	static struct collect c;
	int32_t prompt[300];
	make_prompt(prompt, 300, V, 9);

	/* mid-prefill cancel: 8 tokens a step, a 100-token prompt */
	assert_int_equal(skv_sched_add(l->sched, 1, prompt, 100, &sp, &err), 0);
	assert_int_equal(skv_sched_step(l->sched, l->engine, on_event, &c, &err), 8);
	struct skv_sched_stats st;
	skv_sched_get_stats(l->sched, &st);
	assert_true(st.free_blocks < st.num_blocks);
	assert_int_equal(skv_sched_cancel(l->sched, 1), 0);
	assert_int_equal(skv_sched_step(l->sched, l->engine, on_event, &c, &err), 0);
	assert_int_equal(c.finish[1], SKV_FINISH_CANCELLED);
	assert_int_equal(c.n[1], 0);
	skv_sched_get_stats(l->sched, &st);
	assert_int_equal(st.free_blocks, st.num_blocks);
	assert_true(skv_sched_idle(l->sched));
	assert_int_equal(skv_sched_cancel(l->sched, 1), -ENOENT);

	/* mid-decode cancel */
	assert_int_equal(skv_sched_add(l->sched, 2, prompt, 5, &sp, &err), 0);
	for (int i = 0; i < 3; i++)
		assert_true(skv_sched_step(l->sched, l->engine, on_event, &c, &err) > 0);
	assert_int_equal(c.n[2], 3);
	assert_int_equal(skv_sched_cancel(l->sched, 2), 0);
	skv_sched_step(l->sched, l->engine, on_event, &c, &err);
	assert_int_equal(c.finish[2], SKV_FINISH_CANCELLED);
	skv_sched_get_stats(l->sched, &st);
	assert_int_equal(st.free_blocks, st.num_blocks);

	/* limits, each message naming the numbers */
	sp.max_tokens = 200;
	assert_int_equal(skv_sched_add(l->sched, 3, prompt, 100, &sp, &err), -E2BIG);
	assert_non_null(strstr(err.msg, "prompt (100 tokens) + max_tokens (200) = 300 exceeds the context of 256"));
	sp.max_tokens = 8;
	assert_int_equal(skv_sched_add(l->sched, 3, prompt, 0, &sp, &err), -EINVAL);
	int32_t bad[2] = {1, (int32_t)V};
	assert_int_equal(skv_sched_add(l->sched, 3, bad, 2, &sp, &err), -EINVAL);
	assert_non_null(strstr(err.msg, "outside the vocabulary"));
	sp.sampling.temperature = -1.0f;
	assert_int_equal(skv_sched_add(l->sched, 3, prompt, 4, &sp, &err), -EINVAL);
	assert_non_null(strstr(err.msg, "temperature"));
	sp.sampling.temperature = 1.0f;
	sp.sampling.top_p = 0.0f;
	assert_int_equal(skv_sched_add(l->sched, 3, prompt, 4, &sp, &err), -EINVAL);
	assert_non_null(strstr(err.msg, "top_p"));
	sp.sampling.top_p = 1.0f;
	assert_int_equal(skv_sched_add(l->sched, 3, prompt, 4, &sp, &err), 0);
	assert_int_equal(skv_sched_add(l->sched, 3, prompt, 4, &sp, &err), -EEXIST);
	skv_sched_abort_all(l->sched, SKV_FINISH_CANCELLED, on_event, &c);
	assert_int_equal(c.finish[3], SKV_FINISH_CANCELLED);
	skv_local_close(l);
	tu_rmdir(dir);
	free(dir);
}

/* A seeded sampled request gives the same tokens alone and in company. */
static void test_sched_seed(void **state)
{
	(void)state;
	char *dir = tu_mkmodel("--preset tiny --seed 6");
	struct skv_local *l = open_model(dir, -1, 128, 16, 8);
	const uint32_t V = l->hdr->config.vocab;
	struct skv_seq_params sp = {.max_tokens = 16, .ignore_eos = true,
				    .sampling = {.temperature = 1.0f, .top_p = 0.95f, .top_k = 50, .seed = 42}};
	struct skv_err err = {0};
	static struct collect a, b;
	int32_t prompt[40];
	make_prompt(prompt, 40, V, 1);
	assert_int_equal(skv_sched_add(l->sched, 0, prompt, 40, &sp, &err), 0);
	drain(l, &a);
	for (uint64_t i = 0; i < 5; i++) {
		int32_t other[30];
		make_prompt(other, 30, V, 50 + i);
		struct skv_seq_params o = sp;
		o.sampling.seed = 1000 + i;
		assert_int_equal(skv_sched_add(l->sched, 1 + i, other, 30, &o, &err), 0);
	}
	assert_int_equal(skv_sched_add(l->sched, 0, prompt, 40, &sp, &err), 0);
	drain(l, &b);
	assert_memory_equal(a.ids[0], b.ids[0] + 0, 16 * sizeof(int32_t));
	/* and a different seed gives a different sequence (16 draws at temperature 1) */
	assert_memory_not_equal(b.ids[0], b.ids[1], 16 * sizeof(int32_t));
	skv_local_close(l);
	tu_rmdir(dir);
	free(dir);
}

/* ---- the sampler op ---- */

static void test_sampler(void **state)
{
	(void)state;
	struct skv_backend *be;
	struct skv_err err = {0};
	assert_int_equal(skv_backend_cpu_new(1, &be, &err), 0);
	assert_int_equal(be->ops->prepare(be, 16, 16, 6), 0);
	const float logits[6] = {1.0f, 3.0f, 2.0f, 3.0f, -1.0f, 0.5f};
	struct skv_sample_params p = {.temperature = 0.0f, .top_p = 1.0f};
	int32_t id;
	be->ops->sample(be, &id, logits, &p, 1, 6);
	assert_int_equal(id, 1); /* greedy, ties to the lower id */
	p.temperature = 1.0f;
	p.top_k = 1;
	be->ops->sample(be, &id, logits, &p, 1, 6);
	assert_int_equal(id, 1);

	/* frequencies follow softmax(logits / T) over the top-k, renormalised */
	p.top_k = 3;
	p.temperature = 0.5f;
	uint32_t count[6] = {0};
	const uint32_t n = 20000;
	for (uint32_t s = 0; s < n; s++) {
		p.seed = s;
		p.step = s * 7;
		be->ops->sample(be, &id, logits, &p, 1, 6);
		count[id]++;
	}
	/* top-3: ids 1, 3 (logit 3) and 2 (logit 2) */
	double w3 = exp(6.0), w2 = exp(4.0), z = 2 * w3 + w2;
	assert_int_equal(count[0] + count[4] + count[5], 0);
	assert_true(fabs(count[1] / (double)n - w3 / z) < 0.02);
	assert_true(fabs(count[3] / (double)n - w3 / z) < 0.02);
	assert_true(fabs(count[2] / (double)n - w2 / z) < 0.02);

	/* top-p 0.5 keeps only the first of the two best */
	p.top_k = 0;
	p.top_p = 0.3f;
	for (uint32_t s = 0; s < 200; s++) {
		p.seed = s;
		be->ops->sample(be, &id, logits, &p, 1, 6);
		assert_int_equal(id, 1);
	}
	be->ops->destroy(be);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_sampler),		  cmocka_unit_test(test_chunking_plain),
		cmocka_unit_test(test_chunking_swiftkv),  cmocka_unit_test(test_chunking_acrosskv),
		cmocka_unit_test(test_sched_preemption), cmocka_unit_test(test_sched_cancel_and_limits),
		cmocka_unit_test(test_sched_seed), cmocka_unit_test(test_sched_reserve),
		cmocka_unit_test(test_sched_mixed_budget),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
