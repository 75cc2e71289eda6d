/* SPDX-License-Identifier: Apache-2.0 */
/*
 * The nightly pass: one thread that starts, resumes, records and finishes passes, and jobs on the
 * pools' executors that save one instance each. Each pool is fed at most `limit` nightly jobs at
 * once, the next one queued by the job that ends, so a place never waits for this thread.
 */
#include <errno.h>
#include <inttypes.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "core/clock.h"
#include "core/log.h"
#include "sched/nightly.h"
#include "sched/plan.h"

#define LOG_MODULE "nightly"

#define POOL_NAME_MAX  63
#define MAX_BACKOFF_US (USEC_PER_SEC * 6 * 3600)
#define NO_POOL        SIZE_MAX

/* ---- lists filled by the ops ------------------------------------------------------------- */

struct list_entry {
        char *id;
        char *pool;
        uint64_t used_memory;
        int64_t estimate_us;
        int64_t last_success_us;
};

struct nightly_list {
        struct list_entry *entries;
        size_t n, alloc;
};

int nightly_list_add(struct nightly_list *list, const struct nightly_instance *inst)
{
        size_t id_len = inst->id ? strlen(inst->id) : 0;
        if (id_len == 0 || id_len > NIGHTLY_ID_MAX)
                return -EINVAL;
        if (inst->pool && (inst->pool[0] == '\0' || strlen(inst->pool) > POOL_NAME_MAX))
                return -EINVAL;
        if (list->n == list->alloc) {
                size_t want = list->alloc ? list->alloc * 2 : 64;
                struct list_entry *e = realloc(list->entries, want * sizeof(*e));
                if (!e)
                        return -ENOMEM;
                list->entries = e;
                list->alloc = want;
        }
        struct list_entry *e = &list->entries[list->n];
        *e = (struct list_entry){
            .used_memory = inst->used_memory,
            .estimate_us = inst->estimate_us > 0 ? inst->estimate_us : 0,
            .last_success_us = inst->last_success_us,
        };
        e->id = strdup(inst->id);
        e->pool = strdup(inst->pool ? inst->pool : "");
        if (!e->id || !e->pool) {
                free(e->id);
                free(e->pool);
                return -ENOMEM;
        }
        list->n++;
        return 0;
}

int nightly_list_add_id(struct nightly_list *list, const char *id)
{
        return nightly_list_add(list, &(struct nightly_instance){.id = id});
}

static void list_release(struct nightly_list *list)
{
        for (size_t i = 0; i < list->n; i++) {
                free(list->entries[i].id);
                free(list->entries[i].pool);
        }
        free(list->entries);
        *list = (struct nightly_list){0};
}

static int entry_cmp_id(const void *a, const void *b)
{
        return strcmp(((const struct list_entry *)a)->id, ((const struct list_entry *)b)->id);
}

/* Sort by id and drop duplicates (the first of each id stays). */
static void list_sort_unique(struct nightly_list *list)
{
        size_t kept = 0;

        if (list->n == 0)
                return;
        qsort(list->entries, list->n, sizeof(*list->entries), entry_cmp_id);
        for (size_t i = 0; i < list->n; i++) {
                if (kept > 0 && streq(list->entries[kept - 1].id, list->entries[i].id)) {
                        free(list->entries[i].id);
                        free(list->entries[i].pool);
                        continue;
                }
                list->entries[kept++] = list->entries[i];
        }
        list->n = kept;
}

static const struct list_entry *list_find(const struct nightly_list *list, const char *id)
{
        struct list_entry key = {.id = (char *)id};
        if (list->n == 0)
                return NULL;
        return bsearch(&key, list->entries, list->n, sizeof(*list->entries), entry_cmp_id);
}

/* ---- the pass in memory ------------------------------------------------------------------ */

enum item_state {
        ITEM_PENDING, /* waiting for a place (in its pool's order or front) */
        ITEM_QUEUED,  /* a job is in the pool's queue */
        ITEM_RUNNING, /* a job is saving it */
        ITEM_BACKOFF, /* waiting before its next attempt */
        ITEM_DONE,
        ITEM_FAILED,
        ITEM_SKIPPED,
};

struct item {
        char *id;
        size_t pool; /* index in pass->pools; NO_POOL for an id no longer enabled */
        uint64_t used_memory;
        int64_t estimate_us;
        enum item_state state;
        int attempts;
        bool adopt;  /* its next job reconciles the previous leader's run */
        bool in_set; /* still a member of the progress set */
        int64_t retry_mono;
        int64_t retry_wall;
        int64_t started_us;
};

struct ppool {
        char name[POOL_NAME_MAX + 1];
        int limit;
        int active;    /* nightly jobs queued or running in the pool */
        size_t *order; /* its items, biggest first */
        size_t n_order, cursor;
        size_t *front; /* items back in line ahead of the order (retries, withdrawn jobs) */
        size_t n_front, alloc_front;
};

struct pass {
        uint64_t serial;
        uint64_t lead_serial; /* the leadership it belongs to */
        char date[NIGHTLY_DATE_MAX];
        char key[512];
        int64_t id; /* the `passes` row; 0 until recorded */
        int64_t started_us;
        int64_t finished_us; /* when it was recorded finished; 0 before */
        int64_t window_end_us;
        bool set_created;
        bool recorded;
        bool dirty; /* totals or pause state not yet written */
        bool overrun_warned;
        int64_t next_eta_check_mono;
        struct item *items;
        size_t n_items;
        size_t n_open; /* items not yet done, failed or skipped */
        struct ppool *pools;
        size_t n_pools;
        size_t *removals; /* settled items whose id is still in the set */
        size_t n_removals, alloc_removals;
        int n_backoff;
        struct nightly_totals totals;    /* live, for the status */
        struct nightly_totals committed; /* what the set agrees with: written to the record */
        char last_error[NIGHTLY_LAST_ERROR_MAX];
};

enum phase {
        PHASE_IDLE,
        PHASE_STARTING,
        PHASE_RUNNING,
        PHASE_FINISHING,
        PHASE_DONE,
};

struct nightly_job {
        struct sched_job job; /* first: the pool hands back &job */
        struct nightly *n;
        uint64_t pass_serial;
        size_t item;
        bool adopt;
        atomic_bool cancelled;
        struct nightly_job *running_next;
        char *id;
        char *pool;
        char date[NIGHTLY_DATE_MAX];
        int64_t pass_id;
        int attempt;
        uint64_t used_memory;
};

struct nightly {
        pthread_mutex_t lock;
        pthread_cond_t cond;        /* wakes the thread */
        pthread_cond_t jobs_cond;   /* jobs_out dropped */
        pthread_cond_t resume_cond; /* resume_check turned false */
        struct sched_pools *pools;
        struct nightly_ops ops;
        struct nightly_options opt;
        char *key_prefix;

        pthread_t thread;
        bool thread_started;
        bool stopping;
        bool kicked;

        bool leading;
        uint64_t generation;
        uint64_t lead_serial;
        bool deposed;
        bool deposed_notified;
        bool resume_check;
        bool start_requested;

        enum phase phase;
        bool paused;
        bool progress_down;
        int64_t retry_at_mono; /* a store failed: no store I/O before this */
        struct pass *pass;
        uint64_t pass_serial;

        char handled_date[NIGHTLY_DATE_MAX]; /* the latest pass known to have started ... */
        int64_t handled_started_us;          /* ... and when */

        int jobs_out;
        struct nightly_job *running;
};

const char *nightly_state_to_string(enum nightly_state s)
{
        static const char *const names[] = {
            [NIGHTLY_IDLE] = "idle",
            [NIGHTLY_STARTING] = "starting",
            [NIGHTLY_RUNNING] = "running",
            [NIGHTLY_PAUSED] = "paused",
            [NIGHTLY_WAITING_PROGRESS] = "waiting-for-progress-store",
            [NIGHTLY_FINISHING] = "finishing",
            [NIGHTLY_DONE] = "done",
        };
        return (size_t)s < ELEMENTSOF(names) ? names[s] : "unknown";
}

char *nightly_pending_key(const char *prefix, const char *date, char *buf, size_t size)
{
        int r = snprintf(buf, size, "%s:pass:%s:pending", prefix, date);
        if (r < 0 || (size_t)r >= size)
                buf[0] = '\0';
        return buf;
}

int nightly_local_time_utc(int64_t utc_us, struct nightly_local_time *ret, void *userdata)
{
        time_t t = (time_t)(utc_us >= 0 ? utc_us / USEC_PER_SEC
                                        : -((-utc_us + USEC_PER_SEC - 1) / USEC_PER_SEC));
        struct tm tm;

        if (!gmtime_r(&t, &tm))
                return -EOVERFLOW;
        if (strftime(ret->date, sizeof(ret->date), "%Y-%m-%d", &tm) == 0)
                return -EOVERFLOW;
        ret->second_of_day = MIN(tm.tm_hour * 3600 + tm.tm_min * 60 + tm.tm_sec, 86399);
        return 0;
}

static int64_t default_now(void *userdata)
{
        return clock_wall_us();
}

void nightly_options_init(struct nightly_options *o)
{
        *o = (struct nightly_options){
            .enabled = true,
            .start_minute = 0,
            .window_us = USEC_PER_SEC * 6 * 3600,
            .max_attempts = 3,
            .retry_backoff_us = 30 * USEC_PER_SEC,
            .skip_if_saved_within_us = 0,
            .key_prefix = "persistd",
            .set_ttl_s = 86400,
            .owner_key = UINT64_C(0x6e69676874000000), /* "night" */
            .tick_us = 1 * USEC_PER_SEC,
            .store_retry_us = 2 * USEC_PER_SEC,
        };
}

static int64_t now_us(struct nightly *n)
{
        return n->opt.now(n->opt.now_userdata);
}

static void kick(struct nightly *n)
{
        n->kicked = true;
        pthread_cond_signal(&n->cond);
}

static void pass_free(struct pass *p)
{
        if (!p)
                return;
        for (size_t i = 0; i < p->n_items; i++)
                free(p->items[i].id);
        for (size_t i = 0; i < p->n_pools; i++) {
                free(p->pools[i].order);
                free(p->pools[i].front);
        }
        free(p->items);
        free(p->pools);
        free(p->removals);
        free(p);
}

static int push_index(size_t **arr, size_t *n, size_t *alloc, size_t v)
{
        if (*n == *alloc) {
                size_t want = *alloc ? *alloc * 2 : 16;
                size_t *a = realloc(*arr, want * sizeof(*a));
                if (!a)
                        return -ENOMEM;
                *arr = a;
                *alloc = want;
        }
        (*arr)[(*n)++] = v;
        return 0;
}

/* Whether new saves may be queued for the current pass. Lock held. */
static bool feeding_allowed(struct nightly *n)
{
        return n->leading && !n->deposed && !n->stopping && n->pass && n->phase == PHASE_RUNNING &&
               !n->paused && !n->progress_down;
}

/* An item goes back in line ahead of its pool's order. Lock held. */
static void requeue_front(struct pass *p, size_t idx)
{
        struct item *it = &p->items[idx];
        struct ppool *pp = &p->pools[it->pool];

        it->state = ITEM_PENDING;
        if (push_index(&pp->front, &pp->n_front, &pp->alloc_front, idx) < 0) {
                /* Out of memory: leave it in a state the pass cannot finish in, and say so. */
                log_error("nightly pass %s: out of memory requeueing instance \"%s\"", p->date,
                          it->id);
                it->state = ITEM_BACKOFF;
                it->retry_mono = clock_mono_us() + USEC_PER_SEC;
                it->retry_wall = 0;
                p->n_backoff++;
        }
}

/* An item reached its end: done, failed or skipped. Lock held. */
static void count_item(struct nightly_totals *t, enum item_state state)
{
        if (state == ITEM_DONE)
                t->done++;
        else if (state == ITEM_FAILED)
                t->failed++;
        else
                t->skipped++;
}

static void settle_item(struct pass *p, size_t idx, enum item_state state)
{
        struct item *it = &p->items[idx];

        it->state = state;
        p->n_open--;
        p->dirty = true;
        count_item(&p->totals, state);
        /*
         * The record counts only what left the set, so a resuming leader, which counts what is
         * still in it, never counts an instance twice.
         */
        if (!it->in_set)
                count_item(&p->committed, state);
        else if (push_index(&p->removals, &p->n_removals, &p->alloc_removals, idx) < 0)
                log_error("nightly pass %s: out of memory; \"%s\" stays in the progress set",
                          p->date, it->id);
}

static void job_free(struct nightly_job *j)
{
        if (!j)
                return;
        free(j->id);
        free(j->pool);
        free(j);
}

static void job_run(struct sched_job *sj);
static void job_cancel(struct sched_job *sj, enum sched_cancel_reason reason);

/* Queue a job for item `idx` of the current pass. Lock held. Returns 0 or a negative errno. */
static int submit_item(struct nightly *n, struct pass *p, size_t idx, bool adopt)
{
        struct item *it = &p->items[idx];
        struct ppool *pp = &p->pools[it->pool];
        struct nightly_job *j = calloc(1, sizeof(*j));
        int r;

        if (!j)
                return -ENOMEM;
        j->n = n;
        j->pass_serial = p->serial;
        j->item = idx;
        j->adopt = adopt;
        atomic_init(&j->cancelled, false);
        j->id = strdup(it->id);
        j->pool = strdup(pp->name);
        if (!j->id || !j->pool) {
                job_free(j);
                return -ENOMEM;
        }
        snprintf(j->date, sizeof(j->date), "%s", p->date);
        j->pass_id = p->id;
        j->attempt = it->attempts + 1;
        j->used_memory = it->used_memory;
        j->job.priority = adopt ? SCHED_PRIO_ADOPT : SCHED_PRIO_NIGHTLY;
        j->job.estimate_us = it->estimate_us;
        j->job.owner_key = adopt ? n->opt.owner_key + 1 : n->opt.owner_key;
        j->job.run = job_run;
        j->job.cancel = job_cancel;
        j->job.userdata = j;
        r = sched_pools_submit(n->pools, pp->name, &j->job);
        if (r < 0) {
                job_free(j);
                return r;
        }
        it->state = ITEM_QUEUED;
        pp->active++;
        n->jobs_out++;
        return 0;
}

/* The next item of a pool in line, or NO_POOL. Lock held. */
static size_t pool_next(struct pass *p, struct ppool *pp)
{
        while (pp->n_front > 0) {
                size_t idx = pp->front[--pp->n_front];
                if (p->items[idx].state == ITEM_PENDING)
                        return idx;
        }
        while (pp->cursor < pp->n_order) {
                size_t idx = pp->order[pp->cursor++];
                if (p->items[idx].state == ITEM_PENDING)
                        return idx;
        }
        return NO_POOL;
}

/*
 * The feeding rule: keep at most `limit` nightly jobs of the pool queued or running. The pool
 * orders them after every more urgent job, so they only ever take places nothing else wants.
 * Lock held.
 */
static void feed_pool(struct nightly *n, struct pass *p, size_t pool)
{
        struct ppool *pp = &p->pools[pool];

        while (feeding_allowed(n) && pp->active < pp->limit) {
                size_t idx = pool_next(p, pp);
                if (idx == NO_POOL)
                        return;
                int r = submit_item(n, p, idx, p->items[idx].adopt);
                if (r < 0) {
                        /* Not leading any more (the pools were cleared) or out of memory: the
                         * thread tries again on its next tick. */
                        p->items[idx].state = ITEM_PENDING;
                        push_index(&pp->front, &pp->n_front, &pp->alloc_front, idx);
                        return;
                }
        }
}

static void feed_all(struct nightly *n, struct pass *p)
{
        for (size_t i = 0; i < p->n_pools; i++)
                feed_pool(n, p, i);
}

/* The job's pass if it is still the current one of this leadership. Lock held. */
static struct pass *job_pass(struct nightly *n, const struct nightly_job *j)
{
        struct pass *p = n->pass;
        if (!n->leading || !p || p->serial != j->pass_serial || p->lead_serial != n->lead_serial)
                return NULL;
        return p;
}

static void job_release(struct nightly *n, struct nightly_job *j)
{
        n->jobs_out--;
        pthread_cond_broadcast(&n->jobs_cond);
        job_free(j);
}

bool nightly_save_is_cancelled(const struct nightly_save_request *req)
{
        return req->job && atomic_load(&req->job->cancelled);
}

static void running_unlink(struct nightly *n, struct nightly_job *j)
{
        for (struct nightly_job **pj = &n->running; *pj; pj = &(*pj)->running_next)
                if (*pj == j) {
                        *pj = j->running_next;
                        break;
                }
        j->running_next = NULL;
}

/* Put an item in backoff before its next attempt (`delay_us` 0: back in line now). Lock held. */
static void backoff_item(struct nightly *n, struct pass *p, size_t idx, int64_t delay_us)
{
        struct item *it = &p->items[idx];

        if (delay_us <= 0) {
                requeue_front(p, idx);
                return;
        }
        it->state = ITEM_BACKOFF;
        it->retry_mono = clock_mono_us() + delay_us;
        it->retry_wall = now_us(n) + delay_us;
        p->n_backoff++;
}

static int64_t backoff_for(const struct nightly *n, int attempts)
{
        int shift = CLAMP(attempts - 1, 0, 20);
        int64_t d = n->opt.retry_backoff_us;
        for (int i = 0; i < shift && d < MAX_BACKOFF_US; i++)
                d *= 2;
        return MIN(d, MAX_BACKOFF_US);
}

/* Account for the outcome of a job of the current pass. Lock held. */
static void settle_job(struct nightly *n, struct pass *p, struct nightly_job *j, int r,
                       const struct nightly_save_result *res)
{
        struct item *it = &p->items[j->item];
        struct ppool *pp = &p->pools[it->pool];

        pp->active--;
        if (r == -ESTALE) {
                n->deposed = true;
                requeue_front(p, j->item);
        } else if (r == -ECANCELED) {
                requeue_front(p, j->item);
        } else if (j->adopt && r == -ENOENT) {
                /* Nothing reached the instance: the run was taken over; save it normally. */
                it->adopt = false;
                requeue_front(p, j->item);
        } else if (!j->adopt && r == -EAGAIN) {
                /* Nothing was attempted (e.g. PostgreSQL unreachable): no attempt is counted. */
                backoff_item(n, p, j->item, MAX(n->opt.retry_backoff_us, n->opt.store_retry_us));
        } else if (r == 0 && res->ok) {
                it->attempts = j->attempt;
                it->adopt = false;
                settle_item(p, j->item, ITEM_DONE);
        } else {
                it->attempts = j->attempt;
                it->adopt = false;
                if (r == 0)
                        snprintf(p->last_error, sizeof(p->last_error), "%s: %s", it->id,
                                 res->error[0] ? res->error : "the save failed");
                else
                        snprintf(p->last_error, sizeof(p->last_error), "%s: %s", it->id,
                                 strerror(-r));
                if (it->attempts >= n->opt.max_attempts) {
                        log_warn("nightly pass %s: instance \"%s\" failed after %d attempts: %s",
                                 p->date, it->id, it->attempts, p->last_error);
                        settle_item(p, j->item, ITEM_FAILED);
                } else {
                        log_info("nightly pass %s: attempt %d of instance \"%s\" failed (%s); "
                                 "retrying",
                                 p->date, it->attempts, it->id, p->last_error);
                        backoff_item(n, p, j->item, backoff_for(n, it->attempts));
                }
        }
        feed_pool(n, p, it->pool);
        kick(n);
}

static void job_run(struct sched_job *sj)
{
        struct nightly_job *j = (struct nightly_job *)sj;
        struct nightly *n = j->n;
        struct nightly_save_result res = {0};
        struct pass *p;
        int r;

        pthread_mutex_lock(&n->lock);
        p = job_pass(n, j);
        if (!p || (!j->adopt && !feeding_allowed(n))) {
                /* Paused, waiting for the progress store, or stale: this save does not start. */
                if (p) {
                        p->pools[p->items[j->item].pool].active--;
                        requeue_front(p, j->item);
                }
                job_release(n, j);
                pthread_mutex_unlock(&n->lock);
                return;
        }
        p->items[j->item].state = ITEM_RUNNING;
        p->items[j->item].started_us = now_us(n);
        j->running_next = n->running;
        n->running = j;
        struct nightly_save_request req = {
            .instance_id = j->id,
            .pool = j->pool,
            .date = j->date,
            .pass_id = j->pass_id,
            .attempt = j->attempt,
            .estimate_us = j->job.estimate_us,
            .used_memory = j->used_memory,
            .generation = j->job.generation,
            .job = j,
        };
        pthread_mutex_unlock(&n->lock);

        r = j->adopt ? n->ops.adopt(n->ops.userdata, &req, &res)
                     : n->ops.save(n->ops.userdata, &req, &res);
        res.error[sizeof(res.error) - 1] = '\0';

        pthread_mutex_lock(&n->lock);
        running_unlink(n, j);
        p = job_pass(n, j);
        if (p)
                settle_job(n, p, j, r, &res);
        job_release(n, j);
        pthread_mutex_unlock(&n->lock);
}

static void job_cancel(struct sched_job *sj, enum sched_cancel_reason reason)
{
        struct nightly_job *j = (struct nightly_job *)sj;
        struct nightly *n = j->n;

        pthread_mutex_lock(&n->lock);
        struct pass *p = job_pass(n, j);
        if (p) {
                p->pools[p->items[j->item].pool].active--;
                requeue_front(p, j->item);
                kick(n);
        }
        job_release(n, j);
        pthread_mutex_unlock(&n->lock);
}

/* ---- building a pass --------------------------------------------------------------------- */

static struct pass *pass_alloc(const struct nightly *n, const char *date, size_t n_items)
{
        struct pass *p = calloc(1, sizeof(*p));
        if (!p)
                return NULL;
        p->items = calloc(n_items ? n_items : 1, sizeof(*p->items));
        p->pools = calloc(n_items ? n_items : 1, sizeof(*p->pools));
        if (!p->items || !p->pools) {
                pass_free(p);
                return NULL;
        }
        snprintf(p->date, sizeof(p->date), "%s", date);
        nightly_pending_key(n->key_prefix, date, p->key, sizeof(p->key));
        return p;
}

/* The index of pool `name` in the pass, created if new. */
static size_t pass_pool(const struct nightly *n, struct pass *p, const char *name)
{
        for (size_t i = 0; i < p->n_pools; i++)
                if (streq(p->pools[i].name, name))
                        return i;
        struct ppool *pp = &p->pools[p->n_pools];
        snprintf(pp->name, sizeof(pp->name), "%s", name);
        int limit = n->opt.limit_fn ? n->opt.limit_fn(name, n->opt.limit_userdata) : 1;
        pp->limit = CLAMP(limit, 1, 1024);
        return p->n_pools++;
}

struct order_key {
        int64_t estimate_us;
        uint64_t used_memory;
        const char *id;
        size_t idx;
};

static int order_key_cmp(const void *a, const void *b)
{
        const struct order_key *x = a, *y = b;
        if (x->estimate_us != y->estimate_us)
                return x->estimate_us > y->estimate_us ? -1 : 1;
        if (x->used_memory != y->used_memory)
                return x->used_memory > y->used_memory ? -1 : 1;
        return strcmp(x->id, y->id);
}

/* Give each pool its pending items, biggest first (the longest saves early: the best makespan). */
static int pass_order(struct pass *p)
{
        struct order_key *keys = calloc(p->n_items ? p->n_items : 1, sizeof(*keys));
        size_t nk = 0;

        if (!keys)
                return -ENOMEM;
        for (size_t i = 0; i < p->n_items; i++) {
                struct item *it = &p->items[i];
                if (it->state != ITEM_PENDING || it->adopt)
                        continue;
                keys[nk++] = (struct order_key){it->estimate_us, it->used_memory, it->id, i};
                p->pools[it->pool].n_order++;
        }
        if (nk > 1)
                qsort(keys, nk, sizeof(*keys), order_key_cmp);
        for (size_t i = 0; i < p->n_pools; i++) {
                struct ppool *pp = &p->pools[i];
                pp->order = calloc(pp->n_order ? pp->n_order : 1, sizeof(*pp->order));
                if (!pp->order) {
                        free(keys);
                        return -ENOMEM;
                }
                pp->n_order = 0;
        }
        for (size_t k = 0; k < nk; k++) {
                struct ppool *pp = &p->pools[p->items[keys[k].idx].pool];
                pp->order[pp->n_order++] = keys[k].idx;
        }
        free(keys);
        return 0;
}

static int item_from_entry(struct nightly *n, struct pass *p, const struct list_entry *e,
                           struct item *it)
{
        it->id = strdup(e->id);
        if (!it->id)
                return -ENOMEM;
        it->used_memory = e->used_memory;
        it->estimate_us = e->estimate_us;
        if (n->ops.estimate) {
                struct nightly_instance inst = {
                    .id = e->id,
                    .pool = e->pool,
                    .used_memory = e->used_memory,
                    .estimate_us = e->estimate_us,
                    .last_success_us = e->last_success_us,
                };
                int64_t est = n->ops.estimate(n->ops.userdata, &inst);
                if (est > 0)
                        it->estimate_us = est;
        }
        it->pool = e->pool[0] ? pass_pool(n, p, e->pool) : pass_pool(n, p, "default");
        return 0;
}

/* A fresh pass over `instances` (sorted, unique), started at `started_us`. Unlocked. */
static struct pass *pass_build_fresh(struct nightly *n, const char *date, int64_t started_us,
                                     const struct nightly_list *instances)
{
        struct pass *p = pass_alloc(n, date, instances->n);
        if (!p)
                return NULL;
        p->started_us = started_us;
        for (size_t i = 0; i < instances->n; i++) {
                const struct list_entry *e = &instances->entries[i];
                struct item *it = &p->items[p->n_items];
                if (item_from_entry(n, p, e, it) < 0) {
                        pass_free(p);
                        return NULL;
                }
                p->n_items++;
                bool recent = n->opt.skip_if_saved_within_us > 0 && e->last_success_us > 0 &&
                              e->last_success_us >= started_us - n->opt.skip_if_saved_within_us;
                if (recent) {
                        it->state = ITEM_SKIPPED;
                        p->totals.skipped++;
                        p->committed.skipped++;
                } else {
                        it->state = ITEM_PENDING;
                        it->in_set = true;
                        p->n_open++;
                }
        }
        p->totals.total = p->committed.total = (int)p->n_items;
        if (pass_order(p) < 0) {
                pass_free(p);
                return NULL;
        }
        return p;
}

/*
 * A resumed pass: the members of the set are what is left. A member no longer enabled is skipped;
 * one saved successfully since the pass started is done (its removal was lost); one the previous
 * leader was saving is adopted first. Unlocked.
 */
static struct pass *pass_build_resumed(struct nightly *n, const char *date,
                                       const struct nightly_pass_record *rec,
                                       const struct nightly_list *members,
                                       const struct nightly_list *instances,
                                       const struct nightly_list *in_flight, int64_t now)
{
        struct pass *p = pass_alloc(n, date, members->n);
        if (!p)
                return NULL;
        p->started_us = rec ? rec->started_us : now;
        p->id = rec ? rec->id : 0;
        for (size_t i = 0; i < members->n; i++) {
                const struct list_entry *m = &members->entries[i];
                const struct list_entry *e = list_find(instances, m->id);
                struct item *it = &p->items[p->n_items];
                p->n_open++;
                if (!e) {
                        it->id = strdup(m->id);
                        if (!it->id) {
                                pass_free(p);
                                return NULL;
                        }
                        it->pool = NO_POOL;
                        it->in_set = true;
                        p->n_items++;
                        settle_item(p, p->n_items - 1, ITEM_SKIPPED);
                        continue;
                }
                if (item_from_entry(n, p, e, it) < 0) {
                        pass_free(p);
                        return NULL;
                }
                it->in_set = true;
                it->state = ITEM_PENDING;
                p->n_items++;
                /* A run left in flight is reconciled first, even if the save happened: the
                 * adoption also finishes its run row. */
                if (list_find(in_flight, m->id)) {
                        it->adopt = true;
                        continue;
                }
                if (rec && e->last_success_us > 0 && e->last_success_us >= rec->started_us)
                        settle_item(p, p->n_items - 1, ITEM_DONE);
        }
        /* Totals: what the record says was settled before, plus what this leader finds. */
        struct nightly_totals mine = p->totals;
        int left = (int)members->n;
        if (rec) {
                int before = rec->totals.done + rec->totals.failed + rec->totals.skipped;
                int total = MAX(rec->totals.total, before + left);
                p->committed.total = total;
                /* Ids that left the set after the record was last updated were settled: done. */
                p->committed.done = rec->totals.done + (total - left - before);
                p->committed.failed = rec->totals.failed;
                p->committed.skipped = rec->totals.skipped;
        } else {
                p->committed.total = left;
        }
        p->totals.total = p->committed.total;
        p->totals.done = mine.done + p->committed.done;
        p->totals.failed = mine.failed + p->committed.failed;
        p->totals.skipped = mine.skipped + p->committed.skipped;
        if (pass_order(p) < 0) {
                pass_free(p);
                return NULL;
        }
        for (size_t i = 0; i < p->n_items; i++)
                if (p->items[i].adopt && p->items[i].state == ITEM_PENDING)
                        push_index(&p->pools[p->items[i].pool].front,
                                   &p->pools[p->items[i].pool].n_front,
                                   &p->pools[p->items[i].pool].alloc_front, i);
        return p;
}

static void install_pass(struct nightly *n, struct pass *p, enum phase phase)
{
        pass_free(n->pass);
        p->serial = ++n->pass_serial;
        p->lead_serial = n->lead_serial;
        p->window_end_us = p->started_us + n->opt.window_us;
        n->pass = p;
        n->phase = phase;
        n->progress_down = false;
        snprintf(n->handled_date, sizeof(n->handled_date), "%s", p->date);
        n->handled_started_us = p->started_us;
}

static void drop_pass(struct nightly *n)
{
        pass_free(n->pass);
        n->pass = NULL;
        n->phase = PHASE_IDLE;
        n->paused = false;
        n->progress_down = false;
}

/* Submit the adoptions of a resumed pass, whatever the pause state: they hold places. */
static void submit_adoptions(struct nightly *n, struct pass *p)
{
        for (size_t i = 0; i < p->n_items; i++) {
                struct item *it = &p->items[i];
                if (!it->adopt || it->state != ITEM_PENDING)
                        continue;
                if (submit_item(n, p, i, true) < 0)
                        return; /* left in line; fed as an adoption when feeding is allowed */
        }
}

/* ---- the thread -------------------------------------------------------------------------- */

static bool store_gate_open(struct nightly *n)
{
        return clock_mono_us() >= n->retry_at_mono;
}

static void store_failed(struct nightly *n)
{
        n->retry_at_mono = clock_mono_us() + n->opt.store_retry_us;
}

/* Withdraw the queued saves (not the adoptions) of the current pass. Called with the lock held;
 * drops it meanwhile. */
static void withdraw_saves(struct nightly *n, struct pass *p, bool adoptions_too)
{
        size_t count = p->n_pools;
        char(*names)[POOL_NAME_MAX + 1] = calloc(count ? count : 1, sizeof(*names));
        if (!names)
                return; /* the jobs then find the pass paused when they start, and do not save */
        for (size_t i = 0; i < count; i++)
                memcpy(names[i], p->pools[i].name, sizeof(names[i]));
        pthread_mutex_unlock(&n->lock);
        for (size_t i = 0; i < count; i++) {
                sched_pools_withdraw(n->pools, names[i], n->opt.owner_key, INT64_MIN);
                if (adoptions_too)
                        sched_pools_withdraw(n->pools, names[i], n->opt.owner_key + 1, INT64_MIN);
        }
        pthread_mutex_lock(&n->lock);
        free(names);
}

static void progress_unreachable(struct nightly *n, struct pass *p, int r)
{
        if (!n->progress_down)
                log_warn("nightly pass %s: the progress Redis is unreachable (%s); the pass waits",
                         p->date, strerror(-r));
        n->progress_down = true;
        store_failed(n);
        withdraw_saves(n, p, false);
}

static void progress_reachable(struct nightly *n, struct pass *p)
{
        if (n->progress_down)
                log_info("nightly pass %s: the progress Redis is back; the pass continues",
                         p->date);
        n->progress_down = false;
}

/* Did leadership (or the pass) change while the lock was dropped? */
static bool changed(struct nightly *n, uint64_t lead_serial)
{
        return n->stopping || !n->leading || n->lead_serial != lead_serial || n->deposed;
}

static void note_stale(struct nightly *n, int r)
{
        if (r == -ESTALE)
                n->deposed = true;
        else
                store_failed(n);
}

/* Today's local date, and yesterday's. */
static int local_dates(struct nightly *n, int64_t now, char today[NIGHTLY_DATE_MAX],
                       char yesterday[NIGHTLY_DATE_MAX], int *ret_second_of_day)
{
        struct nightly_local_time lt, ly;
        int r = n->opt.local_time(now, &lt, n->opt.local_time_userdata);
        if (r < 0)
                return r;
        /* Two hours before local midnight is yesterday whatever a DST change did today. */
        r = n->opt.local_time(now - (int64_t)(lt.second_of_day + 7200) * USEC_PER_SEC, &ly,
                              n->opt.local_time_userdata);
        if (r < 0)
                return r;
        memcpy(today, lt.date, NIGHTLY_DATE_MAX);
        memcpy(yesterday, ly.date, NIGHTLY_DATE_MAX);
        today[NIGHTLY_DATE_MAX - 1] = yesterday[NIGHTLY_DATE_MAX - 1] = '\0';
        *ret_second_of_day = lt.second_of_day;
        return 0;
}

/* The look for an interrupted pass is over (or leadership ended). Lock held. */
static void resume_checked(struct nightly *n)
{
        n->resume_check = false;
        pthread_cond_broadcast(&n->resume_cond);
}

/*
 * On becoming leader: the pending set of today's or yesterday's pass means an interrupted pass;
 * resume it. Lock held; dropped during the I/O.
 */
static void do_resume_check(struct nightly *n)
{
        uint64_t ls = n->lead_serial;
        char dates[2][NIGHTLY_DATE_MAX], key[512];
        struct nightly_list members = {0}, instances = {0}, in_flight = {0};
        struct nightly_pass_record rec = {0};
        struct pass *p = NULL;
        bool have_rec = false;
        int sod, r, found = -1;

        r = local_dates(n, now_us(n), dates[0], dates[1], &sod);
        if (r < 0) {
                log_error("cannot compute the local date: %s", strerror(-r));
                store_failed(n);
                return;
        }
        pthread_mutex_unlock(&n->lock);
        for (int d = 0; d < 2 && found < 0; d++) {
                nightly_pending_key(n->key_prefix, dates[d], key, sizeof(key));
                r = n->ops.progress_exists(n->ops.userdata, key);
                if (r < 0)
                        goto progress_fail;
                if (r > 0)
                        found = d;
        }
        if (found < 0) {
                /* No set: finished or never started. A record left unfinished (its last id was
                 * removed, then the leader died) is finished now. */
                for (int d = 0; d < 2; d++) {
                        r = n->ops.pass_lookup(n->ops.userdata, dates[d], &rec);
                        if (r == -ENOENT)
                                continue;
                        if (r < 0)
                                goto store_fail;
                        if (rec.finished)
                                continue;
                        rec.totals.done =
                            MAX(0, rec.totals.total - rec.totals.failed - rec.totals.skipped);
                        r = n->ops.pass_finish(n->ops.userdata, rec.id, &rec.totals);
                        if (r < 0)
                                goto store_fail;
                        log_info("nightly pass %s: finished the record its previous leader left "
                                 "open",
                                 dates[d]);
                }
                pthread_mutex_lock(&n->lock);
                if (!changed(n, ls)) {
                        resume_checked(n);
                        n->progress_down = false;
                }
                return;
        }
        r = n->ops.progress_members(n->ops.userdata, key, &members);
        if (r < 0)
                goto progress_fail;
        r = n->ops.pass_lookup(n->ops.userdata, dates[found], &rec);
        if (r < 0 && r != -ENOENT)
                goto store_fail;
        have_rec = r == 0;
        r = n->ops.list_instances(n->ops.userdata, &instances);
        if (r < 0)
                goto store_fail;
        if (have_rec && n->ops.list_in_flight) {
                r = n->ops.list_in_flight(n->ops.userdata, rec.id, &in_flight);
                if (r < 0)
                        goto store_fail;
        }
        list_sort_unique(&members);
        list_sort_unique(&instances);
        list_sort_unique(&in_flight);
        p = pass_build_resumed(n, dates[found], have_rec ? &rec : NULL, &members, &instances,
                               &in_flight, now_us(n));
        list_release(&members);
        list_release(&instances);
        list_release(&in_flight);
        pthread_mutex_lock(&n->lock);
        if (!p) {
                log_error("nightly pass %s: out of memory resuming it", dates[found]);
                store_failed(n);
                return;
        }
        if (changed(n, ls)) {
                pass_free(p);
                return;
        }
        p->set_created = true;
        p->recorded = have_rec;
        resume_checked(n);
        n->paused = have_rec && rec.paused;
        install_pass(n, p, have_rec ? PHASE_RUNNING : PHASE_STARTING);
        log_info("nightly pass %s: resuming an interrupted pass: %d of %d left%s", p->date,
                 (int)p->n_open, p->totals.total, n->paused ? " (paused)" : "");
        submit_adoptions(n, p);
        feed_all(n, p);
        kick(n);
        return;

progress_fail:
        list_release(&members);
        pthread_mutex_lock(&n->lock);
        if (!changed(n, ls)) {
                if (!n->progress_down)
                        log_warn("cannot look for an interrupted nightly pass: the progress Redis "
                                 "is unreachable (%s); retrying",
                                 strerror(-r));
                n->progress_down = true;
                store_failed(n);
        }
        return;
store_fail:
        list_release(&members);
        list_release(&instances);
        list_release(&in_flight);
        pthread_mutex_lock(&n->lock);
        if (!changed(n, ls)) {
                log_warn("cannot look for an interrupted nightly pass: %s; retrying", strerror(-r));
                note_stale(n, r);
        }
}

/* Build and install a fresh pass of `date`. Lock held; dropped during the I/O. */
static int do_start(struct nightly *n, const char *date)
{
        uint64_t ls = n->lead_serial;
        struct nightly_list instances = {0};
        char d[NIGHTLY_DATE_MAX];
        int64_t started = now_us(n);
        struct pass *p;
        int r;

        snprintf(d, sizeof(d), "%s", date);
        pthread_mutex_unlock(&n->lock);
        r = n->ops.list_instances(n->ops.userdata, &instances);
        if (r < 0) {
                list_release(&instances);
                pthread_mutex_lock(&n->lock);
                if (!changed(n, ls)) {
                        log_warn("nightly pass %s: cannot list the instances: %s; retrying", d,
                                 strerror(-r));
                        note_stale(n, r);
                }
                return r;
        }
        list_sort_unique(&instances);
        p = pass_build_fresh(n, d, started, &instances);
        list_release(&instances);
        pthread_mutex_lock(&n->lock);
        if (!p) {
                store_failed(n);
                return -ENOMEM;
        }
        if (changed(n, ls)) {
                pass_free(p);
                return -EAGAIN;
        }
        n->paused = false;
        install_pass(n, p, PHASE_STARTING);
        log_info("nightly pass %s: starting over %d instances (%d skipped as saved recently)", d,
                 p->totals.total, p->totals.skipped);
        kick(n);
        return 0;
}

/* Write the set, then the record (the set is the commit point, docs/nightly.md). Lock held. */
static void do_setup(struct nightly *n, struct pass *p)
{
        uint64_t ls = n->lead_serial;
        int r;

        if (!p->set_created) {
                const char **ids = calloc(p->n_items ? p->n_items : 1, sizeof(*ids));
                size_t count = 0;
                if (!ids) {
                        store_failed(n);
                        return;
                }
                for (size_t i = 0; i < p->n_items; i++)
                        if (p->items[i].in_set)
                                ids[count++] = p->items[i].id; /* immutable while the pass lives */
                pthread_mutex_unlock(&n->lock);
                r = count ? n->ops.progress_create(n->ops.userdata, p->key, ids, count,
                                                   n->opt.set_ttl_s)
                          : 0;
                free(ids);
                pthread_mutex_lock(&n->lock);
                if (changed(n, ls))
                        return;
                if (r < 0) {
                        progress_unreachable(n, p, r);
                        return;
                }
                progress_reachable(n, p);
                p->set_created = true;
        }
        if (!p->recorded) {
                struct nightly_totals t = p->committed;
                int64_t id = 0;
                pthread_mutex_unlock(&n->lock);
                r = n->ops.pass_create(n->ops.userdata, p->date, p->started_us, &t, &id);
                pthread_mutex_lock(&n->lock);
                if (changed(n, ls))
                        return;
                if (r < 0) {
                        log_warn("nightly pass %s: cannot record the pass: %s; retrying", p->date,
                                 strerror(-r));
                        note_stale(n, r);
                        return;
                }
                p->id = id;
                p->recorded = true;
                p->dirty = true;
        }
        n->phase = PHASE_RUNNING;
        feed_all(n, p);
}

/* Remove settled ids from the set. Lock held; dropped during the I/O. */
static void do_removals(struct nightly *n, struct pass *p)
{
        uint64_t ls = n->lead_serial;
        size_t count = p->n_removals, removed = 0;
        const char **ids = calloc(count, sizeof(*ids));
        int r = 0;

        if (!ids)
                return;
        for (size_t i = 0; i < count; i++)
                ids[i] = p->items[p->removals[i]].id;
        pthread_mutex_unlock(&n->lock);
        for (; removed < count; removed++) {
                r = n->ops.progress_remove(n->ops.userdata, p->key, ids[removed]);
                if (r < 0)
                        break;
        }
        free(ids);
        pthread_mutex_lock(&n->lock);
        if (changed(n, ls))
                return;
        for (size_t i = 0; i < removed; i++) {
                p->items[p->removals[i]].in_set = false;
                count_item(&p->committed, p->items[p->removals[i]].state);
                p->dirty = true;
        }
        memmove(p->removals, p->removals + removed, (p->n_removals - removed) * sizeof(size_t));
        p->n_removals -= removed;
        if (r < 0)
                progress_unreachable(n, p, r);
        else
                progress_reachable(n, p);
}

static void do_update(struct nightly *n, struct pass *p)
{
        uint64_t ls = n->lead_serial;
        struct nightly_totals t = p->committed;
        bool paused = n->paused;

        p->dirty = false;
        pthread_mutex_unlock(&n->lock);
        int r = n->ops.pass_update(n->ops.userdata, p->id, paused, &t);
        pthread_mutex_lock(&n->lock);
        if (changed(n, ls))
                return;
        if (r < 0) {
                log_debug("nightly pass %s: cannot update the record: %s", p->date, strerror(-r));
                p->dirty = true;
                note_stale(n, r);
        }
}

static void do_finish(struct nightly *n, struct pass *p)
{
        uint64_t ls = n->lead_serial;
        struct nightly_totals t = p->committed;
        int r = 0;

        n->phase = PHASE_FINISHING;
        pthread_mutex_unlock(&n->lock);
        if (p->set_created)
                r = n->ops.progress_count(n->ops.userdata, p->key);
        pthread_mutex_lock(&n->lock);
        if (changed(n, ls))
                return;
        if (r < 0) {
                progress_unreachable(n, p, r);
                return;
        }
        progress_reachable(n, p);
        if (r > 0)
                log_warn("nightly pass %s: %d ids this pass does not know are left in \"%s\"; "
                         "they expire with it",
                         p->date, r, p->key);
        pthread_mutex_unlock(&n->lock);
        r = n->ops.pass_finish(n->ops.userdata, p->id, &t);
        pthread_mutex_lock(&n->lock);
        if (changed(n, ls))
                return;
        if (r < 0) {
                log_warn("nightly pass %s: cannot record its end: %s; retrying", p->date,
                         strerror(-r));
                note_stale(n, r);
                return;
        }
        n->phase = PHASE_DONE;
        p->finished_us = now_us(n);
        log_info("nightly pass %s: finished: %d saved, %d failed, %d skipped of %d", p->date,
                 t.done, t.failed, t.skipped, t.total);
}

/*
 * The expected end of the pass from the estimates, with the pools' planning rule: each pool plans
 * what it has left behind what it is saving now. Lock held. 0 on OOM.
 */
static int64_t compute_eta(struct nightly *n, struct pass *p, int64_t now)
{
        size_t np = p->n_pools, total_limit = 0;
        size_t *count = calloc(np + 1, sizeof(*count)), *fill = calloc(np + 1, sizeof(*fill));
        size_t *busy_off = calloc(np + 1, sizeof(*busy_off));
        int *n_busy = calloc(np + 1, sizeof(*n_busy));
        struct plan_slot *slots = calloc(p->n_items ? p->n_items : 1, sizeof(*slots));
        int64_t *busy = NULL, eta = now;

        if (!count || !fill || !busy_off || !n_busy || !slots)
                goto out;
        for (size_t i = 0; i < np; i++) {
                busy_off[i] = total_limit;
                total_limit += (size_t)p->pools[i].limit;
        }
        busy = calloc(total_limit ? total_limit : 1, sizeof(*busy));
        if (!busy)
                goto out;
        for (size_t k = 0; k < total_limit; k++)
                busy[k] = now;
        /* Counting sort of the open items by pool; running ones occupy places. */
        for (size_t i = 0; i < p->n_items; i++) {
                const struct item *it = &p->items[i];
                if (it->pool == NO_POOL || it->state >= ITEM_DONE)
                        continue;
                if (it->state == ITEM_RUNNING && n_busy[it->pool] < p->pools[it->pool].limit) {
                        busy[busy_off[it->pool] + (size_t)n_busy[it->pool]++] =
                            MAX(now, it->started_us + it->estimate_us);
                        continue;
                }
                count[it->pool + 1]++;
        }
        for (size_t i = 1; i <= np; i++)
                count[i] += count[i - 1];
        for (size_t i = 0; i < p->n_items; i++) {
                const struct item *it = &p->items[i];
                if (it->pool == NO_POOL || it->state >= ITEM_DONE || it->state == ITEM_RUNNING)
                        continue;
                struct plan_slot *sl = &slots[count[it->pool] + fill[it->pool]++];
                sl->slot_us = it->state == ITEM_BACKOFF ? MAX(now, it->retry_wall) : now;
                sl->estimate_us = it->estimate_us;
                sl->seq = i;
        }
        for (size_t k = 0; k < total_limit; k++)
                eta = MAX(eta, busy[k]);
        for (size_t pi = 0; pi < np; pi++) {
                size_t ns = fill[pi];
                struct plan_slot *sl = &slots[count[pi]];
                if (ns > 0 && plan_pool(sl, ns, p->pools[pi].limit, &busy[busy_off[pi]]) == 0)
                        for (size_t s = 0; s < ns; s++)
                                eta = MAX(eta, sl[s].end_us);
        }
out:
        if (!busy)
                eta = 0;
        free(count);
        free(fill);
        free(busy_off);
        free(n_busy);
        free(slots);
        free(busy);
        return eta;
}

static void check_overrun(struct nightly *n, struct pass *p)
{
        int64_t mono = clock_mono_us();
        if (p->overrun_warned || !n->ops.overrun || mono < p->next_eta_check_mono)
                return;
        /* At most once a tick: the plan costs O(instances). */
        p->next_eta_check_mono = mono + n->opt.tick_us;
        int64_t eta = compute_eta(n, p, now_us(n));
        if (eta <= p->window_end_us)
                return;
        p->overrun_warned = true;
        char date[NIGHTLY_DATE_MAX];
        int64_t wend = p->window_end_us;
        snprintf(date, sizeof(date), "%s", p->date);
        log_warn("nightly pass %s: expected to end %" PRId64 " s after its window", date,
                 (eta - wend) / USEC_PER_SEC);
        pthread_mutex_unlock(&n->lock);
        n->ops.overrun(n->ops.userdata, date, eta, wend);
        pthread_mutex_lock(&n->lock);
}

static void promote_backoffs(struct nightly *n, struct pass *p)
{
        int64_t mono = clock_mono_us();
        if (p->n_backoff == 0)
                return;
        for (size_t i = 0; i < p->n_items; i++) {
                struct item *it = &p->items[i];
                if (it->state == ITEM_BACKOFF && it->retry_mono <= mono) {
                        p->n_backoff--;
                        requeue_front(p, i);
                }
        }
}

/* The scheduled start: is the pass of some date due now and not started yet? Lock held. */
static void check_scheduled_start(struct nightly *n)
{
        uint64_t ls = n->lead_serial;
        char today[NIGHTLY_DATE_MAX], yesterday[NIGHTLY_DATE_MAX];
        const char *date;
        int64_t now = now_us(n), sched;
        int64_t start_s = (int64_t)n->opt.start_minute * 60;
        int64_t window_s = n->opt.window_us / USEC_PER_SEC;
        int64_t base = now - ((now % USEC_PER_SEC) + USEC_PER_SEC) % USEC_PER_SEC;
        struct nightly_pass_record rec;
        int sod, r;

        if (local_dates(n, now, today, yesterday, &sod) < 0)
                return;
        if (sod >= start_s) {
                date = today;
                sched = base - (sod - start_s) * USEC_PER_SEC;
        } else if (start_s + window_s > 86400 && sod < start_s + window_s - 86400) {
                date = yesterday;
                sched = base - (sod + 86400 - start_s) * USEC_PER_SEC;
        } else {
                return;
        }
        if (now >= sched + n->opt.window_us)
                return;
        if (streq(n->handled_date, date) && n->handled_started_us >= sched)
                return;
        char d[NIGHTLY_DATE_MAX];
        snprintf(d, sizeof(d), "%s", date);
        pthread_mutex_unlock(&n->lock);
        r = n->ops.pass_lookup(n->ops.userdata, d, &rec);
        pthread_mutex_lock(&n->lock);
        if (changed(n, ls) || (n->pass && n->phase != PHASE_DONE))
                return;
        if (r < 0 && r != -ENOENT) {
                note_stale(n, r);
                return;
        }
        if (r == 0 && rec.started_us >= sched) {
                snprintf(n->handled_date, sizeof(n->handled_date), "%s", d);
                n->handled_started_us = rec.started_us;
                return;
        }
        do_start(n, d);
}

static void step(struct nightly *n)
{
        n->kicked = false;
        if (n->pass && (!n->leading || n->pass->lead_serial != n->lead_serial))
                drop_pass(n);
        if (!n->leading)
                return;
        if (n->deposed) {
                if (!n->deposed_notified) {
                        n->deposed_notified = true;
                        if (n->pass)
                                withdraw_saves(n, n->pass, true);
                        log_warn("nightly: a store says this replica was deposed; stopping");
                        if (n->ops.deposed) {
                                pthread_mutex_unlock(&n->lock);
                                n->ops.deposed(n->ops.userdata);
                                pthread_mutex_lock(&n->lock);
                        }
                }
                return;
        }
        if (n->resume_check) {
                if (store_gate_open(n))
                        do_resume_check(n);
                return;
        }
        struct pass *p = n->pass;
        if (p && n->phase == PHASE_STARTING) {
                if (store_gate_open(n))
                        do_setup(n, p);
                return;
        }
        if (p && (n->phase == PHASE_RUNNING || n->phase == PHASE_FINISHING)) {
                uint64_t ls = n->lead_serial;
                promote_backoffs(n, p);
                if (store_gate_open(n)) {
                        if (p->n_removals > 0) {
                                do_removals(n, p);
                        } else if (n->progress_down) {
                                pthread_mutex_unlock(&n->lock);
                                int r = n->ops.progress_exists(n->ops.userdata, p->key);
                                pthread_mutex_lock(&n->lock);
                                if (changed(n, ls))
                                        return;
                                if (r < 0)
                                        store_failed(n);
                                else
                                        progress_reachable(n, p);
                        }
                        if (changed(n, ls))
                                return;
                        if (p->dirty && p->recorded && store_gate_open(n))
                                do_update(n, p);
                        if (changed(n, ls))
                                return;
                }
                feed_all(n, p);
                if (p->n_open == 0 && p->n_removals == 0) {
                        if (store_gate_open(n))
                                do_finish(n, p);
                        return;
                }
                check_overrun(n, p);
                return;
        }
        /* No pass in progress. */
        if (n->start_requested) {
                char today[NIGHTLY_DATE_MAX], yesterday[NIGHTLY_DATE_MAX];
                uint64_t ls = n->lead_serial;
                int sod;
                /* The request stays up while do_start() lists the instances without the lock,
                 * so the state reads "starting" from the request to the pass, never "idle". */
                bool retry = local_dates(n, now_us(n), today, yesterday, &sod) == 0 &&
                             do_start(n, today) < 0; /* tried again after the store backoff */
                if (!changed(n, ls))
                        n->start_requested = retry;
                return;
        }
        if (n->opt.enabled && store_gate_open(n))
                check_scheduled_start(n);
}

/* How long the thread may sleep. Lock held. */
static int64_t next_wait(struct nightly *n)
{
        int64_t mono = clock_mono_us();
        int64_t wait = n->opt.tick_us;

        if (n->retry_at_mono > mono)
                wait = MIN(wait, n->retry_at_mono - mono);
        if (n->pass && n->pass->n_backoff > 0)
                for (size_t i = 0; i < n->pass->n_items; i++)
                        if (n->pass->items[i].state == ITEM_BACKOFF)
                                wait = MIN(wait, n->pass->items[i].retry_mono - mono);
        return MAX(wait, 1000);
}

static void *thread_main(void *arg)
{
        struct nightly *n = arg;

        pthread_mutex_lock(&n->lock);
        while (!n->stopping) {
                step(n);
                if (n->stopping)
                        break;
                if (!n->kicked)
                        (void)clock_cond_wait_us(&n->cond, &n->lock, next_wait(n));
        }
        pthread_mutex_unlock(&n->lock);
        return NULL;
}

/* ---- the public face --------------------------------------------------------------------- */

struct nightly *nightly_new(struct sched_pools *pools, const struct nightly_ops *ops,
                            const struct nightly_options *opt)
{
        if (!pools || !ops || !opt || opt->max_attempts < 1 || opt->start_minute < 0 ||
            opt->start_minute >= 24 * 60 || opt->owner_key == 0 || opt->owner_key == UINT64_MAX ||
            opt->window_us <= 0 || opt->tick_us <= 0 || opt->store_retry_us <= 0 ||
            opt->retry_backoff_us < 0 || opt->set_ttl_s <= 0)
                return NULL;
        if (!ops->list_instances || !ops->pass_create || !ops->pass_lookup || !ops->pass_update ||
            !ops->pass_finish || !ops->progress_exists || !ops->progress_create ||
            !ops->progress_remove || !ops->progress_members || !ops->progress_count || !ops->save ||
            (ops->list_in_flight && !ops->adopt))
                return NULL;

        struct nightly *n = calloc(1, sizeof(*n));
        if (!n)
                return NULL;
        n->key_prefix = strdup(opt->key_prefix ? opt->key_prefix : "persistd");
        if (!n->key_prefix) {
                free(n);
                return NULL;
        }
        n->pools = pools;
        n->ops = *ops;
        n->opt = *opt;
        n->opt.key_prefix = n->key_prefix;
        if (!n->opt.now)
                n->opt.now = default_now;
        if (!n->opt.local_time)
                n->opt.local_time = nightly_local_time_utc;
        pthread_mutex_init(&n->lock, NULL);
        (void)clock_cond_init(&n->cond);
        (void)clock_cond_init(&n->jobs_cond);
        (void)clock_cond_init(&n->resume_cond);
        return n;
}

int nightly_start(struct nightly *n)
{
        int r;

        pthread_mutex_lock(&n->lock);
        if (n->thread_started || n->stopping) {
                pthread_mutex_unlock(&n->lock);
                return n->stopping ? -ESHUTDOWN : -EALREADY;
        }
        r = pthread_create(&n->thread, NULL, thread_main, n);
        if (r == 0)
                n->thread_started = true;
        pthread_mutex_unlock(&n->lock);
        return -r;
}

void nightly_start_leading(struct nightly *n, uint64_t generation)
{
        pthread_mutex_lock(&n->lock);
        n->leading = true;
        n->generation = generation;
        n->lead_serial++;
        n->deposed = false;
        n->deposed_notified = false;
        n->resume_check = true;
        n->start_requested = false;
        n->paused = false;
        n->progress_down = false;
        n->retry_at_mono = 0;
        n->handled_date[0] = '\0';
        kick(n);
        pthread_mutex_unlock(&n->lock);
}

void nightly_stop_leading(struct nightly *n)
{
        pthread_mutex_lock(&n->lock);
        if (!n->leading) {
                pthread_mutex_unlock(&n->lock);
                return;
        }
        n->leading = false;
        n->generation = 0;
        n->lead_serial++;
        resume_checked(n);
        n->start_requested = false;
        for (struct nightly_job *j = n->running; j; j = j->running_next)
                atomic_store(&j->cancelled, true);
        if (n->pass)
                withdraw_saves(n, n->pass, true);
        kick(n);
        pthread_mutex_unlock(&n->lock);
}

int nightly_wait_resume_checked(struct nightly *n, int64_t timeout_us)
{
        int64_t deadline = clock_mono_us() + MAX(timeout_us, 0);
        int r = 0;

        pthread_mutex_lock(&n->lock);
        uint64_t ls = n->lead_serial;
        while (n->leading && n->lead_serial == ls && n->resume_check) {
                int64_t left = deadline - clock_mono_us();
                if (left <= 0) {
                        r = -ETIMEDOUT;
                        break;
                }
                (void)clock_cond_wait_us(&n->resume_cond, &n->lock, MIN(left, 100 * USEC_PER_MSEC));
        }
        pthread_mutex_unlock(&n->lock);
        return r;
}

static bool pass_in_progress(const struct nightly *n)
{
        return n->pass && (n->phase == PHASE_STARTING || n->phase == PHASE_RUNNING ||
                           n->phase == PHASE_FINISHING);
}

int nightly_pause(struct nightly *n)
{
        int r = 0;

        pthread_mutex_lock(&n->lock);
        if (!n->leading)
                r = -EAGAIN;
        else if (!pass_in_progress(n))
                r = -ENOENT;
        else if (!n->paused) {
                n->paused = true;
                n->pass->dirty = true;
                log_info("nightly pass %s: paused", n->pass->date);
                withdraw_saves(n, n->pass, false);
                kick(n);
        }
        pthread_mutex_unlock(&n->lock);
        return r;
}

int nightly_resume(struct nightly *n)
{
        int r = 0;

        pthread_mutex_lock(&n->lock);
        if (!n->leading)
                r = -EAGAIN;
        else if (!pass_in_progress(n))
                r = -ENOENT;
        else if (n->paused) {
                n->paused = false;
                n->pass->dirty = true;
                log_info("nightly pass %s: resumed", n->pass->date);
                feed_all(n, n->pass);
                kick(n);
        }
        pthread_mutex_unlock(&n->lock);
        return r;
}

int nightly_start_now(struct nightly *n)
{
        int r = 0;

        pthread_mutex_lock(&n->lock);
        if (!n->leading)
                r = -EAGAIN;
        else if (pass_in_progress(n) || n->resume_check || n->start_requested)
                r = -EBUSY;
        else {
                n->start_requested = true;
                kick(n);
        }
        pthread_mutex_unlock(&n->lock);
        return r;
}

static enum nightly_state public_state(const struct nightly *n)
{
        if (!n->leading)
                return NIGHTLY_IDLE;
        if (n->resume_check)
                return n->progress_down ? NIGHTLY_WAITING_PROGRESS : NIGHTLY_STARTING;
        if (!n->pass) /* a start asked for is a pass starting, not an idle one */
                return n->start_requested ? NIGHTLY_STARTING : NIGHTLY_IDLE;
        switch (n->phase) {
        case PHASE_STARTING:
                return n->progress_down ? NIGHTLY_WAITING_PROGRESS : NIGHTLY_STARTING;
        case PHASE_RUNNING:
                if (n->progress_down)
                        return NIGHTLY_WAITING_PROGRESS;
                return n->paused ? NIGHTLY_PAUSED : NIGHTLY_RUNNING;
        case PHASE_FINISHING:
                return n->progress_down ? NIGHTLY_WAITING_PROGRESS : NIGHTLY_FINISHING;
        case PHASE_DONE:
                return NIGHTLY_DONE;
        case PHASE_IDLE:
                break;
        }
        return NIGHTLY_IDLE;
}

void nightly_status_free(struct nightly_status *s)
{
        if (!s)
                return;
        for (size_t i = 0; s->pools && i < s->n_pools; i++) {
                if (!s->pools[i].current)
                        continue;
                for (int k = 0; k < s->pools[i].n_current; k++)
                        free(s->pools[i].current[k]);
                free(s->pools[i].current);
        }
        free(s->pools);
        free(s);
}

int nightly_status(struct nightly *n, struct nightly_status **ret)
{
        struct nightly_status *s = calloc(1, sizeof(*s));
        if (!s)
                return -ENOMEM;

        pthread_mutex_lock(&n->lock);
        s->state = public_state(n);
        s->leading = n->leading;
        struct pass *p = n->leading ? n->pass : NULL;
        if (!p)
                goto out;
        snprintf(s->date, sizeof(s->date), "%s", p->date);
        snprintf(s->last_error, sizeof(s->last_error), "%s", p->last_error);
        s->pass_id = p->id;
        s->totals = p->totals;
        s->pending =
            MAX(0, p->totals.total - p->totals.done - p->totals.failed - p->totals.skipped);
        s->started_us = p->started_us;
        s->finished_us = p->finished_us;
        s->window_end_us = p->window_end_us;
        if (pass_in_progress(n)) {
                s->eta_us = compute_eta(n, p, now_us(n));
                s->overrun = s->eta_us > s->window_end_us;
        }
        s->pools = calloc(p->n_pools ? p->n_pools : 1, sizeof(*s->pools));
        if (!s->pools)
                goto oom;
        s->n_pools = p->n_pools;
        for (size_t i = 0; i < p->n_pools; i++) {
                struct nightly_pool_status *ps = &s->pools[i];
                snprintf(ps->name, sizeof(ps->name), "%s", p->pools[i].name);
                ps->limit = p->pools[i].limit;
                ps->current = calloc((size_t)ps->limit, sizeof(char *));
                if (!ps->current)
                        goto oom;
        }
        for (size_t i = 0; i < p->n_items; i++) {
                struct item *it = &p->items[i];
                if (it->pool == NO_POOL)
                        continue;
                struct nightly_pool_status *ps = &s->pools[it->pool];
                if (it->state < ITEM_DONE)
                        ps->pending++;
                if (it->state == ITEM_RUNNING && ps->n_current < ps->limit) {
                        ps->current[ps->n_current] = strdup(it->id);
                        if (!ps->current[ps->n_current])
                                goto oom;
                        ps->n_current++;
                }
        }
out:
        pthread_mutex_unlock(&n->lock);
        *ret = s;
        return 0;
oom:
        pthread_mutex_unlock(&n->lock);
        nightly_status_free(s);
        return -ENOMEM;
}

void nightly_stop(struct nightly *n)
{
        pthread_mutex_lock(&n->lock);
        n->stopping = true;
        kick(n);
        bool started = n->thread_started;
        n->thread_started = false;
        pthread_mutex_unlock(&n->lock);
        if (started)
                pthread_join(n->thread, NULL);
        nightly_stop_leading(n);
}

void nightly_free(struct nightly *n)
{
        if (!n)
                return;
        nightly_stop(n);
        pthread_mutex_lock(&n->lock);
        for (struct nightly_job *j = n->running; j; j = j->running_next)
                atomic_store(&j->cancelled, true);
        while (n->jobs_out > 0)
                (void)clock_cond_wait_us(&n->jobs_cond, &n->lock, 100 * USEC_PER_MSEC);
        drop_pass(n);
        pthread_mutex_unlock(&n->lock);

        pthread_cond_destroy(&n->cond);
        pthread_cond_destroy(&n->jobs_cond);
        pthread_cond_destroy(&n->resume_cond);
        pthread_mutex_destroy(&n->lock);
        free(n->key_prefix);
        free(n);
}
