/* SPDX-License-Identifier: Apache-2.0 */
/*
 * The nightly pass end to end with real processes: three persistd replicas, PostgreSQL, real
 * redis-servers with slow saves and kube-test-server. A pass over 12 instances in 3 pools
 * (plus one that is down) survives a SIGKILL of the leader; another is paused and resumed,
 * skips an instance saved recently, rides out a restart of the progress Redis, and raises a
 * Warning Event when its ETA passes the end of the window. The in-process version is
 * test-fleet-nightly.c.
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
#include <time.h>
#include <unistd.h>

#include <cjson/cJSON.h>
#include <cmocka.h>
#include <curl/curl.h>

#include "core/clock.h"
#include "test-e2e-nightly-util.h"

/* A start three hours away: no pass starts by itself, only by POST /v1/nightly/start. */
static char *nightly_yaml(int window_h, int skip_h)
{
        time_t t = time(NULL) + 3 * 3600;
        struct tm tm;
        gmtime_r(&t, &tm);
        return xasprintf("nightly:\n  enabled: true\n  start: \"%02d:%02d\"\n  window_h: %d\n"
                         "  max_attempts: 2\n  retry_backoff_s: 1\n  skip_if_saved_within_h: %d\n",
                         tm.tm_hour, tm.tm_min, window_h, skip_h);
}

/* Wait until the leader's registry has instance `id` (loaded through LISTEN/NOTIFY). */
static void wait_instance(struct cluster *cl, int l, const char *id)
{
        char *path = xasprintf("/v1/instances/%s", id);
        int64_t end = clock_mono_us() + 15 * USEC_PER_SEC;
        while (http(cl->r[l].port, "GET", path, NULL, NULL) != 200) {
                if (clock_mono_us() >= end) {
                        dump_logs(cl);
                        fail_msg("the leader did not load %s", id);
                }
                clock_sleep_us(100 * 1000);
        }
        free(path);
}

static void start_pass(struct cluster *cl, int l)
{
        char *body = NULL;
        long st = http(cl->r[l].port, "POST", "/v1/nightly/start", "{}", &body);
        if (st != 200 && st != 202) {
                fprintf(stderr, "POST /v1/nightly/start: %ld %s\n", st, body);
                dump_logs(cl);
        }
        assert_true(st == 200 || st == 202);
        free(body);
}

/* The progress Redis holds no member of any pass's pending set. */
static void assert_sets_empty(struct cluster *cl)
{
        redisContext *c = th_redis_connect(&cl->progress);
        redisReply *keys = th_redis_cmd(c, "KEYS *pending*");
        for (size_t i = 0; i < keys->elements; i++) {
                redisReply *n = th_redis_cmd(c, "SCARD %s", keys->element[i]->str);
                assert_int_equal(n->integer, 0);
                freeReplyObject(n);
        }
        freeReplyObject(keys);
        redisFree(c);
}

static void test_pass_with_leader_killed(void **state)
{
        struct cluster cl;
        struct nfleet f;
        (void)state;

        cluster_start(&cl, NULL, false);
        char *ny = nightly_yaml(6, 0);
        nf_configure(&cl, ny, NULL);
        free(ny);
        /* 12 instances in 3 pools (limit 1 each), a save ~0.6 s; one more that is down. */
        nf_start(&f, 12, 3, 600, 1000);
        for (int i = 0; i < N_REPLICAS; i++)
                replica_spawn(&cl, i);
        int l = wait_settled_leader(&cl, -1, 30 * USEC_PER_SEC, NULL);
        nf_register(&f, &cl, false);
        uint16_t down_port = th_free_port();
        char *sql = xasprintf("INSERT INTO instances (id, host, port, pool) VALUES "
                              "('n-down', '127.0.0.1', %u, 'pool-c')",
                              (unsigned)down_port);
        th_pg_exec(cl.sql, sql);
        free(sql);
        wait_instance(&cl, l, "n-11");
        wait_instance(&cl, l, "n-down");

        nf_mark(&f);
        start_pass(&cl, l);
        /* Mid-pass: a few saves done, some running. */
        int64_t end = clock_mono_us() + 20 * USEC_PER_SEC;
        for (;;) {
                nf_sample(&f);
                int done = 0;
                for (int i = 0; i < f.n; i++)
                        done += nf_saves(&f, i) > 0;
                if (done >= 3 && nf_saving(&f) > 0)
                        break;
                if (clock_mono_us() >= end) {
                        dump_logs(&cl);
                        fail_msg("the pass did not get going");
                }
                clock_sleep_us(20 * 1000);
        }
        bool in_flight[NF_MAX];
        for (int i = 0; i < f.n; i++)
                in_flight[i] = f.in[i].saving;
        kill(cl.r[l].pid, SIGKILL);
        th_wait_exit(cl.r[l].pid, 5000, NULL);
        cl.r[l].pid = -1;

        /* The next leader resumes from the set and finishes the pass. */
        int l2 = nf_wait_leader(&cl, &f, l, 15 * USEC_PER_SEC);
        nf_wait_sql(&cl, &f, "SELECT count(*) FROM passes WHERE state = 'finished'", 1,
                    40 * USEC_PER_SEC);
        nf_sample_for(&f, 200 * 1000);

        /* Never two saves at once in a pool; the pools saved in parallel. */
        for (int p = 0; p < 3; p++)
                assert_true(f.max_in_pool[p] <= 1);
        assert_true(f.max_pools_saving >= 2);
        /* None skipped; saved once, or (a save in flight at the kill) at most once more. */
        for (int i = 0; i < f.n; i++) {
                long long n = nf_saves(&f, i);
                if (n < 1 || n > (in_flight[i] ? 2 : 1))
                        fail_msg("%s: %lld saves (in flight at the kill: %d)", f.in[i].id, n,
                                 in_flight[i]);
        }
        /* The row is complete: 13 instances, 12 saved, the down one failed after 2 attempts. */
        assert_int_equal(sql_count(&cl, "SELECT count(*) FROM passes WHERE state = 'finished' "
                                        "AND finished_at IS NOT NULL AND total = 13 AND done = 12 "
                                        "AND failed = 1 AND skipped = 0"),
                         1);
        assert_true(sql_count(&cl, "SELECT count(*) FROM runs WHERE instance_id = 'n-down' AND "
                                   "kind = 'nightly' AND state = 'failed'") >= 2);
        assert_int_equal(sql_count(&cl, "SELECT count(*) FROM runs WHERE kind = 'nightly' AND "
                                        "state = 'succeeded' AND instance_id <> 'n-down'") >= 12,
                         1);
        assert_sets_empty(&cl);
        char *st = nf_nightly_state(&cl, l2);
        assert_string_equal(st, "finished");
        free(st);

        nf_stop(&f);
        cluster_stop(&cl);
}

static bool overrun_event_posted(const struct cluster *cl)
{
        char *body = NULL;
        char *path = xasprintf("/api/v1/namespaces/%s/events", cl->kube.namespace);
        long st = th_kube_request(&cl->kube, cl->kube.admin_token, "GET", path, NULL, NULL, &body);
        bool yes = st == 200 && strstr(body, "NightlyOverrun") && strstr(body, "Warning");
        free(body);
        free(path);
        return yes;
}

/* The ETA in /metrics (persistd_nightly_eta_seconds), -1 when absent. */
static double metric_eta(const struct cluster *cl, int l)
{
        char *body = NULL;
        double v = -1;
        if (http(cl->r[l].port, "GET", "/metrics", NULL, &body) == 200) {
                const char *p = strstr(body, "\npersistd_nightly_eta_seconds ");
                if (p)
                        v = strtod(p + strlen("\npersistd_nightly_eta_seconds "), NULL);
        }
        free(body);
        return v;
}

static void test_pause_skip_progress_restart_overrun(void **state)
{
        struct cluster cl;
        struct nfleet f;
        char *body = NULL;
        (void)state;

        cluster_start(&cl, NULL, false);
        char *ny = nightly_yaml(1, 1);
        nf_configure(&cl, ny, NULL);
        free(ny);
        nf_start(&f, 6, 2, 600, 1000);
        for (int i = 0; i < N_REPLICAS; i++)
                replica_spawn(&cl, i);
        int l = wait_settled_leader(&cl, -1, 30 * USEC_PER_SEC, NULL);
        /* The instances look very slow to the estimator (100 bytes/s): the ETA is hours away. */
        nf_register(&f, &cl, true);
        wait_instance(&cl, l, "n-05");

        /* n-00 was just saved (persist-now): skipped by the pass. */
        assert_int_equal(http(cl.r[l].port, "POST", "/v1/instances/n-00/persist", "{}", NULL), 202);
        nf_mark(&f);
        nf_wait_sql(&cl, &f,
                    "SELECT count(*) FROM runs WHERE instance_id = 'n-00' AND state = 'succeeded'",
                    1, 20 * USEC_PER_SEC);
        nf_mark(&f);
        start_pass(&cl, l);

        /* The ETA passes the end of the 1 h window: a Warning Event and the ETA metric. */
        int64_t end = clock_mono_us() + 15 * USEC_PER_SEC;
        while (!overrun_event_posted(&cl)) {
                if (clock_mono_us() >= end) {
                        dump_logs(&cl);
                        fail_msg("no NightlyOverrun Warning Event");
                }
                nf_sample_for(&f, 100 * 1000);
        }
        assert_int_equal(http(cl.r[l].port, "GET", "/v1/nightly", NULL, &body), 200);
        assert_non_null(strstr(body, "\"overrun\":true"));
        free(body);

        /* Pause once a save finished: running saves end, nothing new starts. */
        nf_wait_sql(&cl, &f,
                    "SELECT count(*) FROM runs WHERE kind = 'nightly' AND state = "
                    "'succeeded'",
                    1, 20 * USEC_PER_SEC);
        assert_int_equal(http(cl.r[l].port, "POST", "/v1/nightly/pause", "{}", NULL), 200);
        char *st = nf_nightly_state(&cl, l);
        assert_string_equal(st, "paused");
        free(st);
        /* The pass is still hours long by the estimates of what is left: so says the metric. */
        int64_t end2 =
            clock_mono_us() + 10 * USEC_PER_SEC; /* the gauges are published periodically */
        double eta;
        while ((eta = metric_eta(&cl, l)) <= 3600) {
                if (clock_mono_us() >= end2)
                        fail_msg("persistd_nightly_eta_seconds %g, not beyond the 1 h window", eta);
                nf_sample_for(&f, 100 * 1000);
        }
        end = clock_mono_us() + 10 * USEC_PER_SEC;
        do {
                nf_sample_for(&f, 100 * 1000);
                assert_true(clock_mono_us() < end);
        } while (nf_saving(&f) > 0);
        int starts = 0;
        for (int i = 0; i < f.n; i++)
                starts += f.in[i].starts;
        nf_sample_for(&f, 1500 * 1000);
        int starts2 = 0;
        for (int i = 0; i < f.n; i++)
                starts2 += f.in[i].starts;
        assert_int_equal(starts2, starts);
        assert_int_equal(sql_count(&cl, "SELECT count(*) FROM passes WHERE state = 'paused'"), 1);

        /* Resume; then the progress Redis restarts (from its dump) while saves run. */
        assert_int_equal(http(cl.r[l].port, "POST", "/v1/nightly/resume", "{}", NULL), 200);
        end = clock_mono_us() + 10 * USEC_PER_SEC;
        do {
                nf_sample_for(&f, 20 * 1000);
                assert_true(clock_mono_us() < end);
        } while (nf_saving(&f) == 0);
        redisContext *pc = th_redis_connect(&cl.progress);
        freeReplyObject(th_redis_cmd(pc, "SAVE"));
        redisFree(pc);
        kill(cl.progress.pid, SIGKILL);
        th_wait_exit(cl.progress.pid, 5000, NULL);
        nf_sample_for(&f, 1500 * 1000);
        th_redis_restart(&cl.progress, NULL);

        nf_wait_sql(&cl, &f, "SELECT count(*) FROM passes WHERE state = 'finished'", 1,
                    40 * USEC_PER_SEC);
        nf_sample_for(&f, 200 * 1000);
        for (int p = 0; p < 2; p++)
                assert_true(f.max_in_pool[p] <= 1);
        assert_int_equal(nf_saves(&f, 0), 0); /* skipped */
        for (int i = 1; i < f.n; i++)
                if (nf_saves(&f, i) != 1)
                        fail_msg("%s: %lld saves", f.in[i].id, nf_saves(&f, i));
        assert_int_equal(sql_count(&cl, "SELECT count(*) FROM passes WHERE state = 'finished' "
                                        "AND total = 6 AND done = 5 AND skipped = 1 AND "
                                        "failed = 0"),
                         1);
        assert_sets_empty(&cl);

        nf_stop(&f);
        cluster_stop(&cl);
}

int main(void)
{
        const struct CMUnitTest tests[] = {
            cmocka_unit_test(test_pass_with_leader_killed),
            cmocka_unit_test(test_pause_skip_progress_restart_overrun),
        };
        curl_global_init(CURL_GLOBAL_DEFAULT);
        int r = cmocka_run_group_tests(tests, NULL, NULL);
        curl_global_cleanup();
        return r;
}
