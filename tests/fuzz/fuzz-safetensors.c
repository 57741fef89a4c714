/* fuzz-safetensors: the safetensors header parser on arbitrary bytes (a whole "file").
 * Whatever it accepts must be internally consistent: every tensor's range inside the data. */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "safetensors.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);
int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	struct skv_st_header *h = NULL;
	struct skv_err err = {0};

	if (skv_st_header_parse(data, size, "fuzz.safetensors", &h, &err) < 0) {
		if (!err.msg[0])
			abort(); /* a rejection always says why */
		return 0;
	}
	for (size_t i = 0; i < h->n; i++) {
		const struct skv_st_tensor *t = &h->tensors[i];
		if (t->end < t->begin || h->data_offset + t->end > size ||
		    (const uint8_t *)t->data != data + h->data_offset + t->begin)
			abort();
		/* touch the bytes: ASan catches a range outside the input */
		volatile uint8_t sink = 0;
		for (uint64_t b = t->begin; b < t->end; b += 64)
			sink ^= data[h->data_offset + b];
		(void)sink;
	}
	skv_st_header_free(h);
	return 0;
}
