/* test-e2e.c: the appliance end to end on the CPU backend: the real skvd, real skv-worker
 * processes, real sockets, memfds and io_uring, driven through libskv and the real skvctl and
 * skv binaries, with the tiny synthetic model. Each test starts its own skvd in a temporary
 * directory. The promises of reliability.md are checked one by one. */
#include <errno.h>
#include <grp.h>
#include <pwd.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <fcntl.h>
#include <sys/mman.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <sys/wait.h>
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

/* Peers outside allow_group are refused by skvd's own credential check, before anything is
 * allocated for them; members get in. Needs root (to become other users). */
static void test_group_refused(void **state)
{
	(void)state;
	if (getuid() != 0) {
		skip();
		return;
	}
	struct group *g = getgrnam("daemon");
	struct passwd *nobody = getpwnam("nobody");
	if (!g || !nobody) {
		skip();
		return;
	}
	struct e2e e;
	char ov0[64];
	snprintf(ov0, sizeof(ov0), "server.allow_group=%s", g->gr_name);
	const char *ov[] = {ov0, NULL};
	e2e_start(&e, model, ov);
	/* let any uid reach the socket, so that skvd's check is what decides */
	assert_int_equal(chmod(e.dir, 0755), 0);
	assert_int_equal(chmod(e.sock, 0666), 0);
	for (int member = 0; member < 2; member++) {
		pid_t p = fork();
		assert_true(p >= 0);
		if (p == 0) {
			gid_t gid = member ? g->gr_gid : nobody->pw_gid;
			if (setgroups(0, NULL) < 0 || setgid(gid) < 0 || setuid(nobody->pw_uid) < 0)
				_exit(90);
			struct skv_client *c = NULL;
			if (skv_client_new(&c) < 0)
				_exit(91);
			int r = skv_client_connect(c, e.sock);
			if (!member)
				_exit(r == -EACCES && strstr(skv_client_errmsg(c), "group") ? 0 : 92);
			_exit(r == 0 ? 0 : 93);
		}
		int st;
		assert_int_equal(waitpid(p, &st, 0), p);
		assert_true(WIFEXITED(st));
		assert_int_equal(WEXITSTATUS(st), 0);
	}
	assert_int_equal(tu_sh("grep -q 'refused: not in group daemon' '%s'", e.log), 0);
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
	const struct skv_session_layout *L = &r.w.layout;
	struct skv_ring cr;
	skv_ring_attach(&cr, (void *)((char *)r.mem + L->cmp_idx_offset), (char *)r.mem + L->cmp_offset,
			L->cmp_capacity, SKV_WIRE_RECORD, false);
	bool final = false;
	for (long end = now_ms() + 5000; !final && now_ms() < end; usleep(10000)) {
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
	assert_true(final);
	munmap(r.mem, r.w.layout.total_size);
	close(r.sock), close(r.mem_fd), close(r.sub_efd), close(r.cmp_efd);
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
		cmocka_unit_test_teardown(test_skvd_killed, e2e_teardown),
		cmocka_unit_test_teardown(test_group_refused, e2e_teardown),
		cmocka_unit_test_teardown(test_flood_busy, e2e_teardown),
		cmocka_unit_test_teardown(test_bad_requests, e2e_teardown),
		cmocka_unit_test_teardown(test_reload, e2e_teardown),
		cmocka_unit_test_teardown(test_drain, e2e_teardown),
		cmocka_unit_test_teardown(test_skvctl_and_cli, e2e_teardown),
		cmocka_unit_test_teardown(test_chat_template_file, e2e_teardown),
		cmocka_unit_test_teardown(test_socket_activation, e2e_teardown),
		cmocka_unit_test_teardown(test_hostile_doorbells, e2e_teardown),
		cmocka_unit_test_teardown(test_client_not_reading, e2e_teardown),
		cmocka_unit_test_teardown(test_soak, e2e_teardown),
	};
	signal(SIGPIPE, SIG_IGN);
	if (getenv("SKV_E2E_ONLY")) /* a glob over the test names, for short runs on a GPU machine */
		cmocka_set_test_filter(getenv("SKV_E2E_ONLY"));
	return cmocka_run_group_tests(tests, setup, teardown);
}
