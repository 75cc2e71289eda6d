/* SPDX-License-Identifier: Apache-2.0 */
/*
 * The PostgreSQL store against a real server: migrations (from empty, again, concurrently,
 * refused when newer), the constraints platform teams meet in plain SQL, fencing by epoch
 * (including a race with a bump), exactly-once claims under concurrency, request-id idempotency,
 * the scheduler's queries, retention, task CRUD and flags, and connection loss.
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

#include <cmocka.h>

#include "core/clock.h"
#include "harness.h"
#include "store/migrations.h"
#include "store/pgstore.h"

#define HOUR_US (3600 * USEC_PER_SEC)
/* 2026-12-01T10:00:00Z */
#define T0 (INT64_C(1764583200) * USEC_PER_SEC)

struct db {
        char *name;
        char *dsn;
        PGconn *sql; /* a separate connection, as a platform team's psql */
};

static struct pgstore *store_for(const char *dsn)
{
        const struct pgstore_options o = {
            .dsn = dsn,
            .connect_timeout_s = 5,
            .statement_timeout_ms = 10000,
        };
        struct pgstore *s = pgstore_new(&o);
        assert_non_null(s);
        return s;
}

/* A fresh migrated database with one instance "redis-a" (pool ssd) and task 1 on it. */
static void db_open(struct db *d, const char *tag, bool migrate)
{
        d->name = th_pg_create_db(tag);
        d->dsn = th_pg_dsn(d->name);
        d->sql = th_pg_connect(d->name);
        if (!migrate)
                return;
        struct pgstore *s = store_for(d->dsn);
        assert_int_equal(pgstore_migrate(s, NULL, NULL), 0);
        pgstore_free(s);
        th_pg_exec(d->sql, "INSERT INTO instances (id, host, port, pool) VALUES "
                           "('redis-a', '127.0.0.1', 6379, 'ssd'), "
                           "('redis-b', '127.0.0.1', 6380, 'ssd')");
        th_pg_exec(d->sql, "INSERT INTO tasks (id, instance_id, schedule) OVERRIDING SYSTEM VALUE"
                           " VALUES (1, 'redis-a', '*/5 * * * *'), (2, 'redis-b', '0 * * * *')");
        th_pg_exec(d->sql, "SELECT setval(pg_get_serial_sequence('tasks', 'id'), 100)");
}

static void db_close(struct db *d)
{
        PQfinish(d->sql);
        free(d->name);
        free(d->dsn);
}

static long long sql_int(struct db *d, const char *sql)
{
        char *v = th_pg_value(d->sql, sql);
        long long n = v ? strtoll(v, NULL, 10) : -1;
        free(v);
        return n;
}

/* ---- migrations --------------------------------------------------------------------------- */

static void test_migrate_from_empty_then_idempotent(void **state)
{
        struct db d;
        int from = -1, to = -1, v = -1;

        db_open(&d, "mig", false);
        struct pgstore *s = store_for(d.dsn);
        assert_int_equal(pgstore_schema_current(s, &v), 0);
        assert_int_equal(v, 0);
        assert_int_equal(pgstore_migrate(s, &from, &to), 0);
        assert_int_equal(from, 0);
        assert_int_equal(to, pgstore_schema_version());
        assert_int_equal(pgstore_migrate(s, &from, &to), 0);
        assert_int_equal(from, pgstore_schema_version());
        assert_int_equal(to, pgstore_schema_version());
        assert_int_equal(sql_int(&d, "SELECT count(*) FROM schema_migrations"),
                         (long long)pgstore_migrations_count);
        assert_int_equal(sql_int(&d, "SELECT epoch FROM leader_epoch"), 0);
        int64_t epoch;
        assert_int_equal(pgstore_epoch_get(s, &epoch, NULL), 0);
        assert_int_equal(epoch, 0);
        pgstore_free(s);
        db_close(&d);
}

struct migrate_thread {
        const char *dsn;
        int r, from, to;
        pthread_barrier_t *barrier;
};

static void *migrate_main(void *arg)
{
        struct migrate_thread *t = arg;
        struct pgstore *s = store_for(t->dsn);
        assert_int_equal(pgstore_connect(s), 0);
        pthread_barrier_wait(t->barrier);
        t->r = pgstore_migrate(s, &t->from, &t->to);
        pgstore_free(s);
        return NULL;
}

static void test_migrate_concurrently_applies_once(void **state)
{
        enum { N = 5 };
        struct migrate_thread t[N];
        pthread_t th[N];
        pthread_barrier_t barrier;
        struct db d;
        int applied = 0;

        db_open(&d, "migc", false);
        pthread_barrier_init(&barrier, NULL, N);
        for (int i = 0; i < N; i++) {
                t[i] = (struct migrate_thread){.dsn = d.dsn, .barrier = &barrier};
                assert_int_equal(pthread_create(&th[i], NULL, migrate_main, &t[i]), 0);
        }
        for (int i = 0; i < N; i++) {
                pthread_join(th[i], NULL);
                assert_int_equal(t[i].r, 0);
                assert_int_equal(t[i].to, pgstore_schema_version());
                if (t[i].from == 0)
                        applied++;
        }
        pthread_barrier_destroy(&barrier);
        /* Exactly one replica found the empty database; the others waited and found it done. */
        assert_int_equal(applied, 1);
        assert_int_equal(sql_int(&d, "SELECT count(*) FROM schema_migrations"),
                         (long long)pgstore_migrations_count);
        assert_int_equal(sql_int(&d, "SELECT count(*) FROM leader_epoch"), 1);
        db_close(&d);
}

static void test_migrate_refuses_newer_schema(void **state)
{
        struct db d;
        char expect[64];

        db_open(&d, "mignew", true);
        th_pg_exec(d.sql, "INSERT INTO schema_migrations (version, name) VALUES (999, 'future')");
        struct pgstore *s = store_for(d.dsn);
        assert_int_equal(pgstore_migrate(s, NULL, NULL), -ENOTSUP);
        assert_non_null(strstr(pgstore_errstr(), "version 999"));
        snprintf(expect, sizeof(expect), "(version %d)", pgstore_schema_version());
        assert_non_null(strstr(pgstore_errstr(), expect));
        /* The lock was released: another migrate is refused the same way, not blocked. */
        assert_int_equal(pgstore_migrate(s, NULL, NULL), -ENOTSUP);
        pgstore_free(s);
        db_close(&d);
}

/* ---- constraints (what plain SQL meets) ---------------------------------------------------- */

static void expect_sql_fails(struct db *d, const char *sql, const char *sqlstate)
{
        PGresult *res = PQexec(d->sql, sql);
        if (PQresultStatus(res) == PGRES_COMMAND_OK || PQresultStatus(res) == PGRES_TUPLES_OK)
                fail_msg("accepted, should fail: %s", sql);
        const char *st = PQresultErrorField(res, PG_DIAG_SQLSTATE);
        if (!st || strcmp(st, sqlstate) != 0)
                fail_msg("failed with %s (%s), expected %s: %s", st ? st : "?",
                         PQresultErrorMessage(res), sqlstate, sql);
        PQclear(res);
}

static void test_constraints_reject_bad_rows(void **state)
{
        static const struct {
                const char *sql, *sqlstate;
        } bad[] = {
            /* instances */
            {"INSERT INTO instances (id, host, pool) VALUES ('', 'h', 'p')", "23514"},
            {"INSERT INTO instances (id, host, pool) VALUES ('a b', 'h', 'p')", "23514"},
            {"INSERT INTO instances (id, host, port, pool) VALUES ('x', 'h', 0, 'p')", "23514"},
            {"INSERT INTO instances (id, host, port, pool) VALUES ('x', 'h', 65536, 'p')", "23514"},
            {"INSERT INTO instances (id, host, pool) VALUES ('x', 'h', '')", "23514"},
            {"INSERT INTO instances (id, host) VALUES ('x', 'h')", "23502"},
            {"INSERT INTO instances (id, pool) VALUES ('x', 'p')", "23514"}, /* no address */
            {"INSERT INTO instances (id, host, pod_namespace, pod_name, pool)"
             " VALUES ('x', 'h', 'ns', 'pod', 'p')",
             "23514"}, /* both */
            {"INSERT INTO instances (id, pod_namespace, pool) VALUES ('x', 'ns', 'p')",
             "23514"}, /* half a pod reference */
            {"INSERT INTO instances (id, pod_namespace, pod_name, pool)"
             " VALUES ('x', 'Bad_NS', 'pod', 'p')",
             "23514"},
            {"INSERT INTO instances (id, host, pool, password, password_secret_namespace,"
             " password_secret_name, password_secret_key)"
             " VALUES ('x', 'h', 'p', 'pw', 'ns', 's', 'k')",
             "23514"}, /* two password sources */
            {"INSERT INTO instances (id, host, pool, password_secret_name)"
             " VALUES ('x', 'h', 'p', 's')",
             "23514"}, /* half a secret reference */
            {"INSERT INTO instances (id, host, pool) VALUES ('redis-a', 'h', 'p')", "23505"},
            {"UPDATE instances SET write_rate_bytes_s = 0 WHERE id = 'redis-a'", "23514"},
            /* tasks */
            {"INSERT INTO tasks (instance_id, schedule) VALUES ('nope', '* * * * *')", "23503"},
            {"INSERT INTO tasks (instance_id, schedule, action)"
             " VALUES ('redis-a', '* * * * *', 'flushall')",
             "23514"},
            {"INSERT INTO tasks (instance_id, schedule, misfire_policy)"
             " VALUES ('redis-a', '* * * * *', 'sometimes')",
             "23514"},
            {"INSERT INTO tasks (instance_id, schedule) VALUES ('redis-a', '* * * *')", "23514"},
            {"INSERT INTO tasks (instance_id, schedule) VALUES ('redis-a', '* * * * * * *')",
             "23514"},
            {"INSERT INTO tasks (instance_id, schedule) VALUES ('redis-a', ' * * * * *')", "23514"},
            {"INSERT INTO tasks (instance_id, schedule, starting_deadline_s)"
             " VALUES ('redis-a', '* * * * *', -1)",
             "23514"},
            {"INSERT INTO tasks (instance_id) VALUES ('redis-a')", "23502"},
            {"INSERT INTO tasks (id, instance_id, schedule) VALUES (7, 'redis-a', '* * * * *')",
             "428C9"}, /* ids come from the identity */
            /* runs */
            {"INSERT INTO runs (task_id, instance_id, kind, scheduled_for, epoch,"
             " leader_identity) VALUES (1, 'redis-a', 'scheduled', now(), 1, 'x'),"
             " (1, 'redis-a', 'scheduled', now(), 1, 'y')",
             "23505"}, /* one run per slot */
            {"INSERT INTO runs (task_id, instance_id, kind, epoch, leader_identity)"
             " VALUES (1, 'redis-a', 'scheduled', 1, 'x')",
             "23514"}, /* scheduled without slot */
            {"INSERT INTO runs (instance_id, kind, epoch, leader_identity)"
             " VALUES ('redis-a', 'hourly', 1, 'x')",
             "23514"},
            {"INSERT INTO runs (instance_id, kind, state, epoch, leader_identity)"
             " VALUES ('redis-a', 'persist', 'done', 1, 'x')",
             "23514"},
            {"INSERT INTO runs (instance_id, kind, epoch, leader_identity)"
             " VALUES ('redis-a', 'persist', 0, 'x')",
             "23514"},
            {"INSERT INTO runs (instance_id, kind, state, epoch, leader_identity)"
             " VALUES ('redis-a', 'persist', 'succeeded', 1, 'x')",
             "23514"}, /* final without finished_at */
            {"INSERT INTO runs (instance_id, kind, state, epoch, leader_identity)"
             " VALUES ('redis-a', 'persist', 'running', 1, 'x')",
             "23514"}, /* running without started_at */
            {"INSERT INTO runs (task_id, instance_id, kind, epoch, leader_identity)"
             " VALUES (1, 'redis-a', 'nightly', 1, 'x')",
             "23514"}, /* nightly runs belong to no task */
            {"INSERT INTO runs (instance_id, kind, epoch, leader_identity, request_id)"
             " VALUES ('redis-a', 'nightly', 1, 'x', 'r')",
             "23514"},
            {"INSERT INTO runs (instance_id, kind, epoch, leader_identity, request_id)"
             " VALUES ('redis-a', 'persist', 1, 'x', 'r'), ('redis-a', 'persist', 1, 'x', 'r')",
             "23505"},
            {"INSERT INTO runs (instance_id, kind, epoch, leader_identity)"
             " VALUES ('gone', 'persist', 1, 'x')",
             "23503"},
            /* leader_epoch and passes */
            {"INSERT INTO leader_epoch (id, epoch) VALUES (2, 0)", "23514"},
            {"INSERT INTO passes (pass_date, total, done, epoch, leader_identity)"
             " VALUES ('2026-12-01', 1, 2, 1, 'x')",
             "23514"},
            {"INSERT INTO passes (pass_date, state, epoch, leader_identity)"
             " VALUES ('2026-12-01', 'finished', 1, 'x')",
             "23514"},
        };
        struct db d;

        db_open(&d, "constraints", true);
        for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++)
                expect_sql_fails(&d, bad[i].sql, bad[i].sqlstate);

        /* What the documentation shows platform teams is accepted. */
        th_pg_exec(d.sql, "INSERT INTO instances (id, pod_namespace, pod_name, pool,"
                          " password_secret_namespace, password_secret_name, password_secret_key)"
                          " VALUES ('cache-0', 'shop', 'cache-0', 'ssd-2', 'shop', 'cache-auth',"
                          " 'password')");
        th_pg_exec(d.sql, "INSERT INTO tasks (instance_id, schedule, action, misfire_policy,"
                          " starting_deadline_s, description) VALUES ('cache-0',"
                          " '30 */10 * * * *', 'bgrewriteaof', 'skip', 120, 'AOF every 10 min')");
        /* Deleting an instance deletes its tasks; deleting a task keeps its runs' history. */
        th_pg_exec(d.sql, "INSERT INTO runs (task_id, instance_id, kind, scheduled_for, epoch,"
                          " leader_identity) VALUES (2, 'redis-b', 'scheduled', now(), 1, 'x')");
        th_pg_exec(d.sql, "DELETE FROM tasks WHERE id = 2");
        assert_int_equal(sql_int(&d, "SELECT count(*) FROM runs WHERE task_id IS NULL"), 1);
        th_pg_exec(d.sql, "DELETE FROM instances WHERE id = 'cache-0'");
        assert_int_equal(sql_int(&d, "SELECT count(*) FROM tasks WHERE instance_id = 'cache-0'"),
                         0);
        db_close(&d);
}

/* ---- tasks through the API ------------------------------------------------------------------ */

static struct pgstore_task task_on(const char *instance, const char *schedule)
{
        struct pgstore_task t = {.enabled = true, .starting_deadline_s = 60};
        snprintf(t.instance_id, sizeof(t.instance_id), "%s", instance);
        snprintf(t.schedule, sizeof(t.schedule), "%s", schedule);
        snprintf(t.description, sizeof(t.description), "%s", "test");
        return t;
}

static void test_task_crud_and_field_errors(void **state)
{
        struct db d;
        struct pgstore_task t = task_on("redis-a", "0 */2 * * *"), got;
        int64_t id = 0;

        db_open(&d, "tasks", true);
        struct pgstore *s = store_for(d.dsn);
        t.action = PGSTORE_ACTION_BGREWRITEAOF;
        t.misfire = PGSTORE_MISFIRE_SKIP;
        assert_int_equal(pgstore_task_create(s, &t, &id), 0);
        assert_true(id > 100);
        assert_int_equal(pgstore_task_get(s, id, &got), 0);
        assert_string_equal(got.schedule, "0 */2 * * *");
        assert_int_equal(got.action, PGSTORE_ACTION_BGREWRITEAOF);
        assert_int_equal(got.misfire, PGSTORE_MISFIRE_SKIP);
        assert_string_equal(got.pool, "ssd");
        assert_true(got.created_at > 0);

        got.enabled = false;
        snprintf(got.schedule, sizeof(got.schedule), "%s", "15 * * * *");
        assert_int_equal(pgstore_task_update(s, &got), 0);
        assert_int_equal(pgstore_task_get(s, id, &got), 0);
        assert_false(got.enabled);
        assert_string_equal(got.schedule, "15 * * * *");

        struct pgstore_task bad = task_on("redis-9", "* * * * *");
        assert_int_equal(pgstore_task_create(s, &bad, NULL), -EINVAL);
        assert_string_equal(pgstore_errstr(), "instance_id: no such instance");
        assert_string_equal(pgstore_sqlstate(), "23503");
        bad = task_on("redis-a", "every hour");
        assert_int_equal(pgstore_task_create(s, &bad, NULL), -EINVAL);
        assert_true(strncmp(pgstore_errstr(), "schedule: ", 10) == 0);
        bad = task_on("redis-a", "* * * * *");
        bad.starting_deadline_s = 100000;
        assert_int_equal(pgstore_task_create(s, &bad, NULL), -EINVAL);
        assert_true(strncmp(pgstore_errstr(), "starting_deadline_s: ", 21) == 0);
        bad.starting_deadline_s = 1;
        bad.action = (enum pgstore_action)7;
        assert_int_equal(pgstore_task_create(s, &bad, NULL), -EINVAL);
        assert_true(strncmp(pgstore_errstr(), "action: ", 8) == 0);
        bad = task_on("redis-a", "* * * * *");
        bad.id = 1;
        assert_int_equal(pgstore_task_create(s, &bad, NULL), -EEXIST);
        assert_true(strncmp(pgstore_errstr(), "id: ", 4) == 0);

        assert_int_equal(pgstore_task_delete(s, id), 0);
        assert_int_equal(pgstore_task_delete(s, id), -ENOENT);
        assert_int_equal(pgstore_task_get(s, id, &got), -ENOENT);
        got.id = id;
        assert_int_equal(pgstore_task_update(s, &got), -ENOENT);
        pgstore_free(s);
        db_close(&d);
}

struct collected {
        int n;
        int64_t ids[16];
        char pools[16][PGSTORE_LABEL_MAX];
        int stop_after;
};

static int collect_task(const struct pgstore_task *t, void *userdata)
{
        struct collected *c = userdata;
        if (c->n < 16) {
                c->ids[c->n] = t->id;
                snprintf(c->pools[c->n], sizeof(c->pools[0]), "%s", t->pool);
        }
        c->n++;
        return c->stop_after > 0 && c->n >= c->stop_after ? 7 : 0;
}

static void test_tasks_foreach_and_invalid_flags(void **state)
{
        struct db d;
        struct collected c = {0};

        db_open(&d, "load", true);
        th_pg_exec(d.sql, "INSERT INTO instances (id, host, pool, enabled) VALUES "
                          "('redis-off', 'h', 'hdd', false)");
        th_pg_exec(d.sql, "INSERT INTO tasks (id, instance_id, schedule, enabled)"
                          " OVERRIDING SYSTEM VALUE VALUES "
                          "(3, 'redis-off', '* * * * *', true), (4, 'redis-a', '* * * * *', false),"
                          " (5, 'redis-b', '* * * * *', true)");
        struct pgstore *s = store_for(d.dsn);
        const struct pgstore_task_filter enabled = {.enabled_only = true};
        assert_int_equal(pgstore_tasks_foreach(s, &enabled, collect_task, &c), 0);
        assert_int_equal(c.n, 3);
        assert_int_equal(c.ids[0], 1);
        assert_int_equal(c.ids[1], 2);
        assert_int_equal(c.ids[2], 5);
        assert_string_equal(c.pools[0], "ssd");
        memset(&c, 0, sizeof(c));
        assert_int_equal(pgstore_tasks_foreach(s, NULL, collect_task, &c), 0);
        assert_int_equal(c.n, 5);
        memset(&c, 0, sizeof(c));
        const struct pgstore_task_filter one = {.instance_id = "redis-b"};
        assert_int_equal(pgstore_tasks_foreach(s, &one, collect_task, &c), 0);
        assert_int_equal(c.n, 2);
        /* A callback's stop value comes back negated; the connection stays usable. */
        memset(&c, 0, sizeof(c));
        c.stop_after = 1;
        assert_int_equal(pgstore_tasks_foreach(s, NULL, collect_task, &c), -7);
        assert_int_equal(c.n, 1);
        assert_int_equal(pgstore_ping(s), 0);

        /* A row the scheduler cannot use is flagged, listed in the view, and cleared. */
        assert_int_equal(pgstore_task_set_invalid(s, 5, "schedule: bad minute \"61\""), 0);
        char *reason = th_pg_value(d.sql, "SELECT reason FROM unusable_rows WHERE kind = 'task'"
                                          " AND id = '5'");
        assert_string_equal(reason, "schedule: bad minute \"61\"");
        free(reason);
        struct pgstore_task t;
        assert_int_equal(pgstore_task_get(s, 5, &t), 0);
        assert_string_equal(t.invalid_reason, "schedule: bad minute \"61\"");
        assert_int_equal(pgstore_task_set_invalid(s, 5, NULL), 0);
        assert_int_equal(sql_int(&d, "SELECT count(*) FROM unusable_rows"), 0);
        assert_int_equal(pgstore_task_set_invalid(s, 99, "x"), -ENOENT);
        /* Fixing the schedule in SQL clears the verdict; the scheduler re-checks the row. */
        assert_int_equal(pgstore_task_set_invalid(s, 5, "schedule: bad"), 0);
        th_pg_exec(d.sql, "UPDATE tasks SET schedule = '*/2 * * * *' WHERE id = 5");
        assert_int_equal(sql_int(&d, "SELECT count(*) FROM unusable_rows"), 0);
        assert_int_equal(pgstore_instance_set_invalid(s, "redis-off", "pod: not found"), 0);
        int nt = -1, ni = -1;
        assert_int_equal(pgstore_unusable_count(s, &nt, &ni), 0);
        assert_int_equal(nt, 0);
        assert_int_equal(ni, 1);
        assert_int_equal(sql_int(&d, "SELECT count(*) FROM unusable_rows WHERE kind ="
                                     " 'instance'"),
                         1);
        /* A very long reason is cut to the column's limit, on a character boundary. */
        char longer[700];
        memset(longer, 0, sizeof(longer));
        for (size_t i = 0; i + 2 < sizeof(longer) - 1; i += 2)
                memcpy(longer + i, "\xc3\xa9", 2); /* é */
        assert_int_equal(pgstore_task_set_invalid(s, 5, longer), 0);
        assert_int_equal(sql_int(&d, "SELECT length(invalid_reason) FROM tasks WHERE id = 5"), 256);
        pgstore_free(s);
        db_close(&d);
}

static void test_instances_read_and_learned_values(void **state)
{
        struct db d;
        struct pgstore_instance in;

        db_open(&d, "inst", true);
        struct pgstore *s = store_for(d.dsn);
        assert_int_equal(pgstore_instance_get(s, "redis-a", &in), 0);
        assert_string_equal(in.host, "127.0.0.1");
        assert_int_equal(in.port, 6379);
        assert_string_equal(in.pool, "ssd");
        assert_true(in.enabled);
        assert_true(in.write_rate_bytes_s == 0);
        assert_true(in.fork_ms_per_gb < 0);
        assert_int_equal(in.capabilities_at, 0);
        assert_int_equal(pgstore_instance_set_estimates(s, "redis-a", 150e6, 12.5, 3), 0);
        const struct pgstore_capabilities caps = {.redis_version = "7.0.15",
                                                  .can_bgsave = true,
                                                  .can_config = true,
                                                  .save_disabled = true,
                                                  .detected_at = T0};
        assert_int_equal(pgstore_instance_set_capabilities(s, "redis-a", &caps), 0);
        assert_int_equal(pgstore_instance_get(s, "redis-a", &in), 0);
        assert_true(in.write_rate_bytes_s == 150e6);
        assert_true(in.fork_ms_per_gb == 12.5);
        assert_int_equal(in.estimate_samples, 3);
        assert_string_equal(in.redis_version, "7.0.15");
        assert_true(in.can_bgsave && in.can_config && in.save_disabled && !in.can_bgrewriteaof);
        assert_int_equal(in.capabilities_at, T0);
        assert_int_equal(pgstore_instance_set_estimates(s, "nope", 1, 1, 1), -ENOENT);
        assert_int_equal(pgstore_instance_set_estimates(s, "redis-a", 0, 1, 1), -EINVAL);
        assert_int_equal(pgstore_instance_get(s, "nope", &in), -ENOENT);
        pgstore_free(s);
        db_close(&d);
}

/* ---- fencing -------------------------------------------------------------------------------- */

static void test_epoch_fences_every_write(void **state)
{
        struct db d;
        enum pgstore_claim_result cr;
        int64_t e1, e2, run, run2;
        struct pgstore_run got;
        char holder[PGSTORE_IDENTITY_MAX];

        db_open(&d, "fence", true);
        struct pgstore *a = store_for(d.dsn), *b = store_for(d.dsn);
        assert_int_equal(pgstore_epoch_bump(a, "pod-a_1", &e1), 0);
        assert_int_equal(e1, 1);
        assert_int_equal(pgstore_run_claim(a, e1, "pod-a_1", 1, T0, T0, 1000, &cr, &run), 0);
        assert_int_equal(cr, PGSTORE_CLAIMED);
        assert_int_equal(pgstore_run_claim(a, e1, "pod-a_1", 1, T0 + HOUR_US, 0, -1, &cr, &run2),
                         0);
        const struct pgstore_run_start start = {.started_at = T0 + 5,
                                                .rdb_saves_before = 4,
                                                .lastsave_before = 1764580000,
                                                .used_memory = 1 << 20,
                                                .estimated_duration_ms = -1};
        assert_int_equal(pgstore_run_start(a, e1, run2, &start), 0);

        /* Another replica takes over. */
        assert_int_equal(pgstore_epoch_bump(b, "pod-b_2", &e2), 0);
        assert_int_equal(e2, 2);
        assert_int_equal(pgstore_epoch_get(a, &e1, holder), 0);
        assert_int_equal(e1, 2);
        assert_string_equal(holder, "pod-b_2");
        e1 = 1;

        /* Every write of the old epoch is refused as deposed, and changes nothing. */
        assert_int_equal(pgstore_run_claim(a, e1, "pod-a_1", 2, T0, 0, -1, &cr, NULL), -ESTALE);
        assert_non_null(strstr(pgstore_errstr(), "deposed"));
        assert_int_equal(pgstore_run_start(a, e1, run, &start), -ESTALE);
        const struct pgstore_run_finish fin = {.state = PGSTORE_RUN_SUCCEEDED,
                                               .finished_at = T0 + 60 * USEC_PER_SEC,
                                               .rdb_saves_after = 5,
                                               .lastsave_after = 1764583260,
                                               .used_memory = -1,
                                               .actual_duration_ms = 55000};
        assert_int_equal(pgstore_run_finish(a, e1, run2, &fin), -ESTALE);
        assert_int_equal(pgstore_run_adopt(a, e1, "pod-a_1", run), -ESTALE);
        const struct pgstore_run_new persist = {
            .kind = PGSTORE_RUN_PERSIST, .instance_id = "redis-a", .estimated_duration_ms = -1};
        assert_int_equal(pgstore_run_create(a, e1, "pod-a_1", &persist, &got, NULL), -ESTALE);
        int64_t pass;
        assert_int_equal(pgstore_pass_create(a, e1, "pod-a_1", "2026-12-01", 2, T0, &pass),
                         -ESTALE);
        assert_int_equal(sql_int(&d, "SELECT count(*) FROM runs"), 2);
        assert_int_equal(sql_int(&d, "SELECT count(*) FROM runs WHERE state = 'claimed'"), 1);

        /* The new leader finds what the old one left, adopts it and finishes it. */
        struct pgstore_run *stale = NULL;
        size_t n = 0;
        assert_int_equal(pgstore_runs_stale(b, e2, &stale, &n), 0);
        assert_int_equal(n, 2);
        assert_int_equal(stale[0].id, run);
        assert_int_equal(stale[0].state, PGSTORE_RUN_CLAIMED);
        assert_int_equal(stale[1].id, run2);
        assert_int_equal(stale[1].state, PGSTORE_RUN_RUNNING);
        assert_int_equal(stale[1].rdb_saves_before, 4);
        assert_int_equal(stale[1].lastsave_before, 1764580000);
        assert_int_equal(stale[1].started_at, T0 + 5);
        free(stale);
        /* Not yet adopted: the new epoch cannot finish (or restart) it either. */
        assert_int_equal(pgstore_run_finish(b, e2, run2, &fin), -EALREADY);
        const struct pgstore_run_start restart = {.started_at = T0 + 9 * USEC_PER_SEC,
                                                  .rdb_saves_before = 4,
                                                  .lastsave_before = 1764580000,
                                                  .used_memory = 2 << 20,
                                                  .estimated_duration_ms = -1};
        assert_int_equal(pgstore_run_start(b, e2, run2, &restart), -EALREADY);
        assert_int_equal(pgstore_run_adopt(b, e2, "pod-b_2", run2), 0);
        assert_int_equal(pgstore_run_adopt(b, e2, "pod-b_2", run2), -EALREADY);
        /* Adopted, and nothing had reached the instance: the adopter starts it again, and the
         * row says when its save really started. */
        assert_int_equal(pgstore_run_start(b, e2, run2, &restart), 0);
        assert_int_equal(pgstore_run_get(b, run2, &got), 0);
        assert_int_equal(got.started_at, T0 + 9 * USEC_PER_SEC);
        assert_int_equal(got.used_memory, 2 << 20);
        assert_int_equal(pgstore_run_finish(b, e2, run2, &fin), 0);
        assert_int_equal(pgstore_run_finish(b, e2, run2, &fin), -EALREADY);
        assert_int_equal(pgstore_run_get(b, run2, &got), 0);
        assert_int_equal(got.state, PGSTORE_RUN_SUCCEEDED);
        assert_int_equal(got.epoch, e2);
        assert_string_equal(got.leader_identity, "pod-b_2");
        assert_int_equal(got.rdb_saves_after, 5);
        assert_int_equal(got.actual_duration_ms, 55000);
        assert_int_equal(got.finished_at, T0 + 60 * USEC_PER_SEC);
        assert_int_equal(pgstore_run_adopt(b, e2, "pod-b_2", run), 0);
        const struct pgstore_run_finish missed = {.state = PGSTORE_RUN_MISSED,
                                                  .error = "starting deadline passed",
                                                  .finished_at = T0 + HOUR_US,
                                                  .rdb_saves_after = -1,
                                                  .lastsave_after = -1,
                                                  .used_memory = -1,
                                                  .actual_duration_ms = -1};
        assert_int_equal(pgstore_run_finish(b, e2, run, &missed), 0);
        const struct pgstore_run_finish not_final = {.state = PGSTORE_RUN_RUNNING};
        assert_int_equal(pgstore_run_finish(b, e2, run, &not_final), -EINVAL);
        assert_int_equal(pgstore_run_finish(b, e2, 12345, &fin), -ENOENT);
        assert_int_equal(pgstore_run_start(b, e2, 12345, &start), -ENOENT);
        n = 1;
        assert_int_equal(pgstore_runs_stale(b, e2, &stale, &n), 0);
        assert_int_equal(n, 0);
        free(stale);

        /* Claim of a missing task. */
        assert_int_equal(pgstore_run_claim(b, e2, "pod-b_2", 99, T0, 0, -1, &cr, NULL), -ENOENT);

        /* Passes: fenced the same way; a new leader continues the pass under its epoch. Its
         * times are the caller's (the schedule clock, here far from PostgreSQL's now()). */
        const int64_t started = T0 + 60 * USEC_PER_SEC, ended = T0 + 300 * USEC_PER_SEC;
        assert_int_equal(pgstore_pass_create(b, e2, "pod-b_2", "2026-12-01", 2, started, &pass), 0);
        assert_int_equal(pgstore_pass_update(b, e2, "pod-b_2", pass, PGSTORE_PASS_RUNNING, 2, 1, 0,
                                             0, T0 + HOUR_US, started + USEC_PER_SEC),
                         0);
        int64_t e3;
        assert_int_equal(pgstore_epoch_bump(a, "pod-a_3", &e3), 0);
        assert_int_equal(pgstore_pass_update(b, e2, "pod-b_2", pass, PGSTORE_PASS_FINISHED, 2, 2, 0,
                                             0, 0, ended),
                         -ESTALE);
        assert_int_equal(pgstore_pass_update(a, e3, "pod-a_3", pass, PGSTORE_PASS_FINISHED, 2, 1, 1,
                                             0, 0, ended),
                         0);
        assert_int_equal(pgstore_pass_update(a, e3, "pod-a_3", pass, PGSTORE_PASS_FINISHED, 2, 2, 1,
                                             0, 0, ended),
                         -EINVAL);
        assert_int_equal(
            pgstore_pass_update(a, e3, "pod-a_3", 999, PGSTORE_PASS_FINISHED, 2, 2, 0, 0, 0, ended),
            -ENOENT);
        struct pgstore_pass p;
        assert_int_equal(pgstore_pass_by_date(a, "2026-12-01", &p), 0);
        assert_int_equal(p.id, pass);
        assert_int_equal(p.state, PGSTORE_PASS_FINISHED);
        assert_int_equal(p.done, 1);
        assert_int_equal(p.failed, 1);
        assert_int_equal(p.epoch, e3);
        assert_int_equal(p.started_at, started);
        assert_int_equal(p.updated_at, ended);
        assert_int_equal(p.finished_at, ended);
        assert_string_equal(p.pass_date, "2026-12-01");
        /* An update after the end keeps the first finished_at. */
        assert_int_equal(pgstore_pass_update(a, e3, "pod-a_3", pass, PGSTORE_PASS_FINISHED, 2, 1, 1,
                                             0, 0, ended + USEC_PER_SEC),
                         0);
        assert_int_equal(pgstore_pass_by_date(a, "2026-12-01", &p), 0);
        assert_int_equal(p.finished_at, ended);
        assert_int_equal(pgstore_pass_latest(a, &p), 0);
        assert_int_equal(p.id, pass);
        assert_int_equal(pgstore_pass_by_date(a, "2026-12-02", &p), -ENOENT);
        pgstore_free(a);
        pgstore_free(b);
        db_close(&d);
}

/*
 * The race the share lock exists for: an old leader keeps claiming while a new one bumps the
 * epoch and immediately looks for the old epoch's runs. Every claim the old leader was told
 * succeeded must be among what the new leader found; after the bump, no claim succeeds.
 */
struct race {
        const char *dsn;
        int64_t epoch;
        atomic_int claimed;
        atomic_bool started;
        int end_r;
};

static void *old_leader_main(void *arg)
{
        struct race *r = arg;
        struct pgstore *s = store_for(r->dsn);
        enum pgstore_claim_result cr;

        for (int64_t i = 0;; i++) {
                int k = pgstore_run_claim(s, r->epoch, "old", 1, T0 + i * USEC_PER_SEC, 0, -1, &cr,
                                          NULL);
                if (k < 0) {
                        r->end_r = k;
                        break;
                }
                assert_int_equal(cr, PGSTORE_CLAIMED);
                atomic_fetch_add(&r->claimed, 1);
                atomic_store(&r->started, true);
        }
        pgstore_free(s);
        return NULL;
}

static void test_fencing_race_with_a_bump(void **state)
{
        struct db d;
        pthread_t th;

        db_open(&d, "race", true);
        for (int round = 0; round < 5; round++) {
                struct pgstore *newer = store_for(d.dsn);
                struct race r = {.dsn = d.dsn};
                int64_t e_new;
                assert_int_equal(pgstore_epoch_bump(newer, "old", &r.epoch), 0);
                th_pg_exec(d.sql, "DELETE FROM runs");
                assert_int_equal(pthread_create(&th, NULL, old_leader_main, &r), 0);
                while (!atomic_load(&r.started))
                        clock_sleep_us(1000);
                clock_sleep_us((round + 1) * 3000);
                assert_int_equal(pgstore_epoch_bump(newer, "new", &e_new), 0);
                struct pgstore_run *stale = NULL;
                size_t n = 0;
                assert_int_equal(pgstore_runs_stale(newer, e_new, &stale, &n), 0);
                free(stale);
                pthread_join(th, NULL);
                assert_int_equal(r.end_r, -ESTALE);
                assert_int_equal((int)n, atomic_load(&r.claimed));
                pgstore_free(newer);
        }
        db_close(&d);
}

/*
 * The same for finishes: the old leader finishes its runs one by one while the new leader bumps
 * and lists what is left. Each run is either finished by the old leader (told 0) or left for the
 * new one (the old leader told -ESTALE) — never both, never neither.
 */
struct finisher {
        const char *dsn;
        int64_t epoch;
        int64_t *runs;
        int n;
        atomic_int finished;
        atomic_bool started;
        int64_t *finished_ids;
};

static void *finisher_main(void *arg)
{
        struct finisher *f = arg;
        struct pgstore *s = store_for(f->dsn);
        const struct pgstore_run_finish fin = {.state = PGSTORE_RUN_SUCCEEDED,
                                               .finished_at = T0 + HOUR_US,
                                               .rdb_saves_after = -1,
                                               .lastsave_after = -1,
                                               .used_memory = -1,
                                               .actual_duration_ms = -1};
        for (int i = 0; i < f->n; i++) {
                int r = pgstore_run_finish(s, f->epoch, f->runs[i], &fin);
                atomic_store(&f->started, true);
                if (r == -ESTALE)
                        break;
                assert_int_equal(r, 0);
                f->finished_ids[atomic_fetch_add(&f->finished, 1)] = f->runs[i];
        }
        pgstore_free(s);
        return NULL;
}

static void test_finish_race_with_a_bump(void **state)
{
        enum { N = 300 };
        struct db d;
        int64_t runs[N], finished_ids[N], e_old, e_new;
        enum pgstore_claim_result cr;
        pthread_t th;

        db_open(&d, "finrace", true);
        struct pgstore *s = store_for(d.dsn);
        assert_int_equal(pgstore_epoch_bump(s, "old", &e_old), 0);
        for (int i = 0; i < N; i++)
                assert_int_equal(pgstore_run_claim(s, e_old, "old", 1, T0 + i * USEC_PER_SEC, 0, -1,
                                                   &cr, &runs[i]),
                                 0);
        struct finisher f = {
            .dsn = d.dsn, .epoch = e_old, .runs = runs, .n = N, .finished_ids = finished_ids};
        assert_int_equal(pthread_create(&th, NULL, finisher_main, &f), 0);
        while (!atomic_load(&f.started))
                clock_sleep_us(1000);
        clock_sleep_us(5000);
        assert_int_equal(pgstore_epoch_bump(s, "new", &e_new), 0);
        struct pgstore_run *stale = NULL;
        size_t n = 0;
        assert_int_equal(pgstore_runs_stale(s, e_new, &stale, &n), 0);
        pthread_join(th, NULL);
        int done = atomic_load(&f.finished);
        assert_int_equal(done + (int)n, N);
        for (size_t i = 0; i < n; i++)
                for (int k = 0; k < done; k++)
                        assert_true(stale[i].id != finished_ids[k]);
        free(stale);
        pgstore_free(s);
        db_close(&d);
}

/* ---- claims under concurrency --------------------------------------------------------------- */

struct claimer {
        const char *dsn;
        int64_t epoch;
        pthread_barrier_t *barrier;
        int slots;
        int won[32];
};

static void *claimer_main(void *arg)
{
        struct claimer *c = arg;
        struct pgstore *s = store_for(c->dsn);
        assert_int_equal(pgstore_connect(s), 0);
        for (int i = 0; i < c->slots; i++) {
                enum pgstore_claim_result cr;
                pthread_barrier_wait(c->barrier);
                assert_int_equal(pgstore_run_claim(s, c->epoch, "leader", 1,
                                                   T0 + i * 60 * USEC_PER_SEC, 0, -1, &cr, NULL),
                                 0);
                c->won[i] = cr == PGSTORE_CLAIMED;
        }
        pgstore_free(s);
        return NULL;
}

static void test_claim_exactly_once_under_concurrency(void **state)
{
        enum { N = 6, SLOTS = 20 };
        struct claimer c[N];
        pthread_t th[N];
        pthread_barrier_t barrier;
        struct db d;
        int64_t epoch;

        db_open(&d, "claim", true);
        struct pgstore *s = store_for(d.dsn);
        assert_int_equal(pgstore_epoch_bump(s, "leader", &epoch), 0);
        pthread_barrier_init(&barrier, NULL, N);
        for (int i = 0; i < N; i++) {
                c[i] = (struct claimer){
                    .dsn = d.dsn, .epoch = epoch, .barrier = &barrier, .slots = SLOTS};
                assert_int_equal(pthread_create(&th[i], NULL, claimer_main, &c[i]), 0);
        }
        for (int i = 0; i < N; i++)
                pthread_join(th[i], NULL);
        pthread_barrier_destroy(&barrier);
        for (int slot = 0; slot < SLOTS; slot++) {
                int winners = 0;
                for (int i = 0; i < N; i++)
                        winners += c[i].won[slot];
                assert_int_equal(winners, 1);
        }
        assert_int_equal(sql_int(&d, "SELECT count(*) FROM runs"), SLOTS);

        /* Slots of the hour, [from, to): the boundary at `to` is excluded. */
        struct pgstore_slot *slots = NULL;
        size_t n = 0;
        assert_int_equal(pgstore_runs_slots(s, T0, T0 + 10 * 60 * USEC_PER_SEC, &slots, &n), 0);
        assert_int_equal(n, 10);
        assert_int_equal(slots[0].scheduled_for, T0);
        assert_int_equal(slots[9].scheduled_for, T0 + 9 * 60 * USEC_PER_SEC);
        assert_int_equal(slots[0].task_id, 1);
        assert_int_equal(slots[0].epoch, epoch);
        assert_int_equal(slots[0].state, PGSTORE_RUN_CLAIMED);
        free(slots);
        assert_int_equal(pgstore_runs_slots(s, T0 - HOUR_US, T0, &slots, &n), 0);
        assert_int_equal(n, 0);
        free(slots);
        pgstore_free(s);
        db_close(&d);
}

/* ---- request ids ------------------------------------------------------------------------------
 */

static void test_request_id_returns_the_existing_run(void **state)
{
        struct db d;
        int64_t epoch;
        struct pgstore_run r1, r2, r3;
        bool existed = true;

        db_open(&d, "reqid", true);
        struct pgstore *s = store_for(d.dsn);
        assert_int_equal(pgstore_epoch_bump(s, "leader", &epoch), 0);
        struct pgstore_run_new req = {.kind = PGSTORE_RUN_PERSIST,
                                      .instance_id = "redis-a",
                                      .request_id = "prestop-cache-0-1",
                                      .planned_start = T0,
                                      .estimated_duration_ms = 2000};
        assert_int_equal(pgstore_run_create(s, epoch, "leader", &req, &r1, &existed), 0);
        assert_false(existed);
        assert_int_equal(r1.kind, PGSTORE_RUN_PERSIST);
        assert_int_equal(r1.state, PGSTORE_RUN_CLAIMED);
        assert_string_equal(r1.request_id, "prestop-cache-0-1");
        assert_int_equal(r1.estimated_duration_ms, 2000);
        assert_int_equal(r1.task_id, 0);
        assert_int_equal(pgstore_run_create(s, epoch, "leader", &req, &r2, &existed), 0);
        assert_true(existed);
        assert_int_equal(r2.id, r1.id);
        /* The same request id for another instance of a multi-target request is its own run. */
        req.instance_id = "redis-b";
        assert_int_equal(pgstore_run_create(s, epoch, "leader", &req, &r3, &existed), 0);
        assert_false(existed);
        assert_true(r3.id != r1.id);
        /* A repeat after a leader change still finds the first run (whatever its epoch). */
        int64_t e2;
        assert_int_equal(pgstore_epoch_bump(s, "leader2", &e2), 0);
        req.instance_id = "redis-a";
        assert_int_equal(pgstore_run_create(s, e2, "leader2", &req, &r2, &existed), 0);
        assert_true(existed);
        assert_int_equal(r2.id, r1.id);
        assert_int_equal(r2.epoch, epoch);
        /* Without a request id every call is a new run; a nightly run with its pass. */
        int64_t pass;
        assert_int_equal(pgstore_pass_create(s, e2, "leader2", "2026-12-01", 2, T0, &pass), 0);
        const struct pgstore_run_new nightly = {.kind = PGSTORE_RUN_NIGHTLY,
                                                .instance_id = "redis-a",
                                                .pass_id = pass,
                                                .estimated_duration_ms = -1};
        assert_int_equal(pgstore_run_create(s, e2, "leader2", &nightly, &r1, NULL), 0);
        assert_int_equal(pgstore_run_create(s, e2, "leader2", &nightly, &r2, NULL), 0);
        assert_true(r1.id != r2.id);
        assert_int_equal(r1.pass_id, pass);
        assert_int_equal(r1.estimated_duration_ms, -1);
        /* Bad input names its field. */
        struct pgstore_run_new bad = nightly;
        bad.kind = PGSTORE_RUN_SCHEDULED;
        assert_int_equal(pgstore_run_create(s, e2, "leader2", &bad, &r1, NULL), -EINVAL);
        assert_true(strncmp(pgstore_errstr(), "kind: ", 6) == 0);
        bad = nightly;
        bad.instance_id = "nope";
        assert_int_equal(pgstore_run_create(s, e2, "leader2", &bad, &r1, NULL), -EINVAL);
        assert_string_equal(pgstore_errstr(), "instance_id: no such instance");
        pgstore_free(s);
        db_close(&d);
}

/* ---- queries ----------------------------------------------------------------------------------
 */

static int64_t finished_run(struct pgstore *s, int64_t epoch, const char *instance,
                            enum pgstore_run_kind kind, enum pgstore_run_state state,
                            int64_t finished_at)
{
        const struct pgstore_run_new n = {
            .kind = kind, .instance_id = instance, .estimated_duration_ms = -1};
        struct pgstore_run r;
        assert_int_equal(pgstore_run_create(s, epoch, "leader", &n, &r, NULL), 0);
        const struct pgstore_run_start st = {.started_at = finished_at - USEC_PER_SEC,
                                             .rdb_saves_before = -1,
                                             .lastsave_before = -1,
                                             .used_memory = -1,
                                             .estimated_duration_ms = -1};
        assert_int_equal(pgstore_run_start(s, epoch, r.id, &st), 0);
        const struct pgstore_run_finish f = {.state = state,
                                             .finished_at = finished_at,
                                             .rdb_saves_after = -1,
                                             .lastsave_after = -1,
                                             .used_memory = -1,
                                             .actual_duration_ms = 1000};
        assert_int_equal(pgstore_run_finish(s, epoch, r.id, &f), 0);
        return r.id;
}

static void test_last_success_and_paging(void **state)
{
        struct db d;
        int64_t epoch, ids[25];
        struct pgstore_run r, *page = NULL;
        size_t n;

        db_open(&d, "query", true);
        struct pgstore *s = store_for(d.dsn);
        assert_int_equal(pgstore_epoch_bump(s, "leader", &epoch), 0);
        assert_int_equal(pgstore_last_success(s, "redis-a", &r), -ENOENT);
        int64_t old_ok =
            finished_run(s, epoch, "redis-a", PGSTORE_RUN_MANUAL, PGSTORE_RUN_SUCCEEDED, T0);
        int64_t new_ok = finished_run(s, epoch, "redis-a", PGSTORE_RUN_PERSIST,
                                      PGSTORE_RUN_SUCCEEDED, T0 + HOUR_US);
        (void)finished_run(s, epoch, "redis-a", PGSTORE_RUN_PERSIST, PGSTORE_RUN_FAILED,
                           T0 + 2 * HOUR_US);
        (void)finished_run(s, epoch, "redis-b", PGSTORE_RUN_PERSIST, PGSTORE_RUN_SUCCEEDED,
                           T0 + 3 * HOUR_US);
        assert_int_equal(pgstore_last_success(s, "redis-a", &r), 0);
        assert_int_equal(r.id, new_ok);
        assert_true(r.id != old_ok);
        assert_int_equal(r.finished_at, T0 + HOUR_US);

        th_pg_exec(d.sql, "DELETE FROM runs");
        for (int i = 0; i < 25; i++)
                ids[i] = finished_run(s, epoch, i % 2 ? "redis-b" : "redis-a",
                                      i % 5 == 0 ? PGSTORE_RUN_NIGHTLY : PGSTORE_RUN_PERSIST,
                                      i % 3 == 0 ? PGSTORE_RUN_FAILED : PGSTORE_RUN_SUCCEEDED,
                                      T0 + i * USEC_PER_SEC);

        /* Pages of 10, newest first, no gap and no repeat. */
        struct pgstore_run_filter f = {.kind = -1, .state = -1, .limit = 10};
        int seen = 0;
        for (int pg = 0; pg < 4; pg++) {
                assert_int_equal(pgstore_runs_query(s, &f, &page, &n), 0);
                assert_int_equal(n, pg < 2 ? 10 : pg == 2 ? 5 : 0);
                for (size_t i = 0; i < n; i++)
                        assert_int_equal(page[i].id, ids[24 - seen++]);
                if (n > 0)
                        f.before_id = page[n - 1].id;
                free(page);
        }
        assert_int_equal(seen, 25);

        /* Filters combine. */
        f = (struct pgstore_run_filter){.kind = PGSTORE_RUN_PERSIST,
                                        .state = PGSTORE_RUN_SUCCEEDED,
                                        .instance_id = "redis-a",
                                        .limit = 100};
        assert_int_equal(pgstore_runs_query(s, &f, &page, &n), 0);
        int expect = 0;
        for (int i = 0; i < 25; i++)
                expect += i % 2 == 0 && i % 5 != 0 && i % 3 != 0;
        assert_int_equal((int)n, expect);
        for (size_t i = 0; i < n; i++) {
                assert_string_equal(page[i].instance_id, "redis-a");
                assert_int_equal(page[i].kind, PGSTORE_RUN_PERSIST);
                assert_int_equal(page[i].state, PGSTORE_RUN_SUCCEEDED);
        }
        free(page);
        /* Time range on claimed_at: all of them were claimed just now. */
        f = (struct pgstore_run_filter){.kind = -1, .state = -1, .to = clock_wall_us() - HOUR_US};
        assert_int_equal(pgstore_runs_query(s, &f, &page, &n), 0);
        assert_int_equal(n, 0);
        free(page);
        f.limit = 1001;
        assert_int_equal(pgstore_runs_query(s, &f, &page, &n), -EINVAL);
        pgstore_free(s);
        db_close(&d);
}

static void test_retention_deletes_old_final_runs_in_batches(void **state)
{
        struct db d;
        int deleted, total = 0, calls = 0;

        db_open(&d, "retention", true);
        th_pg_exec(d.sql, "INSERT INTO runs (instance_id, kind, state, epoch, leader_identity,"
                          " claimed_at, finished_at)"
                          " SELECT 'redis-a', 'persist', 'succeeded', 1, 'x',"
                          "   now() - interval '40 days', now() - interval '40 days'"
                          " FROM generate_series(1, 7)");
        th_pg_exec(d.sql, "INSERT INTO runs (instance_id, kind, state, epoch, leader_identity,"
                          " claimed_at, started_at) VALUES ('redis-a', 'persist', 'running', 1,"
                          " 'x', now() - interval '40 days', now() - interval '40 days')");
        th_pg_exec(d.sql, "INSERT INTO runs (instance_id, kind, state, epoch, leader_identity,"
                          " claimed_at, finished_at)"
                          " SELECT 'redis-b', 'persist', 'failed', 1, 'x',"
                          "   now() - interval '10 days', now() - interval '10 days'"
                          " FROM generate_series(1, 4)");
        struct pgstore *s = store_for(d.dsn);
        do {
                assert_int_equal(pgstore_runs_delete_older(s, 30 * 86400, 3, &deleted), 0);
                assert_true(deleted <= 3);
                total += deleted;
                calls++;
        } while (deleted == 3);
        assert_int_equal(total, 7);
        assert_int_equal(calls, 3);
        assert_int_equal(sql_int(&d, "SELECT count(*) FROM runs"), 5);
        assert_int_equal(sql_int(&d, "SELECT count(*) FROM runs WHERE state = 'running'"), 1);
        assert_int_equal(pgstore_runs_delete_older(s, 30 * 86400, 0, &deleted), -EINVAL);
        pgstore_free(s);
        db_close(&d);
}

/* ---- connection loss --------------------------------------------------------------------------
 */

static void test_connection_loss_and_unreachable_server(void **state)
{
        struct db d;
        int64_t epoch;
        enum pgstore_claim_result cr;

        db_open(&d, "conn", true);
        struct pgstore *s = store_for(d.dsn);
        assert_int_equal(pgstore_epoch_bump(s, "leader", &epoch), 0);
        assert_true(pgstore_is_connected(s));
        /* Only this test's database: the other tests share the cluster. */
        th_pg_exec(d.sql, "SELECT pg_terminate_backend(pid) FROM pg_stat_activity"
                          " WHERE application_name = 'persistd' AND pid <> pg_backend_pid()"
                          " AND datname = current_database()");
        /* The call that meets the dead connection fails (outcome unknown); the next reconnects. */
        int r = pgstore_run_claim(s, epoch, "leader", 1, T0, 0, -1, &cr, NULL);
        assert_int_equal(r, -ENOTCONN);
        assert_false(pgstore_is_connected(s));
        assert_int_equal(pgstore_run_claim(s, epoch, "leader", 1, T0, 0, -1, &cr, NULL), 0);
        assert_int_equal(cr, PGSTORE_CLAIMED);
        assert_true(pgstore_is_connected(s));
        pgstore_free(s);

        /* Nothing listens there: calls fail at once, the password never shows. */
        char dsn[160];
        snprintf(dsn, sizeof(dsn),
                 "host=127.0.0.1 port=%u dbname=x user=u password=Hunter2Secret connect_timeout=2",
                 th_free_port());
        s = store_for(dsn);
        assert_int_equal(pgstore_ping(s), -ENOTCONN);
        assert_false(pgstore_is_connected(s));
        assert_null(strstr(pgstore_errstr(), "Hunter2Secret"));
        assert_non_null(strstr(pgstore_errstr(), "connect"));
        int64_t t = clock_mono_us();
        assert_int_equal(pgstore_run_claim(s, 1, "leader", 1, T0, 0, -1, &cr, NULL), -ENOTCONN);
        assert_true(clock_mono_us() - t < 1500 * 1000); /* backoff: no new 2 s connect attempt */
        assert_non_null(strstr(pgstore_errstr(), "next attempt"));
        assert_null(strstr(pgstore_errstr(), "Hunter2Secret"));
        assert_int_equal(pgstore_migrate(s, NULL, NULL), -ENOTCONN);
        assert_null(strstr(pgstore_errstr(), "Hunter2Secret"));
        pgstore_free(s);
        db_close(&d);
}

int main(void)
{
        const struct CMUnitTest tests[] = {
            cmocka_unit_test(test_migrate_from_empty_then_idempotent),
            cmocka_unit_test(test_migrate_concurrently_applies_once),
            cmocka_unit_test(test_migrate_refuses_newer_schema),
            cmocka_unit_test(test_constraints_reject_bad_rows),
            cmocka_unit_test(test_task_crud_and_field_errors),
            cmocka_unit_test(test_tasks_foreach_and_invalid_flags),
            cmocka_unit_test(test_instances_read_and_learned_values),
            cmocka_unit_test(test_epoch_fences_every_write),
            cmocka_unit_test(test_fencing_race_with_a_bump),
            cmocka_unit_test(test_finish_race_with_a_bump),
            cmocka_unit_test(test_claim_exactly_once_under_concurrency),
            cmocka_unit_test(test_request_id_returns_the_existing_run),
            cmocka_unit_test(test_last_success_and_paging),
            cmocka_unit_test(test_retention_deletes_old_final_runs_in_batches),
            cmocka_unit_test(test_connection_loss_and_unreachable_server),
        };
        return cmocka_run_group_tests(tests, NULL, NULL);
}
