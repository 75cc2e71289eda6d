/* SPDX-License-Identifier: Apache-2.0 */
/*
 * Persist-now end to end against a real persistd leader (one replica; PostgreSQL, Redis,
 * kube-test-server): 100 concurrent requests share one BGSAVE, a request arriving while an older
 * save runs gets a fresh save that started after it, a request_id retry returns the same save,
 * and the pool limit holds while nightly, scheduled and persist-now work compete. Saves are slowed
 * with CONFIG SET rdb-key-save-delay.
 */
#include <errno.h>
#include <pthread.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stdatomic.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include <cjson/cJSON.h>
#include <cmocka.h>
#include <curl/curl.h>

#include "core/clock.h"
#include "test-e2e-util.h"

static struct cluster cl;
static int leader;

static int setup(void **state)
{
        (void)state;
        e2e_cluster_start(&cl, 1, &leader);
        return 0;
}

static int teardown(void **state)
{
        (void)state;
        cluster_stop(&cl);
        return 0;
}

/* Make every save of redis[i] take about `ms` (n keys, each delayed). */
static void slow_saves(int i, int ms)
{
        redisContext *c = th_redis_connect(&cl.redis[i]);
        for (int k = 0; k < 100; k++)
                freeReplyObject(redisCommand(c, "SET key:%d value", k));
        freeReplyObject(redisCommand(c, "CONFIG SET rdb-key-save-delay %d", ms * 10));
        redisFree(c);
}

static long long info(int i, const char *field)
{
        redisContext *c = th_redis_connect(&cl.redis[i]);
        long long v = th_redis_info_int(c, field);
        redisFree(c);
        return v;
}

static void wait_info(int i, const char *field, long long want)
{
        int64_t deadline = clock_mono_us() + 20 * USEC_PER_SEC;
        while (info(i, field) != want) {
                if (clock_mono_us() > deadline) {
                        dump_logs(&cl);
                        fail_msg("%s of redis[%d] never became %lld", field, i, want);
                }
                clock_sleep_us(5 * 1000);
        }
}

/* One target's result of a persist answer, with its fields. */
struct result {
        long status;
        bool success, joined;
        long long run_id;
        char requested_at[40], started_at[40], state[16];
};

static void persist(const char *id, const char *body, struct result *r)
{
        char *path = xasprintf("/v1/instances/%s/persist", id);
        char *out = NULL;
        memset(r, 0, sizeof(*r));
        r->status = e2e_http(cl.r[leader].port, TOKEN, "POST", path, body, &out, NULL);
        cJSON *o = cJSON_Parse(out);
        cJSON *res = cJSON_GetArrayItem(cJSON_GetObjectItem(o, "results"), 0);
        r->success = cJSON_IsTrue(cJSON_GetObjectItem(o, "success"));
        r->joined = cJSON_IsTrue(cJSON_GetObjectItem(res, "joined"));
        cJSON *run = cJSON_GetObjectItem(res, "run_id");
        r->run_id = cJSON_IsNumber(run) ? (long long)run->valuedouble : -1;
        cJSON *v = cJSON_GetObjectItem(res, "requested_at");
        if (cJSON_IsString(v))
                snprintf(r->requested_at, sizeof(r->requested_at), "%s", v->valuestring);
        v = cJSON_GetObjectItem(res, "started_at");
        if (cJSON_IsString(v))
                snprintf(r->started_at, sizeof(r->started_at), "%s", v->valuestring);
        v = cJSON_GetObjectItem(res, "state");
        if (cJSON_IsString(v))
                snprintf(r->state, sizeof(r->state), "%s", v->valuestring);
        cJSON_Delete(o);
        free(out);
        free(path);
}

#define N_CONCURRENT 100

static struct result results[N_CONCURRENT];

static void *persist_thread(void *userdata)
{
        struct result *r = userdata;
        persist("redis-a", "{\"wait\":true,\"timeout_s\":60}", r);
        return NULL;
}

static void test_concurrent_requests_share_one_save(void **state)
{
        struct result busy;
        pthread_t t[N_CONCURRENT];
        (void)state;

        /* Keep the ssd pool (limit 1) busy with a slow save of redis-b, so that every request
         * for redis-a arrives before its save can start. */
        slow_saves(1, 6000);
        persist("redis-b", "{}", &busy);
        assert_int_equal(busy.status, 202);
        wait_info(1, "rdb_bgsave_in_progress", 1);
        long long saves0 = info(0, "rdb_saves");
        for (int i = 0; i < N_CONCURRENT; i++)
                assert_int_equal(pthread_create(&t[i], NULL, persist_thread, &results[i]), 0);
        for (int i = 0; i < N_CONCURRENT; i++)
                pthread_join(t[i], NULL);
        int joined = 0;
        for (int i = 0; i < N_CONCURRENT; i++) {
                assert_int_equal(results[i].status, 200);
                assert_true(results[i].success);
                assert_int_equal(results[i].run_id, results[0].run_id);
                joined += results[i].joined;
        }
        assert_int_equal(joined, N_CONCURRENT - 1);
        assert_int_equal(info(0, "rdb_saves") - saves0, 1);
        wait_info(1, "rdb_bgsave_in_progress", 0);
        slow_saves(1, 0);
}

static void test_request_during_save_gets_fresh_save(void **state)
{
        struct result first, second;
        (void)state;

        slow_saves(2, 2000);
        long long saves0 = info(2, "rdb_saves");
        persist("redis-c", "{}", &first);
        assert_int_equal(first.status, 202);
        wait_info(2, "rdb_bgsave_in_progress", 1);
        persist("redis-c", "{\"wait\":true,\"timeout_s\":60}", &second);
        assert_int_equal(second.status, 200);
        assert_true(second.success);
        assert_false(second.joined);
        assert_true(second.run_id != first.run_id);
        /* RFC 3339 UTC with milliseconds compares as text. */
        assert_true(strcmp(second.started_at, second.requested_at) >= 0);
        assert_true(strcmp(second.started_at, first.started_at) > 0);
        assert_int_equal(info(2, "rdb_saves") - saves0, 2);

        /* A retry with the same request_id: the same save, no new BGSAVE. */
        struct result a, b;
        persist("redis-c", "{\"wait\":true,\"request_id\":\"rollout-42\"}", &a);
        assert_int_equal(a.status, 200);
        assert_true(a.success);
        long long saves1 = info(2, "rdb_saves");
        persist("redis-c", "{\"wait\":true,\"request_id\":\"rollout-42\"}", &b);
        assert_int_equal(b.status, 200);
        assert_true(b.success);
        assert_int_equal(b.run_id, a.run_id);
        assert_string_equal(b.started_at, a.started_at);
        assert_int_equal(info(2, "rdb_saves"), saves1);
        slow_saves(2, 0);
}

/* Sample INFO rdb_bgsave_in_progress of the ssd pool's instances (redis-a, redis-b). */
static atomic_bool sampling;
static atomic_int max_running, samples;

static void *sampler(void *userdata)
{
        (void)userdata;
        redisContext *c[2] = {th_redis_connect(&cl.redis[0]), th_redis_connect(&cl.redis[1])};
        while (atomic_load(&sampling)) {
                int running = 0;
                for (int i = 0; i < 2; i++)
                        running += th_redis_info_int(c[i], "rdb_bgsave_in_progress") == 1;
                /* Both at once only if redis-a still saves after redis-b was seen saving (the
                 * two reads are not one instant: a's save may have ended in between). */
                if (running == 2 && th_redis_info_int(c[0], "rdb_bgsave_in_progress") != 1)
                        running = 1;
                if (running > atomic_load(&max_running))
                        atomic_store(&max_running, running);
                atomic_fetch_add(&samples, 1);
                clock_sleep_us(2 * 1000);
        }
        redisFree(c[0]);
        redisFree(c[1]);
        return NULL;
}

/* Whether the count `sql` reaches `min` within 30 s (no failure: the caller decides). */
static bool reaches(const char *sql, long long min)
{
        int64_t deadline = clock_mono_us() + 30 * USEC_PER_SEC;
        while (sql_count(&cl, sql) < min) {
                if (clock_mono_us() > deadline)
                        return false;
                clock_sleep_us(100 * 1000);
        }
        return true;
}

static void test_pool_limit_holds_under_competition(void **state)
{
        pthread_t t;
        (void)state;

        slow_saves(0, 300);
        slow_saves(1, 300);
        long long a0 = info(0, "rdb_saves"), b0 = info(1, "rdb_saves");
        th_pg_exec(cl.sql, "INSERT INTO tasks (instance_id, action, schedule) VALUES "
                           "('redis-a', 'bgsave', '*/2 * * * * *'), "
                           "('redis-b', 'bgsave', '*/2 * * * * *')");
        atomic_store(&sampling, true);
        assert_int_equal(pthread_create(&t, NULL, sampler, NULL), 0);
        /* A nightly pass over every instance competes too (started by hand). */
        char *out = NULL;
        long st = e2e_http(cl.r[leader].port, TOKEN, "POST", "/v1/nightly/start", "{}", &out, NULL);
        if (st != 200 && st != 202)
                fail_msg("nightly start: %ld %s", st, out);
        free(out);
        /* Every failure below is checked only after the sampler has stopped. */
        bool persisted = true;
        for (int i = 0; i < 6; i++) {
                struct result r;
                persist(i % 2 ? "redis-a" : "redis-b", "{\"wait\":true,\"timeout_s\":30}", &r);
                persisted = persisted && r.status == 200 && r.success;
        }
        bool scheduled = reaches("SELECT count(*) FROM runs WHERE kind = 'scheduled' AND "
                                 "state = 'succeeded'",
                                 4);
        /* A pool saturated by every-2-s schedules may starve the pass: remove them. */
        th_pg_exec(cl.sql, "DELETE FROM tasks");
        bool nightly = reaches("SELECT count(*) FROM runs WHERE kind = 'nightly' AND "
                               "state = 'succeeded' AND instance_id IN ('redis-a', 'redis-b')",
                               2);
        atomic_store(&sampling, false);
        pthread_join(t, NULL);
        if (!persisted || !scheduled || !nightly)
                dump_logs(&cl);
        assert_true(persisted);
        assert_true(scheduled);
        assert_true(nightly);
        printf("pool ssd: %d samples, at most %d save(s) at once; saves a %lld, b %lld\n",
               atomic_load(&samples), atomic_load(&max_running), info(0, "rdb_saves") - a0,
               info(1, "rdb_saves") - b0);
        assert_true(atomic_load(&samples) > 100);
        assert_int_equal(atomic_load(&max_running), 1);
        assert_true(info(0, "rdb_saves") - a0 >= 3);
        assert_true(info(1, "rdb_saves") - b0 >= 3);
}

int main(void)
{
        curl_global_init(CURL_GLOBAL_DEFAULT);
        const struct CMUnitTest tests[] = {
            cmocka_unit_test(test_concurrent_requests_share_one_save),
            cmocka_unit_test(test_request_during_save_gets_fresh_save),
            cmocka_unit_test(test_pool_limit_holds_under_competition),
        };
        int r = cmocka_run_group_tests(tests, setup, teardown);
        curl_global_cleanup();
        return r;
}
