/* SPDX-License-Identifier: Apache-2.0 */
/*
 * A fake backend for the HTTP API tests: tasks, instances, runs, a plan and a nightly pass in
 * memory, persist-now saves that take a configurable time per instance and coalesce like the
 * real ones, and switches for leadership, wedging and PostgreSQL being down. Plus a small
 * libcurl helper that returns status, headers and body of one request.
 */
#pragma once

#include <stdbool.h>
#include <stdint.h>

#include "http/backend.h"
#include "http/metrics.h"
#include "http/server.h"

struct fake {
        /* switches; set under fake_lock() or before the server starts */
        bool is_leader;
        char leader[API_ID_MAX];
        bool wedged;
        bool postgres_down;
        bool config_loaded;
        bool fail_internal; /* status() fails with -EIO */

        /* counters */
        int saves_started;
        int backend_calls; /* every operation but probe/leader */
};

/* The fake's state (one per process) and its backend table. */
struct fake *fake_get(void);
const struct api_backend *fake_backend(void);
void fake_reset(void);
void fake_lock(void);
void fake_unlock(void);

/* Instances: "redis-a", "redis-b" (pool ssd), "redis-c" (pool hdd) save in ~50 ms; "redis-slow"
 * (pool hdd) in 3 s; "redis-bad" (pool hdd) fails with "MISCONF disk full". */

/* A server on 127.0.0.1:<free port> with token "s3cret-token" and a 4 KiB body cap. */
struct http_server *fake_server_start(struct metrics *m);

struct http_reply {
        long status;
        char *body;
        char *headers; /* raw header block, lowercased names */
};

/* One request to the server on `port`; token NULL: no Authorization header. Aborts on I/O error. */
void fake_http(uint16_t port, const char *method, const char *path, const char *token,
               const char *body, struct http_reply *ret);
void http_reply_free(struct http_reply *r);
/* The value of header `name` (lowercase) in r->headers, copied into buf, or NULL. */
const char *http_reply_header(const struct http_reply *r, const char *name, char *buf, size_t size);

#define FAKE_TOKEN "s3cret-token"
