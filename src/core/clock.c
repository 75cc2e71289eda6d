/* SPDX-License-Identifier: Apache-2.0 */
/* Monotonic and (shiftable) schedule clocks, RFC 3339 parsing and formatting. */
#include <ctype.h>
#include <errno.h>
#include <stdio.h>
#include <string.h>
#include <time.h>

#include "core/clock.h"
#include "core/macro.h"

/* Offset added to CLOCK_REALTIME by the schedule clock; written once before threads start. */
static int64_t wall_offset_us;
static bool wall_shifted;

static int64_t timespec_us(const struct timespec *ts)
{
        return (int64_t)ts->tv_sec * USEC_PER_SEC + ts->tv_nsec / 1000;
}

int64_t clock_mono_us(void)
{
        struct timespec ts;
        clock_gettime(CLOCK_MONOTONIC, &ts);
        return timespec_us(&ts);
}

int64_t clock_mono_ms(void)
{
        return clock_mono_us() / USEC_PER_MSEC;
}

static int64_t realtime_us(void)
{
        struct timespec ts;
        clock_gettime(CLOCK_REALTIME, &ts);
        return timespec_us(&ts);
}

int64_t clock_wall_us(void)
{
        return realtime_us() + __atomic_load_n(&wall_offset_us, __ATOMIC_RELAXED);
}

int64_t clock_wall_from_real_us(int64_t real_us)
{
        return real_us + __atomic_load_n(&wall_offset_us, __ATOMIC_RELAXED);
}

void clock_wall_start_at(int64_t epoch_us)
{
        __atomic_store_n(&wall_offset_us, epoch_us - realtime_us(), __ATOMIC_RELAXED);
        wall_shifted = true;
}

bool clock_wall_is_shifted(void)
{
        return wall_shifted;
}

static int parse_digits(const char **p, int n, int *ret)
{
        int v = 0;
        for (int i = 0; i < n; i++) {
                if (!isdigit((unsigned char)(*p)[i]))
                        return -EINVAL;
                v = v * 10 + ((*p)[i] - '0');
        }
        *p += n;
        *ret = v;
        return 0;
}

static int expect(const char **p, char c)
{
        if (**p != c)
                return -EINVAL;
        (*p)++;
        return 0;
}

int clock_parse_rfc3339(const char *s, bool lenient, int64_t *ret_us)
{
        const char *p = s;
        int year, mon, day, hour, min, sec, frac_us = 0, off_min = 0;
        struct tm tm = {0};

        if (parse_digits(&p, 4, &year) < 0 || expect(&p, '-') < 0 ||
            parse_digits(&p, 2, &mon) < 0 || expect(&p, '-') < 0 || parse_digits(&p, 2, &day) < 0)
                return -EINVAL;
        if (*p == 'T' || (lenient && (*p == ' ' || *p == 't')))
                p++;
        else
                return -EINVAL;
        if (parse_digits(&p, 2, &hour) < 0 || expect(&p, ':') < 0 ||
            parse_digits(&p, 2, &min) < 0 || expect(&p, ':') < 0 || parse_digits(&p, 2, &sec) < 0)
                return -EINVAL;
        if (*p == '.') {
                int digits = 0;
                p++;
                while (isdigit((unsigned char)*p)) {
                        if (digits < 6)
                                frac_us = frac_us * 10 + (*p - '0');
                        digits++;
                        p++;
                }
                if (digits == 0 || digits > 9)
                        return -EINVAL;
                for (int d = digits; d < 6; d++)
                        frac_us *= 10;
        }
        if (*p == 'Z' || (lenient && *p == 'z')) {
                p++;
        } else if (*p == '+' || *p == '-') {
                int sign = *p == '-' ? -1 : 1, oh, om;
                p++;
                if (parse_digits(&p, 2, &oh) < 0 || expect(&p, ':') < 0 ||
                    parse_digits(&p, 2, &om) < 0 || oh > 23 || om > 59)
                        return -EINVAL;
                off_min = sign * (oh * 60 + om);
        } else {
                return -EINVAL;
        }
        if (*p != '\0')
                return -EINVAL;
        if (mon < 1 || mon > 12 || day < 1 || day > 31 || hour > 23 || min > 59 || sec > 60)
                return -EINVAL;

        tm.tm_year = year - 1900;
        tm.tm_mon = mon - 1;
        tm.tm_mday = day;
        tm.tm_hour = hour;
        tm.tm_min = min;
        tm.tm_sec = sec;
        time_t t = timegm(&tm);
        /* timegm normalises 31 February into March: refuse dates that do not exist. */
        struct tm check;
        if (!gmtime_r(&t, &check) || check.tm_mday != day || check.tm_mon != mon - 1)
                return -EINVAL;

        *ret_us = ((int64_t)t - (int64_t)off_min * 60) * USEC_PER_SEC + frac_us;
        return 0;
}

char *clock_format_rfc3339(int64_t us, int frac_digits, char buf[static CLOCK_RFC3339_MAX])
{
        int64_t secs = us / USEC_PER_SEC, frac = us % USEC_PER_SEC;
        if (frac < 0) {
                frac += USEC_PER_SEC;
                secs--;
        }
        time_t t = (time_t)secs;
        struct tm tm = {0};
        /* Cannot fail: any int64 of microseconds is within 300 000 years of 1970. */
        (void)gmtime_r(&t, &tm);
        size_t n = strftime(buf, CLOCK_RFC3339_MAX, "%Y-%m-%dT%H:%M:%S", &tm);
        if (frac_digits == 6)
                snprintf(buf + n, CLOCK_RFC3339_MAX - n, ".%06lldZ", (long long)frac);
        else if (frac_digits == 3)
                snprintf(buf + n, CLOCK_RFC3339_MAX - n, ".%03lldZ", (long long)(frac / 1000));
        else
                snprintf(buf + n, CLOCK_RFC3339_MAX - n, "Z");
        return buf;
}

void clock_sleep_us(int64_t us)
{
        struct timespec ts = {.tv_sec = us / USEC_PER_SEC, .tv_nsec = (us % USEC_PER_SEC) * 1000};
        if (us <= 0)
                return;
        while (nanosleep(&ts, &ts) < 0 && errno == EINTR)
                ;
}

int clock_cond_init(pthread_cond_t *cond)
{
        pthread_condattr_t attr;
        int r = pthread_condattr_init(&attr);

        if (r != 0)
                return -r;
        r = pthread_condattr_setclock(&attr, CLOCK_MONOTONIC);
        if (r == 0)
                r = pthread_cond_init(cond, &attr);
        pthread_condattr_destroy(&attr);
        return -r;
}

int clock_cond_wait_until(pthread_cond_t *cond, pthread_mutex_t *lock, int64_t deadline_mono_us)
{
        int64_t d = MAX(deadline_mono_us, 0);
        struct timespec ts = {.tv_sec = (time_t)(d / USEC_PER_SEC),
                              .tv_nsec = (long)(d % USEC_PER_SEC) * 1000};
        return pthread_cond_timedwait(cond, lock, &ts);
}

int clock_cond_wait_us(pthread_cond_t *cond, pthread_mutex_t *lock, int64_t us)
{
        int64_t now = clock_mono_us();
        return clock_cond_wait_until(cond, lock, us > INT64_MAX - now ? INT64_MAX : now + us);
}
