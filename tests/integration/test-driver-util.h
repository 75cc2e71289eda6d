/* SPDX-License-Identifier: Apache-2.0 */
/*
 * What the instance-driver integration tests share: driver options with short polls, an
 * instance handle for a harness redis-server, and small Redis helpers that fail the test on an
 * error. Main thread of a cmocka test only.
 */
#pragma once

#include "harness.h"
#include "redis/driver.h"

/* Timeouts of 2 s, polls between 10 and 100 ms, a 20 s minimum save timeout. */
extern const struct driver_options drv_test_opts;

/*
 * A driver handle for `r` (borrowed; its port and password), with `opts` (NULL: drv_test_opts)
 * and `est` (borrowed, may be NULL). Fails the test if it cannot be made. Caller frees.
 */
struct driver_instance *drv_instance_for(const struct th_redis *r,
                                         const struct driver_options *opts,
                                         struct driver_estimator *est);

/* Run a command on a fresh connection; fails the test on an error reply. */
void drv_redis_do(const struct th_redis *r, const char *fmt, ...)
    __attribute__((format(printf, 2, 3)));

/* An integer INFO field of `r`, -1 when absent. */
long long drv_info_int(const struct th_redis *r, const char *field);

/* Fill with `keys` keys and make every save take about keys x delay_us. */
void drv_make_slow(const struct th_redis *r, int keys, int delay_us);
