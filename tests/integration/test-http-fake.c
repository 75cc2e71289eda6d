/* SPDX-License-Identifier: Apache-2.0 */
/* The in-memory backend behind the HTTP API tests (see test-http-fake.h). */
#include <ctype.h>
#include <curl/curl.h>
#include <errno.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "core/clock.h"
#include "core/macro.h"
#include "core/strbuf.h"
#include "harness.h"
#include "test-http-fake.h"

#define MAX_TASKS 64
#define N_RUNS    7

struct fake_instance {
        const char *id, *pool;
        int64_t save_us;
        const char *fails;
};

static const struct fake_instance instances[] = {
    {"redis-a", "ssd", 50000, NULL},
    {"redis-b", "ssd", 50000, NULL},
    {"redis-c", "hdd", 50000, NULL},
    {"redis-slow", "hdd", 3000000, NULL},
    {"redis-bad", "hdd", 20000, "MISCONF disk full"},
};
#define N_INSTANCES ELEMENTSOF(instances)

/* One save per instance at a time; later requests join it while it has not started. */
struct save {
        bool active;
        int64_t requested_us, started_us, done_mono;
        int64_t finished_us;
        int waiters;
        int64_t run_id;
};

struct handle {
        size_t n;
        size_t idx[N_INSTANCES * 4];
        struct api_persist_result results[N_INSTANCES * 4];
        int64_t done_mono[N_INSTANCES * 4];
};

static struct {
        pthread_mutex_t lock;
        pthread_cond_t cond;
        struct fake pub;
        struct api_task tasks[MAX_TASKS];
        size_t n_tasks;
        int next_task;
        struct save saves[N_INSTANCES];
        int64_t next_run_id;
        char nightly_state[16];
        struct {
                char id[API_ID_MAX];
                struct api_persist_result results[N_INSTANCES];
                size_t n;
                int64_t done_mono;
        } requests[16];
        size_t n_requests;
} F = {.lock = PTHREAD_MUTEX_INITIALIZER, .cond = PTHREAD_COND_INITIALIZER};

struct fake *fake_get(void)
{
        return &F.pub;
}

void fake_lock(void)
{
        pthread_mutex_lock(&F.lock);
}

void fake_unlock(void)
{
        pthread_mutex_unlock(&F.lock);
}

static void err_set(struct api_error *err, const char *field, const char *fmt, const char *arg)
{
        snprintf(err->message, sizeof(err->message), fmt, arg);
        snprintf(err->field, sizeof(err->field), "%s", field ? field : "");
}

void fake_reset(void)
{
        fake_lock();
        memset(&F.pub, 0, sizeof(F.pub));
        F.pub.is_leader = true;
        snprintf(F.pub.leader, sizeof(F.pub.leader), "persistd-0_abcde");
        F.pub.config_loaded = true;
        F.n_tasks = 0;
        F.next_task = 1;
        memset(F.saves, 0, sizeof(F.saves));
        F.next_run_id = 1000;
        F.n_requests = 0;
        snprintf(F.nightly_state, sizeof(F.nightly_state), "running");
        struct api_task t = {.enabled = true, .created_us = 1764000000000000};
        snprintf(t.id, sizeof(t.id), "hourly-a");
        snprintf(t.instance_id, sizeof(t.instance_id), "redis-a");
        snprintf(t.action, sizeof(t.action), "bgsave");
        snprintf(t.schedule, sizeof(t.schedule), "15 * * * *");
        snprintf(t.misfire, sizeof(t.misfire), "run_once");
        snprintf(t.description, sizeof(t.description), "every hour at :15");
        t.updated_us = t.created_us;
        F.tasks[F.n_tasks++] = t;
        snprintf(t.id, sizeof(t.id), "nightly-c");
        snprintf(t.instance_id, sizeof(t.instance_id), "redis-c");
        snprintf(t.schedule, sizeof(t.schedule), "0 3 * * *");
        t.enabled = false;
        snprintf(t.description, sizeof(t.description), "3 o'clock");
        F.tasks[F.n_tasks++] = t;
        fake_unlock();
}

static int find_instance(const char *id)
{
        for (size_t i = 0; i < N_INSTANCES; i++)
                if (streq(instances[i].id, id))
                        return (int)i;
        return -1;
}

static struct api_task *find_task(const char *id)
{
        for (size_t i = 0; i < F.n_tasks; i++)
                if (streq(F.tasks[i].id, id))
                        return &F.tasks[i];
        return NULL;
}

/* Every operation that needs "PostgreSQL". Called with the lock held. */
static int db_check(struct api_error *err)
{
        F.pub.backend_calls++;
        if (F.pub.postgres_down) {
                err_set(err, NULL, "PostgreSQL is unreachable: %s", "connection refused");
                return -ECONNREFUSED;
        }
        return 0;
}

static void probe(void *ud, struct api_probe *out)
{
        fake_lock();
        out->believes_leader = F.pub.is_leader;
        out->lease_duration_us = 15 * USEC_PER_SEC;
        out->since_renew_us = F.pub.wedged ? 17 * USEC_PER_SEC : 2 * USEC_PER_SEC;
        out->config_loaded = F.pub.config_loaded;
        out->postgres_ok = !F.pub.postgres_down;
        if (F.pub.postgres_down)
                snprintf(out->postgres_error, sizeof(out->postgres_error),
                         "connection to server on socket failed: Connection refused");
        fake_unlock();
}

static void leader(void *ud, struct api_leader *out)
{
        fake_lock();
        out->is_leader = F.pub.is_leader;
        snprintf(out->leader, sizeof(out->leader), "%s", F.pub.leader);
        out->retry_after_s = 3;
        fake_unlock();
}

static void nightly_fill(struct api_nightly *n)
{
        snprintf(n->state, sizeof(n->state), "%s", F.nightly_state);
        snprintf(n->date, sizeof(n->date), "2026-11-22");
        n->pass_id = 7;
        n->total = 5;
        n->done = 2;
        n->failed = 1;
        n->pending = 2;
        n->started_us = 1763769600000000;
        n->eta_us = 1763773200000000;
        n->current = calloc(1, sizeof(*n->current));
        n->n_current = 1;
        snprintf(n->current[0].pool, sizeof(n->current[0].pool), "hdd");
        snprintf(n->current[0].instance_id, sizeof(n->current[0].instance_id), "redis-c");
}

static int status(void *ud, struct api_status *out, struct api_error *err)
{
        fake_lock();
        int r = db_check(err);
        if (r == 0 && F.pub.fail_internal) {
                err_set(err, NULL, "password=%s leaked", "hunter2");
                r = -EIO;
        }
        if (r == 0) {
                snprintf(out->identity, sizeof(out->identity), "persistd-1_xyz12");
                out->is_leader = F.pub.is_leader;
                snprintf(out->leader, sizeof(out->leader), "%s", F.pub.leader);
                out->epoch = 42;
                snprintf(out->lease.holder, sizeof(out->lease.holder), "%s", F.pub.leader);
                out->lease.duration_s = 15;
                out->lease.acquire_us = 1763766000000000;
                out->lease.renew_us = 1763769590123456;
                out->lease.transitions = 3;
                out->loaded_hours_us[0] = 1763766000000000;
                out->loaded_hours_us[1] = 1763769600000000;
                out->n_loaded_hours = 2;
                out->pools = calloc(2, sizeof(*out->pools));
                out->n_pools = 2;
                snprintf(out->pools[0].name, sizeof(out->pools[0].name), "hdd");
                out->pools[0].limit = 1;
                out->pools[0].running = 1;
                out->pools[0].queued = 4;
                snprintf(out->pools[1].name, sizeof(out->pools[1].name), "ssd");
                out->pools[1].limit = 2;
                nightly_fill(&out->pass);
        }
        fake_unlock();
        return r;
}

static int task_list(void *ud, const struct api_task_filter *f, struct api_task **ret,
                     size_t *ret_n, char next[API_CURSOR_MAX], struct api_error *err)
{
        fake_lock();
        int r = db_check(err);
        if (r < 0) {
                fake_unlock();
                return r;
        }
        size_t start = 0;
        if (f->cursor[0]) {
                char *end;
                start = strtoul(f->cursor, &end, 10);
                if (*end || start > F.n_tasks) {
                        fake_unlock();
                        err_set(err, "cursor", "cursor: \"%s\" is not a cursor", f->cursor);
                        return -EINVAL;
                }
        }
        *ret = calloc(F.n_tasks + 1, sizeof(**ret));
        *ret_n = 0;
        size_t i;
        for (i = start; i < F.n_tasks && *ret_n < (size_t)f->limit; i++) {
                const struct api_task *t = &F.tasks[i];
                if (f->instance_id[0] && !streq(f->instance_id, t->instance_id))
                        continue;
                if (f->enabled >= 0 && t->enabled != (f->enabled == 1))
                        continue;
                (*ret)[(*ret_n)++] = *t;
        }
        if (i < F.n_tasks)
                snprintf(next, API_CURSOR_MAX, "%zu", i);
        fake_unlock();
        return 0;
}

static int task_get(void *ud, const char *id, struct api_task *out, struct api_error *err)
{
        fake_lock();
        int r = db_check(err);
        struct api_task *t = r == 0 ? find_task(id) : NULL;
        if (r == 0 && !t) {
                err_set(err, NULL, "task \"%s\" not found", id);
                r = -ENOENT;
        }
        if (t)
                *out = *t;
        fake_unlock();
        return r;
}

/* What the store would check: a cron of 5 or 6 fields, a known instance. */
static int task_check(const struct api_task *t, unsigned mask, struct api_error *err)
{
        if (mask & API_TASK_INSTANCE && find_instance(t->instance_id) < 0) {
                err_set(err, "instance_id", "instance_id: unknown instance \"%s\"", t->instance_id);
                return -EINVAL;
        }
        if (mask & API_TASK_SCHEDULE) {
                int fields = 0;
                bool in = false;
                for (const char *p = t->schedule; *p; p++) {
                        if (!isspace((unsigned char)*p) && !in)
                                fields++;
                        in = !isspace((unsigned char)*p);
                }
                if (fields != 5 && fields != 6) {
                        err_set(err, "schedule",
                                "schedule: \"%s\" is not a cron expression (5 fields, or 6 "
                                "with seconds first)",
                                t->schedule);
                        return -EINVAL;
                }
        }
        return 0;
}

static int task_create(void *ud, const struct api_task *in, struct api_task *out,
                       struct api_error *err)
{
        fake_lock();
        int r = db_check(err);
        if (r == 0)
                r = task_check(in, API_TASK_ALL, err);
        if (r == 0 && in->id[0] && find_task(in->id)) {
                err_set(err, "id", "task \"%s\" already exists", in->id);
                r = -EEXIST;
        }
        if (r == 0 && F.n_tasks == MAX_TASKS) {
                err_set(err, NULL, "%s", "too many tasks");
                r = -ENOSPC;
        }
        if (r == 0) {
                struct api_task t = *in;
                if (!t.id[0])
                        snprintf(t.id, sizeof(t.id), "task-%d", F.next_task++);
                t.created_us = t.updated_us = clock_wall_us();
                F.tasks[F.n_tasks++] = t;
                *out = t;
        }
        fake_unlock();
        return r;
}

static int task_update(void *ud, const char *id, const struct api_task *in, unsigned mask,
                       struct api_task *out, struct api_error *err)
{
        fake_lock();
        int r = db_check(err);
        struct api_task *t = r == 0 ? find_task(id) : NULL;
        if (r == 0 && !t) {
                err_set(err, NULL, "task \"%s\" not found", id);
                r = -ENOENT;
        }
        if (r == 0)
                r = task_check(in, mask, err);
        if (r == 0) {
                if (mask & API_TASK_INSTANCE)
                        memcpy(t->instance_id, in->instance_id, sizeof(t->instance_id));
                if (mask & API_TASK_ACTION)
                        memcpy(t->action, in->action, sizeof(t->action));
                if (mask & API_TASK_SCHEDULE)
                        memcpy(t->schedule, in->schedule, sizeof(t->schedule));
                if (mask & API_TASK_ENABLED)
                        t->enabled = in->enabled;
                if (mask & API_TASK_MISFIRE)
                        memcpy(t->misfire, in->misfire, sizeof(t->misfire));
                if (mask & API_TASK_DEADLINE)
                        t->starting_deadline_s = in->starting_deadline_s;
                if (mask & API_TASK_DESCRIPTION)
                        memcpy(t->description, in->description, sizeof(t->description));
                t->updated_us = clock_wall_us();
                *out = *t;
        }
        fake_unlock();
        return r;
}

static int task_delete(void *ud, const char *id, struct api_error *err)
{
        fake_lock();
        int r = db_check(err);
        struct api_task *t = r == 0 ? find_task(id) : NULL;
        if (r == 0 && !t) {
                err_set(err, NULL, "task \"%s\" not found", id);
                r = -ENOENT;
        }
        if (t) {
                size_t i = (size_t)(t - F.tasks);
                memmove(&F.tasks[i], &F.tasks[i + 1], (F.n_tasks - i - 1) * sizeof(*t));
                F.n_tasks--;
        }
        fake_unlock();
        return r;
}

static int task_run(void *ud, const char *id, struct api_run *out, struct api_error *err)
{
        fake_lock();
        int r = db_check(err);
        struct api_task *t = r == 0 ? find_task(id) : NULL;
        if (r == 0 && !t) {
                err_set(err, NULL, "task \"%s\" not found", id);
                r = -ENOENT;
        }
        if (t) {
                out->id = F.next_run_id++;
                snprintf(out->task_id, sizeof(out->task_id), "%s", t->id);
                snprintf(out->instance_id, sizeof(out->instance_id), "%s", t->instance_id);
                snprintf(out->kind, sizeof(out->kind), "manual");
                snprintf(out->state, sizeof(out->state), "claimed");
                out->scheduled_for_us = clock_wall_us();
                out->epoch = 42;
                snprintf(out->leader, sizeof(out->leader), "%s", F.pub.leader);
        }
        fake_unlock();
        return r;
}

static void instance_fill(size_t i, struct api_instance *out)
{
        memset(out, 0, sizeof(*out));
        snprintf(out->id, sizeof(out->id), "%s", instances[i].id);
        snprintf(out->address, sizeof(out->address), "10.0.0.%zu:6379", i + 1);
        snprintf(out->pool, sizeof(out->pool), "%s", instances[i].pool);
        out->enabled = true;
        out->last_run_id = 900 + (int64_t)i;
        snprintf(out->last_state, sizeof(out->last_state), "%s",
                 instances[i].fails ? "failed" : "succeeded");
        if (instances[i].fails)
                snprintf(out->last_error, sizeof(out->last_error), "%s", instances[i].fails);
        out->last_finished_us = 1763769000000000;
        out->lastsave = 1763769000;
        snprintf(out->redis_version, sizeof(out->redis_version), "7.0.15");
        out->can_bgsave = out->can_bgrewriteaof = out->can_config = true;
        out->save_config_ok = true;
        out->used_memory = 1073741824;
        out->write_rate_bytes_s = 104857600;
        out->fork_ms_per_gb = 20;
        out->estimate_us = instances[i].save_us;
}

static int instance_list(void *ud, const struct api_instance_filter *f, struct api_instance **ret,
                         size_t *ret_n, char next[API_CURSOR_MAX], struct api_error *err)
{
        fake_lock();
        int r = db_check(err);
        fake_unlock();
        if (r < 0)
                return r;
        *ret = calloc(N_INSTANCES, sizeof(**ret));
        *ret_n = 0;
        for (size_t i = 0; i < N_INSTANCES; i++)
                if (!f->pool[0] || streq(f->pool, instances[i].pool))
                        instance_fill(i, &(*ret)[(*ret_n)++]);
        return 0;
}

static int instance_get(void *ud, const char *id, struct api_instance *out, struct api_error *err)
{
        fake_lock();
        int r = db_check(err);
        fake_unlock();
        if (r < 0)
                return r;
        int i = find_instance(id);
        if (i < 0) {
                err_set(err, NULL, "instance \"%s\" not found", id);
                return -ENOENT;
        }
        instance_fill((size_t)i, out);
        return 0;
}

/* Runs 1..N_RUNS, newest first; the cursor is the id to continue below. */
static int run_list(void *ud, const struct api_run_filter *f, struct api_run **ret, size_t *ret_n,
                    char next[API_CURSOR_MAX], struct api_error *err)
{
        fake_lock();
        int r = db_check(err);
        fake_unlock();
        if (r < 0)
                return r;
        int64_t below = N_RUNS + 1;
        if (f->cursor[0]) {
                char *end;
                below = strtoll(f->cursor, &end, 10);
                if (*end || below < 1 || below > N_RUNS) {
                        err_set(err, "cursor", "cursor: \"%s\" is not a cursor", f->cursor);
                        return -EINVAL;
                }
        }
        *ret = calloc(N_RUNS, sizeof(**ret));
        *ret_n = 0;
        int64_t id;
        for (id = below - 1; id >= 1 && *ret_n < (size_t)f->limit; id--) {
                struct api_run run = {.id = id, .epoch = 42};
                int64_t t = 1763769600000000 + id * 60 * USEC_PER_SEC;
                snprintf(run.instance_id, sizeof(run.instance_id), "%s", instances[id % 3].id);
                snprintf(run.kind, sizeof(run.kind), "%s", id % 2 ? "scheduled" : "nightly");
                snprintf(run.state, sizeof(run.state), "%s", id == 3 ? "failed" : "succeeded");
                if (id == 3)
                        snprintf(run.error, sizeof(run.error), "MISCONF disk full");
                if (id % 2)
                        snprintf(run.task_id, sizeof(run.task_id), "hourly-a");
                run.scheduled_for_us = t;
                run.started_us = t + 1000;
                run.finished_us = t + 2 * USEC_PER_SEC;
                if (f->kind[0] && !streq(f->kind, run.kind))
                        continue;
                if (f->state[0] && !streq(f->state, run.state))
                        continue;
                if (f->instance_id[0] && !streq(f->instance_id, run.instance_id))
                        continue;
                if (f->task_id[0] && !streq(f->task_id, run.task_id))
                        continue;
                if (f->since_us && t < f->since_us)
                        continue;
                if (f->until_us && t >= f->until_us)
                        continue;
                (*ret)[(*ret_n)++] = run;
        }
        if (id >= 1 && *ret_n == (size_t)f->limit)
                snprintf(next, API_CURSOR_MAX, "%lld", (long long)id + 1);
        return 0;
}

static int plan(void *ud, int64_t at_us, struct api_plan *out, struct api_error *err)
{
        fake_lock();
        int r = db_check(err);
        fake_unlock();
        if (r < 0)
                return r;
        int64_t hour = at_us - at_us % (3600 * USEC_PER_SEC);
        out->hour_us = hour;
        out->loaded = true;
        out->pools = calloc(1, sizeof(*out->pools));
        out->n_pools = 1;
        snprintf(out->pools[0].name, sizeof(out->pools[0].name), "ssd");
        out->pools[0].limit = 1;
        out->pools[0].expected_end_us = hour + 3700 * USEC_PER_SEC;
        out->pools[0].overrun_us = 100 * USEC_PER_SEC;
        out->slots = calloc(2, sizeof(*out->slots));
        out->n_slots = 2;
        for (int i = 0; i < 2; i++) {
                struct api_plan_slot *s = &out->slots[i];
                snprintf(s->task_id, sizeof(s->task_id), "hourly-%c", 'a' + i);
                snprintf(s->instance_id, sizeof(s->instance_id), "redis-%c", 'a' + i);
                snprintf(s->pool, sizeof(s->pool), "ssd");
                s->slot_us = hour + 900 * USEC_PER_SEC;
                s->expected_start_us = s->slot_us + i * 1800 * USEC_PER_SEC;
                s->expected_end_us = s->expected_start_us + 1800 * USEC_PER_SEC;
        }
        return 0;
}

static int nightly_status(void *ud, struct api_nightly *out, struct api_error *err)
{
        fake_lock();
        int r = db_check(err);
        if (r == 0)
                nightly_fill(out);
        fake_unlock();
        return r;
}

static int nightly_control(void *ud, enum api_nightly_action action, struct api_nightly *out,
                           struct api_error *err)
{
        fake_lock();
        int r = db_check(err);
        if (r == 0 && action == API_NIGHTLY_START && !streq(F.nightly_state, "idle")) {
                err_set(err, NULL, "a pass is already %s", F.nightly_state);
                r = -EBUSY;
        }
        if (r == 0) {
                snprintf(F.nightly_state, sizeof(F.nightly_state), "%s",
                         action == API_NIGHTLY_PAUSE ? "paused" : "running");
                nightly_fill(out);
        }
        fake_unlock();
        return r;
}

/* ---- persist ------------------------------------------------------------------------------ */

static int add_target(struct handle *h, int i, struct api_error *err)
{
        if (h->n == ELEMENTSOF(h->idx)) {
                err_set(err, "instances", "%s", "too many targets");
                return -EINVAL;
        }
        struct save *s = &F.saves[i];
        int64_t now = clock_wall_us(), mono = clock_mono_us();
        struct api_persist_result *res = &h->results[h->n];
        memset(res, 0, sizeof(*res));
        snprintf(res->instance_id, sizeof(res->instance_id), "%s", instances[i].id);
        res->requested_us = now;
        if (s->active && s->done_mono > mono) {
                res->joined = true;
        } else {
                s->active = true;
                s->requested_us = now;
                s->started_us = now + 1000;
                s->done_mono = mono + instances[i].save_us;
                s->finished_us = s->started_us + instances[i].save_us;
                s->run_id = F.next_run_id++;
                F.pub.saves_started++;
        }
        res->started_us = s->started_us;
        res->run_id = s->run_id;
        h->done_mono[h->n] = s->done_mono;
        h->idx[h->n++] = (size_t)i;
        return 0;
}

static int persist_begin(void *ud, const struct api_persist_request *req, void **ret_handle,
                         size_t *ret_n, struct api_error *err)
{
        fake_lock();
        int r = db_check(err);
        if (r == 0 && !F.pub.is_leader)
                r = -EAGAIN;
        /* Every target must exist before anything starts. */
        for (size_t k = 0; r == 0 && k < req->n_instances; k++)
                if (find_instance(req->instances[k]) < 0) {
                        err_set(err, "instances", "instance \"%s\" not found", req->instances[k]);
                        r = -ENOENT;
                }
        if (r == 0 && req->pool[0]) {
                bool known = false;
                for (size_t i = 0; i < N_INSTANCES; i++)
                        known = known || streq(instances[i].pool, req->pool);
                if (!known) {
                        err_set(err, "pool", "pool \"%s\" not found", req->pool);
                        r = -ENOENT;
                }
        }
        struct handle *h = r == 0 ? calloc(1, sizeof(*h)) : NULL;
        if (r == 0 && !h)
                r = -ENOMEM;
        /* A retry with a known request id gets the same saves. */
        for (size_t q = 0; r == 0 && req->request_id[0] && q < F.n_requests; q++) {
                if (!streq(F.requests[q].id, req->request_id))
                        continue;
                h->n = F.requests[q].n;
                memcpy(h->results, F.requests[q].results, h->n * sizeof(h->results[0]));
                for (size_t k = 0; k < h->n; k++) {
                        h->idx[k] = (size_t)find_instance(h->results[k].instance_id);
                        h->done_mono[k] = F.requests[q].done_mono;
                }
                *ret_handle = h;
                *ret_n = h->n;
                fake_unlock();
                return 0;
        }
        for (size_t k = 0; r == 0 && k < req->n_instances; k++)
                r = add_target(h, find_instance(req->instances[k]), err);
        for (size_t i = 0; r == 0 && (req->pool[0] || req->all) && i < N_INSTANCES; i++)
                if (req->all || streq(instances[i].pool, req->pool))
                        r = add_target(h, (int)i, err);
        if (r == 0 && req->request_id[0] && F.n_requests < ELEMENTSOF(F.requests)) {
                size_t q = F.n_requests++;
                snprintf(F.requests[q].id, sizeof(F.requests[q].id), "%s", req->request_id);
                F.requests[q].n = MIN(h->n, N_INSTANCES);
                memcpy(F.requests[q].results, h->results, F.requests[q].n * sizeof(h->results[0]));
                F.requests[q].done_mono = h->done_mono[0];
        }
        fake_unlock();
        if (r < 0) {
                free(h);
                return r;
        }
        *ret_handle = h;
        *ret_n = h->n;
        return 0;
}

static int persist_poll(void *ud, void *handle, int64_t timeout_us,
                        struct api_persist_result *results)
{
        struct handle *h = handle;
        int64_t deadline = clock_mono_us() + timeout_us;
        for (;;) {
                bool all = true;
                int64_t now = clock_mono_us();
                for (size_t k = 0; k < h->n; k++) {
                        struct api_persist_result *res = &h->results[k];
                        const struct fake_instance *in = &instances[h->idx[k]];
                        if (!res->done && now >= h->done_mono[k]) {
                                res->done = true;
                                res->success = in->fails == NULL;
                                if (in->fails)
                                        snprintf(res->error, sizeof(res->error), "%s", in->fails);
                                res->finished_us = res->started_us + in->save_us;
                                res->lastsave = res->finished_us / USEC_PER_SEC;
                        }
                        all = all && res->done;
                }
                if (all || now >= deadline) {
                        memcpy(results, h->results, h->n * sizeof(*results));
                        return all ? 0 : -ETIMEDOUT;
                }
                clock_sleep_us(MIN(10000, deadline - now));
        }
}

static void persist_end(void *ud, void *handle)
{
        free(handle);
}

static const struct api_backend backend = {
    .probe = probe,
    .leader = leader,
    .status = status,
    .task_list = task_list,
    .task_get = task_get,
    .task_create = task_create,
    .task_update = task_update,
    .task_delete = task_delete,
    .task_run = task_run,
    .instance_list = instance_list,
    .instance_get = instance_get,
    .run_list = run_list,
    .plan = plan,
    .nightly_status = nightly_status,
    .nightly_control = nightly_control,
    .persist_begin = persist_begin,
    .persist_poll = persist_poll,
    .persist_end = persist_end,
};

const struct api_backend *fake_backend(void)
{
        return &backend;
}

struct http_server *fake_server_start(struct metrics *m)
{
        struct http_server_options o = {
            .listen = "127.0.0.1:0",
            .token = FAKE_TOKEN,
            .max_body_bytes = 4096,
            .idle_timeout_s = 10,
        };
        struct http_server *s = http_server_new(&o, &backend, m);
        if (!s || http_server_start(s) < 0)
                th_die("cannot start the HTTP server: %s", s ? http_server_errstr(s) : "OOM");
        return s;
}

/* ---- a client ----------------------------------------------------------------------------- */

static size_t on_body(char *data, size_t size, size_t nmemb, void *userdata)
{
        strbuf_add(userdata, data, size * nmemb);
        return size * nmemb;
}

static size_t on_header(char *data, size_t size, size_t nmemb, void *userdata)
{
        struct strbuf *sb = userdata;
        size_t n = size * nmemb;
        /* Lowercase the name, keep the value. */
        size_t colon = 0;
        while (colon < n && data[colon] != ':')
                colon++;
        for (size_t i = 0; i < n; i++)
                strbuf_addch(sb, i < colon ? (char)tolower((unsigned char)data[i]) : data[i]);
        return n;
}

void fake_http(uint16_t port, const char *method, const char *path, const char *token,
               const char *body, struct http_reply *ret)
{
        struct strbuf b = STRBUF_INIT, h = STRBUF_INIT;
        char url[2048], auth[512];
        struct curl_slist *headers = NULL;
        snprintf(url, sizeof(url), "http://127.0.0.1:%u%s", port, path);
        CURL *c = curl_easy_init();
        if (token) {
                snprintf(auth, sizeof(auth), "Authorization: Bearer %s", token);
                headers = curl_slist_append(headers, auth);
        }
        headers = curl_slist_append(headers, "Expect:");
        curl_easy_setopt(c, CURLOPT_URL, url);
        curl_easy_setopt(c, CURLOPT_CUSTOMREQUEST, method);
        curl_easy_setopt(c, CURLOPT_HTTPHEADER, headers);
        curl_easy_setopt(c, CURLOPT_NOSIGNAL, 1L);
        curl_easy_setopt(c, CURLOPT_TIMEOUT_MS, 20000L);
        curl_easy_setopt(c, CURLOPT_WRITEFUNCTION, on_body);
        curl_easy_setopt(c, CURLOPT_WRITEDATA, &b);
        curl_easy_setopt(c, CURLOPT_HEADERFUNCTION, on_header);
        curl_easy_setopt(c, CURLOPT_HEADERDATA, &h);
        if (body) {
                curl_easy_setopt(c, CURLOPT_POSTFIELDS, body);
                curl_easy_setopt(c, CURLOPT_POSTFIELDSIZE, (long)strlen(body));
        }
        CURLcode cc = curl_easy_perform(c);
        if (cc != CURLE_OK)
                th_die("%s %s: %s", method, path, curl_easy_strerror(cc));
        curl_easy_getinfo(c, CURLINFO_RESPONSE_CODE, &ret->status);
        curl_slist_free_all(headers);
        curl_easy_cleanup(c);
        ret->body = strbuf_detach(&b);
        ret->headers = strbuf_detach(&h);
}

void http_reply_free(struct http_reply *r)
{
        free(r->body);
        free(r->headers);
        r->body = r->headers = NULL;
}

const char *http_reply_header(const struct http_reply *r, const char *name, char *buf, size_t size)
{
        char key[128];
        snprintf(key, sizeof(key), "\n%s:", name);
        const char *p = strstr(r->headers, key);
        if (!p)
                return NULL;
        p += strlen(key);
        while (*p == ' ')
                p++;
        size_t n = strcspn(p, "\r\n");
        snprintf(buf, size, "%.*s", (int)n, p);
        return buf;
}
