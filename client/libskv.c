/* libskv.c: the client handle, the connection and the handshake with skvd.
 *
 * skvd is a peer we do not trust to be well-formed: the welcome is copied out and checked
 * field by field, the fds that come with it are counted and checked (a memfd with its size
 * sealed, of exactly the announced size; two non-blocking eventfds), the layout must fit the
 * memfd with no region overlapping another, and the header skvd wrote into the segment must
 * agree with the welcome. After that only the private copy of the layout is used.
 */
#include <fcntl.h>
#include <grp.h>
#include <poll.h>
#include <stdio.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/mman.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>

#include "libskv-internal.h"
#include "memfd.h"

_Static_assert((int)SKV_PROMPT_TEXT == SKV_INPUT_TEXT && (int)SKV_PROMPT_CHAT == SKV_INPUT_CHAT &&
		       (int)SKV_PROMPT_IDS == SKV_INPUT_IDS,
	       "prompt kinds are the wire's");
_Static_assert((int)SKV_MESSAGE_SYSTEM == SKV_ROLE_SYSTEM && (int)SKV_MESSAGE_USER == SKV_ROLE_USER &&
		       (int)SKV_MESSAGE_ASSISTANT == SKV_ROLE_ASSISTANT,
	       "roles are the wire's");
_Static_assert((unsigned)SKV_REQUEST_TEMPERATURE == SKV_REQ_TEMPERATURE && (unsigned)SKV_REQUEST_TOP_P == SKV_REQ_TOP_P &&
		       (unsigned)SKV_REQUEST_TOP_K == SKV_REQ_TOP_K && (unsigned)SKV_REQUEST_SEED == SKV_REQ_SEED &&
		       (unsigned)SKV_REQUEST_IGNORE_EOS == SKV_REQ_IGNORE_EOS &&
		       (unsigned)SKV_REQUEST_STREAM_IDS == SKV_REQ_STREAM_IDS &&
		       (unsigned)SKV_REQUEST_COUNT_ONLY == SKV_REQ_COUNT_ONLY &&
		       (unsigned)SKV_REQUEST_PROGRESS == SKV_REQ_PROGRESS,
	       "request flags are the wire's");
_Static_assert((int)SKV_FINISH_REASON_STOP == SKV_WIRE_FINISH_STOP &&
		       (int)SKV_FINISH_REASON_LENGTH == SKV_WIRE_FINISH_LENGTH &&
		       (int)SKV_FINISH_REASON_CANCELLED == SKV_WIRE_FINISH_CANCELLED &&
		       (int)SKV_FINISH_REASON_ERROR == SKV_WIRE_FINISH_ERROR,
	       "finish reasons are the wire's");
_Static_assert((int)SKV_ERROR_CODE_INVALID == SKV_WIRE_ERR_INVALID && (int)SKV_ERROR_CODE_CONTEXT == SKV_WIRE_ERR_CONTEXT &&
		       (int)SKV_ERROR_CODE_BUSY == SKV_WIRE_ERR_BUSY &&
		       (int)SKV_ERROR_CODE_WORKER_LOST == SKV_WIRE_ERR_WORKER_LOST &&
		       (int)SKV_ERROR_CODE_SHUTTING_DOWN == SKV_WIRE_ERR_SHUTTING_DOWN &&
		       (int)SKV_ERROR_CODE_TIMEOUT == SKV_WIRE_ERR_TIMEOUT &&
		       (int)SKV_ERROR_CODE_INTERNAL == SKV_WIRE_ERR_INTERNAL,
	       "error codes are the wire's");
_Static_assert(SKV_DELTA_TEXT_MAX == SKV_WIRE_DELTA_TEXT && SKV_DELTA_IDS_MAX == SKV_WIRE_DELTA_IDS,
	       "delta sizes are the wire's");

#define MAX_WELCOME_FDS 8 /* room to receive (and close) more fds than a welcome may carry */

SKV_EXPORT const char *skv_finish_name(enum skv_finish_reason finish)
{
	return finish == SKV_FINISH_REASON_NONE ? "none" : skv_wire_finish_name((uint32_t)finish);
}

SKV_EXPORT const char *skv_error_name(enum skv_error_code error) { return skv_wire_error_name((uint32_t)error); }

SKV_EXPORT void skv_request_init(struct skv_request *req)
{
	memset(req, 0, sizeof(*req));
	req->kind = SKV_PROMPT_TEXT;
}

void skv_sanitize(char *dst, size_t size, const char *src, size_t src_size)
{
	size_t n = strnlen(src, src_size);
	if (n > size - 1)
		n = size - 1;
	for (size_t i = 0; i < n; i++) {
		unsigned char ch = (unsigned char)src[i];
		dst[i] = ch < 0x20 || ch == 0x7f ? '?' : (char)ch;
	}
	dst[n] = '\0';
}

SKV_EXPORT int skv_client_new(struct skv_client **ret)
{
	struct skv_client *c = calloc(1, sizeof(*c));
	if (!c)
		return -ENOMEM;
	c->sock = c->sub_efd = c->cmp_efd = c->ep_fd = -1;
	c->connect_timeout_ms = SKV_CONNECT_TIMEOUT_MS;
	*ret = c;
	return 0;
}

/* Back to the unconnected state; keeps the settings and the error message. */
static void session_reset(struct skv_client *c)
{
	int *fds[] = {&c->sock, &c->sub_efd, &c->cmp_efd, &c->ep_fd};
	for (size_t i = 0; i < SKV_ARRAY_SIZE(fds); i++)
		if (*fds[i] >= 0) {
			close(*fds[i]);
			*fds[i] = -1;
		}
	if (c->mem)
		munmap(c->mem, (size_t)c->layout.total_size);
	c->mem = NULL;
	free(c->slot_end);
	c->slot_end = NULL;
	free(c->reqs);
	c->reqs = NULL;
	c->n_reqs = c->cap_reqs = 0;
	c->broken = 0;
	c->eof = false;
	c->model[0] = '\0';
	memset(&c->layout, 0, sizeof(c->layout));
	memset(&c->limits, 0, sizeof(c->limits));
	memset(&c->sub, 0, sizeof(c->sub));
	memset(&c->cmp, 0, sizeof(c->cmp));
}

SKV_EXPORT void skv_client_free(struct skv_client *c)
{
	if (!c)
		return;
	session_reset(c);
	free(c);
}

SKV_EXPORT int skv_client_set_connect_timeout(struct skv_client *c, int timeout_ms)
{
	skv_err_clear(&c->err);
	if (timeout_ms <= 0 && timeout_ms != -1)
		return skv_err_set(&c->err, -EINVAL, "connect timeout: %d ms is neither > 0 nor -1", timeout_ms);
	c->connect_timeout_ms = timeout_ms;
	return 0;
}

SKV_EXPORT const char *skv_client_errmsg(const struct skv_client *c)
{
	if (!c)
		return "no client handle";
	if (c->err.msg[0])
		return c->err.msg;
	return c->err.code < 0 ? strerror(-c->err.code) : "";
}

SKV_EXPORT int skv_client_fd(const struct skv_client *c) { return c->ep_fd >= 0 ? c->ep_fd : -ENOTCONN; }

SKV_EXPORT const char *skv_client_model(const struct skv_client *c) { return c->model; }

SKV_EXPORT unsigned skv_client_in_flight(const struct skv_client *c) { return c->n_reqs; }

SKV_EXPORT int skv_client_limits(const struct skv_client *c, struct skv_limits *ret)
{
	if (!c->mem)
		return -ENOTCONN;
	*ret = (struct skv_limits){
		.max_prompt_tokens = c->limits.max_prompt_tokens,
		.max_new_tokens = c->limits.max_new_tokens,
		.max_context = c->limits.max_context,
		.max_request_bytes = c->limits.max_request_bytes,
		.max_stop = c->limits.max_stop,
		.max_stop_bytes = c->limits.max_stop_bytes,
		.max_in_flight = c->limits.max_in_flight,
		.data_size = c->layout.data_size,
		.session_id = c->session_id,
	};
	return 0;
}

int skv_client_fail_proto(struct skv_client *c, const char *fmt, ...)
{
	va_list ap;
	va_start(ap, fmt);
	vsnprintf(c->broken_msg, sizeof(c->broken_msg), fmt, ap);
	va_end(ap);
	c->broken = -EPROTO;
	/* skvd sees EOF on the socket and closes the session, cancelling what is in flight */
	if (c->sock >= 0)
		shutdown(c->sock, SHUT_RDWR);
	return skv_err_set(&c->err, -EPROTO, "protocol error from skvd: %s (session closed)", c->broken_msg);
}

int skv_client_check_usable(struct skv_client *c)
{
	if (!c->mem)
		return skv_err_set(&c->err, -ENOTCONN, "not connected to skvd");
	if (c->broken == -EPROTO)
		return skv_err_set(&c->err, -EPROTO, "protocol error from skvd: %s (session closed)", c->broken_msg);
	if (c->broken)
		return skv_err_set(&c->err, c->broken, "%s", c->broken_msg);
	return 0;
}

/* ---- layout and welcome checks ---- */

struct region {
	const char *name;
	uint64_t off, len;
	uint64_t align;
};

int skv_layout_check(const struct skv_session_layout *L, struct skv_err *err)
{
	struct region r[] = {
		{"session header", 0, sizeof(struct skv_session_header), 1},
		{"submission indices", L->sub_idx_offset, sizeof(struct skv_ring_shared), 64},
		{"submission records", L->sub_offset, (uint64_t)L->sub_capacity * SKV_WIRE_RECORD, 8},
		{"data area", L->data_offset, L->data_size, SKV_PAYLOAD_ALIGN},
		{"completion indices", L->cmp_idx_offset, sizeof(struct skv_ring_shared), 64},
		{"completion records", L->cmp_offset, (uint64_t)L->cmp_capacity * SKV_WIRE_RECORD, 8},
	};

	if (!skv_ring_capacity_ok(L->sub_capacity))
		return skv_err_set(err, -EPROTO, "session layout: submission capacity %u is not a power of two in [2, 2^24]",
				   L->sub_capacity);
	if (!skv_ring_capacity_ok(L->cmp_capacity))
		return skv_err_set(err, -EPROTO, "session layout: completion capacity %u is not a power of two in [2, 2^24]",
				   L->cmp_capacity);
	if (L->data_size == 0 || L->data_size % SKV_PAYLOAD_ALIGN)
		return skv_err_set(err, -EPROTO, "session layout: data area size %u is not a positive multiple of %u",
				   L->data_size, SKV_PAYLOAD_ALIGN);
	for (size_t i = 0; i < SKV_ARRAY_SIZE(r); i++) {
		/* offsets are uint32 and lengths at most 2^32 * 256: no overflow in uint64 */
		if (r[i].off % r[i].align)
			return skv_err_set(err, -EPROTO, "session layout: %s at offset %llu is not %llu-aligned", r[i].name,
					   (unsigned long long)r[i].off, (unsigned long long)r[i].align);
		if (r[i].off + r[i].len > L->total_size)
			return skv_err_set(err, -EPROTO,
					   "session layout: %s [%llu, %llu) lies outside the %llu-byte segment", r[i].name,
					   (unsigned long long)r[i].off, (unsigned long long)(r[i].off + r[i].len),
					   (unsigned long long)L->total_size);
		for (size_t j = 0; j < i; j++)
			if (r[i].off < r[j].off + r[j].len && r[j].off < r[i].off + r[i].len)
				return skv_err_set(err, -EPROTO, "session layout: %s overlaps %s", r[i].name, r[j].name);
	}
	if (L->total_size > SIZE_MAX)
		return skv_err_set(err, -EPROTO, "session layout: %llu bytes cannot be mapped here",
				   (unsigned long long)L->total_size);
	return 0;
}

static int refusal_errno(uint16_t status)
{
	switch (status) {
	case SKV_WELCOME_VERSION:
		return -EPROTONOSUPPORT;
	case SKV_WELCOME_DENIED:
		return -EACCES;
	case SKV_WELCOME_FULL:
		return -EBUSY;
	case SKV_WELCOME_SHUTDOWN:
		return -ESHUTDOWN;
	case SKV_WELCOME_MALFORMED:
		return -EPROTO;
	}
	return -ECONNREFUSED;
}

int skv_welcome_check(const struct skv_welcome *w, size_t n_fds, struct skv_err *err)
{
	char msg[sizeof(w->message)];

	if (w->magic != SKV_WIRE_MAGIC_WELCOME)
		return skv_err_set(err, -EPROTO, "the answer to the hello is not a welcome (magic 0x%08x, expected 0x%08x)",
				   w->magic, SKV_WIRE_MAGIC_WELCOME);
	if (w->status != SKV_WELCOME_OK) {
		skv_sanitize(msg, sizeof(msg), w->message, sizeof(w->message));
		if (n_fds)
			return skv_err_set(err, -EPROTO, "skvd refused the session (status %u) but sent %zu fds", w->status,
					   n_fds);
		return skv_err_set(err, refusal_errno(w->status), "skvd refused the session: %s%s%s",
				   w->status == SKV_WELCOME_DENIED	   ? "permission denied"
				   : w->status == SKV_WELCOME_FULL	   ? "too many clients"
				   : w->status == SKV_WELCOME_SHUTDOWN	   ? "shutting down"
				   : w->status == SKV_WELCOME_VERSION	   ? "no common protocol version"
				   : w->status == SKV_WELCOME_MALFORMED ? "it did not understand our hello"
									    : "unknown status",
				   msg[0] ? ": " : "", msg);
	}
	if (w->version != SKV_WIRE_VERSION)
		return skv_err_set(err, -EPROTO, "skvd chose protocol version %u, outside the range %u..%u we offered",
				   w->version, SKV_WIRE_VERSION, SKV_WIRE_VERSION);
	if (n_fds != 3)
		return skv_err_set(err, -EPROTO, "the welcome carried %zu fds, expected 3 (memfd, two eventfds)", n_fds);
	if (!memchr(w->model, 0, sizeof(w->model)))
		return skv_err_set(err, -EPROTO, "the welcome's model name is not NUL-terminated");
	if (!memchr(w->message, 0, sizeof(w->message)))
		return skv_err_set(err, -EPROTO, "the welcome's message is not NUL-terminated");
	return skv_layout_check(&w->layout, err);
}

/* ---- the session ---- */

/* An eventfd we may read or write without ever blocking. /proc tells what the fd is; without
 * /proc only the flags are checked. */
static int check_eventfd(int fd, const char *what, struct skv_err *err)
{
	char path[64], link[64];
	snprintf(path, sizeof(path), "/proc/self/fd/%d", fd);
	ssize_t n = readlink(path, link, sizeof(link) - 1);
	if (n >= 0) {
		link[n] = '\0';
		if (strcmp(link, "anon_inode:[eventfd]") != 0)
			return skv_err_set(err, -EPROTO, "the %s fd is not an eventfd (%s)", what, link);
	}
	int fl = fcntl(fd, F_GETFL);
	if (fl < 0)
		return skv_err_set(err, -EPROTO, "the %s fd is unusable: %s", what, strerror(errno));
	if (!(fl & O_NONBLOCK))
		return skv_err_set(err, -EPROTO, "the %s eventfd is not non-blocking", what);
	return 0;
}

struct mapping {
	void *p;
	size_t size;
};

static void mapping_done(struct mapping *m)
{
	if (m->p)
		munmap(m->p, m->size);
}

/* Maps and checks the segment; takes the three fds (closed on failure). */
static int session_open(struct skv_client *c, const struct skv_welcome *w, int fds[3])
{
	_cleanup_close_ int mem_fd = fds[0], sub_efd = fds[1], cmp_efd = fds[2], ep_fd = -1;
	const struct skv_session_layout *L = &w->layout;
	_cleanup_(mapping_done) struct mapping map = {.size = (size_t)L->total_size};
	_cleanup_free_ uint64_t *slot_end = NULL;
	_cleanup_free_ struct skv_inflight *reqs = NULL;
	struct skv_session_header hdr;
	int seals, r;

	r = skv_memfd_check(mem_fd, map.size, SKV_SEALS_SIZE, NULL, &c->err);
	if (r < 0)
		return skv_err_prefix(&c->err, -EPROTO, "session memfd: ");
	seals = fcntl(mem_fd, F_GET_SEALS);
	if (seals & (F_SEAL_WRITE | F_SEAL_FUTURE_WRITE))
		return skv_err_set(&c->err, -EPROTO, "session memfd: sealed against writes (seals 0x%x)", seals);
	r = check_eventfd(sub_efd, "submission doorbell", &c->err);
	if (r < 0)
		return r;
	r = check_eventfd(cmp_efd, "completion doorbell", &c->err);
	if (r < 0)
		return r;
	r = skv_memfd_map(mem_fd, map.size, true, &map.p, &c->err);
	if (r < 0)
		return skv_err_prefix(&c->err, r, "session memfd: ");

	memcpy(&hdr, map.p, sizeof(hdr)); /* copied out before it is checked */
	if (hdr.magic != SKV_WIRE_MAGIC_SESSION || hdr.version != w->version || hdr.header_size != sizeof(hdr) ||
	    memcmp(&hdr.layout, L, sizeof(*L)) != 0)
		return skv_err_set(&c->err, -EPROTO,
				   "the segment's header (magic 0x%08x, version %u, size %u) does not match the welcome",
				   hdr.magic, hdr.version, hdr.header_size);

	uint32_t cap_reqs = w->limits.max_in_flight ? SKV_MIN(w->limits.max_in_flight, 64u) : 64u;
	slot_end = calloc(L->sub_capacity, sizeof(uint64_t));
	reqs = calloc(cap_reqs, sizeof(*reqs));
	if (!slot_end || !reqs)
		return skv_err_set(&c->err, -ENOMEM, "cannot set up the session: out of memory");
	/* one fd for the caller's event loop: the completion doorbell and the socket's EOF */
	ep_fd = epoll_create1(EPOLL_CLOEXEC);
	struct epoll_event e1 = {.events = EPOLLIN, .data.fd = cmp_efd};
	struct epoll_event e2 = {.events = EPOLLIN | EPOLLRDHUP, .data.fd = c->sock};
	if (ep_fd < 0 || epoll_ctl(ep_fd, EPOLL_CTL_ADD, cmp_efd, &e1) < 0 ||
	    epoll_ctl(ep_fd, EPOLL_CTL_ADD, c->sock, &e2) < 0)
		return skv_err_set(&c->err, -errno, "cannot set up the session: epoll: %s", strerror(errno));

	uint8_t *base = map.p;
	c->mem = SKV_TAKE_PTR(map.p);
	c->layout = *L;
	c->limits = w->limits;
	c->session_id = w->session_id;
	c->version = w->version;
	skv_sanitize(c->model, sizeof(c->model), w->model, sizeof(w->model));
	c->slot_end = SKV_TAKE_PTR(slot_end);
	c->reqs = SKV_TAKE_PTR(reqs);
	c->cap_reqs = cap_reqs;
	c->n_reqs = 0;
	c->ep_fd = SKV_TAKE_FD(ep_fd);
	c->sub_efd = SKV_TAKE_FD(sub_efd);
	c->cmp_efd = SKV_TAKE_FD(cmp_efd);
	/* mem_fd closes here: the mapping keeps the memory */

	skv_ring_attach(&c->sub, (struct skv_ring_shared *)(base + L->sub_idx_offset), base + L->sub_offset,
			L->sub_capacity, SKV_WIRE_RECORD, true);
	skv_ring_attach(&c->cmp, (struct skv_ring_shared *)(base + L->cmp_idx_offset), base + L->cmp_offset,
			L->cmp_capacity, SKV_WIRE_RECORD, false);
	c->data = base + L->data_offset;
	c->sub_head = c->sub.peer;
	c->data_head = c->data_tail = 0;
	c->next_id = 1;
	if (c->sub.mine != c->sub.peer)
		return skv_client_fail_proto(c, "the submission ring is not empty at the start (head %u, tail %u)",
					     c->sub.peer, c->sub.mine);
	return 0;
}

static int wait_readable(int fd, int timeout_ms)
{
	uint64_t deadline = timeout_ms < 0 ? 0 : skv_now_ns() + (uint64_t)timeout_ms * 1000000u;
	for (;;) {
		struct pollfd p = {.fd = fd, .events = POLLIN};
		int left = -1;
		if (timeout_ms >= 0) {
			uint64_t now = skv_now_ns();
			left = now >= deadline ? 0 : (int)SKV_DIV_UP(deadline - now, 1000000u);
		}
		int n = poll(&p, 1, left);
		if (n > 0)
			return 0;
		if (n == 0)
			return -ETIMEDOUT;
		if (errno != EINTR)
			return -errno;
	}
}

int skv_client_handshake(struct skv_client *c, int sock, const char *what)
{
	_cleanup_close_ int fd = sock;
	struct skv_hello hello = {
		.magic = SKV_WIRE_MAGIC_HELLO,
		.version_min = SKV_WIRE_VERSION,
		.version_max = SKV_WIRE_VERSION,
	};
	union {
		struct skv_welcome w;
		uint8_t raw[sizeof(struct skv_welcome) + 1]; /* one more: a longer message is detected */
	} buf;
	union {
		char bytes[CMSG_SPACE(MAX_WELCOME_FDS * sizeof(int))];
		struct cmsghdr align;
	} cbuf;
	int fds[MAX_WELCOME_FDS];
	size_t n_fds = 0;
	int r;

	skv_err_clear(&c->err);
	if (c->mem)
		return skv_err_set(&c->err, -EISCONN, "already connected");
	ssize_t sent = send(fd, &hello, sizeof(hello), MSG_NOSIGNAL);
	int send_errno = sent < 0 ? errno : 0;
	/* a refusal may already be waiting even when the send failed */
	r = wait_readable(fd, send_errno ? 0 : c->connect_timeout_ms);
	if (r == -ETIMEDOUT && send_errno)
		return skv_err_set(&c->err, -ECONNRESET, "%s: cannot send the hello: %s", what, strerror(send_errno));
	if (r == -ETIMEDOUT)
		return skv_err_set(&c->err, -ETIMEDOUT, "%s: no welcome from skvd within %d ms (is it still loading?)", what,
				   c->connect_timeout_ms);
	if (r < 0)
		return skv_err_set(&c->err, r, "%s: poll: %s", what, strerror(-r));

	struct iovec iov = {.iov_base = buf.raw, .iov_len = sizeof(buf.raw)};
	struct msghdr mh = {.msg_iov = &iov, .msg_iovlen = 1, .msg_control = cbuf.bytes, .msg_controllen = sizeof(cbuf.bytes)};
	ssize_t n;
	do
		n = recvmsg(fd, &mh, MSG_CMSG_CLOEXEC | MSG_DONTWAIT);
	while (n < 0 && errno == EINTR);
	if (n < 0) {
		if (errno == ECONNRESET || errno == EPIPE)
			return skv_err_set(&c->err, -ECONNRESET, "%s: skvd closed the connection during the handshake", what);
		return skv_err_set(&c->err, -errno, "%s: cannot receive the welcome: %s", what, strerror(errno));
	}
	for (struct cmsghdr *cm = CMSG_FIRSTHDR(&mh); cm; cm = CMSG_NXTHDR(&mh, cm)) {
		if (cm->cmsg_level != SOL_SOCKET || cm->cmsg_type != SCM_RIGHTS)
			continue;
		size_t k = (cm->cmsg_len - CMSG_LEN(0)) / sizeof(int);
		for (size_t i = 0; i < k && n_fds < MAX_WELCOME_FDS; i++)
			memcpy(&fds[n_fds++], CMSG_DATA(cm) + i * sizeof(int), sizeof(int));
	}
	if (mh.msg_flags & MSG_CTRUNC)
		r = skv_err_set(&c->err, -EPROTO, "%s: the welcome carried more than %d fds", what, MAX_WELCOME_FDS);
	else if (n == 0)
		r = skv_err_set(&c->err, -ECONNRESET, "%s: skvd closed the connection without a welcome", what);
	else if (n != (ssize_t)sizeof(struct skv_welcome) || (mh.msg_flags & MSG_TRUNC))
		r = skv_err_set(&c->err, -EPROTO, "%s: the welcome is %s%zd bytes, expected %zu", what,
				n > (ssize_t)sizeof(struct skv_welcome) ? "more than " : "", n, sizeof(struct skv_welcome));
	else {
		struct skv_welcome w;
		memcpy(&w, buf.raw, sizeof(w));
		r = skv_welcome_check(&w, n_fds, &c->err);
		if (r == 0) {
			c->sock = SKV_TAKE_FD(fd);
			r = session_open(c, &w, fds); /* takes the fds */
			if (r < 0) {
				session_reset(c);
				return skv_err_prefix(&c->err, r, "%s: ", what);
			}
			return 0;
		}
	}
	for (size_t i = 0; i < n_fds; i++)
		close(fds[i]);
	return skv_err_prefix(&c->err, r, "%s: ", what);
}

/* What to try after connect(2) failed with e, into buf. For a permission error it names the
 * socket's actual group (the packaged one is skv, an operator may choose another). */
static const char *connect_hint(int e, const char *path, char *buf, size_t len)
{
	switch (e) {
	case ENOENT:
	case ECONNREFUSED:
		return " (is skvd running, and is this its client socket?)";
	case EACCES:
	case EPERM: {
		struct stat st;
		struct group gr, *res = NULL;
		char grbuf[4096];
		if (path[0] == '@')
			return "";
		if (stat(path, &st) < 0)
			return errno == EACCES ? " (a directory on the way to the socket is closed to this user)" : "";
		if (getgrgid_r(st.st_gid, &gr, grbuf, sizeof(grbuf), &res) == 0 && res)
			snprintf(buf, len, " (the socket belongs to group %s, mode %04o: is this user in it?)", res->gr_name,
				 (unsigned)(st.st_mode & 07777));
		else
			snprintf(buf, len, " (the socket belongs to group id %u, mode %04o: is this user in it?)",
				 (unsigned)st.st_gid, (unsigned)(st.st_mode & 07777));
		return buf;
	}
	case EPROTOTYPE:
		return " (not skvd's client socket?)";
	}
	return "";
}

SKV_EXPORT int skv_client_connect(struct skv_client *c, const char *socket_path)
{
	struct sockaddr_un sa = {.sun_family = AF_UNIX};
	socklen_t sa_len;
	const char *path = socket_path;

	skv_err_clear(&c->err);
	if (c->mem)
		return skv_err_set(&c->err, -EISCONN, "already connected to skvd");
	if (!path) {
		path = getenv(SKV_SOCKET_ENV);
		if (!path || !*path)
			path = SKV_SOCKET_DEFAULT;
	}
	size_t len = strlen(path);
	if (len == 0)
		return skv_err_set(&c->err, -EINVAL, "the socket path is empty");
	if (len >= sizeof(sa.sun_path))
		return skv_err_set(&c->err, -ENAMETOOLONG, "socket path %s is longer than %zu bytes", path,
				   sizeof(sa.sun_path) - 1);
	memcpy(sa.sun_path, path, len);
	if (path[0] == '@')
		sa.sun_path[0] = '\0'; /* abstract namespace: the length delimits the name */
	sa_len = (socklen_t)(offsetof(struct sockaddr_un, sun_path) + len + (path[0] == '@' ? 0 : 1));

	int fd = socket(AF_UNIX, SOCK_SEQPACKET | SOCK_CLOEXEC, 0);
	if (fd < 0)
		return skv_err_set(&c->err, -errno, "socket: %s", strerror(errno));
	int r;
	do
		r = connect(fd, (struct sockaddr *)&sa, sa_len);
	while (r < 0 && errno == EINTR);
	if (r < 0) {
		int e = errno;
		char hint[160];
		close(fd);
		return skv_err_set(&c->err, -e, "cannot connect to %s: %s%s", path, strerror(e),
				   connect_hint(e, path, hint, sizeof(hint)));
	}
	return skv_client_handshake(c, fd, path);
}
