/* SPDX-License-Identifier: Apache-2.0 */
/*
 * TZif (RFC 8536) reader and the POSIX TZ rule of its footer; conversions between UTC and local
 * wall-clock time on an immutable zone object, so no global state (TZ, tzset) is involved.
 */
#include <errno.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/types.h>

#include "core/clock.h"
#include "core/macro.h"
#include "core/util.h"
#include "sched/tz.h"

#define TZIF_MAX_SIZE  ((size_t)1024 * 1024)
#define TZIF_MAX_TYPES 256
#define FOOTER_MAX     128
#define DAY_S          INT64_C(86400)
/* No real zone is further than this from UTC; a larger value is a corrupt file. */
#define OFFSET_MAX_S (26 * 3600)

/* A rule date of the POSIX TZ string: Jn, n or Mm.w.d, and the local time it applies at. */
struct posix_date {
        char kind; /* 'J', 'N' (zero-based day of year) or 'M' */
        int a, b, c;
        int32_t time_s;
};

struct posix_rule {
        bool present;
        bool has_dst;
        int32_t std_off, dst_off; /* seconds east of UTC */
        struct posix_date start, end;
};

struct tz_type {
        int32_t utoff;
        bool isdst;
};

struct tz_zone {
        char name[TZ_NAME_MAX + 1];
        size_t n_trans;
        int64_t *trans;
        uint8_t *trans_type;
        size_t n_types;
        struct tz_type types[TZIF_MAX_TYPES];
        struct posix_rule rule;
};

static const struct tz_zone utc_zone = {
    .name = "UTC",
    .n_types = 1,
    .types = {{0, false}},
};

/* ---- the calendar ----------------------------------------------------------------------- */

static int64_t floor_div(int64_t a, int64_t b)
{
        return a / b - (a % b != 0 && ((a < 0) != (b < 0)));
}

static bool is_leap(int64_t y)
{
        return (y % 4 == 0 && y % 100 != 0) || y % 400 == 0;
}

int tz_days_in_month(int64_t year, int month)
{
        static const int dim[12] = {31, 28, 31, 30, 31, 30, 31, 31, 30, 31, 30, 31};
        if (month < 1 || month > 12)
                return 0;
        return dim[month - 1] + (month == 2 && is_leap(year));
}

/* Howard Hinnant's days_from_civil / civil_from_days. */
int64_t tz_days_from_civil(int64_t y, int m, int d)
{
        y -= m <= 2;
        int64_t era = floor_div(y, 400);
        int64_t yoe = y - era * 400;
        int64_t doy = (153 * (m + (m > 2 ? -3 : 9)) + 2) / 5 + d - 1;
        int64_t doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
        return era * 146097 + doe - 719468;
}

void tz_civil_from_days(int64_t days, int *ret_year, int *ret_month, int *ret_day, int *ret_wday)
{
        int64_t z = days + 719468;
        int64_t era = floor_div(z, 146097);
        int64_t doe = z - era * 146097;
        int64_t yoe = (doe - doe / 1460 + doe / 36524 - doe / 146096) / 365;
        int64_t y = yoe + era * 400;
        int64_t doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
        int64_t mp = (5 * doy + 2) / 153;
        int d = (int)(doy - (153 * mp + 2) / 5 + 1);
        int m = (int)(mp < 10 ? mp + 3 : mp - 9);
        if (ret_year)
                *ret_year = (int)(y + (m <= 2));
        if (ret_month)
                *ret_month = m;
        if (ret_day)
                *ret_day = d;
        if (ret_wday)
                *ret_wday = (int)(((days % 7) + 11) % 7); /* 1970-01-01 was a Thursday */
}

static int year_of(int64_t local_s)
{
        int y;
        tz_civil_from_days(floor_div(local_s, DAY_S), &y, NULL, NULL, NULL);
        return y;
}

/* ---- the POSIX TZ footer ---------------------------------------------------------------- */

/* [+-]hh[:mm[:ss]], hours up to `max_hours`. */
static int parse_hms(const char **p, int max_hours, int32_t *ret)
{
        const char *s = *p;
        int sign = 1, part[3] = {0, 0, 0};
        if (*s == '+' || *s == '-')
                sign = *s++ == '-' ? -1 : 1;
        for (int i = 0; i < 3; i++) {
                if (i > 0) {
                        if (*s != ':')
                                break;
                        s++;
                }
                if (*s < '0' || *s > '9')
                        return -EINVAL;
                int v = 0, digits = 0;
                while (*s >= '0' && *s <= '9' && digits < 3) {
                        v = v * 10 + (*s++ - '0');
                        digits++;
                }
                part[i] = v;
        }
        if (part[0] > max_hours || part[1] > 59 || part[2] > 59)
                return -EINVAL;
        *ret = sign * (part[0] * 3600 + part[1] * 60 + part[2]);
        *p = s;
        return 0;
}

static int parse_abbrev(const char **p)
{
        const char *s = *p;
        size_t n = 0;
        if (*s == '<') {
                s++;
                while (*s && *s != '>') {
                        s++;
                        n++;
                }
                if (*s != '>' || n < 3)
                        return -EINVAL;
                *p = s + 1;
                return 0;
        }
        while ((*s >= 'A' && *s <= 'Z') || (*s >= 'a' && *s <= 'z')) {
                s++;
                n++;
        }
        if (n < 3)
                return -EINVAL;
        *p = s;
        return 0;
}

static int parse_number(const char **p, int min, int max, int *ret)
{
        const char *s = *p;
        int v = 0;
        if (*s < '0' || *s > '9')
                return -EINVAL;
        while (*s >= '0' && *s <= '9' && v <= max)
                v = v * 10 + (*s++ - '0');
        if (v < min || v > max)
                return -EINVAL;
        *p = s;
        *ret = v;
        return 0;
}

static int parse_date(const char **p, struct posix_date *d)
{
        const char *s = *p;
        int r;
        d->time_s = 2 * 3600;
        if (*s == 'J') {
                s++;
                d->kind = 'J';
                r = parse_number(&s, 1, 365, &d->a);
        } else if (*s == 'M') {
                s++;
                d->kind = 'M';
                r = parse_number(&s, 1, 12, &d->a);
                if (r == 0 && *s++ != '.')
                        r = -EINVAL;
                if (r == 0)
                        r = parse_number(&s, 1, 5, &d->b);
                if (r == 0 && *s++ != '.')
                        r = -EINVAL;
                if (r == 0)
                        r = parse_number(&s, 0, 6, &d->c);
        } else {
                d->kind = 'N';
                r = parse_number(&s, 0, 365, &d->a);
        }
        if (r < 0)
                return r;
        if (*s == '/') {
                s++;
                /* RFC 8536 extends the hours to -167..167. */
                r = parse_hms(&s, 167, &d->time_s);
                if (r < 0)
                        return r;
        }
        *p = s;
        return 0;
}

static int parse_footer(const char *s, struct posix_rule *rule)
{
        struct posix_rule r = {.present = true};
        int32_t off;

        if (parse_abbrev(&s) < 0 || parse_hms(&s, 24, &off) < 0)
                return -EINVAL;
        r.std_off = -off; /* POSIX counts hours west */
        if (*s == '\0') {
                *rule = r;
                return 0;
        }
        if (parse_abbrev(&s) < 0)
                return -EINVAL;
        r.has_dst = true;
        r.dst_off = r.std_off + 3600;
        if (*s && *s != ',') {
                if (parse_hms(&s, 24, &off) < 0)
                        return -EINVAL;
                r.dst_off = -off;
        }
        if (*s == '\0') {
                /* No rule: POSIX leaves it to the implementation; use the US rule, as glibc. */
                r.start = (struct posix_date){'M', 3, 2, 0, 7200};
                r.end = (struct posix_date){'M', 11, 1, 0, 7200};
        } else if (*s++ != ',' || parse_date(&s, &r.start) < 0 || *s++ != ',' ||
                   parse_date(&s, &r.end) < 0 || *s != '\0') {
                return -EINVAL;
        }
        *rule = r;
        return 0;
}

/* Local seconds (as if UTC) of a rule date in `year`. */
static int64_t rule_local(const struct posix_date *d, int64_t year)
{
        int64_t days = tz_days_from_civil(year, 1, 1);
        if (d->kind == 'J')
                days += d->a - 1 + (is_leap(year) && d->a >= 60);
        else if (d->kind == 'N')
                days += d->a;
        else {
                int64_t first = tz_days_from_civil(year, d->a, 1);
                int wday;
                tz_civil_from_days(first, NULL, NULL, NULL, &wday);
                int mday = 1 + (d->c - wday + 7) % 7 + (d->b - 1) * 7;
                int dim = tz_days_in_month(year, d->a);
                while (mday > dim)
                        mday -= 7;
                days = first + mday - 1;
        }
        return days * DAY_S + d->time_s;
}

/* When DST starts and ends in `year`, UTC. */
static void rule_year(const struct posix_rule *r, int64_t year, int64_t *start, int64_t *end)
{
        *start = rule_local(&r->start, year) - r->std_off;
        *end = rule_local(&r->end, year) - r->dst_off;
}

static bool rule_is_dst(const struct posix_rule *r, int64_t t)
{
        int64_t s, e;
        if (!r->has_dst)
                return false;
        rule_year(r, year_of(t + r->std_off), &s, &e);
        if (s < e)
                return s <= t && t < e;
        return !(e <= t && t < s);
}

static int32_t rule_offset(const struct posix_rule *r, int64_t t)
{
        return rule_is_dst(r, t) ? r->dst_off : r->std_off;
}

/* The rule's candidate transitions around `t`: starts and ends of the neighbouring years. */
static size_t rule_candidates(const struct posix_rule *r, int64_t t, int64_t out[8])
{
        size_t n = 0;
        if (!r->has_dst)
                return 0;
        int64_t y = year_of(t + r->std_off);
        for (int64_t k = y - 1; k <= y + 2; k++) {
                rule_year(r, k, &out[n], &out[n + 1]);
                n += 2;
        }
        return n;
}

/* ---- lookups ---------------------------------------------------------------------------- */

static bool in_rule_region(const struct tz_zone *z, int64_t t)
{
        return z->rule.present && (z->n_trans == 0 || t >= z->trans[z->n_trans - 1]);
}

/* Index of the last transition at or before t, or -1. */
static ssize_t trans_index(const struct tz_zone *z, int64_t t)
{
        size_t lo = 0, hi = z->n_trans;
        while (lo < hi) {
                size_t mid = lo + (hi - lo) / 2;
                if (z->trans[mid] <= t)
                        lo = mid + 1;
                else
                        hi = mid;
        }
        return (ssize_t)lo - 1;
}

static const struct tz_type *type_at(const struct tz_zone *z, int64_t t)
{
        ssize_t i = trans_index(z, t);
        /* i >= 0 only when n_trans > 0, and then trans_type holds n_trans entries. */
        /* NOLINTNEXTLINE(clang-analyzer-core.NullDereference) */
        return i < 0 ? &z->types[0] : &z->types[z->trans_type[i]];
}

static bool dst_at(const struct tz_zone *z, int64_t t)
{
        if (in_rule_region(z, t))
                return rule_is_dst(&z->rule, t);
        return type_at(z, t)->isdst;
}

int32_t tz_offset_at(const struct tz_zone *z, int64_t t)
{
        if (!z)
                z = &utc_zone;
        if (in_rule_region(z, t))
                return rule_offset(&z->rule, t);
        return type_at(z, t)->utoff;
}

/* The offsets on both sides of the table's transition i. */
static void table_offsets(const struct tz_zone *z, size_t i, int32_t *before, int32_t *after)
{
        *before = i == 0 ? z->types[0].utoff : z->types[z->trans_type[i - 1]].utoff;
        *after = z->types[z->trans_type[i]].utoff;
}

bool tz_next_transition(const struct tz_zone *z, int64_t t, struct tz_transition *ret)
{
        if (!z)
                return false;
        for (ssize_t i = trans_index(z, t) + 1; i < (ssize_t)z->n_trans; i++) {
                int32_t before, after;
                table_offsets(z, (size_t)i, &before, &after);
                /* The last entry borders the rule region; the rule decides after it. */
                if (z->rule.present && i == (ssize_t)z->n_trans - 1)
                        after = tz_offset_at(z, z->trans[i]);
                if (before != after) {
                        *ret = (struct tz_transition){z->trans[i], before, after};
                        return true;
                }
        }
        if (!z->rule.present || !z->rule.has_dst)
                return false;
        int64_t cur = z->n_trans ? MAX(t, z->trans[z->n_trans - 1]) : t;
        for (int k = 0; k < 8; k++) {
                int64_t c[8], best = INT64_MAX;
                size_t n = rule_candidates(&z->rule, cur, c);
                for (size_t i = 0; i < n; i++)
                        if (c[i] > cur && c[i] < best)
                                best = c[i];
                if (best == INT64_MAX)
                        return false;
                int32_t before = tz_offset_at(z, best - 1), after = tz_offset_at(z, best);
                if (before != after) {
                        *ret = (struct tz_transition){best, before, after};
                        return true;
                }
                cur = best;
        }
        return false;
}

bool tz_prev_transition(const struct tz_zone *z, int64_t t, struct tz_transition *ret)
{
        if (!z)
                return false;
        int64_t cur = t;
        if (in_rule_region(z, t) && z->rule.has_dst) {
                int64_t floor_t = z->n_trans ? z->trans[z->n_trans - 1] : INT64_MIN;
                for (int k = 0; k < 8; k++) {
                        int64_t c[8], best = INT64_MIN;
                        size_t n = rule_candidates(&z->rule, cur, c);
                        for (size_t i = 0; i < n; i++)
                                if (c[i] <= cur && c[i] > best)
                                        best = c[i];
                        if (best == INT64_MIN || best <= floor_t)
                                break;
                        int32_t before = tz_offset_at(z, best - 1), after = tz_offset_at(z, best);
                        if (before != after) {
                                *ret = (struct tz_transition){best, before, after};
                                return true;
                        }
                        cur = best - 1;
                }
        }
        for (ssize_t i = trans_index(z, cur); i >= 0; i--) {
                int32_t before, after;
                table_offsets(z, (size_t)i, &before, &after);
                if (z->rule.present && i == (ssize_t)z->n_trans - 1)
                        after = tz_offset_at(z, z->trans[i]);
                if (before != after) {
                        *ret = (struct tz_transition){z->trans[i], before, after};
                        return true;
                }
        }
        return false;
}

int tz_to_local(const struct tz_zone *z, int64_t t_us, struct tz_local *ret)
{
        if (!z)
                z = &utc_zone;
        int64_t t = floor_div(t_us, USEC_PER_SEC);
        int32_t off = tz_offset_at(z, t);
        int64_t local = t + off;
        int64_t days = floor_div(local, DAY_S), sod = local - days * DAY_S;
        struct tz_local l = {
            .hour = (int)(sod / 3600),
            .minute = (int)(sod / 60 % 60),
            .second = (int)(sod % 60),
            .utc_offset_s = off,
            .is_dst = dst_at(z, t),
        };
        tz_civil_from_days(days, &l.year, &l.month, &l.day, &l.wday);
        *ret = l;
        return 0;
}

int tz_from_local(const struct tz_zone *z, int year, int month, int day, int hour, int minute,
                  int second, struct tz_resolved *ret)
{
        if (!z)
                z = &utc_zone;
        if (month < 1 || month > 12 || day < 1 || day > tz_days_in_month(year, month) || hour < 0 ||
            hour > 23 || minute < 0 || minute > 59 || second < 0 || second > 59)
                return -EINVAL;
        int64_t local = tz_days_from_civil(year, month, day) * DAY_S + (int64_t)hour * 3600 +
                        (int64_t)minute * 60 + second;

        /* Every offset in effect within a day and a bit of it is a candidate. */
        int32_t cand[16] = {0};
        size_t n_cand = 0;
        for (int64_t d = INT64_C(-30) * 3600; d <= INT64_C(30) * 3600; d += INT64_C(3) * 3600) {
                int32_t o = tz_offset_at(z, local + d);
                bool seen = false;
                for (size_t i = 0; i < n_cand; i++)
                        seen |= cand[i] == o;
                if (!seen && n_cand < ELEMENTSOF(cand))
                        cand[n_cand++] = o;
        }
        int64_t first = INT64_MAX, last = INT64_MIN;
        int32_t first_off = 0, last_off = 0;
        for (size_t i = 0; i < n_cand; i++) {
                int64_t t = local - cand[i];
                if (tz_offset_at(z, t) != cand[i])
                        continue;
                if (t < first) {
                        first = t;
                        first_off = cand[i];
                }
                if (t > last) {
                        last = t;
                        last_off = cand[i];
                }
        }
        if (first != INT64_MAX) {
                *ret = (struct tz_resolved){first == last ? TZ_LOCAL_UNIQUE : TZ_LOCAL_AMBIGUOUS,
                                            first, last, first_off, last_off};
                return 0;
        }
        /* In a gap: find the forward transition that skipped it. */
        struct tz_transition tr;
        int64_t cur = local - INT64_C(30) * 3600;
        while (tz_next_transition(z, cur, &tr) && tr.at <= local + INT64_C(30) * 3600) {
                if (tr.offset_after > tr.offset_before && local - tr.offset_before >= tr.at &&
                    local - tr.offset_after < tr.at) {
                        *ret = (struct tz_resolved){TZ_LOCAL_SKIPPED, tr.at, tr.at, tr.offset_after,
                                                    tr.offset_after};
                        return 0;
                }
                cur = tr.at;
        }
        /* Unreachable for a consistent zone; answer with the offset in effect. */
        int64_t t = local - tz_offset_at(z, local);
        *ret = (struct tz_resolved){TZ_LOCAL_UNIQUE, t, t, tz_offset_at(z, t), tz_offset_at(z, t)};
        return 0;
}

/* ---- loading ---------------------------------------------------------------------------- */

static int fail(char *err, size_t err_size, int r, const char *fmt, ...) _printf_(4, 5);
static int fail(char *err, size_t err_size, int r, const char *fmt, ...)
{
        if (err && err_size) {
                va_list ap;
                va_start(ap, fmt);
                vsnprintf(err, err_size, fmt, ap);
                va_end(ap);
        }
        return r;
}

static bool name_is_valid(const char *name)
{
        size_t len = strlen(name);
        if (len == 0 || len > TZ_NAME_MAX || name[0] == '/' || name[len - 1] == '/')
                return false;
        for (const char *p = name; *p; p++) {
                char c = *p;
                bool ok = (c >= 'A' && c <= 'Z') || (c >= 'a' && c <= 'z') ||
                          (c >= '0' && c <= '9') || c == '_' || c == '+' || c == '-' || c == '/' ||
                          c == '.';
                if (!ok)
                        return false;
        }
        /* No empty, "." or ".." component (and no dot-files). */
        for (const char *c = name; c; c = strchr(c, '/') ? strchr(c, '/') + 1 : NULL)
                if (*c == '/' || *c == '.')
                        return false;
        return true;
}

static uint32_t be32(const uint8_t *p)
{
        return (uint32_t)p[0] << 24 | (uint32_t)p[1] << 16 | (uint32_t)p[2] << 8 | p[3];
}

static int64_t be64(const uint8_t *p)
{
        return (int64_t)((uint64_t)be32(p) << 32 | be32(p + 4));
}

struct tzif_counts {
        uint32_t isut, isstd, leap, time, type, chars;
};

static int read_header(const uint8_t *p, size_t size, char *version, struct tzif_counts *c)
{
        if (size < 44 || memcmp(p, "TZif", 4) != 0)
                return -EINVAL;
        *version = (char)p[4];
        c->isut = be32(p + 20);
        c->isstd = be32(p + 24);
        c->leap = be32(p + 28);
        c->time = be32(p + 32);
        c->type = be32(p + 36);
        c->chars = be32(p + 40);
        /* Bounded so the size arithmetic below cannot overflow. */
        if (c->isut > TZIF_MAX_SIZE || c->isstd > TZIF_MAX_SIZE || c->leap > TZIF_MAX_SIZE ||
            c->time > TZIF_MAX_SIZE || c->type > TZIF_MAX_SIZE || c->chars > TZIF_MAX_SIZE)
                return -EINVAL;
        return 0;
}

static size_t body_size(const struct tzif_counts *c, size_t time_size)
{
        return (size_t)c->time * time_size + c->time + (size_t)c->type * 6 + c->chars +
               (size_t)c->leap * (time_size + 4) + c->isstd + c->isut;
}

int tz_zone_parse(const char *name, const void *data, size_t size, struct tz_zone **ret, char *err,
                  size_t err_size)
{
        const uint8_t *p = data;
        struct tzif_counts c;
        char version;

        if (size > TZIF_MAX_SIZE || read_header(p, size, &version, &c) < 0)
                return fail(err, err_size, -EINVAL, "time zone \"%s\": not a TZif file", name);
        if (version < '2')
                return fail(err, err_size, -EINVAL,
                            "time zone \"%s\": TZif version 1 files are not supported (need 2 or "
                            "later, with 64-bit times)",
                            name);
        size_t v1 = 44 + body_size(&c, 4);
        if (v1 > size || read_header(p + v1, size - v1, &version, &c) < 0)
                return fail(err, err_size, -EINVAL, "time zone \"%s\": truncated TZif file", name);
        const uint8_t *b = p + v1 + 44;
        size_t body = body_size(&c, 8);
        if (body > size - v1 - 44)
                return fail(err, err_size, -EINVAL, "time zone \"%s\": truncated TZif file", name);
        if (c.leap != 0)
                return fail(err, err_size, -EINVAL,
                            "time zone \"%s\": zones with leap seconds (\"right/\") are not "
                            "supported",
                            name);
        if (c.type == 0 || c.type > TZIF_MAX_TYPES || c.chars == 0 ||
            (c.isut != 0 && c.isut != c.type) || (c.isstd != 0 && c.isstd != c.type))
                return fail(err, err_size, -EINVAL, "time zone \"%s\": invalid TZif counts", name);

        _cleanup_free_ struct tz_zone *z = calloc(1, sizeof(*z));
        if (!z)
                return -ENOMEM;
        snprintf(z->name, sizeof(z->name), "%s", name);
        z->n_trans = c.time;
        z->n_types = c.type;
        if (c.time) {
                z->trans = calloc(c.time, sizeof(*z->trans));
                z->trans_type = calloc(c.time, 1);
                if (!z->trans || !z->trans_type) {
                        free(z->trans);
                        free(z->trans_type);
                        /* cppcheck-suppress memleak ; z is _cleanup_free_, freed on this return */
                        return -ENOMEM;
                }
        }
        const uint8_t *q = b;
        int r = 0;
        for (size_t i = 0; i < c.time; i++, q += 8) {
                z->trans[i] = be64(q);
                if (i > 0 && z->trans[i] <= z->trans[i - 1])
                        r = -EINVAL;
        }
        for (size_t i = 0; i < c.time; i++, q++) {
                z->trans_type[i] = *q;
                if (*q >= c.type)
                        r = -EINVAL;
        }
        for (size_t i = 0; i < c.type; i++, q += 6) {
                int32_t off = (int32_t)be32(q);
                if (off < -OFFSET_MAX_S || off > OFFSET_MAX_S || q[4] > 1 || q[5] >= c.chars)
                        r = -EINVAL;
                z->types[i] = (struct tz_type){off, q[4] == 1};
        }
        if (r < 0) {
                free(z->trans);
                free(z->trans_type);
                return fail(err, err_size, -EINVAL,
                            "time zone \"%s\": invalid transition or local time type", name);
        }

        /* The footer: "\n" POSIX-TZ-string "\n". */
        const char *f = (const char *)(b + body), *end = (const char *)p + size;
        if (f < end && *f == '\n') {
                const char *nl = memchr(f + 1, '\n', (size_t)(end - f - 1));
                size_t len = nl ? (size_t)(nl - f - 1) : 0;
                if (!nl || len > FOOTER_MAX)
                        r = -EINVAL;
                else if (len > 0) {
                        char footer[FOOTER_MAX + 1];
                        memcpy(footer, f + 1, len);
                        footer[len] = '\0';
                        r = parse_footer(footer, &z->rule);
                }
        }
        if (r < 0) {
                free(z->trans);
                free(z->trans_type);
                return fail(err, err_size, -EINVAL, "time zone \"%s\": invalid TZ rule footer",
                            name);
        }
        *ret = TAKE_PTR(z);
        return 0;
}

int tz_zone_load(const char *name, struct tz_zone **ret, char *err, size_t err_size)
{
        _cleanup_free_ char *path = NULL, *data = NULL;
        size_t size;

        if (!name || !name_is_valid(name))
                return fail(err, err_size, -EINVAL,
                            "\"%.*s\" is not an IANA time zone name (like Europe/Berlin)",
                            TZ_NAME_MAX, name ? name : "");
        const char *dir = getenv("TZDIR");
        if (strempty(dir))
                dir = TZ_DEFAULT_DIR;
        if (asprintf(&path, "%s/%s", dir, name) < 0)
                return -ENOMEM;
        int r = read_full_file(path, TZIF_MAX_SIZE, &data, &size);
        if (r < 0 && streq(name, "UTC") && r != -ENOMEM) {
                struct tz_zone *z = calloc(1, sizeof(*z));
                if (!z)
                        return -ENOMEM;
                *z = utc_zone;
                *ret = z;
                return 0;
        }
        if (r == -ENOENT || r == -EISDIR || r == -ENOTDIR)
                return fail(err, err_size, -ENOENT, "unknown time zone \"%s\" (no %s)", name, path);
        if (r < 0)
                return fail(err, err_size, r, "time zone \"%s\": cannot read %s: %s", name, path,
                            strerror(-r));
        return tz_zone_parse(name, data, size, ret, err, err_size);
}

void tz_zone_free(struct tz_zone *z)
{
        if (!z)
                return;
        free(z->trans);
        free(z->trans_type);
        free(z);
}

const char *tz_zone_name(const struct tz_zone *z)
{
        return z ? z->name : "UTC";
}
