/* SPDX-License-Identifier: Apache-2.0 */
/*
 * The metrics registry: the exact text exposition format 0.0.4 (HELP/TYPE, label escaping,
 * cumulative buckets with +Inf, _sum and _count), type and cardinality checks, concurrent
 * updates, and docs/metrics.md matching the family table.
 */
#include <errno.h>
#include <math.h>
#include <pthread.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "core/util.h"
#include "http/metrics.h"
#include "sched/pool.h"

static const double buckets[] = {0.5, 1, 2.5};

static const struct metric_def defs[] = {
    {.name = "t_up", .type = METRIC_GAUGE, .help = "Is it up."},
    {.name = "t_requests_total",
     .type = METRIC_COUNTER,
     .help = "Requests with a \\ backslash\nand a newline.",
     .labels = {"path", "code"},
     .max_series = 3},
    {.name = "t_latency_seconds",
     .type = METRIC_HISTOGRAM,
     .help = "Latency.",
     .labels = {"pool"},
     .buckets = buckets,
     .n_buckets = 3},
    {.name = "t_empty_total", .type = METRIC_COUNTER, .help = "Never touched.", .labels = {"x"}},
};

static void test_exposition_exact(void **state)
{
        struct metrics *m = metrics_new_with(defs, ELEMENTSOF(defs));
        assert_non_null(m);
        assert_int_equal(metrics_gauge_set(m, 0, NULL, 1), 0);
        assert_int_equal(metrics_counter_add(m, 1, (const char *[]){"/a", "200"}, 2), 0);
        assert_int_equal(metrics_counter_add(m, 1, (const char *[]){"/a", "200"}, 1), 0);
        assert_int_equal(metrics_counter_add(m, 1, (const char *[]){"we\"ird\\pa\nth", "500"}, 0.5),
                         0);
        assert_int_equal(metrics_histogram_observe(m, 2, (const char *[]){"ssd"}, 0.2), 0);
        assert_int_equal(metrics_histogram_observe(m, 2, (const char *[]){"ssd"}, 1), 0);
        assert_int_equal(metrics_histogram_observe(m, 2, (const char *[]){"ssd"}, 7), 0);

        char *text = metrics_render(m);
        assert_string_equal(text,
                            "# HELP t_up Is it up.\n"
                            "# TYPE t_up gauge\n"
                            "t_up 1\n"
                            "# HELP t_requests_total Requests with a \\\\ backslash\\nand a "
                            "newline.\n"
                            "# TYPE t_requests_total counter\n"
                            "t_requests_total{path=\"/a\",code=\"200\"} 3\n"
                            "t_requests_total{path=\"we\\\"ird\\\\pa\\nth\",code=\"500\"} 0.5\n"
                            "# HELP t_latency_seconds Latency.\n"
                            "# TYPE t_latency_seconds histogram\n"
                            "t_latency_seconds_bucket{pool=\"ssd\",le=\"0.5\"} 1\n"
                            "t_latency_seconds_bucket{pool=\"ssd\",le=\"1\"} 2\n"
                            "t_latency_seconds_bucket{pool=\"ssd\",le=\"2.5\"} 2\n"
                            "t_latency_seconds_bucket{pool=\"ssd\",le=\"+Inf\"} 3\n"
                            "t_latency_seconds_sum{pool=\"ssd\"} 8.2\n"
                            "t_latency_seconds_count{pool=\"ssd\"} 3\n"
                            "# HELP t_empty_total Never touched.\n"
                            "# TYPE t_empty_total counter\n");
        free(text);
        metrics_free(m);
}

static void test_numbers(void **state)
{
        struct metrics *m = metrics_new_with(defs, 1);
        char *text;
        const struct {
                double v;
                const char *s;
        } cases[] = {
            {0, "0"},           {-3, "-3"},          {0.1, "0.1"}, {1e21, "1e+21"},
            {INFINITY, "+Inf"}, {-INFINITY, "-Inf"}, {NAN, "NaN"}, {123456789, "123456789"},
        };
        for (size_t i = 0; i < ELEMENTSOF(cases); i++) {
                char expect[128];
                metrics_gauge_set(m, 0, NULL, cases[i].v);
                text = metrics_render(m);
                snprintf(expect, sizeof(expect), "\nt_up %s\n", cases[i].s);
                if (!strstr(text, expect))
                        fail_msg("%g rendered as: %s", cases[i].v, text);
                free(text);
        }
        metrics_free(m);
}

static void test_refusals(void **state)
{
        struct metrics *m = metrics_new_with(defs, ELEMENTSOF(defs));
        /* Wrong type, wrong id, decreasing counter, missing values. */
        assert_int_equal(metrics_counter_add(m, 0, NULL, 1), -EINVAL);
        assert_int_equal(metrics_gauge_set(m, 1, (const char *[]){"a", "b"}, 1), -EINVAL);
        assert_int_equal(metrics_gauge_set(m, 99, NULL, 1), -EINVAL);
        assert_int_equal(metrics_counter_add(m, 1, (const char *[]){"a", "b"}, -1), -EINVAL);
        assert_int_equal(metrics_counter_add(m, 1, NULL, 1), -EINVAL);
        assert_int_equal(metrics_counter_add(m, 1, (const char *[]){"a", NULL}, 1), -EINVAL);
        char longv[300];
        memset(longv, 'v', sizeof(longv) - 1);
        longv[sizeof(longv) - 1] = '\0';
        assert_int_equal(metrics_counter_add(m, 1, (const char *[]){longv, "b"}, 1), -EINVAL);

        /* Cardinality: at most 3 label sets; existing ones still count. */
        for (int i = 0; i < 3; i++) {
                char v[8];
                snprintf(v, sizeof(v), "%d", i);
                assert_int_equal(metrics_counter_add(m, 1, (const char *[]){v, "x"}, 1), 0);
        }
        assert_int_equal(metrics_counter_add(m, 1, (const char *[]){"3", "x"}, 1), -E2BIG);
        assert_int_equal(metrics_counter_add(m, 1, (const char *[]){"0", "x"}, 1), 0);
        assert_true(metrics_value(m, 1, (const char *[]){"0", "x"}) == 2);
        assert_true(isnan(metrics_value(m, 1, (const char *[]){"3", "x"})));

        metrics_family_clear(m, 1);
        assert_true(isnan(metrics_value(m, 1, (const char *[]){"0", "x"})));
        assert_int_equal(metrics_counter_add(m, 1, (const char *[]){"3", "x"}, 1), 0);
        metrics_free(m);

        /* Invalid definitions. */
        static const struct metric_def bad_name[] = {{.name = "2bad", .type = METRIC_GAUGE}};
        assert_null(metrics_new_with(bad_name, 1));
        static const double unsorted[] = {1, 0.5};
        static const struct metric_def bad_buckets[] = {{.name = "h",
                                                         .type = METRIC_HISTOGRAM,
                                                         .help = "",
                                                         .buckets = unsorted,
                                                         .n_buckets = 2}};
        assert_null(metrics_new_with(bad_buckets, 1));
        static const struct metric_def bad_label[] = {
            {.name = "h", .type = METRIC_GAUGE, .help = "", .labels = {"le"}}};
        assert_null(metrics_new_with(bad_label, 1));
        metrics_free(NULL);
}

static void test_persistd_families(void **state)
{
        struct metrics *m = metrics_new();
        assert_non_null(m);
        assert_int_equal(metrics_gauge_set(m, M_IS_LEADER, NULL, 1), 0);
        assert_int_equal(metrics_counter_add(m, M_RUNS, (const char *[]){"nightly", "failed"}, 1),
                         0);
        assert_int_equal(
            metrics_gauge_set(m, M_POOL_SAVES_QUEUED, (const char *[]){"ssd", "persist"}, 4), 0);
        assert_int_equal(metrics_histogram_observe(m, M_SAVE_DURATION, (const char *[]){"ssd"}, 42),
                         0);
        /* Beyond a family's bound, the drop is counted. */
        for (int i = 0; i < 3; i++)
                metrics_counter_add(m, M_LEADER_TRANSITIONS,
                                    (const char *[]){i == 0   ? "up"
                                                     : i == 1 ? "down"
                                                              : "sideways"},
                                    1);
        char *text = metrics_render(m);
        assert_non_null(strstr(text, "# TYPE persistd_is_leader gauge\npersistd_is_leader 1\n"));
        assert_non_null(
            strstr(text, "persistd_runs_total{kind=\"nightly\",result=\"failed\"} 1\n"));
        assert_non_null(
            strstr(text, "persistd_pool_saves_queued{pool=\"ssd\",priority=\"persist\"} 4\n"));
        assert_non_null(
            strstr(text, "persistd_save_duration_seconds_bucket{pool=\"ssd\",le=\"60\"} 1\n"));
        assert_non_null(
            strstr(text, "persistd_save_duration_seconds_bucket{pool=\"ssd\",le=\"30\"} 0\n"));
        assert_non_null(strstr(text, "persistd_metrics_series_dropped_total 1\n"));
        /* Unlabelled families are always present, histograms with empty buckets. */
        assert_non_null(strstr(text, "persistd_lease_renew_failures_total 0\n"));
        assert_non_null(strstr(text, "persistd_lease_renew_duration_seconds_count 0\n"));
        /* Every family has HELP and TYPE, in table order. */
        const char *at = text;
        for (size_t i = 0; i < M__COUNT; i++) {
                char help[128];
                snprintf(help, sizeof(help), "# HELP %s ", metrics_families[i].name);
                const char *p = strstr(at, help);
                if (!p)
                        fail_msg("no HELP for %s", metrics_families[i].name);
                at = p;
        }
        free(text);
        metrics_free(m);
}

static void test_publish_pools(void **state)
{
        struct metrics *m = metrics_new();
        struct sched_pool_stats st[2] = {
            {.name = "ssd", .limit = 2, .running = 1, .queued = 3},
            {.name = "hdd", .limit = 1},
        };
        st[0].queued_by_priority[SCHED_PRIO_PERSIST] = 1;
        st[0].queued_by_priority[SCHED_PRIO_NIGHTLY] = 2;
        metrics_publish_pools(m, st, 2);
        char *text = metrics_render(m);
        assert_non_null(strstr(text, "persistd_pool_saves_running{pool=\"ssd\"} 1\n"
                                     "persistd_pool_saves_running{pool=\"hdd\"} 0\n"));
        assert_non_null(
            strstr(text, "persistd_pool_saves_queued{pool=\"ssd\",priority=\"persist\"} 1\n"));
        assert_non_null(
            strstr(text, "persistd_pool_saves_queued{pool=\"ssd\",priority=\"nightly\"} 2\n"));
        assert_non_null(strstr(text, "persistd_pool_limit{pool=\"hdd\"} 1\n"));
        free(text);
        /* A new snapshot replaces the values. */
        st[0].running = 2;
        metrics_publish_pools(m, st, 1);
        assert_true(metrics_value(m, M_POOL_SAVES_RUNNING, (const char *[]){"ssd"}) == 2);
        metrics_free(m);
}

struct hammer {
        struct metrics *m;
        int id;
};

static void *hammer(void *arg)
{
        struct metrics *m = arg;
        for (int i = 0; i < 2000; i++) {
                metrics_counter_add(m, M_RUNS, (const char *[]){"scheduled", "succeeded"}, 1);
                metrics_histogram_observe(m, M_SCHEDULE_LATENESS, (const char *[]){"p"}, 0.01);
                if (i % 500 == 0)
                        free(metrics_render(m));
        }
        return NULL;
}

static void test_concurrent_updates(void **state)
{
        struct metrics *m = metrics_new();
        pthread_t t[4];
        for (int i = 0; i < 4; i++)
                assert_int_equal(pthread_create(&t[i], NULL, hammer, m), 0);
        for (int i = 0; i < 4; i++)
                pthread_join(t[i], NULL);
        assert_true(metrics_value(m, M_RUNS, (const char *[]){"scheduled", "succeeded"}) == 8000);
        assert_true(metrics_value(m, M_SCHEDULE_LATENESS, (const char *[]){"p"}) == 8000);
        metrics_free(m);
}

#define BEGIN_MARK "<!-- BEGIN GENERATED: metrics_write_markdown() -->\n"
#define END_MARK   "<!-- END GENERATED -->\n"

static char *generated(void)
{
        char *buf;
        size_t len;
        FILE *f = open_memstream(&buf, &len);
        metrics_write_markdown(f);
        fclose(f);
        return buf;
}

/* docs/metrics.md holds exactly the table's rows (`test-metrics --write-docs FILE` rewrites it). */
static void test_docs_match(void **state)
{
        char *doc, *gen = generated();
        assert_int_equal(read_full_file(SOURCE_ROOT "/docs/metrics.md", 1 << 20, &doc, NULL), 0);
        char *b = strstr(doc, BEGIN_MARK), *e = strstr(doc, END_MARK);
        assert_non_null(b);
        assert_non_null(e);
        b += strlen(BEGIN_MARK);
        *e = '\0';
        if (!streq(b, gen))
                fail_msg("docs/metrics.md is stale: run build/tests/unit/test-metrics --write-docs "
                         "docs/metrics.md");
        free(doc);
        free(gen);
}

static int write_docs(const char *path)
{
        char *doc, *gen = generated();
        if (read_full_file(path, 1 << 20, &doc, NULL) < 0)
                return 1;
        char *b = strstr(doc, BEGIN_MARK), *e = strstr(doc, END_MARK);
        if (!b || !e)
                return 1;
        FILE *f = fopen(path, "w");
        fprintf(f, "%.*s%s%s", (int)(b + strlen(BEGIN_MARK) - doc), doc, gen, e);
        fclose(f);
        free(doc);
        free(gen);
        return 0;
}

int main(int argc, char *argv[])
{
        if (argc == 3 && streq(argv[1], "--write-docs"))
                return write_docs(argv[2]);
        const struct CMUnitTest tests[] = {
            cmocka_unit_test(test_exposition_exact),   cmocka_unit_test(test_numbers),
            cmocka_unit_test(test_refusals),           cmocka_unit_test(test_persistd_families),
            cmocka_unit_test(test_concurrent_updates), cmocka_unit_test(test_publish_pools),
            cmocka_unit_test(test_docs_match),
        };
        return cmocka_run_group_tests(tests, NULL, NULL);
}
