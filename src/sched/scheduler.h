/* SPDX-License-Identifier: Apache-2.0 */
/*
 * The scheduler: 24 hourly controllers and their master (SPEC 6).
 *
 * The controller of an hour holds every slot of every enabled task that falls inside it. While
 * this replica leads, the master keeps the current hour loaded and, from the preload minute on,
 * the next one too; an hour is dropped when it ends. Loading an hour computes its slots (cron
 * walks the hour's bits, no scanning) and plans each pool's hour (sched/plan.h) so an overbooked
 * hour is reported before it happens; the controller keeps the slots and hands each to its
 * pool's queue (sched/pool.h), as a job due at the slot's instant, a few seconds before it is
 * due, so the queues stay short and task changes touch few queued jobs. Executors start them;
 * the slot's work itself (claim in the store, leadership check, the save, the outcome) is the
 * run_slot operation supplied by the daemon.
 *
 * On becoming leader the scheduler catches up: every past slot of the current and the previous
 * hour that has no run row gets its task's misfire policy (run_once within the starting deadline
 * runs it now, otherwise it is recorded missed). On losing leadership every controller is
 * cleared at once and the pools' queues with them.
 *
 * Task changes (from the store's notifications or the API) are applied to the loaded hours by
 * the scheduler's own thread. All functions may be called from any thread; none of them waits for
 * the store (the thread calls the store's operations without holding the scheduler's mutex).
 *
 * Time is the schedule clock, clock_wall_us() (core/clock.h), the clock the pools' executors
 * start due jobs by; tests set it with clock_wall_start_at(). docs/scheduler.md has the state
 * machine, the DST rules and the catch-up rules.
 */
#pragma once

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/types.h>

#include "sched/cron.h"
#include "sched/plan.h"
#include "sched/pool.h"
#include "sched/tz.h"

#define SCHED_ID_MAX 128

enum sched_action {
        SCHED_ACTION_BGSAVE,
        SCHED_ACTION_BGREWRITEAOF,
};

/* A task as the scheduler needs it. Plain data: copied in, no pointers. Ids are > 0. */
struct sched_task {
        int64_t id;
        char instance_id[SCHED_ID_MAX];
        char pool[64];
        enum sched_action action;
        struct cron_expr schedule;
        bool run_once;           /* misfire policy: run_once (true) or skip */
        int starting_deadline_s; /* run_once only within this many seconds; <= 0: no limit */
        int64_t created_us;      /* slots before it are never caught up */
};

/* What run_slot is asked to do. Borrowed for the call. */
struct sched_slot_run {
        const struct sched_task *task; /* a snapshot taken when the slot was queued */
        int64_t slot_us;
        uint64_t generation; /* leadership generation the slot was queued under */
        int64_t started_us;  /* when an executor took it (schedule clock) */
        bool catch_up;       /* queued by the catch-up after a leadership change */
};

/* A slot that already has a run row (claimed or recorded by any leader). */
struct sched_slot_key {
        int64_t task_id;
        int64_t slot_us;
};

/* The daemon's side. Every callback gets `userdata`; pointers passed in are borrowed. */
struct sched_ops {
        void *userdata;
        /*
         * Run one slot on an executor thread, a place of the pool held: claim it (fenced), check
         * leadership again, save, record the outcome. Not called for a slot queued under a
         * leadership that has ended. Required.
         */
        void (*run_slot)(const struct sched_slot_run *run, void *userdata);
        /*
         * Every slot in [from_us, to_us) that has a run row: *ret (malloc'ed, the scheduler
         * frees it) and *ret_n. Returns 0 or a negative errno (the catch-up is then retried).
         * Called on the scheduler's thread. Required.
         */
        int (*recorded_slots)(int64_t from_us, int64_t to_us, struct sched_slot_key **ret,
                              size_t *ret_n, void *userdata);
        /*
         * Record a slot that will not run (state missed, with `reason`), fenced by the epoch of
         * `generation`. Returns 0, -ESTALE when deposed (the catch-up ends), or another negative
         * errno (it is retried). Called on the scheduler's thread. Required.
         */
        int (*record_missed)(const struct sched_task *task, int64_t slot_us, const char *reason,
                             uint64_t generation, void *userdata);
        /*
         * The expected duration of a save on `instance_id`, for planning; 0 unknown. Optional.
         * Called on the scheduler's thread (and on API threads from sched_plan_hour()), possibly
         * with the scheduler's mutex held: it must be quick (a cached value) and must not call
         * the scheduler.
         */
        int64_t (*estimate_us)(const char *instance_id, void *userdata);
        /* The limit of `pool`, for planning. Optional: without it the pool set's limit is used
         * (1 for a pool that has no executors yet). Same rules as estimate_us. */
        int (*pool_limit)(const char *pool, void *userdata);
        /* A pool's plan of the hour starting at `hour_us` ends `overrun_us` past its end, more
         * than the configured delay allows; once per loaded hour and pool. Called on the
         * scheduler's thread without its mutex. Optional (events, metrics). */
        void (*plan_overrun)(const char *pool, int64_t hour_us, int64_t overrun_us, void *userdata);
};

struct sched_options {
        int preload_minute;        /* schedule.preload_minute, 0-59 */
        int64_t max_plan_delay_us; /* schedule.max_plan_delay_s */
};

struct scheduler;

/*
 * A stopped scheduler (no thread, not leading, no tasks). `zone` and `pools` are borrowed and
 * must outlive it; `opts` and `ops` are copied. NULL on OOM.
 */
struct scheduler *sched_new(const struct sched_options *opts, const struct tz_zone *zone,
                            struct sched_pools *pools, const struct sched_ops *ops);
/*
 * Stops the thread if running and frees; NULL is a no-op. Queued slot jobs point at the
 * scheduler, so tear down in this order: sched_stop_leading(), sched_stop(), sched_pools_free()
 * (cancels what is queued, joins the executors), then sched_free().
 */
void sched_free(struct scheduler *s);

/* Start / stop (and join) the master's thread. sched_start returns 0 or a negative errno. */
int sched_start(struct scheduler *s);
void sched_stop(struct scheduler *s);

/*
 * Leadership. sched_start_leading() must follow sched_pools_set_generation(pools, generation)
 * (non-zero): the thread then loads the current hour (and the next one from the preload minute
 * on) and catches up under it. sched_stop_leading() drops every hour and clears the pools at
 * once (queued jobs cancelled); it returns without waiting for running saves or for the thread.
 */
void sched_start_leading(struct scheduler *s, uint64_t generation);
void sched_stop_leading(struct scheduler *s);

/*
 * The task set. sched_set_tasks() replaces it (initial load and full resyncs; `tasks` borrowed,
 * copied); sched_task_upsert() adds or changes one (`task` borrowed, copied);
 * sched_task_remove() removes one (deleted or disabled). Changes are queued and applied in
 * order by the scheduler's thread, which is woken at once (at worst within its 1 s tick).
 * Returns 0, -EINVAL for an id <= 0 (or, for sched_set_tasks(), an id given twice), -ENOMEM.
 */
int sched_set_tasks(struct scheduler *s, const struct sched_task *tasks, size_t n);
int sched_task_upsert(struct scheduler *s, const struct sched_task *task);
int sched_task_remove(struct scheduler *s, int64_t task_id);

/*
 * The start of the hour (a local hour of `zone`, split where its offset changes) that contains
 * `t_us`; the start of the hour after the one starting at `hour_us`. `zone` NULL is UTC. Pure.
 */
int64_t sched_hour_start(const struct tz_zone *zone, int64_t t_us);
int64_t sched_next_hour_start(const struct tz_zone *zone, int64_t hour_us);

struct sched_hour_info {
        int64_t hour_us;
        size_t slots;
        int64_t loaded_at_us;
};

/* The loaded hours (at most 2), oldest first; returns how many were written. */
size_t sched_loaded_hours(struct scheduler *s, struct sched_hour_info out[2]);

/* A planned slot, for the API. */
struct sched_planned {
        int64_t task_id;
        char instance_id[SCHED_ID_MAX];
        char pool[64];
        struct plan_slot plan;
};

/*
 * The plan of the hour containing `hour_us`: every slot with its expected start and end, per
 * pool in slot order (pools in name order). A loaded hour answers with the plan its controller
 * keeps (re-planned after task changes); another hour is planned from the current task set,
 * after the loaded hour before it if there is one. *ret is caller-frees (also when 0 slots).
 * Returns the number of slots or a negative errno.
 */
ssize_t sched_plan_hour(struct scheduler *s, int64_t hour_us, struct sched_planned **ret);

/* For tests: how many catch-up passes have completed since leadership began. */
unsigned sched_catchups_done(struct scheduler *s);
