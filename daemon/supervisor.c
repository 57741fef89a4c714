/* supervisor.c: replicas and their workers. skvd creates each replica's regions once (control
 * segment, KV arena), spawns its worker with the weights image, KV arena and control segment
 * as inherited fds, watches it through a pidfd and its heartbeat, and replaces it with backoff
 * when it dies or hangs. Requests of a lost worker are re-run when nothing was streamed yet,
 * and end with worker_lost otherwise.
 */
#include <fcntl.h>
#include <poll.h>
#include <signal.h>
#include <spawn.h>
#include <stdio.h>
#include <string.h>
#include <sys/eventfd.h>
#include <sys/mman.h>
#include <sys/pidfd.h>
#include <sys/wait.h>
#include <unistd.h>

#include "memfd.h"
#include "skvd-req.h"
#include "skvd.h"

extern char **environ;

#define REQ_CAPACITY 256u
#define EVT_CAPACITY 4096u
#define SKVD_START_FAILURES 5 /* workers in a row ending before READY: skvd gives up */

const char *skvd_worker_state_name(enum skvd_worker_state s)
{
	switch (s) {
	case SKVD_WORKER_DOWN:
		return "restarting";
	case SKVD_WORKER_STARTING:
		return "starting";
	case SKVD_WORKER_READY:
		return "ready";
	case SKVD_WORKER_STOPPING:
		return "stopping";
	}
	return "?";
}

static const char *worker_path(void)
{
	const char *p = getenv("SKV_WORKER");
	return p && *p ? p : SKVD_WORKER_DEFAULT_PATH;
}

/* The KV arena's element: fp32 on the CPU backend, bf16 on CUDA (the backends' kv_dtype). */
static enum skv_dtype kv_dtype(enum skvd_backend b)
{
	return b == SKVD_BACKEND_CUDA ? SKV_DTYPE_BF16 : SKV_DTYPE_F32;
}

int skvd_kv_blocks(const struct skv_image_header *img, enum skvd_backend backend, uint64_t kv_bytes,
		   uint32_t block_size, bool configured, uint64_t *ret_blocks, struct skv_err *err)
{
	struct skv_err why = {0};
	size_t bb = skv_image_kv_block_bytes(img, kv_dtype(backend), block_size);
	uint64_t blocks = bb ? kv_bytes / bb : 0;
	int r = skv_image_kv_check(img, kv_dtype(backend), blocks, block_size, &why);
	if (r < 0)
		return skv_err_set(err, r, "[engine] kv_cache_bytes = %llu%s: %s", (unsigned long long)kv_bytes,
				   configured ? "" : " (sized from max_seqs and the context)", why.msg);
	*ret_blocks = blocks;
	return 0;
}

int skvd_replicas_create(struct skvd *d, struct skv_err *err)
{
	const struct skvd_config *c = &d->cfg;
	const bool cuda = d->backend == SKVD_BACKEND_CUDA;
	uint32_t n = cuda ? d->n_dev : c->replicas;
	size_t bb = skv_image_kv_block_bytes(d->image, kv_dtype(d->backend), c->block_size);
	int r;

	d->replicas = calloc(n, sizeof(*d->replicas));
	if (!d->replicas)
		return skv_err_set(err, -ENOMEM, "out of memory");
	d->n_replicas = n;
	for (uint32_t i = 0; i < n; i++) { /* nothing open yet: skvd_replicas_destroy closes only these */
		struct skvd_replica *rp = &d->replicas[i];
		rp->ctl_fd = rp->kv_fd = rp->req_efd = rp->evt_efd = rp->pidfd = -1;
		rp->wreg.fd = rp->kvreg.fd = -1;
	}

	/* KV arena per replica: the configured bytes, or room for max_seqs sequences of
	 * min(context, 8192) tokens (a long-context model's full context for every sequence would
	 * be far more memory than a CPU box has; preemption handles the rare long ones) */
	uint64_t kv = c->kv_bytes;
	if (!kv && !cuda)
		kv = (uint64_t)c->max_seqs * SKV_DIV_UP(SKV_MIN(d->max_context, 8192u), c->block_size) * bb;
	/* CUDA: kv_cache_fraction of what the weights left free, on the tightest GPU */
	for (uint32_t g = 0; cuda && !c->kv_bytes && g < d->n_dev; g++) {
		size_t free_b, total_b;
		if ((r = skv_keeper_mem_info(d->dev_ids[g], &free_b, &total_b, err)) < 0)
			return r;
		uint64_t k = (uint64_t)((double)free_b * c->kv_fraction);
		kv = g == 0 ? k : SKV_MIN(kv, k);
	}
	uint64_t blocks;
	if ((r = skvd_kv_blocks(d->image, d->backend, kv, c->block_size, c->kv_bytes != 0, &blocks, err)) < 0) {
		d->exit_status = SKV_EXIT_CONFIG;
		return r;
	}
	d->num_blocks = (uint32_t)blocks;
	d->kv_bytes = blocks * bb;
	/* a sequence can never use more blocks than the arena has */
	if ((uint64_t)d->max_context > blocks * c->block_size)
		d->max_context = (uint32_t)(blocks * c->block_size);

	for (uint32_t i = 0; i < n; i++) {
		struct skvd_replica *rp = &d->replicas[i];
		char name[32];
		rp->index = i;
		rp->device = cuda ? d->dev_ids[i] : -1;
		rp->backoff_ms = c->restart_backoff_ms;

		/* a step makes up to 2 events per sequence (a token, a first-scheduled note), plus
		 * cancellations: the worker waits for 2 max_seqs free slots before a step */
		uint32_t evt_cap = EVT_CAPACITY;
		while (evt_cap < 4 * c->max_seqs)
			evt_cap *= 2;
		skv_ctl_layout(&rp->hdr, i, REQ_CAPACITY, evt_cap, SKV_MAX(2 * d->max_context, 65536u));
		snprintf(name, sizeof(name), "skv-ctl-%u", i);
		/* F_SEAL_SEAL after the size seals: a worker cannot add a seal of its own (say
		 * F_SEAL_FUTURE_WRITE) to the regions skvd shares with it and its successors */
		if ((r = skv_memfd_new(name, rp->hdr.total_size, &rp->ctl_fd, err)) < 0 ||
		    (r = skv_memfd_seal_seals(rp->ctl_fd, err)) < 0 ||
		    (r = skv_memfd_map(rp->ctl_fd, rp->hdr.total_size, true, &rp->ctl, err)) < 0)
			return r;
		if (cuda) {
			/* the weights loaded on this GPU become the replica's; its KV arena too lives
			 * in a region skvd keeps */
			rp->wreg = d->dev_wregs[i];
			d->dev_wregs[i] = (struct skv_keeper_region){.fd = -1};
			if ((r = skv_keeper_create(rp->device, d->kv_bytes, &rp->kvreg, err)) < 0)
				return r;
			rp->kv_fd = rp->kvreg.fd;
		} else {
			snprintf(name, sizeof(name), "skv-kv-%u", i);
			if ((r = skv_memfd_new(name, d->kv_bytes, &rp->kv_fd, err)) < 0 ||
			    (r = skv_memfd_seal_seals(rp->kv_fd, err)) < 0)
				return r;
		}
		rp->req_efd = eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK);
		rp->evt_efd = eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK);
		if (rp->req_efd < 0 || rp->evt_efd < 0)
			return skv_err_set(err, -errno, "eventfd: %s", strerror(errno));
		rp->pool_end = calloc(2 * REQ_CAPACITY, sizeof(*rp->pool_end));
		if (!rp->pool_end)
			return skv_err_set(err, -ENOMEM, "out of memory");
		rp->state = SKVD_WORKER_DOWN;
		rp->restart_at_ns = 0; /* start at once */
	}
	return 0;
}

void skvd_replicas_destroy(struct skvd *d)
{
	for (uint32_t i = 0; i < d->n_replicas; i++) {
		struct skvd_replica *rp = &d->replicas[i];
		if (rp->pid > 0 && rp->state != SKVD_WORKER_DOWN) {
			kill(rp->pid, SIGKILL);
			siginfo_t si;
			waitid(P_PIDFD, (id_t)rp->pidfd, &si, WEXITED);
		}
		if (rp->ctl)
			munmap(rp->ctl, rp->hdr.total_size);
		if (rp->kvreg.size) { /* the region owns its fd */
			skv_keeper_release(&rp->kvreg);
			rp->kv_fd = -1;
		}
		skv_keeper_release(&rp->wreg);
		int fds[] = {rp->ctl_fd, rp->kv_fd, rp->req_efd, rp->evt_efd, rp->pidfd};
		for (size_t k = 0; k < SKV_ARRAY_SIZE(fds); k++)
			if (fds[k] >= 0)
				close(fds[k]);
		free(rp->pool_end);
		free(rp->cancels);
	}
	free(d->replicas);
	d->replicas = NULL;
	d->n_replicas = 0;
}

/* threads = 0: the cores shared among the replicas, one kept for skvd and its clients (a busy
 * CPU worker on every core starves the daemon that feeds it) */
static uint32_t cpu_threads(const struct skvd *d)
{
	long n = sysconf(_SC_NPROCESSORS_ONLN);
	if (n < 2)
		return 1;
	return (uint32_t)SKV_MAX(1L, (n - 1) / (long)SKV_MAX(d->n_replicas, 1u));
}

static void on_worker_exit(struct skvd *d, struct skvd_watch *w, uint32_t revents);
static void on_worker_events(struct skvd *d, struct skvd_watch *w, uint32_t revents);

/* Fresh rings, status and pool for a new worker; skvd's own views re-attached. */
static void reset_segment(struct skvd_replica *rp)
{
	memset(rp->ctl, 0, rp->hdr.total_size > (1u << 20) ? rp->hdr.pool_offset : rp->hdr.total_size);
	rp->generation++;
	rp->hdr.generation = rp->generation;
	memcpy(rp->ctl, &rp->hdr, sizeof(rp->hdr));
	rp->st = skv_ctl_status(rp->ctl, &rp->hdr);
	skv_ctl_req_ring(rp->ctl, &rp->hdr, true, &rp->req_ring);
	skv_ctl_evt_ring(rp->ctl, &rp->hdr, false, &rp->evt_ring);
	rp->pool_head = rp->pool_consumed = 0;
	rp->ring_base = 0;
	rp->n_cancels = 0; /* the old worker's sequences are gone with it */
}

static int spawn_worker(struct skvd *d, struct skvd_replica *rp)
{
	const struct skvd_config *c = &d->cfg;
	posix_spawn_file_actions_t fa;
	char ppid[24];
	const char *path = worker_path();
	pid_t pid;
	int r;

	rp->hdr.engine = (struct skv_ctl_engine){
		.backend = d->backend == SKVD_BACKEND_CUDA ? 2 : 1,
		.device = rp->device,
		.threads = c->threads ? c->threads : cpu_threads(d),
		.block_size = c->block_size,
		.num_blocks = d->num_blocks,
		.max_batch_tokens = c->max_batch_tokens,
		.mixed_batch_tokens = c->mixed_batch_tokens,
		.admission = (uint32_t)c->admission,
		.max_seqs = c->max_seqs,
		.max_context = d->max_context,
		.kv_bytes = rp->kvreg.size ? rp->kvreg.size : d->kv_bytes,
		.weights_bytes = d->weights_bytes,
		.weights_dev_bytes = rp->wreg.size,
	};
	reset_segment(rp);

	/* the regions go to fixed fd numbers 3..8, through high temporaries so no source is
	 * clobbered before it is copied (dup2 also clears close-on-exec, which the CUDA driver
	 * sets on exported handles) */
	int src[6] = {rp->ctl_fd, d->weights_fd, rp->kv_fd, rp->req_efd, rp->evt_efd, rp->wreg.fd};
	int nfd = rp->wreg.fd >= 0 ? 6 : 5;
	posix_spawn_file_actions_init(&fa);
	for (int i = 0; i < nfd; i++)
		posix_spawn_file_actions_adddup2(&fa, src[i], 1000 + i);
	for (int i = 0; i < nfd; i++) {
		posix_spawn_file_actions_adddup2(&fa, 1000 + i, 3 + i);
		posix_spawn_file_actions_addclose(&fa, 1000 + i);
	}
	snprintf(ppid, sizeof(ppid), "%d", (int)getpid());
	char *argv[] = {(char *)"skv-worker", (char *)"--ctl-fd", (char *)"3", (char *)"--weights-fd", (char *)"4",
			(char *)"--kv-fd", (char *)"5", (char *)"--req-efd", (char *)"6", (char *)"--evt-efd",
			(char *)"7", (char *)"--ppid", ppid, NULL, NULL, NULL};
	if (nfd == 6) {
		argv[13] = (char *)"--weights-dev-fd";
		argv[14] = (char *)"8";
	}
	r = posix_spawn(&pid, path, &fa, NULL, argv, environ);
	posix_spawn_file_actions_destroy(&fa);
	if (r != 0) {
		skvd_log(SKVD_ERR, "worker %u | cannot start %s: %s", rp->index, path, strerror(r));
		return -r;
	}
	rp->pidfd = pidfd_open(pid, 0);
	if (rp->pidfd < 0) {
		skvd_log(SKVD_ERR, "worker %u | pidfd_open: %s", rp->index, strerror(errno));
		kill(pid, SIGKILL);
		waitpid(pid, NULL, 0);
		return -errno;
	}
	rp->pid = pid;
	rp->state = SKVD_WORKER_STARTING;
	rp->started_ns = skv_now_ns();
	rp->progress = 0;
	rp->progress_ns = rp->started_ns;
	rp->served = false;
	rp->pid_watch = skvd_watch_add(d, rp->pidfd, POLLIN, on_worker_exit, rp);
	if (!rp->evt_watch)
		rp->evt_watch = skvd_watch_add(d, rp->evt_efd, POLLIN, on_worker_events, rp);
	skvd_log(SKVD_INFO, "worker %u | started pid %d (generation %u)", rp->index, (int)pid, rp->generation);
	return 0;
}

static void kill_worker(struct skvd_replica *rp, const char *why)
{
	if (rp->state == SKVD_WORKER_STARTING || rp->state == SKVD_WORKER_READY) {
		skvd_log(SKVD_WARNING, "worker %u | pid %d: %s; killing it", rp->index, (int)rp->pid, why);
		kill(rp->pid, SIGKILL);
		rp->state = SKVD_WORKER_STOPPING;
	}
}

void skvd_replica_restart(struct skvd_replica *rp)
{
	if (rp->state == SKVD_WORKER_DOWN) { /* no worker to kill: start the next one now */
		rp->restart_at_ns = 0;
		return;
	}
	rp->restart_requested = true;
	kill_worker(rp, "restart requested");
}

/* A worker that ended before READY (or could not be spawned). Restarting one that never
 * starts only hides the reason: after SKVD_START_FAILURES in a row skvd logs the last one's
 * own error, ends what is queued and exits non-zero (SKV_EXIT_CONFIG when the worker said its
 * configuration was refused), so systemd shows the failure. */
static void start_failed(struct skvd *d, struct skvd_replica *rp, bool config, const char *why)
{
	if (++rp->start_failures < SKVD_START_FAILURES)
		return;
	char msg[384];
	snprintf(msg, sizeof(msg), "worker %u failed %u times in a row before it was ready; the last %s", rp->index,
		 rp->start_failures, why);
	skvd_log(SKVD_ERR, "%s; giving up", msg);
	skvd_notify(d, "STATUS=failed: %s", msg);
	for (uint32_t i = 0; i < d->n_replicas; i++)
		for (struct skvd_req *q = d->replicas[i].reqs_head, *next; q; q = next) {
			next = q->next_in_replica;
			skvd_request_abort(d, q, SKV_WIRE_FINISH_ERROR, SKV_WIRE_ERR_WORKER_LOST,
					   "skvd cannot start its workers and is stopping (see its log)");
		}
	d->exit_status = config ? SKV_EXIT_CONFIG : 1;
	d->quit = true;
}

static void on_worker_exit(struct skvd *d, struct skvd_watch *w, uint32_t revents)
{
	struct skvd_replica *rp = w->data;
	siginfo_t si = {0};
	(void)revents;

	if (waitid(P_PIDFD, (id_t)rp->pidfd, &si, WEXITED | WNOHANG) < 0 || si.si_pid == 0)
		return;
	uint64_t now = skv_now_ns();
	uint64_t lived_ms = (now - rp->started_ns) / 1000000;
	char why[256];
	if (si.si_code == CLD_EXITED)
		snprintf(why, sizeof(why), "exited with status %d after %llu ms%s%.*s", si.si_status,
			 (unsigned long long)lived_ms, rp->st->error[0] ? ": " : "", (int)sizeof(rp->st->error),
			 rp->st->error);
	else
		snprintf(why, sizeof(why), "killed by signal %d after %llu ms", si.si_status, (unsigned long long)lived_ms);
	skvd_log(d->quit ? SKVD_INFO : SKVD_WARNING, "worker %u | pid %d %s", rp->index, (int)rp->pid, why);
	skvd_watch_del(d, rp->pid_watch);
	rp->pid_watch = NULL;
	close(rp->pidfd);
	rp->pidfd = -1;
	rp->pid = 0;
	rp->state = SKVD_WORKER_DOWN;
	rp->restarts++;
	d->n_worker_restarts++;

	/* quick deaths back off (doubling up to the maximum); a worker that served a while, or
	 * one an admin asked to restart, comes back at once */
	if (rp->restart_requested || lived_ms > 10000)
		rp->backoff_ms = d->cfg.restart_backoff_ms;
	rp->restart_at_ns = rp->restart_requested ? now : now + rp->backoff_ms * 1000000ull;
	if (!rp->restart_requested && lived_ms <= 10000)
		rp->backoff_ms = SKV_MIN(rp->backoff_ms * 2, (uint64_t)d->cfg.restart_backoff_max_ms);
	/* a death skvd or an admin asked for is nobody's failure */
	bool asked = rp->restart_requested || d->quit || d->draining;
	bool counts = !rp->served && !asked;
	rp->restart_requested = false;

	skvd_requests_worker_lost(d, rp, !asked);
	if (counts)
		start_failed(d, rp, si.si_code == CLD_EXITED && si.si_status == SKV_EXIT_CONFIG, why);
}

/* Events from a worker: tokens and finishes, and its READY. */
static void on_worker_events(struct skvd *d, struct skvd_watch *w, uint32_t revents)
{
	struct skvd_replica *rp = w->data;
	(void)revents;

	/* the doorbell is not read (see skvd_doorbell) */
	if (rp->state != SKVD_WORKER_STARTING && rp->state != SKVD_WORKER_READY)
		return;
	if (atomic_load_explicit(&rp->st->generation, memory_order_acquire) != rp->generation)
		return; /* not attached yet */
	uint32_t state = atomic_load_explicit(&rp->st->state, memory_order_acquire);
	if (state == SKV_WORKER_FAILED) {
		kill_worker(rp, "it reported a failure");
		return;
	}
	if (rp->state == SKVD_WORKER_STARTING && state == SKV_WORKER_READY) {
		rp->state = SKVD_WORKER_READY;
		rp->served = true;
		rp->start_failures = 0;
		skvd_log(SKVD_INFO, "worker %u | ready in %llu ms", rp->index,
			 (unsigned long long)((skv_now_ns() - rp->started_ns) / 1000000));
		skvd_on_replica_ready(d, rp);
	}
	int n = skv_ring_avail(&rp->evt_ring);
	if (n < 0) {
		kill_worker(rp, "its event ring is corrupt");
		return;
	}
	for (int i = 0; i < n; i++) {
		struct skv_ctl_evt ev;
		skv_ring_pop(&rp->evt_ring, &ev);
		skvd_request_on_event(d, rp, &ev);
	}
	skvd_replica_flush(d, rp);
}

/* Moves pending requests and cancellations into the worker's ring while there is room. */
void skvd_replica_flush(struct skvd *d, struct skvd_replica *rp)
{
	bool rang = false;
	if (rp->state != SKVD_WORKER_READY)
		return;
	int space = skv_ring_space(&rp->req_ring);
	if (space < 0) {
		kill_worker(rp, "its request ring is corrupt");
		return;
	}
	/* what the worker has consumed frees its prompt tokens in the pool: everything written
	 * before the first record it has not taken yet */
	uint32_t head = rp->req_ring.peer;
	if (head == rp->req_ring.mine)
		rp->pool_consumed = rp->pool_head;
	else if (head != rp->ring_base)
		rp->pool_consumed = rp->pool_end[(head - 1) & (2 * REQ_CAPACITY - 1)];

	uint32_t c = 0;
	for (; c < rp->n_cancels && space > 0; c++, space--) {
		struct skv_ctl_req rec = {.type = SKV_CTL_CANCEL, .id = rp->cancels[c]};
		memcpy(skv_ring_slot(&rp->req_ring, 0), &rec, sizeof(rec));
		rp->pool_end[rp->req_ring.mine & (2 * REQ_CAPACITY - 1)] = rp->pool_head;
		skv_ring_commit(&rp->req_ring, 1);
		rang = true;
	}
	if (c) {
		memmove(rp->cancels, rp->cancels + c, (rp->n_cancels - c) * sizeof(*rp->cancels));
		rp->n_cancels -= c;
	}

	for (struct skvd_req *q = rp->reqs_head; q && space > 0; q = q->next_in_replica) {
		if (q->state != SKVD_REQ_PENDING)
			continue;
		/* contiguous room for the prompt in the pool, wrapping to its start */
		uint64_t P = rp->hdr.pool_tokens, start = rp->pool_head;
		if (start % P + q->n_prompt > P)
			start += P - start % P;
		if (start + q->n_prompt - rp->pool_consumed > P)
			break; /* wait for the worker to take what it has; order is kept */
		memcpy(skv_ctl_pool(rp->ctl, &rp->hdr) + start % P, q->prompt, q->n_prompt * sizeof(int32_t));
		rp->pool_head = start + q->n_prompt;
		struct skv_ctl_req rec = {
			.type = SKV_CTL_ADD,
			.flags = (q->flags & SKV_REQ_IGNORE_EOS) ? SKV_CTL_IGNORE_EOS : 0,
			.n_prompt = q->n_prompt,
			.id = q->id,
			.pool_offset = (uint32_t)(start % P),
			.max_tokens = q->max_tokens,
			.temperature = q->temperature,
			.top_p = q->top_p,
			.top_k = q->top_k,
			.seed = q->seed,
		};
		q->state = SKVD_REQ_SENT;
		memcpy(skv_ring_slot(&rp->req_ring, 0), &rec, sizeof(rec));
		rp->pool_end[rp->req_ring.mine & (2 * REQ_CAPACITY - 1)] = rp->pool_head;
		skv_ring_commit(&rp->req_ring, 1);
		space--;
		rang = true;
	}
	if (rang)
		skvd_doorbell(d, rp->req_efd);
}

/* The tick: start what is due, kill what hangs. */
void skvd_replicas_tick(struct skvd *d)
{
	uint64_t now = skv_now_ns();
	for (uint32_t i = 0; i < d->n_replicas; i++) {
		struct skvd_replica *rp = &d->replicas[i];
		if (rp->state == SKVD_WORKER_DOWN && !d->draining && now >= rp->restart_at_ns) {
			int r = spawn_worker(d, rp);
			if (r < 0) {
				char why[SKVD_PATH_MAX + 64];
				snprintf(why, sizeof(why), "could not be spawned (%s: %s)", worker_path(), strerror(-r));
				rp->restart_at_ns = now + rp->backoff_ms * 1000000ull;
				rp->backoff_ms = SKV_MIN(rp->backoff_ms * 2, (uint64_t)d->cfg.restart_backoff_max_ms);
				start_failed(d, rp, false, why);
			}
			continue;
		}
		if (rp->state == SKVD_WORKER_STARTING || rp->state == SKVD_WORKER_READY) {
			/* two facts (docs/architecture.md): the process runs (its heartbeat thread),
			 * and its engine thread moves (the progress counter) */
			uint64_t hb = atomic_load_explicit(&rp->st->heartbeat_ns, memory_order_relaxed);
			uint64_t prog = atomic_load_explicit(&rp->st->progress, memory_order_relaxed);
			if (prog != rp->progress) {
				rp->progress = prog;
				rp->progress_ns = now;
			}
			if (atomic_load_explicit(&rp->st->generation, memory_order_relaxed) != rp->generation ||
			    hb < rp->started_ns)
				hb = rp->started_ns;
			char why[64];
			if (now > hb && now - hb > (uint64_t)d->cfg.heartbeat_timeout_ms * 1000000ull) {
				snprintf(why, sizeof(why), "no heartbeat for %llu ms",
					 (unsigned long long)((now - hb) / 1000000));
				kill_worker(rp, why);
			} else if (now - rp->progress_ns > (uint64_t)d->cfg.stall_timeout_ms * 1000000ull) {
				snprintf(why, sizeof(why), "no progress for %llu ms",
					 (unsigned long long)((now - rp->progress_ns) / 1000000));
				kill_worker(rp, why);
			}
		}
		skvd_replica_flush(d, rp);
	}
}

/* Whether supervision works: every running worker's heartbeat is fresh (skvd kills stale ones
 * itself, so a stale one here means skvd failed to). A worker that is down with its restart
 * scheduled does not count against skvd: a crash-looping GPU must not get the whole daemon
 * restarted by the watchdog. */
bool skvd_replicas_fresh(const struct skvd *d)
{
	uint64_t now = skv_now_ns();
	for (uint32_t i = 0; i < d->n_replicas; i++) {
		const struct skvd_replica *rp = &d->replicas[i];
		if (rp->state != SKVD_WORKER_READY)
			continue;
		uint64_t hb = atomic_load_explicit(&rp->st->heartbeat_ns, memory_order_relaxed);
		if (now > hb && now - hb > 2ull * d->cfg.heartbeat_timeout_ms * 1000000ull)
			return false;
	}
	return true;
}

void skvd_replicas_stop(struct skvd *d)
{
	for (uint32_t i = 0; i < d->n_replicas; i++)
		if (d->replicas[i].pid > 0)
			kill(d->replicas[i].pid, SIGTERM);
}
