/* SPDX-License-Identifier: Apache-2.0 */
/*
 * The elector over the real Kubernetes client and the Lease adapter, against kube-test-server:
 * three electors elect one leader that the others see, a release hands over through the watch
 * (far sooner than the lease would expire), a stopped leader is replaced within lease + retry,
 * and a partitioned leader stops acting before the others may take the Lease. Also the label
 * adapter (labels on the server, Events) and the resolver (pod IP absent, Secret key).
 */
#include <errno.h>
#include <pthread.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "core/clock.h"
#include "core/util.h"
#include "daemon/k8s-adapters.h"
#include "election/elector.h"
#include "harness.h"

#define LEASE_S    2
#define RENEW_US   (1500 * 1000)
#define RETRY_US   (400 * 1000)
#define N          3
#define LEASE_NAME "persistd-leader"

struct replica {
        char name[32];
        char *identity;
        struct k8s_config *cfg;
        struct lease_k8s *lease;
        struct elector *elector;

        pthread_mutex_t lock;
        int64_t started_mono_us, stopped_mono_us; /* last callbacks */
        int starts, stops;
};

static void on_started(void *userdata, uint64_t generation)
{
        struct replica *r = userdata;
        (void)generation;
        pthread_mutex_lock(&r->lock);
        r->started_mono_us = clock_mono_us();
        r->starts++;
        pthread_mutex_unlock(&r->lock);
}

static void on_stopped(void *userdata, uint64_t generation)
{
        struct replica *r = userdata;
        (void)generation;
        pthread_mutex_lock(&r->lock);
        r->stopped_mono_us = clock_mono_us();
        r->stops++;
        pthread_mutex_unlock(&r->lock);
}

static void replica_start(struct replica *r, int i, const char *kubeconfig)
{
        _cleanup_free_ char *err = NULL;
        const struct k8s_client_options kopts = {.request_timeout_ms = 500};

        memset(r, 0, sizeof(*r));
        pthread_mutex_init(&r->lock, NULL);
        snprintf(r->name, sizeof(r->name), "persistd-%d", i);
        assert_int_equal(election_identity_new(r->name, &r->identity), 0);
        if (k8s_config_from_kubeconfig(kubeconfig, &r->cfg, &err) < 0)
                th_die("kubeconfig: %s", err);
        assert_int_equal(lease_k8s_new(r->cfg, &kopts, LEASE_NAME, r->identity, NULL, &r->lease),
                         0);
        const struct elector_options o = {
            .identity = r->identity,
            .lease_duration_s = LEASE_S,
            .renew_deadline_us = RENEW_US,
            .retry_period_us = RETRY_US,
        };
        const struct elector_callbacks cb = {
            .on_started_leading = on_started,
            .on_stopped_leading = on_stopped,
            .userdata = r,
        };
        const struct election_lease_ops ops = lease_k8s_ops(r->lease);
        assert_int_equal(elector_new(&o, &ops, &cb, &r->elector), 0);
        assert_int_equal(elector_start(r->elector), 0);
}

static void replica_stop(struct replica *r)
{
        elector_free(r->elector);
        r->elector = NULL;
        lease_k8s_free(r->lease);
        r->lease = NULL;
        k8s_config_free(r->cfg);
        r->cfg = NULL;
        free(r->identity);
        r->identity = NULL;
        pthread_mutex_destroy(&r->lock);
}

/* The index of the one leader among the running replicas, -1 when none, -2 when several. */
static int leader_of(struct replica *rs, int n)
{
        int found = -1;
        for (int i = 0; i < n; i++) {
                if (!rs[i].elector || !elector_is_leader(rs[i].elector))
                        continue;
                if (found >= 0)
                        return -2;
                found = i;
        }
        return found;
}

/* Wait up to `timeout_us` for exactly one leader other than `not`; returns it or fails. */
static int wait_leader(struct replica *rs, int n, int not, int64_t timeout_us)
{
        int64_t deadline = clock_mono_us() + timeout_us;
        for (;;) {
                int l = leader_of(rs, n);
                assert_int_not_equal(l, -2); /* never two */
                if (l >= 0 && l != not )
                        return l;
                if (clock_mono_us() > deadline)
                        fail_msg("no new leader within %.1f s", (double)timeout_us / 1e6);
                clock_sleep_us(10 * 1000);
        }
}

static char *holder_on_server(const struct th_kube *k)
{
        char *body = NULL, *path = NULL;
        assert_true(asprintf(&path, "/apis/coordination.k8s.io/v1/namespaces/%s/leases/%s",
                             k->namespace, LEASE_NAME) > 0);
        long st = th_kube_request(k, k->admin_token, "GET", path, NULL, NULL, &body);
        free(path);
        assert_int_equal(st, 200);
        return body;
}

static void test_one_leader_release_and_stop(void **state)
{
        struct th_kube k;
        struct replica rs[N];
        (void)state;

        th_kube_start(&k, NULL);
        for (int i = 0; i < N; i++)
                replica_start(&rs[i], i, k.admin_kubeconfig);

        int l = wait_leader(rs, N, -1, 10 * USEC_PER_SEC);
        /* The followers see who holds it, and the server's Lease says so. */
        int64_t deadline = clock_mono_us() + 5 * USEC_PER_SEC;
        for (int i = 0; i < N; i++) {
                struct elector_status st;
                for (;;) {
                        elector_get_status(rs[i].elector, &st);
                        if (streq(st.holder, rs[l].identity) || clock_mono_us() > deadline)
                                break;
                        clock_sleep_us(20 * 1000);
                }
                assert_string_equal(st.holder, rs[l].identity);
        }
        char *lease = holder_on_server(&k);
        assert_non_null(strstr(lease, rs[l].identity));
        free(lease);
        /* Steady state: still exactly one after a few renewals. */
        clock_sleep_us(2 * USEC_PER_SEC);
        assert_int_equal(leader_of(rs, N), l);

        /* A step-down (the fleet was deposed) ends the term at once; the elector competes again. */
        pthread_mutex_lock(&rs[l].lock);
        int stops = rs[l].stops;
        pthread_mutex_unlock(&rs[l].lock);
        elector_step_down(rs[l].elector);
        deadline = clock_mono_us() + 5 * USEC_PER_SEC;
        for (;;) {
                pthread_mutex_lock(&rs[l].lock);
                bool stopped = rs[l].stops > stops;
                pthread_mutex_unlock(&rs[l].lock);
                if (stopped || clock_mono_us() > deadline)
                        break;
                clock_sleep_us(5 * 1000);
        }
        pthread_mutex_lock(&rs[l].lock);
        bool stepped_down = rs[l].stops > stops;
        pthread_mutex_unlock(&rs[l].lock);
        assert_true(stepped_down);
        /* The Lease still names it, so it (or, after expiry, another) leads again. */
        l = wait_leader(rs, N, -1, 10 * USEC_PER_SEC);

        /* Release: a follower takes over through the watch, far sooner than the lease. */
        int64_t t0 = clock_mono_us();
        assert_int_equal(elector_release(rs[l].elector, 2 * USEC_PER_SEC), 0);
        int l2 = wait_leader(rs, N, l, 10 * USEC_PER_SEC);
        int64_t handover = clock_mono_us() - t0;
        printf("release hand-over: %.0f ms\n", (double)handover / 1e3);
        assert_true(handover < USEC_PER_SEC); /* expiry would take the lease, 2 s */
        replica_stop(&rs[l]);

        /* A stopped leader (no release) is replaced within lease + retry (plus slack). */
        t0 = clock_mono_us();
        elector_stop(rs[l2].elector);
        int l3 = wait_leader(rs, N, l2, LEASE_S * USEC_PER_SEC + 3 * RETRY_US + 3 * USEC_PER_SEC);
        printf("takeover after a stop: %.0f ms\n", (double)(clock_mono_us() - t0) / 1e3);
        assert_true(l3 != l && l3 != l2);
        for (int i = 0; i < N; i++)
                if (rs[i].elector)
                        replica_stop(&rs[i]);
        th_kube_stop(&k);
}

static void admin_post(const struct th_kube *k, const char *path, const char *json)
{
        long st = th_kube_request(k, k->admin_token, "POST", path, "application/json", json, NULL);
        if (st != 201)
                th_die("POST %s: %ld", path, st);
}

/* Rights for the least-privilege user: everything on leases, pods and events. */
static void grant_user(const struct th_kube *k)
{
        char *path = NULL, *body = NULL;
        assert_true(asprintf(&path, "/apis/rbac.authorization.k8s.io/v1/namespaces/%s/roles",
                             k->namespace) > 0);
        admin_post(k, path,
                   "{\"apiVersion\":\"rbac.authorization.k8s.io/v1\",\"kind\":\"Role\","
                   "\"metadata\":{\"name\":\"all\"},\"rules\":[{\"apiGroups\":[\"\","
                   "\"coordination.k8s.io\"],\"resources\":[\"leases\",\"pods\",\"events\","
                   "\"secrets\"],\"verbs\":[\"*\"]}]}");
        free(path);
        assert_true(asprintf(&path, "/apis/rbac.authorization.k8s.io/v1/namespaces/%s/rolebindings",
                             k->namespace) > 0);
        assert_true(
            asprintf(&body,
                     "{\"apiVersion\":\"rbac.authorization.k8s.io/v1\",\"kind\":"
                     "\"RoleBinding\",\"metadata\":{\"name\":\"all\"},\"roleRef\":{"
                     "\"apiGroup\":\"rbac.authorization.k8s.io\",\"kind\":\"Role\","
                     "\"name\":\"all\"},\"subjects\":[{\"kind\":\"User\",\"name\":\"%s\"}]}",
                     k->user) > 0);
        admin_post(k, path, body);
        free(body);
        free(path);
}

static void test_partitioned_leader_steps_down_first(void **state)
{
        struct th_kube k;
        struct replica rs[N];
        char *json = NULL;
        (void)state;

        th_kube_start(&k, NULL);
        grant_user(&k);
        /* Replica 0 speaks as the user (so it alone can be cut off) and leads first. */
        replica_start(&rs[0], 0, k.user_kubeconfig);
        assert_int_equal(wait_leader(rs, 1, -1, 10 * USEC_PER_SEC), 0);
        for (int i = 1; i < N; i++)
                replica_start(&rs[i], i, k.admin_kubeconfig);
        clock_sleep_us(USEC_PER_SEC);
        assert_int_equal(leader_of(rs, N), 0);

        assert_true(asprintf(&json, "{\"partition\":{\"user\":\"%s\",\"mode\":\"hang\"}}", k.user) >
                    0);
        th_kube_faults(&k, json);
        free(json);
        int l = wait_leader(rs, N, 0, LEASE_S * USEC_PER_SEC + 3 * RETRY_US + 5 * USEC_PER_SEC);
        assert_false(elector_is_leader(rs[0].elector));
        /* elector_is_leader() may turn before the callback has run: wait for both callbacks. */
        int64_t stopped, started;
        int stops, starts;
        for (int64_t cb_deadline = clock_mono_us() + 5 * USEC_PER_SEC;;) {
                pthread_mutex_lock(&rs[0].lock);
                stopped = rs[0].stopped_mono_us;
                stops = rs[0].stops;
                pthread_mutex_unlock(&rs[0].lock);
                pthread_mutex_lock(&rs[l].lock);
                started = rs[l].started_mono_us;
                starts = rs[l].starts;
                pthread_mutex_unlock(&rs[l].lock);
                if ((stops > 0 && starts > 0) || clock_mono_us() > cb_deadline)
                        break;
                clock_sleep_us(10 * 1000);
        }
        assert_int_equal(starts, 1);
        assert_int_equal(stops, 1);
        printf("partitioned leader stepped down %.0f ms before the takeover\n",
               (double)(started - stopped) / 1e3);
        assert_true(stopped < started);

        /* Healed, the old leader keeps competing as a follower and sees the new holder. */
        th_kube_clear_faults(&k);
        int64_t deadline = clock_mono_us() + 8 * USEC_PER_SEC;
        struct elector_status st;
        for (;;) {
                elector_get_status(rs[0].elector, &st);
                if (streq(st.holder, rs[l].identity) || clock_mono_us() > deadline)
                        break;
                clock_sleep_us(50 * 1000);
        }
        assert_string_equal(st.holder, rs[l].identity);
        assert_int_equal(leader_of(rs, N), l);
        for (int i = 0; i < N; i++)
                replica_stop(&rs[i]);
        th_kube_stop(&k);
}

/* ---- labels, Events and the resolver ---------------------------------------------------- */

static void on_pod(void *ctx, const char *pod)
{
        char *buf = ctx;
        strncat(buf, pod, 255 - strlen(buf));
        strncat(buf, " ", 255 - strlen(buf));
}

static void test_label_adapter_and_resolver(void **state)
{
        struct th_kube k;
        _cleanup_free_ char *err = NULL;
        struct k8s_config *cfg = NULL;
        struct label_k8s *lk = NULL;
        struct resolver_k8s *res = NULL;
        const struct k8s_client_options kopts = {.request_timeout_ms = 2000};
        char listed[256] = "";
        (void)state;

        th_kube_start(&k, NULL);
        th_kube_create_pod(&k, "persistd-0", "{\"app\":\"persistd\"}");
        th_kube_create_pod(&k, "persistd-1",
                           "{\"app\":\"persistd\",\"persistd.io/leader\":\"true\"}");
        th_kube_create_secret(&k, "redis-auth", "password", "s3cret-pw");
        if (k8s_config_from_kubeconfig(k.admin_kubeconfig, &cfg, &err) < 0)
                th_die("kubeconfig: %s", err);
        assert_int_equal(label_k8s_new(cfg, &kopts, LEASE_NAME, "persistd-0", &lk), 0);
        struct election_label_ops ops = label_k8s_ops(lk);

        assert_int_equal(
            ops.patch_label(ops.userdata, "persistd-0", "persistd.io/leader", "true", USEC_PER_SEC),
            0);
        assert_int_equal(ops.list_labeled(ops.userdata, "persistd.io/leader", "true", USEC_PER_SEC,
                                          on_pod, listed),
                         0);
        assert_non_null(strstr(listed, "persistd-0 "));
        assert_non_null(strstr(listed, "persistd-1 "));
        assert_int_equal(
            ops.patch_label(ops.userdata, "persistd-1", "persistd.io/leader", NULL, USEC_PER_SEC),
            0);
        assert_int_equal(
            ops.patch_label(ops.userdata, "nope", "persistd.io/leader", NULL, USEC_PER_SEC),
            -ENOENT);
        char *body = NULL, *path = NULL;
        assert_true(asprintf(&path, "/api/v1/namespaces/%s/pods/persistd-1", k.namespace) > 0);
        assert_int_equal(th_kube_request(&k, k.admin_token, "GET", path, NULL, NULL, &body), 200);
        assert_null(strstr(body, "persistd.io/leader"));
        free(body);
        free(path);

        assert_int_equal(ops.emit_event(ops.userdata, ELECTION_EVENT_LEADER_ELECTED,
                                        "persistd-0_abc", USEC_PER_SEC),
                         0);
        assert_true(asprintf(&path,
                             "/api/v1/namespaces/%s/events?fieldSelector=involvedObject.name=%s",
                             k.namespace, LEASE_NAME) > 0);
        assert_int_equal(th_kube_request(&k, k.admin_token, "GET", path, NULL, NULL, &body), 200);
        assert_non_null(strstr(body, "LeaderElected"));
        assert_non_null(strstr(body, "persistd-0_abc"));
        free(body);
        free(path);

        assert_int_equal(resolver_k8s_new(cfg, &kopts, &res), 0);
        struct driver_resolver dr = resolver_k8s_resolver(res);
        char *host = NULL, *value = NULL, *rerr = NULL;
        /* The seeded pod stays Pending without an IP. */
        assert_int_equal(dr.resolve_pod(dr.userdata, k.namespace, "persistd-0", &host, &rerr),
                         -EAGAIN);
        assert_non_null(rerr);
        free(rerr);
        rerr = NULL;
        assert_int_equal(dr.resolve_pod(dr.userdata, k.namespace, "gone", &host, &rerr), -ENOENT);
        free(rerr);
        rerr = NULL;
        assert_int_equal(
            dr.read_secret(dr.userdata, k.namespace, "redis-auth", "password", &value, &rerr), 0);
        assert_string_equal(value, "s3cret-pw");
        secret_free(value);
        assert_int_equal(
            dr.read_secret(dr.userdata, k.namespace, "redis-auth", "nokey", &value, &rerr),
            -ENOENT);
        assert_non_null(rerr);
        assert_null(strstr(rerr, "s3cret"));
        free(rerr);

        resolver_k8s_free(res);
        label_k8s_free(lk);
        k8s_config_free(cfg);
        th_kube_stop(&k);
}

int main(void)
{
        const struct CMUnitTest tests[] = {
            cmocka_unit_test(test_one_leader_release_and_stop),
            cmocka_unit_test(test_partitioned_leader_steps_down_first),
            cmocka_unit_test(test_label_adapter_and_resolver),
        };
        return cmocka_run_group_tests(tests, NULL, NULL);
}
