/* local.h: a whole model in one process (checkpoint -> image -> backend -> engine + scheduler),
 * for the offline tools (skv-run, skv-bench) and the tests. The appliance splits the same steps
 * between skvd (image in a sealed memfd) and skv-worker (engine and scheduler).
 */
#pragma once

#include "engine.h"
#include "image.h"
#include "ops.h"
#include "sched.h"

struct skv_local_params {
	const char *model_dir;
	int swiftkv;		   /* 1 on, 0 off, -1: on for llama_swiftkv checkpoints */
	const char *backend;	   /* "cpu" (default) or "cuda" */
	unsigned threads;	   /* CPU backend; 0 = every core */
	uint32_t max_batch_tokens; /* 0: 2048 */
	uint32_t mixed_batch_tokens; /* see skv_sched_params; 0: max_batch_tokens */
	enum skv_admission admission;
	uint32_t max_seqs;	   /* 0: 16 */
	uint32_t block_size;	   /* 0: 16 */
	uint32_t max_context;	   /* 0: min(max_position_embeddings, 8192) */
	uint32_t num_blocks;	   /* 0: enough for max_seqs sequences of max_context */
	bool keep_logits;	   /* events carry the logits each token was sampled from */
	bool no_graphs;		   /* see skv_engine_params */
};

struct skv_local {
	struct skv_backend *be;
	struct skv_checkpoint *ckpt;
	void *image;			/* host image (header, entries, data) */
	const struct skv_image_header *hdr; /* == image */
	void *weights;			/* backend copy of the data (== image data on the CPU) */
	void *kv;
	struct skv_engine *engine;
	struct skv_sched *sched;
	struct skv_engine_params ep;
};

int skv_local_open(const struct skv_local_params *p, struct skv_local **ret, struct skv_err *err);
void skv_local_close(struct skv_local *l);

/* Opens a backend by name ("cpu" or "cuda"). */
int skv_backend_open(const char *name, unsigned threads, struct skv_backend **ret, struct skv_err *err);
