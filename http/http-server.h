/* http-server.h: the gateway: libmicrohttpd listeners in front of a pool of libskv sessions.
 *
 * One thread per HTTP connection (libmicrohttpd's thread-per-connection mode); a generation
 * takes a libskv session from the pool for its whole life (libskv handles are not thread-safe),
 * so a thread blocks only on its own request's events and its own client's socket. A client
 * that goes away mid-generation is seen through POLLRDHUP on its socket while the thread waits
 * for skvd, and its request is cancelled in skvd at once.
 */
#pragma once

#include "http-config.h"

struct skv_http_server;

/* Loads the API keys and TLS files named in cfg (copied) and starts listening: on cfg's
 * addresses, or on listen_fds[n_fds] (socket activation) when n_fds > 0. */
int skv_http_server_new(const struct skv_http_config *cfg, const int *listen_fds, size_t n_fds,
			struct skv_http_server **ret, struct skv_err *err);
/* Re-reads the API keys file; on error the old keys stay in force. */
int skv_http_server_reload_keys(struct skv_http_server *s, struct skv_err *err);
/* Stops listening, waits for the connection threads, closes every session. Accepts NULL. */
void skv_http_server_free(struct skv_http_server *s);

/* The log line writer skv-http uses: "<prio>skv-http: ..." on stderr (journald's prefixes). */
void skv_http_log(int prio, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
