/* fuzz-gguf: the GGUF parser (model/gguf.c) on arbitrary bytes (a whole "file"), and the
 * dequantization of whatever tensors it accepts. Whatever it accepts must be consistent: every
 * tensor's bytes inside the input, its size the one its type and extents give, metadata strings
 * inside the input. */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "gguf.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);
int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	struct skv_gguf *g = NULL;
	struct skv_err err = {0};

	if (skv_gguf_parse(data, size, "fuzz.gguf", &g, &err) < 0) {
		if (!err.msg[0])
			abort(); /* a rejection always says why */
		return 0;
	}
	for (size_t i = 0; i < g->n_kv; i++) {
		const struct skv_gguf_kv *kv = &g->kv[i];
		if (kv->type == SKV_GGUF_V_STRING &&
		    ((const uint8_t *)kv->s.p < data || (const uint8_t *)kv->s.p + kv->s.len > data + size))
			abort();
		if (kv->type == SKV_GGUF_V_ARRAY && kv->arr_type != SKV_GGUF_V_STRING && kv->n)
			(void)skv_gguf_arr_int(kv, kv->n - 1); /* ASan: the last element is inside */
		int64_t v;
		double d;
		(void)skv_gguf_get_int(g, kv->key, INT64_MIN, INT64_MAX, &v, &err);
		(void)skv_gguf_get_float(g, kv->key, &d, &err);
	}
	for (size_t i = 0; i < g->n_tensors; i++) {
		const struct skv_gguf_tensor *t = &g->tensors[i];
		uint32_t be, bb;
		if (skv_gguf_type_block(t->type, &be, &bb) < 0 || t->nbytes != t->numel / be * bb ||
		    t->data < data + g->data_offset || t->data + t->nbytes > data + size)
			abort();
		if (t->numel > (1u << 16))
			continue;
		float *out = malloc(t->numel * sizeof(float));
		if (out && skv_gguf_dequantize(t->type, t->data, out, t->numel) != 0)
			abort();
		free(out);
	}
	skv_gguf_free(g);
	return 0;
}
