/* SPDX-License-Identifier: Apache-2.0 */
/*
 * Per-pool priority queues and their executor threads. One mutex guards the whole set (queues
 * are short-lived and operations are O(log n)); each pool has its own condition variable so a
 * submission wakes only that pool's executors.
 */
#include <errno.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "core/clock.h"
#include "core/log.h"
#include "sched/pool.h"

#define LOG_MODULE "pool"

/* Executors re-read the schedule clock at least this often while they wait. */
#define MAX_WAIT_US (1 * USEC_PER_SEC)

struct job_heap {
        struct sched_job **items;
        size_t n, alloc;
};

struct pool {
        char name[64];
        int limit;
        int running;
        int max_running_seen;
        uint64_t started_total;
        struct job_heap heaps[SCHED_PRIO_COUNT];
        pthread_cond_t cond;
        pthread_t *threads;
        int n_threads;
        struct sched_pools *set;
        struct pool *next;
};

struct sched_pools {
        pthread_mutex_t lock;
        uint64_t generation; /* 0: not leading */
        uint64_t seq;
        bool stopping;
        int64_t starvation_us;
        sched_pool_limit_fn limit_fn;
        void *limit_userdata;
        struct pool *pools;
};

const char *sched_priority_to_string(enum sched_priority p)
{
        static const char *const names[] = {
            [SCHED_PRIO_ADOPT] = "adopt",     [SCHED_PRIO_PERSIST] = "persist",
            [SCHED_PRIO_MANUAL] = "manual",   [SCHED_PRIO_SCHEDULED] = "scheduled",
            [SCHED_PRIO_NIGHTLY] = "nightly",
        };
        return (size_t)p < ELEMENTSOF(names) ? names[p] : "unknown";
}

/* ---- a binary min-heap ordered by (due, seq) ------------------------------------------- */

static bool job_before(const struct sched_job *a, const struct sched_job *b)
{
        if (a->due_us != b->due_us)
                return a->due_us < b->due_us;
        return a->seq < b->seq;
}

static void heap_swap(struct job_heap *h, size_t i, size_t j)
{
        struct sched_job *t = h->items[i];
        h->items[i] = h->items[j];
        h->items[j] = t;
}

static void heap_sift_down(struct job_heap *h, size_t i)
{
        for (;;) {
                size_t l = 2 * i + 1, r = l + 1, m = i;
                if (l < h->n && job_before(h->items[l], h->items[m]))
                        m = l;
                if (r < h->n && job_before(h->items[r], h->items[m]))
                        m = r;
                if (m == i)
                        return;
                heap_swap(h, i, m);
                i = m;
        }
}

static int heap_push(struct job_heap *h, struct sched_job *job)
{
        if (h->n == h->alloc) {
                size_t want = h->alloc ? h->alloc * 2 : 16;
                /* NOLINTNEXTLINE(bugprone-sizeof-expression): an array of pointers */
                struct sched_job **n = realloc(h->items, want * sizeof(*n));
                if (!n)
                        return -ENOMEM;
                h->items = n;
                h->alloc = want;
        }
        size_t i = h->n++;
        h->items[i] = job;
        while (i > 0 && job_before(h->items[i], h->items[(i - 1) / 2])) {
                heap_swap(h, i, (i - 1) / 2);
                i = (i - 1) / 2;
        }
        return 0;
}

static struct sched_job *heap_top(const struct job_heap *h)
{
        return h->n ? h->items[0] : NULL;
}

static struct sched_job *heap_pop(struct job_heap *h)
{
        struct sched_job *top = h->items[0];
        h->items[0] = h->items[--h->n];
        heap_sift_down(h, 0);
        return top;
}

/* Remove every job matching `pred` into the list *out (linked through ->next). */
static size_t heap_extract(struct job_heap *h, bool (*pred)(const struct sched_job *, const void *),
                           const void *key, struct sched_job **out)
{
        size_t kept = 0, removed = 0;
        for (size_t i = 0; i < h->n; i++) {
                struct sched_job *j = h->items[i];
                if (pred(j, key)) {
                        j->next = *out;
                        *out = j;
                        removed++;
                } else {
                        h->items[kept++] = j;
                }
        }
        h->n = kept;
        for (size_t i = kept / 2 + 1; i-- > 0;)
                heap_sift_down(h, i);
        return removed;
}

static bool match_all(const struct sched_job *j, const void *key)
{
        return true;
}

struct withdraw_key {
        uint64_t owner_key;
        int64_t not_before_us;
};

static bool match_owner(const struct sched_job *j, const void *key)
{
        const struct withdraw_key *w = key;
        return j->owner_key == w->owner_key && j->due_us >= w->not_before_us;
}

static void cancel_list(struct sched_job *list, enum sched_cancel_reason reason)
{
        while (list) {
                struct sched_job *next = list->next;
                list->next = NULL;
                if (list->cancel)
                        list->cancel(list, reason);
                list = next;
        }
}

/* ---- executors ------------------------------------------------------------------------- */

/*
 * Choose the job to start now in `p`, or NULL and how long to wait. Called with the lock held.
 */
static struct sched_job *pick_job(struct sched_pools *ps, struct pool *p, int64_t now,
                                  int64_t *ret_wait_us)
{
        int64_t wait = MAX_WAIT_US;

        for (int prio = 0; prio < SCHED_PRIO_COUNT; prio++) {
                struct sched_job *top = heap_top(&p->heaps[prio]);
                if (!top)
                        continue;
                if (top->due_us > now) {
                        wait = MIN(wait, top->due_us - now);
                        continue;
                }
                /*
                 * Due. In the last free place, a job that would still run when a more urgent job
                 * falls due waits for it, unless it has waited too long already.
                 */
                if (p->running + 1 >= p->limit && top->estimate_us > 0 && prio > 0) {
                        int64_t next_urgent = INT64_MAX;
                        for (int q = 0; q < prio; q++) {
                                struct sched_job *u = heap_top(&p->heaps[q]);
                                if (u)
                                        next_urgent = MIN(next_urgent, u->due_us);
                        }
                        bool starving = clock_mono_us() - top->submitted_mono >= ps->starvation_us;
                        if (next_urgent != INT64_MAX && now + top->estimate_us > next_urgent &&
                            !starving) {
                                *ret_wait_us = MAX(MIN(wait, next_urgent - now), 1000);
                                return NULL;
                        }
                }
                return heap_pop(&p->heaps[prio]);
        }
        *ret_wait_us = wait;
        return NULL;
}

static void *executor_main(void *arg)
{
        struct pool *p = arg;
        struct sched_pools *ps = p->set;

        pthread_mutex_lock(&ps->lock);
        while (!ps->stopping) {
                int64_t wait_us = MAX_WAIT_US;
                struct sched_job *job = pick_job(ps, p, clock_wall_us(), &wait_us);
                if (!job) {
                        (void)clock_cond_wait_us(&p->cond, &ps->lock, MIN(wait_us, MAX_WAIT_US));
                        continue;
                }
                p->running++;
                p->started_total++;
                p->max_running_seen = MAX(p->max_running_seen, p->running);
                job->started_wall = clock_wall_us();
                pthread_mutex_unlock(&ps->lock);

                job->run(job); /* may free the job */

                pthread_mutex_lock(&ps->lock);
                p->running--;
                /* A freed place can change another executor's backfill decision. */
                pthread_cond_broadcast(&p->cond);
        }
        pthread_mutex_unlock(&ps->lock);
        return NULL;
}

/* Find or create the pool `name`. Called with the lock held. */
static struct pool *pool_get(struct sched_pools *ps, const char *name, int *ret_error)
{
        struct pool *p;

        for (p = ps->pools; p; p = p->next)
                if (streq(p->name, name))
                        return p;
        if (strlen(name) >= sizeof(p->name)) {
                *ret_error = -EINVAL;
                return NULL;
        }
        p = calloc(1, sizeof(*p));
        if (!p)
                goto oom;
        snprintf(p->name, sizeof(p->name), "%s", name);
        p->set = ps;
        p->limit = ps->limit_fn ? ps->limit_fn(name, ps->limit_userdata) : 1;
        p->limit = CLAMP(p->limit, 1, 1024);
        p->threads = calloc((size_t)p->limit, sizeof(pthread_t));
        if (!p->threads)
                goto oom;
        (void)clock_cond_init(&p->cond);
        for (int i = 0; i < p->limit; i++) {
                if (pthread_create(&p->threads[i], NULL, executor_main, p) != 0)
                        break;
                p->n_threads++;
        }
        if (p->n_threads == 0) {
                pthread_cond_destroy(&p->cond);
                free(p->threads);
                free(p);
                *ret_error = -EAGAIN;
                return NULL;
        }
        if (p->n_threads < p->limit) {
                log_warn("pool \"%s\": started %d of %d executors; its limit is lowered to %d",
                         name, p->n_threads, p->limit, p->n_threads);
                p->limit = p->n_threads;
        }
        p->next = ps->pools;
        ps->pools = p;
        return p;
oom:
        if (p)
                free(p->threads);
        free(p);
        *ret_error = -ENOMEM;
        return NULL;
}

struct sched_pools *sched_pools_new(sched_pool_limit_fn limit_fn, void *limit_userdata,
                                    int64_t starvation_us)
{
        struct sched_pools *ps = calloc(1, sizeof(*ps));
        if (!ps)
                return NULL;
        pthread_mutex_init(&ps->lock, NULL);
        ps->limit_fn = limit_fn;
        ps->limit_userdata = limit_userdata;
        ps->starvation_us = starvation_us;
        return ps;
}

static struct sched_job *take_all_queued(struct sched_pools *ps)
{
        struct sched_job *list = NULL;
        for (struct pool *p = ps->pools; p; p = p->next)
                for (int prio = 0; prio < SCHED_PRIO_COUNT; prio++)
                        heap_extract(&p->heaps[prio], match_all, NULL, &list);
        return list;
}

void sched_pools_free(struct sched_pools *ps)
{
        struct sched_job *list;

        if (!ps)
                return;
        pthread_mutex_lock(&ps->lock);
        ps->stopping = true;
        ps->generation = 0;
        list = take_all_queued(ps);
        for (struct pool *p = ps->pools; p; p = p->next)
                pthread_cond_broadcast(&p->cond);
        pthread_mutex_unlock(&ps->lock);
        cancel_list(list, SCHED_CANCEL_SHUTDOWN);

        for (struct pool *p = ps->pools, *next; p; p = next) {
                next = p->next;
                for (int i = 0; i < p->n_threads; i++)
                        pthread_join(p->threads[i], NULL);
                for (int prio = 0; prio < SCHED_PRIO_COUNT; prio++)
                        free(p->heaps[prio].items);
                pthread_cond_destroy(&p->cond);
                free(p->threads);
                free(p);
        }
        pthread_mutex_destroy(&ps->lock);
        free(ps);
}

void sched_pools_set_generation(struct sched_pools *ps, uint64_t generation)
{
        pthread_mutex_lock(&ps->lock);
        ps->generation = generation;
        pthread_mutex_unlock(&ps->lock);
}

void sched_pools_clear(struct sched_pools *ps)
{
        struct sched_job *list;

        pthread_mutex_lock(&ps->lock);
        ps->generation = 0;
        list = take_all_queued(ps);
        pthread_mutex_unlock(&ps->lock);
        cancel_list(list, SCHED_CANCEL_LEADERSHIP);
}

uint64_t sched_pools_generation(struct sched_pools *ps)
{
        pthread_mutex_lock(&ps->lock);
        uint64_t g = ps->generation;
        pthread_mutex_unlock(&ps->lock);
        return g;
}

int sched_pools_submit(struct sched_pools *ps, const char *pool, struct sched_job *job)
{
        int r = 0;

        pthread_mutex_lock(&ps->lock);
        if (ps->generation == 0 || ps->stopping) {
                r = -EAGAIN;
                goto out;
        }
        struct pool *p = pool_get(ps, pool, &r);
        if (!p)
                goto out;
        job->generation = ps->generation;
        job->seq = ++ps->seq;
        job->submitted_mono = clock_mono_us();
        job->next = NULL;
        r = heap_push(&p->heaps[CLAMP((int)job->priority, 0, SCHED_PRIO_COUNT - 1)], job);
        if (r == 0)
                pthread_cond_broadcast(&p->cond);
out:
        pthread_mutex_unlock(&ps->lock);
        return r;
}

size_t sched_pools_withdraw(struct sched_pools *ps, const char *pool, uint64_t owner_key,
                            int64_t not_before_us)
{
        struct withdraw_key key = {owner_key, not_before_us};
        struct sched_job *list = NULL;
        size_t n = 0;

        pthread_mutex_lock(&ps->lock);
        for (struct pool *p = ps->pools; p; p = p->next) {
                if (!streq(p->name, pool))
                        continue;
                for (int prio = 0; prio < SCHED_PRIO_COUNT; prio++)
                        n += heap_extract(&p->heaps[prio], match_owner, &key, &list);
                pthread_cond_broadcast(&p->cond);
        }
        pthread_mutex_unlock(&ps->lock);
        cancel_list(list, SCHED_CANCEL_WITHDRAWN);
        return n;
}

void sched_pools_kick(struct sched_pools *ps)
{
        pthread_mutex_lock(&ps->lock);
        for (struct pool *p = ps->pools; p; p = p->next)
                pthread_cond_broadcast(&p->cond);
        pthread_mutex_unlock(&ps->lock);
}

int sched_pools_stats(struct sched_pools *ps, struct sched_pool_stats **ret)
{
        struct sched_pool_stats *s;
        int n = 0, i = 0;

        pthread_mutex_lock(&ps->lock);
        for (struct pool *p = ps->pools; p; p = p->next)
                n++;
        s = calloc((size_t)(n ? n : 1), sizeof(*s));
        if (!s) {
                pthread_mutex_unlock(&ps->lock);
                return -ENOMEM;
        }
        for (struct pool *p = ps->pools; p; p = p->next, i++) {
                snprintf(s[i].name, sizeof(s[i].name), "%s", p->name);
                s[i].limit = p->limit;
                s[i].running = p->running;
                s[i].started_total = p->started_total;
                s[i].max_running_seen = p->max_running_seen;
                for (int prio = 0; prio < SCHED_PRIO_COUNT; prio++) {
                        s[i].queued_by_priority[prio] = (int)p->heaps[prio].n;
                        s[i].queued += (int)p->heaps[prio].n;
                }
        }
        pthread_mutex_unlock(&ps->lock);
        *ret = s;
        return n;
}
