/* test-e2e.c: the appliance end to end on the CPU backend: the real skvd, real skv-worker
 * processes, real sockets, memfds and io_uring, driven through libskv and the real skvctl and
 * skv binaries, with the tiny synthetic model. Each test starts its own skvd in a temporary
 * directory. The promises of reliability.md are checked one by one. */
#include <errno.h>
#include <grp.h>
#include <limits.h>
#include <pwd.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <fcntl.h>
#include <poll.h>
#include <sys/mman.h>
#include <sys/ptrace.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <sys/wait.h>
#include <dirent.h>
#include <time.h>
#include <unistd.h>

#include "e2e-util.h"
#include "ring.h"
#include "wire.h"

static char *model; /* tiny SwiftKV model, made once */

static long now_ms(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_MONOTONIC, &ts);
	return ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

static void make_ids(int32_t *ids, uint32_t n, uint64_t seed)
{
	for (uint32_t i = 0; i < n; i++) {
		seed = seed * 6364136223846793005ull + 1442695040888963407ull;
		ids[i] = (int32_t)((seed >> 33) % 250) + 1;
	}
}

static void ids_request(struct skv_request *r, const int32_t *ids, uint32_t n, uint32_t max_tokens)
{
	skv_request_init(r);
	r->kind = SKV_PROMPT_IDS;
	r->ids = ids;
	r->n_ids = n;
	r->max_tokens = max_tokens;
	r->flags = SKV_REQUEST_IGNORE_EOS | SKV_REQUEST_STREAM_IDS | SKV_REQUEST_TEMPERATURE;
	r->temperature = 0.0f;
}

/* skv-run's ids for the same prompt and sampling. */
static uint32_t skv_run_ids(const int32_t *ids, uint32_t n, uint32_t max_tokens, const char *sampling, int32_t *out)
{
	char cmd[8192], line[8192];
	int k = snprintf(cmd, sizeof(cmd), "'%s' --model '%s' --threads 1 --max-tokens %u --ignore-eos --ids %s --prompt-ids ",
			 tu_tool("SKV_RUN"), model, max_tokens, sampling);
	for (uint32_t i = 0; i < n; i++)
		k += snprintf(cmd + k, sizeof(cmd) - (size_t)k, "%s%d", i ? "," : "", ids[i]);
	FILE *p = popen(cmd, "r");
	assert_non_null(p);
	assert_non_null(fgets(line, sizeof(line), p));
	assert_int_equal(pclose(p), 0);
	uint32_t m = 0;
	for (char *s = line, *end; *s && *s != '\n'; s = end) {
		long v = strtol(s, &end, 10);
		if (end == s)
			break;
		out[m++] = (int32_t)v;
	}
	return m;
}

/* 32 concurrent streams over 4 sessions equal skv-run alone, greedy and seeded. */
static void test_streams_equal_skv_run(void **state)
{
	(void)state;
	if (getenv("SKV_E2E_BACKEND") && strcmp(getenv("SKV_E2E_BACKEND"), "cpu")) {
		/* bf16 on a GPU: batch composition changes rounding, so exact equality with a lone
		 * skv-run does not hold (test-cuda-model checks the GPU's numbers) */
		skip();
		return;
	}
	struct e2e e;
	e2e_start(&e, model, NULL);
	enum { N = 32, C = 4, MAXT = 12 };
	struct skv_client *c[C];
	int32_t prompts[N][80];
	uint32_t lens[N];
	uint64_t ids[N];
	struct skv_request req;
	int32_t got[N][64];
	uint32_t n_got[N] = {0};

	for (int i = 0; i < C; i++)
		c[i] = e2e_client(&e);
	for (int i = 0; i < N; i++) {
		lens[i] = 1 + (uint32_t)(i * 7) % 77;
		make_ids(prompts[i], lens[i], (uint64_t)i + 1);
		ids_request(&req, prompts[i], lens[i], MAXT);
		if (i % 8 == 7) { /* some sampled with a seed (top_p set: skvd's default is the model's) */
			req.temperature = 0.9f;
			req.flags |= SKV_REQUEST_SEED | SKV_REQUEST_TOP_K | SKV_REQUEST_TOP_P;
			req.seed = 1000 + (uint64_t)i;
			req.top_k = 40;
			req.top_p = 1.0f;
		}
		req.user_data = (void *)(intptr_t)i;
		assert_int_equal(skv_client_submit(c[i % C], &req, &ids[i]), 0);
	}
	int left = N;
	long end = now_ms() + 60000;
	while (left > 0 && now_ms() < end) {
		for (int k = 0; k < C; k++) {
			struct skv_event ev;
			int r;
			while ((r = skv_client_next(c[k], &ev, 0)) == 0) {
				int i = (int)(intptr_t)ev.user_data;
				for (uint32_t j = 0; j < ev.n_ids; j++)
					got[i][n_got[i]++] = ev.ids[j];
				if (ev.type == SKV_EVENT_FINAL) {
					if (ev.finish != SKV_FINISH_REASON_LENGTH)
						fail_msg("request %d: finish %s (%s)", i, skv_finish_name(ev.finish), ev.message);
					assert_int_equal(ev.completion_tokens, MAXT);
					assert_int_equal(ev.prompt_tokens, lens[i]);
					assert_true(ev.total_us >= ev.ttft_us);
					left--;
				}
			}
			assert_int_equal(r, -EAGAIN);
		}
		usleep(2000);
	}
	assert_int_equal(left, 0);
	for (int i = 0; i < N; i++) {
		int32_t want[64];
		char sampling[128] = "";
		if (i % 8 == 7)
			snprintf(sampling, sizeof(sampling), "--temperature 0.9 --top-k 40 --seed %d", 1000 + i);
		uint32_t m = skv_run_ids(prompts[i], lens[i], MAXT, sampling, want);
		assert_int_equal(m, MAXT);
		assert_int_equal(n_got[i], MAXT);
		if (memcmp(want, got[i], MAXT * sizeof(int32_t)))
			fail_msg("request %d: skvd's tokens differ from skv-run's", i);
	}
	for (int i = 0; i < C; i++)
		skv_client_free(c[i]);
	assert_true(e2e_notified(&e, "STATUS=", 0));
	assert_int_equal(e2e_stop(&e, 10000), 0);
	assert_true(e2e_notified(&e, "STOPPING=1", 0));
	tu_rmdir(e.dir);
}

/* Cancel mid-prefill, mid-decode and by disconnecting: the KV blocks come back at once. */
static void test_cancel_frees_kv(void **state)
{
	(void)state;
	struct e2e e;
	const char *ov[] = {"engine.replicas=1", "engine.max_batch_tokens=16", NULL};
	e2e_start(&e, model, ov);
	struct skv_client *c = e2e_client(&e);
	static int32_t prompt[1900];
	struct skv_request req;
	struct skv_event ev;
	uint64_t id;

	/* mid-prefill: 1900 tokens at 16 a step */
	make_ids(prompt, 1900, 7);
	ids_request(&req, prompt, 1900, 100);
	assert_int_equal(skv_client_submit(c, &req, &id), 0);
	long end = now_ms() + 5000;
	while (e2e_kv_used(&e) == 0 && now_ms() < end)
		usleep(1000);
	assert_true(e2e_kv_used(&e) > 0);
	assert_int_equal(skv_client_cancel(c, id), 0);
	assert_int_equal(skv_client_next(c, &ev, 5000), 0);
	assert_int_equal(ev.type, SKV_EVENT_FINAL);
	assert_int_equal(ev.finish, SKV_FINISH_REASON_CANCELLED);
	assert_int_equal(ev.completion_tokens, 0);
	end = now_ms() + 1000;
	while (e2e_kv_used(&e) != 0 && now_ms() < end)
		usleep(1000);
	assert_int_equal(e2e_kv_used(&e), 0);

	/* mid-decode */
	ids_request(&req, prompt, 20, 1500);
	assert_int_equal(skv_client_submit(c, &req, &id), 0);
	assert_int_equal(skv_client_next(c, &ev, 5000), 0);
	assert_int_equal(ev.type, SKV_EVENT_DELTA);
	assert_int_equal(skv_client_cancel(c, id), 0);
	do
		assert_int_equal(skv_client_next(c, &ev, 5000), 0);
	while (ev.type == SKV_EVENT_DELTA);
	assert_int_equal(ev.finish, SKV_FINISH_REASON_CANCELLED);
	assert_true(ev.completion_tokens < 1500);
	end = now_ms() + 1000;
	while (e2e_kv_used(&e) != 0 && now_ms() < end)
		usleep(1000);
	assert_int_equal(e2e_kv_used(&e), 0);

	/* by disconnecting */
	assert_int_equal(skv_client_submit(c, &req, &id), 0);
	assert_int_equal(skv_client_next(c, &ev, 5000), 0);
	skv_client_free(c);
	end = now_ms() + 1000;
	while (e2e_kv_used(&e) != 0 && now_ms() < end)
		usleep(1000);
	assert_int_equal(e2e_kv_used(&e), 0);

	/* skvctl cancel of a request it lists */
	c = e2e_client(&e);
	assert_int_equal(skv_client_submit(c, &req, &id), 0);
	assert_int_equal(skv_client_next(c, &ev, 5000), 0);
	json_object *list = NULL, *reqs, *r0, *v;
	char out[1 << 16];
	assert_int_equal(e2e_ctl(&e, out, sizeof(out), "requests --json"), 0);
	list = json_tokener_parse(out);
	assert_true(json_object_object_get_ex(list, "requests", &reqs));
	assert_int_equal(json_object_array_length(reqs), 1);
	r0 = json_object_array_get_idx(reqs, 0);
	assert_true(json_object_object_get_ex(r0, "id", &v));
	assert_int_equal(e2e_ctl(&e, NULL, 0, "cancel %lld", (long long)json_object_get_int64(v)), 0);
	json_object_put(list);
	do
		assert_int_equal(skv_client_next(c, &ev, 5000), 0);
	while (ev.type == SKV_EVENT_DELTA);
	assert_int_equal(ev.finish, SKV_FINISH_REASON_CANCELLED);
	assert_true(e2e_ctl(&e, out, sizeof(out), "cancel 999999") != 0);
	skv_client_free(c);
	assert_int_equal(e2e_stop(&e, 10000), 0);
	tu_rmdir(e.dir);
}

/* The inode of the weights memfd a process maps (0 when none). */
static unsigned long weights_inode(pid_t pid)
{
	char path[64], line[512];
	unsigned long ino = 0;
	snprintf(path, sizeof(path), "/proc/%d/maps", (int)pid);
	FILE *f = fopen(path, "r");
	if (!f)
		return 0;
	while (fgets(line, sizeof(line), f))
		if (strstr(line, "memfd:skv-weights")) {
			unsigned long a, b, off, ino2;
			char perms[8], dev[16];
			if (sscanf(line, "%lx-%lx %7s %lx %15s %lu", &a, &b, perms, &off, dev, &ino2) == 6)
				ino = ino2;
			break;
		}
	fclose(f);
	return ino;
}

/* SIGKILL a worker under load: every request ends within 2 s, in success or with an explicit
 * error; the worker is back within 2 s, mapping the same resident weights. */
static void test_worker_killed(void **state)
{
	(void)state;
	struct e2e e;
	e2e_start(&e, model, NULL);
	enum { N = 16 };
	struct skv_client *c = e2e_client(&e);
	int32_t prompt[N][40];
	struct skv_request req;
	pid_t pids[2];
	int restarts[2];

	/* two CPU replicas; on a GPU machine one per GPU */
	int nw = e2e_workers(&e, pids, restarts, NULL, 2);
	assert_true(nw >= 1);
	unsigned long ino = weights_inode(pids[0]);
	assert_true(ino != 0);
	if (nw > 1)
		assert_int_equal(weights_inode(pids[1]), ino);
	/* a greedy answer before the kill, to compare with one after it */
	struct e2e_result *res = malloc(sizeof(*res)), *res2 = malloc(sizeof(*res2));
	int32_t probe[12];
	make_ids(probe, 12, 99);
	ids_request(&req, probe, 12, 10);
	assert_int_equal(e2e_run(c, &req, res), 0);
	uint64_t rid[N];
	bool streamed[N] = {false};
	for (int i = 0; i < N; i++) {
		make_ids(prompt[i], 40, (uint64_t)i + 50);
		ids_request(&req, prompt[i], 40, 400);
		assert_int_equal(skv_client_submit(c, &req, &rid[i]), 0);
	}
	/* every stream has begun on both workers */
	struct skv_event ev;
	int begun = 0;
	while (begun < N) {
		assert_int_equal(skv_client_next(c, &ev, 5000), 0);
		assert_int_equal(ev.type, SKV_EVENT_DELTA);
		for (int i = 0; i < N; i++)
			if (rid[i] == ev.id && !streamed[i]) {
				streamed[i] = true;
				begun++;
			}
	}
	assert_int_equal(kill(pids[0], SIGKILL), 0);
	long t_kill = now_ms();
	int finals = 0, lost = 0;
	while (finals < N) {
		int r = skv_client_next(c, &ev, 3000);
		assert_int_equal(r, 0);
		if (ev.type != SKV_EVENT_FINAL)
			continue;
		finals++;
		if (ev.finish == SKV_FINISH_REASON_ERROR) {
			assert_int_equal(ev.error, SKV_ERROR_CODE_WORKER_LOST);
			assert_non_null(strstr(ev.message, "died"));
			lost++;
			assert_true(now_ms() - t_kill < 2000 * tu_time_scale());
		} else {
			assert_int_equal(ev.finish, SKV_FINISH_REASON_LENGTH);
		}
	}
	assert_int_equal(lost, N / nw); /* the killed worker's streams, and only those */
	/* the promise: serving again within 2 s */
	assert_true(e2e_wait_ready(&e, 2000 * (int)tu_time_scale()));
	assert_true(now_ms() - t_kill < 2500 * tu_time_scale());
	pid_t after[2];
	assert_int_equal(e2e_workers(&e, after, restarts, NULL, 2), nw);
	assert_true(after[0] != pids[0]);
	if (nw > 1)
		assert_int_equal(after[1], pids[1]);
	assert_int_equal(restarts[0], 1);
	/* the new worker maps the very same weights region: nothing was reloaded from disk */
	assert_int_equal(weights_inode(after[0]), ino);
	assert_int_equal(tu_sh("test $(grep -c 'loading ' '%s') -eq 1", e.log), 0);
	/* and serves, with the same weights: the same greedy answer as before the kill */
	ids_request(&req, probe, 12, 10);
	for (int i = 0; i < 2 * nw; i++) {
		assert_int_equal(e2e_run(c, &req, res2), 0);
		assert_int_equal(res2->final.finish, SKV_FINISH_REASON_LENGTH);
		assert_int_equal(res2->n_ids, res->n_ids);
		assert_memory_equal(res2->ids, res->ids, res->n_ids * sizeof(int32_t));
	}
	free(res);
	free(res2);
	skv_client_free(c);
	assert_int_equal(e2e_stop(&e, 10000), 0);
	tu_rmdir(e.dir);
}

/* SIGSTOP a worker: its heartbeat goes stale, it is killed and replaced, and a request that was
 * waiting on it is re-run (nothing had been streamed). */
static void test_worker_hung(void **state)
{
	(void)state;
	struct e2e e;
	const char *ov[] = {"supervisor.heartbeat_timeout_ms=800", "engine.replicas=1", NULL};
	e2e_start(&e, model, ov);
	pid_t pid;
	assert_int_equal(e2e_workers(&e, &pid, NULL, NULL, 1), 1);
	assert_int_equal(kill(pid, SIGSTOP), 0);
	struct skv_client *c = e2e_client(&e);
	int32_t prompt[30];
	struct skv_request req;
	struct e2e_result *res = malloc(sizeof(*res));
	make_ids(prompt, 30, 3);
	ids_request(&req, prompt, 30, 6);
	long t0 = now_ms();
	/* several requests waiting on the hung worker: all re-run on its successor */
	uint64_t ids[3];
	for (int i = 0; i < 3; i++)
		assert_int_equal(skv_client_submit(c, &req, &ids[i]), 0);
	for (int done = 0; done < 3;) {
		struct skv_event ev;
		assert_int_equal(skv_client_next(c, &ev, 20000 * (int)tu_time_scale()), 0);
		if (ev.type != SKV_EVENT_FINAL)
			continue;
		assert_int_equal(ev.finish, SKV_FINISH_REASON_LENGTH);
		assert_int_equal(ev.completion_tokens, 6);
		done++;
	}
	assert_int_equal(e2e_run(c, &req, res), 0);
	assert_int_equal(res->final.finish, SKV_FINISH_REASON_LENGTH);
	assert_int_equal(res->n_ids, 6);
	long took = now_ms() - t0;
	assert_true(took >= 700 && took < 15000 * tu_time_scale());
	pid_t now;
	int restarts;
	assert_int_equal(e2e_workers(&e, &now, &restarts, NULL, 1), 1);
	assert_true(now != pid);
	assert_int_equal(restarts, 1);
	assert_int_equal(tu_sh("grep -q 'no heartbeat' '%s'", e.log), 0);
	free(res);
	skv_client_free(c);
	assert_int_equal(e2e_stop(&e, 10000), 0);
	tu_rmdir(e.dir);
}

/* A model whose prefill of LONG_PROMPT tokens in one step takes seconds on one thread (about
 * 4 s on the 2-core development machine, over 1 s on any CPU): 8 layers of hidden 512, served
 * by one replica that prefills the whole prompt in one step. */
#define LONG_PROMPT 2000
struct slow {
	struct e2e e;
	char *model;
	struct skv_client *c;
	int32_t *prompt; /* [LONG_PROMPT] */
	struct skv_request req;
};

static void slow_start(struct slow *s, const char *extra)
{
	const char *ov[] = {"engine.replicas=1", "engine.max_batch_tokens=2048", "engine.kv_cache_bytes=64M", extra, NULL};
	s->model = tu_mkmodel("--preset small --hidden 512 --intermediate 2048 --heads 8 --kv-heads 2 --head-dim 64 "
			      "--seed 5");
	e2e_start(&s->e, s->model, ov);
	s->c = e2e_client(&s->e);
	s->prompt = malloc(LONG_PROMPT * sizeof(*s->prompt));
	make_ids(s->prompt, LONG_PROMPT, 11);
	ids_request(&s->req, s->prompt, LONG_PROMPT, 4);
}

static void slow_stop(struct slow *s)
{
	free(s->prompt);
	skv_client_free(s->c);
	assert_int_equal(e2e_stop(&s->e, 10000), 0);
	tu_rmdir(s->e.dir);
	tu_rmdir(s->model);
	free(s->model);
}

static int64_t status_int(struct e2e *e, const char *key)
{
	json_object *st = e2e_status(e), *v;
	assert_true(json_object_object_get_ex(st, key, &v));
	int64_t x = json_object_get_int64(v);
	json_object_put(st);
	return x;
}

/* A step longer than the heartbeat timeout: the worker's heartbeat thread keeps it alive, its
 * progress counter moves per layer, and the request completes on the first worker. */
static void test_long_step(void **state)
{
	(void)state;
	struct slow s;
	if (getenv("SKV_E2E_BACKEND")) /* a GPU prefills it in milliseconds */
		skip();
#if defined(__SANITIZE_ADDRESS__)
	skip(); /* the unoptimised sanitizer build takes minutes over this prefill; the others run it */
#endif
	slow_start(&s, "supervisor.heartbeat_timeout_ms=500");
	struct e2e_result *res = malloc(sizeof(*res));
	pid_t pid, after;
	int restarts;
	assert_int_equal(e2e_workers(&s.e, &pid, &restarts, NULL, 1), 1);
	long t0 = now_ms();
	assert_int_equal(e2e_run(s.c, &s.req, res), 0);
	long took = now_ms() - t0;
	if (res->final.finish != SKV_FINISH_REASON_LENGTH)
		e2e_dump_log(&s.e);
	assert_int_equal(res->final.finish, SKV_FINISH_REASON_LENGTH);
	assert_int_equal(res->n_ids, 4);
	/* the premise: the one prefill step outlasted the heartbeat timeout */
	if (took <= 500) {
		e2e_dump_log(&s.e);
		fail_msg("the prefill took %ld ms, not longer than the 500 ms heartbeat timeout: use a bigger model", took);
	}
	assert_int_equal(e2e_workers(&s.e, &after, &restarts, NULL, 1), 1);
	assert_int_equal(after, pid);
	assert_int_equal(restarts, 0);
	assert_int_not_equal(tu_sh("grep -q 'killing it' '%s'", s.e.log), 0);
	free(res);
	slow_stop(&s);
}

/* A request whose worker dies every time it runs it (SIGKILLed here each time the request is in
 * its hands, long before its first token) is re-run max_request_retries times, then ends with
 * worker_lost saying how many workers died; the replica serves again afterwards. */
static void test_retry_cap(void **state)
{
	(void)state;
	struct slow s;
	if (getenv("SKV_E2E_BACKEND")) /* a GPU prefills it in milliseconds */
		skip();
	slow_start(&s, "supervisor.max_request_retries=1");
	uint64_t id;
	assert_int_equal(skv_client_submit(s.c, &s.req, &id), 0);
	pid_t killed = 0;
	long deadline = now_ms() + 60000 * tu_time_scale();
	for (int kills = 0; kills < 2;) {
		if (now_ms() > deadline) {
			e2e_dump_log(&s.e);
			fail_msg("the request was never in a new worker's hands");
		}
		pid_t pid;
		char st[1][16];
		assert_int_equal(e2e_workers(&s.e, &pid, NULL, st, 1), 1);
		if (pid > 0 && pid != killed && !strcmp(st[0], "ready") && status_int(&s.e, "requests_running") == 1) {
			assert_int_equal(kill(pid, SIGKILL), 0);
			killed = pid;
			kills++;
		}
		usleep(10000);
	}
	struct skv_event ev;
	do
		assert_int_equal(skv_client_next(s.c, &ev, 20000 * (int)tu_time_scale()), 0);
	while (ev.type != SKV_EVENT_FINAL);
	assert_int_equal(ev.id, id);
	assert_int_equal(ev.finish, SKV_FINISH_REASON_ERROR);
	assert_int_equal(ev.error, SKV_ERROR_CODE_WORKER_LOST);
	assert_non_null(strstr(ev.message, "died 2 times while running this request"));
	assert_non_null(strstr(ev.message, "max_request_retries"));
	assert_int_equal(ev.completion_tokens, 0);
	/* the replica comes back and serves */
	assert_true(e2e_wait_ready(&s.e, 10000 * (int)tu_time_scale()));
	struct e2e_result *res = malloc(sizeof(*res));
	ids_request(&s.req, s.prompt, 20, 3);
	assert_int_equal(e2e_run(s.c, &s.req, res), 0);
	assert_int_equal(res->final.finish, SKV_FINISH_REASON_LENGTH);
	int restarts;
	assert_int_equal(e2e_workers(&s.e, NULL, &restarts, NULL, 1), 1);
	assert_int_equal(restarts, 2);
	free(res);
	slow_stop(&s);
}

/* A worker whose engine thread is wedged while the process runs (here: that one thread stopped
 * with ptrace, so its heartbeat thread keeps beating) is killed after stall_timeout_ms for making
 * no progress, and replaced; the replacement serves. */
static void test_worker_wedged(void **state)
{
	(void)state;
	struct e2e e;
	const char *ov[] = {"supervisor.stall_timeout_ms=1000", "engine.replicas=1", NULL};
	e2e_start(&e, model, ov);
	pid_t pid;
	assert_int_equal(e2e_workers(&e, &pid, NULL, NULL, 1), 1);
	/* the main thread only (its tid is the pid): PTRACE_INTERRUPT stops no other thread */
	if (ptrace(PTRACE_SEIZE, pid, NULL, NULL) < 0) {
		int err = errno;
		assert_int_equal(e2e_stop(&e, 10000), 0);
		tu_rmdir(e.dir);
		if (err == EPERM)
			skip(); /* ptrace is not allowed here (Yama, a container) */
		fail_msg("PTRACE_SEIZE: %s", strerror(err));
	}
	assert_int_equal(ptrace(PTRACE_INTERRUPT, pid, NULL, NULL), 0);
	int st;
	assert_int_equal(waitpid(pid, &st, __WALL), pid);
	assert_true(WIFSTOPPED(st));
	long t0 = now_ms();
	/* skvd kills it; a traced process's death reaches its parent only once the tracer has
	 * reaped it */
	for (;;) {
		pid_t r = waitpid(pid, &st, __WALL | WNOHANG);
		if (r == pid && (WIFEXITED(st) || WIFSIGNALED(st)))
			break;
		if (r == pid && WIFSTOPPED(st)) /* some other stop: stay stopped (no restart) */
			continue;
		if (now_ms() - t0 > 20000 * tu_time_scale()) {
			e2e_dump_log(&e);
			fail_msg("the wedged worker was not killed");
		}
		usleep(10000);
	}
	assert_true(WIFSIGNALED(st) && WTERMSIG(st) == SIGKILL);
	assert_true(now_ms() - t0 >= 900);
	assert_true(e2e_wait_ready(&e, 10000 * (int)tu_time_scale()));
	assert_int_equal(tu_sh("grep -q 'no progress for' '%s'", e.log), 0);
	assert_int_not_equal(tu_sh("grep -q 'no heartbeat' '%s'", e.log), 0); /* its process ran */
	struct skv_client *c = e2e_client(&e);
	struct e2e_result *res = malloc(sizeof(*res));
	struct skv_request req;
	int32_t prompt[10];
	make_ids(prompt, 10, 4);
	ids_request(&req, prompt, 10, 3);
	assert_int_equal(e2e_run(c, &req, res), 0);
	assert_int_equal(res->final.finish, SKV_FINISH_REASON_LENGTH);
	free(res);
	skv_client_free(c);
	assert_int_equal(e2e_stop(&e, 10000), 0);
	tu_rmdir(e.dir);
}

/* skvd --check-config FILE with [model] path = dir (and extra ini lines): its exit status, with
 * what it printed in out. */
static int check_config(const char *tmp, const char *dir, const char *extra, char *out, size_t cap)
{
	char ini[256], log[256];
	snprintf(ini, sizeof(ini), "%s/check.ini", tmp);
	snprintf(log, sizeof(log), "%s/check.log", tmp);
	tu_writef(ini, "[model]\npath = %s\n[engine]\nbackend = cpu\n%s", dir, extra);
	int st = tu_sh("'%s' --check-config '%s' >'%s' 2>&1", tu_tool("SKVD"), ini, log);
	char *text = tu_slurp(log, NULL);
	snprintf(out, cap, "%s", text);
	free(text);
	return st;
}

static void expect_check_fails(const char *tmp, const char *dir, const char *extra, const char *needle)
{
	char out[2048];
	int st = check_config(tmp, dir, extra, out, sizeof(out));
	if (st != 78 || !strstr(out, needle))
		fail_msg("skvd --check-config exited %d, want 78 with \"%s\"; it said: %s", st, needle, out);
}

/* skvd --check-config checks [model] path without loading a weight: config.json parses and
 * validates, every file the index names is there, every header's tensors tile its file, the
 * tensors match the config, and a configured KV arena is one the engine addresses. Each
 * failure exits 78 (EX_CONFIG) naming the file, the tensor or the key. */
static void test_check_config_model(void **state)
{
	(void)state;
	char out[2048];
	char *tmp = tu_tmpdir();
	char *m = tu_mkmodel("--preset small --layers 2 --seed 7 --max-shard-size 1048576");
	char dir[256];
	snprintf(dir, sizeof(dir), "%s/m", tmp);

	/* the model as made passes, and a KV arena of 1G too */
	assert_int_equal(check_config(tmp, m, "kv_cache_bytes = 1G\n", out, sizeof(out)), 0);
	assert_non_null(strstr(out, ": ok"));
	/* no such directory */
	expect_check_fails(tmp, "/nonexistent/model", "", "/nonexistent/model/config.json: cannot open");
	/* 16T of KV: blocks x block_size over the engine's int32 slots, caught before any worker */
	expect_check_fails(tmp, m, "kv_cache_bytes = 16T\n", "kv_cache_bytes = 17592186044416: the KV arena holds");
	expect_check_fails(tmp, m, "kv_cache_bytes = 16T\n", "over the engine's limit of 2147483647 positions");

	/* each damage on a fresh copy */
	struct {
		const char *damage, *needle;
	} cases[] = {
		{"printf '{\"hidden_size\": ' > m/config.json", "config.json"},
		{"sed -i 's/\"hidden_size\": 256/\"hidden_size\": 0/' m/config.json", "hidden_size"},
		{"rm m/model-00003-of-00006.safetensors", "model-00003-of-00006.safetensors: cannot open"},
		{"truncate -s -64 m/model-00002-of-00006.safetensors", "the file is truncated or corrupt"},
		{"truncate -s +8 m/model-00004-of-00006.safetensors", "bytes of data after the last tensor"},
		{"sed -i 's/\"intermediate_size\": 768/\"intermediate_size\": 512/' m/config.json",
		 "has shape [768, 256], expected [512, 256]"},
		{"sed -i 's/model-00005-of-00006/model-00009-of-00006/' m/model.safetensors.index.json",
		 "model-00009-of-00006.safetensors: cannot open"},
	};
	for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
		assert_int_equal(tu_sh("cd '%s' && rm -rf m && cp -r '%s' m && %s", tmp, m, cases[i].damage), 0);
		expect_check_fails(tmp, dir, "", cases[i].needle);
	}
	tu_rmdir(m);
	free(m);
	tu_rmdir(tmp);
	free(tmp);
}

/* kv_cache_bytes = 16T passed skvd's own check but not the engine's, and skvd restarted the
 * worker forever: now the one check refuses it at start, and skvd exits 78 naming the key. */
static void test_kv_limit_exits(void **state)
{
	(void)state;
	struct e2e e;
	const char *ov[] = {"engine.kv_cache_bytes=16T", "engine.replicas=1", NULL};
	e2e_spawn(&e, model, ov);
	int st = e2e_wait_exit(&e, 30000 * (int)tu_time_scale());
	if (st != 78) {
		e2e_dump_log(&e);
		fail_msg("skvd exited %d, want 78", st);
	}
	assert_int_equal(tu_sh("grep -q 'kv_cache_bytes = 17592186044416: the KV arena holds .* over the engine' '%s'",
			       e.log),
			 0);
	assert_int_not_equal(tu_sh("grep -q 'worker 0 | started' '%s'", e.log), 0);
	tu_rmdir(e.dir);
}

/* A worker that cannot start (here: its address space is too small to map its 8G KV arena,
 * which skvd only creates) fails before READY 5 times in a row: skvd logs the worker's own
 * error, ends and exits 1, instead of restarting it forever. */
static void test_start_failures_exit(void **state)
{
	(void)state;
#if defined(__SANITIZE_ADDRESS__)
	skip(); /* ASan reserves terabytes of address space: no limit on it can be set */
#else
	if (getenv("SKV_E2E_BACKEND"))
		skip();
	struct e2e e;
	const char *ov[] = {"engine.kv_cache_bytes=8G", "engine.replicas=1", "engine.max_context=1024", NULL};
	struct rlimit old, lim;
	assert_int_equal(getrlimit(RLIMIT_AS, &old), 0);
	lim = old;
	lim.rlim_cur = 2ull << 30;
	assert_int_equal(setrlimit(RLIMIT_AS, &lim), 0); /* inherited by skvd and its workers */
	e2e_spawn(&e, model, ov);
	assert_int_equal(setrlimit(RLIMIT_AS, &old), 0);
	int st = e2e_wait_exit(&e, 60000 * (int)tu_time_scale());
	if (st != 1) {
		e2e_dump_log(&e);
		fail_msg("skvd exited %d, want 1", st);
	}
	/* five tries, then the worker's own message in skvd's last words */
	assert_int_equal(tu_sh("test $(grep -c 'worker 0 | started' '%s') -eq 5", e.log), 0);
	assert_int_equal(tu_sh("grep 'failed 5 times in a row before it was ready' '%s' | grep -q 'cannot map .* region fd'",
			       e.log),
			 0);
	assert_true(e2e_notified(&e, "STATUS=failed: worker 0 failed 5 times", 0));
	tu_rmdir(e.dir);
#endif
}

/* SIGKILL skvd: its workers exit within 5 s (no memfd outlives them) and clients get EOF. */
static void test_skvd_killed(void **state)
{
	(void)state;
	struct e2e e;
	e2e_start(&e, model, NULL);
	pid_t pids[2] = {-1, -1};
	int nw = e2e_workers(&e, pids, NULL, NULL, 2);
	assert_true(nw >= 1);
	struct skv_client *c = e2e_client(&e);
	int32_t prompt[10];
	struct skv_request req;
	uint64_t id;
	make_ids(prompt, 10, 1);
	ids_request(&req, prompt, 10, 1000);
	assert_int_equal(skv_client_submit(c, &req, &id), 0);
	assert_int_equal(kill(e.pid, SIGKILL), 0);
	waitpid(e.pid, NULL, 0);
	e.pid = -1;
	long end = now_ms() + 5000;
	bool gone = false;
	while (!gone && now_ms() < end) {
		gone = kill(pids[0], 0) < 0 && (nw < 2 || kill(pids[1], 0) < 0);
		usleep(10000);
	}
	assert_true(gone);
	struct skv_event ev;
	int r;
	while ((r = skv_client_next(c, &ev, 2000)) == 0)
		;
	assert_int_equal(r, -ECONNRESET);
	skv_client_free(c);
	close(e.notify_fd);
	tu_rmdir(e.dir);
}

/* Drops root for `uid` with `gid` as its only group (in a forked child). */
static void become(uid_t uid, gid_t gid)
{
	if (setgroups(0, NULL) < 0 || setgid(gid) < 0 || setuid(uid) < 0)
		_exit(90);
}

/* A SOCK_SEQPACKET connection to skvd's client socket that has said nothing yet. */
static int raw_socket(const char *path)
{
	struct sockaddr_un sa = {.sun_family = AF_UNIX};
	memcpy(sa.sun_path, path, strlen(path) + 1);
	int fd = socket(AF_UNIX, SOCK_SEQPACKET | SOCK_CLOEXEC, 0);
	if (fd < 0 || connect(fd, (struct sockaddr *)&sa, sizeof(sa)) < 0)
		return -1;
	return fd;
}

/* Sends a hello on fd and reads the answer: the welcome's status, 0 with *closed when skvd
 * closed the connection instead. */
static int raw_hello(int fd, struct skv_welcome *w, bool *closed)
{
	struct skv_hello h = {.magic = SKV_WIRE_MAGIC_HELLO, .version_min = 1, .version_max = 1};
	*closed = false;
	if (send(fd, &h, sizeof(h), MSG_NOSIGNAL) != (ssize_t)sizeof(h)) {
		*closed = true;
		return 0;
	}
	struct pollfd p = {.fd = fd, .events = POLLIN};
	if (poll(&p, 1, 5000) != 1)
		return -1;
	ssize_t n = recv(fd, w, sizeof(*w), 0);
	if (n <= 0) {
		*closed = true;
		return 0;
	}
	return n == (ssize_t)sizeof(*w) ? w->status : -1;
}

/* Waits for a byte on fd (a pipe from the other side of a fork). */
static void pipe_wait(int fd)
{
	char b;
	struct pollfd p = {.fd = fd, .events = POLLIN};
	if (poll(&p, 1, 30000) != 1 || read(fd, &b, 1) != 1)
		_exit(89);
}

static void child_status_ok(pid_t p)
{
	int st;
	assert_int_equal(waitpid(p, &st, 0), p);
	assert_true(WIFEXITED(st));
	if (WEXITSTATUS(st) != 0)
		fail_msg("the unprivileged child failed at step %d", WEXITSTATUS(st));
}

/* The uids a test becomes: members of allow_group "daemon" and an outsider, both "nobody". */
struct other_uids {
	gid_t group;   /* daemon's gid */
	uid_t uid;     /* nobody's */
	gid_t own_gid; /* nobody's group: not daemon */
};

/* Starts skvd with allow_group = daemon plus `extra` (NULL-ended, may be NULL), its socket open
 * to every uid so that skvd's own check decides. False (the test skipped) unless root, with a
 * daemon group and a nobody user. */
static bool start_for_other_uids(struct e2e *e, const char *const *extra, struct other_uids *ret)
{
	struct group *g = getgrnam("daemon");
	struct passwd *nobody = getpwnam("nobody");
	if (getuid() != 0 || !g || !nobody) {
		skip();
		return false;
	}
	*ret = (struct other_uids){.group = g->gr_gid, .uid = nobody->pw_uid, .own_gid = nobody->pw_gid};
	const char *ov[8] = {"server.allow_group=daemon"};
	for (int i = 0; extra && extra[i] && i < 6; i++)
		ov[i + 1] = extra[i];
	e2e_start(e, model, ov);
	assert_int_equal(chmod(e->dir, 0755), 0);
	assert_int_equal(chmod(e->sock, 0666), 0);
	return true;
}

/* In a child: connects with libskv as `uid` with group `gid`; exits 0 when the result is
 * `want` and, for a failure, the message holds `needle`. */
static void child_connect(const char *sock, uid_t uid, gid_t gid, int want, const char *needle)
{
	become(uid, gid);
	struct skv_client *c = NULL;
	if (skv_client_new(&c) < 0)
		_exit(91);
	int r = skv_client_connect(c, sock);
	_exit(r == want && (!needle || strstr(skv_client_errmsg(c), needle)) ? 0 : 92);
}

/* Peers outside allow_group are refused by skvd's own credential check, before anything is
 * allocated for them; members get in. With the socket's mode as skvd sets it, the kernel
 * refuses the outsider, and libskv's hint names the socket's actual group. Needs root (to
 * become other users). */
static void test_group_refused(void **state)
{
	(void)state;
	struct e2e e;
	struct other_uids u;
	if (!start_for_other_uids(&e, NULL, &u))
		return;
	for (int member = 0; member < 2; member++) {
		pid_t p = fork();
		assert_true(p >= 0);
		if (p == 0)
			child_connect(e.sock, u.uid, member ? u.group : u.own_gid, member ? 0 : -EACCES,
				      member ? NULL : "not in group daemon");
		child_status_ok(p);
	}
	assert_int_equal(tu_sh("grep -q 'refused: not in group daemon' '%s'", e.log), 0);
	assert_int_equal(chmod(e.sock, 0660), 0); /* skvd's mode (and group daemon) */
	pid_t p = fork();
	assert_true(p >= 0);
	if (p == 0)
		child_connect(e.sock, u.uid, u.own_gid, -EACCES, "belongs to group daemon");
	child_status_ok(p);
	assert_int_equal(e2e_stop(&e, 10000), 0);
	tu_rmdir(e.dir);
}

/* Past the queue bounds: "busy" with a retry hint, at once; skvd's memory does not grow. */
static void test_flood_busy(void **state)
{
	(void)state;
	struct e2e e;
	const char *ov[] = {"engine.replicas=1", "engine.max_seqs=2", "server.queue_requests=4", NULL};
	e2e_start(&e, model, ov);
	enum { C = 4, PER = 24 };
	struct skv_client *c[C];
	int32_t prompt[16];
	struct skv_request req;
	make_ids(prompt, 16, 9);
	ids_request(&req, prompt, 16, 200);
	for (int k = 0; k < C; k++)
		c[k] = e2e_client(&e);
	long rss0 = 0;
	for (int round = 0; round < 3; round++) {
		int busy = 0, ok = 0;
		long t0 = now_ms(), first_busy = -1;
		for (int k = 0; k < C; k++)
			for (int i = 0; i < PER; i++) {
				uint64_t id;
				assert_int_equal(skv_client_submit(c[k], &req, &id), 0);
			}
		for (int k = 0; k < C; k++)
			for (int i = 0; i < PER;) {
				struct skv_event ev;
				assert_int_equal(skv_client_next(c[k], &ev, 30000), 0);
				if (ev.type != SKV_EVENT_FINAL)
					continue;
				i++;
				if (ev.finish == SKV_FINISH_REASON_ERROR) {
					assert_int_equal(ev.error, SKV_ERROR_CODE_BUSY);
					assert_true(ev.retry_after_ms > 0);
					assert_non_null(strstr(ev.message, "queue"));
					if (first_busy < 0)
						first_busy = now_ms() - t0;
					busy++;
				} else {
					assert_int_equal(ev.finish, SKV_FINISH_REASON_LENGTH);
					ok++;
				}
			}
		assert_true(busy > 0 && ok >= 4);
		assert_true(first_busy < 1000 * tu_time_scale()); /* at once, not after the queue drained */
		if (round == 0)
			rss0 = e2e_rss_kb(e.pid);
	}
	long rss1 = e2e_rss_kb(e.pid);
	assert_true(rss1 - rss0 < 4096);
	for (int k = 0; k < C; k++)
		skv_client_free(c[k]);
	assert_int_equal(e2e_stop(&e, 10000), 0);
	tu_rmdir(e.dir);
}

static void expect_error(struct skv_client *c, const struct skv_request *req, int code, const char *needle)
{
	struct e2e_result *res = malloc(sizeof(*res));
	int r = e2e_run(c, req, res);
	if (r < 0) { /* libskv refused it first: its message must name the problem too */
		if (!strstr(skv_client_errmsg(c), needle))
			fail_msg("libskv: '%s' lacks '%s'", skv_client_errmsg(c), needle);
		free(res);
		return;
	}
	if (res->final.finish != SKV_FINISH_REASON_ERROR || (int)res->final.error != code ||
	    !strstr(res->message, needle))
		fail_msg("finish %s error %s message '%s', wanted error %d naming '%s'", skv_finish_name(res->final.finish),
			 skv_error_name(res->final.error), res->message, code, needle);
	free(res);
}

/* One greedy request for ids[0..n) that must end by length with all max_tokens tokens. */
static void expect_served(struct skv_client *c, const int32_t *ids, uint32_t n, uint32_t max_tokens)
{
	struct skv_request req;
	struct e2e_result *res = malloc(sizeof(*res));
	assert_non_null(res);
	ids_request(&req, ids, n, max_tokens);
	assert_int_equal(e2e_run(c, &req, res), 0);
	assert_int_equal(res->final.finish, SKV_FINISH_REASON_LENGTH);
	assert_int_equal(res->n_ids, max_tokens);
	free(res);
}

/* Over-long prompts and bad parameters: errors that name the field and the numbers, before any
 * work; the session goes on. */
static void test_bad_requests(void **state)
{
	(void)state;
	struct e2e e;
	const char *ov[] = {"limits.max_new_tokens=100", "limits.max_stop=2", NULL};
	e2e_start(&e, model, ov);
	struct skv_client *c = e2e_client(&e);
	static int32_t prompt[2100];
	struct skv_request req;
	make_ids(prompt, 2100, 4);

	ids_request(&req, prompt, 2000, 60);
	expect_error(c, &req, SKV_ERROR_CODE_CONTEXT, "2000");
	expect_error(c, &req, SKV_ERROR_CODE_CONTEXT, "2048");
	ids_request(&req, prompt, 10, 101);
	expect_error(c, &req, SKV_ERROR_CODE_INVALID, "max_tokens");
	ids_request(&req, prompt, 10, 5);
	req.temperature = 1000.0f;
	expect_error(c, &req, SKV_ERROR_CODE_INVALID, "temperature");
	ids_request(&req, prompt, 10, 5);
	req.flags |= SKV_REQUEST_TOP_P;
	req.top_p = 1.5f;
	expect_error(c, &req, SKV_ERROR_CODE_INVALID, "top_p");
	int32_t bad[3] = {1, 2, 1 << 20};
	ids_request(&req, bad, 3, 5);
	expect_error(c, &req, SKV_ERROR_CODE_INVALID, "vocabulary");
	const char *stops[3] = {"a", "b", "c"};
	ids_request(&req, prompt, 10, 5);
	req.stop = stops;
	req.n_stop = 3;
	expect_error(c, &req, SKV_ERROR_CODE_INVALID, "stop");
	/* and a good one still works on the same session */
	expect_served(c, prompt, 10, 5);
	skv_client_free(c);
	assert_int_equal(e2e_stop(&e, 10000), 0);
	tu_rmdir(e.dir);
}

/* Refused peers take no session: a uid outside allow_group holding 40 connections before their
 * hello leaves max_clients (8) free for an allowed client; the refused ones are answered from
 * a pool of 16 or closed. One allowed uid holds at most max_sessions_per_uid sessions, a
 * connection before its hello counting too (closed by skvd after 2 s without one), while
 * another uid still gets in. Needs root (to become other users). */
static void test_sessions_per_peer(void **state)
{
	(void)state;
	struct e2e e;
	struct other_uids u;
	const char *ov[] = {"server.max_clients=8", "server.max_sessions_per_uid=3", NULL};
	if (!start_for_other_uids(&e, ov, &u))
		return;
	int32_t prompt[6];
	make_ids(prompt, 6, 3);

	/* 1. an outsider's 40 silent connections */
	enum { HELD = 40 };
	int up[2], down[2];
	assert_int_equal(pipe(up), 0);
	assert_int_equal(pipe(down), 0);
	pid_t p = fork();
	assert_true(p >= 0);
	if (p == 0) {
		become(u.uid, u.own_gid);
		int fds[HELD], denied = 0, closed = 0;
		for (int i = 0; i < HELD; i++)
			if ((fds[i] = raw_socket(e.sock)) < 0)
				_exit(1);
		if (write(up[1], "r", 1) != 1)
			_exit(2);
		pipe_wait(down[0]);
		for (int i = 0; i < HELD; i++) {
			struct skv_welcome w;
			bool gone;
			int st = raw_hello(fds[i], &w, &gone);
			if (gone)
				closed++;
			else if (st == SKV_WELCOME_DENIED && strstr(w.message, "not in group"))
				denied++;
			else
				_exit(3);
		}
		/* at most the pool's 16 answered (fewer if its 1 s deadline passed first) */
		_exit(denied <= 16 && denied + closed == HELD ? 0 : 4);
	}
	pipe_wait(up[0]);
	struct skv_client *c = e2e_client(&e); /* root: allowed, and a slot is free */
	expect_served(c, prompt, 6, 3);
	json_object *st = e2e_status(&e), *v;
	assert_true(json_object_object_get_ex(st, "clients", &v));
	assert_int_equal(json_object_get_int(v), 1); /* the outsider holds none */
	json_object_put(st);
	assert_int_equal(write(down[1], "g", 1), 1);
	child_status_ok(p);

	/* 2. a member: 3 sessions, not a 4th; one fewer plus a silent connection is 3 again */
	p = fork();
	assert_true(p >= 0);
	if (p == 0) {
		become(u.uid, u.group);
		struct skv_client *m[4];
		for (int i = 0; i < 4; i++)
			if (skv_client_new(&m[i]) < 0)
				_exit(10);
		for (int i = 0; i < 3; i++)
			if (skv_client_connect(m[i], e.sock) < 0)
				_exit(11);
		if (skv_client_connect(m[3], e.sock) != -EBUSY || !strstr(skv_client_errmsg(m[3]), "max_sessions_per_uid"))
			_exit(12);
		if (write(up[1], "h", 1) != 1)
			_exit(13);
		pipe_wait(down[0]);
		skv_client_free(m[0]);
		usleep(300000); /* skvd sees it go */
		int silent = raw_socket(e.sock);
		usleep(100000);
		if (silent < 0 || skv_client_connect(m[3], e.sock) != -EBUSY)
			_exit(14);
		/* skvd ends the silent one after its 2 s; then the slot is back */
		struct pollfd pf = {.fd = silent, .events = POLLIN};
		char b;
		if (poll(&pf, 1, 10000) != 1 || recv(silent, &b, 1, 0) > 0)
			_exit(15);
		usleep(100000);
		skv_client_free(m[3]);
		if (skv_client_new(&m[3]) < 0 || skv_client_connect(m[3], e.sock) < 0)
			_exit(16);
		close(silent);
		for (int i = 1; i < 4; i++)
			skv_client_free(m[i]);
		_exit(0);
	}
	pipe_wait(up[0]);
	struct skv_client *c2 = e2e_client(&e); /* root is another uid: not locked out */
	expect_served(c2, prompt, 6, 3);
	skv_client_free(c2);
	assert_int_equal(write(down[1], "g", 1), 1);
	child_status_ok(p);
	assert_int_equal(tu_sh("grep -q 'max_sessions_per_uid' '%s'", e.log), 0);
	assert_int_equal(tu_sh("grep -q 'no hello within 2 s' '%s'", e.log), 0);
	skv_client_free(c);
	close(up[0]), close(up[1]), close(down[0]), close(down[1]);
	assert_int_equal(e2e_stop(&e, 10000), 0);
	tu_rmdir(e.dir);
}

/* A reload with a bad file: skvctl reload --wait fails naming the line, the old configuration
 * keeps serving; a good one applies; SIGHUP does the same. */
static void test_reload(void **state)
{
	(void)state;
	struct e2e e;
	const char *ov[] = {"limits.max_new_tokens=50", NULL};
	e2e_start(&e, model, ov);
	struct skv_client *c = e2e_client(&e);
	int32_t prompt[8];
	struct skv_request req;
	char out[4096];
	make_ids(prompt, 8, 2);

	assert_int_equal(tu_sh("cp '%s' '%s.good' && printf '[limits]\\nmax_new_tokens = banana\\n' >> '%s'", e.ini, e.ini,
			       e.ini),
			 0);
	int rc = e2e_ctl(&e, out, sizeof(out), "reload --wait 2>&1");
	assert_true(rc != 0);
	assert_non_null(strstr(out, "skvd.ini:"));
	assert_true(e2e_notified(&e, "RELOADING=1", 2000));
	expect_served(c, prompt, 8, 50);

	/* a restart-only key is refused by name */
	const char *ov2[] = {"limits.max_new_tokens=50", "engine.replicas=3", NULL};
	e2e_write_ini(&e, ov2);
	assert_true(e2e_ctl(&e, out, sizeof(out), "reload --wait 2>&1") != 0);
	assert_non_null(strstr(out, "replicas"));

	/* a good one applies live: max_new_tokens 50 -> 20, and an admin_group, which the admin
	 * socket skvd bound itself takes at once (mode 0600 -> 0660, and the group when root) */
	struct stat st;
	assert_int_equal(stat(e.admin, &st), 0);
	assert_int_equal(st.st_mode & 0777, 0600);
	assert_int_equal(chmod(e.sock, 0666), 0); /* widened by hand: the reload puts it back */
	struct group *gr = getgrgid(getgid());
	assert_non_null(gr);
	char admin_group[160];
	snprintf(admin_group, sizeof(admin_group), "server.admin_group=%s", gr->gr_name);
	const char *ov3[] = {"limits.max_new_tokens=20", admin_group, NULL};
	e2e_write_ini(&e, ov3);
	assert_int_equal(e2e_ctl(&e, out, sizeof(out), "reload --wait 2>&1"), 0);
	assert_int_equal(stat(e.admin, &st), 0);
	assert_int_equal(st.st_mode & 0777, 0660);
	if (getuid() == 0)
		assert_int_equal(st.st_gid, getgid());
	assert_int_equal(stat(e.sock, &st), 0);
	assert_int_equal(st.st_mode & 0777, 0660);
	skv_client_free(c);
	c = e2e_client(&e); /* new limits come with a new session's welcome */
	ids_request(&req, prompt, 8, 30);
	expect_error(c, &req, SKV_ERROR_CODE_INVALID, "max_tokens");

	/* SIGHUP with a bad file: refused, logged, still serving */
	assert_int_equal(tu_sh("printf 'junk line\\n' >> '%s'", e.ini), 0);
	assert_int_equal(kill(e.pid, SIGHUP), 0);
	long end = now_ms() + 3000;
	while (tu_sh("grep -q 'reload refused' '%s'", e.log) != 0 && now_ms() < end)
		usleep(20000);
	assert_int_equal(tu_sh("grep -q 'reload refused' '%s'", e.log), 0);
	expect_served(c, prompt, 8, 5);
	skv_client_free(c);
	assert_int_equal(e2e_stop(&e, 10000), 0);
	tu_rmdir(e.dir);
}

/* SIGTERM drains: new requests and connections are refused at once, in-flight ones finish,
 * skvd exits 0; STOPPING=1 is sent. */
static void test_drain(void **state)
{
	(void)state;
	struct e2e e;
	e2e_start(&e, model, NULL);
	struct skv_client *c = e2e_client(&e);
	int32_t prompt[20];
	struct skv_request req;
	uint64_t id, id2;
	struct skv_event ev;
	make_ids(prompt, 20, 5);
	ids_request(&req, prompt, 20, 300);
	assert_int_equal(skv_client_submit(c, &req, &id), 0);
	assert_int_equal(skv_client_next(c, &ev, 5000), 0);
	assert_int_equal(kill(e.pid, SIGTERM), 0);
	assert_true(e2e_notified(&e, "STOPPING=1", 3000));
	/* a new request on the open session: refused */
	ids_request(&req, prompt, 20, 5);
	assert_int_equal(skv_client_submit(c, &req, &id2), 0);
	/* a new connection: refused */
	struct skv_client *c2 = NULL;
	assert_int_equal(skv_client_new(&c2), 0);
	assert_int_equal(skv_client_connect(c2, e.sock), -ESHUTDOWN);
	skv_client_free(c2);
	bool first_done = false, second_done = false;
	while (!first_done || !second_done) {
		assert_int_equal(skv_client_next(c, &ev, 10000), 0);
		if (ev.type != SKV_EVENT_FINAL)
			continue;
		if (ev.id == id) {
			assert_int_equal(ev.finish, SKV_FINISH_REASON_LENGTH);
			assert_int_equal(ev.completion_tokens, 300);
			first_done = true;
		} else {
			assert_int_equal(ev.id, id2);
			assert_int_equal(ev.error, SKV_ERROR_CODE_SHUTTING_DOWN);
			second_done = true;
		}
	}
	int st;
	assert_int_equal(waitpid(e.pid, &st, 0), e.pid);
	e.pid = -1;
	assert_true(WIFEXITED(st));
	assert_int_equal(WEXITSTATUS(st), 0);
	skv_client_free(c);
	close(e.notify_fd);
	tu_rmdir(e.dir);
}

/* Mixed load for a while (requests, cancels, disconnects, bad requests): afterwards skvd's fds,
 * its RSS and the KV arena are back at their baseline. SKV_SOAK_SECONDS sets the length. */
static void test_soak(void **state)
{
	(void)state;
	struct e2e e;
	e2e_start(&e, model, NULL);
	const char *env = getenv("SKV_SOAK_SECONDS");
	int seconds = env ? atoi(env) : 15;
	int32_t prompt[300];
	struct skv_request req;
	struct skv_event ev;
	make_ids(prompt, 300, 11);

	/* warm-up, then the baseline */
	struct skv_client *w = e2e_client(&e);
	expect_served(w, prompt, 50, 10);
	skv_client_free(w);
	usleep(200000);
	int fd0 = e2e_fd_count(e.pid);
	long rss0 = e2e_rss_kb(e.pid);

	long end = now_ms() + seconds * 1000L;
	uint64_t rounds = 0;
	while (now_ms() < end) {
		struct skv_client *c = e2e_client(&e);
		uint64_t id;
		static const int32_t bad[3] = {1, 2, 1 << 20};
		for (int i = 0; i < 6; i++) {
			ids_request(&req, prompt, 1 + (uint32_t)((rounds * 7 + (uint64_t)i * 13) % 290), 1 + (uint32_t)(i * 5));
			if (i == 4) { /* over skvd's max_new_tokens: libskv refuses it before sending */
				req.max_tokens = 100000;
				assert_int_equal(skv_client_submit(c, &req, &id), -EINVAL);
				continue;
			}
			if (i == 5) { /* outside the vocabulary: skvd refuses it, the drain below reads why */
				req.ids = bad;
				req.n_ids = 3;
			}
			assert_int_equal(skv_client_submit(c, &req, &id), 0);
		}
		ids_request(&req, prompt, 1 + (uint32_t)(rounds % 290), 8);
		assert_int_equal(skv_client_submit(c, &req, &id), 0);
		if (rounds % 3 == 0)
			skv_client_cancel(c, id);
		if (rounds % 4 != 1) /* sometimes leave with requests in flight */
			while (skv_client_in_flight(c) > 0)
				assert_int_equal(skv_client_next(c, &ev, 10000), 0);
		skv_client_free(c);
		rounds++;
	}
	assert_true(rounds > 5);
	/* the last clients' teardown may still be under way: give it a moment, then insist */
	long until = now_ms() + 3000 * tu_time_scale();
	while ((e2e_kv_used(&e) != 0 || e2e_fd_count(e.pid) != fd0) && now_ms() < until)
		usleep(50000);
	assert_int_equal(e2e_kv_used(&e), 0);
	int fd1 = e2e_fd_count(e.pid);
	long rss1 = e2e_rss_kb(e.pid);
	printf("soak: %llu rounds; skvd fds %d -> %d, RSS %ld -> %ld kB\n", (unsigned long long)rounds, fd0, fd1, rss0,
	       rss1);
	assert_int_equal(fd1, fd0);
	assert_true(rss1 - rss0 < 8192);
	char out[1 << 16];
	assert_int_equal(e2e_ctl(&e, out, sizeof(out), "metrics"), 0);
	assert_non_null(strstr(out, "skv:time_to_first_token_seconds_bucket"));
	assert_non_null(strstr(out, "skv:num_requests_running 0"));
	assert_non_null(strstr(out, "skv:gpu_cache_usage_perc"));
	assert_int_equal(e2e_stop(&e, 10000), 0);
	tu_rmdir(e.dir);
}

/* skvctl and the skv CLI against the real skvd: tables, JSON, exit codes; restart-worker; a
 * chat whose prompt is exactly what skv-tok renders; summarize; drain through skvctl. */
static void test_skvctl_and_cli(void **state)
{
	(void)state;
	struct e2e e;
	e2e_start(&e, model, NULL);
	static char out[1 << 16];
	char cmd[2048];

	assert_int_equal(e2e_ctl(&e, out, sizeof(out), "status"), 0);
	assert_non_null(strstr(out, "REPLICA"));
	assert_non_null(strstr(out, "ready"));
	pid_t before[2], after[2];
	int restarts[2];
	int nw = e2e_workers(&e, before, NULL, NULL, 2);
	assert_true(nw >= 1);
	const int last = nw - 1; /* the replica restarted */
	assert_int_equal(e2e_ctl(&e, out, sizeof(out), "restart-worker %d", last), 0);
	assert_true(e2e_ctl(&e, out, sizeof(out), "restart-worker 7 2>&1") != 0);
	long end = now_ms() + 5000;
	do {
		usleep(20000);
		e2e_workers(&e, after, restarts, NULL, 2);
	} while ((after[last] == before[last] || after[last] <= 0) && now_ms() < end);
	assert_true(e2e_wait_ready(&e, 3000));
	e2e_workers(&e, after, restarts, NULL, 2);
	if (nw > 1)
		assert_int_equal(after[0], before[0]);
	assert_true(after[last] != before[last]);
	assert_int_equal(restarts[last], 1);
	/* exit codes: usage 2, cannot connect 3 */
	assert_int_equal(e2e_ctl(&e, NULL, 0, "frobnicate 2>/dev/null"), 2);
	snprintf(cmd, sizeof(cmd), "'%s' --socket '%s/nope' status 2>/dev/null", tu_tool("SKVCTL"), e.dir);
	assert_int_equal(tu_sh("%s", cmd), 3);

	/* skv generate --json: one object with the fixed names */
	snprintf(cmd, sizeof(cmd), "'%s' --socket '%s' generate --json --max-tokens 7 --temperature 0 'Hello there'",
		 tu_tool("SKV_CLI"), e.sock);
	FILE *p = popen(cmd, "r");
	size_t n = fread(out, 1, sizeof(out) - 1, p);
	out[n] = 0;
	assert_int_equal(pclose(p), 0);
	json_object *o = json_tokener_parse(out), *v, *u;
	assert_non_null(o);
	assert_true(json_object_object_get_ex(o, "text", &v));
	assert_true(json_object_object_get_ex(o, "finish_reason", &v));
	assert_true(json_object_object_get_ex(o, "usage", &u));
	assert_true(json_object_object_get_ex(u, "completion_tokens", &v));
	assert_true(json_object_get_int(v) >= 1 && json_object_get_int(v) <= 7);
	assert_true(json_object_object_get_ex(u, "prompt_tokens", &v));
	assert_true(json_object_get_int(v) >= 2);
	assert_true(json_object_object_get_ex(o, "timings", &v));
	json_object_put(o);
	/* an error: non-zero exit, and the JSON names it */
	snprintf(cmd, sizeof(cmd), "'%s' --socket '%s' generate --json --max-tokens 100000 'Hello'", tu_tool("SKV_CLI"),
		 e.sock);
	p = popen(cmd, "r");
	n = fread(out, 1, sizeof(out) - 1, p);
	out[n] = 0;
	assert_true(pclose(p) != 0);
	assert_non_null(strstr(out, "\"error\""));
	assert_non_null(strstr(out, "max_tokens"));

	/* a chat: its prompt is exactly the template's rendering, token for token (skv-tok renders
	 * it independently); message content is plain text: a special-token string in it is not
	 * the special token */
	struct skv_client *c = e2e_client(&e);
	const char *contents[2] = {"Summarize this, please.", "Summarize <|eot_id|> this."};
	int counts[2][2];
	for (int k = 0; k < 2; k++) {
		struct skv_message msg = {.role = SKV_MESSAGE_USER, .content = contents[k]};
		struct skv_request req;
		struct e2e_result *res = malloc(sizeof(*res));
		skv_request_init(&req);
		req.kind = SKV_PROMPT_CHAT;
		req.messages = &msg;
		req.n_messages = 1;
		req.max_tokens = 2;
		assert_int_equal(e2e_run(c, &req, res), 0);
		counts[k][0] = (int)res->final.prompt_tokens;
		free(res);
		snprintf(cmd, sizeof(cmd),
			 "printf '[{\"role\":\"user\",\"content\":\"%s\"}]' | '%s' chat --tokenizer '%s' --add-generation-prompt "
			 "--ids | wc -w",
			 contents[k], tu_tool("SKV_TOK"), model);
		p = popen(cmd, "r");
		assert_int_equal(fscanf(p, "%d", &counts[k][1]), 1);
		assert_int_equal(pclose(p), 0);
	}
	assert_int_equal(counts[0][0], counts[0][1]);
	assert_true(counts[1][0] > counts[1][1]); /* skv-tok matched the special; skvd did not */
	skv_client_free(c);
	/* the summary, the box's main job */
	snprintf(cmd, sizeof(cmd), "printf 'The quick brown fox jumps over the lazy dog.\\n' > '%s/doc.txt' && '%s' --socket '%s' summarize -n 8 --ignore-eos '%s/doc.txt' > '%s/sum.txt' 2>/dev/null && test -s '%s/sum.txt'",
		 e.dir, tu_tool("SKV_CLI"), e.sock, e.dir, e.dir, e.dir);
	assert_int_equal(tu_sh("%s", cmd), 0); /* it ran, and wrote a summary */
	/* every document format, picked by content (tests/fixtures/doc): a summary each, and the
	 * format read named on stderr; refusals name their reason and exit 1 */
	static const char *const docs[][2] = {
		{"report.pdf", "read as pdf"},	   {"page.html", "read as html"}, {"report.docx", "read as docx"},
		{"report.odt", "read as odt"},	   {"french-latin1.txt", "read as text in "},
	};
	for (size_t i = 0; i < SKV_ARRAY_SIZE(docs); i++) {
		snprintf(cmd, sizeof(cmd),
			 "'%s' --socket '%s' summarize -n 8 --ignore-eos '%s/tests/fixtures/doc/%s' > '%s/sum.txt' 2> '%s/err.txt' && "
			 "test -s '%s/sum.txt' && grep -q '%s' '%s/err.txt'",
			 tu_tool("SKV_CLI"), e.sock, tu_tool("SKV_SRCDIR"), docs[i][0], e.dir, e.dir, e.dir, docs[i][1], e.dir);
		if (tu_sh("%s", cmd) != 0)
			fail_msg("skv summarize %s failed: %s", docs[i][0], cmd);
	}
	static const char *const refused[][2] = {
		{"encrypted.pdf", "the document is encrypted"},
		{"binary.bin", "looks binary"},
		{"malformed.docx", "word/document.xml is not well-formed XML"},
	};
	for (size_t i = 0; i < SKV_ARRAY_SIZE(refused); i++) {
		snprintf(cmd, sizeof(cmd), "'%s' --socket '%s' summarize '%s/tests/fixtures/doc/%s' 2> '%s/err.txt'; test $? = 1 && grep -q '%s' '%s/err.txt'",
			 tu_tool("SKV_CLI"), e.sock, tu_tool("SKV_SRCDIR"), refused[i][0], e.dir, refused[i][1], e.dir);
		if (tu_sh("%s", cmd) != 0)
			fail_msg("skv summarize %s was not refused as expected: %s", refused[i][0], cmd);
	}

	/* drain through skvctl: skvd exits 0 */
	assert_int_equal(e2e_ctl(&e, out, sizeof(out), "drain"), 0);
	int st;
	assert_int_equal(waitpid(e.pid, &st, 0), e.pid);
	e.pid = -1;
	assert_true(WIFEXITED(st) && WEXITSTATUS(st) == 0);
	close(e.notify_fd);
	tu_rmdir(e.dir);
}

/* [model] chat_template: an operator's template (Gemma-2's, which refuses a system message and
 * turns that do not alternate) replaces the model's. Its prompt is what skv-tok renders with the
 * same file; its raise_exception reaches the client as the request's error, and skvd goes on. */
static void test_chat_template_file(void **state)
{
	(void)state;
	struct e2e e;
	char tmpl[4400], ov0[4500], cmd[8192];
	snprintf(tmpl, sizeof(tmpl), "%s/tests/fixtures/chat-templates/google-gemma-2-2b-it.jinja", tu_tool("SKV_SRCDIR"));
	snprintf(ov0, sizeof(ov0), "model.chat_template=%s", tmpl);
	const char *ov[] = {ov0, "engine.replicas=1", NULL};
	e2e_start(&e, model, ov);
	struct skv_client *c = e2e_client(&e);
	struct skv_message msgs[2] = {{.role = SKV_MESSAGE_SYSTEM, .content = "Be brief."},
				      {.role = SKV_MESSAGE_USER, .content = "Summarize this, please."}};
	struct skv_request req;
	skv_request_init(&req);
	req.kind = SKV_PROMPT_CHAT;
	req.messages = msgs;
	req.n_messages = 2;
	req.max_tokens = 2;
	expect_error(c, &req, SKV_ERROR_CODE_INVALID, "System role not supported");
	for (int k = 0; k < 2; k++) { /* served after the refusal, with the file's rendering */
		struct e2e_result *res = malloc(sizeof(*res));
		req.messages = msgs + 1;
		req.n_messages = 1;
		assert_int_equal(e2e_run(c, &req, res), 0);
		assert_true(res->final.finish != SKV_FINISH_REASON_ERROR);
		snprintf(cmd, sizeof(cmd),
			 "printf '[{\"role\":\"user\",\"content\":\"%s\"}]' | '%s' chat --tokenizer '%s' --template '%s' "
			 "--add-generation-prompt --ids | wc -w",
			 msgs[1].content, tu_tool("SKV_TOK"), model, tmpl);
		FILE *p = popen(cmd, "r");
		int want = 0;
		assert_int_equal(fscanf(p, "%d", &want), 1);
		assert_int_equal(pclose(p), 0);
		assert_int_equal((int)res->final.prompt_tokens, want);
		free(res);
	}
	skv_client_free(c);
	assert_int_equal(e2e_stop(&e, 10000), 0);
	tu_rmdir(e.dir);
}

/* A raw session, by hand (libskv would not misbehave): hello, welcome with the memfd and the two
 * eventfds. */
struct raw_session {
	int sock, mem_fd, sub_efd, cmp_efd;
	struct skv_welcome w;
	void *mem;
};

static void raw_connect(struct e2e *e, struct raw_session *r)
{
	struct sockaddr_un sa = {.sun_family = AF_UNIX};
	memcpy(sa.sun_path, e->sock, strlen(e->sock) + 1);
	r->sock = socket(AF_UNIX, SOCK_SEQPACKET | SOCK_CLOEXEC, 0);
	assert_int_equal(connect(r->sock, (struct sockaddr *)&sa, sizeof(sa)), 0);
	struct skv_hello h = {.magic = SKV_WIRE_MAGIC_HELLO, .version_min = 1, .version_max = 1};
	assert_int_equal(send(r->sock, &h, sizeof(h), 0), sizeof(h));
	char cbuf[CMSG_SPACE(3 * sizeof(int))];
	struct iovec iov = {.iov_base = &r->w, .iov_len = sizeof(r->w)};
	struct msghdr mh = {.msg_iov = &iov, .msg_iovlen = 1, .msg_control = cbuf, .msg_controllen = sizeof(cbuf)};
	assert_int_equal(recvmsg(r->sock, &mh, 0), sizeof(r->w));
	assert_int_equal(r->w.status, SKV_WELCOME_OK);
	int fds[3];
	memcpy(fds, CMSG_DATA(CMSG_FIRSTHDR(&mh)), sizeof(fds));
	r->mem_fd = fds[0], r->sub_efd = fds[1], r->cmp_efd = fds[2];
	r->mem = mmap(NULL, r->w.layout.total_size, PROT_READ | PROT_WRITE, MAP_SHARED, r->mem_fd, 0);
	assert_true(r->mem != MAP_FAILED);
}

/* Submits an ids request through the raw session's ring (payload at the data area's start). */
static void raw_submit(struct raw_session *r, uint64_t id, const int32_t *ids, uint32_t n, uint32_t max_tokens)
{
	const struct skv_session_layout *L = &r->w.layout;
	struct skv_ring ring;
	skv_ring_attach(&ring, (void *)((char *)r->mem + L->sub_idx_offset), (char *)r->mem + L->sub_offset,
			L->sub_capacity, SKV_WIRE_RECORD, true);
	memcpy((char *)r->mem + L->data_offset, ids, n * sizeof(int32_t));
	struct skv_wire_submit s = {
		.version = SKV_WIRE_VERSION,
		.type = SKV_SUB_REQUEST,
		.flags = SKV_REQ_IGNORE_EOS | SKV_REQ_TEMPERATURE,
		.id = id,
		.input = SKV_INPUT_IDS,
		.max_tokens = max_tokens,
		.data_len = n * 4,
		.input_len = n * 4,
	};
	assert_int_equal(skv_ring_push(&ring, &s), 0);
	uint64_t one = 1;
	assert_int_equal(write(r->sub_efd, &one, sizeof(one)), sizeof(one));
}

/* Reads the raw session's completion ring until a final that ended by length arrives (true)
 * or timeout_ms passes. */
static bool raw_wait_final(struct raw_session *r, long timeout_ms)
{
	const struct skv_session_layout *L = &r->w.layout;
	struct skv_ring cr;
	skv_ring_attach(&cr, (void *)((char *)r->mem + L->cmp_idx_offset), (char *)r->mem + L->cmp_offset,
			L->cmp_capacity, SKV_WIRE_RECORD, false);
	bool final = false;
	for (long end = now_ms() + timeout_ms; !final && now_ms() < end; usleep(5000)) {
		int n = skv_ring_avail(&cr);
		assert_true(n >= 0);
		for (int i = 0; i < n; i++) {
			union {
				struct skv_wire_final f;
				uint8_t b[SKV_WIRE_RECORD];
			} rec;
			skv_ring_pop(&cr, rec.b);
			final |= rec.f.type == SKV_EV_FINAL && rec.f.finish == SKV_WIRE_FINISH_LENGTH;
		}
	}
	return final;
}

static void raw_close(struct raw_session *r)
{
	munmap(r->mem, r->w.layout.total_size);
	close(r->sock), close(r->mem_fd), close(r->sub_efd), close(r->cmp_efd);
}

/* The regions skvd shares with its workers (each replica's control ring and, on the CPU, its KV
 * arena) carry F_SEAL_SEAL after their size seals, as the session memfds do: a worker cannot add a
 * seal of its own (F_SEAL_FUTURE_WRITE, say) to what skvd and the worker's successors use. Read
 * through /proc/<skvd>/fd, which reopens the same memfds. */
static void test_worker_region_seals(void **state)
{
	(void)state;
	struct e2e e;
	e2e_start(&e, model, NULL);
	char dir[64], path[PATH_MAX], link[PATH_MAX];
	snprintf(dir, sizeof(dir), "/proc/%d/fd", (int)e.pid);
	DIR *d = opendir(dir);
	assert_non_null(d);
	int ctl = 0, kv = 0;
	struct dirent *de;
	while ((de = readdir(d))) {
		if (de->d_name[0] == '.')
			continue;
		snprintf(path, sizeof(path), "%s/%s", dir, de->d_name);
		ssize_t n = readlink(path, link, sizeof(link) - 1);
		if (n < 0)
			continue;
		link[n] = 0;
		const bool is_ctl = !strncmp(link, "/memfd:skv-ctl-", 15), is_kv = !strncmp(link, "/memfd:skv-kv-", 14);
		if (!is_ctl && !is_kv)
			continue;
		int fd = open(path, O_RDWR | O_CLOEXEC);
		assert_true(fd >= 0);
		int seals = fcntl(fd, F_GET_SEALS);
		assert_int_equal(seals & (F_SEAL_SHRINK | F_SEAL_GROW | F_SEAL_SEAL), F_SEAL_SHRINK | F_SEAL_GROW | F_SEAL_SEAL);
		assert_int_equal(fcntl(fd, F_ADD_SEALS, F_SEAL_FUTURE_WRITE), -1);
		assert_int_equal(errno, EPERM);
		close(fd);
		ctl += is_ctl;
		kv += is_kv;
	}
	closedir(d);
	/* one replica of each on the CPU backend; the test's skvd runs at least one */
	assert_true(ctl >= 1);
	assert_int_equal(kv, ctl);
	assert_int_equal(e2e_stop(&e, 10000), 0);
	tu_rmdir(e.dir);
}

/* The handshake's edges: the session memfd carries F_SEAL_SEAL after its size seals, so the
 * client cannot add a seal of its own; an empty packet before the hello is answered MALFORMED
 * (it is not the end of the stream); the session still serves. */
static void test_handshake_edges(void **state)
{
	(void)state;
	struct e2e e;
	e2e_start(&e, model, NULL);
	struct raw_session r;
	raw_connect(&e, &r);
	int seals = fcntl(r.mem_fd, F_GET_SEALS);
	assert_true(seals >= 0);
	assert_int_equal(seals & (F_SEAL_SHRINK | F_SEAL_GROW | F_SEAL_SEAL), F_SEAL_SHRINK | F_SEAL_GROW | F_SEAL_SEAL);
	assert_int_equal(fcntl(r.mem_fd, F_ADD_SEALS, F_SEAL_FUTURE_WRITE), -1);
	assert_int_equal(errno, EPERM);
	int32_t prompt[8];
	make_ids(prompt, 8, 5);
	raw_submit(&r, 1, prompt, 8, 4);
	assert_true(raw_wait_final(&r, 10000));
	raw_close(&r);

	struct sockaddr_un sa = {.sun_family = AF_UNIX};
	memcpy(sa.sun_path, e.sock, strlen(e.sock) + 1);
	int fd = socket(AF_UNIX, SOCK_SEQPACKET | SOCK_CLOEXEC, 0);
	assert_int_equal(connect(fd, (struct sockaddr *)&sa, sizeof(sa)), 0);
	assert_int_equal(send(fd, "", 0, 0), 0);
	struct skv_welcome w;
	struct pollfd p = {.fd = fd, .events = POLLIN};
	assert_int_equal(poll(&p, 1, 5000), 1);
	assert_int_equal(recv(fd, &w, sizeof(w), 0), sizeof(w));
	assert_int_equal(w.magic, SKV_WIRE_MAGIC_WELCOME);
	assert_int_equal(w.status, SKV_WELCOME_MALFORMED);
	close(fd);
	assert_int_equal(e2e_stop(&e, 10000), 0);
	tu_rmdir(e.dir);
}

/* The admin socket: 16 silent connections are all it keeps open (one more is told so and
 * closed); they are closed once idle for 5 s, and skvctl works again. */
static void test_admin_limits(void **state)
{
	(void)state;
	struct e2e e;
	e2e_start(&e, model, NULL);
	enum { CAP = 16 };
	int fds[CAP + 1];
	struct sockaddr_un sa = {.sun_family = AF_UNIX};
	memcpy(sa.sun_path, e.admin, strlen(e.admin) + 1);
	for (int i = 0; i <= CAP; i++) {
		fds[i] = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
		assert_int_equal(connect(fds[i], (struct sockaddr *)&sa, sizeof(sa)), 0);
		usleep(2000); /* accepted in this order */
	}
	char buf[256];
	struct pollfd p = {.fd = fds[CAP], .events = POLLIN};
	assert_int_equal(poll(&p, 1, 5000), 1);
	ssize_t n = recv(fds[CAP], buf, sizeof(buf) - 1, 0);
	assert_true(n > 0);
	buf[n] = '\0';
	assert_non_null(strstr(buf, "too many admin connections"));
	/* the first 16 are open, then closed for idling: EOF, not before 4 s */
	long t0 = now_ms();
	for (int i = 0; i < CAP; i++) {
		struct pollfd q = {.fd = fds[i], .events = POLLIN};
		assert_int_equal(poll(&q, 1, 15000), 1);
		assert_int_equal(recv(fds[i], buf, sizeof(buf), 0), 0);
		if (i == 0)
			assert_true(now_ms() - t0 >= 4000);
	}
	for (int i = 0; i <= CAP; i++)
		close(fds[i]);
	usleep(100000);
	assert_int_equal(e2e_ctl(&e, NULL, 0, "status"), 0);
	assert_int_equal(tu_sh("grep -q 'admin: a connection idle' '%s'", e.log), 0);
	assert_int_equal(e2e_stop(&e, 10000), 0);
	tu_rmdir(e.dir);
}

/* A burst of 1 MiB text prompts (tokenized by skvd, then refused as longer than the
 * context): once skvd is idle again its RSS is back near where it was before, since the
 * tokenizer's long-lived workspace shrinks when idle. */
static void test_big_prompts_rss(void **state)
{
	(void)state;
	struct e2e e;
	e2e_start(&e, model, NULL);
	enum { BYTES = 1000000, BURST = 8 };
	char *text = malloc(BYTES + 1);
	assert_non_null(text);
	struct skv_client *c = e2e_client(&e);
	struct skv_request req;
	struct e2e_result *res = malloc(sizeof(*res));
	assert_non_null(res);
	/* warm-up: a small text prompt, then the baseline */
	skv_request_init(&req);
	req.kind = SKV_PROMPT_TEXT;
	req.text = "The quick brown fox jumps over the lazy dog.";
	req.max_tokens = 2;
	assert_int_equal(e2e_run(c, &req, res), 0);
	usleep(1500000);
	long rss0 = e2e_rss_kb(e.pid);
	uint64_t seed = 12345;
	for (int k = 0; k < BURST; k++) {
		/* words that rarely repeat: every one is new to the tokenizer's word cache */
		size_t n = 0;
		while (n < BYTES - 16) {
			seed = seed * 6364136223846793005ull + 1442695040888963407ull;
			int len = 3 + (int)((seed >> 60) & 7);
			for (int i = 0; i < len; i++)
				text[n++] = (char)('a' + (int)((seed >> (4 * i + 8)) % 26));
			text[n++] = (seed >> 40) & 1 ? ' ' : '\n';
		}
		text[n] = '\0';
		skv_request_init(&req);
		req.kind = SKV_PROMPT_TEXT;
		req.text = text;
		req.text_len = n;
		req.max_tokens = 2;
		assert_int_equal(e2e_run(c, &req, res), 0);
		assert_int_equal(res->final.finish, SKV_FINISH_REASON_ERROR); /* longer than the context */
	}
	long rss_peak = e2e_rss_kb(e.pid);
	long rss1 = rss_peak;
	for (long end = now_ms() + 5000 * tu_time_scale(); now_ms() < end && rss1 - rss0 >= 4096; usleep(100000))
		rss1 = e2e_rss_kb(e.pid);
	printf("big prompts: skvd RSS %ld kB before, %ld kB after the burst, %ld kB once idle\n", rss0, rss_peak, rss1);
	skv_client_free(c);
	free(res);
	free(text);
#ifndef __SANITIZE_ADDRESS__
	assert_true(rss1 - rss0 < 4096);
#else
	/* AddressSanitizer's quarantine keeps freed memory on purpose: here the burst runs for the
	 * workspace's freeing and re-making, and RSS is only printed */
#endif
	assert_int_equal(e2e_stop(&e, 10000), 0);
	tu_rmdir(e.dir);
}

/* A client cannot stall skvd through the doorbells it shares with it: it clears O_NONBLOCK on
 * both eventfds and fills its completion counter so that a plain write would block; skvd goes on
 * serving it and everyone else. */
static void test_hostile_doorbells(void **state)
{
	(void)state;
	struct e2e e;
	e2e_start(&e, model, NULL);
	struct raw_session r;
	raw_connect(&e, &r);
	for (int k = 0; k < 2; k++) {
		int fd = k ? r.cmp_efd : r.sub_efd;
		assert_int_equal(fcntl(fd, F_SETFL, fcntl(fd, F_GETFL) & ~O_NONBLOCK), 0);
	}
	uint64_t big = 0xfffffffffffffffeull;
	assert_int_equal(write(r.cmp_efd, &big, sizeof(big)), sizeof(big));
	int32_t prompt[8];
	make_ids(prompt, 8, 5);
	raw_submit(&r, 1, prompt, 8, 20); /* its deltas ring the full completion doorbell */
	usleep(300000);
	/* skvd still answers: the admin socket, and another client's request */
	assert_int_equal(e2e_ctl(&e, NULL, 0, "status"), 0);
	struct skv_client *c = e2e_client(&e);
	expect_served(c, prompt, 8, 5);
	skv_client_free(c);
	/* the raw client's own request finished too: its final is in its completion ring */
	assert_true(raw_wait_final(&r, 5000));
	raw_close(&r);
	assert_int_equal(e2e_stop(&e, 10000), 0);
	tu_rmdir(e.dir);
}

/* A client that submits and never reads its completion ring is closed once skvd has parked
 * as much for it as it will; its requests end; skvd serves on. */
static void test_client_not_reading(void **state)
{
	(void)state;
	struct e2e e;
	e2e_start(&e, model, NULL);
	struct skv_client *slow = e2e_client(&e);
	int32_t prompt[8];
	struct skv_request req;
	make_ids(prompt, 8, 6);
	ids_request(&req, prompt, 8, 1500);
	for (int i = 0; i < 16; i++) {
		uint64_t id;
		assert_int_equal(skv_client_submit(slow, &req, &id), 0);
	}
	long end = now_ms() + 120000 * tu_time_scale();
	while (tu_sh("grep -q 'stopped reading' '%s'", e.log) != 0 && now_ms() < end)
		usleep(100000);
	assert_int_equal(tu_sh("grep -q 'stopped reading' '%s'", e.log), 0);
	end = now_ms() + 5000;
	while (e2e_kv_used(&e) != 0 && now_ms() < end)
		usleep(20000);
	assert_int_equal(e2e_kv_used(&e), 0);
	struct skv_client *c = e2e_client(&e);
	expect_served(c, prompt, 8, 5);
	skv_client_free(c);
	skv_client_free(slow);
	assert_int_equal(e2e_stop(&e, 10000), 0);
	tu_rmdir(e.dir);
}

/* Socket activation: skvd serves on the sockets it was handed (LISTEN_FDS with names), binds
 * none itself, and leaves them in place when it stops. */
static void test_socket_activation(void **state)
{
	(void)state;
	struct e2e e;
	e2e_socket_activation = true;
	e2e_start(&e, model, NULL);
	e2e_socket_activation = false;
	assert_int_equal(tu_sh("grep -q 'socket-activated' '%s'", e.log), 0);
	struct skv_client *c = e2e_client(&e);
	struct e2e_result *res = malloc(sizeof(*res));
	struct skv_request req;
	int32_t prompt[5] = {1, 2, 3, 4, 5};
	ids_request(&req, prompt, 5, 4);
	assert_int_equal(e2e_run(c, &req, res), 0);
	assert_int_equal(res->final.finish, SKV_FINISH_REASON_LENGTH);
	assert_int_equal(res->n_ids, 4);
	assert_int_equal(e2e_ctl(&e, NULL, 0, "status"), 0);
	free(res);
	skv_client_free(c);
	assert_int_equal(e2e_stop(&e, 10000), 0);
	struct stat st;
	assert_int_equal(stat(e.sock, &st), 0); /* systemd's, not skvd's to remove */
	assert_true(S_ISSOCK(st.st_mode));
	tu_rmdir(e.dir);
}

/* A worker field of skvctl status for replica 0. */
static int64_t worker0(struct e2e *e, const char *key)
{
	json_object *st = e2e_status(e), *ws, *v;
	assert_true(json_object_object_get_ex(st, "workers", &ws));
	assert_true(json_object_object_get_ex(json_object_array_get_idx(ws, 0), key, &v));
	int64_t x = json_object_get_int64(v);
	json_object_put(st);
	return x;
}

/* The scheduler's knobs reach the worker: with admission = reserve in a small arena, requests
 * of 10 blocks each, two more than the arena holds at full length (1 MiB of the tiny model's KV:
 * 64 blocks, 6 requests, on the CPU; twice that in the CUDA backend's bf16), never run more at
 * once than the arena holds at their full length,
 * nothing is preempted, and the tokens are skv-run's (mixed_batch_tokens = 16 chunks the prompts
 * that arrive while others decode). */
static void test_sched_reserve(void **state)
{
	(void)state;
	struct e2e e;
	const char *ov[] = {"engine.replicas=1", "engine.kv_cache_bytes=1M", "engine.admission=reserve",
			    "engine.mixed_batch_tokens=16", NULL};
	e2e_start(&e, model, ov);
	enum { NMAX = 32, LEN = 100, MAXT = 60 };
	static int32_t prompts[NMAX][LEN], got[NMAX][MAXT];
	uint32_t n_got[NMAX] = {0};
	struct skv_client *c = e2e_client(&e);
	struct skv_request req;
	uint64_t id;

	const int64_t total = worker0(&e, "kv_total_blocks");
	const int64_t per_req = (LEN + MAXT + 15) / 16, fit = total / per_req;
	const int N = (int)fit + 2;
	if (fit < 2 || N > NMAX)
		fail_msg("the arena holds %lld requests at full length; the test wants 2 to %d", (long long)fit, NMAX - 2);
	for (int i = 0; i < N; i++) {
		make_ids(prompts[i], LEN, 500 + (uint64_t)i);
		ids_request(&req, prompts[i], LEN, MAXT);
		req.user_data = (void *)(intptr_t)i;
		assert_int_equal(skv_client_submit(c, &req, &id), 0);
	}
	int left = N, polls = 0;
	long end = now_ms() + 60000 * tu_time_scale();
	while (left > 0 && now_ms() < end) {
		struct skv_event ev;
		int r;
		while ((r = skv_client_next(c, &ev, 0)) == 0) {
			int i = (int)(intptr_t)ev.user_data;
			for (uint32_t j = 0; j < ev.n_ids && n_got[i] < MAXT; j++)
				got[i][n_got[i]++] = ev.ids[j];
			if (ev.type == SKV_EVENT_FINAL) {
				if (ev.finish != SKV_FINISH_REASON_LENGTH)
					fail_msg("request %d: finish %s (%s)", i, skv_finish_name(ev.finish), ev.message);
				left--;
			}
		}
		assert_int_equal(r, -EAGAIN);
		int64_t running = worker0(&e, "running");
		if (running > fit)
			fail_msg("%lld sequences running; the arena holds %lld at full length", (long long)running,
				 (long long)fit);
		polls++;
		usleep(2000);
	}
	assert_int_equal(left, 0);
	assert_true(polls > 0);
	assert_int_equal(worker0(&e, "preemptions"), 0);
	/* bf16 on a GPU: 16-token chunks round differently from skv-run's whole prompt (see
	 * test_streams_equal_skv_run); the counts still hold there, the tokens only on the CPU */
	const bool exact = !getenv("SKV_E2E_BACKEND") || !strcmp(getenv("SKV_E2E_BACKEND"), "cpu");
	for (int i = 0; i < N; i++) {
		int32_t want[MAXT];
		assert_int_equal(n_got[i], MAXT);
		if (!exact)
			continue;
		assert_int_equal(skv_run_ids(prompts[i], LEN, MAXT, "", want), MAXT);
		if (memcmp(want, got[i], sizeof(want)))
			fail_msg("request %d: skvd's tokens differ from skv-run's", i);
	}
	skv_client_free(c);
	assert_int_equal(e2e_stop(&e, 10000), 0);
	tu_rmdir(e.dir);
}

static int setup(void **state)
{
	(void)state;
	model = tu_mkmodel("--preset tiny --swiftkv-layers 2 --seed 7");
	return 0;
}

static int teardown(void **state)
{
	(void)state;
	tu_rmdir(model);
	free(model);
	return 0;
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test_teardown(test_streams_equal_skv_run, e2e_teardown),
		cmocka_unit_test_teardown(test_cancel_frees_kv, e2e_teardown),
		cmocka_unit_test_teardown(test_sched_reserve, e2e_teardown),
		cmocka_unit_test_teardown(test_worker_killed, e2e_teardown),
		cmocka_unit_test_teardown(test_worker_hung, e2e_teardown),
		cmocka_unit_test_teardown(test_long_step, e2e_teardown),
		cmocka_unit_test_teardown(test_retry_cap, e2e_teardown),
		cmocka_unit_test_teardown(test_worker_wedged, e2e_teardown),
		cmocka_unit_test(test_check_config_model),
		cmocka_unit_test_teardown(test_kv_limit_exits, e2e_teardown),
		cmocka_unit_test_teardown(test_start_failures_exit, e2e_teardown),
		cmocka_unit_test_teardown(test_skvd_killed, e2e_teardown),
		cmocka_unit_test_teardown(test_group_refused, e2e_teardown),
		cmocka_unit_test_teardown(test_sessions_per_peer, e2e_teardown),
		cmocka_unit_test_teardown(test_flood_busy, e2e_teardown),
		cmocka_unit_test_teardown(test_bad_requests, e2e_teardown),
		cmocka_unit_test_teardown(test_reload, e2e_teardown),
		cmocka_unit_test_teardown(test_drain, e2e_teardown),
		cmocka_unit_test_teardown(test_skvctl_and_cli, e2e_teardown),
		cmocka_unit_test_teardown(test_chat_template_file, e2e_teardown),
		cmocka_unit_test_teardown(test_socket_activation, e2e_teardown),
		cmocka_unit_test_teardown(test_hostile_doorbells, e2e_teardown),
		cmocka_unit_test_teardown(test_worker_region_seals, e2e_teardown),
		cmocka_unit_test_teardown(test_handshake_edges, e2e_teardown),
		cmocka_unit_test_teardown(test_admin_limits, e2e_teardown),
		cmocka_unit_test_teardown(test_big_prompts_rss, e2e_teardown),
		cmocka_unit_test_teardown(test_client_not_reading, e2e_teardown),
		cmocka_unit_test_teardown(test_soak, e2e_teardown),
	};
	signal(SIGPIPE, SIG_IGN);
	if (getenv("SKV_E2E_ONLY")) /* a glob over the test names, for short runs on a GPU machine */
		cmocka_set_test_filter(getenv("SKV_E2E_ONLY"));
	return cmocka_run_group_tests(tests, setup, teardown);
}
