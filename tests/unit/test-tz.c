/* SPDX-License-Identifier: Apache-2.0 */
/*
 * Time zones from the system's TZif files: both directions of conversion across the DST
 * transitions of Europe/Berlin and America/New_York, UTC, the footer rule far in the future,
 * name validation, corrupt files, concurrent use of several zones, and a comparison with the C
 * library over many random instants (the test alone sets TZ for that; the product never does).
 */
#include <errno.h>
#include <pthread.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include <cmocka.h>

#include "core/clock.h"
#include "core/macro.h"
#include "core/util.h"
#include "sched/tz.h"

static int64_t at(const char *rfc3339)
{
        int64_t us;
        assert_int_equal(clock_parse_rfc3339(rfc3339, false, &us), 0);
        return us / USEC_PER_SEC;
}

static struct tz_zone *load(const char *name)
{
        char err[TZ_ERROR_MAX];
        struct tz_zone *z = NULL;
        int r = tz_zone_load(name, &z, err, sizeof(err));
        if (r < 0)
                fail_msg("%s: %s", name, err);
        return z;
}

static void assert_local(const struct tz_zone *z, const char *utc, const char *want, int32_t off,
                         bool dst)
{
        struct tz_local l;
        char got[32];
        assert_int_equal(tz_to_local(z, at(utc) * USEC_PER_SEC, &l), 0);
        snprintf(got, sizeof(got), "%04d-%02d-%02d %02d:%02d:%02d", l.year, l.month, l.day, l.hour,
                 l.minute, l.second);
        if (!streq(got, want) || l.utc_offset_s != off || l.is_dst != dst)
                fail_msg("%s at %s: got %s %+d dst=%d, want %s %+d dst=%d", tz_zone_name(z), utc,
                         got, l.utc_offset_s, l.is_dst, want, off, dst);
}

static void test_berlin_spring_forward(void **state)
{
        struct tz_zone *z = load("Europe/Berlin");
        struct tz_resolved r;
        assert_local(z, "2026-03-29T00:59:59Z", "2026-03-29 01:59:59", 3600, false);
        assert_local(z, "2026-03-29T01:00:00Z", "2026-03-29 03:00:00", 7200, true);
        /* 02:30 does not exist: the gap ends at 01:00Z. */
        assert_int_equal(tz_from_local(z, 2026, 3, 29, 2, 30, 0, &r), 0);
        assert_int_equal(r.kind, TZ_LOCAL_SKIPPED);
        assert_int_equal(r.earlier, at("2026-03-29T01:00:00Z"));
        assert_int_equal(tz_from_local(z, 2026, 3, 29, 1, 59, 59, &r), 0);
        assert_int_equal(r.kind, TZ_LOCAL_UNIQUE);
        assert_int_equal(r.earlier, at("2026-03-29T00:59:59Z"));
        assert_int_equal(tz_from_local(z, 2026, 3, 29, 3, 0, 0, &r), 0);
        assert_int_equal(r.kind, TZ_LOCAL_UNIQUE);
        assert_int_equal(r.earlier, at("2026-03-29T01:00:00Z"));
        assert_int_equal(r.offset_earlier, 7200);
        tz_zone_free(z);
}

static void test_berlin_fall_back(void **state)
{
        struct tz_zone *z = load("Europe/Berlin");
        struct tz_resolved r;
        assert_local(z, "2026-10-25T00:30:00Z", "2026-10-25 02:30:00", 7200, true);
        assert_local(z, "2026-10-25T01:30:00Z", "2026-10-25 02:30:00", 3600, false);
        assert_int_equal(tz_from_local(z, 2026, 10, 25, 2, 30, 0, &r), 0);
        assert_int_equal(r.kind, TZ_LOCAL_AMBIGUOUS);
        assert_int_equal(r.earlier, at("2026-10-25T00:30:00Z"));
        assert_int_equal(r.later, at("2026-10-25T01:30:00Z"));
        assert_int_equal(r.offset_earlier, 7200);
        assert_int_equal(r.offset_later, 3600);
        tz_zone_free(z);
}

static void test_new_york_transitions(void **state)
{
        struct tz_zone *z = load("America/New_York");
        struct tz_resolved r;
        struct tz_transition tr;
        assert_local(z, "2026-03-08T06:59:59Z", "2026-03-08 01:59:59", -5 * 3600, false);
        assert_local(z, "2026-03-08T07:00:00Z", "2026-03-08 03:00:00", -4 * 3600, true);
        assert_int_equal(tz_from_local(z, 2026, 3, 8, 2, 15, 0, &r), 0);
        assert_int_equal(r.kind, TZ_LOCAL_SKIPPED);
        assert_int_equal(r.earlier, at("2026-03-08T07:00:00Z"));
        assert_int_equal(tz_from_local(z, 2026, 11, 1, 1, 30, 0, &r), 0);
        assert_int_equal(r.kind, TZ_LOCAL_AMBIGUOUS);
        assert_int_equal(r.earlier, at("2026-11-01T05:30:00Z"));
        assert_int_equal(r.later, at("2026-11-01T06:30:00Z"));

        assert_true(tz_next_transition(z, at("2026-01-01T00:00:00Z"), &tr));
        assert_int_equal(tr.at, at("2026-03-08T07:00:00Z"));
        assert_int_equal(tr.offset_before, -5 * 3600);
        assert_int_equal(tr.offset_after, -4 * 3600);
        assert_true(tz_next_transition(z, tr.at, &tr));
        assert_int_equal(tr.at, at("2026-11-01T06:00:00Z"));
        assert_true(tz_prev_transition(z, at("2026-11-01T06:00:00Z"), &tr));
        assert_int_equal(tr.at, at("2026-11-01T06:00:00Z"));
        assert_true(tz_prev_transition(z, at("2026-11-01T05:59:59Z"), &tr));
        assert_int_equal(tr.at, at("2026-03-08T07:00:00Z"));
        tz_zone_free(z);
}

static void test_utc(void **state)
{
        struct tz_zone *z = load("UTC");
        struct tz_transition tr;
        struct tz_resolved r;
        assert_string_equal(tz_zone_name(z), "UTC");
        assert_local(z, "2026-06-30T23:59:59Z", "2026-06-30 23:59:59", 0, false);
        assert_false(tz_next_transition(z, 0, &tr));
        assert_false(tz_prev_transition(z, at("2026-06-30T23:59:59Z"), &tr));
        assert_int_equal(tz_from_local(z, 2024, 2, 29, 12, 0, 0, &r), 0);
        assert_int_equal(r.kind, TZ_LOCAL_UNIQUE);
        assert_int_equal(r.earlier, at("2024-02-29T12:00:00Z"));
        assert_int_equal(tz_from_local(z, 2023, 2, 29, 12, 0, 0, &r), -EINVAL);
        /* NULL is UTC too. */
        assert_int_equal(tz_offset_at(NULL, 12345), 0);
        tz_zone_free(z);
}

static void test_footer_rule_far_future(void **state)
{
        struct tz_zone *berlin = load("Europe/Berlin"), *ny = load("America/New_York");
        struct tz_transition tr;
        assert_local(berlin, "2150-07-01T12:00:00Z", "2150-07-01 14:00:00", 7200, true);
        assert_local(berlin, "2150-01-01T12:00:00Z", "2150-01-01 13:00:00", 3600, false);
        assert_local(ny, "2150-01-01T12:00:00Z", "2150-01-01 07:00:00", -5 * 3600, false);
        assert_local(ny, "2150-07-01T12:00:00Z", "2150-07-01 08:00:00", -4 * 3600, true);
        /* Last Sunday of March 2200 is the 30th: 01:00 UTC. */
        assert_true(tz_next_transition(berlin, at("2200-01-01T00:00:00Z"), &tr));
        assert_int_equal(tr.at, at("2200-03-30T01:00:00Z"));
        assert_int_equal(tr.offset_after, 7200);
        assert_true(tz_prev_transition(berlin, at("2200-03-30T00:59:59Z"), &tr));
        assert_int_equal(tr.at, at("2199-10-27T01:00:00Z"));
        tz_zone_free(berlin);
        tz_zone_free(ny);
}

static void test_names_validated(void **state)
{
        static const char *const bad[] = {
            "",
            "/etc/passwd",
            "../etc/passwd",
            "Europe/../../etc/passwd",
            "Europe//Berlin",
            "Europe/",
            ".hidden",
            "Europe/Berlin\n",
            "Europe/Ber lin",
            "Europe/./Berlin",
            "AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA",
        };
        char err[TZ_ERROR_MAX];
        struct tz_zone *z = NULL;
        for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
                if (tz_zone_load(bad[i], &z, err, sizeof(err)) != -EINVAL)
                        fail_msg("\"%s\" accepted", bad[i]);
                assert_non_null(strstr(err, "is not an IANA time zone name"));
        }
        assert_int_equal(tz_zone_load("Mars/Olympus_Mons", &z, err, sizeof(err)), -ENOENT);
        assert_string_equal(err, "unknown time zone \"Mars/Olympus_Mons\" (no "
                                 "/usr/share/zoneinfo/Mars/Olympus_Mons)");
        assert_int_equal(tz_zone_load("Europe", &z, err, sizeof(err)), -ENOENT);
        assert_null(z);
}

static void test_corrupt_files_refused(void **state)
{
        char *data, err[TZ_ERROR_MAX];
        size_t size;
        struct tz_zone *z = NULL;
        assert_int_equal(read_full_file("/usr/share/zoneinfo/Europe/Berlin", 1 << 20, &data, &size),
                         0);
        assert_int_equal(tz_zone_parse("x", "hello", 5, &z, err, sizeof(err)), -EINVAL);
        assert_string_equal(err, "time zone \"x\": not a TZif file");
        for (size_t cut = 0; cut < size - 40; cut += 97)
                if (tz_zone_parse("x", data, cut, &z, err, sizeof(err)) != -EINVAL)
                        fail_msg("truncated at %zu accepted", cut);
        /* A broken footer. */
        char *bad = malloc(size);
        memcpy(bad, data, size);
        memcpy(bad + size - 27, "CET-1CEST,M3.5.9,M10.5.0/3", 26);
        assert_int_equal(tz_zone_parse("x", bad, size, &z, err, sizeof(err)), -EINVAL);
        assert_string_equal(err, "time zone \"x\": invalid TZ rule footer");
        /* Version 1. */
        memcpy(bad, data, size);
        bad[4] = 0;
        assert_int_equal(tz_zone_parse("x", bad, size, &z, err, sizeof(err)), -EINVAL);
        assert_non_null(strstr(err, "version 1"));
        assert_int_equal(tz_zone_parse("x", data, size, &z, err, sizeof(err)), 0);
        tz_zone_free(z);
        free(bad);
        free(data);
}

/* Random damage to a real file: refused or accepted, never a crash or a wrong read. */
static void test_damaged_files_never_crash(void **state)
{
        char *data, err[TZ_ERROR_MAX];
        size_t size;
        uint64_t seed = 7;
        assert_int_equal(
            read_full_file("/usr/share/zoneinfo/America/New_York", 1 << 20, &data, &size), 0);
        char *copy = malloc(size);
        for (int k = 0; k < 3000; k++) {
                memcpy(copy, data, size);
                for (int d = 0; d < 1 + k % 4; d++) {
                        seed = seed * 6364136223846793005ULL + 1442695040888963407ULL;
                        copy[(seed >> 33) % size] = (char)(seed >> 20);
                }
                struct tz_zone *z = NULL;
                if (tz_zone_parse("x", copy, size, &z, err, sizeof(err)) == 0) {
                        struct tz_local l;
                        struct tz_transition tr;
                        struct tz_resolved r;
                        tz_to_local(z, INT64_C(1700000000) * USEC_PER_SEC, &l);
                        tz_next_transition(z, 1700000000, &tr);
                        tz_prev_transition(z, 1700000000, &tr);
                        tz_from_local(z, 2026, 3, 8, 2, 30, 0, &r);
                        tz_zone_free(z);
                } else {
                        assert_true(err[0] != '\0');
                }
        }
        free(copy);
        free(data);
}

/* Several zones converting at once on several threads (for ThreadSanitizer). */
struct thread_arg {
        const struct tz_zone *zone;
        int64_t sum;
};

static void *convert_many(void *p)
{
        struct thread_arg *a = p;
        for (int64_t t = 1700000000; t < 1700000000 + 400LL * 86400; t += 3607) {
                struct tz_local l;
                tz_to_local(a->zone, t * USEC_PER_SEC, &l);
                a->sum += l.hour;
        }
        return NULL;
}

static void test_threads(void **state)
{
        const char *names[] = {"Europe/Berlin", "America/New_York", "Australia/Sydney", "UTC"};
        struct tz_zone *zones[4];
        pthread_t th[4];
        struct thread_arg args[4];
        for (int i = 0; i < 4; i++) {
                zones[i] = load(names[i]);
                args[i] = (struct thread_arg){zones[i], 0};
                assert_int_equal(pthread_create(&th[i], NULL, convert_many, &args[i]), 0);
        }
        for (int i = 0; i < 4; i++) {
                pthread_join(th[i], NULL);
                assert_true(args[i].sum > 0);
                tz_zone_free(zones[i]);
        }
}

/* Cross-check with the C library: random instants from 1900 to 2400, many kinds of zone. */
static void test_agrees_with_libc(void **state)
{
        static const char *const names[] = {
            "Europe/Berlin", "America/New_York",  "Australia/Sydney",  "Australia/Lord_Howe",
            "Asia/Kolkata",  "Asia/Tehran",       "America/Sao_Paulo", "Pacific/Apia",
            "Europe/Dublin", "Africa/Casablanca", "America/Santiago",  "UTC",
        };
        uint64_t seed = 42;
        for (size_t i = 0; i < sizeof(names) / sizeof(names[0]); i++) {
                struct tz_zone *z = load(names[i]);
                setenv("TZ", names[i], 1);
                tzset();
                for (int k = 0; k < 4000; k++) {
                        seed = seed * 6364136223846793005ULL + 1442695040888963407ULL;
                        int64_t t =
                            -2208988800LL + (int64_t)((seed >> 11) % (500ULL * 365 * 86400));
                        time_t tt = (time_t)t;
                        struct tm tm;
                        struct tz_local l;
                        localtime_r(&tt, &tm);
                        tz_to_local(z, t * USEC_PER_SEC, &l);
                        if (l.year != tm.tm_year + 1900 || l.month != tm.tm_mon + 1 ||
                            l.day != tm.tm_mday || l.hour != tm.tm_hour || l.minute != tm.tm_min ||
                            l.second != tm.tm_sec || l.wday != tm.tm_wday ||
                            l.utc_offset_s != tm.tm_gmtoff)
                                fail_msg("%s at %lld: %04d-%02d-%02d %02d:%02d:%02d %+d, libc "
                                         "%04d-%02d-%02d %02d:%02d:%02d %+ld",
                                         names[i], (long long)t, l.year, l.month, l.day, l.hour,
                                         l.minute, l.second, l.utc_offset_s, tm.tm_year + 1900,
                                         tm.tm_mon + 1, tm.tm_mday, tm.tm_hour, tm.tm_min,
                                         tm.tm_sec, tm.tm_gmtoff);
                        /* And back: the local time resolves to this instant. */
                        struct tz_resolved r;
                        assert_int_equal(tz_from_local(z, l.year, l.month, l.day, l.hour, l.minute,
                                                       l.second, &r),
                                         0);
                        if (r.earlier != t && r.later != t)
                                fail_msg("%s: local time of %lld resolves to %lld/%lld", names[i],
                                         (long long)t, (long long)r.earlier, (long long)r.later);
                }
                tz_zone_free(z);
        }
        unsetenv("TZ");
        tzset();
}

int main(void)
{
        const struct CMUnitTest tests[] = {
            cmocka_unit_test(test_berlin_spring_forward),
            cmocka_unit_test(test_berlin_fall_back),
            cmocka_unit_test(test_new_york_transitions),
            cmocka_unit_test(test_utc),
            cmocka_unit_test(test_footer_rule_far_future),
            cmocka_unit_test(test_names_validated),
            cmocka_unit_test(test_corrupt_files_refused),
            cmocka_unit_test(test_damaged_files_never_crash),
            cmocka_unit_test(test_threads),
            cmocka_unit_test(test_agrees_with_libc),
        };
        return cmocka_run_group_tests(tests, NULL, NULL);
}
