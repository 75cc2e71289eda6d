/* SPDX-License-Identifier: Apache-2.0 */
/*
 * The save state machine's failure paths against real redis-server processes: a save that
 * fails on disk, a server killed mid-save, the timeout and cancellation each end with their
 * outcome and reason; before_send can stop a save before anything is sent; adopt mode judges
 * from recorded before-values. Saves are made slow with rdb-key-save-delay (microseconds per
 * key), never by timing.
 */
#include <errno.h>
#include <pthread.h>
#include <setjmp.h>
#include <signal.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cmocka.h>

#include "core/clock.h"
#include "harness.h"
#include "redis/driver.h"
#include "test-driver-util.h"

static void wait_no_child(const struct th_redis *r)
{
        for (int i = 0; i < 3000; i++) {
                if (drv_info_int(r, "rdb_bgsave_in_progress") == 0 &&
                    drv_info_int(r, "aof_rewrite_in_progress") == 0)
                        return;
                clock_sleep_us(10000);
        }
        fail_msg("a child is still running");
}

static void test_save_fails_on_disk(void **state)
{
        struct th_redis r;
        struct driver_save_result res;
        struct driver_save_request req = {.action = DRIVER_ACTION_BGSAVE};
        char *dir = th_tmpdir("gone");
        const char *extra[] = {"--dir", dir, NULL};
        (void)state;

        /* The server's working directory disappears: the child cannot create its temp file.
         * (Permissions would not stop a root server; a missing directory does.) */
        th_redis_start(&r, extra);
        drv_redis_do(&r, "DEBUG POPULATE 1000 key 100");
        th_rmtree(dir);
        struct driver_instance *inst = drv_instance_for(&r, NULL, NULL);
        assert_int_equal(driver_instance_save(inst, &req, &res), DRIVER_FAILED);
        assert_non_null(strstr(res.reason, "rdb_last_bgsave_status:err"));
        assert_int_equal(res.commands_sent, 1);
        assert_int_equal(res.counter_after, res.counter_before + 1);
        driver_instance_free(inst);
        th_redis_stop(&r);
        free(dir);
}

struct delayed {
        pthread_t thread;
        int64_t delay_us;
        pid_t kill_pid;
        struct driver_cancel *cancel;
};

static void *delayed_main(void *p)
{
        struct delayed *d = p;
        clock_sleep_us(d->delay_us);
        if (d->kill_pid > 0)
                kill(d->kill_pid, SIGKILL);
        if (d->cancel)
                driver_cancel_request(d->cancel);
        return NULL;
}

static void test_server_killed_mid_save(void **state)
{
        struct th_redis r;
        struct driver_save_result res;
        struct driver_save_request req = {.action = DRIVER_ACTION_BGSAVE};
        (void)state;

        th_redis_start(&r, NULL);
        drv_make_slow(&r, 4000, 1000); /* about 4 s */
        struct driver_instance *inst = drv_instance_for(&r, NULL, NULL);
        struct delayed d = {.delay_us = 300000, .kill_pid = r.pid};
        assert_int_equal(pthread_create(&d.thread, NULL, delayed_main, &d), 0);
        assert_int_equal(driver_instance_save(inst, &req, &res), DRIVER_LOST);
        pthread_join(d.thread, NULL);
        assert_non_null(strstr(res.reason, "connection lost"));
        assert_int_equal(res.commands_sent, 1);
        driver_instance_free(inst);
        th_redis_stop(&r);
}

static void test_timeout(void **state)
{
        struct th_redis r;
        struct driver_save_result res;
        struct driver_save_request req = {.action = DRIVER_ACTION_BGSAVE};
        struct driver_options opts = drv_test_opts;
        (void)state;

        opts.min_timeout_s = 1;
        th_redis_start(&r, NULL);
        drv_make_slow(&r, 3000, 1000); /* about 3 s, the estimate says almost nothing */
        struct driver_instance *inst = drv_instance_for(&r, &opts, NULL);
        assert_int_equal(driver_instance_save(inst, &req, &res), DRIVER_TIMED_OUT);
        assert_non_null(strstr(res.reason, "did not finish within 1 s"));
        assert_int_equal(res.timeout_us, USEC_PER_SEC);
        /* Nothing was killed: the child is still writing. */
        assert_int_equal(drv_info_int(&r, "rdb_bgsave_in_progress"), 1);
        driver_instance_free(inst);
        th_redis_stop(&r);
}

static void test_cancel(void **state)
{
        struct th_redis r;
        struct driver_save_result res;
        struct driver_cancel *cancel = driver_cancel_new();
        struct driver_save_request req = {.action = DRIVER_ACTION_BGSAVE, .cancel = cancel};
        struct driver_options opts = drv_test_opts;
        (void)state;

        opts.poll_min_ms = opts.poll_max_ms = 5000; /* the cancel must not wait for a poll */
        th_redis_start(&r, NULL);
        drv_make_slow(&r, 1500, 1000);
        struct driver_instance *inst = drv_instance_for(&r, &opts, NULL);
        struct delayed d = {.delay_us = 200000, .cancel = cancel};
        int64_t t0 = clock_mono_us();
        assert_int_equal(pthread_create(&d.thread, NULL, delayed_main, &d), 0);
        assert_int_equal(driver_instance_save(inst, &req, &res), DRIVER_CANCELLED);
        pthread_join(d.thread, NULL);
        /* Seen before the first 5 s poll (a generous bound, not a speed figure). */
        assert_true(clock_mono_us() - t0 < 4 * USEC_PER_SEC);
        assert_int_equal(res.commands_sent, 1);
        assert_true(driver_cancel_is_requested(cancel));

        /* A cancelled token stops the next save before anything is sent. */
        wait_no_child(&r);
        long long saves = drv_info_int(&r, "rdb_saves");
        assert_int_equal(driver_instance_save(inst, &req, &res), DRIVER_CANCELLED);
        assert_int_equal(res.commands_sent, 0);
        assert_int_equal(drv_info_int(&r, "rdb_saves"), saves);
        driver_instance_free(inst);
        driver_cancel_free(cancel);
        th_redis_stop(&r);
}

struct recorded {
        bool called;
        struct driver_save_result before;
        int answer;
};

static int record_before(void *userdata, const struct driver_save_result *progress)
{
        struct recorded *rec = userdata;
        rec->called = true;
        rec->before = *progress;
        return rec->answer;
}

static void test_before_send_and_adopt(void **state)
{
        struct th_redis r;
        struct driver_save_result res;
        struct recorded rec = {.answer = -ESTALE};
        struct driver_save_request req = {
            .action = DRIVER_ACTION_BGSAVE, .before_send = record_before, .userdata = &rec};
        (void)state;

        th_redis_start(&r, NULL);
        drv_make_slow(&r, 2000, 300);
        struct driver_instance *inst = drv_instance_for(&r, NULL, NULL);
        long long saves = drv_info_int(&r, "rdb_saves");

        /* Deposed before sending: nothing reaches the instance. */
        assert_int_equal(driver_instance_save(inst, &req, &res), DRIVER_CANCELLED);
        assert_true(rec.called);
        assert_int_equal(res.commands_sent, 0);
        assert_int_equal(drv_info_int(&r, "rdb_saves"), saves);

        /* Nothing happened since the recorded values: adopt says so and sends nothing. */
        struct driver_save_request adopt = {
            .action = DRIVER_ACTION_BGSAVE,
            .mode = DRIVER_MODE_ADOPT,
            .before_has_counter = rec.before.has_counter,
            .before_counter = rec.before.counter_before,
            .before_lastsave = rec.before.lastsave_before,
        };
        assert_int_equal(driver_instance_save(inst, &adopt, &res), DRIVER_NOTHING);
        assert_int_equal(res.commands_sent, 0);

        /* A previous leader's save still running: adopt waits for it and counts it. */
        drv_redis_do(&r, "BGSAVE");
        assert_int_equal(driver_instance_save(inst, &adopt, &res), DRIVER_SUCCEEDED);
        assert_true(res.waited_existing);
        assert_true(res.joined_existing);
        assert_int_equal(res.commands_sent, 0);
        assert_int_equal(drv_info_int(&r, "rdb_saves"), saves + 1);

        /* And after it finished, adopt still sees that it happened, and when: the end is
         * the middle of lastsave's second (a new leader reconciles seconds later), not when it
         * looked. */
        long long lastsave = drv_info_int(&r, "rdb_last_save_time");
        clock_sleep_us(2500 * USEC_PER_MSEC);
        assert_int_equal(driver_instance_save(inst, &adopt, &res), DRIVER_SUCCEEDED);
        assert_false(res.waited_existing);
        assert_int_equal(res.lastsave_after, lastsave);
        int64_t mid = lastsave * USEC_PER_SEC + USEC_PER_SEC / 2;
        assert_true(res.finished_wall_us <= mid && res.finished_wall_us > mid - 10 * USEC_PER_MSEC);
        assert_true(res.finished_wall_us < clock_wall_us() - USEC_PER_SEC);
        driver_instance_free(inst);
        th_redis_stop(&r);
}

int main(void)
{
        const struct CMUnitTest tests[] = {
            cmocka_unit_test(test_save_fails_on_disk),
            cmocka_unit_test(test_server_killed_mid_save),
            cmocka_unit_test(test_timeout),
            cmocka_unit_test(test_cancel),
            cmocka_unit_test(test_before_send_and_adopt),
        };
        return cmocka_run_group_tests(tests, NULL, NULL);
}
