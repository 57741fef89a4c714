/* e2e-util.h: running the real skvd for end-to-end tests. Each test starts its own skvd in a
 * temporary directory (private sockets, a NOTIFY_SOCKET of its own to capture sd_notify
 * messages, stderr to a log file) with the tiny model, and talks to it with libskv and the real
 * skvctl and skv binaries. Nothing is mocked. */
#pragma once

#include <stdbool.h>
#include <stddef.h>
#include <sys/types.h>

#include <json-c/json.h>

#include "skv.h"
#include "test-util.h"

struct e2e {
	char dir[128];
	char ini[192], sock[192], admin[192], log[192], notify_path[192];
	int notify_fd;
	pid_t pid;
	char notes[1 << 16]; /* every sd_notify message, "\n"-separated */
	size_t notes_len;
	const char *model;
};

/* When true, e2e_start binds the client and admin sockets itself and hands them to skvd the way
 * systemd's socket activation does (LISTEN_FDS, LISTEN_PID, LISTEN_FDNAMES=client:admin). */
extern bool e2e_socket_activation;

/* Kills the skvd the last e2e_start started if it still runs (a teardown for failed tests). */
int e2e_teardown(void **state);

/* Starts skvd on `model` with the harness's defaults (CPU backend, or $SKV_E2E_BACKEND: cuda on a
 * GPU machine; 2 replicas of 1 thread,
 * private sockets, no groups) changed by `overrides`: "section.key=value" entries, NULL-ended.
 * Waits for READY=1 (fails the test, printing the log, if skvd exits or takes over 60 s). */
void e2e_start(struct e2e *e, const char *model, const char *const *overrides);
/* e2e_start without the wait: skvd is started, ready or not. */
void e2e_spawn(struct e2e *e, const char *model, const char *const *overrides);
/* Waits up to timeout_ms for skvd to exit on its own; its exit status (128 + signal when
 * killed), or -1 when it still runs. */
int e2e_wait_exit(struct e2e *e, int timeout_ms);
/* Writes the ini for overrides (without starting anything). */
void e2e_write_ini(struct e2e *e, const char *const *overrides);
/* SIGTERM and wait up to timeout_ms; returns the exit status (-1 on timeout: then SIGKILL). */
int e2e_stop(struct e2e *e, int timeout_ms);
/* Reads whatever sd_notify messages arrived (waiting up to timeout_ms for `want` when not NULL);
 * true when `want` is among everything received so far. */
bool e2e_notified(struct e2e *e, const char *want, int timeout_ms);
/* Runs skvctl against e's admin socket; stdout into out (NUL-terminated); returns its exit code. */
int e2e_ctl(struct e2e *e, char *out, size_t cap, const char *fmt, ...) __attribute__((format(printf, 4, 5)));
/* skvctl status --json, parsed (caller puts it). */
json_object *e2e_status(struct e2e *e);
/* Worker pids (-1 when a replica has none) and restarts, from status; returns the count. */
int e2e_workers(struct e2e *e, pid_t *pids, int *restarts, char states[][16], int max);
/* Total KV blocks in use over all workers. */
int e2e_kv_used(struct e2e *e);
/* Waits until every worker reports state "ready" (or timeout_ms passes); true on success. */
bool e2e_wait_ready(struct e2e *e, int timeout_ms);
/* A connected libskv client. */
struct skv_client *e2e_client(struct e2e *e);
/* Prints the tail of skvd's log (for failures). */
void e2e_dump_log(struct e2e *e);
/* Count of open fds and RSS (kB) of a process. */
int e2e_fd_count(pid_t pid);
long e2e_rss_kb(pid_t pid);
/* Runs one request to the end, collecting text (and ids with STREAM_IDS); returns the final. */
struct e2e_result {
	char text[65536];
	size_t text_len;
	int32_t ids[4096];
	uint32_t n_ids;
	struct skv_event final;
	char message[256];
};
int e2e_run(struct skv_client *c, const struct skv_request *req, struct e2e_result *res);
