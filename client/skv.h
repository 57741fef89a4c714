/* skv.h: libskv, the client library of the swiftkv appliance. This header is its whole public
 * face; the wire format underneath is described in docs/protocol.md and libskv(3).
 *
 * A client handle holds one session with skvd: a SOCK_SEQPACKET connection, a shared memory
 * segment with a submission ring (requests, payloads in a data area) and a completion ring
 * (text deltas and final records), and two eventfd doorbells. Many requests may be in flight on
 * one session; their events interleave and carry the request's id and user_data.
 *
 * Conventions (like liburing): every call that can fail returns a negative errno; out
 * parameters are named ret_* and written only on success; skv_client_errmsg() says in words
 * what went wrong in the last call. The status of a call is separate from the outcome of a
 * request: a request that skvd refused or that failed still ends with a FINAL event whose
 * `finish` and `error` say why, and the call that delivered it returned 0.
 *
 * Everything skvd sends is treated as untrusted: the welcome, the segment's layout and seals,
 * ring indices and every record are checked; a violation makes the handle fail with -EPROTO
 * (and closes the session) instead of crashing the caller.
 *
 * A handle is not thread-safe: use it from one thread at a time (distinct handles are
 * independent). Nothing here installs signal handlers or writes to stdout/stderr.
 */
#ifndef SKV_H
#define SKV_H

#include <stddef.h>
#include <stdint.h>

#ifdef __cplusplus
extern "C" {
#endif

#ifndef SKV_EXPORT
#define SKV_EXPORT __attribute__((visibility("default")))
#endif

#define SKV_VERSION_MAJOR 0
#define SKV_VERSION_MINOR 1

/* Where skvd listens unless told otherwise; the environment variable overrides it. */
#define SKV_SOCKET_DEFAULT "/run/swiftkv/skvd.sock"
#define SKV_SOCKET_ENV "SKV_SOCKET"

/* The most text bytes one DELTA event carries (the wire record's size). */
#define SKV_DELTA_TEXT_MAX 184
/* The most token ids one DELTA event carries (with SKV_REQUEST_STREAM_IDS). */
#define SKV_DELTA_IDS_MAX 8

struct skv_client;

/* ---- requests ---- */

enum skv_prompt_kind {
	SKV_PROMPT_TEXT = 1, /* a raw prompt: tokenized with BOS, special-token strings as text */
	SKV_PROMPT_CHAT = 2, /* messages, rendered with the model's chat template */
	SKV_PROMPT_IDS = 3,  /* token ids, used as given */
};

enum skv_message_role {
	SKV_MESSAGE_SYSTEM = 0,
	SKV_MESSAGE_USER = 1,
	SKV_MESSAGE_ASSISTANT = 2,
};

/* One chat message. content is UTF-8 and borrowed for the duration of the call that reads it. */
struct skv_message {
	enum skv_message_role role;
	const char *content;
	size_t len; /* bytes of content; 0: strlen(content) (NULL content with 0: empty) */
};

/* Which optional fields of struct skv_request are set, and per-request switches. An unset
 * sampling field takes the model's default (generation_config.json). */
enum skv_request_flags {
	SKV_REQUEST_TEMPERATURE = 1u << 0, /* .temperature is set (0 = greedy) */
	SKV_REQUEST_TOP_P = 1u << 1,	   /* .top_p is set, in (0, 1] */
	SKV_REQUEST_TOP_K = 1u << 2,	   /* .top_k is set (0 = no top-k cut) */
	SKV_REQUEST_SEED = 1u << 3,	   /* .seed is set: the request reproduces when run alone */
	SKV_REQUEST_IGNORE_EOS = 1u << 4,  /* generate through end-of-sequence tokens */
	SKV_REQUEST_STREAM_IDS = 1u << 5,  /* DELTA events carry the token ids too */
	/* Count only: skvd tokenizes the prompt exactly as it would for generation (the chat
	 * template included) and ends the request at once, without running it: its FINAL event
	 * has finish STOP and prompt_tokens = the prompt's length (no DELTA). max_prompt_tokens and
	 * the context are not checked; every other field is. submit returns -EOPNOTSUPP when skvd
	 * does not offer it (an older skvd). */
	SKV_REQUEST_COUNT_ONLY = 1u << 6,
	/* PROGRESS events while the prompt is computed: one per prefill chunk of the engine but
	 * the last (a prompt that fits one chunk gets none). submit returns -EOPNOTSUPP when skvd
	 * does not offer them. */
	SKV_REQUEST_PROGRESS = 1u << 7,
};

/* A request, filled by the caller (start from skv_request_init). Every pointer is borrowed
 * only for the duration of skv_client_submit / skv_client_generate: the payload is copied into
 * the session's shared memory before the call returns. */
struct skv_request {
	enum skv_prompt_kind kind;
	uint32_t flags; /* enum skv_request_flags */

	const char *text; /* SKV_PROMPT_TEXT: UTF-8 */
	size_t text_len;  /* bytes of text; 0: strlen(text) */

	const struct skv_message *messages; /* SKV_PROMPT_CHAT: [n_messages], at least one */
	size_t n_messages;

	const int32_t *ids; /* SKV_PROMPT_IDS: [n_ids], at least one, each >= 0 */
	size_t n_ids;

	uint32_t max_tokens; /* tokens to generate at most; 0: skvd's default */
	uint32_t timeout_ms; /* the request ends with SKV_ERROR_CODE_TIMEOUT after this; 0: skvd's default */
	float temperature;   /* with SKV_REQUEST_TEMPERATURE: >= 0 */
	float top_p;	     /* with SKV_REQUEST_TOP_P: in (0, 1] */
	uint32_t top_k;	     /* with SKV_REQUEST_TOP_K */
	uint64_t seed;	     /* with SKV_REQUEST_SEED */

	const char *const *stop; /* [n_stop] non-empty NUL-terminated UTF-8 strings: generation
				  * stops before the first occurrence of any, which is not sent */
	size_t n_stop;

	void *user_data; /* handed back in every event of this request; libskv never touches it */
	uint64_t reserved[8]; /* zero: room for fields of later versions */
};

/* Zero-fills req: a TEXT request with every optional field unset. */
SKV_EXPORT void skv_request_init(struct skv_request *req);

/* ---- events ---- */

enum skv_event_type {
	SKV_EVENT_DELTA = 1, /* text (and ids) generated for a request */
	SKV_EVENT_FINAL = 2, /* the request ended; it is no longer in flight */
	SKV_EVENT_PROGRESS = 3, /* prompt_done of prompt_tokens computed (SKV_REQUEST_PROGRESS only);
				 * it may start lower again when skvd re-runs the request on another
				 * worker */
};

enum skv_finish_reason {
	SKV_FINISH_REASON_NONE = 0,	 /* in DELTA events */
	SKV_FINISH_REASON_STOP = 1,	 /* an end-of-sequence token or a stop string */
	SKV_FINISH_REASON_LENGTH = 2,	 /* max_tokens or the context was reached */
	SKV_FINISH_REASON_CANCELLED = 3, /* skv_client_cancel */
	SKV_FINISH_REASON_ERROR = 4,	 /* see .error and .message */
};

/* Why a request failed (FINAL events with SKV_FINISH_REASON_ERROR). skvd may add codes later:
 * treat an unknown value like SKV_ERROR_CODE_INTERNAL, and print skv_error_name(). */
enum skv_error_code {
	SKV_ERROR_CODE_NONE = 0,
	SKV_ERROR_CODE_INVALID = 1,	  /* a field out of range: .message names it */
	SKV_ERROR_CODE_CONTEXT = 2,	  /* prompt + max_tokens over the context: .message has the numbers */
	SKV_ERROR_CODE_BUSY = 3,	  /* skvd's queue is full: retry after .retry_after_ms */
	SKV_ERROR_CODE_WORKER_LOST = 4,	  /* the worker died after streaming had begun */
	SKV_ERROR_CODE_SHUTTING_DOWN = 5, /* skvd is draining */
	SKV_ERROR_CODE_TIMEOUT = 6,	  /* the request's timeout passed */
	SKV_ERROR_CODE_INTERNAL = 7,
};

/* One event. The pointers point into the client handle and stay valid until the next call of
 * skv_client_next, skv_client_generate or skv_client_free on that handle: copy what you keep. */
struct skv_event {
	enum skv_event_type type;
	uint64_t id;	 /* the request's id, as skv_client_submit returned it */
	void *user_data; /* the request's user_data */

	/* SKV_EVENT_DELTA: the next piece of the generated text. skvd never cuts a UTF-8
	 * character in two; text_len may be 0 when the delta carries only ids. */
	const char *text; /* [text_len] bytes, NUL-terminated too */
	size_t text_len;  /* <= SKV_DELTA_TEXT_MAX */
	const int32_t *ids; /* [n_ids] token ids (SKV_REQUEST_STREAM_IDS only) */
	uint32_t n_ids;	    /* <= SKV_DELTA_IDS_MAX */

	/* SKV_EVENT_FINAL */
	enum skv_finish_reason finish;
	enum skv_error_code error; /* SKV_ERROR_CODE_NONE unless finish is ERROR */
	const char *message;	   /* why, for errors; "" otherwise (control characters replaced) */
	uint32_t prompt_tokens;	   /* usage */
	uint32_t completion_tokens;
	uint32_t queue_us; /* timings, measured by skvd from when it saw the submission: */
	uint32_t ttft_us;  /* to first scheduled, to first token sent (0: none), to the end */
	uint32_t total_us;
	uint32_t retry_after_ms; /* with SKV_ERROR_CODE_BUSY */

	/* Timestamps on the host's CLOCK_MONOTONIC, for latency accounting (0: not known):
	 * DELTA: when the worker produced the newest token in it, and when skvd sent it;
	 * FINAL: when skvd read the submission, when the worker took the request, when skvd sent
	 * the final. Compare them with clock_gettime(CLOCK_MONOTONIC) taken by the caller. */
	uint64_t t_worker_ns;
	uint64_t t_skvd_ns;
	uint64_t t_seen_ns;
	uint64_t t_taken_ns;

	uint32_t prompt_done; /* SKV_EVENT_PROGRESS: prompt tokens computed so far (< prompt_tokens) */
	uint32_t reserved32;
	uint64_t reserved[3];
};

/* Names for logs and JSON ("stop", "length", "cancelled", "error"; "invalid_request",
 * "context_length_exceeded", "busy", "worker_lost", "shutting_down", "timeout", "internal").
 * Static strings; "unknown" for values this version does not know. */
SKV_EXPORT const char *skv_finish_name(enum skv_finish_reason finish);
SKV_EXPORT const char *skv_error_name(enum skv_error_code error);

/* ---- the client handle ---- */

/* Allocates an unconnected handle (so that connection errors have a message to read).
 * Errors: -ENOMEM. The caller owns *ret and frees it with skv_client_free. */
SKV_EXPORT int skv_client_new(struct skv_client **ret);

/* Closes the session (skvd cancels every request still in flight on it), unmaps the segment,
 * closes every fd, frees c. Accepts NULL. */
SKV_EXPORT void skv_client_free(struct skv_client *c);

/* How long skv_client_connect waits for skvd's welcome: timeout_ms > 0, or -1 for ever.
 * The default is 30 s. Errors: -EINVAL. */
SKV_EXPORT int skv_client_set_connect_timeout(struct skv_client *c, int timeout_ms);

/* Connects to skvd and performs the handshake. socket_path: NULL means $SKV_SOCKET when set
 * and not empty, else SKV_SOCKET_DEFAULT; a leading '@' names an abstract socket. Borrowed.
 * Errors:
 *   -EISCONN	  c is already connected;
 *   -ENOENT, -ECONNREFUSED, -EACCES, ...	  connect(2) failed (no skvd at that path,
 *		  permission on the socket);
 *   -EACCES	  skvd refused: the caller is not in the allowed group;
 *   -EBUSY	  skvd refused: it serves its maximum number of clients;
 *   -ESHUTDOWN	  skvd refused: it is shutting down;
 *   -EPROTONOSUPPORT  no common protocol version;
 *   -ETIMEDOUT	  no welcome within the connect timeout (skvd still loading?);
 *   -ECONNRESET  skvd closed the connection during the handshake;
 *   -EPROTO	  skvd's welcome or segment is malformed (bad magic, layout outside the memfd,
 *		  missing seals, wrong fds ...);
 *   -ENOMEM, -EMFILE ...  local resources.
 * On failure c stays unconnected and may be connected again. */
SKV_EXPORT int skv_client_connect(struct skv_client *c, const char *socket_path);

/* A NUL-terminated message that says what the last call on c that failed went wrong with, in
 * words that name the path, field or limit ("" when the last call succeeded). Owned by c,
 * valid until the next call on c. Accepts NULL. */
SKV_EXPORT const char *skv_client_errmsg(const struct skv_client *c);

/* A file descriptor that becomes readable when skv_client_next(c, ev, 0) may have something to
 * return (a completion, or skvd gone). Level-triggered: use it with poll, epoll or select;
 * after it polls readable, call skv_client_next with timeout 0 until it returns -EAGAIN.
 * Owned by c; do not read it or close it. -ENOTCONN when c is not connected. */
SKV_EXPORT int skv_client_fd(const struct skv_client *c);

/* The served model's name as skvd announced it (owned by c; "" before connecting). */
SKV_EXPORT const char *skv_client_model(const struct skv_client *c);

/* skvd's limits, as told in the welcome. A field of 0 means skvd did not state that limit. */
struct skv_limits {
	uint32_t max_prompt_tokens;
	uint32_t max_new_tokens;
	uint32_t max_context;
	uint32_t max_request_bytes; /* payload bytes: the prompt and the stop strings, encoded */
	uint32_t max_stop;	    /* stop strings per request */
	uint32_t max_stop_bytes;    /* bytes per stop string */
	uint32_t max_in_flight;	    /* requests in flight per session */
	uint32_t data_size;	    /* the session's payload area: no request is larger */
	uint64_t session_id;
	uint64_t reserved[4];
};

/* Copies skvd's limits into *ret. Errors: -ENOTCONN. */
SKV_EXPORT int skv_client_limits(const struct skv_client *c, struct skv_limits *ret);

/* Requests submitted and whose FINAL event has not been returned yet. */
SKV_EXPORT unsigned skv_client_in_flight(const struct skv_client *c);

/* The size in bytes of req's encoded payload (the prompt and the stop strings), the number
 * compared with max_request_bytes. Errors: -EINVAL (with no handle to explain it: use
 * skv_client_submit for a message). */
SKV_EXPORT int skv_request_payload_size(const struct skv_request *req, size_t *ret);

/* Submits a request: checks it against skvd's limits, writes its payload into the session's
 * data area and its record into the submission ring, and rings skvd's doorbell. Does not
 * block. On success *ret_id is the request's id (unique in this session), used by the events
 * and skv_client_cancel. Errors (nothing was submitted):
 *   -EINVAL	a field is wrong (no prompt, a bad role, a negative id, an empty stop string,
 *		NaN temperature, more stop strings than max_stop, max_tokens over max_new_tokens,
 *		non-zero reserved fields ...);
 *   -E2BIG	the payload is larger than max_request_bytes or the data area, or the ids
 *		exceed max_prompt_tokens or the context: it can never be accepted;
 *   -EBUSY	max_in_flight requests are already in flight: consume FINAL events first;
 *   -EAGAIN	the submission ring or the data area is momentarily full: skvd has not yet
 *		consumed earlier submissions (it does within microseconds while it runs);
 *		retry shortly. A payload that fits the data area always fits once skvd has
 *		consumed everything before it;
 *   -ENOTCONN, -ECONNRESET (skvd has gone), -EPROTO (skvd broke the protocol earlier).
 * Limits skvd did not state are left to skvd, which answers with a FINAL error event. */
SKV_EXPORT int skv_client_submit(struct skv_client *c, const struct skv_request *req, uint64_t *ret_id);

/* Asks skvd to cancel request id. The request still ends with a FINAL event (usually
 * SKV_FINISH_REASON_CANCELLED; it may have finished otherwise first); deltas may arrive
 * until then. Cancelling twice is a no-op. Errors: -ENOENT (id not in flight), -EAGAIN
 * (submission ring full: retry), -ENOTCONN, -ECONNRESET, -EPROTO. */
SKV_EXPORT int skv_client_cancel(struct skv_client *c, uint64_t id);

/* Returns the next event of any request in flight into *ev, waiting up to timeout_ms
 * milliseconds (0: do not wait, -1: for ever) on the completion doorbell with poll(2).
 * Returns 0 with an event; a FINAL event takes its request out of flight. Errors:
 *   -EAGAIN	timeout_ms was 0 and nothing is ready;
 *   -ETIMEDOUT	timeout_ms passed;
 *   -EINTR	a signal arrived while waiting (nothing is lost: call again);
 *   -ECONNRESET  skvd closed the session, and every event it had written before was
 *		returned already; requests still in flight will never end;
 *   -EPROTO	skvd broke the protocol (an impossible ring index, a malformed record, an
 *		event for an id not in flight ...): the session is closed, the handle is
 *		unusable except for skv_client_errmsg and skv_client_free;
 *   -ENOTCONN.
 * ev's pointers are valid until the next call of skv_client_next on c (see struct skv_event). */
SKV_EXPORT int skv_client_next(struct skv_client *c, struct skv_event *ev, int timeout_ms);

/* Called by skv_client_generate for each DELTA event. Return 0 to go on; a negative value
 * cancels the request, suppresses its further deltas, and becomes skv_client_generate's return
 * value once the request has ended. */
typedef int (*skv_event_fn)(struct skv_client *c, const struct skv_event *ev, void *userdata);

/* The blocking convenience: submits req, calls on_delta (may be NULL) for each of its DELTA
 * events (PROGRESS events are skipped), and returns 0 when its FINAL event arrived, copied into *ret_final (may be NULL;
 * its pointers live until the next call on c). It waits for room in the submission ring or
 * the data area instead of returning -EAGAIN, and resumes waiting after signals. Use it on a
 * handle with no other request in flight (-EBUSY otherwise). Errors: those of
 * skv_client_submit except -EAGAIN; -ECONNRESET, -EPROTO; a negative value from on_delta.
 * The request's own outcome (stop, length, error ...) is in ret_final->finish and ->error. */
SKV_EXPORT int skv_client_generate(struct skv_client *c, const struct skv_request *req, skv_event_fn on_delta,
				   void *userdata, struct skv_event *ret_final);

/* ---- long documents (libskv-summarize.c; docs/documents.md tells the design) ----
 *
 * A document of any length (up to max_document_tokens) is summarized hierarchically on one
 * session: cut at paragraph, then sentence, then word boundaries into chunks that fit the
 * context with room for the instructions and the answer, counted by skvd's own tokenizer
 * (SKV_REQUEST_COUNT_ONLY, so the client needs no tokenizer); the chunks are summarized
 * concurrently (skvd batches them), then the summaries are summarized the same way until they
 * fit one request, whose answer is the summary. */

#define SKV_SUMMARIZE_MAX_DOCUMENT_TOKENS 2000000u /* the default limit of a document */
#define SKV_SUMMARIZE_MAX_TOKENS 512u		   /* the default length of the summary */

/* What to keep of a document longer than max_input_tokens (the cheap alternative to summarizing
 * all of it): cut at word boundaries, counted in tokens. */
enum skv_truncate {
	SKV_TRUNCATE_NONE = 0,	    /* keep everything (max_input_tokens is ignored) */
	SKV_TRUNCATE_HEAD = 1,	    /* the first max_input_tokens tokens */
	SKV_TRUNCATE_TAIL = 2,	    /* the last ones */
	SKV_TRUNCATE_HEAD_TAIL = 3, /* half from the start, half from the end, a blank line between */
};

enum skv_summarize_stage {
	SKV_SUMMARIZE_COUNTING = 1, /* counting the pieces of a level's text (progress in bytes) */
	SKV_SUMMARIZE_CHUNKS = 2,   /* summarizing a level's chunks (level 0: the document's) */
	SKV_SUMMARIZE_FINAL = 3,    /* the last request: its text is the summary */
	SKV_SUMMARIZE_DONE = 4,
};

/* How far the work is. Progress advances when a request ends (a chunk summarized, a piece
 * counted) and, with a skvd that reports it, inside each long prefill (SKV_EVENT_PROGRESS: the
 * request's share in proportion to its prompt computed). */
struct skv_summarize_progress {
	enum skv_summarize_stage stage;
	uint32_t level;	       /* 0: the document itself; n: summaries made at level n - 1 */
	uint64_t tokens_done;  /* of this stage and level: text tokens summarized (COUNTING: bytes counted) */
	uint64_t tokens_total; /* of this stage and level (CHUNKS at level 0: the document's tokens) */
	uint32_t chunks_done;  /* SKV_SUMMARIZE_CHUNKS: chunks summarized of chunks_total */
	uint32_t chunks_total;
	uint64_t document_tokens; /* the input's length in tokens (0 until counted) */
	uint64_t reserved[4];
};

/* Called at each step. Return 0 to go on; non-zero cancels everything (skv_summarize then
 * returns -ECANCELED once every request it had in flight has ended). */
typedef int (*skv_summarize_progress_fn)(const struct skv_summarize_progress *p, void *userdata);
/* Called with each piece of the final summary's text as it streams; non-zero cancels. */
typedef int (*skv_summarize_text_fn)(const char *text, size_t len, void *userdata);

/* Default prompts (each is the user message's first paragraph; the text follows it). */
#define SKV_SUMMARIZE_SYSTEM                                                                                    \
	"You are a careful assistant that writes concise, faithful summaries of documents. You keep the main " \
	"points, the key facts and figures and the conclusions, and you add nothing that the document does not say."
#define SKV_SUMMARIZE_DOCUMENT_PROMPT                                                                \
	"Summarize the following document concisely. Keep its main points, key facts and figures, and " \
	"conclusions."
#define SKV_SUMMARIZE_CHUNK_PROMPT                                                                           \
	"The following text is one part of a longer document. Summarize this part concisely. Keep its main " \
	"points, key facts and figures, and conclusions."
#define SKV_SUMMARIZE_COMBINE_PROMPT                                                                          \
	"The following are summaries of consecutive parts of one document, in order. Combine them into one " \
	"concise summary of the whole document. Keep the main points, key facts and figures, and conclusions; " \
	"do not repeat yourself."

/* Options (start from skv_summarize_opts_init). Strings are borrowed for the call. */
struct skv_summarize_opts {
	/* sampling for every request: flags (TEMPERATURE, TOP_P, TOP_K, SEED, IGNORE_EOS),
	 * temperature, top_p, top_k, seed, timeout_ms, stop, n_stop; its prompt fields, max_tokens
	 * and user_data are ignored. NULL: the model's defaults. */
	const struct skv_request *sampling;
	uint32_t max_tokens;	   /* the summary's length; 0: SKV_SUMMARIZE_MAX_TOKENS (capped to fit) */
	uint32_t chunk_max_tokens; /* each chunk summary's; 0: max_tokens, at most a quarter of a chunk */
	uint32_t chunk_tokens;	   /* the most text tokens per chunk; 0: as many as fit the context */
	uint32_t overlap_tokens;   /* up to this many tokens (whole pieces) of a chunk's end start the
				    * next chunk too; 0: none */
	uint64_t max_document_tokens; /* 0: SKV_SUMMARIZE_MAX_DOCUMENT_TOKENS; more is refused (-EFBIG) */
	uint32_t max_input_tokens;    /* with truncate: cut the input to this many tokens first */
	enum skv_truncate truncate;
	uint32_t max_retries; /* re-runs of a chunk whose worker was lost; 0: 3 */
	const char *system;	     /* the system message; NULL: SKV_SUMMARIZE_SYSTEM, "": none */
	const char *document_prompt; /* NULL: the defaults above */
	const char *chunk_prompt;
	const char *combine_prompt;
	const char *title; /* NULL, or a name for the document, quoted in the prompts */
	skv_summarize_progress_fn on_progress; /* may be NULL */
	skv_summarize_text_fn on_text;	       /* may be NULL */
	void *userdata;			       /* for both */
	const volatile int *cancel; /* NULL, or a flag (e.g. set by a signal handler): non-zero cancels */
	uint64_t reserved[8];
};

SKV_EXPORT void skv_summarize_opts_init(struct skv_summarize_opts *o);

/* The outcome of skv_summarize; release it with skv_summary_done. */
struct skv_summary {
	char *text; /* the summary, [len] bytes, NUL-terminated (malloc'd) */
	size_t len;
	enum skv_finish_reason finish; /* the final request's: STOP or LENGTH */
	uint32_t levels;	       /* levels of chunk summaries before the final request (0: none) */
	uint64_t document_tokens;      /* the input's length, counted by skvd */
	uint64_t input_tokens;	       /* after truncation */
	uint32_t chunk_requests;       /* chunk summaries submitted, over all levels, re-runs included */
	uint32_t rerun_requests;       /* of those, re-runs after worker_lost */
	uint32_t count_requests;       /* count-only requests */
	uint64_t prompt_tokens;	       /* over every generation request, the final one included */
	uint64_t completion_tokens;
	uint64_t reserved[4];
};

SKV_EXPORT void skv_summary_done(struct skv_summary *s);

/* Summarizes text[0..len) (UTF-8; paragraphs separated by blank lines, as skv's document
 * readers write them) on c, which must have no request in flight. Fills *ret on success.
 * Errors, with skv_client_errmsg saying what and the numbers:
 *   -ECANCELED	 on_progress or on_text returned non-zero, or *cancel was set: every request
 *		 was cancelled and has ended;
 *   -EFBIG	 the document has more tokens than max_document_tokens;
 *   -E2BIG	 the context cannot hold the instructions, a chunk and its answer;
 *   -EIO	 a request failed (its error, or a chunk lost its worker more than max_retries
 *		 times): the message names the level, the chunk and skvd's error;
 *   -EINVAL	 a bad option or no text; -EBUSY requests in flight on c (text that is not
 *		 UTF-8 is refused by skvd when counted: -EIO);
 *   -EOPNOTSUPP  skvd cannot count (an older skvd);
 *   -ECONNRESET, -EPROTO, -ENOMEM ... as for skv_client_next. */
SKV_EXPORT int skv_summarize(struct skv_client *c, const char *text, size_t len, const struct skv_summarize_opts *o,
			     struct skv_summary *ret);

/* Cuts text[0..len) to at most max_tokens tokens (counted by skvd as a raw prompt, without BOS)
 * the way `how` says, at word boundaries; text that fits is copied whole. *ret (malloc'd,
 * NUL-terminated) and *ret_len on success. Errors as skv_summarize. */
SKV_EXPORT int skv_truncate_text(struct skv_client *c, const char *text, size_t len, uint32_t max_tokens,
				 enum skv_truncate how, char **ret, size_t *ret_len);

#ifdef __cplusplus
}
#endif

#endif /* SKV_H */
