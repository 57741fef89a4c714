/* fuzz-config: config.json and generation_config.json parsing on arbitrary bytes. What it
 * accepts must satisfy the invariants the engine relies on. */
#include <stdint.h>
#include <stdlib.h>

#include "model-config.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);
int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	struct skv_model_config c;
	struct skv_err err = {0};

	if (skv_model_config_parse((const char *)data, size, "fuzz.json", &c, &err) < 0) {
		if (!err.msg[0])
			abort();
		return 0;
	}
	if (c.n_layers == 0 || c.n_layers > SKV_MAX_LAYERS || c.n_heads % c.n_kv_heads || c.head_dim % 2 ||
	    c.kv_layers == 0 || c.kv_layers > c.n_layers || c.kv_group == 0 || (c.n_layers - c.kv_layers) % c.kv_group ||
	    c.n_eos > SKV_MAX_EOS)
		abort();
	(void)skv_model_config_parse_generation((const char *)data, size, "fuzz.json", &c, &err);
	if (c.n_eos > SKV_MAX_EOS)
		abort();
	return 0;
}
