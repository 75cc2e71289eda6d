/* SPDX-License-Identifier: Apache-2.0 */
/*
 * The pure part of leader election: the Lease record as plain data, change detection, and the
 * decision client-go's tryAcquireOrRenew makes (create, renew, take over, or wait), with no I/O
 * and no clock reads. Also the timing rules, the replica identity and the jitter generator.
 */
#pragma once

#include <stdbool.h>
#include <stdint.h>

/*
 * Longest holder identity kept in a record, terminating NUL included. An identity made by
 * election_identity_new() is always shorter than ELECTION_HOLDER_MAX - 1, so a foreign holder
 * that an adapter truncated with election_record_set_holder() can never equal ours.
 */
#define ELECTION_HOLDER_MAX 320
/* Longest resourceVersion, NUL included (etcd revisions are at most 20 digits). */
#define ELECTION_RV_MAX 64

/*
 * The election record of a coordination.k8s.io/v1 Lease (its spec) and the object's
 * metadata.resourceVersion. Plain data: copy it with `=`.
 */
struct election_record {
        char holder[ELECTION_HOLDER_MAX]; /* holderIdentity; "" = none (released) */
        int32_t lease_duration_s;         /* leaseDurationSeconds; 0 = unset */
        int64_t acquire_time_us;          /* acquireTime, wall µs since the epoch; 0 = unset */
        int64_t renew_time_us;            /* renewTime, wall µs since the epoch; 0 = unset */
        int32_t lease_transitions;        /* leaseTransitions; 0 = unset */
        char resource_version[ELECTION_RV_MAX]; /* opaque; "" = not stored yet */
};

/*
 * Copy `holder` (borrowed) into rec->holder, truncated to ELECTION_HOLDER_MAX - 1 bytes if
 * longer (a truncated holder is never equal to one of our identities). For adapters.
 */
void election_record_set_holder(struct election_record *rec, const char *holder);

/*
 * Copy `rv` into rec->resource_version. Returns 0, or -EOVERFLOW when it does not fit (the
 * adapter then reports the answer as a transient failure: a cut version would never compare).
 */
int election_record_set_resource_version(struct election_record *rec, const char *rv);

/* True when the spec fields (not the resourceVersion) of `a` and `b` are equal. */
bool election_record_same(const struct election_record *a, const struct election_record *b);

/*
 * What this replica last saw of the Lease and when, on its own monotonic clock, that changed.
 * Zero-initialise it; feed every answer (get, create, update, watch) to election_observe().
 */
struct election_observation {
        bool known;  /* at least one answer seen */
        bool exists; /* the Lease exists */
        struct election_record record;
        int64_t changed_mono_us; /* when the record last changed, as seen here */
};

/*
 * Record an answer: `rec` (borrowed) is the Lease as read, or NULL when it does not exist.
 * When the record differs from the last one (spec fields or existence; a resourceVersion
 * alone, e.g. an annotation changed by someone, is not a change, as in client-go), or nothing
 * was known yet, changed_mono_us becomes `now_mono_us`. The resourceVersion is always taken.
 * Returns true when it counted as a change.
 */
bool election_observe(struct election_observation *obs, const struct election_record *rec,
                      int64_t now_mono_us);

enum election_action {
        ELECTION_CREATE,   /* no Lease: create it with us as holder, 0 transitions */
        ELECTION_RENEW,    /* we hold it: new renewTime; acquireTime and transitions kept */
        ELECTION_TAKEOVER, /* released or expired: us as holder, transitions + 1, new acquireTime */
        ELECTION_WAIT,     /* held by another replica and not expired */
};

const char *election_action_to_string(enum election_action a);

struct election_decision {
        enum election_action action;
        /*
         * CREATE/RENEW/TAKEOVER: the record to write; its resource_version is the one the update
         * must compare against ("" for CREATE).
         */
        struct election_record write;
        /* WAIT: when the holder's lease expires on this replica's monotonic clock. */
        int64_t expires_mono_us;
};

/*
 * The decision of one acquire-or-renew attempt, like client-go's tryAcquireOrRenew:
 *  - no Lease: CREATE;
 *  - the holder is `identity`: RENEW (whether or not this replica currently acts as leader);
 *  - the holder is "": TAKEOVER at once (a released Lease is free);
 *  - another holder, and now_mono_us < changed_mono_us + its leaseDurationSeconds: WAIT;
 *    a held record without a duration counts with `lease_duration_s` (client-go would take it
 *    at once);
 *  - otherwise: TAKEOVER.
 * Expiry is judged only on the monotonic clock from when this replica saw the record change,
 * never from renewTime, so clock skew between replicas cannot make two leaders. Written times
 * are `now_wall_us`; a renewal's renewTime is always past the previous one, so a renewal is a
 * change for every observer even if the wall clock stands still or steps back.
 * `obs` must be known. `identity` is borrowed. Writes *ret. Pure; any thread.
 */
void election_decide(const struct election_observation *obs, const char *identity,
                     int32_t lease_duration_s, int64_t now_mono_us, int64_t now_wall_us,
                     struct election_decision *ret);

/*
 * The timing rule of SPEC 1 and client-go: lease > renew deadline > 1.2 × retry > 0, with the
 * lease in whole seconds (the record holds seconds). Returns 0 or -EINVAL.
 */
#define ELECTION_JITTER_FACTOR 1.2
int election_timings_validate(int32_t lease_duration_s, int64_t renew_deadline_us,
                              int64_t retry_period_us);

/*
 * A per-process random 64-bit value: getrandom(2), mixed with the pid, the time and a
 * counter, so two calls (two electors) never return the same seed. Any thread.
 */
uint64_t election_seed_new(void);

/* A small PRNG (splitmix64) for retry jitter. Plain data; one per elector. */
struct election_jitter {
        uint64_t state;
};

void election_jitter_init(struct election_jitter *j, uint64_t seed);

/*
 * The next jittered period, as client-go's wait.Jitter(period, 1.2): uniform in
 * [period, period × 2.2). Returns `period_us` unchanged when it is <= 0.
 */
int64_t election_jitter_next(struct election_jitter *j, int64_t period_us);

/*
 * The identity of this process: "<pod_name>_<16 hex digits chosen now>", so a restarted
 * container never takes the previous process's Lease for its own. `pod_name` (borrowed) must be
 * non-empty and at most 253 bytes. Returns 0 and *ret (caller frees), -EINVAL, or -ENOMEM.
 */
int election_identity_new(const char *pod_name, char **ret);
