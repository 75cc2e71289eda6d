/* SPDX-License-Identifier: Apache-2.0 */
/*
 * The persistd command line as a user meets it: verbs, exit codes, check-config's messages on
 * stderr, the effective configuration on stdout, and an orderly stop on SIGTERM.
 */
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

#include "core/util.h"
#include "harness.h"

static char *dir;

static int setup(void **state)
{
        dir = th_tmpdir("cli");
        return 0;
}

static int teardown(void **state)
{
        free(dir);
        return 0;
}

/* Run persistd with `args` (NULL-terminated); return its exit code and its output (caller frees). */
static int run_persistd(const char *const *args, char **out)
{
        char *log, *argv[16];
        size_t n = 0;
        int status;

        assert_true(asprintf(&log, "%s/out-%d.log", dir, rand()) > 0);
        argv[n++] = (char *)th_persistd_path();
        for (size_t i = 0; args[i]; i++)
                argv[n++] = (char *)args[i];
        argv[n] = NULL;
        pid_t pid = th_spawn(argv, NULL, log);
        assert_true(th_wait_exit(pid, 10000, &status));
        assert_int_equal(read_full_file(log, 1 << 20, out, NULL), 0);
        free(log);
        return WIFEXITED(status) ? WEXITSTATUS(status) : 128 + WTERMSIG(status);
}

static char *write_config(const char *name, const char *text)
{
        char *path;
        assert_true(asprintf(&path, "%s/%s", dir, name) > 0);
        FILE *f = fopen(path, "w");
        fputs(text, f);
        fclose(f);
        return path;
}

static void test_version_and_help(void **state)
{
        char *out;
        assert_int_equal(run_persistd((const char *[]){"version", NULL}, &out), 0);
        assert_non_null(strstr(out, "persistd "));
        free(out);
        assert_int_equal(run_persistd((const char *[]){"--help", NULL}, &out), 0);
        assert_non_null(strstr(out, "check-config"));
        assert_non_null(strstr(out, "Exit status"));
        free(out);
        assert_int_equal(run_persistd((const char *[]){"frobnicate", NULL}, &out), 2);
        assert_non_null(strstr(out, "unknown verb \"frobnicate\""));
        free(out);
        assert_int_equal(run_persistd((const char *[]){"--no-such-option", NULL}, &out), 2);
        free(out);
}

static void test_check_config_reports_every_problem(void **state)
{
        char *path = write_config("bad.yaml", "election:\n"
                                              "  lease_duration_s: 5\n"
                                              "  retry_period_z: 1\n"
                                              "log: {level: loud}\n");
        char *out, *expect;
        assert_int_equal(run_persistd((const char *[]){"check-config", "-c", path, NULL}, &out), 78);
        assert_true(asprintf(&expect, "%s:3:3: election.retry_period_z: unknown key", path) > 0);
        assert_non_null(strstr(out, expect));
        free(expect);
        assert_true(asprintf(&expect, "%s:4:14: log.level: expected one of", path) > 0);
        assert_non_null(strstr(out, expect));
        free(expect);
        assert_true(asprintf(&expect, "%s:2:21: election.lease_duration_s: renew_deadline_s (10) "
                                      "must be less than lease_duration_s (5)",
                             path) > 0);
        assert_non_null(strstr(out, expect));
        free(expect);
        free(out);

        /* `run` refuses the same file before starting anything. */
        assert_int_equal(run_persistd((const char *[]){"run", "-c", path, NULL}, &out), 78);
        assert_null(strstr(out, "starting"));
        free(out);
        free(path);
}

static void test_check_config_prints_effective_values(void **state)
{
        char *token_path = write_config("token", "very-secret-token\n");
        char *yaml, *out;
        assert_true(asprintf(&yaml, "http: {token_file: %s}\npools: {limits: {ssd: 2}}\n",
                             token_path) > 0);
        char *path = write_config("good.yaml", yaml);
        assert_int_equal(run_persistd((const char *[]){"check-config", "-c", path, NULL}, &out), 0);
        assert_non_null(strstr(out, "lease_duration_s: 15\n"));
        assert_non_null(strstr(out, "    ssd: 2\n"));
        assert_non_null(strstr(out, token_path));
        assert_null(strstr(out, "very-secret-token"));
        free(out);
        free(path);
        free(yaml);
        free(token_path);
}

static void test_run_stops_on_sigterm(void **state)
{
        /* PostgreSQL unreachable: the daemon waits for it, and a stop signal ends the wait. */
        char *path = write_config("run.yaml", "log: {format: json}\n"
                                              "postgres: {dsn: \"host=127.0.0.1 port=1\"}\n");
        char *log, *out;
        int status;
        assert_true(asprintf(&log, "%s/run.log", dir) > 0);
        char *argv[] = {(char *)th_persistd_path(), (char *)"run", (char *)"-c", path,
                        (char *)"--fake-start", (char *)"2026-11-21T23:59:50Z", NULL};
        pid_t pid = th_spawn(argv, NULL, log);
        /* It is running and has logged its start. */
        for (int i = 0; i < 200; i++) {
                if (read_full_file(log, 1 << 20, &out, NULL) == 0) {
                        bool started = strstr(out, "starting") != NULL;
                        free(out);
                        if (started)
                                break;
                }
                usleep(20000);
        }
        assert_false(th_wait_exit(pid, 0, NULL));
        kill(pid, SIGTERM);
        assert_true(th_wait_exit(pid, 10000, &status));
        assert_true(WIFEXITED(status));
        assert_int_equal(WEXITSTATUS(status), 0);
        assert_int_equal(read_full_file(log, 1 << 20, &out, NULL), 0);
        assert_non_null(strstr(out, "\"level\":\"warn\""));
        assert_non_null(strstr(out, "schedule clock started at 2026-11-21T23:59:5"));
        assert_non_null(strstr(out, "received SIGTERM"));
        free(out);
        free(log);
        free(path);
}

int main(void)
{
        const struct CMUnitTest tests[] = {
                cmocka_unit_test(test_version_and_help),
                cmocka_unit_test(test_check_config_reports_every_problem),
                cmocka_unit_test(test_check_config_prints_effective_values),
                cmocka_unit_test(test_run_stops_on_sigterm),
        };
        return cmocka_run_group_tests(tests, setup, teardown);
}
