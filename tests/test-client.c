/* test-client: libskv without skvd. The test plays skvd's side of the protocol with the real
 * pieces (a sealed memfd from shm/memfd.h, the shm/ring.h consumer and producer, eventfds,
 * a SOCK_SEQPACKET socketpair with SCM_RIGHTS): payload encoding, the data area's allocator
 * with wrap-around, hostile ring indices and records, and the welcome's checks.
 * End-to-end tests against the real skvd live elsewhere (tests/e2e).
 */
#include <fcntl.h>
#include <poll.h>
#include <pthread.h>
#include <stdio.h>
#include <string.h>
#include <sys/eventfd.h>
#include <sys/mman.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <unistd.h>

#include "libskv-internal.h"
#include "memfd.h"
#include "test-util.h"

/* ---- skvd's side, played by the test ---- */

struct srv {
	int sock; /* our end of the socketpair */
	int mem_fd, sub_efd, cmp_efd;
	void *mem;
	struct skv_session_layout L;
	struct skv_ring sub, cmp; /* consumer of submissions, producer of completions */
	struct skv_welcome w;
};

static void srv_layout(struct skv_session_layout *L, uint32_t sub_cap, uint32_t data_size, uint32_t cmp_cap)
{
	uint64_t off = 4096;
	memset(L, 0, sizeof(*L));
	L->sub_capacity = sub_cap;
	L->sub_idx_offset = (uint32_t)off;
	off += sizeof(struct skv_ring_shared);
	L->sub_offset = (uint32_t)off;
	off = SKV_ALIGN_UP(off + (uint64_t)sub_cap * SKV_WIRE_RECORD, 4096);
	L->data_offset = (uint32_t)off;
	L->data_size = data_size;
	off = SKV_ALIGN_UP(off + data_size, 64);
	L->cmp_capacity = cmp_cap;
	L->cmp_idx_offset = (uint32_t)off;
	off += sizeof(struct skv_ring_shared);
	L->cmp_offset = (uint32_t)off;
	off = SKV_ALIGN_UP(off + (uint64_t)cmp_cap * SKV_WIRE_RECORD, 4096);
	L->total_size = off;
}

static void srv_init(struct srv *s, uint32_t sub_cap, uint32_t data_size, uint32_t cmp_cap)
{
	struct skv_err err = {0};
	memset(s, 0, sizeof(*s));
	srv_layout(&s->L, sub_cap, data_size, cmp_cap);
	assert_int_equal(skv_memfd_new("test-session", s->L.total_size, &s->mem_fd, &err), 0);
	assert_int_equal(skv_memfd_map(s->mem_fd, s->L.total_size, true, &s->mem, &err), 0);
	struct skv_session_header *h = s->mem;
	h->magic = SKV_WIRE_MAGIC_SESSION;
	h->version = SKV_WIRE_VERSION;
	h->header_size = sizeof(*h);
	h->layout = s->L;
	uint8_t *b = s->mem;
	skv_ring_attach(&s->sub, (void *)(b + s->L.sub_idx_offset), b + s->L.sub_offset, sub_cap, SKV_WIRE_RECORD, false);
	skv_ring_attach(&s->cmp, (void *)(b + s->L.cmp_idx_offset), b + s->L.cmp_offset, cmp_cap, SKV_WIRE_RECORD, true);
	s->sub_efd = eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK);
	s->cmp_efd = eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK);
	assert_true(s->sub_efd >= 0 && s->cmp_efd >= 0);
	s->w = (struct skv_welcome){
		.magic = SKV_WIRE_MAGIC_WELCOME,
		.version = SKV_WIRE_VERSION,
		.status = SKV_WELCOME_OK,
		.layout = s->L,
		.limits = {.max_prompt_tokens = 1000, .max_new_tokens = 500, .max_context = 1024, .max_stop = 4,
			   .max_stop_bytes = 16, .max_in_flight = 8},
		.session_id = 42,
	};
	skv_strscpy(s->w.model, "tiny-test", sizeof(s->w.model));
	s->sock = -1;
}

static void srv_done(struct srv *s)
{
	if (s->mem)
		munmap(s->mem, s->L.total_size);
	int fds[] = {s->sock, s->mem_fd, s->sub_efd, s->cmp_efd};
	for (size_t i = 0; i < SKV_ARRAY_SIZE(fds); i++)
		if (fds[i] >= 0)
			close(fds[i]);
}

/* Sends a welcome-sized message (len bytes of w) with n fds. */
static void srv_send(int sock, const void *w, size_t len, const int *fds, size_t n)
{
	union {
		char b[CMSG_SPACE(8 * sizeof(int))];
		struct cmsghdr a;
	} cbuf;
	struct iovec iov = {.iov_base = (void *)w, .iov_len = len};
	struct msghdr mh = {.msg_iov = &iov, .msg_iovlen = 1};
	memset(&cbuf, 0, sizeof(cbuf));
	if (n) {
		mh.msg_control = cbuf.b;
		mh.msg_controllen = CMSG_SPACE(n * sizeof(int));
		struct cmsghdr *cm = CMSG_FIRSTHDR(&mh);
		cm->cmsg_level = SOL_SOCKET;
		cm->cmsg_type = SCM_RIGHTS;
		cm->cmsg_len = CMSG_LEN(n * sizeof(int));
		memcpy(CMSG_DATA(cm), fds, n * sizeof(int));
	}
	assert_int_equal(sendmsg(sock, &mh, MSG_NOSIGNAL), (ssize_t)len);
}

/* A socketpair whose server end already holds the given answer; runs the client's handshake. */
static int handshake_with(struct srv *s, struct skv_client **ret, const void *w, size_t len, const int *fds, size_t n)
{
	int sv[2];
	struct skv_client *c;
	assert_int_equal(socketpair(AF_UNIX, SOCK_SEQPACKET | SOCK_CLOEXEC, 0, sv), 0);
	s->sock = sv[0];
	if (w)
		srv_send(s->sock, w, len, fds, n);
	assert_int_equal(skv_client_new(&c), 0);
	skv_client_set_connect_timeout(c, 200);
	int r = skv_client_handshake(c, sv[1], "test");
	*ret = c;
	return r;
}

static struct skv_client *srv_connect(struct srv *s)
{
	struct skv_client *c;
	int fds[3] = {s->mem_fd, s->sub_efd, s->cmp_efd};
	int r = handshake_with(s, &c, &s->w, sizeof(s->w), fds, 3);
	if (r < 0)
		fail_msg("handshake: %d %s", r, skv_client_errmsg(c));
	/* the hello arrived */
	struct skv_hello h;
	assert_int_equal(recv(s->sock, &h, sizeof(h) + 1, MSG_DONTWAIT), (ssize_t)sizeof(h));
	assert_int_equal(h.magic, SKV_WIRE_MAGIC_HELLO);
	assert_int_equal(h.version_min, SKV_WIRE_VERSION);
	assert_int_equal(h.version_max, SKV_WIRE_VERSION);
	return c;
}

/* skvd's discipline: copy the record out, copy its payload out, then release the slot.
 * Returns 0 when the ring is empty, 1 with a record. */
static int srv_take(struct srv *s, struct skv_wire_submit *rec, uint8_t *payload)
{
	int n = skv_ring_avail(&s->sub);
	assert_true(n >= 0);
	if (n == 0)
		return 0;
	memcpy(rec, s->sub.records + (size_t)(s->sub.mine & (s->sub.capacity - 1)) * SKV_WIRE_RECORD, sizeof(*rec));
	assert_true((uint64_t)rec->data_offset + rec->data_len <= s->L.data_size);
	if (payload)
		memcpy(payload, (uint8_t *)s->mem + s->L.data_offset + rec->data_offset, rec->data_len);
	struct skv_wire_submit again;
	skv_ring_pop(&s->sub, &again); /* releases the slot and, with it, the payload's extent */
	return 1;
}

static void srv_push(struct srv *s, const void *rec)
{
	assert_int_equal(skv_ring_push(&s->cmp, rec), 0);
	uint64_t one = 1;
	assert_int_equal(write(s->cmp_efd, &one, sizeof(one)), 8);
}

static void srv_delta(struct srv *s, uint64_t id, const char *text, const int32_t *ids, uint16_t n_ids)
{
	struct skv_wire_delta d = {.version = SKV_WIRE_VERSION, .type = SKV_EV_DELTA, .id = id};
	d.text_len = (uint16_t)strlen(text);
	memcpy(d.text, text, d.text_len);
	d.n_ids = n_ids;
	if (n_ids)
		memcpy(d.ids, ids, n_ids * sizeof(int32_t));
	srv_push(s, &d);
}

static void srv_final(struct srv *s, uint64_t id, uint32_t finish, uint32_t error, const char *msg)
{
	struct skv_wire_final f = {.version = SKV_WIRE_VERSION, .type = SKV_EV_FINAL, .id = id, .finish = finish,
				   .error = error, .prompt_tokens = 11, .completion_tokens = 7, .queue_us = 100,
				   .ttft_us = 2000, .total_us = 9000, .retry_after_ms = error == SKV_WIRE_ERR_BUSY ? 250 : 0};
	skv_strscpy(f.message, msg, sizeof(f.message));
	srv_push(s, &f);
}

static uint64_t submit_text(struct skv_client *c, const char *text)
{
	struct skv_request req;
	uint64_t id;
	skv_request_init(&req);
	req.text = text;
	int r = skv_client_submit(c, &req, &id);
	if (r < 0)
		fail_msg("submit: %d %s", r, skv_client_errmsg(c));
	return id;
}

/* ---- payload encoding ---- */

static void test_payload_text(void **state)
{
	(void)state;
	const char *stop[] = {"\n\n", "END"};
	struct skv_request req;
	struct skv_payload p;
	struct skv_err err = {0};
	uint8_t buf[64];

	skv_request_init(&req);
	req.text = "Hello";
	req.stop = stop;
	req.n_stop = 2;
	assert_int_equal(skv_payload_plan(&req, NULL, &p, &err), 0);
	assert_int_equal(p.input, SKV_INPUT_TEXT);
	assert_int_equal(p.input_len, 5);
	assert_int_equal(p.n_stop, 2);
	assert_int_equal(p.data_len, 5 + 3 + 4);
	skv_payload_write(&req, &p, buf);
	assert_memory_equal(buf, "Hello\n\n\0END\0", 12);

	/* text_len wins over strlen: embedded bytes pass through */
	req.text = "ab\0cd";
	req.text_len = 5;
	req.n_stop = 0;
	assert_int_equal(skv_payload_plan(&req, NULL, &p, &err), 0);
	assert_int_equal(p.data_len, 5);
	skv_payload_write(&req, &p, buf);
	assert_memory_equal(buf, "ab\0cd", 5);

	size_t sz;
	assert_int_equal(skv_request_payload_size(&req, &sz), 0);
	assert_int_equal(sz, 5);
}

static void test_payload_chat(void **state)
{
	(void)state;
	struct skv_message m[] = {
		{.role = SKV_MESSAGE_SYSTEM, .content = "Be brief"}, /* 8: no padding */
		{.role = SKV_MESSAGE_USER, .content = ""},	      /* empty */
		{.role = SKV_MESSAGE_ASSISTANT, .content = "Hi!xyz", .len = 3}, /* 3 + 1 pad */
		{.role = SKV_MESSAGE_USER, .content = NULL, .len = 0},		 /* NULL with 0: empty */
	};
	const char *stop[] = {"x"};
	struct skv_request req;
	struct skv_payload p;
	struct skv_err err = {0};
	uint8_t buf[128];

	skv_request_init(&req);
	req.kind = SKV_PROMPT_CHAT;
	req.messages = m;
	req.n_messages = 4;
	req.stop = stop;
	req.n_stop = 1;
	assert_int_equal(skv_payload_plan(&req, NULL, &p, &err), 0);
	assert_int_equal(p.input, SKV_INPUT_CHAT);
	assert_int_equal(p.input_len, (8 + 8) + 8 + (8 + 4) + 8);
	assert_int_equal(p.data_len, p.input_len + 2);
	memset(buf, 0xee, sizeof(buf));
	skv_payload_write(&req, &p, buf);

	const uint8_t want[] = {
		0, 0, 0, 0, 8, 0, 0, 0, 'B', 'e', ' ', 'b', 'r', 'i', 'e', 'f',
		1, 0, 0, 0, 0, 0, 0, 0,
		2, 0, 0, 0, 3, 0, 0, 0, 'H', 'i', '!', 0,
		1, 0, 0, 0, 0, 0, 0, 0,
		'x', 0,
	};
	assert_int_equal(sizeof(want), p.data_len);
	assert_memory_equal(buf, want, sizeof(want));
	assert_int_equal(buf[p.data_len], 0xee); /* nothing written past data_len */
}

static void test_payload_ids(void **state)
{
	(void)state;
	const int32_t ids[] = {128000, 1, 0x01020304};
	struct skv_request req;
	struct skv_payload p;
	struct skv_err err = {0};
	uint8_t buf[32];

	skv_request_init(&req);
	req.kind = SKV_PROMPT_IDS;
	req.ids = ids;
	req.n_ids = 3;
	assert_int_equal(skv_payload_plan(&req, NULL, &p, &err), 0);
	assert_int_equal(p.input_len, 12);
	skv_payload_write(&req, &p, buf);
	const uint8_t want[] = {0x00, 0xf4, 0x01, 0x00, 1, 0, 0, 0, 0x04, 0x03, 0x02, 0x01};
	assert_memory_equal(buf, want, sizeof(want));
}

static void expect_plan_error(const struct skv_request *req, const struct skv_wire_limits *lim, int code, const char *words)
{
	struct skv_payload p;
	struct skv_err err = {0};
	int r = skv_payload_plan(req, lim, &p, &err);
	if (r != code || !strstr(err.msg, words))
		fail_msg("expected %d \"%s\", got %d \"%s\"", code, words, r, err.msg);
}

static void test_payload_errors(void **state)
{
	(void)state;
	const struct skv_wire_limits lim = {.max_prompt_tokens = 4, .max_new_tokens = 100, .max_context = 10,
					    .max_request_bytes = 64, .max_stop = 2, .max_stop_bytes = 4};
	const char *stops[] = {"a", "", "b"};
	const char *long_stop[] = {"abcde"};
	const int32_t ids[] = {1, 2, -3, 4, 5};
	struct skv_message bad_role[] = {{.role = (enum skv_message_role)7, .content = "x"}};
	struct skv_message null_content[] = {{.role = SKV_MESSAGE_USER, .content = NULL, .len = 3}};
	char big[100];
	struct skv_request r;

	memset(big, 'x', sizeof(big) - 1);
	big[sizeof(big) - 1] = '\0';

	skv_request_init(&r);
	expect_plan_error(&r, NULL, -EINVAL, "no text");
	r.text = "hi";
	r.stop = stops;
	r.n_stop = 2;
	expect_plan_error(&r, NULL, -EINVAL, "stop[1]: empty");
	r.n_stop = 3;
	expect_plan_error(&r, &lim, -EINVAL, "max_stop");
	r.stop = long_stop;
	r.n_stop = 1;
	expect_plan_error(&r, &lim, -EINVAL, "max_stop_bytes");
	r.n_stop = 0;
	r.text = big;
	expect_plan_error(&r, &lim, -E2BIG, "max_request_bytes");
	r.text = "hi";
	r.max_tokens = 101;
	expect_plan_error(&r, &lim, -EINVAL, "max_new_tokens");
	r.max_tokens = 0;
	r.flags = SKV_REQUEST_TEMPERATURE;
	r.temperature = 0.0f / 0.0f;
	expect_plan_error(&r, NULL, -EINVAL, "temperature");
	r.temperature = -1.0f;
	expect_plan_error(&r, NULL, -EINVAL, "temperature");
	r.flags = SKV_REQUEST_TOP_P;
	r.top_p = 0.0f;
	expect_plan_error(&r, NULL, -EINVAL, "top_p");
	r.flags = 1u << 20;
	expect_plan_error(&r, NULL, -EINVAL, "unknown bits");
	r.flags = 0;
	r.reserved[3] = 1;
	expect_plan_error(&r, NULL, -EINVAL, "reserved");
	r.reserved[3] = 0;
	r.kind = (enum skv_prompt_kind)9;
	expect_plan_error(&r, NULL, -EINVAL, "kind 9");

	r.kind = SKV_PROMPT_CHAT;
	expect_plan_error(&r, NULL, -EINVAL, "messages: none");
	r.messages = bad_role;
	r.n_messages = 1;
	expect_plan_error(&r, NULL, -EINVAL, "messages[0].role");
	r.messages = null_content;
	expect_plan_error(&r, NULL, -EINVAL, "messages[0].content");

	r.kind = SKV_PROMPT_IDS;
	expect_plan_error(&r, NULL, -EINVAL, "none given");
	r.ids = ids;
	r.n_ids = 3;
	expect_plan_error(&r, NULL, -EINVAL, "ids[2]");
	r.n_ids = 2;
	r.max_tokens = 9; /* 2 + 9 > 10 */
	expect_plan_error(&r, &lim, -E2BIG, "context of 10");
	r.ids = ids + 3;
	r.n_ids = 2;
	r.max_tokens = 0;
	struct skv_payload p;
	struct skv_err err = {0};
	assert_int_equal(skv_payload_plan(&r, &lim, &p, &err), 0);
	const int32_t five[] = {1, 2, 3, 4, 5};
	r.ids = five;
	r.n_ids = 5;
	expect_plan_error(&r, &lim, -E2BIG, "max_prompt_tokens");
}

/* ---- the handshake ---- */

static void test_handshake_ok(void **state)
{
	(void)state;
	struct srv s;
	struct skv_limits lim;
	srv_init(&s, 8, 4096, 16);
	struct skv_client *c = srv_connect(&s);

	assert_string_equal(skv_client_model(c), "tiny-test");
	assert_int_equal(skv_client_limits(c, &lim), 0);
	assert_int_equal(lim.max_in_flight, 8);
	assert_int_equal(lim.data_size, 4096);
	assert_int_equal(lim.session_id, 42);
	assert_int_equal(skv_client_in_flight(c), 0);
	assert_true(skv_client_fd(c) >= 0);
	/* connecting twice is refused */
	assert_int_equal(skv_client_connect(c, "/nonexistent"), -EISCONN);
	skv_client_free(c);
	/* skvd sees the session end */
	char b[8];
	assert_int_equal(recv(s.sock, b, sizeof(b), 0), 0);
	srv_done(&s);
}

/* Runs a handshake against a modified welcome / fd set and expects code and words. */
static void expect_handshake(struct srv *s, const struct skv_welcome *w, size_t len, const int *fds, size_t n, int code,
			     const char *words)
{
	struct skv_client *c;
	int r = handshake_with(s, &c, w, len, fds, n);
	if (r != code || !strstr(skv_client_errmsg(c), words))
		fail_msg("expected %d \"%s\", got %d \"%s\"", code, words, r, skv_client_errmsg(c));
	assert_int_equal(skv_client_fd(c), -ENOTCONN);
	assert_string_equal(skv_client_model(c), "");
	skv_client_free(c);
	close(s->sock);
	s->sock = -1;
}

static void test_handshake_bad(void **state)
{
	(void)state;
	struct srv s;
	struct skv_welcome w;
	srv_init(&s, 8, 4096, 16);
	int fds[3] = {s.mem_fd, s.sub_efd, s.cmp_efd};

	w = s.w;
	w.magic = 0x12345678;
	expect_handshake(&s, &w, sizeof(w), fds, 3, -EPROTO, "not a welcome");

	w = s.w;
	w.version = 2;
	expect_handshake(&s, &w, sizeof(w), fds, 3, -EPROTO, "protocol version 2");

	w = s.w;
	expect_handshake(&s, &w, 100, fds, 3, -EPROTO, "welcome is 100 bytes");
	expect_handshake(&s, &w, sizeof(w), fds, 2, -EPROTO, "carried 2 fds");

	/* refusals: an errno and skvd's words */
	w = s.w;
	w.status = SKV_WELCOME_DENIED;
	skv_strscpy(w.message, "permission denied: not in the allowed group", sizeof(w.message));
	expect_handshake(&s, &w, sizeof(w), NULL, 0, -EACCES, "not in the allowed group");
	w.status = SKV_WELCOME_FULL;
	expect_handshake(&s, &w, sizeof(w), NULL, 0, -EBUSY, "too many clients");
	w.status = SKV_WELCOME_SHUTDOWN;
	expect_handshake(&s, &w, sizeof(w), NULL, 0, -ESHUTDOWN, "shutting down");
	w.status = SKV_WELCOME_VERSION;
	w.version = 7; /* a refusal's version does not matter */
	expect_handshake(&s, &w, sizeof(w), NULL, 0, -EPROTONOSUPPORT, "protocol version");
	w.status = SKV_WELCOME_DENIED;
	expect_handshake(&s, &w, sizeof(w), fds, 3, -EPROTO, "refused the session (status 2) but sent 3 fds");
	/* control characters in skvd's message do not reach the terminal */
	w.status = SKV_WELCOME_DENIED;
	w.version = SKV_WIRE_VERSION;
	skv_strscpy(w.message, "no\033[2J", sizeof(w.message));
	expect_handshake(&s, &w, sizeof(w), NULL, 0, -EACCES, "no?[2J");

	w = s.w;
	memset(w.model, 'x', sizeof(w.model));
	expect_handshake(&s, &w, sizeof(w), fds, 3, -EPROTO, "not NUL-terminated");

	/* layouts */
	w = s.w;
	w.layout.total_size = s.L.total_size + 4096; /* consistent on its own, but the memfd is smaller */
	expect_handshake(&s, &w, sizeof(w), fds, 3, -EPROTO, "expected");
	w = s.w;
	w.layout.cmp_offset = (uint32_t)s.L.total_size - 100;
	expect_handshake(&s, &w, sizeof(w), fds, 3, -EPROTO, "completion records");
	w = s.w;
	w.layout.sub_capacity = 6;
	expect_handshake(&s, &w, sizeof(w), fds, 3, -EPROTO, "not a power of two");
	w = s.w;
	w.layout.data_offset = s.L.sub_offset;
	expect_handshake(&s, &w, sizeof(w), fds, 3, -EPROTO, "overlaps");
	w = s.w;
	w.layout.sub_idx_offset = 8;
	expect_handshake(&s, &w, sizeof(w), fds, 3, -EPROTO, "not 64-aligned");

	/* the segment's own header must agree with the welcome */
	struct skv_session_header *h = s.mem;
	h->layout.data_size = 2048;
	expect_handshake(&s, &s.w, sizeof(s.w), fds, 3, -EPROTO, "does not match the welcome");
	h->layout = s.L;
	h->magic = 0;
	expect_handshake(&s, &s.w, sizeof(s.w), fds, 3, -EPROTO, "does not match the welcome");
	h->magic = SKV_WIRE_MAGIC_SESSION;

	/* an unsealed memfd, a memfd of another size, a pipe for an eventfd, a blocking eventfd */
	int unsealed = memfd_create("unsealed", MFD_CLOEXEC | MFD_ALLOW_SEALING);
	assert_int_equal(ftruncate(unsealed, (off_t)s.L.total_size), 0);
	int bad[3] = {unsealed, s.sub_efd, s.cmp_efd};
	expect_handshake(&s, &s.w, sizeof(s.w), bad, 3, -EPROTO, "lacks seals");
	close(unsealed);

	int wrong_size;
	struct skv_err err = {0};
	assert_int_equal(skv_memfd_new("small", s.L.total_size - 4096, &wrong_size, &err), 0);
	bad[0] = wrong_size;
	expect_handshake(&s, &s.w, sizeof(s.w), bad, 3, -EPROTO, "expected");
	close(wrong_size);

	int p[2];
	assert_int_equal(pipe2(p, O_CLOEXEC | O_NONBLOCK), 0);
	int with_pipe[3] = {s.mem_fd, p[0], s.cmp_efd};
	expect_handshake(&s, &s.w, sizeof(s.w), with_pipe, 3, -EPROTO, "not an eventfd");
	close(p[0]);
	close(p[1]);
	int blocking = eventfd(0, EFD_CLOEXEC);
	int with_blocking[3] = {s.mem_fd, s.sub_efd, blocking};
	expect_handshake(&s, &s.w, sizeof(s.w), with_blocking, 3, -EPROTO, "not non-blocking");
	close(blocking);

	/* skvd says nothing, or hangs up */
	expect_handshake(&s, NULL, 0, NULL, 0, -ETIMEDOUT, "no welcome");
	{
		struct skv_client *c;
		int sv[2];
		assert_int_equal(socketpair(AF_UNIX, SOCK_SEQPACKET | SOCK_CLOEXEC, 0, sv), 0);
		close(sv[0]);
		assert_int_equal(skv_client_new(&c), 0);
		int r = skv_client_handshake(c, sv[1], "test");
		assert_int_equal(r, -ECONNRESET);
		skv_client_free(c);
	}

	/* after all that, the same handle-less fds still make a good session */
	struct skv_client *c = srv_connect(&s);
	skv_client_free(c);
	srv_done(&s);
}

static void test_layout_check(void **state)
{
	(void)state;
	struct skv_session_layout L;
	struct skv_err err = {0};

	srv_layout(&L, 64, 1 << 20, 1024);
	assert_int_equal(skv_layout_check(&L, &err), 0);
	L.data_size = 0;
	assert_int_equal(skv_layout_check(&L, &err), -EPROTO);
	assert_non_null(strstr(err.msg, "data area size 0"));
	srv_layout(&L, 64, 1 << 20, 1024);
	L.data_size = 4095;
	assert_int_equal(skv_layout_check(&L, &err), -EPROTO);
	srv_layout(&L, 64, 1 << 20, 1024);
	L.sub_idx_offset = 0; /* over the header */
	assert_int_equal(skv_layout_check(&L, &err), -EPROTO);
	assert_non_null(strstr(err.msg, "overlaps session header"));
	srv_layout(&L, 64, 1 << 20, 1024);
	L.cmp_capacity = 1u << 25;
	assert_int_equal(skv_layout_check(&L, &err), -EPROTO);
	srv_layout(&L, 64, 1 << 20, 1024);
	L.data_offset = UINT32_MAX - 7; /* offset + size past the segment, no overflow */
	assert_int_equal(skv_layout_check(&L, &err), -EPROTO);
	assert_non_null(strstr(err.msg, "outside"));
}

/* A server thread for the real connect path: accepts one client, answers its hello. */
struct listener {
	int fd;
	struct srv *s;
};

static void *listener_main(void *arg)
{
	struct listener *l = arg;
	int fd = accept4(l->fd, NULL, NULL, SOCK_CLOEXEC);
	struct skv_hello h;
	if (fd < 0 || recv(fd, &h, sizeof(h), 0) != sizeof(h) || h.magic != SKV_WIRE_MAGIC_HELLO)
		return (void *)1;
	int fds[3] = {l->s->mem_fd, l->s->sub_efd, l->s->cmp_efd};
	srv_send(fd, &l->s->w, sizeof(l->s->w), fds, 3);
	l->s->sock = fd;
	return NULL;
}

static void test_connect_path(void **state)
{
	(void)state;
	struct srv s;
	struct sockaddr_un sa = {.sun_family = AF_UNIX};
	char name[64];
	struct skv_client *c;
	pthread_t t;
	void *tr;

	srv_init(&s, 8, 4096, 16);
	snprintf(name, sizeof(name), "@skv-test-client-%d", (int)getpid());
	struct listener l = {.fd = socket(AF_UNIX, SOCK_SEQPACKET | SOCK_CLOEXEC, 0), .s = &s};
	memcpy(sa.sun_path + 1, name + 1, strlen(name) - 1);
	assert_int_equal(bind(l.fd, (struct sockaddr *)&sa, (socklen_t)(offsetof(struct sockaddr_un, sun_path) + strlen(name))), 0);
	assert_int_equal(listen(l.fd, 4), 0);
	assert_int_equal(pthread_create(&t, NULL, listener_main, &l), 0);

	assert_int_equal(skv_client_new(&c), 0);
	setenv(SKV_SOCKET_ENV, name, 1);
	int r = skv_client_connect(c, NULL); /* NULL: $SKV_SOCKET */
	unsetenv(SKV_SOCKET_ENV);
	if (r < 0)
		fail_msg("connect: %s", skv_client_errmsg(c));
	pthread_join(t, &tr);
	assert_null(tr);
	assert_string_equal(skv_client_model(c), "tiny-test");
	skv_client_free(c);
	close(l.fd);

	/* nobody there: a message that names the path and the cause */
	assert_int_equal(skv_client_new(&c), 0);
	r = skv_client_connect(c, "/nonexistent/skvd.sock");
	assert_int_equal(r, -ENOENT);
	assert_non_null(strstr(skv_client_errmsg(c), "/nonexistent/skvd.sock"));
	assert_non_null(strstr(skv_client_errmsg(c), "is skvd running"));
	skv_client_free(c);
	srv_done(&s);
}

/* ---- the data area ---- */

static void fill(uint8_t *p, size_t n, uint64_t id)
{
	for (size_t i = 0; i < n; i++)
		p[i] = (uint8_t)(id * 131 + i * 7 + 1);
}

static uint64_t submit_pattern(struct skv_client *c, size_t n, int *ret)
{
	static char buf[8192];
	struct skv_request req;
	uint64_t id = c->next_id; /* the id it will get */
	skv_request_init(&req);
	fill((uint8_t *)buf, n, id);
	for (size_t i = 0; i < n; i++)
		if (!buf[i])
			buf[i] = 'z'; /* text_len is given: not needed, but keep it printable-ish */
	req.text = buf;
	req.text_len = n;
	uint64_t got = 0;
	*ret = skv_client_submit(c, &req, &got);
	if (*ret == 0)
		assert_int_equal(got, id);
	return id;
}

static void check_pattern(const struct skv_wire_submit *rec, const uint8_t *payload)
{
	uint8_t want[8192];
	fill(want, rec->data_len, rec->id);
	for (size_t i = 0; i < rec->data_len; i++)
		if (!want[i])
			want[i] = 'z';
	assert_int_equal(rec->input_len, rec->data_len);
	assert_memory_equal(payload, want, rec->data_len);
	assert_int_equal(rec->data_offset % SKV_PAYLOAD_ALIGN, 0);
}

static void test_data_wraparound(void **state)
{
	(void)state;
	struct srv s;
	struct skv_wire_submit rec;
	static uint8_t payload[8192];
	int r;

	srv_init(&s, 8, 4096, 64);
	s.w.limits.max_in_flight = 0; /* unstated: the ring and the area are the only bounds */
	s.w.limits.max_request_bytes = 0;
	struct skv_client *c = srv_connect(&s);

	/* 1500 + 1500 fit; a third would need the tail, then wrap: skvd holds it all */
	submit_pattern(c, 1500, &r);
	assert_int_equal(r, 0);
	submit_pattern(c, 1500, &r);
	assert_int_equal(r, 0);
	submit_pattern(c, 1500, &r);
	assert_int_equal(r, -EAGAIN);
	assert_non_null(strstr(skv_client_errmsg(c), "data area is full"));
	/* skvd consumes the first: the third wraps to offset 0 */
	assert_int_equal(srv_take(&s, &rec, payload), 1);
	assert_int_equal(rec.data_offset, 0);
	check_pattern(&rec, payload);
	submit_pattern(c, 1500, &r);
	assert_int_equal(r, 0);
	assert_int_equal(srv_take(&s, &rec, payload), 1);
	assert_int_equal(rec.data_offset, 1504);
	check_pattern(&rec, payload);
	assert_int_equal(srv_take(&s, &rec, payload), 1);
	assert_int_equal(rec.data_offset, 0); /* wrapped */
	check_pattern(&rec, payload);
	assert_int_equal(srv_take(&s, &rec, payload), 0);

	/* an empty area starts over at 0: the whole area fits in one request */
	submit_pattern(c, 4096, &r);
	assert_int_equal(r, 0);
	assert_int_equal(srv_take(&s, &rec, payload), 1);
	assert_int_equal(rec.data_offset, 0);
	check_pattern(&rec, payload);
	/* more than the area never fits */
	submit_pattern(c, 4097, &r);
	assert_int_equal(r, -E2BIG);
	assert_non_null(strstr(skv_client_errmsg(c), "data area of 4096 bytes"));

	/* random sizes against a lagging consumer: no payload is ever overwritten before skvd
	 * copied it out (check_pattern), and the ring and the area both fill up */
	uint32_t seed = 12345, n_again = 0, n_sent = 0, n_taken = 0, n_cancel = 0;
	for (int i = 0; i < 20000; i++) {
		seed = seed * 1103515245u + 12345u;
		uint32_t x = seed >> 8;
		if (x % 3 == 0) {
			if (srv_take(&s, &rec, payload)) {
				if (rec.type == SKV_SUB_REQUEST) {
					check_pattern(&rec, payload);
					n_taken++;
				}
			}
			continue;
		}
		if (x % 17 == 1 && skv_client_in_flight(c)) {
			/* a cancel takes a slot but no data */
			r = skv_client_cancel(c, c->reqs[0].id);
			assert_true(r == 0 || r == -EAGAIN);
			if (r == 0) {
				srv_final(&s, c->reqs[0].id, SKV_WIRE_FINISH_CANCELLED, 0, "");
				struct skv_event ev;
				assert_int_equal(skv_client_next(c, &ev, 0), 0);
				n_cancel++;
			}
			continue;
		}
		submit_pattern(c, 1 + (x >> 4) % 2500, &r);
		assert_true(r == 0 || r == -EAGAIN);
		n_sent += r == 0;
		n_again += r == -EAGAIN;
	}
	while (srv_take(&s, &rec, payload))
		if (rec.type == SKV_SUB_REQUEST) {
			check_pattern(&rec, payload);
			n_taken++;
		}
	assert_int_equal(n_sent, n_taken); /* every request seen once, intact */
	assert_true(n_again > 100 && n_cancel > 10);
	skv_client_free(c);
	srv_done(&s);
}

static void test_ring_full_and_in_flight(void **state)
{
	(void)state;
	struct srv s;
	struct skv_wire_submit rec;
	struct skv_event ev;
	uint64_t id;
	struct skv_request req;

	srv_init(&s, 4, 4096, 16);
	s.w.limits.max_in_flight = 6;
	struct skv_client *c = srv_connect(&s);
	skv_request_init(&req);
	req.text = "x";
	for (int i = 0; i < 4; i++)
		assert_int_equal(skv_client_submit(c, &req, &id), 0);
	assert_int_equal(skv_client_submit(c, &req, &id), -EAGAIN);
	assert_non_null(strstr(skv_client_errmsg(c), "submission ring is full"));
	/* the doorbell rang for skvd, every time */
	uint64_t v;
	assert_int_equal(read(s.sub_efd, &v, 8), 8);
	assert_true(v >= 5);
	assert_int_equal(srv_take(&s, &rec, NULL), 1);
	assert_int_equal(rec.id, 1);
	assert_int_equal(skv_client_submit(c, &req, &id), 0);
	assert_int_equal(id, 5);
	assert_int_equal(srv_take(&s, &rec, NULL), 1);
	assert_int_equal(skv_client_submit(c, &req, &id), 0);
	assert_int_equal(skv_client_in_flight(c), 6);
	assert_int_equal(srv_take(&s, &rec, NULL), 1);
	/* room in the ring, but max_in_flight reached */
	assert_int_equal(skv_client_submit(c, &req, &id), -EBUSY);
	assert_non_null(strstr(skv_client_errmsg(c), "max_in_flight"));
	srv_final(&s, 3, SKV_WIRE_FINISH_STOP, 0, "");
	assert_int_equal(skv_client_next(c, &ev, 0), 0);
	assert_int_equal(ev.id, 3);
	assert_int_equal(skv_client_submit(c, &req, &id), 0);
	assert_int_equal(id, 7);
	skv_client_free(c);
	srv_done(&s);
}

/* skvd gone while the ring is full: no endless -EAGAIN; what it wrote is still delivered */
static void test_gone_while_full(void **state)
{
	(void)state;
	struct srv s;
	struct skv_event ev;
	struct skv_request req;
	uint64_t id;

	srv_init(&s, 2, 4096, 16);
	struct skv_client *c = srv_connect(&s);
	skv_request_init(&req);
	req.text = "x";
	assert_int_equal(skv_client_submit(c, &req, &id), 0);
	assert_int_equal(skv_client_submit(c, &req, &id), 0);
	assert_int_equal(skv_client_submit(c, &req, &id), -EAGAIN);
	srv_final(&s, 1, SKV_WIRE_FINISH_STOP, 0, "");
	close(s.sock);
	s.sock = -1;
	assert_int_equal(skv_client_submit(c, &req, &id), -ECONNRESET);
	assert_non_null(strstr(skv_client_errmsg(c), "skvd closed the session"));
	assert_int_equal(skv_client_cancel(c, 2), -ECONNRESET);
	assert_int_equal(skv_client_next(c, &ev, -1), 0);
	assert_int_equal(ev.id, 1);
	assert_int_equal(skv_client_next(c, &ev, -1), -ECONNRESET);
	skv_client_free(c);
	srv_done(&s);
}

static void test_submit_record(void **state)
{
	(void)state;
	struct srv s;
	struct skv_wire_submit rec;
	uint8_t payload[64];
	struct skv_request req;
	const char *stop[] = {"##"};
	uint64_t id;

	srv_init(&s, 8, 4096, 16);
	struct skv_client *c = srv_connect(&s);
	skv_request_init(&req);
	req.text = "Once upon";
	req.flags = SKV_REQUEST_TEMPERATURE | SKV_REQUEST_SEED | SKV_REQUEST_STREAM_IDS;
	req.temperature = 0.5f;
	req.top_p = 0.3f; /* not flagged: not sent */
	req.seed = 0x1122334455667788ull;
	req.max_tokens = 77;
	req.timeout_ms = 1234;
	req.stop = stop;
	req.n_stop = 1;
	assert_int_equal(skv_client_submit(c, &req, &id), 0);
	assert_int_equal(srv_take(&s, &rec, payload), 1);
	assert_int_equal(rec.version, SKV_WIRE_VERSION);
	assert_int_equal(rec.type, SKV_SUB_REQUEST);
	assert_int_equal(rec.flags, SKV_REQ_TEMPERATURE | SKV_REQ_SEED | SKV_REQ_STREAM_IDS);
	assert_int_equal(rec.id, id);
	assert_int_equal(rec.input, SKV_INPUT_TEXT);
	assert_int_equal(rec.max_tokens, 77);
	assert_true(rec.temperature == 0.5f);
	assert_true(rec.top_p == 0.0f);
	assert_int_equal(rec.seed, 0x1122334455667788ull);
	assert_int_equal(rec.timeout_ms, 1234);
	assert_int_equal(rec.input_len, 9);
	assert_int_equal(rec.data_len, 12);
	assert_int_equal(rec.n_stop, 1);
	assert_memory_equal(payload, "Once upon##\0", 12);
	uint8_t zero[sizeof(rec.reserved)] = {0};
	assert_memory_equal(rec.reserved, zero, sizeof(zero));

	/* cancel: a record with the id, once */
	assert_int_equal(skv_client_cancel(c, 999), -ENOENT);
	assert_int_equal(skv_client_cancel(c, id), 0);
	assert_int_equal(skv_client_cancel(c, id), 0);
	assert_int_equal(srv_take(&s, &rec, NULL), 1);
	assert_int_equal(rec.type, SKV_SUB_CANCEL);
	assert_int_equal(rec.id, id);
	assert_int_equal(rec.data_len, 0);
	assert_int_equal(srv_take(&s, &rec, NULL), 0);

	/* limits from the welcome are enforced before anything is written */
	req.max_tokens = 501;
	assert_int_equal(skv_client_submit(c, &req, &id), -EINVAL);
	assert_non_null(strstr(skv_client_errmsg(c), "max_tokens: 501"));
	assert_int_equal(srv_take(&s, &rec, NULL), 0);
	skv_client_free(c);
	srv_done(&s);
}

static void test_hostile_sub_head(void **state)
{
	(void)state;
	for (int k = 0; k < 3; k++) {
		struct srv s;
		srv_init(&s, 8, 4096, 16);
		struct skv_client *c = srv_connect(&s);
		submit_text(c, "a");
		submit_text(c, "b");
		uint32_t bad[] = {3 /* past our tail */, UINT32_MAX /* behind where it started */, 1000};
		atomic_store(&s.sub.sh->head, bad[k]);
		struct skv_request req;
		uint64_t id;
		skv_request_init(&req);
		req.text = "c";
		assert_int_equal(skv_client_submit(c, &req, &id), -EPROTO);
		assert_non_null(strstr(skv_client_errmsg(c), "submission ring head"));
		/* sticky, and the session is closed */
		assert_int_equal(skv_client_submit(c, &req, &id), -EPROTO);
		struct skv_event ev;
		assert_int_equal(skv_client_next(c, &ev, 0), -EPROTO);
		char b[4];
		assert_int_equal(recv(s.sock, b, sizeof(b), 0), 0);
		skv_client_free(c);
		srv_done(&s);
	}
	/* a head that moves back (but stays within the capacity) is caught too */
	struct srv s;
	srv_init(&s, 8, 4096, 16);
	struct skv_client *c = srv_connect(&s);
	struct skv_wire_submit rec;
	submit_text(c, "a");
	submit_text(c, "b");
	assert_int_equal(srv_take(&s, &rec, NULL), 1);
	assert_int_equal(srv_take(&s, &rec, NULL), 1);
	submit_text(c, "c");
	atomic_store(&s.sub.sh->head, 1);
	struct skv_request req;
	uint64_t id;
	skv_request_init(&req);
	req.text = "d";
	assert_int_equal(skv_client_submit(c, &req, &id), -EPROTO);
	assert_non_null(strstr(skv_client_errmsg(c), "moved from 2 to 1"));
	skv_client_free(c);
	srv_done(&s);
}

/* ---- events ---- */

static void test_events(void **state)
{
	(void)state;
	struct srv s;
	struct skv_event ev;
	struct skv_request req;
	uint64_t a, b;
	int tag_a, tag_b;
	const int32_t ids[] = {9, 8, 7};

	srv_init(&s, 8, 4096, 16);
	struct skv_client *c = srv_connect(&s);
	skv_request_init(&req);
	req.text = "a";
	req.flags = SKV_REQUEST_STREAM_IDS;
	req.user_data = &tag_a;
	assert_int_equal(skv_client_submit(c, &req, &a), 0);
	req.flags = 0;
	req.user_data = &tag_b;
	assert_int_equal(skv_client_submit(c, &req, &b), 0);

	/* nothing yet: -EAGAIN at once, -ETIMEDOUT after a wait, and the fd is quiet */
	struct pollfd p = {.fd = skv_client_fd(c), .events = POLLIN};
	assert_int_equal(poll(&p, 1, 0), 0);
	assert_int_equal(skv_client_next(c, &ev, 0), -EAGAIN);
	assert_int_equal(skv_client_next(c, &ev, 20), -ETIMEDOUT);

	srv_delta(&s, a, "Hel", ids, 3);
	srv_delta(&s, b, "Other", NULL, 0);
	srv_delta(&s, a, "lo", NULL, 0);
	srv_final(&s, a, SKV_WIRE_FINISH_STOP, SKV_WIRE_ERR_NONE, "");
	srv_final(&s, b, SKV_WIRE_FINISH_ERROR, SKV_WIRE_ERR_BUSY, "queue full\n(8 waiting)");
	assert_int_equal(poll(&p, 1, 0), 1);

	assert_int_equal(skv_client_next(c, &ev, -1), 0);
	assert_int_equal(ev.type, SKV_EVENT_DELTA);
	assert_int_equal(ev.id, a);
	assert_ptr_equal(ev.user_data, &tag_a);
	assert_int_equal(ev.text_len, 3);
	assert_string_equal(ev.text, "Hel");
	assert_int_equal(ev.n_ids, 3);
	assert_int_equal(ev.ids[2], 7);
	assert_int_equal(skv_client_next(c, &ev, -1), 0);
	assert_int_equal(ev.id, b);
	assert_ptr_equal(ev.user_data, &tag_b);
	assert_string_equal(ev.text, "Other");
	assert_int_equal(skv_client_next(c, &ev, -1), 0);
	assert_string_equal(ev.text, "lo");
	assert_int_equal(skv_client_next(c, &ev, -1), 0);
	assert_int_equal(ev.type, SKV_EVENT_FINAL);
	assert_int_equal(ev.id, a);
	assert_int_equal(ev.finish, SKV_FINISH_REASON_STOP);
	assert_int_equal(ev.error, SKV_ERROR_CODE_NONE);
	assert_string_equal(ev.message, "");
	assert_int_equal(ev.prompt_tokens, 11);
	assert_int_equal(ev.completion_tokens, 7);
	assert_int_equal(ev.ttft_us, 2000);
	assert_int_equal(skv_client_in_flight(c), 1);
	assert_int_equal(skv_client_next(c, &ev, -1), 0);
	assert_int_equal(ev.finish, SKV_FINISH_REASON_ERROR);
	assert_int_equal(ev.error, SKV_ERROR_CODE_BUSY);
	assert_int_equal(ev.retry_after_ms, 250);
	assert_string_equal(ev.message, "queue full?(8 waiting)");
	assert_string_equal(skv_error_name(ev.error), "busy");
	assert_string_equal(skv_finish_name(ev.finish), "error");
	assert_int_equal(skv_client_in_flight(c), 0);

	/* drained: the doorbell was read, the fd is quiet again */
	assert_int_equal(skv_client_next(c, &ev, 0), -EAGAIN);
	assert_int_equal(poll(&p, 1, 0), 0);

	/* skvd leaves: what it wrote first is still delivered, then -ECONNRESET, sticky */
	uint64_t d = submit_text(c, "d");
	srv_final(&s, d, SKV_WIRE_FINISH_CANCELLED, 0, "");
	close(s.sock);
	s.sock = -1;
	assert_int_equal(poll(&p, 1, 0), 1);
	assert_int_equal(skv_client_next(c, &ev, -1), 0);
	assert_int_equal(ev.finish, SKV_FINISH_REASON_CANCELLED);
	assert_int_equal(skv_client_next(c, &ev, -1), -ECONNRESET);
	assert_non_null(strstr(skv_client_errmsg(c), "skvd closed the session"));
	assert_int_equal(skv_client_next(c, &ev, 0), -ECONNRESET);
	assert_int_equal(skv_client_submit(c, &req, &a), -ECONNRESET);
	skv_client_free(c);
	srv_done(&s);
}

enum hostile { H_TYPE, H_VERSION, H_TEXT_LEN, H_N_IDS, H_IDS_UNASKED, H_UNKNOWN_ID, H_FINISH, H_ERROR_PAIR,
	       H_UNTERMINATED, H_TAIL_FAR, H_TAIL_BACK, H_AFTER_FINAL, H_SOCKET_DATA, H_COUNT };

static void test_hostile_events(void **state)
{
	(void)state;
	static const char *words[H_COUNT] = {
		"unknown type 9", "version 3", "text_len 185", "n_ids 9", "did not ask", "which is not in flight",
		"finish reason 7", "finish reason stop with error 3", "not NUL-terminated", "tail", "tail",
		"which is not in flight", "bytes on the socket",
	};
	for (int h = 0; h < H_COUNT; h++) {
		struct srv s;
		struct skv_event ev;
		srv_init(&s, 8, 4096, 16);
		struct skv_client *c = srv_connect(&s);
		uint64_t id = submit_text(c, "x");
		union {
			struct skv_wire_delta d;
			struct skv_wire_final f;
		} r;
		memset(&r, 0, sizeof(r));
		r.d.version = SKV_WIRE_VERSION;
		r.d.type = SKV_EV_DELTA;
		r.d.id = id;
		switch (h) {
		case H_TYPE:
			r.d.type = 9;
			break;
		case H_VERSION:
			r.d.version = 3;
			break;
		case H_TEXT_LEN:
			r.d.text_len = SKV_WIRE_DELTA_TEXT + 1;
			break;
		case H_N_IDS:
			r.d.n_ids = SKV_WIRE_DELTA_IDS + 1;
			break;
		case H_IDS_UNASKED:
			r.d.n_ids = 1;
			break;
		case H_UNKNOWN_ID:
			r.d.id = id + 1;
			break;
		case H_FINISH:
			r.f.type = SKV_EV_FINAL;
			r.f.finish = 7;
			break;
		case H_ERROR_PAIR:
			r.f.type = SKV_EV_FINAL;
			r.f.finish = SKV_WIRE_FINISH_STOP;
			r.f.error = SKV_WIRE_ERR_BUSY;
			break;
		case H_UNTERMINATED:
			r.f.type = SKV_EV_FINAL;
			r.f.finish = SKV_WIRE_FINISH_ERROR;
			r.f.error = SKV_WIRE_ERR_INTERNAL;
			memset(r.f.message, 'm', sizeof(r.f.message));
			break;
		case H_AFTER_FINAL:
			srv_final(&s, id, SKV_WIRE_FINISH_STOP, 0, "");
			assert_int_equal(skv_client_next(c, &ev, 0), 0);
			break; /* then a delta for the finished id */
		}
		if (h == H_TAIL_FAR) {
			atomic_store(&s.cmp.sh->tail, 17); /* head 0, capacity 16 */
		} else if (h == H_TAIL_BACK) {
			atomic_store(&s.cmp.sh->tail, UINT32_MAX);
		} else if (h == H_SOCKET_DATA) {
			assert_int_equal(send(s.sock, "hi", 2, 0), 2);
		} else {
			srv_push(&s, &r);
		}
		int ret = skv_client_next(c, &ev, 100);
		if (ret != -EPROTO || !strstr(skv_client_errmsg(c), words[h]))
			fail_msg("case %d: expected -EPROTO \"%s\", got %d \"%s\"", h, words[h], ret, skv_client_errmsg(c));
		/* sticky; the session is closed: skvd sees EOF */
		assert_int_equal(skv_client_next(c, &ev, 0), -EPROTO);
		assert_non_null(strstr(skv_client_errmsg(c), words[h]));
		struct skv_request req;
		uint64_t id2;
		skv_request_init(&req);
		req.text = "y";
		assert_int_equal(skv_client_submit(c, &req, &id2), -EPROTO);
		char b[4];
		ssize_t n;
		while ((n = recv(s.sock, b, sizeof(b), MSG_DONTWAIT)) > 0)
			;
		assert_int_equal(n, 0);
		skv_client_free(c);
		srv_done(&s);
	}
}

/* ---- generate ---- */

struct collect {
	char text[256];
	int n, stop_after;
};

static int on_delta(struct skv_client *c, const struct skv_event *ev, void *userdata)
{
	struct collect *k = userdata;
	(void)c;
	strncat(k->text, ev->text, sizeof(k->text) - strlen(k->text) - 1);
	return ++k->n == k->stop_after ? -ECANCELED : 0;
}

static void test_generate(void **state)
{
	(void)state;
	struct srv s;
	struct skv_event fin;
	struct skv_request req;
	struct skv_wire_submit rec;
	struct collect k = {0};

	srv_init(&s, 8, 4096, 16);
	struct skv_client *c = srv_connect(&s);
	skv_request_init(&req);
	req.text = "q";
	/* ids are assigned from 1 in a fresh session: skvd's answer can be written ahead */
	srv_delta(&s, 1, "one ", NULL, 0);
	srv_delta(&s, 1, "two", NULL, 0);
	srv_final(&s, 1, SKV_WIRE_FINISH_LENGTH, 0, "");
	assert_int_equal(skv_client_generate(c, &req, on_delta, &k, &fin), 0);
	assert_string_equal(k.text, "one two");
	assert_int_equal(fin.finish, SKV_FINISH_REASON_LENGTH);
	assert_int_equal(fin.id, 1);
	assert_int_equal(srv_take(&s, &rec, NULL), 1);

	/* the callback stops it: a cancel goes out, later deltas are not delivered */
	memset(&k, 0, sizeof(k));
	k.stop_after = 1;
	srv_delta(&s, 2, "a", NULL, 0);
	srv_delta(&s, 2, "b", NULL, 0);
	srv_final(&s, 2, SKV_WIRE_FINISH_CANCELLED, 0, "");
	assert_int_equal(skv_client_generate(c, &req, on_delta, &k, &fin), -ECANCELED);
	assert_string_equal(k.text, "a");
	assert_int_equal(fin.finish, SKV_FINISH_REASON_CANCELLED);
	assert_int_equal(srv_take(&s, &rec, NULL), 1);
	assert_int_equal(rec.type, SKV_SUB_REQUEST);
	assert_int_equal(srv_take(&s, &rec, NULL), 1);
	assert_int_equal(rec.type, SKV_SUB_CANCEL);
	assert_int_equal(rec.id, 2);

	/* not with another request in flight */
	submit_text(c, "other");
	assert_int_equal(skv_client_generate(c, &req, NULL, NULL, NULL), -EBUSY);
	skv_client_free(c);
	srv_done(&s);
}

/* COUNT_ONLY and PROGRESS only go to a skvd whose welcome offers them; PROGRESS records reach
 * only requests that asked, generate skips them, and one past the prompt is a protocol error. */
static void test_optional_features(void **state)
{
	(void)state;
	struct srv s;
	struct skv_request req;
	struct skv_wire_submit rec;
	struct skv_event ev;
	uint64_t id;

	srv_init(&s, 8, 4096, 16); /* features 0: an older skvd */
	struct skv_client *c = srv_connect(&s);
	skv_request_init(&req);
	req.text = "q";
	req.flags = SKV_REQUEST_COUNT_ONLY;
	assert_int_equal(skv_client_submit(c, &req, &id), -EOPNOTSUPP);
	assert_non_null(strstr(skv_client_errmsg(c), "SKV_REQUEST_COUNT_ONLY"));
	req.flags = SKV_REQUEST_PROGRESS;
	assert_int_equal(skv_client_submit(c, &req, &id), -EOPNOTSUPP);
	struct skv_summary sum;
	assert_int_equal(skv_summarize(c, "Some text.", 10, NULL, &sum), -EOPNOTSUPP);
	assert_int_equal(srv_take(&s, &rec, NULL), 0); /* nothing was sent */
	skv_client_free(c);
	srv_done(&s);

	srv_init(&s, 8, 4096, 16);
	s.w.limits.features = SKV_WIRE_FEATURE_COUNT_ONLY | SKV_WIRE_FEATURE_PROGRESS;
	c = srv_connect(&s);
	req.flags = SKV_REQUEST_COUNT_ONLY | SKV_REQUEST_PROGRESS;
	assert_int_equal(skv_client_submit(c, &req, &id), 0);
	assert_int_equal(srv_take(&s, &rec, NULL), 1);
	assert_int_equal(rec.flags, SKV_REQ_COUNT_ONLY | SKV_REQ_PROGRESS);
	struct skv_wire_progress p = {.version = SKV_WIRE_VERSION, .type = SKV_EV_PROGRESS, .id = id, .prompt_done = 256,
				      .prompt_tokens = 700};
	srv_push(&s, &p);
	assert_int_equal(skv_client_next(c, &ev, 1000), 0);
	assert_int_equal(ev.type, SKV_EVENT_PROGRESS);
	assert_int_equal(ev.prompt_done, 256);
	assert_int_equal(ev.prompt_tokens, 700);
	srv_final(&s, id, SKV_WIRE_FINISH_STOP, 0, "");
	assert_int_equal(skv_client_next(c, &ev, 1000), 0);
	assert_int_equal(ev.type, SKV_EVENT_FINAL);
	/* generate skips progress */
	req.flags = SKV_REQUEST_PROGRESS;
	srv_push(&s, &(struct skv_wire_progress){.version = SKV_WIRE_VERSION, .type = SKV_EV_PROGRESS, .id = 2,
						  .prompt_done = 1, .prompt_tokens = 9});
	srv_delta(&s, 2, "x", NULL, 0);
	srv_final(&s, 2, SKV_WIRE_FINISH_LENGTH, 0, "");
	struct collect k = {0};
	assert_int_equal(skv_client_generate(c, &req, on_delta, &k, &ev), 0);
	assert_string_equal(k.text, "x");
	assert_int_equal(ev.type, SKV_EVENT_FINAL);
	/* progress for a request that did not ask: the session is broken */
	id = submit_text(c, "plain");
	p.id = id;
	srv_push(&s, &p);
	assert_int_equal(skv_client_next(c, &ev, 1000), -EPROTO);
	assert_non_null(strstr(skv_client_errmsg(c), "did not ask"));
	skv_client_free(c);
	srv_done(&s);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_payload_text),
		cmocka_unit_test(test_payload_chat),
		cmocka_unit_test(test_payload_ids),
		cmocka_unit_test(test_payload_errors),
		cmocka_unit_test(test_handshake_ok),
		cmocka_unit_test(test_handshake_bad),
		cmocka_unit_test(test_layout_check),
		cmocka_unit_test(test_connect_path),
		cmocka_unit_test(test_data_wraparound),
		cmocka_unit_test(test_ring_full_and_in_flight),
		cmocka_unit_test(test_gone_while_full),
		cmocka_unit_test(test_submit_record),
		cmocka_unit_test(test_hostile_sub_head),
		cmocka_unit_test(test_events),
		cmocka_unit_test(test_hostile_events),
		cmocka_unit_test(test_generate),
		cmocka_unit_test(test_optional_features),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
