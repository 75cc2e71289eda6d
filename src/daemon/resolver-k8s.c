/* SPDX-License-Identifier: Apache-2.0 */
/*
 * The instance driver's resolver over the Kubernetes client: a pod reference to its podIP, a
 * Secret key to a password. Executors call it from several threads, so the clients (one per
 * namespace, since a client is bound to its namespace) live behind one mutex.
 */
#include <errno.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "core/log.h"
#include "core/util.h"
#include "daemon/k8s-adapters.h"

#define LOG_MODULE "resolver"

/* Namespaces kept at once; past this the oldest client is replaced. */
#define MAX_NAMESPACES 16
#define MAX_SECRET     4096

struct resolver_k8s {
        struct k8s_config *cfg; /* a private copy: k8s_client_new() needs it at each namespace */
        struct k8s_client_options opts;
        pthread_mutex_t lock;
        /* Under the lock. */
        struct {
                char *namespace;
                struct k8s_client *client;
        } clients[MAX_NAMESPACES];
        size_t next_victim;
};

/* The client of `ns`, made on first use. Under the lock. */
static int client_for(struct resolver_k8s *r, const char *ns, struct k8s_client **ret)
{
        struct k8s_client_options o = r->opts;
        struct k8s_client *c = NULL;
        size_t slot = MAX_NAMESPACES;
        int k;

        for (size_t i = 0; i < MAX_NAMESPACES; i++) {
                if (r->clients[i].namespace && streq(r->clients[i].namespace, ns)) {
                        *ret = r->clients[i].client;
                        return 0;
                }
                if (!r->clients[i].namespace && slot == MAX_NAMESPACES)
                        slot = i;
        }
        if (slot == MAX_NAMESPACES) {
                slot = r->next_victim;
                r->next_victim = (r->next_victim + 1) % MAX_NAMESPACES;
        }
        char *name = strdup(ns);
        if (!name)
                return -ENOMEM;
        o.namespace = ns;
        k = k8s_client_new(r->cfg, &o, &c);
        if (k < 0) {
                free(name);
                return k;
        }
        k8s_client_free(r->clients[slot].client);
        free(r->clients[slot].namespace);
        r->clients[slot].namespace = name;
        r->clients[slot].client = c;
        *ret = c;
        return 0;
}

static void set_error(char **ret_error, const char *fmt, const char *a, const char *b,
                      const char *detail)
{
        if (!ret_error)
                return;
        char *s = NULL;
        char head[600];
        snprintf(head, sizeof(head), fmt, a, b);
        if (asprintf(&s, "%s: %s", head, detail) >= 0)
                *ret_error = s;
}

static int resolve_pod(void *userdata, const char *ns, const char *name, char **ret_host,
                       char **ret_error)
{
        struct resolver_k8s *r = userdata;
        struct k8s_client *c = NULL;
        struct k8s_pod pod = {0};
        int k;

        pthread_mutex_lock(&r->lock);
        k = client_for(r, ns, &c);
        if (k >= 0)
                k = k8s_pod_get(c, name, &pod);
        if (k < 0) {
                set_error(ret_error, "reading pod \"%s/%s\"", ns, name,
                          !c ? strerror(-k) : k8s_client_errstr(c));
                pthread_mutex_unlock(&r->lock);
                return k;
        }
        pthread_mutex_unlock(&r->lock);
        if (strempty(pod.pod_ip)) {
                set_error(ret_error, "pod \"%s/%s\"", ns, name, "has no IP yet");
                k8s_pod_release(&pod);
                return -EAGAIN;
        }
        char *host = strdup(pod.pod_ip);
        k8s_pod_release(&pod);
        if (!host)
                return -ENOMEM;
        *ret_host = host;
        return 0;
}

static int read_secret(void *userdata, const char *ns, const char *name, const char *key,
                       char **ret_value, char **ret_error)
{
        struct resolver_k8s *r = userdata;
        struct k8s_client *c = NULL;
        char *value = NULL;
        int k;

        pthread_mutex_lock(&r->lock);
        k = client_for(r, ns, &c);
        if (k >= 0)
                k = k8s_secret_get_key(c, name, key, MAX_SECRET, &value, NULL);
        if (k < 0) {
                /* The client's error names the request, never the value. */
                set_error(ret_error, "reading Secret \"%s/%s\"", ns, name,
                          !c              ? strerror(-k)
                          : k == -ENODATA ? "no such key"
                                          : k8s_client_errstr(c));
                pthread_mutex_unlock(&r->lock);
                return k == -ENODATA ? -ENOENT : k;
        }
        pthread_mutex_unlock(&r->lock);
        *ret_value = value;
        return 0;
}

static int config_copy(const struct k8s_config *in, struct k8s_config **ret)
{
        struct k8s_config *c = calloc(1, sizeof(*c));
        bool ok = true;

        if (!c)
                return -ENOMEM;
#define DUP(f)                                                                                     \
        do {                                                                                       \
                if (in->f && !(c->f = strdup(in->f)))                                              \
                        ok = false;                                                                \
        } while (0)
#define BLOB(f)                                                                                    \
        do {                                                                                       \
                if (in->f.len) {                                                                   \
                        c->f.data = malloc(in->f.len);                                             \
                        if (c->f.data) {                                                           \
                                memcpy(c->f.data, in->f.data, in->f.len);                          \
                                c->f.len = in->f.len;                                              \
                        } else                                                                     \
                                ok = false;                                                        \
                }                                                                                  \
        } while (0)
        DUP(server);
        DUP(namespace);
        DUP(ca_file);
        BLOB(ca_data);
        c->insecure_skip_verify = in->insecure_skip_verify;
        DUP(token);
        DUP(token_file);
        DUP(client_cert_file);
        DUP(client_key_file);
        BLOB(client_cert_data);
        BLOB(client_key_data);
#undef DUP
#undef BLOB
        if (!ok) {
                k8s_config_free(c);
                return -ENOMEM;
        }
        *ret = c;
        return 0;
}

int resolver_k8s_new(const struct k8s_config *cfg, const struct k8s_client_options *opts,
                     struct resolver_k8s **ret)
{
        struct resolver_k8s *r = calloc(1, sizeof(*r));
        int k;

        if (!r)
                return -ENOMEM;
        pthread_mutex_init(&r->lock, NULL);
        r->opts = *opts;
        r->opts.namespace = NULL; /* per call */
        k = config_copy(cfg, &r->cfg);
        if (k < 0) {
                resolver_k8s_free(r);
                return k;
        }
        *ret = r;
        return 0;
}

void resolver_k8s_free(struct resolver_k8s *r)
{
        if (!r)
                return;
        for (size_t i = 0; i < MAX_NAMESPACES; i++) {
                k8s_client_free(r->clients[i].client);
                free(r->clients[i].namespace);
        }
        k8s_config_free(r->cfg);
        pthread_mutex_destroy(&r->lock);
        free(r);
}

struct driver_resolver resolver_k8s_resolver(struct resolver_k8s *r)
{
        return (struct driver_resolver){
            .resolve_pod = resolve_pod,
            .read_secret = read_secret,
            .userdata = r,
        };
}
