/* SPDX-License-Identifier: Apache-2.0 */
/*
 * The save state machine against real redis-server processes: a save succeeds and rdb_saves
 * moves; a slow save is awaited; a save already running is joined (normal mode) or waited for
 * and followed by exactly one fresh save (persist-now mode); an AOF rewrite leads to BGSAVE
 * SCHEDULE; BGREWRITEAOF alone and behind a BGSAVE; a diskless replication transfer is waited
 * for but not taken for a save. Saves are made slow with rdb-key-save-delay (microseconds per
 * key), never by timing; failure paths are in test-driver-faults.c.
 */
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

#include "core/clock.h"
#include "harness.h"
#include "redis/driver.h"
#include "test-driver-util.h"

static void test_save_succeeds(void **state)
{
        struct th_redis r;
        struct driver_save_result res;
        struct driver_save_request req = {.action = DRIVER_ACTION_BGSAVE};
        struct driver_estimator *est = driver_estimator_new(100.0 * 1024 * 1024, 20, 0.5);
        char *rdb;
        struct stat st;
        (void)state;

        th_redis_start(&r, NULL);
        drv_redis_do(&r, "DEBUG POPULATE 20000 key 100");
        struct driver_instance *inst = drv_instance_for(&r, NULL, est);
        long long before = drv_info_int(&r, "rdb_saves");

        assert_int_equal(driver_instance_save(inst, &req, &res), DRIVER_SUCCEEDED);
        assert_int_equal(res.outcome, DRIVER_SUCCEEDED);
        assert_string_equal(res.reason, "");
        assert_int_equal(res.commands_sent, 1);
        assert_false(res.waited_existing);
        assert_false(res.joined_existing);
        assert_true(res.has_counter);
        assert_int_equal(res.counter_before, before);
        assert_int_equal(res.counter_after, before + 1);
        assert_true(res.lastsave_after >= res.lastsave_before);
        assert_true(res.used_memory > 1000000);
        assert_true(res.fork_us >= 0);
        assert_true(res.estimate_us > 0);
        assert_true(res.timeout_us >= 20 * USEC_PER_SEC);
        assert_int_equal(drv_info_int(&r, "rdb_saves"), before + 1);
        assert_true(asprintf(&rdb, "%s/dump.rdb", r.dir) > 0);
        assert_int_equal(stat(rdb, &st), 0);
        assert_true(st.st_size > 100000);
        free(rdb);

        /* The completed save taught the estimator something. */
        double rate, fork;
        driver_estimator_get(est, &rate, &fork);
        assert_true(rate != 100.0 * 1024 * 1024 || fork != 20);
        assert_true(driver_estimator_current_us(est) > 0);

        driver_instance_free(inst);
        driver_estimator_free(est);
        th_redis_stop(&r);
}

static void test_slow_save_is_awaited(void **state)
{
        struct th_redis r;
        struct driver_save_result res;
        struct driver_save_request req = {.action = DRIVER_ACTION_BGSAVE};
        (void)state;

        th_redis_start(&r, NULL);
        drv_make_slow(&r, 2000, 500); /* about 1 s */
        struct driver_instance *inst = drv_instance_for(&r, NULL, NULL);
        assert_int_equal(driver_instance_save(inst, &req, &res), DRIVER_SUCCEEDED);
        assert_int_equal(res.commands_sent, 1);
        /* Done means done: no child left and the file written. */
        assert_int_equal(drv_info_int(&r, "rdb_bgsave_in_progress"), 0);
        assert_true(res.lastsave_after >= res.lastsave_before);
        assert_int_equal(res.counter_after, res.counter_before + 1);
        driver_instance_free(inst);
        th_redis_stop(&r);
}

static void test_running_save_is_joined(void **state)
{
        struct th_redis r;
        struct driver_save_result res;
        struct driver_save_request req = {.action = DRIVER_ACTION_BGSAVE};
        (void)state;

        th_redis_start(&r, NULL);
        drv_make_slow(&r, 2000, 400);
        long long before = drv_info_int(&r, "rdb_saves");
        /* The first save's time must differ from the server's start for lastsave to move. */
        clock_sleep_us(1100000);
        drv_redis_do(&r, "BGSAVE");
        struct driver_instance *inst = drv_instance_for(&r, NULL, NULL);
        assert_int_equal(driver_instance_save(inst, &req, &res), DRIVER_SUCCEEDED);
        assert_true(res.waited_existing);
        assert_true(res.joined_existing);
        assert_int_equal(res.commands_sent, 0);
        assert_true(res.save_started_wall_us > 0);
        assert_true(res.save_started_wall_us <= res.started_wall_us);
        /* Exactly one save happened: the one that was already running. */
        assert_int_equal(drv_info_int(&r, "rdb_saves"), before + 1);
        driver_instance_free(inst);
        th_redis_stop(&r);
}

static void test_fresh_save_after_running_one(void **state)
{
        struct th_redis r;
        struct driver_save_result res;
        struct driver_save_request req = {.action = DRIVER_ACTION_BGSAVE,
                                          .mode = DRIVER_MODE_FRESH};
        (void)state;

        th_redis_start(&r, NULL);
        drv_make_slow(&r, 2000, 300);
        long long before = drv_info_int(&r, "rdb_saves");
        drv_redis_do(&r, "BGSAVE");
        struct driver_instance *inst = drv_instance_for(&r, NULL, NULL);
        assert_int_equal(driver_instance_save(inst, &req, &res), DRIVER_SUCCEEDED);
        assert_true(res.waited_existing);
        assert_false(res.joined_existing);
        assert_int_equal(res.commands_sent, 1);
        /* The save that answers started after the call began (persist-now's contract). */
        assert_true(res.save_started_wall_us >= res.started_wall_us);
        assert_true(res.finished_wall_us >= res.save_started_wall_us);
        /* The running save, then exactly one fresh save. */
        assert_int_equal(drv_info_int(&r, "rdb_saves"), before + 2);
        assert_int_equal(res.counter_before, before + 1);
        assert_int_equal(res.counter_after, before + 2);
        driver_instance_free(inst);
        th_redis_stop(&r);
}

static void test_aof_rewrite_leads_to_schedule(void **state)
{
        struct th_redis r;
        struct driver_save_result res;
        struct driver_save_request req = {.action = DRIVER_ACTION_BGSAVE};
        (void)state;

        th_redis_start(&r, NULL);
        drv_make_slow(&r, 2000, 300);
        long long before = drv_info_int(&r, "rdb_saves");
        drv_redis_do(&r, "BGREWRITEAOF");
        assert_int_equal(drv_info_int(&r, "aof_rewrite_in_progress"), 1);
        struct driver_instance *inst = drv_instance_for(&r, NULL, NULL);
        assert_int_equal(driver_instance_save(inst, &req, &res), DRIVER_SUCCEEDED);
        assert_true(res.scheduled);
        assert_false(res.waited_existing);
        assert_int_equal(res.commands_sent, 1);
        assert_int_equal(drv_info_int(&r, "rdb_saves"), before + 1);
        assert_int_equal(drv_info_int(&r, "aof_rewrite_in_progress"), 0);
        driver_instance_free(inst);
        th_redis_stop(&r);
}

static void test_bgrewriteaof(void **state)
{
        struct th_redis r;
        struct driver_save_result res;
        struct driver_save_request req = {.action = DRIVER_ACTION_BGREWRITEAOF};
        (void)state;

        th_redis_start(&r, NULL);
        drv_make_slow(&r, 2000, 200);
        long long before = drv_info_int(&r, "aof_rewrites");
        struct driver_instance *inst = drv_instance_for(&r, NULL, NULL);
        assert_int_equal(driver_instance_save(inst, &req, &res), DRIVER_SUCCEEDED);
        assert_int_equal(res.commands_sent, 1);
        assert_false(res.scheduled);
        assert_int_equal(res.counter_before, before);
        assert_int_equal(res.counter_after, before + 1);
        assert_int_equal(drv_info_int(&r, "aof_rewrite_in_progress"), 0);

        /* With an RDB child running the server schedules the rewrite after it. */
        long long saves = drv_info_int(&r, "rdb_saves");
        drv_redis_do(&r, "BGSAVE");
        assert_int_equal(driver_instance_save(inst, &req, &res), DRIVER_SUCCEEDED);
        assert_true(res.scheduled);
        assert_int_equal(res.counter_after, before + 2);
        assert_int_equal(drv_info_int(&r, "rdb_saves"), saves + 1);
        driver_instance_free(inst);
        th_redis_stop(&r);
}

static void test_diskless_transfer_is_not_a_save(void **state)
{
        struct th_redis master, replica;
        struct driver_save_result res;
        struct driver_save_request req = {.action = DRIVER_ACTION_BGSAVE};
        char port[16];
        (void)state;

        th_redis_start(&master, NULL);
        drv_make_slow(&master, 2000, 300);
        drv_redis_do(&master, "CONFIG SET repl-diskless-sync yes");
        drv_redis_do(&master, "CONFIG SET repl-diskless-sync-delay 0");
        long long saves = drv_info_int(&master, "rdb_saves");
        snprintf(port, sizeof(port), "%u", master.port);
        const char *extra[] = {"--replicaof", "127.0.0.1", port, NULL};
        th_redis_start(&replica, extra);
        for (int i = 0; i < 500 && drv_info_int(&master, "rdb_bgsave_in_progress") != 1; i++)
                clock_sleep_us(10000);
        assert_int_equal(drv_info_int(&master, "rdb_bgsave_in_progress"), 1);
        assert_int_equal(drv_info_int(&master, "rdb_saves"), saves);

        /* The transfer's child is waited for (never a second child), but it wrote no file:
         * the driver starts a real save after it. */
        struct driver_instance *inst = drv_instance_for(&master, NULL, NULL);
        assert_int_equal(driver_instance_save(inst, &req, &res), DRIVER_SUCCEEDED);
        assert_true(res.waited_existing);
        assert_false(res.joined_existing);
        assert_int_equal(res.commands_sent, 1);
        assert_int_equal(drv_info_int(&master, "rdb_saves"), saves + 1);
        driver_instance_free(inst);
        th_redis_stop(&replica);
        th_redis_stop(&master);
}

int main(void)
{
        const struct CMUnitTest tests[] = {
            cmocka_unit_test(test_save_succeeds),
            cmocka_unit_test(test_slow_save_is_awaited),
            cmocka_unit_test(test_running_save_is_joined),
            cmocka_unit_test(test_fresh_save_after_running_one),
            cmocka_unit_test(test_aof_rewrite_leads_to_schedule),
            cmocka_unit_test(test_bgrewriteaof),
            cmocka_unit_test(test_diskless_transfer_is_not_a_save),
        };
        return cmocka_run_group_tests(tests, NULL, NULL);
}
