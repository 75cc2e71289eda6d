/* SPDX-License-Identifier: Apache-2.0 */
/*
 * An in-memory Lease server for the election tests: one record with a resourceVersion
 * compare-and-set, a watch, a log of accepted writes, and per-client fault injection
 * (latency, errors, conflicts, partition, calls that hang past their timeout). Header-only so
 * that each test program includes it; every function is static inline.
 */
#pragma once

#include <errno.h>
#include <pthread.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "core/clock.h"
#include "core/macro.h"
#include "election/elector.h"

#define FAKE_MAX_WRITES 4096

struct fake_write {
        char holder[ELECTION_HOLDER_MAX];
        int64_t applied_mono_us;
        int32_t transitions;
        bool release;
};

struct fake_server {
        pthread_mutex_t lock;
        pthread_cond_t cond;
        bool exists;
        struct election_record rec;
        uint64_t rv;
        int expected_transitions; /* counted independently: holder changes to a non-empty one */
        struct fake_write writes[FAKE_MAX_WRITES];
        size_t n_writes;
        uint64_t conflicts;
};

struct fake_client {
        struct fake_server *s;
        /* Faults, under s->lock. */
        bool partitioned;         /* every call waits out its timeout, then -ETIMEDOUT */
        int64_t hang_us;          /* every call sleeps this long, ignoring its timeout */
        int64_t latency_us;       /* before the server applies the call */
        int64_t reply_latency_us; /* after it applied it */
        int fail_next;            /* the next N calls fail with -EIO */
        int conflict_next;        /* the next N updates fail with -ESTALE */
        bool watch_broken;        /* wait_change fails (-ENOTCONN), at once and while waiting */
        bool woken;
        uint64_t gets, creates, updates, waits;
};

static inline void fake_server_init(struct fake_server *s)
{
        memset(s, 0, sizeof(*s));
        pthread_mutex_init(&s->lock, NULL);
        pthread_condattr_t attr;
        pthread_condattr_init(&attr);
        pthread_condattr_setclock(&attr, CLOCK_MONOTONIC);
        pthread_cond_init(&s->cond, &attr);
        pthread_condattr_destroy(&attr);
}

static inline void fake_server_destroy(struct fake_server *s)
{
        pthread_cond_destroy(&s->cond);
        pthread_mutex_destroy(&s->lock);
}

static inline void fake_client_init(struct fake_client *c, struct fake_server *s)
{
        memset(c, 0, sizeof(*c));
        c->s = s;
}

/* Set the record directly (as another tool, or a previous process, would have). */
static inline void fake_server_put(struct fake_server *s, const struct election_record *rec)
{
        pthread_mutex_lock(&s->lock);
        s->exists = true;
        s->rec = *rec;
        snprintf(s->rec.resource_version, sizeof(s->rec.resource_version), "%llu",
                 (unsigned long long)++s->rv);
        pthread_cond_broadcast(&s->cond);
        pthread_mutex_unlock(&s->lock);
}

static inline bool fake_server_get_record(struct fake_server *s, struct election_record *ret)
{
        pthread_mutex_lock(&s->lock);
        bool exists = s->exists;
        *ret = s->rec;
        pthread_mutex_unlock(&s->lock);
        return exists;
}

/* Wait on the server's condition until `deadline` or a wake-up; false when woken. */
static inline bool fake_sleep_locked(struct fake_client *c, int64_t deadline)
{
        while (!c->woken) {
                int64_t now = clock_mono_us();
                if (now >= deadline)
                        return true;
                int64_t d = MIN(deadline, now + 20 * USEC_PER_MSEC);
                struct timespec ts = {.tv_sec = d / USEC_PER_SEC,
                                      .tv_nsec = (d % USEC_PER_SEC) * 1000};
                pthread_cond_timedwait(&c->s->cond, &c->s->lock, &ts);
        }
        return false;
}

/* Common fault handling before a call. Returns 0 to proceed, else the error to return. */
static inline int fake_enter_locked(struct fake_client *c, int64_t timeout_us)
{
        if (c->hang_us > 0)
                fake_sleep_locked(c, clock_mono_us() + c->hang_us);
        if (c->partitioned) {
                fake_sleep_locked(c, clock_mono_us() + timeout_us);
                return -ETIMEDOUT;
        }
        if (c->fail_next > 0) {
                c->fail_next--;
                return -EIO;
        }
        if (c->latency_us > 0) {
                if (c->latency_us >= timeout_us) {
                        fake_sleep_locked(c, clock_mono_us() + timeout_us);
                        return -ETIMEDOUT;
                }
                fake_sleep_locked(c, clock_mono_us() + c->latency_us);
        }
        return 0;
}

static inline void fake_leave_locked(struct fake_client *c)
{
        if (c->reply_latency_us > 0)
                fake_sleep_locked(c, clock_mono_us() + c->reply_latency_us);
}

static inline void fake_apply_locked(struct fake_server *s, const struct election_record *rec,
                                     bool create)
{
        if (!create && s->exists && rec->holder[0] != '\0' && !streq(rec->holder, s->rec.holder))
                s->expected_transitions++;
        bool release = s->exists && rec->holder[0] == '\0';
        s->exists = true;
        s->rec = *rec;
        snprintf(s->rec.resource_version, sizeof(s->rec.resource_version), "%llu",
                 (unsigned long long)++s->rv);
        if (s->n_writes < FAKE_MAX_WRITES) {
                struct fake_write *w = &s->writes[s->n_writes++];
                strcpy(w->holder, rec->holder);
                w->applied_mono_us = clock_mono_us();
                w->transitions = rec->lease_transitions;
                w->release = release;
        }
        pthread_cond_broadcast(&s->cond);
}

static inline int fake_get(void *userdata, int64_t timeout_us, struct election_record *ret)
{
        struct fake_client *c = userdata;
        struct fake_server *s = c->s;
        int r;

        pthread_mutex_lock(&s->lock);
        c->gets++;
        r = fake_enter_locked(c, timeout_us);
        if (r == 0) {
                if (s->exists)
                        *ret = s->rec;
                else
                        r = -ENOENT;
                fake_leave_locked(c);
        }
        pthread_mutex_unlock(&s->lock);
        return r;
}

static inline int fake_create(void *userdata, const struct election_record *rec, int64_t timeout_us,
                              struct election_record *ret)
{
        struct fake_client *c = userdata;
        struct fake_server *s = c->s;
        int r;

        pthread_mutex_lock(&s->lock);
        c->creates++;
        r = fake_enter_locked(c, timeout_us);
        if (r == 0) {
                if (s->exists) {
                        r = -EEXIST;
                } else {
                        fake_apply_locked(s, rec, true);
                        *ret = s->rec;
                }
                fake_leave_locked(c);
        }
        pthread_mutex_unlock(&s->lock);
        return r;
}

static inline int fake_update(void *userdata, const struct election_record *rec, int64_t timeout_us,
                              struct election_record *ret)
{
        struct fake_client *c = userdata;
        struct fake_server *s = c->s;
        int r;

        pthread_mutex_lock(&s->lock);
        c->updates++;
        r = fake_enter_locked(c, timeout_us);
        if (r == 0) {
                if (c->conflict_next > 0) {
                        c->conflict_next--;
                        r = -ESTALE;
                } else if (!s->exists) {
                        r = -ENOENT;
                } else if (!streq(rec->resource_version, s->rec.resource_version)) {
                        s->conflicts++;
                        r = -ESTALE;
                } else {
                        fake_apply_locked(s, rec, false);
                        *ret = s->rec;
                }
                fake_leave_locked(c);
        }
        pthread_mutex_unlock(&s->lock);
        return r;
}

static inline int fake_wait_change(void *userdata, const char *rv, int64_t timeout_us,
                                   struct election_record *ret)
{
        struct fake_client *c = userdata;
        struct fake_server *s = c->s;
        int64_t deadline = clock_mono_us() + timeout_us;
        int r;

        pthread_mutex_lock(&s->lock);
        c->waits++;
        for (;;) {
                if (c->woken) {
                        r = -EINTR;
                        break;
                }
                if (c->watch_broken) {
                        r = -ENOTCONN;
                        break;
                }
                if (c->partitioned) {
                        r = fake_sleep_locked(c, deadline) ? -ETIMEDOUT : -EINTR;
                        break;
                }
                const char *cur = s->exists ? s->rec.resource_version : "";
                if (!streq(cur, rv)) {
                        if (s->exists) {
                                *ret = s->rec;
                                r = 0;
                        } else {
                                r = -ENOENT;
                        }
                        break;
                }
                if (clock_mono_us() >= deadline) {
                        r = -ETIMEDOUT;
                        break;
                }
                /* One wait: every write broadcasts, so a change is seen at once. */
                int64_t d = MIN(deadline, clock_mono_us() + 20 * USEC_PER_MSEC);
                struct timespec ts = {.tv_sec = d / USEC_PER_SEC,
                                      .tv_nsec = (d % USEC_PER_SEC) * 1000};
                pthread_cond_timedwait(&s->cond, &s->lock, &ts);
        }
        pthread_mutex_unlock(&s->lock);
        return r;
}

static inline void fake_wake(void *userdata)
{
        struct fake_client *c = userdata;
        pthread_mutex_lock(&c->s->lock);
        c->woken = true;
        pthread_cond_broadcast(&c->s->cond);
        pthread_mutex_unlock(&c->s->lock);
}

static inline struct election_lease_ops fake_ops(struct fake_client *c, bool watch)
{
        struct election_lease_ops ops = {
            .get = fake_get,
            .create = fake_create,
            .update = fake_update,
            .wait_change = watch ? fake_wait_change : NULL,
            .wake = watch ? fake_wake : NULL,
            .userdata = c,
        };
        return ops;
}

/* Change a client's faults under the server lock. */
#define FAKE_SET(c, field, value)                                                                  \
        do {                                                                                       \
                pthread_mutex_lock(&(c)->s->lock);                                                 \
                (c)->field = (value);                                                              \
                pthread_cond_broadcast(&(c)->s->cond);                                             \
                pthread_mutex_unlock(&(c)->s->lock);                                               \
        } while (0)
