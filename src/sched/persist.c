/* SPDX-License-Identifier: Apache-2.0 */
/*
 * Persist-now coalescing. Per instance there is at most one save queued ("next") and one
 * running ("current"). A request joins `next` if there is one; otherwise it creates it, and it is
 * submitted to the pool at once when nothing runs, or as soon as `current` ends. A save's waiters
 * all arrived before it started, which is the guarantee persist-now gives.
 */
#include <errno.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "core/clock.h"
#include "core/log.h"
#include "sched/persist.h"

#define LOG_MODULE "persist"

struct persist_ticket {
        int refs; /* guarded by the coalescer's lock */
        struct persist_coalescer *pc;
        struct persist_result result;
        struct persist_ticket *next_waiter;
};

struct save {
        struct sched_job job; /* first: the pool hands back &job */
        struct persist_coalescer *pc;
        struct instance *inst;
        struct persist_ticket *waiters;
        int n_waiters;
        int64_t estimate_us;
};

struct instance {
        char *id;
        char *pool;
        struct save *current; /* running */
        struct save *next;    /* queued in the pool, or waiting for `current` to end */
        bool next_submitted;
        struct instance *link;
};

struct persist_coalescer {
        pthread_mutex_t lock;
        pthread_cond_t cond; /* a ticket completed */
        struct sched_pools *pools;
        persist_save_fn save;
        void *userdata;
        struct instance *instances;
        uint64_t saves_started;
};

static void save_run(struct sched_job *job);
static void save_cancel(struct sched_job *job, enum sched_cancel_reason reason);

static void ticket_free(struct persist_ticket *t)
{
        free(t);
}

struct persist_ticket *persist_ticket_ref(struct persist_ticket *t)
{
        pthread_mutex_lock(&t->pc->lock);
        t->refs++;
        pthread_mutex_unlock(&t->pc->lock);
        return t;
}

void persist_ticket_unref(struct persist_ticket *t)
{
        if (!t)
                return;
        struct persist_coalescer *pc = t->pc;
        pthread_mutex_lock(&pc->lock);
        bool last = --t->refs == 0;
        pthread_mutex_unlock(&pc->lock);
        if (last)
                ticket_free(t);
}

static struct instance *instance_get(struct persist_coalescer *pc, const char *id, const char *pool)
{
        struct instance *i;
        for (i = pc->instances; i; i = i->link)
                if (streq(i->id, id))
                        break;
        if (!i) {
                i = calloc(1, sizeof(*i));
                if (!i)
                        return NULL;
                i->id = strdup(id);
                i->pool = strdup(pool);
                if (!i->id || !i->pool) {
                        free(i->id);
                        free(i->pool);
                        free(i);
                        return NULL;
                }
                i->link = pc->instances;
                pc->instances = i;
        } else if (!streq(i->pool, pool)) {
                /* The instance moved to another pool: later saves go there. */
                char *p = strdup(pool);
                if (p) {
                        free(i->pool);
                        i->pool = p;
                }
        }
        return i;
}

static struct save *save_new(struct persist_coalescer *pc, struct instance *inst,
                             int64_t estimate_us)
{
        struct save *s = calloc(1, sizeof(*s));
        if (!s)
                return NULL;
        s->pc = pc;
        s->inst = inst;
        s->estimate_us = estimate_us;
        s->job.priority = SCHED_PRIO_PERSIST;
        s->job.estimate_us = estimate_us;
        s->job.run = save_run;
        s->job.cancel = save_cancel;
        s->job.userdata = s;
        return s;
}

/* Complete every waiter of `s` with `r` (fields per waiter keep requested_us/joined). Lock held. */
static void complete_waiters(struct persist_coalescer *pc, struct save *s,
                             const struct persist_result *r)
{
        for (struct persist_ticket *t = s->waiters, *n; t; t = n) {
                n = t->next_waiter;
                int64_t requested = t->result.requested_us;
                bool joined = t->result.joined;
                t->result = *r;
                t->result.requested_us = requested;
                t->result.joined = joined;
                t->result.done = true;
                t->next_waiter = NULL;
                if (--t->refs == 0)
                        ticket_free(t);
        }
        s->waiters = NULL;
        pthread_cond_broadcast(&pc->cond);
}

/* Submit inst->next to the pool. Lock held. On failure its waiters are failed. */
static void submit_next(struct persist_coalescer *pc, struct instance *inst)
{
        struct save *s = inst->next;
        int r = sched_pools_submit(pc->pools, inst->pool, &s->job);
        if (r == 0) {
                inst->next_submitted = true;
                return;
        }
        struct persist_result res = {.ok = false};
        snprintf(res.error, sizeof(res.error), "%s",
                 r == -EAGAIN ? "this replica no longer leads; retry on the leader"
                              : "cannot queue the save: out of memory");
        inst->next = NULL;
        complete_waiters(pc, s, &res);
        free(s);
}

static void save_run(struct sched_job *job)
{
        struct save *s = job->userdata;
        struct persist_coalescer *pc = s->pc;
        struct instance *inst = s->inst;
        struct persist_result res = {0};

        pthread_mutex_lock(&pc->lock);
        /* From here on, new requests wait for a fresh save: this one has started. */
        inst->current = s;
        inst->next = NULL;
        inst->next_submitted = false;
        pc->saves_started++;
        pthread_mutex_unlock(&pc->lock);

        res.started_us = clock_wall_us();
        int r = pc->save(inst->id, &res, pc->userdata);
        if (r < 0 && !res.error[0])
                snprintf(res.error, sizeof(res.error), "the save could not be attempted: %s",
                         strerror(-r));
        if (r < 0)
                res.ok = false;
        if (!res.finished_us)
                res.finished_us = clock_wall_us();

        pthread_mutex_lock(&pc->lock);
        complete_waiters(pc, s, &res);
        inst->current = NULL;
        if (inst->next && !inst->next_submitted)
                submit_next(pc, inst);
        pthread_mutex_unlock(&pc->lock);
        free(s);
}

static void save_cancel(struct sched_job *job, enum sched_cancel_reason reason)
{
        struct save *s = job->userdata;
        struct persist_coalescer *pc = s->pc;
        struct persist_result res = {.ok = false};

        snprintf(res.error, sizeof(res.error), "%s",
                 reason == SCHED_CANCEL_SHUTDOWN ? "persistd is shutting down; retry on the leader"
                                                 : "this replica lost leadership before the save "
                                                   "started; retry on the new leader");
        pthread_mutex_lock(&pc->lock);
        if (s->inst->next == s) {
                s->inst->next = NULL;
                s->inst->next_submitted = false;
        }
        complete_waiters(pc, s, &res);
        pthread_mutex_unlock(&pc->lock);
        free(s);
}

struct persist_coalescer *persist_coalescer_new(struct sched_pools *pools, persist_save_fn save,
                                                void *userdata)
{
        struct persist_coalescer *pc = calloc(1, sizeof(*pc));
        if (!pc)
                return NULL;
        pthread_mutex_init(&pc->lock, NULL);
        (void)clock_cond_init(&pc->cond);
        pc->pools = pools;
        pc->save = save;
        pc->userdata = userdata;
        return pc;
}

void persist_coalescer_free(struct persist_coalescer *pc)
{
        struct persist_result res = {.ok = false};

        if (!pc)
                return;
        snprintf(res.error, sizeof(res.error), "persistd is shutting down; retry on the leader");
        pthread_mutex_lock(&pc->lock);
        for (struct instance *i = pc->instances, *n; i; i = n) {
                n = i->link;
                /* A `next` not yet submitted is owned here; a submitted one was cancelled by the
                 * pools (cleared or freed before us) and is gone. */
                if (i->next && !i->next_submitted) {
                        complete_waiters(pc, i->next, &res);
                        free(i->next);
                }
                free(i->id);
                free(i->pool);
                free(i);
        }
        pc->instances = NULL;
        pthread_mutex_unlock(&pc->lock);
        pthread_cond_destroy(&pc->cond);
        pthread_mutex_destroy(&pc->lock);
        free(pc);
}

int persist_request(struct persist_coalescer *pc, const char *instance_id, const char *pool,
                    int64_t estimate_us, struct persist_ticket **ret)
{
        struct persist_ticket *t = calloc(1, sizeof(*t));
        int r = 0;

        if (!t)
                return -ENOMEM;
        t->pc = pc;
        t->refs = 2; /* the caller's and the save's */
        t->result.requested_us = clock_wall_us();

        pthread_mutex_lock(&pc->lock);
        if (sched_pools_generation(pc->pools) == 0) {
                r = -EAGAIN;
                goto fail;
        }
        struct instance *inst = instance_get(pc, instance_id, pool);
        if (!inst) {
                r = -ENOMEM;
                goto fail;
        }
        if (inst->next) {
                t->result.joined = true;
        } else {
                inst->next = save_new(pc, inst, estimate_us);
                if (!inst->next) {
                        r = -ENOMEM;
                        goto fail;
                }
                inst->next_submitted = false;
        }
        t->next_waiter = inst->next->waiters;
        inst->next->waiters = t;
        inst->next->n_waiters++;
        if (!inst->current && !inst->next_submitted) {
                submit_next(pc, inst); /* may complete `t` with an error at once */
        }
        pthread_mutex_unlock(&pc->lock);
        *ret = t;
        return 0;
fail:
        pthread_mutex_unlock(&pc->lock);
        free(t);
        return r;
}

int persist_ticket_wait(struct persist_ticket *t, int64_t timeout_us, struct persist_result *result)
{
        struct persist_coalescer *pc = t->pc;
        int64_t deadline = clock_mono_us() + MAX(timeout_us, 0);
        int r = 0;

        pthread_mutex_lock(&pc->lock);
        while (!t->result.done) {
                if (timeout_us < 0) {
                        pthread_cond_wait(&pc->cond, &pc->lock);
                } else if (clock_cond_wait_until(&pc->cond, &pc->lock, deadline) == ETIMEDOUT) {
                        r = t->result.done ? 0 : -ETIMEDOUT;
                        break;
                }
        }
        if (r == 0)
                *result = t->result;
        pthread_mutex_unlock(&pc->lock);
        return r;
}

void persist_ticket_peek(struct persist_ticket *t, struct persist_result *result)
{
        pthread_mutex_lock(&t->pc->lock);
        *result = t->result;
        pthread_mutex_unlock(&t->pc->lock);
}

uint64_t persist_saves_started(struct persist_coalescer *pc)
{
        pthread_mutex_lock(&pc->lock);
        uint64_t n = pc->saves_started;
        pthread_mutex_unlock(&pc->lock);
        return n;
}
