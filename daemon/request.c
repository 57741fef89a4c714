/* request.c: a request's life in skvd: routed to a replica under the queue bounds, handed to
 * its worker, its token events turned into text deltas (incremental detokenization, stop
 * strings held back until they cannot match), and its final record with usage and timings.
 * A request of a lost worker is re-run when the client has seen nothing of it, and ends with
 * worker_lost otherwise. Requests are reaped at the end of the loop iteration that ended them.
 */
#include <stdio.h>
#include <string.h>

#include "idmap.h"
#include "skvd-req.h"

struct skvd_req *skvd_request_find(struct skvd *d, uint64_t id) { return skvd_idmap_get(d->reqs, id); }

static void replica_link(struct skvd_replica *rp, struct skvd_req *q)
{
	q->rep = rp;
	q->last_rep = rp;
	q->next_in_replica = NULL;
	q->prev_in_replica = rp->reqs_tail;
	if (rp->reqs_tail)
		rp->reqs_tail->next_in_replica = q;
	else
		rp->reqs_head = q;
	rp->reqs_tail = q;
	rp->n_reqs++;
	rp->queued_prompt_tokens += q->n_prompt;
}

static void replica_unlink(struct skvd_req *q)
{
	struct skvd_replica *rp = q->rep;
	if (!rp)
		return;
	if (q->prev_in_replica)
		q->prev_in_replica->next_in_replica = q->next_in_replica;
	else
		rp->reqs_head = q->next_in_replica;
	if (q->next_in_replica)
		q->next_in_replica->prev_in_replica = q->prev_in_replica;
	else
		rp->reqs_tail = q->prev_in_replica;
	q->next_in_replica = q->prev_in_replica = NULL;
	rp->n_reqs--;
	rp->queued_prompt_tokens -= q->n_prompt;
	q->rep = NULL;
}

static void session_unlink(struct skvd_req *q)
{
	struct skvd_session *s = q->sess;
	if (!s)
		return;
	if (q->prev_in_session)
		q->prev_in_session->next_in_session = q->next_in_session;
	else
		s->reqs_head = q->next_in_session;
	if (q->next_in_session)
		q->next_in_session->prev_in_session = q->prev_in_session;
	q->next_in_session = q->prev_in_session = NULL;
	s->n_reqs--;
	q->sess = NULL;
}

/* The least loaded replica that can take n prompt tokens now; ready workers first. */
static struct skvd_replica *pick_replica(struct skvd *d, uint32_t n_prompt, const struct skvd_replica *avoid)
{
	struct skvd_replica *best = NULL;
	for (int pass = 0; pass < 2 && !best; pass++)
		for (uint32_t i = 0; i < d->n_replicas; i++) {
			struct skvd_replica *rp = &d->replicas[i];
			if (rp == avoid && d->n_replicas > 1)
				continue;
			if (pass == 0 && rp->state != SKVD_WORKER_READY)
				continue;
			if (rp->n_reqs >= d->cfg.queue_requests ||
			    rp->queued_prompt_tokens + n_prompt > d->cfg.queue_prompt_tokens)
				continue;
			if (!best || rp->queued_prompt_tokens + 64ull * rp->n_reqs <
					     best->queued_prompt_tokens + 64ull * best->n_reqs)
				best = rp;
		}
	return best;
}

static void req_free(struct skvd_req *q)
{
	if (!q)
		return;
	free(q->prompt);
	for (uint32_t i = 0; i < q->n_stop; i++)
		free(q->stop[i]);
	free(q->stop);
	free(q->held);
	free(q);
}

int skvd_request_start(struct skvd *d, struct skvd_session *s, struct skvd_req_input *in, uint32_t *ret_error,
		       char *msg, size_t msg_len)
{
	struct skvd_replica *rp;
	struct skvd_req *q;

	if (d->draining) {
		*ret_error = SKV_WIRE_ERR_SHUTTING_DOWN;
		snprintf(msg, msg_len, "skvd is shutting down");
		return -ESHUTDOWN;
	}
	rp = pick_replica(d, in->n_prompt, NULL);
	if (!rp) {
		*ret_error = SKV_WIRE_ERR_BUSY;
		snprintf(msg, msg_len, "every replica's queue is full (%u requests or %llu prompt tokens each); retry later",
			 d->cfg.queue_requests, (unsigned long long)d->cfg.queue_prompt_tokens);
		return -EBUSY;
	}
	q = calloc(1, sizeof(*q));
	if (!q) {
		*ret_error = SKV_WIRE_ERR_INTERNAL;
		snprintf(msg, msg_len, "out of memory");
		return -ENOMEM;
	}
	skvd_detok_init(&q->detok);
	q->id = d->next_req_id++;
	q->client_id = in->client_id;
	q->uid = s->uid;
	q->prompt = SKV_TAKE_PTR(in->prompt);
	q->n_prompt = in->n_prompt;
	q->stop = SKV_TAKE_PTR(in->stop);
	q->n_stop = in->n_stop;
	in->n_stop = 0;
	q->max_tokens = in->max_tokens;
	q->flags = in->flags;
	q->temperature = in->temperature;
	q->top_p = in->top_p;
	q->top_k = in->top_k;
	q->seed = in->seed;
	q->timeout_ms = in->timeout_ms;
	q->t_submit_ns = skv_now_ns();
	q->state = SKVD_REQ_PENDING;
	if (skvd_idmap_put(d->reqs, q->id, q) < 0) {
		req_free(q);
		*ret_error = SKV_WIRE_ERR_INTERNAL;
		snprintf(msg, msg_len, "out of memory");
		return -ENOMEM;
	}
	q->sess = s;
	q->next_in_session = s->reqs_head;
	if (s->reqs_head)
		s->reqs_head->prev_in_session = q;
	s->reqs_head = q;
	s->n_reqs++;
	replica_link(rp, q);
	d->n_requests_total++;
	d->n_prompt_tokens_total += q->n_prompt;
	skvd_replica_flush(d, rp);
	return 0;
}

static void send_final(struct skvd *d, struct skvd_req *q, struct skvd_session *s, const char *msg)
{
	uint64_t now = skv_now_ns();
	struct skv_wire_final f = {
		.version = SKV_WIRE_VERSION,
		.type = SKV_EV_FINAL,
		.id = q->client_id,
		.finish = q->finish,
		.error = q->error,
		.prompt_tokens = q->n_prompt,
		.completion_tokens = q->n_generated,
		.queue_us = q->t_scheduled_ns ? (uint32_t)SKV_MIN((q->t_scheduled_ns - q->t_submit_ns) / 1000, UINT32_MAX) : 0,
		.ttft_us = q->t_first_token_ns ? (uint32_t)SKV_MIN((q->t_first_token_ns - q->t_submit_ns) / 1000, UINT32_MAX) : 0,
		.total_us = (uint32_t)SKV_MIN((now - q->t_submit_ns) / 1000, UINT32_MAX),
		.retry_after_ms = q->error == SKV_WIRE_ERR_BUSY ? 250 : 0,
	};
	if (msg)
		skv_strscpy(f.message, msg, sizeof(f.message));
	f.seen_ns = q->t_submit_ns;
	f.taken_ns = q->t_taken_ns;
	f.skvd_ns = now;
	if (s)
		skvd_session_emit(d, s, &f);
}

/* Ends the request for skvd: final record, journal, metrics; reaped at the end of the iteration. */
static void finish(struct skvd *d, struct skvd_req *q, uint32_t fin, uint32_t error, const char *msg)
{
	struct skvd_session *s = q->sess;
	if (q->state == SKVD_REQ_DONE)
		return;
	/* ended first, reported after: nothing that reporting does can end it twice */
	q->state = SKVD_REQ_DONE;
	q->finish = fin;
	q->error = error;
	if (fin == SKV_WIRE_FINISH_ERROR)
		d->n_requests_failed++;
	skvd_metrics_observe(d, q);
	skvd_journal_request(d, q);
	replica_unlink(q);
	session_unlink(q);
	skvd_idmap_del(d->reqs, q->id);
	q->next_dead = d->dead_reqs;
	d->dead_reqs = q;
	send_final(d, q, s, msg);
}

void skvd_requests_reap(struct skvd *d)
{
	while (d->dead_reqs) {
		struct skvd_req *q = d->dead_reqs;
		d->dead_reqs = q->next_dead;
		req_free(q);
	}
}

/* Sends text (and ids) as delta records, split at the record's text size on character
 * boundaries. */
static void send_text(struct skvd *d, struct skvd_req *q, const char *text, size_t len)
{
	bool ids = q->n_pending_ids > 0;
	if (!q->sess || (!len && !ids))
		return;
	do {
		struct skv_wire_delta r = {
			.version = SKV_WIRE_VERSION,
			.type = SKV_EV_DELTA,
			.id = q->client_id,
			.worker_ns = q->t_worker_ns,
			.skvd_ns = skv_now_ns(),
		};
		size_t n = SKV_MIN(len, (size_t)SKV_WIRE_DELTA_TEXT);
		while (n < len && n > 0 && ((unsigned char)text[n] & 0xc0) == 0x80)
			n--; /* never cut a character in two */
		memcpy(r.text, text, n);
		r.text_len = (uint16_t)n;
		if (ids) {
			memcpy(r.ids, q->pending_ids, q->n_pending_ids * sizeof(int32_t));
			r.n_ids = (uint16_t)q->n_pending_ids;
			q->n_pending_ids = 0;
			ids = false;
		}
		skvd_session_emit(d, q->sess, &r);
		text += n;
		len -= n;
	} while (len > 0);
	q->streamed = true;
	if (!q->t_first_token_ns)
		q->t_first_token_ns = skv_now_ns();
}

/* Longest suffix of held[0..len) that is a proper prefix of some stop string. */
static size_t stop_holdback(const struct skvd_req *q, const char *held, size_t len)
{
	size_t keep = 0;
	for (uint32_t i = 0; i < q->n_stop; i++) {
		size_t sl = strlen(q->stop[i]);
		for (size_t k = SKV_MIN(sl - 1, len); k > keep; k--)
			if (!memcmp(held + len - k, q->stop[i], k)) {
				keep = k;
				break;
			}
	}
	return keep;
}

/* New decoded text is in q->held: send what can no longer be part of a stop string. Returns
 * true when a stop string matched (the text before it was sent). */
static bool emit_held(struct skvd *d, struct skvd_req *q)
{
	size_t cut = SIZE_MAX;
	for (uint32_t i = 0; i < q->n_stop; i++) {
		const char *hit = memmem(q->held, q->held_len, q->stop[i], strlen(q->stop[i]));
		if (hit && (size_t)(hit - q->held) < cut)
			cut = (size_t)(hit - q->held);
	}
	if (cut != SIZE_MAX) {
		send_text(d, q, q->held, cut);
		q->held_len = 0;
		return true;
	}
	size_t keep = stop_holdback(q, q->held, q->held_len);
	size_t n = q->held_len - keep;
	if (n || q->n_pending_ids)
		send_text(d, q, q->held, n);
	memmove(q->held, q->held + n, keep);
	q->held_len = keep;
	return false;
}

void skvd_request_abort(struct skvd *d, struct skvd_req *q, uint32_t fin, uint32_t error, const char *msg)
{
	struct skvd_replica *rp = q->rep;
	if (q->state == SKVD_REQ_DONE)
		return;
	if (q->state == SKVD_REQ_SENT && rp) {
		/* the worker drops it at its next step; its later events for this id are ignored */
		if (rp->n_cancels == rp->cap_cancels) {
			uint32_t cap = rp->cap_cancels ? 2 * rp->cap_cancels : 16;
			uint64_t *c = realloc(rp->cancels, cap * sizeof(*c));
			if (c) {
				rp->cancels = c;
				rp->cap_cancels = cap;
			}
		}
		if (rp->n_cancels < rp->cap_cancels)
			rp->cancels[rp->n_cancels++] = q->id;
	}
	finish(d, q, fin, error, msg);
	if (rp)
		skvd_replica_flush(d, rp);
}

void skvd_request_on_event(struct skvd *d, struct skvd_replica *rp, const struct skv_ctl_evt *ev)
{
	struct skvd_req *q = skvd_idmap_get(d->reqs, ev->id);
	if (!q || q->rep != rp)
		return; /* ended at skvd already (cancelled, timed out, client gone) */
	if (ev->flags & SKV_CTL_EVT_TAKEN) {
		q->t_taken_ns = ev->ns;
		return;
	}
	if (ev->flags & SKV_CTL_EVT_SCHEDULED) { /* queueing ends when the engine first runs it */
		q->t_scheduled_ns = ev->ns;
		return;
	}
	if (ev->flags & SKV_CTL_EVT_PREFILL) {
		if (q->flags & SKV_REQ_PROGRESS && q->sess && ev->n_generated < q->n_prompt) {
			struct skv_wire_progress p = {
				.version = SKV_WIRE_VERSION,
				.type = SKV_EV_PROGRESS,
				.id = q->client_id,
				.prompt_done = ev->n_generated,
				.prompt_tokens = q->n_prompt,
				.worker_ns = ev->ns,
				.skvd_ns = skv_now_ns(),
			};
			skvd_session_emit(d, q->sess, &p);
		}
		return;
	}
	q->t_worker_ns = ev->ns;

	if (ev->token >= 0) {
		q->n_generated = ev->n_generated;
		d->n_gen_tokens_total++;
		if (q->flags & SKV_REQ_STREAM_IDS && q->n_pending_ids < SKV_WIRE_DELTA_IDS)
			q->pending_ids[q->n_pending_ids++] = ev->token;
		if (skvd_detok_push(d, &q->detok, ev->token, &q->held, &q->held_len, &q->held_cap) < 0) {
			skvd_request_abort(d, q, SKV_WIRE_FINISH_ERROR, SKV_WIRE_ERR_INTERNAL, "detokenizer failed");
			return;
		}
		if (emit_held(d, q)) {
			skvd_request_abort(d, q, SKV_WIRE_FINISH_STOP, SKV_WIRE_ERR_NONE, NULL);
			return;
		}
		if (q->n_pending_ids == SKV_WIRE_DELTA_IDS)
			send_text(d, q, NULL, 0);
	}
	switch (ev->finish) {
	case SKV_CTL_FINISH_NONE:
		return;
	case SKV_CTL_FINISH_STOP:
	case SKV_CTL_FINISH_LENGTH:
		/* whatever was held back for a stop string that never came is text after all, and
		 * an unfinished character becomes U+FFFD */
		if (skvd_detok_flush(&q->detok, &q->held, &q->held_len, &q->held_cap) < 0)
			q->held_len = 0;
		send_text(d, q, q->held, q->held_len);
		q->held_len = 0;
		finish(d, q, ev->finish == SKV_CTL_FINISH_STOP ? SKV_WIRE_FINISH_STOP : SKV_WIRE_FINISH_LENGTH,
		       SKV_WIRE_ERR_NONE, NULL);
		return;
	case SKV_CTL_FINISH_CANCELLED:
		finish(d, q, SKV_WIRE_FINISH_CANCELLED, SKV_WIRE_ERR_NONE, NULL);
		return;
	default: {
		char msg[96];
		snprintf(msg, sizeof(msg), "the worker refused the request: %s", strerror(-ev->error));
		finish(d, q, SKV_WIRE_FINISH_ERROR, SKV_WIRE_ERR_INTERNAL, msg);
		return;
	}
	}
}

void skvd_requests_worker_lost(struct skvd *d, struct skvd_replica *rp, bool blame)
{
	/* take the replica's whole list first: re-queued requests are linked again, maybe here */
	struct skvd_req *q = rp->reqs_head, *next;
	rp->reqs_head = rp->reqs_tail = NULL;
	rp->n_reqs = 0;
	rp->queued_prompt_tokens = 0;
	for (; q; q = next) {
		next = q->next_in_replica;
		q->next_in_replica = q->prev_in_replica = NULL;
		q->rep = NULL;
		if (q->state == SKVD_REQ_DONE)
			continue;
		if (q->streamed) {
			char msg[128];
			snprintf(msg, sizeof(msg), "worker %u died after the response began; retry the request", rp->index);
			finish(d, q, SKV_WIRE_FINISH_ERROR, SKV_WIRE_ERR_WORKER_LOST, msg);
			continue;
		}
		/* a request the worker had: it may be what kills workers, so its re-runs are capped */
		if (blame && q->state == SKVD_REQ_SENT && ++q->losses > d->cfg.max_request_retries) {
			char msg[160];
			snprintf(msg, sizeof(msg),
				 "the worker died %u times while running this request (the limit is %u re-runs, "
				 "[supervisor] max_request_retries)",
				 q->losses, d->cfg.max_request_retries);
			skvd_log(SKVD_WARNING, "req %llu | %s", (unsigned long long)q->id, msg);
			finish(d, q, SKV_WIRE_FINISH_ERROR, SKV_WIRE_ERR_WORKER_LOST, msg);
			continue;
		}
		/* nothing reached the client: run it again from the start, elsewhere if possible */
		q->state = SKVD_REQ_PENDING;
		q->n_generated = 0;
		q->held_len = 0;
		q->n_pending_ids = 0;
		skvd_detok_init(&q->detok);
		struct skvd_replica *to = pick_replica(d, q->n_prompt, rp);
		replica_link(to ? to : rp, q);
		if (to && to != rp)
			skvd_replica_flush(d, to);
	}
}

void skvd_on_replica_ready(struct skvd *d, struct skvd_replica *rp)
{
	skvd_replica_flush(d, rp);
	if (!d->ready_sent) {
		for (uint32_t i = 0; i < d->n_replicas; i++)
			if (d->replicas[i].state != SKVD_WORKER_READY)
				return;
		d->ready_sent = true;
		skvd_notify(d, "READY=1\nSTATUS=serving %s on %u replica%s", d->cfg.model_name, d->n_replicas,
			    d->n_replicas > 1 ? "s" : "");
		skvd_log(SKVD_NOTICE, "serving %s: %u replica%s ready", d->cfg.model_name, d->n_replicas,
			 d->n_replicas > 1 ? "s" : "");
	}
}

void skvd_requests_tick(struct skvd *d)
{
	uint64_t now = skv_now_ns();
	for (uint32_t i = 0; i < d->n_replicas; i++) {
		struct skvd_req *q = d->replicas[i].reqs_head, *next;
		for (; q; q = next) {
			next = q->next_in_replica;
			/* the request's own timeout, capped by the server's */
			uint64_t limit = q->timeout_ms ? q->timeout_ms : d->cfg.request_timeout_ms;
			if (q->timeout_ms && d->cfg.request_timeout_ms)
				limit = SKV_MIN(limit, (uint64_t)d->cfg.request_timeout_ms);
			if (limit && now - q->t_submit_ns > limit * 1000000ull) {
				char msg[96];
				snprintf(msg, sizeof(msg), "the request ran past its timeout of %llu ms",
					 (unsigned long long)limit);
				skvd_request_abort(d, q, SKV_WIRE_FINISH_ERROR, SKV_WIRE_ERR_TIMEOUT, msg);
			} else if (d->draining && now >= d->drain_deadline_ns) {
				skvd_request_abort(d, q, SKV_WIRE_FINISH_ERROR, SKV_WIRE_ERR_SHUTTING_DOWN,
						   "skvd is shutting down and the drain timeout passed");
			}
		}
	}
}
