/* SPDX-License-Identifier: Apache-2.0 */
/*
 * The fleet: the layer that makes the leader act. It ties the store (tasks, instances, the run
 * ledger, passes), the progress Redis, the instance driver, the pools, the persist-now
 * coalescer, the scheduler and the nightly pass together: everything between "this replica
 * leads with generation G" and the saves recorded in PostgreSQL. docs/fleet.md has the run
 * life, the reconciliation table, the leadership sequence and the threads.
 *
 * Threads: every function may be called from any thread unless said otherwise; the fleet has
 * one mutex for its registry and its leadership state, never held across a store call, a
 * driver call or a call into the scheduler or the nightly pass. fleet_free() and
 * fleet_stop() must not be called from a callback (deposed, event) or from a job.
 */
#pragma once

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/types.h>

#include "core/macro.h"
#include "redis/driver.h"
#include "sched/nightly.h"
#include "sched/persist.h"
#include "sched/scheduler.h"
#include "store/pgstore.h"

struct progress;
struct metrics;

#define FLEET_ID_MAX    129 /* instance ids (PGSTORE_ID_MAX) */
#define FLEET_POOL_MAX  64
#define FLEET_ERROR_MAX 512

/* One pool's configured limit (pools.limits). */
struct fleet_pool_limit {
        const char *name; /* borrowed during fleet_new (copied) */
        int limit;        /* >= 1 */
};

/* Kubernetes events (SPEC 11): Normal or Warning. */
enum fleet_event_type {
        FLEET_EVENT_NORMAL,
        FLEET_EVENT_WARNING,
};

struct fleet_callbacks {
        /*
         * A fenced write answered -ESTALE: another replica holds the epoch. The fleet has
         * already stopped acting (as by fleet_stop_leading()); the daemon must step down at
         * once. Called at most once per leadership, from whichever fleet thread saw it (an
         * executor, the scheduler's, the nightly or the fleet's own thread); must not call
         * fleet_free()/fleet_stop(). Optional.
         */
        void (*deposed)(void *userdata);
        /*
         * A Kubernetes event to raise: `reason` is a CamelCase word ("SaveFailed",
         * "PlanOverrun", "NightlyOverrun", "SaveConfigDrift", "InvalidTask", "InvalidInstance",
         * "RunAdopted"), `message` a sentence without secrets (both borrowed for the call).
         * Called from fleet threads without the fleet's lock; must be quick (queue it).
         * Optional.
         */
        void (*event)(enum fleet_event_type type, const char *reason, const char *message,
                      void *userdata);
        void *userdata;
};

struct fleet_options {
        const char *identity; /* this replica's identity (pod name), recorded in runs; copied */

        struct driver_options driver; /* driver_options_from_config() */
        bool manage_save_config;      /* driver.manage_save_config: take `save ""` away */
        bool config_rewrite;          /* driver.config_rewrite */
        int save_check_interval_s;    /* driver.save_check_interval_s; <= 0: first time only */
        double write_rate_mb_s;       /* driver.write_rate_mb_s: estimator seed (MB = 10^6) */
        double fork_ms_per_gb;        /* driver.fork_ms_per_gb: estimator seed */
        double estimate_weight;       /* driver.estimate_weight, (0, 1] */

        int default_pool_limit;                     /* pools.default_limit, >= 1 */
        const struct fleet_pool_limit *pool_limits; /* borrowed during fleet_new (copied) */
        size_t n_pool_limits;
        int64_t starvation_us; /* backfill bound of the pools; 0 = 10 minutes */

        const char *timezone;      /* schedule.timezone ("UTC", "Europe/Berlin"); copied */
        int preload_minute;        /* schedule.preload_minute */
        int64_t max_plan_delay_us; /* schedule.max_plan_delay_s */

        /* nightly.*: fleet fills in the ops, owner_key, limit_fn and local_time itself; the
         * rest (enabled, start_minute, window, attempts, backoff, skip, tick, store retry,
         * set TTL) is taken as given. key_prefix is replaced by `key_prefix` below. */
        struct nightly_options nightly;

        const char *key_prefix; /* progress.key_prefix; copied */
        int run_retention_days; /* postgres.run_retention_days; <= 0: keep everything */

        /* Timings; 0 = the default given. */
        int64_t epoch_retry_min_us;     /* first retry of a failed epoch bump (250 ms) */
        int64_t epoch_retry_max_us;     /* backoff ceiling (10 s) */
        int64_t retention_interval_us;  /* how often retention runs while leading (10 min) */
        int64_t metrics_interval_us;    /* how often the gauges are published (5 s) */
        int64_t nightly_resume_wait_us; /* scheduled saves wait for the nightly's adoptions (5 s) */
        int64_t persist_request_ttl_us; /* how long a request_id is remembered (10 min) */
        size_t persist_request_max;     /* request ids remembered at most (10000) */
};

/* Defaults for everything (SPEC 10 values; UTC, "persistd", identity "persistd"). */
void fleet_options_init(struct fleet_options *o);

struct fleet;

/*
 * A fleet that does not lead. `store` and `progress` are borrowed and must outlive it (they
 * are used from several threads; both are thread-safe); `metrics` (may be NULL), `resolver`
 * (may be NULL: only host:port instances can be used; pod references and Secret passwords are
 * flagged invalid) and `cb` (copied; may be NULL) likewise. The fleet creates and owns its
 * sched_pools, persist coalescer, scheduler and nightly pass. Returns 0 and *ret (caller frees
 * with fleet_free), -EINVAL (bad options; the reason in `err` when non-NULL, e.g. an unknown
 * time zone) or -ENOMEM. Does not talk to the store.
 */
int fleet_new(const struct fleet_options *opts, struct pgstore *store, struct progress *progress,
              struct metrics *metrics, const struct driver_resolver *resolver,
              const struct fleet_callbacks *cb, struct fleet **ret, char *err, size_t err_size);

/*
 * Start the fleet's threads (scheduler master, nightly, the fleet's housekeeping thread: epoch
 * bump retries, reconciliation, save-config checks, retention, gauges) and load the registry
 * (instances and tasks) from the store; a store that is down is retried by the housekeeping
 * thread. Returns 0, -EALREADY, or a negative errno from pthread_create. Call once.
 */
int fleet_start(struct fleet *f);

/*
 * Shut down: stop leading (as fleet_stop_leading), then wait at most `grace_us` for the saves
 * in flight to return (they were cancelled through their driver cancel tokens, so they return
 * within one poll; the BGSAVE itself goes on on the instance and the next leader adopts it),
 * then stop and join every thread in this order: nightly pass, scheduler, housekeeping, pools
 * (sched_pools_free joins the executors), coalescer. Never leaks a thread: a save still
 * running after the grace is abandoned by its executor only when the driver returns (bounded
 * by its command timeout). The store listener must have been freed before (its callbacks call
 * into the fleet), and every fleet_persist handle released (their tickets belong to the
 * coalescer). After it only fleet_free() may be called. Idempotent. Not from a callback or a
 * job.
 */
void fleet_stop(struct fleet *f, int64_t grace_us);

/* fleet_stop(f, 0) if needed, then free. NULL is a no-op. */
void fleet_free(struct fleet *f);
DEFINE_TRIVIAL_CLEANUP_FUNC(struct fleet *, fleet_free);

/* ---- leadership ------------------------------------------------------------------------ */

/*
 * This replica leads under `generation` (non-zero, increasing; the elector's). Returns at
 * once; the housekeeping thread then bumps the epoch in the store (retrying with backoff:
 * nothing acts until it succeeds), sets the pools' generation, reconciles the runs older epochs
 * left claimed or running (docs/fleet.md), and starts the scheduler and the nightly pass.
 * Calling it again with the same generation is a no-op; a new generation restarts the
 * sequence.
 */
void fleet_start_leading(struct fleet *f, uint64_t generation);

/*
 * Stop acting at once: scheduler and nightly stop leading, the pools are cleared (queued jobs
 * cancelled), running saves are cancelled through their cancel tokens (they record nothing
 * more). Returns promptly without waiting for them. Idempotent.
 */
void fleet_stop_leading(struct fleet *f);

/* True once the epoch bump of the current leadership succeeded (and until it ends). */
bool fleet_is_acting(struct fleet *f);

/* The epoch held (0 when not leading or not bumped yet). */
int64_t fleet_epoch(struct fleet *f);

/* The generation leadership was started under (0 when not leading). */
uint64_t fleet_generation(struct fleet *f);

/* ---- changes from the store ------------------------------------------------------------- */

/*
 * The store listener's callbacks (pgstore_listener_callbacks): `table` "tasks" or
 * "instances", `op` "INSERT", "UPDATE" or "DELETE", `id` the row's id (borrowed). The change
 * is applied to the registry and the scheduler; a task row is re-read (or removed), an
 * instance is re-read with its tasks. fleet_resync() reloads everything. Both do store I/O on
 * the calling thread (the listener's, or an API thread after a write through the API, so the
 * scheduler sees the change at once). Return 0 or the store's negative errno.
 */
int fleet_on_change(struct fleet *f, const char *table, const char *op, const char *id);
int fleet_resync(struct fleet *f);

/* Adapters with the pgstore_listener_callbacks signatures (userdata = the fleet). */
void fleet_listener_change(const char *table, const char *op, const char *id, void *userdata);
void fleet_listener_resync(void *userdata);

/* ---- queries ----------------------------------------------------------------------------- */

struct fleet_instance_info {
        char id[FLEET_ID_MAX];
        char address[256]; /* "host:port" or "pod namespace/name" */
        char pool[FLEET_POOL_MAX];
        bool enabled;
        char invalid_reason[FLEET_ERROR_MAX]; /* "" = usable */
        /* capabilities (stored or detected) */
        char redis_version[65];
        bool capabilities_known;
        bool can_bgsave, can_bgrewriteaof, can_config;
        bool save_config_ok; /* `save ""` holds (as last checked) */
        bool save_config_drifted;
        /* the last save seen by this process (0 / "" when none yet) */
        int64_t last_run_id;
        char last_state[16];
        char last_error[FLEET_ERROR_MAX];
        int64_t last_finished_us;
        int64_t lastsave; /* Unix seconds; 0 unknown */
        bool busy;        /* a save runs on it now */
        /* estimate */
        int64_t used_memory; /* last seen; 0 unknown */
        double write_rate_bytes_s;
        double fork_ms_per_gb;
        int64_t estimate_us;
};

/*
 * The registry (loaded instances, in id order): *ret malloc()ed (caller frees), *ret_n.
 * Returns 0 or -ENOMEM. Filters: pool "" or NULL = any; enabled -1 any, 0, 1.
 */
int fleet_instances(struct fleet *f, const char *pool, int enabled,
                    struct fleet_instance_info **ret, size_t *ret_n);
/* One instance. 0, or -ENOENT. */
int fleet_instance_get(struct fleet *f, const char *id, struct fleet_instance_info *ret);

struct fleet_status {
        bool leading;  /* fleet_start_leading() called and not stopped */
        bool acting;   /* the epoch bump succeeded */
        int64_t epoch; /* 0 unless acting */
        uint64_t generation;
        size_t n_instances, n_tasks, n_invalid_tasks, n_invalid_instances;
        struct sched_hour_info hours[2];
        size_t n_hours;
        struct sched_pool_stats *pools; /* malloc()ed (caller frees); may be NULL */
        size_t n_pools;
};

/* A snapshot. 0 or -ENOMEM; free pools with free(). */
int fleet_status(struct fleet *f, struct fleet_status *ret);

/* The plan of the hour containing `at_us` (sched_plan_hour): *ret caller frees. */
ssize_t fleet_plan_hour(struct fleet *f, int64_t at_us, int64_t *ret_hour_us,
                        struct sched_planned **ret);

/* The schedule time zone (borrowed, lives as long as the fleet). */
const struct tz_zone *fleet_zone(struct fleet *f);

/* ---- nightly ------------------------------------------------------------------------------ */

/* nightly_status() / nightly_start_now() / nightly_pause() / nightly_resume() of the fleet's
 * pass; same returns. */
int fleet_nightly_status(struct fleet *f, struct nightly_status **ret);
int fleet_nightly_start(struct fleet *f);
int fleet_nightly_pause(struct fleet *f);
int fleet_nightly_resume(struct fleet *f);

/* ---- run now ------------------------------------------------------------------------------ */

/*
 * "Run now" of task `task_id`: record a `claimed` manual run (fenced) for the task's instance
 * and action and queue it at MANUAL priority; *ret_run (may be NULL) is the run row as
 * claimed. Returns 0; -EAGAIN when not acting; -ENOENT no such task; -EINVAL the task or its
 * instance is unusable (message in err); -ESTALE deposed; the store's errno otherwise.
 */
int fleet_task_run_now(struct fleet *f, int64_t task_id, struct pgstore_run *ret_run, char *err,
                       size_t err_size);

/* ---- persist now (SPEC 8) ---------------------------------------------------------------- */

struct fleet_persist_request {
        const char *const *instances; /* borrowed; n_instances ids; or NULL with pool / all */
        size_t n_instances;
        const char *pool;       /* NULL or "" unless the request names a pool */
        bool all;               /* every enabled, usable instance */
        const char *request_id; /* NULL or "": none; a retry with the same id returns the same
                                   saves (remembered for persist_request_ttl_us) */
};

/* A persist-now request in flight: the targets and their tickets. */
struct fleet_persist;

/*
 * Ask for a fresh save of every target (coalesced per instance, sched/persist.h). Targets are
 * resolved first: an unknown instance id fails the whole request with -ENOENT (err names it)
 * before anything is asked. With a request_id seen before (and not expired), the same handle's
 * tickets are returned (a new reference). Returns 0 and *ret (release with
 * fleet_persist_unref); -EAGAIN when not acting; -EINVAL (no target, too many, or an empty
 * pool); -ENOMEM.
 */
int fleet_persist_begin(struct fleet *f, const struct fleet_persist_request *req,
                        struct fleet_persist **ret, char *err, size_t err_size);

/* The number of targets. */
size_t fleet_persist_count(struct fleet_persist *p);

/* One target's result. */
struct fleet_persist_result {
        char instance_id[FLEET_ID_MAX];
        struct persist_result r; /* done, ok, joined, error, requested/started/finished, lastsave,
                                    run_id */
};

/*
 * Wait up to `timeout_us` (0: just look; < 0: forever) for every target and fill
 * results[0..fleet_persist_count) (caller-allocated). Returns 0 when all are done,
 * -ETIMEDOUT otherwise (results then hold what is known). Any thread.
 */
int fleet_persist_wait(struct fleet_persist *p, int64_t timeout_us,
                       struct fleet_persist_result *results);

void fleet_persist_unref(struct fleet_persist *p);

/* ---- for tests ------------------------------------------------------------------------------ */

/* The fleet's pools and scheduler (borrowed), e.g. for sched_pools_stats() and
 * sched_catchups_done(). */
struct sched_pools *fleet_pools(struct fleet *f);
struct scheduler *fleet_scheduler(struct fleet *f);

/* How many stale runs the last reconciliation adopted, finished and took over. */
struct fleet_reconcile_stats {
        unsigned adopted, finished, taken_over, failed, left_to_nightly;
        unsigned passes; /* reconciliations completed since fleet_new */
};
void fleet_reconcile_stats(struct fleet *f, struct fleet_reconcile_stats *ret);
