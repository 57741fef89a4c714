/* fuzz-skvd-submit: skvd's decoding of a client's submission (daemon/submit.c) on arbitrary
 * bytes: the first 256 bytes are the record, the rest the session's data area. Also the
 * consumer side of a ring whose indices a hostile client wrote. What is accepted must hold
 * everything the rest of skvd assumes. The model is the Llama-3-shaped tokenizer fixture. */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "skvd-req.h"

static struct skvd d;

int LLVMFuzzerInitialize(int *argc, char ***argv);
int LLVMFuzzerInitialize(int *argc, char ***argv)
{
	struct skv_err err = {0};
	(void)argc;
	(void)argv;
	skvd_config_defaults(&d.cfg);
	d.cfg.max_request_bytes = 1 << 16;
	d.cfg.max_prompt_tokens = 4096;
	d.cfg.max_new_tokens = 512;
	d.cfg.default_max_tokens = 16;
	skv_strscpy(d.cfg.model_path, SKV_SRCDIR "/tests/fixtures/tokenizer/llama3", sizeof(d.cfg.model_path));
	d.model.vocab = 128256;
	d.model.gen_top_p = 1.0f;
	d.max_context = 8192;
	d.next_req_id = 1;
	if (skvd_text_load(&d, &err) < 0)
		abort();
	return 0;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);
int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	struct skv_wire_submit r;
	struct skvd_req_input in;
	uint32_t error = 0;
	char msg[200];

	if (size < sizeof(r))
		return 0;
	memcpy(&r, data, sizeof(r));
	r.version = SKV_WIRE_VERSION; /* reach past the first check most of the time */
	if (r.type != SKV_SUB_CANCEL)
		r.type = SKV_SUB_REQUEST;
	const char *area = (const char *)data + sizeof(r);
	uint32_t area_size = (uint32_t)(size - sizeof(r));
	msg[0] = 0;
	int rc = skvd_submit_decode(&d, &r, area, area_size, &in, &error, msg, sizeof(msg));
	if (rc == 1) {
		if (in.n_prompt == 0 || in.n_prompt > d.cfg.max_prompt_tokens ||
		    (uint64_t)in.n_prompt + in.max_tokens > d.max_context || in.n_stop > d.cfg.max_stop ||
		    !(in.top_p > 0 && in.top_p <= 1) || !(in.temperature >= 0))
			abort();
		for (uint32_t i = 0; i < in.n_prompt; i++)
			if (in.prompt[i] < 0 || (uint32_t)in.prompt[i] >= d.model.vocab)
				abort();
		for (uint32_t i = 0; i < in.n_stop; i++)
			if (!in.stop[i][0] || strlen(in.stop[i]) > d.cfg.max_stop_bytes)
				abort();
		skvd_req_input_done(&in);
	} else if (rc == 0) {
		if (!msg[0] || error == SKV_WIRE_ERR_NONE) /* a refusal always says why */
			abort();
	} else if (rc != -EPROTO) {
		abort();
	}

	/* a ring whose indices the peer wrote: the consumer never reads past what it may */
	struct skv_ring_shared sh;
	uint8_t recs[4 * 8];
	struct skv_ring ring;
	memset(&sh, 0, sizeof(sh));
	uint32_t head, tail;
	memcpy(&head, data, 4);
	memcpy(&tail, data + 4, 4);
	atomic_store(&sh.head, head);
	skv_ring_attach(&ring, &sh, recs, 4, 8, false);
	atomic_store(&sh.tail, tail);
	int n = skv_ring_avail(&ring);
	if (n > 4 || (n < 0 && n != -EPROTO))
		abort();
	for (int i = 0; i < n; i++) {
		uint8_t out[8];
		skv_ring_pop(&ring, out);
	}
	return 0;
}
