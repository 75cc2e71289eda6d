/* SPDX-License-Identifier: Apache-2.0 */
/*
 * The save's child process as the driver sees it on a real redis-server: a child killed by a
 * signal is a failed save with the server's reason and the next save works; estimates converge
 * on a server whose saves take a stable time; a save of a populated instance is detected as
 * done with a duration that agrees with the wall clock and with INFO.
 */
#include <dirent.h>
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
#include <sys/types.h>

#include <cmocka.h>

#include "core/clock.h"
#include "harness.h"
#include "redis/driver.h"
#include "test-driver-util.h"

/* The pid of a child of `parent` (scanning /proc/<pid>/stat for the ppid), or 0 if none. */
static pid_t child_of(pid_t parent)
{
        DIR *d = opendir("/proc");
        struct dirent *de;
        pid_t found = 0;

        assert_non_null(d);
        while (!found && (de = readdir(d))) {
                char path[64], buf[512];
                long pid = strtol(de->d_name, NULL, 10);
                if (pid <= 0)
                        continue;
                snprintf(path, sizeof(path), "/proc/%ld/stat", pid);
                FILE *f = fopen(path, "re");
                if (!f)
                        continue;
                size_t n = fread(buf, 1, sizeof(buf) - 1, f);
                fclose(f);
                buf[n] = '\0';
                /* "pid (comm) state ppid ...": comm may hold spaces, so start after the last ')'.
                 */
                char *p = strrchr(buf, ')');
                char state;
                int ppid;
                if (p && sscanf(p + 1, " %c %d", &state, &ppid) == 2 && ppid == parent &&
                    state != 'Z')
                        found = (pid_t)pid;
        }
        closedir(d);
        return found;
}

struct saver {
        pthread_t thread;
        struct driver_instance *inst;
        struct driver_save_result res;
        enum driver_outcome outcome;
};

static void *saver_main(void *p)
{
        struct saver *s = p;
        const struct driver_save_request req = {.action = DRIVER_ACTION_BGSAVE};
        s->outcome = driver_instance_save(s->inst, &req, &s->res);
        return NULL;
}

static void test_killed_child_is_a_failed_save(void **state)
{
        struct th_redis r;
        (void)state;

        th_redis_start(&r, NULL);
        drv_redis_do(&r, "DEBUG POPULATE 4000 key 100");
        drv_redis_do(&r, "CONFIG SET rdb-key-save-delay 2000"); /* about 8 s: plenty to find it */
        struct saver s = {.inst = drv_instance_for(&r, NULL, NULL)};
        assert_int_equal(pthread_create(&s.thread, NULL, saver_main, &s), 0);

        pid_t child = 0;
        int64_t end = clock_mono_us() + 10 * USEC_PER_SEC;
        while (!(child = child_of(r.pid)) && clock_mono_us() < end)
                clock_sleep_us(10 * 1000);
        assert_true(child > 0);
        assert_int_equal(drv_info_int(&r, "rdb_bgsave_in_progress"), 1);
        assert_int_equal(kill(child, SIGKILL), 0);
        pthread_join(s.thread, NULL);

        assert_int_equal(s.outcome, DRIVER_FAILED);
        assert_int_equal(s.res.outcome, DRIVER_FAILED);
        assert_non_null(strstr(s.res.reason, "rdb_last_bgsave_status:err"));
        assert_int_equal(s.res.commands_sent, 1);
        assert_int_equal(s.res.counter_after, s.res.counter_before + 1);
        assert_int_equal(drv_info_int(&r, "rdb_bgsave_in_progress"), 0);

        /* The next save works, and the server says so too. */
        drv_redis_do(&r, "CONFIG SET rdb-key-save-delay 0");
        const struct driver_save_request req = {.action = DRIVER_ACTION_BGSAVE};
        struct driver_save_result res;
        assert_int_equal(driver_instance_save(s.inst, &req, &res), DRIVER_SUCCEEDED);
        assert_string_equal(res.reason, "");
        assert_int_equal(res.commands_sent, 1);
        assert_int_equal(res.counter_after, res.counter_before + 1);
        redisContext *c = th_redis_connect(&r);
        redisReply *rep = th_redis_cmd(c, "INFO persistence");
        assert_non_null(strstr(rep->str, "rdb_last_bgsave_status:ok"));
        freeReplyObject(rep);
        redisFree(c);
        driver_instance_free(s.inst);
        th_redis_stop(&r);
}

static double rel_error(int64_t estimate, int64_t measured)
{
        double d = (double)estimate - (double)measured;
        return (d < 0 ? -d : d) / (double)measured;
}

static void test_estimates_converge_on_stable_saves(void **state)
{
        enum { SAVES = 8 };
        struct th_redis r;
        struct driver_save_result res;
        const struct driver_save_request req = {.action = DRIVER_ACTION_BGSAVE};
        double err[SAVES];
        int64_t dur[SAVES];
        (void)state;

        th_redis_start(&r, NULL);
        /* Fixed data (several MiB, so the write rate is learned) and a fixed per-key delay. */
        drv_redis_do(&r, "DEBUG POPULATE 2000 key 2000");
        drv_redis_do(&r, "CONFIG SET rdb-key-save-delay 300"); /* about 0.6 s a save */
        /* Seeded far off: 256 KiB/s makes the first estimate tens of seconds. */
        struct driver_estimator *est = driver_estimator_new(256.0 * 1024, 20, 0.3);
        assert_non_null(est);
        struct driver_instance *inst = drv_instance_for(&r, NULL, est);
        for (int i = 0; i < SAVES; i++) {
                assert_int_equal(driver_instance_save(inst, &req, &res), DRIVER_SUCCEEDED);
                assert_true(res.duration_us > 0);
                dur[i] = res.duration_us;
                err[i] = rel_error(res.estimate_us, res.duration_us);
                print_message("save %d: estimate %lld us, took %lld us, error %.2f\n", i,
                              (long long)res.estimate_us, (long long)res.duration_us, err[i]);
        }
        /*
         * The first estimate was badly wrong; the model then settles on what the saves take.
         * Each duration on a shared machine varies by tens of percent, so the estimate is
         * compared with the mean of the last four, not with any single one.
         */
        assert_true(err[0] > 1.0);
        assert_true((err[SAVES - 1] + err[SAVES - 2] + err[SAVES - 3]) / 3 < err[0] / 4);
        int64_t recent = (dur[SAVES - 1] + dur[SAVES - 2] + dur[SAVES - 3] + dur[SAVES - 4]) / 4;
        double final = rel_error(driver_estimator_estimate_us(est, res.used_memory), recent);
        print_message("estimate now %lld us, recent mean %lld us, error %.2f\n",
                      (long long)driver_estimator_estimate_us(est, res.used_memory),
                      (long long)recent, final);
        assert_true(final <= 0.25);
        driver_instance_free(inst);
        driver_estimator_free(est);
        th_redis_stop(&r);
}

static void test_populated_save_duration_matches(void **state)
{
        enum { KEYS = 3000, DELAY_US = 300 };
        struct th_redis r;
        struct driver_save_result res;
        const struct driver_save_request req = {.action = DRIVER_ACTION_BGSAVE};
        (void)state;

        th_redis_start(&r, NULL);
        drv_redis_do(&r, "DEBUG POPULATE %d key 1000", KEYS);
        drv_redis_do(&r, "CONFIG SET rdb-key-save-delay %d", DELAY_US);
        struct driver_instance *inst = drv_instance_for(&r, NULL, NULL);
        long long before = drv_info_int(&r, "rdb_saves");
        int64_t t0 = clock_mono_us();
        assert_int_equal(driver_instance_save(inst, &req, &res), DRIVER_SUCCEEDED);
        int64_t wall = clock_mono_us() - t0;

        /* Done means done: the child is gone and exactly one save was counted. */
        assert_int_equal(drv_info_int(&r, "rdb_bgsave_in_progress"), 0);
        assert_int_equal(drv_info_int(&r, "rdb_saves"), before + 1);
        assert_int_equal(res.counter_after, before + 1);
        redisContext *c = th_redis_connect(&r);
        redisReply *rep = th_redis_cmd(c, "INFO persistence");
        assert_non_null(strstr(rep->str, "rdb_last_bgsave_status:ok"));
        freeReplyObject(rep);
        redisFree(c);
        /* The child sleeps DELAY_US per key: the save cannot be shorter than that. */
        assert_true(res.duration_us >= (int64_t)KEYS * DELAY_US);
        assert_true(res.duration_us <= wall);
        /*
         * INFO's own figure is a difference of whole-second clock readings (at the fork and
         * when the server reaped the child), so it is off by up to a second either way.
         */
        long long info_s = drv_info_int(&r, "rdb_last_bgsave_time_sec");
        double secs = (double)res.duration_us / 1e6;
        print_message("duration %.3f s, INFO %lld s, wall %.3f s\n", secs, info_s,
                      (double)wall / 1e6);
        assert_true(info_s >= 0);
        assert_true(secs >= (double)info_s - 1.0 - 0.2);
        assert_true(secs <= (double)info_s + 1.0 + 1.0); /* and polling lag */
        assert_true(res.finished_wall_us - res.save_started_wall_us >= (int64_t)KEYS * DELAY_US);
        driver_instance_free(inst);
        th_redis_stop(&r);
}

int main(void)
{
        const struct CMUnitTest tests[] = {
            cmocka_unit_test(test_killed_child_is_a_failed_save),
            cmocka_unit_test(test_estimates_converge_on_stable_saves),
            cmocka_unit_test(test_populated_save_duration_matches),
        };
        return cmocka_run_group_tests(tests, NULL, NULL);
}
