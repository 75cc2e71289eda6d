/* SPDX-License-Identifier: Apache-2.0 */
/*
 * The master controller's thread and the 24 hourly controllers. The master thread is the only
 * writer of the task set and of the controllers; it writes them under the scheduler's mutex and
 * reads the task set without it. Other threads (API, leadership) take the mutex for the short
 * moments they read or flip state, and never wait for the store: the master calls the store's
 * operations (catch-up) without holding the mutex.
 */
#include <errno.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "core/clock.h"
#include "core/log.h"
#include "sched/scheduler.h"

#define LOG_MODULE "sched"

#define TICK_US (1 * USEC_PER_SEC)
/*
 * A loaded hour keeps its slots and hands them to the pools' queues this long before they are
 * due, so queues stay short (seconds of work, not two hours of it) while every slot is queued
 * well before its time: the master ticks at least every TICK_US.
 */
#define RELEASE_AHEAD_US (5 * USEC_PER_SEC)
#define N_CONTROLLERS    24
/* Scheduled slots' jobs are tagged so withdrawing them never touches another owner's jobs. */
#define SLOT_OWNER_TAG (UINT64_C(1) << 62)

/* One planned slot, compact: the hour's plan is kept for every slot of up to two hours. */
struct plan_entry {
        int64_t task_id;
        struct plan_slot plan;
        uint32_t pool; /* index in pool_names */
};

/* Planned slots of an hour and the names of their pools. */
struct plan_items {
        struct plan_entry *items;
        size_t n, alloc;
        char (*pool_names)[64];
        size_t n_pools;
        uint32_t last_pool; /* the pool of the last entry added: tasks add slots in runs */
};

/* A slot of a loaded hour that has not been handed to its pool yet. */
struct pending_slot {
        int64_t slot_us;
        int64_t task_id;
};

/* An hourly controller: one loaded hour, its slots and its plan. */
struct controller {
        bool loaded;
        int64_t start_us, end_us;
        int64_t loaded_at_us;
        size_t slots;
        struct pending_slot *pending; /* time order; [next_pending, n_pending) still to queue */
        size_t n_pending, next_pending;
        struct plan_items *plan; /* pool (name order), then slot order */
        bool plan_dirty;         /* a task changed: plan again */
        bool overrun_reported;   /* the Warning for this hour was raised */
};

enum change_kind {
        CHANGE_UPSERT,
        CHANGE_REMOVE,
        CHANGE_REPLACE, /* a full resync: `tasks` is the whole set */
};

struct change {
        enum change_kind kind;
        int64_t task_id;
        struct sched_task task;
        struct sched_task *tasks;
        size_t n_tasks;
        struct change *next;
};

/* int64 id -> index in the task array; open addressing, linear probing. */
struct id_map {
        int64_t *keys; /* 0 = empty (task ids are > 0) */
        size_t *vals;
        size_t cap, n, tombstones;
};
#define TOMBSTONE INT64_MIN

struct scheduler {
        pthread_mutex_t lock;
        pthread_cond_t cond;
        pthread_t thread;
        bool running, stopping;

        struct sched_options opts;
        const struct tz_zone *zone;
        struct sched_pools *pools;
        struct sched_ops ops;

        /* Written by the master thread under the lock; read by it without. */
        struct sched_task *tasks;
        size_t n_tasks, alloc_tasks;
        struct id_map map;

        struct change *changes, **changes_tail;

        bool leading;
        uint64_t generation; /* atomic reads from executors; 0 when not leading */
        uint64_t lead_epoch; /* bumped by every leadership change */
        bool need_catchup;
        int64_t lead_start_us;     /* slots before it belong to the catch-up */
        int64_t released_until_us; /* every slot before it was queued (or is the catch-up's) */
        unsigned catchups_done;
        /* The master thread's own: slots the catch-up of leadership `catchup_epoch` queued, so
         * a retry after an error does not queue them again (they have no run row yet). */
        struct sched_slot_key *catchup_queued;
        size_t n_catchup_queued, alloc_catchup_queued;
        uint64_t catchup_epoch;
        struct controller controllers[N_CONTROLLERS];
};

struct slot_job {
        struct sched_job job;
        struct scheduler *s;
        struct sched_task task;
        int64_t slot_us;
        uint64_t generation; /* the scheduler's leadership generation when queued */
        bool catch_up;
};

/* ---- the id map ------------------------------------------------------------------------- */

static size_t id_hash(int64_t id, size_t cap)
{
        uint64_t x = (uint64_t)id * UINT64_C(0x9E3779B97F4A7C15);
        return (size_t)(x >> 17) & (cap - 1);
}

static int id_map_put(struct id_map *m, int64_t id, size_t val);

static int id_map_grow(struct id_map *m)
{
        struct id_map n = {0};
        n.cap = m->cap ? m->cap * 2 : 1024;
        n.keys = calloc(n.cap, sizeof(*n.keys));
        n.vals = calloc(n.cap, sizeof(*n.vals));
        if (!n.keys || !n.vals) {
                free(n.keys);
                free(n.vals);
                return -ENOMEM;
        }
        for (size_t i = 0; i < m->cap; i++)
                if (m->keys[i] != 0 && m->keys[i] != TOMBSTONE)
                        id_map_put(&n, m->keys[i], m->vals[i]);
        free(m->keys);
        free(m->vals);
        *m = n;
        return 0;
}

static int id_map_put(struct id_map *m, int64_t id, size_t val)
{
        if ((m->n + m->tombstones + 1) * 4 > m->cap * 3 && id_map_grow(m) < 0)
                return -ENOMEM;
        size_t i = id_hash(id, m->cap), tomb = SIZE_MAX;
        for (;; i = (i + 1) & (m->cap - 1)) {
                if (m->keys[i] == id) {
                        m->vals[i] = val;
                        return 0;
                }
                if (m->keys[i] == TOMBSTONE && tomb == SIZE_MAX)
                        tomb = i;
                if (m->keys[i] == 0)
                        break;
        }
        if (tomb != SIZE_MAX) {
                i = tomb;
                m->tombstones--;
        }
        m->keys[i] = id;
        m->vals[i] = val;
        m->n++;
        return 0;
}

static bool id_map_get(const struct id_map *m, int64_t id, size_t *ret)
{
        if (m->cap == 0)
                return false;
        for (size_t i = id_hash(id, m->cap);; i = (i + 1) & (m->cap - 1)) {
                if (m->keys[i] == id) {
                        *ret = m->vals[i];
                        return true;
                }
                if (m->keys[i] == 0)
                        return false;
        }
}

static void id_map_del(struct id_map *m, int64_t id)
{
        if (m->cap == 0)
                return;
        for (size_t i = id_hash(id, m->cap);; i = (i + 1) & (m->cap - 1)) {
                if (m->keys[i] == id) {
                        m->keys[i] = TOMBSTONE;
                        m->n--;
                        m->tombstones++;
                        return;
                }
                if (m->keys[i] == 0)
                        return;
        }
}

static void id_map_clear(struct id_map *m)
{
        free(m->keys);
        free(m->vals);
        *m = (struct id_map){0};
}

/* ---- hours ------------------------------------------------------------------------------ */

/*
 * Hours are the zone's local hours, split where the offset changes: a transition always starts
 * an hour (clocks moved by 30 minutes, as on Lord Howe Island, make 30-minute hours).
 */
int64_t sched_hour_start(const struct tz_zone *zone, int64_t t_us)
{
        struct tz_local l;
        struct tz_transition tr;
        int64_t secs = t_us / USEC_PER_SEC - (t_us % USEC_PER_SEC < 0);
        tz_to_local(zone, secs * USEC_PER_SEC, &l);
        int64_t start = secs - (int64_t)l.minute * 60 - l.second;
        if (tz_prev_transition(zone, secs, &tr) && tr.at > start)
                start = tr.at;
        return start * USEC_PER_SEC;
}

int64_t sched_next_hour_start(const struct tz_zone *zone, int64_t hour_us)
{
        struct tz_local l;
        struct tz_transition tr;
        int64_t secs = hour_us / USEC_PER_SEC - (hour_us % USEC_PER_SEC < 0);
        tz_to_local(zone, secs * USEC_PER_SEC, &l);
        int64_t end = secs + 3600 - (int64_t)l.minute * 60 - l.second;
        if (tz_next_transition(zone, secs, &tr) && tr.at < end)
                end = tr.at;
        return end * USEC_PER_SEC;
}

/* ---- controllers ------------------------------------------------------------------------ */

static struct controller *controller_find(struct scheduler *s, int64_t start_us)
{
        for (size_t i = 0; i < N_CONTROLLERS; i++)
                if (s->controllers[i].loaded && s->controllers[i].start_us == start_us)
                        return &s->controllers[i];
        return NULL;
}

/*
 * The controller for the hour starting at `start_us`: the one of its local hour of the day,
 * unless that one still holds another hour (the second pass of a repeated hour, or a 30-minute
 * hour), then the first free one.
 */
static struct controller *controller_for(struct scheduler *s, int64_t start_us)
{
        struct tz_local l;
        tz_to_local(s->zone, start_us, &l);
        struct controller *c = &s->controllers[l.hour];
        if (!c->loaded)
                return c;
        for (size_t i = 0; i < N_CONTROLLERS; i++)
                if (!s->controllers[i].loaded)
                        return &s->controllers[i];
        return NULL; /* cannot happen: at most two hours are loaded */
}

static void plan_items_free(struct plan_items *pi)
{
        if (!pi)
                return;
        free(pi->items);
        free(pi->pool_names);
        free(pi);
}

static void plan_items_release(struct plan_items *pi)
{
        free(pi->items);
        free(pi->pool_names);
        *pi = (struct plan_items){0};
}

static void controller_drop(struct controller *c)
{
        plan_items_free(c->plan);
        free(c->pending);
        *c = (struct controller){0};
}

static void drop_all_controllers(struct scheduler *s)
{
        for (size_t i = 0; i < N_CONTROLLERS; i++)
                controller_drop(&s->controllers[i]);
}

/* ---- slot jobs -------------------------------------------------------------------------- */

static uint64_t current_generation(struct scheduler *s)
{
        return __atomic_load_n(&s->generation, __ATOMIC_ACQUIRE);
}

static void slot_job_run(struct sched_job *job)
{
        struct slot_job *sj = (struct slot_job *)job;
        struct scheduler *s = sj->s;

        /* Queued under a leadership that has ended since: the next leader's catch-up owns it. */
        if (sj->generation != 0 && sj->generation == current_generation(s)) {
                struct sched_slot_run run = {
                    .task = &sj->task,
                    .slot_us = sj->slot_us,
                    .generation = sj->generation,
                    .started_us = job->started_wall,
                    .catch_up = sj->catch_up,
                };
                s->ops.run_slot(&run, s->ops.userdata);
        }
        free(sj);
}

static void slot_job_cancel(struct sched_job *job, enum sched_cancel_reason reason)
{
        /* Leadership lost: the next leader catches the slot up. Withdrawn: the task changed. */
        free(job);
}

static int64_t task_estimate(struct scheduler *s, const struct sched_task *t)
{
        int64_t e = s->ops.estimate_us ? s->ops.estimate_us(t->instance_id, s->ops.userdata) : 0;
        return MAX(e, 0);
}

static int submit_slot(struct scheduler *s, const struct sched_task *t, int64_t slot_us,
                       uint64_t generation, bool catch_up)
{
        struct slot_job *sj = calloc(1, sizeof(*sj));
        if (!sj)
                return -ENOMEM;
        sj->s = s;
        sj->task = *t;
        sj->slot_us = slot_us;
        sj->generation = generation;
        sj->catch_up = catch_up;
        sj->job.priority = SCHED_PRIO_SCHEDULED;
        sj->job.due_us = slot_us;
        sj->job.estimate_us = task_estimate(s, t);
        sj->job.owner_key = SLOT_OWNER_TAG | (uint64_t)t->id;
        sj->job.run = slot_job_run;
        sj->job.cancel = slot_job_cancel;
        sj->job.userdata = sj;
        int r = sched_pools_submit(s->pools, t->pool, &sj->job);
        if (r < 0)
                free(sj);
        return r;
}

/* ---- walking the slots of tasks --------------------------------------------------------- */

typedef int (*slot_visit_fn)(struct scheduler *s, const struct sched_task *t, int64_t slot_us,
                             void *userdata);

struct visit_ctx {
        struct scheduler *s;
        const struct sched_task *task;
        slot_visit_fn fn;
        void *userdata;
};

static int visit_one(int64_t slot_us, void *userdata)
{
        struct visit_ctx *v = userdata;
        return v->fn(v->s, v->task, slot_us, v->userdata);
}

/* Every slot of `t` in [from, to). */
static int visit_task_slots(struct scheduler *s, const struct sched_task *t, int64_t from,
                            int64_t to, slot_visit_fn fn, void *userdata)
{
        struct visit_ctx v = {s, t, fn, userdata};
        if (from >= to)
                return 0;
        return cron_slots(&t->schedule, s->zone, from, to, visit_one, &v);
}

/* ---- planning --------------------------------------------------------------------------- */

static int plan_pool_index(struct plan_items *pi, const char *pool, uint32_t *ret)
{
        if (pi->n_pools > 0 && streq(pi->pool_names[pi->last_pool], pool)) {
                *ret = pi->last_pool;
                return 0;
        }
        for (size_t i = 0; i < pi->n_pools; i++)
                if (streq(pi->pool_names[i], pool)) {
                        *ret = pi->last_pool = (uint32_t)i;
                        return 0;
                }
        char(*n)[64] = realloc(pi->pool_names, (pi->n_pools + 1) * sizeof(*n));
        if (!n)
                return -ENOMEM;
        pi->pool_names = n;
        snprintf(n[pi->n_pools], sizeof(n[0]), "%s", pool);
        *ret = pi->last_pool = (uint32_t)pi->n_pools++;
        return 0;
}

static int plan_items_add(struct scheduler *s, struct plan_items *pi, const struct sched_task *t,
                          int64_t slot_us)
{
        uint32_t pool;
        if (plan_pool_index(pi, t->pool, &pool) < 0)
                return -ENOMEM;
        if (pi->n == pi->alloc) {
                size_t want = pi->alloc ? pi->alloc * 2 : 64;
                struct plan_entry *n = realloc(pi->items, want * sizeof(*n));
                if (!n)
                        return -ENOMEM;
                pi->items = n;
                pi->alloc = want;
        }
        pi->items[pi->n++] = (struct plan_entry){
            .task_id = t->id,
            .plan = {.slot_us = slot_us,
                     .estimate_us = task_estimate(s, t),
                     .seq = (uint64_t)t->id},
            .pool = pool,
        };
        return 0;
}

static int plan_items_copy(const struct plan_items *from, struct plan_items *to)
{
        *to = (struct plan_items){0};
        if (from->n)
                to->items = malloc(from->n * sizeof(*to->items));
        if (from->n_pools)
                to->pool_names = malloc(from->n_pools * sizeof(*to->pool_names));
        if ((from->n && !to->items) || (from->n_pools && !to->pool_names)) {
                plan_items_release(to);
                return -ENOMEM;
        }
        if (from->n)
                memcpy(to->items, from->items, from->n * sizeof(*to->items));
        if (from->n_pools)
                memcpy(to->pool_names, from->pool_names, from->n_pools * sizeof(*to->pool_names));
        to->n = to->alloc = from->n;
        to->n_pools = from->n_pools;
        return 0;
}

static int entry_cmp(const void *a, const void *b)
{
        const struct plan_entry *x = a, *y = b;
        if (x->pool != y->pool)
                return x->pool < y->pool ? -1 : 1;
        if (x->plan.slot_us != y->plan.slot_us)
                return x->plan.slot_us < y->plan.slot_us ? -1 : 1;
        return x->task_id < y->task_id ? -1 : x->task_id > y->task_id;
}

static int pool_name_cmp(const void *a, const void *b)
{
        return strcmp(a, b);
}

/* Renumber the pools in name order, so sorting by index sorts by name. */
static int plan_rank_pools(struct plan_items *pi)
{
        if (pi->n_pools < 2)
                return 0;
        _cleanup_free_ char(*sorted)[64] = malloc(pi->n_pools * sizeof(*sorted));
        _cleanup_free_ uint32_t *rank = malloc(pi->n_pools * sizeof(*rank));
        if (!sorted || !rank)
                return -ENOMEM;
        memcpy(sorted, pi->pool_names, pi->n_pools * sizeof(*sorted));
        qsort(sorted, pi->n_pools, sizeof(*sorted), pool_name_cmp);
        for (size_t i = 0; i < pi->n_pools; i++)
                for (size_t k = 0; k < pi->n_pools; k++)
                        if (streq(pi->pool_names[i], sorted[k]))
                                rank[i] = (uint32_t)k;
        for (size_t i = 0; i < pi->n; i++)
                pi->items[i].pool = rank[pi->items[i].pool];
        memcpy(pi->pool_names, sorted, pi->n_pools * sizeof(*sorted));
        pi->last_pool = 0;
        return 0;
}

static int pool_limit(struct scheduler *s, const char *pool, const struct sched_pool_stats *stats,
                      int n_stats)
{
        if (s->ops.pool_limit)
                return MAX(s->ops.pool_limit(pool, s->ops.userdata), 1);
        for (int i = 0; i < n_stats; i++)
                if (streq(stats[i].name, pool))
                        return stats[i].limit;
        return 1;
}

static int end_desc_cmp(const void *a, const void *b)
{
        int64_t x = *(const int64_t *)a, y = *(const int64_t *)b;
        return x > y ? -1 : x < y;
}

/*
 * When each of the `limit` places of `pool` frees, according to the previous hour's plan: its
 * saves still running after `start_us` hold places (the latest ends, at most `limit` of them).
 * NULL (all free) when nothing spills over, or on OOM (the plan is then a little optimistic).
 */
static int64_t *busy_places(const struct plan_items *prev, const char *pool, int64_t start_us,
                            int limit)
{
        size_t n = 0;
        uint32_t idx = UINT32_MAX;
        if (!prev)
                return NULL;
        for (size_t i = 0; i < prev->n_pools; i++)
                if (streq(prev->pool_names[i], pool))
                        idx = (uint32_t)i;
        for (size_t i = 0; i < prev->n; i++)
                n += prev->items[i].plan.end_us > start_us && prev->items[i].pool == idx;
        if (n == 0)
                return NULL;
        int64_t *ends = malloc(MAX(n, (size_t)limit) * sizeof(*ends));
        if (!ends)
                return NULL;
        n = 0;
        for (size_t i = 0; i < prev->n; i++)
                if (prev->items[i].plan.end_us > start_us && prev->items[i].pool == idx)
                        ends[n++] = prev->items[i].plan.end_us;
        qsort(ends, n, sizeof(*ends), end_desc_cmp);
        for (size_t i = n; i < (size_t)limit; i++)
                ends[i] = INT64_MIN;
        return ends;
}

/* A copy of the plan of the loaded hour that ends at `start_us`, if any. Lock not held. */
static void previous_plan(struct scheduler *s, int64_t start_us, struct plan_items *ret)
{
        *ret = (struct plan_items){0};
        pthread_mutex_lock(&s->lock);
        for (size_t i = 0; i < N_CONTROLLERS; i++) {
                const struct controller *c = &s->controllers[i];
                if (!c->loaded || c->end_us != start_us || !c->plan)
                        continue;
                if (plan_items_copy(c->plan, ret) < 0)
                        *ret = (struct plan_items){0}; /* planned a little optimistically */
                break;
        }
        pthread_mutex_unlock(&s->lock);
}

/* An overrun found while planning: the pool and by how much its plan ends past the hour. */
struct overrun {
        char pool[64];
        int64_t overrun_us;
};

/*
 * Plan the items of the hour [start_us, end_us): sort them by pool, slot time and task, give
 * each its expected start and end with the pool's limit (plan_pool, the executors' rule) and
 * the places still held by the previous hour's plan (`prev`, may be empty), and
 * collect the pools whose plan ends more than the allowed delay after the hour (*ret_overruns,
 * caller frees; may be NULL). Any thread; no lock needed.
 */
static int plan_items(struct scheduler *s, struct plan_items *pi, int64_t start_us, int64_t end_us,
                      const struct plan_items *prev, struct overrun **ret_overruns,
                      size_t *ret_n_overruns)
{
        struct sched_pool_stats *stats = NULL;
        struct overrun *over = NULL;
        size_t n_over = 0;
        int r = 0;

        if (plan_rank_pools(pi) < 0)
                return -ENOMEM;
        if (pi->n > 0)
                qsort(pi->items, pi->n, sizeof(*pi->items), entry_cmp);
        int n_stats = s->ops.pool_limit ? 0 : sched_pools_stats(s->pools, &stats);
        for (size_t i = 0; i < pi->n && r == 0;) {
                size_t j = i;
                while (j < pi->n && pi->items[j].pool == pi->items[i].pool)
                        j++;
                const char *pool = pi->pool_names[pi->items[i].pool];
                struct plan_slot *tmp = calloc(j - i, sizeof(*tmp));
                if (!tmp) {
                        r = -ENOMEM;
                        break;
                }
                for (size_t k = i; k < j; k++)
                        tmp[k - i] = pi->items[k].plan;
                int limit = pool_limit(s, pool, stats, n_stats);
                int64_t *busy = busy_places(prev, pool, start_us, limit);
                r = plan_pool(tmp, j - i, limit, busy);
                free(busy);
                /* plan_pool sorts by (slot, seq = task id): the same order as ours. */
                for (size_t k = i; k < j && r == 0; k++)
                        pi->items[k].plan = tmp[k - i];
                int64_t overrun = plan_overrun_us(tmp, j - i, end_us);
                free(tmp);
                if (r == 0 && ret_overruns && overrun > s->opts.max_plan_delay_us) {
                        struct overrun *n = realloc(over, (n_over + 1) * sizeof(*n));
                        if (!n) {
                                r = -ENOMEM;
                                break;
                        }
                        over = n;
                        snprintf(over[n_over].pool, sizeof(over[n_over].pool), "%s", pool);
                        over[n_over++].overrun_us = overrun;
                }
                i = j;
        }
        if (n_stats >= 0)
                free(stats);
        if (r < 0) {
                free(over);
                return r;
        }
        if (ret_overruns) {
                *ret_overruns = over;
                *ret_n_overruns = n_over;
        }
        return 0;
}

static void report_overruns(struct scheduler *s, int64_t start_us, const struct overrun *o,
                            size_t n)
{
        char when[CLOCK_RFC3339_MAX];
        for (size_t i = 0; i < n; i++) {
                log_warn("pool \"%s\": the hour from %s is overbooked: its plan ends %lld s after "
                         "the hour, more than the %lld s allowed",
                         o[i].pool, clock_format_rfc3339(start_us, 0, when),
                         (long long)(o[i].overrun_us / USEC_PER_SEC),
                         (long long)(s->opts.max_plan_delay_us / USEC_PER_SEC));
                if (s->ops.plan_overrun)
                        s->ops.plan_overrun(o[i].pool, start_us, o[i].overrun_us, s->ops.userdata);
        }
}

static int collect_visit(struct scheduler *s, const struct sched_task *t, int64_t slot_us, void *u)
{
        return plan_items_add(s, u, t, slot_us);
}

/* The items of [start, end) for the tasks given. */
static int collect_hour(struct scheduler *s, const struct sched_task *tasks, size_t n,
                        int64_t start_us, int64_t end_us, struct plan_items *pi)
{
        for (size_t i = 0; i < n; i++) {
                int r = visit_task_slots(s, &tasks[i], start_us, end_us, collect_visit, pi);
                if (r < 0)
                        return r;
        }
        return 0;
}

/* ---- loading an hour (master thread, lock not held) -------------------------------------- */

static int pending_cmp(const void *a, const void *b)
{
        const struct pending_slot *x = a, *y = b;
        if (x->slot_us != y->slot_us)
                return x->slot_us < y->slot_us ? -1 : 1;
        return x->task_id < y->task_id ? -1 : x->task_id > y->task_id;
}

/* The planned slots at or after `from_us`, in time order (*ret caller-frees; NULL when none). */
static int pending_from_items(const struct plan_items *pi, int64_t from_us,
                              struct pending_slot **ret, size_t *ret_n)
{
        size_t n = 0;
        for (size_t i = 0; i < pi->n; i++)
                n += pi->items[i].plan.slot_us >= from_us;
        *ret = NULL;
        *ret_n = 0;
        if (n == 0)
                return 0;
        struct pending_slot *p = malloc(n * sizeof(*p));
        if (!p)
                return -ENOMEM;
        n = 0;
        for (size_t i = 0; i < pi->n; i++)
                if (pi->items[i].plan.slot_us >= from_us)
                        p[n++] =
                            (struct pending_slot){pi->items[i].plan.slot_us, pi->items[i].task_id};
        qsort(p, n, sizeof(*p), pending_cmp);
        *ret = p;
        *ret_n = n;
        return 0;
}

/* Every slot of [start, end) from the current task set, planned (master thread, no lock). */
static int plan_hour_now(struct scheduler *s, int64_t start_us, int64_t end_us,
                         struct plan_items *pi, struct overrun **over, size_t *n_over)
{
        *pi = (struct plan_items){0};
        int r = collect_hour(s, s->tasks, s->n_tasks, start_us, end_us, pi);
        if (r == 0) {
                struct plan_items prev;
                previous_plan(s, start_us, &prev);
                r = plan_items(s, pi, start_us, end_us, &prev, over, n_over);
                plan_items_release(&prev);
        }
        if (r < 0)
                plan_items_release(pi);
        return r;
}

/*
 * Load the hour starting at `start_us` under leadership `epoch`: plan every pool's whole hour,
 * keep its slots from `from_us` on for release_due(), install the controller and report
 * overruns. Returns 0, or a negative errno (the hour is then loaded again on the next tick).
 */
static int load_hour(struct scheduler *s, uint64_t epoch, int64_t start_us, int64_t from_us)
{
        int64_t end_us = sched_next_hour_start(s->zone, start_us);
        struct plan_items pi;
        struct pending_slot *pending = NULL;
        size_t n_pending = 0;
        struct overrun *over = NULL;
        size_t n_over = 0;
        int64_t t0 = clock_mono_us();
        char when[CLOCK_RFC3339_MAX];

        /* released_until_us is written by this thread only. */
        from_us = MAX(MAX(from_us, start_us), s->released_until_us);
        struct plan_items *kept = malloc(sizeof(*kept));
        int r = kept ? plan_hour_now(s, start_us, end_us, &pi, &over, &n_over) : -ENOMEM;
        if (r == 0)
                r = pending_from_items(&pi, from_us, &pending, &n_pending);
        if (r < 0) {
                if (kept)
                        plan_items_release(&pi);
                free(kept);
                free(over);
                log_error("hour %s: failed to load: %s; retrying",
                          clock_format_rfc3339(start_us, 0, when), strerror(-r));
                return r;
        }

        pthread_mutex_lock(&s->lock);
        bool current = s->leading && s->lead_epoch == epoch;
        struct controller *c = current ? controller_for(s, start_us) : NULL;
        size_t planned = pi.n;
        if (c) {
                *c = (struct controller){
                    .loaded = true,
                    .start_us = start_us,
                    .end_us = end_us,
                    .loaded_at_us = clock_wall_us(),
                    .slots = pi.n,
                    .pending = TAKE_PTR(pending),
                    .n_pending = n_pending,
                    .plan = kept,
                    .overrun_reported = n_over > 0,
                };
                *kept = pi;
                kept = NULL;
                pi = (struct plan_items){0};
        }
        pthread_mutex_unlock(&s->lock);
        plan_items_release(&pi);
        free(kept);
        free(pending);
        if (!c) {
                free(over);
                return 0; /* leadership changed meanwhile */
        }
        log_info("hour %s loaded: %zu slots planned, %zu to queue (%lld ms)",
                 clock_format_rfc3339(start_us, 0, when), planned, n_pending,
                 (long long)((clock_mono_us() - t0) / 1000));
        report_overruns(s, start_us, over, n_over);
        free(over);
        return 0;
}

/*
 * After task changes, compute the loaded hours' slots still to queue and their plans again
 * from the task set (master thread, lock not held). Runs before release_due() in the same tick,
 * so no slot of a changed or removed task's old definition is queued.
 */
static void rebuild_dirty_hours(struct scheduler *s)
{
        for (size_t i = 0; i < N_CONTROLLERS; i++) {
                pthread_mutex_lock(&s->lock);
                struct controller *c = &s->controllers[i];
                bool dirty = c->loaded && c->plan_dirty;
                int64_t start = c->start_us, end = c->end_us;
                int64_t from = MAX(MAX(start, s->released_until_us), s->lead_start_us);
                c->plan_dirty = false;
                pthread_mutex_unlock(&s->lock);
                if (!dirty)
                        continue;

                struct plan_items pi;
                struct pending_slot *pending = NULL;
                size_t n_pending = 0;
                struct overrun *over = NULL;
                size_t n_over = 0;
                struct plan_items *kept = malloc(sizeof(*kept));
                int r = kept ? plan_hour_now(s, start, end, &pi, &over, &n_over) : -ENOMEM;
                if (r == 0)
                        r = pending_from_items(&pi, from, &pending, &n_pending);
                else
                        pi = (struct plan_items){0};
                bool report = false;
                pthread_mutex_lock(&s->lock);
                if (r < 0) {
                        /* Keep the old slots out of the queues: retry on the next tick. */
                        c->plan_dirty = c->loaded && c->start_us == start;
                        c->next_pending = c->n_pending;
                } else if (c->loaded && c->start_us == start) {
                        plan_items_free(c->plan);
                        c->slots = pi.n;
                        *kept = pi;
                        c->plan = TAKE_PTR(kept);
                        pi = (struct plan_items){0};
                        free(c->pending);
                        c->pending = TAKE_PTR(pending);
                        c->n_pending = n_pending;
                        c->next_pending = 0;
                        report = n_over > 0 && !c->overrun_reported;
                        c->overrun_reported |= n_over > 0;
                }
                pthread_mutex_unlock(&s->lock);
                if (r < 0)
                        log_error("failed to apply task changes to a loaded hour: %s; retrying",
                                  strerror(-r));
                plan_items_release(&pi);
                free(kept);
                free(pending);
                if (report)
                        report_overruns(s, start, over, n_over);
                free(over);
        }
}

/*
 * Hand every kept slot due before now + RELEASE_AHEAD_US to its pool, with a snapshot of its
 * task as it is now. Lock held (master thread).
 */
static void release_due(struct scheduler *s, int64_t now)
{
        int64_t horizon = now + RELEASE_AHEAD_US;
        size_t failed = 0;

        for (size_t i = 0; i < N_CONTROLLERS; i++) {
                struct controller *c = &s->controllers[i];
                if (!c->loaded)
                        continue;
                while (c->next_pending < c->n_pending &&
                       c->pending[c->next_pending].slot_us < horizon) {
                        const struct pending_slot *p = &c->pending[c->next_pending++];
                        size_t idx;
                        if (!id_map_get(&s->map, p->task_id, &idx))
                                continue;
                        int r = submit_slot(s, &s->tasks[idx], p->slot_us, s->generation, false);
                        if (r < 0 && r != -EAGAIN)
                                failed++;
                }
        }
        s->released_until_us = MAX(s->released_until_us, horizon);
        if (failed)
                log_error("%zu slots could not be queued: out of memory; the next leader's "
                          "catch-up will find them",
                          failed);
}

/* ---- catch-up (master thread, lock not held) --------------------------------------------- */

struct key_set {
        struct sched_slot_key *keys;
        size_t n;
};

static int key_cmp(const void *a, const void *b)
{
        const struct sched_slot_key *x = a, *y = b;
        if (x->task_id != y->task_id)
                return x->task_id < y->task_id ? -1 : 1;
        return x->slot_us < y->slot_us ? -1 : x->slot_us > y->slot_us;
}

static bool key_set_has(const struct key_set *ks, int64_t task_id, int64_t slot_us)
{
        struct sched_slot_key k = {task_id, slot_us};
        return ks->n > 0 && bsearch(&k, ks->keys, ks->n, sizeof(k), key_cmp) != NULL;
}

struct catchup_ctx {
        struct key_set recorded;
        struct key_set queued; /* by an earlier attempt under the same leadership */
        int64_t now_us;
        uint64_t generation;
        size_t run, missed;
};

static int catchup_visit(struct scheduler *s, const struct sched_task *t, int64_t slot_us, void *u)
{
        struct catchup_ctx *cc = u;
        char reason[160];
        int r;

        /* A slot before the task existed was never owed. */
        if (slot_us < t->created_us || key_set_has(&cc->recorded, t->id, slot_us) ||
            key_set_has(&cc->queued, t->id, slot_us))
                return 0;
        bool in_deadline = t->starting_deadline_s <= 0 ||
                           cc->now_us - slot_us <= (int64_t)t->starting_deadline_s * USEC_PER_SEC;
        if (t->run_once && in_deadline) {
                if (s->n_catchup_queued == s->alloc_catchup_queued) {
                        size_t want = s->alloc_catchup_queued ? s->alloc_catchup_queued * 2 : 64;
                        struct sched_slot_key *n = realloc(s->catchup_queued, want * sizeof(*n));
                        if (!n)
                                return -ENOMEM;
                        s->catchup_queued = n;
                        s->alloc_catchup_queued = want;
                }
                r = submit_slot(s, t, slot_us, cc->generation, true);
                if (r < 0)
                        return r;
                s->catchup_queued[s->n_catchup_queued++] = (struct sched_slot_key){t->id, slot_us};
                cc->run++;
                return 0;
        }
        if (t->run_once)
                snprintf(reason, sizeof(reason),
                         "no leader ran it in time and its starting deadline (%d s) has passed",
                         t->starting_deadline_s);
        else
                snprintf(reason, sizeof(reason),
                         "no leader ran it in time and its misfire policy is skip");
        r = s->ops.record_missed(t, slot_us, reason, cc->generation, s->ops.userdata);
        if (r < 0)
                return r;
        cc->missed++;
        return 0;
}

/*
 * Give every past slot without a run row, from the start of the previous hour to the moment
 * leadership began, its misfire policy. The previous hour is always looked at: when the gap did
 * not cross the hour, the previous leader recorded every slot of it and nothing is found.
 * Returns 0, or a negative errno (retried on the next tick; -ESTALE: deposed, -EAGAIN: not
 * leading any more).
 */
static int catch_up(struct scheduler *s, uint64_t epoch, uint64_t generation, int64_t lead_start_us)
{
        int64_t to = lead_start_us;
        int64_t from = sched_hour_start(s->zone, sched_hour_start(s->zone, to) - 1);
        struct catchup_ctx cc = {.now_us = clock_wall_us(), .generation = generation};
        int r;

        r = s->ops.recorded_slots(from, to, &cc.recorded.keys, &cc.recorded.n, s->ops.userdata);
        if (r < 0) {
                log_warn("catch-up: cannot read the runs already recorded: %s; retrying",
                         strerror(-r));
                return r;
        }
        if (cc.recorded.n > 0)
                qsort(cc.recorded.keys, cc.recorded.n, sizeof(*cc.recorded.keys), key_cmp);
        if (s->catchup_epoch != epoch) {
                s->catchup_epoch = epoch;
                s->n_catchup_queued = 0;
        }
        if (s->n_catchup_queued > 0)
                qsort(s->catchup_queued, s->n_catchup_queued, sizeof(*s->catchup_queued), key_cmp);
        /* A copy: catchup_visit appends to the array while the walk looks things up in it. */
        struct sched_slot_key *queued = NULL;
        if (s->n_catchup_queued > 0) {
                queued = malloc(s->n_catchup_queued * sizeof(*queued));
                if (!queued) {
                        free(cc.recorded.keys);
                        return -ENOMEM;
                }
                memcpy(queued, s->catchup_queued, s->n_catchup_queued * sizeof(*queued));
        }
        cc.queued = (struct key_set){queued, queued ? s->n_catchup_queued : 0};
        for (size_t i = 0; i < s->n_tasks && r >= 0; i++)
                r = visit_task_slots(s, &s->tasks[i], from, to, catchup_visit, &cc);
        free(cc.recorded.keys);
        free(queued);
        if (r < 0) {
                if (r != -EAGAIN && r != -ESTALE)
                        log_warn("catch-up stopped: %s; retrying", strerror(-r));
                return r;
        }
        log_info("catch-up after the leadership change: %zu past slots run now, %zu recorded "
                 "missed",
                 cc.run, cc.missed);
        return 0;
}

/* ---- the task set (master thread) -------------------------------------------------------- */

static bool task_equal(const struct sched_task *a, const struct sched_task *b)
{
        return a->id == b->id && streq(a->instance_id, b->instance_id) && streq(a->pool, b->pool) &&
               a->action == b->action && cron_expr_equal(&a->schedule, &b->schedule) &&
               a->run_once == b->run_once && a->starting_deadline_s == b->starting_deadline_s &&
               a->created_us == b->created_us;
}

/* Lock held. */
static int task_put(struct scheduler *s, const struct sched_task *t)
{
        size_t idx;
        if (id_map_get(&s->map, t->id, &idx)) {
                s->tasks[idx] = *t;
                return 0;
        }
        if (s->n_tasks == s->alloc_tasks) {
                size_t want = s->alloc_tasks ? s->alloc_tasks * 2 : 256;
                struct sched_task *n = realloc(s->tasks, want * sizeof(*n));
                if (!n)
                        return -ENOMEM;
                s->tasks = n;
                s->alloc_tasks = want;
        }
        int r = id_map_put(&s->map, t->id, s->n_tasks);
        if (r < 0)
                return r;
        s->tasks[s->n_tasks++] = *t;
        return 0;
}

/* Lock held. */
static void task_del(struct scheduler *s, int64_t id)
{
        size_t idx;
        if (!id_map_get(&s->map, id, &idx))
                return;
        id_map_del(&s->map, id);
        s->n_tasks--;
        if (idx != s->n_tasks) {
                s->tasks[idx] = s->tasks[s->n_tasks];
                id_map_put(&s->map, s->tasks[idx].id, idx);
        }
}

struct requeue_ctx {
        size_t queued;
        uint64_t generation;
};

static int requeue_visit(struct scheduler *s, const struct sched_task *t, int64_t slot_us, void *u)
{
        struct requeue_ctx *rc = u;
        int r = submit_slot(s, t, slot_us, rc->generation, false);
        if (r == 0)
                rc->queued++;
        return r == -EAGAIN ? 0 : r;
}

/*
 * Queue the slots of `task` (its new definition) that fall in the window already handed to the
 * pools, [now, released_until); the later ones are kept by the hours' controllers, rebuilt
 * before the next release. Lock held.
 */
static void requeue_released(struct scheduler *s, const struct sched_task *task, int64_t now)
{
        if (!s->leading || s->released_until_us <= now)
                return;
        struct requeue_ctx rc = {.generation = s->generation};
        int64_t from = MAX(now, s->lead_start_us);
        int r = visit_task_slots(s, task, from, s->released_until_us, requeue_visit, &rc);
        if (r < 0)
                log_error("task %lld: failed to queue its new slots: %s", (long long)task->id,
                          strerror(-r));
        log_debug("task %lld changed: %zu slots queued at once", (long long)task->id, rc.queued);
}

static void mark_plans_dirty(struct scheduler *s)
{
        for (size_t i = 0; i < N_CONTROLLERS; i++)
                if (s->controllers[i].loaded)
                        s->controllers[i].plan_dirty = true;
}

/*
 * Apply one upsert or removal to the loaded hours: withdraw the task's queued slots (all of
 * them, late ones included, when it is removed; from now on when it changed), queue the new
 * definition's slots of the window already released, and mark the loaded hours for a rebuild
 * of the slots they keep. A slot due at the very instant of the change may be offered twice;
 * the claim (UNIQUE per slot) makes the second one a no-op. Lock held.
 */
static void apply_one(struct scheduler *s, bool remove, int64_t task_id,
                      const struct sched_task *task, int64_t now)
{
        size_t idx;
        bool had = id_map_get(&s->map, task_id, &idx);

        if (!remove && (!task || (had && task_equal(&s->tasks[idx], task))))
                return;
        if (s->leading && had) {
                const struct sched_task *old = &s->tasks[idx];
                sched_pools_withdraw(s->pools, old->pool, SLOT_OWNER_TAG | (uint64_t)old->id,
                                     remove ? INT64_MIN : now);
        }
        if (remove) {
                if (had)
                        mark_plans_dirty(s);
                task_del(s, task_id);
                return;
        }
        if (task_put(s, task) < 0) {
                log_error("task %lld: out of memory applying a change", (long long)task_id);
                return;
        }
        mark_plans_dirty(s);
        requeue_released(s, task, now);
}

/* Lock held. */
static void apply_change(struct scheduler *s, struct change *c, int64_t now)
{
        if (c->kind != CHANGE_REPLACE) {
                apply_one(s, c->kind == CHANGE_REMOVE, c->task_id, &c->task, now);
                return;
        }
        /*
         * A full resync: the change's array becomes the task set (no second copy of a large
         * set); only the tasks that changed or disappeared touch the queues.
         */
        struct id_map incoming = {0};
        for (size_t i = 0; i < c->n_tasks; i++)
                if (id_map_put(&incoming, c->tasks[i].id, i) < 0) {
                        id_map_clear(&incoming);
                        log_error("out of memory applying a full resync of %zu tasks, ignoring it",
                                  c->n_tasks);
                        return;
                }
        bool changed = !s->leading;
        if (s->leading) {
                for (size_t i = 0; i < s->n_tasks; i++) {
                        const struct sched_task *old = &s->tasks[i];
                        size_t j;
                        bool kept = id_map_get(&incoming, old->id, &j);
                        if (kept && task_equal(old, &c->tasks[j]))
                                continue;
                        sched_pools_withdraw(s->pools, old->pool,
                                             SLOT_OWNER_TAG | (uint64_t)old->id,
                                             kept ? now : INT64_MIN);
                        changed = true;
                }
                for (size_t j = 0; j < c->n_tasks; j++) {
                        size_t i;
                        if (id_map_get(&s->map, c->tasks[j].id, &i) &&
                            task_equal(&s->tasks[i], &c->tasks[j]))
                                continue;
                        requeue_released(s, &c->tasks[j], now);
                        changed = true;
                }
        }
        free(s->tasks);
        id_map_clear(&s->map);
        s->tasks = TAKE_PTR(c->tasks);
        s->n_tasks = s->alloc_tasks = c->n_tasks;
        s->map = incoming;
        if (changed)
                mark_plans_dirty(s);
}

static void change_free(struct change *c)
{
        if (c)
                free(c->tasks);
        free(c);
}

static int enqueue_change(struct scheduler *s, struct change *c)
{
        pthread_mutex_lock(&s->lock);
        *s->changes_tail = c;
        s->changes_tail = &c->next;
        pthread_cond_broadcast(&s->cond);
        pthread_mutex_unlock(&s->lock);
        return 0;
}

int sched_task_upsert(struct scheduler *s, const struct sched_task *task)
{
        struct change *c = calloc(1, sizeof(*c));
        if (!c)
                return -ENOMEM;
        if (task->id <= 0) {
                free(c);
                return -EINVAL;
        }
        c->kind = CHANGE_UPSERT;
        c->task_id = task->id;
        c->task = *task;
        return enqueue_change(s, c);
}

int sched_task_remove(struct scheduler *s, int64_t task_id)
{
        struct change *c = calloc(1, sizeof(*c));
        if (!c)
                return -ENOMEM;
        c->kind = CHANGE_REMOVE;
        c->task_id = task_id;
        return enqueue_change(s, c);
}

int sched_set_tasks(struct scheduler *s, const struct sched_task *tasks, size_t n)
{
        struct id_map ids = {0};
        int r = 0;
        for (size_t i = 0; i < n && r == 0; i++) {
                size_t j;
                if (tasks[i].id <= 0 || id_map_get(&ids, tasks[i].id, &j))
                        r = -EINVAL;
                else
                        r = id_map_put(&ids, tasks[i].id, i);
        }
        id_map_clear(&ids);
        if (r < 0)
                return r;
        struct change *c = calloc(1, sizeof(*c));
        if (!c)
                return -ENOMEM;
        c->kind = CHANGE_REPLACE;
        if (n > 0) {
                c->tasks = malloc(n * sizeof(*tasks));
                if (!c->tasks) {
                        free(c);
                        return -ENOMEM;
                }
                memcpy(c->tasks, tasks, n * sizeof(*tasks));
        }
        c->n_tasks = n;
        return enqueue_change(s, c);
}

/* ---- the master ------------------------------------------------------------------------- */

static void cond_wait_us(struct scheduler *s, int64_t us)
{
        (void)clock_cond_wait_us(&s->cond, &s->lock, CLAMP(us, (int64_t)1000, TICK_US));
}

/*
 * One tick of the master, lock held on entry and exit (released around loading and the
 * catch-up). Returns how long it may sleep.
 */
static int64_t master_tick(struct scheduler *s)
{
        int64_t now = clock_wall_us();

        while (s->changes) {
                struct change *c = s->changes;
                s->changes = c->next;
                if (!s->changes)
                        s->changes_tail = &s->changes;
                apply_change(s, c, now);
                change_free(c);
        }
        if (!s->leading)
                return TICK_US;

        int64_t cur = sched_hour_start(s->zone, now);
        int64_t next = sched_next_hour_start(s->zone, cur);
        int64_t preload_at = MIN(cur + (int64_t)s->opts.preload_minute * 60 * USEC_PER_SEC, next);
        uint64_t epoch = s->lead_epoch, generation = s->generation;
        int64_t lead_start = s->lead_start_us;

        /*
         * The controller of an hour that has ended is dropped once it has handed out every
         * slot (normally seconds before the end; later only if this thread was held up); its
         * late slots stay queued in the pools.
         */
        for (size_t i = 0; i < N_CONTROLLERS; i++) {
                struct controller *c = &s->controllers[i];
                if (c->loaded && c->end_us <= now && c->next_pending >= c->n_pending &&
                    !c->plan_dirty)
                        controller_drop(c);
        }
        bool load_cur = !controller_find(s, cur);
        bool load_next = now >= preload_at && !controller_find(s, next);
        bool catchup = s->need_catchup;
        bool dirty = false;
        for (size_t i = 0; i < N_CONTROLLERS; i++)
                dirty |= s->controllers[i].plan_dirty;
        pthread_mutex_unlock(&s->lock);

        if (dirty)
                rebuild_dirty_hours(s);
        if (load_cur)
                load_hour(s, epoch, cur, lead_start);
        if (load_next)
                load_hour(s, epoch, next, next);

        pthread_mutex_lock(&s->lock);
        if (s->leading && s->lead_epoch == epoch)
                release_due(s, clock_wall_us());
        pthread_mutex_unlock(&s->lock);

        /* After loading, as the SPEC orders it; catch-up slots are due already and go first. */
        if (catchup) {
                int r = catch_up(s, epoch, generation, lead_start);
                pthread_mutex_lock(&s->lock);
                if (s->lead_epoch == epoch && (r == 0 || r == -ESTALE || r == -EAGAIN)) {
                        /* Done; or deposed/not leading: nothing more to catch up under it. */
                        s->need_catchup = false;
                        if (r == 0)
                                s->catchups_done++;
                }
                pthread_mutex_unlock(&s->lock);
        }

        pthread_mutex_lock(&s->lock);
        return MIN(TICK_US, (now < preload_at ? preload_at : next) - now);
}

static void *master_main(void *arg)
{
        struct scheduler *s = arg;

        pthread_mutex_lock(&s->lock);
        while (!s->stopping) {
                int64_t wait = master_tick(s);
                if (!s->stopping && !s->changes)
                        cond_wait_us(s, wait);
        }
        pthread_mutex_unlock(&s->lock);
        return NULL;
}

struct scheduler *sched_new(const struct sched_options *opts, const struct tz_zone *zone,
                            struct sched_pools *pools, const struct sched_ops *ops)
{
        struct scheduler *s = calloc(1, sizeof(*s));
        if (!s)
                return NULL;
        pthread_mutex_init(&s->lock, NULL);
        (void)clock_cond_init(&s->cond);
        s->opts = *opts;
        s->opts.preload_minute = CLAMP(s->opts.preload_minute, 0, 59);
        s->zone = zone;
        s->pools = pools;
        s->ops = *ops;
        s->changes_tail = &s->changes;
        return s;
}

int sched_start(struct scheduler *s)
{
        pthread_mutex_lock(&s->lock);
        if (s->running) {
                pthread_mutex_unlock(&s->lock);
                return 0;
        }
        s->stopping = false;
        int r = pthread_create(&s->thread, NULL, master_main, s);
        if (r == 0)
                s->running = true;
        pthread_mutex_unlock(&s->lock);
        return -r;
}

void sched_stop(struct scheduler *s)
{
        pthread_mutex_lock(&s->lock);
        bool running = s->running;
        s->stopping = true;
        s->running = false;
        pthread_cond_broadcast(&s->cond);
        pthread_mutex_unlock(&s->lock);
        if (running)
                pthread_join(s->thread, NULL);
}

void sched_free(struct scheduler *s)
{
        if (!s)
                return;
        sched_stop(s);
        while (s->changes) {
                struct change *c = s->changes;
                s->changes = c->next;
                change_free(c);
        }
        drop_all_controllers(s);
        free(s->catchup_queued);
        free(s->tasks);
        id_map_clear(&s->map);
        pthread_cond_destroy(&s->cond);
        pthread_mutex_destroy(&s->lock);
        free(s);
}

void sched_start_leading(struct scheduler *s, uint64_t generation)
{
        pthread_mutex_lock(&s->lock);
        s->leading = true;
        __atomic_store_n(&s->generation, generation, __ATOMIC_RELEASE);
        s->lead_epoch++;
        s->need_catchup = true;
        s->catchups_done = 0;
        s->lead_start_us = clock_wall_us();
        s->released_until_us = s->lead_start_us;
        drop_all_controllers(s);
        pthread_cond_broadcast(&s->cond);
        pthread_mutex_unlock(&s->lock);
}

void sched_stop_leading(struct scheduler *s)
{
        pthread_mutex_lock(&s->lock);
        s->leading = false;
        __atomic_store_n(&s->generation, 0, __ATOMIC_RELEASE);
        s->lead_epoch++;
        s->need_catchup = false;
        drop_all_controllers(s);
        pthread_mutex_unlock(&s->lock);
        /* Outside our lock: cancelling jobs frees them. */
        sched_pools_clear(s->pools);
}

size_t sched_loaded_hours(struct scheduler *s, struct sched_hour_info out[2])
{
        size_t n = 0;
        pthread_mutex_lock(&s->lock);
        for (size_t i = 0; i < N_CONTROLLERS && n < 2; i++) {
                const struct controller *c = &s->controllers[i];
                if (c->loaded)
                        out[n++] = (struct sched_hour_info){c->start_us, c->slots, c->loaded_at_us};
        }
        pthread_mutex_unlock(&s->lock);
        if (n == 2 && out[0].hour_us > out[1].hour_us) {
                struct sched_hour_info t = out[0];
                out[0] = out[1];
                out[1] = t;
        }
        return n;
}

/* The API's form of a plan; `map` and `tasks` give each task's instance. Caller frees. */
static struct sched_planned *plan_expand(const struct plan_items *pi, const struct id_map *map,
                                         const struct sched_task *tasks)
{
        struct sched_planned *out = calloc(MAX(pi->n, (size_t)1), sizeof(*out));
        if (!out)
                return NULL;
        for (size_t i = 0; i < pi->n; i++) {
                const struct plan_entry *e = &pi->items[i];
                size_t idx;
                out[i].task_id = e->task_id;
                if (id_map_get(map, e->task_id, &idx))
                        snprintf(out[i].instance_id, sizeof(out[i].instance_id), "%s",
                                 tasks[idx].instance_id);
                snprintf(out[i].pool, sizeof(out[i].pool), "%s", pi->pool_names[e->pool]);
                out[i].plan = e->plan;
        }
        return out;
}

ssize_t sched_plan_hour(struct scheduler *s, int64_t hour_us, struct sched_planned **ret)
{
        struct plan_items pi = {0};
        int64_t start = sched_hour_start(s->zone, hour_us);
        int64_t end = sched_next_hour_start(s->zone, start);
        struct sched_planned *out;
        int r = 0;

        pthread_mutex_lock(&s->lock);
        struct controller *c = controller_find(s, start);
        if (c && c->plan && !c->plan_dirty) {
                /* The plan kept since the hour was loaded (and re-planned on changes). */
                out = plan_expand(c->plan, &s->map, s->tasks);
                size_t n = c->plan->n;
                pthread_mutex_unlock(&s->lock);
                if (!out)
                        return -ENOMEM;
                *ret = out;
                return (ssize_t)n;
        }
        /* Another hour: plan it from a copy of the current task set. */
        size_t n_tasks = s->n_tasks;
        struct sched_task *tasks = malloc(MAX(n_tasks, (size_t)1) * sizeof(*tasks));
        if (tasks && n_tasks)
                memcpy(tasks, s->tasks, n_tasks * sizeof(*tasks));
        pthread_mutex_unlock(&s->lock);
        if (!tasks)
                return -ENOMEM;
        struct id_map map = {0};
        for (size_t i = 0; i < n_tasks && r == 0; i++)
                r = id_map_put(&map, tasks[i].id, i);
        if (r == 0)
                r = collect_hour(s, tasks, n_tasks, start, end, &pi);
        if (r == 0) {
                struct plan_items prev;
                previous_plan(s, start, &prev);
                r = plan_items(s, &pi, start, end, &prev, NULL, NULL);
                plan_items_release(&prev);
        }
        out = r == 0 ? plan_expand(&pi, &map, tasks) : NULL;
        if (r == 0 && !out)
                r = -ENOMEM;
        size_t n = pi.n;
        plan_items_release(&pi);
        id_map_clear(&map);
        free(tasks);
        if (r < 0)
                return r;
        *ret = out;
        return (ssize_t)n;
}

unsigned sched_catchups_done(struct scheduler *s)
{
        pthread_mutex_lock(&s->lock);
        unsigned n = s->catchups_done;
        pthread_mutex_unlock(&s->lock);
        return n;
}
