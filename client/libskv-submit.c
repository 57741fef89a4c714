/* libskv-submit.c: the producer side of a session: request payloads, the data area's
 * allocator, submission records and the doorbell.
 *
 * The data area is allocated in ring order, like the records: a payload is one contiguous
 * extent (never split at the end of the area: the tail is skipped instead), 8-aligned. The
 * allocator is two free-running byte counters. data_tail moves on each allocation; data_head
 * is the end of the extent of the last record skvd has consumed, learnt from the ring's head
 * and a private per-slot table of extent ends (slot_end), never from shared memory. The ring
 * head itself is read once per call and must only move forward, never past our tail.
 * skvd copies a payload out before it releases the record's slot (docs/protocol.md).
 */
#include <math.h>
#include <stdio.h>
#include <string.h>

#include "libskv-internal.h"

_Static_assert(__BYTE_ORDER__ == __ORDER_LITTLE_ENDIAN__, "the wire is little-endian; so is this code");

static int plan_stop(const struct skv_request *req, const struct skv_wire_limits *lim, size_t *data_len,
		     struct skv_err *err)
{
	if (req->n_stop && !req->stop)
		return skv_err_set(err, -EINVAL, "stop: %zu strings but no array", req->n_stop);
	if (lim && lim->max_stop && req->n_stop > lim->max_stop)
		return skv_err_set(err, -EINVAL, "stop: %zu strings, more than skvd's limit of %u (max_stop)", req->n_stop,
				   lim->max_stop);
	if (req->n_stop > UINT32_MAX)
		return skv_err_set(err, -EINVAL, "stop: %zu strings is absurd", req->n_stop);
	for (size_t i = 0; i < req->n_stop; i++) {
		if (!req->stop[i] || !req->stop[i][0])
			return skv_err_set(err, -EINVAL, "stop[%zu]: empty", i);
		size_t len = strlen(req->stop[i]);
		if (lim && lim->max_stop_bytes && len > lim->max_stop_bytes)
			return skv_err_set(err, -EINVAL, "stop[%zu]: %zu bytes, more than skvd's limit of %u (max_stop_bytes)",
					   i, len, lim->max_stop_bytes);
		if (!skv_add_size(*data_len, len + 1, data_len))
			return skv_err_set(err, -E2BIG, "stop[%zu]: too long", i);
	}
	return 0;
}

int skv_payload_plan(const struct skv_request *req, const struct skv_wire_limits *lim, struct skv_payload *ret,
		     struct skv_err *err)
{
	size_t input_len = 0, data_len;
	int r;

	for (size_t i = 0; i < SKV_ARRAY_SIZE(req->reserved); i++)
		if (req->reserved[i])
			return skv_err_set(err, -EINVAL, "request: reserved fields must be zero (start from skv_request_init)");
	if (req->flags & ~(uint32_t)SKV_REQ__ALL)
		return skv_err_set(err, -EINVAL, "request: flags 0x%x has unknown bits", req->flags);
	if (req->flags & SKV_REQUEST_TEMPERATURE && !(isfinite(req->temperature) && req->temperature >= 0.0f))
		return skv_err_set(err, -EINVAL, "temperature: %g is not a number >= 0", (double)req->temperature);
	if (req->flags & SKV_REQUEST_TOP_P && !(req->top_p > 0.0f && req->top_p <= 1.0f))
		return skv_err_set(err, -EINVAL, "top_p: %g is outside (0, 1]", (double)req->top_p);
	if (lim && lim->max_new_tokens && req->max_tokens > lim->max_new_tokens)
		return skv_err_set(err, -EINVAL, "max_tokens: %u is over skvd's limit of %u (max_new_tokens)",
				   req->max_tokens, lim->max_new_tokens);

	switch (req->kind) {
	case SKV_PROMPT_TEXT:
		if (!req->text)
			return skv_err_set(err, -EINVAL, "prompt: no text given");
		input_len = req->text_len ? req->text_len : strlen(req->text);
		break;
	case SKV_PROMPT_CHAT:
		if (!req->messages || req->n_messages == 0)
			return skv_err_set(err, -EINVAL, "messages: none given");
		for (size_t i = 0; i < req->n_messages; i++) {
			const struct skv_message *m = &req->messages[i];
			if ((unsigned)m->role > SKV_MESSAGE_ASSISTANT)
				return skv_err_set(err, -EINVAL, "messages[%zu].role: %d is not system (0), user (1) or assistant (2)",
						   i, (int)m->role);
			if (!m->content && m->len)
				return skv_err_set(err, -EINVAL, "messages[%zu].content: NULL with length %zu", i, m->len);
			size_t len = m->len ? m->len : m->content ? strlen(m->content) : 0;
			if (len > UINT32_MAX - 3 ||
			    !skv_add_size(input_len, sizeof(struct skv_wire_message) + SKV_ALIGN_UP(len, 4), &input_len))
				return skv_err_set(err, -E2BIG, "messages[%zu].content: %zu bytes is too long", i, len);
		}
		break;
	case SKV_PROMPT_IDS:
		if (!req->ids || req->n_ids == 0)
			return skv_err_set(err, -EINVAL, "prompt ids: none given");
		for (size_t i = 0; i < req->n_ids; i++)
			if (req->ids[i] < 0)
				return skv_err_set(err, -EINVAL, "prompt ids[%zu]: %d is negative", i, req->ids[i]);
		if (req->flags & SKV_REQUEST_COUNT_ONLY)
			; /* counting is not running: the token limits do not apply */
		else if (lim && lim->max_prompt_tokens && req->n_ids > lim->max_prompt_tokens)
			return skv_err_set(err, -E2BIG, "prompt: %zu tokens, more than skvd's limit of %u (max_prompt_tokens)",
					   req->n_ids, lim->max_prompt_tokens);
		if (lim && lim->max_context &&
		    (req->max_tokens ? (uint64_t)req->n_ids + req->max_tokens > lim->max_context : req->n_ids >= lim->max_context))
			return skv_err_set(err, -E2BIG, "prompt (%zu tokens) + max_tokens (%u) exceeds the context of %u tokens",
					   req->n_ids, req->max_tokens ? req->max_tokens : 1, lim->max_context);
		if (!skv_mul_size(req->n_ids, sizeof(int32_t), &input_len))
			return skv_err_set(err, -E2BIG, "prompt ids: %zu ids is too many", req->n_ids);
		break;
	default:
		return skv_err_set(err, -EINVAL, "request kind %d is not text (1), chat (2) or ids (3)", (int)req->kind);
	}
	data_len = input_len;
	r = plan_stop(req, lim, &data_len, err);
	if (r < 0)
		return r;
	if (lim && lim->max_request_bytes && data_len > lim->max_request_bytes)
		return skv_err_set(err, -E2BIG, "request: %zu bytes of prompt and stop strings, more than skvd's limit of %u "
					       "(max_request_bytes)", data_len, lim->max_request_bytes);
	if (data_len > UINT32_MAX)
		return skv_err_set(err, -E2BIG, "request: %zu bytes is more than the protocol can carry", data_len);
	*ret = (struct skv_payload){
		.input_len = (uint32_t)input_len,
		.data_len = (uint32_t)data_len,
		.n_stop = (uint32_t)req->n_stop,
		.input = (uint32_t)req->kind,
	};
	return 0;
}

void skv_payload_write(const struct skv_request *req, const struct skv_payload *p, uint8_t *dst)
{
	size_t off = 0;

	switch (req->kind) {
	case SKV_PROMPT_TEXT:
		memcpy(dst, req->text, p->input_len);
		off = p->input_len;
		break;
	case SKV_PROMPT_CHAT:
		for (size_t i = 0; i < req->n_messages; i++) {
			const struct skv_message *m = &req->messages[i];
			size_t len = m->len ? m->len : m->content ? strlen(m->content) : 0;
			struct skv_wire_message h = {.role = (uint32_t)m->role, .len = (uint32_t)len};
			memcpy(dst + off, &h, sizeof(h));
			off += sizeof(h);
			if (len)
				memcpy(dst + off, m->content, len);
			memset(dst + off + len, 0, SKV_ALIGN_UP(len, 4) - len);
			off += SKV_ALIGN_UP(len, 4);
		}
		break;
	case SKV_PROMPT_IDS:
		memcpy(dst, req->ids, p->input_len);
		off = p->input_len;
		break;
	}
	for (size_t i = 0; i < req->n_stop; i++) {
		size_t len = strlen(req->stop[i]) + 1;
		memcpy(dst + off, req->stop[i], len);
		off += len;
	}
}

SKV_EXPORT int skv_request_payload_size(const struct skv_request *req, size_t *ret)
{
	struct skv_payload p;
	int r = skv_payload_plan(req, NULL, &p, NULL);
	if (r < 0)
		return r;
	*ret = p.data_len;
	return 0;
}

/* Free submission slots, after checking the consumer's head: it may only move forward, and
 * never past our tail. Learns how much of the data area skvd has released. */
static int sub_space(struct skv_client *c)
{
	int space = skv_ring_space(&c->sub);
	if (space < 0)
		return skv_client_fail_proto(c, "submission ring head %u is impossible (our tail %u, capacity %u)",
					     atomic_load_explicit(&c->sub.sh->head, memory_order_relaxed), c->sub.mine,
					     c->sub.capacity);
	uint32_t head = c->sub.peer;
	if (head - c->sub_head > c->sub.mine - c->sub_head)
		return skv_client_fail_proto(c, "submission ring head moved from %u to %u (our tail %u)", c->sub_head, head,
					     c->sub.mine);
	if (head != c->sub_head) {
		uint64_t end = c->slot_end[(head - 1) & (c->sub.capacity - 1)];
		if (end > c->data_head)
			c->data_head = end;
		c->sub_head = head;
	}
	return space;
}

/* Allocates len bytes in the data area (after sub_space); -EAGAIN when skvd still holds the
 * room. An empty area starts over at offset 0, so any len <= data_size fits once skvd has
 * consumed everything before it. */
static int data_alloc(struct skv_client *c, uint32_t len, uint32_t *ret_off)
{
	uint64_t size = c->layout.data_size;
	uint64_t alen = SKV_ALIGN_UP((uint64_t)len, SKV_PAYLOAD_ALIGN);
	uint64_t skip;

	if (len == 0) {
		*ret_off = 0;
		return 0;
	}
	if (c->data_head == c->data_tail && c->data_tail % size)
		c->data_head = c->data_tail = SKV_ALIGN_UP(c->data_tail, size);
	skip = c->data_tail % size + alen > size ? size - c->data_tail % size : 0;
	if (c->data_tail + skip + alen - c->data_head > size)
		return -EAGAIN;
	*ret_off = (uint32_t)((c->data_tail + skip) % size);
	c->data_tail += skip + alen;
	return 0;
}

static void ring_doorbell(struct skv_client *c)
{
	uint64_t one = 1;
	ssize_t n = write(c->sub_efd, &one, sizeof(one)); /* a hint: a full counter (EAGAIN) is fine */
	(void)n;
}

/* skvd is gone (or going): no retry will ever succeed. Checked where we would say -EAGAIN, so
 * that a caller's retry loop ends; skv_client_next still delivers what skvd wrote before. */
static int gone(struct skv_client *c)
{
	if (!c->eof) {
		int r = skv_client_check_sock(c);
		if (r < 0)
			return r;
	}
	if (c->eof)
		return skv_err_set(&c->err, -ECONNRESET, "skvd closed the session");
	return 0;
}

/* The -EAGAIN answer: wake skvd (a hint), unless it has gone. */
static int again(struct skv_client *c, const char *what)
{
	int r = gone(c);
	if (r < 0)
		return r;
	ring_doorbell(c);
	return skv_err_set(&c->err, -EAGAIN, "%s: retry shortly", what);
}

SKV_EXPORT int skv_client_submit(struct skv_client *c, const struct skv_request *req, uint64_t *ret_id)
{
	struct skv_payload p;
	uint32_t off = 0;
	int r;

	skv_err_clear(&c->err);
	r = skv_client_check_usable(c);
	if (r < 0)
		return r;
	if (c->eof)
		return gone(c);
	r = skv_payload_plan(req, &c->limits, &p, &c->err);
	if (r < 0)
		return r;
	if (req->flags & SKV_REQUEST_COUNT_ONLY && !(c->limits.features & SKV_WIRE_FEATURE_COUNT_ONLY))
		return skv_err_set(&c->err, -EOPNOTSUPP, "request: this skvd cannot count a prompt without running it "
							 "(SKV_REQUEST_COUNT_ONLY; it predates the feature)");
	if (req->flags & SKV_REQUEST_PROGRESS && !(c->limits.features & SKV_WIRE_FEATURE_PROGRESS))
		return skv_err_set(&c->err, -EOPNOTSUPP, "request: this skvd does not report prefill progress "
							 "(SKV_REQUEST_PROGRESS; it predates the feature)");
	if (p.data_len > c->layout.data_size)
		return skv_err_set(&c->err, -E2BIG, "request: %u bytes of prompt and stop strings, more than the session's "
						    "data area of %u bytes", p.data_len, c->layout.data_size);
	if (c->limits.max_in_flight && c->n_reqs >= c->limits.max_in_flight)
		return skv_err_set(&c->err, -EBUSY, "%u requests are in flight, skvd's limit per session (max_in_flight)",
				   c->n_reqs);
	if (c->n_reqs == c->cap_reqs) {
		uint32_t cap = c->cap_reqs * 2;
		struct skv_inflight *q = reallocarray(c->reqs, cap, sizeof(*q));
		if (!q)
			return skv_err_set(&c->err, -ENOMEM, "out of memory");
		c->reqs = q;
		c->cap_reqs = cap;
	}
	r = sub_space(c);
	if (r < 0)
		return r;
	if (r == 0)
		return again(c, "the submission ring is full (skvd has not consumed it yet)");
	char what[160];
	if (data_alloc(c, p.data_len, &off) < 0) {
		snprintf(what, sizeof(what), "the data area is full (%llu of %u bytes wait for skvd, %u more asked)",
			 (unsigned long long)(c->data_tail - c->data_head), c->layout.data_size, p.data_len);
		return again(c, what);
	}
	skv_payload_write(req, &p, c->data + off);

	uint64_t id = c->next_id++;
	struct skv_wire_submit s = {
		.version = c->version,
		.type = SKV_SUB_REQUEST,
		.flags = req->flags,
		.id = id,
		.input = p.input,
		.max_tokens = req->max_tokens,
		.temperature = req->flags & SKV_REQUEST_TEMPERATURE ? req->temperature : 0.0f,
		.top_p = req->flags & SKV_REQUEST_TOP_P ? req->top_p : 0.0f,
		.top_k = req->flags & SKV_REQUEST_TOP_K ? req->top_k : 0,
		.timeout_ms = req->timeout_ms,
		.seed = req->flags & SKV_REQUEST_SEED ? req->seed : 0,
		.data_offset = off,
		.data_len = p.data_len,
		.input_len = p.input_len,
		.n_stop = p.n_stop,
		.client_ns = skv_now_ns(),
	};
	c->slot_end[c->sub.mine & (c->sub.capacity - 1)] = c->data_tail;
	memcpy(skv_ring_slot(&c->sub, 0), &s, sizeof(s));
	skv_ring_commit(&c->sub, 1);
	ring_doorbell(c);

	c->reqs[c->n_reqs++] = (struct skv_inflight){.id = id, .user_data = req->user_data, .flags = req->flags};
	*ret_id = id;
	return 0;
}

SKV_EXPORT int skv_client_cancel(struct skv_client *c, uint64_t id)
{
	struct skv_inflight *q;
	int r;

	skv_err_clear(&c->err);
	r = skv_client_check_usable(c);
	if (r < 0)
		return r;
	q = skv_inflight_find(c, id);
	if (!q)
		return skv_err_set(&c->err, -ENOENT, "request %llu is not in flight", (unsigned long long)id);
	if (q->cancel_sent)
		return 0;
	if (c->eof)
		return gone(c);
	r = sub_space(c);
	if (r < 0)
		return r;
	if (r == 0)
		return again(c, "the submission ring is full (skvd has not consumed it yet)");
	struct skv_wire_submit s = {.version = c->version, .type = SKV_SUB_CANCEL, .id = id};
	c->slot_end[c->sub.mine & (c->sub.capacity - 1)] = c->data_tail;
	memcpy(skv_ring_slot(&c->sub, 0), &s, sizeof(s));
	skv_ring_commit(&c->sub, 1);
	ring_doorbell(c);
	q->cancel_sent = true;
	return 0;
}
