/* ring.h: an index-only ring of fixed-size records in shared memory, between two processes
 * that do not trust each other (PipeWire's spa_ringbuffer, io_uring's SQ/CQ discipline).
 *
 * Shared: two free-running uint32 indices, head (consumer-owned) and tail (producer-owned), on
 * their own cache lines; the records live elsewhere (offset + capacity, a power of two). Each
 * side keeps a private copy of its own index and never re-reads it from shared memory; it reads
 * the peer's index once per call, checks 0 <= tail - head <= capacity, and treats anything else
 * as a protocol error (the peer is closed, never trusted). Records are copied out before they
 * are validated. Doorbells (eventfds) are hints: state is always re-derived from the indices.
 *
 * Header-only: the hot paths inline. Not thread-safe on one side (one writer per index).
 */
#pragma once

#include <stdatomic.h>
#include <stdbool.h>
#include <stdint.h>
#include <string.h>

#include "skv-base.h"

/* The shared part: 128 bytes, pinned. */
struct skv_ring_shared {
	_Atomic uint32_t head; /* written by the consumer only */
	uint8_t pad0[60];
	_Atomic uint32_t tail; /* written by the producer only */
	uint8_t pad1[60];
};
_Static_assert(sizeof(struct skv_ring_shared) == 128, "ring indices are pinned");

/* One side's view: where things are, and its private index. */
struct skv_ring {
	struct skv_ring_shared *sh;
	uint8_t *records;  /* [capacity * rec_size] */
	uint32_t capacity; /* power of two */
	uint32_t rec_size;
	uint32_t mine;	   /* our own index: tail for a producer, head for a consumer */
	uint32_t peer;	   /* last checked value of the peer's index */
};

static inline bool skv_ring_capacity_ok(uint32_t cap) { return cap >= 2 && cap <= (1u << 24) && !(cap & (cap - 1)); }

/* Attaches a producer or consumer; `mine` starts from the shared value (0 for a fresh ring). */
static inline void skv_ring_attach(struct skv_ring *r, struct skv_ring_shared *sh, void *records, uint32_t capacity,
				   uint32_t rec_size, bool producer)
{
	r->sh = sh;
	r->records = records;
	r->capacity = capacity;
	r->rec_size = rec_size;
	r->mine = atomic_load_explicit(producer ? &sh->tail : &sh->head, memory_order_relaxed);
	r->peer = atomic_load_explicit(producer ? &sh->head : &sh->tail, memory_order_relaxed);
}

/* Producer: free slots, or -EPROTO when the consumer's head is impossible. The acquire pairs
 * with the consumer's release of head: once we see a slot freed, its old contents were read. */
static inline int skv_ring_space(struct skv_ring *r)
{
	uint32_t head = atomic_load_explicit(&r->sh->head, memory_order_acquire);
	uint32_t used = r->mine - head;
	if (used > r->capacity)
		return -EPROTO;
	r->peer = head;
	return (int)(r->capacity - used);
}

/* Producer: the slot for the k-th record after the ones already pushed (k < space). */
static inline void *skv_ring_slot(struct skv_ring *r, uint32_t k)
{
	return r->records + (size_t)((r->mine + k) & (r->capacity - 1)) * r->rec_size;
}

/* Producer: publishes n filled slots. Release: the records' bytes are visible before the tail. */
static inline void skv_ring_commit(struct skv_ring *r, uint32_t n)
{
	r->mine += n;
	atomic_store_explicit(&r->sh->tail, r->mine, memory_order_release);
}

/* Producer convenience: copies one record in; -EAGAIN when full. */
static inline int skv_ring_push(struct skv_ring *r, const void *rec)
{
	int space = skv_ring_space(r);
	if (space < 0)
		return space;
	if (space == 0)
		return -EAGAIN;
	memcpy(skv_ring_slot(r, 0), rec, r->rec_size);
	skv_ring_commit(r, 1);
	return 0;
}

/* Consumer: records available, or -EPROTO when the producer's tail is impossible. The acquire
 * pairs with the producer's release of tail: the records up to it are fully written. */
static inline int skv_ring_avail(struct skv_ring *r)
{
	uint32_t tail = atomic_load_explicit(&r->sh->tail, memory_order_acquire);
	uint32_t n = tail - r->mine;
	if (n > r->capacity)
		return -EPROTO;
	r->peer = tail;
	return (int)n;
}

/* Consumer: copies the next record out (call only when avail > 0) without freeing its slot,
 * for a consumer that must read more of the producer's memory (a payload the record points
 * to) before the producer may reuse it. The copy is what gets validated. */
static inline void skv_ring_peek(const struct skv_ring *r, void *out)
{
	memcpy(out, r->records + (size_t)(r->mine & (r->capacity - 1)) * r->rec_size, r->rec_size);
}

/* Consumer: frees the slot of the record last peeked. Release: our reads of the slot (and of
 * what it points to) happen before the producer may reuse them. */
static inline void skv_ring_release(struct skv_ring *r)
{
	r->mine += 1;
	atomic_store_explicit(&r->sh->head, r->mine, memory_order_release);
}

/* Consumer: copies the next k records out (k <= avail) and frees their slots with one store of
 * the head: a consumer that drains a batch moves the head's cache line once, not k times. */
static inline void skv_ring_pop_n(struct skv_ring *r, void *out, uint32_t k)
{
	for (uint32_t i = 0; i < k; i++)
		memcpy((uint8_t *)out + (size_t)i * r->rec_size,
		       r->records + (size_t)((r->mine + i) & (r->capacity - 1)) * r->rec_size, r->rec_size);
	r->mine += k;
	atomic_store_explicit(&r->sh->head, r->mine, memory_order_release);
}

/* Consumer: copies the next record out (call only when avail > 0) and frees its slot. The copy
 * is what gets validated: the producer may scribble on the slot after this returns. */
static inline void skv_ring_pop(struct skv_ring *r, void *out)
{
	skv_ring_peek(r, out);
	skv_ring_release(r);
}
