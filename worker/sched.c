/* sched.c: continuous batching, chunked prefill, block allocation and preemption (see sched.h). */
#include "sched.h"

#include <stdio.h>
#include <string.h>

enum seq_state { SEQ_WAITING, SEQ_RUNNING };

struct seq {
	struct seq *prev, *next; /* in the waiting or the running list */
	enum seq_state state;
	uint64_t id;
	struct skv_seq_params p;
	int32_t *tokens;      /* [cap]: the prompt, then every generated token */
	uint32_t cap;	      /* n_prompt + max_tokens */
	uint32_t n_prompt;    /* as submitted */
	uint32_t n_total;     /* prompt + generated */
	uint32_t n_generated;
	uint32_t n_computed; /* tokens whose K, V are in the cache */
	int32_t *blocks;     /* [max_blocks] block table */
	uint32_t n_blocks;
	bool cancelled;
	bool scheduled_once; /* its first step was reported */
	/* this step */
	bool planned;
	uint32_t chunk;
};

struct list {
	struct seq *head, *tail;
	uint32_t n;
};

struct skv_sched {
	struct skv_sched_params p;
	struct skv_model_config cfg;
	uint32_t max_blocks; /* per sequence */
	int32_t *free_blocks; /* stack */
	uint32_t n_free;
	struct list waiting, running;
	/* step plan, sized max_seqs */
	struct seq **plan;
	struct skv_step_seq *steps;
	uint64_t preemptions, steps_run, tokens_scheduled;
};

int skv_sample_params_check(const struct skv_sample_params *sp, struct skv_err *err)
{
	if (!(sp->temperature >= 0.0f && sp->temperature <= SKV_MAX_TEMPERATURE))
		return skv_err_set(err, -EINVAL, "temperature %g is outside [0, %g]", sp->temperature,
				   SKV_MAX_TEMPERATURE);
	if (!(sp->top_p > 0.0f && sp->top_p <= 1.0f))
		return skv_err_set(err, -EINVAL, "top_p %g is outside (0, 1]", sp->top_p);
	if (sp->top_k > SKV_MAX_TOP_K)
		return skv_err_set(err, -EINVAL, "top_k %u is over the limit of %u", sp->top_k, SKV_MAX_TOP_K);
	return 0;
}

int skv_admission_parse(const char *name, enum skv_admission *ret)
{
	if (!strcmp(name, "eager"))
		*ret = SKV_ADMIT_EAGER;
	else if (!strcmp(name, "reserve"))
		*ret = SKV_ADMIT_RESERVE;
	else
		return -EINVAL;
	return 0;
}

const char *skv_admission_name(enum skv_admission a) { return a == SKV_ADMIT_RESERVE ? "reserve" : "eager"; }

const char *skv_sched_finish_name(enum skv_finish f)
{
	switch (f) {
	case SKV_FINISH_NONE:
		return "none";
	case SKV_FINISH_STOP:
		return "stop";
	case SKV_FINISH_LENGTH:
		return "length";
	case SKV_FINISH_CANCELLED:
		return "cancelled";
	}
	return "?";
}

static void list_remove(struct list *l, struct seq *q)
{
	if (q->prev)
		q->prev->next = q->next;
	else
		l->head = q->next;
	if (q->next)
		q->next->prev = q->prev;
	else
		l->tail = q->prev;
	q->prev = q->next = NULL;
	l->n--;
}

static void list_push_back(struct list *l, struct seq *q)
{
	q->next = NULL;
	q->prev = l->tail;
	if (l->tail)
		l->tail->next = q;
	else
		l->head = q;
	l->tail = q;
	l->n++;
}

static void list_push_front(struct list *l, struct seq *q)
{
	q->prev = NULL;
	q->next = l->head;
	if (l->head)
		l->head->prev = q;
	else
		l->tail = q;
	l->head = q;
	l->n++;
}

/* In a step with decode tokens, prompt chunks get at least this many tokens whatever
 * mixed_batch_tokens and the number of streams say (within max_batch_tokens). */
#define SKV_MIN_PREFILL_CHUNK 16u

static uint32_t blocks_for(const struct skv_sched *s, uint32_t tokens) { return SKV_DIV_UP(tokens, s->p.block_size); }

static void seq_free(struct seq *q)
{
	if (!q)
		return;
	free(q->tokens);
	free(q->blocks);
	free(q);
}

static void release_blocks(struct skv_sched *s, struct seq *q)
{
	while (q->n_blocks > 0)
		s->free_blocks[s->n_free++] = q->blocks[--q->n_blocks];
	q->n_computed = 0;
}

int skv_sched_new(const struct skv_sched_params *p, const struct skv_model_config *cfg, struct skv_sched **ret,
		  struct skv_err *err)
{
	struct skv_sched *s;

	if (!p->num_blocks || !p->block_size || !p->max_batch_tokens || !p->max_seqs || !p->max_context)
		return skv_err_set(err, -EINVAL, "scheduler: blocks, block size, batch tokens, sequences and context "
						 "must be positive");
	if (p->mixed_batch_tokens > p->max_batch_tokens)
		return skv_err_set(err, -EINVAL, "scheduler: mixed_batch_tokens %u exceeds max_batch_tokens %u",
				   p->mixed_batch_tokens, p->max_batch_tokens);
	if (p->admission != SKV_ADMIT_EAGER && p->admission != SKV_ADMIT_RESERVE)
		return skv_err_set(err, -EINVAL, "scheduler: admission %d is not eager (0) or reserve (1)",
				   (int)p->admission);
	s = calloc(1, sizeof(*s));
	if (!s)
		return skv_err_set(err, -ENOMEM, "scheduler: out of memory");
	s->p = *p;
	s->cfg = *cfg;
	s->max_blocks = blocks_for(s, p->max_context);
	s->free_blocks = calloc(p->num_blocks, sizeof(*s->free_blocks));
	s->plan = calloc(p->max_seqs, sizeof(*s->plan));
	s->steps = calloc(p->max_seqs, sizeof(*s->steps));
	if (!s->free_blocks || !s->plan || !s->steps) {
		skv_sched_free(s);
		return skv_err_set(err, -ENOMEM, "scheduler: out of memory");
	}
	/* lowest block ids on top of the stack */
	for (uint32_t i = 0; i < p->num_blocks; i++)
		s->free_blocks[i] = (int32_t)(p->num_blocks - 1 - i);
	s->n_free = p->num_blocks;
	*ret = s;
	return 0;
}

void skv_sched_free(struct skv_sched *s)
{
	if (!s)
		return;
	for (struct list *l = &s->waiting; l; l = l == &s->waiting ? &s->running : NULL)
		while (l->head) {
			struct seq *q = l->head;
			list_remove(l, q);
			seq_free(q);
		}
	free(s->free_blocks);
	free(s->plan);
	free(s->steps);
	free(s);
}

static struct seq *find(struct skv_sched *s, uint64_t id)
{
	for (struct seq *q = s->running.head; q; q = q->next)
		if (q->id == id)
			return q;
	for (struct seq *q = s->waiting.head; q; q = q->next)
		if (q->id == id)
			return q;
	return NULL;
}

int skv_sched_add(struct skv_sched *s, uint64_t id, const int32_t *prompt, uint32_t n,
		  const struct skv_seq_params *sp, struct skv_err *err)
{
	struct seq *q;
	uint64_t total = (uint64_t)n + sp->max_tokens;
	int r;

	if (n == 0)
		return skv_err_set(err, -EINVAL, "prompt is empty");
	if (sp->max_tokens == 0)
		return skv_err_set(err, -EINVAL, "max_tokens must be at least 1");
	if (total > s->p.max_context)
		return skv_err_set(err, -E2BIG,
				   "prompt (%u tokens) + max_tokens (%u) = %llu exceeds the context of %u tokens", n,
				   sp->max_tokens, (unsigned long long)total, s->p.max_context);
	if (blocks_for(s, (uint32_t)total) > s->p.num_blocks)
		return skv_err_set(err, -E2BIG,
				   "prompt (%u tokens) + max_tokens (%u) needs %u KV blocks; the arena has %u", n,
				   sp->max_tokens, blocks_for(s, (uint32_t)total), s->p.num_blocks);
	for (uint32_t i = 0; i < n; i++)
		if (prompt[i] < 0 || (uint32_t)prompt[i] >= s->cfg.vocab)
			return skv_err_set(err, -EINVAL, "prompt token %u is %d, outside the vocabulary [0, %u)", i,
					   prompt[i], s->cfg.vocab);
	r = skv_sample_params_check(&sp->sampling, err);
	if (r < 0)
		return r;
	if (find(s, id))
		return skv_err_set(err, -EEXIST, "request id %llu is already in use", (unsigned long long)id);

	q = calloc(1, sizeof(*q));
	if (!q)
		return skv_err_set(err, -ENOMEM, "out of memory");
	q->cap = (uint32_t)total;
	q->tokens = malloc(q->cap * sizeof(int32_t));
	q->blocks = malloc(s->max_blocks * sizeof(int32_t));
	if (!q->tokens || !q->blocks) {
		seq_free(q);
		return skv_err_set(err, -ENOMEM, "out of memory");
	}
	memcpy(q->tokens, prompt, n * sizeof(int32_t));
	q->id = id;
	q->p = *sp;
	q->n_prompt = q->n_total = n;
	q->state = SEQ_WAITING;
	list_push_back(&s->waiting, q);
	return 0;
}

int skv_sched_cancel(struct skv_sched *s, uint64_t id)
{
	struct seq *q = find(s, id);
	if (!q)
		return -ENOENT;
	q->cancelled = true;
	return 0;
}

bool skv_sched_idle(const struct skv_sched *s) { return s->waiting.n == 0 && s->running.n == 0; }

void skv_sched_get_stats(const struct skv_sched *s, struct skv_sched_stats *ret)
{
	ret->waiting = s->waiting.n;
	ret->running = s->running.n;
	ret->free_blocks = s->n_free;
	ret->num_blocks = s->p.num_blocks;
	ret->preemptions = s->preemptions;
	ret->steps = s->steps_run;
	ret->tokens_scheduled = s->tokens_scheduled;
}

static void finish(struct skv_sched *s, struct seq *q, enum skv_finish f, int32_t token, const float *logits,
		   skv_sched_event_fn cb, void *userdata)
{
	struct skv_sched_event ev = {
		.id = q->id,
		.token = token,
		.logits = logits,
		.finish = f,
		.n_prompt = q->n_prompt,
		.n_generated = q->n_generated,
	};
	release_blocks(s, q);
	list_remove(q->state == SEQ_RUNNING ? &s->running : &s->waiting, q);
	if (cb)
		cb(userdata, &ev);
	seq_free(q);
}

/* Preempts the youngest running sequence not yet planned this step (by recompute). Returns it,
 * or NULL when every running sequence is already planned. */
static struct seq *preempt_youngest(struct skv_sched *s)
{
	struct seq *v = s->running.tail;
	while (v && v->planned)
		v = v->prev;
	if (!v)
		return NULL;
	release_blocks(s, v);
	list_remove(&s->running, v);
	v->state = SEQ_WAITING;
	list_push_front(&s->waiting, v);
	s->preemptions++;
	return v;
}

/* Grows q's block table to cover n_computed + chunk tokens, shrinking the chunk to what the free
 * blocks allow. May preempt younger unplanned sequences, or q itself, when not even one token
 * fits. Returns the chunk that fits (0 when q itself was preempted or nothing fits). */
static uint32_t fit_chunk(struct skv_sched *s, struct seq *q, uint32_t chunk, bool *preempted_any)
{
	for (;;) {
		uint32_t have = q->n_blocks * s->p.block_size - q->n_computed; /* room in held blocks */
		uint32_t room = have + s->n_free * s->p.block_size;
		if (room > 0)
			break;
		struct seq *v = preempt_youngest(s);
		*preempted_any = true;
		if (!v || v == q)
			return 0;
	}
	uint32_t fit = SKV_MIN(chunk, q->n_blocks * s->p.block_size - q->n_computed + s->n_free * s->p.block_size);
	uint32_t need = blocks_for(s, q->n_computed + fit);
	while (q->n_blocks < need)
		q->blocks[q->n_blocks++] = s->free_blocks[--s->n_free];
	return fit;
}

static void plan_add(struct skv_sched *s, uint32_t *n_plan, struct seq *q, uint32_t chunk, uint32_t *budget)
{
	q->planned = true;
	q->chunk = chunk;
	s->plan[(*n_plan)++] = q;
	*budget -= chunk;
}

int skv_sched_step(struct skv_sched *s, struct skv_engine *e, skv_sched_event_fn cb, void *userdata,
		   struct skv_err *err)
{
	uint32_t budget = s->p.max_batch_tokens, n_plan = 0, T = 0;
	bool preempted = false;
	struct seq *q, *next;
	int r;

	/* Cancellations first: they end now and give their blocks back before anything is planned. */
	for (struct list *l = &s->running; l; l = l == &s->running ? &s->waiting : NULL)
		for (q = l->head; q; q = next) {
			next = q->next;
			if (q->cancelled)
				finish(s, q, SKV_FINISH_CANCELLED, -1, NULL, cb, userdata);
		}
	for (q = s->running.head; q; q = q->next)
		q->planned = false;

	/* 1. decodes, oldest first, one token each; 2. then prefills in progress (new ones, and
	 * recomputes after preemption), oldest first. A preemption changes the running list behind
	 * the cursor, so the pass starts over; planned sequences are skipped, so it ends. */
	for (int pass = 1; pass <= 2; pass++) {
		if (pass == 2 && n_plan > 0 && s->p.mixed_batch_tokens) {
			/* a step with decode tokens: prompt chunks fill it up to mixed_batch_tokens, and
			 * always get some room, so new prompts progress however many streams run */
			uint32_t n_dec = s->p.max_batch_tokens - budget;
			uint32_t room = s->p.mixed_batch_tokens > n_dec + SKV_MIN_PREFILL_CHUNK
						? s->p.mixed_batch_tokens - n_dec
						: SKV_MIN_PREFILL_CHUNK;
			budget = SKV_MIN(budget, room);
		}
restart:
		for (q = s->running.head; q && budget > 0; q = q->next) {
			uint32_t left = q->n_total - q->n_computed;
			bool pre = false;
			if (q->planned || (pass == 1 && left != 1))
				continue;
			uint32_t c = fit_chunk(s, q, SKV_MIN(budget, left), &pre);
			preempted |= pre;
			if (c > 0)
				plan_add(s, &n_plan, q, c, &budget);
			if (pre)
				goto restart;
		}
	}
	/* 3. admissions in arrival order; none in a step that had to preempt, so a preempted
	 * sequence does not bounce straight back in. eager: while the whole prompt (and the first
	 * generated token) fits in free blocks with a block of growth left for every running
	 * sequence, so an admission does not preempt a stream a few steps later. reserve: while the
	 * arena holds every running sequence at its full length. */
	uint64_t reserved = 0;
	if (s->p.admission == SKV_ADMIT_RESERVE)
		for (q = s->running.head; q; q = q->next)
			reserved += blocks_for(s, q->cap);
	while (!preempted && budget > 0 && s->waiting.head && s->running.n < s->p.max_seqs) {
		q = s->waiting.head;
		if (s->p.admission == SKV_ADMIT_RESERVE) {
			if (reserved + blocks_for(s, q->cap) > s->p.num_blocks)
				break;
			reserved += blocks_for(s, q->cap);
		} else if ((uint64_t)blocks_for(s, q->n_total + 1) + s->running.n > s->n_free) {
			break;
		}
		list_remove(&s->waiting, q);
		q->state = SEQ_RUNNING;
		list_push_back(&s->running, q);
		uint32_t c = fit_chunk(s, q, SKV_MIN(budget, q->n_total), &preempted);
		plan_add(s, &n_plan, q, c, &budget);
	}
	if (n_plan == 0)
		return 0;
	/* requests in their first step: the end of their queueing, for skvd's timings */
	for (uint32_t i = 0; i < n_plan && cb; i++)
		if (!s->plan[i]->scheduled_once) {
			struct skv_sched_event ev = {.id = s->plan[i]->id, .token = -1, .scheduled = true,
						     .n_prompt = s->plan[i]->n_prompt};
			s->plan[i]->scheduled_once = true;
			cb(userdata, &ev);
		}

	for (uint32_t i = 0; i < n_plan; i++) {
		q = s->plan[i];
		s->steps[i] = (struct skv_step_seq){
			.n_tokens = q->chunk,
			.start_pos = q->n_computed,
			.tokens = q->tokens + q->n_computed,
			.block_table = q->blocks,
			.n_blocks = q->n_blocks,
			.want_logits = q->n_computed + q->chunk == q->n_total,
			.sample = q->p.sampling,
		};
		s->steps[i].sample.step = q->n_generated;
		T += q->chunk;
	}
	struct skv_step_out out;
	r = skv_engine_step(e, s->steps, n_plan, &out, err);
	if (r < 0)
		return r;
	s->steps_run++;
	s->tokens_scheduled += T;

	/* Sample, append, report; finished sequences are reaped right after their event. */
	const uint32_t V = s->cfg.vocab;
	uint32_t row = 0;
	for (uint32_t i = 0; i < n_plan; i++) {
		q = s->plan[i];
		q->n_computed += q->chunk;
		if (!s->steps[i].want_logits) {
			/* a long prompt's progress: one event per chunk (as many as a token would make) */
			struct skv_sched_event ev = {
				.id = q->id, .token = -1, .n_prompt = q->n_prompt, .prefill = true, .n_prefilled = q->n_computed};
			if (cb)
				cb(userdata, &ev);
			continue;
		}
		const float *lr = out.logits ? out.logits + (size_t)row * V : NULL;
		int32_t tok = out.ids[row++];
		q->tokens[q->n_total++] = tok;
		q->n_generated++;
		enum skv_finish f = SKV_FINISH_NONE;
		if (!q->p.ignore_eos && skv_model_is_eos(&s->cfg, tok))
			f = SKV_FINISH_STOP;
		else if (q->n_generated >= q->p.max_tokens)
			f = SKV_FINISH_LENGTH;
		if (f != SKV_FINISH_NONE) {
			finish(s, q, f, tok, lr, cb, userdata);
			continue;
		}
		struct skv_sched_event ev = {
			.id = q->id,
			.token = tok,
			.logits = lr,
			.finish = SKV_FINISH_NONE,
			.n_prompt = q->n_prompt,
			.n_generated = q->n_generated,
		};
		if (cb)
			cb(userdata, &ev);
	}
	return (int)T;
}

void skv_sched_abort_all(struct skv_sched *s, enum skv_finish f, skv_sched_event_fn cb, void *userdata)
{
	while (s->running.head)
		finish(s, s->running.head, f, -1, NULL, cb, userdata);
	while (s->waiting.head)
		finish(s, s->waiting.head, f, -1, NULL, cb, userdata);
}
