/* submit.c: a submission record and its payload, decoded and checked field by field into a
 * request's input. Pure (no session, no I/O): front.c calls it for every record, and a fuzz
 * target feeds it hostile records. The record was copied out of shared memory by the caller; the
 * payload is copied out of the data area here, before anything looks at it.
 */
#include <stdarg.h>
#include <stdio.h>
#include <string.h>

#include "skvd-req.h"
#include "tokenizer.h"

/* Decodes the payload's input into prompt ids. A semantic error returns -EINVAL with msg. */
static int decode_input(struct skvd *d, const struct skv_wire_submit *r, const char *in, struct skvd_req_input *out,
			char *msg, size_t msg_len)
{
	struct skv_err err = {0};
	int rc;

	switch (r->input) {
	case SKV_INPUT_TEXT:
		if (r->input_len == 0) { /* BOS alone is not a prompt */
			snprintf(msg, msg_len, "prompt: empty");
			return -EINVAL;
		}
		if (skv_utf8_valid_prefix(in, r->input_len) != r->input_len) {
			snprintf(msg, msg_len, "prompt: not valid UTF-8");
			return -EINVAL;
		}
		rc = skvd_text_encode(d, in, r->input_len, &out->prompt, &out->n_prompt, &err);
		break;
	case SKV_INPUT_CHAT: {
		struct skvd_chat_msg m[256];
		uint32_t n = 0;
		size_t off = 0;
		while (off < r->input_len) {
			struct skv_wire_message h;
			if (r->input_len - off < sizeof(h) || n == SKV_ARRAY_SIZE(m)) {
				snprintf(msg, msg_len, "messages: malformed at byte %zu (or more than %zu messages)", off,
					 SKV_ARRAY_SIZE(m));
				return -EINVAL;
			}
			memcpy(&h, in + off, sizeof(h));
			off += sizeof(h);
			if (h.role > SKV_ROLE_ASSISTANT || h.len > r->input_len - off) {
				snprintf(msg, msg_len, "messages[%u]: role %u or length %u out of range", n, h.role, h.len);
				return -EINVAL;
			}
			if (skv_utf8_valid_prefix(in + off, h.len) != h.len) {
				snprintf(msg, msg_len, "messages[%u].content: not valid UTF-8", n);
				return -EINVAL;
			}
			m[n++] = (struct skvd_chat_msg){.role = h.role, .content = in + off, .len = h.len};
			off += SKV_ALIGN_UP((size_t)h.len, 4);
		}
		if (n == 0) {
			snprintf(msg, msg_len, "messages: none given");
			return -EINVAL;
		}
		rc = skvd_text_encode_chat(d, m, n, &out->prompt, &out->n_prompt, &err);
		break;
	}
	case SKV_INPUT_IDS:
		if (r->input_len % 4) {
			snprintf(msg, msg_len, "prompt ids: %u bytes is not a whole number of int32 ids", r->input_len);
			return -EINVAL;
		}
		out->n_prompt = r->input_len / 4;
		out->prompt = malloc(SKV_MAX(out->n_prompt, 1u) * sizeof(int32_t));
		if (!out->prompt) {
			snprintf(msg, msg_len, "out of memory");
			return -ENOMEM;
		}
		memcpy(out->prompt, in, r->input_len);
		for (uint32_t i = 0; i < out->n_prompt; i++)
			if (out->prompt[i] < 0 || (uint32_t)out->prompt[i] >= d->model.vocab) {
				snprintf(msg, msg_len, "prompt ids[%u] = %d is outside the vocabulary [0, %u)", i,
					 out->prompt[i], d->model.vocab);
				return -EINVAL;
			}
		rc = 0;
		break;
	default:
		snprintf(msg, msg_len, "input kind %u is unknown (1 text, 2 chat, 3 ids)", r->input);
		return -EINVAL;
	}
	if (rc < 0) {
		skv_strscpy(msg, err.msg, msg_len);
		return -EINVAL;
	}
	return 0;
}

void skvd_req_input_done(struct skvd_req_input *in)
{
	free(in->prompt);
	for (uint32_t i = 0; i < in->n_stop; i++)
		free(in->stop[i]);
	free(in->stop);
	*in = (struct skvd_req_input){0};
}

/* A refusal of this request alone: error code and message. */
static int refuse(uint32_t *ret_error, uint32_t error, char *msg, size_t msg_len, const char *fmt, ...)
	SKV_PRINTF(5, 6);
static int refuse(uint32_t *ret_error, uint32_t error, char *msg, size_t msg_len, const char *fmt, ...)
{
	va_list ap;
	va_start(ap, fmt);
	vsnprintf(msg, msg_len, fmt, ap);
	va_end(ap);
	*ret_error = error;
	return 0;
}

int skvd_submit_decode(struct skvd *d, const struct skv_wire_submit *r, const char *data, uint32_t data_size,
		       struct skvd_req_input *in, uint32_t *ret_error, char *msg, size_t msg_len)
{
	const struct skvd_config *c = &d->cfg;
	_cleanup_free_ char *payload = NULL;
	int rc;

	*in = (struct skvd_req_input){.client_id = r->id};
	if (r->version != SKV_WIRE_VERSION || r->type != SKV_SUB_REQUEST || r->flags & ~(uint32_t)SKV_REQ__ALL)
		return -EPROTO;
	/* the payload must lie inside the data area; where it lies is the client's business */
	if ((uint64_t)r->data_offset + r->data_len > data_size || r->input_len > r->data_len)
		return -EPROTO;
	if (r->data_len > c->max_request_bytes)
		return refuse(ret_error, SKV_WIRE_ERR_INVALID, msg, msg_len,
			      "request: %u bytes, more than max_request_bytes (%u)", r->data_len, c->max_request_bytes);

	/* sampling and limits; unset fields take the model's generation_config */
	in->flags = r->flags;
	in->max_tokens = r->max_tokens ? r->max_tokens : c->default_max_tokens;
	if (in->max_tokens > c->max_new_tokens)
		return refuse(ret_error, SKV_WIRE_ERR_INVALID, msg, msg_len, "max_tokens: %u is over the limit of %u",
			      in->max_tokens, c->max_new_tokens);
	in->temperature = r->flags & SKV_REQ_TEMPERATURE ? r->temperature : d->model.gen_temperature;
	in->top_p = r->flags & SKV_REQ_TOP_P ? r->top_p : d->model.gen_top_p;
	in->top_k = r->flags & SKV_REQ_TOP_K ? r->top_k : (uint32_t)SKV_MAX(d->model.gen_top_k, 0);
	if (!(in->temperature >= 0.0f && in->temperature <= SKV_WIRE_MAX_TEMPERATURE))
		return refuse(ret_error, SKV_WIRE_ERR_INVALID, msg, msg_len, "temperature: %g is outside [0, %g]",
			      (double)r->temperature, (double)SKV_WIRE_MAX_TEMPERATURE);
	if (!(in->top_p > 0.0f && in->top_p <= 1.0f))
		return refuse(ret_error, SKV_WIRE_ERR_INVALID, msg, msg_len, "top_p: %g is outside (0, 1]", (double)r->top_p);
	if (in->top_k > SKV_WIRE_MAX_TOP_K)
		return refuse(ret_error, SKV_WIRE_ERR_INVALID, msg, msg_len, "top_k: %u is over the limit of %u", r->top_k,
			      SKV_WIRE_MAX_TOP_K);
	/* unseeded: a fresh seed per request */
	in->seed = r->flags & SKV_REQ_SEED ? r->seed : skv_now_ns() ^ (d->next_req_id * 0x9e3779b97f4a7c15ull);
	in->timeout_ms = r->timeout_ms;
	if (r->n_stop > c->max_stop)
		return refuse(ret_error, SKV_WIRE_ERR_INVALID, msg, msg_len, "stop: %u strings, more than the limit of %u",
			      r->n_stop, c->max_stop);

	/* copy out first: the client may rewrite the data area at any moment */
	payload = malloc((size_t)r->data_len + 1);
	if (!payload)
		return refuse(ret_error, SKV_WIRE_ERR_INTERNAL, msg, msg_len, "out of memory");
	memcpy(payload, data + r->data_offset, r->data_len);
	payload[r->data_len] = '\0';

	/* stop strings: n_stop NUL-terminated strings filling the rest of the payload exactly */
	if (r->n_stop && !(in->stop = calloc(r->n_stop, sizeof(char *))))
		return refuse(ret_error, SKV_WIRE_ERR_INTERNAL, msg, msg_len, "out of memory");
	size_t off = r->input_len;
	for (uint32_t i = 0; i < r->n_stop; i++) {
		const char *p = payload + off;
		size_t len = strnlen(p, r->data_len - off);
		if (off + len >= r->data_len || len == 0 || len > c->max_stop_bytes || skv_utf8_valid_prefix(p, len) != len) {
			skvd_req_input_done(in);
			return refuse(ret_error, SKV_WIRE_ERR_INVALID, msg, msg_len,
				      "stop[%u]: must be 1 to %u bytes of UTF-8, NUL-terminated inside the payload", i,
				      c->max_stop_bytes);
		}
		if (!(in->stop[in->n_stop] = strndup(p, len))) {
			skvd_req_input_done(in);
			return refuse(ret_error, SKV_WIRE_ERR_INTERNAL, msg, msg_len, "out of memory");
		}
		in->n_stop++;
		off += len + 1;
	}
	if (off != r->data_len) {
		skvd_req_input_done(in);
		return refuse(ret_error, SKV_WIRE_ERR_INVALID, msg, msg_len, "payload: %u bytes after the stop strings",
			      (unsigned)(r->data_len - off));
	}

	rc = decode_input(d, r, payload, in, msg, msg_len);
	if (rc < 0) {
		skvd_req_input_done(in);
		*ret_error = rc == -ENOMEM ? SKV_WIRE_ERR_INTERNAL : SKV_WIRE_ERR_INVALID;
		return 0;
	}
	if (in->n_prompt == 0) {
		skvd_req_input_done(in);
		return refuse(ret_error, SKV_WIRE_ERR_INVALID, msg, msg_len, "prompt: empty");
	}
	if (in->flags & SKV_REQ_COUNT_ONLY)
		return 1; /* only counted: the limits below are the caller's to apply */
	if (in->n_prompt > c->max_prompt_tokens) {
		uint32_t n = in->n_prompt;
		skvd_req_input_done(in);
		return refuse(ret_error, SKV_WIRE_ERR_CONTEXT, msg, msg_len,
			      "prompt: %u tokens, more than max_prompt_tokens (%u)", n, c->max_prompt_tokens);
	}
	if ((uint64_t)in->n_prompt + in->max_tokens > d->max_context) {
		uint32_t n = in->n_prompt, m = in->max_tokens;
		skvd_req_input_done(in);
		return refuse(ret_error, SKV_WIRE_ERR_CONTEXT, msg, msg_len,
			      "prompt (%u tokens) + max_tokens (%u) = %llu exceeds the context of %u tokens", n, m,
			      (unsigned long long)n + m, d->max_context);
	}
	return 1;
}
