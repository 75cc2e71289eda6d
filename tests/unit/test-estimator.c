/* SPDX-License-Identifier: Apache-2.0 */
/*
 * The per-instance save estimate: the formula (fork cost x used memory + used memory / write
 * rate), seeding, the moving average learned from completed saves, the numbers stored in
 * PostgreSQL, and bad values refused; plus the cancel token.
 */
#include <errno.h>
#include <math.h>
#include <pthread.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>

#include <cmocka.h>

#include "config/config.h"
#include "redis/driver.h"

#define MIB (1024.0 * 1024.0)
#define GIB (1024.0 * MIB)

static void test_formula(void **state)
{
        (void)state;
        /* 100 MiB/s and 20 ms/GiB: 1 GiB takes 20 ms + 10.24 s. */
        struct driver_estimator *e = driver_estimator_new(100 * MIB, 20, 0.3);
        assert_non_null(e);
        assert_int_equal(driver_estimator_estimate_us(e, (int64_t)GIB), 20000 + 10240000);
        assert_int_equal(driver_estimator_estimate_us(e, 0), 0);
        assert_int_equal(driver_estimator_estimate_us(e, -5), 0);
        /* Linear in memory. */
        assert_int_equal(driver_estimator_estimate_us(e, 2 * (int64_t)GIB),
                         2 * driver_estimator_estimate_us(e, (int64_t)GIB));
        /* Planners ask for the estimate at the memory last seen. */
        assert_int_equal(driver_estimator_current_us(e), 0);
        driver_estimator_observe_memory(e, (int64_t)GIB);
        assert_int_equal(driver_estimator_current_us(e), 20000 + 10240000);
        /* Absurd sizes stay finite. */
        assert_true(driver_estimator_estimate_us(e, INT64_MAX) > 0);
        driver_estimator_free(e);
}

static void test_learning_is_a_moving_average(void **state)
{
        (void)state;
        struct driver_estimator *e = driver_estimator_new(100 * MIB, 20, 0.5);
        double rate, fork;

        /* 1 GiB saved in 2.1 s with a 100 ms fork: samples 100 ms/GiB and 512 MiB/s. */
        assert_true(driver_estimator_learn(e, (int64_t)GIB, 100000, 2100000));
        driver_estimator_get(e, &rate, &fork);
        assert_true(fabs(fork - 60) < 1e-9);     /* 0.5 x 100 + 0.5 x 20 */
        assert_true(fabs(rate - 306 * MIB) < 1); /* 0.5 x 512 + 0.5 x 100 */
        /* The same save again moves it further towards the sample. */
        assert_true(driver_estimator_learn(e, (int64_t)GIB, 100000, 2100000));
        driver_estimator_get(e, &rate, &fork);
        assert_true(fabs(fork - 80) < 1e-9);
        assert_true(fabs(rate - 409 * MIB) < 1);
        driver_estimator_free(e);
}

static void test_learning_edge_cases(void **state)
{
        (void)state;
        struct driver_estimator *e = driver_estimator_new(100 * MIB, 20, 1);
        double rate, fork;

        assert_false(driver_estimator_learn(e, 0, 100, 1000));
        assert_false(driver_estimator_learn(e, (int64_t)GIB, 100, 0));
        /* A tiny save updates the fork cost only. */
        assert_true(driver_estimator_learn(e, 512 * 1024, 500, 2000));
        driver_estimator_get(e, &rate, &fork);
        assert_true(rate == 100 * MIB);
        assert_true(fabs(fork - 500.0 / 1000 / (512.0 * 1024 / GIB)) < 1e-9);
        /* An unknown fork time leaves the fork cost alone and charges everything to writing. */
        assert_true(driver_estimator_learn(e, (int64_t)(200 * MIB), -1, 1000000));
        driver_estimator_get(e, &rate, &fork);
        assert_true(fabs(rate - 200 * MIB) < 1);
        assert_true(fabs(fork - 500.0 / 1000 / (512.0 * 1024 / GIB)) < 1e-9);
        /* A save measured at no time at all cannot claim an infinite rate. */
        assert_true(driver_estimator_learn(e, (int64_t)(200 * MIB), -1, 1));
        driver_estimator_get(e, &rate, &fork);
        assert_true(isfinite(rate) && rate <= 100000 * MIB);
        driver_estimator_free(e);
}

static void test_stored_numbers(void **state)
{
        (void)state;
        struct driver_estimator *e = driver_estimator_new(100 * MIB, 20, 0.3);
        double rate, fork;

        assert_int_equal(driver_estimator_set(e, 50e6, 35.5), 0);
        driver_estimator_get(e, &rate, &fork);
        assert_true(rate == 50e6 && fork == 35.5);
        assert_int_equal(driver_estimator_set(e, 0, 1), -EINVAL);
        assert_int_equal(driver_estimator_set(e, NAN, 1), -EINVAL);
        assert_int_equal(driver_estimator_set(e, 1, -1), -EINVAL);
        assert_int_equal(driver_estimator_set(e, 1, INFINITY), -EINVAL);
        driver_estimator_get(e, &rate, &fork);
        assert_true(rate == 50e6 && fork == 35.5);
        driver_estimator_free(e);

        assert_null(driver_estimator_new(0, 20, 0.3));
        assert_null(driver_estimator_new(1, 20, 0));
        assert_null(driver_estimator_new(1, 20, 1.5));
        driver_estimator_free(NULL);
}

static void test_options_from_config(void **state)
{
        (void)state;
        struct config *c = config_new();
        struct driver_options o;
        assert_non_null(c);
        driver_options_from_config(c, &o);
        assert_int_equal(o.connect_timeout_ms, 2000);
        assert_int_equal(o.command_timeout_ms, 5000);
        assert_int_equal(o.min_timeout_s, 60);
        assert_true(o.timeout_factor == 4);
        assert_true(o.poll_min_ms <= o.poll_max_ms);
        config_free(c);
}

static void *cancel_later(void *p)
{
        driver_cancel_request(p);
        return NULL;
}

static void test_cancel_token(void **state)
{
        (void)state;
        struct driver_cancel *c = driver_cancel_new();
        pthread_t t;
        assert_false(driver_cancel_is_requested(c));
        assert_int_equal(pthread_create(&t, NULL, cancel_later, c), 0);
        pthread_join(t, NULL);
        assert_true(driver_cancel_is_requested(c));
        driver_cancel_request(c);
        assert_true(driver_cancel_is_requested(c));
        driver_cancel_free(c);
        driver_cancel_free(NULL);
}

int main(void)
{
        const struct CMUnitTest tests[] = {
            cmocka_unit_test(test_formula),
            cmocka_unit_test(test_learning_is_a_moving_average),
            cmocka_unit_test(test_learning_edge_cases),
            cmocka_unit_test(test_stored_numbers),
            cmocka_unit_test(test_options_from_config),
            cmocka_unit_test(test_cancel_token),
        };
        return cmocka_run_group_tests(tests, NULL, NULL);
}
