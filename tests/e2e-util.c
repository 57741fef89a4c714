/* e2e-util.c: see e2e-util.h. */
#include "e2e-util.h"

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <signal.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

static const char *const defaults[] = {
	"model.path=",
	"model.chat_template=",
	"engine.backend=cpu",
	"engine.replicas=2",
	"engine.threads=1",
	"engine.max_batch_tokens=256",
	"engine.max_seqs=16",
	"engine.max_context=2048",
	"engine.kv_cache_bytes=256M",
	"server.socket=",
	"server.admin_socket=",
	"server.allow_group=",
	"server.admin_group=",
	"limits.default_max_tokens=16",
	"supervisor.heartbeat_timeout_ms=2000",
	"supervisor.restart_backoff_ms=100",
	"supervisor.drain_timeout_ms=10000",
	NULL,
};

static const char *lookup(const char *const *ov, const char *key, size_t klen)
{
	for (size_t i = 0; ov && ov[i]; i++)
		if (!strncmp(ov[i], key, klen) && ov[i][klen] == '=')
			return ov[i] + klen + 1;
	return NULL;
}

void e2e_write_ini(struct e2e *e, const char *const *ov)
{
	static const char *const sections[] = {"model", "engine", "server", "limits", "supervisor"};
	FILE *f = fopen(e->ini, "w");
	assert_non_null(f);
	for (size_t s = 0; s < sizeof(sections) / sizeof(sections[0]); s++) {
		fprintf(f, "[%s]\n", sections[s]);
		size_t sl = strlen(sections[s]);
		/* defaults, overridden */
		for (size_t i = 0; defaults[i]; i++) {
			const char *eq = strchr(defaults[i], '=');
			if (strncmp(defaults[i], sections[s], sl) || defaults[i][sl] != '.')
				continue;
			const char *v = lookup(ov, defaults[i], (size_t)(eq - defaults[i]));
			const char *key = defaults[i] + sl + 1;
			int klen = (int)(eq - key);
			if (!strncmp(defaults[i], "model.path=", 11))
				fprintf(f, "path = %s\n", v ? v : e->model);
			else if (!strncmp(defaults[i], "server.socket=", 14))
				fprintf(f, "socket = %s\n", v ? v : e->sock);
			else if (!strncmp(defaults[i], "server.admin_socket=", 20))
				fprintf(f, "admin_socket = %s\n", v ? v : e->admin);
			else if (!strncmp(defaults[i], "engine.backend=", 15) && !v && getenv("SKV_E2E_BACKEND"))
				fprintf(f, "backend = %s\n", getenv("SKV_E2E_BACKEND")); /* cuda on a GPU machine */
			else
				fprintf(f, "%.*s = %s\n", klen, key, v ? v : eq + 1);
		}
		/* overrides of keys the defaults do not list */
		for (size_t i = 0; ov && ov[i]; i++) {
			const char *eq = strchr(ov[i], '=');
			assert_non_null(eq);
			if (strncmp(ov[i], sections[s], sl) || ov[i][sl] != '.')
				continue;
			bool known = false;
			for (size_t k = 0; defaults[k]; k++)
				known |= !strncmp(defaults[k], ov[i], (size_t)(eq - ov[i]) + 1);
			if (!known)
				fprintf(f, "%.*s = %s\n", (int)(eq - ov[i] - sl - 1), ov[i] + sl + 1, eq + 1);
		}
	}
	assert_int_equal(fclose(f), 0);
}

void e2e_dump_log(struct e2e *e)
{
	tu_sh("echo '--- skvd log (%s) ---' >&2; tail -n 60 '%s' >&2", e->log, e->log);
}

static void read_notes(struct e2e *e)
{
	char buf[4096];
	for (;;) {
		ssize_t n = recv(e->notify_fd, buf, sizeof(buf) - 1, MSG_DONTWAIT);
		if (n <= 0)
			return;
		if (e->notes_len + (size_t)n + 2 < sizeof(e->notes)) {
			memcpy(e->notes + e->notes_len, buf, (size_t)n);
			e->notes_len += (size_t)n;
			e->notes[e->notes_len++] = '\n';
			e->notes[e->notes_len] = '\0';
		}
	}
}

static long now_ms(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_MONOTONIC, &ts);
	return ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

bool e2e_notified(struct e2e *e, const char *want, int timeout_ms)
{
	long end = now_ms() + timeout_ms;
	for (;;) {
		read_notes(e);
		if (!want || strstr(e->notes, want))
			return want != NULL;
		long left = end - now_ms();
		if (left <= 0)
			return false;
		struct pollfd p = {.fd = e->notify_fd, .events = POLLIN};
		poll(&p, 1, left < 100 ? (int)left : 100);
		int st;
		if (waitpid(e->pid, &st, WNOHANG) == e->pid) {
			read_notes(e);
			e->pid = -1;
			return want && strstr(e->notes, want);
		}
	}
}

static pid_t current_pid; /* a failed test's stack is gone: keep the pid, not the struct */
bool e2e_socket_activation;

static int bind_unix(const char *path, int type)
{
	struct sockaddr_un sa = {.sun_family = AF_UNIX};
	int fd = socket(AF_UNIX, type, 0);
	assert_true(fd >= 0 && strlen(path) < sizeof(sa.sun_path));
	memcpy(sa.sun_path, path, strlen(path) + 1);
	assert_int_equal(bind(fd, (struct sockaddr *)&sa, sizeof(sa)), 0);
	assert_int_equal(listen(fd, 16), 0);
	return fd;
}

int e2e_teardown(void **state)
{
	(void)state;
	/* still our unreaped child: a test failed before stopping it */
	if (current_pid > 0 && waitpid(current_pid, NULL, WNOHANG) == 0) {
		kill(current_pid, SIGKILL);
		waitpid(current_pid, NULL, 0);
	}
	current_pid = 0;
	return 0;
}

void e2e_spawn(struct e2e *e, const char *model, const char *const *ov)
{
	char *d = tu_tmpdir();
	memset(e, 0, sizeof(*e));
	snprintf(e->dir, sizeof(e->dir), "%s", d);
	free(d);
	e->model = model;
	snprintf(e->ini, sizeof(e->ini), "%s/skvd.ini", e->dir);
	snprintf(e->sock, sizeof(e->sock), "%s/skvd.sock", e->dir);
	snprintf(e->admin, sizeof(e->admin), "%s/admin.sock", e->dir);
	snprintf(e->log, sizeof(e->log), "%s/skvd.log", e->dir);
	snprintf(e->notify_path, sizeof(e->notify_path), "%s/notify", e->dir);
	e2e_write_ini(e, ov);

	struct sockaddr_un sa = {.sun_family = AF_UNIX};
	assert_true(strlen(e->notify_path) < sizeof(sa.sun_path));
	memcpy(sa.sun_path, e->notify_path, strlen(e->notify_path) + 1);
	e->notify_fd = socket(AF_UNIX, SOCK_DGRAM | SOCK_CLOEXEC, 0);
	assert_true(e->notify_fd >= 0);
	assert_int_equal(bind(e->notify_fd, (struct sockaddr *)&sa, sizeof(sa)), 0);

	const char *skvd = tu_tool("SKVD");
	int act[2] = {-1, -1};
	if (e2e_socket_activation) {
		act[0] = bind_unix(e->sock, SOCK_SEQPACKET);
		act[1] = bind_unix(e->admin, SOCK_STREAM);
	}
	e->pid = fork();
	assert_true(e->pid >= 0);
	if (e->pid == 0) {
		int fd = open(e->log, O_WRONLY | O_CREAT | O_TRUNC, 0644);
		if (fd >= 0) {
			dup2(fd, 2);
			dup2(fd, 1);
		}
		setenv("NOTIFY_SOCKET", e->notify_path, 1);
		unsetenv("LISTEN_FDS");
		if (act[0] >= 0) { /* as systemd passes them: fds 3 and 4, named */
			char pid[16];
			int a = fcntl(act[0], F_DUPFD, 100), b = fcntl(act[1], F_DUPFD, 100);
			if (a < 0 || b < 0 || dup2(a, 3) < 0 || dup2(b, 4) < 0)
				_exit(126);
			snprintf(pid, sizeof(pid), "%d", (int)getpid());
			setenv("LISTEN_FDS", "2", 1);
			setenv("LISTEN_PID", pid, 1);
			setenv("LISTEN_FDNAMES", "client:admin", 1);
		}
		unsetenv("JOURNAL_STREAM");
		execl(skvd, "skvd", "--config", e->ini, (char *)NULL);
		_exit(127);
	}
	current_pid = e->pid;
	if (act[0] >= 0) {
		close(act[0]);
		close(act[1]);
	}
}

void e2e_start(struct e2e *e, const char *model, const char *const *ov)
{
	e2e_spawn(e, model, ov);
	if (!e2e_notified(e, "READY=1", 60000)) {
		e2e_dump_log(e);
		fail_msg("skvd did not become ready");
	}
}

int e2e_stop(struct e2e *e, int timeout_ms)
{
	int st = 0;
	if (e->pid > 0) {
		kill(e->pid, SIGTERM);
		long end = now_ms() + timeout_ms;
		for (;;) {
			pid_t r = waitpid(e->pid, &st, WNOHANG);
			if (r == e->pid)
				break;
			if (now_ms() > end) {
				kill(e->pid, SIGKILL);
				waitpid(e->pid, &st, 0);
				e->pid = -1;
				read_notes(e);
				close(e->notify_fd);
				return -1;
			}
			usleep(10000);
		}
		e->pid = -1;
	}
	read_notes(e);
	close(e->notify_fd);
	return WIFEXITED(st) ? WEXITSTATUS(st) : 128 + WTERMSIG(st);
}

int e2e_wait_exit(struct e2e *e, int timeout_ms)
{
	int st = 0;
	long end = now_ms() + timeout_ms;
	while (waitpid(e->pid, &st, WNOHANG) != e->pid) {
		if (now_ms() > end)
			return -1;
		usleep(10000);
	}
	e->pid = -1;
	read_notes(e);
	close(e->notify_fd);
	return WIFEXITED(st) ? WEXITSTATUS(st) : 128 + WTERMSIG(st);
}

int e2e_ctl(struct e2e *e, char *out, size_t cap, const char *fmt, ...)
{
	char args[1024], cmd[2048];
	va_list ap;
	va_start(ap, fmt);
	vsnprintf(args, sizeof(args), fmt, ap);
	va_end(ap);
	snprintf(cmd, sizeof(cmd), "'%s' --socket '%s' %s", tu_tool("SKVCTL"), e->admin, args);
	FILE *p = popen(cmd, "r");
	assert_non_null(p);
	size_t n = out ? fread(out, 1, cap - 1, p) : 0;
	if (out)
		out[n] = '\0';
	else {
		char sink[4096];
		while (fread(sink, 1, sizeof(sink), p) > 0)
			;
	}
	int st = pclose(p);
	return WIFEXITED(st) ? WEXITSTATUS(st) : -1;
}

json_object *e2e_status(struct e2e *e)
{
	static char out[1 << 20];
	int rc = e2e_ctl(e, out, sizeof(out), "status --json");
	if (rc != 0) {
		e2e_dump_log(e);
		fail_msg("skvctl status failed (%d): %s", rc, out);
	}
	json_object *o = json_tokener_parse(out);
	assert_non_null(o);
	return o;
}

static int64_t jint(json_object *o, const char *key)
{
	json_object *v;
	assert_true(json_object_object_get_ex(o, key, &v));
	return json_object_get_int64(v);
}

int e2e_workers(struct e2e *e, pid_t *pids, int *restarts, char states[][16], int max)
{
	json_object *st = e2e_status(e), *ws;
	assert_true(json_object_object_get_ex(st, "workers", &ws));
	int n = (int)json_object_array_length(ws);
	for (int i = 0; i < n && i < max; i++) {
		json_object *w = json_object_array_get_idx(ws, (size_t)i), *s;
		if (pids)
			pids[i] = (pid_t)jint(w, "pid");
		if (restarts)
			restarts[i] = (int)jint(w, "restarts");
		if (states) {
			assert_true(json_object_object_get_ex(w, "state", &s));
			snprintf(states[i], 16, "%s", json_object_get_string(s));
		}
	}
	json_object_put(st);
	return n;
}

int e2e_kv_used(struct e2e *e)
{
	json_object *st = e2e_status(e), *ws;
	int used = 0;
	assert_true(json_object_object_get_ex(st, "workers", &ws));
	for (size_t i = 0; i < json_object_array_length(ws); i++)
		used += (int)jint(json_object_array_get_idx(ws, i), "kv_used_blocks");
	json_object_put(st);
	return used;
}

bool e2e_wait_ready(struct e2e *e, int timeout_ms)
{
	long end = now_ms() + timeout_ms;
	do {
		char states[16][16];
		int n = e2e_workers(e, NULL, NULL, states, 16);
		bool all = n > 0;
		for (int i = 0; i < n; i++)
			all &= !strcmp(states[i], "ready");
		if (all)
			return true;
		usleep(20000);
	} while (now_ms() < end);
	return false;
}

struct skv_client *e2e_client(struct e2e *e)
{
	struct skv_client *c = NULL;
	assert_int_equal(skv_client_new(&c), 0);
	int r = skv_client_connect(c, e->sock);
	if (r < 0)
		fail_msg("connect: %s", skv_client_errmsg(c));
	return c;
}

int e2e_fd_count(pid_t pid)
{
	char path[64];
	snprintf(path, sizeof(path), "/proc/%d/fd", (int)pid);
	DIR *d = opendir(path);
	int n = 0;
	if (!d)
		return -1;
	for (struct dirent *de; (de = readdir(d));)
		n += de->d_name[0] != '.';
	closedir(d);
	return n;
}

long e2e_rss_kb(pid_t pid)
{
	char path[64], line[256];
	long kb = -1;
	snprintf(path, sizeof(path), "/proc/%d/status", (int)pid);
	FILE *f = fopen(path, "r");
	if (!f)
		return -1;
	while (fgets(line, sizeof(line), f))
		if (sscanf(line, "VmRSS: %ld kB", &kb) == 1)
			break;
	fclose(f);
	return kb;
}

int e2e_run(struct skv_client *c, const struct skv_request *req, struct e2e_result *res)
{
	uint64_t id;
	int r;
	memset(res, 0, sizeof(*res));
	do {
		r = skv_client_submit(c, req, &id);
		if (r == -EAGAIN)
			usleep(1000);
	} while (r == -EAGAIN);
	if (r < 0)
		return r;
	for (;;) {
		struct skv_event ev;
		r = skv_client_next(c, &ev, 30000);
		if (r < 0)
			return r;
		assert_int_equal(ev.id, id);
		if (ev.type == SKV_EVENT_DELTA) {
			assert_true(res->text_len + ev.text_len < sizeof(res->text));
			memcpy(res->text + res->text_len, ev.text, ev.text_len);
			res->text_len += ev.text_len;
			for (uint32_t i = 0; i < ev.n_ids && res->n_ids < 4096; i++)
				res->ids[res->n_ids++] = ev.ids[i];
			continue;
		}
		res->final = ev;
		snprintf(res->message, sizeof(res->message), "%s", ev.message ? ev.message : "");
		res->final.message = res->message;
		res->text[res->text_len] = '\0';
		return 0;
	}
}
