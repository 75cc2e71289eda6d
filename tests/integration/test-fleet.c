/* SPDX-License-Identifier: Apache-2.0 */
/*
 * The fleet against real PostgreSQL and real redis-servers, leadership driven by the test:
 * scheduled slots with seconds leave succeeded runs with before/after values, an invalid cron row
 * is flagged while the others run, an instance that is down fails its runs with the reason, a
 * task inserted with plain SQL is scheduled through the listener, the schedule clock crosses
 * the preload minute and an hour, a pool's limit holds, fencing deposes, stale runs are
 * reconciled, 100 concurrent persist requests make one BGSAVE, and a new leader sizes its plan
 * from the memory of each instance's last save before it has read any INFO.
 */
#include <errno.h>
#include <inttypes.h>
#include <pthread.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "core/clock.h"
#include "http/metrics.h"
#include "test-fleet-util.h"

struct cond_arg {
        struct fx *x;
        const char *sql;
        long long want;
};

static bool sql_at_least(void *p)
{
        struct cond_arg *a = p;
        return fx_int(a->x, "%s", a->sql) >= a->want;
}

static void wait_sql(struct fx *x, const char *sql, long long want, int timeout_ms)
{
        struct cond_arg a = {x, sql, want};
        if (!fx_wait(sql_at_least, &a, timeout_ms))
                fail_msg("timed out waiting for (%s) >= %lld; it is %lld", sql, want,
                         fx_int(x, "%s", sql));
}

static void test_scheduled_runs(void **state)
{
        struct fx x;
        struct fleet_options o;
        struct fleet *f;

        (void)state;
        fx_open(&x, "fleet_sched", 2, NULL);
        fx_instance(&x, "r1", 0, "p1");
        fx_instance(&x, "r2", 1, "p2");
        fx_instance(&x, "down", -1, "p2");
        fx_sql(&x, "INSERT INTO instances (id, pod_namespace, pod_name, port, pool) VALUES "
                   "('by-pod', 'redis', 'redis-0', 6379, 'p2')");
        fx_sql(&x, "INSERT INTO tasks (instance_id, schedule) VALUES ('r1', '*/2 * * * * *')");
        fx_sql(&x, "INSERT INTO tasks (instance_id, schedule) VALUES ('down', '*/2 * * * * *')");
        fx_sql(&x, "INSERT INTO tasks (instance_id, schedule) VALUES ('r2', '0 61 * * *')");

        /* A final run older than the retention. */
        fx_sql(&x, "INSERT INTO runs (instance_id, kind, action, state, epoch, leader_identity, "
                   "claimed_at, started_at, finished_at) VALUES ('r1', 'persist', 'bgsave', "
                   "'succeeded', 1, 'old', now() - interval '40 days', now() - interval '40 "
                   "days', now() - interval '40 days')");
        fx_options(&o, "fleet-a", 1, 1);
        fx_metrics = metrics_new();
        assert_non_null(fx_metrics);
        f = fx_fleet(&x, &o, NULL, NULL);
        struct pgstore_options lo = {
            .dsn = x.dsn, .connect_timeout_s = 5, .statement_timeout_ms = 10000};
        struct pgstore_listener_callbacks lcb = {
            .change = fleet_listener_change, .resync = fleet_listener_resync, .userdata = f};
        struct pgstore_listener *l = pgstore_listener_new(&lo, 60, &lcb);
        assert_non_null(l);

        fleet_start_leading(f, 1);
        wait_sql(&x, "SELECT count(*) FROM runs WHERE instance_id = 'r1' AND state = 'succeeded'",
                 2, 30000);
        assert_true(fleet_epoch(f) > 0);
        /* Before/after values recorded, and a save did happen. */
        assert_int_equal(fx_int(&x, "SELECT count(*) FROM runs WHERE instance_id = 'r1' AND "
                                    "state = 'succeeded' AND (rdb_saves_before IS NULL OR "
                                    "rdb_saves_after IS NULL OR rdb_saves_after <= "
                                    "rdb_saves_before OR started_at IS NULL OR kind <> "
                                    "'scheduled' OR lastsave_after < lastsave_before)"),
                         0);
        assert_true(fx_rdb_saves(&x, 0) >= 2);
        /* The instance that is down: failed runs with the reason, the others went on. */
        wait_sql(&x,
                 "SELECT count(*) FROM runs WHERE instance_id = 'down' AND state = 'failed' AND "
                 "error <> ''",
                 1, 30000);
        /* The malformed cron is flagged with the parser's message. */
        wait_sql(&x,
                 "SELECT count(*) FROM tasks WHERE instance_id = 'r2' AND invalid_reason LIKE "
                 "'schedule: field 2 (hour)%'",
                 1, 10000);
        assert_int_equal(fx_int(&x, "SELECT count(*) FROM runs WHERE instance_id = 'r2'"), 0);

        /* A task inserted with plain SQL from another connection gets scheduled. */
        fx_sql(&x, "INSERT INTO tasks (instance_id, schedule) VALUES ('r2', '* * * * * *')");
        wait_sql(&x, "SELECT count(*) FROM runs WHERE instance_id = 'r2' AND state = 'succeeded'",
                 1, 10000);
        /* The fix of the bad row clears the flag. */
        fx_sql(&x, "UPDATE tasks SET schedule = '0 0 1 1 *' WHERE schedule = '0 61 * * *'");
        wait_sql(&x,
                 "SELECT count(*) FROM tasks WHERE schedule = '0 0 1 1 *' AND invalid_reason IS "
                 "NULL",
                 1, 10000);
        /* A pod reference without a Kubernetes resolver is flagged, the rest runs. */
        wait_sql(&x,
                 "SELECT count(*) FROM instances WHERE id = 'by-pod' AND invalid_reason LIKE "
                 "'%resolver%'",
                 1, 10000);
        struct fleet_status fs;
        assert_int_equal(fleet_status(f, &fs), 0);
        assert_true(fs.acting);
        assert_int_equal(fs.n_instances, 4);
        assert_int_equal(fs.n_invalid_instances, 1);
        assert_true(fs.n_hours >= 1);
        free(fs.pools);
        /* Retention removed the old run while leading. */
        assert_int_equal(fx_int(&x, "SELECT count(*) FROM runs WHERE claimed_at < now() - "
                                    "interval '30 days'"),
                         0);
        /* Run now: a manual run at manual priority. */
        struct pgstore_run mr;
        char err[256];
        long long tid = fx_int(&x, "SELECT id FROM tasks WHERE instance_id = 'r1'");
        assert_int_equal(fleet_task_run_now(f, tid, &mr, err, sizeof(err)), 0);
        assert_int_equal(mr.kind, PGSTORE_RUN_MANUAL);
        char sql[160];
        snprintf(sql, sizeof(sql),
                 "SELECT count(*) FROM runs WHERE id = %lld AND kind = 'manual' AND state = "
                 "'succeeded'",
                 (long long)mr.id);
        wait_sql(&x, sql, 1, 20000);
        assert_int_equal(fleet_task_run_now(f, 999999, &mr, err, sizeof(err)), -ENOENT);
        struct fleet_instance_info info;
        assert_int_equal(fleet_instance_get(f, "r1", &info), 0);
        assert_true(info.capabilities_known);
        assert_true(info.save_config_ok);
        assert_string_equal(info.pool, "p1");

        /* Metrics: runs by kind and result, the pool limit, the failing instance. */
        const char *ok[] = {"scheduled", "succeeded"};
        const char *bad[] = {"scheduled", "failed"};
        const char *p1[] = {"p1"};
        const char *p2[] = {"p2"};
        assert_true(metrics_value(fx_metrics, M_RUNS, ok) >= 2);
        assert_true(metrics_value(fx_metrics, M_RUNS, bad) >= 1);
        clock_sleep_us(600 * 1000); /* the gauges are published every 200 ms */
        assert_true(metrics_value(fx_metrics, M_POOL_LIMIT, p1) == 1);
        assert_true(metrics_value(fx_metrics, M_INSTANCES_LAST_SAVE_FAILED, p2) == 1);
        assert_true(metrics_value(fx_metrics, M_INSTANCES_LAST_SAVE_FAILED, p1) == 0);
        assert_true(metrics_value(fx_metrics, M_SAVE_DURATION, p1) >= 2);
        /* The unusable rows: the pod reference without a resolver; the fixed cron no more. */
        const char *in_insts[] = {"instances"};
        const char *in_tasks[] = {"tasks"};
        assert_true(metrics_value(fx_metrics, M_UNUSABLE_ROWS, in_insts) == 1);
        assert_true(metrics_value(fx_metrics, M_UNUSABLE_ROWS, in_tasks) == 0);
        assert_true(atomic_load(&x.events) >= 2); /* InvalidTask, SaveFailed */

        pgstore_listener_free(l);
        fleet_free(f);
        metrics_free(fx_metrics);
        fx_metrics = NULL;
        fx_close(&x);
}

struct sample {
        struct fx *x;
        int first, n;
        int max_seen;
        atomic_bool stop;
};

static void *sampler(void *p)
{
        struct sample *s = p;
        while (!atomic_load(&s->stop)) {
                int running = 0;
                for (int i = s->first; i < s->first + s->n; i++)
                        running += th_redis_info_int(s->x->rc[i], "rdb_bgsave_in_progress") == 1;
                if (running > s->max_seen)
                        s->max_seen = running;
                clock_sleep_us(30 * 1000);
        }
        return NULL;
}

static void test_pool_limit_holds(void **state)
{
        struct fx x;
        struct fleet_options o;
        struct fleet *f;
        struct sample s = {.first = 0, .n = 4};
        pthread_t t;

        (void)state;
        fx_open(&x, "fleet_limit", 4, NULL);
        s.x = &x;
        for (int i = 0; i < 4; i++) {
                char id[16];
                snprintf(id, sizeof(id), "r%d", i);
                fx_instance(&x, id, i, "p2");
                fx_slow(&x, i, 40, 10000); /* ~0.4 s a save */
                fx_sql(&x, "INSERT INTO tasks (instance_id, schedule) VALUES ('%s', '* * * * * *')",
                       id);
        }
        fx_options(&o, "fleet-a", 1, 2);
        f = fx_fleet(&x, &o, NULL, NULL);
        assert_int_equal(pthread_create(&t, NULL, sampler, &s), 0);
        fleet_start_leading(f, 1);
        wait_sql(&x, "SELECT count(*) FROM runs WHERE state = 'succeeded'", 8, 40000);
        atomic_store(&s.stop, true);
        pthread_join(t, NULL);

        struct sched_pool_stats *st = NULL;
        int n = sched_pools_stats(fleet_pools(f), &st);
        assert_true(n >= 1);
        for (int i = 0; i < n; i++)
                if (strcmp(st[i].name, "p2") == 0) {
                        assert_int_equal(st[i].limit, 2);
                        assert_true(st[i].max_running_seen <= 2);
                        assert_true(st[i].max_running_seen >= 1);
                }
        free(st);
        assert_true(s.max_seen <= 2);
        fleet_free(f);
        fx_close(&x);
}

static void test_fencing_deposes(void **state)
{
        struct fx x;
        struct fleet_options o;
        struct fleet *f;
        struct pgstore *other;
        int64_t epoch;

        (void)state;
        fx_open(&x, "fleet_fence", 1, NULL);
        fx_instance(&x, "r1", 0, "p1");
        fx_sql(&x, "INSERT INTO tasks (instance_id, schedule) VALUES ('r1', '* * * * * *')");
        fx_options(&o, "fleet-a", 1, 1);
        f = fx_fleet(&x, &o, NULL, NULL);
        fleet_start_leading(f, 1);
        wait_sql(&x, "SELECT count(*) FROM runs WHERE state = 'succeeded'", 1, 30000);

        other = fx_store(&x);
        assert_int_equal(pgstore_epoch_bump(other, "usurper", &epoch), 0);
        assert_true(epoch > 0);
        for (int i = 0; i < 200 && atomic_load(&x.deposed) == 0; i++)
                clock_sleep_us(50 * 1000);
        assert_int_equal(atomic_load(&x.deposed), 1);
        assert_false(fleet_is_acting(f));
        clock_sleep_us(500 * 1000); /* a save in flight ends */
        long long saves = fx_rdb_saves(&x, 0);
        long long runs = fx_int(&x, "SELECT count(*) FROM runs");
        clock_sleep_us(3000 * 1000);
        assert_int_equal(fx_rdb_saves(&x, 0), saves);
        assert_int_equal(fx_int(&x, "SELECT count(*) FROM runs"), runs);
        pgstore_free(other);
        fleet_free(f);
        fx_close(&x);
}

/* A stale run as an earlier leader left it (via the store, as that leader would have). */
static int64_t old_run(struct pgstore *s, int64_t epoch, const char *instance, bool start,
                       long long saves_before, long long lastsave_before)
{
        struct pgstore_run_new nr = {.kind = PGSTORE_RUN_PERSIST,
                                     .instance_id = instance,
                                     .action = PGSTORE_ACTION_BGSAVE,
                                     .estimated_duration_ms = -1};
        struct pgstore_run run;

        assert_int_equal(pgstore_run_create(s, epoch, "old-leader", &nr, &run, NULL), 0);
        if (start) {
                struct pgstore_run_start st = {.started_at = clock_wall_us(),
                                               .rdb_saves_before = saves_before,
                                               .lastsave_before = lastsave_before,
                                               .used_memory = -1,
                                               .estimated_duration_ms = -1};
                assert_int_equal(pgstore_run_start(s, epoch, run.id, &st), 0);
        }
        return run.id;
}

static bool no_bgsave(void *p)
{
        redisContext *c = p;
        return th_redis_info_int(c, "rdb_bgsave_in_progress") == 0;
}

static void test_reconciliation(void **state)
{
        struct fx x;
        struct fleet_options o;
        struct fleet *f;
        struct pgstore *old;
        int64_t e1;
        long long a0, b0, c0;

        (void)state;
        fx_open(&x, "fleet_reconcile", 3, NULL);
        fx_instance(&x, "ra", 0, "p1");
        fx_instance(&x, "rb", 1, "p2");
        fx_instance(&x, "rc", 2, "p2");
        old = fx_store(&x);
        assert_int_equal(pgstore_epoch_bump(old, "old-leader", &e1), 0);

        /* ra: the old leader started a save that is still running. */
        fx_slow(&x, 0, 800, 10000); /* ~8 s */
        a0 = fx_rdb_saves(&x, 0);
        int64_t ra =
            old_run(old, e1, "ra", true, a0, th_redis_info_int(x.rc[0], "rdb_last_save_time"));
        freeReplyObject(th_redis_cmd(x.rc[0], "BGSAVE"));
        /* rb: the save happened, the old leader died before recording it. */
        b0 = fx_rdb_saves(&x, 1);
        int64_t rb =
            old_run(old, e1, "rb", true, b0, th_redis_info_int(x.rc[1], "rdb_last_save_time"));
        clock_sleep_us(1100 * 1000); /* lastsave moves in whole seconds */
        freeReplyObject(th_redis_cmd(x.rc[1], "BGSAVE"));
        assert_true(fx_wait(no_bgsave, x.rc[1], 10000));
        /* rc: claimed, nothing reached the instance. */
        c0 = fx_rdb_saves(&x, 2);
        int64_t rc = old_run(old, e1, "rc", false, -1, -1);

        fx_options(&o, "fleet-b", 1, 1);
        f = fx_fleet(&x, &o, NULL, NULL);
        fleet_start_leading(f, 7);
        char sql[256];
        snprintf(sql, sizeof(sql),
                 "SELECT count(*) FROM runs WHERE id IN (%" PRId64 ", %" PRId64 ", %" PRId64
                 ") AND state = 'succeeded'",
                 ra, rb, rc);
        wait_sql(&x, sql, 3, 30000);
        struct fleet_reconcile_stats rs;
        fleet_reconcile_stats(f, &rs);
        assert_int_equal(rs.adopted, 1);
        assert_int_equal(rs.finished, 1);
        assert_int_equal(rs.taken_over, 1);
        /* The adopted and the finished ones were not saved again; the taken-over one once. */
        assert_int_equal(fx_rdb_saves(&x, 0), a0 + 1);
        assert_int_equal(fx_rdb_saves(&x, 1), b0 + 1);
        assert_int_equal(fx_rdb_saves(&x, 2), c0 + 1);
        assert_int_equal(
            fx_int(&x, "SELECT count(*) FROM runs WHERE epoch = %" PRId64, fleet_epoch(f)), 3);
        pgstore_free(old);
        fleet_free(f);
        fx_close(&x);
}

struct persister {
        struct fleet *f;
        struct fleet_persist_result res;
        int rc;
};

static void *persist_one(void *p)
{
        struct persister *ps = p;
        const char *ids[] = {"r1"};
        struct fleet_persist_request req = {.instances = ids, .n_instances = 1};
        struct fleet_persist *h = NULL;
        char err[256];

        ps->rc = fleet_persist_begin(ps->f, &req, &h, err, sizeof(err));
        if (ps->rc == 0) {
                ps->rc = fleet_persist_wait(h, 60 * USEC_PER_SEC, &ps->res);
                fleet_persist_unref(h);
        }
        return NULL;
}

static void test_persist_coalesces(void **state)
{
        struct fx x;
        struct fleet_options o;
        struct fleet *f;
        enum { N = 100 };
        static struct persister ps[N];
        pthread_t t[N];
        struct fleet_persist *blocker = NULL, *h1 = NULL, *h2 = NULL;
        struct fleet_persist_result r1, r2, rb;
        char err[256];

        (void)state;
        fx_open(&x, "fleet_persist", 2, NULL);
        fx_instance(&x, "r1", 0, "p1");
        fx_instance(&x, "r0", 1, "p1");
        fx_slow(&x, 1, 400, 10000); /* r0's save holds p1's only place ~4 s */
        fx_options(&o, "fleet-a", 1, 1);
        f = fx_fleet(&x, &o, NULL, NULL);
        fleet_start_leading(f, 1);
        for (int i = 0; i < 400 && !fleet_is_acting(f); i++)
                clock_sleep_us(50 * 1000);
        assert_true(fleet_is_acting(f));

        const char *r0[] = {"r0"};
        struct fleet_persist_request breq = {.instances = r0, .n_instances = 1};
        assert_int_equal(fleet_persist_begin(f, &breq, &blocker, err, sizeof(err)), 0);
        for (int i = 0; i < 200 && th_redis_info_int(x.rc[1], "rdb_bgsave_in_progress") != 1; i++)
                clock_sleep_us(20 * 1000);

        long long before = fx_rdb_saves(&x, 0);
        for (int i = 0; i < N; i++) {
                ps[i].f = f;
                assert_int_equal(pthread_create(&t[i], NULL, persist_one, &ps[i]), 0);
        }
        for (int i = 0; i < N; i++)
                pthread_join(t[i], NULL);
        for (int i = 0; i < N; i++) {
                assert_int_equal(ps[i].rc, 0);
                assert_true(ps[i].res.r.done);
                assert_true(ps[i].res.r.ok);
                assert_true(ps[i].res.r.started_us >= ps[i].res.r.requested_us);
                assert_int_equal(ps[i].res.r.run_id, ps[0].res.r.run_id);
        }
        assert_int_equal(fx_rdb_saves(&x, 0), before + 1);
        assert_int_equal(fleet_persist_wait(blocker, 30 * USEC_PER_SEC, &rb), 0);
        assert_true(rb.r.ok);
        fleet_persist_unref(blocker);

        /* request_id: a retry returns the same result, no new save. */
        const char *ids[] = {"r1"};
        struct fleet_persist_request req = {
            .instances = ids, .n_instances = 1, .request_id = "req-42"};
        assert_int_equal(fleet_persist_begin(f, &req, &h1, err, sizeof(err)), 0);
        assert_int_equal(fleet_persist_wait(h1, 30 * USEC_PER_SEC, &r1), 0);
        assert_true(r1.r.ok);
        long long after = fx_rdb_saves(&x, 0);
        assert_int_equal(after, before + 2);
        assert_int_equal(fleet_persist_begin(f, &req, &h2, err, sizeof(err)), 0);
        assert_int_equal(fleet_persist_wait(h2, 30 * USEC_PER_SEC, &r2), 0);
        assert_int_equal(r2.r.run_id, r1.r.run_id);
        assert_int_equal(r2.r.started_us, r1.r.started_us);
        assert_int_equal(fx_rdb_saves(&x, 0), after);
        assert_int_equal(fx_int(&x, "SELECT count(*) FROM runs WHERE request_id = 'req-42'"), 1);
        fleet_persist_unref(h1);
        fleet_persist_unref(h2);

        /* An unknown target fails the whole request. */
        const char *bad[] = {"r1", "nope"};
        struct fleet_persist_request breq2 = {.instances = bad, .n_instances = 2};
        assert_int_equal(fleet_persist_begin(f, &breq2, &h1, err, sizeof(err)), -ENOENT);
        assert_non_null(strstr(err, "nope"));
        fleet_free(f);
        fx_close(&x);
}

static void test_plan_sized_before_info(void **state)
{
        struct fx x;
        struct fleet_options o;
        struct fleet *f;
        struct sched_planned *slots = NULL;
        ssize_t n = 0;

        (void)state;
        fx_open(&x, "fleet_plan_size", 0, NULL);
        /* Nothing listens on port 1: this replica never reads its INFO. Its last save (made under
         * an earlier leader) wrote 200 MB; at the default 100 MB/s that is a 2 s save. */
        fx_sql(&x, "INSERT INTO instances (id, host, port, pool) VALUES ('far', '127.0.0.1', 1, "
                   "'p1')");
        fx_sql(&x, "INSERT INTO runs (instance_id, kind, state, started_at, finished_at, "
                   "used_memory, epoch, leader_identity) VALUES ('far', 'persist', 'succeeded', "
                   "now() - interval '1 hour', now() - interval '1 hour', 200000000, 1, 'old')");
        fx_sql(&x, "INSERT INTO tasks (instance_id, schedule) VALUES ('far', '0 0 * * * *')");
        fx_options(&o, "fleet-a", 1, 1);
        f = fx_fleet(&x, &o, NULL, NULL);
        fleet_start_leading(f, 1);
        for (int i = 0; i < 200 && n <= 0; i++) {
                struct sched_hour_info hours[2];
                if (sched_loaded_hours(fleet_scheduler(f), hours) > 0) {
                        n = sched_plan_hour(fleet_scheduler(f), hours[0].hour_us, &slots);
                        if (n <= 0) {
                                free(slots);
                                slots = NULL;
                        }
                }
                if (n <= 0)
                        clock_sleep_us(50 * USEC_PER_MSEC);
        }
        assert_int_equal(n, 1);
        int64_t planned = slots[0].plan.end_us - slots[0].plan.start_us;
        assert_true(planned >= 1900 * USEC_PER_MSEC && planned <= 2200 * USEC_PER_MSEC);
        free(slots);
        fleet_free(f);
        fx_close(&x);
}

int main(void)
{
        const struct CMUnitTest tests[] = {
            cmocka_unit_test(test_scheduled_runs),   cmocka_unit_test(test_persist_coalesces),
            cmocka_unit_test(test_reconciliation),   cmocka_unit_test(test_fencing_deposes),
            cmocka_unit_test(test_pool_limit_holds), cmocka_unit_test(test_plan_sized_before_info),
        };
        return cmocka_run_group_tests(tests, NULL, NULL);
}
