/* SPDX-License-Identifier: Apache-2.0 */
/* The Lease record, change detection, the acquire-or-renew decision, timings, identity, jitter. */
#include <errno.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/random.h>
#include <time.h>
#include <unistd.h>

#include "core/clock.h"
#include "core/macro.h"
#include "election/election.h"

void election_record_set_holder(struct election_record *rec, const char *holder)
{
        snprintf(rec->holder, sizeof(rec->holder), "%s", holder ? holder : "");
}

int election_record_set_resource_version(struct election_record *rec, const char *rv)
{
        if (!rv)
                rv = "";
        if (strlen(rv) >= sizeof(rec->resource_version))
                return -EOVERFLOW;
        strcpy(rec->resource_version, rv);
        return 0;
}

bool election_record_same(const struct election_record *a, const struct election_record *b)
{
        return streq(a->holder, b->holder) && a->lease_duration_s == b->lease_duration_s &&
               a->acquire_time_us == b->acquire_time_us && a->renew_time_us == b->renew_time_us &&
               a->lease_transitions == b->lease_transitions;
}

bool election_observe(struct election_observation *obs, const struct election_record *rec,
                      int64_t now_mono_us)
{
        bool changed;

        if (!obs->known || obs->exists != (rec != NULL))
                changed = true;
        else
                changed = rec && !election_record_same(&obs->record, rec);

        obs->known = true;
        obs->exists = rec != NULL;
        if (rec)
                obs->record = *rec;
        else
                memset(&obs->record, 0, sizeof(obs->record));
        if (changed)
                obs->changed_mono_us = now_mono_us;
        return changed;
}

const char *election_action_to_string(enum election_action a)
{
        static const char *const names[] = {
            [ELECTION_CREATE] = "create",
            [ELECTION_RENEW] = "renew",
            [ELECTION_TAKEOVER] = "takeover",
            [ELECTION_WAIT] = "wait",
        };
        return (size_t)a < ELEMENTSOF(names) ? names[a] : "unknown";
}

void election_decide(const struct election_observation *obs, const char *identity,
                     int32_t lease_duration_s, int64_t now_mono_us, int64_t now_wall_us,
                     struct election_decision *ret)
{
        const struct election_record *old = &obs->record;
        struct election_decision d = {0};

        election_record_set_holder(&d.write, identity);
        d.write.lease_duration_s = lease_duration_s;
        d.write.acquire_time_us = now_wall_us;
        d.write.renew_time_us = now_wall_us;

        if (!obs->exists) {
                d.action = ELECTION_CREATE;
                *ret = d;
                return;
        }

        strcpy(d.write.resource_version, old->resource_version);

        if (streq(old->holder, identity)) {
                d.action = ELECTION_RENEW;
                d.write.acquire_time_us = old->acquire_time_us;
                d.write.lease_transitions = old->lease_transitions;
                /* A renewal must read as a change to every observer, whatever our wall clock. */
                if (old->renew_time_us != INT64_MAX && d.write.renew_time_us <= old->renew_time_us)
                        d.write.renew_time_us = old->renew_time_us + 1;
                *ret = d;
                return;
        }

        if (old->holder[0] != '\0') {
                int64_t duration_s =
                    old->lease_duration_s > 0 ? old->lease_duration_s : lease_duration_s;
                int64_t expires = obs->changed_mono_us + duration_s * USEC_PER_SEC;
                if (now_mono_us < expires) {
                        d.action = ELECTION_WAIT;
                        d.expires_mono_us = expires;
                        d.write = (struct election_record){0};
                        *ret = d;
                        return;
                }
        }

        d.action = ELECTION_TAKEOVER;
        d.write.lease_transitions =
            old->lease_transitions < INT32_MAX ? old->lease_transitions + 1 : INT32_MAX;
        *ret = d;
}

int election_timings_validate(int32_t lease_duration_s, int64_t renew_deadline_us,
                              int64_t retry_period_us)
{
        if (lease_duration_s <= 0 || renew_deadline_us <= 0 || retry_period_us <= 0)
                return -EINVAL;
        if (lease_duration_s > 24 * 3600 || renew_deadline_us > INT64_MAX / 4 ||
            retry_period_us > INT64_MAX / 4)
                return -EINVAL;
        if (!((int64_t)lease_duration_s * USEC_PER_SEC > renew_deadline_us))
                return -EINVAL;
        if (!((double)renew_deadline_us > ELECTION_JITTER_FACTOR * (double)retry_period_us))
                return -EINVAL;
        return 0;
}

static uint64_t splitmix64(uint64_t *state)
{
        uint64_t z = (*state += UINT64_C(0x9E3779B97F4A7C15));
        z = (z ^ (z >> 30)) * UINT64_C(0xBF58476D1CE4E5B9);
        z = (z ^ (z >> 27)) * UINT64_C(0x94D049BB133111EB);
        return z ^ (z >> 31);
}

uint64_t election_seed_new(void)
{
        static atomic_uint_fast64_t counter;
        uint64_t random_part = 0, mix;
        struct timespec ts;

        /* Non-blocking: early in boot the pool may not be ready; the mix below still differs. */
        if (getrandom(&random_part, sizeof(random_part), GRND_NONBLOCK) != sizeof(random_part))
                random_part = 0;
        clock_gettime(CLOCK_REALTIME, &ts);
        mix = random_part ^ ((uint64_t)getpid() << 32) ^ (uint64_t)ts.tv_nsec ^
              ((uint64_t)ts.tv_sec << 20) ^ (uint64_t)clock_mono_us();
        mix ^= (atomic_fetch_add(&counter, 1) + 1) * UINT64_C(0xD1B54A32D192ED03);
        return splitmix64(&mix);
}

void election_jitter_init(struct election_jitter *j, uint64_t seed)
{
        j->state = seed;
}

int64_t election_jitter_next(struct election_jitter *j, int64_t period_us)
{
        if (period_us <= 0)
                return period_us;
        /* 53 random bits make a uniform double in [0, 1). */
        double u = (double)(splitmix64(&j->state) >> 11) / (double)(UINT64_C(1) << 53);
        double extra = u * ELECTION_JITTER_FACTOR * (double)period_us;
        if (extra >= (double)(INT64_MAX - period_us))
                return INT64_MAX;
        return period_us + (int64_t)extra;
}

int election_identity_new(const char *pod_name, char **ret)
{
        if (strempty(pod_name) || strlen(pod_name) > 253)
                return -EINVAL;
        uint64_t suffix = election_seed_new();
        char *s;
        if (asprintf(&s, "%s_%016llx", pod_name, (unsigned long long)suffix) < 0)
                return -ENOMEM;
        *ret = s;
        return 0;
}
