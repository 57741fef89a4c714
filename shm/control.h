/* control.h: the control segment of one replica, shared by skvd and that replica's worker.
 *
 * One memfd per replica, created and sized by skvd, mapped by the worker it spawns:
 *   header | worker status | request ring (skvd -> worker) | event ring (worker -> skvd) | token pool
 * Each field has one writer: skvd writes the header, the request records and their prompt
 * tokens in the pool; the worker writes its status block and the event records. Both check the
 * peer's ring indices like any untrusted peer (ring.h): a worker that corrupts them is killed
 * and replaced. The segment holds no state that matters past a worker's death: skvd keeps its
 * own copy of every request and re-initialises the rings before it spawns the next worker.
 */
#pragma once

#include <stdatomic.h>
#include <stdint.h>

#include "ring.h"

#define SKV_CTL_MAGIC 0x52564b53u /* "SKVR" */
#define SKV_CTL_VERSION 3u

/* A worker's exit status when the configuration it was given is refused before it served
 * (EX_CONFIG): no restart can help. skvd exits with it too when the configuration cannot work,
 * and skvd.service's RestartPreventExitStatus= names it. */
#define SKV_EXIT_CONFIG 78

enum skv_worker_state {
	SKV_WORKER_STARTING = 0, /* mapping, building its engine */
	SKV_WORKER_READY = 1,	 /* serving */
	SKV_WORKER_FAILED = 2,	 /* hit an error it cannot recover from; exits */
};

/* Written by the worker only (skvd reads; every value is advisory except heartbeat_ns and
 * progress). Liveness is two facts: heartbeat_ns is beaten by a thread of its own, so it proves
 * the process runs (a stopped or dead worker stops it) whatever one step costs; progress is
 * bumped by the thread that runs the engine, after each layer of a step and each turn of its
 * loop, so it proves that thread moves (one wedged in a loop or a driver call stops it). */
struct skv_worker_status {
	_Atomic uint32_t state;	     /* enum skv_worker_state */
	_Atomic uint32_t generation; /* echo of the header's generation once attached */
	_Atomic uint64_t heartbeat_ns; /* CLOCK_MONOTONIC, at least every 100 ms while alive */
	_Atomic uint64_t steps;
	_Atomic uint64_t prompt_tokens; /* prefilled since start */
	_Atomic uint64_t gen_tokens;	/* generated since start */
	_Atomic uint64_t preemptions;
	_Atomic uint32_t running;
	_Atomic uint32_t waiting;
	_Atomic uint32_t kv_free_blocks;
	_Atomic uint32_t kv_total_blocks;
	_Atomic uint64_t busy_ns; /* time spent in steps */
	char error[128];	  /* why, when FAILED */
	_Atomic uint64_t progress; /* bumped per layer and per loop turn while alive */
	uint8_t pad[48];
};
_Static_assert(sizeof(struct skv_worker_status) == 256, "worker status is pinned");

enum skv_ctl_req_type {
	SKV_CTL_ADD = 1,    /* a request: prompt tokens in the pool */
	SKV_CTL_CANCEL = 2, /* end request id now (its blocks are freed within a step) */
};

struct skv_ctl_req {
	uint16_t type;	/* enum skv_ctl_req_type */
	uint16_t flags; /* SKV_CTL_IGNORE_EOS */
	uint32_t n_prompt;
	uint64_t id; /* skvd's request id */
	uint32_t pool_offset; /* first prompt token in the pool (tokens, not bytes) */
	uint32_t max_tokens;
	float temperature;
	float top_p;
	uint32_t top_k;
	uint32_t reserved0;
	uint64_t seed;
	uint8_t reserved[16];
};
_Static_assert(sizeof(struct skv_ctl_req) == 64, "control request is pinned");

#define SKV_CTL_IGNORE_EOS 1u

enum skv_ctl_finish {
	SKV_CTL_FINISH_NONE = 0,
	SKV_CTL_FINISH_STOP = 1,
	SKV_CTL_FINISH_LENGTH = 2,
	SKV_CTL_FINISH_CANCELLED = 3,
	SKV_CTL_FINISH_ERROR = 4, /* the worker refused or failed the request: error is -errno */
};

#define SKV_CTL_EVT_TAKEN 1u	   /* the worker took request id from its ring (no token) */
#define SKV_CTL_EVT_SCHEDULED 2u /* request id runs its first step now (no token) */
#define SKV_CTL_EVT_PREFILL 4u	 /* a chunk of id's prompt ran: n_generated holds the prompt
				  * tokens computed so far (no token; more of the prompt remains) */

struct skv_ctl_evt {
	uint64_t id;
	int32_t token;	      /* -1: none */
	uint32_t n_generated; /* tokens generated so far, this one included */
	uint16_t finish;      /* enum skv_ctl_finish */
	uint16_t flags;	      /* SKV_CTL_EVT_* */
	int32_t error;
	uint64_t ns; /* CLOCK_MONOTONIC when the worker pushed this event */
};
_Static_assert(sizeof(struct skv_ctl_evt) == 32, "control event is pinned");

/* How the worker must build its engine (written by skvd, checked by the worker). */
struct skv_ctl_engine {
	uint32_t backend; /* 1 cpu, 2 cuda */
	int32_t device;	  /* CUDA device index */
	uint32_t threads; /* CPU threads, 0 = every core */
	uint32_t block_size;
	uint32_t num_blocks;
	uint32_t max_batch_tokens;
	uint32_t max_seqs;
	uint32_t max_context;
	uint64_t kv_bytes;	    /* size of the KV arena region (fd 5: a memfd, or a GPU region on CUDA) */
	uint64_t weights_bytes;	    /* size of the weights image memfd (fd 4; on CUDA only its header) */
	uint64_t weights_dev_bytes; /* CUDA: size of the GPU region holding the image's data (fd 8) */
	uint32_t mixed_batch_tokens; /* budget of a step with decode tokens, 0 = max_batch_tokens */
	uint32_t admission;	     /* enum skv_admission: 0 eager, 1 reserve */
};
_Static_assert(sizeof(struct skv_ctl_engine) == 64, "engine parameters are pinned");

struct skv_ctl_header {
	uint32_t magic; /* SKV_CTL_MAGIC */
	uint32_t version;
	uint32_t header_size;
	uint32_t replica;
	uint64_t total_size;
	uint32_t generation; /* bumped by skvd for every worker it spawns */
	uint32_t req_capacity;
	uint32_t evt_capacity;
	uint32_t pool_tokens;
	uint32_t status_offset;
	uint32_t req_idx_offset;
	uint32_t req_offset;
	uint32_t evt_idx_offset;
	uint32_t evt_offset;
	uint32_t pool_offset; /* bytes, of the int32 token pool */
	struct skv_ctl_engine engine;
	uint8_t reserved[128];
};
_Static_assert(sizeof(struct skv_ctl_header) == 256, "control header is pinned");

/* A segment's layout for the given capacities (offsets 128-byte aligned); fills header. */
void skv_ctl_layout(struct skv_ctl_header *h, uint32_t replica, uint32_t req_capacity, uint32_t evt_capacity,
		    uint32_t pool_tokens);

/* Checks a mapped segment's header (size bytes) before use; -EPROTO naming what is wrong. */
int skv_ctl_check(const struct skv_ctl_header *h, size_t size, struct skv_err *err);

/* Parts of a mapped segment, located through a private, checked copy of its header (never
 * through the shared one, which the peer could rewrite). */
static inline struct skv_worker_status *skv_ctl_status(void *seg, const struct skv_ctl_header *h)
{
	return (struct skv_worker_status *)((char *)seg + h->status_offset);
}

/* Attaches the request ring (producer: skvd) or the event ring (producer: worker). */
void skv_ctl_req_ring(void *seg, const struct skv_ctl_header *h, bool producer, struct skv_ring *ret);
void skv_ctl_evt_ring(void *seg, const struct skv_ctl_header *h, bool producer, struct skv_ring *ret);
static inline int32_t *skv_ctl_pool(void *seg, const struct skv_ctl_header *h)
{
	return (int32_t *)((char *)seg + h->pool_offset);
}
