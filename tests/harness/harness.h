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

/* Send `sig` and wait up to `timeout_ms` for the exit; SIGKILL after that. Returns the wait status. */
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

/* Run a query expected to return one value; returns it as a string (caller frees), NULL for SQL NULL. */
char *th_pg_value(PGconn *c, const char *sql);

/* ---- Paths ------------------------------------------------------------------------------ */

/* The build directory's persistd / persistctl binaries (set by meson in the environment). */
const char *th_persistd_path(void);
const char *th_persistctl_path(void);
