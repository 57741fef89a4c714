/* skv-json.c: one strict JSON parse for every JSON file and payload the appliance reads
 * (config.json, tokenizer_config.json, chat messages): json-c in strict mode, only whitespace
 * after the document, errors that name the input and the byte offset. */
#include <errno.h>
#include <json-c/json.h>
#include <limits.h>
#include <stdbool.h>
#include <string.h>

#include "skv-json.h"

void skv_json_putp(json_object **o)
{
	if (*o)
		json_object_put(*o);
}

int skv_json_parse(const char *text, size_t len, const char *name, json_object **ret, struct skv_err *err)
{
	json_tokener *tok;
	json_object *o;
	enum json_tokener_error jerr;

	if (len > INT_MAX)
		return skv_err_set(err, -EFBIG, "%s: too large for a JSON document", name);
	tok = json_tokener_new();
	if (!tok)
		return skv_err_set(err, -ENOMEM, "%s: out of memory", name);
	json_tokener_set_flags(tok, JSON_TOKENER_STRICT);
	o = json_tokener_parse_ex(tok, text, (int)len);
	jerr = json_tokener_get_error(tok);
	if (!o || jerr != json_tokener_success || (size_t)json_tokener_get_parse_end(tok) < len) {
		/* trailing whitespace is fine, anything else is not */
		size_t end = o ? json_tokener_get_parse_end(tok) : 0;
		bool only_ws = o != NULL;
		for (size_t i = end; o && i < len; i++)
			if (!strchr(" \t\r\n", text[i]))
				only_ws = false;
		if (!only_ws || jerr != json_tokener_success) {
			int off = (int)json_tokener_get_parse_end(tok);
			if (o)
				json_object_put(o);
			json_tokener_free(tok);
			return skv_err_set(err, -EINVAL, "%s: invalid JSON near byte %d: %s", name, off,
					   jerr != json_tokener_success ? json_tokener_error_desc(jerr)
									: "trailing data");
		}
	}
	json_tokener_free(tok);
	*ret = o;
	return 0;
}

