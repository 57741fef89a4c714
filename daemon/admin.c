/* admin.c: the admin socket (protocol in admin-proto.h). One JSON command per connection;
 * the peer must be root, skvd's own user, or in admin_group. Answers are built with json-c and
 * written without blocking the loop. Open connections are capped and idle ones closed, so a
 * stuck or hostile skvctl cannot pile up fds and memory in skvd. */
#include <poll.h>
#include <stdio.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include <json-c/json.h>

#include "admin-proto.h"
#include "skvd-req.h"

struct skvd_admin_conn {
	int fd;
	struct skvd_watch *watch;
	uint64_t active_ns; /* when it last made progress (connected, sent or took bytes) */
	struct skvd_admin_conn *next, *prev;
	char in[SKVD_ADMIN_MAX_REQUEST + 1];
	size_t in_len;
	char *out;
	size_t out_len, out_done;
};

static void on_admin_conn(struct skvd *d, struct skvd_watch *w, uint32_t revents);

static void conn_close(struct skvd *d, struct skvd_admin_conn *c)
{
	if (c->prev)
		c->prev->next = c->next;
	else
		d->admin_conns = c->next;
	if (c->next)
		c->next->prev = c->prev;
	d->n_admin_conns--;
	skvd_watch_del(d, c->watch);
	close(c->fd);
	free(c->out);
	free(c);
}

static json_object *status_json(struct skvd *d)
{
	json_object *o = json_object_new_object(), *model = json_object_new_object(), *workers = json_object_new_array();
	json_object *queue = json_object_new_object(), *tps = json_object_new_object();
	uint64_t now = skv_now_ns();
	uint32_t running = 0, queued = 0;
	uint64_t qtok = 0;

	json_object_object_add(o, "ok", json_object_new_boolean(1));
	json_object_object_add(o, "uptime_s", json_object_new_double((double)(now - d->start_ns) / 1e9));
	json_object_object_add(model, "path", json_object_new_string(d->cfg.model_path));
	json_object_object_add(model, "name", json_object_new_string(d->cfg.model_name));
	json_object_object_add(model, "swiftkv", json_object_new_boolean(d->image->swiftkv_on));
	json_object_object_add(model, "backend", json_object_new_string(skvd_backend_name(d->backend)));
	json_object_object_add(model, "weights_bytes", json_object_new_int64((int64_t)d->weights_bytes));
	json_object_object_add(model, "max_context", json_object_new_int64(d->max_context));
	json_object_object_add(o, "model", model);
	double pt = 0, gt = 0;
	for (uint32_t i = 0; i < d->n_replicas; i++) {
		struct skvd_replica *rp = &d->replicas[i];
		json_object *w = json_object_new_object();
		/* a starting worker has not published its numbers yet */
		bool live = rp->state == SKVD_WORKER_READY;
		uint32_t free_blocks = live ? atomic_load(&rp->st->kv_free_blocks) : d->num_blocks;
		uint64_t hb = live ? atomic_load(&rp->st->heartbeat_ns) : 0;
		json_object_object_add(w, "replica", json_object_new_int((int)i));
		json_object_object_add(w, "pid", json_object_new_int(rp->pid));
		json_object_object_add(w, "state", json_object_new_string(skvd_worker_state_name(rp->state)));
		json_object_object_add(w, "restarts", json_object_new_int((int)rp->restarts));
		json_object_object_add(w, "generation", json_object_new_int((int)rp->generation));
		json_object_object_add(w, "device", rp->device >= 0 ? json_object_new_int(rp->device) : json_object_new_string("cpu"));
		json_object_object_add(w, "requests", json_object_new_int((int)rp->n_reqs));
		json_object_object_add(w, "running", json_object_new_int(live ? (int)atomic_load(&rp->st->running) : 0));
		json_object_object_add(w, "waiting", json_object_new_int(live ? (int)atomic_load(&rp->st->waiting) : 0));
		json_object_object_add(w, "kv_total_blocks", json_object_new_int((int)d->num_blocks));
		json_object_object_add(w, "kv_used_blocks", json_object_new_int((int)(d->num_blocks - SKV_MIN(free_blocks, d->num_blocks))));
		json_object_object_add(w, "kv_bytes", json_object_new_int64((int64_t)d->kv_bytes));
		json_object_object_add(w, "preemptions", json_object_new_int64(live ? (int64_t)atomic_load(&rp->st->preemptions) : 0));
		json_object_object_add(w, "heartbeat_age_ms",
				       hb && now > hb ? json_object_new_int64((int64_t)((now - hb) / 1000000)) : json_object_new_int(0));
		json_object_array_add(workers, w);
		if (live) {
			pt += (double)atomic_load(&rp->st->prompt_tokens);
			gt += (double)atomic_load(&rp->st->gen_tokens);
		}
		for (struct skvd_req *q = rp->reqs_head; q; q = q->next_in_replica) {
			if (q->state == SKVD_REQ_SENT)
				running++;
			else
				queued++;
			qtok += q->n_prompt;
		}
	}
	json_object_object_add(o, "workers", workers);
	json_object_object_add(queue, "requests", json_object_new_int((int)queued));
	json_object_object_add(queue, "prompt_tokens", json_object_new_int64((int64_t)qtok));
	json_object_object_add(o, "queue", queue);
	json_object_object_add(o, "requests_running", json_object_new_int((int)running));
	json_object_object_add(o, "clients", json_object_new_int((int)d->n_sessions));
	/* rates since start (the metrics endpoint has counters for proper rates) */
	double up = (double)(now - d->start_ns) / 1e9;
	json_object_object_add(tps, "prompt", json_object_new_double(up > 0 ? pt / up : 0));
	json_object_object_add(tps, "generated", json_object_new_double(up > 0 ? gt / up : 0));
	json_object_object_add(o, "tokens_per_s", tps);
	json_object_object_add(o, "draining", json_object_new_boolean(d->draining));
	return o;
}

static json_object *requests_json(struct skvd *d)
{
	json_object *o = json_object_new_object(), *list = json_object_new_array();
	uint64_t now = skv_now_ns();
	json_object_object_add(o, "ok", json_object_new_boolean(1));
	for (uint32_t i = 0; i < d->n_replicas; i++)
		for (struct skvd_req *q = d->replicas[i].reqs_head; q; q = q->next_in_replica) {
			json_object *r = json_object_new_object();
			json_object_object_add(r, "id", json_object_new_int64((int64_t)q->id));
			json_object_object_add(r, "client_id", json_object_new_int64((int64_t)q->client_id));
			json_object_object_add(r, "uid", json_object_new_int64(q->uid));
			json_object_object_add(r, "replica", json_object_new_int((int)i));
			json_object_object_add(r, "state", json_object_new_string(q->state == SKVD_REQ_SENT ? "running" : "queued"));
			json_object_object_add(r, "prompt_tokens", json_object_new_int((int)q->n_prompt));
			json_object_object_add(r, "generated", json_object_new_int((int)q->n_generated));
			json_object_object_add(r, "age_ms", json_object_new_int64((int64_t)((now - q->t_submit_ns) / 1000000)));
			json_object_array_add(list, r);
		}
	json_object_object_add(o, "requests", list);
	return o;
}

static json_object *error_json(const char *fmt, ...) SKV_PRINTF(1, 2);
static json_object *error_json(const char *fmt, ...)
{
	char msg[1024];
	va_list ap;
	va_start(ap, fmt);
	vsnprintf(msg, sizeof(msg), fmt, ap);
	va_end(ap);
	json_object *o = json_object_new_object();
	json_object_object_add(o, "ok", json_object_new_boolean(0));
	json_object_object_add(o, "error", json_object_new_string(msg));
	return o;
}

static json_object *ok_json(void)
{
	json_object *o = json_object_new_object();
	json_object_object_add(o, "ok", json_object_new_boolean(1));
	return o;
}

static json_object *dispatch(struct skvd *d, const char *line)
{
	json_object *req = json_tokener_parse(line), *v;
	json_object *resp;
	const char *cmd;

	if (!req || !json_object_is_type(req, json_type_object) || !json_object_object_get_ex(req, "cmd", &v) ||
	    !json_object_is_type(v, json_type_string)) {
		json_object_put(req);
		return error_json("a command is a JSON object with a string \"cmd\"");
	}
	cmd = json_object_get_string(v);
	if (!strcmp(cmd, "status")) {
		resp = status_json(d);
	} else if (!strcmp(cmd, "requests")) {
		resp = requests_json(d);
	} else if (!strcmp(cmd, "metrics")) {
		char *text = skvd_metrics_text(d);
		resp = text ? ok_json() : error_json("out of memory");
		if (text)
			json_object_object_add(resp, "text", json_object_new_string(text));
		free(text);
	} else if (!strcmp(cmd, "cancel")) {
		int64_t id = json_object_object_get_ex(req, "id", &v) ? json_object_get_int64(v) : 0;
		struct skvd_req *q = id > 0 ? skvd_request_find(d, (uint64_t)id) : NULL;
		if (!q) {
			resp = error_json("no request %lld", (long long)id);
		} else {
			skvd_request_abort(d, q, SKV_WIRE_FINISH_CANCELLED, SKV_WIRE_ERR_NONE, NULL);
			resp = ok_json();
		}
	} else if (!strcmp(cmd, "drain")) {
		skvd_begin_drain(d, "skvctl drain");
		resp = ok_json();
	} else if (!strcmp(cmd, "reload")) {
		char msg[1024];
		resp = skvd_reload(d, msg, sizeof(msg)) < 0 ? error_json("%s", msg) : ok_json();
	} else if (!strcmp(cmd, "restart-worker")) {
		int64_t n = json_object_object_get_ex(req, "replica", &v) ? json_object_get_int64(v) : -1;
		if (n < 0 || n >= (int64_t)d->n_replicas) {
			resp = error_json("no replica %lld (there are %u)", (long long)n, d->n_replicas);
		} else {
			skvd_replica_restart(&d->replicas[n]);
			resp = ok_json();
		}
	} else {
		resp = error_json("unknown command \"%s\"", cmd);
	}
	json_object_put(req);
	return resp;
}

static void try_write(struct skvd *d, struct skvd_admin_conn *c)
{
	while (c->out_done < c->out_len) {
		ssize_t n = send(c->fd, c->out + c->out_done, c->out_len - c->out_done, MSG_NOSIGNAL | MSG_DONTWAIT);
		if (n < 0 && errno == EINTR)
			continue;
		if (n < 0 && errno == EAGAIN) {
			/* wait for room: re-watch for POLLOUT */
			skvd_watch_del(d, c->watch);
			c->watch = skvd_watch_add(d, c->fd, POLLOUT, on_admin_conn, c);
			return;
		}
		if (n <= 0)
			break;
		c->out_done += (size_t)n;
		c->active_ns = skv_now_ns();
	}
	conn_close(d, c);
}

static void on_admin_conn(struct skvd *d, struct skvd_watch *w, uint32_t revents)
{
	struct skvd_admin_conn *c = w->data;
	if (c->out) {
		if (revents & (POLLOUT | POLLERR | POLLHUP))
			try_write(d, c);
		return;
	}
	ssize_t n = recv(c->fd, c->in + c->in_len, sizeof(c->in) - 1 - c->in_len, MSG_DONTWAIT);
	if (n < 0 && (errno == EAGAIN || errno == EINTR))
		return;
	if (n <= 0) {
		conn_close(d, c);
		return;
	}
	c->in_len += (size_t)n;
	c->in[c->in_len] = '\0';
	c->active_ns = skv_now_ns();
	char *nl = memchr(c->in, '\n', c->in_len);
	if (!nl && c->in_len < sizeof(c->in) - 1)
		return;
	json_object *resp;
	if (!nl) {
		resp = error_json("command longer than %d bytes", SKVD_ADMIN_MAX_REQUEST);
	} else {
		*nl = '\0';
		resp = dispatch(d, c->in);
	}
	const char *s = json_object_to_json_string_ext(resp, JSON_C_TO_STRING_PLAIN | JSON_C_TO_STRING_NOSLASHESCAPE);
	size_t len = strlen(s);
	c->out = malloc(len + 2);
	if (c->out) {
		memcpy(c->out, s, len);
		c->out[len] = '\n';
		c->out_len = len + 1;
	}
	json_object_put(resp);
	if (!c->out) {
		conn_close(d, c);
		return;
	}
	try_write(d, c);
}

static void on_admin_listen(struct skvd *d, struct skvd_watch *w, uint32_t revents)
{
	(void)revents;
	for (;;) {
		int fd = accept4(w->fd, NULL, NULL, SOCK_CLOEXEC | SOCK_NONBLOCK);
		if (fd < 0) {
			if (errno == EINTR || errno == ECONNABORTED)
				continue;
			return;
		}
		uid_t uid;
		gid_t gid;
		pid_t pid;
		int in = skvd_peer_in_group(fd, d->groups.admin_gid, false, &uid, &gid, &pid);
		if (in < 0) {
			skvd_log(SKVD_WARNING, "admin: refused: cannot read its credentials (SO_PEERCRED): %s",
				 strerror(-in));
			close(fd);
			continue;
		}
		/* root and skvd's own user always; admin_group's members when one is set */
		if (in == 0 || !(d->groups.admin_group_set || uid == 0 || uid == getuid())) {
			const char *msg = "{\"ok\":false,\"error\":\"permission denied\"}\n";
			ssize_t k = send(fd, msg, strlen(msg), MSG_NOSIGNAL | MSG_DONTWAIT);
			(void)k;
			skvd_log(SKVD_NOTICE, "admin: uid %u pid %d refused", (unsigned)uid, (int)pid);
			close(fd);
			continue;
		}
		if (d->n_admin_conns >= SKVD_ADMIN_MAX_CONNS) {
			char msg[96];
			int len = snprintf(msg, sizeof(msg), "{\"ok\":false,\"error\":\"too many admin connections (%d)\"}\n",
					   SKVD_ADMIN_MAX_CONNS);
			ssize_t k = send(fd, msg, (size_t)len, MSG_NOSIGNAL | MSG_DONTWAIT);
			(void)k;
			skvd_log(SKVD_NOTICE, "admin: uid %u pid %d refused: %d connections are open", (unsigned)uid, (int)pid,
				 SKVD_ADMIN_MAX_CONNS);
			close(fd);
			continue;
		}
		struct skvd_admin_conn *c = calloc(1, sizeof(*c));
		if (!c) {
			close(fd);
			continue;
		}
		c->fd = fd;
		c->active_ns = skv_now_ns();
		c->watch = skvd_watch_add(d, fd, POLLIN, on_admin_conn, c);
		if (!c->watch) {
			close(fd);
			free(c);
			continue;
		}
		c->next = d->admin_conns;
		if (c->next)
			c->next->prev = c;
		d->admin_conns = c;
		d->n_admin_conns++;
	}
}

int skvd_admin_init(struct skvd *d, struct skv_err *err)
{
	if (d->admin_listen < 0) {
		int fd = skvd_bind_admin(d, err);
		if (fd < 0)
			return fd;
		d->admin_listen = fd;
	}
	d->admin_watch = skvd_watch_add(d, d->admin_listen, POLLIN, on_admin_listen, NULL);
	return d->admin_watch ? 0 : skv_err_set(err, -ENOMEM, "out of memory");
}

void skvd_admin_tick(struct skvd *d)
{
	uint64_t now = skv_now_ns();
	for (struct skvd_admin_conn *c = d->admin_conns, *next; c; c = next) {
		next = c->next;
		if (now - c->active_ns > SKVD_ADMIN_IDLE_MS * 1000000ull) {
			skvd_log(SKVD_NOTICE, "admin: a connection idle for %d ms closed", SKVD_ADMIN_IDLE_MS);
			conn_close(d, c);
		}
	}
}

void skvd_admin_done(struct skvd *d)
{
	while (d->admin_conns)
		conn_close(d, d->admin_conns);
	skvd_watch_del(d, d->admin_watch);
	if (d->admin_listen >= 0) {
		close(d->admin_listen);
		if (!d->admin_activated)
			unlink(d->cfg.admin_socket);
	}
}
