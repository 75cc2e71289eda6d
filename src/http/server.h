/* SPDX-License-Identifier: Apache-2.0 */
/*
 * The HTTP server: libmicrohttpd with a thread per connection (so a persist request that waits
 * for its save holds only its own connection), a connection limit and idle timeouts. It checks
 * auth, routes, the leader-only rule and the size limits, then hands a fully validated request
 * to the backend (http/backend.h) and answers JSON. /healthz, /readyz and /metrics need no
 * token; everything under /v1 needs "Authorization: Bearer <token>".
 */
#pragma once

#include <stddef.h>
#include <stdint.h>

#include "core/macro.h"
#include "http/backend.h"
#include "http/metrics.h"

struct http_server_options {
        const char *listen;       /* "host:port", "[v6]:port"; port 0 picks a free one */
        const char *token;        /* borrowed, copied; NULL or "": every /v1 request gets 401 */
        size_t max_body_bytes;    /* 0: 65536 */
        unsigned max_connections; /* 0: 512 */
        unsigned idle_timeout_s;  /* 0: 30; a connection idle this long is closed */
        int64_t max_wait_us;      /* the longest persist wait (0: 1 hour) */
};

struct http_server;

/*
 * A stopped server. `backend` is copied (its userdata is borrowed and must outlive the server);
 * `metrics` is borrowed (may be NULL: /metrics then answers 503). NULL on OOM. Main thread.
 */
struct http_server *http_server_new(const struct http_server_options *opts,
                                    const struct api_backend *backend, struct metrics *metrics);

/*
 * Bind and start serving. Returns 0, or -EINVAL (a bad listen address), -EADDRINUSE or another
 * negative errno; http_server_errstr() says what failed. Main thread.
 */
int http_server_start(struct http_server *s);

/* The bound port (useful with port 0), 0 before start. Any thread. */
uint16_t http_server_port(const struct http_server *s);

/*
 * Stop serving: waiting persist requests are answered at once with their results so far, then
 * every connection thread is joined. Idempotent. Main thread.
 */
void http_server_stop(struct http_server *s);

/* Stops if needed and frees. NULL is a no-op. Main thread. */
void http_server_free(struct http_server *s);
DEFINE_TRIVIAL_CLEANUP_FUNC(struct http_server *, http_server_free);

/* The last start error (borrowed; "" when none). */
const char *http_server_errstr(const struct http_server *s);

/*
 * Compare a presented bearer token with the expected one in time that depends only on the
 * length of the presented one (never on the expected token's length or content). An empty
 * expected token matches nothing. Any thread.
 */
bool http_token_equal(const char *presented, size_t presented_len, const char *expected);
