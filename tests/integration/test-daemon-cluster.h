/* SPDX-License-Identifier: Apache-2.0 */
/*
 * A persistd cluster for the end-to-end tests: kube-test-server, a PostgreSQL database, a
 * progress Redis, three Redis instances and three persistd replicas with short election
 * timings and one configuration file each; plus helpers to watch the Lease, the pod labels and
 * the replicas' own view. Single-threaded, from the test's main thread.
 */
#pragma once

#include <stdbool.h>
#include <stdint.h>
#include <sys/types.h>

#include "harness.h"

#define N_REPLICAS 3
#define LEASE_S    2
#define RETRY_S    0.4
#define TOKEN      "test-token-0123456789"
#define LABEL      "persistd.io/leader"

struct replica {
        pid_t pid;
        uint16_t port;
        char pod[32];
        char *config_path;
        char *log_path;
};

struct cluster {
        struct th_kube kube;
        char *dir;
        char *db;
        char *dsn;
        struct th_redis progress;
        struct th_redis redis[3];
        struct replica r[N_REPLICAS];
        PGconn *sql;
};

char *xasprintf(const char *fmt, ...) __attribute__((format(printf, 1, 2)));
void write_file(const char *path, const char *text);
/* The file's contents ("" when unreadable); caller frees. */
char *slurp(const char *path);
/* One request with the API token: the HTTP status (0: no answer), the body in *out (caller
 * frees; out may be NULL). */
long http(uint16_t port, const char *method, const char *path, const char *body, char **out);

/* Start every server and write the replicas' configuration (nothing spawned yet). `o` may be
 * NULL; `as_user`: the replicas use the least-privilege user's kubeconfig, else admin's. */
void cluster_start(struct cluster *cl, const struct th_kube_options *o, bool as_user);
void cluster_stop(struct cluster *cl);
void replica_spawn(struct cluster *cl, int i);
void dump_logs(const struct cluster *cl);

/* The Lease's holder ("" when none); caller frees. The replica it names, -1 when none. */
char *lease_holder(const struct cluster *cl);
int holder_index(const struct cluster *cl, const char *holder);
bool pod_labelled(const struct cluster *cl, const char *pod);
/* Whether replica i says it leads (GET /v1/status). */
bool says_leader(const struct cluster *cl, int i);
int count_leaders(const struct cluster *cl);
/*
 * Wait up to `timeout_us` for a leader other than `not` that holds the Lease, says so itself,
 * and whose pod alone carries the label; fails the test (with the logs) otherwise. Returns its
 * index; *ret_lease_us (may be NULL) is when the Lease named it, from the call.
 */
int wait_settled_leader(struct cluster *cl, int not, int64_t timeout_us, int64_t *ret_lease_us);

/* A count from SQL; wait until it reaches `min` or fail. */
long long sql_count(struct cluster *cl, const char *sql);
long long wait_count(struct cluster *cl, const char *sql, long long min, int64_t timeout_us);
