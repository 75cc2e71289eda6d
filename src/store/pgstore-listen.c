/* SPDX-License-Identifier: Apache-2.0 */
/*
 * The change listener: a dedicated connection LISTENing on the channel the tasks/instances
 * triggers notify, and a thread that polls its socket, hands each notification to a callback,
 * calls a resync callback periodically and after every (re)connection, and reconnects with
 * backoff. A pipe wakes the thread for an immediate stop.
 */
#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <libpq-fe.h>

#include "core/clock.h"
#include "core/log.h"
#include "core/util.h"
#include "store/pgstore-internal.h"
#include "store/pgstore.h"

#define LOG_MODULE "store"

/* A notification payload longer than this is not ours. */
#define PAYLOAD_MAX 512

struct pgstore_listener {
        pthread_t thread;
        bool thread_started;
        char *dsn;
        int connect_timeout_s;
        int64_t resync_interval_us;
        struct pgstore_listener_callbacks cb;
        int wake[2]; /* [0] polled by the thread, [1] written by pgstore_listener_free */
        atomic_bool stop;
        atomic_bool connected;
        atomic_uint_fast64_t connects;
        PGconn *conn; /* the thread's only */
};

/* Wait until `deadline_us` (monotonic) or a stop request. True when asked to stop. */
static bool sleep_until(struct pgstore_listener *l, int64_t deadline_us)
{
        for (;;) {
                if (atomic_load(&l->stop))
                        return true;
                int64_t left = deadline_us - clock_mono_us();
                if (left <= 0)
                        return false;
                struct pollfd pfd = {.fd = l->wake[0], .events = POLLIN};
                (void)poll(&pfd, 1, (int)MIN(left / 1000 + 1, 1000));
        }
}

static void disconnect(struct pgstore_listener *l)
{
        PQfinish(l->conn);
        l->conn = NULL;
        atomic_store(&l->connected, false);
}

static int connect_and_listen(struct pgstore_listener *l)
{
        _cleanup_free_ char *err = NULL;

        l->conn = pgstore_open_conn(l->dsn, l->connect_timeout_s, "persistd-listener", &err);
        if (!l->conn) {
                log_debug("listener cannot connect: %s", err ? err : "out of memory");
                return -ENOTCONN;
        }
        char sql[96];
        snprintf(sql, sizeof(sql), "SET statement_timeout = %d; LISTEN " PGSTORE_CHANNEL,
                 l->connect_timeout_s * 1000);
        PGresult *res = PQexec(l->conn, sql);
        bool ok = PQresultStatus(res) == PGRES_COMMAND_OK;
        PQclear(res);
        if (!ok) {
                log_debug("listener: LISTEN failed");
                disconnect(l);
                return -ENOTCONN;
        }
        /* Non-blocking so that PQconsumeInput never waits for a slow server. */
        (void)PQsetnonblocking(l->conn, 1);
        atomic_store(&l->connected, true);
        atomic_fetch_add(&l->connects, 1);
        log_debug("listener connected");
        return 0;
}

/* "<table> <op> <id>" or "<table> TRUNCATE". */
static void dispatch(struct pgstore_listener *l, const char *payload)
{
        char buf[PAYLOAD_MAX + 1], *table, *op, *id, *save = NULL;

        if (strlen(payload) > PAYLOAD_MAX)
                return;
        memcpy(buf, payload, strlen(payload) + 1);
        table = strtok_r(buf, " ", &save);
        op = table ? strtok_r(NULL, " ", &save) : NULL;
        id = op ? strtok_r(NULL, "", &save) : NULL;
        if (!table || !op || (!streq(table, "tasks") && !streq(table, "instances")))
                return;
        if (streq(op, "TRUNCATE")) {
                if (l->cb.resync)
                        l->cb.resync(l->cb.userdata);
                return;
        }
        if (!id || (!streq(op, "INSERT") && !streq(op, "UPDATE") && !streq(op, "DELETE")))
                return;
        if (l->cb.change)
                l->cb.change(table, op, id, l->cb.userdata);
}

static void resync(struct pgstore_listener *l)
{
        if (l->cb.resync)
                l->cb.resync(l->cb.userdata);
}

static void *listener_main(void *arg)
{
        struct pgstore_listener *l = arg;
        int64_t backoff = 0, next_resync = 0;

        while (!atomic_load(&l->stop)) {
                if (!l->conn) {
                        if (connect_and_listen(l) < 0) {
                                backoff = backoff == 0 ? PGSTORE_BACKOFF_MIN_US
                                                       : MIN(backoff * 2, PGSTORE_BACKOFF_MAX_US);
                                if (sleep_until(l, clock_mono_us() + backoff))
                                        break;
                                continue;
                        }
                        backoff = 0;
                        /* Changes made while disconnected were not notified: re-read all. */
                        resync(l);
                        next_resync = clock_mono_us() + l->resync_interval_us;
                }

                int64_t now = clock_mono_us();
                if (now >= next_resync) {
                        resync(l);
                        next_resync = now + l->resync_interval_us;
                        continue;
                }
                struct pollfd pfd[2] = {
                    {.fd = PQsocket(l->conn), .events = POLLIN},
                    {.fd = l->wake[0], .events = POLLIN},
                };
                int timeout_ms = (int)MIN((next_resync - now) / 1000 + 1, 1000);
                int n = poll(pfd, 2, timeout_ms);
                if (n < 0 && errno != EINTR) {
                        log_debug("listener: poll failed: %s", strerror(errno));
                        disconnect(l);
                        continue;
                }
                if (n <= 0 || pfd[1].revents)
                        continue;
                if (!PQconsumeInput(l->conn) || PQstatus(l->conn) != CONNECTION_OK) {
                        log_debug("listener: connection lost");
                        disconnect(l);
                        continue;
                }
                PGnotify *note;
                while ((note = PQnotifies(l->conn))) {
                        if (streq(note->relname, PGSTORE_CHANNEL) && note->extra)
                                dispatch(l, note->extra);
                        PQfreemem(note);
                }
                /* A FATAL (pg_terminate_backend) arrives as a result before the EOF. */
                PGresult *res;
                while (!PQisBusy(l->conn) && (res = PQgetResult(l->conn)))
                        PQclear(res);
                if (PQstatus(l->conn) != CONNECTION_OK)
                        disconnect(l);
        }
        disconnect(l);
        return NULL;
}

struct pgstore_listener *pgstore_listener_new(const struct pgstore_options *opts,
                                              int resync_interval_s,
                                              const struct pgstore_listener_callbacks *cb)
{
        struct pgstore_listener *l = calloc(1, sizeof(*l));
        if (!l)
                return NULL;
        l->wake[0] = l->wake[1] = -1;
        l->dsn = strdup(opts->dsn ? opts->dsn : "");
        l->connect_timeout_s = opts->connect_timeout_s > 0 ? opts->connect_timeout_s : 5;
        l->resync_interval_us = (int64_t)MAX(resync_interval_s, 1) * USEC_PER_SEC;
        l->cb = *cb;
        if (!l->dsn || pipe2(l->wake, O_CLOEXEC | O_NONBLOCK) < 0) {
                pgstore_listener_free(l);
                return NULL;
        }
        if (pthread_create(&l->thread, NULL, listener_main, l) != 0) {
                pgstore_listener_free(l);
                return NULL;
        }
        l->thread_started = true;
        return l;
}

void pgstore_listener_free(struct pgstore_listener *l)
{
        if (!l)
                return;
        atomic_store(&l->stop, true);
        if (l->wake[1] >= 0)
                (void)!write(l->wake[1], "x", 1);
        if (l->thread_started)
                pthread_join(l->thread, NULL);
        if (l->wake[0] >= 0)
                close(l->wake[0]);
        if (l->wake[1] >= 0)
                close(l->wake[1]);
        if (l->dsn)
                secret_free(l->dsn);
        free(l);
}

bool pgstore_listener_is_connected(struct pgstore_listener *l)
{
        return atomic_load(&l->connected);
}

uint64_t pgstore_listener_connects(struct pgstore_listener *l)
{
        return atomic_load(&l->connects);
}
