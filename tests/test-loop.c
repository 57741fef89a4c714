/* test-loop.c: skvd's io_uring loop (daemon/loop.c) on a real ring, with the paths that are rare
 * in service forced: a watch deleted while its multishot poll is in the kernel and no SQE can
 * be had (the submission queue full and submitting failing) must stay alive until the kernel
 * has let go of it, and its poll must end once SQEs are back. */
#include <errno.h>
#include <poll.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <fcntl.h>
#include <sys/eventfd.h>
#include <unistd.h>

#include "skvd.h"
#include "test-util.h"

/* loop.c's log goes to skvd's stderr; here to the test's */
void skvd_log(int prio, const char *fmt, ...)
{
	va_list ap;
	va_start(ap, fmt);
	fprintf(stderr, "<%d>", prio);
	vfprintf(stderr, fmt, ap);
	fputc('\n', stderr);
	va_end(ap);
}

static int fired;
static void on_fd(struct skvd *d, struct skvd_watch *w, uint32_t revents)
{
	(void)d, (void)w, (void)revents;
	fired++;
}

static bool live(const struct skvd *d, const struct skvd_watch *w)
{
	for (const struct skvd_watch *x = d->live_watches; x; x = x->next_live)
		if (x == w)
			return true;
	return false;
}

static void test_del_without_sqe(void **state)
{
	(void)state;
	static struct skvd d; /* zeroed, and too big for the stack */
	struct skv_err err = {0};
	if (skvd_loop_init(&d, &err) < 0) {
		fprintf(stderr, "no io_uring here: %s\n", err.msg);
		skip();
		return;
	}
	int efd = eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK), other = open("/dev/null", O_RDONLY | O_CLOEXEC);
	assert_true(efd >= 0 && other >= 0);
	struct skvd_watch *w = skvd_watch_add(&d, efd, POLLIN, on_fd, NULL);
	assert_non_null(w);
	assert_int_equal(skvd_loop_run_once(&d, 0), 0); /* the poll is now in the kernel */
	assert_true(w->armed);

	/* no SQE to be had: the queue full, and submitting failing (not a ring fd) */
	for (struct io_uring_sqe *sqe; (sqe = io_uring_get_sqe(&d.ring));) {
		io_uring_prep_nop(sqe);
		io_uring_sqe_set_data(sqe, NULL);
	}
	const int ring_fd = d.ring.enter_ring_fd;
	d.ring.enter_ring_fd = other;
	skvd_watch_del(&d, w);
	d.ring.enter_ring_fd = ring_fd;
	assert_true(w->removing && w->armed && !w->remove_sent);
	assert_true(live(&d, w)); /* not freed: the kernel still holds its address */

	/* SQEs are back: within a few iterations the poll ends and the watch is freed */
	for (int i = 0; i < 20 && live(&d, w); i++)
		assert_int_equal(skvd_loop_run_once(&d, 10), 0);
	assert_false(live(&d, w));
	assert_int_equal(fired, 0); /* a deleted watch is never dispatched */

	/* its poll is gone from the kernel: an event on the fd completes nothing that names it */
	uint64_t one = 1;
	assert_int_equal(write(efd, &one, sizeof(one)), sizeof(one));
	struct io_uring_cqe *cqe;
	struct __kernel_timespec ts = {.tv_nsec = 100000000};
	while (io_uring_wait_cqe_timeout(&d.ring, &cqe, &ts) == 0) {
		assert_ptr_equal(io_uring_cqe_get_data(cqe), NULL); /* the no-ops and the removal's own */
		io_uring_cqe_seen(&d.ring, cqe);
	}
	skvd_loop_done(&d);
	close(efd);
	close(other);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_del_without_sqe),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
