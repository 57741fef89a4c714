/* skv-worker: one replica's engine, spawned and watched by skvd.
 *
 *   skv-worker --ctl-fd N --weights-fd N --kv-fd N --req-efd N --evt-efd N [--weights-dev-fd N] --ppid PID
 *
 * On the CUDA backend the KV arena fd and --weights-dev-fd are GPU regions skvd created with the
 * VMM API (keeper.h); the weights memfd then holds only the image's header and entry table.
 * It maps the regions skvd owns (the sealed weights image, the KV arena, the control segment),
 * builds its engine and scheduler, and loops: take requests from the request ring, run a step,
 * push token events into the event ring, ring skvd's doorbell, beat its heart. It holds nothing
 * that matters past its own death: skvd re-runs or fails its requests and starts another worker,
 * which maps the same resident weights. Errors it cannot recover from (a backend failure, a
 * corrupt segment) are logged, written to its status block, and end the process: a restart is
 * the recovery (style rule 9); one that says the configuration itself is refused exits
 * SKV_EXIT_CONFIG (78) so skvd can tell it from a crash. It dies with skvd (PR_SET_PDEATHSIG).
 *
 * Liveness (docs/architecture.md): a thread of its own beats the heartbeat every 50 ms whatever
 * the engine does, so a step may take longer than skvd's heartbeat timeout; the main thread
 * bumps the status block's progress counter per layer and per loop turn, so a main thread
 * wedged in a loop is still seen (skvd's [supervisor] stall_timeout_ms).
 */
#include <errno.h>
#include <fcntl.h>
#include <getopt.h>
#include <poll.h>
#include <signal.h>
#include <stdio.h>
#include <string.h>
#include <sys/prctl.h>
#include <threads.h>
#include <time.h>
#include <unistd.h>

#include "control.h"
#include "engine.h"
#include "image.h"
#include "keeper.h"
#include "memfd.h"
#include "ops.h"
#include "sched.h"
#include "skv-version.h"
#include "wire.h"

_Static_assert(SKV_WIRE_MAX_TOP_K == SKV_MAX_TOP_K && (int)SKV_WIRE_MAX_TEMPERATURE == (int)SKV_MAX_TEMPERATURE,
	       "skvd checks requests against the limits the engine enforces");
_Static_assert(SKV_MAX_GEN_TOP_K == SKV_MAX_TOP_K && SKV_MAX_GEN_TEMPERATURE == (int)SKV_MAX_TEMPERATURE,
	       "a checkpoint's generation_config.json is held to the engine's limits");

static volatile sig_atomic_t stop_requested;
static void on_term(int sig)
{
	(void)sig;
	stop_requested = 1;
}

struct worker {
	uint32_t replica;
	void *seg;
	struct skv_ctl_header hdr; /* private, checked copy */
	struct skv_worker_status *st;
	struct skv_ring req, evt;
	int req_efd, evt_efd;
	uint32_t pushed; /* events since the last doorbell */
	struct skv_sched *sched;
	struct skv_engine *engine;
	struct skv_backend *be;
	thrd_t beat_thread; /* C11 threads: worker/sched.h hides the <sched.h> that <pthread.h> needs */
	bool beating;
	_Atomic bool beat_stop;
};

#define wlog(w, prio, fmt, ...) fprintf(stderr, "<%d>worker %u | " fmt "\n", prio, (w)->replica, ##__VA_ARGS__)

static void heartbeat(struct worker *w)
{
	struct timespec ts;
	clock_gettime(CLOCK_MONOTONIC, &ts);
	atomic_store_explicit(&w->st->heartbeat_ns, (uint64_t)ts.tv_sec * 1000000000ull + (uint64_t)ts.tv_nsec,
			      memory_order_relaxed);
}

/* The main thread moved: a layer, a loop turn, a wait on skvd. */
static void progress(struct worker *w)
{
	atomic_fetch_add_explicit(&w->st->progress, 1, memory_order_relaxed);
}

/* The heartbeat thread: proves the process runs, not what its main thread does (progress does
 * that). It touches nothing but the heartbeat word. */
static int beat_main(void *arg)
{
	struct worker *w = arg;
	const struct timespec period = {0, 50 * 1000000L};
	while (!atomic_load_explicit(&w->beat_stop, memory_order_relaxed)) {
		heartbeat(w);
		nanosleep(&period, NULL);
	}
	return 0;
}

/* Starts the heartbeat thread with every signal blocked in it (SIGTERM stays the main
 * thread's). */
static int beat_start(struct worker *w, struct skv_err *err)
{
	sigset_t all, old;
	sigfillset(&all);
	pthread_sigmask(SIG_SETMASK, &all, &old);
	int r = thrd_create(&w->beat_thread, beat_main, w);
	pthread_sigmask(SIG_SETMASK, &old, NULL);
	if (r != thrd_success)
		return skv_err_set(err, -ENOMEM, "cannot start the heartbeat thread");
	w->beating = true;
	return 0;
}

static void beat_stop(struct worker *w)
{
	if (!w->beating)
		return;
	atomic_store_explicit(&w->beat_stop, true, memory_order_relaxed);
	thrd_join(w->beat_thread, NULL);
	w->beating = false;
}

static void publish_stats(struct worker *w)
{
	struct skv_sched_stats s;
	skv_sched_get_stats(w->sched, &s);
	atomic_store_explicit(&w->st->running, s.running, memory_order_relaxed);
	atomic_store_explicit(&w->st->waiting, s.waiting, memory_order_relaxed);
	atomic_store_explicit(&w->st->kv_free_blocks, s.free_blocks, memory_order_relaxed);
	atomic_store_explicit(&w->st->kv_total_blocks, s.num_blocks, memory_order_relaxed);
	atomic_store_explicit(&w->st->preemptions, s.preemptions, memory_order_relaxed);
	atomic_store_explicit(&w->st->steps, s.steps, memory_order_relaxed);
	progress(w);
}

static void doorbell(int efd)
{
	uint64_t one = 1;
	ssize_t n = write(efd, &one, sizeof(one));
	(void)n; /* a full counter means a wake-up is already pending */
}

/* Pushes one event; the loop guarantees room before each step, so a full ring here means skvd
 * broke the protocol. */
static void push_event(struct worker *w, struct skv_ctl_evt *ev)
{
	ev->ns = skv_now_ns();
	while (skv_ring_push(&w->evt, ev) == -EAGAIN) {
		doorbell(w->evt_efd);
		progress(w); /* waiting on skvd, not wedged */
		usleep(200);
	}
	w->pushed++;
}

static void on_event(void *userdata, const struct skv_sched_event *ev)
{
	struct worker *w = userdata;
	if (ev->scheduled) {
		struct skv_ctl_evt s = {.id = ev->id, .token = -1, .flags = SKV_CTL_EVT_SCHEDULED};
		push_event(w, &s);
		return;
	}
	if (ev->prefill) {
		struct skv_ctl_evt p = {.id = ev->id, .token = -1, .n_generated = ev->n_prefilled, .flags = SKV_CTL_EVT_PREFILL};
		push_event(w, &p);
		return;
	}
	struct skv_ctl_evt e = {
		.id = ev->id,
		.token = ev->token,
		.n_generated = ev->n_generated,
		.finish = ev->finish == SKV_FINISH_NONE	    ? SKV_CTL_FINISH_NONE
			  : ev->finish == SKV_FINISH_STOP   ? SKV_CTL_FINISH_STOP
			  : ev->finish == SKV_FINISH_LENGTH ? SKV_CTL_FINISH_LENGTH
							    : SKV_CTL_FINISH_CANCELLED,
	};
	if (ev->token >= 0)
		atomic_fetch_add_explicit(&w->st->gen_tokens, 1, memory_order_relaxed);
	push_event(w, &e);
}

/* One request record, copied out of the ring; its prompt is still in the pool. A malformed
 * record is skvd's bug or corruption: the worker fails rather than guessing. */
static int take_one(struct worker *w, const struct skv_ctl_req *r)
{
	struct skv_err err = {0};

	if (r->type == SKV_CTL_CANCEL) {
		(void)skv_sched_cancel(w->sched, r->id); /* may have finished already */
		return 0;
	}
	if (r->type != SKV_CTL_ADD || r->pool_offset > w->hdr.pool_tokens ||
	    r->n_prompt > w->hdr.pool_tokens - r->pool_offset) {
		wlog(w, 3, "malformed request record (type %u, %u tokens at %u)", r->type, r->n_prompt, r->pool_offset);
		return -EPROTO;
	}
	struct skv_seq_params sp = {
		.max_tokens = r->max_tokens,
		.ignore_eos = r->flags & SKV_CTL_IGNORE_EOS,
		.sampling = {.temperature = r->temperature, .top_p = r->top_p, .top_k = r->top_k, .seed = r->seed},
	};
	int rc = skv_sched_add(w->sched, r->id, skv_ctl_pool(w->seg, &w->hdr) + r->pool_offset, r->n_prompt, &sp, &err);
	if (rc < 0) {
		/* skvd checks every limit first; say why anyway and carry on */
		wlog(w, 4, "req %llu | refused: %s", (unsigned long long)r->id, err.msg);
		struct skv_ctl_evt e = {.id = r->id, .token = -1, .finish = SKV_CTL_FINISH_ERROR, .error = rc};
		push_event(w, &e);
	} else {
		atomic_fetch_add_explicit(&w->st->prompt_tokens, r->n_prompt, memory_order_relaxed);
		/* tell skvd when the request arrived here (its latency accounting) */
		struct skv_ctl_evt e = {.id = r->id, .token = -1, .flags = SKV_CTL_EVT_TAKEN};
		push_event(w, &e);
	}
	return 0;
}

/* Takes every request waiting in the ring. Each slot is released only once the prompt it points
 * to has been copied (skv_sched_add copies it): skvd reuses the pool up to the records the
 * worker has released. */
static int take_requests(struct worker *w)
{
	int n = skv_ring_avail(&w->req);
	if (n < 0) {
		wlog(w, 3, "request ring indices are corrupt");
		return -EPROTO;
	}
	for (int i = 0; i < n; i++) {
		struct skv_ctl_req r;
		skv_ring_peek(&w->req, &r);
		int rc = take_one(w, &r);
		skv_ring_release(&w->req);
		if (rc < 0)
			return rc;
	}
	return 0;
}

int main(int argc, char **argv)
{
	static const struct option opts[] = {
		{"ctl-fd", required_argument, NULL, 'c'},   {"weights-fd", required_argument, NULL, 'w'},
		{"kv-fd", required_argument, NULL, 'k'},    {"req-efd", required_argument, NULL, 'r'},
		{"evt-efd", required_argument, NULL, 'e'},  {"ppid", required_argument, NULL, 'p'},
		{"weights-dev-fd", required_argument, NULL, 'd'},
		{"help", no_argument, NULL, 'h'},	    {"version", no_argument, NULL, 'V'},
		{0},
	};
	int64_t ctl_fd = -1, weights_fd = -1, kv_fd = -1, req_efd = -1, evt_efd = -1, ppid = -1, wdev_fd = -1;
	struct skv_keeper_region wreg = {.fd = -1}, kvreg = {.fd = -1};
	struct worker w = {0};
	struct skv_err err = {0};
	int c;

	while ((c = getopt_long(argc, argv, "", opts, NULL)) != -1) {
		if (c == 'h') {
			printf("usage: skv-worker --ctl-fd N --weights-fd N --kv-fd N --req-efd N --evt-efd N\n"
			       "                  --ppid PID [--weights-dev-fd N]\n"
			       "       skv-worker --version | --help\n\n"
			       "One engine replica; skvd starts it (its fds and parent are skvd's), never a user.\n");
			return 0;
		}
		if (c == 'V') {
			skv_version_print("skv-worker");
			return 0;
		}
		int64_t *dst = c == 'c'	  ? &ctl_fd
			       : c == 'w' ? &weights_fd
			       : c == 'k' ? &kv_fd
			       : c == 'r' ? &req_efd
			       : c == 'e' ? &evt_efd
			       : c == 'p' ? &ppid
			       : c == 'd' ? &wdev_fd
					  : NULL;
		if (!dst || skv_parse_i64(optarg, 0, INT32_MAX, dst) < 0) {
			fprintf(stderr, "skv-worker: started by skvd only (bad arguments)\n");
			return 2;
		}
	}
	if (ctl_fd < 0 || weights_fd < 0 || kv_fd < 0 || req_efd < 0 || evt_efd < 0 || ppid < 0) {
		fprintf(stderr, "skv-worker: started by skvd only (missing arguments)\n");
		return 2;
	}
	/* Die with skvd; and if it is already gone, do not start. */
	prctl(PR_SET_PDEATHSIG, SIGKILL);
	if (getppid() != (pid_t)ppid)
		return 1;
	signal(SIGTERM, on_term);
	signal(SIGPIPE, SIG_IGN);

	/* the control segment: size from the fd, header checked, then copied */
	size_t ctl_size;
	if (skv_memfd_check((int)ctl_fd, 0, SKV_SEALS_SIZE | F_SEAL_SEAL, &ctl_size, &err) < 0 ||
	    skv_memfd_map((int)ctl_fd, ctl_size, true, &w.seg, &err) < 0) {
		fprintf(stderr, "<3>skv-worker: %s\n", err.msg);
		return 1;
	}
	memcpy(&w.hdr, w.seg, sizeof(w.hdr));
	if (skv_ctl_check(&w.hdr, ctl_size, &err) < 0) {
		fprintf(stderr, "<3>skv-worker: %s\n", err.msg);
		return 1;
	}
	w.replica = w.hdr.replica;
	w.st = skv_ctl_status(w.seg, &w.hdr);
	w.req_efd = (int)req_efd;
	w.evt_efd = (int)evt_efd;
	skv_ctl_req_ring(w.seg, &w.hdr, false, &w.req);
	skv_ctl_evt_ring(w.seg, &w.hdr, true, &w.evt);
	atomic_store(&w.st->state, SKV_WORKER_STARTING);
	heartbeat(&w);

	int rc = 1;
	bool ready = false;
	if ((rc = beat_start(&w, &err)) < 0)
		goto fail;
	const struct skv_ctl_engine *ep = &w.hdr.engine;
	void *weights = NULL, *kv = NULL;
	/* a step makes up to two events per sequence (a first-scheduled note and a token) */
	const uint32_t evt_room = 2 * ep->max_seqs;
	if (w.hdr.evt_capacity < evt_room) {
		rc = skv_err_set(&err, -EPROTO, "event ring of %u for %u sequences", w.hdr.evt_capacity, ep->max_seqs);
		goto fail;
	}
	const struct skv_image_header *img = NULL;
	const void *wdata;
	if (skv_memfd_check((int)weights_fd, ep->weights_bytes, SKV_SEALS_READONLY, NULL, &err) < 0 ||
	    skv_memfd_map((int)weights_fd, ep->weights_bytes, false, &weights, &err) < 0)
		goto fail;
	if (ep->backend == 2) {
		/* the backend first (it makes the device's context current), then skvd's regions
		 * mapped into it: the weights' data and the KV arena stay resident across workers */
		if (wdev_fd < 0) {
			rc = skv_err_set(&err, -EPROTO, "CUDA backend without --weights-dev-fd");
			goto fail;
		}
		if ((rc = skv_image_check_meta(weights, ep->weights_bytes, ep->weights_dev_bytes, &img, &err)) < 0 ||
		    (rc = skv_backend_cuda_new(ep->device, &w.be, &err)) < 0 ||
		    (rc = skv_keeper_import(ep->device, (int)wdev_fd, ep->weights_dev_bytes, &wreg, &err)) < 0 ||
		    (rc = skv_keeper_import(ep->device, (int)kv_fd, ep->kv_bytes, &kvreg, &err)) < 0)
			goto fail;
		wdata = (const void *)(uintptr_t)wreg.va;
		kv = (void *)(uintptr_t)kvreg.va;
	} else {
		if ((rc = skv_image_check(weights, ep->weights_bytes, &img, &err)) < 0 ||
		    (rc = skv_memfd_check((int)kv_fd, ep->kv_bytes, SKV_SEALS_SIZE | F_SEAL_SEAL, NULL, &err)) < 0 ||
		    (rc = skv_memfd_map((int)kv_fd, ep->kv_bytes, true, &kv, &err)) < 0 ||
		    (rc = skv_backend_cpu_new(ep->threads, &w.be, &err)) < 0)
			goto fail;
		wdata = (const char *)weights + img->data_offset;
	}
	struct skv_engine_params eparams = {
		.be = w.be,
		.image = img,
		.weights = wdata,
		.kv_arena = kv,
		.num_blocks = ep->num_blocks,
		.block_size = ep->block_size,
		.max_batch_tokens = ep->max_batch_tokens,
		.max_seqs = ep->max_seqs,
		.max_context = ep->max_context,
		.progress = &w.st->progress,
	};
	if (skv_engine_kv_bytes(img, w.be->ops->kv_dtype, ep->num_blocks, ep->block_size) > ep->kv_bytes) {
		rc = skv_err_set(&err, -EPROTO, "the KV arena region (%llu bytes) is too small for %u blocks",
				 (unsigned long long)ep->kv_bytes, ep->num_blocks);
		goto fail;
	}
	struct skv_sched_params sparams = {
		.num_blocks = ep->num_blocks,
		.block_size = ep->block_size,
		.max_batch_tokens = ep->max_batch_tokens,
		.mixed_batch_tokens = ep->mixed_batch_tokens,
		.max_seqs = ep->max_seqs,
		.max_context = ep->max_context,
		.admission = (enum skv_admission)ep->admission,
	};
	if ((rc = skv_engine_new(&eparams, &w.engine, &err)) < 0 ||
	    (rc = skv_sched_new(&sparams, &img->config, &w.sched, &err)) < 0)
		goto fail;

	atomic_store(&w.st->generation, w.hdr.generation);
	publish_stats(&w);
	atomic_store_explicit(&w.st->state, SKV_WORKER_READY, memory_order_release);
	ready = true;
	doorbell(w.evt_efd);
	wlog(&w, 6, "ready: %u KV blocks of %u tokens, %s backend", ep->num_blocks, ep->block_size, w.be->ops->name);

	while (!stop_requested) {
		if (take_requests(&w) < 0) {
			rc = skv_err_set(&err, -EPROTO, "request ring corrupt");
			goto fail;
		}
		if (skv_sched_idle(w.sched)) {
			publish_stats(&w);
			if (w.pushed) {
				doorbell(w.evt_efd);
				w.pushed = 0;
			}
			struct pollfd pfd = {.fd = w.req_efd, .events = POLLIN};
			if (poll(&pfd, 1, 100) > 0) {
				uint64_t v;
				ssize_t n = read(w.req_efd, &v, sizeof(v));
				(void)n;
			}
			continue;
		}
		/* room for every event a step can make */
		for (;;) {
			int space = skv_ring_space(&w.evt);
			if (space < 0) {
				rc = skv_err_set(&err, -EPROTO, "event ring corrupt");
				goto fail;
			}
			if ((uint32_t)space >= evt_room || stop_requested)
				break;
			doorbell(w.evt_efd);
			progress(&w);
			usleep(500);
		}
		uint64_t t0 = skv_now_ns();
		rc = skv_sched_step(w.sched, w.engine, on_event, &w, &err);
		if (rc < 0)
			goto fail;
		atomic_fetch_add_explicit(&w.st->busy_ns, skv_now_ns() - t0, memory_order_relaxed);
		publish_stats(&w);
		if (w.pushed) {
			doorbell(w.evt_efd);
			w.pushed = 0;
		}
	}
	wlog(&w, 6, "stopping");
	rc = 0;
	goto out;
fail:
	wlog(&w, 3, "%s", err.msg[0] ? err.msg : "failed");
	skv_strscpy(w.st->error, err.msg, sizeof(w.st->error));
	/* the engine or scheduler refused the parameters it was given before it ever served:
	 * a configuration skvd should not have passed, which no restart changes */
	bool refused = !ready && (rc == -EINVAL || rc == -E2BIG || rc == -ERANGE);
	atomic_store(&w.st->state, SKV_WORKER_FAILED);
	doorbell(w.evt_efd);
	rc = refused ? SKV_EXIT_CONFIG : 1;
out:
	beat_stop(&w);
	skv_sched_free(w.sched);
	skv_engine_free(w.engine);
	skv_keeper_release(&kvreg);
	skv_keeper_release(&wreg);
	if (w.be)
		w.be->ops->destroy(w.be);
	return rc;
}
