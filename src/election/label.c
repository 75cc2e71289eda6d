/* SPDX-License-Identifier: Apache-2.0 */
/*
 * The leader-label machine: one thread converging the labels on the goal of the current state
 * (leading or following), with exponential back-off on failures, and a small queue of Events.
 */
#include <errno.h>
#include <pthread.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "core/clock.h"
#include "core/log.h"
#include "election/label.h"

#define LOG_MODULE "election"

/* Bounds on what one list answer may make us remember, and on queued Events. */
#define MAX_LISTED_PODS   4096
#define MAX_QUEUED_EVENTS 8

enum own_label {
        OWN_UNKNOWN,
        OWN_PRESENT,
        OWN_ABSENT,
};

struct election_label {
        /* Immutable after election_label_new(). */
        char *pod_name;
        char *label_key;
        char *identity;
        int64_t call_timeout_us, retry_min_us, retry_max_us, resync_us;
        struct election_label_ops ops;

        pthread_mutex_t lock;
        pthread_cond_t cond;

        /* Under the lock. */
        bool started, stopping;
        bool leading;
        uint64_t generation;
        bool changed; /* leadership changed since the thread last looked */
        enum election_event_kind events[MAX_QUEUED_EVENTS];
        size_t n_events;
        /* Written by the thread, read by the status. */
        enum own_label own;
        uint64_t others_clean_gen; /* term for which other pods were cleaned; 0 = none */
        bool settled;
        uint64_t removed, failures, n_emitted;
        int last_error;

        /* Thread only. */
        int64_t backoff_us;
        int64_t next_try_mono_us;
        int64_t next_resync_mono_us;

        pthread_t thread;
};

const char *election_event_kind_to_string(enum election_event_kind kind)
{
        switch (kind) {
        case ELECTION_EVENT_LEADER_ELECTED:
                return "LeaderElected";
        case ELECTION_EVENT_LEADER_LOST:
                return "LeaderLost";
        }
        return "unknown";
}

int election_label_new(const struct election_label_options *opts,
                       const struct election_label_ops *ops, struct election_label **ret)
{
        if (!opts || !ops || !ret || strempty(opts->pod_name) || strempty(opts->label_key) ||
            strempty(opts->identity) || !ops->patch_label || !ops->list_labeled)
                return -EINVAL;
        if (opts->call_timeout_us < 0 || opts->retry_min_us < 0 || opts->retry_max_us < 0 ||
            opts->resync_us < 0)
                return -EINVAL;

        struct election_label *l = calloc(1, sizeof(*l));
        if (!l)
                return -ENOMEM;
        l->pod_name = strdup(opts->pod_name);
        l->label_key = strdup(opts->label_key);
        l->identity = strdup(opts->identity);
        if (!l->pod_name || !l->label_key || !l->identity) {
                free(l->pod_name);
                free(l->label_key);
                free(l->identity);
                free(l);
                return -ENOMEM;
        }
        l->call_timeout_us = opts->call_timeout_us ? opts->call_timeout_us : 5 * USEC_PER_SEC;
        l->retry_min_us = opts->retry_min_us ? opts->retry_min_us : 100 * USEC_PER_MSEC;
        l->retry_max_us = opts->retry_max_us ? opts->retry_max_us : 5 * USEC_PER_SEC;
        l->retry_max_us = MAX(l->retry_max_us, l->retry_min_us);
        l->resync_us = opts->resync_us;
        l->ops = *ops;
        l->own = OWN_UNKNOWN;

        (void)clock_cond_init(&l->cond);
        pthread_mutex_init(&l->lock, NULL);
        *ret = l;
        return 0;
}

static void queue_event_locked(struct election_label *l, enum election_event_kind kind)
{
        if (!l->ops.emit_event)
                return;
        if (l->n_events == MAX_QUEUED_EVENTS) {
                /* Keep the latest: drop the oldest. */
                memmove(l->events, l->events + 1, (MAX_QUEUED_EVENTS - 1) * sizeof(l->events[0]));
                l->n_events--;
        }
        l->events[l->n_events++] = kind;
}

void election_label_on_started_leading(struct election_label *l, uint64_t generation)
{
        pthread_mutex_lock(&l->lock);
        l->leading = true;
        l->generation = generation;
        l->changed = true;
        queue_event_locked(l, ELECTION_EVENT_LEADER_ELECTED);
        pthread_cond_broadcast(&l->cond);
        pthread_mutex_unlock(&l->lock);
}

void election_label_on_stopped_leading(struct election_label *l)
{
        pthread_mutex_lock(&l->lock);
        if (l->leading)
                queue_event_locked(l, ELECTION_EVENT_LEADER_LOST);
        l->leading = false;
        l->changed = true;
        pthread_cond_broadcast(&l->cond);
        pthread_mutex_unlock(&l->lock);
}

/* ---- the thread ------------------------------------------------------------------------ */

struct pod_list {
        char **names;
        size_t n, alloc;
        bool oom;
};

static void collect_pod(void *ctx, const char *pod)
{
        struct pod_list *pl = ctx;
        if (pl->oom || pl->n >= MAX_LISTED_PODS)
                return;
        if (pl->n == pl->alloc) {
                size_t want = pl->alloc ? pl->alloc * 2 : 8;
                char **n = realloc(pl->names, want * sizeof(*n));
                if (!n) {
                        pl->oom = true;
                        return;
                }
                pl->names = n;
                pl->alloc = want;
        }
        pl->names[pl->n] = strdup(pod);
        if (!pl->names[pl->n]) {
                pl->oom = true;
                return;
        }
        pl->n++;
}

static void pod_list_release(struct pod_list *pl)
{
        for (size_t i = 0; i < pl->n; i++)
                free(pl->names[i]);
        free(pl->names);
}

static bool goal_met_locked(const struct election_label *l)
{
        if (l->leading)
                return l->own == OWN_PRESENT && l->others_clean_gen == l->generation;
        return l->own == OWN_ABSENT;
}

static void failed(struct election_label *l, const char *what, const char *pod, int r)
{
        pthread_mutex_lock(&l->lock);
        l->failures++;
        l->last_error = r;
        pthread_mutex_unlock(&l->lock);
        log_debug("Failed to %s on pod \"%s\": %s", what, pod, strerror(-r));
        l->next_try_mono_us = clock_mono_us() + l->backoff_us;
        l->backoff_us = MIN(l->backoff_us * 2, l->retry_max_us);
}

/* One step towards the goal of `leading` (snapshot). */
static void converge(struct election_label *l, bool leading, uint64_t generation)
{
        const char *key = l->label_key;
        int r;

        if (!leading) {
                r = l->ops.patch_label(l->ops.userdata, l->pod_name, key, NULL, l->call_timeout_us);
                if (r < 0 && r != -ENOENT) {
                        failed(l, "remove the leader label", l->pod_name, r);
                        return;
                }
                pthread_mutex_lock(&l->lock);
                l->own = OWN_ABSENT;
                pthread_mutex_unlock(&l->lock);
                l->backoff_us = l->retry_min_us;
                return;
        }

        pthread_mutex_lock(&l->lock);
        bool own_present = l->own == OWN_PRESENT;
        pthread_mutex_unlock(&l->lock);
        if (!own_present) {
                r = l->ops.patch_label(l->ops.userdata, l->pod_name, key, "true",
                                       l->call_timeout_us);
                if (r < 0) {
                        failed(l, "add the leader label", l->pod_name, r);
                        return;
                }
                pthread_mutex_lock(&l->lock);
                l->own = OWN_PRESENT;
                pthread_mutex_unlock(&l->lock);
        }

        struct pod_list pl = {0};
        r = l->ops.list_labeled(l->ops.userdata, key, "true", l->call_timeout_us, collect_pod, &pl);
        if (r == 0 && pl.oom)
                r = -ENOMEM;
        if (r < 0) {
                pod_list_release(&pl);
                failed(l, "list the pods carrying the leader label", l->pod_name, r);
                return;
        }

        bool all = true;
        for (size_t i = 0; i < pl.n; i++) {
                if (streq(pl.names[i], l->pod_name))
                        continue;
                /* Stop early if leadership moved on: the next step has another goal. */
                pthread_mutex_lock(&l->lock);
                bool moved = l->changed || l->stopping;
                pthread_mutex_unlock(&l->lock);
                if (moved) {
                        all = false;
                        break;
                }
                r = l->ops.patch_label(l->ops.userdata, pl.names[i], key, NULL, l->call_timeout_us);
                if (r < 0 && r != -ENOENT) {
                        failed(l, "remove the leader label", pl.names[i], r);
                        all = false;
                        break;
                }
                log_info("Removed the leader label from pod \"%s\"", pl.names[i]);
                pthread_mutex_lock(&l->lock);
                l->removed++;
                pthread_mutex_unlock(&l->lock);
        }
        pod_list_release(&pl);
        if (!all)
                return;
        pthread_mutex_lock(&l->lock);
        l->others_clean_gen = generation;
        pthread_mutex_unlock(&l->lock);
        l->backoff_us = l->retry_min_us;
}

static void wait_until(struct election_label *l, int64_t deadline)
{
        (void)clock_cond_wait_until(&l->cond, &l->lock,
                                    MIN(deadline, clock_mono_us() + 10 * USEC_PER_SEC));
}

static void *label_thread(void *userdata)
{
        struct election_label *l = userdata;

        l->backoff_us = l->retry_min_us;
        l->next_try_mono_us = 0;
        l->next_resync_mono_us = l->resync_us ? clock_mono_us() + l->resync_us : INT64_MAX;

        pthread_mutex_lock(&l->lock);
        while (!l->stopping) {
                int64_t now = clock_mono_us();

                if (l->changed) {
                        /* A new state: write our label again, retry at once. */
                        l->changed = false;
                        l->own = OWN_UNKNOWN;
                        l->next_try_mono_us = 0;
                        l->backoff_us = l->retry_min_us;
                }
                if (now >= l->next_resync_mono_us) {
                        l->own = OWN_UNKNOWN;
                        l->others_clean_gen = 0;
                        l->next_resync_mono_us = now + l->resync_us;
                }
                l->settled = goal_met_locked(l);

                if (!l->settled && now >= l->next_try_mono_us) {
                        bool leading = l->leading;
                        uint64_t gen = l->generation;
                        pthread_mutex_unlock(&l->lock);
                        converge(l, leading, gen);
                        pthread_mutex_lock(&l->lock);
                        continue;
                }
                if (l->n_events > 0) {
                        enum election_event_kind kind = l->events[0];
                        memmove(l->events, l->events + 1, (l->n_events - 1) * sizeof(l->events[0]));
                        l->n_events--;
                        pthread_mutex_unlock(&l->lock);
                        int r = l->ops.emit_event(l->ops.userdata, kind, l->identity,
                                                  l->call_timeout_us);
                        if (r < 0)
                                log_debug("Failed to record the %s Event: %s",
                                          election_event_kind_to_string(kind), strerror(-r));
                        pthread_mutex_lock(&l->lock);
                        if (r < 0) {
                                l->failures++;
                                l->last_error = r;
                        } else {
                                l->n_emitted++;
                        }
                        continue;
                }
                wait_until(l, l->settled ? l->next_resync_mono_us : l->next_try_mono_us);
        }
        pthread_mutex_unlock(&l->lock);
        return NULL;
}

int election_label_start(struct election_label *l)
{
        pthread_mutex_lock(&l->lock);
        if (l->started) {
                pthread_mutex_unlock(&l->lock);
                return -EALREADY;
        }
        l->started = true;
        pthread_mutex_unlock(&l->lock);

        int r = pthread_create(&l->thread, NULL, label_thread, l);
        if (r != 0) {
                pthread_mutex_lock(&l->lock);
                l->started = false;
                pthread_mutex_unlock(&l->lock);
                return -r;
        }
        return 0;
}

void election_label_free(struct election_label *l)
{
        if (!l)
                return;
        pthread_mutex_lock(&l->lock);
        bool started = l->started;
        l->stopping = true;
        pthread_cond_broadcast(&l->cond);
        pthread_mutex_unlock(&l->lock);
        if (started)
                pthread_join(l->thread, NULL);

        pthread_cond_destroy(&l->cond);
        pthread_mutex_destroy(&l->lock);
        free(l->pod_name);
        free(l->label_key);
        free(l->identity);
        free(l);
}

void election_label_get_status(struct election_label *l, struct election_label_status *ret)
{
        memset(ret, 0, sizeof(*ret));
        pthread_mutex_lock(&l->lock);
        ret->leading = l->leading;
        ret->settled = l->started && !l->changed && goal_met_locked(l);
        ret->own_labeled = l->own == OWN_PRESENT;
        ret->removed = l->removed;
        ret->failures = l->failures;
        ret->events = l->n_emitted;
        ret->last_error = l->last_error;
        pthread_mutex_unlock(&l->lock);
}
