/* loop.c: skvd's io_uring loop. Every fd skvd waits on (listening sockets, client sockets and
 * doorbells, worker pidfds and doorbells, the signalfd, the tick timer) is a watch: a multishot
 * POLL_ADD whose completions call the watch's function, which then does the I/O itself with
 * non-blocking calls. A deleted watch is freed only once the ring has let go of it (its last
 * completion came without IORING_CQE_F_MORE), at the end of an iteration.
 *
 * Not a general event library: one thread, one ring, poll-driven.
 */
#include <poll.h>
#include <stdio.h>
#include <string.h>

#include "skvd.h"

#define RING_ENTRIES 512

int skvd_loop_init(struct skvd *d, struct skv_err *err)
{
	struct io_uring_params p = {0};
	int r = io_uring_queue_init_params(RING_ENTRIES, &d->ring, &p);
	if (r < 0)
		return skv_err_set(err, r, "io_uring: cannot create a ring: %s", strerror(-r));
	return 0;
}

static void live_unlink(struct skvd *d, struct skvd_watch *w)
{
	if (w->prev_live)
		w->prev_live->next_live = w->next_live;
	else
		d->live_watches = w->next_live;
	if (w->next_live)
		w->next_live->prev_live = w->prev_live;
}

/* At exit: the ring goes first (it references the watches), then every watch. */
void skvd_loop_done(struct skvd *d)
{
	io_uring_queue_exit(&d->ring);
	while (d->live_watches) {
		struct skvd_watch *w = d->live_watches;
		live_unlink(d, w);
		free(w);
	}
	d->dead_watches = NULL;
}

static struct io_uring_sqe *get_sqe(struct skvd *d)
{
	struct io_uring_sqe *sqe = io_uring_get_sqe(&d->ring);
	if (!sqe) {
		io_uring_submit(&d->ring);
		sqe = io_uring_get_sqe(&d->ring);
	}
	return sqe;
}

static void arm(struct skvd *d, struct skvd_watch *w, uint32_t events)
{
	struct io_uring_sqe *sqe = get_sqe(d);
	if (!sqe) { /* the SQ stayed full after a submit: tried again at the next iteration */
		d->rearm = true;
		return;
	}
	io_uring_prep_poll_multishot(sqe, w->fd, events);
	io_uring_sqe_set_data(sqe, w);
	w->armed = true;
}

struct skvd_watch *skvd_watch_add(struct skvd *d, int fd, uint32_t events, skvd_watch_fn fn, void *data)
{
	struct skvd_watch *w = calloc(1, sizeof(*w));
	if (!w)
		return NULL;
	w->fd = fd;
	w->fn = fn;
	w->data = data;
	w->events = events;
	w->next_live = d->live_watches;
	if (d->live_watches)
		d->live_watches->prev_live = w;
	d->live_watches = w;
	arm(d, w, events);
	return w;
}

void skvd_doorbell(struct skvd *d, int fd)
{
	static const uint64_t one = 1; /* static: it must outlive the write */
	struct io_uring_sqe *sqe = get_sqe(d);
	if (!sqe)
		return; /* a doorbell is a hint: the peer looks at its ring indices anyway */
	io_uring_prep_write(sqe, fd, &one, sizeof(one), 0);
	io_uring_sqe_set_data(sqe, NULL); /* its completion is ignored */
}

/* Asks the kernel to end w's poll. Without a free SQE it stays owed: the next iteration tries
 * again, and w is not freed before its poll's last completion in any case. */
static void send_remove(struct skvd *d, struct skvd_watch *w)
{
	struct io_uring_sqe *sqe = get_sqe(d);
	if (!sqe) {
		d->rearm = true;
		return;
	}
	io_uring_prep_poll_remove(sqe, (uint64_t)(uintptr_t)w);
	io_uring_sqe_set_data(sqe, NULL); /* its own completion is ignored */
	/* submit now: the removal must reach the kernel before this address can be reused by a
	 * new watch */
	io_uring_submit(&d->ring);
	w->remove_sent = true;
}

void skvd_watch_del(struct skvd *d, struct skvd_watch *w)
{
	if (!w || w->removing)
		return;
	w->removing = true;
	if (d->dispatching == w)
		return; /* its own function deletes it: freed once the dispatch sees it unarmed */
	if (w->armed) {
		send_remove(d, w); /* freed when its poll's last completion comes */
		return;
	}
	w->next_dead = d->dead_watches;
	d->dead_watches = w;
}

int skvd_loop_run_once(struct skvd *d, int timeout_ms)
{
	struct __kernel_timespec ts = {.tv_sec = timeout_ms / 1000, .tv_nsec = (long)(timeout_ms % 1000) * 1000000};
	struct io_uring_cqe *cqe;
	unsigned head, seen = 0;
	int r;

	if (d->rearm) {
		d->rearm = false;
		for (struct skvd_watch *w = d->live_watches; w; w = w->next_live) {
			if (!w->armed && !w->removing)
				arm(d, w, w->events);
			else if (w->armed && w->removing && !w->remove_sent)
				send_remove(d, w);
		}
	}
	r = io_uring_submit_and_wait_timeout(&d->ring, &cqe, 1, &ts, NULL);
	if (r < 0 && r != -ETIME && r != -EINTR)
		return r;

	io_uring_for_each_cqe(&d->ring, head, cqe)
	{
		struct skvd_watch *w = io_uring_cqe_get_data(cqe);
		seen++;
		if (!w)
			continue; /* a poll_remove's own completion */
		bool more = cqe->flags & IORING_CQE_F_MORE;
		if (!more)
			w->armed = false;
		if (cqe->res >= 0 && !w->removing) {
			d->dispatching = w;
			w->fn(d, w, (uint32_t)cqe->res);
			d->dispatching = NULL;
		}
		else if (cqe->res < 0 && cqe->res != -ECANCELED && !w->removing)
			skvd_log(SKVD_WARNING, "io_uring: poll on fd %d failed: %s", w->fd, strerror(-cqe->res));
		if (w->removing && w->armed && !w->remove_sent)
			send_remove(d, w); /* deleted by its own function while its poll is in the ring */
		if (!w->armed) {
			if (w->removing) {
				w->next_dead = d->dead_watches;
				d->dead_watches = w;
			} else {
				arm(d, w, w->events);
			}
		}
	}
	io_uring_cq_advance(&d->ring, seen);

	/* end of iteration: free what the ring no longer references */
	while (d->dead_watches) {
		struct skvd_watch *w = d->dead_watches;
		d->dead_watches = w->next_dead;
		live_unlink(d, w);
		free(w);
	}
	return 0;
}
