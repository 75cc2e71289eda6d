/* SPDX-License-Identifier: Apache-2.0 */
/*
 * persistd run: start every module in a safe order (docs/daemon.md), hand leadership changes
 * from the elector to the fleet on a small leadership thread, and on SIGTERM or SIGINT stop
 * taking work, let in-flight saves answer, release the Lease and stop everything in reverse.
 */
#include <errno.h>
#include <math.h>
#include <pthread.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "core/clock.h"
#include "core/log.h"
#include "daemon.h"
#include "daemon/api-backend.h"
#include "daemon/k8s-adapters.h"
#include "election/elector.h"
#include "election/label.h"
#include "fleet/fleet.h"
#include "http/metrics.h"
#include "http/server.h"
#include "k8s/k8s.h"
#include "persistd-version.h"
#include "store/pgstore.h"
#include "store/progress.h"

#define LOG_MODULE "daemon"

/* Events queued for the Kubernetes API at most; more are dropped (and logged). */
#define MAX_QUEUED_EVENTS 32
/* How long the leader waits for its Lease release and its label removal at shutdown. */
#define RELEASE_TIMEOUT_US      (2 * USEC_PER_SEC)
#define LABEL_SETTLE_TIMEOUT_US (2 * USEC_PER_SEC)

struct queued_event {
        enum k8s_event_type type;
        char reason[64];
        char message[512];
};

struct daemon {
        const struct config *config;
        sigset_t mask;
        char *pod_name;
        char *identity;

        struct metrics *metrics;
        struct pgstore *store;
        struct progress *progress;
        struct k8s_config *kcfg;
        struct k8s_client_options kopts;
        struct resolver_k8s *resolver;
        struct fleet *fleet;
        struct pgstore_listener *listener;
        struct lease_k8s *lease;
        struct elector *elector;
        struct api_impl *api;
        struct http_server *http;
        struct label_k8s *label_ops;
        struct election_label *label;

        /* The leadership thread and the Event thread share this lock. */
        pthread_mutex_t lock;
        pthread_cond_t cond;
        bool threads_started;
        bool shutting_down; /* ends the leadership thread */
        bool stopping;      /* ends the Event thread */
        bool leadership_changed;
        uint64_t want_generation; /* 0: not leading */
        struct queued_event events[MAX_QUEUED_EVENTS];
        size_t n_events;
        pthread_t leadership_thread, event_thread;
};

/* ---- leadership hand-off ------------------------------------------------------------------ */

static void on_started_leading(void *userdata, uint64_t generation)
{
        struct daemon *d = userdata;
        const char *dir[] = {"started"};

        pthread_mutex_lock(&d->lock);
        d->want_generation = generation;
        d->leadership_changed = true;
        pthread_cond_broadcast(&d->cond);
        pthread_mutex_unlock(&d->lock);
        election_label_on_started_leading(d->label, generation);
        metrics_gauge_set(d->metrics, M_IS_LEADER, NULL, 1);
        metrics_counter_add(d->metrics, M_LEADER_TRANSITIONS, dir, 1);
}

static void on_stopped_leading(void *userdata, uint64_t generation)
{
        struct daemon *d = userdata;
        const char *dir[] = {"stopped"};

        (void)generation;
        pthread_mutex_lock(&d->lock);
        d->want_generation = 0;
        d->leadership_changed = true;
        pthread_cond_broadcast(&d->cond);
        pthread_mutex_unlock(&d->lock);
        election_label_on_stopped_leading(d->label);
        metrics_gauge_set(d->metrics, M_IS_LEADER, NULL, 0);
        metrics_counter_add(d->metrics, M_LEADER_TRANSITIONS, dir, 1);
}

static void on_new_leader(void *userdata, const char *identity)
{
        (void)userdata;
        if (identity[0])
                log_info("The Lease is held by \"%s\"", identity);
        else
                log_info("The Lease is free");
}

/* The fleet saw a fenced write fail: another replica holds the epoch. */
static void on_deposed(void *userdata)
{
        struct daemon *d = userdata;

        log_warn("Deposed: another replica holds the epoch in PostgreSQL; stepping down");
        elector_step_down(d->elector);
}

static void *leadership_thread(void *userdata)
{
        struct daemon *d = userdata;

        pthread_mutex_lock(&d->lock);
        while (!d->shutting_down) {
                if (!d->leadership_changed) {
                        pthread_cond_wait(&d->cond, &d->lock);
                        continue;
                }
                d->leadership_changed = false;
                uint64_t gen = d->want_generation;
                pthread_mutex_unlock(&d->lock);
                if (gen) {
                        log_info("Leading (term %llu): starting the fleet",
                                 (unsigned long long)gen);
                        fleet_start_leading(d->fleet, gen);
                } else {
                        fleet_stop_leading(d->fleet);
                }
                pthread_mutex_lock(&d->lock);
        }
        pthread_mutex_unlock(&d->lock);
        return NULL;
}

/* ---- Events from the fleet ---------------------------------------------------------------- */

static void on_fleet_event(enum fleet_event_type type, const char *reason, const char *message,
                           void *userdata)
{
        struct daemon *d = userdata;

        pthread_mutex_lock(&d->lock);
        if (d->n_events < MAX_QUEUED_EVENTS) {
                struct queued_event *e = &d->events[d->n_events++];
                e->type = type == FLEET_EVENT_WARNING ? K8S_EVENT_WARNING : K8S_EVENT_NORMAL;
                snprintf(e->reason, sizeof(e->reason), "%s", reason);
                snprintf(e->message, sizeof(e->message), "%s", message);
                pthread_cond_broadcast(&d->cond);
        } else
                log_debug("Event queue full: dropping %s", reason);
        pthread_mutex_unlock(&d->lock);
}

static void *event_thread(void *userdata)
{
        struct daemon *d = userdata;
        struct k8s_client *c = NULL;
        int r = k8s_client_new(d->kcfg, &d->kopts, &c);

        if (r < 0)
                log_warn("Cannot post Kubernetes Events: %s", strerror(-r));
        pthread_mutex_lock(&d->lock);
        while (!d->stopping) {
                if (d->n_events == 0) {
                        pthread_cond_wait(&d->cond, &d->lock);
                        continue;
                }
                struct queued_event e = d->events[0];
                memmove(&d->events[0], &d->events[1], (d->n_events - 1) * sizeof(e));
                d->n_events--;
                pthread_mutex_unlock(&d->lock);
                if (c) {
                        const struct k8s_event ev = {
                            .involved_kind = "Pod",
                            .involved_name = d->pod_name,
                            .reason = e.reason,
                            .message = e.message,
                            .type = e.type,
                            .component = "persistd",
                            .host = d->pod_name,
                        };
                        r = k8s_event_create(c, &ev);
                        if (r < 0)
                                log_info("Failed to post Event %s: %s", e.reason,
                                         k8s_client_errstr(c));
                }
                pthread_mutex_lock(&d->lock);
        }
        pthread_mutex_unlock(&d->lock);
        k8s_client_free(c);
        return NULL;
}

/* ---- start-up ------------------------------------------------------------------------------- */

/*
 * Sleep `us` unless a stop signal arrives first: returns true when one did (the daemon then
 * exits without having started).
 */
static bool sleep_or_signal(struct daemon *d, int64_t us)
{
        struct timespec ts = {.tv_sec = us / USEC_PER_SEC, .tv_nsec = (us % USEC_PER_SEC) * 1000};
        for (;;) {
                int sig = sigtimedwait(&d->mask, NULL, &ts);
                if (sig == SIGHUP)
                        continue;
                if (sig > 0)
                        log_info("received %s during start-up, stopping",
                                 sig == SIGTERM ? "SIGTERM" : "SIGINT");
                return sig > 0;
        }
}

/* Connect to PostgreSQL and migrate, retrying while it is unreachable. 0, 1 (signal), -errno. */
static int start_store(struct daemon *d)
{
        const struct config *c = d->config;
        const struct pgstore_options o = {
            .dsn = c->postgres.dsn_secret ? c->postgres.dsn_secret : c->postgres.dsn,
            .connect_timeout_s = c->postgres.connect_timeout_s,
            .statement_timeout_ms = c->postgres.connect_timeout_s * 1000,
        };
        int64_t backoff = (int64_t)250 * 1000;
        int from = 0, to = 0;

        d->store = pgstore_new(&o);
        if (!d->store)
                return -ENOMEM;
        for (;;) {
                int r = pgstore_connect(d->store);
                if (r == 0) {
                        r = pgstore_migrate(d->store, &from, &to);
                        if (r == 0)
                                break;
                        if (r == -ENOTSUP) {
                                log_error("Failed to migrate the database: %s; upgrade persistd",
                                          pgstore_errstr());
                                return r;
                        }
                        if (r != -ENOTCONN && r != -ETIMEDOUT && r != -EAGAIN) {
                                log_error("Failed to migrate the database: %s", pgstore_errstr());
                                return r;
                        }
                }
                log_warn("PostgreSQL is not available (%s), retrying in %.1f s", pgstore_errstr(),
                         (double)backoff / 1e6);
                if (sleep_or_signal(d, backoff))
                        return 1;
                backoff = MIN(backoff * 2, 10 * USEC_PER_SEC);
        }
        if (from != to)
                log_info("Database schema migrated from version %d to %d", from, to);
        else
                log_info("Database schema at version %d", to);
        return 0;
}

static int start_kubernetes(struct daemon *d)
{
        const struct config *c = d->config;
        _cleanup_free_ char *err = NULL;
        int r;

        r = k8s_config_load(c->kubernetes.kubeconfig[0] ? c->kubernetes.kubeconfig : NULL, NULL,
                            &d->kcfg, &err);
        if (r < 0) {
                log_error("Failed to load the Kubernetes settings: %s", err ? err : strerror(-r));
                return r;
        }
        d->kopts = (struct k8s_client_options){
            .namespace = c->kubernetes.namespace[0] ? c->kubernetes.namespace : NULL,
            .request_timeout_ms = c->kubernetes.request_timeout_ms,
            .token_reread_s = c->kubernetes.token_reread_s,
        };
        return 0;
}

static int start_fleet(struct daemon *d)
{
        const struct config *c = d->config;
        struct fleet_options o;
        char err[256] = "";
        int r;

        fleet_options_init(&o);
        o.identity = d->identity;
        driver_options_from_config(c, &o.driver);
        o.manage_save_config = c->driver.manage_save_config;
        o.config_rewrite = c->driver.config_rewrite;
        o.save_check_interval_s = c->driver.save_check_interval_s;
        o.write_rate_mb_s = c->driver.write_rate_mb_s;
        o.fork_ms_per_gb = c->driver.fork_ms_per_gb;
        o.estimate_weight = c->driver.estimate_weight;
        o.default_pool_limit = c->pools.default_limit;
        _cleanup_free_ struct fleet_pool_limit *limits =
            calloc(MAX(c->pools.n_limits, (size_t)1), sizeof(*limits));
        if (!limits)
                return -ENOMEM;
        for (size_t i = 0; i < c->pools.n_limits; i++)
                limits[i] =
                    (struct fleet_pool_limit){c->pools.limits[i].name, c->pools.limits[i].limit};
        o.pool_limits = limits;
        o.n_pool_limits = c->pools.n_limits;
        o.timezone = c->schedule.timezone;
        o.preload_minute = c->schedule.preload_minute;
        o.max_plan_delay_us = (int64_t)c->schedule.max_plan_delay_s * USEC_PER_SEC;
        o.nightly.enabled = c->nightly.enabled;
        o.nightly.start_minute = c->nightly.start_minute;
        o.nightly.window_us = (int64_t)c->nightly.window_h * 3600 * USEC_PER_SEC;
        o.nightly.max_attempts = c->nightly.max_attempts;
        o.nightly.retry_backoff_us = (int64_t)c->nightly.retry_backoff_s * USEC_PER_SEC;
        o.nightly.skip_if_saved_within_us =
            (int64_t)c->nightly.skip_if_saved_within_h * 3600 * USEC_PER_SEC;
        o.key_prefix = c->progress.key_prefix;
        o.run_retention_days = c->postgres.run_retention_days;

        const struct driver_resolver res = resolver_k8s_resolver(d->resolver);
        const struct fleet_callbacks cb = {
            .deposed = on_deposed,
            .event = on_fleet_event,
            .userdata = d,
        };
        r = fleet_new(&o, d->store, d->progress, d->metrics, &res, &cb, &d->fleet, err,
                      sizeof(err));
        if (r < 0) {
                log_error("Failed to set up the fleet: %s", err[0] ? err : strerror(-r));
                return r;
        }
        r = fleet_start(d->fleet);
        if (r < 0)
                log_error("Failed to start the fleet: %s", strerror(-r));
        return r;
}

static int start_election(struct daemon *d)
{
        const struct config *c = d->config;
        int64_t renew_us = llround(c->election.renew_deadline_s * 1e6);
        int64_t retry_us = llround(c->election.retry_period_s * 1e6);
        int r;

        /* A Lease request must end well within the renew deadline. */
        struct k8s_client_options lo = d->kopts;
        lo.request_timeout_ms =
            (int)MIN((int64_t)d->kopts.request_timeout_ms > 0 ? d->kopts.request_timeout_ms : 5000,
                     renew_us / 2000);
        r = lease_k8s_new(d->kcfg, &lo, c->election.lease_name, d->identity, d->metrics, &d->lease);
        if (r < 0) {
                log_error("Failed to set up the Lease client: %s", strerror(-r));
                return r;
        }
        const struct elector_options eo = {
            .identity = d->identity,
            .lease_duration_s = c->election.lease_duration_s,
            .renew_deadline_us = renew_us,
            .retry_period_us = retry_us,
        };
        const struct election_lease_ops ops = lease_k8s_ops(d->lease);
        const struct elector_callbacks cb = {
            .on_started_leading = on_started_leading,
            .on_stopped_leading = on_stopped_leading,
            .on_new_leader = on_new_leader,
            .userdata = d,
        };
        r = elector_new(&eo, &ops, &cb, &d->elector);
        if (r < 0)
                log_error("Invalid election settings: %s", strerror(-r));
        return r;
}

static int start_http(struct daemon *d)
{
        const struct config *c = d->config;
        const struct api_deps deps = {
            .store = d->store,
            .fleet = d->fleet,
            .elector = d->elector,
            .lease = d->lease,
            .lease_duration_s = c->election.lease_duration_s,
        };
        int r;

        d->api = api_impl_new(&deps);
        if (!d->api)
                return -ENOMEM;
        const struct api_backend be = api_impl_backend(d->api);
        const struct http_server_options ho = {
            .listen = c->http.listen,
            .token = c->http.token,
            .max_body_bytes = (size_t)c->http.max_body_bytes,
        };
        d->http = http_server_new(&ho, &be, d->metrics);
        if (!d->http)
                return -ENOMEM;
        r = http_server_start(d->http);
        if (r < 0) {
                log_error("Failed to start the HTTP server on %s: %s", c->http.listen,
                          http_server_errstr(d->http));
                return r;
        }
        log_info("HTTP API listening on port %u", (unsigned)http_server_port(d->http));
        return 0;
}

static int start_label(struct daemon *d)
{
        const struct config *c = d->config;
        int r;

        r = label_k8s_new(d->kcfg, &d->kopts, c->election.lease_name, d->pod_name, &d->label_ops);
        if (r < 0)
                return r;
        const struct election_label_options o = {
            .pod_name = d->pod_name,
            .label_key = c->election.leader_label,
            .identity = d->identity,
            .resync_us = 60 * USEC_PER_SEC,
        };
        const struct election_label_ops ops = label_k8s_ops(d->label_ops);
        r = election_label_new(&o, &ops, &d->label);
        if (r < 0) {
                log_error("Invalid leader label settings: %s", strerror(-r));
                return r;
        }
        return election_label_start(d->label);
}

static int start_threads(struct daemon *d)
{
        int r = pthread_create(&d->leadership_thread, NULL, leadership_thread, d);
        if (r != 0)
                return -r;
        r = pthread_create(&d->event_thread, NULL, event_thread, d);
        if (r != 0) {
                pthread_mutex_lock(&d->lock);
                d->shutting_down = true;
                pthread_cond_broadcast(&d->cond);
                pthread_mutex_unlock(&d->lock);
                pthread_join(d->leadership_thread, NULL);
                return -r;
        }
        d->threads_started = true;
        return 0;
}

static int pod_identity(struct daemon *d)
{
        const char *pod = d->config->kubernetes.pod_name;
        char host[256];

        if (strempty(pod)) {
                /* Outside Kubernetes (no Downward API): the host name stands in. */
                if (gethostname(host, sizeof(host)) < 0)
                        return -errno;
                host[sizeof(host) - 1] = '\0';
                pod = host;
                log_warn("POD_NAME is not set: using the host name \"%s\" as the pod name", pod);
        }
        d->pod_name = strdup(pod);
        if (!d->pod_name)
                return -ENOMEM;
        int r = election_identity_new(d->pod_name, &d->identity);
        if (r < 0)
                log_error("Cannot make an identity from pod name \"%s\"", d->pod_name);
        return r;
}

/* ---- shutdown ------------------------------------------------------------------------------- */

static void wait_label_removed(struct daemon *d)
{
        int64_t deadline = clock_mono_us() + LABEL_SETTLE_TIMEOUT_US;
        struct election_label_status st;

        for (;;) {
                election_label_get_status(d->label, &st);
                if ((st.settled && !st.own_labeled) || clock_mono_us() >= deadline)
                        break;
                clock_sleep_us((int64_t)20 * 1000);
        }
        if (st.own_labeled)
                log_warn("The leader label may still be on pod \"%s\"; the next leader removes it",
                         d->pod_name);
}

static void daemon_stop(struct daemon *d)
{
        const int64_t grace_us = (int64_t)d->config->election.shutdown_grace_s * USEC_PER_SEC;

        /*
         * Nothing may call into the fleet once fleet_stop() has begun: first the leadership
         * thread (elector callbacks then only record state), the HTTP server (waiting persist
         * requests are answered and release their handles) and the listener.
         */
        if (d->threads_started) {
                pthread_mutex_lock(&d->lock);
                d->shutting_down = true;
                pthread_cond_broadcast(&d->cond);
                pthread_mutex_unlock(&d->lock);
                pthread_join(d->leadership_thread, NULL);
        }
        /* Stop taking work at once: no new claims, commands or persist requests. */
        if (d->fleet)
                fleet_stop_leading(d->fleet);
        if (d->http)
                http_server_stop(d->http);
        pgstore_listener_free(d->listener);
        d->listener = NULL;
        /* Let the saves in flight answer (bounded by the grace), then hand the Lease over. */
        if (d->fleet)
                fleet_stop(d->fleet, grace_us);
        if (d->elector) {
                int r = elector_release(d->elector, RELEASE_TIMEOUT_US);
                if (r < 0 && r != -ESRCH)
                        log_warn("Failed to release the Lease: %s", strerror(-r));
        }
        elector_free(d->elector);
        d->elector = NULL;
        lease_k8s_free(d->lease);
        d->lease = NULL;
        if (d->label) {
                wait_label_removed(d);
                election_label_free(d->label);
                d->label = NULL;
        }
        label_k8s_free(d->label_ops);
        d->label_ops = NULL;

        if (d->threads_started) {
                pthread_mutex_lock(&d->lock);
                d->stopping = true;
                pthread_cond_broadcast(&d->cond);
                pthread_mutex_unlock(&d->lock);
                pthread_join(d->event_thread, NULL);
                d->threads_started = false;
        }
        http_server_free(d->http);
        d->http = NULL;
        api_impl_free(d->api);
        d->api = NULL;
        fleet_free(d->fleet);
        d->fleet = NULL;
        resolver_k8s_free(d->resolver);
        d->resolver = NULL;
        k8s_config_free(d->kcfg);
        d->kcfg = NULL;
        progress_free(d->progress);
        d->progress = NULL;
        pgstore_free(d->store);
        d->store = NULL;
        metrics_free(d->metrics);
        d->metrics = NULL;
        free(d->identity);
        free(d->pod_name);
        pthread_cond_destroy(&d->cond);
        pthread_mutex_destroy(&d->lock);
}

/* Everything from the store to the elector; 0, 1 when a signal ended the start, or -errno. */
static int daemon_start(struct daemon *d)
{
        const struct config *c = d->config;
        int r;

        r = pod_identity(d);
        if (r < 0)
                return r;
        log_info("Identity \"%s\"", d->identity);
        d->metrics = metrics_new();
        if (!d->metrics)
                return -ENOMEM;
        metrics_gauge_set(d->metrics, M_IS_LEADER, NULL, 0);

        r = start_store(d);
        if (r != 0)
                return r;
        const struct progress_options po = {
            .address = c->progress.address,
            .username = c->progress.username,
            .password = c->progress.password,
            .key_prefix = c->progress.key_prefix,
            .connect_timeout_ms = c->driver.connect_timeout_ms,
            .command_timeout_ms = c->driver.command_timeout_ms,
        };
        r = progress_new(&po, &d->progress);
        if (r < 0) {
                log_error("Failed to set up the progress store: %s", strerror(-r));
                return r;
        }
        r = start_kubernetes(d);
        if (r < 0)
                return r;
        r = resolver_k8s_new(d->kcfg, &d->kopts, &d->resolver);
        if (r < 0)
                return r;
        r = start_threads(d);
        if (r < 0)
                return r;
        r = start_fleet(d);
        if (r < 0)
                return r;

        const struct pgstore_options lo = {
            .dsn = c->postgres.dsn_secret ? c->postgres.dsn_secret : c->postgres.dsn,
            .connect_timeout_s = c->postgres.connect_timeout_s,
            .statement_timeout_ms = c->postgres.connect_timeout_s * 1000,
        };
        const struct pgstore_listener_callbacks lcb = {
            .change = fleet_listener_change,
            .resync = fleet_listener_resync,
            .userdata = d->fleet,
        };
        d->listener = pgstore_listener_new(&lo, c->postgres.resync_interval_s, &lcb);
        if (!d->listener) {
                log_error("Failed to start the change listener");
                return -ENOMEM;
        }
        r = start_election(d); /* built, not started: the API reads it */
        if (r < 0)
                return r;
        r = start_http(d);
        if (r < 0)
                return r;
        r = start_label(d);
        if (r < 0) {
                log_error("Failed to start the leader label: %s", strerror(-r));
                return r;
        }
        r = elector_start(d->elector);
        if (r < 0)
                log_error("Failed to start the elector: %s", strerror(-r));
        return r;
}

int daemon_run(const struct config *config)
{
        struct daemon d = {.config = config};
        pthread_condattr_t attr;
        int sig, r;

        log_setup(config->log.level, config->log.format, STDERR_FILENO);

        /* Block the stop signals in every thread; this one waits for them with sigwait(). */
        sigemptyset(&d.mask);
        sigaddset(&d.mask, SIGTERM);
        sigaddset(&d.mask, SIGINT);
        sigaddset(&d.mask, SIGHUP);
        r = pthread_sigmask(SIG_BLOCK, &d.mask, NULL);
        if (r != 0) {
                /* Unblocked, a stop signal would kill the process instead of stopping it. */
                log_error("Failed to block SIGTERM, SIGINT and SIGHUP: %s", strerror(r));
                return EXIT_FAILURE;
        }
        signal(SIGPIPE, SIG_IGN);

        pthread_mutex_init(&d.lock, NULL);
        pthread_condattr_init(&attr);
        pthread_cond_init(&d.cond, &attr);
        pthread_condattr_destroy(&attr);

        if (clock_wall_is_shifted()) {
                char now[CLOCK_RFC3339_MAX];
                log_warn("schedule clock started at %s (--fake-start): for tests only",
                         clock_format_rfc3339(clock_wall_us(), 0, now));
        }
        log_info("persistd %s starting (config %s)", PERSISTD_VERSION,
                 config->path ? config->path : "defaults");

        r = daemon_start(&d);
        if (r < 0) {
                log_error("Start-up failed, stopping");
                daemon_stop(&d);
                return EXIT_FAILURE;
        }
        if (r > 0) {
                log_info("Stopped during start-up");
                daemon_stop(&d);
                return EXIT_SUCCESS;
        }
        log_info("Started");

        for (;;) {
                if (sigwait(&d.mask, &sig) != 0)
                        continue;
                if (sig == SIGHUP) {
                        log_info("SIGHUP ignored: restart the process to change its configuration");
                        continue;
                }
                break;
        }
        log_info("received %s, stopping", sig == SIGTERM ? "SIGTERM" : "SIGINT");
        daemon_stop(&d);
        log_info("stopped");
        return EXIT_SUCCESS;
}
