/* server.c: the HTTP side of skv-http (libmicrohttpd) and its sessions with skvd (libskv).
 *
 * Routes: POST /v1/chat/completions, POST /v1/completions, GET /v1/models (these three need an
 * API key when keys are configured), GET /health, GET /metrics. A generation:
 *   parse the body (api.c) -> take a concurrency slot (429 past max_concurrent_requests) ->
 *   take a libskv session from the pool (503 when skvd cannot be reached) -> submit ->
 *   wait for the first event: a refusal from skvd becomes an error status (429 busy with
 *   Retry-After, 400 context, ...); otherwise 200 with the whole body, or server-sent events
 *   written by a content reader that waits for the next event.
 * A session whose skvd went away (skvd restarted) is dropped and the submission retried once on
 * a fresh session, as long as nothing of the request was received yet.
 *
 * Not here: request parsing (api.c), the configuration (config.c), signals (skv-http.c).
 */
#include "http-server.h"

#include <json-c/json.h>
#include <microhttpd.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <poll.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <string.h>
#include <strings.h>
#include <sys/random.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <time.h>

#include "http-api.h"
#include "http-metrics.h"
#include "skv.h"

#define ADMIN_TIMEOUT_MS 2000
#define ADMIN_MAX_ANSWER (4u << 20)
#define DRAIN_TIMEOUT_MS 10000 /* waiting for a cancelled request's final */
#define SSE_BLOCK 16384

struct pool {
	pthread_mutex_t lock;
	struct skv_client **idle;
	size_t n_idle, cap;
	char model[64];
	uint32_t max_context;
};

struct skv_http_server {
	struct skv_http_config cfg;
	struct MHD_Daemon *mhd[SKV_HTTP_MAX_LISTEN];
	size_t n_mhd;
	pthread_rwlock_t keys_lock;
	struct skv_http_keys keys;
	bool auth;
	char *tls_cert, *tls_key; /* PEM */
	struct pool pool;
	atomic_uint active; /* generations holding a slot */
	atomic_uint_fast64_t next_id;
	char id_prefix[17];
	int64_t started;
};

/* One HTTP request (libmicrohttpd's per-request pointer). */
struct conn {
	enum skv_http_route route;
	uint64_t t0;
	char *body;
	size_t len, cap;
	bool too_big;
	int status;
};

/* An event copied out of libskv (its pointers live only until the next call). */
struct ev_copy {
	enum skv_event_type type;
	uint64_t t_skvd_ns; /* when skvd sent it (CLOCK_MONOTONIC, 0: not known) */
	char text[SKV_DELTA_TEXT_MAX + 1];
	size_t len;
	struct skv_event final; /* message points into msg */
	char msg[256];
};

/* A generation in flight: owned by the handler, then (streams) by the response. */
struct gen {
	struct skv_http_server *s;
	enum skv_http_endpoint ep;
	struct skv_client *client;
	uint64_t id;
	int conn_fd;
	uint64_t t0, t_body; /* the request's first byte, its body's last */
	bool submitted, final_seen, session_broken, have_slot, ttft_done;
	bool include_usage, first_sent, done;
	char rid[48];
	char model[64];
	int64_t created;
	char *out;
	size_t out_len, out_off, out_cap;
	uint32_t prompt_tokens, completion_tokens;
};

void skv_http_log(int prio, const char *fmt, ...)
{
	char line[2048];
	va_list ap;
	va_start(ap, fmt);
	vsnprintf(line, sizeof(line), fmt, ap);
	va_end(ap);
	fprintf(stderr, "<%d>skv-http: %s\n", prio, line);
}

static void mhd_log(void *cls, const char *fmt, va_list ap)
{
	char line[1024];
	(void)cls;
	vsnprintf(line, sizeof(line), fmt, ap);
	size_t n = strlen(line);
	while (n && line[n - 1] == '\n')
		line[--n] = '\0';
	fprintf(stderr, "<6>skv-http: libmicrohttpd: %s\n", line);
}

/* ---- the session pool ---- */

static void pool_put(struct skv_http_server *s, struct skv_client *c, bool reuse)
{
	if (!c)
		return;
	if (reuse && !skv_client_in_flight(c)) {
		pthread_mutex_lock(&s->pool.lock);
		if (s->pool.n_idle < s->pool.cap) {
			s->pool.idle[s->pool.n_idle++] = c;
			c = NULL;
		}
		pthread_mutex_unlock(&s->pool.lock);
	}
	skv_client_free(c);
}

/* A session: an idle one whose skvd is still there, or a new one. */
static int pool_get(struct skv_http_server *s, struct skv_client **ret, struct skv_http_error *e)
{
	struct skv_client *c = NULL;
	struct skv_limits lim;
	int r;

	for (;;) {
		pthread_mutex_lock(&s->pool.lock);
		c = s->pool.n_idle ? s->pool.idle[--s->pool.n_idle] : NULL;
		pthread_mutex_unlock(&s->pool.lock);
		if (!c)
			break;
		struct pollfd p = {.fd = skv_client_fd(c), .events = POLLIN};
		if (p.fd >= 0 && poll(&p, 1, 0) == 0) {
			*ret = c;
			return 0;
		}
		/* readable with nothing in flight: skvd closed the session */
		skv_client_free(c);
	}
	if ((r = skv_client_new(&c)) < 0)
		return skv_http_error_set(e, 500, NULL, NULL, "out of memory");
	skv_client_set_connect_timeout(c, (int)s->cfg.connect_timeout_ms);
	r = skv_client_connect(c, s->cfg.socket);
	if (r < 0) {
		skv_http_error_set(e, 503, r == -EBUSY ? "skvd_full" : "skvd_unavailable", NULL,
				   "the model server is not available: %s", skv_client_errmsg(c));
		e->retry_after_s = 1;
		skv_client_free(c);
		return -EHOSTDOWN;
	}
	pthread_mutex_lock(&s->pool.lock);
	skv_strscpy(s->pool.model, skv_client_model(c), sizeof(s->pool.model));
	if (skv_client_limits(c, &lim) == 0)
		s->pool.max_context = lim.max_context;
	pthread_mutex_unlock(&s->pool.lock);
	*ret = c;
	return 0;
}

static void pool_model(struct skv_http_server *s, char *buf, size_t len, uint32_t *max_context)
{
	pthread_mutex_lock(&s->pool.lock);
	skv_strscpy(buf, s->pool.model, len);
	if (max_context)
		*max_context = s->pool.max_context;
	pthread_mutex_unlock(&s->pool.lock);
}

/* ---- skvd's admin socket (status for /health, metrics for /metrics) ---- */

static int admin_query(const char *path, const char *cmd, json_object **ret, char *why, size_t why_len)
{
	struct sockaddr_un sa = {.sun_family = AF_UNIX};
	struct timeval tv = {.tv_sec = ADMIN_TIMEOUT_MS / 1000, .tv_usec = (ADMIN_TIMEOUT_MS % 1000) * 1000};
	_cleanup_close_ int fd = -1;
	_cleanup_free_ char *buf = NULL;
	size_t len = 0;
	char req[64];

	if (!path[0]) {
		snprintf(why, why_len, "no [skvd] admin_socket is configured");
		return -ENOENT;
	}
	skv_strscpy(sa.sun_path, path, sizeof(sa.sun_path));
	fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
	if (fd < 0 || setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof(tv)) < 0 ||
	    setsockopt(fd, SOL_SOCKET, SO_SNDTIMEO, &tv, sizeof(tv)) < 0 ||
	    connect(fd, (struct sockaddr *)&sa, sizeof(sa)) < 0) {
		int r = -errno;
		snprintf(why, why_len, "skvd's admin socket %s: %s", path, strerror(errno));
		return r;
	}
	int n = snprintf(req, sizeof(req), "{\"cmd\":\"%s\"}\n", cmd);
	if (send(fd, req, (size_t)n, MSG_NOSIGNAL) != n) {
		snprintf(why, why_len, "skvd's admin socket %s: cannot send: %s", path, strerror(errno));
		return -EIO;
	}
	buf = malloc(ADMIN_MAX_ANSWER + 1);
	if (!buf)
		return -ENOMEM;
	for (;;) {
		ssize_t k = recv(fd, buf + len, ADMIN_MAX_ANSWER - len, 0);
		if (k < 0 && errno == EINTR)
			continue;
		if (k < 0) {
			snprintf(why, why_len, "skvd's admin socket %s: %s", path, strerror(errno));
			return -EIO;
		}
		if (k == 0)
			break;
		len += (size_t)k;
		if (len == ADMIN_MAX_ANSWER) {
			snprintf(why, why_len, "skvd's admin answer is larger than %u bytes", ADMIN_MAX_ANSWER);
			return -EFBIG;
		}
	}
	buf[len] = '\0';
	json_object *o = json_tokener_parse(buf);
	json_object *ok = NULL;
	if (!o || !json_object_object_get_ex(o, "ok", &ok) || !json_object_get_boolean(ok)) {
		json_object *msg = NULL;
		snprintf(why, why_len, "skvd's admin socket answered: %s",
			 o && json_object_object_get_ex(o, "error", &msg) ? json_object_get_string(msg) : "malformed JSON");
		if (o)
			json_object_put(o);
		return -EPROTO;
	}
	*ret = o;
	return 0;
}

/* ---- responses ---- */

static enum MHD_Result queue(struct MHD_Connection *mc, struct conn *c, int status, struct MHD_Response *resp,
			     const char *content_type, uint32_t retry_after_s)
{
	char ra[16];
	if (!resp)
		return MHD_NO;
	MHD_add_response_header(resp, MHD_HTTP_HEADER_CONTENT_TYPE, content_type);
	if (retry_after_s) {
		snprintf(ra, sizeof(ra), "%u", retry_after_s);
		MHD_add_response_header(resp, MHD_HTTP_HEADER_RETRY_AFTER, ra);
	}
	if (status == 401)
		MHD_add_response_header(resp, MHD_HTTP_HEADER_WWW_AUTHENTICATE, "Bearer");
	c->status = status;
	enum MHD_Result r = MHD_queue_response(mc, (unsigned)status, resp);
	MHD_destroy_response(resp);
	return r;
}

/* body: malloc'd, taken */
static enum MHD_Result respond(struct MHD_Connection *mc, struct conn *c, int status, char *body,
			       const char *content_type, uint32_t retry_after_s)
{
	if (!body)
		return MHD_NO;
	struct MHD_Response *resp = MHD_create_response_from_buffer(strlen(body), body, MHD_RESPMEM_MUST_FREE);
	if (!resp)
		free(body);
	return queue(mc, c, status, resp, content_type, retry_after_s);
}

static enum MHD_Result respond_error(struct MHD_Connection *mc, struct conn *c, const struct skv_http_error *e)
{
	return respond(mc, c, e->status, skv_http_error_json(e), "application/json", e->retry_after_s);
}

/* ---- generations ---- */

static void copy_event(const struct skv_event *ev, struct ev_copy *out)
{
	out->type = ev->type;
	out->t_skvd_ns = ev->t_skvd_ns;
	if (ev->type == SKV_EVENT_DELTA) {
		out->len = SKV_MIN(ev->text_len, (size_t)SKV_DELTA_TEXT_MAX);
		memcpy(out->text, ev->text, out->len);
		out->text[out->len] = '\0';
	} else {
		out->final = *ev;
		skv_strscpy(out->msg, ev->message ? ev->message : "", sizeof(out->msg));
		out->final.message = out->msg;
		out->final.text = NULL;
		out->final.ids = NULL;
	}
}

/* The next event of g's request: 0, -ECONNABORTED when the HTTP client went away, or
 * libskv's error (-ECONNRESET: skvd closed the session). */
static int wait_event(struct gen *g, struct ev_copy *out)
{
	struct skv_event ev;
	for (;;) {
		int r = skv_client_next(g->client, &ev, 0);
		if (r == 0) {
			copy_event(&ev, out);
			if (ev.type == SKV_EVENT_FINAL)
				g->final_seen = true;
			return 0;
		}
		if (r != -EAGAIN) {
			g->session_broken = true;
			return r;
		}
		struct pollfd p[2] = {{.fd = skv_client_fd(g->client), .events = POLLIN},
				      {.fd = g->conn_fd, .events = POLLRDHUP}};
		r = poll(p, g->conn_fd >= 0 ? 2 : 1, -1);
		if (r < 0 && errno != EINTR) {
			g->session_broken = true;
			return -errno;
		}
		if (g->conn_fd >= 0 && (p[1].revents & (POLLRDHUP | POLLHUP | POLLERR)))
			return -ECONNABORTED;
	}
}

static int gen_submit(struct gen *g, const struct skv_http_req *hr, struct skv_http_error *e)
{
	struct skv_request req = hr->req;
	int r;

	if (!req.timeout_ms)
		req.timeout_ms = g->s->cfg.request_timeout_ms;
	for (int attempt = 0;; attempt++) {
		if (!g->client && (r = pool_get(g->s, &g->client, e)) < 0) {
			skv_http_metrics_refused("skvd_down");
			return r;
		}
		/* a full ring empties within microseconds while skvd runs; a skvd that stopped
		 * consuming gets connect_timeout_ms, then counts as gone */
		uint64_t deadline = skv_now_ns() + (uint64_t)g->s->cfg.connect_timeout_ms * 1000000;
		r = skv_client_submit(g->client, &req, &g->id);
		while (r == -EAGAIN && skv_now_ns() < deadline) {
			struct timespec ts = {0, 200000};
			nanosleep(&ts, NULL);
			r = skv_client_submit(g->client, &req, &g->id);
		}
		if (r == 0)
			break;
		if ((r == -ECONNRESET || r == -ENOTCONN || r == -EPROTO) && attempt == 0) {
			skv_client_free(g->client);
			g->client = NULL;
			continue;
		}
		if (r == -EINVAL)
			return skv_http_error_set(e, 400, NULL, NULL, "%s", skv_client_errmsg(g->client));
		if (r == -E2BIG)
			return skv_http_error_set(e, 400, "context_length_exceeded",
						  g->ep == SKV_HTTP_ENDPOINT_CHAT ? "messages" : "prompt", "%s",
						  skv_client_errmsg(g->client));
		g->session_broken = true;
		if (r == -EAGAIN)
			skv_http_error_set(e, 503, "skvd_unavailable", NULL,
					   "the model server took no request for %u ms ([skvd] connect_timeout_ms)",
					   g->s->cfg.connect_timeout_ms);
		else
			skv_http_error_set(e, 503, "skvd_unavailable", NULL, "the model server closed the session: %s",
					   skv_client_errmsg(g->client));
		e->retry_after_s = 1;
		return r;
	}
	g->submitted = true;
	return 0;
}

/* Submits and waits for the first event (retrying once on a fresh session when skvd closed
 * an idle one under us). */
static int gen_start(struct gen *g, const struct skv_http_req *hr, struct ev_copy *first, struct skv_http_error *e)
{
	for (int attempt = 0;; attempt++) {
		int r = gen_submit(g, hr, e);
		if (r < 0)
			return r;
		r = wait_event(g, first);
		if (r == 0)
			return 0;
		if (r == -ECONNABORTED)
			return r;
		g->submitted = false;
		skv_client_free(g->client);
		g->client = NULL;
		g->session_broken = false;
		if (attempt == 0)
			continue;
		skv_http_error_set(e, 503, "skvd_unavailable", NULL, "the model server closed the session");
		e->retry_after_s = 1;
		return r;
	}
}

/* Ends g: cancels a request still running in skvd (its client went away) and waits for its
 * final, gives the session back, frees the slot. */
static void gen_finish(struct gen *g)
{
	if (g->client && g->submitted && !g->final_seen && !g->session_broken) {
		skv_http_metrics_disconnect();
		int r = skv_client_cancel(g->client, g->id);
		if (r == 0 || r == -EAGAIN) {
			uint64_t deadline = skv_now_ns() + (uint64_t)DRAIN_TIMEOUT_MS * 1000000;
			struct skv_event ev;
			while (r >= 0 || r == -EAGAIN || r == -ETIMEDOUT || r == -EINTR) {
				if (r == -EAGAIN)
					r = skv_client_cancel(g->client, g->id);
				uint64_t now = skv_now_ns();
				if (now >= deadline)
					break;
				r = skv_client_next(g->client, &ev, (int)((deadline - now) / 1000000) + 1);
				if (r == 0 && ev.type == SKV_EVENT_FINAL) {
					g->final_seen = true;
					break;
				}
			}
		}
		if (!g->final_seen)
			g->session_broken = true;
	}
	if (g->final_seen)
		skv_http_metrics_tokens(g->prompt_tokens, g->completion_tokens);
	pool_put(g->s, g->client, !g->session_broken && g->final_seen);
	g->client = NULL;
	if (g->have_slot) {
		atomic_fetch_sub(&g->s->active, 1);
		skv_http_metrics_in_progress(-1);
		g->have_slot = false;
	}
	free(g->out);
	g->out = NULL;
}

static int out_append(struct gen *g, const char *s, size_t n)
{
	if (g->out_len + n > g->out_cap) {
		size_t cap = SKV_MAX(g->out_cap * 2, g->out_len + n + 256);
		char *o = realloc(g->out, cap);
		if (!o)
			return -ENOMEM;
		g->out = o;
		g->out_cap = cap;
	}
	memcpy(g->out + g->out_len, s, n);
	g->out_len += n;
	return 0;
}

static int out_chunk(struct gen *g, const struct skv_http_chunk *ch)
{
	struct skv_http_meta m = {.id = g->rid, .created = g->created, .model = g->model};
	size_t n;
	_cleanup_free_ char *s = skv_http_chunk_sse(g->ep, &m, ch, &n);
	return s ? out_append(g, s, n) : -ENOMEM;
}

static void note_ttft(struct gen *g)
{
	if (!g->ttft_done) {
		g->ttft_done = true;
		skv_http_metrics_ttft(g->ep == SKV_HTTP_ENDPOINT_CHAT ? SKV_HTTP_ROUTE_CHAT : SKV_HTTP_ROUTE_COMPLETIONS,
				      (double)(skv_now_ns() - g->t0) / 1e9);
	}
}

/* The gateway's share of a generation that ended with final (sent by skvd at final->t_skvd_ns):
 * the way in, and from the final to now, when its response bytes go to the connection. */
static void note_overhead(struct gen *g, const struct ev_copy *final)
{
	uint64_t now = skv_now_ns();
	if (final->final.t_seen_ns >= g->t_body && final->t_skvd_ns && final->t_skvd_ns <= now)
		skv_http_metrics_overhead((double)(final->final.t_seen_ns - g->t_body + now - final->t_skvd_ns) / 1e9);
}

/* Turns one event into server-sent events in g->out. */
static int stream_event(struct gen *g, const struct ev_copy *ev)
{
	static const char done[] = "data: [DONE]\n\n";
	struct skv_http_chunk ch = {.include_usage = g->include_usage};
	int r;

	if (ev->type == SKV_EVENT_DELTA) {
		if (!ev->len)
			return 0;
		note_ttft(g);
		ch.text = ev->text;
		ch.len = ev->len;
		ch.first = !g->first_sent;
		g->first_sent = true;
		return out_chunk(g, &ch);
	}
	g->done = true;
	g->prompt_tokens = ev->final.prompt_tokens;
	g->completion_tokens = ev->final.completion_tokens;
	if (ev->final.finish == SKV_FINISH_REASON_STOP || ev->final.finish == SKV_FINISH_REASON_LENGTH) {
		if (g->ep == SKV_HTTP_ENDPOINT_CHAT && !g->first_sent) {
			struct skv_http_chunk role = {.first = true, .include_usage = g->include_usage};
			if ((r = out_chunk(g, &role)) < 0)
				return r;
		}
		ch.finish = ev->final.finish;
		if ((r = out_chunk(g, &ch)) < 0)
			return r;
		if (g->include_usage) {
			struct skv_http_chunk u = {.usage_only = true,
						   .prompt_tokens = ev->final.prompt_tokens,
						   .completion_tokens = ev->final.completion_tokens};
			if ((r = out_chunk(g, &u)) < 0)
				return r;
		}
	} else {
		/* an error after the stream began: an error object as an event, as vLLM sends it */
		struct skv_http_error e;
		skv_http_error_from_final(g->ep, &ev->final, &e);
		_cleanup_free_ char *j = skv_http_error_json(&e);
		if (!j || (r = out_append(g, "data: ", 6)) < 0 || (r = out_append(g, j, strlen(j))) < 0 ||
		    (r = out_append(g, "\n\n", 2)) < 0)
			return -ENOMEM;
	}
	return out_append(g, done, sizeof(done) - 1);
}

static ssize_t stream_read(void *cls, uint64_t pos, char *buf, size_t max)
{
	struct gen *g = cls;
	(void)pos;
	while (g->out_off == g->out_len) {
		struct ev_copy ev;
		if (g->done)
			return MHD_CONTENT_READER_END_OF_STREAM;
		g->out_off = g->out_len = 0;
		int r = wait_event(g, &ev);
		if (r == -ECONNABORTED)
			return MHD_CONTENT_READER_END_WITH_ERROR;
		if (r < 0) {
			struct skv_http_error e;
			skv_http_error_set(&e, 503, "skvd_unavailable", NULL, "the model server closed the session mid-stream");
			_cleanup_free_ char *j = skv_http_error_json(&e);
			if (!j || out_append(g, "data: ", 6) < 0 || out_append(g, j, strlen(j)) < 0 ||
			    out_append(g, "\n\ndata: [DONE]\n\n", 16) < 0)
				return MHD_CONTENT_READER_END_WITH_ERROR;
			g->done = true;
			continue;
		}
		if (stream_event(g, &ev) < 0)
			return MHD_CONTENT_READER_END_WITH_ERROR;
		if (ev.type == SKV_EVENT_FINAL)
			note_overhead(g, &ev);
		else if (ev.t_skvd_ns && ev.t_skvd_ns <= skv_now_ns())
			skv_http_metrics_stream_delay((double)(skv_now_ns() - ev.t_skvd_ns) / 1e9);
	}
	size_t n = SKV_MIN(max, g->out_len - g->out_off);
	memcpy(buf, g->out + g->out_off, n);
	g->out_off += n;
	return (ssize_t)n;
}

static void stream_free(void *cls)
{
	struct gen *g = cls;
	gen_finish(g);
	free(g);
}

static enum MHD_Result generate(struct skv_http_server *s, struct MHD_Connection *mc, struct conn *c)
{
	enum skv_http_endpoint ep = c->route == SKV_HTTP_ROUTE_CHAT ? SKV_HTTP_ENDPOINT_CHAT : SKV_HTTP_ENDPOINT_COMPLETIONS;
	struct skv_http_req hr;
	struct skv_http_error e;
	struct ev_copy first;
	uint64_t t_body = skv_now_ns();
	int r;

	if (skv_http_req_parse(ep, c->body, c->len, &hr, &e) < 0) {
		skv_http_metrics_refused("invalid");
		return respond_error(mc, c, &e);
	}
	if (atomic_fetch_add(&s->active, 1) >= s->cfg.max_concurrent_requests) {
		atomic_fetch_sub(&s->active, 1);
		skv_http_req_done(&hr);
		skv_http_metrics_refused("busy");
		skv_http_error_set(&e, 429, "rate_limit_exceeded", NULL,
				   "the gateway serves %u requests at once ([limits] max_concurrent_requests); retry later",
				   s->cfg.max_concurrent_requests);
		e.retry_after_s = 1;
		return respond_error(mc, c, &e);
	}
	skv_http_metrics_in_progress(1);

	struct gen *g = calloc(1, sizeof(*g));
	if (!g) {
		atomic_fetch_sub(&s->active, 1);
		skv_http_metrics_in_progress(-1);
		skv_http_req_done(&hr);
		return MHD_NO;
	}
	const union MHD_ConnectionInfo *ci = MHD_get_connection_info(mc, MHD_CONNECTION_INFO_CONNECTION_FD);
	*g = (struct gen){.s = s, .ep = ep, .conn_fd = ci ? ci->connect_fd : -1, .t0 = c->t0, .t_body = t_body,
			  .have_slot = true,
			  .include_usage = hr.include_usage, .created = (int64_t)time(NULL)};
	snprintf(g->rid, sizeof(g->rid), "%s%s%012llx", ep == SKV_HTTP_ENDPOINT_CHAT ? "chatcmpl-" : "cmpl-",
		 s->id_prefix, (unsigned long long)atomic_fetch_add(&s->next_id, 1));
	/* a generation may be silent longer than the idle timeout (queued, a long prompt) */
	MHD_set_connection_option(mc, MHD_CONNECTION_OPTION_TIMEOUT, 0u);

	if ((r = pool_get(s, &g->client, &e)) < 0) {
		skv_http_metrics_refused("skvd_down");
		goto fail;
	}
	pool_model(s, g->model, sizeof(g->model), NULL);
	if (strcmp(hr.model, g->model)) {
		skv_http_error_set(&e, 404, "model_not_found", "model", "the model `%.64s` does not exist; this server serves `%s`",
				   hr.model, g->model);
		goto fail;
	}
	r = gen_start(g, &hr, &first, &e);
	if (r == -ECONNABORTED) {
		gen_finish(g);
		free(g);
		skv_http_req_done(&hr);
		c->status = 499; /* nginx's "client closed request", for the metrics only */
		return MHD_NO;
	}
	if (r < 0)
		goto fail;
	if (first.type == SKV_EVENT_FINAL && first.final.finish != SKV_FINISH_REASON_STOP &&
	    first.final.finish != SKV_FINISH_REASON_LENGTH) {
		skv_http_error_from_final(ep, &first.final, &e);
		goto fail;
	}

	if (hr.stream) {
		skv_http_req_done(&hr);
		if (stream_event(g, &first) < 0)
			goto fail_mem;
		struct MHD_Response *resp =
			MHD_create_response_from_callback(MHD_SIZE_UNKNOWN, SSE_BLOCK, stream_read, g, stream_free);
		if (!resp)
			goto fail_mem;
		MHD_add_response_header(resp, MHD_HTTP_HEADER_CACHE_CONTROL, "no-cache");
		MHD_add_response_header(resp, "X-Accel-Buffering", "no");
		return queue(mc, c, 200, resp, "text/event-stream", 0);
	}

	/* the whole text, then one body */
	struct ev_copy ev = first;
	r = 0;
	while (ev.type == SKV_EVENT_DELTA) {
		if (ev.len)
			note_ttft(g);
		if (out_append(g, ev.text, ev.len) < 0 || (r = wait_event(g, &ev)) < 0)
			break;
	}
	if (r == -ECONNABORTED) {
		gen_finish(g);
		free(g);
		skv_http_req_done(&hr);
		c->status = 499;
		return MHD_NO;
	}
	if (r < 0 || ev.type != SKV_EVENT_FINAL) {
		skv_http_error_set(&e, 503, "skvd_unavailable", NULL, "the model server closed the session");
		e.retry_after_s = 1;
		goto fail;
	}
	if (ev.final.finish != SKV_FINISH_REASON_STOP && ev.final.finish != SKV_FINISH_REASON_LENGTH) {
		skv_http_error_from_final(ep, &ev.final, &e);
		goto fail;
	}
	g->prompt_tokens = ev.final.prompt_tokens;
	g->completion_tokens = ev.final.completion_tokens;
	struct skv_http_meta m = {.id = g->rid, .created = g->created, .model = g->model};
	char *body = skv_http_response_json(ep, &m, g->out ? g->out : "", g->out_len, ev.final.finish,
					    ev.final.prompt_tokens, ev.final.completion_tokens);
	note_overhead(g, &ev);
	gen_finish(g);
	free(g);
	skv_http_req_done(&hr);
	MHD_set_connection_option(mc, MHD_CONNECTION_OPTION_TIMEOUT, s->cfg.idle_timeout_s);
	return respond(mc, c, 200, body, "application/json", 0);

fail_mem:
	skv_http_error_set(&e, 500, NULL, NULL, "out of memory");
fail:
	gen_finish(g);
	free(g);
	skv_http_req_done(&hr);
	MHD_set_connection_option(mc, MHD_CONNECTION_OPTION_TIMEOUT, s->cfg.idle_timeout_s);
	return respond_error(mc, c, &e);
}

/* ---- the other routes ---- */

static enum MHD_Result models(struct skv_http_server *s, struct MHD_Connection *mc, struct conn *c)
{
	struct skv_http_error e;
	struct skv_client *cl = NULL;
	char model[64];
	uint32_t max_context;

	if (pool_get(s, &cl, &e) < 0) {
		skv_http_metrics_refused("skvd_down");
		return respond_error(mc, c, &e);
	}
	pool_put(s, cl, true);
	pool_model(s, model, sizeof(model), &max_context);
	json_object *root = json_object_new_object(), *list = json_object_new_array(), *m = json_object_new_object();
	json_object_object_add(root, "object", json_object_new_string("list"));
	json_object_object_add(root, "data", list);
	json_object_array_add(list, m);
	json_object_object_add(m, "id", json_object_new_string(model));
	json_object_object_add(m, "object", json_object_new_string("model"));
	json_object_object_add(m, "created", json_object_new_int64(s->started));
	json_object_object_add(m, "owned_by", json_object_new_string("swiftkv"));
	json_object_object_add(m, "root", json_object_new_string(model));
	if (max_context)
		json_object_object_add(m, "max_model_len", json_object_new_int64(max_context));
	char *body = strdup(json_object_to_json_string_ext(root, JSON_C_TO_STRING_PLAIN));
	json_object_put(root);
	return respond(mc, c, 200, body, "application/json", 0);
}

/* 200 when skvd has a ready replica (its admin socket's status), else 503 with the reason.
 * Without an admin socket: 200 when a session with skvd can be opened. */
static enum MHD_Result health(struct skv_http_server *s, struct MHD_Connection *mc, struct conn *c)
{
	char why[512];
	json_object *st = NULL, *workers = NULL, *draining = NULL;
	int ready = 0;

	if (s->cfg.admin_socket[0]) {
		if (admin_query(s->cfg.admin_socket, "status", &st, why, sizeof(why)) == 0) {
			if (json_object_object_get_ex(st, "workers", &workers) && json_object_is_type(workers, json_type_array))
				for (size_t i = 0; i < json_object_array_length(workers); i++) {
					json_object *state = NULL;
					if (json_object_object_get_ex(json_object_array_get_idx(workers, i), "state", &state) &&
					    !strcmp(json_object_get_string(state), "ready"))
						ready++;
				}
			bool drain = json_object_object_get_ex(st, "draining", &draining) && json_object_get_boolean(draining);
			json_object_put(st);
			if (drain)
				ready = 0;
			if (!ready)
				snprintf(why, sizeof(why), drain ? "skvd is draining" : "skvd has no ready replica");
		}
	} else {
		struct skv_client *cl = NULL;
		struct skv_http_error e;
		if (pool_get(s, &cl, &e) == 0) {
			pool_put(s, cl, true);
			ready = 1;
		} else {
			skv_strscpy(why, e.message, sizeof(why));
		}
	}
	json_object *o = json_object_new_object();
	json_object_object_add(o, "status", json_object_new_string(ready ? "ok" : "unavailable"));
	if (ready && s->cfg.admin_socket[0])
		json_object_object_add(o, "ready_replicas", json_object_new_int(ready));
	if (!ready)
		json_object_object_add(o, "reason", json_object_new_string(why));
	char *body = strdup(json_object_to_json_string_ext(o, JSON_C_TO_STRING_PLAIN));
	json_object_put(o);
	return respond(mc, c, ready ? 200 : 503, body, "application/json", ready ? 0 : 1);
}

static enum MHD_Result metrics(struct skv_http_server *s, struct MHD_Connection *mc, struct conn *c)
{
	char *text = NULL, why[512];
	size_t len = 0;
	json_object *answer = NULL, *t = NULL;
	FILE *f = open_memstream(&text, &len);
	if (!f)
		return MHD_NO;
	skv_http_metrics_write(f);
	bool up = admin_query(s->cfg.admin_socket, "metrics", &answer, why, sizeof(why)) == 0;
	fprintf(f, "# HELP skv_http_skvd_metrics_up Whether skvd's own metrics (below) could be read from its admin socket.\n"
		   "# TYPE skv_http_skvd_metrics_up gauge\nskv_http_skvd_metrics_up %d\n",
		up);
	if (up && json_object_object_get_ex(answer, "text", &t) && json_object_is_type(t, json_type_string))
		fputs(json_object_get_string(t), f);
	if (answer)
		json_object_put(answer);
	if (fclose(f) != 0) {
		free(text);
		return MHD_NO;
	}
	return respond(mc, c, 200, text, "text/plain; version=0.0.4; charset=utf-8", 0);
}

/* ---- routing ---- */

static enum skv_http_route route_of(const char *url)
{
	for (int r = 0; r < SKV_HTTP_ROUTE_OTHER; r++)
		if (!strcmp(url, skv_http_route_path(r)))
			return (enum skv_http_route)r;
	return SKV_HTTP_ROUTE_OTHER;
}

static bool authorized(struct skv_http_server *s, struct MHD_Connection *mc, struct skv_http_error *e)
{
	const char *h = MHD_lookup_connection_value(mc, MHD_HEADER_KIND, MHD_HTTP_HEADER_AUTHORIZATION);
	if (!s->auth)
		return true;
	if (!h || strncasecmp(h, "Bearer ", 7)) {
		skv_http_error_set(e, 401, "invalid_api_key", NULL,
				   "no API key was given: send it as the header Authorization: Bearer KEY");
		return false;
	}
	h += 7;
	while (*h == ' ')
		h++;
	pthread_rwlock_rdlock(&s->keys_lock);
	bool ok = skv_http_keys_match(&s->keys, h, strlen(h));
	pthread_rwlock_unlock(&s->keys_lock);
	if (!ok)
		skv_http_error_set(e, 401, "invalid_api_key", NULL, "the API key given is not valid");
	return ok;
}

static enum MHD_Result on_request(void *cls, struct MHD_Connection *mc, const char *url, const char *method,
				  const char *version, const char *upload_data, size_t *upload_size, void **con_cls)
{
	struct skv_http_server *s = cls;
	struct conn *c = *con_cls;
	struct skv_http_error e;
	(void)version;

	if (!c) {
		c = calloc(1, sizeof(*c));
		if (!c)
			return MHD_NO;
		c->t0 = skv_now_ns();
		c->route = route_of(url);
		*con_cls = c;
		bool post = c->route == SKV_HTTP_ROUTE_CHAT || c->route == SKV_HTTP_ROUTE_COMPLETIONS;
		if (c->route == SKV_HTTP_ROUTE_OTHER) {
			skv_http_error_set(&e, 404, NULL, NULL, "no route %.128s %.256s", method, url);
			return respond_error(mc, c, &e);
		}
		if (strcmp(method, post ? MHD_HTTP_METHOD_POST : MHD_HTTP_METHOD_GET)) {
			skv_http_error_set(&e, 405, NULL, NULL, "%.256s takes %s, not %.32s", url, post ? "POST" : "GET", method);
			return respond_error(mc, c, &e);
		}
		if (post || c->route == SKV_HTTP_ROUTE_MODELS) {
			if (!authorized(s, mc, &e)) {
				skv_http_metrics_refused("auth");
				return respond_error(mc, c, &e);
			}
		}
		if (post) {
			const char *cl = MHD_lookup_connection_value(mc, MHD_HEADER_KIND, MHD_HTTP_HEADER_CONTENT_LENGTH);
			if (cl && strtoull(cl, NULL, 10) > s->cfg.max_body_bytes) {
				skv_http_metrics_refused("body_too_large");
				skv_http_error_set(&e, 413, NULL, NULL,
						   "the request body is %s bytes; at most %u are accepted ([limits] max_body_bytes)",
						   cl, s->cfg.max_body_bytes);
				return respond_error(mc, c, &e);
			}
			return MHD_YES; /* the body follows */
		}
		if (c->route == SKV_HTTP_ROUTE_MODELS)
			return models(s, mc, c);
		if (c->route == SKV_HTTP_ROUTE_HEALTH)
			return health(s, mc, c);
		return metrics(s, mc, c);
	}
	if (*upload_size) {
		size_t n = *upload_size;
		*upload_size = 0;
		if (c->status)
			return MHD_YES; /* answered already (401, 413): the body is not kept */
		if (c->too_big || c->len + n > s->cfg.max_body_bytes) {
			c->too_big = true;
			return MHD_YES;
		}
		if (c->len + n > c->cap) {
			size_t cap = SKV_MIN((size_t)s->cfg.max_body_bytes, SKV_MAX(c->cap * 2, c->len + n + 4096));
			char *b = realloc(c->body, cap);
			if (!b)
				return MHD_NO;
			c->body = b;
			c->cap = cap;
		}
		memcpy(c->body + c->len, upload_data, n);
		c->len += n;
		return MHD_YES;
	}
	if (c->status)
		return MHD_YES; /* answered already */
	if (c->too_big) {
		skv_http_metrics_refused("body_too_large");
		skv_http_error_set(&e, 413, NULL, NULL, "the request body is larger than %u bytes ([limits] max_body_bytes)",
				   s->cfg.max_body_bytes);
		return respond_error(mc, c, &e);
	}
	return generate(s, mc, c);
}

static void on_completed(void *cls, struct MHD_Connection *mc, void **con_cls, enum MHD_RequestTerminationCode toe)
{
	struct skv_http_server *s = cls;
	struct conn *c = *con_cls;
	(void)toe;
	if (!c)
		return;
	if (c->status)
		skv_http_metrics_request(c->route, c->status, (double)(skv_now_ns() - c->t0) / 1e9);
	MHD_set_connection_option(mc, MHD_CONNECTION_OPTION_TIMEOUT, s->cfg.idle_timeout_s);
	free(c->body);
	free(c);
	*con_cls = NULL;
}

/* Small writes (one SSE event per token) go out at once: without TCP_NODELAY, Nagle's algorithm
 * holds an event back until the client acknowledges the previous one, which a delayed ACK makes
 * up to 40 ms. */
static void on_connection(void *cls, struct MHD_Connection *mc, void **socket_context,
			  enum MHD_ConnectionNotificationCode toe)
{
	(void)cls;
	(void)socket_context;
	if (toe != MHD_CONNECTION_NOTIFY_STARTED)
		return;
	const union MHD_ConnectionInfo *ci = MHD_get_connection_info(mc, MHD_CONNECTION_INFO_CONNECTION_FD);
	int one = 1;
	if (ci)
		(void)setsockopt(ci->connect_fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one));
}

/* ---- the server ---- */

int skv_http_server_reload_keys(struct skv_http_server *s, struct skv_err *err)
{
	struct skv_http_keys k = {0}, old;
	int r;
	if (!s->cfg.api_keys_file[0])
		return 0;
	if ((r = skv_http_keys_load(s->cfg.api_keys_file, &k, err)) < 0)
		return r;
	if (!k.n) {
		skv_http_keys_done(&k);
		return skv_err_set(err, -EINVAL, "%s: no API key in the file (every request would be refused)",
				   s->cfg.api_keys_file);
	}
	pthread_rwlock_wrlock(&s->keys_lock);
	old = s->keys;
	s->keys = k;
	pthread_rwlock_unlock(&s->keys_lock);
	skv_http_keys_done(&old);
	return 0;
}

static int start_listener(struct skv_http_server *s, const struct skv_http_listen *l, int fd, struct skv_err *err)
{
	/* poll, not select: every generation holds a skvd session's fds too, so connection fds
	 * pass FD_SETSIZE (1024) long before max_connections */
	unsigned flags = MHD_USE_THREAD_PER_CONNECTION | MHD_USE_INTERNAL_POLLING_THREAD | MHD_USE_POLL |
			 MHD_USE_ERROR_LOG;
	struct MHD_OptionItem ops[12];
	size_t n = 0;
	uint16_t port = 0;

	ops[n++] = (struct MHD_OptionItem){MHD_OPTION_EXTERNAL_LOGGER, (intptr_t)mhd_log, NULL};
	ops[n++] = (struct MHD_OptionItem){MHD_OPTION_CONNECTION_LIMIT, s->cfg.max_connections, NULL};
	ops[n++] = (struct MHD_OptionItem){MHD_OPTION_CONNECTION_TIMEOUT, s->cfg.idle_timeout_s, NULL};
	ops[n++] = (struct MHD_OptionItem){MHD_OPTION_NOTIFY_COMPLETED, (intptr_t)on_completed, s};
	ops[n++] = (struct MHD_OptionItem){MHD_OPTION_NOTIFY_CONNECTION, (intptr_t)on_connection, NULL};
	if (fd >= 0) {
		ops[n++] = (struct MHD_OptionItem){MHD_OPTION_LISTEN_SOCKET, fd, NULL};
	} else {
		if (l->addr.ss_family == AF_INET6) {
			flags |= MHD_USE_IPv6;
			port = ntohs(((const struct sockaddr_in6 *)&l->addr)->sin6_port);
		} else {
			port = ntohs(((const struct sockaddr_in *)&l->addr)->sin_port);
		}
		ops[n++] = (struct MHD_OptionItem){MHD_OPTION_SOCK_ADDR, 0, (void *)&l->addr};
	}
	if (s->tls_cert) {
		flags |= MHD_USE_TLS;
		ops[n++] = (struct MHD_OptionItem){MHD_OPTION_HTTPS_MEM_CERT, 0, s->tls_cert};
		ops[n++] = (struct MHD_OptionItem){MHD_OPTION_HTTPS_MEM_KEY, 0, s->tls_key};
	}
	ops[n++] = (struct MHD_OptionItem){MHD_OPTION_END, 0, NULL};
	struct MHD_Daemon *d = MHD_start_daemon(flags, port, NULL, NULL, on_request, s, MHD_OPTION_ARRAY, ops, MHD_OPTION_END);
	if (!d)
		return skv_err_set(err, -EADDRNOTAVAIL, "cannot listen on %s (in use, or not an address of this host?)",
				   fd >= 0 ? "the socket systemd passed" : l->text);
	s->mhd[s->n_mhd++] = d;
	return 0;
}

int skv_http_server_new(const struct skv_http_config *cfg, const int *listen_fds, size_t n_fds,
			struct skv_http_server **ret, struct skv_err *err)
{
	struct skv_http_server *s = calloc(1, sizeof(*s));
	uint8_t rnd[8] = {0};
	size_t len;
	int r;

	if (!s)
		return skv_err_set(err, -ENOMEM, "out of memory");
	s->cfg = *cfg;
	pthread_rwlock_init(&s->keys_lock, NULL);
	pthread_mutex_init(&s->pool.lock, NULL);
	s->pool.cap = cfg->max_concurrent_requests;
	s->pool.idle = calloc(s->pool.cap, sizeof(*s->pool.idle));
	s->started = (int64_t)time(NULL);
	if (getrandom(rnd, sizeof(rnd), 0) != sizeof(rnd))
		rnd[0] = (uint8_t)getpid();
	for (size_t i = 0; i < sizeof(rnd); i++)
		snprintf(s->id_prefix + 2 * i, 3, "%02x", rnd[i]);
	if (!s->pool.idle) {
		r = skv_err_set(err, -ENOMEM, "out of memory");
		goto fail;
	}
	s->auth = cfg->api_keys_file[0] != '\0';
	if ((r = skv_http_server_reload_keys(s, err)) < 0)
		goto fail;
	if (cfg->tls_cert[0]) {
		if (MHD_is_feature_supported(MHD_FEATURE_TLS) != MHD_YES) {
			r = skv_err_set(err, -ENOTSUP, "[http] tls_cert: this libmicrohttpd was built without TLS");
			goto fail;
		}
		if ((r = skv_http_read_file(cfg->tls_cert, 1u << 20, &s->tls_cert, &len, err)) < 0 ||
		    (r = skv_http_read_file(cfg->tls_key, 1u << 20, &s->tls_key, &len, err)) < 0)
			goto fail;
	}
	if (n_fds > SKV_HTTP_MAX_LISTEN) {
		r = skv_err_set(err, -E2BIG, "systemd passed %zu sockets; at most %d are served", n_fds, SKV_HTTP_MAX_LISTEN);
		goto fail;
	}
	for (size_t i = 0; i < (n_fds ? n_fds : cfg->n_listen); i++)
		if ((r = start_listener(s, n_fds ? NULL : &cfg->listen[i], n_fds ? listen_fds[i] : -1, err)) < 0)
			goto fail;
	*ret = s;
	return 0;
fail:
	skv_http_server_free(s);
	return r;
}

void skv_http_server_free(struct skv_http_server *s)
{
	if (!s)
		return;
	for (size_t i = 0; i < s->n_mhd; i++)
		MHD_stop_daemon(s->mhd[i]);
	for (size_t i = 0; i < s->pool.n_idle; i++)
		skv_client_free(s->pool.idle[i]);
	free(s->pool.idle);
	skv_http_keys_done(&s->keys);
	if (s->tls_key)
		explicit_bzero(s->tls_key, strlen(s->tls_key));
	free(s->tls_key);
	free(s->tls_cert);
	pthread_rwlock_destroy(&s->keys_lock);
	pthread_mutex_destroy(&s->pool.lock);
	free(s);
}
