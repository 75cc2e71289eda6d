/* SPDX-License-Identifier: Apache-2.0 */
/*
 * IANA time zones read from TZif files (RFC 8536, version 2 or later) without touching the
 * process-global TZ: a loaded zone is immutable, so any number of zones can be used from any
 * number of threads at once. Times after the file's last transition follow its POSIX TZ footer.
 * All instants are UTC seconds (or microseconds where named _us) since the epoch.
 */
#pragma once

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#define TZ_NAME_MAX  64
#define TZ_ERROR_MAX 256
/* The zone database; the TZDIR environment variable overrides it, as for the C library. */
#define TZ_DEFAULT_DIR "/usr/share/zoneinfo"

struct tz_zone;

/*
 * Load the zone `name` (borrowed), e.g. "Europe/Berlin" or "UTC". The name must be 1 to
 * TZ_NAME_MAX characters of [A-Za-z0-9_+-] in '/'-separated components, none "." or ".."
 * (no path can escape the database). "UTC" works even without the database.
 * On success *ret is the zone (caller frees with tz_zone_free()). Errors: -EINVAL (bad name,
 * or a file that is not valid TZif v2+), -ENOENT (no such zone), -ENOMEM, other -errno from
 * reading; `err` (may be NULL) then holds a message naming the zone and the problem.
 * Any thread.
 */
int tz_zone_load(const char *name, struct tz_zone **ret, char *err, size_t err_size);

/* Parse a TZif image held in memory (`data`, `size` borrowed); for tests and tools. As above. */
int tz_zone_parse(const char *name, const void *data, size_t size, struct tz_zone **ret, char *err,
                  size_t err_size);

void tz_zone_free(struct tz_zone *z);

/* The name the zone was loaded under (borrowed, lives as long as the zone). */
const char *tz_zone_name(const struct tz_zone *z);

/* Local wall-clock fields of an instant. */
struct tz_local {
        int year;
        int month;            /* 1-12 */
        int day;              /* 1-31 */
        int hour;             /* 0-23 */
        int minute;           /* 0-59 */
        int second;           /* 0-59 */
        int wday;             /* 0 = Sunday */
        int32_t utc_offset_s; /* local = UTC + offset */
        bool is_dst;
};

/* The offset from UTC (seconds east) in effect at `t` (UTC seconds). `z` NULL means UTC. */
int32_t tz_offset_at(const struct tz_zone *z, int64_t t);

/*
 * The local time of the instant `t_us` (microseconds; the fraction is dropped, rounding towards
 * the past). `z` NULL means UTC. Returns 0 and fills *ret. Any thread.
 */
int tz_to_local(const struct tz_zone *z, int64_t t_us, struct tz_local *ret);

enum tz_resolution {
        TZ_LOCAL_UNIQUE,    /* the local time happens once */
        TZ_LOCAL_AMBIGUOUS, /* it happens twice (clocks set back): earlier and later */
        TZ_LOCAL_SKIPPED,   /* it never happens (clocks set forward) */
};

struct tz_resolved {
        enum tz_resolution kind;
        /* UNIQUE: both the instant. AMBIGUOUS: the first and the second occurrence.
         * SKIPPED: both the instant the gap ends (the transition), the first instant whose
         * local time is later than the one asked for. UTC seconds. */
        int64_t earlier, later;
        int32_t offset_earlier, offset_later; /* the offsets of `earlier` and `later` */
};

/*
 * Resolve a local wall-clock time (fields as in struct tz_local; month 1-12, day 1-31,
 * hour 0-23, minute and second 0-59) to UTC. Returns 0, or -EINVAL for fields out of range.
 */
int tz_from_local(const struct tz_zone *z, int year, int month, int day, int hour, int minute,
                  int second, struct tz_resolved *ret);

/* A change of the UTC offset: from `at` on, `offset_after` applies instead of `offset_before`. */
struct tz_transition {
        int64_t at;
        int32_t offset_before, offset_after;
};

/*
 * The first transition strictly after `t` (UTC seconds) that changes the offset; false when
 * there is none (fixed-offset zones, or no rule beyond the table). `z` NULL means UTC.
 */
bool tz_next_transition(const struct tz_zone *z, int64_t t, struct tz_transition *ret);

/* The last transition at or before `t` that changes the offset; false when there is none. */
bool tz_prev_transition(const struct tz_zone *z, int64_t t, struct tz_transition *ret);

/*
 * Proleptic Gregorian calendar helpers shared with the cron module: days since 1970-01-01 of a
 * date, and back (with the weekday, 0 = Sunday). Pure.
 */
int64_t tz_days_from_civil(int64_t year, int month, int day);
void tz_civil_from_days(int64_t days, int *ret_year, int *ret_month, int *ret_day, int *ret_wday);
int tz_days_in_month(int64_t year, int month);
