/* SPDX-License-Identifier: Apache-2.0 */
/*
 * The elector: one thread that competes for the Lease (followers whose watch works rely on it:
 * they act at once when it reports a change such as a release, and read the Lease only at the
 * instant the observed holder's lease expires; without a working watch they also poll every
 * jittered retry period), renews it while leading, and steps down when a renewal has not succeeded
 * within the renew deadline, before any other replica may consider the lease expired. It then
 * keeps competing. A second thread only waits for watch events. Leadership is published as a
 * generation number that any thread may read; it turns 0 at the renew deadline by the clock
 * alone, even while the elector thread is stuck in a call. See docs/election.md.
 */
#pragma once

#include <stdbool.h>
#include <stdint.h>

#include "core/macro.h"
#include "election/election.h"

/*
 * How the elector reads and writes the Lease; the Kubernetes client provides it (tests use an
 * in-memory fake). Every call gets `timeout_us` (> 0) and must return within about that long.
 * Return values: 0, the documented errnos, or any other negative errno for a transient failure
 * (network, 5xx, 429, 401/403, a malformed answer), after which the elector simply retries.
 * get/create/update are called from the elector thread only, one at a time; wait_change from
 * the elector's watch thread, concurrently with them; wake from any thread.
 */
struct election_lease_ops {
        /* Read the Lease into *ret (its resourceVersion included). 0, or -ENOENT when missing. */
        int (*get)(void *userdata, int64_t timeout_us, struct election_record *ret);
        /*
         * Create the Lease with `rec`'s spec (its resource_version is ""). On 0, *ret is the
         * stored object (with its resourceVersion). -EEXIST when it exists already.
         */
        int (*create)(void *userdata, const struct election_record *rec, int64_t timeout_us,
                      struct election_record *ret);
        /*
         * Replace the Lease spec with `rec`'s, only if its resourceVersion still is
         * rec->resource_version (a PUT carrying metadata.resourceVersion). On 0, *ret is the
         * stored object. -ESTALE on a conflict (409), -ENOENT when the Lease is gone.
         */
        int (*update)(void *userdata, const struct election_record *rec, int64_t timeout_us,
                      struct election_record *ret);
        /*
         * Optional (NULL: no watch; followers then poll only). Block until the Lease changes
         * after `resource_version` ("" = it did not exist then: wait for its creation), at
         * most `timeout_us`. 0 and *ret = the Lease after the change; -ENOENT when it was
         * deleted; -ETIMEDOUT when nothing happened (the watch is up but quiet); -EINTR after
         * wake(); another negative errno (e.g. -ENOTCONN) when it cannot watch now, promptly
         * (an expired resourceVersion may simply be reported as 0 with a fresh get's answer,
         * or as an error). After 0, -ENOENT or -ETIMEDOUT the follower trusts the watch and
         * stops polling; after a failure it polls every retry period until the watch answers.
         */
        int (*wait_change)(void *userdata, const char *resource_version, int64_t timeout_us,
                           struct election_record *ret);
        /*
         * Optional: make a wait_change() in progress, and every later one, return soon
         * (-EINTR); called once, by elector_stop(). Without it, elector_stop() waits for a
         * watch in progress to time out (at most 30 s). Any thread.
         */
        void (*wake)(void *userdata);
        void *userdata;
};

/*
 * Callbacks, all called on the elector thread: they must return quickly (hand long work to
 * another thread), must not call elector_stop()/elector_free(), and may call the elector's
 * readers. `generation` counts this process's terms, from 1.
 */
struct elector_callbacks {
        void (*on_started_leading)(void *userdata, uint64_t generation);
        void (*on_stopped_leading)(void *userdata, uint64_t generation);
        /* The holder seen changed: `identity` is borrowed for the call; "" = nobody. */
        void (*on_new_leader)(void *userdata, const char *identity);
        void *userdata;
};

struct elector_options {
        const char *identity; /* borrowed, copied: see election_identity_new() */
        int32_t lease_duration_s;
        int64_t renew_deadline_us;
        int64_t retry_period_us;
        /* Jitter seed; 0 = election_seed_new(). For tests that need a fixed sequence. */
        uint64_t jitter_seed;
        /* Injectable wall clock for renewTime/acquireTime; NULL = CLOCK_REALTIME. */
        int64_t (*wall_clock_us)(void);
};

struct elector;

/*
 * Validate `opts` (identity non-empty and shorter than ELECTION_HOLDER_MAX - 1; timings as
 * election_timings_validate(); get, create and update set) and build an elector that does not
 * run yet. `ops` and `cb` are copied; their userdata must outlive the elector. Returns 0 and
 * *ret (caller frees with elector_free()), -EINVAL, or -ENOMEM.
 */
int elector_new(const struct elector_options *opts, const struct election_lease_ops *ops,
                const struct elector_callbacks *cb, struct elector **ret);

/*
 * Start the threads; the first attempt is made at once. Returns 0, -EALREADY if started
 * before, or a negative errno from pthread_create. Any thread but the elector's.
 */
int elector_start(struct elector *e);

/*
 * Stop competing and join the threads (waits for a Lease call in progress, which its timeout
 * bounds). If leading, publishes "not leading" and calls on_stopped_leading first. The Lease is
 * not released (see elector_release()). Idempotent. Not from a callback.
 */
void elector_stop(struct elector *e);

/* Stop (as elector_stop()) and free. NULL is a no-op. */
void elector_free(struct elector *e);
DEFINE_TRIVIAL_CLEANUP_FUNC(struct elector *, elector_free);

/*
 * Graceful hand-over, for SIGTERM once the daemon has stopped taking new work: stop leading
 * (on_stopped_leading), then write the Lease with holder "" and leaseDurationSeconds 1,
 * transitions kept (client-go's ReleaseOnCancel), so a watching follower takes over at once.
 * After this the elector no longer competes. Waits up to `timeout_us` for the elector thread.
 * Returns 0 when released or when the Lease was not ours, -ETIMEDOUT, -ESRCH when the elector
 * is not running, or the last error of the update. Any thread but the elector's.
 */
int elector_release(struct elector *e, int64_t timeout_us);

/*
 * Step down now without releasing the Lease, e.g. when a fenced write showed that another
 * replica holds the epoch: the elector thread calls on_stopped_leading at its next turn (after
 * a Lease call in progress), then competes again from one retry period later. No-op when not
 * leading. Any thread, and from the callbacks.
 */
void elector_step_down(struct elector *e);

/*
 * Whether this replica may act as leader now: it holds the Lease and its last successful
 * renewal was sent less than the renew deadline ago (monotonic clock). Any thread.
 */
bool elector_is_leader(struct elector *e);

/* The current term's generation while elector_is_leader() holds, else 0. Any thread. */
uint64_t elector_leader_generation(struct elector *e);

/*
 * For /healthz: true when the elector believes it leads (it has not yet stepped down) but its
 * last successful renewal is older than the lease duration at `now_mono_us`, i.e. the elector
 * thread is stuck. Any thread.
 */
bool elector_is_wedged(struct elector *e, int64_t now_mono_us);

struct elector_status {
        char identity[ELECTION_HOLDER_MAX];
        char holder[ELECTION_HOLDER_MAX]; /* the holder last seen, "" = none or unknown */
        bool leading;                     /* as elector_is_leader() */
        uint64_t generation;              /* of the current or last term; 0 = never led */
        int64_t last_renew_mono_us;       /* send time of the last successful write; 0 = none */
        int32_t lease_transitions;        /* as last seen */
        uint64_t terms;                   /* terms started by this process */
        int last_error;                   /* of the last failed Lease call, 0 = none yet */
};

/* A snapshot of the state, for the status API and logs. Any thread. */
void elector_get_status(struct elector *e, struct elector_status *ret);

/* The jitter seed in use (tests check that electors differ). Any thread. */
uint64_t elector_jitter_seed(struct elector *e);

/* The identity (borrowed, lives as long as the elector). Any thread. */
const char *elector_identity(struct elector *e);
