/* front.c: skvd's front door. Clients connect to a SOCK_SEQPACKET socket; their credentials
 * are checked against the allowed group before anything is allocated; the handshake hands them
 * a sealed session memfd (submission ring + data area + completion ring) and two eventfd
 * doorbells. Submissions are copied out of shared memory, then validated field by field:
 * a malformed record closes that client alone, a bad parameter ends that request alone with an
 * error naming the field and the limit.
 */
#include <fcntl.h>
#include <grp.h>
#include <poll.h>
#include <pwd.h>
#include <stdio.h>
#include <string.h>
#include <sys/eventfd.h>
#include <sys/mman.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <unistd.h>

#include "idmap.h"
#include "memfd.h"
#include "skvd-req.h"

#define SUB_CAPACITY 64u
#define CMP_CAPACITY 1024u
#define OUT_MAX (16u * 1024u) /* parked completion records per session before it is closed */
/* an allowed peer's hello is due this soon after it connects (it holds one of its uid's sessions
 * until then) */
#define HANDSHAKE_TIMEOUT_NS (2ull * 1000000000ull)
#define HANDSHAKE_TIMEOUT_TEXT "2 s"

static void on_session_sock(struct skvd *d, struct skvd_watch *w, uint32_t revents);
static void on_session_sub(struct skvd *d, struct skvd_watch *w, uint32_t revents);

int skvd_resolve_groups(const struct skvd_config *c, struct skvd_groups *g, struct skv_err *err)
{
	struct group gr, *res = NULL;
	char buf[16384];

	memset(g, 0, sizeof(*g));
	g->allow_any = !c->allow_group[0];
	if (!g->allow_any) {
		if (getgrnam_r(c->allow_group, &gr, buf, sizeof(buf), &res) != 0 || !res)
			return skv_err_set(err, -ENOENT, "allow_group \"%s\" does not exist", c->allow_group);
		g->allow_gid = gr.gr_gid;
	}
	g->admin_group_set = c->admin_group[0] != 0;
	if (g->admin_group_set) {
		if (getgrnam_r(c->admin_group, &gr, buf, sizeof(buf), &res) != 0 || !res)
			return skv_err_set(err, -ENOENT, "admin_group \"%s\" does not exist", c->admin_group);
		g->admin_gid = gr.gr_gid;
	}
	return 0;
}

/* The peer's uid, gid and whether it is in `gid` (primary or supplementary). */
int skvd_peer_in_group(int fd, gid_t want, bool any, uid_t *ret_uid, gid_t *ret_gid, pid_t *ret_pid)
{
	struct ucred cr;
	socklen_t len = sizeof(cr);
	gid_t groups[256];

	if (getsockopt(fd, SOL_SOCKET, SO_PEERCRED, &cr, &len) < 0)
		return -errno;
	*ret_uid = cr.uid;
	*ret_gid = cr.gid;
	*ret_pid = cr.pid;
	if (any || cr.uid == 0 || cr.uid == getuid() || cr.gid == want)
		return 1;
	len = sizeof(groups);
	if (getsockopt(fd, SOL_SOCKET, SO_PEERGROUPS, groups, &len) < 0)
		return errno == ERANGE ? 0 : -errno;
	for (size_t i = 0; i < len / sizeof(gid_t); i++)
		if (groups[i] == want)
			return 1;
	return 0;
}

static void refuse(int fd, uint16_t status, const char *msg)
{
	struct skv_welcome w = {.magic = SKV_WIRE_MAGIC_WELCOME, .version = SKV_WIRE_VERSION, .status = status};
	skv_strscpy(w.message, msg, sizeof(w.message));
	ssize_t n = send(fd, &w, sizeof(w), MSG_NOSIGNAL | MSG_DONTWAIT);
	(void)n;
}

/* ---- sessions per uid: the count is the map's value itself (0: absent) ---- */

static uint32_t uid_sessions(const struct skvd *d, uid_t uid)
{
	return (uint32_t)(uintptr_t)skvd_idmap_get(d->uid_sessions, (uint64_t)uid + 1);
}

/* Only a uid new to the map can need memory (the put after the del never grows the map
 * otherwise), so a failure loses no count. */
static int uid_sessions_add(struct skvd *d, uid_t uid, int delta)
{
	uint64_t key = (uint64_t)uid + 1;
	uint32_t have = uid_sessions(d, uid);
	if (delta < 0 && have == 0)
		return 0;
	uint32_t n = (uint32_t)((int64_t)have + delta);
	skvd_idmap_del(d->uid_sessions, key);
	return n ? skvd_idmap_put(d->uid_sessions, key, (void *)(uintptr_t)n) : 0;
}

/* ---- refused peers: a slot each in a small pool, never a session ---- */

static void refused_free(struct skvd *d, struct skvd_refused *r)
{
	skvd_watch_del(d, r->watch);
	close(r->fd);
	r->watch = NULL;
	r->fd = -1;
}

/* Its hello (or anything, even an empty packet) arrived, or it went away: the answer, then
 * the close. */
static void on_refused_sock(struct skvd *d, struct skvd_watch *w, uint32_t revents)
{
	struct skvd_refused *r = w->data;
	uint8_t buf[sizeof(struct skv_hello) + 1];
	(void)revents;

	if (r->watch != w)
		return;
	ssize_t n = recv(r->fd, buf, sizeof(buf), MSG_DONTWAIT);
	if (n < 0 && (errno == EAGAIN || errno == EINTR))
		return;
	if (n >= 0)
		refuse(r->fd, r->status, r->why);
	refused_free(d, r);
}

/* Keeps fd until its hello can be answered with `status`; a bare close when the pool is full. */
static void refused_add(struct skvd *d, int fd, uint16_t status, const char *why)
{
	struct skvd_refused *r = NULL;
	for (size_t i = 0; i < SKVD_REFUSED_MAX && !r; i++)
		if (!d->refused[i].watch)
			r = &d->refused[i];
	if (!r) {
		close(fd);
		return;
	}
	r->fd = fd;
	r->status = status;
	skv_strscpy(r->why, why, sizeof(r->why));
	r->born_ns = skv_now_ns();
	r->watch = skvd_watch_add(d, fd, POLLIN, on_refused_sock, r);
	if (!r->watch) {
		close(fd);
		r->fd = -1;
	}
}

static void on_client_listen(struct skvd *d, struct skvd_watch *w, uint32_t revents)
{
	(void)revents;
	for (;;) {
		int fd = accept4(w->fd, NULL, NULL, SOCK_CLOEXEC | SOCK_NONBLOCK);
		if (fd < 0) {
			if (errno != EAGAIN && errno != EINTR && errno != ECONNABORTED)
				skvd_log(SKVD_WARNING, "client socket: accept: %s", strerror(errno));
			if (errno == EINTR || errno == ECONNABORTED)
				continue;
			return;
		}
		/* who it is comes first: nothing is allocated for a peer before that */
		uid_t uid;
		gid_t gid;
		pid_t pid;
		char why[128]; /* what fits of it goes into the welcome's message */
		uint16_t refusal = 0;
		int in = skvd_peer_in_group(fd, d->groups.allow_gid, d->groups.allow_any, &uid, &gid, &pid);
		if (in < 0) {
			skvd_log(SKVD_WARNING, "client refused: cannot read its credentials (SO_PEERCRED): %s", strerror(-in));
			close(fd);
			continue;
		}
		if (in == 0) {
			skvd_log(SKVD_NOTICE, "client uid %u pid %d refused: not in group %s", (unsigned)uid, (int)pid,
				 d->cfg.allow_group);
			refusal = SKV_WELCOME_DENIED;
			snprintf(why, sizeof(why), "permission denied: not in group %s", d->cfg.allow_group);
		} else if (d->draining) {
			refusal = SKV_WELCOME_SHUTDOWN;
			snprintf(why, sizeof(why), "skvd is shutting down");
		} else if (d->n_sessions >= d->cfg.max_clients) {
			refusal = SKV_WELCOME_FULL;
			snprintf(why, sizeof(why), "too many clients (max_clients %u)", d->cfg.max_clients);
		} else if (uid_sessions(d, uid) >= d->cfg.max_sessions_per_uid) {
			skvd_log(SKVD_NOTICE, "client uid %u pid %d refused: it has %u sessions (max_sessions_per_uid)",
				 (unsigned)uid, (int)pid, uid_sessions(d, uid));
			refusal = SKV_WELCOME_FULL;
			snprintf(why, sizeof(why), "uid %u already has %u sessions (max_sessions_per_uid)", (unsigned)uid,
				 uid_sessions(d, uid));
		}
		if (refusal) {
			refused_add(d, fd, refusal, why);
			continue;
		}
		struct skvd_session *s = calloc(1, sizeof(*s));
		if (!s || uid_sessions_add(d, uid, +1) < 0) {
			free(s);
			close(fd);
			continue;
		}
		s->id = ++d->next_session_id;
		s->sock = fd;
		s->mem_fd = s->sub_efd = s->cmp_efd = -1;
		s->uid = uid;
		s->pid = pid;
		s->born_ns = skv_now_ns();
		s->next = d->sessions;
		if (d->sessions)
			d->sessions->prev = s;
		d->sessions = s;
		d->n_sessions++;
		s->sock_watch = skvd_watch_add(d, fd, POLLIN, on_session_sock, s);
		if (!s->sock_watch)
			skvd_session_close(d, s, "out of memory");
	}
}

/* Builds the session segment and answers the hello. */
static int handshake(struct skvd *d, struct skvd_session *s, const struct skv_hello *h)
{
	struct skv_err err = {0};
	struct skv_session_layout *L = &s->layout;
	char model[64];

	if (h->magic != SKV_WIRE_MAGIC_HELLO) {
		refuse(s->sock, SKV_WELCOME_MALFORMED, "not a swiftkv hello");
		return -EPROTO;
	}
	if (h->version_min > SKV_WIRE_VERSION || h->version_max < SKV_WIRE_VERSION) {
		char msg[96];
		snprintf(msg, sizeof(msg), "no common protocol version (client %u..%u, skvd %u)", h->version_min,
			 h->version_max, SKV_WIRE_VERSION);
		refuse(s->sock, SKV_WELCOME_VERSION, msg);
		return -EPROTO;
	}
	uint64_t off = 4096;
	L->sub_capacity = SUB_CAPACITY;
	L->sub_idx_offset = (uint32_t)off;
	off += sizeof(struct skv_ring_shared);
	L->sub_offset = (uint32_t)off;
	off = SKV_ALIGN_UP(off + SUB_CAPACITY * SKV_WIRE_RECORD, 4096);
	L->data_offset = (uint32_t)off;
	L->data_size = (uint32_t)SKV_ALIGN_UP((uint64_t)d->cfg.max_request_bytes, 4096);
	off += L->data_size;
	L->cmp_capacity = CMP_CAPACITY;
	L->cmp_idx_offset = (uint32_t)off;
	off += sizeof(struct skv_ring_shared);
	L->cmp_offset = (uint32_t)off;
	off = SKV_ALIGN_UP(off + CMP_CAPACITY * SKV_WIRE_RECORD, 4096);
	L->total_size = off;

	/* the client gets the memfd: sealed against sealing too, so it cannot add a seal (such as
	 * F_SEAL_FUTURE_WRITE) that would change what skvd may do with its own region */
	if (skv_memfd_new("skv-session", L->total_size, &s->mem_fd, &err) < 0 ||
	    skv_memfd_seal_seals(s->mem_fd, &err) < 0 ||
	    skv_memfd_map(s->mem_fd, L->total_size, true, &s->mem, &err) < 0) {
		skvd_log(SKVD_ERR, "client %llu | %s", (unsigned long long)s->id, err.msg);
		refuse(s->sock, SKV_WELCOME_FULL, "skvd is out of memory");
		return -ENOMEM;
	}
	struct skv_session_header *sh = s->mem;
	sh->magic = SKV_WIRE_MAGIC_SESSION;
	sh->version = SKV_WIRE_VERSION;
	sh->header_size = sizeof(*sh);
	sh->layout = *L;
	skv_ring_attach(&s->sub, (void *)((char *)s->mem + L->sub_idx_offset), (char *)s->mem + L->sub_offset,
			L->sub_capacity, SKV_WIRE_RECORD, false);
	skv_ring_attach(&s->cmp, (void *)((char *)s->mem + L->cmp_idx_offset), (char *)s->mem + L->cmp_offset,
			L->cmp_capacity, SKV_WIRE_RECORD, true);
	s->sub_efd = eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK);
	s->cmp_efd = eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK);
	if (s->sub_efd < 0 || s->cmp_efd < 0) {
		refuse(s->sock, SKV_WELCOME_FULL, "skvd is out of file descriptors");
		return -EMFILE;
	}

	struct skv_welcome wm = {
		.magic = SKV_WIRE_MAGIC_WELCOME,
		.version = SKV_WIRE_VERSION,
		.status = SKV_WELCOME_OK,
		.layout = *L,
		.limits =
			{
				.max_prompt_tokens = d->cfg.max_prompt_tokens,
				.max_new_tokens = d->cfg.max_new_tokens,
				.max_context = d->max_context,
				.max_request_bytes = d->cfg.max_request_bytes,
				.max_stop = d->cfg.max_stop,
				.max_stop_bytes = d->cfg.max_stop_bytes,
				.max_in_flight = d->cfg.max_in_flight,
				.features = SKV_WIRE_FEATURE_COUNT_ONLY | SKV_WIRE_FEATURE_PROGRESS,
			},
		.session_id = s->id,
	};
	skv_strscpy(model, d->cfg.model_name, sizeof(model));
	memcpy(wm.model, model, sizeof(wm.model));
	int fds[3] = {s->mem_fd, s->sub_efd, s->cmp_efd};
	char cbuf[CMSG_SPACE(sizeof(fds))];
	struct iovec iov = {.iov_base = &wm, .iov_len = sizeof(wm)};
	struct msghdr mh = {.msg_iov = &iov, .msg_iovlen = 1, .msg_control = cbuf, .msg_controllen = sizeof(cbuf)};
	memset(cbuf, 0, sizeof(cbuf));
	struct cmsghdr *cm = CMSG_FIRSTHDR(&mh);
	cm->cmsg_level = SOL_SOCKET;
	cm->cmsg_type = SCM_RIGHTS;
	cm->cmsg_len = CMSG_LEN(sizeof(fds));
	memcpy(CMSG_DATA(cm), fds, sizeof(fds));
	if (sendmsg(s->sock, &mh, MSG_NOSIGNAL | MSG_DONTWAIT) != (ssize_t)sizeof(wm))
		return -errno;
	s->sub_watch = skvd_watch_add(d, s->sub_efd, POLLIN, on_session_sub, s);
	s->welcomed = true;
	skvd_log(SKVD_DEBUG, "client %llu | uid %u pid %d connected", (unsigned long long)s->id, (unsigned)s->uid,
		 (int)s->pid);
	return 0;
}

/* recv() returned 0: on a SOCK_SEQPACKET socket that is either the peer's end or an empty
 * packet it sent; only the end leaves the socket hung up. */
static bool peer_gone(int fd)
{
	struct pollfd p = {.fd = fd, .events = POLLIN | POLLRDHUP};
	return poll(&p, 1, 0) == 1 && (p.revents & (POLLHUP | POLLRDHUP | POLLERR));
}

static void on_session_sock(struct skvd *d, struct skvd_watch *w, uint32_t revents)
{
	struct skvd_session *s = w->data;
	uint8_t buf[sizeof(struct skv_hello) + 1];
	(void)revents;

	if (s->closing)
		return;
	ssize_t n = recv(s->sock, buf, sizeof(buf), MSG_DONTWAIT);
	if (n < 0 && (errno == EAGAIN || errno == EINTR))
		return;
	if (n < 0 || (n == 0 && peer_gone(s->sock))) {
		skvd_session_close(d, s, NULL);
		return;
	}
	if (s->welcomed) {
		skvd_session_close(d, s, "protocol error: data on the socket after the handshake");
		return;
	}
	if (n != sizeof(struct skv_hello)) { /* an empty packet too: it is not the end of the stream */
		refuse(s->sock, SKV_WELCOME_MALFORMED, "a hello is 32 bytes");
		skvd_session_close(d, s, "protocol error: malformed hello");
		return;
	}
	struct skv_hello h;
	memcpy(&h, buf, sizeof(h));
	if (handshake(d, s, &h) < 0)
		skvd_session_close(d, s, "handshake failed");
}

/* A request that fails before it exists: its final record only. */
static void reject(struct skvd *d, struct skvd_session *s, uint64_t client_id, uint32_t error, const char *fmt, ...)
	SKV_PRINTF(5, 6);
static void reject(struct skvd *d, struct skvd_session *s, uint64_t client_id, uint32_t error, const char *fmt, ...)
{
	struct skv_wire_final f = {
		.version = SKV_WIRE_VERSION,
		.type = SKV_EV_FINAL,
		.id = client_id,
		.finish = SKV_WIRE_FINISH_ERROR,
		.error = error,
		.retry_after_ms = error == SKV_WIRE_ERR_BUSY ? 250 : 0,
	};
	va_list ap;
	va_start(ap, fmt);
	vsnprintf(f.message, sizeof(f.message), fmt, ap);
	va_end(ap);
	d->n_requests_failed++;
	skvd_session_emit(d, s, &f);
}

/* One submission record, already copied out of shared memory. Returns -EPROTO to close the
 * client; anything else was answered (a final record for a refused request). */
static int handle_submit(struct skvd *d, struct skvd_session *s, const struct skv_wire_submit *r)
{
	struct skvd_req_input in = {.client_id = r->id};
	char msg[200];
	uint32_t error = SKV_WIRE_ERR_INVALID;
	int rc;

	if (r->version != SKV_WIRE_VERSION)
		return -EPROTO;
	if (r->type == SKV_SUB_CANCEL) {
		for (struct skvd_req *q = s->reqs_head; q; q = q->next_in_session)
			if (q->client_id == r->id) {
				skvd_request_abort(d, q, SKV_WIRE_FINISH_CANCELLED, SKV_WIRE_ERR_NONE, NULL);
				break;
			}
		return 0; /* already finished: nothing to do */
	}
	/* an id already in flight: its answer would be indistinguishable from the first's */
	for (struct skvd_req *q = s->reqs_head; q; q = q->next_in_session)
		if (q->client_id == r->id)
			return -EPROTO;
	if (r->type == SKV_SUB_REQUEST && d->draining) {
		reject(d, s, r->id, SKV_WIRE_ERR_SHUTTING_DOWN, "skvd is shutting down");
		return 0;
	}
	if (r->type == SKV_SUB_REQUEST && s->n_reqs >= d->cfg.max_in_flight) {
		reject(d, s, r->id, SKV_WIRE_ERR_BUSY, "this client already has %u requests in flight (max_in_flight)",
		       s->n_reqs);
		return 0;
	}
	rc = skvd_submit_decode(d, r, (const char *)s->mem + s->layout.data_offset, s->layout.data_size, &in, &error,
				msg, sizeof(msg));
	if (rc < 0)
		return rc;
	if (rc == 0) {
		reject(d, s, r->id, error, "%s", msg);
		return 0;
	}
	if (in.flags & SKV_REQ_COUNT_ONLY) {
		/* counted: the answer is the prompt's length, no worker involved */
		uint64_t now = skv_now_ns();
		struct skv_wire_final f = {
			.version = SKV_WIRE_VERSION,
			.type = SKV_EV_FINAL,
			.id = r->id,
			.finish = SKV_WIRE_FINISH_STOP,
			.prompt_tokens = in.n_prompt,
			.seen_ns = now,
			.skvd_ns = now,
		};
		skvd_session_emit(d, s, &f);
		skvd_req_input_done(&in);
		return 0;
	}
	if (skvd_request_start(d, s, &in, &error, msg, sizeof(msg)) < 0)
		reject(d, s, r->id, error, "%s", msg);
	skvd_req_input_done(&in); /* what remains after the request took its parts */
	return 0;
}

static void on_session_sub(struct skvd *d, struct skvd_watch *w, uint32_t revents)
{
	struct skvd_session *s = w->data;
	(void)revents;

	if (s->closing)
		return;
	/* the doorbell is not read (see skvd_doorbell): each ring of it wakes the poll again */
	int n = skv_ring_avail(&s->sub);
	if (n < 0) {
		skvd_session_close(d, s, "protocol error: submission ring indices out of range");
		return;
	}
	for (int i = 0; i < n && !s->closing; i++) {
		struct skv_wire_submit r;
		/* the slot is released only after the payload it points to has been copied out:
		 * the client reuses the data area as soon as the head moves */
		skv_ring_peek(&s->sub, &r);
		int rc = handle_submit(d, s, &r);
		skv_ring_release(&s->sub);
		if (rc < 0)
			skvd_session_close(d, s, "protocol error: malformed submission record");
	}
}

/* Marks a session for closing at the next flush: emitting happens inside request code that is
 * in the middle of ending requests, so closing (which ends the session's requests) must not
 * happen under it. */
static void session_break(struct skvd_session *s, const char *why)
{
	if (!s->broken)
		s->broken = why;
}

void skvd_session_emit(struct skvd *d, struct skvd_session *s, const void *rec)
{
	(void)d;
	if (s->closing || s->broken)
		return;
	if (s->out_len == 0) {
		int r = skv_ring_push(&s->cmp, rec);
		if (r == 0) {
			s->rang = true;
			return;
		}
		if (r != -EAGAIN) {
			session_break(s, "protocol error: completion ring indices out of range");
			return;
		}
	}
	/* the client is behind: park the record */
	if (s->out_len == s->out_cap) {
		if (s->out_cap >= OUT_MAX) {
			session_break(s, "the client stopped reading its completion ring");
			return;
		}
		uint32_t cap = s->out_cap ? 2 * s->out_cap : 64;
		uint8_t *o = malloc((size_t)cap * SKV_WIRE_RECORD);
		if (!o) {
			session_break(s, "out of memory");
			return;
		}
		for (uint32_t i = 0; i < s->out_len; i++)
			memcpy(o + (size_t)i * SKV_WIRE_RECORD,
			       s->out + (size_t)((s->out_head + i) % s->out_cap) * SKV_WIRE_RECORD, SKV_WIRE_RECORD);
		free(s->out);
		s->out = o;
		s->out_cap = cap;
		s->out_head = 0;
	}
	memcpy(s->out + (size_t)((s->out_head + s->out_len) % s->out_cap) * SKV_WIRE_RECORD, rec, SKV_WIRE_RECORD);
	s->out_len++;
}

void skvd_session_close(struct skvd *d, struct skvd_session *s, const char *why)
{
	if (s->closing)
		return;
	if (why)
		skvd_log(SKVD_NOTICE, "client %llu | uid %u | closed: %s", (unsigned long long)s->id, (unsigned)s->uid,
			 why);
	s->closing = true;
	/* its requests stop within a step; nothing more is sent to it */
	while (s->reqs_head)
		skvd_request_abort(d, s->reqs_head, SKV_WIRE_FINISH_CANCELLED, SKV_WIRE_ERR_NONE, NULL);
}

static void session_free(struct skvd *d, struct skvd_session *s)
{
	skvd_watch_del(d, s->sock_watch);
	skvd_watch_del(d, s->sub_watch);
	if (s->prev)
		s->prev->next = s->next;
	else
		d->sessions = s->next;
	if (s->next)
		s->next->prev = s->prev;
	d->n_sessions--;
	uid_sessions_add(d, s->uid, -1); /* a smaller count, or none: never needs memory */
	if (s->mem)
		munmap(s->mem, s->layout.total_size);
	int fds[] = {s->sock, s->mem_fd, s->sub_efd, s->cmp_efd};
	for (size_t i = 0; i < SKV_ARRAY_SIZE(fds); i++)
		if (fds[i] >= 0)
			close(fds[i]);
	free(s->out);
	free(s);
}

void skvd_sessions_flush(struct skvd *d)
{
	struct skvd_session *s = d->sessions, *next;
	for (; s; s = next) {
		next = s->next;
		if (s->broken && !s->closing)
			skvd_session_close(d, s, s->broken);
		if (s->closing) {
			session_free(d, s);
			continue;
		}
		if (s->out_len) {
			int space = skv_ring_space(&s->cmp);
			if (space < 0) {
				skvd_session_close(d, s, "protocol error: completion ring indices out of range");
				session_free(d, s);
				continue;
			}
			while (space > 0 && s->out_len) {
				memcpy(skv_ring_slot(&s->cmp, 0), s->out + (size_t)s->out_head * SKV_WIRE_RECORD, SKV_WIRE_RECORD);
				skv_ring_commit(&s->cmp, 1);
				s->out_head = (s->out_head + 1) % s->out_cap;
				s->out_len--;
				space--;
				s->rang = true;
			}
		}
		if (s->rang) {
			skvd_doorbell(d, s->cmp_efd);
			s->rang = false;
		}
	}
}

void skvd_sessions_tick(struct skvd *d)
{
	uint64_t now = skv_now_ns();
	for (struct skvd_session *s = d->sessions; s; s = s->next)
		if (!s->welcomed && !s->closing && now - s->born_ns > HANDSHAKE_TIMEOUT_NS)
			skvd_session_close(d, s, "no hello within " HANDSHAKE_TIMEOUT_TEXT);
	for (size_t i = 0; i < SKVD_REFUSED_MAX; i++) {
		struct skvd_refused *r = &d->refused[i];
		if (r->watch && now - r->born_ns > SKVD_REFUSED_TIMEOUT_MS * 1000000ull)
			refused_free(d, r);
	}
}

static int bind_socket(const char *path, int type, mode_t mode, struct skv_err *err)
{
	struct sockaddr_un sa = {.sun_family = AF_UNIX};
	_cleanup_close_ int fd = -1;

	if (strlen(path) >= sizeof(sa.sun_path))
		return skv_err_set(err, -ENAMETOOLONG, "socket path %s is longer than %zu bytes", path,
				   sizeof(sa.sun_path) - 1);
	strcpy(sa.sun_path, path);
	fd = socket(AF_UNIX, type | SOCK_CLOEXEC | SOCK_NONBLOCK, 0);
	if (fd < 0)
		return skv_err_set(err, -errno, "socket: %s", strerror(errno));
	/* a stale socket from a previous run is replaced; anything else at the path is not */
	struct stat st;
	if (lstat(path, &st) == 0) {
		if (!S_ISSOCK(st.st_mode))
			return skv_err_set(err, -EEXIST, "%s exists and is not a socket", path);
		unlink(path);
	}
	mode_t old = umask(0777 & ~mode);
	int r = bind(fd, (struct sockaddr *)&sa, sizeof(sa));
	umask(old);
	if (r < 0)
		return skv_err_set(err, -errno, "%s: cannot bind: %s", path, strerror(errno));
	if (chmod(path, mode) < 0 || listen(fd, 128) < 0)
		return skv_err_set(err, -errno, "%s: %s", path, strerror(errno));
	return SKV_TAKE_FD(fd);
}

int skvd_front_init(struct skvd *d, struct skv_err *err)
{
	for (size_t i = 0; i < SKVD_REFUSED_MAX; i++)
		d->refused[i].fd = -1;
	d->uid_sessions = skvd_idmap_new();
	if (!d->uid_sessions)
		return skv_err_set(err, -ENOMEM, "out of memory");
	if (d->client_listen < 0) {
		int fd = bind_socket(d->cfg.socket, SOCK_SEQPACKET, 0660, err);
		if (fd < 0)
			return fd;
		d->client_listen = fd;
		if (!d->groups.allow_any && getuid() == 0 && chown(d->cfg.socket, 0, d->groups.allow_gid) < 0)
			return skv_err_set(err, -errno, "%s: cannot give it to group %s: %s", d->cfg.socket,
					   d->cfg.allow_group, strerror(errno));
	}
	d->client_watch = skvd_watch_add(d, d->client_listen, POLLIN, on_client_listen, NULL);
	return d->client_watch ? 0 : skv_err_set(err, -ENOMEM, "out of memory");
}

int skvd_bind_admin(struct skvd *d, struct skv_err *err)
{
	int fd = bind_socket(d->cfg.admin_socket, SOCK_STREAM, d->groups.admin_group_set ? 0660 : 0600, err);
	if (fd < 0)
		return fd;
	if (d->groups.admin_group_set && getuid() == 0 && chown(d->cfg.admin_socket, 0, d->groups.admin_gid) < 0) {
		close(fd);
		return skv_err_set(err, -errno, "%s: cannot give it to group %s: %s", d->cfg.admin_socket,
				   d->cfg.admin_group, strerror(errno));
	}
	return fd;
}

void skvd_front_apply_groups(struct skvd *d)
{
	const struct skvd_groups *g = &d->groups;
	if (!d->client_activated && !g->allow_any && getuid() == 0 && chown(d->cfg.socket, 0, g->allow_gid) < 0)
		skvd_log(SKVD_WARNING, "%s: cannot give it to group %s: %s", d->cfg.socket, d->cfg.allow_group,
			 strerror(errno));
	/* a mode widened by hand is put back, as for the admin socket */
	if (!d->client_activated && chmod(d->cfg.socket, 0660) < 0)
		skvd_log(SKVD_WARNING, "%s: cannot set its mode: %s", d->cfg.socket, strerror(errno));
	if (!d->admin_activated &&
	    ((g->admin_group_set && getuid() == 0 && chown(d->cfg.admin_socket, 0, g->admin_gid) < 0) ||
	     chmod(d->cfg.admin_socket, g->admin_group_set ? 0660 : 0600) < 0))
		skvd_log(SKVD_WARNING, "%s: cannot set its group and mode: %s", d->cfg.admin_socket, strerror(errno));
}

void skvd_front_done(struct skvd *d)
{
	while (d->sessions) {
		skvd_session_close(d, d->sessions, NULL);
		session_free(d, d->sessions);
	}
	for (size_t i = 0; i < SKVD_REFUSED_MAX; i++)
		if (d->refused[i].watch)
			refused_free(d, &d->refused[i]);
	skvd_idmap_free(d->uid_sessions);
	d->uid_sessions = NULL;
	skvd_watch_del(d, d->client_watch);
	if (d->client_listen >= 0) {
		close(d->client_listen);
		if (!d->client_activated)
			unlink(d->cfg.socket);
	}
}
