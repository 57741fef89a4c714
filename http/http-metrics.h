/* http-metrics.h: the gateway's own Prometheus metrics (requests by endpoint and status,
 * latency histograms, tokens, disconnects), shared by every connection thread under one mutex.
 * skvd's metrics (vLLM's names under skv:) are appended by the server from skvd's admin socket.
 */
#pragma once

#include <stdint.h>
#include <stdio.h>

enum skv_http_route {
	SKV_HTTP_ROUTE_CHAT = 0,
	SKV_HTTP_ROUTE_COMPLETIONS,
	SKV_HTTP_ROUTE_MODELS,
	SKV_HTTP_ROUTE_HEALTH,
	SKV_HTTP_ROUTE_METRICS,
	SKV_HTTP_ROUTE_OTHER,
	SKV_HTTP_ROUTE_COUNT,
};

const char *skv_http_route_path(enum skv_http_route r);

void skv_http_metrics_init(void);
/* A request answered with status after seconds (from its first byte to its last). */
void skv_http_metrics_request(enum skv_http_route r, int status, double seconds);
/* A generation's time to its first token, and its tokens. */
void skv_http_metrics_ttft(enum skv_http_route r, double seconds);
void skv_http_metrics_tokens(uint32_t prompt, uint32_t generated);
/* The gateway's own share of a generation (skvd's timestamps against the gateway's clock, both
 * CLOCK_MONOTONIC), and a streamed delta's delay from skvd to the connection. */
void skv_http_metrics_overhead(double seconds);
void skv_http_metrics_stream_delay(double seconds);
/* A client went away before its generation ended (the request was cancelled in skvd). */
void skv_http_metrics_disconnect(void);
/* Requests refused by the gateway before skvd saw them, by reason ("auth", "busy", "invalid",
 * "body_too_large", "skvd_down"). */
void skv_http_metrics_refused(const char *reason);
void skv_http_metrics_in_progress(int delta);

/* Writes the exposition text. */
void skv_http_metrics_write(FILE *f);
