/* chat.h: chat messages to prompt text, byte-identical to transformers' apply_chat_template with
 * the Llama-3 family's templates, rendered natively (there is no Jinja interpreter here).
 *
 * Known templates (model/templates/, compiled in): Meta's Llama-3.1 template (Llama-3.1-8B/70B/
 * 405B-Instruct) for system, user and assistant messages and ipython/tool results with string
 * content, without tool definitions: the system header with "Cutting Knowledge Date: December
 * 2023" and "Today Date: 26 Jul 2024", every content |trim'ed (Python's str.strip), one BOS;
 * and the plain Llama-3 template (Meta-Llama-3-8B-Instruct). A model's tokenizer_config.json
 * chat_template (or its chat_template.jinja) is recognised by comparing it to these texts; any
 * other template loads but refuses to render, with a message saying so (clients can still send
 * pre-rendered prompts).
 *
 * Stop ids: generation_config.json's eos_token_id (an int or a list), tokenizer_config.json's
 * eos_token, and, for a Llama-3 template, <|eot_id|>, <|eom_id|> and <|end_of_text|> when the
 * tokenizer has them.
 */
#pragma once

#include <sys/types.h>

#include "skv-base.h"
#include "tokenizer.h"

enum skv_chat_template {
	SKV_CHAT_TEMPLATE_NONE = 0,    /* tokenizer_config.json has no chat template */
	SKV_CHAT_TEMPLATE_UNKNOWN = 1, /* it has one this renderer does not know */
	SKV_CHAT_TEMPLATE_LLAMA3 = 2,  /* Meta-Llama-3-8B-Instruct */
	SKV_CHAT_TEMPLATE_LLAMA31 = 3, /* Llama-3.1-8B-Instruct */
};

#define SKV_CHAT_MAX_STOP 16

/* What a model directory says about chat: the template, the BOS/EOS texts, the stop ids. */
struct skv_chat {
	enum skv_chat_template tmpl;
	char *bos_token; /* tokenizer_config.json bos_token ("" when none) */
	char *eos_token; /* eos_token ("" when none) */
	size_t n_gen_eos;
	int32_t gen_eos[SKV_CHAT_MAX_STOP]; /* generation_config.json eos_token_id */
};

struct skv_chat_message {
	const char *role;
	size_t role_len;
	const char *content;
	size_t content_len;
};

/* The compiled-in template texts (exact file bytes), and their names ("llama-3.1", "llama-3"). */
const char *skv_chat_template_text(enum skv_chat_template t);
const char *skv_chat_template_name(enum skv_chat_template t);
/* A template by name; SKV_CHAT_TEMPLATE_UNKNOWN when the name is not one of the above. */
enum skv_chat_template skv_chat_template_from_name(const char *name);
/* Which known template a chat_template text is (trailing whitespace and the spelling of "\n" in
 * string literals aside); SKV_CHAT_TEMPLATE_UNKNOWN otherwise. */
enum skv_chat_template skv_chat_template_identify(const char *text, size_t len);

/* Reads DIR/tokenizer_config.json (required), DIR/chat_template.jinja (which takes precedence
 * when present, as in transformers) and DIR/generation_config.json (optional). */
int skv_chat_load(const char *dir, struct skv_chat **ret, struct skv_err *err);
/* Parses tokenizer_config.json text (name for messages). */
int skv_chat_parse_config(const char *json, size_t len, const char *name, struct skv_chat **ret, struct skv_err *err);
/* A chat config for a known template with Llama-3's <|begin_of_text|> / <|eot_id|>, for a bare
 * tokenizer.json. */
int skv_chat_new(enum skv_chat_template t, struct skv_chat **ret, struct skv_err *err);
void skv_chat_free(struct skv_chat *c);
static inline void skv_chat_freep(struct skv_chat **p) { skv_chat_free(*p); }
#define _cleanup_chat_ _cleanup_(skv_chat_freep)

/* Renders messages. Returns the length and a malloc'ed NUL-terminated text in *ret_text, or
 * -ENOTSUP (unknown or missing template: err says to send a pre-rendered prompt), -EINVAL (no
 * messages: transformers refuses an empty conversation too), -EILSEQ (not UTF-8). */
ssize_t skv_chat_render(const struct skv_chat *c, const struct skv_chat_message *msgs, size_t n,
			bool add_generation_prompt, char **ret_text, struct skv_err *err);

/* Parses a JSON array of {"role": "...", "content": "..."} objects. *ret_msgs is one malloc'ed
 * block holding the array and copies of the strings (free() it). */
int skv_chat_messages_parse(const char *json, size_t len, struct skv_chat_message **ret_msgs, size_t *ret_n,
			    struct skv_err *err);

/* The stop ids (deduplicated, at most cap); returns how many. */
size_t skv_chat_stop_ids(const struct skv_chat *c, const struct skv_tokenizer *tok, int32_t *ids, size_t cap);

/* Python's str.strip(): the bounds of s without leading and trailing whitespace (str.isspace). */
void skv_chat_trim(const char *s, size_t len, size_t *ret_start, size_t *ret_len);
