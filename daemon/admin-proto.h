/* admin-proto.h: the admin protocol between skvctl and skvd.
 *
 * The admin socket is a SOCK_STREAM Unix socket (its own path and permissions, separate from
 * the client socket). One command per connection: the client writes one JSON object followed by
 * a newline (at most SKVD_ADMIN_MAX_REQUEST bytes); skvd answers one JSON object followed by a
 * newline and closes. Every answer has "ok": true|false; a false one has "error": "message".
 *
 *   {"cmd":"status"}                     -> "uptime_s", "model" {"path","name","swiftkv",
 *                                           "backend","weights_bytes"}, "workers": [{"replica",
 *                                           "pid","state" ("starting"|"ready"|"restarting"|
 *                                           "failed"),"restarts","device","running","waiting",
 *                                           "kv_used_blocks","kv_total_blocks","kv_bytes",
 *                                           "heartbeat_age_ms","preemptions"}], "queue"
 *                                           {"requests","prompt_tokens"}, "requests_running",
 *                                           "clients", "tokens_per_s" {"prompt","generated"},
 *                                           "draining"
 *   {"cmd":"requests"}                   -> "requests": [{"id","client_id","uid","replica",
 *                                           "state" ("queued"|"running"),"prompt_tokens",
 *                                           "generated","age_ms"}]
 *   {"cmd":"cancel","id":N}              -> ok, or error "no request N"
 *   {"cmd":"drain"}                      -> ok once draining has begun (new requests refused,
 *                                           in-flight ones finish, then skvd exits)
 *   {"cmd":"reload","wait":true}         -> ok once the new configuration serves; error naming
 *                                           the file and line when it is rejected (the old one
 *                                           keeps serving)
 *   {"cmd":"restart-worker","replica":N} -> ok once the worker was told to go
 *   {"cmd":"metrics"}                    -> "text": Prometheus exposition (vLLM-style names
 *                                           under an skv: prefix)
 *
 * At most SKVD_ADMIN_MAX_CONNS connections are open at once (one more is answered "too many
 * admin connections" and closed), and one that makes no progress (its command unfinished, or
 * its answer unread) for SKVD_ADMIN_IDLE_MS is closed.
 */
#pragma once

#define SKVD_ADMIN_MAX_REQUEST 4096
#define SKVD_ADMIN_MAX_CONNS 16
#define SKVD_ADMIN_IDLE_MS 5000
