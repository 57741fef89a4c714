/* engine.h: one forward step over a flat batch of prefill chunks and decode tokens, the exact
 * SwiftKV forward of docs/swiftkv.md (a plain model is the case L = N), on any backend.
 *
 * The engine owns the activation buffers and the step's metadata buffers (allocated once, at
 * creation, for max_batch_tokens and max_seqs); it borrows the weights image and the KV arena
 * (which skvd owns in the appliance). It knows nothing of requests, sampling or scheduling:
 * the scheduler (sched.h) decides what runs, the engine runs it.
 */
#pragma once

#include <stdatomic.h>

#include "image.h"
#include "ops.h"
#include "sample.h"
#include "skv-base.h"

struct skv_engine;

struct skv_engine_params {
	struct skv_backend *be;		     /* borrowed for the engine's lifetime */
	const struct skv_image_header *image; /* host mapping of the image's header and entry table */
	const void *weights;		     /* backend memory holding the image's data (not owned) */
	void *kv_arena;			     /* backend memory, skv_engine_kv_bytes() bytes (not owned) */
	uint32_t num_blocks;		     /* KV blocks in the arena */
	uint32_t block_size;		     /* tokens per block */
	uint32_t max_batch_tokens;	     /* tokens per step */
	uint32_t max_seqs;		     /* sequences per step */
	uint32_t max_context;		     /* positions per sequence */
	bool keep_logits;		     /* copy every step's logits to the host (tests, --logits-out) */
	bool no_graphs;			     /* never record or replay graphs (tests, benchmarks); by default a
					      * backend with graphs replays decode-only steps and the survivor
					      * half of other steps from graphs keyed by padded batch size */
	_Atomic uint64_t *progress;	     /* when not NULL: bumped after each half of each layer the
					      * host runs (not in a graph's replay), so a watcher sees a long
					      * step move (skv-worker's liveness; not owned) */
};

/* One sequence's share of a step: n_tokens tokens starting at position start_pos (the tokens
 * before it are already in the cache). block_table covers positions [0, start_pos + n_tokens).
 * want_logits: the last scheduled token's logits are needed (a decode token, or the final chunk
 * of a prefill); only such tokens run past layer L - 1 under SwiftKV. */
struct skv_step_seq {
	uint32_t n_tokens;
	uint32_t start_pos;
	const int32_t *tokens;	    /* [n_tokens] */
	const int32_t *block_table; /* [n_blocks] */
	uint32_t n_blocks;
	bool want_logits;
	struct skv_sample_params sample; /* how to choose the next token (want_logits only) */
};

/* What a step produced: one sampled token per sequence with want_logits, in the order given,
 * and (keep_logits only) the fp32 logits [n, vocab] they were sampled from. Valid until the
 * next step. */
struct skv_step_out {
	uint32_t n;
	const int32_t *ids;
	const float *logits;
};

/* Bytes of KV arena for this image: cache_layers * 2 (K, V) * num_blocks * block_size *
 * n_kv_heads * head_dim elements of kv_dtype. 0 on overflow. */
size_t skv_engine_kv_bytes(const struct skv_image_header *h, enum skv_dtype kv_dtype, uint32_t num_blocks,
			   uint32_t block_size);

int skv_engine_new(const struct skv_engine_params *p, struct skv_engine **ret, struct skv_err *err);
void skv_engine_free(struct skv_engine *e);

/* Runs one step: the forward, then sampling on the backend. */
int skv_engine_step(struct skv_engine *e, const struct skv_step_seq *seqs, uint32_t n_seqs, struct skv_step_out *ret,
		    struct skv_err *err);

const struct skv_model_config *skv_engine_config(const struct skv_engine *e);
