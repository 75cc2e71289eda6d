/* SPDX-License-Identifier: Apache-2.0 */
/*
 * Time. Two clocks with different jobs:
 *  - the monotonic clock measures durations and lease expiry; it never jumps;
 *  - the schedule clock is wall time (UTC microseconds since the epoch) used for cron
 *    schedules, the nightly start and timestamps written to PostgreSQL. Tests may start it at
 *    a chosen instant (clock_wall_start_at()); from there it advances in real time.
 * Modules whose decisions depend on time take "now" as a parameter, so unit tests drive them
 * with any clock they like.
 */
#pragma once

#include <pthread.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#define USEC_PER_SEC  INT64_C(1000000)
#define USEC_PER_MSEC INT64_C(1000)
#define MSEC_PER_SEC  INT64_C(1000)

/* Monotonic time in microseconds / milliseconds (CLOCK_MONOTONIC). Any thread. */
int64_t clock_mono_us(void);
int64_t clock_mono_ms(void);

/* Schedule clock: UTC microseconds since the epoch, possibly started at a fake instant.
 * Any thread. */
int64_t clock_wall_us(void);

/*
 * Start the schedule clock at `epoch_us` (it reads that value now and advances in real time).
 * Call once at start-up, before threads read the clock.
 */
void clock_wall_start_at(int64_t epoch_us);
bool clock_wall_is_shifted(void);

/* The schedule clock's reading of `real_us`, an instant of the real (unshifted) wall clock such
 * as a time another server reports (Redis's lastsave). Any thread. */
int64_t clock_wall_from_real_us(int64_t real_us);

/*
 * Parse an RFC 3339 instant: "2026-11-21T23:59:50Z", with optional fraction (any number of
 * digits up to 9) and a "Z" or "±hh:mm" offset; a space is accepted for "T" only when
 * `lenient` is true. Returns 0 and writes *ret_us, or -EINVAL.
 */
int clock_parse_rfc3339(const char *s, bool lenient, int64_t *ret_us);

/*
 * Format `us` as UTC RFC 3339 with exactly `frac_digits` (0, 3 or 6) fractional digits and
 * "Z". With 6 digits this is Kubernetes' MicroTime. Returns `buf`.
 */
#define CLOCK_RFC3339_MAX 40
char *clock_format_rfc3339(int64_t us, int frac_digits, char buf[static CLOCK_RFC3339_MAX]);

/* Sleep for `us` microseconds, resuming after signals. */
void clock_sleep_us(int64_t us);

/*
 * Condition variables timed on the monotonic clock, so that a change of the wall clock never
 * shortens or stretches a wait. clock_cond_init(): initialise `cond` for the waits below;
 * 0 or a negative errno (out of memory). clock_cond_wait_until(): pthread_cond_timedwait()
 * until the monotonic instant `deadline_mono_us` (µs, as clock_mono_us()); clock_cond_wait_us():
 * for `us` from now. Both return 0 (woken, possibly spuriously) or ETIMEDOUT, with `lock` held
 * again, and must be called with `lock` held.
 */
int clock_cond_init(pthread_cond_t *cond);
int clock_cond_wait_until(pthread_cond_t *cond, pthread_mutex_t *lock, int64_t deadline_mono_us);
int clock_cond_wait_us(pthread_cond_t *cond, pthread_mutex_t *lock, int64_t us);
