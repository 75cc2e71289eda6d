/* SPDX-License-Identifier: Apache-2.0 */
/*
 * Cron: every syntax and every error message; the day-of-month/day-of-week rule; the DST rules
 * on Europe/Berlin and America/New_York; and the slots of many random expressions over many
 * spans (DST days included) against a brute-force reference that tests every second or minute,
 * written here independently of the product's bit walking.
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
#include "sched/cron.h"

#define MAX_SLOTS 8192

static int64_t at(const char *rfc3339)
{
        int64_t us;
        assert_int_equal(clock_parse_rfc3339(rfc3339, false, &us), 0);
        return us;
}

static struct cron_expr parse(const char *text)
{
        struct cron_expr e;
        struct cron_error err;
        if (cron_parse(text, &e, &err) < 0)
                fail_msg("\"%s\": %s", text, err.message);
        return e;
}

static uint64_t bits(const int *v, size_t n)
{
        uint64_t b = 0;
        for (size_t i = 0; i < n; i++)
                b |= UINT64_C(1) << v[i];
        return b;
}
#define BITS(...) bits((const int[]){__VA_ARGS__}, sizeof((const int[]){__VA_ARGS__}) / sizeof(int))

static uint64_t range_bits(int lo, int hi, int step)
{
        uint64_t b = 0;
        for (int v = lo; v <= hi; v += step)
                b |= UINT64_C(1) << v;
        return b;
}

/* ---- syntax ----------------------------------------------------------------------------- */

static void test_every_syntax(void **state)
{
        struct cron_expr e = parse("* * * * *");
        assert_true(e.seconds == 1);
        assert_true(e.minutes == range_bits(0, 59, 1));
        assert_true(e.hours == range_bits(0, 23, 1));
        assert_true(e.days == range_bits(1, 31, 1));
        assert_true(e.months == range_bits(1, 12, 1));
        assert_true(e.weekdays == range_bits(0, 6, 1));
        assert_int_equal(e.flags, CRON_DOM_STAR | CRON_DOW_STAR | CRON_HOUR_STAR);

        e = parse("0,15,30,45 9-17 * * mon-fri");
        assert_true(e.minutes == BITS(0, 15, 30, 45));
        assert_true(e.hours == range_bits(9, 17, 1));
        assert_true(e.weekdays == range_bits(1, 5, 1));
        assert_int_equal(e.flags, CRON_DOM_STAR);

        e = parse("*/15 */6 1-10/3 jan,JUL,Dec *");
        assert_true(e.minutes == BITS(0, 15, 30, 45));
        assert_true(e.hours == BITS(0, 6, 12, 18));
        assert_true(e.days == BITS(1, 4, 7, 10));
        assert_true(e.months == BITS(1, 7, 12));
        assert_int_equal(e.flags, CRON_HOUR_STAR | CRON_DOW_STAR);

        e = parse("5/20 1,2-4,20-23/2 * feb-apr/2 *"); /* "a/n": from a to the end */
        assert_true(e.minutes == BITS(5, 25, 45));
        assert_true(e.hours == BITS(1, 2, 3, 4, 20, 22));
        assert_true(e.months == BITS(2, 4));

        assert_true(parse("30 2 * * 7").weekdays == BITS(0)); /* 7 is Sunday */
        assert_true(parse("0 0 * * 0,7").weekdays == BITS(0));
        assert_true(parse("0 0 * * fri-sun").weekdays == BITS(0, 5, 6));
        assert_true(parse("0 0 * * 5-7").weekdays == BITS(0, 5, 6));
        assert_true(parse("0 0 * * SUN-sat").weekdays == range_bits(0, 6, 1));
        assert_true(parse("0 0 * * */2").weekdays == BITS(0, 2, 4, 6));

        assert_true(parse("0 0 * * wed").weekdays == BITS(3));
        assert_true(parse("0 0 * jul,JUL *").months == BITS(7));
        assert_true(parse("0 0 * * sat,SUN").weekdays == BITS(0, 6));
        e = parse("*/10 0 * * * *");
        assert_int_equal(e.flags & CRON_HAS_SECONDS, CRON_HAS_SECONDS);
        assert_true(e.seconds == BITS(0, 10, 20, 30, 40, 50));
        assert_true(e.minutes == BITS(0));
        e = parse("  \t59\t59 23 31 12 *  ");
        assert_true(e.seconds == BITS(59) && e.minutes == BITS(59) && e.hours == BITS(23));

        static const struct {
                const char *alias, *same;
        } aliases[] = {
            {"@yearly", "0 0 1 1 *"}, {"@annually", "0 0 1 1 *"}, {"@monthly", "0 0 1 * *"},
            {"@weekly", "0 0 * * 0"}, {"@daily", "0 0 * * *"},    {"@midnight", "0 0 * * *"},
            {"@hourly", "0 * * * *"}, {" @Daily ", "0 0 * * *"},
        };
        for (size_t i = 0; i < sizeof(aliases) / sizeof(aliases[0]); i++) {
                struct cron_expr a = parse(aliases[i].alias), b = parse(aliases[i].same);
                if (!cron_expr_equal(&a, &b))
                        fail_msg("%s differs from %s", aliases[i].alias, aliases[i].same);
        }
        struct cron_expr x = parse("0 0 * * 1"), y = parse("0 0 * * mon");
        assert_true(cron_expr_equal(&x, &y));
        y = parse("0 0 * * 2");
        assert_false(cron_expr_equal(&x, &y));
}

static void test_every_error(void **state)
{
        static const struct {
                const char *text;
                int field;
                size_t position;
                const char *message;
        } cases[] = {
            {"", 0, 0, "the schedule is empty"},
            {"   ", 0, 0, "the schedule is empty"},
            {"* * * *", 0, 0,
             "expected 5 fields (minute hour day-of-month month day-of-week) or 6 (with "
             "seconds first), found 4"},
            {"* * * * * * *", 0, 0,
             "expected 5 fields (minute hour day-of-month month day-of-week) or 6 (with "
             "seconds first), found 7"},
            {"0 25 * * *", 2, 3, "field 2 (hour): \"25\" is out of range 0-23 (column 3)"},
            {"60 * * * *", 1, 1, "field 1 (minute): \"60\" is out of range 0-59 (column 1)"},
            {"0 0 0 * *", 3, 5, "field 3 (day-of-month): \"0\" is out of range 1-31 (column 5)"},
            {"0 0 1 13 *", 4, 7, "field 4 (month): \"13\" is out of range 1-12 (column 7)"},
            {"0 0 * * 8", 5, 9, "field 5 (day-of-week): \"8\" is out of range 0-7 (column 9)"},
            {"61 * * * * *", 1, 1, "field 1 (second): \"61\" is out of range 0-59 (column 1)"},
            {"0 0 * * * 9", 6, 11, "field 6 (day-of-week): \"9\" is out of range 0-7 (column 11)"},
            {"1,2,99 * * * *", 1, 5, "field 1 (minute): \"99\" is out of range 0-59 (column 5)"},
            {"x * * * *", 1, 1, "field 1 (minute): \"x\" is not a number (column 1)"},
            {"1x * * * *", 1, 1, "field 1 (minute): \"1x\" is not a number (column 1)"},
            {"0 0 * foo *", 4, 7,
             "field 4 (month): \"foo\" is not a number or a month name (jan-dec) (column 7)"},
            {"0 0 * * funday", 5, 9,
             "field 5 (day-of-week): \"funday\" is not a number or a day name (sun-sat) "
             "(column 9)"},
            {"0 0 * jan-foo *", 4, 11,
             "field 4 (month): \"foo\" is not a number or a month name (jan-dec) (column 11)"},
            {"30-10 * * * *", 1, 1,
             "field 1 (minute): \"30-10\" is a reversed range (30 > 10; ranges do not wrap "
             "around) (column 1)"},
            {"0 0 * * sat-mon", 5, 9,
             "field 5 (day-of-week): \"sat-mon\" is a reversed range (6 > 1; ranges do not "
             "wrap around) (column 9)"},
            {"5- * * * *", 1, 3, "field 1 (minute): \"\" is missing a value (column 3)"},
            {"-5 * * * *", 1, 1, "field 1 (minute): \"\" is missing a value (column 1)"},
            {"*/0 * * * *", 1, 1,
             "field 1 (minute): \"*/0\" has a step of 0 (it must be at least 1) (column 1)"},
            {"*/61 * * * *", 1, 1,
             "field 1 (minute): \"*/61\" has a step of 61, larger than the range 0-59 "
             "(column 1)"},
            {"0 */x * * *", 2, 3,
             "field 2 (hour): \"*/x\" has a step that is not a number (column 3)"},
            {"0 1-5/ * * *", 2, 3, "field 2 (hour): \"1-5/\" has no step after '/' (column 3)"},
            {"1,,2 * * * *", 1, 3,
             "field 1 (minute): \"\" is an empty element of a list (column 3)"},
            {"1,2, * * * *", 1, 4,
             "field 1 (minute): \",\" ends a list without an element (column 4)"},
            {"0 0 L * *", 3, 5,
             "field 3 (day-of-month): \"L\" uses 'L', which is not supported (L, W, # and ? "
             "are not part of Vixie cron syntax) (column 5)"},
            {"0 0 15W * *", 3, 5,
             "field 3 (day-of-month): \"15W\" uses 'W', which is not supported (L, W, # and ? "
             "are not part of Vixie cron syntax) (column 5)"},
            {"0 0 * * 5#3", 5, 9,
             "field 5 (day-of-week): \"5#3\" uses '#', which is not supported (L, W, # and ? "
             "are not part of Vixie cron syntax) (column 9)"},
            {"0 0 LW * *", 3, 5,
             "field 3 (day-of-month): \"LW\" uses 'L', which is not supported (L, W, # and ? "
             "are not part of Vixie cron syntax) (column 5)"},
            {"0 0 * * 5L", 5, 9,
             "field 5 (day-of-week): \"5L\" uses 'L', which is not supported (L, W, # and ? "
             "are not part of Vixie cron syntax) (column 9)"},
            {"0 0 ? * 1", 3, 5,
             "field 3 (day-of-month): \"?\" uses '?', which is not supported (L, W, # and ? "
             "are not part of Vixie cron syntax) (column 5)"},
            {"0 0 30 feb *", 3, 5,
             "field 3 (day-of-month): \"30\" never occurs in the selected months, so the "
             "schedule never fires (column 5)"},
            {"0 0 31 4,6,9,11 *", 3, 5,
             "field 3 (day-of-month): \"31\" never occurs in the selected months, so the "
             "schedule never fires (column 5)"},
            {"@reboot", 0, 1,
             "\"@reboot\" is not supported: schedules are times, not process events"},
            {"@every5m", 0, 1,
             "\"@every5m\" is not a known alias (@yearly, @annually, @monthly, @weekly, "
             "@daily, @midnight, @hourly)"},
            {"@daily 0", 0, 1, "\"@daily 0\" has text after the alias"},
            {"0 0 * *\n*", 0, 8, "the schedule contains a control character at column 8"},
        };
        for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
                struct cron_expr e;
                struct cron_error err;
                assert_int_equal(cron_parse(cases[i].text, &e, &err), -EINVAL);
                if (!streq(err.message, cases[i].message) || err.field != cases[i].field ||
                    err.position != cases[i].position)
                        fail_msg("\"%s\": got field %d column %zu \"%s\"\n   want field %d column "
                                 "%zu \"%s\"",
                                 cases[i].text, err.field, err.position, err.message,
                                 cases[i].field, cases[i].position, cases[i].message);
        }
        char longer[CRON_TEXT_MAX + 8];
        memset(longer, '1', sizeof(longer) - 1);
        longer[sizeof(longer) - 1] = '\0';
        struct cron_error err;
        struct cron_expr e;
        assert_int_equal(cron_parse(longer, &e, &err), -EINVAL);
        assert_string_equal(err.message, "the schedule is longer than 256 characters");
        assert_int_equal(cron_parse(NULL, &e, NULL), -EINVAL);
        /* February 29 exists (in leap years). */
        parse("0 0 29 2 *");
        /* With both day fields restricted either may match, so day 31 of February is fine. */
        parse("0 0 31 2 mon");
}

static void test_day_of_month_or_day_of_week(void **state)
{
        /* Both restricted: the 13th OR a Friday. */
        struct cron_expr e = parse("0 0 13 * fri");
        assert_true(cron_matches(&e, 2026, 1, 13, 0, 0, 0));  /* a Tuesday */
        assert_true(cron_matches(&e, 2026, 1, 16, 0, 0, 0));  /* a Friday */
        assert_false(cron_matches(&e, 2026, 1, 14, 0, 0, 0)); /* neither */
        /* A '*' in one of them (even "*" with a step): both must match. */
        e = parse("0 0 */2 * fri");
        assert_true(cron_matches(&e, 2026, 1, 9, 0, 0, 0));   /* Friday the 9th */
        assert_false(cron_matches(&e, 2026, 1, 16, 0, 0, 0)); /* Friday, even day */
        assert_false(cron_matches(&e, 2026, 1, 11, 0, 0, 0)); /* odd day, Sunday */
        e = parse("0 0 13 * *");
        assert_true(cron_matches(&e, 2026, 1, 13, 0, 0, 0));
        assert_false(cron_matches(&e, 2026, 1, 16, 0, 0, 0));
        e = parse("0 0 * * fri");
        assert_false(cron_matches(&e, 2026, 1, 13, 0, 0, 0));
        assert_true(cron_matches(&e, 2026, 1, 16, 0, 0, 0));
}

/* ---- slots ------------------------------------------------------------------------------ */

struct slot_list {
        int64_t v[MAX_SLOTS];
        size_t n;
};

static int collect(int64_t slot_us, void *userdata)
{
        struct slot_list *l = userdata;
        if (l->n == MAX_SLOTS)
                return -ENOBUFS;
        l->v[l->n++] = slot_us;
        return 0;
}

static struct tz_zone *load(const char *name)
{
        char err[TZ_ERROR_MAX];
        struct tz_zone *z;
        if (tz_zone_load(name, &z, err, sizeof(err)) < 0)
                fail_msg("%s", err);
        return z;
}

static void expect_slots(const struct tz_zone *z, const char *expr, const char *from,
                         const char *to, const char *const *want, size_t n_want)
{
        static struct slot_list got;
        struct cron_expr e = parse(expr);
        got.n = 0;
        assert_int_equal(cron_slots(&e, z, at(from), at(to), collect, &got), 0);
        bool same = got.n == n_want;
        for (size_t i = 0; same && i < n_want; i++)
                same = got.v[i] == at(want[i]);
        if (!same) {
                char buf[CLOCK_RFC3339_MAX];
                for (size_t i = 0; i < got.n; i++)
                        print_message("  got %s\n", clock_format_rfc3339(got.v[i], 0, buf));
                fail_msg("\"%s\" in %s from %s to %s: %zu slots, want %zu", expr, tz_zone_name(z),
                         from, to, got.n, n_want);
        }
}
#define EXPECT(z, expr, from, to, ...)                                                             \
        expect_slots(z, expr, from, to, (const char *const[]){__VA_ARGS__},                        \
                     sizeof((const char *const[]){__VA_ARGS__}) / sizeof(char *))
#define EXPECT_NONE(z, expr, from, to) expect_slots(z, expr, from, to, NULL, 0)

static void test_dst_spring_forward(void **state)
{
        struct tz_zone *z = load("Europe/Berlin");
        /* 2026-03-29: 02:00 CET becomes 03:00 CEST at 01:00Z. A fixed-time job whose time was
         * skipped runs once, right after the change; a job at 03:30 is not disturbed. */
        EXPECT(z, "30 2 * * *", "2026-03-28T00:00:00Z", "2026-03-31T00:00:00Z",
               "2026-03-28T01:30:00Z", "2026-03-29T01:00:00Z", "2026-03-30T00:30:00Z");
        EXPECT(z, "0,30 2 * * *", "2026-03-29T00:00:00Z", "2026-03-29T03:00:00Z",
               "2026-03-29T01:00:00Z");
        EXPECT(z, "30 30 2 * * *", "2026-03-29T00:00:00Z", "2026-03-29T03:00:00Z",
               "2026-03-29T01:00:00Z");
        EXPECT(z, "0 3 * * *", "2026-03-29T00:00:00Z", "2026-03-29T03:00:00Z",
               "2026-03-29T01:00:00Z");
        EXPECT(z, "30 3 * * *", "2026-03-29T00:00:00Z", "2026-03-29T03:00:00Z",
               "2026-03-29T01:30:00Z");
        /* A minute-star job with a fixed hour is a fixed-time job too. */
        EXPECT(z, "*/20 2 * * *", "2026-03-29T00:00:00Z", "2026-03-29T03:00:00Z",
               "2026-03-29T01:00:00Z");
        /* Wildcard jobs (hour '*') just follow the clock: nothing for the skipped hour. */
        EXPECT(z, "*/30 * * * *", "2026-03-29T00:00:00Z", "2026-03-29T02:00:00Z",
               "2026-03-29T00:00:00Z", "2026-03-29T00:30:00Z", "2026-03-29T01:00:00Z",
               "2026-03-29T01:30:00Z");
        /* The gap's slot belongs to the span that holds the transition. */
        EXPECT_NONE(z, "30 2 * * *", "2026-03-29T00:00:00Z", "2026-03-29T01:00:00Z");
        EXPECT(z, "30 2 * * *", "2026-03-29T01:00:00Z", "2026-03-29T02:00:00Z",
               "2026-03-29T01:00:00Z");
        tz_zone_free(z);

        z = load("America/New_York");
        EXPECT(z, "30 2 * * *", "2026-03-08T00:00:00Z", "2026-03-09T00:00:00Z",
               "2026-03-08T07:00:00Z");
        tz_zone_free(z);
}

static void test_dst_fall_back(void **state)
{
        struct tz_zone *z = load("Europe/Berlin");
        /* 2026-10-25: 03:00 CEST becomes 02:00 CET at 01:00Z; 02:xx happens twice. */
        EXPECT(z, "30 2 * * *", "2026-10-24T00:00:00Z", "2026-10-27T00:00:00Z",
               "2026-10-24T00:30:00Z", "2026-10-25T00:30:00Z", "2026-10-26T01:30:00Z");
        EXPECT_NONE(z, "30 2 * * *", "2026-10-25T01:00:00Z", "2026-10-25T02:00:00Z");
        EXPECT(z, "*/30 * * * *", "2026-10-25T00:00:00Z", "2026-10-25T02:00:00Z",
               "2026-10-25T00:00:00Z", "2026-10-25T00:30:00Z", "2026-10-25T01:00:00Z",
               "2026-10-25T01:30:00Z");
        EXPECT(z, "0 * * * *", "2026-10-24T23:30:00Z", "2026-10-25T02:30:00Z",
               "2026-10-25T00:00:00Z", "2026-10-25T01:00:00Z", "2026-10-25T02:00:00Z");
        /* Partial spans inside the repeated hour still know it is the second pass. */
        EXPECT_NONE(z, "45 2 * * *", "2026-10-25T01:30:00Z", "2026-10-25T02:00:00Z");
        tz_zone_free(z);

        z = load("America/New_York");
        EXPECT(z, "30 1 * * *", "2026-11-01T00:00:00Z", "2026-11-02T00:00:00Z",
               "2026-11-01T05:30:00Z");
        EXPECT(z, "30 * * * *", "2026-11-01T05:00:00Z", "2026-11-01T07:00:00Z",
               "2026-11-01T05:30:00Z", "2026-11-01T06:30:00Z");
        tz_zone_free(z);
}

static void test_next(void **state)
{
        struct tz_zone *z = load("Europe/Berlin");
        struct cron_expr e = parse("0 0 29 2 *");
        int64_t t;
        /* 2100 is not a leap year. */
        assert_int_equal(cron_next(&e, NULL, at("2097-01-01T00:00:00Z"), &t), 0);
        assert_int_equal(t, at("2104-02-29T00:00:00Z"));
        e = parse("*/5 * * * * *");
        assert_int_equal(cron_next(&e, NULL, at("2026-01-01T00:00:00Z"), &t), 0);
        assert_int_equal(t, at("2026-01-01T00:00:05Z"));
        assert_int_equal(cron_next(&e, NULL, at("2026-01-01T00:00:04.999999Z"), &t), 0);
        assert_int_equal(t, at("2026-01-01T00:00:05Z"));
        e = parse("30 2 * * *");
        assert_int_equal(cron_next(&e, z, at("2026-03-28T12:00:00Z"), &t), 0);
        assert_int_equal(t, at("2026-03-29T01:00:00Z"));
        assert_int_equal(cron_next(&e, z, t, &t), 0);
        assert_int_equal(t, at("2026-03-30T00:30:00Z"));
        /* Far beyond the table of transitions (the footer rule). */
        assert_int_equal(cron_next(&e, z, at("2150-03-28T12:00:00Z"), &t), 0);
        assert_int_equal(t, at("2150-03-29T01:00:00Z"));
        e = parse("0 0 1 1 *");
        assert_int_equal(cron_next(&e, NULL, at("9999-06-01T00:00:00Z"), &t), -ENOENT);
        tz_zone_free(z);
}

/* ---- against a brute-force reference ---------------------------------------------------- */

static uint64_t rng = 0x9E3779B97F4A7C15ULL;

static uint32_t rnd(uint32_t n)
{
        rng ^= rng << 13;
        rng ^= rng >> 7;
        rng ^= rng << 17;
        return (uint32_t)(rng % n);
}

static void random_field(char *out, size_t size, int min, int max, int star_pct,
                         const char *const *names)
{
        int span = max - min + 1;
        size_t len = 0;
        if ((int)rnd(100) < star_pct) {
                if (rnd(3) == 0)
                        snprintf(out, size, "*/%u", 1 + rnd((uint32_t)span / 2));
                else
                        snprintf(out, size, "*");
                return;
        }
        int items = 1 + (int)rnd(3);
        for (int i = 0; i < items; i++) {
                int a = min + (int)rnd((uint32_t)span), b = a + (int)rnd((uint32_t)(max - a + 1));
                const char *sep = i ? "," : "";
                switch (rnd(4)) {
                case 0:
                        if (names)
                                len += (size_t)snprintf(out + len, size - len, "%s%s", sep,
                                                        names[a - min]);
                        else
                                len += (size_t)snprintf(out + len, size - len, "%s%d", sep, a);
                        break;
                case 1:
                        len += (size_t)snprintf(out + len, size - len, "%s%d-%d", sep, a, b);
                        break;
                case 2:
                        len += (size_t)snprintf(out + len, size - len, "%s%d-%d/%u", sep, a, b,
                                                1 + rnd(5));
                        break;
                default:
                        len += (size_t)snprintf(out + len, size - len, "%s%d", sep, a);
                }
        }
}

static const char *const mon_names[] = {"jan", "feb", "mar", "apr", "may", "jun",
                                        "jul", "aug", "sep", "oct", "nov", "dec"};
static const char *const dow_names[] = {"sun", "mon", "tue", "wed", "thu", "fri", "sat"};

/* A random expression that parses; six fields when `seconds`. */
static void random_expr(char *out, size_t size, bool seconds, struct cron_expr *e)
{
        for (;;) {
                char f[6][48];
                random_field(f[0], sizeof(f[0]), 0, 59, 30, NULL);
                random_field(f[1], sizeof(f[1]), 0, 59, 40, NULL);
                random_field(f[2], sizeof(f[2]), 0, 23, 50, NULL);
                random_field(f[3], sizeof(f[3]), 1, 31, 70, NULL);
                random_field(f[4], sizeof(f[4]), 1, 12, 80, mon_names);
                random_field(f[5], sizeof(f[5]), 0, 6, 70, dow_names);
                if (seconds)
                        snprintf(out, size, "%s %s %s %s %s %s", f[0], f[1], f[2], f[3], f[4],
                                 f[5]);
                else
                        snprintf(out, size, "%s %s %s %s %s", f[1], f[2], f[3], f[4], f[5]);
                if (cron_parse(out, e, NULL) == 0)
                        return;
        }
}

/* The reference: match the local fields against the bitsets, written out plainly. */
static bool ref_matches(const struct cron_expr *e, int64_t local_s)
{
        int64_t days = local_s >= 0 ? local_s / 86400 : -((-local_s + 86399) / 86400);
        int64_t sod = local_s - days * 86400;
        int y, m, d, wd;
        tz_civil_from_days(days, &y, &m, &d, &wd);
        bool dom = (e->days >> d) & 1, dow = (e->weekdays >> wd) & 1;
        bool day = (e->flags & (CRON_DOM_STAR | CRON_DOW_STAR)) ? dom && dow : dom || dow;
        return ((e->months >> m) & 1) && day && ((e->hours >> (sod / 3600)) & 1) &&
               ((e->minutes >> (sod / 60 % 60)) & 1) && ((e->seconds >> (sod % 60)) & 1);
}

/* Every slot in [from, to) (seconds), testing every `step` seconds (60 for 5 fields). */
static void reference_slots(const struct cron_expr *e, const struct tz_zone *z, int64_t from,
                            int64_t to, struct slot_list *out)
{
        int step = (e->flags & CRON_HAS_SECONDS) ? 1 : 60;
        bool wildcard = e->flags & CRON_HOUR_STAR;
        out->n = 0;
        for (int64_t t = from; t < to; t++) {
                int32_t off = tz_offset_at(z, t), before = tz_offset_at(z, t - 1);
                bool slot = false;
                if (t % step == 0 && ref_matches(e, t + off)) {
                        slot = true;
                        if (!wildcard) {
                                /* Second pass of a repeated local time? */
                                struct tz_local l;
                                struct tz_resolved r;
                                tz_to_local(z, t * USEC_PER_SEC, &l);
                                tz_from_local(z, l.year, l.month, l.day, l.hour, l.minute, l.second,
                                              &r);
                                if (r.kind == TZ_LOCAL_AMBIGUOUS && r.later == t)
                                        slot = false;
                        }
                }
                if (!slot && !wildcard && off > before) {
                        /* Clocks went forward at t: did the skipped local times match? */
                        for (int64_t l = t + before; l < t + off && !slot; l += step)
                                slot = ref_matches(e, l);
                }
                if (slot) {
                        assert_true(out->n < MAX_SLOTS);
                        out->v[out->n++] = t * USEC_PER_SEC;
                }
                if (step == 60 && t % 60 == 0 && tz_offset_at(z, t + 59) == off &&
                    tz_offset_at(z, t + 60) == off)
                        t += 59; /* nothing else can happen inside this minute */
        }
}

static size_t compared_slots;

static void compare(const char *expr, const struct cron_expr *e, const struct tz_zone *z,
                    int64_t from, int64_t to)
{
        static struct slot_list got, want;
        got.n = 0;
        assert_int_equal(cron_slots(e, z, from * USEC_PER_SEC, to * USEC_PER_SEC, collect, &got),
                         0);
        reference_slots(e, z, from, to, &want);
        compared_slots += want.n;
        bool same = got.n == want.n;
        for (size_t i = 0; same && i < got.n; i++)
                same = got.v[i] == want.v[i];
        if (!same) {
                char a[CLOCK_RFC3339_MAX], b[CLOCK_RFC3339_MAX];
                fail_msg("\"%s\" in %s over [%s, %s): %zu slots, the reference %zu (first "
                         "product %s)",
                         expr, tz_zone_name(z), clock_format_rfc3339(from * USEC_PER_SEC, 0, a),
                         clock_format_rfc3339(to * USEC_PER_SEC, 0, b), got.n, want.n,
                         got.n ? clock_format_rfc3339(got.v[0], 0, a) : "-");
        }
        /* cron_next agrees with the slots: the second slot follows the first. */
        if (got.n >= 2) {
                int64_t next;
                assert_int_equal(cron_next(e, z, got.v[0], &next), 0);
                assert_int_equal(next, got.v[1]);
        }
}

static void test_against_brute_force(void **state)
{
        const char *names[] = {"UTC", "Europe/Berlin", "America/New_York", "Australia/Lord_Howe"};
        for (size_t zi = 0; zi < sizeof(names) / sizeof(names[0]); zi++) {
                struct tz_zone *z = load(names[zi]);
                for (int k = 0; k < 150; k++) {
                        char text[512];
                        struct cron_expr e;
                        bool seconds = k % 5 == 0;
                        random_expr(text, sizeof(text), seconds, &e);
                        /* Spans: a random hour, the hours around a DST transition, and a random
                         * odd-sized span. */
                        int64_t base = at("2024-01-01T00:00:00Z") / USEC_PER_SEC +
                                       (int64_t)rnd(16 * 365) * 86400;
                        int64_t hour = base + (int64_t)rnd(24) * 3600;
                        compare(text, &e, z, hour, hour + 3600);
                        struct tz_transition tr;
                        if (tz_next_transition(z, base, &tr)) {
                                for (int64_t h = -2; h <= 2; h++)
                                        compare(text, &e, z, tr.at + h * 3600,
                                                tr.at + (h + 1) * 3600);
                                /* A fixed-time job at the hours the change skips or repeats. */
                                char minutes[48], fixed[160];
                                int h1 = (int)((tr.at + tr.offset_before) % 86400 / 3600);
                                int h2 = (int)((tr.at + tr.offset_after) % 86400 / 3600);
                                random_field(minutes, sizeof(minutes), 0, 59, 30, NULL);
                                snprintf(fixed, sizeof(fixed), "%s%s %d,%d * * *",
                                         seconds ? "*/7 " : "", minutes, h1, h2);
                                e = parse(fixed);
                                for (int64_t h = -2; h <= 2; h++)
                                        compare(fixed, &e, z, tr.at + h * 3600,
                                                tr.at + (h + 1) * 3600);
                        }
                        int64_t from = hour + (int64_t)rnd(3600);
                        compare(text, &e, z, from, from + 1 + (int64_t)rnd(seconds ? 4000 : 30000));
                }
                tz_zone_free(z);
        }
        /* The random expressions did produce slots to compare. */
        assert_true(compared_slots > 10000);
}

/* Garbage never crashes the parser, and every refusal says why. */
static void test_garbage_refused_with_a_message(void **state)
{
        static const char alphabet[] = "0123456789*/-,LW#? \tjanfebsunmon@x";
        for (int k = 0; k < 20000; k++) {
                char text[40];
                size_t len = rnd(sizeof(text) - 1);
                for (size_t i = 0; i < len; i++)
                        text[i] =
                            k % 7 == 0 ? (char)(1 + rnd(255)) : alphabet[rnd(sizeof(alphabet) - 1)];
                text[len] = '\0';
                struct cron_expr e;
                struct cron_error err;
                int r = cron_parse(text, &e, &err);
                if (r == 0)
                        continue;
                assert_int_equal(r, -EINVAL);
                assert_true(err.message[0] != '\0');
                assert_true(err.position <= len + 1);
        }
}

int main(void)
{
        const struct CMUnitTest tests[] = {
            cmocka_unit_test(test_every_syntax),
            cmocka_unit_test(test_every_error),
            cmocka_unit_test(test_day_of_month_or_day_of_week),
            cmocka_unit_test(test_dst_spring_forward),
            cmocka_unit_test(test_dst_fall_back),
            cmocka_unit_test(test_next),
            cmocka_unit_test(test_against_brute_force),
            cmocka_unit_test(test_garbage_refused_with_a_message),
        };
        return cmocka_run_group_tests(tests, NULL, NULL);
}
