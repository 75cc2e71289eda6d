/* SPDX-License-Identifier: Apache-2.0 */
/*
 * The HTTP API end to end against real persistd replicas (PostgreSQL, Redis, kube-test-server):
 * every route's happy path and bad inputs on the leader, the follower's 503 with the leader's
 * identity and Retry-After, 401 without a valid token, /metrics naming every SPEC 11 metric
 * with HELP and TYPE, a failed save's Kubernetes Event, and persistctl's exit codes.
 */
#include <errno.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

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
        e2e_cluster_start(&cl, N_REPLICAS, &leader);
        return 0;
}

static int teardown(void **state)
{
        (void)state;
        cluster_stop(&cl);
        return 0;
}

/* The status, and the error code of the body when `code` is not NULL. */
static void expect(const char *method, const char *path, const char *body, long status,
                   const char *code, const char *field)
{
        char *out = NULL;
        long st = e2e_http(cl.r[leader].port, TOKEN, method, path, body, &out, NULL);
        if (st != status)
                fail_msg("%s %s: %ld, not %ld: %s", method, path, st, status, out);
        if (code) {
                cJSON *o = cJSON_Parse(out);
                cJSON *e = cJSON_GetObjectItem(o, "error");
                cJSON *c = cJSON_GetObjectItem(e, "code");
                if (!cJSON_IsString(c) || strcmp(c->valuestring, code) != 0)
                        fail_msg("%s %s: not %s: %s", method, path, code, out);
                if (field) {
                        cJSON *f = cJSON_GetObjectItem(e, "field");
                        if (!cJSON_IsString(f) || strcmp(f->valuestring, field) != 0)
                                fail_msg("%s %s: field not %s: %s", method, path, field, out);
                }
                cJSON_Delete(o);
        }
        free(out);
}

static void test_tasks_happy_and_bad_inputs(void **state)
{
        char *out = NULL;
        (void)state;

        /* Create, read, replace, patch, run, list, delete. */
        assert_int_equal(e2e_http(cl.r[leader].port, TOKEN, "POST", "/v1/tasks",
                                  "{\"instance_id\":\"redis-a\",\"action\":\"bgsave\","
                                  "\"schedule\":\"0 3 * * *\"}",
                                  &out, NULL),
                         201);
        cJSON *o = cJSON_Parse(out);
        free(out);
        cJSON *id = cJSON_GetObjectItem(o, "id");
        assert_true(cJSON_IsString(id));
        char *path = xasprintf("/v1/tasks/%s", id->valuestring);
        char *run = xasprintf("/v1/tasks/%s/run", id->valuestring);
        expect("GET", path, NULL, 200, NULL, NULL);
        expect("PUT", path,
               "{\"instance_id\":\"redis-b\",\"action\":\"bgsave\",\"schedule\":\"0 4 * * *\"}",
               200, NULL, NULL);
        expect("PATCH", path, "{\"enabled\":false}", 200, NULL, NULL);
        assert_int_equal(e2e_http(cl.r[leader].port, TOKEN, "GET", path, NULL, &out, NULL), 200);
        assert_non_null(strstr(out, "redis-b"));
        assert_non_null(strstr(out, "\"enabled\":false"));
        free(out);
        expect("POST", run, "{}", 202, NULL, NULL);
        assert_int_equal(e2e_http(cl.r[leader].port, TOKEN, "GET", "/v1/tasks?instance=redis-b",
                                  NULL, &out, NULL),
                         200);
        assert_non_null(strstr(out, id->valuestring));
        free(out);

        /* Bad bodies: each named by its code and, where it is about one, its field. */
        expect("POST", "/v1/tasks", "{\"instance_id\":", 400, "malformed_json", NULL);
        expect("POST", "/v1/tasks", "[1,2]", 400, "malformed_json", NULL);
        expect("POST", "/v1/tasks",
               "{\"instance_id\":\"redis-a\",\"action\":\"bgsave\",\"schedule\":\"0 3 * * *\","
               "\"colour\":\"red\"}",
               400, "unknown_field", "colour");
        expect("POST", "/v1/tasks",
               "{\"instance_id\":\"redis-a\",\"action\":\"bgsave\",\"schedule\":5}", 400,
               "wrong_type", "schedule");
        expect("POST", "/v1/tasks",
               "{\"instance_id\":\"redis-a\",\"action\":\"bgsave\",\"schedule\":\"0 25 * * *\"}",
               400, "invalid_value", "schedule");
        expect("POST", "/v1/tasks",
               "{\"instance_id\":\"redis-nope\",\"action\":\"bgsave\",\"schedule\":\"0 3 * * *\"}",
               400, "invalid_value", "instance_id");
        expect("POST", "/v1/tasks", "{\"instance_id\":\"redis-a\",\"action\":\"bgsave\"}", 400,
               "missing_field", "schedule");
        expect("PATCH", path, "{\"enabled\":\"yes\"}", 400, "wrong_type", "enabled");
        expect("PATCH", path, "{}", 400, "missing_field", NULL);
        expect("GET", "/v1/tasks?limit=0", NULL, 400, "out_of_range", "limit");
        expect("GET", "/v1/tasks?colour=red", NULL, 400, "unknown_parameter", "colour");
        expect("GET", "/v1/tasks/999999", NULL, 404, "not_found", NULL);
        expect("DELETE", "/v1/tasks", NULL, 405, "method_not_allowed", NULL);
        expect("GET", "/v1/nothing-here", NULL, 404, "not_found", NULL);

        /* Size limits: a body over http.max_body_bytes (64 KiB) is 413, a long id 414. */
        size_t n = 70 * 1024;
        char *big = malloc(n + 64);
        strcpy(big, "{\"instance_id\":\"");
        memset(big + strlen(big), 'x', n);
        strcpy(big + 16 + n, "\"}");
        expect("POST", "/v1/tasks", big, 413, "too_large", NULL);
        expect("POST", "/v1/persist", big, 413, "too_large", NULL);
        free(big);
        char longid[300];
        memset(longid, 'a', sizeof(longid) - 1);
        longid[sizeof(longid) - 1] = '\0';
        char *lp = xasprintf("/v1/tasks/%s", longid);
        expect("GET", lp, NULL, 414, "too_long", NULL);
        free(lp);

        expect("DELETE", path, NULL, 200, NULL, NULL);
        expect("GET", path, NULL, 404, "not_found", NULL);
        free(run);
        free(path);
        cJSON_Delete(o);
}

static void test_reads_and_persist_inputs(void **state)
{
        char *out = NULL;
        (void)state;

        expect("GET", "/v1/instances", NULL, 200, NULL, NULL);
        expect("GET", "/v1/instances?pool=ssd&enabled=true&limit=2", NULL, 200, NULL, NULL);
        expect("GET", "/v1/instances?enabled=maybe", NULL, 400, NULL, NULL);
        expect("GET", "/v1/instances/redis-nope", NULL, 404, "not_found", NULL);
        expect("GET", "/v1/runs?kind=persist&limit=5", NULL, 200, NULL, NULL);
        expect("GET", "/v1/runs?kind=weekly", NULL, 400, "invalid_value", "kind");
        expect("GET", "/v1/runs?since=yesterday", NULL, 400, "invalid_value", "since");
        expect("GET", "/v1/plan", NULL, 200, NULL, NULL);
        expect("GET", "/v1/plan?hour=2026-11-22T00:30:00Z", NULL, 200, NULL, NULL);
        expect("GET", "/v1/plan?hour=noon", NULL, 400, "invalid_value", "hour");
        expect("GET", "/v1/nightly", NULL, 200, NULL, NULL);
        expect("GET", "/v1/status", NULL, 200, NULL, NULL);

        /* Persist now: happy path with wait, then each bad input. */
        assert_int_equal(e2e_http(cl.r[leader].port, TOKEN, "POST", "/v1/instances/redis-c/persist",
                                  "{\"wait\":true,\"timeout_s\":30}", &out, NULL),
                         200);
        assert_non_null(strstr(out, "\"success\":true"));
        free(out);
        assert_int_equal(e2e_http(cl.r[leader].port, TOKEN, "POST", "/v1/persist",
                                  "{\"pool\":\"hdd\",\"wait\":true}", &out, NULL),
                         200);
        assert_non_null(strstr(out, "\"success\":true"));
        free(out);
        expect("POST", "/v1/instances/redis-c/persist", "", 202, NULL, NULL);
        expect("POST", "/v1/instances/redis-nope/persist", "{}", 404, "not_found", NULL);
        expect("POST", "/v1/instances/redis-c/persist", "{\"wait\":1}", 400, "wrong_type", "wait");
        expect("POST", "/v1/instances/redis-c/persist", "{\"timeout_s\":0}", 400, "out_of_range",
               "timeout_s");
        expect("POST", "/v1/instances/redis-c/persist", "{\"hurry\":true}", 400, "unknown_field",
               "hurry");
        expect("POST", "/v1/instances/redis-c/persist", "{\"wait\":", 400, "malformed_json", NULL);
        expect("POST", "/v1/persist", "{\"instances\":[\"redis-c\",\"redis-nope\"]}", 404, NULL,
               "instances");
        expect("POST", "/v1/persist", "{\"pool\":\"tape\"}", 404, NULL, "pool");
        expect("POST", "/v1/persist", "{\"pool\":\"hdd\",\"all\":true}", 400, NULL, NULL);
        expect("POST", "/v1/persist", "{\"instances\":\"redis-c\"}", 400, "wrong_type",
               "instances");
}

static void test_follower_and_auth(void **state)
{
        char *out = NULL, *hdr = NULL;
        (void)state;
        int f = (leader + 1) % N_REPLICAS;
        char *holder = lease_holder(&cl);

        const char *mut[][3] = {
            {"POST", "/v1/tasks", "{}"},
            {"PUT", "/v1/tasks/1", "{}"},
            {"PATCH", "/v1/tasks/1", "{}"},
            {"DELETE", "/v1/tasks/1", NULL},
            {"POST", "/v1/instances/redis-a/persist", "{}"},
            {"POST", "/v1/persist", "{\"all\":true}"},
            {"POST", "/v1/nightly/start", "{}"},
        };
        for (size_t i = 0; i < sizeof(mut) / sizeof(mut[0]); i++) {
                long st =
                    e2e_http(cl.r[f].port, TOKEN, mut[i][0], mut[i][1], mut[i][2], &out, &hdr);
                if (st != 503 || !strstr(out, "\"not_leader\"") || !strstr(out, holder) ||
                    !strcasestr(hdr, "Retry-After: 2"))
                        fail_msg("%s %s on a follower: %ld %s %s", mut[i][0], mut[i][1], st, hdr,
                                 out);
                free(out);
                free(hdr);
        }
        /* Reads work on a follower. */
        assert_int_equal(e2e_http(cl.r[f].port, TOKEN, "GET", "/v1/instances", NULL, &out, NULL),
                         200);
        assert_non_null(strstr(out, "redis-a"));
        free(out);
        free(holder);

        /* Without a valid token: 401 with WWW-Authenticate, even for unknown paths and on a
         * follower; the probes need none. */
        const char *tokens[] = {NULL, "wrong-token", "test-token-012345678", TOKEN "x"};
        const char *paths[] = {"/v1/status", "/v1/tasks", "/v1/no-such-path"};
        for (size_t t = 0; t < 4; t++)
                for (size_t p = 0; p < 3; p++)
                        for (int r = 0; r < 2; r++) {
                                uint16_t port = cl.r[r ? f : leader].port;
                                long st =
                                    e2e_http(port, tokens[t], "GET", paths[p], NULL, &out, &hdr);
                                if (st != 401 || !strstr(out, "\"unauthorized\"") ||
                                    !strcasestr(hdr, "WWW-Authenticate: Bearer"))
                                        fail_msg("%s without a valid token: %ld %s", paths[p], st,
                                                 out);
                                free(out);
                                free(hdr);
                        }
        assert_int_equal(
            e2e_http(cl.r[leader].port, NULL, "POST", "/v1/persist", "{\"all\":true}", NULL, NULL),
            401);
        assert_int_equal(e2e_http(cl.r[f].port, NULL, "GET", "/healthz", NULL, NULL, NULL), 200);
        assert_int_equal(e2e_http(cl.r[f].port, NULL, "GET", "/readyz", NULL, NULL, NULL), 200);
}

/* SPEC 11's metrics, as src/http/metrics.c names them. */
static const char *const metric_names[] = {
    "persistd_is_leader",
    "persistd_leader_transitions_total",
    "persistd_lease_renew_failures_total",
    "persistd_lease_renew_duration_seconds",
    "persistd_pool_saves_running",
    "persistd_pool_saves_queued",
    "persistd_pool_limit",
    "persistd_runs_total",
    "persistd_save_duration_seconds",
    "persistd_schedule_lateness_seconds",
    "persistd_estimate_error_ratio",
    "persistd_plan_overrun_seconds",
    "persistd_nightly_pending",
    "persistd_nightly_eta_seconds",
    "persistd_instances_last_save_failed",
    "persistd_instances_save_config_drifted",
    "persistd_unusable_rows",
    "persistd_http_requests_total",
    "persistd_metrics_series_dropped_total",
};

static void test_metrics_and_failed_save_event(void **state)
{
        char *out = NULL;
        (void)state;

        /* A failed save (the instance is down): persist --wait says so, a Warning Event reaches
         * the API server, and the failure shows in the metrics. */
        assert_int_equal(e2e_http(cl.r[leader].port, TOKEN, "POST",
                                  "/v1/instances/redis-down/persist", "{\"wait\":true}", &out,
                                  NULL),
                         200);
        assert_non_null(strstr(out, "\"success\":false"));
        assert_non_null(strstr(out, "\"failed\""));
        free(out);
        char *evpath = xasprintf("/api/v1/namespaces/%s/events", cl.kube.namespace);
        int64_t deadline = clock_mono_us() + 15 * USEC_PER_SEC;
        bool seen = false;
        while (!seen && clock_mono_us() < deadline) {
                char *body = NULL;
                if (th_kube_request(&cl.kube, cl.kube.admin_token, "GET", evpath, NULL, NULL,
                                    &body) == 200)
                        seen = strstr(body, "\"SaveFailed\"") && strstr(body, "redis-down") &&
                               strstr(body, "\"Warning\"");
                free(body);
                if (!seen)
                        clock_sleep_us(100 * 1000);
        }
        free(evpath);
        assert_true(seen);

        for (int i = 0; i < N_REPLICAS; i++) {
                assert_int_equal(e2e_http(cl.r[i].port, NULL, "GET", "/metrics", NULL, &out, NULL),
                                 200);
                for (size_t m = 0; m < sizeof(metric_names) / sizeof(metric_names[0]); m++) {
                        char *help = xasprintf("# HELP %s ", metric_names[m]);
                        char *type = xasprintf("# TYPE %s ", metric_names[m]);
                        if (!strstr(out, help) || !strstr(out, type))
                                fail_msg("replica %d: no HELP/TYPE for %s", i, metric_names[m]);
                        free(help);
                        free(type);
                }
                free(out);
        }
        /* The leader publishes the failure per pool (its gauges refresh periodically). */
        deadline = clock_mono_us() + 15 * USEC_PER_SEC;
        for (;;) {
                assert_int_equal(
                    e2e_http(cl.r[leader].port, NULL, "GET", "/metrics", NULL, &out, NULL), 200);
                seen = strstr(out, "persistd_instances_last_save_failed{pool=\"ssd\"} 1") &&
                       strstr(out, "persistd_runs_total{");
                if (seen || clock_mono_us() > deadline)
                        break;
                free(out);
                clock_sleep_us(200 * 1000);
        }
        if (!seen)
                fail_msg("no failed save in the leader's metrics:\n%s", out);
        free(out);
}

static void test_persistctl_exit_codes(void **state)
{
        char *out = NULL;
        (void)state;
        int f = (leader + 1) % N_REPLICAS;
        uint16_t lp = cl.r[leader].port;

        const char *ok[] = {"persist", "redis-a", "--wait", "--timeout", "30", NULL};
        assert_int_equal(e2e_persistctl(&cl, lp, ok, &out), 0);
        free(out);
        const char *pool[] = {"persist", "--pool", "hdd", "--wait", NULL};
        assert_int_equal(e2e_persistctl(&cl, lp, pool, NULL), 0);
        const char *nowait[] = {"persist", "redis-c", NULL};
        assert_int_equal(e2e_persistctl(&cl, lp, nowait, NULL), 0);
        const char *down[] = {"persist", "redis-down", "--wait", "--timeout", "30", NULL};
        assert_int_equal(e2e_persistctl(&cl, lp, down, NULL), 1);
        const char *unknown[] = {"persist", "redis-nope", "--wait", NULL};
        assert_int_equal(e2e_persistctl(&cl, lp, unknown, NULL), 4);
        assert_int_equal(e2e_persistctl(&cl, cl.r[f].port, ok, NULL), 5);
        const char *bad[] = {"persist", "--frobnicate", NULL};
        assert_int_equal(e2e_persistctl(&cl, lp, bad, NULL), 2);
        const char *status[] = {"status", NULL};
        assert_int_equal(e2e_persistctl(&cl, cl.r[f].port, status, NULL), 0);
        const char *ready[] = {"ready", NULL};
        assert_int_equal(e2e_persistctl(&cl, lp, ready, NULL), 0);
        assert_int_equal(e2e_persistctl(&cl, th_free_port(), status, NULL), 3);
}

int main(void)
{
        curl_global_init(CURL_GLOBAL_DEFAULT);
        const struct CMUnitTest tests[] = {
            cmocka_unit_test(test_tasks_happy_and_bad_inputs),
            cmocka_unit_test(test_reads_and_persist_inputs),
            cmocka_unit_test(test_follower_and_auth),
            cmocka_unit_test(test_metrics_and_failed_save_event),
            cmocka_unit_test(test_persistctl_exit_codes),
        };
        int r = cmocka_run_group_tests(tests, setup, teardown);
        curl_global_cleanup();
        return r;
}
