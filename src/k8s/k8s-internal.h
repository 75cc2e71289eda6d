/* SPDX-License-Identifier: Apache-2.0 */
/* What the files of src/k8s share: the request primitive of client.c and small helpers. */
#pragma once

#include <cjson/cJSON.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "k8s/k8s.h"

/*
 * Receives the body of a 2xx streaming response piece by piece. Return 0 to go on, or a
 * negative errno to abort the transfer (k8s_request() then returns that value).
 */
typedef int (*k8s_stream_fn)(const char *data, size_t len, void *userdata);

struct k8s_request {
        const char *method;       /* "GET", "POST", "PUT", "PATCH" */
        const char *path;         /* "/api/v1/..." with its query, already URL-encoded */
        const char *content_type; /* required with a body */
        const char *body;         /* NULL for none */
        size_t body_len;
        bool no_timeout;      /* watches: the server's timeoutSeconds bounds them instead */
        k8s_stream_fn stream; /* 2xx bodies go here instead of the buffer */
        void *stream_userdata;
};

/*
 * Send one request with the client's token (re-read when due; after a 401 from a token file,
 * re-read and sent once more). Returns 0 for a 2xx status with *ret_body (may be NULL; caller
 * frees; "" when empty or streamed), or the mapped errno with the details on the client.
 */
int k8s_request(struct k8s_client *c, const struct k8s_request *req, char **ret_body,
                size_t *ret_len);

/* Record a client-side error ("... is not valid") on the client and return `err`. */
int k8s_client_fail(struct k8s_client *c, int err, const char *fmt, ...) _printf_(3, 4);

/* Wait `us` microseconds, or less when interrupted (then -ECANCELED). Owner thread. */
int k8s_client_wait_us(struct k8s_client *c, int64_t us);

/* Timeouts of the watch (seconds) for URL building. */
int k8s_client_watch_timeout_s(const struct k8s_client *c);

/* Percent-encode `s` for a query value or path segment (RFC 3986 unreserved kept). NULL on OOM. */
char *k8s_url_escape(const char *s);

/* Base64 (standard alphabet, padding optional, no line breaks allowed except trailing
 * white space). 0 and *ret (caller frees, NUL-terminated) or -EINVAL, -EFBIG, -ENOMEM. */
int k8s_base64_decode(const char *s, size_t len, size_t max_size, unsigned char **ret,
                      size_t *ret_len);

/* cJSON helpers: a string member, or NULL when absent or not a string (borrowed). */
const char *k8s_json_str(const cJSON *obj, const char *name);

/* Decode a Lease from a parsed object. 0, -EBADMSG, -ENOMEM. */
int k8s_lease_from_cjson(const cJSON *obj, struct k8s_lease *ret);

/* Fill `err` from a Status object (code, reason, message, first cause). */
void k8s_status_decode(const cJSON *status, struct k8s_error *err);

/* Copy `src` (NULL = "") into `dst` of `size` bytes, truncated. */
void k8s_strlcpy(char *dst, const char *src, size_t size);
