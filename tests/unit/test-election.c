/* SPDX-License-Identifier: Apache-2.0 */
/*
 * The pure part of the election: every branch of the acquire-or-renew decision (table-driven),
 * change detection, the timing rule, jitter, seeds and identities.
 */
#include <errno.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "core/clock.h"
#include "core/macro.h"
#include "election/election.h"

#define ME    "pod-0_00000000000000aa"
#define OTHER "pod-1_00000000000000bb"
#define S     USEC_PER_SEC

static struct election_record rec(const char *holder, int32_t dur, int64_t acquire, int64_t renew,
                                  int32_t transitions, const char *rv)
{
        struct election_record r;
        memset(&r, 0, sizeof(r));
        election_record_set_holder(&r, holder);
        r.lease_duration_s = dur;
        r.acquire_time_us = acquire;
        r.renew_time_us = renew;
        r.lease_transitions = transitions;
        assert_int_equal(election_record_set_resource_version(&r, rv), 0);
        return r;
}

struct decide_case {
        const char *name;
        bool exists;
        struct election_record observed;
        int64_t changed_mono; /* when this replica saw it change */
        int64_t now_mono;
        int64_t now_wall;
        /* expected */
        enum election_action action;
        const char *holder;
        int32_t duration;
        int64_t acquire;
        int64_t renew;
        int32_t transitions;
        const char *rv;
        int64_t expires;
};

#define WALL INT64_C(1800000000000000) /* 2027-01-15, µs */

static void test_decide_table(void **state)
{
        const struct decide_case cases[] = {
            {
                .name = "no Lease: create, 0 transitions, both times now",
                .exists = false,
                .now_mono = 100 * S,
                .now_wall = WALL,
                .action = ELECTION_CREATE,
                .holder = ME,
                .duration = 15,
                .acquire = WALL,
                .renew = WALL,
                .transitions = 0,
                .rv = "",
            },
            {
                .name = "ours: renew keeps acquireTime and transitions",
                .exists = true,
                .observed = rec(ME, 15, WALL - 60 * S, WALL - 2 * S, 7, "41"),
                .changed_mono = 98 * S,
                .now_mono = 100 * S,
                .now_wall = WALL,
                .action = ELECTION_RENEW,
                .holder = ME,
                .duration = 15,
                .acquire = WALL - 60 * S,
                .renew = WALL,
                .transitions = 7,
                .rv = "41",
            },
            {
                .name = "ours long after expiry: still a renewal (no one took it)",
                .exists = true,
                .observed = rec(ME, 15, WALL - 600 * S, WALL - 500 * S, 3, "9"),
                .changed_mono = 1 * S,
                .now_mono = 1000 * S,
                .now_wall = WALL,
                .action = ELECTION_RENEW,
                .holder = ME,
                .duration = 15,
                .acquire = WALL - 600 * S,
                .renew = WALL,
                .transitions = 3,
                .rv = "9",
            },
            {
                .name = "ours, wall clock stepped back: renewTime still moves forward",
                .exists = true,
                .observed = rec(ME, 15, WALL, WALL + 5 * S, 1, "12"),
                .changed_mono = 99 * S,
                .now_mono = 100 * S,
                .now_wall = WALL,
                .action = ELECTION_RENEW,
                .holder = ME,
                .duration = 15,
                .acquire = WALL,
                .renew = WALL + 5 * S + 1,
                .transitions = 1,
                .rv = "12",
            },
            {
                .name = "released (holder \"\"): free at once, transitions + 1",
                .exists = true,
                .observed = rec("", 1, WALL, WALL, 4, "77"),
                .changed_mono = 100 * S,
                .now_mono = 100 * S,
                .now_wall = WALL,
                .action = ELECTION_TAKEOVER,
                .holder = ME,
                .duration = 15,
                .acquire = WALL,
                .renew = WALL,
                .transitions = 5,
                .rv = "77",
            },
            {
                .name = "held by another, not expired: wait until changed + its duration",
                .exists = true,
                .observed = rec(OTHER, 15, WALL - 30 * S, WALL - 1 * S, 2, "50"),
                .changed_mono = 90 * S,
                .now_mono = 100 * S,
                .now_wall = WALL,
                .action = ELECTION_WAIT,
                .expires = 105 * S,
            },
            {
                .name = "held by another, one µs before expiry: wait",
                .exists = true,
                .observed = rec(OTHER, 15, WALL, WALL, 2, "50"),
                .changed_mono = 90 * S,
                .now_mono = 105 * S - 1,
                .now_wall = WALL,
                .action = ELECTION_WAIT,
                .expires = 105 * S,
            },
            {
                .name = "held by another, exactly at expiry: take over",
                .exists = true,
                .observed = rec(OTHER, 15, WALL - 100 * S, WALL - 20 * S, 2, "50"),
                .changed_mono = 90 * S,
                .now_mono = 105 * S,
                .now_wall = WALL,
                .action = ELECTION_TAKEOVER,
                .holder = ME,
                .duration = 15,
                .acquire = WALL,
                .renew = WALL,
                .transitions = 3,
                .rv = "50",
            },
            {
                .name = "the holder's own duration counts, not ours (30 s > 15 s)",
                .exists = true,
                .observed = rec(OTHER, 30, WALL, WALL, 0, "5"),
                .changed_mono = 80 * S,
                .now_mono = 100 * S,
                .now_wall = WALL,
                .action = ELECTION_WAIT,
                .expires = 110 * S,
            },
            {
                .name = "a released record's 1 s duration lets a holder-less lease go",
                .exists = true,
                .observed = rec(OTHER, 1, WALL, WALL, 0, "5"),
                .changed_mono = 98 * S,
                .now_mono = 100 * S,
                .now_wall = WALL,
                .action = ELECTION_TAKEOVER,
                .holder = ME,
                .duration = 15,
                .acquire = WALL,
                .renew = WALL,
                .transitions = 1,
                .rv = "5",
            },
            {
                .name = "held without a duration: counted with ours, not as expired",
                .exists = true,
                .observed = rec(OTHER, 0, WALL, WALL, 0, "5"),
                .changed_mono = 95 * S,
                .now_mono = 100 * S,
                .now_wall = WALL,
                .action = ELECTION_WAIT,
                .expires = 110 * S,
            },
            {
                .name = "clock skew: renewTime far in the future does not hold it",
                .exists = true,
                .observed = rec(OTHER, 15, WALL + 3600 * S, WALL + 3600 * S, 2, "8"),
                .changed_mono = 10 * S,
                .now_mono = 100 * S,
                .now_wall = WALL,
                .action = ELECTION_TAKEOVER,
                .holder = ME,
                .duration = 15,
                .acquire = WALL,
                .renew = WALL,
                .transitions = 3,
                .rv = "8",
            },
            {
                .name = "clock skew: renewTime an hour old does not free it",
                .exists = true,
                .observed = rec(OTHER, 15, WALL - 3600 * S, WALL - 3600 * S, 2, "8"),
                .changed_mono = 99 * S,
                .now_mono = 100 * S,
                .now_wall = WALL,
                .action = ELECTION_WAIT,
                .expires = 114 * S,
            },
            {
                .name = "previous process of our pod (other suffix) is another holder",
                .exists = true,
                .observed = rec("pod-0_00000000000000ff", 15, WALL, WALL, 6, "3"),
                .changed_mono = 100 * S,
                .now_mono = 101 * S,
                .now_wall = WALL,
                .action = ELECTION_WAIT,
                .expires = 115 * S,
            },
            {
                .name = "transitions saturate",
                .exists = true,
                .observed = rec("", 1, WALL, WALL, INT32_MAX, "3"),
                .changed_mono = 100 * S,
                .now_mono = 101 * S,
                .now_wall = WALL,
                .action = ELECTION_TAKEOVER,
                .holder = ME,
                .duration = 15,
                .acquire = WALL,
                .renew = WALL,
                .transitions = INT32_MAX,
                .rv = "3",
            },
        };

        for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
                const struct decide_case *c = &cases[i];
                struct election_observation obs = {0};
                struct election_decision d;

                obs.known = true;
                obs.exists = c->exists;
                obs.record = c->observed;
                obs.changed_mono_us = c->changed_mono;
                election_decide(&obs, ME, 15, c->now_mono, c->now_wall, &d);

                print_message("case: %s\n", c->name);
                assert_int_equal(d.action, c->action);
                if (c->action == ELECTION_WAIT) {
                        assert_int_equal(d.expires_mono_us, c->expires);
                        continue;
                }
                assert_string_equal(d.write.holder, c->holder);
                assert_int_equal(d.write.lease_duration_s, c->duration);
                assert_int_equal(d.write.acquire_time_us, c->acquire);
                assert_int_equal(d.write.renew_time_us, c->renew);
                assert_int_equal(d.write.lease_transitions, c->transitions);
                assert_string_equal(d.write.resource_version, c->rv);
        }
}

static void test_observe(void **state)
{
        struct election_observation obs = {0};
        struct election_record a = rec(OTHER, 15, WALL, WALL, 1, "10");

        /* The first answer is a change: a fresh replica waits a whole lease. */
        assert_true(election_observe(&obs, &a, 5 * S));
        assert_true(obs.known && obs.exists);
        assert_int_equal(obs.changed_mono_us, 5 * S);

        /* Same spec, new resourceVersion (someone annotated the Lease): not a change. */
        struct election_record b = a;
        assert_int_equal(election_record_set_resource_version(&b, "11"), 0);
        assert_false(election_observe(&obs, &b, 6 * S));
        assert_int_equal(obs.changed_mono_us, 5 * S);
        assert_string_equal(obs.record.resource_version, "11");

        /* A renewal is. */
        struct election_record c = b;
        c.renew_time_us += 2 * S;
        assert_true(election_observe(&obs, &c, 7 * S));
        assert_int_equal(obs.changed_mono_us, 7 * S);

        /* Each spec field counts. */
        struct election_record d = c;
        d.lease_transitions++;
        assert_true(election_observe(&obs, &d, 8 * S));
        d.lease_duration_s = 1;
        assert_true(election_observe(&obs, &d, 9 * S));
        d.acquire_time_us++;
        assert_true(election_observe(&obs, &d, 10 * S));
        election_record_set_holder(&d, "");
        assert_true(election_observe(&obs, &d, 11 * S));
        assert_int_equal(obs.changed_mono_us, 11 * S);

        /* Deleted, then still missing. */
        assert_true(election_observe(&obs, NULL, 12 * S));
        assert_false(obs.exists);
        assert_string_equal(obs.record.resource_version, "");
        assert_false(election_observe(&obs, NULL, 13 * S));
        assert_int_equal(obs.changed_mono_us, 12 * S);

        /* A missing Lease as first answer is a change too. */
        struct election_observation fresh = {0};
        assert_true(election_observe(&fresh, NULL, 1 * S));
        assert_true(fresh.known);
        assert_false(fresh.exists);
}

/* Observation and decision together: expiry counts from the last change seen, never earlier. */
static void test_expiry_from_last_observed_change(void **state)
{
        struct election_observation obs = {0};
        struct election_decision d;
        struct election_record r = rec(OTHER, 10, WALL, WALL, 0, "1");

        election_observe(&obs, &r, 0);
        for (int64_t t = 1; t <= 30; t++) {
                /* The holder renews every 3 s; we poll every second. */
                if (t % 3 == 0) {
                        r.renew_time_us += 3 * S;
                        snprintf(r.resource_version, sizeof(r.resource_version), "%d", (int)t);
                }
                election_observe(&obs, &r, t * S);
                election_decide(&obs, ME, 15, t * S, WALL, &d);
                assert_int_equal(d.action, ELECTION_WAIT);
        }
        /* The holder stops renewing at t = 30: free at 40, not before. */
        election_observe(&obs, &r, 39 * S);
        election_decide(&obs, ME, 15, 39 * S, WALL, &d);
        assert_int_equal(d.action, ELECTION_WAIT);
        assert_int_equal(d.expires_mono_us, 40 * S);
        election_decide(&obs, ME, 15, 40 * S, WALL, &d);
        assert_int_equal(d.action, ELECTION_TAKEOVER);
        assert_int_equal(d.write.lease_transitions, 1);
}

static void test_timings(void **state)
{
        assert_int_equal(election_timings_validate(15, 10 * S, 2 * S), 0);
        assert_int_equal(election_timings_validate(1, 700 * USEC_PER_MSEC, 200 * USEC_PER_MSEC), 0);
        /* lease must exceed the renew deadline */
        assert_int_equal(election_timings_validate(10, 10 * S, 2 * S), -EINVAL);
        assert_int_equal(election_timings_validate(9, 10 * S, 2 * S), -EINVAL);
        /* renew deadline must exceed 1.2 × retry */
        assert_int_equal(election_timings_validate(15, 12 * S, 10 * S), -EINVAL);
        assert_int_equal(election_timings_validate(15, 12 * S + 1, 10 * S), 0);
        /* everything positive */
        assert_int_equal(election_timings_validate(0, 0, 0), -EINVAL);
        assert_int_equal(election_timings_validate(15, 10 * S, 0), -EINVAL);
        assert_int_equal(election_timings_validate(15, -1, 2 * S), -EINVAL);
        assert_int_equal(election_timings_validate(-15, 10 * S, 2 * S), -EINVAL);
}

static void test_jitter(void **state)
{
        struct election_jitter a, b, c;
        const int64_t p = 2 * S;
        bool differ = false;
        int64_t lo = INT64_MAX, hi = 0;

        election_jitter_init(&a, 42);
        election_jitter_init(&b, 42);
        election_jitter_init(&c, 43);
        for (int i = 0; i < 1000; i++) {
                int64_t x = election_jitter_next(&a, p);
                assert_int_equal(x, election_jitter_next(&b, p));
                if (x != election_jitter_next(&c, p))
                        differ = true;
                /* client-go's wait.Jitter(period, 1.2): [period, 2.2 × period) */
                assert_true(x >= p);
                assert_true(x < p + (int64_t)(1.2 * (double)p));
                lo = MIN(lo, x);
                hi = MAX(hi, x);
        }
        assert_true(differ);
        /* Spread over the range, not stuck at one end. */
        assert_true(lo < p + p / 5);
        assert_true(hi > p + p);
        assert_int_equal(election_jitter_next(&a, 0), 0);
}

static void test_seeds_and_identities(void **state)
{
        uint64_t s1 = election_seed_new(), s2 = election_seed_new();
        assert_true(s1 != s2);

        char *id1 = NULL, *id2 = NULL;
        assert_int_equal(election_identity_new("persistd-0", &id1), 0);
        assert_int_equal(election_identity_new("persistd-0", &id2), 0);
        assert_int_equal(strlen(id1), strlen("persistd-0_") + 16);
        assert_memory_equal(id1, "persistd-0_", strlen("persistd-0_"));
        for (const char *p = id1 + strlen("persistd-0_"); *p; p++)
                assert_non_null(strchr("0123456789abcdef", *p));
        /* A restarted process never picks the previous identity. */
        assert_string_not_equal(id1, id2);
        free(id1);
        free(id2);

        char *id = NULL;
        assert_int_equal(election_identity_new("", &id), -EINVAL);
        assert_int_equal(election_identity_new(NULL, &id), -EINVAL);
        char longname[300];
        memset(longname, 'a', sizeof(longname) - 1);
        longname[sizeof(longname) - 1] = '\0';
        assert_int_equal(election_identity_new(longname, &id), -EINVAL);
        assert_null(id);
        /* The longest pod name still leaves room, so a truncated holder never equals it. */
        longname[253] = '\0';
        assert_int_equal(election_identity_new(longname, &id), 0);
        assert_true(strlen(id) < ELECTION_HOLDER_MAX - 1);
        free(id);
}

static void test_record_setters(void **state)
{
        struct election_record r;
        char big[ELECTION_HOLDER_MAX + 50];

        memset(&r, 0, sizeof(r));
        memset(big, 'x', sizeof(big) - 1);
        big[sizeof(big) - 1] = '\0';
        election_record_set_holder(&r, big);
        assert_int_equal(strlen(r.holder), ELECTION_HOLDER_MAX - 1);
        election_record_set_holder(&r, NULL);
        assert_string_equal(r.holder, "");

        char rv[ELECTION_RV_MAX + 1];
        memset(rv, '7', sizeof(rv) - 1);
        rv[sizeof(rv) - 1] = '\0';
        assert_int_equal(election_record_set_resource_version(&r, rv), -EOVERFLOW);
        rv[ELECTION_RV_MAX - 1] = '\0';
        assert_int_equal(election_record_set_resource_version(&r, rv), 0);
        assert_int_equal(election_record_set_resource_version(&r, "123"), 0);
        assert_string_equal(r.resource_version, "123");

        assert_string_equal(election_action_to_string(ELECTION_TAKEOVER), "takeover");
}

int main(void)
{
        const struct CMUnitTest tests[] = {
            cmocka_unit_test(test_decide_table),
            cmocka_unit_test(test_observe),
            cmocka_unit_test(test_expiry_from_last_observed_change),
            cmocka_unit_test(test_timings),
            cmocka_unit_test(test_jitter),
            cmocka_unit_test(test_seeds_and_identities),
            cmocka_unit_test(test_record_setters),
        };
        return cmocka_run_group_tests(tests, NULL, NULL);
}
