/* chat.h: chat messages to prompt text, byte-identical to transformers' apply_chat_template:
 * the model's own Jinja chat template (tokenizer_config.json's chat_template, or the
 * chat_template.jinja beside it, which takes precedence as in transformers; or a file the
 * operator names) rendered by the sandboxed interpreter of jinja.h.
 *
 * The template sees what transformers passes: messages, add_generation_prompt, tools (None
 * when the request has none, as transformers passes it), documents (None), and the special
 * tokens of tokenizer_config.json (bos_token, eos_token, unk_token, pad_token, ... as strings).
 *
 * Stop ids: generation_config.json's eos_token_id (an int or a list), tokenizer_config.json's
 * eos_token, and the end-of-turn tokens a template writes (<|eot_id|>, <|eom_id|>, <|im_end|>,
 * <|end|>, <end_of_turn>, ...; those of SKV_CHAT_TURN_ENDS the template text holds) when the
 * tokenizer has them as special tokens.
 */
#pragma once

#include <sys/types.h>
#include <time.h>

#include "skv-base.h"
#include "tokenizer.h"

#define SKV_CHAT_MAX_STOP 16

struct skv_jinja;
struct json_object;

/* What a model directory says about chat: the template, the special tokens, the stop ids. */
struct skv_chat {
	struct skv_jinja *tmpl;	      /* NULL when there is no chat template */
	char *tmpl_text;	      /* its source (NULL when none) */
	struct json_object *specials; /* special-token variables: {"bos_token": "...", ...} */
	char *bos_token;	      /* tokenizer_config.json bos_token ("" when none) */
	char *eos_token;	      /* eos_token ("" when none) */
	size_t n_gen_eos;
	int32_t gen_eos[SKV_CHAT_MAX_STOP]; /* generation_config.json eos_token_id */
	time_t now;			    /* strftime_now's time; 0: the current time (tests fix it) */
};

struct skv_chat_message {
	const char *role;
	size_t role_len;
	const char *content;
	size_t content_len;
};

/* Reads DIR/tokenizer_config.json (required), DIR/chat_template.jinja (which takes precedence
 * when present, as in transformers) and DIR/generation_config.json (optional). template_file,
 * when not NULL, replaces the model's template (skvd.ini's [model] chat_template). A template
 * that does not parse fails the load with its line. */
int skv_chat_load(const char *dir, const char *template_file, struct skv_chat **ret, struct skv_err *err);
/* Parses tokenizer_config.json text (name for messages). */
int skv_chat_parse_config(const char *json, size_t len, const char *name, struct skv_chat **ret, struct skv_err *err);
/* Replaces c's template with text (name for messages); -EINVAL with the line when it does not
 * parse. */
int skv_chat_set_template(struct skv_chat *c, const char *text, size_t len, const char *name, struct skv_err *err);
/* A chat config with a template and the given BOS/EOS texts, for a bare tokenizer.json. */
int skv_chat_new(const char *tmpl, size_t len, const char *bos, const char *eos, struct skv_chat **ret,
		 struct skv_err *err);
void skv_chat_free(struct skv_chat *c);
static inline void skv_chat_freep(struct skv_chat **p) { skv_chat_free(*p); }
#define _cleanup_chat_ _cleanup_(skv_chat_freep)

/* Renders messages (a JSON array of message objects, any shape the template reads: content
 * strings or parts, tool_calls...) and tools (a JSON array, or NULL: the template sees None).
 * Returns the length and a malloc'ed NUL-terminated text in *ret_text, or -ENOTSUP (no
 * template: err says to send a pre-rendered prompt), -ECANCELED (the template called
 * raise_exception: err->msg is "chat template: " and its message), -EINVAL (a template
 * error, with its line), -E2BIG (a bound of the sandbox), -EILSEQ (output not UTF-8). */
ssize_t skv_chat_render_json(const struct skv_chat *c, const struct json_object *messages,
			     const struct json_object *tools, bool add_generation_prompt, char **ret_text,
			     struct skv_err *err);
/* The same for role/content messages; -EILSEQ when one is not UTF-8. */
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
