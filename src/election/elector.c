/* SPDX-License-Identifier: Apache-2.0 */
/*
 * The elector thread (acquire, renew, step down, release) and its watch thread. One mutex
 * guards the state shared with readers and with the watch thread; no Lease call and no
 * callback runs with it held. Fields marked "elector thread" are written only there (under
 * the lock when others read them), so that thread reads them without the lock.
 */
#include <errno.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "core/clock.h"
#include "core/log.h"
#include "election/elector.h"

#define LOG_MODULE "election"

/* How long one wait_change() may block; wake() cuts it short on stop. */
#define WATCH_TIMEOUT_US (30 * USEC_PER_SEC)
/* Lost races (409 on update, 409 on create) are retried at once this many times in a row. */
#define MAX_IMMEDIATE_RETRIES 3

struct elector {
        /* Immutable after elector_new(). */
        char identity[ELECTION_HOLDER_MAX];
        int32_t lease_duration_s;
        int64_t renew_deadline_us;
        int64_t retry_period_us;
        uint64_t seed;
        int64_t (*wall_clock_us)(void);
        struct election_lease_ops ops;
        struct elector_callbacks cb;

        pthread_mutex_t lock;
        pthread_cond_t cond;       /* wakes the elector thread */
        pthread_cond_t watch_cond; /* wakes the watch thread */
        pthread_cond_t done_cond;  /* release finished, threads stopped */

        /* Under the lock. */
        bool started, stopping, joined;
        bool leading;                    /* elector thread: believes it leads */
        uint64_t generation;             /* elector thread: of the current or last term */
        int64_t valid_until_mono_us;     /* elector thread: last renewal sent + renew deadline */
        int64_t last_renew_mono_us;      /* elector thread: send time of the last good write */
        struct election_observation obs; /* elector thread */
        uint64_t obs_seq;                /* elector thread: +1 per answer observed */
        int last_error;
        /* Watch hand-over. */
        bool watch_pending;
        bool watch_missing;
        /*
         * The last wait_change() answered normally (a change, or nothing before its timeout):
         * followers then rely on the watch and read only at the holder's expiry instant.
         * False until then and after a failed wait_change(): followers poll every retry period.
         */
        bool watch_ok;
        bool watch_failed;  /* watch_ok just turned false: the elector reschedules its poll */
        uint64_t watch_seq; /* obs_seq the watch started from */
        struct election_record watch_record;
        bool resign_requested; /* elector_step_down() */
        /* Release. */
        bool release_requested, release_done, released;
        int64_t release_deadline_mono_us;
        int release_result;

        /* Elector thread only. */
        struct election_jitter jitter;
        int64_t next_attempt_mono_us;
        int immediate_retries;
        char reported_leader[ELECTION_HOLDER_MAX];

        pthread_t thread, watch_thread;
};

static int64_t realtime_us(void)
{
        struct timespec ts;
        clock_gettime(CLOCK_REALTIME, &ts);
        return (int64_t)ts.tv_sec * USEC_PER_SEC + ts.tv_nsec / 1000;
}

static void cond_wait_until(pthread_cond_t *c, pthread_mutex_t *m, int64_t deadline_mono_us)
{
        /* Never sleep unboundedly: a late wake-up only costs a loop turn. */
        int64_t cap = clock_mono_us() + 10 * USEC_PER_SEC;
        (void)clock_cond_wait_until(c, m, MIN(deadline_mono_us, cap));
}

int elector_new(const struct elector_options *opts, const struct election_lease_ops *ops,
                const struct elector_callbacks *cb, struct elector **ret)
{
        if (!opts || !ops || !ret || strempty(opts->identity) ||
            strlen(opts->identity) >= ELECTION_HOLDER_MAX - 1)
                return -EINVAL;
        if (election_timings_validate(opts->lease_duration_s, opts->renew_deadline_us,
                                      opts->retry_period_us) < 0)
                return -EINVAL;
        if (!ops->get || !ops->create || !ops->update)
                return -EINVAL;

        struct elector *e = calloc(1, sizeof(*e));
        if (!e)
                return -ENOMEM;
        strcpy(e->identity, opts->identity);
        e->lease_duration_s = opts->lease_duration_s;
        e->renew_deadline_us = opts->renew_deadline_us;
        e->retry_period_us = opts->retry_period_us;
        e->seed = opts->jitter_seed ? opts->jitter_seed : election_seed_new();
        e->wall_clock_us = opts->wall_clock_us ? opts->wall_clock_us : realtime_us;
        e->ops = *ops;
        if (cb)
                e->cb = *cb;
        election_jitter_init(&e->jitter, e->seed);

        pthread_mutex_init(&e->lock, NULL);
        if (clock_cond_init(&e->cond) < 0 || clock_cond_init(&e->watch_cond) < 0 ||
            clock_cond_init(&e->done_cond) < 0) {
                /* pthread_cond_init with a valid attribute only fails for lack of memory. */
                free(e);
                return -ENOMEM;
        }
        *ret = e;
        return 0;
}

/* ---- observation and reporting (elector thread) ---------------------------------------- */

static void set_error(struct elector *e, int r)
{
        pthread_mutex_lock(&e->lock);
        e->last_error = r;
        pthread_mutex_unlock(&e->lock);
}

/* Feed an answer to the observation; tell on_new_leader when the holder changed. */
static void observe(struct elector *e, const struct election_record *rec)
{
        pthread_mutex_lock(&e->lock);
        election_observe(&e->obs, rec, clock_mono_us());
        e->obs_seq++;
        pthread_cond_broadcast(&e->watch_cond);
        pthread_mutex_unlock(&e->lock);

        const char *holder = e->obs.exists ? e->obs.record.holder : "";
        if (!streq(holder, e->reported_leader)) {
                strcpy(e->reported_leader, holder);
                log_debug("Lease holder is now \"%s\"", holder);
                if (e->cb.on_new_leader)
                        e->cb.on_new_leader(e->cb.userdata, holder);
        }
}

static bool holds_record(const struct elector *e)
{
        return e->obs.exists && streq(e->obs.record.holder, e->identity);
}

/* Publish the end of a term and tell on_stopped_leading. Called with the lock held. */
static void step_down_locked(struct elector *e, bool orderly, const char *why)
{
        if (!e->leading)
                return;
        uint64_t gen = e->generation;
        e->leading = false;
        int err = e->last_error;
        pthread_cond_broadcast(&e->watch_cond);
        pthread_mutex_unlock(&e->lock);

        if (orderly)
                log_info("Stopped leading (term %llu): %s", (unsigned long long)gen, why);
        else if (err < 0)
                log_warn("Stopped leading (term %llu): %s; last Lease error: %s",
                         (unsigned long long)gen, why, strerror(-err));
        else
                log_warn("Stopped leading (term %llu): %s", (unsigned long long)gen, why);
        if (e->cb.on_stopped_leading)
                e->cb.on_stopped_leading(e->cb.userdata, gen);

        pthread_mutex_lock(&e->lock);
}

static void step_down(struct elector *e, const char *why)
{
        pthread_mutex_lock(&e->lock);
        step_down_locked(e, false, why);
        pthread_mutex_unlock(&e->lock);
}

/* A write sent at `t_send` succeeded: our term is valid until t_send + renew deadline. */
static void wrote_ok(struct elector *e, int64_t t_send)
{
        bool started = false;
        uint64_t gen = 0;

        pthread_mutex_lock(&e->lock);
        e->last_renew_mono_us = t_send;
        e->valid_until_mono_us = t_send + e->renew_deadline_us;
        e->next_attempt_mono_us = t_send + e->retry_period_us;
        e->last_error = 0;
        /* A write that took longer than the deadline starts no term; the next one renews. */
        if (!e->leading && clock_mono_us() < e->valid_until_mono_us) {
                e->leading = true;
                gen = ++e->generation;
                started = true;
                /* The watch pauses while we lead: trust it again once it answers. */
                e->watch_ok = false;
                pthread_cond_broadcast(&e->watch_cond);
        }
        pthread_mutex_unlock(&e->lock);

        e->immediate_retries = 0;
        if (started) {
                log_info("Started leading (term %llu) as \"%s\", lease transitions %d",
                         (unsigned long long)gen, e->identity,
                         (int)e->obs.record.lease_transitions);
                if (e->cb.on_started_leading)
                        e->cb.on_started_leading(e->cb.userdata, gen);
        }
}

static int64_t call_timeout(const struct elector *e)
{
        /* A follower's calls have no safety deadline; bound them like a leader's. */
        return e->renew_deadline_us;
}

/* After a lost race, read again at once a few times, then back to the jittered period. */
static void retry_soon(struct elector *e)
{
        int64_t now = clock_mono_us();
        if (++e->immediate_retries <= MAX_IMMEDIATE_RETRIES) {
                e->next_attempt_mono_us = now;
        } else {
                e->immediate_retries = 0;
                e->next_attempt_mono_us =
                    now + election_jitter_next(&e->jitter, e->retry_period_us);
        }
}

static int write_record(struct elector *e, enum election_action action,
                        const struct election_record *rec, int64_t timeout_us,
                        struct election_record *stored)
{
        memset(stored, 0, sizeof(*stored));
        if (action == ELECTION_CREATE)
                return e->ops.create(e->ops.userdata, rec, timeout_us, stored);
        return e->ops.update(e->ops.userdata, rec, timeout_us, stored);
}

/* ---- follower -------------------------------------------------------------------------- */

/*
 * Decide on the current observation and write if the Lease is ours to take. `from_watch`: the
 * observation came from the watch, so the periodic poll keeps its schedule.
 */
static void decide_and_write(struct elector *e, bool from_watch)
{
        struct election_decision d;
        int64_t now = clock_mono_us();

        election_decide(&e->obs, e->identity, e->lease_duration_s, now, e->wall_clock_us(), &d);
        if (d.action == ELECTION_WAIT) {
                pthread_mutex_lock(&e->lock);
                bool watch_ok = e->watch_ok;
                pthread_mutex_unlock(&e->lock);
                int64_t next;
                if (watch_ok)
                        /* The watch tells of every renewal and release: no poll needed. */
                        next = d.expires_mono_us;
                else if (from_watch)
                        next = e->next_attempt_mono_us;
                else
                        next = now + election_jitter_next(&e->jitter, e->retry_period_us);
                /* Be there the moment the holder's lease expires. */
                e->next_attempt_mono_us = MIN(next, d.expires_mono_us);
                e->immediate_retries = 0;
                return;
        }

        struct election_record stored;
        int64_t t_send = clock_mono_us();
        int r = write_record(e, d.action, &d.write, call_timeout(e), &stored);
        if (r == 0) {
                observe(e, &stored);
                wrote_ok(e, t_send);
                return;
        }
        set_error(e, r);
        if (r == -EEXIST || r == -ESTALE || r == -ENOENT) {
                log_debug("Lost the race to %s the Lease: %s", election_action_to_string(d.action),
                          strerror(-r));
                retry_soon(e);
                return;
        }
        log_debug("Failed to %s the Lease: %s", election_action_to_string(d.action), strerror(-r));
        e->next_attempt_mono_us =
            clock_mono_us() + election_jitter_next(&e->jitter, e->retry_period_us);
}

static void try_acquire(struct elector *e)
{
        struct election_record rec;
        int r = e->ops.get(e->ops.userdata, call_timeout(e), &rec);
        if (r < 0 && r != -ENOENT) {
                set_error(e, r);
                log_debug("Failed to read the Lease: %s", strerror(-r));
                e->next_attempt_mono_us =
                    clock_mono_us() + election_jitter_next(&e->jitter, e->retry_period_us);
                return;
        }
        observe(e, r == -ENOENT ? NULL : &rec);
        decide_and_write(e, false);
}

/* ---- leader ---------------------------------------------------------------------------- */

static void renew_failed(struct elector *e, int r)
{
        set_error(e, r);
        log_debug("Failed to renew the Lease: %s", strerror(-r));
        /* Retry sooner than the period: the deadline allows only a few more attempts. */
        e->next_attempt_mono_us = clock_mono_us() + MAX(e->retry_period_us / 2, 10 * USEC_PER_MSEC);
}

static void try_renew(struct elector *e)
{
        struct election_decision d;
        struct election_record rec, stored;
        int64_t deadline = e->valid_until_mono_us, t_send;
        int r;

        /*
         * Fast path: the record we last wrote is still ours; a compare-and-set on its
         * resourceVersion renews without reading first (it fails if anyone wrote since).
         */
        if (holds_record(e)) {
                election_decide(&e->obs, e->identity, e->lease_duration_s, clock_mono_us(),
                                e->wall_clock_us(), &d);
                t_send = clock_mono_us();
                if (t_send >= deadline)
                        return;
                r = write_record(e, ELECTION_RENEW, &d.write, deadline - t_send, &stored);
                if (r == 0) {
                        observe(e, &stored);
                        wrote_ok(e, t_send);
                        return;
                }
                if (r != -ESTALE && r != -ENOENT) {
                        renew_failed(e, r);
                        return;
                }
        }

        /* Someone wrote since (or we never held a fresh copy): read, then decide. */
        int64_t now = clock_mono_us();
        if (now >= deadline)
                return;
        r = e->ops.get(e->ops.userdata, deadline - now, &rec);
        if (r < 0 && r != -ENOENT) {
                renew_failed(e, r);
                return;
        }
        observe(e, r == -ENOENT ? NULL : &rec);
        election_decide(&e->obs, e->identity, e->lease_duration_s, clock_mono_us(),
                        e->wall_clock_us(), &d);
        if (d.action != ELECTION_RENEW) {
                char why[ELECTION_HOLDER_MAX + 64];
                if (!e->obs.exists)
                        snprintf(why, sizeof(why), "the Lease was deleted");
                else
                        snprintf(why, sizeof(why), "the Lease is now held by \"%s\"",
                                 e->obs.record.holder);
                step_down(e, why);
                e->next_attempt_mono_us = clock_mono_us();
                return;
        }
        t_send = clock_mono_us();
        if (t_send >= deadline)
                return;
        r = write_record(e, ELECTION_RENEW, &d.write, deadline - t_send, &stored);
        if (r == 0) {
                observe(e, &stored);
                wrote_ok(e, t_send);
                return;
        }
        if (r == -ESTALE) {
                set_error(e, r);
                e->next_attempt_mono_us = clock_mono_us();
                return;
        }
        renew_failed(e, r);
}

/* ---- release --------------------------------------------------------------------------- */

/*
 * Write the release: a compare-and-set from the record we hold (read first when we have no
 * current copy, or after a conflict). Transient failures are retried until `deadline`.
 */
static int release_lease(struct elector *e, int64_t deadline)
{
        bool need_read = !holds_record(e);
        int r = -ETIMEDOUT;

        for (int attempt = 0; attempt < 10; attempt++) {
                int64_t now = clock_mono_us();
                if (now >= deadline)
                        break;
                if (attempt > 0 && r != -ESTALE) {
                        /* A transient failure: pause a little, within the deadline. */
                        clock_sleep_us(MIN(100 * USEC_PER_MSEC, deadline - now));
                        now = clock_mono_us();
                        if (now >= deadline)
                                break;
                }
                if (need_read) {
                        struct election_record rec;
                        r = e->ops.get(e->ops.userdata, deadline - now, &rec);
                        if (r == -ENOENT)
                                return 0;
                        if (r < 0)
                                continue;
                        observe(e, &rec);
                        if (!holds_record(e))
                                return 0; /* not ours: nothing to release */
                        need_read = false;
                }

                struct election_record rel = e->obs.record, stored;
                int64_t wall = e->wall_clock_us();
                rel.holder[0] = '\0';
                rel.lease_duration_s = 1;
                rel.acquire_time_us = wall;
                rel.renew_time_us = wall;
                now = clock_mono_us();
                if (now >= deadline)
                        break;
                r = write_record(e, ELECTION_TAKEOVER, &rel, deadline - now, &stored);
                if (r == 0) {
                        observe(e, &stored);
                        return 0;
                }
                if (r == -ENOENT)
                        return 0;
                if (r == -ESTALE)
                        need_read = true;
        }
        return r;
}

/* Called with the lock held; returns with it held. */
static void do_release_locked(struct elector *e)
{
        int64_t deadline = e->release_deadline_mono_us;

        step_down_locked(e, true, "releasing the Lease");
        e->released = true;
        pthread_cond_broadcast(&e->watch_cond);
        pthread_mutex_unlock(&e->lock);

        int r = release_lease(e, deadline);
        if (r < 0)
                log_warn("Failed to release the Lease: %s", strerror(-r));
        else
                log_info("Released the Lease");

        pthread_mutex_lock(&e->lock);
        e->release_result = r;
        e->release_done = true;
        if (r < 0)
                e->last_error = r;
        pthread_cond_broadcast(&e->done_cond);
}

/* ---- threads --------------------------------------------------------------------------- */

static void *elector_thread(void *userdata)
{
        struct elector *e = userdata;

        pthread_mutex_lock(&e->lock);
        e->next_attempt_mono_us = clock_mono_us();
        while (!e->stopping) {
                int64_t now = clock_mono_us();

                if (e->leading && now >= e->valid_until_mono_us) {
                        step_down_locked(e, false,
                                         "no successful renewal within the renew deadline");
                        /* Keep competing: the Lease may still name us, or be free. */
                        e->next_attempt_mono_us = clock_mono_us();
                        continue;
                }
                if (e->resign_requested) {
                        e->resign_requested = false;
                        step_down_locked(e, false, "deposed: another replica holds the epoch");
                        /* Let the current holder's renewal be seen before trying again. */
                        e->next_attempt_mono_us = clock_mono_us() + e->retry_period_us;
                        continue;
                }
                if (e->release_requested && !e->release_done) {
                        do_release_locked(e);
                        continue;
                }
                if (e->released) {
                        cond_wait_until(&e->cond, &e->lock, INT64_MAX);
                        continue;
                }
                if (e->watch_failed) {
                        /* The watch broke: poll from one jittered retry period on. */
                        e->watch_failed = false;
                        if (!e->leading)
                                e->next_attempt_mono_us =
                                    MIN(e->next_attempt_mono_us,
                                        now + election_jitter_next(&e->jitter, e->retry_period_us));
                        continue;
                }
                if (e->watch_pending && !e->leading) {
                        bool current = e->watch_seq == e->obs_seq;
                        bool missing = e->watch_missing;
                        struct election_record rec = e->watch_record;
                        e->watch_pending = false;
                        pthread_mutex_unlock(&e->lock);
                        /* Drop an event older than what a read since has shown. */
                        if (current) {
                                observe(e, missing ? NULL : &rec);
                                decide_and_write(e, true);
                        }
                        pthread_mutex_lock(&e->lock);
                        pthread_cond_broadcast(&e->watch_cond);
                        continue;
                }
                if (now >= e->next_attempt_mono_us) {
                        bool leading = e->leading;
                        pthread_mutex_unlock(&e->lock);
                        if (leading)
                                try_renew(e);
                        else
                                try_acquire(e);
                        pthread_mutex_lock(&e->lock);
                        continue;
                }
                int64_t wake = e->next_attempt_mono_us;
                if (e->leading)
                        wake = MIN(wake, e->valid_until_mono_us);
                cond_wait_until(&e->cond, &e->lock, wake);
        }
        step_down_locked(e, true, "stopping");
        pthread_mutex_unlock(&e->lock);
        return NULL;
}

static bool watch_wanted_locked(const struct elector *e)
{
        return !e->leading && !e->released && e->obs.known && !e->watch_pending;
}

static void *watch_thread(void *userdata)
{
        struct elector *e = userdata;

        pthread_mutex_lock(&e->lock);
        while (!e->stopping) {
                if (!watch_wanted_locked(e)) {
                        cond_wait_until(&e->watch_cond, &e->lock,
                                        clock_mono_us() + e->retry_period_us);
                        continue;
                }
                char rv[ELECTION_RV_MAX];
                strcpy(rv, e->obs.exists ? e->obs.record.resource_version : "");
                uint64_t seq = e->obs_seq;
                pthread_mutex_unlock(&e->lock);

                struct election_record rec;
                memset(&rec, 0, sizeof(rec));
                int r = e->ops.wait_change(e->ops.userdata, rv, WATCH_TIMEOUT_US, &rec);

                pthread_mutex_lock(&e->lock);
                if (e->stopping)
                        break;
                if (r == 0 || r == -ENOENT || r == -ETIMEDOUT) {
                        e->watch_ok = true;
                } else if (r != -EINTR && e->watch_ok) {
                        e->watch_ok = false;
                        e->watch_failed = true;
                        pthread_cond_broadcast(&e->cond);
                }
                if ((r == 0 && streq(rec.resource_version, rv)) || (r == -ENOENT && !rv[0])) {
                        /* Not a change at all: an adapter bug; do not spin on it. */
                        cond_wait_until(&e->watch_cond, &e->lock,
                                        clock_mono_us() + e->retry_period_us);
                } else if (r == 0 || r == -ENOENT) {
                        if (seq == e->obs_seq && !e->leading && !e->released) {
                                e->watch_record = rec;
                                e->watch_missing = r == -ENOENT;
                                e->watch_seq = seq;
                                e->watch_pending = true;
                                pthread_cond_broadcast(&e->cond);
                        }
                        /* Watch again from what the elector observes next, not from `rv`. */
                        int64_t until = clock_mono_us() + e->retry_period_us;
                        while (!e->stopping && e->obs_seq == seq && clock_mono_us() < until)
                                cond_wait_until(&e->watch_cond, &e->lock, until);
                } else if (r != -ETIMEDOUT && r != -EINTR) {
                        log_debug("Watching the Lease failed: %s", strerror(-r));
                        cond_wait_until(&e->watch_cond, &e->lock,
                                        clock_mono_us() + e->retry_period_us);
                }
        }
        pthread_mutex_unlock(&e->lock);
        return NULL;
}

int elector_start(struct elector *e)
{
        int r;

        pthread_mutex_lock(&e->lock);
        if (e->started) {
                pthread_mutex_unlock(&e->lock);
                return -EALREADY;
        }
        e->started = true;
        pthread_mutex_unlock(&e->lock);

        r = pthread_create(&e->thread, NULL, elector_thread, e);
        if (r != 0)
                goto fail;
        if (e->ops.wait_change) {
                r = pthread_create(&e->watch_thread, NULL, watch_thread, e);
                if (r != 0) {
                        pthread_mutex_lock(&e->lock);
                        e->stopping = true;
                        pthread_cond_broadcast(&e->cond);
                        pthread_mutex_unlock(&e->lock);
                        pthread_join(e->thread, NULL);
                        goto fail;
                }
        }
        return 0;
fail:
        pthread_mutex_lock(&e->lock);
        e->started = false;
        e->stopping = false;
        pthread_mutex_unlock(&e->lock);
        return -r;
}

void elector_stop(struct elector *e)
{
        pthread_mutex_lock(&e->lock);
        if (!e->started || e->joined) {
                pthread_mutex_unlock(&e->lock);
                return;
        }
        e->stopping = true;
        e->joined = true;
        pthread_cond_broadcast(&e->cond);
        pthread_cond_broadcast(&e->watch_cond);
        pthread_cond_broadcast(&e->done_cond);
        pthread_mutex_unlock(&e->lock);

        if (e->ops.wake)
                e->ops.wake(e->ops.userdata);
        pthread_join(e->thread, NULL);
        if (e->ops.wait_change)
                pthread_join(e->watch_thread, NULL);
}

void elector_free(struct elector *e)
{
        if (!e)
                return;
        elector_stop(e);
        pthread_cond_destroy(&e->cond);
        pthread_cond_destroy(&e->watch_cond);
        pthread_cond_destroy(&e->done_cond);
        pthread_mutex_destroy(&e->lock);
        free(e);
}

void elector_step_down(struct elector *e)
{
        pthread_mutex_lock(&e->lock);
        if (e->leading) {
                e->resign_requested = true;
                pthread_cond_broadcast(&e->cond);
        }
        pthread_mutex_unlock(&e->lock);
}

int elector_release(struct elector *e, int64_t timeout_us)
{
        int r;

        pthread_mutex_lock(&e->lock);
        if (!e->started || e->stopping) {
                pthread_mutex_unlock(&e->lock);
                return -ESRCH;
        }
        int64_t deadline = clock_mono_us() + MAX(timeout_us, 0);
        if (!e->release_requested) {
                e->release_requested = true;
                e->release_deadline_mono_us = deadline;
                pthread_cond_broadcast(&e->cond);
        }
        while (!e->release_done && !e->stopping && clock_mono_us() < deadline)
                cond_wait_until(&e->done_cond, &e->lock, deadline);
        r = e->release_done ? e->release_result : e->stopping ? -ESRCH : -ETIMEDOUT;
        pthread_mutex_unlock(&e->lock);
        return r;
}

/* ---- readers --------------------------------------------------------------------------- */

static bool is_leader_locked(const struct elector *e, int64_t now)
{
        return e->leading && now < e->valid_until_mono_us;
}

bool elector_is_leader(struct elector *e)
{
        pthread_mutex_lock(&e->lock);
        bool r = is_leader_locked(e, clock_mono_us());
        pthread_mutex_unlock(&e->lock);
        return r;
}

uint64_t elector_leader_generation(struct elector *e)
{
        pthread_mutex_lock(&e->lock);
        uint64_t g = is_leader_locked(e, clock_mono_us()) ? e->generation : 0;
        pthread_mutex_unlock(&e->lock);
        return g;
}

bool elector_is_wedged(struct elector *e, int64_t now_mono_us)
{
        pthread_mutex_lock(&e->lock);
        bool r = e->leading &&
                 now_mono_us - e->last_renew_mono_us > (int64_t)e->lease_duration_s * USEC_PER_SEC;
        pthread_mutex_unlock(&e->lock);
        return r;
}

void elector_get_status(struct elector *e, struct elector_status *ret)
{
        memset(ret, 0, sizeof(*ret));
        strcpy(ret->identity, e->identity);
        pthread_mutex_lock(&e->lock);
        if (e->obs.exists)
                strcpy(ret->holder, e->obs.record.holder);
        ret->leading = is_leader_locked(e, clock_mono_us());
        ret->generation = e->generation;
        ret->terms = e->generation;
        ret->last_renew_mono_us = e->last_renew_mono_us;
        ret->lease_transitions = e->obs.record.lease_transitions;
        ret->last_error = e->last_error;
        pthread_mutex_unlock(&e->lock);
}

uint64_t elector_jitter_seed(struct elector *e)
{
        return e->seed;
}

const char *elector_identity(struct elector *e)
{
        return e->identity;
}
