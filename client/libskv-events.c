/* libskv-events.c: the consumer side of a session: the completion ring, the doorbell and the
 * socket's EOF, the in-flight table, and the blocking skv_client_generate.
 *
 * Each record is copied out of the ring before a single field is looked at; the producer's
 * tail is read once per look and checked against our head and the capacity. A record that
 * breaks the protocol (unknown type or version, a length over the record, ids nobody asked for,
 * an id not in flight, an impossible finish/error pair, an unterminated message) closes the
 * session: the handle fails with -EPROTO from then on.
 */
#include <poll.h>
#include <stdio.h>
#include <string.h>
#include <sys/socket.h>

#include "libskv-internal.h"

struct skv_inflight *skv_inflight_find(struct skv_client *c, uint64_t id)
{
	for (uint32_t i = 0; i < c->n_reqs; i++)
		if (c->reqs[i].id == id)
			return &c->reqs[i];
	return NULL;
}

void skv_inflight_remove(struct skv_client *c, struct skv_inflight *q)
{
	*q = c->reqs[--c->n_reqs];
}

union skv_cmp_record {
	struct {
		uint16_t version;
		uint16_t type;
	} h;
	struct skv_wire_delta d;
	struct skv_wire_final f;
	struct skv_wire_progress p;
	uint8_t raw[SKV_WIRE_RECORD];
};

/* 1 with an event, 0 when the ring is empty, -EPROTO. */
static int consume_one(struct skv_client *c, struct skv_event *ev)
{
	union skv_cmp_record rec;
	struct skv_inflight *q;
	uint32_t index = c->cmp.mine;

	int n = skv_ring_avail(&c->cmp);
	if (n < 0)
		return skv_client_fail_proto(c, "completion ring tail %u is impossible (our head %u, capacity %u)",
					     atomic_load_explicit(&c->cmp.sh->tail, memory_order_relaxed), c->cmp.mine,
					     c->cmp.capacity);
	if (n == 0)
		return 0;
	skv_ring_pop(&c->cmp, &rec); /* the copy is what gets checked */

	if (rec.h.version != c->version)
		return skv_client_fail_proto(c, "completion record %u: version %u, expected %u", index, rec.h.version,
					     c->version);
	switch (rec.h.type) {
	case SKV_EV_DELTA:
		if (rec.d.text_len > SKV_WIRE_DELTA_TEXT)
			return skv_client_fail_proto(c, "completion record %u: text_len %u is over %u", index, rec.d.text_len,
						     SKV_WIRE_DELTA_TEXT);
		if (rec.d.n_ids > SKV_WIRE_DELTA_IDS)
			return skv_client_fail_proto(c, "completion record %u: n_ids %u is over %u", index, rec.d.n_ids,
						     SKV_WIRE_DELTA_IDS);
		q = skv_inflight_find(c, rec.d.id);
		if (!q)
			return skv_client_fail_proto(c, "completion record %u: a delta for request %llu, which is not in flight",
						     index, (unsigned long long)rec.d.id);
		if (rec.d.n_ids && !(q->flags & SKV_REQ_STREAM_IDS))
			return skv_client_fail_proto(c, "completion record %u: ids for request %llu, which did not ask for them",
						     index, (unsigned long long)rec.d.id);
		memcpy(c->ev_text, rec.d.text, rec.d.text_len);
		c->ev_text[rec.d.text_len] = '\0';
		memcpy(c->ev_ids, rec.d.ids, rec.d.n_ids * sizeof(int32_t));
		*ev = (struct skv_event){
			.type = SKV_EVENT_DELTA,
			.id = rec.d.id,
			.user_data = q->user_data,
			.text = c->ev_text,
			.text_len = rec.d.text_len,
			.ids = c->ev_ids,
			.n_ids = rec.d.n_ids,
			.message = "",
			.t_worker_ns = rec.d.worker_ns,
			.t_skvd_ns = rec.d.skvd_ns,
		};
		return 1;
	case SKV_EV_FINAL:
		q = skv_inflight_find(c, rec.f.id);
		if (!q)
			return skv_client_fail_proto(c, "completion record %u: a final for request %llu, which is not in flight",
						     index, (unsigned long long)rec.f.id);
		if (rec.f.finish < SKV_WIRE_FINISH_STOP || rec.f.finish > SKV_WIRE_FINISH_ERROR)
			return skv_client_fail_proto(c, "completion record %u: finish reason %u is unknown", index, rec.f.finish);
		if ((rec.f.finish == SKV_WIRE_FINISH_ERROR) != (rec.f.error != SKV_WIRE_ERR_NONE))
			return skv_client_fail_proto(c, "completion record %u: finish reason %s with error %u", index,
						     skv_wire_finish_name(rec.f.finish), rec.f.error);
		if (!memchr(rec.f.message, 0, sizeof(rec.f.message)))
			return skv_client_fail_proto(c, "completion record %u: the message is not NUL-terminated", index);
		skv_sanitize(c->ev_msg, sizeof(c->ev_msg), rec.f.message, sizeof(rec.f.message));
		*ev = (struct skv_event){
			.type = SKV_EVENT_FINAL,
			.id = rec.f.id,
			.user_data = q->user_data,
			.text = "",
			.ids = c->ev_ids,
			.finish = (enum skv_finish_reason)rec.f.finish,
			.error = (enum skv_error_code)rec.f.error,
			.message = c->ev_msg,
			.prompt_tokens = rec.f.prompt_tokens,
			.completion_tokens = rec.f.completion_tokens,
			.queue_us = rec.f.queue_us,
			.ttft_us = rec.f.ttft_us,
			.total_us = rec.f.total_us,
			.retry_after_ms = rec.f.retry_after_ms,
			.t_skvd_ns = rec.f.skvd_ns,
			.t_seen_ns = rec.f.seen_ns,
			.t_taken_ns = rec.f.taken_ns,
		};
		skv_inflight_remove(c, q);
		return 1;
	case SKV_EV_PROGRESS:
		q = skv_inflight_find(c, rec.p.id);
		if (!q || !(q->flags & SKV_REQ_PROGRESS))
			return skv_client_fail_proto(c, "completion record %u: progress for request %llu, which is not in flight "
						     "or did not ask for it", index, (unsigned long long)rec.p.id);
		if (rec.p.prompt_done >= rec.p.prompt_tokens)
			return skv_client_fail_proto(c, "completion record %u: progress %u of %u prompt tokens", index,
						     rec.p.prompt_done, rec.p.prompt_tokens);
		*ev = (struct skv_event){
			.type = SKV_EVENT_PROGRESS,
			.id = rec.p.id,
			.user_data = q->user_data,
			.text = "",
			.ids = c->ev_ids,
			.message = "",
			.prompt_tokens = rec.p.prompt_tokens,
			.prompt_done = rec.p.prompt_done,
			.t_worker_ns = rec.p.worker_ns,
			.t_skvd_ns = rec.p.skvd_ns,
		};
		return 1;
	}
	return skv_client_fail_proto(c, "completion record %u: unknown type %u", index, rec.h.type);
}

/* After the welcome, skvd only ever closes the socket. */
int skv_client_check_sock(struct skv_client *c)
{
	char b[64];
	ssize_t n = recv(c->sock, b, sizeof(b), MSG_DONTWAIT);
	if (n > 0)
		return skv_client_fail_proto(c, "skvd sent %zd bytes on the socket after the handshake", n);
	if (n == 0 || (errno != EAGAIN && errno != EINTR))
		c->eof = true;
	return 0;
}

SKV_EXPORT int skv_client_next(struct skv_client *c, struct skv_event *ev, int timeout_ms)
{
	uint64_t deadline = timeout_ms > 0 ? skv_now_ns() + (uint64_t)timeout_ms * 1000000u : 0;
	int r;

	skv_err_clear(&c->err);
	r = skv_client_check_usable(c);
	if (r < 0)
		return r;
	for (;;) {
		r = consume_one(c, ev);
		if (r != 0)
			return r < 0 ? r : 0;
		if (c->eof) {
			c->broken = -ECONNRESET;
			snprintf(c->broken_msg, sizeof(c->broken_msg), "skvd closed the session (requests in flight: %u)",
				 c->n_reqs);
			return skv_err_set(&c->err, -ECONNRESET, "%s", c->broken_msg);
		}
		/* drain the doorbell, then look again: a record published after that look rings it anew */
		uint64_t v;
		ssize_t k = read(c->cmp_efd, &v, sizeof(v));
		(void)k;
		r = consume_one(c, ev);
		if (r != 0)
			return r < 0 ? r : 0;

		int left = -1;
		if (timeout_ms == 0) {
			left = 0;
		} else if (timeout_ms > 0) {
			uint64_t now = skv_now_ns();
			left = now >= deadline ? 0 : (int)SKV_DIV_UP(deadline - now, 1000000u);
		}
		if (left == 0) {
			r = skv_client_check_sock(c);
			if (r < 0)
				return r;
			if (c->eof)
				continue;
			return skv_err_set(&c->err, timeout_ms == 0 ? -EAGAIN : -ETIMEDOUT,
					   timeout_ms == 0 ? "no event ready" : "no event within %d ms", timeout_ms);
		}
		struct pollfd p[2] = {{.fd = c->cmp_efd, .events = POLLIN}, {.fd = c->sock, .events = POLLIN}};
		int n = poll(p, 2, left);
		if (n < 0) {
			if (errno == EINTR)
				return skv_err_set(&c->err, -EINTR, "interrupted by a signal while waiting for skvd");
			return skv_err_set(&c->err, -errno, "poll: %s", strerror(errno));
		}
		if (p[1].revents) {
			r = skv_client_check_sock(c);
			if (r < 0)
				return r;
		}
	}
}

SKV_EXPORT int skv_client_generate(struct skv_client *c, const struct skv_request *req, skv_event_fn on_delta,
				   void *userdata, struct skv_event *ret_final)
{
	struct skv_event ev;
	uint64_t id;
	int cb_ret = 0, r;
	bool cancel_owed = false;

	skv_err_clear(&c->err);
	r = skv_client_check_usable(c);
	if (r < 0)
		return r;
	if (c->n_reqs)
		return skv_err_set(&c->err, -EBUSY, "skv_client_generate needs a handle with no request in flight (%u are)",
				   c->n_reqs);
	for (int backoff_ms = 1;; backoff_ms = SKV_MIN(backoff_ms * 2, 32)) {
		r = skv_client_submit(c, req, &id);
		if (r != -EAGAIN)
			break;
		/* skvd frees room without telling us (and submit notices if it went away) */
		poll(NULL, 0, backoff_ms);
	}
	if (r < 0)
		return r;
	for (;;) {
		if (cancel_owed) {
			r = skv_client_cancel(c, id);
			if (r == 0)
				cancel_owed = false;
			else if (r != -EAGAIN)
				return r;
		}
		r = skv_client_next(c, &ev, cancel_owed ? 10 : -1);
		if (r == -EINTR || r == -ETIMEDOUT)
			continue;
		if (r < 0)
			return r;
		if (ev.type == SKV_EVENT_PROGRESS)
			continue;
		if (ev.type == SKV_EVENT_DELTA) {
			if (on_delta && !cb_ret) {
				cb_ret = on_delta(c, &ev, userdata);
				if (cb_ret > 0)
					cb_ret = 0;
				cancel_owed = cb_ret < 0;
			}
			continue;
		}
		if (ret_final)
			*ret_final = ev;
		skv_err_clear(&c->err);
		if (cb_ret < 0)
			return skv_err_set(&c->err, cb_ret, "the delta callback stopped the request (%d)", cb_ret);
		return 0;
	}
}
