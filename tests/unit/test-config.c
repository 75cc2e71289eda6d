/* SPDX-License-Identifier: Apache-2.0 */
/* Configuration: defaults, every class of bad input with its exact position, secrets, docs. */
#include <errno.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cmocka.h>

#include "config/config.h"
#include "core/macro.h"
#include "core/util.h"

static char tmpdir[] = "/tmp/persistd-test-config-XXXXXX";

static int group_setup(void **state)
{
        if (!mkdtemp(tmpdir))
                return -1;
        unsetenv("POD_NAME");
        unsetenv("POD_NAMESPACE");
        return 0;
}

static int group_teardown(void **state)
{
        char cmd[128];
        snprintf(cmd, sizeof(cmd), "rm -rf '%s'", tmpdir);
        return system(cmd) == 0 ? 0 : -1;
}

/* Write `text` to a file in the temporary directory; returns its path (caller frees). */
static char *write_file(const char *name, const char *text, mode_t mode)
{
        char *path;
        assert_true(asprintf(&path, "%s/%s", tmpdir, name) > 0);
        FILE *f = fopen(path, "w");
        assert_non_null(f);
        fputs(text, f);
        fclose(f);
        chmod(path, mode);
        return path;
}

/* Load YAML text; returns the error text (caller frees) or NULL when it loaded. */
static char *load_errors(const char *yaml, struct config **ret)
{
        _cleanup_free_ char *path = write_file("c.yaml", yaml, 0644);
        char *errors = NULL;
        struct config *c = NULL;
        int r = config_load(path, &c, &errors);
        if (r == 0) {
                assert_null(errors);
                if (ret)
                        *ret = c;
                else
                        config_free(c);
                return NULL;
        }
        assert_int_equal(r, -EINVAL);
        assert_null(c);
        assert_non_null(errors);
        return errors;
}

/* Assert that loading `yaml` fails with a line containing exactly `expected` (path stripped). */
static void expect_error(const char *yaml, const char *expected)
{
        _cleanup_free_ char *errors = load_errors(yaml, NULL);
        _cleanup_free_ char *want = NULL;
        if (!errors)
                fail_msg("expected an error containing \"%s\", but the file loaded", expected);
        /* With a position, the whole "FILE:LINE:COLUMN: key: ..." prefix must match. */
        if (expected[0] >= '0' && expected[0] <= '9')
                assert_true(asprintf(&want, "%s/c.yaml:%s", tmpdir, expected) > 0);
        else
                assert_true(asprintf(&want, "%s", expected) > 0);
        if (!strstr(errors, want))
                fail_msg("expected \"%s\" in:\n%s", want, errors);
}

static void test_defaults(void **state)
{
        _cleanup_(config_freep) struct config *c = NULL;
        _cleanup_free_ char *errors = NULL;

        /* No file at all: every default, and the defaults satisfy every check. */
        assert_int_equal(config_load(NULL, &c, &errors), 0);
        assert_string_equal(c->election.lease_name, "persistd-leader");
        assert_int_equal(c->election.lease_duration_s, 15);
        assert_true(c->election.renew_deadline_s == 10.0);
        assert_true(c->election.retry_period_s == 2.0);
        assert_string_equal(c->election.leader_label, "persistd.io/leader");
        assert_int_equal(c->kubernetes.request_timeout_ms, 5000);
        assert_string_equal(c->progress.address, "127.0.0.1:6379");
        assert_string_equal(c->progress.key_prefix, "persistd");
        assert_string_equal(c->schedule.timezone, "UTC");
        assert_int_equal(c->schedule.preload_minute, 40);
        assert_int_equal(c->schedule.max_plan_delay_s, 900);
        assert_int_equal(c->pools.default_limit, 1);
        assert_int_equal(c->pools.n_limits, 0);
        assert_true(c->nightly.enabled);
        assert_int_equal(c->nightly.start_minute, 0);
        assert_int_equal(c->nightly.window_h, 6);
        assert_int_equal(c->nightly.max_attempts, 3);
        assert_int_equal(c->driver.connect_timeout_ms, 2000);
        assert_int_equal(c->driver.command_timeout_ms, 5000);
        assert_true(c->driver.manage_save_config);
        assert_true(c->driver.write_rate_mb_s == 100.0);
        assert_true(c->driver.fork_ms_per_gb == 20.0);
        assert_true(c->driver.timeout_factor == 4.0);
        assert_int_equal(c->driver.min_timeout_s, 60);
        assert_string_equal(c->http.listen, "0.0.0.0:8080");
        assert_int_equal(c->log.level, LOG_LEVEL_INFO);
        assert_int_equal(c->log.format, LOG_FORMAT_JSON);
        assert_null(c->http.token);
}

static void test_empty_file_is_defaults(void **state)
{
        struct config *c = NULL;
        assert_null(load_errors("", &c));
        assert_int_equal(c->election.lease_duration_s, 15);
        config_free(c);
        assert_null(load_errors("# only a comment\n", NULL));
        assert_null(load_errors("---\n", NULL));
}

static void test_values_are_typed(void **state)
{
        struct config *c = NULL;
        char *errors = load_errors("kubernetes: {namespace: redis-system, pod_name: persistd-0, "
                                   "request_timeout_ms: 1000}\n"
                                   "election:\n"
                                   "  lease_duration_s: 4\n"
                                   "  renew_deadline_s: 3\n"
                                   "  retry_period_s: 0.5\n"
                                   "pools:\n"
                                   "  default_limit: 2\n"
                                   "  limits: {ssd-a: 3, hdd.b: 1}\n"
                                   "nightly: {enabled: false, start: \"23:30\"}\n"
                                   "schedule: {timezone: Europe/Paris}\n"
                                   "driver: {manage_save_config: no, timeout_factor: 2.5}\n"
                                   "log: {level: debug, format: text}\n",
                                   &c);
        if (errors)
                fail_msg("%s", errors);
        assert_string_equal(c->kubernetes.namespace, "redis-system");
        assert_string_equal(c->kubernetes.pod_name, "persistd-0");
        assert_int_equal(c->election.lease_duration_s, 4);
        assert_true(c->election.retry_period_s == 0.5);
        assert_int_equal(c->pools.default_limit, 2);
        assert_int_equal(config_pool_limit(c, "ssd-a"), 3);
        assert_int_equal(config_pool_limit(c, "hdd.b"), 1);
        assert_int_equal(config_pool_limit(c, "other"), 2);
        assert_false(c->nightly.enabled);
        assert_int_equal(c->nightly.start_minute, 23 * 60 + 30);
        assert_string_equal(c->schedule.timezone, "Europe/Paris");
        assert_false(c->driver.manage_save_config);
        assert_true(c->driver.timeout_factor == 2.5);
        assert_int_equal(c->log.level, LOG_LEVEL_DEBUG);
        assert_int_equal(c->log.format, LOG_FORMAT_TEXT);
        config_free(c);
}

static void test_unknown_keys(void **state)
{
        expect_error("election:\n  lease_duraton_s: 15\n",
                     "2:3: election.lease_duraton_s: unknown key");
        expect_error("electoin:\n  lease_duration_s: 15\n", "1:1: electoin: unknown section");
        expect_error("progress:\n  password: hunter2\n",
                     "2:3: progress.password: unknown key; secrets are read only from files: "
                     "use progress.password_file");
        /* The secret's value never appears in the message. */
        _cleanup_free_ char *e = load_errors("progress:\n  password: hunter2\n", NULL);
        assert_null(strstr(e, "hunter2"));
}

static void test_wrong_types(void **state)
{
        expect_error("election:\n  lease_duration_s: fifteen\n",
                     "2:21: election.lease_duration_s: expected an integer, got \"fifteen\"");
        expect_error("election:\n  lease_duration_s: \"15\"\n",
                     "2:21: election.lease_duration_s: expected an integer, got \"15\"");
        expect_error("election:\n  lease_duration_s: 15.5\n",
                     "2:21: election.lease_duration_s: expected an integer, got \"15.5\"");
        expect_error("election:\n  retry_period_s: 1e\n",
                     "2:19: election.retry_period_s: expected a number, got \"1e\"");
        expect_error("nightly:\n  enabled: maybe\n",
                     "2:12: nightly.enabled: expected true or false, got \"maybe\"");
        expect_error("log:\n  level: loud\n",
                     "2:10: log.level: expected one of debug, info, warn, error, got \"loud\"");
        expect_error("election:\n  lease_name: [a, b]\n",
                     "2:15: election.lease_name: expected a string, got a list");
        expect_error("election: 5\n", "1:11: election: expected a mapping of keys, got a scalar");
        expect_error("- a\n- b\n", "1:1: (top level): expected a mapping of sections");
        expect_error("election:\n  lease_duration_s:\n",
                     "election.lease_duration_s: a value is required here");
        expect_error("pools:\n  limits: [a]\n",
                     "2:11: pools.limits: expected a mapping of pool name to limit");
        expect_error("pools:\n  limits: {ssd: two}\n",
                     "2:17: pools.limits.ssd: expected an integer, got \"two\"");
        expect_error("pools:\n  limits: {\"bad pool\": 2}\n",
                     "2:12: pools.limits.bad pool: invalid pool name");
}

static void test_out_of_range(void **state)
{
        expect_error("election:\n  lease_duration_s: 0\n",
                     "2:21: election.lease_duration_s: must be between 1 and 3600, got 0");
        expect_error("schedule:\n  preload_minute: 60\n",
                     "2:19: schedule.preload_minute: must be between 0 and 59, got 60");
        expect_error("pools:\n  default_limit: -1\n",
                     "2:18: pools.default_limit: must be between 1 and 1024, got -1");
        expect_error("pools:\n  limits: {ssd: 0}\n",
                     "2:17: pools.limits.ssd: must be between 1 and 1024, got 0");
        expect_error("election:\n  lease_duration_s: 99999999999999999999\n",
                     "election.lease_duration_s: expected an integer");
        expect_error("driver:\n  estimate_weight: 1.5\n",
                     "2:20: driver.estimate_weight: must be between 0.01 and 1, got 1.5");
}

static void test_checked_strings(void **state)
{
        expect_error("schedule:\n  timezone: Mars/Olympus\n",
                     "2:13: schedule.timezone: unknown time zone \"Mars/Olympus\"");
        expect_error("schedule:\n  timezone: ../../etc/passwd\n",
                     "2:13: schedule.timezone: \"../../etc/passwd\" is not an IANA time zone name");
        expect_error("nightly:\n  start: \"24:00\"\n",
                     "2:10: nightly.start: \"24:00\" is not a time of day HH:MM");
        expect_error("nightly:\n  start: 1:00\n", "nightly.start: \"1:00\" is not a time of day");
        /* sscanf("%2d") used to read these as 01:30 and 00:30. */
        expect_error("nightly:\n  start: \" 1:30\"\n",
                     "nightly.start: \" 1:30\" is not a time of day");
        expect_error("nightly:\n  start: \"+0:30\"\n",
                     "nightly.start: \"+0:30\" is not a time of day");
        expect_error("progress:\n  address: localhost\n",
                     "2:12: progress.address: \"localhost\" is not HOST:PORT");
        expect_error("http:\n  listen: \"0.0.0.0:70000\"\n",
                     "2:11: http.listen: \"0.0.0.0:70000\" is not HOST:PORT");
        expect_error("election:\n  leader_label: \"persistd.io/\"\n",
                     "2:17: election.leader_label: \"persistd.io/\" is not a valid label key");
        expect_error(
            "election:\n  lease_name: Bad_Name\n",
            "2:15: election.lease_name: \"Bad_Name\" is not a valid Kubernetes object name");
        expect_error("kubernetes:\n  namespace: Redis\n",
                     "2:14: kubernetes.namespace: \"Redis\" is not a valid namespace name");
        expect_error("kubernetes:\n  kubeconfig: /nonexistent/kubeconfig\n",
                     "2:15: kubernetes.kubeconfig: cannot read \"/nonexistent/kubeconfig\"");
        expect_error("progress:\n  key_prefix: \"a b\"\n",
                     "progress.key_prefix: \"a b\" contains white space");
}

static void test_dsn_password_refused(void **state)
{
        expect_error("postgres:\n  dsn: \"host=db password=s3cret dbname=x\"\n",
                     "2:8: postgres.dsn: holds a password; secrets are read only from files");
        expect_error("postgres:\n  dsn: \"postgresql://app:s3cret@db/x\"\n",
                     "postgres.dsn: holds a password");
        _cleanup_free_ char *e =
            load_errors("postgres:\n  dsn: \"postgresql://app:s3cret@db/x\"\n", NULL);
        assert_null(strstr(e, "s3cret"));
        assert_null(load_errors("postgres:\n  dsn: \"postgresql://app@db/x\"\n", NULL));
        assert_null(load_errors("postgres:\n  dsn: \"host=db user=app dbname=x\"\n", NULL));
}

static void test_secret_files(void **state)
{
        _cleanup_free_ char *tok = write_file("token", "s3cr3t-token\n", 0600);
        _cleanup_free_ char *empty = write_file("empty", "\n", 0600);
        _cleanup_free_ char *unreadable = write_file("unreadable", "x", 0000);
        _cleanup_free_ char *yaml = NULL, *out = NULL;
        struct config *c = NULL;
        size_t n;

        assert_true(asprintf(&yaml, "http:\n  token_file: %s\n", tok) > 0);
        assert_null(load_errors(yaml, &c));
        assert_string_equal(c->http.token, "s3cr3t-token");

        /* The effective configuration names the file but never shows the secret. */
        FILE *f = open_memstream(&out, &n);
        config_print(c, f);
        fclose(f);
        assert_non_null(strstr(out, tok));
        assert_null(strstr(out, "s3cr3t-token"));
        config_free(c);

        free(yaml);
        assert_true(asprintf(&yaml, "http:\n  token_file: %s/missing\n", tmpdir) > 0);
        _cleanup_free_ char *e1 = load_errors(yaml, NULL);
        assert_non_null(strstr(e1, "2:15: http.token_file: cannot read secret file"));
        assert_non_null(strstr(e1, "No such file or directory"));

        free(yaml);
        assert_true(asprintf(&yaml, "progress:\n  password_file: %s\n", empty) > 0);
        _cleanup_free_ char *e2 = load_errors(yaml, NULL);
        assert_non_null(strstr(e2, "progress.password_file: cannot read secret file"));
        assert_non_null(strstr(e2, "it is empty"));

        if (geteuid() != 0) { /* root reads mode 0000 files */
                free(yaml);
                assert_true(asprintf(&yaml, "postgres:\n  dsn_file: %s\n", unreadable) > 0);
                _cleanup_free_ char *e3 = load_errors(yaml, NULL);
                assert_non_null(strstr(e3, "Permission denied"));
        }

        free(yaml);
        assert_true(asprintf(&yaml, "postgres:\n  dsn: \"host=x\"\n  dsn_file: %s\n", tok) > 0);
        _cleanup_free_ char *e4 = load_errors(yaml, NULL);
        assert_non_null(strstr(e4, "set postgres.dsn or postgres.dsn_file, not both"));
}

static void test_election_timings(void **state)
{
        expect_error("election:\n  lease_duration_s: 10\n",
                     "2:21: election.lease_duration_s: renew_deadline_s (10) must be less than "
                     "lease_duration_s (10)");
        expect_error("election:\n  renew_deadline_s: 2.4\n",
                     "2:21: election.renew_deadline_s: renew_deadline_s (2.4) must be greater "
                     "than 1.2 x retry_period_s (2.4)");
        expect_error("election:\n  retry_period_s: 9\n",
                     "2:19: election.retry_period_s: renew_deadline_s (10) must be greater than "
                     "1.2 x retry_period_s (10.8)");
        expect_error("kubernetes:\n  request_timeout_ms: 10000\n",
                     "2:23: kubernetes.request_timeout_ms: request_timeout_ms (10000) must be "
                     "shorter than the renew deadline (10 s)");
        /* Consistent short timings, as the integration tests use, are accepted. */
        assert_null(load_errors("kubernetes: {request_timeout_ms: 800}\n"
                                "election: {lease_duration_s: 3, renew_deadline_s: 2, "
                                "retry_period_s: 0.5}\n",
                                NULL));
}

static void test_every_error_reported(void **state)
{
        _cleanup_free_ char *e = load_errors("election:\n"
                                             "  lease_duration_s: 0\n"
                                             "  bogus: 1\n"
                                             "log:\n"
                                             "  level: loud\n"
                                             "nightly:\n"
                                             "  start: noon\n",
                                             NULL);
        int lines = 0;
        for (const char *p = e; *p; p++)
                lines += *p == '\n';
        /* One line per problem; the out-of-range lease keeps its default, so the timing
         * cross-check has nothing more to say. */
        assert_int_equal(lines, 4);
        assert_non_null(strstr(e, "election.bogus: unknown key"));
        assert_non_null(strstr(e, "log.level"));
        assert_non_null(strstr(e, "nightly.start"));
        /* In file order, top to bottom. */
        assert_true(strstr(e, ":2:21: election.lease_duration_s") <
                    strstr(e, ":3:3: election.bogus"));
        assert_true(strstr(e, ":3:3: election.bogus") < strstr(e, ":5:10: log.level"));
        assert_true(strstr(e, ":5:10: log.level") < strstr(e, ":7:10: nightly.start"));
}

static void test_yaml_syntax_and_duplicates(void **state)
{
        expect_error("election:\n  lease_duration_s: [1,\n",
                     "3:1: (yaml): did not find expected node content");
        expect_error("election:\n  lease_duration_s: 4\n  lease_duration_s: 5\n",
                     "3:3: election.lease_duration_s: key given twice");
        expect_error("log: {}\nlog: {}\n", "2:1: log: section given twice");
        expect_error("log: {}\n---\nlog: {}\n", "only one YAML document is allowed");
}

static void test_environment_overrides(void **state)
{
        struct config *c = NULL;

        setenv("POD_NAME", "persistd-7f9c-abcde", 1);
        setenv("POD_NAMESPACE", "redis-system", 1);
        assert_null(load_errors("kubernetes: {pod_name: from-file, namespace: file-ns}\n", &c));
        assert_string_equal(c->kubernetes.pod_name, "persistd-7f9c-abcde");
        assert_string_equal(c->kubernetes.namespace, "redis-system");
        config_free(c);

        setenv("POD_NAMESPACE", "Not_Valid", 1);
        _cleanup_free_ char *e = load_errors("", NULL);
        assert_non_null(
            strstr(e, "environment $POD_NAMESPACE: kubernetes.namespace: \"Not_Valid\""));
        unsetenv("POD_NAME");
        unsetenv("POD_NAMESPACE");
}

static void test_unreadable_config_file(void **state)
{
        char *errors = NULL;
        struct config *c = NULL;
        assert_int_equal(config_load("/nonexistent/persistd.yaml", &c, &errors), -EINVAL);
        assert_non_null(strstr(errors, "/nonexistent/persistd.yaml: cannot read the configuration "
                                       "file: No such file or directory"));
        free(errors);
}

/* The checked-in reference and example are exactly what the key table generates. */
static void compare_generated(const char *rel, void (*writer)(FILE *))
{
        _cleanup_free_ char *generated = NULL, *on_disk = NULL, *path = NULL;
        size_t n;
        FILE *f = open_memstream(&generated, &n);
        writer(f);
        fclose(f);
        assert_true(asprintf(&path, "%s/%s", SOURCE_ROOT, rel) > 0);
        assert_int_equal(read_full_file(path, 1 << 20, &on_disk, NULL), 0);
        if (!streq(generated, on_disk))
                fail_msg("%s is out of date: run `meson compile -C build config-docs`", rel);
}

static void test_docs_in_sync(void **state)
{
        compare_generated("docs/configuration.md", config_write_markdown);
        compare_generated("deploy/persistd.example.yaml", config_write_example);
}

static void test_example_is_valid(void **state)
{
        _cleanup_free_ char *path = NULL, *errors = NULL;
        _cleanup_(config_freep) struct config *c = NULL;
        assert_true(asprintf(&path, "%s/deploy/persistd.example.yaml", SOURCE_ROOT) > 0);
        if (config_load(path, &c, &errors) != 0)
                fail_msg("%s", errors);
}

int main(void)
{
        const struct CMUnitTest tests[] = {
            cmocka_unit_test(test_defaults),
            cmocka_unit_test(test_empty_file_is_defaults),
            cmocka_unit_test(test_values_are_typed),
            cmocka_unit_test(test_unknown_keys),
            cmocka_unit_test(test_wrong_types),
            cmocka_unit_test(test_out_of_range),
            cmocka_unit_test(test_checked_strings),
            cmocka_unit_test(test_dsn_password_refused),
            cmocka_unit_test(test_secret_files),
            cmocka_unit_test(test_election_timings),
            cmocka_unit_test(test_every_error_reported),
            cmocka_unit_test(test_yaml_syntax_and_duplicates),
            cmocka_unit_test(test_environment_overrides),
            cmocka_unit_test(test_unreadable_config_file),
            cmocka_unit_test(test_docs_in_sync),
            cmocka_unit_test(test_example_is_valid),
        };
        return cmocka_run_group_tests(tests, group_setup, group_teardown);
}
