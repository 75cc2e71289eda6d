/* SPDX-License-Identifier: Apache-2.0 */
/*
 * persistctl end to end: the real binary (PERSISTCTL_BIN) against the HTTP server running in
 * this process over the fake backend. Tables, -o json, the environment, and the exit codes that
 * scripts and preStop hooks rely on.
 */
#include <cjson/cJSON.h>
#include <curl/curl.h>
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

#include <cmocka.h>

#include "core/clock.h"
#include "core/macro.h"
#include "core/util.h"
#include "harness.h"
#include "test-http-fake.h"

static struct http_server *server;
static char *dir, *token_path, *bad_token_path, server_url[64];

/* The follower's switches (see follower_status()), under fake_lock(). */
static bool follower_down, follower_leads;

static int setup(void **state)
{
        fake_reset();
        fake_lock();
        follower_down = follower_leads = false;
        fake_unlock();
        return 0;
}

/*
 * Run persistctl with `args` (NULL-terminated); `with_defaults` adds --server and --token-file.
 * Returns the exit code; *out is stdout and stderr together (caller frees).
 */
static int run_env(bool with_defaults, char *const *env, const char *const *args, char **out)
{
        char *log, *argv[32];
        size_t n = 0;
        int status;
        static int seq;
        assert_true(asprintf(&log, "%s/ctl-%d.log", dir, seq++) > 0);
        argv[n++] = (char *)th_persistctl_path();
        if (with_defaults) {
                argv[n++] = (char *)"--server";
                argv[n++] = server_url;
                argv[n++] = (char *)"--token-file";
                argv[n++] = token_path;
        }
        for (size_t i = 0; args[i]; i++)
                argv[n++] = (char *)args[i];
        argv[n] = NULL;
        pid_t pid = th_spawn(argv, env, log);
        assert_true(th_wait_exit(pid, 30000, &status));
        assert_int_equal(read_full_file(log, 1 << 20, out, NULL), 0);
        free(log);
        return WIFEXITED(status) ? WEXITSTATUS(status) : 128 + WTERMSIG(status);
}

#define RUN(out, ...) run_env(true, NULL, (const char *[]){__VA_ARGS__, NULL}, out)

static void contains(const char *out, const char *part)
{
        if (!strstr(out, part))
                fail_msg("output lacks \"%s\":\n%s", part, out);
}

/* The environment persistctl reads: $PERSISTD_SERVER = `servers`, the token file. */
static void env_for(char *env[3], const char *servers)
{
        assert_true(asprintf(&env[0], "PERSISTD_SERVER=%s", servers) > 0);
        assert_true(asprintf(&env[1], "PERSISTD_TOKEN_FILE=%s", token_path) > 0);
        env[2] = NULL;
}

static void env_free(char *env[3])
{
        free(env[0]);
        free(env[1]);
}

static void test_usage(void **state)
{
        char *out;
        assert_int_equal(RUN(&out, "--help"), 0);
        contains(out, "Exit status: 0 success; 1 the operation failed");
        contains(out, "nightly status|start|pause|resume");
        free(out);
        const char *helps[] = {"status", "tasks",   "instances", "persist", "runs",
                               "plan",   "nightly", "ready",     "health"};
        for (size_t i = 0; i < ELEMENTSOF(helps); i++) {
                assert_int_equal(RUN(&out, helps[i], "--help"), 0);
                contains(out, "Usage: persistctl ");
                free(out);
        }
        assert_int_equal(RUN(&out, "persist", "--help"), 0);
        contains(out, "preStop");
        free(out);
        assert_int_equal(RUN(&out, "version"), 0);
        contains(out, "persistctl ");
        free(out);

        assert_int_equal(RUN(&out, "frobnicate"), 2);
        contains(out, "unknown command \"frobnicate\"");
        free(out);
        assert_int_equal(RUN(&out, "tasks"), 2);
        free(out);
        assert_int_equal(RUN(&out, "tasks", "get"), 2);
        contains(out, "a task ID is required");
        free(out);
        assert_int_equal(RUN(&out, "tasks", "explode", "x"), 2);
        free(out);
        assert_int_equal(RUN(&out, "-o", "yaml", "status"), 2);
        free(out);
        assert_int_equal(RUN(&out, "persist"), 2);
        contains(out, "give instance IDs, --pool or --all");
        free(out);
        assert_int_equal(RUN(&out, "persist", "redis-a", "--timeout", "0"), 2);
        free(out);
        assert_int_equal(RUN(&out, "runs", "--colour", "red"), 2);
        free(out);
}

static void test_status_table(void **state)
{
        char *out;
        assert_int_equal(RUN(&out, "status"), 0);
        contains(out, "FIELD               VALUE\n");
        contains(out, "\nidentity            persistd-1_xyz12\n");
        contains(out, "\nis_leader           yes\n");
        contains(out, "\nlease.renew_time    2025-11-21T23:59:50.123Z\n");
        contains(out, "\nloaded_hours        2025-11-21T23:00:00Z,2025-11-22T00:00:00Z\n");
        contains(out, "\npass.pending        2\n");
        contains(out, "\nPOOL  LIMIT  RUNNING  QUEUED\n"
                      "hdd   1      1        4\n"
                      "ssd   2      0        0\n");
        free(out);
}

static void test_tasks(void **state)
{
        char *out;
        assert_int_equal(RUN(&out, "tasks", "list"), 0);
        assert_string_equal(
            out, "ID         INSTANCE  ACTION  SCHEDULE    ENABLED  MISFIRE   DESCRIPTION\n"
                 "hourly-a   redis-a   bgsave  15 * * * *  yes      run_once  every hour at :15\n"
                 "nightly-c  redis-c   bgsave  0 3 * * *   no       run_once  3 o'clock\n");
        free(out);
        assert_int_equal(RUN(&out, "tasks", "list", "--disabled"), 0);
        assert_null(strstr(out, "hourly-a"));
        contains(out, "nightly-c");
        free(out);
        assert_int_equal(RUN(&out, "tasks", "list", "--limit", "1"), 0);
        contains(out, "(more: --cursor 1)");
        free(out);

        /* -o json prints the server's answer. */
        assert_int_equal(RUN(&out, "-o", "json", "tasks", "list", "--instance", "redis-a"), 0);
        cJSON *j = cJSON_Parse(out);
        assert_non_null(j);
        assert_int_equal(cJSON_GetArraySize(cJSON_GetObjectItem(j, "tasks")), 1);
        assert_true(cJSON_IsNull(cJSON_GetObjectItem(j, "next_cursor")));
        cJSON_Delete(j);
        free(out);

        assert_int_equal(RUN(&out, "tasks", "create", "--id", "t9", "--instance", "redis-b",
                             "--schedule", "0 */2 * * *", "--description", "every two hours",
                             "--misfire", "skip"),
                         0);
        contains(out, "t9  redis-b   bgsave  0 */2 * * *  yes      skip     every two hours\n");
        free(out);
        assert_int_equal(
            RUN(&out, "tasks", "update", "t9", "--disabled", "--starting-deadline", "30"), 0);
        contains(out, "t9  redis-b   bgsave  0 */2 * * *  no ");
        free(out);
        assert_int_equal(RUN(&out, "-o", "json", "tasks", "get", "t9"), 0);
        contains(out, "\"starting_deadline_s\":30");
        free(out);
        assert_int_equal(RUN(&out, "tasks", "run", "t9"), 0);
        contains(out, "\nkind           manual\n");
        free(out);
        assert_int_equal(RUN(&out, "tasks", "delete", "t9"), 0);
        assert_string_equal(out, "deleted task t9\n");
        free(out);

        /* Exit codes: 4 not found, 1 refused (with the field), 5 not the leader. */
        assert_int_equal(RUN(&out, "tasks", "get", "t9"), 4);
        contains(out, "persistctl: task \"t9\" not found (HTTP 404 not_found)");
        free(out);
        assert_int_equal(
            RUN(&out, "tasks", "create", "--instance", "redis-b", "--schedule", "often"), 1);
        contains(out, "is not a cron expression");
        contains(out, "HTTP 400 invalid_value, field schedule");
        free(out);
        assert_int_equal(RUN(&out, "tasks", "create", "--instance", "redis-b"), 1);
        contains(out, "schedule: required");
        free(out);
        assert_int_equal(RUN(&out, "tasks", "create", "--id", "hourly-a", "--instance", "redis-a",
                             "--schedule", "* * * * *"),
                         1);
        contains(out, "HTTP 409 conflict");
        free(out);
        fake_lock();
        fake_get()->is_leader = false;
        fake_unlock();
        assert_int_equal(RUN(&out, "tasks", "delete", "hourly-a"), 5);
        contains(out, "HTTP 503 not_leader, leader persistd-0_abcde");
        free(out);
        /* Errors in -o json: the server's error object on stdout too. */
        assert_int_equal(RUN(&out, "-o", "json", "tasks", "run", "hourly-a"), 5);
        contains(out, "{\"error\":{\"code\":\"not_leader\"");
        free(out);
}

static void test_probes(void **state)
{
        char *out;
        /* No token needed. */
        assert_int_equal(
            run_env(false, NULL, (const char *[]){"--server", server_url, "ready", NULL}, &out), 0);
        contains(out, "\nchecks.postgres  ok\n");
        free(out);
        fake_lock();
        fake_get()->postgres_down = true;
        fake_get()->wedged = true;
        fake_unlock();
        assert_int_equal(RUN(&out, "ready"), 5);
        contains(out, "\nchecks.postgres  unreachable: ");
        free(out);
        assert_int_equal(RUN(&out, "health"), 5);
        contains(out, "wedged");
        free(out);
        assert_int_equal(RUN(&out, "-o", "json", "health", "--help"), 0);
        free(out);
}

static void test_auth_and_reachability(void **state)
{
        char *out;
        /* No token. */
        assert_int_equal(
            run_env(false, NULL, (const char *[]){"--server", server_url, "status", NULL}, &out),
            3);
        contains(out, "a bearer token is required");
        free(out);
        /* A wrong one: never echoed. */
        assert_int_equal(run_env(false, NULL,
                                 (const char *[]){"--server", server_url, "--token-file",
                                                  bad_token_path, "status", NULL},
                                 &out),
                         3);
        contains(out, "HTTP 401 unauthorized");
        assert_null(strstr(out, "wrong-token"));
        free(out);
        /* A missing token file is a usage problem. */
        assert_int_equal(run_env(false, NULL,
                                 (const char *[]){"--server", server_url, "--token-file",
                                                  "/nonexistent/token", "status", NULL},
                                 &out),
                         2);
        free(out);
        /* Nobody listening. */
        char url[64];
        snprintf(url, sizeof(url), "http://127.0.0.1:%u", th_free_port());
        assert_int_equal(
            run_env(false, NULL,
                    (const char *[]){"--server", url, "--token-file", token_path, "status", NULL},
                    &out),
            3);
        contains(out, "cannot reach");
        free(out);
        /* The environment. */
        char *env[3];
        env_for(env, server_url);
        assert_int_equal(
            run_env(false, env, (const char *[]){"instances", "get", "redis-a", NULL}, &out), 0);
        contains(out, "\ncapabilities.redis_version   7.0.15\n");
        free(out);
        env_free(env);
}

static void test_persist(void **state)
{
        char *out;
        /* The preStop hook: exit 0 only if the save succeeded. */
        assert_int_equal(RUN(&out, "persist", "redis-a", "--wait"), 0);
        contains(out, "INSTANCE  STATE      JOINED  STARTED");
        contains(out, "\nredis-a   succeeded  no      20");
        free(out);
        assert_int_equal(RUN(&out, "persist", "redis-bad", "--wait"), 1);
        contains(out, "redis-bad  failed  no ");
        contains(out, "MISCONF disk full");
        free(out);
        assert_int_equal(RUN(&out, "persist", "redis-slow", "--wait", "--timeout", "1"), 1);
        contains(out, "redis-slow  timed_out");
        free(out);
        assert_int_equal(RUN(&out, "persist", "redis-zz", "--wait"), 4);
        contains(out, "instance \"redis-zz\" not found");
        free(out);
        assert_int_equal(
            RUN(&out, "persist", "redis-a", "redis-b", "--wait", "--request-id", "r-1"), 0);
        contains(out, "\nredis-a ");
        contains(out, "\nredis-b ");
        free(out);
        assert_int_equal(RUN(&out, "-o", "json", "persist", "--pool", "ssd", "--wait"), 0);
        cJSON *j = cJSON_Parse(out);
        assert_non_null(j);
        assert_true(cJSON_IsTrue(cJSON_GetObjectItem(j, "success")));
        assert_int_equal(cJSON_GetArraySize(cJSON_GetObjectItem(j, "results")), 2);
        cJSON_Delete(j);
        free(out);
        /* Without --wait the saves are accepted: success. */
        assert_int_equal(RUN(&out, "persist", "--all"), 0);
        contains(out, "pending");
        free(out);
        fake_lock();
        fake_get()->is_leader = false;
        fake_unlock();
        assert_int_equal(RUN(&out, "persist", "redis-a", "--wait"), 5);
        free(out);
}

static void test_runs_plan_nightly_instances(void **state)
{
        char *out;
        assert_int_equal(RUN(&out, "runs", "--kind", "nightly", "--limit", "2"), 0);
        contains(out, "ID  KIND     INSTANCE  TASK  STATE      SCHEDULED                 FINISHED");
        contains(out, "\n6   nightly  redis-a   -     succeeded  2025-11-22T00:06:00.000Z");
        contains(out, "(more: --cursor");
        free(out);
        assert_int_equal(RUN(&out, "runs", "--state", "failed"), 0);
        contains(out, "MISCONF disk full");
        free(out);
        assert_int_equal(RUN(&out, "runs", "--since", "soon"), 1);
        contains(out, "field since");
        free(out);
        assert_int_equal(RUN(&out, "plan", "--hour", "2026-11-22T00:30:00Z"), 0);
        contains(out, "hour 2026-11-22T00:00:00.000Z (loaded: yes)");
        contains(out, "POOL  LIMIT  EXPECTED-END              OVERRUN-S\n"
                      "ssd   1      2026-11-22T01:01:40.000Z  100\n");
        contains(out, "\n2026-11-22T00:15:00.000Z  hourly-b  redis-b   ssd   "
                      "2026-11-22T00:45:00.000Z  2026-11-22T01:15:00.000Z\n");
        free(out);
        assert_int_equal(RUN(&out, "nightly", "status"), 0);
        contains(out, "\nstate        running\n");
        contains(out, "POOL  INSTANCE\nhdd   redis-c\n");
        free(out);
        assert_int_equal(RUN(&out, "nightly", "start"), 1);
        contains(out, "a pass is already running (HTTP 409 conflict)");
        free(out);
        assert_int_equal(RUN(&out, "nightly", "pause"), 0);
        contains(out, "\nstate        paused\n");
        free(out);
        assert_int_equal(RUN(&out, "nightly", "bounce"), 2);
        free(out);
        assert_int_equal(RUN(&out, "instances", "list", "--pool", "hdd"), 0);
        contains(out, "ID          ADDRESS        POOL  ENABLED  LAST-SAVE  FINISHED");
        contains(out, "\nredis-bad   10.0.0.5:6379  hdd   yes      failed     ");
        assert_null(strstr(out, "redis-a"));
        free(out);
        assert_int_equal(RUN(&out, "instances", "get", "nope"), 4);
        free(out);
}

/* ---- several servers and status --watch ---------------------------------------------------- */

/*
 * A second server over the same fake, as a follower: its status and leader operations say it
 * does not lead (the leader is persistd-0_abcde; follower_leads: it does), it knows of no
 * nightly pass, and follower_down makes its status a 503.
 */
static struct http_server *follower;
static char follower_url[64];
static struct api_backend follower_backend;

static int follower_status(void *ud, struct api_status *out, struct api_error *err)
{
        fake_lock();
        bool down = follower_down, leads = follower_leads;
        fake_unlock();
        if (down) {
                snprintf(err->message, sizeof(err->message), "PostgreSQL is down");
                return -ECONNREFUSED;
        }
        int r = fake_backend()->status(ud, out, err);
        out->is_leader = leads;
        snprintf(out->identity, sizeof(out->identity), "persistd-2_follower");
        api_nightly_release(&out->pass);
        out->pass = (struct api_nightly){.state = "idle"};
        return r;
}

static void follower_leader(void *ud, struct api_leader *out)
{
        fake_backend()->leader(ud, out);
        fake_lock();
        out->is_leader = follower_leads;
        fake_unlock();
}

static void set_follower_down(bool down)
{
        fake_lock();
        follower_down = down;
        fake_unlock();
}

static char *dead_url(void)
{
        char *url;
        assert_true(asprintf(&url, "http://127.0.0.1:%u", th_free_port()) > 0);
        return url;
}

static char *join(const char *a, const char *b, const char *c)
{
        char *s;
        assert_true(asprintf(&s, "%s,%s%s%s", a, b, c ? "," : "", c ? c : "") > 0);
        return s;
}

/* Run with --server `servers` (and the token) and `args`. */
static int run_servers(const char *servers, const char *const *args, char **out)
{
        const char *argv[24] = {"--server", servers, "--token-file", token_path};
        size_t n = 4;
        for (size_t i = 0; args[i] && n < ELEMENTSOF(argv) - 1; i++)
                argv[n++] = args[i];
        argv[n] = NULL;
        return run_env(false, NULL, argv, out);
}

#define RUN_ON(servers, out, ...) run_servers(servers, (const char *[]){__VA_ARGS__, NULL}, out)

static size_t count_lines(const char *s, const char *part)
{
        size_t n = 0;
        for (const char *p = s; *p;) {
                const char *nl = strchr(p, '\n');
                size_t len = nl ? (size_t)(nl - p) : strlen(p);
                char *line = strndup(p, len);
                if (!part || strstr(line, part))
                        n++;
                free(line);
                p += len + (nl ? 1 : 0);
        }
        return n;
}

/* Seconds of the day of "HH:MM:SS". */
static int day_seconds(const char *hms)
{
        int h, m, s;
        assert_int_equal(sscanf(hms, "%2d:%2d:%2d", &h, &m, &s), 3);
        return h * 3600 + m * 60 + s;
}

/*
 * Watch `servers` (-o json if `json`) until the lines containing want[0..n-1] came in this order
 * (step(k) is called once k of them came), then stop it with SIGTERM: it must exit 0.
 */
static void watch_through(const char *servers, bool json, const char *const *want, size_t n,
                          void (*step)(size_t seen))
{
        char *log;
        static int seq;
        assert_true(asprintf(&log, "%s/watch-%d.log", dir, seq++) > 0);
        char *argv[] = {(char *)th_persistctl_path(),
                        (char *)"--server",
                        (char *)servers,
                        (char *)"--token-file",
                        token_path,
                        (char *)"-o",
                        (char *)(json ? "json" : "table"),
                        (char *)"status",
                        (char *)"--watch",
                        (char *)"--interval",
                        (char *)"0.2",
                        NULL};
        step(0);
        pid_t pid = th_spawn(argv, NULL, log);
        size_t seen = 0;
        int64_t deadline = clock_mono_us() + 20 * USEC_PER_SEC;
        while (seen < n && clock_mono_us() < deadline) {
                clock_sleep_us(100 * USEC_PER_MSEC);
                _cleanup_free_ char *text = NULL;
                if (read_full_file(log, 1 << 20, &text, NULL) < 0)
                        continue;
                const char *p = text;
                size_t k = 0;
                while (k < n && (p = strstr(p, want[k]))) {
                        p += strlen(want[k]);
                        k++;
                }
                if (k > seen) {
                        seen = k;
                        step(seen);
                }
        }
        int status = th_stop(pid, SIGTERM, 10000);
        _cleanup_free_ char *text = NULL;
        assert_int_equal(read_full_file(log, 1 << 20, &text, NULL), 0);
        if (seen < n)
                fail_msg("the watch did not print \"%s\" (after the ones before):\n%s", want[seen],
                         text);
        assert_true(WIFEXITED(status));
        assert_int_equal(WEXITSTATUS(status), 0);
        free(log);
}

static void step_follower_down(size_t seen)
{
        set_follower_down(seen == 1);
}

static void test_several_servers(void **state)
{
        char *out, *dead = dead_url(), *dead2 = dead_url();
        char *three = join(dead, follower_url, server_url);
        char *no_leader = join(dead, follower_url, NULL);
        char *all_dead = join(dead, dead2, NULL);

        /* The leader, though a dead server and a follower come first. */
        assert_int_equal(RUN_ON(three, &out, "-o", "json", "status"), 0);
        cJSON *j = cJSON_Parse(out);
        assert_non_null(j);
        assert_true(cJSON_IsTrue(cJSON_GetObjectItem(j, "is_leader")));
        assert_string_equal(cJSON_GetObjectItem(j, "identity")->valuestring, "persistd-1_xyz12");
        cJSON_Delete(j);
        free(out);
        /* Leader-only operations go there too; on the follower alone they are refused. */
        assert_int_equal(RUN_ON(three, &out, "tasks", "run", "hourly-a"), 0);
        free(out);
        assert_int_equal(RUN_ON(follower_url, &out, "tasks", "run", "hourly-a"), 5);
        contains(out, "not_leader");
        free(out);
        /* Nobody leads: the first that answered. */
        assert_int_equal(RUN_ON(no_leader, &out, "status"), 0);
        contains(out, "\nidentity            persistd-2_follower\n");
        free(out);
        /* Nobody answers: exit 3, every URL named with its reason. */
        assert_int_equal(RUN_ON(all_dead, &out, "status"), 3);
        contains(out, "cannot reach any server: ");
        contains(out, dead);
        contains(out, dead2);
        contains(out, "Couldn't connect");
        free(out);
        /* The environment takes a list too. */
        char *env[3];
        env_for(env, three);
        assert_int_equal(run_env(false, env, (const char *[]){"-o", "json", "status", NULL}, &out),
                         0);
        contains(out, "\"is_leader\":true");
        free(out);
        env_free(env);
        /* One URL: its errors name it. */
        assert_int_equal(RUN_ON(dead, &out, "status"), 3);
        contains(out, "cannot reach ");
        contains(out, dead);
        free(out);
        free(three);
        free(no_leader);
        free(all_dead);
        free(dead);
        free(dead2);
}

static void test_watch(void **state)
{
        char *out;
        /* The schedule clock (shifted in main) gives the time of each line. */
        int64_t before = clock_wall_us();
        assert_int_equal(RUN(&out, "status", "--watch", "--interval", "0.2", "--count", "3"), 0);
        int64_t after = clock_wall_us();
        assert_int_equal(count_lines(out, NULL), 3);
        assert_int_equal(count_lines(out, "  leader persistd-0_abcde epoch 42  hdd 1/1 +4 queued"
                                          "  ssd 0/2  nightly running 2/5 failed 1 pending 2"
                                          "  saving hdd:redis-c"),
                         3);
        int t = day_seconds(out);
        int lo = (int)((before / USEC_PER_SEC) % 86400), hi = (int)((after / USEC_PER_SEC) % 86400);
        if (!(lo <= hi ? t >= lo && t <= hi : t >= lo || t <= hi))
                fail_msg("the line's time is not the schedule clock's: %s", out);
        assert_true(strchr(out, '\n') - out < 200);
        free(out);

        /* -o json: the answers, one a line. */
        assert_int_equal(
            RUN(&out, "-o", "json", "status", "--watch", "--interval", "0.1", "--count", "2"), 0);
        assert_int_equal(count_lines(out, NULL), 2);
        char *nl = strchr(out, '\n');
        *nl = '\0';
        cJSON *j = cJSON_Parse(out);
        assert_non_null(j);
        assert_true(cJSON_IsString(cJSON_GetObjectItem(j, "now")));
        cJSON_Delete(j);
        free(out);

        /* No pass and nothing saving: no nightly or saving part. */
        assert_int_equal(RUN_ON(follower_url, &out, "status", "--watch", "--count", "1"), 0);
        contains(out,
                 "  leader persistd-0_abcde (seen by follower persistd-2_follower)  hdd 1/1 +4 "
                 "queued  ssd 0/2\n");
        assert_int_equal(count_lines(out, NULL), 1);
        free(out);
        assert_int_equal(RUN(&out, "nightly", "pause"), 0);
        free(out);
        assert_int_equal(RUN(&out, "status", "--watch", "--count", "1"), 0);
        contains(out, "  nightly paused 2/5 failed 1 pending 2  saving hdd:redis-c\n");
        free(out);

        assert_int_equal(RUN(&out, "status", "--watch", "--interval", "0.01"), 2);
        free(out);
        assert_int_equal(RUN(&out, "status", "--count", "2"), 2);
        free(out);
        assert_int_equal(RUN(&out, "status", "--help"), 0);
        contains(out, "--interval SECONDS");
        contains(out, "--count N");
        free(out);
}

static void test_watch_without_answers(void **state)
{
        char *out, *dead = dead_url();
        /* A dead server: "no answer" lines, and still exit 0 after --count. */
        assert_int_equal(
            RUN_ON(dead, &out, "status", "--watch", "--interval", "0.2", "--count", "2"), 0);
        assert_int_equal(count_lines(out, NULL), 2);
        assert_int_equal(count_lines(out, "  (no answer from "), 2);
        contains(out, dead);
        free(out);
        /* A 503 is no answer either, with the server's reason. */
        set_follower_down(true);
        assert_int_equal(
            RUN_ON(follower_url, &out, "status", "--watch", "--interval", "0.1", "--count", "1"),
            0);
        contains(out, "(no answer from ");
        contains(out, "HTTP 503 unavailable: PostgreSQL is down)");
        free(out);
        set_follower_down(false);

        /*
         * Several servers, no --count: the watch goes on through ticks without any answer,
         * picks the follower up again, and exits 0 on SIGTERM.
         */
        char *servers = join(dead, follower_url, NULL);
        watch_through(servers, false,
                      (const char *[]){"leader persistd-0_abcde", "(no answer from ", "leader "}, 3,
                      step_follower_down);
        free(servers);
        free(dead);
}

static void step_failover(size_t seen)
{
        fake_lock();
        fake_get()->is_leader = seen == 0;
        follower_leads = seen > 0;
        fake_unlock();
}

/* Each tick looks for the leader again: the watch follows a failover. */
static void test_watch_failover(void **state)
{
        char *dead = dead_url(), *servers = join(dead, follower_url, server_url);
        watch_through(servers, true,
                      (const char *[]){"\"identity\":\"persistd-1_xyz12\"",
                                       "\"identity\":\"persistd-2_follower\""},
                      2, step_failover);
        free(servers);
        free(dead);
}

int main(void)
{
        curl_global_init(CURL_GLOBAL_DEFAULT);
        dir = th_tmpdir("persistctl");
        assert_true(asprintf(&token_path, "%s/token", dir) > 0);
        assert_true(asprintf(&bad_token_path, "%s/bad-token", dir) > 0);
        FILE *f = fopen(token_path, "w");
        fputs(FAKE_TOKEN "\n", f);
        fclose(f);
        f = fopen(bad_token_path, "w");
        fputs("wrong-token\n", f);
        fclose(f);
        fake_reset();
        /* A schedule clock hours away from this machine's, as under --fake-start. */
        clock_wall_start_at(clock_wall_us() + (5 * 3600 + 17 * 60) * USEC_PER_SEC);
        server = fake_server_start(NULL);
        snprintf(server_url, sizeof(server_url), "http://127.0.0.1:%u/", http_server_port(server));
        follower_backend = *fake_backend();
        follower_backend.status = follower_status;
        follower_backend.leader = follower_leader;
        struct http_server_options fo = {
            .listen = "127.0.0.1:0",
            .token = FAKE_TOKEN,
            .max_body_bytes = 4096,
            .idle_timeout_s = 10,
        };
        follower = http_server_new(&fo, &follower_backend, NULL);
        if (!follower || http_server_start(follower) < 0)
                th_die("cannot start the follower's HTTP server");
        snprintf(follower_url, sizeof(follower_url), "http://127.0.0.1:%u",
                 http_server_port(follower));

        const struct CMUnitTest tests[] = {
            cmocka_unit_test_setup(test_usage, setup),
            cmocka_unit_test_setup(test_status_table, setup),
            cmocka_unit_test_setup(test_tasks, setup),
            cmocka_unit_test_setup(test_probes, setup),
            cmocka_unit_test_setup(test_auth_and_reachability, setup),
            cmocka_unit_test_setup(test_persist, setup),
            cmocka_unit_test_setup(test_runs_plan_nightly_instances, setup),
            cmocka_unit_test_setup(test_several_servers, setup),
            cmocka_unit_test_setup(test_watch, setup),
            cmocka_unit_test_setup(test_watch_without_answers, setup),
            cmocka_unit_test_setup(test_watch_failover, setup),
        };
        int failed = cmocka_run_group_tests(tests, NULL, NULL);
        http_server_free(server);
        http_server_free(follower);
        free(token_path);
        free(bad_token_path);
        free(dir);
        curl_global_cleanup();
        return failed;
}
