/* libskv-internal.h: libskv's private state and the pieces its tests and fuzz target drive
 * directly (payload encoding, welcome and layout checks, the handshake over a connected
 * socket). Not installed; not part of the ABI.
 */
#pragma once

#include <stdbool.h>
#include <stdint.h>

#include "ring.h"
#include "skv-base.h"
#include "skv.h"
#include "wire.h"

/* The segment header's size, pinned here since wire.h does not. */
_Static_assert(sizeof(struct skv_session_header) == 64, "session header is pinned");

#define SKV_CONNECT_TIMEOUT_MS 30000
#define SKV_PAYLOAD_ALIGN 8u /* payloads start 8-aligned in the data area (a courtesy: skvd copies) */

struct skv_inflight {
	uint64_t id;
	void *user_data;
	uint32_t flags;	  /* SKV_REQ_* the request was sent with */
	bool cancel_sent; /* skv_client_cancel pushed its record */
};

struct skv_client {
	int sock;    /* the SOCK_SEQPACKET connection: after the welcome, only EOF matters */
	int sub_efd; /* doorbell to skvd */
	int cmp_efd; /* doorbell from skvd */
	int ep_fd;   /* epoll set of cmp_efd and sock, for skv_client_fd */
	int connect_timeout_ms;

	void *mem; /* the session segment, [layout.total_size] */
	struct skv_session_layout layout; /* private copy from the welcome: never re-read */
	struct skv_wire_limits limits;
	uint64_t session_id;
	uint16_t version;
	char model[64];

	/* submission side: producer of the ring, allocator of the data area */
	struct skv_ring sub;
	uint32_t sub_head;    /* last consumer head we accepted (only ever moves forward) */
	uint8_t *data;	      /* [layout.data_size] */
	uint64_t data_head;   /* free-running bytes: everything before is free */
	uint64_t data_tail;   /* free-running bytes: next allocation starts here (or wraps) */
	uint64_t *slot_end;   /* [sub_capacity]: data_tail after each slot's record was allocated */
	uint64_t next_id;

	/* completion side: consumer of the ring */
	struct skv_ring cmp;
	struct skv_inflight *reqs; /* [n_reqs] in flight, unordered */
	uint32_t n_reqs, cap_reqs;

	int broken; /* 0, or the sticky negative errno (-EPROTO, -ECONNRESET) */
	bool eof;   /* skvd closed the socket: drain the ring, then -ECONNRESET */
	char broken_msg[256];
	struct skv_err err; /* the message of the last failed call */

	/* storage behind the last event's pointers */
	char ev_text[SKV_WIRE_DELTA_TEXT + 1];
	int32_t ev_ids[SKV_WIRE_DELTA_IDS];
	char ev_msg[sizeof(((struct skv_wire_final *)0)->message)];
};

/* ---- payloads (libskv-submit.c) ---- */

struct skv_payload {
	uint32_t input_len; /* bytes of the input part (chat messages padded to 4) */
	uint32_t data_len;  /* input + stop strings with their NULs */
	uint32_t n_stop;
	uint32_t input; /* enum skv_input_kind */
};

/* Checks req (and, when lim is non-NULL, skvd's limits; 0 = unstated) and measures its
 * payload. -EINVAL / -E2BIG with err saying which field. */
int skv_payload_plan(const struct skv_request *req, const struct skv_wire_limits *lim, struct skv_payload *ret,
		     struct skv_err *err);
/* Writes the payload planned by skv_payload_plan into dst[p->data_len]. */
void skv_payload_write(const struct skv_request *req, const struct skv_payload *p, uint8_t *dst);

/* ---- handshake and session (libskv.c) ---- */

/* Checks a layout on its own: capacities, alignment, every region inside total_size, none
 * overlapping. -EPROTO with err. */
int skv_layout_check(const struct skv_session_layout *L, struct skv_err *err);

/* Checks a welcome's fixed fields (magic, status, version, NUL-terminated strings, layout)
 * and the number of fds that came with it. Maps a refusal to its errno (-EACCES, -EBUSY,
 * -ESHUTDOWN, -EPROTONOSUPPORT) with skvd's message. */
int skv_welcome_check(const struct skv_welcome *w, size_t n_fds, struct skv_err *err);

/* The handshake over an already connected SOCK_SEQPACKET socket: sends the hello, receives
 * and checks the welcome and its fds, maps and checks the segment. Takes sock (closed on
 * failure). `what` names the peer in messages (the socket path). */
int skv_client_handshake(struct skv_client *c, int sock, const char *what);

/* Marks c broken with a protocol error, closes the session on our side, returns -EPROTO. */
int skv_client_fail_proto(struct skv_client *c, const char *fmt, ...) SKV_PRINTF(2, 3);
/* The sticky error of a broken handle, restated into c->err; 0 when c is usable. */
int skv_client_check_usable(struct skv_client *c);

/* Copies a message skvd sent into dst[size], NUL-terminated, control characters replaced by
 * '?' (it may reach a terminal). src need not be NUL-terminated within src_size. */
void skv_sanitize(char *dst, size_t size, const char *src, size_t src_size);

/* ---- in-flight table and the socket (libskv-events.c) ---- */

/* Looks at the socket without blocking: sets c->eof when skvd has closed it; -EPROTO when skvd
 * sent anything. */
int skv_client_check_sock(struct skv_client *c);

struct skv_inflight *skv_inflight_find(struct skv_client *c, uint64_t id);
void skv_inflight_remove(struct skv_client *c, struct skv_inflight *q);

/* ---- long documents: the pure parts (libskv-summarize.c), unit-tested in test-summarize ---- */

/* A piece of a text: bytes [off, off + len), never empty, never starting or ending with
 * whitespace. A chunk is the text from its first piece's start to its last piece's end, so the
 * document's own separators stay between pieces. */
struct skv_piece {
	size_t off, len;
};

/* The paragraphs of text[0..len): runs of lines separated by blank (whitespace-only) lines,
 * trimmed. *ret (malloc'd; NULL when there are none) and *ret_n. -ENOMEM. */
int skv_split_paragraphs(const char *text, size_t len, struct skv_piece **ret, size_t *ret_n);

/* Splits p (a piece of text) for being too long: into its sentences (ending with . ! ? or a
 * CJK stop, closing quotes and brackets included, before whitespace; a line break ends one too)
 * when it has more than one; else in two at the whitespace nearest its middle; else in two at
 * the UTF-8 character boundary nearest its middle. *ret (malloc'd) and *ret_n >= 2; *ret_n == 1
 * when p is one character. -ENOMEM. */
int skv_split_piece(const char *text, struct skv_piece p, struct skv_piece **ret, size_t *ret_n);

/* Greedy packing: the end (exclusive) of the chunk that starts at piece *start: pieces are
 * added while their tokens (each + sep_tokens after the first) stay within budget_tokens and
 * the chunk's bytes within budget_bytes; at least one piece. The chunk must reach past
 * prev_end (the previous chunk's end; 0 for the first): when the one from *start (an overlap)
 * cannot, *start becomes prev_end, the overlap dropped. */
size_t skv_pack_end(const struct skv_piece *pieces, const uint32_t *tokens, size_t n, size_t *start, size_t prev_end,
		    uint64_t budget_tokens, uint32_t sep_tokens, size_t budget_bytes);

/* Where the chunk after [start, end) starts: end moved back over whole pieces whose tokens sum
 * to at most overlap_tokens, never to start or before. end when end == n. */
size_t skv_pack_next_start(const uint32_t *tokens, size_t n, size_t start, size_t end, uint32_t overlap_tokens);
