/* skvd: the supervisor daemon. Loads the weights once into a sealed memfd it owns, creates each
 * replica's regions, spawns and watches one skv-worker per replica, and serves clients over its
 * socket. Runs in the foreground (systemd Type=notify). SIGHUP reloads the configuration,
 * SIGTERM drains: new requests are refused at once, in-flight ones finish within the drain
 * timeout, the rest end with shutting_down.
 *
 *   skvd --config FILE        serve
 *   skvd --check-config FILE  validate FILE and exit (non-zero, naming the line, when invalid)
 */
#include <getopt.h>
#include <libgen.h>
#include <poll.h>
#include <signal.h>
#include <stdio.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/signalfd.h>
#include <sys/timerfd.h>
#include <systemd/sd-daemon.h>
#include <unistd.h>

#include "idmap.h"
#include "memfd.h"
#include "safetensors.h"
#include "skv-version.h"
#include "skvd-req.h"

struct progress {
	struct skvd *d;
	uint64_t last_ns;
};

static void on_progress(void *userdata, uint64_t done, uint64_t total)
{
	struct progress *p = userdata;
	uint64_t now = skv_now_ns();
	if (now - p->last_ns < 1000000000ull && done != total)
		return;
	p->last_ns = now;
	/* loading can take a while: ask systemd for 30 s more each time we make progress */
	skvd_notify(p->d, "STATUS=loading weights %.1f/%.1f GB\nEXTEND_TIMEOUT_USEC=30000000", (double)done / 1e9,
		    (double)total / 1e9);
}

/* CUDA: the image's header into a sealed memfd, its data onto every GPU served, each tensor
 * copied from the checkpoint's mapping straight into the GPU region when its dtype is already
 * bf16 (converted through a host buffer otherwise). */
static int load_cuda(struct skvd *d, struct skv_image_plan *plan, struct skv_err *err)
{
	_cleanup_free_ void *buf = NULL;
	size_t buf_cap = 0;
	void *meta = NULL;
	int count, r;

	if ((r = skv_keeper_open(&count, err)) < 0)
		return skv_err_prefix(err, r, "[engine] backend = cuda: ");
	d->n_dev = d->cfg.n_devices ? d->cfg.n_devices : (uint32_t)SKV_MIN(count, SKVD_MAX_DEVICES);
	for (uint32_t i = 0; i < d->n_dev; i++) {
		d->dev_ids[i] = d->cfg.n_devices ? d->cfg.devices[i] : (int)i;
		if (d->dev_ids[i] >= count)
			return skv_err_set(err, -ENODEV, "[engine] devices: GPU %d does not exist (%d visible)", d->dev_ids[i],
					   count);
	}
	d->weights_bytes = skv_image_meta_size(plan);
	d->weights_dev_bytes = plan->header.data_size;
	if ((r = skv_memfd_new("skv-weights-meta", d->weights_bytes, &d->weights_fd, err)) < 0 ||
	    (r = skv_memfd_map(d->weights_fd, d->weights_bytes, true, &meta, err)) < 0)
		return r;
	skv_image_write_meta(plan, meta);
	munmap(meta, d->weights_bytes);
	if ((r = skv_memfd_seal_readonly(d->weights_fd, err)) < 0 ||
	    (r = skv_memfd_map(d->weights_fd, d->weights_bytes, false, &meta, err)) < 0 ||
	    (r = skv_image_check_meta(meta, d->weights_bytes, d->weights_dev_bytes, &d->image, err)) < 0)
		return r;

	uint64_t total = (uint64_t)d->n_dev * plan->header.data_size, done = 0;
	struct progress pr = {.d = d};
	for (uint32_t g = 0; g < d->n_dev; g++) {
		struct skv_keeper_region *wr = &d->dev_wregs[g];
		if ((r = skv_keeper_create(d->dev_ids[g], plan->header.data_size, wr, err)) < 0)
			return r;
		for (uint32_t i = 0; i < plan->header.n_entries; i++) {
			const struct skv_image_entry *e = &plan->entries[i];
			const struct skv_image_src_list *sl = &plan->sources[i];
			bool direct = true;
			for (uint32_t s = 0; s < sl->n; s++)
				direct &= sl->src[s]->dtype == SKV_ST_BF16;
			if (direct) {
				size_t off = e->offset;
				for (uint32_t s = 0; s < sl->n; s++) {
					size_t n = sl->src[s]->end - sl->src[s]->begin;
					if ((r = skv_keeper_upload(wr, off, sl->src[s]->data, n, err)) < 0)
						return r;
					off += n;
				}
			} else {
				if (e->nbytes > buf_cap) {
					free(buf);
					buf_cap = e->nbytes;
					if (!(buf = malloc(buf_cap)))
						return skv_err_set(err, -ENOMEM, "out of memory converting the weights");
				}
				if ((r = skv_image_fill_entry(plan, i, buf, err)) < 0 ||
				    (r = skv_keeper_upload(wr, e->offset, buf, e->nbytes, err)) < 0)
					return r;
			}
			done += e->nbytes;
			on_progress(&pr, done, total);
		}
	}
	return 0;
}

/* [model] path as skvd would serve it on this machine, without reading a weight: config.json
 * parsed and validated, every safetensors file the index names there, with headers whose
 * tensors tile exactly the file's size, and every tensor the image needs present with its
 * shape (skv_checkpoint_open maps the files and reads only their headers). Fills the backend
 * (auto resolved), the checkpoint and the image plan; errors name the file and the tensor. */
static int open_model(const struct skvd_config *c, enum skvd_backend *ret_backend, struct skv_checkpoint **ret_ckpt,
		      struct skv_image_plan **ret_plan, struct skv_err *err)
{
	struct skv_checkpoint *ckpt = NULL;
	enum skvd_backend backend = c->backend;
	int r = skv_checkpoint_open(c->model_path, &ckpt, err);
	if (r < 0)
		return r;
	bool on = c->swiftkv < 0 ? ckpt->config.swiftkv != 0 : c->swiftkv != 0;
	if (on && !ckpt->config.swiftkv) {
		r = skv_err_set(err, -EINVAL, "[model] swiftkv = on, but %s is a plain llama checkpoint", c->model_path);
		goto fail;
	}
	if (backend == SKVD_BACKEND_AUTO) {
		int count = 0;
		struct skv_err why = {0};
		backend = skv_keeper_open(&count, &why) == 0 && count > 0 ? SKVD_BACKEND_CUDA : SKVD_BACKEND_CPU;
		if (backend == SKVD_BACKEND_CPU)
			skvd_log(SKVD_INFO, "backend = auto: serving on the CPU (%s)", why.msg);
	}
	r = skv_image_plan_new(ckpt, backend == SKVD_BACKEND_CUDA ? SKV_DTYPE_BF16 : SKV_DTYPE_F32, on, ret_plan, err);
	if (r < 0)
		goto fail;
	*ret_backend = backend;
	*ret_ckpt = ckpt;
	return 0;
fail:
	skv_checkpoint_free(ckpt);
	return r;
}

/* skvd --check-config: the model, and a configured KV arena against the engine's limit. */
static int check_model(const struct skvd_config *c, struct skv_err *err)
{
	struct skv_checkpoint *ckpt = NULL;
	struct skv_image_plan *plan = NULL;
	enum skvd_backend backend;
	uint64_t blocks;
	int r = open_model(c, &backend, &ckpt, &plan, err);
	if (r == 0 && c->kv_bytes)
		r = skvd_kv_blocks(&plan->header, backend, c->kv_bytes, c->block_size, true, &blocks, err);
	skv_image_plan_free(plan);
	skv_checkpoint_free(ckpt);
	return r;
}

static int load_model(struct skvd *d, struct skv_err *err)
{
	struct skv_checkpoint *ckpt = NULL;
	struct skv_image_plan *plan = NULL;
	void *map = NULL;
	int r;

	r = open_model(&d->cfg, &d->backend, &ckpt, &plan, err);
	if (r < 0) {
		if (r != -ENOMEM) /* a model that is not there or not valid: no restart helps */
			d->exit_status = SKV_EXIT_CONFIG;
		return r;
	}
	d->model = ckpt->config;
	bool on = plan->header.swiftkv_on;
	if (d->backend == SKVD_BACKEND_CUDA) {
		skvd_log(SKVD_INFO, "loading %s (%s, %.2f GB of bf16 weights per GPU)", d->cfg.model_path,
			 on ? "SwiftKV" : "full model", (double)plan->header.data_size / 1e9);
		if ((r = load_cuda(d, plan, err)) < 0)
			goto out;
		goto loaded;
	}
	d->weights_bytes = plan->header.total_size;
	r = skv_memfd_new("skv-weights", d->weights_bytes, &d->weights_fd, err);
	if (r < 0)
		goto out;
	r = skv_memfd_map(d->weights_fd, d->weights_bytes, true, &map, err);
	if (r < 0)
		goto out;
	struct progress pr = {.d = d};
	skvd_log(SKVD_INFO, "loading %s (%s, %.2f GB image)", d->cfg.model_path, on ? "SwiftKV" : "full model",
		 (double)d->weights_bytes / 1e9);
	r = skv_image_fill(plan, map, on_progress, &pr, err);
	munmap(map, d->weights_bytes);
	map = NULL;
	if (r < 0)
		goto out;
	/* nobody writes the weights again: sealed, then mapped read-only */
	if ((r = skv_memfd_seal_readonly(d->weights_fd, err)) < 0 ||
	    (r = skv_memfd_map(d->weights_fd, d->weights_bytes, false, &map, err)) < 0 ||
	    (r = skv_image_check(map, d->weights_bytes, &d->image, err)) < 0)
		goto out;
	map = NULL;
loaded:
	if (!d->cfg.model_name[0]) {
		char tmp[SKVD_PATH_MAX];
		skv_strscpy(tmp, d->cfg.model_path, sizeof(tmp));
		skv_strscpy(d->cfg.model_name, basename(tmp), sizeof(d->cfg.model_name));
	}
	d->max_context = d->cfg.max_context ? SKV_MIN(d->cfg.max_context, d->model.max_position) : d->model.max_position;
	r = skvd_text_load(d, err);
out:
	if (map)
		munmap(map, d->weights_bytes);
	skv_image_plan_free(plan);
	skv_checkpoint_free(ckpt);
	return r;
}

void skvd_begin_drain(struct skvd *d, const char *why)
{
	if (d->draining)
		return;
	d->draining = true;
	d->drain_deadline_ns = skv_now_ns() + (uint64_t)d->cfg.drain_timeout_ms * 1000000ull;
	skvd_notify(d, "STOPPING=1\nSTATUS=draining (%s)", why);
	skvd_log(SKVD_NOTICE, "draining (%s): new requests are refused, in-flight ones get %u ms", why,
		 d->cfg.drain_timeout_ms);
}

/* Keys a running skvd cannot change: reported, and the reload refused. */
static const char *restart_key(const struct skvd_config *a, const struct skvd_config *b)
{
	if (strcmp(a->model_path, b->model_path))
		return "[model] path";
	if (a->swiftkv != b->swiftkv)
		return "[model] swiftkv";
	if (strcmp(a->model_name, b->model_name) && b->model_name[0])
		return "[model] name";
	if (strcmp(a->chat_template, b->chat_template))
		return "[model] chat_template";
	if (a->backend != b->backend)
		return "[engine] backend";
	if (a->n_devices != b->n_devices || memcmp(a->devices, b->devices, sizeof(a->devices)))
		return "[engine] devices";
	if (a->replicas != b->replicas)
		return "[engine] replicas";
	if (a->threads != b->threads)
		return "[engine] threads";
	if (a->max_batch_tokens != b->max_batch_tokens)
		return "[engine] max_batch_tokens";
	if (a->mixed_batch_tokens != b->mixed_batch_tokens)
		return "[engine] mixed_batch_tokens";
	if (a->admission != b->admission)
		return "[engine] admission";
	if (a->max_seqs != b->max_seqs)
		return "[engine] max_seqs";
	if (a->max_context != b->max_context)
		return "[engine] max_context";
	if (a->kv_bytes != b->kv_bytes || a->kv_fraction != b->kv_fraction)
		return "[engine] kv_cache_bytes";
	if (a->block_size != b->block_size)
		return "[engine] block_size";
	if (strcmp(a->socket, b->socket))
		return "[server] socket";
	if (strcmp(a->admin_socket, b->admin_socket))
		return "[server] admin_socket";
	if (a->max_request_bytes != b->max_request_bytes)
		return "[limits] max_request_bytes";
	return NULL;
}

int skvd_reload(struct skvd *d, char *msg, size_t msg_len)
{
	struct skvd_config nc;
	struct skv_err err = {0};
	struct skvd_groups groups;
	const char *key;

	skvd_notify(d, "RELOADING=1\nMONOTONIC_USEC=%llu", (unsigned long long)(skv_now_ns() / 1000));
	int r = skvd_config_load(d->config_path, &nc, &err);
	if (r == 0) {
		if (!nc.model_name[0])
			memcpy(nc.model_name, d->cfg.model_name, sizeof(nc.model_name));
		key = restart_key(&d->cfg, &nc);
		if (key) {
			snprintf(msg, msg_len, "%s: %s changed; it takes effect only when skvd restarts", d->config_path, key);
			r = -EINVAL;
		}
	} else {
		snprintf(msg, msg_len, "%s", err.msg);
	}
	if (r == 0) {
		if (skvd_resolve_groups(&nc, &groups, &err) < 0) {
			snprintf(msg, msg_len, "%s: %s", d->config_path, err.msg);
			r = -EINVAL;
		}
	}
	if (r == 0) {
		d->cfg = nc;
		d->groups = groups;
		skvd_front_apply_groups(d);
		skvd_log(SKVD_NOTICE, "configuration reloaded from %s", d->config_path);
	} else {
		skvd_log(SKVD_WARNING, "reload refused, the old configuration keeps serving: %s", msg);
	}
	skvd_notify(d, "READY=1");
	return r;
}

static void on_signal(struct skvd *d, struct skvd_watch *w, uint32_t revents)
{
	struct signalfd_siginfo si;
	(void)revents;
	while (read(w->fd, &si, sizeof(si)) == sizeof(si)) {
		if (si.ssi_signo == SIGTERM || si.ssi_signo == SIGINT) {
			skvd_begin_drain(d, si.ssi_signo == SIGTERM ? "SIGTERM" : "SIGINT");
		} else if (si.ssi_signo == SIGHUP) {
			char msg[1024];
			skvd_reload(d, msg, sizeof(msg));
		}
	}
}

static void on_tick(struct skvd *d, struct skvd_watch *w, uint32_t revents)
{
	uint64_t n;
	(void)revents;
	if (read(w->fd, &n, sizeof(n)) < 0)
		return;
	skvd_replicas_tick(d);
	skvd_requests_tick(d);
	skvd_sessions_tick(d);
	skvd_admin_tick(d);
	skvd_text_tick(d);
	/* the watchdog is fed only while every worker's heartbeat is fresh */
	if (d->watchdog && d->ready_sent && skvd_replicas_fresh(d))
		sd_notify(0, "WATCHDOG=1");
	if (d->draining) {
		/* done when no request is left and every final has reached its client's ring (or
		 * the drain timeout has passed for a client that does not read) */
		bool idle = true;
		for (uint32_t i = 0; i < d->n_replicas; i++)
			idle &= d->replicas[i].n_reqs == 0;
		for (struct skvd_session *s = d->sessions; s && idle; s = s->next)
			idle &= s->out_len == 0 || s->closing || skv_now_ns() >= d->drain_deadline_ns;
		if (idle)
			d->quit = true;
	}
}

static void usage(FILE *f)
{
	fputs("usage: skvd --config FILE\n"
	      "       skvd --check-config FILE\n"
	      "       skvd --version | --help\n",
	      f);
}

int main(int argc, char **argv)
{
	static const struct option opts[] = {
		{"config", required_argument, NULL, 'c'},
		{"check-config", required_argument, NULL, 'k'},
		{"help", no_argument, NULL, 'h'},
		{"version", no_argument, NULL, 'V'},
		{0},
	};
	static struct skvd d; /* zeroed */
	struct skv_err err = {0};
	const char *config = NULL;
	bool check = false;
	int c, rc = 1;

	while ((c = getopt_long(argc, argv, "h", opts, NULL)) != -1) {
		switch (c) {
		case 'c':
			config = optarg;
			break;
		case 'k':
			config = optarg;
			check = true;
			break;
		case 'h':
			usage(stdout);
			return 0;
		case 'V':
			skv_version_print("skvd");
			return 0;
		default:
			usage(stderr);
			return 2;
		}
	}
	if (!config || optind != argc) {
		usage(stderr);
		return 2;
	}
	if (skvd_config_load(config, &d.cfg, &err) < 0) {
		fprintf(stderr, "skvd: %s\n", err.msg);
		return SKV_EXIT_CONFIG; /* the unit's RestartPreventExitStatus= stops restart loops */
	}
	if (check) {
		if (check_model(&d.cfg, &err) < 0) {
			fprintf(stderr, "skvd: %s: [model] path = %s: %s\n", config, d.cfg.model_path, err.msg);
			return SKV_EXIT_CONFIG;
		}
		printf("%s: ok\n", config);
		return 0;
	}
	skv_strscpy(d.config_path, config, sizeof(d.config_path));
	d.start_ns = skv_now_ns();
	d.weights_fd = d.signal_fd = d.timer_fd = -1;
	d.next_req_id = 1;
	d.watchdog = sd_watchdog_enabled(0, NULL) > 0;
	signal(SIGPIPE, SIG_IGN);
	/* CPU workers' OpenMP threads sleep when idle instead of spinning on cores skvd needs (read
	 * by libgomp when a worker starts; an operator's own setting wins) */
	setenv("OMP_WAIT_POLICY", "PASSIVE", 0);

	sigset_t mask;
	sigemptyset(&mask);
	sigaddset(&mask, SIGTERM);
	sigaddset(&mask, SIGINT);
	sigaddset(&mask, SIGHUP);
	sigprocmask(SIG_BLOCK, &mask, NULL);
	d.signal_fd = signalfd(-1, &mask, SFD_CLOEXEC | SFD_NONBLOCK);
	d.timer_fd = timerfd_create(CLOCK_MONOTONIC, TFD_CLOEXEC | TFD_NONBLOCK);
	struct itimerspec its = {.it_interval = {0, SKVD_TICK_MS * 1000000L}, .it_value = {0, SKVD_TICK_MS * 1000000L}};
	d.reqs = skvd_idmap_new();
	if (d.signal_fd < 0 || d.timer_fd < 0 || timerfd_settime(d.timer_fd, 0, &its, NULL) < 0 || !d.reqs) {
		skvd_log(SKVD_ERR, "cannot set up signals and timers: %s", strerror(errno));
		return 1;
	}
	if (skvd_listen_fds(&d, &err) < 0 || skvd_resolve_groups(&d.cfg, &d.groups, &err) < 0 ||
	    skvd_loop_init(&d, &err) < 0) {
		skvd_log(SKVD_ERR, "%s", err.msg);
		return 1;
	}
	skvd_notify(&d, "STATUS=loading %s", d.cfg.model_path);
	if (load_model(&d, &err) < 0 || skvd_replicas_create(&d, &err) < 0 || skvd_front_init(&d, &err) < 0 ||
	    skvd_admin_init(&d, &err) < 0) {
		skvd_log(SKVD_ERR, "%s", err.msg);
		skvd_notify(&d, "STATUS=failed: %s", err.msg);
		rc = d.exit_status ? d.exit_status : 1;
		goto out;
	}
	skvd_log(SKVD_INFO, "%u replica%s, %u KV blocks of %u tokens each (%.1f MB), context %u, client socket %s",
		 d.n_replicas, d.n_replicas > 1 ? "s" : "", d.num_blocks, d.cfg.block_size, (double)d.kv_bytes / 1e6,
		 d.max_context, d.client_activated ? "(socket-activated)" : d.cfg.socket);
	skvd_watch_add(&d, d.signal_fd, POLLIN, on_signal, NULL);
	skvd_watch_add(&d, d.timer_fd, POLLIN, on_tick, NULL);
	skvd_notify(&d, "STATUS=starting workers");

	while (!d.quit) {
		/* before waiting: completions out, closed clients and ended requests reaped */
		skvd_sessions_flush(&d);
		skvd_requests_reap(&d);
		int r = skvd_loop_run_once(&d, 1000);
		if (r < 0) {
			skvd_log(SKVD_ERR, "io_uring: %s", strerror(-r));
			goto out;
		}
	}
	skvd_sessions_flush(&d);
	rc = d.exit_status;
	if (rc)
		skvd_log(SKVD_ERR, "stopped, exit status %d", rc);
	else
		skvd_log(SKVD_NOTICE, "stopped");
out:
	skvd_notify(&d, "STOPPING=1");
	skvd_replicas_stop(&d);
	skvd_front_done(&d);
	skvd_admin_done(&d);
	skvd_requests_reap(&d);
	skvd_replicas_destroy(&d);
	skvd_loop_done(&d);
	skvd_text_free(&d);
	skvd_idmap_free(d.reqs);
	free(d.metrics);
	return rc;
}
