/* SPDX-License-Identifier: Apache-2.0 */
/*
 * The hourly controllers and their master, with real pools, real cron and the schedule clock
 * started at chosen instants (minute 40, the hour change, midnight); the store side is a fake
 * that records what it is asked. Assertions are on which slots ran, were missed or were
 * loaded, never on durations.
 */
#include <errno.h>
#include <pthread.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "core/clock.h"
#include "sched/scheduler.h"

#define MAX_EVENTS 4096

struct event {
        int64_t task_id;
        int64_t slot_us;
        bool catch_up;
        int64_t started_us;
        char reason[160];
};

static struct {
        pthread_mutex_t lock;
        struct event ran[MAX_EVENTS];
        size_t n_ran;
        struct event missed[MAX_EVENTS];
        size_t n_missed;
        struct sched_slot_key recorded[MAX_EVENTS];
        size_t n_recorded;
        int64_t estimate_us;
        int64_t run_sleep_us;
        int limit;
        char overrun_pool[64];
        int64_t overrun_us;
        int overruns;
        int fail_missed; /* record_missed fails this many times first */
} fake;

static void fake_run_slot(const struct sched_slot_run *run, void *u)
{
        pthread_mutex_lock(&fake.lock);
        if (fake.n_ran < MAX_EVENTS)
                fake.ran[fake.n_ran++] =
                    (struct event){run->task->id, run->slot_us, run->catch_up, run->started_us, ""};
        /* Like the store's claim, running a slot gives it a run row. */
        if (fake.n_recorded < MAX_EVENTS)
                fake.recorded[fake.n_recorded++] =
                    (struct sched_slot_key){run->task->id, run->slot_us};
        int64_t sleep_us = fake.run_sleep_us;
        pthread_mutex_unlock(&fake.lock);
        if (sleep_us)
                clock_sleep_us(sleep_us); /* a save that takes a while */
}

static int fake_recorded(int64_t from, int64_t to, struct sched_slot_key **ret, size_t *n, void *u)
{
        pthread_mutex_lock(&fake.lock);
        *ret = calloc(fake.n_recorded + 1, sizeof(**ret));
        *n = 0;
        for (size_t i = 0; i < fake.n_recorded; i++)
                if (fake.recorded[i].slot_us >= from && fake.recorded[i].slot_us < to)
                        (*ret)[(*n)++] = fake.recorded[i];
        pthread_mutex_unlock(&fake.lock);
        return 0;
}

static int fake_record_missed(const struct sched_task *t, int64_t slot_us, const char *reason,
                              uint64_t generation, void *u)
{
        pthread_mutex_lock(&fake.lock);
        if (fake.fail_missed > 0) {
                fake.fail_missed--;
                pthread_mutex_unlock(&fake.lock);
                return -EIO;
        }
        if (fake.n_missed < MAX_EVENTS) {
                struct event *e = &fake.missed[fake.n_missed++];
                *e = (struct event){t->id, slot_us, false, 0, ""};
                snprintf(e->reason, sizeof(e->reason), "%s", reason);
        }
        pthread_mutex_unlock(&fake.lock);
        return 0;
}

static int64_t fake_estimate(const char *instance_id, void *u)
{
        pthread_mutex_lock(&fake.lock);
        int64_t e = fake.estimate_us;
        pthread_mutex_unlock(&fake.lock);
        return e;
}

static void fake_overrun(const char *pool, int64_t hour_us, int64_t overrun_us, void *u)
{
        pthread_mutex_lock(&fake.lock);
        snprintf(fake.overrun_pool, sizeof(fake.overrun_pool), "%s", pool);
        fake.overrun_us = overrun_us;
        fake.overruns++;
        pthread_mutex_unlock(&fake.lock);
}

static const struct sched_ops fake_ops = {
    .run_slot = fake_run_slot,
    .recorded_slots = fake_recorded,
    .record_missed = fake_record_missed,
    .estimate_us = fake_estimate,
    .plan_overrun = fake_overrun,
};

static int pool_limit(const char *pool, void *u)
{
        return fake.limit ? fake.limit : 1;
}

static int64_t at(const char *rfc3339)
{
        int64_t us;
        assert_int_equal(clock_parse_rfc3339(rfc3339, false, &us), 0);
        return us;
}

static struct sched_task make_task(int64_t id, const char *schedule, const char *pool)
{
        /* Created now: catch-up never reaches before a task existed. */
        struct sched_task t = {.id = id, .run_once = true, .created_us = clock_wall_us()};
        struct cron_error err;
        snprintf(t.instance_id, sizeof(t.instance_id), "cache-%lld", (long long)id);
        snprintf(t.pool, sizeof(t.pool), "%s", pool);
        if (cron_parse(schedule, &t.schedule, &err) < 0)
                fail_msg("cron \"%s\": %s", schedule, err.message);
        return t;
}

struct fixture {
        struct tz_zone *zone;
        struct sched_pools *pools;
        struct scheduler *s;
};

/* The running fixture, stopped by the teardown even when a test fails half-way. */
static struct fixture *current;

static void fixture_start(struct fixture *f, const char *zone, const char *start)
{
        char err[TZ_ERROR_MAX];
        int limit = fake.limit;
        memset(&fake, 0, sizeof(fake));
        fake.limit = limit;
        pthread_mutex_init(&fake.lock, NULL);
        assert_int_equal(tz_zone_load(zone, &f->zone, err, sizeof(err)), 0);
        clock_wall_start_at(at(start));
        f->pools = sched_pools_new(pool_limit, NULL, 600 * USEC_PER_SEC);
        struct sched_options opts = {.preload_minute = 40, .max_plan_delay_us = 900 * USEC_PER_SEC};
        f->s = sched_new(&opts, f->zone, f->pools, &fake_ops);
        assert_non_null(f->s);
        assert_int_equal(sched_start(f->s), 0);
        current = f;
}

static void fixture_lead(struct fixture *f, uint64_t generation)
{
        sched_pools_set_generation(f->pools, generation);
        sched_start_leading(f->s, generation);
}

static void fixture_stop(struct fixture *f)
{
        current = NULL;
        sched_stop_leading(f->s);
        sched_stop(f->s);
        sched_pools_free(f->pools);
        sched_free(f->s);
        tz_zone_free(f->zone);
        fake.limit = 0;
}

static size_t n_ran(void)
{
        pthread_mutex_lock(&fake.lock);
        size_t n = fake.n_ran;
        pthread_mutex_unlock(&fake.lock);
        return n;
}

static size_t n_missed(void)
{
        pthread_mutex_lock(&fake.lock);
        size_t n = fake.n_missed;
        pthread_mutex_unlock(&fake.lock);
        return n;
}

/* Wait (bounded) until the schedule clock reaches `t`. */
static void sleep_until(int64_t t)
{
        while (clock_wall_us() < t)
                clock_sleep_us(MIN(t - clock_wall_us(), 20 * USEC_PER_MSEC) + 1);
}

static size_t count_ran(int64_t task_id, int64_t slot_us)
{
        size_t n = 0;
        pthread_mutex_lock(&fake.lock);
        for (size_t i = 0; i < fake.n_ran; i++)
                n += fake.ran[i].task_id == task_id && fake.ran[i].slot_us == slot_us;
        pthread_mutex_unlock(&fake.lock);
        return n;
}

/* Wait (up to 10 s of real time, generous for loaded machines) until the slot has run. */
static void wait_for_run(int64_t task_id, int64_t slot_us)
{
        for (int i = 0; i < 1000 && count_ran(task_id, slot_us) == 0; i++)
                clock_sleep_us(10000);
        if (count_ran(task_id, slot_us) == 0)
                fail_msg("task %lld: slot %lld never ran", (long long)task_id,
                         (long long)(slot_us / USEC_PER_SEC));
}

static const struct event *find_missed(int64_t task_id, int64_t slot_us)
{
        for (size_t i = 0; i < fake.n_missed; i++)
                if (fake.missed[i].task_id == task_id && fake.missed[i].slot_us == slot_us)
                        return &fake.missed[i];
        return NULL;
}

static void wait_catchup(struct fixture *f)
{
        for (int i = 0; i < 3000 && sched_catchups_done(f->s) == 0; i++)
                clock_sleep_us(1000);
        assert_int_equal(sched_catchups_done(f->s), 1);
}

static void test_next_hour_loaded_at_minute_40(void **state)
{
        static struct fixture f;
        struct sched_hour_info hours[2];
        fixture_start(&f, "UTC", "2026-11-21T10:39:58.500Z");
        struct sched_task t = make_task(1, "*/10 * * * *", "ssd"); /* :00, :10 ... :50 */
        assert_int_equal(sched_set_tasks(f.s, &t, 1), 0);
        fixture_lead(&f, 1);
        wait_catchup(&f);

        /* Before minute 40: the current hour only. */
        assert_int_equal(sched_loaded_hours(f.s, hours), 1);
        assert_int_equal(hours[0].hour_us, at("2026-11-21T10:00:00Z"));
        assert_int_equal(hours[0].slots, 6);

        sleep_until(at("2026-11-21T10:40:00Z"));
        for (int i = 0; i < 500 && sched_loaded_hours(f.s, hours) < 2; i++)
                clock_sleep_us(10000);
        assert_int_equal(sched_loaded_hours(f.s, hours), 2);
        assert_int_equal(hours[0].hour_us, at("2026-11-21T10:00:00Z"));
        assert_int_equal(hours[1].hour_us, at("2026-11-21T11:00:00Z"));
        assert_int_equal(hours[1].slots, 6);
        assert_true(hours[1].loaded_at_us >= at("2026-11-21T10:40:00Z"));
        /* The 10:40 slot was queued with the current hour and ran once. */
        for (int i = 0; i < 500 && count_ran(1, at("2026-11-21T10:40:00Z")) == 0; i++)
                clock_sleep_us(10000);
        assert_int_equal(count_ran(1, at("2026-11-21T10:40:00Z")), 1);
        fixture_stop(&f);
}

static void test_started_after_minute_40_loads_both_hours(void **state)
{
        static struct fixture f;
        struct sched_hour_info hours[2];
        fixture_start(&f, "UTC", "2026-11-21T10:45:00Z");
        struct sched_task t = make_task(1, "30 * * * *", "ssd");
        assert_int_equal(sched_set_tasks(f.s, &t, 1), 0);
        fixture_lead(&f, 1);
        wait_catchup(&f);
        for (int i = 0; i < 300 && sched_loaded_hours(f.s, hours) < 2; i++)
                clock_sleep_us(10000);
        assert_int_equal(sched_loaded_hours(f.s, hours), 2);
        assert_int_equal(hours[0].hour_us, at("2026-11-21T10:00:00Z"));
        assert_int_equal(hours[1].hour_us, at("2026-11-21T11:00:00Z"));
        assert_int_equal(hours[1].slots, 1);
        fixture_stop(&f);
}

/* Every slot of two pools across the hour and the day ran once, in order, never early; the
 * hour that ended was dropped. */
static void test_slots_run_at_their_times_across_midnight(void **state)
{
        static struct fixture f;
        fixture_start(&f, "UTC", "2026-11-21T23:59:58.300Z");
        struct sched_task t[3] = {make_task(1, "* * * * * *", "ssd"),
                                  make_task(2, "* * * * * *", "hdd"),
                                  make_task(3, "*/2 * * * * *", "ssd")};
        assert_int_equal(sched_set_tasks(f.s, t, 3), 0);
        fixture_lead(&f, 1);
        wait_for_run(1, at("2026-11-22T00:00:01Z"));
        wait_for_run(2, at("2026-11-22T00:00:01Z"));
        sleep_until(at("2026-11-22T00:00:01.500Z"));
        int64_t first = at("2026-11-21T23:59:59Z"), last = at("2026-11-22T00:00:01Z");
        for (int64_t slot = first; slot <= last; slot += USEC_PER_SEC) {
                for (int64_t id = 1; id <= 2; id++)
                        if (count_ran(id, slot) != 1)
                                fail_msg("task %lld slot %lld: ran %zu times", (long long)id,
                                         (long long)(slot / USEC_PER_SEC), count_ran(id, slot));
                assert_int_equal(count_ran(3, slot), (slot / USEC_PER_SEC) % 2 == 0);
        }
        /* Within a pool, slots started in slot order and never before their time. */
        pthread_mutex_lock(&fake.lock);
        int64_t prev_ssd = 0;
        for (size_t i = 0; i < fake.n_ran; i++) {
                const struct event *e = &fake.ran[i];
                assert_true(e->started_us >= e->slot_us);
                if (e->task_id != 2) {
                        assert_true(e->slot_us >= prev_ssd);
                        prev_ssd = e->slot_us;
                }
        }
        pthread_mutex_unlock(&fake.lock);
        /* The day changed: 23:00 was dropped when it ended, 00:00 of the 22nd is loaded. */
        struct sched_hour_info hours[2];
        assert_int_equal(sched_loaded_hours(f.s, hours), 1);
        assert_int_equal(hours[0].hour_us, at("2026-11-22T00:00:00Z"));
        fixture_stop(&f);
}

static void test_catch_up_applies_misfire_policies(void **state)
{
        static struct fixture f;
        fixture_start(&f, "UTC", "2026-11-21T10:05:00.500Z");
        struct sched_task t[3] = {
            make_task(1, "0 * * * * *", "a"), /* run_once, no deadline */
            make_task(2, "0 * * * * *", "b"), /* skip */
            make_task(3, "0 * * * * *", "c"), /* run_once, deadline 90 s */
        };
        for (int i = 0; i < 3; i++)
                t[i].created_us = at("2026-11-21T10:00:30Z"); /* no slots before it */
        t[1].run_once = false;
        t[2].starting_deadline_s = 90;
        /* The old leader ran 10:01 and 10:02 of task 1. */
        fake.recorded[0] = (struct sched_slot_key){1, at("2026-11-21T10:01:00Z")};
        fake.recorded[1] = (struct sched_slot_key){1, at("2026-11-21T10:02:00Z")};
        fake.n_recorded = 2;
        assert_int_equal(sched_set_tasks(f.s, t, 3), 0);
        fixture_lead(&f, 4);
        wait_catchup(&f);
        for (int i = 0; i < 500 && n_ran() < 5; i++)
                clock_sleep_us(10000);

        /* Task 1: 10:01, 10:02 already done; 10:03, 10:04, 10:05 run once each as catch-up. */
        assert_int_equal(count_ran(1, at("2026-11-21T10:01:00Z")), 0);
        assert_int_equal(count_ran(1, at("2026-11-21T10:02:00Z")), 0);
        for (int m = 3; m <= 5; m++) {
                int64_t slot = at("2026-11-21T10:00:00Z") + m * 60 * USEC_PER_SEC;
                assert_int_equal(count_ran(1, slot), 1);
        }
        assert_null(find_missed(1, at("2026-11-21T10:03:00Z")));
        /* Task 2 (skip): every past slot recorded missed, none run; the 10:00 slot is before
         * the task existed and is left alone. */
        assert_null(find_missed(2, at("2026-11-21T10:00:00Z")));
        for (int m = 1; m <= 5; m++) {
                int64_t slot = at("2026-11-21T10:00:00Z") + m * 60 * USEC_PER_SEC;
                const struct event *e = find_missed(2, slot);
                assert_non_null(e);
                assert_non_null(strstr(e->reason, "misfire policy is skip"));
                assert_int_equal(count_ran(2, slot), 0);
        }
        /* Task 3: within 90 s (10:04, 10:05) runs, older ones are missed for the deadline. */
        assert_int_equal(count_ran(3, at("2026-11-21T10:04:00Z")), 1);
        assert_int_equal(count_ran(3, at("2026-11-21T10:05:00Z")), 1);
        const struct event *e = find_missed(3, at("2026-11-21T10:03:00Z"));
        assert_non_null(e);
        assert_non_null(strstr(e->reason, "starting deadline (90 s)"));
        assert_int_equal(count_ran(3, at("2026-11-21T10:03:00Z")), 0);
        assert_int_equal(n_ran(), 5);
        assert_int_equal(n_missed(), 5 + 3);
        /* The runs were flagged as catch-up. */
        pthread_mutex_lock(&fake.lock);
        for (size_t i = 0; i < fake.n_ran; i++)
                assert_true(fake.ran[i].catch_up);
        pthread_mutex_unlock(&fake.lock);
        fixture_stop(&f);
}

/* The store fails during the catch-up: it is retried, and what it queued is not queued twice. */
static void test_catch_up_retried_after_an_error(void **state)
{
        static struct fixture f;
        fixture_start(&f, "UTC", "2026-11-21T10:03:30Z");
        fake.run_sleep_us = 800 * USEC_PER_MSEC; /* 10:02 and 10:03 still queued at the retry */
        fake.fail_missed = 1;
        struct sched_task t[2] = {make_task(1, "0 * * * * *", "a"),
                                  make_task(2, "0 * * * * *", "b")};
        t[0].created_us = t[1].created_us = at("2026-11-21T10:00:30Z");
        t[1].run_once = false;
        assert_int_equal(sched_set_tasks(f.s, t, 2), 0);
        fixture_lead(&f, 1);
        for (int i = 0; i < 1000 && sched_catchups_done(f.s) == 0; i++)
                clock_sleep_us(10000);
        assert_int_equal(sched_catchups_done(f.s), 1);
        for (int m = 1; m <= 3; m++)
                wait_for_run(1, at("2026-11-21T10:00:00Z") + m * 60 * USEC_PER_SEC);
        clock_sleep_us(900 * USEC_PER_MSEC);
        for (int m = 1; m <= 3; m++) {
                int64_t slot = at("2026-11-21T10:00:00Z") + m * 60 * USEC_PER_SEC;
                assert_int_equal(count_ran(1, slot), 1);
                assert_non_null(find_missed(2, slot));
        }
        assert_int_equal(n_ran(), 3);
        assert_int_equal(n_missed(), 3);
        fixture_stop(&f);
}

/* Leadership began just after the hour: the previous hour's tail is caught up too. */
static void test_catch_up_crosses_the_hour(void **state)
{
        static struct fixture f;
        fixture_start(&f, "Europe/Berlin", "2026-11-21T11:00:20.500Z");
        struct sched_task t = make_task(1, "*/30 * * * * *", "ssd");
        t.created_us = at("2026-11-21T10:59:00Z");
        fake.recorded[0] = (struct sched_slot_key){1, at("2026-11-21T10:59:00Z")};
        fake.n_recorded = 1;
        assert_int_equal(sched_set_tasks(f.s, &t, 1), 0);
        fixture_lead(&f, 2);
        wait_catchup(&f);
        for (int i = 0; i < 500 && n_ran() < 2; i++)
                clock_sleep_us(10000);
        assert_int_equal(count_ran(1, at("2026-11-21T10:59:00Z")), 0); /* recorded already */
        assert_int_equal(count_ran(1, at("2026-11-21T10:59:30Z")), 1); /* previous hour */
        assert_int_equal(count_ran(1, at("2026-11-21T11:00:00Z")), 1);
        assert_int_equal(n_ran(), 2);
        assert_int_equal(n_missed(), 0);
        fixture_stop(&f);
}

static void test_task_changes_reach_loaded_hours(void **state)
{
        static struct fixture f;
        fixture_start(&f, "UTC", "2026-11-21T10:20:00.300Z");
        struct sched_task t = make_task(7, "*/2 * * * * *", "ssd"); /* even seconds */
        assert_int_equal(sched_set_tasks(f.s, &t, 1), 0);
        fixture_lead(&f, 1);
        wait_catchup(&f);
        wait_for_run(7, at("2026-11-21T10:20:02Z"));
        assert_int_equal(count_ran(7, at("2026-11-21T10:20:02Z")), 1);

        /* Odd seconds from now on: no even slot after the change runs. */
        struct sched_task odd = make_task(7, "1-59/2 * * * * *", "ssd");
        assert_int_equal(sched_task_upsert(f.s, &odd), 0);
        wait_for_run(7, at("2026-11-21T10:20:05Z"));
        assert_int_equal(count_ran(7, at("2026-11-21T10:20:04Z")), 0);
        assert_int_equal(count_ran(7, at("2026-11-21T10:20:03Z")), 1);
        /* The kept plan follows the change: 30 odd slots in the hour. */
        struct sched_planned *plan;
        ssize_t n = sched_plan_hour(f.s, at("2026-11-21T10:00:00Z"), &plan);
        for (int i = 0; i < 300 && n != 1800; i++) {
                free(plan);
                clock_sleep_us(10000);
                n = sched_plan_hour(f.s, at("2026-11-21T10:00:00Z"), &plan);
        }
        assert_int_equal(n, 1800);
        assert_int_equal(plan[0].plan.slot_us, at("2026-11-21T10:00:01Z"));
        free(plan);

        /* Removed: nothing more. */
        assert_int_equal(sched_task_remove(f.s, 7), 0);
        clock_sleep_us(1200 * USEC_PER_MSEC);
        size_t before = n_ran();
        clock_sleep_us(1200 * USEC_PER_MSEC);
        assert_int_equal(n_ran(), before);

        /* Added again by a full resync, with another id alongside. */
        struct sched_task two[2] = {make_task(7, "* * * * * *", "ssd"),
                                    make_task(8, "* * * * * *", "hdd")};
        assert_int_equal(sched_set_tasks(f.s, two, 2), 0);
        int64_t next = (clock_wall_us() / USEC_PER_SEC + 1) * USEC_PER_SEC;
        wait_for_run(7, next);
        wait_for_run(8, next);
        /* A resync without 8 removes it. */
        assert_int_equal(sched_set_tasks(f.s, two, 1), 0);
        next = (clock_wall_us() / USEC_PER_SEC + 1) * USEC_PER_SEC;
        wait_for_run(7, next);
        assert_int_equal(count_ran(8, next), 0);
        fixture_stop(&f);
}

static void test_losing_leadership_stops_everything(void **state)
{
        static struct fixture f;
        struct sched_hour_info hours[2];
        fixture_start(&f, "UTC", "2026-11-21T10:45:00.300Z");
        struct sched_task t = make_task(1, "* * * * * *", "ssd");
        assert_int_equal(sched_set_tasks(f.s, &t, 1), 0);
        fixture_lead(&f, 1);
        wait_for_run(1, at("2026-11-21T10:45:01Z"));
        assert_int_equal(sched_loaded_hours(f.s, hours), 2);
        sched_stop_leading(f.s);
        /* At once: no controller, nothing queued. */
        assert_int_equal(sched_loaded_hours(f.s, hours), 0);
        struct sched_pool_stats *stats;
        int n = sched_pools_stats(f.pools, &stats);
        assert_int_equal(n, 1);
        assert_int_equal(stats[0].queued, 0);
        free(stats);
        size_t before = n_ran();
        clock_sleep_us(1500 * USEC_PER_MSEC);
        assert_int_equal(n_ran(), before);
        assert_int_equal(sched_loaded_hours(f.s, hours), 0);

        /* Leading again: a new catch-up, the hours come back. */
        fixture_lead(&f, 2);
        wait_catchup(&f);
        assert_int_equal(sched_loaded_hours(f.s, hours), 2);
        fixture_stop(&f);
}

/* Six tasks every second in a pool of two places, each save taking 300 ms: never more than
 * two at once, and every place is used. */
static void test_pool_limit_honoured(void **state)
{
        static struct fixture f;
        fake.limit = 2;
        fixture_start(&f, "UTC", "2026-11-21T10:10:00.300Z");
        fake.run_sleep_us = 300 * USEC_PER_MSEC;
        struct sched_task t[6];
        for (int i = 0; i < 6; i++)
                t[i] = make_task(i + 1, "* * * * * *", "ssd");
        assert_int_equal(sched_set_tasks(f.s, t, 6), 0);
        fixture_lead(&f, 1);
        for (int i = 1; i <= 6; i++)
                wait_for_run(i, at("2026-11-21T10:10:01Z"));
        struct sched_pool_stats *stats;
        assert_int_equal(sched_pools_stats(f.pools, &stats), 1);
        assert_int_equal(stats[0].limit, 2);
        assert_int_equal(stats[0].max_running_seen, 2);
        assert_true(stats[0].started_total >= 6);
        free(stats);
        /* In slot order: a later slot never started before every earlier one had. */
        pthread_mutex_lock(&fake.lock);
        for (size_t i = 1; i < fake.n_ran; i++)
                assert_true(fake.ran[i].slot_us >= fake.ran[i - 1].slot_us);
        pthread_mutex_unlock(&fake.lock);
        fixture_stop(&f);
}

/* Europe/Berlin's spring-forward night through the scheduler: 02:30 local does not exist, the
 * fixed-time job runs once at 03:00 CEST; a wildcard job goes on every second. */
static void test_dst_spring_forward_runs_skipped_job_once(void **state)
{
        static struct fixture f;
        struct sched_hour_info hours[2];
        fixture_start(&f, "Europe/Berlin", "2026-03-29T00:59:58.500Z");
        struct sched_task t[2] = {make_task(1, "0 30 2 * * *", "ssd"),
                                  make_task(2, "* * * * * *", "hdd")};
        assert_int_equal(sched_set_tasks(f.s, t, 2), 0);
        fixture_lead(&f, 1);
        wait_catchup(&f);
        /* 01:59 CET, past minute 40: 01:00 CET and the next hour, 03:00 CEST, are loaded. */
        assert_int_equal(sched_loaded_hours(f.s, hours), 2);
        assert_int_equal(hours[0].hour_us, at("2026-03-29T00:00:00Z"));
        assert_int_equal(hours[1].hour_us, at("2026-03-29T01:00:00Z"));
        assert_int_equal(hours[1].slots, 3600 + 1);
        wait_for_run(1, at("2026-03-29T01:00:00Z"));
        wait_for_run(2, at("2026-03-29T01:00:00Z"));
        clock_sleep_us(200 * USEC_PER_MSEC);
        assert_int_equal(count_ran(1, at("2026-03-29T01:00:00Z")), 1);
        assert_int_equal(count_ran(2, at("2026-03-29T00:59:59Z")), 1);
        assert_int_equal(count_ran(2, at("2026-03-29T01:00:00Z")), 1);
        pthread_mutex_lock(&fake.lock);
        size_t runs_of_1 = 0;
        for (size_t i = 0; i < fake.n_ran; i++)
                runs_of_1 += fake.ran[i].task_id == 1;
        pthread_mutex_unlock(&fake.lock);
        assert_int_equal(runs_of_1, 1);
        fixture_stop(&f);
}

static void test_overbooked_hour_reported(void **state)
{
        static struct fixture f;
        fixture_start(&f, "UTC", "2026-11-21T10:50:00Z");
        fake.estimate_us = 10 * 60 * USEC_PER_SEC; /* ten minutes per save */
        struct sched_task t[12];
        for (int i = 0; i < 10; i++)
                t[i] = make_task(i + 1, "0 11 * * *", "ssd"); /* all at 11:00 */
        t[10] = make_task(11, "0 11 * * *", "hdd");           /* alone in its pool: fits */
        t[11] = make_task(12, "0 12 * * *", "ssd");           /* after the overbooked hour */
        assert_int_equal(sched_set_tasks(f.s, t, 12), 0);
        fixture_lead(&f, 1);
        wait_catchup(&f);
        struct sched_hour_info hours[2];
        assert_int_equal(sched_loaded_hours(f.s, hours), 2);
        /* 100 minutes of saves from 11:00: 40 minutes past the hour, more than 15 allowed. */
        pthread_mutex_lock(&fake.lock);
        assert_string_equal(fake.overrun_pool, "ssd");
        assert_int_equal(fake.overrun_us, 40 * 60 * USEC_PER_SEC);
        assert_int_equal(fake.overruns, 1);
        pthread_mutex_unlock(&fake.lock);

        /* The plan kept for the API: per pool (name order), each slot's expected start. */
        struct sched_planned *plan;
        ssize_t n = sched_plan_hour(f.s, at("2026-11-21T11:00:00Z"), &plan);
        assert_int_equal(n, 11);
        assert_string_equal(plan[0].pool, "hdd");
        assert_int_equal(plan[0].plan.start_us, at("2026-11-21T11:00:00Z"));
        for (ssize_t i = 1; i < n; i++) {
                char instance[32];
                snprintf(instance, sizeof(instance), "cache-%zd", i);
                assert_string_equal(plan[i].pool, "ssd");
                assert_int_equal(plan[i].task_id, i);
                assert_string_equal(plan[i].instance_id, instance);
                assert_int_equal(plan[i].plan.start_us,
                                 at("2026-11-21T11:00:00Z") + (i - 1) * 600 * USEC_PER_SEC);
                assert_int_equal(plan[i].plan.end_us, plan[i].plan.start_us + 600 * USEC_PER_SEC);
        }
        free(plan);
        /* An hour that is not loaded is planned on demand. */
        n = sched_plan_hour(f.s, at("2026-11-22T11:30:00Z"), &plan);
        assert_int_equal(n, 11);
        free(plan);
        /* 12:00 follows the loaded 11:00, whose saves hold the pool until 12:40. */
        n = sched_plan_hour(f.s, at("2026-11-21T12:30:00Z"), &plan);
        assert_int_equal(n, 1);
        assert_int_equal(plan[0].task_id, 12);
        assert_string_equal(plan[0].instance_id, "cache-12");
        assert_int_equal(plan[0].plan.slot_us, at("2026-11-21T12:00:00Z"));
        assert_int_equal(plan[0].plan.start_us, at("2026-11-21T12:40:00Z"));
        free(plan);
        n = sched_plan_hour(f.s, at("2026-11-21T13:30:00Z"), &plan);
        assert_int_equal(n, 0);
        free(plan);
        fixture_stop(&f);
}

static void test_hour_boundaries_follow_the_zone(void **state)
{
        char err[TZ_ERROR_MAX];
        struct tz_zone *kolkata, *paris, *lord_howe;
        assert_int_equal(tz_zone_load("Asia/Kolkata", &kolkata, err, sizeof(err)), 0);
        assert_int_equal(tz_zone_load("Europe/Paris", &paris, err, sizeof(err)), 0);
        assert_int_equal(tz_zone_load("Australia/Lord_Howe", &lord_howe, err, sizeof(err)), 0);
        /* +05:30: local hours start at :30 UTC. */
        assert_int_equal(sched_hour_start(kolkata, at("2026-11-21T10:45:00Z")),
                         at("2026-11-21T10:30:00Z"));
        assert_int_equal(sched_next_hour_start(kolkata, at("2026-11-21T10:30:00Z")),
                         at("2026-11-21T11:30:00Z"));
        /* Paris on the fall-back night: 02:00 CEST -> 02:00 CET, both are hour starts. */
        assert_int_equal(sched_hour_start(paris, at("2026-10-25T00:30:00Z")),
                         at("2026-10-25T00:00:00Z"));
        assert_int_equal(sched_next_hour_start(paris, at("2026-10-25T00:00:00Z")),
                         at("2026-10-25T01:00:00Z"));
        /* Paris on the spring-forward night: 01:00 CET is followed by 03:00 CEST. */
        assert_int_equal(sched_next_hour_start(paris, at("2026-03-29T00:00:00Z")),
                         at("2026-03-29T01:00:00Z"));
        /* Lord Howe moves by 30 minutes: 02:00 +11 becomes 01:30 +10:30 on 2026-04-05, so the
         * second 01:xx hour is 30 minutes long. */
        assert_int_equal(sched_hour_start(lord_howe, at("2026-04-04T15:10:00Z")),
                         at("2026-04-04T15:00:00Z"));
        assert_int_equal(sched_next_hour_start(lord_howe, at("2026-04-04T15:00:00Z")),
                         at("2026-04-04T15:30:00Z"));
        tz_zone_free(kolkata);
        tz_zone_free(paris);
        tz_zone_free(lord_howe);
}

static int teardown(void **state)
{
        if (current)
                fixture_stop(current);
        return 0;
}

int main(void)
{
        const struct CMUnitTest tests[] = {
            cmocka_unit_test_teardown(test_next_hour_loaded_at_minute_40, teardown),
            cmocka_unit_test_teardown(test_started_after_minute_40_loads_both_hours, teardown),
            cmocka_unit_test_teardown(test_slots_run_at_their_times_across_midnight, teardown),
            cmocka_unit_test_teardown(test_catch_up_applies_misfire_policies, teardown),
            cmocka_unit_test_teardown(test_catch_up_crosses_the_hour, teardown),
            cmocka_unit_test_teardown(test_catch_up_retried_after_an_error, teardown),
            cmocka_unit_test_teardown(test_task_changes_reach_loaded_hours, teardown),
            cmocka_unit_test_teardown(test_losing_leadership_stops_everything, teardown),
            cmocka_unit_test_teardown(test_pool_limit_honoured, teardown),
            cmocka_unit_test_teardown(test_dst_spring_forward_runs_skipped_job_once, teardown),
            cmocka_unit_test_teardown(test_overbooked_hour_reported, teardown),
            cmocka_unit_test_teardown(test_hour_boundaries_follow_the_zone, teardown),
        };
        return cmocka_run_group_tests(tests, NULL, NULL);
}
