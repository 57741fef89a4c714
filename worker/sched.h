/* sched.h: continuous batching over a paged KV arena.
 *
 * The scheduler owns the sequences and the KV blocks. Each step it builds a flat batch under a
 * token budget: every running decode gets its token first (so running streams never stall), then
 * prefills continue in chunks, then waiting requests are admitted in arrival order while blocks
 * allow. The budget is max_batch_tokens, or mixed_batch_tokens in a step that carries decode
 * tokens: the knob between TTFT (prompts prefilled in big steps) and TPOT (streams wait for
 * short steps only). Admission is eager (when the prompt fits, leaving a block of growth per
 * running sequence) or reserve (only when every running sequence can reach its full length).
 * When a running sequence needs a block and none is free, the youngest running sequence is
 * preempted by recompute: its blocks are freed and it goes back to the head of the queue with its
 * generated tokens appended to its prompt. After the engine runs, the scheduler samples, appends,
 * checks stop conditions and reports events through a callback. Cancellation takes effect at the
 * start of the next step, in prefill too, and frees the blocks at once.
 *
 * Single-threaded: only the worker's step loop calls into it (style rule 4).
 */
#pragma once

#include "engine.h"
#include "model-config.h"
#include "sample.h"
#include "skv-base.h"

struct skv_sched;

enum skv_admission {
	SKV_ADMIT_EAGER = 0, /* start when the prompt fits; may preempt later */
	SKV_ADMIT_RESERVE,   /* start when prompt + max_tokens of every running sequence fits: never preempts */
};

struct skv_sched_params {
	uint32_t num_blocks;
	uint32_t block_size;
	uint32_t max_batch_tokens;   /* token budget per step */
	uint32_t mixed_batch_tokens; /* budget of a step with decode tokens; 0 = max_batch_tokens */
	uint32_t max_seqs;	     /* sequences running at once */
	uint32_t max_context;	     /* prompt + generated, per sequence */
	enum skv_admission admission;
};

/* "eager" or "reserve"; -EINVAL for other names. */
int skv_admission_parse(const char *name, enum skv_admission *ret);
const char *skv_admission_name(enum skv_admission a);

struct skv_seq_params {
	uint32_t max_tokens; /* new tokens, at least 1 */
	bool ignore_eos;     /* keep going past end-of-sequence ids */
	struct skv_sample_params sampling; /* its step field is the scheduler's to set */
};

/* Checks sampling ranges; -EINVAL with err naming the field and the range. */
int skv_sample_params_check(const struct skv_sample_params *sp, struct skv_err *err);

enum skv_finish {
	SKV_FINISH_NONE = 0,
	SKV_FINISH_STOP,      /* an end-of-sequence id */
	SKV_FINISH_LENGTH,    /* max_tokens or the context limit */
	SKV_FINISH_CANCELLED, /* skv_sched_cancel */
};

const char *skv_sched_finish_name(enum skv_finish f);

/* What happened to one request in a step. token >= 0 when a token was generated (logits then
 * points at the row it was sampled from when the engine keeps logits, else NULL; valid during the
 * callback only). finish != NONE when
 * the request ended; its blocks are already free. */
struct skv_sched_event {
	uint64_t id;
	int32_t token;
	const float *logits;
	enum skv_finish finish;
	uint32_t n_prompt;
	uint32_t n_generated;
	bool scheduled; /* the request's first step is about to run (no token, no finish) */
	bool prefill;	/* a chunk of the prompt ran and more remains: n_prefilled of n_prompt done */
	uint32_t n_prefilled;
};
typedef void (*skv_sched_event_fn)(void *userdata, const struct skv_sched_event *ev);

struct skv_sched_stats {
	uint32_t waiting, running;
	uint32_t free_blocks, num_blocks;
	uint64_t preemptions; /* since creation */
	uint64_t steps;
	uint64_t tokens_scheduled;
};

int skv_sched_new(const struct skv_sched_params *p, const struct skv_model_config *cfg, struct skv_sched **ret,
		  struct skv_err *err);
void skv_sched_free(struct skv_sched *s);

/* Queues a request. prompt (n ids) is copied. Fails, naming the numbers, when the prompt is empty,
 * holds an id outside the vocabulary, or prompt + max_tokens exceeds the context or the arena;
 * -EEXIST for an id in use. */
int skv_sched_add(struct skv_sched *s, uint64_t id, const int32_t *prompt, uint32_t n,
		  const struct skv_seq_params *sp, struct skv_err *err);

/* Marks a request cancelled; it ends (event with SKV_FINISH_CANCELLED) at the next step.
 * -ENOENT when no such request is queued or running. */
int skv_sched_cancel(struct skv_sched *s, uint64_t id);

/* Plans and runs one step through the engine, then reports events. Returns the number of tokens
 * the step ran (0 when there was nothing to do) or a negative errno from the engine. */
int skv_sched_step(struct skv_sched *s, struct skv_engine *e, skv_sched_event_fn cb, void *userdata,
		   struct skv_err *err);

bool skv_sched_idle(const struct skv_sched *s);
void skv_sched_get_stats(const struct skv_sched *s, struct skv_sched_stats *ret);

/* Ends every request with `finish` (used when a worker shuts down). */
void skv_sched_abort_all(struct skv_sched *s, enum skv_finish finish, skv_sched_event_fn cb, void *userdata);
