/* SPDX-License-Identifier: Apache-2.0 */
/*
 * The store when PostgreSQL goes away and comes back: a PostgreSQL of the test's own is stopped
 * under a store and a listener (claims fail at once with -ENOTCONN, nothing is half-written,
 * readiness is false), then restarted on the same port and data directory (both reconnect, the
 * listener resyncs, a claim succeeds). Also two writers of different epochs racing for the same
 * slots over many iterations: only the current epoch wins, no slot is ever claimed twice. And a
 * real `persistd run` replica whose /readyz turns 503 while PostgreSQL is down and 200 after.
 * The whole program uses that PostgreSQL (the PG* variables point at it), not the suite's.
 */
#include <errno.h>
#include <inttypes.h>
#include <pthread.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stdatomic.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/types.h>

#include <cmocka.h>

#include "core/clock.h"
#include "harness.h"
#include "store/pgstore.h"
#include "test-daemon-cluster.h"
#include "test-store-restart-util.h"

/* 2026-12-01T10:00:00Z */
#define T0 (INT64_C(1764583200) * USEC_PER_SEC)

static struct pgstore *store_for(const char *dsn)
{
        const struct pgstore_options o = {
            .dsn = dsn,
            .connect_timeout_s = 2,
            .statement_timeout_ms = 5000,
        };
        struct pgstore *s = pgstore_new(&o);
        assert_non_null(s);
        return s;
}

static long long sql_int(PGconn *c, const char *sql)
{
        char *v = th_pg_value(c, sql);
        long long n = v ? strtoll(v, NULL, 10) : -1;
        free(v);
        return n;
}

/* ---- PostgreSQL restarted under the store ------------------------------------------------- */

struct events {
        pthread_mutex_t lock;
        int resyncs;
        int changes;
};

static void on_change(const char *table, const char *op, const char *id, void *userdata)
{
        struct events *ev = userdata;
        (void)table, (void)op, (void)id;
        pthread_mutex_lock(&ev->lock);
        ev->changes++;
        pthread_mutex_unlock(&ev->lock);
}

static void on_resync(void *userdata)
{
        struct events *ev = userdata;
        pthread_mutex_lock(&ev->lock);
        ev->resyncs++;
        pthread_mutex_unlock(&ev->lock);
}

static int count_of(struct events *ev, const int *field)
{
        pthread_mutex_lock(&ev->lock);
        int n = *field;
        pthread_mutex_unlock(&ev->lock);
        return n;
}

static bool wait_events(struct events *ev, const int *field, int at_least, int64_t timeout_us)
{
        int64_t end = clock_mono_us() + timeout_us;
        while (clock_mono_us() < end) {
                if (count_of(ev, field) >= at_least)
                        return true;
                clock_sleep_us(20 * 1000);
        }
        return false;
}

static struct ownpg pg; /* this program's PostgreSQL; the group teardown removes it */

static int setup_pg(void **state)
{
        (void)state;
        ownpg_init(&pg);
        char port[8];
        snprintf(port, sizeof(port), "%u", pg.port);
        /* th_pg_*, libpq's defaults and the persistd replicas all follow these. */
        setenv("PGHOST", "127.0.0.1", 1);
        setenv("PGPORT", port, 1);
        setenv("PGUSER", "postgres", 1);
        unsetenv("PGPASSWORD");
        unsetenv("PGDATABASE");
        unsetenv("PGSERVICE");
        return 0;
}

static int teardown_pg(void **state)
{
        (void)state;
        ownpg_destroy(&pg);
        return 0;
}

static void test_postgres_restarted_under_the_store(void **state)
{
        struct events ev = {.lock = PTHREAD_MUTEX_INITIALIZER};
        enum pgstore_claim_result cr;
        int64_t epoch, run_id;
        (void)state;

        char *db = th_pg_create_db("restart");
        char *dsn = th_pg_dsn(db);
        const struct pgstore_options o = {.dsn = dsn, .connect_timeout_s = 2};
        struct pgstore *s = store_for(dsn);
        assert_int_equal(pgstore_migrate(s, NULL, NULL), 0);
        PGconn *sql = th_pg_connect(db);
        th_pg_exec(sql, "INSERT INTO instances (id, host, port, pool) VALUES "
                        "('redis-a', '127.0.0.1', 6379, 'ssd')");
        th_pg_exec(sql,
                   "INSERT INTO tasks (instance_id, schedule) VALUES ('redis-a', '* * * * *')");
        int64_t task = sql_int(sql, "SELECT id FROM tasks");
        PQfinish(sql);
        assert_int_equal(pgstore_epoch_bump(s, "leader", &epoch), 0);
        assert_int_equal(pgstore_run_claim(s, epoch, "leader", task, T0, 0, -1, &cr, &run_id), 0);
        assert_int_equal(cr, PGSTORE_CLAIMED);

        const struct pgstore_listener_callbacks cb = {
            .change = on_change, .resync = on_resync, .userdata = &ev};
        struct pgstore_listener *l = pgstore_listener_new(&o, 3600, &cb);
        assert_non_null(l);
        assert_true(wait_events(&ev, &ev.resyncs, 1, 10 * USEC_PER_SEC));
        assert_true(pgstore_listener_is_connected(l));
        assert_int_equal(pgstore_listener_connects(l), 1);
        int resyncs_before = count_of(&ev, &ev.resyncs);

        ownpg_stop(&pg);

        /* Every call fails cleanly, and soon: nothing waits for a server that is not there. */
        for (int i = 1; i <= 5; i++) {
                int64_t t = clock_mono_us();
                assert_int_equal(pgstore_run_claim(s, epoch, "leader", task,
                                                   T0 + i * 60 * USEC_PER_SEC, 0, -1, &cr, NULL),
                                 -ENOTCONN);
                assert_true(clock_mono_us() - t < 5 * USEC_PER_SEC); /* connect_timeout 2 s */
                assert_true(pgstore_errstr()[0] != '\0');
        }
        assert_false(pgstore_is_connected(s));
        assert_int_equal(pgstore_ping(s), -ENOTCONN);
        assert_false(pgstore_is_connected(s));
        struct pgstore_run run;
        assert_int_equal(pgstore_run_get(s, run_id, &run), -ENOTCONN);
        int64_t end = clock_mono_us() + 10 * USEC_PER_SEC;
        while (pgstore_listener_is_connected(l) && clock_mono_us() < end)
                clock_sleep_us(20 * 1000);
        assert_false(pgstore_listener_is_connected(l));

        ownpg_start(&pg);

        /* The store reconnects (within its backoff, at most 10 s apart)... */
        end = clock_mono_us() + 30 * USEC_PER_SEC;
        while (pgstore_ping(s) != 0 && clock_mono_us() < end)
                clock_sleep_us(200 * 1000);
        assert_int_equal(pgstore_ping(s), 0);
        assert_true(pgstore_is_connected(s));
        /* ...and so does the listener, which resyncs because it may have missed changes. */
        end = clock_mono_us() + 30 * USEC_PER_SEC;
        while (pgstore_listener_connects(l) < 2 && clock_mono_us() < end)
                clock_sleep_us(20 * 1000);
        assert_int_equal(pgstore_listener_connects(l), 2);
        assert_true(wait_events(&ev, &ev.resyncs, resyncs_before + 1, 10 * USEC_PER_SEC));
        assert_true(pgstore_listener_is_connected(l));

        /* Nothing was half-written during the outage: only the first claim is there. */
        sql = th_pg_connect(db);
        assert_int_equal(sql_int(sql, "SELECT count(*) FROM runs"), 1);
        assert_int_equal(pgstore_run_get(s, run_id, &run), 0);
        assert_int_equal(run.state, PGSTORE_RUN_CLAIMED);
        assert_int_equal(run.epoch, epoch);

        /* A claim succeeds again, and changes are heard again. */
        assert_int_equal(
            pgstore_run_claim(s, epoch, "leader", task, T0 + 60 * USEC_PER_SEC, 0, -1, &cr, NULL),
            0);
        assert_int_equal(cr, PGSTORE_CLAIMED);
        assert_int_equal(sql_int(sql, "SELECT count(*) FROM runs"), 2);
        int changes = count_of(&ev, &ev.changes);
        th_pg_exec(sql, "UPDATE tasks SET description = 'after the restart'");
        assert_true(wait_events(&ev, &ev.changes, changes + 1, 10 * USEC_PER_SEC));
        PQfinish(sql);

        pgstore_listener_free(l);
        pgstore_free(s);
        free(db);
        free(dsn);
}

/* ---- two epochs racing for the same slots ------------------------------------------------- */

/*
 * Writer A holds the current epoch; writer B starts with an older one. Both claim slot i at the
 * same moment (a barrier per slot); at slot `bump_at` B bumps the epoch first and from then on
 * holds the current one. Results are recorded per slot and checked on the main thread.
 */
enum { SLOTS = 150, ROUNDS = 4 };

struct writer {
        const char *dsn;
        const char *identity;
        int64_t epoch;
        int bump_at; /* -1: never bumps */
        int64_t bumped_epoch;
        pthread_barrier_t *barrier;
        int r[SLOTS];                        /* pgstore_run_claim's return */
        enum pgstore_claim_result cr[SLOTS]; /* when r == 0 */
        int64_t epoch_used[SLOTS];
        int bump_r;
};

static void *writer_main(void *arg)
{
        struct writer *w = arg;
        struct pgstore *s = store_for(w->dsn);

        if (pgstore_connect(s) < 0)
                w->bump_r = -ENOTCONN;
        for (int i = 0; i < SLOTS; i++) {
                pthread_barrier_wait(w->barrier);
                if (i == w->bump_at) {
                        int r = pgstore_epoch_bump(s, w->identity, &w->bumped_epoch);
                        if (r < 0)
                                w->bump_r = r;
                        else
                                w->epoch = w->bumped_epoch;
                }
                w->epoch_used[i] = w->epoch;
                w->r[i] =
                    pgstore_run_claim(s, w->epoch, w->identity, 1,
                                      T0 + (int64_t)i * 60 * USEC_PER_SEC, 0, -1, &w->cr[i], NULL);
        }
        pgstore_free(s);
        return NULL;
}

static void test_two_epochs_race_for_the_same_slots(void **state)
{
        char *db = th_pg_create_db("epochrace");
        char *dsn = th_pg_dsn(db);
        PGconn *sql = th_pg_connect(db);
        struct pgstore *s = store_for(dsn);
        int64_t e_old, e_cur;
        (void)state;

        assert_int_equal(pgstore_migrate(s, NULL, NULL), 0);
        th_pg_exec(sql, "INSERT INTO instances (id, host, port, pool) VALUES "
                        "('redis-a', '127.0.0.1', 6379, 'ssd')");
        th_pg_exec(sql, "INSERT INTO tasks (id, instance_id, schedule) OVERRIDING SYSTEM VALUE"
                        " VALUES (1, 'redis-a', '* * * * *')");
        for (int round = 0; round < ROUNDS; round++) {
                pthread_barrier_t barrier;
                struct writer *a = calloc(1, sizeof(*a)), *b = calloc(1, sizeof(*b));
                pthread_t ta, tb;
                assert_non_null(a);
                assert_non_null(b);
                th_pg_exec(sql, "DELETE FROM runs");
                assert_int_equal(pgstore_epoch_bump(s, "b", &e_old), 0);
                assert_int_equal(pgstore_epoch_bump(s, "a", &e_cur), 0);
                /* Round 0: B never bumps (stale all along); then it takes over ever earlier. */
                int bump_at = round == 0 ? -1 : SLOTS - round * (SLOTS / ROUNDS);
                pthread_barrier_init(&barrier, NULL, 2);
                *a = (struct writer){.dsn = dsn,
                                     .identity = "a",
                                     .epoch = e_cur,
                                     .bump_at = -1,
                                     .barrier = &barrier};
                *b = (struct writer){.dsn = dsn,
                                     .identity = "b",
                                     .epoch = e_old,
                                     .bump_at = bump_at,
                                     .barrier = &barrier};
                assert_int_equal(pthread_create(&ta, NULL, writer_main, a), 0);
                assert_int_equal(pthread_create(&tb, NULL, writer_main, b), 0);
                pthread_join(ta, NULL);
                pthread_join(tb, NULL);
                pthread_barrier_destroy(&barrier);
                assert_int_equal(a->bump_r, 0);
                assert_int_equal(b->bump_r, 0);

                int a_won = 0, b_won = 0;
                bool a_deposed = false;
                for (int i = 0; i < SLOTS; i++) {
                        bool aw = a->r[i] == 0 && a->cr[i] == PGSTORE_CLAIMED;
                        bool bw = b->r[i] == 0 && b->cr[i] == PGSTORE_CLAIMED;
                        /* Exactly one winner per slot: never both, never neither. */
                        assert_true(aw != bw);
                        a_won += aw;
                        b_won += bw;
                        /* Each loser is told why: deposed, or the slot is taken. */
                        if (!aw)
                                assert_true(a->r[i] == -ESTALE ||
                                            (a->r[i] == 0 && a->cr[i] == PGSTORE_CLAIM_EXISTS));
                        if (!bw)
                                assert_true(b->r[i] == -ESTALE ||
                                            (b->r[i] == 0 && b->cr[i] == PGSTORE_CLAIM_EXISTS));
                        /* The stale epoch never wins; once deposed, A stays deposed. */
                        if (b->epoch_used[i] == e_old)
                                assert_int_equal(b->r[i], -ESTALE);
                        if (a_deposed)
                                assert_int_equal(a->r[i], -ESTALE);
                        if (a->r[i] == -ESTALE)
                                a_deposed = true;
                        if (bump_at >= 0 && i > bump_at)
                                assert_int_equal(a->r[i], -ESTALE);
                        if (bump_at < 0 || i < bump_at)
                                assert_true(aw);
                }
                assert_int_equal(a_won + b_won, SLOTS);
                assert_int_equal(a_deposed, bump_at >= 0);

                /* The ledger agrees: one run per slot, each under its winner's epoch. */
                char q[160];
                assert_int_equal(sql_int(sql, "SELECT count(*) FROM runs"), SLOTS);
                assert_int_equal(sql_int(sql, "SELECT count(DISTINCT scheduled_for) FROM runs"),
                                 SLOTS);
                snprintf(q, sizeof(q), "SELECT count(*) FROM runs WHERE epoch = %" PRId64, e_cur);
                assert_int_equal(sql_int(sql, q), a_won);
                snprintf(q, sizeof(q), "SELECT count(*) FROM runs WHERE epoch = %" PRId64,
                         b->bumped_epoch);
                assert_int_equal(sql_int(sql, q), b_won);
                snprintf(q, sizeof(q), "SELECT count(*) FROM runs WHERE epoch = %" PRId64, e_old);
                assert_int_equal(sql_int(sql, q), 0);
                free(a);
                free(b);
        }
        pgstore_free(s);
        PQfinish(sql);
        free(db);
        free(dsn);
}

/* ---- a persistd replica's readiness ------------------------------------------------------- */

/* Poll replica i's /readyz until it answers `want` (or the deadline passes); the last status. */
static long wait_readyz(const struct cluster *cl, int i, long want, int64_t timeout_us)
{
        int64_t end = clock_mono_us() + timeout_us;
        long st;
        while ((st = http(cl->r[i].port, "GET", "/readyz", NULL, NULL)) != want &&
               clock_mono_us() < end)
                clock_sleep_us(100 * 1000);
        return st;
}

static void test_replica_not_ready_while_postgres_is_down(void **state)
{
        struct cluster cl;
        int status;
        (void)state;

        cluster_start(&cl, NULL, false);
        replica_spawn(&cl, 0);
        if (wait_readyz(&cl, 0, 200, 30 * USEC_PER_SEC) != 200) {
                dump_logs(&cl);
                fail_msg("the replica never became ready");
        }
        PQfinish(cl.sql); /* the fixture's own connection would not survive the restart */
        cl.sql = NULL;

        ownpg_stop(&pg);
        assert_int_equal(wait_readyz(&cl, 0, 503, 15 * USEC_PER_SEC), 503);
        assert_int_equal(http(cl.r[0].port, "GET", "/healthz", NULL, NULL), 200); /* alive */
        assert_false(th_wait_exit(cl.r[0].pid, 0, &status));

        ownpg_start(&pg);
        long st = wait_readyz(&cl, 0, 200, 30 * USEC_PER_SEC);
        if (st != 200)
                dump_logs(&cl);
        assert_int_equal(st, 200);
        assert_false(th_wait_exit(cl.r[0].pid, 0, &status));
        cl.sql = th_pg_connect(cl.db);
        cluster_stop(&cl);
}

int main(void)
{
        const struct CMUnitTest tests[] = {
            cmocka_unit_test(test_postgres_restarted_under_the_store),
            cmocka_unit_test(test_two_epochs_race_for_the_same_slots),
            cmocka_unit_test(test_replica_not_ready_while_postgres_is_down),
        };
        return cmocka_run_group_tests(tests, setup_pg, teardown_pg);
}
