/* SPDX-License-Identifier: Apache-2.0 */
/*
 * The fleet's scheduled saves with the schedule clock shifted (core/clock.h): crossing minute 40
 * loads the next hour, and a leader that takes over at 10:59:55 keeps saving across the hour
 * boundary, in seconds of real time; the nightly pass starts at a shifted midnight, a new leader
 * resumes that same pass, and nobody starts it again once it has finished.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>

#include <cmocka.h>

#include "core/clock.h"
#include "sched/scheduler.h"
#include "test-fleet-util.h"

/* 2026-12-01T10:39:55Z */
#define T_1039 (INT64_C(1796121595) * USEC_PER_SEC)
#define T_1100 (INT64_C(1796122800) * USEC_PER_SEC)
/* 2027-01-15T00:00:00Z: far from the real time, so a time from PostgreSQL's now() shows. */
#define T_MIDNIGHT (INT64_C(1799971200) * USEC_PER_SEC)

static bool cond_sql(struct fx *x, const char *sql, int timeout_ms)
{
        int64_t end = clock_mono_us() + (int64_t)timeout_ms * 1000;
        while (clock_mono_us() < end) {
                if (fx_int(x, "%s", sql) > 0)
                        return true;
                clock_sleep_us(100 * 1000);
        }
        return false;
}

static void test_clock_crosses_preload_minute_and_hour(void **state)
{
        struct fx x;
        struct fleet_options o;
        struct fleet *f;
        struct sched_hour_info hours[2];
        size_t n = 0;

        (void)state;
        fx_open(&x, "fleet_clock", 1, NULL);
        fx_instance(&x, "r1", 0, "p1");
        fx_sql(&x, "INSERT INTO tasks (instance_id, schedule) VALUES ('r1', '*/2 * * * * *')");
        fx_options(&o, "fleet-a", 1, 1);
        f = fx_fleet(&x, &o, NULL, NULL);
        fleet_start_leading(f, 1);

        /* Minute 40: the next hour is loaded too. */
        for (int i = 0; i < 400; i++) {
                n = sched_loaded_hours(fleet_scheduler(f), hours);
                if (n == 2)
                        break;
                clock_sleep_us(50 * 1000);
        }
        assert_int_equal(n, 2);
        assert_int_equal(hours[1].hour_us, T_1100);
        assert_true(cond_sql(&x,
                             "SELECT count(*) FROM runs WHERE state = 'succeeded' AND "
                             "scheduled_for >= '2026-12-01T10:40:00Z'",
                             20000));

        /* A new leader at 10:59:55 saves across the hour. */
        fleet_stop_leading(f);
        clock_wall_start_at(T_1100 - 5 * USEC_PER_SEC);
        fleet_start_leading(f, 2);
        assert_true(cond_sql(&x,
                             "SELECT count(*) FROM runs WHERE state = 'succeeded' AND "
                             "scheduled_for >= '2026-12-01T11:00:00Z'",
                             20000));
        /* The skipped twenty minutes were not replayed (the task did not exist then). */
        assert_int_equal(fx_int(&x, "SELECT count(*) FROM runs WHERE scheduled_for > "
                                    "'2026-12-01T10:40:30Z' AND scheduled_for < "
                                    "'2026-12-01T10:59:50Z'"),
                         0);
        fleet_free(f);
        fx_close(&x);
}

static struct fleet *nightly_fleet(struct fx *x, const char *identity, struct pgstore *store,
                                   struct progress *progress)
{
        struct fleet_options o;

        fx_options(&o, identity, 1, 1);
        o.nightly.enabled = true;
        o.nightly.start_minute = 0;
        o.nightly.window_us = 6 * 3600 * USEC_PER_SEC;
        return fx_fleet(x, &o, store, progress);
}

static void test_nightly_at_shifted_midnight_resumed_once(void **state)
{
        enum { N = 4 };
        struct fx x;
        struct fleet *a, *b;
        long long saves[N];

        (void)state;
        fx_open(&x, "fleet_clock_nightly", N, NULL);
        for (int i = 0; i < N; i++) {
                char id[16];
                snprintf(id, sizeof(id), "m%d", i);
                fx_instance(&x, id, i, "p1");
                fx_slow(&x, i, 40, 10000); /* ~0.4 s a save, one at a time (limit 1) */
                saves[i] = fx_rdb_saves(&x, i);
        }
        clock_wall_start_at(T_MIDNIGHT - 2 * USEC_PER_SEC);
        a = nightly_fleet(&x, "fleet-a", NULL, NULL);
        fleet_start_leading(a, 1);

        /* The pass of the new date starts by itself at 00:00 of the schedule clock. */
        assert_true(cond_sql(&x,
                             "SELECT count(*) FROM runs WHERE kind = 'nightly' AND state = "
                             "'succeeded'",
                             20000));
        assert_int_equal(fx_int(&x, "SELECT count(*) FROM passes WHERE pass_date = '2027-01-15' "
                                    "AND started_at >= '2027-01-15T00:00:00Z' AND started_at < "
                                    "'2027-01-15T00:00:05Z'"),
                         1);
        fleet_stop_leading(a);

        /* Another leader (its own connections) finds the pending set and resumes that pass. */
        struct pgstore *store_b = fx_store(&x);
        struct progress *progress_b = fx_progress(&x);
        b = nightly_fleet(&x, "fleet-b", store_b, progress_b);
        fleet_start_leading(b, 2);
        assert_true(cond_sql(&x, "SELECT count(*) FROM passes WHERE state = 'finished'", 30000));
        /* Then it stays finished: the started_at read back is tonight's, not a real-time one
         * before the scheduled start that would make the pass look not started yet. */
        clock_sleep_us(2 * USEC_PER_SEC);
        assert_int_equal(fx_int(&x, "SELECT count(*) FROM passes"), 1);
        assert_int_equal(fx_int(&x, "SELECT done FROM passes"), N);
        assert_int_equal(fx_int(&x, "SELECT count(*) FROM passes WHERE leader_identity = "
                                    "'fleet-b' AND finished_at >= started_at AND finished_at < "
                                    "'2027-01-15T00:01:00Z'"),
                         1);
        for (int i = 0; i < N; i++)
                assert_true(fx_rdb_saves(&x, i) >= saves[i] + 1);
        assert_int_equal(fx_int(&x, "SELECT count(DISTINCT instance_id) FROM runs WHERE kind = "
                                    "'nightly' AND state = 'succeeded'"),
                         N);
        fleet_free(b);
        fleet_free(a);
        progress_free(progress_b);
        pgstore_free(store_b);
        fx_close(&x);
}

int main(void)
{
        const struct CMUnitTest tests[] = {
            cmocka_unit_test(test_clock_crosses_preload_minute_and_hour),
            cmocka_unit_test(test_nightly_at_shifted_midnight_resumed_once),
        };
        clock_wall_start_at(T_1039);
        return cmocka_run_group_tests(tests, NULL, NULL);
}
