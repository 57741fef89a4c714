/* fuzz-config-ini: skvd_config_load (daemon/config.c, with Debian's inih underneath) on
 * arbitrary file contents. A rejected file leaves the caller's struct untouched and says why; an
 * accepted one holds every value in its key's range, and written out with skvd_config_write it
 * loads back to the same configuration. config.c is compiled into this target so that libFuzzer
 * sees its branches. */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <unistd.h>

#include "config.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static int file_fd = -1, back_fd = -1;
static char file_path[64], back_path[64];

static int open_memfd(const char *name, char *path, size_t len)
{
	int fd = memfd_create(name, MFD_CLOEXEC);
	if (fd < 0)
		abort();
	snprintf(path, len, "/proc/self/fd/%d", fd);
	return fd;
}

static void put(int fd, const void *data, size_t size)
{
	if (ftruncate(fd, 0) < 0 || (size && pwrite(fd, data, size, 0) != (ssize_t)size))
		abort();
}

static void check_ranges(const struct skvd_config *c)
{
	if (!c->model_path[0] || c->socket[0] != '/' || c->admin_socket[0] != '/' || !strcmp(c->socket, c->admin_socket))
		abort();
	if (memchr(c->model_path, 0, sizeof(c->model_path)) == NULL || memchr(c->model_name, 0, sizeof(c->model_name)) == NULL ||
	    memchr(c->allow_group, 0, sizeof(c->allow_group)) == NULL)
		abort();
	if (c->swiftkv < -1 || c->swiftkv > 1 || c->backend > SKVD_BACKEND_CUDA || c->n_devices > SKVD_MAX_DEVICES)
		abort();
	for (uint32_t i = 0; i < c->n_devices; i++) {
		if (c->devices[i] < 0 || c->devices[i] > 255)
			abort();
		for (uint32_t j = 0; j < i; j++)
			if (c->devices[i] == c->devices[j])
				abort();
	}
	if (c->replicas < 1 || c->replicas > 64 || c->max_batch_tokens < 16 || c->max_seqs < 1 || c->block_size < 4 ||
	    c->block_size > 256 || (c->block_size & (c->block_size - 1)) || (c->max_context && c->max_context < 16) ||
	    (c->kv_bytes && c->kv_bytes < (1u << 20)) || !(c->kv_fraction >= 0.05 && c->kv_fraction <= 0.99) ||
	    (c->mixed_batch_tokens && c->mixed_batch_tokens < 16) || c->mixed_batch_tokens > c->max_batch_tokens ||
	    c->admission < 0 || c->admission > 1)
		abort();
	if (c->default_max_tokens > c->max_new_tokens || c->restart_backoff_ms > c->restart_backoff_max_ms ||
	    c->max_prompt_tokens > c->queue_prompt_tokens || c->heartbeat_timeout_ms < 500 || c->max_request_bytes < 4096 ||
	    c->max_stop > 64 || c->max_stop_bytes < 1 || c->max_clients < 1 || c->max_in_flight < 1 || c->queue_requests < 1 ||
	    c->max_sessions_per_uid < 1 || c->max_sessions_per_uid > c->max_clients)
		abort();
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	struct skvd_config c, before, back;
	struct skv_err err = {0};

	if (file_fd < 0) {
		file_fd = open_memfd("fuzz.ini", file_path, sizeof(file_path));
		back_fd = open_memfd("back.ini", back_path, sizeof(back_path));
	}
	put(file_fd, data, size);
	memset(&c, 0x5c, sizeof(c));
	memcpy(&before, &c, sizeof(c));
	if (skvd_config_load(file_path, &c, &err) < 0) {
		/* "FILE: ..." or "FILE:LINE: ...", and nothing written */
		if (!err.msg[0] || err.code >= 0 || strncmp(err.msg, file_path, strlen(file_path)) ||
		    err.msg[strlen(file_path)] != ':' || memcmp(&c, &before, sizeof(c)))
			abort();
		return 0;
	}
	check_ranges(&c);

	/* written out and read back: the same configuration */
	char *text = NULL;
	size_t len = 0;
	FILE *f = open_memstream(&text, &len);
	if (!f || skvd_config_write(&c, f) < 0 || fclose(f) != 0)
		abort();
	put(back_fd, text, len);
	free(text);
	if (skvd_config_load(back_path, &back, &err) < 0) {
		fprintf(stderr, "written config rejected: %s\n", err.msg);
		abort();
	}
	if (memcmp(&back, &c, sizeof(c)))
		abort();
	return 0;
}
