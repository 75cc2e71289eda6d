/* SPDX-License-Identifier: Apache-2.0 */
/*
 * The routing table's matcher: a route is a method and a pattern of '/'-separated segments,
 * where a segment "{name}" matches any one non-empty segment and captures it. Pure functions
 * over a caller's table; no state.
 */
#pragma once

#include <stddef.h>

#define ROUTER_MAX_PARAMS  4
#define ROUTER_SEGMENT_MAX 128 /* the longest segment, with its NUL */
#define ROUTER_PATH_MAX    1024

struct router_route {
        const char *method;  /* "GET", "POST", ... */
        const char *pattern; /* "/v1/tasks/{id}/run" */
        const void *data;    /* the caller's (a handler) */
};

struct router_match {
        const struct router_route *route;
        char params[ROUTER_MAX_PARAMS][ROUTER_SEGMENT_MAX];
        size_t n_params;
        char allow[128]; /* on -EMETHOD-like results: the methods the path accepts, "GET, POST" */
};

/*
 * Match `method` and `path` (borrowed; no query string) against `routes` (n entries).
 * Returns 0 and fills *m; -ENOENT when no pattern matches the path; -EPERM when patterns match
 * the path but none with this method (m->allow lists the ones that do: answer 405);
 * -ENAMETOOLONG when the path or one segment is too long (answer 414). A trailing slash or
 * an empty segment never matches. Any thread.
 */
int router_find(const struct router_route *routes, size_t n, const char *method, const char *path,
                struct router_match *m);
