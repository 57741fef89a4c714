/* skv-json.h: the strict JSON parse every reader of JSON shares (text/skv-json.c). */
#pragma once
#include <stddef.h>

#include "skv-base.h"

/* Parse one JSON document (json-c, strict): only whitespace may follow it; errors name `name`
 * and the byte offset. The caller owns *ret (json_object_put, or _cleanup_json_). */
struct json_object;
int skv_json_parse(const char *text, size_t len, const char *name, struct json_object **ret, struct skv_err *err);
void skv_json_putp(struct json_object **o);
#define _cleanup_json_ _cleanup_(skv_json_putp)
