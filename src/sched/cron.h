/* SPDX-License-Identifier: Apache-2.0 */
/*
 * Cron expressions (Vixie cron syntax, 5 fields or 6 with seconds first) parsed into bitsets,
 * and their slots in a time zone with Vixie cron's daylight-saving rules. Slots are computed
 * by walking the matching bits of the days, hours, minutes and seconds concerned, never by
 * testing every second. The syntax and the DST rules are documented in docs/scheduler.md.
 */
#pragma once

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "sched/tz.h"

/* Longest expression accepted. */
#define CRON_TEXT_MAX 256

enum {
        CRON_HAS_SECONDS = 1 << 0, /* 6 fields */
        CRON_DOM_STAR = 1 << 1,    /* day-of-month field starts with '*' */
        CRON_DOW_STAR = 1 << 2,    /* day-of-week field starts with '*' */
        CRON_HOUR_STAR = 1 << 3,   /* hour field starts with '*': a "wildcard" job for DST */
};

/*
 * A parsed expression. Plain data (embedded by value in other structs, copied with =); compare
 * with cron_expr_equal(), not memcmp.
 */
struct cron_expr {
        uint64_t seconds; /* bit s: second s (0-59); {0} for 5-field expressions */
        uint64_t minutes; /* bit m: minute m (0-59) */
        uint32_t hours;   /* bit h: hour h (0-23) */
        uint32_t days;    /* bit d: day of month d (1-31) */
        uint16_t months;  /* bit m: month m (1-12) */
        uint8_t weekdays; /* bit w: weekday w (0 = Sunday .. 6) */
        uint8_t flags;    /* CRON_* */
};

struct cron_error {
        int field;       /* 1-based field of the expression at fault; 0: the whole expression */
        size_t position; /* 1-based column of the offending token */
        char message[256];
};

/*
 * Parse `text` (borrowed). On success writes *ret and returns 0. On error returns -EINVAL
 * and, when `err` is not NULL, fills it; the message names the field, the token and its
 * column, e.g. `field 2 (hour): "25" is out of range 0-23 (column 4)`. Any thread.
 */
int cron_parse(const char *text, struct cron_expr *ret, struct cron_error *err);

bool cron_expr_equal(const struct cron_expr *a, const struct cron_expr *b);

/* Does the expression match these local wall-clock fields (ignoring DST rules)? */
bool cron_matches(const struct cron_expr *e, int year, int month, int day, int hour, int minute,
                  int second);

/* Called for each slot (UTC microseconds); return 0 to go on, anything else to stop. */
typedef int (*cron_slot_fn)(int64_t slot_us, void *userdata);

/*
 * Call `fn` for every slot of `e` in [from_us, to_us), in increasing order, in zone `zone`
 * (borrowed; NULL: UTC), applying the DST rules: a fixed-time job whose local time falls in a
 * skipped interval has one slot at the end of the gap; in a repeated interval a fixed-time job
 * has slots only in the first pass, a wildcard job (hour field '*') in both.
 * Returns 0, or the first non-zero value returned by `fn`. Any thread.
 */
int cron_slots(const struct cron_expr *e, const struct tz_zone *zone, int64_t from_us,
               int64_t to_us, cron_slot_fn fn, void *userdata);

/*
 * The first slot strictly after `after_us`, looking up to 10 years ahead. Returns 0 and writes
 * *ret_us, or -ENOENT when there is none in that span. Any thread.
 */
int cron_next(const struct cron_expr *e, const struct tz_zone *zone, int64_t after_us,
              int64_t *ret_us);
