/* SPDX-License-Identifier: Apache-2.0 */
/*
 * The client side of the HTTP API, for persistctl: one request over libcurl with a bearer
 * token and timeouts, and aligned text tables for people.
 */
#pragma once

#include <stdbool.h>
#include <stddef.h>
#include <stdio.h>

#include "core/macro.h"

#define PCTL_RESPONSE_MAX (16u << 20)

struct pctl_client;

/*
 * A client of the server at `base_url` ("http://host:port", a trailing slash is ignored) with
 * `token` (may be NULL: no Authorization header). Both copied. NULL on OOM. One thread at a time.
 */
struct pctl_client *pctl_client_new(const char *base_url, const char *token);
void pctl_client_free(struct pctl_client *c);
DEFINE_TRIVIAL_CLEANUP_FUNC(struct pctl_client *, pctl_client_free);

/*
 * Send `method` `path` (borrowed; starts with '/', may carry an escaped query) with a JSON
 * `body` (NULL: none), waiting at most `timeout_ms` in all (connecting: at most 5 s). On
 * success returns 0, *ret_status the HTTP status and *ret_body the response (caller frees; at
 * most PCTL_RESPONSE_MAX bytes). Returns -ECONNREFUSED / -ETIMEDOUT / -EIO etc. when no answer
 * came (pctl_client_errstr() says why; never contains the token), -E2BIG for a larger answer.
 */
int pctl_client_request(struct pctl_client *c, const char *method, const char *path,
                        const char *body, long timeout_ms, long *ret_status, char **ret_body);
const char *pctl_client_errstr(const struct pctl_client *c);

/* `s` percent-encoded for a path segment or a query value. Caller frees; NULL on OOM. */
char *pctl_escape(const char *s);

/* ---- tables ------------------------------------------------------------------------------- */

struct pctl_table;

/* A table with `n` columns named by `headers` (copied). NULL on OOM. */
struct pctl_table *pctl_table_new(const char *const *headers, size_t n);
/* Append a row of n cells (copied; NULL prints "-"). 0 or -ENOMEM. */
int pctl_table_add(struct pctl_table *t, const char *const *cells);
/* Print: columns padded to their widest cell (UTF-8 aware), two spaces apart, no trailing blanks.
 */
void pctl_table_print(const struct pctl_table *t, FILE *out);
size_t pctl_table_rows(const struct pctl_table *t);
void pctl_table_free(struct pctl_table *t);
DEFINE_TRIVIAL_CLEANUP_FUNC(struct pctl_table *, pctl_table_free);

/* ---- JSON answers for people ------------------------------------------------------------- */

struct cJSON;

/*
 * The value at `path` ("a.b.c": members of nested objects) of `obj` as a table cell: strings as
 * they are, integers without a fraction, booleans as "yes"/"no", arrays of strings joined with
 * ",", null or missing as "-". Returns `buf` (size bytes).
 */
const char *pctl_json_cell(const struct cJSON *obj, const char *path, char *buf, size_t size);

/* Print every member of `obj` as an aligned "FIELD VALUE" table, nested objects flattened. */
void pctl_print_object(const struct cJSON *obj, FILE *out);

/* persistctl's exit codes (documented in its --help and docs/api.md). */
enum {
        PCTL_EXIT_OK = 0,
        PCTL_EXIT_FAILED = 1, /* the server refused or the operation did not succeed */
        PCTL_EXIT_USAGE = 2,
        PCTL_EXIT_UNREACHABLE = 3, /* no answer from the server, or the token was refused */
        PCTL_EXIT_NOT_FOUND = 4,
        PCTL_EXIT_UNAVAILABLE = 5, /* 503: not the leader, or PostgreSQL is down; retry */
};

/* The exit code for an HTTP status. */
int pctl_exit_code(long http_status);
