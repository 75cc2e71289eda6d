/* SPDX-License-Identifier: Apache-2.0 */
/*
 * The HTTP API over real HTTP on a loopback port, against the in-process fake backend: auth,
 * routing, the leader-only rule, every endpoint's answer and its precise 4xx errors, size
 * limits, health and readiness, /metrics, and persist-now requests that wait, time out and
 * crowd in.
 */
#include <cjson/cJSON.h>
#include <curl/curl.h>
#include <errno.h>
#include <pthread.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <arpa/inet.h>
#include <netinet/in.h>
#include <sys/socket.h>
#include <sys/time.h>
#include <unistd.h>

#include <cmocka.h>

#include "core/clock.h"
#include "core/macro.h"
#include "harness.h"
#include "http/metrics.h"
#include "http/server.h"
#include "test-http-fake.h"

static struct http_server *server;
static struct metrics *metrics;
static uint16_t port;

static int setup(void **state)
{
        fake_reset();
        return 0;
}

/* A request with the right token; the body parsed (caller deletes). */
static cJSON *req(const char *method, const char *path, const char *body, long *status)
{
        struct http_reply r;
        fake_http(port, method, path, FAKE_TOKEN, body, &r);
        *status = r.status;
        char ct[128];
        assert_non_null(http_reply_header(&r, "content-type", ct, sizeof(ct)));
        assert_string_equal(ct, "application/json");
        cJSON *j = cJSON_Parse(r.body);
        if (!j)
                fail_msg("not JSON: %s", r.body);
        http_reply_free(&r);
        return j;
}

static const char *str(const cJSON *o, const char *path)
{
        static char buf[8][512];
        static int n;
        char name[64];
        const cJSON *v = o;
        while (v && *path) {
                size_t len = strcspn(path, ".");
                snprintf(name, sizeof(name), "%.*s", (int)len, path);
                v = cJSON_GetObjectItemCaseSensitive(v, name);
                path += len + (path[len] == '.');
        }
        char *b = buf[n++ % 8];
        if (!v)
                snprintf(b, 512, "<missing>");
        else if (cJSON_IsString(v))
                snprintf(b, 512, "%s", v->valuestring);
        else {
                char *s = cJSON_PrintUnformatted(v);
                snprintf(b, 512, "%s", s);
                free(s);
        }
        return b;
}

/* Expect `status` and an error with `code` (and `field` unless NULL); returns the message. */
static void expect_error(const char *method, const char *path, const char *body, long status,
                         const char *code, const char *field, const char *message_part)
{
        long st;
        cJSON *j = req(method, path, body, &st);
        if (st != status)
                fail_msg("%s %s: HTTP %ld, expected %ld: %s", method, path, st, status,
                         str(j, "error.message"));
        assert_string_equal(str(j, "error.code"), code);
        if (field)
                assert_string_equal(str(j, "error.field"), field);
        if (message_part && !strstr(str(j, "error.message"), message_part))
                fail_msg("message \"%s\" lacks \"%s\"", str(j, "error.message"), message_part);
        cJSON_Delete(j);
}

/* ---- auth, routing ------------------------------------------------------------------------- */

static void test_auth(void **state)
{
        struct http_reply r;
        char h[256];
        const char *bad[] = {NULL,           "",
                             "s3cret-toke",  "s3cret-tokenX",
                             "S3CRET-TOKEN", "completely-different-and-much-longer-token"};
        for (size_t i = 0; i < ELEMENTSOF(bad); i++) {
                fake_http(port, "GET", "/v1/status", bad[i], NULL, &r);
                assert_int_equal(r.status, 401);
                assert_non_null(http_reply_header(&r, "www-authenticate", h, sizeof(h)));
                assert_non_null(strstr(h, "Bearer"));
                assert_non_null(strstr(r.body, "\"code\":\"unauthorized\""));
                assert_null(strstr(r.body, FAKE_TOKEN));
                http_reply_free(&r);
        }
        /* An unknown /v1 path says nothing without a token. */
        fake_http(port, "GET", "/v1/secrets", NULL, NULL, &r);
        assert_int_equal(r.status, 401);
        http_reply_free(&r);
        /* Health and metrics need none. */
        const char *open[] = {"/healthz", "/readyz", "/metrics"};
        for (size_t i = 0; i < ELEMENTSOF(open); i++) {
                fake_http(port, "GET", open[i], NULL, NULL, &r);
                assert_int_equal(r.status, 200);
                http_reply_free(&r);
        }
        long st;
        cJSON *j = req("GET", "/v1/status", NULL, &st);
        assert_int_equal(st, 200);
        cJSON_Delete(j);
}

static void test_routing(void **state)
{
        struct http_reply r;
        char h[256];
        expect_error("GET", "/v1/nothing", NULL, 404, "not_found", NULL, "/v1/nothing");
        expect_error("GET", "/v1/tasks/", NULL, 404, "not_found", NULL, NULL);
        expect_error("GET", "/nope", NULL, 404, "not_found", NULL, NULL);

        fake_http(port, "POST", "/v1/tasks/hourly-a", FAKE_TOKEN, "{}", &r);
        assert_int_equal(r.status, 405);
        assert_non_null(http_reply_header(&r, "allow", h, sizeof(h)));
        assert_string_equal(h, "GET, PUT, PATCH, DELETE");
        assert_non_null(strstr(r.body, "\"code\":\"method_not_allowed\""));
        http_reply_free(&r);
        fake_http(port, "DELETE", "/healthz", NULL, NULL, &r);
        assert_int_equal(r.status, 405);
        assert_non_null(http_reply_header(&r, "allow", h, sizeof(h)));
        assert_string_equal(h, "GET");
        http_reply_free(&r);

        /* Long segments and query values. */
        char path[400], longv[300];
        memset(longv, 'x', sizeof(longv) - 1);
        longv[sizeof(longv) - 1] = '\0';
        snprintf(path, sizeof(path), "/v1/tasks/%.200s", longv);
        expect_error("GET", path, NULL, 414, "too_long", NULL, NULL);
        snprintf(path, sizeof(path), "/v1/tasks?instance=%s", longv);
        expect_error("GET", path, NULL, 414, "too_long", "instance", NULL);
        snprintf(path, sizeof(path), "/v1/instances/%.128s", longv);
        expect_error("GET", path, NULL, 414, "too_long", NULL, "127");
        snprintf(path, sizeof(path), "/v1/tasks?instance=%.130s", longv);
        expect_error("GET", path, NULL, 400, "out_of_range", "instance", NULL);
        expect_error("GET", "/v1/tasks?colour=red", NULL, 400, "unknown_parameter", "colour", NULL);
        expect_error("GET", "/v1/tasks?limit=1&limit=2", NULL, 400, "duplicate_parameter", "limit",
                     NULL);
}

static void test_follower(void **state)
{
        fake_lock();
        fake_get()->is_leader = false;
        int calls = fake_get()->backend_calls;
        fake_unlock();

        const char *muts[][3] = {
            {"POST", "/v1/tasks", "{\"instance_id\":\"redis-a\",\"schedule\":\"* * * * *\"}"},
            {"PUT", "/v1/tasks/hourly-a", "{}"},
            {"PATCH", "/v1/tasks/hourly-a", "{\"enabled\":false}"},
            {"DELETE", "/v1/tasks/hourly-a", NULL},
            {"POST", "/v1/tasks/hourly-a/run", NULL},
            {"POST", "/v1/instances/redis-a/persist", "{\"wait\":true}"},
            {"POST", "/v1/persist", "{\"all\":true}"},
            {"POST", "/v1/nightly/start", NULL},
            {"POST", "/v1/nightly/pause", NULL},
            {"POST", "/v1/nightly/resume", NULL},
        };
        for (size_t i = 0; i < ELEMENTSOF(muts); i++) {
                struct http_reply r;
                char h[64];
                fake_http(port, muts[i][0], muts[i][1], FAKE_TOKEN, muts[i][2], &r);
                assert_int_equal(r.status, 503);
                assert_non_null(http_reply_header(&r, "retry-after", h, sizeof(h)));
                assert_string_equal(h, "3");
                cJSON *j = cJSON_Parse(r.body);
                assert_string_equal(str(j, "error.code"), "not_leader");
                assert_string_equal(str(j, "error.leader"), "persistd-0_abcde");
                cJSON_Delete(j);
                http_reply_free(&r);
        }
        fake_lock();
        assert_int_equal(fake_get()->backend_calls, calls); /* nothing reached the backend */
        fake_unlock();

        /* Reads still work on a follower. */
        long st;
        cJSON *j = req("GET", "/v1/tasks", NULL, &st);
        assert_int_equal(st, 200);
        cJSON_Delete(j);
        j = req("GET", "/v1/status", NULL, &st);
        assert_string_equal(str(j, "is_leader"), "false");
        assert_string_equal(str(j, "leader"), "persistd-0_abcde");
        cJSON_Delete(j);
}

/* ---- tasks ----------------------------------------------------------------------------------- */

static void test_tasks_happy_path(void **state)
{
        long st;
        cJSON *j = req("GET", "/v1/tasks", NULL, &st);
        assert_int_equal(st, 200);
        assert_int_equal(cJSON_GetArraySize(cJSON_GetObjectItem(j, "tasks")), 2);
        assert_string_equal(str(j, "next_cursor"), "null");
        cJSON_Delete(j);

        j = req("GET", "/v1/tasks?instance=redis-a", NULL, &st);
        assert_int_equal(cJSON_GetArraySize(cJSON_GetObjectItem(j, "tasks")), 1);
        cJSON_Delete(j);
        j = req("GET", "/v1/tasks?enabled=false", NULL, &st);
        cJSON *t = cJSON_GetArrayItem(cJSON_GetObjectItem(j, "tasks"), 0);
        assert_string_equal(str(t, "id"), "nightly-c");
        assert_int_equal(cJSON_GetArraySize(cJSON_GetObjectItem(j, "tasks")), 1);
        cJSON_Delete(j);
        j = req("GET", "/v1/tasks?limit=1", NULL, &st);
        assert_int_equal(cJSON_GetArraySize(cJSON_GetObjectItem(j, "tasks")), 1);
        assert_string_equal(str(j, "next_cursor"), "1");
        cJSON_Delete(j);
        j = req("GET", "/v1/tasks?limit=1&cursor=1", NULL, &st);
        assert_string_equal(str(cJSON_GetArrayItem(cJSON_GetObjectItem(j, "tasks"), 0), "id"),
                            "nightly-c");
        cJSON_Delete(j);

        j = req("POST", "/v1/tasks",
                "{\"instance_id\":\"redis-b\",\"schedule\":\"*/10 * * * *\","
                "\"description\":\"ten\"}",
                &st);
        assert_int_equal(st, 201);
        assert_string_equal(str(j, "id"), "task-1");
        assert_string_equal(str(j, "action"), "bgsave");
        assert_string_equal(str(j, "misfire"), "run_once");
        assert_string_equal(str(j, "enabled"), "true");
        assert_string_equal(str(j, "starting_deadline_s"), "0");
        cJSON_Delete(j);

        j = req("GET", "/v1/tasks/task-1", NULL, &st);
        assert_int_equal(st, 200);
        assert_string_equal(str(j, "schedule"), "*/10 * * * *");
        cJSON_Delete(j);

        j = req("PATCH", "/v1/tasks/task-1", "{\"enabled\":false,\"misfire\":\"skip\"}", &st);
        assert_int_equal(st, 200);
        assert_string_equal(str(j, "enabled"), "false");
        assert_string_equal(str(j, "misfire"), "skip");
        assert_string_equal(str(j, "description"), "ten"); /* PATCH keeps the rest */
        cJSON_Delete(j);

        j = req("PUT", "/v1/tasks/task-1",
                "{\"id\":\"task-1\",\"instance_id\":\"redis-c\",\"schedule\":\"0 * * * *\","
                "\"action\":\"bgrewriteaof\",\"starting_deadline_s\":60}",
                &st);
        assert_int_equal(st, 200);
        assert_string_equal(str(j, "instance_id"), "redis-c");
        assert_string_equal(str(j, "action"), "bgrewriteaof");
        assert_string_equal(str(j, "description"), ""); /* PUT replaces */
        assert_string_equal(str(j, "enabled"), "true");
        assert_string_equal(str(j, "starting_deadline_s"), "60");
        cJSON_Delete(j);

        j = req("POST", "/v1/tasks/task-1/run", NULL, &st);
        assert_int_equal(st, 202);
        assert_string_equal(str(j, "kind"), "manual");
        assert_string_equal(str(j, "task_id"), "task-1");
        assert_string_equal(str(j, "state"), "claimed");
        cJSON_Delete(j);

        j = req("DELETE", "/v1/tasks/task-1", NULL, &st);
        assert_int_equal(st, 200);
        assert_string_equal(str(j, "deleted"), "task-1");
        cJSON_Delete(j);
        expect_error("GET", "/v1/tasks/task-1", NULL, 404, "not_found", NULL,
                     "task \"task-1\" not found");
        expect_error("DELETE", "/v1/tasks/task-1", NULL, 404, "not_found", NULL, "task-1");
        expect_error("POST", "/v1/tasks/nope/run", NULL, 404, "not_found", NULL, "nope");
}

static int task_count(void)
{
        long st;
        cJSON *j = req("GET", "/v1/tasks", NULL, &st);
        int n = cJSON_GetArraySize(cJSON_GetObjectItem(j, "tasks"));
        cJSON_Delete(j);
        return n;
}

static void test_tasks_bad_input(void **state)
{
        int before = task_count();
        static const struct {
                const char *body;
                long status;
                const char *code, *field, *message;
        } cases[] = {
            {"{\"instance_id\": \"redis-a\", ", 400, "malformed_json", NULL, "at byte"},
            {"", 400, "malformed_json", NULL, "must be a JSON object"},
            {"[1,2]", 400, "malformed_json", NULL, "not an array"},
            {"{} {}", 400, "malformed_json", NULL, "after the object"},
            {"{\"instance_id\":\"redis-a\",\"schedule\":\"* * * * *\",\"colour\":1}", 400,
             "unknown_field", "colour", "colour: unknown field"},
            {"{\"instance_id\":\"redis-a\"}", 400, "missing_field", "schedule",
             "schedule: required"},
            {"{\"schedule\":\"* * * * *\"}", 400, "missing_field", "instance_id", NULL},
            {"{\"instance_id\":\"redis-a\",\"schedule\":\"* * * * *\",\"enabled\":\"yes\"}", 400,
             "wrong_type", "enabled", "expected a boolean, got a string"},
            {"{\"instance_id\":7,\"schedule\":\"* * * * *\"}", 400, "wrong_type", "instance_id",
             "expected a string, got a number"},
            {"{\"instance_id\":\"redis-a\",\"schedule\":\"* * * * *\","
             "\"starting_deadline_s\":-1}",
             400, "out_of_range", "starting_deadline_s", "[0, 86400]"},
            {"{\"instance_id\":\"redis-a\",\"schedule\":\"* * * * *\","
             "\"starting_deadline_s\":1.5}",
             400, "wrong_type", "starting_deadline_s", "integer"},
            {"{\"instance_id\":\"redis-a\",\"schedule\":\"* * * * *\",\"action\":\"save\"}", 400,
             "invalid_value", "action",
             "\"save\" is not one of \"bgsave\", "
             "\"bgrewriteaof\""},
            {"{\"instance_id\":\"\",\"schedule\":\"* * * * *\"}", 400, "invalid_value",
             "instance_id", "must not be empty"},
            {"{\"instance_id\":\"redis-a\",\"schedule\":\"* * * * *\","
             "\"instance_id\":\"redis-b\"}",
             400, "duplicate_field", "instance_id", NULL},
            /* What the backend checks. */
            {"{\"instance_id\":\"redis-a\",\"schedule\":\"every hour\"}", 400, "invalid_value",
             "schedule", "not a cron expression"},
            {"{\"instance_id\":\"redis-zz\",\"schedule\":\"* * * * *\"}", 400, "invalid_value",
             "instance_id", "unknown instance \"redis-zz\""},
            {"{\"id\":\"hourly-a\",\"instance_id\":\"redis-a\",\"schedule\":\"* * * * *\"}", 409,
             "conflict", "id", "already exists"},
        };
        for (size_t i = 0; i < ELEMENTSOF(cases); i++)
                expect_error("POST", "/v1/tasks", cases[i].body, cases[i].status, cases[i].code,
                             cases[i].field, cases[i].message);
        assert_int_equal(task_count(), before); /* nothing half-applied */

        expect_error("PATCH", "/v1/tasks/hourly-a", "{}", 400, "missing_field", NULL,
                     "sets no field");
        expect_error("PATCH", "/v1/tasks/hourly-a", "{\"id\":\"other\"}", 400, "invalid_value",
                     "id", "does not match");
        expect_error("PATCH", "/v1/tasks/hourly-a", "{\"enabled\":false,\"schedule\":\"bad\"}", 400,
                     "invalid_value", "schedule", NULL);
        expect_error("PUT", "/v1/tasks/hourly-a", "{\"schedule\":\"* * * * *\"}", 400,
                     "missing_field", "instance_id", NULL);
        expect_error("PATCH", "/v1/tasks/nope", "{\"enabled\":false}", 404, "not_found", NULL,
                     NULL);
        long st;
        cJSON *j = req("GET", "/v1/tasks/hourly-a", NULL, &st);
        assert_string_equal(str(j, "enabled"), "true"); /* the failed PATCH changed nothing */
        assert_string_equal(str(j, "schedule"), "15 * * * *");
        cJSON_Delete(j);
        expect_error("POST", "/v1/tasks/hourly-a/run", "{\"now\":true}", 400, "unknown_field",
                     "now", NULL);
}

struct feed {
        size_t left;
};

static size_t feed_body(char *buf, size_t size, size_t nmemb, void *userdata)
{
        struct feed *f = userdata;
        size_t n = MIN(f->left, size * nmemb);
        memset(buf, ' ', n);
        f->left -= n;
        return n;
}

/* A chunked body has no Content-Length: the cap applies while it is read. */
static long post_chunked(size_t len)
{
        char url[128];
        struct feed f = {.left = len};
        long status = 0;
        snprintf(url, sizeof(url), "http://127.0.0.1:%u/v1/tasks", port);
        CURL *c = curl_easy_init();
        struct curl_slist *h = curl_slist_append(NULL, "Authorization: Bearer " FAKE_TOKEN);
        h = curl_slist_append(h, "Transfer-Encoding: chunked");
        h = curl_slist_append(h, "Expect:");
        curl_easy_setopt(c, CURLOPT_URL, url);
        curl_easy_setopt(c, CURLOPT_POST, 1L);
        curl_easy_setopt(c, CURLOPT_HTTPHEADER, h);
        curl_easy_setopt(c, CURLOPT_READFUNCTION, feed_body);
        curl_easy_setopt(c, CURLOPT_READDATA, &f);
        curl_easy_setopt(c, CURLOPT_NOSIGNAL, 1L);
        curl_easy_setopt(c, CURLOPT_TIMEOUT_MS, 20000L);
        FILE *devnull = fopen("/dev/null", "w");
        curl_easy_setopt(c, CURLOPT_WRITEDATA, devnull);
        assert_int_equal(curl_easy_perform(c), CURLE_OK);
        curl_easy_getinfo(c, CURLINFO_RESPONSE_CODE, &status);
        fclose(devnull);
        curl_slist_free_all(h);
        curl_easy_cleanup(c);
        return status;
}

static void test_body_limit(void **state)
{
        char *big = malloc(6000);
        memset(big, ' ', 5999);
        big[0] = '{';
        big[5997] = '}';
        big[5998] = '\0';
        struct http_reply r;
        fake_http(port, "POST", "/v1/tasks", FAKE_TOKEN, big, &r);
        assert_int_equal(r.status, 413);
        assert_non_null(strstr(r.body, "\"code\":\"too_large\""));
        assert_non_null(strstr(r.body, "4096 bytes"));
        http_reply_free(&r);
        free(big);
        /* Still serving afterwards. */
        fake_http(port, "GET", "/healthz", NULL, NULL, &r);
        assert_int_equal(r.status, 200);
        http_reply_free(&r);

        assert_int_equal(post_chunked(100000), 413);
        /* Within the cap, a chunked body is read whole (only white space: malformed). */
        assert_int_equal(post_chunked(3000), 400);
        assert_int_equal(task_count(), 2);
}

/* ---- instances, runs, plan, nightly, status ------------------------------------------------ */

static void test_instances(void **state)
{
        long st;
        cJSON *j = req("GET", "/v1/instances", NULL, &st);
        assert_int_equal(st, 200);
        assert_int_equal(cJSON_GetArraySize(cJSON_GetObjectItem(j, "instances")), 5);
        cJSON_Delete(j);
        j = req("GET", "/v1/instances?pool=ssd&enabled=true", NULL, &st);
        assert_int_equal(cJSON_GetArraySize(cJSON_GetObjectItem(j, "instances")), 2);
        cJSON_Delete(j);
        j = req("GET", "/v1/instances/redis-bad", NULL, &st);
        assert_int_equal(st, 200);
        assert_string_equal(str(j, "pool"), "hdd");
        assert_string_equal(str(j, "last_save.state"), "failed");
        assert_string_equal(str(j, "last_save.error"), "MISCONF disk full");
        assert_string_equal(str(j, "last_save.lastsave"), "1763769000");
        assert_string_equal(str(j, "capabilities.redis_version"), "7.0.15");
        assert_string_equal(str(j, "capabilities.save_config_ok"), "true");
        assert_string_equal(str(j, "estimate.used_memory"), "1073741824");
        assert_string_equal(str(j, "estimate.duration_s"), "0.02");
        cJSON_Delete(j);
        expect_error("GET", "/v1/instances/redis-zz", NULL, 404, "not_found", NULL,
                     "instance \"redis-zz\" not found");
        expect_error("GET", "/v1/instances?enabled=maybe", NULL, 400, "invalid_value", "enabled",
                     "expected true or false");
}

static void test_runs(void **state)
{
        long st;
        cJSON *j = req("GET", "/v1/runs?limit=3", NULL, &st);
        assert_int_equal(st, 200);
        cJSON *runs = cJSON_GetObjectItem(j, "runs");
        assert_int_equal(cJSON_GetArraySize(runs), 3);
        assert_string_equal(str(cJSON_GetArrayItem(runs, 0), "id"), "7");
        assert_string_equal(str(j, "next_cursor"), "5");
        cJSON_Delete(j);
        j = req("GET", "/v1/runs?limit=3&cursor=5", NULL, &st);
        runs = cJSON_GetObjectItem(j, "runs");
        assert_string_equal(str(cJSON_GetArrayItem(runs, 0), "id"), "4");
        assert_string_equal(str(cJSON_GetArrayItem(runs, 1), "error"), "MISCONF disk full");
        assert_string_equal(str(j, "next_cursor"), "2");
        cJSON_Delete(j);
        j = req("GET", "/v1/runs?limit=3&cursor=2", NULL, &st);
        assert_int_equal(cJSON_GetArraySize(cJSON_GetObjectItem(j, "runs")), 1);
        assert_string_equal(str(j, "next_cursor"), "null");
        cJSON_Delete(j);

        j = req("GET", "/v1/runs?kind=nightly&state=succeeded", NULL, &st);
        runs = cJSON_GetObjectItem(j, "runs");
        assert_int_equal(cJSON_GetArraySize(runs), 3);
        assert_string_equal(str(cJSON_GetArrayItem(runs, 0), "task_id"), "null");
        assert_string_equal(str(cJSON_GetArrayItem(runs, 0), "scheduled_for"),
                            "2025-11-22T00:06:00.000Z");
        cJSON_Delete(j);
        j = req("GET", "/v1/runs?since=2025-11-22T00:03:00Z&until=2025-11-22T00:05:00Z", NULL, &st);
        assert_int_equal(cJSON_GetArraySize(cJSON_GetObjectItem(j, "runs")), 2);
        cJSON_Delete(j);

        expect_error("GET", "/v1/runs?kind=hourly", NULL, 400, "invalid_value", "kind",
                     "\"hourly\" is not one of scheduled, nightly, manual, persist");
        expect_error("GET", "/v1/runs?state=done", NULL, 400, "invalid_value", "state", NULL);
        expect_error("GET", "/v1/runs?since=yesterday", NULL, 400, "invalid_value", "since",
                     "RFC 3339");
        expect_error("GET", "/v1/runs?since=2026-11-22T00:05:00Z&until=2026-11-22T00:05:00Z", NULL,
                     400, "out_of_range", "until", NULL);
        expect_error("GET", "/v1/runs?limit=0", NULL, 400, "out_of_range", "limit", "1 to 1000");
        expect_error("GET", "/v1/runs?limit=1001", NULL, 400, "out_of_range", "limit", NULL);
        expect_error("GET", "/v1/runs?limit=ten", NULL, 400, "out_of_range", "limit", NULL);
        expect_error("GET", "/v1/runs?cursor=zz", NULL, 400, "invalid_value", "cursor", NULL);
}

static void test_plan_nightly_status(void **state)
{
        long st;
        cJSON *j = req("GET", "/v1/plan?hour=2026-11-22T00:30:00Z", NULL, &st);
        assert_int_equal(st, 200);
        assert_string_equal(str(j, "hour"), "2026-11-22T00:00:00.000Z");
        assert_string_equal(str(j, "loaded"), "true");
        cJSON *slots = cJSON_GetObjectItem(j, "slots");
        assert_int_equal(cJSON_GetArraySize(slots), 2);
        assert_string_equal(str(cJSON_GetArrayItem(slots, 1), "expected_start"),
                            "2026-11-22T00:45:00.000Z");
        assert_string_equal(
            str(cJSON_GetArrayItem(cJSON_GetObjectItem(j, "pools"), 0), "overrun_s"), "100");
        cJSON_Delete(j);
        j = req("GET", "/v1/plan", NULL, &st);
        assert_int_equal(st, 200);
        cJSON_Delete(j);
        expect_error("GET", "/v1/plan?hour=25:00", NULL, 400, "invalid_value", "hour", NULL);

        j = req("GET", "/v1/nightly", NULL, &st);
        assert_int_equal(st, 200);
        assert_string_equal(str(j, "state"), "running");
        assert_string_equal(str(j, "pending"), "2");
        assert_string_equal(
            str(cJSON_GetArrayItem(cJSON_GetObjectItem(j, "current"), 0), "instance_id"),
            "redis-c");
        cJSON_Delete(j);
        expect_error("POST", "/v1/nightly/start", NULL, 409, "conflict", NULL, "already running");
        j = req("POST", "/v1/nightly/pause", NULL, &st);
        assert_int_equal(st, 200);
        assert_string_equal(str(j, "state"), "paused");
        cJSON_Delete(j);
        j = req("POST", "/v1/nightly/resume", "", &st);
        assert_string_equal(str(j, "state"), "running");
        cJSON_Delete(j);
        expect_error("POST", "/v1/nightly/resume", "{\"force\":true}", 400, "unknown_field",
                     "force", NULL);

        int64_t before = clock_wall_us();
        j = req("GET", "/v1/status", NULL, &st);
        int64_t after = clock_wall_us(), now_us;
        assert_int_equal(st, 200);
        assert_string_equal(str(j, "identity"), "persistd-1_xyz12");
        /* "now" is the schedule clock, with milliseconds. */
        assert_int_equal(clock_parse_rfc3339(str(j, "now"), false, &now_us), 0);
        assert_int_equal(strlen(str(j, "now")), strlen("2025-11-21T23:59:50.123Z"));
        assert_true(now_us >= before - USEC_PER_MSEC && now_us <= after);
        assert_string_equal(str(j, "epoch"), "42");
        assert_string_equal(str(j, "lease.holder"), "persistd-0_abcde");
        assert_string_equal(str(j, "lease.renew_time"), "2025-11-21T23:59:50.123Z");
        assert_string_equal(str(j, "lease.transitions"), "3");
        assert_string_equal(str(j, "loaded_hours"),
                            "[\"2025-11-21T23:00:00Z\",\"2025-11-22T00:00:00Z\"]");
        assert_string_equal(str(cJSON_GetArrayItem(cJSON_GetObjectItem(j, "pools"), 0), "queued"),
                            "4");
        assert_string_equal(str(j, "pass.total"), "5");
        cJSON_Delete(j);

        /* A 500 says what failed without the backend's internals. */
        fake_lock();
        fake_get()->fail_internal = true;
        fake_unlock();
        struct http_reply r;
        fake_http(port, "GET", "/v1/status", FAKE_TOKEN, NULL, &r);
        assert_int_equal(r.status, 500);
        assert_non_null(strstr(r.body, "\"code\":\"internal\""));
        assert_null(strstr(r.body, "hunter2"));
        http_reply_free(&r);
}

/* ---- health, readiness, metrics ----------------------------------------------------------- */

static void test_health(void **state)
{
        struct http_reply r;
        fake_http(port, "GET", "/healthz", NULL, NULL, &r);
        assert_int_equal(r.status, 200);
        http_reply_free(&r);

        fake_lock();
        fake_get()->wedged = true;
        fake_unlock();
        fake_http(port, "GET", "/healthz", NULL, NULL, &r);
        assert_int_equal(r.status, 503);
        assert_non_null(strstr(r.body, "wedged"));
        assert_non_null(strstr(r.body, "17.0 s ago (lease 15.0 s)"));
        http_reply_free(&r);
        /* A follower with an old renew is not wedged. */
        fake_lock();
        fake_get()->is_leader = false;
        fake_unlock();
        fake_http(port, "GET", "/healthz", NULL, NULL, &r);
        assert_int_equal(r.status, 200);
        http_reply_free(&r);

        fake_http(port, "GET", "/readyz", NULL, NULL, &r);
        assert_int_equal(r.status, 200);
        assert_non_null(strstr(r.body, "\"ready\":true"));
        http_reply_free(&r);
        fake_lock();
        fake_get()->postgres_down = true;
        fake_unlock();
        fake_http(port, "GET", "/readyz", NULL, NULL, &r);
        assert_int_equal(r.status, 503);
        cJSON *j = cJSON_Parse(r.body);
        assert_string_equal(str(j, "ready"), "false");
        assert_string_equal(str(j, "checks.config"), "ok");
        assert_non_null(strstr(str(j, "checks.postgres"), "unreachable: connection to server"));
        assert_string_equal(str(j, "failed"), "[\"postgres\"]");
        cJSON_Delete(j);
        http_reply_free(&r);
        /* With PostgreSQL down the API answers 503 unavailable, with Retry-After. */
        char h[16];
        fake_http(port, "GET", "/v1/tasks", FAKE_TOKEN, NULL, &r);
        assert_int_equal(r.status, 503);
        assert_non_null(strstr(r.body, "\"code\":\"unavailable\""));
        assert_non_null(http_reply_header(&r, "retry-after", h, sizeof(h)));
        http_reply_free(&r);

        fake_lock();
        fake_get()->postgres_down = false;
        fake_get()->config_loaded = false;
        fake_unlock();
        fake_http(port, "GET", "/readyz", NULL, NULL, &r);
        assert_int_equal(r.status, 503);
        assert_non_null(strstr(r.body, "\"config\":\"not loaded\""));
        http_reply_free(&r);
}

static void test_metrics(void **state)
{
        struct http_reply r;
        char h[128];
        metrics_gauge_set(metrics, M_IS_LEADER, NULL, 1);
        metrics_gauge_set(metrics, M_POOL_LIMIT, (const char *[]){"ssd"}, 2);
        fake_http(port, "GET", "/metrics", NULL, NULL, &r);
        assert_int_equal(r.status, 200);
        assert_non_null(http_reply_header(&r, "content-type", h, sizeof(h)));
        assert_string_equal(h, "text/plain; version=0.0.4; charset=utf-8");
        assert_non_null(strstr(r.body, "# TYPE persistd_is_leader gauge\npersistd_is_leader 1\n"));
        assert_non_null(strstr(r.body, "persistd_pool_limit{pool=\"ssd\"} 2\n"));
        assert_non_null(strstr(r.body, "# TYPE persistd_lease_renew_duration_seconds histogram\n"));
        assert_non_null(
            strstr(r.body, "persistd_lease_renew_duration_seconds_bucket{le=\"+Inf\"} 0\n"));
        /* Earlier requests were counted by route pattern, not by path. */
        assert_non_null(strstr(r.body, "persistd_http_requests_total{route=\"/v1/tasks/{id}\","
                                       "code=\"200\"}"));
        assert_non_null(strstr(r.body, "route=\"unmatched\",code=\"404\"}"));
        /* Every line is a comment or "name{labels} value". */
        for (char *line = r.body; *line;) {
                char *end = strchr(line, '\n');
                assert_non_null(end);
                assert_true(line[0] == '#' || (line[0] >= 'a' && line[0] <= 'z'));
                line = end + 1;
        }
        http_reply_free(&r);
}

/* ---- persist now ------------------------------------------------------------------------------
 */

static void test_persist(void **state)
{
        long st;
        cJSON *j = req("POST", "/v1/instances/redis-a/persist", "{\"wait\":true}", &st);
        assert_int_equal(st, 200);
        assert_string_equal(str(j, "success"), "true");
        cJSON *res = cJSON_GetArrayItem(cJSON_GetObjectItem(j, "results"), 0);
        assert_string_equal(str(res, "instance_id"), "redis-a");
        assert_string_equal(str(res, "state"), "succeeded");
        assert_string_equal(str(res, "joined"), "false");
        assert_string_equal(str(res, "error_message"), "");
        assert_true(strcmp(str(res, "started_at"), str(res, "requested_at")) >= 0);
        assert_string_not_equal(str(res, "lastsave"), "null");
        assert_string_not_equal(str(res, "finished_at"), "null");
        cJSON_Delete(j);

        /* Without wait: accepted, pending. */
        j = req("POST", "/v1/instances/redis-slow/persist", NULL, &st);
        assert_int_equal(st, 202);
        assert_string_equal(str(j, "done"), "false");
        res = cJSON_GetArrayItem(cJSON_GetObjectItem(j, "results"), 0);
        assert_string_equal(str(res, "state"), "pending");
        cJSON_Delete(j);

        /* A failed save. */
        j = req("POST", "/v1/persist", "{\"instances\":[\"redis-bad\",\"redis-b\"],\"wait\":true}",
                &st);
        assert_int_equal(st, 200);
        assert_string_equal(str(j, "success"), "false");
        res = cJSON_GetObjectItem(j, "results");
        assert_string_equal(str(cJSON_GetArrayItem(res, 0), "state"), "failed");
        assert_string_equal(str(cJSON_GetArrayItem(res, 0), "error_message"), "MISCONF disk full");
        assert_string_equal(str(cJSON_GetArrayItem(res, 1), "state"), "succeeded");
        cJSON_Delete(j);

        /* Pool and all. */
        j = req("POST", "/v1/persist", "{\"pool\":\"ssd\",\"wait\":true}", &st);
        assert_int_equal(cJSON_GetArraySize(cJSON_GetObjectItem(j, "results")), 2);
        assert_string_equal(str(j, "success"), "true");
        cJSON_Delete(j);
        j = req("POST", "/v1/persist", "{\"all\":true}", &st);
        assert_int_equal(cJSON_GetArraySize(cJSON_GetObjectItem(j, "results")), 5);
        cJSON_Delete(j);

        /* Errors: nothing is asked for when a target is unknown. */
        fake_lock();
        int saves = fake_get()->saves_started;
        fake_unlock();
        expect_error("POST", "/v1/persist", "{\"instances\":[\"redis-a\",\"redis-zz\"]}", 404,
                     "not_found", "instances", "instance \"redis-zz\" not found");
        expect_error("POST", "/v1/instances/redis-zz/persist", "{}", 404, "not_found", NULL,
                     "redis-zz");
        expect_error("POST", "/v1/persist", "{\"pool\":\"nvme\"}", 404, "not_found", "pool", NULL);
        fake_lock();
        assert_int_equal(fake_get()->saves_started, saves);
        fake_unlock();
        expect_error("POST", "/v1/persist", "{\"wait\":true}", 400, "missing_field", "instances",
                     "exactly one of");
        expect_error("POST", "/v1/persist", "{\"instances\":[\"redis-a\"],\"pool\":\"ssd\"}", 400,
                     "invalid_value", "instances", "exactly one of");
        expect_error("POST", "/v1/persist", "{\"instances\":[]}", 400, "out_of_range", "instances",
                     NULL);
        expect_error("POST", "/v1/persist", "{\"instances\":[\"redis-a\",3]}", 400, "wrong_type",
                     "instances", "item 1: expected a string");
        expect_error("POST", "/v1/persist", "{\"instances\":\"redis-a\"}", 400, "wrong_type",
                     "instances", "expected an array");
        expect_error("POST", "/v1/instances/redis-a/persist", "{\"timeout_s\":0}", 400,
                     "out_of_range", "timeout_s", "[1, 3600]");
        expect_error("POST", "/v1/instances/redis-a/persist", "{\"wait\":1}", 400, "wrong_type",
                     "wait", NULL);
        expect_error("POST", "/v1/instances/redis-a/persist", "{\"pool\":\"ssd\"}", 400,
                     "unknown_field", "pool", NULL);
}

static void test_persist_request_id(void **state)
{
        long st;
        cJSON *a = req("POST", "/v1/instances/redis-b/persist",
                       "{\"wait\":true,\"request_id\":\"restart-42\"}", &st);
        assert_int_equal(st, 200);
        cJSON *b = req("POST", "/v1/instances/redis-b/persist",
                       "{\"wait\":true,\"request_id\":\"restart-42\"}", &st);
        assert_int_equal(st, 200);
        assert_string_equal(str(b, "request_id"), "restart-42");
        cJSON *ra = cJSON_GetArrayItem(cJSON_GetObjectItem(a, "results"), 0);
        cJSON *rb = cJSON_GetArrayItem(cJSON_GetObjectItem(b, "results"), 0);
        assert_string_equal(str(ra, "run_id"), str(rb, "run_id"));
        assert_string_equal(str(ra, "started_at"), str(rb, "started_at"));
        cJSON_Delete(a);
        cJSON_Delete(b);
        fake_lock();
        assert_int_equal(fake_get()->saves_started, 1);
        fake_unlock();
}

static void test_persist_timeout(void **state)
{
        long st;
        cJSON *j =
            req("POST", "/v1/instances/redis-slow/persist", "{\"wait\":true,\"timeout_s\":1}", &st);
        assert_int_equal(st, 200);
        assert_string_equal(str(j, "success"), "false");
        assert_string_equal(str(j, "done"), "false");
        cJSON *res = cJSON_GetArrayItem(cJSON_GetObjectItem(j, "results"), 0);
        assert_string_equal(str(res, "state"), "timed_out");
        assert_non_null(strstr(str(res, "error_message"), "timed out"));
        cJSON_Delete(j);
}

struct waiter {
        pthread_t thread;
        long status;
        char *body;
};

static void *wait_persist(void *arg)
{
        struct waiter *w = arg;
        struct http_reply r;
        fake_http(port, "POST", "/v1/instances/redis-slow/persist", FAKE_TOKEN,
                  "{\"wait\":true,\"timeout_s\":20}", &r);
        w->status = r.status;
        w->body = r.body;
        free(r.headers);
        return NULL;
}

/* Many waiting requests share one save, and the server keeps answering meanwhile. */
static void test_persist_crowd(void **state)
{
        enum { N = 40 };
        struct waiter w[N] = {0};
        for (int i = 0; i < N; i++)
                assert_int_equal(pthread_create(&w[i].thread, NULL, wait_persist, &w[i]), 0);
        /* While they wait (the save takes 3 s), other requests are served. */
        clock_sleep_us(300 * USEC_PER_MSEC);
        struct http_reply r;
        fake_http(port, "GET", "/v1/status", FAKE_TOKEN, NULL, &r);
        assert_int_equal(r.status, 200);
        http_reply_free(&r);
        int joined = 0;
        for (int i = 0; i < N; i++) {
                pthread_join(w[i].thread, NULL);
                assert_int_equal(w[i].status, 200);
                cJSON *j = cJSON_Parse(w[i].body);
                assert_string_equal(str(j, "success"), "true");
                joined +=
                    streq(str(cJSON_GetArrayItem(cJSON_GetObjectItem(j, "results"), 0), "joined"),
                          "true");
                cJSON_Delete(j);
                free(w[i].body);
        }
        assert_int_equal(joined, N - 1);
        fake_lock();
        assert_int_equal(fake_get()->saves_started, 1);
        fake_unlock();
}

/* ---- lifecycle --------------------------------------------------------------------------------
 */

static void *wait_long(void *arg)
{
        struct waiter *w = arg;
        struct http_reply r = {0};
        char url[128];
        snprintf(url, sizeof(url), "http://127.0.0.1:%u/v1/instances/redis-slow/persist",
                 (unsigned)(uintptr_t)w->body);
        CURL *c = curl_easy_init();
        struct curl_slist *h = curl_slist_append(NULL, "Authorization: Bearer " FAKE_TOKEN);
        curl_easy_setopt(c, CURLOPT_URL, url);
        curl_easy_setopt(c, CURLOPT_HTTPHEADER, h);
        curl_easy_setopt(c, CURLOPT_POSTFIELDS, "{\"wait\":true,\"timeout_s\":600}");
        curl_easy_setopt(c, CURLOPT_NOSIGNAL, 1L);
        curl_easy_setopt(c, CURLOPT_TIMEOUT_MS, 20000L);
        curl_easy_perform(c); /* any outcome: the server is going away */
        curl_slist_free_all(h);
        curl_easy_cleanup(c);
        (void)r;
        return NULL;
}

/* Stopping does not wait for a long persist wait; starting again works; bad addresses fail. */
static void test_lifecycle(void **state)
{
        struct http_server_options o = {.listen = "127.0.0.1:0", .token = FAKE_TOKEN};
        struct http_server *s = http_server_new(&o, fake_backend(), NULL);
        assert_int_equal(http_server_start(s), 0);
        struct waiter w = {.body = (char *)(uintptr_t)http_server_port(s)};
        assert_int_equal(pthread_create(&w.thread, NULL, wait_long, &w), 0);
        clock_sleep_us(500 * USEC_PER_MSEC);
        int64_t t0 = clock_mono_us();
        http_server_stop(s);
        /* Generous: the wait was for 600 s; stop returns after the current poll slice. */
        assert_true(clock_mono_us() - t0 < 15 * USEC_PER_SEC);
        pthread_join(w.thread, NULL);
        assert_int_equal(http_server_port(s), 0);
        assert_int_equal(http_server_start(s), 0);
        struct http_reply r;
        fake_http(http_server_port(s), "GET", "/metrics", NULL, NULL, &r);
        assert_int_equal(r.status, 503); /* no registry given */
        http_reply_free(&r);
        http_server_free(s);

        o.listen = "no-port";
        s = http_server_new(&o, fake_backend(), NULL);
        assert_int_equal(http_server_start(s), -EINVAL);
        assert_non_null(strstr(http_server_errstr(s), "no-port"));
        http_server_free(s);

        /* The same port twice. */
        char listen[32];
        snprintf(listen, sizeof(listen), "127.0.0.1:%u", port);
        o.listen = listen;
        s = http_server_new(&o, fake_backend(), NULL);
        assert_true(http_server_start(s) < 0);
        assert_non_null(strstr(http_server_errstr(s), "cannot listen"));
        http_server_free(s);

        /* IPv6 loopback, where the machine has it. */
        o.listen = "[::1]:0";
        s = http_server_new(&o, fake_backend(), NULL);
        if (http_server_start(s) == 0) {
                char url[64];
                snprintf(url, sizeof(url), "http://[::1]:%u/healthz", http_server_port(s));
                CURL *c = curl_easy_init();
                long status = 0;
                curl_easy_setopt(c, CURLOPT_URL, url);
                curl_easy_setopt(c, CURLOPT_NOSIGNAL, 1L);
                curl_easy_setopt(c, CURLOPT_TIMEOUT_MS, 10000L);
                curl_easy_setopt(c, CURLOPT_WRITEFUNCTION, fwrite);
                FILE *devnull = fopen("/dev/null", "w");
                curl_easy_setopt(c, CURLOPT_WRITEDATA, devnull);
                assert_int_equal(curl_easy_perform(c), CURLE_OK);
                curl_easy_getinfo(c, CURLINFO_RESPONSE_CODE, &status);
                assert_int_equal(status, 200);
                fclose(devnull);
                curl_easy_cleanup(c);
        }
        http_server_free(s);
}

static void *wait_slow_on(void *arg)
{
        struct waiter *w = arg;
        struct http_reply r;
        fake_http((uint16_t)w->status, "POST", "/v1/instances/redis-slow/persist", FAKE_TOKEN,
                  "{\"wait\":true,\"timeout_s\":20}", &r);
        w->status = r.status;
        http_reply_free(&r);
        return NULL;
}

static CURLcode try_get(uint16_t p, long *status)
{
        char url[64];
        snprintf(url, sizeof(url), "http://127.0.0.1:%u/healthz", p);
        CURL *c = curl_easy_init();
        FILE *devnull = fopen("/dev/null", "w");
        curl_easy_setopt(c, CURLOPT_URL, url);
        curl_easy_setopt(c, CURLOPT_NOSIGNAL, 1L);
        curl_easy_setopt(c, CURLOPT_TIMEOUT_MS, 10000L);
        curl_easy_setopt(c, CURLOPT_WRITEDATA, devnull);
        CURLcode cc = curl_easy_perform(c);
        curl_easy_getinfo(c, CURLINFO_RESPONSE_CODE, status);
        fclose(devnull);
        curl_easy_cleanup(c);
        return cc;
}

/* Past the connection limit new connections are refused; an idle connection is closed. */
static void test_connection_limits(void **state)
{
        struct http_server_options o = {.listen = "127.0.0.1:0",
                                        .token = FAKE_TOKEN,
                                        .max_connections = 2,
                                        .idle_timeout_s = 1};
        struct http_server *s = http_server_new(&o, fake_backend(), NULL);
        assert_int_equal(http_server_start(s), 0);
        uint16_t p = http_server_port(s);
        struct waiter w[2] = {{.status = p}, {.status = p}};
        for (int i = 0; i < 2; i++)
                assert_int_equal(pthread_create(&w[i].thread, NULL, wait_slow_on, &w[i]), 0);
        /* Poll until both waiters hold their connection: then a third is refused. */
        long status = 0;
        bool refused = false;
        for (int i = 0; i < 100 && !refused; i++) {
                clock_sleep_us(20 * USEC_PER_MSEC);
                fake_lock();
                bool both = fake_get()->saves_started == 1 && fake_get()->backend_calls >= 2;
                fake_unlock();
                if (both)
                        refused = try_get(p, &status) != CURLE_OK;
        }
        assert_true(refused);
        for (int i = 0; i < 2; i++) {
                pthread_join(w[i].thread, NULL);
                assert_int_equal(w[i].status, 200);
        }
        /* Served again once their connections are closed (MHD notices within moments). */
        CURLcode cc = CURLE_RECV_ERROR;
        for (int i = 0; i < 200 && cc != CURLE_OK; i++) {
                cc = try_get(p, &status);
                if (cc != CURLE_OK)
                        clock_sleep_us(50 * USEC_PER_MSEC);
        }
        assert_int_equal(cc, CURLE_OK);
        assert_int_equal(status, 200);

        /* A client that connects and sends nothing is dropped after the idle timeout. */
        int fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
        struct sockaddr_in sa = {
            .sin_family = AF_INET, .sin_port = htons(p), .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
        assert_int_equal(connect(fd, (struct sockaddr *)&sa, sizeof(sa)), 0);
        struct timeval tv = {.tv_sec = 15};
        setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof(tv));
        char buf[16];
        assert_int_equal(recv(fd, buf, sizeof(buf), 0), 0); /* closed by the server */
        close(fd);
        http_server_free(s);
}

int main(void)
{
        curl_global_init(CURL_GLOBAL_DEFAULT);
        metrics = metrics_new();
        fake_reset();
        server = fake_server_start(metrics);
        port = http_server_port(server);

        const struct CMUnitTest tests[] = {
            cmocka_unit_test_setup(test_auth, setup),
            cmocka_unit_test_setup(test_routing, setup),
            cmocka_unit_test_setup(test_follower, setup),
            cmocka_unit_test_setup(test_tasks_happy_path, setup),
            cmocka_unit_test_setup(test_tasks_bad_input, setup),
            cmocka_unit_test_setup(test_body_limit, setup),
            cmocka_unit_test_setup(test_instances, setup),
            cmocka_unit_test_setup(test_runs, setup),
            cmocka_unit_test_setup(test_plan_nightly_status, setup),
            cmocka_unit_test_setup(test_health, setup),
            cmocka_unit_test_setup(test_metrics, setup),
            cmocka_unit_test_setup(test_persist, setup),
            cmocka_unit_test_setup(test_persist_request_id, setup),
            cmocka_unit_test_setup(test_persist_timeout, setup),
            cmocka_unit_test_setup(test_persist_crowd, setup),
            cmocka_unit_test_setup(test_lifecycle, setup),
            cmocka_unit_test_setup(test_connection_limits, setup),
        };
        int failed = cmocka_run_group_tests(tests, NULL, NULL);
        http_server_free(server);
        metrics_free(metrics);
        curl_global_cleanup();
        return failed;
}
