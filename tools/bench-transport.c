/* bench-transport.c: skv-bench transport — the cost of the appliance's plumbing.
 *
 *   skv-bench transport ring [--records N] [--batch B] [--json FILE]
 *       two processes, one ring of 256-byte records in a memfd (shm/ring.h): records per second
 *   skv-bench transport latency --socket PATH [--requests N] [--json FILE]
 *       against a running skvd (idle, any model): one-token requests one at a time; from the
 *       timestamps every hop writes (wire.h), the time skvd adds between a client's submit and
 *       the worker taking the request, and between the worker's token and the client having it
 *
 * Targets (issue 4): at least 5M records/s through a ring; p50 under 50 us each way.
 */
#include <errno.h>
#include <getopt.h>
#include <poll.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/wait.h>
#include <unistd.h>

#include <json-c/json.h>

#include "bench.h"
#include "memfd.h"
#include "ring.h"
#include "skv-base.h"
#include "skv.h"

#define REC 256u
#define CAP 1024u

static int cmp_u64(const void *a, const void *b)
{
	uint64_t x = *(const uint64_t *)a, y = *(const uint64_t *)b;
	return x < y ? -1 : x > y;
}

static double pct(uint64_t *v, size_t n, double p)
{
	if (!n)
		return 0;
	size_t i = (size_t)(p * (double)(n - 1) + 0.5);
	return (double)v[i] / 1000.0; /* us */
}

static int ring_bench(uint64_t n, uint32_t batch, json_object *out, const char *key)
{
	struct skv_err err = {0};
	int fd, pfd[2];
	void *mem;
	size_t size = sizeof(struct skv_ring_shared) + (size_t)CAP * REC;

	if (skv_memfd_new("skv-bench-ring", size, &fd, &err) < 0 || skv_memfd_map(fd, size, true, &mem, &err) < 0) {
		fprintf(stderr, "skv-bench: %s\n", err.msg);
		return 1;
	}
	if (pipe(pfd) < 0)
		return 1;
	pid_t pid = fork();
	if (pid < 0)
		return 1;
	if (pid == 0) { /* the consumer: copy every record out, check its sequence number */
		struct skv_ring r;
		static uint8_t recs[64 * REC];
		skv_ring_attach(&r, mem, (char *)mem + sizeof(struct skv_ring_shared), CAP, REC, false);
		for (uint64_t got = 0; got < n;) {
			int k = skv_ring_avail(&r);
			if (k < 0)
				_exit(2);
			/* as a real consumer does: copy out (a batch at a time), then look */
			k = SKV_MIN(k, (int)(batch < 64 ? batch : 64));
			skv_ring_pop_n(&r, recs, (uint32_t)k);
			for (int i = 0; i < k; i++) {
				uint64_t seq;
				memcpy(&seq, recs + (size_t)i * REC, 8);
				if (seq != got)
					_exit(3);
				got++;
			}
		}
		uint64_t t = skv_now_ns();
		ssize_t w = write(pfd[1], &t, sizeof(t));
		_exit(w == sizeof(t) ? 0 : 4);
	}
	struct skv_ring r;
	skv_ring_attach(&r, mem, (char *)mem + sizeof(struct skv_ring_shared), CAP, REC, true);
	uint64_t t0 = skv_now_ns();
	for (uint64_t sent = 0; sent < n;) {
		int space = skv_ring_space(&r);
		if (space <= 0)
			continue;
		uint32_t k = (uint32_t)SKV_MIN((uint64_t)SKV_MIN((uint32_t)space, batch), n - sent);
		for (uint32_t i = 0; i < k; i++) {
			uint64_t seq = sent + i;
			uint8_t *slot = skv_ring_slot(&r, i);
			memcpy(slot, &seq, 8);
			memset(slot + 8, (int)(seq & 0xff), REC - 8);
		}
		skv_ring_commit(&r, k);
		sent += k;
	}
	uint64_t t1 = 0;
	int st;
	if (read(pfd[0], &t1, sizeof(t1)) != sizeof(t1) || waitpid(pid, &st, 0) != pid || !WIFEXITED(st) ||
	    WEXITSTATUS(st) != 0) {
		fprintf(stderr, "skv-bench: the consumer failed (records out of order?)\n");
		return 1;
	}
	double secs = (double)(t1 - t0) / 1e9;
	double rate = (double)n / secs;
	printf("ring: %llu records of %u bytes, batches of up to %u: %.2fM records/s, %.2f GB/s (target >= 5M/s)\n",
	       (unsigned long long)n, REC, batch, rate / 1e6, rate * REC / 1e9);
	json_object *o = json_object_new_object();
	json_object_object_add(o, "records", json_object_new_int64((int64_t)n));
	json_object_object_add(o, "record_bytes", json_object_new_int(REC));
	json_object_object_add(o, "batch", json_object_new_int((int)batch));
	json_object_object_add(o, "records_per_s", json_object_new_double(rate));
	json_object_object_add(out, key, o);
	munmap(mem, size);
	close(fd);
	return 0;
}

static json_object *stats(const char *name, uint64_t *v, size_t n)
{
	qsort(v, n, sizeof(*v), cmp_u64);
	printf("  %-34s p50 %8.1f us   p90 %8.1f us   p99 %8.1f us\n", name, pct(v, n, 0.5), pct(v, n, 0.9),
	       pct(v, n, 0.99));
	json_object *o = json_object_new_object();
	json_object_object_add(o, "p50_us", json_object_new_double(pct(v, n, 0.5)));
	json_object_object_add(o, "p90_us", json_object_new_double(pct(v, n, 0.9)));
	json_object_object_add(o, "p99_us", json_object_new_double(pct(v, n, 0.99)));
	return o;
}

static int latency_bench(const char *socket, uint32_t n, json_object *out)
{
	struct skv_client *c = NULL;
	if (skv_client_new(&c) < 0 || skv_client_connect(c, socket) < 0) {
		fprintf(stderr, "skv-bench: %s\n", c ? skv_client_errmsg(c) : "out of memory");
		skv_client_free(c);
		return 3;
	}
	uint64_t *in = calloc(n, 8), *in_front = calloc(n, 8), *in_back = calloc(n, 8);
	uint64_t *eg = calloc(n, 8), *eg_front = calloc(n, 8), *eg_back = calloc(n, 8);
	uint32_t m = 0;
	int32_t prompt[1] = {1};
	for (uint32_t i = 0; i < n + 10; i++) { /* 10 warm-up requests first */
		struct skv_request req;
		struct skv_event ev;
		uint64_t id, t_delta = 0, worker_ns = 0, skvd_ns = 0;
		skv_request_init(&req);
		req.kind = SKV_PROMPT_IDS;
		req.ids = prompt;
		req.n_ids = 1;
		req.max_tokens = 1;
		req.flags = SKV_REQUEST_TEMPERATURE | SKV_REQUEST_IGNORE_EOS | SKV_REQUEST_STREAM_IDS;
		uint64_t t0 = skv_now_ns();
		if (skv_client_submit(c, &req, &id) < 0) {
			fprintf(stderr, "skv-bench: %s\n", skv_client_errmsg(c));
			return 1;
		}
		for (;;) {
			if (skv_client_next(c, &ev, 10000) < 0) {
				fprintf(stderr, "skv-bench: %s\n", skv_client_errmsg(c));
				return 1;
			}
			if (ev.type == SKV_EVENT_DELTA && !t_delta) {
				t_delta = skv_now_ns();
				worker_ns = ev.t_worker_ns;
				skvd_ns = ev.t_skvd_ns;
			}
			if (ev.type == SKV_EVENT_FINAL)
				break;
		}
		if (ev.finish == SKV_FINISH_REASON_ERROR || !ev.t_taken_ns || !worker_ns) {
			fprintf(stderr, "skv-bench: request failed or skvd sent no timestamps: %s\n", ev.message);
			return 1;
		}
		if (i < 10)
			continue;
		in[m] = ev.t_taken_ns - t0;
		in_front[m] = ev.t_seen_ns - t0;
		in_back[m] = ev.t_taken_ns - ev.t_seen_ns;
		eg[m] = t_delta - worker_ns;
		eg_front[m] = skvd_ns - worker_ns;
		eg_back[m] = t_delta - skvd_ns;
		m++;
	}
	printf("latency through skvd, %u one-token requests one at a time (target p50 < 50 us each way):\n", m);
	json_object *o = json_object_new_object();
	json_object_object_add(o, "requests", json_object_new_int((int)m));
	json_object_object_add(o, "submit_to_worker", stats("client submit -> worker has it", in, m));
	json_object_object_add(o, "submit_to_skvd", stats("  of which client -> skvd", in_front, m));
	json_object_object_add(o, "skvd_to_worker", stats("  of which skvd -> worker", in_back, m));
	json_object_object_add(o, "worker_to_client", stats("worker token -> client has it", eg, m));
	json_object_object_add(o, "worker_to_skvd", stats("  of which worker -> skvd sent", eg_front, m));
	json_object_object_add(o, "skvd_to_client", stats("  of which skvd -> client", eg_back, m));
	json_object_object_add(out, "latency", o);
	free(in), free(in_front), free(in_back), free(eg), free(eg_front), free(eg_back);
	skv_client_free(c);
	return 0;
}

static int transport_main(int argc, char **argv)
{
	static const struct option opts[] = {
		{"records", required_argument, NULL, 'n'}, {"batch", required_argument, NULL, 'b'},
		{"socket", required_argument, NULL, 's'},  {"requests", required_argument, NULL, 'r'},
		{"json", required_argument, NULL, 'j'},	   {0},
	};
	int64_t records = 20000000, batch = 64, requests = 2000;
	const char *socket = NULL, *json = NULL;
	int c, rc = 0;

	while ((c = getopt_long(argc, argv, "", opts, NULL)) != -1) {
		int r = 0;
		switch (c) {
		case 'n':
			r = skv_parse_i64(optarg, 1, INT64_MAX, &records);
			break;
		case 'b':
			r = skv_parse_i64(optarg, 1, CAP, &batch);
			break;
		case 'r':
			r = skv_parse_i64(optarg, 1, 10000000, &requests);
			break;
		case 's':
			socket = optarg;
			break;
		case 'j':
			json = optarg;
			break;
		default:
			r = -EINVAL;
		}
		if (r < 0) {
			fprintf(stderr, "usage: skv-bench transport [ring|latency] [--records N] [--batch B] [--socket PATH] "
					"[--requests N] [--json FILE]\n");
			return 2;
		}
	}
	const char *what = optind < argc ? argv[optind] : "all";
	bool ring = !strcmp(what, "ring") || !strcmp(what, "all");
	bool lat = !strcmp(what, "latency") || (!strcmp(what, "all") && socket);
	if (!ring && !lat) {
		fprintf(stderr, "skv-bench transport: '%s' is not ring or latency (latency needs --socket)\n", what);
		return 2;
	}
	json_object *out = json_object_new_object();
	if (ring)
		rc = ring_bench((uint64_t)records, (uint32_t)batch, out, "ring");
	if (!rc && ring && batch != 1) /* and one record at a time: the worst case */
		rc = ring_bench((uint64_t)records / 4, 1, out, "ring_single");
	if (!rc && lat)
		rc = latency_bench(socket, (uint32_t)requests, out);
	if (!rc && json && json_object_to_file_ext(json, out, JSON_C_TO_STRING_PRETTY) < 0) {
		fprintf(stderr, "skv-bench: cannot write %s\n", json);
		rc = 1;
	}
	json_object_put(out);
	return rc;
}

const struct skv_bench_cmd skv_bench_transport = {
	.name = "transport",
	.summary = "ring throughput between two processes, and skvd's added latency (--socket)",
	.main = transport_main,
};
