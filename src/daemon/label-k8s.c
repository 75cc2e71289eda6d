/* SPDX-License-Identifier: Apache-2.0 */
/* The label machine's operations over the Kubernetes client: pod label patches, a labelled-pod
 * list, and LeaderElected / LeaderLost Events on the Lease. */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "core/log.h"
#include "daemon/k8s-adapters.h"

#define LOG_MODULE "label"

struct label_k8s {
        char *lease_name;
        char *host;
        struct k8s_client *client; /* the label thread's */
        int last_patch_error[2]; /* label thread, [remove, set]: log a failure once, and its end */
};

static int op_patch_label(void *userdata, const char *pod, const char *key, const char *value,
                          int64_t timeout_us)
{
        struct label_k8s *l = userdata;
        int r;

        (void)timeout_us; /* bounded by the client's request timeout */
        r = k8s_pod_set_label(l->client, pod, key, value);
        /* The label machine retries quietly; say so once per kind of failure, and when it ends. */
        int *last = &l->last_patch_error[value != NULL];
        if (r < 0 && r != -ENOENT && r != *last)
                log_warn("Failed to %s label \"%s\" on pod \"%s\" (retrying): %s",
                         value ? "set" : "remove", key, pod, k8s_client_errstr(l->client));
        else if (r == 0 && *last < 0)
                log_info("%s label \"%s\" on pod \"%s\" after failures", value ? "Set" : "Removed",
                         key, pod);
        if (r != -ENOENT)
                *last = r;
        return r;
}

static int op_list_labeled(void *userdata, const char *key, const char *value, int64_t timeout_us,
                           void (*each)(void *ctx, const char *pod), void *ctx)
{
        struct label_k8s *l = userdata;
        _cleanup_free_ char *selector = NULL;
        struct k8s_pod *pods = NULL;
        size_t n = 0;
        int r;

        (void)timeout_us;
        if (asprintf(&selector, "%s=%s", key, value) < 0)
                return -ENOMEM;
        r = k8s_pod_list(l->client, selector, &pods, &n);
        if (r < 0) {
                log_debug("Listing pods with \"%s\" failed: %s", selector,
                          k8s_client_errstr(l->client));
                return r;
        }
        for (size_t i = 0; i < n; i++)
                if (pods[i].name)
                        each(ctx, pods[i].name);
        k8s_pod_array_free(pods, n);
        return 0;
}

static int op_emit_event(void *userdata, enum election_event_kind kind, const char *identity,
                         int64_t timeout_us)
{
        struct label_k8s *l = userdata;
        char message[512];
        int r;

        (void)timeout_us;
        bool elected = kind == ELECTION_EVENT_LEADER_ELECTED;
        snprintf(message, sizeof(message), "%s %s", identity,
                 elected ? "became leader" : "stopped leading");
        const struct k8s_event ev = {
            .involved_kind = "Lease",
            .involved_name = l->lease_name,
            .reason = election_event_kind_to_string(kind),
            .message = message,
            .type = K8S_EVENT_NORMAL,
            .component = "persistd",
            .host = l->host,
        };
        r = k8s_event_create(l->client, &ev);
        if (r < 0)
                log_debug("Posting Event %s failed: %s", ev.reason, k8s_client_errstr(l->client));
        return r;
}

int label_k8s_new(const struct k8s_config *cfg, const struct k8s_client_options *opts,
                  const char *lease_name, const char *host, struct label_k8s **ret)
{
        struct label_k8s *l = calloc(1, sizeof(*l));
        int r = -ENOMEM;

        if (!l)
                return -ENOMEM;
        l->lease_name = strdup(lease_name);
        l->host = strdup(host);
        if (l->lease_name && l->host)
                r = k8s_client_new(cfg, opts, &l->client);
        if (r < 0) {
                label_k8s_free(l);
                return r;
        }
        *ret = l;
        return 0;
}

void label_k8s_free(struct label_k8s *l)
{
        if (!l)
                return;
        k8s_client_free(l->client);
        free(l->host);
        free(l->lease_name);
        free(l);
}

struct election_label_ops label_k8s_ops(struct label_k8s *l)
{
        return (struct election_label_ops){
            .patch_label = op_patch_label,
            .list_labeled = op_list_labeled,
            .emit_event = op_emit_event,
            .userdata = l,
        };
}
