/* SPDX-License-Identifier: Apache-2.0 */
/*
 * Persist-now: an operator or a pod's preStop hook asks for an immediate save of an instance.
 * The save that answers a request must have STARTED AFTER the request arrived (so it holds every
 * write made before the request). Requests coalesce per instance:
 *
 *   - while a save for the instance is queued and not yet started, every new request joins it;
 *   - while one is running, new requests wait for it to end and then share ONE fresh save;
 *   - any number of waiters; a request never starts a second save on the instance.
 *
 * Saves go through the instance's pool at persist priority, so they take the next free place
 * ahead of other work and never exceed the pool's limit.
 */
#pragma once

#include <stdbool.h>
#include <stdint.h>

#include "sched/pool.h"

struct persist_result {
        bool done;   /* false: still waiting (only from persist_ticket_peek) */
        bool ok;     /* the save succeeded */
        bool joined; /* this request shared a save another request had asked for */
        char error[256];
        int64_t requested_us; /* schedule clock: when the request arrived */
        int64_t started_us;   /* when the save that answers it started (>= requested_us) */
        int64_t finished_us;
        int64_t lastsave; /* the instance's rdb_last_save_time after the save, 0 unknown */
        int64_t run_id;   /* the run row that recorded it, 0 unknown */
};

/*
 * The save itself, called on an executor thread with a place held: perform one fresh save of
 * `instance_id` (claim the run, check leadership, drive BGSAVE to completion) and fill `result`
 * (ok, error, started/finished, lastsave, run_id). Return 0 when a result was produced (even a
 * failed save), negative errno when it could not be attempted.
 */
typedef int (*persist_save_fn)(const char *instance_id, struct persist_result *result,
                               void *userdata);

struct persist_coalescer;
struct persist_ticket;

/* NULL on OOM. `pools` is borrowed and must outlive it. */
struct persist_coalescer *persist_coalescer_new(struct sched_pools *pools, persist_save_fn save,
                                                void *userdata);
/*
 * Fails every waiter still pending ("shutting down") and frees. Call after sched_pools_free()
 * (which cancels the queued saves and waits for the running ones), never before.
 */
void persist_coalescer_free(struct persist_coalescer *pc);

/*
 * Ask for a save of `instance_id` in `pool` (both borrowed) with an estimated duration. On
 * success *ret is a ticket (caller unrefs). -EAGAIN when this replica does not lead; -ENOMEM.
 * Any thread.
 */
int persist_request(struct persist_coalescer *pc, const char *instance_id, const char *pool,
                    int64_t estimate_us, struct persist_ticket **ret);

/*
 * Wait up to `timeout_us` (< 0: forever) for the ticket's save. Returns 0 and fills *result,
 * or -ETIMEDOUT (the save goes on; wait again or drop the ticket). Any thread.
 */
int persist_ticket_wait(struct persist_ticket *t, int64_t timeout_us,
                        struct persist_result *result);

/* The result so far, without waiting (result->done tells). */
void persist_ticket_peek(struct persist_ticket *t, struct persist_result *result);

struct persist_ticket *persist_ticket_ref(struct persist_ticket *t);
void persist_ticket_unref(struct persist_ticket *t);

/* How many saves the coalescer has started (for tests and the bench). */
uint64_t persist_saves_started(struct persist_coalescer *pc);
