/* fuzz-client-events: libskv's consumer side fed by a hostile skvd. The input is a program of
 * operations played against a real session (sealed memfd, shm/ring.h rings, eventfds, a
 * SOCK_SEQPACKET socketpair): raw completion records, arbitrary completion tail and
 * submission head values, submissions, cancels, skvd consuming, skvd hanging up. A first byte
 * with its low two bits set selects the other mode: the welcome and the segment's header are
 * taken from the input instead.
 *
 * Invariants checked after every call: only documented return values; events are well-formed
 * (lengths within the record, NUL-terminated strings, known finish reasons, ids that were in
 * flight); the in-flight count matches what was submitted and finished; a protocol error is
 * sticky. Sanitizers catch any access outside the mapping or the copies.
 */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <sys/eventfd.h>
#include <sys/mman.h>
#include <sys/socket.h>
#include <unistd.h>

#include "libskv-internal.h"
#include "memfd.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

#define SUB_CAP 8u
#define CMP_CAP 16u
#define DATA_SIZE 4096u

struct srv {
	bool ready;
	int mem_fd, sub_efd, cmp_efd;
	uint8_t *mem;
	struct skv_session_layout L;
	struct skv_welcome w;
};
static struct srv S; /* made once: every input starts from zeroed indices */

static void srv_setup(void)
{
	struct skv_err err = {0};
	struct skv_session_layout *L = &S.L;
	L->sub_capacity = SUB_CAP;
	L->sub_idx_offset = 4096;
	L->sub_offset = 4096 + 128;
	L->data_offset = 8192;
	L->data_size = DATA_SIZE;
	L->cmp_capacity = CMP_CAP;
	L->cmp_idx_offset = 8192 + DATA_SIZE;
	L->cmp_offset = L->cmp_idx_offset + 128;
	L->total_size = SKV_ALIGN_UP(L->cmp_offset + CMP_CAP * SKV_WIRE_RECORD, 4096);
	if (skv_memfd_new("fuzz-session", L->total_size, &S.mem_fd, &err) < 0 ||
	    skv_memfd_map(S.mem_fd, L->total_size, true, (void **)&S.mem, &err) < 0)
		abort();
	S.sub_efd = eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK);
	S.cmp_efd = eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK);
	if (S.sub_efd < 0 || S.cmp_efd < 0)
		abort();
	S.w = (struct skv_welcome){
		.magic = SKV_WIRE_MAGIC_WELCOME,
		.version = SKV_WIRE_VERSION,
		.status = SKV_WELCOME_OK,
		.layout = *L,
		.limits = {.max_prompt_tokens = 64, .max_new_tokens = 64, .max_context = 128, .max_request_bytes = 3000,
			   .max_stop = 2, .max_stop_bytes = 8, .max_in_flight = 6,
			   .features = SKV_WIRE_FEATURE_COUNT_ONLY | SKV_WIRE_FEATURE_PROGRESS},
		.session_id = 1,
	};
	memcpy(S.w.model, "fuzz", 5);
	S.ready = true;
}

static void srv_reset_segment(void)
{
	memset(S.mem, 0, S.L.total_size);
	struct skv_session_header h = {.magic = SKV_WIRE_MAGIC_SESSION, .version = SKV_WIRE_VERSION,
				       .header_size = sizeof(h), .layout = S.L};
	memcpy(S.mem, &h, sizeof(h));
	uint64_t v;
	while (read(S.cmp_efd, &v, 8) > 0 || read(S.sub_efd, &v, 8) > 0)
		;
}

static void send_welcome(int sock, const struct skv_welcome *w, const int *fds, size_t n)
{
	union {
		char b[CMSG_SPACE(3 * sizeof(int))];
		struct cmsghdr a;
	} cbuf;
	struct iovec iov = {.iov_base = (void *)w, .iov_len = sizeof(*w)};
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
	if (sendmsg(sock, &mh, MSG_NOSIGNAL) != (ssize_t)sizeof(*w))
		abort();
}

/* The input, read from the front; zeros once it runs out. */
struct input {
	const uint8_t *p;
	size_t n;
};

static uint8_t in_u8(struct input *in)
{
	if (!in->n)
		return 0;
	in->n--;
	return *in->p++;
}

static uint32_t in_u32(struct input *in)
{
	uint32_t v = 0;
	for (int i = 0; i < 4; i++)
		v |= (uint32_t)in_u8(in) << (8 * i);
	return v;
}

static void in_bytes(struct input *in, void *dst, size_t n)
{
	size_t k = SKV_MIN(n, in->n);
	memcpy(dst, in->p, k);
	memset((uint8_t *)dst + k, 0, n - k);
	in->p += k;
	in->n -= k;
}

/* ---- mode 1: a hostile welcome and segment header ---- */

static void fuzz_handshake(struct input *in)
{
	struct skv_welcome w = S.w;
	struct skv_session_header h = {.magic = SKV_WIRE_MAGIC_SESSION, .version = SKV_WIRE_VERSION,
				       .header_size = sizeof(h), .layout = S.L};
	uint8_t how = in_u8(in);
	if (how & 1) {
		in_bytes(in, &w, sizeof(w)); /* all of it */
	} else {
		/* one field of the good welcome's layout or limits replaced */
		uint32_t field = in_u8(in) % 12, v = in_u32(in);
		memcpy((uint8_t *)&w.layout + field * 4, &v, 4);
	}
	if (how & 2)
		in_bytes(in, &h, sizeof(h));
	srv_reset_segment();
	memcpy(S.mem, &h, sizeof(h));

	int sv[2];
	if (socketpair(AF_UNIX, SOCK_SEQPACKET | SOCK_CLOEXEC, 0, sv) < 0)
		abort();
	int unsealed = -1;
	int fds[3] = {S.mem_fd, S.sub_efd, S.cmp_efd};
	if (how & 4) {
		unsealed = memfd_create("fuzz-unsealed", MFD_CLOEXEC);
		if (unsealed < 0 || ftruncate(unsealed, (off_t)S.L.total_size) < 0)
			abort();
		fds[0] = unsealed;
	}
	send_welcome(sv[0], &w, fds, (how >> 3) % 4);
	if (unsealed >= 0)
		close(unsealed);

	struct skv_client *c;
	if (skv_client_new(&c) < 0)
		abort();
	skv_client_set_connect_timeout(c, 1);
	int r = skv_client_handshake(c, sv[1], "fuzz");
	if (r < 0) {
		if (!skv_client_errmsg(c)[0] || skv_client_fd(c) != -ENOTCONN)
			abort();
	} else {
		struct skv_err err = {0};
		struct skv_limits lim;
		if (skv_layout_check(&c->layout, &err) < 0 || c->layout.total_size != S.L.total_size ||
		    skv_client_limits(c, &lim) < 0 || strlen(skv_client_model(c)) >= sizeof(w.model))
			abort();
	}
	skv_client_free(c);
	close(sv[0]);
}

/* ---- mode 0: a session under a hostile skvd ---- */

struct model {
	uint64_t ids[64]; /* in flight, as we believe */
	uint32_t flags[64];
	size_t n;
	int broken;
};

static size_t model_find(const struct model *m, uint64_t id)
{
	for (size_t i = 0; i < m->n; i++)
		if (m->ids[i] == id)
			return i;
	return SIZE_MAX;
}

static void check_event(struct model *m, const struct skv_event *ev)
{
	size_t i = model_find(m, ev->id);
	if (i == SIZE_MAX)
		abort(); /* an event for an id that was not in flight got through */
	if (ev->type == SKV_EVENT_DELTA) {
		if (ev->text_len > SKV_DELTA_TEXT_MAX || ev->text[ev->text_len] != '\0' || ev->n_ids > SKV_DELTA_IDS_MAX ||
		    (ev->n_ids && !(m->flags[i] & SKV_REQUEST_STREAM_IDS)))
			abort();
		volatile char sink = 0;
		for (size_t k = 0; k < ev->text_len; k++)
			sink ^= ev->text[k];
		for (uint32_t k = 0; k < ev->n_ids; k++)
			sink ^= (char)ev->ids[k];
		(void)sink;
	} else if (ev->type == SKV_EVENT_PROGRESS) {
		if (!(m->flags[i] & SKV_REQUEST_PROGRESS) || ev->prompt_done >= ev->prompt_tokens)
			abort(); /* progress for a request that did not ask, or past its prompt */
	} else if (ev->type == SKV_EVENT_FINAL) {
		if (ev->finish < SKV_FINISH_REASON_STOP || ev->finish > SKV_FINISH_REASON_ERROR ||
		    (ev->finish == SKV_FINISH_REASON_ERROR) != (ev->error != SKV_ERROR_CODE_NONE) ||
		    strlen(ev->message) >= 209)
			abort();
		for (const char *p = ev->message; *p; p++)
			if ((unsigned char)*p < 0x20)
				abort(); /* control characters were replaced */
		m->ids[i] = m->ids[--m->n];
		m->flags[i] = m->flags[m->n];
	} else {
		abort();
	}
}

static void expect_sticky(struct skv_client *c, struct model *m, int r)
{
	if (r == -EPROTO || r == -ECONNRESET) {
		if (m->broken && m->broken != r && m->broken != -ECONNRESET)
			abort();
		if (!m->broken)
			m->broken = r;
	} else if (m->broken == -EPROTO) {
		abort(); /* a broken handle must stay broken */
	}
	if (r < 0 && !skv_client_errmsg(c)[0])
		abort();
}

static void fuzz_session(struct input *in)
{
	struct skv_ring sub, cmp; /* skvd's views: consumer of submissions, producer of completions */
	struct model m = {0};
	struct skv_client *c;
	int sv[2];

	srv_reset_segment();
	if (socketpair(AF_UNIX, SOCK_SEQPACKET | SOCK_CLOEXEC, 0, sv) < 0)
		abort();
	int fds[3] = {S.mem_fd, S.sub_efd, S.cmp_efd};
	send_welcome(sv[0], &S.w, fds, 3);
	if (skv_client_new(&c) < 0)
		abort();
	if (skv_client_handshake(c, sv[1], "fuzz") < 0)
		abort(); /* the good welcome must be accepted */
	skv_ring_attach(&sub, (void *)(S.mem + S.L.sub_idx_offset), S.mem + S.L.sub_offset, SUB_CAP, SKV_WIRE_RECORD, false);
	skv_ring_attach(&cmp, (void *)(S.mem + S.L.cmp_idx_offset), S.mem + S.L.cmp_offset, CMP_CAP, SKV_WIRE_RECORD, true);

	for (int steps = 0; in->n && steps < 256; steps++) {
		struct skv_event ev;
		int r;
		uint8_t op = in_u8(in);
		switch (op % 8) {
		case 0: { /* submit */
			static const char *stop[] = {"ab", "c"};
			char text[512];
			struct skv_request req;
			uint8_t a = in_u8(in), b = in_u8(in);
			skv_request_init(&req);
			memset(text, 'x', sizeof(text));
			req.text = text;
			req.text_len = 1 + (size_t)b * 2;
			req.flags = a & (SKV_REQUEST_STREAM_IDS | SKV_REQUEST_PROGRESS);
			req.n_stop = (a >> 6) % 3;
			req.stop = stop;
			uint64_t id = 0;
			r = skv_client_submit(c, &req, &id);
			if (r == 0) {
				if (m.broken == -EPROTO || m.n == 64 || model_find(&m, id) != SIZE_MAX)
					abort();
				m.ids[m.n] = id;
				m.flags[m.n++] = req.flags;
			} else if (r != -EAGAIN && r != -EBUSY && r != -EPROTO && r != -ECONNRESET && r != -E2BIG &&
				   r != -EINVAL) {
				abort();
			}
			expect_sticky(c, &m, r);
			break;
		}
		case 1: { /* a completion record: raw bytes, with fixups that make it plausible */
			uint8_t fix = in_u8(in), pick = in_u8(in);
			union {
				struct skv_wire_delta d;
				struct skv_wire_final f;
				uint8_t raw[SKV_WIRE_RECORD];
			} rec;
			in_bytes(in, rec.raw, 1 + in_u8(in));
			if (fix & 1)
				rec.d.version = SKV_WIRE_VERSION;
			if (fix & 2)
				rec.d.type = (fix & 4) ? SKV_EV_FINAL : SKV_EV_DELTA;
			if ((fix & 8) && m.n)
				rec.d.id = m.ids[pick % m.n];
			if (fix & 16) {
				rec.d.text_len %= SKV_WIRE_DELTA_TEXT + 1;
				rec.d.n_ids %= SKV_WIRE_DELTA_IDS + 1;
			}
			if (fix & 32) {
				rec.f.finish = 1 + rec.f.finish % 4;
				rec.f.error = rec.f.finish == SKV_WIRE_FINISH_ERROR ? 1 + rec.f.error % 8 : 0;
				rec.f.message[sizeof(rec.f.message) - 1] = '\0';
			}
			if (skv_ring_space(&cmp) > 0) {
				memcpy(skv_ring_slot(&cmp, 0), rec.raw, sizeof(rec.raw));
				skv_ring_commit(&cmp, 1);
			}
			uint64_t one = 1;
			if (write(S.cmp_efd, &one, 8) != 8)
				abort();
			break;
		}
		case 2: /* an arbitrary completion tail */
			cmp.mine = in_u32(in);
			atomic_store(&cmp.sh->tail, cmp.mine);
			break;
		case 3: /* an arbitrary submission head */
			sub.mine = in_u32(in);
			atomic_store(&sub.sh->head, sub.mine);
			break;
		case 4:
		case 5: /* the client reads */
			r = skv_client_next(c, &ev, 0);
			if (r == 0) {
				if (m.broken == -EPROTO)
					abort();
				check_event(&m, &ev);
			} else if (r != -EAGAIN && r != -EPROTO && r != -ECONNRESET) {
				abort();
			}
			expect_sticky(c, &m, r);
			if (skv_client_in_flight(c) != m.n && m.broken != -EPROTO)
				abort();
			break;
		case 6: { /* cancel */
			uint8_t pick = in_u8(in);
			uint64_t id = m.n && (pick & 1) ? m.ids[pick % m.n] : pick;
			r = skv_client_cancel(c, id);
			if (r != 0 && r != -ENOENT && r != -EAGAIN && r != -EPROTO && r != -ECONNRESET)
				abort();
			if (r == -ENOENT && model_find(&m, id) != SIZE_MAX && !m.broken)
				abort();
			expect_sticky(c, &m, r);
			break;
		}
		case 7: /* skvd consumes what it can (the right way), or hangs up */
			if (op & 0x80) {
				if (sv[0] >= 0)
					close(sv[0]);
				sv[0] = -1;
				break;
			}
			for (int k = skv_ring_avail(&sub); k > 0; k--) {
				struct skv_wire_submit s;
				memcpy(&s, sub.records + (size_t)(sub.mine & (SUB_CAP - 1)) * SKV_WIRE_RECORD, sizeof(s));
				if (s.type == SKV_SUB_REQUEST && (uint64_t)s.data_offset + s.data_len > DATA_SIZE)
					abort(); /* the client placed a payload outside the data area */
				skv_ring_pop(&sub, &s);
			}
			break;
		}
	}
	skv_client_free(c);
	if (sv[0] >= 0)
		close(sv[0]);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	struct input in = {.p = data, .n = size};
	if (!S.ready)
		srv_setup();
	if (size == 0)
		return 0;
	if ((in_u8(&in) & 3) == 3)
		fuzz_handshake(&in);
	else
		fuzz_session(&in);
	return 0;
}
