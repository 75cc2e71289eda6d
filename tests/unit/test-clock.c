/* SPDX-License-Identifier: Apache-2.0 */
/* Clocks: RFC 3339 round trips (MicroTime), the shiftable schedule clock, monotonicity. */
#include <errno.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <string.h>
#include <time.h>

#include <cmocka.h>

#include "core/clock.h"

static void test_parse_rfc3339(void **state)
{
        int64_t us;

        assert_int_equal(clock_parse_rfc3339("2026-11-21T13:41:23Z", false, &us), 0);
        assert_int_equal(us, INT64_C(1795268483) * USEC_PER_SEC);
        assert_int_equal(clock_parse_rfc3339("2026-11-21T13:41:23.123456Z", false, &us), 0);
        assert_int_equal(us % USEC_PER_SEC, 123456);
        assert_int_equal(clock_parse_rfc3339("2026-11-21T13:41:23.5Z", false, &us), 0);
        assert_int_equal(us % USEC_PER_SEC, 500000);
        /* Nanoseconds are truncated to microseconds. */
        assert_int_equal(clock_parse_rfc3339("2026-11-21T13:41:23.123456789Z", false, &us), 0);
        assert_int_equal(us % USEC_PER_SEC, 123456);
        /* An offset is normalised to UTC. */
        assert_int_equal(clock_parse_rfc3339("2026-11-21T15:41:23.000000+02:00", false, &us), 0);
        assert_int_equal(us, INT64_C(1795268483) * USEC_PER_SEC);
        assert_int_equal(clock_parse_rfc3339("2026-11-21T11:41:23-02:00", false, &us), 0);
        assert_int_equal(us, INT64_C(1795268483) * USEC_PER_SEC);
}

static void test_parse_rfc3339_rejects(void **state)
{
        static const char *const bad[] = {
            "",
            "2026-11-21",
            "2026-11-21T13:41Z",
            "2026-11-21T13:41:23",
            "2026-11-21 13:41:23Z",
            "2026-11-21T13:41:23z",
            "2026-02-30T00:00:00Z",
            "2026-13-01T00:00:00Z",
            "2026-11-21T24:00:00Z",
            "2026-11-21T13:41:23.Z",
            "2026-11-21T13:41:23.1234567890Z",
            "2026-11-21T13:41:23Zjunk",
            "2026-11-21T13:41:23+2:00",
        };
        int64_t us = 42;
        for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
                if (clock_parse_rfc3339(bad[i], false, &us) != -EINVAL)
                        fail_msg("accepted \"%s\"", bad[i]);
        }
        assert_int_equal(us, 42); /* not written on failure */
        /* Lenient mode (command line) takes a space and a lower-case z. */
        assert_int_equal(clock_parse_rfc3339("2026-11-21 13:41:23z", true, &us), 0);
}

static void test_format_microtime(void **state)
{
        char buf[CLOCK_RFC3339_MAX];
        int64_t t = INT64_C(1795268483) * USEC_PER_SEC + 1234;

        assert_string_equal(clock_format_rfc3339(t, 6, buf), "2026-11-21T13:41:23.001234Z");
        assert_string_equal(clock_format_rfc3339(t, 3, buf), "2026-11-21T13:41:23.001Z");
        assert_string_equal(clock_format_rfc3339(t, 0, buf), "2026-11-21T13:41:23Z");
        /* Exactly six digits even for a whole second. */
        assert_string_equal(clock_format_rfc3339(INT64_C(1795268483) * USEC_PER_SEC, 6, buf),
                            "2026-11-21T13:41:23.000000Z");
        int64_t back;
        assert_int_equal(clock_parse_rfc3339(clock_format_rfc3339(t, 6, buf), false, &back), 0);
        assert_int_equal(back, t);
}

static void test_wall_clock_starts_at_chosen_instant(void **state)
{
        int64_t start;
        assert_int_equal(clock_parse_rfc3339("2026-11-21T23:59:50Z", false, &start), 0);
        assert_false(clock_wall_is_shifted());
        clock_wall_start_at(start);
        assert_true(clock_wall_is_shifted());
        int64_t now = clock_wall_us();
        assert_true(now >= start && now < start + USEC_PER_SEC);
        /* It advances in real time from there. */
        clock_sleep_us(20 * USEC_PER_MSEC);
        int64_t later = clock_wall_us();
        assert_true(later - now >= 20 * USEC_PER_MSEC);
        assert_true(later - now < 5 * USEC_PER_SEC);
        /* A real-time instant read elsewhere (e.g. Redis's lastsave) is moved by the same shift:
         * the real clock's "now" reads as the schedule clock's. */
        struct timespec ts;
        clock_gettime(CLOCK_REALTIME, &ts);
        int64_t real = (int64_t)ts.tv_sec * USEC_PER_SEC + ts.tv_nsec / 1000;
        int64_t shifted = clock_wall_from_real_us(real), wall = clock_wall_us();
        assert_true(wall >= shifted && wall - shifted < USEC_PER_SEC);
        assert_true(shifted >= start && shifted < start + 5 * USEC_PER_SEC);
}

static void test_cond_waits_on_the_monotonic_clock(void **state)
{
        pthread_mutex_t lock = PTHREAD_MUTEX_INITIALIZER;
        pthread_cond_t cond;
        assert_int_equal(clock_cond_init(&cond), 0);
        pthread_mutex_lock(&lock);
        int64_t t0 = clock_mono_us();
        assert_int_equal(clock_cond_wait_us(&cond, &lock, 20 * USEC_PER_MSEC), ETIMEDOUT);
        assert_true(clock_mono_us() - t0 >= 20 * USEC_PER_MSEC);
        /* A deadline already past (or before the clock's origin) times out at once. */
        assert_int_equal(clock_cond_wait_until(&cond, &lock, t0), ETIMEDOUT);
        assert_int_equal(clock_cond_wait_until(&cond, &lock, -1), ETIMEDOUT);
        pthread_mutex_unlock(&lock);
        pthread_cond_destroy(&cond);
}

static void test_monotonic(void **state)
{
        int64_t a = clock_mono_us();
        clock_sleep_us(5 * USEC_PER_MSEC);
        int64_t b = clock_mono_us();
        assert_true(b - a >= 5 * USEC_PER_MSEC);
        assert_true(clock_mono_ms() >= b / USEC_PER_MSEC);
}

int main(void)
{
        const struct CMUnitTest tests[] = {
            cmocka_unit_test(test_parse_rfc3339),
            cmocka_unit_test(test_parse_rfc3339_rejects),
            cmocka_unit_test(test_format_microtime),
            cmocka_unit_test(test_wall_clock_starts_at_chosen_instant),
            cmocka_unit_test(test_monotonic),
            cmocka_unit_test(test_cond_waits_on_the_monotonic_clock),
        };
        return cmocka_run_group_tests(tests, NULL, NULL);
}
