/* SPDX-License-Identifier: Apache-2.0 */
/*
 * Helpers of the end-to-end API tests (test-e2e-*.c, test-http-fuzz.c) on top of
 * test-daemon-cluster.h: HTTP with the response headers and a chosen token, raw socket
 * requests, the instances of a cluster in SQL, and persistctl runs. Main thread unless noted.
 */
#pragma once

#include <stddef.h>
#include <stdint.h>

#include "test-daemon-cluster.h"

/*
 * One request with `token` (NULL: no Authorization header). Returns the HTTP status (0: no
 * answer); the body in *out and the response headers in *headers (caller frees each; either
 * may be NULL). Any thread may call it.
 */
long e2e_http(uint16_t port, const char *token, const char *method, const char *path,
              const char *body, char **out, char **headers);

/*
 * Send `len` bytes as they are to 127.0.0.1:port, half-close, and read the answer for up to
 * 5 s. Returns the status of the answer (0: none) and the whole answer in *out (caller frees;
 * may be NULL).
 */
int e2e_raw(uint16_t port, const void *req, size_t len, char **out);

/* Whether `body` parses as a JSON object with an error.code string. */
bool e2e_is_json_error(const char *body);

/*
 * Start a cluster with replicas 0..n_replicas-1, wait for a settled leader (*leader), then
 * register redis-a, redis-b (pool ssd), redis-c (hdd) and redis-down (ssd, a port nothing
 * listens on) and wait until the leader knows them.
 */
void e2e_cluster_start(struct cluster *cl, int n_replicas, int *leader);

/* Run persistctl against `port` with the cluster's token and `args` (NULL-terminated); returns
 * its exit status (-1: killed or no exit within 30 s); its output in *out (may be NULL). */
int e2e_persistctl(const struct cluster *cl, uint16_t port, const char *const *args, char **out);
