/* fuzz-http-request: skv-http's parser of OpenAI request bodies (http/api.c), the JSON any
 * client on the network can send, for both endpoints. A refusal must be a 4xx error object
 * that serialises to JSON; an accepted request must be one libskv would take the shape of
 * (a prompt of its kind, stop strings within the list, NUL-free) and its response bodies must
 * build. */
#include <json-c/json.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "http-api.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static void check_json(char *s)
{
	if (!s)
		abort();
	json_object *o = json_tokener_parse(s);
	if (!o)
		abort();
	json_object_put(o);
	free(s);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	for (int ep = SKV_HTTP_ENDPOINT_CHAT; ep <= SKV_HTTP_ENDPOINT_COMPLETIONS; ep++) {
		struct skv_http_req r;
		struct skv_http_error e;
		if (skv_http_req_parse((enum skv_http_endpoint)ep, (const char *)data, size, &r, &e) < 0) {
			if (e.status < 400 || e.status > 599 || !e.message[0])
				abort();
			check_json(skv_http_error_json(&e));
			continue;
		}
		const struct skv_request *q = &r.req;
		if (!r.model || (ep == SKV_HTTP_ENDPOINT_CHAT) != (q->kind == SKV_PROMPT_CHAT))
			abort();
		if (q->kind == SKV_PROMPT_CHAT && (!q->n_messages || !q->messages))
			abort();
		if (q->kind == SKV_PROMPT_TEXT && (!q->text || !q->text_len || memchr(q->text, '\0', q->text_len)))
			abort();
		if (q->kind == SKV_PROMPT_IDS && (!q->n_ids || !q->ids))
			abort();
		for (size_t i = 0; i < q->n_ids; i++)
			if (q->ids[i] < 0)
				abort();
		if (q->n_stop > SKV_HTTP_MAX_STOP || (q->n_stop && q->stop != r.stop))
			abort();
		for (size_t i = 0; i < q->n_stop; i++)
			if (!q->stop[i][0])
				abort();
		if (r.include_usage && !r.stream)
			abort();
		struct skv_http_meta m = {.id = "x", .created = 1, .model = r.model};
		check_json(skv_http_response_json((enum skv_http_endpoint)ep, &m, r.model, strlen(r.model),
						  SKV_FINISH_REASON_STOP, 1, 2));
		skv_http_req_done(&r);
	}
	return 0;
}
