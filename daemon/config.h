/* config.h: skvd's configuration, read from an INI file (/etc/swiftkv/skvd.ini) with inih.
 *
 * Every key is documented in etc/skvd.ini and skvd.ini(5). A file is accepted only whole:
 * a syntax error, an unknown section or key, a value out of range or a value inih may have
 * truncated (Debian's inih cuts long lines) rejects it with a message naming the file, the line
 * and the key. Reload parses into a fresh struct and swaps only on success, so a bad file never
 * touches the running configuration.
 */
#pragma once

#include <limits.h>
#include <stdint.h>
#include <stdio.h>

#include "skv-base.h"

enum skvd_backend { SKVD_BACKEND_AUTO = 0, SKVD_BACKEND_CPU = 1, SKVD_BACKEND_CUDA = 2 };

#define SKVD_MAX_DEVICES 16
#define SKVD_PATH_MAX 192 /* what Debian's inih keeps of a value */

/* Where the shipped files put things (systemd/, etc/skvd.ini, skvctl's default). The sockets
 * live in /run/swiftkv, which tmpfiles.d and the .socket units create: not in skvd's
 * RuntimeDirectory (/run/skvd), which systemd deletes whenever skvd stops. */
#define SKVD_DEFAULT_CONFIG "/etc/swiftkv/skvd.ini"
#define SKVD_DEFAULT_SOCKET "/run/swiftkv/skvd.sock"
#define SKVD_DEFAULT_ADMIN_SOCKET "/run/swiftkv/skvd-admin.sock"

struct skvd_config {
	/* [model] */
	char model_path[SKVD_PATH_MAX]; /* path: a Hugging Face model directory */
	int swiftkv;			/* swiftkv = on | off | auto (-1: on for llama_swiftkv) */
	char model_name[64];		/* name: reported to clients (default: the directory's name) */
	char chat_template[SKVD_PATH_MAX]; /* chat_template: a Jinja file replacing the model's ("": none) */

	/* [engine] */
	enum skvd_backend backend;	      /* backend = auto | cpu | cuda */
	int devices[SKVD_MAX_DEVICES];	      /* devices = all | 0,1,... (CUDA) */
	uint32_t n_devices;		      /* 0 with devices = all */
	uint32_t replicas;		      /* replicas (CPU backend) */
	uint32_t threads;		      /* threads per CPU replica, 0 = cores / replicas */
	uint32_t max_batch_tokens;	      /* token budget per step */
	uint32_t mixed_batch_tokens;	      /* budget of a step with decode tokens, 0 = max_batch_tokens */
	int admission;			      /* admission = eager (0) | reserve (1), as enum skv_admission */
	uint32_t max_seqs;		      /* sequences per replica */
	uint32_t max_context;		      /* positions per sequence, 0 = the model's */
	uint64_t kv_bytes;		      /* kv_cache_bytes: arena per replica, 0 = kv_cache_fraction */
	double kv_fraction;		      /* kv_cache_fraction of free device memory (CUDA) */
	uint32_t block_size;		      /* tokens per KV block */

	/* [server] */
	char socket[108];	     /* client socket path (when not socket-activated) */
	char admin_socket[108];	     /* admin socket path */
	char allow_group[64];	     /* allow_group: clients must be in it ("" = anyone who can connect) */
	char admin_group[64];	     /* admin_group: skvctl users ("" = root only) */
	uint32_t max_clients;
	uint32_t max_sessions_per_uid; /* sessions (pre-hello ones too) one uid may hold */
	uint32_t max_in_flight;	     /* requests per client session */
	uint32_t queue_requests;     /* queued + running requests per replica */
	uint64_t queue_prompt_tokens; /* prompt tokens of those */

	/* [limits] */
	uint32_t max_prompt_tokens;
	uint32_t max_new_tokens;
	uint32_t default_max_tokens;
	uint32_t max_request_bytes;
	uint32_t request_timeout_ms; /* 0 = none */
	uint32_t max_stop;	     /* stop strings per request */
	uint32_t max_stop_bytes;

	/* [supervisor] */
	uint32_t heartbeat_timeout_ms;	 /* the worker's heartbeat thread: is the process running */
	uint32_t stall_timeout_ms;	 /* its progress counter: is its engine thread moving */
	uint32_t max_request_retries;	 /* re-runs of a request after the workers running it died */
	uint32_t restart_backoff_ms;	 /* first restart delay, doubled per quick failure */
	uint32_t restart_backoff_max_ms;
	uint32_t drain_timeout_ms;
};

/* Fills c with the defaults documented in etc/skvd.ini. */
void skvd_config_defaults(struct skvd_config *c);

/* Parses path into ret (defaults first, then the file). Returns 0, or a negative errno with err
 * naming "FILE:LINE: key: what is wrong". ret is untouched on failure. */
int skvd_config_load(const char *path, struct skvd_config *ret, struct skv_err *err);

const char *skvd_backend_name(enum skvd_backend b);

/* Parses the INI text data[size] (need not be NUL-terminated) as if it were the file `name`:
 * what skvd_config_load does after reading the file. Same contract. */
int skvd_config_parse(const char *data, size_t size, const char *name, struct skvd_config *ret,
		      struct skv_err *err);

/* Writes c to f as a complete INI file, every key set, that skvd_config_load reads back to the
 * same configuration (for `skvd --check-config` and tests). Returns 0 or -EIO. */
int skvd_config_write(const struct skvd_config *c, FILE *f);

/* Loading sets inih's runtime globals (Debian's build has them) and is therefore not
 * thread-safe; skvd loads from its single main thread. */
