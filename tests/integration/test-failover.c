/* SPDX-License-Identifier: Apache-2.0 */
/*
 * Failover under API faults, with three real persistd replicas: the leader (replica 0, which
 * alone talks to kube-test-server as the least-privilege user) gets 5xx answers to its renewals,
 * or every request of its hangs; it stops acting as leader before its lease can expire for the
 * others (and refuses leader work), and the server's request log shows that no takeover came within
 * the renew deadline of its last accepted renewal (terms never overlap). An API server that is down
 * for longer than the lease leaves every replica a follower; when it returns exactly one leads
 * again.
 */
#include <errno.h>
#include <setjmp.h>
#include <signal.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <cjson/cJSON.h>
#include <cmocka.h>

#include "core/clock.h"
#include "test-daemon-cluster.h"

/* election.renew_deadline_s of the cluster fixture. */
#define RENEW_DEADLINE_MS 1500

static void admin_post(const struct th_kube *k, const char *path, const char *body)
{
        long st = th_kube_request(k, k->admin_token, "POST", path, "application/json", body, NULL);
        assert_int_equal(st, 201);
}

/* Rights for the least-privilege user on what persistd touches in the namespace. */
static void grant_user(const struct th_kube *k)
{
        char *path =
            xasprintf("/apis/rbac.authorization.k8s.io/v1/namespaces/%s/roles", k->namespace);
        admin_post(k, path,
                   "{\"apiVersion\":\"rbac.authorization.k8s.io/v1\",\"kind\":\"Role\","
                   "\"metadata\":{\"name\":\"all\"},\"rules\":[{\"apiGroups\":[\"\","
                   "\"coordination.k8s.io\"],\"resources\":[\"leases\",\"pods\",\"events\","
                   "\"secrets\"],\"verbs\":[\"*\"]}]}");
        free(path);
        path = xasprintf("/apis/rbac.authorization.k8s.io/v1/namespaces/%s/rolebindings",
                         k->namespace);
        char *body =
            xasprintf("{\"apiVersion\":\"rbac.authorization.k8s.io/v1\",\"kind\":"
                      "\"RoleBinding\",\"metadata\":{\"name\":\"all\"},\"roleRef\":{"
                      "\"apiGroup\":\"rbac.authorization.k8s.io\",\"kind\":\"Role\","
                      "\"name\":\"all\"},\"subjects\":[{\"kind\":\"User\",\"name\":\"%s\"}]}",
                      k->user);
        admin_post(k, path, body);
        free(body);
        free(path);
}

/*
 * The cluster with replica 0 as the leader, on the user's kubeconfig (so that the server can
 * fault it alone and its requests are told apart in the log); replicas 1 and 2 use admin's.
 */
static void start_with_leader_0(struct cluster *cl)
{
        cluster_start(cl, NULL, false);
        grant_user(&cl->kube);
        char *yaml = slurp(cl->r[0].config_path);
        char *at = strstr(yaml, cl->kube.admin_kubeconfig);
        assert_non_null(at);
        *at = '\0';
        char *mine = xasprintf("%s%s%s", yaml, cl->kube.user_kubeconfig,
                               at + strlen(cl->kube.admin_kubeconfig));
        write_file(cl->r[0].config_path, mine);
        free(mine);
        free(yaml);

        replica_spawn(cl, 0);
        assert_int_equal(wait_settled_leader(cl, -1, 30 * USEC_PER_SEC, NULL), 0);
        replica_spawn(cl, 1);
        replica_spawn(cl, 2);
        /* Both followers up and watching; a few renewals. */
        int64_t deadline = clock_mono_us() + 20 * USEC_PER_SEC;
        for (int i = 1; i < N_REPLICAS; i++)
                while (http(cl->r[i].port, "GET", "/healthz", NULL, NULL) != 200) {
                        assert_true(clock_mono_us() < deadline);
                        clock_sleep_us(50 * 1000);
                }
        clock_sleep_us(1500 * 1000);
        assert_int_equal(count_leaders(cl), 1);
        assert_true(says_leader(cl, 0));
}

/* Wait until replica i no longer says it leads; fails the test otherwise. */
static void wait_not_leader(struct cluster *cl, int i, int64_t timeout_us)
{
        int64_t deadline = clock_mono_us() + timeout_us;
        while (says_leader(cl, i)) {
                if (clock_mono_us() > deadline) {
                        dump_logs(cl);
                        fail_msg("%s still says it leads", cl->r[i].pod);
                }
                clock_sleep_us(20 * 1000);
        }
}

/* Replica i refuses leader work: a mutation is answered 503 (not the leader). */
static void assert_refuses_leader_work(const struct cluster *cl, int i)
{
        char *body = NULL;
        long st =
            http(cl->r[i].port, "POST", "/v1/tasks",
                 "{\"instance_id\":\"redis-a\",\"action\":\"bgsave\",\"schedule\":\"* * * * *\"}",
                 &body);
        free(body);
        assert_int_equal(st, 503);
}

/*
 * From the request log: the accepted Lease updates in order, and at every change of the user
 * that sent them (a takeover by another replica), the gap since the previous user's last
 * accepted one is at least the renew deadline: that replica had stopped acting as leader by
 * then. Returns how many such changes there were.
 */
static int check_terms_never_overlap(struct cluster *cl)
{
        char *log = th_kube_request_log(&cl->kube, 0);
        cJSON *doc = cJSON_Parse(log);
        const cJSON *reqs = cJSON_GetObjectItem(doc, "requests"), *it;
        assert_true(cJSON_IsArray(reqs));
        char prev_user[128] = "";
        double prev_ms = 0;
        int changes = 0;
        cJSON_ArrayForEach(it, reqs)
        {
                const cJSON *verb = cJSON_GetObjectItem(it, "verb");
                const cJSON *res = cJSON_GetObjectItem(it, "resource");
                const cJSON *status = cJSON_GetObjectItem(it, "status");
                const cJSON *user = cJSON_GetObjectItem(it, "user");
                const cJSON *start = cJSON_GetObjectItem(it, "start_ms");
                if (!cJSON_IsString(verb) || !cJSON_IsString(res) || !cJSON_IsNumber(status) ||
                    !cJSON_IsString(user) || !cJSON_IsNumber(start))
                        continue;
                if (strcmp(res->valuestring, "leases") != 0 ||
                    (strcmp(verb->valuestring, "update") != 0 &&
                     strcmp(verb->valuestring, "create") != 0) ||
                    status->valueint / 100 != 2)
                        continue;
                if (prev_user[0] && strcmp(prev_user, user->valuestring) != 0) {
                        double gap = start->valuedouble - prev_ms;
                        printf("takeover by %s %.0f ms after %s's last accepted write\n",
                               user->valuestring, gap, prev_user);
                        if (gap < RENEW_DEADLINE_MS) {
                                dump_logs(cl);
                                fail_msg("terms overlap: %s took over %.0f ms after %s's last "
                                         "accepted renewal",
                                         user->valuestring, gap, prev_user);
                        }
                        changes++;
                }
                snprintf(prev_user, sizeof(prev_user), "%s", user->valuestring);
                prev_ms = start->valuedouble;
        }
        cJSON_Delete(doc);
        free(log);
        return changes;
}

static void test_5xx_for_the_leader(void **state)
{
        struct cluster cl;
        (void)state;

        start_with_leader_0(&cl);
        /*
         * Every Lease write is answered 503. Only the leader writes while its lease runs (the
         * followers wait on their watches), so its renewals fail; it must stop acting as leader
         * within the renew deadline, before the lease expires for the others.
         */
        th_kube_faults(&cl.kube, "{\"error\":{\"status\":503,\"count\":1000000,"
                                 "\"prefix\":\"/apis/coordination.k8s.io\",\"method\":\"PUT\"}}");
        wait_not_leader(&cl, 0, 10 * USEC_PER_SEC);
        assert_refuses_leader_work(&cl, 0);
        th_kube_clear_faults(&cl.kube);
        /* Someone leads again (perhaps replica 0 in a new term), alone and labelled. */
        int l = wait_settled_leader(&cl, -1, 20 * USEC_PER_SEC, NULL);
        printf("leader after the 5xx: %s\n", cl.r[l].pod);
        clock_sleep_us(1000 * 1000);
        assert_int_equal(count_leaders(&cl), 1);
        check_terms_never_overlap(&cl);
        cluster_stop(&cl);
}

static void test_hang_for_the_leader(void **state)
{
        struct cluster cl;
        (void)state;

        start_with_leader_0(&cl);
        /* Every request of the leader hangs (its watch is cut); the others' are served. */
        th_kube_faults(&cl.kube, "{\"partition\":{\"user\":\"orchestrator\",\"mode\":\"hang\","
                                 "\"hang_ms\":60000}}");
        wait_not_leader(&cl, 0, 10 * USEC_PER_SEC);
        /* Another replica takes over, and removes the label of the partitioned leader's pod. */
        int l = wait_settled_leader(&cl, 0, 20 * USEC_PER_SEC, NULL);
        assert_true(l != 0);
        assert_false(pod_labelled(&cl, cl.r[0].pod));
        assert_false(says_leader(&cl, 0));
        assert_refuses_leader_work(&cl, 0);
        assert_true(check_terms_never_overlap(&cl) >= 1);

        /* The partition ends: replica 0 follows the new leader, it does not resume its term. */
        th_kube_faults(&cl.kube, "{\"partition\":{\"user\":\"orchestrator\",\"mode\":\"off\"}}");
        clock_sleep_us(3 * USEC_PER_SEC);
        assert_false(says_leader(&cl, 0));
        assert_int_equal(count_leaders(&cl), 1);
        assert_true(says_leader(&cl, l));
        check_terms_never_overlap(&cl);
        cluster_stop(&cl);
}

/* persistd_is_leader from replica i's /metrics: 1, 0, or -1 without an answer. */
static int metric_is_leader(const struct cluster *cl, int i)
{
        char *body = NULL;
        int v = -1;
        if (http(cl->r[i].port, "GET", "/metrics", NULL, &body) == 200)
                /* The sample line, not the HELP line (whose text starts with "1 while"). */
                v = strstr(body, "\npersistd_is_leader 1\n")   ? 1
                    : strstr(body, "\npersistd_is_leader 0\n") ? 0
                                                               : -1;
        free(body);
        return v;
}

static void test_api_down_longer_than_the_lease(void **state)
{
        struct cluster cl;
        (void)state;

        start_with_leader_0(&cl);
        /* Down: every connection is dropped, every open watch cut. */
        th_kube_faults(&cl.kube, "{\"drop\":{\"count\":1000000}}");
        th_kube_restart(&cl.kube);
        wait_not_leader(&cl, 0, 10 * USEC_PER_SEC);
        /*
         * The gauge follows on_stopped_leading, which comes once the Lease call in progress
         * has returned (its request timeout later than the clock-based step-down).
         */
        int64_t deadline = clock_mono_us() + 10 * USEC_PER_SEC;
        while (metric_is_leader(&cl, 0) != 0 && clock_mono_us() < deadline)
                clock_sleep_us(50 * 1000);
        assert_int_equal(metric_is_leader(&cl, 0), 0);
        /* Twice the lease: still nobody believes it leads. */
        int64_t until = clock_mono_us() + 2 * LEASE_S * USEC_PER_SEC;
        while (clock_mono_us() < until) {
                for (int i = 0; i < N_REPLICAS; i++) {
                        bool says = says_leader(&cl, i);
                        int gauge = metric_is_leader(&cl, i);
                        if (says || gauge != 0) {
                                dump_logs(&cl);
                                fail_msg("%s leads during the outage (status %d, gauge %d)",
                                         cl.r[i].pod, says, gauge);
                        }
                }
                clock_sleep_us(200 * 1000);
        }
        /* Back: exactly one leads again. */
        th_kube_clear_faults(&cl.kube);
        int l = wait_settled_leader(&cl, -1, 30 * USEC_PER_SEC, NULL);
        printf("leader after the outage: %s\n", cl.r[l].pod);
        clock_sleep_us(1500 * 1000);
        assert_int_equal(count_leaders(&cl), 1);
        assert_true(says_leader(&cl, l));
        check_terms_never_overlap(&cl);
        cluster_stop(&cl);
}

int main(void)
{
        const struct CMUnitTest tests[] = {
            cmocka_unit_test(test_5xx_for_the_leader),
            cmocka_unit_test(test_hang_for_the_leader),
            cmocka_unit_test(test_api_down_longer_than_the_lease),
        };
        return cmocka_run_group_tests(tests, NULL, NULL);
}
