/* SPDX-License-Identifier: Apache-2.0 */
/*
 * The fleet (fleet.h): the instance and task registries loaded from the store, the executions
 * (scheduled slots, manual runs, persist-now, nightly saves, adoptions) with their run rows, and
 * the leadership sequence (epoch bump, reconciliation, scheduler and nightly start). docs/fleet.md
 * describes the run life and the threads.
 */
#include <errno.h>
#include <inttypes.h>
#include <math.h>
#include <pthread.h>
#include <stddef.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define LOG_MODULE "fleet"
#include "core/clock.h"
#include "core/log.h"
#include "core/macro.h"
#include "fleet/fleet.h"
#include "http/metrics.h"
#include "sched/cron.h"
#include "sched/tz.h"
#include "store/progress.h"

#define NIGHTLY_OWNER_KEY         UINT64_C(1) /* adoptions of the pass: 2 */
#define FLEET_OWNER_KEY           UINT64_C(16)
#define RETENTION_BATCH           500
#define RETENTION_MAX_ROUND       20
#define FLEET_PERSIST_TARGETS_MAX 10000

/* ---- the instance registry ---------------------------------------------------------------- */

struct finst {
        unsigned refs; /* the registry's reference plus one per user */
        bool removed;  /* no longer in the registry */
        struct pgstore_instance row;
        bool target_dirty; /* row changed since the driver handle was built */
        char target_error[FLEET_ERROR_MAX];

        struct driver_estimator *est;
        struct driver_instance *drv; /* only used by the holder of `busy` */
        int samples;

        bool busy;                    /* a save (or a check) holds the instance */
        struct driver_cancel *cancel; /* the holder's cancel token, NULL when none */

        /* Leadership-scoped management. */
        uint64_t managed_generation; /* save "" taken away under this generation */
        int64_t next_check_mono;
        bool save_config_ok, save_config_drifted;
        struct driver_caps caps;
        bool caps_known;

        /* Persist: the request id to record with the next persist run. */
        char pending_request_id[PGSTORE_ID_MAX];

        /* The last run seen by this process. */
        int64_t last_run_id;
        enum pgstore_run_state last_state;
        bool has_last;
        char last_error[FLEET_ERROR_MAX];
        int64_t last_finished_us;
        int64_t lastsave;
};

struct ftask {
        int64_t id;
        char instance_id[PGSTORE_ID_MAX];
        bool invalid;
};

struct fleet_persist {
        struct fleet *f;
        unsigned refs; /* guarded by f->lock */
        char request_id[PGSTORE_ID_MAX];
        int64_t created_mono;
        size_t n;
        char (*ids)[FLEET_ID_MAX];
        struct persist_ticket **tickets;
        struct fleet_persist *next; /* the request-id map */
};

struct fleet {
        struct fleet_options opts;
        char *identity, *timezone, *key_prefix;
        struct fleet_pool_limit *limits;
        size_t n_limits;

        struct pgstore *store;
        struct progress *progress;
        struct metrics *metrics;
        const struct driver_resolver *resolver;
        struct fleet_callbacks cb;
        struct tz_zone *zone;

        struct sched_pools *pools;
        struct persist_coalescer *coalescer;
        struct scheduler *sched;
        struct nightly *nightly;
        struct sched_ops sops;
        struct nightly_ops nops;

        pthread_mutex_t lock;
        pthread_cond_t cond;  /* busy flags, housekeeping wake-ups */
        struct finst **insts; /* sorted by id */
        size_t n_insts;
        struct ftask *tasks; /* sorted by id */
        size_t n_tasks;
        bool loaded, reload_wanted;

        /* Leadership. */
        uint64_t generation; /* 0 = not leading */
        bool acting;         /* epoch bumped for `generation` */
        int64_t epoch;
        bool deposed_reported;
        unsigned running_saves;

        struct fleet_persist *requests; /* request-id map, newest first */
        size_t n_requests;

        struct fleet_reconcile_stats rstats;

        bool started, stopping, stopped;
        pthread_t thread;
        bool thread_started;
};

/* ---- small helpers ------------------------------------------------------------------------ */

static void copy_str(char *dst, size_t size, const char *src)
{
        size_t n;

        if (size == 0)
                return;
        n = src ? strnlen(src, size - 1) : 0;
        if (n > 0)
                memcpy(dst, src, n);
        dst[n] = '\0';
}

static void event(struct fleet *f, enum fleet_event_type type, const char *reason, const char *fmt,
                  ...) _printf_(4, 5);
static void event(struct fleet *f, enum fleet_event_type type, const char *reason, const char *fmt,
                  ...)
{
        char msg[768];
        va_list ap;

        if (!f->cb.event)
                return;
        va_start(ap, fmt);
        vsnprintf(msg, sizeof(msg), fmt, ap);
        va_end(ap);
        f->cb.event(type, reason, msg, f->cb.userdata);
}

static int pool_limit(const char *pool, void *userdata)
{
        struct fleet *f = userdata;

        for (size_t i = 0; i < f->n_limits; i++)
                if (streq(f->limits[i].name, pool))
                        return f->limits[i].limit;
        return f->opts.default_pool_limit;
}

static int finst_cmp_key(const void *key, const void *elem)
{
        const struct finst *const *b = elem;
        return strcmp(key, (*b)->row.id);
}

/* Under the lock. */
static struct finst *finst_find_locked(struct fleet *f, const char *id)
{
        struct finst **p;

        if (!id || f->n_insts == 0)
                return NULL;
        p = bsearch(id, f->insts, f->n_insts, sizeof(struct finst *), finst_cmp_key);
        return p ? *p : NULL;
}

static void finst_free(struct finst *in)
{
        if (!in)
                return;
        driver_instance_free(in->drv);
        driver_estimator_free(in->est);
        explicit_bzero(in->row.password, sizeof(in->row.password));
        free(in);
}

/* Under the lock. */
static void finst_unref_locked(struct finst *in)
{
        if (in && --in->refs == 0)
                finst_free(in);
}

static struct finst *finst_get(struct fleet *f, const char *id)
{
        struct finst *in;

        pthread_mutex_lock(&f->lock);
        in = finst_find_locked(f, id);
        if (in)
                in->refs++;
        pthread_mutex_unlock(&f->lock);
        return in;
}

static void finst_unref(struct fleet *f, struct finst *in)
{
        if (!in)
                return;
        pthread_mutex_lock(&f->lock);
        finst_unref_locked(in);
        pthread_mutex_unlock(&f->lock);
}

static void metric_counter(struct fleet *f, int id, const char *a, const char *b, double v)
{
        const char *vals[2] = {a, b};
        if (f->metrics)
                (void)metrics_counter_add(f->metrics, id, vals, v);
}

static void metric_observe(struct fleet *f, int id, const char *pool, double v)
{
        const char *vals[1] = {pool};
        if (f->metrics)
                (void)metrics_histogram_observe(f->metrics, id, vals, v);
}

/* ---- leadership state -------------------------------------------------------------------- */

/* True when `generation` is the acting leadership; *ret_epoch its epoch. */
static bool acting_as(struct fleet *f, uint64_t generation, int64_t *ret_epoch)
{
        bool ok;

        pthread_mutex_lock(&f->lock);
        ok = generation != 0 && f->generation == generation && f->acting && !f->stopping;
        if (ok && ret_epoch)
                *ret_epoch = f->epoch;
        pthread_mutex_unlock(&f->lock);
        return ok;
}

static void stop_leading_internal(struct fleet *f, bool deposed);

static void deposed(struct fleet *f, uint64_t generation)
{
        bool report = false;

        pthread_mutex_lock(&f->lock);
        if (f->generation != 0 && (generation == 0 || f->generation == generation) &&
            !f->deposed_reported) {
                f->deposed_reported = true;
                report = true;
        }
        pthread_mutex_unlock(&f->lock);
        if (!report)
                return;
        log_error("deposed: the store's epoch is no longer %" PRId64 "; stopping at once",
                  fleet_epoch(f));
        stop_leading_internal(f, true);
        if (f->cb.deposed)
                f->cb.deposed(f->cb.userdata);
}

/* ---- the instance's driver handle --------------------------------------------------------- */

static void row_target(const struct pgstore_instance *row, struct driver_target *t)
{
        *t = (struct driver_target){
            .id = row->id,
            .host = row->host[0] ? row->host : NULL,
            .port = (uint16_t)row->port,
            .pod_namespace = row->pod_namespace[0] ? row->pod_namespace : NULL,
            .pod_name = row->pod_name[0] ? row->pod_name : NULL,
            .username = row->username[0] ? row->username : NULL,
            .password = row->password[0] ? row->password : NULL,
            .secret_namespace = row->secret_namespace[0] ? row->secret_namespace : NULL,
            .secret_name = row->secret_name[0] ? row->secret_name : NULL,
            .secret_key = row->secret_key[0] ? row->secret_key : NULL,
        };
}

/* Check a row's target without keeping a handle: "" when usable, else the reason. */
static void check_target(struct fleet *f, const struct pgstore_instance *row, char *reason,
                         size_t size)
{
        struct driver_target t;
        struct driver_instance *d = NULL;
        _cleanup_free_ char *e = NULL;
        int r;

        row_target(row, &t);
        r = driver_instance_new(&t, &f->opts.driver, f->resolver, NULL, &d, &e);
        driver_instance_free(d);
        if (r == -EINVAL)
                copy_str(reason, size, e ? e : "the address is incomplete");
        else
                reason[0] = '\0';
}

/* The holder of in->busy: (re)build the driver handle if needed. */
static int ensure_driver(struct fleet *f, struct finst *in, char *err, size_t err_size)
{
        struct pgstore_instance row;
        struct driver_target t;
        struct driver_instance *d = NULL;
        _cleanup_free_ char *e = NULL;
        bool dirty;
        int r;

        pthread_mutex_lock(&f->lock);
        dirty = in->target_dirty || !in->drv;
        row = in->row;
        in->target_dirty = false;
        pthread_mutex_unlock(&f->lock);
        if (!dirty) {
                explicit_bzero(row.password, sizeof(row.password));
                return 0;
        }
        row_target(&row, &t);
        r = driver_instance_new(&t, &f->opts.driver, f->resolver, in->est, &d, &e);
        explicit_bzero(row.password, sizeof(row.password));
        if (r < 0) {
                copy_str(err, err_size, e ? e : strerror(-r));
                pthread_mutex_lock(&f->lock);
                in->target_dirty = true;
                pthread_mutex_unlock(&f->lock);
                return r;
        }
        driver_instance_free(in->drv);
        in->drv = d;
        return 0;
}

/*
 * Take the instance for a save (or a check): wait while another holder has it. Gives up with
 * -ECANCELED when `generation` (non-zero) stops being the acting one. Creates the cancel token.
 */
static int finst_acquire(struct fleet *f, struct finst *in, uint64_t generation)
{
        struct driver_cancel *c = driver_cancel_new();

        if (!c)
                return -ENOMEM;
        pthread_mutex_lock(&f->lock);
        for (;;) {
                if (generation != 0 && (f->generation != generation || !f->acting || f->stopping)) {
                        pthread_mutex_unlock(&f->lock);
                        driver_cancel_free(c);
                        return -ECANCELED;
                }
                if (!in->busy)
                        break;
                (void)clock_cond_wait_us(&f->cond, &f->lock, 200 * USEC_PER_MSEC);
        }
        in->busy = true;
        in->cancel = c;
        f->running_saves++;
        pthread_mutex_unlock(&f->lock);
        return 0;
}

static void finst_release(struct fleet *f, struct finst *in)
{
        struct driver_cancel *c;

        pthread_mutex_lock(&f->lock);
        c = in->cancel;
        in->cancel = NULL;
        in->busy = false;
        f->running_saves--;
        pthread_cond_broadcast(&f->cond);
        pthread_mutex_unlock(&f->lock);
        driver_cancel_free(c);
}

static void set_instance_invalid(struct fleet *f, struct finst *in, const char *reason)
{
        bool changed;

        pthread_mutex_lock(&f->lock);
        changed = !streq(in->row.invalid_reason, reason ? reason : "");
        copy_str(in->row.invalid_reason, sizeof(in->row.invalid_reason), reason);
        pthread_mutex_unlock(&f->lock);
        if (!changed)
                return;
        (void)pgstore_instance_set_invalid(f->store, in->row.id, reason);
        if (reason) {
                log_warn("instance \"%s\" cannot be used: %s", in->row.id, reason);
                event(f, FLEET_EVENT_WARNING, "InvalidInstance", "instance %s cannot be used: %s",
                      in->row.id, reason);
        } else
                log_info("instance \"%s\" is usable again", in->row.id);
}

/*
 * The holder of in->busy, leading under `generation`: first management (capabilities,
 * `save ""`) and the periodic re-check. Failures are logged; they do not prevent a save.
 */
static void manage_instance(struct fleet *f, struct finst *in, uint64_t generation, bool force)
{
        struct driver_caps caps;
        struct driver_save_config_result sc = {0};
        bool first;
        int r;

        pthread_mutex_lock(&f->lock);
        first = in->managed_generation != generation;
        if (!first && !force &&
            (f->opts.save_check_interval_s <= 0 || clock_mono_us() < in->next_check_mono)) {
                pthread_mutex_unlock(&f->lock);
                return;
        }
        pthread_mutex_unlock(&f->lock);

        if (first) {
                r = driver_instance_detect(in->drv, &caps);
                if (r < 0) {
                        log_debug("instance \"%s\": detecting capabilities: %s", in->row.id,
                                  driver_instance_errstr(in->drv));
                        pthread_mutex_lock(&f->lock);
                        in->next_check_mono = clock_mono_us() + 10 * USEC_PER_SEC;
                        pthread_mutex_unlock(&f->lock);
                        return;
                }
        }
        if (f->opts.manage_save_config) {
                r = driver_instance_disable_save(in->drv, f->opts.config_rewrite, first, &sc);
                if (r < 0 && r != -EPROTO)
                        log_warn("instance \"%s\": cannot take `save` away: %s", in->row.id,
                                 driver_instance_errstr(in->drv));
                if (sc.drifted && !first) {
                        log_warn("instance \"%s\": `save` was \"%s\", set back to \"\"", in->row.id,
                                 sc.seen);
                        event(f, FLEET_EVENT_WARNING, "SaveConfigDrift",
                              "instance %s had save \"%s\"; set back to \"\"%s", in->row.id,
                              sc.seen, sc.fixed ? "" : " (failed)");
                }
                pthread_mutex_lock(&f->lock);
                in->save_config_ok = r == 0 || r == -EPROTO;
                in->save_config_drifted = r < 0 && r != -EPROTO;
                pthread_mutex_unlock(&f->lock);
        }
        driver_instance_caps(in->drv, &caps);
        pthread_mutex_lock(&f->lock);
        in->caps = caps;
        in->caps_known = true;
        in->managed_generation = generation;
        in->next_check_mono =
            clock_mono_us() + (int64_t)MAX(f->opts.save_check_interval_s, 1) * USEC_PER_SEC;
        pthread_mutex_unlock(&f->lock);
        if (first) {
                struct pgstore_capabilities pc = {
                    .redis_version = caps.version[0] ? caps.version : NULL,
                    .can_bgsave = caps.bgsave != DRIVER_CAP_NO,
                    .can_bgrewriteaof = caps.bgrewriteaof != DRIVER_CAP_NO,
                    .can_config = caps.config == DRIVER_CAP_YES,
                    .save_disabled = in->save_config_ok,
                    .detected_at = clock_wall_us(),
                };
                r = pgstore_instance_set_capabilities(f->store, in->row.id, &pc);
                if (r < 0 && r != -ENOENT)
                        log_debug("instance \"%s\": storing capabilities: %s", in->row.id,
                                  pgstore_errstr());
        }
}

/* ---- one save with its run row ------------------------------------------------------------ */

struct exec {
        /* In. */
        uint64_t generation;
        int64_t epoch;
        int64_t run_id;
        enum pgstore_run_kind kind;
        enum pgstore_action action;
        enum driver_mode mode;
        bool need_start; /* the run is `claimed`: record the start in before_send */
        bool before_has_counter;
        int64_t before_counter, before_lastsave;
        int64_t planned_start;
        int64_t adopted_started_us; /* ADOPT: when the earlier leader started the save; 0 */
        /* Out. */
        bool started;
        bool refused_stale;
        enum pgstore_run_state state;
        bool recorded; /* the run has its final state */
        char error[FLEET_ERROR_MAX];
        struct driver_save_result res;
        struct fleet *f;
};

static int exec_before_send(void *userdata, const struct driver_save_result *p)
{
        struct exec *x = userdata;
        struct fleet *f = x->f;
        int64_t epoch;
        int r;

        if (!acting_as(f, x->generation, &epoch) || epoch != x->epoch)
                return -ECANCELED;
        if (!x->need_start) {
                x->started = true;
                return 0;
        }
        struct pgstore_run_start st = {
            .started_at = clock_wall_us(),
            .planned_start = x->planned_start,
            .rdb_saves_before = p->has_counter ? p->counter_before : -1,
            .lastsave_before = p->lastsave_before,
            .used_memory = p->used_memory,
            .estimated_duration_ms = p->estimate_us >= 0 ? p->estimate_us / 1000 : -1,
        };
        r = pgstore_run_start(f->store, x->epoch, x->run_id, &st);
        if (r == -ESTALE) {
                x->refused_stale = true;
                return r;
        }
        if (r < 0) {
                log_warn("run %" PRId64 ": recording its start: %s", x->run_id, pgstore_errstr());
                return r;
        }
        x->started = true;
        return 0;
}

static void note_last(struct fleet *f, struct finst *in, const struct exec *x)
{
        pthread_mutex_lock(&f->lock);
        in->has_last = true;
        in->last_run_id = x->run_id;
        in->last_state = x->state;
        copy_str(in->last_error, sizeof(in->last_error), x->error);
        in->last_finished_us = clock_wall_us();
        if (x->res.lastsave_after > 0)
                in->lastsave = x->res.lastsave_after;
        pthread_mutex_unlock(&f->lock);
}

/* Write the run's final state (fenced). */
static int exec_finish(struct fleet *f, struct finst *in, struct exec *x)
{
        struct pgstore_run_finish fin = {
            .state = x->state,
            .error = x->error[0] ? x->error : NULL,
            .finished_at = x->res.finished_wall_us > 0 ? x->res.finished_wall_us : clock_wall_us(),
            .rdb_saves_after = x->res.has_counter ? x->res.counter_after : -1,
            .lastsave_after = x->res.lastsave_after,
            .used_memory = x->res.used_memory > 0 ? x->res.used_memory : -1,
            .actual_duration_ms = x->res.duration_us > 0 ? x->res.duration_us / 1000 : -1,
        };
        /* An adopted save started under the earlier leader: its duration is from that start
         * (this call only waited for its end). */
        if (x->mode == DRIVER_MODE_ADOPT && x->adopted_started_us > 0 && x->res.joined_existing)
                fin.actual_duration_ms = MAX(fin.finished_at - x->adopted_started_us, 0) / 1000;
        int r = pgstore_run_finish(f->store, x->epoch, x->run_id, &fin);

        if (r == -ESTALE) {
                deposed(f, x->generation);
                return r;
        }
        if (r < 0) {
                log_warn("run %" PRId64 ": recording its end: %s", x->run_id, pgstore_errstr());
                return r;
        }
        x->recorded = true;
        metric_counter(f, M_RUNS, pgstore_run_kind_to_string(x->kind),
                       pgstore_run_state_to_string(x->state), 1);
        if (in)
                note_last(f, in, x);
        return 0;
}

/* After a save this process started and saw complete: learned estimates, metrics. */
static void learned(struct fleet *f, struct finst *in, const struct exec *x)
{
        double rate, fork;
        int samples;
        int r;
        char pool[PGSTORE_LABEL_MAX];

        pthread_mutex_lock(&f->lock);
        copy_str(pool, sizeof(pool), in->row.pool);
        pthread_mutex_unlock(&f->lock);
        if (x->res.duration_us > 0) {
                metric_observe(f, M_SAVE_DURATION, pool, (double)x->res.duration_us / 1e6);
                if (x->res.estimate_us > 0)
                        metric_observe(f, M_ESTIMATE_ERROR, pool,
                                       (double)x->res.duration_us / (double)x->res.estimate_us);
        }
        if (x->mode == DRIVER_MODE_ADOPT || !x->res.commands_sent)
                return;
        driver_estimator_get(in->est, &rate, &fork);
        pthread_mutex_lock(&f->lock);
        samples = ++in->samples;
        pthread_mutex_unlock(&f->lock);
        r = pgstore_instance_set_estimates(f->store, in->row.id, rate, fork, samples);
        if (r < 0 && r != -ENOENT)
                log_debug("instance \"%s\": storing estimates: %s", in->row.id, pgstore_errstr());
}

static enum pgstore_run_state outcome_state(enum driver_outcome o)
{
        switch (o) {
        case DRIVER_SUCCEEDED:
                return PGSTORE_RUN_SUCCEEDED;
        case DRIVER_TIMED_OUT:
                return PGSTORE_RUN_TIMED_OUT;
        default:
                return PGSTORE_RUN_FAILED;
        }
}

/*
 * The save of a run, the instance held: build the handle, manage it, save, record the end.
 * Returns 0 when the run got its final state (x->state); -ECANCELED when leadership ended
 * before or during the save (nothing more is recorded: the next leader reconciles the run);
 * -ESTALE deposed; -ENOENT (ADOPT) nothing happened since the before-values; another negative
 * errno when the end could not be recorded.
 */
static int exec_save(struct fleet *f, struct finst *in, struct exec *x)
{
        struct driver_save_request req = {
            .action = x->action == PGSTORE_ACTION_BGREWRITEAOF ? DRIVER_ACTION_BGREWRITEAOF
                                                               : DRIVER_ACTION_BGSAVE,
            .mode = x->mode,
            .before_has_counter = x->before_has_counter,
            .before_counter = x->before_counter,
            .before_lastsave = x->before_lastsave,
            .cancel = in->cancel,
            .before_send = exec_before_send,
            .userdata = x,
        };
        char reason[FLEET_ERROR_MAX];
        enum driver_outcome o;

        x->f = f;
        memset(&x->res, 0, sizeof(x->res));
        x->res.lastsave_after = -1;
        x->res.finished_wall_us = 0;

        pthread_mutex_lock(&f->lock);
        copy_str(reason, sizeof(reason), in->row.invalid_reason);
        pthread_mutex_unlock(&f->lock);
        if (!reason[0] && ensure_driver(f, in, reason, sizeof(reason)) < 0)
                set_instance_invalid(f, in, reason);
        if (reason[0]) {
                x->state = PGSTORE_RUN_FAILED;
                snprintf(x->error, sizeof(x->error), "instance cannot be used: %.400s", reason);
                return exec_finish(f, in, x);
        }
        if (!acting_as(f, x->generation, NULL))
                return -ECANCELED;
        manage_instance(f, in, x->generation, false);

        o = driver_instance_save(in->drv, &req, &x->res);
        if (x->refused_stale) {
                deposed(f, x->generation);
                return -ESTALE;
        }
        if (o == DRIVER_CANCELLED) {
                if (!acting_as(f, x->generation, NULL) || !x->started)
                        return -ECANCELED;
        }
        if (o == DRIVER_NOTHING)
                return -ENOENT;
        x->state = outcome_state(o);
        x->error[0] = '\0';
        if (o != DRIVER_SUCCEEDED)
                snprintf(x->error, sizeof(x->error), "%s%s%s", driver_outcome_to_string(o),
                         x->res.reason[0] ? ": " : "", x->res.reason);
        if (o == DRIVER_SUCCEEDED)
                learned(f, in, x);
        else {
                bool again;
                pthread_mutex_lock(&f->lock);
                again = in->has_last && in->last_state != PGSTORE_RUN_SUCCEEDED;
                pthread_mutex_unlock(&f->lock);
                log_warn("instance \"%s\": %s save failed: %s", in->row.id,
                         pgstore_run_kind_to_string(x->kind), x->error);
                /* One event when an instance starts failing, not one per failed slot. */
                if (!again)
                        event(f, FLEET_EVENT_WARNING, "SaveFailed", "%s save of %s failed: %s",
                              pgstore_run_kind_to_string(x->kind), in->row.id, x->error);
        }
        return exec_finish(f, in, x);
}

/* Finish a run without touching an instance (unknown instance, failed setup). */
static void finish_without_save(struct fleet *f, struct exec *x, enum pgstore_run_state state,
                                const char *error, int64_t finished_at)
{
        x->state = state;
        copy_str(x->error, sizeof(x->error), error);
        memset(&x->res, 0, sizeof(x->res));
        x->res.lastsave_after = -1;
        x->res.finished_wall_us = finished_at; /* 0: now */
        (void)exec_finish(f, NULL, x);
}

/*
 * Reconcile one stale run (already adopted under x->epoch) on its instance, held by the
 * caller: a `running` run is judged in ADOPT mode from its before-values; when nothing reached
 * the instance (or the run was only `claimed`) it is run now when `take_over`, else -ENOENT.
 */
static int reconcile_run(struct fleet *f, struct finst *in, const struct pgstore_run *run,
                         struct exec *x, bool take_over, bool *ret_adopted_save)
{
        int r;

        *ret_adopted_save = false;
        x->run_id = run->id;
        x->kind = run->kind;
        x->action = run->action;
        if (run->state == PGSTORE_RUN_RUNNING) {
                x->mode = DRIVER_MODE_ADOPT;
                x->need_start = false;
                x->before_has_counter = run->rdb_saves_before >= 0;
                x->before_counter = run->rdb_saves_before;
                x->before_lastsave = run->lastsave_before;
                x->adopted_started_us = run->started_at;
                r = exec_save(f, in, x);
                if (r != -ENOENT) {
                        *ret_adopted_save = true;
                        return r;
                }
                if (!take_over)
                        return -ENOENT;
                /* Nothing reached it: run it now under this epoch, recording its real start (the
                 * earlier leader's would make the row span the takeover). */
                x->mode = DRIVER_MODE_NORMAL;
                x->adopted_started_us = 0;
                x->need_start = true;
                return exec_save(f, in, x);
        }
        if (!take_over)
                return -ENOENT;
        x->mode = DRIVER_MODE_NORMAL;
        x->need_start = true;
        return exec_save(f, in, x);
}

/* ---- jobs of the fleet itself (adoptions, manual runs) ------------------------------------ */

struct fjob {
        struct sched_job job;
        struct fleet *f;
        bool reconcile; /* else a manual run */
        struct pgstore_run run;
        int64_t epoch;
        uint64_t generation;
};

static void fjob_cancel(struct sched_job *job, enum sched_cancel_reason reason)
{
        (void)reason;
        free(job->userdata);
}

static void fjob_run(struct sched_job *job)
{
        struct fjob *j = job->userdata;
        struct fleet *f = j->f;
        struct finst *in;
        struct exec x = {.generation = j->generation, .epoch = j->epoch};
        bool adopted_save = false;
        int r;

        x.run_id = j->run.id;
        x.kind = j->run.kind;
        x.action = j->run.action;
        in = finst_get(f, j->run.instance_id);
        if (!in) {
                if (acting_as(f, j->generation, NULL))
                        finish_without_save(f, &x, PGSTORE_RUN_FAILED, "no such instance", 0);
                free(j);
                return;
        }
        r = finst_acquire(f, in, j->generation);
        if (r < 0) {
                finst_unref(f, in);
                free(j);
                return;
        }
        if (j->reconcile) {
                r = reconcile_run(f, in, &j->run, &x, true, &adopted_save);
                pthread_mutex_lock(&f->lock);
                if (r == 0 && adopted_save && x.res.waited_existing)
                        f->rstats.adopted++;
                else if (r == 0 && adopted_save)
                        f->rstats.finished++;
                else if (r == 0)
                        f->rstats.taken_over++;
                else
                        f->rstats.failed++;
                pthread_mutex_unlock(&f->lock);
                if (r == 0)
                        log_info("run %" PRId64 " of %s (epoch %" PRId64 "): %s, %s", j->run.id,
                                 in->row.id, j->run.epoch,
                                 adopted_save ? (x.res.waited_existing ? "adopted" : "finished")
                                              : "taken over",
                                 pgstore_run_state_to_string(x.state));
        } else {
                x.mode = DRIVER_MODE_NORMAL;
                x.need_start = true;
                (void)exec_save(f, in, &x);
        }
        finst_release(f, in);
        finst_unref(f, in);
        free(j);
}

static int submit_fjob(struct fleet *f, const char *pool, enum sched_priority prio,
                       const struct pgstore_run *run, bool reconcile, uint64_t generation,
                       int64_t epoch, int64_t estimate_us)
{
        struct fjob *j = calloc(1, sizeof(*j));
        int r;

        if (!j)
                return -ENOMEM;
        j->f = f;
        j->reconcile = reconcile;
        j->run = *run;
        j->epoch = epoch;
        j->generation = generation;
        j->job = (struct sched_job){
            .priority = prio,
            .estimate_us = estimate_us,
            .owner_key = FLEET_OWNER_KEY,
            .run = fjob_run,
            .cancel = fjob_cancel,
            .userdata = j,
        };
        r = sched_pools_submit(f->pools, pool, &j->job);
        if (r < 0)
                free(j);
        return r;
}

static int64_t inst_estimate(struct fleet *f, const char *id)
{
        struct finst *in = finst_get(f, id);
        int64_t e = 0;

        if (in) {
                e = driver_estimator_current_us(in->est);
                finst_unref(f, in);
        }
        return e;
}

/* ---- the scheduler's ops ------------------------------------------------------------------ */

static void op_run_slot(const struct sched_slot_run *run, void *userdata)
{
        struct fleet *f = userdata;
        const struct sched_task *t = run->task;
        struct exec x = {.generation = run->generation, .kind = PGSTORE_RUN_SCHEDULED};
        enum pgstore_claim_result cr;
        struct finst *in;
        int64_t est;
        int r;

        if (!acting_as(f, run->generation, &x.epoch))
                return;
        est = inst_estimate(f, t->instance_id);
        r = pgstore_run_claim(f->store, x.epoch, f->identity, t->id, run->slot_us, run->started_us,
                              est > 0 ? est / 1000 : -1, &cr, &x.run_id);
        if (r == -ESTALE) {
                deposed(f, run->generation);
                return;
        }
        if (r < 0) {
                log_warn("task %" PRId64 " slot %" PRId64 ": cannot claim: %s", t->id, run->slot_us,
                         pgstore_errstr());
                return;
        }
        if (cr == PGSTORE_CLAIM_EXISTS)
                return; /* someone ran it */
        metric_observe(f, M_SCHEDULE_LATENESS, t->pool,
                       (double)MAX(run->started_us - run->slot_us, 0) / 1e6);
        x.action = t->action == SCHED_ACTION_BGREWRITEAOF ? PGSTORE_ACTION_BGREWRITEAOF
                                                          : PGSTORE_ACTION_BGSAVE;
        x.mode = DRIVER_MODE_NORMAL;
        x.need_start = true;
        x.planned_start = run->started_us;
        in = finst_get(f, t->instance_id);
        if (!in) {
                finish_without_save(f, &x, PGSTORE_RUN_FAILED, "no such instance", 0);
                return;
        }
        if (finst_acquire(f, in, run->generation) == 0) {
                (void)exec_save(f, in, &x);
                finst_release(f, in);
        }
        finst_unref(f, in);
}

static int op_recorded_slots(int64_t from_us, int64_t to_us, struct sched_slot_key **ret,
                             size_t *ret_n, void *userdata)
{
        struct fleet *f = userdata;
        struct pgstore_slot *slots = NULL;
        size_t n = 0;
        int r;

        r = pgstore_runs_slots(f->store, from_us, to_us, &slots, &n);
        if (r < 0)
                return r;
        *ret = NULL;
        *ret_n = 0;
        if (n > 0) {
                *ret = calloc(n, sizeof(**ret));
                if (!*ret) {
                        free(slots);
                        return -ENOMEM;
                }
                for (size_t i = 0; i < n; i++)
                        (*ret)[i] =
                            (struct sched_slot_key){slots[i].task_id, slots[i].scheduled_for};
                *ret_n = n;
        }
        free(slots);
        return 0;
}

static int op_record_missed(const struct sched_task *task, int64_t slot_us, const char *reason,
                            uint64_t generation, void *userdata)
{
        struct fleet *f = userdata;
        enum pgstore_claim_result cr;
        struct exec x = {.generation = generation, .kind = PGSTORE_RUN_SCHEDULED};
        int r;

        if (!acting_as(f, generation, &x.epoch))
                return -ESTALE;
        r = pgstore_run_claim(f->store, x.epoch, f->identity, task->id, slot_us, 0, -1, &cr,
                              &x.run_id);
        if (r == -ESTALE)
                deposed(f, generation);
        if (r < 0)
                return r == -ENOENT ? 0 : r;
        if (cr == PGSTORE_CLAIM_EXISTS)
                return 0;
        finish_without_save(f, &x, PGSTORE_RUN_MISSED, reason, 0);
        return x.recorded ? 0 : -EIO;
}

static int64_t op_estimate_us(const char *instance_id, void *userdata)
{
        return inst_estimate(userdata, instance_id);
}

static void op_plan_overrun(const char *pool, int64_t hour_us, int64_t overrun_us, void *userdata)
{
        struct fleet *f = userdata;
        char when[CLOCK_RFC3339_MAX];
        const char *vals[1] = {pool};

        if (f->metrics)
                (void)metrics_gauge_set(f->metrics, M_PLAN_OVERRUN, vals, (double)overrun_us / 1e6);
        clock_format_rfc3339(hour_us, 0, when);
        log_warn("pool \"%s\": the hour starting %s is overbooked by %.0f s", pool, when,
                 (double)overrun_us / 1e6);
        event(f, FLEET_EVENT_WARNING, "PlanOverrun",
              "pool %s: the saves of the hour starting %s end %.0f s after the hour", pool, when,
              (double)overrun_us / 1e6);
}

/* ---- the nightly pass's ops --------------------------------------------------------------- */

static int local_time(int64_t utc_us, struct nightly_local_time *ret, void *userdata)
{
        struct fleet *f = userdata;
        struct tz_local l;
        int r = tz_to_local(f->zone, utc_us, &l);

        if (r < 0)
                return r;
        snprintf(ret->date, sizeof(ret->date), "%04d-%02d-%02d", l.year, l.month, l.day);
        ret->second_of_day = l.hour * 3600 + l.minute * 60 + MIN(l.second, 59);
        return 0;
}

static int nop_list_instances(void *userdata, struct nightly_list *out)
{
        struct fleet *f = userdata;
        struct nightly_instance *v = NULL;
        char(*ids)[PGSTORE_ID_MAX] = NULL;
        char(*pools)[PGSTORE_LABEL_MAX] = NULL;
        size_t n = 0;
        int r = 0;

        pthread_mutex_lock(&f->lock);
        if (f->n_insts > 0) {
                v = calloc(f->n_insts, sizeof(*v));
                ids = calloc(f->n_insts, sizeof(*ids));
                pools = calloc(f->n_insts, sizeof(*pools));
        }
        if (f->n_insts > 0 && (!v || !ids || !pools))
                r = -ENOMEM;
        for (size_t i = 0; r == 0 && i < f->n_insts; i++) {
                struct finst *in = f->insts[i];
                if (!in->row.enabled || in->row.invalid_reason[0])
                        continue;
                copy_str(ids[n], sizeof(ids[n]), in->row.id);
                copy_str(pools[n], sizeof(pools[n]), in->row.pool);
                v[n] = (struct nightly_instance){.id = ids[n], .pool = pools[n]};
                n++;
        }
        pthread_mutex_unlock(&f->lock);
        for (size_t i = 0; r == 0 && i < n; i++) {
                struct pgstore_run last;
                v[i].estimate_us = inst_estimate(f, v[i].id);
                if (f->opts.nightly.skip_if_saved_within_us > 0) {
                        int q = pgstore_last_success(f->store, v[i].id, &last);
                        if (q == 0)
                                v[i].last_success_us = last.finished_at;
                        else if (q != -ENOENT)
                                r = q;
                }
                if (r == 0)
                        r = nightly_list_add(out, &v[i]);
        }
        free(v);
        free(ids);
        free(pools);
        return r;
}

static int64_t nop_estimate(void *userdata, const struct nightly_instance *inst)
{
        return inst_estimate(userdata, inst->id);
}

static int stale_check(struct fleet *f, int r)
{
        if (r == -ESTALE)
                deposed(f, 0);
        return r;
}

static int nop_pass_create(void *userdata, const char *date, int64_t started_us,
                           const struct nightly_totals *t, int64_t *ret_id)
{
        struct fleet *f = userdata;
        int64_t epoch = fleet_epoch(f);
        int r;

        if (epoch == 0)
                return -ESTALE;
        r = pgstore_pass_create(f->store, epoch, f->identity, date, t->total, started_us, ret_id);
        if (r == 0 && (t->done || t->failed || t->skipped))
                r = pgstore_pass_update(f->store, epoch, f->identity, *ret_id, PGSTORE_PASS_RUNNING,
                                        t->total, t->done, t->failed, t->skipped, 0, started_us);
        return stale_check(f, r);
}

static int nop_pass_lookup(void *userdata, const char *date, struct nightly_pass_record *ret)
{
        struct fleet *f = userdata;
        struct pgstore_pass p;
        int r = pgstore_pass_by_date(f->store, date, &p);

        if (r < 0)
                return r;
        *ret = (struct nightly_pass_record){
            .id = p.id,
            .started_us = p.started_at,
            .finished = p.state == PGSTORE_PASS_FINISHED || p.state == PGSTORE_PASS_ABORTED,
            .paused = p.state == PGSTORE_PASS_PAUSED,
            .totals = {p.total, p.done, p.failed, p.skipped},
        };
        return 0;
}

static int64_t nightly_eta(struct fleet *f)
{
        _cleanup_(nightly_status_freep) struct nightly_status *s = NULL;

        if (nightly_status(f->nightly, &s) < 0 || !s)
                return 0;
        return s->eta_us;
}

static int nop_pass_update(void *userdata, int64_t pass_id, bool paused,
                           const struct nightly_totals *t)
{
        struct fleet *f = userdata;
        int64_t epoch = fleet_epoch(f);

        if (epoch == 0)
                return -ESTALE;
        return stale_check(f, pgstore_pass_update(
                                  f->store, epoch, f->identity, pass_id,
                                  paused ? PGSTORE_PASS_PAUSED : PGSTORE_PASS_RUNNING, t->total,
                                  t->done, t->failed, t->skipped, nightly_eta(f), clock_wall_us()));
}

static int nop_pass_finish(void *userdata, int64_t pass_id, const struct nightly_totals *t)
{
        struct fleet *f = userdata;
        int64_t epoch = fleet_epoch(f);

        if (epoch == 0)
                return -ESTALE;
        return stale_check(f, pgstore_pass_update(f->store, epoch, f->identity, pass_id,
                                                  PGSTORE_PASS_FINISHED, t->total, t->done,
                                                  t->failed, t->skipped, 0, clock_wall_us()));
}

static int nop_progress_exists(void *userdata, const char *key)
{
        struct fleet *f = userdata;
        bool e = false;
        int r = progress_set_exists(f->progress, key, &e);
        return r < 0 ? r : e ? 1 : 0;
}

static int nop_progress_create(void *userdata, const char *key, const char *const *ids, size_t n,
                               int64_t ttl_s)
{
        struct fleet *f = userdata;
        return progress_set_replace(f->progress, key, ids, n, ttl_s);
}

static int nop_progress_remove(void *userdata, const char *key, const char *id)
{
        struct fleet *f = userdata;
        return progress_set_remove(f->progress, key, id, NULL);
}

static int nop_progress_members(void *userdata, const char *key, struct nightly_list *out)
{
        struct fleet *f = userdata;
        char **ids = NULL;
        size_t n = 0;
        int r = progress_set_members(f->progress, key, &ids, &n);

        for (size_t i = 0; r == 0 && i < n; i++)
                r = nightly_list_add_id(out, ids[i]);
        progress_strv_free(ids);
        return r;
}

static int nop_progress_count(void *userdata, const char *key)
{
        struct fleet *f = userdata;
        int64_t n = 0;
        int r = progress_set_count(f->progress, key, &n);
        return r < 0 ? r : (int)MIN(n, INT32_MAX);
}

static int nop_save(void *userdata, const struct nightly_save_request *req,
                    struct nightly_save_result *res)
{
        struct fleet *f = userdata;
        struct exec x = {.generation = req->generation, .kind = PGSTORE_RUN_NIGHTLY};
        struct pgstore_run run;
        struct finst *in;
        int r;

        if (nightly_save_is_cancelled(req) || !acting_as(f, req->generation, &x.epoch))
                return -ECANCELED;
        in = finst_get(f, req->instance_id);
        if (!in) {
                copy_str(res->error, sizeof(res->error), "no such instance");
                res->ok = false;
                return 0;
        }
        r = finst_acquire(f, in, req->generation);
        if (r < 0) {
                finst_unref(f, in);
                return -ECANCELED;
        }
        if (nightly_save_is_cancelled(req)) {
                r = -ECANCELED;
                goto out;
        }
        struct pgstore_run_new nr = {
            .kind = PGSTORE_RUN_NIGHTLY,
            .instance_id = req->instance_id,
            .action = PGSTORE_ACTION_BGSAVE,
            .pass_id = req->pass_id,
            .planned_start = clock_wall_us(),
            .estimated_duration_ms = req->estimate_us > 0 ? req->estimate_us / 1000 : -1,
        };
        r = pgstore_run_create(f->store, x.epoch, f->identity, &nr, &run, NULL);
        if (r == -ESTALE) {
                deposed(f, req->generation);
                goto out;
        }
        if (r < 0) {
                r = r == -EINVAL ? r : -EAGAIN;
                goto out;
        }
        x.run_id = run.id;
        x.action = PGSTORE_ACTION_BGSAVE;
        x.mode = DRIVER_MODE_NORMAL;
        x.need_start = true;
        r = exec_save(f, in, &x);
        if (r == 0) {
                res->ok = x.state == PGSTORE_RUN_SUCCEEDED;
                copy_str(res->error, sizeof(res->error), x.error);
        } else if (r != -ESTALE)
                r = -ECANCELED;
out:
        finst_release(f, in);
        finst_unref(f, in);
        return r;
}

static int nop_list_in_flight(void *userdata, int64_t pass_id, struct nightly_list *out)
{
        struct fleet *f = userdata;
        struct pgstore_run *runs = NULL;
        size_t n = 0;
        int64_t epoch = fleet_epoch(f);
        int r;

        if (epoch == 0)
                return -ESTALE;
        r = pgstore_runs_stale(f->store, epoch, &runs, &n);
        for (size_t i = 0; r == 0 && i < n; i++)
                if (runs[i].kind == PGSTORE_RUN_NIGHTLY && runs[i].pass_id == pass_id)
                        r = nightly_list_add_id(out, runs[i].instance_id);
        free(runs);
        return r;
}

static int nop_adopt(void *userdata, const struct nightly_save_request *req,
                     struct nightly_save_result *res)
{
        struct fleet *f = userdata;
        struct exec x = {.generation = req->generation};
        struct pgstore_run *runs = NULL, run = {0};
        size_t n = 0;
        bool found = false, adopted_save = false;
        struct finst *in;
        int r;

        if (nightly_save_is_cancelled(req) || !acting_as(f, req->generation, &x.epoch))
                return -ECANCELED;
        r = pgstore_runs_stale(f->store, x.epoch, &runs, &n);
        if (r < 0)
                return r;
        for (size_t i = 0; i < n; i++)
                if (runs[i].kind == PGSTORE_RUN_NIGHTLY && runs[i].pass_id == req->pass_id &&
                    streq(runs[i].instance_id, req->instance_id)) {
                        run = runs[i];
                        found = true;
                }
        free(runs);
        if (!found)
                return -ENOENT;
        r = pgstore_run_adopt(f->store, x.epoch, f->identity, run.id);
        if (r == -ESTALE) {
                deposed(f, req->generation);
                return r;
        }
        if (r == -EALREADY)
                return -ENOENT;
        if (r < 0)
                return r;
        in = finst_get(f, req->instance_id);
        if (!in)
                return -ENOENT;
        r = finst_acquire(f, in, req->generation);
        if (r < 0) {
                finst_unref(f, in);
                return -ECANCELED;
        }
        r = reconcile_run(f, in, &run, &x, false, &adopted_save);
        if (r == -ENOENT) {
                /* Nothing reached the instance: the pass saves it again under a new run. This
                 * one ended where it started (it never ran), not at this takeover. */
                finish_without_save(f, &x, PGSTORE_RUN_SKIPPED,
                                    "nothing reached the instance; saved again by a new leader",
                                    run.started_at);
                r = -ENOENT;
        } else if (r == 0) {
                res->ok = x.state == PGSTORE_RUN_SUCCEEDED;
                copy_str(res->error, sizeof(res->error), x.error);
                pthread_mutex_lock(&f->lock);
                if (x.res.waited_existing)
                        f->rstats.adopted++;
                else
                        f->rstats.finished++;
                pthread_mutex_unlock(&f->lock);
        } else if (r != -ESTALE)
                r = -ECANCELED;
        finst_release(f, in);
        finst_unref(f, in);
        return r;
}

static void nop_overrun(void *userdata, const char *date, int64_t eta_us, int64_t window_end_us)
{
        struct fleet *f = userdata;

        log_warn("nightly pass %s: expected to end %.0f s after its window", date,
                 (double)(eta_us - window_end_us) / 1e6);
        event(f, FLEET_EVENT_WARNING, "NightlyOverrun",
              "the nightly pass of %s is expected to end %.0f s after its window", date,
              (double)(eta_us - window_end_us) / 1e6);
}

static void nop_deposed(void *userdata)
{
        deposed(userdata, 0);
}

/* ---- persist-now -------------------------------------------------------------------------- */

static int persist_save(const char *instance_id, struct persist_result *result, void *userdata)
{
        struct fleet *f = userdata;
        uint64_t gen = sched_pools_generation(f->pools);
        struct exec x = {.generation = gen, .kind = PGSTORE_RUN_PERSIST};
        char request_id[PGSTORE_ID_MAX];
        struct pgstore_run run;
        bool existed = false;
        struct finst *in;
        int r;

        if (!acting_as(f, gen, &x.epoch)) {
                copy_str(result->error, sizeof(result->error), "not leading");
                return -EAGAIN;
        }
        in = finst_get(f, instance_id);
        if (!in) {
                copy_str(result->error, sizeof(result->error), "no such instance");
                return 0;
        }
        r = finst_acquire(f, in, gen);
        if (r < 0) {
                finst_unref(f, in);
                copy_str(result->error, sizeof(result->error), "leadership lost");
                return r;
        }
        pthread_mutex_lock(&f->lock);
        copy_str(request_id, sizeof(request_id), in->pending_request_id);
        in->pending_request_id[0] = '\0';
        pthread_mutex_unlock(&f->lock);
        struct pgstore_run_new nr = {
            .kind = PGSTORE_RUN_PERSIST,
            .instance_id = instance_id,
            .action = PGSTORE_ACTION_BGSAVE,
            .request_id = request_id[0] ? request_id : NULL,
            .planned_start = clock_wall_us(),
            .estimated_duration_ms = driver_estimator_current_us(in->est) / 1000,
        };
        r = pgstore_run_create(f->store, x.epoch, f->identity, &nr, &run, &existed);
        if (r == -ESTALE)
                deposed(f, gen);
        if (r < 0) {
                snprintf(result->error, sizeof(result->error), "cannot record the run: %s",
                         r == -ESTALE ? "deposed" : strerror(-r));
                goto out;
        }
        result->run_id = run.id;
        if (existed && pgstore_run_state_is_final(run.state)) {
                /* The same request was answered before (by this or an earlier leader). */
                result->ok = run.state == PGSTORE_RUN_SUCCEEDED;
                copy_str(result->error, sizeof(result->error), run.error);
                result->started_us = run.started_at;
                result->finished_us = run.finished_at;
                result->lastsave = run.lastsave_after > 0 ? run.lastsave_after : 0;
                r = 0;
                goto out;
        }
        if (existed && run.epoch != x.epoch) {
                (void)pgstore_run_adopt(f->store, x.epoch, f->identity, run.id);
                run.state = PGSTORE_RUN_CLAIMED;
        }
        x.run_id = run.id;
        x.action = PGSTORE_ACTION_BGSAVE;
        x.mode = DRIVER_MODE_FRESH;
        x.need_start = run.state == PGSTORE_RUN_CLAIMED;
        r = exec_save(f, in, &x);
        if (r == 0) {
                result->ok = x.state == PGSTORE_RUN_SUCCEEDED;
                copy_str(result->error, sizeof(result->error), x.error);
                result->started_us = x.res.save_started_wall_us > 0 ? x.res.save_started_wall_us
                                                                    : x.res.started_wall_us;
                result->finished_us = x.res.finished_wall_us;
                result->lastsave = x.res.lastsave_after > 0 ? x.res.lastsave_after : 0;
        } else {
                copy_str(result->error, sizeof(result->error),
                         r == -ECANCELED ? "leadership lost" : strerror(-r));
                r = 0;
        }
out:
        finst_release(f, in);
        finst_unref(f, in);
        return r;
}

static void persist_free(struct fleet_persist *p)
{
        if (!p)
                return;
        for (size_t i = 0; i < p->n; i++)
                if (p->tickets[i])
                        persist_ticket_unref(p->tickets[i]);
        free(p->tickets);
        free(p->ids);
        free(p);
}

/* Under the lock: drop expired and excess request ids from the map. */
static void prune_requests_locked(struct fleet *f, struct fleet_persist **ret_free)
{
        int64_t now = clock_mono_us();
        struct fleet_persist **pp = &f->requests;
        size_t kept = 0;

        while (*pp) {
                struct fleet_persist *p = *pp;
                if (now - p->created_mono > f->opts.persist_request_ttl_us ||
                    kept >= f->opts.persist_request_max) {
                        *pp = p->next;
                        f->n_requests--;
                        if (--p->refs == 0) {
                                p->next = *ret_free;
                                *ret_free = p;
                        }
                        continue;
                }
                kept++;
                pp = &p->next;
        }
}

static void free_list(struct fleet_persist *p)
{
        while (p) {
                struct fleet_persist *next = p->next;
                persist_free(p);
                p = next;
        }
}

int fleet_persist_begin(struct fleet *f, const struct fleet_persist_request *req,
                        struct fleet_persist **ret, char *err, size_t err_size)
{
        struct fleet_persist *p = NULL, *dead = NULL;
        size_t n = 0;
        int r = 0;

        copy_str(err, err_size, "");
        if (!fleet_is_acting(f)) {
                copy_str(err, err_size, "this replica does not lead");
                return -EAGAIN;
        }
        pthread_mutex_lock(&f->lock);
        prune_requests_locked(f, &dead);
        if (!strempty(req->request_id))
                for (p = f->requests; p; p = p->next)
                        if (streq(p->request_id, req->request_id)) {
                                p->refs++;
                                break;
                        }
        pthread_mutex_unlock(&f->lock);
        free_list(dead);
        if (p) {
                *ret = p;
                return 0;
        }

        p = calloc(1, sizeof(*p));
        if (!p)
                return -ENOMEM;
        p->f = f;
        p->refs = 1;
        p->created_mono = clock_mono_us();
        copy_str(p->request_id, sizeof(p->request_id), req->request_id);

        /* Resolve the targets. */
        pthread_mutex_lock(&f->lock);
        size_t cap = req->instances ? req->n_instances : f->n_insts;
        if (cap == 0 || cap > FLEET_PERSIST_TARGETS_MAX) {
                pthread_mutex_unlock(&f->lock);
                copy_str(err, err_size, cap == 0 ? "no instance to persist" : "too many targets");
                persist_free(p);
                return -EINVAL;
        }
        p->ids = calloc(cap, sizeof(*p->ids));
        p->tickets = calloc(cap, sizeof(struct persist_ticket *));
        if (!p->ids || !p->tickets) {
                pthread_mutex_unlock(&f->lock);
                persist_free(p);
                return -ENOMEM;
        }
        if (req->instances) {
                for (size_t i = 0; i < req->n_instances; i++) {
                        struct finst *in = finst_find_locked(f, req->instances[i]);
                        if (!in) {
                                snprintf(err, err_size, "instance \"%.128s\" not found",
                                         req->instances[i]);
                                r = -ENOENT;
                                break;
                        }
                        bool dup = false;
                        for (size_t k = 0; k < n; k++)
                                dup = dup || streq(p->ids[k], in->row.id);
                        if (!dup)
                                copy_str(p->ids[n++], sizeof(p->ids[0]), in->row.id);
                }
        } else {
                for (size_t i = 0; i < f->n_insts; i++) {
                        struct finst *in = f->insts[i];
                        if (!in->row.enabled || in->row.invalid_reason[0])
                                continue;
                        if (!req->all && !streq(in->row.pool, req->pool ? req->pool : ""))
                                continue;
                        copy_str(p->ids[n++], sizeof(p->ids[0]), in->row.id);
                }
                if (n == 0) {
                        snprintf(err, err_size, "no enabled instance in pool \"%.64s\"",
                                 req->pool ? req->pool : "");
                        r = req->all ? -EINVAL : -ENOENT;
                }
        }
        pthread_mutex_unlock(&f->lock);
        p->n = n;
        if (r < 0) {
                persist_free(p);
                return r;
        }

        /* Ask for the saves. */
        for (size_t i = 0; i < n; i++) {
                struct finst *in = finst_get(f, p->ids[i]);
                char pool[PGSTORE_LABEL_MAX] = "";
                int64_t est = 0;
                if (in) {
                        pthread_mutex_lock(&f->lock);
                        copy_str(pool, sizeof(pool), in->row.pool);
                        if (!strempty(req->request_id) && !in->pending_request_id[0])
                                copy_str(in->pending_request_id, sizeof(in->pending_request_id),
                                         req->request_id);
                        pthread_mutex_unlock(&f->lock);
                        est = driver_estimator_current_us(in->est);
                        finst_unref(f, in);
                }
                r = persist_request(f->coalescer, p->ids[i], pool, est, &p->tickets[i]);
                if (r < 0) {
                        copy_str(err, err_size,
                                 r == -EAGAIN ? "this replica does not lead" : strerror(-r));
                        persist_free(p);
                        return r;
                }
        }
        if (p->request_id[0]) {
                pthread_mutex_lock(&f->lock);
                p->refs++;
                p->next = f->requests;
                f->requests = p;
                f->n_requests++;
                pthread_mutex_unlock(&f->lock);
        }
        *ret = p;
        return 0;
}

size_t fleet_persist_count(struct fleet_persist *p)
{
        return p ? p->n : 0;
}

int fleet_persist_wait(struct fleet_persist *p, int64_t timeout_us,
                       struct fleet_persist_result *results)
{
        int64_t deadline = timeout_us > 0 ? clock_mono_us() + timeout_us : 0;
        bool all = true;

        for (size_t i = 0; i < p->n; i++) {
                struct fleet_persist_result *o = &results[i];
                memset(o, 0, sizeof(*o));
                copy_str(o->instance_id, sizeof(o->instance_id), p->ids[i]);
                if (timeout_us == 0) {
                        persist_ticket_peek(p->tickets[i], &o->r);
                } else {
                        int64_t left = timeout_us < 0 ? -1 : MAX(deadline - clock_mono_us(), 0);
                        if (left == 0 || persist_ticket_wait(p->tickets[i], left, &o->r) < 0)
                                persist_ticket_peek(p->tickets[i], &o->r);
                }
                all = all && o->r.done;
        }
        return all ? 0 : -ETIMEDOUT;
}

void fleet_persist_unref(struct fleet_persist *p)
{
        bool last;

        if (!p)
                return;
        pthread_mutex_lock(&p->f->lock);
        last = --p->refs == 0;
        pthread_mutex_unlock(&p->f->lock);
        if (last)
                persist_free(p);
}

/* ---- the registries ------------------------------------------------------------------------ */

struct rows {
        struct pgstore_instance *v;
        size_t n, cap;
};

static int collect_instance(const struct pgstore_instance *row, void *userdata)
{
        struct rows *rs = userdata;

        if (rs->n == rs->cap) {
                size_t cap = rs->cap ? rs->cap * 2 : 64;
                struct pgstore_instance *v = realloc(rs->v, cap * sizeof(*v));
                if (!v)
                        return -ENOMEM;
                rs->v = v;
                rs->cap = cap;
        }
        rs->v[rs->n++] = *row;
        return 0;
}

static void rows_free(struct rows *rs)
{
        for (size_t i = 0; i < rs->n; i++)
                explicit_bzero(rs->v[i].password, sizeof(rs->v[i].password));
        free(rs->v);
        rs->v = NULL;
        rs->n = rs->cap = 0;
}

static bool same_target(const struct pgstore_instance *a, const struct pgstore_instance *b)
{
        return streq(a->host, b->host) && a->port == b->port &&
               streq(a->pod_namespace, b->pod_namespace) && streq(a->pod_name, b->pod_name) &&
               streq(a->username, b->username) && streq(a->password, b->password) &&
               streq(a->secret_namespace, b->secret_namespace) &&
               streq(a->secret_name, b->secret_name) && streq(a->secret_key, b->secret_key);
}

static struct finst *finst_new(struct fleet *f, const struct pgstore_instance *row)
{
        struct finst *in = calloc(1, sizeof(*in));
        double rate =
            row->write_rate_bytes_s > 0 ? row->write_rate_bytes_s : f->opts.write_rate_mb_s * 1e6;
        double fork = row->fork_ms_per_gb >= 0 ? row->fork_ms_per_gb : f->opts.fork_ms_per_gb;

        if (!in)
                return NULL;
        in->est = driver_estimator_new(rate, fork, f->opts.estimate_weight);
        if (!in->est)
                in->est = driver_estimator_new(f->opts.write_rate_mb_s * 1e6,
                                               f->opts.fork_ms_per_gb, f->opts.estimate_weight);
        if (!in->est) {
                free(in);
                return NULL;
        }
        /* The size of its last save until this replica reads INFO: plans made at the start of
         * a leadership are sized by memory too. */
        if (row->last_used_memory > 0)
                driver_estimator_observe_memory(in->est, row->last_used_memory);
        in->refs = 1;
        in->row = *row;
        in->samples = MAX(row->estimate_samples, 0);
        in->target_dirty = true;
        if (row->capabilities_at > 0) {
                snprintf(in->caps.version, sizeof(in->caps.version), "%.31s", row->redis_version);
                in->caps.bgsave = row->can_bgsave ? DRIVER_CAP_YES : DRIVER_CAP_NO;
                in->caps.bgrewriteaof = row->can_bgrewriteaof ? DRIVER_CAP_YES : DRIVER_CAP_NO;
                in->caps.config = row->can_config ? DRIVER_CAP_YES : DRIVER_CAP_NO;
                in->save_config_ok = row->save_disabled;
                in->caps_known = true;
        }
        return in;
}

/* Under the lock: replace or insert one row; keeps the array sorted. */
static int merge_row_locked(struct fleet *f, const struct pgstore_instance *row)
{
        struct finst *in = finst_find_locked(f, row->id);
        size_t pos;

        if (in) {
                if (!same_target(&in->row, row))
                        in->target_dirty = true;
                /* The id never changes once the entry exists, so it may be read without the
                 * lock (logs, store calls); everything after it is replaced. */
                memcpy((char *)&in->row + offsetof(struct pgstore_instance, host),
                       (const char *)row + offsetof(struct pgstore_instance, host),
                       sizeof(*row) - offsetof(struct pgstore_instance, host));
                return 0;
        }
        in = finst_new(f, row);
        if (!in)
                return -ENOMEM;
        struct finst **v = realloc(f->insts, (f->n_insts + 1) * sizeof(struct finst *));
        if (!v) {
                finst_free(in);
                return -ENOMEM;
        }
        f->insts = v;
        for (pos = 0; pos < f->n_insts && strcmp(f->insts[pos]->row.id, row->id) < 0; pos++)
                ;
        memmove(&f->insts[pos + 1], &f->insts[pos], (f->n_insts - pos) * sizeof(struct finst *));
        f->insts[pos] = in;
        f->n_insts++;
        return 0;
}

/* Under the lock. */
static void remove_instance_locked(struct fleet *f, const char *id)
{
        for (size_t i = 0; i < f->n_insts; i++)
                if (streq(f->insts[i]->row.id, id)) {
                        struct finst *in = f->insts[i];
                        memmove(&f->insts[i], &f->insts[i + 1],
                                (f->n_insts - i - 1) * sizeof(struct finst *));
                        f->n_insts--;
                        in->removed = true;
                        finst_unref_locked(in);
                        return;
                }
}

/* Check the targets of `rows` and flag / clear the unusable ones (store I/O, no lock). */
static void validate_rows(struct fleet *f, const struct rows *rs)
{
        char reason[FLEET_ERROR_MAX];

        for (size_t i = 0; i < rs->n; i++) {
                check_target(f, &rs->v[i], reason, sizeof(reason));
                if (streq(reason, rs->v[i].invalid_reason))
                        continue;
                struct finst *in = finst_get(f, rs->v[i].id);
                if (!in)
                        continue;
                /* The row as merged still carries the stored reason: compare against it. */
                set_instance_invalid(f, in, reason[0] ? reason : NULL);
                finst_unref(f, in);
        }
}

static int load_instances(struct fleet *f)
{
        struct rows rs = {0};
        int r = pgstore_instances_foreach(f->store, false, collect_instance, &rs);

        if (r < 0) {
                rows_free(&rs);
                return r;
        }
        pthread_mutex_lock(&f->lock);
        for (size_t i = 0; r == 0 && i < rs.n; i++)
                r = merge_row_locked(f, &rs.v[i]);
        /* Remove what the store no longer has (both lists are sorted by id). */
        for (size_t i = 0; r == 0 && i < f->n_insts;) {
                bool keep = false;
                for (size_t k = 0; k < rs.n && !keep; k++)
                        keep = streq(rs.v[k].id, f->insts[i]->row.id);
                if (keep)
                        i++;
                else
                        remove_instance_locked(f, f->insts[i]->row.id);
        }
        pthread_mutex_unlock(&f->lock);
        if (r == 0)
                validate_rows(f, &rs);
        rows_free(&rs);
        return r;
}

static int load_one_instance(struct fleet *f, const char *id)
{
        struct rows rs = {0};
        struct pgstore_instance row;
        int r = pgstore_instance_get(f->store, id, &row);

        if (r == -ENOENT) {
                pthread_mutex_lock(&f->lock);
                remove_instance_locked(f, id);
                pthread_mutex_unlock(&f->lock);
                return 0;
        }
        if (r < 0)
                return r;
        pthread_mutex_lock(&f->lock);
        r = merge_row_locked(f, &row);
        pthread_mutex_unlock(&f->lock);
        if (r == 0) {
                rs.v = &row;
                rs.n = 1;
                validate_rows(f, &rs);
        }
        explicit_bzero(row.password, sizeof(row.password));
        return r;
}

struct task_rows {
        struct pgstore_task *v;
        size_t n, cap;
};

static int collect_task(const struct pgstore_task *t, void *userdata)
{
        struct task_rows *ts = userdata;

        if (ts->n == ts->cap) {
                size_t cap = ts->cap ? ts->cap * 2 : 64;
                struct pgstore_task *v = realloc(ts->v, cap * sizeof(*v));
                if (!v)
                        return -ENOMEM;
                ts->v = v;
                ts->cap = cap;
        }
        ts->v[ts->n++] = *t;
        return 0;
}

/*
 * Convert a stored task: 1 schedulable (*st written), 0 not to be scheduled (disabled),
 * -EINVAL unusable (reason written).
 */
static int task_convert(const struct pgstore_task *t, struct sched_task *st, char *reason,
                        size_t size)
{
        struct cron_error ce = {0};

        reason[0] = '\0';
        memset(st, 0, sizeof(*st));
        if (cron_parse(t->schedule, &st->schedule, &ce) < 0) {
                snprintf(reason, size, "schedule: %s", ce.message[0] ? ce.message : "invalid");
                return -EINVAL;
        }
        if (!t->enabled || !t->instance_enabled)
                return 0;
        st->id = t->id;
        copy_str(st->instance_id, sizeof(st->instance_id), t->instance_id);
        copy_str(st->pool, sizeof(st->pool), t->pool);
        st->action = t->action == PGSTORE_ACTION_BGREWRITEAOF ? SCHED_ACTION_BGREWRITEAOF
                                                              : SCHED_ACTION_BGSAVE;
        st->run_once = t->misfire == PGSTORE_MISFIRE_RUN_ONCE;
        st->starting_deadline_s = t->starting_deadline_s;
        st->created_us = t->created_at;
        return 1;
}

/* Record a task's (in)validity when it changed. */
static void task_flag(struct fleet *f, const struct pgstore_task *t, const char *reason)
{
        if (streq(reason, t->invalid_reason))
                return;
        (void)pgstore_task_set_invalid(f->store, t->id, reason[0] ? reason : NULL);
        if (reason[0]) {
                log_warn("task %" PRId64 " cannot be scheduled: %s", t->id, reason);
                event(f, FLEET_EVENT_WARNING, "InvalidTask", "task %" PRId64 " (%s): %s", t->id,
                      t->instance_id, reason);
        } else
                log_info("task %" PRId64 " is valid again", t->id);
}

/* Under the lock: set (or add) the registry entry of one task; remove it when t is NULL. */
static int ftask_set_locked(struct fleet *f, int64_t id, const char *instance_id, bool invalid,
                            bool remove)
{
        size_t i;

        for (i = 0; i < f->n_tasks && f->tasks[i].id < id; i++)
                ;
        if (i < f->n_tasks && f->tasks[i].id == id) {
                if (remove) {
                        memmove(&f->tasks[i], &f->tasks[i + 1],
                                (f->n_tasks - i - 1) * sizeof(*f->tasks));
                        f->n_tasks--;
                        return 0;
                }
        } else {
                if (remove)
                        return 0;
                struct ftask *v = realloc(f->tasks, (f->n_tasks + 1) * sizeof(*v));
                if (!v)
                        return -ENOMEM;
                f->tasks = v;
                memmove(&f->tasks[i + 1], &f->tasks[i], (f->n_tasks - i) * sizeof(*v));
                f->n_tasks++;
        }
        f->tasks[i].id = id;
        copy_str(f->tasks[i].instance_id, sizeof(f->tasks[i].instance_id), instance_id);
        f->tasks[i].invalid = invalid;
        return 0;
}

static int apply_task(struct fleet *f, const struct pgstore_task *t)
{
        char reason[PGSTORE_REASON_MAX];
        struct sched_task st;
        int k = task_convert(t, &st, reason, sizeof(reason));
        int r;

        task_flag(f, t, reason);
        pthread_mutex_lock(&f->lock);
        r = ftask_set_locked(f, t->id, t->instance_id, k < 0, false);
        pthread_mutex_unlock(&f->lock);
        if (r < 0)
                return r;
        return k == 1 ? sched_task_upsert(f->sched, &st) : sched_task_remove(f->sched, t->id);
}

static int load_tasks(struct fleet *f)
{
        struct task_rows ts = {0};
        struct sched_task *st = NULL;
        struct ftask *reg = NULL;
        size_t n = 0;
        char reason[PGSTORE_REASON_MAX];
        int r = pgstore_tasks_foreach(f->store, NULL, collect_task, &ts);

        if (r < 0)
                goto out;
        if (ts.n > 0) {
                st = calloc(ts.n, sizeof(*st));
                reg = calloc(ts.n, sizeof(*reg));
                if (!st || !reg) {
                        r = -ENOMEM;
                        goto out;
                }
        }
        for (size_t i = 0; i < ts.n; i++) {
                int k = task_convert(&ts.v[i], &st[n], reason, sizeof(reason));
                task_flag(f, &ts.v[i], reason);
                reg[i] = (struct ftask){.id = ts.v[i].id, .invalid = k < 0};
                copy_str(reg[i].instance_id, sizeof(reg[i].instance_id), ts.v[i].instance_id);
                if (k == 1)
                        n++;
        }
        r = sched_set_tasks(f->sched, st, n);
        if (r < 0)
                goto out;
        pthread_mutex_lock(&f->lock);
        free(f->tasks);
        f->tasks = TAKE_PTR(reg);
        f->n_tasks = ts.n;
        pthread_mutex_unlock(&f->lock);
out:
        free(ts.v);
        free(st);
        free(reg);
        return r;
}

int fleet_resync(struct fleet *f)
{
        int r = load_instances(f);

        if (r == 0)
                r = load_tasks(f);
        pthread_mutex_lock(&f->lock);
        if (r == 0) {
                f->loaded = true;
                f->reload_wanted = false;
        } else
                f->reload_wanted = true;
        pthread_cond_broadcast(&f->cond);
        pthread_mutex_unlock(&f->lock);
        if (r < 0)
                log_warn("loading tasks and instances: %s",
                         pgstore_errstr()[0] ? pgstore_errstr() : strerror(-r));
        return r;
}

static int on_task_change(struct fleet *f, const char *op, const char *id)
{
        struct pgstore_task t;
        char *end;
        long long v;
        int r;

        errno = 0;
        v = strtoll(id, &end, 10);
        if (errno || end == id || *end || v <= 0)
                return -EINVAL;
        if (!streq(op, "DELETE")) {
                r = pgstore_task_get(f->store, v, &t);
                if (r == 0)
                        return apply_task(f, &t);
                if (r != -ENOENT)
                        return r;
        }
        pthread_mutex_lock(&f->lock);
        (void)ftask_set_locked(f, v, NULL, false, true);
        pthread_mutex_unlock(&f->lock);
        return sched_task_remove(f->sched, v);
}

static int apply_task_cb(const struct pgstore_task *t, void *userdata)
{
        return collect_task(t, userdata);
}

static int on_instance_change(struct fleet *f, const char *op, const char *id)
{
        struct task_rows ts = {0};
        struct pgstore_task_filter filter = {.instance_id = id};
        int r;

        if (streq(op, "DELETE")) {
                pthread_mutex_lock(&f->lock);
                remove_instance_locked(f, id);
                pthread_mutex_unlock(&f->lock);
        } else {
                r = load_one_instance(f, id);
                if (r < 0)
                        return r;
        }
        /* Its tasks: the pool or the enabled state may have changed; deleted ones go. */
        r = pgstore_tasks_foreach(f->store, &filter, apply_task_cb, &ts);
        if (r < 0) {
                free(ts.v);
                return r;
        }
        for (size_t i = 0; r == 0 && i < ts.n; i++)
                r = apply_task(f, &ts.v[i]);
        /* Tasks of the instance the store no longer lists. */
        for (;;) {
                int64_t gone = 0;
                pthread_mutex_lock(&f->lock);
                for (size_t i = 0; i < f->n_tasks && !gone; i++) {
                        if (!streq(f->tasks[i].instance_id, id))
                                continue;
                        bool listed = false;
                        for (size_t k = 0; k < ts.n && !listed; k++)
                                listed = ts.v[k].id == f->tasks[i].id;
                        if (!listed)
                                gone = f->tasks[i].id;
                }
                if (gone)
                        (void)ftask_set_locked(f, gone, NULL, false, true);
                pthread_mutex_unlock(&f->lock);
                if (!gone)
                        break;
                (void)sched_task_remove(f->sched, gone);
        }
        free(ts.v);
        return r;
}

int fleet_on_change(struct fleet *f, const char *table, const char *op, const char *id)
{
        if (!table || !op || !id)
                return -EINVAL;
        if (streq(table, "tasks"))
                return on_task_change(f, op, id);
        if (streq(table, "instances"))
                return on_instance_change(f, op, id);
        return -EINVAL;
}

void fleet_listener_change(const char *table, const char *op, const char *id, void *userdata)
{
        struct fleet *f = userdata;
        int r = fleet_on_change(f, table, op, id);

        if (r < 0 && r != -EINVAL) {
                log_warn("applying a change of %s %s: %s; reloading everything", table, id,
                         strerror(-r));
                pthread_mutex_lock(&f->lock);
                f->reload_wanted = true;
                pthread_cond_broadcast(&f->cond);
                pthread_mutex_unlock(&f->lock);
        }
}

void fleet_listener_resync(void *userdata)
{
        (void)fleet_resync(userdata);
}

/* ---- leadership -------------------------------------------------------------------------- */

static void stop_leading_internal(struct fleet *f, bool was_deposed)
{
        uint64_t gen;

        pthread_mutex_lock(&f->lock);
        gen = f->generation;
        f->generation = 0;
        f->acting = false;
        f->epoch = 0;
        for (size_t i = 0; i < f->n_insts; i++)
                if (f->insts[i]->cancel)
                        driver_cancel_request(f->insts[i]->cancel);
        pthread_cond_broadcast(&f->cond);
        pthread_mutex_unlock(&f->lock);
        if (gen == 0 && !was_deposed)
                return;
        sched_stop_leading(f->sched);
        nightly_stop_leading(f->nightly);
        sched_pools_clear(f->pools);
        if (gen != 0)
                log_info("stopped leading (generation %" PRIu64 ")%s", gen,
                         was_deposed ? ": deposed" : "");
}

void fleet_stop_leading(struct fleet *f)
{
        stop_leading_internal(f, false);
}

void fleet_start_leading(struct fleet *f, uint64_t generation)
{
        bool restart;

        if (generation == 0)
                return;
        pthread_mutex_lock(&f->lock);
        if (f->generation == generation || f->stopping) {
                pthread_mutex_unlock(&f->lock);
                return;
        }
        restart = f->generation != 0;
        pthread_mutex_unlock(&f->lock);
        if (restart)
                stop_leading_internal(f, false);
        pthread_mutex_lock(&f->lock);
        f->generation = generation;
        f->acting = false;
        f->epoch = 0;
        f->deposed_reported = false;
        for (size_t i = 0; i < f->n_insts; i++)
                f->insts[i]->next_check_mono = 0;
        pthread_cond_broadcast(&f->cond);
        pthread_mutex_unlock(&f->lock);
        log_info("leading under generation %" PRIu64 "; bumping the epoch", generation);
}

bool fleet_is_acting(struct fleet *f)
{
        bool a;

        pthread_mutex_lock(&f->lock);
        a = f->acting && f->generation != 0;
        pthread_mutex_unlock(&f->lock);
        return a;
}

int64_t fleet_epoch(struct fleet *f)
{
        int64_t e;

        pthread_mutex_lock(&f->lock);
        e = f->acting ? f->epoch : 0;
        pthread_mutex_unlock(&f->lock);
        return e;
}

uint64_t fleet_generation(struct fleet *f)
{
        uint64_t g;

        pthread_mutex_lock(&f->lock);
        g = f->generation;
        pthread_mutex_unlock(&f->lock);
        return g;
}

/*
 * Reconciliation (docs/fleet.md): adopt every run older epochs left claimed or running (but
 * the nightly pass's) and queue it at adopt priority. Returns 0 or the store's errno.
 */
static int reconcile(struct fleet *f, uint64_t gen, int64_t epoch)
{
        struct pgstore_run *runs = NULL;
        size_t n = 0;
        unsigned nightly = 0;
        int r = pgstore_runs_stale(f->store, epoch, &runs, &n);

        if (r < 0)
                return r;
        for (size_t i = 0; i < n; i++) {
                struct pgstore_run *run = &runs[i];
                char pool[PGSTORE_LABEL_MAX] = "";
                struct finst *in;

                if (run->kind == PGSTORE_RUN_NIGHTLY) {
                        nightly++;
                        continue;
                }
                r = pgstore_run_adopt(f->store, epoch, f->identity, run->id);
                if (r == -ESTALE) {
                        deposed(f, gen);
                        break;
                }
                if (r == -EALREADY || r == -ENOENT) {
                        r = 0;
                        continue;
                }
                if (r < 0)
                        break;
                in = finst_get(f, run->instance_id);
                if (in) {
                        pthread_mutex_lock(&f->lock);
                        copy_str(pool, sizeof(pool), in->row.pool);
                        pthread_mutex_unlock(&f->lock);
                        finst_unref(f, in);
                }
                if (!in) {
                        struct exec x = {.generation = gen,
                                         .epoch = epoch,
                                         .run_id = run->id,
                                         .kind = run->kind,
                                         .action = run->action};
                        finish_without_save(f, &x, PGSTORE_RUN_FAILED,
                                            "no such instance (found by a new leader)", 0);
                        continue;
                }
                log_info("run %" PRId64 " (%s of %s) left %s by epoch %" PRId64 ": reconciling it",
                         run->id, pgstore_run_kind_to_string(run->kind), run->instance_id,
                         pgstore_run_state_to_string(run->state), run->epoch);
                r = submit_fjob(f, pool, SCHED_PRIO_ADOPT, run, true, gen, epoch,
                                inst_estimate(f, run->instance_id));
                if (r < 0)
                        break;
        }
        free(runs);
        pthread_mutex_lock(&f->lock);
        f->rstats.left_to_nightly += nightly;
        if (r == 0)
                f->rstats.passes++;
        pthread_mutex_unlock(&f->lock);
        return r;
}

/* Housekeeping: the epoch bump and everything that follows it. Returns true when acting. */
static bool try_lead(struct fleet *f, uint64_t gen, int64_t backoff_us)
{
        int64_t epoch;
        int r = pgstore_epoch_bump(f->store, f->identity, &epoch);

        if (r < 0) {
                log_warn("cannot bump the epoch: %s; retrying in %.1f s", pgstore_errstr(),
                         (double)backoff_us / 1e6);
                return false;
        }
        pthread_mutex_lock(&f->lock);
        if (f->generation != gen || f->stopping) {
                pthread_mutex_unlock(&f->lock);
                return false;
        }
        f->acting = true;
        f->epoch = epoch;
        pthread_mutex_unlock(&f->lock);
        log_info("acting as leader: epoch %" PRId64 ", generation %" PRIu64, epoch, gen);
        sched_pools_set_generation(f->pools, gen);
        r = reconcile(f, gen, epoch);
        if (r < 0 && r != -ESTALE)
                log_warn("reconciling runs of earlier leaders: %s", pgstore_errstr());
        if (!acting_as(f, gen, NULL))
                return false;
        /* The nightly pass first: its adoptions (saves the previous leader left running) are
         * queued ahead of any scheduled slot, so no new save of an instance is taken for the
         * adopted one (docs/fleet.md). Bounded: a slow progress Redis delays the slots only
         * that long. */
        nightly_start_leading(f->nightly, gen);
        if (nightly_wait_resume_checked(f->nightly, f->opts.nightly_resume_wait_us) < 0)
                log_warn("the look for an interrupted nightly pass is taking long; starting the "
                         "scheduled saves anyway");
        if (!acting_as(f, gen, NULL))
                return false;
        sched_start_leading(f->sched, gen);
        return true;
}

/* The periodic `save ""` check of every instance not busy (the housekeeping thread). */
static void check_instances(struct fleet *f, uint64_t gen)
{
        char id[PGSTORE_ID_MAX];
        size_t i = 0;

        for (;;) {
                struct finst *in = NULL;
                int64_t now = clock_mono_us();

                pthread_mutex_lock(&f->lock);
                for (; i < f->n_insts; i++) {
                        struct finst *c = f->insts[i];
                        if (c->busy || !c->row.enabled || c->row.invalid_reason[0] ||
                            now < c->next_check_mono)
                                continue;
                        c->refs++;
                        copy_str(id, sizeof(id), c->row.id);
                        in = c;
                        i++;
                        break;
                }
                pthread_mutex_unlock(&f->lock);
                if (!in)
                        return;
                if (finst_acquire(f, in, gen) == 0) {
                        char err[FLEET_ERROR_MAX];
                        if (ensure_driver(f, in, err, sizeof(err)) == 0)
                                manage_instance(f, in, gen, false);
                        finst_release(f, in);
                }
                finst_unref(f, in);
                if (!acting_as(f, gen, NULL))
                        return;
        }
}

static void retention(struct fleet *f)
{
        int deleted = 0, total = 0;

        if (f->opts.run_retention_days <= 0)
                return;
        for (int i = 0; i < RETENTION_MAX_ROUND; i++) {
                int r =
                    pgstore_runs_delete_older(f->store, (int64_t)f->opts.run_retention_days * 86400,
                                              RETENTION_BATCH, &deleted);
                if (r < 0) {
                        log_warn("retention: %s", pgstore_errstr());
                        break;
                }
                total += deleted;
                if (deleted < RETENTION_BATCH)
                        break;
        }
        if (total > 0)
                log_info("retention: deleted %d runs older than %d days", total,
                         f->opts.run_retention_days);
}

static void publish_metrics(struct fleet *f)
{
        struct sched_pool_stats *st = NULL;
        _cleanup_(nightly_status_freep) struct nightly_status *ns = NULL;
        int n;

        if (!f->metrics)
                return;
        n = sched_pools_stats(f->pools, &st);
        if (n >= 0)
                metrics_publish_pools(f->metrics, st, (size_t)n);
        free(st);
        if (nightly_status(f->nightly, &ns) == 0 && ns) {
                (void)metrics_gauge_set(f->metrics, M_NIGHTLY_PENDING, NULL, ns->pending);
                (void)metrics_gauge_set(
                    f->metrics, M_NIGHTLY_ETA, NULL,
                    ns->eta_us > 0 ? (double)MAX(ns->eta_us - clock_wall_us(), 0) / 1e6 : 0);
        }
        /* Per-pool instance gauges. */
        metrics_family_clear(f->metrics, M_INSTANCES_LAST_SAVE_FAILED);
        metrics_family_clear(f->metrics, M_INSTANCES_SAVE_CONFIG_DRIFTED);
        pthread_mutex_lock(&f->lock);
        for (size_t i = 0; i < f->n_insts; i++) {
                struct finst *in = f->insts[i];
                const char *vals[1] = {in->row.pool};
                bool failed = in->has_last && in->last_state != PGSTORE_RUN_SUCCEEDED;
                (void)metrics_gauge_add(f->metrics, M_INSTANCES_LAST_SAVE_FAILED, vals,
                                        failed ? 1 : 0);
                (void)metrics_gauge_add(f->metrics, M_INSTANCES_SAVE_CONFIG_DRIFTED, vals,
                                        in->save_config_drifted ? 1 : 0);
        }
        size_t bad_tasks = 0, bad_insts = 0;
        for (size_t i = 0; i < f->n_tasks; i++)
                bad_tasks += f->tasks[i].invalid;
        for (size_t i = 0; i < f->n_insts; i++)
                bad_insts += f->insts[i]->row.invalid_reason[0] != '\0';
        pthread_mutex_unlock(&f->lock);
        (void)metrics_gauge_set(f->metrics, M_UNUSABLE_ROWS, (const char *const[]){"tasks"},
                                (double)bad_tasks);
        (void)metrics_gauge_set(f->metrics, M_UNUSABLE_ROWS, (const char *const[]){"instances"},
                                (double)bad_insts);
}

static void *housekeeping(void *arg)
{
        struct fleet *f = arg;
        int64_t next_bump = 0, backoff = f->opts.epoch_retry_min_us;
        int64_t next_retention = 0, next_metrics = 0, next_reload = 0;
        uint64_t bumped_gen = 0;

        pthread_mutex_lock(&f->lock);
        while (!f->stopping) {
                int64_t now = clock_mono_us();
                uint64_t gen = f->generation;
                bool acting = f->acting;

                if ((!f->loaded || f->reload_wanted) && now >= next_reload) {
                        pthread_mutex_unlock(&f->lock);
                        if (fleet_resync(f) < 0)
                                next_reload = clock_mono_us() + USEC_PER_SEC;
                        pthread_mutex_lock(&f->lock);
                        continue;
                }
                if (gen != bumped_gen) {
                        bumped_gen = gen;
                        next_bump = 0;
                        backoff = f->opts.epoch_retry_min_us;
                }
                pthread_mutex_unlock(&f->lock);
                if (gen != 0 && !acting && now >= next_bump) {
                        if (!try_lead(f, gen, backoff)) {
                                next_bump = clock_mono_us() + backoff;
                                backoff = MIN(backoff * 2, f->opts.epoch_retry_max_us);
                        } else
                                next_retention = 0;
                }
                if (acting_as(f, gen, NULL)) {
                        check_instances(f, gen);
                        if (clock_mono_us() >= next_retention) {
                                retention(f);
                                next_retention = clock_mono_us() + f->opts.retention_interval_us;
                        }
                }
                if (clock_mono_us() >= next_metrics) {
                        publish_metrics(f);
                        next_metrics = clock_mono_us() + f->opts.metrics_interval_us;
                }
                pthread_mutex_lock(&f->lock);
                if (f->stopping)
                        break;
                (void)clock_cond_wait_us(&f->cond, &f->lock, 250 * USEC_PER_MSEC);
        }
        pthread_mutex_unlock(&f->lock);
        return NULL;
}

/* ---- lifecycle ----------------------------------------------------------------------------- */

void fleet_options_init(struct fleet_options *o)
{
        *o = (struct fleet_options){
            .identity = "persistd",
            .driver = {.connect_timeout_ms = 2000,
                       .command_timeout_ms = 5000,
                       .poll_min_ms = 100,
                       .poll_max_ms = 2000,
                       .timeout_factor = 3,
                       .min_timeout_s = 60},
            .manage_save_config = true,
            .config_rewrite = true,
            .save_check_interval_s = 300,
            .write_rate_mb_s = 200,
            .fork_ms_per_gb = 20,
            .estimate_weight = 0.3,
            .default_pool_limit = 1,
            .timezone = "UTC",
            .preload_minute = 40,
            .max_plan_delay_us = 300 * USEC_PER_SEC,
            .key_prefix = "persistd",
            .run_retention_days = 30,
        };
        nightly_options_init(&o->nightly);
}

static void fill_defaults(struct fleet_options *o)
{
        if (o->starvation_us <= 0)
                o->starvation_us = 600 * USEC_PER_SEC;
        if (o->epoch_retry_min_us <= 0)
                o->epoch_retry_min_us = 250 * USEC_PER_MSEC;
        if (o->epoch_retry_max_us <= 0)
                o->epoch_retry_max_us = 10 * USEC_PER_SEC;
        if (o->retention_interval_us <= 0)
                o->retention_interval_us = 600 * USEC_PER_SEC;
        if (o->metrics_interval_us <= 0)
                o->metrics_interval_us = 5 * USEC_PER_SEC;
        if (o->nightly_resume_wait_us <= 0)
                o->nightly_resume_wait_us = 5 * USEC_PER_SEC;
        if (o->persist_request_ttl_us <= 0)
                o->persist_request_ttl_us = 600 * USEC_PER_SEC;
        if (o->persist_request_max == 0)
                o->persist_request_max = 10000;
}

int fleet_new(const struct fleet_options *opts, struct pgstore *store, struct progress *progress,
              struct metrics *metrics, const struct driver_resolver *resolver,
              const struct fleet_callbacks *cb, struct fleet **ret, char *err, size_t err_size)
{
        struct fleet *f;
        char tzerr[TZ_ERROR_MAX] = "";
        int r;

        copy_str(err, err_size, "");
        if (!opts || !store || !progress || !ret || opts->default_pool_limit < 1 ||
            opts->estimate_weight <= 0 || opts->estimate_weight > 1) {
                copy_str(err, err_size, "invalid fleet options");
                return -EINVAL;
        }
        f = calloc(1, sizeof(*f));
        if (!f)
                return -ENOMEM;
        f->opts = *opts;
        fill_defaults(&f->opts);
        f->store = store;
        f->progress = progress;
        f->metrics = metrics;
        f->resolver = resolver;
        if (cb)
                f->cb = *cb;
        pthread_mutex_init(&f->lock, NULL);
        (void)clock_cond_init(&f->cond);
        f->identity = strdup(opts->identity ? opts->identity : "persistd");
        f->timezone = strdup(opts->timezone ? opts->timezone : "UTC");
        f->key_prefix = strdup(opts->key_prefix ? opts->key_prefix : "persistd");
        if (!f->identity || !f->timezone || !f->key_prefix)
                goto oom;
        f->opts.identity = f->identity;
        f->opts.timezone = f->timezone;
        f->opts.key_prefix = f->key_prefix;
        if (opts->n_pool_limits > 0) {
                f->limits = calloc(opts->n_pool_limits, sizeof(*f->limits));
                if (!f->limits)
                        goto oom;
                for (size_t i = 0; i < opts->n_pool_limits; i++) {
                        f->limits[i].name = strdup(opts->pool_limits[i].name);
                        f->limits[i].limit = MAX(opts->pool_limits[i].limit, 1);
                        f->n_limits++;
                        if (!f->limits[i].name)
                                goto oom;
                }
        }
        f->opts.pool_limits = NULL;
        f->opts.n_pool_limits = 0;
        r = tz_zone_load(f->timezone, &f->zone, tzerr, sizeof(tzerr));
        if (r < 0) {
                copy_str(err, err_size, tzerr);
                fleet_free(f);
                return r == -ENOMEM ? r : -EINVAL;
        }
        f->pools = sched_pools_new(pool_limit, f, f->opts.starvation_us);
        if (!f->pools)
                goto oom;
        f->coalescer = persist_coalescer_new(f->pools, persist_save, f);
        if (!f->coalescer)
                goto oom;
        f->sops = (struct sched_ops){
            .userdata = f,
            .run_slot = op_run_slot,
            .recorded_slots = op_recorded_slots,
            .record_missed = op_record_missed,
            .estimate_us = op_estimate_us,
            .pool_limit = pool_limit,
            .plan_overrun = op_plan_overrun,
        };
        struct sched_options so = {.preload_minute = f->opts.preload_minute,
                                   .max_plan_delay_us = f->opts.max_plan_delay_us};
        f->sched = sched_new(&so, f->zone, f->pools, &f->sops);
        if (!f->sched)
                goto oom;
        f->nops = (struct nightly_ops){
            .list_instances = nop_list_instances,
            .estimate = nop_estimate,
            .pass_create = nop_pass_create,
            .pass_lookup = nop_pass_lookup,
            .pass_update = nop_pass_update,
            .pass_finish = nop_pass_finish,
            .progress_exists = nop_progress_exists,
            .progress_create = nop_progress_create,
            .progress_remove = nop_progress_remove,
            .progress_members = nop_progress_members,
            .progress_count = nop_progress_count,
            .save = nop_save,
            .list_in_flight = nop_list_in_flight,
            .adopt = nop_adopt,
            .overrun = nop_overrun,
            .deposed = nop_deposed,
            .userdata = f,
        };
        struct nightly_options no = f->opts.nightly;
        no.key_prefix = f->key_prefix;
        no.owner_key = NIGHTLY_OWNER_KEY;
        no.limit_fn = pool_limit;
        no.limit_userdata = f;
        no.local_time = local_time;
        no.local_time_userdata = f;
        f->nightly = nightly_new(f->pools, &f->nops, &no);
        if (!f->nightly) {
                copy_str(err, err_size, "invalid nightly options");
                fleet_free(f);
                return -EINVAL;
        }
        *ret = f;
        return 0;
oom:
        fleet_free(f);
        return -ENOMEM;
}

int fleet_start(struct fleet *f)
{
        int r;

        if (f->started)
                return -EALREADY;
        r = sched_start(f->sched);
        if (r < 0)
                return r;
        r = nightly_start(f->nightly);
        if (r < 0) {
                sched_stop(f->sched);
                return r;
        }
        r = -pthread_create(&f->thread, NULL, housekeeping, f);
        if (r < 0) {
                nightly_stop(f->nightly);
                sched_stop(f->sched);
                return r;
        }
        f->thread_started = true;
        f->started = true;
        return 0;
}

void fleet_stop(struct fleet *f, int64_t grace_us)
{
        int64_t deadline;

        if (!f || f->stopped)
                return;
        stop_leading_internal(f, false);
        deadline = clock_mono_us() + MAX(grace_us, 0);
        pthread_mutex_lock(&f->lock);
        while (f->running_saves > 0 && clock_mono_us() < deadline) {
                (void)clock_cond_wait_us(&f->cond, &f->lock, 50 * USEC_PER_MSEC);
        }
        f->stopping = true;
        pthread_cond_broadcast(&f->cond);
        pthread_mutex_unlock(&f->lock);
        if (f->nightly)
                nightly_stop(f->nightly);
        if (f->sched) {
                sched_stop_leading(f->sched);
                sched_stop(f->sched);
        }
        if (f->thread_started) {
                pthread_join(f->thread, NULL);
                f->thread_started = false;
        }
        sched_pools_free(f->pools); /* cancels what is queued, joins the executors */
        f->pools = NULL;
        /* The remembered request ids hold tickets of the coalescer: drop them first. */
        pthread_mutex_lock(&f->lock);
        struct fleet_persist *dead = NULL;
        while (f->requests) {
                struct fleet_persist *p = f->requests;
                f->requests = p->next;
                f->n_requests--;
                if (--p->refs == 0) {
                        p->next = dead;
                        dead = p;
                }
        }
        pthread_mutex_unlock(&f->lock);
        free_list(dead);
        persist_coalescer_free(f->coalescer);
        f->coalescer = NULL;
        f->stopped = true;
}

void fleet_free(struct fleet *f)
{
        if (!f)
                return;
        fleet_stop(f, 0);
        nightly_free(f->nightly);
        sched_free(f->sched);
        for (size_t i = 0; i < f->n_insts; i++)
                finst_unref_locked(f->insts[i]);
        free(f->insts);
        free(f->tasks);
        for (size_t i = 0; f->limits && i < f->n_limits; i++)
                free((char *)f->limits[i].name);
        free(f->limits);
        tz_zone_free(f->zone);
        free(f->identity);
        free(f->timezone);
        free(f->key_prefix);
        pthread_cond_destroy(&f->cond);
        pthread_mutex_destroy(&f->lock);
        free(f);
}

/* ---- queries ----------------------------------------------------------------------------- */

static void info_of(const struct finst *in, struct fleet_instance_info *o)
{
        memset(o, 0, sizeof(*o));
        copy_str(o->id, sizeof(o->id), in->row.id);
        if (in->row.host[0])
                snprintf(o->address, sizeof(o->address), "%.200s:%d", in->row.host, in->row.port);
        else
                snprintf(o->address, sizeof(o->address), "pod %.63s/%.180s", in->row.pod_namespace,
                         in->row.pod_name);
        copy_str(o->pool, sizeof(o->pool), in->row.pool);
        o->enabled = in->row.enabled;
        copy_str(o->invalid_reason, sizeof(o->invalid_reason), in->row.invalid_reason);
        o->capabilities_known = in->caps_known;
        snprintf(o->redis_version, sizeof(o->redis_version), "%s", in->caps.version);
        o->can_bgsave = in->caps.bgsave == DRIVER_CAP_YES;
        o->can_bgrewriteaof = in->caps.bgrewriteaof == DRIVER_CAP_YES;
        o->can_config = in->caps.config == DRIVER_CAP_YES;
        o->save_config_ok = in->save_config_ok;
        o->save_config_drifted = in->save_config_drifted;
        if (in->has_last) {
                o->last_run_id = in->last_run_id;
                copy_str(o->last_state, sizeof(o->last_state),
                         pgstore_run_state_to_string(in->last_state));
                copy_str(o->last_error, sizeof(o->last_error), in->last_error);
                o->last_finished_us = in->last_finished_us;
        }
        o->lastsave = in->lastsave > 0 ? in->lastsave : 0;
        o->busy = in->busy;
        driver_estimator_get(in->est, &o->write_rate_bytes_s, &o->fork_ms_per_gb);
        o->estimate_us = driver_estimator_current_us(in->est);
}

int fleet_instances(struct fleet *f, const char *pool, int enabled,
                    struct fleet_instance_info **ret, size_t *ret_n)
{
        struct fleet_instance_info *v = NULL;
        size_t n = 0;

        pthread_mutex_lock(&f->lock);
        if (f->n_insts > 0) {
                v = calloc(f->n_insts, sizeof(*v));
                if (!v) {
                        pthread_mutex_unlock(&f->lock);
                        return -ENOMEM;
                }
        }
        for (size_t i = 0; i < f->n_insts; i++) {
                const struct finst *in = f->insts[i];
                if (!strempty(pool) && !streq(pool, in->row.pool))
                        continue;
                if (enabled >= 0 && in->row.enabled != (enabled != 0))
                        continue;
                info_of(in, &v[n++]);
        }
        pthread_mutex_unlock(&f->lock);
        *ret = v;
        *ret_n = n;
        return 0;
}

int fleet_instance_get(struct fleet *f, const char *id, struct fleet_instance_info *ret)
{
        struct finst *in;

        pthread_mutex_lock(&f->lock);
        in = finst_find_locked(f, id);
        if (in)
                info_of(in, ret);
        pthread_mutex_unlock(&f->lock);
        return in ? 0 : -ENOENT;
}

int fleet_status(struct fleet *f, struct fleet_status *ret)
{
        int n;

        memset(ret, 0, sizeof(*ret));
        pthread_mutex_lock(&f->lock);
        ret->leading = f->generation != 0;
        ret->acting = f->acting && f->generation != 0;
        ret->epoch = ret->acting ? f->epoch : 0;
        ret->generation = f->generation;
        ret->n_instances = f->n_insts;
        ret->n_tasks = f->n_tasks;
        for (size_t i = 0; i < f->n_tasks; i++)
                ret->n_invalid_tasks += f->tasks[i].invalid;
        for (size_t i = 0; i < f->n_insts; i++)
                ret->n_invalid_instances += f->insts[i]->row.invalid_reason[0] != '\0';
        pthread_mutex_unlock(&f->lock);
        ret->n_hours = sched_loaded_hours(f->sched, ret->hours);
        n = sched_pools_stats(f->pools, &ret->pools);
        if (n < 0)
                return n;
        ret->n_pools = (size_t)n;
        return 0;
}

ssize_t fleet_plan_hour(struct fleet *f, int64_t at_us, int64_t *ret_hour_us,
                        struct sched_planned **ret)
{
        int64_t hour = sched_hour_start(f->zone, at_us);

        if (ret_hour_us)
                *ret_hour_us = hour;
        return sched_plan_hour(f->sched, hour, ret);
}

const struct tz_zone *fleet_zone(struct fleet *f)
{
        return f->zone;
}

int fleet_nightly_status(struct fleet *f, struct nightly_status **ret)
{
        return nightly_status(f->nightly, ret);
}

int fleet_nightly_start(struct fleet *f)
{
        return fleet_is_acting(f) ? nightly_start_now(f->nightly) : -EAGAIN;
}

int fleet_nightly_pause(struct fleet *f)
{
        return fleet_is_acting(f) ? nightly_pause(f->nightly) : -EAGAIN;
}

int fleet_nightly_resume(struct fleet *f)
{
        return fleet_is_acting(f) ? nightly_resume(f->nightly) : -EAGAIN;
}

int fleet_task_run_now(struct fleet *f, int64_t task_id, struct pgstore_run *ret_run, char *err,
                       size_t err_size)
{
        uint64_t gen = fleet_generation(f);
        struct pgstore_task t;
        struct pgstore_run run;
        char pool[PGSTORE_LABEL_MAX] = "";
        char reason[FLEET_ERROR_MAX] = "";
        struct finst *in;
        int64_t epoch;
        int r;

        copy_str(err, err_size, "");
        if (!acting_as(f, gen, &epoch)) {
                copy_str(err, err_size, "this replica does not lead");
                return -EAGAIN;
        }
        r = pgstore_task_get(f->store, task_id, &t);
        if (r < 0) {
                snprintf(err, err_size,
                         r == -ENOENT ? "task \"%" PRId64 "\" not found"
                                      : "cannot read task %" PRId64,
                         task_id);
                return r;
        }
        if (t.invalid_reason[0]) {
                snprintf(err, err_size, "task %" PRId64 " is invalid: %.400s", task_id,
                         t.invalid_reason);
                return -EINVAL;
        }
        in = finst_get(f, t.instance_id);
        if (in) {
                pthread_mutex_lock(&f->lock);
                copy_str(pool, sizeof(pool), in->row.pool);
                copy_str(reason, sizeof(reason), in->row.invalid_reason);
                pthread_mutex_unlock(&f->lock);
                finst_unref(f, in);
        }
        if (!in || reason[0]) {
                snprintf(err, err_size, "instance \"%.128s\" %s%.300s", t.instance_id,
                         in ? "cannot be used: " : "is not loaded", reason);
                return -EINVAL;
        }
        struct pgstore_run_new nr = {
            .kind = PGSTORE_RUN_MANUAL,
            .instance_id = t.instance_id,
            .action = t.action,
            .task_id = task_id,
            .planned_start = clock_wall_us(),
            .estimated_duration_ms = inst_estimate(f, t.instance_id) / 1000,
        };
        r = pgstore_run_create(f->store, epoch, f->identity, &nr, &run, NULL);
        if (r == -ESTALE)
                deposed(f, gen);
        if (r < 0) {
                copy_str(err, err_size, r == -ESTALE ? "deposed" : "cannot record the run");
                return r;
        }
        r = submit_fjob(f, pool, SCHED_PRIO_MANUAL, &run, false, gen, epoch,
                        inst_estimate(f, t.instance_id));
        if (r < 0) {
                struct exec x = {.generation = gen,
                                 .epoch = epoch,
                                 .run_id = run.id,
                                 .kind = run.kind,
                                 .action = run.action};
                finish_without_save(f, &x, PGSTORE_RUN_FAILED, "not leading any more", 0);
                copy_str(err, err_size, "this replica does not lead");
                return -EAGAIN;
        }
        if (ret_run)
                *ret_run = run;
        return 0;
}

/* ---- for tests --------------------------------------------------------------------------- */

struct sched_pools *fleet_pools(struct fleet *f)
{
        return f->pools;
}

struct scheduler *fleet_scheduler(struct fleet *f)
{
        return f->sched;
}

void fleet_reconcile_stats(struct fleet *f, struct fleet_reconcile_stats *ret)
{
        pthread_mutex_lock(&f->lock);
        *ret = f->rstats;
        pthread_mutex_unlock(&f->lock);
}
