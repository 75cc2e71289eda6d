/* SPDX-License-Identifier: Apache-2.0 */
/*
 * Planning a pool's hour: given the slots that fall in the hour and each save's estimated
 * duration, when will each start and end if the pool runs at most `limit` saves at once and
 * takes slots in slot order? This is the same rule the executors follow, computed ahead so an
 * overbooked hour is seen (and warned about) before it happens. Pure functions, any thread.
 */
#pragma once

#include <stddef.h>
#include <stdint.h>

struct plan_slot {
        /* In. */
        int64_t slot_us;     /* when it is due (schedule clock) */
        int64_t estimate_us; /* expected duration, >= 0 */
        uint64_t seq;        /* tie-break between equal slot times (e.g. task id order) */
        /* Out. */
        int64_t start_us;
        int64_t end_us;
};

/*
 * Sort `slots` by (slot_us, seq) and fill in start_us/end_us: each takes the place that frees
 * first, and starts at the later of its slot time and that moment. `busy_until_us` gives, for
 * each of the `limit` places, when it is free (saves already running); NULL means all free.
 * Returns 0, or -EINVAL for limit < 1.
 */
int plan_pool(struct plan_slot *slots, size_t n, int limit, const int64_t *busy_until_us);

/* The latest end among the planned slots, minus `deadline_us`; <= 0 when the plan fits. */
int64_t plan_overrun_us(const struct plan_slot *slots, size_t n, int64_t deadline_us);
