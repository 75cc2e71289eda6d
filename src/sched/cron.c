/* SPDX-License-Identifier: Apache-2.0 */
/*
 * Cron parsing into bitsets, with an error that names the field, the token and its column;
 * and slot enumeration that walks only the matching bits of the days, hours, minutes and
 * seconds of a span, split where the zone's UTC offset changes so the DST rules apply.
 */
#include <errno.h>
#include <stdarg.h>
#include <stdio.h>
#include <string.h>
#include <strings.h>

#include "core/clock.h"
#include "core/macro.h"
#include "sched/cron.h"

#define DAY_S INT64_C(86400)
/* Instants are kept within years 1..9999 so the calendar arithmetic stays simple. */
#define SECONDS_MIN    INT64_C(-62135596800)
#define SECONDS_MAX    INT64_C(253402300799)
#define NEXT_HORIZON_S (DAY_S * 366 * 10)

enum field_id { F_SECOND, F_MINUTE, F_HOUR, F_DOM, F_MONTH, F_DOW, F_COUNT };

static const char *const month_names[] = {"jan", "feb", "mar", "apr", "may", "jun",
                                          "jul", "aug", "sep", "oct", "nov", "dec"};
static const char *const day_names[] = {"sun", "mon", "tue", "wed", "thu", "fri", "sat"};

static const struct field_def {
        const char *name;
        int min, max;
        const char *const *names; /* names[i] is value names_base + i */
        int n_names, names_base;
        const char *names_hint;
} field_defs[F_COUNT] = {
    [F_SECOND] = {"second", 0, 59, NULL, 0, 0, NULL},
    [F_MINUTE] = {"minute", 0, 59, NULL, 0, 0, NULL},
    [F_HOUR] = {"hour", 0, 23, NULL, 0, 0, NULL},
    [F_DOM] = {"day-of-month", 1, 31, NULL, 0, 0, NULL},
    [F_MONTH] = {"month", 1, 12, month_names, 12, 1, "a month name (jan-dec)"},
    [F_DOW] = {"day-of-week", 0, 7, day_names, 7, 0, "a day name (sun-sat)"},
};

static const struct {
        const char *alias;
        const char *expr;
} aliases[] = {
    {"@yearly", "0 0 1 1 *"}, {"@annually", "0 0 1 1 *"}, {"@monthly", "0 0 1 * *"},
    {"@weekly", "0 0 * * 0"}, {"@daily", "0 0 * * *"},    {"@midnight", "0 0 * * *"},
    {"@hourly", "0 * * * *"},
};

/* Parsing state: the whole text (for columns) and where the error goes. */
struct parser {
        const char *text;
        struct cron_error *err;
        int field_no; /* 1-based as written */
        const struct field_def *def;
};

static int perr(struct parser *p, const char *token, size_t token_len, const char *fmt, ...)
    _printf_(4, 5);
static int perr(struct parser *p, const char *token, size_t token_len, const char *fmt, ...)
{
        struct cron_error *e = p->err;
        char what[200];
        va_list ap;

        if (!e)
                return -EINVAL;
        va_start(ap, fmt);
        vsnprintf(what, sizeof(what), fmt, ap);
        va_end(ap);
        e->field = p->def ? p->field_no : 0;
        e->position = token ? (size_t)(token - p->text) + 1 : 0;
        if (p->def)
                snprintf(e->message, sizeof(e->message), "field %d (%s): \"%.*s\" %s (column %zu)",
                         p->field_no, p->def->name, (int)MIN(token_len, (size_t)64), token, what,
                         e->position);
        else if (token)
                snprintf(e->message, sizeof(e->message), "\"%.*s\" %s",
                         (int)MIN(token_len, (size_t)64), token, what);
        else
                snprintf(e->message, sizeof(e->message), "%s", what);
        return -EINVAL;
}

static bool is_digit(char c)
{
        return c >= '0' && c <= '9';
}

/* A number or a name of the field, the whole of [s, s+len). */
static int parse_value(struct parser *p, const char *s, size_t len, int *ret)
{
        const struct field_def *d = p->def;

        if (len > 0 && is_digit(s[0])) {
                long v = 0;
                for (size_t i = 0; i < len; i++) {
                        if (!is_digit(s[i]))
                                return perr(p, s, len, "is not a number");
                        if (v < 1000000)
                                v = v * 10 + (s[i] - '0');
                }
                if (v < d->min || v > d->max)
                        return perr(p, s, len, "is out of range %d-%d", d->min, d->max);
                *ret = (int)v;
                return 0;
        }
        for (int i = 0; i < d->n_names; i++)
                if (len == 3 && strncasecmp(s, d->names[i], 3) == 0) {
                        *ret = d->names_base + i;
                        return 0;
                }
        if (len == 0)
                return perr(p, s, len, "is missing a value");
        if (d->names_hint)
                return perr(p, s, len, "is not a number or %s", d->names_hint);
        return perr(p, s, len, "is not a number");
}

/*
 * Quartz-style extensions: '#' and '?' anywhere; 'L' or 'W' after a number ("15W", "5L") or
 * standing alone ("L", "LW", "L-2"). Names such as "jul" or "wed" are not affected.
 */
static char unsupported_char(const char *s, size_t len)
{
        for (size_t i = 0; i < len; i++)
                if (s[i] == '#' || s[i] == '?')
                        return s[i];
        bool after_digit = false;
        for (size_t i = 0; i < len; i++) {
                char c = (char)(s[i] & ~0x20);
                bool alone =
                    i == 0 && (len == 1 || !((s[1] | 0x20) >= 'a' && (s[1] | 0x20) <= 'z') ||
                               (s[1] & ~0x20) == 'W');
                if ((c == 'L' || c == 'W') && (after_digit || alone))
                        return s[i];
                after_digit = is_digit(s[i]);
        }
        return 0;
}

/* One element of a list: "*", "a", "a-b", each optionally "/step". */
static int parse_element(struct parser *p, const char *s, size_t len, uint64_t *bits)
{
        const struct field_def *d = p->def;
        const char *slash = memchr(s, '/', len);
        size_t base_len = slash ? (size_t)(slash - s) : len;
        int lo = 0, hi = 0, step = 1, r;

        if (len == 0)
                return perr(p, s, 0, "is an empty element of a list");
        char bad = unsupported_char(s, len);
        if (bad)
                return perr(p, s, len,
                            "uses '%c', which is not supported (L, W, # and ? are not part of "
                            "Vixie cron syntax)",
                            bad);
        if (base_len == 1 && s[0] == '*') {
                lo = d->min;
                hi = d->max;
                if (p->def == &field_defs[F_DOW])
                        hi = 6;
        } else {
                const char *dash = memchr(s, '-', base_len);
                if (dash) {
                        r = parse_value(p, s, (size_t)(dash - s), &lo);
                        if (r < 0)
                                return r;
                        const char *h = dash + 1;
                        size_t hl = base_len - (size_t)(h - s);
                        r = parse_value(p, h, hl, &hi);
                        if (r < 0)
                                return r;
                        /* "fri-sun": Sunday at the end of a range is 7. */
                        if (p->def == &field_defs[F_DOW] && hi == 0 && lo > 0 && !is_digit(h[0]))
                                hi = 7;
                        if (lo > hi)
                                return perr(p, s, base_len,
                                            "is a reversed range (%d > %d; ranges do not wrap "
                                            "around)",
                                            lo, hi);
                } else {
                        r = parse_value(p, s, base_len, &lo);
                        if (r < 0)
                                return r;
                        /* "a/n" means a to the end of the field, every n. */
                        hi = slash ? d->max : lo;
                }
        }
        if (slash) {
                const char *st = slash + 1;
                size_t sl = len - base_len - 1;
                long v = 0;
                if (sl == 0)
                        return perr(p, s, len, "has no step after '/'");
                for (size_t i = 0; i < sl; i++) {
                        if (!is_digit(st[i]))
                                return perr(p, s, len, "has a step that is not a number");
                        if (v < 1000000)
                                v = v * 10 + (st[i] - '0');
                }
                if (v < 1)
                        return perr(p, s, len, "has a step of 0 (it must be at least 1)");
                if (v > d->max - d->min + 1)
                        return perr(p, s, len, "has a step of %ld, larger than the range %d-%d", v,
                                    d->min, d->max);
                step = (int)v;
        }
        for (int v = lo; v <= hi; v += step)
                *bits |= UINT64_C(1) << v;
        return 0;
}

static int parse_field(struct parser *p, const char *s, size_t len, uint64_t *bits, bool *star)
{
        *bits = 0;
        *star = len > 0 && s[0] == '*';
        const char *end = s + len;
        for (const char *e = s;; e++) {
                if (e == end || *e == ',') {
                        int r = parse_element(p, s, (size_t)(e - s), bits);
                        if (r < 0)
                                return r;
                        if (e == end)
                                break;
                        s = e + 1;
                        if (s == end)
                                return perr(p, e, 1, "ends a list without an element");
                }
        }
        return 0;
}

static bool day_feasible(uint32_t days, uint16_t months)
{
        /* Some selected day of the month exists in some selected month (February 29 counts). */
        static const int max_days[13] = {0, 31, 29, 31, 30, 31, 30, 31, 31, 30, 31, 30, 31};
        for (int m = 1; m <= 12; m++)
                if ((months >> m & 1) &&
                    (days & (uint32_t)(((UINT64_C(1) << (max_days[m] + 1)) - 1))))
                        return true;
        return false;
}

static int parse_fields(const char *text, struct cron_expr *ret, struct cron_error *err)
{
        struct parser p = {.text = text, .err = err};
        const char *tok[7];
        size_t tok_len[7];
        int n = 0;

        for (const char *s = text; *s;) {
                while (*s == ' ' || *s == '\t')
                        s++;
                if (!*s)
                        break;
                const char *b = s;
                while (*s && *s != ' ' && *s != '\t')
                        s++;
                if (n < 7) {
                        tok[n] = b;
                        tok_len[n] = (size_t)(s - b);
                }
                n++;
        }
        if (n == 0)
                return perr(&p, NULL, 0, "the schedule is empty");
        if (n != 5 && n != 6)
                return perr(&p, NULL, 0,
                            "expected 5 fields (minute hour day-of-month month day-of-week) or 6 "
                            "(with seconds first), found %d",
                            n);

        struct cron_expr e = {0};
        int first = n == 6 ? F_SECOND : F_MINUTE;
        uint64_t bits[F_COUNT] = {[F_SECOND] = 1};
        bool star[F_COUNT] = {false};
        for (int i = 0; i < n; i++) {
                p.field_no = i + 1;
                p.def = &field_defs[first + i];
                int r = parse_field(&p, tok[i], tok_len[i], &bits[first + i], &star[first + i]);
                if (r < 0)
                        return r;
        }
        e.seconds = bits[F_SECOND];
        e.minutes = bits[F_MINUTE];
        e.hours = (uint32_t)bits[F_HOUR];
        e.days = (uint32_t)bits[F_DOM];
        e.months = (uint16_t)bits[F_MONTH];
        uint64_t dow = bits[F_DOW];
        if (dow & (UINT64_C(1) << 7))
                dow = (dow | 1) & 0x7f; /* 7 is Sunday too */
        e.weekdays = (uint8_t)dow;
        e.flags =
            (uint8_t)((n == 6 ? CRON_HAS_SECONDS : 0) | (star[F_DOM] ? CRON_DOM_STAR : 0) |
                      (star[F_DOW] ? CRON_DOW_STAR : 0) | (star[F_HOUR] ? CRON_HOUR_STAR : 0));

        /* With a '*' in either day field both must match (Vixie); then the days must exist. */
        if ((e.flags & (CRON_DOM_STAR | CRON_DOW_STAR)) && !day_feasible(e.days, e.months)) {
                int dom = F_DOM - first;
                p.field_no = dom + 1;
                p.def = &field_defs[F_DOM];
                return perr(&p, tok[dom], tok_len[dom],
                            "never occurs in the selected months, so the schedule never fires");
        }
        *ret = e;
        return 0;
}

int cron_parse(const char *text, struct cron_expr *ret, struct cron_error *err)
{
        struct parser p = {.text = text, .err = err};

        if (err)
                *err = (struct cron_error){0};
        if (!text)
                return perr(&p, NULL, 0, "the schedule is empty");
        size_t len = strnlen(text, CRON_TEXT_MAX + 1);
        if (len > CRON_TEXT_MAX)
                return perr(&p, NULL, 0, "the schedule is longer than %d characters",
                            CRON_TEXT_MAX);
        for (size_t i = 0; i < len; i++)
                if ((unsigned char)text[i] < 0x20 && text[i] != '\t') {
                        perr(&p, NULL, 0, "the schedule contains a control character at column %zu",
                             i + 1);
                        if (err)
                                err->position = i + 1;
                        return -EINVAL;
                }

        const char *s = text;
        while (*s == ' ' || *s == '\t')
                s++;
        if (*s == '@') {
                size_t n = strcspn(s, " \t");
                const char *rest = s + n;
                while (*rest == ' ' || *rest == '\t')
                        rest++;
                if (*rest)
                        return perr(&p, s, strlen(s), "has text after the alias");
                if (n == 7 && strncasecmp(s, "@reboot", 7) == 0)
                        return perr(&p, s, n,
                                    "is not supported: schedules are times, not process events");
                for (size_t i = 0; i < ELEMENTSOF(aliases); i++)
                        if (strlen(aliases[i].alias) == n &&
                            strncasecmp(s, aliases[i].alias, n) == 0)
                                return parse_fields(aliases[i].expr, ret, NULL);
                return perr(&p, s, n,
                            "is not a known alias (@yearly, @annually, @monthly, @weekly, "
                            "@daily, @midnight, @hourly)");
        }
        return parse_fields(text, ret, err);
}

bool cron_expr_equal(const struct cron_expr *a, const struct cron_expr *b)
{
        return a->seconds == b->seconds && a->minutes == b->minutes && a->hours == b->hours &&
               a->days == b->days && a->months == b->months && a->weekdays == b->weekdays &&
               a->flags == b->flags;
}

/* ---- matching and walking --------------------------------------------------------------- */

static bool day_matches(const struct cron_expr *e, int mday, int wday)
{
        bool dom = e->days >> mday & 1, dow = e->weekdays >> wday & 1;
        if (e->flags & (CRON_DOM_STAR | CRON_DOW_STAR))
                return dom && dow;
        return dom || dow;
}

bool cron_matches(const struct cron_expr *e, int year, int month, int day, int hour, int minute,
                  int second)
{
        int wday;
        if (month < 1 || month > 12 || day < 1 || day > 31 || hour < 0 || hour > 23 || minute < 0 ||
            minute > 59 || second < 0 || second > 59)
                return false;
        tz_civil_from_days(tz_days_from_civil(year, month, day), NULL, NULL, NULL, &wday);
        return (e->months >> month & 1) && day_matches(e, day, wday) && (e->hours >> hour & 1) &&
               (e->minutes >> minute & 1) && (e->seconds >> second & 1);
}

/* The lowest set bit at or above `from`, or -1. */
static int next_bit(uint64_t mask, int from)
{
        if (from > 63)
                return -1;
        mask &= ~UINT64_C(0) << from;
        return mask ? __builtin_ctzll(mask) : -1;
}

static int64_t floor_div(int64_t a, int64_t b)
{
        return a / b - (a % b != 0 && ((a < 0) != (b < 0)));
}

typedef int (*local_visit_fn)(int64_t local_s, void *userdata);

/*
 * Every matching local wall-clock second in [l1, l2) (local seconds counted as if UTC), in
 * order: days are skipped a month at a time where the month does not match, and only the set
 * bits of the hours, minutes and seconds are visited.
 */
static int walk_local(const struct cron_expr *e, int64_t l1, int64_t l2, local_visit_fn visit,
                      void *userdata)
{
        for (int64_t day = floor_div(l1, DAY_S); day * DAY_S < l2; day++) {
                int y, m, d, wd;
                tz_civil_from_days(day, &y, &m, &d, &wd);
                if (!(e->months >> m & 1)) {
                        day += tz_days_in_month(y, m) - d; /* to the month's last day */
                        continue;
                }
                if (!day_matches(e, d, wd))
                        continue;
                int64_t base = day * DAY_S;
                int h = next_bit(e->hours, base < l1 ? (int)((l1 - base) / 3600) : 0);
                for (; h >= 0; h = next_bit(e->hours, h + 1)) {
                        int64_t hb = base + (int64_t)h * 3600;
                        if (hb >= l2)
                                return 0;
                        int mi = next_bit(e->minutes, hb < l1 ? (int)((l1 - hb) / 60) : 0);
                        for (; mi >= 0; mi = next_bit(e->minutes, mi + 1)) {
                                int64_t mb = hb + (int64_t)mi * 60;
                                if (mb >= l2)
                                        return 0;
                                int s = next_bit(e->seconds, mb < l1 ? (int)(l1 - mb) : 0);
                                for (; s >= 0; s = next_bit(e->seconds, s + 1)) {
                                        if (mb + s >= l2)
                                                return 0;
                                        int r = visit(mb + s, userdata);
                                        if (r != 0)
                                                return r;
                                }
                        }
                }
        }
        return 0;
}

struct segment_walk {
        cron_slot_fn fn;
        void *userdata;
        int32_t offset;
        int64_t suppress_before; /* fixed-time jobs: instants before it are a repeated pass */
        int64_t already;         /* the gap's slot, emitted already */
};

static int segment_visit(int64_t local_s, void *userdata)
{
        struct segment_walk *w = userdata;
        int64_t t = local_s - w->offset;
        if (t < w->suppress_before || t == w->already)
                return 0;
        return w->fn(t * USEC_PER_SEC, w->userdata);
}

static int first_match(int64_t local_s, void *userdata)
{
        return 1;
}

static int64_t ceil_seconds(int64_t us)
{
        return -floor_div(-us, USEC_PER_SEC);
}

int cron_slots(const struct cron_expr *e, const struct tz_zone *zone, int64_t from_us,
               int64_t to_us, cron_slot_fn fn, void *userdata)
{
        /* Slots are whole seconds: t is in [from_us, to_us) when ceil(from) <= t < ceil(to). */
        int64_t a = CLAMP(ceil_seconds(from_us), SECONDS_MIN, SECONDS_MAX);
        int64_t to = CLAMP(ceil_seconds(to_us), SECONDS_MIN, SECONDS_MAX);
        bool wildcard = e->flags & CRON_HOUR_STAR;

        while (a < to) {
                struct tz_transition next, prev;
                struct segment_walk w = {.fn = fn,
                                         .userdata = userdata,
                                         .offset = tz_offset_at(zone, a),
                                         .suppress_before = INT64_MIN,
                                         .already = INT64_MIN};
                int64_t b = to;
                int r;

                if (tz_next_transition(zone, a, &next) && next.at < to)
                        b = next.at;
                if (!wildcard && tz_prev_transition(zone, a, &prev)) {
                        int32_t shift = prev.offset_after - prev.offset_before;
                        if (shift < 0)
                                /* Clocks went back at prev.at: the local times of
                                 * [prev.at, prev.at - shift) happened once already. */
                                w.suppress_before = prev.at - shift;
                        else if (shift > 0 && prev.at == a &&
                                 walk_local(e, a + prev.offset_before, a + prev.offset_after,
                                            first_match, NULL) != 0) {
                                /* Clocks went forward at a: what the gap skipped runs once,
                                 * right after it. */
                                r = fn(a * USEC_PER_SEC, userdata);
                                if (r != 0)
                                        return r;
                                w.already = a;
                        }
                }
                r = walk_local(e, a + w.offset, b + w.offset, segment_visit, &w);
                if (r != 0)
                        return r;
                a = b;
        }
        return 0;
}

struct next_ctx {
        int64_t found;
};

static int next_found(int64_t slot_us, void *userdata)
{
        struct next_ctx *c = userdata;
        c->found = slot_us;
        return 1;
}

int cron_next(const struct cron_expr *e, const struct tz_zone *zone, int64_t after_us,
              int64_t *ret_us)
{
        struct next_ctx c = {0};
        if (after_us > SECONDS_MAX * USEC_PER_SEC)
                return -ENOENT;
        int64_t from = after_us + 1;
        if (cron_slots(e, zone, from, from + NEXT_HORIZON_S * USEC_PER_SEC, next_found, &c) == 0)
                return -ENOENT;
        *ret_us = c.found;
        return 0;
}
