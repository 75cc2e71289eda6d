/* SPDX-License-Identifier: Apache-2.0 */
/*
 * The elector's Lease over the Kubernetes client: get/create/update on the elector thread's
 * client, and a watch thread with its own client that keeps the newest Lease seen, from which
 * wait_change() answers.
 */
#include <errno.h>
#include <pthread.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "core/clock.h"
#include "core/log.h"
#include "daemon/k8s-adapters.h"
#include "http/metrics.h"

#define LOG_MODULE "lease"

#define WATCH_BACKOFF_MIN_US ((int64_t)250 * 1000)
#define WATCH_BACKOFF_MAX_US (5 * USEC_PER_SEC)

struct lease_k8s {
        /* Immutable after lease_k8s_new(). */
        char *name;
        char *identity;
        struct metrics *metrics;
        struct k8s_client *client; /* the elector thread's */
        struct k8s_watch *watch;   /* the watch thread's */

        /* Elector thread only: whether the Lease last read or written was ours. */
        bool held_by_us;

        pthread_mutex_t lock;
        pthread_cond_t cond;
        /* Under the lock. */
        bool stopping, woken;
        bool known;  /* the watch has reported at least once */
        bool exists; /* the Lease exists, as last reported */
        struct election_record latest;
        bool thread_started;
        pthread_t thread;
};

static int record_from_lease(const struct k8s_lease *l, struct election_record *ret)
{
        struct election_record rec;

        memset(&rec, 0, sizeof(rec));
        election_record_set_holder(
            &rec, l->has_holder_identity && l->holder_identity ? l->holder_identity : "");
        if (l->has_lease_duration)
                rec.lease_duration_s = (int32_t)CLAMP(l->lease_duration_s, 0, INT32_MAX);
        if (l->has_acquire_time)
                rec.acquire_time_us = l->acquire_time_us;
        if (l->has_renew_time)
                rec.renew_time_us = l->renew_time_us;
        if (l->has_lease_transitions)
                rec.lease_transitions = (int32_t)CLAMP(l->lease_transitions, 0, INT32_MAX);
        /* A cut resourceVersion would never compare: report the answer as malformed. */
        if (election_record_set_resource_version(&rec, l->resource_version ? l->resource_version
                                                                           : "") < 0)
                return -EBADMSG;
        *ret = rec;
        return 0;
}

/* The k8s view of `rec`; strings borrowed from `rec` and `name`: never released. */
static struct k8s_lease lease_from_record(const char *name, const struct election_record *rec)
{
        return (struct k8s_lease){
            .name = (char *)name,
            .resource_version = rec->resource_version[0] ? (char *)rec->resource_version : NULL,
            .has_holder_identity = true,
            .holder_identity = (char *)rec->holder,
            .has_lease_duration = rec->lease_duration_s > 0,
            .lease_duration_s = rec->lease_duration_s,
            .has_acquire_time = rec->acquire_time_us != 0,
            .acquire_time_us = rec->acquire_time_us,
            .has_renew_time = rec->renew_time_us != 0,
            .renew_time_us = rec->renew_time_us,
            .has_lease_transitions = true,
            .lease_transitions = rec->lease_transitions,
        };
}

static void note_holder(struct lease_k8s *l, const struct election_record *rec)
{
        l->held_by_us = streq(rec->holder, l->identity);
}

static int op_get(void *userdata, int64_t timeout_us, struct election_record *ret)
{
        struct lease_k8s *l = userdata;
        struct k8s_lease lease = {0};
        int r;

        (void)timeout_us; /* bounded by the client's request timeout */
        r = k8s_lease_get(l->client, l->name, &lease);
        if (r < 0) {
                if (r != -ENOENT)
                        log_debug("GET Lease \"%s\" failed: %s", l->name,
                                  k8s_client_errstr(l->client));
                return r;
        }
        r = record_from_lease(&lease, ret);
        k8s_lease_release(&lease);
        if (r == 0)
                note_holder(l, ret);
        return r;
}

static int op_create(void *userdata, const struct election_record *rec, int64_t timeout_us,
                     struct election_record *ret)
{
        struct lease_k8s *l = userdata;
        struct k8s_lease in = lease_from_record(l->name, rec), out = {0};
        int r;

        (void)timeout_us;
        r = k8s_lease_create(l->client, &in, &out);
        if (r < 0) {
                log_debug("Creating Lease \"%s\" failed: %s", l->name,
                          k8s_client_errstr(l->client));
                return r;
        }
        r = record_from_lease(&out, ret);
        k8s_lease_release(&out);
        if (r == 0)
                note_holder(l, ret);
        return r;
}

static int op_update(void *userdata, const struct election_record *rec, int64_t timeout_us,
                     struct election_record *ret)
{
        struct lease_k8s *l = userdata;
        struct k8s_lease in = lease_from_record(l->name, rec), out = {0};
        bool renewal = l->held_by_us && streq(rec->holder, l->identity);
        int64_t t0 = clock_mono_us();
        int r;

        (void)timeout_us;
        r = k8s_lease_update(l->client, &in, &out);
        if (renewal && l->metrics) {
                metrics_histogram_observe(l->metrics, M_RENEW_DURATION, NULL,
                                          (double)(clock_mono_us() - t0) / 1e6);
                if (r < 0)
                        metrics_counter_add(l->metrics, M_RENEW_FAILURES, NULL, 1);
        }
        if (r < 0) {
                log_debug("Updating Lease \"%s\" failed: %s", l->name,
                          k8s_client_errstr(l->client));
                if (r == -ESTALE)
                        l->held_by_us = false;
                return r;
        }
        r = record_from_lease(&out, ret);
        k8s_lease_release(&out);
        if (r == 0)
                note_holder(l, ret);
        return r;
}

static void cond_wait_until(struct lease_k8s *l, int64_t deadline_mono_us)
{
        int64_t cap = clock_mono_us() + 10 * USEC_PER_SEC;
        (void)clock_cond_wait_until(&l->cond, &l->lock, MIN(deadline_mono_us, cap));
}

static int op_wait_change(void *userdata, const char *resource_version, int64_t timeout_us,
                          struct election_record *ret)
{
        struct lease_k8s *l = userdata;
        int64_t deadline = clock_mono_us() + timeout_us;
        int r = -ETIMEDOUT;

        pthread_mutex_lock(&l->lock);
        while (!l->woken) {
                /* Not listed yet, or the watch ended: nothing to wait on, the caller polls. */
                if (!l->known) {
                        r = -ENOTCONN;
                        break;
                }
                /* A missing Lease has rv "": the same as waiting for its creation. */
                const char *rv = l->exists ? l->latest.resource_version : "";
                if (!streq(rv, resource_version)) {
                        if (l->exists) {
                                *ret = l->latest;
                                r = 0;
                        } else
                                r = -ENOENT;
                        break;
                }
                if (clock_mono_us() >= deadline)
                        break;
                cond_wait_until(l, deadline);
        }
        if (l->woken)
                r = -EINTR;
        pthread_mutex_unlock(&l->lock);
        return r;
}

static void op_wake(void *userdata)
{
        struct lease_k8s *l = userdata;

        pthread_mutex_lock(&l->lock);
        l->woken = true;
        pthread_cond_broadcast(&l->cond);
        pthread_mutex_unlock(&l->lock);
        k8s_watch_cancel(l->watch);
}

static int on_watch_event(enum k8s_watch_event event, const struct k8s_lease *lease, void *userdata)
{
        struct lease_k8s *l = userdata;
        struct election_record rec;
        bool exists = lease && event != K8S_WATCH_DELETED;

        if (exists && record_from_lease(lease, &rec) < 0)
                return 0; /* unusable answer: wait for the next */
        pthread_mutex_lock(&l->lock);
        l->known = true;
        l->exists = exists;
        if (exists)
                l->latest = rec;
        pthread_cond_broadcast(&l->cond);
        pthread_mutex_unlock(&l->lock);
        return 0;
}

static void *watch_thread(void *userdata)
{
        struct lease_k8s *l = userdata;
        int64_t backoff = WATCH_BACKOFF_MIN_US;

        for (;;) {
                pthread_mutex_lock(&l->lock);
                bool stop = l->stopping;
                pthread_mutex_unlock(&l->lock);
                if (stop)
                        break;

                int64_t t0 = clock_mono_us();
                int r = k8s_watch_run(l->watch, on_watch_event, l);
                if (r == -ECANCELED)
                        break;
                log_debug("Watching Lease \"%s\" ended: %s (%s)", l->name, strerror(-r),
                          k8s_client_errstr(k8s_watch_client(l->watch)));
                /* What we knew may be stale now: no answer from it until the next list. */
                pthread_mutex_lock(&l->lock);
                l->known = false;
                if (clock_mono_us() - t0 > WATCH_BACKOFF_MAX_US)
                        backoff = WATCH_BACKOFF_MIN_US;
                int64_t until = clock_mono_us() + backoff;
                while (!l->stopping && clock_mono_us() < until)
                        cond_wait_until(l, until);
                pthread_mutex_unlock(&l->lock);
                backoff = MIN(backoff * 2, WATCH_BACKOFF_MAX_US);
        }
        return NULL;
}

int lease_k8s_new(const struct k8s_config *cfg, const struct k8s_client_options *opts,
                  const char *lease_name, const char *identity, struct metrics *metrics,
                  struct lease_k8s **ret)
{
        _cleanup_(lease_k8s_freep) struct lease_k8s *l = NULL;
        int r;

        l = calloc(1, sizeof(*l));
        if (!l)
                return -ENOMEM;
        pthread_mutex_init(&l->lock, NULL);
        (void)clock_cond_init(&l->cond);
        l->metrics = metrics;
        l->name = strdup(lease_name);
        l->identity = strdup(identity);
        if (!l->name || !l->identity)
                return -ENOMEM;
        r = k8s_client_new(cfg, opts, &l->client);
        if (r < 0)
                return r;
        r = k8s_watch_new(cfg, opts, lease_name, &l->watch);
        if (r < 0)
                return r;
        r = pthread_create(&l->thread, NULL, watch_thread, l);
        if (r != 0)
                return -r;
        l->thread_started = true;
        *ret = TAKE_PTR(l);
        return 0;
}

void lease_k8s_free(struct lease_k8s *l)
{
        if (!l)
                return;
        if (l->thread_started) {
                pthread_mutex_lock(&l->lock);
                l->stopping = true;
                pthread_cond_broadcast(&l->cond);
                pthread_mutex_unlock(&l->lock);
                k8s_watch_cancel(l->watch);
                pthread_join(l->thread, NULL);
        }
        k8s_watch_free(l->watch);
        k8s_client_free(l->client);
        pthread_cond_destroy(&l->cond);
        pthread_mutex_destroy(&l->lock);
        free(l->identity);
        free(l->name);
        free(l);
}

bool lease_k8s_latest(struct lease_k8s *l, struct election_record *ret)
{
        bool found;

        pthread_mutex_lock(&l->lock);
        found = l->known && l->exists;
        if (found)
                *ret = l->latest;
        pthread_mutex_unlock(&l->lock);
        return found;
}

struct election_lease_ops lease_k8s_ops(struct lease_k8s *l)
{
        return (struct election_lease_ops){
            .get = op_get,
            .create = op_create,
            .update = op_update,
            .wait_change = op_wait_change,
            .wake = op_wake,
            .userdata = l,
        };
}
