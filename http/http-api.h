/* http-api.h: the OpenAI-compatible request and response bodies, as pure functions.
 *
 * skv_http_req_parse turns the JSON body of POST /v1/chat/completions or /v1/completions into a
 * libskv request, or into an OpenAI error object that names the field and the limit. The
 * builders write the response bodies (chat.completion, text_completion, their streamed chunks,
 * error objects). Nothing here talks to skvd or to a socket: the unit test and the fuzz target
 * drive these functions directly.
 *
 * What is accepted, and what is refused with a message (docs/http.md has the table): model,
 * messages (system/developer, user, assistant; string content or text parts), prompt (a string,
 * token ids, or a one-element list of either), max_tokens, max_completion_tokens, temperature,
 * top_p, top_k, seed, stop, n = 1, user, stream, stream_options.include_usage, ignore_eos;
 * logprobs, top_logprobs, echo, best_of > 1, tools, penalties and logit_bias are refused
 * because the engine does not give them. Unknown fields are ignored, as vLLM does.
 */
#pragma once

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "skv.h"

enum skv_http_endpoint {
	SKV_HTTP_ENDPOINT_CHAT = 0,	   /* POST /v1/chat/completions */
	SKV_HTTP_ENDPOINT_COMPLETIONS = 1, /* POST /v1/completions */
};

/* The most stop strings the gateway takes (skvd's own max_stop may be lower: libskv says so). */
#define SKV_HTTP_MAX_STOP 64
#define SKV_HTTP_MAX_MESSAGES 4096

/* An OpenAI error object, and the HTTP status that goes with it. */
struct skv_http_error {
	int status;	  /* 400, 401, 404, 413, 429, 500, 503 ... */
	const char *type; /* "invalid_request_error", ... (static) */
	const char *code; /* "context_length_exceeded", ... or NULL (static) */
	char param[128];	  /* the field, "" when none */
	char message[512];
	uint32_t retry_after_s; /* 429 and 503: the Retry-After header, 0 for none */
};

/* Fills e and returns -EINVAL (for `return skv_http_error_set(...)`). param may be NULL. */
int skv_http_error_set(struct skv_http_error *e, int status, const char *code, const char *param, const char *fmt,
		       ...) __attribute__((format(printf, 5, 6)));

/* A parsed request: req points into the storage the struct owns. */
struct skv_http_req {
	enum skv_http_endpoint endpoint;
	struct skv_request req;
	char *model; /* as the client named it */
	bool stream, include_usage;
	struct skv_message *messages; /* [req.n_messages] */
	char **contents;	      /* [req.n_messages] the messages' texts */
	char *prompt;		      /* SKV_PROMPT_TEXT */
	int32_t *ids;		      /* SKV_PROMPT_IDS */
	char *stop_buf[SKV_HTTP_MAX_STOP];
	const char *stop[SKV_HTTP_MAX_STOP];
};

/* Parses body[len] (untrusted: any bytes) for endpoint. On success fills *ret (free it with
 * skv_http_req_done) and returns 0; on failure fills *err (status 400, the field in param)
 * and returns -EINVAL, or -ENOMEM. */
int skv_http_req_parse(enum skv_http_endpoint endpoint, const char *body, size_t len, struct skv_http_req *ret,
		       struct skv_http_error *err);
void skv_http_req_done(struct skv_http_req *r);

/* The OpenAI error object {"error": {...}} as a malloc'd NUL-terminated string, or NULL. */
char *skv_http_error_json(const struct skv_http_error *e);

/* Maps a FINAL event's error (finish is SKV_FINISH_REASON_ERROR or _CANCELLED) to an error
 * object; param names the prompt field of the endpoint for context errors. */
void skv_http_error_from_final(enum skv_http_endpoint endpoint, const struct skv_event *final, struct skv_http_error *e);

/* What a response carries besides the text. */
struct skv_http_meta {
	const char *id;	   /* "chatcmpl-..." / "cmpl-..." */
	int64_t created;   /* Unix seconds */
	const char *model; /* the served model's name */
};

/* A whole (non-streamed) response body, malloc'd, or NULL. */
char *skv_http_response_json(enum skv_http_endpoint endpoint, const struct skv_http_meta *m, const char *text,
			     size_t len, enum skv_finish_reason finish, uint32_t prompt_tokens,
			     uint32_t completion_tokens);

/* One server-sent event "data: {chunk}\n\n", malloc'd, or NULL. A chunk carries text (with
 * role for the first chat chunk), or finish (a finish reason, text empty), or usage only
 * (usage_only: choices is empty). include_usage adds "usage": null to the other chunks. */
struct skv_http_chunk {
	const char *text;
	size_t len;
	bool first; /* chat: the delta carries "role": "assistant" */
	enum skv_finish_reason finish; /* NONE in text chunks */
	bool usage_only;
	bool include_usage;
	uint32_t prompt_tokens, completion_tokens;
};
char *skv_http_chunk_sse(enum skv_http_endpoint endpoint, const struct skv_http_meta *m, const struct skv_http_chunk *c,
			 size_t *ret_len);

/* The OpenAI finish_reason for a finish ("stop", "length"; others "stop"). */
const char *skv_http_finish_reason(enum skv_finish_reason f);

/* The string written as system_fingerprint. */
#define SKV_HTTP_FINGERPRINT "fp_swiftkv_0.1"
