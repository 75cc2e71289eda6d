/* SPDX-License-Identifier: Apache-2.0 */
/*
 * The HTTP API's backend over the store, the fleet and the elector. Task ids are bigint in the
 * store and text in the API; everything the HTTP layer cannot check alone (a cron expression,
 * an unknown instance, a missing row) is checked here before anything is written.
 */
#include <errno.h>
#include <inttypes.h>
#include <pthread.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "core/clock.h"
#include "core/log.h"
#include "core/util.h"
#include "daemon/api-backend.h"
#include "daemon/k8s-adapters.h"
#include "election/elector.h"
#include "fleet/fleet.h"
#include "sched/cron.h"
#include "store/pgstore.h"

#define LOG_MODULE "api"

/* Readiness pings PostgreSQL at most this often; probes in between use the last answer. */
#define PING_INTERVAL_US (1 * USEC_PER_SEC)

struct api_impl {
        struct api_deps deps;

        pthread_mutex_t lock;
        /* Under the lock. */
        bool pinging;
        int64_t last_ping_mono_us;
        bool postgres_ok;
        char postgres_error[API_TEXT_MAX];
};

/* Copy `src` (NULL: "") into a fixed array, truncated to fit. */
static __attribute__((noinline)) void copy_cut(char *dst, size_t size, const char *src)
{
        size_t n = src ? strlen(src) : 0;
        n = MIN(n, size - 1);
        if (n)
                memcpy(dst, src, n);
        dst[n] = '\0';
}
#define copy_str(dst, src) copy_cut((dst), sizeof(dst), (src))

static void set_err(struct api_error *err, const char *field, const char *fmt, ...) _printf_(3, 4);
static void set_err(struct api_error *err, const char *field, const char *fmt, ...)
{
        va_list ap;

        copy_str(err->field, field);
        va_start(ap, fmt);
        vsnprintf(err->message, sizeof(err->message), fmt, ap);
        va_end(ap);
}

/* A store failure as the API reports it: "FIELD: reason" messages keep their field. */
static int store_err(struct api_error *err, int r, const char *what)
{
        const char *msg = pgstore_errstr();

        if (r == -EINVAL) {
                const char *colon = strstr(msg, ": ");
                if (colon && colon > msg && (size_t)(colon - msg) < sizeof(err->field)) {
                        memcpy(err->field, msg, (size_t)(colon - msg));
                        err->field[colon - msg] = '\0';
                        copy_str(err->message, colon + 2);
                } else
                        set_err(err, "", "%s", msg);
                return r;
        }
        if (r == -ENOTCONN || r == -ETIMEDOUT)
                set_err(err, "", "%s: PostgreSQL is unavailable", what);
        else if (r != -ENOENT && r != -EEXIST)
                set_err(err, "", "%s failed", what);
        if (r != -ENOENT && r != -EEXIST && r != -EINVAL)
                log_warn("%s failed: %s", what, msg);
        return r;
}

/* ---- health and leadership ----------------------------------------------------------------- */

static void refresh_postgres(struct api_impl *a)
{
        int64_t now = clock_mono_us();

        pthread_mutex_lock(&a->lock);
        if (a->pinging || now - a->last_ping_mono_us < PING_INTERVAL_US) {
                pthread_mutex_unlock(&a->lock);
                return;
        }
        a->pinging = true;
        pthread_mutex_unlock(&a->lock);

        int r = pgstore_ping(a->deps.store);
        char why[API_TEXT_MAX] = "";
        if (r < 0)
                snprintf(why, sizeof(why), "PostgreSQL: %s", pgstore_errstr());

        pthread_mutex_lock(&a->lock);
        a->pinging = false;
        a->last_ping_mono_us = clock_mono_us();
        a->postgres_ok = r == 0;
        copy_str(a->postgres_error, why);
        pthread_mutex_unlock(&a->lock);
}

static void op_probe(void *ud, struct api_probe *out)
{
        struct api_impl *a = ud;
        struct elector_status st;
        int64_t now = clock_mono_us();

        elector_get_status(a->deps.elector, &st);
        bool wedged = elector_is_wedged(a->deps.elector, now);
        out->believes_leader = wedged || st.leading;
        out->since_renew_us = st.last_renew_mono_us ? now - st.last_renew_mono_us : 0;
        out->lease_duration_us = (int64_t)a->deps.lease_duration_s * USEC_PER_SEC;
        out->config_loaded = true;
        refresh_postgres(a);
        pthread_mutex_lock(&a->lock);
        out->postgres_ok = a->postgres_ok;
        copy_str(out->postgres_error, a->postgres_error);
        pthread_mutex_unlock(&a->lock);
}

static void op_leader(void *ud, struct api_leader *out)
{
        struct api_impl *a = ud;
        struct elector_status st;

        elector_get_status(a->deps.elector, &st);
        out->is_leader = elector_is_leader(a->deps.elector);
        copy_str(out->leader, out->is_leader ? st.identity : st.holder);
        out->retry_after_s = 0;
}

/* ---- the nightly pass ---------------------------------------------------------------------- */

static const char *nightly_api_state(enum nightly_state s)
{
        switch (s) {
        case NIGHTLY_IDLE:
                return "idle";
        case NIGHTLY_STARTING:
        case NIGHTLY_RUNNING:
        case NIGHTLY_FINISHING:
                return "running";
        case NIGHTLY_PAUSED:
        case NIGHTLY_WAITING_PROGRESS:
                return "paused";
        case NIGHTLY_DONE:
                return "finished";
        }
        return "idle";
}

static int nightly_to_api(const struct nightly_status *ns, struct api_nightly *out)
{
        size_t n = 0;

        memset(out, 0, sizeof(*out));
        copy_str(out->state, nightly_api_state(ns->state));
        copy_str(out->date, ns->date);
        out->pass_id = ns->pass_id;
        out->total = ns->totals.total;
        out->done = ns->totals.done;
        out->failed = ns->totals.failed;
        out->pending = ns->pending;
        out->started_us = ns->started_us;
        out->finished_us = ns->finished_us;
        out->eta_us = ns->eta_us;
        out->overrun = ns->overrun;
        for (size_t i = 0; i < ns->n_pools; i++)
                n += (size_t)MAX(ns->pools[i].n_current, 0);
        if (n == 0)
                return 0;
        out->current = calloc(n, sizeof(*out->current));
        if (!out->current)
                return -ENOMEM;
        for (size_t i = 0; i < ns->n_pools; i++)
                for (int j = 0; j < ns->pools[i].n_current; j++) {
                        struct api_nightly_current *c = &out->current[out->n_current++];
                        copy_str(c->pool, ns->pools[i].name);
                        copy_str(c->instance_id, ns->pools[i].current[j]);
                }
        return 0;
}

static int op_nightly_status(void *ud, struct api_nightly *out, struct api_error *err)
{
        struct api_impl *a = ud;
        _cleanup_(nightly_status_freep) struct nightly_status *ns = NULL;
        int r = fleet_nightly_status(a->deps.fleet, &ns);

        if (r < 0) {
                set_err(err, "", "reading the nightly pass failed");
                return r;
        }
        return nightly_to_api(ns, out);
}

static int op_nightly_control(void *ud, enum api_nightly_action action, struct api_nightly *out,
                              struct api_error *err)
{
        struct api_impl *a = ud;
        int r;

        switch (action) {
        case API_NIGHTLY_START:
                r = fleet_nightly_start(a->deps.fleet);
                break;
        case API_NIGHTLY_PAUSE:
                r = fleet_nightly_pause(a->deps.fleet);
                break;
        case API_NIGHTLY_RESUME:
                r = fleet_nightly_resume(a->deps.fleet);
                break;
        default:
                r = -EINVAL;
        }
        if (r < 0) {
                if (r == -EBUSY || r == -EALREADY) {
                        set_err(err, "", "the nightly pass cannot do that in its current state");
                        return -EBUSY;
                }
                set_err(err, "", "the nightly pass refused: %s", strerror(-r));
                return r;
        }
        return op_nightly_status(ud, out, err);
}

/* ---- status -------------------------------------------------------------------------------- */

static int op_status(void *ud, struct api_status *out, struct api_error *err)
{
        struct api_impl *a = ud;
        struct elector_status es;
        struct fleet_status fs = {0};
        int r;

        elector_get_status(a->deps.elector, &es);
        copy_str(out->identity, es.identity);
        out->is_leader = elector_is_leader(a->deps.elector);
        copy_str(out->leader, out->is_leader ? es.identity : es.holder);
        copy_str(out->lease.holder, es.holder);
        out->lease.duration_s = a->deps.lease_duration_s;
        out->lease.transitions = es.lease_transitions;
        struct election_record rec;
        if (a->deps.lease && lease_k8s_latest(a->deps.lease, &rec)) {
                copy_str(out->lease.holder, rec.holder);
                out->lease.duration_s = rec.lease_duration_s;
                out->lease.acquire_us = rec.acquire_time_us;
                out->lease.renew_us = rec.renew_time_us;
                out->lease.transitions = rec.lease_transitions;
        }

        r = fleet_status(a->deps.fleet, &fs);
        if (r < 0) {
                set_err(err, "", "reading the fleet's status failed");
                return r;
        }
        out->epoch = fs.epoch;
        /* fs.hours holds 2, out->loaded_hours_us 4. */
        for (size_t i = 0; i < ELEMENTSOF(fs.hours); i++)
                if (i < fs.n_hours)
                        out->loaded_hours_us[out->n_loaded_hours++] = fs.hours[i].hour_us;
        if (fs.n_pools) {
                out->pools = calloc(fs.n_pools, sizeof(*out->pools));
                if (!out->pools) {
                        free(fs.pools);
                        return -ENOMEM;
                }
                for (size_t i = 0; i < fs.n_pools; i++) {
                        copy_str(out->pools[i].name, fs.pools[i].name);
                        out->pools[i].limit = fs.pools[i].limit;
                        out->pools[i].running = fs.pools[i].running;
                        out->pools[i].queued = fs.pools[i].queued;
                }
                out->n_pools = fs.n_pools;
        }
        free(fs.pools);
        return op_nightly_status(ud, &out->pass, err);
}

/* ---- tasks --------------------------------------------------------------------------------- */

/* A task id from the API: a positive decimal bigint. */
static int parse_task_id(const char *s, int64_t *ret)
{
        int64_t v;

        if (parse_int64(s, &v) < 0 || v <= 0)
                return -EINVAL;
        *ret = v;
        return 0;
}

static void task_to_api(const struct pgstore_task *t, struct api_task *out)
{
        memset(out, 0, sizeof(*out));
        snprintf(out->id, sizeof(out->id), "%" PRId64, t->id);
        copy_str(out->instance_id, t->instance_id);
        copy_str(out->action, pgstore_action_to_string(t->action));
        copy_str(out->schedule, t->schedule);
        out->enabled = t->enabled;
        copy_str(out->misfire, pgstore_misfire_to_string(t->misfire));
        out->starting_deadline_s = t->starting_deadline_s;
        copy_str(out->description, t->description);
        out->created_us = t->created_at;
        out->updated_us = t->updated_at;
}

static int not_found(struct api_error *err, const char *id)
{
        set_err(err, "", "task \"%s\" not found", id);
        return -ENOENT;
}

struct task_page {
        int64_t after_id;
        int enabled;
        int limit;
        struct api_task *tasks;
        size_t n;
        bool more;
};

static int collect_task(const struct pgstore_task *t, void *userdata)
{
        struct task_page *p = userdata;

        if (t->id <= p->after_id || (p->enabled >= 0 && t->enabled != (p->enabled == 1)))
                return 0;
        if (p->n == (size_t)p->limit) {
                p->more = true;
                return 1;
        }
        task_to_api(t, &p->tasks[p->n++]);
        return 0;
}

static int op_task_list(void *ud, const struct api_task_filter *filter, struct api_task **ret,
                        size_t *ret_n, char next_cursor[API_CURSOR_MAX], struct api_error *err)
{
        struct api_impl *a = ud;
        struct task_page p = {.enabled = filter->enabled, .limit = filter->limit};
        const struct pgstore_task_filter tf = {
            .instance_id = filter->instance_id[0] ? filter->instance_id : NULL,
        };
        int r;

        if (filter->cursor[0] && parse_task_id(filter->cursor, &p.after_id) < 0) {
                set_err(err, "cursor", "not a cursor this server returned");
                return -EINVAL;
        }
        p.tasks = calloc((size_t)MAX(p.limit, 1), sizeof(*p.tasks));
        if (!p.tasks)
                return -ENOMEM;
        r = pgstore_tasks_foreach(a->deps.store, &tf, collect_task, &p);
        if (r < 0 && !p.more) {
                free(p.tasks);
                return store_err(err, r, "listing tasks");
        }
        next_cursor[0] = '\0';
        if (p.more && p.n > 0)
                snprintf(next_cursor, API_CURSOR_MAX, "%s", p.tasks[p.n - 1].id);
        *ret = p.tasks;
        *ret_n = p.n;
        return 0;
}

static int op_task_get(void *ud, const char *id, struct api_task *out, struct api_error *err)
{
        struct api_impl *a = ud;
        struct pgstore_task t;
        int64_t tid;
        int r;

        if (parse_task_id(id, &tid) < 0)
                return not_found(err, id);
        r = pgstore_task_get(a->deps.store, tid, &t);
        if (r == -ENOENT)
                return not_found(err, id);
        if (r < 0)
                return store_err(err, r, "reading the task");
        task_to_api(&t, out);
        return 0;
}

/* Check what the store cannot: the cron expression and that the instance exists. */
static int task_validate(struct api_impl *a, const struct pgstore_task *t, struct api_error *err)
{
        struct cron_expr expr;
        struct cron_error cerr = {0};
        struct pgstore_instance inst;
        int r;

        if (cron_parse(t->schedule, &expr, &cerr) < 0) {
                set_err(err, "schedule", "%s", cerr.message);
                return -EINVAL;
        }
        r = pgstore_instance_get(a->deps.store, t->instance_id, &inst);
        if (r == -ENOENT) {
                set_err(err, "instance_id", "no such instance \"%s\"", t->instance_id);
                return -EINVAL;
        }
        if (r < 0)
                return store_err(err, r, "reading the instance");
        return 0;
}

static int task_from_api(const struct api_task *in, unsigned mask, struct pgstore_task *t,
                         struct api_error *err)
{
        if (mask & API_TASK_INSTANCE)
                copy_str(t->instance_id, in->instance_id);
        if ((mask & API_TASK_ACTION) && pgstore_action_from_string(in->action, &t->action) < 0) {
                set_err(err, "action", "must be bgsave or bgrewriteaof");
                return -EINVAL;
        }
        if (mask & API_TASK_SCHEDULE)
                copy_str(t->schedule, in->schedule);
        if (mask & API_TASK_ENABLED)
                t->enabled = in->enabled;
        if ((mask & API_TASK_MISFIRE) &&
            pgstore_misfire_from_string(in->misfire, &t->misfire) < 0) {
                set_err(err, "misfire", "must be run_once or skip");
                return -EINVAL;
        }
        if (mask & API_TASK_DEADLINE)
                t->starting_deadline_s = in->starting_deadline_s;
        if (mask & API_TASK_DESCRIPTION)
                copy_str(t->description, in->description);
        return 0;
}

/* Hand a task change to the fleet now; the listener would bring it within seconds anyway. */
static void task_changed(struct api_impl *a, const char *op, int64_t id)
{
        char s[24];

        snprintf(s, sizeof(s), "%" PRId64, id);
        int r = fleet_on_change(a->deps.fleet, "tasks", op, s);
        if (r < 0)
                log_debug("Applying the change of task %s at once failed (%s); the listener "
                          "brings it",
                          s, strerror(-r));
}

static int op_task_create(void *ud, const struct api_task *in, struct api_task *out,
                          struct api_error *err)
{
        struct api_impl *a = ud;
        struct pgstore_task t = {0};
        int64_t id;
        int r;

        if (in->id[0] && parse_task_id(in->id, &t.id) < 0) {
                set_err(err, "id", "task ids are positive integers");
                return -EINVAL;
        }
        r = task_from_api(in, API_TASK_ALL, &t, err);
        if (r < 0)
                return r;
        r = task_validate(a, &t, err);
        if (r < 0)
                return r;
        r = pgstore_task_create(a->deps.store, &t, &id);
        if (r == -EEXIST) {
                set_err(err, "id", "task \"%s\" exists already", in->id);
                return r;
        }
        if (r < 0)
                return store_err(err, r, "creating the task");
        task_changed(a, "INSERT", id);
        r = pgstore_task_get(a->deps.store, id, &t);
        if (r < 0)
                return store_err(err, r, "reading the new task");
        task_to_api(&t, out);
        return 0;
}

static int op_task_update(void *ud, const char *id, const struct api_task *in, unsigned mask,
                          struct api_task *out, struct api_error *err)
{
        struct api_impl *a = ud;
        struct pgstore_task t;
        int64_t tid;
        int r;

        if (parse_task_id(id, &tid) < 0)
                return not_found(err, id);
        r = pgstore_task_get(a->deps.store, tid, &t);
        if (r == -ENOENT)
                return not_found(err, id);
        if (r < 0)
                return store_err(err, r, "reading the task");
        r = task_from_api(in, mask, &t, err);
        if (r < 0)
                return r;
        r = task_validate(a, &t, err);
        if (r < 0)
                return r;
        r = pgstore_task_update(a->deps.store, &t);
        if (r == -ENOENT)
                return not_found(err, id);
        if (r < 0)
                return store_err(err, r, "updating the task");
        task_changed(a, "UPDATE", tid);
        r = pgstore_task_get(a->deps.store, tid, &t);
        if (r < 0)
                return store_err(err, r, "reading the task");
        task_to_api(&t, out);
        return 0;
}

static int op_task_delete(void *ud, const char *id, struct api_error *err)
{
        struct api_impl *a = ud;
        int64_t tid;
        int r;

        if (parse_task_id(id, &tid) < 0)
                return not_found(err, id);
        r = pgstore_task_delete(a->deps.store, tid);
        if (r == -ENOENT)
                return not_found(err, id);
        if (r < 0)
                return store_err(err, r, "deleting the task");
        task_changed(a, "DELETE", tid);
        return 0;
}

/* ---- runs ---------------------------------------------------------------------------------- */

static void run_to_api(const struct pgstore_run *r, struct api_run *out)
{
        memset(out, 0, sizeof(*out));
        out->id = r->id;
        if (r->task_id)
                snprintf(out->task_id, sizeof(out->task_id), "%" PRId64, r->task_id);
        copy_str(out->instance_id, r->instance_id);
        copy_str(out->kind, pgstore_run_kind_to_string(r->kind));
        copy_str(out->state, pgstore_run_state_to_string(r->state));
        out->scheduled_for_us = r->scheduled_for;
        out->planned_start_us = r->planned_start;
        out->started_us = r->started_at;
        out->finished_us = r->finished_at;
        out->epoch = r->epoch;
        copy_str(out->leader, r->leader_identity);
        out->used_memory = r->used_memory;
        out->estimated_us = r->estimated_duration_ms >= 0 ? r->estimated_duration_ms * 1000 : -1;
        out->actual_us = r->actual_duration_ms >= 0 ? r->actual_duration_ms * 1000 : -1;
        copy_str(out->error, r->error);
        copy_str(out->request_id, r->request_id);
}

static int op_task_run(void *ud, const char *id, struct api_run *out, struct api_error *err)
{
        struct api_impl *a = ud;
        struct pgstore_run run;
        char msg[API_TEXT_MAX] = "";
        int64_t tid;
        int r;

        if (parse_task_id(id, &tid) < 0)
                return not_found(err, id);
        r = fleet_task_run_now(a->deps.fleet, tid, &run, msg, sizeof(msg));
        if (r == -ENOENT)
                return not_found(err, id);
        if (r == -ESTALE)
                r = -EAGAIN; /* deposed: no longer the leader */
        if (r < 0) {
                set_err(err, "", "%s", msg[0] ? msg : "the run could not be queued");
                return r;
        }
        run_to_api(&run, out);
        return 0;
}

static int op_run_list(void *ud, const struct api_run_filter *filter, struct api_run **ret,
                       size_t *ret_n, char next_cursor[API_CURSOR_MAX], struct api_error *err)
{
        struct api_impl *a = ud;
        struct pgstore_run_filter f = {
            .instance_id = filter->instance_id[0] ? filter->instance_id : NULL,
            .kind = -1,
            .state = -1,
            .from = filter->since_us,
            .to = filter->until_us,
            .limit = (size_t)filter->limit,
        };
        struct pgstore_run *runs = NULL;
        size_t n = 0;
        int r;

        if (filter->task_id[0] && parse_task_id(filter->task_id, &f.task_id) < 0) {
                set_err(err, "task_id", "task ids are positive integers");
                return -EINVAL;
        }
        if (filter->kind[0]) {
                enum pgstore_run_kind k;
                if (pgstore_run_kind_from_string(filter->kind, &k) < 0) {
                        set_err(err, "kind", "unknown run kind \"%s\"", filter->kind);
                        return -EINVAL;
                }
                f.kind = (int)k;
        }
        if (filter->state[0]) {
                enum pgstore_run_state s;
                if (pgstore_run_state_from_string(filter->state, &s) < 0) {
                        set_err(err, "state", "unknown run state \"%s\"", filter->state);
                        return -EINVAL;
                }
                f.state = (int)s;
        }
        if (filter->cursor[0] && parse_task_id(filter->cursor, &f.before_id) < 0) {
                set_err(err, "cursor", "not a cursor this server returned");
                return -EINVAL;
        }
        r = pgstore_runs_query(a->deps.store, &f, &runs, &n);
        if (r < 0)
                return store_err(err, r, "listing runs");
        struct api_run *out = calloc(MAX(n, (size_t)1), sizeof(*out));
        if (!out) {
                free(runs);
                return -ENOMEM;
        }
        for (size_t i = 0; i < n; i++)
                run_to_api(&runs[i], &out[i]);
        next_cursor[0] = '\0';
        if (n > 0 && n == f.limit)
                snprintf(next_cursor, API_CURSOR_MAX, "%" PRId64, runs[n - 1].id);
        free(runs);
        *ret = out;
        *ret_n = n;
        return 0;
}

/* ---- instances ------------------------------------------------------------------------------ */

static void instance_to_api(const struct fleet_instance_info *i, struct api_instance *out)
{
        memset(out, 0, sizeof(*out));
        copy_str(out->id, i->id);
        copy_str(out->address, i->address);
        copy_str(out->pool, i->pool);
        out->enabled = i->enabled;
        out->last_run_id = i->last_run_id;
        copy_str(out->last_state, i->last_state);
        copy_str(out->last_error, i->last_error[0] ? i->last_error : i->invalid_reason);
        out->last_finished_us = i->last_finished_us;
        out->lastsave = i->lastsave;
        copy_str(out->redis_version, i->redis_version);
        out->can_bgsave = i->can_bgsave;
        out->can_bgrewriteaof = i->can_bgrewriteaof;
        out->can_config = i->can_config;
        out->save_config_ok = i->save_config_ok;
        out->used_memory = i->used_memory;
        out->write_rate_bytes_s = i->write_rate_bytes_s;
        out->fork_ms_per_gb = i->fork_ms_per_gb;
        out->estimate_us = i->estimate_us;
}

static int op_instance_list(void *ud, const struct api_instance_filter *filter,
                            struct api_instance **ret, size_t *ret_n,
                            char next_cursor[API_CURSOR_MAX], struct api_error *err)
{
        struct api_impl *a = ud;
        struct fleet_instance_info *all = NULL;
        size_t n_all = 0, n = 0, start = 0;
        int r;

        r = fleet_instances(a->deps.fleet, filter->pool, filter->enabled, &all, &n_all);
        if (r < 0) {
                set_err(err, "", "listing instances failed");
                return r;
        }
        /* In id order: the cursor is the last id of the previous page. */
        if (filter->cursor[0])
                while (start < n_all && strcmp(all[start].id, filter->cursor) <= 0)
                        start++;
        size_t limit = (size_t)MAX(filter->limit, 1);
        struct api_instance *out = calloc(MIN(limit, MAX(n_all - start, (size_t)1)), sizeof(*out));
        if (!out) {
                free(all);
                return -ENOMEM;
        }
        for (size_t i = start; i < n_all && n < limit; i++)
                instance_to_api(&all[i], &out[n++]);
        next_cursor[0] = '\0';
        if (start + n < n_all && n > 0)
                snprintf(next_cursor, API_CURSOR_MAX, "%s", out[n - 1].id);
        free(all);
        *ret = out;
        *ret_n = n;
        return 0;
}

static int op_instance_get(void *ud, const char *id, struct api_instance *out,
                           struct api_error *err)
{
        struct api_impl *a = ud;
        struct fleet_instance_info info;
        int r = fleet_instance_get(a->deps.fleet, id, &info);

        if (r == -ENOENT) {
                set_err(err, "", "instance \"%s\" not found", id);
                return r;
        }
        if (r < 0) {
                set_err(err, "", "reading the instance failed");
                return r;
        }
        instance_to_api(&info, out);
        return 0;
}

/* ---- the plan of an hour --------------------------------------------------------------------- */

static int op_plan(void *ud, int64_t at_us, struct api_plan *out, struct api_error *err)
{
        struct api_impl *a = ud;
        struct sched_planned *slots = NULL;
        struct fleet_status fs = {0};
        int64_t hour_us = 0;
        ssize_t n;

        n = fleet_plan_hour(a->deps.fleet, at_us, &hour_us, &slots);
        if (n < 0) {
                set_err(err, "", "planning the hour failed");
                return (int)n;
        }
        if (fleet_status(a->deps.fleet, &fs) < 0) {
                free(slots);
                return -ENOMEM;
        }
        memset(out, 0, sizeof(*out));
        out->hour_us = hour_us;
        for (size_t i = 0; i < fs.n_hours; i++)
                if (fs.hours[i].hour_us == hour_us)
                        out->loaded = true;
        out->slots = calloc(MAX((size_t)n, (size_t)1), sizeof(*out->slots));
        out->pools = calloc(MAX((size_t)n, (size_t)1), sizeof(*out->pools));
        if (!out->slots || !out->pools) {
                free(slots);
                free(fs.pools);
                api_plan_release(out);
                return -ENOMEM;
        }
        int64_t hour_end = hour_us + 3600 * USEC_PER_SEC;
        for (size_t i = 0; i < (size_t)n; i++) {
                struct api_plan_slot *s = &out->slots[i];
                snprintf(s->task_id, sizeof(s->task_id), "%" PRId64, slots[i].task_id);
                copy_str(s->instance_id, slots[i].instance_id);
                copy_str(s->pool, slots[i].pool);
                s->slot_us = slots[i].plan.slot_us;
                s->expected_start_us = slots[i].plan.start_us;
                s->expected_end_us = slots[i].plan.end_us;

                struct api_plan_pool *p = NULL;
                for (size_t j = 0; j < out->n_pools && !p; j++)
                        if (streq(out->pools[j].name, slots[i].pool))
                                p = &out->pools[j];
                if (!p) {
                        p = &out->pools[out->n_pools++];
                        copy_str(p->name, slots[i].pool);
                        p->limit = 1;
                        for (size_t j = 0; j < fs.n_pools; j++)
                                if (streq(fs.pools[j].name, slots[i].pool))
                                        p->limit = fs.pools[j].limit;
                }
                p->expected_end_us = MAX(p->expected_end_us, s->expected_end_us);
                p->overrun_us = MAX(p->expected_end_us - hour_end, 0);
        }
        out->n_slots = (size_t)n;
        free(slots);
        free(fs.pools);
        return 0;
}

/* ---- persist now ------------------------------------------------------------------------------
 */

static int op_persist_begin(void *ud, const struct api_persist_request *req, void **ret_handle,
                            size_t *ret_n, struct api_error *err)
{
        struct api_impl *a = ud;
        struct fleet_persist *p = NULL;
        char msg[API_TEXT_MAX] = "";
        const struct fleet_persist_request fr = {
            .instances = (const char *const *)req->instances,
            .n_instances = req->n_instances,
            .pool = req->pool,
            .all = req->all,
            .request_id = req->request_id,
        };
        int r = fleet_persist_begin(a->deps.fleet, &fr, &p, msg, sizeof(msg));

        if (r < 0) {
                set_err(err, r == -EINVAL ? "instances" : "", "%s",
                        msg[0] ? msg : "the saves could not be asked for");
                return r;
        }
        *ret_handle = p;
        *ret_n = fleet_persist_count(p);
        return 0;
}

static int op_persist_poll(void *ud, void *handle, int64_t timeout_us,
                           struct api_persist_result *results)
{
        struct fleet_persist *p = handle;
        size_t n = fleet_persist_count(p);
        int r;

        (void)ud;
        _cleanup_free_ struct fleet_persist_result *fr = calloc(MAX(n, (size_t)1), sizeof(*fr));
        if (!fr)
                return -ENOMEM;
        r = fleet_persist_wait(p, timeout_us, fr);
        for (size_t i = 0; i < n; i++) {
                struct api_persist_result *o = &results[i];
                memset(o, 0, sizeof(*o));
                copy_str(o->instance_id, fr[i].instance_id);
                o->done = fr[i].r.done;
                o->success = fr[i].r.ok;
                o->joined = fr[i].r.joined;
                copy_str(o->error, fr[i].r.error);
                o->requested_us = fr[i].r.requested_us;
                o->started_us = fr[i].r.started_us;
                o->finished_us = fr[i].r.finished_us;
                o->lastsave = fr[i].r.lastsave;
                o->run_id = fr[i].r.run_id;
        }
        return r;
}

static void op_persist_end(void *ud, void *handle)
{
        (void)ud;
        fleet_persist_unref(handle);
}

/* ---- the table ----------------------------------------------------------------------------------
 */

struct api_impl *api_impl_new(const struct api_deps *deps)
{
        struct api_impl *a = calloc(1, sizeof(*a));

        if (!a)
                return NULL;
        a->deps = *deps;
        pthread_mutex_init(&a->lock, NULL);
        return a;
}

void api_impl_free(struct api_impl *a)
{
        if (!a)
                return;
        pthread_mutex_destroy(&a->lock);
        free(a);
}

struct api_backend api_impl_backend(struct api_impl *a)
{
        return (struct api_backend){
            .userdata = a,
            .probe = op_probe,
            .leader = op_leader,
            .status = op_status,
            .task_list = op_task_list,
            .task_get = op_task_get,
            .task_create = op_task_create,
            .task_update = op_task_update,
            .task_delete = op_task_delete,
            .task_run = op_task_run,
            .instance_list = op_instance_list,
            .instance_get = op_instance_get,
            .run_list = op_run_list,
            .plan = op_plan,
            .nightly_status = op_nightly_status,
            .nightly_control = op_nightly_control,
            .persist_begin = op_persist_begin,
            .persist_poll = op_persist_poll,
            .persist_end = op_persist_end,
        };
}
