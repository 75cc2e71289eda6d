/* SPDX-License-Identifier: Apache-2.0 */
/*
 * The scheduler end to end (issue 6): three persistd replicas, PostgreSQL, real redis-servers
 * and kube-test-server. The schedule clock (--fake-start) crosses the preload minute, the hour
 * and the day; 20 one-shot slots in two pools of limit 1 run once each and never two at once in
 * a pool; slots falling due while the leader is dead are run once or recorded missed; task
 * changes made with SQL take effect; an overbooked hour raises a Warning Event and the metric.
 */
#include <errno.h>
#include <inttypes.h>
#include <setjmp.h>
#include <signal.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include <cjson/cJSON.h>
#include <cmocka.h>
#include <curl/curl.h>

#include "core/clock.h"
#include "core/macro.h"
#include "test-daemon-cluster.h"

/* Spawn replica i with its schedule clock started at `fake_start` (NULL: the real clock). */
static void spawn_at(struct cluster *cl, int i, const char *fake_start)
{
        struct replica *r = &cl->r[i];
        char *env_pod = xasprintf("POD_NAME=%s", r->pod);
        char *argv[] = {(char *)th_persistd_path(),
                        (char *)"run",
                        (char *)"-c",
                        r->config_path,
                        fake_start ? (char *)"--fake-start" : NULL,
                        (char *)fake_start,
                        NULL};
        char *env[] = {env_pod, NULL};

        r->pid = th_spawn(argv, env, r->log_path);
        free(env_pod);
}

static void spawn_all(struct cluster *cl, const char *fake_start)
{
        for (int i = 0; i < N_REPLICAS; i++)
                spawn_at(cl, i, fake_start);
}

static void stop_all(struct cluster *cl)
{
        for (int i = 0; i < N_REPLICAS; i++)
                if (cl->r[i].pid > 0) {
                        th_stop(cl->r[i].pid, SIGTERM, 10000);
                        cl->r[i].pid = -1;
                }
}

/* Replace `from` by `to` in every replica's configuration file. */
static void patch_config(struct cluster *cl, const char *from, const char *to)
{
        for (int i = 0; i < N_REPLICAS; i++) {
                char *text = slurp(cl->r[i].config_path);
                char *at = strstr(text, from);
                assert_non_null(at);
                *at = '\0';
                char *out = xasprintf("%s%s%s", text, to, at + strlen(from));
                write_file(cl->r[i].config_path, out);
                free(out);
                free(text);
        }
}

/* The leader's GET /v1/status "loaded_hours", as one comma-joined string; caller frees. */
static char *loaded_hours(struct cluster *cl, int l)
{
        char *body = NULL, *out = strdup("");
        if (http(cl->r[l].port, "GET", "/v1/status", NULL, &body) == 200) {
                cJSON *o = cJSON_Parse(body);
                cJSON *h;
                cJSON_ArrayForEach(h, cJSON_GetObjectItem(o, "loaded_hours"))
                {
                        if (!cJSON_IsString(h))
                                continue;
                        char *n = xasprintf("%s%s,", out, h->valuestring);
                        free(out);
                        out = n;
                }
                cJSON_Delete(o);
        }
        free(body);
        return out;
}

/* Wait until the leader's loaded hours contain `hour` (RFC 3339); fail after `timeout_us`. */
static void wait_hour_loaded(struct cluster *cl, int l, const char *hour, int64_t timeout_us)
{
        int64_t deadline = clock_mono_us() + timeout_us;
        for (;;) {
                char *h = loaded_hours(cl, l);
                bool ok = strstr(h, hour) != NULL;
                if (ok || clock_mono_us() > deadline) {
                        if (!ok) {
                                dump_logs(cl);
                                fail_msg("hour %s not loaded (loaded: %s)", hour, h);
                        }
                        free(h);
                        return;
                }
                free(h);
                clock_sleep_us(100 * 1000);
        }
}

static long long events_with_reason(struct cluster *cl, const char *reason)
{
        char *body = NULL;
        char *path = xasprintf("/api/v1/namespaces/%s/events", cl->kube.namespace);
        long st = th_kube_request(&cl->kube, cl->kube.admin_token, "GET", path, NULL, NULL, &body);
        long long n = 0;
        free(path);
        if (st == 200) {
                cJSON *o = cJSON_Parse(body);
                cJSON *e;
                cJSON_ArrayForEach(e, cJSON_GetObjectItem(o, "items"))
                {
                        cJSON *r = cJSON_GetObjectItem(e, "reason");
                        cJSON *t = cJSON_GetObjectItem(e, "type");
                        if (cJSON_IsString(r) && strcmp(r->valuestring, reason) == 0 &&
                            cJSON_IsString(t) && strcmp(t->valuestring, "Warning") == 0)
                                n++;
                }
                cJSON_Delete(o);
        }
        free(body);
        return n;
}

/* persistd migrate: the schema, before any replica runs. */
static void migrate(struct cluster *cl)
{
        char *argv[] = {(char *)th_persistd_path(), (char *)"migrate", (char *)"-c",
                        cl->r[0].config_path, NULL};
        int status = 0;
        pid_t pid = th_spawn(argv, NULL, cl->r[0].log_path);
        assert_true(th_wait_exit(pid, 30000, &status));
        assert_true(WIFEXITED(status) && WEXITSTATUS(status) == 0);
}

static void insert_instances(struct cluster *cl, const struct th_redis *extra)
{
        migrate(cl);
        char *sql = xasprintf("INSERT INTO instances (id, host, port, pool) VALUES "
                              "('redis-a', '127.0.0.1', %u, 'p1'), "
                              "('redis-b', '127.0.0.1', %u, 'p1'), "
                              "('redis-c', '127.0.0.1', %u, 'p2')%s",
                              (unsigned)cl->redis[0].port, (unsigned)cl->redis[1].port,
                              (unsigned)cl->redis[2].port, extra ? ", " : "");
        if (extra) {
                char *more =
                    xasprintf("%s('redis-d', '127.0.0.1', %u, 'p2')", sql, (unsigned)extra->port);
                free(sql);
                sql = more;
        }
        th_pg_exec(cl->sql, sql);
        free(sql);
}

/*
 * The schedule clock at the boundaries. Started at 12:39:50, the leader loads 13:00 at 12:40
 * and (with max_plan_delay_s 0 and a slow write-rate seed, a task every second overruns its
 * hour) posts a PlanOverrun Warning Event and sets persistd_plan_overrun_seconds. Started at
 * 23:59:50, the day changes: the next day's first hour is loaded and run, and a daily task at
 * midnight runs exactly once, on the new date.
 */
static void test_clock_boundaries(void **state)
{
        struct cluster cl;
        char *body = NULL;
        (void)state;

        cluster_start(&cl, NULL, false);
        insert_instances(&cl, NULL);
        /* Created just before the fake start, so the catch-up has no earlier slot to run. */
        th_pg_exec(cl.sql, "INSERT INTO tasks (instance_id, schedule, created_at) VALUES "
                           "('redis-a', '* * * * * *', '2027-03-14T12:39:45Z')");
        /* Saves of redis-a take about 2 s (2000 keys, 1 ms each), so a slot every second
         * overbooks the hour; the write-rate seed makes the first estimate long too. */
        redisContext *rc = th_redis_connect(&cl.redis[0]);
        redisReply *rep = redisCommand(rc, "DEBUG POPULATE 2000 k 16");
        assert_non_null(rep);
        freeReplyObject(rep);
        rep = redisCommand(rc, "CONFIG SET rdb-key-save-delay 1000");
        assert_true(rep && rep->type == REDIS_REPLY_STATUS);
        freeReplyObject(rep);
        patch_config(&cl, "driver:\n  min_timeout_s: 10\n",
                     "driver:\n  min_timeout_s: 10\n  write_rate_mb_s: 0.1\n"
                     "schedule:\n  max_plan_delay_s: 0\n");

        /* Phase 1: the preload minute. */
        int64_t spawned = clock_mono_us();
        spawn_all(&cl, "2027-03-14T12:39:50Z");
        int l = wait_settled_leader(&cl, -1, 30 * USEC_PER_SEC, NULL);
        wait_hour_loaded(&cl, l, "2027-03-14T12:00:00Z", 10 * USEC_PER_SEC);
        char *hours = loaded_hours(&cl, l);
        double elapsed = (double)(clock_mono_us() - spawned) / 1e6;
        printf("leader loaded %s %.1f s after the start at 12:39:50\n", hours, elapsed);
        /* The replicas' clocks started after `spawned`: before 12:39:59.5 here, before 12:40
         * there, so 13:00 is not loaded yet. */
        if (elapsed < 9.5)
                assert_null(strstr(hours, "2027-03-14T13:00:00Z"));
        free(hours);
        wait_hour_loaded(&cl, l, "2027-03-14T13:00:00Z", 20 * USEC_PER_SEC);
        /* Nothing before the task existed, and no slot twice. */
        assert_int_equal(sql_count(&cl, "SELECT count(*) FROM runs WHERE "
                                        "scheduled_for < '2027-03-14T12:39:45Z'"),
                         0);
        assert_int_equal(sql_count(&cl, "SELECT count(*) FROM (SELECT task_id, scheduled_for FROM "
                                        "runs GROUP BY 1, 2 HAVING count(*) > 1) d"),
                         0);
        /* The overbooked hour: a Warning Event on the test server and the metric. */
        int64_t deadline = clock_mono_us() + 15 * USEC_PER_SEC;
        while (events_with_reason(&cl, "PlanOverrun") < 1 && clock_mono_us() < deadline)
                clock_sleep_us(200 * 1000);
        if (events_with_reason(&cl, "PlanOverrun") < 1)
                dump_logs(&cl);
        assert_true(events_with_reason(&cl, "PlanOverrun") >= 1);
        assert_int_equal(http(cl.r[l].port, "GET", "/metrics", NULL, &body), 200);
        assert_non_null(strstr(body, "persistd_plan_overrun_seconds{pool=\"p1\"}"));
        free(body);
        stop_all(&cl);

        /* Phase 2: the hour and the day change (normal settings again). */
        rep = redisCommand(rc, "CONFIG SET rdb-key-save-delay 0");
        assert_true(rep && rep->type == REDIS_REPLY_STATUS);
        freeReplyObject(rep);
        redisFree(rc);
        patch_config(&cl, "  write_rate_mb_s: 0.1\nschedule:\n  max_plan_delay_s: 0\n", "");
        th_pg_exec(cl.sql, "UPDATE tasks SET schedule = '*/2 * * * * *', "
                           "created_at = '2027-03-14T23:59:45Z'");
        th_pg_exec(cl.sql, "INSERT INTO tasks (instance_id, schedule, created_at) VALUES "
                           "('redis-c', '0 0 0 * * *', '2027-03-14T23:59:45Z'), "
                           "('redis-b', '0 0 * * * *', '2027-03-14T23:59:45Z')");
        spawn_all(&cl, "2027-03-14T23:59:50Z");
        l = wait_settled_leader(&cl, -1, 30 * USEC_PER_SEC, NULL);
        wait_hour_loaded(&cl, l, "2027-03-15T00:00:00Z", 15 * USEC_PER_SEC);
        wait_count(&cl,
                   "SELECT count(*) FROM runs r JOIN tasks t ON t.id = r.task_id WHERE "
                   "t.schedule = '0 0 0 * * *' AND r.state = 'succeeded'",
                   1, 25 * USEC_PER_SEC);
        wait_count(&cl,
                   "SELECT count(*) FROM runs WHERE instance_id = 'redis-a' AND state = "
                   "'succeeded' AND scheduled_for >= '2027-03-15T00:00:02Z'",
                   1, 15 * USEC_PER_SEC);
        /* The midnight tasks ran once each, on the new date. */
        assert_int_equal(sql_count(&cl, "SELECT count(*) FROM runs WHERE instance_id = 'redis-c'"),
                         1);
        assert_int_equal(
            sql_count(&cl, "SELECT count(*) FROM runs WHERE instance_id = 'redis-c' AND "
                           "scheduled_for = '2027-03-15T00:00:00Z' AND state = 'succeeded'"),
            1);
        assert_int_equal(
            sql_count(&cl, "SELECT count(*) FROM runs WHERE instance_id = 'redis-b' AND "
                           "scheduled_for = '2027-03-15T00:00:00Z' AND state = 'succeeded'"),
            1);
        /* The day moved on in the leader's view: the previous day's hour is gone or the next
         * one is there, and no slot ran twice. */
        assert_int_equal(sql_count(&cl, "SELECT count(*) FROM (SELECT task_id, scheduled_for FROM "
                                        "runs GROUP BY 1, 2 HAVING count(*) > 1) d"),
                         0);
        stop_all(&cl);
        cluster_stop(&cl);
}

/* The instants of the pool test, and `in_progress` of the four instances at one moment. */
static int sample_pools(redisContext *rc[4], int *max_p1, int *max_p2)
{
        int busy[4];
        for (int i = 0; i < 4; i++)
                busy[i] = th_redis_info_int(rc[i], "rdb_bgsave_in_progress") > 0;
        *max_p1 = MAX(*max_p1, busy[0] + busy[1]);
        *max_p2 = MAX(*max_p2, busy[2] + busy[3]);
        return busy[0] + busy[1] + busy[2] + busy[3];
}

static void format_utc(int64_t us, char *buf, size_t n, bool cron)
{
        time_t t = (time_t)(us / USEC_PER_SEC);
        struct tm tm;
        gmtime_r(&t, &tm);
        if (cron)
                snprintf(buf, n, "%d %d %d %d %d *", tm.tm_sec, tm.tm_min, tm.tm_hour, tm.tm_mday,
                         tm.tm_mon + 1);
        else
                strftime(buf, n, "%Y-%m-%dT%H:%M:%SZ", &tm);
}

/*
 * 20 one-shot tasks on 4 instances in 2 pools of limit 1, two slots per second: every slot runs
 * exactly once (the runs table and each instance's rdb_saves agree) and no two saves overlap in
 * a pool (INFO of every instance sampled throughout, and the runs' intervals). Then a task
 * added, changed and disabled with SQL while its hour is loaded.
 */
static void test_pools_and_sql_changes(void **state)
{
        struct cluster cl;
        struct th_redis extra;
        redisContext *rc[4];
        long long saves0[4];
        char cron[64], *sql;
        (void)state;

        cluster_start(&cl, NULL, false);
        th_redis_start(&extra, NULL);
        insert_instances(&cl, &extra);
        for (int i = 0; i < 4; i++) {
                rc[i] = th_redis_connect(i < 3 ? &cl.redis[i] : &extra);
                /* Some data, so a save takes long enough to be seen in progress. */
                redisReply *rep = redisCommand(rc[i], "DEBUG POPULATE 200000 k 64");
                assert_non_null(rep);
                freeReplyObject(rep);
                saves0[i] = th_redis_info_int(rc[i], "rdb_saves");
        }
        spawn_all(&cl, NULL);
        wait_settled_leader(&cl, -1, 30 * USEC_PER_SEC, NULL);

        /* Slots from 4 s on, two per second, each instance five times. */
        static const char *const ids[4] = {"redis-a", "redis-b", "redis-c", "redis-d"};
        int64_t t0 = (clock_wall_us() / USEC_PER_SEC + 6) * USEC_PER_SEC;
        for (int k = 0; k < 20; k++) {
                format_utc(t0 + (k / 2) * USEC_PER_SEC, cron, sizeof(cron), true);
                sql = xasprintf("INSERT INTO tasks (instance_id, schedule) VALUES ('%s', '%s')",
                                ids[k % 4], cron);
                th_pg_exec(cl.sql, sql);
                free(sql);
        }
        int max_p1 = 0, max_p2 = 0;
        long long samples = 0, busy = 0;
        int64_t deadline = clock_mono_us() + 40 * USEC_PER_SEC;
        while (sql_count(&cl, "SELECT count(*) FROM runs WHERE state IN ('succeeded', 'failed', "
                              "'timed_out', 'missed', 'skipped')") < 20) {
                if (clock_mono_us() > deadline) {
                        dump_logs(&cl);
                        fail_msg("the 20 slots did not all finish");
                }
                for (int j = 0; j < 20; j++, samples++)
                        busy += sample_pools(rc, &max_p1, &max_p2) > 0;
        }
        printf("sampled INFO %lld times, a save in progress in %lld samples; most at once: "
               "p1 %d, p2 %d\n",
               samples, busy, max_p1, max_p2);
        assert_true(max_p1 <= 1);
        assert_true(max_p2 <= 1);
        assert_int_equal(sql_count(&cl, "SELECT count(*) FROM runs WHERE state = 'succeeded'"), 20);
        assert_int_equal(sql_count(&cl, "SELECT count(DISTINCT task_id) FROM runs"), 20);
        for (int i = 0; i < 4; i++) {
                sql = xasprintf("SELECT count(*) FROM runs WHERE instance_id = '%s'", ids[i]);
                assert_int_equal(sql_count(&cl, sql), 5);
                assert_int_equal(th_redis_info_int(rc[i], "rdb_saves") - saves0[i], 5);
                free(sql);
        }
        /* The runs' own intervals never overlap within a pool. */
        assert_int_equal(sql_count(&cl, "SELECT count(*) FROM runs a JOIN runs b ON a.id < b.id "
                                        "JOIN instances ia ON ia.id = a.instance_id "
                                        "JOIN instances ib ON ib.id = b.instance_id "
                                        "WHERE ia.pool = ib.pool AND a.started_at < b.finished_at "
                                        "AND b.started_at < a.finished_at"),
                         0);

        /* Added with SQL while loaded: a task every 2 s on redis-d runs. */
        th_pg_exec(cl.sql, "INSERT INTO tasks (instance_id, schedule, description) VALUES "
                           "('redis-d', '*/2 * * * * *', 'sql')");
        wait_count(&cl,
                   "SELECT count(*) FROM runs r JOIN tasks t ON t.id = r.task_id WHERE "
                   "t.description = 'sql' AND r.state = 'succeeded'",
                   1, 20 * USEC_PER_SEC);
        /* Changed: odd seconds on redis-c. */
        th_pg_exec(cl.sql, "UPDATE tasks SET schedule = '1/2 * * * * *', instance_id = 'redis-c' "
                           "WHERE description = 'sql'");
        wait_count(&cl,
                   "SELECT count(*) FROM runs r JOIN tasks t ON t.id = r.task_id WHERE "
                   "t.description = 'sql' AND r.instance_id = 'redis-c' AND "
                   "extract(second FROM r.scheduled_for)::int % 2 = 1",
                   1, 20 * USEC_PER_SEC);
        char *first_changed = th_pg_value(
            cl.sql, "SELECT min(r.scheduled_for) FROM runs r JOIN tasks t ON t.id = r.task_id "
                    "WHERE t.description = 'sql' AND r.instance_id = 'redis-c'");
        clock_sleep_us(3 * USEC_PER_SEC);
        sql = xasprintf("SELECT count(*) FROM runs r JOIN tasks t ON t.id = r.task_id WHERE "
                        "t.description = 'sql' AND r.scheduled_for > '%s' AND "
                        "(r.instance_id <> 'redis-c' OR "
                        "extract(second FROM r.scheduled_for)::int %% 2 = 0)",
                        first_changed);
        assert_int_equal(sql_count(&cl, sql), 0);
        free(sql);
        free(first_changed);
        /* Disabled: after the change has arrived, no more runs. */
        th_pg_exec(cl.sql, "UPDATE tasks SET enabled = false WHERE description = 'sql'");
        clock_sleep_us(3 * USEC_PER_SEC);
        const char *count_sql = "SELECT count(*) FROM runs r JOIN tasks t ON t.id = r.task_id "
                                "WHERE t.description = 'sql'";
        long long n = sql_count(&cl, count_sql);
        clock_sleep_us(5 * USEC_PER_SEC);
        assert_int_equal(sql_count(&cl, count_sql), n);

        for (int i = 0; i < 4; i++)
                redisFree(rc[i]);
        th_redis_stop(&extra);
        stop_all(&cl);
        cluster_stop(&cl);
}

/*
 * SIGKILL of the leader just before slots fall due: the new leader runs the run_once slot once,
 * records the skip slot and the one past its starting deadline missed; nothing runs twice.
 */
static void test_failover_gap(void **state)
{
        struct cluster cl;
        char ts[64], cron[64], *sql;
        (void)state;

        cluster_start(&cl, NULL, false);
        insert_instances(&cl, NULL);
        spawn_all(&cl, NULL);
        int l = wait_settled_leader(&cl, -1, 30 * USEC_PER_SEC, NULL);
        th_pg_exec(cl.sql, "INSERT INTO tasks (instance_id, schedule, description) VALUES "
                           "('redis-c', '* * * * * *', 'steady')");
        wait_count(&cl, "SELECT count(*) FROM runs WHERE state = 'succeeded'", 1,
                   20 * USEC_PER_SEC);

        /* Three one-shot slots 3 s from now; the kill comes 0.8 s before them. */
        int64_t slot = (clock_wall_us() / USEC_PER_SEC + 3) * USEC_PER_SEC;
        format_utc(slot, cron, sizeof(cron), true);
        format_utc(slot, ts, sizeof(ts), false);
        sql = xasprintf("INSERT INTO tasks (instance_id, schedule, misfire_policy, "
                        "starting_deadline_s, description) VALUES "
                        "('redis-a', '%s', 'run_once', 600, 'once'), "
                        "('redis-b', '%s', 'skip', 600, 'skip'), "
                        "('redis-b', '%s', 'run_once', 1, 'late')",
                        cron, cron, cron);
        th_pg_exec(cl.sql, sql);
        free(sql);
        clock_sleep_us(1500 * 1000); /* the leader has them queued */
        while (clock_wall_us() < slot - 800 * 1000)
                clock_sleep_us(20 * 1000);
        /* The followers are paused for 3 s too, so the gap surely exceeds the 1 s deadline. */
        for (int i = 0; i < N_REPLICAS; i++)
                if (i != l)
                        kill(cl.r[i].pid, SIGSTOP);
        kill(cl.r[l].pid, SIGKILL);
        th_wait_exit(cl.r[l].pid, 5000, NULL);
        cl.r[l].pid = -1;
        clock_sleep_us(3 * USEC_PER_SEC);
        for (int i = 0; i < N_REPLICAS; i++)
                if (i != l)
                        kill(cl.r[i].pid, SIGCONT);
        wait_settled_leader(&cl, l, (int64_t)(LEASE_S + RETRY_S + 8) * USEC_PER_SEC, NULL);

        sql = xasprintf("SELECT count(*) FROM runs r JOIN tasks t ON t.id = r.task_id WHERE "
                        "t.description IN ('once', 'skip', 'late') AND r.scheduled_for = '%s' "
                        "AND r.state IN ('succeeded', 'missed')",
                        ts);
        wait_count(&cl, sql, 3, 20 * USEC_PER_SEC);
        free(sql);
        if (sql_count(&cl, "SELECT count(*) FROM runs r JOIN tasks t ON t.id = r.task_id WHERE "
                           "t.description = 'once' AND r.state = 'succeeded'") != 1)
                dump_logs(&cl);
        assert_int_equal(sql_count(&cl, "SELECT count(*) FROM runs r JOIN tasks t ON t.id = "
                                        "r.task_id WHERE t.description = 'once'"),
                         1);
        assert_int_equal(sql_count(&cl, "SELECT count(*) FROM runs r JOIN tasks t ON t.id = "
                                        "r.task_id WHERE t.description = 'once' AND r.state = "
                                        "'succeeded'"),
                         1);
        assert_int_equal(sql_count(&cl, "SELECT count(*) FROM runs r JOIN tasks t ON t.id = "
                                        "r.task_id WHERE t.description IN ('skip', 'late') AND "
                                        "r.state = 'missed'"),
                         2);
        assert_int_equal(sql_count(&cl, "SELECT count(*) FROM runs r JOIN tasks t ON t.id = "
                                        "r.task_id WHERE t.description IN ('skip', 'late')"),
                         2);
        /* The steady task goes on under the new leader, and no slot ran twice. */
        char *holder = lease_holder(&cl);
        sql = xasprintf("SELECT count(*) FROM runs WHERE state = 'succeeded' AND instance_id = "
                        "'redis-c' AND leader_identity = '%s'",
                        holder);
        wait_count(&cl, sql, 1, 15 * USEC_PER_SEC);
        free(sql);
        free(holder);
        assert_int_equal(sql_count(&cl, "SELECT count(*) FROM (SELECT task_id, scheduled_for FROM "
                                        "runs GROUP BY 1, 2 HAVING count(*) > 1) d"),
                         0);
        stop_all(&cl);
        cluster_stop(&cl);
}

int main(void)
{
        curl_global_init(CURL_GLOBAL_DEFAULT);
        const struct CMUnitTest tests[] = {
            cmocka_unit_test(test_clock_boundaries),
            cmocka_unit_test(test_pools_and_sql_changes),
            cmocka_unit_test(test_failover_gap),
        };
        /* E2E_ONLY=test_name: run one test (a cmocka filter). */
        if (getenv("E2E_ONLY"))
                cmocka_set_test_filter(getenv("E2E_ONLY"));
        int r = cmocka_run_group_tests(tests, NULL, NULL);
        curl_global_cleanup();
        return r;
}
