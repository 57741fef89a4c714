/* http-config.h: skv-http.ini, the gateway's configuration, and its API keys file.
 *
 * The file is parsed strictly, like skvd.ini: an unknown section or key, a key given twice, a
 * malformed number, a value out of range or too long rejects the whole file with
 * "FILE:LINE: [section] key: reason". Nothing here opens sockets or resolves names: listen
 * addresses are numeric (an IPv4 or a bracketed IPv6 address and a port).
 */
#pragma once

#include <netinet/in.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <sys/socket.h>

#include "skv-base.h"

#define SKV_HTTP_MAX_LISTEN 8
#define SKV_HTTP_PATH_MAX 192
#define SKV_HTTP_SOCKET_MAX 108 /* sun_path */
#define SKV_HTTP_DEFAULT_CONFIG "/etc/swiftkv/skv-http.ini"

struct skv_http_listen {
	struct sockaddr_storage addr; /* AF_INET or AF_INET6, port set */
	socklen_t addr_len;
	bool loopback;
	char text[64]; /* as written: "127.0.0.1:8000", "[::1]:8000" */
};

struct skv_http_config {
	/* [http] */
	char listen_text[SKV_HTTP_PATH_MAX];
	struct skv_http_listen listen[SKV_HTTP_MAX_LISTEN];
	uint32_t n_listen;
	char api_keys_file[SKV_HTTP_PATH_MAX]; /* "" : no keys */
	bool allow_unauthenticated;
	char tls_cert[SKV_HTTP_PATH_MAX], tls_key[SKV_HTTP_PATH_MAX]; /* both or neither */

	/* [skvd] */
	char socket[SKV_HTTP_SOCKET_MAX];
	char admin_socket[SKV_HTTP_SOCKET_MAX]; /* "" : /health and /metrics do without it */
	uint32_t connect_timeout_ms;

	/* [limits] */
	uint32_t max_body_bytes;
	uint32_t max_concurrent_requests;
	uint32_t max_connections;
	uint32_t idle_timeout_s;
	uint32_t request_timeout_ms;
};

void skv_http_config_defaults(struct skv_http_config *c);

/* Parses size bytes of data (not NUL-terminated); name is the file's name for messages.
 * *ret is written only on success. Errors: -EINVAL, -ERANGE, -E2BIG ... with err set. */
int skv_http_config_parse(const char *data, size_t size, const char *name, struct skv_http_config *ret,
			  struct skv_err *err);
int skv_http_config_load(const char *path, struct skv_http_config *ret, struct skv_err *err);

/* Writes every key with its value, in the shipped file's order (for --print-config). */
int skv_http_config_write(const struct skv_http_config *c, FILE *f);

/* The API keys: one a line, blank lines and lines starting with '#' ignored, surrounding
 * spaces trimmed; a key is 8 to 256 printable ASCII characters without spaces. */
#define SKV_HTTP_KEY_MIN 8
#define SKV_HTTP_KEY_MAX 256
#define SKV_HTTP_KEYS_MAX 4096

struct skv_http_keys {
	char (*keys)[SKV_HTTP_KEY_MAX + 1];
	size_t n;
};

/* Parses a keys file's contents into *ret (caller frees with skv_http_keys_done). */
int skv_http_keys_parse(const char *data, size_t size, const char *name, struct skv_http_keys *ret,
			struct skv_err *err);
int skv_http_keys_load(const char *path, struct skv_http_keys *ret, struct skv_err *err);
void skv_http_keys_done(struct skv_http_keys *k);
/* Whether key[len] is one of k's, in time that does not depend on where they differ. */
bool skv_http_keys_match(const struct skv_http_keys *k, const char *key, size_t len);

/* Reads a whole regular file of at most max bytes into a malloc'd, NUL-terminated buffer. */
int skv_http_read_file(const char *path, size_t max, char **ret, size_t *ret_len, struct skv_err *err);
