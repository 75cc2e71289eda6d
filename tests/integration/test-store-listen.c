/* SPDX-License-Identifier: Apache-2.0 */
/*
 * Change notifications as the leader sees them: rows changed in plain SQL from another
 * connection arrive within 5 s, persistd's own bookkeeping writes do not echo back, a TRUNCATE
 * and the periodic timer ask for a resync, and the listener survives its backend being killed.
 * Also `persistd migrate` end to end.
 */
#include <errno.h>
#include <pthread.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>

#include <cmocka.h>

#include "core/clock.h"
#include "core/util.h"
#include "harness.h"
#include "store/pgstore.h"

#define DEADLINE_US (5 * USEC_PER_SEC)

struct events {
        pthread_mutex_t lock;
        char log[4096]; /* "table op id\n" per change */
        int resyncs;
};

static void on_change(const char *table, const char *op, const char *id, void *userdata)
{
        struct events *ev = userdata;
        pthread_mutex_lock(&ev->lock);
        size_t n = strlen(ev->log);
        snprintf(ev->log + n, sizeof(ev->log) - n, "%s %s %s\n", table, op, id);
        pthread_mutex_unlock(&ev->lock);
}

static void on_resync(void *userdata)
{
        struct events *ev = userdata;
        pthread_mutex_lock(&ev->lock);
        ev->resyncs++;
        pthread_mutex_unlock(&ev->lock);
}

static bool has_event(struct events *ev, const char *line)
{
        pthread_mutex_lock(&ev->lock);
        bool found = strstr(ev->log, line) != NULL;
        pthread_mutex_unlock(&ev->lock);
        return found;
}

static int resyncs(struct events *ev)
{
        pthread_mutex_lock(&ev->lock);
        int n = ev->resyncs;
        pthread_mutex_unlock(&ev->lock);
        return n;
}

/* Wait up to 5 s for `line` ("tasks INSERT 1\n"). */
static bool wait_event(struct events *ev, const char *line)
{
        int64_t end = clock_mono_us() + DEADLINE_US;
        while (clock_mono_us() < end) {
                if (has_event(ev, line))
                        return true;
                clock_sleep_us(20 * 1000);
        }
        return false;
}

static bool wait_resyncs(struct events *ev, int at_least, int64_t timeout_us)
{
        int64_t end = clock_mono_us() + timeout_us;
        while (clock_mono_us() < end) {
                if (resyncs(ev) >= at_least)
                        return true;
                clock_sleep_us(20 * 1000);
        }
        return false;
}

static void clear_events(struct events *ev)
{
        pthread_mutex_lock(&ev->lock);
        ev->log[0] = '\0';
        pthread_mutex_unlock(&ev->lock);
}

struct fixture {
        char *db, *dsn;
        PGconn *sql;
        struct events ev;
        struct pgstore *store;
        struct pgstore_listener *listener;
};

static void fixture_open(struct fixture *f, const char *tag, int resync_s)
{
        memset(f, 0, sizeof(*f));
        pthread_mutex_init(&f->ev.lock, NULL);
        f->db = th_pg_create_db(tag);
        f->dsn = th_pg_dsn(f->db);
        f->sql = th_pg_connect(f->db);
        const struct pgstore_options o = {.dsn = f->dsn, .connect_timeout_s = 5};
        f->store = pgstore_new(&o);
        assert_non_null(f->store);
        assert_int_equal(pgstore_migrate(f->store, NULL, NULL), 0);
        const struct pgstore_listener_callbacks cb = {
            .change = on_change, .resync = on_resync, .userdata = &f->ev};
        f->listener = pgstore_listener_new(&o, resync_s, &cb);
        assert_non_null(f->listener);
        /* Connected once the first resync (the one after connecting) has been delivered. */
        assert_true(wait_resyncs(&f->ev, 1, DEADLINE_US));
        assert_true(pgstore_listener_is_connected(f->listener));
}

static void fixture_close(struct fixture *f)
{
        pgstore_listener_free(f->listener);
        pgstore_free(f->store);
        PQfinish(f->sql);
        free(f->db);
        free(f->dsn);
        pthread_mutex_destroy(&f->ev.lock);
}

static void test_sql_changes_arrive_within_5s(void **state)
{
        struct fixture f;

        fixture_open(&f, "listen", 3600);
        th_pg_exec(f.sql, "INSERT INTO instances (id, host, pool) VALUES ('redis-a', 'h', 'ssd')");
        assert_true(wait_event(&f.ev, "instances INSERT redis-a\n"));
        th_pg_exec(f.sql,
                   "INSERT INTO tasks (instance_id, schedule) VALUES ('redis-a', '* * * * *')");
        assert_true(wait_event(&f.ev, "tasks INSERT 1\n"));
        th_pg_exec(f.sql, "UPDATE tasks SET schedule = '*/2 * * * *' WHERE id = 1");
        assert_true(wait_event(&f.ev, "tasks UPDATE 1\n"));
        th_pg_exec(f.sql, "UPDATE instances SET pool = 'hdd' WHERE id = 'redis-a'");
        assert_true(wait_event(&f.ev, "instances UPDATE redis-a\n"));

        /* persistd's own bookkeeping is not a definition change: no echo. */
        clear_events(&f.ev);
        assert_int_equal(pgstore_task_set_invalid(f.store, 1, "schedule: bad"), 0);
        assert_int_equal(pgstore_instance_set_estimates(f.store, "redis-a", 1e8, 20, 1), 0);
        /* A marker change after them: once it arrives, anything earlier would have too. */
        th_pg_exec(f.sql, "UPDATE tasks SET description = 'marker' WHERE id = 1");
        assert_true(wait_event(&f.ev, "tasks UPDATE 1\n"));
        pthread_mutex_lock(&f.ev.lock);
        assert_string_equal(f.ev.log, "tasks UPDATE 1\n");
        pthread_mutex_unlock(&f.ev.lock);

        /* Deleting an instance cascades to its tasks: both are told. */
        th_pg_exec(f.sql, "DELETE FROM instances WHERE id = 'redis-a'");
        assert_true(wait_event(&f.ev, "instances DELETE redis-a\n"));
        assert_true(wait_event(&f.ev, "tasks DELETE 1\n"));

        int before = resyncs(&f.ev);
        th_pg_exec(f.sql, "TRUNCATE tasks CASCADE");
        assert_true(wait_resyncs(&f.ev, before + 1, DEADLINE_US));
        fixture_close(&f);
}

static void test_periodic_resync(void **state)
{
        struct fixture f;

        fixture_open(&f, "resync", 1);
        int before = resyncs(&f.ev);
        assert_true(wait_resyncs(&f.ev, before + 2, 10 * USEC_PER_SEC));
        fixture_close(&f);
}

static void test_listener_survives_a_killed_backend(void **state)
{
        struct fixture f;

        fixture_open(&f, "kill", 3600);
        assert_int_equal(pgstore_listener_connects(f.listener), 1);
        int before = resyncs(&f.ev);
        /* Only this test's database: the other tests (and their listeners) share the cluster. */
        char *killed = th_pg_value(f.sql, "SELECT count(pg_terminate_backend(pid))"
                                          " FROM pg_stat_activity"
                                          " WHERE application_name = 'persistd-listener'"
                                          " AND datname = current_database()");
        assert_string_equal(killed, "1");
        free(killed);
        /* It reconnects, and resyncs because changes may have been missed meanwhile. */
        int64_t end = clock_mono_us() + 10 * USEC_PER_SEC;
        while (pgstore_listener_connects(f.listener) < 2 && clock_mono_us() < end)
                clock_sleep_us(20 * 1000);
        assert_int_equal(pgstore_listener_connects(f.listener), 2);
        assert_true(wait_resyncs(&f.ev, before + 1, DEADLINE_US));
        assert_true(pgstore_listener_is_connected(f.listener));
        th_pg_exec(f.sql, "INSERT INTO instances (id, host, pool) VALUES ('redis-z', 'h', 'ssd')");
        assert_true(wait_event(&f.ev, "instances INSERT redis-z\n"));
        fixture_close(&f);
}

/* ---- persistd migrate ---------------------------------------------------------------------- */

static int run_persistd(const char *dir, const char *const *args, char **out)
{
        char *log, *argv[16];
        size_t n = 0;
        int status, code;
        static int counter;

        assert_true(asprintf(&log, "%s/out-%d.log", dir, counter++) > 0);
        argv[n++] = (char *)th_persistd_path();
        for (size_t i = 0; args[i]; i++)
                argv[n++] = (char *)args[i];
        argv[n] = NULL;
        pid_t pid = th_spawn(argv, NULL, log);
        assert_true(th_wait_exit(pid, 30000, &status));
        assert_int_equal(read_full_file(log, 1 << 20, out, NULL), 0);
        free(log);
        code = WIFEXITED(status) ? WEXITSTATUS(status) : 128 + WTERMSIG(status);
        /* What persistd said, for when the caller's assertion on the code fails. */
        fprintf(stderr, "persistd %s exited %d:\n%s", args[0], code, *out);
        return code;
}

static char *write_file(const char *dir, const char *name, const char *text)
{
        char *path;
        assert_true(asprintf(&path, "%s/%s", dir, name) > 0);
        FILE *fp = fopen(path, "w");
        assert_non_null(fp);
        fputs(text, fp);
        fclose(fp);
        return path;
}

static void test_migrate_verb(void **state)
{
        char *dir = th_tmpdir("migrate");
        char *db = th_pg_create_db("verb");
        char *dsn = th_pg_dsn(db), *yaml, *out;

        assert_true(asprintf(&yaml, "postgres: {dsn: \"%s\"}\n", dsn) > 0);
        char *config = write_file(dir, "persistd.yaml", yaml);
        free(yaml);
        const char *args[] = {"migrate", "-c", config, NULL};
        assert_int_equal(run_persistd(dir, args, &out), 0);
        assert_non_null(strstr(out, "applied migration 1: "));
        assert_non_null(strstr(out, "schema migrated from version 0 to 1"));
        free(out);
        assert_int_equal(run_persistd(dir, args, &out), 0);
        assert_null(strstr(out, "applied migration"));
        assert_non_null(strstr(out, "schema is up to date at version 1"));
        free(out);

        PGconn *c = th_pg_connect(db);
        th_pg_exec(c,
                   "INSERT INTO schema_migrations (version, name) VALUES (42, 'from the future')");
        PQfinish(c);
        assert_int_equal(run_persistd(dir, args, &out), 1);
        assert_non_null(strstr(out, "version 42, newer than this persistd"));
        assert_non_null(strstr(out, "(version 1)"));
        free(out);

        /* An unreachable server, with the password in a DSN secret file: never echoed. */
        assert_true(asprintf(&yaml,
                             "host=127.0.0.1 port=%u dbname=x password=S3cretPw "
                             "connect_timeout=2\n",
                             th_free_port()) > 0);
        char *secret = write_file(dir, "dsn", yaml);
        free(yaml);
        assert_true(asprintf(&yaml, "postgres: {dsn_file: %s, connect_timeout_s: 2}\n", secret) >
                    0);
        char *config2 = write_file(dir, "unreachable.yaml", yaml);
        free(yaml);
        const char *args2[] = {"migrate", "-c", config2, NULL};
        assert_int_equal(run_persistd(dir, args2, &out), 1);
        assert_non_null(strstr(out, "migrate failed: cannot connect to PostgreSQL"));
        assert_null(strstr(out, "S3cretPw"));
        free(out);

        free(secret);
        free(config2);
        free(config);
        free(dsn);
        free(db);
        free(dir);
}

/* Several replicas' `persistd migrate` at once on an empty database: one applies. */
static void test_migrate_verb_concurrent_processes(void **state)
{
        enum { N = 3 };
        char *dir = th_tmpdir("migrate-many");
        char *db = th_pg_create_db("verbs");
        char *dsn = th_pg_dsn(db), *yaml, *logs[N];
        pid_t pids[N];
        int applied = 0, up_to_date = 0;

        assert_true(asprintf(&yaml, "postgres: {dsn: \"%s\"}\n", dsn) > 0);
        char *config = write_file(dir, "persistd.yaml", yaml);
        free(yaml);
        for (int i = 0; i < N; i++) {
                char *argv[] = {(char *)th_persistd_path(), (char *)"migrate", (char *)"-c", config,
                                NULL};
                assert_true(asprintf(&logs[i], "%s/migrate-%d.log", dir, i) > 0);
                pids[i] = th_spawn(argv, NULL, logs[i]);
        }
        for (int i = 0; i < N; i++) {
                int status;
                char *out;
                assert_true(th_wait_exit(pids[i], 30000, &status));
                assert_true(WIFEXITED(status) && WEXITSTATUS(status) == 0);
                assert_int_equal(read_full_file(logs[i], 1 << 20, &out, NULL), 0);
                applied += strstr(out, "applied migration 1: ") != NULL;
                up_to_date += strstr(out, "schema is up to date at version 1") != NULL;
                free(out);
                free(logs[i]);
        }
        assert_int_equal(applied, 1);
        assert_int_equal(up_to_date, N - 1);
        PGconn *c = th_pg_connect(db);
        char *n = th_pg_value(c, "SELECT count(*) FROM schema_migrations");
        assert_string_equal(n, "1");
        free(n);
        PQfinish(c);
        free(config);
        free(dsn);
        free(db);
        free(dir);
}

int main(void)
{
        const struct CMUnitTest tests[] = {
            cmocka_unit_test(test_sql_changes_arrive_within_5s),
            cmocka_unit_test(test_periodic_resync),
            cmocka_unit_test(test_listener_survives_a_killed_backend),
            cmocka_unit_test(test_migrate_verb),
            cmocka_unit_test(test_migrate_verb_concurrent_processes),
        };
        return cmocka_run_group_tests(tests, NULL, NULL);
}
