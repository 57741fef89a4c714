/* skvd.h: skvd's internal state, shared by its files (not a public interface).
 *
 * One thread, one io_uring loop (loop.c) with phases: before waiting, flush completions, reap
 * closed clients, send STATUS/WATCHDOG; then wait; then dispatch. Signals arrive through a
 * signalfd and only set state. Objects that a callback may close (sessions, requests, workers)
 * are marked and reaped at the end of the iteration, never freed inside their own callbacks.
 *
 * Ownership: skvd owns every big region (the weights image memfd, each replica's KV arena and
 * control segment, each client's session memfd); workers and clients borrow them as fds.
 */
#pragma once

#include <liburing.h>
#include <stdbool.h>
#include <stdint.h>
#include <sys/types.h>

#include "config.h"
#include "control.h"
#include "image.h"
#include "keeper.h"
#include "ring.h"
#include "skv-base.h"
#include "tokenizer.h"
#include "wire.h"

struct skvd;
struct skvd_watch;
struct skvd_session;
struct skvd_req;
struct skvd_admin_conn;

#define SKVD_TICK_MS 50

/* ---- the loop (loop.c) ---- */

typedef void (*skvd_watch_fn)(struct skvd *d, struct skvd_watch *w, uint32_t revents);

/* A file descriptor the loop polls (multishot POLL_ADD); the callback does the I/O. */
struct skvd_watch {
	int fd;
	uint32_t events; /* poll mask, kept for re-arming */
	skvd_watch_fn fn;
	void *data;
	bool armed;    /* a poll is in flight in the ring */
	bool removing; /* skvd_watch_del called: free once the kernel lets go of it */
	bool remove_sent; /* its POLL_REMOVE is in the ring */
	struct skvd_watch *next_dead;
	struct skvd_watch *prev_live, *next_live; /* every watch not yet freed, for the exit */
};

int skvd_loop_init(struct skvd *d, struct skv_err *err);
void skvd_loop_done(struct skvd *d);
/* Starts polling fd for events (POLLIN etc.). The watch is owned by the loop until deleted. */
struct skvd_watch *skvd_watch_add(struct skvd *d, int fd, uint32_t events, skvd_watch_fn fn, void *data);
/* Stops polling; the watch is freed later, when the ring no longer references it. Does not
 * close the fd. */
void skvd_watch_del(struct skvd *d, struct skvd_watch *w);
/* One iteration: submit, wait up to timeout_ms for completions, dispatch them. */
int skvd_loop_run_once(struct skvd *d, int timeout_ms);
/* Rings a peer's eventfd doorbell without ever blocking skvd: the 8-byte write goes through the
 * ring. An eventfd passed to a peer shares its file status flags with it, so a peer could clear
 * O_NONBLOCK and fill the counter to make a plain write(2) block the whole daemon. (For the same
 * reason skvd never read(2)s a peer's doorbell: poll tells it to look, the ring indices say
 * what there is.) */
void skvd_doorbell(struct skvd *d, int fd);

/* ---- requests ---- */

enum skvd_req_state {
	SKVD_REQ_PENDING, /* routed to a replica, not yet in its ring (worker starting, ring full) */
	SKVD_REQ_SENT,	  /* in the worker's hands */
	SKVD_REQ_DONE,	  /* final record queued; reaped at the end of the iteration */
};

struct skvd_req {
	uint64_t id;	    /* skvd's, unique for its lifetime */
	uint64_t client_id; /* the client's */
	struct skvd_session *sess; /* NULL once the client has gone */
	uid_t uid;
	struct skvd_replica *rep;
	struct skvd_replica *last_rep; /* where it last ran (for the journal once unlinked) */
	enum skvd_req_state state;

	int32_t *prompt; /* [n_prompt], kept for a re-run after a worker loss */
	uint32_t n_prompt;
	uint32_t max_tokens;
	uint32_t flags; /* SKV_REQ_* */
	float temperature, top_p;
	uint32_t top_k;
	uint64_t seed;
	uint32_t timeout_ms;
	char **stop; /* [n_stop] NUL-terminated */
	uint32_t n_stop;

	uint32_t n_generated;
	uint32_t losses; /* workers that died while running it ([supervisor] max_request_retries) */
	bool streamed; /* something reached the client: a worker loss can no longer re-run it */
	struct skv_tokenizer_stream detok; /* incremental detokenizer state */
	char *held;		 /* decoded text not yet sent (may be the start of a stop string) */
	size_t held_len, held_cap;
	int32_t pending_ids[SKV_WIRE_DELTA_IDS];
	uint32_t n_pending_ids;

	uint64_t t_submit_ns, t_first_token_ns, t_scheduled_ns;
	uint64_t t_taken_ns;  /* the worker took it (worker's clock, which is skvd's too) */
	uint64_t t_worker_ns; /* the worker produced the newest token not yet sent */
	uint32_t finish; /* enum skv_wire_finish once done */
	uint32_t error;	 /* enum skv_wire_error */

	struct skvd_req *next_in_session, *prev_in_session;
	struct skvd_req *next_in_replica, *prev_in_replica;
	struct skvd_req *next_dead;
};

/* ---- replicas and their workers (supervisor.c) ---- */

enum skvd_worker_state {
	SKVD_WORKER_DOWN,	/* not running; restart_at_ns says when to try again */
	SKVD_WORKER_STARTING,	/* spawned, not ready */
	SKVD_WORKER_READY,
	SKVD_WORKER_STOPPING,	/* killed, waiting for its pidfd */
};

struct skvd_replica {
	uint32_t index;
	int device; /* CUDA device, -1 for CPU */
	/* regions: the control segment; the KV arena (a memfd, or a GPU region on CUDA); on CUDA
	 * also the GPU region holding this device's copy of the weights */
	int ctl_fd, kv_fd;
	struct skv_keeper_region wreg, kvreg;
	void *ctl;		   /* mapped control segment */
	struct skv_ctl_header hdr; /* private copy: never read back from shared memory */
	struct skv_worker_status *st;
	struct skv_ring req_ring, evt_ring;
	uint64_t pool_head;	/* next free token position in the pool (free-running) */
	uint64_t pool_consumed; /* positions below this the worker has taken */
	uint64_t *pool_end;	/* [2 * req_capacity]: pool_head after record k, at k mod 2 cap (twice the
				 * ring, so the entry of the last consumed record is never reused while
				 * the ring is full) */
	uint32_t ring_base;	/* request ring index at the worker's start */
	int req_efd, evt_efd;
	/* worker */
	enum skvd_worker_state state;
	pid_t pid;
	int pidfd;
	struct skvd_watch *pid_watch, *evt_watch;
	uint32_t generation;
	uint32_t restarts;
	uint64_t started_ns, restart_at_ns, backoff_ms;
	uint64_t progress, progress_ns; /* the worker's progress counter, and when it last moved */
	bool restart_requested; /* skvctl restart-worker */
	bool served;		 /* the current worker reached READY */
	uint32_t start_failures; /* workers in a row that ended before READY */
	uint64_t *cancels; /* ids to cancel at the worker, sent before new requests */
	uint32_t n_cancels, cap_cancels;
	/* load */
	struct skvd_req *reqs_head, *reqs_tail; /* every request routed here, in order */
	uint32_t n_reqs;
	uint64_t queued_prompt_tokens;
};

/* ---- client sessions (front.c) ---- */

struct skvd_session {
	uint64_t id;
	int sock, mem_fd, sub_efd, cmp_efd;
	uid_t uid;
	pid_t pid;
	void *mem;
	struct skv_session_layout layout; /* private copy */
	struct skv_ring sub, cmp;
	struct skvd_watch *sock_watch, *sub_watch;
	struct skvd_req *reqs_head; /* in flight */
	uint32_t n_reqs;
	/* completion records waiting for room in the ring (a parked stream) */
	uint8_t *out;	    /* [out_cap * SKV_WIRE_RECORD] */
	uint32_t out_head, out_len, out_cap;
	bool welcomed; /* the handshake is done */
	const char *broken; /* why it must close (static); closed at the next flush */
	uint64_t born_ns;
	bool closing; /* reaped at the end of the iteration */
	bool rang;    /* completion doorbell owed */
	struct skvd_session *next, *prev;
};

/* A peer refused when it connected (outside allow_group, skvd draining, too many clients or
 * too many for its uid). It never gets a session: only a slot of this small fixed pool, until
 * its hello has been read and answered (closing a socket with unread data would reset it and
 * lose the answer) or SKVD_REFUSED_TIMEOUT_MS passes. With the pool full, a bare close. */
#define SKVD_REFUSED_MAX 16
#define SKVD_REFUSED_TIMEOUT_MS 1000
struct skvd_refused {
	int fd;
	struct skvd_watch *watch; /* NULL: the slot is free */
	uint16_t status;	  /* enum skv_welcome_status */
	char why[sizeof(((struct skv_welcome *)0)->message)];
	uint64_t born_ns;
};

/* ---- the daemon ---- */

/* [server] allow_group and admin_group as gids (skvd_resolve_groups). */
struct skvd_groups {
	gid_t allow_gid, admin_gid;
	bool allow_any;	      /* allow_group is empty: every local user may connect */
	bool admin_group_set; /* admin_group is not empty */
};

struct skvd {
	struct skvd_config cfg;
	char config_path[4096];
	struct io_uring ring;
	struct skvd_watch *dead_watches;
	struct skvd_watch *live_watches;
	struct skvd_watch *dispatching; /* the watch whose function runs now */
	bool rearm;			/* some watch could not be armed, or its poll removed: try again next iteration */

	/* model */
	struct skv_model_config model;
	const struct skv_image_header *image; /* mapped read-only (on CUDA: the header and entries only) */
	int weights_fd;			      /* sealed memfd of the image (on CUDA: of its header) */
	size_t weights_bytes;		      /* its size */
	size_t weights_dev_bytes;	      /* CUDA: the image's data, on each GPU */
	int dev_ids[SKVD_MAX_DEVICES];	      /* CUDA: the devices served, one replica each */
	struct skv_keeper_region dev_wregs[SKVD_MAX_DEVICES];
	uint32_t n_dev;
	struct skvd_text *text;
	enum skvd_backend backend;

	struct skvd_replica *replicas;
	uint32_t n_replicas;
	uint32_t num_blocks;  /* KV blocks per replica */
	uint64_t kv_bytes;    /* KV arena per replica */
	uint32_t max_context; /* positions per sequence in effect */
	struct skvd_req *dead_reqs;

	/* front door */
	int client_listen, admin_listen;
	bool client_activated, admin_activated;
	struct skvd_watch *client_watch, *admin_watch;
	struct skvd_admin_conn *admin_conns; /* open admin connections (admin.c) */
	uint32_t n_admin_conns;
	struct skvd_session *sessions;
	uint32_t n_sessions;
	struct skvd_idmap *uid_sessions; /* uid + 1 -> its count of sessions (max_sessions_per_uid) */
	struct skvd_refused refused[SKVD_REFUSED_MAX];
	uint64_t next_session_id, next_req_id;
	struct skvd_groups groups; /* allow_group and admin_group, resolved */
	struct skvd_idmap *reqs; /* skvd id -> request */

	/* lifecycle */
	int signal_fd, timer_fd;
	bool ready_sent, draining, quit;
	int exit_status; /* skvd's, once it quits (SKV_EXIT_CONFIG: the configuration cannot work) */
	uint64_t drain_deadline_ns, start_ns;
	bool watchdog;
	/* totals for metrics */
	uint64_t n_requests_total, n_requests_failed, n_prompt_tokens_total, n_gen_tokens_total;
	uint64_t n_worker_restarts;
	struct skvd_metrics *metrics;
};

/* logging: journald priorities on stderr, identity first */
void skvd_log(int prio, const char *fmt, ...) SKV_PRINTF(2, 3);
#define SKVD_ERR 3
#define SKVD_WARNING 4
#define SKVD_NOTICE 5
#define SKVD_INFO 6
#define SKVD_DEBUG 7
