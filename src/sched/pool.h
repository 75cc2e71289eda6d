/* SPDX-License-Identifier: Apache-2.0 */
/*
 * Disk pools and their executors. Every piece of work that makes an instance save (persist-now,
 * manual "run now", scheduled slots, the nightly pass, and saves adopted from a previous
 * leader) goes through the queue of the instance's pool. Each pool has exactly `limit`
 * executor threads, so at most `limit` saves run in a pool at any moment, by construction.
 *
 * An executor takes, among the jobs that are due, the one with the best priority (adopt,
 * persist, manual, scheduled, nightly), then the earliest due time, then the first submitted.
 * A job of lower priority is not started in the pool's last free place when its estimate says it
 * would still be running when a more urgent job falls due ("backfill" only where it fits), unless
 * it has waited longer than the starvation bound.
 *
 * Jobs carry the leadership generation they were submitted under; when leadership is lost the
 * pool set is cleared (queued jobs are cancelled) and jobs of an old generation are never
 * started.
 */
#pragma once

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "core/macro.h"

/* Lower value = more urgent. The order is the product's contract (SPEC 6). */
enum sched_priority {
        SCHED_PRIO_ADOPT,     /* a save started by a previous leader, still running */
        SCHED_PRIO_PERSIST,   /* persist-now */
        SCHED_PRIO_MANUAL,    /* "run now" of a task */
        SCHED_PRIO_SCHEDULED, /* a cron slot */
        SCHED_PRIO_NIGHTLY,   /* the nightly pass */
        SCHED_PRIO_COUNT,
};

const char *sched_priority_to_string(enum sched_priority p);

/* Why a job was cancelled instead of run. */
enum sched_cancel_reason {
        SCHED_CANCEL_LEADERSHIP, /* leadership lost, or the job's generation is stale */
        SCHED_CANCEL_SHUTDOWN,   /* the pool set is being freed */
        SCHED_CANCEL_WITHDRAWN,  /* its owner withdrew it (sched_pools_withdraw) */
};

struct sched_job;

/*
 * run(): called on an executor thread with a place in the pool held; may block for as long as
 * the save takes (the driver bounds it). cancel(): called instead of run() when the job will
 * never run; on whichever thread cancels it. Exactly one of the two is called, once; either
 * may free the job (the pool does not touch it afterwards).
 */
typedef void (*sched_job_run_fn)(struct sched_job *job);
typedef void (*sched_job_cancel_fn)(struct sched_job *job, enum sched_cancel_reason reason);

struct sched_job {
        /* Set by the submitter. */
        enum sched_priority priority;
        int64_t due_us;      /* schedule clock (clock_wall_us); not started before; 0 = now */
        int64_t estimate_us; /* expected duration, for backfill decisions; 0 = unknown */
        uint64_t owner_key;  /* free for the owner (e.g. to withdraw its jobs); 0 = none */
        sched_job_run_fn run;
        sched_job_cancel_fn cancel;
        void *userdata;

        /* Set by the pool. */
        uint64_t generation;    /* leadership generation at submission */
        uint64_t seq;           /* submission order */
        int64_t submitted_mono; /* clock_mono_us at submission */
        int64_t started_wall;   /* clock_wall_us when an executor took it */
        struct sched_job *next; /* queue link */
};

struct sched_pools;

/* Limits come from this function, so configuration stays the single source. */
typedef int (*sched_pool_limit_fn)(const char *pool, void *userdata);

/*
 * A pool set with no pools yet; pools are created on first use. `starvation_us` bounds how long
 * a lower-priority job may be held back by backfill. NULL on OOM. Caller frees with
 * sched_pools_free(), which cancels queued jobs (SCHED_CANCEL_SHUTDOWN) and joins executors
 * after their current job returns.
 */
struct sched_pools *sched_pools_new(sched_pool_limit_fn limit_fn, void *limit_userdata,
                                    int64_t starvation_us);
void sched_pools_free(struct sched_pools *ps);

/*
 * Leadership. sched_pools_set_generation() starts accepting jobs under `generation` (non-zero);
 * sched_pools_clear() stops accepting them, cancels every queued job with
 * SCHED_CANCEL_LEADERSHIP and returns at once (running jobs finish on their own; they check
 * leadership themselves before sending anything). Any thread.
 */
void sched_pools_set_generation(struct sched_pools *ps, uint64_t generation);
void sched_pools_clear(struct sched_pools *ps);

/* The generation jobs are accepted under; 0 when not leading. Any thread. */
uint64_t sched_pools_generation(struct sched_pools *ps);

/*
 * Queue `job` (taken) in `pool` (borrowed). Returns 0; -EAGAIN when not leading (the job is not
 * taken: the caller still owns it and nothing was called); -ENOMEM. Any thread.
 */
int sched_pools_submit(struct sched_pools *ps, const char *pool, struct sched_job *job);

/*
 * Cancel (SCHED_CANCEL_WITHDRAWN) every queued, not yet started job of `pool` whose owner_key
 * is `owner_key` and whose due time is at or after `not_before_us` (INT64_MIN: all of them).
 * Returns how many. Any thread.
 */
size_t sched_pools_withdraw(struct sched_pools *ps, const char *pool, uint64_t owner_key,
                            int64_t not_before_us);

/* Wake executors to re-evaluate due times, e.g. after the schedule clock was shifted in tests. */
void sched_pools_kick(struct sched_pools *ps);

struct sched_pool_stats {
        char name[64];
        int limit;
        int running;
        int queued;
        int queued_by_priority[SCHED_PRIO_COUNT];
        uint64_t started_total;
        int max_running_seen; /* high-water mark, for tests and the limit metric */
};

/*
 * Snapshot of every pool (caller frees *ret). Returns the count, or -ENOMEM. Any thread.
 */
int sched_pools_stats(struct sched_pools *ps, struct sched_pool_stats **ret);

DEFINE_TRIVIAL_CLEANUP_FUNC(struct sched_pools *, sched_pools_free);
