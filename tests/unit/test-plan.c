/* SPDX-License-Identifier: Apache-2.0 */
/* The planner: expected start and end of each slot in a pool, and overrun detection. */
#include <errno.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

#include <cmocka.h>

#include "sched/plan.h"

#define S(x) ((int64_t)(x)*1000000)

static void test_free_pool_starts_on_time(void **state)
{
        struct plan_slot s[] = {
            {.slot_us = S(60), .estimate_us = S(10), .seq = 1},
            {.slot_us = S(0), .estimate_us = S(5), .seq = 2},
            {.slot_us = S(120), .estimate_us = S(1), .seq = 3},
        };
        assert_int_equal(plan_pool(s, 3, 1, NULL), 0);
        /* Sorted by slot time; each starts on time because the pool is free then. */
        assert_int_equal(s[0].seq, 2);
        assert_int_equal(s[0].start_us, S(0));
        assert_int_equal(s[0].end_us, S(5));
        assert_int_equal(s[1].start_us, S(60));
        assert_int_equal(s[2].start_us, S(120));
        assert_true(plan_overrun_us(s, 3, S(3600)) < 0);
}

static void test_busy_pool_queues_in_slot_order(void **state)
{
        /* Four saves of 20 s all due at :00 in a pool of limit 1: back to back. */
        struct plan_slot s[4];
        for (int i = 0; i < 4; i++)
                s[i] = (struct plan_slot){
                    .slot_us = 0, .estimate_us = S(20), .seq = (uint64_t)(4 - i)};
        assert_int_equal(plan_pool(s, 4, 1, NULL), 0);
        for (int i = 0; i < 4; i++) {
                assert_int_equal(s[i].seq, (uint64_t)(i + 1)); /* ties broken by seq */
                assert_int_equal(s[i].start_us, S(20 * i));
                assert_int_equal(s[i].end_us, S(20 * (i + 1)));
        }
}

static void test_limit_two_uses_both_places(void **state)
{
        struct plan_slot s[] = {
            {.slot_us = 0, .estimate_us = S(30), .seq = 1},
            {.slot_us = 0, .estimate_us = S(10), .seq = 2},
            {.slot_us = 0, .estimate_us = S(10), .seq = 3},
            {.slot_us = S(5), .estimate_us = S(10), .seq = 4},
        };
        assert_int_equal(plan_pool(s, 4, 2, NULL), 0);
        assert_int_equal(s[0].start_us, 0);     /* place A until 30 */
        assert_int_equal(s[1].start_us, 0);     /* place B until 10 */
        assert_int_equal(s[2].start_us, S(10)); /* B frees first */
        assert_int_equal(s[3].start_us, S(20)); /* B again, not A (free at 30) */
        assert_int_equal(s[3].end_us, S(30));
}

static void test_running_saves_delay_the_plan(void **state)
{
        int64_t busy[] = {S(100)};
        struct plan_slot s[] = {{.slot_us = S(10), .estimate_us = S(5), .seq = 1}};
        assert_int_equal(plan_pool(s, 1, 1, busy), 0);
        assert_int_equal(s[0].start_us, S(100));
}

static void test_overrun(void **state)
{
        /* 200 saves of 30 s at :00 in one hour: 6000 s of work, 2400 s past the hour. */
        struct plan_slot s[200];
        for (int i = 0; i < 200; i++)
                s[i] = (struct plan_slot){.slot_us = 0, .estimate_us = S(30), .seq = (uint64_t)i};
        assert_int_equal(plan_pool(s, 200, 1, NULL), 0);
        assert_int_equal(plan_overrun_us(s, 200, S(3600)), S(2400));
        /* With limit 2 it just fits: 3000 s. */
        assert_int_equal(plan_pool(s, 200, 2, NULL), 0);
        assert_int_equal(plan_overrun_us(s, 200, S(3600)), -S(600));
}

static void test_bad_limit(void **state)
{
        struct plan_slot s[1] = {{0}};
        assert_int_equal(plan_pool(s, 1, 0, NULL), -EINVAL);
        assert_int_equal(plan_pool(NULL, 0, 1, NULL), 0);
}

int main(void)
{
        const struct CMUnitTest tests[] = {
            cmocka_unit_test(test_free_pool_starts_on_time),
            cmocka_unit_test(test_busy_pool_queues_in_slot_order),
            cmocka_unit_test(test_limit_two_uses_both_places),
            cmocka_unit_test(test_running_saves_delay_the_plan),
            cmocka_unit_test(test_overrun),
            cmocka_unit_test(test_bad_limit),
        };
        return cmocka_run_group_tests(tests, NULL, NULL);
}
