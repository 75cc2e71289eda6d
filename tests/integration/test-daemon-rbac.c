/* SPDX-License-Identifier: Apache-2.0 */
/*
 * Least privilege (SPEC 12): the Role and RoleBinding of the Helm chart (rendered with $HELM
 * when the test runner provides it, else deploy/persistd.yaml, which is rendered from the
 * chart) loaded into kube-test-server for the chart's service account, and persistd replicas
 * running with that account's token: they elect, label the leader's pod and post the
 * LeaderElected Event with exactly those rights, and no request is refused. Then the same Role
 * without pods/patch: the replica still leads, but labelling fails, visibly in its log.
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
#include <sys/wait.h>

#include <cjson/cJSON.h>
#include <cmocka.h>

#include "core/clock.h"
#include "test-daemon-cluster.h"

static const struct th_kube_options sa = {
    .user = "system:serviceaccount:persistd:persistd",
    .namespace = "persistd",
};

/* The rendered chart: $HELM template when available, else the checked-in rendering. */
static char *rendered_chart(const char *dir)
{
        const char *helm = getenv("HELM");
        const char *root = getenv("SOURCE_ROOT");
        char *out = xasprintf("%s/chart.yaml", dir);

        if (helm && helm[0]) {
                char *cmd = xasprintf("'%s' template persistd '%s/charts/persistd' --namespace "
                                      "persistd --skip-tests --set "
                                      "secrets.existingSecret=persistd-secrets > '%s'",
                                      helm, root ? root : ".", out);
                int r = system(cmd);
                free(cmd);
                if (r == 0) {
                        printf("Role from helm template\n");
                        return out;
                }
        }
        char *in = xasprintf("%s/deploy/persistd.yaml", root ? root : ".");
        char *text = slurp(in);
        free(in);
        assert_true(text[0] != '\0');
        write_file(out, text);
        free(text);
        printf("Role from deploy/persistd.yaml\n");
        return out;
}

/* How many requests of the service account got `status` (from the server's request log). */
static int sa_requests_with_status(const struct cluster *cl, int status)
{
        char *log = th_kube_request_log(&cl->kube, 0);
        cJSON *o = cJSON_Parse(log);
        cJSON *it;
        int n = 0;

        cJSON_ArrayForEach(it, cJSON_GetObjectItem(o, "requests"))
        {
                cJSON *u = cJSON_GetObjectItem(it, "user");
                cJSON *s = cJSON_GetObjectItem(it, "status");
                if (cJSON_IsString(u) && strcmp(u->valuestring, sa.user) == 0 &&
                    cJSON_IsNumber(s) && (int)s->valuedouble == status)
                        n++;
        }
        cJSON_Delete(o);
        free(log);
        return n;
}

static bool leader_event_posted(const struct cluster *cl, const char *identity)
{
        char *body = NULL;
        char *path = xasprintf("/api/v1/namespaces/%s/events?fieldSelector=involvedObject.name="
                               "persistd-leader",
                               cl->kube.namespace);
        long st = th_kube_request(&cl->kube, cl->kube.admin_token, "GET", path, NULL, NULL, &body);
        bool yes = st == 200 && strstr(body, "LeaderElected") && strstr(body, identity);
        free(body);
        free(path);
        return yes;
}

static void test_chart_role_is_enough(void **state)
{
        struct cluster cl;
        (void)state;

        cluster_start(&cl, &sa, true);
        char *chart = rendered_chart(cl.dir);
        assert_int_equal(th_kube_apply_yaml(&cl.kube, chart, "persistd"), 3);
        free(chart);
        replica_spawn(&cl, 0);
        replica_spawn(&cl, 1);
        int l = wait_settled_leader(&cl, -1, 30 * USEC_PER_SEC, NULL);
        char *holder = lease_holder(&cl);
        int64_t deadline = clock_mono_us() + 10 * USEC_PER_SEC;
        while (!leader_event_posted(&cl, holder) && clock_mono_us() < deadline)
                clock_sleep_us(100 * 1000);
        assert_true(leader_event_posted(&cl, holder));
        free(holder);

        /* A hand-over with those rights too: the other replica leads and relabels. */
        kill(cl.r[l].pid, SIGTERM);
        int status = 0;
        assert_true(th_wait_exit(cl.r[l].pid, 10000, &status));
        assert_int_equal(WEXITSTATUS(status), 0);
        cl.r[l].pid = -1;
        wait_settled_leader(&cl, l, 10 * USEC_PER_SEC, NULL);

        /* Nothing the service account asked for was refused. */
        assert_int_equal(sa_requests_with_status(&cl, 403), 0);
        assert_true(th_kube_stat(&cl.kube, sa.user, "update leases") > 0);
        assert_true(th_kube_stat(&cl.kube, sa.user, "patch pods") > 0);
        assert_true(th_kube_stat(&cl.kube, sa.user, "create events") > 0);
        cluster_stop(&cl);
}

static void test_role_without_pod_patch_fails_visibly(void **state)
{
        struct cluster cl;
        (void)state;

        cluster_start(&cl, &sa, true);
        char *chart = rendered_chart(cl.dir);
        char *text = slurp(chart);
        char *verbs = strstr(text, "verbs: [\"get\", \"list\", \"patch\"]");
        assert_non_null(verbs);
        /* Same length, so the YAML stays aligned: drop "patch" from the pods rule. */
        memcpy(verbs, "verbs: [\"get\", \"list\"]         ",
               strlen("verbs: [\"get\", \"list\", \"patch\"]"));
        write_file(chart, text);
        free(text);
        assert_int_equal(th_kube_apply_yaml(&cl.kube, chart, "persistd"), 3);
        free(chart);

        replica_spawn(&cl, 0);
        /* It still elects (the Lease rights are intact)... */
        int64_t deadline = clock_mono_us() + 30 * USEC_PER_SEC;
        while (!says_leader(&cl, 0) && clock_mono_us() < deadline)
                clock_sleep_us(50 * 1000);
        assert_true(says_leader(&cl, 0));
        /* ...but cannot label its pod, and says so in its log. */
        bool logged = false;
        deadline = clock_mono_us() + 10 * USEC_PER_SEC;
        while (!logged && clock_mono_us() < deadline) {
                char *log = slurp(cl.r[0].log_path);
                logged = strstr(log, "Failed to set label \"persistd.io/leader\" on pod "
                                     "\"persistd-0\"") != NULL &&
                         strstr(log, "403") != NULL;
                free(log);
                if (!logged)
                        clock_sleep_us(100 * 1000);
        }
        if (!logged)
                dump_logs(&cl);
        assert_true(logged);
        assert_false(pod_labelled(&cl, "persistd-0"));
        assert_true(sa_requests_with_status(&cl, 403) > 0);
        cluster_stop(&cl);
}

int main(void)
{
        const struct CMUnitTest tests[] = {
            cmocka_unit_test(test_chart_role_is_enough),
            cmocka_unit_test(test_role_without_pod_patch_fails_visibly),
        };
        return cmocka_run_group_tests(tests, NULL, NULL);
}
