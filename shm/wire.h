/* wire.h: the client protocol between libskv and skvd (docs/protocol.md tells the story).
 *
 * 1. The client connects to the client socket (SOCK_SEQPACKET) and sends a struct skv_hello.
 *    skvd checks the peer's credentials first (SO_PEERCRED, SO_PEERGROUPS) and answers one
 *    struct skv_welcome. On success it carries, with SCM_RIGHTS, the session memfd (size sealed)
 *    and two eventfds: the submission doorbell (client -> skvd) and the completion doorbell
 *    (skvd -> client). After that the socket only tells either side that the other has gone: a
 *    client that sends anything more is closed.
 * 2. The session memfd holds a submission ring (client writes records, skvd consumes), its data
 *    area (request payloads, allocated by the client in ring order) and a completion ring (skvd
 *    writes, the client consumes). Layout in struct skv_session_layout; skvd writes it into the
 *    segment's header and the welcome, and never reads it back from shared memory.
 * 3. Records are 256 bytes, versioned, little-endian, with explicit padding; every reserved byte
 *    is zero. Anything malformed in a client's ring closes that client alone.
 *
 * Versioning: SKV_WIRE_VERSION is bumped on any incompatible change; the hello names the range a
 * client speaks and the welcome the version chosen. New fields go into reserved space with a flag
 * that says they are set.
 */
#pragma once

#include <stdint.h>

#include "ring.h"

#define SKV_WIRE_MAGIC_HELLO 0x434b5653u   /* "SVKC" */
#define SKV_WIRE_MAGIC_WELCOME 0x574b5653u /* "SVKW" */
#define SKV_WIRE_MAGIC_SESSION 0x534b5653u /* "SVKS" */
#define SKV_WIRE_VERSION 1u
#define SKV_WIRE_RECORD 256u

/* ---- handshake ---- */

struct skv_hello {
	uint32_t magic;	     /* SKV_WIRE_MAGIC_HELLO */
	uint16_t version_min; /* versions the client speaks */
	uint16_t version_max;
	uint32_t flags; /* none yet: 0 */
	uint32_t reserved[5];
};
_Static_assert(sizeof(struct skv_hello) == 32, "hello is pinned");

enum skv_welcome_status {
	SKV_WELCOME_OK = 0,
	SKV_WELCOME_VERSION = 1,   /* no common protocol version */
	SKV_WELCOME_DENIED = 2,	   /* peer not in the allowed group */
	SKV_WELCOME_FULL = 3,	   /* max_clients reached */
	SKV_WELCOME_SHUTDOWN = 4,  /* skvd is draining */
	SKV_WELCOME_MALFORMED = 5, /* the hello was not a hello */
};

struct skv_session_layout {
	uint64_t total_size;	 /* of the memfd */
	uint32_t sub_capacity;	 /* submission records (power of two) */
	uint32_t sub_offset;	 /* of the records */
	uint32_t sub_idx_offset; /* of its struct skv_ring_shared */
	uint32_t data_offset;	 /* of the submission data area */
	uint32_t data_size;
	uint32_t cmp_capacity; /* completion records (power of two) */
	uint32_t cmp_offset;
	uint32_t cmp_idx_offset;
	uint32_t reserved[2];
};
_Static_assert(sizeof(struct skv_session_layout) == 48, "layout is pinned");

/* Limits skvd enforces, told to the client so it can refuse early. */
struct skv_wire_limits {
	uint32_t max_prompt_tokens;
	uint32_t max_new_tokens;
	uint32_t max_context;
	uint32_t max_request_bytes;
	uint32_t max_stop;	   /* stop strings per request */
	uint32_t max_stop_bytes;   /* per stop string */
	uint32_t max_in_flight;	   /* requests per session */
	uint32_t features;	   /* enum skv_wire_features (0 from a skvd that predates them) */
};

/* What skvd understands beyond version 1's first form; a client uses a feature only when its
 * bit is set in the welcome (an older skvd closes a client that sends an unknown flag). */
enum skv_wire_features {
	SKV_WIRE_FEATURE_COUNT_ONLY = 1u << 0, /* SKV_REQ_COUNT_ONLY */
	SKV_WIRE_FEATURE_PROGRESS = 1u << 1,   /* SKV_REQ_PROGRESS and SKV_EV_PROGRESS records */
};
_Static_assert(sizeof(struct skv_wire_limits) == 32, "limits are pinned");

struct skv_welcome {
	uint32_t magic;	  /* SKV_WIRE_MAGIC_WELCOME */
	uint16_t version; /* chosen */
	uint16_t status;  /* enum skv_welcome_status */
	struct skv_session_layout layout;
	struct skv_wire_limits limits;
	uint64_t session_id;
	char model[64];	   /* served model's name (NUL-terminated) */
	char message[96]; /* why, when status != OK (NUL-terminated) */
};
_Static_assert(sizeof(struct skv_welcome) == 256, "welcome is pinned");

/* The segment starts with this (written by skvd for the client's convenience and checks). */
struct skv_session_header {
	uint32_t magic; /* SKV_WIRE_MAGIC_SESSION */
	uint32_t version;
	uint32_t header_size;
	uint32_t reserved0;
	struct skv_session_layout layout;
};
_Static_assert(sizeof(struct skv_session_header) == 64, "session header is pinned");

/* ---- submission records (client -> skvd) ---- */

enum skv_sub_type {
	SKV_SUB_REQUEST = 1,
	SKV_SUB_CANCEL = 2, /* cancels request `id` of this session */
};

enum skv_input_kind {
	SKV_INPUT_TEXT = 1, /* a raw prompt: tokenized with BOS, special-token strings as plain text */
	SKV_INPUT_CHAT = 2, /* messages, rendered with the model's chat template */
	SKV_INPUT_IDS = 3,  /* int32 token ids, used as given */
};

enum skv_chat_role { SKV_ROLE_SYSTEM = 0, SKV_ROLE_USER = 1, SKV_ROLE_ASSISTANT = 2 };

/* A chat message in the payload: this header, then len bytes of UTF-8, then zero padding to a
 * multiple of 4. */
struct skv_wire_message {
	uint32_t role; /* enum skv_chat_role */
	uint32_t len;
};

/* Ranges of the sampling fields (the engine's own limits are the same). */
#define SKV_WIRE_MAX_TEMPERATURE 100.0f
#define SKV_WIRE_MAX_TOP_K 1000000u

enum skv_req_flags {
	SKV_REQ_TEMPERATURE = 1u << 0, /* these four say the field is set; else the model's default */
	SKV_REQ_TOP_P = 1u << 1,
	SKV_REQ_TOP_K = 1u << 2,
	SKV_REQ_SEED = 1u << 3,
	SKV_REQ_IGNORE_EOS = 1u << 4,
	SKV_REQ_STREAM_IDS = 1u << 5, /* deltas carry token ids */
	/* tokenize and render the prompt as for generation, then end at once: the final record
	 * (finish STOP) carries prompt_tokens; no worker sees it, max_prompt_tokens and the context
	 * are not checked. Only sent to a skvd whose welcome has SKV_WIRE_FEATURE_COUNT_ONLY. */
	SKV_REQ_COUNT_ONLY = 1u << 6,
	/* PROGRESS records while the prompt is computed, one per prefill chunk but the last. Only
	 * sent to a skvd whose welcome has SKV_WIRE_FEATURE_PROGRESS. */
	SKV_REQ_PROGRESS = 1u << 7,
	SKV_REQ__ALL = (1u << 8) - 1,
};

struct skv_wire_submit {
	uint16_t version; /* SKV_WIRE_VERSION */
	uint16_t type;	  /* enum skv_sub_type */
	uint32_t flags;	  /* enum skv_req_flags */
	uint64_t id;	  /* the client's id, unique among its requests in flight */
	uint32_t input;	  /* enum skv_input_kind */
	uint32_t max_tokens; /* 0: skvd's default */
	float temperature;
	float top_p;
	uint32_t top_k;
	uint32_t timeout_ms; /* 0: skvd's default */
	uint64_t seed;
	/* payload in the data area: input_len bytes of input, then the stop strings, each
	 * NUL-terminated (n_stop of them). data_offset is relative to the start of the data area;
	 * the slot stays the client's to reuse only once skvd's head has passed this record. */
	uint32_t data_offset;
	uint32_t data_len;
	uint32_t input_len;
	uint32_t n_stop;
	uint64_t client_ns; /* CLOCK_MONOTONIC at submission, for latency accounting (0: not given) */
	uint8_t reserved[184];
};
_Static_assert(sizeof(struct skv_wire_submit) == SKV_WIRE_RECORD, "submit record is pinned");

/* ---- completion records (skvd -> client) ---- */

enum skv_ev_type {
	SKV_EV_DELTA = 1, /* text (and ids) generated for a request */
	SKV_EV_FINAL = 2, /* the request ended: finish reason, usage, timings, error */
	SKV_EV_PROGRESS = 3, /* part of the prompt was computed (SKV_REQ_PROGRESS requests only) */
};

enum skv_wire_finish {
	SKV_WIRE_FINISH_STOP = 1,	/* an end-of-sequence token or a stop string */
	SKV_WIRE_FINISH_LENGTH = 2,	/* max_tokens or the context */
	SKV_WIRE_FINISH_CANCELLED = 3,
	SKV_WIRE_FINISH_ERROR = 4,	/* see error */
};

enum skv_wire_error {
	SKV_WIRE_ERR_NONE = 0,
	SKV_WIRE_ERR_INVALID = 1,	    /* a field out of range: the message names it */
	SKV_WIRE_ERR_CONTEXT = 2,	    /* prompt + max_tokens over the context */
	SKV_WIRE_ERR_BUSY = 3,		    /* queue full: retry after retry_after_ms */
	SKV_WIRE_ERR_WORKER_LOST = 4,	    /* the worker died after streaming began */
	SKV_WIRE_ERR_SHUTTING_DOWN = 5,	    /* skvd is draining */
	SKV_WIRE_ERR_TIMEOUT = 6,	    /* the request's timeout passed */
	SKV_WIRE_ERR_INTERNAL = 7,
};

#define SKV_WIRE_DELTA_IDS 8
#define SKV_WIRE_DELTA_TEXT 184

struct skv_wire_delta {
	uint16_t version;
	uint16_t type; /* SKV_EV_DELTA */
	uint32_t flags;
	uint64_t id;
	uint16_t text_len; /* <= SKV_WIRE_DELTA_TEXT */
	uint16_t n_ids;	   /* <= SKV_WIRE_DELTA_IDS (STREAM_IDS only) */
	uint32_t reserved0;
	int32_t ids[SKV_WIRE_DELTA_IDS];
	char text[SKV_WIRE_DELTA_TEXT];
	/* CLOCK_MONOTONIC (one clock for the whole host): when the worker produced the newest token
	 * in this record, and when skvd wrote the record. For latency accounting. */
	uint64_t worker_ns;
	uint64_t skvd_ns;
};
_Static_assert(sizeof(struct skv_wire_delta) == SKV_WIRE_RECORD, "delta record is pinned");

struct skv_wire_final {
	uint16_t version;
	uint16_t type; /* SKV_EV_FINAL */
	uint32_t flags;
	uint64_t id;
	uint32_t finish; /* enum skv_wire_finish */
	uint32_t error;	 /* enum skv_wire_error */
	uint32_t prompt_tokens;
	uint32_t completion_tokens;
	uint32_t queue_us;   /* submit seen -> first scheduled */
	uint32_t ttft_us;    /* submit seen -> first token sent */
	uint32_t total_us;   /* submit seen -> this record */
	uint32_t retry_after_ms; /* with ERR_BUSY */
	char message[184];	 /* NUL-terminated; why, for errors */
	/* CLOCK_MONOTONIC: skvd read the submission, the worker took the request (0: never),
	 * skvd wrote this record */
	uint64_t seen_ns;
	uint64_t taken_ns;
	uint64_t skvd_ns;
};
_Static_assert(sizeof(struct skv_wire_final) == SKV_WIRE_RECORD, "final record is pinned");

struct skv_wire_progress {
	uint16_t version;
	uint16_t type; /* SKV_EV_PROGRESS */
	uint32_t flags;
	uint64_t id;
	uint32_t prompt_done;	/* prompt tokens computed so far, < prompt_tokens */
	uint32_t prompt_tokens; /* the prompt's length */
	uint8_t reserved[216];
	uint64_t worker_ns; /* CLOCK_MONOTONIC: the worker finished that chunk */
	uint64_t skvd_ns;   /* skvd wrote this record */
};
_Static_assert(sizeof(struct skv_wire_progress) == SKV_WIRE_RECORD, "progress record is pinned");

/* Names used in JSON and logs. */
const char *skv_wire_finish_name(uint32_t finish);
const char *skv_wire_error_name(uint32_t error);
