/* SPDX-License-Identifier: Apache-2.0 */
/*
 * Inside the HTTP layer: what the server hands a route's handler, what the handler answers, and
 * the routing table itself (routes.c). Not for use outside src/http/.
 */
#pragma once

#include <cjson/cJSON.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "core/macro.h"
#include "http/backend.h"
#include "http/router.h"

struct http_server;
struct MHD_Connection;

#define HTTP_QUERY_VALUE_MAX 256

struct http_request {
        struct MHD_Connection *conn;
        const char *method;
        const char *path;
        const struct router_match *match; /* params[] hold the {id} segments */
        const char *body;                 /* NUL-terminated; "" when none */
        size_t body_len;
        const struct api_backend *be;
        struct http_server *server;
};

struct http_response {
        unsigned status;
        char *body;               /* malloc()ed JSON (or text for /metrics) */
        const char *content_type; /* NULL: application/json */
        char retry_after[16];
        char allow[128];
        bool www_authenticate;
};

typedef void (*http_handler_fn)(struct http_request *rq, struct http_response *rs);

struct http_handler {
        http_handler_fn fn;
        const char *const *query; /* the query parameters it accepts, NULL-terminated; NULL: none */
};

extern const struct router_route http_routes[];
extern const size_t http_routes_count;

/* A query parameter's value (already checked against the route's list and length cap) or NULL. */
const char *http_query(struct http_request *rq, const char *name);

/* Answer `status` with the error object {"error": {"code", "message", "field"}}. */
void http_error(struct http_response *rs, unsigned status, const char *code, const char *field,
                const char *fmt, ...) _printf_(5, 6);

/* Answer a backend failure `r` (negative errno) with its status and `err`'s message/field. */
void http_backend_error(struct http_request *rq, struct http_response *rs, int r,
                        const struct api_error *err);

/* Answer `status` with `json` (taken, freed). */
void http_json(struct http_response *rs, unsigned status, cJSON *json);

/* True once http_server_stop() began: long waits must return. Any thread. */
bool http_server_is_stopping(struct http_server *s);
int64_t http_server_max_wait_us(struct http_server *s);
struct metrics *http_server_metrics(struct http_server *s);

/* JSON helpers: a time as RFC 3339 with milliseconds, or null when 0. */
void json_add_time(cJSON *obj, const char *name, int64_t us);
