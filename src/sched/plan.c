/* SPDX-License-Identifier: Apache-2.0 */
/* List scheduling of a pool's slots over its places. */
#include <errno.h>
#include <stdlib.h>

#include "core/macro.h"
#include "sched/plan.h"

static int slot_cmp(const void *a, const void *b)
{
        const struct plan_slot *x = a, *y = b;
        if (x->slot_us != y->slot_us)
                return x->slot_us < y->slot_us ? -1 : 1;
        return x->seq < y->seq ? -1 : x->seq > y->seq;
}

int plan_pool(struct plan_slot *slots, size_t n, int limit, const int64_t *busy_until_us)
{
        _cleanup_free_ int64_t *free_at = NULL;

        if (limit < 1)
                return -EINVAL;
        free_at = calloc((size_t)limit, sizeof(*free_at));
        if (!free_at)
                return -ENOMEM;
        for (int i = 0; i < limit; i++)
                free_at[i] = busy_until_us ? busy_until_us[i] : INT64_MIN;

        if (n > 0) /* qsort() must not be handed NULL, even for no elements */
                qsort(slots, n, sizeof(*slots), slot_cmp);
        for (size_t s = 0; s < n; s++) {
                /* The place that frees first; limits are small, a scan is cheapest. */
                int best = 0;
                for (int i = 1; i < limit; i++)
                        if (free_at[i] < free_at[best])
                                best = i;
                slots[s].start_us = MAX(slots[s].slot_us, free_at[best]);
                slots[s].end_us = slots[s].start_us + MAX(slots[s].estimate_us, (int64_t)0);
                free_at[best] = slots[s].end_us;
        }
        return 0;
}

int64_t plan_overrun_us(const struct plan_slot *slots, size_t n, int64_t deadline_us)
{
        int64_t latest = INT64_MIN;
        for (size_t s = 0; s < n; s++)
                latest = MAX(latest, slots[s].end_us);
        return n ? latest - deadline_us : INT64_MIN;
}
