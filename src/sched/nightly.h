/* SPDX-License-Identifier: Apache-2.0 */
/*
 * The nightly pass (SPEC 7): at the configured start the leader saves every enabled instance once,
 * pool by pool, through the pools' queues at nightly priority, with its progress kept in a Redis
 * set so that a new leader resumes an interrupted pass. The state machine, the feeding rule and
 * the failover argument are in docs/nightly.md.
 *
 * Everything the pass talks to (PostgreSQL, the progress Redis, the instances) is reached through
 * `struct nightly_ops`, so the module is wired by the daemon and tested with fakes.
 */
#pragma once

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "core/macro.h"
#include "sched/pool.h"

#define NIGHTLY_ID_MAX         255 /* longest instance id accepted */
#define NIGHTLY_DATE_MAX       16  /* "YYYY-MM-DD" and its NUL, with room */
#define NIGHTLY_ERROR_MAX      256
#define NIGHTLY_LAST_ERROR_MAX (NIGHTLY_ID_MAX + NIGHTLY_ERROR_MAX + 8) /* "id: reason" */

/* ---- data handed across the ops ----------------------------------------------------------- */

/* One instance, as the ops report it. Strings are borrowed for the call only (copied). */
struct nightly_instance {
        const char *id;          /* 1..NIGHTLY_ID_MAX bytes */
        const char *pool;        /* 1..63 bytes; ignored in id-only lists */
        uint64_t used_memory;    /* bytes, 0 unknown */
        int64_t estimate_us;     /* expected save duration, 0 unknown */
        int64_t last_success_us; /* schedule clock: end of its last successful save, 0 never */
};

/* A list the ops fill with nightly_list_add(); owned by the nightly module. */
struct nightly_list;

/*
 * Append a copy of `inst` (borrowed) to `list`. Returns 0, -EINVAL for an empty or too long id
 * or pool (pool is only checked when non-NULL), -ENOMEM. Called from inside an op.
 */
int nightly_list_add(struct nightly_list *list, const struct nightly_instance *inst);

/* Append just an id (members of the progress set, instances with a run in flight). */
int nightly_list_add_id(struct nightly_list *list, const char *id);

struct nightly_totals {
        int total;   /* instances in the pass */
        int done;    /* saved */
        int failed;  /* failed for good after the configured attempts */
        int skipped; /* saved recently enough (skip_if_saved_within), or no longer enabled */
};

/* A pass record as stored in PostgreSQL (`passes`). */
struct nightly_pass_record {
        int64_t id;
        int64_t started_us; /* schedule clock */
        bool finished;
        bool paused; /* an operator paused it; a resuming leader keeps it paused */
        struct nightly_totals totals;
};

struct nightly_job;

/* What one save (or adoption) is about. Valid for the duration of the call. */
struct nightly_save_request {
        const char *instance_id;
        const char *pool;
        const char *date; /* the pass's date, "YYYY-MM-DD" */
        int64_t pass_id;
        int attempt; /* 1 for the first attempt */
        int64_t estimate_us;
        uint64_t used_memory;
        uint64_t generation;     /* the leadership generation the job was queued under */
        struct nightly_job *job; /* for nightly_save_is_cancelled() */
};

struct nightly_save_result {
        bool ok;
        char error[NIGHTLY_ERROR_MAX]; /* why it failed, when !ok */
};

/*
 * True once the save should give up waiting: leadership was lost, or the pass is being torn down.
 * The BGSAVE itself may go on on the instance; the next leader adopts it. Pausing the pass does
 * not cancel a running save. Any thread.
 */
bool nightly_save_is_cancelled(const struct nightly_save_request *req);

/* The local date and time of an instant in the schedule time zone. */
struct nightly_local_time {
        char date[NIGHTLY_DATE_MAX]; /* "YYYY-MM-DD" */
        int second_of_day;           /* 0..86399 (a leap second reads as 86399) */
};

/* Return 0 and fill *ret, or a negative errno. Must be thread-safe. */
typedef int (*nightly_local_time_fn)(int64_t utc_us, struct nightly_local_time *ret,
                                     void *userdata);

/* The default: UTC. */
int nightly_local_time_utc(int64_t utc_us, struct nightly_local_time *ret, void *userdata);

/* The schedule clock (UTC microseconds). */
typedef int64_t (*nightly_now_fn)(void *userdata);

/*
 * What the pass needs from the rest of persistd. Every op is called on the nightly thread, except
 * save() and adopt() which run on a pool executor thread (with a place in the pool held); none is
 * called with the nightly lock held, so an op may call nightly_status() but must not call
 * nightly_free(). Unless said otherwise an op returns 0, -ESTALE when the write matched no row
 * because this replica was deposed (the pass stops at once and deposed() is called), or another
 * negative errno when the store could not be reached (retried after store_retry_us).
 * `userdata` is passed to every op.
 */
struct nightly_ops {
        /* PostgreSQL: every enabled instance, with pool, memory, estimate and last success. */
        int (*list_instances)(void *userdata, struct nightly_list *out);

        /*
         * Optional: the estimate of one instance from its learned rates (SPEC 5), in us; called
         * once per instance when a pass is built. <= 0 keeps the listed estimate_us.
         */
        int64_t (*estimate)(void *userdata, const struct nightly_instance *inst);

        /* PostgreSQL `passes`: create (writes *ret_id), find the latest of a date (-ENOENT when
         * there is none), update totals and pause state, finish. */
        int (*pass_create)(void *userdata, const char *date, int64_t started_us,
                           const struct nightly_totals *totals, int64_t *ret_id);
        int (*pass_lookup)(void *userdata, const char *date, struct nightly_pass_record *ret);
        int (*pass_update)(void *userdata, int64_t pass_id, bool paused,
                           const struct nightly_totals *totals);
        int (*pass_finish)(void *userdata, int64_t pass_id, const struct nightly_totals *totals);

        /*
         * The progress Redis, on the set named `key` (`<prefix>:pass:<date>:pending`). Any negative
         * return means "the progress Redis is unreachable": the pass waits and retries.
         *  exists: 1 present, 0 absent.
         *  create: replace the set by exactly `ids[0..n)` (n >= 1) expiring after `ttl_s`,
         * atomically. remove: remove one member (0 also when it was not there). members: every
         * member, via nightly_list_add_id(). count: the number of members (>= 0).
         */
        int (*progress_exists)(void *userdata, const char *key);
        int (*progress_create)(void *userdata, const char *key, const char *const *ids, size_t n,
                               int64_t ttl_s);
        int (*progress_remove)(void *userdata, const char *key, const char *id);
        int (*progress_members)(void *userdata, const char *key, struct nightly_list *out);
        int (*progress_count)(void *userdata, const char *key);

        /*
         * One save attempt of one instance, blocking, on an executor thread: claim its run row
         * (kind nightly) before sending anything, check leadership, drive the save to completion
         * (bounded by the driver's timeout), record the run with its outcome. Returns 0 with
         * res->ok and res->error filled (a failed save counts as an attempt); -ECANCELED when it
         * gave up because nightly_save_is_cancelled(); -ESTALE when deposed; -EAGAIN when nothing
         * was attempted and nothing reached the instance (e.g. PostgreSQL unreachable: retried
         * after the backoff without counting an attempt); any other negative errno counts as a
         * failed attempt.
         */
        int (*save)(void *userdata, const struct nightly_save_request *req,
                    struct nightly_save_result *res);

        /*
         * Optional, for resuming: the ids of the instances whose nightly run of pass `pass_id` was
         * left claimed or running by an earlier leader (via nightly_list_add_id()).
         */
        int (*list_in_flight)(void *userdata, int64_t pass_id, struct nightly_list *out);

        /*
         * Reconcile such a run (SPEC 3) on an executor thread at adopt priority: if the instance is
         * still saving, wait for that save; if the save happened, finish the run as succeeded; if
         * nothing reached the instance, take the run over. Returns 0 with res filled (the adopted
         * save's outcome, counting as attempt 1); -ENOENT when nothing reached the instance (the
         * pass then saves it normally); -ECANCELED, -ESTALE as for save(); any other negative
         * errno counts as a failed attempt. Required when list_in_flight is set.
         */
        int (*adopt)(void *userdata, const struct nightly_save_request *req,
                     struct nightly_save_result *res);

        /*
         * Optional, on the nightly thread: the pass's ETA passed the end of its window (once per
         * pass): the daemon raises a Warning event and sets the overrun metric.
         */
        void (*overrun)(void *userdata, const char *date, int64_t eta_us, int64_t window_end_us);

        /* Optional, on the nightly thread: a store answered -ESTALE; the replica should step down.
         */
        void (*deposed)(void *userdata);

        void *userdata;
};

/* ---- options ------------------------------------------------------------------------------ */

struct nightly_options {
        bool enabled;                    /* start a pass at start_minute every day */
        int start_minute;                /* minutes after local midnight (0..1439) */
        int64_t window_us;               /* the pass should end within start + window */
        int max_attempts;                /* >= 1 */
        int64_t retry_backoff_us;        /* wait before the 2nd attempt; doubled for each next */
        int64_t skip_if_saved_within_us; /* 0: save every instance */
        const char *key_prefix; /* progress keys are <prefix>:pass:<date>:pending; copied */
        int64_t set_ttl_s;      /* expiry of the progress set */
        uint64_t owner_key;     /* the pool owner_key of its saves; adoptions use owner_key + 1 */
        int64_t tick_us;        /* how often the thread looks at the clock */
        int64_t store_retry_us; /* how often an unreachable store is tried again */
        sched_pool_limit_fn limit_fn; /* the same limits as the pools'; NULL: 1 */
        void *limit_userdata;
        /* now() and local_time() are called with the module's lock held: they must not call
         * into this module. */
        nightly_now_fn now; /* schedule clock; NULL: clock_wall_us() */
        void *now_userdata;
        nightly_local_time_fn local_time; /* schedule time zone; NULL: UTC */
        void *local_time_userdata;
};

/* The defaults of SPEC 10 (00:00, 6 h window, 3 attempts, 30 s backoff, no skip, "persistd"). */
void nightly_options_init(struct nightly_options *o);

/* ---- the pass ----------------------------------------------------------------------------- */

enum nightly_state {
        NIGHTLY_IDLE,             /* no pass (not leading, or waiting for the start) */
        NIGHTLY_STARTING,         /* building, resuming or recording a pass */
        NIGHTLY_RUNNING,          /* saving */
        NIGHTLY_PAUSED,           /* an operator paused it: running saves end, none starts */
        NIGHTLY_WAITING_PROGRESS, /* the progress Redis is unreachable: paused until it returns */
        NIGHTLY_FINISHING,        /* every instance is settled; recording the end */
        NIGHTLY_DONE,             /* the last pass finished */
};

const char *nightly_state_to_string(enum nightly_state s);

struct nightly;

/*
 * A nightly pass runner submitting to `pools` (borrowed; it must stay alive until nightly_stop()
 * has returned). `ops` and `opt` are copied (opt->key_prefix too). NULL on OOM or invalid options
 * (max_attempts < 1, start_minute out of range, owner_key 0, non-positive window, tick, retry or
 * TTL, a required op missing). Caller frees with nightly_free().
 */
struct nightly *nightly_new(struct sched_pools *pools, const struct nightly_ops *ops,
                            const struct nightly_options *opt);

/*
 * Stop for good: join the thread, stop leading (queued saves withdrawn, running ones flagged
 * cancelled). The pools may be freed after it (sched_pools_free() waits for the running saves).
 * Idempotent. Not from an op or a job.
 */
void nightly_stop(struct nightly *n);

/*
 * nightly_stop(), then wait for the running saves to return (they were flagged cancelled), then
 * free. NULL is a no-op. Not from an op or a job.
 */
void nightly_free(struct nightly *n);
DEFINE_TRIVIAL_CLEANUP_FUNC(struct nightly *, nightly_free);

/* Start the nightly thread. Returns 0, -EALREADY, -ESHUTDOWN after nightly_stop(), or a negative
 * errno from pthread_create. Any thread. */
int nightly_start(struct nightly *n);

/*
 * Leadership. nightly_start_leading(): from now on act under `generation` (the pools' generation):
 * look for the pending set of today's and yesterday's pass and resume it, else start the day's
 * pass at the start minute (or at once, if this replica took over later within the window and the
 * day's pass never started). nightly_stop_leading(): stop at once: no new save, queued ones
 * withdrawn, running ones flagged cancelled (their results are dropped; the next leader
 * reconciles them). Both return at once (the I/O happens on the nightly thread). Any thread.
 */
void nightly_start_leading(struct nightly *n, uint64_t generation);
void nightly_stop_leading(struct nightly *n);

/*
 * Wait until the look for an interrupted pass that follows nightly_start_leading() is over —
 * the saves an earlier leader left running are then queued as adoptions — or leadership ended,
 * or `timeout_us` passed. The fleet starts the scheduler after it, so that no new save reaches
 * an instance before its adoption is judged (a later save would be taken for the adopted one).
 * Returns 0, or -ETIMEDOUT (the progress Redis or PostgreSQL is slow or down: the look goes on
 * and its adoptions are queued when it ends). Any thread but the nightly's own.
 */
int nightly_wait_resume_checked(struct nightly *n, int64_t timeout_us);

/*
 * Operator actions. pause: running saves end, no new one starts (-ENOENT without a pass in
 * progress). resume: continue a paused pass (-ENOENT without one). start_now: start a pass for
 * today's date now (-EBUSY when one is in progress, or while the look for an interrupted pass
 * that follows nightly_start_leading() is not over). All return -EAGAIN when not leading. Any
 * thread.
 */
int nightly_pause(struct nightly *n);
int nightly_resume(struct nightly *n);
int nightly_start_now(struct nightly *n);

struct nightly_pool_status {
        char name[64];
        int limit;
        int pending; /* not yet settled, incl. running and waiting for a retry */
        int n_current;
        char **current; /* the instances being saved now */
};

struct nightly_status {
        enum nightly_state state;
        bool leading;
        char date[NIGHTLY_DATE_MAX]; /* "" when there was no pass */
        int64_t pass_id;
        struct nightly_totals totals;
        int pending;           /* total - done - failed - skipped */
        int64_t started_us;    /* 0 when no pass */
        int64_t finished_us;   /* when the pass was recorded finished; 0 before */
        int64_t eta_us;        /* expected end from the estimates; 0 when no pass in progress */
        int64_t window_end_us; /* started_us + window */
        bool overrun;          /* eta_us > window_end_us */
        char last_error[NIGHTLY_LAST_ERROR_MAX]; /* the last failure, "instance: reason" */
        size_t n_pools;
        struct nightly_pool_status *pools;
};

/* A snapshot. Returns 0 and *ret (free with nightly_status_free()), or -ENOMEM. Any thread. */
int nightly_status(struct nightly *n, struct nightly_status **ret);
void nightly_status_free(struct nightly_status *s);
DEFINE_TRIVIAL_CLEANUP_FUNC(struct nightly_status *, nightly_status_free);

/* The progress key of `date`: "<prefix>:pass:<date>:pending". Returns `buf`, "" if too long. */
char *nightly_pending_key(const char *prefix, const char *date, char *buf, size_t size);
