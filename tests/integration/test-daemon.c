/* SPDX-License-Identifier: Apache-2.0 */
/*
 * persistd run end to end: three real persistd processes with short election timings,
 * PostgreSQL, Redis instances in two pools and kube-test-server. Exactly one leads and its pod
 * carries the leader label; a follower answers a mutation with 503 and the leader's identity;
 * SIGKILL of the leader hands over within lease + retry with the labels moved; SIGTERM hands
 * over at once through the release; the probes and /metrics answer.
 */
#include <errno.h>
#include <setjmp.h>
#include <signal.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cjson/cJSON.h>
#include <cmocka.h>
#include <curl/curl.h>

#include "core/clock.h"
#include "test-daemon-cluster.h"

static void test_failover_labels_and_probes(void **state)
{
        struct cluster cl;
        char *body = NULL;
        (void)state;

        cluster_start(&cl, NULL, false);
        for (int i = 0; i < N_REPLICAS; i++)
                replica_spawn(&cl, i);
        int l = wait_settled_leader(&cl, -1, 30 * USEC_PER_SEC, NULL);
        clock_sleep_us(1500 * 1000); /* a few renewals */
        assert_int_equal(count_leaders(&cl), 1);
        assert_true(says_leader(&cl, l));

        /* Probes and metrics on every replica, leader or not. */
        for (int i = 0; i < N_REPLICAS; i++) {
                assert_int_equal(http(cl.r[i].port, "GET", "/healthz", NULL, NULL), 200);
                assert_int_equal(http(cl.r[i].port, "GET", "/readyz", NULL, NULL), 200);
                assert_int_equal(http(cl.r[i].port, "GET", "/metrics", NULL, &body), 200);
                /* The value line, not the HELP text (which reads "1 while ..."). */
                assert_non_null(
                    strstr(body, i == l ? "\npersistd_is_leader 1\n" : "\npersistd_is_leader 0\n"));
                if (i == l) /* renewals are timed */
                        assert_non_null(
                            strstr(body, "persistd_lease_renew_duration_seconds_count"));
                free(body);
        }

        /* A follower refuses a mutation and names the leader. */
        int f = (l + 1) % N_REPLICAS;
        char *holder = lease_holder(&cl);
        long st =
            http(cl.r[f].port, "POST", "/v1/tasks",
                 "{\"instance_id\":\"redis-a\",\"action\":\"bgsave\",\"schedule\":\"* * * * *\"}",
                 &body);
        assert_int_equal(st, 503);
        assert_non_null(strstr(body, holder));
        free(body);
        free(holder);

        /* SIGKILL: another replica leads within lease + retry (plus the polling slack), with the
         * label moved off the dead leader's pod. */
        kill(cl.r[l].pid, SIGKILL);
        th_wait_exit(cl.r[l].pid, 5000, NULL);
        cl.r[l].pid = -1;
        int64_t lease_us = 0;
        int l2 =
            wait_settled_leader(&cl, l, (int64_t)(LEASE_S + RETRY_S + 6) * USEC_PER_SEC, &lease_us);
        printf("crash failover: new holder after %.0f ms\n", (double)lease_us / 1e3);
        assert_true(lease_us < (int64_t)((LEASE_S + 3 * RETRY_S) * 1e6) + 1500 * 1000);
        assert_false(pod_labelled(&cl, cl.r[l].pod));

        /* Restart the killed one: it joins as a follower (a new process never leads at start). */
        replica_spawn(&cl, l);
        clock_sleep_us(1000 * 1000);
        assert_false(says_leader(&cl, l));

        /* SIGTERM: the release hands over through the watch, long before the lease would expire. */
        int64_t t0 = clock_mono_us();
        kill(cl.r[l2].pid, SIGTERM);
        int l3 = wait_settled_leader(&cl, l2, 10 * USEC_PER_SEC, &lease_us);
        printf("graceful hand-over: new holder after %.0f ms\n", (double)lease_us / 1e3);
        assert_true(lease_us < USEC_PER_SEC); /* the lease (2 s) would take longer */
        int status = 0;
        assert_true(th_wait_exit(cl.r[l2].pid, 10000, &status));
        assert_true(WIFEXITED(status));
        assert_int_equal(WEXITSTATUS(status), 0);
        cl.r[l2].pid = -1;
        (void)t0;
        assert_int_equal(count_leaders(&cl), 1);
        assert_true(says_leader(&cl, l3));

        /*
         * SIGSTOP (a paused process): the other replica takes over within lease + retry. Woken
         * up, the old leader finds its renew deadline long past and does not act as leader.
         */
        kill(cl.r[l3].pid, SIGSTOP);
        int l4 = wait_settled_leader(&cl, l3, (int64_t)(LEASE_S + RETRY_S + 6) * USEC_PER_SEC,
                                     &lease_us);
        printf("failover after SIGSTOP: new holder after %.0f ms\n", (double)lease_us / 1e3);
        kill(cl.r[l3].pid, SIGCONT);
        int64_t deadline = clock_mono_us() + 5 * USEC_PER_SEC;
        while (says_leader(&cl, l3) && clock_mono_us() < deadline)
                clock_sleep_us(20 * 1000);
        assert_false(says_leader(&cl, l3));
        clock_sleep_us(1000 * 1000);
        assert_int_equal(count_leaders(&cl), 1);
        assert_true(says_leader(&cl, l4));
        assert_false(pod_labelled(&cl, cl.r[l3].pod));

        /* No secret in any log. */
        for (int i = 0; i < N_REPLICAS; i++) {
                char *log = slurp(cl.r[i].log_path);
                assert_null(strstr(log, TOKEN));
                assert_null(strstr(log, cl.kube.admin_token));
                free(log);
        }
        cluster_stop(&cl);
}

static void test_schedule_persist_and_tasks_api(void **state)
{
        struct cluster cl;
        char *body = NULL, *sql = NULL;
        (void)state;

        cluster_start(&cl, NULL, false);
        for (int i = 0; i < N_REPLICAS; i++)
                replica_spawn(&cl, i);
        int l = wait_settled_leader(&cl, -1, 30 * USEC_PER_SEC, NULL);

        /* Platform teams define instances and tasks in SQL: three instances in two pools. */
        sql = xasprintf("INSERT INTO instances (id, host, port, pool) VALUES "
                        "('redis-a', '127.0.0.1', %u, 'ssd'), ('redis-b', '127.0.0.1', %u, 'ssd'), "
                        "('redis-c', '127.0.0.1', %u, 'hdd')",
                        (unsigned)cl.redis[0].port, (unsigned)cl.redis[1].port,
                        (unsigned)cl.redis[2].port);
        th_pg_exec(cl.sql, sql);
        free(sql);
        th_pg_exec(cl.sql, "INSERT INTO tasks (instance_id, action, schedule) VALUES "
                           "('redis-a', 'bgsave', '*/2 * * * * *')");
        /* Within 5 s the leader has it, and a seconds-cron slot runs and succeeds. */
        wait_count(&cl,
                   "SELECT count(*) FROM runs WHERE kind = 'scheduled' AND state = 'succeeded'", 1,
                   20 * USEC_PER_SEC);
        char *holder = lease_holder(&cl);
        sql = xasprintf("SELECT count(*) FROM runs WHERE state = 'succeeded' AND "
                        "leader_identity = '%s'",
                        holder);
        assert_true(sql_count(&cl, sql) >= 1);
        free(sql);

        /* persistctl persist --wait through the leader's port: exit 0, and a save happened. */
        redisContext *rc = th_redis_connect(&cl.redis[2]);
        long long saves0 = th_redis_info_int(rc, "rdb_saves");
        char *server = xasprintf("http://127.0.0.1:%u", (unsigned)cl.r[l].port);
        char *token_file = xasprintf("%s/token", cl.dir);
        char *ctl_log = xasprintf("%s/persistctl.log", cl.dir);
        char *argv[] = {(char *)th_persistctl_path(),
                        (char *)"--server",
                        server,
                        (char *)"--token-file",
                        token_file,
                        (char *)"persist",
                        (char *)"redis-c",
                        (char *)"--wait",
                        NULL};
        pid_t pid = th_spawn(argv, NULL, ctl_log);
        int status = 0;
        assert_true(th_wait_exit(pid, 30000, &status));
        if (!WIFEXITED(status) || WEXITSTATUS(status) != 0) {
                char *log = slurp(ctl_log);
                fprintf(stderr, "persistctl: %s\n", log);
                free(log);
                dump_logs(&cl);
        }
        assert_true(WIFEXITED(status));
        assert_int_equal(WEXITSTATUS(status), 0);
        assert_true(th_redis_info_int(rc, "rdb_saves") > saves0);
        redisFree(rc);
        free(ctl_log);
        free(token_file);
        free(server);

        /* Tasks through the API: cron checked on "schedule", unknown instance on "instance_id". */
        assert_int_equal(http(cl.r[l].port, "POST", "/v1/tasks",
                              "{\"instance_id\":\"redis-b\",\"action\":\"bgsave\","
                              "\"schedule\":\"61 * * * *\"}",
                              &body),
                         400);
        assert_non_null(strstr(body, "\"schedule\""));
        free(body);
        assert_int_equal(http(cl.r[l].port, "POST", "/v1/tasks",
                              "{\"instance_id\":\"redis-nope\",\"action\":\"bgsave\","
                              "\"schedule\":\"0 * * * *\"}",
                              &body),
                         400);
        assert_non_null(strstr(body, "\"instance_id\""));
        free(body);
        assert_int_equal(http(cl.r[l].port, "POST", "/v1/tasks",
                              "{\"instance_id\":\"redis-b\",\"action\":\"bgsave\","
                              "\"schedule\":\"*/3 * * * * *\"}",
                              &body),
                         201);
        cJSON *o = cJSON_Parse(body);
        cJSON *id = cJSON_GetObjectItem(o, "id");
        assert_true(cJSON_IsString(id));
        char *path = xasprintf("/v1/tasks/%s", id->valuestring);
        free(body);
        assert_int_equal(http(cl.r[l].port, "GET", path, NULL, &body), 200);
        assert_non_null(strstr(body, "redis-b"));
        free(body);
        sql = xasprintf("SELECT count(*) FROM runs WHERE task_id = %s AND state = 'succeeded'",
                        id->valuestring);
        wait_count(&cl, sql, 1, 15 * USEC_PER_SEC);
        free(sql);
        /* Run now: a manual run of the task, queued ahead of scheduled work. */
        char *run_path = xasprintf("%s/run", path);
        assert_int_equal(http(cl.r[l].port, "POST", run_path, "{}", &body), 202);
        assert_non_null(strstr(body, "\"manual\""));
        free(body);
        free(run_path);
        wait_count(&cl,
                   "SELECT count(*) FROM runs WHERE kind = 'manual' AND state = 'succeeded' AND "
                   "instance_id = 'redis-b'",
                   1, 15 * USEC_PER_SEC);

        /* The read side: instances (by pool), runs (by instance and kind), status, plan, nightly.
         */
        assert_int_equal(http(cl.r[l].port, "GET", "/v1/instances?pool=hdd", NULL, &body), 200);
        assert_non_null(strstr(body, "redis-c"));
        assert_null(strstr(body, "redis-a"));
        free(body);
        assert_int_equal(http(cl.r[l].port, "GET", "/v1/instances/redis-a", NULL, &body), 200);
        assert_non_null(strstr(body, "\"ssd\""));
        free(body);
        assert_int_equal(http(cl.r[l].port, "GET", "/v1/instances/redis-nope", NULL, NULL), 404);
        assert_int_equal(
            http(cl.r[l].port, "GET", "/v1/runs?instance=redis-c&kind=persist", NULL, &body), 200);
        assert_non_null(strstr(body, "\"succeeded\""));
        assert_null(strstr(body, "\"scheduled\""));
        free(body);
        assert_int_equal(http(cl.r[l].port, "GET", "/v1/status", NULL, &body), 200);
        cJSON *so = cJSON_Parse(body);
        assert_true(cJSON_IsTrue(cJSON_GetObjectItem(so, "is_leader")));
        assert_true(cJSON_GetObjectItem(so, "epoch")->valuedouble >= 1);
        cJSON *lease = cJSON_GetObjectItem(so, "lease");
        assert_string_equal(cJSON_GetObjectItem(lease, "holder")->valuestring, holder);
        assert_true(cJSON_IsString(cJSON_GetObjectItem(lease, "renew_time")));
        assert_non_null(strstr(body, "\"hdd\""));
        cJSON_Delete(so);
        free(body);
        assert_int_equal(http(cl.r[l].port, "GET", "/v1/plan", NULL, &body), 200);
        assert_non_null(strstr(body, "redis-a"));
        free(body);
        assert_int_equal(http(cl.r[l].port, "GET", "/v1/nightly", NULL, &body), 200);
        assert_non_null(strstr(body, "\"state\""));
        free(body);

        long del = http(cl.r[l].port, "DELETE", path, NULL, NULL);
        assert_true(del == 200 || del == 204);
        assert_int_equal(http(cl.r[l].port, "GET", path, NULL, NULL), 404);
        free(path);
        cJSON_Delete(o);

        /* SIGKILL the leader: the next one goes on with the slots, none runs twice. */
        kill(cl.r[l].pid, SIGKILL);
        th_wait_exit(cl.r[l].pid, 5000, NULL);
        cl.r[l].pid = -1;
        int l2 = wait_settled_leader(&cl, l, (int64_t)(LEASE_S + RETRY_S + 6) * USEC_PER_SEC, NULL);
        free(holder);
        holder = lease_holder(&cl);
        assert_int_equal(holder_index(&cl, holder), l2);
        sql =
            xasprintf("SELECT count(*) FROM runs WHERE kind = 'scheduled' AND state = 'succeeded' "
                      "AND leader_identity = '%s'",
                      holder);
        wait_count(&cl, sql, 1, 20 * USEC_PER_SEC);
        free(sql);
        assert_int_equal(sql_count(&cl, "SELECT count(*) FROM (SELECT task_id, scheduled_for FROM "
                                        "runs WHERE kind = 'scheduled' GROUP BY 1, 2 "
                                        "HAVING count(*) > 1) d"),
                         0);
        /* The epoch moved on with the leader. */
        assert_true(sql_count(&cl, "SELECT epoch FROM leader_epoch") >= 2);
        free(holder);
        cluster_stop(&cl);
}

/* A database migrated by a newer persistd: start-up stops with a clear error and exit 1. */
static void test_newer_schema_refuses_to_start(void **state)
{
        struct cluster cl;
        (void)state;

        cluster_start(&cl, NULL, false);
        th_pg_exec(cl.sql, "CREATE TABLE schema_migrations (version integer PRIMARY KEY, "
                           "name text NOT NULL, applied_at timestamptz NOT NULL DEFAULT now())");
        th_pg_exec(cl.sql, "INSERT INTO schema_migrations (version, name) VALUES (9999, 'future')");
        replica_spawn(&cl, 0);
        int status = 0;
        assert_true(th_wait_exit(cl.r[0].pid, 20000, &status));
        cl.r[0].pid = -1;
        assert_true(WIFEXITED(status));
        assert_int_equal(WEXITSTATUS(status), 1);
        char *log = slurp(cl.r[0].log_path);
        assert_non_null(strstr(log, "newer than this persistd"));
        assert_non_null(strstr(log, "9999"));
        free(log);
        /* Nothing acted: no Lease was ever written. */
        char *holder = lease_holder(&cl);
        assert_string_equal(holder, "");
        free(holder);
        cluster_stop(&cl);
}

int main(void)
{
        curl_global_init(CURL_GLOBAL_DEFAULT);
        const struct CMUnitTest tests[] = {
            cmocka_unit_test(test_failover_labels_and_probes),
            cmocka_unit_test(test_schedule_persist_and_tasks_api),
            cmocka_unit_test(test_newer_schema_refuses_to_start),
        };
        int r = cmocka_run_group_tests(tests, NULL, NULL);
        curl_global_cleanup();
        return r;
}
