/* SPDX-License-Identifier: Apache-2.0 */
/*
 * The integration-test harness: real redis-server processes on free loopback ports in
 * temporary directories, throw-away PostgreSQL databases in the cluster that pg_virtualenv
 * provides, and child processes (persistd replicas, the Kubernetes test server) that die with
 * the test whatever happens: every child gets PR_SET_PDEATHSIG, and an atexit handler stops
 * what is left and removes the temporary directories.
 *
 * Single-threaded use from the test's main thread (PR_SET_PDEATHSIG follows the thread that
 * forked).
 */
#pragma once

#include <hiredis/hiredis.h>
#include <libpq-fe.h>
#include <stdbool.h>
#include <stdint.h>
#include <sys/types.h>

/* Print a message and abort the test program: for harness failures, not assertions. */
void th_die(const char *fmt, ...) __attribute__((format(printf, 1, 2), noreturn));

/* A free TCP port on 127.0.0.1 (bound and released; a small race, retried by callers). */
uint16_t th_free_port(void);

/* A new temporary directory, removed at exit (caller frees the string). */
char *th_tmpdir(const char *tag);

/* Remove a directory tree. */
void th_rmtree(const char *path);

/*
 * Spawn argv[0] (searched in PATH) with stdout and stderr appended to `log_path` (NULL:
 * inherited). `env` entries ("K=V") are added to the environment. The child dies with the test.
 */
pid_t th_spawn(char *const argv[], char *const env[], const char *log_path);

/*
 * Send `sig` and wait up to `timeout_ms` for the exit; SIGKILL after that. Returns the wait
 * status.
 */
int th_stop(pid_t pid, int sig, int timeout_ms);

/* Wait up to `timeout_ms` for `pid` to exit; returns true and *status if it did. */
bool th_wait_exit(pid_t pid, int timeout_ms, int *status);

/* ---- Redis ---------------------------------------------------------------------------- */

struct th_redis {
        pid_t pid;
        uint16_t port;
        char *dir;      /* working directory: RDB and AOF files, redis.log */
        char *password; /* requirepass, or NULL */
};

/*
 * Start redis-server on 127.0.0.1 with `save ""` (no automatic saves) in a fresh directory,
 * plus `extra` arguments (NULL-terminated, may be NULL: "--requirepass", "pw", ...). Waits
 * until it answers PING. Aborts the test on failure.
 */
void th_redis_start(struct th_redis *r, const char *const *extra);

/* Stop it (SIGTERM, then SIGKILL), remove its directory, free the fields. Idempotent. */
void th_redis_stop(struct th_redis *r);

/* Restart a stopped or killed server on the same port and directory. */
void th_redis_restart(struct th_redis *r, const char *const *extra);

/* A connection with a 2 s timeout, authenticated if it has a password. Caller frees. */
redisContext *th_redis_connect(const struct th_redis *r);

/* Run a command and return the reply (caller frees with freeReplyObject); aborts on I/O error. */
redisReply *th_redis_cmd(redisContext *c, const char *fmt, ...);

/* An integer field of INFO (e.g. "rdb_saves"), or -1 when absent. */
long long th_redis_info_int(redisContext *c, const char *field);

/* ---- PostgreSQL ----------------------------------------------------------------------- */

/* True when the PG* environment of pg_virtualenv is present. */
bool th_pg_available(void);

/*
 * Create a fresh, empty database for this test and return its name (caller frees); it is
 * dropped at exit. Aborts when PostgreSQL is not reachable (run the suite through the README's
 * test command, which provides one with pg_virtualenv).
 */
char *th_pg_create_db(const char *tag);

/* A libpq connection string for `dbname` built from the PG* environment (caller frees). */
char *th_pg_dsn(const char *dbname);

/* Connect to `dbname`; aborts on failure. Caller finishes with PQfinish. */
PGconn *th_pg_connect(const char *dbname);

/* Run SQL that returns no rows or whose rows are ignored; aborts on error. */
void th_pg_exec(PGconn *c, const char *sql);

/*
 * Run a query expected to return one value; returns it as a string (caller frees), NULL for SQL
 * NULL.
 */
char *th_pg_value(PGconn *c, const char *sql);

/* ---- Paths ------------------------------------------------------------------------------ */

/* The build directory's persistd / persistctl binaries (set by meson in the environment). */
const char *th_persistd_path(void);
const char *th_persistctl_path(void);

/* ---- TLS and the Kubernetes API test server ------------------------------------------- */

/*
 * Create with openssl, in `dir`: ca.crt/ca.key (a throw-away CA) and server.crt/server.key
 * (signed by it, for 127.0.0.1 and localhost). Aborts the test on failure.
 */
void th_tls_make_certs(const char *dir);

struct th_kube_options {
        bool plain;            /* serve plain HTTP instead of TLS */
        const char *user;      /* least-privilege user name; NULL: "orchestrator" */
        const char *namespace; /* created at start; NULL: "redis-system" */
        int history;           /* watch history length; 0: the server's default */
};

struct th_kube {
        pid_t pid;
        uint16_t port;         /* the API on 127.0.0.1 */
        uint16_t control_port; /* the plain-HTTP control API on 127.0.0.1 */
        char *dir;             /* certificates, tokens.csv, kubeconfigs, kube-server.log */
        char *url;             /* "https://127.0.0.1:PORT" (http:// with plain) */
        char *ca_path;         /* dir/ca.crt (NULL with plain) */
        char *user;            /* the least-privilege user's name */
        char *namespace;
        char *admin_token; /* user "admin", group system:masters */
        char *user_token;  /* the least-privilege user, no RBAC until a Role is bound */
        char *admin_kubeconfig;
        char *user_kubeconfig;
};

/*
 * Start kube-test-server (KUBE_TEST_SERVER_BIN) on free loopback ports with fresh
 * certificates, a token file for "admin" and the least-privilege user, wait until it answers,
 * create the namespace, and write one kubeconfig per user (server, certificate-authority,
 * token, namespace). `o` may be NULL. Aborts the test on failure.
 */
void th_kube_start(struct th_kube *k, const struct th_kube_options *o);

/*
 * Stop the server, remove its directory, free the fields. Idempotent. Aborts the test (after
 * printing the server's log) when the server does not exit cleanly: a crash or a sanitizer report.
 */
void th_kube_stop(struct th_kube *k);

/*
 * One API request with libcurl (10 s timeout). `token` may be NULL (no Authorization),
 * `content_type` and `body` may be NULL. Returns the HTTP status (0: no answer) and the body
 * in *out (caller frees; out may be NULL).
 */
long th_kube_request(const struct th_kube *k, const char *token, const char *method,
                     const char *path, const char *content_type, const char *body, char **out);

/* A request to the control API (plain HTTP); returns the status, the body in *out (may be NULL). */
long th_kube_control(const struct th_kube *k, const char *method, const char *path,
                     const char *json, char **out);

/* POST /faults with `json` (see docs/kube-test-server.md); aborts unless the server accepts it. */
void th_kube_faults(const struct th_kube *k, const char *json);

/* Remove every fault. */
void th_kube_clear_faults(const struct th_kube *k);

/* Make every resourceVersion so far too old for a watch (410 Expired). */
void th_kube_compact(const struct th_kube *k);

/*
 * Requests counted by the server for "verb resource" (e.g. "update leases"), of `user`
 * (NULL: all users). 0 when none.
 */
long long th_kube_stat(const struct th_kube *k, const char *user, const char *key);

/*
 * As a kube-apiserver restart (the process stays): every open watch is cut and every
 * resourceVersion so far becomes too old for a new watch.
 */
void th_kube_restart(const struct th_kube *k);

/*
 * The request log after sequence number `since` (0: all kept, the last 4096) as JSON:
 * {"requests":[{"seq","start_ms","end_ms","user","method","path","verb","resource",
 * "status"}...],"last":N}; status 0 for a dropped or cut connection. Caller frees.
 */
char *th_kube_request_log(const struct th_kube *k, unsigned long long since);

/*
 * Create, as admin, the objects of a multi-document YAML file (such as the rendered Helm chart,
 * deploy/persistd.yaml) that the server serves: Role, RoleBinding, ClusterRole,
 * ClusterRoleBinding, Secret, ConfigMap, Pod, Lease, Namespace; other kinds are skipped.
 * Namespaced objects without metadata.namespace go to `ns`. Returns how many were created;
 * aborts the test when the file cannot be read or the server refuses an object.
 */
int th_kube_apply_yaml(const struct th_kube *k, const char *path, const char *ns);

/*
 * Seed objects in the harness namespace as admin: a Pod `name` (it stays Pending) with the
 * labels of the JSON object `labels_json` (NULL: none), and a Secret `name` with one key whose
 * value is `value` (stored base64-encoded in data, as kube does). Abort unless created.
 */
void th_kube_create_pod(const struct th_kube *k, const char *name, const char *labels_json);
void th_kube_create_secret(const struct th_kube *k, const char *name, const char *key,
                           const char *value);

/* Reset the request statistics. */
void th_kube_reset_stats(const struct th_kube *k);

/* The server binary (KUBE_TEST_SERVER_BIN, set by meson). */
const char *th_kube_server_path(void);
