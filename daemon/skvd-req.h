/* skvd-req.h: what skvd's files call across each other (requests, replicas, sessions, text). */
#pragma once

#include "skvd.h"

/* supervisor.c */
int skvd_replicas_create(struct skvd *d, struct skv_err *err);
void skvd_replicas_destroy(struct skvd *d);
void skvd_replicas_tick(struct skvd *d);
void skvd_replica_flush(struct skvd *d, struct skvd_replica *rp);
void skvd_replica_restart(struct skvd_replica *rp);
bool skvd_replicas_fresh(const struct skvd *d);
void skvd_replicas_stop(struct skvd *d);
const char *skvd_worker_state_name(enum skvd_worker_state s);
/* The blocks a KV arena of kv_bytes holds for this image and backend, through the engine's own
 * check (skv_image_kv_check); the error names [engine] kv_cache_bytes (configured: set in the
 * file rather than sized by skvd). */
int skvd_kv_blocks(const struct skv_image_header *img, enum skvd_backend backend, uint64_t kv_bytes,
		   uint32_t block_size, bool configured, uint64_t *ret_blocks, struct skv_err *err);

/* request.c */
/* Validated input of a request, built by front.c from a submission record. */
struct skvd_req_input {
	uint64_t client_id;
	uint32_t flags, max_tokens, top_k, timeout_ms;
	float temperature, top_p;
	uint64_t seed;
	int32_t *prompt; /* owned: handed to the request */
	uint32_t n_prompt;
	char **stop; /* owned: handed to the request */
	uint32_t n_stop;
};
/* submit.c: a submission record (copied out of the ring) and its payload in the data area
 * (data[0..data_size), copied out here) into a request's input: 1 decoded, 0 refused (error and
 * msg say why: that request alone ends), -EPROTO (malformed: close the client). */
int skvd_submit_decode(struct skvd *d, const struct skv_wire_submit *r, const char *data, uint32_t data_size,
		       struct skvd_req_input *in, uint32_t *ret_error, char *msg, size_t msg_len);
void skvd_req_input_done(struct skvd_req_input *in);

/* Routes a new request; on failure fills error/message (BUSY, SHUTTING_DOWN, ...) and returns
 * negative, leaving the input to the caller. */
int skvd_request_start(struct skvd *d, struct skvd_session *s, struct skvd_req_input *in, uint32_t *ret_error,
		       char *msg, size_t msg_len);
void skvd_request_on_event(struct skvd *d, struct skvd_replica *rp, const struct skv_ctl_evt *ev);
/* The replica's worker is gone: requests it had that streamed nothing are re-run (a loss each
 * when `blame`: it died, rather than being restarted on purpose), the others end. */
void skvd_requests_worker_lost(struct skvd *d, struct skvd_replica *rp, bool blame);
void skvd_on_replica_ready(struct skvd *d, struct skvd_replica *rp);
/* Ends a request early: cancels it at its worker and sends the final record with `finish`
 * (and `error` + message). */
void skvd_request_abort(struct skvd *d, struct skvd_req *q, uint32_t finish, uint32_t error, const char *msg);
void skvd_requests_tick(struct skvd *d); /* timeouts, drain deadline */
void skvd_requests_reap(struct skvd *d);
struct skvd_req *skvd_request_find(struct skvd *d, uint64_t id);

/* front.c */
int skvd_front_init(struct skvd *d, struct skv_err *err);
void skvd_front_done(struct skvd *d);
void skvd_sessions_flush(struct skvd *d); /* before waiting: parked records, doorbells, reaping */
void skvd_sessions_tick(struct skvd *d);
/* Queues one completion record for the session (copied). */
void skvd_session_emit(struct skvd *d, struct skvd_session *s, const void *rec);
void skvd_session_close(struct skvd *d, struct skvd_session *s, const char *why);
int skvd_resolve_groups(const struct skvd_config *c, struct skvd_groups *g, struct skv_err *err);
/* After a reload: the sockets skvd bound itself get the groups' ownership and mode again
 * (socket-activated ones are systemd's to set). Logs what it cannot do. */
void skvd_front_apply_groups(struct skvd *d);
/* 1 when the socket's peer may come in (root, skvd's own user, or a member of `gid` unless
 * `any`), 0 when not, negative errno; its credentials either way. */
int skvd_peer_in_group(int fd, gid_t gid, bool any, uid_t *ret_uid, gid_t *ret_gid, pid_t *ret_pid);
int skvd_bind_admin(struct skvd *d, struct skv_err *err);

/* skvd-main.c */
void skvd_begin_drain(struct skvd *d, const char *why);
int skvd_reload(struct skvd *d, char *msg, size_t msg_len);

/* admin.c */
int skvd_admin_init(struct skvd *d, struct skv_err *err);
void skvd_admin_done(struct skvd *d);
void skvd_admin_tick(struct skvd *d); /* closes idle admin connections */

/* text.c: the model's tokenizer and chat template, as skvd uses them */
int skvd_text_load(struct skvd *d, struct skv_err *err);
void skvd_text_free(struct skvd *d);
/* Idle housekeeping: frees the tokenizer's workspace after big prompts (made again when needed). */
void skvd_text_tick(struct skvd *d);
/* A raw prompt: BOS added, special-token strings in the text treated as plain text. */
int skvd_text_encode(struct skvd *d, const char *text, size_t len, int32_t **ret, uint32_t *ret_n,
		     struct skv_err *err);
/* Chat messages through the model's template; message contents are plain text. */
struct skvd_chat_msg {
	uint32_t role;
	const char *content;
	size_t len;
};
int skvd_text_encode_chat(struct skvd *d, const struct skvd_chat_msg *m, uint32_t n, int32_t **ret,
			  uint32_t *ret_n, struct skv_err *err);
/* Incremental detokenizer: never splits a UTF-8 character; special tokens produce no text. */
void skvd_detok_init(struct skv_tokenizer_stream *s);
/* Appends the text of `id` (possibly none yet) to *buf (grown as needed). */
int skvd_detok_push(struct skvd *d, struct skv_tokenizer_stream *s, int32_t id, char **buf, size_t *len, size_t *cap);
/* End of the stream: an unfinished character becomes U+FFFD. */
int skvd_detok_flush(struct skv_tokenizer_stream *s, char **buf, size_t *len, size_t *cap);

/* notify.c: systemd */
void skvd_notify(struct skvd *d, const char *fmt, ...) SKV_PRINTF(2, 3);
void skvd_journal_request(struct skvd *d, const struct skvd_req *q);
int skvd_listen_fds(struct skvd *d, struct skv_err *err);

/* metrics.c */
char *skvd_metrics_text(struct skvd *d);
void skvd_metrics_observe(struct skvd *d, const struct skvd_req *q);
